//! Rotation outcomes: a judged candidate is rejected (the live material stays), accepted
//! (monitor mode) or published; a published one the workload cannot serve is swapped back; on
//! start the generation already published is adopted when still valid.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::evaluate::{read_off_loop, Done};
use super::event_loop::Core;
use super::follow_up::{FollowUp, Workload};
use super::set::{InFlight, Live};
use crate::ids::{Fingerprint, GenerationName, SetId};
use crate::labels::{EventKind, Outcome, Reason};
use crate::pipeline::load::FileRole;
use crate::pipeline::{self, Approved, EvalOptions, Evaluation, FileSummary, Problem};
use crate::publish::{Publish, PublishError, PublishState, Published};
use crate::state::{CandidateStatus, Stages, WorkloadStatus};
use crate::time_fmt::rfc3339;

/// How long past `verify_timeout` an in-flight publish may hold its set's next rotation: covers
/// the reload (pid-file wait, POST or command) and the last probe, so a lost verdict cannot
/// stall the set.
const VERIFY_HOLD_SLACK: Duration = Duration::from_secs(40);

/// Runs a blocking publisher call on a blocking thread.
async fn blocking<P: Publish, T: Send + 'static>(
    publisher: P,
    dir: PathBuf,
    f: impl FnOnce(&P) -> Result<T, PublishError> + Send + 'static,
) -> Result<T, PublishError> {
    tokio::task::spawn_blocking(move || f(&publisher))
        .await
        .unwrap_or_else(|e| {
            Err(PublishError::new(
                dir,
                "publish task",
                std::io::Error::other(e.to_string()),
            ))
        })
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The status line of a candidate.
fn candidate(
    now: i64,
    outcome: Outcome,
    fingerprint: Option<&Fingerprint>,
    reasons: Vec<Problem>,
    reaction: Duration,
    stages: Stages,
) -> CandidateStatus {
    CandidateStatus {
        at: rfc3339(now),
        outcome,
        fingerprint_sha256: fingerprint.cloned(),
        reasons,
        reaction_ms: millis(reaction),
        stages,
    }
}

/// For a candidate refused as not yet valid: the moment all of its chain becomes valid.
fn not_valid_until(eval: &Evaluation) -> Option<i64> {
    let v = eval.verdict()?;
    v.failures()
        .any(|c| c.reason == Some(Reason::NotYetValid))
        .then(|| v.chain().iter().map(|c| c.not_before).max())
        .flatten()
}

/// The previous generation recorded in the state file, as something to swap back to: only
/// when its files are still there, hold the leaf recorded, and pass validation now.
async fn adopt_previous<P: Publish>(
    publisher: &P,
    generation: &GenerationName,
    fingerprint: &Fingerprint,
    policy: &crate::pipeline::validate::Policy,
    opts: &EvalOptions,
    now: i64,
) -> Option<Live> {
    let paths = publisher.generation_paths(generation)?;
    let (raw, read_ms) = read_off_loop(&paths, opts.max_file_size).await;
    let approved = pipeline::evaluate_raw(raw.ok()?, read_ms, policy, opts, now)
        .await
        .into_approved()
        .ok()?;
    if approved.fingerprint() != fingerprint {
        return None;
    }
    let state = PublishState {
        generation: generation.clone(),
        fingerprint_sha256: Some(fingerprint.clone()),
        previous: None,
        previous_fingerprint_sha256: None,
    };
    Some(Live::new(
        &approved,
        Some(state),
        &publisher.published_paths(),
        now,
    ))
}

impl<P: Publish, W: Workload> Core<P, W> {
    /// On start, in publish mode, take what the publish dir already holds as live when it is
    /// still valid: a restart must never serve anything worse than what was live.
    pub(super) async fn adopt_published(&mut self) {
        let now = self.now();
        let opts = EvalOptions {
            handshake: false,
            ..self.settings.eval.clone()
        };
        for i in 0..self.sets.len() {
            let s = &mut self.sets[i];
            let Some(publisher) = s.publisher.clone() else {
                continue;
            };
            let found = blocking(publisher.clone(), s.publish_dir(), |p| {
                Ok(p.current().map(|g| (g, p.read_state())))
            })
            .await;
            let Ok(Some((generation, recorded))) = found else {
                continue;
            };
            // What a crash mid-publish left behind goes now, before it fills the volume.
            let keep = (
                generation.clone(),
                recorded.as_ref().and_then(|r| r.previous.clone()),
            );
            let swept = blocking(publisher.clone(), s.publish_dir(), move |p| {
                Ok(p.sweep(&keep.0, keep.1.as_ref()))
            })
            .await
            .unwrap_or(0);
            if swept > 0 {
                tracing::info!(set = %s.name(), swept, "removed stale generations");
            }
            let paths = publisher.published_paths();
            let (raw, read_ms) = read_off_loop(&paths, opts.max_file_size).await;
            let eval = match raw {
                Ok(raw) => pipeline::evaluate_raw(raw, read_ms, &s.cfg.policy, &opts, now).await,
                Err(e) => Evaluation::load_failed(&e),
            };
            match eval.into_approved() {
                Ok(approved) => {
                    let state = recorded
                        .filter(|st| st.generation == generation)
                        .unwrap_or_else(|| PublishState {
                            generation: generation.clone(),
                            fingerprint_sha256: Some(approved.fingerprint().clone()),
                            previous: None,
                            previous_fingerprint_sha256: None,
                        });
                    let previous = match (&state.previous, &state.previous_fingerprint_sha256) {
                        (Some(gen), Some(fp)) => {
                            adopt_previous(&publisher, gen, fp, &s.cfg.policy, &opts, now).await
                        }
                        _ => None,
                    };
                    let live = Live::new(&approved, Some(state), &paths, now);
                    tracing::info!(set = %s.name(), generation = %generation, "serving the previously published generation");
                    // Its source content key is unknown; the first evaluation compares by hash.
                    s.status_mut().push_event(
                        now,
                        EventKind::Adopted,
                        format!("kept published generation {generation}"),
                    );
                    if let Some(fp) = live
                        .publish
                        .as_ref()
                        .and_then(|st| st.previous_fingerprint_sha256.as_ref())
                    {
                        s.remember_published(fp);
                    }
                    s.remember_published(&live.fingerprint);
                    s.previous = previous.map(Box::new);
                    let saved = blocking(publisher.clone(), s.publish_dir(), |p| {
                        Ok(p.load_first_seen())
                    })
                    .await
                    .unwrap_or_default();
                    s.restore_first_seen(saved);
                    if s.cfg.verify.is_some() {
                        // Until the follow-up reports, the workload is not known to serve it
                        // (the serving metric exists from the start, so the stale alert can
                        // fire if it never does).
                        s.status_mut().workload = Some(WorkloadStatus {
                            serving_live_cert: false,
                            served_fingerprint_sha256: None,
                            reason: None,
                            versions: Vec::new(),
                            message: format!(
                                "verifying the workload serves adopted generation {generation}"
                            ),
                            checked_at: rfc3339(now),
                        });
                        self.metrics.workload_serving(s.name(), false);
                    }
                    s.set_live(Some(live), now);
                    self.persist_first_seen(SetId(i)).await;
                    // certgate may have stopped between the publish and the reload: unless the
                    // workload already serves this generation, tell it, as after a publish.
                    self.spawn_follow_up(SetId(i), FollowUp::Adopted);
                }
                Err(eval) => {
                    let why = eval
                        .problems()
                        .first()
                        .map(|p| p.message.clone())
                        .unwrap_or_default();
                    tracing::warn!(set = %s.name(), generation = %generation, reason = %why, "published generation is not valid; waiting for valid source material");
                }
            }
        }
    }

    /// Applies a judged candidate.
    pub(super) async fn apply(&mut self, done: Done) {
        let Done {
            set,
            started,
            stages,
            eval,
        } = done;
        if let Some(h) = eval.handshake() {
            self.metrics
                .handshake(Duration::from_secs_f64(h.duration_ms / 1000.0));
        }
        let s = self.set(set);
        // Files that could not even be read (missing, unreadable) have no content to dedupe
        // on: the same problem as last time changes nothing.
        let unread = eval.files().is_empty();
        if let Some(p) = eval.load_error().filter(|_| unread) {
            if s.last_problem.as_deref() == Some(p.message.as_str()) {
                return;
            }
        }
        let problems = eval.problems();
        // A verdict that depends on time or the environment is not final for this content.
        let lasting = !problems.iter().any(|p| p.reason.may_pass_later());
        s.last_seen = (!unread && lasting).then(|| eval.content_key());
        s.last_problem = eval.load_error().map(|p| p.message.clone());
        s.retry_at = not_valid_until(&eval);
        s.status_mut().source = eval.files().to_vec();
        if eval.passed() || unread {
            // Unread files have no content to compare; `last_problem` covers them.
            s.last_refusal = None;
        } else {
            let refusal = (
                eval.content_key(),
                problems.iter().map(|p| p.reason).collect::<Vec<_>>(),
            );
            if s.last_refusal.as_ref() == Some(&refusal) {
                // The same content refused again for the same reasons: already reported.
                return;
            }
            s.last_refusal = Some(refusal);
        }
        match eval.into_approved() {
            Ok(approved) => self.accept(set, approved, started, stages).await,
            Err(eval) => {
                self.supersede(set, "newer source material that was refused");
                self.reject(set, &eval, started, stages);
            }
        }
    }

    fn reject(&mut self, set: SetId, eval: &Evaluation, started: Instant, stages: Stages) {
        let now = self.now();
        let metrics = self.metrics.clone();
        let s = self.set(set);
        let mut problems = eval.problems();
        let mut reason = eval.first_reason().unwrap_or(Reason::ChainInvalid);
        // A bundle change that would strand the live leaf is named as such.
        if let Some(live) = &s.live {
            let hash = |files: &[FileSummary], role| {
                files
                    .iter()
                    .find(|f| f.role == role)
                    .map(|f| f.sha256.clone())
            };
            let same_cert =
                hash(live.files(), FileRole::Cert) == hash(eval.files(), FileRole::Cert);
            let new_trust =
                hash(live.files(), FileRole::Trust) != hash(eval.files(), FileRole::Trust);
            if same_cert && new_trust && reason == Reason::UnknownIssuer {
                reason = Reason::OrphansLiveLeaf;
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
        tracing::warn!(set = %s.name(), outcome = Outcome::Rejected.as_str(), reason = reason.as_str(), reaction_ms = millis(reaction), "{first}");
        metrics.rotation(
            s.name(),
            Outcome::Rejected,
            Some(reason),
            Some(reaction),
            now,
        );
        let fingerprint = eval
            .verdict()
            .and_then(|v| v.leaf())
            .map(|l| &l.fingerprint_sha256);
        let monitor = s.publisher.is_none();
        let st = s.status_mut();
        st.last_rejection = Some(rfc3339(now));
        st.last_candidate = Some(candidate(
            now,
            Outcome::Rejected,
            fingerprint,
            problems,
            reaction,
            stages,
        ));
        st.push_event(now, EventKind::Rejected, format!("{reason}: {first}"));
        if monitor {
            // The workload reads the source itself: bad source material is what it has.
            s.set_live(None, now);
            s.status_mut().live_problem = Some(format!("{reason}: {first}"));
        } else if s.live.is_none() {
            s.status_mut().live_problem = Some(format!(
                "nothing published yet; source rejected: {reason}: {first}"
            ));
        }
    }

    async fn accept(&mut self, set: SetId, approved: Approved, started: Instant, stages: Stages) {
        let Some(approved) = self.gate_admit(set, approved, started, stages).await else {
            return;
        };
        let now = self.now();
        let metrics = self.metrics.clone();
        let s = self.set(set);
        if s.publisher.is_some() {
            self.publish(set, approved, started, stages).await;
            return;
        }
        let fingerprint = approved.fingerprint().clone();
        let live = Live::new(&approved, None, &s.cfg.paths, now);
        let reaction = started.elapsed();
        tracing::info!(set = %s.name(), fingerprint = %fingerprint, outcome = Outcome::Accepted.as_str(), reaction_ms = millis(reaction), "source material valid");
        metrics.rotation(s.name(), Outcome::Accepted, None, Some(reaction), now);
        s.set_live(Some(live), now);
        let st = s.status_mut();
        st.last_candidate = Some(candidate(
            now,
            Outcome::Accepted,
            Some(&fingerprint),
            Vec::new(),
            reaction,
            stages,
        ));
        st.push_event(
            now,
            EventKind::Accepted,
            format!("valid source material {}", fingerprint.short()),
        );
    }

    /// Publishes an approved candidate (gated already), then reloads and verifies the workload.
    pub(super) async fn publish(
        &mut self,
        set: SetId,
        approved: Approved,
        started: Instant,
        mut stages: Stages,
    ) {
        let now = self.now();
        let metrics = self.metrics.clone();
        let s = self.set(set);
        let fingerprint = approved.fingerprint().clone();
        let Some(publisher) = s.publisher.clone() else {
            return;
        };
        let publish_started = Instant::now();
        let to_publish = approved.clone();
        let result = blocking(publisher.clone(), s.publish_dir(), move |p| {
            p.publish(&to_publish)
        })
        .await;
        let reaction = started.elapsed();
        stages.publish_ms = millis(publish_started.elapsed());
        let Published { state, warnings } = match result {
            Ok(published) => published,
            Err(e) => {
                let e = e.to_string();
                let reason = Reason::PublishFailed;
                tracing::error!(set = %s.name(), outcome = Outcome::Rejected.as_str(), reason = reason.as_str(), "{e}");
                metrics.rotation(
                    s.name(),
                    Outcome::Rejected,
                    Some(reason),
                    Some(reaction),
                    now,
                );
                // Not a verdict on the material: try again on the next change or resync.
                s.last_seen = None;
                let st = s.status_mut();
                st.last_rejection = Some(rfc3339(now));
                st.last_candidate = Some(candidate(
                    now,
                    Outcome::Rejected,
                    Some(&fingerprint),
                    vec![Problem {
                        reason,
                        message: e.clone(),
                    }],
                    reaction,
                    stages,
                ));
                st.push_event(now, EventKind::Rejected, format!("{reason}: {e}"));
                if s.live.is_none() {
                    // /readyz says what failed, not "not evaluated yet".
                    s.status_mut().live_problem =
                        Some(format!("nothing published yet: {reason}: {e}"));
                }
                return;
            }
        };
        let generation = state.generation.clone();
        tracing::info!(set = %s.name(), fingerprint = %fingerprint, generation = %generation, outcome = Outcome::Published.as_str(), reaction_ms = millis(reaction), "published");
        metrics.rotation(s.name(), Outcome::Published, None, Some(reaction), now);
        let live = Live::new(&approved, Some(state), &publisher.published_paths(), now);
        s.remember_published(&fingerprint);
        s.previous = s.live.take().map(Box::new);
        s.set_live(Some(live), now);
        let st = s.status_mut();
        st.last_publish = Some(rfc3339(now));
        st.last_candidate = Some(candidate(
            now,
            Outcome::Published,
            Some(&fingerprint),
            Vec::new(),
            reaction,
            stages,
        ));
        st.push_event(
            now,
            EventKind::Published,
            format!("generation {generation} leaf {}", fingerprint.short()),
        );
        self.persist_first_seen(set).await;
        let s = self.set(set);
        for w in warnings {
            // The workload reads the new generation; the directory needs attention.
            tracing::warn!(set = %s.name(), generation = %generation, "published, but {w}");
            s.status_mut()
                .push_event(now, EventKind::PublishWarning, w.to_string());
        }
        if let Some(timeout) = s.cfg.verify.as_ref().map(|v| v.timeout) {
            // The last verdict was about the previous generation: until the workload is seen
            // serving this one, it is not known to.
            s.status_mut().workload = Some(WorkloadStatus {
                serving_live_cert: false,
                served_fingerprint_sha256: None,
                reason: None,
                versions: Vec::new(),
                message: format!("verifying the workload serves generation {generation}"),
                checked_at: rfc3339(now),
            });
            metrics.workload_serving(s.name(), false);
            s.verifying = Some(InFlight {
                generation: generation.clone(),
                started,
                hold_until: Instant::now() + VERIFY_HOLD_SLACK + timeout,
            });
        }
        self.spawn_follow_up(set, FollowUp::Published);
    }

    /// Points the publish directory back at the previous generation after the workload could
    /// not serve the live one (`started`: when the change that brought it was seen).
    pub(super) async fn swap_back(&mut self, set: SetId, why: &str, started: Option<Instant>) {
        let now = self.now();
        let metrics = self.metrics.clone();
        let s = self.set(set);
        let (Some(publisher), Some(live)) = (s.publisher.clone(), s.live.clone()) else {
            return;
        };
        let Some(state) = live.publish.clone() else {
            return;
        };
        if s.previous.is_none() || state.previous.is_none() {
            let msg = format!("{why}; no previous generation to swap back to");
            tracing::error!(set = %s.name(), "{msg}");
            s.status_mut().push_event(now, EventKind::Stale, msg);
            return;
        }
        let result = blocking(publisher, s.publish_dir(), move |p| p.swap_back(&state)).await;
        let restored_state = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(set = %s.name(), "swap back failed: {e}");
                s.status_mut()
                    .push_event(now, EventKind::RollbackFailed, e.to_string());
                return;
            }
        };
        let mut restored = s.previous.take().map(|b| *b);
        if let Some(r) = restored.as_mut() {
            r.publish = Some(restored_state.clone());
            r.view.generation = Some(restored_state.generation.clone());
        }
        let reason = Reason::WorkloadRefused;
        tracing::warn!(set = %s.name(), fingerprint = %live.fingerprint, outcome = Outcome::RolledBack.as_str(), reason = reason.as_str(), generation = %restored_state.generation, "{why}; swapped back");
        // Reaction: from the source change that brought the refused material to the restored
        // generation being back in place.
        let reaction = started.map(|t| t.elapsed());
        metrics.rotation(s.name(), Outcome::RolledBack, Some(reason), reaction, now);
        s.set_live(restored, now);
        let st = s.status_mut();
        st.last_rollback = Some(rfc3339(now));
        st.last_candidate = Some(candidate(
            now,
            Outcome::RolledBack,
            Some(&live.fingerprint),
            vec![Problem {
                reason,
                message: why.to_string(),
            }],
            reaction.unwrap_or_default(),
            Stages::default(),
        ));
        st.push_event(
            now,
            EventKind::RolledBack,
            format!("{why}; restored generation {}", restored_state.generation),
        );
        self.persist_first_seen(set).await;
        // Tell the workload again, and check it serves the restored material.
        self.spawn_follow_up(set, FollowUp::Restored);
    }

    /// Saves when each anchor of the set's live bundle was first seen live, so a container
    /// restart keeps it. Advisory: a failure is logged, nothing else depends on it.
    async fn persist_first_seen(&mut self, set: SetId) {
        let s = self.set(set);
        let Some(publisher) = s.publisher.clone() else {
            return;
        };
        let seen = s.first_seen_list();
        if let Err(e) = blocking(publisher, s.publish_dir(), move |p| {
            p.save_first_seen(&seen)
        })
        .await
        {
            tracing::warn!(set = %s.name(), "{e}");
        }
    }

    /// At each resync: the publish directory must still serve the live generation. A stray
    /// file or link where a published name should be, or `..data` pointing elsewhere, is
    /// repaired; a live generation that is gone (the directory was emptied) is published again.
    pub(super) async fn reconcile_published(&mut self) {
        let now = self.now();
        for i in 0..self.sets.len() {
            let s = &mut self.sets[i];
            let (Some(publisher), Some(live)) = (s.publisher.clone(), s.live.as_ref()) else {
                continue;
            };
            let Some(generation) = live.generation().cloned() else {
                continue;
            };
            let checked = generation.clone();
            let result = blocking(publisher.clone(), s.publish_dir(), move |p| {
                p.reconcile(&checked)
            })
            .await;
            let repairs = match result {
                Ok(repairs) => repairs,
                Err(gone) => {
                    tracing::warn!(set = %s.name(), "live generation {generation} is gone ({gone}); publishing it again");
                    let Some(approved) = s.live.as_ref().map(|l| l.approved.clone()) else {
                        continue;
                    };
                    let again = blocking(publisher.clone(), s.publish_dir(), move |p| {
                        p.publish(&approved)
                    })
                    .await;
                    match again {
                        Ok(Published { state, .. }) => {
                            let msg = format!(
                                "live generation {generation} was gone; published again as {}",
                                state.generation
                            );
                            if let Some(live) = s.live.as_mut() {
                                live.view.generation = Some(state.generation.clone());
                                live.publish = Some(state);
                            }
                            s.previous = None;
                            let view = s.live.as_ref().map(|l| l.view.clone());
                            s.status_mut().live = view;
                            vec![msg]
                        }
                        Err(e) => {
                            tracing::error!(set = %s.name(), "{e}");
                            s.status_mut().push_event(
                                now,
                                EventKind::PublishWarning,
                                e.to_string(),
                            );
                            continue;
                        }
                    }
                }
            };
            for r in &repairs {
                tracing::warn!(set = %s.name(), "publish dir repaired: {r}");
                s.status_mut()
                    .push_event(now, EventKind::Repaired, r.clone());
            }
            if !repairs.is_empty() {
                self.spawn_follow_up(SetId(i), FollowUp::Restored);
            }
        }
    }
}
