//! Plain (raw) data, `loom/data`: bytes in memory, in a mapped data file, or a view of another
//! D-object (an index piece or slice, read without copying).

use std::path::{Path, PathBuf};

use std::sync::Arc;

use memmap2::Mmap;

use super::DataObject;

/// Raw bytes. A spilled object owns its data file and deletes it when dropped.
#[derive(Debug)]
pub struct Plain {
    repr: Repr,
}

/// Bytes up to this length live inside the object itself (no separate allocation): const
/// values, size/length results and other tiny results of 1M-task plans.
pub const INLINE_LEN: usize = 38;

#[derive(Debug)]
enum Repr {
    Inline {
        len: u8,
        buf: [u8; INLINE_LEN],
    },
    Mem(Vec<u8>),
    /// A file in the data directory; `map` is `None` for an empty file (mmap of 0 bytes fails).
    Mapped {
        map: Option<Mmap>,
        path: PathBuf,
    },
    /// `base.bytes()[start..end]`; `base` is a D-object.
    View {
        base: Arc<DataObject>,
        start: usize,
        end: usize,
    },
}

impl Plain {
    /// Bytes held in memory.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        if bytes.len() <= INLINE_LEN {
            return Self::from_slice(&bytes);
        }
        Plain {
            repr: Repr::Mem(bytes),
        }
    }

    /// A copy of `bytes` held in memory (inline when tiny).
    pub fn from_slice(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE_LEN {
            let mut buf = [0u8; INLINE_LEN];
            buf[..bytes.len()].copy_from_slice(bytes);
            return Plain {
                repr: Repr::Inline {
                    len: bytes.len() as u8,
                    buf,
                },
            };
        }
        Plain {
            repr: Repr::Mem(bytes.to_vec()),
        }
    }

    /// Takes ownership of the data file at `path` (deleted when this object dies) and maps it.
    /// On error the file is deleted.
    pub fn adopt_file(path: PathBuf) -> std::io::Result<Self> {
        match map_file(&path) {
            Ok(map) => Ok(Plain {
                repr: Repr::Mapped { map, path },
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// [`adopt_file`](Self::adopt_file) with every page mapped at once (`MAP_POPULATE`): for a
    /// file another process has just written (a peer's data file linked here), whose pages are
    /// in the page cache — the object's bytes are then in this process's memory, no page fault
    /// when they are read. On error the file is deleted.
    pub fn adopt_file_populated(path: PathBuf) -> std::io::Result<Self> {
        let mapped = super::file::open_regular(&path).and_then(|file| {
            if file.metadata()?.len() == 0 {
                return Ok(None);
            }
            // SAFETY: as in `map_file`: read-only, a file in this worker's private data
            // directory that nobody writes after it was complete (its other link is a peer's
            // data file, equally never written again).
            unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map(Some)
        });
        match mapped {
            Ok(map) => Ok(Plain {
                repr: Repr::Mapped { map, path },
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// A view of `base.bytes()[start..end]`. `base` must be a D-object and the range valid.
    pub fn view(base: Arc<DataObject>, start: usize, end: usize) -> Self {
        let len = base.bytes().map_or(0, <[u8]>::len);
        assert!(start <= end && end <= len, "view out of range");
        Plain {
            repr: Repr::View { base, start, end },
        }
    }

    /// Whether the bytes live inside the object (at most [`INLINE_LEN`]).
    #[inline]
    pub fn is_inline(&self) -> bool {
        matches!(self.repr, Repr::Inline { .. })
    }

    /// A copy of an object whose bytes are inline ([`Plain::is_inline`]; others are copied
    /// into memory).
    #[inline]
    pub fn copy_inline(&self) -> Plain {
        match self.repr {
            Repr::Inline { len, buf } => Plain {
                repr: Repr::Inline { len, buf },
            },
            _ => Plain::from_slice(self.bytes()),
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.repr {
            Repr::Inline { len, buf } => &buf[..*len as usize],
            Repr::Mem(v) => v,
            Repr::Mapped { map, .. } => map.as_deref().unwrap_or(&[]),
            Repr::View { base, start, end } => &base.bytes().unwrap_or(&[])[*start..*end],
        }
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Inline { len, .. } => *len as usize,
            Repr::Mem(v) => v.len(),
            Repr::Mapped { map, .. } => map.as_ref().map_or(0, |m| m.len()),
            Repr::View { start, end, .. } => end - start,
        }
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data file, for a spilled object.
    pub fn file_path(&self) -> Option<&Path> {
        match &self.repr {
            Repr::Mapped { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        if let Repr::Mapped { map, path } = &mut self.repr {
            drop(map.take());
            let _ = std::fs::remove_file(&*path);
        }
    }
}

/// Maps a whole regular file read-only; `None` for an empty file. A special file (a FIFO a
/// program left as its output, ...) is refused without blocking.
pub(super) fn map_file(path: &Path) -> std::io::Result<Option<Mmap>> {
    let file = super::file::open_regular(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the mapping is read-only, of a file in this worker's private data directory that
    // is never written after it is adopted (extern files are mapped through their own copy).
    let map = unsafe { Mmap::map(&file)? };
    Ok(Some(map))
}
