//! The daemon with its admin server (`/healthz /readyz /status /metrics`): bind, serve until a
//! shutdown future resolves, then stop in order with a bounded grace period for the server.
//! `certgate run` drives it with signals, `certgate demo` with its own stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::daemon::{Daemon, Shared};
use crate::http;
use crate::metrics::Metrics;

/// How long in-flight admin requests get to finish once the daemon has stopped; a probe or a
/// scrape takes milliseconds, so this only bounds a stuck peer.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
        let (daemon, shared) = Daemon::new(config, metrics, http::wall_clock_millis);
        // With port 0 the kernel picks the port: report the one actually bound.
        let listen = listener.local_addr().unwrap_or(addr);
        tracing::info!(listen = %listen, version = env!("CARGO_PKG_VERSION"), "admin server listening (/healthz /readyz /status /metrics)");
        Ok(Self {
            daemon,
            shared,
            listener,
            listen,
            heartbeat_bound,
        })
    }

    /// The admin server's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
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
            ..
        } = self;
        let app = http::router(http::AppState {
            snapshot: shared.snapshot.clone(),
            heartbeat: shared.heartbeat.clone(),
            heartbeat_bound,
            metrics: shared.metrics.clone(),
            clock: http::wall_clock_millis,
        });
        // The server keeps answering probes while the daemon winds down (readiness is read from
        // its last snapshot), and is told to stop once the daemon has.
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let mut server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await
        });
        let result = daemon.run(shutdown).await;
        let _ = stop_tx.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("admin server: {e}"),
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
