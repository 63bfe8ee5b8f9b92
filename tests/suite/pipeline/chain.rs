//! Building the chain to a trust anchor: order in the chain file, bundles of several roots,
//! unknown or missing issuers, no bundle, extended and plain key usage, a CA given as the leaf,
//! and roots OpenSSL refuses (openssl.rs compares every X.509 rule with OpenSSL itself).

use certgate::pipeline::inspect::Role;
use certgate::pipeline::validate::{Failure, Policy, Status, Usage};
use time::OffsetDateTime;

use crate::util::pki::{Alg, Ca, Eku, Hierarchy, LeafSpec};

use super::{
    assert_check_fails, assert_passes_with_handshake, check, describe, evaluate, hours, policy,
    Set, NAME,
};

#[test]
fn chain_file_may_carry_the_root_and_intermediates_in_any_order() {
    let h = Hierarchy::shared(Alg::P256);
    let key = h.leaf.key.pkcs8_pem();
    for (what, chain) in [
        (
            "leaf, intermediate, root",
            format!("{}{}", h.chain_pem(), h.root.cert_pem),
        ),
        (
            "leaf, root, intermediate",
            format!(
                "{}{}{}",
                h.leaf.cert_pem, h.root.cert_pem, h.intermediate.cert_pem
            ),
        ),
    ] {
        let set = Set::new(
            chain,
            Some(key.as_bytes()),
            Some(h.root.cert_pem.as_bytes()),
        );
        let eval = evaluate(&set.paths, &policy(&[NAME]));
        assert!(eval.passed(), "{what}: {}", describe(&eval));
        assert_passes_with_handshake(&eval);
        let roles: Vec<Role> = eval
            .verdict()
            .unwrap()
            .chain()
            .iter()
            .map(|c| c.role)
            .collect();
        assert_eq!(
            roles,
            [Role::Leaf, Role::Intermediate, Role::Anchor],
            "{what}"
        );
    }
}

#[test]
fn bundle_with_old_and_new_roots_passes_leaves_of_either() {
    let old = Hierarchy::shared(Alg::P256);
    let new_root = Ca::root("certgate replacement root", Alg::P256);
    let new_inter = new_root.intermediate("certgate replacement intermediate", Alg::P256);
    let new_leaf = new_inter.leaf(&LeafSpec::new(NAME));
    let bundle = format!("{}{}", old.root.cert_pem, new_root.cert_pem);

    let chain_new = format!("{}{}", new_leaf.cert_pem, new_inter.cert_pem);
    let chain_old = old.chain_pem();
    for (what, chain, leaf) in [
        ("new", &chain_new, &new_leaf),
        ("old", &chain_old, &old.leaf),
    ] {
        let set = Set::new(
            chain,
            Some(leaf.key.pkcs8_pem().as_bytes()),
            Some(bundle.as_bytes()),
        );
        let eval = evaluate(&set.paths, &policy(&[NAME]));
        assert_passes_with_handshake(&eval);
        assert_eq!(check(&eval, "trust_bundle").status, Status::Pass, "{what}");
        assert_eq!(eval.verdict().unwrap().anchors().len(), 2, "{what}");
    }
    // An expired root left in the bundle is a warning, not a failure, while another is usable.
    let t = OffsetDateTime::now_utc();
    let retired = Ca::root_valid(
        "certgate retired root",
        Alg::P256,
        t - hours(24 * 3650),
        t - hours(24),
    );
    let with_retired = format!("{bundle}{}", retired.cert_pem);
    let set = Set::new(
        &chain_new,
        Some(new_leaf.key.pkcs8_pem().as_bytes()),
        Some(with_retired.as_bytes()),
    );
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    assert_passes_with_handshake(&eval);
    let trust = check(&eval, "trust_bundle");
    assert_eq!(trust.status, Status::Warn, "{}", describe(&eval));
    assert!(
        trust.message.contains("certgate retired root") && trust.message.contains("expired"),
        "{}",
        trust.message
    );
    // The bundle is what makes the new leaf pass: against the old root alone it is unknown.
    let set = Set::new(
        chain_new,
        Some(new_leaf.key.pkcs8_pem().as_bytes()),
        Some(old.root.cert_pem.as_bytes()),
    );
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    assert_check_fails(&eval, "chain", "unknown_issuer");
}

#[test]
fn unknown_ca_fails_as_unknown_issuer() {
    let h = Hierarchy::shared(Alg::P256);
    let stranger = Ca::root("stranger root", Alg::P256);
    let set = Set::new(
        h.chain_pem(),
        Some(h.leaf.key.pkcs8_pem().as_bytes()),
        Some(stranger.cert_pem.as_bytes()),
    );
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    let f = assert_check_fails(&eval, "chain", "unknown_issuer");
    assert!(
        f.to_string().contains("certgate test root"),
        "names the missing issuer: {f}"
    );
}

#[test]
fn missing_intermediate_fails_as_unknown_issuer() {
    let h = Hierarchy::shared(Alg::P256);
    let set = Set::new(
        &h.leaf.cert_pem,
        Some(h.leaf.key.pkcs8_pem().as_bytes()),
        Some(h.root.cert_pem.as_bytes()),
    );
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    let f = assert_check_fails(&eval, "chain", "unknown_issuer");
    let msg = f.to_string();
    assert!(
        msg.contains("certgate test intermediate") && msg.contains("missing intermediate"),
        "{msg}"
    );
}

#[test]
fn no_trust_bundle_fails_the_chain() {
    let h = Hierarchy::shared(Alg::P256);
    let set = Set::new(h.chain_pem(), Some(h.leaf.key.pkcs8_pem().as_bytes()), None);
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    assert_check_fails(&eval, "trust_bundle", "no_trust_bundle");
    assert_eq!(check(&eval, "chain").status, Status::Skip);
}

#[test]
fn client_only_leaf_fails_as_server_and_passes_as_client() {
    let h = Hierarchy::shared(Alg::P256);
    let leaf = h.intermediate.leaf(&LeafSpec::new(NAME).eku(Eku::Client));
    let set = Set::of(h, &leaf);
    let mut p = policy(&[NAME]);
    for usage in [Usage::Server, Usage::Both] {
        p.usage = usage;
        let eval = evaluate(&set.paths, &p);
        let f = assert_check_fails(&eval, "chain", "wrong_usage");
        assert!(
            f.to_string().contains("clientAuth") && f.to_string().contains("server"),
            "{f}"
        );
    }
    p.usage = Usage::Client;
    let eval = evaluate(&set.paths, &p);
    assert_passes_with_handshake(&eval);
    assert!(eval.handshake().unwrap().client_auth);
    // And the reverse: a server-only leaf is no client certificate.
    let server_only = h.intermediate.leaf(&LeafSpec::new(NAME).eku(Eku::Server));
    let eval = evaluate(&Set::of(h, &server_only).paths, &p);
    assert_check_fails(&eval, "chain", "wrong_usage");
}

#[test]
fn ca_certificate_as_leaf_is_refused() {
    let h = Hierarchy::shared(Alg::P256);
    let ca_leaf = h.intermediate.leaf(&LeafSpec::new(NAME).ca());
    let eval = evaluate(&Set::of(h, &ca_leaf).paths, &policy(&[NAME]));
    assert_check_fails(&eval, "chain", "ca_as_leaf");
    // The intermediate itself, with its own key, given as the serving certificate.
    let set = Set::new(
        &h.intermediate.cert_pem,
        Some(h.intermediate.key.pkcs8_pem().as_bytes()),
        Some(h.root.cert_pem.as_bytes()),
    );
    let eval = evaluate(&set.paths, &Policy::default());
    let f = assert_check_fails(&eval, "chain", "ca_as_leaf");
    assert!(f.to_string().contains("certgate test intermediate"), "{f}");
}

/// A leaf webpki refuses outright — an unknown critical extension, or over 64 KiB — fails once,
/// as `chain_invalid` naming what is refused (not `bad_encoding`: it is well-formed X.509), and
/// the key check says it cannot tell instead of failing as `unsupported_key`.
#[test]
fn leaf_webpki_refuses_fails_once_saying_why() {
    let h = Hierarchy::shared(Alg::P256);
    let unknown_critical =
        LeafSpec::new(NAME).extension(&[1, 3, 6, 1, 4, 1, 55555, 1], true, vec![5, 0]);
    // An OCTET STRING of 70 000 bytes in a non-critical extension: a valid, large certificate.
    let mut big = vec![0x04, 0x83, 0x01, 0x11, 0x70];
    big.resize(5 + 70_000, 0xab);
    let oversized = LeafSpec::new(NAME).extension(&[1, 3, 6, 1, 4, 1, 55555, 2], false, big);
    for (spec, says) in [
        (unknown_critical, "critical extension 1.3.6.1.4.1.55555.1"),
        (oversized, "over 64 KiB"),
    ] {
        let leaf = h.intermediate.leaf(&spec);
        let eval = evaluate(&Set::of(h, &leaf).paths, &policy(&[NAME]));
        let f = assert_check_fails(&eval, "chain", "chain_invalid");
        assert!(
            matches!(
                f,
                Failure::Unverifiable {
                    role: Role::Leaf,
                    ..
                }
            ),
            "{f:?}"
        );
        assert!(f.to_string().contains(says), "{f}");
        assert_eq!(eval.problems().len(), 1, "{}", describe(&eval));
        let key = check(&eval, "key");
        assert_eq!(key.status, Status::Skip, "{}", describe(&eval));
        assert!(key.message.contains("cannot tell"), "{}", key.message);
    }
}

/// A leaf whose keyUsage lacks digitalSignature is refused before any handshake, for every key
/// type, with a message saying who refuses it; without a keyUsage extension, or with
/// digitalSignature, it passes.
#[test]
fn leaf_key_usage_must_allow_signatures() {
    use crate::util::pki::KeyUsagePurpose as Ku;
    let h = Hierarchy::shared(Alg::P256);
    for (alg, says) in [
        (Alg::P256, "cannot use it for TLS 1.2"),
        (Alg::Ed25519, "cannot use it for TLS 1.2"),
        (Alg::Rsa2048, "static-RSA"),
    ] {
        let leaf = h.intermediate.leaf(
            &LeafSpec::new(NAME)
                .alg(alg)
                .key_usage(&[Ku::KeyEncipherment]),
        );
        let eval = evaluate(&Set::of(h, &leaf).paths, &policy(&[NAME]));
        let f = assert_check_fails(&eval, "key_usage", "key_usage");
        assert!(matches!(f, Failure::KeyUsage { .. }), "{f:?}");
        assert!(f.to_string().contains(says), "{alg:?}: {f}");
        assert_eq!(
            check(&eval, "chain").status,
            Status::Pass,
            "{}",
            describe(&eval)
        );
    }
    let mut client = policy(&[NAME]);
    client.usage = Usage::Client;
    let leaf = h
        .intermediate
        .leaf(&LeafSpec::new(NAME).key_usage(&[Ku::KeyAgreement]));
    let eval = evaluate(&Set::of(h, &leaf).paths, &client);
    let f = assert_check_fails(&eval, "key_usage", "key_usage");
    assert!(f.to_string().contains("CertificateVerify"), "{f}");
    for ku in [&[][..], &[Ku::DigitalSignature][..]] {
        let leaf = h.intermediate.leaf(&LeafSpec::new(NAME).key_usage(ku));
        for usage in [Usage::Server, Usage::Both] {
            let mut p = policy(&[NAME]);
            p.usage = usage;
            let eval = evaluate(&Set::of(h, &leaf).paths, &p);
            assert_passes_with_handshake(&eval);
            assert_eq!(check(&eval, "key_usage").status, Status::Pass);
        }
    }
}

/// A root OpenSSL will not use is named in the trust-bundle check, and refused when a chain
/// leads to it; the other roots of the bundle still serve.
#[test]
fn roots_openssl_refuses_are_warned_about_and_refused_when_used() {
    let h = Hierarchy::shared(Alg::P256);
    let bare = Ca::root_with("bare root", Alg::P256, |p| {
        p.is_ca = crate::util::pki::rcgen::IsCa::NoCa;
        p.key_usages.clear();
    });
    let bundle = format!("{}{}", h.root.cert_pem, bare.cert_pem);
    let set = Set::new(
        h.chain_pem(),
        Some(h.leaf.key.pkcs8_pem().as_bytes()),
        Some(bundle.as_bytes()),
    );
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    assert_passes_with_handshake(&eval);
    let trust = check(&eval, "trust_bundle");
    assert_eq!(trust.status, Status::Warn, "{}", describe(&eval));
    assert!(
        trust.message.contains("\"bare root\" will be refused")
            && trust.message.contains("no basicConstraints"),
        "{}",
        trust.message
    );
    let leaf = bare.leaf(&LeafSpec::new(NAME));
    let set = Set::new(
        &leaf.cert_pem,
        Some(leaf.key.pkcs8_pem().as_bytes()),
        Some(bundle.as_bytes()),
    );
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    let f = assert_check_fails(&eval, "chain", "chain_invalid");
    assert!(
        matches!(
            f,
            Failure::NonConforming {
                role: Role::Anchor,
                ..
            }
        ),
        "{f:?}"
    );
}
