//! Framing shared by every connection: a u64 little-endian length, then that many payload bytes.
//!
//! [`FrameReader`] turns socket chunks into whole frames, keeping a partial frame between chunks.
//! [`push_frame`] appends one framed message to an output buffer.

use prost::Message;

/// Largest frame accepted on a control connection. A control message above this is a peer bug
/// or garbage; data connections use their own limits.
pub const MAX_CONTROL_FRAME: u64 = 1 << 32;

/// Errors of the frame layer. Both close the connection that caused them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than the limit allows.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The reader's limit.
        limit: u64,
    },
}

/// Splits a byte stream into frames. Whole frames inside a chunk are returned without copying;
/// only a frame split across chunks is assembled in an internal buffer.
#[derive(Debug, Default)]
pub struct FrameReader {
    partial: Vec<u8>,
    limit: u64,
}

impl FrameReader {
    /// A reader that rejects frames longer than `limit` bytes.
    pub fn new(limit: u64) -> Self {
        FrameReader {
            partial: Vec::new(),
            limit,
        }
    }

    /// Bytes held back from earlier chunks (an incomplete frame).
    pub fn pending_bytes(&self) -> usize {
        self.partial.len()
    }

    /// Feeds a chunk and calls `on_frame` with each complete frame payload, in order.
    /// Stops at the first error of the callback or of the framing and returns it.
    ///
    /// `on_frame` is called from one place (the frame completed from earlier chunks first,
    /// then the whole frames of the chunk), so that a handler can be inlined into the loop.
    pub fn feed<E: From<FrameError>>(
        &mut self,
        chunk: &[u8],
        mut on_frame: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = chunk;
        // The frame left over from the previous chunk, once completed.
        let mut held: Vec<u8> = Vec::new();
        if !self.partial.is_empty() {
            if self.partial.len() < 8 {
                let need = 8 - self.partial.len();
                let take = need.min(rest.len());
                self.partial.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if self.partial.len() < 8 {
                    return Ok(());
                }
            }
            let len = self.checked_len(&self.partial)?;
            let total = 8 + len as usize;
            let take = (total - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() < total {
                return Ok(());
            }
            held = std::mem::take(&mut self.partial);
        }
        let mut first = !held.is_empty();
        loop {
            let frame = if first {
                first = false;
                &held[8..]
            } else {
                let Some((prefix, body)) = rest.split_first_chunk::<8>() else {
                    break;
                };
                let len = self.checked_len(prefix)?;
                // Compared with what follows the prefix (no `8 + len` to overflow), so the
                // split below needs no check of its own.
                if len > body.len() as u64 {
                    break;
                }
                let (frame, after) = body.split_at(len as usize);
                rest = after;
                frame
            };
            on_frame(frame)?;
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// The length prefix at the start of `b` (8 bytes or more), or `TooLarge` above the limit.
    #[inline(always)]
    fn checked_len(&self, b: &[u8]) -> Result<u64, FrameError> {
        let len = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        Ok(len)
    }
}

/// Appends a frame holding `payload` to `out`.
pub fn push_raw_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends a frame holding the encoded `msg` to `out`, without an intermediate buffer.
pub fn push_frame<M: Message>(out: &mut Vec<u8>, msg: &M) {
    let len = msg.encoded_len();
    out.reserve(8 + len);
    out.extend_from_slice(&(len as u64).to_le_bytes());
    msg.encode(out).expect("Vec grows as needed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut r = FrameReader::new(1000);
        let mut got = Vec::new();
        for c in chunks {
            r.feed::<FrameError>(c, |f| {
                got.push(f.to_vec());
                Ok(())
            })
            .unwrap();
        }
        got
    }

    #[test]
    fn whole_and_split_frames() {
        let mut buf = Vec::new();
        push_raw_frame(&mut buf, b"abc");
        push_raw_frame(&mut buf, b"");
        push_raw_frame(&mut buf, b"hello");
        assert_eq!(
            frames_of(&[&buf]),
            vec![b"abc".to_vec(), vec![], b"hello".to_vec()]
        );
        // Every split point gives the same frames.
        for cut in 0..buf.len() {
            let (a, b) = buf.split_at(cut);
            assert_eq!(
                frames_of(&[a, b]),
                vec![b"abc".to_vec(), vec![], b"hello".to_vec()],
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = buf.chunks(1).collect();
        assert_eq!(
            frames_of(&bytes),
            vec![b"abc".to_vec(), vec![], b"hello".to_vec()]
        );
    }

    #[test]
    fn rejects_oversized_frames() {
        let mut r = FrameReader::new(4);
        let mut buf = Vec::new();
        push_raw_frame(&mut buf, b"too long");
        let err = r.feed::<FrameError>(&buf, |_| Ok(())).unwrap_err();
        assert_eq!(err, FrameError::TooLarge { len: 8, limit: 4 });
    }
}
