//! Built-in tasks executed inline by the worker core (spec 6.1-6.9). Every bad input is an
//! `Err(message)` that becomes `FAILED`, never a panic.

use std::io::Write;

use super::Extensions;
use crate::data::{
    strerror, Array, DataDir, DataObject, DataRef, ExternFile, Index, Plain, INLINE_LEN,
};

/// What a task type symbol means to this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Not a task type of ours (dslice/dget, resource and data types, ...).
    Unknown,
    Get,
    Slice,
    Size,
    Length,
    Const,
    Merge,
    Open,
    Split,
    Save,
    ArrayMake,
    /// Executed by the JS layer (`run`, `js/*`, `py/*` (its Python pool), extra types).
    Js,
    /// Provided by task library number `.0` of the worker's [`Extensions`], run on the
    /// binding's thread pool.
    Native(u16),
}

impl Kind {
    pub fn of(name: &str, extra: &[String], extensions: &Extensions) -> Kind {
        match name {
            "loom/base/get" => Kind::Get,
            "loom/base/slice" => Kind::Slice,
            "loom/base/size" => Kind::Size,
            "loom/base/length" => Kind::Length,
            "loom/data/const" => Kind::Const,
            "loom/data/merge" => Kind::Merge,
            "loom/data/open" => Kind::Open,
            "loom/data/split" => Kind::Split,
            "loom/data/save" => Kind::Save,
            "loom/array/make" => Kind::ArrayMake,
            "loom/run/run" | "loom/js/call" | "loom/js/value" | "loom/py/call"
            | "loom/py/value" => Kind::Js,
            n if extra.iter().any(|e| e == n) => Kind::Js,
            n => extensions.library_of(n).map_or(Kind::Unknown, Kind::Native),
        }
    }
}

fn obj(o: DataObject) -> DataRef {
    DataRef::new(o)
}

fn one_input<'a>(name: &str, inputs: &'a [DataRef]) -> Result<&'a DataRef, String> {
    match inputs {
        [x] => Ok(x),
        _ => Err(format!(
            "{name} needs exactly 1 input, got {}",
            inputs.len()
        )),
    }
}

fn u64_config(name: &str, config: &[u8], n: usize) -> Result<[u64; 2], String> {
    if config.len() != 8 * n {
        return Err(format!(
            "{name}: config must be {} bytes ({n} x u64le), got {}",
            8 * n,
            config.len()
        ));
    }
    let mut v = [0u64; 2];
    for (i, c) in config.chunks_exact(8).enumerate() {
        v[i] = u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    Ok(v)
}

fn plain(dd: &DataDir, bytes: Vec<u8>) -> Result<DataRef, String> {
    dd.plain(bytes)
        .map(|p| obj(DataObject::Plain(p)))
        .map_err(|e| format!("cannot store the result: {}", strerror(&e)))
}

/// Runs built-in `kind` (not `Js` or `Unknown`). `inputs` may be taken (an array takes them
/// as its elements).
pub(crate) fn run(
    kind: Kind,
    config: &[u8],
    inputs: &mut Vec<DataRef>,
    dd: &DataDir,
) -> Result<DataRef, String> {
    match kind {
        Kind::Const => dd
            .plain_from_slice(config)
            .map(|p| obj(DataObject::Plain(p)))
            .map_err(|e| format!("cannot store the result: {}", strerror(&e))),
        Kind::Merge => merge(config, inputs, dd),
        Kind::Open => {
            let path = String::from_utf8_lossy(config);
            ExternFile::open(&*path, dd)
                .map(|f| obj(DataObject::File(f)))
                .map_err(|e| format!("Cannot open file '{path}': {}", strerror(&e)))
        }
        Kind::Split => {
            let x = one_input("loom/data/split", inputs)?;
            Index::split_lines(x.to_shared()).map(|i| obj(DataObject::Index(i)))
        }
        Kind::Save => save(config, inputs),
        Kind::ArrayMake => Ok(obj(DataObject::Array(Array::new(std::mem::take(inputs))))),
        Kind::Size | Kind::Length => {
            let total: u64 = inputs
                .iter()
                .map(|x| {
                    if kind == Kind::Size {
                        x.size()
                    } else {
                        x.length()
                    }
                })
                .sum();
            Ok(obj(DataObject::Plain(Plain::from_vec(
                total.to_le_bytes().to_vec(),
            ))))
        }
        Kind::Get => {
            let x = one_input("loom/base/get", inputs)?;
            let [i, _] = u64_config("loom/base/get", config, 1)?;
            x.get(i).ok_or_else(|| {
                format!(
                    "loom/data/get on {}: index {i} is out of range (length={})",
                    x.info(),
                    x.length()
                )
            })
        }
        Kind::Slice => {
            let x = one_input("loom/base/slice", inputs)?;
            let [from, to] = u64_config("loom/base/slice", config, 2)?;
            match &**x {
                DataObject::Array(a) => {
                    let len = a.len() as u64;
                    let (from, to) = (from.min(len) as usize, to.min(len) as usize);
                    let items = if from >= to {
                        Vec::new()
                    } else {
                        a.items()[from..to].to_vec()
                    };
                    Ok(obj(DataObject::Array(Array::new(items))))
                }
                DataObject::Index(ix) => {
                    let len = ix.len();
                    let to = to.min(len as u64) as usize;
                    let from = (from.min(len as u64) as usize).min(to);
                    let offs = ix.offsets();
                    let (s, e) = (offs[from] as usize, offs[to] as usize);
                    Ok(obj(DataObject::Plain(Plain::view(ix.base().clone(), s, e))))
                }
                other => Err(format!(
                    "loom/base/slice on {}: only an Array or an Index can be sliced",
                    other.info()
                )),
            }
        }
        Kind::Js | Kind::Native(_) | Kind::Unknown => {
            Err("internal error: not a built-in task".to_owned())
        }
    }
}

fn merge(delim: &[u8], inputs: &[DataRef], dd: &DataDir) -> Result<DataRef, String> {
    let mut total = 0usize;
    for (i, x) in inputs.iter().enumerate() {
        match x.bytes() {
            Some(b) => total += b.len(),
            None => {
                return Err(format!(
                    "loom/data/merge: input {i} is {}, not raw data or a file",
                    x.info()
                ))
            }
        }
    }
    if inputs.len() > 1 {
        total += delim.len() * (inputs.len() - 1);
    }
    if total <= INLINE_LEN {
        // A tiny result (W1's merges): joined on the stack, stored inline, no allocation.
        let mut buf = [0u8; INLINE_LEN];
        let mut n = 0;
        for (i, x) in inputs.iter().enumerate() {
            if i > 0 {
                buf[n..n + delim.len()].copy_from_slice(delim);
                n += delim.len();
            }
            let b = x.bytes().unwrap_or(&[]);
            buf[n..n + b.len()].copy_from_slice(b);
            n += b.len();
        }
        return Ok(obj(DataObject::Plain(Plain::from_slice(&buf[..n]))));
    }
    let mut out = Vec::with_capacity(total);
    for (i, x) in inputs.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(delim);
        }
        out.extend_from_slice(x.bytes().unwrap_or(&[]));
    }
    plain(dd, out)
}

fn save(config: &[u8], inputs: &[DataRef]) -> Result<DataRef, String> {
    let path = String::from_utf8_lossy(config);
    if !path.starts_with('/') {
        return Err(format!("Path '{path}' is not absolute path"));
    }
    let x = one_input("loom/data/save", inputs)?;
    let Some(bytes) = x.bytes() else {
        return Err(format!(
            "loom/data/save: input is {}, not raw data or a file",
            x.info()
        ));
    };
    let mut f = create_regular(std::path::Path::new(&*path))
        .map_err(|e| format!("Openning '{path}' failed: {}", strerror(&e)))?;
    f.write_all(bytes)
        .map_err(|e| format!("Writing '{path}' failed: {}", strerror(&e)))?;
    Ok(obj(DataObject::Plain(Plain::from_vec(Vec::new()))))
}

/// Creates (or truncates) the regular file at `path` without ever blocking: an existing FIFO,
/// socket or device is refused (opening a FIFO for writing waits for a reader).
fn create_regular(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let special = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (save writes only regular files)",
        )
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(std::io::Error::from_raw_os_error(libc::EISDIR)),
        Ok(m) if !m.is_file() => return Err(special()),
        _ => {}
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                special()
            } else {
                e
            }
        })?;
    if !f.metadata()?.is_file() {
        return Err(special());
    }
    f.set_len(0)?;
    Ok(f)
}
