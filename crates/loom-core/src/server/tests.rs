//! Drives [`Server`] through its event functions with encoded frames (no sockets).

use super::*;
use crate::frame::FrameError;
use crate::proto::comm::{
    client_request, worker_response, ClientRequest, Plan, Resource, ResourceRequest, Task,
    WorkerResponse,
};
use crate::proto::comm::{Register, WorkerCommand};
use crate::symbols::ORIGINAL_TASK_TYPES;
use workers::LIGHT_CAP;

/// The first worker that registered.
const W0: WorkerIdx = WorkerIdx::FIRST;

const CONST: i32 = 7;
const MERGE: i32 = 8;
const ARRAY: i32 = 12;
const RUN: i32 = 13;
const DSLICE: i32 = 2;
const DGET: i32 = 3;

fn framed<M: Message>(m: &M) -> Vec<u8> {
    let mut v = Vec::new();
    push_frame(&mut v, m);
    v
}

fn split(buf: &[u8]) -> Vec<Vec<u8>> {
    let mut r = FrameReader::new(u64::MAX);
    let mut v = Vec::new();
    r.feed::<FrameError>(buf, |f| {
        v.push(f.to_vec());
        Ok(())
    })
    .unwrap();
    v
}

fn task(ty: i32, cfg: &[u8], inputs: &[i32], result: bool) -> Task {
    Task {
        task_type: ty,
        config: cfg.to_vec().into(),
        input_ids: inputs.to_vec(),
        resource_request_index: None,
        result: Some(result),
        ..Default::default()
    }
}

fn with_cpus(mut t: Task, rr: i32) -> Task {
    t.resource_request_index = Some(rr);
    t
}

fn plan_req(id_base: i32, tasks: Vec<Task>, cpus: &[i32]) -> ClientRequest {
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

fn req(ty: client_request::Type, id: Option<i32>) -> ClientRequest {
    ClientRequest {
        r#type: ty as i32,
        id,
        ..Default::default()
    }
}

#[derive(Default)]
struct Seen {
    cmds: HashMap<ConnId, Vec<WorkerCommand>>,
    resps: HashMap<ConnId, Vec<ClientResponse>>,
    close: Vec<ConnId>,
    terminate: bool,
}

struct H {
    s: Server,
    workers: Vec<ConnId>,
}

impl H {
    fn new() -> H {
        H {
            s: Server::new(9999),
            workers: Vec::new(),
        }
    }

    fn worker(&mut self, conn: ConnId, cpus: i32) {
        self.s.on_connect(conn, "10.0.0.1");
        let r = Register {
            protocol_version: 2,
            r#type: 1,
            port: Some(1000 + conn as i32),
            task_types: ORIGINAL_TASK_TYPES.iter().map(|s| s.to_string()).collect(),
            data_types: vec!["loom/data".into()],
            cpus: Some(cpus),
        };
        self.s.on_data(conn, &framed(&r));
        self.workers.push(conn);
    }

    fn client(&mut self, conn: ConnId) {
        self.s.on_connect(conn, "10.0.0.2");
        let r = Register {
            protocol_version: 2,
            r#type: 2,
            ..Default::default()
        };
        self.s.on_data(conn, &framed(&r));
    }

    fn send(&mut self, conn: ConnId, m: &ClientRequest) {
        self.s.on_data(conn, &framed(m));
    }

    fn respond(
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

    fn fin(&mut self, conn: ConnId, id: i32, size: u64) {
        self.respond(conn, worker_response::Type::Finished, id, size, 0);
    }

    fn take(&mut self) -> Seen {
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
    fn of(&self, conn: ConnId, ty: i32) -> Vec<&WorkerCommand> {
        self.cmds
            .get(&conn)
            .map(|v| v.iter().filter(|c| c.r#type == ty).collect())
            .unwrap_or_default()
    }
    fn tasks(&self, conn: ConnId) -> Vec<i32> {
        self.of(conn, 1).iter().map(|c| c.id.unwrap()).collect()
    }
    fn removes(&self, conn: ConnId) -> Vec<i32> {
        let mut v: Vec<i32> = self.of(conn, 3).iter().map(|c| c.id.unwrap()).collect();
        v.sort();
        v
    }
    fn resp(&self, conn: ConnId) -> Vec<&ClientResponse> {
        self.resps
            .get(&conn)
            .map(|v| v.iter().collect())
            .unwrap_or_default()
    }
    fn finished(&self, conn: ConnId) -> Vec<i32> {
        self.resp(conn)
            .iter()
            .filter(|r| r.r#type == 2)
            .map(|r| r.id.unwrap())
            .collect()
    }
    fn errors(&self, conn: ConnId) -> Vec<String> {
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
    fn error_ids(&self, conn: ConnId) -> Vec<Option<i32>> {
        self.resp(conn)
            .iter()
            .filter(|r| r.r#type == 4 || r.r#type == 3)
            .map(|r| r.error.as_ref().unwrap().id)
            .collect()
    }
}

fn stats(h: &mut H, c: ConnId) -> (i32, i32) {
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
fn setup(cpus: i32) -> H {
    let mut h = H::new();
    h.worker(1, cpus);
    h.client(2);
    let seen = h.take();
    assert_eq!(seen.of(1, 8).len(), 1, "worker dictionary");
    assert_eq!(seen.resp(2)[0].r#type, 10, "client dictionary");
    assert_eq!(seen.resp(2)[0].symbols.len(), h.s.symbols.names().len());
    h
}

#[test]
fn hello_full_flow() {
    let mut h = setup(1);
    let p = plan_req(
        0,
        vec![
            task(CONST, b"ABCDE", &[], false),
            task(CONST, b"123", &[], false),
            task(MERGE, b"", &[0, 1], true),
        ],
        &[],
    );
    h.send(2, &p);
    let seen = h.take();
    // The merge is pipelined: both its inputs are being computed on the same worker, so it is
    // sent in the same batch and the worker starts it when they are published.
    assert_eq!(seen.tasks(1), vec![0, 1, 2]);
    let t0 = seen.of(1, 1)[0];
    assert_eq!(t0.task_type, Some(CONST));
    assert_eq!(t0.task_config.as_deref(), Some(&b"ABCDE"[..]));
    assert_eq!(t0.checkpoint_path.as_deref(), Some(""));
    assert_eq!(seen.of(1, 1)[2].task_inputs, vec![0, 1]);
    h.fin(1, 0, 5);
    h.fin(1, 1, 3);
    let seen = h.take();
    assert!(seen.tasks(1).is_empty());
    assert_eq!(stats(&mut h, 2), (1, 2));
    h.fin(1, 2, 8);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![0, 1]);
    assert_eq!(seen.finished(2), vec![2]);
    h.send(2, &req(client_request::Type::Fetch, Some(2)));
    let seen = h.take();
    let send = seen.of(1, 2);
    assert_eq!(
        (send[0].id, send[0].address.as_deref()),
        (Some(2), Some("!:9999"))
    );
    let hdr = DataHeader {
        id: 2,
        n_messages: 1,
        type_id: 19,
    }
    .encode_to_vec();
    let relay = h.s.on_data_header(&hdr).unwrap();
    assert_eq!(relay.client, 2);
    assert_eq!(relay.n_messages, 1);
    let r = ClientResponse::decode(&split(&relay.response_frame)[0][..]).unwrap();
    assert_eq!((r.r#type, r.data.unwrap().id), (1, 2));
    assert!(matches!(
        h.s.on_data_header(&hdr),
        Err(ServerError::NoReceiver {
            id: 2,
            n_messages: 1
        })
    ));
    h.send(2, &req(client_request::Type::Release, Some(2)));
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![2]);
    assert_eq!(stats(&mut h, 2), (1, 0));
    h.send(2, &req(client_request::Type::Release, Some(2)));
    assert_eq!(h.take().errors(2), vec!["Invalid id: 2"]);
    h.send(2, &req(client_request::Type::Terminate, None));
    assert!(h.take().terminate);
}

#[test]
fn fetch_errors() {
    let mut h = setup(1);
    h.send(
        2,
        &plan_req(
            0,
            vec![task(CONST, b"a", &[], false), task(MERGE, b"", &[0], true)],
            &[],
        ),
    );
    h.take();
    h.send(2, &req(client_request::Type::Fetch, Some(7)));
    h.send(2, &req(client_request::Type::Fetch, Some(0)));
    h.send(2, &req(client_request::Type::Fetch, Some(1)));
    let seen = h.take();
    assert_eq!(
        seen.errors(2),
        vec![
            "Invalid id: 7",
            "Task is not result",
            "Task is not finished"
        ]
    );
    assert_eq!(seen.error_ids(2), vec![Some(7), Some(0), Some(1)]);
    // RELEASE errors name the task too.
    h.send(2, &req(client_request::Type::Release, Some(9)));
    h.send(2, &req(client_request::Type::Release, Some(0)));
    let seen = h.take();
    assert_eq!(seen.errors(2), vec!["Invalid id: 9", "Task is not result"]);
    assert_eq!(seen.error_ids(2), vec![Some(9), Some(0)]);
}

fn rejected(h: &mut H, p: ClientRequest) -> String {
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

#[test]
fn plan_validation_errors() {
    let mut h = setup(2);
    let mut labelled = task(CONST, b"", &[5], true);
    labelled.label = Some("my label".into());
    let e = rejected(&mut h, plan_req(0, vec![labelled], &[]));
    assert_eq!(
        e,
        "Plan rejected: task id=0 (label 'my label'): unknown input id 5"
    );
    let e = rejected(&mut h, plan_req(0, vec![task(MERGE, b"", &[0], true)], &[]));
    assert!(e.contains("task id=0") && e.contains("itself"), "{e}");
    let e = rejected(
        &mut h,
        plan_req(
            0,
            vec![task(MERGE, b"", &[1], false), task(MERGE, b"", &[0], true)],
            &[],
        ),
    );
    assert!(e.contains("cycle"), "{e}");
    let e = rejected(&mut h, plan_req(0, vec![task(999, b"", &[], true)], &[]));
    assert!(e.contains("unknown task type 999"), "{e}");
    let e = rejected(&mut h, plan_req(0, vec![task(19, b"", &[], true)], &[]));
    assert!(e.contains("unknown task type 19"), "{e}");
    let mut p = plan_req(0, vec![with_cpus(task(RUN, b"", &[], true), 0)], &[1]);
    p.plan.as_mut().unwrap().resource_requests[0].resources[0].resource_type = 5;
    let e = rejected(&mut h, p);
    assert!(e.contains("unknown resource type 5"), "{e}");
    let e = rejected(
        &mut h,
        plan_req(0, vec![with_cpus(task(RUN, b"", &[], true), 0)], &[3]),
    );
    assert!(e.contains("no worker can satisfy cpus(3)"), "{e}");
    let e = rejected(
        &mut h,
        plan_req(0, vec![with_cpus(task(RUN, b"", &[], true), 4)], &[1]),
    );
    assert!(e.contains("resource request index"), "{e}");
    // Forward references without a cycle are fine.
    h.send(
        2,
        &plan_req(
            0,
            vec![task(MERGE, b"", &[1], true), task(CONST, b"x", &[], false)],
            &[],
        ),
    );
    let seen = h.take();
    assert!(seen.errors(2).is_empty());
    assert_eq!(
        seen.tasks(1),
        vec![1, 0],
        "the consumer is pipelined after its input"
    );
    // Overlapping id_base.
    let e = rejected(&mut h, plan_req(1, vec![task(CONST, b"", &[], true)], &[]));
    assert!(e.starts_with("Plan rejected: id_base 1 overlaps"), "{e}");
    // Malformed plan bytes.
    let mut bad = framed(&req(client_request::Type::Plan, None));
    bad.truncate(8);
    let mut raw = vec![0x08, 0x01, 0x12, 0x03, 0x12, 0x05, 0x08];
    let mut f = (raw.len() as u64).to_le_bytes().to_vec();
    f.append(&mut raw);
    h.s.on_data(2, &f);
    let seen = h.take();
    assert_eq!(
        seen.errors(2),
        vec!["Plan rejected: malformed plan message"]
    );
    assert_eq!(seen.resp(2)[0].error.as_ref().unwrap().id, Some(-1));
}

#[test]
fn cpus_request_accepted_without_workers_and_waits() {
    let mut h = H::new();
    h.client(2);
    h.take();
    h.send(
        2,
        &plan_req(0, vec![with_cpus(task(RUN, b"", &[], true), 0)], &[8]),
    );
    assert!(h.take().errors(2).is_empty());
    h.worker(1, 2);
    assert!(h.take().tasks(1).is_empty(), "too small for it: waits");
    h.worker(3, 8);
    assert_eq!(h.take().tasks(3), vec![0]);
}

#[test]
fn released_and_failed_inputs_rejected() {
    let mut h = setup(1);
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    h.take();
    h.fin(1, 0, 1);
    h.send(2, &req(client_request::Type::Release, Some(0)));
    h.take();
    let e = rejected(&mut h, plan_req(1, vec![task(MERGE, b"", &[0], true)], &[]));
    assert!(e.contains("unknown input id 0"), "{e}");
}

#[test]
fn cpu_accounting() {
    // One worker with 1 cpu and three 1-cpu tasks: one runs and one waits queued on the worker
    // (bounded overbooking hides the round trip); the third waits on the server.
    let mut h = setup(1);
    let t = |cfg: &[u8]| with_cpus(task(RUN, cfg, &[], true), 0);
    h.send(2, &plan_req(0, vec![t(b"a"), t(b"b"), t(b"c")], &[1]));
    assert_eq!(h.take().tasks(1), vec![0, 1]);
    h.fin(1, 0, 1);
    assert_eq!(h.take().tasks(1), vec![2]);
    h.respond(1, worker_response::Type::Failed, 1, 0, 0);
    assert!(h.take().tasks(1).is_empty());
    assert_eq!((h.s.workers[W0].free_cpus, h.s.workers[W0].over), (0, 0));
    h.fin(1, 2, 1);
    assert_eq!((h.s.workers[W0].free_cpus, h.s.workers[W0].over), (1, 0));

    // Four 4-cpu tasks on 4 cpus: never more than one running plus one queued.
    let mut h = setup(4);
    let t4 = |cfg: &[u8]| with_cpus(task(RUN, cfg, &[], true), 0);
    h.send(
        2,
        &plan_req(0, vec![t4(b"a"), t4(b"b"), t4(b"c"), t4(b"d")], &[4]),
    );
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![0, 1]);
    assert_eq!(seen.of(1, 1)[0].n_cpus, Some(4));
    h.fin(1, 0, 1);
    assert_eq!(h.take().tasks(1), vec![2]);
    // While two 4-cpu tasks are booked, a 1-cpu task finds no room.
    let t1 = |cfg: &[u8]| with_cpus(task(RUN, cfg, &[], true), 0);
    h.send(
        2,
        &plan_req(
            4,
            vec![t1(b"a"), t1(b"b"), t1(b"c"), t1(b"d"), t1(b"e")],
            &[1],
        ),
    );
    assert!(
        h.take().tasks(1).is_empty(),
        "the 4-cpu tasks hold all cpus and the overbooking allowance"
    );
    h.fin(1, 1, 1);
    let got = h.take().tasks(1);
    assert!(!got.is_empty(), "a finish makes room");
    let w = &h.s.workers[W0];
    assert!(w.booked_cpus() <= 2 * w.cpus, "booked {}", w.booked_cpus());
}

#[test]
fn light_tasks_and_cap() {
    let mut h = setup(1);
    let n = LIGHT_CAP as usize + 10;
    let tasks: Vec<Task> = (0..n).map(|_| task(CONST, b"x", &[], true)).collect();
    h.send(2, &plan_req(0, tasks, &[]));
    let got = h.take().tasks(1);
    assert_eq!(got.len(), LIGHT_CAP as usize);
    for id in 0..5 {
        h.fin(1, id, 1);
    }
    let seen = h.take();
    assert_eq!(seen.tasks(1).len(), 5);
    assert_eq!(seen.finished(2), vec![0, 1, 2, 3, 4]);
}

#[test]
fn locality_and_transfers() {
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"big", &[], false),
                task(CONST, b"small", &[], false),
                task(MERGE, b"", &[1, 0], true),
            ],
            &[],
        ),
    );
    let seen = h.take();
    // Spread across workers.
    assert_eq!(seen.tasks(1), vec![0]);
    assert_eq!(seen.tasks(3), vec![1]);
    h.fin(1, 0, 1_000_000);
    h.fin(3, 1, 10);
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![2], "goes where the big input is");
    let send = seen.of(3, 2);
    assert_eq!(send.len(), 1);
    assert_eq!(
        (send[0].id, send[0].address.as_deref()),
        (Some(1), Some("10.0.0.1:1001"))
    );
    h.respond(1, worker_response::Type::Transfered, 1, 0, 0);
    h.fin(1, 2, 1_000_010);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![0, 1]);
    assert_eq!(seen.removes(3), vec![1]);
    assert_eq!(seen.finished(2), vec![2]);
}

#[test]
fn release_and_refcounts() {
    let mut h = setup(1);
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    h.take();
    h.fin(1, 0, 1);
    assert_eq!(h.take().finished(2), vec![0]);
    // A later plan uses the result; releasing it keeps it until the consumer finishes.
    h.send(2, &plan_req(1, vec![task(MERGE, b"", &[0, 0], true)], &[]));
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![1]);
    assert_eq!(seen.of(1, 1)[0].task_inputs, vec![0, 0]);
    h.send(2, &req(client_request::Type::Release, Some(0)));
    assert!(h.take().removes(1).is_empty());
    h.send(2, &req(client_request::Type::Release, Some(0)));
    assert_eq!(h.take().errors(2), vec!["Task is not result"]);
    h.fin(1, 1, 2);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![0]);
    assert_eq!(seen.finished(2), vec![1]);
    h.send(2, &req(client_request::Type::Release, Some(0)));
    h.send(2, &req(client_request::Type::Release, Some(-3)));
    assert_eq!(h.take().errors(2), vec!["Invalid id: 0", "Invalid id: -3"]);
    // A result that is not needed by anything and released before finishing.
    h.send(2, &plan_req(2, vec![task(CONST, b"a", &[], true)], &[]));
    h.take();
    h.send(2, &req(client_request::Type::Release, Some(2)));
    h.fin(1, 2, 1);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![2]);
    assert!(seen.finished(2).is_empty());
    h.send(2, &req(client_request::Type::Release, Some(1)));
    h.take();
    assert_eq!(stats(&mut h, 2), (1, 0));
    // Unreachable tasks are never computed.
    h.send(
        2,
        &plan_req(
            3,
            vec![task(CONST, b"u", &[], false), task(CONST, b"r", &[], true)],
            &[],
        ),
    );
    assert_eq!(h.take().tasks(1), vec![4]);
}

#[test]
fn failure_propagates_only_to_dependants() {
    let mut h = setup(2);
    let mut run = with_cpus(task(RUN, b"r", &[0], false), 0);
    run.label = Some("myrun".into());
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                run,
                task(MERGE, b"", &[1, 0], true),
                task(ARRAY, b"", &[2], true),
                task(CONST, b"d", &[], true),
            ],
            &[1],
        ),
    );
    assert_eq!(h.take().tasks(1), vec![0, 4]);
    h.fin(1, 0, 1);
    // The run, and the light tasks depending on it (pipelined to the same worker).
    assert_eq!(h.take().tasks(1), vec![1, 2, 3]);
    h.respond(1, worker_response::Type::Failed, 1, 0, 0);
    let seen = h.take();
    let failed: Vec<_> = seen.resp(2).into_iter().filter(|r| r.r#type == 3).collect();
    assert_eq!(failed.len(), 2);
    let e = failed[0].error.as_ref().unwrap();
    assert_eq!(e.id, Some(2));
    assert_eq!(e.worker.as_deref(), Some("10.0.0.1:1001"));
    assert_eq!(
        e.error_msg.as_deref(),
        Some(&b"Task id=1 (myrun) failed: boom"[..])
    );
    assert_eq!(failed[1].error.as_ref().unwrap().id, Some(3));
    assert_eq!(seen.removes(1), vec![0], "the input nobody needs any more");
    h.fin(1, 4, 1);
    assert_eq!(h.take().finished(2), vec![4]);
    // The pipelined dependants will never start on the worker: their slots are free again.
    assert_eq!(h.s.workers[W0].light, 0);
    // Depending on a failed task is rejected.
    let e = rejected(&mut h, plan_req(5, vec![task(MERGE, b"", &[2], true)], &[]));
    assert!(e.contains("failed") || e.contains("unknown"), "{e}");
}

#[test]
fn failed_result_itself_reported() {
    let mut h = setup(1);
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    h.take();
    h.respond(1, worker_response::Type::Failed, 0, 0, 0);
    let seen = h.take();
    let r = seen.resp(2)[0];
    assert_eq!(r.r#type, 3);
    let e = r.error.as_ref().unwrap();
    assert_eq!(
        (e.id, e.error_msg.as_deref()),
        (Some(0), Some(&b"boom"[..]))
    );
}

#[test]
fn two_clients_both_from_zero() {
    let mut h = setup(1);
    h.client(4);
    h.take();
    h.send(2, &plan_req(0, vec![task(CONST, b"one", &[], true)], &[]));
    h.send(4, &plan_req(0, vec![task(CONST, b"two", &[], true)], &[]));
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![0, 1]);
    h.fin(1, 1, 3);
    let seen = h.take();
    assert_eq!(seen.finished(4), vec![0]);
    assert!(seen.finished(2).is_empty());
    h.fin(1, 0, 3);
    assert_eq!(h.take().finished(2), vec![0]);
    h.send(4, &req(client_request::Type::Fetch, Some(0)));
    let seen = h.take();
    assert_eq!(seen.of(1, 2)[0].id, Some(1));
    let relay =
        h.s.on_data_header(
            &DataHeader {
                id: 1,
                n_messages: 1,
                type_id: 19,
            }
            .encode_to_vec(),
        )
        .unwrap();
    assert_eq!(relay.client, 4);
    let r = ClientResponse::decode(&split(&relay.response_frame)[0][..]).unwrap();
    assert_eq!(r.data.unwrap().id, 0);
}

#[test]
fn client_disconnect_leaves_residuals() {
    let mut h = setup(1);
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                with_cpus(task(RUN, b"r", &[0], true), 0),
            ],
            &[1],
        ),
    );
    h.take();
    h.fin(1, 0, 1);
    assert_eq!(h.take().tasks(1), vec![1]);
    h.s.on_close(2);
    h.take();
    // New client: its 1-cpu task goes out at once (queued on the worker behind the residual
    // one, which still holds the cpu); the residual's late answer gets a REMOVE.
    h.client(4);
    h.take();
    h.send(
        4,
        &plan_req(0, vec![with_cpus(task(RUN, b"n", &[], true), 0)], &[1]),
    );
    assert_eq!(h.take().tasks(1), vec![2]);
    assert_eq!(
        h.s.workers[W0].over, 1,
        "booked beyond the worker's one cpu"
    );
    h.fin(1, 1, 1);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![1]);
    assert!(seen.tasks(1).is_empty());
    h.fin(1, 2, 1);
    assert_eq!(h.take().finished(4), vec![0]);
    // A stale TRANSFERED for a discarded id is answered with REMOVE; FAILED is ignored.
    h.respond(1, worker_response::Type::Transfered, 0, 0, 0);
    h.respond(1, worker_response::Type::Failed, 12345, 0, 0);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![0]);
    assert!(seen.close.is_empty());
}

#[test]
fn worker_loss_reschedules_and_recomputes() {
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                task(CONST, b"b", &[], false),
                with_cpus(task(RUN, b"x", &[0], false), 0),
                with_cpus(task(RUN, b"y", &[1], false), 0),
                task(MERGE, b"", &[2, 3], true),
            ],
            &[1],
        ),
    );
    let seen = h.take();
    assert_eq!((seen.tasks(1), seen.tasks(3)), (vec![0], vec![1]));
    h.fin(1, 0, 1);
    h.fin(3, 1, 1);
    let seen = h.take();
    assert_eq!((seen.tasks(1), seen.tasks(3)), (vec![2], vec![3]));
    h.fin(3, 3, 5); // y on worker 3
    h.take();
    // Worker 3 dies: y (only there, needed by the merge) is recomputed from b... but b was
    // freed (y finished), so the merge fails? No: b is freed, hence y cannot be recomputed.
    h.s.on_close(3);
    let seen = h.take();
    let failed: Vec<_> = seen.resp(2).into_iter().filter(|r| r.r#type == 3).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].error.as_ref().unwrap().error_msg.as_deref(),
        Some(&b"Worker lost"[..])
    );
    assert_eq!(stats(&mut h, 2).0, 1);

    // Running task on a lost worker is rescheduled.
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(
        2,
        &plan_req(
            0,
            vec![
                with_cpus(task(RUN, b"x", &[], true), 0),
                with_cpus(task(RUN, b"y", &[], true), 0),
            ],
            &[1],
        ),
    );
    let seen = h.take();
    assert_eq!((seen.tasks(1), seen.tasks(3)), (vec![0], vec![1]));
    h.s.on_close(3);
    // Rescheduled on the surviving worker, queued there behind task 0.
    assert_eq!(h.take().tasks(1), vec![1]);
    h.fin(1, 0, 1);
    let seen = h.take();
    assert!(seen.tasks(1).is_empty());
    assert_eq!(seen.finished(2), vec![0]);
    h.fin(1, 1, 1);
    assert_eq!(h.take().finished(2), vec![1]);

    // Lost data whose inputs still exist is recomputed.
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], true),
                task(MERGE, b"", &[0], false),
                with_cpus(task(RUN, b"slow", &[], false), 0),
                task(MERGE, b"", &[1, 2], true),
            ],
            &[1],
        ),
    );
    let seen = h.take();
    // Task 1 (light, its only input computed on worker 1) is pipelined there.
    assert_eq!((seen.tasks(1), seen.tasks(3)), (vec![0, 1], vec![2]));
    h.fin(1, 0, 1);
    assert!(h.take().tasks(1).is_empty());
    h.fin(1, 1, 1); // task 1 on worker 1, a (result) is also on worker 1
    h.take();
    h.s.on_close(1);
    let seen = h.take();
    // a is a held result with no inputs: recomputed (light, runs beside the 1-cpu task);
    // 1 is recomputed from it and 3 (whose other input runs there too) follow, pipelined.
    assert_eq!(seen.tasks(3), vec![0, 1, 3]);
    h.fin(3, 0, 1);
    let seen = h.take();
    assert!(seen.tasks(3).is_empty());
    assert!(
        seen.finished(2).is_empty(),
        "result 0 was already announced"
    );
    h.fin(3, 1, 1);
    assert!(h.take().tasks(3).is_empty());
    h.fin(3, 2, 1);
    assert!(h.take().tasks(3).is_empty());
    h.fin(3, 3, 1);
    assert_eq!(h.take().finished(2), vec![3]);
    // The recomputed result 0 was not announced twice; it can still be fetched and released.
    h.send(2, &req(client_request::Type::Fetch, Some(0)));
    let seen = h.take();
    assert_eq!(seen.of(3, 2)[0].id, Some(0));
    h.send(2, &req(client_request::Type::Release, Some(0)));
    h.send(2, &req(client_request::Type::Release, Some(3)));
    let seen = h.take();
    assert_eq!(seen.removes(3), vec![0, 3]);
    assert_eq!(stats(&mut h, 2), (1, 0));
    assert!(h.s.graph.segs.is_empty(), "every segment was dropped");
    assert!(h.s.graph.labels.is_empty() && h.s.graph.extra_cons.is_empty());
    assert!(h.s.moves.fetches.is_empty());
}

#[test]
fn fetch_resent_after_worker_loss() {
    let mut h = H::new();
    h.worker(1, 1);
    h.worker(3, 1);
    h.client(2);
    h.take();
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    assert_eq!(h.take().tasks(1), vec![0]);
    h.fin(1, 0, 1);
    h.take();
    h.send(2, &req(client_request::Type::Fetch, Some(0)));
    assert_eq!(h.take().of(1, 2).len(), 1);
    h.s.on_close(1);
    let seen = h.take();
    assert_eq!(seen.tasks(3), vec![0], "recomputed on the other worker");
    h.fin(3, 0, 1);
    let seen = h.take();
    let send = seen.of(3, 2);
    assert_eq!(
        (send[0].id, send[0].address.as_deref()),
        (Some(0), Some("!:9999"))
    );
    assert!(seen.finished(2).is_empty(), "announced once only");
    let relay =
        h.s.on_data_header(
            &DataHeader {
                id: 0,
                n_messages: 1,
                type_id: 19,
            }
            .encode_to_vec(),
        )
        .unwrap();
    assert_eq!(relay.client, 2);
}

#[test]
fn dslice_and_dget_expand() {
    let mut h = setup(1);
    // X = array of 8 consts (length 8); dslice(X) -> merge copies; result is T (array).
    let mut tasks: Vec<Task> = (0..8).map(|_| task(CONST, b"c", &[], false)).collect();
    tasks.push(task(ARRAY, b"", &(0..8).collect::<Vec<_>>(), false)); // 8
    tasks.push(task(DSLICE, b"", &[8], false)); // 9
    tasks.push(task(MERGE, b"", &[9], true)); // 10
    h.send(2, &plan_req(0, tasks, &[]));
    // The consts, and the array over them pipelined behind them.
    assert_eq!(h.take().tasks(1).len(), 9);
    for i in 0..8 {
        h.fin(1, i, 1);
    }
    assert!(h.take().tasks(1).is_empty(), "the array was sent already");
    h.respond(1, worker_response::Type::Finished, 8, 8, 8);
    let seen = h.take();
    // 1 cpu -> slice size round(8/4) = 2 -> 4 slices; the copies of T consuming them are
    // pipelined in the same batch.
    let cmds = seen.of(1, 1);
    let slices: Vec<_> = cmds.iter().filter(|c| c.task_type == Some(0)).collect();
    let copies: Vec<_> = cmds.iter().filter(|c| c.task_type == Some(MERGE)).collect();
    assert_eq!((slices.len(), copies.len(), cmds.len()), (4, 4, 8));
    let cfg = slices[1].task_config.as_deref().unwrap();
    assert_eq!(cfg.len(), 16);
    assert_eq!(u64::from_le_bytes(cfg[..8].try_into().unwrap()), 2);
    assert_eq!(u64::from_le_bytes(cfg[8..].try_into().unwrap()), 4);
    assert!(slices
        .iter()
        .all(|s| s.task_type == Some(0) && s.task_inputs == vec![8]));
    let ids: Vec<i32> = slices.iter().map(|s| s.id.unwrap()).collect();
    for &s in &ids {
        h.fin(1, s, 2);
    }
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![8], "X is freed once every slice ran");
    assert_eq!(copies[0].task_inputs, vec![ids[0]]);
    let cids: Vec<i32> = copies.iter().map(|c| c.id.unwrap()).collect();
    for &c in &cids {
        h.fin(1, c, 2);
    }
    let seen = h.take();
    assert_eq!(seen.removes(1), ids);
    let arr = seen.of(1, 1);
    assert_eq!(arr.len(), 1);
    assert_eq!((arr[0].id, arr[0].task_type), (Some(10), Some(ARRAY)));
    assert_eq!(arr[0].task_inputs, cids);
    h.respond(1, worker_response::Type::Finished, 10, 8, 4);
    let seen = h.take();
    assert_eq!(seen.finished(2), vec![10]);
    assert_eq!(seen.removes(1), cids);

    // dget: N = 3 gets.
    let mut h = setup(1);
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"x", &[], false),
                task(DGET, b"", &[0], false),
                task(CONST, b"sep", &[], false),
                task(MERGE, b"", &[1, 2], true),
            ],
            &[],
        ),
    );
    assert_eq!(h.take().tasks(1), vec![0, 2]);
    h.fin(1, 2, 3);
    h.respond(1, worker_response::Type::Finished, 0, 3, 3);
    let seen = h.take();
    let cmds = seen.of(1, 1);
    let gets: Vec<_> = cmds.iter().filter(|g| g.task_type == Some(1)).collect();
    let copies: Vec<_> = cmds.iter().filter(|c| c.task_type == Some(MERGE)).collect();
    assert_eq!(
        (gets.len(), copies.len()),
        (3, 3),
        "gets, and the copies pipelined"
    );
    assert_eq!(
        gets[2].task_config.as_deref(),
        Some(&2u64.to_le_bytes()[..])
    );
    let gids: Vec<i32> = gets.iter().map(|g| g.id.unwrap()).collect();
    for &g in &gids {
        h.fin(1, g, 1);
    }
    h.take();
    assert_eq!(copies[1].task_inputs, vec![gids[1], 2]);
    // Invalid dslice shapes.
    let e = rejected(
        &mut h,
        plan_req(
            10,
            vec![
                task(CONST, b"x", &[], false),
                task(DSLICE, b"", &[10], true),
            ],
            &[],
        ),
    );
    assert!(e.contains("dslice/dget"), "{e}");
}

#[test]
fn garbage_closes_only_that_connection() {
    let mut h = setup(1);
    h.worker(3, 1);
    h.client(4);
    h.take();
    // Garbage from a worker, a client, and a bad first frame.
    h.s.on_data(3, &[3, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
    h.s.on_data(4, &[2, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x63]);
    h.s.on_connect(5, "1.2.3.4");
    h.s.on_data(
        5,
        &framed(&Register {
            protocol_version: 3,
            r#type: 2,
            ..Default::default()
        }),
    );
    h.s.on_connect(6, "1.2.3.4");
    h.s.on_data(6, &[0xff; 16]);
    let seen = h.take();
    assert_eq!(seen.close, vec![3, 4, 5, 6]);
    assert_eq!(stats(&mut h, 2), (1, 0));
    h.s.on_close(3);
    h.send(2, &plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    assert_eq!(h.take().tasks(1), vec![0]);
    // Unknown response type, unknown ids.
    h.respond(1, worker_response::Type::Finished, 777, 1, 0);
    let seen = h.take();
    assert_eq!(seen.removes(1), vec![777]);
    assert!(seen.close.is_empty());
    assert!(h.s.on_data_header(b"\xff\xff").is_err());
}

#[test]
fn frames_split_across_chunks() {
    let mut h = setup(1);
    let mut bytes = framed(&plan_req(0, vec![task(CONST, b"a", &[], true)], &[]));
    bytes.extend(framed(&req(client_request::Type::Stats, None)));
    for b in bytes.chunks(3) {
        h.s.on_data(2, b);
    }
    let seen = h.take();
    assert_eq!(seen.tasks(1), vec![0]);
    assert_eq!(seen.resp(2).len(), 1);
    let fin = framed(&WorkerResponse {
        r#type: 1,
        id: 0,
        size: Some(1),
        length: None,
        error_msg: None,
    });
    let (a, b) = fin.split_at(5);
    h.s.on_data(1, a);
    assert!(h.take().finished(2).is_empty());
    h.s.on_data(1, b);
    assert_eq!(h.take().finished(2), vec![0]);
}

/// Mutated and random frames on every kind of connection: the server may close connections
/// but must never panic, and other connections keep working.
#[test]
fn fuzzed_frames_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid_plan = plan_req(
        0,
        vec![
            task(CONST, b"a", &[], false),
            with_cpus(task(RUN, b"r", &[0], false), 0),
            task(DSLICE, b"", &[1], false),
            task(MERGE, b"", &[2, 0], true),
        ],
        &[1],
    )
    .encode_to_vec();
    let valid_resp = WorkerResponse {
        r#type: 1,
        id: 0,
        size: Some(3),
        length: Some(2),
        error_msg: None,
    }
    .encode_to_vec();
    for round in 0..400 {
        let mut h = setup(2);
        h.worker(3, 1);
        h.take();
        for step in 0..20 {
            let base: &[u8] = if step % 2 == 0 {
                &valid_plan
            } else {
                &valid_resp
            };
            let mut payload = base.to_vec();
            for _ in 0..(rnd() % 4) {
                if payload.is_empty() {
                    break;
                }
                let i = (rnd() as usize) % payload.len();
                payload[i] = rnd() as u8;
            }
            if rnd() % 5 == 0 {
                payload.truncate((rnd() as usize) % (payload.len() + 1));
            }
            let conn = [1, 2, 3][(rnd() % 3) as usize];
            let mut f = (payload.len() as u64).to_le_bytes().to_vec();
            f.extend(payload);
            h.s.on_data(conn, &f);
            if rnd() % 7 == 0 {
                let id = (rnd() % 8) as i32;
                h.respond(1, worker_response::Type::Finished, id, 1, rnd() % 5);
            }
            let _ = h.s.on_data_header(&[(rnd() as u8), 1, 2]);
            h.s.take_output();
        }
        let _ = round;
    }
}

/// Random but well-formed event sequences: answers for running (and random) ids from random
/// workers, fetches, releases, new plans using earlier results, worker and client churn.
#[test]
fn random_event_sequences_keep_invariants() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let rounds: usize = std::env::var("LOOM_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    for round in 0..rounds {
        for _ in 0..round % 7 {
            rnd();
        }
        let mut h = H::new();
        let mut next_conn = 10;
        h.worker(1, 2);
        h.worker(3, 1);
        h.client(2);
        h.take();
        let mut alive_workers = vec![1u32, 3];
        let mut client = 2u32;
        let mut next_base = 0i32;
        // Tasks handed out and not answered yet: (worker conn, internal id).
        let mut running: Vec<(u32, i32)> = Vec::new();
        let mut log: Vec<String> = Vec::new();
        for _step in 0..60 {
            let ev = rnd() % 10;
            log.push(format!("ev {ev} next_base {next_base} running {running:?}"));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match ev {
                    0 | 1 => {
                        let n = 1 + (rnd() % 6) as i32;
                        let mut tasks = Vec::new();
                        for i in 0..n {
                            let ty = [CONST, MERGE, RUN, ARRAY, DGET, DSLICE][(rnd() % 6) as usize];
                            let mut inputs = Vec::new();
                            if ty != CONST && ty != RUN {
                                let k = if ty == DGET || ty == DSLICE {
                                    1
                                } else {
                                    rnd() % 3
                                };
                                for _ in 0..k {
                                    if next_base + i > 0 {
                                        inputs.push((rnd() % (next_base + i) as u64) as i32);
                                    }
                                }
                            }
                            let mut t = task(ty, b"c", &inputs, rnd() % 2 == 0);
                            if ty == RUN {
                                t = with_cpus(t, 0);
                            }
                            tasks.push(t);
                        }
                        log.push(format!(
                            "plan {next_base}: {:?}",
                            tasks
                                .iter()
                                .map(|t| (t.task_type, t.input_ids.clone(), t.result))
                                .collect::<Vec<_>>()
                        ));
                        h.send(client, &plan_req(next_base, tasks, &[1]));
                        // Accepted or not, the next plan starts after this one.
                        next_base += n;
                    }
                    2..=5 => {
                        if running.is_empty() {
                            return;
                        }
                        let k = (rnd() as usize) % running.len();
                        let (w, id) = running.swap_remove(k);
                        let ty = match rnd() % 6 {
                            0 => worker_response::Type::Failed,
                            _ => worker_response::Type::Finished,
                        };
                        let len = rnd() % 4;
                        log.push(format!("respond {w} {ty:?} {id} len {len}"));
                        h.respond(w, ty, id, rnd() % 100, len);
                    }
                    6 => {
                        let id = (rnd() % (next_base.max(1) as u64)) as i32;
                        let ty = if rnd() % 2 == 0 {
                            client_request::Type::Release
                        } else {
                            client_request::Type::Fetch
                        };
                        h.send(client, &req(ty, Some(id)));
                    }
                    7 => {
                        if let Some(&w) = alive_workers.first() {
                            let id = (rnd() % 50) as i32;
                            h.respond(w, worker_response::Type::Transfered, id, 0, 0);
                        }
                    }
                    8 => {
                        if alive_workers.len() > 1 && rnd() % 2 == 0 {
                            let w = alive_workers.remove(0);
                            log.push(format!("close worker {w}"));
                            h.s.on_close(w);
                            running.retain(|r| r.0 != w);
                        } else {
                            next_conn += 1;
                            h.worker(next_conn, 1 + (rnd() % 3) as i32);
                            alive_workers.push(next_conn);
                        }
                    }
                    _ => {
                        if rnd() % 3 == 0 {
                            h.s.on_close(client);
                            next_conn += 1;
                            client = next_conn;
                            h.client(client);
                            next_base = 0;
                        }
                    }
                }
            }));
            if let Err(e) = r {
                eprintln!("{}", log.join("\n"));
                std::panic::resume_unwind(e);
            }
            let seen = h.take();
            assert!(
                seen.close.is_empty(),
                "well-formed input closed a connection"
            );
            for (&w, cmds) in &seen.cmds {
                for c in cmds {
                    if c.r#type == 1 {
                        running.push((w, c.id.unwrap()));
                    }
                }
            }
            // Invariants: cpus never exceed capacity; object counts never go negative.
            for c in h.s.clients.iter() {
                assert!(c.n_data >= 0, "n_data {}\n{}", c.n_data, log.join("\n"));
            }
            for wk in h.s.workers.list.iter() {
                assert!(wk.free_cpus <= wk.cpus);
                assert!(wk.over <= wk.cpus);
                assert!(wk.free_cpus == 0 || wk.over == 0);
                assert!(wk.light <= LIGHT_CAP);
            }
            for seg in h.s.graph.segs.iter() {
                let live = seg.state.iter().filter(|s| s.is_live()).count();
                assert_eq!(
                    live as u32,
                    seg.live,
                    "seg base {:?} states {:?}\n{}",
                    seg.base,
                    seg.state,
                    log.join("\n")
                );
            }
        }
    }
}

#[test]
fn trace_records_plan_schedule_finish_and_updates_workers() {
    let dir = std::env::temp_dir().join(format!("loom-server-trace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut h = setup(1);
    h.send(
        2,
        &ClientRequest {
            r#type: client_request::Type::Trace as i32,
            trace_path: Some(dir.to_string_lossy().into_owned()),
            ..Default::default()
        },
    );
    let seen = h.take();
    let upd = seen.of(1, 9);
    assert_eq!(upd.len(), 1);
    assert_eq!(upd[0].trace_path.as_deref(), Some(dir.to_str().unwrap()));
    assert_eq!(upd[0].worker_id, Some(0));
    let mut a = task(CONST, b"AB", &[], false);
    a.label = Some("Init: a".into());
    let p = plan_req(
        0,
        vec![
            a,
            task(CONST, b"C", &[], false),
            task(MERGE, b"", &[0, 1], true),
        ],
        &[],
    );
    h.send(2, &p);
    h.take();
    h.fin(1, 0, 2);
    h.fin(1, 1, 1);
    h.respond(1, worker_response::Type::Failed, 2, 0, 0);
    // A worker registering later gets UPDATE too.
    h.worker(3, 2);
    let seen = h.take();
    let upd = seen.of(3, 9);
    assert_eq!(upd.len(), 1);
    assert_eq!(upd[0].worker_id, Some(1));
    h.s.trace_flush();
    let text = std::fs::read_to_string(dir.join("server.trace")).unwrap();
    let recs: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(&recs[0][..3], &["HYPERLOOM-TRACE", "1", "server"]);
    let find = |tag: &str| -> Vec<&Vec<&str>> { recs.iter().filter(|r| r[0] == tag).collect() };
    let merge = MERGE.to_string();
    assert!(find("Y")
        .iter()
        .any(|r| r[1] == merge && r[2] == "loom/data/merge"));
    let w = find("W");
    assert_eq!(w.len(), 2);
    assert_eq!((w[0][2], w[0][3], w[0][4]), ("0", "10.0.0.1:1001", "1"));
    assert_eq!((w[1][2], w[1][3], w[1][4]), ("1", "10.0.0.1:1003", "2"));
    assert_eq!(&find("P")[0][2..], &["0", "0", "3"]);
    let t = find("T");
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].join(" "), format!("T 0 {CONST} - Init: a"));
    assert_eq!(t[2].join(" "), format!("T 2 {MERGE} 0,1"));
    let s: Vec<&str> = find("S").iter().map(|r| r[2]).collect();
    assert_eq!(s, vec!["0", "1", "2"]);
    let f: Vec<(&str, &str)> = find("F").iter().map(|r| (r[2], r[4])).collect();
    assert_eq!(f, vec![("0", "2"), ("1", "1")]);
    assert_eq!(&find("X")[0][2..], &["2", "0"]);
    assert!(!find("R").is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn data_header_without_required_fields_is_refused() {
    let mut h = setup(1);
    // `0802`: id 1 only (the conformance suite's truncated header).
    assert!(matches!(
        h.s.on_data_header(&[0x08, 0x02]),
        Err(ServerError::Malformed(_))
    ));
}

#[test]
fn chains_are_pipelined_and_a_failure_frees_their_slots() {
    let mut h = setup(1);
    h.send(
        2,
        &plan_req(
            0,
            vec![
                task(CONST, b"a", &[], false),
                task(MERGE, b"", &[0], false),
                task(MERGE, b"", &[1], false),
                task(MERGE, b"", &[2], true),
            ],
            &[],
        ),
    );
    // The whole chain goes out in one batch; the worker runs it without a round trip per task.
    assert_eq!(h.take().tasks(1), vec![0, 1, 2, 3]);
    assert_eq!(h.s.workers[W0].light, 4);
    h.fin(1, 0, 1);
    h.respond(1, worker_response::Type::Failed, 1, 0, 0);
    let seen = h.take();
    let failed: Vec<_> = seen.resp(2).into_iter().filter(|r| r.r#type == 3).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error.as_ref().unwrap().id, Some(3));
    assert_eq!(
        h.s.workers[W0].light, 0,
        "the dependants sent early will never start: their slots are freed"
    );
    assert!(seen.tasks(1).is_empty());
}
