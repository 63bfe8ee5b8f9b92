//! Library-level pipeline tests: `certgate::pipeline` called directly on a PKI minted at run
//! time (root → intermediate → leaf), with `now` passed in. This file holds the suite's shared
//! helpers; the tests are in one submodule per topic.

mod chain;
mod files;
mod generations;
mod keys;
mod names;
mod openssl;
mod robustness;
mod time;

use std::future::Future;
use std::path::Path;

use ::time::OffsetDateTime;
use certgate::labels::Reason;
use certgate::pipeline::load::SourcePaths;
use certgate::pipeline::validate::{Check, ExpectedName, Failure, Policy, Status};
use certgate::pipeline::{self, EvalOptions, Evaluation};

use crate::util::fixtures::{not_after, not_before, sha256_hex, NAME};
use crate::util::pki::{Hierarchy, Leaf};
use crate::util::write_path;

/// One set's files in their own temp dir.
struct Set {
    _dir: tempfile::TempDir,
    paths: SourcePaths,
}

impl Set {
    fn new(cert: impl AsRef<[u8]>, key: Option<&[u8]>, trust: Option<&[u8]>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, bytes: &[u8]| write_path(dir.path(), name, bytes);
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

fn hours(n: i64) -> ::time::Duration {
    ::time::Duration::hours(n)
}

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
