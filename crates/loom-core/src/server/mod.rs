//! Server side of HyperLoom: plan ingestion, task graph, scheduler, client and worker protocols.
//!
//! [`Server`] is a pure state machine: the socket layer feeds it connection events and bytes and
//! writes out the already-framed bytes it returns from [`Server::take_output`].
//!
//! The state is split into parts that own it, each with a small API:
//! - [`graph`]: the task graph — every live task in per-plan [`segment`]s (struct of arrays,
//!   found by binary search over their bases) and the rare side tables (labels, lengths,
//!   cross-plan consumers, expansion overrides);
//! - [`workers`], [`clients`]: the peers, what is booked on each worker, the clients' plan id
//!   ranges, and their outgoing buffers;
//! - [`queues`]: ready tasks by cpu class, and parked ones;
//! - [`transfers`]: transfers in flight, extra copies, pending fetches;
//! - [`counters`]: event counters and per-plan task counts for status ([`Server::snapshot`]);
//! - typed ids ([`ids`]): `TaskId`, `WorkerIdx`, `ClientIdx`, `SegIdx`.
//!
//! The event handlers are `impl Server` blocks in files named after the event: [`register`],
//! [`on_client`] (requests, client gone), [`ingest`] (a plan arrives; scanning in
//! [`plan_scan`]), [`schedule`] (placement, pipelining), [`on_worker`] (finished, transfered,
//! failed), [`fail`] (failure propagation), [`worker_loss`], [`expand`] (dslice/dget), and
//! [`tracing`] (glue to the trace writer in [`crate::trace::server`]). Wire encoders and
//! scanners for the hot messages are in [`wire`]. The design is described in
//! `docs/scheduler.md`.
//!
//! Rules implemented (where the spec leaves a choice):
//! - Task types accepted in a plan: the standard ones seeded in the dictionary (original task
//!   types, `loom/js/*`, dslice/dget) and any a worker registered. A task is only sent to a
//!   worker that registered its type; until one exists it waits ("parked").
//! - An input from an earlier plan must be a task of the same client that is planned and not
//!   freed or failed (not an unreachable, never-computed task, and not a dslice/dget).
//! - dslice/dget need exactly one input and exactly one consumer in their plan, and cannot be
//!   results.
//! - A FAILED task fails every planned task depending on it (TASK_FAILED for each held result);
//!   independent work continues. Late answers for discarded tasks free the worker's cpus and
//!   get REMOVE (FINISHED/TRANSFERED) or are ignored (FAILED).
//! - Every ERROR about a task (plan rejected for a task, FETCH/RELEASE of an id) carries the
//!   client's id of that task; TASK_FAILED always does.
//! - Worker loss: see [`Server::on_close`] and [`worker_loss`]; a task running on
//!   `--max-crashes` lost workers fails ([`poison`]).
//! - Client gone: its running tasks are canceled on workers that announced "cancel"
//!   (`Register.features`), residual elsewhere.
//! - A dependant's TASK_FAILED names the task that failed (error.id, its label and raw
//!   message) and the held result in `ClientResponse.id`; no nested messages.
//! - TRACE opens `<dir>/server.trace` and sends UPDATE to every worker, also to workers that
//!   register later (see [`crate::trace`]). Only the plans of the client that asked are traced
//!   (one trace at a time: the latest TRACE wins); TRACE with an empty path from that client,
//!   or its leaving, stops it (UPDATE with an empty path to the workers).
//! - Checkpoints (spec 8): a task's `checkpoint_path` goes to its worker in TASK; on
//!   FINISHED_AND_CHECKPOINTING its consumers may start but a held result is reported only
//!   on CHECKPOINT_WRITTEN; CHECKPOINT_WRITE_FAILED fails the task and its unfinished
//!   dependants (not every task, unlike the original). With `load_checkpoints`, planning stops
//!   at tasks whose checkpoint file exists on the server's file system; they are loaded
//!   (LOAD_CHECKPOINT) on any worker; CHECKPOINT_LOAD_FAILED fails that task and its
//!   dependants only.
//!
//! - A planned task failing because an input failed, while it runs (or waits for inputs) on a
//!   worker that announced "cancel", is canceled there and its cpus are free at once.
//!
//! Known gaps: on a worker without "cancel" (the original's), a task whose input transfer can
//! never complete (its only source was lost and the input cannot be recomputed) keeps its cpus
//! booked there until it answers; ready tasks of one cpu class wait behind the head of their queue
//! when only the head's type has no free worker (head-of-line blocking per class).

mod clients;
mod counters;
mod demand;
mod error;
mod expand;
mod fail;
mod graph;
mod ids;
mod ingest;
mod journal;
mod on_client;
mod on_worker;
mod plan_scan;
mod poison;
mod queues;
mod register;
mod relay;
mod schedule;
mod segment;
mod tracing;
mod transfer_failure;
mod transfers;
mod usual_tasks;
mod waiting;
mod wire;
mod worker_loss;
mod workers;
pub use register::{scan_register_head, RegisterHead, REGISTER_ALLOC_CONTROL};
pub use relay::{Relay, WholeRelay};
pub use waiting::Waiting;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::frame::{push_frame, FrameReader, MAX_CONTROL_FRAME};
use crate::symbols::Symbols;

use clients::Clients;
use counters::{ClientStatus, Counters, PlanAcc, TransferStatus, WorkerStatus};
use graph::TaskGraph;
use ids::{ClientIdx, Slot, TaskId, WorkerIdx};
use poison::Crashes;
use queues::ReadyQueues;
use transfers::Transfers;
use workers::Workers;

pub use crate::log::LogLevel;
pub use counters::{Failure, GroupStatus, PlanStatus, Snapshot, TaskCounts};
pub use demand::{WaitingClass, WorkerLoad};
pub use error::ServerError;
pub use poison::DEFAULT_MAX_CRASHES;

/// Results and tasks with a checkpoint path in a `Plan` message (for the journal's summary;
/// a malformed plan counts what could be read).
pub(crate) fn count_plan_tasks(plan: &[u8]) -> (usize, usize) {
    let mut r = crate::proto::scan::Scanner::new(plan);
    let (mut results, mut checkpoints) = (0, 0);
    let mut inputs = Vec::new();
    while !r.done() {
        let Ok((f, wt)) = r.key() else { break };
        if f != 2 {
            if r.skip(wt).is_err() {
                break;
            }
            continue;
        }
        let Ok(b) = r.bytes_of(wt) else { break };
        inputs.clear();
        if let Ok(t) = plan_scan::scan_task(b, &mut inputs) {
            results += t.result as usize;
            checkpoints += !t.checkpoint.is_empty() as usize;
        }
    }
    (results, checkpoints)
}

/// The most a worker's outgoing buffer reserves after [`Server::take_output`] (bytes).
const MAX_OUT_RESERVE: usize = 1 << 20;

/// A connection id, chosen by the socket layer.
pub type ConnId = u32;

/// Everything the server wants done since the last [`Server::take_output`].
#[derive(Default, Debug)]
pub struct Output {
    /// Already-framed bytes to write, one entry per connection that has something (order within a connection preserved).
    pub writes: Vec<(ConnId, Vec<u8>)>,
    /// Connections the server layer must close (after flushing their writes).
    pub close: Vec<ConnId>,
    /// Log lines.
    pub logs: Vec<(LogLevel, String)>,
    /// A client sent TERMINATE: the process should exit.
    pub terminate: bool,
    /// Framed journal records to append (empty unless [`Server::enable_journal`]).
    pub journal: Vec<u8>,
}

/// Per-task symbol ids the server needs to recognise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SymIds {
    pub(crate) slice: i32,
    pub(crate) get: i32,
    pub(crate) dslice: i32,
    pub(crate) dget: i32,
    pub(crate) cpus: i32,
    pub(crate) array_make: i32,
    /// `loom/js/call`: one-cpu calls queue deeper on a worker (its function-call pool).
    pub(crate) js_call: i32,
    /// `loom/run/run`: programs queue on a worker by its program throughput.
    pub(crate) run: i32,
}

impl SymIds {
    /// Whether `ty` is dslice or dget (expanded by the server, never run).
    #[inline(always)]
    pub(crate) fn is_expansion(&self, ty: i32) -> bool {
        ty == self.dslice || ty == self.dget
    }
}

/// What a main-port connection is, once it registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    New,
    Worker(WorkerIdx),
    Client(ClientIdx),
}

struct Conn {
    reader: FrameReader,
    ip: String,
    peer: Peer,
}

/// Buffers reused across events (no allocation per assignment).
#[derive(Default)]
pub(crate) struct Scratch {
    /// Input bytes per worker while choosing a worker (all zero between uses).
    pub(crate) score: Vec<u64>,
    /// Work list of [`Server::pipeline`].
    pub(crate) pipeline: Vec<Slot>,
    /// The frees a worker read gathers (see `on_worker::Tally`; empty between reads, kept for
    /// its capacity).
    pub(crate) frees: Vec<u32>,
}

/// The room [`Scratch::frees`] starts with (a worker read's frees; 32 KiB).
const FREES_CAPACITY: usize = 8192;

/// The HyperLoom server core.
pub struct Server {
    /// Where workers send fetched objects, `"!:<data port>"` (the SEND address of a fetch).
    fetch_address: String,
    symbols: Symbols,
    sym: SymIds,
    /// Task types accepted in plans (indexed by symbol id).
    known_type: Vec<bool>,
    conns: HashMap<ConnId, Conn>,
    graph: TaskGraph,
    workers: Workers,
    clients: Clients,
    ready: ReadyQueues,
    moves: Transfers,
    scratch: Scratch,
    out: Output,
    /// The trace, while a client asked for one.
    trace: Option<Box<crate::trace::server::ServerTrace>>,
    /// The client whose plans are traced (the one that asked last).
    trace_client: Option<ClientIdx>,
    counters: Counters,
    /// Lost workers per task (poison tasks).
    crashes: Crashes,
    /// The journal's records being collected (`--journal`).
    journal: Option<Box<journal::Journaling>>,
    /// While restoring a journal: results released before the restart that are not planned again.
    restoring_released: std::collections::HashSet<TaskId>,
    /// Internal ids below this were restored from the journal: only their results may be adopted
    /// from a re-registering worker's held objects (0: nothing restored, so nothing adopted).
    restored_below: TaskId,
    /// The reconnect grace after a restore: results reported before the restart (not loaded
    /// from a checkpoint) that a re-registering worker may still hold. While any is left they
    /// are not scheduled (they wait in `held_back` once ready); a worker bringing one back
    /// removes it, and [`Server::end_reconnect_grace`] lets the rest be computed again.
    awaiting: std::collections::HashSet<TaskId>,
    /// Tasks of `awaiting` that became ready during the grace (queued when it ends).
    held_back: Vec<TaskId>,
    /// Tests: every worker read's context is not quiet (to compare the rare case with the
    /// common one through the one FINISHED path).
    #[cfg(test)]
    general_only: bool,
    /// Tests: FINISHED frames handled as plain ([`on_worker::ReadCtx::plain`]).
    #[cfg(test)]
    plain_finished: u64,
    /// Tests: FINISHED frames handled by the common instance of the one FINISHED handler
    /// (`on_worker`'s `finished_found::<true>`).
    #[cfg(test)]
    common_finished: u64,
}

impl Server {
    /// `data_port`: the server's data listener port, used in SEND addresses `"!:<port>"`.
    pub fn new(data_port: u16) -> Server {
        let symbols = Symbols::for_server();
        let id = |n: &str| symbols.id(n).expect("standard symbol");
        let sym = SymIds {
            slice: id("loom/base/slice"),
            get: id("loom/base/get"),
            dslice: id("loom/scheduler/dslice"),
            dget: id("loom/scheduler/dget"),
            cpus: id("loom/resource/cpus"),
            array_make: id("loom/array/make"),
            js_call: id("loom/js/call"),
            run: id("loom/run/run"),
        };
        let mut known_type = vec![false; symbols.names().len()];
        for name in crate::symbols::ORIGINAL_TASK_TYPES
            .iter()
            .chain(crate::symbols::JS_TASK_TYPES.iter())
            .chain(["loom/scheduler/dslice", "loom/scheduler/dget"].iter())
        {
            known_type[id(name) as usize] = true;
        }
        Server {
            fetch_address: format!("!:{data_port}"),
            symbols,
            sym,
            known_type,
            conns: HashMap::new(),
            graph: TaskGraph::default(),
            workers: Workers::default(),
            clients: Clients::default(),
            ready: ReadyQueues::default(),
            moves: Transfers::default(),
            scratch: Scratch {
                // A read's usual frees fit from the start (allocated with the server, not
                // among the first read's buffers).
                frees: Vec::with_capacity(FREES_CAPACITY),
                ..Scratch::default()
            },
            out: Output::default(),
            trace: None,
            trace_client: None,
            counters: Counters::default(),
            crashes: Crashes::default(),
            journal: None,
            restoring_released: Default::default(),
            restored_below: TaskId(0),
            awaiting: Default::default(),
            held_back: Vec::new(),
            #[cfg(test)]
            general_only: false,
            #[cfg(test)]
            plain_finished: 0,
            #[cfg(test)]
            common_finished: 0,
        }
    }

    /// A task whose worker is lost while it runs there `n` times (at least 1) fails with
    /// "Task crashed N workers" instead of being tried again (the `--max-crashes` flag;
    /// default [`DEFAULT_MAX_CRASHES`]).
    pub fn set_max_crashes(&mut self, n: u32) {
        self.crashes.max = n.max(1);
    }

    /// A main-port connection was accepted from `peer_ip` (IPv4 text).
    pub fn on_connect(&mut self, conn: ConnId, peer_ip: &str) {
        self.conns.insert(
            conn,
            Conn {
                reader: FrameReader::new(MAX_CONTROL_FRAME),
                ip: peer_ip.to_owned(),
                peer: Peer::New,
            },
        );
    }

    /// Bytes arrived on a main-port connection: every whole frame is processed, then the
    /// scheduler runs once.
    pub fn on_data(&mut self, conn: ConnId, chunk: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            self.log(LogLevel::Warn, format!("data on unknown connection {conn}"));
            return;
        };
        let mut reader = std::mem::take(&mut c.reader);
        let mut peer = c.peer;
        if let Some(t) = self.trace.as_mut() {
            t.stamp();
        }
        let res = match peer {
            // A worker's frames are a read's batch (see `worker_read`).
            Peer::Worker(w) => self.worker_read(w, &mut reader, chunk),
            _ => reader.feed(chunk, |frame| match peer {
                Peer::New => {
                    peer = self.register(conn, frame)?;
                    Ok(())
                }
                Peer::Worker(w) => self.worker_frame(w, frame),
                Peer::Client(ci) => self.client_frame(ci, frame),
            }),
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.reader = reader;
            c.peer = peer;
        }
        if let Err(e) = res {
            self.log(
                LogLevel::Error,
                format!("connection {conn}: {e}; closing it"),
            );
            self.out.close.push(conn);
            self.on_close(conn);
        }
        self.after_event();
    }

    /// The server lets worker connection `conn` go (None: every worker; it shuts down or a
    /// client terminated it): a worker that would reconnect (announced "keep-data") is told
    /// `WorkerCommand{STOP}` (our extension) and exits instead. Write the output before closing.
    pub fn goodbye(&mut self, conn: Option<ConnId>) {
        let mut frame = Vec::new();
        push_frame(
            &mut frame,
            &crate::proto::comm::WorkerCommand {
                r#type: crate::proto::comm::worker_command::Type::Stop as i32,
                ..Default::default()
            },
        );
        let targets: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(c, _)| conn.is_none_or(|x| x == **c))
            .filter_map(|(c, st)| match st.peer {
                Peer::Worker(w) if self.workers[w].keep_data && self.workers[w].alive => Some(*c),
                _ => None,
            })
            .collect();
        for c in targets {
            self.out.writes.push((c, frame.clone()));
        }
    }

    /// A main-port connection closed (client gone or worker lost).
    ///
    /// Client gone: all its tasks are discarded (REMOVE for its data, running tasks become
    /// residual on their workers). Worker lost: nothing is written to it again, its copies are
    /// forgotten, its running tasks are rescheduled, and objects only it held that are still
    /// needed are recomputed when their inputs still exist, else they and their dependants fail
    /// with "Worker lost".
    pub fn on_close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        match c.peer {
            Peer::New => {}
            Peer::Client(ci) => {
                self.log(LogLevel::Info, format!("client {conn} disconnected"));
                self.discard_client(ci);
            }
            Peer::Worker(w) => {
                if let Some(t) = self.trace.as_mut() {
                    t.worker_lost(w.index() as u64);
                }
                self.lose_worker(w);
            }
        }
        self.after_event();
    }

    /// Lets the worker on `conn` go (an allocation queue scaling down): it is forgotten as by
    /// [`on_close`](Self::on_close), but shown as departed, not lost, and its running tasks
    /// (if any) are rescheduled without counting as a crash.
    pub fn retire_worker(&mut self, conn: ConnId) {
        if let Some(Peer::Worker(w)) = self.conns.get(&conn).map(|c| c.peer) {
            self.workers[w].leaving = true;
        }
        self.on_close(conn);
    }

    /// The objects each client holds (computed and not yet freed), by client index: its
    /// segments' FINISHED counts, which every transition keeps (finish, free, failure,
    /// recompute after a worker loss; a client's segments go with it). Derived where read
    /// (STATS, the status) rather than counted per FINISHED and free. O(clients + segments).
    fn client_objects(&self) -> Vec<i64> {
        let mut objects = vec![0i64; self.clients.len()];
        for seg in self.graph.segs.iter() {
            objects[seg.client.index()] += seg.counts.get(segment::TaskState::Finished) as i64;
        }
        objects
    }

    /// The server's status now: workers, clients, plans with their tasks by state and label
    /// group, transfers, scheduler and ingest counters, recent failures. Costs O(workers +
    /// clients + segments + kept plans), never a pass over tasks.
    pub fn snapshot(&self) -> Snapshot {
        let mut live: std::collections::BTreeMap<counters::PlanNo, PlanAcc> = Default::default();
        for seg in self.graph.segs.iter() {
            live.entry(seg.plan)
                .or_default()
                .add(&seg.counts, seg.groups.as_deref());
        }
        let workers = self
            .workers
            .list
            .iter_enumerated()
            .map(|(i, w)| WorkerStatus {
                id: i.index() as u32,
                address: w.addr.clone(),
                cpus: w.cpus,
                busy_cpus: if w.alive { w.booked_cpus() } else { 0 },
                running: if w.alive { w.tasks } else { 0 },
                objects: if w.alive { w.objects } else { 0 },
                bytes: if w.alive { w.bytes } else { 0 },
                alive: w.alive,
                state: match (w.alive, w.leaving) {
                    (true, _) => "connected",
                    (false, true) => "departed",
                    (false, false) => "lost",
                },
            })
            .collect();
        // Every connected client, and the newest gone ones (clients never reuse a slot).
        let objects = self.client_objects();
        let gone = self.clients.iter().filter(|c| !c.alive).count();
        let mut skip_gone = gone.saturating_sub(counters::KEEP_GONE_CLIENTS);
        let clients = self
            .clients
            .iter_enumerated()
            .filter(|(_, c)| {
                let skip = !c.alive && skip_gone > 0;
                skip_gone -= skip as usize;
                !skip
            })
            .map(|(i, c)| ClientStatus {
                id: i.index() as u32,
                address: c.ip.clone(),
                alive: c.alive,
                plans: c.ranges.len() as u32,
                objects: objects[i.index()],
            })
            .collect();
        let k = &self.counters;
        Snapshot {
            time_ms: counters::now_ms(),
            workers,
            clients,
            plans: k.plan_statuses(&live),
            tasks: k.all_tasks(&live),
            tasks_submitted: k.tasks_submitted,
            transfers: TransferStatus {
                in_flight: self.moves.in_flight.len() as u64,
                total: k.transfers,
                bytes: k.transfer_bytes,
                fetches: k.fetches,
                fetch_bytes: k.fetch_bytes,
            },
            scheduler_rounds: k.scheduler_rounds,
            tasks_assigned: k.assigned,
            plans_accepted: k.plans_accepted,
            plans_rejected: k.plans_rejected,
            ingest_seconds: k.ingest_seconds,
            task_failures: k.task_failures,
            failures: k.failures.iter().cloned().collect(),
        }
    }

    /// Drain everything queued since the last call.
    pub fn take_output(&mut self) -> Output {
        let mut out = std::mem::take(&mut self.out);
        for w in self.workers.list.iter_mut() {
            if !w.out.is_empty() {
                // The next batch is about as large (bounded by the in-flight caps): room for
                // it at once instead of growing by doubling, copying what was written.
                let next = Vec::with_capacity(w.out.len().min(MAX_OUT_RESERVE));
                let buf = std::mem::replace(&mut w.out, next);
                if w.alive {
                    out.writes.push((w.conn, buf));
                }
            }
        }
        for c in self.clients.iter_mut() {
            if !c.out.is_empty() && !c.is_detached() {
                let buf = std::mem::take(&mut c.out);
                if c.alive {
                    out.writes.push((c.conn, buf));
                }
            }
        }
        out.journal = self.take_journal();
        out
    }

    pub(crate) fn log(&mut self, level: LogLevel, msg: String) {
        self.out.logs.push((level, msg));
    }

    fn after_event(&mut self) {
        self.schedule();
        self.collect_segments();
    }

    /// Drops segments with no live task left, their clients' id ranges and what the other parts
    /// keep about their tasks.
    fn collect_segments(&mut self) {
        let Some(dropped) = self.graph.collect() else {
            return;
        };
        self.counters.retire(self.graph.retired.drain(..), false);
        for p in dropped.plans {
            if let Some(token) = self.journaled_session(p.client) {
                let client_base = p.client_base;
                self.journal(|| crate::journal::Record::PlanDropped { token, client_base });
            }
            let ranges = &mut self.clients[p.client].ranges;
            ranges.retain(|r| r.client_base != p.client_base);
        }
        if !self.moves.fetches.is_empty() {
            self.moves.fetches.forget(|k| dropped.ids.contains(k));
        }
        self.crashes.retain(|k| !dropped.ids.contains(k));
    }
}
