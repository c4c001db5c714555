//! The machine's spawn rate: the ceiling of the W4 workloads (issue 26).
//!
//!     cargo run --release -p loom-bench-core --bin spawn-rate -- --program true|cat --n 1000 --threads 2 [--pin]
//!
//! Runs N programs in THREADS loops at once, each starting its program and waiting for it with
//! the cheapest spawn + wait the kernel offers, so that W4's share of it means "our
//! orchestration vs the bare mechanism": glibc's `posix_spawn` (a `clone` sharing the loop's
//! memory, the loop suspended until the exec, as the worker's own spawn) of an absolute path
//! resolved once before the loops (W4's `cat` is looked up in `PATH`, here not per program),
//! `waitpid`. `/bin/true` with its standard input from /dev/null, or `cat` reading a line from
//! a pipe; output and errors to /dev/null, opened once. Rust's `Command` paid more per program
//! (its own setup, the `PATH` search, a pipe to report exec errors): our pinned workers ran
//! programs faster than it did. `--pin`: each loop's thread (and so its programs) on a CPU of
//! its own, loop `t` on the `t`-th CPU this process may run on, as pinned workers put their
//! programs. Prints one JSON object: `{"program", "path", "mechanism", "n", "threads",
//! "pinned", "cpus", "seconds", "per_s"}` (`cpus`: the loops' CPUs, empty when not pinned).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

extern "C" {
    /// This process's environment, given to the programs (as W4's workers give theirs).
    static environ: *const *mut libc::c_char;
}

/// A failed system call `what` (`r`: its result, -1 with errno or the error number itself)
/// ends the probe: it measures nothing then.
fn check(what: &str, r: libc::c_int) {
    if r != 0 {
        let e = if r > 0 {
            std::io::Error::from_raw_os_error(r)
        } else {
            std::io::Error::last_os_error()
        };
        panic!("{what}: {e}");
    }
}

/// `program` as `execvp` finds it: the first executable `dir/program` of `PATH`.
fn resolve(program: &str) -> CString {
    if program.contains('/') {
        return CString::new(program).expect("a path without NUL");
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    for dir in path.as_bytes().split(|&c| c == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        let mut full = dir.to_vec();
        full.push(b'/');
        full.extend_from_slice(program.as_bytes());
        let full = CString::new(full).expect("a path without NUL");
        // SAFETY: access reads a NUL-terminated path we own.
        if unsafe { libc::access(full.as_ptr(), libc::X_OK) } == 0 {
            return full;
        }
    }
    panic!("{program}: not found in PATH");
}

/// The CPUs this process may run on, ascending (`sched_getaffinity`).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes only the set we own, of the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        check(
            "sched_getaffinity",
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Puts the calling thread (and the programs it starts after) on `cpu` alone.
fn pin_to(cpu: usize) {
    // SAFETY: sched_setaffinity reads a set we own, of the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        check(
            "sched_setaffinity",
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
        );
    }
}

/// One program: started by `posix_spawn` with `stdin` as its standard input and `null` as its
/// output and errors, then waited for; panics unless it exited 0.
fn spawn_wait(
    path: &CString,
    argv: &[*mut libc::c_char; 2],
    stdin: libc::c_int,
    null: libc::c_int,
) {
    // SAFETY: the file actions are initialised before use and destroyed after; posix_spawn
    // reads the path, argv and environment (NUL-terminated, alive for the call) and writes
    // only the pid; waitpid writes only the status.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        check(
            "posix_spawn_file_actions_init",
            libc::posix_spawn_file_actions_init(&mut actions),
        );
        for (from, to) in [(stdin, 0), (null, 1), (null, 2)] {
            check(
                "posix_spawn_file_actions_adddup2",
                libc::posix_spawn_file_actions_adddup2(&mut actions, from, to),
            );
        }
        let mut pid: libc::pid_t = 0;
        check(
            "posix_spawn",
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &actions,
                std::ptr::null(),
                argv.as_ptr(),
                environ,
            ),
        );
        libc::posix_spawn_file_actions_destroy(&mut actions);
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) != pid {
            let e = std::io::Error::last_os_error();
            assert!(e.kind() == std::io::ErrorKind::Interrupted, "waitpid: {e}");
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{path:?} failed: status {status:#x}"
        );
    }
}

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
    let pin = args.iter().any(|a| a == "--pin");
    assert!(
        program == "true" || program == "cat",
        "--program: true or cat"
    );
    assert!(threads > 0, "--threads: at least 1");
    // W4 runs `run("/bin/true")` and `run("cat")`.
    let path = resolve(if program == "true" {
        "/bin/true"
    } else {
        "cat"
    });
    let cpus: Vec<usize> = if pin {
        let allowed = allowed_cpus();
        (0..threads).map(|t| allowed[t % allowed.len()]).collect()
    } else {
        Vec::new()
    };
    // SAFETY: open reads a NUL-terminated path; the descriptor is ours until the end.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(null >= 0, "/dev/null: {}", std::io::Error::last_os_error());
    let is_cat = program == "cat";
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let count = n / threads + usize::from(t < n % threads);
            let (path, cpu) = (&path, cpus.get(t).copied());
            s.spawn(move || {
                if let Some(cpu) = cpu {
                    pin_to(cpu);
                }
                let argv = [path.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
                for i in 0..count {
                    if is_cat {
                        let mut fds = [0; 2];
                        let line = format!("line {i}\n");
                        // SAFETY: pipe2 writes two descriptors we then own; write reads the
                        // line (far below the pipe's capacity: it does not block); both are
                        // closed here after the program ended.
                        unsafe {
                            check("pipe2", libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC));
                            let w = libc::write(fds[1], line.as_ptr().cast(), line.len());
                            assert_eq!(w, line.len() as isize, "write to the pipe");
                            libc::close(fds[1]);
                            spawn_wait(path, &argv, fds[0], null);
                            libc::close(fds[0]);
                        }
                    } else {
                        spawn_wait(path, &argv, null, null);
                    }
                }
            });
        }
    });
    let seconds = t0.elapsed().as_secs_f64();
    let cpus = cpus
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "{{\"program\": \"{program}\", \"path\": {:?}, \"mechanism\": \"posix_spawn\", \"n\": {n}, \"threads\": {threads}, \"pinned\": {pin}, \"cpus\": [{cpus}], \"seconds\": {seconds}, \"per_s\": {}}}",
        path.to_string_lossy(),
        n as f64 / seconds
    );
}
