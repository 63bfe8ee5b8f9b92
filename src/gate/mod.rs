//! The fleet gate: a candidate leaf `L` replacing the live leaf `L0` is published only when no
//! verifier that can verify `L0` now would fail to verify `L` (**no regression**).
//!
//! - `A(L)`, the anchors that verify a chain, comes from path building over every known anchor
//!   (the live and the candidate bundle: [`crate::pipeline::anchors::anchors_verifying`]). When
//!   `A(L0) ⊆ A(L)` (same CA, or a chain cross-signed to the old root) nothing can regress:
//!   the candidate is published at once, with no query.
//! - Otherwise the verifiers — the pods the `verifiers` selectors name, read back from
//!   Prometheus through the trust series every certgate exports — are asked which anchors
//!   they trust ([`query`]), and [`judge`] says whether any would regress, is unknown, or too
//!   few are seen. A clear answer must last `stable_for`.
//! - Every hold ends by the [`deadline`]: the gate must never cause an expiry.
//!
//! This module is pure (settings, the rule, the deadline, the judgement); the daemon drives it
//! (`daemon::gate`) and [`query`] talks to the query API.

pub mod metrics;
pub mod query;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fleet::query::Sample;
use crate::fleet::selector::Selector;
use crate::ids::AnchorId;

/// Default `stable_for`.
pub const DEFAULT_STABLE_FOR: Duration = Duration::from_secs(60);
/// Default `[fleet] poll_interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// Default `[fleet] query_timeout`.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many blocking pods are named in `/status` and logs.
pub const MAX_BLOCKING_SHOWN: usize = 20;
/// The smallest margin before expiry the default deadline keeps.
const MIN_RELEASE_MARGIN_SECS: i64 = 300;

/// What the gate does with a candidate that would regress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum GateMode {
    /// Hold it until no verifier regresses (or the deadline).
    Hold,
    /// Compute and report what a hold would do; publish at once.
    Observe,
    /// No gate.
    #[default]
    Off,
}

impl GateMode {
    /// The config spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Observe => "observe",
            Self::Off => "off",
        }
    }
}

/// What a verifier whose scrape fails (or that exports no trust series) counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum UnknownVerifiers {
    /// It might regress: hold.
    #[default]
    Hold,
    /// Leave it out.
    Ignore,
}

/// `release_before_expiry`: how long before the live chain expires a hold ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseBefore {
    /// A fixed margin.
    Margin(Duration),
    /// A share of the live chain's lifetime, in basis points (1 % = 100).
    Share(u32),
}

impl ReleaseBefore {
    /// `30m`, `6h`, or `10%` / `12.5%` of the lifetime.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let bp = crate::fleet::parse_coverage(&format!("{p}%")).map_err(|_| {
                format!("{s:?}: expected a duration such as 30m or a share such as 10%")
            })?;
            if bp >= 10_000 {
                return Err(format!("{s:?}: must be below 100% of the lifetime"));
            }
            return Ok(Self::Share(bp));
        }
        crate::duration::parse_duration(t)
            .map(Self::Margin)
            .map_err(|e| {
                format!("{s:?}: {e}; expected a duration such as 30m or a share such as 10%")
            })
    }
}

/// `[set.gate]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateSettings {
    /// hold, observe or off.
    pub mode: GateMode,
    /// The pods that verify this set's leaf: label matchers, environment already expanded.
    pub verifiers: Vec<Selector>,
    /// The pods whose live leaves this set's bundle verifies (removals); default `verifiers`.
    pub presenters: Vec<Selector>,
    /// Fewer verifiers seen than this holds.
    pub min_verifiers: u32,
    /// A PromQL expression: how many verifiers should exist.
    pub expected_verifiers: Option<String>,
    /// Verifiers whose scrape fails.
    pub unknown_verifiers: UnknownVerifiers,
    /// A clear answer must last this long.
    pub stable_for: Duration,
    /// The deadline's margin before the live chain's expiry (`None`: max(10 %, 5m)).
    pub release_before_expiry: Option<ReleaseBefore>,
    /// A file listing released leaf fingerprints (one per line), for fleet-wide releases.
    pub release_file: Option<PathBuf>,
}

/// `[fleet]`, validated: where the gate (and `certgate fleet`) reads the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// The query API base URL.
    pub prometheus_url: String,
    /// Extra request headers, `Name: value`.
    pub headers: Vec<String>,
    /// A bearer token file.
    pub bearer_token_file: Option<PathBuf>,
    /// CA bundle for an https:// URL.
    pub ca_file: Option<PathBuf>,
    /// Bound on each query round.
    pub query_timeout: Duration,
    /// How often a holding set asks again (jittered; backs off on errors).
    pub poll_interval: Duration,
    /// The scrape job(s) of certgate, a regex, for `up`.
    pub job: String,
}

/// Expands `$NAME` and `${NAME}` from `env`; a variable that is not set is an error (a
/// selector quietly matching `namespace=""` would hold forever or, worse, match nothing).
pub fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, next) = if let Some(b) = after.strip_prefix('{') {
            let end = b.find('}').ok_or_else(|| format!("{s:?}: unclosed ${{"))?;
            (&b[..end], &b[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "{s:?}: '$' must start a variable such as $POD_NAMESPACE"
            ));
        }
        let value =
            env(name).ok_or_else(|| format!("{s:?}: environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = next;
    }
    out.push_str(rest);
    Ok(out)
}

/// When a hold must end: the live chain's notAfter minus the margin (`None`: max(10 % of its
/// lifetime, 5 m)). Unix seconds.
pub fn deadline(not_before: i64, not_after: i64, before: Option<ReleaseBefore>) -> i64 {
    let lifetime = not_after.saturating_sub(not_before).max(0);
    let margin = match before {
        None => (lifetime / 10).max(MIN_RELEASE_MARGIN_SECS),
        Some(ReleaseBefore::Margin(d)) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Some(ReleaseBefore::Share(bp)) => {
            i64::try_from(i128::from(lifetime) * i128::from(bp) / 10_000).unwrap_or(0)
        }
    };
    not_after.saturating_sub(margin)
}

/// Whether moving from a chain verified by `live` to one verified by `candidate` can regress
/// any verifier: some anchor that verifies the live chain does not verify the candidate.
pub fn may_regress(live: &[AnchorId], candidate: &[AnchorId]) -> bool {
    live.iter().any(|a| !candidate.contains(a))
}

/// Which way a hold goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    /// A leaf from a CA some verifiers may not trust yet.
    Leaf,
    /// A bundle dropping an anchor presenters' leaves still need.
    Removal,
}

impl HoldKind {
    /// The `kind` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Leaf => "leaf",
            Self::Removal => "removal",
        }
    }
}

/// Why a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Release {
    /// No verifier regresses any more, for `stable_for`.
    Clear,
    /// The deadline came.
    Deadline,
    /// An operator released this candidate.
    Override,
}

impl Release {
    /// Every reason, for declaring series.
    pub const ALL: [Self; 3] = [Self::Clear, Self::Deadline, Self::Override];

    /// The `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Clear => "clear",
            Self::Deadline => "deadline",
            Self::Override => "override",
        }
    }
}

/// A pod, by its `namespace` and `pod` labels, with the labels that name it in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PodRef {
    /// `namespace`.
    pub namespace: String,
    /// `pod`.
    pub pod: String,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.pod)
    }
}

fn pod_of(s: &Sample) -> Option<PodRef> {
    Some(PodRef {
        namespace: s.labels.get("namespace").cloned().unwrap_or_default(),
        pod: s.labels.get("pod")?.clone(),
    })
}

/// One round of answers about the verifiers.
#[derive(Debug, Default, Clone)]
pub struct Answers {
    /// `min by (namespace, pod) (up{…})`.
    pub up: Vec<Sample>,
    /// `count by (namespace, pod) (certgate_trust_anchor_info{…})`: pods exporting trust.
    pub exporting: Vec<Sample>,
    /// `count by (namespace, pod, anchor_id) (certgate_trust_anchor_info{…, anchor_id=~A})`
    /// for the anchors of both chains.
    pub relevant: Vec<Sample>,
    /// The `expected_verifiers` expression's answer (summed), when configured.
    pub expected: Option<f64>,
}

/// Why a verifier is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// `up == 0`.
    ScrapeFailing,
    /// Scraped, but exports no per-anchor trust series (no set live yet, or more anchors than
    /// `max_exported_anchors`).
    NoTrustSeries,
}

/// What one evaluation found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Judgement {
    /// Verifiers seen exporting trust.
    pub seen: u64,
    /// How many should exist (`expected_verifiers`).
    pub expected: Option<u64>,
    /// Seen, and fine with the candidate (or broken with both).
    pub ok: u64,
    /// Would fail the candidate while verifying the live leaf; sorted, all of them.
    pub regressing: Vec<PodRef>,
    /// Unknown verifiers; sorted.
    pub unknown: Vec<(PodRef, Unknown)>,
    /// Whether the candidate may go (this round).
    pub clear: bool,
    /// Why not, on one line.
    pub why: Option<String>,
}

impl Judgement {
    /// Up to [`MAX_BLOCKING_SHOWN`] pods that hold the candidate, for messages.
    pub fn blocking(&self, unknown_hold: bool) -> Vec<String> {
        let unknown = self
            .unknown
            .iter()
            .filter(|_| unknown_hold)
            .map(|(p, _)| p.to_string());
        self.regressing
            .iter()
            .map(ToString::to_string)
            .chain(unknown)
            .take(MAX_BLOCKING_SHOWN)
            .collect()
    }
}

/// Judges one round: a verifier regresses when it trusts an anchor of `live` (it verifies
/// the live leaf now) and none of `candidate`. One that trusts neither is already broken and
/// holds nothing. The candidate is clear when none regresses, no unknown verifier counts
/// (`unknown_verifiers = "hold"`), at least `min_verifiers` are seen, and at least the
/// expected number are.
///
/// For a removal (`kind` [`HoldKind::Removal`]) the pods are presenters, `live` the anchors
/// the candidate bundle drops and `candidate` those it keeps: a presenter whose live chain
/// reaches only dropped anchors would be stranded.
pub fn judge(
    answers: &Answers,
    live: &[AnchorId],
    candidate: &[AnchorId],
    settings: &GateSettings,
    kind: HoldKind,
) -> Judgement {
    // A pod whose scrape fails is unknown whatever its last series say: after a Prometheus
    // restart (or a target that vanished) they are old answers, still visible for the
    // lookback window.
    let failing: BTreeSet<PodRef> = answers
        .up
        .iter()
        .filter(|s| s.value == 0.0 || s.value.is_nan())
        .filter_map(pod_of)
        .collect();
    let exporting: BTreeSet<PodRef> = answers
        .exporting
        .iter()
        .filter_map(pod_of)
        .filter(|p| !failing.contains(p))
        .collect();
    let mut trusts: BTreeMap<&PodRef, (bool, bool)> = BTreeMap::new();
    let pods: Vec<(PodRef, Option<&str>)> = answers
        .relevant
        .iter()
        .filter_map(|s| Some((pod_of(s)?, s.labels.get("anchor_id").map(String::as_str))))
        .collect();
    for (pod, anchor) in &pods {
        let Some(anchor) = anchor else { continue };
        let entry = trusts.entry(pod).or_default();
        entry.0 |= live.iter().any(|a| a.as_str() == *anchor);
        entry.1 |= candidate.iter().any(|a| a.as_str() == *anchor);
    }
    let mut regressing = Vec::new();
    let mut ok = 0u64;
    for pod in &exporting {
        match trusts.get(pod) {
            Some((true, false)) => regressing.push(pod.clone()),
            _ => ok += 1,
        }
    }
    let mut unknown: Vec<(PodRef, Unknown)> = failing
        .iter()
        .map(|p| (p.clone(), Unknown::ScrapeFailing))
        .collect();
    for s in &answers.up {
        let Some(pod) = pod_of(s) else { continue };
        if !failing.contains(&pod) && !exporting.contains(&pod) {
            unknown.push((pod, Unknown::NoTrustSeries));
        }
    }
    unknown.sort_by(|a, b| a.0.cmp(&b.0));
    unknown.dedup_by(|a, b| a.0 == b.0);
    let seen = u64::try_from(exporting.len()).unwrap_or(u64::MAX);
    let expected = answers
        .expected
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.round() as u64);
    let unknown_hold = settings.unknown_verifiers == UnknownVerifiers::Hold;
    let (pods, regress) = match kind {
        HoldKind::Leaf => (
            "verifier(s)",
            "trust the live leaf's CA but not the candidate's",
        ),
        HoldKind::Removal => (
            "presenter(s)",
            "serve leaves that chain only to dropped anchors",
        ),
    };
    let why = if !regressing.is_empty() {
        Some(format!(
            "{} {pods} {regress}: {}",
            regressing.len(),
            list(regressing.iter().map(ToString::to_string))
        ))
    } else if unknown_hold && !unknown.is_empty() {
        Some(format!(
            "{} {pods} unknown (scrape failing or no certgate series): {}",
            unknown.len(),
            list(unknown.iter().map(|(p, _)| p.to_string()))
        ))
    } else if seen < u64::from(settings.min_verifiers) {
        Some(format!(
            "{seen} {pods} seen, min_verifiers is {} (does the selector match?)",
            settings.min_verifiers
        ))
    } else {
        expected
            .filter(|n| seen < *n)
            .map(|n| format!("{seen} {pods} seen, expected_verifiers says {n}"))
    };
    Judgement {
        seen,
        expected,
        ok,
        regressing,
        unknown,
        clear: why.is_none(),
        why,
    }
}

/// Up to [`MAX_BLOCKING_SHOWN`] items, joined, with how many more.
fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let n = items.len();
    let mut shown: Vec<String> = items.take(MAX_BLOCKING_SHOWN).collect();
    if n > MAX_BLOCKING_SHOWN {
        shown.push(format!("and {} more", n - MAX_BLOCKING_SHOWN));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests;
