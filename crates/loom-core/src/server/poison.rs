//! Poison tasks: a task whose worker is lost while running it, again and again, is what takes
//! the workers down (a native task that segfaults, a function that exhausts memory). After it
//! has been running on `max` lost workers it fails instead of being tried again (Dask's
//! `allowed-failures`).

use std::collections::HashMap;

use super::ids::TaskId;

/// Default of [`super::Server::set_max_crashes`].
pub const DEFAULT_MAX_CRASHES: u32 = 2;

/// Lost workers per task (only tasks that lost one), and the limit.
pub(crate) struct Crashes {
    pub(crate) max: u32,
    counts: HashMap<TaskId, u32>,
}

impl Default for Crashes {
    fn default() -> Self {
        Crashes {
            max: DEFAULT_MAX_CRASHES,
            counts: HashMap::new(),
        }
    }
}

impl Crashes {
    /// The worker running `id` was lost: true when that makes `max` (the task is poison).
    pub(crate) fn note(&mut self, id: TaskId) -> bool {
        let n = self.counts.entry(id).or_insert(0);
        *n += 1;
        *n >= self.max
    }

    /// No task has lost a worker.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// `id` finished, failed or was dropped.
    #[inline]
    pub(crate) fn forget(&mut self, id: TaskId) {
        if !self.counts.is_empty() {
            self.counts.remove(&id);
        }
    }

    /// Keeps only the counts of tasks for which `keep` holds.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(TaskId) -> bool) {
        if !self.counts.is_empty() {
            self.counts.retain(|&id, _| keep(id));
        }
    }

    /// The failure message of a poison task.
    pub(crate) fn message(&self) -> Vec<u8> {
        let n = self.max;
        format!(
            "Task crashed {n} worker{} (each was lost while running it); not retried",
            if n == 1 { "" } else { "s" }
        )
        .into_bytes()
    }
}
