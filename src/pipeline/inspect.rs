//! Stage 2: describe certificates (and keys, without their bytes) for humans, `/status` and
//! metrics, using x509-parser.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use rustls_pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::hex;
use crate::ids::{AnchorId, Fingerprint};

/// Where a certificate stands in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The end-entity certificate.
    Leaf,
    /// A CA between the leaf and the anchor.
    Intermediate,
    /// A trust anchor (root) from the bundle.
    Anchor,
}

impl Role {
    /// Lowercase label, as used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leaf => "leaf",
            Self::Intermediate => "intermediate",
            Self::Anchor => "anchor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum San {
    /// `dNSName`.
    Dns(String),
    /// `iPAddress`.
    Ip(IpAddr),
    /// `uniformResourceIdentifier`, e.g. a SPIFFE ID.
    Uri(String),
    /// `rfc822Name`.
    Email(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(n) => write!(f, "DNS:{n}"),
            Self::Ip(ip) => write!(f, "IP:{ip}"),
            Self::Uri(u) => write!(f, "URI:{u}"),
            Self::Email(e) => write!(f, "email:{e}"),
        }
    }
}

/// Everything certgate reports about one certificate: where it stands in the chain at hand,
/// and its description ([`CertBody`], reached through `Deref`), shared by every chain and
/// bundle that holds the same certificate. A thousand sets issued by one CA hold one
/// description of its intermediate and root, not a thousand; a clone is a reference count.
/// Writing to a field through `DerefMut` copies the description first (this value alone
/// changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Position in the chain.
    pub role: Role,
    #[serde(flatten)]
    body: Arc<CertBody>,
}

impl CertInfo {
    /// A certificate at `role` described by `body` (a description of its own, not shared with
    /// those [`inspect_cert`] makes).
    pub fn new(role: Role, body: CertBody) -> Self {
        Self {
            role,
            body: Arc::new(body),
        }
    }
}

impl std::ops::Deref for CertInfo {
    type Target = CertBody;
    fn deref(&self) -> &CertBody {
        &self.body
    }
}

impl std::ops::DerefMut for CertInfo {
    fn deref_mut(&mut self) -> &mut CertBody {
        Arc::make_mut(&mut self.body)
    }
}

/// What a certificate's DER says, as certgate reports it: the same for every copy of the
/// certificate, wherever it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertBody {
    /// RFC 4514-style subject.
    pub subject: String,
    /// The subject's first common name, if any.
    pub subject_cn: String,
    /// The subject's first organization, if any.
    pub subject_o: String,
    /// RFC 4514-style issuer.
    pub issuer: String,
    /// The issuer's first common name, if any.
    pub issuer_cn: String,
    /// The issuer's first organization, if any.
    pub issuer_o: String,
    /// Serial number, lowercase hex; a negative one (non-conforming, but issued by some CAs) as
    /// `-` and its magnitude, as OpenSSL prints it.
    pub serial: String,
    /// The serial's DER content bytes, lowercase hex, when `serial` is negative (and so does not
    /// show them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_der: Option<String>,
    /// Subject alternative names.
    pub sans: Vec<San>,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// `RSA`, `ECDSA P-256`, `Ed25519`, …
    pub key_algorithm: String,
    /// Key size in bits (curve size for EC).
    pub key_bits: usize,
    /// Signature algorithm name.
    pub signature_algorithm: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint_sha256: Fingerprint,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// Issuer equals subject.
    pub self_issued: bool,
    /// Key usage flags.
    pub key_usage: Vec<String>,
    /// Extended key usages.
    pub extended_key_usage: Vec<String>,
    /// Its identity as a trust anchor (subject and key; see [`AnchorId`]).
    pub anchor_id: AnchorId,
}

impl CertInfo {
    /// Whether the certificate is within its validity window at `now` (Unix seconds).
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// The [`AnchorId`] of a certificate, when it parses.
pub fn anchor_id_of(der: &[u8]) -> Option<AnchorId> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let tbs = &cert.tbs_certificate;
    Some(AnchorId::of(tbs.subject.as_raw(), tbs.subject_pki.raw))
}

/// A certificate x509-parser could not read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("certificate #{index}: not a valid X.509 certificate: {detail}")]
pub struct InspectError {
    /// 0-based position in its file.
    pub index: usize,
    /// What the parser said.
    pub detail: String,
}

/// Inspects one DER certificate; its role is `index`'s (0 the leaf) overridden for CAs (see
/// [`classify`]). A certificate already described (the same DER, in any set) shares that
/// description.
pub fn inspect_cert(der: &CertificateDer<'_>, index: usize) -> Result<CertInfo, InspectError> {
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let body = match BODIES.find(digest.as_ref()) {
        Some(body) => body,
        None => BODIES.keep(digest.as_ref(), describe(der, digest.as_ref(), index)?),
    };
    Ok(CertInfo {
        role: classify(index, body.is_ca, body.self_issued),
        body,
    })
}

/// The descriptions alive, by the SHA-256 of their DER: [`inspect_cert`] shares one
/// description of a certificate among every chain and bundle that holds it. Held weakly: a
/// description goes when the last [`CertInfo`] holding it does, and the dead entries are
/// swept whenever the map has doubled since the last sweep, so it holds at most about twice
/// the certificates alive (plus 64). Content-addressed: the same bytes always describe the
/// same way, whatever the time, so nothing here is a verdict.
static BODIES: Bodies = Bodies(Mutex::new(None));

struct Bodies(Mutex<Option<BodyMap>>);

struct BodyMap {
    by_digest: HashMap<[u8; 32], Weak<CertBody>>,
    /// Sweep the dead entries once the map holds this many.
    sweep_at: usize,
}

impl Bodies {
    fn find(&self, digest: &[u8]) -> Option<Arc<CertBody>> {
        let key = <[u8; 32]>::try_from(digest).ok()?;
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.as_ref()?.by_digest.get(&key)?.upgrade()
    }

    fn keep(&self, digest: &[u8], body: CertBody) -> Arc<CertBody> {
        let body = Arc::new(body);
        let Ok(key) = <[u8; 32]>::try_from(digest) else {
            return body;
        };
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let map = map.get_or_insert_with(|| BodyMap {
            by_digest: HashMap::new(),
            sweep_at: 64,
        });
        // Another thread may have described the same certificate meanwhile: keep one.
        if let Some(kept) = map.by_digest.get(&key).and_then(Weak::upgrade) {
            return kept;
        }
        if map.by_digest.len() >= map.sweep_at {
            map.by_digest.retain(|_, w| w.strong_count() > 0);
            map.sweep_at = (2 * map.by_digest.len()).max(64);
        }
        map.by_digest.insert(key, Arc::downgrade(&body));
        body
    }
}

/// Describes one DER certificate whose SHA-256 is `digest`.
fn describe(
    der: &CertificateDer<'_>,
    digest: &[u8],
    index: usize,
) -> Result<CertBody, InspectError> {
    let err = |detail: String| InspectError { index, detail };
    let (rest, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| err(e.to_string()))?;
    if !rest.is_empty() {
        return Err(err(format!("{} trailing bytes", rest.len())));
    }
    let tbs = &cert.tbs_certificate;
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext.value.general_names.iter().filter_map(san_of).collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(err(format!("subjectAltName: {e}"))),
    };
    let (key_algorithm, key_bits) = describe_spki(cert.public_key());
    let key_usage = match cert.key_usage() {
        Ok(Some(ku)) => ku
            .value
            .to_string()
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    let extended_key_usage = match cert.extended_key_usage() {
        Ok(Some(eku)) => {
            let e = eku.value;
            [
                (e.any, "any"),
                (e.server_auth, "serverAuth"),
                (e.client_auth, "clientAuth"),
                (e.code_signing, "codeSigning"),
                (e.email_protection, "emailProtection"),
                (e.time_stamping, "timeStamping"),
                (e.ocsp_signing, "OCSPSigning"),
            ]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| name.to_string())
            .chain(e.other.iter().map(|oid| oid.to_id_string()))
            .collect()
        }
        _ => Vec::new(),
    };
    fn first<'a>(
        mut it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
    ) -> String {
        it.next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string()
    }
    Ok(CertBody {
        subject: tbs.subject.to_string(),
        subject_cn: first(tbs.subject.iter_common_name()),
        subject_o: first(tbs.subject.iter_organization()),
        issuer: tbs.issuer.to_string(),
        issuer_cn: first(tbs.issuer.iter_common_name()),
        issuer_o: first(tbs.issuer.iter_organization()),
        serial: serial_hex(tbs.raw_serial()),
        serial_der: negative(tbs.raw_serial()).then(|| hex(tbs.raw_serial())),
        sans,
        not_before: tbs.validity.not_before.timestamp(),
        not_after: tbs.validity.not_after.timestamp(),
        key_algorithm,
        key_bits,
        signature_algorithm: oid_name(&cert.signature_algorithm.algorithm),
        fingerprint_sha256: Fingerprint::from_digest(digest),
        anchor_id: AnchorId::of(tbs.subject.as_raw(), tbs.subject_pki.raw),
        is_ca: cert.is_ca(),
        self_issued: tbs.subject.as_raw() == tbs.issuer.as_raw(),
        key_usage,
        extended_key_usage,
    })
}

/// The extensions webpki (the verifier rustls and certgate use) understands, by OID: keyUsage,
/// subjectAltName, basicConstraints, nameConstraints, cRLDistributionPoints, extKeyUsage and
/// the SCT list. A certificate with any *other* extension marked critical is refused.
const WEBPKI_EXTENSIONS: [&str; 7] = [
    "2.5.29.15",
    "2.5.29.17",
    "2.5.29.19",
    "2.5.29.30",
    "2.5.29.31",
    "2.5.29.37",
    "1.3.6.1.4.1.11129.2.4.2",
];

/// The OIDs of `der`'s critical extensions that webpki does not understand (and so refuses
/// the certificate for); empty when there are none or the certificate does not parse.
pub fn unsupported_critical_extensions(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    cert.extensions()
        .iter()
        .filter(|e| e.critical)
        .map(|e| e.oid.to_id_string())
        .filter(|oid| !WEBPKI_EXTENSIONS.contains(&oid.as_str()))
        .collect()
}

/// Whether DER INTEGER content bytes are negative (two's complement, high bit set).
fn negative(raw: &[u8]) -> bool {
    raw.first().is_some_and(|b| b & 0x80 != 0)
}

/// A serial's DER INTEGER content as signed hex: a negative value as `-` then its magnitude.
fn serial_hex(raw: &[u8]) -> String {
    if !negative(raw) {
        return hex(raw);
    }
    // The magnitude of a two's complement value: invert, then add one.
    let mut magnitude: Vec<u8> = raw.iter().map(|b| !b).collect();
    for byte in magnitude.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            break;
        }
    }
    let first = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len().saturating_sub(1));
    format!("-{}", hex(&magnitude[first..]))
}

/// Role from position and CA-ness: the first non-CA certificate is the leaf, a self-issued CA
/// is an anchor, any other CA an intermediate.
pub fn classify(index: usize, is_ca: bool, self_issued: bool) -> Role {
    match (index, is_ca, self_issued) {
        (_, true, true) => Role::Anchor,
        (_, true, false) => Role::Intermediate,
        _ => Role::Leaf,
    }
}

fn san_of(name: &GeneralName<'_>) -> Option<San> {
    match name {
        GeneralName::DNSName(n) => Some(San::Dns(n.to_string())),
        GeneralName::URI(u) => Some(San::Uri(u.to_string())),
        GeneralName::RFC822Name(e) => Some(San::Email(e.to_string())),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .ok()
                .map(|b| San::Ip(IpAddr::from(b))),
            16 => <[u8; 16]>::try_from(*bytes)
                .ok()
                .map(|b| San::Ip(IpAddr::from(b))),
            _ => None,
        },
        _ => None,
    }
}

fn oid_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_string)
        .unwrap_or_else(|_| oid.to_id_string())
}

fn describe_spki(spki: &SubjectPublicKeyInfo<'_>) -> (String, usize) {
    let alg = spki.algorithm.algorithm.to_id_string();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => ("RSA".into(), rsa_bits(rsa.modulus)),
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            let name = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256",
                Some("1.3.132.0.34") => "ECDSA P-384",
                Some("1.3.132.0.35") => "ECDSA P-521",
                _ => "ECDSA",
            };
            (name.into(), point.key_size())
        }
        _ if alg == "1.3.101.112" => ("Ed25519".into(), 256),
        _ if alg == "1.3.101.113" => ("Ed448".into(), 456),
        _ => (alg, 0),
    }
}

fn rsa_bits(modulus: &[u8]) -> usize {
    let trimmed: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(i) => &modulus[i..],
        None => &[],
    };
    match trimmed.first() {
        Some(first) => trimmed.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// What certgate says about a private key: never its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// PKCS#8, PKCS#1 or SEC1.
    pub encoding: crate::pipeline::load::KeyEncoding,
    /// `RSA`, `ECDSA P-256`, `Ed25519`, … or why it is unusable.
    pub algorithm: String,
    /// Key size in bits, when known.
    pub bits: usize,
    /// SHA-256 of the public key (SPKI), lowercase hex, when it can be derived.
    pub public_key_sha256: Option<String>,
}

/// Describes a private key through the public key rustls derives from it.
pub fn inspect_key(key: &crate::pipeline::load::PrivateKey) -> KeyInfo {
    use rustls::crypto::ring::sign::any_supported_type;
    let (algorithm, bits, public_key_sha256) = match any_supported_type(&key.der()) {
        Ok(signer) => match signer.public_key() {
            Some(spki) => {
                let digest =
                    hex(ring::digest::digest(&ring::digest::SHA256, spki.as_ref()).as_ref());
                let (alg, bits) = spki_description(spki.as_ref());
                (alg, bits, Some(digest))
            }
            None => (format!("{:?}", signer.algorithm()), 0, None),
        },
        Err(e) => (format!("unsupported ({e})"), 0, None),
    };
    KeyInfo {
        encoding: key.encoding,
        algorithm,
        bits,
        public_key_sha256,
    }
}

fn spki_description(spki_der: &[u8]) -> (String, usize) {
    match SubjectPublicKeyInfo::from_der(spki_der) {
        Ok((_, spki)) => describe_spki(&spki),
        Err(_) => ("unknown".into(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_serials_print_signed() {
        assert_eq!(serial_hex(&[0x01, 0x02]), "0102");
        assert_eq!(serial_hex(&[0x00, 0x80]), "0080");
        assert_eq!(serial_hex(&[0xed, 0xcb, 0x54, 0x33]), "-1234abcd");
        assert_eq!(serial_hex(&[0xff]), "-01");
        assert_eq!(serial_hex(&[0x80]), "-80");
        assert_eq!(serial_hex(&[0xff, 0x00]), "-0100");
        assert_eq!(serial_hex(&[]), "");
    }

    #[test]
    fn a_certificate_is_described_once_wherever_it_stands() {
        use certgate_testkit::pki::{Alg, Ca, LeafSpec};
        let root = Ca::root("inspect root", Alg::P256);
        let leaf = root.leaf(&LeafSpec::new("a.example"));
        let root_der = CertificateDer::from(root.cert_der.clone());
        let in_bundle = inspect_cert(&root_der, 0).expect("root");
        let in_chain = inspect_cert(&root_der, 1).expect("root");
        assert!(Arc::ptr_eq(&in_bundle.body, &in_chain.body));
        assert_eq!(in_chain.role, Role::Anchor);
        let leaf_info =
            inspect_cert(&CertificateDer::from(leaf.cert_der.clone()), 0).expect("leaf");
        assert_eq!(leaf_info.role, Role::Leaf);
        assert!(!Arc::ptr_eq(&leaf_info.body, &in_chain.body));
        assert_eq!(leaf_info.issuer, in_chain.subject);
        // A write changes that value alone.
        let mut changed = in_chain.clone();
        changed.not_after = 0;
        assert!(!Arc::ptr_eq(&changed.body, &in_chain.body));
        assert_ne!(in_chain.not_after, 0);
        // The same description as a description made afresh.
        let digest = ring::digest::digest(&ring::digest::SHA256, &root.cert_der);
        let fresh = describe(&root_der, digest.as_ref(), 0).expect("describes");
        assert_eq!(
            fresh, *in_bundle.body,
            "the shared description is the certificate's"
        );
        assert_eq!(
            in_bundle.fingerprint_sha256,
            Fingerprint::of(&root.cert_der)
        );
    }

    #[test]
    fn descriptions_no_longer_held_are_swept() {
        use certgate_testkit::pki::{Alg, Ca};
        let root = Ca::root("sweep root", Alg::P256);
        let der = CertificateDer::from(root.cert_der.clone());
        let one = inspect_cert(&der, 0).expect("root");
        let bodies = Bodies(Mutex::new(None));
        let mut held = Vec::new();
        for i in 0..5_000u32 {
            let mut digest = [0u8; 32];
            digest[..4].copy_from_slice(&i.to_le_bytes());
            let body = bodies.keep(&digest, CertBody::clone(&one));
            // One in a hundred stays held; the rest go at once.
            if i % 100 == 0 {
                held.push(body);
            }
            let map = bodies.0.lock().expect("lock");
            let entries = map.as_ref().map_or(0, |m| m.by_digest.len());
            assert!(
                entries <= 2 * held.len() + 64 + 1,
                "{entries} entries for {} held",
                held.len()
            );
        }
        let mut digest = [0u8; 32];
        digest[..4].copy_from_slice(&100u32.to_le_bytes());
        let found = bodies.find(&digest).expect("a held description is found");
        assert!(Arc::ptr_eq(&found, &held[1]));
        digest[..4].copy_from_slice(&101u32.to_le_bytes());
        assert!(bodies.find(&digest).is_none(), "a dropped one is not");
    }
}
