//! How much ready work waits for a worker: the TS server polls it to warn when a plan cannot make
//! progress (no worker connected, or none that can run some tasks). A read-only query.

use super::ids::TaskId;
use super::segment::TaskState;
use super::Server;

/// Ready tasks that no worker is running, as counted by [`Server::waiting`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Connected workers.
    pub workers: u32,
    /// Ready tasks held back because no worker is connected (0 while one is).
    pub without_worker: u64,
    /// Ready tasks no connected worker can run: none registered the task type, or none has the
    /// cores the task requests.
    pub unrunnable: u64,
}

impl Server {
    /// Counts ready tasks that wait for a worker. Cost: one lookup per queued task while no worker
    /// is connected (the queues are not drained then), one per parked task.
    pub fn waiting(&self) -> Waiting {
        let ready = |id: TaskId| self.graph.state_of(id) == Some(TaskState::Ready);
        let workers = self.workers.n_alive;
        Waiting {
            workers,
            // With workers connected, queued tasks wait for room, which is normal: not counted.
            without_worker: if workers == 0 {
                self.ready.count_queued(ready) as u64
            } else {
                0
            },
            unrunnable: self.ready.count_parked(ready) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::push_frame;
    use crate::proto::comm::{
        client_request, ClientRequest, Plan, Register, Resource, ResourceRequest, Task,
    };
    use crate::symbols::ORIGINAL_TASK_TYPES;

    const CONST: i32 = 7;
    const RUN: i32 = 13;
    const CPUS: i32 = 4;

    fn framed<M: prost::Message>(m: &M) -> Vec<u8> {
        let mut v = Vec::new();
        push_frame(&mut v, m);
        v
    }

    fn register(s: &mut Server, conn: u32, worker_cpus: Option<i32>) {
        let r = match worker_cpus {
            Some(cpus) => Register {
                protocol_version: 2,
                r#type: 1,
                port: Some(1000 + conn as i32),
                task_types: ORIGINAL_TASK_TYPES.iter().map(|s| s.to_string()).collect(),
                data_types: vec!["loom/data".into()],
                cpus: Some(cpus),
                features: Vec::new(),
                session: None,
                held: Vec::new(),
            },
            None => Register {
                protocol_version: 2,
                r#type: 2,
                ..Default::default()
            },
        };
        s.on_connect(conn, "127.0.0.1");
        s.on_data(conn, &framed(&r));
        s.take_output();
    }

    /// A plan of two consts and a `run` asking for 8 cpus, all results.
    fn plan() -> ClientRequest {
        let t = |ty: i32, rr: Option<i32>| Task {
            task_type: ty,
            config: Vec::new().into(),
            input_ids: vec![],
            resource_request_index: rr,
            result: Some(true),
            ..Default::default()
        };
        ClientRequest {
            r#type: client_request::Type::Plan as i32,
            plan: Some(Plan {
                resource_requests: vec![ResourceRequest {
                    resources: vec![Resource {
                        resource_type: CPUS,
                        value: 8,
                    }],
                }],
                tasks: vec![t(CONST, None), t(CONST, None), t(RUN, Some(0))],
                id_base: Some(0),
            }),
            load_checkpoints: Some(false),
            ..Default::default()
        }
    }

    #[test]
    fn counts_tasks_waiting_for_any_worker_then_for_a_big_enough_one() {
        let mut s = Server::new(9999);
        assert_eq!(s.waiting(), Waiting::default());
        register(&mut s, 2, None);
        s.on_data(2, &framed(&plan()));
        s.take_output();
        let w = s.waiting();
        assert_eq!((w.workers, w.without_worker, w.unrunnable), (0, 3, 0));
        // A 2-cpu worker takes the consts; the 8-cpu run waits for a worker that can run it.
        register(&mut s, 1, Some(2));
        let w = s.waiting();
        assert_eq!((w.workers, w.without_worker, w.unrunnable), (1, 0, 1));
        // The client leaves: its tasks are discarded and nothing waits any more.
        s.on_close(2);
        s.take_output();
        assert_eq!(s.waiting().unrunnable, 0);
    }
}
