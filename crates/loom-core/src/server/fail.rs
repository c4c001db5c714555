//! Failure propagation: a task fails (on its worker, or its data was lost with no way to
//! recompute it) and so does every planned task depending on it.

use super::clients::FailedTask;
use super::ids::{Slot, TaskId};
use super::segment::{TaskFlags, TaskState};
use super::Server;

impl Server {
    /// Fails the task at `s` and everything that depends on it. The client gets TASK_FAILED
    /// for the root (if it is a held result) and for each dependent held result, every one
    /// naming the root — the task that failed — with its label and raw `msg` (no nesting).
    /// `release_inputs`: the root still holds references on its inputs (it had not finished).
    pub(super) fn fail_tree(&mut self, s: Slot, worker: &str, msg: Vec<u8>, release_inputs: bool) {
        let seg = self.graph.seg(s);
        let root = seg.id(s.off);
        // Expansion pieces have no client id (they are never results).
        let root_cid = seg.client_id(s.off).unwrap_or(-1);
        let ci = seg.client;
        let held = seg.tasks[s.off].flags.has(TaskFlags::RESULT);
        let failed = FailedTask {
            id: root_cid,
            label: self.graph.label_of(root).to_owned(),
        };
        self.graph.retire(s, TaskState::Failed);
        self.crashes.forget(root);
        if held {
            self.clients[ci].task_failed(root_cid, &failed, worker, &msg);
        }
        let mut stack = vec![(root, release_inputs)];
        while let Some((t, release)) = stack.pop() {
            let Some(ts) = self.graph.locate(t) else {
                continue;
            };
            if release {
                for x in self.graph.inputs_of(ts).to_vec() {
                    self.dec_ref(ts.seg, x);
                }
            }
            let mut cons: Vec<TaskId> = self.graph.seg(ts).consumers(ts.off).to_vec();
            if let Some(e) = self.graph.extra_cons.remove(&t) {
                cons.extend(e);
            }
            for c in cons {
                if self.fail_dependant(c, &failed, worker, &msg) {
                    stack.push((c, true));
                }
            }
        }
    }

    /// Task `c` (at `cs`), sent to its worker, will never start there (an input failed or
    /// cannot reach it): the worker's slot for it is freed and a worker that takes CANCEL
    /// forgets it (else it waits there for an input that never comes).
    pub(super) fn abandon_running(&mut self, cs: Slot, c: TaskId) {
        let seg = self.graph.seg_mut(cs);
        let off = cs.off;
        let w = seg.tasks[off].wk.expect("a running task has a worker");
        let cpus = seg.tasks[off].cpus;
        if seg.tasks[off].flags.has(TaskFlags::EARLY) {
            // Sent early: the worker will not answer for it, so its light slot is freed here.
            seg.tasks[off].flags.remove(TaskFlags::EARLY);
            let wk = &mut self.workers[w];
            if wk.alive {
                wk.light = wk.light.saturating_sub(1);
                wk.tasks = wk.tasks.saturating_sub(1);
                if wk.can_cancel {
                    super::wire::push_cancel(&mut wk.out, c);
                }
            }
        } else if self.workers[w].alive {
            let wk = &mut self.workers[w];
            if wk.can_cancel {
                // Canceled, its cores are free at once. A late answer gets REMOVE (FINISHED)
                // or is ignored (FAILED).
                super::wire::push_cancel(&mut wk.out, c);
                wk.unbook(cpus);
            } else {
                // Freed when the worker answers.
                wk.residual.insert(c, cpus);
            }
        }
    }

    /// Fails pending task `c` because an input failed; false if it was not pending.
    fn fail_dependant(&mut self, c: TaskId, failed: &FailedTask, worker: &str, msg: &[u8]) -> bool {
        let Some(cs) = self.graph.locate(c) else {
            return false;
        };
        let seg = self.graph.seg(cs);
        let off = cs.off;
        let st = seg.tasks[off].state;
        // A task loaded from its checkpoint does not need its inputs.
        if !st.is_pending() || seg.tasks[off].flags.has(TaskFlags::LOAD) {
            return false;
        }
        if st == TaskState::Running {
            self.abandon_running(cs, c);
        }
        let seg = self.graph.seg(cs);
        let held = seg.tasks[off].flags.has(TaskFlags::RESULT);
        let (cid, cl) = (seg.client_id(off), seg.client);
        self.graph.retire(cs, TaskState::Failed);
        if held {
            let cid = cid.expect("results are plan tasks");
            self.clients[cl].task_failed(cid, failed, worker, msg);
        }
        true
    }
}
