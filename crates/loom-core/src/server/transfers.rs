//! Data on the move and its copies: worker-to-worker transfers in flight, the extra owners a
//! transfer left behind, and the fetches of clients waiting for a worker's SEND to the server.

use std::collections::{HashMap, VecDeque};

use super::ids::{ClientIdx, TaskId, WorkerIdx};

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
    pub(crate) fetches: HashMap<TaskId, VecDeque<Fetch>>,
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

    /// Records a client's fetch of `id` (a SEND to the server was queued to `f.sender`).
    pub(crate) fn add_fetch(&mut self, id: TaskId, f: Fetch) {
        self.fetches.entry(id).or_default().push_back(f);
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
        let q = self.fetches.get_mut(&id)?;
        let f = q.pop_front();
        if q.is_empty() {
            self.fetches.remove(&id);
        }
        f
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
            self.fetches.retain(|k, _| !gone(*k));
        }
    }
}
