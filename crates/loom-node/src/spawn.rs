//! Starting a program so that the reaper always knows it (see `process.rs`).
//!
//! The reaper (a process that kills the worker's programs when the worker is killed with
//! SIGKILL) reads each runner thread's slot, which holds the process group of the program that
//! thread runs. A slot written by the worker after the spawn returned left a window: a program
//! already running (it exec'd) while its slot was still empty, and a worker killed then left it
//! running for good (seen as a flaky `faults` test under load: the worker thread preempted
//! between the spawn and the write). So on Linux the child writes its own slot, before it execs:
//! the program never runs unrecorded. The spawn is what `posix_spawn` does (a `clone` sharing
//! the worker's memory, the worker's thread suspended until the exec: no copy of the worker's
//! large address space), with that one step added. The reaper still learns of the worker's
//! death only after the write: until its exec the child holds a copy of the worker's end of
//! the reaper's pipe (close-on-exec), whose last close is what wakes the reaper.
//!
//! Elsewhere Rust's `Command` starts it and the worker writes the slot after (with that window).

#[cfg(target_os = "linux")]
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::ExitStatus;

/// Bytes of one reaper slot: a group id right-aligned in spaces and a newline, or only spaces.
pub(crate) const SLOT: usize = 16;

/// The slot `pgid` (none: the empty slot) as its [`SLOT`] bytes.
pub(crate) fn slot_bytes(pgid: Option<i32>) -> [u8; SLOT] {
    let mut b = [b' '; SLOT];
    b[SLOT - 1] = b'\n';
    if let Some(g) = pgid {
        let mut v = g.unsigned_abs();
        let mut i = SLOT - 1;
        loop {
            i -= 1;
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 || i == 0 {
                break;
            }
        }
    }
    b
}

/// Where a child records its group before it execs: a file and a byte offset in it.
#[derive(Clone, Copy)]
pub(crate) struct SlotTarget {
    pub(crate) fd: RawFd,
    pub(crate) offset: u64,
}

/// What to start: `argv[0]` is looked up in `PATH` when it has no `/` (as `execvp` does),
/// relative to `dir` when it has one (the child changes to `dir` first).
pub(crate) struct SpawnSpec<'a> {
    pub(crate) argv: &'a [String],
    pub(crate) dir: &'a Path,
    /// Standard input, output and error of the program (the caller closes its own after the
    /// spawn).
    pub(crate) stdio: [BorrowedFd<'a>; 3],
    /// Its reaper slot, written with its group before it execs.
    pub(crate) slot: Option<SlotTarget>,
    /// The CPUs to pin it to (the calling thread is bound to them first, see [`bind_thread`]);
    /// empty: not pinned (the thread is bound to every CPU the process may use).
    pub(crate) cpus: &'a [u32],
}

/// Why a program did not start.
#[derive(Debug)]
pub(crate) enum SpawnError {
    /// Pinning it to `cpus` failed (`sched_setaffinity`: none of them exists or is allowed to
    /// this process, e.g. a worker started with more `--cpus` than the machine gives it).
    Pin {
        cpus: Vec<u32>,
        error: std::io::Error,
    },
    /// Starting it failed: the exec, or a step before it (directory, standard streams).
    Start(std::io::Error),
}

impl From<std::io::Error> for SpawnError {
    fn from(e: std::io::Error) -> Self {
        SpawnError::Start(e)
    }
}

/// The CPUs this process may run on, as a list (`0-1,4`), if the system tells.
pub(crate) fn allowed_cpus() -> Option<String> {
    crate::cpu_claim::allowed().map(|cpus| cpu_list(&cpus))
}

/// `cpus` as `taskset -c` writes them: runs of consecutive ascending CPUs as ranges (`0-3,6`).
pub(crate) fn cpu_list(cpus: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j > i {
            out.push_str(&format!("{}-{}", cpus[i], cpus[j]));
        } else {
            out.push_str(&cpus[i].to_string());
        }
        i = j + 1;
    }
    out
}

/// The affinity mask of `cpus`: 64-bit words, as the kernel reads them (any length: CPU
/// numbers past `CPU_SETSIZE` work too).
#[cfg(target_os = "linux")]
fn cpu_mask(cpus: &[u32]) -> Vec<libc::c_ulong> {
    let bits = libc::c_ulong::BITS;
    let words = cpus.iter().max().map_or(0, |&m| m / bits + 1) as usize;
    let mut mask = vec![0; words];
    for &c in cpus {
        mask[(c / bits) as usize] |= 1 << (c % bits);
    }
    mask
}

#[cfg(target_os = "linux")]
thread_local! {
    /// The CPUs the calling thread was last bound to by [`bind_thread`] (empty: the process's);
    /// None: not known (a new thread has its creator's, which may be a pinned runner's).
    static BOUND: std::cell::RefCell<Option<Vec<u32>>> = const { std::cell::RefCell::new(None) };
}

/// Binds the calling thread to `cpus`, or to every CPU the process may use when `cpus` is
/// empty; a system call only when they differ from the thread's last binding. A runner thread
/// binds itself to its program's CPUs before the spawn: the program inherits them (no
/// `sched_setaffinity` in the child, which started on the thread's CPU and then moved), and the
/// thread waits on that CPU, which is idle when the program exits, as the pinned bare-spawn
/// probe does. Unbound, a runner woke on whichever CPU the scheduler chose, often the other
/// worker's busy one (issue #26: W4 at 66% of the probe). Errors are `sched_setaffinity`'s (the
/// binding is unchanged then).
#[cfg(target_os = "linux")]
pub(crate) fn bind_thread(cpus: &[u32]) -> std::io::Result<()> {
    BOUND.with(|bound| {
        let mut bound = bound.borrow_mut();
        if bound.as_deref() == Some(cpus) {
            return Ok(());
        }
        *bound = None;
        let r = if cpus.is_empty() {
            // SAFETY: sched_getaffinity/sched_setaffinity read and write a set we own, of its size.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                let size = std::mem::size_of::<libc::cpu_set_t>();
                match libc::sched_getaffinity(libc::getpid(), size, &mut set) {
                    0 => libc::sched_setaffinity(0, size, &set),
                    e => e,
                }
            }
        } else {
            let mask = cpu_mask(cpus);
            // The raw call: glibc's wrapper checks the mask against a size of its own.
            // SAFETY: the kernel reads `size` bytes of the mask we own.
            unsafe {
                libc::syscall(
                    libc::SYS_sched_setaffinity,
                    0,
                    std::mem::size_of_val(&mask[..]),
                    mask.as_ptr(),
                ) as libc::c_int
            }
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        *bound = Some(cpus.to_vec());
        Ok(())
    })
}

/// Elsewhere threads are not bound.
#[cfg(not(target_os = "linux"))]
pub(crate) fn bind_thread(_cpus: &[u32]) -> std::io::Result<()> {
    Ok(())
}

/// A started program: its process id, also its process group (a group of its own).
pub(crate) struct Spawned {
    pub(crate) pid: i32,
    /// A descriptor that becomes readable when it exits (Linux 5.2 and later).
    pidfd: Option<OwnedFd>,
}

impl Spawned {
    /// Elsewhere there is no pidfd: false at once.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn exited_by(&self, _deadline: std::time::Instant) -> bool {
        false
    }

    /// Waits until it exited or `deadline` passed, whichever comes first; true: it exited.
    /// Without a pidfd it returns false at once.
    #[cfg(target_os = "linux")]
    pub(crate) fn exited_by(&self, deadline: std::time::Instant) -> bool {
        let Some(fd) = &self.pidfd else { return false };
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            };
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: ppoll reads one pollfd and a timespec we own.
            let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
            if r > 0 {
                return true;
            }
            if r == 0 {
                return false;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return false;
            }
        }
    }

    /// Waits until it ended; `ended` runs after it exited but before it is reaped, while its
    /// id cannot be reused by another process: a signal to its group sent meanwhile (a cancel,
    /// the reaper) never reaches a stranger.
    pub(crate) fn wait(&self, ended: impl FnOnce()) -> std::io::Result<ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        loop {
            // SAFETY: waitid writes only the siginfo we own.
            let r = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(
                    libc::P_PID,
                    self.pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                ended();
                return Err(e);
            }
        }
        ended();
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only the status we own.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                return Ok(ExitStatus::from_raw(status));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// `/dev/null`, opened once and kept open (a program without standard input or output gets
/// it; lent, not duplicated, to each spawn).
pub(crate) fn dev_null() -> std::io::Result<BorrowedFd<'static>> {
    static NULL: std::sync::OnceLock<File> = std::sync::OnceLock::new();
    let file = match NULL.get() {
        Some(f) => f,
        None => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            NULL.get_or_init(|| f)
        }
    };
    Ok(file.as_fd())
}

/// Starts `spec` in a process group of its own; errors are those of the exec (or of the steps
/// before it: the directory change, the standard streams).
#[cfg(target_os = "linux")]
pub(crate) fn spawn(spec: SpawnSpec<'_>) -> Result<Spawned, SpawnError> {
    use std::os::unix::ffi::OsStrExt;
    let nul = |b: &[u8]| {
        CString::new(b).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a NUL byte in an argument",
            )
        })
    };
    let program = spec.argv.first().map_or("", String::as_str);
    let args = spec
        .argv
        .iter()
        .map(|a| nul(a.as_bytes()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // The files to try, in order (`execvp`'s search, done here: the child must not allocate).
    let candidates = if program.contains('/') || program.is_empty() {
        vec![nul(program.as_bytes())?]
    } else {
        let path = std::env::var_os("PATH");
        let path = path
            .as_ref()
            .map_or(&b"/bin:/usr/bin"[..], |p| p.as_bytes());
        path.split(|&c| c == b':')
            .map(|d| {
                let d = if d.is_empty() { &b"."[..] } else { d };
                let mut full = d.to_vec();
                full.push(b'/');
                full.extend_from_slice(program.as_bytes());
                nul(&full)
            })
            .collect::<std::io::Result<Vec<_>>>()?
    };
    let mut candidate_ptrs: Vec<*const libc::c_char> =
        candidates.iter().map(|c| c.as_ptr()).collect();
    candidate_ptrs.push(std::ptr::null());
    let dir = nul(spec.dir.as_os_str().as_bytes())?;
    // The child inherits the calling thread's CPUs: binding this thread pins the program (and
    // keeps the thread next to it, see `bind_thread`).
    bind_thread(spec.cpus).map_err(|error| {
        if spec.cpus.is_empty() {
            return SpawnError::Start(error);
        }
        let mut cpus = spec.cpus.to_vec();
        cpus.sort_unstable();
        cpus.dedup();
        SpawnError::Pin { cpus, error }
    })?;
    // The child puts them at 0, 1 and 2: none may already be there (dup2 onto itself would
    // keep close-on-exec), nor be overwritten before it is moved.
    let mut kept = Vec::new();
    let mut fds = [0; 3];
    for (i, fd) in spec.stdio.iter().enumerate() {
        fds[i] = if fd.as_raw_fd() < 3 {
            // SAFETY: fcntl duplicates a descriptor we own; the copy is ours.
            let d = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
            if d < 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            // SAFETY: a fresh descriptor nothing else owns.
            kept.push(unsafe { OwnedFd::from_raw_fd(d) });
            d
        } else {
            fd.as_raw_fd()
        };
    }
    let child = Child {
        candidates: candidate_ptrs.as_ptr(),
        argv: argv.as_ptr(),
        // SAFETY: reading the pointer, as posix_spawn does (see `environ`).
        envp: unsafe { environ },
        dir: dir.as_ptr(),
        fds,
        slot: spec.slot,
        error: std::sync::atomic::AtomicI32::new(0),
    };
    STACK.with(|stack| {
        let mut stack = stack.borrow_mut();
        let top = stack.as_mut_ptr_range().end as *mut libc::c_void;
        // SAFETY: every signal is blocked around the clone, so no handler of the worker runs
        // in the child (which shares its memory) before it reset them; the child runs only
        // `start` on its own stack, with `child`, which outlives it (this thread is suspended
        // until the child exec'd or exited, CLONE_VFORK).
        let mut pidfd: libc::c_int = -1;
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
            let arg = &child as *const Child as *mut libc::c_void;
            let mut pid = libc::clone(start, top, flags | libc::CLONE_PIDFD, arg, &mut pidfd);
            if pid < 0 && *libc::__errno_location() == libc::EINVAL {
                pidfd = -1; // a kernel before 5.2
                pid = libc::clone(start, top, flags, arg);
            }
            let error = std::io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 {
                return Err(error.into());
            }
            pid
        };
        drop(kept);
        let error = child.error.load(std::sync::atomic::Ordering::Acquire);
        if error != 0 {
            // It exited without exec'ing: reap it.
            let _ = Spawned { pid, pidfd: None }.wait(|| ());
            return Err(SpawnError::Start(std::io::Error::from_raw_os_error(error)));
        }
        // SAFETY: clone stored a fresh descriptor (close-on-exec) when it took CLONE_PIDFD.
        let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
        Ok(Spawned { pid, pidfd })
    })
}

#[cfg(target_os = "linux")]
extern "C" {
    /// The worker's environment, given to its programs.
    static environ: *const *const libc::c_char;
}

#[cfg(target_os = "linux")]
thread_local! {
    /// The child's stack (64 KiB, 16-byte aligned), one per runner thread.
    static STACK: std::cell::RefCell<Vec<u128>> = std::cell::RefCell::new(vec![0; 4096]);
}

/// What the child needs, prepared by the worker (the child must not allocate).
#[cfg(target_os = "linux")]
struct Child {
    /// Files to exec, null-terminated.
    candidates: *const *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    dir: *const libc::c_char,
    fds: [RawFd; 3],
    slot: Option<SlotTarget>,
    /// The errno of the step that failed (0: it exec'd).
    error: std::sync::atomic::AtomicI32,
}

/// Ends the child that could not exec, telling the worker why (`e`: an errno).
#[cfg(target_os = "linux")]
fn fail(child: &Child, e: i32) -> ! {
    child
        .error
        .store(e.max(1), std::sync::atomic::Ordering::Release);
    // SAFETY: _exit ends only this child (no atexit handlers of the worker run).
    unsafe { libc::_exit(127) }
}

/// The child, between the clone and the exec: only system calls, no allocation, no panics.
#[cfg(target_os = "linux")]
extern "C" fn start(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the worker's `Child`, alive until this exec's or exits; the calls are
    // async-signal-safe system calls on values it prepared.
    unsafe {
        let child = &*(arg as *const Child);
        let fail = |e: i32| fail(child, e);
        let errno = || *libc::__errno_location();
        // The worker's handlers must not run here; a signal the worker ignores stays ignored
        // (as with Rust's Command), except SIGPIPE (Node ignores it; programs expect it).
        for sig in 1..65 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if sig == libc::SIGPIPE
                || (old.sa_sigaction != libc::SIG_IGN && old.sa_sigaction != libc::SIG_DFL)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            fail(errno());
        }
        if let Some(slot) = child.slot {
            let pid = libc::syscall(libc::SYS_getpid) as i32;
            let bytes = slot_bytes(Some(pid));
            // A failed write leaves this program to the worker's own stop (as without a reaper).
            libc::pwrite(
                slot.fd,
                bytes.as_ptr() as *const libc::c_void,
                SLOT,
                slot.offset as libc::off_t,
            );
        }
        for (to, &from) in child.fds.iter().enumerate() {
            if libc::dup2(from, to as i32) < 0 {
                fail(errno());
            }
        }
        if libc::chdir(child.dir) != 0 {
            fail(errno());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // execvp's rules: a file that is not there (or not a directory on the way) -> the next
        // one; not permitted -> the next one, reported if none runs; anything else -> stop.
        let mut denied = false;
        let mut last = libc::ENOENT;
        let mut p = child.candidates;
        while !(*p).is_null() {
            libc::execve(*p, child.argv, child.envp);
            last = errno();
            match last {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => denied = true,
                _ => break,
            }
            p = p.add(1);
        }
        fail(
            if denied && (last == libc::ENOENT || last == libc::ENOTDIR) {
                libc::EACCES
            } else {
                last
            },
        )
    }
}

/// Starts `spec` with Rust's `Command` (no child-side slot write: the caller writes it). No
/// pinning here: a program to pin is refused.
#[cfg(not(target_os = "linux"))]
pub(crate) fn spawn(spec: SpawnSpec<'_>) -> Result<Spawned, SpawnError> {
    use std::os::unix::process::CommandExt;
    if !spec.cpus.is_empty() {
        return Err(SpawnError::Pin {
            cpus: spec.cpus.to_vec(),
            error: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "pinning is supported on Linux only",
            ),
        });
    }
    let [stdin, stdout, stderr] = spec.stdio.map(|fd| fd.try_clone_to_owned());
    let program = spec.argv.first().map_or("", String::as_str);
    let child = std::process::Command::new(program)
        .args(spec.argv.iter().skip(1))
        .current_dir(spec.dir)
        .stdin(stdin?)
        .stdout(stdout?)
        .stderr(stderr?)
        .process_group(0)
        .spawn()?;
    let pid = child.id() as i32;
    if let Some(slot) = spec.slot {
        use std::os::unix::fs::FileExt;
        // SAFETY: borrowing the reaper's descriptor for one write; it stays open.
        let file = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(slot.fd) });
        let _ = file.write_at(&slot_bytes(Some(pid)), slot.offset);
    }
    drop(child); // not waited for here: `Spawned::wait` reaps it
    Ok(Spawned { pid, pidfd: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (File, OwnedFd) {
        let (r, w) = std::io::pipe().unwrap();
        (File::from(OwnedFd::from(r)), OwnedFd::from(w))
    }

    /// Spawns `argv` in `dir` with /dev/null as its standard streams and no reaper slot.
    fn spawn_detached(argv: &[&str], dir: &Path) -> std::io::Result<Spawned> {
        spawn(SpawnSpec {
            argv: &argv.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            dir,
            stdio: [dev_null().unwrap(); 3],
            slot: None,
            cpus: &[],
        })
        .map_err(|e| match e {
            SpawnError::Start(e) => e,
            SpawnError::Pin { .. } => panic!("not pinned"),
        })
    }

    /// Runs `script` in `sh` pinned to `cpus`; its standard output.
    fn pinned(script: &str, cpus: &[u32]) -> Result<String, SpawnError> {
        let (mut out, out_w) = pipe();
        let spawned = spawn(SpawnSpec {
            argv: &["/bin/sh".into(), "-c".into(), script.into()],
            dir: &std::env::temp_dir(),
            stdio: [dev_null().unwrap(), out_w.as_fd(), dev_null().unwrap()],
            slot: None,
            cpus,
        })?;
        drop(out_w); // the program holds its own
        assert!(spawned.wait(|| ()).unwrap().success());
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        Ok(text)
    }

    #[test]
    fn a_pinned_program_runs_on_its_cpus_only() {
        let allowed = allowed_cpus().expect("sched_getaffinity");
        let first: u32 = allowed.split([',', '-']).next().unwrap().parse().unwrap();
        let list = pinned("grep Cpus_allowed_list /proc/self/status", &[first]).unwrap();
        assert_eq!(list.split_whitespace().nth(1), Some(&*first.to_string()));
        // The spawning thread waits on the program's CPU; the process's CPUs are still all
        // those it may use (what a pin failure names).
        assert_eq!(thread_cpus(), [first]);
        assert_eq!(allowed_cpus().as_deref(), Some(&*allowed));
        // Not pinned: what the worker may use.
        let list = pinned("grep Cpus_allowed_list /proc/self/status", &[]).unwrap();
        assert_eq!(list.split_whitespace().nth(1), Some(&*allowed));
        assert_eq!(cpu_list(&thread_cpus()), allowed);
    }

    /// The CPUs the calling thread may run on.
    fn thread_cpus() -> Vec<u32> {
        // SAFETY: sched_getaffinity writes at most the size of the set we own.
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
                0
            );
            set
        };
        (0..libc::CPU_SETSIZE as u32)
            // SAFETY: CPU_ISSET reads a bit of the set, in range.
            .filter(|&c| unsafe { libc::CPU_ISSET(c as usize, &set) })
            .collect()
    }

    #[test]
    fn pinning_to_a_cpu_that_does_not_exist_is_a_pin_error_and_nothing_runs() {
        let marker = std::env::temp_dir().join(format!("loom-pin-test-{}", std::process::id()));
        let script = format!("touch {}", marker.display());
        match pinned(&script, &[4095, 4095]) {
            Err(SpawnError::Pin { cpus, error }) => {
                assert_eq!(cpus, [4095]);
                assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{error}");
            }
            Err(SpawnError::Start(e)) => panic!("not a pin error: {e}"),
            Ok(_) => panic!("it ran"),
        }
        assert!(!marker.exists(), "the program never ran");
    }

    #[test]
    fn cpus_are_listed_as_ranges() {
        assert_eq!(cpu_list(&[]), "");
        assert_eq!(cpu_list(&[3]), "3");
        assert_eq!(cpu_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(cpu_mask(&[0, 65]), [1, 2]);
    }

    #[test]
    fn a_slot_is_the_group_right_aligned_and_a_newline() {
        assert_eq!(&slot_bytes(Some(4_194_304)), b"        4194304\n");
        assert_eq!(&slot_bytes(Some(7)), b"              7\n");
        assert_eq!(&slot_bytes(None), b"               \n");
    }

    /// The program finds its own group in its slot at its first instruction: a worker killed at
    /// any point after the spawn leaves no program its reaper does not know. (With the slot
    /// written by the worker after the spawn returned, the program often read an empty slot.)
    #[test]
    fn the_slot_holds_the_programs_group_before_it_runs() {
        let dir = std::env::temp_dir();
        for _ in 0..50 {
            let slots = tempfile(&dir);
            let (mut out, out_w) = pipe();
            let spawned = spawn(SpawnSpec {
                argv: &[
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo $$; cat \"$0\"".into(),
                    slots.1.clone(),
                ],
                dir: &dir,
                stdio: [dev_null().unwrap(), out_w.as_fd(), dev_null().unwrap()],
                slot: Some(SlotTarget {
                    fd: slots.0.as_raw_fd(),
                    offset: SLOT as u64,
                }),
                cpus: &[],
            })
            .unwrap();
            drop(out_w); // the program holds its own
            let status = spawned.wait(|| ()).unwrap();
            assert!(status.success());
            let mut text = String::new();
            out.read_to_string(&mut text).unwrap();
            let pid = text.lines().next().unwrap().trim().to_owned();
            assert_eq!(pid, spawned.pid.to_string());
            let expected = format!("{}{pid:>15}\n", "\0".repeat(SLOT));
            assert_eq!(
                &text[pid.len() + 1..],
                expected,
                "the slot as the program saw it"
            );
            let _ = std::fs::remove_file(&slots.1);
        }
    }

    fn tempfile(dir: &Path) -> (File, String) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let path = dir.join(format!(
            "loom-slot-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        (file, path.to_string_lossy().into_owned())
    }

    #[test]
    fn the_program_runs_in_its_directory_with_its_group_and_streams() {
        let dir = std::env::temp_dir();
        let (mut out, out_w) = pipe();
        let (stdin_r, stdin_w) = std::io::pipe().unwrap();
        {
            use std::io::Write;
            let mut w = stdin_w;
            w.write_all(b"fed").unwrap();
        }
        let spawned = spawn(SpawnSpec {
            argv: &[
                "sh".into(), // found in PATH
                "-c".into(),
                "pwd; cut -d' ' -f5 /proc/$$/stat; cat".into(),
            ],
            dir: &dir,
            stdio: [stdin_r.as_fd(), out_w.as_fd(), dev_null().unwrap()],
            slot: None,
            cpus: &[],
        })
        .unwrap();
        drop((out_w, stdin_r)); // the program holds its own
        let status = spawned.wait(|| ()).unwrap();
        assert!(status.success());
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            std::fs::canonicalize(lines[0]).unwrap(),
            std::fs::canonicalize(&dir).unwrap()
        );
        assert_eq!(lines[1], spawned.pid.to_string(), "a group of its own");
        assert_eq!(lines[2], "fed");
    }

    #[test]
    fn a_program_that_cannot_start_is_an_error_of_the_exec() {
        let dir = std::env::temp_dir();
        for (program, kind) in [
            ("/nonexistent/program", std::io::ErrorKind::NotFound),
            ("no-such-program-in-path", std::io::ErrorKind::NotFound),
            ("/dev/null", std::io::ErrorKind::PermissionDenied),
        ] {
            let e = spawn_detached(&[program], &dir)
                .err()
                .unwrap_or_else(|| panic!("{program} started"));
            assert_eq!(e.kind(), kind, "{program}: {e}");
        }
        let e = spawn_detached(&["/bin/true"], Path::new("/nonexistent/dir"))
            .err()
            .expect("started in a missing directory");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_bounded_wait_ends_at_the_exit_or_the_deadline() {
        use std::time::{Duration, Instant};
        let dir = std::env::temp_dir();
        let run = |argv: &[&str]| spawn_detached(argv, &dir).unwrap();
        let slow = run(&["/bin/sleep", "0.3"]);
        let started = Instant::now();
        assert!(!slow.exited_by(started + Duration::from_millis(20)));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(20), "{waited:?}");
        assert!(waited < Duration::from_millis(250), "{waited:?}");
        assert!(slow.exited_by(started + Duration::from_secs(10)));
        assert!(slow.wait(|| ()).unwrap().success());
        let quick = run(&["/bin/true"]);
        assert!(quick.exited_by(Instant::now() + Duration::from_secs(10)));
        assert!(quick.wait(|| ()).unwrap().success());
    }

    #[test]
    fn sigpipe_is_default_in_the_program() {
        let dir = std::env::temp_dir();
        let (mut out, out_w) = pipe();
        let spawned = spawn(SpawnSpec {
            argv: &[
                "/bin/sh".into(),
                "-c".into(),
                "grep SigIgn /proc/self/status".into(),
            ],
            dir: &dir,
            stdio: [dev_null().unwrap(), out_w.as_fd(), dev_null().unwrap()],
            slot: None,
            cpus: &[],
        })
        .unwrap();
        drop(out_w); // the program holds its own
        assert!(spawned.wait(|| ()).unwrap().success());
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        let mask = u64::from_str_radix(text.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(
            mask & (1 << (libc::SIGPIPE - 1)),
            0,
            "SIGPIPE ignored: {text}"
        );
    }
}
