//! File-event intake: what a batch of triggers means for each set. A kubelet `..data` commit
//! makes its sets due at once; a plain writer's change opens a settle window; a change above a
//! watched directory moves the watches; lost events rescan everything.

use tokio::time::Instant;

use super::event_loop::Core;
use super::follow_up::Workload;
use super::watch::{Trigger, Triggers};
use crate::publish::Publish;

impl<P: Publish, W: Workload> Core<P, W> {
    /// Applies one batch of triggers.
    pub(super) fn intake(&mut self, batch: Vec<Trigger>, triggers: &mut impl Triggers) {
        let seen = Instant::now();
        let mut refresh = false;
        for trigger in batch {
            match trigger {
                Trigger::Commit(dir) => {
                    for id in self.by_dir.get(&dir).into_iter().flatten() {
                        let s = &mut self.sets[id.0];
                        s.mark_dirty(seen);
                        s.settle_deadline = None;
                    }
                }
                Trigger::Changed(dir) => {
                    let settle = self.settings.settle;
                    for id in self.by_dir.get(&dir).into_iter().flatten() {
                        let s = &mut self.sets[id.0];
                        s.change_seen.get_or_insert(seen);
                        s.settle_deadline = Some(seen + settle);
                    }
                }
                Trigger::Ancestor(_) => refresh = true,
                Trigger::Rescan => {
                    tracing::warn!("file events were lost; rescanning every set");
                    for s in &mut self.sets {
                        s.mark_dirty(seen);
                    }
                }
            }
        }
        if refresh {
            for dir in triggers.refresh() {
                for id in self.by_dir.get(&dir).into_iter().flatten() {
                    self.sets[id.0].mark_dirty(seen);
                }
            }
        }
    }
}
