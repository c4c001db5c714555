//! Run directories of `run` tasks, reused: a program's directory is emptied after its task and
//! handed to the next program. Creating and removing a directory (and the `+out`/`+err` files in
//! it) for every program costs more than the spawn on ext4 (inode allocation and freeing:
//! 0.1-2 ms each measured here, against ~0.7 ms for a whole `posix_spawn` of `/bin/true`).
//!
//! A directory is `<work dir>/run/r<n>`. After its program, the cleaner thread removes whatever
//! is in it except the regular files `+out` and `+err` (truncated, kept for the next program to
//! open again without allocating an inode); a directory that cannot be emptied is removed whole
//! and never reused.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Mutex, OnceLock};

/// Names of the standard-stream files a run directory keeps between programs.
pub const KEPT: [&str; 2] = ["+out", "+err"];

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

/// Removes every entry of `dir` but the regular files named in [`KEPT`], which are truncated.
fn empty(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?; // of the entry itself: a symlink is not followed
        let name = entry.file_name();
        let path = entry.path();
        if ty.is_file() && KEPT.iter().any(|k| name == *k) {
            if entry.metadata()?.len() > 0 {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(0)?;
            }
        } else if ty.is_dir() {
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
        std::fs::write(d.join("+err"), b"err").unwrap();
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
        assert_eq!(names, ["+err", "+out"]);
        assert_eq!(std::fs::metadata(d.join("+out")).unwrap().len(), 0);
        // A directory removed meanwhile is not handed out again.
        recycle(d.clone());
        std::fs::remove_dir_all(&d).unwrap();
        let fresh = take(&root).unwrap();
        assert_ne!(fresh, d);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
