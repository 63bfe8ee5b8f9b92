//! Secrets: no form of the private key's bytes appears in any output of `check` or `inspect`.

use crate::util::pki::{base64_of, Alg, Hierarchy, Key, LeafSpec};
use crate::util::{self, texts, write};

use super::{Files, NAME};

/// Every form in which `key`'s secret could be printed: base64 of each DER encoding (whole,
/// and each PEM body line), its hex, and the hex of the raw private scalar for EC keys.
fn secret_needles(key: &Key, encodings: &[Vec<u8>]) -> Vec<String> {
    let mut needles = Vec::new();
    for der in encodings {
        let b64 = base64_of(der);
        needles.extend(
            b64.as_bytes()
                .chunks(64)
                .filter(|c| c.len() >= 32)
                .map(|c| String::from_utf8(c.to_vec()).unwrap()),
        );
        needles.push(b64);
        needles.push(certgate::hex(der));
    }
    if matches!(key.alg, Alg::P256 | Alg::P384) {
        // ECPrivateKey: SEQUENCE { INTEGER 1, OCTET STRING privateKey, … }
        let sec1 = key.sec1_der();
        let body = if sec1[1] & 0x80 == 0 {
            2
        } else {
            2 + usize::from(sec1[1] & 0x7f)
        };
        let len = usize::from(sec1[body + 4]);
        let scalar = &sec1[body + 5..body + 5 + len];
        needles.push(certgate::hex(scalar));
        needles.push(certgate::hex(scalar).to_uppercase());
    }
    needles
}

#[test]
fn key_bytes_appear_in_no_output() {
    let p256 = Hierarchy::shared(Alg::P256);
    let rsa = Hierarchy::shared(Alg::Rsa2048);
    let ed = Hierarchy::shared(Alg::Ed25519);
    // (hierarchy, the key file as written, the DER encodings of its secret)
    type Case = (&'static Hierarchy, Vec<u8>, Vec<Vec<u8>>);
    let cases: Vec<Case> = vec![
        (
            p256,
            p256.leaf.key.pkcs8_pem().into_bytes(),
            vec![p256.leaf.key.pkcs8_der.clone()],
        ),
        (
            p256,
            p256.leaf.key.sec1_pem().into_bytes(),
            vec![p256.leaf.key.sec1_der(), p256.leaf.key.pkcs8_der.clone()],
        ),
        (
            rsa,
            rsa.leaf.key.pkcs1_pem().into_bytes(),
            vec![rsa.leaf.key.pkcs1_der(), rsa.leaf.key.pkcs8_der.clone()],
        ),
        (
            ed,
            ed.leaf.key.pkcs8_der.clone(),
            vec![ed.leaf.key.pkcs8_der.clone()],
        ),
    ];
    let mismatched = p256.intermediate.leaf(&LeafSpec::new(NAME));
    let mut scanned = 0;
    for (h, key_bytes, encodings) in cases {
        let needles = secret_needles(&h.leaf.key, &encodings);
        // The scan has teeth: printing the key file, as text or hex, would be caught.
        let leaked = [
            String::from_utf8_lossy(&key_bytes).into_owned(),
            certgate::hex(&key_bytes),
        ];
        assert!(
            needles
                .iter()
                .any(|n| leaked.iter().any(|l| l.contains(n.as_str()))),
            "{:?}: the needles match the key file itself",
            h.leaf.key.alg
        );
        let files = Files::raw(
            h.chain_pem().as_bytes(),
            &key_bytes,
            h.root.cert_pem.as_bytes(),
        );
        let other_cert = write(
            files.dir.path(),
            "other.crt",
            p256.chain_pem_of(&mismatched),
        );
        let (cert, key, trust) = (
            files.cert.as_str(),
            files.key.as_str(),
            files.trust.as_str(),
        );
        let runs: Vec<Vec<&str>> = vec![
            vec![
                "check", "--cert", cert, "--key", key, "--trust", trust, "--name", NAME,
            ],
            vec![
                "check", "--cert", cert, "--key", key, "--trust", trust, "--name", NAME, "--json",
            ],
            // key mismatch
            vec![
                "check",
                "--cert",
                &other_cert,
                "--key",
                key,
                "--trust",
                trust,
            ],
            vec![
                "check",
                "--cert",
                &other_cert,
                "--key",
                key,
                "--trust",
                trust,
                "--json",
            ],
            // the key given as every other file
            vec!["check", "--cert", key, "--key", cert, "--trust", trust],
            vec!["check", "--cert", key, "--trust", trust, "--json"],
            vec![
                "check", "--cert", cert, "--key", key, "--trust", key, "--json",
            ],
            vec!["inspect", key],
            vec!["inspect", "--json", key, cert],
        ];
        for args in runs {
            let out = util::certgate(&args);
            let (stdout, stderr) = texts(&out);
            assert!(
                !stdout.is_empty() || !stderr.is_empty(),
                "{args:?} said something"
            );
            for needle in &needles {
                assert!(
                    !stdout.contains(needle.as_str()) && !stderr.contains(needle.as_str()),
                    "{:?} key material in the output of {args:?}",
                    h.leaf.key.alg
                );
            }
            scanned += 1;
        }
    }
    assert_eq!(scanned, 36);
}

/// A key path that points at another secret: whatever form the file takes — a PEM key block
/// whose body is not a key (rustls cannot parse it), a PEM block left unterminated under a
/// label that is itself the secret, bare bytes (the DER path) — neither `check` nor `inspect`
/// quotes any of it.
#[test]
fn another_secret_at_the_key_path_is_never_quoted() {
    const SECRET: &str = "DB_PASSWORD=hunter2";
    let h = Hierarchy::shared(Alg::P256);
    let body = base64_of(SECRET.as_bytes());
    let cases: [(&str, String); 3] = [
        (
            "not a key inside a key block",
            format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
        ),
        (
            "unterminated block, secret label",
            format!("-----BEGIN {SECRET}-----\n{body}\n"),
        ),
        ("bare bytes", format!("{SECRET}\n")),
    ];
    let needles = [
        SECRET.to_string(),
        "hunter2".to_string(),
        body.clone(),
        certgate::hex(SECRET.as_bytes()),
    ];
    for (what, key_file) in cases {
        let files = Files::raw(
            h.chain_pem().as_bytes(),
            key_file.as_bytes(),
            h.root.cert_pem.as_bytes(),
        );
        let (cert, key, trust) = (
            files.cert.as_str(),
            files.key.as_str(),
            files.trust.as_str(),
        );
        for args in [
            vec!["check", "--cert", cert, "--key", key, "--trust", trust],
            vec![
                "check", "--cert", cert, "--key", key, "--trust", trust, "--json",
            ],
            vec!["inspect", key],
            vec!["inspect", "--json", key],
        ] {
            let out = util::certgate(&args);
            let (stdout, stderr) = texts(&out);
            if args[0] == "check" {
                assert_eq!(out.status.code(), Some(1), "{what}: {args:?}");
                assert!(
                    stderr.contains(key),
                    "{what}: {args:?} names the file:\n{stderr}"
                );
            }
            for needle in &needles {
                assert!(
                    !stdout.contains(needle.as_str()) && !stderr.contains(needle.as_str()),
                    "{what}: {args:?} quotes the secret:\n{stdout}\n{stderr}"
                );
            }
        }
    }
}
