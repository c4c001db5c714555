//! Hand-written hot-path codecs: a zero-copy `WorkerCommand` scanner and a `WorkerResponse`
//! encoder writing straight into the output buffer (no per-message allocation). Both are
//! checked byte-for-byte against prost in the tests.

/// `WorkerCommand.type` values.
pub(crate) mod cmd {
    pub const TASK: i32 = 1;
    pub const SEND: i32 = 2;
    pub const REMOVE: i32 = 3;
    pub const DICTIONARY: i32 = 8;
    pub const UPDATE: i32 = 9;
    pub const LOAD_CHECKPOINT: i32 = 10;
}

/// `WorkerResponse.type` values.
pub(crate) mod resp {
    pub const FINISHED: i32 = 1;
    pub const FINISHED_AND_CHECKPOINTING: i32 = 2;
    pub const TRANSFERED: i32 = 3;
    pub const FAILED: i32 = 4;
    pub const CHECKPOINT_WRITTEN: i32 = 5;
    pub const CHECKPOINT_WRITE_FAILED: i32 = 6;
    pub const CHECKPOINT_LOADED: i32 = 7;
    pub const CHECKPOINT_LOAD_FAILED: i32 = 8;
}

/// The fields of one `WorkerCommand`, borrowed from the frame. `task_inputs` go to a caller's
/// reusable vector; `symbols` (DICTIONARY only) are not collected: decode those with prost.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Command<'a> {
    pub ty: Option<i32>,
    pub id: Option<i32>,
    pub task_type: Option<i32>,
    pub config: &'a [u8],
    pub n_cpus: i32,
    pub checkpoint_path: &'a [u8],
    pub address: &'a [u8],
    pub trace_path: &'a [u8],
    pub worker_id: Option<i32>,
}

#[inline]
fn varint(b: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let Some(&byte) = b.get(*pos) else {
            return Err("truncated varint");
        };
        *pos += 1;
        if shift < 64 {
            v |= u64::from(byte & 0x7f) << shift;
        }
        if byte & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift >= 70 {
            return Err("varint too long");
        }
    }
}

fn bytes<'a>(b: &'a [u8], pos: &mut usize) -> Result<&'a [u8], &'static str> {
    let len = varint(b, pos)?;
    let end = pos
        .checked_add(usize::try_from(len).map_err(|_| "length overflow")?)
        .filter(|&e| e <= b.len())
        .ok_or("truncated field")?;
    let s = &b[*pos..end];
    *pos = end;
    Ok(s)
}

/// Scans a `WorkerCommand` frame. Unknown fields are skipped; inputs (packed or not) are
/// appended to `inputs` (cleared first).
pub(crate) fn decode_command<'a>(
    b: &'a [u8],
    inputs: &mut Vec<i32>,
) -> Result<Command<'a>, &'static str> {
    inputs.clear();
    let mut c = Command::default();
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        let (field, wt) = (key >> 3, key & 7);
        match (field, wt) {
            (1, 0) => c.ty = Some(varint(b, &mut pos)? as i32),
            (2, 0) => c.id = Some(varint(b, &mut pos)? as i32),
            (3, 0) => c.task_type = Some(varint(b, &mut pos)? as i32),
            (4, 2) => c.config = bytes(b, &mut pos)?,
            (5, 0) => inputs.push(varint(b, &mut pos)? as i32),
            (5, 2) => {
                let packed = bytes(b, &mut pos)?;
                let mut p = 0;
                while p < packed.len() {
                    inputs.push(varint(packed, &mut p)? as i32);
                }
            }
            (6, 0) => c.n_cpus = varint(b, &mut pos)? as i32,
            (7, 2) => c.checkpoint_path = bytes(b, &mut pos)?,
            (10, 2) => c.address = bytes(b, &mut pos)?,
            (120, 2) => c.trace_path = bytes(b, &mut pos)?,
            (121, 0) => c.worker_id = Some(varint(b, &mut pos)? as i32),
            (_, 0) => {
                varint(b, &mut pos)?;
            }
            (_, 1) => {
                pos = pos
                    .checked_add(8)
                    .filter(|&p| p <= b.len())
                    .ok_or("truncated")?
            }
            (_, 5) => {
                pos = pos
                    .checked_add(4)
                    .filter(|&p| p <= b.len())
                    .ok_or("truncated")?
            }
            (_, 2) => {
                bytes(b, &mut pos)?;
            }
            _ => return Err("unsupported wire type"),
        }
    }
    Ok(c)
}

#[inline]
fn put_varint(buf: &mut [u8], n: &mut usize, mut v: u64) {
    while v >= 0x80 {
        buf[*n] = (v as u8) | 0x80;
        v >>= 7;
        *n += 1;
    }
    buf[*n] = v as u8;
    *n += 1;
}

/// Appends a framed `WorkerResponse{type, id, size?, length?}` (no error message).
#[inline]
pub(crate) fn push_response(out: &mut Vec<u8>, ty: i32, id: i32, size_len: Option<(u64, u64)>) {
    let mut buf = [0u8; 8 + 48];
    let mut n = 8;
    buf[n] = 0x08;
    n += 1;
    put_varint(&mut buf, &mut n, ty as u64);
    buf[n] = 0x10;
    n += 1;
    put_varint(&mut buf, &mut n, id as i64 as u64);
    if let Some((size, length)) = size_len {
        buf[n] = 0x18;
        n += 1;
        put_varint(&mut buf, &mut n, size);
        buf[n] = 0x20;
        n += 1;
        put_varint(&mut buf, &mut n, length);
    }
    buf[..8].copy_from_slice(&((n - 8) as u64).to_le_bytes());
    out.extend_from_slice(&buf[..n]);
}

/// Appends a framed `WorkerResponse{type, id, error_msg}`.
pub(crate) fn push_error(out: &mut Vec<u8>, ty: i32, id: i32, msg: &[u8]) {
    let mut head = [0u8; 32];
    let mut n = 0;
    head[n] = 0x08;
    n += 1;
    put_varint(&mut head, &mut n, ty as u64);
    head[n] = 0x10;
    n += 1;
    put_varint(&mut head, &mut n, id as i64 as u64);
    // field 100, wire type 2: key 802 = varint a2 06
    head[n] = 0xa2;
    head[n + 1] = 0x06;
    n += 2;
    put_varint(&mut head, &mut n, msg.len() as u64);
    out.extend_from_slice(&((n + msg.len()) as u64).to_le_bytes());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(msg);
}
