//! The admin port under a flood: the real binary, real sockets. Idle, half-open and keep-alive
//! connections are closed after the header-read timeout; unfinished huge headers are refused
//! at the buffer bound instead of costing memory; the connection cap keeps probes answering
//! even when the open-file limit is small. Timeouts here are failure bounds.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::util::daemon::Running;
use crate::util::fixtures::NAME;
use crate::util::pki::{Alg, Hierarchy};
use crate::util::{self, write};

/// A monitor-mode `certgate run` (no publish dir) on an ephemeral port with `extra` flags;
/// `nofile` sets its open-file limit.
fn start(extra: &[&str], nofile: Option<u64>) -> (tempfile::TempDir, Running) {
    let h = Hierarchy::shared(Alg::P256);
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = write(dir.path(), "tls.crt", h.chain_pem_of(&h.leaf));
    let key = write(dir.path(), "tls.key", h.leaf.key.pkcs8_pem());
    let trust = write(dir.path(), "ca.crt", &h.root.cert_pem);
    let mut cmd = util::command();
    cmd.args([
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
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    cmd.args(extra);
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe; it only touches the child being spawned.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let d = Running::start_command(cmd);
    (dir, d)
}

/// GET `path` on a fresh connection as kubelet does, every step bounded by `bound`; the status.
fn probe(addr: SocketAddr, path: &str, bound: Duration) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, bound)?;
    s.set_read_timeout(Some(bound))?;
    s.set_write_timeout(Some(bound))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidData, "no status line"))
}

/// Resident set size of `pid` in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// How long until the server closes `s` (EOF or reset), bounded by `bound`; `None` if it
/// stayed open.
fn closed_within(s: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(bound)).expect("read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            // A 408/431 or the rest of a response before the close.
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

#[test]
fn idle_half_open_and_keep_alive_connections_are_closed_after_the_header_timeout() {
    let (_dir, d) = start(&["--admin-header-timeout", "1s"], None);
    let mut idle = TcpStream::connect(d.addr).unwrap();
    let mut half_open = TcpStream::connect(d.addr).unwrap();
    half_open
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A keep-alive peer that made one request and then went quiet.
    let mut kept = TcpStream::connect(d.addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).unwrap();
    // 200, or 503 while the daemon is still starting: either way a whole response.
    assert!(head.starts_with(b"HTTP/1.1 "), "{head:?}");
    for (what, s) in [
        ("idle", &mut idle),
        ("half-open", &mut half_open),
        ("keep-alive", &mut kept),
    ] {
        let closed = closed_within(s, Duration::from_secs(6));
        assert!(
            closed.is_some(),
            "{what} connection still open 6 s into a 1 s header-read timeout"
        );
    }
}

#[test]
fn probes_answer_and_memory_stays_bounded_under_a_flood() {
    let (_dir, d) = start(&["--admin-header-timeout", "3s"], None);
    let pid = d.child.id();
    let bound = Duration::from_secs(2);
    // 200, or 503 while the daemon is still starting.
    let code = probe(d.addr, "/healthz", bound).unwrap();
    assert!(code == 200 || code == 503, "{code}");
    let rss_before = vm_rss_kib(pid);
    let mut held = Vec::new();
    // 300 idle and 300 half-open connections.
    for i in 0..600 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        if i % 2 == 1 {
            let _ = s.write_all(b"G");
        }
        held.push(s);
    }
    // 100 unfinished 380 KB headers: refused at the buffer bound (431, close), not buffered.
    let line = format!("X-Pad: {}\r\n", "a".repeat(4089));
    for _ in 0..100 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_write_timeout(Some(bound)).unwrap();
        let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n");
        for _ in 0..95 {
            if s.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
        held.push(s);
    }
    for _ in 0..20 {
        let start = Instant::now();
        let code = probe(d.addr, "/readyz", bound).expect("/readyz during the flood");
        assert!(code == 200 || code == 503, "{code}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "/readyz took {:?} during the flood",
            start.elapsed()
        );
    }
    let grown = vm_rss_kib(pid).saturating_sub(rss_before);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB under 700 flood connections"
    );
    drop(held);
}

#[test]
fn probes_answer_when_idle_connections_exceed_the_open_file_limit() {
    // Without a cap below the open-file limit, accept fails (EMFILE) and probes time out.
    let (_dir, d) = start(&[], Some(128));
    let held: Vec<_> = (0..200)
        .map(|_| TcpStream::connect(d.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..10 {
        let start = Instant::now();
        let code = probe(d.addr, "/healthz", Duration::from_secs(2))
            .expect("/healthz with more idle connections than file descriptors");
        assert!(code == 200 || code == 503, "{code}");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
    assert!(
        d.log_text().contains("connection cap lowered"),
        "{}",
        d.log_text()
    );
    drop(held);
}

/// `/metrics` as Prometheus asks for it (`Accept-Encoding: gzip`): gzip-encoded, and the
/// same exposition once decoded; plain text to a reader that does not ask, or refuses gzip
/// (`gzip;q=0`). Both tell caches the encoding depends on `Accept-Encoding`.
#[test]
fn metrics_are_gzip_encoded_for_a_scraper_that_accepts_it() {
    let (_dir, d) = start(&[], None);
    util::daemon::wait_until(Duration::from_secs(20), "ready", || {
        d.get("/readyz").0 == 200
    });
    let header = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    // The same checks on every body: the families of a live set, whole, and the linter's
    // word when promtool is here.
    let check = |text: &str| {
        for series in [
            // `--cert …` without a config: one set named "default".
            "certgate_set_ready{set=\"default\"} 1",
            "certgate_cert_valid{set=\"default\"} 1",
            "certgate_ready 1",
        ] {
            assert!(text.lines().any(|l| l == series), "{series} not in\n{text}");
        }
        assert!(text.contains("\nx509_cert_not_after{"), "{text}");
        assert!(text.contains("\nprocess_open_fds "), "{text}");
        assert!(text.ends_with('\n'), "whole");
        if let Ok(mut child) = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("feed promtool");
            let out = child.wait_with_output().expect("promtool");
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    for accept in ["gzip", "deflate, gzip;q=0.5", "br;q=1.0, *;q=0.1", "x-gzip"] {
        let (code, headers, body) = util::daemon::http_get_encoded(d.addr, "/metrics", accept);
        assert_eq!(code, 200);
        assert_eq!(
            header(&headers, "content-encoding").as_deref(),
            Some("gzip"),
            "{accept}"
        );
        assert_eq!(header(&headers, "vary").as_deref(), Some("Accept-Encoding"));
        assert_eq!(
            header(&headers, "content-type").as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("a gzip stream, whole");
        check(&text);
    }
    for accept in [
        "",
        "identity",
        "gzip;q=0",
        "gzip;q=0.000, *;q=1",
        "*;q=0",
        "br",
    ] {
        let (code, headers, body) = util::daemon::http_get_encoded(d.addr, "/metrics", accept);
        assert_eq!(code, 200);
        assert_eq!(header(&headers, "content-encoding"), None, "{accept:?}");
        assert_eq!(header(&headers, "vary").as_deref(), Some("Accept-Encoding"));
        check(std::str::from_utf8(&body).expect("text"));
    }
}
