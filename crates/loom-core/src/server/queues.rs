//! The ready queues: tasks whose inputs are all finished, waiting for a worker with room. One
//! FIFO for light (0-cpu) tasks, one per cpu count (largest first), and the parked tasks no
//! connected worker can run.

use std::collections::VecDeque;

use super::ids::TaskId;

/// Which queue (for the scheduler's drain loop).
#[derive(Clone, Copy, Debug)]
pub(crate) enum QueueRef {
    Light,
    /// The heavy queue at this position (sorted by cpus, largest first).
    Heavy(usize),
}

/// Ready tasks of one cpu count.
pub(crate) struct CpuQueue {
    pub(crate) cpus: u16,
    pub(crate) tasks: VecDeque<TaskId>,
}

/// The ready queues. Entries may be stale (the task was failed or discarded meanwhile): the
/// scheduler checks the state when it pops.
#[derive(Default)]
pub(crate) struct ReadyQueues {
    light: VecDeque<TaskId>,
    heavy: Vec<CpuQueue>,
    /// Ready tasks no connected worker can run (type or cpus); retried when a worker registers.
    parked: Vec<TaskId>,
}

impl ReadyQueues {
    /// Queues a ready task of `cpus` cpus.
    #[inline(always)]
    pub(crate) fn push(&mut self, id: TaskId, cpus: u16) {
        if cpus == 0 {
            self.light.push_back(id);
        } else {
            self.push_heavy(id, cpus);
        }
    }

    /// [`ReadyQueues::push`] of a task of one or more cpus.
    #[inline(never)]
    fn push_heavy(&mut self, id: TaskId, cpus: u16) {
        if let Some(q) = self.heavy.iter_mut().find(|q| q.cpus == cpus) {
            q.tasks.push_back(id);
        } else {
            self.heavy.push(CpuQueue {
                cpus,
                tasks: [id].into(),
            });
            self.heavy.sort_by_key(|q| std::cmp::Reverse(q.cpus));
        }
    }

    /// Reserves room for `n` more light tasks (one allocation for a big plan).
    pub(crate) fn reserve_light(&mut self, n: usize) {
        self.light.reserve(n);
    }

    /// Whether no task is queued (parked ones aside).
    pub(crate) fn is_empty(&self) -> bool {
        self.light.is_empty() && self.heavy.iter().all(|q| q.tasks.is_empty())
    }

    /// The number of heavy queues (`QueueRef::Heavy(0..n)`, by cpus, largest first).
    pub(crate) fn n_heavy(&self) -> usize {
        self.heavy.len()
    }

    fn q(&mut self, q: QueueRef) -> &mut VecDeque<TaskId> {
        match q {
            QueueRef::Light => &mut self.light,
            QueueRef::Heavy(i) => &mut self.heavy[i].tasks,
        }
    }

    /// The head of a queue.
    #[inline]
    pub(crate) fn front(&mut self, q: QueueRef) -> Option<TaskId> {
        self.q(q).front().copied()
    }

    /// Drops the head of a queue.
    #[inline]
    pub(crate) fn pop(&mut self, q: QueueRef) {
        self.q(q).pop_front();
    }

    /// Parks a ready task no connected worker can run.
    pub(crate) fn park(&mut self, id: TaskId) {
        self.parked.push(id);
    }

    /// Takes the parked tasks (to re-queue them).
    pub(crate) fn take_parked(&mut self) -> Vec<TaskId> {
        std::mem::take(&mut self.parked)
    }

    /// Counts the queued (light and heavy) entries `ready` accepts, read-only (for
    /// [`super::Server::waiting`]; entries may be stale).
    pub(crate) fn count_queued(&self, ready: impl Fn(TaskId) -> bool) -> usize {
        self.light.iter().filter(|&&t| ready(t)).count()
            + self
                .heavy
                .iter()
                .map(|q| q.tasks.iter().filter(|&&t| ready(t)).count())
                .sum::<usize>()
    }

    /// Counts the parked entries `ready` accepts, read-only.
    pub(crate) fn count_parked(&self, ready: impl Fn(TaskId) -> bool) -> usize {
        self.parked.iter().filter(|&&t| ready(t)).count()
    }

    /// Forgets parked tasks `gone` rejects.
    pub(crate) fn retain_parked(&mut self, keep: impl Fn(TaskId) -> bool) {
        self.parked.retain(|&t| keep(t));
    }

    /// Every queue with its cpus (0: the light queue), read-only; entries may be stale.
    pub(crate) fn queued(&self) -> impl Iterator<Item = (u16, &VecDeque<TaskId>)> {
        std::iter::once((0, &self.light)).chain(self.heavy.iter().map(|q| (q.cpus, &q.tasks)))
    }

    /// The parked tasks, read-only; entries may be stale.
    pub(crate) fn parked(&self) -> &[TaskId] {
        &self.parked
    }
}
