//! The TLS workload: a tokio-rustls server on loopback serving a publish directory's
//! `tls.crt` and `tls.key`, the way an application behind certgate does, in one of several
//! behaviours (a perfect reloader, one that never reloads, one that refuses some leaves).
//!
//! Cert and key are read from one `..data` generation (read the link, read both files, check
//! the link did not move), so a publish or swap-back landing mid-read never pairs a cert with
//! the wrong key. Each connection is bounded; accept errors back off instead of spinning.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::kubelet::DATA_LINK;

/// How long one connection may take, so a stalled client holds no task for ever.
const CONN_TIMEOUT: Duration = Duration::from_secs(5);
/// What the workload says once the handshake is done.
const GREETING: &[u8] = b"hello\n";

/// How the workload behaves.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Re-reads the publish dir on every connection (a perfect reloader).
    Reloading,
    /// Loads once (at start, or at the first connection when nothing was published yet) and
    /// never again.
    Stale,
    /// Like `Reloading`, but fails every handshake while the published `tls.crt` contains any
    /// of these substrings in its PEM (a workload that cannot use the new certificate).
    RefuseWhenPemContains(Vec<String>),
    /// Like `Reloading`, but fails every handshake while the published leaf (DER) makes this
    /// predicate true.
    RefuseWhen(Refusal),
}

/// A predicate on the published leaf's DER; `true` refuses it.
#[derive(Clone)]
pub struct Refusal(Arc<dyn Fn(&CertificateDer<'_>) -> bool + Send + Sync>);

impl Refusal {
    /// Refuses leaves for which `refuse` returns `true`.
    pub fn new(refuse: impl Fn(&CertificateDer<'_>) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(refuse))
    }
}

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Refusal(..)")
    }
}

/// A running workload; stops when dropped.
pub struct Workload {
    /// The address it serves on.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    /// The runtime it runs on when it brought its own ([`Workload::start`]).
    _rt: Option<tokio::runtime::Runtime>,
}

// === impl Workload ===

impl Workload {
    /// Starts serving `publish_dir` on 127.0.0.1:0, on a runtime of its own (for synchronous
    /// tests). Panics when it cannot.
    pub fn start(publish_dir: PathBuf, behaviour: Behaviour) -> Self {
        Self::start_on("127.0.0.1:0", publish_dir, behaviour)
    }

    /// Starts serving `publish_dir` on `addr`, on a runtime of its own. Panics when it cannot.
    pub fn start_on(addr: &str, publish_dir: PathBuf, behaviour: Behaviour) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("workload runtime");
        let listener = rt.block_on(TcpListener::bind(addr)).expect("bind workload");
        let guard = rt.enter();
        let mut w = Self::serve(listener, publish_dir, behaviour).expect("workload address");
        drop(guard);
        w._rt = Some(rt);
        w
    }

    /// Starts serving `publish_dir` on `addr` on the current tokio runtime.
    pub async fn spawn(
        addr: SocketAddr,
        publish_dir: PathBuf,
        behaviour: Behaviour,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(listener, publish_dir, behaviour)
    }

    fn serve(listener: TcpListener, dir: PathBuf, behaviour: Behaviour) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        // A stale workload loads what is published now and never looks again.
        let frozen = Arc::new(Mutex::new(match behaviour {
            Behaviour::Stale => load(&dir),
            _ => None,
        }));
        let task = tokio::spawn(async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    // Out of descriptors or the like: back off instead of spinning.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let material = match &behaviour {
                    Behaviour::Stale => {
                        let mut f = frozen.lock().unwrap_or_else(|e| e.into_inner());
                        if f.is_none() {
                            *f = load(&dir);
                        }
                        f.clone()
                    }
                    _ => load(&dir),
                };
                // Nothing published yet: closing the connection is all it can do.
                let Some(material) = material else {
                    continue;
                };
                if refuses(&behaviour, &material) {
                    // Dropping the connection unanswered fails the client's handshake.
                    continue;
                }
                tokio::spawn(serve_connection(tcp, material));
            }
        });
        Ok(Self {
            addr,
            task,
            _rt: None,
        })
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One generation's chain, key and the chain's PEM text.
struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pem: String,
}

impl Clone for Material {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            pem: self.pem.clone(),
        }
    }
}

fn refuses(behaviour: &Behaviour, m: &Material) -> bool {
    match behaviour {
        Behaviour::RefuseWhenPemContains(needles) => {
            needles.iter().any(|n| m.pem.contains(n.as_str()))
        }
        Behaviour::RefuseWhen(Refusal(refuse)) => m.chain.first().is_some_and(|c| refuse(c)),
        Behaviour::Reloading | Behaviour::Stale => false,
    }
}

/// `tls.crt` and `tls.key` of the generation `..data` names (the directory itself without
/// one), retried while a commit moves `..data` under the reader.
fn load(dir: &Path) -> Option<Material> {
    let data = dir.join(DATA_LINK);
    for _ in 0..5 {
        let before = std::fs::read_link(&data).ok();
        let base = before
            .as_ref()
            .map_or_else(|| dir.to_path_buf(), |g| dir.join(g));
        let read = read_pair(&base);
        if std::fs::read_link(&data).ok() == before {
            return read;
        }
    }
    None
}

fn read_pair(dir: &Path) -> Option<Material> {
    let pem = std::fs::read_to_string(dir.join("tls.crt")).ok()?;
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key")).ok()?;
    Some(Material { chain, key, pem })
}

async fn serve_connection(tcp: TcpStream, m: Material) {
    let Ok(builder) = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions() else {
        return;
    };
    let Ok(config) = builder
        .with_no_client_auth()
        .with_single_cert(m.chain, m.key)
    else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let conversation = async {
        let mut tls = acceptor.accept(tcp).await?;
        tls.write_all(GREETING).await?;
        tls.shutdown().await
    };
    // The client's errors are its own business.
    let _ = tokio::time::timeout(CONN_TIMEOUT, conversation).await;
}
