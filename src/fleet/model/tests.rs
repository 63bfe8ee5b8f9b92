use super::*;

pub(crate) fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
        at: 1000.0,
    }
}

fn by() -> Vec<String> {
    ["namespace", "workload", "set"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Pod target labels: namespace shop, the given workload and pod.
fn target<'a>(workload: &'a str, pod: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("namespace", "shop"),
        ("workload", workload),
        ("pod", pod),
        ("job", "certgate"),
    ]
}

fn with<'a>(
    mut base: Vec<(&'a str, &'a str)>,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    base.extend_from_slice(more);
    base
}

/// An anchor a pod trusts, with its first-seen time.
fn trusts(o: &mut Observed, workload: &str, pod: &str, set: &str, id: &str, at: f64, via: &str) {
    let t = target(workload, pod);
    let subject = format!("CN={id}");
    o.anchor_info
        .push(sample(&[("anchor_id", id), ("subject", &subject)], 1.0));
    o.first_seen.push(sample(
        &with(t, &[("set", set), ("anchor_id", id), ("via", via)]),
        at,
    ));
}

fn up(o: &mut Observed, workload: &str, pod: &str, value: f64) {
    o.up.push(sample(&target(workload, pod), value));
}

/// web: a, b, c (c down); api: d. Old root everywhere at startup (100); new root by rotation
/// on a (at 200) and b (at 206).
fn fleet() -> Observed {
    let mut o = Observed::default();
    for (w, p) in [("web", "a"), ("web", "b"), ("api", "d")] {
        up(&mut o, w, p, 1.0);
        trusts(&mut o, w, p, "default", "old", 100.0, "startup");
    }
    up(&mut o, "web", "c", 0.0);
    trusts(&mut o, "web", "a", "default", "new", 200.0, "rotation");
    trusts(&mut o, "web", "b", "default", "new", 206.0, "rotation");
    o
}

#[test]
fn pods_join_by_namespace_and_pod_and_failing_ones_are_unknown() {
    let f = Fleet::build(&fleet(), &by());
    let names: Vec<(&str, Health)> = f.pods.iter().map(|p| (p.pod.as_str(), p.health)).collect();
    assert_eq!(
        names,
        [
            ("a", Health::Live),
            ("b", Health::Live),
            ("c", Health::ScrapeFailing),
            ("d", Health::Live)
        ]
    );
    assert_eq!(f.unknown_pods(), 1);
    // Two groups: shop/api/default and shop/web/default; c sits in web's only set.
    let groups: Vec<(Vec<String>, usize)> = f
        .groups
        .iter()
        .map(|g| {
            (
                g.labels.iter().map(|(_, v)| v.clone()).collect(),
                g.members.len(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            (vec!["shop".into(), "api".into(), "default".into()], 1),
            (vec!["shop".into(), "web".into(), "default".into()], 3),
        ]
    );
    assert_eq!(f.evaluated_at, Some(1000.0));
}

#[test]
fn anchors_summarise_coverage_first_seen_and_propagation() {
    let f = Fleet::build(&fleet(), &by());
    let web = &f.groups[1];
    let sums = f.anchor_summaries(web);
    assert_eq!(sums.len(), 2);
    let new = &sums[0];
    assert_eq!(new.anchor_id, "new");
    assert_eq!((new.trusting, new.pods, new.complete), (2, 3, false));
    assert_eq!(new.first_seen_earliest, Some(200.0));
    assert_eq!(new.first_seen_latest, Some(206.0));
    assert_eq!(new.propagation_seconds, Some(6.0));
    let old = &sums[1];
    assert_eq!(old.propagation_seconds, None, "startup is not propagation");
    assert!(!old.complete, "the unknown pod counts against completeness");
    assert_eq!(f.newest(web), ["new"]);
    assert_eq!(f.newest(&f.groups[0]), ["old"]);
}

#[test]
fn verdicts_name_lacking_and_unknown_pods() {
    let mut o = fleet();
    up(&mut o, "web", "e", 1.0);
    trusts(&mut o, "web", "e", "default", "old", 100.0, "startup");
    let f = Fleet::build(&o, &by());
    let v = f.verdicts(&Target::Anchor("new".into()));
    let web = &v[1];
    let g = &f.groups[1];
    let names = |idx: &[usize]| -> Vec<String> {
        idx.iter()
            .map(|&i| f.pods[g.members[i].pod].pod.clone())
            .collect()
    };
    assert_eq!(names(&web.lacking), ["e"]);
    assert_eq!(names(&web.unknown), ["c"]);
    assert_eq!((web.trusting, web.pods), (2, 4));
    assert!(web.meets(5_000));
    assert!(!web.meets(5_001));
    assert!(!web.meets(10_000));
    // api has no pod with the anchor: every pod lacks it.
    assert_eq!((v[0].trusting, v[0].lacking.len()), (0, 1));
    // --newest: api's newest is "old", which its pod trusts.
    let v = f.verdicts(&Target::Newest);
    assert!(v[0].meets(10_000));
    assert_eq!(v[1].ids, ["new"]);
}

#[test]
fn a_scraped_pod_without_series_is_unknown_and_series_without_a_pod_are_left_out() {
    let mut o = fleet();
    up(&mut o, "web", "f", 1.0);
    o.up.push(sample(&[("job", "certgate"), ("instance", "x:1")], 1.0));
    o.first_seen
        .push(sample(&[("set", "default"), ("anchor_id", "z")], 1.0));
    let f = Fleet::build(&o, &by());
    let pod = f.pods.iter().find(|p| p.pod == "f").unwrap();
    assert_eq!(pod.health, Health::NoSeries);
    assert_eq!(f.ignored_series, 2);
    assert!(!f.anchor_ids().contains("z"));
}

#[test]
fn an_unknown_pod_joins_every_set_of_its_workload_or_a_setless_group() {
    let mut o = fleet();
    trusts(&mut o, "web", "a", "internal", "int", 100.0, "startup");
    up(&mut o, "lonely", "g", 0.0);
    let f = Fleet::build(&o, &by());
    let groups_of = |pod: &str| -> Vec<String> {
        f.groups
            .iter()
            .filter(|g| g.members.iter().any(|m| f.pods[m.pod].pod == pod))
            .map(|g| {
                g.labels
                    .iter()
                    .map(|(_, v)| v.as_str())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    };
    assert_eq!(groups_of("c"), ["shop/web/default", "shop/web/internal"]);
    assert_eq!(groups_of("g"), ["shop/lonely/"]);
    // Grouped by namespace alone, each pod once.
    let f = Fleet::build(&o, &["namespace".to_string()]);
    assert_eq!(f.groups.len(), 1);
    // a is a member twice (two sets), c once (no set).
    assert_eq!(f.groups[0].members.len(), 6);
}

#[test]
fn leaves_join_their_set() {
    let mut o = fleet();
    let t = with(
        target("web", "a"),
        &[
            ("set", "default"),
            ("role", "leaf"),
            ("fingerprint_sha256", "ff00"),
            ("issuer", "CN=inter"),
            ("subject", "CN=web"),
            ("serial", "01"),
        ],
    );
    o.leaf_info.push(sample(&t, 1.0));
    o.leaf_not_after.push(sample(
        &with(target("web", "a"), &[("set", "default"), ("role", "leaf")]),
        1_800_000_000.0,
    ));
    let f = Fleet::build(&o, &by());
    let g = &f.groups[1];
    let leaf = f.pod_set(&g.members[0]).unwrap().leaf.clone().unwrap();
    assert_eq!(leaf.fingerprint_sha256, "ff00");
    assert_eq!(leaf.issuer, "CN=inter");
    assert_eq!(leaf.not_after, Some(1_800_000_000));
    assert!(f.pod_set(&g.members[1]).unwrap().leaf.is_none());
}

#[test]
fn an_empty_answer_is_an_empty_fleet() {
    let f = Fleet::build(&Observed::default(), &by());
    assert!(f.pods.is_empty() && f.groups.is_empty());
    assert!(f.verdicts(&Target::Newest).is_empty());
}

#[test]
fn with_bundles_each_pod_trusts_the_anchors_of_its_bundle() {
    let mut o = Observed::default();
    for (pod, bundle) in [("a", "b1"), ("b", "b1"), ("c", "b2"), ("d", "b3")] {
        up(&mut o, "web", pod, 1.0);
        o.bundles.push(sample(
            &with(
                target("web", pod),
                &[("set", "default"), ("fingerprint_sha256", bundle)],
            ),
            1.0,
        ));
    }
    // The follow-up query read b1's anchors from pod a, b2's from pod c; b3's are not
    // exported (over the cap).
    for (pod, id) in [("a", "old"), ("a", "new"), ("c", "old")] {
        let subject = format!("CN={id}");
        o.anchor_info.push(sample(
            &with(
                target("web", pod),
                &[("set", "default"), ("anchor_id", id), ("subject", &subject)],
            ),
            1.0,
        ));
    }
    let f = Fleet::build(&o, &by());
    let anchors = |pod: &str| -> Vec<String> {
        let p = f.pods.iter().find(|p| p.pod == pod).unwrap();
        p.sets["default"].anchors.keys().cloned().collect()
    };
    assert_eq!(anchors("b"), ["new", "old"]);
    assert_eq!(anchors("c"), ["old"]);
    assert!(anchors("d").is_empty());
    assert_eq!(f.pods[1].sets["default"].anchors["new"].subject, "CN=new");
    let v = f.verdicts(&Target::Anchor("new".into()));
    assert_eq!(
        (v[0].trusting, v[0].lacking.len(), v[0].unknown.len()),
        (2, 2, 0)
    );
    assert!(f.pods.iter().all(|p| p.health == Health::Live));
}
