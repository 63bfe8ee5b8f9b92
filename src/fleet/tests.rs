//! `execute` driven through a fake query API: exit codes, output widths, `wait`'s rounds.

use std::cell::{Cell, RefCell};

use super::model::tests::sample;
use super::*;

/// A fake API: round `n` (counted by `up` queries) answers with `rounds[n]` (the last one
/// repeats); `Err` rounds fail every query of the round.
struct Fake {
    rounds: Vec<Result<Observed, fn() -> QueryError>>,
    round: Cell<usize>,
    queries: RefCell<Vec<String>>,
}

impl Fake {
    fn new(rounds: Vec<Result<Observed, fn() -> QueryError>>) -> Self {
        Self {
            rounds,
            round: Cell::new(0),
            queries: RefCell::new(Vec::new()),
        }
    }
}

impl QueryApi for Fake {
    async fn instant(&self, promql: &str, _deadline: Instant) -> Result<Vec<Sample>, QueryError> {
        self.queries.borrow_mut().push(promql.to_string());
        // The metric the query selects: the word before its `{`.
        let metric = promql
            .split('{')
            .next()
            .unwrap_or_default()
            .rsplit(['(', ' '])
            .next()
            .unwrap_or_default()
            .to_string();
        if metric == "up" {
            self.round.set(self.round.get() + 1);
        }
        let i = (self.round.get().max(1) - 1).min(self.rounds.len() - 1);
        let o = match &self.rounds[i] {
            Ok(o) => o,
            Err(make) => return Err(make()),
        };
        Ok(match metric.as_str() {
            "up" => o.up.clone(),
            "certgate_trust_anchor_info" => o.anchor_info.clone(),
            "certgate_trust_bundle_info" => o.bundles.clone(),
            "certgate_trust_anchor_first_seen_timestamp_seconds" => o.first_seen.clone(),
            "certgate_cert_info" => o.leaf_info.clone(),
            "certgate_cert_not_after_timestamp_seconds" => o.leaf_not_after.clone(),
            _ => Vec::new(),
        })
    }
}

use query::Sample;

const NEW: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const OLD: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// Pods of shop/web: `have_new` trust NEW (and OLD), the rest OLD only; `down` fail scrapes.
fn observed(have_new: &[&str], old_only: &[&str], down: &[&str]) -> Observed {
    let mut o = Observed::default();
    let long_subject = "CN=a very long subject name that certainly does not fit its column,O=Example Corporation International";
    let target = |pod: &str| {
        vec![
            ("namespace".to_string(), "shop".to_string()),
            ("workload".to_string(), "web".to_string()),
            ("pod".to_string(), pod.to_string()),
            ("job".to_string(), "certgate".to_string()),
        ]
    };
    let s = |labels: Vec<(String, String)>, v: f64| {
        let l: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        sample(&l, v)
    };
    let push = |o: &mut Observed, pod: &str, id: &str, at: f64, via: &str| {
        let mut f = target(pod);
        f.push(("set".into(), "default".into()));
        f.push(("anchor_id".into(), id.into()));
        f.push(("via".into(), via.into()));
        o.first_seen.push(s(f, at));
        let mut info = target(pod);
        info.push(("set".into(), "default".into()));
        info.push(("anchor_id".into(), id.into()));
        info.push(("subject".into(), long_subject.into()));
        o.anchor_info.push(s(info, 1.0));
    };
    let bundle = |o: &mut Observed, pod: &str, fingerprint: &str| {
        let mut b = target(pod);
        b.push(("set".into(), "default".into()));
        b.push(("fingerprint_sha256".into(), fingerprint.into()));
        o.bundles.push(s(b, 1.0));
    };
    for pod in have_new.iter().chain(old_only) {
        o.up.push(s(target(pod), 1.0));
        push(&mut o, pod, OLD, 100.0, "startup");
        let mut leaf = target(pod);
        leaf.extend(
            [
                ("set", "default"),
                ("role", "leaf"),
                ("fingerprint_sha256", OLD),
                ("issuer", long_subject),
                ("subject", "CN=web"),
                ("serial", "01"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        o.leaf_info.push(s(leaf, 1.0));
    }
    for (i, pod) in have_new.iter().enumerate() {
        push(&mut o, pod, NEW, 200.0 + i as f64, "rotation");
        bundle(&mut o, pod, "b0th");
    }
    for pod in old_only {
        bundle(&mut o, pod, "01d0");
    }
    for pod in down {
        o.up.push(s(target(pod), 0.0));
    }
    o
}

fn plan(mode: Mode, json: bool) -> Plan {
    Plan {
        mode,
        endpoint: EndpointOptions::default(),
        selector: Selector::parse(r#"{namespace="shop"}"#).unwrap(),
        by: DEFAULT_BY.iter().map(|s| s.to_string()).collect(),
        job: DEFAULT_JOB.into(),
        json,
        timeout: Duration::from_secs(30),
    }
}

async fn exec(api: &Fake, plan: &Plan) -> (Outcome, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let o = execute(api, "http://prom", plan, &mut out, &mut err).await;
    (
        o,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn assert_fits(text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= render::WIDTH,
            "{} > 120: {line}",
            line.chars().count()
        );
    }
}

#[tokio::test]
async fn the_overview_and_anchors_fit_120_columns_and_send_a_fixed_number_of_queries() {
    let api = Fake::new(vec![Ok(observed(
        &["web-a", "web-b"],
        &["web-c"],
        &["web-d"],
    ))]);
    let (o, out, _) = exec(&api, &plan(Mode::Overview, false)).await;
    assert_eq!(o, Outcome::Ok);
    assert_fits(&out);
    assert!(out.contains("shop/web-d"), "{out}");
    assert!(out.contains("unknown: scrape failing"), "{out}");
    assert!(out.contains("111111111111 222222222222"), "{out}");
    assert!(out.contains('…'), "long subjects are cut: {out}");
    assert_eq!(api.queries.borrow().len(), 5);
    assert_eq!(
        api.queries.borrow()[0],
        r#"min by (namespace, pod, workload) (up{job=~".*certgate.*", namespace="shop"})"#
    );
    assert_eq!(
        api.queries.borrow()[1],
        "count by (namespace, pod, set, fingerprint_sha256, workload) \
         (certgate_trust_bundle_info{namespace=\"shop\"})"
    );

    let api = Fake::new(vec![Ok(observed(
        &["web-a", "web-b"],
        &["web-c"],
        &["web-d"],
    ))]);
    let (o, out, _) = exec(&api, &plan(Mode::Anchors, false)).await;
    assert_eq!(o, Outcome::Ok);
    assert_fits(&out);
    let new_row = out.lines().find(|l| l.contains("111111111111")).unwrap();
    assert!(new_row.contains("2/4"), "{new_row}");
    assert!(new_row.contains("1s"), "propagation: {new_row}");
    assert!(new_row.trim_end().ends_with("no"), "{new_row}");
    assert_eq!(api.queries.borrow().len(), 3);

    let api = Fake::new(vec![Ok(observed(&["web-a"], &[], &[]))]);
    let (_, out, _) = exec(&api, &plan(Mode::Anchors, true)).await;
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["queries"], 3);
    assert_eq!(doc["groups"][0]["anchors"][0]["anchor_id"], NEW);
    assert_eq!(doc["groups"][0]["anchors"][0]["complete"], true);
}

#[tokio::test]
async fn stale_names_the_lacking_and_unknown_pods_and_exits_1() {
    let api = Fake::new(vec![Ok(observed(
        &["web-a"],
        &["web-b", "web-c"],
        &["web-d"],
    ))]);
    let (o, out, _) = exec(
        &api,
        &plan(Mode::Stale(AnchorArg::Prefix("111111".into())), false),
    )
    .await;
    assert_eq!(o, Outcome::Failed);
    assert_fits(&out);
    assert!(out.contains("2 pod(s) lack the anchor, 1 unknown"), "{out}");
    for pod in ["web-b", "web-c", "web-d"] {
        assert!(out.contains(&format!("shop/{pod}")), "{pod}: {out}");
    }
    assert!(!out.contains("shop/web-a"), "{out}");

    let api = Fake::new(vec![Ok(observed(&["web-a"], &["web-b"], &[]))]);
    let (o, out, _) = exec(&api, &plan(Mode::Stale(AnchorArg::Newest), true)).await;
    assert_eq!(o, Outcome::Failed);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["groups"][0]["anchors"][0], NEW);
    assert_eq!(doc["groups"][0]["lacking"][0]["pod"], "web-b");
    assert_eq!(doc["lacking_pods"], 1);

    let api = Fake::new(vec![Ok(observed(&["web-a", "web-b"], &[], &[]))]);
    let (o, _, _) = exec(&api, &plan(Mode::Stale(AnchorArg::Id(NEW.into())), false)).await;
    assert_eq!(o, Outcome::Ok);
}

#[tokio::test]
async fn an_unknown_or_ambiguous_anchor_is_a_usage_error() {
    let api = Fake::new(vec![Ok(observed(&["web-a"], &[], &[]))]);
    let unknown = "3".repeat(64);
    let (o, out, err) = exec(&api, &plan(Mode::Stale(AnchorArg::Id(unknown)), false)).await;
    assert_eq!(o, Outcome::Usage);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown anchor id"), "{err}");
    let (o, _, err) = exec(
        &api,
        &plan(Mode::Stale(AnchorArg::Prefix("333333".into())), false),
    )
    .await;
    assert_eq!(o, Outcome::Usage);
    assert!(err.contains("unknown anchor id"), "{err}");
    let mut ambiguous = observed(&["web-a"], &[], &[]);
    for s in &mut ambiguous.anchor_info {
        if s.labels["anchor_id"] == OLD {
            s.labels
                .insert("anchor_id".into(), format!("111111{}", &OLD[6..]));
        }
    }
    let api = Fake::new(vec![Ok(ambiguous)]);
    let (o, _, err) = exec(
        &api,
        &plan(Mode::Stale(AnchorArg::Prefix("111111".into())), false),
    )
    .await;
    assert_eq!(o, Outcome::Usage);
    assert!(err.contains("ambiguous"), "{err}");
}

fn refused() -> QueryError {
    QueryError::Unreachable {
        url: "http://prom".into(),
        message: "cannot connect: Connection refused".into(),
    }
}

fn partial() -> QueryError {
    QueryError::Partial {
        url: "http://prom".into(),
        warnings: vec!["store down".into()],
    }
}

fn bad_regex() -> QueryError {
    QueryError::BadQuery {
        message: "invalid regex".into(),
    }
}

#[tokio::test]
async fn api_failures_exit_3_in_one_line_and_a_refused_selector_2() {
    for (make, code) in [
        (refused as fn() -> QueryError, Outcome::Unavailable),
        (partial, Outcome::Unavailable),
        (bad_regex, Outcome::Usage),
    ] {
        let api = Fake::new(vec![Err(make)]);
        let (o, out, err) = exec(&api, &plan(Mode::Overview, false)).await;
        assert_eq!(o, code, "{err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("certgate fleet: "), "{err}");
    }
}

fn wait_plan(anchor: AnchorArg, timeout: Duration) -> Plan {
    let mut p = plan(
        Mode::Wait(WaitSpec {
            anchor,
            basis_points: 10_000,
            interval: Duration::from_secs(1),
        }),
        false,
    );
    p.timeout = timeout;
    p
}

#[tokio::test(start_paused = true)]
async fn wait_converges_when_the_last_pod_trusts_the_anchor() {
    let api = Fake::new(vec![
        Ok(observed(&[], &["web-a", "web-b"], &[])),
        Ok(observed(&["web-a"], &["web-b"], &[])),
        Err(refused),
        Ok(observed(&["web-a"], &[], &["web-b"])),
        Ok(observed(&["web-a", "web-b"], &[], &[])),
    ]);
    let start = Instant::now();
    let (o, out, err) = exec(
        &api,
        &wait_plan(AnchorArg::Id(NEW.into()), Duration::from_secs(60)),
    )
    .await;
    assert_eq!(o, Outcome::Ok, "{err}");
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(4),
        "one round a second"
    );
    assert!(out.starts_with("converged"), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].contains("0/2 pods trust 111111111111"), "{err}");
    assert!(lines[1].contains("1/2 pods"), "{err}");
    assert!(lines[2].contains("failed round 1 of 3"), "{err}");
    assert!(lines[3].contains("1 unknown"), "{err}");
    assert!(lines[4].contains("2/2 pods"), "{err}");
    assert_fits(&err);
    // Four answered rounds of 3; the failed one stops before its subject query.
    assert_eq!(api.queries.borrow().len(), 4 * 3 + 2);
}

#[tokio::test(start_paused = true)]
async fn wait_times_out_with_1_and_gives_up_with_3_after_failed_rounds() {
    let api = Fake::new(vec![Ok(observed(&["web-a"], &["web-b"], &[]))]);
    let start = Instant::now();
    let (o, out, err) = exec(&api, &wait_plan(AnchorArg::Newest, Duration::from_secs(10))).await;
    assert_eq!(o, Outcome::Failed);
    assert!(start.elapsed() <= Duration::from_secs(10));
    assert!(
        out.contains("shop/web-b"),
        "the pods still lacking it: {out}"
    );
    assert!(
        err.trim_end().ends_with("not every group reached 100%"),
        "{err}"
    );
    // Unchanged progress is not repeated every round.
    assert_eq!(err.lines().count(), 2, "{err}");

    let api = Fake::new(vec![
        Ok(observed(&["web-a"], &["web-b"], &[])),
        Err(refused),
    ]);
    let (o, _, err) = exec(
        &api,
        &wait_plan(AnchorArg::Newest, Duration::from_secs(600)),
    )
    .await;
    assert_eq!(o, Outcome::Unavailable, "{err}");
    assert!(err.contains("failed round 3 of 3"), "{err}");

    // An id no pod trusts yet is waited for; an unknown prefix is refused at once.
    let api = Fake::new(vec![Ok(observed(&["web-a"], &[], &[]))]);
    let (o, _, _) = exec(
        &api,
        &wait_plan(AnchorArg::Id("3".repeat(64)), Duration::from_secs(3)),
    )
    .await;
    assert_eq!(o, Outcome::Failed);
    let (o, _, err) = exec(
        &api,
        &wait_plan(AnchorArg::Prefix("333333".into()), Duration::from_secs(3)),
    )
    .await;
    assert_eq!(o, Outcome::Usage, "{err}");
    // No pods at all never converges.
    let api = Fake::new(vec![Ok(Observed::default())]);
    let (o, _, _) = exec(&api, &wait_plan(AnchorArg::Newest, Duration::from_secs(3))).await;
    assert_eq!(o, Outcome::Failed);
}

#[test]
fn coverage_is_a_percentage_above_zero() {
    assert_eq!(parse_coverage("100%"), Ok(10_000));
    assert_eq!(parse_coverage("99.5%"), Ok(9_950));
    assert_eq!(parse_coverage(" 95 "), Ok(9_500));
    assert_eq!(parse_coverage("0.01%"), Ok(1));
    for bad in ["0%", "101%", "abc", "", "%", "1.234%", "-5%", "1e2"] {
        assert!(parse_coverage(bad).is_err(), "{bad}");
    }
    assert_eq!(render::percent(9_950), "99.5%");
    assert_eq!(render::percent(9_999), "99.99%");
    assert_eq!(render::percent(10_000), "100%");
}

#[test]
fn anchor_ids_are_hex_full_or_a_prefix() {
    let c = |a: &str| crate::cli::AnchorChoice {
        anchor: Some(a.into()),
        newest: false,
    };
    assert_eq!(
        anchor_arg(&c(&"A".repeat(64))),
        Ok(AnchorArg::Id("a".repeat(64)))
    );
    assert_eq!(
        anchor_arg(&c("abcdef")),
        Ok(AnchorArg::Prefix("abcdef".into()))
    );
    for bad in ["abcde", "xyzxyzxyz", &"a".repeat(65), ""] {
        assert!(anchor_arg(&c(bad)).is_err(), "{bad}");
    }
}

#[test]
fn fit_cuts_with_an_ellipsis_on_char_boundaries() {
    assert_eq!(render::fit("abc", 5), "abc  ");
    assert_eq!(render::fit("abcdef", 4), "abc…");
    assert_eq!(render::fit("ééééé", 3), "éé…");
    assert_eq!(render::fit("x", 0), "");
}

#[test]
fn the_follow_up_query_reads_a_few_pods_only() {
    let o = observed(&["web.a"], &["web-b", "web-c"], &[]);
    // Subjects: one pod per anchor.
    let p = plan(Mode::Anchors, false);
    assert!(!p.by_bundle());
    assert_eq!(
        p.anchor_query(&o.first_seen),
        format!(
            "count by (anchor_id, subject) (certgate_trust_anchor_info{{anchor_id=~\"{OLD}|{NEW}\", \
             namespace=~\"shop\", pod=~\"web\\\\.a\", namespace=\"shop\"}})"
        )
    );
    // Bundles: one pod per distinct bundle.
    let p = plan(Mode::Stale(AnchorArg::Id(NEW.into())), false);
    assert!(p.by_bundle());
    assert_eq!(
        p.anchor_query(&o.bundles),
        "count by (namespace, pod, set, anchor_id, subject) (certgate_trust_anchor_info{\
         namespace=~\"shop\", pod=~\"web\\\\.a|web-b\", namespace=\"shop\"})"
    );
    assert!(!plan(Mode::Stale(AnchorArg::Newest), false).by_bundle());
    assert_eq!(
        p.anchor_query(&[]),
        r#"count by (namespace, pod, set, anchor_id, subject) (certgate_trust_anchor_info{anchor_id="", namespace="shop"})"#
    );
    assert_eq!(regex_escape("a.b|c(d)"), r"a\.b\|c\(d\)");
}
