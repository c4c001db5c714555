//! The `#[repr(C)]` mirror of `include/hyperloom_task.h`: the single Rust definition of the ABI.
//!
//! The host (the HyperLoom worker) and the SDK both use these types; the header documents
//! ownership and threading rules, which apply unchanged. A test compiles the header with the
//! system C compiler and checks that every size and field offset here matches it.

use std::ffi::c_char;
use std::ffi::c_void;

/// The ABI version described by this module (`HYPERLOOM_TASK_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;

/// The name of the one symbol a task library exports (`HYPERLOOM_TASK_ENTRY_POINT`).
pub const ENTRY_POINT: &str = "hyperloom_task_library";

/// [`HlInput::kind`]: a D-Object; its bytes are available.
pub const INPUT_DOBJECT: u32 = 0;
/// [`HlInput::kind`]: any other data object; `data` is null and `len` is 0.
pub const INPUT_OTHER: u32 = 1;

/// [`HlResult::kind`]: nothing was set; the host reports a failure.
pub const RESULT_NONE: u32 = 0;
/// [`HlResult::kind`]: raw data holding `data[..len]`.
pub const RESULT_BYTES: u32 = 1;
/// [`HlResult::kind`]: an array of `items[..n_items]`.
pub const RESULT_ARRAY: u32 = 2;
/// [`HlResult::kind`]: the task failed; `data[..len]` is the UTF-8 message.
pub const RESULT_ERROR: u32 = 3;

/// Log levels (`HL_LOG_*`).
pub const LOG_DEBUG: i32 = 0;
/// See [`LOG_DEBUG`].
pub const LOG_INFO: i32 = 1;
/// See [`LOG_DEBUG`].
pub const LOG_WARN: i32 = 2;
/// See [`LOG_DEBUG`].
pub const LOG_ERROR: i32 = 3;

/// `hl_input`: one input of a task.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HlInput {
    /// The bytes; null unless `kind == INPUT_DOBJECT` (and possibly null when `len == 0`).
    pub data: *const u8,
    /// Number of bytes at `data`.
    pub len: usize,
    /// The object's size.
    pub size: u64,
    /// The object's length.
    pub length: u64,
    /// [`INPUT_DOBJECT`] or [`INPUT_OTHER`].
    pub kind: u32,
}

/// `hl_host`: opaque host state.
#[repr(C)]
pub struct HlHost {
    _opaque: [u8; 0],
}

/// `hl_log_fn`.
pub type HlLogFn =
    unsafe extern "C" fn(host: *mut HlHost, level: i32, msg: *const u8, msg_len: usize);

/// `hl_context`: what the host passes to every call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HlContext {
    /// `size_of::<HlContext>()` as known by the host.
    pub struct_size: usize,
    /// Pass to `log`.
    pub host: *mut HlHost,
    /// The log callback.
    pub log: HlLogFn,
}

/// `hl_release_fn`.
pub type HlReleaseFn = unsafe extern "C" fn(result: *mut HlResult);

/// `hl_result`: the result of a task call, zeroed by the host before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HlResult {
    /// `RESULT_*`.
    pub kind: u32,
    /// Bytes or error message.
    pub data: *const u8,
    /// Number of bytes at `data`.
    pub len: usize,
    /// Array elements.
    pub items: *const HlResult,
    /// Number of elements at `items`.
    pub n_items: usize,
    /// Frees the whole result tree; called once by the host (top level only).
    pub release: Option<HlReleaseFn>,
    /// For the library's use.
    pub release_data: *mut c_void,
}

impl HlResult {
    /// The zeroed result the host passes in (`kind == RESULT_NONE`).
    pub const fn empty() -> HlResult {
        HlResult {
            kind: RESULT_NONE,
            data: std::ptr::null(),
            len: 0,
            items: std::ptr::null(),
            n_items: 0,
            release: None,
            release_data: std::ptr::null_mut(),
        }
    }
}

/// `hl_task_fn`.
pub type HlTaskFn = unsafe extern "C" fn(
    ctx: *const HlContext,
    inputs: *const HlInput,
    n_inputs: usize,
    config: *const u8,
    config_len: usize,
    out: *mut HlResult,
);

/// `hl_task_entry`: one task type of a library.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HlTaskEntry {
    /// NUL-terminated UTF-8 symbol.
    pub name: *const c_char,
    /// The function; never null in a valid descriptor.
    pub run: Option<HlTaskFn>,
}

/// `hl_library`: the descriptor returned by the entry point.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HlLibrary {
    /// `size_of::<HlLibrary>()`. Fixed position.
    pub struct_size: usize,
    /// [`ABI_VERSION`]. Fixed position.
    pub abi_version: u32,
    /// NUL-terminated UTF-8 library name.
    pub name: *const c_char,
    /// NUL-terminated UTF-8 library version.
    pub version: *const c_char,
    /// Number of entries at `tasks`.
    pub n_tasks: usize,
    /// The task types.
    pub tasks: *const HlTaskEntry,
}

/// The first two fields of every [`HlLibrary`], whatever its ABI version: the host reads only
/// these before it has checked them.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HlLibraryHeader {
    /// See [`HlLibrary::struct_size`].
    pub struct_size: usize,
    /// See [`HlLibrary::abi_version`].
    pub abi_version: u32,
}

/// `hl_entry_point_fn`: the signature of `hyperloom_task_library`.
pub type HlEntryPointFn = unsafe extern "C" fn() -> *const HlLibrary;

/// A descriptor that can live in a `static` (raw pointers are not `Sync`).
///
/// Used by [`export_tasks!`](crate::export_tasks); only ever holds pointers to immutable static
/// data and function pointers.
#[repr(transparent)]
pub struct StaticLibrary(pub HlLibrary);

// SAFETY: the descriptor only points to immutable 'static data (string literals, a static
// array of entries) and to functions; nothing is ever written through these pointers.
unsafe impl Sync for StaticLibrary {}

/// An entry array that can live in a `static`; see [`StaticLibrary`].
#[repr(transparent)]
pub struct StaticEntries<const N: usize>(pub [HlTaskEntry; N]);

// SAFETY: as for StaticLibrary.
unsafe impl<const N: usize> Sync for StaticEntries<N> {}
