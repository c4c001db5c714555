//! HyperLoom core: everything on the hot paths, in pure Rust (no N-API).
//!
//! - [`frame`]: the u64le length-prefixed framing shared by every connection.
//! - [`log`]: log lines the cores hand to their host.
//! - [`proto`]: the wire messages, generated from `proto/`.
//! - [`symbols`]: the symbol dictionary (`loom/...` names and their ids).
//! - [`server`]: plan ingestion, task graph, scheduler and the server side of both protocols.
//! - [`data`]: data objects (plain, file, array, index, JS value) and their stream encoding.
//! - [`worker`]: the worker side: data store, built-in tasks, transfers.
//! - [`trace`]: the trace files written while a client asked for tracing.
//! - [`extension`]: the host of native task libraries (the C ABI of `loom-task`).
//!
//! This crate knows nothing of sockets or JavaScript: callers feed it bytes and events and
//! write out the framed bytes it returns.

pub mod data;
pub mod extension;
pub mod frame;
mod id_map;
pub mod journal;
pub mod log;
pub mod proto;
pub mod server;
pub mod symbols;
pub mod trace;
pub mod worker;
