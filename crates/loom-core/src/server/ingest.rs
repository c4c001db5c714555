//! A plan arrives: whole-plan validation, then insertion as one [`Segment`] and backward
//! planning from the result tasks. On error nothing is changed.

use crate::journal::Record;
use crate::proto::scan::Scanner;

use super::clients::PlanRange;
use super::counters::LabelGroups;
use super::ids::{ClientIdx, TaskId};
use super::plan_scan::{malformed, plan_err, scan_header, scan_task, Culprit, PlanError};
use super::segment::{Segment, Task, TaskFlags, TaskState, MAX_PIPELINE_INPUTS};
use super::usual_tasks::{too_many_tasks, usual_tasks, IdMap, RunEnd, RUN_ROOM};
use super::Server;

impl Server {
    /// Validates and inserts a plan of client `ci`; `load`: the request's `load_checkpoints`
    /// (tasks whose checkpoint file exists are loaded, not computed). On error nothing is
    /// changed.
    pub(super) fn ingest_plan(
        &mut self,
        ci: ClientIdx,
        plan: &[u8],
        load: bool,
    ) -> Result<(), PlanError> {
        let started = std::time::Instant::now();
        let header = scan_header(plan, self.sym.cpus)?;
        let base = header
            .id_base
            .ok_or_else(|| plan_err("id_base is missing"))?;
        let n = header.n;
        let next_base = self.clients[ci].next_base;
        if base < next_base {
            return Err(plan_err(format!(
                "id_base {base} overlaps an earlier plan (next free id is {next_base})"
            )));
        }
        if base + n as i64 > i32::MAX as i64 || plan.len() > u32::MAX as usize {
            return Err(plan_err("plan too large"));
        }
        let ibase = self.graph.next_id();
        if ibase.get() as i64 + n as i64 > i32::MAX as i64 {
            return Err(plan_err("internal task id space exhausted"));
        }
        let map = IdMap {
            base: base as i32,
            ibase,
            n,
        };
        let (mut seg, labels, shape, uses) = self.fill_segment(ci, plan, &header.requests, map)?;
        let forward = shape.forward;
        // The whole-plan checks read consumers (and with forward references the one forward
        // pass cannot link them); otherwise `commit` links them in its forward pass.
        let linked = forward || shape.expansions;
        if linked {
            seg.link_consumers();
        }
        let label_of = |off: usize| -> String {
            labels
                .binary_search_by_key(&(off as u32), |l| l.0)
                .map(|k| String::from_utf8_lossy(labels[k].1).into_owned())
                .unwrap_or_default()
        };
        if let Err((off, cause)) = self.check_shape(&seg, shape) {
            return Err(PlanError {
                task: Some(Culprit {
                    id: map.base + off as i32,
                    label: label_of(off),
                }),
                cause,
            });
        }
        // ---- Accepted: commit. ----
        self.graph.alloc_ids(n).expect("checked above");
        let client = &mut self.clients[ci];
        client.next_base = base + n as i64;
        client.ranges.push(PlanRange {
            client_base: map.base,
            n: n as u32,
            base: ibase,
        });
        let no = self.counters.plan_accepted(ci, map.base, n as u32);
        seg.plan = no;
        if !labels.is_empty() {
            seg.groups = Some(Box::new(LabelGroups::new(n, TaskState::Unplanned, &labels)));
        }
        for (off, l) in labels {
            let label = String::from_utf8_lossy(l).into_owned().into_boxed_str();
            self.graph.labels.insert(ibase.plus(off as usize), label);
        }
        if let Some(token) = self.journaled_session(ci) {
            self.journal(|| Record::Plan {
                token,
                ibase: ibase.get(),
                client_base: map.base,
                n: n as u32,
                uses,
                load,
                bytes: plan.to_vec(),
            });
        }
        seg.plain = !shape.expansions && seg.groups.is_none();
        self.commit(seg, load, shape, linked);
        self.counters
            .ingest_done(no, started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Pass 2: fills the segment's columns, checks each task and resolves its inputs to
    /// internal ids. Returns the segment (consumers counted, not linked), the labels (offset,
    /// bytes), what the whole-plan checks need to look at and the client bases of the earlier
    /// plans it uses (for the journal's compaction).
    #[allow(clippy::type_complexity)]
    fn fill_segment<'p>(
        &self,
        ci: ClientIdx,
        plan: &'p [u8],
        requests: &[Result<u16, String>],
        map: IdMap,
    ) -> Result<(Segment, Vec<(u32, &'p [u8])>, PlanShape, Vec<i32>), PlanError> {
        let n = map.n;
        let max_cpus = self.workers.plan_cpus_limit();
        let mut seg = Segment::with_columns(map.ibase, n, ci, Some(map.base), TaskState::Unplanned);
        // With the room `usual_tasks` makes for a chunk of tasks past the last one.
        seg.arena.reserve(n + RUN_ROOM.0);
        seg.inputs.reserve(n + n / 2 + RUN_ROOM.1);
        seg.cfg_off.push(0);
        seg.in_off.push(0);
        // In-plan consumers per task, counted as inputs are read (see `link_consumers`).
        seg.cons_off = vec![0; n + 1];
        let mut labels: Vec<(u32, &[u8])> = Vec::new();
        // Some in-plan input later than its consumer: the sign bit (see `resolve_inputs`).
        let mut forward = 0i32;
        let mut expansions = false;
        let mut earlier = false;
        let mut uses: Vec<i32> = Vec::new();
        // Task types a task may name on the fast path: known and not dslice/dget.
        // (The fast reader takes types under 128 only.)
        let mut plain_type = [false; 128];
        for (t, &known) in self.known_type.iter().enumerate().take(128) {
            plain_type[t] = known && !self.sym.is_expansion(t as i32);
        }
        let mut r = Scanner::new(plan);
        loop {
            // The usual tasks, as many as come (most plans: all of them).
            let (end, at) = usual_tasks(&mut seg, plan, r.pos(), map, &plain_type)?;
            let i = seg.tasks.len();
            r = Scanner::at(plan, at);
            if let RunEnd::Raw(first) = end {
                let own = map.base + i as i32 - 1;
                self.resolve_inputs(
                    ci,
                    &mut seg,
                    first,
                    own,
                    map,
                    &mut forward,
                    &mut earlier,
                    &mut uses,
                )
                .map_err(|cause| PlanError {
                    task: Some(Culprit {
                        id: own,
                        label: String::new(),
                    }),
                    cause,
                })?;
                continue;
            }
            if r.done() {
                break;
            }
            // Anything else: read whole by the generic reader.
            let body = match r.take_short(2 << 3 | 2) {
                Some(b) => b,
                None => {
                    let (f, wt) = r.key().map_err(malformed)?;
                    if f != 2 {
                        r.skip(wt).map_err(malformed)?;
                        continue;
                    }
                    r.bytes_of(wt).map_err(malformed)?
                }
            };
            if i == n {
                return Err(too_many_tasks());
            }
            let first_input = seg.inputs.len();
            let own = map.base + i as i32;
            let t = scan_task(body, &mut seg.inputs).map_err(malformed)?;
            let err = |cause: String| PlanError {
                task: Some(Culprit {
                    id: own,
                    label: t
                        .label
                        .map(|l| String::from_utf8_lossy(l).into_owned())
                        .unwrap_or_default(),
                }),
                cause,
            };
            if !t.config.is_empty() {
                seg.arena.extend_from_slice(t.config);
            }
            seg.cfg_off.push(seg.arena.len() as u32);
            seg.in_off.push(seg.inputs.len() as u32);
            if let Some(l) = t.label {
                labels.push((i as u32, l));
            }
            let ty = t.ttype;
            if ty < 0 || !self.known_type.get(ty as usize).copied().unwrap_or(false) {
                return Err(err(format!("unknown task type {ty}")));
            }
            expansions |= self.sym.is_expansion(ty);
            let mut task = Task::new(TaskState::Unplanned, ty);
            if t.result {
                task.flags = TaskFlags::RESULT;
            }
            if t.rr != -1 {
                task.cpus = resource(requests, t.rr, max_cpus).map_err(err)?;
            }
            seg.tasks.push(task);
            if !t.checkpoint.is_empty() {
                let path = checkpoint_path(t.checkpoint).map_err(err)?;
                seg.checkpoints.push((i as u32, path));
            }
            self.resolve_inputs(
                ci,
                &mut seg,
                first_input,
                own,
                map,
                &mut forward,
                &mut earlier,
                &mut uses,
            )
            .map_err(err)?;
        }
        debug_assert_eq!(
            seg.tasks.len(),
            n,
            "a Task record per task of the header's count"
        );
        if seg.inputs.capacity() > seg.inputs.len() + seg.inputs.len() / 4 + 16 {
            seg.inputs.shrink_to_fit();
        }
        seg.arena.shrink_to_fit();
        let shape = PlanShape {
            forward: forward < 0,
            expansions,
            earlier,
        };
        Ok((seg, labels, shape, uses))
    }

    /// Resolves the inputs of task `own` (client id), `seg.inputs[first..]` as on the wire, to
    /// internal ids in place, counting in-plan consumers (`cons_off[d + 1]`), noting forward
    /// references and the earlier plans used; an input from an earlier plan sets `earlier`
    /// and, if unfinished, counts in the task's `waiting` (see [`plan_forward`]). Err: the
    /// cause (the task's culprit). Out of line: the usual tasks' inputs are mostly resolved
    /// as they are read (`usual_tasks`).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn resolve_inputs(
        &self,
        ci: ClientIdx,
        seg: &mut Segment,
        first: usize,
        own: i32,
        map: IdMap,
        forward: &mut i32,
        earlier: &mut bool,
        uses: &mut Vec<i32>,
    ) -> Result<(), String> {
        let n = map.n;
        // First the inputs that are earlier tasks of the plan (most inputs of most tasks, e.g.
        // a reduction's many): nothing to check but the range, one count each.
        let below = own.wrapping_sub(map.base) as u32;
        let ins = &mut seg.inputs[first..];
        let counts = &mut seg.cons_off[..(below as usize + 1).min(n + 1)];
        let mut k = 0;
        while let Some(input) = ins.get_mut(k) {
            let d = input.get().wrapping_sub(map.base) as u32;
            if d >= below {
                break;
            }
            *input = map.ibase.plus(d as usize);
            counts[d as usize + 1] += 1;
            k += 1;
        }
        for input in &mut seg.inputs[first + k..] {
            let cid = input.get();
            let d = cid.wrapping_sub(map.base) as u32;
            if (d as usize) < n {
                if cid == own {
                    return Err("task depends on itself".into());
                }
                // `own - cid` is negative for a later task (both ids in the plan's range).
                *forward |= own.wrapping_sub(cid);
                *input = map.ibase.plus(d as usize);
                seg.cons_off[d as usize + 1] += 1;
                continue;
            }
            *input = self.earlier_input(ci, cid)?;
            // Counted now (the usual plan's pass plans from it, see `plan_forward`).
            let unfinished = self.graph.state_of(*input) != Some(TaskState::Finished);
            seg.tasks[below as usize].waiting += unfinished as u32;
            *earlier = true;
            if let Some(b) = self.clients[ci].plan_base(cid) {
                if !uses.contains(&b) {
                    uses.push(b);
                }
            }
        }
        Ok(())
    }

    /// Resolves input `cid` from an earlier plan of client `ci`: it must be a result the client
    /// holds (a future), planned and not freed, failed, or a dslice/dget.
    fn earlier_input(&self, ci: ClientIdx, cid: i32) -> Result<TaskId, String> {
        let Some(x) = self.clients[ci].resolve(cid) else {
            return Err(format!("unknown input id {cid}"));
        };
        let s = self.graph.locate(x).expect("resolved id has a segment");
        let seg = self.graph.seg(s);
        match seg.tasks[s.off].state {
            TaskState::Unplanned => Err(format!(
                "input id {cid} was never computed (not reachable from a result)"
            )),
            TaskState::Freed => Err(format!("input id {cid} was released")),
            TaskState::Failed => Err(format!("input id {cid} failed")),
            _ if self.sym.is_expansion(seg.tasks[s.off].ttype) => Err(format!(
                "input id {cid} is a dslice/dget task of an earlier plan"
            )),
            // A client holds its results (futures) only: any other id is not one it may use
            // (e.g. a number that came from another connection).
            _ if !seg.tasks[s.off].flags.has(TaskFlags::RESULT) => Err(format!(
                "input id {cid} is not a result this client holds (a plan may only use its own client's futures)"
            )),
            _ => Ok(x),
        }
    }

    /// Whole-plan checks: dslice/dget shape (one input, not a result, exactly one consumer in
    /// this plan that is not itself a dslice/dget) and, with forward references, cycles
    /// (Kahn's algorithm over in-plan edges). Needs the consumers linked when `shape` has
    /// either. Err: (offset of a culprit, cause).
    fn check_shape(&self, seg: &Segment, shape: PlanShape) -> Result<(), (usize, String)> {
        let n = seg.n as usize;
        let expansions = if shape.expansions { 0..n } else { 0..0 };
        for t in expansions {
            if !self.sym.is_expansion(seg.tasks[t].ttype) {
                continue;
            }
            let cons = seg.consumers(t);
            if seg.inputs(t).len() != 1 {
                return Err((t, "dslice/dget needs exactly one input".into()));
            }
            if seg.tasks[t].flags.has(TaskFlags::RESULT) {
                return Err((t, "dslice/dget cannot be a result".into()));
            }
            if cons.len() != 1 {
                return Err((t, "dslice/dget needs exactly one consumer".into()));
            }
            if seg.checkpoint(t).is_some() {
                return Err((t, "dslice/dget cannot have a checkpoint".into()));
            }
            let c = seg.offset_of(cons[0]).expect("in-plan consumer");
            if self.sym.is_expansion(seg.tasks[c].ttype) {
                return Err((t, "dslice/dget consumed by a dslice/dget".into()));
            }
        }
        if !shape.forward {
            return Ok(());
        }
        let mut indeg: Vec<u32> = (0..n)
            .map(|t| {
                let ins = seg.inputs(t).iter();
                ins.filter(|&&x| seg.offset_of(x).is_some()).count() as u32
            })
            .collect();
        let mut stack: Vec<u32> = (0..n as u32).filter(|&t| indeg[t as usize] == 0).collect();
        let mut seen = 0usize;
        while let Some(t) = stack.pop() {
            seen += 1;
            for &c in seg.consumers(t as usize) {
                let c = seg.offset_of(c).expect("in-plan consumer");
                indeg[c] -= 1;
                if indeg[c] == 0 {
                    stack.push(c as u32);
                }
            }
        }
        if seen < n {
            let t = (0..n).find(|&t| indeg[t] > 0).expect("a task on a cycle");
            return Err((t, "dependency cycle".into()));
        }
        Ok(())
    }

    /// Inserts an accepted plan: what its results need becomes WAITING (with reference and
    /// waiting counts), edges to earlier plans are recorded, then the tasks with nothing to
    /// wait for become ready. `shape.forward`: some input refers to a later task of the plan
    /// (see [`Server::plan_walk`]).
    ///
    /// The usual plan (no forward reference, dslice/dget, label groups, checkpoints, reconnect
    /// grace or journal restore) in which every task is needed by a result is planned by the
    /// one pass that links its consumers ([`plan_forward`]); if some task turns out to be
    /// needed by no result, that pass is undone (its ready tasks taken back off the light
    /// queue) and the walk from the results plans it, as it plans every other plan.
    ///
    /// With `load` (spec 4.3 and 8): a task reached by the walk whose checkpoint file exists
    /// on the server's file system is marked [`TaskFlags::LOAD`] (a light task, loaded on any
    /// worker) and the walk does not continue through its inputs, so they are computed only
    /// if another planned task needs them.
    ///
    /// `linked`: the consumers are linked already (else they are linked here; there is no
    /// forward reference then).
    fn commit(&mut self, mut seg: Segment, load: bool, shape: PlanShape, linked: bool) {
        let n = seg.n as usize;
        let mut ext: Vec<(TaskId, TaskId)> = Vec::new(); // (earlier input, consumer) edges
                                                         // Set by the caller from the plan's shape (no dslice/dget, no label groups).
        let simple = seg.plain;
        if !linked {
            let usual = simple
                && seg.checkpoints.is_empty()
                && self.awaiting.is_empty()
                && self.restoring_released.is_empty();
            if !usual {
                plan_forward::<false>(&mut seg, &mut ext);
            } else {
                let done = plan_forward::<true>(&mut seg, &mut ext);
                if done.all_needed {
                    self.ready.extend_light(&done.light);
                    for &(id, cpus) in &done.heavy {
                        self.ready.push(id, cpus);
                    }
                    seg.live += n as u32;
                    seg.counts
                        .moved_n(TaskState::Unplanned, TaskState::Waiting, n as u32);
                    seg.counts
                        .moved_n(TaskState::Waiting, TaskState::Ready, done.readied);
                    seg.plain &= ext.is_empty();
                    // In the walk's order (the last consumer first), as for every plan: an
                    // earlier input's finish readies its consumers in this order.
                    ext.reverse();
                    self.link_earlier(&mut seg, &ext, false);
                    self.counters.segment_added(seg.plan);
                    let si = self.graph.push(seg);
                    self.trace_segment(si);
                    return;
                }
                // Some task is needed by no result: the pass's planning undone (its links
                // stay), the walk below plans the plan.
                ext.clear();
                for t in &mut seg.tasks {
                    (t.state, t.waiting, t.refc) = (TaskState::Unplanned, 0, 0);
                }
            }
        }
        if shape.earlier {
            // The counts of unfinished earlier inputs taken for `plan_forward`: the walk
            // counts them itself.
            for t in &mut seg.tasks {
                t.waiting = 0;
            }
        }
        let ready_light = self.plan_walk(&mut seg, load, shape.forward, &mut ext);
        // No edge to an earlier plan either.
        seg.plain &= ext.is_empty();
        self.link_earlier(&mut seg, &ext, true);
        // Reserve the ready queue once (rather than growing it by doubling).
        self.ready.reserve_light(ready_light);
        self.counters.segment_added(seg.plan);
        let si = self.graph.push(seg);
        self.trace_segment(si);
        if simple && self.awaiting.is_empty() {
            // No reconnect grace, no dslice/dget, no label groups: one pass over the task
            // records, the counts moved at the end.
            let seg = &mut self.graph.segs[si];
            let mut readied = 0;
            for (off, t) in seg.tasks.iter_mut().enumerate() {
                if t.state != TaskState::Waiting || t.waiting != 0 {
                    continue;
                }
                t.state = TaskState::Ready;
                readied += 1;
                self.ready.push(seg.base.plus(off), t.cpus);
            }
            seg.counts
                .moved_n(TaskState::Waiting, TaskState::Ready, readied);
            return;
        }
        for off in 0..n {
            let t = &self.graph.segs[si].tasks[off];
            if t.state == TaskState::Waiting && t.waiting == 0 {
                self.make_ready(super::ids::Slot { seg: si, off });
            }
        }
    }

    /// The edges `ext` (earlier input, consumer in `seg`) of a committed plan: each input is
    /// referenced once more and records its consumer; `count_waiting`: a consumer waits for
    /// an unfinished input here (else its waiting count has it already).
    fn link_earlier(&mut self, seg: &mut Segment, ext: &[(TaskId, TaskId)], count_waiting: bool) {
        for &(x, c) in ext {
            let s = self.graph.locate(x).expect("validated input");
            let xs = self.graph.seg_mut(s);
            xs.tasks[s.off].refc += 1;
            if count_waiting && xs.tasks[s.off].state != TaskState::Finished {
                let off = seg.offset_of(c).expect("own task");
                seg.tasks[off].waiting += 1;
            }
            // Recorded even for finished inputs: if the input is lost with a worker and
            // recomputed, its consumers must wait for it again.
            self.graph.add_extra_consumer(x, c);
        }
    }

    /// The walk of [`Server::commit`] from the results: marks what they need WAITING (live),
    /// counts in-plan references and waits, and collects the edges to earlier plans. Returns
    /// how many light tasks may become ready (at most), to size the ready queue. The
    /// consumers are linked.
    ///
    /// Without forward references every consumer comes after its inputs, so one pass from the
    /// last task to the first sees each task's consumers before the task; with them, a stack.
    fn plan_walk(
        &self,
        seg: &mut Segment,
        load: bool,
        forward: bool,
        ext: &mut Vec<(TaskId, TaskId)>,
    ) -> usize {
        let n = seg.n as usize;
        let mut walk = Walk {
            // Label groups count each task's moves: then every move goes through `set_state`.
            grouped: seg.groups.is_some(),
            forward,
            planned: 0,
            ready_light: 0,
            stack: Vec::new(),
        };
        if forward {
            for t in 0..n {
                if self.plan_result(seg, t, walk.grouped) {
                    walk.stack.push(t as u32);
                }
            }
            // Each task is pushed once: when it leaves UNPLANNED.
            while let Some(t) = walk.stack.pop() {
                self.plan_task(seg, t as usize, load, &mut walk, ext);
            }
        } else {
            for t in (0..n).rev() {
                let planned = self.plan_result(seg, t, walk.grouped)
                    || seg.tasks[t].state == TaskState::Waiting;
                if planned {
                    self.plan_task(seg, t, load, &mut walk, ext);
                }
            }
        }
        seg.live += walk.planned;
        if !walk.grouped {
            seg.counts
                .moved_n(TaskState::Unplanned, TaskState::Waiting, walk.planned);
        }
        walk.ready_light
    }

    /// Whether task `t` is a result to compute (then it is WAITING).
    #[inline(always)]
    fn plan_result(&self, seg: &mut Segment, t: usize, grouped: bool) -> bool {
        if !seg.tasks[t].flags.has(TaskFlags::RESULT) {
            return false;
        }
        if self.restored_release(seg.id(t)) {
            // Restoring a journal: released before the restart, and no later plan uses it.
            seg.tasks[t].flags.remove(TaskFlags::RESULT);
            return false;
        }
        if seg.tasks[t].state == TaskState::Unplanned {
            set_waiting(seg, t, grouped);
        }
        true
    }

    /// Plans task `t` (WAITING): its in-plan inputs become WAITING and referenced, its
    /// earlier-plan inputs go to `ext`; nothing when it is loaded from its checkpoint.
    #[inline(always)]
    fn plan_task(
        &self,
        seg: &mut Segment,
        t: usize,
        load: bool,
        walk: &mut Walk,
        ext: &mut Vec<(TaskId, TaskId)>,
    ) {
        walk.planned += 1;
        // After a restart, a checkpoint the journal says was written is loaded too.
        if !seg.checkpoints.is_empty()
            && seg.checkpoint(t).is_some_and(|p| {
                (load || self.restored_checkpoint(seg.id(t))) && std::path::Path::new(p).exists()
            })
        {
            seg.tasks[t].flags.insert(TaskFlags::LOAD);
            seg.tasks[t].cpus = 0;
            walk.ready_light += 1;
            return;
        }
        let mut waiting = 0;
        let id = seg.id(t);
        let r = seg.input_range(t);
        for k in r {
            let x = seg.inputs[k];
            if let Some(d) = seg.offset_of(x) {
                waiting += 1;
                seg.tasks[d].refc += 1;
                if seg.tasks[d].state == TaskState::Unplanned {
                    set_waiting(seg, d, walk.grouped);
                    if walk.forward {
                        walk.stack.push(d as u32);
                    }
                }
            } else {
                ext.push((x, id));
            }
        }
        let task = &mut seg.tasks[t];
        task.waiting += waiting;
        walk.ready_light += (waiting == 0 && task.cpus == 0) as usize;
    }
}

/// [`plan_forward`]'s edges from tasks of earlier plans (inputs not in `base..base + n`) to
/// their consumers, in the plan's order, appended to `ext`. Out of line: most plans have none.
#[cold]
#[inline(never)]
fn earlier_edges(
    in_off: &[u32],
    inputs: &[TaskId],
    base: TaskId,
    n: u32,
    ext: &mut Vec<(TaskId, TaskId)>,
) {
    for (t, w) in in_off.windows(2).enumerate() {
        for &x in &inputs[w[0] as usize..w[1] as usize] {
            if x.offset_in(base, n).is_none() {
                ext.push((x, base.plus(t)));
            }
        }
    }
}

/// [`plan_forward`]'s READY heavy tasks (id, cpus), in order. Out of line: most plans have
/// none.
#[cold]
#[inline(never)]
fn ready_heavy(tasks: &[Task], base: TaskId) -> Vec<(TaskId, u16)> {
    let ready = |t: &Task| t.state == TaskState::Ready && t.cpus != 0;
    let heavy = tasks.iter().enumerate().filter(|(_, t)| ready(t));
    heavy.map(|(off, t)| (base.plus(off), t.cpus)).collect()
}

/// What [`plan_forward`] did when it planned.
struct Forward {
    /// Every task is a result or an input of another task (so every task is needed by a
    /// result); else the pass's planning is to be undone.
    all_needed: bool,
    /// Tasks made READY.
    readied: u32,
    /// The light ones, in order, for the caller to queue.
    light: Vec<TaskId>,
    /// The others (id, cpus), in order.
    heavy: Vec<(TaskId, u16)>,
}

/// One pass from the first task to the last of a plan without forward references: links
/// the consumer index, whose counts `cons_off[d + 1]` were taken while reading the plan
/// (`cons_off[d + 1]` becomes d's fill position once every earlier task's consumers are
/// placed before it, each edge then takes that position and moves it on, which leaves
/// `cons_off[d + 1]` at d's end, the start of d + 1's: the CSR of
/// [`Segment::link_consumers`] in one pass over the inputs instead of two).
///
/// `PLAN` (the usual plan, see [`Server::commit`]): plans every task as it goes, assuming
/// every task is needed by a result (WAITING, referenced by its consumers, waiting for its
/// in-plan inputs and the unfinished earlier ones `Server::resolve_inputs` counted; READY
/// when it waits for none, returned for the caller to queue), collects the edges to earlier
/// plans in `ext`, and says whether the assumption held: a task that is neither a result
/// nor an input is needed by none.
///
/// The loop calls nothing (the rare heavy tasks and earlier-plan edges are collected after
/// it), so that its many values can stay in registers.
fn plan_forward<const PLAN: bool>(seg: &mut Segment, ext: &mut Vec<(TaskId, TaskId)>) -> Forward {
    let n = seg.n;
    let base = seg.base;
    let Segment {
        tasks,
        in_off,
        inputs,
        cons_off,
        cons,
        ..
    } = seg;
    let tasks = &mut tasks[..n as usize];
    let cons_off = &mut cons_off[..n as usize + 1];
    // The counts as read, to check in debug builds that the pass filled each task's places.
    #[cfg(debug_assertions)]
    let counts = cons_off.to_vec();
    // At most one consumer edge per input: the places, not zeroed first (every place below
    // the edges' count is written, see below).
    *cons = Vec::with_capacity(inputs.len());
    let places = &mut cons.spare_capacity_mut()[..inputs.len()];
    let mut all_needed = true;
    // Room for every task: the READY light ones are written in order, each at the count so
    // far (written always, kept when READY and light).
    let mut light: Vec<TaskId> = Vec::with_capacity(if PLAN { n as usize } else { 0 });
    let room = &mut light.spare_capacity_mut()[..if PLAN { n as usize } else { 0 }];
    let mut n_light = 0;
    let mut n_heavy = 0u32;
    let mut earlier = false;
    let mut edges = 0u32;
    // Task t's input range is the window `in_off[t..t + 2]`.
    for (t, w) in in_off[..n as usize + 1].windows(2).enumerate() {
        let id = base.plus(t);
        let count = cons_off[t + 1];
        cons_off[t + 1] = edges;
        edges += count;
        let mut waiting = 0;
        let ins = &inputs[w[0] as usize..w[1] as usize];
        // (Its inputs may pipeline it: see `TaskFlags::NARROW_CONSUMER`.)
        let narrow = TaskFlags::when(TaskFlags::NARROW_CONSUMER, ins.len() <= MAX_PIPELINE_INPUTS);
        for &x in ins {
            if let Some(d) = x.offset_in(base, n) {
                let at = &mut cons_off[d + 1];
                places[*at as usize].write(id);
                *at += 1;
                tasks[d].flags.insert(narrow);
                waiting += 1;
            } else {
                earlier = true;
            }
        }
        if PLAN {
            let task = &mut tasks[t];
            all_needed &= (count != 0) | task.flags.has(TaskFlags::RESULT);
            task.refc = count;
            task.waiting += waiting;
            let ready = task.waiting == 0;
            task.state = if ready {
                TaskState::Ready
            } else {
                TaskState::Waiting
            };
            n_heavy += (ready && task.cpus != 0) as u32;
            // SAFETY: `n_light <= t < n`, the room's length (a place per task before `t`
            // at most).
            unsafe { room.get_unchecked_mut(n_light) }.write(id);
            n_light += (ready && task.cpus == 0) as usize;
        }
    }
    // SAFETY: the first `n_light` places of `light`'s room are written.
    unsafe { light.set_len(n_light) };
    let heavy = if n_heavy != 0 {
        ready_heavy(tasks, base)
    } else {
        Vec::new()
    };
    if PLAN && earlier {
        earlier_edges(&in_off[..n as usize + 1], inputs, base, n, ext);
    }
    // Each task's count `cons_off[d + 1]` was taken for exactly the in-plan inputs naming it
    // (`usual_tasks`, `Server::resolve_inputs`), which the loop visits once each: so each
    // task's places were filled up to the next task's first place, every place below `edges`
    // is written.
    #[cfg(debug_assertions)]
    {
        let mut start = 0;
        for (d, &count) in counts[1..].iter().enumerate() {
            start += count;
            debug_assert_eq!(cons_off[d + 1], start, "consumers of task {d} all placed");
        }
    }
    assert!(
        edges as usize <= inputs.len(),
        "an edge per in-plan input at most"
    );
    // SAFETY: the places below `edges` are written (above), within the capacity.
    unsafe { cons.set_len(edges as usize) };
    Forward {
        all_needed,
        readied: (light.len() + heavy.len()) as u32,
        light,
        heavy,
    }
}

/// What the whole-plan checks of [`Server::check_shape`] need to look at.
#[derive(Clone, Copy)]
struct PlanShape {
    /// Some input refers to a later task of the plan (only then can there be a cycle).
    forward: bool,
    /// Some task is a dslice/dget.
    expansions: bool,
    /// Some input is a task of an earlier plan (its consumer's `waiting` counts it if it is
    /// unfinished, see [`plan_forward`]).
    earlier: bool,
}

/// The state of [`Server::plan_walk`].
struct Walk {
    grouped: bool,
    forward: bool,
    /// Tasks made WAITING (counted into the segment's counts at the end unless `grouped`).
    planned: u32,
    /// Tasks that may be ready and light (an upper bound).
    ready_light: usize,
    /// Tasks to visit (with forward references only).
    stack: Vec<u32>,
}

/// UNPLANNED task `t` becomes WAITING (the counts are moved in bulk, unless `grouped`).
#[inline(always)]
fn set_waiting(seg: &mut Segment, t: usize, grouped: bool) {
    if grouped {
        seg.set_state(t, TaskState::Waiting);
    } else {
        seg.tasks[t].state = TaskState::Waiting;
    }
}

/// A task's `checkpoint_path`: it must be UTF-8 and absolute (spec 8; the client checks too).
fn checkpoint_path(b: &[u8]) -> Result<Box<str>, String> {
    let p = std::str::from_utf8(b).map_err(|_| "checkpoint path is not valid UTF-8".to_owned())?;
    if !p.starts_with('/') {
        return Err("Checkpoint has to be absolute path".into());
    }
    Ok(p.into())
}

/// The cpus of resource request `rr` for a task, or why it cannot be run.
fn resource(
    requests: &[Result<u16, String>],
    rr: i32,
    max_cpus: Option<u32>,
) -> Result<u16, String> {
    let invalid = || format!("invalid resource request index {rr}");
    if rr < 0 {
        return Err(invalid());
    }
    let c = requests.get(rr as usize).ok_or_else(invalid)?.clone()?;
    match max_cpus {
        Some(m) if c as u32 > m => Err(format!(
            "no worker can satisfy cpus({c}): no worker has more than {m}"
        )),
        _ => Ok(c),
    }
}
