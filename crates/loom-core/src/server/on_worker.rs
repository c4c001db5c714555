//! Worker responses: a task finished (its consumers may become ready, its inputs lose a
//! reference), a transfer arrived, a task failed; plus reference counting and freeing.

use crate::proto::comm::worker_response;

use crate::frame::FrameReader;

use super::clients::Client;
use super::counters::{failure_message, now_ms, Failure};
use super::ids::{SegIdx, Slot, TaskId, WorkerIdx};
use super::segment::{Segment, TaskFlags, TaskState};
use super::workers::Workers;
use super::{wire, LogLevel, Server, ServerError};

impl Server {
    /// Counts a task's failure on worker `addr` and logs it in one line (the full message goes
    /// to the client, the dashboard and the trace). Used by every path that fails a running task
    /// (its worker's TASK_FAILED, a transfer given up).
    pub(super) fn record_failure(&mut self, failure: Failure, addr: &str) {
        let first = failure.message.lines().next().unwrap_or("");
        let label = if failure.label.is_empty() {
            String::new()
        } else {
            format!(" ({})", failure.label)
        };
        self.log(
            LogLevel::Warn,
            format!(
                "task id={}{label} of plan {} failed on {addr}: {first}",
                failure.task, failure.plan
            ),
        );
        self.counters.failure(failure);
    }

    /// Handles the frames of one read from worker `w` (`chunk`, framed by `reader`). While
    /// nothing rare is going on ([`Server::quiet`]), a FINISHED in the layout workers send
    /// is handled by [`Server::finished_quiet`] without the checks each of those rare things
    /// costs the general path; any other frame goes to [`Server::worker_frame`], after which
    /// the conditions are read again.
    pub(super) fn worker_read(
        &mut self,
        w: WorkerIdx,
        reader: &mut FrameReader,
        chunk: &[u8],
    ) -> Result<(), ServerError> {
        let mut quiet = self.quiet();
        reader.feed(chunk, |frame| {
            if quiet {
                if let Some((id, size)) = wire::scan_plain_finished(frame) {
                    if self.finished_quiet(w, TaskId(id), size) {
                        return Ok(());
                    }
                }
            }
            let r = self.worker_frame(w, frame);
            quiet = self.quiet();
            r
        })
    }

    /// Whether every rare thing [`Server::finished`] checks for per task is absent: a trace,
    /// the reconnect grace, crash counts, transfers in flight, fetches waiting for their
    /// object, extra copies, cross-plan consumers, array lengths. A quiet FINISHED creates
    /// none of them, so this holds for a whole run of quiet FINISHED frames.
    fn quiet(&self) -> bool {
        #[cfg(test)]
        if self.general_only {
            return false;
        }
        self.trace.is_none()
            && self.awaiting.is_empty()
            && self.crashes.is_empty()
            && self.moves.in_flight.is_empty()
            && !self.moves.fetches.any_unsent()
            && self.moves.extra_owners.is_empty()
            && self.graph.extra_cons.is_empty()
            && self.graph.lengths.is_empty()
    }

    /// [`Server::finished`] of task `id` (`size` bytes, no length) on `w` when [`Server::quiet`]
    /// holds and the task is in a [`Segment::plain`](super::segment::Segment) segment, running
    /// on `w`, neither loaded nor rewritten by an expansion, and not a result while a journal
    /// is kept (which records the result): then everything
    /// it changes is in its own segment (consumers made ready, inputs freed), its client and
    /// the workers, reached once each. False, with nothing changed, for any other task (the
    /// caller takes the general path).
    #[inline(always)]
    fn finished_quiet(&mut self, w: WorkerIdx, id: TaskId, size: u64) -> bool {
        let Some(s) = self.graph.locate(id) else {
            return false;
        };
        let seg = &mut self.graph.segs[s.seg];
        let off = s.off;
        let t = &mut seg.tasks[off];
        let flags = t.flags;
        if !seg.plain
            || t.state != TaskState::Running
            || t.wk != Some(w)
            || flags.has(TaskFlags::QUIET_EXCLUDED)
            || (flags.has(TaskFlags::RESULT) && self.journal.is_some())
        {
            return false;
        }
        let c = t.cpus;
        let program = c != 0 && t.ttype == self.sym.run;
        t.state = TaskState::Finished;
        seg.counts.moved(TaskState::Running, TaskState::Finished);
        seg.size[off] = size;
        let wk = &mut self.workers[w];
        wk.unbook(c);
        if program {
            wk.program_ended(c, std::time::Instant::now());
        }
        wk.holds(size);
        let client = &mut self.clients[seg.client];
        client.n_data += 1;
        if flags.has(TaskFlags::RESULT) && !flags.has(TaskFlags::NOTIFIED) {
            seg.tasks[off].flags.insert(TaskFlags::NOTIFIED);
            client.task_finished(seg.client_id(off).expect("results are plan tasks"));
        }
        // Its consumers (all in this segment) wait for one input less; a plain segment has no
        // dslice/dget (nothing to expand) and no rewritten task, and the grace is off.
        for k in seg.cons_range(off) {
            let Some(co) = seg.offset_of(seg.cons[k]) else {
                continue;
            };
            let ct = &mut seg.tasks[co];
            if ct.state != TaskState::Waiting || ct.waiting == 0 {
                continue;
            }
            ct.waiting -= 1;
            if ct.waiting == 0 {
                ct.state = TaskState::Ready;
                let cpus = ct.cpus;
                seg.counts.moved(TaskState::Waiting, TaskState::Ready);
                self.ready.push(seg.base.plus(co), cpus);
            }
        }
        // Its inputs (all in this segment) lose a reference; those no longer needed are freed.
        let mut emptied = false;
        for k in seg.input_range(off) {
            let Some(xo) = seg.offset_of(seg.inputs[k]) else {
                continue;
            };
            let xt = &mut seg.tasks[xo];
            if xt.refc == 0 {
                continue;
            }
            xt.refc -= 1;
            if seg.is_garbage(xo) {
                emptied |= free_quiet(seg, xo, client, &mut self.workers);
            }
        }
        if seg.is_garbage(off) {
            emptied |= free_quiet(seg, off, client, &mut self.workers);
        }
        if emptied {
            self.graph.mark_emptied();
        }
        #[cfg(test)]
        {
            self.quiet_finished += 1;
        }
        true
    }

    /// Handles one frame from worker `w`.
    pub(super) fn worker_frame(&mut self, w: WorkerIdx, frame: &[u8]) -> Result<(), ServerError> {
        use worker_response::Type;
        // The generated enum's values as `i32` (a match on the raw type, no conversion).
        const FINISHED: i32 = Type::Finished as i32;
        const FINISHED_AND_CHECKPOINTING: i32 = Type::FinishedAndCheckpointing as i32;
        const TRANSFERED: i32 = Type::Transfered as i32;
        const FAILED: i32 = Type::Failed as i32;
        const CHECKPOINT_WRITTEN: i32 = Type::CheckpointWritten as i32;
        const CHECKPOINT_WRITE_FAILED: i32 = Type::CheckpointWriteFailed as i32;
        const CHECKPOINT_LOADED: i32 = Type::CheckpointLoaded as i32;
        const CHECKPOINT_LOAD_FAILED: i32 = Type::CheckpointLoadFailed as i32;
        const LEAVING: i32 = Type::Leaving as i32;
        const TRANSFER_FAILED: i32 = Type::TransferFailed as i32;
        if let Some((id, size)) = wire::scan_plain_finished(frame) {
            self.finished(w, TaskId(id), size, 0, true);
            return Ok(());
        }
        let r = wire::scan_worker_response(frame)
            .map_err(|_| ServerError::Malformed("WorkerResponse"))?;
        let id = TaskId(r.id.ok_or(ServerError::Malformed("WorkerResponse"))?);
        let msg = || r.error_msg.unwrap_or(&[]).to_vec();
        match r.rtype {
            FINISHED | CHECKPOINT_LOADED => self.finished(w, id, r.size, r.length, true),
            // Spec 8: consumers may start, but a result is reported to its client only once
            // its checkpoint is written.
            FINISHED_AND_CHECKPOINTING => self.finished(w, id, r.size, r.length, false),
            CHECKPOINT_WRITTEN => self.checkpoint_written(id),
            CHECKPOINT_WRITE_FAILED => self.checkpoint_write_failed(w, id, msg()),
            TRANSFERED => self.transfered(w, id),
            // A failed load fails that task (and its dependants) only, as FAILED does.
            FAILED | CHECKPOINT_LOAD_FAILED => self.failed(w, id, msg()),
            // Its connection closes next: a departure, not a loss.
            LEAVING => self.workers[w].leaving = true,
            TRANSFER_FAILED => self.transfer_failed(w, id, r.error_msg.unwrap_or(&[])),
            t => return Err(ServerError::ResponseType(t)),
        }
        Ok(())
    }

    /// The slot of `id` if it is running on `w`.
    #[inline(always)]
    fn running_on(&self, id: TaskId, w: WorkerIdx) -> Option<Slot> {
        let s = self.graph.locate(id)?;
        let seg = self.graph.seg(s);
        (seg.tasks[s.off].state == TaskState::Running && seg.tasks[s.off].wk == Some(w))
            .then_some(s)
    }

    /// A response for a task that is not running on `w` (discarded, or a duplicate): free its
    /// cpus if it was a residual task, and REMOVE the data it produced.
    fn residual(&mut self, w: WorkerIdx, id: TaskId, data: bool) {
        let wk = &mut self.workers[w];
        if let Some(c) = wk.residual.remove(&id) {
            wk.unbook(c);
        }
        if data {
            wire::push_remove(&mut wk.out, id);
        }
    }

    /// FINISHED (or CHECKPOINT_LOADED, FINISHED_AND_CHECKPOINTING): the object exists on `w`
    /// (`size` bytes, `length` elements). `notify`: a held result is reported to its client
    /// now (else when its checkpoint is written).
    pub(super) fn finished(
        &mut self,
        w: WorkerIdx,
        id: TaskId,
        size: u64,
        length: u64,
        notify: bool,
    ) {
        let Some(s) = self.running_on(id, w) else {
            return self.residual(w, id, true);
        };
        self.crashes.forget(id);
        let seg = self.graph.seg_mut(s);
        let c = seg.tasks[s.off].cpus;
        let program = c != 0 && seg.tasks[s.off].ttype == self.sym.run;
        seg.set_state(s.off, TaskState::Finished);
        seg.size[s.off] = size;
        if let Some(t) = self
            .trace
            .as_mut()
            .filter(|_| self.trace_client == Some(seg.client))
        {
            t.finished(id.get(), w.index() as u64, size);
        }
        let flags = seg.tasks[s.off].flags;
        let client = &mut self.clients[seg.client];
        client.n_data += 1;
        if notify && flags.has(TaskFlags::RESULT) && !flags.has(TaskFlags::NOTIFIED) {
            seg.tasks[s.off].flags.insert(TaskFlags::NOTIFIED);
            let cid = seg.client_id(s.off).expect("results are plan tasks");
            client.task_finished(cid);
            if self.journal.is_some() {
                let (ci, cid) = (seg.client, seg.client_id(s.off));
                self.journal_finished(ci, cid, size, length, true, false);
            }
        }
        let wk = &mut self.workers[w];
        wk.unbook(c);
        if program {
            wk.program_ended(c, std::time::Instant::now());
        }
        wk.holds(size);
        if length != 0 {
            self.graph.lengths.insert(id, length);
        }
        if !self.moves.in_flight.is_empty() {
            self.resend_pending(id, w);
        }
        if self.moves.fetches.any_unsent() {
            self.resend_fetches(id, w);
        }
        self.release_consumers(s, id);
        self.release_inputs(s);
        // (An expansion triggered above may already have freed it.)
        if self.graph.seg(s).is_garbage(s.off) {
            self.free(s);
        }
    }

    /// `id` (at `s`) finished: each consumer waits for one input less.
    fn release_consumers(&mut self, s: Slot, id: TaskId) {
        for k in self.graph.seg(s).cons_range(s.off) {
            let cons = self.graph.segs[s.seg].cons[k];
            self.dec_waiting(s.seg, cons, id);
        }
        if !self.graph.extra_cons.is_empty() {
            if let Some(list) = self.graph.extra_cons.get(&id).cloned() {
                for cons in list {
                    self.dec_waiting(s.seg, cons, id);
                }
            }
        }
    }

    /// CHECKPOINT_WRITTEN: a held result whose checkpoint was being written is reported
    /// finished now.
    fn checkpoint_written(&mut self, id: TaskId) {
        let Some(s) = self.graph.locate(id) else {
            return;
        };
        let seg = self.graph.seg_mut(s);
        let flags = seg.tasks[s.off].flags;
        if seg.tasks[s.off].state != TaskState::Finished {
            return;
        }
        let notify = flags.has(TaskFlags::RESULT) && !flags.has(TaskFlags::NOTIFIED);
        if notify {
            seg.tasks[s.off].flags.insert(TaskFlags::NOTIFIED);
            let cid = seg.client_id(s.off).expect("results are plan tasks");
            self.clients[seg.client].task_finished(cid);
        }
        if self.journal.is_some() {
            let (ci, cid, size) = (seg.client, seg.client_id(s.off), seg.size[s.off]);
            let length = self.graph.lengths.get(&id).copied().unwrap_or(0);
            self.journal_finished(ci, cid, size, length, notify, true);
        }
    }

    /// CHECKPOINT_WRITE_FAILED: the task fails with the worker's message (spec 8), and so does
    /// every task depending on it that is not finished yet; its data is removed.
    fn checkpoint_write_failed(&mut self, w: WorkerIdx, id: TaskId, msg: Vec<u8>) {
        let addr = self.workers[w].addr.clone();
        self.log(
            LogLevel::Info,
            format!(
                "checkpoint of task {} failed on {addr}: {}",
                id.get(),
                String::from_utf8_lossy(&msg)
            ),
        );
        let Some(s) = self.graph.locate(id) else {
            return;
        };
        if self.graph.state(s) != TaskState::Finished {
            return;
        }
        let seg = self.graph.seg(s);
        let (owner, size) = (seg.tasks[s.off].wk, seg.size[s.off]);
        self.remove_everywhere(id, owner, size);
        self.graph.lengths.remove(&id);
        self.moves.forget_object(id);
        self.fail_tree(s, &addr, msg, false);
    }

    /// The task at `s` no longer needs its inputs: each loses a reference.
    fn release_inputs(&mut self, s: Slot) {
        let flags = self.graph.seg(s).tasks[s.off].flags;
        if flags.has(TaskFlags::LOAD) {
            // Loaded from its checkpoint: it never held references on its inputs.
            return;
        }
        if flags.has(TaskFlags::OVERRIDE) {
            for x in self.graph.inputs_of(s).to_vec() {
                self.dec_ref(s.seg, x);
            }
        } else {
            for k in self.graph.seg(s).input_range(s.off) {
                let x = self.graph.segs[s.seg].inputs[k];
                self.dec_ref(s.seg, x);
            }
        }
    }

    /// After `id` was (re)computed on `w`: transfers that lost their source get a new SEND.
    fn resend_pending(&mut self, id: TaskId, w: WorkerIdx) {
        let workers = &mut self.workers;
        self.moves.in_flight.retain_of(id, |t| {
            if t.source.is_none() && t.target != w && workers[t.target].alive {
                t.source = Some(w);
                let addr = workers[t.target].addr.clone();
                wire::push_send(&mut workers[w].out, id, &addr);
            }
            t.target != w
        });
    }

    /// Fetches of `id` that lost their sender (worker loss) are re-sent from `w`.
    fn resend_fetches(&mut self, id: TaskId, w: WorkerIdx) {
        for _ in 0..self.moves.fetches.send_unsent(id, w) {
            wire::push_send(&mut self.workers[w].out, id, &self.fetch_address);
        }
    }

    /// Consumer `c` (looked up from segment `hint` first) has input `from` finished.
    #[inline(always)]
    fn dec_waiting(&mut self, hint: SegIdx, c: TaskId, from: TaskId) {
        let Some(cs) = self.graph.locate_hint(c, hint) else {
            return;
        };
        let seg = &mut self.graph.segs[cs.seg];
        let off = cs.off;
        if seg.tasks[off].state != TaskState::Waiting || seg.tasks[off].waiting == 0 {
            return;
        }
        if seg.tasks[off].flags.has(TaskFlags::OVERRIDE) {
            // Rewritten by an expansion: it now waits only for the copies (ids above the
            // expansion's first), not for the inputs it had in the plan.
            let first = self
                .graph
                .overrides
                .get(&c)
                .and_then(|v| v.first().copied());
            if first.is_none_or(|f| from < f) {
                return;
            }
        }
        let seg = &mut self.graph.segs[cs.seg];
        seg.tasks[off].waiting -= 1;
        if seg.tasks[off].waiting == 0 {
            self.make_ready(cs);
        }
    }

    /// Input `x` (looked up from segment `hint` first) loses one reference; freed at zero.
    #[inline(always)]
    pub(super) fn dec_ref(&mut self, hint: SegIdx, x: TaskId) {
        let Some(xs) = self.graph.locate_hint(x, hint) else {
            return;
        };
        let seg = self.graph.seg_mut(xs);
        if seg.tasks[xs.off].refc == 0 {
            return;
        }
        seg.tasks[xs.off].refc -= 1;
        if seg.is_garbage(xs.off) {
            self.free(xs);
        }
    }

    /// Frees a finished object: REMOVE to every owner.
    #[inline(always)]
    pub(super) fn free(&mut self, s: Slot) {
        let seg = self.graph.seg(s);
        let (id, owner, client, size) = (
            seg.id(s.off),
            seg.tasks[s.off].wk,
            seg.client,
            seg.size[s.off],
        );
        self.graph.retire(s, TaskState::Freed);
        self.clients[client].n_data -= 1;
        self.remove_everywhere(id, owner, size);
        if !self.graph.lengths.is_empty() {
            self.graph.lengths.remove(&id);
        }
        self.moves.forget_object(id);
        if !self.graph.extra_cons.is_empty() {
            self.graph.extra_cons.remove(&id);
        }
    }

    /// Sends REMOVE{id} to the primary owner and every extra owner of `id` (an object of
    /// `size` bytes).
    #[inline(always)]
    pub(super) fn remove_everywhere(&mut self, id: TaskId, primary: Option<WorkerIdx>, size: u64) {
        if let Some(p) = primary {
            self.workers[p].dropped(size);
        }
        if let Some(out) = primary.and_then(|p| self.workers.out_if_alive(p)) {
            wire::push_remove(out, id);
        }
        if self.moves.extra_owners.is_empty() {
            return;
        }
        let workers = &mut self.workers;
        self.moves.extra_owners.remove(id, |w| {
            workers[w].dropped(size);
            if let Some(out) = workers.out_if_alive(w) {
                wire::push_remove(out, id);
            }
        });
    }

    /// TRANSFERED: `w` now holds a copy of `id` (REMOVE it if nobody needs it any more).
    fn transfered(&mut self, w: WorkerIdx, id: TaskId) {
        self.moves.arrived(id, w);
        let Some(s) = self.graph.locate(id) else {
            return wire::push_remove(&mut self.workers[w].out, id);
        };
        if self.graph.state(s) != TaskState::Finished {
            return wire::push_remove(&mut self.workers[w].out, id);
        }
        let seg = self.graph.seg(s);
        let size = seg.size[s.off];
        self.counters.transfer_bytes += size;
        if seg.tasks[s.off].wk != Some(w) && !self.moves.has_copy(id, w) {
            self.moves.add_copy(id, w);
            self.workers[w].holds(size);
        }
    }

    /// FAILED: the task and everything depending on it fail.
    fn failed(&mut self, w: WorkerIdx, id: TaskId, msg: Vec<u8>) {
        let Some(s) = self.running_on(id, w) else {
            return self.residual(w, id, false);
        };
        let c = self.graph.seg(s).tasks[s.off].cpus;
        let owner = self.graph.seg(s).client;
        if let Some(t) = self
            .trace
            .as_mut()
            .filter(|_| self.trace_client == Some(owner))
        {
            t.failed(id.get(), w.index() as u64, &msg);
        }
        let wk = &mut self.workers[w];
        wk.unbook(c);
        let addr = wk.addr.clone();
        let seg = self.graph.seg(s);
        let failure = Failure {
            plan: seg.plan.0,
            task: seg.client_id(s.off).unwrap_or(-1),
            label: self.graph.label_of(id).to_owned(),
            worker: addr.clone(),
            message: failure_message(&msg),
            time_ms: now_ms(),
        };
        self.record_failure(failure, &addr);
        self.fail_tree(s, &addr, msg, true);
    }
}

/// [`Server::free`] of task `off` of a plain segment while [`Server::quiet`] holds (no extra
/// copies, transfers, lengths or cross-plan consumers to forget): FREED, REMOVE to its owner.
/// True when that leaves the segment without a live task.
#[inline(always)]
fn free_quiet(seg: &mut Segment, off: usize, client: &mut Client, workers: &mut Workers) -> bool {
    let t = &mut seg.tasks[off];
    debug_assert!(t.state == TaskState::Finished, "freed once");
    t.state = TaskState::Freed;
    let owner = t.wk;
    seg.counts.moved(TaskState::Finished, TaskState::Freed);
    seg.live -= 1;
    client.n_data -= 1;
    if let Some(p) = owner {
        let wk = &mut workers[p];
        wk.dropped(seg.size[off]);
        if wk.alive {
            wire::push_remove(&mut wk.out, seg.base.plus(off));
        }
    }
    seg.live == 0
}
