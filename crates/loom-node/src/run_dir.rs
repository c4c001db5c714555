//! Run directories of `run` tasks, reused: a program's directory is emptied after its task and
//! handed to the next program. Creating and removing a directory for every program costs more
//! than the spawn on ext4.
//!
//! A directory is `<work dir>/run/r<n>`. After its program, the cleaner thread removes whatever
//! is in it except `+err` and `+out`, which it keeps, emptied, for the next program to open
//! again (creating a file costs about ten times the CPU of opening it, and far more on ext4
//! after many files were removed: see [`emptied`]). Not the runner thread while its next
//! program runs: a removal can wait for the file system's journal, which under other writes
//! stalled the next program (W4-cat 30% slower, measured). A written `+out` or `+err` is
//! truncated by the cleaner through a descriptor it closes at once, never by the program's
//! open: on ext4 a file truncated to zero is flushed to disk at its next close
//! (`auto_da_alloc`), and when that close was the program's, after it wrote, the rate of `cat`
//! programs halved. A directory that cannot be emptied is removed whole and never reused.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

/// The standard-stream files a run directory keeps between programs, emptied.
pub const KEPT: [&str; 2] = ["+err", "+out"];

/// Emptied directories ready for a program, per run root (`<work dir>/run`).
fn free() -> &'static Mutex<HashMap<PathBuf, Vec<PathBuf>>> {
    static F: OnceLock<Mutex<HashMap<PathBuf, Vec<PathBuf>>>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Numbers of new run directories (unique in the process).
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A run directory for one program under `root`: an emptied one, or a new one (`root` is
/// created on first use).
pub fn take(root: &Path) -> io::Result<PathBuf> {
    loop {
        let dir = free()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(root)
            .and_then(Vec::pop);
        match dir {
            // Still there (the work directory of a stopped worker may have been removed).
            Some(d) if d.is_dir() => return Ok(d),
            Some(_) => continue,
            None => break,
        }
    }
    let dir = root.join(format!("r{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    match std::fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(root)?;
            std::fs::create_dir(&dir)?;
            Ok(dir)
        }
        Err(e) => Err(e),
    }
}

/// The program of `dir` has ended and its outputs were taken: empty it on the cleaner thread
/// now, then offer it to the next program.
pub fn release(dir: PathBuf) {
    release_in_batch(dir);
    clean_released();
}

/// As [`release`], but the cleaner is woken only by the next [`clean_released`] (or
/// [`release`]): the program host wakes it once per batch of programs, with the JS thread,
/// instead of once per program (issue #26: its wake-up and context switch per program were a
/// fifth of the worker's own CPU per `/bin/true`). Until then the runner takes a fresh
/// directory if no emptied one is left.
pub fn release_in_batch(dir: PathBuf) {
    let cleaner = cleaner();
    let mut q = cleaner.queue.lock().unwrap_or_else(|e| e.into_inner());
    if q.gone {
        drop(q);
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    q.dirs.push(dir);
}

/// Wakes the cleaner for the directories released, if it sleeps and any wait.
pub fn clean_released() {
    let cleaner = cleaner();
    let mut q = cleaner.queue.lock().unwrap_or_else(|e| e.into_inner());
    if q.sleeping && !q.dirs.is_empty() {
        q.sleeping = false;
        drop(q);
        cleaner.released.notify_one();
    }
}

/// The cleaner thread's queue.
struct Cleaner {
    queue: Mutex<Released>,
    /// Signaled when directories wait and the cleaner sleeps.
    released: Condvar,
}

#[derive(Default)]
struct Released {
    /// Directories released, not emptied yet.
    dirs: Vec<PathBuf>,
    /// The cleaner waits for [`Cleaner::released`] (set by itself, cleared by whoever wakes it).
    sleeping: bool,
    /// The cleaner thread could not start: directories are removed whole at once.
    gone: bool,
}

/// The cleaner (started on first use).
fn cleaner() -> &'static Cleaner {
    static CLEANER: OnceLock<Cleaner> = OnceLock::new();
    CLEANER.get_or_init(|| {
        let started = std::thread::Builder::new()
            .name("hyperloom-rundir".into())
            .spawn(|| {
                // Started by a runner thread, it would stay on that runner's CPU (its
                // programs'); the cleaner may run on any.
                let _ = crate::spawn::bind_thread(&[]);
                let cleaner = cleaner();
                loop {
                    let dirs = {
                        let mut q = cleaner.queue.lock().unwrap_or_else(|e| e.into_inner());
                        while q.dirs.is_empty() || q.sleeping {
                            q.sleeping = true;
                            q = cleaner.released.wait(q).unwrap_or_else(|e| e.into_inner());
                        }
                        std::mem::take(&mut q.dirs)
                    };
                    for d in dirs {
                        recycle(d);
                    }
                }
            });
        Cleaner {
            queue: Mutex::new(Released {
                gone: started.is_err(),
                ..Released::default()
            }),
            released: Condvar::new(),
        }
    })
}

/// Empties `dir` and puts it back into its root's free list, or removes it whole.
fn recycle(dir: PathBuf) {
    match empty(&dir) {
        Ok(()) => {
            if let Some(root) = dir.parent() {
                free()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(root.to_path_buf())
                    .or_default()
                    .push(dir);
            }
        }
        Err(_) => {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Removes every entry of `dir` but the regular files named in [`KEPT`], which it empties.
fn empty(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?; // of the entry itself: a symlink is not followed
        let name = entry.file_name();
        let path = entry.path();
        if ty.is_file()
            && KEPT.iter().any(|k| name == *k)
            && (entry.metadata()?.len() == 0 || emptied(&path)?)
        {
            continue;
        }
        if ty.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Truncates the written standard-stream file `path` for the next program, if it is a regular
/// file with no other name (a link elsewhere keeps its content) that no process has open (one
/// the program left running would write into the next program's output): else it is removed,
/// and true only when kept. Only this descriptor open is what a write lease checks (the
/// lease goes with the descriptor's close). Truncated through a descriptor of its own, closed
/// at once: ext4 flushes a file
/// truncated to zero at its next close (`auto_da_alloc`), which is this close, with nothing to
/// write, not the program's after it wrote. Removing it instead made the next program's open
/// create an inode, and ext4 looks for a free one past every inode freed in the last seconds
/// (`recently_deleted`): under a stream of programs that write their standard output, the
/// creation cost more than the rest of the worker's work per program (issue #26, W4-cat).
fn emptied(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        // Replaced meanwhile (by a process the program left) by a link or a special file.
        Err(_) => return Ok(false),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Ok(false);
    }
    if !lease_alone(&file) {
        return Ok(false);
    }
    file.set_len(0)?;
    Ok(true)
}

/// Elsewhere no lease is taken: a written file is removed.
#[cfg(not(target_os = "linux"))]
fn lease_alone(_file: &std::fs::File) -> bool {
    false
}

/// Takes a write lease on `file`: true when no other open file description of it exists (the
/// kernel's check). The lease goes with the descriptor's close. A process opening the file
/// meanwhile waits for that close, and the kernel tells the lease holder with a signal:
/// SIGURG, which a process ignores unless it handles it (the default, SIGIO, would end the
/// worker).
#[cfg(target_os = "linux")]
fn lease_alone(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    /// `F_SETSIG` of Linux's `<fcntl.h>` (every architecture), which the libc crate lacks.
    const F_SETSIG: libc::c_int = 10;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; no memory is involved.
    unsafe {
        libc::fcntl(fd, F_SETSIG, libc::SIGURG) == 0
            && libc::fcntl(fd, libc::F_SETLEASE, libc::F_WRLCK) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_directory_is_emptied_and_reused() {
        let root = std::env::temp_dir().join(format!("loom-rundir-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let d = take(&root).unwrap();
        std::fs::write(d.join("+out"), b"out").unwrap();
        std::fs::write(d.join("+err"), b"").unwrap();
        std::fs::write(d.join("left"), b"x").unwrap();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
        let out_inode = inode(&d.join("+out"));
        recycle(d.clone());
        let again = take(&root).unwrap();
        assert_eq!(again, d);
        assert_eq!(
            names(&d),
            ["+err", "+out"],
            "+err and +out are kept, the rest removed"
        );
        assert_eq!(std::fs::read(d.join("+out")).unwrap(), b"", "emptied");
        assert_eq!(
            inode(&d.join("+out")),
            out_inode,
            "truncated, not created anew"
        );
        // A written +err is emptied too; a +out that is not a regular file is removed.
        std::fs::write(d.join("+err"), b"err").unwrap();
        std::fs::remove_file(d.join("+out")).unwrap();
        std::fs::create_dir(d.join("+out")).unwrap();
        recycle(d.clone());
        assert_eq!(take(&root).unwrap(), d);
        assert_eq!(names(&d), ["+err"]);
        assert_eq!(std::fs::read(d.join("+err")).unwrap(), b"");
        // A written +out with another name (a link the program made) or that is a symbolic
        // link is removed: the file it shares is left as it is.
        let elsewhere = root.join("elsewhere");
        std::fs::write(d.join("+out"), b"kept").unwrap();
        std::fs::hard_link(d.join("+out"), &elsewhere).unwrap();
        std::fs::remove_file(d.join("+err")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, d.join("+err")).unwrap();
        recycle(d.clone());
        assert_eq!(take(&root).unwrap(), d);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"kept");
        // A written +out that a process still has open (one the program left running) is
        // removed: what that process writes later never reaches the next program's +out.
        std::fs::write(d.join("+out"), b"first").unwrap();
        let mut left = std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("+out"))
            .unwrap();
        recycle(d.clone());
        assert_eq!(take(&root).unwrap(), d);
        assert!(!d.join("+out").exists());
        std::io::Write::write_all(&mut left, b" late").unwrap();
        std::fs::write(d.join("+out"), b"").unwrap();
        assert_eq!(std::fs::read(d.join("+out")).unwrap(), b"");
        // A directory removed meanwhile is not handed out again.
        recycle(d.clone());
        std::fs::remove_dir_all(&d).unwrap();
        let fresh = take(&root).unwrap();
        assert_ne!(fresh, d);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A process that opens a file while the cleaner holds its lease waits for the cleaner's
    /// close, and the worker survives the kernel's signal (with SIGIO, the default, this test's
    /// process ended).
    #[test]
    fn an_open_during_the_cleaners_lease_waits_for_it_and_the_signal_is_harmless() {
        let path = std::env::temp_dir().join(format!("loom-lease-test-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(lease_alone(&file));
        let (tx, rx) = std::sync::mpsc::channel();
        let opener = {
            let path = path.clone();
            std::thread::spawn(move || {
                let f = std::fs::OpenOptions::new().append(true).open(&path);
                tx.send(()).unwrap();
                f.map(|_| ())
            })
        };
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "the open waits while the lease is held"
        );
        drop(file);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the open goes on after the close");
        opener.join().unwrap().unwrap();
        let other = std::fs::File::open(&path).unwrap();
        let again = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(!lease_alone(&again), "another open description: no lease");
        drop(other);
        std::fs::remove_file(&path).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn inode(path: &Path) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
    }

    #[test]
    fn a_directory_released_in_a_batch_is_emptied_by_the_cleaner_once_asked_and_reused() {
        let root =
            std::env::temp_dir().join(format!("loom-rundir-batch-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let d = take(&root).unwrap();
        std::fs::write(d.join("+out"), b"out").unwrap();
        std::fs::write(d.join("left"), b"x").unwrap();
        release_in_batch(d.clone());
        clean_released();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let again = loop {
            let offered = free()
                .lock()
                .unwrap()
                .get(&root)
                .is_some_and(|f| f.contains(&d));
            if offered {
                break take(&root).unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "never emptied");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(again, d);
        assert_eq!(names(&d), ["+out"], "emptied");
        assert_eq!(std::fs::read(d.join("+out")).unwrap(), b"");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
