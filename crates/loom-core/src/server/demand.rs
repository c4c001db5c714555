//! What the allocator needs to know (read-only queries; see `packages/hyperloom/src/allocator`):
//! the ready tasks that the connected workers cannot take, and which workers are idle.
//!
//! Kept apart from the scheduler: these only read its queues and the workers' bookings.

use std::collections::HashMap;

use super::ids::{TaskId, WorkerIdx};
use super::segment::TaskState;
use super::{ConnId, Server};

/// Ready tasks of one cpu request waiting for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitingClass {
    /// Cpus each task requests (0: a light task).
    pub cpus: u16,
    /// How many wait (counted up to the `limit` given to [`Server::waiting_tasks`]).
    pub tasks: u32,
}

/// A connected worker's load, as the scheduler booked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLoad {
    /// Its connection.
    pub conn: ConnId,
    /// Cpus it registered.
    pub cpus: u32,
    /// Cpus booked by tasks sent to it and not answered yet, discarded ones included (may exceed
    /// `cpus`: queued there).
    pub booked_cpus: u32,
    /// Light (0-cpu) tasks in flight there, including discarded ones still running.
    pub light_tasks: u32,
}

impl WorkerLoad {
    /// Nothing runs or waits there.
    pub fn idle(&self) -> bool {
        self.booked_cpus == 0 && self.light_tasks == 0
    }
}

impl Server {
    /// The cpus of the largest worker the allocation queues can start (0: no queue). A plan is
    /// rejected when a task asks for more cpus than every connected worker has (see `ingest`),
    /// unless such a worker can still come from a queue: then the task waits for it.
    pub fn set_allocatable_cpus(&mut self, cpus: u32) {
        self.workers.allocatable_cpus = cpus;
    }

    /// Ready tasks no connected worker has room for, per cpu request, largest request first.
    ///
    /// After every event the scheduler has placed all it could, so what is left in the ready
    /// queues (and the tasks parked because no worker can ever run them) waits for more workers.
    /// Each class is counted up to `limit` (the allocator never needs more), so a call costs at
    /// most `limit` lookups per class however long the queues are.
    pub fn waiting_tasks(&self, limit: u32) -> Vec<WaitingClass> {
        let mut classes: Vec<WaitingClass> = Vec::new();
        let mut add = |cpus: u16, n: u32| {
            if n == 0 {
                return;
            }
            match classes.iter_mut().find(|c| c.cpus == cpus) {
                Some(c) => c.tasks = (c.tasks + n).min(limit),
                None => classes.push(WaitingClass {
                    cpus,
                    tasks: n.min(limit),
                }),
            }
        };
        for (cpus, q) in self.ready.queued() {
            add(cpus, self.count_ready(q.iter(), limit));
        }
        // Parked tasks: a mix of cpu requests (no worker has the cpus or the type).
        let mut parked: Vec<(u16, u32)> = Vec::new();
        for &id in self.ready.parked() {
            if let Some(s) = self.graph.locate(id) {
                if self.graph.state(s) == TaskState::Ready {
                    let c = self.graph.seg(s).tasks[s.off].cpus;
                    match parked.iter_mut().find(|p| p.0 == c) {
                        Some(p) => p.1 = p.1.saturating_add(1),
                        None => parked.push((c, 1)),
                    }
                }
            }
        }
        for (c, n) in parked {
            add(c, n);
        }
        classes.sort_by_key(|c| std::cmp::Reverse(c.cpus));
        classes
    }

    /// Queue entries that are still ready tasks (entries of discarded tasks are skipped), up to `limit`.
    fn count_ready<'a>(&self, ids: impl Iterator<Item = &'a TaskId>, limit: u32) -> u32 {
        let mut n = 0;
        for &id in ids {
            if n >= limit {
                break;
            }
            if self.graph.state_of(id) == Some(TaskState::Ready) {
                n += 1;
            }
        }
        n
    }

    /// The load of every connected worker.
    pub fn worker_loads(&self) -> Vec<WorkerLoad> {
        self.workers
            .alive()
            .map(|(_, w)| WorkerLoad {
                conn: w.conn,
                cpus: w.cpus,
                booked_cpus: w.booked_cpus(),
                light_tasks: w.light,
            })
            .collect()
    }

    /// For each connected worker, how many computed objects exist only there (they would have to
    /// be recomputed if it left). One scan of the live tasks: call it rarely (when a worker has
    /// been idle long enough to be let go), not per event.
    pub fn sole_copies(&self) -> Vec<(ConnId, u64)> {
        let mut counts: HashMap<WorkerIdx, u64> = HashMap::new();
        for seg in self.graph.segs.iter() {
            for off in 0..seg.n as usize {
                if seg.tasks[off].state != TaskState::Finished {
                    continue;
                }
                let Some(w) = seg.tasks[off].wk else { continue };
                let id = seg.base.plus(off);
                if !self.moves.extra_owners.contains(id) {
                    *counts.entry(w).or_default() += 1;
                }
            }
        }
        self.workers
            .alive()
            .map(|(w, wk)| (wk.conn, counts.get(&w).copied().unwrap_or(0)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::push_frame;
    use crate::proto::comm::{
        client_request, worker_response, ClientRequest, Plan, Register, Resource, ResourceRequest,
        Task, WorkerResponse,
    };
    use crate::symbols::ORIGINAL_TASK_TYPES;
    use prost::Message;

    /// The `loom/run/run` symbol id (spec 3.2).
    const RUN: i32 = 13;

    fn framed<M: Message>(m: &M) -> Vec<u8> {
        let mut v = Vec::new();
        push_frame(&mut v, m);
        v
    }

    fn worker(s: &mut Server, conn: ConnId, cpus: i32) {
        s.on_connect(conn, "10.0.0.1");
        let r = Register {
            protocol_version: 2,
            r#type: 1,
            port: Some(1000 + conn as i32),
            task_types: ORIGINAL_TASK_TYPES.iter().map(|s| s.to_string()).collect(),
            data_types: vec!["loom/data".into()],
            cpus: Some(cpus),
            features: Vec::new(),
            session: None,
            held: Vec::new(),
        };
        s.on_data(conn, &framed(&r));
    }

    /// A plan of independent `run` tasks, task i requesting `cpus[i]` cpus.
    fn plan(s: &mut Server, conn: ConnId, id_base: i32, cpus: &[i32]) {
        let tasks = cpus
            .iter()
            .enumerate()
            .map(|(i, _)| Task {
                task_type: RUN,
                config: Vec::new().into(),
                resource_request_index: Some(i as i32),
                result: Some(true),
                ..Default::default()
            })
            .collect();
        let resource_requests = cpus
            .iter()
            .map(|&c| ResourceRequest {
                resources: vec![Resource {
                    resource_type: 4,
                    value: c,
                }],
            })
            .collect();
        let req = ClientRequest {
            r#type: client_request::Type::Plan as i32,
            plan: Some(Plan {
                resource_requests,
                tasks,
                id_base: Some(id_base),
            }),
            load_checkpoints: Some(false),
            ..Default::default()
        };
        s.on_data(conn, &framed(&req));
    }

    fn finished(s: &mut Server, conn: ConnId, id: i32) {
        let m = WorkerResponse {
            r#type: worker_response::Type::Finished as i32,
            id,
            size: Some(10),
            length: Some(0),
            error_msg: None,
        };
        s.on_data(conn, &framed(&m));
    }

    fn class(cpus: u16, tasks: u32) -> WaitingClass {
        WaitingClass { cpus, tasks }
    }

    #[test]
    fn waiting_tasks_are_the_ready_tasks_no_worker_has_room_for() {
        let mut s = Server::new(9999);
        s.on_connect(1, "10.0.0.2");
        s.on_data(
            1,
            &framed(&Register {
                protocol_version: 2,
                r#type: 2,
                ..Default::default()
            }),
        );
        // Ten one-cpu tasks and two of three cpus, no worker yet: all wait.
        plan(&mut s, 1, 0, &[1; 10]);
        plan(&mut s, 1, 10, &[3, 3]);
        assert_eq!(s.waiting_tasks(100), vec![class(3, 2), class(1, 10)]);
        assert_eq!(
            s.waiting_tasks(4),
            vec![class(3, 2), class(1, 4)],
            "counted up to the limit"
        );
        assert!(s.worker_loads().is_empty());

        // A two-cpu worker takes four one-cpu tasks (twice its cpus may be booked); the
        // three-cpu tasks are parked (no worker can run them) and still wait.
        worker(&mut s, 2, 2);
        assert_eq!(s.waiting_tasks(100), vec![class(3, 2), class(1, 6)]);
        let loads = s.worker_loads();
        assert_eq!(loads.len(), 1);
        assert_eq!(
            (loads[0].conn, loads[0].cpus, loads[0].booked_cpus),
            (2, 2, 4)
        );
        assert!(!loads[0].idle());
        assert_eq!(s.sole_copies(), vec![(2, 0)]);

        // Every one-cpu task finishes there: only the three-cpu tasks wait, the worker is idle
        // and holds the ten results (nobody else has a copy).
        // (Internal ids are given in plan order from 0; tasks go out in queue order.)
        for id in 0..10 {
            finished(&mut s, 2, id);
        }
        assert_eq!(s.waiting_tasks(100), vec![class(3, 2)]);
        assert!(s.worker_loads()[0].idle());
        assert_eq!(s.sole_copies(), vec![(2, 10)]);

        // A task larger than any connected worker is refused, unless a queue can bring a worker
        // that large: then it waits (and is reported as waiting).
        s.take_output();
        plan(&mut s, 1, 12, &[4]);
        let refused = s.take_output();
        assert_eq!(
            refused.writes.len(),
            1,
            "the client is told the plan is refused"
        );
        assert_eq!(s.waiting_tasks(100), vec![class(3, 2)]);
        s.set_allocatable_cpus(4);
        plan(&mut s, 1, 12, &[4]);
        assert_eq!(s.waiting_tasks(100), vec![class(4, 1), class(3, 2)]);

        // The worker leaves: it no longer shows.
        s.on_close(2);
        assert!(s.worker_loads().is_empty());
        assert!(s.sole_copies().is_empty());
    }
}
