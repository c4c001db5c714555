//! The clients: their connections, the id ranges of their plans, and the responses queued for
//! them.

use crate::frame::push_frame;
use crate::proto::comm::{client_response, ClientResponse};

use super::ids::{ClientIdx, IdxVec, TaskId};
use super::journal::DETACHED;
use super::wire;
use super::ConnId;
use crate::journal::SessionToken;

/// One plan's mapping of client ids onto internal ids: client ids
/// `client_base..client_base+n` are internal ids `base..base+n`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlanRange {
    pub(crate) client_base: i32,
    pub(crate) n: u32,
    pub(crate) base: TaskId,
}

/// One registered client (gone clients keep their slot, `alive == false`).
pub(crate) struct Client {
    pub(crate) conn: ConnId,
    /// Its IP address (for status).
    pub(crate) ip: String,
    pub(crate) alive: bool,
    /// Its live plans, sorted by client base.
    pub(crate) ranges: Vec<PlanRange>,
    /// Lowest id_base the next plan may use.
    pub(crate) next_base: i64,
    /// Framed responses not yet handed to the socket layer.
    pub(crate) out: Vec<u8>,
    /// It announced "dictionary-updates": it gets the dictionary again when it grows.
    pub(crate) dict_updates: bool,
    /// It announced "fetch-direct": a FETCH of a large result is answered with its LOCATION.
    pub(crate) direct_fetch: bool,
    /// It announced "data-batch": small fetched objects may reach it several per DATA_BATCH.
    pub(crate) data_batch: bool,
    /// Its session token (it announced "session"; see [`crate::journal`]).
    pub(crate) session: Option<SessionToken>,
    /// Restored from the journal: a FETCH of a result being recomputed waits for it (the client
    /// may have been told it finished before the restart).
    pub(crate) restored: bool,
}

impl Client {
    /// A session restored from the journal, until its client re-attaches: what the server
    /// says to it is kept in `out` meanwhile.
    pub(crate) fn detached(token: SessionToken) -> Client {
        Client {
            conn: DETACHED,
            ip: String::new(),
            alive: true,
            ranges: Vec::new(),
            next_base: 0,
            out: Vec::new(),
            dict_updates: true,
            direct_fetch: false,
            data_batch: false,
            session: Some(token),
            restored: true,
        }
    }

    /// Whether it is a restored session whose client has not re-attached yet.
    pub(crate) fn is_detached(&self) -> bool {
        self.conn == DETACHED
    }

    /// The internal id of this client's task `cid`, if it belongs to a live plan.
    pub(crate) fn resolve(&self, cid: i32) -> Option<TaskId> {
        let k = self.ranges.partition_point(|r| r.client_base <= cid);
        let r = self.ranges.get(k.checked_sub(1)?)?;
        let d = (cid as i64) - (r.client_base as i64);
        (d >= 0 && d < r.n as i64).then(|| r.base.plus(d as usize))
    }

    /// The first client id of the live plan holding task `cid`.
    pub(crate) fn plan_base(&self, cid: i32) -> Option<i32> {
        let k = self.ranges.partition_point(|r| r.client_base <= cid);
        Some(self.ranges.get(k.checked_sub(1)?)?.client_base)
    }

    /// Queues `ClientResponse{ERROR, error{id?, error_msg}}`. `task` is the client's id of the
    /// task the error is about (every error about a task names it, so the client can route it).
    pub(crate) fn error(&mut self, task: Option<i32>, msg: String) {
        push_frame(
            &mut self.out,
            &ClientResponse {
                r#type: client_response::Type::Error as i32,
                error: Some(crate::proto::comm::Error {
                    id: task,
                    worker: None,
                    label: None,
                    error_msg: Some(msg.into_bytes().into()),
                }),
                ..Default::default()
            },
        );
    }

    /// Queues `ClientResponse{TASK_FAILED, id: held, error{id: failed.id, worker, error_msg,
    /// label: failed.label}}` (if connected): result `held` fails because task `failed` (the
    /// same, or one it depends on) failed with `msg` — the failing task's own id and raw
    /// message, as the original reports them; `held` is our extension (the original client
    /// reads only `error.id`).
    pub(crate) fn task_failed(&mut self, held: i32, failed: &FailedTask, worker: &str, msg: &[u8]) {
        if !self.alive {
            return;
        }
        push_frame(
            &mut self.out,
            &ClientResponse {
                r#type: client_response::Type::TaskFailed as i32,
                id: Some(held),
                error: Some(crate::proto::comm::Error {
                    id: Some(failed.id),
                    worker: Some(worker.to_owned()),
                    error_msg: Some(msg.to_vec().into()),
                    label: (!failed.label.is_empty()).then(|| failed.label.clone()),
                }),
                ..Default::default()
            },
        );
    }

    /// Queues `ClientResponse{DICTIONARY}` (the grown dictionary) if it asked for updates.
    pub(crate) fn dictionary_update(&mut self, symbols: &[String]) {
        if !self.alive || !self.dict_updates {
            return;
        }
        push_frame(
            &mut self.out,
            &ClientResponse {
                r#type: client_response::Type::Dictionary as i32,
                symbols: symbols.to_vec(),
                ..Default::default()
            },
        );
    }

    /// Queues `ClientResponse{TASK_FINISHED, id}`.
    #[inline]
    pub(crate) fn task_finished(&mut self, cid: i32) {
        wire::push_task_finished(&mut self.out, cid);
    }
}

/// The task a TASK_FAILED names: the client's id of the task that failed and its label.
pub(crate) struct FailedTask {
    pub(crate) id: i32,
    pub(crate) label: String,
}

/// Every client that ever registered, by [`ClientIdx`].
pub(crate) type Clients = IdxVec<ClientIdx, Client>;
