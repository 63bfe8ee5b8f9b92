//! Fixtures the suites share, one copy each: the expected name, SHA-256 fingerprints, a
//! certificate's validity bounds, a leaf's chain, and a set written as one kubelet generation.

use std::path::Path;

use certgate::pipeline::inspect::inspect_cert;
use rustls_pki_types::CertificateDer;

use super::kubelet::atomic_write;
use super::pki::{Ca, Leaf};

/// The DNS name the suites' leaves are issued for and checked against.
pub const NAME: &str = "web.example.com";

/// Lower-case hex SHA-256 of `bytes`: how certgate prints file hashes and fingerprints.
pub fn sha256_hex(bytes: &[u8]) -> String {
    certgate::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// A DER certificate's not-after, in Unix seconds.
pub fn not_after(cert_der: &[u8]) -> i64 {
    inspect_cert(&CertificateDer::from(cert_der), 0)
        .expect("parses")
        .not_after
}

/// A DER certificate's not-before, in Unix seconds.
pub fn not_before(cert_der: &[u8]) -> i64 {
    inspect_cert(&CertificateDer::from(cert_der), 0)
        .expect("parses")
        .not_before
}

/// `leaf` followed by its issuing intermediate, as PEM.
pub fn chain_pem(leaf: &Leaf, inter: &Ca) -> Vec<u8> {
    format!("{}{}", leaf.cert_pem, inter.cert_pem).into_bytes()
}

/// Writes `tls.crt`, `tls.key` and `ca.crt` into `dir` as one kubelet generation.
pub fn write_generation(dir: &Path, cert: &[u8], key: &[u8], ca: &[u8]) {
    atomic_write(dir, &[("tls.crt", cert), ("tls.key", key), ("ca.crt", ca)]);
}
