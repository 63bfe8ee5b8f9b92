//! What the daemon knows, as an immutable snapshot the HTTP side reads without waiting on any
//! work: per-set status (what `/status` returns) and readiness derived from it at read time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ids::{Fingerprint, GenerationName};
use crate::labels::{EventKind, Outcome};
use crate::pipeline::inspect::CertInfo;
use crate::pipeline::{FileSummary, Problem};
use crate::time_fmt::rfc3339;

/// How many recent events each set keeps.
pub const EVENT_HISTORY: usize = 32;

/// Publish or monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// certgate gates and publishes into a directory the workload reads.
    Publish,
    /// certgate only watches and reports; the workload reads the source.
    Monitor,
}

/// The material the workload has (publish mode) or reads (monitor mode).
///
/// The chain and the anchors are shared, not copied: the daemon's live set, every snapshot
/// `/status` serves and the `/metrics` renderer read one copy.
#[derive(Debug, Clone, Serialize)]
pub struct LiveMaterial {
    /// The published `..data` generation, in publish mode.
    pub generation: Option<GenerationName>,
    /// Where the workload reads the certificate.
    pub cert_path: String,
    /// Where the workload reads the trust bundle, if any.
    pub trust_path: Option<String>,
    /// Leaf, intermediates, anchor.
    pub chain: Arc<[CertInfo]>,
    /// The bundle's anchors.
    pub anchors: Arc<[CertInfo]>,
    /// SHA-256 over the bundle's anchors' DER, in order.
    pub trust_fingerprint: Option<String>,
    /// Earliest not-after along the chain, Unix seconds.
    pub effective_expiry: i64,
    /// When it went live, RFC 3339.
    pub since: String,
    /// Its `/metrics` label sets, formatted when it went live (`None`: formatted at each
    /// scrape).
    #[serde(skip)]
    pub labels: Option<Arc<crate::metrics::LiveLabels>>,
}

impl LiveMaterial {
    /// The leaf.
    pub fn leaf(&self) -> Option<&CertInfo> {
        self.chain.first()
    }
    /// Latest not-before along the chain (the moment all of it became valid).
    pub fn effective_start(&self) -> i64 {
        self.chain
            .iter()
            .map(|c| c.not_before)
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// The last candidate seen and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateStatus {
    /// When it was evaluated, RFC 3339.
    pub at: String,
    /// What became of it.
    pub outcome: Outcome,
    /// Leaf fingerprint, if it parsed.
    pub fingerprint_sha256: Option<Fingerprint>,
    /// Why it was refused.
    pub reasons: Vec<Problem>,
    /// Source → outcome, milliseconds.
    pub reaction_ms: f64,
    /// The reaction broken down by stage.
    pub stages: Stages,
}

/// A rotation's reaction broken down by stage, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Stages {
    /// Change seen → evaluation started (settle window, queueing behind other sets).
    pub event_ms: f64,
    /// Reading and decoding the files.
    pub load_ms: f64,
    /// Inspection and validation.
    pub validate_ms: f64,
    /// Loopback self-handshake.
    pub handshake_ms: f64,
    /// Writing and committing the generation, fsyncs included.
    pub publish_ms: f64,
}

/// What the post-publish workload check found.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadStatus {
    /// Whether the workload serves the live leaf.
    pub serving_live_cert: bool,
    /// Fingerprint of what it served, if anything.
    pub served_fingerprint_sha256: Option<Fingerprint>,
    /// Why it is not serving the live leaf: `reload_rejected` (a reload was sent, or failed,
    /// and it still serves an earlier generation), `workload_refused` (it failed the
    /// handshake or served something certgate never published); none while verifying, when
    /// serving, or when stale with no reload sent.
    pub reason: Option<crate::labels::Reason>,
    /// What it served at each TLS version checked.
    pub versions: Vec<crate::daemon::verify::VersionServed>,
    /// Human summary.
    pub message: String,
    /// When, RFC 3339.
    pub checked_at: String,
}

/// One line of a set's history.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// RFC 3339.
    pub at: String,
    /// What happened.
    pub kind: EventKind,
    /// Human text.
    pub message: String,
}

/// Everything `/status` shows for one set. Never key bytes.
#[derive(Debug, Clone, Serialize)]
pub struct SetStatus {
    /// Set name.
    pub name: String,
    /// publish or monitor.
    pub mode: Mode,
    /// Counts for readiness.
    pub required: bool,
    /// Not-ready this long before expiry, seconds.
    pub fail_ready_before_seconds: u64,
    /// Warn this long before expiry, seconds.
    pub warn_before_seconds: u64,
    /// Source files as last read.
    pub source: Vec<FileSummary>,
    /// Live material.
    pub live: Option<LiveMaterial>,
    /// Why there is no live material, when there is none.
    pub live_problem: Option<String>,
    /// The last candidate.
    pub last_candidate: Option<CandidateStatus>,
    /// Last publish, RFC 3339.
    pub last_publish: Option<String>,
    /// Last rejection, RFC 3339.
    pub last_rejection: Option<String>,
    /// Last rollback, RFC 3339.
    pub last_rollback: Option<String>,
    /// Workload verification.
    pub workload: Option<WorkloadStatus>,
    /// The live bundle's anchors: which, since when, and which the live chain verifies to.
    pub trust: Option<TrustStatus>,
    /// The fleet gate, for a set with one (`mode` hold or observe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateStatus>,
    /// Recent events, newest last.
    pub events: VecDeque<Event>,
}

/// How this pod came to trust an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// It was in the bundle when the set first went live in this pod.
    Startup,
    /// A rotation brought it.
    Rotation,
}

impl Via {
    /// The `via` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Rotation => "rotation",
        }
    }
}

/// When this pod first went live with an anchor; kept in the publish directory's
/// `.certgate-anchors.json`, so a container restart keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstSeen {
    /// The anchor.
    pub anchor_id: crate::ids::AnchorId,
    /// Unix seconds.
    pub at: i64,
    /// Startup or rotation.
    pub via: Via,
}

/// One anchor of the live bundle.
#[derive(Debug, Clone, Serialize)]
pub struct AnchorStatus {
    /// Subject and key identity.
    pub anchor_id: crate::ids::AnchorId,
    /// RFC 4514-style subject.
    pub subject: String,
    /// Not-after, Unix seconds.
    pub not_after: i64,
    /// When this pod first went live with it, Unix seconds.
    pub first_seen: i64,
    /// Startup or rotation.
    pub via: Via,
}

/// The live bundle as the fleet sees it.
#[derive(Debug, Clone, Serialize)]
pub struct TrustStatus {
    /// Every anchor of the live bundle.
    pub anchors: Vec<AnchorStatus>,
    /// The anchors the live chain verifies to (more than one when cross-signed).
    pub chain_anchors: Vec<crate::ids::AnchorId>,
    /// Whether the per-anchor series are exported: not above `max_exported_anchors`.
    pub exported: bool,
    /// Why they are not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The fleet gate of a set, in `/status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GateStatus {
    /// `hold` or `observe`.
    pub mode: crate::gate::GateMode,
    /// `idle`, `holding`, or (observe mode) `would_hold`.
    pub state: GateState,
    /// `leaf` or `removal`, while holding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::gate::HoldKind>,
    /// The anchors the live chain verifies to.
    pub live_anchors: Vec<crate::ids::AnchorId>,
    /// The anchors the held candidate verifies to.
    pub candidate_anchors: Vec<crate::ids::AnchorId>,
    /// The held candidate's leaf.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_fingerprint_sha256: Option<crate::ids::Fingerprint>,
    /// When the hold started, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// When it ends at the latest, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// Since when the answer has been clear (it must stay so for `stable_for`), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_since: Option<String>,
    /// Verifiers seen / expected / regressing / unknown at the last evaluation.
    pub verifiers: GateVerifiers,
    /// Up to 20 pods holding the candidate (`namespace/pod`).
    pub blocking: Vec<String>,
    /// Why it holds, on one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The last evaluation, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_evaluation: Option<String>,
    /// Its error, when the query API did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// How the last hold ended: `clear`, `deadline`, `override`, `superseded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_release: Option<String>,
    /// Anchors kept in the published bundle although the source dropped them (presenters'
    /// live leaves still need them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_anchors: Vec<crate::ids::AnchorId>,
}

/// The gate's state.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GateState {
    /// Nothing held.
    Idle,
    /// A candidate is held.
    Holding,
    /// Observe mode: a hold would be in place; the candidate was published.
    WouldHold,
}

/// Verifier counts of the last evaluation.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GateVerifiers {
    /// Seen exporting trust.
    pub seen: u64,
    /// `expected_verifiers`' answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// Would regress.
    pub regressing: u64,
    /// Scrape failing or no trust series.
    pub unknown: u64,
}

impl SetStatus {
    /// A set nothing is known about yet.
    pub fn new(
        name: &str,
        mode: Mode,
        required: bool,
        fail_ready_before: u64,
        warn_before: u64,
    ) -> Self {
        Self {
            name: name.to_string(),
            mode,
            required,
            fail_ready_before_seconds: fail_ready_before,
            warn_before_seconds: warn_before,
            source: Vec::new(),
            live: None,
            live_problem: Some("not evaluated yet".into()),
            last_candidate: None,
            last_publish: None,
            last_rejection: None,
            last_rollback: None,
            workload: None,
            trust: None,
            gate: None,
            events: VecDeque::new(),
        }
    }

    /// Appends to the bounded history.
    pub fn push_event(&mut self, now: i64, kind: EventKind, message: impl Into<String>) {
        if self.events.len() == EVENT_HISTORY {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            at: rfc3339(now),
            kind,
            message: message.into(),
        });
    }

    /// Whether the live material is valid at `now` (every cert of the chain in its window).
    pub fn valid_at(&self, now: i64) -> bool {
        self.live
            .as_ref()
            .is_some_and(|l| l.effective_start() <= now && now <= l.effective_expiry)
    }

    /// `Ok` when ready at `now`, else why not (one line).
    pub fn readiness(&self, now: i64) -> Result<(), String> {
        let Some(live) = &self.live else {
            return Err(self
                .live_problem
                .clone()
                .unwrap_or_else(|| "no valid material".into()));
        };
        if now < live.effective_start() {
            return Err(format!(
                "certificate not valid before {}",
                rfc3339(live.effective_start())
            ));
        }
        if now > live.effective_expiry {
            return Err(format!(
                "certificate expired at {}",
                rfc3339(live.effective_expiry)
            ));
        }
        let fail_ready_before = i64::try_from(self.fail_ready_before_seconds).unwrap_or(i64::MAX);
        if now > live.effective_expiry.saturating_sub(fail_ready_before) {
            return Err(format!(
                "certificate expires at {}, within fail_ready_before",
                rfc3339(live.effective_expiry)
            ));
        }
        Ok(())
    }
}

/// The daemon's whole state at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// certgate version.
    pub version: &'static str,
    /// Whether the first evaluation of every set is done.
    pub initialized: bool,
    /// Per set, in config order; shared so a change to one set copies only that set.
    pub sets: Vec<Arc<SetStatus>>,
    /// Why file events are not watched, when they are not: certgate then polls at each
    /// resync. `None` while inotify works.
    pub watch_problem: Option<String>,
}

impl Snapshot {
    /// Readiness at `now`: one line per failing required set.
    pub fn readiness(&self, now: i64) -> Result<(), Vec<String>> {
        if !self.initialized {
            return Err(vec!["starting: first evaluation not done".into()]);
        }
        let failing: Vec<String> = self
            .sets
            .iter()
            .filter(|s| s.required)
            .filter_map(|s| {
                s.readiness(now)
                    .err()
                    .map(|why| format!("set {}: {why}", s.name))
            })
            .collect();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing)
        }
    }
}

/// The event loop's heartbeat: Unix milliseconds of its last turn.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    /// Records a turn of the loop.
    pub fn beat(&self, now_millis: i64) {
        self.0.store(now_millis, Ordering::Relaxed);
    }
    /// The last turn, Unix milliseconds (0 = never).
    pub fn last(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}
