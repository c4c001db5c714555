//! Client requests (PLAN, FETCH, RELEASE, STATS, TRACE, TERMINATE) and a client going away.

use crate::frame::push_frame;
use crate::journal::Record;
use crate::proto::comm::{client_request, client_response, ClientResponse, Stats};

use super::ids::{ClientIdx, Slot};
use super::segment::{TaskFlags, TaskState};
use super::transfers::Fetch;
use super::{wire, LogLevel, Server, ServerError};

/// Results from this size on (bytes) are fetched from their worker by clients that announced
/// `fetch-direct`; smaller ones keep the relay, whose batched DATA suits them better.
pub const DIRECT_FETCH_MIN: u64 = 1 << 20;

impl Server {
    /// Handles one frame from client `ci`.
    pub(super) fn client_frame(&mut self, ci: ClientIdx, frame: &[u8]) -> Result<(), ServerError> {
        use client_request::Type;
        let req = wire::scan_client_request(frame)
            .map_err(|_| ServerError::Malformed("ClientRequest"))?;
        match Type::try_from(req.rtype) {
            Ok(Type::Plan) => self.plan(ci, req.plan.unwrap_or(&[]), req.load_checkpoints),
            Ok(Type::Fetch) if req.ids.is_empty() => {
                self.fetch(ci, req.id.unwrap_or(-1), req.relay)
            }
            // Ours (`fetch-many`): each id as if fetched alone; the SENDs to a worker leave
            // in one write with the rest of this turn's output.
            Ok(Type::Fetch) => {
                for &id in req.ids.iter() {
                    self.fetch(ci, id, req.relay);
                }
            }
            Ok(Type::Release) if req.ids.is_empty() => self.release(ci, req.id.unwrap_or(-1)),
            // Ours (`release-many`): each id as if released alone (an ERROR naming each bad one).
            Ok(Type::Release) => {
                for &id in req.ids.iter() {
                    self.release(ci, id);
                }
            }
            Ok(Type::Stats) => self.stats(ci),
            Ok(Type::Trace) => self.trace_request(ci, req.trace_path.unwrap_or(&[])),
            Ok(Type::Status) => self.status(ci),
            Ok(Type::Terminate) => {
                self.log(LogLevel::Info, "TERMINATE requested".into());
                self.out.terminate = true;
            }
            Err(_) => return Err(ServerError::RequestType(req.rtype)),
        }
        Ok(())
    }

    /// PLAN: ingests it, or answers ERROR naming the offending task (if any).
    fn plan(&mut self, ci: ClientIdx, plan: &[u8], load: bool) {
        let Err(e) = self.ingest_plan(ci, plan, load) else {
            return;
        };
        let msg = match &e.task {
            Some(t) => format!(
                "Plan rejected: task id={} (label '{}'): {}",
                t.id, t.label, e.cause
            ),
            None => format!("Plan rejected: {}", e.cause),
        };
        self.counters.plans_rejected += 1;
        self.log(LogLevel::Warn, msg.clone());
        // -1 (as in the original's TASK_FAILED for "Worker lost"): about the plan as a whole.
        self.clients[ci].error(Some(e.task.map_or(-1, |t| t.id)), msg);
    }

    /// STATUS (ours): answers with the snapshot as JSON ([`Server::snapshot`]).
    fn status(&mut self, ci: ClientIdx) {
        let json = self.snapshot().to_json();
        push_frame(
            &mut self.clients[ci].out,
            &ClientResponse {
                r#type: client_response::Type::Status as i32,
                status: Some(json.into_bytes().into()),
                ..Default::default()
            },
        );
    }

    /// STATS: live workers, and objects held on the server by every client (spec 4.1).
    fn stats(&mut self, ci: ClientIdx) {
        let n_workers = self.workers.n_alive as i32;
        let objects = self.client_objects();
        let n_data: i64 = self
            .clients
            .iter_enumerated()
            .filter(|(_, c)| c.alive)
            .map(|(i, _)| objects[i.index()])
            .sum();
        let c = &mut self.clients[ci];
        push_frame(
            &mut c.out,
            &ClientResponse {
                r#type: client_response::Type::Stats as i32,
                stats: Some(Stats {
                    n_workers: Some(n_workers),
                    n_data_objects: Some(n_data as i32),
                }),
                ..Default::default()
            },
        );
    }

    /// The slot of client `ci`'s result `cid` for FETCH/RELEASE, or the ERROR text to answer.
    fn held_result(&self, ci: ClientIdx, cid: i32) -> Result<Slot, String> {
        let invalid = || format!("Invalid id: {cid}");
        let id = self.clients[ci].resolve(cid).ok_or_else(invalid)?;
        let s = self.graph.locate(id).expect("resolved id has a segment");
        let seg = self.graph.seg(s);
        if seg.tasks[s.off].state == TaskState::Freed {
            return Err(invalid());
        }
        if !seg.tasks[s.off].flags.has(TaskFlags::RESULT) {
            return Err("Task is not result".into());
        }
        Ok(s)
    }

    /// FETCH: asks the owner to SEND the object to the server's data port; the data header
    /// that comes back is relayed to the client ([`Server::on_data_header`]). A result of at
    /// least [`DIRECT_FETCH_MIN`] bytes fetched by a client that announced `fetch-direct` (and
    /// did not ask for the `relay`) is answered with its LOCATION instead: the client fetches it
    /// from the owner's data port (docs/protocol-extensions.md).
    fn fetch(&mut self, ci: ClientIdx, cid: i32, relay: bool) {
        let s = match self.held_result(ci, cid) {
            Ok(s) => s,
            Err(msg) => return self.clients[ci].error(Some(cid), msg),
        };
        let seg = self.graph.seg(s);
        let id = seg.id(s.off);
        match seg.tasks[s.off].state {
            TaskState::Finished => {}
            TaskState::Failed => {
                return self.clients[ci].error(Some(cid), format!("Task id={cid} failed"));
            }
            st if st.is_pending()
                && (seg.tasks[s.off].flags.has(TaskFlags::NOTIFIED)
                    || self.clients[ci].restored) =>
            {
                // Finished once, its data lost with a worker (or with a server restart: the
                // client may have heard of it) and being recomputed: the fetch waits (sent
                // when it finishes again, or answered by TASK_FAILED).
                let fetch = Fetch {
                    client: ci,
                    client_id: cid,
                    sender: None,
                };
                return self.moves.add_fetch(id, fetch);
            }
            _ => return self.clients[ci].error(Some(cid), "Task is not finished".into()),
        }
        let owner = seg.tasks[s.off].wk.expect("a finished task has an owner");
        self.counters.fetches += 1;
        self.counters.fetch_bytes += seg.size[s.off];
        let size = seg.size[s.off];
        if !relay && self.clients[ci].direct_fetch && size >= DIRECT_FETCH_MIN {
            let address = self.workers[owner].addr.clone();
            return wire::push_location(&mut self.clients[ci].out, cid, &address, id, size);
        }
        wire::push_send(&mut self.workers[owner].out, id, &self.fetch_address);
        let fetch = Fetch {
            client: ci,
            client_id: cid,
            sender: Some(owner),
        };
        self.moves.add_fetch(id, fetch);
    }

    /// RELEASE: the client no longer holds the result; its data goes when nothing needs it.
    pub(super) fn release(&mut self, ci: ClientIdx, cid: i32) {
        let s = match self.held_result(ci, cid) {
            Ok(s) => s,
            Err(msg) => return self.clients[ci].error(Some(cid), msg),
        };
        if let Some(token) = self.journaled_session(ci) {
            self.journal(|| Record::Release { token, cid });
        }
        let seg = self.graph.seg_mut(s);
        seg.tasks[s.off].flags.remove(TaskFlags::RESULT);
        if seg.is_garbage(s.off) {
            self.free(s);
        }
    }

    /// Drops the client's plan segments entirely: finished data is removed from the workers;
    /// running tasks are canceled on workers that announced "cancel" (their cores free at
    /// once), else they become residual there (their late answers are absorbed).
    pub(super) fn discard_client(&mut self, ci: ClientIdx) {
        if self.trace_client == Some(ci) {
            self.trace_stop();
        }
        if let Some(token) = self.journaled_session(ci) {
            self.journal(|| Record::SessionClosed { token });
        }
        let c = &mut self.clients[ci];
        c.alive = false;
        c.out.clear();
        c.ranges.clear();
        for si in self.graph.segs.indices() {
            if self.graph.segs[si].client != ci {
                continue;
            }
            for off in 0..self.graph.segs[si].n as usize {
                let seg = &self.graph.segs[si];
                let (id, owner, size) = (seg.id(off), seg.tasks[off].wk, seg.size[off]);
                match seg.tasks[off].state {
                    TaskState::Running => {
                        let w = owner.expect("a running task has a worker");
                        let wk = &mut self.workers[w];
                        if wk.can_cancel && wk.alive {
                            // A late answer gets REMOVE (FINISHED) or is ignored (FAILED).
                            wire::push_cancel(&mut wk.out, id);
                            wk.unbook(seg.tasks[off].cpus);
                        } else {
                            wk.residual.insert(id, seg.tasks[off].cpus);
                        }
                    }
                    TaskState::Finished => self.remove_everywhere(id, owner, size),
                    _ => {}
                }
            }
        }
        let dropped = self.graph.drop_client(ci);
        self.counters.retire(self.graph.retired.drain(..), true);
        self.moves.forget(|id| dropped.contains(id));
        self.crashes.retain(|id| !dropped.contains(id));
        self.ready.retain_parked(|id| !dropped.contains(id));
    }
}
