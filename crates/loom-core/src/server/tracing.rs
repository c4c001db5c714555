//! The server's side of tracing: TRACE requests, UPDATE to workers, and the calls into the
//! trace writer ([`crate::trace::server::ServerTrace`]) that need the server's state.

use std::path::PathBuf;

use crate::frame::push_frame;
use crate::proto::comm::{worker_command, WorkerCommand};
use crate::trace::server::ServerTrace;

use super::ids::{ClientIdx, SegIdx, WorkerIdx};
use super::segment::TaskState;
use super::{LogLevel, Server};

impl Server {
    /// `TRACE{path}` from client `ci`: traces its plans in `path`; an empty path stops its trace.
    pub(super) fn trace_request(&mut self, ci: ClientIdx, path: &[u8]) {
        if path.is_empty() {
            if self.trace_client == Some(ci) {
                self.trace_stop();
            }
            return;
        }
        self.trace_start(path);
        if self.trace.is_some() {
            self.trace_client = Some(ci);
        }
    }

    /// Closes the trace (written out) and tells the workers to close theirs (UPDATE with an
    /// empty path).
    pub(super) fn trace_stop(&mut self) {
        self.trace_client = None;
        let Some(t) = self.trace.take() else { return };
        self.log(
            LogLevel::Info,
            format!("tracing to {} stopped", t.dir().display()),
        );
        drop(t);
        let alive: Vec<WorkerIdx> = self.workers.alive().map(|(w, _)| w).collect();
        for w in alive {
            push_frame(
                &mut self.workers[w].out,
                &WorkerCommand {
                    r#type: worker_command::Type::Update as i32,
                    trace_path: Some(String::new()),
                    worker_id: Some(w.index() as i32),
                    ..Default::default()
                },
            );
        }
    }

    /// `TRACE{path}`: opens `<path>/server.trace` (a new path closes the previous trace; the
    /// same path keeps the open one) and sends `UPDATE{path, worker_id}` to every worker.
    pub(super) fn trace_start(&mut self, path: &[u8]) {
        let dir = PathBuf::from(String::from_utf8_lossy(path).into_owned());
        if self.trace.as_ref().is_some_and(|t| t.dir() == dir) {
            let msg = format!("tracing already on in {}", dir.display());
            return self.log(LogLevel::Info, msg);
        }
        self.trace = None;
        let t = match ServerTrace::create(&dir) {
            Ok(t) => t,
            Err(e) => return self.log(LogLevel::Warn, format!("TRACE: {e}")),
        };
        self.log(LogLevel::Info, format!("tracing to {}", dir.display()));
        let mut t = Box::new(t);
        t.symbols(self.symbols.names());
        self.trace = Some(t);
        let alive: Vec<WorkerIdx> = self.workers.alive().map(|(w, _)| w).collect();
        for w in alive {
            self.trace_worker(w);
        }
    }

    /// A worker registered (or is listed when the trace opens): `W` record and UPDATE to it.
    pub(super) fn trace_worker(&mut self, w: WorkerIdx) {
        let Some(t) = self.trace.as_mut() else { return };
        t.symbols(self.symbols.names());
        let wk = &mut self.workers[w];
        t.worker(w.index() as u64, &wk.addr, wk.cpus as u64);
        push_frame(
            &mut wk.out,
            &WorkerCommand {
                r#type: worker_command::Type::Update as i32,
                trace_path: Some(t.dir().to_string_lossy().into_owned()),
                worker_id: Some(w.index() as i32),
                ..Default::default()
            },
        );
    }

    /// A plan (or expansion) segment was inserted: `P` and one `T` per planned task.
    pub(super) fn trace_segment(&mut self, si: SegIdx) {
        let seg = &self.graph.segs[si];
        if self.trace_client != Some(seg.client) {
            return;
        }
        let Some(t) = self.trace.as_mut() else { return };
        t.segment(
            seg.client.index() as u64,
            seg.base.get() as i64,
            seg.n as u64,
        );
        for off in 0..seg.n as usize {
            if seg.tasks[off].state == TaskState::Unplanned {
                continue;
            }
            let id = seg.id(off);
            let label = self.graph.labels.get(&id).map(|l| l.as_bytes());
            let inputs = seg.inputs(off).iter().map(|x| x.get());
            t.task(id.get(), seg.tasks[off].ttype, inputs, label);
        }
        t.maybe_flush();
    }

    /// Writes the trace out if its oldest record is a second old (call about once a second).
    pub fn trace_tick(&mut self) {
        if let Some(e) = self.trace.as_mut().and_then(|t| t.tick()) {
            self.log(LogLevel::Warn, e);
        }
    }

    /// Writes the trace out (before the process exits).
    pub fn trace_flush(&mut self) {
        if let Some(t) = self.trace.as_mut() {
            t.flush();
        }
    }
}
