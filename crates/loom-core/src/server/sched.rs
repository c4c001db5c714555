//! The reactive scheduler and the task life cycle: ready queues, worker choice (locality, CPUs,
//! load), finish/transfer/failure handling, reference counting and freeing, worker loss, and
//! dslice/dget expansion.
//!
//! Every event costs O(its own work): a finish touches the task, its consumers and its inputs;
//! the scheduler pops ready tasks from queues (no scan of tasks). Worker loss is the exception:
//! it scans the live segments once (a rare event).

use super::graph::{self, Segment};
use super::wire;
use super::{LogLevel, Server, ServerError, LIGHT_CAP, NO_WORKER};

enum Pick {
    Worker(u16),
    /// Some worker could run it but none has room now.
    Full,
    /// No connected worker can ever run it (type or cpus).
    Nobody,
}

impl Server {
    // -----------------------------------------------------------------------------------------
    // Ready queues and scheduling

    /// Task `off` of segment `si` has all inputs finished: expand it (dslice/dget) or queue it.
    pub(crate) fn make_ready(&mut self, si: usize, off: usize) {
        let seg = &mut self.segs[si];
        let ty = seg.ttype[off];
        if seg.flags[off] & graph::OVERRIDE == 0 && (ty == self.sym.dslice || ty == self.sym.dget) {
            self.expand(si, off);
            return;
        }
        seg.state[off] = graph::READY;
        let id = seg.base + off as i32;
        let c = seg.cpus[off];
        self.enqueue(id, c);
    }

    fn enqueue(&mut self, id: i32, cpus: u16) {
        if cpus == 0 {
            self.light_q.push_back(id);
        } else if let Some(q) = self.heavy_q.iter_mut().find(|q| q.0 == cpus) {
            q.1.push_back(id);
        } else {
            self.heavy_q.push((cpus, [id].into()));
            self.heavy_q.sort_by_key(|q| std::cmp::Reverse(q.0));
        }
    }

    /// Re-queues parked tasks (a worker registered).
    pub(crate) fn unpark(&mut self) {
        for id in std::mem::take(&mut self.parked) {
            if let Some((si, off)) = self.locate(id) {
                if self.segs[si].state[off] == graph::READY {
                    let c = self.segs[si].cpus[off];
                    self.enqueue(id, c);
                }
            }
        }
    }

    /// One scheduling round: places ready tasks while workers have room.
    pub(crate) fn schedule(&mut self) {
        if self.n_alive == 0 {
            return;
        }
        let traced = self.trace.as_mut().map(|t| t.round_begin());
        self.drain_queue(None);
        for qi in 0..self.heavy_q.len() {
            self.drain_queue(Some(qi));
        }
        if let (Some(t), Some(r)) = (self.trace.as_mut(), traced) {
            t.round_end(r);
        }
    }

    fn drain_queue(&mut self, heavy: Option<usize>) {
        loop {
            let q = match heavy {
                None => &mut self.light_q,
                Some(qi) => &mut self.heavy_q[qi].1,
            };
            let Some(&id) = q.front() else { break };
            let Some((si, off)) = self.locate(id) else {
                self.pop_queue(heavy);
                continue;
            };
            if self.segs[si].state[off] != graph::READY {
                self.pop_queue(heavy);
                continue;
            }
            match self.pick(si, off) {
                Pick::Worker(w) => {
                    self.pop_queue(heavy);
                    self.assign(si, off, w);
                    self.pipeline(si, off, w);
                }
                Pick::Full => break,
                Pick::Nobody => {
                    self.pop_queue(heavy);
                    self.parked.push(id);
                }
            }
        }
    }

    #[inline]
    fn pop_queue(&mut self, heavy: Option<usize>) {
        match heavy {
            None => self.light_q.pop_front(),
            Some(qi) => self.heavy_q[qi].1.pop_front(),
        };
    }

    #[inline]
    fn type_of(&self, seg: &Segment, off: usize) -> i32 {
        if seg.flags[off] & graph::OVERRIDE != 0 {
            self.sym.array_make
        } else {
            seg.ttype[off]
        }
    }

    /// Chooses a worker: among those that registered the task type, have enough cpus in total
    /// and room now (free cpus, or fewer than [`LIGHT_CAP`] light tasks in flight), the one
    /// holding the most input bytes; ties go to the least loaded.
    fn pick(&mut self, si: usize, off: usize) -> Pick {
        let seg = &self.segs[si];
        let ty = self.type_of(seg, off) as usize;
        let c = seg.cpus[off] as u32;
        let mut scores = std::mem::take(&mut self.scratch_score);
        let inputs = self.task_inputs(si, off);
        let multi = self.n_alive > 1 && !inputs.is_empty();
        if multi {
            for &x in inputs {
                if let Some((xs, xo)) = self.locate_hint(x, si) {
                    let s = &self.segs[xs];
                    let size = s.size[xo].max(1);
                    let p = s.wk[xo];
                    if p != NO_WORKER {
                        scores[p as usize] += size;
                    }
                    if let Some(extra) = self.extra_owners.get(&x) {
                        for &o in extra {
                            scores[o as usize] += size;
                        }
                    }
                }
            }
        }
        let mut any = false;
        let mut best: Option<(u16, u64, u64)> = None;
        for (wi, w) in self.workers.iter().enumerate() {
            if !w.alive || !w.types.get(ty).copied().unwrap_or(false) || w.cpus < c {
                continue;
            }
            any = true;
            let room = if c == 0 {
                w.light < LIGHT_CAP
            } else {
                w.has_room(c)
            };
            if !room {
                continue;
            }
            let score = if multi { scores[wi] } else { 0 };
            // Load per cpu (scaled), light tasks counted as a fraction of a cpu.
            let busy = w.booked_cpus() as u64 * 64 + w.light as u64;
            let load = busy * 1024 / (w.cpus.max(1) as u64);
            let better = match best {
                None => true,
                Some((_, bs, bl)) => score > bs || (score == bs && load < bl),
            };
            if better {
                best = Some((wi as u16, score, load));
            }
        }
        if multi {
            scores.iter_mut().for_each(|s| *s = 0);
        }
        self.scratch_score = scores;
        match best {
            Some((w, _, _)) => Pick::Worker(w),
            None if any => Pick::Full,
            None => Pick::Nobody,
        }
    }

    /// Sends task `off` of segment `si` to worker `w`, with the SENDs of missing inputs.
    fn assign(&mut self, si: usize, off: usize, w: u16) {
        let seg = &mut self.segs[si];
        let id = seg.base + off as i32;
        let c = seg.cpus[off];
        seg.state[off] = graph::RUNNING;
        seg.wk[off] = w;
        seg.flags[off] &= !graph::EARLY;
        let ov = seg.flags[off] & graph::OVERRIDE != 0;
        if let Some(t) = self.trace.as_mut() {
            t.scheduled(id, w);
        }
        {
            let wk = &mut self.workers[w as usize];
            if c == 0 {
                wk.light += 1;
            } else {
                wk.take_cpus(c as u32);
            }
        }
        if self.n_alive > 1 {
            let n_in = self.task_inputs(si, off).len();
            for k in 0..n_in {
                let x = self.task_inputs(si, off)[k];
                self.ensure_on(x, w);
            }
        }
        let seg = &self.segs[si];
        let out = &mut self.workers[w as usize].out;
        if ov {
            let inputs = self.overrides.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            wire::push_task(out, id, self.sym.array_make, &[], inputs, 0);
        } else {
            wire::push_task(
                out,
                id,
                seg.ttype[off],
                seg.config(off),
                seg.inputs(off),
                c as u32,
            );
        }
    }

    /// Pipelining: after task `off` of segment `si` went to worker `w`, its light consumers
    /// whose inputs are all on `w` already or being computed there are sent to `w` too, at once,
    /// and so on down the graph. The worker starts each as soon as its inputs are published
    /// locally, so a chain costs no round trip to the server per task. Consumers with many
    /// inputs (e.g. one array over a million tasks) are left to the normal path, keeping this
    /// O(1) per edge.
    fn pipeline(&mut self, si: usize, off: usize, w: u16) {
        let mut work = std::mem::take(&mut self.scratch_pipeline);
        work.push((si, off));
        while let Some((ps, po)) = work.pop() {
            let (a, b) = self.segs[ps].cons_range(po);
            for k in a..b {
                if self.workers[w as usize].light >= LIGHT_CAP {
                    work.clear();
                    break;
                }
                let c = self.segs[ps].cons[k];
                let Some((cs, co)) = self.locate_hint(c, ps) else {
                    continue;
                };
                if self.can_pipeline(cs, co, w) {
                    self.assign(cs, co, w);
                    self.segs[cs].flags[co] |= graph::EARLY;
                    work.push((cs, co));
                }
            }
        }
        self.scratch_pipeline = work;
    }

    /// Whether task `off` of segment `si` may be sent to `w` before its inputs finished.
    fn can_pipeline(&self, si: usize, off: usize, w: u16) -> bool {
        /// More inputs than this are not worth checking on every assignment.
        const MAX_INPUTS: usize = 8;
        let seg = &self.segs[si];
        if seg.state[off] != graph::WAITING
            || seg.cpus[off] != 0
            || seg.flags[off] & graph::OVERRIDE != 0
            || seg.ttype[off] == self.sym.dslice
            || seg.ttype[off] == self.sym.dget
            || !self.workers[w as usize]
                .types
                .get(seg.ttype[off] as usize)
                .copied()
                .unwrap_or(false)
        {
            return false;
        }
        let inputs = self.task_inputs(si, off);
        if inputs.len() > MAX_INPUTS {
            return false;
        }
        inputs.iter().all(|&x| {
            self.locate_hint(x, si).is_some_and(|(xs, xo)| {
                let s = &self.segs[xs];
                match s.state[xo] {
                    graph::RUNNING => s.wk[xo] == w,
                    graph::FINISHED => {
                        s.wk[xo] == w || self.extra_owners.get(&x).is_some_and(|e| e.contains(&w))
                    }
                    _ => false,
                }
            })
        })
    }

    /// Makes sure data `x` is on worker `w` or on its way there.
    fn ensure_on(&mut self, x: i32, w: u16) {
        let Some((si, off)) = self.locate(x) else {
            return;
        };
        let p = self.segs[si].wk[off];
        if p == w || p == NO_WORKER {
            return;
        }
        if self.extra_owners.get(&x).is_some_and(|e| e.contains(&w)) {
            return;
        }
        if self
            .transfers
            .get(&x)
            .is_some_and(|t| t.iter().any(|&(tg, _)| tg == w))
        {
            return;
        }
        let addr = self.workers[w as usize].addr.clone();
        wire::push_send(&mut self.workers[p as usize].out, x, &addr);
        self.transfers.entry(x).or_default().push((w, p));
    }

    // -----------------------------------------------------------------------------------------
    // Worker responses

    /// Handles one frame from worker `w`.
    pub(crate) fn worker_frame(&mut self, w: u16, frame: &[u8]) -> Result<(), ServerError> {
        let r = wire::scan_worker_response(frame)
            .map_err(|_| ServerError::Malformed("WorkerResponse"))?;
        let id = r.id.ok_or(ServerError::Malformed("WorkerResponse"))?;
        match r.rtype {
            1 | 2 => self.finished(w, id, r.size, r.length),
            3 => self.transfered(w, id),
            4 => {
                let msg = r.error_msg.unwrap_or(&[]).to_vec();
                self.failed(w, id, msg);
            }
            5..=8 => self.log(
                LogLevel::Warn,
                format!(
                    "checkpoint response {} for id {id} ignored (not supported)",
                    r.rtype
                ),
            ),
            t => return Err(ServerError::ResponseType(t)),
        }
        Ok(())
    }

    /// A response for a task that is not running on `w` (discarded, or a duplicate): free its
    /// cpus if it was a residual task, and REMOVE the data it produced.
    fn residual(&mut self, w: u16, id: i32, data: bool) {
        let wk = &mut self.workers[w as usize];
        if let Some(c) = wk.residual.remove(&id) {
            if c == 0 {
                wk.light = wk.light.saturating_sub(1);
            } else {
                wk.give_cpus(c as u32);
            }
        }
        if data {
            wire::push_remove(&mut wk.out, id);
        }
    }

    fn finished(&mut self, w: u16, id: i32, size: u64, length: u64) {
        let Some((si, off)) = self.locate(id) else {
            return self.residual(w, id, true);
        };
        let seg = &mut self.segs[si];
        if seg.state[off] != graph::RUNNING || seg.wk[off] != w {
            return self.residual(w, id, true);
        }
        let c = seg.cpus[off];
        seg.state[off] = graph::FINISHED;
        seg.size[off] = size;
        if let Some(t) = self.trace.as_mut() {
            t.finished(id, w, size);
        }
        let flags = seg.flags[off];
        let ov = flags & graph::OVERRIDE != 0;
        let client = &mut self.clients[seg.client as usize];
        client.n_data += 1;
        if flags & (graph::RESULT | graph::NOTIFIED) == graph::RESULT {
            seg.flags[off] |= graph::NOTIFIED;
            wire::push_task_finished(&mut client.out, seg.client_id(off));
        }
        let wk = &mut self.workers[w as usize];
        if c == 0 {
            wk.light -= 1;
        } else {
            wk.give_cpus(c as u32);
        }
        if length != 0 {
            self.lengths.insert(id, length);
        }
        if !self.transfers.is_empty() {
            self.resend_pending(id, w);
        }
        if !self.fetches.is_empty() {
            self.resend_fetches(id, w);
        }
        // Consumers.
        let (a, b) = self.segs[si].cons_range(off);
        for k in a..b {
            let cons = self.segs[si].cons[k];
            self.dec_waiting(si, cons, id);
        }
        if !self.extra_cons.is_empty() {
            if let Some(list) = self.extra_cons.get(&id).cloned() {
                for cons in list {
                    self.dec_waiting(si, cons, id);
                }
            }
        }
        // Inputs.
        if ov {
            for x in self.overrides.get(&id).cloned().unwrap_or_default() {
                self.dec_ref(si, x);
            }
        } else {
            let (a, b) = self.segs[si].input_range(off);
            for k in a..b {
                let x = self.segs[si].inputs[k];
                self.dec_ref(si, x);
            }
        }
        // (An expansion triggered above may already have freed it.)
        let seg = &self.segs[si];
        if seg.state[off] == graph::FINISHED
            && seg.refc[off] == 0
            && seg.flags[off] & graph::RESULT == 0
        {
            self.free(si, off);
        }
    }

    /// After `id` was (re)computed on `w`: transfers that lost their source get a new SEND.
    fn resend_pending(&mut self, id: i32, w: u16) {
        let Some(list) = self.transfers.get_mut(&id) else {
            return;
        };
        for t in list.iter_mut() {
            if t.1 == NO_WORKER && t.0 != w && self.workers[t.0 as usize].alive {
                t.1 = w;
                let addr = self.workers[t.0 as usize].addr.clone();
                wire::push_send(&mut self.workers[w as usize].out, id, &addr);
            }
        }
        list.retain(|t| t.0 != w);
    }

    /// Fetches of `id` that lost their sender (worker loss) are re-sent from `w`.
    fn resend_fetches(&mut self, id: i32, w: u16) {
        let Some(q) = self.fetches.get_mut(&id) else {
            return;
        };
        let addr = format!("!:{}", self.data_port);
        for e in q.iter_mut().filter(|e| e.2 == NO_WORKER) {
            e.2 = w;
            wire::push_send(&mut self.workers[w as usize].out, id, &addr);
        }
    }

    #[inline]
    fn dec_waiting(&mut self, hint: usize, c: i32, from: i32) {
        let Some((cs, co)) = self.locate_hint(c, hint) else {
            return;
        };
        let s = &mut self.segs[cs];
        if s.state[co] != graph::WAITING || s.waiting[co] == 0 {
            return;
        }
        if s.flags[co] & graph::OVERRIDE != 0 {
            let first = self.overrides.get(&c).and_then(|v| v.first().copied());
            if first.is_none_or(|f| from < f) {
                return;
            }
        }
        s.waiting[co] -= 1;
        if s.waiting[co] == 0 {
            self.make_ready(cs, co);
        }
    }

    #[inline]
    pub(crate) fn dec_ref(&mut self, hint: usize, x: i32) {
        let Some((xs, xo)) = self.locate_hint(x, hint) else {
            return;
        };
        let s = &mut self.segs[xs];
        if s.refc[xo] == 0 {
            return;
        }
        s.refc[xo] -= 1;
        if s.refc[xo] == 0 && s.state[xo] == graph::FINISHED && s.flags[xo] & graph::RESULT == 0 {
            self.free(xs, xo);
        }
    }

    /// Frees a finished object: REMOVE to every owner.
    pub(crate) fn free(&mut self, si: usize, off: usize) {
        let seg = &mut self.segs[si];
        let id = seg.base + off as i32;
        seg.state[off] = graph::FREED;
        seg.live -= 1;
        if seg.live == 0 {
            self.segs_dirty = true;
        }
        self.clients[seg.client as usize].n_data -= 1;
        let owner = seg.wk[off];
        self.remove_everywhere(id, owner);
        if !self.lengths.is_empty() {
            self.lengths.remove(&id);
        }
        if !self.transfers.is_empty() {
            self.transfers.remove(&id);
        }
        if !self.extra_cons.is_empty() {
            self.extra_cons.remove(&id);
        }
    }

    fn transfered(&mut self, w: u16, id: i32) {
        if let Some(t) = self.transfers.get_mut(&id) {
            t.retain(|t| t.0 != w);
            if t.is_empty() {
                self.transfers.remove(&id);
            }
        }
        let keep = self
            .locate(id)
            .is_some_and(|(si, off)| self.segs[si].state[off] == graph::FINISHED);
        if !keep {
            wire::push_remove(&mut self.workers[w as usize].out, id);
            return;
        }
        let (si, off) = self.locate(id).expect("checked");
        if self.segs[si].wk[off] != w {
            let e = self.extra_owners.entry(id).or_default();
            if !e.contains(&w) {
                e.push(w);
            }
        }
    }

    fn failed(&mut self, w: u16, id: i32, msg: Vec<u8>) {
        let Some((si, off)) = self.locate(id) else {
            return self.residual(w, id, false);
        };
        let seg = &self.segs[si];
        if seg.state[off] != graph::RUNNING || seg.wk[off] != w {
            return self.residual(w, id, false);
        }
        let c = seg.cpus[off];
        if let Some(t) = self.trace.as_mut() {
            t.failed(id, w);
        }
        let wk = &mut self.workers[w as usize];
        if c == 0 {
            wk.light -= 1;
        } else {
            wk.give_cpus(c as u32);
        }
        let addr = wk.addr.clone();
        self.log(
            LogLevel::Info,
            format!(
                "task {id} failed on {addr}: {}",
                String::from_utf8_lossy(&msg)
            ),
        );
        self.fail_tree(si, off, &addr, msg, true, None);
    }

    /// Fails task `off` of `si` and everything that depends on it. The client gets TASK_FAILED
    /// for the root (if it is a held result) with `msg`, and for each dependent held result with
    /// `dep_msg`, or "Task id=<root> (<label>) failed: <msg>" when `dep_msg` is None.
    /// `release_inputs`: the root still holds references on its inputs (it had not finished).
    pub(crate) fn fail_tree(
        &mut self,
        si: usize,
        off: usize,
        worker: &str,
        msg: Vec<u8>,
        release_inputs: bool,
        dep_msg: Option<Vec<u8>>,
    ) {
        let seg = &mut self.segs[si];
        let root = seg.base + off as i32;
        let root_cid = seg.client_id(off);
        let ci = seg.client;
        let was_finished = seg.state[off] == graph::FINISHED;
        seg.state[off] = graph::FAILED;
        seg.live -= 1;
        if seg.live == 0 {
            self.segs_dirty = true;
        }
        if was_finished {
            // Its data is gone.
            self.clients[ci as usize].n_data -= 1;
        }
        if seg.flags[off] & graph::RESULT != 0 {
            self.client_task_failed(ci, root_cid, worker, msg.clone());
        }
        let dep_msg = dep_msg.unwrap_or_else(|| {
            let label = self.label_of(root);
            let mut m = if label.is_empty() {
                format!("Task id={root_cid} failed: ").into_bytes()
            } else {
                format!("Task id={root_cid} ({label}) failed: ").into_bytes()
            };
            m.extend_from_slice(&msg);
            m
        });
        let mut stack = vec![(root, release_inputs)];
        while let Some((t, release)) = stack.pop() {
            let Some((ts, to)) = self.locate(t) else {
                continue;
            };
            if release {
                let ins: Vec<i32> = self.task_inputs(ts, to).to_vec();
                for x in ins {
                    self.dec_ref(ts, x);
                }
            }
            let (a, b) = self.segs[ts].cons_range(to);
            let mut cons: Vec<i32> = self.segs[ts].cons[a..b].to_vec();
            if let Some(e) = self.extra_cons.remove(&t) {
                cons.extend(e);
            }
            for c in cons {
                let Some((cs, co)) = self.locate(c) else {
                    continue;
                };
                let s = &mut self.segs[cs];
                let st = s.state[co];
                if !matches!(st, graph::WAITING | graph::READY | graph::RUNNING) {
                    continue;
                }
                if st == graph::RUNNING {
                    let wk = s.wk[co];
                    let cpus = s.cpus[co];
                    if s.flags[co] & graph::EARLY != 0 {
                        // Sent early and now never startable (an input failed): the worker
                        // will not answer for it, so its light slot is freed here.
                        s.flags[co] &= !graph::EARLY;
                        let wkr = &mut self.workers[wk as usize];
                        if wkr.alive {
                            wkr.light = wkr.light.saturating_sub(1);
                        }
                    } else if self.workers[wk as usize].alive {
                        self.workers[wk as usize].residual.insert(c, cpus);
                    }
                }
                s.state[co] = graph::FAILED;
                s.live -= 1;
                if s.live == 0 {
                    self.segs_dirty = true;
                }
                if s.flags[co] & graph::RESULT != 0 {
                    let cid = s.client_id(co);
                    let cl = s.client;
                    self.client_task_failed(cl, cid, worker, dep_msg.clone());
                }
                stack.push((c, true));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Worker loss

    /// Worker `w` is gone. Rule implemented:
    /// - nothing is written to it again; its copies are forgotten (another copy is promoted);
    /// - tasks running on it go back to the queue (they wait for inputs being recomputed);
    /// - transfers it was the source of are re-sent from another owner, or after recomputation;
    /// - finished data only it held: freed if no longer needed; otherwise recomputed when none
    ///   of its inputs was freed or failed (inputs lost too are recomputed first), else it fails
    ///   with "Worker lost" together with every dependant (TASK_FAILED for held results).
    pub(crate) fn lose_worker(&mut self, w: u16) {
        {
            let wk = &mut self.workers[w as usize];
            if !wk.alive {
                return;
            }
            wk.alive = false;
            wk.out.clear();
            wk.residual.clear();
            self.n_alive -= 1;
        }
        let addr = self.workers[w as usize].addr.clone();
        let mut lost: Vec<i32> = Vec::new();
        let mut rerun: Vec<i32> = Vec::new();
        for si in 0..self.segs.len() {
            let seg = &mut self.segs[si];
            for off in 0..seg.n as usize {
                let id = seg.base + off as i32;
                match seg.state[off] {
                    graph::FINISHED => {
                        let mut extra_empty = true;
                        if let Some(e) = self.extra_owners.get_mut(&id) {
                            e.retain(|&o| o != w);
                            extra_empty = e.is_empty();
                        }
                        if seg.wk[off] == w {
                            if extra_empty {
                                seg.wk[off] = NO_WORKER;
                                lost.push(id);
                            } else {
                                let e = self.extra_owners.get_mut(&id).expect("non-empty");
                                seg.wk[off] = e.remove(0);
                                if e.is_empty() {
                                    self.extra_owners.remove(&id);
                                }
                            }
                        } else if extra_empty {
                            self.extra_owners.remove(&id);
                        }
                    }
                    graph::RUNNING if seg.wk[off] == w => {
                        seg.state[off] = graph::WAITING;
                        seg.wk[off] = NO_WORKER;
                        rerun.push(id);
                    }
                    _ => {}
                }
            }
        }
        // Transfers.
        let mut resend: Vec<(i32, u16, u16)> = Vec::new();
        for (&x, list) in self.transfers.iter_mut() {
            list.retain(|t| t.0 != w);
            for t in list.iter_mut() {
                if t.1 == w {
                    t.1 = NO_WORKER;
                    resend.push((x, t.0, 0));
                }
            }
        }
        self.transfers.retain(|_, l| !l.is_empty());
        for (x, target, _) in resend {
            if let Some((si, off)) = self.locate(x) {
                let p = self.segs[si].wk[off];
                if p != NO_WORKER && self.segs[si].state[off] == graph::FINISHED {
                    let taddr = self.workers[target as usize].addr.clone();
                    wire::push_send(&mut self.workers[p as usize].out, x, &taddr);
                    if let Some(l) = self.transfers.get_mut(&x) {
                        for t in l.iter_mut().filter(|t| t.0 == target) {
                            t.1 = p;
                        }
                    }
                }
            }
        }
        // Lost data.
        lost.sort_unstable();
        let mut recount: Vec<i32> = rerun.clone();
        let mut fail: Vec<i32> = Vec::new();
        for &x in &lost {
            let (si, off) = self.locate(x).expect("live");
            let seg = &mut self.segs[si];
            if seg.refc[off] == 0 && seg.flags[off] & graph::RESULT == 0 {
                self.clients[seg.client as usize].n_data -= 1;
                seg.state[off] = graph::FREED;
                seg.live -= 1;
                if seg.live == 0 {
                    self.segs_dirty = true;
                }
                continue;
            }
            let ins: Vec<i32> = self.task_inputs(si, off).to_vec();
            let ok = ins.iter().all(|&i| {
                self.locate(i).is_some_and(|(s, o)| {
                    matches!(
                        self.segs[s].state[o],
                        graph::WAITING | graph::READY | graph::RUNNING | graph::FINISHED
                    )
                })
            });
            if !ok {
                fail.push(x);
                continue;
            }
            self.clients[self.segs[si].client as usize].n_data -= 1;
            self.segs[si].state[off] = graph::WAITING;
            for &i in &ins {
                let (s, o) = self.locate(i).expect("checked");
                self.segs[s].refc[o] += 1;
                if s != si && self.segs[s].state[o] != graph::FINISHED {
                    let e = self.extra_cons.entry(i).or_default();
                    if !e.contains(&x) {
                        e.push(x);
                    }
                }
            }
            recount.push(x);
            let (a, b) = self.segs[si].cons_range(off);
            recount.extend_from_slice(&self.segs[si].cons[a..b]);
            if let Some(e) = self.extra_cons.get(&x) {
                recount.extend_from_slice(e);
            }
        }
        for x in fail {
            // An earlier failure may have released it meanwhile (freed: nothing to fail).
            let Some((si, off)) = self.locate(x) else {
                continue;
            };
            if self.segs[si].state[off] != graph::FINISHED {
                continue;
            }
            self.fail_tree(
                si,
                off,
                &addr,
                b"Worker lost".to_vec(),
                false,
                Some(b"Worker lost".to_vec()),
            );
        }
        // Fetches whose SEND went to the lost worker: re-send from another owner, after the
        // recomputation, or drop them (the client got TASK_FAILED).
        if !self.fetches.is_empty() {
            let addr = format!("!:{}", self.data_port);
            let ids: Vec<i32> = self.fetches.keys().copied().collect();
            for id in ids {
                let (state, owner) = match self.locate(id) {
                    Some((si, off)) => (self.segs[si].state[off], self.segs[si].wk[off]),
                    None => (graph::FREED, NO_WORKER),
                };
                let q = self.fetches.get_mut(&id).expect("key");
                q.retain_mut(|e| {
                    if e.2 != w {
                        return true;
                    }
                    if state == graph::FINISHED && owner != NO_WORKER {
                        e.2 = owner;
                        wire::push_send(&mut self.workers[owner as usize].out, id, &addr);
                        true
                    } else if matches!(state, graph::WAITING | graph::READY | graph::RUNNING) {
                        e.2 = NO_WORKER;
                        true
                    } else {
                        false
                    }
                });
                if q.is_empty() {
                    self.fetches.remove(&id);
                }
            }
        }
        for t in recount {
            let Some((si, off)) = self.locate(t) else {
                continue;
            };
            let st = self.segs[si].state[off];
            if st != graph::WAITING && st != graph::READY {
                continue;
            }
            let ins: Vec<i32> = self.task_inputs(si, off).to_vec();
            let mut waiting = 0u32;
            for i in ins {
                if let Some((s, o)) = self.locate(i) {
                    if self.segs[s].state[o] != graph::FINISHED {
                        waiting += 1;
                    }
                }
            }
            let seg = &mut self.segs[si];
            seg.waiting[off] = waiting;
            if waiting > 0 {
                seg.state[off] = graph::WAITING;
            } else if st == graph::WAITING {
                self.make_ready(si, off);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // dslice / dget

    /// Expands dslice/dget task `off` of `si` (its input X is finished, length N known):
    /// dslice makes slices of `round(N / (total_cpus * 4))` (at least 1) elements, dget one get
    /// per element; each piece feeds a copy of the single consumer T, and T becomes an
    /// `array/make` over the copies (so T's id now names the array).
    fn expand(&mut self, si: usize, off: usize) {
        let seg = &self.segs[si];
        let d_id = seg.base + off as i32;
        let is_slice = seg.ttype[off] == self.sym.dslice;
        let x = seg.inputs(off)[0];
        let (ca, _) = seg.cons_range(off);
        let t_id = seg.cons[ca];
        let client = seg.client;
        let n_len = self.lengths.get(&x).copied().unwrap_or(0);
        // D itself never runs.
        {
            let seg = &mut self.segs[si];
            seg.state[off] = graph::FREED;
            seg.live -= 1;
            if seg.live == 0 {
                self.segs_dirty = true;
            }
        }
        let Some((ts, to)) = self.locate(t_id) else {
            self.dec_ref(si, x);
            return;
        };
        if self.segs[ts].state[to] != graph::WAITING {
            self.dec_ref(si, x);
            return;
        }
        let total_cpus: u64 = self
            .workers
            .iter()
            .filter(|w| w.alive)
            .map(|w| w.cpus as u64)
            .sum::<u64>()
            .max(1);
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        if is_slice {
            let div = total_cpus * 4;
            let step = ((n_len + div / 2) / div).max(1);
            let mut i = 0;
            while i < n_len {
                let e = (i + step).min(n_len);
                let mut cfg = i.to_le_bytes().to_vec();
                cfg.extend_from_slice(&e.to_le_bytes());
                pieces.push(cfg);
                i = e;
            }
        } else {
            for i in 0..n_len {
                pieces.push(i.to_le_bytes().to_vec());
            }
        }
        let k = pieces.len();
        let tseg = &self.segs[ts];
        let t_type = tseg.ttype[to];
        let t_cfg = tseg.config(to).to_vec();
        let t_in: Vec<i32> = tseg.inputs(to).to_vec();
        let t_cpus = tseg.cpus[to];
        let base = self.next_id;
        let n = 2 * k;
        if (base as i64) + n as i64 > i32::MAX as i64 {
            self.log(LogLevel::Error, "internal id space exhausted".into());
            return;
        }
        self.next_id = base + n as i32;
        let piece_type = if is_slice {
            self.sym.slice
        } else {
            self.sym.get
        };
        let mut s = Segment {
            base,
            n: n as u32,
            client,
            cbase: None,
            ttype: Vec::with_capacity(n),
            cfg_off: vec![0],
            arena: Vec::new(),
            in_off: vec![0],
            inputs: Vec::new(),
            cons_off: Vec::new(),
            cons: Vec::new(),
            state: vec![graph::WAITING; n],
            flags: vec![0; n],
            cpus: vec![0; n],
            waiting: vec![0; n],
            refc: vec![0; n],
            wk: vec![NO_WORKER; n],
            size: vec![0; n],
            live: n as u32,
        };
        let mut copies = Vec::with_capacity(k);
        for (i, cfg) in pieces.iter().enumerate() {
            let pid = base + 2 * i as i32;
            s.ttype.push(piece_type);
            s.arena.extend_from_slice(cfg);
            s.cfg_off.push(s.arena.len() as u32);
            s.inputs.push(x);
            s.in_off.push(s.inputs.len() as u32);
            s.ttype.push(t_type);
            s.arena.extend_from_slice(&t_cfg);
            s.cfg_off.push(s.arena.len() as u32);
            for &y in &t_in {
                s.inputs.push(if y == d_id { pid } else { y });
            }
            s.in_off.push(s.inputs.len() as u32);
            s.cpus[2 * i + 1] = t_cpus;
            copies.push(pid + 1);
        }
        s.build_consumers();
        for i in 0..k {
            s.refc[2 * i] = t_in.iter().filter(|&&y| y == d_id).count() as u32;
            s.refc[2 * i + 1] = 1;
            s.waiting[2 * i + 1] = s.refc[2 * i];
        }
        // Other inputs of T: each copy consumes them too.
        let mut extra_waiting = 0u32;
        for &y in &t_in {
            if y == d_id {
                continue;
            }
            if let Some((ys, yo)) = self.locate(y) {
                let ys_ = &mut self.segs[ys];
                ys_.refc[yo] += k as u32;
                if ys_.state[yo] != graph::FINISHED {
                    extra_waiting += 1;
                }
                self.extra_cons
                    .entry(y)
                    .or_default()
                    .extend_from_slice(&copies);
            }
        }
        for i in 0..k {
            s.waiting[2 * i + 1] += extra_waiting;
        }
        if let Some((xs, xo)) = self.locate(x) {
            self.segs[xs].refc[xo] += k as u32;
        }
        // Cross-segment consumers are always recorded (a lost X must re-wait them).
        let piece_ids = (0..k).map(|i| base + 2 * i as i32);
        self.extra_cons.entry(x).or_default().extend(piece_ids);
        for &c in &copies {
            self.extra_cons.insert(c, vec![t_id]);
        }
        let new_si = self.segs.len();
        self.segs.push(s);
        self.trace_segment(new_si);
        // T becomes array/make over the copies.
        {
            let tseg = &mut self.segs[ts];
            tseg.flags[to] |= graph::OVERRIDE;
            tseg.cpus[to] = 0;
            tseg.waiting[to] = k as u32;
        }
        if self.trace.is_some() {
            self.trace_rewrite(t_id, self.sym.array_make, &copies);
        }
        self.overrides.insert(t_id, copies);
        for &y in &t_in {
            if y != d_id {
                self.dec_ref(ts, y);
            }
        }
        self.dec_ref(si, x);
        for i in 0..k {
            if self.segs[new_si].waiting[2 * i] == 0 {
                self.make_ready(new_si, 2 * i);
            }
        }
        if k == 0 {
            self.make_ready(ts, to);
        }
    }
}
