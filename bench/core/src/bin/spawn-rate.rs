//! The machine's spawn rate: the ceiling of the W4 workloads (issue 26).
//!
//!     cargo run --release -p loom-bench-core --bin spawn-rate -- --program true|cat --n 1000 --threads 2
//!
//! Runs N programs in THREADS loops at once, each spawning with `std::process::Command`
//! (`posix_spawn`, what the worker uses) and waiting: `/bin/true`, or `cat` reading a line from a
//! pipe with its output to /dev/null, as W4 runs them. Prints one JSON object:
//! `{"program", "n", "threads", "seconds", "per_s"}`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |k: &str, d: &str| -> String {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| d.to_owned())
    };
    let program = opt("--program", "true");
    let n: usize = opt("--n", "1000").parse().expect("--n: a number");
    let threads: usize = opt("--threads", "2").parse().expect("--threads: a number");
    assert!(
        program == "true" || program == "cat",
        "--program: true or cat"
    );
    let program = program.as_str();
    let path = if program == "true" {
        "/bin/true"
    } else {
        "cat"
    };
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let count = n / threads + usize::from(t < n % threads);
            s.spawn(move || {
                for i in 0..count {
                    let mut cmd = Command::new(path);
                    cmd.stdout(Stdio::null()).stderr(Stdio::null());
                    if program == "cat" {
                        let (reader, mut writer) = std::io::pipe().expect("pipe");
                        writer
                            .write_all(format!("line {i}\n").as_bytes())
                            .expect("write");
                        drop(writer);
                        cmd.stdin(reader);
                    } else {
                        cmd.stdin(Stdio::null());
                    }
                    let status = cmd.spawn().expect("spawn").wait().expect("wait");
                    assert!(status.success(), "{path} failed");
                }
            });
        }
    });
    let seconds = t0.elapsed().as_secs_f64();
    println!(
        "{{\"program\": \"{program}\", \"n\": {n}, \"threads\": {threads}, \"seconds\": {seconds}, \"per_s\": {}}}",
        n as f64 / seconds
    );
}
