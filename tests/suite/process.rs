//! The daemon as a process among others: signals other than SIGTERM/SIGINT do not kill it
//! (SIGHUP asks for a resync), a log reader that went away does not kill it, and it opts out of
//! core dumps (they would hold the key). The real binary; timeouts are failure bounds.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::util::daemon::{http_get, wait_until, Running};
use crate::util::fixtures::NAME;
use crate::util::pki::{Alg, Hierarchy};
use crate::util::{self, write};

const BOUND: Duration = Duration::from_secs(20);

/// Cert, key and trust files for a monitor-mode `certgate run`, and its arguments.
fn monitor_args(dir: &std::path::Path, listen: &str) -> Vec<String> {
    let h = Hierarchy::shared(Alg::P256);
    let cert = write(dir, "tls.crt", h.chain_pem_of(&h.leaf));
    let key = write(dir, "tls.key", h.leaf.key.pkcs8_pem());
    let trust = write(dir, "ca.crt", &h.root.cert_pem);
    [
        "run",
        "--cert",
        &cert,
        "--key",
        &key,
        "--trust",
        &trust,
        "--name",
        NAME,
        "--listen",
        listen,
        "--log-format",
        "json",
    ]
    .map(String::from)
    .to_vec()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

fn alive(child: &mut Child) -> bool {
    child.try_wait().expect("wait").is_none()
}

#[test]
fn sighup_requests_a_resync_and_usr1_usr2_quit_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let args = monitor_args(dir.path(), "127.0.0.1:0");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut d = Running::start_args(&args);
    let pid = d.child.id();
    signal(pid, libc::SIGHUP);
    wait_until(BOUND, "the SIGHUP log line", || {
        d.log_text().contains("resync requested")
    });
    for (sig, name) in [
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGQUIT, "SIGQUIT"),
    ] {
        signal(pid, sig);
        wait_until(BOUND, name, || {
            d.log_text()
                .lines()
                .any(|l| l.contains(name) && l.contains("ignored"))
        });
    }
    assert!(alive(&mut d.child), "{}", d.log_text());
    assert_eq!(d.get("/healthz").0, 200);
    // SIGTERM still stops it in order.
    assert_eq!(d.terminate(), Some(0));
}

/// A port nobody listens on right now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn a_log_reader_that_went_away_does_not_kill_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let args = monitor_args(dir.path(), &addr.to_string());
    // stdout and stderr: a pipe whose read end is closed, so every log line gets EPIPE.
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned here only.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read_end);
    let mut cmd = util::command();
    cmd.args(&args)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(write_end.try_clone().unwrap()))
        .stderr(Stdio::from(write_end));
    let mut child = cmd.spawn().unwrap();
    let guard = KillOnDrop(&mut child);
    // Healthy once the loop has turned (on a loaded machine the port opens first).
    wait_until(BOUND, "/healthz with its log reader gone", || {
        alive(guard.0)
            && std::net::TcpStream::connect(addr).is_ok()
            && http_get(addr, "/healthz").0 == 200
    });
    // Make it log again (SIGHUP logs "resync requested") and ask again.
    signal(guard.0.id(), libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(guard.0), "died logging to a closed pipe");
    assert_eq!(http_get(addr, "/healthz").0, 200);
}

struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_command_opts_out_of_core_dumps() {
    // The files under /proc/PID (environ, mem, …) of a process that is not dumpable
    // (PR_SET_DUMPABLE 0) are owned by root instead of by the process' user (the directory
    // itself keeps the user's): run certgate as nobody and look. `probe` against a peer that
    // never answers stays up long enough to look at.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/readyz", silent.local_addr().unwrap());
    let mut cmd = util::command();
    cmd.args(["probe", "--url", &url, "--timeout", "10s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    const NOBODY: u32 = 65534;
    // SAFETY: setgid/setuid are async-signal-safe; they only change the child being spawned.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let guard = KillOnDrop(&mut child);
    let environ = format!("/proc/{}/environ", guard.0.id());
    let owner = || std::fs::metadata(&environ).map(|m| m.uid()).ok();
    // Right after exec the process is still dumpable for a moment; give it time to opt out.
    let mut last = owner();
    for _ in 0..100 {
        if last == Some(0) || !alive(guard.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        last = owner();
    }
    assert!(alive(guard.0), "probe exited early");
    assert_eq!(
        last,
        Some(0),
        "/proc/PID/environ owned by {last:?}: certgate is still dumpable"
    );
}
