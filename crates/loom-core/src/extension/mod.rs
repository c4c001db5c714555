//! Native task libraries ("Extending worker" in the user guide): the host side of the C ABI in
//! `crates/loom-task/include/hyperloom_task.h`.
//!
//! [`Extension::load`] opens a shared library, checks its descriptor (ABI version and struct size
//! first, before anything else is read) and lists its task types; [`Extension::call`] runs one
//! task and copies its result into Rust-owned memory, then hands the library's buffers back to
//! it through the library's `release` callback.
//!
//! The ABI types are `loom_task::abi`, the single Rust definition shared with the SDK.
//!
//! A loaded library stays loaded for the lifetime of the process (it is never `dlclose`d: task
//! libraries written in Rust or C++ may hold thread-local destructors or static state that does
//! not survive unloading).

mod error;

use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::fmt;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use loom_task::abi::{
    self, HlContext, HlEntryPointFn, HlHost, HlInput, HlLibrary, HlLibraryHeader, HlResult,
    HlTaskFn,
};

pub use error::ExtensionError;

/// Results nested deeper than this are refused (a guard against cyclic or corrupt item trees).
const MAX_RESULT_DEPTH: usize = 256;

/// Descriptors declaring more task types than this are refused as corrupt.
const MAX_TASKS: usize = 1 << 16;

/// A loaded task library.
///
/// `Extension` is `Send + Sync`: per the ABI, task functions may be called from any thread and
/// concurrently, so one `Arc<Extension>` can serve a whole thread pool.
pub struct Extension {
    path: PathBuf,
    name: String,
    version: String,
    /// In descriptor order.
    tasks: Vec<(String, HlTaskFn)>,
    by_name: HashMap<String, HlTaskFn>,
    /// Never dropped: the library stays loaded for the process lifetime.
    _library: ManuallyDrop<libloading::Library>,
}

/// One input of a task call.
#[derive(Debug, Clone, Copy)]
pub struct ExtInput<'a> {
    /// The bytes of a D-Object (raw data, extern file); `None` for any other object.
    pub bytes: Option<&'a [u8]>,
    /// The object's size.
    pub size: u64,
    /// The object's length.
    pub length: u64,
}

/// The result of a task call, copied out of the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtOutput {
    /// A raw data object.
    Bytes(Vec<u8>),
    /// An array object.
    Array(Vec<ExtOutput>),
}

impl Extension {
    /// Loads the task library at `path`.
    ///
    /// In order: the file must exist; the dynamic loader must accept it (all symbols are
    /// resolved now, so a missing dependency fails here, not in the middle of a task); it must
    /// export `hyperloom_task_library`; the descriptor's ABI version and struct size are checked
    /// before any other field is read; then its names and task entries are validated (UTF-8,
    /// non-empty, unique, not in the reserved `loom/` prefix, non-null functions).
    ///
    /// Loading runs the library's initialisers, which is as trusted as the library itself.
    pub fn load(path: &Path) -> Result<Extension, ExtensionError> {
        // Resolve the path ourselves: dlopen would search LD_LIBRARY_PATH for a bare file name.
        let absolute = std::fs::canonicalize(path).map_err(|source| ExtensionError::NotFound {
            path: path.to_path_buf(),
            source,
        })?;
        if absolute.is_dir() {
            return Err(ExtensionError::NotALibrary {
                path: path.to_path_buf(),
                reason: "it is a directory".into(),
            });
        }
        let library = open_library(&absolute).map_err(|e| ExtensionError::NotALibrary {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let library = ManuallyDrop::new(library);

        let symbol = format!("{}\0", abi::ENTRY_POINT);
        // SAFETY: the symbol's type is the ABI's entry point signature; the library stays loaded.
        let entry: HlEntryPointFn = unsafe { library.get::<HlEntryPointFn>(symbol.as_bytes()) }
            .map(|s| *s)
            .map_err(|e| ExtensionError::MissingEntryPoint {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;

        let bad = |reason: String| ExtensionError::BadDescriptor {
            path: path.to_path_buf(),
            reason,
        };
        // SAFETY: calling the entry point is the ABI contract.
        let descriptor = unsafe { entry() };
        if descriptor.is_null() {
            return Err(bad(format!("`{}` returned NULL", abi::ENTRY_POINT)));
        }
        if !descriptor.is_aligned() {
            return Err(bad("the descriptor pointer is misaligned".into()));
        }

        // Only the two fixed-position fields until they are checked.
        // SAFETY: every ABI version starts with these two fields.
        let header = unsafe { std::ptr::read(descriptor as *const HlLibraryHeader) };
        let host_struct_size = std::mem::size_of::<HlLibrary>();
        if header.abi_version != abi::ABI_VERSION || header.struct_size < host_struct_size {
            return Err(ExtensionError::AbiMismatch {
                path: path.to_path_buf(),
                library_abi: header.abi_version,
                library_struct_size: header.struct_size,
                host_abi: abi::ABI_VERSION,
                host_struct_size,
            });
        }

        // SAFETY: same ABI version and at least our struct size: the layout is ours.
        let descriptor: HlLibrary = unsafe { std::ptr::read(descriptor) };
        // SAFETY (both): the descriptor's strings are valid NUL-terminated static data per the ABI.
        let name =
            unsafe { c_string(descriptor.name) }.map_err(|e| bad(format!("library name: {e}")))?;
        let version = unsafe { c_string(descriptor.version) }
            .map_err(|e| bad(format!("library version: {e}")))?;
        let bad = |reason: String| ExtensionError::BadDescriptor {
            path: path.to_path_buf(),
            reason: format!("{reason} (library '{name}' {version})"),
        };

        if descriptor.n_tasks > MAX_TASKS {
            return Err(bad(format!(
                "it declares {} task types",
                descriptor.n_tasks
            )));
        }
        let entries = if descriptor.n_tasks == 0 {
            &[][..]
        } else if descriptor.tasks.is_null() {
            return Err(bad(format!(
                "{} task types but a NULL task array",
                descriptor.n_tasks
            )));
        } else {
            // SAFETY: per the ABI, `tasks` points to `n_tasks` entries of static data.
            unsafe { std::slice::from_raw_parts(descriptor.tasks, descriptor.n_tasks) }
        };
        let mut tasks = Vec::with_capacity(entries.len());
        let mut by_name = HashMap::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            // SAFETY: as for the library name.
            let symbol =
                unsafe { c_string(entry.name) }.map_err(|e| bad(format!("task type #{i}: {e}")))?;
            if symbol.is_empty() {
                return Err(bad(format!("task type #{i} has an empty symbol")));
            }
            if symbol.starts_with("loom/") {
                return Err(bad(format!(
                    "task type '{symbol}' uses the prefix 'loom/', which is reserved for built-in tasks"
                )));
            }
            let Some(run) = entry.run else {
                return Err(bad(format!("task type '{symbol}' has a NULL function")));
            };
            if by_name.insert(symbol.clone(), run).is_some() {
                return Err(bad(format!("task type '{symbol}' is declared twice")));
            }
            tasks.push((symbol, run));
        }

        Ok(Extension {
            path: path.to_path_buf(),
            name,
            version,
            tasks,
            by_name,
            _library: library,
        })
    }

    /// The library's name, from its descriptor.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The library's own version, from its descriptor.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The path it was loaded from, as given to [`load`](Self::load).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The task type symbols the library provides, in descriptor order.
    pub fn task_types(&self) -> Vec<String> {
        self.tasks.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Whether the library provides `task_type`.
    pub fn has_task_type(&self, task_type: &str) -> bool {
        self.by_name.contains_key(task_type)
    }

    /// Runs one task on the calling thread and returns its result, copied into Rust-owned memory.
    ///
    /// `log` receives the task's log messages (level `HL_LOG_*`, text) during the call. The
    /// error is the task's own message (a Rust task's panic included, as "task panicked: ..."),
    /// or a host message naming the task and library when the task type is unknown or the
    /// library returned an invalid result. May be called concurrently from several threads.
    pub fn call(
        &self,
        task_type: &str,
        inputs: &[ExtInput],
        config: &[u8],
        log: &mut dyn FnMut(i32, &str),
    ) -> Result<ExtOutput, String> {
        let run = *self.by_name.get(task_type).ok_or_else(|| {
            format!(
                "task type '{task_type}' is not provided by task library '{}' {}",
                self.name, self.version
            )
        })?;
        let raw_inputs: Vec<HlInput> = inputs
            .iter()
            .map(|input| match input.bytes {
                Some(bytes) => HlInput {
                    data: bytes.as_ptr(),
                    len: bytes.len(),
                    size: input.size,
                    length: input.length,
                    kind: abi::INPUT_DOBJECT,
                },
                None => HlInput {
                    data: std::ptr::null(),
                    len: 0,
                    size: input.size,
                    length: input.length,
                    kind: abi::INPUT_OTHER,
                },
            })
            .collect();
        let mut log: &mut dyn FnMut(i32, &str) = log;
        let context = HlContext {
            struct_size: std::mem::size_of::<HlContext>(),
            host: &mut log as *mut &mut dyn FnMut(i32, &str) as *mut HlHost,
            log: host_log,
        };
        let mut out = HlResult::empty();
        // SAFETY: the arguments follow the hl_task_fn contract: all valid for the whole call.
        unsafe {
            run(
                &context,
                raw_inputs.as_ptr(),
                raw_inputs.len(),
                config.as_ptr(),
                config.len(),
                &mut out,
            )
        };
        // SAFETY: the result is the library's, valid until release.
        let result = unsafe { copy_result(&out, 0) }.map_err(|problem| match problem {
            Problem::TaskError(message) => message,
            Problem::Invalid(what) => format!(
                "task '{task_type}' of task library '{}' {} returned an invalid result: {what}",
                self.name, self.version
            ),
        });
        if let Some(release) = out.release {
            // SAFETY: called exactly once, on this thread, after the copy; never touched again.
            unsafe { release(&mut out) };
        }
        result
    }
}

impl fmt::Debug for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extension")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("task_types", &self.task_types())
            .finish()
    }
}

#[cfg(unix)]
fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading runs the library's initialisers; the library is trusted by configuration.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
}

#[cfg(not(unix))]
fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    // SAFETY: as above.
    unsafe { libloading::Library::new(path) }
}

/// A NUL-terminated UTF-8 string from a descriptor.
///
/// # Safety
/// `ptr` is null or points to a NUL-terminated string.
unsafe fn c_string(ptr: *const c_char) -> Result<String, String> {
    if ptr.is_null() {
        return Err("NULL string".into());
    }
    // SAFETY: guaranteed by the caller.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map(str::to_owned)
        .map_err(|_| format!("not UTF-8: {:?}", text.to_string_lossy()))
}

/// The `log` callback the host gives to every call: forwards to the caller's closure.
unsafe extern "C" fn host_log(host: *mut HlHost, level: i32, msg: *const u8, msg_len: usize) {
    if host.is_null() {
        return;
    }
    // SAFETY: `host` is the `&mut &mut dyn FnMut` set up in `call`, alive for the whole call.
    let log = unsafe { &mut *(host as *mut &mut dyn FnMut(i32, &str)) };
    // SAFETY: the library passes msg_len readable bytes.
    let bytes = unsafe { bytes_of(msg, msg_len) };
    let text = String::from_utf8_lossy(bytes);
    // Never unwind into the library.
    let _ = catch_unwind(AssertUnwindSafe(|| log(level, &text)));
}

/// `ptr[..len]`, accepting a NULL pointer for an empty buffer. `None` for NULL with `len > 0`.
///
/// # Safety
/// A non-null `ptr` points to `len` readable bytes that outlive the returned slice's use.
unsafe fn bytes_of<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

enum Problem {
    /// The task reported an error (the message).
    TaskError(String),
    /// The result breaks the ABI (what is wrong).
    Invalid(String),
}

/// Copies a result tree into Rust-owned memory.
///
/// # Safety
/// `result` and the buffers and items it points to are valid (not yet released).
unsafe fn copy_result(result: &HlResult, depth: usize) -> Result<ExtOutput, Problem> {
    if depth > MAX_RESULT_DEPTH {
        return Err(Problem::Invalid(format!(
            "arrays nested deeper than {MAX_RESULT_DEPTH}"
        )));
    }
    match result.kind {
        abi::RESULT_BYTES => {
            if result.data.is_null() && result.len > 0 {
                return Err(Problem::Invalid(format!(
                    "NULL data with {} bytes",
                    result.len
                )));
            }
            // SAFETY: guaranteed by the caller.
            Ok(ExtOutput::Bytes(
                unsafe { bytes_of(result.data, result.len) }.to_vec(),
            ))
        }
        abi::RESULT_ARRAY => {
            if result.items.is_null() && result.n_items > 0 {
                return Err(Problem::Invalid(format!(
                    "NULL items with {} elements",
                    result.n_items
                )));
            }
            let items = if result.n_items == 0 {
                &[][..]
            } else {
                // SAFETY: guaranteed by the caller.
                unsafe { std::slice::from_raw_parts(result.items, result.n_items) }
            };
            let mut copied = Vec::with_capacity(items.len());
            for item in items {
                // SAFETY: the items are part of the same valid tree.
                copied.push(unsafe { copy_result(item, depth + 1) }?);
            }
            Ok(ExtOutput::Array(copied))
        }
        abi::RESULT_ERROR => {
            // SAFETY: guaranteed by the caller.
            let message =
                String::from_utf8_lossy(unsafe { bytes_of(result.data, result.len) }).into_owned();
            Err(Problem::TaskError(if message.is_empty() {
                "the task failed without a message".into()
            } else {
                message
            }))
        }
        abi::RESULT_NONE => Err(Problem::Invalid("no result was set".into())),
        kind => Err(Problem::Invalid(format!("unknown result kind {kind}"))),
    }
}
