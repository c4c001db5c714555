//! The server's side of the journal ([`crate::journal`]): the records it emits as events
//! happen (collected here, handed to the writer with each [`Server::take_output`]), and the
//! restore of a journal's plans when the server starts.
//!
//! A restore replays the records in order, as the requests they were: plans are ingested again
//! under their original internal ids, releases applied. Tasks whose checkpoint was written are
//! loaded from it (planning stops there, as with `load_checkpoints`); everything else is
//! recomputed. A restored session is detached until its client re-attaches with its token
//! (`Register.session`); what the server says to it meanwhile waits in its buffer.

use std::collections::{HashMap, HashSet};

use crate::journal::{Record, SessionToken};

use super::clients::Client;
use super::ids::{ClientIdx, TaskId};
use super::segment::{TaskFlags, TaskState};
use super::{ConnId, LogLevel, Server};

/// `Client.conn` of a restored session whose client has not re-attached.
pub(crate) const DETACHED: ConnId = ConnId::MAX;

/// What the server journals, between two [`Server::take_output`]s.
#[derive(Default)]
pub(crate) struct Journaling {
    /// Framed records not yet handed out.
    pub(crate) buf: Vec<u8>,
    /// Dictionary names already journaled (the standard ones need none).
    symbols: usize,
    /// The id counter last journaled.
    next_id: i32,
    /// Internal ids whose checkpoint was written before the restart (restore only).
    pub(crate) checkpointed: HashSet<TaskId>,
}

impl Server {
    /// Starts journaling: from now on the server emits records ([`crate::journal::Record`]) in
    /// [`super::Output::journal`]. Call before [`Server::restore`] and any connection.
    pub fn enable_journal(&mut self) {
        let j = Journaling {
            symbols: self.symbols.names().len(),
            next_id: self.graph.next_id().get(),
            ..Default::default()
        };
        self.journal = Some(Box::new(j));
    }

    /// Appends `r` to the journal (if journaling).
    #[inline]
    pub(super) fn journal(&mut self, r: impl FnOnce() -> Record) {
        if let Some(j) = self.journal.as_mut() {
            r().encode(&mut j.buf);
        }
    }

    /// Client `ci`'s session token, if it has one and the server journals.
    #[inline]
    pub(super) fn journaled_session(&self, ci: ClientIdx) -> Option<SessionToken> {
        self.journal.as_ref()?;
        self.clients[ci].session
    }

    /// The bytes to hand to the journal writer; also records the dictionary's growth and the
    /// id counter.
    pub(super) fn take_journal(&mut self) -> Vec<u8> {
        let names = self.symbols.names();
        let next = self.graph.next_id().get();
        let Some(j) = self.journal.as_mut() else {
            return Vec::new();
        };
        if names.len() > j.symbols {
            Record::Symbols {
                names: names[j.symbols..].to_vec(),
            }
            .encode(&mut j.buf);
            j.symbols = names.len();
        }
        if next != j.next_id {
            Record::NextId { next }.encode(&mut j.buf);
            j.next_id = next;
        }
        std::mem::take(&mut j.buf)
    }

    /// Task `ci`/`cid` finished: journals it when the restore needs it (a result reported to its
    /// client, or a checkpoint written).
    pub(super) fn journal_finished(
        &mut self,
        ci: ClientIdx,
        cid: Option<i32>,
        size: u64,
        length: u64,
        notified: bool,
        checkpointed: bool,
    ) {
        let (Some(token), Some(cid)) = (self.journaled_session(ci), cid) else {
            return;
        };
        self.journal(|| Record::Finished {
            token,
            cid,
            size,
            length,
            notified,
            checkpointed,
        });
    }

    /// Restores the plans of a journal's records (compacted or not) into a fresh server; returns
    /// how many sessions and plans it restored. Lines for the log say what happened.
    pub fn restore(&mut self, records: &[Record]) -> (usize, usize) {
        let closed: HashSet<SessionToken> = records
            .iter()
            .filter_map(|r| match r {
                Record::SessionClosed { token } => Some(*token),
                _ => None,
            })
            .collect();
        // Internal ids of plan tasks, to place completions; first pass.
        let mut plans: HashMap<(SessionToken, i32), (i32, u32)> = HashMap::new();
        // The id counter before the restart (applied after the plans, which take their own ids).
        let mut next_id = 0;
        for r in records {
            match r {
                Record::Symbols { names } => {
                    for n in names {
                        self.symbols.add(n);
                    }
                }
                Record::Plan {
                    token,
                    ibase,
                    client_base,
                    n,
                    ..
                } => {
                    plans.insert((*token, *client_base), (*ibase, *n));
                }
                Record::NextId { next } => next_id = next_id.max(*next),
                _ => {}
            }
        }
        let locate = |token: SessionToken, cid: i32| -> Option<TaskId> {
            plans.iter().find_map(|(&(t, b), &(ibase, n))| {
                let d = cid as i64 - b as i64;
                (t == token && d >= 0 && d < n as i64).then(|| TaskId(ibase + d as i32))
            })
        };
        // Plans a later plan of their session uses.
        let used: HashSet<(SessionToken, i32)> = records
            .iter()
            .flat_map(|r| match r {
                Record::Plan { token, uses, .. } => uses.iter().map(|&u| (*token, u)).collect(),
                _ => Vec::new(),
            })
            .collect();
        let mut released: HashSet<TaskId> = HashSet::new();
        let mut notified: HashSet<TaskId> = HashSet::new();
        let mut checkpointed: HashSet<TaskId> = HashSet::new();
        for r in records {
            if let Record::Release { token, cid } = r {
                let plan = plans
                    .iter()
                    .find(|(&(t, b), &(_, n))| {
                        t == *token && *cid >= b && (*cid as i64) < b as i64 + n as i64
                    })
                    .map(|(k, _)| *k);
                let unused = plan.is_some_and(|k| !used.contains(&k));
                if let (true, Some(id)) = (unused, locate(*token, *cid)) {
                    released.insert(id);
                }
            }
        }
        for r in records {
            if let Record::Finished {
                token,
                cid,
                notified: nt,
                checkpointed: cp,
                ..
            } = r
            {
                if let Some(id) = locate(*token, *cid) {
                    if *nt {
                        notified.insert(id);
                    }
                    if *cp {
                        checkpointed.insert(id);
                    }
                }
            }
        }
        // Reported results without a checkpoint may be held by a worker that reconnects: the
        // reconnect grace holds them back (those a plan loads from a checkpoint are let go below).
        self.awaiting = notified.difference(&checkpointed).copied().collect();
        if let Some(j) = self.journal.as_mut() {
            j.checkpointed = checkpointed;
            j.symbols = self.symbols.names().len();
        }
        // (Kept outside the journal state too: restore also works without journaling.)
        self.restoring_released = released;
        // Every task ingested below is a restored one (the final bound is set after them).
        self.restored_below = TaskId(i32::MAX);
        let mut sessions: HashMap<SessionToken, ClientIdx> = HashMap::new();
        let (mut n_plans, mut n_failed) = (0usize, 0usize);
        for r in records {
            match r {
                Record::Session { token } if !closed.contains(token) => {
                    let ci = self.clients.push(Client::detached(*token));
                    sessions.insert(*token, ci);
                    self.journal(|| Record::Session { token: *token });
                }
                Record::Plan {
                    token,
                    ibase,
                    load,
                    bytes,
                    ..
                } => {
                    let Some(&ci) = sessions.get(token) else {
                        continue;
                    };
                    self.graph.bump_next_id(TaskId(*ibase));
                    if self.graph.next_id() != TaskId(*ibase) {
                        self.log(
                            LogLevel::Warn,
                            format!("journal: a plan of session {token:x} overlaps another; not restored"),
                        );
                        n_failed += 1;
                        continue;
                    }
                    match self.ingest_plan(ci, bytes, *load) {
                        Ok(()) => n_plans += 1,
                        Err(e) => {
                            n_failed += 1;
                            let msg = format!("Plan not restored from the journal: {}", e.cause);
                            self.log(LogLevel::Warn, msg.clone());
                            let id = e.task.map_or(-1, |t| t.id);
                            self.clients[ci].error(Some(id), msg);
                        }
                    }
                }
                Record::Release { token, cid } => {
                    let Some(&ci) = sessions.get(token) else {
                        continue;
                    };
                    let skipped = locate(*token, *cid)
                        .is_some_and(|id| self.restoring_released.contains(&id));
                    if !skipped {
                        self.release(ci, *cid);
                    }
                }
                _ => {}
            }
        }
        // Results reported before the restart: a FETCH waits for the recomputed object (and
        // the client is not told twice).
        for id in notified {
            if let Some(s) = self.graph.locate(id) {
                let seg = self.graph.seg_mut(s);
                if seg.tasks[s.off].flags.has(TaskFlags::RESULT) {
                    seg.tasks[s.off].flags.insert(TaskFlags::NOTIFIED);
                }
            }
        }
        if let Some(j) = self.journal.as_mut() {
            j.checkpointed.clear();
        }
        self.restoring_released.clear();
        self.graph.bump_next_id(TaskId(next_id));
        self.restored_below = self.graph.next_id();
        // Only results still to compute await their workers.
        let awaiting = std::mem::take(&mut self.awaiting);
        self.awaiting = awaiting
            .into_iter()
            .filter(|&id| {
                self.graph.locate(id).is_some_and(|s| {
                    let seg = self.graph.seg(s);
                    matches!(
                        seg.tasks[s.off].state,
                        TaskState::Ready | TaskState::Waiting
                    ) && !seg.tasks[s.off].flags.has(TaskFlags::LOAD)
                })
            })
            .collect();
        if self.awaiting.is_empty() {
            self.release_held_back();
        } else {
            let held = std::mem::take(&mut self.held_back);
            for id in held {
                if self.awaiting.contains(&id) {
                    self.held_back.push(id);
                } else if let Some(s) = self.graph.locate(id) {
                    if self.graph.state(s) == TaskState::Ready {
                        self.make_ready(s);
                    }
                }
            }
        }
        let n_sessions = sessions.len();
        self.log(
            LogLevel::Info,
            format!(
                "journal: restored {n_plans} plans of {n_sessions} client sessions{}",
                if n_failed > 0 {
                    format!(" ({n_failed} plans could not be restored)")
                } else {
                    String::new()
                }
            ),
        );
        self.after_event();
        (n_sessions, n_plans)
    }

    /// How many results reported before the restart wait for a worker to bring them back (the
    /// reconnect grace; 0: none, or it is over).
    pub fn awaiting_results(&self) -> usize {
        self.awaiting.len()
    }

    /// Ends the reconnect grace (`--reconnect-grace` elapsed, or 0): results no worker brought
    /// back are computed again. Nothing happens when there is no grace.
    pub fn end_reconnect_grace(&mut self) {
        let n = self.awaiting.len();
        if n == 0 && self.held_back.is_empty() {
            return;
        }
        self.awaiting.clear();
        if n > 0 {
            self.log(
                LogLevel::Info,
                format!(
                    "reconnect grace over: {n} results no worker brought back are computed again"
                ),
            );
        }
        self.release_held_back();
        self.after_event();
    }

    /// Queues the tasks held back by the reconnect grace that are still ready.
    pub(super) fn release_held_back(&mut self) {
        self.awaiting.clear();
        for id in std::mem::take(&mut self.held_back) {
            if let Some(s) = self.graph.locate(id) {
                if self.graph.state(s) == TaskState::Ready {
                    self.make_ready(s);
                }
            }
        }
    }

    /// Whether result `id` was released before the restart and no later plan may use it (a
    /// restore then does not plan it).
    pub(super) fn restored_release(&self, id: TaskId) -> bool {
        !self.restoring_released.is_empty() && self.restoring_released.contains(&id)
    }

    /// Whether task `id`'s checkpoint was written before the restart (it is then loaded).
    pub(super) fn restored_checkpoint(&self, id: TaskId) -> bool {
        self.journal
            .as_ref()
            .is_some_and(|j| j.checkpointed.contains(&id))
    }

    /// Discards restored sessions whose client has not re-attached (their plans go).
    pub fn discard_detached(&mut self) -> usize {
        let detached: Vec<ClientIdx> = self
            .clients
            .iter_enumerated()
            .filter(|(_, c)| c.alive && c.conn == DETACHED)
            .map(|(i, _)| i)
            .collect();
        for &ci in &detached {
            self.log(
                LogLevel::Info,
                format!(
                    "client session {:x} did not re-attach; its plans are discarded",
                    self.clients[ci].session.unwrap_or(0)
                ),
            );
            self.discard_client(ci);
        }
        self.after_event();
        detached.len()
    }
}
