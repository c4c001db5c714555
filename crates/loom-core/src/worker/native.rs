//! Native tasks on the worker: the task libraries it loaded and the direct path of one call.
//!
//! The worker core owns the [`Extensions`]. When a native task's inputs are present and its CPU
//! slots are free, the core emits a [`NativeCall`] holding the library, the config and *shared
//! references* (`Arc`) to the stored input objects — never copies or file paths. The binding runs
//! [`NativeCall::run`] on its thread pool: the library reads the stored bytes in place (heap
//! buffers or the core's own memory maps), its result is stored there too (a large one written
//! to a data file off the event loop), and the [`NativeDone`] goes back to
//! [`Worker::finish_native`](super::Worker::finish_native). See `docs/native-tasks.md`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::data::{strerror, Array, DataDir, DataObject, DataRef};
use crate::extension::{ExtInput, ExtOutput, Extension, ExtensionError};
use crate::log::LogLevel;

/// The task libraries of one worker, by task type.
#[derive(Debug, Default, Clone)]
pub struct Extensions {
    libraries: Vec<Arc<Extension>>,
    by_type: HashMap<String, u16>,
}

impl Extensions {
    /// Loads the libraries at `paths` in order ([`Extension::load`] checks each). A task type
    /// defined twice — by two libraries, or by a library and one of `reserved` (the types the
    /// worker's JS layer runs) — is refused, naming both.
    pub fn load(paths: &[PathBuf], reserved: &[String]) -> Result<Extensions, ExtensionError> {
        let mut all = Extensions::default();
        for path in paths {
            let ext = Extension::load(path)?;
            let index =
                u16::try_from(all.libraries.len()).map_err(|_| ExtensionError::BadDescriptor {
                    path: path.clone(),
                    reason: "too many task libraries".into(),
                })?;
            for task_type in ext.task_types() {
                let other = match all.by_type.get(&task_type) {
                    Some(&i) => Some(all.libraries[usize::from(i)].path().display().to_string()),
                    None if reserved.contains(&task_type) => Some("the worker itself".into()),
                    None => None,
                };
                if let Some(other) = other {
                    return Err(ExtensionError::DuplicateTaskType {
                        path: path.clone(),
                        library: format!("{} {}", ext.name(), ext.version()),
                        task_type,
                        other,
                    });
                }
                all.by_type.insert(task_type, index);
            }
            all.libraries.push(Arc::new(ext));
        }
        Ok(all)
    }

    /// The loaded libraries, in load order.
    pub fn libraries(&self) -> &[Arc<Extension>] {
        &self.libraries
    }

    /// Every task type the libraries provide (library order, then descriptor order).
    pub fn task_types(&self) -> impl Iterator<Item = String> + '_ {
        self.libraries.iter().flat_map(|l| l.task_types())
    }

    /// The index of the library providing `task_type`.
    pub(crate) fn library_of(&self, task_type: &str) -> Option<u16> {
        self.by_type.get(task_type).copied()
    }

    pub(crate) fn library(&self, index: u16) -> Option<&Arc<Extension>> {
        self.libraries.get(usize::from(index))
    }
}

/// One native task ready to run on a thread pool: everything it needs, shared with the store.
///
/// It is `Send`: inputs are `Arc`s of immutable stored objects (their bytes never move and are
/// never written while shared), kept alive by this call even if the server removes them
/// meanwhile.
#[derive(Debug)]
pub struct NativeCall {
    id: i32,
    library: Arc<Extension>,
    task_type: String,
    config: Vec<u8>,
    inputs: Vec<DataRef>,
    data_dir: Arc<DataDir>,
}

/// The outcome of a [`NativeCall`], for [`Worker::finish_native`](super::Worker::finish_native).
#[derive(Debug)]
pub struct NativeDone {
    pub(crate) id: i32,
    pub(crate) task_type: String,
    /// The stored result, or the task's error message.
    pub(crate) result: Result<DataRef, String>,
    /// The lines the task logged, in order.
    pub(crate) logs: Vec<(LogLevel, String)>,
}

impl NativeCall {
    pub(crate) fn new(
        id: i32,
        library: Arc<Extension>,
        task_type: String,
        config: Vec<u8>,
        inputs: Vec<DataRef>,
        data_dir: Arc<DataDir>,
    ) -> NativeCall {
        NativeCall {
            id,
            library,
            task_type,
            config,
            inputs,
            data_dir,
        }
    }

    /// The task id.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The task type symbol.
    pub fn task_type(&self) -> &str {
        &self.task_type
    }

    /// The stored input objects (shared, not copied).
    pub fn inputs(&self) -> &[DataRef] {
        &self.inputs
    }

    /// Runs the task on the calling thread (meant for a thread pool, never the event loop) and
    /// stores its result: D-Object inputs are passed as views of the stored bytes; a result
    /// above the spill limit is written to a data file here.
    pub fn run(self) -> NativeDone {
        let inputs: Vec<ExtInput> = self
            .inputs
            .iter()
            .map(|x| ExtInput {
                bytes: x.bytes(),
                size: x.size(),
                length: x.length(),
            })
            .collect();
        let mut logs = Vec::new();
        let output = self.library.call(
            &self.task_type,
            &inputs,
            &self.config,
            &mut |level, text| logs.push((level_of(level), text.to_owned())),
        );
        let result = output.and_then(|o| store(o, &self.data_dir));
        NativeDone {
            id: self.id,
            task_type: self.task_type,
            result,
            logs,
        }
    }
}

/// The level of a task library's log line (the ABI numbers them 0-3, `HL_LOG_*`).
fn level_of(level: i32) -> LogLevel {
    match level {
        0 => LogLevel::Debug,
        1 => LogLevel::Info,
        2 => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

/// A library's result as a stored object.
fn store(output: ExtOutput, dd: &DataDir) -> Result<DataRef, String> {
    Ok(DataRef::new(match output {
        ExtOutput::Bytes(bytes) => DataObject::Plain(
            dd.plain(bytes)
                .map_err(|e| format!("cannot store the result: {}", strerror(&e)))?,
        ),
        ExtOutput::Array(items) => DataObject::Array(Array::new(
            items
                .into_iter()
                .map(|x| store(x, dd))
                .collect::<Result<Vec<_>, _>>()?,
        )),
    }))
}
