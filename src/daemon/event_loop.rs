//! The loop and its deadlines: one task owns every set's state (the single writer), takes file
//! triggers, workload verdicts and timers as they come, and publishes a snapshot after each
//! turn. It is generic over what it talks to — the triggers, the clock, the publishers and the
//! workload — so its state machine is tested with fakes (see `tests.rs`).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::follow_up::{VerifyDone, Workload};
use super::gate::{GateAnswer, NoFleet};
use super::set::SetRuntime;
use super::watch::Triggers;
use super::{Clock, ReleaseRequest, Shared};
use crate::config::{Config, DaemonSettings, SetConfig};
use crate::gate::query::{FleetView, PromFleet};
use crate::ids::SetId;
use crate::labels::EventKind;
use crate::metrics::Metrics;
use crate::publish::Publish;
use crate::state::{Heartbeat, Snapshot};
use crate::time_fmt::rfc3339;

/// The daemon's state machine with its I/O injected.
pub(crate) struct Core<P, W> {
    pub(super) settings: DaemonSettings,
    pub(super) sets: Vec<SetRuntime<P>>,
    /// Source directory → the sets reading from it, so an event costs a lookup, not a scan.
    pub(super) by_dir: HashMap<PathBuf, Vec<SetId>>,
    pub(super) metrics: Arc<Metrics>,
    heartbeat: Heartbeat,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    initialized: bool,
    /// Why file events are not watched (polling at each resync instead).
    watch_problem: Option<String>,
    /// Asks for a resync now (SIGHUP).
    resync_now: Arc<Notify>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) workload: Arc<W>,
    /// Verdicts of follow-ups running off the loop come back here.
    pub(super) verify_tx: mpsc::UnboundedSender<VerifyDone>,
    verify_rx: Option<mpsc::UnboundedReceiver<VerifyDone>>,
    /// Where the gate asks which anchors the verifiers trust.
    pub(super) fleet: Arc<dyn FleetView>,
    /// certgate's scrape job(s), a regex.
    pub(super) fleet_job: String,
    /// How often a holding set asks.
    pub(super) fleet_poll: Duration,
    /// Gate evaluations running off the loop answer here.
    pub(super) gate_tx: mpsc::UnboundedSender<GateAnswer>,
    gate_rx: Option<mpsc::UnboundedReceiver<GateAnswer>>,
    /// Numbers holds, so a late answer to an earlier hold is ignored.
    pub(super) gate_token: u64,
    /// Operator releases arrive here.
    pub(super) release_tx: mpsc::Sender<ReleaseRequest>,
    release_rx: Option<mpsc::Receiver<ReleaseRequest>>,
}

impl<P: Publish, W: Workload> Core<P, W> {
    /// Builds the core: `publisher` gives each set's publish directory (`None` = monitor mode).
    pub(crate) fn new(
        config: Config,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        workload: Arc<W>,
        mut publisher: impl FnMut(&SetConfig) -> Option<P>,
    ) -> (Self, Shared) {
        let sets: Vec<SetRuntime<P>> = config
            .sets
            .into_iter()
            .map(|cfg| {
                let p = publisher(&cfg);
                SetRuntime::new(cfg, p)
            })
            .collect();
        let heartbeat = Heartbeat::default();
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            initialized: false,
            sets: sets.iter().map(|s| s.status.clone()).collect(),
            watch_problem: None,
        }));
        let mut by_dir: HashMap<PathBuf, Vec<SetId>> = HashMap::new();
        for (i, s) in sets.iter().enumerate() {
            for dir in &s.dirs {
                by_dir.entry(dir.clone()).or_default().push(SetId(i));
            }
        }
        let (verify_tx, verify_rx) = mpsc::unbounded_channel();
        let (gate_tx, gate_rx) = mpsc::unbounded_channel();
        // A few at a time: the admin listener waits for room (its peers are bounded).
        let (release_tx, release_rx) = mpsc::channel(8);
        let (fleet, fleet_job, fleet_poll): (Arc<dyn FleetView>, _, _) = match &config.fleet {
            Some(f) => (
                match PromFleet::new(f) {
                    Ok(view) => Arc::new(view),
                    Err(e) => Arc::new(NoFleet(e)),
                },
                f.job.clone(),
                f.poll_interval,
            ),
            None => (
                Arc::new(NoFleet("no [fleet] configured".into())),
                crate::fleet::DEFAULT_JOB.to_string(),
                crate::gate::DEFAULT_POLL_INTERVAL,
            ),
        };
        let shared = Shared {
            snapshot: snapshot_rx,
            heartbeat: heartbeat.clone(),
            metrics: metrics.clone(),
        };
        let core = Self {
            settings: config.daemon,
            sets,
            by_dir,
            metrics,
            heartbeat,
            snapshot_tx,
            initialized: false,
            watch_problem: None,
            resync_now: Arc::new(Notify::new()),
            clock,
            workload,
            verify_tx,
            verify_rx: Some(verify_rx),
            fleet,
            fleet_job,
            fleet_poll,
            gate_tx,
            gate_rx: Some(gate_rx),
            gate_token: 0,
            release_tx,
            release_rx: Some(release_rx),
        };
        (core, shared)
    }

    /// Asks `fleet` instead of the `[fleet]` query API (tests script the fleet's answers).
    #[cfg(test)]
    pub(crate) fn with_fleet(mut self, fleet: Arc<dyn FleetView>) -> Self {
        self.fleet = fleet;
        self
    }

    /// Every directory a set reads from: what the triggers must watch.
    pub(crate) fn watched_dirs(&self) -> BTreeSet<PathBuf> {
        self.sets
            .iter()
            .flat_map(|s| s.dirs.iter().cloned())
            .collect()
    }

    /// Records that file events are not watched, and why: certgate polls at each resync.
    pub(crate) fn polling_because(&mut self, why: String) {
        self.watch_problem = Some(why);
    }

    /// Asks the loop to resync at its next turn (what SIGHUP does).
    pub(crate) fn resync_handle(&self) -> Arc<Notify> {
        self.resync_now.clone()
    }

    /// Unix seconds now.
    pub(super) fn now(&self) -> i64 {
        self.clock.unix_millis().div_euclid(1000)
    }

    pub(super) fn set(&mut self, id: SetId) -> &mut SetRuntime<P> {
        &mut self.sets[id.0]
    }

    /// Runs until `shutdown` resolves; an in-flight evaluation or publish finishes first.
    pub(crate) async fn run<T: Triggers>(
        mut self,
        mut triggers: T,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let (Some(mut verdicts), Some(mut gate_answers), Some(mut releases)) = (
            self.verify_rx.take(),
            self.gate_rx.take(),
            self.release_rx.take(),
        ) else {
            return;
        };
        for s in &self.sets {
            let mode = if s.publisher.is_some() {
                "publish"
            } else {
                "monitor"
            };
            tracing::info!(set = %s.name(), mode, cert = %s.cfg.paths.cert.display(), "watching set");
            if s.publisher.is_none() {
                tracing::info!(set = %s.name(), "monitor mode: no --publish-dir, certgate validates and reports but publishes nothing");
            }
            self.metrics.declare_set(s.name());
            if s.cfg.gate.is_some() {
                self.metrics.gate.declare(s.name());
            }
        }
        self.adopt_published().await;
        self.heartbeat.beat(self.clock.unix_millis());
        let mut next_resync = Instant::now() + self.settings.resync_interval;
        let mut triggers_open = true;

        loop {
            self.process_due().await;
            self.process_gates().await;
            self.process_crossings();
            self.initialized = true;
            self.publish_snapshot();

            let deadline = self.next_deadline(next_resync);
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    tracing::info!("shutting down");
                    break;
                }
                batch = triggers.next(), if triggers_open => match batch {
                    Some(batch) => self.intake(batch, &mut triggers),
                    None => {
                        // Resyncs still find every change, only later.
                        tracing::warn!("file watcher stopped; relying on resync");
                        triggers_open = false;
                    }
                },
                Some(done) = verdicts.recv() => self.handle_verify(done).await,
                Some(answer) = gate_answers.recv() => self.handle_gate(answer).await,
                Some(req) = releases.recv() => self.handle_release(req).await,
                () = self.resync_now.notified() => {
                    tracing::info!("resync requested");
                    next_resync = Instant::now() + self.settings.resync_interval;
                    self.resync(&mut triggers).await;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if Instant::now() >= next_resync {
                        next_resync = Instant::now() + self.settings.resync_interval;
                        self.resync(&mut triggers).await;
                    }
                }
            }
            self.heartbeat.beat(self.clock.unix_millis());
        }
    }

    /// The periodic safety net: re-establish watches, look at every set again, and check again
    /// workloads not seen serving the live generation.
    async fn resync(&mut self, triggers: &mut impl Triggers) {
        for dir in triggers.refresh() {
            tracing::info!(dir = %dir.display(), "watch re-established");
        }
        for s in &mut self.sets {
            s.dirty = true;
        }
        self.reconcile_published().await;
        self.recheck_workloads();
    }

    /// The earliest of the next resync, a settle window closing and a threshold crossing.
    fn next_deadline(&self, next_resync: Instant) -> Instant {
        let now_unix = self.now();
        let now = Instant::now();
        let mut deadline = next_resync;
        if let Some(gate) = self.next_gate_deadline(now_unix) {
            deadline = deadline.min(gate);
        }
        for s in &self.sets {
            if let Some(d) = s.settle_deadline {
                deadline = deadline.min(d);
            }
            for at in [s.wake_at, s.retry_at].into_iter().flatten() {
                let secs = u64::try_from(at.saturating_sub(now_unix)).unwrap_or(0);
                deadline = deadline.min(
                    now.checked_add(Duration::from_secs(secs))
                        .unwrap_or(next_resync),
                );
            }
        }
        deadline
    }

    /// Logs and records the threshold crossings that are due, and schedules the next ones.
    fn process_crossings(&mut self) {
        let now = self.now();
        for s in &mut self.sets {
            match s.wake_at {
                Some(at) if at <= now => {}
                _ => continue,
            }
            if let Some(live) = &s.live {
                let (expiry, start) = (live.view.effective_expiry, live.view.effective_start());
                let msg = if now > expiry {
                    format!("live certificate expired at {}", rfc3339(expiry))
                } else if now < start {
                    format!("live certificate not valid before {}", rfc3339(start))
                } else if let Err(why) = s.status.readiness(now) {
                    why
                } else {
                    format!(
                        "live certificate expires at {} (within warn_before)",
                        rfc3339(expiry)
                    )
                };
                tracing::warn!(set = %s.name(), "{msg}");
                s.status_mut().push_event(now, EventKind::Threshold, msg);
            }
            s.schedule(now);
        }
    }

    /// Sends a new snapshot to readers when any set's status changed.
    fn publish_snapshot(&mut self) {
        let sets: Vec<_> = self.sets.iter().map(|s| s.status.clone()).collect();
        let changed = {
            let cur = self.snapshot_tx.borrow();
            cur.initialized != self.initialized
                || cur.watch_problem != self.watch_problem
                || cur.sets.len() != sets.len()
                || cur.sets.iter().zip(&sets).any(|(a, b)| !Arc::ptr_eq(a, b))
        };
        if changed {
            let _ = self.snapshot_tx.send(Arc::new(Snapshot {
                version: env!("CARGO_PKG_VERSION"),
                initialized: self.initialized,
                sets,
                watch_problem: self.watch_problem.clone(),
            }));
        }
    }
}
