//! The gate's questions to the query API, and the trait the daemon asks through (a real
//! [`PromFleet`], or a fake in the daemon's state-machine tests).
//!
//! One round is one instant query (two with `expected_verifiers`), whatever the number of
//! verifiers: `up` of the verifiers' targets, the pods exporting trust series, and which of
//! the anchors of the two chains each pod trusts, tagged apart in one answer. It holds one row
//! per pod and part (per pod and relevant anchor), so answers stay small at thousands of pods,
//! and a thousand pods holding at the default 30 s interval ask about 33 queries a second.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Answers, FleetSettings};
use crate::fleet::query::{Endpoint, EndpointOptions, QueryApi, QueryError, Sample};
use crate::fleet::regex_escape;
use crate::fleet::selector::{MatchOp, Matcher, Selector};
use crate::ids::AnchorId;

/// The label that tells the three parts of a round's answer apart.
pub const PART_LABEL: &str = "certgate_gate_part";

/// The queries of one hold, built once when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundQueries {
    /// One query answering three questions, each part tagged with [`PART_LABEL`]: `up` of the
    /// verifiers' targets per pod (`up`), the pods exporting per-anchor trust series
    /// (`exporting`), and which of the relevant anchors each pod trusts (`anchor`).
    pub fleet: String,
    /// `sum(expected_verifiers)`, when configured.
    pub expected: Option<String>,
}

/// `expr{sel1} or expr{sel2} …` for several selectors (PromQL has no OR inside one selector).
fn union(selectors: &[Selector], metric: &str, first: &[Matcher], targets_only: bool) -> String {
    let parts: Vec<String> = selectors
        .iter()
        .map(|s| s.render(metric, first, targets_only))
        .collect();
    parts.join(" or ")
}

/// `expr` with every series tagged `PART_LABEL="part"`.
fn tagged(expr: &str, part: &str) -> String {
    format!("label_replace({expr}, \"{PART_LABEL}\", \"{part}\", \"\", \"\")")
}

impl RoundQueries {
    /// The queries for `verifiers`, about the anchors of the live and the candidate chain.
    /// `series` is `certgate_trust_anchor_info` (which anchors a verifier trusts) or
    /// `certgate_chain_anchor_info` (which anchors a presenter's live chain verifies to).
    pub fn new(
        verifiers: &[Selector],
        job: &str,
        series: &str,
        anchors: &[&AnchorId],
        expected: Option<&str>,
    ) -> Self {
        let job = [Matcher::new("job", MatchOp::Regex, job)];
        let alternatives = anchors
            .iter()
            .map(|a| regex_escape(a.as_str()))
            .collect::<Vec<_>>()
            .join("|");
        let relevant = [Matcher::new("anchor_id", MatchOp::Regex, &alternatives)];
        let up = format!(
            "min by (namespace, pod) ({})",
            union(verifiers, "up", &job, true)
        );
        let exporting = format!(
            "count by (namespace, pod) ({})",
            union(verifiers, series, &[], false)
        );
        let anchor = format!(
            "count by (namespace, pod, anchor_id) ({})",
            union(verifiers, series, &relevant, false)
        );
        // Tagged apart, the parts never match each other: `or` keeps every series of each.
        Self {
            fleet: format!(
                "{} or {} or {}",
                tagged(&up, "up"),
                tagged(&exporting, "exporting"),
                tagged(&anchor, "anchor")
            ),
            expected: expected.map(|e| format!("sum({e})")),
        }
    }

    /// How many queries a round sends.
    pub fn count(&self) -> usize {
        1 + usize::from(self.expected.is_some())
    }
}

/// Splits a round's answer into its parts; series of no known part are dropped.
pub fn split(rows: Vec<Sample>, expected: Option<Vec<Sample>>) -> Answers {
    let mut a = Answers {
        expected: expected.map(|rows| rows.iter().map(|s| s.value).sum()),
        ..Answers::default()
    };
    for mut s in rows {
        let part = s.labels.remove(PART_LABEL);
        match part.as_deref() {
            Some("up") => a.up.push(s),
            Some("exporting") => a.exporting.push(s),
            Some("anchor") => a.relevant.push(s),
            _ => {}
        }
    }
    a
}

/// A boxed future, `Send`, as the trait below returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Answers a round of the gate's queries.
pub trait FleetView: Send + Sync + 'static {
    /// Runs `round`, all of it bounded by the view's timeout.
    fn ask(&self, round: Arc<RoundQueries>) -> BoxFuture<Result<Answers, QueryError>>;
}

/// The query API, as `[fleet]` configures it.
pub struct PromFleet {
    endpoint: Arc<Endpoint>,
    timeout: Duration,
}

impl std::fmt::Debug for PromFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromFleet")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PromFleet {
    /// Checks the URL, headers and files (errors name the `[fleet]` key).
    pub fn new(settings: &FleetSettings) -> Result<Self, String> {
        let endpoint = Endpoint::new(&EndpointOptions {
            url: settings.prometheus_url.clone(),
            headers: settings.headers.clone(),
            bearer_token_file: settings.bearer_token_file.clone(),
            ca_file: settings.ca_file.clone(),
        })
        .map_err(|e| format!("[fleet]: {}", e.replace("--prometheus", "prometheus_url")))?;
        Ok(Self {
            endpoint: Arc::new(endpoint),
            timeout: settings.query_timeout,
        })
    }
}

/// Runs a round against any query API, every query bounded by `deadline`.
pub async fn ask<A: QueryApi>(
    api: &A,
    round: &RoundQueries,
    deadline: Instant,
) -> Result<Answers, QueryError> {
    let expected = async {
        match &round.expected {
            Some(q) => api.instant(q, deadline).await.map(Some),
            None => Ok(None),
        }
    };
    let (fleet, expected) = tokio::join!(api.instant(&round.fleet, deadline), expected);
    Ok(split(fleet?, expected?))
}

impl FleetView for PromFleet {
    fn ask(&self, round: Arc<RoundQueries>) -> BoxFuture<Result<Answers, QueryError>> {
        let endpoint = self.endpoint.clone();
        let deadline = Instant::now() + self.timeout;
        Box::pin(async move { ask(endpoint.as_ref(), &round, deadline).await })
    }
}
