//! Drives [`Server`] through its event functions with encoded frames (no sockets): the
//! harness [`H`] here, the scenarios in the submodules.

mod checkpoints;
mod clients;
mod expand_and_trace;
mod failures;
mod faults;
mod finish_paths;
mod journal;
mod relay;
mod robustness;
mod scheduling;
mod status;
mod transfer_failure;

use super::*;
use crate::frame::FrameError;
use crate::proto::comm::{
    client_request, client_response, worker_response, ClientRequest, ClientResponse, DataHeader,
    Plan, Resource, ResourceRequest, Task, WorkerResponse,
};
use crate::proto::comm::{Register, WorkerCommand};
use crate::symbols::ORIGINAL_TASK_TYPES;
use prost::Message;
use workers::LIGHT_CAP;

/// The first worker that registered.
pub(super) const W0: WorkerIdx = WorkerIdx::FIRST;

pub(super) const CONST: i32 = 7;
pub(super) const MERGE: i32 = 8;
pub(super) const ARRAY: i32 = 12;
pub(super) const RUN: i32 = 13;
pub(super) const DSLICE: i32 = 2;
pub(super) const DGET: i32 = 3;

pub(super) fn framed<M: Message>(m: &M) -> Vec<u8> {
    let mut v = Vec::new();
    push_frame(&mut v, m);
    v
}

pub(super) fn split(buf: &[u8]) -> Vec<Vec<u8>> {
    let mut r = FrameReader::new(u64::MAX);
    let mut v = Vec::new();
    r.feed::<FrameError>(buf, |f| {
        v.push(f.to_vec());
        Ok(())
    })
    .unwrap();
    v
}

pub(super) fn task(ty: i32, cfg: &[u8], inputs: &[i32], result: bool) -> Task {
    Task {
        task_type: ty,
        config: cfg.to_vec().into(),
        input_ids: inputs.to_vec(),
        resource_request_index: None,
        result: Some(result),
        ..Default::default()
    }
}

/// Two merges (results) of two consts each: tasks 0, 1 -> 2 and 3, 4 -> 5; the second merge
/// takes its consts in the order `second` (`[3, 4]` or `[4, 3]`).
pub(super) fn two_merges(second: [i32; 2]) -> Vec<Task> {
    let c = |cfg: &[u8]| task(CONST, cfg, &[], false);
    vec![
        c(b"a"),
        c(b"b"),
        task(MERGE, b"", &[0, 1], true),
        c(b"c"),
        c(b"d"),
        task(MERGE, b"", &second, true),
    ]
}

/// A dslice over an array of 8 consts, and a merge over the dslice (the result): consts 0..8,
/// the array 8, the dslice 9, the merge 10.
pub(super) fn dslice_plan() -> Vec<Task> {
    let mut tasks: Vec<Task> = (0..8).map(|_| task(CONST, b"c", &[], false)).collect();
    tasks.push(task(ARRAY, b"", &(0..8).collect::<Vec<_>>(), false)); // 8
    tasks.push(task(DSLICE, b"", &[8], false)); // 9
    tasks.push(task(MERGE, b"", &[9], true)); // 10
    tasks
}

pub(super) fn with_cpus(mut t: Task, rr: i32) -> Task {
    t.resource_request_index = Some(rr);
    t
}

pub(super) fn plan_req(id_base: i32, tasks: Vec<Task>, cpus: &[i32]) -> ClientRequest {
    ClientRequest {
        r#type: client_request::Type::Plan as i32,
        plan: Some(Plan {
            resource_requests: cpus
                .iter()
                .map(|&c| ResourceRequest {
                    resources: vec![Resource {
                        resource_type: 4,
                        value: c,
                    }],
                })
                .collect(),
            tasks,
            id_base: Some(id_base),
        }),
        load_checkpoints: Some(false),
        ..Default::default()
    }
}

pub(super) fn req(ty: client_request::Type, id: Option<i32>) -> ClientRequest {
    ClientRequest {
        r#type: ty as i32,
        id,
        ..Default::default()
    }
}

#[derive(Default)]
pub(super) struct Seen {
    cmds: HashMap<ConnId, Vec<WorkerCommand>>,
    resps: HashMap<ConnId, Vec<ClientResponse>>,
    close: Vec<ConnId>,
    terminate: bool,
}

pub(super) struct H {
    s: Server,
    workers: Vec<ConnId>,
}

impl H {
    pub(super) fn new() -> H {
        H {
            s: Server::new(9999),
            workers: Vec::new(),
        }
    }

    pub(super) fn worker(&mut self, conn: ConnId, cpus: i32) {
        self.worker_registering(conn, cpus, &ORIGINAL_TASK_TYPES, Vec::new());
    }

    /// A worker registering `types`.
    pub(super) fn worker_with_types(&mut self, conn: ConnId, cpus: i32, types: &[&str]) {
        self.worker_registering(conn, cpus, types, Vec::new());
    }

    /// A worker re-registering with the objects it kept (`Register.held`, our extension).
    pub(super) fn worker_holding(
        &mut self,
        conn: ConnId,
        cpus: i32,
        held: Vec<crate::proto::comm::HeldObject>,
    ) {
        self.worker_registering(conn, cpus, &ORIGINAL_TASK_TYPES, held);
    }

    fn worker_registering(
        &mut self,
        conn: ConnId,
        cpus: i32,
        types: &[&str],
        held: Vec<crate::proto::comm::HeldObject>,
    ) {
        self.s.on_connect(conn, "10.0.0.1");
        let r = Register {
            protocol_version: 2,
            r#type: 1,
            port: Some(1000 + conn as i32),
            task_types: types.iter().map(|s| s.to_string()).collect(),
            data_types: vec!["loom/data".into()],
            cpus: Some(cpus),
            features: Vec::new(),
            session: None,
            held,
        };
        self.s.on_data(conn, &framed(&r));
        self.workers.push(conn);
    }

    pub(super) fn client(&mut self, conn: ConnId) {
        self.s.on_connect(conn, "10.0.0.2");
        let r = Register {
            protocol_version: 2,
            r#type: 2,
            ..Default::default()
        };
        self.s.on_data(conn, &framed(&r));
    }

    pub(super) fn send(&mut self, conn: ConnId, m: &ClientRequest) {
        self.s.on_data(conn, &framed(m));
    }

    pub(super) fn respond(
        &mut self,
        conn: ConnId,
        ty: worker_response::Type,
        id: i32,
        size: u64,
        length: u64,
    ) {
        let m = WorkerResponse {
            r#type: ty as i32,
            id,
            size: Some(size),
            length: Some(length),
            error_msg: if ty == worker_response::Type::Failed {
                Some(b"boom"[..].into())
            } else {
                None
            },
        };
        self.s.on_data(conn, &framed(&m));
    }

    pub(super) fn fin(&mut self, conn: ConnId, id: i32, size: u64) {
        self.respond(conn, worker_response::Type::Finished, id, size, 0);
    }

    pub(super) fn take(&mut self) -> Seen {
        let out = self.s.take_output();
        let mut seen = Seen {
            close: out.close,
            terminate: out.terminate,
            ..Default::default()
        };
        for (conn, buf) in out.writes {
            for f in split(&buf) {
                if self.workers.contains(&conn) {
                    seen.cmds
                        .entry(conn)
                        .or_default()
                        .push(WorkerCommand::decode(&f[..]).unwrap());
                } else {
                    seen.resps
                        .entry(conn)
                        .or_default()
                        .push(ClientResponse::decode(&f[..]).unwrap());
                }
            }
        }
        seen
    }
}

impl Seen {
    pub(super) fn of(&self, conn: ConnId, ty: i32) -> Vec<&WorkerCommand> {
        self.cmds
            .get(&conn)
            .map(|v| v.iter().filter(|c| c.r#type == ty).collect())
            .unwrap_or_default()
    }
    pub(super) fn tasks(&self, conn: ConnId) -> Vec<i32> {
        self.of(conn, 1).iter().map(|c| c.id.unwrap()).collect()
    }
    pub(super) fn removes(&self, conn: ConnId) -> Vec<i32> {
        let mut v: Vec<i32> = self.of(conn, 3).iter().map(|c| c.id.unwrap()).collect();
        v.sort();
        v
    }
    pub(super) fn resp(&self, conn: ConnId) -> Vec<&ClientResponse> {
        self.resps
            .get(&conn)
            .map(|v| v.iter().collect())
            .unwrap_or_default()
    }
    pub(super) fn finished(&self, conn: ConnId) -> Vec<i32> {
        self.resp(conn)
            .iter()
            .filter(|r| r.r#type == 2)
            .map(|r| r.id.unwrap())
            .collect()
    }
    pub(super) fn errors(&self, conn: ConnId) -> Vec<String> {
        self.resp(conn)
            .iter()
            .filter(|r| r.r#type == 4 || r.r#type == 3)
            .map(|r| {
                String::from_utf8_lossy(r.error.as_ref().unwrap().error_msg.as_deref().unwrap())
                    .into_owned()
            })
            .collect()
    }

    /// The task ids of the ERROR and TASK_FAILED responses to `conn`.
    pub(super) fn error_ids(&self, conn: ConnId) -> Vec<Option<i32>> {
        self.resp(conn)
            .iter()
            .filter(|r| r.r#type == 4 || r.r#type == 3)
            .map(|r| r.error.as_ref().unwrap().id)
            .collect()
    }
}

pub(super) fn stats(h: &mut H, c: ConnId) -> (i32, i32) {
    h.send(c, &req(client_request::Type::Stats, None));
    let seen = h.take();
    let st = seen
        .resp(c)
        .iter()
        .find(|r| r.r#type == 11)
        .unwrap()
        .stats
        .unwrap();
    (st.n_workers.unwrap(), st.n_data_objects.unwrap())
}

/// One worker (conn 1, `cpus`) and one client (conn 2), outputs drained.
pub(super) fn setup(cpus: i32) -> H {
    let mut h = H::new();
    h.worker(1, cpus);
    h.client(2);
    let seen = h.take();
    assert_eq!(seen.of(1, 8).len(), 1, "worker dictionary");
    assert_eq!(seen.resp(2)[0].r#type, 10, "client dictionary");
    assert_eq!(seen.resp(2)[0].symbols.len(), h.s.symbols.names().len());
    h
}

/// Sends a plan from client 2 and returns the text of its rejection.
pub(super) fn rejected(h: &mut H, p: ClientRequest) -> String {
    h.send(2, &p);
    let seen = h.take();
    assert!(
        seen.cmds.is_empty(),
        "nothing scheduled for a rejected plan"
    );
    let e = seen.errors(2);
    assert_eq!(e.len(), 1, "{e:?}");
    e[0].clone()
}
