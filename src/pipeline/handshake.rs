//! Stage 4: prove the candidate works by running a real rustls server and client against each
//! other over loopback: the client trusts only the bundle and checks the expected name; when the
//! usage includes `client`, the candidate is also presented as the client certificate to a
//! server that verifies it against the bundle. Both sides verify certificates as of the `now`
//! they are given (the time validation used, e.g. `check --at`), never the wall clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::inspect::San;
use super::load::Material;
use super::validate::{Failure, Policy};
use super::verifier::ChainVerifier;

/// Default bound on the whole self-handshake.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a successful self-handshake negotiated.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeReport {
    /// `TLSv1_3` or `TLSv1_2`.
    pub protocol: String,
    /// Negotiated cipher suite.
    pub cipher_suite: String,
    /// Server name the client verified.
    pub server_name: String,
    /// Whether the candidate was also verified as a client certificate.
    pub client_auth: bool,
    /// Wall time of connect + handshake + one round trip.
    pub duration_ms: f64,
}

/// Runs the loopback self-handshake at `now` (Unix seconds: both sides verify certificates as
/// of that time), bounded by `timeout`.
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

    let server_builder = ServerConfig::builder_with_details(provider.clone(), clock.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?;
    // Both sides verify chains as validation does (super::verifier).
    let server_builder = if policy.usage.client() {
        let verifier = ChainVerifier::new(provider.clone(), &material.trust, false);
        server_builder.with_client_cert_verifier(Arc::new(verifier))
    } else {
        server_builder.with_no_client_auth()
    };
    let server_config =
        server_builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified.clone())));

    let client_builder = ClientConfig::builder_with_details(provider.clone(), clock)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?;
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
                anchors: None,
            }))
    };
    let client_config = if policy.usage.client() {
        client_builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
    } else {
        client_builder.with_no_client_auth()
    };

    let started = Instant::now();
    let run = handshake_pair(
        Arc::new(server_config),
        Arc::new(client_config),
        server_name.clone(),
    );
    let (protocol, cipher_suite) = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| fail(format!("timed out after {} ms", timeout.as_millis())))??;
    Ok(HandshakeReport {
        protocol,
        cipher_suite,
        server_name: server_name.to_str().into_owned(),
        client_auth: policy.usage.client(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
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

/// The client's view of our own loopback server when the standard verifier cannot be used:
/// with `anchors`, the server's chain is verified to the bundle for serverAuth but not its name
/// (leaves with only URI SANs, whose names validation already checked); without, any server
/// certificate is accepted (client-only material: only the server's check of *our* client
/// certificate is under test). Handshake signatures are always verified.
#[derive(Debug)]
pub(crate) struct LoopbackVerifier {
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) anchors: Option<Vec<rustls::pki_types::TrustAnchor<'static>>>,
}

impl ServerCertVerifier for LoopbackVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(anchors) = &self.anchors {
            let ee = webpki::EndEntityCert::try_from(end_entity)
                .map_err(|e| rustls::Error::General(format!("server certificate: {e}")))?;
            ee.verify_for_usage(
                self.provider.signature_verification_algorithms.all,
                anchors,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(|e| rustls::Error::General(format!("server certificate: {e}")))?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
