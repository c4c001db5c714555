//! The allocator's queries of `ServerCore` (see `loom_core::server::demand`): what waits for
//! workers and which workers are idle. Read-only; nothing is written to any connection.

use crate::server::ServerCore;
use napi_derive::napi;

/// Ready tasks of one cpu request that no connected worker has room for.
#[napi(object)]
pub struct WaitingClass {
    /// Cpus each task requests (0: light tasks).
    pub cpus: u32,
    /// How many wait (at most the limit asked for).
    pub tasks: u32,
}

/// A connected worker's load.
#[napi(object)]
pub struct WorkerLoad {
    /// Its connection id (given by the TS layer).
    pub conn: u32,
    /// Cpus it registered.
    pub cpus: u32,
    /// Cpus booked by tasks sent to it and not answered yet.
    pub booked_cpus: u32,
    /// Light (0-cpu) tasks in flight there.
    pub light_tasks: u32,
}

/// Computed objects held only by one worker.
#[napi(object)]
pub struct SoleCopies {
    /// The worker's connection id.
    pub conn: u32,
    /// How many objects exist only there.
    pub objects: i64,
}

#[napi]
impl ServerCore {
    /// The cpus of the largest worker the allocation queues can start (0: none): a plan whose
    /// task needs more cpus than every connected worker has is then accepted if this suffices.
    #[napi]
    pub fn set_allocatable_cpus(&mut self, cpus: u32) {
        self.inner.set_allocatable_cpus(cpus);
    }

    /// Ready tasks waiting for a worker, per cpu request (largest first), each class counted up
    /// to `limit`.
    #[napi]
    pub fn waiting_tasks(&self, limit: u32) -> Vec<WaitingClass> {
        self.inner
            .waiting_tasks(limit)
            .into_iter()
            .map(|c| WaitingClass {
                cpus: u32::from(c.cpus),
                tasks: c.tasks,
            })
            .collect()
    }

    /// The load of every connected worker.
    #[napi]
    pub fn worker_loads(&self) -> Vec<WorkerLoad> {
        self.inner
            .worker_loads()
            .into_iter()
            .map(|w| WorkerLoad {
                conn: w.conn,
                cpus: w.cpus,
                booked_cpus: w.booked_cpus,
                light_tasks: w.light_tasks,
            })
            .collect()
    }

    /// Per connected worker, the computed objects that exist only there. Scans the live tasks:
    /// call it when a worker is about to be let go, not per event.
    #[napi]
    pub fn sole_copies(&self) -> Vec<SoleCopies> {
        self.inner
            .sole_copies()
            .into_iter()
            .map(|(conn, n)| SoleCopies {
                conn,
                objects: n as i64,
            })
            .collect()
    }
}
