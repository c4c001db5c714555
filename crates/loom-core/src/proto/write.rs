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
}
