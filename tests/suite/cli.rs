//! The real binary: `check` and `inspect` contracts (exit codes, output, errors naming files).

use crate::util::{self, pki::Hierarchy};

#[test]
fn check_passes_on_a_good_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hierarchy::p256("web.example.com");
    let cert = util::write(dir.path(), "tls.crt", h.chain_pem());
    let key = util::write(dir.path(), "tls.key", h.leaf.key.pkcs8_pem());
    let ca = util::write(dir.path(), "ca.crt", &h.root.cert_pem);
    let out = util::certgate(&[
        "check",
        "--cert",
        &cert,
        "--key",
        &key,
        "--trust",
        &ca,
        "--name",
        "web.example.com",
    ]);
    let (stdout, stderr) = util::texts(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("PASS"), "{stdout}");
    assert!(stdout.contains("✓ handshake"), "{stdout}");
}
