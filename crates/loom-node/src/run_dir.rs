//! Run directories of `run` tasks, reused: a program's directory is emptied after its task and
//! handed to the next program. Creating and removing a directory for every program costs more
//! than the spawn on ext4.
//!
//! A directory is `<work dir>/run/r<n>`. After its program, the cleaner thread removes whatever
//! is in it except an empty `+err` or `+out` (kept for the next program to open again: creating
//! and removing a file costs about ten times the CPU of opening it). Not the runner thread while
//! its next program runs: a removal can wait for the file system's journal, which under other
//! writes stalled the next program (W4-cat 30% slower, measured). A written `+out` or `+err` is
//! removed, not truncated: on ext4 a file truncated to zero and written again is flushed to disk
//! when it is closed (`auto_da_alloc`), which halved the rate of `cat` programs measured here,
//! while a fresh file stays in the page cache. A directory that cannot be emptied
//! is removed whole and never reused.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Mutex, OnceLock};

/// The standard-stream files a run directory keeps between programs, while empty.
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

/// The program of `dir` has ended and its outputs were taken: empty it on the cleaner thread,
/// then offer it to the next program.
pub fn release(dir: PathBuf) {
    static CLEANER: OnceLock<Mutex<Sender<PathBuf>>> = OnceLock::new();
    let sender = CLEANER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
        std::thread::Builder::new()
            .name("hyperloom-rundir".into())
            .spawn(move || {
                // Started by a runner thread, it would stay on that runner's CPU (its
                // programs'); the cleaner may run on any.
                let _ = crate::spawn::bind_thread(&[]);
                for d in rx {
                    recycle(d);
                }
            })
            .expect("the run directory cleaner starts");
        Mutex::new(tx)
    });
    let sent = sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(dir.clone());
    if sent.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
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

/// Removes every entry of `dir` but empty regular files named in [`KEPT`].
fn empty(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?; // of the entry itself: a symlink is not followed
        let name = entry.file_name();
        let path = entry.path();
        if ty.is_file() && KEPT.iter().any(|k| name == *k) && entry.metadata()?.len() == 0 {
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
        recycle(d.clone());
        let again = take(&root).unwrap();
        assert_eq!(again, d);
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["+err"], "an empty +err is kept, the rest removed");
        // An empty +out is kept too; written ones are removed (not truncated: see the module's
        // note), and so is an empty +out that is not a regular file.
        std::fs::write(d.join("+out"), b"").unwrap();
        recycle(d.clone());
        assert_eq!(take(&root).unwrap(), d);
        assert!(d.join("+out").is_file() && d.join("+err").is_file());
        std::fs::write(d.join("+err"), b"err").unwrap();
        std::fs::remove_file(d.join("+out")).unwrap();
        std::fs::create_dir(d.join("+out")).unwrap();
        recycle(d.clone());
        assert_eq!(take(&root).unwrap(), d);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        // A directory removed meanwhile is not handed out again.
        recycle(d.clone());
        std::fs::remove_dir_all(&d).unwrap();
        let fresh = take(&root).unwrap();
        assert_ne!(fresh, d);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
