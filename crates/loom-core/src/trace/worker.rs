//! The worker's trace (`worker-<id>.trace`): records the worker core writes at its events.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{CpuSampler, TraceWriter};

/// A worker's trace file and its CPU sampler.
#[derive(Debug)]
pub struct WorkerTrace {
    pub(crate) w: TraceWriter,
    cpu: CpuSampler,
    /// The time of the last task end in the current call: the next task started then (tasks
    /// run back to back inside one call), which saves a clock read per task.
    last_end: Option<u64>,
}

impl WorkerTrace {
    /// Opens `<dir>/worker-<id>.trace`.
    pub fn open(dir: &Path, id: i32, cpus: u32, data_port: u16) -> Result<WorkerTrace, String> {
        let name = format!("worker-{id}.trace");
        let extra = format!("{id} {cpus} {data_port}");
        let mut t = WorkerTrace {
            w: TraceWriter::create(dir, &name, "worker", &extra)?,
            cpu: CpuSampler::new(),
            last_end: None,
        };
        t.w.flush();
        Ok(t)
    }

    /// A new call from the process (server bytes, peer bytes, a JS result): times are read
    /// afresh.
    #[inline]
    pub fn new_call(&mut self) {
        self.last_end = None;
    }

    /// A task started; `slot` is its first CPU slot or -1.
    #[inline]
    pub fn started(&mut self, id: i32, slot: i64) {
        let t = self.last_end.take().unwrap_or_else(|| self.w.now());
        self.w.rec_at(b'S', t).i(id as i64).i(slot).end();
    }

    /// A task finished with a result of `size` bytes.
    #[inline]
    pub fn finished(&mut self, id: i32, size: u64) {
        let t = self.w.now();
        self.last_end = Some(t);
        self.w.rec_at(b'F', t).i(id as i64).u(size).end();
    }

    /// A task failed.
    pub fn failed(&mut self, id: i32) {
        let t = self.w.now();
        self.last_end = Some(t);
        self.w.rec_at(b'X', t).i(id as i64).end();
    }

    /// A data stream of `bytes` was queued to `address`.
    pub fn sent(&mut self, id: i32, bytes: u64, address: &str) {
        self.w.rec(b'D').i(id as i64).u(bytes).word(address).end();
    }

    /// An object of `bytes` arrived from the worker with data port `port` (0: unknown); its
    /// first frame came at `started`; `linked`: as a hard link of the sender's data file
    /// (`peer-link`), else on a stream.
    pub fn received(&mut self, id: i32, bytes: u64, port: u16, started: Instant, linked: bool) {
        let t = self.w.now();
        let dur = t.saturating_sub(self.w.at(started));
        self.w
            .rec_at(b'R', t)
            .i(id as i64)
            .u(bytes)
            .u(port as u64)
            .u(dur)
            .word(if linked { "link" } else { "stream" })
            .end();
    }

    /// About once a second: a CPU sample (`M`) and a flush if due.
    pub fn tick(&mut self) {
        if let Some((p, s)) = self.cpu.sample(Duration::from_millis(500)) {
            self.w.rec(b'M').u(p as u64).u(s as u64).end();
        }
        self.w.maybe_flush();
    }
}
