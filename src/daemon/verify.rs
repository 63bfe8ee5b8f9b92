//! After a publish: does the workload actually serve the new leaf? Connect to its TLS port and
//! record the leaf it presents (any leaf: what matters is *which*), then compare fingerprints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;

use crate::ids::Fingerprint;
use crate::pipeline::handshake::LoopbackVerifier;
use crate::pipeline::load::Material;

/// What the workload served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// It completed a handshake presenting a leaf with this fingerprint.
    Leaf(Fingerprint),
    /// The connection or handshake failed.
    Failed(String),
}

/// One verification attempt against `addr`, presenting `material` as client certificate for
/// workloads that require mTLS.
pub async fn probe(
    addr: SocketAddr,
    name: ServerName<'static>,
    material: &Material,
    timeout: Duration,
) -> Served {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LoopbackVerifier {
                provider,
                anchors: None,
            })),
        Err(e) => return Served::Failed(e.to_string()),
    };
    let config = match &material.key {
        Some(key) => {
            // The signer is built from a borrow of the key (wiped when dropped), as in the
            // self-handshake; with_client_auth_cert would take an unwiped copy.
            match rustls::crypto::ring::sign::any_supported_type(&key.der()) {
                Ok(signer) => {
                    let certified =
                        rustls::sign::CertifiedKey::new(material.chain.to_vec(), signer);
                    builder.with_client_cert_resolver(Arc::new(
                        rustls::sign::SingleCertAndKey::from(certified),
                    ))
                }
                Err(e) => return Served::Failed(format!("client config: {e}")),
            }
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        let (_, conn) = tls.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|leaf| Fingerprint::of(leaf.as_ref()))
            .ok_or_else(|| format!("{addr} presented no certificate"))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(fp)) => Served::Leaf(fp),
        Ok(Err(e)) => Served::Failed(e),
        Err(_) => Served::Failed(format!("{addr}: timed out")),
    }
}
