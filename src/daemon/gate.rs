//! The fleet gate in the loop: deciding at publish time whether a candidate may regress a
//! verifier (no query when it cannot), holding it — after publishing its bundle with the live
//! leaf when that bundle still verifies the live leaf (trust before leaf) — asking the fleet
//! off the loop until the answer is clear for `stable_for`, and releasing it then, at the
//! deadline, or when an operator names it. The rule itself is in [`crate::gate`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::event_loop::Core;
use super::follow_up::Workload;
use super::ReleaseRequest;
use crate::fleet::query::QueryError;
use crate::gate::query::{FleetView, RoundQueries};
use crate::gate::{self, Answers, GateMode, HoldKind, Release, UnknownVerifiers};
use crate::ids::{AnchorId, Fingerprint, SetId};
use crate::labels::EventKind;
use crate::pipeline::anchors::anchors_verifying;
use crate::pipeline::inspect::anchor_id_of;
use crate::pipeline::load::{FileRole, FileSnapshot, RawSet};
use crate::pipeline::{self, Approved, EvalOptions};
use crate::publish::pem_certificates;
use crate::publish::Publish;
use crate::state::{GateState, GateStatus, GateVerifiers, Stages};
use crate::time_fmt::rfc3339;
use rustls_pki_types::CertificateDer;

/// Most anchors path building tries per chain (a public root store mounted as a bundle).
const MAX_ANCHORS_TRIED: usize = 1000;
/// The longest back-off between evaluations after query errors.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The most of a `release_file` read.
const MAX_RELEASE_FILE: u64 = 64 * 1024;

/// A candidate the gate holds.
pub(super) struct Held {
    pub(super) approved: Approved,
    pub(super) fingerprint: Fingerprint,
    pub(super) kind: HoldKind,
    pub(super) live_anchors: Vec<AnchorId>,
    pub(super) candidate_anchors: Vec<AnchorId>,
    /// Unix seconds.
    pub(super) since: i64,
    /// Unix seconds: released by then whatever the fleet says.
    pub(super) deadline: i64,
    /// When the change that brought it was seen (the reaction time runs from here).
    pub(super) started: Instant,
    pub(super) stages: Stages,
    pub(super) round: Arc<RoundQueries>,
    /// Unix milliseconds since the answers have been clear.
    pub(super) clear_since: Option<i64>,
    pub(super) next_poll: Instant,
    pub(super) in_flight: bool,
    /// Consecutive failed evaluations (back-off).
    pub(super) errors: u32,
    /// Tells this hold's answers from an earlier hold's.
    pub(super) token: u64,
    /// An operator released it while the bundle published before it was being verified: it
    /// goes once that is done.
    pub(super) override_pending: bool,
}

/// An evaluation's answer, back on the loop.
pub(crate) struct GateAnswer {
    set: SetId,
    token: u64,
    took: Duration,
    result: Result<Answers, QueryError>,
}

/// A view that cannot answer (the `[fleet]` client could not be built): holds fail closed.
pub(crate) struct NoFleet(pub(crate) String);

impl FleetView for NoFleet {
    fn ask(
        &self,
        _round: Arc<RoundQueries>,
    ) -> crate::gate::query::BoxFuture<Result<Answers, QueryError>> {
        let message = self.0.clone();
        Box::pin(async move {
            Err(QueryError::Unreachable {
                url: "[fleet]".into(),
                message,
            })
        })
    }
}

/// A uniform random fraction in [0, 1).
fn fraction() -> f64 {
    let mut b = [0u8; 2];
    let r = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map(|()| u16::from_le_bytes(b))
        .unwrap_or(32_768);
    f64::from(r) / (f64::from(u16::MAX) + 1.0)
}

/// `d` ± 20 %, so a fleet of holding pods does not ask in step.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.8 + 0.4 * fraction())
}

/// The interval after `errors` consecutive failures: doubling, at most [`MAX_BACKOFF`] (and
/// never below the poll interval).
fn backoff(poll: Duration, errors: u32) -> Duration {
    let factor = 1u32 << errors.min(6);
    poll.saturating_mul(factor).min(MAX_BACKOFF.max(poll))
}

/// The gate status of a set with nothing held.
pub(super) fn idle(mode: GateMode) -> GateStatus {
    GateStatus {
        mode,
        state: GateState::Idle,
        kind: None,
        live_anchors: Vec::new(),
        candidate_anchors: Vec::new(),
        candidate_fingerprint_sha256: None,
        since: None,
        deadline: None,
        clear_since: None,
        verifiers: GateVerifiers::default(),
        blocking: Vec::new(),
        why: None,
        last_evaluation: None,
        last_error: None,
        last_release: None,
        kept_anchors: Vec::new(),
    }
}

/// Whether `file` (one entry per line: a leaf fingerprint or an anchor id, `#` comments)
/// releases a candidate with leaf `fp` verifying to `anchors`. A missing file releases
/// nothing; an unreadable one is logged by the caller.
fn listed(file: &std::path::Path, fp: &Fingerprint, anchors: &[AnchorId]) -> Result<bool, String> {
    let bytes = match crate::bounded::read_regular(file, MAX_RELEASE_FILE) {
        Ok(b) => b,
        Err(crate::bounded::ReadError::NotFound) => return Ok(false),
        Err(e) => return Err(format!("release_file {}: {e}", file.display())),
    };
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .any(|l| {
            let l = l.to_ascii_lowercase();
            l == fp.as_str() || anchors.iter().any(|a| a.as_str() == l)
        }))
}

impl<P: Publish, W: Workload> Core<P, W> {
    /// Decides, before a publish, whether the gate holds `approved`. Returns it back when it
    /// may be published now; `None` when it is held (its bundle, or a bundle keeping the
    /// anchors it drops, may have been published instead).
    pub(super) async fn gate_admit(
        &mut self,
        set: SetId,
        approved: Approved,
        started: Instant,
        stages: Stages,
    ) -> Option<Approved> {
        let now = self.now();
        let metrics = self.metrics.clone();
        self.supersede(set, "newer source material");
        let s = self.set(set);
        let Some(g) = s.cfg.gate.clone() else {
            return Some(approved);
        };
        // A first publish is never held: the gate never blocks a pod's start.
        let Some(live) = s.live.clone() else {
            return Some(approved);
        };
        let (a_live, a_cand) = chain_anchors(&live, &approved, s.cfg.policy.usage, now);
        let dropped = dropped_anchors(&live.material().trust, &approved.material().trust);
        let mut status = s.status.gate.clone().unwrap_or_else(|| idle(g.mode));
        status.live_anchors = a_live.clone();
        status.candidate_anchors = a_cand.clone();
        let leaf = gate::may_regress(&a_live, &a_cand);
        if !leaf && dropped.is_empty() {
            status.state = GateState::Idle;
            status.why = None;
            s.status_mut().gate = Some(status);
            return Some(approved);
        }
        let kind = if leaf {
            HoldKind::Leaf
        } else {
            HoldKind::Removal
        };
        let fp = approved.fingerprint().clone();
        let deadline = gate::deadline(
            live.view.effective_start(),
            live.view.effective_expiry,
            g.release_before_expiry,
        );
        let what = if leaf {
            format!(
                "leaf {} verifies to anchors [{}], the live leaf to [{}]",
                fp.short(),
                short_ids(&a_cand),
                short_ids(&a_live)
            )
        } else {
            format!(
                "the new bundle drops anchors [{}]",
                short_ids(&dropped.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())
            )
        };
        if g.mode == GateMode::Observe {
            tracing::info!(set = %s.name(), "gate (observe): would hold: {what}; publishing");
            status.state = GateState::WouldHold;
            status.kind = Some(kind);
            status.why = Some(format!("would hold: {what}"));
            s.status_mut().gate = Some(status);
            return Some(approved);
        }
        if now >= deadline {
            tracing::warn!(set = %s.name(), deadline = %rfc3339(deadline), "gate: {what}; the deadline has passed, publishing at once");
            metrics.gate.unhold(s.name(), kind, Some(Release::Deadline));
            status.state = GateState::Idle;
            status.last_release = Some(Release::Deadline.as_str().into());
            s.status_mut().gate = Some(status);
            return Some(approved);
        }
        if let Some(file) = &g.release_file {
            if let Ok(true) = listed(file, &fp, &a_cand) {
                tracing::warn!(set = %s.name(), file = %file.display(), "gate: {what}; released by the release file");
                metrics.gate.unhold(s.name(), kind, Some(Release::Override));
                status.state = GateState::Idle;
                status.last_release = Some(Release::Override.as_str().into());
                s.status_mut().gate = Some(status);
                return Some(approved);
            }
        }
        let kept: Vec<CertificateDer<'static>> = dropped.iter().map(|(_, d)| d.clone()).collect();
        // What goes out now: for a leaf hold, the candidate's bundle (keeping what it drops)
        // with the live leaf, so the peers this pod verifies can move while its own leaf waits
        // (else every pod of a mesh withholds the root its peers wait for); for a removal, the
        // candidate keeping the anchors it drops.
        let now_published = if leaf {
            let new_bundle = hash_of(live.files(), FileRole::Trust)
                != hash_of(approved.files(), FileRole::Trust);
            if new_bundle {
                self.with_bundle(set, None, &approved, &kept).await
            } else {
                None
            }
        } else {
            self.with_bundle(set, Some(&approved), &approved, &kept)
                .await
        };
        // After a restart the directory may already hold it: nothing to publish again.
        let now_published = now_published.filter(|first| {
            let hashes = |files: &[crate::pipeline::FileSummary]| {
                files.iter().map(|f| f.sha256.clone()).collect::<Vec<_>>()
            };
            hashes(first.files()) != hashes(live.files())
        });
        self.start_hold(set, kind, approved, started, stages, deadline, &what);
        if let Some(first) = now_published {
            self.publish(set, first, Instant::now(), Stages::default())
                .await;
        }
        None
    }

    /// Starts a hold of `kind` on `approved` (the gate's status must hold the anchors).
    #[allow(clippy::too_many_arguments)]
    fn start_hold(
        &mut self,
        set: SetId,
        kind: HoldKind,
        approved: Approved,
        started: Instant,
        stages: Stages,
        deadline: i64,
        what: &str,
    ) {
        let now = self.now();
        let metrics = self.metrics.clone();
        self.gate_token += 1;
        let token = self.gate_token;
        let job = self.fleet_job.clone();
        let poll = self.fleet_poll;
        let s = self.set(set);
        let Some(g) = s.cfg.gate.clone() else {
            return;
        };
        let Some(live) = s.live.as_ref() else {
            return;
        };
        let (held_live, held_cand, kept, round) = match kind {
            HoldKind::Leaf => {
                let (a_live, a_cand) = chain_anchors(live, &approved, s.cfg.policy.usage, now);
                let anchors: Vec<&AnchorId> = a_live.iter().chain(a_cand.iter()).collect();
                let round = RoundQueries::new(
                    &g.verifiers,
                    &job,
                    TRUST_SERIES,
                    &anchors,
                    g.expected_verifiers.as_deref(),
                );
                (a_live, a_cand, Vec::new(), round)
            }
            HoldKind::Removal => {
                // A presenter regresses when its live chain reaches a dropped anchor and none
                // of the new bundle's.
                let dropped: Vec<AnchorId> =
                    dropped_anchors(&live.material().trust, &approved.material().trust)
                        .into_iter()
                        .map(|(id, _)| id)
                        .collect();
                let remaining: Vec<AnchorId> = approved
                    .material()
                    .trust
                    .iter()
                    .filter_map(|d| anchor_id_of(d))
                    .collect();
                let anchors: Vec<&AnchorId> = dropped.iter().chain(remaining.iter()).collect();
                let round = RoundQueries::new(&g.presenters, &job, CHAIN_SERIES, &anchors, None);
                (dropped.clone(), remaining, dropped, round)
            }
        };
        let fp = approved.fingerprint().clone();
        tracing::warn!(set = %s.name(), kind = kind.as_str(), deadline = %rfc3339(deadline), "gate: holding: {what}; asking the {}", if kind == HoldKind::Leaf { "verifiers" } else { "presenters" });
        s.status_mut().push_event(
            now,
            EventKind::GateHold,
            format!("holding ({}): {what}", kind.as_str()),
        );
        metrics.gate.hold(s.name(), kind, now, deadline);
        let mut status = s.status.gate.clone().unwrap_or_else(|| idle(g.mode));
        status.state = GateState::Holding;
        status.kind = Some(kind);
        status.candidate_fingerprint_sha256 = Some(fp.clone());
        status.since = Some(rfc3339(now));
        status.deadline = Some(rfc3339(deadline));
        status.clear_since = None;
        status.why = Some(format!("waiting for the first answer: {what}"));
        status.verifiers = GateVerifiers::default();
        status.blocking = Vec::new();
        status.last_error = None;
        status.kept_anchors = kept;
        if kind == HoldKind::Leaf {
            status.live_anchors.clone_from(&held_live);
            status.candidate_anchors.clone_from(&held_cand);
        }
        s.status_mut().gate = Some(status);
        s.held = Some(Box::new(Held {
            approved,
            fingerprint: fp,
            kind,
            live_anchors: held_live,
            candidate_anchors: held_cand,
            since: now,
            deadline,
            started,
            stages,
            round: Arc::new(round),
            clear_since: None,
            // The first question at a random point of the first interval: a CA rotation
            // starts holds on a thousand pods within seconds, and they must not ask at once.
            next_poll: Instant::now() + poll.mul_f64(fraction()),
            in_flight: false,
            errors: 0,
            token,
            override_pending: false,
        }));
    }

    /// `leaf_of`'s leaf and key (the live material's when `None`) with `bundle_of`'s bundle
    /// plus `kept` anchors, validated (self-handshake included) as any candidate: what goes
    /// out while a hold lasts. `None` when it does not pass (then nothing goes out early).
    async fn with_bundle(
        &mut self,
        set: SetId,
        leaf_of: Option<&Approved>,
        bundle_of: &Approved,
        kept: &[CertificateDer<'static>],
    ) -> Option<Approved> {
        let now = self.now();
        let base = self.settings.eval.clone();
        let s = self.set(set);
        s.publisher.as_ref()?;
        let trust = bundle_of.material().raw.trust.clone()?;
        let trust = if kept.is_empty() {
            trust
        } else {
            let mut all = bundle_of.material().trust.clone();
            all.extend(kept.iter().cloned());
            FileSnapshot::made(FileRole::Trust, &trust.path, pem_certificates(&all))
        };
        let opts = EvalOptions {
            handshake: s.cfg.handshake,
            ..base
        };
        let policy = s.cfg.policy.clone();
        let name = s.cfg.name.clone();
        let (cert, key) = match leaf_of {
            Some(a) => (a.material().raw.cert.clone(), a.material().raw.key.clone()),
            None => {
                // The live chain as decoded and kept in memory (a re-publish writes the same),
                // with the live key file.
                let live = s.live.as_ref()?.material();
                let cert = FileSnapshot::made(
                    FileRole::Cert,
                    &live.raw.cert.path,
                    pem_certificates(live.chain.as_slice()),
                );
                (cert, live.raw.key.clone())
            }
        };
        let read_ms = 0.0;
        let mixed = RawSet {
            cert,
            key,
            trust: Some(trust),
        };
        match pipeline::evaluate_raw(mixed, read_ms, &policy, &opts, now)
            .await
            .into_approved()
        {
            Ok(a) => Some(a),
            Err(eval) => {
                let why = eval
                    .problems()
                    .first()
                    .map(|p| p.message.clone())
                    .unwrap_or_default();
                tracing::warn!(set = %name, "gate: the bundle to publish during the hold does not pass ({why}); holding all of the candidate");
                None
            }
        }
    }

    /// Drops a held candidate that newer source material replaced: it is never published.
    pub(super) fn supersede(&mut self, set: SetId, why: &str) {
        let now = self.now();
        let metrics = self.metrics.clone();
        let s = self.set(set);
        let Some(held) = s.held.take() else {
            return;
        };
        tracing::info!(set = %s.name(), fingerprint = %held.fingerprint, "gate: held candidate superseded by {why}; not published");
        metrics.gate.unhold(s.name(), held.kind, None);
        s.status_mut().push_event(
            now,
            EventKind::GateSuperseded,
            format!("held leaf {} superseded by {why}", held.fingerprint.short()),
        );
        if let Some(g) = s.status_mut().gate.as_mut() {
            let mode = g.mode;
            let last_error = g.last_error.take();
            *g = GateStatus {
                last_release: Some("superseded".into()),
                last_evaluation: g.last_evaluation.take(),
                last_error,
                ..idle(mode)
            };
        }
    }

    /// Each turn: releases holds whose deadline came, and starts the evaluations that are due.
    pub(super) async fn process_gates(&mut self) {
        let now = self.now();
        let instant = Instant::now();
        for i in 0..self.sets.len() {
            let s = &mut self.sets[i];
            let name = s.cfg.name.clone();
            let Some(held) = s.held.as_mut() else {
                continue;
            };
            // One rotation in flight: the leaf waits for the bundle published before it.
            let verifying = s.verifying.as_ref().is_some_and(|v| v.hold_until > instant);
            if now >= held.deadline && !verifying {
                self.release(SetId(i), Release::Deadline).await;
                continue;
            }
            if held.override_pending && !verifying {
                self.release(SetId(i), Release::Override).await;
                continue;
            }
            if held.in_flight || held.next_poll > instant {
                continue;
            }
            let released = s.cfg.gate.as_ref().and_then(|g| g.release_file.clone());
            if let Some(file) = released {
                match listed(&file, &held.fingerprint, &held.candidate_anchors) {
                    Ok(true) if !verifying => {
                        self.release(SetId(i), Release::Override).await;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(set = %name, "gate: {e}"),
                }
            }
            held.in_flight = true;
            let (round, token) = (held.round.clone(), held.token);
            let fleet = self.fleet.clone();
            let tx = self.gate_tx.clone();
            tokio::spawn(async move {
                let asked = Instant::now();
                let result = fleet.ask(round).await;
                let _ = tx.send(GateAnswer {
                    set: SetId(i),
                    token,
                    took: asked.elapsed(),
                    result,
                });
            });
        }
    }

    /// An evaluation came back: judge it, report it, and release once clear for `stable_for`.
    pub(super) async fn handle_gate(&mut self, answer: GateAnswer) {
        let now = self.now();
        let now_ms = self.clock.unix_millis();
        let metrics = self.metrics.clone();
        let poll = self.fleet_poll;
        let s = self.set(answer.set);
        let Some(g) = s.cfg.gate.clone() else {
            return;
        };
        if !s.held.as_ref().is_some_and(|h| h.token == answer.token) {
            return;
        }
        let verifying = s
            .verifying
            .as_ref()
            .is_some_and(|v| v.hold_until > Instant::now());
        let name = s.cfg.name.clone();
        let mut status = s.status.gate.clone().unwrap_or_else(|| idle(g.mode));
        status.last_evaluation = Some(rfc3339(now));
        let Some(held) = s.held.as_mut() else {
            return;
        };
        held.in_flight = false;
        let answers = match answer.result {
            Ok(a) => a,
            Err(e) => {
                held.errors = held.errors.saturating_add(1);
                held.clear_since = None;
                held.next_poll = Instant::now() + jittered(backoff(poll, held.errors));
                metrics.gate.failed(&name, answer.took);
                let msg = e.to_string();
                if status.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(set = %name, "gate: still holding; the query API did not answer: {msg}");
                }
                status.last_error = Some(msg);
                status.clear_since = None;
                s.status_mut().gate = Some(status);
                return;
            }
        };
        held.errors = 0;
        let j = gate::judge(
            &answers,
            &held.live_anchors,
            &held.candidate_anchors,
            &g,
            held.kind,
        );
        metrics
            .gate
            .evaluated(&name, &j, g.unknown_verifiers, answer.took, now);
        let unknown_hold = g.unknown_verifiers == UnknownVerifiers::Hold;
        let was_blocking = std::mem::take(&mut status.blocking);
        status.last_error = None;
        status.verifiers = GateVerifiers {
            seen: j.seen,
            expected: j.expected,
            regressing: u64::try_from(j.regressing.len()).unwrap_or(u64::MAX),
            unknown: u64::try_from(j.unknown.len()).unwrap_or(u64::MAX),
        };
        status.blocking = j.blocking(unknown_hold);
        status.why.clone_from(&j.why);
        if status.blocking != was_blocking && !status.blocking.is_empty() {
            tracing::info!(set = %name, blocking = %status.blocking.join(" "), "gate: holding: {}", j.why.clone().unwrap_or_default());
        }
        let mut next = jittered(poll);
        let mut release = false;
        if j.clear {
            let since = *held.clear_since.get_or_insert(now_ms);
            status.clear_since = Some(rfc3339(since.div_euclid(1000)));
            let stable = i64::try_from(g.stable_for.as_millis()).unwrap_or(i64::MAX);
            let left = since.saturating_add(stable).saturating_sub(now_ms);
            if left <= 0 && !verifying {
                release = true;
            } else if left <= 0 {
                // The bundle published before this leaf is still being verified.
                next = poll.min(Duration::from_secs(1));
            } else {
                // Ask again as the stable window closes, not a whole interval later.
                next = next.min(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
            }
        } else {
            held.clear_since = None;
            status.clear_since = None;
        }
        held.next_poll = Instant::now() + next;
        s.status_mut().gate = Some(status);
        if release {
            self.release(answer.set, Release::Clear).await;
        }
    }

    /// Ends the hold and publishes the candidate.
    async fn release(&mut self, set: SetId, why: Release) {
        let now = self.now();
        let metrics = self.metrics.clone();
        let s = self.set(set);
        let Some(held) = s.held.take() else {
            return;
        };
        let waited = now.saturating_sub(held.since);
        let blocking = s
            .status
            .gate
            .as_ref()
            .map(|g| g.blocking.join(" "))
            .unwrap_or_default();
        let kind = held.kind.as_str();
        match why {
            Release::Clear => {
                tracing::info!(set = %s.name(), kind, fingerprint = %held.fingerprint, waited_s = waited, "gate: released (clear): nothing regresses any more");
            }
            Release::Deadline => {
                tracing::warn!(set = %s.name(), kind, fingerprint = %held.fingerprint, waited_s = waited, blocking = %blocking, "gate: released at the deadline; these pods may fail handshakes with it");
            }
            Release::Override => {
                tracing::warn!(set = %s.name(), kind, fingerprint = %held.fingerprint, waited_s = waited, blocking = %blocking, "gate: released by override");
            }
        }
        metrics.gate.unhold(s.name(), held.kind, Some(why));
        s.status_mut().push_event(
            now,
            EventKind::GateRelease,
            format!(
                "{}: {kind} candidate {} after {waited}s",
                why.as_str(),
                held.fingerprint.short()
            ),
        );
        if let Some(g) = s.status_mut().gate.as_mut() {
            let mode = g.mode;
            // After a leaf, the live chain verifies to what the candidate's did.
            let live_anchors = match held.kind {
                HoldKind::Leaf => held.candidate_anchors.clone(),
                HoldKind::Removal => std::mem::take(&mut g.live_anchors),
            };
            *g = GateStatus {
                live_anchors,
                last_release: Some(why.as_str().into()),
                last_evaluation: g.last_evaluation.take(),
                ..idle(mode)
            };
        }
        let s = self.set(set);
        let mode = s.cfg.gate.as_ref().map(|g| g.mode);
        let dropped = match (&s.live, held.kind) {
            (Some(live), HoldKind::Leaf) => {
                dropped_anchors(&live.material().trust, &held.approved.material().trust)
            }
            _ => Vec::new(),
        };
        if mode == Some(GateMode::Hold) && !dropped.is_empty() {
            // The leaf goes out keeping the anchors its bundle drops; their removal is gated
            // next, on the presenters.
            let kept: Vec<CertificateDer<'static>> =
                dropped.iter().map(|(_, d)| d.clone()).collect();
            let first = self
                .with_bundle(set, Some(&held.approved), &held.approved, &kept)
                .await;
            if let Some(first) = first {
                self.publish(set, first, held.started, held.stages).await;
                let s = self.set(set);
                let Some(live) = s.live.as_ref() else {
                    return;
                };
                let rb = s.cfg.gate.as_ref().and_then(|g| g.release_before_expiry);
                let deadline =
                    gate::deadline(live.view.effective_start(), live.view.effective_expiry, rb);
                let ids: Vec<AnchorId> = dropped.into_iter().map(|(id, _)| id).collect();
                let what = format!("the new bundle drops anchors [{}]", short_ids(&ids));
                self.start_hold(
                    set,
                    HoldKind::Removal,
                    held.approved,
                    Instant::now(),
                    Stages::default(),
                    deadline,
                    &what,
                );
                return;
            }
        }
        self.publish(set, held.approved, held.started, held.stages)
            .await;
    }

    /// An operator's release (`certgate gate release`): of the one candidate held now, when
    /// it is the one named.
    pub(super) async fn handle_release(&mut self, req: ReleaseRequest) {
        let ReleaseRequest {
            set,
            fingerprint,
            removal,
            reply,
        } = req;
        let answer = self
            .release_named(&set, fingerprint.as_deref(), removal)
            .await;
        let _ = reply.send(answer);
    }

    async fn release_named(
        &mut self,
        name: &str,
        fingerprint: Option<&str>,
        removal: bool,
    ) -> Result<String, (u16, String)> {
        let Some(i) = self.sets.iter().position(|s| s.cfg.name == name) else {
            return Err((404, format!("no set named {name:?}")));
        };
        let kind = if removal {
            HoldKind::Removal
        } else {
            HoldKind::Leaf
        };
        let s = &mut self.sets[i];
        let verifying = s
            .verifying
            .as_ref()
            .is_some_and(|v| v.hold_until > Instant::now());
        let Some(held) = s.held.as_mut().filter(|h| h.kind == kind) else {
            return Err((
                409,
                format!(
                    "set {name:?}: the gate holds no {} candidate",
                    kind.as_str()
                ),
            ));
        };
        if let Some(want) = fingerprint {
            let want = want.trim().to_ascii_lowercase();
            if want.len() < 8 || !held.fingerprint.as_str().starts_with(&want) {
                return Err((
                    409,
                    format!(
                        "set {name:?}: the held leaf is {}, not {want}; nothing released",
                        held.fingerprint
                    ),
                ));
            }
        }
        let fp = held.fingerprint.clone();
        tracing::warn!(set = %name, fingerprint = %fp, "gate: operator released the held {} candidate", kind.as_str());
        if verifying {
            held.override_pending = true;
            return Ok(format!(
                "set {name:?}: released leaf {fp}; it is published once the bundle published \
                 before it is verified"
            ));
        }
        self.release(SetId(i), Release::Override).await;
        Ok(format!("set {name:?}: released and published leaf {fp}"))
    }

    /// When the next gate timer (an evaluation due, a deadline, a pending override) fires;
    /// never sooner than a quarter second from now, so a deadline or override waiting for a
    /// verification does not spin the loop.
    pub(super) fn next_gate_deadline(&self, now_unix: i64) -> Option<Instant> {
        let now = Instant::now();
        let soonest = now + Duration::from_millis(250);
        self.sets
            .iter()
            .filter_map(|s| s.held.as_ref())
            .map(|h| {
                let secs = u64::try_from(h.deadline.saturating_sub(now_unix)).unwrap_or(0);
                // A far deadline (a ten-year leaf) is bounded by the resync anyway.
                let mut at = now
                    .checked_add(Duration::from_secs(secs))
                    .unwrap_or(now + Duration::from_secs(86_400));
                if !h.in_flight {
                    at = at.min(h.next_poll);
                }
                if h.override_pending {
                    at = at.min(now + Duration::from_secs(1));
                }
                at.max(soonest)
            })
            .min()
    }
}

/// `A(L0)` and `A(L)`: the anchors the live chain and the candidate's verify to, by path
/// building over every anchor known (the live bundle and the candidate's), so a cross-signed
/// chain reaches both roots.
fn chain_anchors(
    live: &super::set::Live,
    candidate: &Approved,
    usage: crate::pipeline::validate::Usage,
    now: i64,
) -> (Vec<AnchorId>, Vec<AnchorId>) {
    let mut known = live.material().trust.clone();
    known.extend(candidate.material().trust.iter().cloned());
    let of = |chain| anchors_verifying(chain, &known, usage, now, MAX_ANCHORS_TRIED);
    (of(&live.material().chain), of(&candidate.material().chain))
}

/// The series a leaf hold reads: which anchors each verifier's bundle holds.
const TRUST_SERIES: &str = "certgate_trust_anchor_info";
/// The series a removal hold reads: which anchors each presenter's live chain verifies to.
const CHAIN_SERIES: &str = "certgate_chain_anchor_info";

/// The anchors of `live` (by id) that `candidate` no longer holds, with their DER.
fn dropped_anchors(
    live: &[CertificateDer<'static>],
    candidate: &[CertificateDer<'static>],
) -> Vec<(AnchorId, CertificateDer<'static>)> {
    let keep: Vec<AnchorId> = candidate.iter().filter_map(|d| anchor_id_of(d)).collect();
    let mut out: Vec<(AnchorId, CertificateDer<'static>)> = Vec::new();
    for der in live {
        if let Some(id) = anchor_id_of(der) {
            if !keep.contains(&id) && !out.iter().any(|(o, _)| *o == id) {
                out.push((id, der.clone()));
            }
        }
    }
    out
}

fn short_ids(ids: &[AnchorId]) -> String {
    ids.iter()
        .map(AnchorId::short)
        .collect::<Vec<_>>()
        .join(",")
}

fn hash_of(files: &[crate::pipeline::FileSummary], role: FileRole) -> Option<&str> {
    files
        .iter()
        .find(|f| f.role == role)
        .map(|f| f.sha256.as_str())
}
