//! Follow-ups: after the live material changes, tell the workload (reload) and check that it
//! serves the new leaf (verify), off the loop; the verdict comes back as a [`VerifyDone`] and
//! is judged against what this pod published before: serving the live leaf is serving; serving
//! a leaf certgate published earlier is stale (the workload did not take the reload), never a
//! reason to roll back; serving a leaf certgate never published, or failing the handshake, is
//! a refusal and swaps back.

use std::future::Future;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::time::Instant;

use super::event_loop::Core;
use super::reload::{self, ReloadError};
use super::verify::{self, Observation, Served};
use crate::config::{ReloadSettings, VerifySettings};
use crate::ids::{Fingerprint, GenerationName, SetId};
use crate::labels::{EventKind, Reason};
use crate::pipeline::handshake::TlsVersions;
use crate::pipeline::inspect::San;
use crate::pipeline::load::Material;
use crate::publish::Publish;
use crate::state::WorkloadStatus;
use crate::time_fmt::rfc3339;

/// Bound on one verification attempt (one connection).
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
    /// The TLS versions to check the workload at.
    pub versions: TlsVersions,
    /// The name to ask the workload for.
    pub name: ServerName<'static>,
    /// The live material (presented as client certificate to mTLS workloads).
    pub material: Material,
    /// The live leaf: what the workload should serve.
    pub expected: Fingerprint,
    /// Look first, and reload only when the workload is not seen serving `expected`: after a
    /// restart, where a reload may or may not have been sent before certgate died.
    pub reload_unless_serving: bool,
}

/// What a follow-up found.
#[derive(Debug)]
pub struct FollowUpReport {
    /// One line per reload action run (none: no reload configured, or none was needed).
    pub reload: Vec<Result<String, ReloadError>>,
    /// The last observation of the workload, when verification is configured.
    pub observed: Option<Observation>,
    /// Verification stopped before `verify_timeout`: the workload failed `verify_failures`
    /// handshakes in a row over at least `verify_failure_window`.
    pub refused_early: bool,
}

/// The workload beside certgate, as the daemon acts on it. [`ReloadAndVerify`] is the real
/// one; the daemon's tests script the verdicts.
pub trait Workload: Send + Sync + 'static {
    /// Runs the reload actions, then observes what the workload serves.
    fn follow_up(&self, request: FollowUpRequest) -> impl Future<Output = FollowUpReport> + Send;
}

/// Reloads with the configured signal, URL or command, then probes the workload's TLS port
/// (once per TLS version) until it serves the expected leaf at every version, fails the
/// handshake `verify_failures` times in a row over `verify_failure_window` (definite evidence:
/// stop at once), or `verify_timeout` passes (the bound when it does not answer); the last
/// observation is the verdict.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReloadAndVerify;

impl Workload for ReloadAndVerify {
    async fn follow_up(&self, request: FollowUpRequest) -> FollowUpReport {
        let observe = || observe_workload(&request);
        let serves = |o: &Observation| {
            o.summary(&request.expected) == Served::Leaf(request.expected.clone())
        };
        if request.reload_unless_serving {
            if let Some(seen) = observe().await.filter(serves) {
                return FollowUpReport {
                    reload: Vec::new(),
                    observed: Some(seen),
                    refused_early: false,
                };
            }
        }
        let reload = match &request.reload {
            Some(r) => reload::reload(r).await,
            None => Vec::new(),
        };
        let Some(v) = &request.verify else {
            return FollowUpReport {
                reload,
                observed: None,
                refused_early: false,
            };
        };
        // Each attempt gets its own bound so the last one is a real observation, not a cut-off
        // at the deadline's edge.
        let deadline = Instant::now() + v.timeout;
        let mut refusals: Option<(Instant, u32)> = None;
        loop {
            let Some(seen) = observe().await else {
                break FollowUpReport {
                    reload,
                    observed: None,
                    refused_early: false,
                };
            };
            if serves(&seen) {
                break FollowUpReport {
                    reload,
                    observed: Some(seen),
                    refused_early: false,
                };
            }
            if matches!(seen.summary(&request.expected), Served::Refused(_)) {
                let (first, n) = refusals.get_or_insert((Instant::now(), 0));
                *n += 1;
                if *n >= v.failures && first.elapsed() >= v.failure_window {
                    break FollowUpReport {
                        reload,
                        observed: Some(seen),
                        refused_early: true,
                    };
                }
            } else {
                refusals = None;
            }
            if Instant::now() >= deadline {
                break FollowUpReport {
                    reload,
                    observed: Some(seen),
                    refused_early: false,
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(PROBE_INTERVAL.min(left)).await;
        }
    }
}

/// One observation of the workload, when verification is configured.
async fn observe_workload(request: &FollowUpRequest) -> Option<Observation> {
    let v = request.verify.as_ref()?;
    Some(
        verify::observe(
            v.addr,
            &request.name,
            &request.material,
            &request.versions,
            PROBE_TIMEOUT,
        )
        .await,
    )
}

/// What follows a change of the live material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FollowUp {
    /// A new generation was published: reload, verify, swap back if the workload refuses it.
    Published,
    /// At start-up, the published generation was adopted: a reload may or may not have reached
    /// the workload before certgate stopped, so look first, and unless it serves the live
    /// generation, reload and verify as after a publish.
    Adopted,
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
    kind: FollowUp,
}

/// How a verdict reads, judged against the set's history.
#[derive(Debug, PartialEq, Eq)]
enum Judged {
    /// It serves the live leaf at every version.
    Serving,
    /// It serves a leaf this pod published before: stale, never a rollback. `reason` says
    /// whether a reload was sent (and failed or was ignored) or none was.
    Stale(Option<Reason>),
    /// It serves what certgate never published, or fails the handshake: swap back.
    Refused,
    /// It did not answer within `verify_timeout`.
    NoAnswer,
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
            reload_unless_serving: kind == FollowUp::Adopted && verify.is_some(),
            verify,
            versions: s.cfg.policy.tls_versions.clone(),
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
                kind,
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
        let Some(observed) = done.report.observed else {
            return;
        };
        let Some(live) = &s.live else {
            return;
        };
        if done.generation.as_ref() != live.generation() {
            return; // superseded by a newer publish
        }
        let live_fp = live.fingerprint.clone();
        let served = observed.summary(&live_fp);
        let reload_failed: Vec<String> = done
            .report
            .reload
            .iter()
            .filter_map(|r| r.as_ref().err().map(ToString::to_string))
            .collect();
        let reload_sent: Vec<&str> = done
            .report
            .reload
            .iter()
            .filter_map(|r| r.as_ref().ok().map(String::as_str))
            .collect();
        let (judged, message) = match &served {
            Served::Leaf(fp) if *fp == live_fp => (
                Judged::Serving,
                "workload serves the live certificate".to_string(),
            ),
            Served::Leaf(fp) if s.published_before(fp) => {
                let head = format!(
                    "workload serves {}, published earlier, instead of the live {}",
                    fp.short(),
                    live_fp.short()
                );
                if !reload_failed.is_empty() {
                    (
                        Judged::Stale(Some(Reason::ReloadRejected)),
                        format!("{head}: reload failed: {}", reload_failed.join("; ")),
                    )
                } else if !reload_sent.is_empty() {
                    (
                        Judged::Stale(Some(Reason::ReloadRejected)),
                        format!(
                            "{head}: reload sent ({}) but not taken; the workload may have \
                             refused the new files (see its log)",
                            reload_sent.join("; ")
                        ),
                    )
                } else if s.cfg.reload.is_none() {
                    (
                        Judged::Stale(None),
                        format!("{head}: no reload is configured"),
                    )
                } else {
                    (Judged::Stale(None), format!("{head}: no reload sent since"))
                }
            }
            Served::Leaf(fp) => (
                Judged::Refused,
                format!(
                    "workload serves {}, a certificate certgate never published",
                    fp.short()
                ),
            ),
            Served::Refused(e) => (
                Judged::Refused,
                if done.report.refused_early {
                    format!("workload fails the handshake with the new certificate: {e}")
                } else {
                    format!("workload failed with the new certificate: {e}")
                },
            ),
            Served::NoAnswer(e) => (
                Judged::NoAnswer,
                format!("workload did not answer with the new certificate: {e}"),
            ),
        };
        let serving = judged == Judged::Serving;
        metrics.workload_serving(s.name(), serving);
        let reason = match &judged {
            Judged::Serving => None,
            Judged::Stale(r) => *r,
            Judged::Refused | Judged::NoAnswer => Some(Reason::WorkloadRefused),
        };
        s.status_mut().workload = Some(WorkloadStatus {
            serving_live_cert: serving,
            served_fingerprint_sha256: match &served {
                Served::Leaf(fp) => Some(fp.clone()),
                _ => None,
            },
            reason,
            versions: observed.per_version(),
            message: message.clone(),
            checked_at: rfc3339(now),
        });
        let swap = match judged {
            Judged::Serving => {
                tracing::info!(set = %s.name(), "{message}");
                return;
            }
            Judged::Stale(_) => false,
            // After a restart, silence is not evidence: the workload may be starting too.
            Judged::NoAnswer => matches!(done.kind, FollowUp::Published),
            Judged::Refused => matches!(done.kind, FollowUp::Published | FollowUp::Adopted),
        };
        if !swap {
            tracing::warn!(set = %s.name(), "{message}");
            let line = match reason {
                Some(r) => format!("{r}: {message}"),
                None => message,
            };
            s.status_mut().push_event(now, EventKind::Stale, line);
            return;
        }
        let started = in_flight.map(|v| v.started);
        self.swap_back(done.set, &message, started).await;
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use certgate_testkit::pki::{Alg, Ca, LeafSpec};
    use tokio::net::TcpListener;

    use super::*;
    use crate::pipeline::load::{self, SourcePaths};

    /// A TLS port that accepts every connection and closes it before the handshake: the
    /// workload answers, and refuses.
    async fn refusing_port() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                drop(tcp);
            }
        });
        addr
    }

    fn request(
        addr: SocketAddr,
        failures: u32,
        timeout: Duration,
        dir: &std::path::Path,
    ) -> FollowUpRequest {
        let ca = Ca::root("follow-up test root", Alg::P256);
        let leaf = ca.leaf(&LeafSpec::new("localhost"));
        let paths = SourcePaths {
            cert: dir.join("tls.crt"),
            key: Some(dir.join("tls.key")),
            trust: None,
        };
        std::fs::write(&paths.cert, &leaf.cert_pem).unwrap();
        std::fs::write(paths.key.as_ref().unwrap(), leaf.key.pkcs8_pem()).unwrap();
        FollowUpRequest {
            reload: None,
            verify: Some(VerifySettings {
                addr,
                name: None,
                timeout,
                failures,
                failure_window: Duration::from_secs(2),
            }),
            versions: TlsVersions::default(),
            name: ServerName::try_from("localhost").unwrap(),
            material: load::load_set(&paths, 1 << 20).unwrap(),
            expected: Fingerprint::of(&leaf.cert_der),
            reload_unless_serving: false,
        }
    }

    #[tokio::test]
    async fn handshake_failures_end_verification_before_the_timeout() {
        let tmp = tempfile::tempdir().unwrap();
        let addr = refusing_port().await;
        let started = Instant::now();
        let report = ReloadAndVerify
            .follow_up(request(addr, 3, Duration::from_secs(6), tmp.path()))
            .await;
        let took = started.elapsed();
        assert!(report.refused_early, "{report:?}");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(4),
            "3 failures over at least 2 s, well before the 6 s timeout: {took:?}"
        );
        let expected = report.observed.as_ref().unwrap();
        assert!(matches!(
            expected.summary(&Fingerprint::of(b"x")),
            Served::Refused(_)
        ));
    }

    #[tokio::test]
    async fn without_enough_failures_verification_waits_for_the_timeout() {
        // Negative control: the same refusing port, a failure count the window cannot reach.
        let tmp = tempfile::tempdir().unwrap();
        let addr = refusing_port().await;
        let started = Instant::now();
        let report = ReloadAndVerify
            .follow_up(request(addr, 100, Duration::from_secs(3), tmp.path()))
            .await;
        assert!(!report.refused_early, "{report:?}");
        assert!(started.elapsed() >= Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_closed_port_is_no_answer_not_a_refusal() {
        let tmp = tempfile::tempdir().unwrap();
        // Bind then drop: nothing listens there.
        let addr = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let req = request(addr, 3, Duration::from_secs(6), tmp.path());
        let seen = observe_workload(&req).await.unwrap();
        assert!(
            matches!(seen.summary(&req.expected), Served::NoAnswer(_)),
            "{seen:?}"
        );
    }
}
