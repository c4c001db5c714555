//! The server's trace (`server.trace`): the glue the server core calls at its events. Every hook
//! is a no-op costing one branch while tracing is off.

use std::path::PathBuf;
use std::time::Instant;

use super::TraceWriter;
use crate::frame::push_frame;
use crate::proto::comm::{worker_command, WorkerCommand};
use crate::server::{LogLevel, Server};

/// The server's trace file and its bookkeeping.
#[derive(Debug)]
pub(crate) struct ServerTrace {
    pub(crate) w: TraceWriter,
    /// Symbols already written (`Y` records for ids below this).
    syms: usize,
    /// Tasks scheduled so far (for the per-round count).
    placed: u64,
    /// The time of the current event (µs since the epoch): records of one event share it, so
    /// the clock is read once per event rather than once per record.
    now: u64,
}

impl ServerTrace {
    /// A new event (bytes from a connection): reads the clock for its records.
    #[inline]
    pub(crate) fn stamp(&mut self) {
        self.now = self.w.now();
    }

    #[inline]
    pub(crate) fn scheduled(&mut self, id: i32, worker: u16) {
        self.placed += 1;
        let t = self.now;
        self.w.rec_at(b'S', t).i(id as i64).u(worker as u64).end();
    }

    #[inline]
    pub(crate) fn finished(&mut self, id: i32, worker: u16, size: u64) {
        let t = self.now;
        self.w
            .rec_at(b'F', t)
            .i(id as i64)
            .u(worker as u64)
            .u(size)
            .end();
    }

    pub(crate) fn failed(&mut self, id: i32, worker: u16) {
        let t = self.now;
        self.w.rec_at(b'X', t).i(id as i64).u(worker as u64).end();
    }

    pub(crate) fn worker_lost(&mut self, worker: u16) {
        self.w.rec(b'C').u(worker as u64).end();
    }

    /// Start of a scheduling round (its tasks are stamped with its start).
    #[inline]
    pub(crate) fn round_begin(&mut self) -> (Instant, u64) {
        let t0 = Instant::now();
        self.now = self.w.at(t0);
        (t0, self.placed)
    }

    /// End of a scheduling round: an `R` record if it placed anything.
    #[inline]
    pub(crate) fn round_end(&mut self, (t0, placed0): (Instant, u64)) {
        let n = self.placed - placed0;
        if n > 0 {
            let t = self.w.at(t0);
            let dur = t0.elapsed().as_micros() as u64;
            self.w.rec_at(b'R', t).u(dur).u(n).end();
        }
        self.w.maybe_flush();
    }
}

impl Server {
    /// `TRACE{path}`: opens `<path>/server.trace` (a new path closes the previous trace; the
    /// same path keeps the open one) and sends `UPDATE{path, worker_id}` to every worker.
    pub(crate) fn trace_start(&mut self, path: &[u8]) {
        let dir = PathBuf::from(String::from_utf8_lossy(path).into_owned());
        if self.trace.as_ref().is_some_and(|t| t.w.dir() == dir) {
            self.log(
                LogLevel::Info,
                format!("tracing already on in {}", dir.display()),
            );
            return;
        }
        self.trace = None;
        let w = match TraceWriter::create(&dir, "server.trace", "server", "") {
            Ok(w) => w,
            Err(e) => return self.log(LogLevel::Warn, format!("TRACE: {e}")),
        };
        self.log(LogLevel::Info, format!("tracing to {}", dir.display()));
        self.trace = Some(Box::new(ServerTrace {
            w,
            syms: 0,
            placed: 0,
            now: 0,
        }));
        self.trace_symbols();
        for wi in 0..self.workers.len() {
            if self.workers[wi].alive {
                self.trace_worker(wi as u16);
            }
        }
    }

    /// A worker registered (or is listed when the trace opens): `W` record and UPDATE to it.
    pub(crate) fn trace_worker(&mut self, wi: u16) {
        if self.trace.is_none() {
            return;
        }
        self.trace_symbols();
        let Some(t) = self.trace.as_mut() else { return };
        let wk = &mut self.workers[wi as usize];
        t.w.rec(b'W')
            .u(wi as u64)
            .word(&wk.addr)
            .u(wk.cpus as u64)
            .end();
        push_frame(
            &mut wk.out,
            &WorkerCommand {
                r#type: worker_command::Type::Update as i32,
                trace_path: Some(t.w.dir().to_string_lossy().into_owned()),
                worker_id: Some(wi as i32),
                ..Default::default()
            },
        );
    }

    /// `Y` records for symbols not written yet.
    fn trace_symbols(&mut self) {
        let Some(t) = self.trace.as_mut() else { return };
        let names = self.symbols.names();
        for (id, name) in names.iter().enumerate().skip(t.syms) {
            t.w.line(b'Y').u(id as u64).word(name).end();
        }
        t.syms = names.len();
    }

    /// A plan (or expansion) segment was inserted: `P` and one `T` per planned task.
    pub(crate) fn trace_segment(&mut self, si: usize) {
        let Some(t) = self.trace.as_mut() else { return };
        let seg = &self.segs[si];
        t.w.rec(b'P')
            .u(seg.client as u64)
            .i(seg.base as i64)
            .u(seg.n as u64)
            .end();
        for off in 0..seg.n as usize {
            if seg.state[off] == crate::server::graph::UNPLANNED {
                continue;
            }
            let id = seg.base + off as i32;
            t.w.line(b'T')
                .i(id as i64)
                .i(seg.ttype[off] as i64)
                .ids(seg.inputs(off));
            if let Some(l) = self.labels.get(&id) {
                t.w.text(l.as_bytes());
            }
            t.w.end();
        }
        t.w.maybe_flush();
    }

    /// Task `id` now runs `type_id` over `inputs` (a dslice/dget expansion rewrote it).
    pub(crate) fn trace_rewrite(&mut self, id: i32, type_id: i32, inputs: &[i32]) {
        let Some(t) = self.trace.as_mut() else { return };
        t.w.line(b'T').i(id as i64).i(type_id as i64).ids(inputs);
        if let Some(l) = self.labels.get(&id) {
            t.w.text(l.as_bytes());
        }
        t.w.end();
    }

    /// Writes the trace out if its oldest record is a second old (call about once a second).
    pub fn trace_tick(&mut self) {
        if let Some(t) = self.trace.as_mut() {
            t.w.maybe_flush();
            if let Some(e) = t.w.take_error() {
                self.log(LogLevel::Warn, e);
            }
        }
    }

    /// Writes the trace out (before the process exits).
    pub fn trace_flush(&mut self) {
        if let Some(t) = self.trace.as_mut() {
            t.w.flush();
        }
    }

    /// The directory being traced to, if any.
    pub fn trace_dir(&self) -> Option<&std::path::Path> {
        self.trace.as_ref().map(|t| t.w.dir())
    }
}
