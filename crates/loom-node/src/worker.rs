//! `WorkerCore`: the worker's data store and built-in tasks, fed with socket bytes.

use crate::LogLine;
use loom_core::data::stream::StreamPart;
use loom_core::worker::{JsResult, JsTask, RedirectInput, Worker, WorkerConfig, WorkerOutput};
use napi::bindgen_prelude::{Buffer, BufferSlice};
use napi::Env;
use napi_derive::napi;

/// A data stream to push to a worker or to the server's data port.
#[napi(object)]
pub struct DataSend {
    /// `ip:port`, or `!:port` for the server's host.
    pub address: String,
    /// The stream, in order (write them all; large objects are views of the stored bytes).
    pub parts: Vec<Buffer>,
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
    /// The allocated CPU slots.
    pub cpu_slots: Vec<u32>,
}

/// A result produced by the JS layer.
#[napi(object)]
pub struct TaskResult {
    /// `plain`, `file`, `jsobj`, `pyobj`, `array` or `input`.
    pub kind: String,
    /// Bytes for `plain`, `jsobj` and `pyobj`.
    pub data: Option<Buffer>,
    /// A file to move into the data directory, for `file`.
    pub path: Option<String>,
    /// Items of an `array`.
    pub items: Option<Vec<TaskResult>>,
    /// Input number passed through, for `input`.
    pub index: Option<u32>,
    /// For `input`: the item inside that input to pass instead (item `at[0]`, then `at[1]`, ...).
    pub at: Option<Vec<u32>>,
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
#[napi(object)]
pub struct WorkerEffects {
    /// Framed responses for the server.
    pub to_server: Buffer,
    /// Data streams to push.
    pub sends: Vec<DataSend>,
    /// Tasks to run in JS.
    pub tasks: Vec<TaskToRun>,
    /// Log lines.
    pub logs: Vec<LogLine>,
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
    }
}

/// A JS Buffer over a part of a stream: encoded bytes are moved, stored objects are shared (the
/// Buffer keeps the object alive until JS drops it), so large data crosses without a copy.
fn part_buffer(env: &Env, part: StreamPart) -> napi::Result<Buffer> {
    match part {
        StreamPart::Bytes(b) => Ok(b.into()),
        StreamPart::Shared(obj) => {
            let bytes = obj.bytes().unwrap_or_default();
            if bytes.is_empty() {
                return Ok(Vec::new().into());
            }
            let (ptr, len) = (bytes.as_ptr() as *mut u8, bytes.len());
            // SAFETY: the bytes belong to `obj` (an mmap or heap buffer that never moves and is
            // never written while shared); `obj` is kept alive by the finalizer hint until the
            // JS Buffer is collected. JS only reads these Buffers (socket writes).
            let slice =
                unsafe { BufferSlice::from_external(env, ptr, len, obj, |_, obj| drop(obj))? };
            slice.into_buffer(env)
        }
    }
}

fn convert(env: &Env, out: WorkerOutput) -> napi::Result<WorkerEffects> {
    let mut sends = Vec::with_capacity(out.sends.len());
    for s in out.sends {
        let parts = s
            .parts
            .into_iter()
            .map(|p| part_buffer(env, p))
            .collect::<napi::Result<_>>()?;
        sends.push(DataSend {
            address: s.address,
            parts,
        });
    }
    Ok(WorkerEffects {
        to_server: out.to_server.into(),
        sends,
        tasks: out.js_tasks.into_iter().map(convert_task).collect(),
        logs: LogLine::all(out.logs),
    })
}

fn to_result(r: TaskResult) -> napi::Result<JsResult> {
    let bad = |what: &str| {
        napi::Error::from_reason(format!("task result of kind '{what}' is incomplete"))
    };
    Ok(match r.kind.as_str() {
        "plain" => JsResult::Plain(r.data.ok_or_else(|| bad("plain"))?.to_vec()),
        "jsobj" => JsResult::JsObj(r.data.ok_or_else(|| bad("jsobj"))?.to_vec()),
        "pyobj" => JsResult::PyObj(r.data.ok_or_else(|| bad("pyobj"))?.to_vec()),
        "file" => JsResult::PlainFile(r.path.ok_or_else(|| bad("file"))?.into()),
        "input" => {
            let i = r.index.ok_or_else(|| bad("input"))? as usize;
            match r.at {
                Some(at) if !at.is_empty() => {
                    JsResult::Item(i, at.into_iter().map(u64::from).collect())
                }
                _ => JsResult::Input(i),
            }
        }
        "array" => JsResult::Array(
            r.items
                .ok_or_else(|| bad("array"))?
                .into_iter()
                .map(to_result)
                .collect::<napi::Result<_>>()?,
        ),
        other => {
            return Err(napi::Error::from_reason(format!(
                "unknown task result kind '{other}'"
            )))
        }
    })
}

/// The worker core (one per worker process).
#[napi]
pub struct WorkerCore {
    inner: Worker,
}

#[napi]
impl WorkerCore {
    /// Creates the data directory under `workDir` (which must be this worker's own directory).
    #[napi(constructor)]
    pub fn new(
        work_dir: String,
        cpus: u32,
        data_port: u32,
        extra_task_types: Vec<String>,
    ) -> napi::Result<Self> {
        let inner = Worker::new(WorkerConfig {
            work_dir: work_dir.into(),
            cpus,
            data_port: data_port as u16,
            extra_task_types,
        })
        .map_err(|e| napi::Error::from_reason(e.to_string()))?;
        Ok(WorkerCore { inner })
    }

    /// The dictionary ids of the data types (`data`, `array`, `index`, `jsobj`, `pyobj`; -1
    /// before the server's dictionary arrived): the element types in the stream frames of an
    /// array or index input (`TaskInput.bytes`) are these ids.
    #[napi]
    pub fn data_type_ids(&self) -> DataTypeIds {
        let t = self.inner.type_ids();
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
        self.inner.register_frame().into()
    }

    /// Bytes from the server connection.
    #[napi]
    pub fn on_server_data(&mut self, env: Env, chunk: &[u8]) -> napi::Result<WorkerEffects> {
        self.inner
            .on_server_data(chunk)
            .map_err(|e| napi::Error::from_reason(e.to_string()))?;
        convert(&env, self.inner.take_output())
    }

    /// Bytes on a data connection.
    #[napi]
    pub fn on_peer_data(
        &mut self,
        env: Env,
        conn: u32,
        chunk: &[u8],
    ) -> napi::Result<WorkerEffects> {
        self.inner
            .on_peer_data(conn, chunk)
            .map_err(|e| napi::Error::from_reason(e.to_string()))?;
        convert(&env, self.inner.take_output())
    }

    /// A data connection closed.
    #[napi]
    pub fn on_peer_close(&mut self, env: Env, conn: u32) -> napi::Result<WorkerEffects> {
        self.inner.on_peer_close(conn);
        convert(&env, self.inner.take_output())
    }

    /// A JS task finished with `result`.
    #[napi]
    pub fn finish_task(
        &mut self,
        env: Env,
        id: i32,
        result: TaskResult,
    ) -> napi::Result<WorkerEffects> {
        match to_result(result) {
            Ok(r) => self.inner.finish_js_task(id, r),
            Err(e) => self
                .inner
                .fail_task(id, format!("invalid task result: {e}").as_bytes()),
        }
        convert(&env, self.inner.take_output())
    }

    /// Runs `taskType` in place of task `id` (task redirection).
    #[napi]
    pub fn redirect_task(
        &mut self,
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
                    self.inner
                        .fail_task(id, b"task redirection input has neither index nor data");
                    return convert(&env, self.inner.take_output());
                }
            }
        }
        self.inner.redirect_task(id, &task_type, config, converted);
        convert(&env, self.inner.take_output())
    }

    /// About once a second: samples CPU occupancy and writes the trace out when due (no-op
    /// while not tracing).
    #[napi]
    pub fn trace_tick(&mut self, env: Env) -> napi::Result<WorkerEffects> {
        self.inner.trace_tick();
        convert(&env, self.inner.take_output())
    }

    /// Writes the trace out (before the process exits).
    #[napi]
    pub fn trace_flush(&mut self) {
        self.inner.trace_flush();
    }

    /// A JS task failed with `message`.
    #[napi]
    pub fn fail_task(&mut self, env: Env, id: i32, message: String) -> napi::Result<WorkerEffects> {
        self.inner.fail_task(id, message.as_bytes());
        convert(&env, self.inner.take_output())
    }
}
