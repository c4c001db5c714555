//! Errors of the server core.

use crate::frame::FrameError;

/// Errors of the server core. A peer's error closes only that peer's connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerError {
    /// The framing of a connection is broken (oversized frame).
    #[error("framing error: {0}")]
    Frame(#[from] FrameError),
    /// A frame could not be decoded as the message expected at this point.
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// The first frame announced another protocol version.
    #[error("unsupported protocol version {0}")]
    ProtocolVersion(i32),
    /// The first frame announced an unknown connection type.
    #[error("invalid registration type {0}")]
    RegisterType(i32),
    /// A client tried to re-attach to a session this server does not have (it answered ERROR).
    #[error("client session {0:x} is unknown (the client was told)")]
    UnknownSession(u64),
    /// A client request of an unknown type.
    #[error("invalid request type {0}")]
    RequestType(i32),
    /// A worker response of an unknown type.
    #[error("invalid worker response type {0}")]
    ResponseType(i32),
    /// A data header arrived for an object no client is waiting for. The socket layer must skip
    /// `n_messages` frames.
    #[error("data for id {id} that no client fetched ({n_messages} frames follow)")]
    NoReceiver {
        /// The internal data id of the header.
        id: i32,
        /// Frames that follow the header.
        n_messages: u64,
    },
}
