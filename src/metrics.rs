//! Every metric certgate exports, registered in one place. Series describing live material are
//! replaced whole when a set's material changes, so label cardinality stays bounded by what is
//! live now.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use crate::labels::{Outcome, Reason};
use crate::pipeline::inspect::{CertInfo, Role};
use crate::state::{LiveMaterial, Snapshot};

/// The families whose series belong to one set's live material.
#[derive(Debug, Clone, Copy)]
enum LiveFamily {
    NotAfter,
    NotBefore,
    EffectiveExpiry,
    CertInfo,
    TrustInfo,
    TrustAnchors,
    TrustEarliest,
    X509NotAfter,
    X509NotBefore,
    X509Expired,
}

/// One written series: its family and label values.
type Series = (LiveFamily, Vec<String>);

/// The registry and its metrics.
pub struct Metrics {
    registry: Registry,
    not_after: GaugeVec,
    not_before: GaugeVec,
    effective_expiry: GaugeVec,
    cert_info: GaugeVec,
    trust_info: GaugeVec,
    trust_anchors: GaugeVec,
    trust_earliest: GaugeVec,
    cert_valid: GaugeVec,
    ready: Gauge,
    rotations: IntCounterVec,
    last_rotation: GaugeVec,
    reaction: HistogramVec,
    handshake: prometheus::Histogram,
    workload_serving: GaugeVec,
    source_rejected: GaugeVec,
    x509_not_after: GaugeVec,
    x509_not_before: GaugeVec,
    x509_expired: GaugeVec,
    /// Label values written per set, so they can be removed when the material changes.
    live_series: Mutex<HashMap<String, Vec<Series>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

const ENIX_LABELS: &[&str] = &[
    "filepath",
    "filename",
    "serial_number",
    "subject_CN",
    "subject_O",
    "issuer_CN",
    "issuer_O",
];

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, prometheus::Error> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        let not_after = gauge_vec(
            &r,
            "certgate_cert_not_after_timestamp_seconds",
            "Not-after of the live certificate by chain role (earliest among intermediates).",
            &["set", "role"],
        )?;
        let not_before = gauge_vec(
            &r,
            "certgate_cert_not_before_timestamp_seconds",
            "Not-before of the live certificate by chain role (latest among intermediates).",
            &["set", "role"],
        )?;
        let effective_expiry = gauge_vec(
            &r,
            "certgate_cert_effective_expiry_timestamp_seconds",
            "Earliest not-after along the live chain.",
            &["set"],
        )?;
        let cert_info = gauge_vec(
            &r,
            "certgate_cert_info",
            "The live chain, one series per certificate (value 1).",
            &[
                "set",
                "role",
                "fingerprint_sha256",
                "serial",
                "subject",
                "issuer",
            ],
        )?;
        let trust_info = gauge_vec(
            &r,
            "certgate_trust_bundle_info",
            "The live trust bundle (value 1); fingerprint over its anchors.",
            &["set", "fingerprint_sha256"],
        )?;
        let trust_anchors = gauge_vec(
            &r,
            "certgate_trust_bundle_anchors",
            "Number of anchors in the live trust bundle.",
            &["set"],
        )?;
        let trust_earliest = gauge_vec(
            &r,
            "certgate_trust_bundle_earliest_expiry_timestamp_seconds",
            "Earliest not-after among the live bundle's anchors.",
            &["set"],
        )?;
        let cert_valid = gauge_vec(
            &r,
            "certgate_cert_valid",
            "1 when the set's live chain is valid now.",
            &["set"],
        )?;
        let ready = Gauge::new(
            "certgate_ready",
            "1 when every required set is ready (as /readyz).",
        )?;
        r.register(Box::new(ready.clone()))?;
        let rotations = IntCounterVec::new(
            Opts::new(
                "certgate_rotations_total",
                "Candidates by outcome (published, rejected, rolled_back) and reason.",
            ),
            &["set", "outcome", "reason"],
        )?;
        r.register(Box::new(rotations.clone()))?;
        let last_rotation = gauge_vec(
            &r,
            "certgate_last_rotation_timestamp_seconds",
            "When a set last saw each outcome.",
            &["set", "outcome"],
        )?;
        let reaction = HistogramVec::new(
            HistogramOpts::new(
                "certgate_rotation_reaction_seconds",
                "Source change seen → published or rejected.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["outcome"],
        )?;
        r.register(Box::new(reaction.clone()))?;
        let handshake = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "certgate_handshake_duration_seconds",
                "Loopback self-handshake duration.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        r.register(Box::new(handshake.clone()))?;
        let workload_serving = gauge_vec(
            &r,
            "certgate_workload_serving_live_cert",
            "1 when the workload serves the live leaf (verification configured).",
            &["set"],
        )?;
        let source_rejected = gauge_vec(
            &r,
            "certgate_source_rejected",
            "1 while the newest source material was refused (rejected or rolled back) and is not live.",
            &["set"],
        )?;
        let build_info = gauge_vec(
            &r,
            "certgate_build_info",
            "certgate build (value 1).",
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        let x509_not_after = gauge_vec(
            &r,
            "x509_cert_not_after",
            "Not-after (x509-certificate-exporter compatible).",
            ENIX_LABELS,
        )?;
        let x509_not_before = gauge_vec(
            &r,
            "x509_cert_not_before",
            "Not-before (x509-certificate-exporter compatible).",
            ENIX_LABELS,
        )?;
        let x509_expired = gauge_vec(
            &r,
            "x509_cert_expired",
            "1 when expired (x509-certificate-exporter compatible).",
            ENIX_LABELS,
        )?;
        Ok(Self {
            registry: r,
            not_after,
            not_before,
            effective_expiry,
            cert_info,
            trust_info,
            trust_anchors,
            trust_earliest,
            cert_valid,
            ready,
            rotations,
            last_rotation,
            reaction,
            handshake,
            workload_serving,
            source_rejected,
            x509_not_after,
            x509_not_before,
            x509_expired,
            live_series: Mutex::new(HashMap::new()),
        })
    }

    fn family(&self, f: LiveFamily) -> &GaugeVec {
        match f {
            LiveFamily::NotAfter => &self.not_after,
            LiveFamily::NotBefore => &self.not_before,
            LiveFamily::EffectiveExpiry => &self.effective_expiry,
            LiveFamily::CertInfo => &self.cert_info,
            LiveFamily::TrustInfo => &self.trust_info,
            LiveFamily::TrustAnchors => &self.trust_anchors,
            LiveFamily::TrustEarliest => &self.trust_earliest,
            LiveFamily::X509NotAfter => &self.x509_not_after,
            LiveFamily::X509NotBefore => &self.x509_not_before,
            LiveFamily::X509Expired => &self.x509_expired,
        }
    }

    /// Replaces every live-material series of `set` with those of `live` (none when `None`).
    pub fn set_live(&self, set: &str, live: Option<&LiveMaterial>, now: i64) {
        let mut map = self.live_series.lock().unwrap_or_else(|p| p.into_inner());
        for (family, labels) in map.remove(set).unwrap_or_default() {
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            let _ = self.family(family).remove_label_values(&refs);
        }
        let Some(live) = live else {
            return;
        };
        let mut written = Vec::new();
        let mut put = |family: LiveFamily, labels: Vec<String>, value: f64| {
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            self.family(family).with_label_values(&refs).set(value);
            written.push((family, labels));
        };
        for role in [Role::Leaf, Role::Intermediate, Role::Anchor] {
            let of_role = live.chain.iter().filter(|c| c.role == role);
            if let Some(na) = of_role.clone().map(|c| c.not_after).min() {
                put(
                    LiveFamily::NotAfter,
                    vec![set.into(), role.as_str().into()],
                    na as f64,
                );
            }
            if let Some(nb) = of_role.map(|c| c.not_before).max() {
                put(
                    LiveFamily::NotBefore,
                    vec![set.into(), role.as_str().into()],
                    nb as f64,
                );
            }
        }
        put(
            LiveFamily::EffectiveExpiry,
            vec![set.into()],
            live.effective_expiry as f64,
        );
        for c in &live.chain {
            put(
                LiveFamily::CertInfo,
                vec![
                    set.into(),
                    c.role.as_str().into(),
                    c.fingerprint_sha256.to_string(),
                    c.serial.clone(),
                    c.subject.clone(),
                    c.issuer.clone(),
                ],
                1.0,
            );
        }
        if let Some(fp) = &live.trust_fingerprint {
            put(LiveFamily::TrustInfo, vec![set.into(), fp.clone()], 1.0);
            put(
                LiveFamily::TrustAnchors,
                vec![set.into()],
                live.anchors.len() as f64,
            );
            if let Some(e) = live.anchors.iter().map(|a| a.not_after).min() {
                put(LiveFamily::TrustEarliest, vec![set.into()], e as f64);
            }
        }
        let cert_certs = live.chain.iter().filter(|c| c.role != Role::Anchor);
        let mut enix = |path: &str, c: &CertInfo| {
            let labels = enix_labels(path, c);
            put(LiveFamily::X509NotAfter, labels.clone(), c.not_after as f64);
            put(
                LiveFamily::X509NotBefore,
                labels.clone(),
                c.not_before as f64,
            );
            put(
                LiveFamily::X509Expired,
                labels,
                if c.not_after < now { 1.0 } else { 0.0 },
            );
        };
        for c in cert_certs {
            enix(&live.cert_path, c);
        }
        if let Some(tp) = &live.trust_path {
            for a in &live.anchors {
                enix(tp, a);
            }
        }
        map.insert(set.to_string(), written);
    }

    /// Declares a set so its state gauges exist from the start.
    pub fn declare_set(&self, set: &str) {
        self.source_rejected.with_label_values(&[set]).set(0.0);
    }

    /// Records that the source now matches what is live (nothing refused pending).
    pub fn source_is_live(&self, set: &str) {
        self.source_rejected.with_label_values(&[set]).set(0.0);
    }

    /// Counts a candidate's outcome.
    /// `reaction` is `None` when there is no source change to time from (a rollback of material
    /// that was live before this process started).
    pub fn rotation(
        &self,
        set: &str,
        outcome: Outcome,
        reason: Option<Reason>,
        reaction: Option<Duration>,
        now: i64,
    ) {
        self.rotations
            .with_label_values(&[set, outcome.as_str(), Reason::label(reason)])
            .inc();
        self.source_rejected
            .with_label_values(&[set])
            .set(if outcome.refused() { 1.0 } else { 0.0 });
        self.last_rotation
            .with_label_values(&[set, outcome.as_str()])
            .set(now as f64);
        if let Some(reaction) = reaction {
            self.reaction
                .with_label_values(&[outcome.as_str()])
                .observe(reaction.as_secs_f64());
        }
    }

    /// Records a self-handshake's duration.
    pub fn handshake(&self, d: Duration) {
        self.handshake.observe(d.as_secs_f64());
    }

    /// Records whether the workload serves the live leaf.
    pub fn workload_serving(&self, set: &str, serving: bool) {
        self.workload_serving
            .with_label_values(&[set])
            .set(if serving { 1.0 } else { 0.0 });
    }

    /// Refreshes the time-dependent gauges from a snapshot at `now`.
    pub fn refresh(&self, snapshot: &Snapshot, now: i64) {
        for s in &snapshot.sets {
            self.cert_valid
                .with_label_values(&[s.name.as_str()])
                .set(if s.valid_at(now) { 1.0 } else { 0.0 });
        }
        self.ready.set(if snapshot.readiness(now).is_ok() {
            1.0
        } else {
            0.0
        });
        // x509_cert_expired flips with time alone.
        let map = self.live_series.lock().unwrap_or_else(|p| p.into_inner());
        for series in map.values() {
            for (family, labels) in series {
                if let LiveFamily::X509Expired = family {
                    let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
                    let not_after = self.x509_not_after.with_label_values(&refs).get();
                    self.x509_expired
                        .with_label_values(&refs)
                        .set(if (now as f64) > not_after { 1.0 } else { 0.0 });
                }
            }
        }
    }

    /// Text exposition format 0.0.4.
    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn enix_labels(path: &str, c: &CertInfo) -> Vec<String> {
    let filename = Path::new(path)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    vec![
        path.to_string(),
        filename,
        c.serial.clone(),
        c.subject_cn.clone(),
        c.subject_o.clone(),
        c.issuer_cn.clone(),
        c.issuer_o.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use super::*;
    use crate::ids::Fingerprint;
    use crate::state::{Mode, SetStatus};

    /// When the fixture is scraped.
    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn cert(role: Role, cn: &str, o: &str, issuer: (&str, &str), serial: &str) -> CertInfo {
        CertInfo {
            role,
            subject: format!("CN={cn}, O={o}"),
            subject_cn: cn.into(),
            subject_o: o.into(),
            issuer: format!("CN={}, O={}", issuer.0, issuer.1),
            issuer_cn: issuer.0.into(),
            issuer_o: issuer.1.into(),
            serial: serial.into(),
            serial_der: None,
            sans: Vec::new(),
            not_before: NOW - 10 * DAY,
            not_after: NOW + 20 * DAY,
            key_algorithm: "ECDSA P-256".into(),
            key_bits: 256,
            signature_algorithm: "ecdsa-with-SHA256".into(),
            fingerprint_sha256: Fingerprint::of(format!("{cn}/{serial}").as_bytes()),
            is_ca: role != Role::Leaf,
            self_issued: role == Role::Anchor,
            key_usage: Vec::new(),
            extended_key_usage: Vec::new(),
        }
    }

    fn live(cert_path: &str, trust_path: Option<&str>, chain: Vec<CertInfo>) -> LiveMaterial {
        let anchors: Vec<CertInfo> = if trust_path.is_some() {
            chain
                .iter()
                .filter(|c| c.role == Role::Anchor)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        LiveMaterial {
            generation: None,
            cert_path: cert_path.into(),
            trust_path: trust_path.map(Into::into),
            effective_expiry: chain.iter().map(|c| c.not_after).min().unwrap_or(i64::MIN),
            trust_fingerprint: trust_path.map(|_| "b0".repeat(32)),
            chain,
            anchors,
            since: crate::time_fmt::rfc3339(NOW - DAY),
            content_key: Vec::new(),
        }
    }

    fn set(name: &str, mode: Mode, live: Option<LiveMaterial>) -> SetStatus {
        let mut s = SetStatus::new(name, mode, true, DAY as u64, 0);
        if live.is_some() {
            s.live_problem = None;
        }
        s.live = live;
        s
    }

    /// Every kind of set the families describe: published with a bundle of two anchors and a
    /// subject that needs escaping; monitor mode with two intermediates and no bundle; expired
    /// material; nothing live yet. Plus the events the daemon reports.
    fn fixture() -> (Metrics, Snapshot) {
        let root = cert(Role::Anchor, "Root CA", "Acme", ("Root CA", "Acme"), "01");
        let other_root = cert(Role::Anchor, "Other Root", "", ("Other Root", ""), "02");
        let inter = cert(
            Role::Intermediate,
            "Issuing CA",
            "Acme",
            ("Root CA", "Acme"),
            "1a",
        );
        let mut leaf = cert(
            Role::Leaf,
            "web \"quoted\" back\\slash",
            "Acme, Inc.",
            ("Issuing CA", "Acme"),
            "-7f",
        );
        leaf.subject = "CN=web \"quoted\" back\\\\slash, O=Acme\\, Inc.".into();
        leaf.not_after = NOW + 5 * DAY;
        let mut web = live(
            "/publish/web/tls.crt",
            Some("/publish/web/ca.crt"),
            vec![leaf, inter.clone(), root.clone()],
        );
        web.anchors.push(other_root);
        web.anchors[0].not_after = NOW + 3000 * DAY;

        let mut older = cert(Role::Intermediate, "Old CA", "", ("Root CA", "Acme"), "1b");
        older.not_before = NOW - 20 * DAY;
        older.not_after = NOW + 40 * DAY;
        let mon_leaf = cert(Role::Leaf, "mon.example", "", ("Issuing CA", "Acme"), "2a");
        let mon = live(
            "/src/mon/tls.crt",
            None,
            vec![mon_leaf, inter.clone(), older],
        );

        let mut gone = cert(Role::Leaf, "old.example", "", ("Issuing CA", "Acme"), "3a");
        gone.not_before = NOW - 30 * DAY;
        gone.not_after = NOW - DAY;
        let expired = live(
            "/publish/expired/tls.crt",
            Some("/publish/expired/ca.crt"),
            vec![gone, inter, root],
        );

        let sets = vec![
            set("web", Mode::Publish, Some(web)),
            set("mon", Mode::Monitor, Some(mon)),
            set("expired", Mode::Publish, Some(expired)),
            set("pending", Mode::Publish, None),
        ];
        let m = Metrics::new().unwrap();
        for s in &sets {
            m.declare_set(&s.name);
        }
        let ms = Duration::from_millis;
        m.rotation("web", Outcome::Published, None, Some(ms(3)), NOW - 60);
        m.rotation("mon", Outcome::Accepted, None, Some(ms(2)), NOW - 50);
        m.rotation("expired", Outcome::Published, None, Some(ms(4)), NOW - 40);
        m.rotation(
            "expired",
            Outcome::Rejected,
            Some(Reason::UnknownIssuer),
            Some(ms(1)),
            NOW - 30,
        );
        m.handshake(ms(2));
        m.workload_serving("web", true);
        for s in &sets {
            m.set_live(&s.name, s.live.as_ref(), NOW - 10);
        }
        let snapshot = Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            initialized: true,
            sets: sets.into_iter().map(Arc::new).collect(),
            watch_problem: None,
        };
        (m, snapshot)
    }

    /// What `/metrics` serves for `snapshot` at `now`.
    fn exposition(m: &Metrics, snapshot: &Snapshot, now: i64) -> String {
        m.refresh(snapshot, now);
        m.encode()
    }

    /// One family of an exposition: HELP, TYPE, and its samples (name, labels sorted, value).
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Family {
        help: String,
        kind: String,
        samples: BTreeSet<(String, Vec<(String, String)>, String)>,
    }

    /// Parses a text exposition into families; panics on a malformed line, a sample outside
    /// its family, or a duplicate series.
    fn parse(text: &str) -> BTreeMap<String, Family> {
        let mut out: BTreeMap<String, Family> = BTreeMap::new();
        let mut current = String::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                current = name.to_string();
                out.entry(current.clone()).or_default().help = help.to_string();
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(name, current, "TYPE after its HELP: {line}");
                out.entry(current.clone()).or_default().kind = kind.to_string();
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            assert!(
                name.starts_with(current.as_str()),
                "{name} outside {current}"
            );
            let mut labels = Vec::new();
            let mut rest = &line[name_end..];
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices();
                loop {
                    let (start, c) = chars.next().unwrap();
                    if c == '}' {
                        rest = &r[start + 1..];
                        break;
                    }
                    let eq = r[start..].find("=\"").unwrap() + start;
                    let key = r[start..eq].trim_start_matches(',').to_string();
                    while chars.next().unwrap().0 < eq + 1 {}
                    let mut value = String::new();
                    loop {
                        match chars.next().unwrap().1 {
                            '\\' => match chars.next().unwrap().1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.push((key, value));
                }
            }
            labels.sort();
            let value = rest.trim().to_string();
            let fresh = out.entry(current.clone()).or_default().samples.insert((
                name.to_string(),
                labels,
                value,
            ));
            assert!(fresh, "duplicate series: {line}");
        }
        out
    }

    /// `/metrics` of the fixture as the registry-only implementation served it (certgate
    /// 0.1.0, before the live-material families were rendered from the snapshot): every
    /// family, name, label and value the tests and alert rules rely on. `{VERSION}` stands
    /// for the crate version.
    const BEFORE: &str = r#"
# HELP certgate_build_info certgate build (value 1).
# TYPE certgate_build_info gauge
certgate_build_info{version="{VERSION}"} 1
# HELP certgate_cert_effective_expiry_timestamp_seconds Earliest not-after along the live chain.
# TYPE certgate_cert_effective_expiry_timestamp_seconds gauge
certgate_cert_effective_expiry_timestamp_seconds{set="expired"} 1699913600
certgate_cert_effective_expiry_timestamp_seconds{set="mon"} 1701728000
certgate_cert_effective_expiry_timestamp_seconds{set="web"} 1700432000
# HELP certgate_cert_info The live chain, one series per certificate (value 1).
# TYPE certgate_cert_info gauge
certgate_cert_info{fingerprint_sha256="1db8e55a45b224b8d98b9b6084a886f73a4d3fc586299f831f889d968e149bd8",issuer="CN=Issuing CA, O=Acme",role="leaf",serial="-7f",set="web",subject="CN=web \"quoted\" back\\\\slash, O=Acme\\, Inc."} 1
certgate_cert_info{fingerprint_sha256="44acefda3b7bc863e8f4a54c5b1fcdd1164ada7f6c720a59b66e000a8887392c",issuer="CN=Root CA, O=Acme",role="intermediate",serial="1a",set="expired",subject="CN=Issuing CA, O=Acme"} 1
certgate_cert_info{fingerprint_sha256="44acefda3b7bc863e8f4a54c5b1fcdd1164ada7f6c720a59b66e000a8887392c",issuer="CN=Root CA, O=Acme",role="intermediate",serial="1a",set="mon",subject="CN=Issuing CA, O=Acme"} 1
certgate_cert_info{fingerprint_sha256="44acefda3b7bc863e8f4a54c5b1fcdd1164ada7f6c720a59b66e000a8887392c",issuer="CN=Root CA, O=Acme",role="intermediate",serial="1a",set="web",subject="CN=Issuing CA, O=Acme"} 1
certgate_cert_info{fingerprint_sha256="4a1a2f92483f7d97aa4897272e1fe8dd8cd5fd2f3938573d970d1b5e421b99e4",issuer="CN=Root CA, O=Acme",role="intermediate",serial="1b",set="mon",subject="CN=Old CA, O="} 1
certgate_cert_info{fingerprint_sha256="c3675d8c4473f362d8abeb71b2040cec1084274c2298c55e8702d62f6f547d2c",issuer="CN=Issuing CA, O=Acme",role="leaf",serial="3a",set="expired",subject="CN=old.example, O="} 1
certgate_cert_info{fingerprint_sha256="d1578f7ed01efc9c7afa6b8167000d08302afae04d1125671f56707c0792b114",issuer="CN=Issuing CA, O=Acme",role="leaf",serial="2a",set="mon",subject="CN=mon.example, O="} 1
certgate_cert_info{fingerprint_sha256="fdd25f9291bc266b2d24a6b4352eedee38a334427b1750740ce48a54bbe773f1",issuer="CN=Root CA, O=Acme",role="anchor",serial="01",set="expired",subject="CN=Root CA, O=Acme"} 1
certgate_cert_info{fingerprint_sha256="fdd25f9291bc266b2d24a6b4352eedee38a334427b1750740ce48a54bbe773f1",issuer="CN=Root CA, O=Acme",role="anchor",serial="01",set="web",subject="CN=Root CA, O=Acme"} 1
# HELP certgate_cert_not_after_timestamp_seconds Not-after of the live certificate by chain role (earliest among intermediates).
# TYPE certgate_cert_not_after_timestamp_seconds gauge
certgate_cert_not_after_timestamp_seconds{role="anchor",set="expired"} 1701728000
certgate_cert_not_after_timestamp_seconds{role="anchor",set="web"} 1701728000
certgate_cert_not_after_timestamp_seconds{role="intermediate",set="expired"} 1701728000
certgate_cert_not_after_timestamp_seconds{role="intermediate",set="mon"} 1701728000
certgate_cert_not_after_timestamp_seconds{role="intermediate",set="web"} 1701728000
certgate_cert_not_after_timestamp_seconds{role="leaf",set="expired"} 1699913600
certgate_cert_not_after_timestamp_seconds{role="leaf",set="mon"} 1701728000
certgate_cert_not_after_timestamp_seconds{role="leaf",set="web"} 1700432000
# HELP certgate_cert_not_before_timestamp_seconds Not-before of the live certificate by chain role (latest among intermediates).
# TYPE certgate_cert_not_before_timestamp_seconds gauge
certgate_cert_not_before_timestamp_seconds{role="anchor",set="expired"} 1699136000
certgate_cert_not_before_timestamp_seconds{role="anchor",set="web"} 1699136000
certgate_cert_not_before_timestamp_seconds{role="intermediate",set="expired"} 1699136000
certgate_cert_not_before_timestamp_seconds{role="intermediate",set="mon"} 1699136000
certgate_cert_not_before_timestamp_seconds{role="intermediate",set="web"} 1699136000
certgate_cert_not_before_timestamp_seconds{role="leaf",set="expired"} 1697408000
certgate_cert_not_before_timestamp_seconds{role="leaf",set="mon"} 1699136000
certgate_cert_not_before_timestamp_seconds{role="leaf",set="web"} 1699136000
# HELP certgate_cert_valid 1 when the set's live chain is valid now.
# TYPE certgate_cert_valid gauge
certgate_cert_valid{set="expired"} 0
certgate_cert_valid{set="mon"} 1
certgate_cert_valid{set="pending"} 0
certgate_cert_valid{set="web"} 1
# HELP certgate_handshake_duration_seconds Loopback self-handshake duration.
# TYPE certgate_handshake_duration_seconds histogram
certgate_handshake_duration_seconds_bucket{le="0.0005"} 0
certgate_handshake_duration_seconds_bucket{le="0.001"} 0
certgate_handshake_duration_seconds_bucket{le="0.0025"} 1
certgate_handshake_duration_seconds_bucket{le="0.005"} 1
certgate_handshake_duration_seconds_bucket{le="0.01"} 1
certgate_handshake_duration_seconds_bucket{le="0.025"} 1
certgate_handshake_duration_seconds_bucket{le="0.05"} 1
certgate_handshake_duration_seconds_bucket{le="0.1"} 1
certgate_handshake_duration_seconds_bucket{le="0.25"} 1
certgate_handshake_duration_seconds_bucket{le="1"} 1
certgate_handshake_duration_seconds_bucket{le="+Inf"} 1
certgate_handshake_duration_seconds_sum 0.002
certgate_handshake_duration_seconds_count 1
# HELP certgate_last_rotation_timestamp_seconds When a set last saw each outcome.
# TYPE certgate_last_rotation_timestamp_seconds gauge
certgate_last_rotation_timestamp_seconds{outcome="accepted",set="mon"} 1699999950
certgate_last_rotation_timestamp_seconds{outcome="published",set="expired"} 1699999960
certgate_last_rotation_timestamp_seconds{outcome="published",set="web"} 1699999940
certgate_last_rotation_timestamp_seconds{outcome="rejected",set="expired"} 1699999970
# HELP certgate_ready 1 when every required set is ready (as /readyz).
# TYPE certgate_ready gauge
certgate_ready 0
# HELP certgate_rotation_reaction_seconds Source change seen → published or rejected.
# TYPE certgate_rotation_reaction_seconds histogram
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="0.001"} 0
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="0.0025"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="0.005"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="0.01"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="0.025"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="0.05"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="0.1"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="0.25"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="0.5"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="1"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="2.5"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="5"} 1
certgate_rotation_reaction_seconds_bucket{outcome="accepted",le="+Inf"} 1
certgate_rotation_reaction_seconds_sum{outcome="accepted"} 0.002
certgate_rotation_reaction_seconds_count{outcome="accepted"} 1
certgate_rotation_reaction_seconds_bucket{outcome="published",le="0.001"} 0
certgate_rotation_reaction_seconds_bucket{outcome="published",le="0.0025"} 0
certgate_rotation_reaction_seconds_bucket{outcome="published",le="0.005"} 2
certgate_rotation_reaction_seconds_bucket{outcome="published",le="0.01"} 2
certgate_rotation_reaction_seconds_bucket{outcome="published",le="0.025"} 2
certgate_rotation_reaction_seconds_bucket{outcome="published",le="0.05"} 2
certgate_rotation_reaction_seconds_bucket{outcome="published",le="0.1"} 2
certgate_rotation_reaction_seconds_bucket{outcome="published",le="0.25"} 2
certgate_rotation_reaction_seconds_bucket{outcome="published",le="0.5"} 2
certgate_rotation_reaction_seconds_bucket{outcome="published",le="1"} 2
certgate_rotation_reaction_seconds_bucket{outcome="published",le="2.5"} 2
certgate_rotation_reaction_seconds_bucket{outcome="published",le="5"} 2
certgate_rotation_reaction_seconds_bucket{outcome="published",le="+Inf"} 2
certgate_rotation_reaction_seconds_sum{outcome="published"} 0.007
certgate_rotation_reaction_seconds_count{outcome="published"} 2
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="0.001"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="0.0025"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="0.005"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="0.01"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="0.025"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="0.05"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="0.1"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="0.25"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="0.5"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="1"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="2.5"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="5"} 1
certgate_rotation_reaction_seconds_bucket{outcome="rejected",le="+Inf"} 1
certgate_rotation_reaction_seconds_sum{outcome="rejected"} 0.001
certgate_rotation_reaction_seconds_count{outcome="rejected"} 1
# HELP certgate_rotations_total Candidates by outcome (published, rejected, rolled_back) and reason.
# TYPE certgate_rotations_total counter
certgate_rotations_total{outcome="accepted",reason="ok",set="mon"} 1
certgate_rotations_total{outcome="published",reason="ok",set="expired"} 1
certgate_rotations_total{outcome="published",reason="ok",set="web"} 1
certgate_rotations_total{outcome="rejected",reason="unknown_issuer",set="expired"} 1
# HELP certgate_source_rejected 1 while the newest source material was refused (rejected or rolled back) and is not live.
# TYPE certgate_source_rejected gauge
certgate_source_rejected{set="expired"} 1
certgate_source_rejected{set="mon"} 0
certgate_source_rejected{set="pending"} 0
certgate_source_rejected{set="web"} 0
# HELP certgate_trust_bundle_anchors Number of anchors in the live trust bundle.
# TYPE certgate_trust_bundle_anchors gauge
certgate_trust_bundle_anchors{set="expired"} 1
certgate_trust_bundle_anchors{set="web"} 2
# HELP certgate_trust_bundle_earliest_expiry_timestamp_seconds Earliest not-after among the live bundle's anchors.
# TYPE certgate_trust_bundle_earliest_expiry_timestamp_seconds gauge
certgate_trust_bundle_earliest_expiry_timestamp_seconds{set="expired"} 1701728000
certgate_trust_bundle_earliest_expiry_timestamp_seconds{set="web"} 1701728000
# HELP certgate_trust_bundle_info The live trust bundle (value 1); fingerprint over its anchors.
# TYPE certgate_trust_bundle_info gauge
certgate_trust_bundle_info{fingerprint_sha256="b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0",set="expired"} 1
certgate_trust_bundle_info{fingerprint_sha256="b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0",set="web"} 1
# HELP certgate_workload_serving_live_cert 1 when the workload serves the live leaf (verification configured).
# TYPE certgate_workload_serving_live_cert gauge
certgate_workload_serving_live_cert{set="web"} 1
# HELP x509_cert_expired 1 when expired (x509-certificate-exporter compatible).
# TYPE x509_cert_expired gauge
x509_cert_expired{filename="ca.crt",filepath="/publish/expired/ca.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="01",subject_CN="Root CA",subject_O="Acme"} 0
x509_cert_expired{filename="ca.crt",filepath="/publish/web/ca.crt",issuer_CN="Other Root",issuer_O="",serial_number="02",subject_CN="Other Root",subject_O=""} 0
x509_cert_expired{filename="ca.crt",filepath="/publish/web/ca.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="01",subject_CN="Root CA",subject_O="Acme"} 0
x509_cert_expired{filename="tls.crt",filepath="/publish/expired/tls.crt",issuer_CN="Issuing CA",issuer_O="Acme",serial_number="3a",subject_CN="old.example",subject_O=""} 1
x509_cert_expired{filename="tls.crt",filepath="/publish/expired/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1a",subject_CN="Issuing CA",subject_O="Acme"} 0
x509_cert_expired{filename="tls.crt",filepath="/publish/web/tls.crt",issuer_CN="Issuing CA",issuer_O="Acme",serial_number="-7f",subject_CN="web \"quoted\" back\\slash",subject_O="Acme, Inc."} 0
x509_cert_expired{filename="tls.crt",filepath="/publish/web/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1a",subject_CN="Issuing CA",subject_O="Acme"} 0
x509_cert_expired{filename="tls.crt",filepath="/src/mon/tls.crt",issuer_CN="Issuing CA",issuer_O="Acme",serial_number="2a",subject_CN="mon.example",subject_O=""} 0
x509_cert_expired{filename="tls.crt",filepath="/src/mon/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1a",subject_CN="Issuing CA",subject_O="Acme"} 0
x509_cert_expired{filename="tls.crt",filepath="/src/mon/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1b",subject_CN="Old CA",subject_O=""} 0
# HELP x509_cert_not_after Not-after (x509-certificate-exporter compatible).
# TYPE x509_cert_not_after gauge
x509_cert_not_after{filename="ca.crt",filepath="/publish/expired/ca.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="01",subject_CN="Root CA",subject_O="Acme"} 1701728000
x509_cert_not_after{filename="ca.crt",filepath="/publish/web/ca.crt",issuer_CN="Other Root",issuer_O="",serial_number="02",subject_CN="Other Root",subject_O=""} 1701728000
x509_cert_not_after{filename="ca.crt",filepath="/publish/web/ca.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="01",subject_CN="Root CA",subject_O="Acme"} 1959200000
x509_cert_not_after{filename="tls.crt",filepath="/publish/expired/tls.crt",issuer_CN="Issuing CA",issuer_O="Acme",serial_number="3a",subject_CN="old.example",subject_O=""} 1699913600
x509_cert_not_after{filename="tls.crt",filepath="/publish/expired/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1a",subject_CN="Issuing CA",subject_O="Acme"} 1701728000
x509_cert_not_after{filename="tls.crt",filepath="/publish/web/tls.crt",issuer_CN="Issuing CA",issuer_O="Acme",serial_number="-7f",subject_CN="web \"quoted\" back\\slash",subject_O="Acme, Inc."} 1700432000
x509_cert_not_after{filename="tls.crt",filepath="/publish/web/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1a",subject_CN="Issuing CA",subject_O="Acme"} 1701728000
x509_cert_not_after{filename="tls.crt",filepath="/src/mon/tls.crt",issuer_CN="Issuing CA",issuer_O="Acme",serial_number="2a",subject_CN="mon.example",subject_O=""} 1701728000
x509_cert_not_after{filename="tls.crt",filepath="/src/mon/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1a",subject_CN="Issuing CA",subject_O="Acme"} 1701728000
x509_cert_not_after{filename="tls.crt",filepath="/src/mon/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1b",subject_CN="Old CA",subject_O=""} 1703456000
# HELP x509_cert_not_before Not-before (x509-certificate-exporter compatible).
# TYPE x509_cert_not_before gauge
x509_cert_not_before{filename="ca.crt",filepath="/publish/expired/ca.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="01",subject_CN="Root CA",subject_O="Acme"} 1699136000
x509_cert_not_before{filename="ca.crt",filepath="/publish/web/ca.crt",issuer_CN="Other Root",issuer_O="",serial_number="02",subject_CN="Other Root",subject_O=""} 1699136000
x509_cert_not_before{filename="ca.crt",filepath="/publish/web/ca.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="01",subject_CN="Root CA",subject_O="Acme"} 1699136000
x509_cert_not_before{filename="tls.crt",filepath="/publish/expired/tls.crt",issuer_CN="Issuing CA",issuer_O="Acme",serial_number="3a",subject_CN="old.example",subject_O=""} 1697408000
x509_cert_not_before{filename="tls.crt",filepath="/publish/expired/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1a",subject_CN="Issuing CA",subject_O="Acme"} 1699136000
x509_cert_not_before{filename="tls.crt",filepath="/publish/web/tls.crt",issuer_CN="Issuing CA",issuer_O="Acme",serial_number="-7f",subject_CN="web \"quoted\" back\\slash",subject_O="Acme, Inc."} 1699136000
x509_cert_not_before{filename="tls.crt",filepath="/publish/web/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1a",subject_CN="Issuing CA",subject_O="Acme"} 1699136000
x509_cert_not_before{filename="tls.crt",filepath="/src/mon/tls.crt",issuer_CN="Issuing CA",issuer_O="Acme",serial_number="2a",subject_CN="mon.example",subject_O=""} 1699136000
x509_cert_not_before{filename="tls.crt",filepath="/src/mon/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1a",subject_CN="Issuing CA",subject_O="Acme"} 1699136000
x509_cert_not_before{filename="tls.crt",filepath="/src/mon/tls.crt",issuer_CN="Root CA",issuer_O="Acme",serial_number="1b",subject_CN="Old CA",subject_O=""} 1698272000
"#;

    #[test]
    fn families_are_those_of_before() {
        let (m, snapshot) = fixture();
        let text = exposition(&m, &snapshot, NOW);
        let want = parse(&BEFORE.replace("{VERSION}", env!("CARGO_PKG_VERSION")));
        let got = parse(&text);
        for (name, family) in &want {
            assert_eq!(got.get(name), Some(family), "family {name}");
        }
        let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        assert!(extra.is_empty(), "families not in BEFORE: {extra:?}");
    }
}
