//! `certgate demo --once`: the README's run-the-main-job command, on the real binary. It runs
//! the whole scenario (publish, rejection, swap-back, publish) against the in-process daemon
//! and its demo workload, and must exit 0 having cleaned up after itself.

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Failure bound for the whole run (about 4 s when healthy: the swap-back waits out the
/// demo's 3 s verification deadline).
const BOUND: Duration = Duration::from_secs(60);

/// Runs the binary with `args`, killing it if it outlives `bound`; returns (exit code,
/// stdout, stderr).
fn run_bounded(args: &[&str], bound: Duration) -> (Option<i32>, String, String) {
    let mut cmd = crate::util::command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn certgate demo");
    // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    );
    assert!(
        status.is_some(),
        "certgate demo still running after {bound:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    (status.and_then(|s| s.code()), out, err)
}

#[test]
fn demo_once_publishes_rejects_and_swaps_back() {
    let (code, out, err) = run_bounded(
        &[
            "demo",
            "--once",
            "--listen",
            "127.0.0.1:0",
            "--every",
            "100ms",
        ],
        BOUND,
    );
    let context = format!("stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(code, Some(0), "{context}");

    // Port 0 is reported as the port actually bound.
    let status_url = out
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/status"))
        .unwrap_or_else(|| panic!("no /status URL printed\n{context}"));
    assert!(
        !status_url.contains(":0/"),
        "printed the requested port, not the bound one: {status_url}\n{context}"
    );
    assert!(out.contains("/metrics"), "{context}");

    let step = |n: u8| {
        out.lines()
            .find(|l| l.starts_with(&format!("[{n}]")))
            .unwrap_or_else(|| panic!("no step [{n}]\n{context}"))
    };
    assert!(step(1).contains("→ published generation .."), "{context}");
    assert!(step(1).contains("the workload serves it"), "{context}");
    assert!(step(2).contains("→ rejected: unknown_issuer"), "{context}");
    assert!(step(2).contains("stays live"), "{context}");
    assert!(step(3).contains("published generation"), "{context}");
    assert!(step(3).contains("then rolled back"), "{context}");
    assert!(step(3).contains("live again"), "{context}");
    assert!(step(4).contains("→ published generation .."), "{context}");
    assert!(out.contains("/readyz answers 200"), "{context}");

    // The throwaway PKI's directory is gone.
    let tmp: PathBuf = out
        .lines()
        .find_map(|l| l.strip_prefix("certgate demo: throwaway PKI in "))
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("no temp dir printed\n{context}"));
    assert!(!tmp.exists(), "{} left behind\n{context}", tmp.display());
}

#[test]
fn demo_refuses_a_bad_listen_address() {
    let (code, out, err) = run_bounded(&["demo", "--once", "--listen", "nowhere"], BOUND);
    assert_eq!(code, Some(2), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("--listen"), "{err}");
    assert!(out.is_empty(), "nothing started: {out}");
}

/// `certgate demo | head -1`: stdout closes after the first line. The demo must notice (a
/// write fails with EPIPE), stop in order and remove its temp dir with the keys, without a
/// panic.
#[test]
fn demo_stops_cleanly_when_its_stdout_closes() {
    use std::io::{BufRead, BufReader};

    let base = tempfile::tempdir().expect("tempdir");
    let mut cmd = crate::util::command();
    cmd.args(["demo", "--listen", "127.0.0.1:0", "--every", "100ms"])
        .env("TMPDIR", base.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn certgate demo");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("first line");
    let tmp = first
        .strip_prefix("certgate demo: throwaway PKI in ")
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("no temp dir on the first line: {first:?}"));
    assert!(
        tmp.starts_with(base.path()),
        "{} not under TMPDIR",
        tmp.display()
    );
    // What `head -1` does: read one line, then close the pipe.
    drop(stdout);

    let mut stderr = child.stderr.take().expect("stderr");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("certgate demo still running {BOUND:?} after its stdout closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
    assert!(!err.contains("panicked"), "stderr:\n{err}");
    assert!(
        !tmp.exists(),
        "{} left behind\nstderr:\n{err}",
        tmp.display()
    );
    let left: Vec<_> = std::fs::read_dir(base.path())
        .expect("read TMPDIR")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}
