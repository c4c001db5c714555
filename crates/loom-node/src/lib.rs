//! Thin napi-rs binding over `loom-core`: converts Buffers, numbers and plain objects, calls the
//! core, and returns its output. No protocol or scheduling logic lives here. Every call that feeds
//! the core bytes returns the output of that event, so one event costs one boundary crossing.
#![deny(clippy::all)]

pub mod cpu_claim;
pub mod early_listen;
mod function_calls;
pub mod mapped_file;
pub mod process;
mod program_task;
mod run_dir;
pub mod server;
pub mod server_demand;
pub(crate) mod spawn;
pub mod worker;

use napi_derive::napi;

/// The protocol version this build speaks (for a quick load check of the addon).
#[napi]
pub fn protocol_version() -> i32 {
    loom_core::proto::PROTOCOL_VERSION
}

/// The `code` of every error the binding throws or rejects with (`err.code` in JS), so callers
/// can tell them apart without parsing messages. Listed in `docs/native-tasks.md`.
#[napi(string_enum)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The worker's data directory could not be created (it exists, or no permission).
    ERR_LOOM_WORK_DIR,
    /// A native task library could not be loaded: not found, not a shared library, not a
    /// HyperLoom task library, another ABI version, an invalid descriptor, or a task type
    /// defined twice.
    ERR_LOOM_EXTENSION,
    /// The server connection's byte stream is broken (bad framing or an undecodable message).
    ERR_LOOM_SERVER_STREAM,
    /// A data connection's byte stream is broken.
    ERR_LOOM_PEER_STREAM,
    /// A DataHeader on the server's data port names no waiting receiver or is malformed.
    ERR_LOOM_DATA_HEADER,
    /// The server journal (`--journal`) cannot be read, is not a journal, or cannot be written.
    ERR_LOOM_JOURNAL,
    /// A program could not be started (`runProgram`), or its waiter thread could not.
    ERR_LOOM_SPAWN,
    /// The background directory remover is gone.
    ERR_LOOM_REMOVER,
    /// Converting a value between JS and Rust failed (an argument of the wrong shape).
    ERR_LOOM_NAPI,
}

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        match self {
            ErrorCode::ERR_LOOM_WORK_DIR => "ERR_LOOM_WORK_DIR",
            ErrorCode::ERR_LOOM_EXTENSION => "ERR_LOOM_EXTENSION",
            ErrorCode::ERR_LOOM_SERVER_STREAM => "ERR_LOOM_SERVER_STREAM",
            ErrorCode::ERR_LOOM_PEER_STREAM => "ERR_LOOM_PEER_STREAM",
            ErrorCode::ERR_LOOM_DATA_HEADER => "ERR_LOOM_DATA_HEADER",
            ErrorCode::ERR_LOOM_JOURNAL => "ERR_LOOM_JOURNAL",
            ErrorCode::ERR_LOOM_SPAWN => "ERR_LOOM_SPAWN",
            ErrorCode::ERR_LOOM_REMOVER => "ERR_LOOM_REMOVER",
            ErrorCode::ERR_LOOM_NAPI => "ERR_LOOM_NAPI",
        }
    }
}

/// A napi-rs error (a conversion that failed) as a binding error.
pub(crate) fn binding_error(e: napi::Error) -> napi::Error<ErrorCode> {
    napi::Error::new(ErrorCode::ERR_LOOM_NAPI, e.reason.clone())
}

/// A rejection value for a deferred promise that keeps `code` (a deferred otherwise rejects
/// with a napi status as the code). Called on the JS thread.
pub(crate) fn coded_rejection(env: &napi::Env, code: ErrorCode, message: String) -> napi::Error {
    use napi::bindgen_prelude::{FromNapiValue, ToNapiValue, Unknown};
    // SAFETY: `env` is the JS thread's environment, live for this call.
    let value = unsafe {
        ToNapiValue::to_napi_value(env.raw(), napi::Error::new(code, message.clone()))
            .and_then(|raw| Unknown::from_napi_value(env.raw(), raw))
    };
    match value {
        Ok(js_error) => napi::Error::from(js_error),
        Err(_) => napi::Error::from_reason(message),
    }
}

/// A log line produced by the core.
#[napi(object)]
pub struct LogLine {
    /// `debug`, `info`, `warn` or `error`.
    #[napi(ts_type = "'debug' | 'info' | 'warn' | 'error'")]
    pub level: String,
    /// The message.
    pub message: String,
}

impl LogLine {
    /// The core's log lines as JS objects.
    pub(crate) fn all(logs: Vec<(loom_core::log::LogLevel, String)>) -> Vec<LogLine> {
        logs.into_iter()
            .map(|(level, message)| LogLine {
                level: level.name().to_owned(),
                message,
            })
            .collect()
    }
}
