//! The one protobuf writer of the hot paths: varints and fields appended to a `Vec`, or written
//! into a stack buffer that is appended at once (small fixed-shape messages), and the framing of
//! a message written in place. Each role's message encoders (`server::wire`, `worker::wire`)
//! are built from these; they are checked byte-for-byte against prost in their tests.

/// Appends `v` as a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends an `int32` field with a one-byte key (negative values take 10 bytes, as in protobuf).
#[inline]
pub fn put_i32(out: &mut Vec<u8>, key: u8, v: i32) {
    out.push(key);
    put_varint(out, v as i64 as u64);
}

/// Appends a length-delimited field with a one-byte key.
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, key: u8, v: &[u8]) {
    out.push(key);
    put_varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// Starts a frame: reserves the 8-byte length prefix and returns its position.
#[inline]
pub fn frame_begin(out: &mut Vec<u8>) -> usize {
    let p = out.len();
    out.extend_from_slice(&[0u8; 8]);
    p
}

/// Ends the frame started at `p` by writing its length prefix.
#[inline]
pub fn frame_end(out: &mut [u8], p: usize) {
    let len = (out.len() - p - 8) as u64;
    out[p..p + 8].copy_from_slice(&len.to_le_bytes());
}

/// A message written into a fixed stack buffer behind room for the 8-byte frame prefix, then
/// appended framed in one copy. The caller keeps the total within `N` (a varint is at most 10
/// bytes).
pub struct StackFrame<const N: usize> {
    buf: [u8; N],
    p: usize,
}

impl<const N: usize> StackFrame<N> {
    /// An empty frame.
    #[inline(always)]
    pub fn new() -> Self {
        StackFrame {
            buf: [0u8; N],
            p: 8,
        }
    }

    /// Writes raw bytes (keys, fixed fields).
    #[inline(always)]
    pub fn raw(&mut self, b: &[u8]) {
        self.buf[self.p..self.p + b.len()].copy_from_slice(b);
        self.p += b.len();
    }

    /// Writes a varint.
    #[inline(always)]
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf[self.p] = (v as u8) | 0x80;
            self.p += 1;
            v >>= 7;
        }
        self.buf[self.p] = v as u8;
        self.p += 1;
    }

    /// Writes an `int32` field with a one-byte key.
    #[inline(always)]
    pub fn i32(&mut self, key: u8, v: i32) {
        self.raw(&[key]);
        self.varint(v as i64 as u64);
    }

    /// Message bytes written so far (without the prefix).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.p - 8
    }

    /// Whether nothing was written yet.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.p == 8
    }

    /// Appends the framed message to `out`.
    #[inline(always)]
    pub fn finish(mut self, out: &mut Vec<u8>) {
        let len = (self.p - 8) as u64;
        self.buf[..8].copy_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.buf[..self.p]);
    }

    /// Appends the message's length prefix plus `extra` more bytes, then the message; the
    /// caller appends the `extra` bytes itself (a large trailing field).
    #[inline]
    pub fn finish_with_tail(self, out: &mut Vec<u8>, extra: usize) {
        let len = (self.p - 8 + extra) as u64;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.buf[8..self.p]);
    }
}

impl<const N: usize> Default for StackFrame<N> {
    fn default() -> Self {
        Self::new()
    }
}
