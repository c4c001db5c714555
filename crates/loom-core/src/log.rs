//! Log lines the cores produce for their host process to print (the cores never print).

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Detailed tracing.
    Debug,
    /// Normal events (registrations, disconnects).
    Info,
    /// Something a peer did wrong that the process survived.
    Warn,
    /// A connection was closed or a task failed because of an error.
    Error,
}

impl LogLevel {
    /// The level's name as the TypeScript layer spells it.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}
