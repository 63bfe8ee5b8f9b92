use std::collections::BTreeMap;
use std::time::Duration;

use certgate_testkit::pki::{Alg, Ca, LeafSpec};

use super::query::{self, RoundQueries};
use super::*;
use crate::pipeline::anchors::anchors_verifying;
use crate::pipeline::load;
use crate::pipeline::validate::Usage;

fn settings() -> GateSettings {
    GateSettings {
        mode: GateMode::Hold,
        verifiers: vec![Selector::parse(r#"{namespace="shop"}"#).unwrap()],
        presenters: Vec::new(),
        min_verifiers: 1,
        expected_verifiers: None,
        unknown_verifiers: UnknownVerifiers::Hold,
        stable_for: Duration::from_secs(10),
        release_before_expiry: None,
        release_file: None,
    }
}

fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        value,
        at: 0.0,
    }
}

fn id(c: char) -> AnchorId {
    AnchorId::of(c.to_string().as_bytes(), b"k")
}

/// Pods trusting the given anchors, all scraped.
fn answers(pods: &[(&str, &[&AnchorId])]) -> Answers {
    let mut a = Answers::default();
    for (pod, anchors) in pods {
        let p = [("namespace", "shop"), ("pod", *pod)];
        a.up.push(sample(&p, 1.0));
        a.exporting.push(sample(&p, anchors.len() as f64));
        for anchor in *anchors {
            a.relevant.push(sample(
                &[
                    ("namespace", "shop"),
                    ("pod", *pod),
                    ("anchor_id", anchor.as_str()),
                ],
                1.0,
            ));
        }
    }
    a
}

#[test]
fn a_verifier_regresses_only_when_it_verifies_the_live_leaf_and_not_the_candidate() {
    let (r1, r2) = (id('1'), id('2'));
    let (l, c) = (std::slice::from_ref(&r1), std::slice::from_ref(&r2));
    let a = answers(&[
        ("both", &[&r1, &r2]),
        ("old-only", &[&r1]),
        ("new-only", &[&r2]),
        ("neither", &[]),
    ]);
    let j = judge(&a, l, c, &settings(), HoldKind::Leaf);
    let names: Vec<&str> = j.regressing.iter().map(|p| p.pod.as_str()).collect();
    assert_eq!(names, ["old-only"]);
    assert!(!j.clear);
    // "neither" trusts some other anchor: it is seen, already broken, and holds nothing.
    assert_eq!((j.seen, j.ok), (4, 3));
    assert!(j.why.unwrap().contains("shop/old-only"));
    // Once it moves, the candidate is clear.
    let a = answers(&[("both", &[&r1, &r2]), ("old-only", &[&r1, &r2])]);
    let j = judge(&a, l, c, &settings(), HoldKind::Leaf);
    assert!(j.clear, "{j:?}");
}

#[test]
fn unknown_and_too_few_verifiers_hold_unless_told_otherwise() {
    let (r1, r2) = (id('1'), id('2'));
    let (l, c) = (std::slice::from_ref(&r1), std::slice::from_ref(&r2));
    let mut a = answers(&[("a", &[&r1, &r2])]);
    a.up.push(sample(&[("namespace", "shop"), ("pod", "down")], 0.0));
    a.up.push(sample(&[("namespace", "shop"), ("pod", "starting")], 1.0));
    let j = judge(&a, l, c, &settings(), HoldKind::Leaf);
    assert!(!j.clear);
    assert_eq!(
        j.unknown,
        vec![
            (
                PodRef {
                    namespace: "shop".into(),
                    pod: "down".into()
                },
                Unknown::ScrapeFailing
            ),
            (
                PodRef {
                    namespace: "shop".into(),
                    pod: "starting".into()
                },
                Unknown::NoTrustSeries
            ),
        ]
    );
    // A failing scrape makes a pod unknown even while its last series are still visible
    // (after a Prometheus restart they are old answers).
    let mut stale = answers(&[("a", &[&r1, &r2]), ("old", &[&r1])]);
    stale.up.retain(|s| s.labels["pod"] != "old");
    stale
        .up
        .push(sample(&[("namespace", "shop"), ("pod", "old")], 0.0));
    let j = judge(&stale, l, c, &settings(), HoldKind::Leaf);
    assert!(j.regressing.is_empty(), "{j:?}");
    assert_eq!(j.unknown.len(), 1);
    assert_eq!(j.seen, 1);
    let ignore = GateSettings {
        unknown_verifiers: UnknownVerifiers::Ignore,
        ..settings()
    };
    assert!(judge(&a, l, c, &ignore, HoldKind::Leaf).clear);
    // A selector matching nothing is a typo, not consensus.
    let j = judge(&Answers::default(), l, c, &settings(), HoldKind::Leaf);
    assert!(!j.clear);
    assert!(j.why.unwrap().contains("min_verifiers"));
    // Expected verifiers that run no certgate are not invisible.
    let mut a = answers(&[("a", &[&r1, &r2])]);
    a.expected = Some(3.0);
    let j = judge(&a, l, c, &settings(), HoldKind::Leaf);
    assert!(!j.clear);
    assert_eq!(j.expected, Some(3));
    a.expected = Some(1.0);
    assert!(judge(&a, l, c, &settings(), HoldKind::Leaf).clear);
}

#[test]
fn blocking_pods_are_bounded() {
    let (r1, r2) = (id('1'), id('2'));
    let (l, c) = (std::slice::from_ref(&r1), std::slice::from_ref(&r2));
    let names: Vec<String> = (0..50).map(|i| format!("p{i:02}")).collect();
    let old = [&r1];
    let pods: Vec<(&str, &[&AnchorId])> = names.iter().map(|n| (n.as_str(), &old[..])).collect();
    let j = judge(&answers(&pods), l, c, &settings(), HoldKind::Leaf);
    assert_eq!(j.regressing.len(), 50);
    assert_eq!(j.blocking(true).len(), MAX_BLOCKING_SHOWN);
    assert!(j.why.unwrap().ends_with("and 30 more"));
}

#[test]
fn the_deadline_keeps_a_margin_before_expiry() {
    let day = 86_400;
    // Default: 10 % of the lifetime, at least 5 minutes.
    assert_eq!(deadline(0, 10 * day, None), 9 * day);
    assert_eq!(deadline(0, 600, None), 300);
    assert_eq!(
        deadline(
            0,
            10 * day,
            Some(ReleaseBefore::Margin(Duration::from_secs(3600)))
        ),
        10 * day - 3600
    );
    assert_eq!(
        deadline(0, 10 * day, Some(ReleaseBefore::parse("25%").unwrap())),
        7 * day + day / 2
    );
    assert_eq!(
        ReleaseBefore::parse("30m").unwrap(),
        ReleaseBefore::Margin(Duration::from_secs(1800))
    );
    for bad in ["", "100%", "0%", "ten", "-5m"] {
        assert!(ReleaseBefore::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn selectors_expand_the_environment_and_unset_variables_fail() {
    let env = |k: &str| (k == "POD_NAMESPACE").then(|| "shop".to_string());
    assert_eq!(
        expand_env(
            r#"{namespace="$POD_NAMESPACE", app="${POD_NAMESPACE}-web"}"#,
            &env
        )
        .unwrap(),
        r#"{namespace="shop", app="shop-web"}"#
    );
    let e = expand_env(r#"{namespace="$NOPE"}"#, &env).unwrap_err();
    assert!(e.contains("NOPE is not set"), "{e}");
    assert!(expand_env("{a=\"${X\"}", &env).is_err());
    assert!(expand_env("{a=\"$1\"}", &env).is_err());
}

#[test]
fn a_round_is_a_few_queries_whatever_the_number_of_verifiers() {
    let (r1, r2) = (id('1'), id('2'));
    let sels = vec![
        Selector::parse(r#"{namespace="shop", set="web"}"#).unwrap(),
        Selector::parse(r#"{namespace="cart"}"#).unwrap(),
    ];
    let q = RoundQueries::new(
        &sels,
        ".*certgate.*",
        "certgate_trust_anchor_info",
        &[&r1, &r2],
        Some("count(kube_pod_info)"),
    );
    assert_eq!(q.count(), 2);
    assert!(
        q.fleet.contains("min by (namespace, pod) (up{"),
        "{}",
        q.fleet
    );
    assert!(q.fleet.contains(" or up{"), "{}", q.fleet);
    let up = q
        .fleet
        .split("up{")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    assert!(!up.contains("set="), "up has no set label: {up}");
    assert!(
        q.fleet.contains(&format!("anchor_id=~\"{}|{}\"", r1, r2)),
        "{}",
        q.fleet
    );
    assert_eq!(q.expected.as_deref(), Some("sum(count(kube_pod_info))"));
    // The answer splits back by part.
    let tag = |part: &str, pod: &str| {
        sample(
            &[
                ("namespace", "shop"),
                ("pod", pod),
                (query::PART_LABEL, part),
            ],
            1.0,
        )
    };
    let a = query::split(
        vec![
            tag("up", "a"),
            tag("exporting", "a"),
            tag("anchor", "a"),
            tag("other", "b"),
        ],
        Some(vec![sample(&[], 2.0), sample(&[], 1.0)]),
    );
    assert_eq!((a.up.len(), a.exporting.len(), a.relevant.len()), (1, 1, 1));
    assert!(!a.up[0].labels.contains_key(query::PART_LABEL));
    assert_eq!(a.expected, Some(3.0));
}

// === A(L) over the matrix {old, new chain} × {old, new, both bundles} × {cross-signed} ===

struct Pki {
    r1: Ca,
    r2: Ca,
    old_chain: String,
    new_chain: String,
    cross_chain: String,
}

fn pki() -> Pki {
    let r1 = Ca::root("gate root 1", Alg::P256);
    let r2 = Ca::root("gate root 2", Alg::P256);
    let i1 = r1.intermediate("gate issuer 1", Alg::P256);
    let i2 = r2.intermediate("gate issuer 2", Alg::P256);
    let spec = LeafSpec::new("web.shop.svc");
    let old = i1.leaf(&spec);
    let new = i2.leaf(&spec);
    Pki {
        old_chain: format!("{}{}", old.cert_pem, i1.cert_pem),
        new_chain: format!("{}{}", new.cert_pem, i2.cert_pem),
        // The new issuer also certified by the old root: the chain reaches either.
        cross_chain: format!("{}{}{}", new.cert_pem, i2.cert_pem, i2.cross_signed_by(&r1)),
        r1,
        r2,
    }
}

fn anchors_of(chain: &str, bundle: &[&Ca]) -> Vec<AnchorId> {
    let tmp = tempfile::tempdir().unwrap();
    let paths = load::SourcePaths {
        cert: tmp.path().join("tls.crt"),
        key: None,
        trust: Some(tmp.path().join("ca.crt")),
    };
    std::fs::write(&paths.cert, chain).unwrap();
    let pem: String = bundle.iter().map(|c| c.cert_pem.as_str()).collect();
    std::fs::write(paths.trust.as_ref().unwrap(), pem).unwrap();
    let m = load::load_set(&paths, 1 << 20).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    anchors_verifying(&m.chain, &m.trust, Usage::Server, now, 1000)
}

fn anchor(ca: &Ca) -> AnchorId {
    crate::pipeline::inspect::anchor_id_of(&ca.cert_der).unwrap()
}

#[test]
fn anchors_that_verify_a_chain_across_bundles_and_cross_signing() {
    let p = pki();
    let (a1, a2) = (anchor(&p.r1), anchor(&p.r2));
    let old: &[&Ca] = &[&p.r1];
    let new: &[&Ca] = &[&p.r2];
    let both: &[&Ca] = &[&p.r1, &p.r2];
    let cases: [(&str, &str, &[&Ca], Vec<AnchorId>); 9] = [
        ("old chain, old bundle", &p.old_chain, old, vec![a1.clone()]),
        ("old chain, new bundle", &p.old_chain, new, vec![]),
        ("old chain, both", &p.old_chain, both, vec![a1.clone()]),
        ("new chain, old bundle", &p.new_chain, old, vec![]),
        ("new chain, new bundle", &p.new_chain, new, vec![a2.clone()]),
        ("new chain, both", &p.new_chain, both, vec![a2.clone()]),
        (
            "cross chain, old bundle",
            &p.cross_chain,
            old,
            vec![a1.clone()],
        ),
        (
            "cross chain, new bundle",
            &p.cross_chain,
            new,
            vec![a2.clone()],
        ),
        (
            "cross chain, both",
            &p.cross_chain,
            both,
            vec![a1.clone(), a2.clone()],
        ),
    ];
    for (what, chain, bundle, want) in cases {
        assert_eq!(anchors_of(chain, bundle), want, "{what}");
    }
    // The rule over every known anchor: a new CA may regress, a cross-signed one cannot.
    let live = anchors_of(&p.old_chain, both);
    assert!(may_regress(&live, &anchors_of(&p.new_chain, both)));
    assert!(!may_regress(&live, &anchors_of(&p.cross_chain, both)));
    assert!(!may_regress(&live, &anchors_of(&p.old_chain, both)));
}
