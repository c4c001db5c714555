//! The one protobuf scanner of the hot paths (plans, client requests, worker responses, worker
//! commands, data headers): a cursor over an encoded message that borrows every
//! length-delimited field from the input and allocates nothing. Messages that are rare or need
//! owned values are decoded with prost instead.

/// An encoded message that could not be scanned; the text says why (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf message: {0}")]
pub struct Malformed(pub &'static str);

/// Protobuf wire types (the low 3 bits of a field key).
pub mod wire_type {
    /// Varint (int32, int64, uint64, bool, enum).
    pub const VARINT: u8 = 0;
    /// 8 bytes (fixed64, double).
    pub const FIXED64: u8 = 1;
    /// Length-delimited (bytes, string, message, packed repeated).
    pub const LEN: u8 = 2;
    /// 4 bytes (fixed32, float).
    pub const FIXED32: u8 = 5;
}

/// A cursor over an encoded protobuf message.
pub struct Scanner<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `b`.
    #[inline]
    pub fn new(b: &'a [u8]) -> Self {
        Scanner { b, p: 0 }
    }

    /// A scanner at offset `p` of `b` (after fields a caller compared byte by byte).
    #[inline]
    pub fn at(b: &'a [u8], p: usize) -> Self {
        Scanner { b, p }
    }

    /// The offset of the next byte to read.
    #[inline]
    pub fn pos(&self) -> usize {
        self.p
    }

    /// Whether the whole message was read.
    #[inline]
    pub fn done(&self) -> bool {
        self.p >= self.b.len()
    }

    /// Reads a varint (up to 10 bytes). One-byte values take the inlined fast path; longer
    /// ones (ids above 127, e.g. the ids of a plan with millions of tasks) are decoded without
    /// per-byte bounds checks when 10 bytes are left, else byte by byte.
    #[inline(always)]
    pub fn varint(&mut self) -> Result<u64, Malformed> {
        let b = self.b;
        let p = self.p;
        if p < b.len() {
            let b0 = b[p];
            if b0 < 0x80 {
                self.p = p + 1;
                return Ok(b0 as u64);
            }
        }
        self.varint_multi()
    }

    /// A varint of two or more bytes (or a truncated one).
    #[inline(always)]
    fn varint_multi(&mut self) -> Result<u64, Malformed> {
        let p = self.p;
        // Two and three bytes (values below 2^21: the ids of plans up to ~2M tasks) first.
        if let Some(&[b0, b1, b2]) = self.b.get(p..p + 3) {
            let low = (b0 & 0x7f) as u64;
            if b1 < 0x80 {
                self.p = p + 2;
                return Ok(low | (b1 as u64) << 7);
            }
            if b2 < 0x80 {
                self.p = p + 3;
                return Ok(low | ((b1 & 0x7f) as u64) << 7 | (b2 as u64) << 14);
            }
        }
        let (v, end) = Self::varint_long(self.b, p)?;
        self.p = end;
        Ok(v)
    }

    /// The varint of four or more bytes at `p` of `b`, or one near the end of the buffer:
    /// its value and the position after it. Takes the bytes and the position by value (not
    /// `&mut self`), so that a scanner inlined into its caller's loop stays in registers
    /// instead of being kept in memory for this call.
    #[inline(never)]
    fn varint_long(b: &[u8], p: usize) -> Result<(u64, usize), Malformed> {
        let Some(w) = b.get(p..p + 10) else {
            return Self::varint_slow(b, p);
        };
        // One fixed-size window: the compiler drops the bounds checks.
        let w: &[u8; 10] = w.try_into().expect("10 bytes");
        let mut v = (w[0] & 0x7f) as u64;
        for k in 1..10 {
            let byte = w[k];
            v |= ((byte & 0x7f) as u64) << (7 * k);
            if byte < 0x80 {
                if k == 9 && byte > 1 {
                    return Err(Malformed("varint too long"));
                }
                return Ok((v, p + k + 1));
            }
        }
        Err(Malformed("varint too long"))
    }

    /// A varint near the end of the buffer, byte by byte (as [`Scanner::varint_long`]).
    #[inline(always)]
    fn varint_slow(b: &[u8], mut p: usize) -> Result<(u64, usize), Malformed> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = *b.get(p).ok_or(Malformed("truncated varint"))?;
            p += 1;
            if shift == 63 && byte > 1 {
                return Err(Malformed("varint too long"));
            }
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(Malformed("varint too long"));
            }
        }
        Ok((v, p))
    }

    /// Reads a field key: (field number, wire type). One-byte keys (fields 1 to 15) take the
    /// inlined fast path.
    #[inline(always)]
    pub fn key(&mut self) -> Result<(u32, u8), Malformed> {
        let (b, p) = (self.b, self.p);
        if p < b.len() {
            let k = b[p];
            if (8..0x80).contains(&k) {
                self.p = p + 1;
                return Ok(((k >> 3) as u32, k & 7));
            }
        }
        let (key, end) = Self::key_multi(b, p)?;
        self.p = end;
        Ok(key)
    }

    /// Consumes the one-byte field key `key` (field 1 to 15 with its wire type) if it comes
    /// next. For readers specialised to a message's usual layout: each expected field is one
    /// byte comparison, and anything unexpected goes back to the generic loop over [`Scanner::key`].
    #[inline(always)]
    pub fn eat(&mut self, key: u8) -> bool {
        let hit = self.b.get(self.p) == Some(&key);
        self.p += hit as usize;
        hit
    }

    /// Skips the run of length-delimited fields of one-byte key `key` with a one-byte length
    /// (payloads under 128 bytes) that come next and fit: for passes that only count such
    /// fields (a plan's tasks); returns how many. Anything else is left to [`Scanner::key`].
    #[inline(always)]
    pub fn skip_short_run(&mut self, key: u8) -> usize {
        let mut rest = self.b.get(self.p..).unwrap_or_default();
        let mut n = 0;
        while let [k, len, ref tail @ ..] = *rest {
            let len = len as usize;
            if k != key || len >= 0x80 || len > tail.len() {
                break;
            }
            rest = &tail[len..];
            n += 1;
        }
        self.p = self.b.len() - rest.len();
        n
    }

    /// Takes the length-delimited field of one-byte key `key` if it comes next with a one-byte
    /// length (a payload under 128 bytes) that fits, like [`Scanner::skip_short_run`], returning
    /// its payload; anything else is left to [`Scanner::key`].
    #[inline(always)]
    pub fn take_short(&mut self, key: u8) -> Option<&'a [u8]> {
        let p = self.p;
        if let Some(&[k, len]) = self.b.get(p..p + 2) {
            let end = p + 2 + len as usize;
            if k == key && len < 0x80 && end <= self.b.len() {
                self.p = end;
                return Some(&self.b[p + 2..end]);
            }
        }
        None
    }

    /// The key of two or more bytes at `p` of `b`, or an invalid one: the key and the
    /// position after it (by value, as [`Scanner::varint_long`]).
    #[inline(never)]
    fn key_multi(b: &'a [u8], p: usize) -> Result<((u32, u8), usize), Malformed> {
        let mut r = Scanner { b, p };
        let k = r.varint()?;
        let field = (k >> 3) as u32;
        // Field numbers are 1..=u32::MAX: one comparison for both bounds.
        if (k >> 3).wrapping_sub(1) >= u32::MAX as u64 {
            return Err(Malformed("invalid field number"));
        }
        Ok(((field, (k & 7) as u8), r.p))
    }

    /// Reads a length-delimited payload.
    #[inline(always)]
    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.varint()?;
        let end = (self.p as u64)
            .checked_add(len)
            .filter(|&e| e <= self.b.len() as u64)
            .ok_or(Malformed("truncated field"))?;
        let s = &self.b[self.p..end as usize];
        self.p = end as usize;
        Ok(s)
    }

    /// Skips a field of wire type `wt`.
    pub fn skip(&mut self, wt: u8) -> Result<(), Malformed> {
        match wt {
            wire_type::VARINT => {
                self.varint()?;
            }
            wire_type::FIXED64 => self.advance(8)?,
            wire_type::LEN => {
                self.bytes()?;
            }
            wire_type::FIXED32 => self.advance(4)?,
            _ => return Err(Malformed("unsupported wire type")),
        }
        Ok(())
    }

    fn advance(&mut self, n: usize) -> Result<(), Malformed> {
        if self.p + n > self.b.len() {
            return Err(Malformed("truncated field"));
        }
        self.p += n;
        Ok(())
    }

    /// A varint field value, checking the wire type.
    #[inline]
    pub fn varint_of(&mut self, wt: u8) -> Result<u64, Malformed> {
        if wt != wire_type::VARINT {
            return Err(Malformed("wire type is not varint"));
        }
        self.varint()
    }

    /// An `int32` field value (negative values are sign-extended 10-byte varints on the wire).
    #[inline]
    pub fn i32_of(&mut self, wt: u8) -> Result<i32, Malformed> {
        Ok(self.varint_of(wt)? as i32)
    }

    /// A length-delimited field value, checking the wire type.
    #[inline]
    pub fn bytes_of(&mut self, wt: u8) -> Result<&'a [u8], Malformed> {
        if wt != wire_type::LEN {
            return Err(Malformed("wire type is not length-delimited"));
        }
        self.bytes()
    }

    /// A repeated `int32` field, packed or not: each value is passed to `each`. One unpacked
    /// value (the original client's encoding) is read inline.
    #[inline(always)]
    pub fn repeated_i32(&mut self, wt: u8, mut each: impl FnMut(i32)) -> Result<(), Malformed> {
        if wt == wire_type::VARINT {
            each(self.varint()? as i32);
            return Ok(());
        }
        self.packed_i32(wt, each)
    }

    /// [`Scanner::repeated_i32`] of a packed run (kept out of line).
    #[inline(never)]
    fn packed_i32(&mut self, wt: u8, mut each: impl FnMut(i32)) -> Result<(), Malformed> {
        match wt {
            wire_type::LEN => {
                let mut p = Scanner::new(self.bytes()?);
                while !p.done() {
                    each(p.varint()? as i32);
                }
            }
            _ => return Err(Malformed("wire type is not varint or packed")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_short_run_takes_only_whole_short_fields() {
        let mut rd = Scanner::new(&[0x12, 0x02, 7, 7, 0x12, 0x00, 0x1a, 0x00]);
        assert_eq!(rd.skip_short_run(0x12), 2);
        assert_eq!(rd.skip_short_run(0x12), 0, "another key");
        assert_eq!(rd.key(), Ok((3, 2)));
        let mut long = vec![0x12, 0x01, 9, 0x12, 0x80, 0x01];
        long.extend([0; 128]);
        let mut rd = Scanner::new(&long);
        assert_eq!(rd.skip_short_run(0x12), 1, "stops at a two-byte length");
        assert_eq!(rd.key(), Ok((2, 2)));
        let mut rd = Scanner::new(&[0x12, 0x00, 0x12, 0x03, 1, 2]);
        assert_eq!(rd.skip_short_run(0x12), 1, "truncated");
        assert_eq!(rd.key(), Ok((2, 2)));
        let mut rd = Scanner::new(&[0x12, 0x01, 5, 0x12]);
        assert_eq!(rd.skip_short_run(0x12), 1, "no length");
        assert_eq!(rd.key(), Ok((2, 2)));
        let mut rd = Scanner::new(&[0x12, 0x7f]);
        assert_eq!(
            rd.skip_short_run(0x12),
            0,
            "the only field runs past the end"
        );
        let mut rd = Scanner::new(&[0x12, 0x01, 5]);
        assert_eq!(rd.skip_short_run(0x12), 1, "up to the end");
        assert!(rd.done());
        let mut rd = Scanner::new(&[0x12, 0x02, 7, 8, 0x12, 0x03, 1]);
        assert_eq!(rd.take_short(0x12), Some(&[7u8, 8][..]));
        assert_eq!(rd.take_short(0x12), None, "truncated");
        assert_eq!(rd.key(), Ok((2, 2)));
    }

    #[test]
    fn varints_fast_and_slow() {
        let mut rd = Scanner::new(&[0x80, 0x01, 0xff, 0x7f, 0x05, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(rd.varint(), Ok(128));
        assert_eq!(rd.varint(), Ok(0x3fff));
        assert_eq!(rd.varint(), Ok(5));
        assert_eq!(rd.varint(), Ok(u32::MAX as u64));
        assert!(rd.done());
        assert!(Scanner::new(&[0x80]).varint().is_err());
        assert!(Scanner::new(&[0xff; 11]).varint().is_err());
    }

    #[test]
    fn windowed_and_bytewise_varints_agree() {
        // The same values decoded with 10 bytes left (windowed path) and at the end of the
        // buffer (byte by byte), including the longest and the over-long encodings.
        let mut values: Vec<u64> = (0..64).map(|s| 1u64 << s).collect();
        values.extend([
            0,
            127,
            128,
            300,
            16_383,
            16_384,
            3_000_000,
            u64::MAX,
            -1i64 as u64,
        ]);
        for v in values {
            let mut enc = Vec::new();
            crate::proto::write::put_varint(&mut enc, v);
            let mut padded = enc.clone();
            padded.extend_from_slice(&[0u8; 10]);
            let mut r = Scanner::new(&padded);
            assert_eq!(r.varint(), Ok(v));
            assert_eq!(r.p, enc.len());
            assert_eq!(Scanner::new(&enc).varint(), Ok(v));
        }
        let mut too_long = vec![0xffu8; 9];
        too_long.push(0x02);
        too_long.extend_from_slice(&[0u8; 10]);
        assert!(Scanner::new(&too_long).varint().is_err());
        assert!(Scanner::new(&too_long[..10]).varint().is_err());
        assert!(Scanner::new(&[0xffu8; 20]).varint().is_err());
    }

    #[test]
    fn fields_and_skips() {
        // field 1 varint 150, field 2 bytes "ab", field 3 fixed32, field 4 packed [1, 2].
        let b = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'a', b'b', 0x1d, 1, 2, 3, 4, 0x22, 2, 1, 2,
        ];
        let mut s = Scanner::new(&b);
        assert_eq!(s.key(), Ok((1, 0)));
        assert_eq!(s.varint_of(0), Ok(150));
        let (_, wt) = s.key().unwrap();
        assert_eq!(s.bytes_of(wt), Ok(&b"ab"[..]));
        let (_, wt) = s.key().unwrap();
        s.skip(wt).unwrap();
        let (_, wt) = s.key().unwrap();
        let mut v = Vec::new();
        s.repeated_i32(wt, |x| v.push(x)).unwrap();
        assert_eq!(v, [1, 2]);
        assert!(s.done());
        assert!(Scanner::new(&[0x12, 0x05, 1]).skip_field().is_err());
        assert!(Scanner::new(&[0x0f]).skip_field().is_err());
    }

    impl Scanner<'_> {
        fn skip_field(&mut self) -> Result<(), Malformed> {
            let (_, wt) = self.key()?;
            self.skip(wt)
        }
    }
}
