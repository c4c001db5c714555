//! Index, `loom/index`: a base D-object plus (length + 1) byte offsets; piece `i` is
//! `base[off[i]..off[i+1]]`, read from the base without copying.

use std::sync::Arc;

use super::DataObject;

/// Pieces of a base D-object.
#[derive(Debug)]
pub struct Index {
    base: Arc<DataObject>,
    offsets: Vec<u64>,
}

impl Index {
    /// An index over `base` (a D-object). `offsets` must be non-empty, non-decreasing and end at
    /// most at the base's size; the error says what is wrong.
    pub fn new(base: Arc<DataObject>, offsets: Vec<u64>) -> Result<Self, String> {
        let Some(bytes) = base.bytes() else {
            return Err(format!("index base is {}, not raw data", base.info()));
        };
        if offsets.is_empty() {
            return Err("index has no offsets".to_owned());
        }
        let mut prev = 0;
        for &o in &offsets {
            if o < prev || o > bytes.len() as u64 {
                return Err(format!(
                    "index offsets are not increasing within the base (offset {o}, base size {})",
                    bytes.len()
                ));
            }
            prev = o;
        }
        Ok(Index { base, offsets })
    }

    /// Splits `base` into lines (spec 6.4): every piece keeps its `'\n'`, a newline in the last
    /// byte makes no empty final piece, and an **empty base gives zero pieces** (offsets `[0]`).
    pub fn split_lines(base: Arc<DataObject>) -> Result<Self, String> {
        let Some(bytes) = base.bytes() else {
            return Err(format!(
                "loom/data/split on {}: input is not raw data",
                base.info()
            ));
        };
        let mut offsets = Vec::with_capacity(bytes.len() / 32 + 2);
        offsets.push(0u64);
        if !bytes.is_empty() {
            let body = &bytes[..bytes.len() - 1];
            let mut pos = 0;
            while let Some(i) = memchr(b'\n', &body[pos..]) {
                pos += i + 1;
                offsets.push(pos as u64);
            }
            offsets.push(bytes.len() as u64);
        }
        Ok(Index { base, offsets })
    }

    /// The base D-object.
    pub fn base(&self) -> &Arc<DataObject> {
        &self.base
    }

    /// The (length + 1) offsets.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }

    /// Number of pieces.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when there are no pieces.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Base size + 8 × (length + 1).
    pub fn size(&self) -> u64 {
        self.base.size() + 8 * self.offsets.len() as u64
    }

    /// Byte range of piece `i` (must be < len).
    pub fn piece_range(&self, i: usize) -> (usize, usize) {
        (self.offsets[i] as usize, self.offsets[i + 1] as usize)
    }

    /// The bytes of piece `i` (must be < len), borrowed from the base.
    pub fn piece(&self, i: usize) -> &[u8] {
        let (s, e) = self.piece_range(i);
        &self.base.bytes().unwrap_or(&[])[s..e]
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}
