//! The task graph: every live task of every plan, in [`Segment`]s sorted by base (ids only
//! grow, so an internal id is located by binary search over the bases), plus the rare per-task
//! side tables (labels, lengths, cross-segment consumers, expansion overrides).

use std::collections::HashMap;

use super::counters::RetiredSegment;
use super::ids::{ClientIdx, Idx, IdxVec, SegIdx, Slot, TaskId};
use super::segment::{Segment, TaskFlags, TaskState};

/// The task graph. Its owner ([`super::Server`]) drives the life cycle; this type keeps the
/// storage consistent (segment liveness, side tables of dropped segments).
#[derive(Default)]
pub(crate) struct TaskGraph {
    pub(crate) segs: IdxVec<SegIdx, Segment>,
    /// Some segment reached `live == 0`: [`TaskGraph::collect`] has work.
    dirty: bool,
    /// The next internal id.
    next_id: i32,
    /// Consumers outside the input's own segment (later plans, expansions), for unfinished
    /// inputs; also kept for finished ones so that a lost, recomputed input re-waits them.
    pub(crate) extra_cons: HashMap<TaskId, Vec<TaskId>>,
    /// Non-zero lengths of finished objects (for dslice/dget).
    pub(crate) lengths: HashMap<TaskId, u64>,
    /// Labels of tasks that have one.
    pub(crate) labels: HashMap<TaskId, Box<str>>,
    /// Tasks whose inputs were replaced by a dslice/dget expansion (they became array/make).
    pub(crate) overrides: HashMap<TaskId, Vec<TaskId>>,
    /// Counts of segments dropped since the owner last drained it (for the plan records).
    pub(crate) retired: Vec<RetiredSegment>,
}

/// The ids `base..base+n` of a dropped segment.
#[derive(Clone, Copy)]
struct IdRange {
    base: TaskId,
    n: u32,
}

/// Id ranges of dropped segments (to clean side tables keyed by task id).
pub(crate) struct Dropped(Vec<IdRange>);

/// A plan whose segment was collected: its client's id range starting at `client_base` goes.
pub(crate) struct DroppedPlan {
    pub(crate) client: ClientIdx,
    pub(crate) client_base: i32,
}

/// What [`TaskGraph::collect`] dropped.
pub(crate) struct Collected {
    pub(crate) plans: Vec<DroppedPlan>,
    pub(crate) ids: Dropped,
}

impl Dropped {
    /// Whether `id` belonged to a dropped segment.
    pub(crate) fn contains(&self, id: TaskId) -> bool {
        self.0.iter().any(|r| id.offset_in(r.base, r.n).is_some())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TaskGraph {
    /// Reserves `n` consecutive internal ids; None when the `i32` id space is exhausted.
    pub(crate) fn alloc_ids(&mut self, n: usize) -> Option<TaskId> {
        let base = self.next_id;
        if base as i64 + n as i64 > i32::MAX as i64 {
            return None;
        }
        self.next_id = base + n as i32;
        Some(TaskId(base))
    }

    /// The id the next [`TaskGraph::alloc_ids`] starts at.
    pub(crate) fn next_id(&self) -> TaskId {
        TaskId(self.next_id)
    }

    /// Moves the id counter up to `id` (restoring a journal: ids are never reused).
    pub(crate) fn bump_next_id(&mut self, id: TaskId) {
        self.next_id = self.next_id.max(id.0);
    }

    /// Adds a segment (its base is above every existing one).
    pub(crate) fn push(&mut self, seg: Segment) -> SegIdx {
        debug_assert!(
            seg.offsets_hold(),
            "the offset-table invariant (see `Segment`)"
        );
        if seg.live == 0 {
            self.dirty = true;
        }
        self.segs.push(seg)
    }

    /// Where `id` is stored, if its segment is live.
    #[inline]
    pub(crate) fn locate(&self, id: TaskId) -> Option<Slot> {
        let segs = &self.segs;
        // Fast path: the newest segment.
        if let Some(last) = segs.last() {
            if let Some(off) = last.offset_of(id) {
                return Some(Slot {
                    seg: SegIdx::from_index(segs.len() - 1),
                    off,
                });
            }
        }
        let k = segs.partition_point(|s| s.base <= id);
        if k == 0 {
            return None;
        }
        let seg = SegIdx::from_index(k - 1);
        self.segs[seg].offset_of(id).map(|off| Slot { seg, off })
    }

    /// Like [`TaskGraph::locate`], trying segment `hint` first.
    #[inline]
    pub(crate) fn locate_hint(&self, id: TaskId, hint: SegIdx) -> Option<Slot> {
        match self.segs[hint].offset_of(id) {
            Some(off) => Some(Slot { seg: hint, off }),
            None => self.locate(id),
        }
    }

    /// The segment of a slot.
    #[inline(always)]
    pub(crate) fn seg(&self, s: Slot) -> &Segment {
        &self.segs[s.seg]
    }

    /// The segment of a slot, mutably.
    #[inline(always)]
    pub(crate) fn seg_mut(&mut self, s: Slot) -> &mut Segment {
        &mut self.segs[s.seg]
    }

    /// The state of a task.
    #[inline(always)]
    pub(crate) fn state(&self, s: Slot) -> TaskState {
        self.segs[s.seg].tasks[s.off].state
    }

    /// The state of task `id`, if its segment is live.
    #[inline]
    pub(crate) fn state_of(&self, id: TaskId) -> Option<TaskState> {
        self.locate(id).map(|s| self.state(s))
    }

    /// The inputs a task needs, taking dslice/dget overrides into account; none for a task
    /// loaded from its checkpoint.
    #[inline(always)]
    pub(crate) fn inputs_of(&self, s: Slot) -> &[TaskId] {
        let seg = &self.segs[s.seg];
        let flags = seg.tasks[s.off].flags;
        if flags.has(TaskFlags::LOAD) || flags.has(TaskFlags::OVERRIDE) {
            return self.rare_inputs_of(s);
        }
        seg.inputs(s.off)
    }

    /// [`TaskGraph::inputs_of`] a loaded or expansion-rewritten task (kept out of line).
    #[cold]
    #[inline(never)]
    fn rare_inputs_of(&self, s: Slot) -> &[TaskId] {
        let seg = &self.segs[s.seg];
        if seg.tasks[s.off].flags.has(TaskFlags::LOAD) {
            return &[];
        }
        self.overrides
            .get(&seg.id(s.off))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The label of a task, or "" if it has none.
    pub(crate) fn label_of(&self, id: TaskId) -> &str {
        self.labels.get(&id).map(|s| &**s).unwrap_or("")
    }

    /// Ends a live task's life in `state` (freed or failed): it no longer counts for its
    /// segment, which is collected when nothing in it is live.
    #[inline(always)]
    pub(crate) fn retire(&mut self, s: Slot, state: TaskState) {
        let seg = &mut self.segs[s.seg];
        // Retiring twice would drop the segment while tasks in it are still live.
        debug_assert!(
            seg.tasks[s.off].state.is_live(),
            "task {} retired twice",
            seg.id(s.off).get()
        );
        seg.set_state(s.off, state);
        seg.live -= 1;
        if seg.live == 0 {
            self.dirty = true;
        }
    }

    /// A segment was left without a live task by its owner's own bookkeeping (an object
    /// freed by the FINISHED path): [`TaskGraph::collect`] has work.
    #[inline]
    pub(crate) fn mark_emptied(&mut self) {
        self.dirty = true;
    }

    /// Records that `consumer` (outside `input`'s segment) consumes `input`.
    pub(crate) fn add_extra_consumer(&mut self, input: TaskId, consumer: TaskId) {
        self.extra_cons.entry(input).or_default().push(consumer);
    }

    /// Drops a client's segments (the client is gone); returns their id ranges.
    pub(crate) fn drop_client(&mut self, ci: ClientIdx) -> Dropped {
        let dropped = Dropped(
            self.segs
                .iter()
                .filter(|s| s.client == ci)
                .map(|s| IdRange {
                    base: s.base,
                    n: s.n,
                })
                .collect(),
        );
        let retired = &mut self.retired;
        self.segs.retain_mut(|s| {
            if s.client != ci {
                return true;
            }
            retired.push(RetiredSegment {
                plan: s.plan,
                counts: s.counts,
                groups: s.groups.take(),
            });
            false
        });
        self.forget(&dropped);
        dropped
    }

    /// Removes segments with no live task left. Returns the dropped plans (for the clients'
    /// id ranges) and id ranges, or None if nothing was dropped.
    pub(crate) fn collect(&mut self) -> Option<Collected> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        let mut plans = Vec::new();
        let mut ranges = Vec::new();
        let retired = &mut self.retired;
        self.segs.retain_mut(|s| {
            if s.live > 0 {
                return true;
            }
            retired.push(RetiredSegment {
                plan: s.plan,
                counts: s.counts,
                groups: s.groups.take(),
            });
            if let Some(client_base) = s.cbase {
                plans.push(DroppedPlan {
                    client: s.client,
                    client_base,
                });
            }
            ranges.push(IdRange {
                base: s.base,
                n: s.n,
            });
            false
        });
        let dropped = Dropped(ranges);
        if dropped.is_empty() {
            return None;
        }
        self.forget(&dropped);
        Some(Collected {
            plans,
            ids: dropped,
        })
    }

    /// Forgets side-table entries of dropped segments (rare entries: labels, expansions,
    /// cross-plan consumers, lengths).
    fn forget(&mut self, d: &Dropped) {
        if !self.labels.is_empty() {
            self.labels.retain(|k, _| !d.contains(*k));
        }
        if !self.overrides.is_empty() {
            self.overrides.retain(|k, _| !d.contains(*k));
        }
        if !self.extra_cons.is_empty() {
            self.extra_cons.retain(|k, _| !d.contains(*k));
        }
        if !self.lengths.is_empty() {
            self.lengths.retain(|k, _| !d.contains(*k));
        }
    }
}
