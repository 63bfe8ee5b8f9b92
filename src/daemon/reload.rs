//! Telling the workload that new material is published: a signal to a process found by pid
//! file or by name (needs `shareProcessNamespace`), a POST to a local URL, or a command.

use std::path::Path;
use std::time::Duration;

use crate::config::{ReloadSettings, SignalTarget};

/// How long to wait for a pid file that is not there yet.
const PID_FILE_WAIT: Duration = Duration::from_secs(5);

/// Runs every configured action; returns one line per action (Ok or the error).
pub async fn reload(settings: &ReloadSettings) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    if let Some((signal, target)) = &settings.signal {
        out.push(send_signal(*signal, target).await);
    }
    if let Some(url) = &settings.url {
        out.push(post(url).await);
    }
    if let Some(argv) = &settings.command {
        out.push(run_command(argv).await);
    }
    out
}

async fn send_signal(signal: i32, target: &SignalTarget) -> Result<String, String> {
    let pids = match target {
        SignalTarget::PidFile(path) => vec![read_pid_file(path).await?],
        SignalTarget::ProcessName(name) => {
            let pids = pids_named(name);
            if pids.is_empty() {
                return Err(format!(
                    "no process named {name:?} (is shareProcessNamespace on?)"
                ));
            }
            pids
        }
    };
    for pid in &pids {
        // SAFETY: kill(2) has no memory-safety preconditions; pid and signal are plain ints.
        let rc = unsafe { libc::kill(*pid, signal) };
        if rc != 0 {
            return Err(format!(
                "kill({pid}, {signal}): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(format!("sent signal {signal} to pid(s) {pids:?}"))
}

async fn read_pid_file(path: &Path) -> Result<i32, String> {
    let deadline = tokio::time::Instant::now() + PID_FILE_WAIT;
    loop {
        match tokio::fs::read_to_string(path).await {
            Ok(text) => {
                return text
                    .trim()
                    .parse::<i32>()
                    .ok()
                    .filter(|p| *p > 1)
                    .ok_or_else(|| format!("pid file {}: no valid pid", path.display()))
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("pid file {}: {e}", path.display()))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Pids whose `/proc/PID/comm` equals `name`, excluding ourselves.
fn pids_named(name: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .collect()
}

async fn post(url: &str) -> Result<String, String> {
    let status = crate::http::client_request("POST", url, Duration::from_secs(5)).await?;
    if (200..300).contains(&status) {
        Ok(format!("POST {url}: {status}"))
    } else {
        Err(format!("POST {url}: HTTP {status}"))
    }
}

async fn run_command(argv: &[String]) -> Result<String, String> {
    let Some((prog, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let child = tokio::process::Command::new(prog)
        .args(args)
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(Duration::from_secs(30), child).await {
        Ok(Ok(s)) if s.success() => Ok(format!("{prog}: exited 0")),
        Ok(Ok(s)) => Err(format!("{prog}: {s}")),
        Ok(Err(e)) => Err(format!("{prog}: {e}")),
        Err(_) => Err(format!("{prog}: timed out after 30s")),
    }
}
