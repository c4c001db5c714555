//! What a journal holds, for `hyperloom journal PATH [--json]`: its client sessions, plans and
//! their tasks by what the journal knows of them.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::{Contents, Record, SessionToken};

/// A journal's contents, summed up (the `--json` shape).
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Bytes of whole records (with the magic).
    pub bytes: u64,
    /// Number of records.
    pub records: usize,
    /// Why the tail would be cut (a corrupt or truncated record), if it would.
    pub cut: Option<String>,
    /// Client sessions.
    pub clients: Vec<ClientSummary>,
    /// Plans, in journal order.
    pub plans: Vec<PlanSummary>,
    /// Tasks of the plans a restore would bring back, by state.
    pub tasks: TaskSummary,
}

/// One client session.
#[derive(Debug, Serialize)]
pub struct ClientSummary {
    /// Its token (hex).
    pub session: String,
    /// `open` (restored on start) or `closed`.
    pub state: &'static str,
    /// Plans it submitted that the journal holds.
    pub plans: usize,
}

/// One plan.
#[derive(Debug, Serialize)]
pub struct PlanSummary {
    /// Its session (hex).
    pub session: String,
    /// Its first client id.
    pub client_base: i32,
    /// Tasks in it.
    pub tasks: u32,
    /// Results (tasks the client holds).
    pub results: usize,
    /// Tasks with a checkpoint path.
    pub checkpoints: usize,
    /// Bytes of its PLAN message.
    pub bytes: usize,
    /// `live` (restored on start), `done` (all its tasks freed) or `closed` (its client left).
    pub state: &'static str,
}

/// Tasks of the live plans, by what the journal knows of them.
#[derive(Debug, Default, Serialize)]
pub struct TaskSummary {
    /// All tasks of live plans.
    pub total: u64,
    /// Results reported finished to their client.
    pub finished: u64,
    /// Tasks whose checkpoint was written (loaded on restore).
    pub checkpointed: u64,
    /// Results the client released.
    pub released: u64,
    /// The rest (computed again on restore if a live plan still needs them).
    pub other: u64,
}

impl Summary {
    /// As JSON (the `--json` output of `hyperloom journal`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a summary serializes")
    }
}

fn hex(t: SessionToken) -> String {
    format!("{t:016x}")
}

/// Sums up what [`super::read`] returned.
pub fn summarize(c: &Contents) -> Summary {
    let closed: HashSet<SessionToken> = c
        .records
        .iter()
        .filter_map(|r| match r {
            Record::SessionClosed { token } => Some(*token),
            _ => None,
        })
        .collect();
    let dropped: HashSet<(SessionToken, i32)> = c
        .records
        .iter()
        .filter_map(|r| match r {
            Record::PlanDropped { token, client_base } => Some((*token, *client_base)),
            _ => None,
        })
        .collect();
    let mut plans = Vec::new();
    let mut per_session: HashMap<SessionToken, usize> = HashMap::new();
    let mut sessions = Vec::new();
    let mut live: Vec<(SessionToken, i32, u32)> = Vec::new();
    for r in &c.records {
        match r {
            Record::Session { token } => sessions.push(*token),
            Record::Plan {
                token,
                client_base,
                n,
                bytes,
                ..
            } => {
                *per_session.entry(*token).or_default() += 1;
                let (results, checkpoints) = crate::server::count_plan_tasks(bytes);
                let state = if closed.contains(token) {
                    "closed"
                } else if dropped.contains(&(*token, *client_base)) {
                    "done"
                } else {
                    live.push((*token, *client_base, *n));
                    "live"
                };
                plans.push(PlanSummary {
                    session: hex(*token),
                    client_base: *client_base,
                    tasks: *n,
                    results,
                    checkpoints,
                    bytes: bytes.len(),
                    state,
                });
            }
            _ => {}
        }
    }
    let is_live = |token: SessionToken, cid: i32| {
        live.iter()
            .any(|&(t, b, n)| t == token && cid >= b && (cid as i64) < b as i64 + n as i64)
    };
    let mut tasks = TaskSummary {
        total: live.iter().map(|p| p.2 as u64).sum(),
        ..Default::default()
    };
    let mut seen: HashSet<(SessionToken, i32)> = HashSet::new();
    for r in &c.records {
        match r {
            Record::Finished {
                token,
                cid,
                notified,
                checkpointed,
                ..
            } if is_live(*token, *cid) => {
                tasks.finished += *notified as u64;
                tasks.checkpointed += *checkpointed as u64;
                seen.insert((*token, *cid));
            }
            Record::Release { token, cid } if is_live(*token, *cid) => {
                tasks.released += 1;
                seen.insert((*token, *cid));
            }
            _ => {}
        }
    }
    tasks.other = tasks.total.saturating_sub(seen.len() as u64);
    Summary {
        bytes: c.valid_len,
        records: c.records.len(),
        cut: c.cut.clone(),
        clients: sessions
            .into_iter()
            .map(|t| ClientSummary {
                session: hex(t),
                state: if closed.contains(&t) {
                    "closed"
                } else {
                    "open"
                },
                plans: per_session.get(&t).copied().unwrap_or(0),
            })
            .collect(),
        plans,
        tasks,
    }
}
