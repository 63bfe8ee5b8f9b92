//! Per-set runtime state: what is live, what was live before it (for swap-back), what the source
//! looked like last time, and the timers and flags the loop schedules the set by.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::time::Instant;

use super::schedule::{next_wakeup, Thresholds};
use crate::config::SetConfig;
use crate::ids::{AnchorId, Fingerprint, GenerationName};
use crate::metrics::LiveLabels;
use crate::pipeline::anchors::verifying_anchors;
use crate::pipeline::load::{self, Material};
use crate::pipeline::{Approved, FileSummary};
use crate::publish::PublishState;
use crate::state::{AnchorStatus, FirstSeen, LiveMaterial, Mode, SetStatus, TrustStatus, Via};
use crate::time_fmt::rfc3339;

/// Live material with what is needed to verify and swap back.
#[derive(Debug, Clone)]
pub(super) struct Live {
    pub(super) view: LiveMaterial,
    pub(super) fingerprint: Fingerprint,
    /// What was approved: the material, and the files it was read from (what is kept of it,
    /// [`Approved::kept`]).
    pub(super) approved: Approved,
    pub(super) publish: Option<PublishState>,
}

impl Live {
    /// Live material built from an approved candidate: published as `state` (in the publish
    /// directory whose user-visible paths are `paths`), or read from the source in monitor mode.
    pub(super) fn new(
        approved: &Approved,
        state: Option<PublishState>,
        paths: &load::SourcePaths,
        now: i64,
    ) -> Self {
        let view = LiveMaterial {
            generation: state.as_ref().map(|s| s.generation.clone()),
            cert_path: paths.cert.display().to_string(),
            trust_path: paths.trust.as_ref().map(|p| p.display().to_string()),
            anchors: approved.anchors_shared(),
            chain: approved.chain_shared(),
            trust_fingerprint: trust_fingerprint(approved.material()),
            effective_expiry: approved.effective_expiry(),
            since: rfc3339(now),
            labels: None,
        };
        Self {
            view,
            fingerprint: approved.fingerprint().clone(),
            approved: approved.kept(),
            publish: state,
        }
    }

    /// The material.
    pub(super) fn material(&self) -> &Material {
        self.approved.material()
    }

    /// The files it was read from.
    pub(super) fn files(&self) -> &[FileSummary] {
        self.approved.files()
    }

    /// The generation it is published as, in publish mode.
    pub(super) fn generation(&self) -> Option<&GenerationName> {
        self.view.generation.as_ref()
    }
}

/// The bundle's identity as a set of anchors: SHA-256 over the anchors' own SHA-256s, sorted
/// and without repeats, so the same roots in another order (or one listed twice) are the same
/// bundle and raise no false skew; `None` without a bundle.
pub(super) fn trust_fingerprint(m: &Material) -> Option<String> {
    m.raw.trust.as_ref()?;
    let mut each: Vec<ring::digest::Digest> = m
        .trust
        .iter()
        .map(|a| ring::digest::digest(&ring::digest::SHA256, a.as_ref()))
        .collect();
    each.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    each.dedup_by(|a, b| a.as_ref() == b.as_ref());
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for d in &each {
        ctx.update(d.as_ref());
    }
    Some(crate::hex(ctx.finish().as_ref()))
}

/// A published generation awaiting the workload's verdict.
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    pub(super) generation: GenerationName,
    /// When the change that brought it was seen: the rollback's reaction time starts here.
    pub(super) started: Instant,
    /// After this the set stops waiting for the verdict, so a lost one cannot stall it.
    pub(super) hold_until: Instant,
}

/// One set, as the loop sees it.
pub(super) struct SetRuntime<P> {
    pub(super) cfg: SetConfig,
    /// The directories its source files live in (what to watch).
    pub(super) dirs: Vec<PathBuf>,
    pub(super) publisher: Option<P>,
    pub(super) status: Arc<SetStatus>,
    pub(super) live: Option<Live>,
    /// Boxed, as is `held`: most sets have neither, and a thousand sets are one `Vec`.
    pub(super) previous: Option<Box<Live>>,
    /// Content hashes of the source last evaluated: unchanged content is not evaluated again.
    pub(super) last_seen: Option<Vec<String>>,
    /// The last load failure of unreadable files: the same failure again changes nothing.
    pub(super) last_problem: Option<String>,
    /// The content and reasons of the last refusal: evaluated again (its verdict may depend on
    /// time or the environment) with the same result, it is not counted or logged again.
    pub(super) last_refusal: Option<(Vec<String>, Vec<crate::labels::Reason>)>,
    /// Evaluate again at this Unix second: a candidate refused as not yet valid.
    pub(super) retry_at: Option<i64>,
    /// When the first change not yet evaluated was seen.
    pub(super) change_seen: Option<Instant>,
    /// A plain writer's change is evaluated once this passes without further events.
    pub(super) settle_deadline: Option<Instant>,
    /// Evaluate at the next turn.
    pub(super) dirty: bool,
    /// The next threshold crossing of the live material, Unix seconds.
    pub(super) wake_at: Option<i64>,
    /// One rotation is in flight per set, so a swap back always returns to material the
    /// workload was seen serving (or that was live before certgate started).
    pub(super) verifying: Option<InFlight>,
    /// The leaves this process published (or adopted at start), newest last, bounded: a
    /// workload serving one of them is stale, not refusing the live one.
    pub(super) published: VecDeque<Fingerprint>,
    /// When this pod first went live with each anchor of the live bundle.
    pub(super) first_seen: BTreeMap<AnchorId, (i64, Via)>,
    /// Whether the set was ever live in this pod (an anchor new after that came by rotation).
    pub(super) ever_live: bool,
    /// A candidate the fleet gate holds.
    pub(super) held: Option<Box<super::gate::Held>>,
}

/// How many published leaves a set remembers.
const PUBLISHED_HISTORY: usize = 64;

impl<P> SetRuntime<P> {
    pub(super) fn new(cfg: SetConfig, publisher: Option<P>) -> Self {
        let mode = if publisher.is_some() {
            Mode::Publish
        } else {
            Mode::Monitor
        };
        let mut status = SetStatus::new(
            &cfg.name,
            mode,
            cfg.required,
            cfg.fail_ready_before.as_secs(),
            cfg.policy.warn_before.as_secs(),
        );
        status.gate = cfg.gate.as_ref().map(|g| super::gate::idle(g.mode));
        let mut dirs: Vec<PathBuf> = cfg.paths.iter().map(|(_, p)| watched_dir(p)).collect();
        dirs.sort();
        dirs.dedup();
        Self {
            cfg,
            dirs,
            publisher,
            status: Arc::new(status),
            live: None,
            previous: None,
            last_seen: None,
            last_problem: None,
            last_refusal: None,
            retry_at: None,
            change_seen: None,
            settle_deadline: None,
            dirty: true,
            wake_at: None,
            verifying: None,
            published: VecDeque::new(),
            first_seen: BTreeMap::new(),
            ever_live: false,
            held: None,
        }
    }

    /// Remembers a leaf as published by this process.
    pub(super) fn remember_published(&mut self, fp: &Fingerprint) {
        if self.published.back() == Some(fp) {
            return;
        }
        self.published.retain(|p| p != fp);
        if self.published.len() >= PUBLISHED_HISTORY {
            self.published.pop_front();
        }
        self.published.push_back(fp.clone());
    }

    /// Whether this process published (or adopted) `fp`.
    pub(super) fn published_before(&self, fp: &Fingerprint) -> bool {
        self.published.contains(fp)
    }

    /// The set's name.
    pub(super) fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The publish directory (empty in monitor mode), for messages.
    pub(super) fn publish_dir(&self) -> PathBuf {
        self.cfg
            .publish
            .as_ref()
            .map(|p| p.dir.clone())
            .unwrap_or_default()
    }

    /// Copy-on-write access: readers holding the old snapshot keep theirs.
    pub(super) fn status_mut(&mut self) -> &mut SetStatus {
        Arc::make_mut(&mut self.status)
    }

    /// Marks the set for evaluation at the next turn (`seen`: when the change was noticed).
    pub(super) fn mark_dirty(&mut self, seen: Instant) {
        self.change_seen.get_or_insert(seen);
        self.dirty = true;
    }

    pub(super) fn set_live(&mut self, mut live: Option<Live>, now: i64) {
        if let Some(l) = live.as_mut() {
            let labels = LiveLabels::new(&self.cfg.name, &l.view);
            l.view.labels = Some(Arc::new(labels));
        }
        let st = self.status_mut();
        st.live = live.as_ref().map(|l| l.view.clone());
        st.live_problem = None;
        self.live = live;
        self.update_trust(now);
        self.schedule(now);
    }

    /// Records when each anchor of the live bundle was first seen live, and which the live
    /// chain verifies to, for `/status` and the fleet series.
    fn update_trust(&mut self, now: i64) {
        let Some(live) = &self.live else {
            self.status_mut().trust = None;
            return;
        };
        let via = if self.ever_live {
            Via::Rotation
        } else {
            Via::Startup
        };
        let mut anchors = Vec::with_capacity(live.view.anchors.len());
        for a in live.view.anchors.iter() {
            let (first_seen, via) = *self
                .first_seen
                .entry(a.anchor_id.clone())
                .or_insert((now, via));
            anchors.push(AnchorStatus {
                anchor_id: a.anchor_id.clone(),
                subject: a.subject.clone(),
                not_after: a.not_after,
                first_seen,
                via,
            });
        }
        self.first_seen
            .retain(|id, _| anchors.iter().any(|a| a.anchor_id == *id));
        self.ever_live = true;
        let limit = self.cfg.max_exported_anchors;
        let exported = anchors.len() <= limit;
        let chain_anchors = if exported {
            verifying_anchors(live.material(), self.cfg.policy.usage, now, limit)
        } else {
            Vec::new()
        };
        let note = (!exported).then(|| {
            format!(
                "{} anchors, above max_exported_anchors ({limit}): only the bundle-level series \
                 are exported",
                anchors.len()
            )
        });
        self.status_mut().trust = Some(TrustStatus {
            anchors,
            chain_anchors,
            exported,
            note,
        });
    }

    /// The first-seen times to save.
    pub(super) fn first_seen_list(&self) -> Vec<FirstSeen> {
        self.first_seen
            .iter()
            .map(|(id, (at, via))| FirstSeen {
                anchor_id: id.clone(),
                at: *at,
                via: *via,
            })
            .collect()
    }

    /// Restores saved first-seen times (at start-up, before the adopted generation goes live).
    pub(super) fn restore_first_seen(&mut self, saved: Vec<FirstSeen>) {
        self.first_seen = saved
            .into_iter()
            .map(|f| (f.anchor_id, (f.at, f.via)))
            .collect();
    }

    /// Sets the next threshold wake-up from the live material.
    pub(super) fn schedule(&mut self, now: i64) {
        self.wake_at = self.live.as_ref().and_then(|l| {
            next_wakeup(
                &Thresholds {
                    not_before: l.view.effective_start(),
                    not_after: l.view.effective_expiry,
                    warn_before: secs(self.cfg.policy.warn_before),
                    fail_ready_before: secs(self.cfg.fail_ready_before),
                },
                now,
            )
        });
    }
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The directory to watch for `p`: its parent, except that a path through the volume's
/// `..data` link itself (`/vol/..data/tls.crt`) is watched on the volume (`/vol`), where the
/// link is swapped; a watch on `..data` would follow it into one generation and go stale.
pub(super) fn watched_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if d.file_name().is_some_and(|n| n == load::DATA_LINK) => watched_dir(d),
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use certgate_testkit::pki::{Alg, Ca, LeafSpec};

    use super::*;

    #[test]
    fn the_bundle_fingerprint_is_the_set_of_its_anchors() {
        let (a, b) = (Ca::root("root a", Alg::P256), Ca::root("root b", Alg::P256));
        let leaf = a.leaf(&LeafSpec::new("localhost"));
        let tmp = tempfile::tempdir().unwrap();
        let fingerprint = |bundle: String| {
            let paths = load::SourcePaths {
                cert: tmp.path().join("tls.crt"),
                key: None,
                trust: Some(tmp.path().join("ca.crt")),
            };
            std::fs::write(&paths.cert, &leaf.cert_pem).unwrap();
            std::fs::write(paths.trust.as_ref().unwrap(), bundle).unwrap();
            trust_fingerprint(&load::load_set(&paths, 1 << 20).unwrap()).unwrap()
        };
        let ab = fingerprint(format!("{}{}", a.cert_pem, b.cert_pem));
        assert_eq!(ab, fingerprint(format!("{}{}", b.cert_pem, a.cert_pem)));
        assert_eq!(
            ab,
            fingerprint(format!("{}{}{}", a.cert_pem, b.cert_pem, a.cert_pem))
        );
        // Negative control: a different set of anchors is a different bundle.
        assert_ne!(ab, fingerprint(a.cert_pem.clone()));
    }
}
