//! Hand-written protobuf scanning and encoding for the hot messages (plans, worker responses,
//! worker commands). Scanning borrows from the input; nothing is allocated per field.

/// A protobuf message that could not be scanned (truncated varint, bad length, bad wire type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// A cursor over an encoded protobuf message.
pub(crate) struct Rd<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Rd<'a> {
    #[inline]
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Rd { b, p: 0 }
    }

    #[inline]
    pub(crate) fn done(&self) -> bool {
        self.p >= self.b.len()
    }

    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Result<u64, Malformed> {
        let b = self.b;
        let p = self.p;
        if p < b.len() {
            let b0 = b[p];
            if b0 < 0x80 {
                self.p = p + 1;
                return Ok(b0 as u64);
            }
        }
        if p + 1 < b.len() {
            let b0 = b[p];
            let b1 = b[p + 1];
            if b1 < 0x80 {
                self.p = p + 2;
                return Ok((b0 & 0x7f) as u64 | (b1 as u64) << 7);
            }
        }
        self.varint_slow()
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, Malformed> {
        let b = self.b;
        let mut p = self.p;
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = *b.get(p).ok_or(Malformed)?;
            p += 1;
            if shift == 63 && byte > 1 {
                return Err(Malformed);
            }
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(Malformed);
            }
        }
        self.p = p;
        Ok(v)
    }

    /// Reads a field key: (field number, wire type).
    #[inline(always)]
    pub(crate) fn key(&mut self) -> Result<(u32, u8), Malformed> {
        let k = self.varint()?;
        let field = (k >> 3) as u32;
        if field == 0 || k >> 3 > u32::MAX as u64 {
            return Err(Malformed);
        }
        Ok((field, (k & 7) as u8))
    }

    /// Reads a length-delimited payload.
    #[inline(always)]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.varint()?;
        let end = (self.p as u64).checked_add(len).ok_or(Malformed)?;
        if end > self.b.len() as u64 {
            return Err(Malformed);
        }
        let s = &self.b[self.p..end as usize];
        self.p = end as usize;
        Ok(s)
    }

    /// Skips a field of wire type `wt`.
    pub(crate) fn skip(&mut self, wt: u8) -> Result<(), Malformed> {
        match wt {
            0 => {
                self.varint()?;
            }
            1 => self.advance(8)?,
            2 => {
                self.bytes()?;
            }
            5 => self.advance(4)?,
            _ => return Err(Malformed),
        }
        Ok(())
    }

    fn advance(&mut self, n: usize) -> Result<(), Malformed> {
        if self.p + n > self.b.len() {
            return Err(Malformed);
        }
        self.p += n;
        Ok(())
    }

    /// A varint field value, checking the wire type.
    #[inline]
    pub(crate) fn varint_of(&mut self, wt: u8) -> Result<u64, Malformed> {
        if wt != 0 {
            return Err(Malformed);
        }
        self.varint()
    }

    /// A length-delimited field value, checking the wire type.
    #[inline]
    pub(crate) fn bytes_of(&mut self, wt: u8) -> Result<&'a [u8], Malformed> {
        if wt != 2 {
            return Err(Malformed);
        }
        self.bytes()
    }
}

/// The fields of a `WorkerResponse` the server uses.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WorkerResp<'a> {
    pub(crate) rtype: i32,
    pub(crate) id: Option<i32>,
    pub(crate) size: u64,
    pub(crate) length: u64,
    pub(crate) error_msg: Option<&'a [u8]>,
}

/// Whether a `DataHeader` carries its three required fields (prost does not check proto2
/// `required`).
pub(crate) fn data_header_complete(b: &[u8]) -> bool {
    let mut r = Rd::new(b);
    let mut seen = 0u8;
    while !r.done() {
        let Ok((f, wt)) = r.key() else {
            return false;
        };
        if r.varint_of(wt).is_err() {
            return false;
        }
        if (1..=3).contains(&f) {
            seen |= 1 << f;
        }
    }
    seen == 0b1110
}

/// Scans a `WorkerResponse`.
#[inline]
pub(crate) fn scan_worker_response(b: &[u8]) -> Result<WorkerResp<'_>, Malformed> {
    let mut r = Rd::new(b);
    let mut out = WorkerResp::default();
    let mut have_type = false;
    while !r.done() {
        let (f, wt) = r.key()?;
        match f {
            1 => {
                out.rtype = r.varint_of(wt)? as i32;
                have_type = true;
            }
            2 => out.id = Some(r.varint_of(wt)? as i32),
            3 => out.size = r.varint_of(wt)?,
            4 => out.length = r.varint_of(wt)?,
            100 => out.error_msg = Some(r.bytes_of(wt)?),
            _ => r.skip(wt)?,
        }
    }
    if !have_type {
        return Err(Malformed);
    }
    Ok(out)
}

/// The fields of a `ClientRequest` the server uses.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ClientReq<'a> {
    pub(crate) rtype: i32,
    pub(crate) plan: Option<&'a [u8]>,
    pub(crate) id: Option<i32>,
    pub(crate) trace_path: Option<&'a [u8]>,
}

/// Scans a `ClientRequest`.
pub(crate) fn scan_client_request(b: &[u8]) -> Result<ClientReq<'_>, Malformed> {
    let mut r = Rd::new(b);
    let mut out = ClientReq::default();
    let mut have_type = false;
    while !r.done() {
        let (f, wt) = r.key()?;
        match f {
            1 => {
                out.rtype = r.varint_of(wt)? as i32;
                have_type = true;
            }
            2 => out.plan = Some(r.bytes_of(wt)?),
            3 => out.id = Some(r.varint_of(wt)? as i32),
            7 => out.trace_path = Some(r.bytes_of(wt)?),
            _ => r.skip(wt)?,
        }
    }
    if !have_type {
        return Err(Malformed);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Encoding

#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(crate) fn put_i32(out: &mut Vec<u8>, key: u8, v: i32) {
    out.push(key);
    put_varint(out, v as i64 as u64);
}

#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, key: u8, v: &[u8]) {
    out.push(key);
    put_varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// Starts a frame: reserves the 8-byte length prefix and returns its position.
#[inline]
pub(crate) fn frame_begin(out: &mut Vec<u8>) -> usize {
    let p = out.len();
    out.extend_from_slice(&[0u8; 8]);
    p
}

/// Ends the frame started at `p` by writing its length prefix.
#[inline]
pub(crate) fn frame_end(out: &mut [u8], p: usize) {
    let len = (out.len() - p - 8) as u64;
    out[p..p + 8].copy_from_slice(&len.to_le_bytes());
}

/// Writes `v` as a varint at `buf[*p..]` (the caller guarantees 10 bytes of room).
#[inline(always)]
fn stack_varint(buf: &mut [u8], p: &mut usize, mut v: u64) {
    while v >= 0x80 {
        buf[*p] = (v as u8) | 0x80;
        *p += 1;
        v >>= 7;
    }
    buf[*p] = v as u8;
    *p += 1;
}

/// `WorkerCommand{TASK, id, task_type, task_config, task_inputs (unpacked), n_cpus, checkpoint_path: ""}`.
#[inline]
pub(crate) fn push_task(
    out: &mut Vec<u8>,
    id: i32,
    task_type: i32,
    config: &[u8],
    inputs: &[i32],
    n_cpus: u32,
) {
    // Small tasks (the common case) are encoded on the stack and appended at once.
    const SMALL: usize = 160;
    if config.len() <= 48 && inputs.len() <= 8 {
        let mut buf = [0u8; SMALL];
        let mut p = 8;
        buf[p] = 0x08;
        buf[p + 1] = 0x01;
        buf[p + 2] = 0x10;
        p += 3;
        stack_varint(&mut buf, &mut p, id as i64 as u64);
        buf[p] = 0x18;
        p += 1;
        stack_varint(&mut buf, &mut p, task_type as i64 as u64);
        buf[p] = 0x22;
        buf[p + 1] = config.len() as u8;
        p += 2;
        buf[p..p + config.len()].copy_from_slice(config);
        p += config.len();
        for &i in inputs {
            buf[p] = 0x28;
            p += 1;
            stack_varint(&mut buf, &mut p, i as i64 as u64);
        }
        buf[p] = 0x30;
        p += 1;
        stack_varint(&mut buf, &mut p, n_cpus as u64);
        buf[p] = 0x3a;
        buf[p + 1] = 0;
        p += 2;
        buf[..8].copy_from_slice(&((p - 8) as u64).to_le_bytes());
        out.extend_from_slice(&buf[..p]);
        return;
    }
    let p = frame_begin(out);
    out.extend_from_slice(&[0x08, 0x01]);
    put_i32(out, 0x10, id);
    put_i32(out, 0x18, task_type);
    put_bytes(out, 0x22, config);
    for &i in inputs {
        put_i32(out, 0x28, i);
    }
    put_i32(out, 0x30, n_cpus as i32);
    out.extend_from_slice(&[0x3a, 0x00]);
    frame_end(out, p);
}

/// `WorkerCommand{SEND, id, address}`.
pub(crate) fn push_send(out: &mut Vec<u8>, id: i32, address: &str) {
    let p = frame_begin(out);
    out.extend_from_slice(&[0x08, 0x02]);
    put_i32(out, 0x10, id);
    put_bytes(out, 0x52, address.as_bytes());
    frame_end(out, p);
}

/// `WorkerCommand{REMOVE, id}`.
#[inline]
pub(crate) fn push_remove(out: &mut Vec<u8>, id: i32) {
    let mut buf = [0u8; 24];
    let mut p = 8;
    buf[p] = 0x08;
    buf[p + 1] = 0x03;
    buf[p + 2] = 0x10;
    p += 3;
    stack_varint(&mut buf, &mut p, id as i64 as u64);
    buf[..8].copy_from_slice(&((p - 8) as u64).to_le_bytes());
    out.extend_from_slice(&buf[..p]);
}

/// `ClientResponse{TASK_FINISHED, id}`.
#[inline]
pub(crate) fn push_task_finished(out: &mut Vec<u8>, id: i32) {
    let p = frame_begin(out);
    out.extend_from_slice(&[0x08, 0x02]);
    put_i32(out, 0x38, id);
    frame_end(out, p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::comm::{WorkerCommand, WorkerResponse};
    use prost::Message;

    #[test]
    fn task_frame_matches_prost() {
        let mut out = Vec::new();
        push_task(&mut out, -5, 7, b"cfg", &[1, 2, 300], 2);
        let cmd = WorkerCommand::decode(&out[8..]).unwrap();
        assert_eq!(
            u64::from_le_bytes(out[..8].try_into().unwrap()) as usize,
            out.len() - 8
        );
        assert_eq!(cmd.r#type, 1);
        assert_eq!(cmd.id, Some(-5));
        assert_eq!(cmd.task_type, Some(7));
        assert_eq!(cmd.task_config.as_deref(), Some(&b"cfg"[..]));
        assert_eq!(cmd.task_inputs, vec![1, 2, 300]);
        assert_eq!(cmd.n_cpus, Some(2));
        assert_eq!(cmd.checkpoint_path.as_deref(), Some(""));
    }

    #[test]
    fn big_task_and_remove_frames() {
        let mut out = Vec::new();
        let inputs: Vec<i32> = (0..100).map(|i| i * 1000 - 7).collect();
        push_task(&mut out, i32::MAX, 300, &[7u8; 200], &inputs, 0);
        push_remove(&mut out, -1);
        push_remove(&mut out, 1 << 30);
        let len = u64::from_le_bytes(out[..8].try_into().unwrap()) as usize;
        let cmd = WorkerCommand::decode(&out[8..8 + len]).unwrap();
        assert_eq!(cmd.task_inputs, inputs);
        assert_eq!(cmd.task_config.as_deref().map(<[u8]>::len), Some(200));
        let rest = &out[8 + len..];
        let l2 = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
        let r = WorkerCommand::decode(&rest[8..8 + l2]).unwrap();
        assert_eq!((r.r#type, r.id), (3, Some(-1)));
        let r = WorkerCommand::decode(&rest[16 + l2..]).unwrap();
        assert_eq!(r.id, Some(1 << 30));
        let mut rd = Rd::new(&[0x80, 0x01, 0xff, 0x7f, 0x05]);
        assert_eq!(rd.varint(), Ok(128));
        assert_eq!(rd.varint(), Ok(0x3fff));
        assert_eq!(rd.varint(), Ok(5));
        assert!(rd.done());
    }

    #[test]
    fn scan_response_and_reject_garbage() {
        let m = WorkerResponse {
            r#type: 4,
            id: 77,
            size: Some(1 << 40),
            length: None,
            error_msg: Some(b"boom"[..].into()),
        };
        let b = m.encode_to_vec();
        let r = scan_worker_response(&b).unwrap();
        assert_eq!((r.rtype, r.id, r.size), (4, Some(77), 1 << 40));
        assert_eq!(r.error_msg, Some(&b"boom"[..]));
        assert!(scan_worker_response(&[0xff, 0xff]).is_err());
        assert!(scan_worker_response(&[0x0a, 0x05, 0x01]).is_err());
        assert!(scan_worker_response(&[0x0f]).is_err());
    }
}
