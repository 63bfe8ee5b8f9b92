//! Key types and encodings that pass, and keys that are refused: another leaf's key,
//! encrypted keys, several keys in one file, a key too weak.

use certgate::labels::Reason;
use certgate::pipeline::inspect::Role;
use certgate::pipeline::load::KeyEncoding;
use certgate::pipeline::validate::{Failure, Status};

use crate::util::pki::{Alg, Hierarchy, LeafSpec};

use super::{
    assert_check_fails, assert_load_fails, assert_passes_with_handshake, check, describe, evaluate,
    policy, Set, NAME,
};

fn assert_key_type_passes(alg: Alg, algorithm: &str, bits: usize) {
    let h = Hierarchy::shared(alg);
    let eval = evaluate(&Set::of(h, &h.leaf).paths, &policy(&[NAME]));
    assert_passes_with_handshake(&eval);
    let key = eval.key().expect("key described");
    assert_eq!(key.algorithm, algorithm);
    assert_eq!(key.bits, bits);
    assert_eq!(key.encoding, KeyEncoding::Pkcs8);
    let leaf = eval.verdict().and_then(|v| v.leaf()).expect("leaf");
    assert_eq!(leaf.key_algorithm, algorithm);
    // The chain was built all the way to the anchor.
    let roles: Vec<Role> = eval
        .verdict()
        .unwrap()
        .chain()
        .iter()
        .map(|c| c.role)
        .collect();
    assert_eq!(roles, [Role::Leaf, Role::Intermediate, Role::Anchor]);
}

#[test]
fn ecdsa_p256_passes_with_the_self_handshake() {
    assert_key_type_passes(Alg::P256, "ECDSA P-256", 256);
}

#[test]
fn ecdsa_p384_passes_with_the_self_handshake() {
    assert_key_type_passes(Alg::P384, "ECDSA P-384", 384);
}

#[test]
fn ed25519_passes_with_the_self_handshake() {
    assert_key_type_passes(Alg::Ed25519, "Ed25519", 256);
}

#[test]
fn rsa_2048_passes_with_the_self_handshake() {
    assert_key_type_passes(Alg::Rsa2048, "RSA", 2048);
}

#[test]
fn every_key_encoding_passes_with_the_self_handshake() {
    let mut cases: Vec<(Alg, &str, Vec<u8>, KeyEncoding)> = Vec::new();
    for alg in [Alg::P256, Alg::P384] {
        let k = &Hierarchy::shared(alg).leaf.key;
        cases.push((
            alg,
            "PKCS#8 PEM",
            k.pkcs8_pem().into_bytes(),
            KeyEncoding::Pkcs8,
        ));
        cases.push((alg, "PKCS#8 DER", k.pkcs8_der.clone(), KeyEncoding::Pkcs8));
        cases.push((
            alg,
            "SEC1 PEM",
            k.sec1_pem().into_bytes(),
            KeyEncoding::Sec1,
        ));
        cases.push((alg, "SEC1 DER", k.sec1_der(), KeyEncoding::Sec1));
    }
    let k = &Hierarchy::shared(Alg::Ed25519).leaf.key;
    cases.push((
        Alg::Ed25519,
        "PKCS#8 PEM",
        k.pkcs8_pem().into_bytes(),
        KeyEncoding::Pkcs8,
    ));
    cases.push((
        Alg::Ed25519,
        "PKCS#8 DER",
        k.pkcs8_der.clone(),
        KeyEncoding::Pkcs8,
    ));
    let k = &Hierarchy::shared(Alg::Rsa2048).leaf.key;
    cases.push((
        Alg::Rsa2048,
        "PKCS#8 PEM",
        k.pkcs8_pem().into_bytes(),
        KeyEncoding::Pkcs8,
    ));
    cases.push((
        Alg::Rsa2048,
        "PKCS#8 DER",
        k.pkcs8_der.clone(),
        KeyEncoding::Pkcs8,
    ));
    cases.push((
        Alg::Rsa2048,
        "PKCS#1 PEM",
        k.pkcs1_pem().into_bytes(),
        KeyEncoding::Pkcs1,
    ));
    cases.push((
        Alg::Rsa2048,
        "PKCS#1 DER",
        k.pkcs1_der(),
        KeyEncoding::Pkcs1,
    ));

    for (alg, what, key, encoding) in cases {
        let h = Hierarchy::shared(alg);
        let set = Set::new(h.chain_pem(), Some(&key), Some(h.root.cert_pem.as_bytes()));
        let eval = evaluate(&set.paths, &policy(&[NAME]));
        assert!(eval.passed(), "{alg:?} {what}: {}", describe(&eval));
        assert_passes_with_handshake(&eval);
        assert_eq!(
            eval.key().map(|k| k.encoding),
            Some(encoding),
            "{alg:?} {what}"
        );
    }
}

#[test]
fn key_of_another_leaf_fails_as_key_mismatch() {
    let h = Hierarchy::shared(Alg::P256);
    let other = h.intermediate.leaf(&LeafSpec::new(NAME));
    for (what, key) in [
        ("same algorithm", other.key.pkcs8_pem()),
        (
            "another algorithm",
            Hierarchy::shared(Alg::Ed25519).leaf.key.pkcs8_pem(),
        ),
        (
            "another curve",
            Hierarchy::shared(Alg::P384).leaf.key.sec1_pem(),
        ),
    ] {
        let set = Set::new(
            h.chain_pem(),
            Some(key.as_bytes()),
            Some(h.root.cert_pem.as_bytes()),
        );
        let eval = evaluate(&set.paths, &policy(&[NAME]));
        let f = assert_check_fails(&eval, "key", "key_mismatch");
        assert_eq!(*f, Failure::KeyMismatch, "{what}");
        assert_eq!(check(&eval, "handshake").status, Status::Skip, "{what}");
    }
}

#[test]
fn encrypted_keys_are_refused_with_a_clear_reason() {
    let h = Hierarchy::shared(Alg::P256);
    for (what, key) in [
        ("PKCS#8", h.leaf.key.encrypted_pkcs8_pem()),
        ("legacy OpenSSL", h.leaf.key.legacy_encrypted_pem()),
    ] {
        let set = Set::new(
            h.chain_pem(),
            Some(key.as_bytes()),
            Some(h.root.cert_pem.as_bytes()),
        );
        let eval = evaluate(&set.paths, &policy(&[NAME]));
        let key_path = set.paths.key.as_ref().unwrap();
        let msg = assert_load_fails(&eval, "encrypted_key", key_path);
        assert!(
            msg.contains("encrypted private keys are not supported"),
            "{what}: {msg}"
        );
    }
}

#[test]
fn several_keys_in_one_file_are_refused() {
    let h = Hierarchy::shared(Alg::P256);
    let other = h.intermediate.leaf(&LeafSpec::new(NAME));
    let keys = format!("{}{}", h.leaf.key.pkcs8_pem(), other.key.pkcs8_pem());
    let set = Set::new(
        h.chain_pem(),
        Some(keys.as_bytes()),
        Some(h.root.cert_pem.as_bytes()),
    );
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    let msg = assert_load_fails(&eval, "several_keys", set.paths.key.as_ref().unwrap());
    assert!(msg.contains("2 private keys"), "{msg}");
}

#[test]
fn rsa_1024_leaf_is_refused_as_weak() {
    let h = Hierarchy::shared(Alg::P256);
    let weak = h.intermediate.leaf(&LeafSpec::new(NAME).alg(Alg::Rsa1024));
    // Without the key, only the strength check speaks.
    let set = Set::new(
        h.chain_pem_of(&weak),
        None,
        Some(h.root.cert_pem.as_bytes()),
    );
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    let f = assert_check_fails(&eval, "strength", "weak_key");
    assert!(
        matches!(
            f,
            Failure::WeakKey {
                role: Role::Leaf,
                bits: 1024,
                ..
            }
        ),
        "{f:?}"
    );
    assert_eq!(eval.first_reason(), Some(Reason::WeakKey));
    // With its key, which rustls refuses to sign with, the key check fails as well.
    let eval = evaluate(&Set::of(h, &weak).paths, &policy(&[NAME]));
    assert_check_fails(&eval, "strength", "weak_key");
    let f = assert_check_fails(&eval, "key", "unsupported_key");
    assert!(f.to_string().contains("2048"), "{f}");
}
