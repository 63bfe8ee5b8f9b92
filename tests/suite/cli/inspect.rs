//! `inspect`: chain and key files described, as text and `--json`; unreadable files refused.

use crate::util::pki::{Alg, Hierarchy};
use crate::util::{self, texts, write};

use super::{assert_exit, json, not_after, rfc3339, sha256_hex, show, Files, NAME};

#[test]
fn inspect_describes_a_chain_file() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let out = util::certgate(&["inspect", &files.cert]);
    assert_exit(&out, 0);
    let stdout = texts(&out).0;
    assert!(stdout.starts_with(&files.cert), "{stdout}");
    assert!(stdout.contains("[0] leaf CN=web.example.com"), "{stdout}");
    assert!(stdout.contains("[1] intermediate"), "{stdout}");
    assert!(stdout.contains("certgate test intermediate"), "{stdout}");
    assert!(stdout.contains("DNS:web.example.com"), "{stdout}");
    assert!(stdout.contains("ECDSA P-256 256 bits"), "{stdout}");
    assert!(stdout.contains(&sha256_hex(&h.leaf.cert_der)), "{stdout}");
    assert!(
        stdout.contains(&rfc3339(not_after(&h.leaf.cert_der))),
        "{stdout}"
    );

    let out = util::certgate(&["inspect", "--json", &files.cert, &files.trust]);
    assert_exit(&out, 0);
    let doc = json(&out);
    let chain = &doc[0];
    assert_eq!(chain["file"], files.cert.as_str());
    assert_eq!(
        chain["sha256"],
        sha256_hex(&std::fs::read(&files.cert).unwrap())
    );
    let certs = chain["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0]["role"], "leaf");
    assert_eq!(certs[0]["subject_cn"], NAME);
    assert_eq!(certs[0]["sans"][0]["type"], "dns");
    assert_eq!(certs[0]["sans"][0]["value"], NAME);
    assert_eq!(certs[0]["is_ca"], false);
    assert_eq!(certs[0]["not_after"], not_after(&h.leaf.cert_der));
    assert_eq!(certs[0]["fingerprint_sha256"], sha256_hex(&h.leaf.cert_der));
    assert_eq!(certs[1]["role"], "intermediate");
    assert_eq!(certs[1]["is_ca"], true);
    assert_eq!(doc[1]["certificates"][0]["role"], "anchor");
    assert!(
        chain.get("key").is_none() && chain.get("error").is_none(),
        "{chain}"
    );
}

#[test]
fn inspect_describes_a_key_by_algorithm() {
    let p256 = &Hierarchy::shared(Alg::P256).leaf.key;
    let p384 = &Hierarchy::shared(Alg::P384).leaf.key;
    let ed = &Hierarchy::shared(Alg::Ed25519).leaf.key;
    let rsa = &Hierarchy::shared(Alg::Rsa2048).leaf.key;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "p256.key",
            p256.pkcs8_pem().into_bytes(),
            "ECDSA P-256",
            256,
            "PKCS#8",
        ),
        (
            "p384.key",
            p384.sec1_pem().into_bytes(),
            "ECDSA P-384",
            384,
            "SEC1",
        ),
        ("ed.der", ed.pkcs8_der.clone(), "Ed25519", 256, "PKCS#8"),
        (
            "rsa.key",
            rsa.pkcs1_pem().into_bytes(),
            "RSA",
            2048,
            "PKCS#1",
        ),
    ];
    for (name, bytes, algorithm, bits, encoding) in cases {
        let path = write(dir.path(), name, &bytes);
        let out = util::certgate(&["inspect", &path]);
        assert_exit(&out, 0);
        let stdout = texts(&out).0;
        assert!(
            stdout.contains(&format!("private key: {algorithm} {bits} bits")),
            "{name}: {stdout}"
        );
        let out = util::certgate(&["inspect", "--json", &path]);
        assert_exit(&out, 0);
        let doc = json(&out);
        let key = &doc[0]["key"];
        assert_eq!(key["algorithm"], algorithm, "{name}");
        assert_eq!(key["bits"], bits, "{name}");
        assert_eq!(key["encoding"], encoding, "{name}");
        assert_eq!(
            key["public_key_sha256"].as_str().unwrap().len(),
            64,
            "{name}"
        );
        assert!(doc[0].get("certificates").is_none(), "{name}: {doc}");
    }
}

#[test]
fn inspect_refuses_encrypted_missing_and_garbage_files() {
    let key = &Hierarchy::shared(Alg::P256).leaf.key;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            write(dir.path(), "enc.key", key.encrypted_pkcs8_pem()),
            "encrypted private keys are not supported",
        ),
        (
            write(dir.path(), "legacy.key", key.legacy_encrypted_pem()),
            "encrypted private keys are not supported",
        ),
        (
            write(dir.path(), "junk", "just text\n"),
            "no certificate or private key found",
        ),
        (
            dir.path().join("absent.crt").display().to_string(),
            "file not found",
        ),
    ];
    for (path, needle) in cases {
        for json_flag in [false, true] {
            let mut args = vec!["inspect"];
            if json_flag {
                args.push("--json");
            }
            args.push(&path);
            let out = util::certgate(&args);
            assert_exit(&out, 1);
            let stderr = texts(&out).1;
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains(&path) && l.contains(needle)),
                "{path}: {needle:?}\n{}",
                show(&out)
            );
            if json_flag {
                let doc = json(&out);
                assert!(doc[0]["error"].as_str().unwrap().contains(needle), "{doc}");
            }
        }
    }
}

/// A negative serial (non-conforming, RFC 5280 §4.1.2.2 asks users to cope) prints as `-` and
/// its magnitude, as OpenSSL prints it, with its DER bytes beside it; not as raw two's
/// complement. The certificate comes from the `openssl` CLI: rcgen only writes positive serials.
#[test]
fn inspect_prints_a_negative_serial_signed() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("neg.crt");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=negative serial", "-days", "1"])
        .args(["-set_serial", "-0x1234abcd", "-keyout"])
        .arg(dir.path().join("neg.key"))
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl CLI runs");
    assert!(status.success());
    let cert = cert.to_str().unwrap();

    let out = util::certgate(&["inspect", cert]);
    assert_exit(&out, 0);
    let stdout = texts(&out).0;
    assert!(
        stdout.contains("serial       -1234abcd (negative; DER edcb5433)"),
        "{stdout}"
    );
    let doc = json(&util::certgate(&["inspect", "--json", cert]));
    let c = &doc[0]["certificates"][0];
    assert_eq!(c["serial"], "-1234abcd", "{c:#}");
    assert_eq!(c["serial_der"], "edcb5433", "{c:#}");
    // A positive serial has no separate DER form.
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let doc = json(&util::certgate(&["inspect", "--json", &files.cert]));
    assert!(
        doc[0]["certificates"][0].get("serial_der").is_none(),
        "{doc:#}"
    );
}

/// `anchor_id` is what `scripts/anchor-id.sh` (OpenSSL and coreutils only, documented for
/// operators) computes; a root re-issued with the same name and key keeps it, a new key under
/// the same name does not.
#[test]
fn anchor_id_follows_name_and_key_and_matches_the_openssl_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let subj = ["-subj", "/CN=Anchor Root/O=certgate"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "k1.pem"],
            &subj,
            &["-days", "10", "-out", "first.pem"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-x509", "-key", "k1.pem"][..],
            &subj,
            &["-days", "20", "-out", "reissued.pem"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "k2.pem"],
            &subj,
            &["-days", "10", "-out", "rekeyed.pem"],
        ]
        .concat(),
    );
    let id = |name: &str| {
        let path = d.join(name);
        let out = util::certgate(&["inspect", "--json", path.to_str().unwrap()]);
        assert_exit(&out, 0);
        let doc = json(&out);
        let ours = doc[0]["certificates"][0]["anchor_id"]
            .as_str()
            .unwrap()
            .to_string();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/anchor-id.sh");
        let theirs = std::process::Command::new("sh")
            .arg(script)
            .arg(&path)
            .output()
            .unwrap();
        assert!(theirs.status.success(), "{theirs:?}");
        assert_eq!(
            ours,
            String::from_utf8_lossy(&theirs.stdout).trim(),
            "{name}"
        );
        assert_eq!(ours.len(), 64);
        ours
    };
    let first = id("first.pem");
    assert_eq!(first, id("reissued.pem"), "same name and key: same anchor");
    assert_ne!(first, id("rekeyed.pem"), "a new key is a new anchor");
}
