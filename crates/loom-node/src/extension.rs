//! Native task libraries on the worker: loaded once per process, called on the addon's thread
//! pool (never on the worker's event loop).

use crate::worker::{TaskInput, TaskResult};
use crate::LogLine;
use loom_core::extension::{ExtInput, ExtOutput, Extension};
use loom_core::log::LogLevel;
use napi::bindgen_prelude::{AsyncTask, Buffer};
use napi::{Env, Task};
use napi_derive::napi;
use std::sync::{Arc, Mutex};

static LOADED: Mutex<Vec<Arc<Extension>>> = Mutex::new(Vec::new());

/// A loaded task library.
#[napi(object)]
pub struct ExtensionInfo {
    /// Handle to pass to `runExtensionTask`.
    pub handle: u32,
    /// The library's name.
    pub name: String,
    /// The library's version.
    pub version: String,
    /// The task types it implements.
    pub task_types: Vec<String>,
}

/// Loads the task library at `path` (checks its ABI first).
#[napi]
pub fn load_extension(path: String) -> napi::Result<ExtensionInfo> {
    let ext = Extension::load(std::path::Path::new(&path))
        .map_err(|e| napi::Error::from_reason(e.to_string()))?;
    let mut loaded = LOADED.lock().expect("extension registry");
    loaded.push(Arc::new(ext));
    let ext = loaded.last().expect("just pushed");
    Ok(ExtensionInfo {
        handle: (loaded.len() - 1) as u32,
        name: ext.name().to_owned(),
        version: ext.version().to_owned(),
        task_types: ext.task_types(),
    })
}

/// The outcome of a native task.
#[napi(object)]
pub struct ExtensionOutcome {
    /// The result.
    pub result: TaskResult,
    /// Lines the task logged.
    pub logs: Vec<LogLine>,
}

enum Source {
    Bytes(Vec<u8>),
    Mapped(memmap2::Mmap),
    Empty,
    NotDObject,
}

/// One call of a native task, run on the addon's thread pool.
pub struct ExtensionJob {
    ext: Arc<Extension>,
    task_type: String,
    config: Vec<u8>,
    inputs: Vec<(Source, u64, u64)>,
    logs: Vec<(i32, String)>,
}

/// The level of a task library's log line (the ABI numbers them 0-3).
fn level_of(level: i32) -> LogLevel {
    match level {
        0 => LogLevel::Debug,
        1 => LogLevel::Info,
        2 => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

fn to_result(o: ExtOutput) -> TaskResult {
    match o {
        ExtOutput::Bytes(b) => TaskResult {
            kind: "plain".into(),
            data: Some(b.into()),
            path: None,
            items: None,
            index: None,
            at: None,
        },
        ExtOutput::Array(items) => TaskResult {
            kind: "array".into(),
            data: None,
            path: None,
            items: Some(items.into_iter().map(to_result).collect()),
            index: None,
            at: None,
        },
    }
}

impl Task for ExtensionJob {
    type Output = ExtOutput;
    type JsValue = ExtensionOutcome;

    fn compute(&mut self) -> napi::Result<ExtOutput> {
        let inputs: Vec<ExtInput> = self
            .inputs
            .iter()
            .map(|(src, size, length)| ExtInput {
                bytes: match src {
                    Source::Bytes(b) => Some(b.as_slice()),
                    Source::Mapped(m) => Some(&m[..]),
                    Source::Empty => Some(&[][..]),
                    Source::NotDObject => None,
                },
                size: *size,
                length: *length,
            })
            .collect();
        let logs = &mut self.logs;
        self.ext
            .call(&self.task_type, &inputs, &self.config, &mut |l, m| {
                logs.push((l, m.to_owned()))
            })
            .map_err(napi::Error::from_reason)
    }

    fn resolve(&mut self, _env: Env, output: ExtOutput) -> napi::Result<ExtensionOutcome> {
        Ok(ExtensionOutcome {
            result: to_result(output),
            logs: self
                .logs
                .drain(..)
                .map(|(l, message)| LogLine {
                    level: level_of(l).name().to_owned(),
                    message,
                })
                .collect(),
        })
    }
}

/// Runs `taskType` of library `handle` on the thread pool.
#[napi]
pub fn run_extension_task(
    handle: u32,
    task_type: String,
    config: Buffer,
    inputs: Vec<TaskInput>,
) -> napi::Result<AsyncTask<ExtensionJob>> {
    let ext = LOADED
        .lock()
        .expect("extension registry")
        .get(handle as usize)
        .cloned()
        .ok_or_else(|| napi::Error::from_reason(format!("no task library with handle {handle}")))?;
    let mut sources = Vec::with_capacity(inputs.len());
    for i in inputs {
        let d_object = i.type_name == "loom/data" || i.type_name == "loom/file";
        let src = match (d_object, i.bytes, i.path) {
            (false, _, _) => Source::NotDObject,
            (true, Some(b), _) => Source::Bytes(b.to_vec()),
            (true, None, Some(p)) => {
                let f = std::fs::File::open(&p).map_err(|e| {
                    napi::Error::from_reason(format!("cannot open input '{p}': {e}"))
                })?;
                if f.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
                    Source::Empty
                } else {
                    // SAFETY: data files are written once and never modified while referenced.
                    let m = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| {
                        napi::Error::from_reason(format!("cannot map input '{p}': {e}"))
                    })?;
                    Source::Mapped(m)
                }
            }
            (true, None, None) => Source::Empty,
        };
        sources.push((src, i.size as u64, i.length as u64));
    }
    Ok(AsyncTask::new(ExtensionJob {
        ext,
        task_type,
        config: config.to_vec(),
        inputs: sources,
        logs: Vec::new(),
    }))
}
