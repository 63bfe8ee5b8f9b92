//! The files themselves: CRLF, DER and combined files that pass; empty, garbage, truncated,
//! swapped, missing, oversized and non-regular files that are refused naming the file.

use std::path::Path;
use std::time::Duration;

use certgate::labels::Reason;
use certgate::pipeline::load::{self, FileRole, LoadError, SourcePaths, DEFAULT_MAX_FILE_SIZE};
use certgate::pipeline::{self, EvalOptions};

use crate::util::pki::{pem, Alg, Hierarchy, LeafSpec};

use super::{
    assert_check_fails, assert_load_fails, assert_passes_with_handshake, block_on, describe,
    evaluate, now, policy, sha256_hex, Set, SplitMix, NAME,
};

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
