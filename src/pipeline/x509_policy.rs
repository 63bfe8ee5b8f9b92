//! The X.509 rules certgate applies around rustls-webpki's path building, so that what it lets
//! go live is what OpenSSL-based workloads and clients accept, where the standards are clear.
//!
//! webpki is what rustls (and so certgate's self-handshake) uses, and it stays the judge of every
//! signature, validity window, name and extended key usage on the paths it builds. It departs
//! from OpenSSL 3 and RFC 5280 in two directions, which this module closes:
//!
//! 1. **It accepts what TLS stacks refuse.** It ignores keyUsage everywhere and almost
//!    everything about a trust anchor. [`tls_key_usage`] refuses a leaf whose keyUsage forbids
//!    the signature TLS needs of its key; [`path_refusal`] refuses, on a path webpki verified,
//!    a root OpenSSL 3 will not use (an unknown critical extension, a critical AKI or SKI, an
//!    AuthorityKeyIdentifier that does not identify it, missing or inconsistent CA extensions,
//!    an extendedKeyUsage without the set's purpose, a pathLenConstraint the chain exceeds), a CA
//!    whose keyUsage lacks keyCertSign or whose subject is empty, and a certificate whose
//!    AuthorityKeyIdentifier does not identify its issuer.
//! 2. **It refuses what RFC 5280 and OpenSSL accept**: any directoryName name constraint (it
//!    does not implement them), and a self-issued intermediate counted against a
//!    pathLenConstraint. [`rfc5280_path`] verifies such paths again, per RFC 5280: the leaf's
//!    link still by webpki (signature, validity, EKU, every name constraint it implements), each
//!    CA link by the same ring signature algorithms webpki uses, and what webpki departs on here.
//!
//! docs/configuration.md (`## X.509 rules`) lists each rule with the OpenSSL and RFC rule it
//! mirrors.

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_NAME_CONSTRAINTS,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::{AttributeTypeAndValue, RelativeDistinguishedName, X509Name};

use super::inspect::Role;
use super::validate::{Failure, Usage};
use crate::hex;

/// The side of TLS a certificate is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// A server certificate (serverAuth).
    Server,
    /// A client certificate (clientAuth).
    Client,
}

impl Side {
    /// The sides a set's usage needs, server first.
    pub(crate) fn of(usage: Usage) -> Vec<Self> {
        let mut sides = Vec::with_capacity(2);
        if usage.server() {
            sides.push(Self::Server);
        }
        if usage.client() {
            sides.push(Self::Client);
        }
        sides
    }

    /// `server` or `client`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }

    /// The extended key usage this side needs, as RFC 5280 names it.
    pub(crate) fn eku_name(self) -> &'static str {
        match self {
            Self::Server => "serverAuth",
            Self::Client => "clientAuth",
        }
    }

    /// The extended key usage webpki checks for this side.
    pub(crate) fn eku(self) -> webpki::KeyUsage {
        match self {
            Self::Server => webpki::KeyUsage::server_auth(),
            Self::Client => webpki::KeyUsage::client_auth(),
        }
    }

    /// Who refuses a certificate for this side when its extendedKeyUsage lacks the purpose.
    pub(crate) fn eku_refused_by(self) -> &'static str {
        match self {
            Self::Server => "TLS clients (OpenSSL, browsers, Go, Java, rustls)",
            Self::Client => "servers verifying client certificates (OpenSSL, Go, Java, rustls)",
        }
    }

    fn has_eku(self, eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> bool {
        match self {
            Self::Server => eku.server_auth,
            Self::Client => eku.client_auth,
        }
    }
}

// === The leaf's keyUsage, as TLS stacks enforce it ===

/// keyUsage bit names in bit order (RFC 5280 §4.2.1.3).
const KEY_USAGE_NAMES: [&str; 9] = [
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];
const DIGITAL_SIGNATURE: u16 = 1;
const KEY_AGREEMENT: u16 = 1 << 4;
const KEY_CERT_SIGN: u16 = 1 << 5;

/// The keyUsage flags as RFC 5280 names them, comma-separated (`none` when no bit is set).
fn key_usage_list(flags: u16) -> String {
    let names: Vec<&str> = KEY_USAGE_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| flags & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// What a leaf's keyUsage allows, when TLS can use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyUsageOk {
    /// No keyUsage extension: the key may be used for anything.
    Absent,
    /// The extension allows digitalSignature; the flags it lists.
    Allows(String),
}

/// Whether the leaf's keyUsage (when present) allows the signature TLS needs of its key, for
/// every side `usage` needs. Every TLS 1.3 handshake, every ECDHE handshake and every client's
/// CertificateVerify is a signature by the leaf's key (RFC 8446 §4.4.2.2, RFC 5246 §7.4.2), so
/// the rule is the same for every key type: digitalSignature. keyEncipherment alone serves only
/// static-RSA key exchange (TLS 1.2 `TLS_RSA_*` suites), which TLS 1.3, rustls (and so
/// certgate's self-handshake) and modern client defaults do not offer: such a leaf is refused
/// too. `key_algorithm` is the leaf's key as [`super::inspect`] names it.
pub(crate) fn tls_key_usage(
    leaf: &[u8],
    key_algorithm: &str,
    usage: Usage,
) -> Result<KeyUsageOk, Failure> {
    let cert = match X509Certificate::from_der(leaf) {
        Ok((_, cert)) => cert,
        Err(e) => {
            return Err(Failure::NonConforming {
                role: Role::Leaf,
                subject: String::new(),
                detail: format!("it does not parse as X.509 ({e})"),
            })
        }
    };
    let flags = match cert.key_usage() {
        Ok(None) => return Ok(KeyUsageOk::Absent),
        Ok(Some(ku)) => ku.value.flags,
        Err(e) => {
            return Err(Failure::NonConforming {
                role: Role::Leaf,
                subject: cert.subject().to_string(),
                detail: format!("its keyUsage extension is malformed or repeated ({e})"),
            })
        }
    };
    key_usage_verdict(flags, key_algorithm, usage)
}

/// [`tls_key_usage`] on the flags: pure, for tests.
fn key_usage_verdict(flags: u16, key_algorithm: &str, usage: Usage) -> Result<KeyUsageOk, Failure> {
    if flags & DIGITAL_SIGNATURE != 0 {
        return Ok(KeyUsageOk::Allows(key_usage_list(flags)));
    }
    let rsa = key_algorithm.starts_with("RSA");
    let mut needs = Vec::new();
    let mut refused_by = Vec::new();
    if usage.server() {
        if rsa {
            needs.push(
                "its RSA key needs for ECDHE and TLS 1.3 server handshakes (keyEncipherment \
                 serves only static-RSA key exchange, which TLS 1.3 and rustls lack)"
                    .to_string(),
            );
            refused_by.push(
                "clients that enforce key usage (Firefox/NSS, Java, Chrome) refuse it as a \
                 server certificate",
            );
        } else {
            needs.push(format!(
                "its {key_algorithm} key needs to sign every TLS handshake as a server"
            ));
            refused_by.push(
                "OpenSSL-based servers (nginx, HAProxy) cannot use it for TLS 1.2 and clients \
                 that check key usage (Firefox/NSS, Chrome, Java) refuse it as a server \
                 certificate",
            );
        }
    }
    if usage.client() {
        needs.push("a client certificate needs to sign CertificateVerify".to_string());
        refused_by.push(if flags & KEY_AGREEMENT == 0 {
            "servers verifying client certificates with OpenSSL (nginx, HAProxy) or Java refuse \
             it as a client certificate"
        } else {
            "servers verifying client certificates with Java or NSS refuse it as a client \
             certificate (OpenSSL lets keyAgreement stand in)"
        });
    }
    Err(Failure::KeyUsage {
        present: key_usage_list(flags),
        needs: needs.join(", and "),
        refused_by: refused_by.join("; "),
    })
}

// === Refusals on a verified path ===

/// The extensions a trust anchor may mark critical: the ones certgate processes (webpki's, as
/// for every other certificate) that OpenSSL 3 handles too — keyUsage, subjectAltName,
/// basicConstraints, nameConstraints, cRLDistributionPoints, extKeyUsage.
const ANCHOR_CRITICAL_OK: [&str; 6] = [
    "2.5.29.15",
    "2.5.29.17",
    "2.5.29.19",
    "2.5.29.30",
    "2.5.29.31",
    "2.5.29.37",
];

/// Why OpenSSL 3 (or RFC 5280 where OpenSSL is lax) refuses `path` — leaf first, anchor last,
/// as webpki or [`rfc5280_path`] verified it for `side` — or `None`. The anchor is judged
/// first, then each CA, then each link's AuthorityKeyIdentifier from the leaf up.
pub(crate) fn path_refusal(path: &[&[u8]], side: Side) -> Option<Failure> {
    let mut certs = Vec::with_capacity(path.len());
    for (i, der) in path.iter().enumerate() {
        let role = role_at(i, path.len());
        match X509Certificate::from_der(der) {
            Ok((_, cert)) => certs.push(cert),
            Err(e) => {
                return Some(Failure::NonConforming {
                    role,
                    subject: String::new(),
                    detail: format!("it does not parse as X.509 ({e})"),
                })
            }
        }
    }
    if certs.len() < 2 {
        return None;
    }
    let anchor = certs.last()?;
    let refuse = |i: usize, detail: String| {
        Some(Failure::NonConforming {
            role: role_at(i, certs.len()),
            subject: certs
                .get(i)
                .map(|c| c.subject().to_string())
                .unwrap_or_default(),
            detail,
        })
    };
    let top = certs.len() - 1;
    if let Some(why) = anchor_problem(anchor) {
        return refuse(top, why);
    }
    if let Some(f) = anchor_eku_refusal(anchor, side) {
        return Some(f);
    }
    let below: Vec<bool> = certs[1..top]
        .iter()
        .map(|c| !names_equal(c.subject(), c.issuer()))
        .collect();
    if let Some(why) = path_len_exceeded(anchor, &below) {
        return refuse(top, why);
    }
    for (i, ca) in certs.iter().enumerate().skip(1).take(top.saturating_sub(1)) {
        if let Some(why) = ca_key_usage_problem(ca).or_else(|| empty_subject(ca)) {
            return refuse(i, why);
        }
    }
    for i in 0..top {
        if let Some(why) = akid_mismatch(&certs[i], &certs[i + 1], false) {
            return refuse(i, why);
        }
    }
    None
}

/// What a position in a path is: 0 the leaf, the last the anchor.
fn role_at(i: usize, len: usize) -> Role {
    match i {
        0 => Role::Leaf,
        i if i + 1 == len => Role::Anchor,
        _ => Role::Intermediate,
    }
}

/// Why OpenSSL 3 (or RFC 5280 where OpenSSL is lax) will not use `der` as a trust anchor,
/// whatever the chain: for the trust-bundle check to warn early.
pub(crate) fn anchor_refusal(der: &[u8]) -> Option<String> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => anchor_problem(&cert),
        Err(e) => Some(format!("it does not parse as X.509 ({e})")),
    }
}

fn anchor_problem(cert: &X509Certificate<'_>) -> Option<String> {
    if let Some(ext) = cert
        .extensions()
        .iter()
        .find(|e| e.critical && !ANCHOR_CRITICAL_OK.contains(&e.oid.to_id_string().as_str()))
    {
        let oid = ext.oid.to_id_string();
        return Some(match oid.as_str() {
            "2.5.29.35" | "2.5.29.14" => {
                let (name, section) = if oid == "2.5.29.35" {
                    ("AuthorityKeyIdentifier", "4.2.1.1")
                } else {
                    ("SubjectKeyIdentifier", "4.2.1.2")
                };
                format!(
                    "its {name} extension is marked critical, which RFC 5280 §{section} \
                     forbids; OpenSSL 3 refuses it as an unhandled critical extension"
                )
            }
            _ => format!(
                "critical extension {oid} is not one certgate processes, and a critical \
                 extension a verifier does not process must be refused (RFC 5280 §4.2); \
                 OpenSSL 3 refuses it as an unhandled critical extension"
            ),
        });
    }
    // Only a self-issued anchor's AuthorityKeyIdentifier must name itself: an intermediate
    // given as an anchor names its own issuer.
    anchor_ca_problem(cert)
        .or_else(|| empty_subject(cert))
        .or_else(|| {
            names_equal(cert.subject(), cert.issuer())
                .then(|| akid_mismatch(cert, cert, true))
                .flatten()
        })
}

/// OpenSSL's `X509_check_ca` on a root, plus RFC 5280 §4.2.1.3's keyCertSign ⇒ cA rule (which
/// OpenSSL applies with `-x509_strict`).
fn anchor_ca_problem(cert: &X509Certificate<'_>) -> Option<String> {
    if let Some(why) = ca_key_usage_problem(cert) {
        return Some(why);
    }
    let bc = match cert.basic_constraints() {
        Ok(bc) => bc.map(|b| b.value.ca),
        Err(e) => {
            return Some(format!(
                "its basicConstraints extension is malformed or repeated ({e})"
            ))
        }
    };
    let has_ku = matches!(cert.key_usage(), Ok(Some(_)));
    match (bc, has_ku) {
        (Some(true), _) => None,
        (Some(false), _) => Some(
            "its basicConstraints says it is not a CA (cA FALSE), so it cannot issue \
             certificates (RFC 5280 §4.2.1.9); OpenSSL 3: invalid CA certificate"
                .into(),
        ),
        // A version 1 root has no extensions at all; OpenSSL and webpki accept one.
        (None, _) if cert.version().0 == 0 => None,
        (None, true) => Some(
            "it asserts keyCertSign without basicConstraints cA TRUE, which RFC 5280 \
             §4.2.1.3 forbids (OpenSSL 3 refuses it with -x509_strict)"
                .into(),
        ),
        (None, false) => Some(
            "it has no basicConstraints extension marking it a CA (RFC 5280 §4.2.1.9); \
             OpenSSL 3: invalid CA certificate"
                .into(),
        ),
    }
}

/// A CA whose keyUsage lacks keyCertSign cannot sign certificates (RFC 5280 §4.2.1.3 and
/// §6.1.4 (n)); OpenSSL refuses it as an invalid CA. webpki ignores keyUsage.
fn ca_key_usage_problem(cert: &X509Certificate<'_>) -> Option<String> {
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.flags & KEY_CERT_SIGN == 0 => Some(format!(
            "its keyUsage ({}) lacks keyCertSign, so it may not sign certificates (RFC 5280 \
             §4.2.1.3); OpenSSL 3: invalid CA certificate",
            key_usage_list(ku.value.flags)
        )),
        Ok(_) => None,
        Err(e) => Some(format!(
            "its keyUsage extension is malformed or repeated ({e})"
        )),
    }
}

fn empty_subject(cert: &X509Certificate<'_>) -> Option<String> {
    (cert.subject().iter().next().is_none()).then(|| {
        "its subject is empty; RFC 5280 §4.1.2.6 requires a CA's subject to be a non-empty \
         distinguished name (OpenSSL 3 refuses it with -x509_strict)"
            .into()
    })
}

/// OpenSSL 3 checks a root's extendedKeyUsage against the purpose; webpki ignores an anchor's.
fn anchor_eku_refusal(cert: &X509Certificate<'_>, side: Side) -> Option<Failure> {
    let eku = match cert.extended_key_usage() {
        Ok(Some(eku)) => eku.value,
        _ => return None,
    };
    if side.has_eku(eku) {
        return None;
    }
    Some(Failure::WrongUsage {
        role: Role::Anchor,
        subject: cert.subject().to_string(),
        side: side.as_str(),
        needed: side.eku_name(),
        present: eku_list(eku),
        refused_by: side.eku_refused_by(),
    })
}

/// The extended key usages, comma-separated, as RFC 5280 names them (`none` when empty).
pub(crate) fn eku_list(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> String {
    let mut names: Vec<String> = [
        (eku.any, "anyExtendedKeyUsage"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| name.to_string())
    .collect();
    names.extend(eku.other.iter().map(|oid| oid.to_id_string()));
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A root's pathLenConstraint, which OpenSSL enforces and webpki ignores, against the
/// intermediates under it: `not_self_issued` has one entry per intermediate. Self-issued
/// intermediates do not count (RFC 5280 §4.2.1.9).
fn path_len_exceeded(anchor: &X509Certificate<'_>, not_self_issued: &[bool]) -> Option<String> {
    let limit = match anchor.basic_constraints() {
        Ok(Some(bc)) => bc.value.path_len_constraint?,
        _ => return None,
    };
    let counted = not_self_issued.iter().filter(|c| **c).count();
    (counted as u64 > u64::from(limit)).then(|| {
        format!(
            "its pathLenConstraint {limit} allows {limit} intermediate(s) under it and the \
             chain has {counted} (RFC 5280 §4.2.1.9, self-issued ones not counted); OpenSSL 3: \
             path length constraint exceeded"
        )
    })
}

/// OpenSSL's `X509_check_akid(issuer, cert)`: the AuthorityKeyIdentifier of `cert`, when it
/// has one, must identify `issuer` — its keyid the issuer's SubjectKeyIdentifier (when the
/// issuer has one), its serial the issuer's serial, its first directory name the issuer's
/// issuer. OpenSSL does not take a certificate whose AKI disagrees as the issuer (for a root:
/// as self-signed), so the chain does not build.
fn akid_mismatch(
    cert: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    root: bool,
) -> Option<String> {
    let akid = cert.extensions().iter().find_map(|e| {
        if e.oid != OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER {
            return None;
        }
        match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(akid) => Some(akid),
            _ => None,
        }
    })?;
    let whose = if root {
        "its own".to_string()
    } else {
        format!("its issuer {:?}'s", issuer.subject().to_string())
    };
    let consequence = if root {
        "a root's AuthorityKeyIdentifier must identify the root itself (RFC 5280 §4.2.1.1); \
         OpenSSL 3 does not take it as self-signed and finds no issuer for it"
    } else {
        "RFC 5280 §4.2.1.1; OpenSSL 3 does not take that certificate as its issuer and finds \
         no issuer for it"
    };
    if let (Some(keyid), Some(skid)) = (&akid.key_identifier, subject_key_id(issuer)) {
        if keyid.0 != skid {
            return Some(format!(
                "its AuthorityKeyIdentifier keyid {} is not {whose} SubjectKeyIdentifier {}: \
                 {consequence}",
                hex(keyid.0),
                hex(skid)
            ));
        }
    }
    if let Some(serial) = akid.authority_cert_serial {
        if serial != issuer.raw_serial() {
            return Some(format!(
                "its AuthorityKeyIdentifier names serial {}, not {whose} serial {}: \
                 {consequence}",
                hex(serial),
                hex(issuer.raw_serial())
            ));
        }
    }
    let named = akid
        .authority_cert_issuer
        .iter()
        .flatten()
        .find_map(|name| match name {
            GeneralName::DirectoryName(dn) => Some(dn),
            _ => None,
        });
    if let Some(named) = named {
        if !names_equal(named, issuer.issuer()) {
            return Some(format!(
                "its AuthorityKeyIdentifier names authority issuer {:?}, not {whose} issuer \
                 {:?}: {consequence}",
                named.to_string(),
                issuer.issuer().to_string()
            ));
        }
    }
    None
}

fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions().iter().find_map(|e| {
        if e.oid != OID_X509_EXT_SUBJECT_KEY_IDENTIFIER {
            return None;
        }
        match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        }
    })
}

// === Paths webpki refuses and RFC 5280 accepts ===

/// At most this many intermediates on a path (webpki's own limit).
const MAX_INTERMEDIATES: usize = 6;
/// At most this many candidate paths are verified again.
const MAX_CANDIDATES: usize = 32;
/// At most this many steps of the search for them: a chain file of many certificates of one
/// name cannot make the search explode (webpki bounds its own the same way).
const MAX_SEARCH_STEPS: usize = 2_000;

/// Whether the material holds what webpki refuses but RFC 5280 and OpenSSL accept, so that a
/// refusal by webpki is worth [`rfc5280_path`]: a CA (intermediate or anchor) with a
/// directoryName name constraint, or a self-issued intermediate.
pub(crate) fn webpki_departs(intermediates: &[CertificateDer<'_>], anchors: &[&[u8]]) -> bool {
    let cas = intermediates
        .iter()
        .map(|c| c.as_ref())
        .chain(anchors.iter().copied());
    for der in cas {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            continue;
        };
        let dir_constraint = name_constraints_value(&cert)
            .and_then(|v| tlv(v).map(|t| t.contents))
            .and_then(split_directory_names)
            .is_some_and(|s| !s.permitted.is_empty() || !s.excluded.is_empty());
        if dir_constraint {
            return true;
        }
    }
    intermediates.iter().any(|c| {
        X509Certificate::from_der(c.as_ref())
            .is_ok_and(|(_, cert)| names_equal(cert.subject(), cert.issuer()))
    })
}

/// A path [`rfc5280_path`] verified: indexes into the intermediates and the anchors given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RfcPath {
    /// The intermediates, leaf side first.
    pub(crate) intermediates: Vec<usize>,
    /// The anchor.
    pub(crate) anchor: usize,
}

/// One CA certificate that may sit on a path.
struct Node<'a> {
    /// Parsed by x509-parser.
    cert: X509Certificate<'a>,
    /// Subject and issuer as webpki compares them (the Name's content bytes).
    subject: &'a [u8],
    issuer: &'a [u8],
    /// The subjectPublicKeyInfo's content bytes.
    spki: &'a [u8],
    /// For an intermediate: whether webpki parses it as it parses every certificate it
    /// verifies (version 3, no unknown critical extension, no repeated extension, ≤ 64 KiB).
    strict_ok: bool,
    self_issued: bool,
}

impl<'a> Node<'a> {
    fn parse(der: &'a [u8], anchor: bool) -> Option<Self> {
        let (rest, cert) = X509Certificate::from_der(der).ok()?;
        if !rest.is_empty() {
            return None;
        }
        let tbs = &cert.tbs_certificate;
        let subject = tlv(tbs.subject.as_raw())?.contents;
        let issuer = tlv(tbs.issuer.as_raw())?.contents;
        let spki = tlv(tbs.subject_pki.raw)?.contents;
        let strict_ok =
            anchor || webpki::EndEntityCert::try_from(&CertificateDer::from(der)).is_ok();
        let self_issued = names_equal(cert.subject(), cert.issuer());
        Some(Self {
            cert,
            subject,
            issuer,
            spki,
            strict_ok,
            self_issued,
        })
    }
}

/// Verifies the leaf's path again, per RFC 5280 where webpki departs from it (see the module
/// docs), for every side. `None` when no path verifies; `Some(Err(_))` when one verifies but
/// [`path_refusal`] refuses it (and none other passes); `Some(Ok(_))` with the first that
/// passes everything.
///
/// The leaf's link — its signature, validity, basicConstraints, extendedKeyUsage and every
/// name constraint webpki implements, from each CA above — is verified by webpki, with the
/// leaf's issuer as its anchor. Each CA link is verified here: a signature by the ring
/// algorithms rustls gives webpki, webpki's parser, validity, basicConstraints cA,
/// extendedKeyUsage, pathLenConstraint (self-issued intermediates not counted) and
/// directoryName constraints (self-issued intermediates exempt; the leaf never is). Refused:
/// a path where a constraint of another name form would apply to an intermediate's
/// subjectAltName, which this does not implement.
pub(crate) fn rfc5280_path(
    ee: &webpki::EndEntityCert<'_>,
    leaf: &[u8],
    intermediates: &[CertificateDer<'_>],
    anchors: &[&[u8]],
    sides: &[Side],
    now: i64,
) -> Option<Result<RfcPath, Failure>> {
    let leaf_node = Node::parse(leaf, false)?;
    let inters: Vec<Option<Node<'_>>> = intermediates
        .iter()
        .map(|c| Node::parse(c.as_ref(), false))
        .collect();
    let roots: Vec<Option<Node<'_>>> = anchors.iter().map(|d| Node::parse(d, true)).collect();

    let mut search = Search {
        leaf: &leaf_node,
        inters: &inters,
        roots: &roots,
        path: Vec::new(),
        out: Vec::new(),
        steps: MAX_SEARCH_STEPS,
    };
    search.from(leaf_node.issuer);
    let candidates = search.out;

    let mut refused = None;
    for (chain, anchor) in candidates {
        let mut nodes: Vec<&Node<'_>> = vec![&leaf_node];
        nodes.extend(
            chain
                .iter()
                .filter_map(|i| inters.get(*i).and_then(Option::as_ref)),
        );
        let Some(root) = roots.get(anchor).and_then(Option::as_ref) else {
            continue;
        };
        nodes.push(root);
        if nodes.len() != chain.len() + 2 || !verify_candidate(ee, &nodes, sides, now) {
            continue;
        }
        let mut ders: Vec<&[u8]> = vec![leaf];
        ders.extend(
            chain
                .iter()
                .filter_map(|i| intermediates.get(*i).map(|c| c.as_ref())),
        );
        let Some(anchor_der) = anchors.get(anchor) else {
            continue;
        };
        ders.push(anchor_der);
        match sides.iter().find_map(|side| path_refusal(&ders, *side)) {
            None => {
                return Some(Ok(RfcPath {
                    intermediates: chain,
                    anchor,
                }))
            }
            Some(f) => {
                refused.get_or_insert(f);
            }
        }
    }
    refused.map(Err)
}

/// The search for candidate paths, as webpki builds them: by issuer name, no intermediate
/// twice, none with the subject and key of one already on the path (RFC 4158 §5.2), at most
/// [`MAX_INTERMEDIATES`], [`MAX_CANDIDATES`] paths and [`MAX_SEARCH_STEPS`] steps.
struct Search<'s, 'a> {
    leaf: &'s Node<'a>,
    inters: &'s [Option<Node<'a>>],
    roots: &'s [Option<Node<'a>>],
    /// The intermediates on the path so far, leaf side first.
    path: Vec<usize>,
    /// Complete paths: intermediates and anchor.
    out: Vec<(Vec<usize>, usize)>,
    steps: usize,
}

impl Search<'_, '_> {
    /// Extends the path, whose last certificate names `issuer`.
    fn from(&mut self, issuer: &[u8]) {
        for (a, root) in self.roots.iter().enumerate() {
            if self.out.len() >= MAX_CANDIDATES {
                return;
            }
            if root.as_ref().is_some_and(|r| r.subject == issuer) {
                self.out.push((self.path.clone(), a));
            }
        }
        if self.path.len() >= MAX_INTERMEDIATES {
            return;
        }
        for (i, node) in self.inters.iter().enumerate() {
            if self.out.len() >= MAX_CANDIDATES || self.steps == 0 {
                return;
            }
            self.steps -= 1;
            let Some(node) = node else { continue };
            if node.subject != issuer || self.path.contains(&i) {
                continue;
            }
            let seen = std::iter::once(self.leaf)
                .chain(
                    self.path
                        .iter()
                        .filter_map(|p| self.inters.get(*p).and_then(Option::as_ref)),
                )
                .any(|prev| prev.subject == node.subject && prev.spki == node.spki);
            if seen {
                continue;
            }
            self.path.push(i);
            self.from(node.issuer);
            self.path.pop();
        }
    }
}

/// Every check of [`rfc5280_path`] on one candidate: `nodes` is leaf, intermediates, anchor.
fn verify_candidate(
    ee: &webpki::EndEntityCert<'_>,
    nodes: &[&Node<'_>],
    sides: &[Side],
    now: i64,
) -> bool {
    let (Some(leaf), Some(issuer)) = (nodes.first(), nodes.get(1)) else {
        return false;
    };
    let top = nodes.len() - 1;
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;

    // Each CA link: parser, validity, CA, extendedKeyUsage, then the issuer's signature.
    for (i, ca) in nodes.iter().enumerate().take(top).skip(1) {
        let valid = ca.cert.validity();
        let (from, until) = (valid.not_before.timestamp(), valid.not_after.timestamp());
        let in_window = from <= now && now <= until;
        let is_ca = matches!(ca.cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        // As webpki: an extendedKeyUsage, when present, is not empty and has every purpose.
        let eku_ok = match ca.cert.extended_key_usage() {
            Ok(None) => true,
            Ok(Some(eku)) => {
                eku_list(eku.value) != "none" && sides.iter().all(|s| s.has_eku(eku.value))
            }
            Err(_) => false,
        };
        let Some(signer) = nodes.get(i + 1) else {
            return false;
        };
        let link_ok = ca.strict_ok
            && in_window
            && is_ca
            && eku_ok
            && signed_by(ca.cert.as_raw(), signer.spki, algs);
        if !link_ok {
            return false;
        }
    }

    // pathLenConstraint of each intermediate, counting what is under it and not self-issued
    // (the anchor's is path_refusal's).
    for j in 1..top {
        let limit = match nodes[j].cert.basic_constraints() {
            Ok(Some(bc)) => bc.value.path_len_constraint,
            _ => None,
        };
        let counted = nodes[1..j].iter().filter(|n| !n.self_issued).count();
        if limit.is_some_and(|l| counted as u64 > u64::from(l)) {
            return false;
        }
    }

    // Name constraints of every CA: directoryName ones here, the others on the leaf by webpki.
    let mut leaf_constraints: Vec<Option<Vec<u8>>> = Vec::new();
    for (j, ca) in nodes.iter().enumerate().skip(1) {
        let Some(value) = name_constraints_value(&ca.cert) else {
            continue;
        };
        let Some(split) = tlv(value)
            .map(|t| t.contents)
            .and_then(split_directory_names)
        else {
            return false;
        };
        for (i, below) in nodes.iter().enumerate().take(j) {
            if i > 0 && below.self_issued {
                continue;
            }
            if !split.admits(below.cert.subject()) {
                return false;
            }
            if i > 0 && split.others.is_some() && has_san_entries(&below.cert) {
                return false;
            }
        }
        leaf_constraints.push(split.others);
    }
    if leaf_constraints.is_empty() {
        leaf_constraints.push(None);
    }

    // The leaf's link, by webpki, once per CA's remaining constraints and per side; then
    // webpki's distrust list for the CAs above the leaf's issuer.
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
    for side in sides {
        for constraints in &leaf_constraints {
            let anchor = TrustAnchor {
                subject: issuer.subject.into(),
                subject_public_key_info: issuer.spki.into(),
                name_constraints: constraints.as_deref().map(Into::into),
            };
            if ee
                .verify_for_usage(algs, &[anchor], &[], now, side.eku(), None, None)
                .is_err()
            {
                return false;
            }
        }
        for ca in nodes.iter().skip(2) {
            if distrusted(ee, leaf.issuer, ca.spki, *side, now, algs) {
                return false;
            }
        }
    }
    true
}

/// Whether webpki's list of distrusted keys holds `spki` (content bytes). The list is private
/// to webpki, which consults it for every anchor whose subject matches before verifying a
/// signature: an anchor with the leaf's issuer name and this key tells (the signature check
/// that follows fails either way). Called only once the leaf's own link has verified.
fn distrusted(
    ee: &webpki::EndEntityCert<'_>,
    leaf_issuer: &[u8],
    spki: &[u8],
    side: Side,
    now: UnixTime,
    algs: &[&dyn SignatureVerificationAlgorithm],
) -> bool {
    let probe = TrustAnchor {
        subject: leaf_issuer.into(),
        subject_public_key_info: spki.into(),
        name_constraints: None,
    };
    matches!(
        ee.verify_for_usage(algs, &[probe], &[], now, side.eku(), None, None),
        Err(webpki::Error::CertDistrusted)
    )
}

fn has_san_entries(cert: &X509Certificate<'_>) -> bool {
    !matches!(cert.subject_alternative_name(), Ok(None))
}

/// The nameConstraints extension's value (the NameConstraints SEQUENCE), if present.
fn name_constraints_value<'a>(cert: &X509Certificate<'a>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find(|e| e.oid == OID_X509_EXT_NAME_CONSTRAINTS)
        .map(|e| e.value)
}

/// Whether `der` carries a signature by the key `issuer_spki` (the subjectPublicKeyInfo's
/// content bytes) with one of `algs`, matched by algorithm identifiers as webpki matches them.
fn signed_by(der: &[u8], issuer_spki: &[u8], algs: &[&dyn SignatureVerificationAlgorithm]) -> bool {
    let Some(parts) = signed_parts(der) else {
        return false;
    };
    let Some(key) = spki_parts(issuer_spki) else {
        return false;
    };
    algs.iter()
        .filter(|a| {
            a.signature_alg_id().as_ref() == parts.algorithm
                && a.public_key_alg_id().as_ref() == key.algorithm
        })
        .any(|a| {
            a.verify_signature(key.key, parts.tbs, parts.signature)
                .is_ok()
        })
}

// === Directory names ===

/// A CA's name constraints split by name form: its directoryName subtrees, which certgate
/// checks, and the rest, re-encoded for webpki.
#[derive(Debug)]
struct SplitConstraints<'a> {
    permitted: Vec<X509Name<'a>>,
    excluded: Vec<X509Name<'a>>,
    /// The NameConstraints content without directoryName subtrees; `None` when nothing is left.
    others: Option<Vec<u8>>,
}

impl SplitConstraints<'_> {
    /// Whether a subject is within the permitted directoryName subtrees (when there are any)
    /// and within no excluded one (RFC 5280 §4.2.1.10). An empty subject is not checked, as
    /// OpenSSL does not.
    fn admits(&self, subject: &X509Name<'_>) -> bool {
        if subject.iter().next().is_none() {
            return true;
        }
        (self.permitted.is_empty() || self.permitted.iter().any(|b| within(subject, b)))
            && !self.excluded.iter().any(|b| within(subject, b))
    }
}

/// Splits a NameConstraints SEQUENCE's content; `None` when it does not parse.
fn split_directory_names(content: &[u8]) -> Option<SplitConstraints<'_>> {
    let mut split = SplitConstraints {
        permitted: Vec::new(),
        excluded: Vec::new(),
        others: None,
    };
    let mut others = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let field = tlv(rest)?;
        rest = field.rest;
        let (names, tag) = match field.tag {
            0xa0 => (&mut split.permitted, 0xa0),
            0xa1 => (&mut split.excluded, 0xa1),
            _ => return None,
        };
        let mut kept = Vec::new();
        let mut subtrees = field.contents;
        while !subtrees.is_empty() {
            let subtree = tlv(subtrees)?;
            subtrees = subtree.rest;
            if subtree.tag != 0x30 {
                return None;
            }
            let base = tlv(subtree.contents)?;
            if base.tag == 0xa4 {
                let (left, name) = X509Name::from_der(base.contents).ok()?;
                if !left.is_empty() {
                    return None;
                }
                names.push(name);
            } else {
                kept.extend_from_slice(subtree.whole);
            }
        }
        if !kept.is_empty() {
            push_tlv(&mut others, tag, &kept);
        }
    }
    split.others = (!others.is_empty()).then_some(others);
    Some(split)
}

/// Whether `name` is within the subtree `base`: `base`'s RDNs are its first RDNs (X.501).
fn within(name: &X509Name<'_>, base: &X509Name<'_>) -> bool {
    let name: Vec<_> = name.iter().collect();
    let base: Vec<_> = base.iter().collect();
    base.len() <= name.len() && base.iter().zip(&name).all(|(b, n)| rdn_equal(b, n))
}

/// Name equality as OpenSSL's `X509_NAME_cmp` decides it: same RDNs, string values compared
/// case-insensitively (ASCII) with white space collapsed.
fn names_equal(a: &X509Name<'_>, b: &X509Name<'_>) -> bool {
    a.as_raw() == b.as_raw() || {
        let (a, b): (Vec<_>, Vec<_>) = (a.iter().collect(), b.iter().collect());
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| rdn_equal(x, y))
    }
}

fn rdn_equal(a: &RelativeDistinguishedName<'_>, b: &RelativeDistinguishedName<'_>) -> bool {
    let (a, b): (Vec<_>, Vec<_>) = (a.iter().collect(), b.iter().collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x.attr_type() == y.attr_type() && value_equal(x, y))
}

fn value_equal(a: &AttributeTypeAndValue<'_>, b: &AttributeTypeAndValue<'_>) -> bool {
    match (a.as_str(), b.as_str()) {
        (Ok(x), Ok(y)) => canonical(x) == canonical(y),
        _ => a.attr_value().tag() == b.attr_value().tag() && a.as_slice() == b.as_slice(),
    }
}

/// OpenSSL's canonical form of a name's string value: trimmed, inner white space collapsed to
/// one space, ASCII lowercase.
fn canonical(s: &str) -> String {
    s.split_ascii_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

// === DER ===

/// One DER element.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    /// Tag, length and contents.
    whole: &'a [u8],
    /// What follows it.
    rest: &'a [u8],
}

/// Reads one DER element (low tag numbers, definite minimal lengths up to 4 bytes).
fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, after_len) = after_tag.split_first()?;
    let (len, body) = if first < 0x80 {
        (usize::from(first), after_len)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = after_len.get(..n)?;
        if bytes.first() == Some(&0) {
            return None;
        }
        let len = bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
        if len < 0x80 {
            return None;
        }
        (len, after_len.get(n..)?)
    };
    let contents = body.get(..len)?;
    let header = input.len() - body.len();
    Some(Tlv {
        tag,
        contents,
        whole: input.get(..header + len)?,
        rest: body.get(len..)?,
    })
}

/// Appends a DER element.
fn push_tlv(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(contents);
}

/// A certificate's signed parts, as webpki reads them.
struct SignedParts<'a> {
    /// The whole tbsCertificate element (what is signed).
    tbs: &'a [u8],
    /// The signatureAlgorithm's content bytes (also the tbsCertificate's `signature`).
    algorithm: &'a [u8],
    /// The signature bits.
    signature: &'a [u8],
}

fn signed_parts(der: &[u8]) -> Option<SignedParts<'_>> {
    let cert = tlv(der)?;
    if cert.tag != 0x30 || !cert.rest.is_empty() {
        return None;
    }
    let tbs = tlv(cert.contents)?;
    let algorithm = tlv(tbs.rest)?;
    let signature = tlv(algorithm.rest)?;
    if tbs.tag != 0x30 || algorithm.tag != 0x30 || signature.tag != 0x03 {
        return None;
    }
    if !signature.rest.is_empty() {
        return None;
    }
    // The algorithm inside the signed part must be the outer one (webpki refuses otherwise).
    let mut field = tlv(tbs.contents)?;
    if field.tag == 0xa0 {
        field = tlv(field.rest)?;
    }
    let inner = tlv(field.rest)?;
    if field.tag != 0x02 || inner.tag != 0x30 || inner.contents != algorithm.contents {
        return None;
    }
    let (&unused, bits) = signature.contents.split_first()?;
    (unused == 0).then_some(SignedParts {
        tbs: tbs.whole,
        algorithm: algorithm.contents,
        signature: bits,
    })
}

/// A subjectPublicKeyInfo's parts, from its content bytes.
struct SpkiParts<'a> {
    /// The AlgorithmIdentifier's content bytes.
    algorithm: &'a [u8],
    /// The subjectPublicKey bits.
    key: &'a [u8],
}

fn spki_parts(content: &[u8]) -> Option<SpkiParts<'_>> {
    let algorithm = tlv(content)?;
    let key = tlv(algorithm.rest)?;
    if algorithm.tag != 0x30 || key.tag != 0x03 || !key.rest.is_empty() {
        return None;
    }
    let (&unused, bits) = key.contents.split_first()?;
    (unused == 0).then_some(SpkiParts {
        algorithm: algorithm.contents,
        key: bits,
    })
}

#[cfg(test)]
mod tests;
