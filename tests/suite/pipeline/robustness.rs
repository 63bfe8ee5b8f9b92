//! Robustness: random and mutated input never panics the loaders, the inspector or the
//! validator.

use std::path::PathBuf;

use certgate::pipeline::load::{self, FileRole, SourcePaths, DEFAULT_MAX_FILE_SIZE};
use certgate::pipeline::validate;

use crate::util::pki::{pem, Alg, Hierarchy};

use super::{now, policy, SplitMix, NAME};

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
