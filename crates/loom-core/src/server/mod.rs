//! Server side of HyperLoom: plan ingestion, task graph, scheduler, client and worker protocols.
//!
//! [`Server`] is a pure state machine: the socket layer feeds it connection events and bytes and
//! writes out the already-framed bytes it returns from [`Server::take_output`].
//!
//! Internals:
//! - every task has an *internal id* from a global `i32` counter that is never reused; a client's
//!   own ids (each client counts from 0) map affinely onto internal ids per plan;
//! - tasks live in per-plan *segments* stored as flat arrays (struct of arrays), found by binary
//!   search over their bases (`graph`);
//! - plans are scanned straight from the encoded bytes (`plan`);
//! - the reactive scheduler, finish/failure/loss handling and dslice/dget expansion are in
//!   `sched`.
//!
//! Rules implemented (where the spec leaves a choice):
//! - Task types accepted in a plan: the standard ones seeded in the dictionary (original task
//!   types, `loom/js/*`, dslice/dget) and any a worker registered. A task is only sent to a
//!   worker that registered its type; until one exists it waits ("parked").
//! - An input from an earlier plan must be a task of the same client that is planned and not
//!   freed or failed (not an unreachable, never-computed task, and not a dslice/dget).
//! - dslice/dget need exactly one input and exactly one consumer in their plan, and cannot be
//!   results.
//! - A FAILED task fails every planned task depending on it (TASK_FAILED for each held result);
//!   independent work continues. Late answers for discarded tasks free the worker's cpus and
//!   get REMOVE (FINISHED/TRANSFERED) or are ignored (FAILED).
//! - Worker loss: see [`Server::on_close`] and `lose_worker` in `sched`.
//! - TRACE opens `<dir>/server.trace` and sends UPDATE to every worker, also to workers that
//!   register later (see [`crate::trace`]).
//! - Checkpoints are not implemented: checkpoint responses are logged,
//!   FINISHED_AND_CHECKPOINTING counts as FINISHED.
//!
//! Known gaps: a task running on a surviving worker whose input transfer can never complete
//! (its only source was lost and the input cannot be recomputed) keeps its cpus booked on that
//! worker until it answers; ready tasks of one cpu class wait behind the head of their queue
//! when only the head's type has no free worker (head-of-line blocking per class).

pub(crate) mod graph;
mod plan;
mod sched;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use prost::Message;

use crate::frame::{push_frame, FrameError, FrameReader, MAX_CONTROL_FRAME};
use crate::proto::comm::{
    client_response, register, worker_command, ClientResponse, DataHeader, Register, Stats,
    WorkerCommand,
};
use crate::proto::PROTOCOL_VERSION;
use crate::symbols::Symbols;

use graph::Segment;

/// A connection id, chosen by the socket layer.
pub type ConnId = u32;

pub use crate::log::LogLevel;

/// Everything the server wants done since the last [`Server::take_output`].
#[derive(Default, Debug)]
pub struct Output {
    /// Already-framed bytes to write, one entry per connection that has something (order within a connection preserved).
    pub writes: Vec<(ConnId, Vec<u8>)>,
    /// Connections the server layer must close (after flushing their writes).
    pub close: Vec<ConnId>,
    /// Log lines.
    pub logs: Vec<(LogLevel, String)>,
    /// A client sent TERMINATE: the process should exit.
    pub terminate: bool,
}

/// Where a fetched object's data stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// The client connection to relay to.
    pub client: ConnId,
    /// The framed `ClientResponse{DATA, data}` (with the client's own task id) to write first.
    pub response_frame: Vec<u8>,
    /// How many raw frames follow the header on the data connection (relay them contiguously).
    pub n_messages: u64,
}

/// Errors of the server core. A peer's error closes only that peer's connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerError {
    /// The framing of a connection is broken (oversized frame).
    #[error("framing error: {0}")]
    Frame(#[from] FrameError),
    /// A frame could not be decoded as the message expected at this point.
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// The first frame announced another protocol version.
    #[error("unsupported protocol version {0}")]
    ProtocolVersion(i32),
    /// The first frame announced an unknown connection type.
    #[error("invalid registration type {0}")]
    RegisterType(i32),
    /// A client request of an unknown type.
    #[error("invalid request type {0}")]
    RequestType(i32),
    /// A worker response of an unknown type.
    #[error("invalid worker response type {0}")]
    ResponseType(i32),
    /// A data header arrived for an object no client is waiting for. The socket layer must skip
    /// `n_messages` frames.
    #[error("data for id {id} that no client fetched ({n_messages} frames follow)")]
    NoReceiver {
        /// The internal data id of the header.
        id: i32,
        /// Frames that follow the header.
        n_messages: u64,
    },
}

/// Per-task symbol ids the server needs to recognise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SymIds {
    pub(crate) slice: i32,
    pub(crate) get: i32,
    pub(crate) dslice: i32,
    pub(crate) dget: i32,
    pub(crate) cpus: i32,
    pub(crate) array_make: i32,
}

impl Worker {
    /// Whether a task of `c` cpus may be assigned now. Up to `cpus` more cpus than the worker has
    /// may be assigned: the worker queues such tasks and starts each as soon as cores free up
    /// (it never runs more than its cores), so its queue does not run dry for a round trip to the
    /// server after every task — the original server's "overbooking", bounded.
    pub(crate) fn has_room(&self, c: u32) -> bool {
        self.free_cpus >= c || (self.free_cpus == 0 && self.over + c <= self.cpus)
    }

    /// Books `c` cpus for an assigned task.
    pub(crate) fn take_cpus(&mut self, c: u32) {
        if self.free_cpus >= c {
            self.free_cpus -= c;
        } else {
            self.over += c - self.free_cpus;
            self.free_cpus = 0;
        }
    }

    /// Returns the `c` cpus of a task that ended.
    pub(crate) fn give_cpus(&mut self, c: u32) {
        let from_over = self.over.min(c);
        self.over -= from_over;
        self.free_cpus += c - from_over;
    }

    /// Cpus booked (running or queued on the worker).
    pub(crate) fn booked_cpus(&self) -> u32 {
        self.cpus - self.free_cpus + self.over
    }
}

/// Sentinel for "no worker".
pub(crate) const NO_WORKER: u16 = u16::MAX;
/// Maximum number of in-flight light (0-cpu) tasks per worker.
pub(crate) const LIGHT_CAP: u32 = 4096;

pub(crate) struct Worker {
    pub(crate) conn: ConnId,
    pub(crate) addr: String,
    pub(crate) cpus: u32,
    pub(crate) free_cpus: u32,
    /// Cpus assigned beyond `cpus` (see [`Worker::has_room`]).
    pub(crate) over: u32,
    pub(crate) light: u32,
    /// Task types this worker registered (indexed by symbol id).
    pub(crate) types: Vec<bool>,
    pub(crate) alive: bool,
    pub(crate) out: Vec<u8>,
    /// Discarded tasks still running there: internal id -> cpus (freed when it answers).
    pub(crate) residual: HashMap<i32, u16>,
}

pub(crate) struct Client {
    pub(crate) conn: ConnId,
    pub(crate) alive: bool,
    /// Plan ranges: (client id base, count, internal id base), sorted by client base.
    pub(crate) ranges: Vec<(i32, u32, i32)>,
    /// Lowest id_base the next plan may use.
    pub(crate) next_base: i64,
    /// Computed, not-yet-freed objects of this client.
    pub(crate) n_data: i64,
    pub(crate) out: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    New,
    Worker(u16),
    Client(u32),
}

struct Conn {
    reader: FrameReader,
    peer: String,
    kind: Kind,
}

/// The HyperLoom server core.
pub struct Server {
    pub(crate) data_port: u16,
    pub(crate) symbols: Symbols,
    pub(crate) sym: SymIds,
    /// Task types accepted in plans (indexed by symbol id).
    pub(crate) known_type: Vec<bool>,
    conns: HashMap<ConnId, Conn>,
    pub(crate) workers: Vec<Worker>,
    pub(crate) n_alive: u32,
    pub(crate) clients: Vec<Client>,
    pub(crate) segs: Vec<Segment>,
    pub(crate) segs_dirty: bool,
    pub(crate) next_id: i32,
    /// Consumers outside the input's own segment (later plans, expansions), for unfinished inputs.
    pub(crate) extra_cons: HashMap<i32, Vec<i32>>,
    /// Owners besides the primary one (copies made by transfers).
    pub(crate) extra_owners: HashMap<i32, Vec<u16>>,
    /// Transfers in flight: data id -> (target worker, source worker).
    pub(crate) transfers: HashMap<i32, Vec<(u16, u16)>>,
    /// Non-zero lengths of finished objects (for dslice/dget).
    pub(crate) lengths: HashMap<i32, u64>,
    /// Labels of tasks that have one.
    pub(crate) labels: HashMap<i32, Box<str>>,
    /// Tasks whose inputs were replaced by a dslice/dget expansion (they became array/make).
    pub(crate) overrides: HashMap<i32, Vec<i32>>,
    pub(crate) light_q: VecDeque<i32>,
    pub(crate) heavy_q: Vec<(u16, VecDeque<i32>)>,
    /// Ready tasks no connected worker can run (type or cpus); retried when a worker registers.
    pub(crate) parked: Vec<i32>,
    /// Pending fetches: internal id -> FIFO of (client index, client id, worker asked to SEND
    /// or NO_WORKER while the object is being recomputed).
    pub(crate) fetches: HashMap<i32, VecDeque<(u32, i32, u16)>>,
    pub(crate) scratch_score: Vec<u64>,
    /// Work list of [`Server::pipeline`] (kept to avoid an allocation per assignment).
    pub(crate) scratch_pipeline: Vec<(usize, usize)>,
    pub(crate) out: Output,
    /// The trace, while a client asked for one.
    pub(crate) trace: Option<Box<crate::trace::server::ServerTrace>>,
}

impl Server {
    /// `data_port`: the server's data listener port, used in SEND addresses `"!:<port>"`.
    pub fn new(data_port: u16) -> Server {
        let symbols = Symbols::for_server();
        let id = |n: &str| symbols.id(n).expect("standard symbol");
        let sym = SymIds {
            slice: id("loom/base/slice"),
            get: id("loom/base/get"),
            dslice: id("loom/scheduler/dslice"),
            dget: id("loom/scheduler/dget"),
            cpus: id("loom/resource/cpus"),
            array_make: id("loom/array/make"),
        };
        let mut known_type = vec![false; symbols.names().len()];
        for name in crate::symbols::ORIGINAL_TASK_TYPES
            .iter()
            .chain(crate::symbols::JS_TASK_TYPES.iter())
            .chain(["loom/scheduler/dslice", "loom/scheduler/dget"].iter())
        {
            known_type[id(name) as usize] = true;
        }
        Server {
            data_port,
            symbols,
            sym,
            known_type,
            conns: HashMap::new(),
            workers: Vec::new(),
            n_alive: 0,
            clients: Vec::new(),
            segs: Vec::new(),
            segs_dirty: false,
            next_id: 0,
            extra_cons: HashMap::new(),
            extra_owners: HashMap::new(),
            transfers: HashMap::new(),
            lengths: HashMap::new(),
            labels: HashMap::new(),
            overrides: HashMap::new(),
            light_q: VecDeque::new(),
            heavy_q: Vec::new(),
            parked: Vec::new(),
            fetches: HashMap::new(),
            scratch_score: Vec::new(),
            scratch_pipeline: Vec::new(),
            out: Output::default(),
            trace: None,
        }
    }

    /// A main-port connection was accepted from `peer_ip` (IPv4 text).
    pub fn on_connect(&mut self, conn: ConnId, peer_ip: &str) {
        self.conns.insert(
            conn,
            Conn {
                reader: FrameReader::new(MAX_CONTROL_FRAME),
                peer: peer_ip.to_owned(),
                kind: Kind::New,
            },
        );
    }

    /// Bytes arrived on a main-port connection: every whole frame is processed, then the
    /// scheduler runs once.
    pub fn on_data(&mut self, conn: ConnId, chunk: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            self.log(LogLevel::Warn, format!("data on unknown connection {conn}"));
            return;
        };
        let mut reader = std::mem::take(&mut c.reader);
        let mut kind = c.kind;
        if let Some(t) = self.trace.as_mut() {
            t.stamp();
        }
        let res = reader.feed(chunk, |frame| match kind {
            Kind::New => {
                kind = self.register(conn, frame)?;
                Ok(())
            }
            Kind::Worker(w) => self.worker_frame(w, frame),
            Kind::Client(ci) => self.client_frame(ci, frame),
        });
        if let Some(c) = self.conns.get_mut(&conn) {
            c.reader = reader;
            c.kind = kind;
        }
        if let Err(e) = res {
            self.log(
                LogLevel::Error,
                format!("connection {conn}: {e}; closing it"),
            );
            self.out.close.push(conn);
            self.on_close(conn);
        }
        self.after_event();
    }

    /// A main-port connection closed (client gone or worker lost).
    ///
    /// Client gone: all its tasks are discarded (REMOVE for its data, running tasks become
    /// residual on their workers). Worker lost: nothing is written to it again, its copies are
    /// forgotten, its running tasks are rescheduled, and objects only it held that are still
    /// needed are recomputed when their inputs still exist, else they and their dependants fail
    /// with "Worker lost".
    pub fn on_close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        match c.kind {
            Kind::New => {}
            Kind::Client(ci) => {
                self.log(LogLevel::Info, format!("client {conn} disconnected"));
                self.discard_client(ci);
            }
            Kind::Worker(w) => {
                let addr = self.workers[w as usize].addr.clone();
                self.log(LogLevel::Info, format!("worker {addr} lost"));
                if let Some(t) = self.trace.as_mut() {
                    t.worker_lost(w);
                }
                self.lose_worker(w);
            }
        }
        self.after_event();
    }

    /// The payload of a DataHeader frame arrived on the server's data port.
    pub fn on_data_header(&mut self, header: &[u8]) -> Result<Relay, ServerError> {
        let h = DataHeader::decode(header).map_err(|_| ServerError::Malformed("DataHeader"))?;
        if !wire::data_header_complete(header) {
            // prost does not enforce proto2 `required`: a header without its frame count or type
            // cannot be relayed safely.
            return Err(ServerError::Malformed(
                "DataHeader (missing required fields)",
            ));
        }
        let n_messages = h.n_messages.max(0) as u64;
        let entry = self.fetches.get_mut(&h.id).and_then(|q| q.pop_front());
        if self.fetches.get(&h.id).is_some_and(|q| q.is_empty()) {
            self.fetches.remove(&h.id);
        }
        let Some((ci, cid, _)) = entry else {
            return Err(ServerError::NoReceiver {
                id: h.id,
                n_messages,
            });
        };
        let client = &self.clients[ci as usize];
        if !client.alive {
            return Err(ServerError::NoReceiver {
                id: h.id,
                n_messages,
            });
        }
        let mut response_frame = Vec::new();
        push_frame(
            &mut response_frame,
            &ClientResponse {
                r#type: client_response::Type::Data as i32,
                data: Some(DataHeader {
                    id: cid,
                    n_messages: h.n_messages,
                    type_id: h.type_id,
                }),
                ..Default::default()
            },
        );
        Ok(Relay {
            client: client.conn,
            response_frame,
            n_messages,
        })
    }

    /// Drain everything queued since the last call.
    pub fn take_output(&mut self) -> Output {
        let mut out = std::mem::take(&mut self.out);
        for w in &mut self.workers {
            if !w.out.is_empty() {
                let buf = std::mem::take(&mut w.out);
                if w.alive {
                    out.writes.push((w.conn, buf));
                }
            }
        }
        for c in &mut self.clients {
            if !c.out.is_empty() {
                let buf = std::mem::take(&mut c.out);
                if c.alive {
                    out.writes.push((c.conn, buf));
                }
            }
        }
        out
    }

    pub(crate) fn log(&mut self, level: LogLevel, msg: String) {
        self.out.logs.push((level, msg));
    }

    fn after_event(&mut self) {
        self.schedule();
        self.gc_segments();
    }

    // -----------------------------------------------------------------------------------------
    // Registration

    fn register(&mut self, conn: ConnId, frame: &[u8]) -> Result<Kind, ServerError> {
        let r = Register::decode(frame).map_err(|_| ServerError::Malformed("Register"))?;
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(ServerError::ProtocolVersion(r.protocol_version));
        }
        let peer = self
            .conns
            .get(&conn)
            .map(|c| c.peer.clone())
            .unwrap_or_default();
        if r.r#type == register::Type::RegisterWorker as i32 {
            let mut types = Vec::new();
            for t in &r.task_types {
                let id = self.symbols.add(t) as usize;
                if types.len() <= id {
                    types.resize(id + 1, false);
                }
                types[id] = true;
                if self.known_type.len() <= id {
                    self.known_type.resize(id + 1, false);
                }
                self.known_type[id] = true;
            }
            for t in &r.data_types {
                self.symbols.add(t);
            }
            let cpus = r.cpus.unwrap_or(0).max(0) as u32;
            let addr = format!("{peer}:{}", r.port.unwrap_or(0));
            let idx = self.workers.len();
            if idx >= NO_WORKER as usize {
                return Err(ServerError::Malformed("Register (too many workers)"));
            }
            let mut out = Vec::new();
            push_frame(
                &mut out,
                &WorkerCommand {
                    r#type: worker_command::Type::Dictionary as i32,
                    symbols: self.symbols.names().to_vec(),
                    ..Default::default()
                },
            );
            self.log(
                LogLevel::Info,
                format!("worker {idx} registered: {addr}, {cpus} cpus"),
            );
            self.workers.push(Worker {
                conn,
                addr,
                cpus,
                free_cpus: cpus,
                over: 0,
                light: 0,
                types,
                alive: true,
                out,
                residual: HashMap::new(),
            });
            self.n_alive += 1;
            self.scratch_score.push(0);
            self.trace_worker(idx as u16);
            self.unpark();
            Ok(Kind::Worker(idx as u16))
        } else if r.r#type == register::Type::RegisterClient as i32 {
            let mut out = Vec::new();
            push_frame(
                &mut out,
                &ClientResponse {
                    r#type: client_response::Type::Dictionary as i32,
                    symbols: self.symbols.names().to_vec(),
                    ..Default::default()
                },
            );
            let ci = self.clients.len() as u32;
            self.clients.push(Client {
                conn,
                alive: true,
                ranges: Vec::new(),
                next_base: 0,
                n_data: 0,
                out,
            });
            self.log(LogLevel::Info, format!("client {conn} registered"));
            Ok(Kind::Client(ci))
        } else {
            Err(ServerError::RegisterType(r.r#type))
        }
    }

    // -----------------------------------------------------------------------------------------
    // Client requests

    fn client_frame(&mut self, ci: u32, frame: &[u8]) -> Result<(), ServerError> {
        let req = wire::scan_client_request(frame)
            .map_err(|_| ServerError::Malformed("ClientRequest"))?;
        match req.rtype {
            1 => {
                let plan = req.plan.unwrap_or(&[]);
                if let Err(e) = self.ingest_plan(ci, plan) {
                    let msg = match e.task {
                        Some((id, ref label)) => {
                            format!("Plan rejected: task id={id} (label '{label}'): {}", e.cause)
                        }
                        None => format!("Plan rejected: {}", e.cause),
                    };
                    self.log(LogLevel::Warn, msg.clone());
                    let id = e.task.map(|t| t.0).unwrap_or(-1);
                    self.client_error(ci, Some(id), msg);
                }
            }
            2 => {
                let cid = req.id.unwrap_or(-1);
                self.fetch(ci, cid);
            }
            3 => {
                let cid = req.id.unwrap_or(-1);
                self.release(ci, cid);
            }
            6 => {
                let c = &mut self.clients[ci as usize];
                push_frame(
                    &mut c.out,
                    &ClientResponse {
                        r#type: client_response::Type::Stats as i32,
                        stats: Some(Stats {
                            n_workers: Some(self.n_alive as i32),
                            n_data_objects: Some(c.n_data as i32),
                        }),
                        ..Default::default()
                    },
                );
            }
            7 => self.trace_start(req.trace_path.unwrap_or(&[])),
            10 => {
                self.log(LogLevel::Info, "TERMINATE requested".into());
                self.out.terminate = true;
            }
            t => return Err(ServerError::RequestType(t)),
        }
        Ok(())
    }

    /// Sends `ClientResponse{ERROR, error{id?, error_msg}}` to client `ci`.
    pub(crate) fn client_error(&mut self, ci: u32, id: Option<i32>, msg: String) {
        let c = &mut self.clients[ci as usize];
        push_frame(
            &mut c.out,
            &ClientResponse {
                r#type: client_response::Type::Error as i32,
                error: Some(crate::proto::comm::Error {
                    id,
                    worker: None,
                    error_msg: Some(msg.into_bytes().into()),
                }),
                ..Default::default()
            },
        );
    }

    /// Sends `ClientResponse{TASK_FAILED, error{id, worker, error_msg}}` to client `ci`.
    pub(crate) fn client_task_failed(&mut self, ci: u32, id: i32, worker: &str, msg: Vec<u8>) {
        let c = &mut self.clients[ci as usize];
        if !c.alive {
            return;
        }
        push_frame(
            &mut c.out,
            &ClientResponse {
                r#type: client_response::Type::TaskFailed as i32,
                error: Some(crate::proto::comm::Error {
                    id: Some(id),
                    worker: Some(worker.to_owned()),
                    error_msg: Some(msg.into()),
                }),
                ..Default::default()
            },
        );
    }

    fn fetch(&mut self, ci: u32, cid: i32) {
        let Some(id) = self.resolve_client_id(ci, cid) else {
            return self.client_error(ci, None, format!("Invalid id: {cid}"));
        };
        let (si, off) = self.locate(id).expect("resolved id has a segment");
        let seg = &self.segs[si];
        let st = seg.state[off];
        if st == graph::FREED {
            return self.client_error(ci, None, format!("Invalid id: {cid}"));
        }
        if seg.flags[off] & graph::RESULT == 0 {
            return self.client_error(ci, None, "Task is not result".into());
        }
        if st != graph::FINISHED {
            return self.client_error(ci, None, "Task is not finished".into());
        }
        let owner = seg.wk[off];
        let addr = format!("!:{}", self.data_port);
        wire::push_send(&mut self.workers[owner as usize].out, id, &addr);
        self.fetches
            .entry(id)
            .or_default()
            .push_back((ci, cid, owner));
    }

    fn release(&mut self, ci: u32, cid: i32) {
        let Some(id) = self.resolve_client_id(ci, cid) else {
            return self.client_error(ci, None, format!("Invalid id: {cid}"));
        };
        let (si, off) = self.locate(id).expect("resolved id has a segment");
        let seg = &mut self.segs[si];
        if seg.state[off] == graph::FREED {
            return self.client_error(ci, None, format!("Invalid id: {cid}"));
        }
        if seg.flags[off] & graph::RESULT == 0 {
            return self.client_error(ci, None, "Task is not result".into());
        }
        seg.flags[off] &= !graph::RESULT;
        if seg.state[off] == graph::FINISHED && seg.refc[off] == 0 {
            self.free(si, off);
        }
    }

    /// The internal id of client `ci`'s task `cid`, if that id belongs to a live plan segment.
    pub(crate) fn resolve_client_id(&self, ci: u32, cid: i32) -> Option<i32> {
        let ranges = &self.clients[ci as usize].ranges;
        let k = ranges.partition_point(|r| r.0 <= cid);
        if k == 0 {
            return None;
        }
        let (cb, n, ib) = ranges[k - 1];
        let d = (cid as i64) - (cb as i64);
        if d < 0 || d >= n as i64 {
            return None;
        }
        Some(ib + d as i32)
    }

    /// Drops the client's plan segments entirely: finished data is removed from the workers,
    /// running tasks become residual on their workers (their late answers are absorbed).
    fn discard_client(&mut self, ci: u32) {
        let c = &mut self.clients[ci as usize];
        c.alive = false;
        c.out.clear();
        c.ranges.clear();
        let mut dropped = Vec::new();
        for si in 0..self.segs.len() {
            if self.segs[si].client != ci {
                continue;
            }
            dropped.push((self.segs[si].base, self.segs[si].n));
            for off in 0..self.segs[si].n as usize {
                let seg = &self.segs[si];
                let id = seg.base + off as i32;
                match seg.state[off] {
                    graph::RUNNING => {
                        let w = seg.wk[off];
                        let c = seg.cpus[off];
                        self.workers[w as usize].residual.insert(id, c);
                    }
                    graph::FINISHED => self.remove_everywhere(id, seg.wk[off]),
                    _ => {}
                }
            }
            self.segs[si].live = 0;
        }
        let ours = |id: &i32| {
            dropped
                .iter()
                .any(|&(b, n)| *id >= b && ((*id - b) as u32) < n)
        };
        self.extra_cons.retain(|k, _| !ours(k));
        self.extra_owners.retain(|k, _| !ours(k));
        self.transfers.retain(|k, _| !ours(k));
        self.lengths.retain(|k, _| !ours(k));
        self.labels.retain(|k, _| !ours(k));
        self.overrides.retain(|k, _| !ours(k));
        self.fetches.retain(|k, _| !ours(k));
        self.parked.retain(|k| !ours(k));
        self.segs.retain(|s| s.client != ci);
    }

    /// Sends REMOVE{id} to the primary owner `primary` and every extra owner of `id`.
    pub(crate) fn remove_everywhere(&mut self, id: i32, primary: u16) {
        if primary != NO_WORKER && self.workers[primary as usize].alive {
            wire::push_remove(&mut self.workers[primary as usize].out, id);
        }
        if self.extra_owners.is_empty() {
            return;
        }
        if let Some(extra) = self.extra_owners.remove(&id) {
            for w in extra {
                if self.workers[w as usize].alive {
                    wire::push_remove(&mut self.workers[w as usize].out, id);
                }
            }
        }
    }

    /// Removes segments with no live task left (and their client ranges).
    fn gc_segments(&mut self) {
        if !self.segs_dirty {
            return;
        }
        self.segs_dirty = false;
        let clients = &mut self.clients;
        let mut dropped: Vec<(i32, u32)> = Vec::new();
        self.segs.retain(|s| {
            if s.live > 0 {
                return true;
            }
            if let Some(cb) = s.cbase {
                let r = &mut clients[s.client as usize].ranges;
                r.retain(|x| x.0 != cb);
            }
            dropped.push((s.base, s.n));
            false
        });
        if dropped.is_empty() {
            return;
        }
        // Side tables keyed by ids of dropped segments (rare entries: labels, expansions,
        // cross-plan consumers).
        let gone = |id: &i32| {
            dropped
                .iter()
                .any(|&(b, n)| (id.wrapping_sub(b) as u32) < n)
        };
        if !self.labels.is_empty() {
            self.labels.retain(|k, _| !gone(k));
        }
        if !self.overrides.is_empty() {
            self.overrides.retain(|k, _| !gone(k));
        }
        if !self.extra_cons.is_empty() {
            self.extra_cons.retain(|k, _| !gone(k));
        }
        if !self.lengths.is_empty() {
            self.lengths.retain(|k, _| !gone(k));
        }
        if !self.fetches.is_empty() {
            self.fetches.retain(|k, _| !gone(k));
        }
    }
}
