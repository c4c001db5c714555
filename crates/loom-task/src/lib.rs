//! # loom-task: native task libraries for HyperLoom
//!
//! A HyperLoom worker can load shared libraries that add task types (the user guide's
//! "Extending worker"). Those libraries speak the stable C ABI of `include/hyperloom_task.h`;
//! this crate lets you write one in plain Rust:
//!
//! ```
//! // Cargo.toml: [lib] crate-type = ["cdylib"]; [dependencies] loom-task = "0.1"
//! use loom_task::{Input, Output, TaskContext};
//!
//! fn count(ctx: &TaskContext, inputs: &[Input], config: &[u8]) -> Result<Output, String> {
//!     let [byte] = config else { return Err("config must be exactly one byte".into()) };
//!     let [input] = inputs else { return Err("expected exactly one input".into()) };
//!     let data = input.bytes().ok_or("the input is not a D-Object")?;
//!     let n = data.iter().filter(|b| *b == byte).count() as u64;
//!     ctx.debug(&format!("counted {n}"));
//!     Ok(Output::u64_le(n))
//! }
//!
//! loom_task::export_tasks!(name = "my-lib", version = "0.1.0", tasks = { "my/count" => count });
//!
//! // A task is a plain function: unit-test it without a worker.
//! # fn main() {
//! let result = TaskContext::with_logger(&mut |_, _| {}, |ctx| count(ctx, &[Input::dobject(b"abca")], b"a"));
//! assert_eq!(result, Ok(Output::u64_le(2)));
//! # }
//! ```
//!
//! - A task returns [`Output::Bytes`] (a raw data object) or [`Output::Array`], or `Err(message)`,
//!   which the worker reports as a failed task.
//! - A panic inside a task is caught at the boundary and becomes a task error whose message
//!   contains the panic message; it never aborts the worker. (This needs the default
//!   `panic = "unwind"`; with `panic = "abort"` a panic still takes the process down.)
//! - Task functions may run on several threads at once: they must be `Sync`-safe (plain
//!   functions over their arguments always are).
//!
//! [`abi`] is the `#[repr(C)]` mirror of the header, shared with the host side.

pub mod abi;

/// The version of this SDK crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi::{HlContext, HlHost, HlInput, HlResult};

/// One input of a task: a D-Object (its bytes are available) or another data object.
///
/// Layout-compatible with [`abi::HlInput`]: the SDK hands the host's input array to the task
/// without copying, and D-Object bytes may be memory-mapped files.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct Input<'a> {
    raw: HlInput,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> Input<'a> {
    /// A D-Object input over `bytes` (size = byte count, length = 0), e.g. to unit-test a task.
    pub fn dobject(bytes: &'a [u8]) -> Input<'a> {
        Input {
            raw: HlInput {
                data: bytes.as_ptr(),
                len: bytes.len(),
                size: bytes.len() as u64,
                length: 0,
                kind: abi::INPUT_DOBJECT,
            },
            _bytes: PhantomData,
        }
    }

    /// A non-D-Object input (array, index, ...) with the given size and length.
    pub fn other(size: u64, length: u64) -> Input<'a> {
        Input {
            raw: HlInput {
                data: std::ptr::null(),
                len: 0,
                size,
                length,
                kind: abi::INPUT_OTHER,
            },
            _bytes: PhantomData,
        }
    }

    /// Whether the input is a D-Object (raw data or an opened file).
    pub fn is_dobject(&self) -> bool {
        self.raw.kind == abi::INPUT_DOBJECT
    }

    /// The bytes of a D-Object; `None` for any other data object.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        if !self.is_dobject() {
            return None;
        }
        if self.raw.data.is_null() || self.raw.len == 0 {
            return Some(&[]);
        }
        // SAFETY: the host guarantees `data[..len]` is readable for the duration of the call,
        // which outlives 'a (the inputs slice is only lent to the task for the call).
        Some(unsafe { std::slice::from_raw_parts(self.raw.data, self.raw.len) })
    }

    /// The object's size (for a D-Object: its byte count).
    pub fn size(&self) -> u64 {
        self.raw.size
    }

    /// The object's length (number of elements of an array or index; 0 for a D-Object).
    pub fn length(&self) -> u64 {
        self.raw.length
    }
}

impl fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Input")
            .field("dobject", &self.is_dobject())
            .field("size", &self.size())
            .field("length", &self.length())
            .finish()
    }
}

/// The result of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A raw data object holding these bytes.
    Bytes(Vec<u8>),
    /// An array object of these elements.
    Array(Vec<Output>),
}

impl Output {
    /// 8 bytes, little-endian: how HyperLoom encodes numbers (e.g. `loom/base/size`).
    pub fn u64_le(value: u64) -> Output {
        Output::Bytes(value.to_le_bytes().to_vec())
    }
}

impl From<Vec<u8>> for Output {
    fn from(bytes: Vec<u8>) -> Output {
        Output::Bytes(bytes)
    }
}

impl From<&[u8]> for Output {
    fn from(bytes: &[u8]) -> Output {
        Output::Bytes(bytes.to_vec())
    }
}

impl From<String> for Output {
    fn from(text: String) -> Output {
        Output::Bytes(text.into_bytes())
    }
}

impl From<&str> for Output {
    fn from(text: &str) -> Output {
        Output::Bytes(text.as_bytes().to_vec())
    }
}

impl From<Vec<Output>> for Output {
    fn from(items: Vec<Output>) -> Output {
        Output::Array(items)
    }
}

/// Log levels of [`TaskContext::log`].
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `HL_LOG_DEBUG`.
    Debug = abi::LOG_DEBUG,
    /// `HL_LOG_INFO`.
    Info = abi::LOG_INFO,
    /// `HL_LOG_WARN`.
    Warn = abi::LOG_WARN,
    /// `HL_LOG_ERROR`.
    Error = abi::LOG_ERROR,
}

/// What a task can ask of the worker while it runs: for now, logging.
pub struct TaskContext<'a> {
    raw: Option<&'a HlContext>,
}

impl<'a> TaskContext<'a> {
    /// Writes `message` to the worker's log.
    pub fn log(&self, level: LogLevel, message: &str) {
        if let Some(ctx) = self.raw {
            // SAFETY: the host guarantees `log` and `host` are valid on this thread during the call.
            unsafe { (ctx.log)(ctx.host, level as i32, message.as_ptr(), message.len()) }
        }
    }

    /// [`log`](Self::log) at [`LogLevel::Debug`].
    pub fn debug(&self, message: &str) {
        self.log(LogLevel::Debug, message)
    }

    /// [`log`](Self::log) at [`LogLevel::Info`].
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message)
    }

    /// [`log`](Self::log) at [`LogLevel::Warn`].
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message)
    }

    /// [`log`](Self::log) at [`LogLevel::Error`].
    pub fn error(&self, message: &str) {
        self.log(LogLevel::Error, message)
    }

    /// Runs `f` with a context whose log messages go to `logger`: to unit-test a task function
    /// without a worker.
    pub fn with_logger<R>(
        logger: &mut dyn FnMut(LogLevel, &str),
        f: impl FnOnce(&TaskContext) -> R,
    ) -> R {
        unsafe extern "C" fn forward(host: *mut HlHost, level: i32, msg: *const u8, len: usize) {
            // SAFETY: `host` is the `&mut &mut dyn FnMut` below, alive for the whole call.
            let logger = unsafe { &mut *(host as *mut &mut dyn FnMut(LogLevel, &str)) };
            // SAFETY: the SDK passes a &str's pointer and length.
            let text =
                unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(msg, len)) };
            let level = match level {
                abi::LOG_DEBUG => LogLevel::Debug,
                abi::LOG_INFO => LogLevel::Info,
                abi::LOG_WARN => LogLevel::Warn,
                _ => LogLevel::Error,
            };
            // A panicking test logger must not unwind through extern "C".
            let _ = catch_unwind(AssertUnwindSafe(|| logger(level, text)));
        }
        let mut logger = logger;
        let raw = HlContext {
            struct_size: std::mem::size_of::<HlContext>(),
            host: &mut logger as *mut &mut dyn FnMut(LogLevel, &str) as *mut HlHost,
            log: forward,
        };
        f(&TaskContext { raw: Some(&raw) })
    }
}

/// The text of a panic payload (`&str` or `String`; anything else gives a generic text).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Memory behind an [`HlResult`] tree, freed by [`release_result`].
struct OwnedResult {
    _bytes: Vec<u8>,
    _items: Vec<HlResult>,
    _children: Vec<OwnedResult>,
}

/// Builds the C view of `output`; the pointers stay valid as long as the returned owner lives
/// (moving the owner does not move the heap buffers they point to).
fn build_result(output: Output) -> (HlResult, OwnedResult) {
    let mut raw = HlResult::empty();
    match output {
        Output::Bytes(bytes) => {
            raw.kind = abi::RESULT_BYTES;
            raw.data = bytes.as_ptr();
            raw.len = bytes.len();
            (
                raw,
                OwnedResult {
                    _bytes: bytes,
                    _items: Vec::new(),
                    _children: Vec::new(),
                },
            )
        }
        Output::Array(elements) => {
            let (items, children): (Vec<HlResult>, Vec<OwnedResult>) =
                elements.into_iter().map(build_result).unzip();
            raw.kind = abi::RESULT_ARRAY;
            raw.items = items.as_ptr();
            raw.n_items = items.len();
            (
                raw,
                OwnedResult {
                    _bytes: Vec::new(),
                    _items: items,
                    _children: children,
                },
            )
        }
    }
}

/// The `release` callback of every result the SDK produces.
unsafe extern "C" fn release_result(result: *mut HlResult) {
    if result.is_null() {
        return;
    }
    // SAFETY: the host passes back the result we filled in; release_data is our Box (or null).
    unsafe {
        let owner = (*result).release_data as *mut OwnedResult;
        (*result).release_data = std::ptr::null_mut();
        if !owner.is_null() {
            let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(owner))));
        }
    }
}

/// Support for [`export_tasks!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub use std::mem::size_of;

    /// `s` (which must end with its only NUL) as a C string pointer; checked at compile time.
    pub const fn c_name(s: &'static str) -> *const std::ffi::c_char {
        let bytes = s.as_bytes();
        assert!(
            !bytes.is_empty() && bytes[bytes.len() - 1] == 0,
            "missing NUL terminator"
        );
        let mut i = 0;
        while i + 1 < bytes.len() {
            assert!(bytes[i] != 0, "names must not contain NUL bytes");
            i += 1;
        }
        s.as_ptr() as *const std::ffi::c_char
    }

    const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Compile-time checks of the task symbols: non-empty, unique, not in the reserved `loom/`.
    pub const fn check_symbols(symbols: &[&str]) {
        let mut i = 0;
        while i < symbols.len() {
            let s = symbols[i].as_bytes();
            assert!(!s.is_empty(), "export_tasks!: empty task symbol");
            assert!(
                !(s.len() >= 5
                    && s[0] == b'l'
                    && s[1] == b'o'
                    && s[2] == b'o'
                    && s[3] == b'm'
                    && s[4] == b'/'),
                "export_tasks!: the prefix \"loom/\" is reserved for built-in tasks"
            );
            let mut j = i + 1;
            while j < symbols.len() {
                assert!(
                    !str_eq(symbols[i], symbols[j]),
                    "export_tasks!: duplicate task symbol"
                );
                j += 1;
            }
            i += 1;
        }
    }

    /// The body of every generated `extern "C"` task function.
    ///
    /// # Safety
    /// The arguments must follow the contract of `hl_task_fn` in the header.
    pub unsafe fn run_task<F>(
        task: F,
        ctx: *const HlContext,
        inputs: *const HlInput,
        n_inputs: usize,
        config: *const u8,
        config_len: usize,
        out: *mut HlResult,
    ) where
        F: Fn(&TaskContext, &[Input], &[u8]) -> Result<Output, String>,
    {
        if out.is_null() {
            return;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: per the header, ctx is valid for the call (or null: then no logging).
            let context = TaskContext {
                raw: unsafe { ctx.as_ref() },
            };
            let inputs: &[Input] = if inputs.is_null() || n_inputs == 0 {
                &[]
            } else {
                // SAFETY: Input is repr(transparent) over HlInput; the host lends n_inputs of them.
                unsafe { std::slice::from_raw_parts(inputs as *const Input, n_inputs) }
            };
            let config: &[u8] = if config.is_null() || config_len == 0 {
                &[]
            } else {
                // SAFETY: the host lends config[..config_len] for the call.
                unsafe { std::slice::from_raw_parts(config, config_len) }
            };
            task(&context, inputs, config)
        }));
        let (kind, payload) = match outcome {
            Ok(Ok(output)) => (None, Ok(output)),
            Ok(Err(message)) => (Some(abi::RESULT_ERROR), Err(message)),
            Err(panic) => {
                let message = format!("task panicked: {}", panic_message(&*panic));
                // Dropping a payload may itself panic; never let that unwind into the host.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(panic)));
                (Some(abi::RESULT_ERROR), Err(message))
            }
        };
        let (mut raw, owner) = match payload {
            Ok(output) => build_result(output),
            Err(message) => build_result(Output::Bytes(message.into_bytes())),
        };
        if let Some(kind) = kind {
            raw.kind = kind;
        }
        raw.release = Some(release_result);
        raw.release_data = Box::into_raw(Box::new(owner)) as *mut std::ffi::c_void;
        // SAFETY: out is the host's zeroed result, valid for the call.
        unsafe { out.write(raw) };
    }
}

/// Exports Rust functions as the task types of this `cdylib`.
///
/// ```ignore
/// loom_task::export_tasks!(
///     name = "my-lib",                 // the library's name
///     version = "0.1.0",               // optional; defaults to env!("CARGO_PKG_VERSION")
///     tasks = {
///         "my/count" => count,         // symbol => fn(&TaskContext, &[Input], &[u8]) -> Result<Output, String>
///         "my/other" => other::task,
///     }
/// );
/// ```
///
/// It defines the library's entry point `hyperloom_task_library`, so use it once per library.
/// Symbols are checked at compile time: non-empty, unique, not starting with the reserved `loom/`.
#[macro_export]
macro_rules! export_tasks {
    (name = $name:expr, tasks = { $($symbol:literal => $task:path),+ $(,)? } $(,)?) => {
        $crate::export_tasks!(name = $name, version = ::core::env!("CARGO_PKG_VERSION"), tasks = { $($symbol => $task),+ });
    };
    (name = $name:expr, version = $version:expr, tasks = { $($symbol:literal => $task:path),+ $(,)? } $(,)?) => {
        /// The entry point of this HyperLoom task library (generated by `loom_task::export_tasks!`).
        #[unsafe(no_mangle)]
        pub extern "C" fn hyperloom_task_library() -> *const $crate::abi::HlLibrary {
            const _: () = $crate::__private::check_symbols(&[$($symbol),+]);
            const N_TASKS: usize = <[&str]>::len(&[$($symbol),+]);
            static ENTRIES: $crate::abi::StaticEntries<N_TASKS> = $crate::abi::StaticEntries([$(
                $crate::abi::HlTaskEntry {
                    name: $crate::__private::c_name(::core::concat!($symbol, "\0")),
                    run: ::core::option::Option::Some({
                        unsafe extern "C" fn run(
                            ctx: *const $crate::abi::HlContext,
                            inputs: *const $crate::abi::HlInput,
                            n_inputs: usize,
                            config: *const u8,
                            config_len: usize,
                            out: *mut $crate::abi::HlResult,
                        ) {
                            // SAFETY: the host calls this per the hl_task_fn contract.
                            unsafe { $crate::__private::run_task($task, ctx, inputs, n_inputs, config, config_len, out) }
                        }
                        run
                    }),
                }
            ),+]);
            static LIBRARY: $crate::abi::StaticLibrary = $crate::abi::StaticLibrary($crate::abi::HlLibrary {
                struct_size: $crate::__private::size_of::<$crate::abi::HlLibrary>(),
                abi_version: $crate::abi::ABI_VERSION,
                name: $crate::__private::c_name(::core::concat!($name, "\0")),
                version: $crate::__private::c_name(::core::concat!($version, "\0")),
                n_tasks: N_TASKS,
                tasks: &ENTRIES as *const $crate::abi::StaticEntries<N_TASKS> as *const $crate::abi::HlTaskEntry,
            });
            &LIBRARY.0
        }
    };
}
