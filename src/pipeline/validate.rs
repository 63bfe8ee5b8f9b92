//! Stage 3: decide, at an explicit `now`, whether material may go live: chain to the current
//! trust bundle, expected names, key match, validity of every certificate in the built chain,
//! remaining lifetime, key strength and trust-bundle health.

use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;

use super::inspect::{inspect_cert, CertInfo, Role, San};
use super::load::Material;
use super::x509_policy::{self, KeyUsageOk, Side};
use crate::duration::format_duration;
use crate::labels::Reason;
use crate::time_fmt::rfc3339;

/// Which side of TLS the certificate must serve.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Usage {
    /// TLS server certificate (serverAuth).
    #[default]
    Server,
    /// TLS client certificate (clientAuth), for mTLS clients.
    Client,
    /// Both, as mesh workloads need for mTLS.
    Both,
}

impl Usage {
    /// Whether the certificate must work as a server certificate.
    pub fn server(self) -> bool {
        matches!(self, Self::Server | Self::Both)
    }
    /// Whether the certificate must work as a client certificate.
    pub fn client(self) -> bool {
        matches!(self, Self::Client | Self::Both)
    }
}

/// A name the leaf must cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum ExpectedName {
    /// A DNS name; wildcard SANs cover it as webpki decides.
    Dns(String),
    /// An IP address SAN.
    Ip(IpAddr),
    /// A URI SAN, matched exactly (SPIFFE IDs).
    Uri(String),
}

impl ExpectedName {
    /// Parses `spiffe://…` / `https://…` as URI, an IP literal as IP, anything else as DNS.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains("://") {
            return Ok(Self::Uri(s.to_string()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        match ServerName::try_from(s) {
            Ok(ServerName::DnsName(_)) => Ok(Self::Dns(s.to_string())),
            _ => Err(format!(
                "invalid name {s:?}: not a DNS name, IP address or URI"
            )),
        }
    }

    /// The name as a TLS server name, when it can be one.
    pub fn server_name(&self) -> Option<ServerName<'static>> {
        match self {
            Self::Dns(d) => ServerName::try_from(d.clone()).ok(),
            Self::Ip(ip) => Some(ServerName::IpAddress((*ip).into())),
            Self::Uri(_) => None,
        }
    }
}

impl fmt::Display for ExpectedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(d) => f.write_str(d),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Uri(u) => f.write_str(u),
        }
    }
}

/// What a set's material must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Server, client or both.
    pub usage: Usage,
    /// Names the leaf must cover.
    pub names: Vec<ExpectedName>,
    /// Fail material whose effective expiry is closer than this.
    pub min_remaining: Duration,
    /// Warn about trust anchors expiring within this.
    pub warn_before: Duration,
    /// The TLS versions the self-handshake (and the workload probe) must succeed with.
    pub tls_versions: super::handshake::TlsVersions,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            usage: Usage::Server,
            names: Vec::new(),
            min_remaining: Duration::ZERO,
            warn_before: Duration::from_secs(7 * 86_400),
            tls_versions: super::handshake::TlsVersions::default(),
        }
    }
}

/// Why material failed a check. Messages are for operators; [`Failure::reason`] is the stable
/// label used by metrics and `/status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// A certificate could not be parsed.
    #[error("{file}: {detail}")]
    BadEncoding {
        /// The file, as configured.
        file: String,
        /// What was wrong.
        detail: String,
    },
    /// No trust bundle was configured.
    #[error("no trust bundle configured (--trust): the chain cannot be verified")]
    NoTrustBundle,
    /// The bundle holds no certificate usable as an anchor.
    #[error("trust bundle {file}: no usable trust anchor ({detail})")]
    NoUsableAnchor {
        /// The file, as configured.
        file: String,
        /// What was wrong.
        detail: String,
    },
    /// The chain does not lead to an anchor of the bundle.
    #[error("chain does not lead to the trust bundle: issuer {issuer:?} of {subject:?} is unknown (missing intermediate or wrong CA)")]
    UnknownIssuer {
        /// The certificate's subject.
        subject: String,
        /// The issuer the certificate names.
        issuer: String,
    },
    /// A certificate of the chain has expired.
    #[error("{role} {subject:?} expired at {} (now {})", rfc3339(*not_after), rfc3339(*now))]
    Expired {
        /// Which input the file is.
        role: Role,
        /// The certificate's subject.
        subject: String,
        /// End of validity, Unix seconds.
        not_after: i64,
        /// The evaluation time, Unix seconds.
        now: i64,
    },
    /// A certificate of the chain is not valid yet.
    #[error("{role} {subject:?} is not valid before {} (now {})", rfc3339(*not_before), rfc3339(*now))]
    NotYetValid {
        /// Which input the file is.
        role: Role,
        /// The certificate's subject.
        subject: String,
        /// Start of validity, Unix seconds.
        not_before: i64,
        /// The evaluation time, Unix seconds.
        now: i64,
    },
    /// The chain is valid now but expires within the configured minimum.
    #[error("expires at {} — in {}, within min_remaining {}", rfc3339(*expiry), format_duration(*remaining), format_duration(*min_remaining))]
    ExpiringSoon {
        /// The effective expiry, Unix seconds.
        expiry: i64,
        /// Time left until the expiry.
        remaining: Duration,
        /// The configured minimum.
        min_remaining: Duration,
    },
    /// A certificate of the chain has an extendedKeyUsage without the purpose the set needs:
    /// the leaf's, or a CA's (which limits every certificate under it).
    #[error("{role} {subject:?} has extendedKeyUsage ({present}) without {needed}: {refused_by} refuse {} as a {side} certificate", if *role == Role::Leaf { "it" } else { "every leaf under it" })]
    WrongUsage {
        /// Which certificate.
        role: Role,
        /// The certificate's subject.
        subject: String,
        /// `server` or `client`.
        side: &'static str,
        /// The purpose missing: `serverAuth` or `clientAuth`.
        needed: &'static str,
        /// The certificate's extended key usages.
        present: String,
        /// Who refuses such a certificate.
        refused_by: &'static str,
    },
    /// The leaf's keyUsage forbids the signature TLS needs of its key.
    #[error("leaf's keyUsage ({present}) lacks digitalSignature, which {needs}: {refused_by}")]
    KeyUsage {
        /// The keyUsage flags present.
        present: String,
        /// What needs digitalSignature, per side.
        needs: String,
        /// Who refuses such a leaf, per side.
        refused_by: String,
    },
    /// A certificate webpki accepts but OpenSSL 3 (and RFC 5280) refuse: see
    /// [`super::x509_policy`].
    #[error("{role} {subject:?} refused: {detail}")]
    NonConforming {
        /// Which certificate.
        role: Role,
        /// The certificate's subject.
        subject: String,
        /// The rule, and who enforces it.
        detail: String,
    },
    /// A CA certificate was given as the leaf.
    #[error("leaf {subject:?} is a CA certificate, not an end-entity certificate")]
    CaAsLeaf {
        /// The certificate's subject.
        subject: String,
    },
    /// A signature in the chain does not verify.
    #[error("signature on {subject:?} does not verify with its issuer's key")]
    BadSignature {
        /// The certificate's subject.
        subject: String,
    },
    /// A key too weak for policy (RSA under 2048 bits).
    #[error("{role} {subject:?} has a {bits}-bit RSA key; at least 2048 bits are required")]
    WeakKey {
        /// Which input the file is.
        role: Role,
        /// The certificate's subject.
        subject: String,
        /// The key size, bits.
        bits: usize,
    },
    /// The leaf does not cover an expected name.
    #[error("leaf does not cover {expected} (its SANs: {presented})")]
    NameMismatch {
        /// The expected name.
        expected: String,
        /// The leaf's SANs.
        presented: String,
    },
    /// The private key is not the leaf's.
    #[error("private key does not match the leaf certificate's public key")]
    KeyMismatch,
    /// The private key cannot be used.
    #[error("private key unusable: {detail}")]
    UnsupportedKey {
        /// What was wrong.
        detail: String,
    },
    /// A certificate that parses as X.509 but that webpki refuses to use at all: an unknown
    /// critical extension, or a size over its 64 KiB limit.
    #[error("{role} {subject:?} refused by the verifier (webpki, as rustls uses it): {detail}")]
    Unverifiable {
        /// Which certificate.
        role: Role,
        /// The certificate's subject.
        subject: String,
        /// What webpki refuses about it.
        detail: String,
    },
    /// Anything else webpki refused.
    #[error("chain rejected: {detail}")]
    Chain {
        /// What was wrong.
        detail: String,
    },
    /// The loopback self-handshake failed.
    #[error("self-handshake failed: {detail}")]
    Handshake {
        /// What was wrong.
        detail: String,
    },
}

impl Failure {
    /// Stable label for metrics and `/status`.
    pub fn reason(&self) -> Reason {
        match self {
            Self::BadEncoding { .. } => Reason::BadEncoding,
            Self::NoTrustBundle => Reason::NoTrustBundle,
            Self::NoUsableAnchor { .. } => Reason::NoUsableAnchor,
            Self::UnknownIssuer { .. } => Reason::UnknownIssuer,
            Self::Expired { .. } => Reason::Expired,
            Self::NotYetValid { .. } => Reason::NotYetValid,
            Self::ExpiringSoon { .. } => Reason::ExpiringSoon,
            Self::WrongUsage { .. } => Reason::WrongUsage,
            Self::KeyUsage { .. } => Reason::KeyUsage,
            Self::CaAsLeaf { .. } => Reason::CaAsLeaf,
            Self::BadSignature { .. } => Reason::BadSignature,
            Self::WeakKey { .. } => Reason::WeakKey,
            Self::NameMismatch { .. } => Reason::NameMismatch,
            Self::KeyMismatch => Reason::KeyMismatch,
            Self::UnsupportedKey { .. } => Reason::UnsupportedKey,
            Self::Unverifiable { .. } | Self::NonConforming { .. } | Self::Chain { .. } => {
                Reason::ChainInvalid
            }
            Self::Handshake { .. } => Reason::HandshakeFailed,
        }
    }
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Passed.
    Pass,
    /// Passed with a warning.
    Warn,
    /// Failed: the material must not go live.
    Fail,
    /// Not run (nothing to check, or an earlier stage failed).
    Skip,
}

/// One named check and its result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `trust_bundle`, `chain`, `key_usage`, `names`, `key`, `strength`, `validity`,
    /// `handshake`.
    pub check: &'static str,
    /// Result.
    pub status: Status,
    /// Stable failure label, when failed.
    pub reason: Option<Reason>,
    /// What was found, for humans.
    pub message: String,
    #[serde(skip)]
    failure: Option<Failure>,
}

impl Check {
    /// A passed check.
    pub fn pass(check: &'static str, message: impl Into<String>) -> Self {
        Self::with(check, Status::Pass, message)
    }
    /// A passed check with a warning.
    pub fn warn(check: &'static str, message: impl Into<String>) -> Self {
        Self::with(check, Status::Warn, message)
    }
    /// A skipped check.
    pub fn skip(check: &'static str, message: impl Into<String>) -> Self {
        Self::with(check, Status::Skip, message)
    }
    /// A failed check.
    pub fn fail(check: &'static str, failure: Failure) -> Self {
        Self {
            check,
            status: Status::Fail,
            reason: Some(failure.reason()),
            message: failure.to_string(),
            failure: Some(failure),
        }
    }
    fn with(check: &'static str, status: Status, message: impl Into<String>) -> Self {
        Self {
            check,
            status,
            reason: None,
            message: message.into(),
            failure: None,
        }
    }
    /// The failure, when failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }
}

/// Every check's result for one candidate, plus what it learned about the chain. Only
/// [`validate`] builds one (the pipeline then adds the handshake's check), so a verdict cannot
/// be turned into a pass from outside.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    now: i64,
    checks: Vec<Check>,
    // Shared: the approved candidate, the live material and every `/status` snapshot hold
    // these very chains, not copies.
    chain: Arc<[CertInfo]>,
    anchors: Arc<[CertInfo]>,
    effective_expiry: Option<i64>,
    remaining_seconds: Option<i64>,
}

impl Verdict {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }
    /// The evaluation time, Unix seconds.
    pub fn now(&self) -> i64 {
        self.now
    }
    /// Results in order.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }
    /// The failed checks, in order.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
    /// The first failure's reason label, if any.
    pub fn first_reason(&self) -> Option<Reason> {
        self.failures().next().and_then(|c| c.reason)
    }
    /// The chain as built (leaf, intermediates used, anchor), or as given when it did not build.
    pub fn chain(&self) -> &[CertInfo] {
        &self.chain
    }
    /// The anchors of the bundle.
    pub fn anchors(&self) -> &[CertInfo] {
        &self.anchors
    }
    /// [`Verdict::chain`], shared.
    pub fn chain_shared(&self) -> Arc<[CertInfo]> {
        self.chain.clone()
    }
    /// [`Verdict::anchors`], shared.
    pub fn anchors_shared(&self) -> Arc<[CertInfo]> {
        self.anchors.clone()
    }
    /// Earliest not-after along the built chain.
    pub fn effective_expiry(&self) -> Option<i64> {
        self.effective_expiry
    }
    /// Seconds from `now` to `effective_expiry` (negative once expired).
    pub fn remaining_seconds(&self) -> Option<i64> {
        self.remaining_seconds
    }
    /// The leaf, if it parsed.
    pub fn leaf(&self) -> Option<&CertInfo> {
        self.chain.first().filter(|c| c.role == Role::Leaf)
    }
    /// Adds a later stage's check (the self-handshake).
    pub(crate) fn push(&mut self, check: Check) {
        self.checks.push(check);
    }
    /// The verdict without its checks (a passed verdict's checks are its report), sharing
    /// the chains: what an approved candidate keeps while live.
    pub(crate) fn without_checks(&self) -> Self {
        Self {
            now: self.now,
            checks: Vec::new(),
            chain: self.chain.clone(),
            anchors: self.anchors.clone(),
            effective_expiry: self.effective_expiry,
            remaining_seconds: self.remaining_seconds,
        }
    }
}

fn unix(now: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64))
}

/// Validates `material` against `policy` at `now` (Unix seconds). Never panics on any input.
pub fn validate(material: &Material, policy: &Policy, now: i64) -> Verdict {
    let mut checks = Vec::new();
    let cert_file = material.raw.cert.path.display().to_string();

    // Inspect the given chain; a certificate that does not parse ends validation here.
    let mut given = Vec::with_capacity(material.chain.len());
    for (i, der) in material.chain.iter().enumerate() {
        match inspect_cert(der, i) {
            Ok(mut info) => {
                if i == 0 && info.role != Role::Leaf && !info.is_ca {
                    info.role = Role::Leaf;
                }
                given.push(info)
            }
            Err(e) => {
                checks.push(Check::fail(
                    "chain",
                    Failure::BadEncoding {
                        file: cert_file.clone(),
                        detail: e.to_string(),
                    },
                ));
                return finish(now, checks, given, Vec::new(), None);
            }
        }
    }
    if let Some(first) = given.first_mut() {
        // Position 0 is the leaf by contract, CA or not; the chain check reports a CA leaf.
        first.role = Role::Leaf;
    }

    // Trust bundle health.
    let trust_file = material
        .raw
        .trust
        .as_ref()
        .map(|t| t.path.display().to_string());
    let bundle = trust_bundle_check(material, policy, now, &mut checks);
    let _ = &trust_file;

    // Chain.
    let mut built: Option<Vec<CertInfo>> = None;
    let ee = webpki::EndEntityCert::try_from(material.chain.leaf());
    match (&ee, bundle.anchors.is_empty()) {
        (Err(e), _) => checks.push(Check::fail(
            "chain",
            refused_certificate(material.chain.leaf(), &given[0], e).unwrap_or_else(|| {
                Failure::BadEncoding {
                    file: cert_file.clone(),
                    detail: format!("leaf: {e}"),
                }
            }),
        )),
        (Ok(_), true) => checks.push(Check::skip("chain", "no usable trust anchor")),
        (Ok(ee), false) => match verify_chain(ee, &bundle, material, &given, policy.usage, now) {
            Ok(chain) => {
                let path = chain
                    .iter()
                    .map(|c| format!("{:?}", c.subject_cn_or_subject()))
                    .collect::<Vec<_>>()
                    .join(" → ");
                checks.push(Check::pass(
                    "chain",
                    format!("verified for {} use: {path}", usage_name(policy.usage)),
                ));
                built = Some(chain);
            }
            Err(f) => checks.push(Check::fail("chain", f)),
        },
    }

    // What TLS stacks require of the leaf's keyUsage for its key type.
    checks.push(key_usage_check(
        material.chain.leaf(),
        &given[0],
        policy.usage,
    ));

    // Names.
    match (&ee, policy.names.is_empty()) {
        (_, true) => checks.push(Check::skip("names", "no expected names given")),
        (Err(_), false) => checks.push(Check::skip("names", "leaf did not parse")),
        (Ok(ee), false) => checks.push(names_check(ee, &given[0], &policy.names)),
    }

    // Key match. A leaf webpki refused has no public key rustls can read: say so, rather than
    // blame the key for it (the chain check has reported the leaf).
    checks.push(key_check(material, ee.is_ok()));

    // Key strength of every certificate we will rely on.
    let relied: &[CertInfo] = built.as_deref().unwrap_or(&given);
    checks.push(strength_check(relied));

    // Validity of every certificate in the (built) chain and remaining lifetime.
    let effective_expiry = relied.iter().map(|c| c.not_after).min();
    checks.push(validity_check(relied, effective_expiry, policy, now));

    let chain = built.unwrap_or(given);
    finish(now, checks, chain, bundle.infos, effective_expiry)
}

fn finish(
    now: i64,
    checks: Vec<Check>,
    chain: Vec<CertInfo>,
    anchors: Vec<CertInfo>,
    effective_expiry: Option<i64>,
) -> Verdict {
    Verdict {
        now,
        checks,
        chain: chain.into(),
        anchors: anchors.into(),
        effective_expiry,
        remaining_seconds: effective_expiry.map(|e| e - now),
    }
}

fn usage_name(usage: Usage) -> &'static str {
    match usage {
        Usage::Server => "server",
        Usage::Client => "client",
        Usage::Both => "server and client",
    }
}

impl CertInfo {
    fn subject_cn_or_subject(&self) -> &str {
        if self.subject_cn.is_empty() {
            &self.subject
        } else {
            &self.subject_cn
        }
    }
}

/// The trust bundle's usable anchors, each with its description and its DER.
struct Bundle<'a> {
    anchors: Vec<rustls_pki_types::TrustAnchor<'a>>,
    infos: Vec<CertInfo>,
    ders: Vec<&'a [u8]>,
}

fn trust_bundle_check<'a>(
    material: &'a Material,
    policy: &Policy,
    now: i64,
    checks: &mut Vec<Check>,
) -> Bundle<'a> {
    let mut bundle = Bundle {
        anchors: Vec::new(),
        infos: Vec::new(),
        ders: Vec::new(),
    };
    let Some(trust) = material.raw.trust.as_ref() else {
        checks.push(Check::fail("trust_bundle", Failure::NoTrustBundle));
        return bundle;
    };
    let file = trust.path.display().to_string();
    let mut notes = Vec::new();
    let (mut expired, mut unusable) = (0, 0);
    for (i, der) in material.trust.iter().enumerate() {
        let info = match inspect_cert(der, i) {
            Ok(mut info) => {
                info.role = Role::Anchor;
                info
            }
            Err(e) => {
                unusable += 1;
                notes.push(format!("{e}"));
                continue;
            }
        };
        match webpki::anchor_from_trusted_cert(der) {
            Ok(anchor) => {
                if info.not_after < now {
                    expired += 1;
                    notes.push(format!(
                        "anchor {:?} expired at {}",
                        info.subject_cn_or_subject(),
                        rfc3339(info.not_after)
                    ));
                } else if info.not_after - now < policy.warn_before.as_secs() as i64 {
                    notes.push(format!(
                        "anchor {:?} expires at {}",
                        info.subject_cn_or_subject(),
                        rfc3339(info.not_after)
                    ));
                }
                // Kept, so the chain check names the rule when a chain leads to it.
                if let Some(why) = x509_policy::anchor_refusal(der) {
                    notes.push(format!(
                        "anchor {:?} will be refused: {why}",
                        info.subject_cn_or_subject()
                    ));
                }
                bundle.anchors.push(anchor.to_owned());
                bundle.infos.push(info);
                bundle.ders.push(der.as_ref());
            }
            Err(e) => {
                unusable += 1;
                let why = refusal_detail(der, &e).unwrap_or_else(|| e.to_string());
                notes.push(format!("certificate #{i} unusable as anchor: {why}"));
            }
        }
    }
    let usable = bundle.anchors.len() - expired;
    let summary = format!("{} anchor(s), {usable} usable now", material.trust.len());
    if usable == 0 {
        let detail = if notes.is_empty() {
            "bundle is empty".to_string()
        } else {
            notes.join("; ")
        };
        checks.push(Check::fail(
            "trust_bundle",
            Failure::NoUsableAnchor { file, detail },
        ));
    } else if notes.is_empty() && unusable == 0 {
        checks.push(Check::pass("trust_bundle", summary));
    } else {
        checks.push(Check::warn(
            "trust_bundle",
            format!("{summary}: {}", notes.join("; ")),
        ));
    }
    bundle
}

/// Path building for every side the set needs (see [`verify_path`]), with webpki's refusals
/// named. Returns the chain as built, for the first side.
fn verify_chain(
    ee: &webpki::EndEntityCert<'_>,
    bundle: &Bundle<'_>,
    material: &Material,
    given: &[CertInfo],
    usage: Usage,
    now: i64,
) -> Result<Vec<CertInfo>, Failure> {
    let mut chain = Vec::new();
    for side in Side::of(usage) {
        let path = verify_path(
            ee,
            material.chain.leaf().as_ref(),
            material.chain.intermediates(),
            bundle,
            side,
            now,
        )
        .map_err(|refused| match refused {
            PathRefused::Rule(f) => f,
            PathRefused::Webpki(e) => map_webpki_error(
                e,
                material.chain.as_slice(),
                given,
                &bundle.infos,
                side,
                now,
            ),
        })?;
        if chain.is_empty() {
            chain.push(given[0].clone());
            // `given` is the chain file in order: the intermediates are its positions 1…
            for info in path.intermediates.iter().filter_map(|i| given.get(i + 1)) {
                let mut info = info.clone();
                info.role = Role::Intermediate;
                chain.push(info);
            }
            if let Some(info) = path.anchor.and_then(|i| bundle.infos.get(i)) {
                chain.push(info.clone());
            }
        }
    }
    Ok(chain)
}

/// A path that verified: the intermediates it uses (indexes into those given, leaf side
/// first) and its anchor (an index into the bundle).
struct BuiltPath {
    intermediates: Vec<usize>,
    anchor: Option<usize>,
}

/// Why no path verified.
enum PathRefused {
    /// A path verified but a rule of [`x509_policy`] refuses it (and no other passed).
    Rule(Failure),
    /// webpki's refusal, the most specific over every path it tried.
    Webpki(webpki::Error),
}

/// The one path verification validation and the self-handshake share, for one side: webpki
/// builds and verifies the path, and [`x509_policy::path_refusal`] may refuse one it verified
/// (webpki then tries the others). When webpki refuses material it departs from RFC 5280 on,
/// [`x509_policy::rfc5280_path`] verifies it again.
fn verify_path(
    ee: &webpki::EndEntityCert<'_>,
    leaf: &[u8],
    intermediates: &[CertificateDer<'_>],
    bundle: &Bundle<'_>,
    side: Side,
    now: i64,
) -> Result<BuiltPath, PathRefused> {
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let refused: RefCell<Option<Failure>> = RefCell::new(None);
    let rules = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        let mut ders: Vec<&[u8]> = vec![leaf];
        let inters: Vec<CertificateDer<'_>> =
            path.intermediate_certificates().map(|c| c.der()).collect();
        ders.extend(inters.iter().map(|c| c.as_ref()));
        let anchor = bundle_position(bundle, path.anchor());
        ders.extend(anchor.and_then(|i| bundle.ders.get(i)).copied());
        match x509_policy::path_refusal(&ders, side) {
            None => Ok(()),
            Some(f) => {
                refused.borrow_mut().get_or_insert(f);
                // The lowest-ranked error: webpki reports any other refusal before it.
                Err(webpki::Error::UnknownIssuer)
            }
        }
    };
    let verified = ee.verify_for_usage(
        algs,
        &bundle.anchors,
        intermediates,
        unix(now),
        side.eku(),
        None,
        Some(&rules),
    );
    match verified {
        Ok(path) => Ok(BuiltPath {
            intermediates: path
                .intermediate_certificates()
                .filter_map(|c| {
                    let der = c.der();
                    intermediates
                        .iter()
                        .position(|i| i.as_ref() == der.as_ref())
                })
                .collect(),
            anchor: bundle_position(bundle, path.anchor()),
        }),
        Err(e) => {
            let retried = x509_policy::webpki_departs(intermediates, &bundle.ders)
                .then(|| {
                    x509_policy::rfc5280_path(ee, leaf, intermediates, &bundle.ders, &[side], now)
                })
                .flatten();
            match retried {
                Some(Ok(p)) => Ok(BuiltPath {
                    intermediates: p.intermediates,
                    anchor: Some(p.anchor),
                }),
                Some(Err(f)) => Err(PathRefused::Rule(f)),
                None => Err(match refused.into_inner() {
                    Some(f) => PathRefused::Rule(f),
                    None => PathRefused::Webpki(e),
                }),
            }
        }
    }
}

/// Verifies a chain presented in a TLS handshake for `side`, as validation verifies a chain
/// (see [`verify_path`]), against the bundle `trust`: for the self-handshake's verifiers
/// ([`super::verifier`]), so that the handshake and validation cannot disagree.
pub(crate) fn verify_presented(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    trust: &[CertificateDer<'_>],
    side: Side,
    now: UnixTime,
) -> Result<(), String> {
    let ee = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| format!("{} certificate: {e:?}", side.as_str()))?;
    let mut bundle = Bundle {
        anchors: Vec::new(),
        infos: Vec::new(),
        ders: Vec::new(),
    };
    for der in trust {
        if let Ok(anchor) = webpki::anchor_from_trusted_cert(der) {
            bundle.anchors.push(anchor.to_owned());
            bundle.ders.push(der.as_ref());
        }
    }
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    verify_path(&ee, end_entity.as_ref(), intermediates, &bundle, side, now)
        .map(|_| ())
        .map_err(|refused| match refused {
            PathRefused::Rule(f) => f.to_string(),
            PathRefused::Webpki(e) => format!("{} certificate: {e:?}", side.as_str()),
        })
}

/// Which of the bundle's anchors webpki chose.
fn bundle_position(
    bundle: &Bundle<'_>,
    anchor: &rustls_pki_types::TrustAnchor<'_>,
) -> Option<usize> {
    bundle.anchors.iter().position(|a| {
        a.subject.as_ref() == anchor.subject.as_ref()
            && a.subject_public_key_info.as_ref() == anchor.subject_public_key_info.as_ref()
    })
}

/// What webpki refuses about a certificate that parses as X.509, when that is something
/// certgate can name: an unknown critical extension, or the 64 KiB size limit.
fn refusal_detail(der: &[u8], e: &webpki::Error) -> Option<String> {
    const WEBPKI_MAX_CERT: usize = 0xFFFF;
    if matches!(e, webpki::Error::UnsupportedCriticalExtension) {
        let oids = super::inspect::unsupported_critical_extensions(der);
        return Some(if oids.is_empty() {
            "it has a critical extension webpki does not support".into()
        } else {
            format!(
                "critical extension {} is not one webpki supports, and a critical extension \
                 a verifier does not know must be refused",
                oids.join(", ")
            )
        });
    }
    (der.len() > WEBPKI_MAX_CERT).then(|| {
        format!(
            "it is {} bytes; webpki refuses certificates over 64 KiB ({WEBPKI_MAX_CERT} bytes)",
            der.len()
        )
    })
}

/// The failure for a certificate webpki refused outright, when [`refusal_detail`] can name why.
fn refused_certificate(der: &[u8], info: &CertInfo, e: &webpki::Error) -> Option<Failure> {
    refusal_detail(der, e).map(|detail| Failure::Unverifiable {
        role: info.role,
        subject: info.subject.clone(),
        detail,
    })
}

/// The one place webpki's errors become certgate's.
fn map_webpki_error(
    e: webpki::Error,
    ders: &[CertificateDer<'_>],
    given: &[CertInfo],
    anchors: &[CertInfo],
    side: Side,
    now: i64,
) -> Failure {
    use webpki::Error as E;
    let leaf = &given[0];
    let all = || given.iter().chain(anchors.iter());
    match e {
        // Name the certificate that carries the unknown critical extension.
        E::UnsupportedCriticalExtension => ders
            .iter()
            .zip(given)
            .find_map(|(der, info)| refused_certificate(der, info, &e))
            .unwrap_or_else(|| Failure::Chain {
                detail: "a certificate has a critical extension webpki does not support".into(),
            }),
        E::CertExpired { not_after, .. } => {
            let t = not_after.as_secs() as i64;
            let c = all().find(|c| c.not_after == t).unwrap_or(leaf);
            Failure::Expired {
                role: c.role,
                subject: c.subject.clone(),
                not_after: t,
                now,
            }
        }
        E::CertNotValidYet { not_before, .. } => {
            let t = not_before.as_secs() as i64;
            let c = all().find(|c| c.not_before == t).unwrap_or(leaf);
            Failure::NotYetValid {
                role: c.role,
                subject: c.subject.clone(),
                not_before: t,
                now,
            }
        }
        E::UnknownIssuer => {
            // Name the last certificate whose issuer we could not find.
            let last = given.last().unwrap_or(leaf);
            Failure::UnknownIssuer {
                subject: last.subject.clone(),
                issuer: last.issuer.clone(),
            }
        }
        #[allow(deprecated)]
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            // webpki checks every certificate of the path: name the one that lacks it, the
            // leaf unless its own extendedKeyUsage has the purpose (or it has none).
            let lacks = |c: &&CertInfo| {
                !c.extended_key_usage.is_empty()
                    && !c.extended_key_usage.iter().any(|e| e == side.eku_name())
            };
            let culprit = std::iter::once(leaf)
                .filter(lacks)
                .chain(given.iter().skip(1).filter(|c| c.is_ca).filter(lacks))
                .next()
                .unwrap_or(leaf);
            Failure::WrongUsage {
                role: culprit.role,
                subject: culprit.subject.clone(),
                side: side.as_str(),
                needed: side.eku_name(),
                present: if culprit.extended_key_usage.is_empty() {
                    "none".into()
                } else {
                    culprit.extended_key_usage.join(", ")
                },
                refused_by: side.eku_refused_by(),
            }
        }
        E::NameConstraintViolation => Failure::Chain {
            detail: "a name of a certificate is outside the name constraints of a CA above it \
                     (a directoryName constraint is checked per RFC 5280; other forms as webpki \
                     checks them)"
                .into(),
        },
        E::PathLenConstraintViolated => Failure::Chain {
            detail: "a CA has more intermediates under it than its pathLenConstraint allows".into(),
        },
        E::CaUsedAsEndEntity => Failure::CaAsLeaf {
            subject: leaf.subject.clone(),
        },
        E::InvalidSignatureForPublicKey => Failure::BadSignature {
            subject: leaf.subject.clone(),
        },
        #[allow(deprecated)]
        E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_) => Failure::Chain {
            detail: "a signature uses an unsupported algorithm or key size".into(),
        },
        E::BadDer | E::BadDerTime | E::TrailingData(_) => Failure::BadEncoding {
            file: "chain".into(),
            detail: "malformed DER".into(),
        },
        other => Failure::Chain {
            detail: format!("{other:?}"),
        },
    }
}

/// The leaf's keyUsage against what TLS needs of its key, per side: see
/// [`x509_policy::tls_key_usage`].
fn key_usage_check(leaf_der: &[u8], leaf: &CertInfo, usage: Usage) -> Check {
    match x509_policy::tls_key_usage(leaf_der, &leaf.key_algorithm, usage) {
        Ok(KeyUsageOk::Absent) => Check::pass(
            "key_usage",
            "no keyUsage extension: the key may sign TLS handshakes",
        ),
        Ok(KeyUsageOk::Allows(flags)) => Check::pass(
            "key_usage",
            format!(
                "keyUsage ({flags}) allows the TLS signatures {} use needs",
                usage_name(usage)
            ),
        ),
        Err(f) => Check::fail("key_usage", f),
    }
}

fn names_check(ee: &webpki::EndEntityCert<'_>, leaf: &CertInfo, names: &[ExpectedName]) -> Check {
    let presented = || {
        if leaf.sans.is_empty() {
            "none".to_string()
        } else {
            leaf.sans
                .iter()
                .map(San::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for name in names {
        let covered = match name {
            ExpectedName::Uri(uri) => leaf
                .sans
                .iter()
                .any(|s| matches!(s, San::Uri(u) if u == uri)),
            other => other
                .server_name()
                .is_some_and(|sn| ee.verify_is_valid_for_subject_name(&sn).is_ok()),
        };
        if !covered {
            return Check::fail(
                "names",
                Failure::NameMismatch {
                    expected: name.to_string(),
                    presented: presented(),
                },
            );
        }
    }
    let list = names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Check::pass("names", format!("covers {list}"))
}

/// Whether the key is usable and is the leaf's. `leaf_readable`: whether webpki read the leaf;
/// when it did not, the leaf's public key cannot be compared, which is the chain check's
/// failure to report, not the key's.
fn key_check(material: &Material, leaf_readable: bool) -> Check {
    let Some(key) = material.key.as_ref() else {
        return Check::skip("key", "no key given");
    };
    let signer = match rustls::crypto::ring::sign::any_supported_type(&key.der()) {
        Ok(signer) => signer,
        Err(e) => {
            return Check::fail(
                "key",
                Failure::UnsupportedKey {
                    detail: format!("{e} (RSA keys must be 2048–8192 bits; ECDSA P-256/P-384 and Ed25519 are supported)"),
                },
            )
        }
    };
    if !leaf_readable {
        return Check::skip(
            "key",
            "cannot tell whether the key matches: the leaf was refused (see chain)",
        );
    }
    let certified = rustls::sign::CertifiedKey::new(material.chain.to_vec(), signer);
    match certified.keys_match() {
        Ok(()) => Check::pass("key", "private key matches the leaf"),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Check::fail("key", Failure::KeyMismatch)
        }
        Err(e) => Check::fail(
            "key",
            Failure::UnsupportedKey {
                detail: format!("cannot tell whether it matches the leaf: {e}"),
            },
        ),
    }
}

fn strength_check(chain: &[CertInfo]) -> Check {
    match chain
        .iter()
        .find(|c| c.key_algorithm == "RSA" && c.key_bits < 2048)
    {
        Some(weak) => Check::fail(
            "strength",
            Failure::WeakKey {
                role: weak.role,
                subject: weak.subject.clone(),
                bits: weak.key_bits,
            },
        ),
        None => Check::pass("strength", "key sizes acceptable"),
    }
}

fn validity_check(
    chain: &[CertInfo],
    effective_expiry: Option<i64>,
    policy: &Policy,
    now: i64,
) -> Check {
    if let Some(c) = chain.iter().find(|c| c.not_before > now) {
        return Check::fail(
            "validity",
            Failure::NotYetValid {
                role: c.role,
                subject: c.subject.clone(),
                not_before: c.not_before,
                now,
            },
        );
    }
    if let Some(c) = chain.iter().find(|c| c.not_after < now) {
        return Check::fail(
            "validity",
            Failure::Expired {
                role: c.role,
                subject: c.subject.clone(),
                not_after: c.not_after,
                now,
            },
        );
    }
    let Some(expiry) = effective_expiry else {
        return Check::skip("validity", "no certificate");
    };
    let remaining = Duration::from_secs((expiry - now).max(0) as u64);
    if remaining < policy.min_remaining {
        return Check::fail(
            "validity",
            Failure::ExpiringSoon {
                expiry,
                remaining,
                min_remaining: policy.min_remaining,
            },
        );
    }
    Check::pass(
        "validity",
        format!(
            "every certificate valid now; effective expiry {} (in {})",
            rfc3339(expiry),
            format_duration(remaining)
        ),
    )
}
