//! Server-core microbenchmark: encoded plans go through the real `Server` path (Register of one
//! simulated 2-cpu worker and a client, PLAN bytes in, every TASK answered with FINISHED frames
//! fed back in batches, until TASK_FINISHED of the result, then RELEASE).
//!
//! Usage: `loom-bench-core [--quick] [--json] [--chunked] [--shape KEY] [--n N] [--reps R]`
//! - `--quick`: small sizes (1k, 10k);
//! - `--json`: one JSON object instead of the table;
//! - `--chunked`: deliver the plan frame in 64 KiB socket-sized chunks instead of one chunk;
//! - `--shape independent|map_reduce|chain|tree`, `--n N`: run only that (for profiling);
//! - `--reps R`: runs per configuration (default 3: min/median/max);
//! - `--workers 2`: two simulated workers instead of one (the server then weighs load and
//!   locality per task, and sends inputs between them).
//!
//! Memory per task = (peak live heap bytes during the run - live bytes before the plan is fed)
//! / tasks, counted by a counting global allocator. The encoded plan itself (owned by the
//! transport) is in the baseline.
//!
//! At 1M tasks a sizeable part of the time is the kernel's first-touch page faults on fresh
//! memory (glibc returns large freed blocks to the OS; at 10k the heap is reused). To compare
//! with a retained heap, run with
//! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use loom_core::frame::push_frame;
use loom_core::server::Server;
use loom_core::symbols::Symbols;

mod simulated;
use simulated::{
    connect, connect_second_worker, push_finished, read_varint, varint, CLIENT, WORKER, WORKER2,
};

struct Counting;
static CUR: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let c = CUR.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(c, Ordering::Relaxed);
        }
        p
    }
    // Forwarded, not left to the default (`alloc` and a memset): the addon's `vec![0; n]`
    // gets calloc's zero pages in production, so the bench must not pay a memset for them.
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            let c = CUR.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(c, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by `alloc` with layout `l`.
        unsafe { System.dealloc(p, l) };
        CUR.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer and layout.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let c = CUR.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(c, Ordering::Relaxed);
            } else {
                CUR.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Plan encoding (hand-written, unpacked inputs like the Python client)

struct PlanBuf {
    tasks: Vec<u8>,
    n: usize,
    tmp: Vec<u8>,
}

impl PlanBuf {
    fn new() -> Self {
        PlanBuf {
            tasks: Vec::new(),
            n: 0,
            tmp: Vec::new(),
        }
    }
    /// Adds a task, returns its id.
    fn task(&mut self, ty: i32, cfg: &[u8], inputs: &[i32], result: bool) -> i32 {
        let t = &mut self.tmp;
        t.clear();
        t.push(0x08);
        varint(t, ty as u64);
        t.push(0x12);
        varint(t, cfg.len() as u64);
        t.extend_from_slice(cfg);
        for &i in inputs {
            t.push(0x18);
            varint(t, i as u64);
        }
        t.push(0x30);
        t.push(result as u8);
        self.tasks.push(0x12);
        varint(&mut self.tasks, t.len() as u64);
        self.tasks.extend_from_slice(t);
        self.n += 1;
        self.n as i32 - 1
    }
    /// The framed ClientRequest{PLAN, plan{tasks, id_base: 0}, load_checkpoints: false}.
    fn finish(self) -> (Vec<u8>, usize) {
        let mut plan = self.tasks;
        plan.extend_from_slice(&[0x20, 0x00]);
        let mut req = vec![0x08, 0x01, 0x12];
        varint(&mut req, plan.len() as u64);
        let mut out = Vec::with_capacity(8 + req.len() + plan.len() + 2);
        let total = req.len() + plan.len() + 2;
        out.extend_from_slice(&(total as u64).to_le_bytes());
        out.extend_from_slice(&req);
        out.extend_from_slice(&plan);
        out.extend_from_slice(&[0x20, 0x00]);
        (out, self.n)
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Independent,
    MapReduce,
    Chain,
    Tree,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Independent => "independent (W1)",
            Shape::MapReduce => "map-reduce",
            Shape::Chain => "chain",
            Shape::Tree => "2-level tree",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Shape::Independent => "independent",
            Shape::MapReduce => "map_reduce",
            Shape::Chain => "chain",
            Shape::Tree => "tree",
        }
    }
}

fn build(shape: Shape, n: usize, s: &Symbols) -> (Vec<u8>, usize) {
    let sym = |x: &str| s.id(x).unwrap();
    let (cst, merge, arr, size) = (
        sym("loom/data/const"),
        sym("loom/data/merge"),
        sym("loom/array/make"),
        sym("loom/base/size"),
    );
    let mut p = PlanBuf::new();
    match shape {
        Shape::Independent => {
            let mut merges = Vec::with_capacity(n);
            for i in 0..n {
                let a = p.task(cst, format!("{i}").as_bytes(), &[], false);
                let b = p.task(cst, b"x", &[], false);
                merges.push(p.task(merge, b"", &[a, b], false));
            }
            p.task(arr, b"", &merges, true);
        }
        Shape::MapReduce => {
            let src = p.task(cst, b"data", &[], false);
            let mapped: Vec<i32> = (0..n).map(|_| p.task(size, b"", &[src], false)).collect();
            p.task(arr, b"", &mapped, true);
        }
        Shape::Chain => {
            let mut prev = p.task(cst, b"c", &[], false);
            for i in 0..n {
                prev = p.task(merge, b"", &[prev], i + 1 == n);
            }
        }
        Shape::Tree => {
            let k = ((n as f64).sqrt() as usize).max(1);
            let mut level1 = Vec::new();
            let mut leaves = Vec::with_capacity(k);
            for i in 0..n {
                leaves.push(p.task(cst, b"l", &[], false));
                if leaves.len() == k || i + 1 == n {
                    level1.push(p.task(merge, b"", &leaves, false));
                    leaves.clear();
                }
            }
            p.task(arr, b"", &level1, true);
        }
    }
    p.finish()
}

// ---------------------------------------------------------------------------------------------
// Driving the server

struct Run {
    secs: f64,
    peak_bytes: usize,
}

#[inline(never)]
fn run_once(plan: &[u8], chunked: bool, two_workers: bool) -> Run {
    let mut s = Server::new(9999);
    connect(&mut s, &[]);
    if two_workers {
        connect_second_worker(&mut s);
    }
    // What each worker answers, by worker (WORKER, WORKER2).
    let mut responses: [Vec<u8>; 2] = [Vec::with_capacity(1 << 20), Vec::new()];
    let base = CUR.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t0 = Instant::now();
    if chunked {
        for c in plan.chunks(64 * 1024) {
            s.on_data(CLIENT, c);
        }
    } else {
        s.on_data(CLIENT, plan);
    }
    let mut result: Option<u64> = None;
    loop {
        let out = s.take_output();
        responses.iter_mut().for_each(Vec::clear);
        for (conn, buf) in &out.writes {
            let mut p = 0;
            while p + 8 <= buf.len() {
                let len = u64::from_le_bytes(buf[p..p + 8].try_into().unwrap()) as usize;
                let f = &buf[p + 8..p + 8 + len];
                p += 8 + len;
                if *conn == WORKER || *conn == WORKER2 {
                    if f[0] == 0x08 && f[1] == 0x01 {
                        let mut q = 3;
                        let id = read_varint(f, &mut q);
                        push_finished(&mut responses[(*conn == WORKER2) as usize], id, 8);
                    }
                } else if f[0] == 0x08 && f[1] == 0x02 {
                    let mut q = 3;
                    result = Some(read_varint(f, &mut q));
                }
            }
        }
        assert!(
            out.close.is_empty(),
            "server closed a connection: {:?}",
            out.logs
        );
        if responses.iter().all(Vec::is_empty) {
            break;
        }
        for (conn, r) in [WORKER, WORKER2].into_iter().zip(&responses) {
            if !r.is_empty() {
                s.on_data(conn, r);
            }
        }
    }
    let id = result.expect("the result finished") as i32;
    let mut rel = Vec::new();
    push_frame(
        &mut rel,
        &loom_core::proto::comm::ClientRequest {
            r#type: 3,
            id: Some(id),
            ..Default::default()
        },
    );
    s.on_data(CLIENT, &rel);
    let out = s.take_output();
    assert!(
        out.writes
            .iter()
            .any(|(c, _)| *c == WORKER || *c == WORKER2),
        "REMOVE of the result"
    );
    let secs = t0.elapsed().as_secs_f64();
    let peak_bytes = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    drop(s);
    Run { secs, peak_bytes }
}

struct Row {
    shape: Shape,
    n: usize,
    tasks: usize,
    rates: [f64; 3],
    median_secs: f64,
    bytes_per_task: f64,
}

/// The value after `name` in `args`.
fn arg_of_early(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().any(|a| a == "--json");
    let chunked = args.iter().any(|a| a == "--chunked");
    let two_workers = match arg_of_early(&args, "--workers").as_deref() {
        None | Some("1") => false,
        Some("2") => true,
        Some(v) => panic!("--workers 1|2, not {v}"),
    };
    let arg_of = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let reps: usize = arg_of("--reps")
        .map(|v| v.parse().expect("--reps R"))
        .unwrap_or(3)
        .max(1);
    let only_n: Option<Vec<usize>> = arg_of("--n").map(|v| vec![v.parse().expect("--n N")]);
    let sizes: &[usize] = match &only_n {
        Some(v) => v,
        None if quick => &[1_000, 10_000],
        None => &[10_000, 100_000, 1_000_000],
    };
    let symbols = Symbols::for_server();
    let mut shapes = vec![
        Shape::Independent,
        Shape::MapReduce,
        Shape::Chain,
        Shape::Tree,
    ];
    if let Some(k) = arg_of("--shape") {
        shapes.retain(|s| s.key() == k);
    }
    let mut rows = Vec::new();
    for &shape in &shapes {
        for &n in sizes.iter() {
            let (plan, tasks) = build(shape, n, &symbols);
            let mut runs: Vec<Run> = (0..reps)
                .map(|_| run_once(&plan, chunked, two_workers))
                .collect();
            runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
            let rates = [
                tasks as f64 / runs[reps - 1].secs,
                tasks as f64 / runs[reps / 2].secs,
                tasks as f64 / runs[0].secs,
            ];
            let peak = runs.iter().map(|r| r.peak_bytes).max().unwrap();
            rows.push(Row {
                shape,
                n,
                tasks,
                rates,
                median_secs: runs[reps / 2].secs,
                bytes_per_task: peak as f64 / tasks as f64,
            });
            if !json {
                eprintln!("  done {} N={n}", shape.name());
            }
        }
    }
    let ratio = |shape: Shape| -> f64 {
        let of = |n: usize| {
            rows.iter()
                .find(|r| r.shape.key() == shape.key() && r.n == n)
                .map(|r| r.median_secs / r.tasks as f64)
                .unwrap()
        };
        of(*sizes.last().unwrap()) / of(sizes[0])
    };
    if json {
        let mut s = String::from("{\"chunked\":");
        s.push_str(if chunked { "true" } else { "false" });
        s.push_str(",\"results\":[");
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(
                "{{\"shape\":\"{}\",\"n\":{},\"tasks\":{},\"tasks_per_s\":{{\"min\":{:.0},\"median\":{:.0},\"max\":{:.0}}},\"bytes_per_task\":{:.1}}}",
                r.shape.key(), r.n, r.tasks, r.rates[0], r.rates[1], r.rates[2], r.bytes_per_task
            ));
        }
        s.push_str("],\"cost_ratio_largest_to_smallest\":{");
        for (i, &shape) in shapes.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("\"{}\":{:.3}", shape.key(), ratio(shape)));
        }
        s.push_str("}}");
        println!("{s}");
    } else {
        println!(
            "{:<18} {:>9} {:>9} {:>12} {:>12} {:>12} {:>8}",
            "shape", "N", "tasks", "min t/s", "median t/s", "max t/s", "B/task"
        );
        for r in &rows {
            println!(
                "{:<18} {:>9} {:>9} {:>12.0} {:>12.0} {:>12.0} {:>8.1}",
                r.shape.name(),
                r.n,
                r.tasks,
                r.rates[0],
                r.rates[1],
                r.rates[2],
                r.bytes_per_task
            );
        }
        println!(
            "cost-per-task ratio N={} / N={} (median):",
            sizes.last().unwrap(),
            sizes[0]
        );
        for &shape in &shapes {
            println!("  {:<18} {:.3}", shape.name(), ratio(shape));
        }
    }
}
