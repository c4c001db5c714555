//! The one protobuf writer of the hot paths: varints and fields appended to a `Vec`, written
//! into a stack buffer that is appended at once, or written straight into its spare capacity
//! after one capacity check ([`FrameWriter`]), and the framing of a message written in place.
//! Each role's message encoders (`server::wire`, `worker::wire`) are built from these; they are
//! checked byte-for-byte against prost in their tests.

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

/// Writes `v` as a varint at `buf[*p..]`, advancing `*p` (the caller guarantees 10 bytes of
/// room). For small fixed-shape messages encoded in a stack buffer and appended at once.
#[inline(always)]
pub fn put_varint_at(buf: &mut [u8], p: &mut usize, mut v: u64) {
    // Up to three bytes (ids below 2^21) without a loop.
    let q = *p;
    if v < 1 << 7 {
        buf[q] = v as u8;
        *p = q + 1;
        return;
    }
    if v < 1 << 14 {
        buf[q] = v as u8 | 0x80;
        buf[q + 1] = (v >> 7) as u8;
        *p = q + 2;
        return;
    }
    if v < 1 << 21 {
        buf[q] = v as u8 | 0x80;
        buf[q + 1] = (v >> 7) as u8 | 0x80;
        buf[q + 2] = (v >> 14) as u8;
        *p = q + 3;
        return;
    }
    while v >= 0x80 {
        buf[*p] = (v as u8) | 0x80;
        *p += 1;
        v >>= 7;
    }
    buf[*p] = v as u8;
    *p += 1;
}

/// Writes the 8-byte little-endian frame prefix for a message in `buf[8..end]`.
#[inline(always)]
pub fn put_frame_len(buf: &mut [u8], end: usize) {
    buf[..8].copy_from_slice(&((end - 8) as u64).to_le_bytes());
}

/// A frame written straight into a `Vec`'s spare capacity: [`FrameWriter::begin`] reserves
/// the most the message can take (one capacity check per frame), the `put_*` methods write
/// without a bounds check per byte, [`FrameWriter::finish`] writes the 8-byte length prefix and
/// commits the bytes. Dropped without `finish`, nothing is appended. For the small messages of
/// the hot paths (a TASK or REMOVE per task): no stack buffer cleared and copied, no capacity
/// check per field.
pub struct FrameWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Where the frame's length prefix goes.
    start: usize,
    /// The next byte to write (inside `out`'s allocation).
    p: *mut u8,
    /// One past the reserved bytes (checked in debug builds).
    #[cfg(debug_assertions)]
    end: *mut u8,
}

impl<'a> FrameWriter<'a> {
    /// Starts a frame whose message takes at most `max` bytes.
    #[inline(always)]
    pub fn begin(out: &'a mut Vec<u8>, max: usize) -> Self {
        out.reserve(8 + max);
        let start = out.len();
        // SAFETY: `reserve` made `start + 8 + max` bytes fit in the allocation.
        let p = unsafe { out.as_mut_ptr().add(start + 8) };
        FrameWriter {
            #[cfg(debug_assertions)]
            // SAFETY: as above.
            end: unsafe { p.add(max) },
            out,
            start,
            p,
        }
    }

    /// Makes room for `n` more bytes after those written so far (the buffer may move): for a
    /// message whose most is large, reserved part by part rather than all at once.
    #[inline(never)]
    pub fn reserve(&mut self, n: usize) {
        // SAFETY: `start..p` lies in the allocation; the prefix is written (zero for now) so
        // that every byte up to `p` is initialised while the length covers them (the buffer
        // may be moved by `reserve`, which keeps `len` bytes); the length goes back to
        // `start` at once, so an unfinished frame still appends nothing.
        unsafe {
            let base = self.out.as_mut_ptr();
            let written = self.p.offset_from(base) as usize;
            base.add(self.start)
                .cast::<[u8; 8]>()
                .write_unaligned([0; 8]);
            self.out.set_len(written);
            self.out.reserve(n);
            self.out.truncate(self.start);
            self.p = self.out.as_mut_ptr().add(written);
            #[cfg(debug_assertions)]
            {
                self.end = self.p.add(n);
            }
        }
    }

    /// Writes one byte.
    ///
    /// # Safety
    /// The bytes written since [`FrameWriter::begin`] (or the last [`FrameWriter::reserve`]),
    /// this one included, fit in what it reserved.
    #[inline(always)]
    pub unsafe fn put_byte(&mut self, b: u8) {
        #[cfg(debug_assertions)]
        debug_assert!(self.p < self.end, "frame larger than reserved");
        // SAFETY: within the reserved bytes (the caller's contract).
        unsafe {
            self.p.write(b);
            self.p = self.p.add(1);
        }
    }

    /// Writes `v` as a varint (at most 10 bytes).
    ///
    /// # Safety
    /// As [`FrameWriter::put_byte`], for every byte of the varint.
    #[inline(always)]
    pub unsafe fn put_varint(&mut self, mut v: u64) {
        // SAFETY: the caller's contract, byte by byte.
        unsafe {
            // Up to three bytes (ids below 2^21) without a loop.
            if v < 1 << 7 {
                return self.put_byte(v as u8);
            }
            if v < 1 << 14 {
                self.put_byte(v as u8 | 0x80);
                return self.put_byte((v >> 7) as u8);
            }
            if v < 1 << 21 {
                self.put_byte(v as u8 | 0x80);
                self.put_byte((v >> 7) as u8 | 0x80);
                return self.put_byte((v >> 14) as u8);
            }
            while v >= 0x80 {
                self.put_byte(v as u8 | 0x80);
                v >>= 7;
            }
            self.put_byte(v as u8);
        }
    }

    /// Writes `b` as they are.
    ///
    /// # Safety
    /// As [`FrameWriter::put_byte`], for all of `b`.
    #[inline(always)]
    pub unsafe fn put_slice(&mut self, b: &[u8]) {
        #[cfg(debug_assertions)]
        debug_assert!(b.len() <= self.end as usize - self.p as usize);
        let (n, src, dst) = (b.len(), b.as_ptr(), self.p);
        // SAFETY: within the reserved bytes; `b` cannot overlap the spare capacity. Every
        // load below reads inside `b` and every store writes inside `dst..dst + n`.
        unsafe {
            // A task's config and its empty checkpoint path are a few bytes: copied inline
            // (two overlapping loads and stores of the widest size that fits) rather than by a
            // call to `memcpy`, which costs more than the copy at these sizes (issue #26).
            if n == 0 {
            } else if n < 4 {
                // First, middle and last byte (the same byte more than once for 1 or 2).
                let (first, mid, last) = (*src, *src.add(n / 2), *src.add(n - 1));
                *dst = first;
                *dst.add(n / 2) = mid;
                *dst.add(n - 1) = last;
            } else if n < 8 {
                let head = src.cast::<u32>().read_unaligned();
                let tail = src.add(n - 4).cast::<u32>().read_unaligned();
                dst.cast::<u32>().write_unaligned(head);
                dst.add(n - 4).cast::<u32>().write_unaligned(tail);
            } else if n <= 16 {
                let head = src.cast::<u64>().read_unaligned();
                let tail = src.add(n - 8).cast::<u64>().read_unaligned();
                dst.cast::<u64>().write_unaligned(head);
                dst.add(n - 8).cast::<u64>().write_unaligned(tail);
            } else {
                std::ptr::copy_nonoverlapping(src, dst, n);
            }
            self.p = dst.add(n);
        }
    }

    /// Writes the length prefix and appends the frame.
    #[inline(always)]
    pub fn finish(self) {
        // SAFETY: `start..p` lies in the allocation and `start + 8..p` was written; the prefix
        // is written now, so `start..p` is initialised when the length is set.
        unsafe {
            let base = self.out.as_mut_ptr().add(self.start);
            let total = self.p.offset_from(base) as usize;
            base.cast::<[u8; 8]>()
                .write_unaligned(((total - 8) as u64).to_le_bytes());
            self.out.set_len(self.start + total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_at_matches_appended_varint() {
        let mut values: Vec<u64> = (0..64).flat_map(|s| [(1u64 << s) - 1, 1u64 << s]).collect();
        values.extend([u64::MAX, -1i64 as u64, 300, 2_097_151, 2_097_152]);
        for v in values {
            let mut want = Vec::new();
            put_varint(&mut want, v);
            let mut buf = [0u8; 12];
            let mut p = 1;
            put_varint_at(&mut buf, &mut p, v);
            assert_eq!(&buf[1..p], &want[..], "{v}");
        }
    }

    #[test]
    fn frame_writer_varints_match_appended_varints() {
        let mut values: Vec<u64> = (0..64).flat_map(|s| [(1u64 << s) - 1, 1u64 << s]).collect();
        values.extend([u64::MAX, -1i64 as u64, 300, 2_097_151, 2_097_152]);
        for v in values {
            let mut want = vec![7u8];
            let p = frame_begin(&mut want);
            put_varint(&mut want, v);
            want.extend_from_slice(b"ab");
            frame_end(&mut want, p);
            let mut got = vec![7u8];
            let mut w = FrameWriter::begin(&mut got, 12);
            // SAFETY: 10 + 2 bytes.
            unsafe {
                w.put_varint(v);
                w.put_slice(b"ab");
            }
            w.finish();
            assert_eq!(got, want, "{v}");
        }
        // Reserved part by part: the written bytes survive the buffer's moves.
        let mut out = vec![5u8];
        let mut w = FrameWriter::begin(&mut out, 1);
        // SAFETY: one byte, then 10 per reserve.
        unsafe { w.put_byte(1) };
        for k in 0..1000u64 {
            w.reserve(10);
            unsafe { w.put_varint(k << 20) };
        }
        w.finish();
        let mut want = vec![5u8];
        let p = frame_begin(&mut want);
        want.push(1);
        for k in 0..1000u64 {
            put_varint(&mut want, k << 20);
        }
        frame_end(&mut want, p);
        assert_eq!(out, want);
        // Dropped unfinished: nothing appended.
        let mut out = vec![1u8];
        {
            let mut w = FrameWriter::begin(&mut out, 1);
            // SAFETY: one byte.
            unsafe { w.put_byte(9) };
        }
        assert_eq!(out, [1]);
    }

    #[test]
    fn frame_writer_slices_of_every_short_length_are_copied_whole() {
        // The inline copies (1-3, 4-7, 8-16 bytes) and memcpy beyond, each between other
        // bytes: every byte of the slice lands once, in order, and nothing around it changes.
        let src: Vec<u8> = (1..=40).collect();
        for n in 0..=40 {
            let mut want = vec![3u8];
            let p = frame_begin(&mut want);
            want.push(0xaa);
            want.extend_from_slice(&src[..n]);
            want.push(0xbb);
            frame_end(&mut want, p);
            let mut got = vec![3u8];
            let mut w = FrameWriter::begin(&mut got, n + 2);
            // SAFETY: n + 2 bytes.
            unsafe {
                w.put_byte(0xaa);
                w.put_slice(&src[..n]);
                w.put_byte(0xbb);
            }
            w.finish();
            assert_eq!(got, want, "{n} bytes");
        }
    }
}
