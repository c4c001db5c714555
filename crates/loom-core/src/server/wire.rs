//! The server's hot-path messages on the crate's one protobuf scanner and writer
//! ([`crate::proto::scan`], [`crate::proto::write`]): scanners for `ClientRequest`,
//! `WorkerResponse` and `DataHeader` that borrow from the frame, and encoders for `TASK`,
//! `SEND`, `REMOVE`, `LOAD_CHECKPOINT` and `TASK_FINISHED` writing straight into a connection's buffer.

use crate::proto::scan::{Malformed, Scanner};
use crate::proto::write::{frame_begin, frame_end, put_bytes, put_i32, FrameWriter};

use super::ids::TaskId;

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
    let mut r = Scanner::new(b);
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

/// A FINISHED `WorkerResponse` in the layout workers send it, `type`, `id`, `size` and nothing
/// else, with an id of at most `i32::MAX`: `(id, size)`. None for anything else (read by
/// [`scan_worker_response`]). The hot case of a worker's frames: the usual ones (an id below
/// 2^21, a size below 128: up to 3 and 1 varint bytes, a frame of 6 to 8 bytes) read as one
/// little-endian word, whose fixed bytes and varint continuation bits are compared at once
/// under a mask ([`UsualFinished`]); any other by three byte comparisons and the scanner's
/// varints ([`scan_finished_varints`]; the tests `usual_finished_frames_agree_with_the_scanner`
/// and `plain_finished_agrees_with_the_scanner` compare them with the scanner).
#[inline(always)]
pub(crate) fn scan_plain_finished(b: &[u8]) -> Option<(i32, u64)> {
    // Each word read by one or two loads (two overlapping ones for 7 bytes).
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as u64;
    let usual = match b.len() {
        6 => {
            let hi = u16::from_le_bytes(b[4..6].try_into().expect("2 bytes")) as u64;
            UsualFinished::<1>::read(u32_at(0) | hi << 32)
        }
        7 => UsualFinished::<2>::read(u32_at(0) | u32_at(3) << 24),
        8 => UsualFinished::<3>::read(u64::from_le_bytes(b.try_into().expect("8 bytes"))),
        _ => None,
    };
    match usual {
        Some(r) => Some(r),
        None => scan_finished_varints(b),
    }
}

/// The usual FINISHED frame whose id takes `N` varint bytes (1 to 3), as a little-endian word
/// (zero past the frame): `[TYPE, FINISHED, ID, id..., RESPONSE_SIZE, size]`, the id's bytes but
/// its last with the continuation bit set, its last and the size's one byte without.
struct UsualFinished<const N: usize>;

impl<const N: usize> UsualFinished<N> {
    /// The word's bits that must be as in [`UsualFinished::WANT`]: the three header bytes,
    /// each varint byte's continuation bit and the `RESPONSE_SIZE` key.
    const MASK: u64 = 0xff_ffff | Self::CONT << 24 | 0xff << (24 + 8 * N) | 0x80 << (32 + 8 * N);
    /// Those bits in a usual frame: the id's bytes before its last continue.
    const WANT: u64 = (key::TYPE as u64)
        | (crate::proto::comm::worker_response::Type::Finished as u64) << 8
        | (key::ID as u64) << 16
        | (Self::CONT & !(0x80 << (8 * (N - 1)))) << 24
        | (key::RESPONSE_SIZE as u64) << (24 + 8 * N);
    /// The continuation bit of each of the id's `N` bytes (from byte 0 of the id).
    const CONT: u64 = 0x80_8080 & ((1 << (8 * N)) - 1);

    /// `(id, size)` if `v` is such a frame.
    #[inline(always)]
    fn read(v: u64) -> Option<(i32, u64)> {
        if v & Self::MASK != Self::WANT {
            return None;
        }
        let ids = v >> 24;
        let mut id = ids & 0x7f;
        if N > 1 {
            id |= (ids >> 1) & (0x7f << 7);
        }
        if N > 2 {
            id |= (ids >> 2) & (0x7f << 14);
        }
        Some((id as i32, v >> (32 + 8 * N)))
    }
}

/// [`scan_plain_finished`] of any frame: three byte comparisons, then the scanner's varints.
#[inline(always)]
fn scan_finished_varints(b: &[u8]) -> Option<(i32, u64)> {
    const FINISHED: u8 = crate::proto::comm::worker_response::Type::Finished as u8;
    let [key::TYPE, FINISHED, key::ID, ..] = b else {
        return None;
    };
    let mut r = Scanner::at(b, 3);
    let id = r.varint().ok()?;
    if !r.eat(key::RESPONSE_SIZE) {
        return None;
    }
    let size = r.varint().ok()?;
    (r.done() && id <= i32::MAX as u64).then_some((id as i32, size))
}

/// Scans a `WorkerResponse`.
#[inline(always)]
pub(crate) fn scan_worker_response(b: &[u8]) -> Result<WorkerResp<'_>, Malformed> {
    match scan_usual_response(b) {
        Some(r) => Ok(r),
        None => scan_any_response(b),
    }
}

/// A `WorkerResponse` in the layout every worker sends for FINISHED (and most others): `type`,
/// `id`, then `size` and `length` if present, in field order, nothing else. None: anything
/// else (an error message, another order, a malformed message), for [`scan_any_response`].
#[inline(always)]
fn scan_usual_response(b: &[u8]) -> Option<WorkerResp<'_>> {
    let mut r = Scanner::new(b);
    if !r.eat(key::TYPE) {
        return None;
    }
    let rtype = r.varint().ok()? as i32;
    if !r.eat(key::ID) {
        return None;
    }
    let id = Some(r.varint().ok()? as i32);
    let mut out = WorkerResp {
        rtype,
        id,
        ..WorkerResp::default()
    };
    if r.eat(key::RESPONSE_SIZE) {
        out.size = r.varint().ok()?;
    }
    if r.eat(key::RESPONSE_LENGTH) {
        out.length = r.varint().ok()?;
    }
    r.done().then_some(out)
}

/// Scans a `WorkerResponse` of any layout.
#[inline(never)]
fn scan_any_response(b: &[u8]) -> Result<WorkerResp<'_>, Malformed> {
    let mut r = Scanner::new(b);
    let mut out = WorkerResp::default();
    let mut have_type = false;
    while !r.done() {
        let (f, wt) = r.key()?;
        match f {
            1 => {
                out.rtype = r.i32_of(wt)?;
                have_type = true;
            }
            2 => out.id = Some(r.i32_of(wt)?),
            3 => out.size = r.varint_of(wt)?,
            4 => out.length = r.varint_of(wt)?,
            100 => out.error_msg = Some(r.bytes_of(wt)?),
            _ => r.skip(wt)?,
        }
    }
    if !have_type {
        return Err(Malformed("no type"));
    }
    Ok(out)
}

/// The fields of a `ClientRequest` the server uses.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientReq<'a> {
    pub(crate) rtype: i32,
    pub(crate) plan: Option<&'a [u8]>,
    pub(crate) id: Option<i32>,
    /// `ids` (field 101, ours) of a FETCH of many results.
    pub(crate) ids: Vec<i32>,
    pub(crate) trace_path: Option<&'a [u8]>,
    /// `load_checkpoints` (field 4) of a PLAN.
    pub(crate) load_checkpoints: bool,
    /// `relay` (field 102, ours) of a FETCH: relay it even to a `fetch-direct` client.
    pub(crate) relay: bool,
}

/// Scans a `ClientRequest`.
pub(crate) fn scan_client_request(b: &[u8]) -> Result<ClientReq<'_>, Malformed> {
    let mut r = Scanner::new(b);
    let mut out = ClientReq::default();
    let mut have_type = false;
    while !r.done() {
        let (f, wt) = r.key()?;
        match f {
            1 => {
                out.rtype = r.i32_of(wt)?;
                have_type = true;
            }
            2 => out.plan = Some(r.bytes_of(wt)?),
            3 => out.id = Some(r.i32_of(wt)?),
            4 => out.load_checkpoints = r.varint_of(wt)? != 0,
            7 => out.trace_path = Some(r.bytes_of(wt)?),
            101 => r.repeated_i32(wt, |id| out.ids.push(id))?,
            102 => out.relay = r.varint_of(wt)? != 0,
            _ => r.skip(wt)?,
        }
    }
    if !have_type {
        return Err(Malformed("no type"));
    }
    Ok(out)
}

/// Field keys (`field << 3 | wire type`) of the messages encoded here, and the message types
/// (from the generated enums) they carry.
mod key {
    use crate::proto::comm::{client_response, worker_command};

    /// `WorkerCommand.type` / `ClientResponse.type` (field 1, varint).
    pub const TYPE: u8 = 1 << 3;
    /// `WorkerCommand.id` (field 2, varint).
    pub const ID: u8 = 2 << 3;
    /// `WorkerCommand.task_type` (field 3, varint).
    pub const TASK_TYPE: u8 = 3 << 3;
    /// `WorkerCommand.task_config` (field 4, bytes).
    pub const TASK_CONFIG: u8 = 4 << 3 | 2;
    /// `WorkerCommand.task_inputs` (field 5, varint, unpacked as the original sends them).
    pub const TASK_INPUT: u8 = 5 << 3;
    /// `WorkerCommand.n_cpus` (field 6, varint).
    pub const N_CPUS: u8 = 6 << 3;
    /// `WorkerCommand.checkpoint_path` (field 7, string; always sent, empty without a checkpoint).
    pub const CHECKPOINT_PATH: u8 = 7 << 3 | 2;
    /// `WorkerCommand.address` (field 10, string).
    pub const ADDRESS: u8 = 10 << 3 | 2;
    /// `ClientResponse.id` (field 7, varint).
    pub const RESPONSE_ID: u8 = 7 << 3;
    /// `WorkerResponse.size` (field 3, varint).
    pub const RESPONSE_SIZE: u8 = 3 << 3;
    /// `WorkerResponse.length` (field 4, varint).
    pub const RESPONSE_LENGTH: u8 = 4 << 3;

    pub const TASK: u8 = worker_command::Type::Task as u8;
    pub const SEND: u8 = worker_command::Type::Send as u8;
    pub const REMOVE: u8 = worker_command::Type::Remove as u8;
    pub const LOAD_CHECKPOINT: u8 = worker_command::Type::LoadCheckpoint as u8;
    pub const CANCEL: u8 = worker_command::Type::Cancel as u8;
    pub const TASK_FINISHED: u8 = client_response::Type::TaskFinished as u8;
}

/// `WorkerCommand{TASK, id, task_type, task_config, task_inputs (unpacked), n_cpus,
/// checkpoint_path}` (the path is "" for a task without a checkpoint, as the original sends).
#[inline(always)]
pub(crate) fn push_task(
    out: &mut Vec<u8>,
    id: TaskId,
    task_type: i32,
    config: &[u8],
    inputs: &[TaskId],
    n_cpus: u32,
    checkpoint: &str,
) {
    // Every field is a one-byte key and a varint of at most 10 bytes (an i32 < 0 takes 10),
    // plus the bytes of the config and the path: type 2, id 11, task type 11, config 11 + its
    // bytes, 11 per input, n_cpus 11, path 11 + its bytes. The inputs are reserved for
    // [`INPUTS_AT_ONCE`] at a time: 11 bytes each for an array over a million tasks would grow
    // the buffer for bytes it does not use (~5 per input are).
    let first = inputs.len().min(INPUTS_AT_ONCE);
    let mut w = FrameWriter::begin(out, 68 + config.len() + 11 * first + checkpoint.len());
    // SAFETY: at most the bytes counted above, the inputs beyond the first ones reserved
    // before they are written.
    unsafe {
        w.put_byte(key::TYPE);
        w.put_byte(key::TASK);
        w.put_byte(key::ID);
        w.put_varint(id.get() as i64 as u64);
        w.put_byte(key::TASK_TYPE);
        w.put_varint(task_type as i64 as u64);
        w.put_byte(key::TASK_CONFIG);
        w.put_varint(config.len() as u64);
        w.put_slice(config);
        for &i in &inputs[..first] {
            w.put_byte(key::TASK_INPUT);
            w.put_varint(i.get() as i64 as u64);
        }
        if inputs.len() > first {
            for part in inputs[first..].chunks(INPUTS_AT_ONCE) {
                w.reserve(11 * part.len() + 22 + checkpoint.len());
                for &i in part {
                    w.put_byte(key::TASK_INPUT);
                    w.put_varint(i.get() as i64 as u64);
                }
            }
        }
        w.put_byte(key::N_CPUS);
        w.put_varint(n_cpus as u64);
        w.put_byte(key::CHECKPOINT_PATH);
        w.put_varint(checkpoint.len() as u64);
        w.put_slice(checkpoint.as_bytes());
    }
    w.finish();
}

/// Inputs of a TASK frame reserved for at a time (see [`push_task`]).
const INPUTS_AT_ONCE: usize = 256;

/// Marks the TASK or LOAD_CHECKPOINT frame that starts at `frame` (the last one in `out`) as
/// traced: appends `traced = true` (field 122, our extension) and fixes the frame's length.
/// Only tasks of the tracing client pay for it.
pub(crate) fn mark_traced(out: &mut Vec<u8>, frame: usize) {
    out.extend_from_slice(&[0xd0, 0x07, 0x01]); // key 122 << 3 | varint, true
    let len = (out.len() - frame - 8) as u64;
    out[frame..frame + 8].copy_from_slice(&len.to_le_bytes());
}

/// `WorkerCommand{LOAD_CHECKPOINT, id, checkpoint_path}`.
pub(crate) fn push_load_checkpoint(out: &mut Vec<u8>, id: TaskId, path: &str) {
    let p = frame_begin(out);
    out.extend_from_slice(&[key::TYPE, key::LOAD_CHECKPOINT]);
    put_i32(out, key::ID, id.get());
    put_bytes(out, key::CHECKPOINT_PATH, path.as_bytes());
    frame_end(out, p);
}

/// `WorkerCommand{SEND, id, address}`.
pub(crate) fn push_send(out: &mut Vec<u8>, id: TaskId, address: &str) {
    let p = frame_begin(out);
    out.extend_from_slice(&[key::TYPE, key::SEND]);
    put_i32(out, key::ID, id.get());
    put_bytes(out, key::ADDRESS, address.as_bytes());
    frame_end(out, p);
}

/// `ClientResponse{LOCATION, id: cid, location}` (ours, `fetch-direct`): client result `cid` is
/// object `id` of `size` bytes on the worker whose data port is `address`.
pub(crate) fn push_location(out: &mut Vec<u8>, cid: i32, address: &str, id: TaskId, size: u64) {
    use crate::proto::comm::{client_response, ClientResponse, ObjectLocation};
    crate::frame::push_frame(
        out,
        &ClientResponse {
            r#type: client_response::Type::Location as i32,
            id: Some(cid),
            location: Some(ObjectLocation {
                address: address.to_owned(),
                object: id.get(),
                size: size as i64,
            }),
            ..Default::default()
        },
    );
}

/// `WorkerCommand{REMOVE, id}`.
#[inline]
pub(crate) fn push_remove(out: &mut Vec<u8>, id: TaskId) {
    let mut r = Removes::begin(out, 1);
    r.push(id);
    r.finish();
}

/// `WorkerCommand{CANCEL, id}` (our extension; only to workers announcing "cancel").
pub(crate) fn push_cancel(out: &mut Vec<u8>, id: TaskId) {
    let mut w = FrameWriter::begin(out, 13);
    // SAFETY: 3 bytes and a varint of at most 10.
    unsafe {
        w.put_byte(key::TYPE);
        w.put_byte(key::CANCEL);
        w.put_byte(key::ID);
        w.put_varint(id.get() as i64 as u64);
    }
    w.finish();
}

/// REMOVE frames to one worker ([`push_remove`] is one of them), written one after another
/// into one reservation: an event freeing many objects on one worker (a FINISHED freeing its
/// inputs, an array's consumer freeing thousands) checks the buffer's capacity and commits its
/// length once, not per object. Each object still gets its own `WorkerCommand{REMOVE, id}`
/// frame: the original's workers read one id per REMOVE (wire compatibility, spec 2.3).
/// The frames are appended by [`Removes::finish`] (and those written before room is made
/// again, when a batch outgrows its reservation).
pub(crate) struct Removes<'a> {
    out: &'a mut Vec<u8>,
    /// Where the next frame goes (inside `out`'s allocation, past its length).
    p: *mut u8,
    /// Where the reserved room ends: a frame is written only if [`Removes::MAX`] bytes fit.
    end: *mut u8,
}

impl<'a> Removes<'a> {
    /// The most bytes one frame takes: the 8-byte length prefix, three bytes of keys and
    /// type, and a varint of at most 10 (a negative id).
    const MAX: usize = 8 + 13;

    /// Room is reserved for at most this many frames at a time: a consumer of a million
    /// inputs that frees a few of them does not reserve room for a million.
    const CHUNK: usize = 1024;

    /// REMOVE frames to be appended to `out`, `most` of them or fewer (room for more is made
    /// as needed).
    #[inline(always)]
    pub(crate) fn begin(out: &'a mut Vec<u8>, most: usize) -> Self {
        out.reserve(most.min(Self::CHUNK) * Self::MAX);
        let (p, end) = Self::room(out);
        Removes { out, p, end }
    }

    /// The spare capacity of `out`: where it starts and ends.
    #[inline(always)]
    fn room(out: &mut Vec<u8>) -> (*mut u8, *mut u8) {
        let spare = out.spare_capacity_mut().as_mut_ptr_range();
        (spare.start.cast(), spare.end.cast())
    }

    /// Appends `WorkerCommand{REMOVE, id}`.
    #[inline(always)]
    pub(crate) fn push(&mut self, id: TaskId) {
        if (self.end as usize) - (self.p as usize) < Self::MAX {
            (self.p, self.end) = Self::more(self.out, self.p);
        }
        let v = id.get() as i64 as u64;
        // SAFETY: `MAX` bytes from `p` lie in `out`'s spare capacity (checked above), and
        // the frame takes at most that; `p` stays within it.
        unsafe {
            let body = self.p.add(8);
            body.write(key::TYPE);
            body.add(1).write(key::REMOVE);
            body.add(2).write(key::ID);
            let n = put_varint_raw(body.add(3), v);
            self.p
                .cast::<[u8; 8]>()
                .write_unaligned(((3 + n) as u64).to_le_bytes());
            self.p = body.add(3 + n);
        }
    }

    /// Commits the frames written so far (up to `p`) and reserves room for
    /// [`Removes::CHUNK`] more; returns the new room (out of line: past the first
    /// reservation, rare; and with the writer's state passed by value, so that it stays in
    /// registers).
    #[cold]
    #[inline(never)]
    fn more(out: &mut Vec<u8>, p: *mut u8) -> (*mut u8, *mut u8) {
        Self::commit(out, p);
        out.reserve(Self::CHUNK * Self::MAX);
        Self::room(out)
    }

    /// Sets `out`'s length to cover the frames written up to `p`.
    #[inline(always)]
    fn commit(out: &mut Vec<u8>, p: *mut u8) {
        // SAFETY: `p` lies in `out`'s allocation at or past its length, and every byte up to
        // it was written by `push`.
        unsafe {
            let len = p.offset_from(out.as_ptr()) as usize;
            out.set_len(len);
        }
    }

    /// Appends the frames written.
    #[inline(always)]
    pub(crate) fn finish(self) {
        Self::commit(self.out, self.p);
    }
}

/// Writes `v` as a varint at `p`; returns its length (1 to 10).
///
/// # Safety
/// 10 bytes from `p` are writable.
#[inline(always)]
unsafe fn put_varint_raw(p: *mut u8, mut v: u64) -> usize {
    // SAFETY: at most 10 bytes from `p` (the caller's contract).
    unsafe {
        // Up to three bytes (ids below 2^21) without a loop.
        if v < 1 << 7 {
            p.write(v as u8);
            return 1;
        }
        if v < 1 << 14 {
            p.write(v as u8 | 0x80);
            p.add(1).write((v >> 7) as u8);
            return 2;
        }
        if v < 1 << 21 {
            p.write(v as u8 | 0x80);
            p.add(1).write((v >> 7) as u8 | 0x80);
            p.add(2).write((v >> 14) as u8);
            return 3;
        }
        let mut n = 0;
        while v >= 0x80 {
            p.add(n).write(v as u8 | 0x80);
            n += 1;
            v >>= 7;
        }
        p.add(n).write(v as u8);
        n + 1
    }
}

/// `ClientResponse{TASK_FINISHED, id}`.
#[inline]
pub(crate) fn push_task_finished(out: &mut Vec<u8>, id: i32) {
    let p = frame_begin(out);
    out.extend_from_slice(&[key::TYPE, key::TASK_FINISHED]);
    put_i32(out, key::RESPONSE_ID, id);
    frame_end(out, p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::comm::{worker_command, WorkerCommand, WorkerResponse};
    use prost::Message;

    fn ids(v: &[i32]) -> Vec<TaskId> {
        v.iter().map(|&i| TaskId(i)).collect()
    }

    #[test]
    fn task_frame_matches_prost() {
        let mut out = Vec::new();
        push_task(&mut out, TaskId(-5), 7, b"cfg", &ids(&[1, 2, 300]), 2, "");
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
    fn task_frames_of_every_size_tier_match_prost() {
        // Around the tiers' limits (16/48 config bytes, 4/8 inputs), with the longest ids.
        for cfg_len in [0, 1, 16, 17, 48, 49] {
            for n_in in [0, 1, 4, 5, 8, 9] {
                let cfg = vec![b'c'; cfg_len];
                let inputs: Vec<i32> = (0..n_in)
                    .map(|k| if k % 2 == 0 { -1 } else { i32::MAX })
                    .collect();
                let mut out = vec![9u8; 3];
                push_task(
                    &mut out,
                    TaskId(i32::MIN),
                    i32::MAX,
                    &cfg,
                    &ids(&inputs),
                    u32::MAX,
                    "",
                );
                let len = u64::from_le_bytes(out[3..11].try_into().unwrap()) as usize;
                assert_eq!(out.len(), 11 + len);
                let cmd = WorkerCommand::decode(&out[11..]).unwrap();
                assert_eq!(cmd.id, Some(i32::MIN));
                assert_eq!(cmd.task_type, Some(i32::MAX));
                assert_eq!(cmd.task_config.as_deref(), Some(&cfg[..]));
                assert_eq!(cmd.task_inputs, inputs);
                assert_eq!(cmd.n_cpus, Some(-1));
            }
        }
    }

    #[test]
    fn checkpoint_task_and_load_frames_match_prost() {
        let mut out = Vec::new();
        push_task(&mut out, TaskId(3), 7, b"x", &ids(&[1]), 0, "/cp/a");
        let len = u64::from_le_bytes(out[..8].try_into().unwrap()) as usize;
        let cmd = WorkerCommand::decode(&out[8..8 + len]).unwrap();
        assert_eq!(cmd.checkpoint_path.as_deref(), Some("/cp/a"));
        assert_eq!(cmd.task_inputs, vec![1]);
        let mut out = Vec::new();
        push_load_checkpoint(&mut out, TaskId(9), "/cp/b");
        let cmd = WorkerCommand::decode(&out[8..]).unwrap();
        assert_eq!(cmd.r#type, worker_command::Type::LoadCheckpoint as i32);
        assert_eq!(cmd.id, Some(9));
        assert_eq!(cmd.checkpoint_path.as_deref(), Some("/cp/b"));
    }

    #[test]
    fn big_task_and_remove_frames() {
        let mut out = Vec::new();
        let inputs: Vec<i32> = (0..100).map(|i| i * 1000 - 7).collect();
        push_task(
            &mut out,
            TaskId(i32::MAX),
            300,
            &[7u8; 200],
            &ids(&inputs),
            0,
            "",
        );
        push_remove(&mut out, TaskId(-1));
        push_remove(&mut out, TaskId(1 << 30));
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
    }

    /// A batch of REMOVEs is one `WorkerCommand{REMOVE, id}` frame per id, as prost encodes
    /// it, in order: ids of every varint length (negative ones take 10 bytes), more frames
    /// than one reservation holds (room made again twice), after bytes already in the buffer;
    /// a small batch dropped without `finish` appends nothing.
    #[test]
    fn a_batch_of_removes_is_one_frame_per_id() {
        let ids: Vec<i32> = (0..2500)
            .map(|i: i32| match i % 5 {
                0 => i,
                1 => -i,
                2 => i.wrapping_mul(0x9e37_79b9u32 as i32),
                3 => i << 14,
                _ => i32::MAX - i,
            })
            .collect();
        let mut out = vec![7u8; 3];
        let mut r = Removes::begin(&mut out, 10);
        for &id in &ids {
            r.push(TaskId(id));
        }
        r.finish();
        let mut want = vec![7u8; 3];
        for &id in &ids {
            crate::frame::push_frame(
                &mut want,
                &WorkerCommand {
                    r#type: worker_command::Type::Remove as i32,
                    id: Some(id),
                    ..Default::default()
                },
            );
        }
        assert_eq!(out, want);
        {
            let mut r = Removes::begin(&mut out, 3);
            r.push(TaskId(1));
        }
        assert_eq!(out, want, "unfinished: nothing appended");
    }

    #[test]
    fn tasks_with_many_inputs_match_prost() {
        // Inputs reserved part by part (256 at a time), with a config and a path.
        for n_in in [0, 3, 255, 256, 257, 1000] {
            let inputs: Vec<i32> = (0..n_in).map(|i| i * 4099 - 5).collect();
            let (cfg, path) = (vec![3u8; n_in as usize], "/cp/x");
            let mut mine = vec![1u8];
            push_task(&mut mine, TaskId(77), 5, &cfg, &ids(&inputs), 3, path);
            let mut theirs = vec![1u8];
            crate::frame::push_frame(
                &mut theirs,
                &WorkerCommand {
                    r#type: 1,
                    id: Some(77),
                    task_type: Some(5),
                    task_config: Some(cfg.clone().into()),
                    task_inputs: inputs.clone(),
                    n_cpus: Some(3),
                    checkpoint_path: Some(path.into()),
                    ..Default::default()
                },
            );
            assert_eq!(mine, theirs, "{n_in} inputs");
        }
    }

    #[test]
    fn usual_and_any_response_layouts_agree() {
        let usual = |ty: i32, id: i32, size: Option<u64>, length: Option<u64>| {
            WorkerResponse {
                r#type: ty,
                id,
                size,
                length,
                error_msg: None,
            }
            .encode_to_vec()
        };
        let cases = [
            usual(1, 5, Some(8), None),
            usual(1, -1, Some(1 << 40), Some(300)),
            usual(2, i32::MAX, None, None),
            usual(4, 1 << 20, None, Some(7)),
            // Other orders and extra fields take the generic path.
            vec![0x10, 0x05, 0x08, 0x01, 0x18, 0x08],
            vec![0x08, 0x01, 0x10, 0x05, 0x20, 0x02, 0x18, 0x08],
            vec![0x08, 0x01, 0x10, 0x05, 0x18, 0x08, 0x18, 0x09],
            vec![0x08, 0x01, 0x10, 0x05, 0x28, 0x01],
        ];
        for b in &cases {
            let (fast, any) = (
                scan_worker_response(b).unwrap(),
                scan_any_response(b).unwrap(),
            );
            assert_eq!(
                (fast.rtype, fast.id, fast.size, fast.length),
                (any.rtype, any.id, any.size, any.length),
                "{b:?}"
            );
        }
        assert!(scan_usual_response(&cases[0]).is_some());
        assert!(scan_usual_response(&cases[4]).is_none());
        // Truncated fields are errors; a missing id is left to the caller.
        for b in [&[0x08, 0x01, 0x10][..], &[0x08, 0x01, 0x10, 0x85]] {
            assert!(scan_worker_response(b).is_err(), "{b:?}");
        }
        assert_eq!(scan_worker_response(&[0x08, 0x01]).unwrap().id, None);
    }

    #[test]
    fn plain_finished_agrees_with_the_scanner() {
        let fin = |id: i32, size: Option<u64>, length: Option<u64>| {
            WorkerResponse {
                r#type: 1,
                id,
                size,
                length,
                error_msg: None,
            }
            .encode_to_vec()
        };
        for id in [0, 1, 127, 128, 300_000, i32::MAX] {
            for size in [0, 8, 1 << 20, (1 << 35) - 1, 1 << 35, 1 << 40, u64::MAX] {
                let b = fin(id, Some(size), None);
                assert_eq!(scan_plain_finished(&b), Some((id, size)), "{b:?}");
                let r = scan_worker_response(&b).unwrap();
                assert_eq!((r.rtype, r.id, r.size, r.length), (1, Some(id), size, 0));
            }
        }
        // Anything else is left to the scanner: a length, a negative id, no size, another type,
        // trailing or truncated bytes.
        for b in [
            fin(5, Some(8), Some(2)),
            fin(-1, Some(8), None),
            fin(5, None, None),
            vec![0x08, 0x02, 0x10, 0x05, 0x18, 0x08],
            vec![0x08, 0x01, 0x10, 0x05, 0x18, 0x08, 0x00],
            vec![0x08, 0x01, 0x10, 0x05, 0x18, 0x88],
            vec![0x08, 0x01, 0x10, 0x85],
        ] {
            assert_eq!(scan_plain_finished(&b), None, "{b:?}");
        }
    }

    /// The usual FINISHED frames (read by slice patterns) and every frame of their lengths
    /// and near them read as the scanner reads them: ids and sizes around the varint byte
    /// boundaries, non-canonical varints, and random bytes after the three header bytes.
    #[test]
    fn usual_finished_frames_agree_with_the_scanner() {
        let fin = |id: u64, size: u64| {
            let mut b = vec![0x08, 0x01, 0x10];
            crate::proto::write::put_varint(&mut b, id);
            b.push(0x18);
            crate::proto::write::put_varint(&mut b, size);
            b
        };
        let ids = [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            300_000,
            (1 << 21) - 1,
            1 << 21,
        ];
        for id in ids {
            for size in [0, 1, 8, 127, 128, 300] {
                let b = fin(id, size);
                assert_eq!(scan_plain_finished(&b), Some((id as i32, size)), "{b:?}");
                assert_eq!(scan_plain_finished(&b), scan_finished_varints(&b), "{b:?}");
            }
        }
        // Non-canonical varints (a last byte of 0) read as the scanner reads them.
        for b in [
            vec![0x08, 0x01, 0x10, 0x85, 0x00, 0x18, 0x05],
            vec![0x08, 0x01, 0x10, 0xff, 0x80, 0x00, 0x18, 0x05],
        ] {
            assert_eq!(scan_plain_finished(&b), scan_finished_varints(&b), "{b:?}");
        }
        // Random bytes after the header, for each length the patterns take and around them.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for len in 3..=10 {
            for _ in 0..50_000 {
                let r = next().to_le_bytes();
                let mut b = vec![0x08, 0x01, 0x10];
                b.extend_from_slice(&r[..len - 3]);
                // Often the size key where the patterns look for it.
                if len >= 6 && r[7] & 1 == 0 {
                    b[len - 2] = 0x18;
                }
                assert_eq!(scan_plain_finished(&b), scan_finished_varints(&b), "{b:?}");
            }
        }
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

    #[test]
    fn send_and_task_finished_frames_match_prost() {
        use crate::frame::push_frame;
        use crate::proto::comm::ClientResponse;
        let mut mine = Vec::new();
        push_send(&mut mine, TaskId(300), "1.2.3.4:5");
        let mut theirs = Vec::new();
        push_frame(
            &mut theirs,
            &WorkerCommand {
                r#type: 2,
                id: Some(300),
                address: Some("1.2.3.4:5".into()),
                ..Default::default()
            },
        );
        assert_eq!(mine, theirs);
        let mut mine = Vec::new();
        push_task_finished(&mut mine, -3);
        let mut theirs = Vec::new();
        push_frame(
            &mut theirs,
            &ClientResponse {
                r#type: 2,
                id: Some(-3),
                ..Default::default()
            },
        );
        assert_eq!(mine, theirs);
    }
}
