//! Evaluation scheduling: which sets are due, reading their files off the async workers,
//! skipping content already judged (resyncs stay cheap), evaluating several sets at once, and
//! applying the results in config order through the single writer.

use std::time::Duration;

use tokio::time::Instant;

use super::event_loop::Core;
use super::follow_up::Workload;
use crate::ids::SetId;
use crate::pipeline::load::{self, FileRole, LoadError, RawSet, SourcePaths};
use crate::pipeline::validate::Policy;
use crate::pipeline::{self, EvalOptions, Evaluation};
use crate::publish::Publish;
use crate::state::Stages;

/// How many sets are evaluated at once when several are due (start-up, resync).
const MAX_CONCURRENT_EVALUATIONS: usize = 8;

/// A due set's work, with what it needs to skip content already judged.
struct Job {
    set: SetId,
    started: Instant,
    event_ms: f64,
    paths: SourcePaths,
    policy: Policy,
    opts: EvalOptions,
    last_seen: Option<Vec<String>>,
    live_key: Option<Vec<String>>,
}

/// What a job found.
enum Found {
    /// The same content as last evaluated: nothing to do.
    Unchanged,
    /// The content already live (adopted at start-up, or the source went back to it).
    AlreadyLive(Vec<String>),
    /// A candidate, judged.
    Evaluated(Done),
}

/// A job's evaluation, ready to apply.
pub(super) struct Done {
    pub(super) set: SetId,
    pub(super) started: Instant,
    pub(super) stages: Stages,
    pub(super) eval: Evaluation,
}

/// Reads a set's files on a blocking thread: file reads never stall the async workers.
pub(super) async fn read_off_loop(
    paths: &SourcePaths,
    max_file_size: u64,
) -> (Result<RawSet, LoadError>, f64) {
    let started = Instant::now();
    let owned = paths.clone();
    let raw = tokio::task::spawn_blocking(move || load::read_set(&owned, max_file_size))
        .await
        .unwrap_or_else(|e| {
            Err(LoadError::Io {
                role: FileRole::Cert,
                path: paths.cert.clone(),
                source: std::io::Error::other(format!("read task failed: {e}")),
            })
        });
    (raw, millis(started.elapsed()))
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Job {
    async fn run(self, now: i64) -> Found {
        let (raw, read_ms) = read_off_loop(&self.paths, self.opts.max_file_size).await;
        if let Ok(raw) = &raw {
            let key: Vec<String> = raw.files().map(|f| f.sha256.clone()).collect();
            if self.last_seen.as_ref() == Some(&key) {
                return Found::Unchanged;
            }
            if self.live_key.as_ref() == Some(&key) {
                return Found::AlreadyLive(key);
            }
        }
        let eval = match raw {
            Ok(raw) => pipeline::evaluate_raw(raw, read_ms, &self.policy, &self.opts, now).await,
            Err(e) => Evaluation::load_failed(&e).with_load_ms(read_ms),
        };
        let t = eval.timings();
        Found::Evaluated(Done {
            set: self.set,
            started: self.started,
            stages: Stages {
                event_ms: self.event_ms,
                load_ms: t.load_ms,
                validate_ms: t.validate_ms,
                handshake_ms: t.handshake_ms,
                publish_ms: 0.0,
            },
            eval,
        })
    }
}

impl<P: Publish, W: Workload> Core<P, W> {
    /// Evaluates every set whose files changed (or whose settle window closed). Files are read
    /// and hashed first: unchanged content costs no decoding, validation or handshake. Due sets
    /// are evaluated concurrently, then applied in order by this single writer.
    pub(super) async fn process_due(&mut self) {
        let now = self.now();
        let jobs = self.due_jobs();
        if jobs.is_empty() {
            return;
        }
        let mut running = tokio::task::JoinSet::new();
        let mut found = Vec::with_capacity(jobs.len());
        for job in jobs {
            let set = job.set;
            running.spawn(async move { (set, job.run(now).await) });
            while running.len() >= MAX_CONCURRENT_EVALUATIONS {
                if let Some(Ok(done)) = running.join_next().await {
                    found.push(done);
                }
            }
        }
        while let Some(done) = running.join_next().await {
            if let Ok(done) = done {
                found.push(done);
            }
        }
        found.sort_by_key(|(set, _)| *set);
        let evaluated = found
            .iter()
            .filter(|(_, f)| matches!(f, Found::Evaluated(_)))
            .count();
        for (set, f) in found {
            match f {
                Found::Unchanged => {}
                Found::AlreadyLive(key) => {
                    self.supersede(set, "the source going back to the live material");
                    let s = self.set(set);
                    s.last_seen = Some(key);
                    s.last_problem = None;
                    s.last_refusal = None;
                    let name = s.cfg.name.clone();
                    self.metrics.source_is_live(&name);
                }
                Found::Evaluated(done) => self.apply(done).await,
            }
        }
        if evaluated >= MAX_CONCURRENT_EVALUATIONS {
            crate::memory::release_free_memory();
        }
    }

    /// The sets due now, as jobs; clears their flags. A set whose last publish still awaits
    /// the workload's verdict waits (its change stays pending, and its reaction time counts
    /// the wait).
    fn due_jobs(&mut self) -> Vec<Job> {
        let now = Instant::now();
        let now_unix = self.now();
        let mut jobs = Vec::new();
        let base = self.settings.eval.clone();
        for (i, s) in self.sets.iter_mut().enumerate() {
            if s.retry_at.is_some_and(|at| at <= now_unix) {
                s.retry_at = None;
                s.mark_dirty(now);
            }
            let settled = s.settle_deadline.is_some_and(|d| d <= now);
            if !(s.dirty || settled) {
                continue;
            }
            if s.verifying.as_ref().is_some_and(|v| v.hold_until > now) {
                s.dirty = true;
                s.settle_deadline = None;
                continue;
            }
            s.verifying = None;
            s.dirty = false;
            s.settle_deadline = None;
            let started = s.change_seen.take().unwrap_or(now);
            jobs.push(Job {
                set: SetId(i),
                started,
                event_ms: millis(started.elapsed()),
                paths: s.cfg.paths.clone(),
                policy: s.cfg.policy.clone(),
                opts: EvalOptions {
                    handshake: s.cfg.handshake,
                    ..base.clone()
                },
                last_seen: s.last_seen.clone(),
                live_key: s
                    .live
                    .as_ref()
                    .map(|l| l.files().iter().map(|f| f.sha256.clone()).collect()),
            });
        }
        jobs
    }
}
