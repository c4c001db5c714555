//! What the core benchmarks share to drive a server core without sockets: the connection ids of
//! the simulated worker and client, their registration, and the frames a worker sends back.
//! Included by each binary (`mod simulated` / `#[path]`), so every bench speaks the same bytes.

use loom_core::frame::push_frame;
use loom_core::proto::comm::Register;
use loom_core::server::Server;
use loom_core::symbols::ORIGINAL_TASK_TYPES;

/// Connection id of the simulated worker.
pub const WORKER: u32 = 1;
/// Connection id of the simulated client.
pub const CLIENT: u32 = 2;
/// Connection id of the second simulated worker ([`connect_second_worker`]).
#[allow(dead_code)] // (not every binary including this module uses it)
pub const WORKER2: u32 = 3;

/// A protobuf varint at `b[*p..]`; advances `p`. Panics on truncation (the core wrote it).
pub fn read_varint(b: &[u8], p: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*p];
        *p += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Appends `v` as a protobuf varint.
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a framed `WorkerResponse{FINISHED, id, size}` in the layout workers send (`size` < 128).
pub fn push_finished(out: &mut Vec<u8>, id: u64, size: u8) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&[0x08, 0x01, 0x10]);
    varint(out, id);
    out.extend_from_slice(&[0x18, size]);
    let len = (out.len() - start - 8) as u64;
    out[start..start + 8].copy_from_slice(&len.to_le_bytes());
}

/// Connects and registers a second worker like the first ([`WORKER2`], data port 4001).
#[allow(dead_code)] // (not every binary including this module uses it)
pub fn connect_second_worker(s: &mut Server) {
    register_worker(s, WORKER2, 4001);
    drop(s.take_output());
}

/// Connects worker connection `conn` and registers it: 2 cpus, data port `port`, the
/// original's task and data types.
fn register_worker(s: &mut Server, conn: u32, port: i32) {
    s.on_connect(conn, "127.0.0.1");
    let mut reg = Vec::new();
    push_frame(
        &mut reg,
        &Register {
            protocol_version: 2,
            r#type: 1,
            port: Some(port),
            task_types: ORIGINAL_TASK_TYPES.iter().map(|s| s.to_string()).collect(),
            data_types: vec!["loom/data".into(), "loom/array".into()],
            cpus: Some(2),
            ..Default::default()
        },
    );
    s.on_data(conn, &reg);
}

/// Connects and registers one worker of 2 cpus (data port 4000, the original's task and data
/// types) and one client announcing `client_features`; the server's answers are dropped.
pub fn connect(s: &mut Server, client_features: &[&str]) {
    register_worker(s, WORKER, 4000);
    s.on_connect(CLIENT, "127.0.0.1");
    let mut reg = Vec::new();
    push_frame(
        &mut reg,
        &Register {
            protocol_version: 2,
            r#type: 2,
            features: client_features.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        },
    );
    s.on_data(CLIENT, &reg);
    drop(s.take_output());
}
