//! `loom/run/run` tasks kept in Rust (issue #26): once the worker turned it on
//! (`WorkerCore.runPrograms`), the core's program tasks never reach JavaScript. Their config is
//! decoded and their inputs mapped here; each program is prepared, spawned, awaited and
//! collected on a runner thread (`process.rs`), which then hands the outcome to the core itself
//! (result stored, `FINISHED`/`FAILED` framed) and runs the next program the core starts on the
//! freed cpu at once. The core's output (the frames for the server, anything else to do) waits
//! in a queue; the first output of a batch wakes the JS thread once (a thread-safe function),
//! which writes the whole batch: one crossing per batch of programs, however many ended
//! meanwhile, and none between a program and the next.
//!
//! Failure messages are the guide's (`Program terminated with status N`, `... by signal NAME`,
//! `Output 'x' error: ...`, each followed by the end of the program's stderr); the server adds the
//! task's id and label.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use loom_core::proto::run::Run;
use loom_core::worker::{push_send, JsInput, JsResult, JsTask, WorkerOutput};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use prost::Message;

use crate::process::{expect_program, forget_program, runners, Collected, Ended, Program, Source};
use crate::run_dir;
use crate::worker::{Shared, WorkerEffects};

/// The task type run here.
pub const RUN_TASK_TYPE: &str = "loom/run/run";

/// The signal Slurm sends a job step before its time limit (see `allocator/slurm.ts`).
const SIGUSR1: i32 = libc::SIGUSR1;

/// How long the `FINISHED` of a program may wait for those of the next ones when its runner
/// thread goes on with another program at once: they then reach the JS thread (and the server)
/// in one batch, one wake-up of the JS thread, one write and one read of the server connection
/// for several programs instead of each (issue #26: the JS thread's ~100 µs per wake-up was the
/// largest share of the worker's CPU per short program). A program's result is published in the
/// core at once: only the server hears of it up to this much later.
const FINISHED_BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// How long the verdict on a program killed by SIGUSR1 waits in a cluster job: the worker's own
/// stop signal may be handled just after the program's exit, and then the task goes back to the
/// server instead of failing.
const STOP_SIGNAL_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The JS callback that receives the effects of a batch of ended programs.
pub(crate) type Wake = ThreadsafeFunction<(), (), WorkerEffects, napi::Status, false, true>;

/// Core output waiting for the JS thread.
#[derive(Default)]
struct Pending {
    out: WorkerOutput,
    /// The JS thread was woken for it (and takes all of it).
    woken: bool,
    /// When its oldest part came, while held back (see [`FINISHED_BATCH_WINDOW`]).
    since: Option<std::time::Instant>,
}

fn is_empty(out: &WorkerOutput) -> bool {
    out.to_server.is_empty()
        && out.sends.is_empty()
        && out.js_tasks.is_empty()
        && out.native_calls.is_empty()
        && out.logs.is_empty()
        && out.canceled.is_empty()
}

/// Program tasks of one worker core: where they run, and the core's output the runner threads
/// produced that waits for the JS thread.
pub(crate) struct ProgramHost {
    /// The core (the host lives inside it: a weak reference, no cycle).
    shared: Weak<Shared>,
    /// `<work dir>/run`: run directories are taken from the ones reused under it.
    run_root: PathBuf,
    /// Pin programs: slot `i` of a task runs on CPU `pin[i]` (inherited from its runner thread,
    /// bound to them before the spawn, `spawn.rs`; the worker's CPUs, `cpu_claim.rs`). None: not
    /// pinned.
    pin: Option<Vec<u32>>,
    /// The worker runs in a cluster job: a program killed by SIGUSR1 is reported after
    /// [`STOP_SIGNAL_GRACE`].
    job: bool,
    /// The worker stops: no program starts any more, no outcome is reported.
    stopped: AtomicBool,
    /// Output of the core not yet handed to JS (FINISHED frames, logs, other tasks to run).
    pending: Mutex<Pending>,
    /// Wakes the JS thread for a batch (set once, right after creation).
    wake: std::sync::OnceLock<Wake>,
}

impl ProgramHost {
    pub(crate) fn new(
        shared: Weak<Shared>,
        work_dir: &Path,
        pin: Option<Vec<u32>>,
        job: bool,
    ) -> ProgramHost {
        ProgramHost {
            shared,
            run_root: work_dir.join("run"),
            pin,
            job,
            stopped: AtomicBool::new(false),
            pending: Mutex::new(Pending::default()),
            wake: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn set_wake(&self, wake: Wake) {
        let _ = self.wake.set(wake);
    }

    /// The worker stops: programs not started yet never start, outcomes are dropped.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Starts program task `task` on a runner thread of its own. Its program counts as
    /// starting from now on (`expect_program`), so a cancel before the spawn is not lost.
    pub(crate) fn start(host: &Arc<ProgramHost>, task: JsTask) {
        expect_program(task.id as u32);
        let on_thread = host.clone();
        let id = task.id;
        let submitted = runners().submit(Box::new(move || {
            on_thread.run_from(task);
            runners().idle();
        }));
        if let Err(e) = submitted {
            forget_program(id as u32);
            host.complete(id, Err(format!("cannot start a runner thread: {e}")));
        }
    }

    /// On a runner thread: runs `task`'s program, hands its outcome to the core, and goes on
    /// with the next program the core starts then (the cpu it freed), without a detour through
    /// the JS thread. The output held back for a batch (see [`FINISHED_BATCH_WINDOW`]) is
    /// handed over by its deadline, even while the next program still runs.
    fn run_from(self: &Arc<Self>, mut task: JsTask) {
        let mut flush_by = None;
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                forget_program(task.id as u32);
                return;
            }
            let flush = || self.flush();
            let outcome = prepare(&task, &self.run_root, self.pin.as_deref())
                .and_then(|p| p.run_flushing(flush_by.map(|d| (d, &flush as &dyn Fn()))));
            forget_program(task.id as u32);
            if self.job && matches!(&outcome, Ok(e) if e.signal == Some(SIGUSR1)) {
                self.flush();
                std::thread::sleep(STOP_SIGNAL_GRACE);
            }
            match self.complete(task.id, outcome.and_then(verdict)) {
                (Some(next), deadline) => {
                    task = next;
                    flush_by = deadline;
                }
                (None, _) => {
                    run_dir::clean_released();
                    return;
                }
            }
        }
    }

    /// Hands task `id`'s outcome to the core. Program tasks this starts run on other runner
    /// threads, but the first one, which is returned for the calling thread to run; the rest
    /// of the core's output waits for the JS thread, woken by the first output of a batch,
    /// or held back until the returned deadline when it is only `FINISHED` frames and this
    /// thread runs another program.
    fn complete(
        self: &Arc<Self>,
        id: i32,
        outcome: Result<(JsResult, PathBuf), String>,
    ) -> (Option<JsTask>, Option<std::time::Instant>) {
        if self.stopped.load(Ordering::SeqCst) {
            if let Ok((_, dir)) = outcome {
                run_dir::release(dir);
            }
            return (None, None);
        }
        let Some(shared) = self.shared.upgrade() else {
            return (None, None);
        };
        let mut out = {
            let mut core = shared.lock();
            match outcome {
                Ok((result, dir)) => {
                    // The core moves output files out of the directory right here.
                    core.finish_js_task(id, result);
                    // Emptied once the batch is handed over (`wake`), or when this runner stops.
                    run_dir::release_in_batch(dir);
                }
                Err(message) => core.fail_task(id, message.as_bytes()),
            }
            let out = core.take_output();
            // Counted as starting before the core's lock is let go: the JS thread may take it
            // next to cancel one of them.
            for t in out.js_tasks.iter().filter(|t| t.task_type == RUN_TASK_TYPE) {
                expect_program(t.id as u32);
            }
            out
        };
        let mut next = None;
        let mut others = Vec::new();
        for t in std::mem::take(&mut out.js_tasks) {
            if t.task_type != RUN_TASK_TYPE {
                others.push(t);
            } else if next.is_none() {
                next = Some(t);
            } else {
                ProgramHost::start(self, t);
            }
        }
        out.js_tasks = others;
        let deadline = self.post(out, next.is_some());
        (next, deadline)
    }

    /// Queues core output for the JS thread; the first of a batch wakes it. `hold`: the caller
    /// goes on with another program, and output of only `FINISHED` frames may wait for more
    /// (see [`FINISHED_BATCH_WINDOW`]); then returns the deadline by which the caller must
    /// [`ProgramHost::flush`].
    fn post(&self, out: WorkerOutput, hold: bool) -> Option<std::time::Instant> {
        if is_empty(&out) {
            return None;
        }
        let hold = hold
            && out.sends.is_empty()
            && out.js_tasks.is_empty()
            && out.native_calls.is_empty()
            && out.logs.is_empty()
            && out.canceled.is_empty();
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let p = &mut *p;
            append_output(&mut p.out, out);
            if p.woken {
                return None; // the JS thread takes it with the rest
            }
            if hold {
                let now = std::time::Instant::now();
                let deadline = *p.since.get_or_insert(now) + FINISHED_BATCH_WINDOW;
                if now < deadline {
                    return Some(deadline);
                }
            }
            p.woken = true;
        }
        self.wake();
        None
    }

    /// Wakes the JS thread for the output held back, if any (a deadline of [`ProgramHost::post`]).
    fn flush(&self) {
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.woken || is_empty(&p.out) {
                return;
            }
            p.woken = true;
        }
        self.wake();
    }

    /// Wakes the JS thread for a batch, and the run directories' cleaner for the batch's
    /// directories (`run_dir::release_in_batch`).
    fn wake(&self) {
        if let Some(wake) = self.wake.get() {
            wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
        run_dir::clean_released();
    }

    /// On the JS thread: the effects of the output the runner threads left.
    pub(crate) fn deliver(shared: &Weak<Shared>, env: &napi::Env) -> napi::Result<WorkerEffects> {
        let Some(shared) = shared.upgrade() else {
            return Ok(WorkerEffects::default());
        };
        let Some(host) = shared.programs.get() else {
            return Ok(WorkerEffects::default());
        };
        let out = {
            let mut p = host.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.woken = false;
            p.since = None;
            std::mem::take(&mut p.out)
        };
        crate::worker::convert(env, &shared, out)
    }
}

/// Appends core output `out` to `into` (output waiting for the JS thread). Sends to one
/// address are merged into one stream, but a send kept `alone` (one object in a data file,
/// which may cross to a peer on this host as a hard link, `peer-link`) stays a send of its own.
fn append_output(into: &mut WorkerOutput, out: WorkerOutput) {
    into.to_server.extend_from_slice(&out.to_server);
    for s in out.sends {
        if s.alone {
            into.sends.push(s);
        } else {
            push_send(&mut into.sends, &s.ids, &s.address, s.parts);
        }
    }
    into.js_tasks.extend(out.js_tasks);
    into.native_calls.extend(out.native_calls);
    into.logs.extend(out.logs);
    into.canceled.extend(out.canceled);
}

/// The program of a `run` task: its config decoded, its inputs mapped (spec 7).
fn prepare(task: &JsTask, run_root: &Path, pin: Option<&[u32]>) -> Result<Program, String> {
    let cfg = Run::decode(task.config.as_slice())
        .map_err(|e| format!("invalid run configuration: {e}"))?;
    if cfg.args.is_empty() {
        return Err("No arguments provided".into());
    }
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut files = Vec::new();
    let mut stdin = None;
    for (i, name) in cfg.map_inputs.iter().enumerate() {
        let input = task
            .inputs
            .get(i)
            .ok_or_else(|| format!("input {i} ('{name}') is missing"))?;
        if name.starts_with('$') {
            let text = String::from_utf8_lossy(&content_of(input)?).into_owned();
            vars.push((name.clone(), text));
        } else if name == "+in" {
            if !is_data_object(input) {
                return Err(format!(
                    "input of type {} is not a D-Object and cannot be the standard input",
                    input.type_name
                ));
            }
            stdin = Some(source_of(input));
        } else {
            check_name(name)?;
            if !is_data_object(input) {
                return Err(format!(
                    "input of type {} is not a D-Object and cannot be mapped to a file",
                    input.type_name
                ));
            }
            files.push((name.clone(), source_of(input)));
        }
    }
    for o in &cfg.map_outputs {
        if o != "+out" {
            check_name(o)?;
        }
    }
    let mut argv: Vec<String> = Vec::with_capacity(cfg.args.len());
    for a in cfg.args {
        match vars.iter().find(|(k, _)| *k == a) {
            Some((_, v)) => argv.push(v.clone()),
            None => argv.push(a),
        }
    }
    let cpus = match pin {
        Some(cpus) => pinned_cpus(&argv[0], &task.cpu_slots, cpus)?,
        None => Vec::new(),
    };
    Ok(Program {
        argv,
        root: run_root.to_path_buf(),
        files,
        stdin,
        outputs: cfg.map_outputs,
        token: task.id as u32,
        cpus,
    })
}

/// The CPUs of CPU slots `slots` on a worker whose slot `i` is CPU `cpus[i]`; a slot past the
/// worker's CPUs (more `--cpus` than CPUs it may use) fails the task, saying so.
fn pinned_cpus(program: &str, slots: &[u32], cpus: &[u32]) -> Result<Vec<u32>, String> {
    slots
        .iter()
        .map(|&s| {
            cpus.get(s as usize).copied().ok_or_else(|| {
                format!(
                    "cannot pin '{program}': its CPU slot {s} has no CPU (this worker pins programs \
                     to CPUs {}: start it with at most as many --cpus as CPUs it may use, or with \
                     --nopin)",
                    crate::spawn::cpu_list(cpus)
                )
            })
        })
        .collect()
}

fn is_data_object(input: &JsInput) -> bool {
    input.type_name == "loom/data" || input.type_name == "loom/file"
}

/// Where a D-Object input's content is: its file, or its bytes.
fn source_of(input: &JsInput) -> Source {
    match (&input.path, &input.bytes) {
        (Some(p), _) => Source::Path(p.into()),
        (None, b) => Source::Bytes(b.clone().unwrap_or_default()),
    }
}

/// The content of an input mapped to a variable.
fn content_of(input: &JsInput) -> Result<Vec<u8>, String> {
    if let Some(b) = &input.bytes {
        return Ok(b.clone());
    }
    if let Some(p) = &input.path {
        return std::fs::read(p).map_err(|e| {
            format!(
                "cannot read input file {p}: {}",
                loom_core::data::strerror(&e)
            )
        });
    }
    if input.type_name == "loom/data" {
        return Ok(Vec::new());
    }
    Err(format!(
        "input of type {} is not a D-Object",
        input.type_name
    ))
}

/// Rejects a mapped name that would escape the run directory (the rule of
/// `protocol/run-names.ts`, which the client checks first).
fn check_name(name: &str) -> Result<(), String> {
    let mut depth: i64 = 0;
    let mut escapes = false;
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                escapes |= depth < 0;
            }
            _ => depth += 1,
        }
    }
    if name.is_empty() || name.starts_with('/') || escapes || name.contains('\0') {
        return Err(format!(
            "Invalid file name '{name}' for run: it must be a relative path inside the run directory"
        ));
    }
    Ok(())
}

/// The task's result, or its failure message, from how its program ended.
fn verdict(e: Ended) -> Result<(JsResult, PathBuf), String> {
    let tail = || e.stderr_tail.clone().unwrap_or_default();
    let failure = if let Some(s) = e.signal {
        Some(format!(
            "Program terminated by signal {}\nStderr:\n{}",
            signal_name(s),
            tail()
        ))
    } else if e.code != Some(0) {
        let code = e.code.map_or("null".to_owned(), |c| c.to_string());
        Some(format!(
            "Program terminated with status {code}\nStderr:\n{}",
            tail()
        ))
    } else {
        e.output_error
            .as_ref()
            .map(|o| format!("{o}\nStderr:\n{}", tail()))
    };
    if let Some(message) = failure {
        run_dir::release(e.dir);
        return Err(message);
    }
    let mut items: Vec<JsResult> = e
        .outputs
        .into_iter()
        .map(|o| match o {
            Collected::Bytes(b) => JsResult::Plain(b),
            Collected::Path(p) => JsResult::PlainFile(p),
        })
        .collect();
    let result = if items.len() == 1 {
        items.pop().expect("one item")
    } else {
        JsResult::Array(items)
    };
    Ok((result, e.dir))
}

/// The name of signal `n` as Node prints it (`SIGKILL`), or `signal N`.
fn signal_name(n: i32) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(n - 1)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("signal {n}"), |s| (*s).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_run_directory_are_refused() {
        for ok in ["a", "a/b", "./a", "a/../b", "a/./b/..", "+err"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../a",
            "a/../..",
            "a/../../b",
            "a\0b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_send_kept_alone_stays_alone_when_output_is_appended() {
        use loom_core::worker::Send;
        let send = |id: i32, alone: bool| Send {
            ids: vec![id],
            address: "127.0.0.1:9000".into(),
            parts: Vec::new(),
            alone,
        };
        let mut into = WorkerOutput::default();
        into.sends.push(send(1, false));
        let out = WorkerOutput {
            sends: vec![send(2, true), send(3, false), send(4, true)],
            ..WorkerOutput::default()
        };
        append_output(&mut into, out);
        let sends: Vec<(Vec<i32>, bool)> = into
            .sends
            .iter()
            .map(|s| (s.ids.clone(), s.alone))
            .collect();
        assert_eq!(
            sends,
            [(vec![1, 3], false), (vec![2], true), (vec![4], true)],
            "the linked ones alone, the rest merged"
        );
    }

    #[test]
    fn signals_are_named_as_node_names_them() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(libc::SIGUSR1), "SIGUSR1");
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(64), "signal 64");
    }
}
