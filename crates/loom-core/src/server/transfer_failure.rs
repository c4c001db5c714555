//! A worker gave up sending an object to another worker (`WorkerResponse{TRANSFER_FAILED}`, our
//! extension): its data connection to the target was refused (e.g. at authentication: the two
//! hold different secrets) or broke on every retry. Without this the target's tasks would wait
//! for the object forever. Rule implemented:
//! - another live copy of the object (not on the target) sends it instead: SEND from there. The
//!   copies are tried in registration order starting after the sender that gave up first,
//!   wrapping around (any copy, registered before or after it), each at most once: the attempts
//!   end when the order would come back to that first sender;
//! - otherwise the tasks sent to the target that need the object fail, each with an error naming
//!   the object (the client's task id and label), both workers and the sender's cause; their
//!   dependants fail with them (TASK_FAILED for held results) and the target forgets them
//!   (CANCEL). The object itself stays where it is: other tasks may use it.

use super::counters::{failure_message, now_ms, Failure};
use super::ids::{TaskId, WorkerIdx};
use super::segment::TaskState;
use super::transfers::Redirected;
use super::{wire, LogLevel, Server};

impl Server {
    /// TRANSFER_FAILED from `w` for object `id`; `msg` is the SEND's address, a newline, and
    /// the cause. Stale reports (the transfer ended, the target is gone) are ignored.
    pub(super) fn transfer_failed(&mut self, w: WorkerIdx, id: TaskId, msg: &[u8]) {
        let text = String::from_utf8_lossy(msg).into_owned();
        let (address, cause) = text.split_once('\n').unwrap_or((&text, "no reason given"));
        let Some(target) = self
            .workers
            .alive()
            .find(|(_, wk)| wk.addr == address)
            .map(|(i, _)| i)
        else {
            // The target was lost meanwhile (its transfers went with it), or it is no worker.
            return self.log(
                LogLevel::Debug,
                format!(
                    "transfer of data id={} to {address} failed, no worker there now: {cause}",
                    id.get()
                ),
            );
        };
        let pending = self
            .moves
            .in_flight
            .any(id, |t| t.target == target && t.source == Some(w));
        let Some(s) = self.graph.locate(id).filter(|_| pending) else {
            return;
        };
        let source = self.workers[w].addr.clone();
        // Another copy: the next one after `w` in registration order counted from the sender
        // that gave up first (wrapping around), so each copy is tried once.
        let first = match self.moves.redirected.get(&(id, target)) {
            Some(r) if r.now == w => r.first,
            _ => w,
        };
        let after_first =
            |h: WorkerIdx| (h.index() + WorkerIdx::LIMIT - first.index()) % WorkerIdx::LIMIT;
        let seg = self.graph.seg(s);
        let finished = seg.tasks[s.off].state == TaskState::Finished;
        let mut holders: Vec<WorkerIdx> = seg.tasks[s.off].wk.into_iter().collect();
        holders.extend(self.moves.extra_owners.values(id));
        let next = holders
            .into_iter()
            .filter(|&h| {
                finished && after_first(h) > after_first(w) && h != target && self.workers[h].alive
            })
            .min_by_key(|&h| after_first(h));
        if let Some(h) = next {
            let other = self.workers[h].addr.clone();
            self.log(
                LogLevel::Warn,
                format!(
                    "transfer of data id={} from {source} to {address} failed ({cause}); sending it from {other} instead",
                    id.get()
                ),
            );
            wire::push_send(&mut self.workers[h].out, id, address);
            self.moves.in_flight.retain_of(id, |t| {
                if t.target == target {
                    t.source = Some(h);
                }
                true
            });
            self.moves
                .redirected
                .insert((id, target), Redirected { first, now: h });
            return;
        }
        // No other way there: the transfer ends, the tasks that wait for it there fail.
        self.moves.arrived(id, target);
        let label = match self.graph.label_of(id) {
            "" => String::new(),
            l => format!(" ({l})"),
        };
        let object = match self.graph.seg(s).client_id(s.off) {
            Some(cid) => format!("input task id={cid}{label}"),
            None => format!("an input{label}"),
        };
        let message = format!(
            "{object} could not be transferred from worker {source} to worker {address}: {cause}"
        );
        let mut waiting: Vec<TaskId> = self.graph.seg(s).consumers(s.off).to_vec();
        if let Some(e) = self.graph.extra_cons.get(&id) {
            waiting.extend(e.iter().copied());
        }
        let mut failed = 0usize;
        for c in waiting {
            let Some(cs) = self.graph.locate(c) else {
                continue;
            };
            let cseg = self.graph.seg(cs);
            if cseg.tasks[cs.off].state != TaskState::Running
                || cseg.tasks[cs.off].wk != Some(target)
            {
                continue;
            }
            let failure = Failure {
                plan: cseg.plan.0,
                task: cseg.client_id(cs.off).unwrap_or(-1),
                label: self.graph.label_of(c).to_owned(),
                worker: address.to_owned(),
                message: failure_message(message.as_bytes()),
                time_ms: now_ms(),
            };
            self.abandon_running(cs, c);
            self.record_failure(failure, address);
            // Not started: it still holds its inputs.
            self.fail_tree(cs, address, message.as_bytes().to_vec(), true);
            failed += 1;
        }
        if failed == 0 {
            self.log(
                LogLevel::Warn,
                format!(
                    "transfer of data id={} from {source} to {address} failed: {cause}",
                    id.get()
                ),
            );
        }
    }
}
