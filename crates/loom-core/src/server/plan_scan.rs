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
        // Runs of usual tasks (under 128 bytes), a few comparisons each.
        h.n += r.skip_short_run(2 << 3 | 2);
        if r.done() {
            break;
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
    /// Task type (symbol id); -1 when absent (rejected as an unknown type).
    pub(crate) ttype: i32,
    pub(crate) config: &'a [u8],
    /// Resource request index (-1: none).
    pub(crate) rr: i32,
    pub(crate) result: bool,
    pub(crate) label: Option<&'a [u8]>,
    /// `Task.checkpoint_path` (field 7); empty when absent.
    pub(crate) checkpoint: &'a [u8],
}

/// Scans one `Task`; its inputs (the client's ids, packed or not) are appended to `inputs` as
/// they are on the wire — the caller resolves them to internal ids in place. The fast reader
/// ([`scan_fast_task`], [`scan_fast_tail`]) takes the layout the clients write; anything else
/// is read by [`scan_any_task`], which reads a task both take the same way (a test checks
/// every layout the fast one takes).
#[inline(never)]
pub(crate) fn scan_task<'a>(
    b: &'a [u8],
    inputs: &mut Vec<TaskId>,
) -> Result<TaskScan<'a>, Malformed> {
    let mark = inputs.len();
    if let Some(t) = scan_fast_task::<true>(b, inputs) {
        return Ok(t);
    }
    inputs.truncate(mark);
    scan_any_task(b, inputs)
}

/// Where [`scan_fast_task`] puts the input ids it reads, in order: a vector keeps them as on
/// the wire; the intake's short path resolves them as they come (`ingest::Resolving`).
pub(crate) trait InputSink {
    /// One input id as on the wire (a client's id, under 2^28 on the fast reader).
    fn input(&mut self, id: i32);
}

impl InputSink for Vec<TaskId> {
    #[inline(always)]
    fn input(&mut self, id: i32) {
        self.push(TaskId(id));
    }
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

/// The fast reader of a `Task`, for the layout the clients write (ours and the original's):
/// type, config, unpacked inputs, then resource request, result flag, checkpoint path and
/// label where present, each once, in field order; a type id, resource request index and
/// result under 128, config, checkpoint path and label under 128 bytes, input ids under 2^28.
/// Read by slice patterns on the bytes, handing the inputs to `inputs` in order. None for
/// anything else (packed inputs, another order, longer fields, a malformed task), which
/// [`scan_any_task`] reads (see [`scan_task`]); the caller then drops what was handed over.
///
/// `TAIL`: whether to read a resource request, checkpoint path or label ([`scan_fast_tail`]);
/// without, a task with any of them is None (the intake's short path, which handles none of
/// them, then reads the task with [`scan_task`]).
#[inline(always)]
pub(crate) fn scan_fast_task<'a, const TAIL: bool>(
    b: &'a [u8],
    inputs: &mut impl InputSink,
) -> Option<TaskScan<'a>> {
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
        inputs.input(v as i32);
        rest = tail;
    }
    let mut t = TaskScan {
        ttype: ty as i32,
        config,
        rr: -1,
        result: false,
        label: None,
        checkpoint: &[],
    };
    match *rest {
        // Nothing more, or only the result flag: most tasks.
        [] => {}
        [key::RESULT, v] if v < 0x80 => t.result = v != 0,
        _ if TAIL => return scan_fast_tail(rest, t),
        _ => return None,
    }
    Some(t)
}

/// The fields after a task's inputs for [`scan_fast_task`]: resource request, result flag,
/// checkpoint path and label, each optional, in field order (the original client always sends
/// a resource request for `run` and `save`, and a result flag).
fn scan_fast_tail<'a>(mut rest: &'a [u8], mut t: TaskScan<'a>) -> Option<TaskScan<'a>> {
    if let &[key::RESOURCES, v, ref tail @ ..] = rest {
        if v >= 0x80 {
            return None;
        }
        t.rr = v as i32;
        rest = tail;
    }
    if let &[key::RESULT, v, ref tail @ ..] = rest {
        if v >= 0x80 {
            return None;
        }
        t.result = v != 0;
        rest = tail;
    }
    // A string of one-byte length that fits, taken off `rest`.
    let mut short = |key: u8| -> Option<Option<&[u8]>> {
        match *rest {
            [k, len, ref tail @ ..] if k == key => {
                let len = len as usize;
                if len >= 0x80 || len > tail.len() {
                    return None;
                }
                let s;
                (s, rest) = tail.split_at(len);
                Some(Some(s))
            }
            _ => Some(None),
        }
    };
    t.checkpoint = short(key::CHECKPOINT)?.unwrap_or(&[]);
    t.label = short(key::LABEL)?;
    rest.is_empty().then_some(t)
}

/// Scans one `Task` of any layout.
#[inline(never)]
fn scan_any_task<'a>(b: &'a [u8], inputs: &mut Vec<TaskId>) -> Result<TaskScan<'a>, Malformed> {
    let mut r = Scanner::new(b);
    let mut t = TaskScan {
        ttype: -1,
        config: &[],
        rr: -1,
        result: false,
        label: None,
        checkpoint: &[],
    };
    while !r.done() {
        let (f, wt) = r.key()?;
        match f {
            1 => t.ttype = r.i32_of(wt)?,
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

    /// A reader's result on `b` as text: (type, config, inputs, rr, result, label, checkpoint)
    /// or the error.
    fn show(t: Result<TaskScan, Malformed>, ins: &[TaskId]) -> String {
        match t {
            Ok(t) => format!(
                "{} {:?} {:?} {} {} {:?} {:?}",
                t.ttype, t.config, ins, t.rr, t.result, t.label, t.checkpoint
            ),
            Err(e) => format!("error {e:?}"),
        }
    }

    /// [`scan_task`], [`scan_any_task`] and, where it reads the task, [`scan_fast_task`] on
    /// `b` (each after an input already in the vector): the three texts.
    fn readers(b: &[u8]) -> (String, String, Option<String>) {
        let mut a = vec![TaskId(-9)];
        let t = scan_task(b, &mut a);
        let task = show(t, &a);
        let mut g = vec![TaskId(-9)];
        let any = show(scan_any_task(b, &mut g), &g);
        let mut f = vec![TaskId(-9)];
        let fast = scan_fast_task::<true>(b, &mut f).map(|t| show(Ok(t), &f));
        (task, any, fast)
    }

    /// Every task the fast reader takes reads as with the generic one, and every other task
    /// (or error) is the generic reader's; `fast` says which cases the fast reader must take.
    fn check(cases: &[(Vec<u8>, bool)]) {
        for (b, fast) in cases {
            let (task, any, f) = readers(b);
            assert_eq!(task, any, "{b:02x?}");
            assert_eq!(f.is_some(), *fast, "fast reader takes {b:02x?}");
            if let Some(f) = f {
                assert_eq!(f, any, "{b:02x?}");
            }
        }
    }

    #[test]
    fn fast_and_any_task_layouts_agree() {
        let full = Task {
            task_type: 7,
            config: b"cfg".to_vec().into(),
            input_ids: vec![1, 300, 1 << 20],
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
        let with = |f: &dyn Fn(&mut Task)| {
            let mut t = full.clone();
            f(&mut t);
            t.encode_to_vec()
        };
        let mut cases: Vec<(Vec<u8>, bool)> = vec![
            (full.encode_to_vec(), true),
            (plain.encode_to_vec(), true),
            // Each of the fields after the inputs alone, and none of them.
            (with(&|t| t.input_ids.clear()), true),
            (with(&|t| (t.checkpoint_path, t.label) = (None, None)), true),
            (
                with(&|t| (t.resource_request_index, t.label) = (None, None)),
                true,
            ),
            (
                with(&|t| (t.resource_request_index, t.result) = (None, None)),
                true,
            ),
            (with(&|t| t.checkpoint_path = Some(String::new())), true),
            // A negative input (a ten-byte varint), a request index of two or ten bytes, a
            // long label or checkpoint path, metadata.
            (with(&|t| t.input_ids.push(-1)), false),
            (with(&|t| t.resource_request_index = Some(128)), false),
            (with(&|t| t.resource_request_index = Some(-2)), false),
            (with(&|t| t.label = Some("l".repeat(128))), false),
            (with(&|t| t.checkpoint_path = Some("/".repeat(200))), false),
            (with(&|t| t.metadata = Some(b"m".to_vec().into())), false),
            // Packed inputs, another order, a repeated scalar, an unknown field, truncation.
            (vec![0x08, 0x07, 0x1a, 0x02, 0x01, 0x02, 0x30, 0x01], false),
            (vec![0x12, 0x01, b'x', 0x08, 0x07, 0x18, 0x03], false),
            (vec![0x08, 0x07, 0x08, 0x09, 0x18, 0x03], false),
            (vec![0x08, 0x07, 0x18, 0x03, 0x48, 0x01], false),
            (vec![0x08, 0x07, 0x18, 0x03, 0x30, 0x01, 0x18, 0x04], false),
            (vec![0x08, 0x07, 0x30, 0x01, 0x28, 0x00], false),
            (vec![0x08, 0x07, 0x62, 0x01, b'l', 0x3a, 0x01, b'/'], false),
            (vec![0x08, 0x07, 0x62, 0x01, b'l', 0x62, 0x01, b'm'], false),
            (vec![0x08, 0x07, 0x18], false),
            (vec![0x08, 0x07, 0x12, 0x05, b'x'], false),
            (vec![0x08, 0x07, 0x28, 0x01, 0x62, 0x05, b'x'], false),
            (vec![0x08, 0x07, 0x3a, 0x02, b'/'], false),
            (vec![0x08, 0x07, 0x28], false),
            // Ids of one to five bytes, a long type, a long config, two-byte values.
            (vec![0x08, 0x07, 0x18, 0x80, 0x80, 0x80, 0x80, 0x01], false),
            (vec![0x08, 0x07, 0x18, 0xff, 0xff, 0xff, 0xff, 0x0f], false),
            (vec![0x08, 0x07, 0x18, 0xff, 0xff, 0xff, 0x7f], true),
            (vec![0x08, 0x87, 0x01, 0x18, 0x03], false),
            (vec![0x08, 0x07, 0x30, 0x81, 0x00], false),
            (vec![0x08, 0x07, 0x28, 0x81, 0x00, 0x30, 0x01], false),
            (vec![0x08, 0x07, 0x18, 0x83], false),
            (vec![0x08, 0x07, 0x12, 0x02, b'x'], false),
        ];
        for (ids, fast) in [
            (vec![0, 127, 128, 16_383], true),
            (vec![16_384, (1 << 21) - 1, 1 << 21], true),
            (vec![(1 << 28) - 1], true),
            (vec![1 << 28], false),
        ] {
            let t = Task {
                task_type: 3,
                config: b"c".to_vec().into(),
                input_ids: ids,
                result: Some(false),
                ..Default::default()
            };
            cases.push((t.encode_to_vec(), fast));
        }
        let mut long_cfg = vec![0x08, 0x07, 0x12, 0x80, 0x01];
        long_cfg.extend([b'y'; 128]);
        cases.push((long_cfg, false));
        check(&cases);
        let (task, _, _) = readers(&[0x08, 0x07, 0x18]);
        assert!(task.starts_with("error"), "truncated: {task}");
    }

    /// The original Python client's tasks (spec vectors: `hello`'s merge, `run_var`'s run,
    /// `open_save`'s save), with their default-valued fields on the wire, take the fast reader.
    #[test]
    fn original_client_tasks_take_the_fast_reader() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let merge = hex("0808120018001801300120002000");
        let run = hex(concat!(
            "080d12220a092f62696e2f6563686f0a0224580a03616e640a0224581202",
            "24581a042b6f757418002800300120002000"
        ));
        let save = hex(concat!(
            "080b12252f7372762f686c2f766563746f726461742f6f70656e5f736176",
            "652f73617665642e74787418012800300120002000"
        ));
        for b in [merge, run, save] {
            // The vectors' task bodies end where the plan's id_base (`20 00`) and the request's
            // load_checkpoints (`20 00`) begin.
            let task = b[..b.len() - 4].to_vec();
            let (_, any, fast) = readers(&task);
            assert_eq!(fast.as_ref(), Some(&any), "{task:02x?}");
        }
        let mut ins = Vec::new();
        let trailing = hex("080d1202aaaa18002800300120");
        let fast = scan_fast_task::<true>(&trailing, &mut ins);
        assert!(fast.is_none(), "a trailing key");
        let run = hex("080d1202aaaa1800280030013a00");
        let run = scan_fast_task::<true>(&run, &mut ins).unwrap();
        assert_eq!((run.rr, run.result, run.checkpoint), (0, true, &[][..]));
    }
}
