//! The server's trace (`server.trace`): a writer of the server's records, as pure functions of
//! ids, counts and slices. It knows nothing of the server's types (the server's glue in
//! `server/tracing.rs` calls it at its events); every hook there costs one branch while
//! tracing is off.

use std::path::Path;
use std::time::Instant;

use super::TraceWriter;

/// The server's trace file and its bookkeeping.
#[derive(Debug)]
pub(crate) struct ServerTrace {
    w: TraceWriter,
    /// Symbols already written (`Y` records for ids below this).
    syms: usize,
    /// Tasks scheduled so far (for the per-round count).
    placed: u64,
    /// The time of the current event (µs since the epoch): records of one event share it, so
    /// the clock is read once per event rather than once per record.
    now: u64,
}

impl ServerTrace {
    /// Creates `<dir>/server.trace`.
    pub(crate) fn create(dir: &Path) -> Result<ServerTrace, String> {
        Ok(ServerTrace {
            w: TraceWriter::create(dir, "server.trace", "server", "")?,
            syms: 0,
            placed: 0,
            now: 0,
        })
    }

    /// The trace directory.
    pub(crate) fn dir(&self) -> &Path {
        self.w.dir()
    }

    /// A new event (bytes from a connection): reads the clock for its records.
    #[inline]
    pub(crate) fn stamp(&mut self) {
        self.now = self.w.now();
    }

    /// `S`: task `id` was sent to `worker`.
    #[inline]
    pub(crate) fn scheduled(&mut self, id: i32, worker: u64) {
        self.placed += 1;
        let t = self.now;
        self.w.rec_at(b'S', t).i(id as i64).u(worker).end();
    }

    /// `F`: task `id` finished on `worker` with `size` bytes.
    #[inline]
    pub(crate) fn finished(&mut self, id: i32, worker: u64, size: u64) {
        let t = self.now;
        self.w.rec_at(b'F', t).i(id as i64).u(worker).u(size).end();
    }

    /// `X`: task `id` failed on `worker` with `message` (cut to 4 KiB).
    pub(crate) fn failed(&mut self, id: i32, worker: u64, message: &[u8]) {
        let t = self.now;
        let m = &message[..message.len().min(4096)];
        self.w.rec_at(b'X', t).i(id as i64).u(worker).text(m).end();
    }

    /// `C`: `worker` was lost.
    pub(crate) fn worker_lost(&mut self, worker: u64) {
        self.w.rec(b'C').u(worker).end();
    }

    /// `W`: `worker` registered (or was listed when the trace opened).
    pub(crate) fn worker(&mut self, worker: u64, addr: &str, cpus: u64) {
        self.w.rec(b'W').u(worker).word(addr).u(cpus).end();
    }

    /// `Y` records for the symbols of `names` not written yet.
    pub(crate) fn symbols(&mut self, names: &[String]) {
        for (id, name) in names.iter().enumerate().skip(self.syms) {
            self.w.line(b'Y').u(id as u64).word(name).end();
        }
        self.syms = names.len();
    }

    /// `P`: a segment of `n` tasks from `base` was inserted for `client` (its `T` records
    /// follow).
    pub(crate) fn segment(&mut self, client: u64, base: i64, n: u64) {
        self.w.rec(b'P').u(client).i(base).u(n).end();
    }

    /// `T`: task `id` runs `type_id` over `inputs` (a planned task, or one an expansion
    /// rewrote), with its label.
    pub(crate) fn task(
        &mut self,
        id: i32,
        type_id: i32,
        inputs: impl IntoIterator<Item = i32>,
        label: Option<&[u8]>,
    ) {
        self.w
            .line(b'T')
            .i(id as i64)
            .i(type_id as i64)
            .ids_from(inputs);
        if let Some(l) = label {
            self.w.text(l);
        }
        self.w.end();
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

    /// Writes the trace out if its oldest record is a second old; a write error, once.
    pub(crate) fn tick(&mut self) -> Option<String> {
        self.w.maybe_flush();
        self.w.take_error()
    }

    /// Writes the trace out if its oldest record is a second old.
    pub(crate) fn maybe_flush(&mut self) {
        self.w.maybe_flush();
    }

    /// Writes everything buffered.
    pub(crate) fn flush(&mut self) {
        self.w.flush();
    }
}
