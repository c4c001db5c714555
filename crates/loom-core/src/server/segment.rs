//! One [`Segment`]: the tasks of one plan (or of one dslice/dget expansion), indexed by
//! `internal id - base`. The fields every event reads or writes are one [`Task`] record per
//! task (20 bytes: state, flags, cpus, worker, type, two counters), so handling a task touches
//! one record and pays one bounds check; the rest are columns: the size (8 bytes), three CSR
//! offsets (12) with the config bytes, input and consumer edges (4 bytes each).

use super::counters::{LabelGroups, PlanNo, StateCounts};
use super::ids::{ClientIdx, TaskId, WorkerIdx};

/// Consumers with more inputs than this are not pipelined, nor are their producers placed
/// together: not worth checking on every assignment (see [`TaskFlags::NARROW_CONSUMER`]).
pub(crate) const MAX_PIPELINE_INPUTS: usize = 8;

/// Where a task is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum TaskState {
    /// Stored but not reachable from any result: never computed.
    Unplanned,
    /// Planned, some inputs not finished.
    Waiting,
    /// All inputs finished; in a ready queue (or parked).
    Ready,
    /// Sent to a worker (assigned or running there).
    Running,
    /// The result exists on at least one worker.
    Finished,
    /// Done and its data removed (or never needed).
    Freed,
    /// Failed (itself or an input).
    Failed,
}

impl TaskState {
    /// Planned and not yet finished (it will still produce its data).
    #[inline]
    pub(crate) fn is_pending(self) -> bool {
        matches!(
            self,
            TaskState::Waiting | TaskState::Ready | TaskState::Running
        )
    }

    /// Placed on a worker: sent to it (running) or computed there (finished). Pipelining sends
    /// a consumer only once every input is placed on its worker.
    #[inline(always)]
    pub(crate) fn is_placed(self) -> bool {
        matches!(self, TaskState::Running | TaskState::Finished)
    }

    /// Counted in [`Segment::live`]: planned and neither freed nor failed.
    #[inline]
    pub(crate) fn is_live(self) -> bool {
        matches!(
            self,
            TaskState::Waiting | TaskState::Ready | TaskState::Running | TaskState::Finished
        )
    }
}

/// Per-task flags (a bit set in one byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TaskFlags(u8);

impl TaskFlags {
    /// The client holds the result (result task, not released).
    pub(crate) const RESULT: TaskFlags = TaskFlags(1);
    /// Inputs replaced by a dslice/dget expansion (see `TaskGraph::overrides`): it runs
    /// `array/make` over the expansion's copies of its consumer.
    pub(crate) const OVERRIDE: TaskFlags = TaskFlags(2);
    /// TASK_FINISHED was already sent for this result (a recomputation must not repeat it).
    pub(crate) const NOTIFIED: TaskFlags = TaskFlags(4);
    /// Sent to its worker before its inputs finished (pipelining): the worker starts it when
    /// the inputs it computes itself are published.
    pub(crate) const EARLY: TaskFlags = TaskFlags(8);
    /// Loaded from its checkpoint file instead of computed (`load_checkpoints`, spec 8): it
    /// runs as `LOAD_CHECKPOINT` on any worker, and its inputs are not needed through it.
    pub(crate) const LOAD: TaskFlags = TaskFlags(16);
    /// Some consumer in its segment takes at most [`MAX_PIPELINE_INPUTS`] inputs: pipelining
    /// may send one after it (`Server::pipeline` walks the consumers of a task that has it
    /// only). Set where the consumer edges are linked; input counts never change.
    pub(crate) const NARROW_CONSUMER: TaskFlags = TaskFlags(32);

    /// What keeps a task's FINISHED from being plain (`on_worker::ReadCtx::plain`): an
    /// expansion's rewrite, a checkpoint load.
    pub(crate) const QUIET_EXCLUDED: TaskFlags = TaskFlags(2 | 16);
    /// [`TaskFlags::RESULT`] or any of [`TaskFlags::QUIET_EXCLUDED`].
    pub(crate) const RESULT_OR_EXCLUDED: TaskFlags =
        TaskFlags(TaskFlags::RESULT.0 | TaskFlags::QUIET_EXCLUDED.0);

    #[inline(always)]
    pub(crate) fn has(self, f: TaskFlags) -> bool {
        self.0 & f.0 != 0
    }

    /// `f` if `cond`, else no flag (for a branchless [`TaskFlags::insert`]).
    #[inline(always)]
    pub(crate) fn when(f: TaskFlags, cond: bool) -> TaskFlags {
        TaskFlags(f.0 & (cond as u8).wrapping_neg())
    }

    #[inline(always)]
    pub(crate) fn insert(&mut self, f: TaskFlags) {
        self.0 |= f.0;
    }

    #[inline(always)]
    pub(crate) fn remove(&mut self, f: TaskFlags) {
        self.0 &= !f.0;
    }
}

/// The hot per-task fields, one record per task (see the module doc). 20 bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Task {
    pub(crate) state: TaskState,
    pub(crate) flags: TaskFlags,
    /// Cpus requested (0: a light task).
    pub(crate) cpus: u16,
    /// Running: the worker it runs on. Finished: its primary owner (None once lost).
    pub(crate) wk: Option<WorkerIdx>,
    /// Task type (symbol id).
    pub(crate) ttype: i32,
    /// Unfinished input edges (planned tasks only).
    pub(crate) waiting: u32,
    /// Unfinished planned consumer edges.
    pub(crate) refc: u32,
}

impl Task {
    /// A task of type `ttype` in `state`, nothing else set.
    #[inline(always)]
    pub(crate) fn new(state: TaskState, ttype: i32) -> Task {
        Task {
            state,
            flags: TaskFlags::default(),
            cpus: 0,
            wk: None,
            ttype,
            waiting: 0,
            refc: 0,
        }
    }
}

/// The tasks of one plan: internal ids `base..base+n`.
///
/// The offset-table invariant: each CSR offset table (`cfg_off`, `in_off`, `cons_off`) of a
/// segment in the graph holds `n + 1` ascending offsets starting at 0, the last one the length of
/// its column (`arena`, `inputs`, `cons`). Intake establishes it before the segment joins the
/// graph (`TaskGraph::push` checks it in debug builds, [`Segment::offsets_hold`]), and nothing
/// changes the tables or the columns afterwards (input and consumer counts never change). The
/// accessors [`Segment::config`], [`Segment::inputs`] and [`Segment::consumers`] rely on it
/// to read a task's window with one bounds check (see [`window`]).
pub(crate) struct Segment {
    pub(crate) base: TaskId,
    pub(crate) n: u32,
    /// Owning client.
    pub(crate) client: ClientIdx,
    /// Client id of the first task (None for tasks created by an expansion).
    pub(crate) cbase: Option<i32>,
    /// The hot fields of each task.
    pub(crate) tasks: Vec<Task>,
    /// Config of task i: `arena[cfg_off[i]..cfg_off[i+1]]`.
    pub(crate) cfg_off: Vec<u32>,
    pub(crate) arena: Vec<u8>,
    /// Inputs of task i: `inputs[in_off[i]..in_off[i+1]]`.
    pub(crate) in_off: Vec<u32>,
    pub(crate) inputs: Vec<TaskId>,
    /// Consumers inside this segment (one entry per input edge), CSR like the inputs.
    pub(crate) cons_off: Vec<u32>,
    pub(crate) cons: Vec<TaskId>,
    /// Result size in bytes (for locality).
    pub(crate) size: Vec<u64>,
    /// Tasks in WAITING..=FINISHED; the segment is dropped when it reaches 0.
    pub(crate) live: u32,
    /// Checkpoint paths (absolute, UTF-8) of the tasks that have one, by offset (ascending).
    /// Rare, so a side list rather than a column.
    pub(crate) checkpoints: Vec<(u32, Box<str>)>,
    /// The plan these tasks belong to (an expansion's segment: the plan it expands).
    pub(crate) plan: PlanNo,
    /// Tasks per state (kept by [`Segment::set_state`]; read by the status snapshot).
    pub(crate) counts: StateCounts,
    /// Tasks per state per label group, for plans with labels.
    pub(crate) groups: Option<Box<LabelGroups>>,
    /// No dslice/dget, no input from another segment and no label groups: a FINISHED of one
    /// of its tasks changes this segment only (`on_worker::ReadCtx::plain`).
    /// False unless the plan's ingest found it so.
    pub(crate) plain: bool,
}

impl Segment {
    /// An empty segment of `n` tasks starting at `base`: the size column sized, room for `n`
    /// task records (the caller pushes them, in `state`) and configs and inputs.
    pub(crate) fn with_columns(
        base: TaskId,
        n: usize,
        client: ClientIdx,
        cbase: Option<i32>,
        state: TaskState,
    ) -> Segment {
        Segment {
            base,
            n: n as u32,
            client,
            cbase,
            tasks: Vec::with_capacity(n),
            cfg_off: Vec::with_capacity(n + 1),
            arena: Vec::new(),
            in_off: Vec::with_capacity(n + 1),
            inputs: Vec::new(),
            cons_off: Vec::new(),
            cons: Vec::new(),
            size: vec![0; n],
            live: 0,
            checkpoints: Vec::new(),
            plan: PlanNo::default(),
            counts: StateCounts::all(state, n as u32),
            groups: None,
            plain: false,
        }
    }

    /// Moves task `off` to `state`, keeping the per-state counts (two increments; the label
    /// group's counts too when the plan has labels).
    #[inline(always)]
    pub(crate) fn set_state(&mut self, off: usize, state: TaskState) {
        let old = std::mem::replace(&mut self.tasks[off].state, state);
        self.counts.moved(old, state);
        if let Some(g) = self.groups.as_deref_mut() {
            g.moved(off, old, state);
        }
    }

    /// The internal id of task `off`.
    #[inline(always)]
    pub(crate) fn id(&self, off: usize) -> TaskId {
        self.base.plus(off)
    }

    /// The offset of `id` here, if it belongs to this segment.
    #[inline(always)]
    pub(crate) fn offset_of(&self, id: TaskId) -> Option<usize> {
        id.offset_in(self.base, self.n)
    }

    /// The config bytes of task `off`.
    #[inline(always)]
    pub(crate) fn config(&self, off: usize) -> &[u8] {
        window(&self.cfg_off, &self.arena, off)
    }

    /// The plan's inputs of task `off` (see `TaskGraph::inputs_of` for expansions).
    #[inline(always)]
    pub(crate) fn inputs(&self, off: usize) -> &[TaskId] {
        window(&self.in_off, &self.inputs, off)
    }

    /// Consumers of task `off` inside this segment.
    #[inline(always)]
    pub(crate) fn consumers(&self, off: usize) -> &[TaskId] {
        window(&self.cons_off, &self.cons, off)
    }

    /// Indices into `cons` of task `off`'s consumers (for loops that mutate the graph).
    #[inline]
    pub(crate) fn cons_range(&self, off: usize) -> std::ops::Range<usize> {
        let (a, b) = offsets_of(&self.cons_off, off);
        a..b
    }

    /// Input edge range of task `off` (indices into `inputs`).
    #[inline]
    pub(crate) fn input_range(&self, off: usize) -> std::ops::Range<usize> {
        let (a, b) = offsets_of(&self.in_off, off);
        a..b
    }

    /// Whether the three offset tables keep the offset-table invariant (see [`Segment`]):
    /// `n + 1` ascending offsets each, the last one the length of its column. O(n); for the
    /// debug check where a segment joins the graph, and for tests.
    pub(crate) fn offsets_hold(&self) -> bool {
        let n = self.n as usize;
        let holds = |offsets: &[u32], len: usize| {
            offsets.len() == n + 1
                && offsets[0] == 0
                && offsets.windows(2).all(|w| w[0] <= w[1])
                && offsets[n] as usize == len
        };
        holds(&self.cfg_off, self.arena.len())
            && holds(&self.in_off, self.inputs.len())
            && holds(&self.cons_off, self.cons.len())
    }

    /// Builds the consumer CSR from the inputs (edges whose input lies in this segment).
    pub(crate) fn build_consumers(&mut self) {
        let n = self.n as usize;
        let mut cnt = vec![0u32; n + 1];
        for &x in &self.inputs {
            if let Some(d) = self.offset_of(x) {
                cnt[d + 1] += 1;
            }
        }
        self.cons_off = cnt;
        self.link_consumers();
    }

    /// Builds the consumer CSR from the inputs, `cons_off[d + 1]` holding the number of
    /// in-segment consumer edges of task `d` (counted while the inputs were read).
    pub(crate) fn link_consumers(&mut self) {
        let n = self.n as usize;
        let mut cnt = std::mem::take(&mut self.cons_off);
        debug_assert_eq!(cnt.len(), n + 1, "consumer counts of every task");
        for i in 0..n {
            cnt[i + 1] += cnt[i];
        }
        let mut cons = vec![TaskId(0); cnt[n] as usize];
        // `cnt[d]` is the next free place of d's consumers; once filled it is where d + 1's
        // begin, so one shift puts the offsets back (no second array of n + 1 offsets).
        for i in 0..n {
            let r = self.input_range(i);
            let narrow =
                TaskFlags::when(TaskFlags::NARROW_CONSUMER, r.len() <= MAX_PIPELINE_INPUTS);
            for k in r {
                if let Some(d) = self.offset_of(self.inputs[k]) {
                    let slot = &mut cnt[d];
                    cons[*slot as usize] = self.base.plus(i);
                    *slot += 1;
                    self.tasks[d].flags.insert(narrow);
                }
            }
        }
        cnt.copy_within(0..n, 1);
        cnt[0] = 0;
        self.cons_off = cnt;
        self.cons = cons;
    }

    /// The checkpoint path of task `off`, if it has one.
    #[inline]
    pub(crate) fn checkpoint(&self, off: usize) -> Option<&str> {
        if self.checkpoints.is_empty() {
            return None;
        }
        let k = self
            .checkpoints
            .binary_search_by_key(&(off as u32), |c| c.0)
            .ok()?;
        Some(&self.checkpoints[k].1)
    }

    /// The client id of task `off`, or None for expansion tasks.
    #[inline]
    pub(crate) fn client_id(&self, off: usize) -> Option<i32> {
        self.cbase.map(|b| b + off as i32)
    }

    /// Whether task `off` is finished, unreferenced and not held by its client: its data can go.
    #[inline]
    pub(crate) fn is_garbage(&self, off: usize) -> bool {
        self.tasks[off].state == TaskState::Finished
            && self.tasks[off].refc == 0
            && !self.tasks[off].flags.has(TaskFlags::RESULT)
    }
}

/// Task `off`'s two offsets, `offsets[off]` and `offsets[off + 1]`, with one bounds check
/// (`off + 1 < offsets.len()`; slicing `offsets[off..off + 2]` makes two). Panics if the table
/// has no offset `off + 1` (`off` is not a task of the table's segment, or the table is not
/// built yet).
#[inline(always)]
fn offsets_of(offsets: &[u32], off: usize) -> (usize, usize) {
    // A task's offset is below its segment's `n: u32`: as a `u32`, `off + 1` cannot wrap (an
    // offset past `u32::MAX` would read another task's offsets, never outside the table).
    debug_assert!(off < u32::MAX as usize, "a task's offset");
    let off = off as u32 as usize;
    let b = *offsets.get(off + 1).expect("a task's two offsets");
    // SAFETY: `off < off + 1 < offsets.len()` (`off + 1 <= 2^32` did not wrap).
    let a = unsafe { *offsets.get_unchecked(off) };
    (a as usize, b as usize)
}

// `offsets_of`'s `off + 1` on a `u32` offset does not wrap where `usize` is wider (every
// target the addon builds for is 64-bit).
const _: () = assert!(
    usize::BITS > u32::BITS,
    "a u32 offset plus one fits in usize"
);

/// Task `off`'s window `column[offsets[off]..offsets[off + 1]]` of a CSR column, with the
/// bounds check of the two offsets only ([`offsets_of`]): the window lies in the column by the
/// offset-table invariant (see [`Segment`]), which intake establishes once per segment, so
/// every TASK, pipelining check and FINISHED does not check it again.
#[inline(always)]
fn window<'a, T>(offsets: &[u32], column: &'a [T], off: usize) -> &'a [T] {
    let (a, b) = offsets_of(offsets, off);
    debug_assert!(a <= b && b <= column.len(), "the offset-table invariant");
    // SAFETY: by the offset-table invariant (see `Segment`) the offsets ascend and the last
    // one is the column's length, so `a <= b <= column.len()`.
    unsafe { column.get_unchecked(a..b) }
}
