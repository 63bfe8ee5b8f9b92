//! The gate's series. Kept in the `prometheus` registry: they exist only for sets with a gate,
//! a handful each.

use std::time::Duration;

use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use super::{HoldKind, Judgement, Release, UnknownVerifiers};

/// Evaluation results, the `result` label.
pub const RESULTS: [&str; 3] = ["clear", "hold", "error"];
/// Verifier states, the `status` label.
pub const STATUSES: [&str; 4] = ["ok", "regressing", "unknown", "expected"];

/// Every gate family.
#[derive(Clone)]
pub struct GateMetrics {
    holding: GaugeVec,
    started: GaugeVec,
    deadline: GaugeVec,
    verifiers: GaugeVec,
    releases: IntCounterVec,
    evaluations: IntCounterVec,
    query: Histogram,
    last_success: GaugeVec,
    /// The histogram is registered with the first gated set: a pod without a gate pays for
    /// none of its series.
    registry: Registry,
    query_registered: std::sync::Arc<std::sync::Once>,
}

impl std::fmt::Debug for GateMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateMetrics").finish_non_exhaustive()
    }
}

impl GateMetrics {
    /// Registers the families in `r`.
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
                let g = GaugeVec::new(Opts::new(name, help), labels)?;
                r.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                r.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let holding = gauge(
            "certgate_gate_holding",
            "1 while the fleet gate holds a candidate of this kind (leaf or removal).",
            &["set", "kind"],
        )?;
        let started = gauge(
            "certgate_gate_hold_started_timestamp_seconds",
            "When the current hold started, Unix seconds (only while holding).",
            &["set", "kind"],
        )?;
        let deadline = gauge(
            "certgate_gate_deadline_timestamp_seconds",
            "When the current hold ends at the latest, Unix seconds (only while holding).",
            &["set", "kind"],
        )?;
        let verifiers = gauge(
            "certgate_gate_verifiers",
            "Verifiers of the held candidate by status at the last evaluation (expected: \
             expected_verifiers).",
            &["set", "status"],
        )?;
        let releases = counter(
            "certgate_gate_releases_total",
            "Holds ended by publishing the candidate, by kind and reason (clear, deadline, \
             override).",
            &["set", "kind", "reason"],
        )?;
        let evaluations = counter(
            "certgate_gate_evaluations_total",
            "Gate evaluations by result (clear, hold, error).",
            &["set", "result"],
        )?;
        let query = Histogram::with_opts(
            HistogramOpts::new(
                "certgate_gate_query_duration_seconds",
                "Duration of one gate evaluation's queries to the query API.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let last_success = gauge(
            "certgate_gate_last_success_timestamp_seconds",
            "When a gate evaluation last got an answer from the query API, Unix seconds.",
            &["set"],
        )?;
        Ok(Self {
            holding,
            started,
            deadline,
            verifiers,
            releases,
            evaluations,
            query,
            last_success,
            registry: r.clone(),
            query_registered: std::sync::Arc::new(std::sync::Once::new()),
        })
    }

    /// Declares a gated set's series at 0, so alerts and dashboards see them from the start.
    pub fn declare(&self, set: &str) {
        self.query_registered.call_once(|| {
            if let Err(e) = self.registry.register(Box::new(self.query.clone())) {
                tracing::warn!("metrics: the gate's query histogram: {e}");
            }
        });
        for kind in [HoldKind::Leaf, HoldKind::Removal] {
            self.holding
                .with_label_values(&[set, kind.as_str()])
                .set(0.0);
            for reason in Release::ALL {
                self.releases
                    .with_label_values(&[set, kind.as_str(), reason.as_str()]);
            }
        }
        for result in RESULTS {
            self.evaluations.with_label_values(&[set, result]);
        }
    }

    /// A hold started.
    pub fn hold(&self, set: &str, kind: HoldKind, since: i64, deadline: i64) {
        let k = kind.as_str();
        self.holding.with_label_values(&[set, k]).set(1.0);
        self.started.with_label_values(&[set, k]).set(since as f64);
        self.deadline
            .with_label_values(&[set, k])
            .set(deadline as f64);
    }

    /// A hold ended: `release` when the candidate was published by it (`None`: superseded).
    pub fn unhold(&self, set: &str, kind: HoldKind, release: Option<Release>) {
        let k = kind.as_str();
        self.holding.with_label_values(&[set, k]).set(0.0);
        let _ = self.started.remove_label_values(&[set, k]);
        let _ = self.deadline.remove_label_values(&[set, k]);
        for status in STATUSES {
            let _ = self.verifiers.remove_label_values(&[set, status]);
        }
        if let Some(r) = release {
            self.releases.with_label_values(&[set, k, r.as_str()]).inc();
        }
    }

    /// An evaluation answered.
    pub fn evaluated(
        &self,
        set: &str,
        j: &Judgement,
        unknown: UnknownVerifiers,
        took: Duration,
        now: i64,
    ) {
        self.query.observe(took.as_secs_f64());
        let result = if j.clear { "clear" } else { "hold" };
        self.evaluations.with_label_values(&[set, result]).inc();
        self.last_success.with_label_values(&[set]).set(now as f64);
        let unknown_n = if unknown == UnknownVerifiers::Hold || !j.unknown.is_empty() {
            j.unknown.len()
        } else {
            0
        };
        let v = &self.verifiers;
        v.with_label_values(&[set, "ok"]).set(j.ok as f64);
        v.with_label_values(&[set, "regressing"])
            .set(j.regressing.len() as f64);
        v.with_label_values(&[set, "unknown"]).set(unknown_n as f64);
        match j.expected {
            Some(n) => v.with_label_values(&[set, "expected"]).set(n as f64),
            None => {
                let _ = v.remove_label_values(&[set, "expected"]);
            }
        }
    }

    /// An evaluation failed to get an answer.
    pub fn failed(&self, set: &str, took: Duration) {
        self.query.observe(took.as_secs_f64());
        self.evaluations.with_label_values(&[set, "error"]).inc();
    }
}
