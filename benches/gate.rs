//! The fleet gate against a real Prometheus (Debian's): the load a fleet of holding pods puts on
//! the query API, and the release latency.
//!
//! - **Load.** One `certgate run` (release build) with `--sets` gated sets (default 1,000, one
//!   per simulated pod: each set holds one candidate and asks on its own, as 1,000 pods would),
//!   all held by one verifier that trusts only the old root. Counts the queries Prometheus
//!   answers (`prometheus_http_requests_total{handler="/api/v1/query"}`), first while nothing is
//!   held (must be zero), then over `--window` seconds of holding, at the default
//!   `poll_interval` (`--poll`, 30 s).
//! - **Latency.** One set held by one verifier, `--rounds` times: the verifier's exposition
//!   gains the new root at t0; the bench sees it in Prometheus (`t_scraped`, polling every
//!   25 ms) and in certgate's `/status` (`t_published`). Release latency = t_published −
//!   t_scraped; the bound is `stable_for` + one `poll_interval` + one query.
//!
//! ```sh
//! cargo bench --bench gate                                # 1,000 sets, 30 s poll, 90 s window
//! cargo bench --bench gate -- --sets 1000 --window 120 --rounds 10 --latency-poll 2s --stable 3s
//! ```

// Test and bench code may panic on a broken fixture; the lint is for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/util/fleet.rs"]
mod fleet_util;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certgate_testkit::pki::{Alg, Ca, Leaf, LeafSpec};
use fleet_util::{
    exposition, now_unix, wait_for, Anchor, Exporter, FleetPrometheus, PodSet, SdTarget,
};

struct Args {
    sets: usize,
    poll: String,
    window: u64,
    rounds: usize,
    latency_poll: String,
    stable: String,
}

fn args() -> Args {
    let mut a = Args {
        sets: 1000,
        poll: "30s".into(),
        window: 90,
        rounds: 5,
        latency_poll: "2s".into(),
        stable: "3s".into(),
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--sets" => a.sets = val.parse().expect("--sets N"),
            "--poll" => a.poll = val,
            "--window" => a.window = val.parse().expect("--window SECONDS"),
            "--rounds" => a.rounds = val.parse().expect("--rounds N"),
            "--latency-poll" => a.latency_poll = val,
            "--stable" => a.stable = val,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn anchor_id(ca: &Ca) -> String {
    certgate::pipeline::inspect::anchor_id_of(&ca.cert_der)
        .unwrap()
        .to_string()
}

/// A verifier pod (namespace `bench`, workload `client`, pod `verifier`) trusting `roots`.
fn verifier(roots: &[&Ca]) -> String {
    let t0 = now_unix();
    let set = PodSet {
        set: "default".into(),
        anchors: roots
            .iter()
            .map(|r| Anchor::new(&anchor_id(r), "CN=bench root", t0, "startup"))
            .collect(),
        leaf_fingerprint: format!("{:064x}", 1),
        leaf_issuer: "CN=bench root".into(),
        leaf_not_after: t0 + 86_400.0,
    };
    exposition(
        &[set],
        "namespace=\"bench\",workload=\"client\",pod=\"verifier\"",
    )
}

// === certgate ===

struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_certgate(config: &Path) -> Daemon {
    let bin = std::env::var_os("CERTGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_certgate")));
    let mut child = Command::new(bin)
        .args(["run", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "warn,certgate=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn certgate");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("admin server listening") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("certgate started");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = v["listen"].as_str().unwrap().parse().unwrap();
    Daemon { child, addr }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The sum of a family's samples in certgate's `/metrics` whose line contains `filter`.
fn metric_sum(addr: SocketAddr, name: &str, filter: &str) -> f64 {
    http_get(addr, "/metrics")
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn write_source(dir: &Path, leaf: &Leaf, bundle: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in [
        ("tls.key", leaf.key.pkcs8_pem()),
        ("tls.crt", leaf.cert_pem.clone()),
        ("ca.crt", bundle.to_string()),
    ] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// A config of `sets` gated sets under `root`, verifiers = the bench's verifier pod.
fn config(root: &Path, prom: &str, sets: usize, poll: &str, stable: &str) -> PathBuf {
    let admin = fleet_util::free_port();
    let mut c = format!(
        "[daemon]\nsettle = \"50ms\"\nresync_interval = \"10m\"\nadmin_listen = \"{admin}\"\n\
         [fleet]\nprometheus_url = \"{prom}\"\npoll_interval = \"{poll}\"\n"
    );
    for i in 0..sets {
        let src = root.join(format!("src{i}"));
        let out = root.join(format!("out{i}"));
        let _ = writeln!(
            c,
            "[[set]]\nname = \"s{i}\"\ncert = {:?}\nkey = {:?}\ntrust = {:?}\n\
             names = [\"localhost\"]\nhandshake = false\npublish_dir = {:?}\n\
             [set.gate]\nverifiers = ['{{namespace=\"bench\", workload=\"client\"}}']\n\
             stable_for = \"{stable}\"\n",
            src.join("tls.crt").display().to_string(),
            src.join("tls.key").display().to_string(),
            src.join("ca.crt").display().to_string(),
            out.display().to_string(),
        );
    }
    let path = root.join("certgate.toml");
    std::fs::write(&path, c).unwrap();
    path
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn load(a: &Args) {
    let root = scratch();
    let (r1, r2) = (
        Ca::root("gate bench root 1", Alg::P256),
        Ca::root("gate bench root 2", Alg::P256),
    );
    let spec = LeafSpec::new("localhost");
    let (old, new) = (r1.leaf(&spec), r2.leaf(&spec));
    let both = format!("{}{}", r1.cert_pem, r2.cert_pem);
    let exporter = Exporter::start(verifier(&[&r1]));
    let scrape = Duration::from_secs(1);
    let prom = FleetPrometheus::start(
        &[SdTarget {
            addr: exporter.addr,
            labels: Vec::new(),
        }],
        scrape,
        true,
    );
    for i in 0..a.sets {
        write_source(&root.path().join(format!("src{i}")), &old, &r1.cert_pem);
    }
    let cfg = config(root.path(), &prom.url(), a.sets, &a.poll, "60s");
    let started = Instant::now();
    let d = start_certgate(&cfg);
    wait_for(Duration::from_secs(300), "every set live", || {
        http_get(d.addr, "/readyz").starts_with("ok")
    });
    println!(
        "{} gated sets live after {:.1} s",
        a.sets,
        started.elapsed().as_secs_f64()
    );
    // Nothing held: nothing asked.
    let idle_window = Duration::from_secs(20);
    let before = prom.query_requests();
    std::thread::sleep(idle_window);
    let idle = prom.query_requests() - before;
    println!("nothing held, {} s: {idle} queries", idle_window.as_secs());

    for i in 0..a.sets {
        write_source(&root.path().join(format!("src{i}")), &new, &both);
    }
    // From the first source change on: the holds start within seconds of each other, as in a
    // CA rotation, and their first questions are spread over the first interval.
    let before = prom.query_requests();
    let evals_before = metric_sum(d.addr, "certgate_gate_evaluations_total{", "");
    let t = Instant::now();
    wait_for(Duration::from_secs(300), "every set holding", || {
        metric_sum(d.addr, "certgate_gate_holding{", "kind=\"leaf\"") as usize == a.sets
    });
    println!("every set holding after {:.1} s", t.elapsed().as_secs_f64());
    // Per second: the busiest second tells whether the holds ask in step.
    let mut last = before;
    let mut busiest = 0.0f64;
    while t.elapsed() < Duration::from_secs(a.window) {
        std::thread::sleep(Duration::from_secs(1));
        let n = prom.query_requests();
        busiest = busiest.max(n - last);
        last = n;
    }
    let took = t.elapsed().as_secs_f64();
    let queries = last - before;
    let evals = metric_sum(d.addr, "certgate_gate_evaluations_total{", "") - evals_before;
    println!(
        "{} sets holding, poll_interval {}: {queries} queries in {took:.1} s = {:.1} queries/s, \
         busiest second {busiest} ({evals} evaluations; goal < 100/s)",
        a.sets,
        a.poll,
        queries / took
    );
    let rss = std::fs::read_to_string(format!("/proc/{}/status", d.child.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or_default()
        .to_string();
    println!("certgate {rss}");
}

fn latency(a: &Args) {
    if a.rounds == 0 {
        return;
    }
    let root = scratch();
    let spec = LeafSpec::new("localhost");
    let roots: Vec<Ca> = (0..=a.rounds)
        .map(|i| Ca::root(&format!("gate latency root {i}"), Alg::P256))
        .collect();
    let exporter = Exporter::start(verifier(&[&roots[0]]));
    let scrape = Duration::from_secs(1);
    let prom = FleetPrometheus::start(
        &[SdTarget {
            addr: exporter.addr,
            labels: Vec::new(),
        }],
        scrape,
        true,
    );
    let src = root.path().join("src0");
    write_source(&src, &roots[0].leaf(&spec), &roots[0].cert_pem);
    let cfg = config(root.path(), &prom.url(), 1, &a.latency_poll, &a.stable);
    let d = start_certgate(&cfg);
    wait_for(Duration::from_secs(60), "live", || {
        http_get(d.addr, "/readyz").starts_with("ok")
    });
    let mut samples = Vec::new();
    for k in 1..=a.rounds {
        let (prev, next) = (&roots[k - 1], &roots[k]);
        let leaf = next.leaf(&spec);
        let fp = leaf.fingerprint_sha256();
        write_source(&src, &leaf, &format!("{}{}", prev.cert_pem, next.cert_pem));
        wait_for(Duration::from_secs(60), "holding", || {
            metric_sum(d.addr, "certgate_gate_holding{", "kind=\"leaf\"") == 1.0
        });
        // Well into the hold, the verifier moves.
        std::thread::sleep(Duration::from_secs(3));
        exporter.set(verifier(&[prev, next]));
        let id = anchor_id(next);
        let q = format!("certgate_trust_anchor_info{{pod=\"verifier\",anchor_id=\"{id}\"}}");
        let t = Instant::now();
        while prom.query(&q).is_empty() {
            assert!(t.elapsed() < Duration::from_secs(30), "never scraped");
            std::thread::sleep(Duration::from_millis(25));
        }
        let scraped = Instant::now();
        while !live_is(d.addr, &fp) {
            assert!(
                scraped.elapsed() < Duration::from_secs(120),
                "never released"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        let ms = scraped.elapsed().as_secs_f64() * 1000.0;
        println!("round {k}: scraped → published {ms:.0} ms");
        samples.push(ms);
        // The verifier keeps only the new root for the next round.
        exporter.set(verifier(&[next]));
        std::thread::sleep(Duration::from_secs(2));
    }
    samples.sort_by(f64::total_cmp);
    let max = samples.last().copied().unwrap_or_default();
    let p50 = samples[samples.len() / 2];
    println!(
        "release latency (stable_for {}, poll_interval {}, scrape 1 s): p50 {p50:.0} ms, max \
         {max:.0} ms over {} rounds; bound stable_for + poll_interval + a query",
        a.stable, a.latency_poll, a.rounds
    );
}

fn live_is(addr: SocketAddr, fp: &str) -> bool {
    let status: serde_json::Value =
        serde_json::from_str(&http_get(addr, "/status")).unwrap_or_default();
    status["sets"][0]["live"]["chain"][0]["fingerprint_sha256"] == fp
}

fn main() {
    let a = args();
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("prometheus not installed; skipping (apt-get install prometheus)");
        return;
    }
    latency(&a);
    load(&a);
}
