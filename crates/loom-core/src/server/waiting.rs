//! How much ready work waits for a worker: the TS server polls it to warn when a plan cannot make
//! progress (no worker connected, or none that can run some tasks). A read-only query.

use super::ids::TaskId;
use super::segment::TaskState;
use super::Server;

/// Ready tasks that no worker is running, as counted by [`Server::waiting`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Connected workers.
    pub workers: u32,
    /// Ready tasks held back because no worker is connected (0 while one is).
    pub without_worker: u64,
    /// Ready tasks no connected worker can run: none registered the task type, or none has the
    /// cores the task requests.
    pub unrunnable: u64,
}

impl Server {
    /// Counts ready tasks that wait for a worker. Cost: one lookup per queued task while no worker
    /// is connected (the queues are not drained then), one per parked task.
    pub fn waiting(&self) -> Waiting {
        let ready = |id: TaskId| self.graph.state_of(id) == Some(TaskState::Ready);
        let workers = self.workers.n_alive;
        Waiting {
            workers,
            // With workers connected, queued tasks wait for room, which is normal: not counted.
            without_worker: if workers == 0 {
                self.ready.count_queued(ready) as u64
            } else {
                0
            },
            unrunnable: self.ready.count_parked(ready) as u64,
        }
    }
}
