//! Validity in time: expired and not-yet-valid certificates, the effective expiry an
//! intermediate sets, the min_remaining margin, and `now` as a parameter.

use std::time::Duration;

use certgate::labels::Reason;
use certgate::pipeline::inspect::Role;
use certgate::pipeline::validate::{Failure, Status, Usage};
use time::OffsetDateTime;

use crate::util::pki::{Alg, Ca, Eku, Hierarchy, LeafSpec};

use super::{
    assert_check_fails, assert_passes_with_handshake, check, evaluate, evaluate_at, hours,
    not_after, not_before, now, policy, Set, NAME,
};

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

/// Material valid at T but expired now: evaluated at T it passes every stage, the
/// self-handshake included (client and server both verify as of T, not the wall clock).
#[test]
fn the_self_handshake_runs_at_the_evaluation_time() {
    let t = OffsetDateTime::now_utc();
    let days = |n: i64| hours(24 * n);
    let root = Ca::root_valid("past root", Alg::P256, t - days(400), t - days(10));
    let inter =
        root.intermediate_valid("past intermediate", Alg::P256, t - days(300), t - days(10));
    let leaf = inter.leaf(
        &LeafSpec::new(NAME)
            .eku(Eku::Both)
            .valid(t - days(40), t - days(15)),
    );
    let set = Set::new(
        format!("{}{}", leaf.cert_pem, inter.cert_pem),
        Some(leaf.key.pkcs8_pem().as_bytes()),
        Some(root.cert_pem.as_bytes()),
    );
    let at = (t - days(20)).unix_timestamp();
    // Usage both: the candidate is also the client certificate, so each side's verifier runs.
    let mut both = policy(&[NAME]);
    both.usage = Usage::Both;
    let eval = evaluate_at(&set.paths, &both, at);
    assert_passes_with_handshake(&eval);
    assert!(eval.handshake().unwrap().client_auth, "both sides verified");
    // Now, the same material is expired (and the handshake not attempted).
    assert_check_fails(&evaluate(&set.paths, &policy(&[NAME])), "chain", "expired");
}
