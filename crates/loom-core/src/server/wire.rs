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
/// 2^21, a size below 128: up to 3 and 1 varint bytes) by one slice pattern per length; any
/// other by three byte comparisons and the scanner's varints ([`scan_finished_varints`]; the
/// tests `usual_finished_frames_agree_with_the_scanner` and
/// `plain_finished_agrees_with_the_scanner` compare them with the scanner).
#[inline(always)]
pub(crate) fn scan_plain_finished(b: &[u8]) -> Option<(i32, u64)> {
    const T: u8 = key::TYPE;
    const F: u8 = crate::proto::comm::worker_response::Type::Finished as u8;
    const I: u8 = key::ID;
    const S: u8 = key::RESPONSE_SIZE;
    /// The 7 bits of a varint byte with more to follow.
    const fn low(b: u8) -> i32 {
        (b & 0x7f) as i32
    }
    match *b {
        [T, F, I, i0 @ 0..=0x7f, S, s @ 0..=0x7f] => Some((i0 as i32, s as u64)),
        [T, F, I, i0 @ 0x80..=0xff, i1 @ 0..=0x7f, S, s @ 0..=0x7f] => {
            Some((low(i0) | (i1 as i32) << 7, s as u64))
        }
        [T, F, I, i0 @ 0x80..=0xff, i1 @ 0x80..=0xff, i2 @ 0..=0x7f, S, s @ 0..=0x7f] => {
            Some((low(i0) | low(i1) << 7 | (i2 as i32) << 14, s as u64))
        }
        _ => scan_finished_varints(b),
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
    push_id_command(out, key::REMOVE, id);
}

/// `WorkerCommand{CANCEL, id}` (our extension; only to workers announcing "cancel").
pub(crate) fn push_cancel(out: &mut Vec<u8>, id: TaskId) {
    push_id_command(out, key::CANCEL, id);
}

/// `WorkerCommand{type, id}`.
#[inline(always)]
fn push_id_command(out: &mut Vec<u8>, ty: u8, id: TaskId) {
    let mut w = FrameWriter::begin(out, 13);
    // SAFETY: 3 bytes and a varint of at most 10.
    unsafe {
        w.put_byte(key::TYPE);
        w.put_byte(ty);
        w.put_byte(key::ID);
        w.put_varint(id.get() as i64 as u64);
    }
    w.finish();
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
