//! A real TLS workload for post-publish verification tests: a tokio-rustls server on loopback
//! that serves the publish directory's cert and key, in one of several behaviours.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;

/// How the workload behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Re-reads the publish dir on every connection (a perfect reloader).
    Reloading,
    /// Loads once at start and never again (never reloads).
    Stale,
    /// Like `Reloading`, but fails every handshake while the published leaf contains any of
    /// these substrings in its PEM (a workload that cannot use the new certificate).
    RefuseWhenPemContains(Vec<String>),
}

/// A running workload; stops when dropped.
pub struct Workload {
    pub addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

fn load(dir: &Path) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String)> {
    let pem = std::fs::read_to_string(dir.join("tls.crt")).ok()?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key")).ok()?;
    Some((certs, key, pem))
}

impl Workload {
    /// Starts serving `publish_dir` on 127.0.0.1:0.
    pub fn start(publish_dir: PathBuf, behaviour: Behaviour) -> Self {
        Self::start_on("127.0.0.1:0", publish_dir, behaviour)
    }

    /// Starts serving `publish_dir` on `addr`.
    pub fn start_on(addr: &str, publish_dir: PathBuf, behaviour: Behaviour) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("bind workload");
        let addr = listener.local_addr().expect("addr");
        // A stale workload loads what is published now and never looks again.
        let frozen = Arc::new(Mutex::new(match behaviour {
            Behaviour::Stale => load(&publish_dir),
            _ => None,
        }));
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let material = match &behaviour {
                    Behaviour::Stale => {
                        let mut f = frozen.lock().unwrap();
                        if f.is_none() {
                            *f = load(&publish_dir);
                        }
                        f.as_ref().map(
                            |(c, k, p): &(
                                Vec<CertificateDer<'static>>,
                                PrivateKeyDer<'static>,
                                String,
                            )| (c.clone(), k.clone_key(), p.clone()),
                        )
                    }
                    _ => load(&publish_dir),
                };
                let Some((certs, key, pem)) = material else {
                    continue;
                };
                if let Behaviour::RefuseWhenPemContains(needles) = &behaviour {
                    if needles.iter().any(|n| pem.contains(n.as_str())) {
                        drop(tcp);
                        continue;
                    }
                }
                let Ok(config) = rustls::ServerConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map(|b| b.with_no_client_auth()) else {
                    continue;
                };
                let Ok(config) = config.with_single_cert(certs, key) else {
                    continue;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.write_all(b"hello\n").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        Self { addr, _rt: rt }
    }
}
