//! The byte format of function calls (`loom/js/call`) between the worker core and the worker's
//! JS layer (issue #26): the calls an event starts travel to JS as ONE buffer
//! (`WorkerEffects.calls`), and a batch of calls' answers comes back as one buffer
//! (`WorkerCore.finishCalls`), instead of a napi object per call (its strings, Buffers and
//! arrays cost more than running a small call) and one crossing with its own effects per answer.
//! The JS side (`worker/function-call.ts`) reads and writes the same layout.
//!
//! All integers little-endian. A call:
//!
//! ```text
//! u32 length of the rest of the record
//! i32 task id
//! u8  flags (bit 0: a call of the function-call pool, `TaskToRun.pooled`)
//! u32 config length, config bytes (the serialized direct arguments)
//! u32 input count (input 0 is the function value)
//! per input:
//!   u8  type name length, type name (`loom/data`, `loom/js/obj`, ...)
//!   f64 size, f64 length
//!   u8  where the content is: 0 nowhere, 1 bytes, 2 a file (its path, UTF-8)
//!   u32 length, the bytes or the path
//! ```
//!
//! An answer:
//!
//! ```text
//! i32 task id
//! u8  kind: 1 plain bytes (`loom/data`), 2 a serialized JS value (`loom/js/obj`),
//!           3 an error (its message, UTF-8: the task fails with it)
//! u32 length, the bytes
//! ```

use loom_core::worker::{JsInput, JsResult, JsTask};

/// The task type whose tasks travel as call records.
pub const JS_CALL_TASK_TYPE: &str = "loom/js/call";

/// Answer kind: plain bytes.
pub const ANSWER_PLAIN: u8 = 1;
/// Answer kind: a serialized JS value.
pub const ANSWER_JSOBJ: u8 = 2;
/// Answer kind: the call failed with this message.
pub const ANSWER_ERROR: u8 = 3;

/// Appends the record of call `t` to `out`.
pub fn push_call(out: &mut Vec<u8>, t: &JsTask) {
    let at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&t.id.to_le_bytes());
    out.push(u8::from(t.pooled));
    push_bytes(out, &t.config);
    out.extend_from_slice(&(t.inputs.len() as u32).to_le_bytes());
    for i in &t.inputs {
        push_input(out, i);
    }
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn push_input(out: &mut Vec<u8>, i: &JsInput) {
    let name = i.type_name.as_bytes();
    let name = &name[..name.len().min(255)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&(i.size as f64).to_le_bytes());
    out.extend_from_slice(&(i.length as f64).to_le_bytes());
    match (&i.bytes, &i.path) {
        (Some(b), _) => {
            out.push(1);
            push_bytes(out, b);
        }
        (None, Some(p)) => {
            out.push(2);
            push_bytes(out, p.as_bytes());
        }
        (None, None) => {
            out.push(0);
            out.extend_from_slice(&0u32.to_le_bytes());
        }
    }
}

fn push_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// One decoded answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// The call's result.
    Done(i32, JsResult),
    /// The call failed with this message.
    Failed(i32, &'a [u8]),
}

/// Decodes a buffer of answers; an error names what is malformed (nothing of it is applied).
pub fn read_answers(mut b: &[u8]) -> Result<Vec<Answer<'_>>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 9 {
            return Err(format!(
                "a function-call answer is cut short ({} bytes)",
                b.len()
            ));
        }
        let id = i32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
        let kind = b[4];
        let len = u32::from_le_bytes(b[5..9].try_into().expect("4 bytes")) as usize;
        let Some(bytes) = b.get(9..9 + len) else {
            return Err(format!(
                "the answer of task id={id} is cut short ({len} bytes announced)"
            ));
        };
        out.push(match kind {
            ANSWER_PLAIN => Answer::Done(id, JsResult::Plain(bytes.to_vec())),
            ANSWER_JSOBJ => Answer::Done(id, JsResult::JsObj(bytes.to_vec())),
            ANSWER_ERROR => Answer::Failed(id, bytes),
            k => {
                return Err(format!(
                    "the answer of task id={id} has an unknown kind {k}"
                ))
            }
        });
        b = &b[9 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(out: &mut Vec<u8>, id: i32, kind: u8, bytes: &[u8]) {
        out.extend_from_slice(&id.to_le_bytes());
        out.push(kind);
        push_bytes(out, bytes);
    }

    #[test]
    fn a_call_record_holds_its_config_and_inputs() {
        let t = JsTask {
            id: 7,
            task_type: JS_CALL_TASK_TYPE.into(),
            config: vec![1, 2, 3],
            inputs: vec![
                JsInput {
                    type_name: "loom/js/obj".into(),
                    size: 2,
                    length: 0,
                    bytes: Some(vec![9, 9]),
                    path: None,
                },
                JsInput {
                    type_name: "loom/file".into(),
                    size: 1 << 40,
                    length: 0,
                    bytes: None,
                    path: Some("/d/x".into()),
                },
            ],
            n_cpus: 1,
            cpu_slots: vec![],
            pooled: true,
        };
        let mut out = Vec::new();
        push_call(&mut out, &t);
        let len = u32::from_le_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        assert_eq!(&out[4..8], &7i32.to_le_bytes());
        assert_eq!(out[8], 1);
        assert_eq!(&out[9..13], &3u32.to_le_bytes());
        assert_eq!(&out[13..16], &[1, 2, 3]);
        assert_eq!(&out[16..20], &2u32.to_le_bytes());
        let mut at = 20;
        assert_eq!(out[at], 11);
        assert_eq!(&out[at + 1..at + 12], b"loom/js/obj");
        at += 12;
        assert_eq!(f64::from_le_bytes(out[at..at + 8].try_into().unwrap()), 2.0);
        at += 16;
        assert_eq!(out[at], 1);
        assert_eq!(&out[at + 1..at + 7], &[2, 0, 0, 0, 9, 9]);
        at += 7;
        assert_eq!(&out[at + 1..at + 10], b"loom/file");
        at += 10;
        assert_eq!(
            f64::from_le_bytes(out[at..at + 8].try_into().unwrap()),
            (1u64 << 40) as f64
        );
        at += 16;
        assert_eq!(out[at], 2);
        assert_eq!(&out[at + 5..], b"/d/x");
    }

    #[test]
    fn answers_decode_and_malformed_ones_are_refused() {
        let mut b = Vec::new();
        answer(&mut b, 1, ANSWER_PLAIN, b"2");
        answer(&mut b, 2, ANSWER_JSOBJ, &[0xff, 0x0f]);
        answer(&mut b, 3, ANSWER_ERROR, b"boom");
        assert_eq!(
            read_answers(&b).unwrap(),
            vec![
                Answer::Done(1, JsResult::Plain(b"2".to_vec())),
                Answer::Done(2, JsResult::JsObj(vec![0xff, 0x0f])),
                Answer::Failed(3, b"boom"),
            ]
        );
        assert!(read_answers(&b[..b.len() - 1])
            .unwrap_err()
            .contains("id=3 is cut short"));
        let mut bad = Vec::new();
        answer(&mut bad, 4, 9, b"");
        assert!(read_answers(&bad).unwrap_err().contains("unknown kind 9"));
        assert!(read_answers(&[1, 0]).unwrap_err().contains("cut short"));
        assert_eq!(read_answers(&[]).unwrap(), vec![]);
    }
}
