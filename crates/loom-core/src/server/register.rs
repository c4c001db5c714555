//! The first frame of a main-port connection: `Register` of a worker or a client.

use prost::Message;

use crate::frame::push_frame;
use crate::journal::Record;
use crate::proto::comm::{
    client_response, register, worker_command, ClientResponse, Register, WorkerCommand,
};
use crate::proto::PROTOCOL_VERSION;

use super::clients::Client;
use super::ids::TaskId;
use super::wire;
use super::workers::Worker;
use super::{ConnId, LogLevel, Peer, Server, ServerError};

/// What this server tells workers it understands beyond the original protocol
/// (`WorkerCommand.server_features` on the registration DICTIONARY): `leaving` (a worker
/// stopping on purpose says so, and is shown as departed, not lost), `trace-marked` (TASK
/// carries `traced` for the tracing client's tasks; workers trace only those) and
/// `transfer-failed` (a worker that gives up a transfer says so: TRANSFER_FAILED).
pub const SERVER_FEATURES_FOR_WORKERS: &[&str] = &["leaving", "trace-marked", "transfer-failed"];

impl Server {
    /// Handles `Register`: the connection becomes a worker or a client and gets the symbol
    /// dictionary.
    pub(super) fn register(&mut self, conn: ConnId, frame: &[u8]) -> Result<Peer, ServerError> {
        let r = Register::decode(frame).map_err(|_| ServerError::Malformed("Register"))?;
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(ServerError::ProtocolVersion(r.protocol_version));
        }
        match register::Type::try_from(r.r#type) {
            Ok(register::Type::RegisterWorker) => self.register_worker(conn, &r),
            Ok(register::Type::RegisterClient) => self.register_client(conn, &r),
            Err(_) => Err(ServerError::RegisterType(r.r#type)),
        }
    }

    fn register_worker(&mut self, conn: ConnId, r: &Register) -> Result<Peer, ServerError> {
        if !self.workers.has_slot() {
            return Err(ServerError::Malformed("Register (too many workers)"));
        }
        let n_symbols = self.symbols.names().len();
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
        let ip = self
            .conns
            .get(&conn)
            .map(|c| c.ip.as_str())
            .unwrap_or_default();
        let addr = format!("{ip}:{}", r.port.unwrap_or(0));
        let mut out = Vec::new();
        push_frame(
            &mut out,
            &WorkerCommand {
                r#type: worker_command::Type::Dictionary as i32,
                symbols: self.symbols.names().to_vec(),
                server_features: SERVER_FEATURES_FOR_WORKERS
                    .iter()
                    .map(|f| f.to_string())
                    .collect(),
                ..Default::default()
            },
        );
        let idx = self.workers.list.len();
        self.log(
            LogLevel::Info,
            format!("worker {idx} registered: {addr}, {cpus} cpus"),
        );
        let w = self.workers.add(Worker::new(conn, addr, cpus, types, out));
        self.workers[w].can_cancel = r.features.iter().any(|f| f == "cancel");
        self.workers[w].keep_data = r.features.iter().any(|f| f == "keep-data");
        if !r.held.is_empty() {
            self.adopt_held(w, &r.held);
        }
        if self.symbols.names().len() > n_symbols {
            // New task types: clients that understand it learn them at once (the original
            // client would abort on an unsolicited DICTIONARY, so it gets none).
            let names = self.symbols.names().to_vec();
            for c in self.clients.iter_mut() {
                c.dictionary_update(&names);
            }
        }
        self.scratch.score.push(0);
        self.trace_worker(w);
        self.unpark();
        Ok(Peer::Worker(w))
    }

    /// A re-registering worker holds `held` (our extension, announced as "keep-data"): a task
    /// restored from the journal whose result is one of them and that is not yet computed or
    /// running is FINISHED there, as if it had just run; every other object (unknown to this
    /// server, released, another instance's ids, or already computed elsewhere) is REMOVEd on
    /// the worker, so nothing leaks and no stale object is ever served under a reused id.
    /// Objects go in id order: a plan's inputs come before their consumers, so a consumer whose
    /// inputs were adopted is ready when its turn comes.
    fn adopt_held(&mut self, w: super::ids::WorkerIdx, held: &[crate::proto::comm::HeldObject]) {
        use super::segment::TaskState;
        let mut held: Vec<_> = held.iter().map(|h| (h.id, h.size(), h.length())).collect();
        held.sort_unstable_by_key(|h| h.0);
        held.dedup_by_key(|h| h.0);
        let (mut adopted, mut removed) = (0usize, 0usize);
        for (id, size, length) in held {
            let id = TaskId(id);
            let slot = (id.0 >= 0 && id < self.restored_below)
                .then(|| self.graph.locate(id))
                .flatten()
                .filter(|&s| matches!(self.graph.state(s), TaskState::Ready | TaskState::Waiting));
            let Some(s) = slot else {
                wire::push_remove(&mut self.workers[w].out, id);
                removed += 1;
                continue;
            };
            let seg = self.graph.seg_mut(s);
            seg.set_state(s.off, TaskState::Running);
            seg.tasks[s.off].wk = Some(w);
            let c = seg.tasks[s.off].cpus;
            self.workers[w].book(c);
            let inputs = self.graph.inputs_of(s).to_vec();
            self.finished(w, id, size, length, true);
            // Its inputs that nothing else needs are not computed at all.
            self.prune_unneeded(inputs);
            adopted += 1;
            if self.awaiting.remove(&id) && self.awaiting.is_empty() {
                self.log(
                    LogLevel::Info,
                    "every result reported before the restart is back: the reconnect grace ends"
                        .to_owned(),
                );
                self.release_held_back();
            }
        }
        self.log(
            LogLevel::Info,
            format!(
                "worker {} re-registered holding {} objects: {adopted} adopted as results, {removed} removed",
                w.index(),
                adopted + removed
            ),
        );
    }

    /// Tasks among `roots` (and, in turn, their inputs) that are not yet computed, are no result
    /// and that nothing needs any more (an adopted consumer held their only reference) are
    /// dropped unplanned, releasing their own inputs.
    fn prune_unneeded(&mut self, roots: Vec<TaskId>) {
        use super::segment::{TaskFlags, TaskState};
        let mut stack = roots;
        while let Some(x) = stack.pop() {
            let Some(s) = self.graph.locate(x) else {
                continue;
            };
            let seg = self.graph.seg(s);
            let pending = matches!(
                seg.tasks[s.off].state,
                TaskState::Ready | TaskState::Waiting
            );
            if !pending
                || seg.tasks[s.off].refc != 0
                || seg.tasks[s.off].flags.has(TaskFlags::RESULT)
            {
                continue;
            }
            let holds_refs = !seg.tasks[s.off].flags.has(TaskFlags::LOAD);
            let inputs = self.graph.inputs_of(s).to_vec();
            self.graph.retire(s, TaskState::Freed);
            if holds_refs {
                for i in inputs {
                    self.dec_ref(s.seg, i);
                    stack.push(i);
                }
            }
        }
    }

    fn register_client(&mut self, conn: ConnId, r: &Register) -> Result<Peer, ServerError> {
        let ip = self
            .conns
            .get(&conn)
            .map(|c| c.ip.clone())
            .unwrap_or_default();
        if let Some(token) = r.session {
            return self.reattach_client(conn, ip, token, &r.features);
        }
        let mut out = Vec::new();
        push_frame(
            &mut out,
            &ClientResponse {
                r#type: client_response::Type::Dictionary as i32,
                symbols: self.symbols.names().to_vec(),
                features: offered_client_features(&r.features),
                ..Default::default()
            },
        );
        let session = r.features.iter().any(|f| f == "session").then(new_token);
        if let Some(token) = session {
            push_session(&mut out, token, 0);
        }
        let ci = self.clients.push(Client {
            conn,
            ip,
            alive: true,
            ranges: Vec::new(),
            next_base: 0,
            out,
            dict_updates: r.features.iter().any(|f| f == "dictionary-updates"),
            direct_fetch: r.features.iter().any(|f| f == "fetch-direct"),
            data_batch: r.features.iter().any(|f| f == DATA_BATCH),
            session,
            restored: false,
        });
        if let Some(token) = self.journaled_session(ci) {
            self.journal(|| Record::Session { token });
        }
        self.log(LogLevel::Info, format!("client {conn} registered"));
        Ok(Peer::Client(ci))
    }

    /// A client re-attaches to session `token` (after the server restarted from its journal):
    /// it gets the dictionary, its token again, then what the server said to the session while
    /// it was away. An unknown token is refused with an ERROR naming it.
    fn reattach_client(
        &mut self,
        conn: ConnId,
        ip: String,
        token: u64,
        features: &[String],
    ) -> Result<Peer, ServerError> {
        let found = self
            .clients
            .iter_enumerated()
            .find(|(_, c)| c.alive && c.session == Some(token) && c.is_detached())
            .map(|(i, _)| i);
        let Some(ci) = found else {
            let mut out = Vec::new();
            push_frame(
                &mut out,
                &ClientResponse {
                    r#type: client_response::Type::Error as i32,
                    error: Some(crate::proto::comm::Error {
                        id: Some(-1),
                        error_msg: Some(
                            format!(
                                "Session {token:x} is unknown to this server (it ended, or the server has no journal); its tasks are lost"
                            )
                            .into_bytes()
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            );
            self.out.writes.push((conn, out));
            return Err(ServerError::UnknownSession(token));
        };
        let mut out = Vec::new();
        push_frame(
            &mut out,
            &ClientResponse {
                r#type: client_response::Type::Dictionary as i32,
                symbols: self.symbols.names().to_vec(),
                features: offered_client_features(features),
                ..Default::default()
            },
        );
        push_session(&mut out, token, self.clients[ci].next_base);
        let c = &mut self.clients[ci];
        c.data_batch = features.iter().any(|f| f == DATA_BATCH);
        out.append(&mut c.out);
        c.out = out;
        c.conn = conn;
        c.ip = ip;
        self.log(
            LogLevel::Info,
            format!("client {conn} re-attached to session {token:x}"),
        );
        Ok(Peer::Client(ci))
    }
}

/// The client extensions this server offers (README differences table, row 20).
pub const CLIENT_FEATURES: [&str; 4] = ["fetch-many", "fetch-direct", DATA_BATCH, "release-many"];

/// The client extension "data-batch": several small fetched objects per `DATA_BATCH` response
/// (docs/protocol-extensions.md).
pub const DATA_BATCH: &str = "data-batch";

/// The extensions offered to a client that announced `announced`: those it asked for, so a client
/// announcing none (the original) gets a DICTIONARY byte-identical to the original server's.
fn offered_client_features(announced: &[String]) -> Vec<String> {
    CLIENT_FEATURES
        .iter()
        .filter(|f| announced.iter().any(|a| a == *f))
        .map(|f| f.to_string())
        .collect()
}

/// Queues `ClientResponse{SESSION, session: token, id: next_base}` (our extension): `next_base`
/// is the lowest client id the session's next plan may use — plans the client sent from there
/// on never reached the journal, and it sends them again.
fn push_session(out: &mut Vec<u8>, token: u64, next_base: i64) {
    push_frame(
        out,
        &ClientResponse {
            r#type: client_response::Type::Session as i32,
            session: Some(token),
            id: Some(next_base.min(i32::MAX as i64) as i32),
            ..Default::default()
        },
    );
}

/// A new session token: random (the std hasher's random keys, the time and a counter), below
/// 2^53 so that a JavaScript number holds it exactly.
fn new_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() & ((1 << 53) - 1)) | 1
}

/// `Register.type` of an allocation control connection (our extension: `AllocRegister.Type` in
/// `proto/alloc.proto`, which only the TypeScript server reads).
pub const REGISTER_ALLOC_CONTROL: i32 = 100;

/// What the TypeScript server reads of a connection's first frame before the core gets it: the
/// `Register` type (an allocation control connection is served outside the core) and our
/// extension field `job_id` (100, `proto/alloc.proto`) of a worker started by a cluster job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterHead {
    /// `Register.type` (1 worker, 2 client, [`REGISTER_ALLOC_CONTROL`]).
    pub kind: i32,
    /// `job_id` (field 100), empty when absent.
    pub job_id: String,
}

/// Scans a `Register` payload for [`RegisterHead`] on the crate's one protobuf scanner (the
/// server then needs no JavaScript protobuf decoder for a connection's first frame: issue #26,
/// startup). `None` when it is not a well-formed message carrying the required
/// `protocol_version` (1) and `type` (2): the core then rejects the frame itself.
pub fn scan_register_head(payload: &[u8]) -> Option<RegisterHead> {
    use crate::proto::scan::Scanner;
    let mut r = Scanner::new(payload);
    let (mut version, mut kind, mut job_id) = (false, None, String::new());
    while !r.done() {
        let (f, wt) = r.key().ok()?;
        match f {
            1 => {
                r.i32_of(wt).ok()?;
                version = true;
            }
            2 => kind = Some(r.i32_of(wt).ok()?),
            100 => job_id = String::from_utf8_lossy(r.bytes_of(wt).ok()?).into_owned(),
            _ => r.skip(wt).ok()?,
        }
    }
    Some(RegisterHead {
        kind: kind.filter(|_| version)?,
        job_id,
    })
}

#[cfg(test)]
mod head_tests {
    use super::*;

    fn register(kind: i32) -> Vec<u8> {
        Register {
            protocol_version: PROTOCOL_VERSION,
            r#type: kind,
            port: Some(1234),
            cpus: Some(4),
            task_types: vec!["loom/run/run".into()],
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_worker_register_and_its_job_id() {
        let plain = register(register::Type::RegisterWorker as i32);
        assert_eq!(
            scan_register_head(&plain),
            Some(RegisterHead {
                kind: 1,
                job_id: String::new()
            })
        );
        // The extension is appended by concatenation (worker.ts `withJobId`).
        let mut with_job = plain.clone();
        with_job.extend_from_slice(&[0xa2, 0x06, 5]);
        with_job.extend_from_slice(b"42.7\xff");
        assert_eq!(
            scan_register_head(&with_job),
            Some(RegisterHead {
                kind: 1,
                job_id: "42.7\u{fffd}".into()
            })
        );
    }

    #[test]
    fn a_control_register() {
        let head = scan_register_head(&register(REGISTER_ALLOC_CONTROL)).unwrap();
        assert_eq!(head.kind, REGISTER_ALLOC_CONTROL);
    }

    #[test]
    fn not_a_register() {
        assert_eq!(scan_register_head(b""), None);
        // `type` without `protocol_version`, a truncated field, a bad wire type.
        assert_eq!(scan_register_head(&[0x10, 0x01]), None);
        assert_eq!(scan_register_head(&[0x08, 0x02, 0x10]), None);
        assert_eq!(scan_register_head(&[0x08, 0x02, 0x12, 0x00]), None);
        assert_eq!(scan_register_head(b"GET / HTTP/1.1\r\n"), None);
    }
}
