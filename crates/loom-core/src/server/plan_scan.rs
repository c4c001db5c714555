//! Zero-copy scanning of an encoded `Plan`: its header fields (resource requests, id base,
//! task count) and each `Task`, borrowing config and label bytes from the frame.

use crate::proto::scan::{Malformed, Scanner};

use super::ids::TaskId;

/// The task a plan was rejected for.
#[derive(Debug)]
pub(crate) struct Culprit {
    /// The client's id of the task.
    pub(crate) id: i32,
    /// Its label ("" if none).
    pub(crate) label: String,
}

/// Why a plan was rejected, and for which task (None: the plan as a whole).
#[derive(Debug)]
pub(crate) struct PlanError {
    pub(crate) task: Option<Culprit>,
    pub(crate) cause: String,
}

/// A rejection not about one task.
pub(crate) fn plan_err(cause: impl Into<String>) -> PlanError {
    PlanError {
        task: None,
        cause: cause.into(),
    }
}

/// A malformed plan message.
pub(crate) fn malformed(_: Malformed) -> PlanError {
    plan_err("malformed plan message")
}

/// The plan fields read before the tasks: resource requests (cpus or why rejected), the
/// client's id base, and the number of tasks.
pub(crate) struct PlanHeader {
    pub(crate) requests: Vec<Result<u16, String>>,
    pub(crate) id_base: Option<i64>,
    pub(crate) n: usize,
}

/// Pass 1 over a plan: task count, id_base and the resource requests (task bodies skipped).
pub(crate) fn scan_header(plan: &[u8], cpus_sym: i32) -> Result<PlanHeader, PlanError> {
    let mut h = PlanHeader {
        requests: Vec::new(),
        id_base: None,
        n: 0,
    };
    let mut r = Scanner::new(plan);
    while !r.done() {
        let (f, wt) = r.key().map_err(malformed)?;
        match f {
            1 => h.requests.push(
                scan_request(r.bytes_of(wt).map_err(malformed)?, cpus_sym).map_err(malformed)?,
            ),
            2 => {
                r.bytes_of(wt).map_err(malformed)?;
                h.n += 1;
            }
            4 => h.id_base = Some(r.i32_of(wt).map_err(malformed)? as i64),
            _ => r.skip(wt).map_err(malformed)?,
        }
    }
    Ok(h)
}

/// One `Task` of a plan, borrowed from the frame.
pub(crate) struct TaskScan<'a> {
    /// Task type (symbol id).
    pub(crate) ttype: Option<i32>,
    pub(crate) config: &'a [u8],
    /// Resource request index (-1: none).
    pub(crate) rr: i32,
    pub(crate) result: bool,
    pub(crate) label: Option<&'a [u8]>,
    /// `Task.checkpoint_path` (field 7); empty when absent.
    pub(crate) checkpoint: &'a [u8],
}

/// Scans one `Task`; its inputs (the client's ids, packed or not) are appended to `inputs` as
/// they are on the wire — the caller resolves them to internal ids in place.
#[inline(always)]
pub(crate) fn scan_task<'a>(
    b: &'a [u8],
    inputs: &mut Vec<TaskId>,
) -> Result<TaskScan<'a>, Malformed> {
    let mut r = Scanner::new(b);
    let mut t = TaskScan {
        ttype: None,
        config: &[],
        rr: -1,
        result: false,
        label: None,
        checkpoint: &[],
    };
    while !r.done() {
        let (f, wt) = r.key()?;
        match f {
            1 => t.ttype = Some(r.i32_of(wt)?),
            2 => t.config = r.bytes_of(wt)?,
            3 => r.repeated_i32(wt, |v| inputs.push(TaskId(v)))?,
            5 => t.rr = r.i32_of(wt)?,
            6 => t.result = r.varint_of(wt)? != 0,
            7 => t.checkpoint = r.bytes_of(wt)?,
            12 => t.label = Some(r.bytes_of(wt)?),
            _ => r.skip(wt)?,
        }
    }
    Ok(t)
}

/// Scans a `ResourceRequest`: Ok(cpus) or the cause of rejection.
fn scan_request(b: &[u8], cpus_sym: i32) -> Result<Result<u16, String>, Malformed> {
    let mut r = Scanner::new(b);
    let mut found: Vec<(i32, i64)> = Vec::new();
    while !r.done() {
        let (f, wt) = r.key()?;
        if f == 1 {
            let mut m = Scanner::new(r.bytes_of(wt)?);
            let (mut ty, mut val) = (-1i32, 0i64);
            while !m.done() {
                let (f, wt) = m.key()?;
                match f {
                    1 => ty = m.i32_of(wt)?,
                    2 => val = m.i32_of(wt)? as i64,
                    _ => m.skip(wt)?,
                }
            }
            found.push((ty, val));
        } else {
            r.skip(wt)?;
        }
    }
    Ok(match found.as_slice() {
        [(ty, v)] if *ty == cpus_sym => {
            if *v < 0 || *v > u16::MAX as i64 {
                Err(format!("invalid cpus request {v}"))
            } else {
                Ok(*v as u16)
            }
        }
        [(ty, _)] => Err(format!("unknown resource type {ty}")),
        _ => Err(format!(
            "a resource request must name exactly one resource (it names {})",
            found.len()
        )),
    })
}
