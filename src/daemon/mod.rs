//! The sidecar's runtime: one loop owns every set's state (the single writer); file triggers,
//! timers and workload verdicts come in as events; HTTP reads the snapshots it publishes.
//!
//! Per set, a change is: evaluate the source (load → validate → self-handshake) → if approved,
//! publish it atomically (or, in monitor mode, accept it) → reload the workload → verify the
//! workload serves it, else swap back. A refused candidate never reaches the publish dir.
//!
//! The parts: [`event_loop`] (the loop and its deadlines), `intake` (file triggers),
//! `evaluate` (which sets are due, reads off the async workers), `rotation` (reject, accept,
//! publish, swap back, adopt at start), `follow_up` (reload and verify), `set` (per-set state).
//! The loop is generic over its triggers ([`watch::Triggers`]), clock ([`Clock`]), publishers
//! ([`crate::publish::Publish`]) and workload ([`Workload`]); [`Daemon`] wires the real ones.

mod evaluate;
pub(crate) mod event_loop;
mod follow_up;
mod gate;
mod intake;
pub mod reload;
mod rotation;
pub mod schedule;
mod set;
pub mod verify;
pub mod watch;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::sync::watch as tokio_watch;

use self::event_loop::Core;
pub use self::follow_up::{FollowUpReport, FollowUpRequest, ReloadAndVerify, Workload};
use self::watch::WatchTriggers;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::state::{Heartbeat, Snapshot};

/// Handles the HTTP side needs.
#[derive(Clone)]
pub struct Shared {
    /// Snapshots for readers.
    pub snapshot: tokio_watch::Receiver<Arc<Snapshot>>,
    /// The loop's heartbeat.
    pub heartbeat: Heartbeat,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Where the daemon reads the time: Unix milliseconds. Thresholds, readiness and `/status`
/// times all come from it, so tests can drive time.
pub trait Clock: Send + Sync + 'static {
    /// Now, Unix milliseconds.
    fn unix_millis(&self) -> i64;
}

impl Clock for fn() -> i64 {
    fn unix_millis(&self) -> i64 {
        self()
    }
}

/// Why the daemon could not run. Without inotify it polls, and per-set failures are reported
/// in `/status` and metrics; only a publish directory it cannot own stops it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A publish directory could not be taken for this process (another certgate holds it).
    #[error("set {set}: {source}")]
    PublishDir {
        /// The set.
        set: String,
        /// What failed.
        source: crate::publish::PublishError,
    },
}

/// The daemon with its real parts: inotify triggers, publishers writing the configured
/// directories, and the configured reload and verification.
pub struct Daemon {
    core: Core<Publisher, ReloadAndVerify>,
}

impl Daemon {
    /// Builds the daemon and the handles the HTTP side reads.
    pub fn new(config: Config, metrics: Arc<Metrics>, clock: fn() -> i64) -> (Self, Shared) {
        let (core, shared) = Core::new(
            config,
            metrics,
            Arc::new(clock),
            Arc::new(ReloadAndVerify),
            |cfg| {
                cfg.publish
                    .as_ref()
                    .map(|p| Publisher::new(&p.dir, p.key_mode, &cfg.paths).with_format(p.format))
            },
        );
        (Self { core }, shared)
    }

    /// Where operator releases are sent (the gate's admin listener).
    pub fn gate_control(&self) -> GateControl {
        GateControl(self.core.release_tx.clone())
    }

    /// Whether a set's gate holds candidates (so the admin listener is needed).
    pub fn gates_hold(&self) -> bool {
        self.core.sets.iter().any(|s| {
            s.cfg
                .gate
                .as_ref()
                .is_some_and(|g| g.mode == crate::gate::GateMode::Hold)
        })
    }

    /// A handle that makes the loop resync at once (re-read every set, re-establish watches,
    /// check workloads again): what SIGHUP does.
    pub fn resync_handle(&self) -> ResyncHandle {
        ResyncHandle(self.core.resync_handle())
    }

    /// Runs until `shutdown` resolves; an in-flight evaluation or publish finishes first. When
    /// inotify cannot start (its per-user limits are node-wide), certgate polls at each resync
    /// instead of exiting, and says so in the log and `/status`.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), DaemonError> {
        let mut locks = Vec::new();
        for s in &self.core.sets {
            let Some(p) = &s.publisher else { continue };
            match p.lock() {
                Ok(lock) => locks.push(lock),
                Err(source) if source.held_by_another() => {
                    return Err(DaemonError::PublishDir {
                        set: s.cfg.name.clone(),
                        source,
                    });
                }
                // A directory that cannot be created or written (read-only, a file in the way)
                // fails every publish too: that is reported per set, in /readyz and /status.
                Err(e) => tracing::warn!(set = %s.cfg.name, "{e}"),
            }
        }
        let triggers = match WatchTriggers::start(self.core.watched_dirs()) {
            Ok(t) => Some(t),
            Err(e) => {
                let why = watch::start_failure(&e);
                let every = crate::duration::format_duration(self.core.settings.resync_interval);
                tracing::warn!("{why}; polling every {every} (resync_interval) instead");
                self.core
                    .polling_because(format!("{why}; polling every {every}"));
                None
            }
        };
        self.core.run(triggers, shutdown).await;
        drop(locks);
        Ok(())
    }
}

/// An operator's release of the candidate a set's gate holds (`certgate gate release`).
#[derive(Debug)]
pub struct ReleaseRequest {
    /// The set.
    pub set: String,
    /// The held leaf's fingerprint (or a prefix of at least 8 hex digits); `None`: whatever is
    /// held now — still one candidate, never "everything from now on".
    pub fingerprint: Option<String>,
    /// Release a held bundle removal instead of a leaf.
    pub removal: bool,
    /// The answer: what was released, or why nothing was (an HTTP status and a message).
    pub reply: tokio::sync::oneshot::Sender<Result<String, (u16, String)>>,
}

/// Sends releases to a running daemon.
#[derive(Debug, Clone)]
pub struct GateControl(tokio::sync::mpsc::Sender<ReleaseRequest>);

impl GateControl {
    /// Asks the loop to release; `Err` when the daemon has stopped.
    pub async fn release(&self, req: ReleaseRequest) -> Result<(), String> {
        self.0
            .send(req)
            .await
            .map_err(|_| "the daemon has stopped".to_string())
    }
}

/// Asks a running daemon to resync now.
#[derive(Debug, Clone)]
pub struct ResyncHandle(Arc<tokio::sync::Notify>);

impl ResyncHandle {
    /// Requests a resync; several requests before the loop gets to it make one.
    pub fn request(&self) {
        self.0.notify_one();
    }
}
