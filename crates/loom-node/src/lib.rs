//! Thin napi-rs binding over `loom-core`: converts Buffers and numbers, calls the core, returns
//! Buffers. No protocol or scheduling logic lives here.
#![deny(clippy::all)]

use napi_derive::napi;

/// The protocol version this build speaks (for a quick load check of the addon).
#[napi]
pub fn protocol_version() -> i32 {
    loom_core::proto::PROTOCOL_VERSION
}
