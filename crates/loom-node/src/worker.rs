//! `WorkerCore`: the worker's data store, built-in tasks and native task libraries, fed with
//! socket bytes.
//!
//! Native tasks take the direct path: the core hands out a `NativeCall` (shared references to
//! the stored inputs), this binding runs it on the libuv thread pool, and the call's completion
//! goes straight back into the core; JS only receives the effects to apply. Program tasks
//! (`loom/run/run`) stay in Rust too once JS turned that on (`runPrograms`, see
//! `program_task.rs`): JS hears of them once per batch of ended programs.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::function_calls::{push_call, read_answers, Answer, JS_CALL_TASK_TYPE};
use crate::program_task::{ProgramHost, RUN_TASK_TYPE};
use crate::{binding_error, ErrorCode, LogLine};
use loom_core::data::stream::StreamPart;
use loom_core::data::DataObject;
use loom_core::worker::{
    DirectObject, JsResult, JsTask, NativeCall, NativeDone, RedirectInput, Worker, WorkerConfig,
    WorkerError, WorkerOutput,
};
use napi::bindgen_prelude::{AsyncTask, Buffer, BufferSlice, Function, Int32Array, Uint8Array};
use napi::{Env, Task};
use napi_derive::napi;
use std::collections::HashMap;

/// Data streams to push to a worker or to the server's data port: those of one event to the
/// same address, back to back.
#[napi(object)]
pub struct DataSend {
    /// The data objects sent (task ids), in stream order (`resend` them if the connection
    /// breaks first).
    pub ids: Int32Array,
    /// `ip:port`, or `!:port` for the server's host.
    pub address: String,
    /// The streams, in order (write them all; small ones are joined into one buffer, large
    /// objects are views of the stored bytes).
    pub parts: Vec<Buffer>,
    /// Set when parts are views of stored objects: call `releaseSend(lease)` once the socket
    /// has written them (its write callback) or was destroyed. Until then the objects stay
    /// alive; after it, the views must not be read.
    pub lease: Option<u32>,
}

/// An object a client fetches from this worker's data port (`WorkerCore.directObject`).
#[napi(object)]
pub struct DirectSend {
    /// Its data file, offered to a client on this host (which maps it); absent: `parts` is the
    /// object's stream (DataHeader and frames, as to a peer).
    pub path: Option<String>,
    /// The object's size in bytes.
    pub size: i64,
    /// The stream, in order (empty with `path`).
    pub parts: Vec<Buffer>,
    /// Set when the object must stay alive meanwhile: call `releaseSend(lease)` once the parts
    /// are written (or the socket destroyed), or once the client has mapped the file (or its
    /// connection closed).
    pub lease: Option<u32>,
}

/// An input of a task run by the JS layer.
#[napi(object)]
pub struct TaskInput {
    /// Data type name (`loom/data`, `loom/file`, `loom/array`, `loom/index`, `loom/js/obj`,
    /// `loom/pyobj`).
    pub type_name: String,
    /// Size in bytes.
    pub size: i64,
    /// Length (items or pieces).
    pub length: i64,
    /// Content, when held in memory.
    pub bytes: Option<Buffer>,
    /// Path of the file holding the content, when on disk.
    pub path: Option<String>,
}

/// A task the JS layer runs (`run`, functions, ...). Its CPU slots are already allocated.
#[napi(object)]
pub struct TaskToRun {
    /// Task id.
    pub id: i32,
    /// Task type symbol.
    pub task_type: String,
    /// Configuration bytes.
    pub config: Buffer,
    /// Inputs in order.
    pub inputs: Vec<TaskInput>,
    /// CPUs allocated.
    pub n_cpus: u32,
    /// The allocated CPU slots (a pooled call: the slot it lent to the pool, or none).
    pub cpu_slots: Vec<u32>,
    /// A call of the worker's function-call pool (a one-cpu `loom/js/call`): run it on the pool,
    /// after the pooled calls handed out before it, never more at once than
    /// `WorkerEffects.jsPoolCpus`.
    pub pooled: bool,
}

/// The result of a task run by the JS layer (`run`, functions): the one task-result shape of
/// the worker, from a function thread to the core.
#[napi(discriminant = "kind", discriminant_case = "lowercase")]
pub enum TaskResult {
    /// Raw bytes, stored as a data object (`loom/data`).
    Plain {
        /// The bytes.
        data: Uint8Array,
    },
    /// A serialized JS value (`loom/js/obj`).
    Jsobj {
        /// `v8.serialize` output.
        data: Uint8Array,
    },
    /// A pickled Python object (`loom/pyobj`).
    Pyobj {
        /// The pickle.
        data: Uint8Array,
    },
    /// A file (in the task's run directory) to move into the data directory as the result.
    File {
        /// Its path.
        path: String,
    },
    /// An array of results.
    Array {
        /// The items.
        items: Vec<TaskResult>,
    },
    /// Input number `index` of the task passed through unchanged, or the item inside it at
    /// `at` (item `at[0]`, then `at[1]`, ...).
    Input {
        /// The input number.
        index: u32,
        /// The path of the item inside the input (empty or absent: the input itself).
        at: Option<Vec<u32>>,
    },
}

/// An input of a redirected task: `index` of the original task's inputs, or new `data`.
#[napi(object)]
pub struct RedirectedInput {
    /// Input number of the task being redirected.
    pub index: Option<u32>,
    /// The item inside that input instead (item `at[0]`, then `at[1]`, ...).
    pub at: Option<Vec<u32>>,
    /// New plain data.
    pub data: Option<Buffer>,
}

/// Dictionary ids of the data types (see `WorkerCore.dataTypeIds`).
#[napi(object)]
pub struct DataTypeIds {
    /// `loom/data` (extern files travel as this too).
    pub data: i32,
    /// `loom/array`.
    pub array: i32,
    /// `loom/index`.
    pub index: i32,
    /// `loom/js/obj`.
    pub jsobj: i32,
    /// `loom/pyobj`.
    pub pyobj: i32,
}

/// What the worker layer must do after an event.
#[napi(object, object_from_js = false)]
#[derive(Default)]
pub struct WorkerEffects {
    /// Framed responses for the server.
    pub to_server: Buffer,
    /// Data streams to push.
    pub sends: Vec<DataSend>,
    /// Tasks to run in JS, but function calls (`loom/js/call`), which are in `calls`.
    pub tasks: Vec<TaskToRun>,
    /// The function calls (`loom/js/call`) this event starts, as one buffer of call records
    /// (layout in `function_calls.rs`); answer them with `finishCalls` (or `finishTask`,
    /// `redirectTask`, `failTask` one by one). Absent when there are none.
    pub calls: Option<Buffer>,
    /// Native tasks started on the thread pool by this event: each resolves, once the task ran
    /// and the core took its result, with the effects of that (apply them like these).
    #[napi(ts_type = "Array<Promise<WorkerEffects>>")]
    pub native: Vec<AsyncTask<NativeJob>>,
    /// Log lines.
    pub logs: Vec<LogLine>,
    /// JS tasks the server canceled: stop them, report nothing (their slots are already free).
    pub canceled: Vec<i32>,
    /// Cpus lent to the function-call pool after this event: at most this many pooled calls
    /// may run at once.
    pub js_pool_cpus: u32,
}

/// A loaded native task library.
#[napi(object)]
pub struct ExtensionInfo {
    /// The path it was loaded from.
    pub path: String,
    /// The library's name.
    pub name: String,
    /// The library's version.
    pub version: String,
    /// The task types it provides.
    pub task_types: Vec<String>,
}

/// One native task on the thread pool: runs the core's [`NativeCall`] there, then hands the
/// outcome to the core on the JS thread.
pub struct NativeJob {
    core: Arc<Shared>,
    call: Option<NativeCall>,
}

impl Task for NativeJob {
    type Output = NativeDone;
    type JsValue = WorkerEffects;

    fn compute(&mut self) -> napi::Result<NativeDone> {
        let call = self
            .call
            .take()
            .ok_or_else(|| napi::Error::from_reason("native task run twice"))?;
        Ok(call.run())
    }

    fn resolve(&mut self, env: Env, done: NativeDone) -> napi::Result<WorkerEffects> {
        let out = {
            let mut core = self.core.lock();
            core.finish_native(done);
            core.take_output()
        };
        convert(&env, &self.core, out)
    }
}

fn convert_task(t: JsTask) -> TaskToRun {
    TaskToRun {
        id: t.id,
        task_type: t.task_type,
        config: t.config.into(),
        inputs: t
            .inputs
            .into_iter()
            .map(|i| TaskInput {
                type_name: i.type_name,
                size: i.size as i64,
                length: i.length as i64,
                bytes: i.bytes.map(Into::into),
                path: i.path,
            })
            .collect(),
        n_cpus: t.n_cpus,
        cpu_slots: t.cpu_slots,
        pooled: t.pooled,
    }
}

/// A JS Buffer over a part of a stream: encoded bytes are moved, stored objects are shared (the
/// Buffer keeps the object alive until JS drops it), so large data crosses without a copy.
fn part_buffer(
    env: &Env,
    part: StreamPart,
    held: &mut Vec<Arc<DataObject>>,
) -> napi::Result<Buffer> {
    match part {
        StreamPart::Bytes(b) => Ok(b.into()),
        StreamPart::Shared(obj) => {
            let bytes = obj.bytes().unwrap_or_default();
            if bytes.is_empty() {
                return Ok(Vec::new().into());
            }
            let (ptr, len) = (bytes.as_ptr() as *mut u8, bytes.len());
            // SAFETY: the bytes belong to `obj` (an mmap or heap buffer that never moves and is
            // never written while shared); `obj` stays in the lease table until JS calls
            // `releaseSend`, which it does only after the socket has written this Buffer (or
            // was destroyed). JS never reads these Buffers otherwise.
            let slice = unsafe { BufferSlice::from_external(env, ptr, len, (), |_, ()| ())? };
            held.push(obj);
            slice.into_buffer(env)
        }
    }
}

/// Objects shared with sends in flight, by lease (see [`DataSend::lease`]): a shared object is
/// kept alive here, not by its Buffer, so it is freed — data file deleted, mapping dropped — as
/// soon as JS releases the lease after the write, instead of whenever the garbage collector
/// gets to the Buffers (seconds to minutes for a few large ones). One worker per process.
fn leases() -> &'static Mutex<Leases> {
    static L: std::sync::OnceLock<Mutex<Leases>> = std::sync::OnceLock::new();
    L.get_or_init(|| Mutex::new((0, HashMap::new())))
}

/// The last lease number given, and the objects of each lease.
type Leases = (u32, HashMap<u32, Vec<Arc<DataObject>>>);

/// A lease holding `held` (none when empty): see [`DataSend::lease`].
fn new_lease(held: Vec<Arc<DataObject>>) -> Option<u32> {
    if held.is_empty() {
        return None;
    }
    let mut l = leases().lock().unwrap_or_else(|e| e.into_inner());
    l.0 = l.0.wrapping_add(1);
    let id = l.0;
    l.1.insert(id, held);
    Some(id)
}

/// The effects of `out` for JS. Program tasks go to their runner threads here when the core
/// runs them itself (see [`WorkerCore::run_programs`]).
pub(crate) fn convert(
    env: &Env,
    core: &Arc<Shared>,
    out: WorkerOutput,
) -> napi::Result<WorkerEffects> {
    let mut sends = Vec::with_capacity(out.sends.len());
    for s in out.sends {
        let mut held = Vec::new();
        let parts = s
            .parts
            .into_iter()
            .map(|p| part_buffer(env, p, &mut held))
            .collect::<napi::Result<_>>()?;
        let lease = new_lease(held);
        sends.push(DataSend {
            ids: s.ids.into(),
            address: s.address,
            parts,
            lease,
        });
    }
    let mut tasks = Vec::new();
    let mut calls = Vec::new();
    let programs = core.programs.get();
    for t in out.js_tasks {
        match programs {
            Some(host) if t.task_type == RUN_TASK_TYPE => ProgramHost::start(host, t),
            _ if t.task_type == JS_CALL_TASK_TYPE => push_call(&mut calls, &t),
            _ => tasks.push(convert_task(t)),
        }
    }
    Ok(WorkerEffects {
        to_server: out.to_server.into(),
        sends,
        tasks,
        calls: (!calls.is_empty()).then(|| calls.into()),
        native: out
            .native_calls
            .into_iter()
            .map(|call| {
                AsyncTask::new(NativeJob {
                    core: core.clone(),
                    call: Some(call),
                })
            })
            .collect(),
        logs: LogLine::all(out.logs),
        canceled: out.canceled,
        js_pool_cpus: out.js_pool_cpus,
    })
}

fn to_result(r: TaskResult) -> JsResult {
    match r {
        TaskResult::Plain { data } => JsResult::Plain(data.to_vec()),
        TaskResult::Jsobj { data } => JsResult::JsObj(data.to_vec()),
        TaskResult::Pyobj { data } => JsResult::PyObj(data.to_vec()),
        TaskResult::File { path } => JsResult::PlainFile(path.into()),
        TaskResult::Input { index, at } => match at {
            Some(at) if !at.is_empty() => {
                JsResult::Item(index as usize, at.into_iter().map(u64::from).collect())
            }
            _ => JsResult::Input(index as usize),
        },
        TaskResult::Array { items } => JsResult::Array(items.into_iter().map(to_result).collect()),
    }
}

fn lock(core: &Mutex<Worker>) -> MutexGuard<'_, Worker> {
    // A panic while holding the lock cannot leave the core half-updated in a way a later call
    // would misread any worse than the panic itself did: keep serving.
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// The binding error of a core error.
fn worker_error(e: WorkerError) -> napi::Error<ErrorCode> {
    let code = match &e {
        WorkerError::DataDir { .. } => ErrorCode::ERR_LOOM_WORK_DIR,
        WorkerError::Extension(_) => ErrorCode::ERR_LOOM_EXTENSION,
        WorkerError::Frame(_) | WorkerError::BadMessage(_) => ErrorCode::ERR_LOOM_SERVER_STREAM,
        WorkerError::Stream { .. } => ErrorCode::ERR_LOOM_PEER_STREAM,
    };
    napi::Error::new(code, e.to_string())
}

/// The core and what runs its tasks outside it, shared with the tasks in flight.
pub(crate) struct Shared {
    /// Behind a mutex only ever taken on the JS thread.
    core: Mutex<Worker>,
    /// Program tasks run by the binding (set by `runPrograms`).
    pub(crate) programs: std::sync::OnceLock<Arc<ProgramHost>>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Worker> {
        lock(&self.core)
    }
}

/// The worker core (one per worker process).
///
/// Shared with the native tasks and programs in flight, whose completion feeds the core
/// directly.
#[napi]
pub struct WorkerCore {
    inner: Arc<Shared>,
}

impl WorkerCore {
    /// Runs `f` on the core, then returns the event's effects.
    fn event(&self, env: &Env, f: impl FnOnce(&mut Worker)) -> napi::Result<WorkerEffects> {
        let out = {
            let mut core = self.inner.lock();
            f(&mut core);
            core.take_output()
        };
        convert(env, &self.inner, out)
    }
}

#[napi]
impl WorkerCore {
    /// Loads the native task libraries at `extensions` (in order; errors have the code
    /// `ERR_LOOM_EXTENSION`), then creates the data directory under `workDir`, which must be
    /// this worker's own directory (`ERR_LOOM_WORK_DIR`).
    #[napi(constructor)]
    pub fn new(
        work_dir: String,
        cpus: u32,
        data_port: u32,
        extensions: Vec<String>,
    ) -> napi::Result<Self, ErrorCode> {
        let inner = Worker::new(WorkerConfig {
            work_dir: work_dir.into(),
            cpus,
            data_port: data_port as u16,
            extra_task_types: Vec::new(),
            extensions: extensions.into_iter().map(Into::into).collect(),
        })
        .map_err(worker_error)?;
        Ok(WorkerCore {
            inner: Arc::new(Shared {
                core: Mutex::new(inner),
                programs: std::sync::OnceLock::new(),
            }),
        })
    }

    /// From now on, program tasks (`loom/run/run`) no longer come to JS in `tasks`: the binding
    /// maps their inputs into a run directory under `workDir/run`, spawns, waits and collects
    /// them on its runner threads (`pin`: slot `i` of a program's task is CPU `pin[i]`, set before
    /// its exec; the worker's CPUs from `claimCpus`; null: not pinned), and the
    /// core takes their results. `onEnded` receives the effects of each batch of programs that
    /// ended (apply them like any others); it does not keep the process alive. `job`: the worker
    /// runs in a cluster job, so a program killed by SIGUSR1 (the job's stop signal) is reported
    /// 2 s later, once the worker has had the time to stop. A canceled program is stopped with
    /// `killProgram(taskId, ...)`. Once only; later calls do nothing.
    #[napi(
        ts_args_type = "workDir: string, pin: Array<number> | null, job: boolean, onEnded: (effects: WorkerEffects) => void"
    )]
    pub fn run_programs(
        &self,
        work_dir: String,
        pin: Option<Vec<u32>>,
        job: bool,
        on_ended: Function<'_, WorkerEffects, ()>,
    ) -> napi::Result<(), ErrorCode> {
        if self.inner.programs.get().is_some() {
            return Ok(());
        }
        let shared = Arc::downgrade(&self.inner);
        let host = Arc::new(ProgramHost::new(
            shared.clone(),
            std::path::Path::new(&work_dir),
            pin,
            job,
        ));
        let wake = on_ended
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |ctx| ProgramHost::deliver(&shared, &ctx.env))
            .map_err(binding_error)?;
        host.set_wake(wake);
        let _ = self.inner.programs.set(host);
        Ok(())
    }

    /// The socket has written (or dropped) the send of `lease`: its shared objects are let go
    /// (freed now unless the store or a task still holds them).
    #[napi]
    pub fn release_send(&self, lease: u32) {
        leases()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .remove(&lease);
    }

    /// Sends whose objects are still held (leak checks).
    #[napi]
    pub fn sends_in_flight(&self) -> u32 {
        leases().lock().unwrap_or_else(|e| e.into_inner()).1.len() as u32
    }

    /// The loaded native task libraries, in load order.
    #[napi]
    pub fn extensions(&self) -> Vec<ExtensionInfo> {
        self.inner
            .lock()
            .extensions()
            .libraries()
            .iter()
            .map(|l| ExtensionInfo {
                path: l.path().display().to_string(),
                name: l.name().to_owned(),
                version: l.version().to_owned(),
                task_types: l.task_types(),
            })
            .collect()
    }

    /// The dictionary ids of the data types (`data`, `array`, `index`, `jsobj`, `pyobj`; -1
    /// before the server's dictionary arrived): the element types in the stream frames of an
    /// array or index input (`TaskInput.bytes`) are these ids.
    #[napi]
    pub fn data_type_ids(&self) -> DataTypeIds {
        let core = self.inner.lock();
        let t = core.type_ids();
        DataTypeIds {
            data: t.data,
            array: t.array,
            index: t.index,
            jsobj: t.jsobj,
            pyobj: t.pyobj,
        }
    }

    /// The framed Register message to send to the server.
    #[napi]
    pub fn register_frame(&self) -> Buffer {
        self.inner.lock().register_frame().into()
    }

    /// The framed LEAVING message to send before closing the server connection on purpose, or
    /// null when the server did not announce it understands one (the original server).
    #[napi]
    pub fn leaving_frame(&self) -> Option<Buffer> {
        self.inner.lock().leaving_frame().map(Into::into)
    }

    /// Whether the server sent STOP (it lets this worker go): exit instead of reconnecting.
    #[napi]
    pub fn stop_requested(&self) -> bool {
        self.inner.lock().stop_requested()
    }

    /// The server connection was lost and the worker reconnects keeping its data: its tasks are
    /// dropped (the running JS ones come back in `canceled`), the stored objects stay and the
    /// next `registerFrame` reports them.
    #[napi]
    pub fn reset_connection(&self, env: Env) -> napi::Result<WorkerEffects> {
        self.event(&env, |w| w.reset_connection())
    }

    /// Bytes from the server connection. A broken stream throws `ERR_LOOM_SERVER_STREAM`.
    #[napi]
    pub fn on_server_data(&self, env: Env, chunk: &[u8]) -> napi::Result<WorkerEffects, ErrorCode> {
        let mut r = Ok(());
        let effects = self.event(&env, |w| r = w.on_server_data(chunk));
        r.map_err(worker_error)?;
        effects.map_err(binding_error)
    }

    /// We opened data connection `conn` to the worker (or server data port) listening on
    /// `port`: returns the framed Announce to write first. Data the peer sends back on it is
    /// fed with `onPeerData` (it starts without an Announce).
    #[napi]
    pub fn open_peer(&self, conn: u32, port: u32) -> Buffer {
        self.inner.lock().open_peer(conn, port as u16).into()
    }

    /// `openPeer` offering `peer-link` (our extension): the Announce also carries `host` (this
    /// worker's `<boot id>:<uid>`) and the feature; a receiver of ours answers with a PeerHello.
    #[napi]
    pub fn open_peer_offering(&self, conn: u32, port: u32, host: String) -> Buffer {
        self.inner
            .lock()
            .open_peer_offering(conn, port as u16, &host)
            .into()
    }

    /// A peer's object `id` arrived as a data file, hard-linked at `path` in this worker's data
    /// directory (`peer-link`), from the worker whose data port is `from_port` (0 or out of
    /// range: unknown; for the trace): stored as if received on a stream (the file is deleted
    /// with the object, or at once when it cannot be mapped: then this throws and nothing is
    /// stored).
    #[napi]
    pub fn adopt_received(
        &self,
        env: Env,
        id: i32,
        path: String,
        from_port: u32,
    ) -> napi::Result<WorkerEffects> {
        let mut r = Ok(());
        let port = u16::try_from(from_port).unwrap_or(0);
        let effects = self.event(&env, |w| r = w.adopt_received(id, path.into(), port));
        r.map_err(napi::Error::from_reason)?;
        effects
    }

    /// Bytes on a data connection. A broken stream throws `ERR_LOOM_PEER_STREAM`.
    #[napi]
    pub fn on_peer_data(
        &self,
        env: Env,
        conn: u32,
        chunk: &[u8],
    ) -> napi::Result<WorkerEffects, ErrorCode> {
        let mut r = Ok(());
        let effects = self.event(&env, |w| r = w.on_peer_data(conn, chunk));
        r.map_err(worker_error)?;
        effects.map_err(binding_error)
    }

    /// Sends data objects `ids` to `address` again (their data connection broke before they
    /// were surely delivered); nothing but a debug log for one released meanwhile.
    #[napi]
    pub fn resend(
        &self,
        env: Env,
        ids: Int32Array,
        address: String,
    ) -> napi::Result<WorkerEffects> {
        self.event(&env, |w| {
            for &id in ids.iter() {
                w.resend(id, &address)
            }
        })
    }

    /// Object `id` for a client fetching it from this worker's data port: its data file when
    /// `file` (the client shares this host and user) and it is a spilled plain object, else its
    /// stream; null when this worker does not hold it.
    #[napi]
    pub fn direct_object(&self, env: Env, id: i32, file: bool) -> napi::Result<Option<DirectSend>> {
        let found = self.inner.lock().direct_object(id, file);
        Ok(match found {
            None => None,
            Some(DirectObject::File { obj, path, size }) => Some(DirectSend {
                path: Some(path.to_string_lossy().into_owned()),
                size: size as i64,
                parts: Vec::new(),
                lease: new_lease(vec![obj]),
            }),
            Some(DirectObject::Stream(stream)) => {
                let mut held = Vec::new();
                let parts = stream
                    .into_iter()
                    .map(|p| part_buffer(&env, p, &mut held))
                    .collect::<napi::Result<Vec<_>>>()?;
                let size = parts.iter().map(|p| p.len() as i64).sum();
                Some(DirectSend {
                    path: None,
                    size,
                    parts,
                    lease: new_lease(held),
                })
            }
        })
    }

    /// Sending data object `id` to `address` was given up after its retries, for `cause`:
    /// logged, and told to the server when it understands it (`WorkerResponse
    /// TRANSFER_FAILED`, our extension), so the tasks waiting for the object settle.
    #[napi]
    pub fn transfer_failed(
        &self,
        env: Env,
        id: i32,
        address: String,
        cause: String,
    ) -> napi::Result<WorkerEffects> {
        self.event(&env, |w| w.transfer_failed(id, &address, &cause))
    }

    /// A data connection closed.
    #[napi]
    pub fn on_peer_close(&self, env: Env, conn: u32) -> napi::Result<WorkerEffects> {
        self.event(&env, |w| w.on_peer_close(conn))
    }

    /// A JS task finished with `result`.
    #[napi]
    pub fn finish_task(
        &self,
        env: Env,
        id: i32,
        result: TaskResult,
    ) -> napi::Result<WorkerEffects> {
        let result = to_result(result);
        self.event(&env, |w| w.finish_js_task(id, result))
    }

    /// Answers of function calls, as one buffer of answer records (layout in
    /// `function_calls.rs`): each call's result is stored, or the call fails with its message.
    /// A malformed buffer throws `ERR_LOOM_NAPI` and none of it is applied. Answers of calls
    /// no longer running (canceled) are ignored.
    #[napi]
    pub fn finish_calls(&self, env: Env, answers: &[u8]) -> napi::Result<WorkerEffects, ErrorCode> {
        let answers =
            read_answers(answers).map_err(|m| napi::Error::new(ErrorCode::ERR_LOOM_NAPI, m))?;
        self.event(&env, |w| {
            for a in answers {
                match a {
                    Answer::Done(id, result) => w.finish_js_task(id, result),
                    Answer::Failed(id, message) => w.fail_task(id, message),
                }
            }
        })
        .map_err(binding_error)
    }

    /// Runs `taskType` in place of task `id` (task redirection).
    #[napi]
    pub fn redirect_task(
        &self,
        env: Env,
        id: i32,
        task_type: String,
        config: &[u8],
        inputs: Vec<RedirectedInput>,
    ) -> napi::Result<WorkerEffects> {
        let mut converted = Vec::with_capacity(inputs.len());
        for i in inputs {
            match (i.index, i.data) {
                (Some(idx), _) => converted.push(match i.at {
                    Some(at) if !at.is_empty() => {
                        RedirectInput::Item(idx as usize, at.into_iter().map(u64::from).collect())
                    }
                    _ => RedirectInput::Input(idx as usize),
                }),
                (None, Some(d)) => converted.push(RedirectInput::Data(d.to_vec())),
                (None, None) => {
                    return self.event(&env, |w| {
                        w.fail_task(id, b"task redirection input has neither index nor data")
                    });
                }
            }
        }
        self.event(&env, |w| w.redirect_task(id, &task_type, config, converted))
    }

    /// The worker stops: program tasks not started yet never start, and the outcomes of those
    /// running are dropped (kill them with `killAllPrograms`).
    #[napi]
    pub fn stop_programs(&self) {
        if let Some(host) = self.inner.programs.get() {
            host.stop();
        }
    }

    /// About once a second: samples CPU occupancy and writes the trace out when due (no-op
    /// while not tracing).
    #[napi]
    pub fn trace_tick(&self, env: Env) -> napi::Result<WorkerEffects> {
        self.event(&env, Worker::trace_tick)
    }

    /// Writes the trace out (before the process exits).
    #[napi]
    pub fn trace_flush(&self) {
        self.inner.lock().trace_flush();
    }

    /// A JS task failed with `message`.
    #[napi]
    pub fn fail_task(&self, env: Env, id: i32, message: String) -> napi::Result<WorkerEffects> {
        self.event(&env, |w| w.fail_task(id, message.as_bytes()))
    }
}
