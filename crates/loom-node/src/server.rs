//! `ServerCore`: the server's plan graph and scheduler, fed with socket bytes.

use crate::{ErrorCode, LogLine};
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

fn convert(out: Output) -> ServerOutput {
    ServerOutput {
        writes: out
            .writes
            .into_iter()
            .map(|(conn, data)| ConnWrite {
                conn,
                data: data.into(),
            })
            .collect(),
        close: out.close,
        logs: LogLine::all(out.logs),
        terminate: out.terminate,
    }
}

/// The server core (one per server process).
#[napi]
pub struct ServerCore {
    pub(crate) inner: Server,
}

#[napi]
impl ServerCore {
    /// `dataPort`: the port of the server's data listener.
    #[napi(constructor)]
    pub fn new(data_port: u32) -> Self {
        ServerCore {
            inner: Server::new(data_port as u16),
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
        convert(self.inner.take_output())
    }

    /// Bytes arrived on a main-port connection.
    #[napi]
    pub fn on_data(&mut self, conn: u32, chunk: &[u8]) -> ServerOutput {
        self.inner.on_data(conn, chunk);
        convert(self.inner.take_output())
    }

    /// A main-port connection closed.
    #[napi]
    pub fn on_close(&mut self, conn: u32) -> ServerOutput {
        self.inner.on_close(conn);
        convert(self.inner.take_output())
    }

    /// About once a second: writes the trace out when due (no-op while not tracing).
    #[napi]
    pub fn trace_tick(&mut self) -> ServerOutput {
        self.inner.trace_tick();
        convert(self.inner.take_output())
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
