//! For `certgate fleet` tests and its bench: synthetic certgate "pods" (a tiny HTTP server
//! per target serving an exposition the test controls) and a real Prometheus (Debian's
//! `prometheus`) finding them through `file_sd_configs` with namespace/pod/workload labels.
//! Self-contained (std, serde_json, tempfile), so `benches/fleet.rs` includes it by path.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// === the synthetic exporter ===

/// One anchor of a pod's live bundle, as certgate exports it.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// 64 hex digits.
    pub id: String,
    /// Its subject.
    pub subject: String,
    /// First seen, Unix seconds.
    pub first_seen: f64,
    /// `startup` or `rotation`.
    pub via: &'static str,
}

impl Anchor {
    /// An anchor first seen at `first_seen` `via` startup or rotation.
    pub fn new(id: &str, subject: &str, first_seen: f64, via: &'static str) -> Self {
        Self {
            id: id.into(),
            subject: subject.into(),
            first_seen,
            via,
        }
    }
}

/// What one set of one pod exports: its anchors and its leaf.
#[derive(Debug, Clone)]
pub struct PodSet {
    /// The set name.
    pub set: String,
    /// The live bundle's anchors.
    pub anchors: Vec<Anchor>,
    /// The leaf's fingerprint.
    pub leaf_fingerprint: String,
    /// The leaf's issuer.
    pub leaf_issuer: String,
    /// The leaf's notAfter.
    pub leaf_not_after: f64,
}

/// The exposition of one pod's certgate (the per-pod series contract of issue 12). `labels`
/// are added to every series (with `honor_labels`, a synthetic target names many pods).
pub fn exposition(sets: &[PodSet], labels: &str) -> String {
    let mut out = String::new();
    let sep = if labels.is_empty() { "" } else { "," };
    let _ = writeln!(out, "# TYPE certgate_build_info gauge");
    let _ = writeln!(
        out,
        "certgate_build_info{{{labels}{sep}version=\"0.1.0\"}} 1"
    );
    let _ = writeln!(out, "# TYPE certgate_trust_anchor_info gauge");
    for s in sets {
        for a in &s.anchors {
            let _ = writeln!(
                out,
                "certgate_trust_anchor_info{{{labels}{sep}set=\"{}\",anchor_id=\"{}\",subject=\"{}\"}} 1",
                s.set, a.id, a.subject
            );
        }
    }
    let _ = writeln!(
        out,
        "# TYPE certgate_trust_anchor_first_seen_timestamp_seconds gauge"
    );
    for s in sets {
        for a in &s.anchors {
            let _ = writeln!(
                out,
                "certgate_trust_anchor_first_seen_timestamp_seconds{{{labels}{sep}set=\"{}\",anchor_id=\"{}\",via=\"{}\"}} {}",
                s.set, a.id, a.via, a.first_seen
            );
        }
    }
    let _ = writeln!(out, "# TYPE certgate_trust_bundle_info gauge");
    for s in sets {
        let _ = writeln!(
            out,
            "certgate_trust_bundle_info{{{labels}{sep}set=\"{}\",fingerprint_sha256=\"{}\"}} 1",
            s.set,
            bundle_fingerprint(&s.anchors)
        );
    }
    let _ = writeln!(out, "# TYPE certgate_cert_info gauge");
    for s in sets {
        let _ = writeln!(
            out,
            "certgate_cert_info{{{labels}{sep}set=\"{}\",role=\"leaf\",fingerprint_sha256=\"{}\",serial=\"01\",subject=\"CN=web\",issuer=\"{}\"}} 1",
            s.set, s.leaf_fingerprint, s.leaf_issuer
        );
    }
    let _ = writeln!(
        out,
        "# TYPE certgate_cert_not_after_timestamp_seconds gauge"
    );
    for s in sets {
        let _ = writeln!(
            out,
            "certgate_cert_not_after_timestamp_seconds{{{labels}{sep}set=\"{}\",role=\"leaf\"}} {}",
            s.set, s.leaf_not_after
        );
    }
    out
}

/// A stand-in for the bundle fingerprint: 64 hex digits that depend only on the set of
/// anchor ids (as certgate's, once it no longer depends on their order).
pub fn bundle_fingerprint(anchors: &[Anchor]) -> String {
    let mut ids: Vec<&str> = anchors.iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    (0u64..4)
        .map(|seed| {
            // FNV-1a, seeded per quarter.
            let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
            for b in ids.iter().flat_map(|id| id.bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            format!("{h:016x}")
        })
        .collect()
}

/// A scrape target serving `/metrics` from text the test sets; stopped (connections refused)
/// on [`Exporter::stop`] or drop.
pub struct Exporter {
    pub addr: SocketAddr,
    body: Arc<Mutex<Arc<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Starts serving `body` on an ephemeral loopback port.
    pub fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind exporter");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let body = Arc::new(Mutex::new(Arc::new(body)));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (body.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let text = b.lock().expect("body").clone();
                        let _ = serve(conn, &text);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            addr,
            body,
            stop,
            thread: Some(thread),
        }
    }

    /// Replaces what the next scrape gets.
    pub fn set(&self, body: String) {
        *self.body.lock().expect("body") = Arc::new(body);
    }

    /// Stops listening: the next scrape is refused (`up == 0`).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut conn: TcpStream, body: &str) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body.as_bytes())
}

// === Prometheus with file_sd ===

/// Whether `prometheus` is installed; without it the tests skip unless
/// `CERTGATE_REQUIRE_PROMETHEUS=1` makes that a failure.
pub fn prometheus_available() -> bool {
    let found = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && std::env::var_os("CERTGATE_REQUIRE_PROMETHEUS").is_some_and(|v| v == "1") {
        panic!("prometheus not installed (apt-get install prometheus)");
    }
    found
}

/// One file_sd target: its address and labels.
pub struct SdTarget {
    pub addr: SocketAddr,
    pub labels: Vec<(String, String)>,
}

impl SdTarget {
    /// A pod target with namespace, pod and workload labels.
    pub fn pod(addr: SocketAddr, namespace: &str, workload: &str, pod: &str) -> Self {
        Self {
            addr,
            labels: vec![
                ("namespace".into(), namespace.into()),
                ("workload".into(), workload.into()),
                ("pod".into(), pod.into()),
            ],
        }
    }
}

/// A Prometheus scraping the targets of one `file_sd_configs` file; killed on drop.
pub struct FleetPrometheus {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub scrape_interval: Duration,
    dir: tempfile::TempDir,
}

impl FleetPrometheus {
    /// Starts Prometheus (job `certgate`, scraping every `scrape_interval`; `honor_labels` for
    /// synthetic targets naming many pods) over `targets`; returns once it is ready.
    pub fn start(targets: &[SdTarget], scrape_interval: Duration, honor_labels: bool) -> Self {
        Self::start_with_rules(targets, scrape_interval, honor_labels, None)
    }

    /// [`FleetPrometheus::start`] also evaluating the alert rules of `rules` every scrape
    /// interval (the `ALERTS` series then says which fire).
    pub fn start_with_rules(
        targets: &[SdTarget],
        scrape_interval: Duration,
        honor_labels: bool,
        rules: Option<&Path>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let secs = scrape_interval.as_secs_f64();
        let rule_files = rules
            .map(|r| format!("rule_files: [{:?}]\n", r.display().to_string()))
            .unwrap_or_default();
        let config = format!(
            "global:\n  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\n\
             \x20 evaluation_interval: {secs}s\n{rule_files}\
             scrape_configs:\n  - job_name: certgate\n    honor_labels: {honor_labels}\n\
             \x20   file_sd_configs:\n      - files: [{:?}]\n        refresh_interval: 1s\n",
            dir.path().join("targets.json").display().to_string()
        );
        fs::write(dir.path().join("prometheus.yml"), config).expect("write prometheus.yml");
        let mut p = Self {
            child: None,
            addr: free_port(),
            scrape_interval,
            dir,
        };
        p.set_targets(targets);
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("prometheus.log"))
            .expect("log");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={}", self.addr))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        self.child = Some(child);
        let addr = self.addr;
        wait_for(Duration::from_secs(60), "prometheus ready", || {
            get(addr, "/-/ready").is_some_and(|(c, _)| c == 200)
        });
    }

    /// Starts Prometheus again after [`FleetPrometheus::stop`], on the same address and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Rewrites the file_sd file (atomically: Prometheus never reads half of it).
    pub fn set_targets(&self, targets: &[SdTarget]) {
        let doc: Vec<serde_json::Value> = targets
            .iter()
            .map(|t| {
                let labels: serde_json::Map<String, serde_json::Value> = t
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                serde_json::json!({ "targets": [t.addr.to_string()], "labels": labels })
            })
            .collect();
        let tmp = self.dir.path().join("targets.json.tmp");
        fs::write(&tmp, serde_json::to_vec(&doc).expect("json")).expect("write targets");
        fs::rename(&tmp, self.dir.path().join("targets.json")).expect("rename targets");
    }

    /// The API base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An instant query's result: each series' labels and value.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Map<String, serde_json::Value>, f64)> {
        let (code, body) = get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        )
        .expect("query prometheus");
        assert_eq!(code, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                (
                    r["metric"].as_object().cloned().unwrap_or_default(),
                    r["value"][1]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(f64::NAN),
                )
            })
            .collect()
    }

    /// The value of a scalar-ish query (the first series), if any.
    pub fn value(&self, promql: &str) -> Option<f64> {
        self.query(promql).first().map(|(_, v)| *v)
    }

    /// How many `/api/v1/query` requests Prometheus has answered (its own counter).
    pub fn query_requests(&self) -> f64 {
        let (_, text) = get(self.addr, "/metrics").expect("prometheus /metrics");
        text.lines()
            .filter(|l| {
                l.starts_with("prometheus_http_requests_total{")
                    && l.contains("handler=\"/api/v1/query\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Prometheus' CPU time so far (user + system, from /proc; 10 ms ticks).
    pub fn cpu(&self) -> Duration {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return Duration::ZERO;
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let ticks: u64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<u64>().ok())
            .sum();
        Duration::from_millis(ticks * 10)
    }

    /// Kills Prometheus.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Prometheus' log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The data directory's parent (for scratch files).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for FleetPrometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `cond` every 50 ms until it holds; panics after `bound`.
pub fn wait_for(bound: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < bound,
            "timed out after {bound:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.1 GET (`Connection: close`); `None` when the server does not answer.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((code, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr")
}

/// Percent-encodes a query parameter.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The wall clock, Unix seconds.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
