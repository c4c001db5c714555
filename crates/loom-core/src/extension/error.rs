//! Why a task library could not be loaded.

use std::path::PathBuf;

/// An error from [`Extension::load`](super::Extension::load). Every message names the path that
/// was given, so a worker can print it as is.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    /// The path does not exist (or cannot be accessed).
    #[error("task library '{}' not found: {source}", .path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The file exists but the dynamic loader refused it (not a shared library, wrong
    /// architecture, unresolved symbols, a directory, ...).
    #[error("'{}' is not a loadable shared library: {reason}", .path.display())]
    NotALibrary {
        /// The path as given.
        path: PathBuf,
        /// The dynamic loader's message.
        reason: String,
    },

    /// The library does not export the entry point `hyperloom_task_library`, so it is not a
    /// HyperLoom task library (or it was built without exporting the symbol).
    #[error(
        "'{}' is not a HyperLoom task library: it does not export `{}` ({reason})",
        .path.display(),
        loom_task::abi::ENTRY_POINT
    )]
    MissingEntryPoint {
        /// The path as given.
        path: PathBuf,
        /// The dynamic loader's message.
        reason: String,
    },

    /// The library was built for another version of the task ABI (or its descriptor is smaller
    /// than this ABI version's): it must be rebuilt against this host's `hyperloom_task.h` /
    /// `loom-task`.
    #[error(
        "task library '{}' was built for HyperLoom task ABI version {library_abi} (descriptor of \
         {library_struct_size} bytes), but this worker implements ABI version {host_abi} (descriptor \
         of {host_struct_size} bytes); rebuild it against hyperloom_task.h / loom-task {}",
        .path.display(),
        loom_task::VERSION
    )]
    AbiMismatch {
        /// The path as given.
        path: PathBuf,
        /// The `abi_version` the library declares.
        library_abi: u32,
        /// The `struct_size` the library declares.
        library_struct_size: usize,
        /// The ABI version this host implements.
        host_abi: u32,
        /// The size of this host's descriptor struct.
        host_struct_size: usize,
    },

    /// The descriptor has the right ABI version but invalid content: a null pointer, a name
    /// that is not UTF-8, an empty, duplicate or reserved (`loom/`) task symbol, a task without
    /// a function.
    #[error("task library '{}' has an invalid descriptor: {reason}", .path.display())]
    BadDescriptor {
        /// The path as given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// Two libraries of one worker (or a library and the worker's own JS task types) define
    /// the same task type: which one runs it would be ambiguous.
    #[error(
        "task library '{}' ({library}) defines '{task_type}', which is already defined by {other}",
        .path.display()
    )]
    DuplicateTaskType {
        /// The path of the library loaded second.
        path: PathBuf,
        /// Its name and version.
        library: String,
        /// The task type.
        task_type: String,
        /// Who defined it first: the other library's path, or "the worker itself".
        other: String,
    },
}
