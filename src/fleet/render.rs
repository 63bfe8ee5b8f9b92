//! What `certgate fleet` prints: tables that fit [`WIDTH`] columns (long subjects and ids cut
//! with `…`; `--json` has them whole) and the JSON documents.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::model::{Fleet, Group, Health, Verdict};
use crate::duration::format_duration;
use crate::time_fmt::rfc3339;

/// The widest a line of human output gets.
pub const WIDTH: usize = 120;
/// How many hex digits of an anchor id or fingerprint tables show (commands accept a prefix).
pub const SHORT_ID: usize = 12;

/// What every document says about where its data came from.
#[derive(Debug, Clone)]
pub struct Context {
    /// The query API base URL.
    pub url: String,
    /// Queries this invocation sent (for `wait`, per round).
    pub queries: usize,
    /// The `--by` labels.
    pub by: Vec<String>,
    /// The selector, canonical.
    pub selector: String,
}

impl Context {
    fn json(&self, fleet: &Fleet) -> Value {
        json!({
            "prometheus": self.url,
            "queries": self.queries,
            "selector": self.selector,
            "by": self.by,
            "evaluated_at": fleet.evaluated_at,
            "pods": fleet.pods.len(),
            "unknown_pods": fleet.unknown_pods(),
            "ignored_series": fleet.ignored_series,
        })
    }
}

/// `s` cut to `width` characters (the last one `…` when cut), padded to `width`.
pub fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        let mut out = String::with_capacity(s.len() + width - n);
        out.push_str(s);
        out.extend(std::iter::repeat(' ').take(width - n));
        return out;
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        out.push('…');
    }
    out
}

/// `s` cut to `width` characters, not padded.
fn cut(s: &str, width: usize) -> String {
    fit(s, width).trim_end().to_string()
}

/// The first [`SHORT_ID`] characters of an id.
pub fn short(id: &str) -> &str {
    id.get(..SHORT_ID).unwrap_or(id)
}

/// A table row: cells fitted to `widths`, two spaces apart, after a two-space indent; the
/// last cell is cut to what is left of [`WIDTH`].
fn row(cells: &[&str], widths: &[usize]) -> String {
    let mut line = String::from("  ");
    for (i, cell) in cells.iter().enumerate() {
        match widths.get(i) {
            Some(w) => {
                line.push_str(&fit(cell, *w));
                line.push_str("  ");
            }
            None => {
                let room = WIDTH.saturating_sub(line.chars().count());
                line.push_str(&cut(cell, room));
            }
        }
    }
    let mut line = line.trim_end().to_string();
    line.push('\n');
    line
}

fn heading(fleet: &Fleet, g: &Group) -> String {
    let labels: Vec<String> = g
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={}", if v.is_empty() { "-" } else { v }))
        .collect();
    let unknown = g
        .members
        .iter()
        .filter(|m| fleet.pod(m).map(|p| p.health) != Some(Health::Live))
        .count();
    let mut text = format!("{}: {} pod(s)", labels.join(" "), g.members.len());
    if unknown > 0 {
        let _ = write!(text, ", {unknown} unknown");
    }
    format!("\n{}\n", cut(&text, WIDTH))
}

fn pod_name(fleet: &Fleet, m: &super::model::Member) -> String {
    fleet
        .pod(m)
        .map(|p| format!("{}/{}", p.namespace, p.pod))
        .unwrap_or_default()
}

fn time_or_dash(t: Option<f64>) -> String {
    t.filter(|t| t.is_finite())
        .map_or_else(|| "-".into(), |t| rfc3339(t as i64))
}

/// Seconds as a compact duration (`6s`, `20m 5s`), `-` when unknown.
pub fn seconds(s: Option<f64>) -> String {
    s.and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok())
        .map_or_else(|| "-".into(), whole_seconds)
}

/// A duration to the second (`0s`, `59m 12s`).
fn whole_seconds(d: Duration) -> String {
    match d.as_secs() {
        0 => "0s".into(),
        s => format_duration(Duration::from_secs(s)),
    }
}

// === the overview ===

/// `certgate fleet`: per group, each pod's leaf and anchors.
pub fn overview_text(fleet: &Fleet, ctx: &Context) -> String {
    let mut out = summary_line(fleet, ctx);
    let widths = [26, 12, 22, 20];
    for g in &fleet.groups {
        out.push_str(&heading(fleet, g));
        out.push_str(&row(
            &["POD", "LEAF", "ISSUER", "NOT AFTER", "ANCHORS"],
            &widths,
        ));
        for m in &g.members {
            let name = pod_name(fleet, m);
            let health = fleet.pod(m).map_or(Health::NoSeries, |p| p.health);
            if let Some(why) = health.unknown_reason() {
                out.push_str(&row(&[&name, &format!("unknown: {why}")], &widths[..1]));
                continue;
            }
            let set = fleet.pod_set(m);
            let leaf = set.and_then(|s| s.leaf.as_ref());
            let ids: Vec<&str> = set
                .map(|s| s.anchors.keys().map(|k| short(k)).collect())
                .unwrap_or_default();
            let anchors = match set.and_then(|s| s.bundle.as_deref()) {
                Some(bundle) if ids.is_empty() => {
                    format!("bundle {} (anchors not exported)", short(bundle))
                }
                _ => id_list(&ids, WIDTH - 2 - (26 + 12 + 22 + 20 + 8)),
            };
            out.push_str(&row(
                &[
                    &name,
                    leaf.map_or("-", |l| short(&l.fingerprint_sha256)),
                    leaf.map_or("-", |l| l.issuer.as_str()),
                    &time_or_dash(leaf.and_then(|l| l.not_after).map(|t| t as f64)),
                    &anchors,
                ],
                &widths,
            ));
        }
        for a in fleet.anchor_summaries(g) {
            let text = format!(
                "anchor {}  {}/{} pod(s)  {}",
                short(&a.anchor_id),
                a.trusting,
                a.pods,
                a.subject
            );
            out.push_str(&row(&[&text], &[]));
        }
    }
    out
}

/// Space-separated ids fitted to `width`: as many as fit, then `+N` for the rest.
fn id_list(ids: &[&str], width: usize) -> String {
    if ids.is_empty() {
        return "-".into();
    }
    for shown in (1..=ids.len()).rev() {
        let mut s = ids[..shown].join(" ");
        if shown < ids.len() {
            let _ = write!(s, " +{}", ids.len() - shown);
        }
        if s.chars().count() <= width {
            return s;
        }
    }
    format!("{} +{}", ids[0], ids.len() - 1)
}

fn summary_line(fleet: &Fleet, ctx: &Context) -> String {
    let mut line = format!(
        "{} pod(s) in {} group(s)",
        fleet.pods.len(),
        fleet.groups.len()
    );
    let unknown = fleet.unknown_pods();
    if unknown > 0 {
        let _ = write!(line, ", {unknown} unknown");
    }
    let _ = write!(line, "; {} ({} queries)", ctx.url, ctx.queries);
    if ctx.selector != "{}" {
        let _ = write!(line, ", selector {}", ctx.selector);
    }
    if fleet.pods.is_empty() {
        line = format!(
            "no certgate pods: {} has no certgate series matching {}",
            ctx.url, ctx.selector
        );
    }
    format!("{}\n", cut(&line, WIDTH))
}

/// `certgate fleet --json`.
pub fn overview_json(fleet: &Fleet, ctx: &Context) -> Value {
    let groups: Vec<Value> = fleet
        .groups
        .iter()
        .map(|g| {
            let pods: Vec<Value> = g
                .members
                .iter()
                .filter_map(|m| {
                    let pod = fleet.pod(m)?;
                    let set = fleet.pod_set(m);
                    let anchors: Vec<Value> = set
                        .map(|s| {
                            s.anchors
                                .iter()
                                .map(|(id, a)| {
                                    json!({
                                        "anchor_id": id,
                                        "subject": a.subject,
                                        "first_seen": a.first_seen,
                                        "via": a.via,
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(json!({
                        "namespace": pod.namespace,
                        "pod": pod.pod,
                        "set": m.set,
                        "health": pod.health,
                        "leaf": set.and_then(|s| s.leaf.as_ref()),
                        "bundle_fingerprint": set.and_then(|s| s.bundle.as_ref()),
                        "anchors": anchors,
                    }))
                })
                .collect();
            json!({ "labels": labels_json(g), "pods": pods })
        })
        .collect();
    let mut doc = ctx.json(fleet);
    doc["groups"] = Value::Array(groups);
    doc
}

fn labels_json(g: &Group) -> Value {
    Value::Object(
        g.labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

// === anchors ===

/// `certgate fleet anchors`: per group, per anchor.
pub fn anchors_text(fleet: &Fleet, ctx: &Context) -> String {
    let mut out = summary_line(fleet, ctx);
    let widths = [SHORT_ID, 26, 8, 20, 20, 11];
    for g in &fleet.groups {
        out.push_str(&heading(fleet, g));
        let sums = fleet.anchor_summaries(g);
        if sums.is_empty() {
            out.push_str("  no anchor known (no live pod exports certgate_trust_anchor_info)\n");
            continue;
        }
        out.push_str(&row(
            &[
                "ANCHOR",
                "SUBJECT",
                "PODS",
                "EARLIEST",
                "LATEST",
                "PROPAGATION",
                "COMPLETE",
            ],
            &widths,
        ));
        for a in sums {
            out.push_str(&row(
                &[
                    short(&a.anchor_id),
                    &a.subject,
                    &format!("{}/{}", a.trusting, a.pods),
                    &time_or_dash(a.first_seen_earliest),
                    &time_or_dash(a.first_seen_latest),
                    &seconds(a.propagation_seconds),
                    if a.complete { "yes" } else { "no" },
                ],
                &widths,
            ));
        }
    }
    out
}

/// `certgate fleet anchors --json`.
pub fn anchors_json(fleet: &Fleet, ctx: &Context) -> Value {
    let groups: Vec<Value> = fleet
        .groups
        .iter()
        .map(|g| {
            json!({
                "labels": labels_json(g),
                "pods": g.members.len(),
                "anchors": fleet.anchor_summaries(g),
            })
        })
        .collect();
    let mut doc = ctx.json(fleet);
    doc["groups"] = Value::Array(groups);
    doc
}

// === stale and wait ===

/// Pods counted once (an unknown pod is a member of every set of its workload).
fn distinct_pods(fleet: &Fleet, verdicts: &[Verdict], pick: fn(&Verdict) -> &[usize]) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for v in verdicts {
        if let Some(g) = fleet.groups.get(v.group) {
            for &mi in pick(v) {
                if let Some(m) = g.members.get(mi) {
                    seen.insert(m.pod);
                }
            }
        }
    }
    seen.len()
}

fn target_text(fleet: &Fleet, ids: &[String]) -> String {
    match ids {
        [] => "no newest anchor (no first-seen series)".into(),
        ids => ids
            .iter()
            .map(|id| match fleet.anchor_subject(id) {
                Some(s) if !s.is_empty() => format!("{} ({s})", short(id)),
                _ => short(id).to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The pods lacking the target (and the unknown ones), per group with any.
pub fn stale_text(fleet: &Fleet, ctx: &Context, verdicts: &[Verdict]) -> String {
    let lacking = distinct_pods(fleet, verdicts, |v| &v.lacking);
    let unknown = distinct_pods(fleet, verdicts, |v| &v.unknown);
    let mut out = summary_line(fleet, ctx);
    let _ = writeln!(
        out,
        "{}",
        cut(
            &format!("{lacking} pod(s) lack the anchor, {unknown} unknown"),
            WIDTH
        )
    );
    let widths = [46];
    for v in verdicts {
        let Some(g) = fleet.groups.get(v.group) else {
            continue;
        };
        if v.lacking.is_empty() && v.unknown.is_empty() && !v.ids.is_empty() {
            continue;
        }
        out.push_str(&heading(fleet, g));
        let _ = writeln!(
            out,
            "{}",
            cut(
                &format!(
                    "  {}/{} trust {}",
                    v.trusting,
                    v.pods,
                    target_text(fleet, &v.ids)
                ),
                WIDTH
            )
        );
        if v.lacking.is_empty() && v.unknown.is_empty() {
            continue;
        }
        out.push_str(&row(&["POD", "STATE"], &widths));
        for &mi in v.lacking.iter().chain(&v.unknown) {
            let Some(m) = g.members.get(mi) else {
                continue;
            };
            let state = match fleet.pod(m).and_then(|p| p.health.unknown_reason()) {
                Some(why) => format!("unknown: {why}"),
                None => {
                    let set = fleet.pod_set(m);
                    let has: Vec<&str> = set
                        .map(|s| s.anchors.keys().map(|k| short(k)).collect())
                        .unwrap_or_default();
                    match set.and_then(|s| s.bundle.as_deref()) {
                        Some(bundle) if has.is_empty() => format!(
                            "cannot tell: bundle {}'s anchors are not exported",
                            short(bundle)
                        ),
                        _ => format!("lacks it; trusts {}", id_list(&has, 60)),
                    }
                }
            };
            out.push_str(&row(&[&pod_name(fleet, m), &state], &widths));
        }
    }
    out
}

/// The `stale` (and final `wait`) document.
pub fn stale_json(fleet: &Fleet, ctx: &Context, verdicts: &[Verdict], basis_points: u32) -> Value {
    let groups: Vec<Value> = verdicts
        .iter()
        .filter_map(|v| {
            let g = fleet.groups.get(v.group)?;
            let pods = |idx: &[usize]| -> Vec<Value> {
                idx.iter()
                    .filter_map(|&mi| {
                        let m = g.members.get(mi)?;
                        let pod = fleet.pod(m)?;
                        Some(json!({
                            "namespace": pod.namespace,
                            "pod": pod.pod,
                            "health": pod.health,
                        }))
                    })
                    .collect()
            };
            Some(json!({
                "labels": labels_json(g),
                "anchors": v.ids,
                "pods": v.pods,
                "trusting": v.trusting,
                "met": v.meets(basis_points),
                "lacking": pods(&v.lacking),
                "unknown": pods(&v.unknown),
            }))
        })
        .collect();
    let mut doc = ctx.json(fleet);
    doc["lacking_pods"] = json!(distinct_pods(fleet, verdicts, |v| &v.lacking));
    doc["unknown_pods_in_groups"] = json!(distinct_pods(fleet, verdicts, |v| &v.unknown));
    doc["groups"] = Value::Array(groups);
    doc
}

/// One progress line for `fleet wait`.
pub fn progress_line(
    fleet: &Fleet,
    verdicts: &[Verdict],
    basis_points: u32,
    elapsed: Duration,
    timeout: Duration,
) -> String {
    let trusting: usize = verdicts.iter().map(|v| v.trusting).sum();
    let pods: usize = verdicts.iter().map(|v| v.pods).sum();
    let met = verdicts.iter().filter(|v| v.meets(basis_points)).count();
    let unknown = distinct_pods(fleet, verdicts, |v| &v.unknown);
    let mut ids: Vec<&String> = verdicts.iter().flat_map(|v| &v.ids).collect();
    ids.sort();
    ids.dedup();
    let what = match ids.as_slice() {
        [] => "the anchor".to_string(),
        [one] => short(one).to_string(),
        many => format!("{} anchors", many.len()),
    };
    let line = format!(
        "certgate fleet wait: {trusting}/{pods} pods trust {what}; {met}/{} group(s) at {}; \
         {unknown} unknown [{} of {}]",
        verdicts.len(),
        percent(basis_points),
        whole_seconds(elapsed),
        format_duration(timeout),
    );
    cut(&line, WIDTH)
}

/// Basis points as a percentage (`100%`, `99.5%`).
pub fn percent(basis_points: u32) -> String {
    let whole = basis_points / 100;
    match basis_points % 100 {
        0 => format!("{whole}%"),
        frac if frac % 10 == 0 => format!("{whole}.{}%", frac / 10),
        frac => format!("{whole}.{frac:02}%"),
    }
}
