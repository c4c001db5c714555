//! `loom/js/obj`: a serialized JS value, opaque to Rust (our analog of the original's pyobj).

/// Opaque bytes of a serialized JS value. Size = byte length, length = 0.
#[derive(Debug)]
pub struct JsObj {
    bytes: Vec<u8>,
}

impl JsObj {
    /// Wraps the serialized bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        JsObj { bytes }
    }

    /// The serialized bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}
