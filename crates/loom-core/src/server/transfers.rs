//! Data on the move and its copies: worker-to-worker transfers in flight, the extra owners a
//! transfer left behind, and the fetches of clients waiting for a worker's SEND to the server.

use std::collections::{HashMap, VecDeque};

use super::ids::{ClientIdx, TaskId, WorkerIdx};
use crate::id_map::IdMap;

/// One transfer of an object to `target`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transfer {
    pub(crate) target: WorkerIdx,
    /// The worker asked to SEND; None while the object is being recomputed (its source was
    /// lost).
    pub(crate) source: Option<WorkerIdx>,
}

/// One client's FETCH of an object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fetch {
    pub(crate) client: ClientIdx,
    /// The client's own id of the task.
    pub(crate) client_id: i32,
    /// The worker asked to SEND it to the server; None while it is being recomputed.
    pub(crate) sender: Option<WorkerIdx>,
}

/// Transfers, copies and fetches, keyed by the object's task id.
#[derive(Default)]
pub(crate) struct Transfers {
    pub(crate) in_flight: HashMap<TaskId, Vec<Transfer>>,
    /// Owners besides the primary one (copies made by transfers).
    pub(crate) extra_owners: HashMap<TaskId, Vec<WorkerIdx>>,
    /// Pending fetches per object, in request order (data headers answer them in order).
    pub(crate) fetches: Fetches,
}

/// Pending fetches per object, in request order. Most objects are fetched once at a time (a
/// gather of 100,000 results has 100,000 here at once): the first fetch of an object is kept
/// inline, later ones (another client's, or the same client's again) in `more`; no allocation
/// per fetch.
#[derive(Default)]
pub(crate) struct Fetches {
    first: IdMap<TaskId, Fetch>,
    more: HashMap<TaskId, VecDeque<Fetch>>,
    /// Fetches waiting for their object to be (re)computed (`sender` None).
    unsent: usize,
}

impl Fetches {
    /// Whether no fetch is pending.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// Whether some fetch waits for its object to be (re)computed.
    #[inline]
    pub(crate) fn any_unsent(&self) -> bool {
        self.unsent > 0
    }

    /// Appends a fetch of `id`.
    fn push(&mut self, id: TaskId, f: Fetch) {
        self.unsent += f.sender.is_none() as usize;
        match self.first.entry(id) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(f);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.more.entry(id).or_default().push_back(f)
            }
        }
    }

    /// Takes the oldest fetch of `id`.
    fn pop(&mut self, id: TaskId) -> Option<Fetch> {
        let f = self.first.remove(&id)?;
        self.unsent -= f.sender.is_none() as usize;
        if !self.more.is_empty() {
            if let Some(q) = self.more.get_mut(&id) {
                let next = q.pop_front().expect("queues in `more` are not empty");
                if q.is_empty() {
                    self.more.remove(&id);
                }
                self.first.insert(id, next);
            }
        }
        Some(f)
    }

    /// The objects with pending fetches.
    pub(crate) fn ids(&self) -> Vec<TaskId> {
        self.first.keys().copied().collect()
    }

    /// Gives the fetches of `id` waiting for it to `w`; returns how many (a SEND each).
    pub(crate) fn send_unsent(&mut self, id: TaskId, w: WorkerIdx) -> usize {
        let mut n = 0;
        self.update(id, |f| {
            if f.sender.is_none() {
                f.sender = Some(w);
                n += 1;
            }
            true
        });
        n
    }

    /// Runs `keep` on each fetch of `id`, in order; it may change the fetch, and drops it by
    /// returning false.
    pub(crate) fn update(&mut self, id: TaskId, mut keep: impl FnMut(&mut Fetch) -> bool) {
        let mut all: VecDeque<Fetch> = match self.first.remove(&id) {
            Some(f) => std::iter::once(f).collect(),
            None => return,
        };
        if let Some(q) = self.more.remove(&id) {
            all.extend(q);
        }
        self.unsent -= all.iter().filter(|f| f.sender.is_none()).count();
        all.retain_mut(|f| keep(f));
        for f in all {
            self.push(id, f);
        }
    }

    /// Forgets the fetches of the objects `gone` accepts.
    pub(crate) fn forget(&mut self, gone: impl Fn(TaskId) -> bool) {
        self.first.retain(|k, _| !gone(*k));
        self.more.retain(|k, _| !gone(*k));
        self.unsent = self
            .first
            .values()
            .chain(self.more.values().flatten())
            .filter(|f| f.sender.is_none())
            .count();
    }
}

impl Transfers {
    /// Whether `w` holds a copy of `id` besides its primary owner.
    #[inline]
    pub(crate) fn has_copy(&self, id: TaskId, w: WorkerIdx) -> bool {
        !self.extra_owners.is_empty() && self.extra_owners.get(&id).is_some_and(|e| e.contains(&w))
    }

    /// Whether `id` is on its way to `w`.
    #[inline]
    pub(crate) fn is_sending_to(&self, id: TaskId, w: WorkerIdx) -> bool {
        !self.in_flight.is_empty()
            && self
                .in_flight
                .get(&id)
                .is_some_and(|t| t.iter().any(|t| t.target == w))
    }

    /// Records a transfer of `id` from `source` to `target` (a SEND was queued to `source`).
    pub(crate) fn start(&mut self, id: TaskId, target: WorkerIdx, source: WorkerIdx) {
        self.in_flight.entry(id).or_default().push(Transfer {
            target,
            source: Some(source),
        });
    }

    /// Records a client's fetch of `id` (a SEND to the server was queued to `f.sender`, or
    /// None: it waits for the object to be recomputed).
    pub(crate) fn add_fetch(&mut self, id: TaskId, f: Fetch) {
        self.fetches.push(id, f);
    }

    /// Records a copy of `id` on `w`.
    pub(crate) fn add_copy(&mut self, id: TaskId, w: WorkerIdx) {
        let e = self.extra_owners.entry(id).or_default();
        if !e.contains(&w) {
            e.push(w);
        }
    }

    /// A transfer of `id` to `w` ended (TRANSFERED from `w`).
    pub(crate) fn arrived(&mut self, id: TaskId, w: WorkerIdx) {
        if let Some(t) = self.in_flight.get_mut(&id) {
            t.retain(|t| t.target != w);
            if t.is_empty() {
                self.in_flight.remove(&id);
            }
        }
    }

    /// The next fetch of `id` to answer with a data header.
    pub(crate) fn pop_fetch(&mut self, id: TaskId) -> Option<Fetch> {
        self.fetches.pop(id)
    }

    /// `id` was freed: its transfers are moot.
    #[inline]
    pub(crate) fn forget_object(&mut self, id: TaskId) {
        if !self.in_flight.is_empty() {
            self.in_flight.remove(&id);
        }
    }

    /// Forgets everything about the objects `gone` accepts (dropped segments).
    pub(crate) fn forget(&mut self, gone: impl Fn(TaskId) -> bool) {
        if !self.in_flight.is_empty() {
            self.in_flight.retain(|k, _| !gone(*k));
        }
        if !self.extra_owners.is_empty() {
            self.extra_owners.retain(|k, _| !gone(*k));
        }
        if !self.fetches.is_empty() {
            self.fetches.forget(gone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ids::Idx;

    fn fetch(client: usize, client_id: i32, sender: Option<usize>) -> Fetch {
        Fetch {
            client: ClientIdx::from_index(client),
            client_id,
            sender: sender.map(WorkerIdx::from_index),
        }
    }

    #[test]
    fn fetches_of_one_object_are_answered_in_request_order_and_unsent_ones_counted() {
        let mut f = Fetches::default();
        let (a, b) = (TaskId(7), TaskId(8));
        f.push(a, fetch(0, 1, Some(0)));
        f.push(a, fetch(1, 2, None));
        f.push(a, fetch(2, 3, Some(0)));
        f.push(b, fetch(0, 4, Some(1)));
        assert!(f.any_unsent());
        // The one waiting for its object gets worker 1; the others keep theirs.
        assert_eq!(f.send_unsent(a, WorkerIdx::from_index(1)), 1);
        assert!(!f.any_unsent());
        // Worker 0 lost: its fetches of `a` wait again, and the object's last one is dropped.
        let mut seen = 0;
        f.update(a, |x| {
            seen += 1;
            if x.client_id == 3 {
                return false;
            }
            if x.sender == Some(WorkerIdx::from_index(0)) {
                x.sender = None;
            }
            true
        });
        assert_eq!(seen, 3);
        assert!(f.any_unsent());
        let order: Vec<i32> = std::iter::from_fn(|| f.pop(a))
            .map(|x| x.client_id)
            .collect();
        assert_eq!(order, vec![1, 2]);
        assert!(!f.any_unsent());
        assert_eq!(f.ids(), vec![b]);
        f.forget(|id| id == b);
        assert!(f.is_empty() && f.pop(b).is_none());
    }
}
