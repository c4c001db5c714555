//! The worker's hot-path messages, on the crate's one protobuf scanner and writer
//! ([`crate::proto::scan`], [`crate::proto::write`]): a zero-copy `WorkerCommand` scanner and a
//! `WorkerResponse` encoder writing straight into the output buffer (no per-message
//! allocation). Both are checked byte-for-byte against prost in the tests.

use crate::proto::comm::{worker_command, worker_response};
use crate::proto::scan::Scanner;
use crate::proto::write::{put_varint_at, FrameWriter};

/// `WorkerCommand.type` values (from the generated enum, as `i32` for matching).
pub(crate) mod cmd {
    use super::worker_command::Type;
    pub const TASK: i32 = Type::Task as i32;
    pub const SEND: i32 = Type::Send as i32;
    pub const REMOVE: i32 = Type::Remove as i32;
    pub const DICTIONARY: i32 = Type::Dictionary as i32;
    pub const UPDATE: i32 = Type::Update as i32;
    pub const LOAD_CHECKPOINT: i32 = Type::LoadCheckpoint as i32;
    /// Extension: stop a task of a client that is gone (see `Worker::cancel`).
    pub const CANCEL: i32 = Type::Cancel as i32;
    pub const STOP: i32 = Type::Stop as i32;
}

/// `WorkerResponse.type` values (from the generated enum, as `i32` for matching).
pub(crate) mod resp {
    use super::worker_response::Type;
    pub const FINISHED: i32 = Type::Finished as i32;
    pub const FINISHED_AND_CHECKPOINTING: i32 = Type::FinishedAndCheckpointing as i32;
    pub const TRANSFERED: i32 = Type::Transfered as i32;
    pub const FAILED: i32 = Type::Failed as i32;
    pub const CHECKPOINT_WRITTEN: i32 = Type::CheckpointWritten as i32;
    pub const CHECKPOINT_WRITE_FAILED: i32 = Type::CheckpointWriteFailed as i32;
    pub const CHECKPOINT_LOADED: i32 = Type::CheckpointLoaded as i32;
    pub const CHECKPOINT_LOAD_FAILED: i32 = Type::CheckpointLoadFailed as i32;
    /// Extension: this worker is stopping on purpose.
    pub const LEAVING: i32 = Type::Leaving as i32;
    /// Extension: this worker gave up a transfer.
    pub const TRANSFER_FAILED: i32 = Type::TransferFailed as i32;
}

/// The fields of one `WorkerCommand`, borrowed from the frame. `task_inputs` go to a caller's
/// reusable vector; `symbols` (DICTIONARY only) are not collected: decode those with prost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
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
    /// Extension: this task's client traces (see `Worker::trace_of`).
    pub traced: bool,
}

/// One-byte keys of the `WorkerCommand` fields in the usual layout (field << 3 | wire type).
mod key {
    pub const TYPE: u8 = 1 << 3;
    pub const ID: u8 = 2 << 3;
    pub const TASK_TYPE: u8 = 3 << 3;
    pub const CONFIG: u8 = 4 << 3 | 2;
    pub const INPUT: u8 = 5 << 3;
    pub const N_CPUS: u8 = 6 << 3;
    pub const CHECKPOINT_PATH: u8 = 7 << 3 | 2;
    pub const ADDRESS: u8 = 10 << 3 | 2;
}

/// Scans a `WorkerCommand` frame into `c` (reset first). Unknown fields are skipped; inputs
/// (packed or not) are appended to `inputs` (cleared first). An out-parameter, not a return
/// value: the hot path then writes the fields in place instead of moving the whole `Command`
/// through `Option` and `Result` (~30 instructions per command).
#[inline(always)]
pub(crate) fn decode_command<'a>(
    b: &'a [u8],
    inputs: &mut Vec<i32>,
    c: &mut Command<'a>,
) -> Result<(), &'static str> {
    inputs.clear();
    *c = Command::default();
    if decode_usual_command(b, inputs, c) {
        return Ok(());
    }
    *c = decode_any_command(b, inputs)?;
    Ok(())
}

/// A `WorkerCommand` in the layout servers send for TASK, REMOVE and SEND (ours and the
/// original's: fields in number order, inputs unpacked): `type`, `id`, then either `task_type`,
/// `task_config`, the inputs, `n_cpus`, `checkpoint_path` (each if present), or `address`;
/// nothing else. Each expected field is one byte comparison. None: any other message (other
/// fields, another order, a malformed one), for [`decode_any_command`] (`c` and `inputs` may
/// then hold some of this frame's fields: it starts afresh).
#[inline(always)]
fn decode_usual_command<'a>(b: &'a [u8], inputs: &mut Vec<i32>, c: &mut Command<'a>) -> bool {
    (|| {
        let mut r = Scanner::new(b);
        if !r.eat(key::TYPE) {
            return None;
        }
        c.ty = Some(r.varint().ok()? as i32);
        if !r.eat(key::ID) {
            return None;
        }
        c.id = Some(r.varint().ok()? as i32);
        if r.eat(key::TASK_TYPE) {
            c.task_type = Some(r.varint().ok()? as i32);
            if r.eat(key::CONFIG) {
                c.config = r.bytes().ok()?;
            }
            while r.eat(key::INPUT) {
                inputs.push(r.varint().ok()? as i32);
            }
            if r.eat(key::N_CPUS) {
                c.n_cpus = r.varint().ok()? as i32;
            }
            if r.eat(key::CHECKPOINT_PATH) {
                c.checkpoint_path = r.bytes().ok()?;
            }
        } else if r.eat(key::ADDRESS) {
            c.address = r.bytes().ok()?;
        }
        r.done().then_some(())
    })()
    .is_some()
}

/// Scans a `WorkerCommand` of any layout.
#[inline(never)]
fn decode_any_command<'a>(b: &'a [u8], inputs: &mut Vec<i32>) -> Result<Command<'a>, &'static str> {
    inputs.clear();
    let mut c = Command::default();
    let mut r = Scanner::new(b);
    let res = (|| {
        while !r.done() {
            let (field, wt) = r.key()?;
            match field {
                1 => c.ty = Some(r.i32_of(wt)?),
                2 => c.id = Some(r.i32_of(wt)?),
                3 => c.task_type = Some(r.i32_of(wt)?),
                4 => c.config = r.bytes_of(wt)?,
                5 => r.repeated_i32(wt, |x| inputs.push(x))?,
                6 => c.n_cpus = r.i32_of(wt)?,
                7 => c.checkpoint_path = r.bytes_of(wt)?,
                10 => c.address = r.bytes_of(wt)?,
                120 => c.trace_path = r.bytes_of(wt)?,
                121 => c.worker_id = Some(r.i32_of(wt)?),
                122 => c.traced = r.i32_of(wt)? != 0,
                _ => r.skip(wt)?,
            }
        }
        Ok(())
    })();
    res.map_err(|m: crate::proto::scan::Malformed| m.0)?;
    Ok(c)
}

/// Appends a framed `WorkerResponse{type, id, size?, length?}` (no error message), written
/// straight into `out`'s spare capacity by the crate's [`FrameWriter`] (as the server's TASK
/// and REMOVE): a FINISHED per task at W1, where a stack buffer cleared, copied and cut back
/// cost ~25 instructions more per response (issue #26).
#[inline]
pub(crate) fn push_response(out: &mut Vec<u8>, ty: i32, id: i32, size_len: Option<(u64, u64)>) {
    let mut w = FrameWriter::begin(out, 4 + 4 * 10);
    // SAFETY: four keys of one byte and four varints of at most 10 bytes: the 44 reserved.
    unsafe {
        w.put_byte(0x08);
        w.put_varint(ty as u64);
        w.put_byte(0x10);
        w.put_varint(id as i64 as u64);
        if let Some((size, length)) = size_len {
            w.put_byte(0x18);
            w.put_varint(size);
            w.put_byte(0x20);
            w.put_varint(length);
        }
    }
    w.finish();
}

/// Appends a framed `WorkerResponse{type, id, error_msg}`.
pub(crate) fn push_error(out: &mut Vec<u8>, ty: i32, id: i32, msg: &[u8]) {
    let mut head = [0u8; 32];
    let mut n = 0;
    head[n] = 0x08;
    n += 1;
    put_varint_at(&mut head, &mut n, ty as u64);
    head[n] = 0x10;
    n += 1;
    put_varint_at(&mut head, &mut n, id as i64 as u64);
    // field 100, wire type 2: key 802 = varint a2 06
    head[n] = 0xa2;
    head[n + 1] = 0x06;
    n += 2;
    put_varint_at(&mut head, &mut n, msg.len() as u64);
    out.extend_from_slice(&((n + msg.len()) as u64).to_le_bytes());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::comm::WorkerCommand;

    /// A command read and its inputs.
    type Read<'a> = (Command<'a>, Vec<i32>);

    /// `b` read by the usual-layout reader (None: not in that layout) and by the generic one.
    fn both(b: &[u8]) -> (Option<Read<'_>>, Result<Read<'_>, &str>) {
        let mut ins = Vec::new();
        let mut c = Command::default();
        let usual = decode_usual_command(b, &mut ins, &mut c).then_some((c, ins));
        let mut ins = Vec::new();
        let any = decode_any_command(b, &mut ins).map(|c| (c, ins));
        (usual, any)
    }

    #[test]
    fn the_usual_layout_reads_as_any_layout() {
        let task =
            |id, inputs: Vec<i32>, config: &[u8], cpus, checkpoint: Option<&str>| WorkerCommand {
                r#type: cmd::TASK,
                id: Some(id),
                task_type: Some(9),
                task_config: Some(config.to_vec().into()),
                task_inputs: inputs,
                n_cpus: cpus,
                checkpoint_path: checkpoint.map(str::to_owned),
                ..Default::default()
            };
        let usual = [
            task(0, vec![], b"ab", Some(0), Some("")),
            task(3_000_000, vec![1, 2_999_999, -4], b"", Some(2), Some("/c")),
            task(-1, vec![7; 20], &[0xff; 300], None, None),
            WorkerCommand {
                r#type: cmd::REMOVE,
                id: Some(1 << 30),
                ..Default::default()
            },
            WorkerCommand {
                r#type: cmd::SEND,
                id: Some(5),
                address: Some("10.0.0.2:1234".into()),
                ..Default::default()
            },
        ];
        for m in &usual {
            let b = m.encode_to_vec();
            let (u, a) = both(&b);
            assert_eq!(u, Some(a.unwrap()), "{m:?}");
        }
        // Other layouts fall back to the generic scan (and read the same there).
        let other = [
            WorkerCommand {
                traced: Some(true),
                ..task(1, vec![2], b"", Some(0), Some(""))
            },
            WorkerCommand {
                r#type: cmd::UPDATE,
                trace_path: Some("/t".into()),
                worker_id: Some(3),
                ..Default::default()
            },
        ];
        for m in &other {
            let b = m.encode_to_vec();
            let (u, a) = both(&b);
            assert!(u.is_none() && a.is_ok(), "{m:?}");
        }
        // Fields out of order, a packed run, truncations: never a wrong fast read.
        let reordered = [0x10, 0x05, 0x08, 0x01, 0x18, 0x02];
        let packed = [0x08, 0x01, 0x10, 0x01, 0x18, 0x02, 0x2a, 0x02, 0x01, 0x02];
        for b in [&reordered[..], &packed[..]] {
            let (u, a) = both(b);
            assert!(u.is_none() && a.is_ok());
        }
        let full = task(300, vec![1, 2], b"cfg", Some(1), Some("")).encode_to_vec();
        for n in 0..full.len() {
            let (u, a) = both(&full[..n]);
            if let Some(u) = u {
                assert_eq!(Ok(u), a, "prefix of {n} bytes");
            }
        }
    }
}
