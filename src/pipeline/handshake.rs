//! Stage 4: prove the candidate works by running a real rustls server and client against each
//! other over loopback: the client trusts only the bundle and checks the expected name; when the
//! usage includes `client`, the candidate is also presented as the client certificate to a
//! server that verifies it against the bundle. Both sides verify certificates as of the `now`
//! they are given (the time validation used, e.g. `check --at`), never the wall clock.
//!
//! One handshake per protocol version the set allows ([`TlsVersions`], TLS 1.3 and 1.2 by
//! default): clients on TLS 1.2 are still common (older OpenSSL builds, Java 8, embedded
//! stacks), and what a TLS 1.2 handshake needs of a certificate and key (an ECDHE suite for the
//! key type, a signature scheme both sides share) is not what TLS 1.3 needs.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::time_provider::TimeProvider;
use rustls::{
    ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme, SupportedProtocolVersion,
};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::inspect::San;
use super::load::Material;
use super::validate::{Failure, Policy};
use super::verifier::ChainVerifier;

/// Default bound on the whole self-handshake.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A TLS protocol version certgate can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246), with ECDHE suites only.
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl TlsVersion {
    /// `"1.2"` or `"1.3"`: as written in the configuration and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tls12 => "1.2",
            Self::Tls13 => "1.3",
        }
    }

    pub(crate) fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            Self::Tls12 => &rustls::version::TLS12,
            Self::Tls13 => &rustls::version::TLS13,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS {}", self.as_str())
    }
}

impl Serialize for TlsVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The protocol versions a set's material must work with: never empty, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsVersions(Vec<TlsVersion>);

impl Default for TlsVersions {
    /// TLS 1.3 and TLS 1.2: what clients speak today.
    fn default() -> Self {
        Self(vec![TlsVersion::Tls13, TlsVersion::Tls12])
    }
}

impl TlsVersions {
    /// Parses `["1.2", "1.3"]` (also `TLSv1.2`, `tls1.3`); empty, unknown or repeated
    /// versions are errors.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        let mut out = Vec::new();
        for item in items {
            let raw = item.as_ref();
            let v = raw.trim().to_ascii_lowercase();
            let v = v
                .strip_prefix("tlsv")
                .or_else(|| v.strip_prefix("tls"))
                .unwrap_or(&v);
            let version = match v {
                "1.2" => TlsVersion::Tls12,
                "1.3" => TlsVersion::Tls13,
                _ => {
                    return Err(format!(
                        "{raw:?} is not a TLS version certgate speaks (\"1.2\" or \"1.3\")"
                    ))
                }
            };
            if out.contains(&version) {
                return Err(format!("{raw:?} is listed twice"));
            }
            out.push(version);
        }
        if out.is_empty() {
            return Err("must list at least one of \"1.2\" and \"1.3\"".into());
        }
        out.sort_by(|a, b| b.cmp(a));
        Ok(Self(out))
    }

    /// The versions, newest first.
    pub fn iter(&self) -> impl Iterator<Item = TlsVersion> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for TlsVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// What one version's handshake negotiated.
#[derive(Debug, Clone, Serialize)]
pub struct Negotiated {
    /// The version asked for.
    pub version: TlsVersion,
    /// `TLSv1_3` or `TLSv1_2`, as negotiated.
    pub protocol: String,
    /// Negotiated cipher suite.
    pub cipher_suite: String,
}

/// What a successful self-handshake negotiated.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeReport {
    /// The newest version's protocol: `TLSv1_3` or `TLSv1_2`.
    pub protocol: String,
    /// The newest version's cipher suite.
    pub cipher_suite: String,
    /// Every version's handshake, newest first.
    pub versions: Vec<Negotiated>,
    /// Server name the client verified.
    pub server_name: String,
    /// Whether the candidate was also verified as a client certificate.
    pub client_auth: bool,
    /// Wall time of connect + handshake + one round trip.
    pub duration_ms: f64,
}

/// Runs the loopback self-handshake at `now` (Unix seconds: both sides verify certificates as
/// of that time) once per version of `policy.tls_versions`, each bounded by `timeout`. The
/// first version that fails is the failure, named in it.
pub async fn self_handshake(
    material: &Material,
    policy: &Policy,
    now: i64,
    timeout: Duration,
) -> Result<HandshakeReport, Failure> {
    let fail = |detail: String| Failure::Handshake { detail };
    let key = material
        .key
        .as_ref()
        .ok_or_else(|| fail("no private key".into()))?;
    // A leaf with only URI SANs (SPIFFE) has no name TLS can check; its names were already
    // checked by validation, so the client then verifies the chain alone.
    let (server_name, chain_only) = match pick_server_name(material, policy) {
        Some(name) => (name, false),
        None => (
            ServerName::try_from("certgate.invalid").map_err(|e| fail(e.to_string()))?,
            true,
        ),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let clock: Arc<dyn TimeProvider> = Arc::new(FixedTime(unix_time(now)));
    // The signer is built from a borrow of the key, which wipes its DER when dropped; rustls'
    // `with_single_cert` would take (and drop, unwiped) a copy. What ring keeps inside the
    // signer is ring's, and not wiped.
    let signer = rustls::crypto::ring::sign::any_supported_type(&key.der())
        .map_err(|e| fail(format!("private key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(material.chain.to_vec(), signer);
    certified
        .keys_match()
        .map_err(|e| fail(format!("certificate and key: {e}")))?;
    let certified = Arc::new(certified);

    let started = Instant::now();
    let mut versions = Vec::new();
    for version in policy.tls_versions.iter() {
        let pair = Configs {
            provider: &provider,
            clock: &clock,
            certified: &certified,
            chain_only,
        }
        .build(material, policy, version)
        .map_err(|e| fail(format!("{version}: {e}")))?;
        let run = handshake_pair(Arc::new(pair.0), Arc::new(pair.1), server_name.clone());
        let (protocol, cipher_suite) = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| {
                fail(format!(
                    "{version}: timed out after {} ms",
                    timeout.as_millis()
                ))
            })?
            .map_err(|f| match f {
                Failure::Handshake { detail } => fail(format!("{version}: {detail}")),
                other => other,
            })?;
        versions.push(Negotiated {
            version,
            protocol,
            cipher_suite,
        });
    }
    let newest = versions.first().cloned();
    Ok(HandshakeReport {
        protocol: newest
            .as_ref()
            .map(|n| n.protocol.clone())
            .unwrap_or_default(),
        cipher_suite: newest.map(|n| n.cipher_suite).unwrap_or_default(),
        versions,
        server_name: server_name.to_str().into_owned(),
        client_auth: policy.usage.client(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// What both sides of one version's self-handshake are built from.
struct Configs<'a> {
    provider: &'a Arc<CryptoProvider>,
    clock: &'a Arc<dyn TimeProvider>,
    certified: &'a Arc<rustls::sign::CertifiedKey>,
    chain_only: bool,
}

impl Configs<'_> {
    /// The server and client configs of a handshake at `version` only.
    fn build(
        &self,
        material: &Material,
        policy: &Policy,
        version: TlsVersion,
    ) -> Result<(ServerConfig, ClientConfig), String> {
        let Self {
            provider,
            clock,
            certified,
            chain_only,
        } = *self;
        let versions = &[version.rustls()];
        let server_builder = ServerConfig::builder_with_details(provider.clone(), clock.clone())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?;
        // Both sides verify chains as validation does (super::verifier).
        let server_builder = if policy.usage.client() {
            let verifier = ChainVerifier::new(provider.clone(), &material.trust, false);
            server_builder.with_client_cert_verifier(Arc::new(verifier))
        } else {
            server_builder.with_no_client_auth()
        };
        let server_config =
            server_builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())));

        let client_builder = ClientConfig::builder_with_details(provider.clone(), clock.clone())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?;
        let client_builder = if policy.usage.server() {
            let verifier = ChainVerifier::new(provider.clone(), &material.trust, !chain_only);
            client_builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        } else {
            // Client-only material: the server side is our own candidate and not what is tested;
            // only the server's verification of the client certificate matters.
            client_builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LoopbackVerifier {
                    provider: provider.clone(),
                }))
        };
        let client_config = if policy.usage.client() {
            client_builder
                .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())))
        } else {
            client_builder.with_no_client_auth()
        };
        Ok((server_config, client_config))
    }
}

/// The clock both sides of the self-handshake read: the evaluation time, fixed.
#[derive(Debug)]
struct FixedTime(UnixTime);

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

fn unix_time(now: i64) -> UnixTime {
    // Before 1970 is not a time any certificate here is valid at; clamp rather than wrap.
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)))
}

fn pick_server_name(material: &Material, policy: &Policy) -> Option<ServerName<'static>> {
    if let Some(name) = policy.names.iter().find_map(|n| n.server_name()) {
        return Some(name);
    }
    let leaf = material.chain.leaf();
    let info = super::inspect::inspect_cert(leaf, 0).ok()?;
    info.sans.iter().find_map(|san| match san {
        San::Dns(d) => ServerName::try_from(d.replace("*.", "wildcard.")).ok(),
        San::Ip(ip) => Some(ServerName::IpAddress((*ip).into())),
        _ => None,
    })
}

async fn handshake_pair(
    server_config: Arc<ServerConfig>,
    client_config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> Result<(String, String), Failure> {
    let fail = |side: &str, e: std::io::Error| Failure::Handshake {
        detail: format!("{side}: {e}"),
    };
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| fail("bind 127.0.0.1:0", e))?;
    let addr = listener.local_addr().map_err(|e| fail("bind", e))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| fail("accept", e))?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| fail("server", e))?;
        tls.write_all(b"ok").await.map_err(|e| fail("server", e))?;
        tls.shutdown().await.ok();
        Ok::<_, Failure>(())
    });
    let connector = tokio_rustls::TlsConnector::from(client_config);
    let client = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| fail("connect", e))?;
        let mut tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| fail("client", e))?;
        // Reading the server's first bytes proves the server accepted our certificate too
        // (under TLS 1.3 the client finishes before the server has checked it).
        let mut buf = [0u8; 2];
        tls.read_exact(&mut buf)
            .await
            .map_err(|e| fail("client", e))?;
        let (_, conn) = tls.get_ref();
        let protocol = conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        let suite = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        Ok::<_, Failure>((protocol, suite))
    };
    let client_result = client.await;
    let server_result = server.await.map_err(|e| Failure::Handshake {
        detail: format!("server task: {e}"),
    })?;
    // The server's error is the more precise one (e.g. the client certificate it refused).
    server_result?;
    client_result
}

/// A client that accepts any server certificate and checks only the handshake signatures: for
/// client-only material (only the server's check of *our* client certificate is under test)
/// and for the workload probe (what matters is *which* leaf it serves).
#[derive(Debug)]
pub(crate) struct LoopbackVerifier {
    pub(crate) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for LoopbackVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        super::verifier::tls12_signature(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        super::verifier::tls13_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::verifier::schemes(&self.provider)
    }
}
