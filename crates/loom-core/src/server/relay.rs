//! The data port's relay: workers answer `SEND{id, "!:port"}` with a `DataHeader` and the
//! object's frames, which go to the client that fetched the object.
//!
//! Two ways in, both answering the fetches in request order ([`super::transfers`]):
//! - [`Server::on_data_header`]: one header; the socket layer relays the frames that follow
//!   (an object still arriving, or a large one, is passed through chunk by chunk).
//! - [`Server::relay_whole`]: the whole objects at the start of a chunk, relayed here at once:
//!   per client, one `DATA_BATCH` response (`data-batch`, our extension) and the objects' frames
//!   as one buffer, or one `DATA` per object for a client that did not announce it (the
//!   original's). A gather of 100,000 small results crosses into the core once per chunk of
//!   the worker's data connection (~2,000 objects), with no per-object work in JavaScript.

use prost::Message;

use super::{wire, ConnId, Server, ServerError, TaskId};
use crate::data::stream::scan_header;
use crate::frame::push_frame;
use crate::proto::comm::{client_response, ClientResponse, DataHeader};

/// Where a fetched object's data stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// The client connection to relay to.
    pub client: ConnId,
    /// The framed `ClientResponse{DATA, data}` (with the client's own task id) to write first.
    pub response_frame: Vec<u8>,
    /// How many raw frames follow the header on the data connection (relay them contiguously).
    pub n_messages: u64,
}

/// What [`Server::relay_whole`] relayed: the bytes for each client, in the order the clients
/// first appear in the chunk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WholeRelay {
    /// Bytes of the chunk taken: whole objects (headers and frames), from its start on.
    pub consumed: usize,
    /// Objects taken (those nobody waits for included: their frames are dropped).
    pub objects: usize,
    /// Per client with objects: its connection and where its bytes end in `bytes`.
    pub writes: Vec<(ConnId, usize)>,
    /// The framed responses and the objects' frames, client after client.
    pub bytes: Vec<u8>,
}

/// `ClientResponse.type` DATA_BATCH (ours, feature `data-batch`), and the key of its
/// `data_batch` field (104, length-delimited).
const DATA_BATCH_TYPE: u8 = 103;
const DATA_BATCH_KEY: [u8; 2] = [0xc2, 0x06];

/// A header larger than this is left to [`Server::on_data_header`] (workers send ~10 bytes).
const MAX_SCANNED_HEADER: usize = 64;

/// The objects of one client in a chunk.
struct ClientRun {
    conn: ConnId,
    /// It announced `data-batch`: `table` collects the batch's entries, `frames` the frames.
    batch: bool,
    /// 12 bytes per object: client id, type id, frame count (little-endian).
    table: Vec<u8>,
    /// The objects' frames (after a `DATA` response each when not batched).
    frames: Vec<u8>,
}

impl Server {
    /// The payload of a DataHeader frame arrived on the server's data port: where the object
    /// goes, or `NoReceiver` when nobody waits for it (its frames are dropped).
    pub fn on_data_header(&mut self, header: &[u8]) -> Result<Relay, ServerError> {
        let h = DataHeader::decode(header).map_err(|_| ServerError::Malformed("DataHeader"))?;
        if !wire::data_header_complete(header) {
            // prost does not enforce proto2 `required`: a header without its frame count or type
            // cannot be relayed safely.
            return Err(ServerError::Malformed(
                "DataHeader (missing required fields)",
            ));
        }
        let n_messages = h.n_messages.max(0) as u64;
        let Some((client, client_id, _)) = self.fetch_receiver(h.id) else {
            return Err(ServerError::NoReceiver {
                id: h.id,
                n_messages,
            });
        };
        let mut response_frame = Vec::new();
        push_data_response(&mut response_frame, client_id, h.n_messages, h.type_id);
        Ok(Relay {
            client,
            response_frame,
            n_messages,
        })
    }

    /// Relays the whole objects at the start of `chunk` (bytes of a worker's data connection
    /// at an object's start, after its `Announce`): each header with all its frames inside
    /// `chunk`. Stops before the first object that is not whole in `chunk`, or whose header is
    /// not in the layout workers send (`id`, `n_messages`, `type_id`, varints, in that order):
    /// the socket layer relays it through [`Server::on_data_header`], which also reports a
    /// malformed one. Objects a client fetched go to it as one `DATA_BATCH` (two or more, to a
    /// client that announced `data-batch`) or one `DATA` each, followed by their frames.
    pub fn relay_whole(&mut self, chunk: &[u8]) -> WholeRelay {
        let mut runs: Vec<ClientRun> = Vec::new();
        let mut pos = 0usize;
        let mut objects = 0usize;
        while let Some((header, frames_at)) = control_frame(chunk, pos) {
            let Some(h) = scan_header(header) else {
                break;
            };
            let n = h.n_messages.max(0) as u64;
            let Some(end) = frames_end(chunk, frames_at, n) else {
                break;
            };
            objects += 1;
            if let Some((conn, client_id, batch)) = self.fetch_receiver(h.id) {
                let i = match runs.iter().position(|r| r.conn == conn) {
                    Some(i) => i,
                    None => {
                        runs.push(ClientRun {
                            conn,
                            batch,
                            table: Vec::new(),
                            frames: Vec::new(),
                        });
                        runs.len() - 1
                    }
                };
                let run = &mut runs[i];
                if run.batch && u32::try_from(n).is_ok() {
                    run.table.extend_from_slice(&client_id.to_le_bytes());
                    run.table.extend_from_slice(&h.type_id.to_le_bytes());
                    run.table.extend_from_slice(&(n as u32).to_le_bytes());
                } else {
                    run.flush_table();
                    push_data_response(&mut run.frames, client_id, h.n_messages, h.type_id);
                }
                run.frames.extend_from_slice(&chunk[frames_at..end]);
            }
            pos = end;
        }
        let mut out = WholeRelay {
            consumed: pos,
            objects,
            ..Default::default()
        };
        let total: usize = runs
            .iter()
            .map(|r| 32 + r.table.len() + r.frames.len())
            .sum();
        out.bytes.reserve_exact(total);
        for run in runs {
            let conn = run.conn;
            run.write(&mut out.bytes);
            out.writes.push((conn, out.bytes.len()));
        }
        out
    }

    /// The client waiting for data `id` (its next fetch, taken): its connection, its id of
    /// the object, and whether it announced `data-batch`. None when nobody waits (any more).
    fn fetch_receiver(&mut self, id: i32) -> Option<(ConnId, i32, bool)> {
        let f = self.moves.pop_fetch(TaskId(id))?;
        let client = &self.clients[f.client];
        client
            .alive
            .then_some((client.conn, f.client_id, client.data_batch))
    }
}

impl ClientRun {
    /// Writes the run: its `DATA_BATCH` (or its one object's `DATA`), then the frames.
    fn write(mut self, out: &mut Vec<u8>) {
        if self.table.len() == 12 {
            // One object: the ordinary DATA.
            let e = &self.table;
            let id = i32::from_le_bytes(e[..4].try_into().expect("4 bytes"));
            let type_id = i32::from_le_bytes(e[4..8].try_into().expect("4 bytes"));
            let n = u32::from_le_bytes(e[8..].try_into().expect("4 bytes"));
            push_data_response(out, id, n as i64, type_id);
        } else if !self.table.is_empty() {
            push_data_batch(out, &self.table);
        }
        self.table.clear();
        out.append(&mut self.frames);
    }

    /// An object that cannot join the batch (a frame count above 4G): the batch so far goes
    /// out first, with its frames, so that the objects stay in order.
    fn flush_table(&mut self) {
        if self.table.is_empty() {
            return;
        }
        let frames = std::mem::take(&mut self.frames);
        let mut head = Vec::with_capacity(frames.len() + self.table.len() + 32);
        let run = ClientRun {
            conn: self.conn,
            batch: true,
            table: std::mem::take(&mut self.table),
            frames,
        };
        run.write(&mut head);
        self.frames = head;
    }
}

/// The payload of the length-prefixed frame at `chunk[pos..]` and where the bytes after it
/// start; None when it is not whole in `chunk` or is longer than a data header can be.
#[inline]
fn control_frame(chunk: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let len = u64::from_le_bytes(chunk.get(pos..pos + 8)?.try_into().ok()?);
    if len > MAX_SCANNED_HEADER as u64 {
        return None;
    }
    let start = pos + 8;
    let end = start + len as usize;
    Some((chunk.get(start..end)?, end))
}

/// Where `n` frames starting at `chunk[pos..]` end; None when they do not all lie in `chunk`.
#[inline]
fn frames_end(chunk: &[u8], mut pos: usize, n: u64) -> Option<usize> {
    // Each frame takes at least its 8-byte prefix: more frames than that cannot be whole here.
    if n > ((chunk.len() - pos) / 8) as u64 {
        return None;
    }
    for _ in 0..n {
        let len = u64::from_le_bytes(chunk.get(pos..pos + 8)?.try_into().ok()?);
        let rest = (chunk.len() - pos - 8) as u64;
        if len > rest {
            return None;
        }
        pos += 8 + len as usize;
    }
    Some(pos)
}

/// Appends the framed `ClientResponse{DATA, data: {id, n_messages, type_id}}` (the original's).
fn push_data_response(out: &mut Vec<u8>, id: i32, n_messages: i64, type_id: i32) {
    push_frame(
        out,
        &ClientResponse {
            r#type: client_response::Type::Data as i32,
            data: Some(DataHeader {
                id,
                n_messages,
                type_id,
            }),
            ..Default::default()
        },
    );
}

/// Appends the framed `ClientResponse{DATA_BATCH, data_batch: table}` (docs/protocol-extensions.md).
fn push_data_batch(out: &mut Vec<u8>, table: &[u8]) {
    let mut head = [0u8; 14];
    head[..4].copy_from_slice(&[0x08, DATA_BATCH_TYPE, DATA_BATCH_KEY[0], DATA_BATCH_KEY[1]]);
    let mut n = 4;
    let mut v = table.len() as u64;
    while v >= 0x80 {
        head[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    head[n] = v as u8;
    n += 1;
    out.extend_from_slice(&((n + table.len()) as u64).to_le_bytes());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(table);
}
