//! The daemon as a process among others: signals other than SIGTERM/SIGINT do not kill it
//! (SIGHUP asks for a resync). The real binary; timeouts are failure bounds.

use std::process::Child;
use std::time::Duration;

use crate::util::daemon::{wait_until, Running};
use crate::util::fixtures::NAME;
use crate::util::pki::{Alg, Hierarchy};
use crate::util::write;

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
