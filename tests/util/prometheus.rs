//! A real Prometheus server (Debian's `prometheus` package) scraping certgate on loopback, and
//! its HTTP API.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::daemon::{http_get, wait_until};

/// One series of a query result: its labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A scrape target: the address and the labels a PodMonitor would give it.
pub struct Target<'a> {
    pub addr: SocketAddr,
    pub labels: &'a [(&'a str, &'a str)],
}

/// A running Prometheus; killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Whether the `prometheus` and `promtool` binaries are on PATH. When they are not, the tests
/// that need them skip unless `CERTGATE_REQUIRE_PROMETHEUS=1` (set by `.ci/run`) makes that a
/// failure.
pub fn available() -> bool {
    let found = ["prometheus", "promtool"].iter().all(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found && std::env::var_os("CERTGATE_REQUIRE_PROMETHEUS").is_some_and(|v| v == "1") {
        panic!("prometheus/promtool not installed (apt-get install prometheus)");
    }
    found
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second and evaluating `rule_files` every
    /// second; returns once it answers `/-/ready`.
    pub fn start(targets: &[Target<'_>], rule_files: &[PathBuf]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
        );
        config.push_str("rule_files:\n");
        for f in rule_files {
            let _ = writeln!(config, "  - {:?}", f.display().to_string());
        }
        config.push_str("scrape_configs:\n  - job_name: certgate\n    static_configs:\n");
        for t in targets {
            let _ = writeln!(config, "      - targets: [\"{}\"]", t.addr);
            config.push_str("        labels:\n");
            for (k, v) in t.labels {
                let _ = writeln!(config, "          {k}: {v:?}");
            }
        }
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, &config).expect("write prometheus.yml");
        let addr = free_port();
        let log = dir.path().join("prometheus.log");
        let log_file = fs::File::create(&log).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn prometheus");
        let p = Self {
            child,
            addr,
            log,
            _dir: dir,
        };
        wait_until(Duration::from_secs(30), "prometheus ready", || {
            std::net::TcpStream::connect(addr).is_ok() && http_get(addr, "/-/ready").0 == 200
        });
        p
    }

    /// Prometheus' own log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query through `/api/v1/query`.
    pub fn query(&self, promql: &str) -> Vec<Sample> {
        let (code, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        );
        assert_eq!(code, 200, "query {promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
        assert_eq!(v["status"], "success", "{body}");
        assert_eq!(v["data"]["resultType"], "vector", "{body}");
        v["data"]["result"]
            .as_array()
            .expect("result array")
            .iter()
            .map(|r| Sample {
                labels: labels(&r["metric"]),
                value: r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("sample value"),
            })
            .collect()
    }

    /// The alerts in state `firing`, from `/api/v1/alerts`: each alert's labels.
    pub fn firing(&self) -> Vec<BTreeMap<String, String>> {
        let (code, body) = http_get(self.addr, "/api/v1/alerts");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("alerts JSON");
        v["data"]["alerts"]
            .as_array()
            .expect("alerts array")
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| labels(&a["labels"]))
            .collect()
    }

    /// The rule groups Prometheus loaded, from `/api/v1/rules`: every alerting rule's name.
    pub fn alert_rules(&self) -> Vec<String> {
        let (code, body) = http_get(self.addr, "/api/v1/rules?type=alert");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("rules JSON");
        v["data"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a rules file with every `for:` cut to 0s, so an end-to-end run sees the alert
/// expressions fire in seconds; the `for:` windows themselves are covered by
/// `promtool test rules`.
pub fn rules_without_for(src: &Path, dir: &Path) -> PathBuf {
    let text = fs::read_to_string(src).expect("read rules file");
    let out: String = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 0s\n", &l[..l.len() - l.trim_start().len()]),
            None => format!("{l}\n"),
        })
        .collect();
    let path = dir.join("rules-no-for.yaml");
    fs::write(&path, out).expect("write rules copy");
    path
}

fn labels(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr")
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters pass through).
fn encode(s: &str) -> String {
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
