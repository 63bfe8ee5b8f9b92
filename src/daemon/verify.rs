//! After a publish: does the workload actually serve the new leaf? Connect to its TLS port once
//! per protocol version the set allows and record the leaf it presents (any leaf: what matters
//! is *which*), then compare fingerprints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::ids::Fingerprint;
use crate::pipeline::handshake::{LoopbackVerifier, TlsVersion, TlsVersions};
use crate::pipeline::load::Material;

/// What the workload did with one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// It completed a handshake presenting a leaf with this fingerprint.
    Leaf(Fingerprint),
    /// It accepted the connection and then failed the handshake: definite evidence that it
    /// cannot serve (a TLS alert, a reset, a close mid-handshake).
    Refused(String),
    /// No answer: the connection was refused or nothing came back in time (the workload is
    /// not listening yet, restarting, or stalled). Not evidence either way.
    NoAnswer(String),
}

impl Served {
    /// Names the version in an error.
    fn at(self, version: TlsVersion) -> Self {
        match self {
            Self::Refused(e) => Self::Refused(format!("{version}: {e}")),
            Self::NoAnswer(e) => Self::NoAnswer(format!("{version}: {e}")),
            leaf => leaf,
        }
    }
}

/// One observation of the workload: what each version's connection got, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation(pub Vec<(TlsVersion, Served)>);

impl Observation {
    /// One verdict for all versions, judged against `expected`: a refusal at any version is a
    /// refusal (its clients fail); else no answer at any version is no answer; else a leaf
    /// other than `expected` at any version is what is served; else `expected`.
    pub fn summary(&self, expected: &Fingerprint) -> Served {
        let rank = |s: &Served| match s {
            Served::Refused(_) => 3,
            Served::NoAnswer(_) => 2,
            Served::Leaf(fp) if fp != expected => 1,
            Served::Leaf(_) => 0,
        };
        // The first of the worst: newest version first.
        let mut worst: Option<&Served> = None;
        for (_, served) in &self.0 {
            if worst.map_or(true, |w| rank(served) > rank(w)) {
                worst = Some(served);
            }
        }
        worst
            .cloned()
            .unwrap_or_else(|| Served::NoAnswer("no TLS version to probe".into()))
    }

    /// What `/status` shows per version.
    pub fn per_version(&self) -> Vec<VersionServed> {
        self.0
            .iter()
            .map(|(version, served)| VersionServed {
                version: *version,
                fingerprint_sha256: match served {
                    Served::Leaf(fp) => Some(fp.clone()),
                    _ => None,
                },
                error: match served {
                    Served::Leaf(_) => None,
                    Served::Refused(e) | Served::NoAnswer(e) => Some(e.clone()),
                },
            })
            .collect()
    }
}

/// What the workload served at one TLS version, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionServed {
    /// `"1.2"` or `"1.3"`.
    pub version: TlsVersion,
    /// The leaf it presented.
    pub fingerprint_sha256: Option<Fingerprint>,
    /// Why no leaf was seen.
    pub error: Option<String>,
}

/// Probes `addr` once per version of `versions`, each bounded by `timeout`.
pub async fn observe(
    addr: SocketAddr,
    name: &ServerName<'static>,
    material: &Material,
    versions: &TlsVersions,
    timeout: Duration,
) -> Observation {
    let mut out = Vec::new();
    for version in versions.iter() {
        let served = probe(addr, name.clone(), material, version, timeout).await;
        out.push((version, served.at(version)));
    }
    Observation(out)
}

/// One verification attempt against `addr` at `version`, presenting `material` as client
/// certificate for workloads that require mTLS.
pub async fn probe(
    addr: SocketAddr,
    name: ServerName<'static>,
    material: &Material,
    version: TlsVersion,
    timeout: Duration,
) -> Served {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version.rustls()])
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LoopbackVerifier { provider })),
        Err(e) => return Served::NoAnswer(format!("client config: {e}")),
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
                Err(e) => return Served::NoAnswer(format!("client config: {e}")),
            }
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let attempt = async {
        let tcp = match TcpStream::connect(addr).await {
            Ok(tcp) => tcp,
            Err(e) => return Served::NoAnswer(format!("connect {addr}: {e}")),
        };
        // Connected: from here a failure is the workload's answer.
        let tls = match connector.connect(name, tcp).await {
            Ok(tls) => tls,
            Err(e) => return Served::Refused(format!("handshake with {addr}: {e}")),
        };
        let (_, conn) = tls.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|leaf| Served::Leaf(Fingerprint::of(leaf.as_ref())))
            .unwrap_or_else(|| Served::Refused(format!("{addr} presented no certificate")))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(served) => served,
        Err(_) => Served::NoAnswer(format!("{addr}: timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(c: char) -> Fingerprint {
        Fingerprint::of(c.to_string().as_bytes())
    }

    #[test]
    fn a_refusal_at_any_version_is_the_verdict() {
        let live = fp('a');
        let obs = Observation(vec![
            (TlsVersion::Tls13, Served::Leaf(live.clone())),
            (TlsVersion::Tls12, Served::Refused("TLS 1.2: alert".into())),
        ]);
        assert_eq!(obs.summary(&live), Served::Refused("TLS 1.2: alert".into()));
        let obs = Observation(vec![
            (TlsVersion::Tls13, Served::Leaf(live.clone())),
            (TlsVersion::Tls12, Served::Leaf(fp('b'))),
        ]);
        assert_eq!(obs.summary(&live), Served::Leaf(fp('b')));
        let obs = Observation(vec![
            (TlsVersion::Tls13, Served::Leaf(live.clone())),
            (TlsVersion::Tls12, Served::Leaf(live.clone())),
        ]);
        assert_eq!(obs.summary(&live), Served::Leaf(live));
    }
}
