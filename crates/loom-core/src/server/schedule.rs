//! The reactive scheduler: ready queues drained while workers have room, worker choice
//! (locality, cpus, load), assignment with the transfers of missing inputs, and pipelining of
//! light consumers.
//!
//! Every event costs O(its own work): the scheduler pops ready tasks from queues (no scan of
//! tasks).

use super::ids::{Idx, Slot, TaskId, WorkerIdx};
use super::queues::QueueRef;
use super::segment::{TaskFlags, TaskState, MAX_PIPELINE_INPUTS};
use super::workers::{Queueing, Worker, LIGHT_CAP};
use super::{wire, Server};

/// How much more loaded than the least loaded worker a sibling's worker may be and still take an
/// input-less task next to its sibling (see `Server::with_sibling`): one cpu's worth of load per
/// cpu (64 light tasks on a one-cpu worker; [`super::workers::Worker::load`]'s units).
const SIBLING_SLACK: u64 = 64 * 1024;

/// A task with more inputs than this makes room in the transfer table for all of them before
/// its SENDs (at most one per input): an array over a million inputs otherwise regrows the table
/// some twenty times while it starts its ~500,000 transfers on two workers.
const GATHER_RESERVE_FROM: usize = 64;

#[cfg(test)]
thread_local! {
    /// Tests: every start of [`Server::pipeline`] is the walk (none skipped, no first step
    /// found by `Server::sole_consumer`), to compare runs with and without those shortcuts.
    pub(super) static ALWAYS_WALK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Tests: how many walks were skipped on this thread.
    pub(super) static SKIPPED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Tests: how many walks started at a consumer `Server::sole_consumer` found, on this
    /// thread.
    pub(super) static FIRST_STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// What [`Server::choose`] found.
struct Choice {
    /// The worker chosen (None: no candidate has room).
    best: Option<WorkerIdx>,
    /// Some worker can run the task (has its type and cpus).
    any: bool,
    /// A candidate holding more of its input bytes than `best` had no room.
    displaced: bool,
}

/// How pipelining starts from a placed task (see [`Server::sole_consumer`]).
enum FirstStep {
    /// Its one consumer waits for an input not placed: nothing to pipeline.
    Waits,
    /// Its one consumer, whose last input is placed: the walk's first and only step.
    One(Slot),
    /// The walk over its consumers.
    Walk,
}

/// The outcome of choosing a worker for a task.
enum Pick {
    /// This worker; `true` if a worker holding more of the task's input bytes had no room.
    Worker(WorkerIdx, bool),
    /// Some worker could run it but none has room now.
    Full,
    /// No connected worker can ever run it (type or cpus).
    Nobody,
}

impl Server {
    /// A task has all inputs finished: expand it (dslice/dget) or queue it.
    #[inline(always)]
    pub(super) fn make_ready(&mut self, s: Slot) {
        if !self.awaiting.is_empty() {
            let id = self.graph.seg(s).id(s.off);
            if self.awaiting.contains(&id) || self.only_for_awaiting(s, 0) {
                // The reconnect grace: a worker may still bring this result back (or the
                // results this task is computed for).
                self.graph.seg_mut(s).set_state(s.off, TaskState::Ready);
                self.held_back.push(id);
                return;
            }
        }
        let seg = self.graph.seg_mut(s);
        if !seg.tasks[s.off].flags.has(TaskFlags::OVERRIDE)
            && self.sym.is_expansion(seg.tasks[s.off].ttype)
        {
            self.expand(s);
            return;
        }
        seg.set_state(s.off, TaskState::Ready);
        self.ready.push(seg.id(s.off), seg.tasks[s.off].cpus);
    }

    /// During the reconnect grace: whether restored task `s` is needed only by results that
    /// wait for their workers (directly, or through tasks needed only by them, up to a depth of
    /// 32): it waits with them, and goes unplanned if they come back.
    fn only_for_awaiting(&self, s: Slot, depth: u32) -> bool {
        let seg = self.graph.seg(s);
        let id = seg.id(s.off);
        if depth > 32
            || id >= self.restored_below
            || seg.tasks[s.off].flags.has(TaskFlags::RESULT)
            || self.graph.extra_cons.contains_key(&id)
        {
            return false;
        }
        let mut needed = false;
        for &c in seg.consumers(s.off) {
            let Some(cs) = self.graph.locate_hint(c, s.seg) else {
                continue;
            };
            if !matches!(self.graph.state(cs), TaskState::Waiting | TaskState::Ready) {
                continue;
            }
            needed = true;
            if !self.awaiting.contains(&c) && !self.only_for_awaiting(cs, depth + 1) {
                return false;
            }
        }
        needed
    }

    /// Re-queues parked tasks (a worker registered).
    pub(super) fn unpark(&mut self) {
        for id in self.ready.take_parked() {
            if let Some(s) = self.graph.locate(id) {
                if self.graph.state(s) == TaskState::Ready {
                    self.ready.push(id, self.graph.seg(s).tasks[s.off].cpus);
                }
            }
        }
    }

    /// One scheduling round: places ready tasks while workers have room.
    pub(super) fn schedule(&mut self) {
        if self.workers.n_alive == 0 {
            return;
        }
        if self.ready.is_empty() {
            return;
        }
        self.counters.scheduler_rounds += 1;
        let traced = self.trace.as_mut().map(|t| t.round_begin());
        self.drain_queue(QueueRef::Light);
        for qi in 0..self.ready.n_heavy() {
            self.drain_queue(QueueRef::Heavy(qi));
        }
        if let (Some(t), Some(r)) = (self.trace.as_mut(), traced) {
            t.round_end(r);
        }
    }

    /// Places the head of queue `q` until it is empty or the head does not fit anywhere now.
    fn drain_queue(&mut self, q: QueueRef) {
        while let Some(id) = self.ready.front(q) {
            let Some(s) = self.graph.locate(id) else {
                self.ready.pop(q);
                continue;
            };
            if self.graph.state(s) != TaskState::Ready {
                self.ready.pop(q);
                continue;
            }
            match self.pick(s) {
                Pick::Worker(w, displaced) => {
                    if let (true, QueueRef::Heavy(qi)) = (displaced, q) {
                        // Its inputs' worker is full: `w` first takes a task whose inputs it
                        // holds, if one is queued (no input moves); the head waits for room.
                        if let Some((t, tw)) = self.near_task(qi, w) {
                            let flags = self.assign(t, tw, false);
                            self.pipeline(t, tw, flags);
                            continue;
                        }
                    }
                    self.ready.pop(q);
                    let flags = self.assign(s, w, false);
                    self.pipeline(s, w, flags);
                    if matches!(q, QueueRef::Light) && self.trace.is_none() {
                        self.place_light_run();
                    }
                }
                Pick::Full => break,
                Pick::Nobody => {
                    self.ready.pop(q);
                    self.ready.park(id);
                }
            }
        }
    }

    /// A ready task of heavy queue `qi` whose first input worker `w` holds (queued behind the
    /// head, whose inputs are on a full worker), with the worker [`Server::pick`] chooses for it
    /// (`w` unless another with room holds more of its inputs). None if there is none or it
    /// fits nowhere now. The queue's entries are sorted by their first input's worker lazily,
    /// each once (O(1) per task).
    #[inline(never)]
    fn near_task(&mut self, qi: usize, w: WorkerIdx) -> Option<(Slot, WorkerIdx)> {
        loop {
            if let Some(id) = self.ready.near_front(qi, w.index()) {
                let ready = self
                    .graph
                    .locate(id)
                    .filter(|&t| self.graph.state(t) == TaskState::Ready);
                let Some(t) = ready else {
                    self.ready.pop_near(qi, w.index());
                    continue;
                };
                return match self.pick(t) {
                    Pick::Worker(tw, _) => {
                        self.ready.pop_near(qi, w.index());
                        Some((t, tw))
                    }
                    Pick::Full | Pick::Nobody => None,
                };
            }
            let id = self.ready.next_unsorted(qi)?;
            let Some(t) = self.graph.locate(id) else {
                continue;
            };
            if self.graph.state(t) != TaskState::Ready {
                continue;
            }
            let Some(&x) = self.graph.inputs_of(t).first() else {
                continue;
            };
            let Some(xs) = self.graph.locate_hint(x, t.seg) else {
                continue;
            };
            if let Some(p) = self.graph.seg(xs).tasks[xs.off].wk {
                // The list's stale head goes first (placed from the queue's head meanwhile),
                // so lists of workers that never look stay short.
                while let Some(f) = self.ready.near_front(qi, p.index()) {
                    if self.graph.state_of(f) == Some(TaskState::Ready) {
                        break;
                    }
                    self.ready.pop_near(qi, p.index());
                }
                self.ready.push_near(qi, p.index(), id);
            }
        }
    }

    /// Places the light tasks at the head of the light queue in one pass (no trace): each on the
    /// worker the placement rule chooses ([`Server::choose`], as [`Server::pick`] does; a light
    /// task needs no cpus, and has no inputs here with more than one worker), placed by
    /// [`Server::place_light`].
    /// Tasks with inputs go on only with one connected worker (with more, `pick` weighs where
    /// their inputs are). Stops at the first task that is not plain (loaded from a checkpoint,
    /// rewritten by an expansion, in a plan with checkpoints), that no worker runs, or that no
    /// worker has room for: [`Server::drain_queue`] places, parks or keeps it one by one, as
    /// before. Stale entries are dropped as there.
    fn place_light_run(&mut self) {
        let single = self.workers.n_alive == 1;
        // The queue's entries are read in place from its head; those placed or stale are
        // dropped at the end, all at once (the queue does not change meanwhile: placing and
        // pipelining queue nothing).
        let mut taken = 0;
        while let Some(id) = self.ready.light_at(taken) {
            let Some(s) = self.graph.locate(id) else {
                taken += 1;
                continue;
            };
            let seg = &mut self.graph.segs[s.seg];
            let plain = seg.checkpoints.is_empty() && (single || seg.input_range(s.off).is_empty());
            let t = &mut seg.tasks[s.off];
            if t.state != TaskState::Ready {
                taken += 1;
                continue;
            }
            if !plain || t.flags.has(TaskFlags::LOAD) || t.flags.has(TaskFlags::OVERRIDE) {
                break;
            }
            let (ty, flags) = (t.ttype, t.flags);
            // The placement rule (a light task needs no cpus; with one worker its inputs are
            // there, with more it has none).
            let Some(w) = self.choose(s, Some(ty), 0, Queueing::Plain, None).best else {
                break;
            };
            taken += 1;
            self.place_light(s, w, TaskState::Ready);
            self.pipeline(s, w, flags);
        }
        self.ready.drop_light(taken);
    }

    /// Whether task `s`, a light task, may be placed by [`Server::place_light`]: it is sent
    /// as planned (no checkpoint to load, no expansion's rewrite), its plan has no checkpoints
    /// (its TASK names no path) and nothing is traced (its TASK is not marked).
    #[inline(always)]
    fn plain_light(&self, s: Slot) -> bool {
        let seg = &self.graph.segs[s.seg];
        let f = seg.tasks[s.off].flags;
        self.trace.is_none()
            && seg.checkpoints.is_empty()
            && !f.has(TaskFlags::LOAD)
            && !f.has(TaskFlags::OVERRIDE)
    }

    /// Places light task `s` (0 cpus; [`Server::plain_light`]), now in state `from` (Ready, or
    /// Waiting when pipelined: then sent early, see [`TaskFlags::EARLY`]), on worker `w`, whose
    /// inputs are there or computed there: Running on `w`, its segment's and label group's
    /// state counts, the assignment counter, `w`'s light and task counts, its TASK frame. The
    /// one placement of a light plain task, for the light run and [`Server::assign`] (the
    /// pipelining walk's). Returns its flags (for [`Server::pipeline`]).
    #[inline(always)]
    fn place_light(&mut self, s: Slot, w: WorkerIdx, from: TaskState) -> TaskFlags {
        let seg = &mut self.graph.segs[s.seg];
        let t = &mut seg.tasks[s.off];
        debug_assert!(t.cpus == 0 && t.state == from);
        t.state = TaskState::Running;
        t.wk = Some(w);
        t.flags.remove(TaskFlags::EARLY);
        if from == TaskState::Waiting {
            t.flags.insert(TaskFlags::EARLY);
        }
        let (ty, flags) = (t.ttype, t.flags);
        seg.counts.moved(from, TaskState::Running);
        if let Some(g) = seg.groups.as_deref_mut() {
            g.moved(s.off, from, TaskState::Running);
        }
        self.counters.assigned += 1;
        let seg = &self.graph.segs[s.seg];
        let wk = &mut self.workers[w];
        wk.light += 1;
        wk.tasks += 1;
        wire::push_task(
            &mut wk.out,
            seg.id(s.off),
            ty,
            seg.config(s.off),
            seg.inputs(s.off),
            0,
            "",
        );
        flags
    }

    /// The task type a task runs as (`array/make` once an expansion rewrote it).
    #[inline]
    fn type_of(&self, s: Slot) -> i32 {
        let seg = self.graph.seg(s);
        if seg.tasks[s.off].flags.has(TaskFlags::OVERRIDE) {
            self.sym.array_make
        } else {
            seg.tasks[s.off].ttype
        }
    }

    /// Chooses a worker: among those that registered the task type (any worker for a
    /// checkpoint load), have enough cpus in total
    /// and room now (see [`super::workers::Worker::has_room`]), the one holding the most input
    /// bytes; ties go to the least loaded.
    #[inline(always)]
    fn pick(&mut self, s: Slot) -> Pick {
        // Any worker can load a checkpoint (it is a file, whatever the task's type).
        let ty =
            (!self.graph.seg(s).tasks[s.off].flags.has(TaskFlags::LOAD)).then(|| self.type_of(s));
        let c = self.graph.seg(s).tasks[s.off].cpus;
        let mut scores = Vec::new();
        // Locality only matters with a choice of workers.
        let multi = self.workers.n_alive > 1 && !self.graph.inputs_of(s).is_empty();
        if multi {
            scores = std::mem::take(&mut self.scratch.score);
            let inputs = self.graph.inputs_of(s);
            // Extra copies are rare: no hash lookup per input while there are none.
            let extra_copies = !self.moves.extra_owners.is_empty();
            for &x in inputs {
                if let Some(xs) = self.graph.locate_hint(x, s.seg) {
                    let xseg = self.graph.seg(xs);
                    let size = xseg.size[xs.off].max(1);
                    if let Some(p) = xseg.tasks[xs.off].wk {
                        scores[p.index()] += size;
                    }
                    if extra_copies {
                        for o in self.moves.extra_owners.values(x) {
                            scores[o.index()] += size;
                        }
                    }
                }
            }
        }
        let queueing = if c == 1 && ty == Some(self.sym.js_call) {
            Queueing::Pooled
        } else if ty == Some(self.sym.run) {
            Queueing::Program
        } else {
            Queueing::Plain
        };
        let choice = self.choose(s, ty, c, queueing, multi.then_some(&scores[..]));
        if multi {
            scores.iter_mut().for_each(|s| *s = 0);
            self.scratch.score = scores;
        }
        match choice {
            Choice {
                best: Some(w),
                displaced,
                ..
            } => Pick::Worker(w, displaced),
            Choice { any: true, .. } => Pick::Full,
            _ => Pick::Nobody,
        }
    }

    /// The placement rule, one for every task (see `docs/scheduler.md`): among `candidates` —
    /// the connected workers that run the task's type `ty` (any for a checkpoint load) and have
    /// its `c` cpus — those with room for it now ([`super::workers::Worker::has_room`]); of them
    /// the one holding the most of its input bytes (`scores`, by worker index; None: no inputs
    /// or no choice), then the least loaded per cpu, the first on ties. An input-less light task
    /// goes next to a placed sibling instead, within a bound (see [`Server::with_sibling`]).
    #[inline(always)]
    fn choose(
        &self,
        s: Slot,
        ty: Option<i32>,
        c: u16,
        queueing: Queueing,
        scores: Option<&[u64]>,
    ) -> Choice {
        let can_run = |w: &Worker| w.alive && ty.is_none_or(|ty| w.runs(ty)) && w.cpus >= c as u32;
        let list = self.workers.list.iter().as_slice();
        if let [w] = list {
            // One worker (the usual test and single-machine case): it, if it can and has room.
            let any = can_run(w);
            return Choice {
                best: (any && w.has_room(c as u32, queueing)).then(|| WorkerIdx::from_index(0)),
                any,
                displaced: false,
            };
        }
        let mut any = false;
        // The most input bytes a candidate holds, room or not.
        let mut top = 0;
        // The best so far (position), its score, and its load (u64::MAX until a second choice
        // needs it).
        let (mut best, mut bs, mut bl) = (None, 0, u64::MAX);
        let mut choices = 0u32;
        for (wi, w) in list.iter().enumerate() {
            if !can_run(w) {
                continue;
            }
            any = true;
            let score = match scores {
                Some(sc) => sc[wi],
                None => 0,
            };
            top = top.max(score);
            if !w.has_room(c as u32, queueing) {
                continue;
            }
            choices += 1;
            match best {
                None => (best, bs) = (Some(wi), score),
                Some(bw) => {
                    if bl == u64::MAX {
                        bl = list[bw].load();
                    }
                    let load = w.load();
                    if score > bs || (score == bs && load < bl) {
                        (best, bs, bl) = (Some(wi), score, load);
                    }
                }
            }
        }
        let Some(w) = best.map(WorkerIdx::from_index) else {
            return Choice {
                best: None,
                any,
                displaced: false,
            };
        };
        let w = if c == 0 && scores.is_none() && choices > 1 {
            self.with_sibling(s, w, |wk| {
                ty.is_none_or(|ty| wk.runs(ty)) && wk.light < LIGHT_CAP
            })
        } else {
            w
        };
        Choice {
            best: Some(w),
            any,
            displaced: bs < top,
        }
    }

    /// Where an input-less light task `s` goes instead of the least loaded worker `least`: to the
    /// worker of a sibling — another input of its first consumer, placed already — if `fits`
    /// that worker and its load is at most [`SIBLING_SLACK`] above `least`'s. Producers of one
    /// consumer then meet on one worker, which pipelines the consumer there and moves no input
    /// (e.g. the two consts of each merge: alternating, every merge crossed workers).
    #[inline]
    fn with_sibling(&self, s: Slot, least: WorkerIdx, fits: impl Fn(&Worker) -> bool) -> WorkerIdx {
        let Some(sw) = self.sibling_worker(s) else {
            return least;
        };
        let wk = &self.workers[sw];
        if sw != least
            && wk.alive
            && wk.load() <= self.workers[least].load() + SIBLING_SLACK
            && fits(wk)
        {
            sw
        } else {
            least
        }
    }

    /// The worker of a placed (running or finished) sibling of task `s`: another input of its
    /// first consumer in its plan, if that consumer has at most [`MAX_PIPELINE_INPUTS`] inputs.
    fn sibling_worker(&self, s: Slot) -> Option<WorkerIdx> {
        let seg = self.graph.seg(s);
        let &c = seg.consumers(s.off).first()?;
        let cs = self.graph.locate_hint(c, s.seg)?;
        let inputs = self.graph.inputs_of(cs);
        if inputs.len() > MAX_PIPELINE_INPUTS {
            return None;
        }
        let id = seg.id(s.off);
        inputs.iter().filter(|&&x| x != id).find_map(|&x| {
            let xs = self.graph.locate_hint(x, cs.seg)?;
            let t = &self.graph.seg(xs).tasks[xs.off];
            match t.state {
                TaskState::Running | TaskState::Finished => t.wk,
                _ => None,
            }
        })
    }

    /// Sends a task to worker `w`, with the SENDs of missing inputs; `early`: before its
    /// inputs finished (pipelining, see [`TaskFlags::EARLY`]; the task is Waiting, else
    /// Ready). A light plain task is placed by [`Server::place_light`], as in a light run.
    /// Returns its flags (for [`Server::pipeline`]).
    #[inline(always)]
    fn assign(&mut self, s: Slot, w: WorkerIdx, early: bool) -> TaskFlags {
        // A task sent early has every input on `w` or computed there ([`Server::can_pipeline`]):
        // nothing to send.
        if self.workers.n_alive > 1 && !early {
            // The SENDs go to the inputs' workers (never to `w`): first, so that the task's
            // record and `w` are then borrowed once each.
            let n_in = self.graph.inputs_of(s).len();
            if n_in > GATHER_RESERVE_FROM {
                self.moves.in_flight.reserve(n_in);
            }
            for k in 0..n_in {
                let x = self.graph.inputs_of(s)[k];
                self.ensure_on(x, w);
            }
        }
        // (The same placement as a light run's: one mechanism for the light plain task.)
        if self.graph.segs[s.seg].tasks[s.off].cpus == 0 && self.plain_light(s) {
            let from = if early {
                TaskState::Waiting
            } else {
                TaskState::Ready
            };
            return self.place_light(s, w, from);
        }
        // The segment and the worker borrowed once each (one bounds check each).
        let seg = &mut self.graph.segs[s.seg];
        let wk = &mut self.workers[w];
        let id = seg.id(s.off);
        seg.set_state(s.off, TaskState::Running);
        let t = &mut seg.tasks[s.off];
        t.wk = Some(w);
        t.flags.remove(TaskFlags::EARLY);
        if early {
            t.flags.insert(TaskFlags::EARLY);
        }
        let (c, flags, ty) = (t.cpus, t.flags, t.ttype);
        self.counters.assigned += 1;
        let traced = self.trace.is_some() && self.trace_client == Some(seg.client);
        if traced {
            if let Some(t) = self.trace.as_mut() {
                t.scheduled(id.get(), w.index() as u64);
            }
        }
        wk.book(c);
        let out = &mut wk.out;
        let frame = out.len();
        let checkpoint = seg.checkpoint(s.off).unwrap_or("");
        if flags.has(TaskFlags::LOAD) {
            wire::push_load_checkpoint(out, id, checkpoint);
        } else if flags.has(TaskFlags::OVERRIDE) {
            // `TaskGraph::inputs_of` a rewritten task: the expansion's copies.
            let inputs = self
                .graph
                .overrides
                .get(&id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            wire::push_task(out, id, self.sym.array_make, &[], inputs, 0, checkpoint);
        } else {
            let (cfg, inputs) = (seg.config(s.off), seg.inputs(s.off));
            wire::push_task(out, id, ty, cfg, inputs, c as u32, checkpoint);
        }
        if traced {
            wire::mark_traced(out, frame);
        }
        flags
    }

    /// Pipelining: after a task went to worker `w`, its light consumers whose inputs are all
    /// on `w` already or being computed there are sent to `w` too, at once, and so on down the
    /// graph. The worker starts each as soon as its inputs are published locally, so a chain
    /// costs no round trip to the server per task. Consumers with many inputs (e.g. one array
    /// over a million tasks) are left to the normal path, keeping this O(1) per edge: the
    /// consumers of a task are looked at only if it has a narrow one
    /// ([`TaskFlags::NARROW_CONSUMER`], marked while planning; `flags` are `s`'s).
    #[inline(always)]
    fn pipeline(&mut self, s: Slot, w: WorkerIdx, flags: TaskFlags) {
        // The light cap is checked where the worker's light count changes (an assignment).
        if flags.has(TaskFlags::NARROW_CONSUMER) && self.workers[w].light < LIGHT_CAP {
            match self.first_step(s) {
                FirstStep::Waits => {}
                FirstStep::One(c) => self.pipeline_one(c, w),
                FirstStep::Walk => self.pipeline_walk(s, w),
            }
        }
    }

    /// How [`Server::pipeline`] starts from `s` ([`Server::sole_consumer`]). Tests may turn
    /// the shortcuts off ([`ALWAYS_WALK`]: every start is the walk) to check they change
    /// nothing.
    #[inline(always)]
    fn first_step(&self, s: Slot) -> FirstStep {
        #[cfg(test)]
        if ALWAYS_WALK.get() {
            return FirstStep::Walk;
        }
        let step = self.sole_consumer(s);
        #[cfg(test)]
        {
            SKIPPED.set(SKIPPED.get() + matches!(step, FirstStep::Waits) as u64);
            FIRST_STEPS.set(FIRST_STEPS.get() + matches!(step, FirstStep::One(_)) as u64);
        }
        step
    }

    /// Whether task `s` has one consumer in its segment, and if so, whether that consumer's
    /// last input is a task of the segment that is not placed (neither running nor finished):
    /// then [`Server::can_pipeline`] rejects the consumer on any worker, so the walk is not
    /// made (W1's first const of each merge; the first check `can_pipeline` makes, without the
    /// call); else the walk's first step is that one consumer, found here (W1's second const).
    /// [`FirstStep::Walk`] if anything else is the case.
    #[inline(always)]
    fn sole_consumer(&self, s: Slot) -> FirstStep {
        let seg = &self.graph.segs[s.seg];
        let &[c] = seg.consumers(s.off) else {
            return FirstStep::Walk;
        };
        let Some(c) = seg.offset_of(c) else {
            return FirstStep::Walk;
        };
        let Some(&x) = seg.inputs(c).last() else {
            return FirstStep::Walk;
        };
        match seg.offset_of(x) {
            Some(xo) if !seg.tasks[xo].state.is_placed() => FirstStep::Waits,
            _ => FirstStep::One(Slot { seg: s.seg, off: c }),
        }
    }

    /// The walk of [`Server::pipeline`] from a task whose one consumer is `c` (see
    /// [`Server::sole_consumer`]): `c` is pipelined to `w` if it can be, then the walk goes on
    /// from it, as [`Server::pipeline_walk`] from its producer would (out of line, as the walk).
    #[inline(never)]
    fn pipeline_one(&mut self, c: Slot, w: WorkerIdx) {
        if self.can_pipeline(c, w) {
            let flags = self.assign(c, w, true);
            if flags.has(TaskFlags::NARROW_CONSUMER) && self.workers[w].light < LIGHT_CAP {
                self.pipeline_walk(c, w);
            }
        }
    }

    /// The walk of [`Server::pipeline`] from `s`, placed on `w`, which has room for a light
    /// task and a narrow consumer (out of line: the usual task has none).
    #[inline(never)]
    fn pipeline_walk(&mut self, s: Slot, w: WorkerIdx) {
        let mut range = self.graph.seg(s).cons_range(s.off);
        // The pipelined tasks that have consumers themselves are walked last in, first out:
        // the last one in `next`, earlier ones in the work list (empty between calls, kept for
        // its capacity; a chain never uses it). A task's own consumers are looked at without it
        // (most have none pipelined, or no consumers).
        let mut p = s;
        // (with its consumers' range)
        let mut next: Option<(Slot, std::ops::Range<usize>)> = None;
        loop {
            for k in range {
                let c = self.graph.segs[p.seg].cons[k];
                let Some(cs) = self.graph.locate_hint(c, p.seg) else {
                    continue;
                };
                if self.can_pipeline(cs, w) {
                    let flags = self.assign(cs, w, true);
                    if flags.has(TaskFlags::NARROW_CONSUMER) {
                        let r = self.graph.seg(cs).cons_range(cs.off);
                        if let Some((earlier, _)) = next.replace((cs, r)) {
                            self.scratch.pipeline.push(earlier);
                        }
                    }
                    if self.workers[w].light >= LIGHT_CAP {
                        self.scratch.pipeline.clear();
                        return;
                    }
                }
            }
            (p, range) = match next.take() {
                Some(n) => n,
                None => match self.scratch.pipeline.pop() {
                    Some(n) => (n, self.graph.seg(n).cons_range(n.off)),
                    None => return,
                },
            };
        }
    }

    /// Whether a waiting task may be sent to `w` before its inputs finished.
    #[inline(always)]
    fn can_pipeline(&self, s: Slot, w: WorkerIdx) -> bool {
        let seg = self.graph.seg(s);
        let t = &seg.tasks[s.off];
        let r = seg.input_range(s.off);
        // Consumers with many inputs (an array over all results) are rejected first.
        if r.len() > MAX_PIPELINE_INPUTS || t.state != TaskState::Waiting {
            return false;
        }
        // Then the inputs (the usual reason to wait: a sibling not placed yet), then the rest.
        // `TaskGraph::inputs_of` without its override case (rejected below whatever its
        // inputs): a checkpoint load needs none, any other task its plan's inputs.
        let inputs = if t.flags.has(TaskFlags::LOAD) {
            &[][..]
        } else {
            seg.inputs(s.off)
        };
        // (Placed on `w`: an input not placed at all, `TaskState::is_placed`, is not.)
        let placed = |xt: &super::segment::Task, x: TaskId| match xt.state {
            TaskState::Running => xt.wk == Some(w),
            TaskState::Finished => xt.wk == Some(w) || self.moves.has_copy(x, w),
            _ => false,
        };
        // The last input is the likeliest not to be placed yet (queues are in id order).
        for &x in inputs.iter().rev() {
            let here = match seg.offset_of(x) {
                // Most inputs are in the consumer's own segment (one lookup fewer).
                Some(off) => placed(&seg.tasks[off], x),
                None => self
                    .graph
                    .locate(x)
                    .is_some_and(|xs| placed(&self.graph.seg(xs).tasks[xs.off], x)),
            };
            if !here {
                return false;
            }
        }
        t.cpus == 0
            && !t.flags.has(TaskFlags::OVERRIDE)
            && !self.sym.is_expansion(t.ttype)
            && self.workers[w].runs(t.ttype)
            && (self.awaiting.is_empty() || !self.awaiting.contains(&seg.id(s.off)))
    }

    /// Makes sure data `x` is on worker `w` or on its way there.
    fn ensure_on(&mut self, x: TaskId, w: WorkerIdx) {
        let Some(s) = self.graph.locate(x) else {
            return;
        };
        let Some(p) = self.graph.seg(s).tasks[s.off].wk else {
            return;
        };
        if p == w || self.moves.has_copy(x, w) || self.moves.is_sending_to(x, w) {
            return;
        }
        // `p`'s buffer taken for the write, so that `w`'s address is read in place (no copy
        // of it per SEND).
        let mut out = std::mem::take(&mut self.workers[p].out);
        wire::push_send(&mut out, x, &self.workers[w].addr);
        self.workers[p].out = out;
        self.moves.start(x, w, p);
        self.counters.transfers += 1;
    }
}
