//! Data on the move and its copies: worker-to-worker transfers in flight, the extra owners a
//! transfer left behind, and the fetches of clients waiting for a worker's SEND to the server.

use std::collections::{HashMap, VecDeque};

use super::ids::{ClientIdx, TaskId, WorkerIdx};
use crate::id_map::IdMap;

/// One transfer of an object to `target` (4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// A short list of small values per object, stored compactly: an object's first value sits
/// in one hash table (8 bytes an entry for a 4-byte value, against 32 for a `Vec` per object
/// plus its allocation), its further values, which are rare, in a second table.
///
/// Why: an `array/make` over a million inputs on one of two workers starts ~500,000
/// transfers at once, and each leaves a copy behind; with a `Vec` per object these two tables
/// were ~30 B/task of the server's peak at W1 N=1M.
/// A table that empties is given back to the allocator (it only grows otherwise).
pub(crate) struct PerObject<V> {
    first: IdMap<TaskId, V>,
    /// Values after the first, in order; a key here always has one in `first`.
    more: HashMap<TaskId, Vec<V>>,
}

impl<V> Default for PerObject<V> {
    fn default() -> Self {
        PerObject {
            first: IdMap::default(),
            more: HashMap::new(),
        }
    }
}

/// Tables with more buckets than this are released when they empty (smaller ones are kept
/// for reuse).
const KEEP_EMPTY_BUCKETS: usize = 4096;

impl<V: Copy> PerObject<V> {
    /// Whether no object has a value.
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// Whether `id` has a value.
    #[inline]
    pub(crate) fn contains(&self, id: TaskId) -> bool {
        self.first.contains_key(&id)
    }

    /// The values of `id`, in the order they were added.
    #[inline]
    pub(crate) fn values(&self, id: TaskId) -> impl Iterator<Item = V> + '_ {
        let first = self.first.get(&id).copied();
        let more = match first {
            Some(_) if !self.more.is_empty() => self.more.get(&id).map(Vec::as_slice),
            _ => None,
        };
        first.into_iter().chain(more.unwrap_or(&[]).iter().copied())
    }

    /// Whether some value of `id` satisfies `f`.
    #[inline]
    pub(crate) fn any(&self, id: TaskId, f: impl FnMut(V) -> bool) -> bool {
        !self.is_empty() && self.values(id).any(f)
    }

    /// The number of values over all objects.
    pub(crate) fn len(&self) -> usize {
        self.first.len() + self.more.values().map(Vec::len).sum::<usize>()
    }

    /// Makes room for `n` more objects' first values, so that a burst of pushes (an array's
    /// gather starts one transfer per input at once) grows the table once, not by doubling.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.first.reserve(n);
    }

    /// Adds `v` to the values of `id` (last).
    #[inline]
    pub(crate) fn push(&mut self, id: TaskId, v: V) {
        use std::collections::hash_map::Entry;
        match self.first.entry(id) {
            Entry::Vacant(e) => {
                e.insert(v);
            }
            Entry::Occupied(_) => self.more.entry(id).or_default().push(v),
        }
    }

    /// Keeps the values of `id` for which `keep` (which may change them) says true.
    pub(crate) fn retain_of(&mut self, id: TaskId, mut keep: impl FnMut(&mut V) -> bool) {
        let Some(first) = self.first.get_mut(&id) else {
            return;
        };
        let more = if self.more.is_empty() {
            None
        } else {
            self.more.remove(&id)
        };
        let Some(mut more) = more else {
            if !keep(first) {
                self.remove_key(id);
            }
            return;
        };
        // Several values (rare): filter them all, then store them again.
        let mut all = Vec::with_capacity(1 + more.len());
        all.push(*first);
        all.append(&mut more);
        all.retain_mut(|v| keep(v));
        self.remove_key(id);
        for v in all {
            self.push(id, v);
        }
    }

    /// Removes the first value of `id` (the next one becomes first).
    pub(crate) fn take_first(&mut self, id: TaskId) -> Option<V> {
        let v = *self.first.get(&id)?;
        self.retain_of(id, {
            let mut seen = false;
            move |_| std::mem::replace(&mut seen, true)
        });
        Some(v)
    }

    /// Removes `id`, handing each of its values to `f`.
    #[inline]
    pub(crate) fn remove(&mut self, id: TaskId, mut f: impl FnMut(V)) {
        let Some(v) = self.first.remove(&id) else {
            return;
        };
        f(v);
        if !self.more.is_empty() {
            if let Some(more) = self.more.remove(&id) {
                more.into_iter().for_each(f);
            }
        }
        self.release_if_empty();
    }

    /// Keeps, over all objects, the values for which `keep` (which may change them) says
    /// true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(TaskId, &mut V) -> bool) {
        let ids: Vec<TaskId> = self.first.keys().copied().collect();
        for id in ids {
            self.retain_of(id, |v| keep(id, v));
        }
    }

    /// Forgets the objects `gone` accepts.
    pub(crate) fn forget(&mut self, gone: impl Fn(TaskId) -> bool) {
        self.first.retain(|k, _| !gone(*k));
        if !self.more.is_empty() {
            self.more.retain(|k, _| !gone(*k));
        }
        self.release_if_empty();
    }

    /// Removes `id` and its values.
    fn remove_key(&mut self, id: TaskId) {
        self.first.remove(&id);
        if !self.more.is_empty() {
            self.more.remove(&id);
        }
        self.release_if_empty();
    }

    /// Gives a large table that emptied back to the allocator.
    #[inline]
    fn release_if_empty(&mut self) {
        if self.first.is_empty() && self.first.capacity() > KEEP_EMPTY_BUCKETS {
            self.first = IdMap::default();
            self.more = HashMap::new();
        }
    }
}

/// Transfers, copies and fetches, keyed by the object's task id.
#[derive(Default)]
pub(crate) struct Transfers {
    /// Transfers of each object in flight.
    pub(crate) in_flight: PerObject<Transfer>,
    /// Owners besides the primary one (copies made by transfers).
    pub(crate) extra_owners: PerObject<WorkerIdx>,
    /// Pending fetches per object, in request order (data headers answer them in order).
    pub(crate) fetches: Fetches,
    /// Transfers given up by their sender and sent from another copy instead (TRANSFER_FAILED),
    /// by object and target: where the attempts began and who sends now (`transfer_failure.rs`).
    pub(crate) redirected: HashMap<(TaskId, WorkerIdx), Redirected>,
}

/// A transfer sent again from another copy after its sender gave up (see [`Transfers::redirected`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Redirected {
    /// The sender that gave up first: the other copies are tried in registration order after
    /// it, wrapping around, until it would come again.
    pub(crate) first: WorkerIdx,
    /// The worker asked to send it now.
    pub(crate) now: WorkerIdx,
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
        self.extra_owners.any(id, |o| o == w)
    }

    /// Whether `id` is on its way to `w`.
    #[inline]
    pub(crate) fn is_sending_to(&self, id: TaskId, w: WorkerIdx) -> bool {
        self.in_flight.any(id, |t| t.target == w)
    }

    /// Records a transfer of `id` from `source` to `target` (a SEND was queued to `source`).
    pub(crate) fn start(&mut self, id: TaskId, target: WorkerIdx, source: WorkerIdx) {
        self.in_flight.push(
            id,
            Transfer {
                target,
                source: Some(source),
            },
        );
    }

    /// Records a client's fetch of `id` (a SEND to the server was queued to `f.sender`, or
    /// None: it waits for the object to be recomputed).
    pub(crate) fn add_fetch(&mut self, id: TaskId, f: Fetch) {
        self.fetches.push(id, f);
    }

    /// Records a copy of `id` on `w`.
    pub(crate) fn add_copy(&mut self, id: TaskId, w: WorkerIdx) {
        if !self.has_copy(id, w) {
            self.extra_owners.push(id, w);
        }
    }

    /// A transfer of `id` to `w` ended (TRANSFERED from `w`).
    pub(crate) fn arrived(&mut self, id: TaskId, w: WorkerIdx) {
        if !self.in_flight.is_empty() {
            self.in_flight.retain_of(id, |t| t.target != w);
        }
        if !self.redirected.is_empty() {
            self.redirected.remove(&(id, w));
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
            self.in_flight.remove(id, |_| ());
        }
    }

    /// Forgets everything about the objects `gone` accepts (dropped segments).
    pub(crate) fn forget(&mut self, gone: impl Fn(TaskId) -> bool) {
        if !self.in_flight.is_empty() {
            self.in_flight.forget(&gone);
        }
        if !self.redirected.is_empty() {
            self.redirected.retain(|&(id, _), _| !gone(id));
        }
        if !self.extra_owners.is_empty() {
            self.extra_owners.forget(&gone);
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

    fn w(i: usize) -> WorkerIdx {
        WorkerIdx::from_index(i)
    }

    fn all(m: &PerObject<WorkerIdx>, id: i32) -> Vec<usize> {
        m.values(TaskId(id)).map(|o| o.index()).collect()
    }

    #[test]
    fn several_values_per_object_keep_their_order() {
        let mut m = PerObject::default();
        m.push(TaskId(1), w(0));
        m.push(TaskId(1), w(2));
        m.push(TaskId(1), w(3));
        m.push(TaskId(2), w(1));
        assert_eq!(all(&m, 1), vec![0, 2, 3]);
        assert_eq!(all(&m, 2), vec![1]);
        assert_eq!(all(&m, 3), Vec::<usize>::new());
        assert_eq!(m.len(), 4);
        assert!(m.any(TaskId(1), |o| o == w(3)));
        assert!(!m.any(TaskId(2), |o| o == w(3)));

        m.retain_of(TaskId(1), |o| *o != w(0));
        assert_eq!(all(&m, 1), vec![2, 3], "the second value became first");
        assert_eq!(m.take_first(TaskId(1)), Some(w(2)));
        assert_eq!(all(&m, 1), vec![3]);
        let mut removed = Vec::new();
        m.remove(TaskId(1), |o| removed.push(o.index()));
        assert_eq!(removed, vec![3]);
        assert!(!m.contains(TaskId(1)));
        assert_eq!(m.take_first(TaskId(1)), None);

        // Every value of an object removed: the object goes.
        m.push(TaskId(2), w(4));
        m.retain(|id, o| {
            if *o == w(4) {
                *o = w(5);
            }
            id == TaskId(2)
        });
        assert_eq!(all(&m, 2), vec![1, 5]);
        m.retain(|_, o| *o == w(5));
        assert_eq!(all(&m, 2), vec![5]);
        m.forget(|id| id == TaskId(2));
        assert!(m.is_empty());
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn a_large_table_that_empties_is_released() {
        let mut t = Transfers::default();
        for i in 0..100_000 {
            t.start(TaskId(i), w(1), w(0));
        }
        assert!(t.is_sending_to(TaskId(7), w(1)) && !t.is_sending_to(TaskId(7), w(0)));
        for i in 0..100_000 {
            t.arrived(TaskId(i), w(1));
            t.add_copy(TaskId(i), w(1));
            t.add_copy(TaskId(i), w(1));
        }
        assert!(t.in_flight.is_empty());
        assert_eq!(t.in_flight.first.capacity(), 0, "released");
        assert_eq!(t.extra_owners.len(), 100_000, "one copy each, not two");
        assert!(t.has_copy(TaskId(99_999), w(1)));
        for i in 0..100_000 {
            t.extra_owners.remove(TaskId(i), |_| ());
        }
        assert_eq!(t.extra_owners.first.capacity(), 0, "released");
    }
}
