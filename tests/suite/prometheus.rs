//! End to end with a real Prometheus: two certgate "pods" on loopback scraped by Prometheus with
//! the shipped alert rules loaded; rotations (good, rejected, expiring soon) driven through
//! kubelet-faithful writes; series, alerts and the enix x509-certificate-exporter expression
//! checked through Prometheus' HTTP API; `promtool check metrics` on the live exposition.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use time::OffsetDateTime;

use crate::util::daemon::{metric_matching, wait_until, Running};
use crate::util::fixtures::{chain_pem, write_generation};
use crate::util::kubelet::atomic_write;
use crate::util::pki::{Alg, Ca, Leaf, LeafSpec};
use crate::util::prometheus::{self, Prometheus, Sample, Target};

/// Generous: Prometheus scrapes and evaluates every second.
const BOUND: Duration = Duration::from_secs(45);

/// The shipped rules file (the Helm chart embeds this same file).
fn rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/certgate/files/certgate-alerts.yaml")
}

/// One pod's certgate: a kubelet-written source volume, a publish dir, a config.
struct Pod {
    dir: PathBuf,
}

impl Pod {
    fn new(root: &Path, name: &str) -> Self {
        let dir = root.join(name);
        fs::create_dir_all(&dir).expect("pod dir");
        Self { dir }
    }
    fn src(&self) -> PathBuf {
        self.dir.join("src")
    }
    fn rotate(&self, leaf: &Leaf, inter: &Ca, bundle: &str) {
        write_generation(
            &self.src(),
            &chain_pem(leaf, inter),
            leaf.key.pkcs8_pem().as_bytes(),
            bundle.as_bytes(),
        );
    }
    fn set(&self, name: &str, src: &Path, dns: &str, publish: bool) -> String {
        let publish = if publish {
            format!(
                "publish_dir = \"{}\"\n",
                self.dir.join(format!("live-{name}")).display()
            )
        } else {
            String::new()
        };
        format!(
            "[[set]]\nname = \"{name}\"\ncert = \"{}\"\nkey = \"{}\"\ntrust = \"{}\"\nnames = [\"{dns}\"]\n{publish}\n",
            src.join("tls.crt").display(),
            src.join("tls.key").display(),
            src.join("ca.crt").display(),
        )
    }
    fn start(&self, sets: &[String]) -> Running {
        let path = self.dir.join("certgate.toml");
        let text = format!(
            "[daemon]\nresync_interval = \"60s\"\nsettle = \"50ms\"\n\n{}",
            sets.concat()
        );
        fs::write(&path, text).expect("config");
        Running::start(&path)
    }
}

fn one(samples: &[Sample], what: &str) -> f64 {
    assert_eq!(samples.len(), 1, "{what}: {samples:?}");
    samples[0].value
}

fn has_alert(firing: &[BTreeMap<String, String>], name: &str, labels: &[(&str, &str)]) -> bool {
    firing.iter().any(|a| {
        a.get("alertname").map(String::as_str) == Some(name)
            && labels
                .iter()
                .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
    })
}

fn alert_names(firing: &[BTreeMap<String, String>]) -> Vec<String> {
    firing
        .iter()
        .map(|a| {
            format!(
                "{}{{set={:?},pod={:?}}}",
                a.get("alertname").cloned().unwrap_or_default(),
                a.get("set").cloned().unwrap_or_default(),
                a.get("pod").cloned().unwrap_or_default()
            )
        })
        .collect()
}

/// `promtool check metrics` on an exposition: exit status and output.
fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn prometheus_scrapes_certgate_and_fires_the_alerts() {
    if !prometheus::available() {
        eprintln!("skipped: prometheus/promtool not installed (CERTGATE_REQUIRE_PROMETHEUS=1 makes this a failure)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = Ca::root("e2e root", Alg::P256);
    let inter = root.intermediate("e2e intermediate", Alg::P256);
    let other = Ca::root("e2e other root", Alg::P256);
    let other_inter = other.intermediate("e2e other intermediate", Alg::P256);
    let now = OffsetDateTime::now_utc();

    // Pod A: "web" (published) and "expiring" (monitor mode, 1 day left of a 30-day life).
    let a = Pod::new(tmp.path(), "web-a");
    let first_web = inter.leaf(&LeafSpec::new("web.example.com"));
    a.rotate(&first_web, &inter, &root.cert_pem);
    let exp_src = a.dir.join("expiring-src");
    let expiring = inter.leaf(&LeafSpec::new("exp.example.com").valid(
        now - time::Duration::days(29),
        now + time::Duration::days(1),
    ));
    atomic_write(
        &exp_src,
        &[
            (
                "tls.crt",
                format!("{}{}", expiring.cert_pem, inter.cert_pem).as_bytes(),
            ),
            ("tls.key", expiring.key.pkcs8_pem().as_bytes()),
            ("ca.crt", root.cert_pem.as_bytes()),
        ],
    );
    let da = a.start(&[
        a.set("web", &a.src(), "web.example.com", true),
        a.set("expiring", &exp_src, "exp.example.com", false),
    ]);
    // Pod B of the same workload: its own leaf, and a bundle that also carries another root
    // (a bundle rollout half done): both skews.
    let b = Pod::new(tmp.path(), "web-b");
    b.rotate(
        &inter.leaf(&LeafSpec::new("web.example.com")),
        &inter,
        &format!("{}{}", root.cert_pem, other.cert_pem),
    );
    let db = b.start(&[b.set("web", &b.src(), "web.example.com", true)]);
    for d in [&da, &db] {
        wait_until(BOUND, "certgate ready", || d.get("/readyz").0 == 200);
    }

    // The live exposition passes Prometheus' own linter.
    let exposition = da.get("/metrics").1;
    let (ok, lint) = promtool_check_metrics(&exposition);
    assert!(ok, "promtool check metrics:\n{lint}\n{exposition}");
    // What issue 14 added: per-set readiness, rollbacks counted from 0, the process.
    for series in [
        "certgate_set_ready{set=\"web\"} 1",
        "certgate_rotations_total{outcome=\"published\",reason=\"ok\",set=\"web\"} 1",
        "certgate_rotations_total{outcome=\"rolled_back\",reason=\"workload_refused\",set=\"web\"} 0",
        "certgate_rotations_total{outcome=\"accepted\",reason=\"ok\",set=\"expiring\"} 1",
        "certgate_source_rejected{set=\"web\"} 0",
    ] {
        assert!(
            exposition.lines().any(|l| l == series),
            "{series} not in\n{exposition}"
        );
    }
    for family in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            metric_matching(&exposition, family, &[]).is_some_and(|v| v > 0.0),
            "{family} not in\n{exposition}"
        );
    }
    // Key bytes never reach /metrics: not one line of the key's base64.
    let key = first_web.key.pkcs8_pem();
    for line in key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
    {
        assert!(!exposition.contains(line), "key material in /metrics");
    }

    // The labels the chart's PodMonitor gives a target (workload: from a pod label).
    let labels_a = [
        ("namespace", "e2e"),
        ("workload", "web"),
        ("pod", "web-a"),
        ("container", "certgate"),
    ];
    let labels_b = [
        ("namespace", "e2e"),
        ("workload", "web"),
        ("pod", "web-b"),
        ("container", "certgate"),
    ];
    let rules = prometheus::rules_without_for(&rules_file(), tmp.path());
    let prom = Prometheus::start(
        &[
            Target {
                addr: da.addr,
                labels: &labels_a,
            },
            Target {
                addr: db.addr,
                labels: &labels_b,
            },
        ],
        &[rules],
    );
    let loaded = prom.alert_rules();
    for name in EXPECTED_ALERTS {
        assert!(
            loaded.iter().any(|l| l == name),
            "rule {name} not loaded: {loaded:?}"
        );
    }
    // And the list is complete: a new alert is added here (and to docs/runbooks.md) too.
    for name in &loaded {
        assert!(
            EXPECTED_ALERTS.contains(&name.as_str()),
            "rule {name} is not in EXPECTED_ALERTS"
        );
    }

    wait_until(BOUND, "both pods scraped and ready", || {
        prom.query("certgate_ready == 1").len() == 2
    });
    // Values in Prometheus are the ones certgate exposes.
    let expiry = one(
        &prom.query(
            r#"certgate_cert_effective_expiry_timestamp_seconds{pod="web-a",set="expiring"}"#,
        ),
        "effective expiry",
    );
    assert_eq!(expiry as i64, expiring_not_after(&expiring));
    let exposed = metric_matching(
        &da.get("/metrics").1,
        "certgate_cert_effective_expiry_timestamp_seconds",
        &[("set", "expiring")],
    );
    assert_eq!(exposed, Some(expiry));

    // The enix x509-certificate-exporter CertificateExpiration expression, unchanged, finds the
    // expiring leaf (and only it: the web leaves have 30 days, the CAs ten years).
    let enix = prom.query("(x509_cert_not_after - time()) < 14 * 86400");
    assert!(!enix.is_empty(), "enix expression returned nothing");
    assert!(
        enix.iter().all(|s| s
            .labels
            .get("filepath")
            .is_some_and(|p| p.contains("expiring-src"))),
        "{enix:?}"
    );
    assert!(
        enix.iter()
            .any(|s| s.labels.get("subject_CN").map(String::as_str) == Some("exp.example.com")),
        "{enix:?}"
    );

    // A good rotation in pod A: Prometheus sees the new leaf and the published count move.
    let before = one(
        &prom.query(r#"certgate_rotations_total{pod="web-a",set="web",outcome="published"}"#),
        "published before",
    );
    let first_fp = da.live_fingerprint(0);
    let next = inter.leaf(&LeafSpec::new("web.example.com"));
    a.rotate(&next, &inter, &root.cert_pem);
    wait_until(BOUND, "new leaf live", || {
        da.live_fingerprint(0)
            .is_some_and(|fp| Some(&fp) != first_fp.as_ref())
    });
    let live_fp = da.live_fingerprint(0).expect("live fingerprint");
    wait_until(BOUND, "new leaf in prometheus", || {
        prom.query(&format!(
            r#"certgate_cert_info{{pod="web-a",set="web",role="leaf",fingerprint_sha256="{live_fp}"}} == 1"#
        ))
        .len()
            == 1
    });
    wait_until(BOUND, "published counter moved", || {
        prom.query(r#"certgate_rotations_total{pod="web-a",set="web",outcome="published"}"#)
            .first()
            .is_some_and(|s| s.value > before)
    });
    // Exactly one leaf series per pod and set: the old one went away with the rotation.
    wait_until(BOUND, "old leaf series gone", || {
        prom.query(r#"certgate_cert_info{pod="web-a",set="web",role="leaf"}"#)
            .len()
            == 1
    });

    // A rotation from an unknown CA in pod A: rejected, the last good leaf stays.
    let stranger = other_inter.leaf(&LeafSpec::new("web.example.com"));
    a.rotate(&stranger, &other_inter, &root.cert_pem);
    wait_until(BOUND, "rejection in prometheus", || {
        prom.query(
            r#"certgate_rotations_total{pod="web-a",set="web",outcome="rejected",reason="unknown_issuer"} == 1"#,
        )
        .len()
            == 1
            && prom
                .query(r#"certgate_source_rejected{pod="web-a",set="web"} == 1"#)
                .len()
                == 1
    });
    // The refusal names its reason; one series per set at a time.
    assert_eq!(
        prom.query(
            r#"certgate_source_rejected{pod="web-a",set="web",reason="unknown_issuer"} == 1"#
        )
        .len(),
        1
    );
    assert_eq!(
        metric_matching(
            &da.get("/metrics").1,
            "certgate_source_rejected",
            &[("set", "web")]
        ),
        Some(1.0)
    );
    assert_eq!(
        prom.query(r#"certgate_set_ready{pod="web-a",set="web"} == 1"#)
            .len(),
        1,
        "a refused rotation leaves the live set ready"
    );
    assert_eq!(da.live_fingerprint(0).as_deref(), Some(live_fp.as_str()));

    // The alerts: rejected rotation (pod A), expiring leaf, and both skews across A and B.
    let want: [(&str, &[(&str, &str)]); 4] = [
        (ALERT_REJECTED, &[("set", "web"), ("pod", "web-a")]),
        (ALERT_EXPIRING_CRITICAL, &[("set", "expiring")]),
        (ALERT_BUNDLE_SKEW, &[("set", "web"), ("workload", "web")]),
        (
            ALERT_FINGERPRINT_SKEW,
            &[("set", "web"), ("workload", "web")],
        ),
    ];
    let mut firing = Vec::new();
    let waited = std::time::Instant::now();
    while waited.elapsed() < BOUND {
        firing = prom.firing();
        if want.iter().all(|(n, l)| has_alert(&firing, n, l)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for (name, labels) in want {
        assert!(
            has_alert(&firing, name, labels),
            "{name} {labels:?} not firing; firing: {:?}\nprometheus log:\n{}",
            alert_names(&firing),
            prom.log_text(),
        );
    }
    // And what must stay quiet while every pod is ready and nothing expired.
    for quiet in QUIET_ALERTS {
        assert!(
            !has_alert(&firing, quiet, &[]),
            "{quiet} fired: {:?}",
            alert_names(&firing)
        );
    }
    // Every query of the shipped Grafana dashboard runs against these series (Grafana's
    // variables filled in), and the fleet panels show both pods.
    let dashboard: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("charts/certgate/files/certgate-dashboard.json"),
        )
        .expect("dashboard file"),
    )
    .expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .expect("expr")
                .replace("$namespace", ".*")
                .replace("$set", ".*")
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m");
            let result = prom.query(&expr);
            let fleet = ["Which certificate each pod holds", "Time to expiry per set"];
            if fleet.contains(&title) {
                assert_eq!(result.len(), 3, "{title}: {expr}: {result:?}");
            }
            if title == "Which trust bundle each pod holds" {
                let fps: std::collections::BTreeSet<_> = result
                    .iter()
                    .filter_map(|s| s.labels.get("fingerprint_sha256"))
                    .collect();
                assert_eq!(fps.len(), 2, "two bundles across the pods: {result:?}");
            }
        }
    }

    // The web leaves (30 days of 30) are not "expiring".
    assert!(
        !has_alert(&firing, ALERT_EXPIRING_CRITICAL, &[("set", "web")])
            && !has_alert(&firing, ALERT_EXPIRING_WARNING, &[("set", "web")]),
        "{:?}",
        alert_names(&firing)
    );
}

fn expiring_not_after(leaf: &Leaf) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.cert_der).expect("parse leaf");
    cert.validity().not_after.timestamp()
}

const ALERT_REJECTED: &str = "CertgateRotationRejected";
const ALERT_EXPIRING_WARNING: &str = "CertgateCertExpiringSoon";
const ALERT_EXPIRING_CRITICAL: &str = "CertgateCertExpiringCritical";
const ALERT_BUNDLE_SKEW: &str = "CertgateTrustBundleSkew";
const ALERT_FINGERPRINT_SKEW: &str = "CertgateCertFingerprintSkew";
/// Alerts that must stay quiet here: every pod ready, nothing expired, no set with a gate (the
/// fleet gate's alerts, `for` stripped, fire at once if their series are there at all).
const QUIET_ALERTS: [&str; 10] = [
    "CertgateDown",
    "CertgateNotReady",
    "CertgateCertExpired",
    "CertgateRotationRolledBack",
    "CertgateWorkloadServingStaleCert",
    "CertgateTrustAnchorExpiring",
    ALERT_GATE_HOLDING,
    ALERT_GATE_DEADLINE,
    ALERT_GATE_FORCED_RELEASE,
    ALERT_GATE_BLIND,
];
const ALERT_GATE_HOLDING: &str = "CertgateGateHolding";
const ALERT_GATE_DEADLINE: &str = "CertgateGateDeadlineNear";
const ALERT_GATE_FORCED_RELEASE: &str = "CertgateGateForcedRelease";
const ALERT_GATE_BLIND: &str = "CertgateGateBlind";
/// Every alert the rules file ships (docs/runbooks.md has one section each).
const EXPECTED_ALERTS: [&str; 16] = [
    "CertgateDown",
    ALERT_REJECTED,
    ALERT_EXPIRING_WARNING,
    ALERT_EXPIRING_CRITICAL,
    ALERT_BUNDLE_SKEW,
    ALERT_FINGERPRINT_SKEW,
    "CertgateNotReady",
    "CertgateCertExpired",
    "CertgateRotationRolledBack",
    "CertgateWorkloadServingStaleCert",
    "CertgateTrustAnchorExpiring",
    "CertgateTrustAnchorPropagationIncomplete",
    ALERT_GATE_HOLDING,
    ALERT_GATE_DEADLINE,
    ALERT_GATE_FORCED_RELEASE,
    ALERT_GATE_BLIND,
];
