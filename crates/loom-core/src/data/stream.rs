//! Data stream encoding (spec 5.4/5.5) and the incremental decoder that rebuilds an object from
//! its frames (worker-to-worker transfers).
//!
//! A stream is a `DataHeader{id, n_messages, type_id}` frame followed by the object's frames:
//! - plain / extern file: 1 frame of bytes (a file travels as `loom/data`);
//! - array: 1 frame of i32le element type ids, then each element;
//! - index: 1 frame `[i32le base type][(len+1) × u64le offsets]`, then the base;
//! - JS value: 1 frame of its serialized bytes;
//! - Python object: 1 frame of its pickled bytes.

use std::sync::Arc;

use prost::Message;

use super::{Array, DataDir, DataObject, DataRef, Index, JsObj, Plain, PyObj, TypeIds};
use crate::frame::push_raw_frame;
use crate::proto::comm::DataHeader;
use crate::proto::scan::Scanner;
use crate::proto::write::{put_frame_len, put_varint_at};

/// Number of frames after the header (`DataHeader.n_messages`), counted recursively.
pub fn n_frames(obj: &DataObject) -> u64 {
    match obj {
        DataObject::Array(a) => 1 + a.items().iter().map(|x| n_frames(x)).sum::<u64>(),
        DataObject::Index(i) => 1 + n_frames(i.base()),
        _ => 1,
    }
}

/// Total bytes [`encode_stream`] appends (header frame included), to reserve once.
pub fn encoded_len(id: i32, obj: &DataObject, ids: &TypeIds) -> usize {
    header(id, obj, ids).encoded_len() + 8 + frames_len(obj)
}

fn frames_len(obj: &DataObject) -> usize {
    8 + match obj {
        DataObject::Plain(p) => p.len(),
        DataObject::File(f) => f.len(),
        DataObject::JsObj(j) => j.bytes().len(),
        DataObject::PyObj(p) => p.bytes().len(),
        DataObject::Array(a) => {
            4 * a.len() + a.items().iter().map(|x| frames_len(x)).sum::<usize>()
        }
        DataObject::Index(i) => 4 + 8 * i.offsets().len() + frames_len(i.base()),
    }
}

fn header(id: i32, obj: &DataObject, ids: &TypeIds) -> DataHeader {
    DataHeader {
        id,
        n_messages: n_frames(obj) as i64,
        type_id: ids.wire_type(obj),
    }
}

/// Appends the framed `DataHeader` of `obj` under `id`, byte for byte what prost writes (fields
/// 1, 2, 3 in order, all present: they are `required`), built in a stack buffer: no message
/// struct, no length pass (issue #26: a worker sends W1's ~500,000 small merges to the other).
#[inline]
fn push_header(out: &mut Vec<u8>, id: i32, obj: &DataObject, ids: &TypeIds) {
    let n_messages = match obj {
        DataObject::Array(_) | DataObject::Index(_) => n_frames(obj),
        _ => 1,
    };
    let mut buf = [0u8; 8 + 33];
    let mut n = 8;
    buf[n] = 0x08;
    n += 1;
    put_varint_at(&mut buf, &mut n, id as i64 as u64);
    buf[n] = 0x10;
    n += 1;
    put_varint_at(&mut buf, &mut n, n_messages);
    buf[n] = 0x18;
    n += 1;
    put_varint_at(&mut buf, &mut n, ids.wire_type(obj) as i64 as u64);
    put_frame_len(&mut buf, n);
    // One fixed-size copy cut back to length (as `worker::wire::push_response`).
    let start = out.len();
    out.extend_from_slice(&buf);
    out.truncate(start + n);
}

/// Reads a `DataHeader` in the layout [`push_header`] (and the original's workers, and prost)
/// writes: `id` (1), `n_messages` (2), `type_id` (3), each a varint, once, in that order,
/// nothing else. None for any other layout (which prost then decodes, or rejects). The one
/// reader of headers on the hot paths: a worker receiving a stream, the server's relay.
#[inline]
pub fn scan_header(b: &[u8]) -> Option<DataHeader> {
    let mut r = Scanner::new(b);
    let mut field = |key: u64| -> Option<u64> {
        if r.varint().ok()? != key {
            return None;
        }
        r.varint().ok()
    };
    let id = field(0x08)? as i32;
    let n_messages = field(0x10)? as i64;
    let type_id = field(0x18)? as i32;
    r.done().then_some(DataHeader {
        id,
        n_messages,
        type_id,
    })
}

/// Appends the whole stream of `obj` under `id`: the DataHeader frame and the object's frames.
pub fn encode_stream(id: i32, obj: &DataObject, ids: &TypeIds, out: &mut Vec<u8>) {
    out.reserve(encoded_len(id, obj, ids));
    push_header(out, id, obj, ids);
    encode_frames(obj, ids, out);
}

/// Appends the frames of `obj` (no header).
pub fn encode_frames(obj: &DataObject, ids: &TypeIds, out: &mut Vec<u8>) {
    match obj {
        DataObject::Plain(p) => push_raw_frame(out, p.bytes()),
        DataObject::File(f) => push_raw_frame(out, f.bytes()),
        DataObject::JsObj(j) => push_raw_frame(out, j.bytes()),
        DataObject::PyObj(p) => push_raw_frame(out, p.bytes()),
        DataObject::Array(a) => {
            out.extend_from_slice(&(4 * a.len() as u64).to_le_bytes());
            for x in a.items() {
                out.extend_from_slice(&ids.wire_type(x).to_le_bytes());
            }
            for x in a.items() {
                encode_frames(x, ids, out);
            }
        }
        DataObject::Index(i) => {
            let offs = i.offsets();
            out.extend_from_slice(&(4 + 8 * offs.len() as u64).to_le_bytes());
            out.extend_from_slice(&ids.wire_type(i.base()).to_le_bytes());
            for o in offs {
                out.extend_from_slice(&o.to_le_bytes());
            }
            encode_frames(i.base(), ids, out);
        }
    }
}

/// Below this size a D-Object's bytes are copied into the stream buffer; from it on they are
/// handed over by reference ([`StreamPart::Shared`]) so large objects leave the store uncopied.
pub const SHARED_PAYLOAD_MIN: usize = 64 * 1024;

/// A piece of an encoded stream: bytes to write, or the bytes of a stored D-Object (written as
/// they are, without copying; its frame prefix is at the end of the preceding `Bytes` part).
#[derive(Debug, Clone)]
pub enum StreamPart {
    /// Encoded bytes (headers, prefixes, small objects).
    Bytes(Vec<u8>),
    /// The content of a plain or file object, referenced (an `Arc`: its bytes never move).
    Shared(Arc<DataObject>),
}

impl StreamPart {
    /// The bytes this part stands for.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            StreamPart::Bytes(b) => b,
            StreamPart::Shared(o) => o.bytes().unwrap_or_default(),
        }
    }
}

/// Encodes the stream of `obj` under `id` as parts: D-Objects of at least `min_shared` bytes are
/// referenced, everything else is copied into `Bytes` parts.
pub fn encode_stream_parts(
    id: i32,
    obj: &DataRef,
    ids: &TypeIds,
    min_shared: usize,
) -> Vec<StreamPart> {
    let mut parts = Vec::new();
    let mut cur = Vec::new();
    push_header(&mut cur, id, obj, ids);
    encode_frames_parts(obj, ids, min_shared, &mut cur, &mut parts);
    if !cur.is_empty() {
        parts.push(StreamPart::Bytes(cur));
    }
    parts
}

/// Appends the stream of `obj` under `id` to `parts` (as [`encode_stream_parts`] makes it):
/// encoded bytes go on at the end of the last part when that is an encoded part shorter than
/// `join_below` bytes, so the streams of many small objects become one buffer without copying
/// each again.
pub fn append_stream_parts(
    id: i32,
    obj: &DataRef,
    ids: &TypeIds,
    min_shared: usize,
    join_below: usize,
    parts: &mut Vec<StreamPart>,
) {
    let mut cur = match parts.last() {
        Some(StreamPart::Bytes(b)) if b.len() < join_below => match parts.pop() {
            Some(StreamPart::Bytes(b)) => b,
            _ => unreachable!("the last part is encoded bytes"),
        },
        _ => Vec::new(),
    };
    push_header(&mut cur, id, obj, ids);
    encode_frames_parts(obj, ids, min_shared, &mut cur, parts);
    if !cur.is_empty() {
        parts.push(StreamPart::Bytes(cur));
    }
}

fn encode_frames_parts(
    obj: &DataRef,
    ids: &TypeIds,
    min_shared: usize,
    cur: &mut Vec<u8>,
    parts: &mut Vec<StreamPart>,
) {
    match &**obj {
        DataObject::Plain(_) | DataObject::File(_) => {
            let b = obj.bytes().unwrap_or_default();
            if b.len() >= min_shared {
                cur.extend_from_slice(&(b.len() as u64).to_le_bytes());
                parts.push(StreamPart::Bytes(std::mem::take(cur)));
                parts.push(StreamPart::Shared(obj.to_shared()));
            } else {
                push_raw_frame(cur, b);
            }
        }
        DataObject::Array(a) => {
            cur.extend_from_slice(&(4 * a.len() as u64).to_le_bytes());
            for x in a.items() {
                cur.extend_from_slice(&ids.wire_type(x).to_le_bytes());
            }
            for x in a.items() {
                encode_frames_parts(x, ids, min_shared, cur, parts);
            }
        }
        DataObject::Index(i) => {
            let offs = i.offsets();
            cur.extend_from_slice(&(4 + 8 * offs.len() as u64).to_le_bytes());
            cur.extend_from_slice(&ids.wire_type(i.base()).to_le_bytes());
            for o in offs {
                cur.extend_from_slice(&o.to_le_bytes());
            }
            let base = DataRef::from(i.base().clone());
            encode_frames_parts(&base, ids, min_shared, cur, parts);
        }
        DataObject::JsObj(_) | DataObject::PyObj(_) => encode_frames(obj, ids, cur),
    }
}

/// What the next frame fed to a [`StreamDecoder`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextFrame {
    /// A `DataHeader` (no object in progress).
    Header,
    /// The bytes of a plain object: a large one may be written straight to a data file and
    /// handed over with [`StreamDecoder::feed_plain`].
    Plain,
    /// Any other frame (type ids, index offsets, JS value).
    Other,
}

#[derive(Debug)]
enum Partial {
    Array {
        types: Vec<i32>,
        items: Vec<DataRef>,
    },
    Index {
        offsets: Vec<u64>,
    },
}

#[derive(Debug)]
struct Current {
    id: i32,
    remaining: u64,
    next_type: i32,
    stack: Vec<Partial>,
}

/// Rebuilds objects from the frames of consecutive streams on one connection.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    cur: Option<Current>,
}

/// A decoded object and the id from its header.
pub type Decoded = (i32, DataRef);

impl StreamDecoder {
    /// A decoder waiting for a header.
    pub fn new() -> Self {
        Self::default()
    }

    /// True while an object is partly received.
    pub fn in_progress(&self) -> bool {
        self.cur.is_some()
    }

    /// The id of the object in progress.
    pub fn current_id(&self) -> Option<i32> {
        self.cur.as_ref().map(|c| c.id)
    }

    /// What the next frame is.
    pub fn next_frame(&self, ids: &TypeIds) -> NextFrame {
        match &self.cur {
            None => NextFrame::Header,
            Some(c) if c.next_type == ids.data => NextFrame::Plain,
            Some(_) => NextFrame::Other,
        }
    }

    /// Feeds one frame payload. Returns the object once its last frame arrived.
    pub fn feed(
        &mut self,
        frame: &[u8],
        ids: &TypeIds,
        dd: &DataDir,
    ) -> Result<Option<Decoded>, String> {
        let Some(cur) = self.cur.as_mut() else {
            let h = match scan_header(frame) {
                Some(h) => h,
                None => DataHeader::decode(frame).map_err(|e| format!("bad DataHeader: {e}"))?,
            };
            if h.n_messages < 1 {
                return Err(format!(
                    "DataHeader id={} announces {} frames",
                    h.id, h.n_messages
                ));
            }
            self.cur = Some(Current {
                id: h.id,
                remaining: h.n_messages as u64,
                next_type: h.type_id,
                stack: Vec::new(),
            });
            return Ok(None);
        };
        let ty = cur.next_type;
        if ty == ids.data && cur.remaining == 1 && cur.stack.is_empty() {
            // A whole object of one plain frame (W1's transferred merges): done at once.
            let plain = dd
                .plain_from_slice(frame)
                .map_err(|e| format!("cannot store received data: {e}"))?;
            let id = cur.id;
            self.cur = None;
            return Ok(Some((id, DataRef::new(DataObject::Plain(plain)))));
        }
        let obj = if ty == ids.data {
            DataObject::Plain(
                dd.plain_from_slice(frame)
                    .map_err(|e| format!("cannot store received data: {e}"))?,
            )
        } else if ty == ids.jsobj {
            DataObject::JsObj(JsObj::new(frame.to_vec()))
        } else if ty == ids.array {
            if !frame.len().is_multiple_of(4) {
                return Err(format!("array type frame of {} bytes", frame.len()));
            }
            let types: Vec<i32> = frame
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            if types.is_empty() {
                DataObject::Array(Array::new(Vec::new()))
            } else {
                cur.next_type = types[0];
                let items = Vec::with_capacity(types.len());
                cur.stack.push(Partial::Array { types, items });
                return self.count_frame(None);
            }
        } else if ty == ids.index {
            if frame.len() < 12 || !(frame.len() - 4).is_multiple_of(8) {
                return Err(format!("index frame of {} bytes", frame.len()));
            }
            cur.next_type = i32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
            let offsets = frame[4..]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            cur.stack.push(Partial::Index { offsets });
            return self.count_frame(None);
        } else if ty == ids.pyobj {
            DataObject::PyObj(PyObj::new(frame.to_vec()))
        } else {
            return Err(format!("data of unknown type id {ty}"));
        };
        self.complete(obj)
    }

    /// Feeds a plain object built from a frame the caller stored itself (see [`NextFrame::Plain`]).
    pub fn feed_plain(&mut self, plain: Plain) -> Result<Option<Decoded>, String> {
        if self.cur.is_none() {
            return Err("plain frame without a DataHeader".to_owned());
        }
        self.complete(DataObject::Plain(plain))
    }

    /// Counts one consumed frame; errors if the header announced fewer.
    fn count_frame(&mut self, done: Option<Decoded>) -> Result<Option<Decoded>, String> {
        let cur = self.cur.as_mut().expect("in progress");
        if cur.remaining == 0 {
            return Err(format!(
                "data id={}: more frames than the header announced",
                cur.id
            ));
        }
        cur.remaining -= 1;
        match done {
            Some(d) => {
                let left = cur.remaining;
                self.cur = None;
                if left != 0 {
                    return Err(format!(
                        "data id={}: header announced {left} more frames",
                        d.0
                    ));
                }
                Ok(Some(d))
            }
            None if cur.remaining == 0 => Err(format!(
                "data id={}: object incomplete after the announced frames",
                cur.id
            )),
            None => Ok(None),
        }
    }

    /// A leaf object is complete: attach it to its parents, finishing those that are full.
    fn complete(&mut self, obj: DataObject) -> Result<Option<Decoded>, String> {
        let cur = self.cur.as_mut().expect("in progress");
        let mut obj = DataRef::new(obj);
        loop {
            match cur.stack.last_mut() {
                None => {
                    let id = cur.id;
                    return self.count_frame(Some((id, obj)));
                }
                Some(Partial::Array { types, items }) => {
                    items.push(obj);
                    if items.len() < types.len() {
                        cur.next_type = types[items.len()];
                        return self.count_frame(None);
                    }
                    let Some(Partial::Array { items, .. }) = cur.stack.pop() else {
                        unreachable!()
                    };
                    obj = DataRef::new(DataObject::Array(Array::new(items)));
                }
                Some(Partial::Index { .. }) => {
                    let Some(Partial::Index { offsets }) = cur.stack.pop() else {
                        unreachable!()
                    };
                    obj = DataRef::new(DataObject::Index(Index::new(obj.to_shared(), offsets)?));
                }
            }
        }
    }
}
