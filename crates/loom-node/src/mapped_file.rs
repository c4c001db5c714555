//! A worker's data file mapped by a client on the same host (`fetch-direct`, our extension; see
//! docs/protocol-extensions.md): the fetched result is a Buffer over the mapping, no byte copied.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use memmap2::MmapOptions;
use napi::bindgen_prelude::{Buffer, BufferSlice};
use napi::Env;
use napi_derive::napi;

/// Maps the data file at `path` copy-on-write (private: a write to the Buffer changes this
/// process's copy of that page only, never the file) and returns a Buffer over the mapping
/// (unmapped when the Buffer is garbage-collected). The file must be the one the worker named: a regular file
/// of `size` bytes on device `dev` with inode `ino` — anything else (another mount namespace,
/// a file replaced meanwhile) throws, and the client fetches the object another way. The worker
/// may delete the file once it is mapped: the mapping keeps its pages.
#[napi]
pub fn map_data_file(
    env: Env,
    path: String,
    size: i64,
    dev: i64,
    ino: i64,
) -> napi::Result<Buffer> {
    let fail = |why: String| napi::Error::from_reason(format!("cannot map {path}: {why}"));
    let file = File::open(&path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file()
        || meta.len() != size as u64
        || meta.dev() != dev as u64
        || meta.ino() != ino as u64
    {
        return Err(fail("not the file the worker named".into()));
    }
    if size <= 0 {
        return Err(fail("empty".into()));
    }
    // SAFETY: a private mapping of a worker's data file, which the worker never writes after it
    // has adopted it (it only deletes it, which leaves the mapping intact). A process of the
    // same user truncating it would make reads fault, as it would in the worker itself.
    let mut map = unsafe { MmapOptions::new().map_copy(&file) }.map_err(|e| fail(e.to_string()))?;
    if map.len() != size as usize {
        return Err(fail("its size changed".into()));
    }
    let (ptr, len) = (map.as_mut_ptr(), map.len());
    // SAFETY: the bytes belong to `map`, moved into the finalizer: they stay mapped, and never
    // move, until the garbage collector frees the Buffer.
    let slice = unsafe { BufferSlice::from_external(&env, ptr, len, map, |_, map| drop(map))? };
    slice.into_buffer(&env)
}
