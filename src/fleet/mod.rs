//! `certgate fleet`: the fleet's trust as a Prometheus-compatible query API (Prometheus, Thanos
//! Query, Mimir) holds it, read back from the series every certgate pod exports.
//!
//! 1. The flags become a [`Plan`] (selector parsed, `--by` checked, anchor id checked); any
//!    error is a usage error (exit 2).
//! 2. One round is a fixed set of instant queries whatever the number of pods
//!    ([`Plan::queries`], then [`Plan::anchor_query`]: 3, or 5 for the overview): `up` of
//!    certgate's scrape jobs; which anchors each pod trusts (its first-seen times, or its
//!    bundle fingerprint when no time is needed); for the overview the leaf's info and
//!    expiry; then the anchors of one pod per bundle, or each anchor's subject.
//! 3. [`model::Fleet`] joins the answers by `namespace`/`pod` and groups them by `--by`; a
//!    target whose scrape fails is an *unknown* pod, never left out.
//! 4. [`render`] prints a table fitting 120 columns, or JSON.
//!
//! Exit codes: 0 ok / converged; 1 not converged (`stale` found pods, `wait` timed out);
//! 2 usage; 3 the query API is unreachable, erroring, too slow or answered with partial data.
//! `wait` polls every `--interval` until `--timeout`, and gives up with 3 after
//! [`MAX_FAILED_ROUNDS`] failed rounds in a row; nothing else retries.

pub mod model;
pub mod query;
pub mod render;
pub mod selector;

use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::{AnchorChoice, FleetArgs, FleetCommand};
use crate::commands::Outcome;
use model::{Fleet, Observed, Target};
use query::{Endpoint, EndpointOptions, QueryApi, QueryError};
use render::Context;
use selector::{MatchOp, Matcher, Selector};

/// `--timeout` for `fleet`, `anchors` and `stale`: the whole invocation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// `--timeout` for `wait`: the whole wait.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Failed rounds in a row after which `wait` gives up (exit 3).
pub const MAX_FAILED_ROUNDS: u32 = 3;
/// The longest one round of `wait` may take (its queries run at once).
pub const ROUND_BOUND: Duration = Duration::from_secs(30);
/// How often `wait` prints an unchanged progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// The `--job` default: the scrape jobs whose `up` series name certgate's pods (the chart's
/// PodMonitor job is `<namespace>/<release>-certgate`; the `CertgateDown` alert matches the same).
pub const DEFAULT_JOB: &str = ".*certgate.*";
/// The `--by` default.
pub const DEFAULT_BY: [&str; 3] = ["namespace", "workload", "set"];
/// The shortest anchor id prefix accepted.
pub const MIN_PREFIX: usize = 6;

/// What to do, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// `certgate fleet`: per group, each pod's leaf and anchors.
    Overview,
    /// `certgate fleet anchors`.
    Anchors,
    /// `certgate fleet stale`.
    Stale(AnchorArg),
    /// `certgate fleet wait`.
    Wait(WaitSpec),
}

/// What `fleet wait` waits for, and how often it looks.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitSpec {
    /// The anchor waited for.
    pub anchor: AnchorArg,
    /// The coverage wanted in every group, in basis points (10,000 = 100 %).
    pub basis_points: u32,
    /// Time between rounds.
    pub interval: Duration,
}

/// `--anchor ID`, `--anchor PREFIX` or `--newest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorArg {
    /// A full id (64 lowercase hex digits).
    Id(String),
    /// A prefix of at least [`MIN_PREFIX`] hex digits; must match one known anchor.
    Prefix(String),
    /// Each group's newest anchors.
    Newest,
}

/// A validated `certgate fleet` invocation.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The subcommand.
    pub mode: Mode,
    /// Where the query API is.
    pub endpoint: EndpointOptions,
    /// `--selector`.
    pub selector: Selector,
    /// `--by`.
    pub by: Vec<String>,
    /// `--job`: regex over the `job` label of the `up` series.
    pub job: String,
    /// `--json`.
    pub json: bool,
    /// `--timeout`.
    pub timeout: Duration,
}

impl Plan {
    /// Validates the flags; the error is a one-line usage message naming the flag.
    pub fn from_args(args: &FleetArgs) -> Result<Self, String> {
        // `[fleet]` of --config, under the flags.
        let file = match &args.config {
            Some(path) => crate::config::read_raw(path)
                .map_err(|e| e.to_string())?
                .fleet
                .unwrap_or_default(),
            None => crate::config::RawFleet::default(),
        };
        let url = args.prometheus.clone().or(file.prometheus_url).ok_or(
            "--prometheus URL (or CERTGATE_PROMETHEUS_URL, or [fleet] prometheus_url in \
             --config) is required: the Prometheus, Thanos Query or Mimir query API to read",
        )?;
        let selector = Selector::parse(args.selector.as_deref().unwrap_or_default())?;
        let by = if args.by.is_empty() {
            DEFAULT_BY.iter().map(|s| s.to_string()).collect()
        } else {
            selector::parse_by(&args.by)?
        };
        let job = args
            .job
            .clone()
            .or(file.job)
            .unwrap_or_else(|| DEFAULT_JOB.into());
        let mode = match &args.command {
            None => Mode::Overview,
            Some(FleetCommand::Anchors) => Mode::Anchors,
            Some(FleetCommand::Stale(s)) => Mode::Stale(anchor_arg(&s.which)?),
            Some(FleetCommand::Wait(w)) => Mode::Wait(WaitSpec {
                anchor: anchor_arg(&w.which)?,
                basis_points: parse_coverage(&w.coverage)?,
                interval: w.interval,
            }),
        };
        let timeout = args.timeout.unwrap_or(match mode {
            Mode::Wait(_) => DEFAULT_WAIT_TIMEOUT,
            _ => DEFAULT_TIMEOUT,
        });
        Ok(Self {
            mode,
            endpoint: EndpointOptions {
                url,
                headers: if args.headers.is_empty() {
                    file.headers
                } else {
                    args.headers.clone()
                },
                bearer_token_file: args.bearer_token_file.clone().or(file.bearer_token_file),
                ca_file: args.ca_file.clone().or(file.ca_file),
            },
            selector,
            by,
            job,
            json: args.json,
            timeout,
        })
    }

    /// The instant queries of one round sent at once, in order: `up`; which anchors each pod
    /// trusts (first-seen times, or the bundle fingerprint: [`Plan::by_bundle`]); for the
    /// overview the leaf's info and notAfter. Then [`Plan::anchor_query`] follows:
    /// [`Plan::query_count`] in all, the same whatever the number of pods. Each keeps only the
    /// labels certgate reads (pod, grouping labels, the series' own), so answers stay small.
    pub fn queries(&self) -> Vec<String> {
        let s = &self.selector;
        let leaf = [Matcher::new("role", MatchOp::Equal, "leaf")];
        let mut q = vec![
            format!(
                "min by ({}) ({})",
                self.keep(false, &[]),
                s.render(
                    "up",
                    &[Matcher::new("job", MatchOp::Regex, &self.job)],
                    true
                )
            ),
            if self.by_bundle() {
                format!(
                    "count by ({}) ({})",
                    self.keep(true, &["fingerprint_sha256"]),
                    s.render("certgate_trust_bundle_info", &[], false)
                )
            } else {
                format!(
                    "min by ({}) ({})",
                    self.keep(true, &["anchor_id", "via"]),
                    s.render(
                        "certgate_trust_anchor_first_seen_timestamp_seconds",
                        &[],
                        false
                    )
                )
            },
        ];
        if self.mode == Mode::Overview {
            q.push(format!(
                "count by ({}) ({})",
                self.keep(true, &["fingerprint_sha256", "issuer"]),
                s.render("certgate_cert_info", &leaf, false)
            ));
            q.push(format!(
                "min by ({}) ({})",
                self.keep(true, &[]),
                s.render("certgate_cert_not_after_timestamp_seconds", &leaf, false)
            ));
        }
        q
    }

    /// How many queries a round sends.
    pub fn query_count(&self) -> usize {
        self.queries().len() + 1
    }

    /// Whether a round learns which anchors each pod trusts from its bundle fingerprint (one
    /// series per pod and set; the anchors of each distinct bundle then come from one pod
    /// holding it) rather than from first-seen times (one series per pod, set and anchor).
    /// Only `anchors` and `--newest` need the times.
    pub fn by_bundle(&self) -> bool {
        match &self.mode {
            Mode::Overview => true,
            Mode::Anchors => false,
            Mode::Stale(a) | Mode::Wait(WaitSpec { anchor: a, .. }) => *a != AnchorArg::Newest,
        }
    }

    /// The follow-up query, built from the second answer of the round: the anchors (with
    /// subjects) of one pod per distinct bundle ([`Plan::by_bundle`]), or the subject of
    /// each anchor, read from one pod holding it. Either touches a handful of series, not one
    /// per pod.
    pub fn anchor_query(&self, answer: &[query::Sample]) -> String {
        let key = if self.by_bundle() {
            "fingerprint_sha256"
        } else {
            "anchor_id"
        };
        let mut keys: Vec<&str> = Vec::new();
        let mut namespaces: Vec<&str> = Vec::new();
        let mut pods: Vec<&str> = Vec::new();
        // Series without a pod label are left out of the fleet: nothing to look up for them.
        for s in answer {
            let (Some(k), Some(pod)) = (s.labels.get(key), s.labels.get("pod")) else {
                continue;
            };
            if keys.contains(&k.as_str()) {
                continue;
            }
            keys.push(k);
            let ns = s.labels.get("namespace").map_or("", String::as_str);
            if !namespaces.contains(&ns) {
                namespaces.push(ns);
            }
            if !pods.contains(&pod.as_str()) {
                pods.push(pod);
            }
        }
        let alternatives = |v: &[&str]| {
            v.iter()
                .map(|x| regex_escape(x))
                .collect::<Vec<_>>()
                .join("|")
        };
        let mut narrow = vec![
            Matcher::new("namespace", MatchOp::Regex, &alternatives(&namespaces)),
            Matcher::new("pod", MatchOp::Regex, &alternatives(&pods)),
        ];
        let by = if self.by_bundle() {
            "namespace, pod, set, anchor_id, subject"
        } else {
            narrow.insert(
                0,
                Matcher::new("anchor_id", MatchOp::Regex, &alternatives(&keys)),
            );
            "anchor_id, subject"
        };
        if keys.is_empty() {
            // Nothing to look up: a selector that matches no series (sent all the same, so a
            // round is always the same queries).
            narrow = vec![Matcher::new("anchor_id", MatchOp::Equal, "")];
        }
        format!(
            "count by ({by}) ({})",
            self.selector
                .render("certgate_trust_anchor_info", &narrow, false)
        )
    }

    /// The labels an aggregation keeps: namespace, pod, (set,) `own`, the `--by` labels.
    fn keep(&self, with_set: bool, own: &[&str]) -> String {
        let mut labels: Vec<&str> = vec!["namespace", "pod"];
        if with_set {
            labels.push(selector::SET_LABEL);
        }
        labels.extend_from_slice(own);
        for b in &self.by {
            if (with_set || b != selector::SET_LABEL) && !labels.contains(&b.as_str()) {
                labels.push(b);
            }
        }
        labels.join(", ")
    }

    fn context(&self, url: &str) -> Context {
        Context {
            url: url.to_string(),
            queries: self.query_count(),
            by: self.by.clone(),
            selector: self.selector.to_string(),
        }
    }
}

/// `--anchor`/`--newest` checked.
fn anchor_arg(c: &AnchorChoice) -> Result<AnchorArg, String> {
    if c.newest {
        return Ok(AnchorArg::Newest);
    }
    let raw = c.anchor.as_deref().unwrap_or_default();
    let id = raw.trim().to_ascii_lowercase();
    let hex = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit());
    match id.len() {
        64 if hex => Ok(AnchorArg::Id(id)),
        n if hex && (MIN_PREFIX..64).contains(&n) => Ok(AnchorArg::Prefix(id)),
        _ => Err(format!(
            "--anchor {raw:?}: expected an anchor id (64 hex digits, or a prefix of at least \
             {MIN_PREFIX}; `certgate fleet anchors` lists them) or --newest"
        )),
    }
}

/// `--coverage`: `100%`, `99.5%`, `95` → basis points, more than 0 and at most 100 %.
pub fn parse_coverage(s: &str) -> Result<u32, String> {
    let bad = || format!("--coverage {s:?}: expected a percentage such as 100% or 99.5%");
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty()
        || whole.len() > 3
        || frac.len() > 2
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let frac: u32 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u32>().map_err(|_| bad())? * 10,
        _ => frac.parse().map_err(|_| bad())?,
    };
    match whole * 100 + frac {
        0 => Err(format!("--coverage {s:?}: must be more than 0%")),
        bp if bp > 10_000 => Err(format!("--coverage {s:?}: at most 100%")),
        bp => Ok(bp),
    }
}

/// Resolves `--anchor`/`--newest` against what the fleet trusts. A full id nobody trusts is
/// an error, except for `wait` (`allow_unknown`), which waits for it to appear.
fn resolve(arg: &AnchorArg, fleet: &Fleet, allow_unknown: bool) -> Result<Target, String> {
    let known = fleet.anchor_ids();
    match arg {
        AnchorArg::Newest => Ok(Target::Newest),
        AnchorArg::Id(id) if known.contains(id.as_str()) || allow_unknown => {
            Ok(Target::Anchor(id.clone()))
        }
        AnchorArg::Id(id) => Err(format!(
            "--anchor {id}: unknown anchor id: no pod in the selection trusts it \
             (`certgate fleet anchors` lists the ids)"
        )),
        AnchorArg::Prefix(p) => {
            let matches: Vec<&str> = known
                .iter()
                .copied()
                .filter(|k| k.starts_with(p.as_str()))
                .collect();
            match matches.as_slice() {
                [one] => Ok(Target::Anchor(one.to_string())),
                [] => Err(format!(
                    "--anchor {p}: unknown anchor id: no anchor a pod in the selection trusts \
                     starts with it (`certgate fleet anchors` lists the ids{})",
                    if allow_unknown {
                        "; give all 64 hex digits to wait for an anchor no pod trusts yet"
                    } else {
                        ""
                    }
                )),
                many => Err(format!(
                    "--anchor {p}: ambiguous: {} anchors start with it; give more digits",
                    many.len()
                )),
            }
        }
    }
}

// === running ===

/// `certgate fleet`: validates the flags, runs the plan, returns the exit outcome.
pub fn run(args: &FleetArgs) -> Outcome {
    let plan = match Plan::from_args(args) {
        Ok(p) => p,
        Err(e) => return fail(&mut std::io::stderr(), Outcome::Usage, e),
    };
    let endpoint = match Endpoint::new(&plan.endpoint) {
        Ok(e) => e,
        Err(e) => return fail(&mut std::io::stderr(), Outcome::Usage, e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                &mut std::io::stderr(),
                Outcome::Unavailable,
                format!("cannot start runtime: {e}"),
            )
        }
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    let outcome = rt.block_on(execute(
        &endpoint,
        endpoint.url(),
        &plan,
        &mut out,
        &mut err,
    ));
    // A name lookup still running on the blocking pool (getaddrinfo cannot be cancelled)
    // must not hold the exit past --timeout.
    rt.shutdown_background();
    outcome
}

/// Runs `plan` against `api` (named `url` in output), writing the report to `out` and
/// errors and progress to `err`.
pub async fn execute<A: QueryApi>(
    api: &A,
    url: &str,
    plan: &Plan,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Outcome {
    let ctx = plan.context(url);
    match &plan.mode {
        Mode::Wait(spec) => wait(api, plan, &ctx, spec, out, err).await,
        _ => one_shot(api, plan, &ctx, out, err).await,
    }
}

/// `fleet`, `fleet anchors`, `fleet stale`: one round, one report.
async fn one_shot<A: QueryApi>(
    api: &A,
    plan: &Plan,
    ctx: &Context,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Outcome {
    let deadline = Instant::now() + plan.timeout;
    let fleet = match observe(api, plan, deadline).await {
        Ok(o) => Fleet::build(&o, &plan.by),
        Err(e) => return query_failed(err, &e),
    };
    let arg = match &plan.mode {
        Mode::Overview => {
            let doc = plan.json.then(|| render::overview_json(&fleet, ctx));
            emit(out, doc, || render::overview_text(&fleet, ctx));
            return Outcome::Ok;
        }
        Mode::Anchors => {
            let doc = plan.json.then(|| render::anchors_json(&fleet, ctx));
            emit(out, doc, || render::anchors_text(&fleet, ctx));
            return Outcome::Ok;
        }
        Mode::Stale(arg) | Mode::Wait(WaitSpec { anchor: arg, .. }) => arg,
    };
    let target = match resolve(arg, &fleet, false) {
        Ok(t) => t,
        Err(e) => return fail(err, Outcome::Usage, e),
    };
    let verdicts = fleet.verdicts(&target);
    let doc = plan
        .json
        .then(|| render::stale_json(&fleet, ctx, &verdicts, 10_000));
    emit(out, doc, || render::stale_text(&fleet, ctx, &verdicts));
    let clean = !verdicts.is_empty()
        && verdicts
            .iter()
            .all(|v| !v.ids.is_empty() && v.lacking.is_empty() && v.unknown.is_empty());
    if clean {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}

/// `fleet wait`: rounds every `interval` until every group meets the coverage (0), the
/// timeout passes (1), or [`MAX_FAILED_ROUNDS`] rounds in a row fail (3).
async fn wait<A: QueryApi>(
    api: &A,
    plan: &Plan,
    ctx: &Context,
    spec: &WaitSpec,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Outcome {
    let WaitSpec {
        anchor,
        basis_points,
        interval,
    } = spec;
    let (basis_points, interval) = (*basis_points, *interval);
    let start = Instant::now();
    let deadline = start + plan.timeout;
    let mut target: Option<Target> = None;
    let mut failures = 0;
    let mut last: Option<(Fleet, Vec<model::Verdict>)> = None;
    let mut last_error: Option<QueryError> = None;
    let mut printed = (String::new(), start);
    loop {
        let round_deadline = deadline.min(Instant::now() + ROUND_BOUND);
        match observe(api, plan, round_deadline).await {
            Ok(o) => {
                failures = 0;
                let fleet = Fleet::build(&o, &plan.by);
                let t = match &target {
                    Some(t) => t.clone(),
                    None => match resolve(anchor, &fleet, true) {
                        Ok(t) => target.insert(t).clone(),
                        Err(e) => return fail(err, Outcome::Usage, e),
                    },
                };
                let verdicts = fleet.verdicts(&t);
                let converged =
                    !verdicts.is_empty() && verdicts.iter().all(|v| v.meets(basis_points));
                let line = render::progress_line(
                    &fleet,
                    &verdicts,
                    basis_points,
                    start.elapsed(),
                    plan.timeout,
                );
                // The line without its clock: printed when it changes, else now and then.
                let key = line
                    .rsplit_once(" [")
                    .map_or(line.as_str(), |(k, _)| k)
                    .to_string();
                if key != printed.0 || printed.1.elapsed() >= PROGRESS_EVERY || converged {
                    let _ = writeln!(err, "{line}");
                    printed = (key, Instant::now());
                }
                if converged {
                    let doc = plan
                        .json
                        .then(|| wait_json(&fleet, ctx, &verdicts, basis_points, true));
                    emit(out, doc, || {
                        format!(
                            "converged: every group at {} or more\n{}",
                            render::percent(basis_points),
                            render::stale_text(&fleet, ctx, &verdicts)
                        )
                    });
                    return Outcome::Ok;
                }
                last = Some((fleet, verdicts));
            }
            Err(e) if e.is_usage() => return query_failed(err, &e),
            Err(e) => {
                failures += 1;
                let _ = writeln!(
                    err,
                    "certgate fleet wait: {e} (failed round {failures} of {MAX_FAILED_ROUNDS})"
                );
                if failures >= MAX_FAILED_ROUNDS {
                    return query_failed(err, &e);
                }
                last_error = Some(e);
            }
        }
        let next = Instant::now() + interval;
        if next >= deadline {
            break;
        }
        tokio::time::sleep_until(next).await;
    }
    match last {
        Some((fleet, verdicts)) => {
            let doc = plan
                .json
                .then(|| wait_json(&fleet, ctx, &verdicts, basis_points, false));
            emit(out, doc, || render::stale_text(&fleet, ctx, &verdicts));
            fail(
                err,
                Outcome::Failed,
                format!(
                    "not converged within {}: not every group reached {}",
                    crate::duration::format_duration(plan.timeout),
                    render::percent(basis_points)
                ),
            )
        }
        None => match last_error {
            Some(e) => query_failed(err, &e),
            None => fail(
                err,
                Outcome::Unavailable,
                "no query answered within the --timeout",
            ),
        },
    }
}

fn wait_json(
    fleet: &Fleet,
    ctx: &Context,
    verdicts: &[model::Verdict],
    basis_points: u32,
    converged: bool,
) -> serde_json::Value {
    let mut doc = render::stale_json(fleet, ctx, verdicts, basis_points);
    doc["converged"] = serde_json::json!(converged);
    doc["coverage"] = serde_json::json!(render::percent(basis_points));
    doc
}

/// One round: every query of the plan at once, each bounded by `deadline`. The first error
/// (in query order) wins.
async fn observe<A: QueryApi>(
    api: &A,
    plan: &Plan,
    deadline: Instant,
) -> Result<Observed, QueryError> {
    let q = plan.queries();
    let one = |i: usize| {
        let query = q.get(i).map(String::as_str);
        async move {
            match query {
                Some(query) => api.instant(query, deadline).await,
                None => Ok(Vec::new()),
            }
        }
    };
    let (up, trusted, leaf_info, leaf_not_after) = tokio::join!(one(0), one(1), one(2), one(3));
    let (up, trusted, leaf_info, leaf_not_after) = (up?, trusted?, leaf_info?, leaf_not_after?);
    let anchor_info = api.instant(&plan.anchor_query(&trusted), deadline).await?;
    let (first_seen, bundles) = if plan.by_bundle() {
        (Vec::new(), trusted)
    } else {
        (trusted, Vec::new())
    };
    Ok(Observed {
        up,
        first_seen,
        bundles,
        anchor_info,
        leaf_info,
        leaf_not_after,
    })
}

/// `s` with RE2's metacharacters escaped, to match literally inside `=~`.
pub(crate) fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Writes `doc` as JSON, else the text `human()` makes. A broken stdout loses the report but
/// keeps the exit code.
fn emit(out: &mut dyn Write, doc: Option<serde_json::Value>, human: impl FnOnce() -> String) {
    let text = match doc {
        Some(doc) => serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
        None => human(),
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn query_failed(err: &mut dyn Write, e: &QueryError) -> Outcome {
    let outcome = if e.is_usage() {
        Outcome::Usage
    } else {
        Outcome::Unavailable
    };
    fail(err, outcome, e)
}

/// Prints `certgate fleet: MSG` on one line of `err`; returns `outcome`.
fn fail(err: &mut dyn Write, outcome: Outcome, msg: impl std::fmt::Display) -> Outcome {
    let _ = writeln!(
        err,
        "certgate fleet: {}",
        query::one_line(&msg.to_string(), 1000)
    );
    outcome
}

#[cfg(test)]
mod tests;
