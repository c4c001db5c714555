//! Spawning the programs of `run` tasks. Rust's `Command` uses `posix_spawn` (no fork of the
//! worker's large address space), which makes starting a program cheaper than Node's
//! `child_process`; each child is spawned and awaited on a thread of its own, so the event loop
//! and the addon's thread pool stay free.

use crate::ErrorCode;
use napi::bindgen_prelude::Object;
use napi::Env;
use napi_derive::napi;
use std::fs::{File, OpenOptions};
#[cfg(unix)]
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// How a program ended.
#[napi(object)]
pub struct ProgramExit {
    /// Exit status, when it exited.
    pub code: Option<i32>,
    /// Number of the signal that killed it, when it was killed.
    pub signal: Option<i32>,
}

/// Where the program's standard streams go.
#[napi(object)]
pub struct ProgramStdio {
    /// A file to read standard input from (none: `/dev/null`).
    pub stdin: Option<String>,
    /// A file to write standard output to (none: `/dev/null`).
    pub stdout: Option<String>,
    /// A file to write standard error to.
    pub stderr: String,
}

/// The signal that killed the program; Windows has no signals.
#[cfg(unix)]
fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    status.signal()
}
#[cfg(not(unix))]
fn exit_signal(_status: &std::process::ExitStatus) -> Option<i32> {
    None
}

fn open_out(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Starts `argv` in `cwd` with the worker's environment; resolves when it ends. Rejects with
/// `spawning '<argv[0]>': <reason>` (code `ERR_LOOM_SPAWN`) when the program cannot be started. The spawn happens on the
/// waiting thread: `posix_spawn` returns only once the child has exec'd, which the event loop
/// should not wait for (measured A/B/A here: 15-30% more programs/s).
#[napi(ts_return_type = "Promise<ProgramExit>")]
pub fn run_program<'env>(
    env: &'env Env,
    argv: Vec<String>,
    cwd: String,
    stdio: ProgramStdio,
) -> napi::Result<Object<'env>, ErrorCode> {
    let (deferred, promise) = env
        .create_deferred::<ProgramExit, _>()
        .map_err(crate::binding_error)?;
    std::thread::Builder::new()
        .name("hyperloom-run".into())
        .spawn(move || {
            let program = argv.first().cloned().unwrap_or_default();
            let spawned = (|| -> std::io::Result<std::process::Child> {
                let stdin = match &stdio.stdin {
                    Some(p) => Stdio::from(File::open(p)?),
                    None => Stdio::null(),
                };
                let stdout = match &stdio.stdout {
                    Some(p) => Stdio::from(open_out(p)?),
                    None => Stdio::null(),
                };
                let stderr = Stdio::from(open_out(&stdio.stderr)?);
                Command::new(&program)
                    .args(&argv[1..])
                    .current_dir(&cwd)
                    .stdin(stdin)
                    .stdout(stdout)
                    .stderr(stderr)
                    .spawn()
            })();
            let outcome = match spawned {
                Err(e) => Err(format!("spawning '{program}': {e}")),
                Ok(mut child) => child
                    .wait()
                    .map_err(|e| format!("waiting for '{program}': {e}")),
            };
            deferred.resolve(move |env| match outcome {
                Ok(status) => Ok(ProgramExit {
                    code: status.code(),
                    signal: exit_signal(&status),
                }),
                Err(message) => Err(crate::coded_rejection(
                    &env,
                    ErrorCode::ERR_LOOM_SPAWN,
                    message,
                )),
            });
        })
        .map_err(|e| {
            napi::Error::new(
                ErrorCode::ERR_LOOM_SPAWN,
                format!("cannot start a thread: {e}"),
            )
        })?;
    Ok(promise)
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
