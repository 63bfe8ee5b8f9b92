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
