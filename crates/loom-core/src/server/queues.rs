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
    /// How many entries at the front of `tasks` were sorted into `near` (sorted lazily, when a
    /// worker with room looks for tasks near it: see `Server::near_task`).
    sorted: usize,
    /// The sorted entries by the worker that held their first input (by worker index), in queue
    /// order; each also stays in `tasks` (whichever is taken first leaves the other stale).
    near: Vec<VecDeque<TaskId>>,
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
                sorted: 0,
                near: Vec::new(),
            });
            self.heavy.sort_by_key(|q| std::cmp::Reverse(q.cpus));
        }
    }

    /// Reserves room for `n` more light tasks (one allocation for a big plan).
    pub(crate) fn reserve_light(&mut self, n: usize) {
        self.light.reserve(n);
    }

    /// Queues a run of light ready tasks, in order (one reservation and copy; a plan's
    /// intake collects its ready tasks before it knows it keeps them).
    pub(crate) fn extend_light(&mut self, ids: &[TaskId]) {
        self.light.extend(ids);
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

    /// The entry `i` places behind the head of the light queue, if there is one (a run of
    /// light tasks placed in a row reads them in place: see [`ReadyQueues::drop_light`]).
    #[inline(always)]
    pub(crate) fn light_at(&self, i: usize) -> Option<TaskId> {
        self.light.get(i).copied()
    }

    /// Drops the first `n` entries of the light queue (those a run placed or found stale).
    #[inline]
    pub(crate) fn drop_light(&mut self, n: usize) {
        self.light.drain(..n);
    }

    /// Drops the head of a queue.
    #[inline]
    pub(crate) fn pop(&mut self, q: QueueRef) {
        match q {
            QueueRef::Light => {
                self.light.pop_front();
            }
            QueueRef::Heavy(i) => {
                let h = &mut self.heavy[i];
                h.tasks.pop_front();
                h.sorted = h.sorted.saturating_sub(1);
                if h.tasks.is_empty() && h.sorted == 0 {
                    // Every entry left in `near` is stale now.
                    h.near.iter_mut().for_each(VecDeque::clear);
                }
            }
        }
    }

    /// The next entry of heavy queue `i` not yet sorted into its `near` lists (marked sorted).
    pub(crate) fn next_unsorted(&mut self, i: usize) -> Option<TaskId> {
        let h = &mut self.heavy[i];
        let id = h.tasks.get(h.sorted).copied()?;
        h.sorted += 1;
        Some(id)
    }

    /// Lists entry `id` of heavy queue `i` as near worker `w` (the holder of its first input).
    pub(crate) fn push_near(&mut self, i: usize, w: usize, id: TaskId) {
        let h = &mut self.heavy[i];
        if h.near.len() <= w {
            h.near.resize_with(w + 1, VecDeque::new);
        }
        h.near[w].push_back(id);
    }

    /// The first entry of heavy queue `i` listed near worker `w`; may be stale.
    pub(crate) fn near_front(&self, i: usize, w: usize) -> Option<TaskId> {
        self.heavy[i].near.get(w)?.front().copied()
    }

    /// Drops [`ReadyQueues::near_front`].
    pub(crate) fn pop_near(&mut self, i: usize, w: usize) {
        if let Some(n) = self.heavy[i].near.get_mut(w) {
            n.pop_front();
        }
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
