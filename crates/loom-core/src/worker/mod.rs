//! Worker side of HyperLoom: data store, built-in tasks, transfers, resource slots.
//!
//! [`Worker`] is a pure state machine: the JS layer feeds it server bytes, peer bytes and JS task
//! results, and after each call takes a [`WorkerOutput`] holding the framed responses to write
//! to the server, the data streams to push, the tasks JS must execute and log lines.
//!
//! - Built-in tasks run inline, in the call that made them ready; their `FINISHED` frames are in
//!   that call's output, written after the result is stored (a later `SEND` finds it).
//! - `loom/run/run`, `loom/js/*`, `loom/py/*` and extra task types become [`JsTask`]s once their inputs are
//!   present and CPU slots are free (FIFO, head-of-line blocking; `n_cpus == 0` starts at once).
//! - One-cpu `loom/js/call` tasks share the slots lent to the function-call pool
//!   ([`CallPool`]): once every slot is taken, further calls are handed out on the pool's slots
//!   (up to [`POOL_CALLS_PER_CPU`] per lent slot) for JS to run one after another on its
//!   threads, never more at once than [`WorkerOutput::js_pool_cpus`]; a slot goes back when the
//!   pool has fewer calls than slots. JS can so hand a thread many queued calls in one message.
//! - Task types of the loaded task libraries ([`Extensions`]) go through the same queue and
//!   become [`NativeCall`]s: shared references to the stored inputs, run by the binding on its
//!   thread pool and answered with [`Worker::finish_native`] (see `native.rs`).
//! - Nothing a peer sends panics: a bad command fails its task (`FAILED`) or, when there is no
//!   task to fail, is logged and ignored. Only a broken byte stream is an `Err`.

mod builtin;
mod direct;
mod native;
mod peer;
mod peer_link;
mod slots;
mod store;
mod waiters;
mod wire;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use prost::Message;

use crate::data::stream::{
    append_stream_parts, encode_frames, encoded_len, StreamPart, SHARED_PAYLOAD_MIN,
};
use crate::data::{
    strerror, Array, DataDir, DataObject, DataRef, ExternFile, JsObj, PyObj, TypeIds,
};
use crate::frame::{push_frame, push_raw_frame, FrameError, FrameReader, MAX_CONTROL_FRAME};
use crate::proto::comm::{register, Announce, HeldObject, Register, WorkerCommand};
use crate::proto::PROTOCOL_VERSION;
use crate::symbols::{Symbols, JS_TASK_TYPES, ORIGINAL_TASK_TYPES, WORKER_DATA_TYPES};
use crate::trace::WorkerTrace;
use builtin::Kind;
pub use direct::DirectObject;
pub use native::{Extensions, NativeCall, NativeDone};
use peer::Peer;
use slots::Slots;
use store::Store;
use waiters::Waiters;
use wire::{cmd, resp};

/// Start-up parameters of a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The per-worker directory (already unique); `data/` is created inside it.
    pub work_dir: PathBuf,
    /// CPU slots.
    pub cpus: u32,
    /// The worker's data listen port (sent in Register).
    pub data_port: u16,
    /// Task types executed by JS besides `loom/run/run` and `loom/js/*`.
    pub extra_task_types: Vec<String>,
    /// Native task libraries to load (`--extension`), in order.
    pub extensions: Vec<PathBuf>,
}

pub use crate::log::LogLevel;

/// A task the JS layer must execute (run, js/*, py/* (in its Python pool), or any type it registered via
/// extra_task_types). CPU slots are already allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsTask {
    /// Task id (answer with [`Worker::finish_js_task`] or [`Worker::fail_task`]).
    pub id: i32,
    /// Task type name.
    pub task_type: String,
    /// The task's config bytes.
    pub config: Vec<u8>,
    /// The inputs, in order.
    pub inputs: Vec<JsInput>,
    /// CPUs requested.
    pub n_cpus: u32,
    /// The allocated slots (`n_cpus` of them; for a pooled call, the slot it lent to the
    /// pool, or none).
    pub cpu_slots: Vec<u32>,
    /// A call of the function-call pool: it runs on one of the pool's cpus
    /// ([`WorkerOutput::js_pool_cpus`]), after the pool's calls handed out before it.
    pub pooled: bool,
}

/// One input of a [`JsTask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsInput {
    /// `loom/data`, `loom/file`, `loom/array`, `loom/index`, `loom/js/obj` or `loom/pyobj`.
    pub type_name: String,
    /// Size per spec 5.3.
    pub size: u64,
    /// Length per spec 5.3.
    pub length: u64,
    /// D-objects (and JsObj, PyObj): the bytes when held in memory (<= 64 KiB, or a piece/slice view
    /// of any size) … For `loom/array` and `loom/index`: the object's stream frames (spec 5.4,
    /// framed, without the DataHeader), so JS can decode them like a fetched result.
    pub bytes: Option<Vec<u8>>,
    /// … or the path of the file holding them (spilled plain data or an opened file); JS
    /// reads/links it.
    pub path: Option<String>,
}

/// What JS produced for a JsTask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsResult {
    /// Raw bytes.
    Plain(Vec<u8>),
    /// A file in the run dir to MOVE (rename) into the data dir as the plain result.
    PlainFile(PathBuf),
    /// A serialized JS value.
    JsObj(Vec<u8>),
    /// A pickled Python object (`loom/pyobj`).
    PyObj(Vec<u8>),
    /// An array of results.
    Array(Vec<JsResult>),
    /// Pass input #i through unchanged.
    Input(usize),
    /// An item inside input #i, reached by taking item `path[0]`, then `path[1]`, ... (array
    /// elements are shared; an index piece is a view of its base).
    Item(usize, Vec<u64>),
}

/// An input of a redirected task (see [`Worker::redirect_task`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectInput {
    /// Input number `i` of the task being redirected.
    Input(usize),
    /// An item inside input #i (as [`JsResult::Item`]).
    Item(usize, Vec<u64>),
    /// New plain data.
    Data(Vec<u8>),
}

/// Data streams to push to one address, back to back.
///
/// The streams of one event going to the same address are one `Send` (W1's 500,000 transfers
/// of small objects cross to JS as a few buffers, not as 500,000 objects): small parts are
/// joined into one byte buffer, large D-Objects stay references.
#[derive(Debug, Clone)]
pub struct Send {
    /// The data objects sent (task ids), in stream order.
    pub ids: Vec<i32>,
    /// `ip:port` of a worker, or `!:port` for the server's host.
    pub address: String,
    /// The streams, in order: encoded bytes and, for large D-Objects, references to the stored
    /// bytes (written without a copy).
    pub parts: Vec<StreamPart>,
    /// One object in a data file, kept alone: the JS layer gives a peer on this host a send of
    /// one such object by its file (`peer-link`), so none of the other objects of the event is
    /// appended to it (a batch is streamed whole).
    pub alone: bool,
}

/// Encoded bytes below this size are appended to the preceding encoded part of a [`Send`]
/// (one buffer, one write); larger ones stay parts of their own (no copy of a big array's frames).
const JOIN_PART_BELOW: usize = 64 << 10;

/// The `Send` for `address` in `sends` (a new, empty one if there is none yet).
fn send_to<'a>(sends: &'a mut Vec<Send>, address: &str) -> &'a mut Send {
    match sends.iter().position(|s| !s.alone && s.address == address) {
        Some(i) => &mut sends[i],
        None => {
            sends.push(Send {
                ids: Vec::new(),
                address: address.to_owned(),
                parts: Vec::new(),
                alone: false,
            });
            sends.last_mut().expect("just pushed")
        }
    }
}

/// Adds the streams of `ids` to `sends`: appended to the `Send` for the same address if there
/// is one (in order), else a new one.
pub fn push_send(sends: &mut Vec<Send>, ids: &[i32], address: &str, parts: Vec<StreamPart>) {
    let s = send_to(sends, address);
    s.ids.extend_from_slice(ids);
    for p in parts {
        match (s.parts.last_mut(), p) {
            (Some(StreamPart::Bytes(last)), StreamPart::Bytes(b)) if b.len() < JOIN_PART_BELOW => {
                last.extend_from_slice(&b)
            }
            (_, p) => s.parts.push(p),
        }
    }
}

impl Send {
    /// The whole stream as one buffer (copies; for tests and small streams).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for p in &self.parts {
            v.extend_from_slice(p.as_slice());
        }
        v
    }
}

/// Everything produced since the last [`Worker::take_output`].
#[derive(Debug, Default)]
pub struct WorkerOutput {
    /// Framed WorkerResponses, in order.
    pub to_server: Vec<u8>,
    /// Data streams to push.
    pub sends: Vec<Send>,
    /// Tasks to execute in JS.
    pub js_tasks: Vec<JsTask>,
    /// Native tasks to run on a thread pool (answer each with [`Worker::finish_native`]).
    pub native_calls: Vec<NativeCall>,
    /// Log lines.
    pub logs: Vec<(LogLevel, String)>,
    /// JS tasks canceled by the server: stop them (their slots are already free) and report
    /// nothing for them.
    pub canceled: Vec<i32>,
    /// Cpus lent to the function-call pool now: JS runs at most this many pooled calls at once.
    pub js_pool_cpus: u32,
}

/// Pooled calls handed out per cpu lent to the pool, at most (bounds the calls a slow call can
/// hold up behind it; the server's `POOLED_OVERBOOK`). 256, not 64: a thread's batch takes its
/// share of the queue, and fewer, larger batches mean fewer thread wake-ups per call (issue #26: W5's
/// CPU per call 49 -> 29 µs with the tinypool threads waiting on Atomics).
pub const POOL_CALLS_PER_CPU: u32 = 256;

/// The function-call pool: the slots lent to it and its calls handed out and not answered.
/// Invariant: `calls >= lent.len()` (a slot goes back as soon as the pool has fewer calls).
#[derive(Debug, Default)]
struct CallPool {
    lent: Vec<u32>,
    calls: u32,
}

/// What this worker understands beyond the original protocol (`Register.features`).
pub const WORKER_FEATURES: &[&str] = &["cancel", "keep-data"];

/// Errors that end a connection (or the worker, for `new`).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// `<work_dir>/data` could not be created (it must not exist).
    #[error("Cannot create 'data' in working directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Bad framing on the server connection.
    #[error("server stream: {0}")]
    Frame(#[from] FrameError),
    /// An undecodable message on the server connection.
    #[error("malformed message from the server: {0}")]
    BadMessage(String),
    /// A task library could not be loaded (or defines a task type twice).
    #[error(transparent)]
    Extension(#[from] crate::extension::ExtensionError),
    /// A broken data connection.
    #[error("data connection {conn}: {msg}")]
    Stream {
        /// The connection.
        conn: u32,
        /// What was wrong.
        msg: String,
    },
}

/// Maps keyed by task, data and connection ids (see [`crate::id_map`]).
type IdMap<V> = crate::id_map::IdMap<i32, V>;

/// A task waiting for inputs to arrive.
#[derive(Debug)]
struct Waiting {
    type_id: i32,
    kind: Kind,
    config: Vec<u8>,
    inputs: Vec<i32>,
    n_cpus: u32,
    checkpoint: String,
    missing: usize,
}

/// A JS task whose inputs are present, waiting for CPU slots.
#[derive(Debug)]
struct Queued {
    id: i32,
    type_id: i32,
    config: Vec<u8>,
    inputs: Vec<DataRef>,
    n_cpus: u32,
    checkpoint: String,
}

/// A JS task handed out and not yet answered.
#[derive(Debug)]
struct Running {
    inputs: Vec<DataRef>,
    /// Its own slots (none for a pooled call: those are the pool's).
    slots: Vec<u32>,
    checkpoint: String,
    /// A call of the function-call pool.
    pooled: bool,
}

/// The worker core.
#[derive(Debug)]
pub struct Worker {
    cfg: WorkerConfig,
    /// Shared with native calls, which store their results on the thread pool.
    dd: Arc<DataDir>,
    extensions: Extensions,
    symbols: Symbols,
    ids: TypeIds,
    kinds: Vec<Kind>,
    server: FrameReader,
    store: Store,
    waiting: IdMap<Waiting>,
    /// data id -> tasks waiting for it (one entry per occurrence in the task's inputs).
    waiters: IdMap<Waiters>,
    woken: VecDeque<i32>,
    queue: VecDeque<Queued>,
    slots: Slots,
    pool: CallPool,
    /// The dictionary id of `loom/js/call` (-1 before the dictionary).
    js_call_type: i32,
    running: IdMap<Running>,
    peers: HashMap<u32, Peer>,
    /// Objects decoded from one data-connection chunk, before they are stored (kept empty
    /// between calls, for its capacity).
    peer_done: Vec<(crate::data::stream::Decoded, peer::RecvStat)>,
    /// Data-connection events that came before the server's DICTIONARY, in order (chunk, or
    /// None for a close); replayed once it came. None after it came. A peer told to SEND to a
    /// worker that just registered can connect before the registration answer arrives on the
    /// server connection, and its type ids mean nothing until then.
    early_peer: Option<Vec<(u32, Option<Vec<u8>>)>>,
    /// Held connections whose replayed stream was broken (their next bytes are refused).
    broken_early: Vec<u32>,
    out: WorkerOutput,
    input_ids: Vec<i32>,
    input_refs: Vec<DataRef>,
    /// The trace, after the server sent UPDATE.
    trace: Option<Box<WorkerTrace>>,
    /// The server announced "trace-marked": only tasks it marks `traced` (its tracing client's)
    /// are traced, and their data ([`Worker::trace_of`]).
    trace_marked: bool,
    /// Marked tasks (and so their data) not removed yet, while tracing.
    traced: HashSet<i32>,
    /// The server announced "leaving" ([`Worker::leaving_frame`]).
    server_leaving: bool,
    /// The server announced "transfer-failed" ([`Worker::transfer_failed`]).
    server_transfer_failed: bool,
    /// The server sent STOP: exit when its connection closes, do not reconnect.
    stop_requested: bool,
}

impl Worker {
    /// Loads the task libraries, then creates `<work_dir>/data` (an error if it exists).
    pub fn new(cfg: WorkerConfig) -> Result<Worker, WorkerError> {
        let reserved: Vec<String> = JS_TASK_TYPES
            .iter()
            .map(|s| s.to_string())
            .chain(cfg.extra_task_types.iter().cloned())
            .collect();
        let extensions = Extensions::load(&cfg.extensions, &reserved)?;
        let data = cfg.work_dir.join("data");
        std::fs::create_dir(&data).map_err(|source| WorkerError::DataDir {
            path: cfg.work_dir.clone(),
            source,
        })?;
        Ok(Worker {
            dd: Arc::new(DataDir::new(data)),
            extensions,
            symbols: Symbols::new(),
            ids: TypeIds::default(),
            kinds: Vec::new(),
            server: FrameReader::new(MAX_CONTROL_FRAME),
            store: Store::default(),
            waiting: IdMap::default(),
            waiters: IdMap::default(),
            woken: VecDeque::new(),
            queue: VecDeque::new(),
            slots: Slots::new(cfg.cpus),
            pool: CallPool::default(),
            js_call_type: -1,
            running: IdMap::default(),
            peers: HashMap::new(),
            peer_done: Vec::new(),
            early_peer: Some(Vec::new()),
            broken_early: Vec::new(),
            out: WorkerOutput::default(),
            input_ids: Vec::new(),
            input_refs: Vec::new(),
            trace: None,
            trace_marked: false,
            traced: HashSet::new(),
            server_leaving: false,
            server_transfer_failed: false,
            stop_requested: false,
            cfg,
        })
    }

    /// The framed Register message (REGISTER_WORKER, v2, port, cpus, task_types =
    /// ORIGINAL_TASK_TYPES + JS_TASK_TYPES + extra + the libraries' types, data_types =
    /// WORKER_DATA_TYPES).
    pub fn register_frame(&self) -> Vec<u8> {
        let task_types = ORIGINAL_TASK_TYPES
            .iter()
            .chain(JS_TASK_TYPES.iter())
            .map(|s| s.to_string())
            .chain(self.cfg.extra_task_types.iter().cloned())
            .chain(self.extensions.task_types())
            .collect();
        let msg = Register {
            protocol_version: PROTOCOL_VERSION,
            r#type: register::Type::RegisterWorker as i32,
            port: Some(i32::from(self.cfg.data_port)),
            task_types,
            data_types: WORKER_DATA_TYPES.iter().map(|s| s.to_string()).collect(),
            cpus: Some(self.cfg.cpus as i32),
            features: WORKER_FEATURES.iter().map(|s| s.to_string()).collect(),
            session: None,
            held: self.held(),
        };
        let mut out = Vec::new();
        push_frame(&mut out, &msg);
        out
    }

    /// The objects in the store, in id order (sent with the Register of a reconnecting worker).
    fn held(&self) -> Vec<HeldObject> {
        let mut held: Vec<HeldObject> = self
            .store
            .iter()
            .map(|(id, obj)| HeldObject {
                id,
                size: Some(obj.size()),
                length: Some(obj.length()),
            })
            .collect();
        held.sort_unstable_by_key(|h| h.id);
        held
    }

    /// The server connection was lost and the worker reconnects keeping its data: every task
    /// waiting, queued or running is dropped (running JS tasks are listed in
    /// [`WorkerOutput::canceled`] for JS to stop; the next server decides what runs), data
    /// connections and half-read frames are forgotten; the stored objects stay, and the next
    /// [`register_frame`](Self::register_frame) reports them.
    pub fn reset_connection(&mut self) {
        self.waiting.clear();
        self.waiters.clear();
        self.woken.clear();
        self.queue.clear();
        let running: Vec<i32> = self.running.keys().copied().collect();
        for id in running {
            if let Some(r) = self.running.remove(&id) {
                self.slots.release(&r.slots);
                self.out.canceled.push(id);
            }
        }
        self.peers.clear();
        self.server = FrameReader::new(MAX_CONTROL_FRAME);
        self.out.to_server.clear();
    }

    /// The loaded task libraries.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The data directory (`<work_dir>/data`).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dd.path()
    }

    /// The ids of the data types in the server's dictionary (-1 before it arrived), which the
    /// stream frames of array and index inputs ([`JsInput::bytes`]) refer to.
    pub fn type_ids(&self) -> TypeIds {
        self.ids
    }

    /// Whether the server sent STOP (our extension): the worker exits instead of reconnecting.
    pub fn stop_requested(&self) -> bool {
        self.stop_requested
    }

    /// Number of objects in the store.
    pub fn stored_objects(&self) -> usize {
        self.store.len()
    }

    /// Bytes from the server connection. Err only for a broken stream (TS then closes and
    /// exits); a bad command becomes FAILED, never a panic.
    pub fn on_server_data(&mut self, chunk: &[u8]) -> Result<(), WorkerError> {
        self.trace_new_call();
        // Room for the answers at once: a TASK frame is answered by a FINISHED of about its
        // size (REMOVEs by nothing), so a chunk's answers fit in as many bytes. Grown from
        // empty, the output was reallocated ~12 times per 64 KiB chunk (issue #26: ~50
        // instructions per task at W1).
        self.out.to_server.reserve(chunk.len());
        let mut reader = std::mem::take(&mut self.server);
        let r = reader.feed(chunk, |frame| self.command(frame));
        self.server = reader;
        self.drain_woken();
        if r.is_ok() {
            self.replay_early_peer();
        }
        r
    }

    /// Replays the data-connection events held until the DICTIONARY ([`Worker::early_peer`]).
    /// A held stream found broken is logged; the connection's next bytes get the error (its
    /// caller closes it then).
    fn replay_early_peer(&mut self) {
        if self.symbols.names().is_empty() {
            return;
        }
        let Some(held) = self.early_peer.take() else {
            return;
        };
        for (conn, ev) in held {
            match ev {
                Some(_) if self.broken_early.contains(&conn) => {}
                Some(chunk) => {
                    if let Err(e) = self.on_peer_data(conn, &chunk) {
                        self.log(LogLevel::Error, e.to_string());
                        self.broken_early.push(conn);
                    }
                }
                None => self.on_peer_close(conn),
            }
        }
    }

    /// Bytes on a data connection `conn`: one a peer opened (its first frame, an Announce, is
    /// recognised by its shape and skipped) or one this worker opened with
    /// [`open_peer`](Self::open_peer).
    pub fn on_peer_data(&mut self, conn: u32, chunk: &[u8]) -> Result<(), WorkerError> {
        self.trace_new_call();
        if let Some(held) = self.early_peer.as_mut() {
            held.push((conn, Some(chunk.to_vec())));
            return Ok(());
        }
        if self.broken_early.contains(&conn) {
            return Err(WorkerError::Stream {
                conn,
                msg: "stream broken before the dictionary arrived".to_owned(),
            });
        }
        let mut peer = self.peers.remove(&conn).unwrap_or_else(Peer::new);
        // A small object's stream (a header and a data frame, ~30 bytes) is answered by a
        // TRANSFERED of ~14: room for them at once, as in `on_server_data`.
        self.out.to_server.reserve(chunk.len() / 2);
        // A 64 KiB chunk holds ~2,000 small objects: collected in a vector kept between calls.
        let mut done = std::mem::take(&mut self.peer_done);
        let timed = self.trace.is_some();
        let r = peer.feed(chunk, &self.ids, &self.dd, timed, |d, stat| {
            done.push((d, stat))
        });
        for ((id, obj), stat) in done.drain(..) {
            if timed {
                self.trace_received(id, stat);
            }
            self.received(id, obj);
        }
        self.peer_done = done;
        let r = match r {
            Ok(()) => {
                self.peers.insert(conn, peer);
                Ok(())
            }
            Err(msg) => Err(WorkerError::Stream { conn, msg }),
        };
        self.drain_woken();
        r
    }

    /// This worker opened data connection `conn` to a peer (or the server's data port)
    /// listening on `port`: returns the framed Announce to write on it first. What the peer
    /// sends back on it is fed to [`on_peer_data`](Self::on_peer_data) like any connection.
    pub fn open_peer(&mut self, conn: u32, port: u16) -> Vec<u8> {
        let announce = Announce {
            port: i32::from(self.cfg.data_port),
            ..Default::default()
        };
        self.open_peer_announcing(conn, port, announce)
    }

    /// Records outgoing connection `conn` (peer listening on `port`) and frames `announce` for it.
    fn open_peer_announcing(&mut self, conn: u32, port: u16, announce: Announce) -> Vec<u8> {
        self.peers.insert(conn, Peer::outgoing(port));
        let mut frame = Vec::new();
        push_frame(&mut frame, &announce);
        frame
    }

    /// A data connection closed: a partly received object is dropped (logged).
    pub fn on_peer_close(&mut self, conn: u32) {
        if let Some(held) = self.early_peer.as_mut() {
            held.push((conn, None));
            return;
        }
        self.broken_early.retain(|&c| c != conn);
        if let Some(peer) = self.peers.remove(&conn) {
            if let Some(id) = peer.partial_id() {
                self.log(
                    LogLevel::Warn,
                    format!("data connection {conn} closed while receiving data id={id}"),
                );
            }
        }
    }

    /// JS finished task `id`; its slots are released and queued tasks may start.
    pub fn finish_js_task(&mut self, id: i32, result: JsResult) {
        self.trace_new_call();
        let Some(r) = self.running.remove(&id) else {
            self.log(
                LogLevel::Debug,
                format!("finish_js_task: task id={id} is not running (canceled)"),
            );
            return;
        };
        self.free(&r);
        match self.convert(result, &r.inputs) {
            Ok(obj) => self.publish(id, obj, &r.checkpoint),
            Err(msg) => self.fail(id, &msg),
        }
        self.start_queued();
        self.drain_woken();
    }

    /// A native task ran ([`NativeCall::run`]): its log lines are logged naming the task, its
    /// slots are released, and its stored result is published (or the task fails with the
    /// library's message). Queued tasks may start.
    pub fn finish_native(&mut self, done: NativeDone) {
        self.trace_new_call();
        let NativeDone {
            id,
            task_type,
            result,
            logs,
        } = done;
        for (level, text) in logs {
            self.log(level, format!("Task id={id} ({task_type}): {text}"));
        }
        let Some(r) = self.running.remove(&id) else {
            self.log(
                LogLevel::Warn,
                format!("finish_native: task id={id} is not running"),
            );
            return;
        };
        self.slots.release(&r.slots);
        match result {
            Ok(obj) => self.publish(id, obj, &r.checkpoint),
            Err(msg) => self.fail(id, &msg),
        }
        self.start_queued();
        self.drain_woken();
    }

    /// Task redirection: JS asks to run `task_type` in place of task `id` (same id, same CPU
    /// slots). Its inputs are inputs of the original task (by position) or new plain data.
    pub fn redirect_task(
        &mut self,
        id: i32,
        task_type: &str,
        config: &[u8],
        inputs: Vec<RedirectInput>,
    ) {
        self.trace_new_call();
        let Some(r) = self.running.remove(&id) else {
            self.log(
                LogLevel::Warn,
                format!("redirect_task: task id={id} is not running"),
            );
            return;
        };
        let kind = self
            .symbols
            .id(task_type)
            .and_then(|t| usize::try_from(t).ok().map(|i| (t, i)))
            .and_then(|(t, i)| self.kinds.get(i).map(|k| (t, *k)));
        let mut refs = Vec::with_capacity(inputs.len());
        let mut error = None;
        for input in inputs {
            match input {
                RedirectInput::Input(i) => match r.inputs.get(i) {
                    Some(x) => refs.push(x.clone()),
                    None => {
                        error = Some(format!(
                            "task redirection refers to input #{i} but the task has {} inputs",
                            r.inputs.len()
                        ));
                        break;
                    }
                },
                RedirectInput::Item(i, path) => match item(&r.inputs, i, &path) {
                    Ok(x) => refs.push(x),
                    Err(msg) => {
                        error = Some(format!("task redirection: {msg}"));
                        break;
                    }
                },
                RedirectInput::Data(bytes) => match self.dd.plain(bytes) {
                    Ok(p) => refs.push(DataRef::new(DataObject::Plain(p))),
                    Err(e) => {
                        error = Some(format!(
                            "cannot store a redirection input: {}",
                            strerror(&e)
                        ));
                        break;
                    }
                },
            }
        }
        let (type_id, kind) = match (kind, error) {
            (_, Some(msg)) => {
                self.free(&r);
                self.fail(id, &msg);
                return self.start_queued();
            }
            (None, None) | (Some((_, Kind::Unknown)), None) => {
                self.free(&r);
                let msg = format!("Task redirection to unknown task type '{task_type}'");
                self.fail(id, &msg);
                return self.start_queued();
            }
            (Some(k), None) => k,
        };
        if matches!(kind, Kind::Js | Kind::Native(_)) && r.pooled {
            // A pooled call held no slot of its own: the task replacing it queues first in line
            // for one cpu (the pool gives a slot back once it has fewer calls than slots).
            self.free(&r);
            self.queue.push_front(Queued {
                id,
                type_id,
                config: config.to_vec(),
                inputs: refs,
                n_cpus: 1,
                checkpoint: String::new(),
            });
            self.start_queued();
        } else if matches!(kind, Kind::Js | Kind::Native(_)) {
            let n_cpus = r.slots.len() as u32;
            let q = Queued {
                id,
                type_id,
                config: config.to_vec(),
                inputs: refs,
                n_cpus,
                checkpoint: String::new(),
            };
            // The redirected task keeps the slots of the task it replaces.
            self.start_js(q, r.slots, false);
        } else {
            self.free(&r);
            self.start(id, type_id, kind, config, &mut refs, 0, "");
            self.start_queued();
        }
        self.drain_woken();
    }

    /// JS failed task `id` with `message`; FAILED goes to the server.
    pub fn fail_task(&mut self, id: i32, message: &[u8]) {
        self.trace_new_call();
        let Some(r) = self.running.remove(&id) else {
            self.log(
                LogLevel::Debug,
                format!("fail_task: task id={id} is not running (canceled)"),
            );
            return;
        };
        self.free(&r);
        if let Some(t) = self.trace_of(id) {
            t.failed(id);
        }
        wire::push_error(&mut self.out.to_server, resp::FAILED, id, message);
        self.start_queued();
        self.drain_woken();
    }

    /// The server canceled task `id` (its client is gone): a task waiting for inputs or for
    /// cores is dropped; a JS task that runs has its slots freed at once and is listed in
    /// [`WorkerOutput::canceled`] for JS to stop. Nothing is reported for it; an answer JS gives
    /// later is ignored. Unknown ids (finished meanwhile) are ignored.
    pub fn cancel(&mut self, id: i32) {
        if let Some(w) = self.waiting.remove(&id) {
            for i in &w.inputs {
                if let Some(list) = self.waiters.get_mut(i) {
                    if list.remove(id) {
                        self.waiters.remove(i);
                    }
                }
            }
        } else if let Some(pos) = self.queue.iter().position(|q| q.id == id) {
            self.queue.remove(pos);
        } else if let Some(r) = self.running.remove(&id) {
            self.free(&r);
            self.out.canceled.push(id);
            self.start_queued();
        }
    }

    /// Everything produced since the last call.
    pub fn take_output(&mut self) -> WorkerOutput {
        self.out.js_pool_cpus = self.pool.lent.len() as u32;
        std::mem::take(&mut self.out)
    }

    /// Frees what an answered (or canceled) JS task held: its slots, or its place in the
    /// function-call pool (and a pool slot once the pool has fewer calls than slots).
    fn free(&mut self, r: &Running) {
        if !r.pooled {
            return self.slots.release(&r.slots);
        }
        self.pool.calls -= 1;
        while (self.pool.calls as usize) < self.pool.lent.len() {
            let s = self.pool.lent.pop().expect("a lent slot");
            self.slots.release(&[s]);
        }
    }

    fn log(&mut self, level: LogLevel, msg: String) {
        self.out.logs.push((level, msg));
    }

    fn fail(&mut self, id: i32, msg: &str) {
        if let Some(t) = self.trace_of(id) {
            t.failed(id);
        }
        wire::push_error(&mut self.out.to_server, resp::FAILED, id, msg.as_bytes());
    }

    fn command(&mut self, frame: &[u8]) -> Result<(), WorkerError> {
        let mut inputs = std::mem::take(&mut self.input_ids);
        let mut c = wire::Command::default();
        if let Err(e) = wire::decode_command(frame, &mut inputs, &mut c) {
            self.input_ids = inputs;
            return Err(WorkerError::BadMessage(e.to_owned()));
        }
        match c.ty {
            Some(cmd::TASK) => match c.id {
                Some(id) => {
                    if c.traced && self.trace.is_some() {
                        self.traced.insert(id);
                    }
                    self.task(id, &c, &inputs)
                }
                None => self.log(LogLevel::Warn, "TASK without an id; ignored".to_owned()),
            },
            Some(cmd::SEND) => self.send(c.id, c.address),
            Some(cmd::REMOVE) => match c.id.map(|id| {
                if !self.traced.is_empty() {
                    self.traced.remove(&id);
                }
                (id, self.store.remove(&id))
            }) {
                Some((_, Some(_))) => {}
                Some((id, None)) => {
                    self.log(LogLevel::Warn, format!("REMOVE of unknown data id={id}"))
                }
                None => self.log(LogLevel::Warn, "REMOVE without an id; ignored".to_owned()),
            },
            Some(cmd::DICTIONARY) => match WorkerCommand::decode(frame) {
                Ok(m) => {
                    if !m.server_features.is_empty() {
                        self.trace_marked = m.server_features.iter().any(|f| f == "trace-marked");
                        self.server_leaving = m.server_features.iter().any(|f| f == "leaving");
                        self.server_transfer_failed =
                            m.server_features.iter().any(|f| f == "transfer-failed");
                    }
                    self.dictionary(&m.symbols)
                }
                Err(e) => {
                    self.input_ids = inputs;
                    return Err(WorkerError::BadMessage(e.to_string()));
                }
            },
            Some(cmd::UPDATE) => self.trace_update(c.trace_path, c.worker_id),
            Some(cmd::LOAD_CHECKPOINT) => {
                if let (true, true, Some(id)) = (c.traced, self.trace.is_some(), c.id) {
                    self.traced.insert(id);
                }
                self.load_checkpoint(c.id, c.checkpoint_path)
            }
            Some(cmd::STOP) => {
                self.stop_requested = true;
                self.log(
                    LogLevel::Info,
                    "The server lets this worker go (STOP); it exits when the connection closes"
                        .to_owned(),
                );
            }
            Some(cmd::CANCEL) => match c.id {
                Some(id) => self.cancel(id),
                None => self.log(LogLevel::Warn, "CANCEL without an id; ignored".to_owned()),
            },
            other => self.log(
                LogLevel::Warn,
                format!("Invalid message from the server (type {other:?}); ignored"),
            ),
        }
        self.input_ids = inputs;
        Ok(())
    }

    fn dictionary(&mut self, names: &[String]) {
        let mut symbols = Symbols::new();
        for n in names {
            symbols.add(n);
        }
        self.kinds = names
            .iter()
            .map(|n| Kind::of(n, &self.cfg.extra_task_types, &self.extensions))
            .collect();
        self.ids = TypeIds::from_symbols(&symbols);
        self.js_call_type = symbols.id("loom/js/call").unwrap_or(-1);
        self.symbols = symbols;
        let missing: Vec<String> = ORIGINAL_TASK_TYPES
            .iter()
            .chain(JS_TASK_TYPES.iter())
            .chain(WORKER_DATA_TYPES.iter())
            .copied()
            .chain(self.cfg.extra_task_types.iter().map(String::as_str))
            .map(str::to_owned)
            .chain(self.extensions.task_types())
            .filter(|n| self.symbols.id(n).is_none())
            .collect();
        if !missing.is_empty() {
            let msg = format!(
                "Unknown symbol(s) in the dictionary: {}",
                missing.join(", ")
            );
            self.log(LogLevel::Warn, msg);
        }
    }

    fn task(&mut self, id: i32, c: &wire::Command<'_>, inputs: &[i32]) {
        let type_id = c.task_type.unwrap_or(-1);
        let kind = usize::try_from(type_id)
            .ok()
            .and_then(|i| self.kinds.get(i).copied())
            .unwrap_or(Kind::Unknown);
        if kind == Kind::Unknown {
            let name = self
                .symbols
                .name(type_id)
                .unwrap_or("not in the dictionary");
            let msg = format!("Task with unknown type {type_id} ({name}) received");
            return self.fail(id, &msg);
        }
        let n_cpus = c.n_cpus.max(0) as u32;
        let checkpoint = match c.checkpoint_path {
            [] => "",
            path => match std::str::from_utf8(path) {
                Ok(s) => s,
                Err(_) => return self.fail(id, "checkpoint_path is not valid UTF-8"),
            },
        };
        let mut refs = std::mem::take(&mut self.input_refs);
        refs.clear();
        let mut missing = 0;
        for &i in inputs {
            match self.store.get(&i) {
                Some(x) if missing == 0 => refs.push(x.clone()),
                Some(_) => {}
                None => {
                    // The task waits: it is woken once per missing occurrence.
                    missing += 1;
                    match self.waiters.entry(i) {
                        Entry::Occupied(mut e) => e.get_mut().push(id),
                        Entry::Vacant(e) => {
                            e.insert(Waiters::One(id));
                        }
                    }
                }
            }
        }
        if missing == 0 {
            self.start(id, type_id, kind, c.config, &mut refs, n_cpus, checkpoint);
        } else {
            refs.clear();
            self.waiting.insert(
                id,
                Waiting {
                    type_id,
                    kind,
                    config: c.config.to_vec(),
                    inputs: inputs.to_vec(),
                    n_cpus,
                    checkpoint: checkpoint.to_owned(),
                    missing,
                },
            );
        }
        self.input_refs = refs;
    }

    /// Runs a built-in at once or queues a JS or native task. `refs` holds the inputs (left empty).
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        id: i32,
        type_id: i32,
        kind: Kind,
        config: &[u8],
        refs: &mut Vec<DataRef>,
        n_cpus: u32,
        checkpoint: &str,
    ) {
        if matches!(kind, Kind::Js | Kind::Native(_)) {
            let q = Queued {
                id,
                type_id,
                config: config.to_vec(),
                inputs: std::mem::take(refs),
                n_cpus,
                checkpoint: checkpoint.to_owned(),
            };
            if n_cpus == 0 {
                self.start_js(q, Vec::new(), false);
            } else {
                self.queue.push_back(q);
                self.start_queued();
            }
            return;
        }
        if let Some(t) = self.trace_of(id) {
            t.started(id, -1);
        }
        let r = builtin::run(kind, config, refs, &self.dd);
        refs.clear();
        match r {
            Ok(obj) => self.publish(id, obj, checkpoint),
            Err(msg) => self.fail(id, &msg),
        }
    }

    /// Starts queued JS and native tasks in FIFO order while their CPUs are free. The
    /// function-call pool comes first (its calls were handed out before anything queued): it
    /// takes free slots while it has calls waiting for one.
    fn start_queued(&mut self) {
        while self.pool.calls as usize > self.pool.lent.len() {
            let Some(slots) = self.slots.take(1) else {
                break;
            };
            self.pool.lent.extend_from_slice(&slots);
        }
        while let Some(q) = self.queue.front() {
            if q.n_cpus > self.slots.cpus() {
                let q = self.queue.pop_front().expect("front");
                let msg = format!(
                    "Task needs {} cpus but this worker has only {}",
                    q.n_cpus,
                    self.slots.cpus()
                );
                self.fail(q.id, &msg);
                continue;
            }
            let pooled = q.n_cpus == 1 && q.type_id == self.js_call_type && q.type_id >= 0;
            let slots = match self.slots.take(q.n_cpus) {
                Some(slots) => {
                    if pooled {
                        self.pool.lent.extend_from_slice(&slots);
                    }
                    slots
                }
                // Every slot is taken: a call may still join the pool's queue.
                None if pooled
                    && !self.pool.lent.is_empty()
                    && self.pool.calls < self.pool.lent.len() as u32 * POOL_CALLS_PER_CPU =>
                {
                    Vec::new()
                }
                None => break,
            };
            if pooled {
                self.pool.calls += 1;
            }
            let q = self.queue.pop_front().expect("front");
            self.start_js(q, slots, pooled);
        }
    }

    /// Hands a task with its slots to JS ([`JsTask`]) or, for a library's task type, to the
    /// thread pool ([`NativeCall`], with shared references to the stored inputs).
    fn start_js(&mut self, mut q: Queued, slots: Vec<u32>, pooled: bool) {
        if let Some(t) = self.trace_of(q.id) {
            t.started(q.id, slots.first().map_or(-1, |&s| s as i64));
        }
        let task_type = self.symbols.name(q.type_id).unwrap_or_default().to_owned();
        let library = match usize::try_from(q.type_id)
            .ok()
            .and_then(|i| self.kinds.get(i))
        {
            Some(Kind::Native(l)) => self.extensions.library(*l).cloned(),
            _ => None,
        };
        match library {
            Some(library) => self.out.native_calls.push(NativeCall::new(
                q.id,
                library,
                task_type,
                std::mem::take(&mut q.config),
                // Moved: the call holds the only task-side reference (a native result never
                // refers back to an input, so `Running` needs none).
                std::mem::take(&mut q.inputs),
                self.dd.clone(),
            )),
            None => {
                let by_path = task_type == "loom/py/call";
                let inputs = q.inputs.iter().map(|x| self.js_input(x, by_path)).collect();
                self.out.js_tasks.push(JsTask {
                    id: q.id,
                    task_type,
                    config: std::mem::take(&mut q.config),
                    inputs,
                    n_cpus: q.n_cpus,
                    cpu_slots: slots.clone(),
                    pooled,
                });
            }
        }
        self.running.insert(
            q.id,
            Running {
                inputs: q.inputs,
                slots: if pooled { Vec::new() } else { slots },
                checkpoint: q.checkpoint,
                pooled,
            },
        );
    }

    /// `by_path` (Python calls): large data files inside arrays and indexes are given by path
    /// (see [`PATH_TYPE_ID`]), not copied into the frames.
    fn js_input(&self, x: &DataObject, by_path: bool) -> JsInput {
        let (bytes, path) = match x {
            DataObject::Array(_) | DataObject::Index(_) => {
                let mut b = Vec::new();
                if by_path {
                    frames_by_path(x, &self.ids, &mut b);
                } else {
                    encode_frames(x, &self.ids, &mut b);
                }
                (Some(b), None)
            }
            DataObject::JsObj(j) => (Some(j.bytes().to_vec()), None),
            DataObject::PyObj(p) => (Some(p.bytes().to_vec()), None),
            _ => match x.file_path() {
                Some(p) => (None, Some(p.to_string_lossy().into_owned())),
                None => (Some(x.bytes().unwrap_or_default().to_vec()), None),
            },
        };
        JsInput {
            type_name: x.type_name().to_owned(),
            size: x.size(),
            length: x.length(),
            bytes,
            path,
        }
    }

    fn convert(&self, r: JsResult, inputs: &[DataRef]) -> Result<DataRef, String> {
        Ok(match r {
            JsResult::Plain(v) => DataRef::new(DataObject::Plain(
                self.dd
                    .plain(v)
                    .map_err(|e| format!("cannot store the result: {}", strerror(&e)))?,
            )),
            JsResult::PlainFile(p) => {
                DataRef::new(DataObject::Plain(self.dd.adopt(&p).map_err(|e| {
                    let name = p.file_name().unwrap_or(p.as_os_str()).to_string_lossy();
                    format!("Output '{name}' error: {}", strerror(&e))
                })?))
            }
            JsResult::JsObj(v) => DataRef::new(DataObject::JsObj(JsObj::new(v))),
            JsResult::PyObj(v) => DataRef::new(DataObject::PyObj(PyObj::new(v))),
            JsResult::Item(i, path) => item(inputs, i, &path)?,
            JsResult::Array(items) => {
                let items = items
                    .into_iter()
                    .map(|x| self.convert(x, inputs))
                    .collect::<Result<Vec<_>, _>>()?;
                DataRef::new(DataObject::Array(Array::new(items)))
            }
            JsResult::Input(i) => inputs.get(i).cloned().ok_or_else(|| {
                format!(
                    "the result refers to input #{i} but the task has {} inputs",
                    inputs.len()
                )
            })?,
        })
    }

    /// Stores a task result, answers FINISHED (and writes its checkpoint), wakes waiters.
    fn publish(&mut self, id: i32, obj: DataRef, checkpoint: &str) {
        let sl = Some((obj.size(), obj.length()));
        if let Some(t) = self.trace_of(id) {
            t.finished(id, obj.size());
        }
        if checkpoint.is_empty() {
            self.store.insert(id, obj);
            wire::push_response(&mut self.out.to_server, resp::FINISHED, id, sl);
        } else {
            self.store.insert(id, obj.clone());
            let out = &mut self.out.to_server;
            wire::push_response(out, resp::FINISHED_AND_CHECKPOINTING, id, sl);
            match write_checkpoint(&obj, checkpoint) {
                Ok(()) => wire::push_response(out, resp::CHECKPOINT_WRITTEN, id, None),
                Err(msg) => {
                    wire::push_error(out, resp::CHECKPOINT_WRITE_FAILED, id, msg.as_bytes())
                }
            }
        }
        self.wake(id);
    }

    /// Traces the arrival of object `id` from a peer. An input arriving for a traced task is
    /// traced too (and its data from then on).
    fn trace_received(&mut self, id: i32, stat: peer::RecvStat) {
        if self.trace_marked
            && self.trace.is_some()
            && !self.traced.contains(&id)
            && self
                .waiters
                .get(&id)
                .is_some_and(|w| w.as_slice().iter().any(|t| self.traced.contains(t)))
        {
            self.traced.insert(id);
        }
        if let Some(t) = self.trace_of(id) {
            t.received(id, stat.bytes, stat.port, stat.started, stat.linked);
        }
    }

    /// An object arrived from a peer.
    fn received(&mut self, id: i32, obj: DataRef) {
        self.store.insert(id, obj);
        wire::push_response(&mut self.out.to_server, resp::TRANSFERED, id, None);
        self.wake(id);
    }

    /// Wakes the tasks waiting for object `data_id`. Inline: while no task waits (W1's
    /// merges find their inputs stored), a publish costs one check, not a call (issue #26).
    #[inline(always)]
    fn wake(&mut self, data_id: i32) {
        if !self.waiters.is_empty() {
            self.wake_waiters(data_id);
        }
    }

    fn wake_waiters(&mut self, data_id: i32) {
        if let Some(tasks) = self.waiters.remove(&data_id) {
            for &t in tasks.as_slice() {
                if let Some(w) = self.waiting.get_mut(&t) {
                    w.missing -= 1;
                    if w.missing == 0 {
                        self.woken.push_back(t);
                    }
                }
            }
        }
    }

    fn drain_woken(&mut self) {
        while let Some(t) = self.woken.pop_front() {
            let Some(w) = self.waiting.remove(&t) else {
                continue;
            };
            let mut refs = Vec::with_capacity(w.inputs.len());
            let mut lost = None;
            for i in &w.inputs {
                match self.store.get(i) {
                    Some(x) => refs.push(x.clone()),
                    None => lost = Some(*i),
                }
            }
            match lost {
                Some(i) => {
                    let msg = format!("input data id={i} was removed before the task started");
                    self.fail(t, &msg)
                }
                None => self.start(
                    t,
                    w.type_id,
                    w.kind,
                    &w.config,
                    &mut refs,
                    w.n_cpus,
                    &w.checkpoint,
                ),
            }
        }
    }

    /// Sends `id` to `address` again: its data connection broke before the stream was surely
    /// delivered (the receiver closed it or it was reset) while both workers live, so the server
    /// still waits for the TRANSFERED. Logged and ignored when the object is gone (released:
    /// nobody needs it any more). A receiver that already has it stores it again (harmless).
    pub fn resend(&mut self, id: i32, address: &str) {
        if !self.store.contains_key(&id) {
            return self.log(
                LogLevel::Debug,
                format!("resend of data id={id} to {address}: released meanwhile; skipped"),
            );
        }
        self.send(Some(id), address.as_bytes());
    }

    /// This worker gave up sending `id` to `address` (the SEND's address) after its retries,
    /// for `cause`: logged, and told to a server that announced "transfer-failed" (it then
    /// settles the tasks waiting for the object there; an older server would wait forever).
    pub fn transfer_failed(&mut self, id: i32, address: &str, cause: &str) {
        self.log(
            LogLevel::Error,
            format!("data id={id} not delivered to {address}: {cause}"),
        );
        if self.server_transfer_failed {
            let msg = format!("{address}\n{cause}");
            wire::push_error(
                &mut self.out.to_server,
                resp::TRANSFER_FAILED,
                id,
                msg.as_bytes(),
            );
        }
    }

    fn send(&mut self, id: Option<i32>, address: &[u8]) {
        let Some(id) = id else {
            return self.log(LogLevel::Warn, "SEND without an id; ignored".to_owned());
        };
        let Some(obj) = self.store.get(&id) else {
            let address = String::from_utf8_lossy(address);
            return self.log(
                LogLevel::Error,
                format!("SEND of unknown data id={id} to {address}; ignored"),
            );
        };
        // The SENDs of one read mostly go to one address: found by its bytes, without making a
        // string of each SEND's address.
        let sends = &mut self.out.sends;
        let s = if matches!(&**obj, DataObject::Plain(p) if p.file_path().is_some()) {
            // In a data file: a send of its own, which may cross to a peer on this host as a
            // hard link of the file (`peer-link`).
            sends.push(Send {
                ids: Vec::new(),
                address: String::from_utf8_lossy(address).into_owned(),
                parts: Vec::new(),
                alone: true,
            });
            sends.last_mut().expect("just pushed")
        } else {
            match sends
                .iter()
                .position(|s| !s.alone && s.address.as_bytes() == address)
            {
                Some(i) => &mut sends[i],
                None => send_to(sends, &String::from_utf8_lossy(address)),
            }
        };
        s.ids.push(id);
        append_stream_parts(
            id,
            obj,
            &self.ids,
            SHARED_PAYLOAD_MIN,
            JOIN_PART_BELOW,
            &mut s.parts,
        );
        if self.trace.is_some() {
            let obj = obj.clone();
            let bytes = encoded_len(id, &obj, &self.ids) as u64;
            if let Some(t) = self.trace_of(id) {
                t.sent(id, bytes, &String::from_utf8_lossy(address));
            }
        }
    }

    fn load_checkpoint(&mut self, id: Option<i32>, path: &[u8]) {
        let Some(id) = id else {
            return self.log(
                LogLevel::Warn,
                "LOAD_CHECKPOINT without an id; ignored".to_owned(),
            );
        };
        let path = String::from_utf8_lossy(path).into_owned();
        match ExternFile::open(&path, &self.dd) {
            Ok(f) => {
                let obj = DataRef::new(DataObject::File(f));
                let sl = Some((obj.size(), obj.length()));
                self.store.insert(id, obj);
                wire::push_response(&mut self.out.to_server, resp::CHECKPOINT_LOADED, id, sl);
                self.wake(id);
            }
            Err(_) => {
                let msg = format!("File '{path}' does not exists");
                wire::push_error(
                    &mut self.out.to_server,
                    resp::CHECKPOINT_LOAD_FAILED,
                    id,
                    msg.as_bytes(),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tracing (see `crate::trace`)

impl Worker {
    #[inline]
    fn trace_new_call(&mut self) {
        if let Some(t) = self.trace.as_mut() {
            t.new_call();
        }
    }

    /// The trace, if task (or data) `id` is traced: every one while tracing, unless the server
    /// marks its tracing client's tasks ("trace-marked"), then only those, and objects that
    /// arrive for a marked task waiting here (other clients' tasks on this worker are not
    /// recorded; an object that arrives before the task that needs it is not either).
    #[inline]
    fn trace_of(&mut self, id: i32) -> Option<&mut WorkerTrace> {
        if self.trace_marked && !self.traced.contains(&id) {
            return None;
        }
        self.trace.as_deref_mut()
    }

    /// The framed `WorkerResponse{LEAVING}` to send before closing the server connection on
    /// purpose, when the server understands it (it announced "leaving"); None otherwise (the
    /// original server would not parse it).
    pub fn leaving_frame(&self) -> Option<Vec<u8>> {
        if !self.server_leaving {
            return None;
        }
        let mut out = Vec::new();
        wire::push_response(&mut out, resp::LEAVING, 0, None);
        Some(out)
    }

    /// UPDATE{trace_path, worker_id}: opens `<trace_path>/worker-<id>.trace` (the same path
    /// again keeps the open trace); an empty path closes the trace (ours: the server stops
    /// tracing when its client asks or leaves).
    fn trace_update(&mut self, path: &[u8], worker_id: Option<i32>) {
        let dir = PathBuf::from(String::from_utf8_lossy(path).into_owned());
        if path.is_empty() {
            self.traced.clear();
            if self.trace.take().is_some() {
                self.log(LogLevel::Info, "tracing stopped".into());
            }
            return;
        }
        if self.trace.as_ref().is_some_and(|t| t.w.dir() == dir) {
            return;
        }
        self.traced.clear();
        self.trace = None;
        let id = worker_id.unwrap_or(-1);
        match WorkerTrace::open(&dir, id, self.cfg.cpus, self.cfg.data_port) {
            Ok(t) => {
                self.trace = Some(Box::new(t));
                self.log(LogLevel::Info, format!("tracing to {}", dir.display()));
            }
            Err(e) => self.log(LogLevel::Warn, format!("UPDATE: {e}")),
        }
    }

    /// Call about once a second: samples CPU occupancy and writes the trace out when due.
    pub fn trace_tick(&mut self) {
        if let Some(t) = self.trace.as_mut() {
            t.tick();
            if let Some(e) = t.w.take_error() {
                self.log(LogLevel::Warn, e);
            }
        }
    }

    /// Writes the trace out (before the process exits).
    pub fn trace_flush(&mut self) {
        if let Some(t) = self.trace.as_mut() {
            t.w.flush();
        }
    }

    /// The file being traced to, if any.
    pub fn trace_file(&self) -> Option<&std::path::Path> {
        self.trace.as_ref().map(|t| t.w.path())
    }
}

/// The element type id that, in the frames of an array or index input of a `loom/py/call`, stands
/// for a D-object held in a file: its frame is the file's path (UTF-8), which the Python process
/// maps, instead of the bytes.
pub const PATH_TYPE_ID: i32 = -2;

fn file_of(x: &DataObject) -> Option<&std::path::Path> {
    x.file_path()
        .filter(|_| x.size() > crate::data::SPILL_LIMIT as u64)
}

/// The stream frames of `x` (spec 5.4), with every D-object above 64 KiB that is held in a file
/// given by its path under [`PATH_TYPE_ID`].
fn frames_by_path(x: &DataObject, ids: &TypeIds, out: &mut Vec<u8>) {
    let type_of = |y: &DataObject| match file_of(y) {
        Some(_) => PATH_TYPE_ID,
        None => ids.wire_type(y),
    };
    match x {
        DataObject::Array(a) => {
            out.extend_from_slice(&(4 * a.len() as u64).to_le_bytes());
            for y in a.items() {
                out.extend_from_slice(&type_of(y).to_le_bytes());
            }
            for y in a.items() {
                frames_by_path(y, ids, out);
            }
        }
        DataObject::Index(i) => {
            let offs = i.offsets();
            out.extend_from_slice(&(4 + 8 * offs.len() as u64).to_le_bytes());
            out.extend_from_slice(&type_of(i.base()).to_le_bytes());
            for o in offs {
                out.extend_from_slice(&o.to_le_bytes());
            }
            frames_by_path(i.base(), ids, out);
        }
        _ => match file_of(x) {
            Some(p) => push_raw_frame(out, p.to_string_lossy().as_bytes()),
            None => encode_frames(x, ids, out),
        },
    }
}

/// The item of `inputs[i]` at `path` (see [`JsResult::Item`]).
fn item(inputs: &[DataRef], i: usize, path: &[u64]) -> Result<DataRef, String> {
    let mut x = inputs.get(i).cloned().ok_or_else(|| {
        format!(
            "the result refers to input #{i} but the task has {} inputs",
            inputs.len()
        )
    })?;
    for &j in path {
        x = x.get(j).ok_or_else(|| {
            format!(
                "item {j} of {} is out of range (length={})",
                x.info(),
                x.length()
            )
        })?;
    }
    Ok(x)
}

/// Writes `<path>.loom.tmp` and renames it to `path` (spec 8), synchronously.
fn write_checkpoint(obj: &DataObject, path: &str) -> Result<(), String> {
    let Some(bytes) = obj.bytes() else {
        let info = obj.info();
        return Err(format!("Data '{info}' cannot be checkpointed"));
    };
    let tmp = format!("{path}.loom.tmp");
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "Writing checkpoint '{path}' failed. Cannot create {tmp}:{}",
            strerror(&e)
        ));
    }
    if std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "Writing checkpoint '{path}' failed. Cannot move {tmp}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
