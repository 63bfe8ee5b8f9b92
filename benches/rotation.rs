//! Rotation reaction harness: the real `certgate run` binary, N sets, kubelet-faithful `..data`
//! swaps in one set's source, and an inotify watch on its publish dir. Measures commit (the
//! `..data` rename in the source) → new generation committed in the publish dir, over R
//! rotations, with the per-stage breakdown certgate reports in `/status`; plus start-up time to
//! ready and RSS.
//!
//! ```sh
//! cargo bench --bench rotation -- --sets 1 --rotations 200 --alg p256
//! cargo bench --bench rotation -- --sets 1000 --rotations 200 --alg p256
//! cargo bench --bench rotation -- --sets 1 --rotations 200 --alg rsa2048
//! cargo bench --bench rotation -- --sets 1000 --rotations 20 --scrapes 200 --publish-root /dev/shm
//! ```
//!
//! `--scrapes N` scrapes `/metrics` N times after the rotations (one connection each, with
//! `Accept-Encoding: gzip`, as Prometheus does on a fresh connection) and reports latency
//! percentiles (to the last byte, not decoding), the body size as sent and as text, and RSS
//! after them. `CERTGATE_BIN=/abs/path/to/certgate` runs another build (e.g. a release
//! build of an older commit) under the same harness.

// Test and bench code may panic on a broken fixture; the lint is for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use certgate_testkit::kubelet;
use certgate_testkit::pki::{Alg, Ca, Leaf, LeafSpec};
use notify::{RecursiveMode, Watcher};

struct Args {
    sets: usize,
    rotations: usize,
    alg: Alg,
    alg_name: String,
    publish_root: Option<PathBuf>,
    storm_seconds: u64,
    scrapes: usize,
}

fn args() -> Args {
    let mut a = Args {
        sets: 1,
        rotations: 200,
        alg: Alg::P256,
        alg_name: "p256".into(),
        publish_root: None,
        storm_seconds: 0,
        scrapes: 0,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--sets" => a.sets = val.parse().expect("--sets N"),
            "--rotations" => a.rotations = val.parse().expect("--rotations N"),
            "--publish-root" => a.publish_root = Some(PathBuf::from(val)),
            "--storm-seconds" => a.storm_seconds = val.parse().expect("--storm-seconds N"),
            "--scrapes" => a.scrapes = val.parse().expect("--scrapes N"),
            "--alg" => {
                a.alg = match val.as_str() {
                    "p256" => Alg::P256,
                    "rsa2048" => Alg::Rsa2048,
                    other => panic!("--alg p256|rsa2048, not {other}"),
                };
                a.alg_name = val;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (code, _, body, _) = http_get_with(addr, path, "");
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// A GET with `extra` request headers (each ending in `\r\n`): the status, the response
/// headers (lowercase names), the body as sent (de-chunked, not decoded) and the time from
/// connecting to the last byte.
fn http_get_with(
    addr: SocketAddr,
    path: &str,
    extra: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>, Duration) {
    let started = Instant::now();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, Vec::new(), Vec::new(), started.elapsed());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let took = started.elapsed();
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Vec::new(), Vec::new(), took);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    (code, headers, body, took)
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let Some(chunk) = b.get(start..start + size) else {
            break;
        };
        out.extend_from_slice(chunk);
        b = b.get(start + size + 2..).unwrap_or(&[]);
    }
    out
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `RssAnon:`, `VmHWM:`).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// With `CERTGATE_BENCH_MAPS` set: where the child's resident memory is, from
/// `/proc/PID/smaps` (KiB by mapping: the heap, each library and the binary, and anonymous
/// mappings, which hold thread stacks and large allocations), and its thread count.
fn print_maps(pid: u32, when: &str) {
    if std::env::var_os("CERTGATE_BENCH_MAPS").is_none() {
        return;
    }
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut name = String::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let n = f.nth(4).unwrap_or("[anon]");
            name = n.rsplit('/').next().unwrap_or(n).to_string();
        } else if first == "Rss:" {
            let kib: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let e = by.entry(name.clone()).or_default();
            e.0 += kib;
            e.1 += 1;
        }
    }
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    let mut line = format!("maps {when}: {threads} threads;");
    for (n, (kib, count)) in by.iter().filter(|(_, (k, _))| *k > 0) {
        line.push_str(&format!(" {n} {kib} KiB ({count} maps);"));
    }
    println!("{line}");
}

fn write_set(dir: &Path, leaf: &Leaf, inter: &Ca, root: &Ca) {
    let chain = format!("{}{}", leaf.cert_pem, inter.cert_pem);
    kubelet::atomic_write(
        dir,
        &[
            ("tls.crt", chain.as_bytes()),
            ("tls.key", leaf.key.pkcs8_pem().as_bytes()),
            ("ca.crt", root.cert_pem.as_bytes()),
        ],
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().expect("tempdir");
    // Publish dirs on tmpfs (`--publish-root /dev/shm`) match the recommended emptyDir
    // `medium: Memory`; the default keeps them on disk, where fsync costs real time.
    let publish_tmp = match &a.publish_root {
        Some(root) => tempfile::tempdir_in(root).expect("tempdir in --publish-root"),
        None => tempfile::tempdir().expect("tempdir"),
    };
    let root = Ca::root("bench root", a.alg);
    let inter = root.intermediate("bench intermediate", a.alg);
    // A few leaves to cycle through: each rotation is new content (no dedupe), and key
    // generation stays out of the measured loop.
    let leaves: Vec<Leaf> = (0..4)
        .map(|_| inter.leaf(&LeafSpec::new("bench.example.com").alg(a.alg)))
        .collect();
    let mut cfg = String::from("[daemon]\nresync_interval = \"1h\"\n");
    for i in 0..a.sets {
        let src = tmp.path().join(format!("src{i}"));
        write_set(&src, &leaves[i % leaves.len()], &inter, &root);
        cfg.push_str(&format!(
            "[[set]]\nname = \"s{i}\"\ncert = \"{0}/tls.crt\"\nkey = \"{0}/tls.key\"\ntrust = \"{0}/ca.crt\"\nnames = [\"bench.example.com\"]\npublish_dir = \"{1}\"\n",
            src.display(),
            publish_tmp.path().join(format!("live{i}")).display()
        ));
    }
    let cfg_path = tmp.path().join("certgate.toml");
    std::fs::write(&cfg_path, cfg).expect("config");

    let started = Instant::now();
    let bin = std::env::var_os("CERTGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_certgate")));
    let mut child = Command::new(&bin)
        .args([
            "run",
            "--config",
            &cfg_path.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn certgate (cargo bench builds it)");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("admin server listening") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("certgate started");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json log");
    let addr: SocketAddr = v["listen"].as_str().expect("listen").parse().expect("addr");
    while http_get(addr, "/readyz").0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(120), "never ready");
        std::thread::sleep(Duration::from_millis(2));
    }
    let ready_after = started.elapsed();
    let rss_ready = rss_kib(child.id());
    let anon_ready = status_kib(child.id(), "RssAnon:");
    print_maps(child.id(), "at ready");

    let live0 = publish_tmp.path().join("live0");
    let (etx, erx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(e) = res {
            if e.paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| n == "..data"))
            {
                let _ = etx.send(Instant::now());
            }
        }
    })
    .expect("watcher");
    watcher
        .watch(&live0, RecursiveMode::NonRecursive)
        .expect("watch publish dir");

    let src0: PathBuf = tmp.path().join("src0");
    let mut reactions = Vec::with_capacity(a.rotations);
    let mut stages: Vec<[f64; 5]> = Vec::with_capacity(a.rotations);
    for r in 0..a.rotations {
        while erx.try_recv().is_ok() {}
        let leaf = &leaves[(r + 1) % leaves.len()];
        let chain = format!("{}{}", leaf.cert_pem, inter.cert_pem);
        let key = leaf.key.pkcs8_pem();
        let mut t0 = Instant::now();
        kubelet::atomic_write_with(
            &src0,
            &[
                ("tls.crt", chain.as_bytes()),
                ("tls.key", key.as_bytes()),
                ("ca.crt", root.cert_pem.as_bytes()),
            ],
            |_| t0 = Instant::now(),
        );
        let t1 = erx
            .recv_timeout(Duration::from_secs(10))
            .expect("publish within 10s");
        reactions.push(t1.saturating_duration_since(t0).as_secs_f64() * 1000.0);
        let (_, body) = http_get(addr, "/status?set=s0");
        if let Ok(st) = serde_json::from_str::<serde_json::Value>(&body) {
            let s = &st["sets"][0]["last_candidate"]["stages"];
            let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
            stages.push([
                f("event_ms"),
                f("load_ms"),
                f("validate_ms"),
                f("handshake_ms"),
                f("publish_ms"),
            ]);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let rss_after = rss_kib(child.id());
    if a.scrapes > 0 {
        let mut took = Vec::with_capacity(a.scrapes);
        let mut last = (Vec::new(), Vec::new());
        for _ in 0..a.scrapes {
            // As Prometheus asks.
            let (code, headers, body, t) =
                http_get_with(addr, "/metrics", "Accept-Encoding: gzip\r\n");
            took.push(t.as_secs_f64() * 1000.0);
            assert_eq!(code, 200, "/metrics");
            last = (headers, body);
        }
        print_maps(child.id(), "after scrapes");
        let (headers, sent) = last;
        let gzip = headers
            .iter()
            .any(|(k, v)| k == "content-encoding" && v.eq_ignore_ascii_case("gzip"));
        let plain = if gzip {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&sent[..])
                .read_to_end(&mut plain)
                .expect("a gzip body");
            plain
        } else {
            sent.clone()
        };
        assert!(
            std::str::from_utf8(&plain).is_ok_and(|t| t.contains("certgate_cert_info{")),
            "a /metrics body"
        );
        took.sort_by(f64::total_cmp);
        println!(
            "metrics scrape: sets={} scrapes={} p50={:.2}ms p99={:.2}ms max={:.2}ms | body {} bytes sent ({}), {} bytes of text | RSS after scrapes {:.1} MiB (anon {:.1} MiB, peak {:.1} MiB; at ready: anon {:.1} MiB)",
            a.sets,
            a.scrapes,
            percentile(&took, 50.0),
            percentile(&took, 99.0),
            took.last().copied().unwrap_or(f64::NAN),
            sent.len(),
            if gzip { "gzip" } else { "identity" },
            plain.len(),
            rss_kib(child.id()) as f64 / 1024.0,
            status_kib(child.id(), "RssAnon:") as f64 / 1024.0,
            status_kib(child.id(), "VmHWM:") as f64 / 1024.0,
            anon_ready as f64 / 1024.0,
        );
    }
    if a.storm_seconds > 0 {
        // Keep rotating as fast as certgate publishes, for load tests against the admin server
        // (benches/compare.sh runs wrk meanwhile).
        println!("STORM addr={addr} seconds={}", a.storm_seconds);
        let end = Instant::now() + Duration::from_secs(a.storm_seconds);
        let mut r = 0usize;
        while Instant::now() < end {
            let leaf = &leaves[r % leaves.len()];
            let chain = format!("{}{}", leaf.cert_pem, inter.cert_pem);
            kubelet::atomic_write(
                &src0,
                &[
                    ("tls.crt", chain.as_bytes()),
                    ("tls.key", leaf.key.pkcs8_pem().as_bytes()),
                    ("ca.crt", root.cert_pem.as_bytes()),
                ],
            );
            let _ = erx.recv_timeout(Duration::from_secs(10));
            r += 1;
        }
        println!("STORM done rotations={r}");
    }
    let _ = child.kill();
    let _ = child.wait();

    reactions.sort_by(f64::total_cmp);
    println!(
        "rotation reaction: alg={} sets={} rotations={} publish={} p50={:.2}ms p99={:.2}ms max={:.2}ms | ready after {:.0}ms | RSS ready {:.1} MiB, after {:.1} MiB",
        a.alg_name,
        a.sets,
        a.rotations,
        if a.publish_root.is_some() { "tmpfs" } else { "disk" },
        percentile(&reactions, 50.0),
        percentile(&reactions, 99.0),
        reactions.last().copied().unwrap_or(f64::NAN),
        ready_after.as_secs_f64() * 1000.0,
        rss_ready as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    let names = ["event", "load", "validate", "handshake", "publish"];
    let mut line = String::from("stages (p50 / p99 ms):");
    for (i, n) in names.iter().enumerate() {
        let mut col: Vec<f64> = stages
            .iter()
            .map(|s| s[i])
            .filter(|v| v.is_finite())
            .collect();
        col.sort_by(f64::total_cmp);
        line.push_str(&format!(
            " {n} {:.2}/{:.2}",
            percentile(&col, 50.0),
            percentile(&col, 99.0)
        ));
    }
    println!("{line}");
}
