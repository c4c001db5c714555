//! One data connection: frames in, objects out. A plain frame larger than the spill limit is
//! written straight to a data file as its bytes arrive (never held whole in memory); other
//! frames are taken from the chunk without copying when they are complete in it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use crate::data::stream::{Decoded, NextFrame, StreamDecoder};
use crate::data::{DataDir, Plain, TypeIds, SPILL_LIMIT};

/// Frames other than plain data larger than this are a broken stream.
const MAX_META_FRAME: u64 = 1 << 32;

#[derive(Debug)]
enum Body {
    /// Between frames (`len_have` bytes of the next length prefix are buffered).
    Prefix,
    Mem {
        buf: Vec<u8>,
        need: usize,
    },
    File {
        file: BufWriter<File>,
        path: PathBuf,
        left: u64,
    },
}

/// How an object arrived (for the trace).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvStat {
    /// Bytes of its frames, prefixes included.
    pub bytes: u64,
    /// The data port the peer announced (0 if it did not).
    pub port: u16,
    /// When its header frame arrived (when the connection was opened or an earlier object arrived,
    /// if not `timed`: see [`Peer::feed`]).
    pub started: Instant,
    /// Whether it came as a hard link of the sender's data file (`peer-link`), not on a stream.
    pub linked: bool,
}

#[derive(Debug)]
pub(crate) struct Peer {
    first: bool,
    port: u16,
    obj_start: Instant,
    obj_bytes: u64,
    len_buf: [u8; 8],
    len_have: usize,
    body: Body,
    dec: StreamDecoder,
}

/// An Announce is `08 <varint port>`, then nothing or only our fields from 100 on (`peer-link`:
/// their keys are two bytes, the first with its high bit set); a DataHeader always carries
/// fields 2 and 3 (keys `10`, `18`) right after its id. So the first frame of a connection tells
/// by its shape whether the peer announced itself.
pub(super) fn is_announce(f: &[u8]) -> bool {
    if f.is_empty() {
        return true;
    }
    if f[0] != 0x08 {
        return false;
    }
    match f[1..].iter().position(|b| b & 0x80 == 0) {
        Some(i) => i + 2 == f.len() || f[i + 2] & 0x80 != 0,
        None => false,
    }
}

/// The port of an Announce frame (`08 <varint port>`), 0 if absent.
fn announced_port(f: &[u8]) -> u16 {
    let mut v = 0u64;
    for (k, &b) in f.iter().skip(1).take(5).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * k);
        if b & 0x80 == 0 {
            break;
        }
    }
    u16::try_from(v).unwrap_or(0)
}

impl Peer {
    pub fn new() -> Self {
        Peer {
            first: true,
            port: 0,
            obj_start: Instant::now(),
            obj_bytes: 0,
            len_buf: [0; 8],
            len_have: 0,
            body: Body::Prefix,
            dec: StreamDecoder::new(),
        }
    }

    /// A connection this worker opened to `port`: the peer does not announce itself on it,
    /// so the first frame it sends is data.
    pub fn outgoing(port: u16) -> Self {
        let mut peer = Peer::new();
        peer.first = false;
        peer.port = port;
        peer
    }

    /// The id of a partly received object.
    pub fn partial_id(&self) -> Option<i32> {
        self.dec.current_id()
    }

    /// Feeds a chunk; `on_obj` gets each complete object. `timed`: the objects' arrival times
    /// are wanted (a trace is on; [`RecvStat::started`] is left stale otherwise: a clock read
    /// per object is a noticeable share of receiving a small one).
    pub fn feed(
        &mut self,
        chunk: &[u8],
        ids: &TypeIds,
        dd: &DataDir,
        timed: bool,
        mut on_obj: impl FnMut(Decoded, RecvStat),
    ) -> Result<(), String> {
        let mut rest = chunk;
        while !rest.is_empty() {
            match &mut self.body {
                Body::Prefix => {
                    if self.len_have == 0 && rest.len() >= 8 {
                        let len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                        let avail = (rest.len() - 8) as u64;
                        if avail >= len && !self.spills(len, ids) {
                            let (frame, tail) = rest[8..].split_at(len as usize);
                            rest = tail;
                            self.frame(frame, ids, dd, timed, &mut on_obj)?;
                        } else {
                            rest = &rest[8..];
                            self.begin(len, ids, dd, timed, &mut on_obj)?;
                        }
                    } else {
                        let take = (8 - self.len_have).min(rest.len());
                        self.len_buf[self.len_have..self.len_have + take]
                            .copy_from_slice(&rest[..take]);
                        self.len_have += take;
                        rest = &rest[take..];
                        if self.len_have == 8 {
                            self.len_have = 0;
                            let len = u64::from_le_bytes(self.len_buf);
                            self.begin(len, ids, dd, timed, &mut on_obj)?;
                        }
                    }
                }
                Body::Mem { buf, need } => {
                    let take = (*need - buf.len()).min(rest.len());
                    buf.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if buf.len() == *need {
                        let Body::Mem { buf, .. } = std::mem::replace(&mut self.body, Body::Prefix)
                        else {
                            unreachable!()
                        };
                        self.frame(&buf, ids, dd, timed, &mut on_obj)?;
                    }
                }
                Body::File { file, left, .. } => {
                    let take = (*left).min(rest.len() as u64) as usize;
                    self.obj_bytes += take as u64;
                    file.write_all(&rest[..take])
                        .map_err(|e| format!("cannot write received data: {e}"))?;
                    *left -= take as u64;
                    rest = &rest[take..];
                    if *left == 0 {
                        self.finish_file(&mut on_obj)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn spills(&self, len: u64, ids: &TypeIds) -> bool {
        len > SPILL_LIMIT as u64 && !self.first && self.dec.next_frame(ids) == NextFrame::Plain
    }

    /// A length prefix was read and the body is not (wholly) in the current chunk.
    fn begin(
        &mut self,
        len: u64,
        ids: &TypeIds,
        dd: &DataDir,
        timed: bool,
        on_obj: &mut impl FnMut(Decoded, RecvStat),
    ) -> Result<(), String> {
        if self.spills(len, ids) {
            self.obj_bytes += 8;
            let path = dd.next_path();
            let file = File::create(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            self.body = Body::File {
                file: BufWriter::with_capacity(1 << 20, file),
                path,
                left: len,
            };
        } else if len == 0 {
            self.frame(&[], ids, dd, timed, on_obj)?;
        } else {
            if len > MAX_META_FRAME {
                return Err(format!("frame of {len} bytes"));
            }
            let need = len as usize;
            self.body = Body::Mem {
                buf: Vec::with_capacity(need.min(1 << 20)),
                need,
            };
        }
        Ok(())
    }

    fn finish_file(&mut self, on_obj: &mut impl FnMut(Decoded, RecvStat)) -> Result<(), String> {
        let Body::File { file, path, .. } = std::mem::replace(&mut self.body, Body::Prefix) else {
            unreachable!()
        };
        let flushed = file.into_inner().map_err(|e| e.into_error());
        let plain = flushed
            .and_then(|_| Plain::adopt_file(path.clone()))
            .map_err(|e| {
                let _ = std::fs::remove_file(&path);
                format!("cannot store received data: {e}")
            })?;
        if let Some(d) = self.dec.feed_plain(plain)? {
            on_obj(d, self.stat());
        }
        Ok(())
    }

    fn frame(
        &mut self,
        f: &[u8],
        ids: &TypeIds,
        dd: &DataDir,
        timed: bool,
        on_obj: &mut impl FnMut(Decoded, RecvStat),
    ) -> Result<(), String> {
        if self.first {
            self.first = false;
            if is_announce(f) {
                self.port = announced_port(f);
                return Ok(());
            }
        }
        if self.dec.current_id().is_none() {
            if timed {
                self.obj_start = Instant::now();
            }
            self.obj_bytes = 0;
        }
        self.obj_bytes += 8 + f.len() as u64;
        if let Some(d) = self.dec.feed(f, ids, dd)? {
            on_obj(d, self.stat());
        }
        Ok(())
    }

    fn stat(&self) -> RecvStat {
        RecvStat {
            bytes: self.obj_bytes,
            port: self.port,
            started: self.obj_start,
            linked: false,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Body::File { path, .. } = &self.body {
            let _ = std::fs::remove_file(path);
        }
    }
}
