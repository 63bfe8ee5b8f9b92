//! Every metric certgate exports, in one place. What happened and what is are kept differently:
//!
//! - **Histograms** (reaction, self-handshake) and the build info are kept in a `prometheus`
//!   registry.
//! - **What happened to each set** — candidates by outcome and reason, when each outcome was
//!   last seen, the workload verdict, the refusal pending — is kept in a small per-set record
//!   and written at scrape time. The registry would hold every one of those series with its own
//!   copy of the family's description and of each label (about 0.5 KiB a series, a few per set);
//!   the record holds a few numbers.
//! - **The process** — the standard `process_*` families every exporter has (CPU, memory, open
//!   files, start time), read from `/proc/self` at scrape time, so the sidecar's own cost is
//!   visible per pod.
//! - **What is** — each set's live material (expiry, chain and bundle info, the
//!   x509-certificate-exporter families), its validity and readiness — is rendered at scrape
//!   time from the daemon's [`Snapshot`], which holds that material anyway. No series are kept
//!   for it: memory does not grow with sets × certificates × labels, and a series cannot
//!   outlive the material it describes (it is gone from the first scrape after the material is).
//!   The long label sets of that material (chain info, the x509 families) are formatted once,
//!   when it goes live ([`LiveLabels`]), so a scrape copies a few contiguous strings per set;
//!   every value that depends on the time is computed at the scrape.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus::{Encoder, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder};

use crate::labels::{Outcome, Reason};
use crate::pipeline::inspect::{CertInfo, Role};
use crate::state::{LiveMaterial, Mode, Snapshot, TrustStatus};

/// Every metric: the registry of histograms and what happened to each set. The state
/// families are rendered from a snapshot by [`Metrics::render`].
pub struct Metrics {
    registry: Registry,
    reaction: HistogramVec,
    handshake: prometheus::Histogram,
    /// The fleet gate's families.
    pub gate: crate::gate::metrics::GateMetrics,
    /// Per set name.
    sets: Mutex<BTreeMap<String, SetEvents>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What happened to one set.
#[derive(Debug, Default)]
struct SetEvents {
    /// Candidates by outcome and reason label, in the order first seen.
    rotations: Vec<(Outcome, &'static str, u64)>,
    /// When each outcome (by its place in [`Outcome::ALL`]) was last seen, Unix seconds.
    last: [Option<i64>; Outcome::ALL.len()],
    /// Whether the workload serves the live leaf, once checked.
    workload_serving: Option<bool>,
    /// While the newest source material is refused (rejected or rolled back) and not live: the
    /// reason label of the refusal.
    refused: Option<&'static str>,
}

// === impl Metrics ===

impl Metrics {
    /// Registers the histograms and the build info.
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
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
        let build_info = GaugeVec::new(
            Opts::new("certgate_build_info", "certgate build (value 1)."),
            &["version"],
        )?;
        r.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        let gate = crate::gate::metrics::GateMetrics::register(&r)?;
        Ok(Self {
            registry: r,
            reaction,
            handshake,
            gate,
            sets: Mutex::new(BTreeMap::new()),
        })
    }

    /// The record of `set`, created on first use.
    fn with_set<T>(&self, set: &str, f: impl FnOnce(&mut SetEvents) -> T) -> T {
        // A panic elsewhere while the lock was held leaves numbers, not broken invariants.
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(events) = sets.get_mut(set) {
            return f(events);
        }
        f(sets.entry(set.to_string()).or_default())
    }

    /// Declares a set so its state gauges exist from the start.
    pub fn declare_set(&self, set: &str) {
        self.with_set(set, |_| ());
    }

    /// Records that the source now matches what is live (nothing refused pending).
    pub fn source_is_live(&self, set: &str) {
        self.with_set(set, |e| e.refused = None);
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
        let reason = Reason::label(reason);
        self.with_set(set, |e| {
            match e
                .rotations
                .iter_mut()
                .find(|(o, r, _)| *o == outcome && *r == reason)
            {
                Some((_, _, n)) => *n += 1,
                None => e.rotations.push((outcome, reason, 1)),
            }
            if let Some(last) = e.last.get_mut(outcome_index(outcome)) {
                *last = Some(now);
            }
            e.refused = outcome.refused().then_some(reason);
        });
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
        self.with_set(set, |e| e.workload_serving = Some(serving));
    }

    /// What happened (text exposition format 0.0.4), without the state of the sets: for a
    /// reader that has no snapshot.
    pub fn encode(&self) -> String {
        let mut out = Sink::whole(0);
        self.encode_registry(&mut out.buf);
        let sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        render_events(&mut out, &sets, sets.keys().map(|n| (n.as_str(), None)));
        out.buf
    }

    /// `/metrics` (text exposition format 0.0.4): what happened, then the state of every set of
    /// `snapshot` at `now`, and the process.
    pub fn render(&self, snapshot: &Snapshot, now: i64) -> String {
        // Sized for the usual set (a leaf, an intermediate, a one-anchor bundle: about 3.8 KB of
        // series) so the body is written without regrowing.
        let mut out = Sink::whole(8 * 1024 + snapshot.sets.len() * 4 * 1024);
        self.render_into(&mut out, snapshot, now);
        out.buf
    }

    /// [`Metrics::render`] handed to `send` in pieces of about `chunk` bytes, each as soon as
    /// it is written, so the whole body never sits in memory: what `/metrics` serves. `send`
    /// returns `false` once the reader is gone; the rest is then not written. It may block
    /// (backpressure), never while a lock the daemon takes is held.
    pub fn render_chunks(
        &self,
        snapshot: &Snapshot,
        now: i64,
        chunk: usize,
        send: &mut dyn FnMut(String) -> bool,
    ) {
        let mut out = Sink {
            buf: String::with_capacity(chunk + 1024),
            chunk,
            send: Some(send),
            held: false,
            gone: false,
        };
        self.render_into(&mut out, snapshot, now);
        out.finish();
    }

    fn render_into(&self, out: &mut Sink<'_>, snapshot: &Snapshot, now: i64) {
        self.encode_registry(&mut out.buf);
        {
            let sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
            let names = snapshot
                .sets
                .iter()
                .map(|s| (s.name.as_str(), Some(s.mode)));
            // Nothing is handed on while the lock is held: a slow reader must not stall the
            // daemon's rotation() calls.
            out.held = true;
            render_events(out, &sets, names);
            out.held = false;
        }
        out.line_done();
        render_state(out, snapshot, now);
        render_process(out);
    }

    fn encode_registry(&self, out: &mut String) {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        out.push_str(&String::from_utf8_lossy(&buf));
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    Outcome::ALL
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or_default()
}

// === event families ===

const ROTATIONS: Family = Family {
    name: "certgate_rotations_total",
    help: "Candidates by outcome (published, rejected, rolled_back) and reason.",
    kind: "counter",
};
const LAST_ROTATION: Family = Family {
    name: "certgate_last_rotation_timestamp_seconds",
    help: "When a set last saw each outcome.",
    kind: "gauge",
};
const WORKLOAD_SERVING: Family = Family {
    name: "certgate_workload_serving_live_cert",
    help: "1 when the workload serves the live leaf (verification configured).",
    kind: "gauge",
};
const SOURCE_REJECTED: Family = Family {
    name: "certgate_source_rejected",
    help:
        "1 while the newest source material was refused (rejected or rolled back) and is not live; reason: the failed check.",
    kind: "gauge",
};

/// The counters a set of `mode` has from the start, at 0 until their outcome happens: the
/// outcomes whose reason is known in advance. (A rejection's reason is not, so its series
/// starts with the first rejection.) `ok` is [`Reason::label`] of no reason.
fn counted_from_the_start(mode: Mode) -> &'static [(Outcome, &'static str)] {
    const PUBLISH: &[(Outcome, &str)] = &[
        (Outcome::Published, "ok"),
        (Outcome::RolledBack, Reason::WorkloadRefused.as_str()),
    ];
    const MONITOR: &[(Outcome, &str)] = &[(Outcome::Accepted, "ok")];
    match mode {
        Mode::Publish => PUBLISH,
        Mode::Monitor => MONITOR,
    }
}

/// Writes what happened to the sets named by `names`, in that order; with their mode, the
/// counters they have from the start too.
fn render_events<'a>(
    out: &mut Sink<'_>,
    sets: &BTreeMap<String, SetEvents>,
    names: impl Iterator<Item = (&'a str, Option<Mode>)>,
) {
    let nothing = SetEvents::default();
    // One look-up per set, not one per set and family.
    let rows: Vec<(&str, Option<Mode>, &SetEvents)> = names
        .map(|(n, mode)| (n, mode, sets.get(n).unwrap_or(&nothing)))
        .collect();
    let known = || rows.iter().copied();
    let mut w = Series::new(out, &ROTATIONS);
    for (set, mode, e) in known() {
        let from_start = mode.map_or(&[][..], counted_from_the_start);
        let not_yet = from_start
            .iter()
            .filter(|(o, r)| !e.rotations.iter().any(|(eo, er, _)| eo == o && er == r))
            .map(|&(o, r)| (o, r, 0));
        for (outcome, reason, n) in e.rotations.iter().copied().chain(not_yet) {
            w.series(
                &[
                    ("outcome", outcome.as_str()),
                    ("reason", reason),
                    ("set", set),
                ],
                n as f64,
            );
        }
    }
    let mut w = Series::new(out, &LAST_ROTATION);
    for (set, _, e) in known() {
        for (outcome, at) in Outcome::ALL.iter().zip(e.last) {
            if let Some(at) = at {
                w.series(&[("outcome", outcome.as_str()), ("set", set)], at as f64);
            }
        }
    }
    let mut w = Series::new(out, &WORKLOAD_SERVING);
    for (set, _, e) in known() {
        if let Some(serving) = e.workload_serving {
            w.series(&[("set", set)], flag(serving));
        }
    }
    let mut w = Series::new(out, &SOURCE_REJECTED);
    for (set, _, e) in known() {
        // The reason is there while the value is 1: `{set}` 0, `{reason, set}` 1. One series
        // per set at a time, and the series at 0 is the one of before reasons were added.
        match e.refused {
            Some(reason) => w.series(&[("reason", reason), ("set", set)], 1.0),
            None => w.series(&[("set", set)], 0.0),
        }
    }
}

// === state families ===

/// One family of the text exposition.
struct Family {
    name: &'static str,
    help: &'static str,
    /// `gauge` or `counter`.
    kind: &'static str,
}

const NOT_AFTER: Family = Family {
    name: "certgate_cert_not_after_timestamp_seconds",
    help: "Not-after of the live certificate by chain role (earliest among intermediates).",
    kind: "gauge",
};
const NOT_BEFORE: Family = Family {
    name: "certgate_cert_not_before_timestamp_seconds",
    help: "Not-before of the live certificate by chain role (latest among intermediates).",
    kind: "gauge",
};
const EFFECTIVE_EXPIRY: Family = Family {
    name: "certgate_cert_effective_expiry_timestamp_seconds",
    help: "Earliest not-after along the live chain.",
    kind: "gauge",
};
const CERT_INFO: Family = Family {
    name: "certgate_cert_info",
    help: "The live chain, one series per certificate (value 1).",
    kind: "gauge",
};
const TRUST_INFO: Family = Family {
    name: "certgate_trust_bundle_info",
    help: "The live trust bundle (value 1); fingerprint over its anchors.",
    kind: "gauge",
};
const TRUST_ANCHORS: Family = Family {
    name: "certgate_trust_bundle_anchors",
    help: "Number of anchors in the live trust bundle.",
    kind: "gauge",
};
const TRUST_EARLIEST: Family = Family {
    name: "certgate_trust_bundle_earliest_expiry_timestamp_seconds",
    help: "Earliest not-after among the live bundle's anchors.",
    kind: "gauge",
};
const ANCHOR_INFO: Family = Family {
    name: "certgate_trust_anchor_info",
    help:
        "Each anchor of the live bundle (value 1): anchor_id is SHA-256 over its subject and key.",
    kind: "gauge",
};
const ANCHOR_FIRST_SEEN: Family = Family {
    name: "certgate_trust_anchor_first_seen_timestamp_seconds",
    help: "When this pod first went live with the anchor; via startup (in the first live bundle) or rotation.",
    kind: "gauge",
};
const CHAIN_ANCHOR: Family = Family {
    name: "certgate_chain_anchor_info",
    help: "The anchors the live chain verifies to (value 1; several when cross-signed).",
    kind: "gauge",
};
const CERT_VALID: Family = Family {
    name: "certgate_cert_valid",
    help: "1 when the set's live chain is valid now.",
    kind: "gauge",
};
const SET_READY: Family = Family {
    name: "certgate_set_ready",
    help: "1 when the set is ready: live material valid now, not within fail_ready_before (certgate_ready counts the required sets).",
    kind: "gauge",
};
const READY: Family = Family {
    name: "certgate_ready",
    help: "1 when every required set is ready (as /readyz).",
    kind: "gauge",
};
const X509_NOT_AFTER: Family = Family {
    name: "x509_cert_not_after",
    help: "Not-after (x509-certificate-exporter compatible).",
    kind: "gauge",
};
const X509_NOT_BEFORE: Family = Family {
    name: "x509_cert_not_before",
    help: "Not-before (x509-certificate-exporter compatible).",
    kind: "gauge",
};
const X509_EXPIRED: Family = Family {
    name: "x509_cert_expired",
    help: "1 when expired (x509-certificate-exporter compatible).",
    kind: "gauge",
};

/// Every family written here (not the registry's), for tests.
#[cfg(test)]
const FAMILIES: &[&Family] = &[
    &ROTATIONS,
    &LAST_ROTATION,
    &WORKLOAD_SERVING,
    &SOURCE_REJECTED,
    &NOT_AFTER,
    &NOT_BEFORE,
    &EFFECTIVE_EXPIRY,
    &CERT_INFO,
    &TRUST_INFO,
    &TRUST_ANCHORS,
    &TRUST_EARLIEST,
    &ANCHOR_INFO,
    &ANCHOR_FIRST_SEEN,
    &CHAIN_ANCHOR,
    &CERT_VALID,
    &SET_READY,
    &READY,
    &X509_NOT_AFTER,
    &X509_NOT_BEFORE,
    &X509_EXPIRED,
    &PROCESS_CPU,
    &PROCESS_OPEN_FDS,
    &PROCESS_MAX_FDS,
    &PROCESS_VIRTUAL_MEMORY,
    &PROCESS_RESIDENT_MEMORY,
    &PROCESS_START_TIME,
    &PROCESS_THREADS,
];

/// Writes the state families of `snapshot` at `now`.
/// What a scrape writes of one set, read from its status in one pass: the families are written
/// one after the other, each over every set, and walking this compact list for each of them
/// costs far less than following every set's status, live view and chain again for each (at
/// 1,000 sets those pointer chases were most of the render's time).
struct Row<'a> {
    set: &'a str,
    live: Option<LiveRow<'a>>,
    /// Per-anchor series: the live bundle's, when exported.
    trust: Option<&'a TrustStatus>,
    valid: bool,
    ready: bool,
}

/// What is written of a set's live material.
struct LiveRow<'a> {
    /// Earliest not-after and latest not-before of the chain's certificates of each role, in
    /// [`ROLES`] order.
    not_after: [Option<i64>; 3],
    not_before: [Option<i64>; 3],
    effective_expiry: i64,
    labels: &'a LiveLabels,
    /// With a bundle: its fingerprint, anchor count and earliest anchor not-after.
    bundle: Option<(&'a str, usize, Option<i64>)>,
}

const ROLES: [Role; 3] = [Role::Leaf, Role::Intermediate, Role::Anchor];

fn render_state(out: &mut Sink<'_>, snapshot: &Snapshot, now: i64) {
    let sets = &snapshot.sets;
    // Each live set's label sets: formatted when the material went live (a snapshot made by
    // hand, as in tests, has none: they are formatted now, the same way).
    let made: Vec<Option<LiveLabels>> = sets
        .iter()
        .map(|s| {
            let l = s.live.as_ref()?;
            l.labels.is_none().then(|| LiveLabels::new(&s.name, l))
        })
        .collect();
    let rows: Vec<Row<'_>> = sets
        .iter()
        .zip(&made)
        .map(|(s, made)| {
            let live = s.live.as_ref().and_then(|l| {
                let labels = made.as_ref().or(l.labels.as_deref())?;
                let mut not_after = [None; 3];
                let mut not_before = [None; 3];
                for c in l.chain.iter() {
                    let at = ROLES.iter().position(|r| *r == c.role).unwrap_or_default();
                    if let (Some(a), Some(b)) = (not_after.get_mut(at), not_before.get_mut(at)) {
                        *a = Some(a.map_or(c.not_after, |a: i64| a.min(c.not_after)));
                        *b = Some(b.map_or(c.not_before, |b: i64| b.max(c.not_before)));
                    }
                }
                let bundle = l.trust_fingerprint.as_deref().map(|fp| {
                    let earliest = l.anchors.iter().map(|a| a.not_after).min();
                    (fp, l.anchors.len(), earliest)
                });
                Some(LiveRow {
                    not_after,
                    not_before,
                    effective_expiry: l.effective_expiry,
                    labels,
                    bundle,
                })
            });
            Row {
                set: &s.name,
                live,
                trust: s.trust.as_ref().filter(|t| t.exported && s.live.is_some()),
                valid: s.valid_at(now),
                ready: s.readiness(now).is_ok(),
            }
        })
        .collect();
    let live = || {
        rows.iter()
            .filter_map(|r| r.live.as_ref().map(|l| (r.set, l)))
    };

    let mut w = Series::new(out, &NOT_AFTER);
    for (set, l) in live() {
        for (role, t) in ROLES.iter().zip(l.not_after) {
            if let Some(t) = t {
                w.series(&[("role", role.as_str()), ("set", set)], t as f64);
            }
        }
    }
    let mut w = Series::new(out, &NOT_BEFORE);
    for (set, l) in live() {
        for (role, t) in ROLES.iter().zip(l.not_before) {
            if let Some(t) = t {
                w.series(&[("role", role.as_str()), ("set", set)], t as f64);
            }
        }
    }
    let mut w = Series::new(out, &EFFECTIVE_EXPIRY);
    for (set, l) in live() {
        w.series(&[("set", set)], l.effective_expiry as f64);
    }
    let mut w = Series::new(out, &CERT_INFO);
    for (_, l) in live() {
        for label_set in l.labels.cert_info() {
            w.formatted(label_set, 1.0);
        }
    }
    let bundled = || live().filter_map(|(set, l)| l.bundle.map(|b| (set, b)));
    let mut w = Series::new(out, &TRUST_INFO);
    for (set, (fp, _, _)) in bundled() {
        w.series(&[("fingerprint_sha256", fp), ("set", set)], 1.0);
    }
    let mut w = Series::new(out, &TRUST_ANCHORS);
    for (set, (_, anchors, _)) in bundled() {
        w.series(&[("set", set)], anchors as f64);
    }
    let mut w = Series::new(out, &TRUST_EARLIEST);
    for (set, (_, _, earliest)) in bundled() {
        if let Some(t) = earliest {
            w.series(&[("set", set)], t as f64);
        }
    }
    // Per-anchor series, for live material only, and only up to max_exported_anchors (a
    // mounted public root store would cost hundreds of series per pod): status says so.
    let exported = || rows.iter().filter_map(|r| r.trust.map(|t| (r.set, t)));
    let mut w = Series::new(out, &ANCHOR_INFO);
    for (set, t) in exported() {
        for a in &t.anchors {
            w.series(
                &[
                    ("anchor_id", a.anchor_id.as_str()),
                    ("set", set),
                    ("subject", &a.subject),
                ],
                1.0,
            );
        }
    }
    let mut w = Series::new(out, &ANCHOR_FIRST_SEEN);
    for (set, t) in exported() {
        for a in &t.anchors {
            w.series(
                &[
                    ("anchor_id", a.anchor_id.as_str()),
                    ("set", set),
                    ("via", a.via.as_str()),
                ],
                a.first_seen as f64,
            );
        }
    }
    let mut w = Series::new(out, &CHAIN_ANCHOR);
    for (set, t) in exported() {
        for id in &t.chain_anchors {
            w.series(&[("anchor_id", id.as_str()), ("set", set)], 1.0);
        }
    }
    let mut w = Series::new(out, &CERT_VALID);
    for r in &rows {
        w.series(&[("set", r.set)], flag(r.valid));
    }
    let mut w = Series::new(out, &SET_READY);
    for r in &rows {
        w.series(&[("set", r.set)], flag(r.ready));
    }
    Series::new(out, &READY).series(&[], flag(snapshot.readiness(now).is_ok()));

    // The x509-certificate-exporter families carry no `set` label, so two sets reading one
    // file (a shared CA bundle in monitor mode), or a bundle listing an anchor twice, would
    // give the same series twice: each is kept once, at its first place.
    let mut seen = HashSet::with_capacity_and_hasher(rows.len() * 4, BuildFx);
    let files: Vec<(&str, (i64, i64))> = live()
        .flat_map(|(_, l)| l.labels.x509())
        .filter(|(label_set, _)| seen.insert(*label_set))
        .collect();
    for (family, value) in [
        (&X509_NOT_AFTER, X509Value::NotAfter),
        (&X509_NOT_BEFORE, X509Value::NotBefore),
        (&X509_EXPIRED, X509Value::Expired),
    ] {
        let mut w = Series::new(out, family);
        for &(label_set, (not_after, not_before)) in &files {
            let v = match value {
                X509Value::NotAfter => not_after as f64,
                X509Value::NotBefore => not_before as f64,
                X509Value::Expired => flag(not_after < now),
            };
            w.formatted(label_set, v);
        }
    }
}

/// What an `x509_cert_*` series carries.
#[derive(Clone, Copy)]
enum X509Value {
    NotAfter,
    NotBefore,
    Expired,
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

// === pre-formatted labels of live material ===

/// The label sets of one set's live material, escaped and formatted once, when the material
/// goes live, for the families whose labels are many and long (`certgate_cert_info`, the three
/// `x509_cert_*`): a scrape copies them from one contiguous block instead of gathering and
/// escaping a dozen strings scattered over the heap per series. Only what cannot change while
/// the material is live is here: values that depend on the time (validity, readiness,
/// `x509_cert_expired`) are computed at each scrape.
#[derive(Debug, PartialEq, Eq)]
pub struct LiveLabels {
    /// Every label set, one after the other.
    text: Box<str>,
    /// Where each label set of `text` ends: `cert_info` of them for `certgate_cert_info`, then
    /// one per certificate of the `x509_cert_*` families.
    ends: Box<[u32]>,
    cert_info: usize,
    /// Not-after and not-before of each `x509_cert_*` label set.
    x509_times: Box<[(i64, i64)]>,
}

impl LiveLabels {
    /// The label sets of `live`, the live material of the set named `set`.
    pub fn new(set: &str, live: &LiveMaterial) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        let chain = &live.chain;
        for (i, c) in chain.iter().enumerate() {
            // A certificate given twice in the chain is one series.
            let same = |o: &CertInfo| {
                o.role == c.role
                    && o.fingerprint_sha256 == c.fingerprint_sha256
                    && o.serial == c.serial
                    && o.subject == c.subject
                    && o.issuer == c.issuer
            };
            if chain[..i].iter().any(same) {
                continue;
            }
            write_labels(
                &mut text,
                &[
                    ("fingerprint_sha256", c.fingerprint_sha256.as_str()),
                    ("issuer", &c.issuer),
                    ("role", c.role.as_str()),
                    ("serial", &c.serial),
                    ("set", set),
                    ("subject", &c.subject),
                ],
            );
            ends.push(offset(&text));
        }
        let cert_info = ends.len();
        let mut x509_times = Vec::new();
        for (path, c) in x509_certificates(live) {
            let filename = Path::new(path)
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default();
            write_labels(
                &mut text,
                &[
                    ("filename", filename),
                    ("filepath", path),
                    ("issuer_CN", &c.issuer_cn),
                    ("issuer_O", &c.issuer_o),
                    ("serial_number", &c.serial),
                    ("subject_CN", &c.subject_cn),
                    ("subject_O", &c.subject_o),
                ],
            );
            ends.push(offset(&text));
            x509_times.push((c.not_after, c.not_before));
        }
        Self {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            cert_info,
            x509_times: x509_times.into_boxed_slice(),
        }
    }

    /// The label sets `from..to` of `text`.
    fn label_sets(&self, from: usize, to: usize) -> impl Iterator<Item = &str> {
        let mut start = match from.checked_sub(1) {
            Some(before) => self.ends.get(before).map_or(0, |&e| e as usize),
            None => 0,
        };
        let ends = self.ends.get(from..to).unwrap_or_default();
        ends.iter().map(move |&end| {
            let end = end as usize;
            let s = self.text.get(start..end).unwrap_or_default();
            start = end;
            s
        })
    }

    /// `certgate_cert_info`'s label sets.
    fn cert_info(&self) -> impl Iterator<Item = &str> {
        self.label_sets(0, self.cert_info)
    }

    /// The `x509_cert_*` label sets, with the certificate's not-after and not-before.
    fn x509(&self) -> impl Iterator<Item = (&str, (i64, i64))> {
        self.label_sets(self.cert_info, self.ends.len())
            .zip(self.x509_times.iter().copied())
    }
}

/// The certificates the x509-certificate-exporter families describe for one live material,
/// with the file each is read from: the chain's leaf and intermediates under the cert file,
/// the bundle's anchors under the bundle file.
fn x509_certificates(l: &LiveMaterial) -> impl Iterator<Item = (&str, &CertInfo)> {
    let certs = l.chain.iter().filter(|c| c.role != Role::Anchor);
    let anchors = l
        .trust_path
        .as_deref()
        .into_iter()
        .flat_map(|tp| l.anchors.iter().map(move |a| (tp, a)));
    certs.map(|c| (l.cert_path.as_str(), c)).chain(anchors)
}

/// A fast hasher for the label sets de-duplicated at each scrape (a few thousand strings of
/// about 200 bytes, none chosen by an attacker: they are the operator's paths and the
/// certificates certgate approved): the multiply-rotate hash of rustc's `FxHasher`, eight bytes
/// at a time, where the default SipHash took a twentieth of the render.
#[derive(Default)]
struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let word = <[u8; 8]>::try_from(w).map_or(0, u64::from_le_bytes);
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &b in words.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Default, Clone, Copy)]
struct BuildFx;

impl std::hash::BuildHasher for BuildFx {
    type Hasher = Fx;
    fn build_hasher(&self) -> Fx {
        Fx::default()
    }
}

/// Where `text` ends now, as a label set's end.
fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

/// `{k="v",…}`, values escaped (nothing without labels).
fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    for (i, (k, v)) in labels.iter().enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    if !labels.is_empty() {
        out.push('}');
    }
}

// === process ===

const PROCESS_CPU: Family = Family {
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    kind: "counter",
};
const PROCESS_OPEN_FDS: Family = Family {
    name: "process_open_fds",
    help: "Number of open file descriptors.",
    kind: "gauge",
};
const PROCESS_MAX_FDS: Family = Family {
    name: "process_max_fds",
    help: "Maximum number of open file descriptors.",
    kind: "gauge",
};
const PROCESS_VIRTUAL_MEMORY: Family = Family {
    name: "process_virtual_memory_bytes",
    help: "Virtual memory size in bytes.",
    kind: "gauge",
};
const PROCESS_RESIDENT_MEMORY: Family = Family {
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    kind: "gauge",
};
const PROCESS_START_TIME: Family = Family {
    name: "process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds.",
    kind: "gauge",
};
const PROCESS_THREADS: Family = Family {
    name: "process_threads",
    help: "Number of OS threads in the process.",
    kind: "gauge",
};

/// Writes the `process_*` families, named and computed as client_golang's process collector
/// does, from `/proc/self`; a family whose source cannot be read is left out.
#[cfg(target_os = "linux")]
fn render_process(out: &mut Sink<'_>) {
    // SAFETY: sysconf only reads system configuration.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if let Some(stat) = ProcStat::read() {
        if ticks > 0 {
            let cpu = (stat.utime + stat.stime) as f64 / ticks as f64;
            Series::new(out, &PROCESS_CPU).series(&[], cpu);
        }
        Series::new(out, &PROCESS_VIRTUAL_MEMORY).series(&[], stat.vsize as f64);
        if page > 0 {
            let rss = stat.rss_pages as f64 * page as f64;
            Series::new(out, &PROCESS_RESIDENT_MEMORY).series(&[], rss);
        }
        if let (Some(boot), true) = (boot_time(), ticks > 0) {
            let start = boot as f64 + stat.start_ticks as f64 / ticks as f64;
            Series::new(out, &PROCESS_START_TIME).series(&[], start);
        }
        Series::new(out, &PROCESS_THREADS).series(&[], stat.threads as f64);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        Series::new(out, &PROCESS_OPEN_FDS).series(&[], fds.count() as f64);
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        Series::new(out, &PROCESS_MAX_FDS).series(&[], limit.rlim_cur as f64);
    }
}

#[cfg(not(target_os = "linux"))]
fn render_process(_out: &mut Sink<'_>) {}

/// The fields of `/proc/self/stat` the process families need.
#[cfg(target_os = "linux")]
#[derive(Debug, PartialEq, Eq)]
struct ProcStat {
    utime: u64,
    stime: u64,
    threads: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

#[cfg(target_os = "linux")]
impl ProcStat {
    fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// proc(5): the command name (field 2) is in parentheses and may hold spaces and
    /// parentheses itself, so fields are counted from the last `)`; field 3 comes first.
    fn parse(text: &str) -> Option<Self> {
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n.checked_sub(3)?)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            threads: field(20)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// Boot time, Unix seconds (`btime` of `/proc/stat`).
#[cfg(target_os = "linux")]
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Where an exposition is written: a buffer, handed on in chunks when there is somewhere to
/// send them, else kept whole.
struct Sink<'a> {
    buf: String,
    /// Hand the buffer on once it holds this many bytes.
    chunk: usize,
    send: Option<&'a mut dyn FnMut(String) -> bool>,
    /// Keep everything for now (a lock is held).
    held: bool,
    /// The reader went away: nothing more is written.
    gone: bool,
}

impl Sink<'_> {
    /// A sink that keeps the whole exposition.
    fn whole(capacity: usize) -> Self {
        Self {
            buf: String::with_capacity(capacity),
            chunk: usize::MAX,
            send: None,
            held: false,
            gone: false,
        }
    }

    /// After each line: hands the buffer on when it is full.
    fn line_done(&mut self) {
        if self.buf.len() >= self.chunk && !self.held {
            self.hand_on();
        }
    }

    /// Hands on what is left.
    fn finish(mut self) {
        if !self.buf.is_empty() {
            self.hand_on();
        }
    }

    fn hand_on(&mut self) {
        let Some(send) = self.send.as_mut() else {
            return;
        };
        let full = std::mem::replace(&mut self.buf, String::with_capacity(self.chunk + 1024));
        if !self.gone && !send(full) {
            self.gone = true;
        }
    }
}

/// Writes one family: HELP and TYPE with its first series, none without series (as the
/// registry leaves out a family with no series).
struct Series<'a, 'b> {
    out: &'a mut Sink<'b>,
    family: &'static Family,
    started: bool,
}

impl<'a, 'b> Series<'a, 'b> {
    fn new(out: &'a mut Sink<'b>, family: &'static Family) -> Self {
        Self {
            out,
            family,
            started: false,
        }
    }

    /// One series; `labels` in name order, as the registry writes them.
    fn series(&mut self, labels: &[(&str, &str)], value: f64) {
        if self.start() {
            let out = &mut self.out.buf;
            out.push_str(self.family.name);
            write_labels(out, labels);
            self.end(value);
        }
    }

    /// One series whose label set is already formatted (`{k="v",…}`, escaped).
    fn formatted(&mut self, label_set: &str, value: f64) {
        if self.start() {
            let out = &mut self.out.buf;
            out.push_str(self.family.name);
            out.push_str(label_set);
            self.end(value);
        }
    }

    /// Before a series: HELP and TYPE before the first; `false` once the reader is gone.
    fn start(&mut self) -> bool {
        if self.out.gone {
            return false;
        }
        if !self.started {
            self.started = true;
            let name = self.family.name;
            let _ = write!(
                self.out.buf,
                "# HELP {name} {}\n# TYPE {name} {}\n",
                self.family.help, self.family.kind
            );
        }
        true
    }

    /// After a series' name and labels: the value, the end of the line.
    fn end(&mut self, value: f64) {
        let out = &mut self.out.buf;
        out.push(' ');
        write_value(out, value);
        out.push('\n');
        self.out.line_done();
    }
}

/// A value as the registry's encoder writes it (f64's `Display`). Nearly every value here is
/// a whole number (a timestamp, a count, 0 or 1), which an integer's `Display` writes the same
/// way and several times faster.
fn write_value(out: &mut String, value: f64) {
    const EXACT: f64 = (1u64 << 53) as f64;
    if value.fract() == 0.0 && value.abs() < EXACT && !(value == 0.0 && value.is_sign_negative()) {
        write_integer(out, value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// `v` in decimal, as its `Display` writes it, without the formatting machinery.
fn write_integer(out: &mut String, v: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = v.unsigned_abs();
    for slot in digits.iter_mut().rev() {
        // At most 20 digits: u64::MAX has 20.
        *slot = b'0' + (n % 10) as u8;
        at -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    for &d in digits.get(at..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
fn escape_label_value(out: &mut String, v: &str) {
    if !needs_escape(v.as_bytes()) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Whether `v` holds a `\`, `"` or newline. Nearly no value does, and every byte of every
/// label value is looked at, so eight at a time: a word has a byte equal to `b` when
/// `w ^ b…b` has a zero byte, which `(x - 0x01…01) & !x & 0x80…80` detects exactly. (Bytes,
/// not chars: the three are ASCII, and no byte of a multi-byte UTF-8 character equals them.)
fn needs_escape(v: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has = |w: u64, b: u8| {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    };
    let mut words = v.chunks_exact(8);
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            return true;
        };
        let w = u64::from_ne_bytes(word);
        if has(w, b'\\') | has(w, b'"') | has(w, b'\n') {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b == b'\\' || b == b'"' || b == b'\n')
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use super::*;
    use crate::ids::Fingerprint;
    use crate::pipeline::inspect::CertBody;
    use crate::state::{Mode, SetStatus};

    /// When the fixture is scraped.
    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn cert(role: Role, cn: &str, o: &str, issuer: (&str, &str), serial: &str) -> CertInfo {
        let body = CertBody {
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
            anchor_id: crate::ids::AnchorId::of(cn.as_bytes(), o.as_bytes()),
        };
        CertInfo::new(role, body)
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
            chain: chain.into(),
            anchors: anchors.into(),
            since: crate::time_fmt::rfc3339(NOW - DAY),
            labels: None,
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
        let mut anchors = web.anchors.to_vec();
        anchors[0].not_after = NOW + 3000 * DAY;
        anchors.push(other_root);
        web.anchors = anchors.into();

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
        let snapshot = Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            initialized: true,
            sets: sets.into_iter().map(Arc::new).collect(),
            watch_problem: None,
        };
        (m, snapshot)
    }

    /// What `/metrics` serves for `snapshot` at `now`.
    /// The exposition of `snapshot` at `now`: the same whether the label sets of the live
    /// material were formatted when it went live, as the daemon does, or are formatted at the
    /// scrape, as for a snapshot made by hand.
    fn exposition(m: &Metrics, snapshot: &Snapshot, now: i64) -> String {
        let text = m.render(snapshot, now);
        let formatted = m.render(&with_labels(snapshot), now);
        assert!(!snapshot
            .sets
            .iter()
            .any(|s| s.live.as_ref().is_some_and(|l| l.labels.is_some())));
        assert_eq!(without_process(&formatted), without_process(&text));
        text
    }

    /// `snapshot` with the label sets of each live material formatted, as `set_live` does.
    fn with_labels(snapshot: &Snapshot) -> Snapshot {
        let sets = snapshot
            .sets
            .iter()
            .map(|s| {
                let mut s = (**s).clone();
                if let Some(l) = s.live.as_mut() {
                    l.labels = Some(Arc::new(LiveLabels::new(&s.name, l)));
                }
                Arc::new(s)
            })
            .collect();
        Snapshot {
            sets,
            ..snapshot.clone()
        }
    }

    /// One sample: its name, its labels sorted, its value as written.
    type Sample = (String, Vec<(String, String)>, String);

    /// One family of an exposition: HELP, TYPE, and its samples.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Parsed {
        help: String,
        kind: String,
        samples: BTreeSet<Sample>,
    }

    /// Parses a text exposition into families; panics on a malformed line, a sample outside
    /// its family, or a duplicate series.
    fn parse(text: &str) -> BTreeMap<String, Parsed> {
        let mut out: BTreeMap<String, Parsed> = BTreeMap::new();
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

    /// What differs from [`BEFORE`] on purpose, each line of BEFORE with what replaced it
    /// (issue 14, part 2).
    const CHANGED: &[(&str, &str)] = &[
        // The refusal names its reason.
        (
            "# HELP certgate_source_rejected 1 while the newest source material was refused (rejected or rolled back) and is not live.",
            "# HELP certgate_source_rejected 1 while the newest source material was refused (rejected or rolled back) and is not live; reason: the failed check.",
        ),
        (
            "certgate_source_rejected{set=\"expired\"} 1",
            "certgate_source_rejected{reason=\"unknown_issuer\",set=\"expired\"} 1",
        ),
    ];

    /// Series added since [`BEFORE`] (issue 14, part 2).
    const ADDED: &str = r#"
# HELP certgate_rotations_total Candidates by outcome (published, rejected, rolled_back) and reason.
# TYPE certgate_rotations_total counter
certgate_rotations_total{outcome="rolled_back",reason="workload_refused",set="web"} 0
certgate_rotations_total{outcome="rolled_back",reason="workload_refused",set="expired"} 0
certgate_rotations_total{outcome="published",reason="ok",set="pending"} 0
certgate_rotations_total{outcome="rolled_back",reason="workload_refused",set="pending"} 0
# HELP certgate_set_ready 1 when the set is ready: live material valid now, not within fail_ready_before (certgate_ready counts the required sets).
# TYPE certgate_set_ready gauge
certgate_set_ready{set="web"} 1
certgate_set_ready{set="mon"} 1
certgate_set_ready{set="expired"} 0
certgate_set_ready{set="pending"} 0
"#;

    /// BEFORE with [`CHANGED`] and [`ADDED`] applied.
    fn expected() -> BTreeMap<String, Parsed> {
        let mut before = BEFORE.replace("{VERSION}", env!("CARGO_PKG_VERSION"));
        for (old, new) in CHANGED {
            let old = format!("\n{old}\n");
            assert!(before.contains(&old), "not in BEFORE: {old}");
            before = before.replace(&old, &format!("\n{new}\n"));
        }
        let mut want = parse(&before);
        for (name, added) in parse(ADDED) {
            match want.get_mut(&name) {
                Some(family) => {
                    assert_eq!((&family.help, &family.kind), (&added.help, &added.kind));
                    family.samples.extend(added.samples);
                }
                None => {
                    want.insert(name, added);
                }
            }
        }
        want
    }

    #[test]
    fn families_are_those_of_before_with_the_changes_listed() {
        let (m, snapshot) = fixture();
        let text = exposition(&m, &snapshot, NOW);
        let want = expected();
        let mut got = parse(&text);
        // The process families vary from run to run; they have a test of their own.
        got.retain(|name, _| !name.starts_with("process_"));
        for (name, family) in &want {
            assert_eq!(got.get(name), Some(family), "family {name}");
        }
        let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        assert!(extra.is_empty(), "families not expected: {extra:?}");
    }

    #[test]
    fn a_file_two_sets_read_and_an_anchor_listed_twice_give_one_series() {
        let root = cert(Role::Anchor, "Root CA", "Acme", ("Root CA", "Acme"), "01");
        let leaf = |cn: &str, serial: &str| cert(Role::Leaf, cn, "", ("Root CA", "Acme"), serial);
        // Two monitor-mode sets trusting one bundle file; the second lists its anchor twice.
        let a = live(
            "/src/a/tls.crt",
            Some("/etc/ca.crt"),
            vec![leaf("a", "0a"), root.clone()],
        );
        let mut b = live(
            "/src/b/tls.crt",
            Some("/etc/ca.crt"),
            vec![leaf("b", "0b"), root.clone()],
        );
        b.anchors = [root.clone(), root].into();
        let snapshot = Snapshot {
            version: "test",
            initialized: true,
            sets: vec![
                Arc::new(set("a", Mode::Monitor, Some(a))),
                Arc::new(set("b", Mode::Monitor, Some(b))),
            ],
            watch_problem: None,
        };
        let m = Metrics::new().unwrap();
        // `parse` fails on a duplicate series.
        let families = parse(&exposition(&m, &snapshot, NOW));
        let not_after = &families["x509_cert_not_after"].samples;
        let paths: Vec<&str> = not_after
            .iter()
            .map(|(_, labels, _)| {
                labels
                    .iter()
                    .find(|(k, _)| k == "filepath")
                    .unwrap()
                    .1
                    .as_str()
            })
            .collect();
        assert_eq!(paths, ["/etc/ca.crt", "/src/a/tls.crt", "/src/b/tls.crt"]);
        assert_eq!(families["certgate_trust_bundle_anchors"].samples.len(), 2);
    }

    #[test]
    fn anchor_series_follow_the_trust_status_up_to_the_cap() {
        use crate::ids::AnchorId;
        use crate::state::{AnchorStatus, TrustStatus, Via};
        let (m, mut snapshot) = fixture();
        let id = |n: &str| AnchorId::of(n.as_bytes(), b"key");
        let mut web = snapshot.sets[0].as_ref().clone();
        let trust = |exported| TrustStatus {
            anchors: vec![
                AnchorStatus {
                    anchor_id: id("old"),
                    subject: "CN=Old Root".into(),
                    not_after: NOW + DAY,
                    first_seen: NOW - DAY,
                    via: Via::Startup,
                },
                AnchorStatus {
                    anchor_id: id("new"),
                    subject: "CN=New Root".into(),
                    not_after: NOW + DAY,
                    first_seen: NOW - 60,
                    via: Via::Rotation,
                },
            ],
            chain_anchors: vec![id("old"), id("new")],
            exported,
            note: None,
        };
        web.trust = Some(trust(true));
        snapshot.sets[0] = Arc::new(web.clone());
        let text = m.render(&snapshot, NOW);
        let families = parse(&text);
        assert_eq!(families["certgate_trust_anchor_info"].samples.len(), 2);
        assert_eq!(families["certgate_chain_anchor_info"].samples.len(), 2);
        let first_seen = format!(
            "certgate_trust_anchor_first_seen_timestamp_seconds{{anchor_id=\"{}\",set=\"web\",via=\"rotation\"}} {}",
            id("new"),
            NOW - 60
        );
        assert!(text.contains(&first_seen), "{text}");
        // Above max_exported_anchors: none of the per-anchor series, the bundle ones stay.
        web.trust = Some(trust(false));
        snapshot.sets[0] = Arc::new(web);
        let text = m.render(&snapshot, NOW);
        assert!(!text.contains("certgate_trust_anchor_info{"), "{text}");
        assert!(!text.contains("certgate_chain_anchor_info{"), "{text}");
        assert!(text.contains("certgate_trust_bundle_info{"), "{text}");
    }

    #[test]
    fn series_of_material_no_longer_live_are_gone_from_the_next_scrape() {
        let (m, mut snapshot) = fixture();
        let before = parse(&m.render(&snapshot, NOW));
        assert_eq!(before["certgate_cert_info"].samples.len(), 9);
        // The monitor-mode set's source turned bad: nothing of it is live.
        let mut mon = snapshot.sets[1].as_ref().clone();
        mon.live = None;
        snapshot.sets[1] = Arc::new(mon);
        let text = m.render(&snapshot, NOW);
        let after = parse(&text);
        assert_eq!(after["certgate_cert_info"].samples.len(), 6);
        assert!(!text.contains("/src/mon/tls.crt"), "{text}");
        // What remains of the set says it has nothing valid (besides the event families).
        let mon: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("set=\"mon\""))
            .filter(|l| {
                !l.starts_with("certgate_rotations_total")
                    && !l.starts_with("certgate_last_rotation")
            })
            .collect();
        assert_eq!(
            mon,
            [
                "certgate_source_rejected{set=\"mon\"} 0",
                "certgate_cert_valid{set=\"mon\"} 0",
                "certgate_set_ready{set=\"mon\"} 0",
            ]
        );
    }

    #[test]
    fn time_alone_flips_the_time_dependent_gauges() {
        let (m, snapshot) = fixture();
        let later = parse(&m.render(&snapshot, NOW + 6 * DAY));
        let expired = &later["x509_cert_expired"].samples;
        let web_leaf = expired
            .iter()
            .find(|(_, labels, _)| {
                labels
                    .iter()
                    .any(|(k, v)| k == "serial_number" && v == "-7f")
            })
            .unwrap();
        assert_eq!(web_leaf.2, "1");
        let valid = &later["certgate_cert_valid"].samples;
        let web = valid.iter().find(|(_, l, _)| l[0].1 == "web").unwrap();
        assert_eq!(web.2, "0");
    }

    #[test]
    fn help_texts_need_no_escaping() {
        for f in FAMILIES {
            assert!(!f.help.contains(['\\', '\n']), "{}", f.name);
            assert!(
                f.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()),
                "{}",
                f.name
            );
        }
    }

    #[test]
    fn label_values_are_escaped_as_the_text_format_wants() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\\b\"c\nd");
        assert_eq!(out, r#"a\\b\"c\nd"#);
    }

    /// Prometheus' own linter accepts the fixture's exposition (escaped subjects included).
    #[test]
    fn promtool_accepts_the_exposition() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let Ok(mut child) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("skipped: promtool not installed");
            return;
        };
        let (m, snapshot) = fixture();
        let text = m.render(&snapshot, NOW);
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_process_families_describe_this_process() {
        let (m, snapshot) = fixture();
        let families = parse(&m.render(&snapshot, NOW));
        let value = |name: &str| -> f64 {
            let f = families
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(f.samples.len(), 1, "{name}");
            f.samples.iter().next().unwrap().2.parse().unwrap()
        };
        assert_eq!(families["process_cpu_seconds_total"].kind, "counter");
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_threads") >= 1.0);
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(
            start <= wall + 1.0 && start > wall - 86_400.0,
            "{start} vs {wall}"
        );
    }

    #[test]
    fn proc_stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis (proc(5) example fields).
        let line = "4242 (cert gate) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 37 12 0 0 20 0 \
                    5 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 \
                    0 0 0 0 0\n";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                utime: 37,
                stime: 12,
                threads: 5,
                start_ticks: 98765,
                vsize: 123_456_789,
                rss_pages: 2048,
            })
        );
        assert_eq!(ProcStat::parse("4242 (truncated"), None);
    }

    #[test]
    fn values_are_written_as_f64_display_writes_them() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.002,
            1_700_000_000.0,
            -9_223_372_036_854_775_808.0,
            9_007_199_254_740_991.0,
            9_007_199_254_740_993.0,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ] {
            let mut out = String::new();
            write_value(&mut out, v);
            assert_eq!(out, v.to_string(), "{v:?}");
        }
    }

    /// The README's "Series per set" table: first cell → second cell.
    fn readme_series_table() -> BTreeMap<String, String> {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Series per set\n")
            .nth(1)
            .expect("README has a ## Series per set section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| a set") && !l.starts_with("| ---"))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
                (cells[0].to_string(), cells[1].to_string())
            })
            .collect()
    }

    /// The series of the one set in `snapshot`: every series naming it or one of its files.
    fn set_series(m: &Metrics, snapshot: &Snapshot) -> usize {
        m.render(snapshot, NOW)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.contains("set=\"") || l.contains("filepath=\""))
            .count()
    }

    #[test]
    fn series_per_set_are_as_the_readme_says() {
        let table = readme_series_table();
        let row = |text: &str| -> i64 {
            let cell = table
                .get(text)
                .unwrap_or_else(|| panic!("README row {text:?} missing: {table:?}"));
            cell.trim_start_matches('+').parse().unwrap()
        };
        let root = cert(Role::Anchor, "Root CA", "Acme", ("Root CA", "Acme"), "01");
        let inter = cert(
            Role::Intermediate,
            "Issuing CA",
            "Acme",
            ("Root CA", "Acme"),
            "1a",
        );
        let leaf = cert(Role::Leaf, "web.example", "", ("Issuing CA", "Acme"), "2a");
        let paths = ("/publish/web/tls.crt", Some("/publish/web/ca.crt"));
        let typical = || {
            live(
                paths.0,
                paths.1,
                vec![leaf.clone(), inter.clone(), root.clone()],
            )
        };
        let count = |mode: Mode, live: Option<LiveMaterial>, events: &dyn Fn(&Metrics)| {
            let m = Metrics::new().unwrap();
            m.declare_set("web");
            events(&m);
            let snapshot = Snapshot {
                version: "test",
                initialized: true,
                sets: vec![Arc::new(set("web", mode, live))],
                watch_problem: None,
            };
            set_series(&m, &snapshot) as i64
        };
        let published = |m: &Metrics| m.rotation("web", Outcome::Published, None, None, NOW);
        let base = count(Mode::Publish, Some(typical()), &published);
        assert_eq!(
            base,
            row("publish mode: a leaf, one intermediate, a bundle of one anchor, after its first publish")
        );
        let accepted = |m: &Metrics| m.rotation("web", Outcome::Accepted, None, None, NOW);
        assert_eq!(
            count(Mode::Monitor, Some(typical()), &accepted),
            row("the same set in monitor mode")
        );
        assert_eq!(
            count(Mode::Publish, None, &|_| ()),
            row("nothing live yet (publish mode)")
        );
        let mut second = inter.clone();
        second.serial = "1b".into();
        second.fingerprint_sha256 = Fingerprint::of(b"second intermediate");
        let longer = live(
            paths.0,
            paths.1,
            vec![leaf.clone(), inter.clone(), second, root.clone()],
        );
        assert_eq!(
            count(Mode::Publish, Some(longer), &published) - base,
            row("each further intermediate in the chain")
        );
        let mut wider = typical();
        let mut other = root.clone();
        other.serial = "02".into();
        wider.anchors = [root.clone(), other].into();
        assert_eq!(
            count(Mode::Publish, Some(wider), &published) - base,
            row("each further anchor in the bundle")
        );
        let verified = |m: &Metrics| {
            published(m);
            m.workload_serving("web", true);
        };
        assert_eq!(
            count(Mode::Publish, Some(typical()), &verified) - base,
            row("with `verify_addr` (the workload check)")
        );
        let gated = |m: &Metrics| {
            published(m);
            m.gate.declare("web");
        };
        assert_eq!(
            count(Mode::Publish, Some(typical()), &gated) - base,
            row("with a `[set.gate]` (holding, releases and evaluations, at 0 from the start)")
        );
        let holding = |m: &Metrics| {
            gated(m);
            m.gate
                .hold("web", crate::gate::HoldKind::Leaf, NOW, NOW + 3600);
            let j = crate::gate::Judgement::default();
            m.gate.evaluated(
                "web",
                &j,
                crate::gate::UnknownVerifiers::Hold,
                Duration::from_millis(3),
                NOW,
            );
        };
        assert_eq!(
            count(Mode::Publish, Some(typical()), &holding)
                - count(Mode::Publish, Some(typical()), &gated),
            row("… while it holds a candidate (start, deadline, verifiers by status, last answer)")
        );
        let rejected = |m: &Metrics| {
            published(m);
            m.rotation(
                "web",
                Outcome::Rejected,
                Some(Reason::UnknownIssuer),
                None,
                NOW,
            );
        };
        let once = count(Mode::Publish, Some(typical()), &rejected);
        assert_eq!(once - base, row("the first rejection"));
        let twice = |m: &Metrics| {
            rejected(m);
            m.rotation(
                "web",
                Outcome::Rejected,
                Some(Reason::NameMismatch),
                None,
                NOW,
            );
        };
        assert_eq!(
            count(Mode::Publish, Some(typical()), &twice) - once,
            row("each further rejection reason seen")
        );
    }

    #[test]
    fn escapes_are_found_wherever_they_are() {
        for len in 0..40 {
            assert!(!needs_escape("a\u{e9}".repeat(len).as_bytes()));
            for at in 0..len {
                for special in ['\\', '"', '\n'] {
                    let mut v: Vec<char> = "x".repeat(len).chars().collect();
                    v[at] = special;
                    let v: String = v.into_iter().collect();
                    assert!(needs_escape(v.as_bytes()), "{v:?}");
                }
            }
        }
        // Bytes next to the three (0x5b 0x5d 0x21 0x23 0x09 0x0b), and a zero byte, are not.
        assert!(!needs_escape(b"[]!#\t\x0b\0abcdefgh[]!#"));
    }

    #[test]
    fn chunks_make_up_the_whole_and_none_is_sent_under_the_lock() {
        let (m, snapshot) = fixture();
        let whole = m.render(&snapshot, NOW);
        let mut chunks: Vec<String> = Vec::new();
        m.render_chunks(&snapshot, NOW, 512, &mut |chunk| {
            // The daemon's rotation() calls take this lock: a chunk waiting on a slow reader
            // must not hold it.
            assert!(m.sets.try_lock().is_ok(), "chunk sent under the lock");
            chunks.push(chunk);
            true
        });
        assert!(chunks.len() > 10, "{}", chunks.len());
        assert_eq!(without_process(&chunks.concat()), without_process(&whole));
        // Chunks end at line ends.
        assert!(chunks.iter().all(|c| c.ends_with('\n')));

        // A reader that goes away gets nothing more.
        let mut sent = 0;
        m.render_chunks(&snapshot, NOW, 512, &mut |_| {
            sent += 1;
            false
        });
        assert_eq!(sent, 1);
    }

    /// An exposition without its `process_*` lines (they differ between two renders).
    fn without_process(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with("process_"))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}
