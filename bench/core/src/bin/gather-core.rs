//! The server core's share of W1-gather, without sockets, for callgrind (issue #26): N merges of
//! two consts, each merge a result; a simulated worker answers every TASK with FINISHED and
//! every SEND with the object's data stream (a DataHeader and one 4-byte frame); a simulated
//! client (`fetch-many`, `data-batch`, as ours) FETCHes each result when told it finished, in one
//! request per round, and its objects are relayed by `Server::relay_whole` (a round's streams in
//! 64 KiB chunks cut at object boundaries, as a worker's writes mostly arrive). Counts the
//! objects the client got; prints wall time per result.
//!
//!   cargo build --release -p loom-bench-core --bin gather-core
//!   valgrind --tool=callgrind --toggle-collect='*run_once*' target/release/gather-core --n 100000 --reps 1
//!
//! Instructions per result = callgrind's total / N (the driver's own parsing included: a few
//! dozen instructions per frame).

use std::time::Instant;

use loom_core::frame::push_frame;
use loom_core::proto::comm::{client_request, ClientRequest, DataHeader, Plan, Task};
use loom_core::server::Server;
use loom_core::symbols::Symbols;
use prost::Message;

#[path = "../simulated.rs"]
mod simulated;
use simulated::{connect, push_finished, read_varint, CLIENT, WORKER};

/// A chunk of the worker's data connection is at most this long (Node reads 64 KiB).
const CHUNK: usize = 64 << 10;

/// The data stream of object `id`: its DataHeader and one frame of 4 bytes.
fn push_stream(out: &mut Vec<u8>, id: i32, type_id: i32) {
    push_frame(
        out,
        &DataHeader {
            id,
            n_messages: 1,
            type_id,
        },
    );
    out.extend_from_slice(&4u64.to_le_bytes());
    out.extend_from_slice(b"abcd");
}

fn plan(n: usize, s: &Symbols) -> Vec<u8> {
    let sym = |x: &str| s.id(x).unwrap();
    let (cst, merge) = (sym("loom/data/const"), sym("loom/data/merge"));
    let mut tasks = Vec::with_capacity(3 * n);
    for i in 0..n as i32 {
        let t = |ty, cfg: &[u8], inputs: Vec<i32>, result| Task {
            task_type: ty,
            config: cfg.to_vec().into(),
            input_ids: inputs,
            result: Some(result),
            ..Default::default()
        };
        tasks.push(t(cst, b"ab", vec![], false));
        tasks.push(t(cst, b"cd", vec![], false));
        tasks.push(t(merge, b"", vec![3 * i, 3 * i + 1], true));
    }
    let mut out = Vec::new();
    push_frame(
        &mut out,
        &ClientRequest {
            r#type: client_request::Type::Plan as i32,
            plan: Some(Plan {
                tasks,
                id_base: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    out
}

/// Runs the gather; returns the objects the client got.
#[inline(never)]
fn run_once(plan: &[u8], type_id: i32) -> usize {
    let mut s = Server::new(9999);
    connect(&mut s, &["fetch-many", "data-batch"]);
    s.on_data(CLIENT, plan);
    let mut to_worker: Vec<u8> = Vec::new();
    let mut streams: Vec<u8> = Vec::new();
    let mut fetch: Vec<i32> = Vec::new();
    let mut got = 0usize;
    loop {
        let out = s.take_output();
        to_worker.clear();
        streams.clear();
        fetch.clear();
        for (conn, buf) in &out.writes {
            let mut p = 0;
            while p + 8 <= buf.len() {
                let len = u64::from_le_bytes(buf[p..p + 8].try_into().unwrap()) as usize;
                let f = &buf[p + 8..p + 8 + len];
                p += 8 + len;
                if *conn == WORKER {
                    let mut q = 3;
                    match (f[0], f[1]) {
                        (0x08, 0x01) => push_finished(&mut to_worker, read_varint(f, &mut q), 4),
                        (0x08, 0x02) => {
                            push_stream(&mut streams, read_varint(f, &mut q) as i32, type_id)
                        }
                        _ => {}
                    }
                } else if f[0] == 0x08 && f[1] == 0x02 {
                    // TASK_FINISHED (id = field 7): fetch it.
                    let mut q = 3;
                    fetch.push(read_varint(f, &mut q) as i32);
                }
            }
        }
        let mut at = 0;
        while at < streams.len() {
            // A chunk of up to CHUNK bytes, cut at an object boundary (each stream is 32 bytes
            // or so); relay_whole takes all of it.
            let end = (at + CHUNK).min(streams.len());
            let r = s.relay_whole(&streams[at..end]);
            assert!(r.consumed > 0, "relay_whole took nothing");
            got += r.objects;
            at += r.consumed;
        }
        if !fetch.is_empty() {
            let mut req = Vec::new();
            push_frame(
                &mut req,
                &ClientRequest {
                    r#type: client_request::Type::Fetch as i32,
                    ids: fetch.clone(),
                    ..Default::default()
                },
            );
            s.on_data(CLIENT, &req);
        }
        if !to_worker.is_empty() {
            s.on_data(WORKER, &to_worker);
        }
        if to_worker.is_empty() && fetch.is_empty() && streams.is_empty() {
            break;
        }
    }
    got
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg_of = |name: &str, d: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().expect("a number"))
            .unwrap_or(d)
    };
    let n = arg_of("--n", 100_000);
    let reps = arg_of("--reps", 3).max(1);
    let symbols = Symbols::for_server();
    let type_id = symbols.id("loom/data").unwrap();
    let p = plan(n, &symbols);
    let _ = ClientRequest::decode(&p[8..]).expect("plan encodes");
    let mut ns = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        let got = run_once(&p, type_id);
        ns.push(t0.elapsed().as_nanos() as f64 / n as f64);
        assert_eq!(got, n, "every result gathered");
    }
    ns.sort_by(f64::total_cmp);
    println!(
        "gather-core N={n}: {:.0} ns/result median [{:.0}-{:.0}] over {reps} reps",
        ns[reps / 2],
        ns[0],
        ns[reps - 1]
    );
}
