//! A worker's data file mapped by a client on the same host (`fetch-direct`, our extension; see
//! docs/protocol-extensions.md): the fetched result is a Buffer over the mapping, no byte copied.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;

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
    let len = size as usize;
    // SAFETY: a private mapping of a worker's data file, which the worker never writes after it
    // has adopted it (it only deletes it, which leaves the mapping intact). A process of the
    // same user truncating it would make reads fault, as it would in the worker itself.
    // Mapped read-only with MAP_POPULATE (the page tables filled in one call: faulting 65,536
    // pages in one by one when the result is first read cost several times more), then made
    // writable: a private mapping's pages are copied only when written (populating a writable
    // private mapping would copy them all at once).
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_POPULATE,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(fail(std::io::Error::last_os_error().to_string()));
    }
    let map = Mapping { ptr, len };
    // SAFETY: `ptr..ptr+len` is the mapping just made.
    if unsafe { libc::mprotect(ptr, len, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
        return Err(fail(std::io::Error::last_os_error().to_string()));
    }
    // SAFETY: the bytes belong to `map`, moved into the finalizer: they stay mapped, and never
    // move, until the garbage collector frees the Buffer.
    let slice =
        unsafe { BufferSlice::from_external(&env, ptr as *mut u8, len, map, |_, map| drop(map))? };
    slice.into_buffer(&env)
}

/// A mapping made by [`map_data_file`], unmapped when dropped.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `mmap` with this address and length, and nothing
        // reads it any more (its Buffer was collected).
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
