//! inotify (via notify) on each source file's *directory*, never on the files: kubelet's
//! `..data` swap deletes the watched inode. A directory that does not exist yet is covered by a
//! watch on its nearest existing ancestor, moved down as the path appears.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::pipeline::load::DATA_LINK;

/// What a filesystem event means for the sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// `..data` was committed in `dir`: react at once.
    Commit(PathBuf),
    /// A file changed in `dir` (plain writer): settle first.
    Changed(PathBuf),
    /// Something happened in an ancestor of a wanted directory: re-establish watches, rescan.
    Ancestor(PathBuf),
    /// Events were lost (queue overflow): rescan everything.
    Rescan,
}

/// Classifies a raw event for the wanted directories.
pub fn classify(event: &notify::Event, wanted: &BTreeSet<PathBuf>) -> Vec<Trigger> {
    if event.need_rescan() {
        return vec![Trigger::Rescan];
    }
    if matches!(event.kind, EventKind::Access(_)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for path in &event.paths {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let name = name.to_string_lossy();
        if wanted.contains(dir) {
            let trigger = if name == DATA_LINK {
                Trigger::Commit(dir.to_path_buf())
            } else if name.starts_with("..") {
                // kubelet's intermediate steps (new generation dir, ..data_tmp): not a commit.
                continue;
            } else {
                Trigger::Changed(dir.to_path_buf())
            };
            if !out.contains(&trigger) {
                out.push(trigger);
            }
        } else if wanted
            .iter()
            .any(|w| w.starts_with(path) || w.starts_with(dir) && w != dir)
        {
            let t = Trigger::Ancestor(dir.to_path_buf());
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// Where the daemon's file triggers come from. [`WatchTriggers`] is inotify; the daemon's
/// tests feed triggers by hand.
pub trait Triggers: Send {
    /// The next batch of triggers (everything already queued), or `None` once the source is
    /// gone for good.
    fn next(&mut self) -> impl std::future::Future<Output = Option<Vec<Trigger>>> + Send;
    /// Moves each watch to the deepest existing directory on its wanted path; returns the
    /// wanted directories whose watch changed (they need a rescan).
    fn refresh(&mut self) -> Vec<PathBuf>;
}

/// No file watcher at all (inotify could not start): nothing ever arrives, and the loop finds
/// changes at each resync.
impl<T: Triggers> Triggers for Option<T> {
    async fn next(&mut self) -> Option<Vec<Trigger>> {
        match self {
            Some(t) => t.next().await,
            None => std::future::pending().await,
        }
    }
    fn refresh(&mut self) -> Vec<PathBuf> {
        self.as_mut().map(Triggers::refresh).unwrap_or_default()
    }
}

/// Why inotify could not start, in words an operator can act on: instance and watch limits are
/// per user across the node (every container running as the same UID shares them).
pub fn start_failure(e: &notify::Error) -> String {
    let limit = match &e.kind {
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE) => Some(
            "inotify instances exhausted (fs.inotify.max_user_instances, shared by every \
             process of this UID on the node)",
        ),
        notify::ErrorKind::MaxFilesWatch => Some(
            "inotify watches exhausted (fs.inotify.max_user_watches, shared by every process \
             of this UID on the node)",
        ),
        _ => None,
    };
    match limit {
        Some(l) => format!("cannot start inotify: {l}"),
        None => format!("cannot start inotify: {e}"),
    }
}

/// Triggers from inotify: a [`DirWatcher`] and the queue its callback fills.
#[derive(Debug)]
pub struct WatchTriggers {
    watcher: DirWatcher,
    events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
}

impl WatchTriggers {
    /// Starts watching the directories in `wanted`.
    pub fn start(wanted: BTreeSet<PathBuf>) -> notify::Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let watcher = DirWatcher::new(wanted, tx)?;
        Ok(Self { watcher, events })
    }
}

impl Triggers for WatchTriggers {
    async fn next(&mut self) -> Option<Vec<Trigger>> {
        let first = self.events.recv().await?;
        let mut out = Vec::new();
        let mut push = |raw: notify::Result<notify::Event>| match raw {
            Ok(event) => {
                for t in classify(&event, self.watcher.wanted()) {
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "watch error; rescanning every set");
                if !out.contains(&Trigger::Rescan) {
                    out.push(Trigger::Rescan);
                }
            }
        };
        push(first);
        while let Ok(more) = self.events.try_recv() {
            push(more);
        }
        Some(out)
    }

    fn refresh(&mut self) -> Vec<PathBuf> {
        self.watcher.refresh()
    }
}

/// Directory watches, each on the wanted directory or its nearest existing ancestor.
pub struct DirWatcher {
    watcher: RecommendedWatcher,
    /// wanted directory → the directory actually watched for it.
    active: BTreeMap<PathBuf, PathBuf>,
    wanted: BTreeSet<PathBuf>,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher")
            .field("active", &self.active)
            .finish()
    }
}

impl DirWatcher {
    /// Starts a watcher that forwards raw events into `tx`.
    pub fn new(
        wanted: BTreeSet<PathBuf>,
        tx: mpsc::UnboundedSender<notify::Result<notify::Event>>,
    ) -> notify::Result<Self> {
        let watcher = notify::recommended_watcher(move |res| {
            let _ = tx.send(res);
        })?;
        let mut w = Self {
            watcher,
            active: BTreeMap::new(),
            wanted,
        };
        w.refresh();
        Ok(w)
    }

    /// The directories the sets live in.
    pub fn wanted(&self) -> &BTreeSet<PathBuf> {
        &self.wanted
    }

    /// Whether every wanted directory is watched directly (not through an ancestor).
    pub fn all_direct(&self) -> bool {
        self.wanted.iter().all(|w| self.active.get(w) == Some(w))
    }

    /// Moves each watch to the deepest existing directory on the wanted path. Returns the
    /// wanted directories whose watch changed (they need a rescan: files may have appeared).
    pub fn refresh(&mut self) -> Vec<PathBuf> {
        let mut changed = Vec::new();
        let wanted: Vec<PathBuf> = self.wanted.iter().cloned().collect();
        for dir in wanted {
            let target = nearest_existing(&dir);
            let current = self.active.get(&dir).cloned();
            // A directory deleted and recreated needs a fresh watch even at the same path.
            let stale = current.as_ref().is_some_and(|c| !c.is_dir());
            if current.as_ref() == Some(&target) && !stale {
                continue;
            }
            if let Some(old) = current {
                let still_used = self.active.iter().any(|(w, a)| *a == old && *w != dir);
                if !still_used {
                    let _ = self.watcher.unwatch(&old);
                }
            }
            let in_use = self.active.values().any(|a| *a == target);
            if !in_use || stale {
                if let Err(e) = self.watcher.watch(&target, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %target.display(), error = %e, "cannot watch directory");
                    self.active.remove(&dir);
                    continue;
                }
            }
            tracing::debug!(wanted = %dir.display(), watching = %target.display(), "watch set");
            self.active.insert(dir.clone(), target);
            changed.push(dir);
        }
        changed
    }
}

fn nearest_existing(dir: &Path) -> PathBuf {
    let mut p = dir.to_path_buf();
    loop {
        if p.is_dir() {
            return p;
        }
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
            _ => return PathBuf::from("/"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    fn ev(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn data_rename_is_a_commit_and_kubelet_steps_are_ignored() {
        let wanted: BTreeSet<PathBuf> = [PathBuf::from("/v/tls")].into();
        let commit = classify(
            &ev(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/v/tls/..data",
            ),
            &wanted,
        );
        assert_eq!(commit, vec![Trigger::Commit("/v/tls".into())]);
        let tmp = classify(
            &ev(EventKind::Create(CreateKind::Any), "/v/tls/..data_tmp"),
            &wanted,
        );
        assert!(tmp.is_empty());
        let gen = classify(
            &ev(
                EventKind::Create(CreateKind::Folder),
                "/v/tls/..2026_11_24_10_00_00.123",
            ),
            &wanted,
        );
        assert!(gen.is_empty());
        let plain = classify(
            &ev(EventKind::Modify(ModifyKind::Any), "/v/tls/tls.crt"),
            &wanted,
        );
        assert_eq!(plain, vec![Trigger::Changed("/v/tls".into())]);
        let ancestor = classify(
            &ev(EventKind::Create(CreateKind::Folder), "/v/tls"),
            &wanted,
        );
        assert_eq!(ancestor, vec![Trigger::Ancestor("/v".into())]);
        let other = classify(
            &ev(EventKind::Create(CreateKind::Any), "/elsewhere/x"),
            &wanted,
        );
        assert!(other.is_empty());
    }
}
