//! Typed ids of the server core, and [`IdxVec`], a vector indexed by one of them.
//!
//! Ids are newtypes over the integer the wire or the storage uses, so they cost nothing: a
//! [`TaskId`] is the `i32` sent to workers, an `Option<WorkerIdx>` is 2 bytes like the `u16`
//! it replaces (the niche is `u16::MAX`).

use std::marker::PhantomData;
use std::num::NonZeroU16;
use std::ops::{Index, IndexMut};

/// A task's *internal id*: from one server-wide counter, never reused. It is also the id of the
/// task's data object on the workers. A client's own ids map onto internal ids per plan
/// (see [`super::clients::PlanRange`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub(crate) struct TaskId(pub(crate) i32);

impl TaskId {
    /// The id on the wire.
    #[inline(always)]
    pub(crate) fn get(self) -> i32 {
        self.0
    }

    /// The id `d` places after this one.
    #[inline(always)]
    pub(crate) fn plus(self, d: usize) -> TaskId {
        TaskId(self.0 + d as i32)
    }

    /// `self - base` as an offset, if `self` lies in `base..base+n`.
    #[inline(always)]
    pub(crate) fn offset_in(self, base: TaskId, n: u32) -> Option<usize> {
        let d = self.0.wrapping_sub(base.0) as u32;
        (d < n).then_some(d as usize)
    }
}

/// An index usable as an [`IdxVec`] position.
pub(crate) trait Idx: Copy {
    /// The id of position `i`.
    fn from_index(i: usize) -> Self;
    /// The position of this id.
    fn index(self) -> usize;
}

/// A worker: its position in registration order (never reused; a lost worker keeps its slot).
/// Stored as the complement of the index in a `NonZeroU16`, so `Option<WorkerIdx>` is 2 bytes;
/// at most [`WorkerIdx::LIMIT`] workers can register.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct WorkerIdx(NonZeroU16);

impl WorkerIdx {
    /// How many workers can be indexed.
    pub(crate) const LIMIT: usize = u16::MAX as usize;
    /// The first worker that registers.
    #[cfg(test)]
    pub(crate) const FIRST: WorkerIdx = WorkerIdx(NonZeroU16::MAX);
}

impl Idx for WorkerIdx {
    /// `i` must be below [`WorkerIdx::LIMIT`] (checked when a worker is added, see
    /// `Workers::has_slot`; checked here in debug builds only, as this runs per worker per
    /// placement).
    #[inline(always)]
    fn from_index(i: usize) -> Self {
        debug_assert!(i < Self::LIMIT, "worker index {i} out of range");
        WorkerIdx(NonZeroU16::new(!(i as u16)).unwrap_or(NonZeroU16::MAX))
    }
    #[inline(always)]
    fn index(self) -> usize {
        (!self.0.get()) as usize
    }
}

impl WorkerIdx {
    /// The position of this id.
    #[inline(always)]
    pub(crate) fn index(self) -> usize {
        <Self as Idx>::index(self)
    }
}

impl std::fmt::Debug for WorkerIdx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkerIdx({})", self.index())
    }
}

/// A client: its position in registration order (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ClientIdx(u32);

impl Idx for ClientIdx {
    #[inline(always)]
    fn from_index(i: usize) -> Self {
        ClientIdx(u32::try_from(i).expect("client index fits u32"))
    }
    #[inline(always)]
    fn index(self) -> usize {
        self.0 as usize
    }
}

impl ClientIdx {
    /// The position of this id.
    #[inline(always)]
    pub(crate) fn index(self) -> usize {
        <Self as Idx>::index(self)
    }
}

/// A segment's position in the task graph. Valid until segments are collected (end of an event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegIdx(usize);

impl Idx for SegIdx {
    #[inline(always)]
    fn from_index(i: usize) -> Self {
        SegIdx(i)
    }
    #[inline(always)]
    fn index(self) -> usize {
        self.0
    }
}

/// Where a task is stored: its segment and its offset there (`id - segment base`). Valid until
/// segments are collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) seg: SegIdx,
    pub(crate) off: usize,
}

/// A `Vec` indexed by a typed id (after rustc's and rolldown's `IndexVec`).
pub(crate) struct IdxVec<I, T> {
    raw: Vec<T>,
    _id: PhantomData<fn(I)>,
}

impl<I: Idx, T> IdxVec<I, T> {
    pub(crate) fn new() -> Self {
        IdxVec {
            raw: Vec::new(),
            _id: PhantomData,
        }
    }

    /// The id the next pushed element gets.
    #[inline]
    pub(crate) fn next_idx(&self) -> I {
        I::from_index(self.raw.len())
    }

    /// Appends `v`, returning its id.
    pub(crate) fn push(&mut self, v: T) -> I {
        let i = self.next_idx();
        self.raw.push(v);
        i
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    #[cfg_attr(not(test), allow(dead_code))]
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    #[inline]
    pub(crate) fn last(&self) -> Option<&T> {
        self.raw.last()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.raw.iter()
    }

    pub(crate) fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.raw.iter_mut()
    }

    /// `(id, element)` pairs.
    pub(crate) fn iter_enumerated(&self) -> impl Iterator<Item = (I, &T)> {
        self.raw
            .iter()
            .enumerate()
            .map(|(i, v)| (I::from_index(i), v))
    }

    /// Every id, in order.
    pub(crate) fn indices(&self) -> impl Iterator<Item = I> {
        (0..self.raw.len()).map(I::from_index)
    }

    /// Keeps the elements `f` accepts. Ids of later elements shift: only for containers whose
    /// ids are not held across the call ([`SegIdx`]).
    /// Keeps the elements `f` accepts (it may change them).
    pub(crate) fn retain_mut(&mut self, f: impl FnMut(&mut T) -> bool) {
        self.raw.retain_mut(f);
    }

    /// Index of the first element for which `pred` is false (the elements are partitioned).
    #[inline]
    pub(crate) fn partition_point(&self, pred: impl FnMut(&T) -> bool) -> usize {
        self.raw.partition_point(pred)
    }
}

impl<I: Idx, T> Default for IdxVec<I, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: Idx, T> Index<I> for IdxVec<I, T> {
    type Output = T;
    #[inline(always)]
    fn index(&self, i: I) -> &T {
        &self.raw[i.index()]
    }
}

impl<I: Idx, T> IndexMut<I> for IdxVec<I, T> {
    #[inline(always)]
    fn index_mut(&mut self, i: I) -> &mut T {
        &mut self.raw[i.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_idx_has_a_niche_and_round_trips() {
        assert_eq!(std::mem::size_of::<Option<WorkerIdx>>(), 2);
        for i in [0usize, 1, 300, WorkerIdx::LIMIT - 1] {
            assert_eq!(WorkerIdx::from_index(i).index(), i);
        }
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn task_id_offsets() {
        let b = TaskId(10);
        assert_eq!(TaskId(12).offset_in(b, 3), Some(2));
        assert_eq!(TaskId(13).offset_in(b, 3), None);
        assert_eq!(TaskId(9).offset_in(b, 3), None);
    }
}
