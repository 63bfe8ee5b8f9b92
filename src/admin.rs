//! The daemon with its admin server (`/healthz /readyz /status /metrics`): bind, serve until a
//! shutdown future resolves, then stop in order with a bounded grace period for the server.
//! `certgate run` drives it with signals, `certgate demo` with its own stop.
//!
//! The admin port is reachable by anyone on the pod network (default `0.0.0.0:9464`), so the
//! server bounds its peers (after kubert's `admin.rs` and mini-redis' connection cap): a
//! request head must arrive within a header-read timeout (which also closes idle keep-alive
//! and half-open connections), a head larger than [`MAX_BUF_SIZE`] is refused, every
//! connection has a total lifetime, and at most [`AdminLimits::max_connections`] are open. When
//! the cap is reached the *oldest* connection is closed to admit the new one: a flood of idle or
//! slow peers is what grows old, while a kubelet probe or a scrape is in and out in
//! milliseconds, so probes keep answering.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::config::Config;
use crate::daemon::{Daemon, Shared};
use crate::http;
use crate::metrics::Metrics;

/// How long in-flight admin requests get to finish once the daemon has stopped; a probe or a
/// scrape takes milliseconds, so this only bounds a stuck peer.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Largest buffered request head (request line and headers) in bytes; a larger one is answered
/// 431 and the connection closed. Probes and scrapes send a few hundred bytes.
pub const MAX_BUF_SIZE: usize = 16 * 1024;

/// File descriptors kept out of the connection cap for the daemon itself (source and publish
/// files, inotify, the self-handshake, reload connections).
const FD_RESERVE: u64 = 32;

/// Bounds on the admin server's peers. The defaults suit kubelet probes and Prometheus scrapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Most connections open at once; at the cap the oldest is closed to admit a new one.
    /// Lowered at start to fit the process' open-file limit.
    pub max_connections: usize,
    /// A request head must arrive within this, counted from the connection's start or the end
    /// of its previous response: bounds idle keep-alive, half-open and slowloris peers.
    pub header_read_timeout: Duration,
    /// Total lifetime of one connection, however busy (bounds slow readers and bodies).
    pub connection_timeout: Duration,
}

impl AdminLimits {
    /// Default [`AdminLimits::max_connections`].
    pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
    /// Default [`AdminLimits::header_read_timeout`].
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default [`AdminLimits::connection_timeout`].
    pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
}

impl Default for AdminLimits {
    fn default() -> Self {
        Self {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            connection_timeout: Self::DEFAULT_CONNECTION_TIMEOUT,
        }
    }
}

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The metrics registry could not be built.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The admin address could not be bound.
    #[error("--listen {addr}: cannot bind: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gate's admin address could not be bound.
    #[error("[daemon] admin_listen {addr}: cannot bind: {source}")]
    AdminListen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a running server stopped other than by its shutdown future.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The daemon's event loop failed.
    #[error("{0}")]
    Daemon(String),
}

/// The daemon with its admin server bound but not yet serving: an embedder (`certgate demo`)
/// reads the bound address and the daemon's snapshots before calling [`Server::run`].
pub struct Server {
    daemon: Daemon,
    shared: Shared,
    listener: tokio::net::TcpListener,
    listen: SocketAddr,
    heartbeat_bound: Duration,
    limits: AdminLimits,
    /// The gate's loopback listener, when a set's gate holds candidates.
    gate: Option<(tokio::net::TcpListener, SocketAddr)>,
}

// === impl Server ===

impl Server {
    /// Builds the metrics and the daemon and binds the admin address.
    pub async fn bind(config: Config) -> Result<Self, BindError> {
        let metrics = Arc::new(Metrics::new().map_err(|e| BindError::Metrics(e.to_string()))?);
        let addr = config.daemon.listen;
        // `/healthz` fails when the loop has not turned for three resyncs and some slack.
        let heartbeat_bound = config.daemon.resync_interval * 3 + Duration::from_secs(10);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| BindError::Listen { addr, source })?;
        let admin_listen = config.daemon.admin_listen;
        let (daemon, shared) = Daemon::new(config, metrics, http::wall_clock_millis);
        let gate = if daemon.gates_hold() {
            let l = tokio::net::TcpListener::bind(admin_listen)
                .await
                .map_err(|source| BindError::AdminListen {
                    addr: admin_listen,
                    source,
                })?;
            let bound = l.local_addr().unwrap_or(admin_listen);
            tracing::info!(admin_listen = %bound, "gate admin listener (loopback): POST /gate/release");
            Some((l, bound))
        } else {
            None
        };
        // With port 0 the kernel picks the port: report the one actually bound.
        let listen = listener.local_addr().unwrap_or(addr);
        tracing::info!(listen = %listen, version = env!("CARGO_PKG_VERSION"), "admin server listening (/healthz /readyz /status /metrics)");
        Ok(Self {
            daemon,
            shared,
            listener,
            listen,
            heartbeat_bound,
            limits: AdminLimits::default(),
            gate,
        })
    }

    /// Sets the bounds on admin peers (default [`AdminLimits::default`]); the connection cap
    /// is lowered to fit the open-file limit.
    pub fn with_limits(mut self, limits: AdminLimits) -> Self {
        let max_connections = fit_fd_limit(limits.max_connections);
        if max_connections < limits.max_connections {
            tracing::warn!(
                asked = limits.max_connections,
                max_connections,
                "admin server: connection cap lowered to fit the open-file limit (ulimit -n)"
            );
        }
        self.limits = AdminLimits {
            max_connections,
            ..limits
        };
        self
    }

    /// The admin server's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The gate's admin listener's bound address, when it listens.
    pub fn gate_addr(&self) -> Option<SocketAddr> {
        self.gate.as_ref().map(|(_, a)| *a)
    }

    /// Asks the daemon for a resync (SIGHUP).
    pub fn resync_handle(&self) -> crate::daemon::ResyncHandle {
        self.daemon.resync_handle()
    }

    /// The handles the admin server reads: snapshots, heartbeat, metrics.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Serves until `shutdown` resolves (or the daemon fails). An in-flight evaluation or
    /// publish finishes first; then the admin server stops accepting and its in-flight requests
    /// get [`SHUTDOWN_GRACE`] to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let Self {
            daemon,
            shared,
            listener,
            heartbeat_bound,
            limits,
            gate,
            ..
        } = self;
        let gate_app = http::gate::gate_router(daemon.gate_control());
        let app = http::router(http::AppState {
            snapshot: shared.snapshot.clone(),
            heartbeat: shared.heartbeat.clone(),
            heartbeat_bound,
            metrics: shared.metrics.clone(),
            clock: http::wall_clock_millis,
        });
        // The server keeps answering probes while the daemon winds down (readiness is read from
        // its last snapshot), and is told to stop once the daemon has.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let gate_server =
            gate.map(|(l, _)| tokio::spawn(serve_admin(l, gate_app, limits, stop_rx.clone())));
        let mut server = tokio::spawn(serve_admin(listener, app, limits, stop_rx));
        let result = daemon.run(shutdown).await;
        let _ = stop_tx.send(true);
        if let Some(g) = gate_server {
            // Releases are answered by the loop, which has stopped: nothing to wait for.
            g.abort();
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("admin server task: {e}"),
            Err(_) => {
                tracing::warn!(
                    grace_ms = SHUTDOWN_GRACE.as_millis() as u64,
                    "admin server: requests still in flight after the grace period; dropped"
                );
                server.abort();
            }
        }
        match result {
            Ok(()) => {
                tracing::info!("stopped");
                Ok(())
            }
            Err(e) => Err(RunError::Daemon(e.to_string())),
        }
    }
}

/// The connection cap that fits the soft open-file limit, keeping [`FD_RESERVE`] for the
/// daemon: accepting past the limit fails (EMFILE) and would lock probes out.
fn fit_fd_limit(max_connections: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        return max_connections.max(1);
    }
    let fit = lim.rlim_cur.saturating_sub(FD_RESERVE).max(1);
    max_connections.clamp(1, usize::try_from(fit).unwrap_or(usize::MAX))
}

/// Accepts admin connections until `stop`, each served by [`serve_connection`] under
/// `limits`; then lets open connections finish their in-flight request and returns once all
/// are closed (the caller bounds that wait).
async fn serve_admin(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: AdminLimits,
    mut stop: watch::Receiver<bool>,
) {
    let registry = Arc::new(Mutex::new(Registry::new(limits.max_connections)));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            // Reap finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE/ENFILE or a peer that reset before accept: back off briefly instead
                // of spinning, then try again.
                tracing::debug!("admin server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let slot = Registry::admit(&registry);
        tasks.spawn(serve_connection(
            stream,
            app.clone(),
            limits,
            slot,
            stop.clone(),
        ));
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// Serves one admin connection until the peer closes it, a bound is hit, it is evicted, or
/// shutdown (which lets an in-flight request finish).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: axum::Router,
    limits: AdminLimits,
    mut slot: Slot,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF_SIZE)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(limits.connection_timeout);
    tokio::pin!(lifetime);
    let mut draining = false;
    loop {
        tokio::select! {
            // Errors are the peer's (reset, bad request, header timeout): nothing to report.
            _ = conn.as_mut() => break,
            _ = &mut slot.evicted => {
                tracing::debug!("admin server: connection cap reached; closed the oldest connection");
                break;
            }
            _ = &mut lifetime => break,
            _ = stop.wait_for(|s| *s), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    // Dropping `conn` closes the socket; dropping `slot` frees its place under the cap.
}

/// The open admin connections, oldest first, each with the sender whose drop evicts it.
struct Registry {
    cap: usize,
    next_id: u64,
    open: BTreeMap<u64, oneshot::Sender<()>>,
}

/// One connection's place under the cap: `evicted` resolves when it must close; dropping the
/// slot removes it.
struct Slot {
    id: u64,
    registry: Arc<Mutex<Registry>>,
    evicted: oneshot::Receiver<()>,
}

// === impl Registry ===

impl Registry {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            next_id: 0,
            open: BTreeMap::new(),
        }
    }

    /// Registers a new connection, evicting the oldest ones while the cap is reached.
    fn admit(registry: &Arc<Mutex<Self>>) -> Slot {
        let (tx, evicted) = oneshot::channel();
        let mut r = registry.lock().unwrap_or_else(PoisonError::into_inner);
        while r.open.len() >= r.cap {
            // Dropping the sender resolves that connection's `evicted`.
            r.open.pop_first();
        }
        let id = r.next_id;
        r.next_id += 1;
        r.open.insert(id, tx);
        Slot {
            id,
            registry: registry.clone(),
            evicted,
        }
    }
}

// === impl Slot ===

impl Drop for Slot {
    fn drop(&mut self) {
        let mut r = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        r.open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_evicts_the_oldest_connections_first() {
        let registry = Arc::new(Mutex::new(Registry::new(2)));
        let mut a = Registry::admit(&registry);
        let mut b = Registry::admit(&registry);
        assert_eq!(
            a.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        let mut c = Registry::admit(&registry);
        assert_eq!(
            a.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Closed),
            "the oldest is evicted"
        );
        assert_eq!(
            b.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        drop(b);
        // A closed connection frees its place: the next one evicts nobody.
        let _d = Registry::admit(&registry);
        assert_eq!(
            c.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        assert_eq!(registry.lock().unwrap().open.len(), 2);
    }
}
