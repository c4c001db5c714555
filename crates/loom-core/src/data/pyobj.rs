//! `loom/pyobj`: a Python object, kept as its `cloudpickle` bytes (spec 5.3, 5.4).
//!
//! The original holds the live object inside the worker's embedded interpreter; our Python
//! functions run in a pool of separate processes, so the object lives here as the bytes it is
//! sent as anyway (one frame of `cloudpickle.dumps(obj)`) and each process unpickles it on use.

/// The pickled bytes of a Python object. Size = byte length (the original reports
/// `sys.getsizeof`, which only the interpreter holding the object knows), length = 0.
#[derive(Debug)]
pub struct PyObj {
    bytes: Vec<u8>,
}

impl PyObj {
    /// Wraps the pickled bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        PyObj { bytes }
    }

    /// The pickled bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}
