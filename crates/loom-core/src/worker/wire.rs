//! The worker's hot-path messages, on the crate's one protobuf scanner and writer
//! ([`crate::proto::scan`], [`crate::proto::write`]): a zero-copy `WorkerCommand` scanner and a
//! `WorkerResponse` encoder writing straight into the output buffer (no per-message
//! allocation). Both are checked byte-for-byte against prost in the tests.

use crate::proto::comm::{worker_command, worker_response};
use crate::proto::scan::Scanner;
use crate::proto::write::{put_frame_len, put_varint_at};

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
    /// Extension: this task's client traces (see `Worker::trace_of`).
    pub traced: bool,
}

/// Scans a `WorkerCommand` frame. Unknown fields are skipped; inputs (packed or not) are
/// appended to `inputs` (cleared first).
pub(crate) fn decode_command<'a>(
    b: &'a [u8],
    inputs: &mut Vec<i32>,
) -> Result<Command<'a>, &'static str> {
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

/// Appends a framed `WorkerResponse{type, id, size?, length?}` (no error message).
#[inline]
pub(crate) fn push_response(out: &mut Vec<u8>, ty: i32, id: i32, size_len: Option<(u64, u64)>) {
    let mut buf = [0u8; 8 + 48];
    let mut n = 8;
    buf[n] = 0x08;
    n += 1;
    put_varint_at(&mut buf, &mut n, ty as u64);
    buf[n] = 0x10;
    n += 1;
    put_varint_at(&mut buf, &mut n, id as i64 as u64);
    if let Some((size, length)) = size_len {
        buf[n] = 0x18;
        n += 1;
        put_varint_at(&mut buf, &mut n, size);
        buf[n] = 0x20;
        n += 1;
        put_varint_at(&mut buf, &mut n, length);
    }
    put_frame_len(&mut buf, n);
    out.extend_from_slice(&buf[..n]);
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
