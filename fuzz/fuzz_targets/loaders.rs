//! `loaders`: arbitrary bytes as a cert file, a key file and a trust bundle.
//!
//! Input: `cert [DELIM key [DELIM trust]]` with `DELIM` below; a missing part means that file is
//! not configured. The parts are written to files created once per process (on tmpfs when
//! available) and rewritten each iteration, then go through every public decoding entry point:
//! `load::snapshot` + `decode_certs` / `decode_key` (each part in every role), `inspect_cert` on
//! every certificate that decodes, `inspect_key` on every key, and `load::load_set` on the three
//! files followed by `validate::validate` at a fixed `now` under the default policy and under a
//! policy with names and both usages.
//!
//! Invariants (a failed assertion is a crash like a panic):
//! * nothing panics;
//! * a successful `decode_certs` returns at least one non-empty certificate, and the same outcome
//!   whichever role (cert or trust bundle) the file is read as; `inspect_cert` errors name the
//!   certificate's index;
//! * a successful `decode_key` returns non-empty key DER; `inspect_key` describes it;
//! * every `LoadError` has a non-empty `reason()`, its `path()` is the file it is about (one of
//!   the configured files for `load_set`), its message names that file and is one line of
//!   printable text (no control characters: it goes into log lines);
//! * `load_set` agrees with the per-file decoders (the files do not move here): it succeeds
//!   exactly when each configured file decodes on its own, with the same certificates;
//! * a verdict has checks, `passed()` agrees with `first_reason()`, and every failed check
//!   carries its failure's reason label and a message.

#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use certgate::labels::Reason;
use certgate::pipeline::inspect::{inspect_cert, inspect_key};
use certgate::pipeline::load::{self, FileRole, SourcePaths};
use certgate::pipeline::validate::{self, ExpectedName, Policy, Usage};
use libfuzzer_sys::fuzz_target;

mod common;
use common::scratch_dir;
use rustls_pki_types::CertificateDer;

/// Separates the three parts; must match fuzz/gen_seeds.sh.
const DELIM: &[u8] = b"\n--certgate-fuzz-split--\n";

/// 2027-01-15T08:00:00Z, inside the seed PKI's validity (2025-01-01 .. 2045-01-01).
const NOW: i64 = 1_800_000_000;

const CAP: u64 = load::DEFAULT_MAX_FILE_SIZE;

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    trust: PathBuf,
}

fn files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = scratch_dir("certgate-fuzz-loaders-");
        Files {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            trust: dir.path().join("ca.crt"),
            _dir: dir,
        }
    })
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(3);
    let mut rest = data;
    while parts.len() < 2 {
        match rest.windows(DELIM.len()).position(|w| w == DELIM) {
            Some(i) => {
                parts.push(&rest[..i]);
                rest = &rest[i + DELIM.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts
}

fn policies() -> &'static [Policy; 2] {
    static POLICIES: OnceLock<[Policy; 2]> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let names = [
            "example.com",
            "a.example.com",
            "127.0.0.1",
            "spiffe://example.org/ns/default/sa/web",
        ]
        .iter()
        .map(|n| ExpectedName::parse(n).expect("valid name"))
        .collect();
        [
            Policy::default(),
            Policy {
                usage: Usage::Both,
                names,
                min_remaining: Duration::from_secs(86_400),
                warn_before: Duration::from_secs(30 * 86_400),
                ..Policy::default()
            },
        ]
    })
}

/// `CERTGATE_FUZZ_DEBUG=1` prints each outcome (for triage: run the binary on one input).
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("CERTGATE_FUZZ_DEBUG").is_some())
}

/// Every load error is operator-facing: a stable non-empty reason label, the path it is about
/// (`expected`), a message naming that file, and one line of printable text (it goes into log
/// lines and `/status`).
fn check_error(e: &load::LoadError, expected: &[&Path]) {
    let msg = e.to_string();
    if debug() {
        eprintln!("load error: {msg}");
    }
    assert!(!e.reason().as_str().is_empty(), "empty reason for {msg:?}");
    assert!(
        expected.contains(&e.path()),
        "error names {} instead of one of {expected:?}: {msg:?}",
        e.path().display()
    );
    assert!(
        msg.contains(&e.path().display().to_string()),
        "message does not name the file: {msg:?}"
    );
    assert!(
        !msg.chars().any(char::is_control),
        "message is not one line of printable text: {msg:?}"
    );
}

/// What a certificate decoder returned: non-empty DER certificates, and `inspect_cert` on each.
fn check_certs(certs: &[CertificateDer<'static>]) {
    assert!(
        !certs.is_empty(),
        "decode_certs returned Ok with no certificate"
    );
    for (i, der) in certs.iter().enumerate() {
        assert!(!der.as_ref().is_empty(), "certificate #{i} is empty");
        match inspect_cert(der, i) {
            Ok(info) => {
                assert_eq!(info.fingerprint_sha256.len(), 64, "fingerprint of #{i}");
                std::hint::black_box(info.valid_at(NOW));
                for san in &info.sans {
                    std::hint::black_box(san.to_string());
                }
            }
            Err(e) => {
                assert_eq!(e.index, i, "inspect error names the wrong certificate");
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = files();
    let parts = split(data);
    let slots = [&f.cert, &f.key, &f.trust];
    for (path, part) in slots.iter().zip(&parts) {
        fs::write(path, part).expect("write input file");
    }

    // Each part through the decoders, in every role. Outcomes are kept to cross-check
    // `load_set` below: the cert part as a chain, the key part as a key, the trust part as a
    // bundle.
    let mut as_certs: Vec<Option<Result<Vec<CertificateDer<'static>>, Reason>>> =
        vec![None; 3];
    let mut as_key: Option<Result<(), Reason>> = None;
    for (slot, (path, _)) in slots.iter().zip(&parts).enumerate() {
        let snap = match load::snapshot(FileRole::Cert, path, CAP) {
            Ok(s) => s,
            Err(e) => {
                check_error(&e, &[path.as_path()]);
                continue;
            }
        };
        assert_eq!(
            snap.bytes(),
            &parts[slot][..],
            "snapshot differs from the file"
        );
        assert_eq!(snap.sha256.len(), 64, "sha256 is not 64 hex digits");
        // The role only changes messages, never the outcome.
        let mut outcomes = Vec::with_capacity(2);
        for role in [FileRole::Cert, FileRole::Trust] {
            let outcome = load::decode_certs(&snap.clone().with_role(role));
            match &outcome {
                Ok(certs) => check_certs(certs),
                Err(e) => check_error(e, &[path.as_path()]),
            }
            outcomes.push(outcome.map_err(|e| e.reason()));
        }
        assert_eq!(outcomes[0], outcomes[1], "decode_certs depends on the role");
        if slot != 1 {
            as_certs[slot] = outcomes.pop();
        }
        let key = load::decode_key(&snap.with_role(FileRole::Key));
        match &key {
            Ok(key) => {
                assert!(
                    !key.der().secret_der().is_empty(),
                    "decode_key returned an empty key"
                );
                let info = inspect_key(key);
                assert_eq!(info.encoding, key.encoding);
                assert!(!info.algorithm.is_empty());
                if let Some(h) = &info.public_key_sha256 {
                    assert_eq!(h.len(), 64, "public key hash");
                }
            }
            Err(e) => check_error(e, &[path.as_path()]),
        }
        if slot == 1 {
            as_key = Some(key.map(|_| ()).map_err(|e| e.reason()));
        }
    }

    // The set as the pipeline loads it, then validation.
    let paths = SourcePaths {
        cert: f.cert.clone(),
        key: (parts.len() > 1).then(|| f.key.clone()),
        trust: (parts.len() > 2).then(|| f.trust.clone()),
    };
    let configured: Vec<&Path> = paths.iter().map(|(_, p)| p).collect();
    match load::load_set(&paths, CAP) {
        Ok(material) => {
            // Nothing moves here, so the set agrees with the per-file decoders.
            assert_eq!(
                Some(Ok(material.chain.to_vec())),
                as_certs[0],
                "chain differs"
            );
            assert_eq!(material.key.is_some(), paths.key.is_some(), "key presence");
            if paths.key.is_some() {
                assert_eq!(
                    as_key,
                    Some(Ok(())),
                    "load_set accepted a key decode_key refused"
                );
            }
            match &as_certs[2] {
                Some(Ok(trust)) => assert_eq!(&material.trust, trust, "trust differs"),
                Some(Err(r)) => panic!("load_set accepted a bundle decode_certs refused ({r})"),
                None => assert!(material.trust.is_empty(), "trust without a bundle"),
            }
            for snap in material.raw.files() {
                assert!(
                    snap.generation.is_none(),
                    "a plain file read through a generation"
                );
            }
            for policy in policies() {
                let verdict = validate::validate(&material, policy, NOW);
                if debug() {
                    for c in verdict.checks() {
                        eprintln!("{:?} {}: {}", c.status, c.check, c.message);
                    }
                }
                assert!(!verdict.checks().is_empty(), "a verdict without checks");
                assert_eq!(
                    verdict.passed(),
                    verdict.first_reason().is_none(),
                    "passed vs reasons"
                );
                for check in verdict.checks() {
                    assert!(!check.check.is_empty(), "{check:?}");
                    if let Some(failure) = check.failure() {
                        assert!(!check.message.is_empty(), "{check:?}");
                        assert_eq!(Some(failure.reason()), check.reason, "{check:?}");
                        assert!(!failure.reason().as_str().is_empty());
                    }
                }
                std::hint::black_box(verdict.leaf());
            }
        }
        Err(e) => {
            check_error(&e, &configured);
            // It failed for a reason one of the per-file decoders saw too.
            let all_ok = matches!(as_certs[0], Some(Ok(_)))
                && (paths.key.is_none() || as_key == Some(Ok(())))
                && (paths.trust.is_none() || matches!(as_certs[2], Some(Ok(_))));
            assert!(
                !all_ok,
                "load_set refused ({e}) files that decode one by one"
            );
        }
    }
});
