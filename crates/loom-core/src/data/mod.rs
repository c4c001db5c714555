//! Data objects: plain, file, array, index, JS values and Python objects, with their stream encoding.
//!
//! Every object is immutable and held as a [`DataRef`] (a tiny plain object by value, any other
//! shared as an `Arc<DataObject>`): the worker's store, running tasks, arrays and indexes each
//! hold their own reference, and a spilled plain object deletes its file when the last
//! reference dies (spec 5.3).
//!
//! | type | [`DataObject`] | size | length |
//! |---|---|---|---|
//! | `loom/data` | [`Plain`] | bytes | 0 |
//! | `loom/file` | [`ExternFile`] | file size | 0 |
//! | `loom/array` | [`Array`] | sum of element sizes | elements |
//! | `loom/index` | [`Index`] | base size + 8 × (length + 1) | pieces |
//! | `loom/js/obj` | [`JsObj`] | byte length | 0 |
//! | `loom/pyobj` | [`PyObj`] | pickled byte length | 0 |
//!
//! Stream encoding and the incremental decoder live in [`stream`].

mod array;
mod data_ref;
mod file;
mod index;
mod jsobj;
mod plain;
mod pyobj;
pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use array::Array;
pub use data_ref::DataRef;
pub use file::{open_regular, ExternFile};
pub use index::Index;
pub use jsobj::JsObj;
pub use plain::{Plain, INLINE_LEN};
pub use pyobj::PyObj;

use crate::symbols::Symbols;

/// Plain data up to this many bytes is kept in memory; larger objects live in a data file.
pub const SPILL_LIMIT: usize = 64 * 1024;

/// Type names (spec 5.3 and our `loom/js/obj`).
pub const DATA_TYPE: &str = "loom/data";
/// Extern file: never registered, sent on streams as `loom/data`.
pub const FILE_TYPE: &str = "loom/file";
/// Array type name.
pub const ARRAY_TYPE: &str = "loom/array";
/// Index type name.
pub const INDEX_TYPE: &str = "loom/index";
/// Serialized JS value type name.
pub const JSOBJ_TYPE: &str = "loom/js/obj";
/// Python object type name (its pickled bytes, see [`PyObj`]).
pub const PYOBJ_TYPE: &str = "loom/pyobj";

/// One data object.
#[derive(Debug)]
pub enum DataObject {
    /// Raw bytes (`loom/data`).
    Plain(Plain),
    /// A read-only mapping of an existing file (`loom/file`).
    File(ExternFile),
    /// Shared elements (`loom/array`).
    Array(Array),
    /// Pieces of a base D-object (`loom/index`).
    Index(Index),
    /// A serialized JS value (`loom/js/obj`).
    JsObj(JsObj),
    /// A pickled Python object (`loom/pyobj`).
    PyObj(PyObj),
}

impl DataObject {
    /// Size per spec 5.3.
    pub fn size(&self) -> u64 {
        match self {
            DataObject::Plain(p) => p.len() as u64,
            DataObject::File(f) => f.len() as u64,
            DataObject::Array(a) => a.size(),
            DataObject::Index(i) => i.size(),
            DataObject::JsObj(j) => j.bytes().len() as u64,
            DataObject::PyObj(p) => p.bytes().len() as u64,
        }
    }

    /// Length per spec 5.3 (elements or pieces; 0 for D-objects and JS values).
    pub fn length(&self) -> u64 {
        match self {
            DataObject::Array(a) => a.len() as u64,
            DataObject::Index(i) => i.len() as u64,
            _ => 0,
        }
    }

    /// The type name (`loom/data`, `loom/file`, `loom/array`, `loom/index`, `loom/js/obj`,
    /// `loom/pyobj`).
    pub fn type_name(&self) -> &'static str {
        match self {
            DataObject::Plain(_) => DATA_TYPE,
            DataObject::File(_) => FILE_TYPE,
            DataObject::Array(_) => ARRAY_TYPE,
            DataObject::Index(_) => INDEX_TYPE,
            DataObject::JsObj(_) => JSOBJ_TYPE,
            DataObject::PyObj(_) => PYOBJ_TYPE,
        }
    }

    /// The bytes of a D-object (plain or file); `None` for the others.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            DataObject::Plain(p) => Some(p.bytes()),
            DataObject::File(f) => Some(f.bytes()),
            _ => None,
        }
    }

    /// The file holding the bytes, if any: a spilled plain object's data file or an extern
    /// file's private copy (both in the data directory).
    pub fn file_path(&self) -> Option<&Path> {
        match self {
            DataObject::Plain(p) => p.file_path(),
            DataObject::File(f) => f.copy_path(),
            _ => None,
        }
    }

    /// The description used in error messages, as the original prints it (spec 6.7):
    /// `RawData file=<path or empty>`, `<ExternFile '<path>'>`, `Array`, `Index`, `JsObj`, `PyObj`.
    pub fn info(&self) -> String {
        match self {
            DataObject::Plain(p) => format!(
                "RawData file={}",
                p.file_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            DataObject::File(f) => format!("<ExternFile '{}'>", f.path().display()),
            DataObject::Array(_) => "Array".to_owned(),
            DataObject::Index(_) => "Index".to_owned(),
            DataObject::JsObj(_) => "JsObj".to_owned(),
            DataObject::PyObj(_) => "PyObj".to_owned(),
        }
    }

    /// Item `i` as an object: an array element (shared) or an index piece (a plain view of the
    /// base, no copy). `None` if out of range or the object has no items.
    pub fn get(&self, i: u64) -> Option<DataRef> {
        match self {
            DataObject::Array(a) => a.items().get(usize::try_from(i).ok()?).cloned(),
            DataObject::Index(x) => {
                if i >= x.len() as u64 {
                    return None;
                }
                let (s, e) = x.piece_range(i as usize);
                Some(DataRef::new(DataObject::Plain(Plain::view(
                    x.base().clone(),
                    s,
                    e,
                ))))
            }
            _ => None,
        }
    }
}

/// The ids of the data types in a dictionary (-1 where missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeIds {
    /// `loom/data` (also used for extern files on streams).
    pub data: i32,
    /// `loom/array`.
    pub array: i32,
    /// `loom/index`.
    pub index: i32,
    /// `loom/js/obj`.
    pub jsobj: i32,
    /// `loom/pyobj`.
    pub pyobj: i32,
}

impl Default for TypeIds {
    fn default() -> Self {
        TypeIds {
            data: -1,
            array: -1,
            index: -1,
            jsobj: -1,
            pyobj: -1,
        }
    }
}

impl TypeIds {
    /// Looks the type names up in `symbols`.
    pub fn from_symbols(symbols: &Symbols) -> Self {
        let id = |n| symbols.id(n).unwrap_or(-1);
        TypeIds {
            data: id(DATA_TYPE),
            array: id(ARRAY_TYPE),
            index: id(INDEX_TYPE),
            jsobj: id(JSOBJ_TYPE),
            pyobj: id(PYOBJ_TYPE),
        }
    }

    /// The id an object is sent under (extern files travel as `loom/data`).
    pub fn wire_type(&self, obj: &DataObject) -> i32 {
        match obj {
            DataObject::Plain(_) | DataObject::File(_) => self.data,
            DataObject::Array(_) => self.array,
            DataObject::Index(_) => self.index,
            DataObject::JsObj(_) => self.jsobj,
            DataObject::PyObj(_) => self.pyobj,
        }
    }
}

/// The worker's `data/` directory: names spill files `<dir>/<n>` with a counter from 1.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    counter: AtomicU64,
}

impl DataDir {
    /// A data directory at `path` (which must exist).
    pub fn new(path: PathBuf) -> Self {
        DataDir {
            path,
            counter: AtomicU64::new(0),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh file name in the directory.
    pub fn next_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.path.join(n.to_string())
    }

    /// A plain object holding `bytes`: in memory up to [`SPILL_LIMIT`], else written to a data
    /// file and mapped.
    pub fn plain(&self, bytes: Vec<u8>) -> std::io::Result<Plain> {
        if bytes.len() <= SPILL_LIMIT {
            return Ok(Plain::from_vec(bytes));
        }
        self.plain_from_slice(&bytes)
    }

    /// Like [`DataDir::plain`], from borrowed bytes (copied once, into memory or the file).
    pub fn plain_from_slice(&self, bytes: &[u8]) -> std::io::Result<Plain> {
        if bytes.len() <= SPILL_LIMIT {
            return Ok(Plain::from_slice(bytes));
        }
        let path = self.next_path();
        if let Err(e) = std::fs::write(&path, bytes) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Plain::adopt_file(path)
    }

    /// Moves the file at `from` into the directory and makes it a plain object (run outputs).
    pub fn adopt(&self, from: &Path) -> std::io::Result<Plain> {
        let path = self.next_path();
        std::fs::rename(from, &path)?;
        Plain::adopt_file(path)
    }
}

/// `io::Error` text without Rust's ` (os error N)` suffix: what C's `strerror` prints.
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_owned(),
        _ => s,
    }
}

#[cfg(test)]
mod tests;
