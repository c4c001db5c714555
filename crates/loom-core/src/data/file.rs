//! Extern file, `loom/file`: the content of an existing path (`open`, checkpoint loads). Sent on
//! streams as `loom/data`.
//!
//! What `open` promises: the object is a **snapshot** of the file's content when the task ran.
//! The file is copied into the worker's data directory (`copy_file_range`, which shares the
//! blocks where the filesystem can reflink) and that private copy is memory-mapped. Changing,
//! truncating or deleting the file afterwards never changes the object, and never faults a
//! reader (a mapping of the user's own file would raise SIGBUS on every read past a truncation).
//! Only regular files are accepted: a FIFO, socket, device or directory is refused without
//! blocking (it is opened non-blocking and checked with `fstat` before anything is read).

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::DataDir;

/// A snapshot of an existing file. An empty file has no copy and no mapping. Boxed: files are
/// rare and every data object pays for the largest variant.
#[derive(Debug)]
pub struct ExternFile(Box<Snapshot>);

#[derive(Debug)]
struct Snapshot {
    /// The path it was opened with (named in messages).
    path: PathBuf,
    /// The private copy in the data directory (deleted with the object).
    copy: Option<PathBuf>,
    map: Option<Mmap>,
}

/// Opens `path` read-only without blocking and checks that it is a regular file. Errors:
/// the OS error (`No such file or directory`, ...), `Is a directory`, or `InvalidInput` naming
/// the kind of special file.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // O_NONBLOCK: opening a FIFO nobody writes to would otherwise wait for a writer forever.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    let ft = file.metadata()?.file_type();
    if ft.is_file() {
        return Ok(file);
    }
    if ft.is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
    }
    let kind = if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else {
        "a special file"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("not a regular file (it is {kind})"),
    ))
}

impl ExternFile {
    /// Takes a snapshot of the regular file at `path` into `dd` (see the module docs).
    pub fn open(path: impl Into<PathBuf>, dd: &DataDir) -> std::io::Result<Self> {
        let path = path.into();
        let mut src = open_regular(&path)?;
        let len = src.metadata()?.len();
        if len == 0 {
            return Ok(ExternFile(Box::new(Snapshot {
                path,
                copy: None,
                map: None,
            })));
        }
        let copy = dd.next_path();
        let made = (|| -> std::io::Result<Option<Mmap>> {
            let mut dst = File::create(&copy)?;
            // std uses copy_file_range (reflink where supported) for file-to-file copies.
            std::io::copy(&mut src, &mut dst)?;
            drop(dst);
            super::plain::map_file(&copy)
        })();
        match made {
            Ok(map) => Ok(ExternFile(Box::new(Snapshot {
                path,
                copy: Some(copy),
                map,
            }))),
            Err(e) => {
                let _ = std::fs::remove_file(&copy);
                Err(e)
            }
        }
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// The private copy holding the bytes (none for an empty file).
    pub fn copy_path(&self) -> Option<&Path> {
        self.0.copy.as_deref()
    }

    /// The file's bytes (as they were when opened).
    pub fn bytes(&self) -> &[u8] {
        self.0.map.as_deref().unwrap_or(&[])
    }

    /// The file size.
    pub fn len(&self) -> usize {
        self.0.map.as_ref().map_or(0, |m| m.len())
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        drop(self.map.take());
        if let Some(c) = &self.copy {
            let _ = std::fs::remove_file(c);
        }
    }
}
