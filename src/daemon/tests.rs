//! The daemon's state machine driven with fakes, in milliseconds: triggers sent by hand, a
//! publisher that keeps generations in memory (and fails on cue), a workload whose verdicts are
//! scripted (and can be held back), and a clock on tokio's (pausable) time. Validation is real:
//! the material is minted at run time and read from real files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certgate_testkit::pki::{Alg, Ca, LeafSpec};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::event_loop::Core;
use super::follow_up::{FollowUpReport, FollowUpRequest, Workload};
use super::verify::{Observation, Served};
use super::watch::{Trigger, Triggers};
use super::{Clock, Shared};
use crate::config::Config;
use crate::ids::{Fingerprint, GenerationName};
use crate::labels::{EventKind, Outcome, Reason};
use crate::metrics::Metrics;
use crate::pipeline::handshake::TlsVersion;
use crate::pipeline::load::SourcePaths;
use crate::pipeline::Approved;
use crate::publish::{Publish, PublishError, PublishState, Published};
use crate::state::{SetStatus, Snapshot};

// === fakes ===

/// Unix time that moves with tokio's clock, so `tokio::time::pause` drives thresholds too.
struct TestClock {
    base_millis: i64,
    start: Instant,
}

impl Clock for TestClock {
    fn unix_millis(&self) -> i64 {
        self.base_millis + self.start.elapsed().as_millis() as i64
    }
}

/// Triggers sent by the test.
struct FakeTriggers(mpsc::UnboundedReceiver<Vec<Trigger>>);

impl Triggers for FakeTriggers {
    async fn next(&mut self) -> Option<Vec<Trigger>> {
        self.0.recv().await
    }
    fn refresh(&mut self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// A publish directory in memory.
#[derive(Default)]
struct Dir {
    current: Option<PublishState>,
    published: Vec<Fingerprint>,
    swap_backs: usize,
    fail_next: bool,
    first_seen: Vec<crate::state::FirstSeen>,
}

#[derive(Clone)]
struct FakePublisher {
    dir: Arc<Mutex<Dir>>,
    /// What `published_paths` answers (adoption reads them).
    paths: SourcePaths,
}

impl FakePublisher {
    fn dir(&self) -> std::sync::MutexGuard<'_, Dir> {
        self.dir.lock().unwrap()
    }
}

impl Publish for FakePublisher {
    fn publish(&self, approved: &Approved) -> Result<Published, PublishError> {
        let mut dir = self.dir();
        if std::mem::take(&mut dir.fail_next) {
            return Err(PublishError::new(
                "/fake",
                "write file",
                std::io::Error::from_raw_os_error(28),
            ));
        }
        dir.published.push(approved.fingerprint().clone());
        let old = dir.current.take();
        let state = PublishState {
            generation: GenerationName::new(format!("..gen-{}", dir.published.len())),
            fingerprint_sha256: Some(approved.fingerprint().clone()),
            previous: old.as_ref().map(|o| o.generation.clone()),
            previous_fingerprint_sha256: old.and_then(|o| o.fingerprint_sha256),
        };
        dir.current = Some(state.clone());
        Ok(Published {
            state,
            warnings: Vec::new(),
        })
    }

    fn swap_back(&self, state: &PublishState) -> Result<PublishState, PublishError> {
        let mut dir = self.dir();
        let previous = state.previous.clone().ok_or_else(|| {
            PublishError::new("/fake", "swap back", std::io::ErrorKind::NotFound.into())
        })?;
        dir.swap_backs += 1;
        let restored = PublishState {
            generation: previous,
            fingerprint_sha256: state.previous_fingerprint_sha256.clone(),
            previous: None,
            previous_fingerprint_sha256: None,
        };
        dir.current = Some(restored.clone());
        Ok(restored)
    }

    fn current(&self) -> Option<GenerationName> {
        self.dir().current.as_ref().map(|s| s.generation.clone())
    }

    fn read_state(&self) -> Option<PublishState> {
        self.dir().current.clone()
    }

    fn published_paths(&self) -> SourcePaths {
        self.paths.clone()
    }

    fn load_first_seen(&self) -> Vec<crate::state::FirstSeen> {
        self.dir().first_seen.clone()
    }

    fn save_first_seen(&self, seen: &[crate::state::FirstSeen]) -> Result<(), PublishError> {
        self.dir().first_seen = seen.to_vec();
        Ok(())
    }

    fn generation_paths(&self, _generation: &GenerationName) -> Option<SourcePaths> {
        // Every generation of the fake holds what the source holds now.
        Some(self.paths.clone())
    }

    fn reconcile(&self, _live: &GenerationName) -> Result<Vec<String>, PublishError> {
        Ok(Vec::new())
    }

    fn sweep(&self, _live: &GenerationName, _previous: Option<&GenerationName>) -> usize {
        0
    }
}

/// How the fake workload answers a follow-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// It serves what was published.
    Serve,
    /// Every handshake fails.
    Fail,
    /// It never reloads: it serves the first leaf it was asked about.
    Old,
    /// It serves a leaf certgate never published.
    Foreign,
    /// Nothing answers.
    Silent,
}

/// A workload whose verdicts are scripted; with `hold`, each verdict waits for a permit.
struct FakeWorkload {
    answer: Mutex<Answer>,
    hold: bool,
    permits: Semaphore,
    asked: Mutex<Vec<Fingerprint>>,
    /// Follow-ups after a restart that found the workload already serving the live leaf.
    reloads_skipped: std::sync::atomic::AtomicUsize,
}

impl FakeWorkload {
    fn new(hold: bool) -> Self {
        Self {
            answer: Mutex::new(Answer::Serve),
            hold,
            permits: Semaphore::new(0),
            asked: Mutex::new(Vec::new()),
            reloads_skipped: Default::default(),
        }
    }
    fn answer(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }
}

impl Workload for FakeWorkload {
    async fn follow_up(&self, request: FollowUpRequest) -> FollowUpReport {
        self.asked.lock().unwrap().push(request.expected.clone());
        if self.hold {
            if let Ok(p) = self.permits.acquire().await {
                p.forget();
            }
        }
        let answer = *self.answer.lock().unwrap();
        let first = self.asked.lock().unwrap()[0].clone();
        let served = match answer {
            Answer::Serve => Served::Leaf(request.expected.clone()),
            Answer::Fail => Served::Refused("handshake: alert handshake_failure".into()),
            Answer::Old => Served::Leaf(first),
            Answer::Foreign => Served::Leaf(Fingerprint::of(b"not published")),
            Answer::Silent => Served::NoAnswer("connect: connection refused".into()),
        };
        if request.reload_unless_serving && answer == Answer::Serve {
            self.reloads_skipped
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let observed = request
            .verify
            .as_ref()
            .map(|_| Observation(vec![(TlsVersion::Tls13, served)]));
        let reload = match &request.reload {
            Some(_) => vec![Ok("sent SIGHUP to pid 4242 (from /run/app.pid)".to_string())],
            None => Vec::new(),
        };
        FollowUpReport {
            reload,
            observed,
            refused_early: answer == Answer::Fail,
        }
    }
}

/// A fleet whose answers the test sets; counts the rounds asked.
#[derive(Default)]
struct ScriptedFleet {
    answers: Mutex<crate::gate::Answers>,
    asked: std::sync::atomic::AtomicUsize,
}

impl ScriptedFleet {
    /// One verifier pod per entry, trusting the given anchors.
    fn set(&self, pods: &[(&str, &[&crate::ids::AnchorId])]) {
        let sample = |pod: &str, extra: Option<&str>, value: f64| {
            let mut labels = std::collections::BTreeMap::new();
            labels.insert("namespace".to_string(), "shop".to_string());
            labels.insert("pod".to_string(), pod.to_string());
            if let Some(a) = extra {
                labels.insert("anchor_id".to_string(), a.to_string());
            }
            crate::fleet::query::Sample {
                labels,
                value,
                at: 0.0,
            }
        };
        let mut a = crate::gate::Answers::default();
        for (pod, anchors) in pods {
            a.up.push(sample(pod, None, 1.0));
            a.exporting.push(sample(pod, None, 1.0));
            for id in *anchors {
                a.relevant.push(sample(pod, Some(id.as_str()), 1.0));
            }
        }
        *self.answers.lock().unwrap() = a;
    }

    fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl crate::gate::query::FleetView for ScriptedFleet {
    fn ask(
        &self,
        _round: Arc<crate::gate::query::RoundQueries>,
    ) -> crate::gate::query::BoxFuture<Result<crate::gate::Answers, crate::fleet::query::QueryError>>
    {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let a = self.answers.lock().unwrap().clone();
        Box::pin(async move { Ok(a) })
    }
}

// === material ===

/// The test kit's CA, issuing `localhost` server leaves.
struct Pki(Ca);

/// A leaf: certificate PEM, key PEM, fingerprint.
struct Leaf {
    cert: String,
    key: String,
    fingerprint: Fingerprint,
}

impl Pki {
    fn new() -> Self {
        Self(Ca::root("daemon test root", Alg::P256))
    }

    fn pem(&self) -> &str {
        &self.0.cert_pem
    }

    /// A server leaf for `localhost` valid until `not_after`.
    fn leaf_until(&self, not_after: time::OffsetDateTime) -> Leaf {
        let not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        self.leaf_between(not_before, not_after)
    }

    /// A server leaf for `localhost` valid from `not_before` to `not_after`.
    fn leaf_between(
        &self,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Leaf {
        let leaf = self
            .0
            .leaf(&LeafSpec::new("localhost").valid(not_before, not_after));
        Leaf {
            fingerprint: Fingerprint::of(&leaf.cert_der),
            cert: leaf.cert_pem,
            key: leaf.key.pkcs8_pem(),
        }
    }

    fn leaf(&self) -> Leaf {
        self.leaf_until(time::OffsetDateTime::now_utc() + time::Duration::days(30))
    }
}

// === harness ===

struct Harness {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    pki: Pki,
    shared: Shared,
    triggers: mpsc::UnboundedSender<Vec<Trigger>>,
    publisher: FakePublisher,
    workload: Arc<FakeWorkload>,
    clock: Arc<TestClock>,
    resync: Arc<tokio::sync::Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// How to build the harness.
struct Setup {
    verify: bool,
    hold: bool,
    /// The publish directory already holds the source material as generation `..gen-0`.
    adopted: bool,
    /// With `adopted`: the state file also records a previous generation (holding the same
    /// leaf: the fake's generations all read the source).
    with_previous: bool,
    /// With `adopted`: a previous run saved the root as first seen this many seconds ago.
    saved_first_seen: Option<i64>,
    extra: &'static str,
    /// No file watcher: inotify could not start, so the loop polls at each resync.
    no_watch: bool,
    /// How long the first leaf is valid for (30 days by default).
    lifetime: Option<time::Duration>,
    /// The fleet the gate asks (a set with `[set.gate]` in `extra`).
    fleet: Option<Arc<ScriptedFleet>>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            verify: true,
            hold: false,
            adopted: false,
            with_previous: false,
            saved_first_seen: None,
            extra: "",
            no_watch: false,
            lifetime: None,
            fleet: None,
        }
    }
}

impl Harness {
    async fn start(setup: Setup) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let pki = Pki::new();
        std::fs::write(src.join("ca.crt"), pki.pem()).unwrap();
        let first = match setup.lifetime {
            Some(d) => pki.leaf_until(time::OffsetDateTime::now_utc() + d),
            None => pki.leaf(),
        };
        write_leaf(&src, &first);
        let verify = if setup.verify {
            "verify_addr = \"127.0.0.1:1\"\nverify_timeout = \"1s\"\n"
        } else {
            ""
        };
        let toml = format!(
            "[daemon]\nresync_interval = \"1h\"\nsettle = \"10ms\"\n\n[[set]]\nname = \"web\"\n\
             cert = \"{src}/tls.crt\"\nkey = \"{src}/tls.key\"\ntrust = \"{src}/ca.crt\"\n\
             publish_dir = \"{out}\"\nhandshake = false\n{verify}{extra}",
            src = src.display(),
            out = tmp.path().join("out").display(),
            extra = setup.extra,
        );
        let config = Config::from_toml(&toml).unwrap();
        let paths = config.sets[0].paths.clone();
        let publisher = FakePublisher {
            dir: Arc::default(),
            paths,
        };
        if setup.adopted {
            publisher.dir().current = Some(PublishState {
                generation: GenerationName::new("..gen-0"),
                fingerprint_sha256: Some(first.fingerprint.clone()),
                previous: setup
                    .with_previous
                    .then(|| GenerationName::new("..gen-prev")),
                previous_fingerprint_sha256: setup.with_previous.then(|| first.fingerprint.clone()),
            });
        }
        if let Some(ago) = setup.saved_first_seen {
            let id = crate::pipeline::inspect::anchor_id_of(&pki.0.cert_der).unwrap();
            publisher.dir().first_seen = vec![crate::state::FirstSeen {
                anchor_id: id,
                at: time::OffsetDateTime::now_utc().unix_timestamp() - ago,
                via: crate::state::Via::Rotation,
            }];
        }
        let workload = Arc::new(FakeWorkload::new(setup.hold));
        let clock = Arc::new(TestClock {
            base_millis: time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
            start: Instant::now(),
        });
        let metrics = Arc::new(Metrics::new().unwrap());
        let p = publisher.clone();
        let (mut core, shared) =
            Core::new(config, metrics, clock.clone(), workload.clone(), |_| {
                Some(p.clone())
            });
        if let Some(f) = setup.fleet {
            core = core.with_fleet(f);
        }
        let (triggers, rx) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let resync = core.resync_handle();
        let source = if setup.no_watch {
            core.polling_because("cannot start inotify: test".into());
            None
        } else {
            Some(FakeTriggers(rx))
        };
        let task = tokio::spawn(core.run(source, async move {
            let _ = stopped.await;
        }));
        Self {
            _tmp: tmp,
            src,
            pki,
            shared,
            triggers,
            publisher,
            workload,
            clock,
            resync,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Writes `leaf` as the source and tells the daemon, as a kubelet commit would.
    fn rotate(&self, leaf: &Leaf) {
        write_leaf(&self.src, leaf);
        self.triggers
            .send(vec![Trigger::Commit(self.src.clone())])
            .unwrap();
    }

    /// Waits (bounded) until the set's status satisfies `pred`; returns that snapshot.
    async fn until(&mut self, what: &str, pred: impl Fn(&SetStatus) -> bool) -> Arc<Snapshot> {
        let found = tokio::time::timeout(
            Duration::from_secs(10),
            self.shared
                .snapshot
                .wait_for(|s| s.initialized && pred(&s.sets[0])),
        )
        .await
        .ok()
        .and_then(|r| r.ok().map(|snap| snap.clone()));
        found.unwrap_or_else(|| panic!("timed out waiting for {what}: {:#?}", self.status()))
    }

    fn status(&self) -> SetStatus {
        self.shared.snapshot.borrow().sets[0].as_ref().clone()
    }

    fn now(&self) -> i64 {
        self.clock.unix_millis() / 1000
    }

    fn rotations(&self, outcome: Outcome, reason: Option<Reason>) -> u64 {
        let body = self.shared.metrics.encode();
        let needle = format!(
            "certgate_rotations_total{{outcome=\"{}\",reason=\"{}\",set=\"web\"}} ",
            outcome.as_str(),
            Reason::label(reason)
        );
        body.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the loop stops on shutdown")
                .unwrap();
        }
    }
}

fn write_leaf(dir: &Path, leaf: &Leaf) {
    // Key first: a reader never pairs the new cert with the old key for long, and the commit
    // trigger comes after both anyway.
    std::fs::write(dir.join("tls.key"), &leaf.key).unwrap();
    std::fs::write(dir.join("tls.crt"), &leaf.cert).unwrap();
}

fn live_fp(s: &SetStatus) -> Option<&str> {
    s.live
        .as_ref()?
        .leaf()
        .map(|l| l.fingerprint_sha256.as_str())
}

fn live_generation(s: &SetStatus) -> Option<&str> {
    s.live
        .as_ref()?
        .generation
        .as_ref()
        .map(GenerationName::as_str)
}

fn outcome(s: &SetStatus) -> Option<Outcome> {
    s.last_candidate.as_ref().map(|c| c.outcome)
}

fn serving(s: &SetStatus) -> bool {
    s.workload.as_ref().is_some_and(|w| w.serving_live_cert)
}

// === the state machine ===

#[tokio::test]
async fn first_source_is_published_and_verified() {
    let mut h = Harness::start(Setup::default()).await;
    let snap = h.until("verified", serving).await;
    let st = &snap.sets[0];
    assert_eq!(live_generation(st), Some("..gen-1"));
    assert_eq!(outcome(st), Some(Outcome::Published));
    assert!(snap.readiness(h.now()).is_ok());
    assert_eq!(h.publisher.dir().published.len(), 1);
    assert_eq!(h.rotations(Outcome::Published, None), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_rejected_candidate_keeps_the_live_material() {
    let mut h = Harness::start(Setup::default()).await;
    h.until("verified", serving).await;
    let live = h
        .status()
        .live
        .unwrap()
        .leaf()
        .unwrap()
        .fingerprint_sha256
        .clone();

    // The new certificate with the old key: refused before anything is written.
    let good = h.pki.leaf();
    let old_key = std::fs::read_to_string(h.src.join("tls.key")).unwrap();
    let mismatched = Leaf {
        key: old_key,
        ..good
    };
    h.rotate(&mismatched);
    let snap = h
        .until("rejection", |s| outcome(s) == Some(Outcome::Rejected))
        .await;
    let st = &snap.sets[0];
    assert_eq!(
        st.last_candidate.as_ref().unwrap().reasons[0].reason,
        Reason::KeyMismatch
    );
    assert_eq!(live_fp(st), Some(live.as_str()), "live material unchanged");
    assert_eq!(live_generation(st), Some("..gen-1"));
    assert!(
        snap.readiness(h.now()).is_ok(),
        "still ready on the old material"
    );
    assert_eq!(h.publisher.dir().published.len(), 1, "nothing else written");
    assert_eq!(h.rotations(Outcome::Rejected, Some(Reason::KeyMismatch)), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_workload_that_cannot_serve_the_new_material_is_swapped_back() {
    let mut h = Harness::start(Setup::default()).await;
    h.until("verified", serving).await;
    let first = h
        .status()
        .live
        .unwrap()
        .leaf()
        .unwrap()
        .fingerprint_sha256
        .clone();

    h.workload.answer(Answer::Fail);
    let next = h.pki.leaf();
    h.rotate(&next);
    let snap = h
        .until("swap back", |s| outcome(s) == Some(Outcome::RolledBack))
        .await;
    let st = &snap.sets[0];
    assert_eq!(
        h.publisher.dir().published.len(),
        2,
        "the new leaf was published"
    );
    assert_eq!(h.publisher.dir().swap_backs, 1);
    assert_eq!(
        live_fp(st),
        Some(first.as_str()),
        "the old leaf is live again"
    );
    assert_eq!(live_generation(st), Some("..gen-1"));
    let c = st.last_candidate.as_ref().unwrap();
    assert_eq!(c.fingerprint_sha256.as_ref(), Some(&next.fingerprint));
    assert_eq!(c.reasons[0].reason, Reason::WorkloadRefused);
    assert!(st.last_rollback.is_some());
    assert!(st.events.iter().any(|e| e.kind == EventKind::RolledBack));
    assert_eq!(
        h.rotations(Outcome::RolledBack, Some(Reason::WorkloadRefused)),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn a_workload_serving_the_new_material_is_not_swapped_back() {
    // Negative control of the swap-back test: the same rotation, a workload that serves it.
    let mut h = Harness::start(Setup::default()).await;
    h.until("verified", serving).await;
    let next = h.pki.leaf();
    h.rotate(&next);
    h.until("second leaf verified", |s| {
        serving(s) && live_fp(s) == Some(next.fingerprint.as_str())
    })
    .await;
    assert_eq!(h.publisher.dir().swap_backs, 0);
    assert_eq!(
        h.rotations(Outcome::RolledBack, Some(Reason::WorkloadRefused)),
        0
    );
    h.stop().await;
}

#[tokio::test]
async fn a_candidate_waits_for_the_pending_verdict() {
    let mut h = Harness::start(Setup {
        hold: true,
        ..Setup::default()
    })
    .await;
    h.workload.permits.add_permits(1);
    h.until("first verified", serving).await;

    // Second leaf published; its verdict is held back.
    let second = h.pki.leaf();
    h.rotate(&second);
    h.until("second published", |s| {
        live_fp(s) == Some(second.fingerprint.as_str())
    })
    .await;
    // A third arrives while the verdict is out: it must wait.
    let third = h.pki.leaf();
    h.rotate(&third);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.publisher.dir().published.len(),
        2,
        "no publish while a verdict is pending"
    );
    assert_eq!(live_fp(&h.status()), Some(second.fingerprint.as_str()));

    // The verdict comes: then the third goes out (and is verified in turn).
    h.workload.permits.add_permits(2);
    h.until("third verified", |s| {
        serving(s) && live_fp(s) == Some(third.fingerprint.as_str())
    })
    .await;
    assert_eq!(h.publisher.dir().published.len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn without_verification_a_candidate_does_not_wait() {
    // Negative control of the pending-verdict test: nothing is in flight without `verify`, so
    // the same third candidate goes out at once.
    let mut h = Harness::start(Setup {
        verify: false,
        hold: true,
        ..Setup::default()
    })
    .await;
    h.until("first published", |s| live_fp(s).is_some()).await;
    let second = h.pki.leaf();
    h.rotate(&second);
    h.until("second published", |s| {
        live_fp(s) == Some(second.fingerprint.as_str())
    })
    .await;
    let third = h.pki.leaf();
    h.rotate(&third);
    h.until("third published", |s| {
        live_fp(s) == Some(third.fingerprint.as_str())
    })
    .await;
    assert_eq!(h.publisher.dir().published.len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn a_restart_adopts_the_published_generation() {
    let mut h = Harness::start(Setup {
        adopted: true,
        ..Setup::default()
    })
    .await;
    let snap = h.until("adopted", |s| live_fp(s).is_some()).await;
    let st = &snap.sets[0];
    assert_eq!(live_generation(st), Some("..gen-0"));
    assert!(st.events.iter().any(|e| e.kind == EventKind::Adopted));
    assert!(snap.readiness(h.now()).is_ok());
    // The source holds the same material: nothing to publish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.publisher.dir().published.is_empty());
    assert_eq!(h.rotations(Outcome::Published, None), 0);
    h.stop().await;
}

#[tokio::test]
async fn a_restart_checks_the_workload_serves_the_adopted_generation() {
    // certgate may have died between a publish and the reload: after the restart the workload
    // is looked at (and reloaded unless it serves the live generation), never left unknown.
    let mut h = Harness::start(Setup {
        adopted: true,
        ..Setup::default()
    })
    .await;
    let snap = h.until("adopted and verified", serving).await;
    assert_eq!(live_generation(&snap.sets[0]), Some("..gen-0"));
    assert_eq!(h.workload.asked.lock().unwrap().len(), 1);
    assert_eq!(
        h.workload
            .reloads_skipped
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "it looked before reloading"
    );
    h.stop().await;
}

/// Publishes two more leaves to a workload that never takes them; the status after each
/// verdict.
async fn two_rotations_to_a_stale_workload(h: &mut Harness, answer: Answer) -> Vec<SetStatus> {
    h.until("verified", serving).await;
    h.workload.answer(answer);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let next = h.pki.leaf();
        h.rotate(&next);
        let fp = next.fingerprint.clone();
        let snap = h
            .until("the verdict on the new leaf", move |s| {
                live_fp(s) == Some(fp.as_str())
                    && s.workload
                        .as_ref()
                        .is_some_and(|w| !w.message.starts_with("verifying"))
            })
            .await;
        seen.push(snap.sets[0].as_ref().clone());
    }
    seen
}

#[tokio::test]
async fn a_workload_that_does_not_reload_is_stale_twice_never_rolled_back() {
    let mut h = Harness::start(Setup::default()).await;
    let seen = two_rotations_to_a_stale_workload(&mut h, Answer::Old).await;
    for st in &seen {
        let w = st.workload.as_ref().unwrap();
        assert!(!w.serving_live_cert);
        assert_eq!(w.reason, None, "no reload was configured: {w:?}");
        assert!(w.message.contains("no reload is configured"), "{w:?}");
    }
    assert_eq!(h.publisher.dir().swap_backs, 0, "never rolled back");
    assert_eq!(h.publisher.dir().published.len(), 3);
    assert_eq!(
        h.rotations(Outcome::RolledBack, Some(Reason::WorkloadRefused)),
        0
    );
    let stale = h
        .status()
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Stale)
        .count();
    assert_eq!(stale, 2, "{:#?}", h.status().events);
    h.stop().await;
}

#[tokio::test]
async fn a_workload_serving_what_certgate_never_published_is_swapped_back() {
    // Negative control of the stale test: the same rotation, but the workload serves a leaf
    // that is in no generation this pod published.
    let mut h = Harness::start(Setup::default()).await;
    h.until("verified", serving).await;
    h.workload.answer(Answer::Foreign);
    h.rotate(&h.pki.leaf());
    h.until("swap back", |s| outcome(s) == Some(Outcome::RolledBack))
        .await;
    assert_eq!(h.publisher.dir().swap_backs, 1);
    h.stop().await;
}

#[tokio::test]
async fn a_reload_the_workload_does_not_take_is_reported_as_rejected() {
    let mut h = Harness::start(Setup {
        extra: "[set.reload]\ncommand = [\"/bin/true\"]\n",
        ..Setup::default()
    })
    .await;
    h.until("verified", serving).await;
    h.workload.answer(Answer::Old);
    h.rotate(&h.pki.leaf());
    let snap = h
        .until("stale", |s| {
            s.workload
                .as_ref()
                .is_some_and(|w| w.reason == Some(Reason::ReloadRejected))
        })
        .await;
    let w = snap.sets[0].workload.as_ref().unwrap();
    assert!(
        w.message.contains("reload sent (sent SIGHUP to pid 4242"),
        "says what was sent: {w:?}"
    );
    assert_eq!(h.publisher.dir().swap_backs, 0);
    h.stop().await;
}

#[tokio::test]
async fn a_refusal_after_a_restart_swaps_back_to_the_recorded_previous_generation() {
    // The adopted generation is a publish like any other: a workload that refuses it after
    // the restart gets the previous generation back, read and validated from the directory.
    let mut h = Harness::start(Setup {
        adopted: true,
        with_previous: true,
        ..Setup::default()
    })
    .await;
    h.workload.answer(Answer::Fail);
    let snap = h
        .until("swap back", |s| outcome(s) == Some(Outcome::RolledBack))
        .await;
    assert_eq!(live_generation(&snap.sets[0]), Some("..gen-prev"));
    assert_eq!(h.publisher.dir().swap_backs, 1);
    h.stop().await;
}

#[tokio::test]
async fn a_refusal_after_a_restart_without_a_previous_generation_is_reported() {
    // Negative control: nothing recorded to go back to, so nothing is swapped.
    let mut h = Harness::start(Setup {
        adopted: true,
        ..Setup::default()
    })
    .await;
    h.workload.answer(Answer::Fail);
    let snap = h
        .until("the refusal reported", |s| {
            s.events
                .iter()
                .any(|e| e.message.contains("no previous generation"))
        })
        .await;
    assert_eq!(live_generation(&snap.sets[0]), Some("..gen-0"));
    assert_eq!(h.publisher.dir().swap_backs, 0);
    h.stop().await;
}

#[tokio::test]
async fn silence_after_a_restart_does_not_swap_back() {
    // After a restart the workload may be starting too: no answer is not evidence.
    let mut h = Harness::start(Setup {
        adopted: true,
        ..Setup::default()
    })
    .await;
    h.workload.answer(Answer::Silent);
    let snap = h
        .until("a verdict", |s| {
            s.workload.as_ref().is_some_and(|w| w.reason.is_some())
        })
        .await;
    assert_eq!(live_generation(&snap.sets[0]), Some("..gen-0"));
    assert_eq!(h.publisher.dir().swap_backs, 0);
    h.stop().await;
}

#[tokio::test]
async fn anchors_are_recorded_with_when_and_how_they_went_live() {
    let mut h = Harness::start(Setup::default()).await;
    let snap = h.until("live", |s| s.trust.is_some()).await;
    let trust = snap.sets[0].trust.clone().unwrap();
    assert_eq!(trust.anchors.len(), 1);
    let root = trust.anchors[0].clone();
    assert_eq!(root.via, crate::state::Via::Startup);
    assert_eq!(trust.chain_anchors, vec![root.anchor_id.clone()]);
    assert!(trust.exported);

    // A new root joins the bundle by rotation, two seconds later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new_root = Ca::root("daemon test new root", Alg::P256);
    std::fs::write(
        h.src.join("ca.crt"),
        format!("{}{}", h.pki.pem(), new_root.cert_pem),
    )
    .unwrap();
    h.rotate(&h.pki.leaf());
    let snap = h
        .until("two anchors", |s| {
            s.trust.as_ref().is_some_and(|t| t.anchors.len() == 2)
        })
        .await;
    let trust = snap.sets[0].trust.clone().unwrap();
    let old = trust
        .anchors
        .iter()
        .find(|a| a.anchor_id == root.anchor_id)
        .unwrap();
    assert_eq!(
        (old.first_seen, old.via),
        (root.first_seen, root.via),
        "kept"
    );
    let new = trust
        .anchors
        .iter()
        .find(|a| a.anchor_id != root.anchor_id)
        .unwrap();
    assert_eq!(new.via, crate::state::Via::Rotation);
    assert!(new.first_seen >= root.first_seen + 2, "{new:?} {root:?}");
    assert_eq!(
        trust.chain_anchors,
        vec![root.anchor_id.clone()],
        "the leaf chains to the old root only"
    );
    // Saved for a restart.
    let saved = h.publisher.dir().first_seen.clone();
    assert_eq!(saved.len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_first_seen_times() {
    // What the previous run of this pod saved: the root seen an hour ago, by rotation.
    let mut h = Harness::start(Setup {
        adopted: true,
        saved_first_seen: Some(3600),
        ..Setup::default()
    })
    .await;
    let snap = h.until("live", |s| s.trust.is_some()).await;
    let root = snap.sets[0].trust.clone().unwrap().anchors[0].clone();
    assert_eq!(root.via, crate::state::Via::Rotation);
    assert!(h.now() - root.first_seen >= 3600, "{root:?}");
    h.stop().await;
}

#[tokio::test]
async fn without_a_saved_time_an_adopted_anchor_is_seen_at_startup() {
    // Negative control of the restart test: nothing saved, so the restart is the first sight.
    let mut h = Harness::start(Setup {
        adopted: true,
        ..Setup::default()
    })
    .await;
    let snap = h.until("live", |s| s.trust.is_some()).await;
    let root = snap.sets[0].trust.clone().unwrap().anchors[0].clone();
    assert_eq!(root.via, crate::state::Via::Startup);
    assert!(h.now() - root.first_seen < 60, "{root:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_failed_publish_is_retried_at_the_next_change() {
    let mut h = Harness::start(Setup::default()).await;
    h.until("verified", serving).await;
    h.publisher.dir().fail_next = true;
    let next = h.pki.leaf();
    h.rotate(&next);
    let snap = h
        .until("publish failure", |s| outcome(s) == Some(Outcome::Rejected))
        .await;
    let st = &snap.sets[0];
    assert_eq!(
        st.last_candidate.as_ref().unwrap().reasons[0].reason,
        Reason::PublishFailed
    );
    assert_eq!(live_generation(st), Some("..gen-1"));
    // Not a verdict on the material: the same content is tried again.
    h.triggers
        .send(vec![Trigger::Commit(h.src.clone())])
        .unwrap();
    h.until("published on retry", |s| {
        live_fp(s) == Some(next.fingerprint.as_str())
    })
    .await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn timers_fire_at_the_thresholds() {
    // The leaf expires in 2 h; readiness fails 1 h before, a warning 90 min before.
    let mut h = Harness::start(Setup {
        verify: false,
        extra: "fail_ready_before = \"1h\"\nwarn_before = \"90m\"\n",
        lifetime: Some(time::Duration::hours(2)),
        ..Setup::default()
    })
    .await;
    let snap = h.until("published", |s| live_fp(s).is_some()).await;
    assert!(snap.readiness(h.now()).is_ok());
    let thresholds = |s: &SetStatus| {
        s.events
            .iter()
            .filter(|e| e.kind == EventKind::Threshold)
            .count()
    };
    assert_eq!(thresholds(&h.status()), 0);

    // Past the warning point: one event, still ready.
    tokio::time::sleep(Duration::from_secs(31 * 60)).await;
    let snap = h.until("warning", |s| thresholds(s) == 1).await;
    assert!(snap.readiness(h.now()).is_ok());
    assert!(h
        .status()
        .events
        .back()
        .unwrap()
        .message
        .contains("warn_before"));

    // Past the readiness point: not ready, and said so.
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    let snap = h.until("not ready", |s| thresholds(s) == 2).await;
    let why = snap.readiness(h.now()).unwrap_err();
    assert!(why[0].contains("fail_ready_before"), "{why:?}");

    // Past expiry.
    tokio::time::sleep(Duration::from_secs(60 * 60)).await;
    h.until("expired", |s| thresholds(s) == 3).await;
    assert!(h
        .status()
        .events
        .back()
        .unwrap()
        .message
        .contains("expired"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_leaf_not_yet_valid_is_published_once_it_becomes_valid() {
    // Issuer clock ahead of the node's: the renewal's notBefore is 3 s in the future.
    let mut h = Harness::start(Setup::default()).await;
    h.until("verified", serving).await;
    let now = time::OffsetDateTime::now_utc();
    let early = h.pki.leaf_between(
        now + time::Duration::seconds(3),
        now + time::Duration::days(30),
    );
    h.rotate(&early);
    h.until("refused as not yet valid", |s| {
        outcome(s) == Some(Outcome::Rejected)
    })
    .await;
    assert_eq!(h.rotations(Outcome::Rejected, Some(Reason::NotYetValid)), 1);

    // Looked at again (its verdict depends on time): the same refusal is not counted twice.
    h.triggers
        .send(vec![Trigger::Commit(h.src.clone())])
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.rotations(Outcome::Rejected, Some(Reason::NotYetValid)), 1);

    // At its notBefore it is evaluated again, without any file event, and published.
    h.until("published once valid", |s| {
        live_fp(s) == Some(early.fingerprint.as_str())
    })
    .await;
    assert_eq!(h.publisher.dir().published.len(), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_inotify_changes_are_found_at_resync() {
    let mut h = Harness::start(Setup {
        no_watch: true,
        ..Setup::default()
    })
    .await;
    let snap = h.until("verified", serving).await;
    assert!(snap.watch_problem.as_deref().unwrap().contains("inotify"));
    let next = h.pki.leaf();
    write_leaf(&h.src, &next);
    // No event comes; a minute later the change is still unseen...
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.publisher.dir().published.len(), 1);
    // ...and the resync (every hour here) finds it.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    h.until("published at resync", |s| {
        live_fp(s) == Some(next.fingerprint.as_str())
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_resync_request_reads_every_set_at_once() {
    // SIGHUP's path: with no file event and an hour to the next resync, a request publishes
    // the change now.
    let mut h = Harness::start(Setup::default()).await;
    h.until("verified", serving).await;
    let next = h.pki.leaf();
    write_leaf(&h.src, &next);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.publisher.dir().published.len(),
        1,
        "no event, no resync yet"
    );
    h.resync.notify_one();
    h.until("published on request", |s| {
        live_fp(s) == Some(next.fingerprint.as_str())
    })
    .await;
    h.stop().await;
}

#[test]
fn inotify_limits_are_named() {
    let emfile = notify::Error::io(std::io::Error::from_raw_os_error(libc::EMFILE));
    let msg = super::watch::start_failure(&emfile);
    assert!(msg.contains("fs.inotify.max_user_instances"), "{msg}");
    let watches = notify::Error::new(notify::ErrorKind::MaxFilesWatch);
    let msg = super::watch::start_failure(&watches);
    assert!(msg.contains("fs.inotify.max_user_watches"), "{msg}");
}

// === the fleet gate ===

const GATE: &str = "[set.gate]\nverifiers = ['{namespace=\"shop\"}']\nstable_for = \"0s\"\n\
                    [fleet]\nprometheus_url = \"http://127.0.0.1:1\"\npoll_interval = \"100ms\"\n";

#[tokio::test]
async fn the_gate_publishes_the_bundle_first_holds_the_leaf_and_releases_it_once_clear() {
    let fleet = Arc::new(ScriptedFleet::default());
    let mut h = Harness::start(Setup {
        hold: true,
        extra: GATE,
        fleet: Some(fleet.clone()),
        ..Setup::default()
    })
    .await;
    h.workload.permits.add_permits(1);
    h.until("verified", serving).await;
    assert_eq!(fleet.asked(), 0, "nothing held, nothing asked");
    let first = h
        .status()
        .live
        .unwrap()
        .leaf()
        .unwrap()
        .fingerprint_sha256
        .clone();
    let r1 = crate::pipeline::inspect::anchor_id_of(&h.pki.0.cert_der).unwrap();
    let new_root = Pki(Ca::root("daemon test root 2", Alg::P256));
    let r2 = crate::pipeline::inspect::anchor_id_of(&new_root.0.cert_der).unwrap();
    fleet.set(&[("ok", &[&r1, &r2]), ("lagging", &[&r1])]);

    // One source update brings the new root and a leaf from it.
    let next = new_root.leaf();
    std::fs::write(
        h.src.join("ca.crt"),
        format!("{}{}", h.pki.pem(), new_root.pem()),
    )
    .unwrap();
    h.rotate(&next);
    let snap = h
        .until("holding", |s| {
            s.gate
                .as_ref()
                .is_some_and(|g| g.blocking == ["shop/lagging"])
        })
        .await;
    let st = &snap.sets[0];
    // Trust before leaf: generation 2 is the live leaf with the new bundle.
    assert_eq!(live_fp(st), Some(first.as_str()));
    assert_eq!(live_generation(st), Some("..gen-2"));
    assert_eq!(st.live.as_ref().unwrap().anchors.len(), 2);
    assert!(
        snap.readiness(h.now()).is_ok(),
        "a hold never touches readiness"
    );
    let g = st.gate.as_ref().unwrap();
    assert_eq!(g.state, crate::state::GateState::Holding);
    assert_eq!(
        g.candidate_fingerprint_sha256.as_ref(),
        Some(&next.fingerprint)
    );

    // The verifier moves while the new bundle is still being verified: the leaf waits.
    fleet.set(&[("ok", &[&r1, &r2]), ("lagging", &[&r1, &r2])]);
    let asked = fleet.asked();
    h.until("asked again", |_| fleet.asked() > asked + 2).await;
    assert_eq!(
        live_fp(&h.status()),
        Some(first.as_str()),
        "one rotation in flight"
    );
    h.workload.permits.add_permits(2);
    let snap = h
        .until("released", |s| {
            live_fp(s) == Some(next.fingerprint.as_str())
        })
        .await;
    let g = snap.sets[0].gate.clone().unwrap();
    assert_eq!(g.state, crate::state::GateState::Idle);
    assert_eq!(g.last_release.as_deref(), Some("clear"));
    assert_eq!(h.publisher.dir().published.len(), 3);
    // Nothing held again: no more questions.
    h.until("verified", serving).await;
    let asked = fleet.asked();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(fleet.asked(), asked);
    h.stop().await;
}

#[tokio::test]
async fn a_gate_in_observe_mode_never_holds() {
    let fleet = Arc::new(ScriptedFleet::default());
    let mut h = Harness::start(Setup {
        verify: false,
        extra: "[set.gate]\nmode = \"observe\"\nverifiers = ['{namespace=\"shop\"}']\n\
                [fleet]\nprometheus_url = \"http://127.0.0.1:1\"\n",
        fleet: Some(fleet.clone()),
        ..Setup::default()
    })
    .await;
    h.until("live", |s| s.live.is_some()).await;
    let new_root = Pki(Ca::root("daemon test root 2", Alg::P256));
    let next = new_root.leaf();
    std::fs::write(
        h.src.join("ca.crt"),
        format!("{}{}", h.pki.pem(), new_root.pem()),
    )
    .unwrap();
    h.rotate(&next);
    let snap = h
        .until("published", |s| {
            live_fp(s) == Some(next.fingerprint.as_str())
        })
        .await;
    let g = snap.sets[0].gate.clone().unwrap();
    assert_eq!(g.state, crate::state::GateState::WouldHold);
    assert_eq!(fleet.asked(), 0);
    h.stop().await;
}
