//! Counters for watching a running server (dashboard, `/metrics`, `hyperloom status`).
//!
//! Everything here is updated where the event happens, in O(1) per event (a task changing
//! state touches two counters of its segment, see [`super::segment::Segment::set_state`]);
//! nothing is ever computed per task when a snapshot is taken. [`super::Server::snapshot`]
//! folds these counters, the live segments' counts and the workers and clients into one
//! [`Snapshot`] (serialised as JSON by [`Snapshot::to_json`]).
//!
//! Plans stay listed after their tasks are gone: when a segment is collected its counts are
//! folded into its plan's record; the newest [`KEEP_DONE_PLANS`] finished plans are kept.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::ids::ClientIdx;
use super::segment::TaskState;

/// How many finished (or discarded) plans stay listed.
pub const KEEP_DONE_PLANS: usize = 50;
/// How many disconnected clients stay listed (the newest).
pub const KEEP_GONE_CLIENTS: usize = 20;
/// How many recent task failures are kept (with their messages).
pub const KEEP_FAILURES: usize = 50;
/// Failure messages are cut to this many bytes in the snapshot (the client gets them whole).
const FAILURE_MSG_MAX: usize = 4096;
/// A plan's label groups beyond this many are counted under [`OTHER_GROUP`].
const MAX_GROUPS: usize = 64;
const OTHER_GROUP: &str = "(other labels)";
const NO_LABEL: &str = "(no label)";

/// A plan's number on this server (in arrival order, from 1).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PlanNo(pub(crate) u32);

/// Tasks per [`TaskState`] (indexed by the state's discriminant).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct StateCounts([u32; 7]);

impl StateCounts {
    /// `n` tasks, all in `state`.
    pub(crate) fn all(state: TaskState, n: u32) -> Self {
        let mut c = StateCounts::default();
        c.0[state as usize] = n;
        c
    }

    /// One task went from `from` to `to`.
    #[inline(always)]
    pub(crate) fn moved(&mut self, from: TaskState, to: TaskState) {
        self.0[from as usize] -= 1;
        self.0[to as usize] += 1;
    }

    /// `n` tasks went from `from` to `to`.
    #[inline]
    pub(crate) fn moved_n(&mut self, from: TaskState, to: TaskState, n: u32) {
        self.0[from as usize] -= n;
        self.0[to as usize] += n;
    }

    /// How many are in `state`.
    pub(crate) fn get(&self, state: TaskState) -> u32 {
        self.0[state as usize]
    }
}

/// Tasks by the state a user sees. `finished` counts tasks whose data was freed since;
/// tasks never reachable from a result (never computed) are not counted.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    /// Planned, some inputs not finished.
    pub waiting: u64,
    /// Inputs finished, waiting for a worker.
    pub ready: u64,
    /// Sent to a worker.
    pub running: u64,
    /// Done (its data may since have been freed).
    pub finished: u64,
    /// Failed, itself or an input.
    pub failed: u64,
}

impl TaskCounts {
    fn add(&mut self, c: &StateCounts) {
        self.waiting += c.get(TaskState::Waiting) as u64;
        self.ready += c.get(TaskState::Ready) as u64;
        self.running += c.get(TaskState::Running) as u64;
        self.finished += (c.get(TaskState::Finished) + c.get(TaskState::Freed)) as u64;
        self.failed += c.get(TaskState::Failed) as u64;
    }

    fn add_counts(&mut self, o: &TaskCounts) {
        self.waiting += o.waiting;
        self.ready += o.ready;
        self.running += o.running;
        self.finished += o.finished;
        self.failed += o.failed;
    }

    /// Every planned task.
    pub fn total(&self) -> u64 {
        self.waiting + self.ready + self.running + self.finished + self.failed
    }
}

/// A plan's tasks per label group (the text of the label before its first `:`, as in the
/// HTML report): a group index per task and the counts per group.
pub(crate) struct LabelGroups {
    of: Vec<u16>,
    names: Vec<Box<str>>,
    counts: Vec<StateCounts>,
}

impl LabelGroups {
    /// Groups of a segment of `n` tasks all in `state`, from its labels `(offset, label)`.
    pub(crate) fn new(n: usize, state: TaskState, labels: &[(u32, &[u8])]) -> Self {
        let mut names: Vec<Box<str>> = vec![NO_LABEL.into()];
        let mut index: BTreeMap<Vec<u8>, u16> = BTreeMap::new();
        let mut of = vec![0u16; n];
        for &(off, label) in labels {
            let group = group_of(label);
            let g = match index.get(group) {
                Some(&g) => g,
                None if names.len() < MAX_GROUPS => {
                    let g = names.len() as u16;
                    names.push(String::from_utf8_lossy(group).into());
                    index.insert(group.to_vec(), g);
                    g
                }
                None => {
                    if names.last().map(|s| &**s) != Some(OTHER_GROUP) {
                        names.push(OTHER_GROUP.into());
                    }
                    (names.len() - 1) as u16
                }
            };
            of[off as usize] = g;
        }
        let mut counts = vec![StateCounts::default(); names.len()];
        for &g in &of {
            counts[g as usize].0[state as usize] += 1;
        }
        LabelGroups { of, names, counts }
    }

    /// Task `off` went from `from` to `to`.
    #[inline(always)]
    pub(crate) fn moved(&mut self, off: usize, from: TaskState, to: TaskState) {
        self.counts[self.of[off] as usize].moved(from, to);
    }
}

/// The group of a label: the text before its first `:`, trimmed (the whole label if that is
/// empty).
fn group_of(label: &[u8]) -> &[u8] {
    let head = match label.iter().position(|&b| b == b':') {
        Some(k) => &label[..k],
        None => label,
    };
    let t = head.trim_ascii();
    if t.is_empty() {
        label
    } else {
        t
    }
}

/// What the server keeps about one plan.
pub(crate) struct PlanRecord {
    pub(crate) client: ClientIdx,
    /// The client's id of its first task.
    client_base: i32,
    /// Tasks in the plan as sent.
    tasks: u32,
    /// When it arrived (ms since the Unix epoch).
    submitted_ms: u64,
    /// Validation and insertion time.
    ingest_ms: f64,
    /// Segments of this plan still in the graph (the plan's own and its expansions').
    live_segments: u32,
    /// Counts of its collected segments.
    retired: TaskCounts,
    retired_groups: Vec<(Box<str>, TaskCounts)>,
    /// Its client went away before it finished.
    discarded: bool,
    /// When its last segment was collected (for keeping the newest ones).
    done_seq: u64,
}

/// A collected segment's counts, handed from the graph to [`Counters::retire`].
pub(crate) struct RetiredSegment {
    pub(crate) plan: PlanNo,
    pub(crate) counts: StateCounts,
    pub(crate) groups: Option<Box<LabelGroups>>,
}

/// One task failure as reported by its worker.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// Plan number.
    pub plan: u32,
    /// The client's id of the task (-1 for tasks created by a dslice/dget expansion).
    pub task: i32,
    /// Its label ("" if none).
    pub label: String,
    /// The worker's address.
    pub worker: String,
    /// The error message (cut to 4 KiB).
    pub message: String,
    /// When (ms since the Unix epoch).
    pub time_ms: u64,
}

/// The server's event counters (one owner: [`super::Server`]).
#[derive(Default)]
pub(crate) struct Counters {
    next_plan: u32,
    done_seq: u64,
    pub(crate) plans: BTreeMap<PlanNo, PlanRecord>,
    /// Tasks in accepted plans (as sent).
    pub(crate) tasks_submitted: u64,
    /// Scheduling rounds that had ready tasks and a worker.
    pub(crate) scheduler_rounds: u64,
    /// Tasks sent to workers.
    pub(crate) assigned: u64,
    /// Total plan ingest time (validation and insertion), seconds.
    pub(crate) ingest_seconds: f64,
    /// Plans accepted / rejected.
    pub(crate) plans_accepted: u64,
    pub(crate) plans_rejected: u64,
    /// Worker-to-worker transfers started, and the bytes of those that arrived.
    pub(crate) transfers: u64,
    pub(crate) transfer_bytes: u64,
    /// Objects fetched by clients through the server, and their bytes.
    pub(crate) fetches: u64,
    pub(crate) fetch_bytes: u64,
    /// Task failures reported by workers (not counting dependants).
    pub(crate) task_failures: u64,
    pub(crate) failures: VecDeque<Failure>,
    /// Counts of every collected segment (plans long gone included).
    pub(crate) retired_total: TaskCounts,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Counters {
    /// A plan was accepted: its number.
    pub(crate) fn plan_accepted(
        &mut self,
        client: ClientIdx,
        client_base: i32,
        tasks: u32,
    ) -> PlanNo {
        self.next_plan += 1;
        let no = PlanNo(self.next_plan);
        self.plans_accepted += 1;
        self.tasks_submitted += tasks as u64;
        self.plans.insert(
            no,
            PlanRecord {
                client,
                client_base,
                tasks,
                submitted_ms: now_ms(),
                ingest_ms: 0.0,
                live_segments: 0,
                retired: TaskCounts::default(),
                retired_groups: Vec::new(),
                discarded: false,
                done_seq: 0,
            },
        );
        no
    }

    /// Plan `p` took `seconds` to validate and insert.
    pub(crate) fn ingest_done(&mut self, p: PlanNo, seconds: f64) {
        self.ingest_seconds += seconds;
        if let Some(r) = self.plans.get_mut(&p) {
            r.ingest_ms = seconds * 1e3;
        }
    }

    /// A segment of plan `p` entered the graph.
    pub(crate) fn segment_added(&mut self, p: PlanNo) {
        if let Some(r) = self.plans.get_mut(&p) {
            r.live_segments += 1;
        }
    }

    /// Segments left the graph (collected, or their client went away: `discarded`).
    pub(crate) fn retire(&mut self, segs: impl Iterator<Item = RetiredSegment>, discarded: bool) {
        for s in segs {
            let mut c = TaskCounts::default();
            c.add(&s.counts);
            self.retired_total.add_counts(&c);
            let Some(r) = self.plans.get_mut(&s.plan) else {
                continue;
            };
            r.retired.add_counts(&c);
            if let Some(g) = s.groups {
                for (name, sc) in g.names.iter().zip(&g.counts) {
                    let mut gc = TaskCounts::default();
                    gc.add(sc);
                    match r.retired_groups.iter_mut().find(|(n, _)| n == name) {
                        Some((_, t)) => t.add_counts(&gc),
                        None => r.retired_groups.push((name.clone(), gc)),
                    }
                }
            }
            r.discarded |= discarded;
            r.live_segments = r.live_segments.saturating_sub(1);
            if r.live_segments == 0 {
                self.done_seq += 1;
                r.done_seq = self.done_seq;
            }
        }
        let done = self.plans.values().filter(|r| r.live_segments == 0).count();
        if done > KEEP_DONE_PLANS {
            let mut seqs: Vec<(u64, PlanNo)> = self
                .plans
                .iter()
                .filter(|(_, r)| r.live_segments == 0)
                .map(|(k, r)| (r.done_seq, *k))
                .collect();
            seqs.sort_unstable();
            for (_, k) in seqs.iter().take(done - KEEP_DONE_PLANS) {
                self.plans.remove(k);
            }
        }
    }

    /// A worker reported a task failure.
    pub(crate) fn failure(&mut self, f: Failure) {
        self.task_failures += 1;
        if self.failures.len() == KEEP_FAILURES {
            self.failures.pop_front();
        }
        self.failures.push_back(f);
    }
}

/// A failure message for the snapshot: lossy UTF-8, cut to 4 KiB.
pub(crate) fn failure_message(msg: &[u8]) -> String {
    let cut = &msg[..msg.len().min(FAILURE_MSG_MAX)];
    String::from_utf8_lossy(cut).into_owned()
}

/// One worker in a [`Snapshot`].
#[derive(Clone, Debug, Serialize)]
pub struct WorkerStatus {
    /// Index on this server (in registration order, from 0).
    pub id: u32,
    /// `ip:port` of its data listener.
    pub address: String,
    pub cpus: u32,
    /// Cpus booked by tasks sent to it (may exceed `cpus`: it queues the extra tasks).
    pub busy_cpus: u32,
    /// Tasks sent to it and not answered yet.
    pub running: u32,
    /// Objects it holds and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// False once it is gone (departed or lost).
    pub alive: bool,
    /// `connected`; `departed` (it said it was stopping, or the server let it go); `lost` (its
    /// connection closed unannounced: a crash, a kill, a network failure, or an original worker).
    pub state: &'static str,
}

/// One client in a [`Snapshot`].
#[derive(Clone, Debug, Serialize)]
pub struct ClientStatus {
    pub id: u32,
    /// The peer's IP address.
    pub address: String,
    /// False once it disconnected.
    pub alive: bool,
    /// Its plans still running.
    pub plans: u32,
    /// Computed objects it still holds or needs.
    pub objects: i64,
}

/// A label group's tasks in a [`PlanStatus`].
#[derive(Clone, Debug, Serialize)]
pub struct GroupStatus {
    pub name: String,
    pub tasks: TaskCounts,
}

/// One plan in a [`Snapshot`].
#[derive(Clone, Debug, Serialize)]
pub struct PlanStatus {
    /// Plan number on this server (from 1).
    pub id: u32,
    pub client: u32,
    /// The client's id of its first task.
    pub client_base: i32,
    /// Tasks as sent (including ones no result needs).
    pub size: u32,
    /// `running` (tasks left), `done`, or `discarded` (its client went away first).
    pub state: &'static str,
    pub submitted_ms: u64,
    pub ingest_ms: f64,
    pub tasks: TaskCounts,
    /// Per label group (empty when no task has a label).
    pub groups: Vec<GroupStatus>,
}

/// Transfers in a [`Snapshot`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct TransferStatus {
    /// Worker-to-worker transfers in flight.
    pub in_flight: u64,
    /// Worker-to-worker transfers started since the server started.
    pub total: u64,
    /// Bytes of the worker-to-worker transfers that arrived.
    pub bytes: u64,
    /// Objects fetched by clients, and their bytes.
    pub fetches: u64,
    pub fetch_bytes: u64,
}

/// Everything the dashboard, `/metrics` and `hyperloom status` show: one consistent view of
/// the server at `time_ms`.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub time_ms: u64,
    pub workers: Vec<WorkerStatus>,
    pub clients: Vec<ClientStatus>,
    pub plans: Vec<PlanStatus>,
    /// Every task of every plan the server has seen, by state.
    pub tasks: TaskCounts,
    /// Tasks in accepted plans (as sent).
    pub tasks_submitted: u64,
    pub transfers: TransferStatus,
    pub scheduler_rounds: u64,
    /// Tasks sent to workers.
    pub tasks_assigned: u64,
    pub plans_accepted: u64,
    pub plans_rejected: u64,
    /// Total plan ingest (validation and insertion) time, seconds.
    pub ingest_seconds: f64,
    /// Task failures reported by workers (not counting dependants).
    pub task_failures: u64,
    /// The newest failures, oldest first.
    pub failures: Vec<Failure>,
}

impl Snapshot {
    /// The snapshot as JSON (the format of the STATUS response and the dashboard's events).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a snapshot serialises")
    }
}

/// Per-plan accumulation while building a snapshot.
#[derive(Default)]
pub(crate) struct PlanAcc {
    pub(crate) tasks: TaskCounts,
    pub(crate) groups: Vec<(Box<str>, TaskCounts)>,
}

impl PlanAcc {
    /// Adds a live segment's counts.
    pub(crate) fn add(&mut self, counts: &StateCounts, groups: Option<&LabelGroups>) {
        self.tasks.add(counts);
        if let Some(g) = groups {
            for (name, sc) in g.names.iter().zip(&g.counts) {
                let mut gc = TaskCounts::default();
                gc.add(sc);
                match self.groups.iter_mut().find(|(n, _)| n == name) {
                    Some((_, t)) => t.add_counts(&gc),
                    None => self.groups.push((name.clone(), gc)),
                }
            }
        }
    }
}

impl Counters {
    /// Plan statuses: records joined with the live segments' counts (`live`).
    pub(crate) fn plan_statuses(&self, live: &BTreeMap<PlanNo, PlanAcc>) -> Vec<PlanStatus> {
        self.plans
            .iter()
            .map(|(no, r)| {
                let mut tasks = r.retired;
                let mut groups = r.retired_groups.clone();
                if let Some(acc) = live.get(no) {
                    tasks.add_counts(&acc.tasks);
                    for (name, c) in &acc.groups {
                        match groups.iter_mut().find(|(n, _)| n == name) {
                            Some((_, t)) => t.add_counts(c),
                            None => groups.push((name.clone(), *c)),
                        }
                    }
                }
                PlanStatus {
                    id: no.0,
                    client: r.client.index() as u32,
                    client_base: r.client_base,
                    size: r.tasks,
                    state: if r.live_segments > 0 {
                        "running"
                    } else if r.discarded {
                        "discarded"
                    } else {
                        "done"
                    },
                    submitted_ms: r.submitted_ms,
                    ingest_ms: r.ingest_ms,
                    tasks,
                    groups: groups
                        .into_iter()
                        .filter(|(_, c)| c.total() > 0)
                        .map(|(name, tasks)| GroupStatus {
                            name: name.into(),
                            tasks,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Every task ever planned, by state: collected segments plus `live`.
    pub(crate) fn all_tasks(&self, live: &BTreeMap<PlanNo, PlanAcc>) -> TaskCounts {
        let mut t = self.retired_total;
        for acc in live.values() {
            t.add_counts(&acc.tasks);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::super::ids::Idx;
    use super::*;

    #[test]
    fn label_groups_follow_the_report_rule() {
        assert_eq!(group_of(b"render: frame 3"), b"render");
        assert_eq!(group_of(b"plain"), b"plain");
        assert_eq!(group_of(b":x"), b":x");
        let labels: Vec<(u32, &[u8])> = vec![(0, b"a:1"), (1, b"a:2"), (3, b"b")];
        let mut g = LabelGroups::new(4, TaskState::Waiting, &labels);
        assert_eq!(&*g.names[1], "a");
        assert_eq!(g.counts[1].get(TaskState::Waiting), 2);
        assert_eq!(
            g.counts[0].get(TaskState::Waiting),
            1,
            "task 2 has no label"
        );
        g.moved(1, TaskState::Waiting, TaskState::Failed);
        assert_eq!(g.counts[1].get(TaskState::Failed), 1);
    }

    #[test]
    fn done_plans_are_bounded() {
        let mut c = Counters::default();
        for _ in 0..(KEEP_DONE_PLANS + 5) {
            let p = c.plan_accepted(ClientIdx::from_index(0), 0, 1);
            c.segment_added(p);
            c.retire(
                std::iter::once(RetiredSegment {
                    plan: p,
                    counts: StateCounts::all(TaskState::Freed, 1),
                    groups: None,
                }),
                false,
            );
        }
        assert_eq!(c.plans.len(), KEEP_DONE_PLANS);
        assert_eq!(c.retired_total.finished, (KEEP_DONE_PLANS + 5) as u64);
        assert_eq!(
            c.plans.keys().next(),
            Some(&PlanNo(6)),
            "the oldest went first"
        );
    }
}
