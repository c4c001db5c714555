//! Running the programs of `run` tasks. A program is started as `posix_spawn` does (no fork of
//! the worker's large address space, see `spawn.rs`), which makes starting it cheaper than
//! Node's `child_process`; each program is prepared, spawned, awaited and its outputs collected on a
//! runner thread of its own (kept for the next program), so the event loop and the addon's
//! thread pool stay free. Run directories are reused (`run_dir.rs`), standard input up to a
//! pipe's capacity goes through a pipe, and small outputs come back as bytes. Standard output is
//! the file `+out` of the run directory (programs see it there, as in the original), kept for
//! the next program and emptied after a program wrote it (see `run_dir.rs` for how, and why
//! not by the next program's open).
//!
//! Every program runs in a process group of its own, registered under a token (the task id)
//! until it ends, so the worker can signal it and everything it started: when its task is
//! canceled ([`kill_program`]) and when the worker stops ([`kill_all_programs`]); a reaper
//! process kills what is left if the worker itself is killed ([`start_reaper`]).

use crate::run_dir;
use crate::spawn::{self, SpawnSpec, SLOT};
use crate::ErrorCode;
use napi::bindgen_prelude::{Buffer, Object};
use napi::Env;
use napi_derive::napi;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
#[cfg(unix)]
use std::os::unix::process::CommandExt;
#[cfg(unix)]
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// A file to place in the run directory before the program starts.
#[napi(object)]
pub struct ProgramFile {
    /// Its name inside the run directory (checked by the caller to stay inside; folders in
    /// it are created).
    pub name: String,
    /// A file to link to (the input's data file, or the user's file)...
    pub path: Option<String>,
    /// ... or the bytes to write.
    pub bytes: Option<Buffer>,
}

/// What to run, and where its inputs and outputs go.
#[napi(object)]
pub struct ProgramSpec {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// `<work dir>/run`: the run directory is taken from the ones reused under it.
    pub run_root: String,
    /// Files to place in the run directory.
    pub files: Vec<ProgramFile>,
    /// Standard input as bytes, fed through a pipe (written to a file `+in` when the pipe cannot
    /// take them all at once)...
    pub stdin_bytes: Option<Buffer>,
    /// ... or from this file; neither: `/dev/null`.
    pub stdin_path: Option<String>,
    /// The outputs to collect, in order: `+out` is standard output (without it, standard
    /// output goes to `/dev/null`), any other name a file the program writes.
    pub outputs: Vec<String>,
    /// The token to stop it by ([`kill_program`]): the task id.
    pub token: u32,
}

/// One collected output: small ones as bytes, larger ones as the file to move into the data
/// directory.
#[napi(object)]
pub struct ProgramOutput {
    /// The content, up to 64 KiB...
    pub bytes: Option<Buffer>,
    /// ... or the path of the regular file holding it (inside the run directory).
    pub path: Option<String>,
}

/// How a program ended and what it left.
#[napi(object)]
pub struct ProgramOutcome {
    /// Its run directory: call `releaseRunDir(dir)` once the outputs given by path were taken.
    pub dir: String,
    /// Exit status, when it exited.
    pub code: Option<i32>,
    /// Number of the signal that killed it, when it was killed.
    pub signal: Option<i32>,
    /// Its outputs, when it exited with status 0 and every output is a regular file.
    pub outputs: Vec<ProgramOutput>,
    /// `Output '<name>' error: <reason>` for the first output that is missing or not a
    /// regular file (exit status 0 only).
    pub output_error: Option<String>,
    /// The end of its standard error (see [`STDERR_TAIL`]), when it failed (or an output did).
    pub stderr_tail: Option<String>,
}

/// Most stderr bytes quoted in a failure message.
pub const STDERR_TAIL: u64 = 64 * 1024;

/// Outputs up to this size come back as bytes (the core keeps objects this small in memory);
/// larger ones are moved into the data directory.
const OUTPUT_IN_MEMORY: u64 = 64 * 1024;

/// The signal that killed the program; Windows has no signals.
#[cfg(unix)]
fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    status.signal()
}
#[cfg(not(unix))]
fn exit_signal(_status: &std::process::ExitStatus) -> Option<i32> {
    None
}

/// Opens `+out`/`+err` for the program, never through a symlink (an input mapped to that name
/// is a link to a data file, which must not be truncated). `truncate`: only when an input was
/// placed there; otherwise the file is new or kept and emptied (`run_dir.rs`), and truncating it
/// here would make ext4 flush what the program writes to disk at close.
fn open_out(path: &Path, truncate: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// A program known by its token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Registered {
    /// Handed to a runner thread, not spawned yet; a stop meanwhile leaves its signal here (the
    /// program then never starts).
    Starting(Option<i32>),
    /// Running: its process (group) id.
    Running(i32),
}

/// Programs by token.
fn programs() -> &'static Mutex<HashMap<u32, Registered>> {
    static P: OnceLock<Mutex<HashMap<u32, Registered>>> = OnceLock::new();
    P.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The program of `token` is about to start: a [`kill_program`] from now on is not lost, even
/// before the spawn. Call where its task is handed to a runner thread; [`forget_program`] once
/// it ran (or never will).
pub(crate) fn expect_program(token: u32) {
    programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(token)
        .or_insert(Registered::Starting(None));
}

/// Forgets `token` if its program never started (it ended before the spawn, or was stopped).
pub(crate) fn forget_program(token: u32) {
    let mut map = programs().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(Registered::Starting(_)) = map.get(&token) {
        map.remove(&token);
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// The reaper: a small `sh` process that kills the program groups still running when the worker
/// dies, even by SIGKILL, which leaves it no chance to stop its programs itself. (Asking the
/// kernel instead, with PR_SET_PDEATHSIG, forbids posix_spawn: 35-40% fewer programs/s measured.)
///
/// It learns of the worker's death by the end of its stdin (a pipe only the worker writes to),
/// and of the running groups by its stdout: a file shared with the worker (not a pipe: telling a
/// process of every program that starts and ends cost a wake-up of the reaper, its byte-by-byte
/// `read`s and the worker's writes for each program), with one slot per runner thread holding
/// the group of its running program, written in place (`pwrite`) by the program itself before
/// it execs (`spawn.rs`: never a running program the slots miss) and cleared once it exited,
/// before it is reaped.
struct Reaper {
    /// Never written: its end (the worker's death) wakes the reaper.
    _alive: std::process::ChildStdin,
    /// The slots, each [`SLOT`] bytes: a group id right-aligned in spaces and a newline, or
    /// only spaces (no program).
    slots: File,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

/// Waits for the end of stdin, then reads the slots (stdout, shared with the worker, which
/// only writes it in place: its offset stays 0) and kills every group in them.
const REAPER_SCRIPT: &str = r#"while read -r _; do :; done
while read -r g; do
  case "$g" in ''|*[!0-9]*) ;; *) kill -KILL "-$g" 2>/dev/null ;; esac
done <&1"#;

/// This runner thread's slot (its index), taken at its first program.
fn reaper_slot() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    thread_local! {
        static SLOT_INDEX: u64 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    SLOT_INDEX.with(|i| *i)
}

/// This runner thread's reaper slot, for its program to write at its start (`spawn.rs`); none
/// without a reaper.
fn reaper_target() -> Option<crate::spawn::SlotTarget> {
    use std::os::fd::AsRawFd;
    let r = REAPER.get()?;
    Some(crate::spawn::SlotTarget {
        fd: r.slots.as_raw_fd(),
        offset: reaper_slot() * SLOT as u64,
    })
}

/// Empties this runner thread's reaper slot (its program ended).
fn reaper_clear() {
    use std::os::unix::fs::FileExt;
    let Some(r) = REAPER.get() else { return };
    // A failed write leaves a stale group, which the reaper's kill finds gone.
    let _ = r
        .slots
        .write_at(&crate::spawn::slot_bytes(None), reaper_slot() * SLOT as u64);
}

/// A file without a name for the reaper's slots: a memfd on Linux, else an unlinked temporary
/// file.
fn slot_file() -> std::io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create with a NUL-terminated name; the descriptor is ours on success.
        let fd = unsafe { libc::memfd_create(c"hyperloom-reaper".as_ptr(), libc::MFD_CLOEXEC) };
        if fd >= 0 {
            // SAFETY: a fresh descriptor nothing else owns.
            return Ok(unsafe { File::from_raw_fd(fd) });
        }
    }
    let path = std::env::temp_dir().join(format!(
        "hyperloom-reaper-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// Starts the reaper (see [`Reaper`]); once per process, later calls do nothing. Programs
/// started before it are not covered.
#[napi]
pub fn start_reaper() -> napi::Result<()> {
    if REAPER.get().is_some() {
        return Ok(());
    }
    let fail = |e: std::io::Error| {
        napi::Error::from_reason(format!("cannot start the program reaper: {e}"))
    };
    let slots = slot_file().map_err(fail)?;
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(REAPER_SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(slots.try_clone().map_err(fail)?))
        .stderr(Stdio::null())
        // Not in the worker's group: a signal to the worker's group does not reach it first.
        .process_group(0)
        .spawn()
        .map_err(fail)?;
    let alive = child.stdin.expect("stdin is piped");
    let _ = REAPER.set(Reaper {
        _alive: alive,
        slots,
    });
    Ok(())
}

/// Sends `signal` (e.g. 15 = SIGTERM, 9 = SIGKILL) to the program registered under `token`
/// and to every process in its group; a program about to start never starts. Returns false
/// when no such program runs (it ended).
#[napi]
pub fn kill_program(token: u32, signal: i32) -> bool {
    let mut map = programs().lock().unwrap_or_else(|e| e.into_inner());
    match map.get_mut(&token) {
        Some(Registered::Running(pgid)) => {
            signal_group(*pgid, signal);
            true
        }
        Some(Registered::Starting(stop)) => {
            *stop = Some(signal);
            true
        }
        None => false,
    }
}

/// Sends `signal` to every running program (and its group), and stops those about to start;
/// returns how many there were.
#[napi]
pub fn kill_all_programs(signal: i32) -> u32 {
    let mut map = programs().lock().unwrap_or_else(|e| e.into_inner());
    for r in map.values_mut() {
        match r {
            Registered::Running(pgid) => signal_group(*pgid, signal),
            Registered::Starting(stop) => *stop = Some(signal),
        }
    }
    map.len() as u32
}

/// Runs the program of a `run` task on a runner thread: takes a run directory (an emptied one
/// when there is one, see `run_dir.rs`), places the input files, feeds standard input, starts
/// `argv` there with the worker's environment in a process group of its own registered under
/// `token` (see [`kill_program`]), waits, and collects the outputs. Resolves with how it ended
/// (a failure exit is an outcome, not a rejection). Rejects with `spawning '<argv[0]>':
/// <reason>` (code `ERR_LOOM_SPAWN`) when it cannot be started, or with the reason when the
/// run directory cannot be prepared.
///
/// The spawn happens on the runner thread: `posix_spawn` returns only once the child has
/// exec'd, which the event loop should not wait for. Runner threads are kept and reused (one
/// per program running at once).
#[napi(ts_return_type = "Promise<ProgramOutcome>")]
pub fn run_program<'env>(
    env: &'env Env,
    spec: ProgramSpec,
) -> napi::Result<Object<'env>, ErrorCode> {
    let (deferred, promise) = env
        .create_deferred::<ProgramOutcome, _>()
        .map_err(crate::binding_error)?;
    // Buffers stay on the JS thread: the runner gets copies (all small: up to 64 KiB).
    let job = Program {
        argv: spec.argv,
        root: PathBuf::from(spec.run_root),
        files: spec
            .files
            .into_iter()
            .map(|f| {
                let source = match (f.path, f.bytes) {
                    (Some(p), _) => Source::Path(p.into()),
                    (None, b) => Source::Bytes(b.map(|b| b.to_vec()).unwrap_or_default()),
                };
                (f.name, source)
            })
            .collect(),
        stdin: match (spec.stdin_path, spec.stdin_bytes) {
            (Some(p), _) => Some(Source::Path(p.into())),
            (None, Some(b)) => Some(Source::Bytes(b.to_vec())),
            (None, None) => None,
        },
        outputs: spec.outputs,
        token: spec.token,
        cpus: Vec::new(),
    };
    runners()
        .submit(Box::new(move || {
            let outcome = job.run();
            // Free for the next program before JS hears of this one (which may start the next).
            runners().idle();
            deferred.resolve(move |env| match outcome {
                Ok(o) => Ok(ProgramOutcome {
                    dir: o.dir.to_string_lossy().into_owned(),
                    code: o.code,
                    signal: o.signal,
                    outputs: o
                        .outputs
                        .into_iter()
                        .map(|x| match x {
                            Collected::Bytes(b) => ProgramOutput {
                                bytes: Some(b.into()),
                                path: None,
                            },
                            Collected::Path(p) => ProgramOutput {
                                bytes: None,
                                path: Some(p.to_string_lossy().into_owned()),
                            },
                        })
                        .collect(),
                    output_error: o.output_error,
                    stderr_tail: o.stderr_tail,
                }),
                Err(message) => Err(crate::coded_rejection(
                    &env,
                    ErrorCode::ERR_LOOM_SPAWN,
                    message,
                )),
            });
        }))
        .map_err(|e| {
            napi::Error::new(
                ErrorCode::ERR_LOOM_SPAWN,
                format!("cannot start a runner thread: {e}"),
            )
        })?;
    Ok(promise)
}

/// Gives the run directory `dir` (from a [`ProgramOutcome`]) back once the outputs given by
/// path were moved out: it is emptied on a background thread and reused.
#[napi]
pub fn release_run_dir(dir: String) {
    run_dir::release(PathBuf::from(dir));
}

/// Where a file's content comes from.
pub(crate) enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// A program to run (see [`run_program`] and `program_task.rs`).
pub(crate) struct Program {
    /// The program and its arguments.
    pub(crate) argv: Vec<String>,
    /// `<work dir>/run`.
    pub(crate) root: PathBuf,
    /// Files to place in the run directory.
    pub(crate) files: Vec<(String, Source)>,
    /// Standard input (none: `/dev/null`).
    pub(crate) stdin: Option<Source>,
    /// The outputs to collect (`+out`: standard output).
    pub(crate) outputs: Vec<String>,
    /// The token to stop it by (the task id).
    pub(crate) token: u32,
    /// The CPUs to pin it to (its task's CPU slots, when the worker pins); empty: not pinned.
    pub(crate) cpus: Vec<u32>,
}

/// A collected output.
pub(crate) enum Collected {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

/// How a program ended (see [`ProgramOutcome`]).
pub(crate) struct Ended {
    pub(crate) dir: PathBuf,
    pub(crate) code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) outputs: Vec<Collected>,
    pub(crate) output_error: Option<String>,
    pub(crate) stderr_tail: Option<String>,
}

impl Program {
    /// Runs it; on an error the run directory is released here.
    pub(crate) fn run(self) -> Result<Ended, String> {
        self.run_flushing(None)
    }

    /// Runs it as [`Program::run`]; `flush`: a deadline and what to call then if the program
    /// still runs (or at once after the spawn, when its end cannot be awaited with a timeout).
    pub(crate) fn run_flushing(
        self,
        flush: Option<(std::time::Instant, &dyn Fn())>,
    ) -> Result<Ended, String> {
        let program = self.argv.first().cloned().unwrap_or_default();
        let dir = run_dir::take(&self.root).map_err(|e| {
            format!(
                "cannot create a run directory in {}: {}",
                self.root.display(),
                strerror(&e)
            )
        })?;
        match self.start_and_wait(&dir, &program, flush) {
            Ok((code, signal)) => Ok(self.collect(dir, code, signal)),
            Err(message) => {
                run_dir::release(dir);
                Err(message)
            }
        }
    }

    fn start_and_wait(
        &self,
        dir: &Path,
        program: &str,
        flush: Option<(std::time::Instant, &dyn Fn())>,
    ) -> Result<(Option<i32>, Option<i32>), String> {
        for (name, source) in &self.files {
            place(dir, name, source)
                .map_err(|e| format!("cannot map input '{name}': {}", strerror(&e)))?;
        }
        let null =
            || spawn::dev_null().map_err(|e| format!("cannot open /dev/null: {}", strerror(&e)));
        // None: /dev/null.
        let stdin: Option<OwnedFd> = match &self.stdin {
            None => None,
            Some(Source::Path(p)) => Some(
                File::open(p)
                    .map_err(|e| {
                        format!(
                            "cannot open the standard input {}: {}",
                            p.display(),
                            strerror(&e)
                        )
                    })?
                    .into(),
            ),
            Some(Source::Bytes(b)) => Some(
                stdin_of(dir, b)
                    .map_err(|e| format!("cannot feed the standard input: {}", strerror(&e)))?,
            ),
        };
        let placed = |n: &str| self.files.iter().any(|(name, _)| name == n);
        let stdout: Option<OwnedFd> = if self.outputs.iter().any(|o| o == "+out") {
            Some(
                open_out(&dir.join("+out"), placed("+out"))
                    .map_err(|e| format!("cannot create +out: {}", strerror(&e)))?
                    .into(),
            )
        } else {
            // Without the output, no +out in the directory (an empty one may be kept from an
            // earlier program), as in the original.
            if !placed("+out") {
                remove_kept(&dir.join("+out"))
                    .map_err(|e| format!("cannot remove +out: {}", strerror(&e)))?;
            }
            None
        };
        let stderr: OwnedFd = open_out(&dir.join("+err"), placed("+err"))
            .map_err(|e| format!("cannot create +err: {}", strerror(&e)))?
            .into();
        if let Some(Registered::Starting(Some(signal))) = programs()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.token)
        {
            return Err(format!(
                "'{program}' was stopped (signal {signal}) before it started"
            ));
        }
        // The program writes its reaper slot itself before it execs (`spawn.rs`), and runs in
        // its own group: a cancel reaches the programs it starts too.
        let child = spawn::spawn(SpawnSpec {
            argv: &self.argv,
            dir,
            stdio: [
                stdin.as_ref().map_or_else(null, |f| Ok(f.as_fd()))?,
                stdout.as_ref().map_or_else(null, |f| Ok(f.as_fd()))?,
                stderr.as_fd(),
            ],
            slot: reaper_target(),
            cpus: &self.cpus,
        })
        .map_err(|e| match e {
            spawn::SpawnError::Start(e) => format!("spawning '{program}': {}", strerror(&e)),
            spawn::SpawnError::Pin { cpus, error } => pin_failure(program, &cpus, &error),
        })?;
        drop((stdin, stdout, stderr)); // the program has its own
        let pgid = child.pid;
        let before = programs()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.token, Registered::Running(pgid));
        if let Some(Registered::Starting(Some(signal))) = before {
            signal_group(pgid, signal); // stopped while it was being spawned
        }
        if let Some((deadline, flush)) = flush {
            if !child.exited_by(deadline) {
                flush();
            }
        }
        // Forgotten before it is reaped: its id is not reused while a signal may still go to it.
        let status = child.wait(|| {
            // What it left running in its group is killed now, before its outputs are read: a
            // task's outputs are final when it ends, and its run directory is reused (a
            // leftover writing there by name would write into a later program's files). As a
            // Slurm step ends; a process that left the group (setsid) is not reached.
            signal_group(pgid, libc::SIGKILL);
            programs()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.token);
            reaper_clear();
        });
        let status = status.map_err(|e| format!("waiting for '{program}': {}", strerror(&e)))?;
        Ok((status.code(), exit_signal(&status)))
    }

    /// The outputs of a program that ended (read only after exit status 0).
    fn collect(&self, dir: PathBuf, code: Option<i32>, signal: Option<i32>) -> Ended {
        let mut ended = Ended {
            dir,
            code,
            signal,
            outputs: Vec::new(),
            output_error: None,
            stderr_tail: None,
        };
        if code == Some(0) && signal.is_none() {
            for name in &self.outputs {
                match collect_output(&ended.dir.join(name)) {
                    Ok(c) => ended.outputs.push(c),
                    Err(reason) => {
                        ended.output_error = Some(format!("Output '{name}' error: {reason}"));
                        ended.outputs.clear();
                        break;
                    }
                }
            }
        }
        if ended.output_error.is_some() || code != Some(0) || signal.is_some() {
            ended.stderr_tail = Some(stderr_tail(&ended.dir.join("+err")));
        }
        ended
    }
}

/// The failure of a program that could not be pinned to `cpus` (a task error; the server adds
/// the task's id and label): the CPUs, the reason and what the worker may use instead.
fn pin_failure(program: &str, cpus: &[u32], error: &std::io::Error) -> String {
    let plural = if cpus.len() == 1 { "" } else { "s" };
    let allowed = spawn::allowed_cpus()
        .map(|a| format!("this worker may run on CPUs {a}; "))
        .unwrap_or_default();
    format!(
        "cannot pin '{program}' to CPU{plural} {}: {} ({allowed}programs are pinned to the CPUs \
         numbered as their task's CPU slots: start the worker with at most as many --cpus as \
         CPUs it may use, or with --nopin)",
        spawn::cpu_list(cpus),
        strerror(error)
    )
}

fn strerror(e: &std::io::Error) -> String {
    loom_core::data::strerror(e)
}

/// Removes `path` (a file an earlier program left, see `run_dir.rs`) if it is there.
fn remove_kept(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Places input file `name` in `dir`: a link to `Path`, or `Bytes` written out.
fn place(dir: &Path, name: &str, source: &Source) -> std::io::Result<()> {
    let target = dir.join(name);
    if name.contains('/') {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    // The directory may keep an empty `+err`/`+out` from an earlier program (`run_dir.rs`).
    remove_kept(&target)?;
    match source {
        Source::Path(p) => std::os::unix::fs::symlink(p, &target),
        Source::Bytes(b) => std::fs::write(&target, b),
    }
}

/// Standard input holding `bytes`: a pipe already written and closed when the pipe takes them
/// all at once (no file created), else a file `+in` in `dir`.
fn stdin_of(dir: &Path, bytes: &[u8]) -> std::io::Result<OwnedFd> {
    use std::io::Write;
    let (reader, mut writer) = std::io::pipe()?;
    // An empty pipe takes `PIPE_BUF` bytes whatever its capacity (at least a page): a write of
    // that much never blocks, and needs no switch to non-blocking first (two system calls).
    if bytes.len() <= libc::PIPE_BUF {
        writer.write_all(bytes)?;
        drop(writer);
        return Ok(reader.into());
    }
    set_nonblocking(&writer)?;
    let mut written = 0;
    while written < bytes.len() {
        match writer.write(&bytes[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if written == bytes.len() {
        drop(writer); // the program reads to the end, then sees EOF
        return Ok(reader.into());
    }
    drop((reader, writer));
    let path = dir.join("+in");
    std::fs::write(&path, bytes)?;
    Ok(File::open(&path)?.into())
}

fn set_nonblocking(fd: &impl std::os::fd::AsRawFd) -> std::io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; no memory is involved.
    let r = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK)
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a path a program may have replaced with anything: without blocking (a FIFO) and
/// without becoming our terminal.
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// Output file `path`: its bytes when small, else its path; only a regular file (reading a FIFO
/// the program left would wait for a writer forever). An empty regular file (the standard
/// output of a program that printed nothing) is one `statx`, not opened; a small one is read
/// in one `read` of the size its open descriptor has (no `read_to_end`: its own size query and
/// its extra `read` to see the end were three more system calls per program, issue #26).
fn collect_output(path: &Path) -> Result<Collected, String> {
    use std::io::Read;
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        return Ok(Collected::Bytes(Vec::new()));
    }
    let mut file = open_nonblocking(path).map_err(|e| strerror(&e))?;
    let meta = file.metadata().map_err(|e| strerror(&e))?;
    let ty = meta.file_type();
    if !ty.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let kind = if ty.is_dir() {
            "a directory"
        } else if ty.is_fifo() {
            "a FIFO"
        } else if ty.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(format!("not a regular file (it is {kind})"));
    }
    if meta.len() > OUTPUT_IN_MEMORY {
        return Ok(Collected::Path(path.to_path_buf()));
    }
    // What it held when the program ended (a process it left behind may still append).
    let mut bytes = vec![0; meta.len() as usize];
    let mut filled = 0;
    while filled < bytes.len() {
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(strerror(&e)),
        }
    }
    bytes.truncate(filled);
    Ok(Collected::Bytes(bytes))
}

/// The last [`STDERR_TAIL`] bytes of the stderr file (empty when it is gone or not a regular
/// file: the program may have replaced it with a FIFO).
fn stderr_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = open_nonblocking(path) else {
        return String::new();
    };
    let Ok(meta) = file.metadata() else {
        return String::new();
    };
    if !meta.is_file() {
        return String::new();
    }
    let size = meta.len();
    let n = size.min(STDERR_TAIL);
    let mut buf = Vec::with_capacity(n as usize);
    if file.seek(SeekFrom::Start(size - n)).is_err() || file.take(n).read_to_end(&mut buf).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    if size > n {
        format!("... (stderr truncated to its last 64 KiB)\n{text}")
    } else {
        text.into_owned()
    }
}

/// A job for a runner thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The runner threads: kept after their program, each job gets a thread of its own at once
/// (an idle one, or a new one), so a program never waits behind another.
pub(crate) struct Runners {
    queue: Mutex<RunnerQueue>,
    /// Signaled once per job queued for an idle thread: exactly one waiting thread wakes (a
    /// receiver behind a mutex woke a second one, only for it to wait again).
    queued: std::sync::Condvar,
}

#[derive(Default)]
struct RunnerQueue {
    jobs: std::collections::VecDeque<Job>,
    /// Threads waiting for a job (or about to) that no submitted job has claimed yet.
    idle: usize,
}

pub(crate) fn runners() -> &'static Runners {
    static R: OnceLock<Runners> = OnceLock::new();
    R.get_or_init(|| Runners {
        queue: Mutex::new(RunnerQueue::default()),
        queued: std::sync::Condvar::new(),
    })
}

impl Runners {
    /// The calling runner thread is done with its job (it waits for the next one).
    pub(crate) fn idle(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).idle += 1;
    }

    /// Runs `job` on a runner thread at once: an idle one, or a new one.
    pub(crate) fn submit(&self, job: Job) -> std::io::Result<()> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.idle > 0 {
            q.idle -= 1;
            q.jobs.push_back(job);
            drop(q);
            self.queued.notify_one();
            return Ok(());
        }
        drop(q);
        std::thread::Builder::new()
            .name("hyperloom-run".into())
            .spawn(move || {
                job(); // calls `Runners::idle` when its thread is free
                let runners = runners();
                loop {
                    let job = {
                        let mut q = runners.queue.lock().unwrap_or_else(|e| e.into_inner());
                        loop {
                            match q.jobs.pop_front() {
                                Some(job) => break job,
                                None => {
                                    q = runners.queued.wait(q).unwrap_or_else(|e| e.into_inner())
                                }
                            }
                        }
                    };
                    job();
                }
            })?;
        Ok(())
    }
}

/// Paths waiting for the background remover.
static REMOVER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<String>>> =
    std::sync::OnceLock::new();

/// Removes the directory tree at `path` on a background thread (run directories: removing them
/// from JavaScript costs the event loop a chain of lstat/readdir/unlink callbacks per program).
/// Errors are ignored: a leftover directory is removed with the worker's work directory.
#[napi]
/// Throws `ERR_LOOM_REMOVER` if the remover thread is gone.
pub fn remove_tree_in_background(path: String) -> napi::Result<(), ErrorCode> {
    let sender = REMOVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("hyperloom-remove".into())
            .spawn(move || {
                for p in rx {
                    let _ = std::fs::remove_dir_all(p);
                }
            })
            .expect("the remover thread starts");
        std::sync::Mutex::new(tx)
    });
    sender
        .lock()
        .map_err(|_| napi::Error::new(ErrorCode::ERR_LOOM_REMOVER, "remover poisoned".to_owned()))?
        .send(path)
        .map_err(|e| napi::Error::new(ErrorCode::ERR_LOOM_REMOVER, format!("remover gone: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_all(stdin: OwnedFd) -> Vec<u8> {
        // A Stdio cannot be read directly: hand it to `cat` and read what comes out.
        let mut cat = Command::new("cat")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut bytes = Vec::new();
        cat.stdout.take().unwrap().read_to_end(&mut bytes).unwrap();
        assert!(cat.wait().unwrap().success());
        bytes
    }

    #[test]
    fn a_program_stopped_before_its_spawn_never_starts() {
        let root = std::env::temp_dir().join(format!("loom-stop-test-{}", std::process::id()));
        let marker = root.join("started");
        let token = 0xfeed_0001;
        expect_program(token);
        assert!(
            kill_program(token, libc::SIGTERM),
            "a starting program can be stopped"
        );
        let program = Program {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("touch {}", marker.display()),
            ],
            root: root.clone(),
            files: Vec::new(),
            stdin: None,
            outputs: Vec::new(),
            token,
            cpus: Vec::new(),
        };
        let err = program.run().err().expect("it must not run");
        assert!(
            err.contains("was stopped (signal 15) before it started"),
            "{err}"
        );
        assert!(!marker.exists(), "the program never ran");
        forget_program(token);
        assert!(!kill_program(token, libc::SIGTERM), "forgotten");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_reaper_kills_the_groups_in_its_slots_when_the_worker_is_gone() {
        use std::io::Write;
        use std::os::unix::fs::FileExt;
        let mut victim = Command::new("/bin/sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut bystander = Command::new("/bin/sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let slots = slot_file().unwrap();
        // Slot 0 is free, slot 1 holds the victim's group, slot 2 is cleared after its program.
        let free = format!("{:>w$}\n", "", w = SLOT - 1);
        slots.write_at(free.as_bytes(), 0).unwrap();
        let held = format!("{:>w$}\n", victim.id(), w = SLOT - 1);
        slots.write_at(held.as_bytes(), SLOT as u64).unwrap();
        let gone = format!("{:>w$}\n", bystander.id(), w = SLOT - 1);
        slots.write_at(gone.as_bytes(), 2 * SLOT as u64).unwrap();
        slots.write_at(free.as_bytes(), 2 * SLOT as u64).unwrap();
        let mut reaper = Command::new("/bin/sh")
            .arg("-c")
            .arg(REAPER_SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(slots.try_clone().unwrap()))
            .spawn()
            .unwrap();
        let mut alive = reaper.stdin.take().unwrap();
        alive.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            reaper.try_wait().unwrap().is_none(),
            "waits while the worker lives"
        );
        drop(alive); // the worker is gone
        assert!(reaper.wait().unwrap().success());
        assert_eq!(victim.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "a cleared slot is not killed"
        );
        bystander.kill().unwrap();
        bystander.wait().unwrap();
    }

    #[test]
    fn outputs_are_collected_as_bytes_or_paths_and_only_from_regular_files() {
        let dir = std::env::temp_dir().join(format!("loom-collect-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = |name: &str| match collect_output(&dir.join(name)) {
            Ok(Collected::Bytes(b)) => b,
            Ok(Collected::Path(p)) => panic!("{name}: a path {}", p.display()),
            Err(e) => panic!("{name}: {e}"),
        };
        std::fs::write(dir.join("empty"), b"").unwrap();
        assert_eq!(bytes("empty"), b"");
        std::fs::write(dir.join("small"), b"line 1\n").unwrap();
        assert_eq!(bytes("small"), b"line 1\n");
        let full = vec![5u8; OUTPUT_IN_MEMORY as usize];
        std::fs::write(dir.join("full"), &full).unwrap();
        assert_eq!(bytes("full"), full, "64 KiB exactly: in memory");
        std::fs::write(dir.join("large"), vec![1u8; OUTPUT_IN_MEMORY as usize + 1]).unwrap();
        match collect_output(&dir.join("large")) {
            Ok(Collected::Path(p)) => assert_eq!(p, dir.join("large")),
            _ => panic!("a large output is its file"),
        }
        // Links are followed (an input mapped to the output's name), to an empty file too.
        std::os::unix::fs::symlink(dir.join("small"), dir.join("link")).unwrap();
        assert_eq!(bytes("link"), b"line 1\n");
        std::os::unix::fs::symlink(dir.join("empty"), dir.join("link-empty")).unwrap();
        assert_eq!(bytes("link-empty"), b"");
        let error = |name: &str| match collect_output(&dir.join(name)) {
            Err(e) => e,
            Ok(_) => panic!("{name} collected"),
        };
        assert_eq!(error("missing"), "No such file or directory");
        std::fs::create_dir(dir.join("dir")).unwrap();
        assert_eq!(error("dir"), "not a regular file (it is a directory)");
        let fifo =
            std::ffi::CString::new(dir.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert_eq!(
            error("fifo"),
            "not a regular file (it is a FIFO)",
            "and no wait for a writer"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn standard_input_goes_through_a_pipe_or_a_file_when_the_pipe_is_too_small() {
        let dir = std::env::temp_dir().join(format!("loom-stdin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = b"line 1\n".to_vec();
        assert_eq!(read_all(stdin_of(&dir, &small).unwrap()), small);
        for n in [libc::PIPE_BUF, libc::PIPE_BUF + 1, 60_000] {
            let medium: Vec<u8> = (0..n).map(|i| i as u8).collect();
            assert_eq!(read_all(stdin_of(&dir, &medium).unwrap()), medium, "{n}");
        }
        assert!(!dir.join("+in").exists(), "small input: no file");
        let big = vec![7u8; 1 << 20]; // more than a pipe takes
        assert_eq!(read_all(stdin_of(&dir, &big).unwrap()), big);
        assert!(dir.join("+in").exists(), "large input: written to +in");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
