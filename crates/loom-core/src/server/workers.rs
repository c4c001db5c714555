//! The workers: their connections, cpus and what is booked on them, the task types they
//! registered, and their outgoing command buffers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::ids::{IdxVec, TaskId, WorkerIdx};
use super::ConnId;

/// Maximum number of in-flight light (0-cpu) tasks per worker.
pub(crate) const LIGHT_CAP: u32 = 4096;

/// Overbooking of one-cpu function calls (`loom/js/call`), in cpus per worker cpu: a worker
/// queues them in its function-call pool, whose threads take many queued calls per message, so
/// small calls need a deeper queue than one round trip to the server (issue #26). The worker's
/// `POOL_CALLS_PER_CPU` is the same bound.
pub(crate) const POOLED_OVERBOOK: u32 = 256;

/// Programs (`loom/run/run`) queued on a worker beyond its cpus: about this much of its recent
/// program throughput (issue #26: a queue of one program per cpu ran dry while FINISHED -> server
/// -> TASK was in flight, and a quarter of W4's programs started on an idle worker). Short
/// programs queue deeper; a worker whose programs take 25 ms or more queues them as any task, one
/// per cpu. The rate is the past's: when a worker's programs turn from short to long, the long
/// ones first given to it may queue as deep as the short ones did (at most
/// [`PROGRAM_OVERBOOK_MAX`] per cpu) and wait there while another worker idles, until the
/// measured rate falls (nothing reassigns a queued task).
pub(crate) const PROGRAM_QUEUE: Duration = Duration::from_millis(25);

/// At most this many programs' cpus per worker cpu beyond its cpus.
pub(crate) const PROGRAM_OVERBOOK_MAX: u32 = 16;

/// A worker's program throughput is measured over windows at least this long.
const PROGRAM_WINDOW: Duration = Duration::from_millis(50);

/// How deep a worker's queue may be for a task (see [`Worker::has_room`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queueing {
    /// Up to `cpus` more cpus than it has.
    Plain,
    /// A one-cpu function call: up to [`POOLED_OVERBOOK`] x cpus more.
    Pooled,
    /// A program: up to its recent program throughput over [`PROGRAM_QUEUE`] (at least `cpus`).
    Program,
}

/// A worker's program throughput: the cpus of the programs that ended since `since`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProgramRate {
    since: Option<Instant>,
    cpus_ended: u32,
}

/// One registered worker (lost workers keep their slot, `alive == false`).
pub(crate) struct Worker {
    pub(crate) conn: ConnId,
    /// `ip:port` of its data listener (SEND target for transfers).
    pub(crate) addr: String,
    pub(crate) cpus: u32,
    pub(crate) free_cpus: u32,
    /// Cpus assigned beyond `cpus` (see [`Worker::has_room`]).
    pub(crate) over: u32,
    /// Light (0-cpu) tasks in flight.
    pub(crate) light: u32,
    /// Tasks sent to it and not answered yet (for status; booking uses the fields above).
    pub(crate) tasks: u32,
    /// Objects it holds (as primary owner or copy) and their bytes, for status.
    pub(crate) objects: u64,
    pub(crate) bytes: u64,
    /// Task types this worker registered (indexed by symbol id).
    pub(crate) types: Vec<bool>,
    pub(crate) alive: bool,
    /// Framed commands not yet handed to the socket layer.
    pub(crate) out: Vec<u8>,
    /// Discarded tasks still running there: task -> cpus (freed when it answers).
    pub(crate) residual: HashMap<TaskId, u16>,
    /// It announced the "cancel" feature: a gone client's tasks are canceled on it.
    pub(crate) can_cancel: bool,
    /// It said it is leaving (LEAVING, our extension), or this server let it go (an allocation
    /// queue scaling down): once its connection is gone it "departed", not "lost".
    pub(crate) leaving: bool,
    /// It announced "keep-data": it reconnects after a lost connection unless told STOP.
    pub(crate) keep_data: bool,
    /// Its program throughput in the current window.
    pub(crate) program_rate: ProgramRate,
    /// Cpus of programs it may be booked beyond `cpus` (`cpus` until measured).
    pub(crate) program_over: u32,
}

impl Worker {
    /// A worker that just registered.
    pub(crate) fn new(
        conn: ConnId,
        addr: String,
        cpus: u32,
        types: Vec<bool>,
        out: Vec<u8>,
    ) -> Self {
        Worker {
            conn,
            addr,
            cpus,
            free_cpus: cpus,
            over: 0,
            light: 0,
            tasks: 0,
            objects: 0,
            bytes: 0,
            types,
            alive: true,
            out,
            residual: HashMap::new(),
            can_cancel: false,
            leaving: false,
            keep_data: false,
            program_rate: ProgramRate::default(),
            program_over: cpus,
        }
    }

    /// Whether it registered task type `ty`.
    #[inline]
    pub(crate) fn runs(&self, ty: i32) -> bool {
        self.types.get(ty as usize).copied().unwrap_or(false)
    }

    /// Whether a task of `c` cpus may be assigned now. Up to `cpus` more cpus than the worker has
    /// may be assigned: the worker queues such tasks and starts each as soon as cores free up
    /// (it never runs more than its cores), so its queue does not run dry for a round trip to the
    /// server after every task — the original server's "overbooking", bounded. A one-cpu
    /// function call ([`Queueing::Pooled`]): up to [`POOLED_OVERBOOK`] times its cpus more; a
    /// program: `program_over` more (see [`Worker::program_ended`]). Light tasks: fewer than
    /// [`LIGHT_CAP`] in flight.
    #[inline]
    pub(crate) fn has_room(&self, c: u32, queueing: Queueing) -> bool {
        if c == 0 {
            return self.light < LIGHT_CAP;
        }
        let over = match queueing {
            Queueing::Plain => self.cpus,
            Queueing::Pooled => self.cpus * POOLED_OVERBOOK,
            Queueing::Program => self.program_over,
        };
        self.free_cpus >= c || (self.free_cpus == 0 && self.over + c <= over)
    }

    /// A program of `c` cpus ended on it at `now`: once a window of [`PROGRAM_WINDOW`] is
    /// over, its queue of programs is set to what it ran in [`PROGRAM_QUEUE`] at that window's
    /// rate, between `cpus` and [`PROGRAM_OVERBOOK_MAX`] x cpus. A worker that sat idle within
    /// the window measures slower and queues less.
    pub(crate) fn program_ended(&mut self, c: u16, now: Instant) {
        let r = &mut self.program_rate;
        let Some(since) = r.since else {
            r.since = Some(now);
            return;
        };
        r.cpus_ended += u32::from(c);
        let elapsed = now.saturating_duration_since(since);
        if elapsed < PROGRAM_WINDOW {
            return;
        }
        let want = (f64::from(r.cpus_ended) * PROGRAM_QUEUE.as_secs_f64() / elapsed.as_secs_f64())
            .ceil() as u32;
        self.program_over = want.clamp(self.cpus, self.cpus * PROGRAM_OVERBOOK_MAX);
        *r = ProgramRate {
            since: Some(now),
            cpus_ended: 0,
        };
    }

    /// Books a task of `c` cpus (0: light).
    #[inline]
    pub(crate) fn book(&mut self, c: u16) {
        self.tasks += 1;
        let c = c as u32;
        if c == 0 {
            self.light += 1;
        } else if self.free_cpus >= c {
            self.free_cpus -= c;
        } else {
            self.over += c - self.free_cpus;
            self.free_cpus = 0;
        }
    }

    /// Returns what a task of `c` cpus booked (it ended).
    #[inline]
    pub(crate) fn unbook(&mut self, c: u16) {
        let c = c as u32;
        if c == 0 {
            return self.unbook_light(1);
        }
        self.tasks = self.tasks.saturating_sub(1);
        let from_over = self.over.min(c);
        self.over -= from_over;
        self.free_cpus += c - from_over;
    }

    /// Cpus booked (running or queued on the worker).
    #[inline]
    pub(crate) fn booked_cpus(&self) -> u32 {
        self.cpus - self.free_cpus + self.over
    }

    /// Returns what `n` light tasks booked (they ended): [`Worker::unbook`] of each at once.
    #[inline]
    pub(crate) fn unbook_light(&mut self, n: u32) {
        self.tasks = self.tasks.saturating_sub(n);
        self.light = self.light.saturating_sub(n);
    }

    /// It now holds an object of `size` bytes.
    #[inline]
    pub(crate) fn holds(&mut self, size: u64) {
        self.holds_n(1, size);
    }

    /// It now holds `n` more objects of `bytes` bytes in all.
    #[inline]
    pub(crate) fn holds_n(&mut self, n: u64, bytes: u64) {
        self.objects += n;
        self.bytes += bytes;
    }

    /// An object of `size` bytes it held was removed.
    #[inline]
    pub(crate) fn dropped(&mut self, size: u64) {
        self.dropped_n(1, size);
    }

    /// `n` objects of `bytes` bytes in all that it held were removed: [`Worker::dropped`] of
    /// each at once (the same counts: a run of saturating subtractions is one of their sum).
    #[inline]
    pub(crate) fn dropped_n(&mut self, n: u64, bytes: u64) {
        self.objects = self.objects.saturating_sub(n);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Load per cpu (scaled by 1024), light tasks counted as 1/64 of a cpu.
    #[inline]
    pub(crate) fn load(&self) -> u64 {
        let busy = self.booked_cpus() as u64 * 64 + self.light as u64;
        busy * 1024 / (self.cpus.max(1) as u64)
    }
}

/// Every worker that ever registered, by [`WorkerIdx`].
#[derive(Default)]
pub(crate) struct Workers {
    pub(crate) list: IdxVec<WorkerIdx, Worker>,
    /// Workers connected now.
    pub(crate) n_alive: u32,
    /// Cpus of the largest worker an allocation queue can start (see `Server::set_allocatable_cpus`).
    pub(crate) allocatable_cpus: u32,
}

impl Workers {
    /// Whether another worker can still be indexed.
    pub(crate) fn has_slot(&self) -> bool {
        self.list.len() < WorkerIdx::LIMIT
    }

    /// Adds a registered worker (the caller checked [`Workers::has_slot`]).
    pub(crate) fn add(&mut self, w: Worker) -> WorkerIdx {
        assert!(self.has_slot(), "too many workers");
        self.n_alive += 1;
        self.list.push(w)
    }

    /// Marks `w` lost: nothing is written to it again. False if it was lost already.
    pub(crate) fn lose(&mut self, w: WorkerIdx) -> bool {
        let wk = &mut self.list[w];
        if !wk.alive {
            return false;
        }
        wk.alive = false;
        wk.out.clear();
        wk.residual.clear();
        self.n_alive -= 1;
        true
    }

    /// Connected workers.
    pub(crate) fn alive(&self) -> impl Iterator<Item = (WorkerIdx, &Worker)> {
        self.list.iter_enumerated().filter(|(_, w)| w.alive)
    }

    /// Sum of the cpus of connected workers.
    pub(crate) fn total_cpus(&self) -> u64 {
        self.alive().map(|(_, w)| w.cpus as u64).sum()
    }

    /// The most cpus of one connected worker (None without workers).
    pub(crate) fn max_cpus(&self) -> Option<u32> {
        self.alive().map(|(_, w)| w.cpus).max()
    }

    /// The most cpus a task of a plan may ask for (None: no limit, as long as no worker is
    /// connected): the largest connected worker, or one an allocation queue can start.
    pub(crate) fn plan_cpus_limit(&self) -> Option<u32> {
        self.max_cpus().map(|m| m.max(self.allocatable_cpus))
    }
}

impl std::ops::Index<WorkerIdx> for Workers {
    type Output = Worker;
    #[inline(always)]
    fn index(&self, w: WorkerIdx) -> &Worker {
        &self.list[w]
    }
}

impl std::ops::IndexMut<WorkerIdx> for Workers {
    #[inline(always)]
    fn index_mut(&mut self, w: WorkerIdx) -> &mut Worker {
        &mut self.list[w]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(cpus: u32) -> Worker {
        Worker::new(1, String::new(), cpus, Vec::new(), Vec::new())
    }

    #[test]
    fn short_programs_queue_deeper_long_ones_one_per_cpu() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut w = worker(2);
        assert_eq!(w.program_over, 2, "one per cpu until measured");
        // 30 one-cpu programs in 60 ms (500/s): 12.5 in 25 ms.
        w.program_ended(1, ms(0));
        for i in 1..=30 {
            w.program_ended(1, ms(2 * i));
        }
        assert_eq!(w.program_over, 13);
        assert!(w.has_room(1, Queueing::Program) && w.has_room(1, Queueing::Plain));
        w.book(1);
        w.book(1);
        for _ in 0..13 {
            assert!(w.has_room(1, Queueing::Program));
            w.book(1);
        }
        assert!(!w.has_room(1, Queueing::Program));
        w.book(1); // (other tasks' overbooking is as before)
                   // Faster still: at most PROGRAM_OVERBOOK_MAX x cpus.
        for i in 0..1000 {
            w.program_ended(2, ms(60 + i / 10));
        }
        assert_eq!(w.program_over, 2 * PROGRAM_OVERBOOK_MAX);
        // One program of a second: back to one per cpu.
        w.program_ended(1, ms(1200));
        w.program_ended(1, ms(2200));
        assert_eq!(w.program_over, 2);
        // A window still open changes nothing.
        w.program_ended(1, ms(2210));
        assert_eq!(w.program_over, 2);
    }
}
