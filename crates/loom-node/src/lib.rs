//! Thin napi-rs binding over `loom-core`: converts Buffers, numbers and plain objects, calls the
//! core, and returns its output. No protocol or scheduling logic lives here. Every call that feeds
//! the core bytes returns the output of that event, so one event costs one boundary crossing.
#![deny(clippy::all)]

pub mod extension;
pub mod process;
pub mod server;
pub mod worker;

use napi_derive::napi;

/// The protocol version this build speaks (for a quick load check of the addon).
#[napi]
pub fn protocol_version() -> i32 {
    loom_core::proto::PROTOCOL_VERSION
}

/// A log line produced by the core.
#[napi(object)]
pub struct LogLine {
    /// `debug`, `info`, `warn` or `error`.
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
