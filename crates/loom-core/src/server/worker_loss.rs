//! A worker is lost. Rule implemented:
//! - nothing is written to it again; its copies are forgotten (another copy is promoted);
//! - tasks running on it go back to the queue (they wait for inputs being recomputed), unless
//!   this makes `--max-crashes` lost workers for one of them: that one fails ([`super::poison`]);
//! - transfers it was the source of are re-sent from another owner, or after recomputation;
//! - finished data only it held: freed if no longer needed; otherwise recomputed when none
//!   of its inputs was freed or failed (inputs lost too are recomputed first), else it fails
//!   with "Worker lost" together with every dependant (TASK_FAILED for held results);
//! - fetches it was asked to serve are re-sent from another owner, after the recomputation,
//!   or dropped (the client got TASK_FAILED).
//!
//! This is the one event that scans the live segments (a rare event).

use super::ids::{TaskId, WorkerIdx};
use super::segment::{TaskFlags, TaskState};
use super::{wire, LogLevel, Server};

/// What the scan of the graph found on a lost worker.
#[derive(Default)]
struct Lost {
    /// Finished objects whose only copy was there.
    data: Vec<TaskId>,
    /// Tasks that were running there (now WAITING again).
    rerun: Vec<TaskId>,
    /// Tasks that were running there and have now crashed `max` workers.
    poison: Vec<TaskId>,
}

const WORKER_LOST: &[u8] = b"Worker lost";

impl Server {
    /// Worker `w` is gone (see the module doc for the rule).
    ///
    /// A worker that said it was leaving (or that the server let go) "departed" (`info`); its
    /// running tasks, if any, are rescheduled without counting as a crash. Otherwise TCP cannot
    /// tell an orderly exit from a crash: logged as a departure (`info`) when nothing ran there,
    /// as a loss (`warn`) otherwise.
    pub(super) fn lose_worker(&mut self, w: WorkerIdx) {
        if !self.workers.lose(w) {
            return;
        }
        let addr = self.workers[w].addr.clone();
        let leaving = self.workers[w].leaving;
        let lost = self.forget_worker(w, !leaving);
        let idx = w.index();
        match (lost.rerun.len(), lost.poison.len()) {
            (0, 0) if leaving => self.log(
                LogLevel::Info,
                format!("worker {idx} ({addr}) departed"),
            ),
            (r, _) if leaving => self.log(
                LogLevel::Info,
                format!("worker {idx} ({addr}) departed; its {r} running task(s) are rescheduled"),
            ),
            (0, 0) => self.log(
                LogLevel::Info,
                format!("worker {idx} ({addr}) disconnected"),
            ),
            (r, 0) => self.log(
                LogLevel::Warn,
                format!("worker {idx} ({addr}) lost while running {r} task(s); they are rescheduled"),
            ),
            (r, p) => self.log(
                LogLevel::Warn,
                format!(
                    "worker {idx} ({addr}) lost while running {} task(s); {r} rescheduled, {p} failed (too many crashed workers)",
                    r + p
                ),
            ),
        }
        self.reroute_transfers(w);
        let mut recount = lost.rerun;
        for x in lost.poison {
            let Some(s) = self.graph.locate(x) else {
                continue;
            };
            // Failed meanwhile as a dependant of another poison task (one recomputed under it).
            if !self.graph.state(s).is_pending() {
                continue;
            }
            let msg = self.crashes.message();
            self.log(
                LogLevel::Warn,
                format!("task {}: {}", x.get(), String::from_utf8_lossy(&msg)),
            );
            // Not finished: it still holds its inputs.
            self.fail_tree(s, &addr, msg, true);
        }
        let fail = self.recover_data(&lost.data, &mut recount);
        for x in fail {
            // An earlier failure may have released it meanwhile (freed: nothing to fail).
            let Some(s) = self.graph.locate(x) else {
                continue;
            };
            if self.graph.state(s) != TaskState::Finished {
                continue;
            }
            self.fail_tree(s, &addr, WORKER_LOST.to_vec(), false);
        }
        if !self.moves.fetches.is_empty() {
            self.reroute_fetches(w);
        }
        self.recount_waiting(recount);
    }

    /// Drops `w` from every owner list: its copies are forgotten, another copy becomes primary
    /// where there is one; tasks running there become WAITING.
    /// `crashed`: running tasks count a crash ([`super::poison`]); false for a departure.
    fn forget_worker(&mut self, w: WorkerIdx, crashed: bool) -> Lost {
        let mut lost = Lost::default();
        let extra_owners = &mut self.moves.extra_owners;
        let crashes = &mut self.crashes;
        for seg in self.graph.segs.iter_mut() {
            for off in 0..seg.n as usize {
                let id = seg.id(off);
                match seg.tasks[off].state {
                    TaskState::Finished => {
                        if !extra_owners.is_empty() {
                            extra_owners.retain_of(id, |&mut o| o != w);
                        }
                        if seg.tasks[off].wk == Some(w) {
                            // Another copy, if any, becomes the primary one.
                            seg.tasks[off].wk = extra_owners.take_first(id);
                            if seg.tasks[off].wk.is_none() {
                                lost.data.push(id);
                            }
                        }
                    }
                    TaskState::Running if seg.tasks[off].wk == Some(w) => {
                        seg.set_state(off, TaskState::Waiting);
                        seg.tasks[off].wk = None;
                        // A task sent early was only waiting for inputs: it took nothing down.
                        if crashed
                            && !seg.tasks[off].flags.has(TaskFlags::EARLY)
                            && crashes.note(id)
                        {
                            lost.poison.push(id);
                        } else {
                            lost.rerun.push(id);
                        }
                    }
                    _ => {}
                }
            }
        }
        lost
    }

    /// Transfers to `w` are dropped; transfers from `w` are re-sent from the object's owner,
    /// or wait for its recomputation (source None). Redirections to or through `w` are
    /// forgotten: a re-sent transfer starts its round of copies anew, and a worker registered
    /// later in `w`'s slot must not inherit where `w`'s attempts began.
    fn reroute_transfers(&mut self, w: WorkerIdx) {
        if !self.moves.redirected.is_empty() {
            self.moves
                .redirected
                .retain(|&(_, target), r| target != w && r.now != w);
        }
        let mut resend: Vec<(TaskId, WorkerIdx)> = Vec::new();
        self.moves.in_flight.retain(|x, t| {
            if t.target == w {
                return false;
            }
            if t.source == Some(w) {
                t.source = None;
                resend.push((x, t.target));
            }
            true
        });
        for (x, target) in resend {
            let Some(s) = self.graph.locate(x) else {
                continue;
            };
            let Some(p) = self.graph.seg(s).tasks[s.off].wk else {
                continue;
            };
            if self.graph.state(s) != TaskState::Finished {
                continue;
            }
            let taddr = self.workers[target].addr.clone();
            wire::push_send(&mut self.workers[p].out, x, &taddr);
            self.moves.in_flight.retain_of(x, |t| {
                if t.target == target {
                    t.source = Some(p);
                }
                true
            });
        }
    }

    /// Objects lost with the worker: freed when nothing needs them, else set to be recomputed
    /// (their inputs get their references back; they and their consumers are added to
    /// `recount`). Returns those that cannot be recomputed (an input is gone).
    fn recover_data(&mut self, lost: &[TaskId], recount: &mut Vec<TaskId>) -> Vec<TaskId> {
        let mut lost = lost.to_vec();
        lost.sort_unstable();
        let mut fail = Vec::new();
        for &x in &lost {
            // A poison task failed before this pass may have released it: freed already (its
            // segment must not be retired twice).
            let Some(s) = self.graph.locate(x) else {
                continue;
            };
            if self.graph.state(s) != TaskState::Finished {
                continue;
            }
            let seg = self.graph.seg(s);
            if seg.tasks[s.off].refc == 0 && !seg.tasks[s.off].flags.has(TaskFlags::RESULT) {
                self.graph.retire(s, TaskState::Freed);
                continue;
            }
            let ins: Vec<TaskId> = self.graph.inputs_of(s).to_vec();
            let ok = ins
                .iter()
                .all(|&i| self.graph.state_of(i).is_some_and(TaskState::is_live));
            if !ok {
                fail.push(x);
                continue;
            }
            self.graph.seg_mut(s).set_state(s.off, TaskState::Waiting);
            for &i in &ins {
                let is = self.graph.locate(i).expect("checked");
                let iseg = self.graph.seg_mut(is);
                iseg.tasks[is.off].refc += 1;
                if is.seg != s.seg && iseg.tasks[is.off].state != TaskState::Finished {
                    let e = self.graph.extra_cons.entry(i).or_default();
                    if !e.contains(&x) {
                        e.push(x);
                    }
                }
            }
            recount.push(x);
            recount.extend_from_slice(self.graph.seg(s).consumers(s.off));
            if let Some(e) = self.graph.extra_cons.get(&x) {
                recount.extend_from_slice(e);
            }
        }
        fail
    }

    /// Fetches whose SEND went to `w`: re-sent from another owner, kept until the
    /// recomputation finishes, or dropped (the task failed or was freed).
    fn reroute_fetches(&mut self, w: WorkerIdx) {
        let addr = self.fetch_address.clone();
        for id in self.moves.fetches.ids() {
            let (state, owner) = match self.graph.locate(id) {
                Some(s) => (self.graph.state(s), self.graph.seg(s).tasks[s.off].wk),
                None => (TaskState::Freed, None),
            };
            let mut sends = 0;
            self.moves.fetches.update(id, |f| {
                if f.sender != Some(w) {
                    return true;
                }
                match owner {
                    Some(o) if state == TaskState::Finished => {
                        f.sender = Some(o);
                        sends += 1;
                        true
                    }
                    _ if state.is_pending() => {
                        f.sender = None;
                        true
                    }
                    _ => false,
                }
            });
            if let Some(o) = owner {
                for _ in 0..sends {
                    wire::push_send(&mut self.workers[o].out, id, &addr);
                }
            }
        }
    }

    /// Recomputes the waiting counts of tasks whose inputs were lost or are recomputed; those
    /// with nothing to wait for become ready.
    fn recount_waiting(&mut self, tasks: Vec<TaskId>) {
        for t in tasks {
            let Some(s) = self.graph.locate(t) else {
                continue;
            };
            let st = self.graph.state(s);
            if st != TaskState::Waiting && st != TaskState::Ready {
                continue;
            }
            let waiting = self
                .graph
                .inputs_of(s)
                .iter()
                .filter(|&&i| {
                    self.graph
                        .state_of(i)
                        .is_some_and(|st| st != TaskState::Finished)
                })
                .count() as u32;
            let seg = self.graph.seg_mut(s);
            seg.tasks[s.off].waiting = waiting;
            if waiting > 0 {
                seg.set_state(s.off, TaskState::Waiting);
            } else if st == TaskState::Waiting {
                self.make_ready(s);
            }
        }
    }
}
