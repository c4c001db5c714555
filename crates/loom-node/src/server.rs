//! `ServerCore`: the server's plan graph and scheduler, fed with socket bytes.

use crate::{ErrorCode, LogLine};
use loom_core::journal::writer::JournalWriter;
use loom_core::server::{Output, Server, ServerError};

/// `DataRelay.client` when nobody waits for the object: its frames are read and dropped.
const NO_CLIENT: u32 = u32::MAX;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

/// Bytes to write on one connection.
#[napi(object)]
pub struct ConnWrite {
    /// Connection id given by the TS layer.
    pub conn: u32,
    /// Already framed bytes.
    pub data: Buffer,
}

/// Where to relay each of several fetched objects ([`ServerCore::on_data_headers`]), in order.
#[napi(object)]
pub struct DataRelays {
    /// Per header: the client connection (`u32::MAX`: nobody waits, drop the frames).
    pub clients: Vec<u32>,
    /// Per header: the number of raw frames that follow it on the data connection.
    pub n_messages: Vec<f64>,
    /// The framed `ClientResponse{DATA}`s, one after the other (empty for a header nobody waits for).
    pub responses: Buffer,
    /// Per header: where its response ends in `responses`.
    pub ends: Vec<u32>,
    /// Set when a header was malformed: the headers before it were taken, it and those after not.
    pub error: Option<String>,
}

/// The whole objects [`ServerCore::relay_whole`] relayed, and what goes to each client.
#[napi(object)]
pub struct WholeRelays {
    /// Bytes of the chunk taken (from `start`).
    pub consumed: u32,
    /// Objects taken (those nobody waits for included).
    pub objects: u32,
    /// The clients' connections, each with bytes to write.
    pub conns: Vec<u32>,
    /// Where each client's bytes end in `bytes` (they start where the previous one's end).
    pub ends: Vec<u32>,
    /// The framed responses (`DATA_BATCH` or `DATA`) and the objects' frames, per client.
    pub bytes: Buffer,
}

/// What the server layer must do after an event.
#[napi(object)]
pub struct ServerOutput {
    /// Writes, per connection.
    pub writes: Vec<ConnWrite>,
    /// Connections to close after their writes.
    pub close: Vec<u32>,
    /// Log lines.
    pub logs: Vec<LogLine>,
    /// A client asked the server to terminate.
    pub terminate: bool,
}

/// Ready tasks no worker runs (see `loom_core::server::Waiting`).
#[napi(object)]
pub struct ServerWaiting {
    /// Connected workers.
    pub workers: u32,
    /// Ready tasks held back because no worker is connected.
    pub without_worker: i64,
    /// Ready tasks no connected worker can run (task type or cores).
    pub unrunnable: i64,
}

/// Where to relay a fetched object.
#[napi(object)]
pub struct DataRelay {
    /// The client connection.
    pub client: u32,
    /// The framed `ClientResponse{DATA}` to write before the data frames.
    pub response: Buffer,
    /// Number of raw frames that follow on the data connection.
    pub n_messages: i64,
}

/// Hands the output's journal records to the writer, then converts the rest.
fn convert_with(journal: &mut Option<JournalWriter>, mut out: Output) -> ServerOutput {
    if let Some(j) = journal.as_mut() {
        j.append(std::mem::take(&mut out.journal));
        if let Some(e) = j.take_error() {
            out.logs.push((loom_core::log::LogLevel::Error, e));
        }
    }
    convert(out)
}

/// `data` without its spare capacity. A write's buffer lives until V8 collects its `Buffer`,
/// and V8 counts only its length: the core reserves room for the next batch (up to 1 MiB per
/// worker per event), so a few bytes of frames could hold a MiB of heap until a full GC, which
/// V8 does not start for memory it does not see. Shrinking in place costs no copy.
fn exact(mut data: Vec<u8>) -> Vec<u8> {
    if data.capacity() - data.len() > 4096 {
        data.shrink_to_fit();
    }
    data
}

fn convert(out: Output) -> ServerOutput {
    ServerOutput {
        writes: out
            .writes
            .into_iter()
            .map(|(conn, data)| ConnWrite {
                conn,
                data: exact(data).into(),
            })
            .collect(),
        close: out.close,
        logs: LogLine::all(out.logs),
        terminate: out.terminate,
    }
}

/// Allocations of at least this many bytes get mappings of their own (see
/// [`large_allocations_mapped`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

/// Makes glibc's malloc map every allocation of [`MMAP_THRESHOLD`] bytes or more on its own and
/// unmap it when freed. By default the threshold follows the largest block freed (up to
/// 32 MiB), after which the server's big, short-lived buffers (a plan's scan columns, the
/// SENDs and TASK of an `array/make` over a million inputs, the transfer tables) land in the
/// main heap and its freed space stays resident: W1 N=1M peaked ~8 B/task higher (README,
/// "Where the server's memory per task goes"). Blocks below 4 MiB (the per-event output
/// buffers) keep coming from the heap. Other allocators (musl) are left as they are.
fn large_allocations_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; any value is accepted or refused (0).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// The server core (one per server process).
#[napi]
pub struct ServerCore {
    pub(crate) inner: Server,
    /// The journal's writer thread (`--journal`).
    journal: Option<JournalWriter>,
}

#[napi]
impl ServerCore {
    /// `dataPort`: the port of the server's data listener.
    #[napi(constructor)]
    pub fn new(data_port: u32) -> Self {
        large_allocations_mapped();
        ServerCore {
            inner: Server::new(data_port as u16),
            journal: None,
        }
    }

    /// Journals to `path` (`--journal`): an existing journal's plans are restored first (its
    /// corrupt or truncated tail cut, with a warning), then it is compacted and appended to
    /// with group commit on a thread of its own. `compactMinBytes`: compact while running once
    /// the file is at least this large (and twice its compacted size). Call before any
    /// connection. Throws `ERR_LOOM_JOURNAL` (the message names the path) when it cannot be
    /// read or written.
    #[napi]
    pub fn open_journal(
        &mut self,
        path: String,
        compact_min_bytes: Option<i64>,
    ) -> napi::Result<ServerOutput, ErrorCode> {
        let err = |e: loom_core::journal::JournalError| {
            napi::Error::new(ErrorCode::ERR_LOOM_JOURNAL, e.to_string())
        };
        let path = std::path::PathBuf::from(path);
        let contents = loom_core::journal::read(&path).map_err(err)?;
        let mut logs = Vec::new();
        if let Some(cut) = &contents.cut {
            logs.push((loom_core::log::LogLevel::Warn, cut.clone()));
        }
        let records = loom_core::journal::compact(contents.records);
        self.inner.enable_journal();
        if !records.is_empty() {
            self.inner.restore(&records);
        }
        let min = compact_min_bytes
            .map(|b| b.max(0) as u64)
            .unwrap_or(loom_core::journal::writer::COMPACT_MIN_BYTES);
        self.journal = Some(JournalWriter::create(&path, &records, min).map_err(err)?);
        let mut out = self.inner.take_output();
        // The restore's own records (sessions) are in the compacted file already.
        out.journal.clear();
        out.logs.splice(0..0, logs);
        Ok(convert(out))
    }

    /// The server lets worker connection `conn` go (undefined: every worker): workers that would
    /// reconnect are sent STOP; write the output before closing the connections.
    #[napi]
    pub fn goodbye(&mut self, conn: Option<u32>) -> ServerOutput {
        self.inner.goodbye(conn.map(|c| c as _));
        convert_with(&mut self.journal, self.inner.take_output())
    }

    /// How many results reported before a restart wait for a reconnecting worker to bring
    /// them back (the reconnect grace after `openJournal`; 0: none, or it is over).
    #[napi]
    pub fn awaiting_results(&self) -> u32 {
        self.inner.awaiting_results() as u32
    }

    /// Ends the reconnect grace (`--reconnect-grace` elapsed, or 0): results no worker brought
    /// back are computed again.
    #[napi]
    pub fn end_reconnect_grace(&mut self) -> ServerOutput {
        self.inner.end_reconnect_grace();
        convert_with(&mut self.journal, self.inner.take_output())
    }

    /// Discards restored client sessions that have not re-attached (their plans go).
    #[napi]
    pub fn discard_detached(&mut self) -> ServerOutput {
        self.inner.discard_detached();
        convert_with(&mut self.journal, self.inner.take_output())
    }

    /// Blocks until every journal record so far is on disk (before a clean exit).
    #[napi]
    pub fn journal_sync(&self) {
        if let Some(j) = &self.journal {
            j.sync();
        }
    }

    /// A task whose worker is lost while running it `n` times fails instead of being tried
    /// again (`--max-crashes`; default 2).
    #[napi]
    pub fn set_max_crashes(&mut self, n: u32) {
        self.inner.set_max_crashes(n);
    }

    /// A main-port connection was accepted.
    #[napi]
    pub fn on_connect(&mut self, conn: u32, peer_ip: String) -> ServerOutput {
        self.inner.on_connect(conn, &peer_ip);
        convert_with(&mut self.journal, self.inner.take_output())
    }

    /// Bytes arrived on a main-port connection.
    #[napi]
    pub fn on_data(&mut self, conn: u32, chunk: &[u8]) -> ServerOutput {
        self.inner.on_data(conn, chunk);
        convert_with(&mut self.journal, self.inner.take_output())
    }

    /// A main-port connection closed.
    #[napi]
    pub fn on_close(&mut self, conn: u32) -> ServerOutput {
        self.inner.on_close(conn);
        convert_with(&mut self.journal, self.inner.take_output())
    }

    /// Lets the worker on main-port connection `conn` go (an allocation queue scaling down):
    /// forgotten as by `onClose`, shown as departed, not lost.
    #[napi]
    pub fn retire_worker(&mut self, conn: u32) -> ServerOutput {
        self.inner.retire_worker(conn);
        convert(self.inner.take_output())
    }

    /// About once a second: writes the trace out when due (no-op while not tracing).
    #[napi]
    pub fn trace_tick(&mut self) -> ServerOutput {
        self.inner.trace_tick();
        convert_with(&mut self.journal, self.inner.take_output())
    }

    /// Counts ready tasks that wait for a worker (polled by the TS server to warn about them).
    #[napi]
    pub fn waiting(&self) -> ServerWaiting {
        let w = self.inner.waiting();
        ServerWaiting {
            workers: w.workers,
            without_worker: w.without_worker as i64,
            unrunnable: w.unrunnable as i64,
        }
    }

    /// The server's status as JSON (the `Snapshot` of `loom_core::server`: workers, clients,
    /// plans with tasks by state and label group, transfers, counters, recent failures).
    /// Built from counters: O(workers + clients + plans), never a pass over tasks.
    #[napi]
    pub fn snapshot(&self) -> String {
        self.inner.snapshot().to_json()
    }

    /// Writes the trace out (before the process exits).
    #[napi]
    pub fn trace_flush(&mut self) {
        self.inner.trace_flush();
    }

    /// Several DataHeader frames arrived on the data port (each with its u64 little-endian
    /// length prefix, one after the other, as on the wire); says where each object goes. One
    /// call per chunk of a data connection rather than one per object (issue #26). Each header
    /// is taken exactly as by [`ServerCore::on_data_header`]; a malformed one stops the batch
    /// (`error`). Whole objects take [`ServerCore::relay_whole`] instead.
    #[napi]
    pub fn on_data_headers(&mut self, framed: &[u8]) -> DataRelays {
        let mut clients = Vec::new();
        let mut n_messages = Vec::new();
        let mut responses = Vec::new();
        let mut ends = Vec::new();
        let mut error = None;
        let mut rest = framed;
        while !rest.is_empty() {
            let Some((len, body)) = rest
                .get(..8)
                .map(|p| u64::from_le_bytes(p.try_into().expect("8 bytes")))
                .and_then(|len| Some((len as usize, rest.get(8..)?)))
                .filter(|(len, body)| *len <= body.len())
            else {
                error = Some("truncated header list".to_string());
                break;
            };
            let (header, after) = body.split_at(len);
            rest = after;
            match self.inner.on_data_header(header) {
                Ok(r) => {
                    clients.push(r.client);
                    n_messages.push(r.n_messages as f64);
                    responses.extend_from_slice(&r.response_frame);
                }
                Err(ServerError::NoReceiver { n_messages: n, .. }) => {
                    clients.push(NO_CLIENT);
                    n_messages.push(n as f64);
                }
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
            ends.push(responses.len() as u32);
        }
        DataRelays {
            clients,
            n_messages,
            responses: responses.into(),
            ends,
            error,
        }
    }

    /// Relays the whole objects of a data connection's `chunk` from `start` (an object's start):
    /// each header with all its frames in the chunk, up to the first that is not (or whose
    /// header is not in the layout workers send: relay it with `onDataHeaders`). Per client, one
    /// `DATA_BATCH` (`data-batch`) or a `DATA` per object, then the frames, in one buffer
    /// (`loom_core::server::Server::relay_whole`): no JavaScript per object.
    #[napi]
    pub fn relay_whole(&mut self, chunk: &[u8], start: u32) -> WholeRelays {
        let r = self
            .inner
            .relay_whole(chunk.get(start as usize..).unwrap_or(&[]));
        WholeRelays {
            consumed: r.consumed as u32,
            objects: r.objects as u32,
            conns: r.writes.iter().map(|w| w.0).collect(),
            ends: r.writes.iter().map(|w| w.1 as u32).collect(),
            bytes: r.bytes.into(),
        }
    }

    /// A DataHeader frame arrived on the data port; says where the object goes.
    #[napi]
    /// A malformed header throws `ERR_LOOM_DATA_HEADER`.
    pub fn on_data_header(&mut self, header: &[u8]) -> napi::Result<DataRelay, ErrorCode> {
        let relay = match self.inner.on_data_header(header) {
            Ok(r) => r,
            // Nobody waits for it any more (the client left): the frames are skipped.
            Err(ServerError::NoReceiver { n_messages, .. }) => {
                return Ok(DataRelay {
                    client: NO_CLIENT,
                    response: Vec::new().into(),
                    n_messages: n_messages as i64,
                })
            }
            Err(e) => {
                return Err(napi::Error::new(
                    ErrorCode::ERR_LOOM_DATA_HEADER,
                    e.to_string(),
                ))
            }
        };
        Ok(DataRelay {
            client: relay.client,
            response: relay.response_frame.into(),
            n_messages: relay.n_messages as i64,
        })
    }
}

/// What the journal at `path` holds (`hyperloom journal`), as JSON (the `Summary` of
/// `loom_core::journal::summary`): client sessions, plans, tasks by state, and a cut tail if
/// any. The file is only read. Throws `ERR_LOOM_JOURNAL` when it cannot be read or is not a
/// journal.
#[napi]
pub fn read_journal(path: String) -> napi::Result<String, ErrorCode> {
    let c = loom_core::journal::read(std::path::Path::new(&path))
        .map_err(|e| napi::Error::new(ErrorCode::ERR_LOOM_JOURNAL, e.to_string()))?;
    Ok(loom_core::journal::summary::summarize(&c).to_json())
}

/// The fields of a main-port connection's first frame the server reads before the core gets it
/// (`loom_core::server::RegisterHead`).
#[napi(object)]
pub struct RegisterHead {
    /// An allocation control connection (`Register.type` 100, `proto/alloc.proto`): served outside the core.
    pub alloc_control: bool,
    /// The cluster job of a worker started inside one (our field 100); empty when absent.
    pub job_id: String,
}

/// Scans a `Register` payload (the first frame's, without its length prefix); `null` when it is
/// not one (the core then rejects the connection). No JavaScript protobuf decoder is loaded for it.
#[napi]
pub fn scan_register(payload: Buffer) -> Option<RegisterHead> {
    loom_core::server::scan_register_head(&payload).map(|h| RegisterHead {
        alloc_control: h.kind == loom_core::server::REGISTER_ALLOC_CONTROL,
        job_id: h.job_id,
    })
}
