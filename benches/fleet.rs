//! `certgate fleet` at scale: a real Prometheus (Debian's) holding the series of 1,000 and
//! 10,000 certgate pods, and the real `certgate fleet` / `fleet anchors` binary against it.
//! Measures whole-process wall time (spawn to exit, as an operator or pipeline sees it) and
//! counts the queries each invocation sends, from Prometheus' own
//! `prometheus_http_requests_total{handler="/api/v1/query"}`.
//!
//! Two shapes of fleet (`--mode`):
//! - `honor` (default): a synthetic exporter per 1,000 pods, scraped with `honor_labels`, its
//!   series carrying namespace/pod/workload themselves (what the issue allows for scale);
//!   Prometheus then holds one `up` series per exporter, not per pod.
//! - `targets`: one scrape target per pod (file_sd, `__param_part` picks the pod's exposition
//!   from one exporter), so Prometheus also holds one `up` series per pod, as in a cluster.
//!
//! ```sh
//! cargo bench --bench fleet                        # honor, 1,000 and 10,000 pods
//! cargo bench --bench fleet -- --mode targets      # one target per pod
//! cargo bench --bench fleet -- --pods 10000 --runs 11
//! cargo bench --bench fleet -- --nice -10          # root: ahead of other work on the machine
//! ```
//! Pods: an old root from startup, and on 70 % a new root by rotation (so 1.7 anchors and two
//! distinct bundles), one leaf, 20 workloads of one namespace, one set.

// Test and bench code may panic on a broken fixture; the lint is for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/util/fleet.rs"]
mod fleet_util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_util::{exposition, now_unix, wait_for, Anchor, FleetPrometheus, PodSet, SdTarget};

const OLD: &str = "0f1e2d3c4b5a69780f1e2d3c4b5a69780f1e2d3c4b5a69780f1e2d3c4b5a6978";
const NEW: &str = "a1b2c3d4e5f60718a1b2c3d4e5f60718a1b2c3d4e5f60718a1b2c3d4e5f60718";
/// Pods per synthetic exporter target in `honor` mode.
const PODS_PER_TARGET: usize = 1000;

struct Args {
    hold: u64,
    nice: Option<i32>,
    pods: Vec<usize>,
    runs: usize,
    targets_mode: bool,
}

fn args() -> Args {
    let mut a = Args {
        hold: 0,
        nice: None,
        pods: vec![1000, 10_000],
        runs: 7,
        targets_mode: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--pods" => a.pods = vec![val.parse().expect("--pods N")],
            "--nice" => a.nice = Some(val.parse().expect("--nice N")),
            "--hold" => a.hold = val.parse().expect("--hold SECONDS"),
            "--runs" => a.runs = val.parse().expect("--runs N"),
            "--mode" => {
                a.targets_mode = match val.as_str() {
                    "honor" => false,
                    "targets" => true,
                    other => panic!("--mode honor|targets, not {other}"),
                }
            }
            // cargo bench passes --bench; ignore what we do not know.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// Serves `/metrics?part=KEY` from a fixed map, on a few threads.
struct PartServer {
    addr: SocketAddr,
}

impl PartServer {
    fn start(parts: HashMap<String, String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let parts = Arc::new(parts);
        for _ in 0..4 {
            let l = listener.try_clone().unwrap();
            let parts = parts.clone();
            std::thread::spawn(move || {
                for conn in l.incoming().flatten() {
                    let _ = serve(conn, &parts);
                }
            });
        }
        Self { addr }
    }
}

fn serve(mut conn: TcpStream, parts: &HashMap<String, String>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&req);
    let key = head
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.split_once("part="))
        .map(|(_, k)| k.split('&').next().unwrap_or_default().to_string())
        .unwrap_or_default();
    let empty = String::new();
    let body = parts.get(&key).unwrap_or(&empty);
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body.as_bytes())
}

fn pod_set(i: usize, t0: f64) -> PodSet {
    let mut anchors = vec![Anchor::new(
        OLD,
        "CN=old root,O=bench",
        t0 - 3600.0,
        "startup",
    )];
    if i % 10 < 7 {
        anchors.push(Anchor::new(
            NEW,
            "CN=new root,O=bench",
            t0 - 600.0 + (i % 600) as f64,
            "rotation",
        ));
    }
    PodSet {
        set: "default".into(),
        anchors,
        leaf_fingerprint: format!("{:064x}", i),
        leaf_issuer: "CN=bench intermediate,O=bench".into(),
        leaf_not_after: t0 + 86_400.0 * 30.0,
    }
}

fn pod_labels(i: usize) -> (String, String) {
    (format!("w{:02}", i % 20), format!("w{:02}-{i:05}", i % 20))
}

struct Fleet {
    prom: FleetPrometheus,
    _server: PartServer,
    series: usize,
}

fn start_fleet(pods: usize, targets_mode: bool) -> Fleet {
    let t0 = now_unix();
    let mut parts = HashMap::new();
    let mut targets = Vec::new();
    let mut series = 0;
    if targets_mode {
        for i in 0..pods {
            let set = pod_set(i, t0);
            series += 2 * set.anchors.len() + 4;
            parts.insert(i.to_string(), exposition(&[set], ""));
        }
    } else {
        for part in 0..pods.div_ceil(PODS_PER_TARGET) {
            let mut body = String::new();
            for i in part * PODS_PER_TARGET..((part + 1) * PODS_PER_TARGET).min(pods) {
                let (workload, pod) = pod_labels(i);
                let set = pod_set(i, t0);
                series += 2 * set.anchors.len() + 4;
                let labels = format!("namespace=\"bench\",workload=\"{workload}\",pod=\"{pod}\"");
                body.push_str(&exposition(&[set], &labels));
            }
            parts.insert(part.to_string(), group_by_family(&body));
        }
    }
    let server = PartServer::start(parts);
    if targets_mode {
        for i in 0..pods {
            let (workload, pod) = pod_labels(i);
            let mut t = SdTarget::pod(server.addr, "bench", &workload, &pod);
            t.labels.push(("__param_part".into(), i.to_string()));
            targets.push(t);
        }
    } else {
        for part in 0..pods.div_ceil(PODS_PER_TARGET) {
            targets.push(SdTarget {
                addr: server.addr,
                labels: vec![("__param_part".into(), part.to_string())],
            });
        }
    }
    // The chart's PodMonitor interval.
    let interval = Duration::from_secs(30);
    let prom = FleetPrometheus::start(&targets, interval, !targets_mode);
    wait_for(
        Duration::from_secs(180),
        "every pod's series ingested",
        || {
            prom.value("count({__name__=~\"certgate_.*\"})") == Some(series as f64)
                && (!targets_mode || prom.value("count(up == 1)") == Some(pods as f64))
        },
    );
    Fleet {
        prom,
        _server: server,
        series,
    }
}

/// The text format wants each family's samples together, under one TYPE line: regroups the
/// joined per-pod expositions by family.
fn group_by_family(body: &str) -> String {
    let mut families: Vec<(String, Vec<&str>)> = Vec::new();
    for line in body.lines() {
        if line.starts_with('#') {
            continue;
        }
        let name = line
            .split(['{', ' '])
            .next()
            .unwrap_or_default()
            .to_string();
        match families.iter_mut().find(|(n, _)| *n == name) {
            Some((_, lines)) => lines.push(line),
            None => families.push((name, vec![line])),
        }
    }
    let mut out = String::with_capacity(body.len());
    for (name, lines) in families {
        out.push_str(&format!("# TYPE {name} gauge\n"));
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// CPU time (user + system) of every waited-for child so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_CHILDREN takes no other input.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs `certgate fleet ARGS` `runs` times (after one warm-up): wall times, certgate's CPU
/// times, queries per run, output size.
fn measure(
    prom: &FleetPrometheus,
    args: &[&str],
    runs: usize,
) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>, Vec<f64>, usize) {
    let bin = env!("CARGO_BIN_EXE_certgate");
    let url = prom.url();
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    let mut prom_cpu = Vec::new();
    let mut queries = Vec::new();
    let mut out_bytes = 0;
    for run in 0..=runs {
        let before = prom.query_requests();
        let cpu_before = children_cpu();
        let prom_before = prom.cpu();
        let start = Instant::now();
        let o = Command::new(bin)
            .args(["fleet", "--prometheus", &url])
            .args(args)
            .output()
            .expect("run certgate fleet");
        let took = start.elapsed();
        let cpu_took = children_cpu() - cpu_before;
        let prom_took = prom.cpu() - prom_before;
        let after = prom.query_requests();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        if run > 0 {
            times.push(took);
            cpu.push(cpu_took);
            prom_cpu.push(prom_took);
            queries.push(after - before);
            out_bytes = o.stdout.len();
        }
    }
    times.sort();
    cpu.sort();
    prom_cpu.sort();
    (times, cpu, prom_cpu, queries, out_bytes)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let a = args();
    if let Some(n) = a.nice {
        // Prometheus and certgate inherit it: on a machine shared with other work, a negative
        // value (root only) stands in for having the cores to themselves.
        // SAFETY: setpriority on our own process; no memory is passed.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, n) };
        assert_eq!(
            rc,
            0,
            "setpriority({n}): {}",
            std::io::Error::last_os_error()
        );
    }
    if !fleet_util::prometheus_available() {
        eprintln!("skipped: prometheus not installed (apt-get install prometheus)");
        return;
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average {} at start, nice {}; mode: {}; {} runs per command \
         (after one warm-up)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        a.nice.unwrap_or(0),
        if a.targets_mode {
            "one scrape target per pod"
        } else {
            "honor_labels, 1,000 pods per target"
        },
        a.runs
    );
    println!(
        "| pods | certgate series | command | median | certgate CPU | Prometheus CPU | min | max | \
         queries per run | output |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut raw = Vec::new();
    for &pods in &a.pods {
        let fleet = start_fleet(pods, a.targets_mode);
        if a.hold > 0 {
            // For profiling by hand: the fleet stays up this long.
            eprintln!("holding {}s: {}", a.hold, fleet.prom.url());
            std::thread::sleep(Duration::from_secs(a.hold));
        }
        for q in [
            "min by (namespace, pod, workload) (up{job=~\".*certgate.*\"})",
            "min by (namespace, pod, set, anchor_id, via, workload) \
             (certgate_trust_anchor_first_seen_timestamp_seconds{})",
            "count by (namespace, pod, set, fingerprint_sha256, workload) \
             (certgate_trust_bundle_info{})",
            "count by (namespace, pod, set, anchor_id, subject) \
             (certgate_trust_anchor_info{namespace=~\"bench\", pod=~\"w00-00000|w07-00007\"})",
            "count by (anchor_id, subject) (certgate_trust_anchor_info{anchor_id=~\"0f1e2d3c4b5a69780f1e2d3c4b5a69780f1e2d3c4b5a69780f1e2d3c4b5a6978|a1b2c3d4e5f60718a1b2c3d4e5f60718a1b2c3d4e5f60718a1b2c3d4e5f60718\", namespace=~\"bench\", pod=~\"w00-00000\"})",
            "count by (namespace, pod, set, fingerprint_sha256, issuer, workload) \
             (certgate_cert_info{role=\"leaf\"})",
            "min by (namespace, pod, set, workload) \
             (certgate_cert_not_after_timestamp_seconds{role=\"leaf\"})",
        ] {
            let mut times: Vec<Duration> = (0..5)
                .map(|_| {
                    let start = Instant::now();
                    let (code, body) = fleet_util::get(
                        fleet.prom.addr,
                        &format!("/api/v1/query?query={}", fleet_util::encode(q)),
                    )
                    .expect("query");
                    assert_eq!(code, 200, "{body}");
                    start.elapsed()
                })
                .collect();
            times.sort();
            raw.push(format!("| {pods} | `{q}` | {} |", ms(times[2])));
        }
        for cmd in [
            &[][..],
            &["anchors"][..],
            &["--json"][..],
            &["stale", "--newest"][..],
        ] {
            let (times, cpu, prom_cpu, queries, bytes) = measure(&fleet.prom, cmd, a.runs);
            let median = times[times.len() / 2];
            let q: Vec<String> = {
                let mut q: Vec<String> = queries.iter().map(|q| format!("{q}")).collect();
                q.dedup();
                q
            };
            println!(
                "| {pods} | {} | `certgate fleet {}` | {} | {} | {} | {} | {} | {} | {} KiB |",
                fleet.series,
                cmd.join(" "),
                ms(median),
                ms(cpu[cpu.len() / 2]),
                ms(prom_cpu[prom_cpu.len() / 2]),
                ms(times[0]),
                ms(times[times.len() - 1]),
                q.join(", "),
                bytes / 1024
            );
            if pods >= 10_000 && median >= Duration::from_secs(1) {
                println!("  ^ over the 1 s target");
            }
        }
    }
    println!(
        "\nEach query alone (GET, median of 5):\n\n| pods | query | median |\n| --- | --- | --- |"
    );
    for line in raw {
        println!("{line}");
    }
}
