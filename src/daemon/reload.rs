//! Telling the workload that new material is published: a signal to a process found by pid
//! file or by name (needs `shareProcessNamespace`), a POST to a local URL, or a command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bounded::{self, ReadError};
use crate::config::{ReloadSettings, SignalTarget};

/// Why a reload action failed. Each message names the pid file, process, URL or command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The pid file could not be read in time, or holds no usable pid.
    #[error("pid file {}: {detail}", path.display())]
    PidFile {
        /// The configured pid file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// No process has the configured name.
    #[error("no process named {name:?} (is shareProcessNamespace on?)")]
    NoProcess {
        /// The configured process name.
        name: String,
    },
    /// kill(2) failed.
    #[error("kill({pid}, {signal}): {source}")]
    Signal {
        /// The target.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The OS error.
        source: std::io::Error,
    },
    /// The reload URL could not be reached.
    #[error("{detail}")]
    Request {
        /// The client's message (it names the URL).
        detail: String,
    },
    /// The reload URL answered with a non-2xx status.
    #[error("POST {url}: HTTP {status}")]
    Status {
        /// The configured URL.
        url: String,
        /// The status it answered with.
        status: u16,
    },
    /// The reload command could not run, failed or timed out.
    #[error("{program}: {detail}")]
    Command {
        /// The program (argv[0]), or empty when argv is empty.
        program: String,
        /// What happened.
        detail: String,
    },
}

/// How long to wait for a pid file that is not there yet.
const PID_FILE_WAIT: Duration = Duration::from_secs(5);

/// Runs every configured action; returns one line per action (Ok or the error).
pub async fn reload(settings: &ReloadSettings) -> Vec<Result<String, ReloadError>> {
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

async fn send_signal(signal: i32, target: &SignalTarget) -> Result<String, ReloadError> {
    let pids = match target {
        SignalTarget::PidFile(path) => vec![read_pid_file(path).await?],
        SignalTarget::ProcessName(name) => {
            let pids = pids_named(name);
            if pids.is_empty() {
                return Err(ReloadError::NoProcess { name: name.clone() });
            }
            pids
        }
    };
    for pid in &pids {
        // SAFETY: kill(2) has no memory-safety preconditions; pid and signal are plain ints.
        let rc = unsafe { libc::kill(*pid, signal) };
        if rc != 0 {
            return Err(ReloadError::Signal {
                pid: *pid,
                signal,
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(format!("sent signal {signal} to pid(s) {pids:?}"))
}

/// Longest pid file accepted: a pid and a newline, with room to spare.
const PID_FILE_MAX: u64 = 64;

/// Reads the pid a workload wrote, waiting up to [`PID_FILE_WAIT`] for the file to appear.
/// The file is workload-owned input: read bounded, from a regular file only, on a blocking
/// thread; a pid of 0, 1, a negative one or certgate's own is refused.
async fn read_pid_file(path: &Path) -> Result<i32, ReloadError> {
    let fail = |detail: String| ReloadError::PidFile {
        path: path.to_path_buf(),
        detail,
    };
    let deadline = tokio::time::Instant::now() + PID_FILE_WAIT;
    loop {
        let owned = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || bounded::read_regular(&owned, PID_FILE_MAX))
            .await
            .map_err(|e| fail(e.to_string()))?;
        match read {
            Ok(bytes) => return parse_pid(&bytes).map_err(fail),
            Err(ReadError::NotFound) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}

/// The pid in a pid file's content: one positive number, not init, not certgate itself.
fn parse_pid(bytes: &[u8]) -> Result<i32, String> {
    let pid = std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
        .ok_or_else(|| "no valid pid".to_string())?;
    if u32::try_from(pid).is_ok_and(|p| p == std::process::id()) {
        return Err(format!(
            "holds certgate's own pid {pid}; refusing to signal itself"
        ));
    }
    Ok(pid)
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

async fn post(url: &str) -> Result<String, ReloadError> {
    let status = crate::http::client_request("POST", url, Duration::from_secs(5))
        .await
        .map_err(|detail| ReloadError::Request {
            detail: detail.to_string(),
        })?;
    if (200..300).contains(&status) {
        Ok(format!("POST {url}: {status}"))
    } else {
        Err(ReloadError::Status {
            url: url.to_string(),
            status,
        })
    }
}

async fn run_command(argv: &[String]) -> Result<String, ReloadError> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(ReloadError::Command {
            program: String::new(),
            detail: "empty command".into(),
        });
    };
    let fail = |detail: String| ReloadError::Command {
        program: prog.clone(),
        detail,
    };
    let child = tokio::process::Command::new(prog)
        .args(args)
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(Duration::from_secs(30), child).await {
        Ok(Ok(s)) if s.success() => Ok(format!("{prog}: exited 0")),
        Ok(Ok(s)) => Err(fail(s.to_string())),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail("timed out after 30s".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_parsed_strictly() {
        assert_eq!(parse_pid(b"4242\n"), Ok(4242));
        for bad in [&b""[..], b"0", b"1", b"-5", b"12 13", b"\xff\xfe", b"abc"] {
            assert!(parse_pid(bad).is_err(), "{bad:?}");
        }
        let own = std::process::id().to_string();
        let err = parse_pid(own.as_bytes()).unwrap_err();
        assert!(err.contains("own pid"), "{err}");
    }

    #[tokio::test]
    async fn hostile_pid_files_fail_fast_without_signalling() {
        let dir = tempfile::tempdir().unwrap();
        // A FIFO would block a plain read for good; /dev/zero would grow memory; our own pid
        // would make certgate kill itself.
        let fifo = dir.path().join("fifo.pid");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let zero = dir.path().join("zero.pid");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let own = dir.path().join("own.pid");
        std::fs::write(&own, std::process::id().to_string()).unwrap();
        let huge = dir.path().join("huge.pid");
        std::fs::write(&huge, vec![b'7'; 4096]).unwrap();
        for (path, needle) in [
            (&fifo, "FIFO"),
            (&zero, "device"),
            (&own, "own pid"),
            (&huge, "limit"),
        ] {
            let settings = ReloadSettings {
                signal: Some((libc::SIGTERM, SignalTarget::PidFile(path.clone()))),
                ..ReloadSettings::default()
            };
            let started = std::time::Instant::now();
            let lines = tokio::time::timeout(Duration::from_secs(5), reload(&settings))
                .await
                .expect("no hang");
            assert!(started.elapsed() < Duration::from_secs(2));
            let err = lines[0].as_ref().unwrap_err().to_string();
            assert!(err.contains(needle), "{path:?}: {err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
    }

    #[tokio::test]
    async fn a_valid_pid_file_is_signalled() {
        // The control: the same path of code signals a real process.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("w.pid");
        std::fs::write(&pid_file, format!("{}\n", child.id())).unwrap();
        let settings = ReloadSettings {
            signal: Some((libc::SIGTERM, SignalTarget::PidFile(pid_file))),
            ..ReloadSettings::default()
        };
        let lines = reload(&settings).await;
        assert!(lines[0].is_ok(), "{lines:?}");
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }
}
