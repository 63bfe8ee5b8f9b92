//! The fleet as the queries show it: pods (named by their `namespace` and `pod` labels), what
//! each set of each pod trusts and serves, and pods whose scrape fails; then groups by the
//! `--by` labels, with each anchor's coverage, first-seen times and propagation. Pure: built
//! from query answers, no I/O and no clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::query::Sample;
use super::selector::SET_LABEL;

/// Labels of certgate's own series, never target labels (so never taken for `--by`).
const SERIES_LABELS: [&str; 9] = [
    "set",
    "anchor_id",
    "subject",
    "via",
    "role",
    "fingerprint_sha256",
    "serial",
    "issuer",
    "__name__",
];

/// The answers of one round of queries.
#[derive(Debug, Default)]
pub struct Observed {
    /// `up` of certgate's scrape jobs.
    pub up: Vec<Sample>,
    /// `certgate_trust_anchor_first_seen_timestamp_seconds` per pod, set and anchor: which
    /// anchors each pod trusts, since when (when the round reads them).
    pub first_seen: Vec<Sample>,
    /// `certgate_trust_bundle_info` per pod and set: which bundle each pod trusts (when the
    /// round reads bundles instead of first-seen times).
    pub bundles: Vec<Sample>,
    /// `certgate_trust_anchor_info` of a few pods: every anchor's subject, and (with
    /// `namespace`, `pod`, `set`) the anchors of each bundle.
    pub anchor_info: Vec<Sample>,
    /// `certgate_cert_info{role="leaf"}` (only for the overview).
    pub leaf_info: Vec<Sample>,
    /// `certgate_cert_not_after_timestamp_seconds{role="leaf"}` (only for the overview).
    pub leaf_not_after: Vec<Sample>,
}

/// Whether a pod's certgate answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Scraped, with certgate series.
    Live,
    /// `up == 0`: its scrape fails (pod gone, certgate down, network).
    ScrapeFailing,
    /// Scraped (`up == 1`) but exports no certgate trust or leaf series (no set live yet).
    NoSeries,
}

impl Health {
    /// Why a pod is unknown, for humans; `None` for a live pod.
    pub fn unknown_reason(self) -> Option<&'static str> {
        match self {
            Self::Live => None,
            Self::ScrapeFailing => Some("scrape failing (up == 0)"),
            Self::NoSeries => Some("scraped, but no certgate trust series (no set live yet?)"),
        }
    }
}

/// The leaf one set of a pod serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Leaf {
    /// SHA-256 of the leaf's DER.
    pub fingerprint_sha256: String,
    /// Issuer.
    pub issuer: String,
    /// notAfter, Unix seconds.
    pub not_after: Option<i64>,
}

/// One anchor one set of a pod trusts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AnchorSeen {
    /// The anchor's subject.
    pub subject: String,
    /// When this pod first went live with it, Unix seconds.
    pub first_seen: Option<f64>,
    /// `startup` or `rotation`.
    pub via: Option<String>,
}

/// What one set of one pod holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PodSet {
    /// The live leaf, if the leaf series were queried and present.
    pub leaf: Option<Leaf>,
    /// The live bundle's fingerprint, when the round read bundles.
    pub bundle: Option<String>,
    /// The anchors of the live bundle, by anchor id (empty when its bundle's anchors are not
    /// exported: more than `max_exported_anchors`).
    pub anchors: BTreeMap<String, AnchorSeen>,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pod {
    /// `namespace` label.
    pub namespace: String,
    /// `pod` label.
    pub pod: String,
    /// Whether its certgate answers.
    pub health: Health,
    /// Its target labels (for `--by`).
    #[serde(skip)]
    pub target: BTreeMap<String, String>,
    /// Its sets.
    #[serde(skip)]
    pub sets: BTreeMap<String, PodSet>,
}

/// One pod in one group: a pod and (when it is known) one of its sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Index into [`Fleet::pods`].
    pub pod: usize,
    /// The set; `None` for an unknown pod whose group has no set yet.
    pub set: Option<String>,
}

/// Pods sharing the values of the `--by` labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// `(label, value)` for each `--by` label.
    pub labels: Vec<(String, String)>,
    /// Its members, by namespace and pod.
    pub members: Vec<Member>,
}

/// One anchor across one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnchorSummary {
    /// The anchor id.
    pub anchor_id: String,
    /// Its subject.
    pub subject: String,
    /// Pods of the group trusting it.
    pub trusting: usize,
    /// Pods in the group (unknown ones included).
    pub pods: usize,
    /// The earliest first-seen time among the pods trusting it.
    pub first_seen_earliest: Option<f64>,
    /// The latest first-seen time among the pods trusting it.
    pub first_seen_latest: Option<f64>,
    /// Latest minus earliest `via="rotation"` first-seen: how long the rotation took to reach
    /// every pod that learned it by rotation.
    pub propagation_seconds: Option<f64>,
    /// Every pod of the group trusts it (none unknown).
    pub complete: bool,
}

/// The fleet: pods and their groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// Every pod, by namespace and pod.
    pub pods: Vec<Pod>,
    /// The groups, by their label values.
    pub groups: Vec<Group>,
    /// Series without a `pod` label, left out.
    pub ignored_series: usize,
    /// The latest evaluation time among the answers, Unix seconds.
    pub evaluated_at: Option<f64>,
}

/// A pod while the answers are read: whether its scrape works, whether it exports series.
struct PodEntry {
    pod: Pod,
    /// `None`: no `up` series names it; else whether every one is 1.
    scraped: Option<bool>,
    series: bool,
}

/// Pods by namespace, then pod name (looked up without allocating).
#[derive(Default)]
struct Pods(BTreeMap<String, BTreeMap<String, PodEntry>>);

impl Pods {
    /// The pod a sample names (created on first sight), or `None` (counted in `ignored`)
    /// when it has no `pod` label.
    fn entry(&mut self, s: &Sample, ignored: &mut usize) -> Option<&mut PodEntry> {
        let Some(name) = s.labels.get("pod") else {
            *ignored += 1;
            return None;
        };
        let ns = s.labels.get("namespace").map_or("", String::as_str);
        if !self.0.contains_key(ns) {
            self.0.insert(ns.to_string(), BTreeMap::new());
        }
        let in_ns = self.0.get_mut(ns)?;
        if !in_ns.contains_key(name) {
            let target = s
                .labels
                .iter()
                .filter(|(k, _)| !SERIES_LABELS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            in_ns.insert(
                name.clone(),
                PodEntry {
                    pod: Pod {
                        namespace: ns.to_string(),
                        pod: name.clone(),
                        health: Health::Live,
                        target,
                        sets: BTreeMap::new(),
                    },
                    scraped: None,
                    series: false,
                },
            );
        }
        in_ns.get_mut(name)
    }

    /// The pod a sample names, if already known.
    fn get(&self, s: &Sample) -> Option<&PodEntry> {
        let ns = s.labels.get("namespace").map_or("", String::as_str);
        self.0.get(ns)?.get(s.labels.get("pod")?.as_str())
    }
}

/// The set a sample names, created on first sight.
fn set_entry<'a>(sets: &'a mut BTreeMap<String, PodSet>, s: &Sample) -> Option<&'a mut PodSet> {
    let name = s.labels.get(SET_LABEL).map_or("", String::as_str);
    if !sets.contains_key(name) {
        sets.insert(name.to_string(), PodSet::default());
    }
    sets.get_mut(name)
}

// === impl Fleet ===

impl Fleet {
    /// Builds the fleet from one round of answers, grouped by `by`.
    pub fn build(observed: &Observed, by: &[String]) -> Self {
        let mut pods = Pods::default();
        let mut ignored = 0;
        let mut evaluated_at: Option<f64> = None;
        let all = [
            &observed.up,
            &observed.first_seen,
            &observed.bundles,
            &observed.anchor_info,
            &observed.leaf_info,
            &observed.leaf_not_after,
        ];
        for s in all.iter().flat_map(|v| v.iter()) {
            evaluated_at = Some(evaluated_at.map_or(s.at, |t: f64| t.max(s.at)));
        }
        for s in &observed.up {
            // Only targets named as pods count; a target without a pod label (a synthetic
            // exporter, a federation job) is left out.
            if let Some(pod) = pods.entry(s, &mut ignored) {
                pod.scraped = Some(pod.scraped.unwrap_or(true) && s.value == 1.0);
            }
        }
        // An anchor a pod trusts is one it exports a first-seen time for (both series are
        // exported together, for the live bundle only).
        for s in &observed.first_seen {
            let Some(id) = s.labels.get("anchor_id") else {
                continue;
            };
            let Some(pod) = pods.entry(s, &mut ignored) else {
                continue;
            };
            pod.series = true;
            let Some(set) = set_entry(&mut pod.pod.sets, s) else {
                continue;
            };
            if !set.anchors.contains_key(id) {
                set.anchors.insert(id.clone(), AnchorSeen::default());
            }
            let Some(seen) = set.anchors.get_mut(id) else {
                continue;
            };
            // Two series for one anchor (a pod scraped twice, a restart between scrapes): the
            // earliest.
            if s.value.is_finite() && seen.first_seen.map_or(true, |t| s.value < t) {
                seen.first_seen = Some(s.value);
                seen.via = s.labels.get("via").cloned();
            }
        }
        for s in &observed.bundles {
            let Some(pod) = pods.entry(s, &mut ignored) else {
                continue;
            };
            pod.series = true;
            if let Some(set) = set_entry(&mut pod.pod.sets, s) {
                set.bundle = s.labels.get("fingerprint_sha256").cloned();
            }
        }
        for s in &observed.leaf_info {
            let Some(pod) = pods.entry(s, &mut ignored) else {
                continue;
            };
            pod.series = true;
            let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            let Some(set) = set_entry(&mut pod.pod.sets, s) else {
                continue;
            };
            let leaf = set.leaf.get_or_insert_with(Leaf::default);
            leaf.fingerprint_sha256 = label("fingerprint_sha256");
            leaf.issuer = label("issuer");
        }
        for s in &observed.leaf_not_after {
            let Some(pod) = pods.entry(s, &mut ignored) else {
                continue;
            };
            pod.series = true;
            if let (true, Some(set)) = (s.value.is_finite(), set_entry(&mut pod.pod.sets, s)) {
                set.leaf.get_or_insert_with(Leaf::default).not_after = Some(s.value as i64);
            }
        }
        let subjects: BTreeMap<&str, &str> = observed
            .anchor_info
            .iter()
            .filter_map(|s| {
                Some((
                    s.labels.get("anchor_id")?.as_str(),
                    s.labels.get("subject")?.as_str(),
                ))
            })
            .collect();
        // The anchors of each bundle, from the pods the follow-up query read them from.
        let mut bundle_anchors: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for s in &observed.anchor_info {
            let bundle = pods
                .get(s)
                .and_then(|p| p.pod.sets.get(s.labels.get(SET_LABEL)?.as_str()))
                .and_then(|set| set.bundle.clone());
            if let (Some(bundle), Some(id)) = (bundle, s.labels.get("anchor_id")) {
                bundle_anchors.entry(bundle).or_default().insert(id);
            }
        }
        let pods: Vec<Pod> = pods
            .0
            .into_values()
            .flat_map(BTreeMap::into_values)
            .map(|mut p| {
                p.pod.health = match (p.scraped, p.series) {
                    (Some(false), _) => Health::ScrapeFailing,
                    (_, false) => Health::NoSeries,
                    _ => Health::Live,
                };
                if p.pod.health != Health::Live {
                    // Whatever a failing target left behind (it has none: staleness) is not
                    // shown.
                    p.pod.sets.clear();
                }
                for set in p.pod.sets.values_mut() {
                    let from_bundle = set.bundle.as_ref().and_then(|b| bundle_anchors.get(b));
                    for id in from_bundle.into_iter().flatten() {
                        set.anchors.entry(id.to_string()).or_default();
                    }
                    for (id, seen) in &mut set.anchors {
                        if let Some(subject) = subjects.get(id.as_str()) {
                            seen.subject = subject.to_string();
                        }
                    }
                }
                p.pod
            })
            .collect();
        let groups = group(&pods, by);
        Self {
            pods,
            groups,
            ignored_series: ignored,
            evaluated_at,
        }
    }

    /// The set data of a member (`None` for an unknown pod).
    pub fn pod_set(&self, m: &Member) -> Option<&PodSet> {
        let pod = self.pods.get(m.pod)?;
        if pod.health != Health::Live {
            return None;
        }
        pod.sets.get(m.set.as_deref()?)
    }

    /// The pod of a member.
    pub fn pod(&self, m: &Member) -> Option<&Pod> {
        self.pods.get(m.pod)
    }

    /// How many pods are unknown (failing scrape or no series).
    pub fn unknown_pods(&self) -> usize {
        self.pods
            .iter()
            .filter(|p| p.health != Health::Live)
            .count()
    }

    /// Every anchor id any pod trusts.
    pub fn anchor_ids(&self) -> BTreeSet<&str> {
        self.pods
            .iter()
            .flat_map(|p| p.sets.values())
            .flat_map(|s| s.anchors.keys())
            .map(String::as_str)
            .collect()
    }

    /// The subject of an anchor, from any pod that trusts it.
    pub fn anchor_subject(&self, id: &str) -> Option<&str> {
        self.pods
            .iter()
            .flat_map(|p| p.sets.values())
            .find_map(|s| s.anchors.get(id))
            .map(|a| a.subject.as_str())
    }

    /// Per anchor of `group`: coverage, first-seen times, propagation, by anchor id.
    pub fn anchor_summaries(&self, group: &Group) -> Vec<AnchorSummary> {
        let mut by_id: BTreeMap<&str, AnchorSummary> = BTreeMap::new();
        let mut rotations: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for m in &group.members {
            let Some(set) = self.pod_set(m) else {
                continue;
            };
            for (id, seen) in &set.anchors {
                let sum = by_id.entry(id).or_insert_with(|| AnchorSummary {
                    anchor_id: id.clone(),
                    subject: seen.subject.clone(),
                    trusting: 0,
                    pods: group.members.len(),
                    first_seen_earliest: None,
                    first_seen_latest: None,
                    propagation_seconds: None,
                    complete: false,
                });
                sum.trusting += 1;
                if let Some(t) = seen.first_seen {
                    sum.first_seen_earliest = Some(sum.first_seen_earliest.map_or(t, |e| e.min(t)));
                    sum.first_seen_latest = Some(sum.first_seen_latest.map_or(t, |l| l.max(t)));
                    if seen.via.as_deref() == Some("rotation") {
                        let r = rotations.entry(id).or_insert((t, t));
                        *r = (r.0.min(t), r.1.max(t));
                    }
                }
            }
        }
        by_id
            .into_iter()
            .map(|(id, mut s)| {
                s.complete = s.trusting == s.pods;
                s.propagation_seconds = rotations.get(id).map(|(e, l)| l - e);
                s
            })
            .collect()
    }

    /// The newest anchors of `group`: those whose earliest first-seen time is the latest
    /// (more than one on a tie). Empty when no anchor has a first-seen time.
    pub fn newest(&self, group: &Group) -> Vec<String> {
        let sums = self.anchor_summaries(group);
        let Some(latest) = sums
            .iter()
            .filter_map(|s| s.first_seen_earliest)
            .reduce(f64::max)
        else {
            return Vec::new();
        };
        sums.into_iter()
            .filter(|s| s.first_seen_earliest == Some(latest))
            .map(|s| s.anchor_id)
            .collect()
    }

    /// Whether member `m` trusts every anchor of `ids` (an unknown pod trusts none; no anchor
    /// is no answer).
    pub fn trusts_all(&self, m: &Member, ids: &[String]) -> bool {
        !ids.is_empty()
            && self
                .pod_set(m)
                .is_some_and(|s| ids.iter().all(|id| s.anchors.contains_key(id)))
    }
}

/// Which anchors `stale` and `wait` look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One anchor, by full id, in every group.
    Anchor(String),
    /// Each group's newest anchors ([`Fleet::newest`]).
    Newest,
}

/// How far one group is with the target anchors.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Index into [`Fleet::groups`].
    pub group: usize,
    /// The anchors looked for (empty: the group has no newest anchor to tell).
    pub ids: Vec<String>,
    /// Members trusting every one of `ids`.
    pub trusting: usize,
    /// Members in the group.
    pub pods: usize,
    /// Live members lacking one of `ids` (indexes into the group's members).
    pub lacking: Vec<usize>,
    /// Unknown members (indexes into the group's members).
    pub unknown: Vec<usize>,
}

impl Verdict {
    /// Whether at least `basis_points` / 10,000 of the group's pods trust the target (unknown
    /// pods count as not trusting; a group with nothing to look for never meets it).
    pub fn meets(&self, basis_points: u32) -> bool {
        !self.ids.is_empty()
            && self.pods > 0
            && self.trusting as u128 * 10_000 >= u128::from(basis_points) * self.pods as u128
    }
}

impl Fleet {
    /// Each group's progress towards `target`.
    pub fn verdicts(&self, target: &Target) -> Vec<Verdict> {
        self.groups
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                let ids = match target {
                    Target::Anchor(id) => vec![id.clone()],
                    Target::Newest => self.newest(g),
                };
                let mut v = Verdict {
                    group: gi,
                    trusting: 0,
                    pods: g.members.len(),
                    lacking: Vec::new(),
                    unknown: Vec::new(),
                    ids,
                };
                for (mi, m) in g.members.iter().enumerate() {
                    if self.pod(m).map(|p| p.health) != Some(Health::Live) {
                        v.unknown.push(mi);
                    } else if self.trusts_all(m, &v.ids) {
                        v.trusting += 1;
                    } else {
                        v.lacking.push(mi);
                    }
                }
                v
            })
            .collect()
    }
}

/// Groups pods by the `by` labels. A live pod is a member once per set; an unknown pod (no
/// sets known) once per set seen in pods sharing its other `by` labels, or once with no set.
fn group(pods: &[Pod], by: &[String]) -> Vec<Group> {
    let key_of = |pod: &Pod, set: Option<&str>| -> Vec<String> {
        by.iter()
            .map(|l| match l.as_str() {
                SET_LABEL => set.unwrap_or_default().to_string(),
                l => pod.target.get(l).cloned().unwrap_or_default(),
            })
            .collect()
    };
    let set_at = by.iter().position(|l| l == SET_LABEL);
    let mut groups: BTreeMap<Vec<String>, Vec<Member>> = BTreeMap::new();
    // The sets seen per key without the set label, for placing unknown pods.
    let mut sets_by_rest: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for (i, pod) in pods.iter().enumerate() {
        for set in pod.sets.keys() {
            let key = key_of(pod, Some(set));
            if let Some(at) = set_at {
                let mut rest = key.clone();
                rest.remove(at);
                sets_by_rest.entry(rest).or_default().insert(set.clone());
            }
            groups.entry(key).or_default().push(Member {
                pod: i,
                set: Some(set.clone()),
            });
        }
    }
    for (i, pod) in pods.iter().enumerate() {
        if !pod.sets.is_empty() {
            continue;
        }
        let sets: Vec<String> = match set_at {
            Some(at) => {
                let mut rest = key_of(pod, None);
                rest.remove(at);
                sets_by_rest
                    .get(&rest)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        if sets.is_empty() {
            groups
                .entry(key_of(pod, None))
                .or_default()
                .push(Member { pod: i, set: None });
        }
        for set in sets {
            groups
                .entry(key_of(pod, Some(&set)))
                .or_default()
                .push(Member {
                    pod: i,
                    set: Some(set),
                });
        }
    }
    groups
        .into_iter()
        .map(|(values, mut members)| {
            members.sort_by_key(|m| m.pod);
            Group {
                labels: by.iter().cloned().zip(values).collect(),
                members,
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
