//! The worker core's share of W1 (issue #26), without sockets: two `Worker`s fed the commands
//! our server sends them for W1 at N (N merges of two consts each, one arrayMake), in 64 KiB
//! chunks: worker A runs the first half of the merges and sends them to worker B, which runs
//! the second half, receives A's, makes the array and sends it to the server's data port.
//! The REMOVEs of the consts (after their merge) and of the merges (after the array) come too.
//! As in a cluster, B gets the array's TASK before A's merges arrive (the server assigns it
//! once every merge finished, with the SENDs of A's): it waits for them.
//!
//!   cargo run --release -p loom-bench-core --bin worker-core -- --n 100000 [--reps 3]
//!
//! Prints one JSON line per repetition (wall ms, ns per task). The repeatable figure is its
//! instruction count per task under callgrind:
//!
//!   valgrind --tool=callgrind --toggle-collect='*run_once*' target/release/worker-core --n 100000 --reps 1
use std::path::PathBuf;
use std::time::Instant;

use loom_core::frame::push_frame;
use loom_core::proto::comm::{worker_command, WorkerCommand};
use loom_core::symbols::Symbols;
use loom_core::worker::{Worker, WorkerConfig};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn worker(dir: &PathBuf, port: u16) -> Worker {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("work dir");
    let mut w = Worker::new(WorkerConfig {
        work_dir: dir.clone(),
        cpus: 1,
        data_port: port,
        extra_task_types: Vec::new(),
        extensions: Vec::new(),
    })
    .expect("worker");
    let mut b = Vec::new();
    push_frame(
        &mut b,
        &WorkerCommand {
            r#type: worker_command::Type::Dictionary as i32,
            symbols: Symbols::for_server().names().to_vec(),
            ..Default::default()
        },
    );
    w.on_server_data(&b).expect("dictionary");
    w.take_output();
    w
}

fn command(
    out: &mut Vec<u8>,
    ty: worker_command::Type,
    id: i32,
    f: impl FnOnce(&mut WorkerCommand),
) {
    let mut c = WorkerCommand {
        r#type: ty as i32,
        id: Some(id),
        ..Default::default()
    };
    f(&mut c);
    push_frame(out, &c);
}

fn task(out: &mut Vec<u8>, id: i32, ty: i32, config: &[u8], inputs: &[i32]) {
    command(out, worker_command::Type::Task, id, |c| {
        c.task_type = Some(ty);
        c.task_config = Some(config.to_vec().into());
        c.task_inputs = inputs.to_vec();
        c.n_cpus = Some(0);
    });
}

/// The commands of one worker: the merges `lo..hi` (ids 3i, 3i+1 consts, 3i+2 the merge), each
/// merge SENT to `send_to` if given, the consts REMOVEd after their merge.
fn merges(lo: usize, hi: usize, send_to: Option<&str>) -> Vec<u8> {
    let s = Symbols::for_server();
    let (c, m) = (
        s.id("loom/data/const").unwrap(),
        s.id("loom/data/merge").unwrap(),
    );
    let mut b = Vec::new();
    for i in lo..hi {
        let id = 3 * i as i32;
        task(&mut b, id, c, b"ab", &[]);
        task(&mut b, id + 1, c, b"cd", &[]);
        task(&mut b, id + 2, m, b"", &[id, id + 1]);
        command(&mut b, worker_command::Type::Remove, id, |_| {});
        command(&mut b, worker_command::Type::Remove, id + 1, |_| {});
        if let Some(to) = send_to {
            command(&mut b, worker_command::Type::Send, id + 2, |c| {
                c.address = Some(to.to_owned())
            });
        }
    }
    b
}

/// Feeds `bytes` to the server connection in 64 KiB chunks; returns the streams sent.
fn feed(w: &mut Worker, bytes: &[u8]) -> Vec<u8> {
    let mut streams = Vec::new();
    for chunk in bytes.chunks(64 << 10) {
        w.on_server_data(chunk).expect("server data");
        for s in w.take_output().sends {
            for p in &s.parts {
                streams.extend_from_slice(p.as_slice());
            }
        }
    }
    streams
}

#[inline(never)]
fn run_once(
    n: usize,
    a: &mut Worker,
    b: &mut Worker,
    cmds_a: &[u8],
    cmds_b: &[u8],
    array_b: &[u8],
    tail_b: &[u8],
) -> usize {
    let to_b = feed(a, cmds_a);
    feed(b, cmds_b);
    feed(b, array_b);
    // A's merges arrive on B's data port (an Announce first, as a peer's connection starts).
    let mut announce = Vec::new();
    push_frame(
        &mut announce,
        &loom_core::proto::comm::Announce {
            port: 2,
            ..Default::default()
        },
    );
    b.on_peer_data(1, &announce).expect("announce");
    for chunk in to_b.chunks(64 << 10) {
        b.on_peer_data(1, chunk).expect("peer data");
        b.take_output();
    }
    let out = feed(b, tail_b);
    assert!(out.len() > 16 * n, "the array was sent");
    out.len()
}

fn main() {
    let n = arg("--n", 100_000);
    let reps = arg("--reps", 3);
    let s = Symbols::for_server();
    let half = n / 2;
    let cmds_a = merges(0, half, Some("10.0.0.2:2"));
    let cmds_b = merges(half, n, None);
    let mut array_b = Vec::new();
    let array = 3 * n as i32;
    let ids: Vec<i32> = (0..n).map(|i| 3 * i as i32 + 2).collect();
    task(
        &mut array_b,
        array,
        s.id("loom/array/make").unwrap(),
        b"",
        &ids,
    );
    let mut tail_b = Vec::new();
    command(&mut tail_b, worker_command::Type::Send, array, |c| {
        c.address = Some("!:1".to_owned())
    });
    for &id in &ids {
        command(&mut tail_b, worker_command::Type::Remove, id, |_| {});
    }
    let tasks = 3 * n + 1;
    for _ in 0..reps {
        let base = std::env::temp_dir().join(format!("loom-worker-core-{}", std::process::id()));
        let mut a = worker(&base.join("a"), 1);
        let mut b = worker(&base.join("b"), 2);
        let t0 = Instant::now();
        let bytes = run_once(n, &mut a, &mut b, &cmds_a, &cmds_b, &array_b, &tail_b);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        drop((a, b));
        let _ = std::fs::remove_dir_all(&base);
        println!(
            "{{\"n\":{n},\"tasks\":{tasks},\"wall_ms\":{ms:.1},\"ns_per_task\":{:.1},\"result_stream_bytes\":{bytes}}}",
            ms * 1e6 / tasks as f64
        );
    }
}
