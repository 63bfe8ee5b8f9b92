//! Follow-ups: after the live material changes, tell the workload (reload) and check that it
//! serves the new leaf (verify), off the loop; the verdict comes back as a [`VerifyDone`] and
//! decides between serving, stale and swap back.

use std::future::Future;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::time::Instant;

use super::event_loop::Core;
use super::reload::{self, ReloadError};
use super::verify::{self, Served};
use crate::config::{ReloadSettings, VerifySettings};
use crate::ids::{Fingerprint, GenerationName, SetId};
use crate::labels::EventKind;
use crate::pipeline::inspect::San;
use crate::pipeline::load::Material;
use crate::publish::Publish;
use crate::state::WorkloadStatus;
use crate::time_fmt::rfc3339;

/// Bound on one workload verification attempt.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between verification attempts.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// What to do for the workload after a change of the live material.
#[derive(Debug, Clone)]
pub struct FollowUpRequest {
    /// Reload actions to run first, if any.
    pub reload: Option<ReloadSettings>,
    /// Where and how long to check what the workload serves, if configured.
    pub verify: Option<VerifySettings>,
    /// The name to ask the workload for.
    pub name: ServerName<'static>,
    /// The live material (presented as client certificate to mTLS workloads).
    pub material: Material,
    /// The live leaf: what the workload should serve.
    pub expected: Fingerprint,
}

/// What a follow-up found.
#[derive(Debug)]
pub struct FollowUpReport {
    /// One line per reload action run.
    pub reload: Vec<Result<String, ReloadError>>,
    /// The last observation of the workload, when verification is configured.
    pub served: Option<Served>,
}

/// The workload beside certgate, as the daemon acts on it. [`ReloadAndVerify`] is the real
/// one; the daemon's tests script the verdicts.
pub trait Workload: Send + Sync + 'static {
    /// Runs the reload actions, then observes what the workload serves.
    fn follow_up(&self, request: FollowUpRequest) -> impl Future<Output = FollowUpReport> + Send;
}

/// Reloads with the configured signal, URL or command, then probes the workload's TLS port
/// until it serves the expected leaf or `verify_timeout` passes; the last observation is the
/// verdict.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReloadAndVerify;

impl Workload for ReloadAndVerify {
    async fn follow_up(&self, request: FollowUpRequest) -> FollowUpReport {
        let reload = match &request.reload {
            Some(r) => reload::reload(r).await,
            None => Vec::new(),
        };
        let served = match &request.verify {
            None => None,
            Some(v) => {
                // Each attempt gets its own bound so the last one is a real observation, not a
                // cut-off at the deadline's edge.
                let deadline = Instant::now() + v.timeout;
                loop {
                    let last = verify::probe(
                        v.addr,
                        request.name.clone(),
                        &request.material,
                        PROBE_TIMEOUT,
                    )
                    .await;
                    let good = matches!(&last, Served::Leaf(fp) if *fp == request.expected);
                    if good || Instant::now() >= deadline {
                        break Some(last);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(PROBE_INTERVAL.min(left)).await;
                }
            }
        };
        FollowUpReport { reload, served }
    }
}

/// What follows a change of the live material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FollowUp {
    /// A new generation was published: reload, verify, swap back if the workload refuses it.
    Published,
    /// The previous generation was restored: reload and verify, nothing further to swap to.
    Restored,
    /// The live generation is unchanged but the workload was not seen serving it (it may have
    /// started after the publish, or restarted): verify again, no reload, no swap.
    Recheck,
}

/// A follow-up that finished off the loop.
#[derive(Debug)]
pub(crate) struct VerifyDone {
    set: SetId,
    /// The generation it was about (superseded verdicts are ignored).
    generation: Option<GenerationName>,
    report: FollowUpReport,
    swap_on_failure: bool,
}

/// The name to ask the workload for: the verify name, else the first expected name, else the
/// leaf's first DNS or IP SAN (a wildcard made concrete), else a placeholder.
fn probe_name(
    verify: Option<&VerifySettings>,
    expected: Option<&crate::pipeline::validate::ExpectedName>,
    sans: &[San],
) -> ServerName<'static> {
    verify
        .and_then(|v| v.name.as_ref())
        .or(expected)
        .and_then(|n| n.server_name())
        .or_else(|| {
            sans.iter().find_map(|san| match san {
                San::Dns(d) => ServerName::try_from(d.replace("*.", "wildcard.")).ok(),
                San::Ip(ip) => Some(ServerName::IpAddress((*ip).into())),
                _ => None,
            })
        })
        .or_else(|| ServerName::try_from("certgate.invalid").ok())
        .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

impl<P: Publish, W: Workload> Core<P, W> {
    /// Starts the follow-up of `kind` for the set's live material, off the loop.
    pub(super) fn spawn_follow_up(&self, set: SetId, kind: FollowUp) {
        let s = &self.sets[set.0];
        let reload = s.cfg.reload.clone().filter(|_| kind != FollowUp::Recheck);
        let verify = s.cfg.verify.clone();
        if reload.is_none() && verify.is_none() {
            return;
        }
        let Some(live) = &s.live else {
            return;
        };
        let request = FollowUpRequest {
            name: probe_name(
                verify.as_ref(),
                s.cfg.policy.names.first(),
                live.view.leaf().map_or(&[][..], |l| &l.sans),
            ),
            reload,
            verify,
            material: live.material().clone(),
            expected: live.fingerprint.clone(),
        };
        let generation = live.generation().cloned();
        let workload = self.workload.clone();
        let tx = self.verify_tx.clone();
        tokio::spawn(async move {
            let report = workload.follow_up(request).await;
            let _ = tx.send(VerifyDone {
                set,
                generation,
                report,
                swap_on_failure: kind == FollowUp::Published,
            });
        });
    }

    /// On each resync, verify again every workload last seen not serving the live generation
    /// (and with no publish in flight): one that started after the publish — a native
    /// sidecar's workload starts only once certgate is ready — or restarted is then reported
    /// serving instead of stale until the next rotation.
    pub(super) fn recheck_workloads(&self) {
        for (i, s) in self.sets.iter().enumerate() {
            let unconfirmed = s
                .status
                .workload
                .as_ref()
                .is_some_and(|w| !w.serving_live_cert);
            if s.cfg.verify.is_some() && s.verifying.is_none() && unconfirmed {
                self.spawn_follow_up(SetId(i), FollowUp::Recheck);
            }
        }
    }

    /// Applies a follow-up's verdict: serving, stale, or refused (swap back).
    pub(super) async fn handle_verify(&mut self, done: VerifyDone) {
        let now = self.now();
        let metrics = self.metrics.clone();
        let s = self.set(done.set);
        for line in &done.report.reload {
            match line {
                Ok(msg) => {
                    tracing::info!(set = %s.name(), "reload: {msg}");
                    s.status_mut()
                        .push_event(now, EventKind::Reload, msg.clone());
                }
                Err(e) => {
                    tracing::warn!(set = %s.name(), "reload failed: {e}");
                    s.status_mut()
                        .push_event(now, EventKind::ReloadFailed, e.to_string());
                }
            }
        }
        let in_flight = s
            .verifying
            .take_if(|v| Some(&v.generation) == done.generation.as_ref());
        let Some(served) = done.report.served else {
            return;
        };
        let Some(live) = &s.live else {
            return;
        };
        if done.generation.as_ref() != live.generation() {
            return; // superseded by a newer publish
        }
        let live_fp = &live.fingerprint;
        let previous_fp = s.previous.as_ref().map(|l| &l.fingerprint);
        let (serving, message, refuse) = match &served {
            Served::Leaf(fp) if fp == live_fp => {
                (true, "workload serves the live certificate".to_string(), false)
            }
            Served::Leaf(fp) if Some(fp) == previous_fp => (
                false,
                format!(
                    "workload serving stale certificate {} although {} was published and reload sent",
                    fp.short(),
                    live_fp.short()
                ),
                false,
            ),
            Served::Leaf(fp) => (
                false,
                format!("workload serves an unexpected certificate {}", fp.short()),
                true,
            ),
            Served::Failed(e) => (
                false,
                format!("workload failed with the new certificate: {e}"),
                true,
            ),
        };
        metrics.workload_serving(s.name(), serving);
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
            tracing::info!(set = %s.name(), "{message}");
            return;
        }
        if !refuse || !done.swap_on_failure {
            tracing::warn!(set = %s.name(), "{message}");
            s.status_mut().push_event(now, EventKind::Stale, message);
            return;
        }
        let started = in_flight.map(|v| v.started);
        self.swap_back(done.set, &message, started).await;
    }
}
