//! Extern file, `loom/file`: a read-only mapping of an existing path (`open`, checkpoint loads).
//! Never deleted by us. Sent on streams as `loom/data`.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

/// A mapped existing file. An empty file has no mapping.
#[derive(Debug)]
pub struct ExternFile {
    path: PathBuf,
    map: Option<Mmap>,
}

impl ExternFile {
    /// Opens and maps `path`. Directories are rejected.
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        if std::fs::metadata(&path)?.is_dir() {
            return Err(std::io::Error::from_raw_os_error(21)); // EISDIR
        }
        let map = super::plain::map_file(&path)?;
        Ok(ExternFile { path, map })
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The file size.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
