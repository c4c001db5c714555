//! The intake's read of a plan's usual tasks: the tasks [`scan_fast_task`] takes without a
//! tail (type, config, inputs, result flag) whose type is known and not a dslice/dget, read
//! one after another into the segment's columns. Most plans are all such tasks, so this loop
//! is most of a plan's intake: it writes the columns through cursors held in locals (one
//! length store per column when it stops), so it does no capacity check or length update per
//! value and keeps no vector field in memory.

use std::ptr;

use super::ids::TaskId;
use super::plan_scan::{plan_err, scan_fast_task, InputSink, PlanError};
use super::segment::{Segment, Task, TaskFlags, TaskState};

/// A plan's `tasks` field key (`Plan.tasks`, field 2, length-delimited).
const TASK: u8 = 2 << 3 | 2;

/// Tasks a run makes room for at once (see [`usual_tasks`]).
const CHUNK: usize = 32;
/// The most inputs a usual task can have: one per two bytes of a body under 128 bytes.
const MOST_INPUTS: usize = 63;
/// The longest config a usual task can have (under its body's 128 bytes).
const MOST_CONFIG: usize = 127;
/// The room (config bytes, inputs) a run makes for a chunk of tasks: reserved past a plan's
/// expected sizes, so that the last chunk does not grow the columns.
pub(super) const RUN_ROOM: (usize, usize) = (CHUNK * MOST_CONFIG + BLOCK, CHUNK * MOST_INPUTS);

/// Where a plan's ids go: client ids `base..base+n` become internal ids `ibase..ibase+n`.
#[derive(Clone, Copy)]
pub(super) struct IdMap {
    pub(super) base: i32,
    pub(super) ibase: TaskId,
    /// The plan's task count (from the header pass).
    pub(super) n: usize,
}

/// How [`usual_tasks`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RunEnd {
    /// At the plan's end or at a field it does not take (the generic reader reads it).
    Other,
    /// After a task whose inputs from index `.0` of `Segment::inputs` on are as on the wire
    /// (a later task's, its own, an earlier plan's or an unknown id):
    /// `Server::resolve_inputs` resolves them.
    Raw(usize),
}

/// The error of a plan with more tasks than its header pass counted (the two passes read the
/// same bytes, so this is a plan the two read differently: refused, never written past the
/// columns).
pub(super) fn too_many_tasks() -> PlanError {
    plan_err("malformed plan message (more tasks than counted)")
}

/// Reads the usual tasks of `plan` from byte `at` on, as long as they come, into `seg` (its
/// task records, config and input offsets, configs, inputs and consumer counts
/// `cons_off[d + 1]`): each task as `Server::fill_segment`'s generic reader reads it, its
/// inputs that are earlier tasks of the plan resolved to internal ids as they are read.
/// Returns how it stopped and the byte where it did (the start of the field it did not
/// take). A task it cannot take (another layout, a tail, an unknown or dslice/dget type)
/// leaves no trace. Err: a task beyond the header's count `map.n`.
///
/// `seg` as `fill_segment` prepares it: `tasks.len()` tasks read, `cfg_off` and `in_off`
/// holding one offset more, room for `map.n` task records and `map.n + 1` offsets, and
/// `cons_off` of `map.n + 1` counts (checked once per call: a run's writes rely on it).
#[inline(never)]
pub(super) fn usual_tasks(
    seg: &mut Segment,
    plan: &[u8],
    at: usize,
    map: IdMap,
    plain_type: &[bool; 128],
) -> Result<(RunEnd, usize), PlanError> {
    let n = map.n;
    let t0 = seg.tasks.len();
    assert!(
        seg.tasks.capacity() >= n
            && seg.cfg_off.capacity() > n
            && seg.in_off.capacity() > n
            && seg.cfg_off.len() == t0 + 1
            && seg.in_off.len() == t0 + 1
            && seg.cons_off.len() == n + 1,
        "columns prepared for the plan's {n} tasks"
    );
    // Safety of the writes below: task record `t` and offsets `t + 1` are written only for
    // `t < limit <= n`, within the capacities asserted above; a consumer count at `d + 1`
    // only for `d < t` (`Resolving`); configs and inputs after `Cursor::room` made room for
    // the most the bodies of the tasks up to `limit` can hold (a config no longer than the
    // body, plus the 16-byte block `push_config` may copy; an input per two bytes of body,
    // and `Resolving` checks its end before each write all the same).
    let tasks = seg.tasks.as_mut_ptr();
    let cfg_off = seg.cfg_off.as_mut_ptr();
    let in_off = seg.in_off.as_mut_ptr();
    let cons_off = seg.cons_off.as_mut_ptr();
    let mut arena = Cursor::of(&mut seg.arena);
    let mut inputs = Cursor::of(&mut seg.inputs);
    let mut t = t0;
    // Room is made for `CHUNK` tasks at a time, up to `limit`: one comparison per task for
    // the header's count and the room for configs and inputs.
    let mut limit = t0;
    let mut rest = plan.get(at..).unwrap_or_default();
    let end = loop {
        let &[TASK, len, ref tail @ ..] = rest else {
            break Ok(RunEnd::Other);
        };
        let len = len as usize;
        if len >= 0x80 || len > tail.len() {
            break Ok(RunEnd::Other);
        }
        if t == limit {
            if t == n {
                break Err(too_many_tasks());
            }
            limit = n.min(t + CHUNK);
            inputs.room(&mut seg.inputs, (limit - t) * MOST_INPUTS);
            arena.room(&mut seg.arena, (limit - t) * MOST_CONFIG + BLOCK);
            debug_assert!((limit - t) * MOST_CONFIG + BLOCK <= RUN_ROOM.0);
        }
        let (body, after) = tail.split_at(len);
        let first = inputs.len;
        // SAFETY: room for `MOST_INPUTS` from `first` on (for each task up to `limit`).
        let (at, end) = unsafe { (inputs.ptr.add(first), inputs.ptr.add(first + MOST_INPUTS)) };
        let mut sink = Resolving {
            at,
            end,
            cons_off,
            base: map.base,
            ibase: map.ibase,
            below: t as u32,
            raw: ptr::null_mut(),
            full: false,
        };
        let read = scan_fast_task::<false>(body, &mut sink);
        let usual = read
            .as_ref()
            .is_some_and(|r| plain_type[r.ttype as usize & 0x7f]);
        if !usual || sink.full {
            // The consumers counted for the inputs resolved are uncounted.
            let resolved_end = if sink.raw.is_null() {
                sink.at
            } else {
                sink.raw
            };
            let mut x = at;
            while x < resolved_end {
                // SAFETY: `at..resolved_end` are the inputs `Resolving` wrote and resolved,
                // each an earlier task's internal id (its offset counted in `cons_off`).
                unsafe {
                    let d = (*x).0.wrapping_sub(map.ibase.0) as usize;
                    *cons_off.add(d + 1) -= 1;
                    x = x.add(1);
                }
            }
            break Ok(RunEnd::Other);
        }
        let r = read.expect("usual");
        // SAFETY: `sink.at` is within `first..first + MOST_INPUTS` of the inputs' buffer.
        inputs.len = unsafe { sink.at.offset_from(inputs.ptr) } as usize;
        if !r.config.is_empty() {
            push_config(&mut arena, plan, r.config);
        }
        let mut task = Task::new(TaskState::Unplanned, r.ttype);
        task.flags = TaskFlags::when(TaskFlags::RESULT, r.result);
        // SAFETY: `t < n` (checked above) and the capacities asserted at the start.
        unsafe {
            cfg_off.add(t + 1).write(arena.len as u32);
            in_off.add(t + 1).write(inputs.len as u32);
            tasks.add(t).write(task);
        }
        t += 1;
        rest = after;
        if !sink.raw.is_null() {
            // SAFETY: `sink.raw` is within `first..inputs.len` of the inputs' buffer.
            break Ok(RunEnd::Raw(
                unsafe { sink.raw.offset_from(inputs.ptr) } as usize
            ));
        }
    };
    // SAFETY: every element below the new lengths is written (this run's tasks and offsets,
    // configs and inputs), and the lengths are within the capacities.
    unsafe {
        seg.tasks.set_len(t);
        seg.cfg_off.set_len(t + 1);
        seg.in_off.set_len(t + 1);
    }
    arena.close(&mut seg.arena);
    inputs.close(&mut seg.inputs);
    end.map(|e| (e, plan.len() - rest.len()))
}

/// A column's vector held in locals while a run writes it: its buffer, the length written so
/// far and its capacity; the vector's own length is set when the run stops ([`Cursor::close`]).
struct Cursor<T> {
    ptr: *mut T,
    len: usize,
    cap: usize,
}

impl<T: Copy> Cursor<T> {
    #[inline(always)]
    fn of(v: &mut Vec<T>) -> Cursor<T> {
        Cursor {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// Room for `k` more values after `len`: `v` (this cursor's vector) grows if needed.
    #[inline(always)]
    fn room(&mut self, v: &mut Vec<T>, k: usize) {
        if self.cap - self.len < k {
            self.grow(v, k);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, v: &mut Vec<T>, k: usize) {
        // The values written so far are the vector's before it moves.
        self.close(v);
        v.reserve(k);
        *self = Cursor::of(v);
    }

    /// Gives `v` (this cursor's vector) the length written.
    #[inline(always)]
    fn close(&self, v: &mut Vec<T>) {
        debug_assert!(self.len <= v.capacity() && self.ptr == v.as_mut_ptr());
        // SAFETY: the values below `len` are written (by the run or before it), and `len` is
        // within the capacity (`room`).
        unsafe { v.set_len(self.len) };
    }
}

/// The intake's [`InputSink`]: an input that is an earlier task of the plan (`id - base <
/// below`, the task's own offset) is resolved to its internal id as it is read, its consumer
/// counted in `cons_off`; from the first other input on (a later task, the task itself, an
/// earlier plan's or an unknown id: checked by `Server::resolve_inputs`), the inputs are kept
/// as on the wire, `raw` marking where they start.
struct Resolving {
    /// Where the next input goes, up to `end`.
    at: *mut TaskId,
    end: *mut TaskId,
    /// An input came with no room left (`at == end`): the task is not taken.
    full: bool,
    /// `Segment::cons_off`, with a count for each task below `below`.
    cons_off: *mut u32,
    /// The plan's client id base and internal id base.
    base: i32,
    ibase: TaskId,
    /// The offset of the task read; 0 once an input was kept as on the wire.
    below: u32,
    /// The first input kept as on the wire (null: none).
    raw: *mut TaskId,
}

impl InputSink for Resolving {
    #[inline(always)]
    fn input(&mut self, id: i32) {
        if self.at == self.end {
            return self.full();
        }
        let d = id.wrapping_sub(self.base) as u32;
        let x = if d < self.below {
            // SAFETY: `d < below <= n - 1`, and `cons_off` holds `n + 1` counts.
            unsafe { *self.cons_off.add(d as usize + 1) += 1 };
            self.ibase.plus(d as usize)
        } else {
            self.keep_raw(id)
        };
        // SAFETY: `at < end`, within the room made for the task's inputs.
        unsafe {
            self.at.write(x);
            self.at = self.at.add(1);
        }
    }
}

impl Resolving {
    /// Keeps `id` and every later input of the task as on the wire.
    #[cold]
    fn keep_raw(&mut self, id: i32) -> TaskId {
        if self.raw.is_null() {
            self.raw = self.at;
        }
        self.below = 0;
        TaskId(id)
    }

    /// More inputs than room was made for (not for a task `scan_fast_task` takes): the task
    /// is not taken (`at` stays at `end`, so no later input is written either).
    #[cold]
    fn full(&mut self) {
        self.full = true;
    }
}

/// The block [`push_config`] copies a short config in.
const BLOCK: usize = 16;

/// Appends `config`, a slice of `plan`, to the config arena at `arena` (room for
/// `config.len() + BLOCK` made). Most configs are a few bytes: one of up to 16 bytes with 16
/// bytes of `plan` from its start is copied as one 16-byte block (the bytes after it are
/// overwritten by the next config, or beyond the arena's length), not by a call to `memcpy`
/// for a few bytes; anything else as it is.
#[inline(always)]
fn push_config(arena: &mut Cursor<u8>, plan: &[u8], config: &[u8]) {
    let at = (config.as_ptr() as usize).wrapping_sub(plan.as_ptr() as usize);
    let len = config.len();
    debug_assert!(arena.cap - arena.len >= len + BLOCK);
    // SAFETY: room for `len + BLOCK` bytes from `arena.len` (the caller's `room`); the block
    // is read within `plan`.
    unsafe {
        let dst = arena.ptr.add(arena.len);
        if len <= BLOCK && at.wrapping_add(BLOCK) <= plan.len() {
            ptr::copy_nonoverlapping(plan.as_ptr().add(at), dst, BLOCK);
        } else {
            ptr::copy_nonoverlapping(config.as_ptr(), dst, len);
        }
    }
    arena.len += len;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ids::{ClientIdx, Idx};

    /// The arena holds exactly the configs pushed, one after another, whether a config was
    /// copied as a 16-byte block (short, with 16 bytes of the plan from its start) or not (17
    /// bytes and more, or too near the plan's end), and a block's extra bytes never show.
    #[test]
    fn configs_land_in_the_arena_as_they_are() {
        let plan: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let cuts = [
            (0, 1),
            (5, 0),
            (10, 16),
            (40, 17),
            (100, 3),
            (284, 16),
            (285, 15),
            (297, 3),
            (299, 1),
            (3, 200),
        ];
        let mut v = Vec::new();
        let mut expected = Vec::new();
        for (at, len) in cuts {
            let config = &plan[at..at + len];
            let mut arena = Cursor::of(&mut v);
            arena.room(&mut v, len + BLOCK);
            push_config(&mut arena, &plan, config);
            arena.close(&mut v);
            expected.extend_from_slice(config);
            assert_eq!(v, expected, "after {len} bytes at {at}");
        }
        // A config that is not a slice of the plan is copied as it is.
        let other = [7u8; 5];
        let mut arena = Cursor::of(&mut v);
        arena.room(&mut v, other.len() + BLOCK);
        push_config(&mut arena, &plan, &other);
        arena.close(&mut v);
        expected.extend_from_slice(&other);
        assert_eq!(v, expected);
    }

    /// `n` usual tasks of type 1 (the first with no input, each later one taking the one
    /// before it), as a plan's bytes.
    fn chain_plan(n: usize) -> Vec<u8> {
        let mut plan = Vec::new();
        for i in 0..n {
            let mut body = vec![0x08, 0x01, 0x12, 0x01, b'c'];
            if i > 0 {
                body.extend([0x18, (i - 1) as u8]);
            }
            plan.extend([TASK, body.len() as u8]);
            plan.extend(body);
        }
        plan
    }

    /// A segment as `fill_segment` prepares it for `n` tasks.
    fn prepared(n: usize) -> Segment {
        let mut seg = Segment::with_columns(
            TaskId(100),
            n,
            ClientIdx::from_index(0),
            Some(0),
            TaskState::Unplanned,
        );
        seg.cfg_off.push(0);
        seg.in_off.push(0);
        seg.cons_off = vec![0; n + 1];
        seg
    }

    /// A plan with more usual tasks than the header pass counted is refused (the run stops
    /// at the task past the count), and nothing is written past the columns' room.
    #[test]
    fn more_tasks_than_counted_is_an_error() {
        let plan = chain_plan(5);
        let map = |n| IdMap {
            base: 0,
            ibase: TaskId(100),
            n,
        };
        let mut types = [false; 128];
        types[1] = true;
        let mut seg = prepared(5);
        let (end, at) = usual_tasks(&mut seg, &plan, 0, map(5), &types).expect("5 of 5");
        assert_eq!((end, at), (RunEnd::Other, plan.len()));
        assert_eq!(seg.tasks.len(), 5);
        assert_eq!(seg.inputs, [100, 101, 102, 103].map(TaskId));
        assert_eq!(seg.cons_off, [0, 1, 1, 1, 1, 0]);
        assert_eq!(seg.config(4), b"c");
        let mut seg = prepared(3);
        let err = usual_tasks(&mut seg, &plan, 0, map(3), &types).err();
        assert!(err.is_some_and(|e| e.cause.contains("more tasks than counted")));
        assert_eq!(seg.tasks.len(), 3);
        assert!(seg.tasks.capacity() >= 3 && seg.in_off.len() == 4);
    }

    /// A task the run does not take (an unknown type here, after one input was resolved)
    /// leaves no trace: no record, offsets, config, input or consumer count.
    #[test]
    fn a_task_not_taken_leaves_no_trace() {
        let mut plan = chain_plan(2);
        // A third task of type 0 (not a plain type) taking task 1.
        plan.extend([TASK, 4, 0x08, 0x00, 0x18, 0x01]);
        let map = IdMap {
            base: 0,
            ibase: TaskId(100),
            n: 3,
        };
        let mut seg = prepared(3);
        let mut types = [false; 128];
        types[1] = true;
        let (end, at) = usual_tasks(&mut seg, &plan, 0, map, &types).expect("read");
        assert_eq!((end, at), (RunEnd::Other, plan.len() - 6));
        assert_eq!(seg.tasks.len(), 2);
        assert_eq!((seg.cfg_off.len(), seg.in_off.len()), (3, 3));
        assert_eq!(seg.inputs, [TaskId(100)]);
        assert_eq!(seg.cons_off, [0, 1, 0, 0]);
        assert_eq!(seg.arena, b"cc");
    }
}
