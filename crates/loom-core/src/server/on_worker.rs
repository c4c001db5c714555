//! Worker responses: a task finished (its consumers may become ready, its inputs lose a
//! reference), a transfer arrived, a task failed; plus reference counting and freeing.

use std::collections::HashMap;

use crate::proto::comm::worker_response;

use crate::frame::FrameReader;

use super::counters::{failure_message, now_ms, Failure};
use super::graph::TaskGraph;
use super::ids::{Idx, SegIdx, Slot, TaskId, WorkerIdx};
use super::segment::{Segment, Task, TaskFlags, TaskState};
use super::workers::{Worker, Workers};
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

    /// Handles the frames of one read from worker `w` (`chunk`, framed by `reader`). What the
    /// read may skip ([`ReadCtx`]) is decided once, and again after any frame that may have
    /// changed it (anything but a FINISHED handled as [`ReadCtx::plain`]); a FINISHED in the
    /// layout workers send is read by byte comparisons, any other frame by
    /// [`Server::worker_frame`].
    pub(super) fn worker_read(
        &mut self,
        w: WorkerIdx,
        reader: &mut FrameReader,
        chunk: &[u8],
    ) -> Result<(), ServerError> {
        let mut ctx = self.read_ctx();
        let mut tally = Tally::new(std::mem::take(&mut self.scratch.frees));
        let r = reader.feed(chunk, |frame| {
            if let Some((id, size)) = wire::scan_plain_finished(frame) {
                if !self.finished_in(ctx, &mut tally, w, TaskId(id), size, 0, true) {
                    ctx = self.read_ctx();
                }
                return Ok(());
            }
            // What it changes on `w` is counted at once: the read's counts and frees first.
            self.apply(&mut tally, w);
            let r = self.worker_frame(w, frame);
            ctx = self.read_ctx();
            r
        });
        // Also after a frame that ends the read with an error: the frames before it counted.
        self.apply(&mut tally, w);
        self.scratch.frees = tally.frees;
        r
    }

    /// Applies `tally`, the counts and frees of a read of worker `w` so far ([`Tally`]), and
    /// starts it again from zero.
    #[inline(always)]
    fn apply(&mut self, tally: &mut Tally, w: WorkerIdx) {
        if !tally.frees.is_empty() {
            free_batch(&mut self.graph, &mut self.workers, w, tally);
        }
        tally.apply(&mut self.workers[w]);
    }

    /// The plain FINISHED of a task in segment `seg` frees objects there: `tally`'s frees,
    /// of another segment, are freed first ([`free_batch`]; out of line: a read's frees are
    /// usually of one segment).
    #[cold]
    #[inline(never)]
    fn switch_frees(&mut self, tally: &mut Tally, w: WorkerIdx, seg: SegIdx) {
        if !tally.frees.is_empty() {
            free_batch(&mut self.graph, &mut self.workers, w, tally);
        }
        tally.seg = seg;
    }

    /// What a worker read may skip now (see [`ReadCtx`]).
    #[inline(always)]
    pub(super) fn read_ctx(&self) -> ReadCtx {
        #[cfg(test)]
        if self.general_only {
            return ReadCtx { quiet: false };
        }
        ReadCtx {
            quiet: self.trace.is_none()
                && self.awaiting.is_empty()
                && self.crashes.is_empty()
                && self.moves.in_flight.is_empty()
                && !self.moves.fetches.any_unsent()
                && self.moves.extra_owners.is_empty()
                && self.graph.extra_cons.is_empty()
                && self.graph.lengths.is_empty(),
        }
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
    #[inline(never)]
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
    /// now (else when its checkpoint is written). [`Server::finished_in`] with the context of
    /// now, for frames outside a worker read's loop.
    pub(super) fn finished(
        &mut self,
        w: WorkerIdx,
        id: TaskId,
        size: u64,
        length: u64,
        notify: bool,
    ) {
        let ctx = self.read_ctx();
        let mut tally = Tally::new(std::mem::take(&mut self.scratch.frees));
        self.finished_in(ctx, &mut tally, w, id, size, length, notify);
        self.apply(&mut tally, w);
        self.scratch.frees = tally.frees;
    }

    /// [`Server::finished`] within a worker read whose context is `ctx` and whose counters of
    /// `w` are added up in `tally` (applied by the caller). The one FINISHED
    /// handler: the rare things ([`ReadCtx`]) are looked at only when `ctx` is not quiet, and
    /// a task for which [`ReadCtx::plain`] holds changes only its own segment (a consumer made
    /// ready is queued, a freed input has nothing rare to forget). Returns whether it was
    /// plain: nothing `ctx` depends on changed (else the caller decides the context again: a
    /// length recorded, an expansion run, a residual answer).
    ///
    /// Once the task is found running on `w`, its steps ([`Server::finished_found`]) are
    /// compiled twice from the one source: for the common case (a light task that is no
    /// result, in a plain segment, in a quiet read: W1's merges, a map's tasks) with what that
    /// fixes known to the optimiser (no cpus to unbook, no client to tell, plain), and for
    /// everything else. The test `common_and_rare_finished_cases_agree` compares the two.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finished_in(
        &mut self,
        ctx: ReadCtx,
        tally: &mut Tally,
        w: WorkerIdx,
        id: TaskId,
        size: u64,
        length: u64,
        notify: bool,
    ) -> bool {
        let Some(s) = self.graph.locate(id) else {
            self.residual(w, id, true);
            return false;
        };
        let seg = &self.graph.segs[s.seg];
        let t = &seg.tasks[s.off];
        if t.state != TaskState::Running || t.wk != Some(w) {
            self.residual(w, id, true);
            return false;
        }
        let (flags, c) = (t.flags, t.cpus);
        // Whether it is garbage once finished ([`Segment::is_garbage`]), from the record read
        // here: nothing below changes its references (its consumers' release does not, and a
        // task is not its own input) nor its RESULT flag.
        let garbage = t.refc == 0 && !flags.has(TaskFlags::RESULT);
        let common = c == 0
            && ctx.quiet
            && length == 0
            && seg.plain
            && !flags.has(TaskFlags::RESULT_OR_EXCLUDED);
        let ttype = t.ttype;
        if common {
            self.finished_found::<true>(
                ctx, tally, w, s, id, size, length, notify, flags, c, ttype, garbage,
            )
        } else {
            self.finished_found::<false>(
                ctx, tally, w, s, id, size, length, notify, flags, c, ttype, garbage,
            )
        }
    }

    /// The rest of [`Server::finished_in`] once the task at `s` is found running on `w`
    /// (`flags`, `c` cpus, type `ttype`, `garbage` once finished). `COMMON`: the caller found
    /// it a light task (`c == 0`) that is no result, in a plain segment, in a quiet read and
    /// without a length; the steps are the same, each of those facts a constant.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn finished_found<const COMMON: bool>(
        &mut self,
        ctx: ReadCtx,
        tally: &mut Tally,
        w: WorkerIdx,
        s: Slot,
        id: TaskId,
        size: u64,
        length: u64,
        notify: bool,
        flags: TaskFlags,
        c: u16,
        ttype: i32,
        garbage: bool,
    ) -> bool {
        let off = s.off;
        let c = if COMMON { 0 } else { c };
        let program = c != 0 && ttype == self.sym.run;
        let quiet = COMMON || (ctx.quiet && length == 0);
        let result =
            !COMMON && notify && flags.has(TaskFlags::RESULT) && !flags.has(TaskFlags::NOTIFIED);
        let mut seg = &mut self.graph.segs[s.seg];
        if !quiet || (result && self.journal.is_some()) {
            self.finished_rare(s, w, size, length, result);
            seg = &mut self.graph.segs[s.seg];
        }
        let plain = COMMON || ReadCtx::plain(quiet, seg, flags);
        moved(seg, off, TaskState::Running, TaskState::Finished, plain);
        seg.size[off] = size;
        if result {
            seg.tasks[off].flags.insert(TaskFlags::NOTIFIED);
            let cid = seg.client_id(off).expect("results are plan tasks");
            self.clients[seg.client].task_finished(cid);
        }
        let workers = &mut self.workers;
        if c == 0 {
            tally.light_ended += 1;
        } else {
            let wk = &mut workers[w];
            wk.unbook(c);
            if program {
                wk.program_ended(c, std::time::Instant::now());
            }
        }
        tally.held += 1;
        tally.held_bytes += size;
        if plain {
            // The read's frees are of one segment ([`Tally`]): those of another are freed
            // first.
            if tally.seg != s.seg {
                self.switch_frees(tally, w, s.seg);
                seg = &mut self.graph.segs[s.seg];
            }
            // Everything happens in this segment, which stays borrowed: a consumer made
            // ready is queued (no grace to hold it back, no expansion to run), a freed object
            // has nothing rare to forget; the same steps as the general functions
            // ([`consumer_released`], [`input_released`], [`freed`]).
            for k in seg.cons_range(off) {
                let c = seg.cons[k];
                let Some(co) = seg.offset_of(c) else {
                    continue;
                };
                if consumer_released(seg, co, c, id, &self.graph.overrides, true) {
                    let cpus = seg.tasks[co].cpus;
                    moved(seg, co, TaskState::Waiting, TaskState::Ready, true);
                    self.ready.push(c, cpus);
                }
            }
            // Its inputs that this frees, and itself if garbage, are freed with the read's
            // other frees in one batch ([`free_batch`], when the tally is applied).
            for k in seg.input_range(off) {
                let Some(xo) = seg.offset_of(seg.inputs[k]) else {
                    continue;
                };
                if input_released(seg, xo) {
                    tally.frees.push(xo as u32);
                }
            }
            if garbage {
                debug_assert!(seg.is_garbage(off), "garbage as its record said");
                tally.frees.push(off as u32);
            }
        } else {
            // Its frees count at once on their owners: the read's counts and frees first
            // (see [`Tally`]).
            self.apply(tally, w);
            self.release_general(s, id, flags);
        }
        #[cfg(test)]
        {
            self.plain_finished += plain as u64;
            self.common_finished += COMMON as u64;
        }
        plain
    }

    /// The rare part of [`Server::finished_in`] of the task at `s` on `w` (`size` bytes,
    /// `length` elements; `result`: its client is told now), before the rest: crash counts,
    /// trace, journal, length, transfers and fetches waiting for it.
    #[inline(never)]
    fn finished_rare(&mut self, s: Slot, w: WorkerIdx, size: u64, length: u64, result: bool) {
        let seg = self.graph.seg(s);
        let (id, ci, cid) = (seg.id(s.off), seg.client, seg.client_id(s.off));
        self.crashes.forget(id);
        if let Some(t) = self
            .trace
            .as_mut()
            .filter(|_| self.trace_client == Some(ci))
        {
            t.finished(id.get(), w.index() as u64, size);
        }
        if result && self.journal.is_some() {
            self.journal_finished(ci, cid, size, length, true, false);
        }
        if length != 0 {
            self.graph.lengths.insert(id, length);
        }
        if !self.moves.in_flight.is_empty() {
            self.resend_pending(id, w);
        }
        if self.moves.fetches.any_unsent() {
            self.resend_fetches(id, w);
        }
    }

    /// The consumers, inputs and freeing of `id` (at `s`, with `flags`) after it finished,
    /// when [`ReadCtx::plain`] does not hold.
    #[inline(never)]
    fn release_general(&mut self, s: Slot, id: TaskId, flags: TaskFlags) {
        self.release_consumers(s, id);
        if !flags.has(TaskFlags::LOAD) {
            // (Loaded from its checkpoint: it never held references on its inputs.)
            self.release_inputs(s, flags);
        }
        // (An expansion triggered above may already have freed it.)
        if self.graph.seg(s).is_garbage(s.off) {
            self.free(s);
        }
    }

    /// `id` (at `s`) finished: each consumer waits for one input less ([`consumer_released`]);
    /// one waiting for nothing more is made ready.
    fn release_consumers(&mut self, s: Slot, id: TaskId) {
        // Consumers in the index are in `id`'s own segment (others are `extra_cons`).
        for k in self.graph.seg(s).cons_range(s.off) {
            let c = self.graph.segs[s.seg].cons[k];
            self.dec_waiting(s.seg, c, id);
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

    /// The task at `s` (with `flags`, not loaded from its checkpoint) no longer needs its
    /// inputs: each loses a reference, and is freed at zero.
    fn release_inputs(&mut self, s: Slot, flags: TaskFlags) {
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
    fn dec_waiting(&mut self, hint: SegIdx, c: TaskId, from: TaskId) {
        let Some(cs) = self.graph.locate_hint(c, hint) else {
            return;
        };
        let graph = &mut self.graph;
        let seg = &mut graph.segs[cs.seg];
        if consumer_released(seg, cs.off, c, from, &graph.overrides, false) {
            self.make_ready(cs);
        }
    }

    /// Input `x` (looked up from segment `hint` first) loses one reference; freed at zero.
    #[inline(always)]
    pub(super) fn dec_ref(&mut self, hint: SegIdx, x: TaskId) {
        let Some(xs) = self.graph.locate_hint(x, hint) else {
            return;
        };
        if input_released(self.graph.seg_mut(xs), xs.off) {
            self.free(xs);
        }
    }

    /// Frees a finished object ([`freed`]): REMOVE to every owner; its rare records (extra
    /// copies, transfers, length, cross-plan consumers) are forgotten.
    pub(super) fn free(&mut self, s: Slot) {
        let seg = &mut self.graph.segs[s.seg];
        let id = seg.id(s.off);
        let (owner, size) = freed(seg, s.off);
        remove_from(&mut self.workers, owner, id, size);
        if gone(seg, 1) {
            self.graph.mark_emptied();
        }
        self.remove_extra_copies(id, size);
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
        remove_from(&mut self.workers, primary, id, size);
        self.remove_extra_copies(id, size);
    }

    /// Sends REMOVE{id} to every extra owner of `id` (an object of `size` bytes).
    #[inline(always)]
    fn remove_extra_copies(&mut self, id: TaskId, size: u64) {
        if self.moves.extra_owners.is_empty() {
            return;
        }
        let workers = &mut self.workers;
        self.moves
            .extra_owners
            .remove(id, |w| remove_from(workers, Some(w), id, size));
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

/// What one worker read's FINISHED frames change in their worker's counters and which objects
/// they free, gathered over the read and applied at once ([`Server::apply`]): light tasks ended
/// (each [`Worker::unbook`]), objects it now holds ([`Worker::holds`]) and objects freed there
/// ([`Worker::dropped`]); the objects the plain FINISHED frames free, freed together by
/// [`free_batch`] (their REMOVEs to the read's worker written into one reservation). Applying
/// the sums is applying each: nothing reads these counters during a read (the scheduler runs
/// after it, the status between events), nothing else in a read lowers the light tasks below
/// what its own light tasks booked, and the objects are added before they are dropped (a drop
/// clamps at zero: it must not come before the add of the same object, so adds are never
/// deferred past a drop, test `a_chain_finished_in_one_read_leaves_one_object_on_its_worker`).
/// An object waiting in `frees` is FINISHED with no reference and no RESULT flag: nothing in a
/// plain FINISHED looks at it again (no consumer is left to release it). Anything in a read
/// that counts at once on the worker or may look at such an object (a frame other than a
/// FINISHED in the layout workers send, a FINISHED whose frees take the general path) applies
/// the tally first.
pub(super) struct Tally {
    light_ended: u32,
    /// Objects the read's FINISHED frames left on the read's worker, and their bytes.
    held: u64,
    held_bytes: u64,
    /// Objects of the read's FINISHED frames freed on the read's worker, and their bytes.
    dropped: u64,
    dropped_bytes: u64,
    /// Garbage objects of plain segment `seg` to free (offsets), in the order the read found
    /// them (its capacity kept between reads, `Scratch::frees`). One segment at a time (a
    /// FINISHED in another frees these first, [`Server::switch_frees`]): the batch looks its
    /// segment up once and compares no segment per free.
    frees: Vec<u32>,
    /// The segment of `frees` (any while they are empty).
    seg: SegIdx,
}

impl Tally {
    /// Nothing counted yet; `frees` (empty) keeps its capacity.
    #[inline(always)]
    fn new(frees: Vec<u32>) -> Self {
        debug_assert!(frees.is_empty(), "frees applied");
        Tally {
            light_ended: 0,
            held: 0,
            held_bytes: 0,
            dropped: 0,
            dropped_bytes: 0,
            frees,
            seg: SegIdx::from_index(0),
        }
    }

    /// Applies the counts to `wk` (the read's worker) and starts them again from zero (the
    /// frees are applied first, by [`Server::apply`]).
    #[inline(always)]
    fn apply(&mut self, wk: &mut Worker) {
        debug_assert!(self.frees.is_empty(), "frees applied first");
        wk.unbook_light(self.light_ended);
        wk.holds_n(self.held, self.held_bytes);
        wk.dropped_n(self.dropped, self.dropped_bytes);
        self.light_ended = 0;
        self.held = 0;
        self.held_bytes = 0;
        self.dropped = 0;
        self.dropped_bytes = 0;
    }
}

/// Frees the objects of `tally.frees` (garbage objects of plain segment `tally.seg` found by a
/// read of worker `w`; emptied): FREED ([`freed_record`]), the segment's counts lowered once
/// ([`gone`]), the REMOVEs to `w` written into one reservation ([`wire::Removes`]) and counted in
/// `tally`, any other owner's ([`remove_from`]; rare: an input computed on another worker) after
/// them. Out of line: the loop of a worker read's frames keeps its registers.
#[inline(never)]
fn free_batch(graph: &mut TaskGraph, workers: &mut Workers, w: WorkerIdx, tally: &mut Tally) {
    let mut elsewhere: Vec<(Option<WorkerIdx>, TaskId, u64)> = Vec::new();
    let mut removes = wire::Removes::begin(&mut workers[w].out, tally.frees.len());
    let mut bytes = 0u64;
    let seg = &mut graph.segs[tally.seg];
    debug_assert!(seg.groups.is_none(), "a plain segment has no label groups");
    let base = seg.base;
    // The columns as local slices: their lengths stay in registers (not reloaded past each
    // record's store).
    let (tasks, sizes) = (&mut seg.tasks[..], &seg.size[..]);
    for &off in &tally.frees {
        let off = off as usize;
        let (owner, size) = freed_record(tasks, sizes, off);
        let id = base.plus(off);
        if owner == Some(w) {
            removes.push(id);
            bytes += size;
        } else {
            held_elsewhere(&mut elsewhere, owner, id, size);
        }
    }
    removes.finish();
    if gone(seg, tally.frees.len() as u32) {
        graph.mark_emptied();
    }
    tally.dropped += (tally.frees.len() - elsewhere.len()) as u64;
    tally.dropped_bytes += bytes;
    tally.frees.clear();
    for (owner, id, size) in elsewhere {
        remove_from(workers, owner, id, size);
    }
}

/// What the frames of one worker read may skip, decided once per read
/// ([`Server::read_ctx`]) and again after any frame that may change it.
#[derive(Clone, Copy, Debug)]
pub(super) struct ReadCtx {
    /// None of the rare things a FINISHED otherwise looks at per task is present: a trace,
    /// the reconnect grace, crash counts, transfers in flight, fetches waiting for their
    /// object, extra copies, cross-plan consumers, array lengths. A FINISHED without a length
    /// creates none of them (an expansion it triggers may: that one is not plain).
    quiet: bool,
}

impl ReadCtx {
    /// Whether a FINISHED of a task with `flags` in `seg` changes that segment only: the
    /// read is `quiet` (and the frame has no length), the segment is
    /// [`plain`](super::segment::Segment) (no dslice/dget, no input from an earlier plan, no
    /// label groups), and the task is neither rewritten by an expansion nor loaded from its
    /// checkpoint.
    #[inline(always)]
    fn plain(quiet: bool, seg: &Segment, flags: TaskFlags) -> bool {
        quiet && seg.plain && !flags.has(TaskFlags::QUIET_EXCLUDED)
    }
}

/// Consumer `co` (id `c`) of `seg` has input `from` finished: it waits for one input less
/// (`plain`: `seg` is plain, so no consumer in it is rewritten by an expansion).
/// True when it waits for nothing more (the caller makes it ready). A consumer not waiting,
/// or rewritten by an expansion (`overrides`: it then waits only for the expansion's copies,
/// ids from the expansion's first, not for the inputs it had in the plan), is left alone.
#[inline(always)]
fn consumer_released(
    seg: &mut Segment,
    co: usize,
    c: TaskId,
    from: TaskId,
    overrides: &HashMap<TaskId, Vec<TaskId>>,
    plain: bool,
) -> bool {
    let ct = &mut seg.tasks[co];
    if ct.state != TaskState::Waiting || ct.waiting == 0 {
        return false;
    }
    debug_assert!(
        !plain || !ct.flags.has(TaskFlags::OVERRIDE),
        "no rewrite in a plain segment"
    );
    if !plain && ct.flags.has(TaskFlags::OVERRIDE) {
        let first = overrides.get(&c).and_then(|v| v.first().copied());
        if first.is_none_or(|f| from < f) {
            return false;
        }
    }
    ct.waiting -= 1;
    ct.waiting == 0
}

/// Input `xo` of `seg` loses one reference. True when that makes it garbage (the caller
/// frees it).
#[inline(always)]
fn input_released(seg: &mut Segment, xo: usize) -> bool {
    let xt = &mut seg.tasks[xo];
    if xt.refc == 0 {
        return false;
    }
    xt.refc -= 1;
    seg.is_garbage(xo)
}

/// [`free_batch`]'s object `id` of `size` bytes whose owner is not the read's worker, kept in
/// `elsewhere` for after the batch (out of line: rare, and the batch's loop keeps its
/// registers).
#[cold]
#[inline(never)]
fn held_elsewhere(
    elsewhere: &mut Vec<(Option<WorkerIdx>, TaskId, u64)>,
    owner: Option<WorkerIdx>,
    id: TaskId,
    size: u64,
) {
    elsewhere.push((owner, id, size));
}

/// Task `off` of `seg` is freed: FREED (its label group's counts too, if the plan has label
/// groups). Returns its primary owner and its size: the caller sends the REMOVE to the owner
/// if alive, which holds it no longer ([`remove_from`]). The counts this lowers for the segment
/// and its client are lowered by [`gone`]. What else an object may have (extra copies,
/// transfers, length, cross-plan consumers) is [`Server::free`]'s. A worker read's batch, of a
/// plain segment (no label groups), changes the record alone ([`free_batch`], [`freed_record`]).
#[inline(always)]
fn freed(seg: &mut Segment, off: usize) -> (Option<WorkerIdx>, u64) {
    if let Some(g) = seg.groups.as_deref_mut() {
        g.moved(off, TaskState::Finished, TaskState::Freed);
    }
    freed_record(&mut seg.tasks, &seg.size, off)
}

/// The change of task `off`'s record when it is freed ([`freed`]; `tasks`, `sizes`: its
/// segment's columns): FREED; returns its primary owner and its size.
#[inline(always)]
fn freed_record(tasks: &mut [Task], sizes: &[u64], off: usize) -> (Option<WorkerIdx>, u64) {
    // Freeing twice would drop the segment while tasks in it are still live.
    debug_assert!(tasks[off].state == TaskState::Finished, "freed once");
    // The record indexed (bounds-checked) once.
    let t = &mut tasks[off];
    t.state = TaskState::Freed;
    (t.wk, sizes[off])
}

/// `n` tasks of `seg` were [`freed`] by one event: the segment's counts (FINISHED -> FREED,
/// live tasks) go down by `n` at once (a client's objects are its segments' FINISHED count,
/// [`Server::client_objects`]). True when that leaves the segment without a live task.
#[inline(always)]
fn gone(seg: &mut Segment, n: u32) -> bool {
    seg.counts.moved_n(TaskState::Finished, TaskState::Freed, n);
    seg.live -= n;
    seg.live == 0
}

/// Task `off` of `seg` goes from `from` (its state) to `to`: [`Segment::set_state`] with the
/// old state known (the counts moved at fixed places) unless the plan has label groups
/// (never while `plain`: a plain segment has none).
#[inline(always)]
fn moved(seg: &mut Segment, off: usize, from: TaskState, to: TaskState, plain: bool) {
    debug_assert!(seg.tasks[off].state == from, "task {off} is {from:?}");
    debug_assert!(
        !plain || seg.groups.is_none(),
        "a plain segment has no label groups"
    );
    if !plain && seg.groups.is_some() {
        return seg.set_state(off, to);
    }
    seg.tasks[off].state = to;
    seg.counts.moved(from, to);
}

/// REMOVE{id} (an object of `size` bytes) to `owner` if alive; it holds it no longer.
#[inline(always)]
fn remove_from(workers: &mut Workers, owner: Option<WorkerIdx>, id: TaskId, size: u64) {
    if let Some(p) = owner {
        let wk = &mut workers[p];
        wk.dropped(size);
        if wk.alive {
            wire::push_remove(&mut wk.out, id);
        }
    }
}
