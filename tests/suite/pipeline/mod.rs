//! Library-level pipeline tests: `certgate::pipeline` called directly on a PKI minted at run
//! time (root → intermediate → leaf), with `now` passed in.

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certgate::labels::Reason;
use certgate::pipeline::inspect::{inspect_cert, Role};
use certgate::pipeline::load::{
    self, FileRole, KeyEncoding, LoadError, RawSet, SourcePaths, DEFAULT_MAX_FILE_SIZE,
};
use certgate::pipeline::validate::{self, Check, ExpectedName, Failure, Policy, Status, Usage};
use certgate::pipeline::{self, EvalOptions, Evaluation};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::util::kubelet::atomic_write;
use crate::util::pki::{pem, Alg, Ca, Eku, Hierarchy, Leaf, LeafSpec};

const NAME: &str = "web.example.com";

// === helpers ===

/// One set's files in their own temp dir.
struct Set {
    _dir: tempfile::TempDir,
    paths: SourcePaths,
}

impl Set {
    fn new(cert: impl AsRef<[u8]>, key: Option<&[u8]>, trust: Option<&[u8]>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).expect("write test file");
            p
        };
        let paths = SourcePaths {
            cert: write("tls.crt", cert.as_ref()),
            key: key.map(|k| write("tls.key", k)),
            trust: trust.map(|t| write("ca.crt", t)),
        };
        Self { _dir: dir, paths }
    }

    /// `leaf` + the hierarchy's intermediate, `leaf`'s PKCS#8 key, the hierarchy's root.
    fn of(h: &Hierarchy, leaf: &Leaf) -> Self {
        Self::new(
            h.chain_pem_of(leaf),
            Some(leaf.key.pkcs8_pem().as_bytes()),
            Some(h.root.cert_pem.as_bytes()),
        )
    }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn policy(names: &[&str]) -> Policy {
    Policy {
        names: names
            .iter()
            .map(|n| ExpectedName::parse(n).expect("valid expected name"))
            .collect(),
        ..Policy::default()
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn evaluate_at(paths: &SourcePaths, policy: &Policy, now: i64) -> Evaluation {
    block_on(pipeline::evaluate(
        paths,
        policy,
        &EvalOptions::default(),
        now,
    ))
}

fn evaluate(paths: &SourcePaths, policy: &Policy) -> Evaluation {
    evaluate_at(paths, policy, now())
}

fn describe(eval: &Evaluation) -> String {
    let mut out = format!("passed={} ", eval.passed());
    for p in eval.problems() {
        out.push_str(&format!("\n  {}: {}", p.reason, p.message));
    }
    if let Some(v) = eval.verdict() {
        for c in v.checks() {
            out.push_str(&format!("\n  [{:?}] {}: {}", c.status, c.check, c.message));
        }
    }
    out
}

fn check<'a>(eval: &'a Evaluation, name: &str) -> &'a Check {
    eval.verdict()
        .and_then(|v| v.checks().iter().find(|c| c.check == name))
        .unwrap_or_else(|| panic!("no {name} check: {}", describe(eval)))
}

/// Passed every stage, including a self-handshake that really ran.
fn assert_passes_with_handshake(eval: &Evaluation) {
    assert!(eval.passed(), "{}", describe(eval));
    assert_eq!(eval.first_reason(), None, "{}", describe(eval));
    assert_eq!(check(eval, "handshake").status, Status::Pass);
    let hs = eval.handshake().expect("handshake report");
    assert!(hs.protocol.starts_with("TLSv1_"), "{hs:?}");
    assert!(!hs.cipher_suite.is_empty(), "{hs:?}");
}

/// Failed, and check `name` failed with the stable label `reason` (its [`Failure`] agrees).
fn assert_check_fails<'a>(eval: &'a Evaluation, name: &str, reason: &str) -> &'a Failure {
    assert!(!eval.passed(), "{}", describe(eval));
    let c = check(eval, name);
    assert_eq!(c.status, Status::Fail, "{}", describe(eval));
    assert_eq!(
        c.reason.map(Reason::as_str),
        Some(reason),
        "{}",
        describe(eval)
    );
    let failure = c.failure().expect("a failed check carries its failure");
    assert_eq!(failure.reason().as_str(), reason);
    assert_eq!(failure.to_string(), c.message);
    assert!(
        eval.problems().iter().any(|p| p.reason.as_str() == reason),
        "{}",
        describe(eval)
    );
    // Validation failed, so nothing was proven or may be published.
    assert!(eval.handshake().is_none(), "{}", describe(eval));
    failure
}

/// Loading failed with the stable label `reason`; the message names `path`.
fn assert_load_fails(eval: &Evaluation, reason: &str, path: &Path) -> String {
    assert!(!eval.passed(), "{}", describe(eval));
    let p = eval.load_error().expect("a load error");
    assert_eq!(p.reason.as_str(), reason, "{}", describe(eval));
    assert_eq!(eval.first_reason().map(Reason::as_str), Some(reason));
    assert!(
        p.message.contains(&path.display().to_string()),
        "message names the file: {}",
        p.message
    );
    assert!(eval.verdict().is_none());
    p.message.clone()
}

fn not_after(cert_der: &[u8]) -> i64 {
    inspect_cert(&CertificateDer::from(cert_der), 0)
        .expect("parses")
        .not_after
}

fn not_before(cert_der: &[u8]) -> i64 {
    inspect_cert(&CertificateDer::from(cert_der), 0)
        .expect("parses")
        .not_before
}

fn sha256_hex(bytes: &[u8]) -> String {
    certgate::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hours(n: i64) -> time::Duration {
    time::Duration::hours(n)
}

// === good material: key types and encodings ===

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
fn crlf_pem_files_pass() {
    let h = Hierarchy::shared(Alg::P256);
    let crlf = |s: &str| s.replace('\n', "\r\n");
    let set = Set::new(
        crlf(&h.chain_pem()),
        Some(crlf(&h.leaf.key.pkcs8_pem()).as_bytes()),
        Some(crlf(&h.root.cert_pem).as_bytes()),
    );
    assert!(std::fs::read(&set.paths.cert)
        .unwrap()
        .windows(2)
        .any(|w| w == b"\r\n"));
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    assert_passes_with_handshake(&eval);
    assert_eq!(eval.verdict().unwrap().chain().len(), 3);
}

#[test]
fn der_certificate_and_bundle_files_pass() {
    // A DER file holds one certificate, so the leaf is issued by the root directly.
    let root = &Hierarchy::shared(Alg::P256).root;
    let leaf = root.leaf(&LeafSpec::new(NAME));
    let set = Set::new(
        &leaf.cert_der,
        Some(leaf.key.pkcs8_pem().as_bytes()),
        Some(&root.cert_der),
    );
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    assert_passes_with_handshake(&eval);
    let chain = eval.verdict().as_ref().unwrap().chain();
    assert_eq!(chain.len(), 2, "leaf → anchor");
    assert_eq!(chain[0].fingerprint_sha256, sha256_hex(&leaf.cert_der));
}

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
fn one_file_holding_chain_and_key_serves_as_both() {
    let h = Hierarchy::shared(Alg::P256);
    let combined = format!("{}{}", h.chain_pem(), h.leaf.key.pkcs8_pem());
    let mut set = Set::new(&combined, None, Some(h.root.cert_pem.as_bytes()));
    set.paths.key = Some(set.paths.cert.clone());
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    assert_passes_with_handshake(&eval);
    assert_eq!(eval.verdict().unwrap().chain().len(), 3);
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

// === names ===

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

// === time ===

#[test]
fn expired_leaf_fails_as_expired() {
    let h = Hierarchy::shared(Alg::P256);
    let t = OffsetDateTime::now_utc();
    let leaf = h
        .intermediate
        .leaf(&LeafSpec::new(NAME).valid(t - hours(24 * 30), t - hours(1)));
    let eval = evaluate(&Set::of(h, &leaf).paths, &policy(&[NAME]));
    let f = assert_check_fails(&eval, "chain", "expired");
    assert!(
        matches!(
            f,
            Failure::Expired {
                role: Role::Leaf,
                ..
            }
        ),
        "{f:?}"
    );
    assert_check_fails(&eval, "validity", "expired");
    assert_eq!(eval.first_reason(), Some(Reason::Expired));
    let v = eval.verdict().unwrap();
    assert_eq!(v.effective_expiry(), Some(not_after(&leaf.cert_der)));
    assert!(v.remaining_seconds().unwrap() < 0);
}

#[test]
fn not_yet_valid_leaf_fails_as_not_yet_valid() {
    let h = Hierarchy::shared(Alg::P256);
    let t = OffsetDateTime::now_utc();
    let leaf = h
        .intermediate
        .leaf(&LeafSpec::new(NAME).valid(t + hours(1), t + hours(24 * 30)));
    let eval = evaluate(&Set::of(h, &leaf).paths, &policy(&[NAME]));
    let f = assert_check_fails(&eval, "chain", "not_yet_valid");
    assert!(
        matches!(
            f,
            Failure::NotYetValid {
                role: Role::Leaf,
                ..
            }
        ),
        "{f:?}"
    );
    assert_check_fails(&eval, "validity", "not_yet_valid");
}

#[test]
fn expired_intermediate_sets_the_effective_expiry() {
    let t = OffsetDateTime::now_utc();
    let h = Hierarchy::shared(Alg::P256);
    let inter = h.root.intermediate_valid(
        "expired intermediate",
        Alg::P256,
        t - hours(24 * 400),
        t - hours(2),
    );
    let leaf = inter.leaf(&LeafSpec::new(NAME));
    let set = Set::new(
        format!("{}{}", leaf.cert_pem, inter.cert_pem),
        Some(leaf.key.pkcs8_pem().as_bytes()),
        Some(h.root.cert_pem.as_bytes()),
    );
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    let f = assert_check_fails(&eval, "chain", "expired");
    match f {
        Failure::Expired {
            role,
            subject,
            not_after: at,
            ..
        } => {
            assert_eq!(*role, Role::Intermediate);
            assert!(subject.contains("expired intermediate"), "{subject}");
            assert_eq!(*at, not_after(&inter.cert_der));
        }
        other => panic!("{other:?}"),
    }
    let v = eval.verdict().unwrap();
    assert_eq!(v.effective_expiry(), Some(not_after(&inter.cert_der)));
    assert!(v.effective_expiry() < Some(not_after(&leaf.cert_der)));
}

#[test]
fn intermediate_expiring_before_the_leaf_bounds_the_effective_expiry() {
    let t = OffsetDateTime::now_utc();
    let h = Hierarchy::shared(Alg::P256);
    let inter = h.root.intermediate_valid(
        "short intermediate",
        Alg::P256,
        t - hours(24),
        t + hours(48),
    );
    let leaf = inter.leaf(&LeafSpec::new(NAME)); // 30 days
    let set = Set::new(
        format!("{}{}", leaf.cert_pem, inter.cert_pem),
        Some(leaf.key.pkcs8_pem().as_bytes()),
        Some(h.root.cert_pem.as_bytes()),
    );
    let now = now();
    let eval = evaluate_at(&set.paths, &policy(&[NAME]), now);
    assert_passes_with_handshake(&eval);
    let v = eval.verdict().unwrap();
    assert_eq!(v.effective_expiry(), Some(not_after(&inter.cert_der)));
    assert_eq!(
        v.remaining_seconds(),
        Some(not_after(&inter.cert_der) - now)
    );
    // Three days of margin is more than the intermediate has left, though the leaf has 30.
    let mut p = policy(&[NAME]);
    p.min_remaining = Duration::from_secs(3 * 86_400);
    let eval = evaluate_at(&set.paths, &p, now);
    let f = assert_check_fails(&eval, "validity", "expiring_soon");
    assert!(
        matches!(f, Failure::ExpiringSoon { expiry, .. } if *expiry == not_after(&inter.cert_der)),
        "{f:?}"
    );
}

#[test]
fn expiring_within_min_remaining_fails_as_expiring_soon() {
    let t = OffsetDateTime::now_utc();
    let h = Hierarchy::shared(Alg::P256);
    let leaf = h
        .intermediate
        .leaf(&LeafSpec::new(NAME).valid(t - hours(1), t + hours(5)));
    let set = Set::of(h, &leaf);
    let mut p = policy(&[NAME]);
    p.min_remaining = Duration::from_secs(6 * 3600);
    let eval = evaluate(&set.paths, &p);
    let f = assert_check_fails(&eval, "validity", "expiring_soon");
    assert!(f.to_string().contains("within min_remaining"), "{f}");
    // Everything else holds: only the margin is short.
    assert_eq!(check(&eval, "chain").status, Status::Pass);
    p.min_remaining = Duration::from_secs(4 * 3600);
    assert_passes_with_handshake(&evaluate(&set.paths, &p));
}

#[test]
fn evaluation_time_is_a_parameter() {
    let h = Hierarchy::shared(Alg::P256);
    let set = Set::of(h, &h.leaf);
    let (nb, na) = (not_before(&h.leaf.cert_der), not_after(&h.leaf.cert_der));
    let p = policy(&[NAME]);
    // A currently valid leaf, evaluated after its not-after: expired.
    let eval = evaluate_at(&set.paths, &p, na + 1);
    let f = assert_check_fails(&eval, "chain", "expired");
    assert!(
        matches!(f, Failure::Expired { now, .. } if *now == na + 1),
        "{f:?}"
    );
    assert_eq!(eval.verdict().unwrap().now(), na + 1);
    // … and before its not-before: not yet valid.
    let eval = evaluate_at(&set.paths, &p, nb - 1);
    assert_check_fails(&eval, "chain", "not_yet_valid");
    // … and just inside both ends: fine.
    assert!(evaluate_at(&set.paths, &p, na - 1).passed());
    assert!(evaluate_at(&set.paths, &p, nb + 1).passed());
}

// === chain, usage, strength ===

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

// === keys ===

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

// === files ===

#[test]
fn empty_files_are_refused_naming_the_file() {
    let h = Hierarchy::shared(Alg::P256);
    let (chain, key, root) = (
        h.chain_pem(),
        h.leaf.key.pkcs8_pem(),
        h.root.cert_pem.clone(),
    );
    let cases: [(FileRole, Set); 3] = [
        (
            FileRole::Cert,
            Set::new("", Some(key.as_bytes()), Some(root.as_bytes())),
        ),
        (
            FileRole::Key,
            Set::new(&chain, Some(b" \n\t\n"), Some(root.as_bytes())),
        ),
        (
            FileRole::Trust,
            Set::new(&chain, Some(key.as_bytes()), Some(b"\r\n")),
        ),
    ];
    for (role, set) in cases {
        let path = set
            .paths
            .iter()
            .find(|(r, _)| *r == role)
            .unwrap()
            .1
            .to_path_buf();
        let eval = evaluate(&set.paths, &policy(&[NAME]));
        let msg = assert_load_fails(&eval, "empty", &path);
        assert!(msg.contains("empty"), "{role}: {msg}");
        // The file was read: its hash is reported even though it was refused.
        assert_eq!(eval.files().len(), 3, "{role}");
    }
}

#[test]
fn garbage_files_are_refused() {
    let h = Hierarchy::shared(Alg::P256);
    let (chain, key, root) = (
        h.chain_pem(),
        h.leaf.key.pkcs8_pem(),
        h.root.cert_pem.clone(),
    );
    let mut rng = SplitMix(7);
    let mut binary = rng.bytes(700);
    binary[0] = b'G'; // not shaped like DER (a SEQUENCE starts with 0x30)
    let bad_base64 = "-----BEGIN CERTIFICATE-----\nnot*base64!\n-----END CERTIFICATE-----\n";
    let bad_der = pem("CERTIFICATE", b"\x30\x03\x02\x01\x05");
    let cases: Vec<(&str, Set, FileRole, &str)> = vec![
        (
            "binary cert",
            Set::new(&binary, Some(key.as_bytes()), Some(root.as_bytes())),
            FileRole::Cert,
            "no_certificate",
        ),
        (
            "text cert",
            Set::new(
                "hello, world\n",
                Some(key.as_bytes()),
                Some(root.as_bytes()),
            ),
            FileRole::Cert,
            "no_certificate",
        ),
        (
            "bad base64 cert",
            Set::new(bad_base64, Some(key.as_bytes()), Some(root.as_bytes())),
            FileRole::Cert,
            "bad_encoding",
        ),
        (
            "binary key",
            Set::new(&chain, Some(&binary), Some(root.as_bytes())),
            FileRole::Key,
            "no_key",
        ),
        (
            "binary bundle",
            Set::new(&chain, Some(key.as_bytes()), Some(&binary)),
            FileRole::Trust,
            "no_certificate",
        ),
        (
            "bytes after the last PEM block",
            Set::new(
                format!("{chain}trailing junk\n"),
                Some(key.as_bytes()),
                Some(root.as_bytes()),
            ),
            FileRole::Cert,
            "bad_encoding",
        ),
    ];
    for (what, set, role, reason) in cases {
        let path = set
            .paths
            .iter()
            .find(|(r, _)| *r == role)
            .unwrap()
            .1
            .to_path_buf();
        let eval = evaluate(&set.paths, &policy(&[NAME]));
        assert_eq!(
            eval.first_reason().map(Reason::as_str),
            Some(reason),
            "{what}: {}",
            describe(&eval)
        );
        assert_load_fails(&eval, reason, &path);
    }
    // PEM framing around bytes that are no certificate: loads, then validation refuses it.
    let set = Set::new(&bad_der, Some(key.as_bytes()), Some(root.as_bytes()));
    let eval = evaluate(&set.paths, &policy(&[NAME]));
    let f = assert_check_fails(&eval, "chain", "bad_encoding");
    assert!(
        f.to_string()
            .contains(&set.paths.cert.display().to_string()),
        "{f}"
    );
}

#[test]
fn truncated_files_are_refused() {
    let h = Hierarchy::shared(Alg::P256);
    let (chain, key, root) = (
        h.chain_pem(),
        h.leaf.key.pkcs8_pem(),
        h.root.cert_pem.clone(),
    );
    // Cut inside the last block's base64, before its END line.
    let cut = |s: &str| s[..s.len() - 40].to_string();
    let cases: Vec<(&str, Set, FileRole)> = vec![
        (
            "PEM chain",
            Set::new(cut(&chain), Some(key.as_bytes()), Some(root.as_bytes())),
            FileRole::Cert,
        ),
        (
            "PEM key",
            Set::new(&chain, Some(cut(&key).as_bytes()), Some(root.as_bytes())),
            FileRole::Key,
        ),
        (
            "PEM bundle",
            Set::new(&chain, Some(key.as_bytes()), Some(cut(&root).as_bytes())),
            FileRole::Trust,
        ),
        (
            "DER certificate",
            Set::new(
                &h.leaf.cert_der[..h.leaf.cert_der.len() - 20],
                Some(key.as_bytes()),
                Some(root.as_bytes()),
            ),
            FileRole::Cert,
        ),
    ];
    for (what, set, role) in cases {
        let path = set
            .paths
            .iter()
            .find(|(r, _)| *r == role)
            .unwrap()
            .1
            .to_path_buf();
        let eval = evaluate(&set.paths, &policy(&[NAME]));
        let msg = assert_load_fails(&eval, "bad_encoding", &path);
        assert!(msg.contains("truncated"), "{what}: {msg}");
    }
}

#[test]
fn swapped_cert_and_key_are_named_as_swapped() {
    let h = Hierarchy::shared(Alg::P256);
    let (chain, key, root) = (
        h.chain_pem(),
        h.leaf.key.pkcs8_pem(),
        h.root.cert_pem.clone(),
    );
    // Both swapped: the cert file (read first) holds the key.
    let set = Set::new(&key, Some(chain.as_bytes()), Some(root.as_bytes()));
    let msg = assert_load_fails(
        &evaluate(&set.paths, &policy(&[NAME])),
        "swapped",
        &set.paths.cert,
    );
    assert!(msg.contains("swapped?"), "{msg}");
    // Only the key path points at the chain.
    let set = Set::new(&chain, Some(chain.as_bytes()), Some(root.as_bytes()));
    let msg = assert_load_fails(
        &evaluate(&set.paths, &policy(&[NAME])),
        "swapped",
        set.paths.key.as_ref().unwrap(),
    );
    assert!(msg.contains("swapped?"), "{msg}");
    // DER, either way round.
    let set = Set::new(
        &h.leaf.key.pkcs8_der,
        Some(&h.leaf.cert_der),
        Some(root.as_bytes()),
    );
    assert_load_fails(
        &evaluate(&set.paths, &policy(&[NAME])),
        "swapped",
        &set.paths.cert,
    );
    let set = Set::new(
        &h.leaf.cert_der,
        Some(&h.leaf.cert_der),
        Some(root.as_bytes()),
    );
    assert_load_fails(
        &evaluate(&set.paths, &policy(&[NAME])),
        "swapped",
        set.paths.key.as_ref().unwrap(),
    );
}

#[test]
fn missing_files_are_refused_naming_the_file() {
    let h = Hierarchy::shared(Alg::P256);
    let mut set = Set::of(h, &h.leaf);
    let gone = set.paths.cert.with_file_name("nope.key");
    set.paths.key = Some(gone.clone());
    let msg = assert_load_fails(&evaluate(&set.paths, &policy(&[NAME])), "missing", &gone);
    assert!(msg.contains("not found"), "{msg}");
}

/// Bytes this thread has read through read(2) and friends so far (`rchar`), when the kernel
/// keeps per-thread I/O accounting.
fn thread_rchar() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/io").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn oversized_file_is_refused_after_reading_at_most_cap_plus_one_bytes() {
    let h = Hierarchy::shared(Alg::P256);
    let set = Set::of(h, &h.leaf);
    // A sparse terabyte: reading it whole would take minutes and all memory.
    let huge = set.paths.cert.with_file_name("huge.crt");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let paths = SourcePaths {
        cert: huge.clone(),
        key: None,
        trust: None,
    };
    let cap = 64 * 1024;

    let before = thread_rchar();
    let err = load::read_set(&paths, cap).expect_err("refused");
    let after = thread_rchar();
    assert_eq!(err.reason().as_str(), "too_large");
    assert_eq!(err.path(), huge.as_path());
    assert!(
        err.to_string().contains(&format!("{cap}-byte limit")),
        "{err}"
    );
    if let (Some(before), Some(after)) = (before, after) {
        // cap + 1 from the file, plus the first /proc read's own few hundred bytes.
        let read = after - before;
        assert!(
            read > cap && read <= cap + 1 + 4096,
            "read {read} bytes for a {cap}-byte cap"
        );
    }

    // The boundary: exactly `cap` bytes is within the limit, one more is not.
    let at_cap = set.paths.cert.with_file_name("at_cap.crt");
    std::fs::write(&at_cap, vec![b'\n'; cap as usize]).unwrap();
    let one_more = set.paths.cert.with_file_name("one_more.crt");
    std::fs::write(&one_more, vec![b'\n'; cap as usize + 1]).unwrap();
    let read = |p: &Path| load::snapshot(FileRole::Cert, p, cap).map(|s| s.bytes().len());
    assert_eq!(read(&at_cap).expect("cap bytes are fine"), cap as usize);
    assert_eq!(
        read(&one_more).expect_err("cap + 1 is too large").reason(),
        Reason::TooLarge
    );

    // Through the whole pipeline: the cap in EvalOptions applies to every role.
    let opts = EvalOptions {
        max_file_size: (h.chain_pem().len() - 1) as u64,
        ..EvalOptions::default()
    };
    let eval = block_on(pipeline::evaluate(
        &set.paths,
        &policy(&[NAME]),
        &opts,
        now(),
    ));
    assert_load_fails(&eval, "too_large", &set.paths.cert);
}

#[test]
fn fifo_and_directory_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("tls.crt");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo on a path in our own temp dir.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let sub = dir.path().join("ca.crt");
    std::fs::create_dir(&sub).unwrap();

    for (path, kind) in [(fifo, "FIFO"), (sub, "directory")] {
        let paths = SourcePaths {
            cert: path.clone(),
            key: None,
            trust: None,
        };
        // Nobody ever opens the FIFO for writing: a blocking open or read would never return.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(load::read_set(&paths, DEFAULT_MAX_FILE_SIZE));
        });
        let result = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("reading a {kind} blocked"));
        let err = result.expect_err("refused");
        assert_eq!(err.reason().as_str(), "unreadable", "{kind}");
        assert!(
            matches!(err, LoadError::NotRegularFile { .. }),
            "{kind}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(kind) && msg.contains(&path.display().to_string()),
            "{msg}"
        );
    }
}

// === the `..data` generation-consistent read ===

const FILES: [(&str, FileRole); 3] = [
    ("tls.crt", FileRole::Cert),
    ("tls.key", FileRole::Key),
    ("ca.crt", FileRole::Trust),
];

/// A kubelet-style volume whose generation `n` holds `gen n <file>` in every file.
struct Volume {
    dir: tempfile::TempDir,
    next: u32,
}

impl Volume {
    fn new() -> Self {
        let mut v = Self {
            dir: tempfile::tempdir().unwrap(),
            next: 0,
        };
        v.rotate();
        v
    }

    fn content(n: u32, file: &str) -> Vec<u8> {
        format!("gen {n} {file}\n").into_bytes()
    }

    /// Commits the next generation, kubelet-style (the previous one is removed).
    fn rotate(&mut self) -> u32 {
        let n = self.next;
        self.next += 1;
        let files: Vec<(&str, Vec<u8>)> = FILES
            .iter()
            .map(|(f, _)| (*f, Self::content(n, f)))
            .collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(f, b)| (*f, b.as_slice())).collect();
        atomic_write(self.dir.path(), &refs);
        n
    }

    /// Commits the next generation but leaves the previous one on disk (kubelet not done yet).
    fn rotate_keeping_the_old(&mut self) -> u32 {
        let n = self.next;
        self.next += 1;
        let name = format!("..gen_{n}");
        let gen = self.dir.path().join(&name);
        std::fs::create_dir(&gen).unwrap();
        for (f, _) in FILES {
            std::fs::write(gen.join(f), Self::content(n, f)).unwrap();
        }
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
        n
    }

    fn paths(&self) -> SourcePaths {
        let p = |f: &str| self.dir.path().join(f);
        SourcePaths {
            cert: p("tls.crt"),
            key: Some(p("tls.key")),
            trust: Some(p("ca.crt")),
        }
    }

    fn data(&self) -> String {
        std::fs::read_link(self.dir.path().join("..data"))
            .unwrap()
            .display()
            .to_string()
    }
}

/// Every file of `set` comes from one generation, the one recorded on each snapshot, which
/// `..data` names now; returns that generation's number.
fn assert_one_generation(set: &RawSet, vol: &Volume) -> u32 {
    let gens: Vec<u32> = set
        .files()
        .map(|s| {
            let text = String::from_utf8(s.bytes().to_vec()).unwrap();
            let mut words = text.split_whitespace();
            assert_eq!(words.next(), Some("gen"));
            let n: u32 = words.next().unwrap().parse().unwrap();
            let file = FILES.iter().find(|(_, r)| *r == s.role).unwrap().0;
            assert_eq!(
                words.next(),
                Some(file),
                "{:?} holds the {file} content",
                s.role
            );
            assert_eq!(s.sha256, sha256_hex(s.bytes()));
            n
        })
        .collect();
    assert_eq!(gens.len(), 3);
    assert!(
        gens.iter().all(|g| *g == gens[0]),
        "mixed generations: {gens:?}"
    );
    let recorded: Vec<_> = set.files().map(|s| s.generation.clone()).collect();
    assert!(
        recorded.iter().all(|g| *g == Some(vol.data())),
        "{recorded:?} vs {}",
        vol.data()
    );
    gens[0]
}

#[test]
fn data_swap_between_reads_rereads_the_new_generation_whole() {
    for after in [FileRole::Cert, FileRole::Key] {
        let mut vol = Volume::new();
        let mut swaps = Vec::new();
        let mut reads = 0;
        let set = load::read_set_observed(&vol.paths(), DEFAULT_MAX_FILE_SIZE, &mut |role| {
            reads += 1;
            if role == after && swaps.is_empty() {
                swaps.push(vol.rotate());
            }
        })
        .expect("consistent after a retry");
        assert_eq!(assert_one_generation(&set, &vol), swaps[0], "after {after}");
        assert!(
            reads > 3,
            "the set was read again after the swap ({reads} reads)"
        );
    }
}

#[test]
fn data_swap_after_the_last_read_is_caught() {
    let mut vol = Volume::new();
    let mut swapped = None;
    let set = load::read_set_observed(&vol.paths(), DEFAULT_MAX_FILE_SIZE, &mut |role| {
        if role == FileRole::Trust && swapped.is_none() {
            swapped = Some(vol.rotate());
        }
    })
    .expect("consistent after a retry");
    // Every file had been read from generation 0 when it moved; the result is generation 1.
    assert_eq!(assert_one_generation(&set, &vol), swapped.unwrap());
}

#[test]
fn data_swap_that_keeps_the_old_generation_is_caught() {
    let mut vol = Volume::new();
    let mut swapped = None;
    let set = load::read_set_observed(&vol.paths(), DEFAULT_MAX_FILE_SIZE, &mut |role| {
        if role == FileRole::Cert && swapped.is_none() {
            swapped = Some(vol.rotate_keeping_the_old());
        }
    })
    .expect("consistent after a retry");
    assert_eq!(assert_one_generation(&set, &vol), swapped.unwrap());
}

#[test]
fn paths_through_data_itself_are_pinned_too() {
    // `--cert /vol/..data/tls.crt` goes through the symlink kubelet swaps: each open could land
    // in a different generation unless the read is pinned like the user-visible paths.
    let mut vol = Volume::new();
    let through = |f: &str| vol.dir.path().join("..data").join(f);
    let paths = SourcePaths {
        cert: through("tls.crt"),
        key: Some(through("tls.key")),
        trust: Some(through("ca.crt")),
    };
    let mut swapped = None;
    let set = load::read_set_observed(&paths, DEFAULT_MAX_FILE_SIZE, &mut |role| {
        if role == FileRole::Cert && swapped.is_none() {
            swapped = Some(vol.rotate());
        }
    })
    .expect("consistent after a retry");
    assert_eq!(assert_one_generation(&set, &vol), swapped.unwrap());
}

#[test]
fn data_that_never_settles_is_an_error_not_a_mix() {
    let mut vol = Volume::new();
    let dir = vol.dir.path().to_path_buf();
    let err = load::read_set_observed(&vol.paths(), DEFAULT_MAX_FILE_SIZE, &mut |_| {
        vol.rotate();
    })
    .expect_err("never consistent");
    assert_eq!(err.reason().as_str(), "generation_unstable");
    assert_eq!(err.path(), dir.as_path());
    assert!(
        err.to_string().contains("rotation still in progress"),
        "{err}"
    );
}

#[test]
fn data_swaps_at_random_points_never_yield_a_mixed_set() {
    let mut rng = SplitMix(0x5eed);
    let (mut consistent, mut unstable, mut total_swaps) = (0, 0, 0);
    for round in 0..60 {
        let mut vol = Volume::new();
        let keep_old = round % 3 == 0;
        let mut swaps_left = rng.below(6);
        let p = rng.below(100);
        let result = load::read_set_observed(&vol.paths(), DEFAULT_MAX_FILE_SIZE, &mut |_| {
            if swaps_left > 0 && rng.below(100) < p {
                swaps_left -= 1;
                total_swaps += 1;
                if keep_old {
                    vol.rotate_keeping_the_old();
                } else {
                    vol.rotate();
                }
            }
        });
        match result {
            Ok(set) => {
                let n = assert_one_generation(&set, &vol);
                assert_eq!(n, vol.next - 1, "round {round}: the newest generation");
                consistent += 1;
            }
            Err(e) => {
                assert_eq!(
                    e.reason().as_str(),
                    "generation_unstable",
                    "round {round}: {e}"
                );
                unstable += 1;
            }
        }
    }
    assert!(total_swaps > 30, "the rounds did swap ({total_swaps})");
    assert!(
        consistent > 0,
        "{consistent} consistent, {unstable} unstable"
    );
}

#[test]
fn data_swap_mid_read_still_validates_the_new_pair() {
    // Real material: without pinning, cert A with key B would be a key mismatch.
    let h = Hierarchy::shared(Alg::P256);
    let (a, b) = (&h.leaf, h.intermediate.leaf(&LeafSpec::new(NAME)));
    let dir = tempfile::tempdir().unwrap();
    let write = |leaf: &Leaf| {
        let chain = h.chain_pem_of(leaf);
        let key = leaf.key.pkcs8_pem();
        atomic_write(
            dir.path(),
            &[
                ("tls.crt", chain.as_bytes()),
                ("tls.key", key.as_bytes()),
                ("ca.crt", h.root.cert_pem.as_bytes()),
            ],
        );
    };
    write(a);
    let paths = SourcePaths {
        cert: dir.path().join("tls.crt"),
        key: Some(dir.path().join("tls.key")),
        trust: Some(dir.path().join("ca.crt")),
    };
    let mut swapped = false;
    let raw = load::read_set_observed(&paths, DEFAULT_MAX_FILE_SIZE, &mut |role| {
        if role == FileRole::Cert && !swapped {
            swapped = true;
            write(&b);
        }
    })
    .expect("consistent");
    let eval = block_on(pipeline::evaluate_raw(
        raw,
        0.0,
        &policy(&[NAME]),
        &EvalOptions::default(),
        now(),
    ));
    assert_passes_with_handshake(&eval);
    let leaf = eval.verdict().unwrap().leaf().unwrap();
    assert_eq!(leaf.fingerprint_sha256, sha256_hex(&b.cert_der));
    assert!(eval.files().iter().all(|f| f.generation.is_some()));
}

// === robustness: random input never panics ===

/// splitmix64: a small deterministic PRNG, so a failing input can be reproduced from its index.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One to four random edits: bit flips, byte changes, deletions, insertions, truncation,
/// duplicated ranges, and stray PEM lines.
fn mutate(rng: &mut SplitMix, input: &[u8]) -> Vec<u8> {
    const LINES: [&[u8]; 6] = [
        b"-----BEGIN CERTIFICATE-----\n",
        b"-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\n",
        b"-----END PRIVATE KEY-----\n",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
        b"\r\n",
    ];
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        let at = rng.below(len + 1);
        match rng.below(7) {
            0 if len > 0 => out[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => out[at.min(len - 1)] = rng.next() as u8,
            2 => {
                let n = rng.below(64).min(len - at);
                out.drain(at..at + n);
            }
            3 => {
                let n = rng.below(32);
                let extra = rng.bytes(n);
                out.splice(at..at, extra);
            }
            4 => out.truncate(at),
            5 => {
                let n = rng.below(128).min(len - at);
                let dup = out[at..at + n].to_vec();
                out.splice(at..at, dup);
            }
            _ => {
                let line = LINES[rng.below(LINES.len())];
                out.splice(at..at, line.iter().copied());
            }
        }
    }
    out
}

#[test]
fn random_and_mutated_inputs_never_panic_the_loaders() {
    let h = Hierarchy::shared(Alg::P256);
    let rsa = Hierarchy::shared(Alg::Rsa2048);
    let ed = Hierarchy::shared(Alg::Ed25519);
    let chain = h.chain_pem();
    let seeds: Vec<Vec<u8>> = vec![
        chain.clone().into_bytes(),
        h.leaf.key.pkcs8_pem().into_bytes(),
        h.leaf.key.sec1_pem().into_bytes(),
        rsa.leaf.key.pkcs1_pem().into_bytes(),
        ed.leaf.key.pkcs8_pem().into_bytes(),
        h.leaf.cert_der.clone(),
        h.leaf.key.pkcs8_der.clone(),
        rsa.leaf.key.pkcs1_der(),
        format!("{}{}", h.root.cert_pem, rsa.root.cert_pem).into_bytes(),
        h.leaf.key.encrypted_pkcs8_pem().into_bytes(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let good = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let good_cert = good("good.crt", chain.as_bytes());
    let good_key = good("good.key", h.leaf.key.pkcs8_pem().as_bytes());
    let good_trust = good("good_ca.crt", h.root.cert_pem.as_bytes());
    let fuzz: PathBuf = dir.path().join("fuzz.bin");
    let p = policy(&[NAME]);

    let mut rng = SplitMix(0xce27_9a7e);
    let (mut cert_ok, mut key_ok, mut validated) = (0, 0, 0);
    const INPUTS: usize = 3000;
    for i in 0..INPUTS {
        let input = match i % 4 {
            0 => {
                let n = rng.below(2048);
                rng.bytes(n)
            }
            // Mutations inside the DER, re-wrapped in valid PEM, reach the X.509 parsers.
            1 => {
                let der = [
                    &h.leaf.cert_der,
                    &h.intermediate.cert_der,
                    &rsa.leaf.cert_der,
                ][rng.below(3)]
                .clone();
                pem("CERTIFICATE", &mutate(&mut rng, &der)).into_bytes()
            }
            _ => {
                let seed = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, seed)
            }
        };
        // A fresh file each time: truncating one that holds data makes ext4 flush it on close.
        let _ = std::fs::remove_file(&fuzz);
        std::fs::write(&fuzz, &input).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let snap = load::snapshot(FileRole::Cert, &fuzz, DEFAULT_MAX_FILE_SIZE).unwrap();
            if load::decode_certs(&snap).is_ok() {
                cert_ok += 1;
            }
            if load::decode_key(&snap.with_role(FileRole::Key)).is_ok() {
                key_ok += 1;
            }
            let _ = certgate::report::inspect_file(&fuzz, DEFAULT_MAX_FILE_SIZE);
            // As each role of a set otherwise good, through validation when it decodes.
            for paths in [
                SourcePaths {
                    cert: fuzz.clone(),
                    key: Some(good_key.clone()),
                    trust: Some(good_trust.clone()),
                },
                SourcePaths {
                    cert: good_cert.clone(),
                    key: Some(fuzz.clone()),
                    trust: Some(fuzz.clone()),
                },
            ] {
                if let Ok(material) = load::load_set(&paths, DEFAULT_MAX_FILE_SIZE) {
                    let verdict = validate::validate(&material, &p, now());
                    assert_eq!(verdict.passed(), verdict.first_reason().is_none());
                    validated += 1;
                }
            }
        }));
        assert!(
            outcome.is_ok(),
            "input #{i} panicked: {} bytes, starts {:?}",
            input.len(),
            String::from_utf8_lossy(&input[..input.len().min(80)])
        );
    }
    // The corpus reached past the framing into the parsers and the validator.
    assert!(
        cert_ok > INPUTS / 10,
        "{cert_ok} inputs decoded as certificates"
    );
    assert!(key_ok > 50, "{key_ok} inputs decoded as keys");
    assert!(validated > INPUTS / 10, "{validated} sets validated");
}
