//! The server journal (`hyperloom server --journal PATH`): what a restarted server needs to
//! resume its clients' plans.
//!
//! The core server ([`crate::server::Server`]) owns the state and emits [`Record`]s as they
//! happen; the [`writer`] appends them on its own thread with group commit (one `fdatasync` per
//! batch); on start, [`read`] returns the records of an existing journal (a corrupt or truncated
//! tail is cut with a warning) and [`compact`] drops what no longer matters.
//!
//! File layout: the 8-byte magic [`MAGIC`], then records, each framed as
//! `u32 LE payload length | u32 LE CRC-32 (IEEE) of the payload | payload`. A payload is one kind
//! byte and little-endian fields (see [`Record`]). What is journaled, and why that is enough:
//! - sessions of clients that announced `session` (only they can re-attach), and their end;
//! - every accepted plan as received (`PLAN` bytes), with its internal id base so the restored
//!   server gives its tasks the same internal ids, and the earlier plans it uses (compaction
//!   keeps what a kept plan refers to);
//! - releases, in order with plans (a replay is the same sequence of requests);
//! - completions the restore needs: results reported to their client and checkpoints written
//!   (with size and length). Other completions are not journaled: their data is held by a worker
//!   or is recomputed.
//! - the dictionary's growth (task types workers registered: plans refer to them by id) and the
//!   internal id counter (ids given to expanded dslice/dget tasks are never reused).

pub mod summary;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

/// The first 8 bytes of a journal file.
pub const MAGIC: &[u8; 8] = b"HLJRNL01";

/// A client session's token (random, given to the client in `ClientResponse.session`).
pub type SessionToken = u64;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A client session began.
    Session { token: SessionToken },
    /// The session ended (the client closed or was discarded): its plans are gone.
    SessionClosed { token: SessionToken },
    /// An accepted plan: the `Plan` message bytes as received. `ibase`: internal id of its first
    /// task; `client_base`, `n`: its client ids; `uses`: client bases of the earlier plans whose
    /// results it uses; `load`: the request's `load_checkpoints`.
    Plan {
        token: SessionToken,
        ibase: i32,
        client_base: i32,
        n: u32,
        uses: Vec<i32>,
        load: bool,
        bytes: Vec<u8>,
    },
    /// The client released its result `cid`.
    Release { token: SessionToken, cid: i32 },
    /// Task `cid` finished: `notified` (a result reported to its client) and/or `checkpointed`
    /// (its checkpoint file was written); `size` bytes, `length` elements.
    Finished {
        token: SessionToken,
        cid: i32,
        size: u64,
        length: u64,
        notified: bool,
        checkpointed: bool,
    },
    /// Every task of the plan starting at `client_base` is gone (freed): compaction may drop it.
    PlanDropped {
        token: SessionToken,
        client_base: i32,
    },
    /// The dictionary grew by these names (in order).
    Symbols { names: Vec<String> },
    /// The internal id counter reached `next` (expansions take ids too).
    NextId { next: i32 },
}

const K_SESSION: u8 = 1;
const K_SESSION_CLOSED: u8 = 2;
const K_PLAN: u8 = 3;
const K_RELEASE: u8 = 4;
const K_FINISHED: u8 = 5;
const K_PLAN_DROPPED: u8 = 6;
const K_SYMBOLS: u8 = 7;
const K_NEXT_ID: u8 = 8;

impl Record {
    /// Appends the framed record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; 8]);
        match self {
            Record::Session { token } => {
                out.push(K_SESSION);
                out.extend_from_slice(&token.to_le_bytes());
            }
            Record::SessionClosed { token } => {
                out.push(K_SESSION_CLOSED);
                out.extend_from_slice(&token.to_le_bytes());
            }
            Record::Plan {
                token,
                ibase,
                client_base,
                n,
                uses,
                load,
                bytes,
            } => {
                out.push(K_PLAN);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&ibase.to_le_bytes());
                out.extend_from_slice(&client_base.to_le_bytes());
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(&(uses.len() as u32).to_le_bytes());
                for u in uses {
                    out.extend_from_slice(&u.to_le_bytes());
                }
                out.push(*load as u8);
                out.extend_from_slice(bytes);
            }
            Record::Release { token, cid } => {
                out.push(K_RELEASE);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&cid.to_le_bytes());
            }
            Record::Finished {
                token,
                cid,
                size,
                length,
                notified,
                checkpointed,
            } => {
                out.push(K_FINISHED);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&cid.to_le_bytes());
                out.extend_from_slice(&size.to_le_bytes());
                out.extend_from_slice(&length.to_le_bytes());
                out.push(*notified as u8 | (*checkpointed as u8) << 1);
            }
            Record::PlanDropped { token, client_base } => {
                out.push(K_PLAN_DROPPED);
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&client_base.to_le_bytes());
            }
            Record::Symbols { names } => {
                out.push(K_SYMBOLS);
                out.extend_from_slice(&(names.len() as u32).to_le_bytes());
                for n in names {
                    out.extend_from_slice(&(n.len() as u32).to_le_bytes());
                    out.extend_from_slice(n.as_bytes());
                }
            }
            Record::NextId { next } => {
                out.push(K_NEXT_ID);
                out.extend_from_slice(&next.to_le_bytes());
            }
        }
        let len = (out.len() - start - 8) as u32;
        let crc = crc32(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes one payload (without its framing).
    fn decode(p: &[u8]) -> Option<Record> {
        let mut r = Fields { b: p.get(1..)? };
        let rec = match *p.first()? {
            K_SESSION => Record::Session { token: r.u64()? },
            K_SESSION_CLOSED => Record::SessionClosed { token: r.u64()? },
            K_PLAN => {
                let (token, ibase, client_base, n) = (r.u64()?, r.i32()?, r.i32()?, r.u32()?);
                let k = r.u32()? as usize;
                let mut uses = Vec::with_capacity(k.min(r.b.len() / 4));
                for _ in 0..k {
                    uses.push(r.i32()?);
                }
                Record::Plan {
                    token,
                    ibase,
                    client_base,
                    n,
                    uses,
                    load: r.u8()? != 0,
                    bytes: std::mem::take(&mut r.b).to_vec(),
                }
            }
            K_RELEASE => Record::Release {
                token: r.u64()?,
                cid: r.i32()?,
            },
            K_FINISHED => {
                let (token, cid, size, length, f) =
                    (r.u64()?, r.i32()?, r.u64()?, r.u64()?, r.u8()?);
                Record::Finished {
                    token,
                    cid,
                    size,
                    length,
                    notified: f & 1 != 0,
                    checkpointed: f & 2 != 0,
                }
            }
            K_PLAN_DROPPED => Record::PlanDropped {
                token: r.u64()?,
                client_base: r.i32()?,
            },
            K_SYMBOLS => {
                let n = r.u32()?;
                let mut names = Vec::new();
                for _ in 0..n {
                    let len = r.u32()? as usize;
                    names.push(String::from_utf8(r.take(len)?.to_vec()).ok()?);
                }
                Record::Symbols { names }
            }
            K_NEXT_ID => Record::NextId { next: r.i32()? },
            _ => return None,
        };
        r.b.is_empty().then_some(rec)
    }
}

/// Little-endian field reader over a payload.
struct Fields<'a> {
    b: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`), table driven.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = t[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// What [`read`] found in a journal file.
#[derive(Debug, Default)]
pub struct Contents {
    /// The whole records, in order.
    pub records: Vec<Record>,
    /// Bytes of whole records (plus the magic): where a cut tail starts.
    pub valid_len: u64,
    /// Why the tail was cut, if it was (a warning line for the log).
    pub cut: Option<String>,
}

/// Errors of the journal (with the path they are about).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {0}: not a HyperLoom journal (bad magic)")]
    NotAJournal(String),
}

/// Reads the records of the journal at `path` (none if it does not exist). A record that is
/// truncated, fails its CRC or does not decode ends the readable part: it and everything after
/// it is reported in [`Contents::cut`] (the caller truncates the file there).
pub fn read(path: &Path) -> Result<Contents, JournalError> {
    let io = |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut bytes = Vec::new();
    match std::fs::File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => return Err(io(e)),
    };
    parse(&bytes, path)
}

/// [`read`] over bytes already in memory.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Contents, JournalError> {
    let mut c = Contents::default();
    if bytes.is_empty() {
        return Ok(c);
    }
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        if bytes.len() < 8 && MAGIC.starts_with(bytes) {
            c.cut = Some(format!(
                "journal {}: truncated header; starting afresh",
                path.display()
            ));
            return Ok(c);
        }
        return Err(JournalError::NotAJournal(path.display().to_string()));
    }
    let mut pos = 8usize;
    c.valid_len = 8;
    while pos < bytes.len() {
        let bad = |why: &str| {
            Some(format!(
                "journal {}: {why} at byte {pos}; cutting {} bytes of tail",
                path.display(),
                bytes.len() - pos
            ))
        };
        if bytes.len() - pos < 8 {
            c.cut = bad("truncated record header");
            break;
        }
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap());
        if bytes.len() - pos - 8 < len {
            c.cut = bad("truncated record");
            break;
        }
        let payload = &bytes[pos + 8..pos + 8 + len];
        if crc32(payload) != crc {
            c.cut = bad("CRC mismatch");
            break;
        }
        let Some(rec) = Record::decode(payload) else {
            c.cut = bad("undecodable record");
            break;
        };
        c.records.push(rec);
        pos += 8 + len;
        c.valid_len = pos as u64;
    }
    Ok(c)
}

/// Drops what a restore does not need: every record of a closed session, and plans whose tasks
/// are all gone (`PlanDropped`) unless a kept later plan of the session uses them, with their
/// releases and completions. Symbols and the highest `NextId` stay.
pub fn compact(records: Vec<Record>) -> Vec<Record> {
    let closed: HashSet<SessionToken> = records
        .iter()
        .filter_map(|r| match r {
            Record::SessionClosed { token } => Some(*token),
            _ => None,
        })
        .collect();
    let dropped: HashSet<(SessionToken, i32)> = records
        .iter()
        .filter_map(|r| match r {
            Record::PlanDropped { token, client_base } => Some((*token, *client_base)),
            _ => None,
        })
        .collect();
    // Per session, from the last plan back: which plans stay (a plan is kept when it is not
    // dropped, or when a kept later plan may use one of its ids).
    let mut kept: HashMap<SessionToken, Vec<(i32, u32)>> = HashMap::new();
    let mut used: HashSet<(SessionToken, i32)> = HashSet::new();
    for r in records.iter().rev() {
        if let Record::Plan {
            token,
            client_base,
            n,
            uses,
            ..
        } = r
        {
            if closed.contains(token) {
                continue;
            }
            if !dropped.contains(&(*token, *client_base)) || used.contains(&(*token, *client_base))
            {
                kept.entry(*token).or_default().push((*client_base, *n));
                used.extend(uses.iter().map(|&u| (*token, u)));
            }
        }
    }
    let in_kept = |token: &SessionToken, cid: i32| {
        kept.get(token).is_some_and(|v| {
            v.iter()
                .any(|&(b, n)| cid >= b && (cid as i64) < b as i64 + n as i64)
        })
    };
    let mut next_id = None;
    let mut out = Vec::new();
    for r in records {
        let keep = match &r {
            Record::Session { token } => !closed.contains(token),
            Record::SessionClosed { .. } | Record::PlanDropped { .. } => false,
            Record::Plan {
                token, client_base, ..
            } => in_kept(token, *client_base),
            Record::Release { token, cid } | Record::Finished { token, cid, .. } => {
                in_kept(token, *cid)
            }
            Record::Symbols { .. } => true,
            Record::NextId { next } => {
                next_id = Some(next_id.map_or(*next, |m: i32| m.max(*next)));
                false
            }
        };
        if keep {
            out.push(r);
        }
    }
    if let Some(next) = next_id {
        out.push(Record::NextId { next });
    }
    out
}

/// Encodes `records` as a whole journal file (magic first).
pub fn encode_file(records: &[Record]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for r in records {
        r.encode(&mut out);
    }
    out
}

#[cfg(test)]
mod tests;
