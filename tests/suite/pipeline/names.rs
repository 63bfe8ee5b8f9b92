//! Expected names against the leaf's SANs: DNS (several, wildcard), IP and SPIFFE URI.

use std::net::IpAddr;

use certgate::pipeline::validate::{Failure, Usage};

use crate::util::pki::{Alg, Hierarchy, LeafSpec};

use super::{
    assert_check_fails, assert_passes_with_handshake, describe, evaluate, policy, Set, NAME,
};

#[test]
fn expected_name_may_be_the_second_san() {
    let h = Hierarchy::shared(Alg::P256);
    let leaf = h.intermediate.leaf(
        &LeafSpec::new("first.example.com").dns(&["first.example.com", "second.example.com"]),
    );
    let set = Set::of(h, &leaf);
    let eval = evaluate(&set.paths, &policy(&["second.example.com"]));
    assert_passes_with_handshake(&eval);
    assert_eq!(eval.handshake().unwrap().server_name, "second.example.com");
    let both = evaluate(
        &set.paths,
        &policy(&["first.example.com", "second.example.com"]),
    );
    assert!(both.passed(), "{}", describe(&both));
    let third = evaluate(
        &set.paths,
        &policy(&["second.example.com", "third.example.com"]),
    );
    let f = assert_check_fails(&third, "names", "name_mismatch");
    assert!(f.to_string().contains("third.example.com"), "{f}");
}

#[test]
fn wildcard_san_covers_exactly_one_label() {
    let h = Hierarchy::shared(Alg::P256);
    let leaf = h.intermediate.leaf(&LeafSpec::new("*.example.com"));
    let set = Set::of(h, &leaf);
    let eval = evaluate(&set.paths, &policy(&["a.example.com"]));
    assert_passes_with_handshake(&eval);
    assert_eq!(eval.handshake().unwrap().server_name, "a.example.com");
    for name in ["a.b.example.com", "example.com", "a.example.org"] {
        let eval = evaluate(&set.paths, &policy(&[name]));
        let f = assert_check_fails(&eval, "names", "name_mismatch");
        assert!(f.to_string().contains(name), "{f}");
        assert!(
            f.to_string().contains("DNS:*.example.com"),
            "presented SANs: {f}"
        );
    }
}

#[test]
fn ip_san_matches_an_ip_name() {
    let h = Hierarchy::shared(Alg::P256);
    let v4: IpAddr = "10.1.2.3".parse().unwrap();
    let v6: IpAddr = "fd00::17".parse().unwrap();
    let leaf = h.intermediate.leaf(&LeafSpec::new(NAME).ip(v4).ip(v6));
    let set = Set::of(h, &leaf);
    for name in ["10.1.2.3", "fd00::17"] {
        let eval = evaluate(&set.paths, &policy(&[name]));
        assert_passes_with_handshake(&eval);
        assert_eq!(eval.handshake().unwrap().server_name, name);
    }
    for name in ["10.1.2.4", "fd00::18"] {
        let eval = evaluate(&set.paths, &policy(&[name]));
        assert_check_fails(&eval, "names", "name_mismatch");
    }
    // An IP is not matched against DNS SANs, nor a DNS name spelled like the IP.
    let dns_only = h
        .intermediate
        .leaf(&LeafSpec::new(NAME).dns(&[NAME, "10-1-2-3.example.com"]));
    let eval = evaluate(&Set::of(h, &dns_only).paths, &policy(&["10.1.2.3"]));
    assert_check_fails(&eval, "names", "name_mismatch");
}

#[test]
fn spiffe_uri_san_matches_exactly() {
    const ID: &str = "spiffe://cluster.local/ns/default/sa/web";
    let h = Hierarchy::shared(Alg::P256);
    // A SPIFFE SVID: only a URI SAN, and serving both sides of mTLS.
    let leaf = h.intermediate.leaf(&LeafSpec::new("web").dns(&[]).uri(ID));
    let set = Set::of(h, &leaf);
    let mut p = policy(&[ID]);
    p.usage = Usage::Both;
    let eval = evaluate(&set.paths, &p);
    assert_passes_with_handshake(&eval);
    assert!(eval.handshake().unwrap().client_auth);
    for other in [
        "spiffe://cluster.local/ns/default/sa/api",
        "spiffe://cluster.local/ns/default/sa/we",
        "spiffe://cluster.local/ns/default/sa/web/",
        "spiffe://other.domain/ns/default/sa/web",
    ] {
        let mut p = policy(&[other]);
        p.usage = Usage::Both;
        let eval = evaluate(&set.paths, &p);
        let f = assert_check_fails(&eval, "names", "name_mismatch");
        assert!(
            f.to_string().contains(other) && f.to_string().contains(ID),
            "{f}"
        );
    }
}

#[test]
fn wrong_name_fails_as_name_mismatch() {
    let h = Hierarchy::shared(Alg::P256);
    let eval = evaluate(&Set::of(h, &h.leaf).paths, &policy(&["api.example.com"]));
    let f = assert_check_fails(&eval, "names", "name_mismatch");
    assert!(
        matches!(f, Failure::NameMismatch { expected, presented }
            if expected == "api.example.com" && presented.contains(NAME)),
        "{f:?}"
    );
    // The rest of the material is fine: only the names check failed.
    let failed: Vec<&str> = eval
        .verdict()
        .unwrap()
        .failures()
        .map(|c| c.check)
        .collect();
    assert_eq!(failed, ["names"]);
}
