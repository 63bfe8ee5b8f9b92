//! The sidecar's event loop: one task owns every set's state (the single writer); watches,
//! timers and verification results come in as events; HTTP reads snapshots it publishes.
//!
//! Per set, a change is: evaluate the source (load → validate → self-handshake) → if approved,
//! publish it atomically (or, in monitor mode, accept it) → reload the workload → verify the
//! workload serves it, else swap back. A refused candidate never reaches the publish dir.

pub mod reload;
pub mod schedule;
pub mod verify;
pub mod watch;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::time::Instant;

use self::schedule::{next_wakeup, Thresholds};
use self::verify::Served;
use self::watch::{DirWatcher, Trigger};
use crate::config::{Config, DaemonSettings, SetConfig};
use crate::metrics::Metrics;
use crate::pipeline::load::{self, FileRole, Material};
use crate::pipeline::{self, Approved, EvalOptions, Evaluation, FileSummary, Problem};
use crate::publish::{PublishState, Publisher};
use crate::state::{
    CandidateStatus, Heartbeat, LiveMaterial, Mode, SetStatus, Snapshot, Stages, WorkloadStatus,
};
use crate::time_fmt::rfc3339;

/// How many sets are evaluated at once when several are due (start-up, resync).
const MAX_CONCURRENT_EVALUATIONS: usize = 8;

/// Bound on one workload verification attempt.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long past `verify_timeout` an in-flight publish may hold its set's next rotation: covers
/// the reload (pid-file wait, POST or command) and the last probe, so a lost verdict cannot
/// stall the set.
const VERIFY_HOLD_SLACK: Duration = Duration::from_secs(40);

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

/// Live material with what is needed to verify and swap back.
#[derive(Debug, Clone)]
struct Live {
    view: LiveMaterial,
    material: Material,
    files: Vec<FileSummary>,
    publish: Option<PublishState>,
}

/// Verification (or reload-only) work that finished off the loop.
#[derive(Debug)]
struct VerifyDone {
    set: usize,
    generation: Option<String>,
    served: Option<Served>,
    reload_lines: Vec<Result<String, String>>,
    swap_on_failure: bool,
}

/// A due set whose files were read and changed: to be evaluated.
struct Job {
    set: usize,
    started: Instant,
    event_ms: f64,
    read_ms: f64,
    raw: Result<load::RawSet, load::LoadError>,
}

/// A job's evaluation, ready to apply.
struct Done {
    set: usize,
    started: Instant,
    stages: Stages,
    eval: Evaluation,
}

impl Job {
    async fn run(
        self,
        policy: crate::pipeline::validate::Policy,
        opts: EvalOptions,
        now: i64,
    ) -> Done {
        let eval = match self.raw {
            Ok(raw) => pipeline::evaluate_raw(raw, self.read_ms, &policy, &opts, now).await,
            Err(e) => {
                let mut eval = Evaluation::load_failed(&e);
                eval.timings.load_ms = self.read_ms;
                eval
            }
        };
        Done {
            set: self.set,
            started: self.started,
            stages: Stages {
                event_ms: self.event_ms,
                load_ms: eval.timings.load_ms,
                validate_ms: eval.timings.validate_ms,
                handshake_ms: eval.timings.handshake_ms,
                publish_ms: 0.0,
            },
            eval,
        }
    }
}

struct SetRuntime {
    cfg: SetConfig,
    dir_set: Vec<PathBuf>,
    publisher: Option<Publisher>,
    status: Arc<SetStatus>,
    live: Option<Live>,
    previous: Option<Live>,
    last_seen: Option<Vec<String>>,
    last_problem: Option<String>,
    change_seen: Option<Instant>,
    settle_deadline: Option<Instant>,
    dirty: bool,
    wake_at: Option<i64>,
    /// A publish whose workload verdict is still out: its generation, when it was published
    /// (for the rollback's reaction time) and a bound after which it stops holding the set.
    /// One rotation is in flight per set, so a swap back always returns to material the
    /// workload was seen serving (or that was live before certgate started).
    verifying: Option<InFlight>,
}

/// A published generation awaiting the workload's verdict.
#[derive(Debug, Clone)]
struct InFlight {
    generation: String,
    started: Instant,
    hold_until: Instant,
}

/// The daemon, built from a validated config.
pub struct Daemon {
    settings: DaemonSettings,
    sets: Vec<SetRuntime>,
    /// Source directory → the sets reading from it, so an event costs a lookup, not a scan.
    by_dir: HashMap<PathBuf, Vec<usize>>,
    metrics: Arc<Metrics>,
    heartbeat: Heartbeat,
    snapshot_tx: tokio_watch::Sender<Arc<Snapshot>>,
    initialized: bool,
    clock: fn() -> i64,
}

/// Hands memory freed after a large batch of evaluations (start-up, a resync that found many
/// changes: handshake buffers, decoded chains) back to the kernel. glibc keeps freed heap for
/// reuse, so without this the peak of the start-up batch stays resident for good.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The directory to watch for `p`: its parent, except that a path through the volume's
/// `..data` link itself (`/vol/..data/tls.crt`) is watched on the volume (`/vol`), where the
/// link is swapped; a watch on `..data` would follow it into one generation and go stale.
fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if d.file_name().is_some_and(|n| n == load::DATA_LINK) => parent(d),
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Daemon {
    /// Builds the daemon and the handles the HTTP side reads.
    pub fn new(config: Config, metrics: Arc<Metrics>, clock: fn() -> i64) -> (Self, Shared) {
        let sets: Vec<SetRuntime> = config
            .sets
            .into_iter()
            .map(|cfg| {
                let mode = if cfg.publish.is_some() {
                    Mode::Publish
                } else {
                    Mode::Monitor
                };
                let status = SetStatus::new(
                    &cfg.name,
                    mode,
                    cfg.required,
                    cfg.fail_ready_before.as_secs(),
                    cfg.policy.warn_before.as_secs(),
                );
                let mut dir_set: Vec<PathBuf> = cfg.paths.iter().map(|(_, p)| parent(p)).collect();
                dir_set.sort();
                dir_set.dedup();
                SetRuntime {
                    publisher: cfg
                        .publish
                        .as_ref()
                        .map(|p| Publisher::new(&p.dir, p.key_mode, &cfg.paths)),
                    cfg,
                    dir_set,
                    status: Arc::new(status),
                    live: None,
                    previous: None,
                    last_seen: None,
                    last_problem: None,
                    change_seen: None,
                    settle_deadline: None,
                    dirty: true,
                    wake_at: None,
                    verifying: None,
                }
            })
            .collect();
        let heartbeat = Heartbeat::default();
        let snapshot = Arc::new(Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            initialized: false,
            sets: sets.iter().map(|s| s.status.clone()).collect(),
        });
        let (snapshot_tx, snapshot_rx) = tokio_watch::channel(snapshot);
        let shared = Shared {
            snapshot: snapshot_rx,
            heartbeat: heartbeat.clone(),
            metrics: metrics.clone(),
        };
        let mut by_dir: HashMap<PathBuf, Vec<usize>> = HashMap::new();
        for (i, s) in sets.iter().enumerate() {
            for dir in &s.dir_set {
                by_dir.entry(dir.clone()).or_default().push(i);
            }
        }
        let daemon = Self {
            settings: config.daemon,
            by_dir,
            sets,
            metrics,
            heartbeat,
            snapshot_tx,
            initialized: false,
            clock,
        };
        (daemon, shared)
    }

    fn now(&self) -> i64 {
        (self.clock)() / 1000
    }

    /// Runs until `shutdown` resolves; an in-flight evaluation or publish finishes first.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), String> {
        tokio::pin!(shutdown);
        let (raw_tx, mut raw_rx) = mpsc::unbounded_channel();
        let wanted: BTreeSet<PathBuf> = self
            .sets
            .iter()
            .flat_map(|s| s.dir_set.iter().cloned())
            .collect();
        let mut watcher = DirWatcher::new(wanted, raw_tx)
            .map_err(|e| format!("cannot start inotify watcher: {e}"))?;
        let (verify_tx, mut verify_rx) = mpsc::unbounded_channel::<VerifyDone>();

        for (i, s) in self.sets.iter().enumerate() {
            let mode = if s.publisher.is_some() {
                "publish"
            } else {
                "monitor"
            };
            tracing::info!(set = %s.cfg.name, mode, cert = %s.cfg.paths.cert.display(), "watching set");
            if s.publisher.is_none() {
                tracing::info!(set = %s.cfg.name, "monitor mode: no --publish-dir, certgate validates and reports but publishes nothing");
            }
            let _ = i;
        }
        for s in &self.sets {
            self.metrics.declare_set(&s.cfg.name);
        }
        self.adopt_published().await;
        self.heartbeat.beat((self.clock)());
        let mut next_resync = Instant::now() + self.settings.resync_interval;

        loop {
            self.process_due(&verify_tx).await;
            self.process_crossings();
            if !self.initialized {
                self.initialized = true;
            }
            self.publish_snapshot();

            let deadline = self.next_deadline(next_resync);
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    tracing::info!("shutting down");
                    break;
                }
                Some(raw) = raw_rx.recv() => {
                    let mut batch = vec![raw];
                    while let Ok(more) = raw_rx.try_recv() {
                        batch.push(more);
                    }
                    self.handle_fs_events(batch, &mut watcher);
                }
                Some(done) = verify_rx.recv() => {
                    self.handle_verify(done, &verify_tx).await;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if Instant::now() >= next_resync {
                        next_resync = Instant::now() + self.settings.resync_interval;
                        for dir in watcher.refresh() {
                            tracing::info!(dir = %dir.display(), "watch re-established");
                        }
                        for s in &mut self.sets {
                            s.dirty = true;
                        }
                        self.recheck_workloads(&verify_tx);
                    }
                }
            }
            self.heartbeat.beat((self.clock)());
        }
        Ok(())
    }

    fn next_deadline(&self, next_resync: Instant) -> Instant {
        let now_unix = self.now();
        let now = Instant::now();
        let mut deadline = next_resync;
        for s in &self.sets {
            if let Some(d) = s.settle_deadline {
                deadline = deadline.min(d);
            }
            if let Some(at) = s.wake_at {
                let secs = (at - now_unix).max(0) as u64;
                deadline = deadline.min(now + Duration::from_secs(secs));
            }
        }
        deadline
    }

    fn handle_fs_events(
        &mut self,
        batch: Vec<notify::Result<notify::Event>>,
        watcher: &mut DirWatcher,
    ) {
        let seen = Instant::now();
        let mut refresh = false;
        for raw in batch {
            let event = match raw {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "watch error; rescanning every set");
                    self.mark_all(seen);
                    continue;
                }
            };
            for trigger in watch::classify(&event, watcher.wanted()) {
                match trigger {
                    Trigger::Commit(dir) => {
                        for &i in self.by_dir.get(&dir).into_iter().flatten() {
                            let s = &mut self.sets[i];
                            s.change_seen.get_or_insert(seen);
                            s.dirty = true;
                            s.settle_deadline = None;
                        }
                    }
                    Trigger::Changed(dir) => {
                        let settle = self.settings.settle;
                        for &i in self.by_dir.get(&dir).into_iter().flatten() {
                            let s = &mut self.sets[i];
                            s.change_seen.get_or_insert(seen);
                            s.settle_deadline = Some(seen + settle);
                        }
                    }
                    Trigger::Ancestor(_) => refresh = true,
                    Trigger::Rescan => {
                        tracing::warn!("inotify queue overflowed; rescanning every set");
                        self.mark_all(seen);
                    }
                }
            }
        }
        if refresh {
            for dir in watcher.refresh() {
                for &i in self.by_dir.get(&dir).into_iter().flatten() {
                    let s = &mut self.sets[i];
                    s.change_seen.get_or_insert(seen);
                    s.dirty = true;
                }
            }
        }
    }

    /// On each resync, verify again every workload last seen not serving the live generation
    /// (and with no publish in flight): one that started after the publish — a native
    /// sidecar's workload starts only once certgate is ready — or restarted is then reported
    /// serving instead of stale until the next rotation.
    fn recheck_workloads(&mut self, verify_tx: &mpsc::UnboundedSender<VerifyDone>) {
        for (i, s) in self.sets.iter().enumerate() {
            let unconfirmed = s
                .status
                .workload
                .as_ref()
                .is_some_and(|w| !w.serving_live_cert);
            if s.cfg.verify.is_none() || s.verifying.is_some() || !unconfirmed {
                continue;
            }
            let generation = s.live.as_ref().and_then(|l| l.view.generation.clone());
            spawn_follow_up(i, s, generation, FollowUp::Recheck, verify_tx);
        }
    }

    fn mark_all(&mut self, seen: Instant) {
        for s in &mut self.sets {
            s.change_seen.get_or_insert(seen);
            s.dirty = true;
        }
    }

    /// On start, in publish mode, take what the publish dir already holds as live when it is
    /// still valid: a restart must never serve anything worse than what was live.
    async fn adopt_published(&mut self) {
        let now = self.now();
        let opts = self.eval_options(false);
        for s in &mut self.sets {
            let Some(publisher) = &s.publisher else {
                continue;
            };
            let Some(generation) = publisher.current() else {
                continue;
            };
            let eval =
                pipeline::evaluate(&publisher.published_paths(), &s.cfg.policy, &opts, now).await;
            match eval.into_approved() {
                Ok(approved) => {
                    let state = publisher
                        .read_state()
                        .filter(|st| st.generation == generation)
                        .unwrap_or_else(|| PublishState {
                            generation: generation.clone(),
                            fingerprint_sha256: approved
                                .leaf()
                                .map(|l| l.fingerprint_sha256.clone())
                                .unwrap_or_default(),
                            previous: None,
                            previous_fingerprint_sha256: None,
                        });
                    let live = live_from(&approved, Some(state), publisher, now);
                    tracing::info!(set = %s.cfg.name, generation = %generation, "serving the previously published generation");
                    // Its source content key is unknown; the first evaluation compares by hash.
                    s.status_mut().push_event(
                        now,
                        "adopted",
                        format!("kept published generation {generation}"),
                    );
                    self.metrics.set_live(&s.cfg.name, Some(&live.view), now);
                    s.set_live(Some(live), now);
                }
                Err(eval) => {
                    let why = eval
                        .problems()
                        .first()
                        .map(|p| p.message.clone())
                        .unwrap_or_default();
                    tracing::warn!(set = %s.cfg.name, generation = %generation, reason = %why, "published generation is not valid; waiting for valid source material");
                }
            }
        }
    }

    fn eval_options(&self, handshake: bool) -> EvalOptions {
        EvalOptions {
            handshake,
            ..self.settings.eval.clone()
        }
    }

    /// Evaluates every set whose files changed (or whose settle window closed). Files are read
    /// and hashed first: unchanged content costs no decoding, validation or handshake, which
    /// keeps resyncs cheap. Several due sets (start-up, resync, rescan) are evaluated
    /// concurrently, then applied in order by this single writer.
    async fn process_due(&mut self, verify_tx: &mpsc::UnboundedSender<VerifyDone>) {
        let now_i = Instant::now();
        let now = self.now();
        let cap = self.settings.eval.max_file_size;
        let mut jobs = Vec::new();
        for i in 0..self.sets.len() {
            let s = &mut self.sets[i];
            let settled = s.settle_deadline.is_some_and(|d| d <= now_i);
            if !(s.dirty || settled) {
                continue;
            }
            if s.verifying.as_ref().is_some_and(|v| v.hold_until > now_i) {
                // Wait for the in-flight publish's verdict; the change stays pending (and its
                // reaction time counts the wait).
                s.dirty = true;
                s.settle_deadline = None;
                continue;
            }
            s.verifying = None;
            s.dirty = false;
            s.settle_deadline = None;
            let started = s.change_seen.take().unwrap_or_else(Instant::now);
            let event_ms = started.elapsed().as_secs_f64() * 1000.0;
            let read_started = Instant::now();
            let raw = load::read_set(&s.cfg.paths, cap);
            let read_ms = read_started.elapsed().as_secs_f64() * 1000.0;
            if let Ok(raw) = &raw {
                let key: Vec<String> = raw.files().map(|f| f.sha256.clone()).collect();
                if s.last_seen.as_ref() == Some(&key) {
                    continue;
                }
                if s.live
                    .as_ref()
                    .is_some_and(|l| l.files.iter().map(|f| &f.sha256).eq(key.iter()))
                {
                    // Already live (adopted at start-up, or the source went back to it).
                    s.last_seen = Some(key);
                    s.last_problem = None;
                    self.metrics.source_is_live(&s.cfg.name);
                    continue;
                }
            }
            jobs.push(Job {
                set: i,
                started,
                event_ms,
                read_ms,
                raw,
            });
        }
        match jobs.len() {
            0 => {}
            1 => {
                let job = jobs.remove(0);
                let opts = self.eval_options(self.sets[job.set].cfg.handshake);
                let policy = self.sets[job.set].cfg.policy.clone();
                let done = job.run(policy, opts, now).await;
                self.apply(done, verify_tx).await;
            }
            _ => {
                let mut running = tokio::task::JoinSet::new();
                let mut finished = Vec::with_capacity(jobs.len());
                for (order, job) in jobs.into_iter().enumerate() {
                    let opts = self.eval_options(self.sets[job.set].cfg.handshake);
                    let policy = self.sets[job.set].cfg.policy.clone();
                    running.spawn(async move { (order, job.run(policy, opts, now).await) });
                    while running.len() >= MAX_CONCURRENT_EVALUATIONS {
                        if let Some(Ok(done)) = running.join_next().await {
                            finished.push(done);
                        }
                    }
                }
                while let Some(done) = running.join_next().await {
                    if let Ok(done) = done {
                        finished.push(done);
                    }
                }
                finished.sort_by_key(|(order, _)| *order);
                let batch = finished.len();
                for (_, done) in finished {
                    self.apply(done, verify_tx).await;
                }
                if batch >= MAX_CONCURRENT_EVALUATIONS {
                    release_free_memory();
                }
            }
        }
    }

    async fn apply(&mut self, done: Done, verify_tx: &mpsc::UnboundedSender<VerifyDone>) {
        let Done {
            set: i,
            started,
            stages,
            eval,
        } = done;
        let now = self.now();
        let s = &mut self.sets[i];
        if let Some(h) = &eval.handshake {
            self.metrics
                .handshake(Duration::from_secs_f64(h.duration_ms / 1000.0));
        }
        // Files that could not even be read (missing, unreadable) have no content to dedupe
        // on: the same problem as last time changes nothing.
        let unread = eval.files.is_empty();
        if let Some(p) = eval.load_error.as_ref().filter(|_| unread) {
            if s.last_problem.as_deref() == Some(p.message.as_str()) {
                return;
            }
        }
        s.last_seen = (!unread).then(|| eval.content_key());
        s.last_problem = eval.load_error.as_ref().map(|p| p.message.clone());
        s.status_mut().source = eval.files.clone();
        match eval.into_approved() {
            Ok(approved) => {
                self.accept(i, approved, started, stages, now, verify_tx)
                    .await
            }
            Err(eval) => self.reject(i, &eval, started, stages, now),
        }
    }

    fn reject(&mut self, i: usize, eval: &Evaluation, started: Instant, stages: Stages, now: i64) {
        let s = &mut self.sets[i];
        let mut problems = eval.problems();
        let mut reason = eval.first_reason().unwrap_or("failed");
        // A bundle change that would strand the live leaf is named as such.
        if let Some(live) = &s.live {
            let hash = |files: &[FileSummary], role| {
                files
                    .iter()
                    .find(|f| f.role == role)
                    .map(|f| f.sha256.clone())
            };
            let same_cert = hash(&live.files, FileRole::Cert) == hash(&eval.files, FileRole::Cert);
            let new_trust =
                hash(&live.files, FileRole::Trust) != hash(&eval.files, FileRole::Trust);
            if same_cert && new_trust && reason == "unknown_issuer" {
                reason = "orphans_live_leaf";
                problems.insert(
                    0,
                    Problem {
                        reason,
                        message: "new trust bundle no longer trusts the live leaf; refusing it"
                            .into(),
                    },
                );
            }
        }
        let reaction = started.elapsed();
        let first = problems
            .first()
            .map(|p| p.message.clone())
            .unwrap_or_default();
        tracing::warn!(set = %s.cfg.name, outcome = "rejected", reason, reaction_ms = reaction.as_secs_f64() * 1000.0, "{first}");
        self.metrics
            .rotation(&s.cfg.name, "rejected", reason, Some(reaction), now);
        let fingerprint = eval
            .verdict
            .as_ref()
            .and_then(|v| v.leaf())
            .map(|l| l.fingerprint_sha256.clone());
        let monitor = s.publisher.is_none();
        let st = s.status_mut();
        st.last_rejection = Some(rfc3339(now));
        st.last_candidate = Some(CandidateStatus {
            at: rfc3339(now),
            outcome: "rejected",
            fingerprint_sha256: fingerprint,
            reasons: problems,
            reaction_ms: reaction.as_secs_f64() * 1000.0,
            stages,
        });
        st.push_event(now, "rejected", format!("{reason}: {first}"));
        if monitor {
            // The workload reads the source itself: bad source material is what it has.
            self.metrics.set_live(&s.cfg.name, None, now);
            s.set_live(None, now);
            s.status_mut().live_problem = Some(format!("{reason}: {first}"));
        } else if s.live.is_none() {
            s.status_mut().live_problem = Some(format!(
                "nothing published yet; source rejected: {reason}: {first}"
            ));
        }
    }

    async fn accept(
        &mut self,
        i: usize,
        approved: Approved,
        started: Instant,
        mut stages: Stages,
        now: i64,
        verify_tx: &mpsc::UnboundedSender<VerifyDone>,
    ) {
        let s = &mut self.sets[i];
        let fingerprint = approved
            .leaf()
            .map(|l| l.fingerprint_sha256.clone())
            .unwrap_or_default();
        let Some(publisher) = s.publisher.clone() else {
            let live = live_from_source(&approved, &s.cfg, now);
            let reaction = started.elapsed();
            tracing::info!(set = %s.cfg.name, fingerprint = %fingerprint, outcome = "accepted", reaction_ms = reaction.as_secs_f64() * 1000.0, "source material valid");
            self.metrics
                .rotation(&s.cfg.name, "accepted", "ok", Some(reaction), now);
            self.metrics.set_live(&s.cfg.name, Some(&live.view), now);
            s.set_live(Some(live), now);
            let st = s.status_mut();
            st.last_candidate = Some(candidate(now, "accepted", &fingerprint, reaction, stages));
            st.push_event(
                now,
                "accepted",
                format!("valid source material {}", short(&fingerprint)),
            );
            return;
        };
        let to_publish = approved.clone();
        let publisher_c = publisher.clone();
        let publish_started = Instant::now();
        let result = tokio::task::spawn_blocking(move || publisher_c.publish(&to_publish))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let reaction = started.elapsed();
        stages.publish_ms = publish_started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Err(e) => {
                tracing::error!(set = %s.cfg.name, outcome = "rejected", reason = "publish_failed", "{e}");
                self.metrics.rotation(
                    &s.cfg.name,
                    "rejected",
                    "publish_failed",
                    Some(reaction),
                    now,
                );
                // Not a verdict on the material: try again on the next change or resync.
                s.last_seen = None;
                let st = s.status_mut();
                st.last_rejection = Some(rfc3339(now));
                st.last_candidate = Some(CandidateStatus {
                    reasons: vec![Problem {
                        reason: "publish_failed",
                        message: e.clone(),
                    }],
                    ..candidate(now, "rejected", &fingerprint, reaction, stages)
                });
                st.push_event(now, "rejected", format!("publish_failed: {e}"));
            }
            Ok(state) => {
                tracing::info!(set = %s.cfg.name, fingerprint = %fingerprint, generation = %state.generation, outcome = "published", reaction_ms = reaction.as_secs_f64() * 1000.0, "published");
                self.metrics
                    .rotation(&s.cfg.name, "published", "ok", Some(reaction), now);
                let generation = state.generation.clone();
                let live = live_from(&approved, Some(state), &publisher, now);
                self.metrics.set_live(&s.cfg.name, Some(&live.view), now);
                let old = s.live.take();
                s.previous = old;
                s.set_live(Some(live), now);
                let st = s.status_mut();
                st.last_publish = Some(rfc3339(now));
                st.last_candidate =
                    Some(candidate(now, "published", &fingerprint, reaction, stages));
                st.push_event(
                    now,
                    "published",
                    format!("generation {generation} leaf {}", short(&fingerprint)),
                );
                if let Some(timeout) = s.cfg.verify.as_ref().map(|v| v.timeout) {
                    // The last verdict was about the previous generation: until the workload
                    // is seen serving this one, it is not known to.
                    s.status_mut().workload = Some(WorkloadStatus {
                        serving_live_cert: false,
                        served_fingerprint_sha256: None,
                        message: format!("verifying the workload serves generation {generation}"),
                        checked_at: rfc3339(now),
                    });
                    self.metrics.workload_serving(&s.cfg.name, false);
                    s.verifying = Some(InFlight {
                        generation: generation.clone(),
                        started,
                        hold_until: Instant::now() + VERIFY_HOLD_SLACK + timeout,
                    });
                }
                spawn_follow_up(i, s, Some(generation), FollowUp::Published, verify_tx);
            }
        }
    }

    async fn handle_verify(
        &mut self,
        done: VerifyDone,
        verify_tx: &mpsc::UnboundedSender<VerifyDone>,
    ) {
        let now = self.now();
        let s = &mut self.sets[done.set];
        for line in &done.reload_lines {
            match line {
                Ok(msg) => {
                    tracing::info!(set = %s.cfg.name, "reload: {msg}");
                    s.status_mut().push_event(now, "reload", msg.clone());
                }
                Err(msg) => {
                    tracing::warn!(set = %s.cfg.name, "reload failed: {msg}");
                    s.status_mut().push_event(now, "reload_failed", msg.clone());
                }
            }
        }
        let in_flight = s
            .verifying
            .take_if(|v| Some(&v.generation) == done.generation.as_ref());
        let Some(served) = done.served else {
            return;
        };
        let live_generation = s.live.as_ref().and_then(|l| l.view.generation.clone());
        if done.generation != live_generation {
            return; // superseded by a newer publish
        }
        let live_fp = s
            .live
            .as_ref()
            .and_then(|l| l.view.leaf())
            .map(|l| l.fingerprint_sha256.clone())
            .unwrap_or_default();
        let previous_fp = s
            .previous
            .as_ref()
            .and_then(|l| l.view.leaf())
            .map(|l| l.fingerprint_sha256.clone());
        let (serving, message, refuse) = match &served {
            Served::Leaf(fp) if *fp == live_fp => (true, "workload serves the live certificate".to_string(), false),
            Served::Leaf(fp) if Some(fp) == previous_fp.as_ref() => (
                false,
                format!("workload serving stale certificate {} although {} was published and reload sent", short(fp), short(&live_fp)),
                false,
            ),
            Served::Leaf(fp) => (false, format!("workload serves an unexpected certificate {}", short(fp)), true),
            Served::Failed(e) => (false, format!("workload failed with the new certificate: {e}"), true),
        };
        self.metrics.workload_serving(&s.cfg.name, serving);
        let served_fp = match &served {
            Served::Leaf(fp) => Some(fp.clone()),
            Served::Failed(_) => None,
        };
        s.status_mut().workload = Some(WorkloadStatus {
            serving_live_cert: serving,
            served_fingerprint_sha256: served_fp,
            message: message.clone(),
            checked_at: rfc3339(now),
        });
        if serving {
            tracing::info!(set = %s.cfg.name, "{message}");
            return;
        }
        if !refuse || !done.swap_on_failure {
            tracing::warn!(set = %s.cfg.name, "{message}");
            s.status_mut().push_event(now, "stale", message);
            return;
        }
        let started = in_flight.map(|v| v.started);
        self.swap_back(done.set, &message, started, now, verify_tx)
            .await;
    }

    async fn swap_back(
        &mut self,
        i: usize,
        why: &str,
        started: Option<Instant>,
        now: i64,
        verify_tx: &mpsc::UnboundedSender<VerifyDone>,
    ) {
        let s = &mut self.sets[i];
        let (Some(publisher), Some(live)) = (s.publisher.clone(), s.live.clone()) else {
            return;
        };
        let Some(state) = live.publish.clone() else {
            return;
        };
        let fingerprint = live
            .view
            .leaf()
            .map(|l| l.fingerprint_sha256.clone())
            .unwrap_or_default();
        if s.previous.is_none() || state.previous.is_none() {
            let msg = format!("{why}; no previous generation to swap back to");
            tracing::error!(set = %s.cfg.name, "{msg}");
            s.status_mut().push_event(now, "stale", msg);
            return;
        }
        let result = tokio::task::spawn_blocking(move || publisher.swap_back(&state))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match result {
            Err(e) => {
                tracing::error!(set = %s.cfg.name, "swap back failed: {e}");
                s.status_mut().push_event(now, "rollback_failed", e);
            }
            Ok(restored_state) => {
                let mut restored = s.previous.take();
                if let Some(r) = restored.as_mut() {
                    r.publish = Some(restored_state.clone());
                    r.view.generation = Some(restored_state.generation.clone());
                }
                tracing::warn!(set = %s.cfg.name, fingerprint = %fingerprint, outcome = "rolled_back", reason = "workload_refused", generation = %restored_state.generation, "{why}; swapped back");
                // Reaction: from the source change that brought the refused material to the
                // restored generation being back in place.
                let reaction = started.map(|t| t.elapsed());
                self.metrics.rotation(
                    &s.cfg.name,
                    "rolled_back",
                    "workload_refused",
                    reaction,
                    now,
                );
                self.metrics
                    .set_live(&s.cfg.name, restored.as_ref().map(|r| &r.view), now);
                s.set_live(restored, now);
                let st = s.status_mut();
                st.last_rollback = Some(rfc3339(now));
                st.last_candidate = Some(CandidateStatus {
                    reasons: vec![Problem {
                        reason: "workload_refused",
                        message: why.to_string(),
                    }],
                    ..candidate(
                        now,
                        "rolled_back",
                        &fingerprint,
                        reaction.unwrap_or_default(),
                        Stages::default(),
                    )
                });
                st.push_event(
                    now,
                    "rolled_back",
                    format!("{why}; restored generation {}", restored_state.generation),
                );
                // Tell the workload again, and check it serves the restored material.
                spawn_follow_up(
                    i,
                    s,
                    Some(restored_state.generation),
                    FollowUp::Restored,
                    verify_tx,
                );
            }
        }
    }

    fn process_crossings(&mut self) {
        let now = self.now();
        for s in &mut self.sets {
            let Some(at) = s.wake_at else {
                continue;
            };
            if at > now {
                continue;
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
                tracing::warn!(set = %s.cfg.name, "{msg}");
                s.status_mut().push_event(now, "threshold", msg);
            }
            s.schedule(now);
        }
    }

    fn publish_snapshot(&mut self) {
        let sets: Vec<Arc<SetStatus>> = self.sets.iter().map(|s| s.status.clone()).collect();
        let changed = {
            let cur = self.snapshot_tx.borrow();
            cur.initialized != self.initialized
                || cur.sets.len() != sets.len()
                || cur.sets.iter().zip(&sets).any(|(a, b)| !Arc::ptr_eq(a, b))
        };
        if changed {
            let _ = self.snapshot_tx.send(Arc::new(Snapshot {
                version: env!("CARGO_PKG_VERSION"),
                initialized: self.initialized,
                sets,
            }));
        }
    }
}

impl SetRuntime {
    /// Copy-on-write access: readers holding the old snapshot keep theirs.
    fn status_mut(&mut self) -> &mut SetStatus {
        Arc::make_mut(&mut self.status)
    }

    fn set_live(&mut self, live: Option<Live>, now: i64) {
        let st = self.status_mut();
        st.live = live.as_ref().map(|l| l.view.clone());
        st.live_problem = None;
        self.live = live;
        self.schedule(now);
    }

    fn schedule(&mut self, now: i64) {
        self.wake_at = self.live.as_ref().and_then(|l| {
            next_wakeup(
                &Thresholds {
                    not_before: l.view.effective_start(),
                    not_after: l.view.effective_expiry,
                    warn_before: self.cfg.policy.warn_before.as_secs() as i64,
                    fail_ready_before: self.cfg.fail_ready_before.as_secs() as i64,
                },
                now,
            )
        });
    }
}

/// What follows a change of the live material, off the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FollowUp {
    /// A new generation was published: reload, verify, swap back if the workload refuses it.
    Published,
    /// The previous generation was restored: reload and verify, nothing further to swap to.
    Restored,
    /// The live generation is unchanged but the workload was not seen serving it (it may have
    /// started after the publish, or restarted): verify again, no reload, no swap.
    Recheck,
}

fn spawn_follow_up(
    i: usize,
    s: &SetRuntime,
    generation: Option<String>,
    kind: FollowUp,
    tx: &mpsc::UnboundedSender<VerifyDone>,
) {
    let swap_on_failure = kind == FollowUp::Published;
    let reload = s.cfg.reload.clone().filter(|_| kind != FollowUp::Recheck);
    let verify = s.cfg.verify.clone();
    if reload.is_none() && verify.is_none() {
        return;
    }
    let Some(live) = s.live.clone() else {
        return;
    };
    let expected_fp = live.view.leaf().map(|l| l.fingerprint_sha256.clone());
    let name = verify
        .as_ref()
        .and_then(|v| v.name.as_ref())
        .or_else(|| s.cfg.policy.names.first())
        .and_then(|n| n.server_name())
        .or_else(|| {
            live.view.leaf().and_then(|l| {
                l.sans.iter().find_map(|san| match san {
                    crate::pipeline::inspect::San::Dns(d) => {
                        rustls::pki_types::ServerName::try_from(d.replace("*.", "wildcard.")).ok()
                    }
                    crate::pipeline::inspect::San::Ip(ip) => {
                        Some(rustls::pki_types::ServerName::IpAddress((*ip).into()))
                    }
                    _ => None,
                })
            })
        })
        .unwrap_or_else(|| {
            rustls::pki_types::ServerName::try_from("certgate.invalid")
                .expect("static name is valid")
        });
    let tx = tx.clone();
    tokio::spawn(async move {
        let reload_lines = match &reload {
            Some(r) => reload::reload(r).await,
            None => Vec::new(),
        };
        let served = match verify {
            None => None,
            Some(v) => {
                // Poll until the workload serves the expected leaf or the deadline passes; the
                // last observation is the verdict.
                // Each attempt gets its own bound so the last one is a real observation, not
                // a cut-off at the deadline's edge.
                let deadline = Instant::now() + v.timeout;
                let mut last;
                loop {
                    last = verify::probe(v.addr, name.clone(), &live.material, PROBE_TIMEOUT).await;
                    let good =
                        matches!(&last, Served::Leaf(fp) if Some(fp) == expected_fp.as_ref());
                    if good || Instant::now() >= deadline {
                        break;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(Duration::from_millis(200).min(left)).await;
                }
                Some(last)
            }
        };
        let _ = tx.send(VerifyDone {
            set: i,
            generation,
            served,
            reload_lines,
            swap_on_failure,
        });
    });
}

fn candidate(
    now: i64,
    outcome: &'static str,
    fingerprint: &str,
    reaction: Duration,
    stages: Stages,
) -> CandidateStatus {
    CandidateStatus {
        at: rfc3339(now),
        outcome,
        fingerprint_sha256: Some(fingerprint.to_string()).filter(|f| !f.is_empty()),
        reasons: Vec::new(),
        reaction_ms: reaction.as_secs_f64() * 1000.0,
        stages,
    }
}

fn short(fp: &str) -> &str {
    fp.get(..16).unwrap_or(fp)
}

fn trust_fingerprint(m: &Material) -> Option<String> {
    m.raw.trust.as_ref()?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for a in &m.trust {
        ctx.update(a.as_ref());
    }
    Some(crate::hex(ctx.finish().as_ref()))
}

fn live_view(
    approved: &Approved,
    generation: Option<String>,
    cert_path: String,
    trust_path: Option<String>,
    now: i64,
) -> LiveMaterial {
    let eval = approved.evaluation();
    let verdict = eval.verdict.as_ref();
    let chain = verdict.map(|v| v.chain.clone()).unwrap_or_default();
    let effective_expiry = verdict
        .and_then(|v| v.effective_expiry)
        .unwrap_or_else(|| chain.iter().map(|c| c.not_after).min().unwrap_or(now));
    LiveMaterial {
        generation,
        cert_path,
        trust_path,
        anchors: verdict.map(|v| v.anchors.clone()).unwrap_or_default(),
        chain,
        trust_fingerprint: trust_fingerprint(approved.material()),
        effective_expiry,
        since: rfc3339(now),
        content_key: eval.content_key(),
    }
}

fn live_from(
    approved: &Approved,
    state: Option<PublishState>,
    publisher: &Publisher,
    now: i64,
) -> Live {
    let paths = publisher.published_paths();
    let view = live_view(
        approved,
        state.as_ref().map(|s| s.generation.clone()),
        paths.cert.display().to_string(),
        paths.trust.as_ref().map(|p| p.display().to_string()),
        now,
    );
    Live {
        view,
        material: approved.material().clone(),
        files: source_files(approved),
        publish: state,
    }
}

fn live_from_source(approved: &Approved, cfg: &SetConfig, now: i64) -> Live {
    let view = live_view(
        approved,
        None,
        cfg.paths.cert.display().to_string(),
        cfg.paths.trust.as_ref().map(|p| p.display().to_string()),
        now,
    );
    Live {
        view,
        material: approved.material().clone(),
        files: source_files(approved),
        publish: None,
    }
}

fn source_files(approved: &Approved) -> Vec<FileSummary> {
    approved.evaluation().files.clone()
}
