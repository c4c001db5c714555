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
        // The usual task (under 128 bytes) in a few comparisons.
        if r.skip_short(2 << 3 | 2) {
            h.n += 1;
            continue;
        }
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
    let mark = inputs.len();
    if let Some(t) = scan_usual_task(b, inputs) {
        return Ok(t);
    }
    inputs.truncate(mark);
    scan_any_task(b, inputs)
}

/// Field keys of `Task` (`field << 3 | wire type`).
mod key {
    pub const TYPE: u8 = 1 << 3;
    pub const CONFIG: u8 = 2 << 3 | 2;
    pub const INPUT: u8 = 3 << 3;
    pub const RESOURCES: u8 = 5 << 3;
    pub const RESULT: u8 = 6 << 3;
    pub const CHECKPOINT: u8 = 7 << 3 | 2;
    pub const LABEL: u8 = 12 << 3 | 2;
}

/// A `Task` in the layout the clients write (ours and the original's): type, config, unpacked
/// inputs, then resource request, result flag, checkpoint path and label where present, each
/// once, in field order. None for anything else (packed inputs, another order, a malformed
/// task), which [`scan_any_task`] reads; what it appended to `inputs` is then dropped.
#[inline(always)]
fn scan_usual_task<'a>(b: &'a [u8], inputs: &mut Vec<TaskId>) -> Option<TaskScan<'a>> {
    let mut r = Scanner::new(b);
    if !r.eat(key::TYPE) {
        return None;
    }
    let ttype = Some(r.varint().ok()? as i32);
    let config = if r.eat(key::CONFIG) {
        r.bytes().ok()?
    } else {
        &[]
    };
    while r.eat(key::INPUT) {
        inputs.push(TaskId(r.varint().ok()? as i32));
    }
    let rr = if r.eat(key::RESOURCES) {
        r.varint().ok()? as i32
    } else {
        -1
    };
    let result = r.eat(key::RESULT) && r.varint().ok()? != 0;
    let checkpoint = if r.eat(key::CHECKPOINT) {
        r.bytes().ok()?
    } else {
        &[]
    };
    let label = if r.eat(key::LABEL) {
        Some(r.bytes().ok()?)
    } else {
        None
    };
    r.done().then_some(TaskScan {
        ttype,
        config,
        rr,
        result,
        label,
        checkpoint,
    })
}

/// A `Task` in the usual layout with only type, config, inputs and result (no resource
/// request, checkpoint or label: most tasks of a plan), appending its inputs to `inputs`:
/// (type, config, result). Read by slice patterns on the bytes, for a type id and config length
/// under 128 and input ids under 2^28. None for anything else; the caller then drops what was
/// appended and reads the task with [`scan_task`].
#[inline(always)]
pub(crate) fn scan_plain_task<'a>(
    b: &'a [u8],
    inputs: &mut Vec<TaskId>,
) -> Option<(i32, &'a [u8], bool)> {
    let &[key::TYPE, ty, ref rest @ ..] = b else {
        return None;
    };
    if ty >= 0x80 {
        return None;
    }
    let mut rest = rest;
    let mut config: &[u8] = &[];
    if let &[key::CONFIG, len, ref tail @ ..] = rest {
        let len = len as usize;
        if len >= 0x80 || len > tail.len() {
            return None;
        }
        (config, rest) = tail.split_at(len);
    }
    loop {
        // An id in one to four bytes (the last byte below 0x80).
        let (v, tail) = match *rest {
            [key::INPUT, b0, ref tail @ ..] if b0 < 0x80 => (b0 as u32, tail),
            [key::INPUT, b0, b1, ref tail @ ..] if b1 < 0x80 => {
                ((b0 & 0x7f) as u32 | (b1 as u32) << 7, tail)
            }
            [key::INPUT, b0, b1, b2, ref tail @ ..] if b2 < 0x80 => (
                (b0 & 0x7f) as u32 | ((b1 & 0x7f) as u32) << 7 | (b2 as u32) << 14,
                tail,
            ),
            [key::INPUT, b0, b1, b2, b3, ref tail @ ..] if b3 < 0x80 => (
                (b0 & 0x7f) as u32
                    | ((b1 & 0x7f) as u32) << 7
                    | ((b2 & 0x7f) as u32) << 14
                    | (b3 as u32) << 21,
                tail,
            ),
            [key::INPUT, ..] => return None,
            _ => break,
        };
        inputs.push(TaskId(v as i32));
        rest = tail;
    }
    let result = match *rest {
        [] => false,
        [key::RESULT, v] if v < 0x80 => v != 0,
        _ => return None,
    };
    Some((ty as i32, config, result))
}

/// Scans one `Task` of any layout.
#[inline(never)]
fn scan_any_task<'a>(b: &'a [u8], inputs: &mut Vec<TaskId>) -> Result<TaskScan<'a>, Malformed> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::comm::Task;
    use prost::Message;

    /// Both readers on `b`: (type, config, inputs, rr, result, label, checkpoint).
    fn both(b: &[u8]) -> [Option<String>; 2] {
        let show = |t: Result<TaskScan, Malformed>, ins: &[TaskId]| {
            t.ok().map(|t| {
                format!(
                    "{:?} {:?} {:?} {} {} {:?} {:?}",
                    t.ttype, t.config, ins, t.rr, t.result, t.label, t.checkpoint
                )
            })
        };
        let mut a = vec![TaskId(-9)];
        let fast = scan_task(b, &mut a);
        let mut g = vec![TaskId(-9)];
        let any = scan_any_task(b, &mut g);
        [show(fast, &a), show(any, &g)]
    }

    #[test]
    fn usual_and_any_task_layouts_agree() {
        let full = Task {
            task_type: 7,
            config: b"cfg".to_vec().into(),
            input_ids: vec![1, 300, -1, 1 << 20],
            resource_request_index: Some(2),
            result: Some(true),
            checkpoint_path: Some("/cp".into()),
            label: Some("lbl".into()),
            ..Default::default()
        };
        let plain = Task {
            task_type: 1,
            config: Default::default(),
            input_ids: vec![5],
            ..Default::default()
        };
        let mut cases = vec![full.encode_to_vec(), plain.encode_to_vec()];
        // Packed inputs, another order, a repeated scalar, an unknown field, truncation.
        cases.push(vec![0x08, 0x07, 0x1a, 0x02, 0x01, 0x02, 0x30, 0x01]);
        cases.push(vec![0x12, 0x01, b'x', 0x08, 0x07, 0x18, 0x03]);
        cases.push(vec![0x08, 0x07, 0x08, 0x09, 0x18, 0x03]);
        cases.push(vec![0x08, 0x07, 0x18, 0x03, 0x48, 0x01]);
        cases.push(vec![0x08, 0x07, 0x18, 0x03, 0x30, 0x01, 0x18, 0x04]);
        cases.push(vec![0x08, 0x07, 0x18]);
        cases.push(vec![0x08, 0x07, 0x12, 0x05, b'x']);
        // Ids of one to five bytes, a long type, a long config, a result of two bytes.
        for ids in [
            vec![0, 127, 128, 16_383],
            vec![16_384, (1 << 21) - 1, 1 << 21],
        ] {
            let t = Task {
                task_type: 3,
                config: b"c".to_vec().into(),
                input_ids: ids,
                result: Some(false),
                ..Default::default()
            };
            cases.push(t.encode_to_vec());
        }
        cases.push(vec![0x08, 0x07, 0x18, 0x80, 0x80, 0x80, 0x80, 0x01]);
        cases.push(vec![0x08, 0x07, 0x18, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        cases.push(vec![0x08, 0x87, 0x01, 0x18, 0x03]);
        cases.push(vec![0x08, 0x07, 0x30, 0x81, 0x00]);
        cases.push(vec![0x08, 0x07, 0x18, 0x83]);
        cases.push(vec![0x08, 0x07, 0x12, 0x02, b'x']);
        let mut long_cfg = vec![0x08, 0x07, 0x12, 0x80, 0x01];
        long_cfg.extend([b'y'; 128]);
        cases.push(long_cfg);
        for b in &cases {
            let [fast, any] = both(b);
            assert_eq!(fast, any, "{b:?}");
            // The plain reader, where it reads a task, reads it as the generic one does.
            let mut ins = vec![TaskId(-9)];
            if let Some((ty, config, result)) = scan_plain_task(b, &mut ins) {
                let any = any.as_deref().expect("a task both read");
                let plain = format!("{:?} {config:?} {ins:?} -1 {result} None []", Some(ty));
                assert_eq!(plain, any, "{b:?}");
            }
        }
        assert!(scan_plain_task(&cases[1], &mut Vec::new()).is_some());
        let four = scan_plain_task(&cases[10], &mut Vec::new());
        assert!(four.is_some(), "four-byte ids");
        let five = scan_plain_task(&cases[11], &mut Vec::new());
        assert!(five.is_none(), "a five-byte id");
        assert!(
            scan_plain_task(&cases[0], &mut Vec::new()).is_none(),
            "a label"
        );
        assert!(scan_usual_task(&cases[0], &mut Vec::new()).is_some());
        assert!(scan_usual_task(&cases[2], &mut Vec::new()).is_none());
        assert!(both(&cases[7])[0].is_none(), "truncated");
    }
}
