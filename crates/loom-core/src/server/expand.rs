//! dslice/dget expansion: when the input X of a dslice/dget task D is finished (its length N
//! known), D is replaced by pieces of X, each feeding a copy of D's single consumer T; T then
//! runs `array/make` over the copies, so T's id names the array of their results.

use super::ids::{ClientIdx, SegIdx, Slot, TaskId};
use super::segment::{Segment, Task, TaskFlags, TaskState};
use super::{LogLevel, Server};

/// The consumer T of an expanded task, as it was planned.
struct Consumer {
    id: TaskId,
    ttype: i32,
    config: Vec<u8>,
    inputs: Vec<TaskId>,
    cpus: u16,
}

impl Server {
    /// Expands dslice/dget task `s`: dslice makes slices of `round(N / (total_cpus * 4))` (at
    /// least 1) elements, dget one get per element.
    pub(super) fn expand(&mut self, s: Slot) {
        let seg = self.graph.seg(s);
        let d_id = seg.id(s.off);
        let is_slice = seg.tasks[s.off].ttype == self.sym.dslice;
        let x = seg.inputs(s.off)[0];
        let t_id = seg.consumers(s.off)[0];
        let client = seg.client;
        let plan = seg.plan;
        let n_len = self.graph.lengths.get(&x).copied().unwrap_or(0);
        // D itself never runs.
        self.graph.retire(s, TaskState::Freed);
        let Some(ts) = self.graph.locate(t_id) else {
            return self.dec_ref(s.seg, x);
        };
        if self.graph.state(ts) != TaskState::Waiting {
            return self.dec_ref(s.seg, x);
        }
        let pieces = if is_slice {
            slices(n_len, self.workers.total_cpus().max(1))
        } else {
            (0..n_len).map(|i| i.to_le_bytes().to_vec()).collect()
        };
        let k = pieces.len();
        let tseg = self.graph.seg(ts);
        let t = Consumer {
            id: t_id,
            ttype: tseg.tasks[ts.off].ttype,
            config: tseg.config(ts.off).to_vec(),
            inputs: tseg.inputs(ts.off).to_vec(),
            cpus: tseg.tasks[ts.off].cpus,
        };
        let Some(base) = self.graph.alloc_ids(2 * k) else {
            self.log(LogLevel::Error, "internal id space exhausted".into());
            return;
        };
        let piece_type = if is_slice {
            self.sym.slice
        } else {
            self.sym.get
        };
        let mut new_seg = pieces_segment(base, client, piece_type, &pieces, x, d_id, &t);
        new_seg.plan = plan;
        self.counters.segment_added(plan);
        let copies: Vec<TaskId> = (0..k).map(|i| base.plus(2 * i + 1)).collect();
        let new_si = self.link_expansion(new_seg, x, d_id, &t, &copies);
        // T becomes array/make over the copies.
        let tseg = self.graph.seg_mut(ts);
        tseg.tasks[ts.off].flags.insert(TaskFlags::OVERRIDE);
        tseg.tasks[ts.off].cpus = 0;
        tseg.tasks[ts.off].waiting = k as u32;
        if let Some(tr) = self
            .trace
            .as_mut()
            .filter(|_| self.trace_client == Some(client))
        {
            let label = self.graph.labels.get(&t_id).map(|l| l.as_bytes());
            tr.task(
                t_id.get(),
                self.sym.array_make,
                copies.iter().map(|c| c.get()),
                label,
            );
        }
        self.graph.overrides.insert(t_id, copies);
        for &y in &t.inputs {
            if y != d_id {
                self.dec_ref(ts.seg, y);
            }
        }
        self.dec_ref(s.seg, x);
        for i in 0..k {
            if self.graph.segs[new_si].tasks[2 * i].waiting == 0 {
                self.make_ready(Slot {
                    seg: new_si,
                    off: 2 * i,
                });
            }
        }
        if k == 0 {
            self.make_ready(ts);
        }
    }

    /// Adds the expansion segment: references from the copies to T's other inputs and from the
    /// pieces to X, and the cross-segment consumer records (a lost X or input must re-wait
    /// them).
    fn link_expansion(
        &mut self,
        mut s: Segment,
        x: TaskId,
        d_id: TaskId,
        t: &Consumer,
        copies: &[TaskId],
    ) -> SegIdx {
        let k = copies.len();
        let mut extra_waiting = 0u32;
        for &y in &t.inputs {
            if y == d_id {
                continue;
            }
            if let Some(ys) = self.graph.locate(y) {
                let yseg = self.graph.seg_mut(ys);
                yseg.tasks[ys.off].refc += k as u32;
                if yseg.tasks[ys.off].state != TaskState::Finished {
                    extra_waiting += 1;
                }
                self.graph
                    .extra_cons
                    .entry(y)
                    .or_default()
                    .extend_from_slice(copies);
            }
        }
        for i in 0..k {
            s.tasks[2 * i + 1].waiting += extra_waiting;
        }
        if let Some(xs) = self.graph.locate(x) {
            self.graph.seg_mut(xs).tasks[xs.off].refc += k as u32;
        }
        let piece_ids = (0..k).map(|i| s.base.plus(2 * i));
        self.graph
            .extra_cons
            .entry(x)
            .or_default()
            .extend(piece_ids);
        for &c in copies {
            self.graph.extra_cons.insert(c, vec![t.id]);
        }
        let si = self.graph.push(s);
        self.trace_segment(si);
        si
    }
}

/// Configs of the slices of an object of `n_len` elements: `round(n_len / (total_cpus * 4))`
/// (at least 1) elements each, as `[start u64le, end u64le]`.
fn slices(n_len: u64, total_cpus: u64) -> Vec<Vec<u8>> {
    let div = total_cpus * 4;
    let step = ((n_len + div / 2) / div).max(1);
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < n_len {
        let e = (i + step).min(n_len);
        let mut cfg = i.to_le_bytes().to_vec();
        cfg.extend_from_slice(&e.to_le_bytes());
        pieces.push(cfg);
        i = e;
    }
    pieces
}

/// The expansion segment: for each piece `i`, task `2i` (slice/get of X) and task `2i+1`
/// (a copy of T reading piece `2i` where T read D).
fn pieces_segment(
    base: TaskId,
    client: ClientIdx,
    piece_type: i32,
    pieces: &[Vec<u8>],
    x: TaskId,
    d_id: TaskId,
    t: &Consumer,
) -> Segment {
    let k = pieces.len();
    let mut s = Segment::with_columns(base, 2 * k, client, None, TaskState::Waiting);
    s.live = 2 * k as u32;
    s.cfg_off.push(0);
    s.in_off.push(0);
    for (i, cfg) in pieces.iter().enumerate() {
        let pid = base.plus(2 * i);
        s.tasks.push(Task::new(TaskState::Waiting, piece_type));
        s.arena.extend_from_slice(cfg);
        s.cfg_off.push(s.arena.len() as u32);
        s.inputs.push(x);
        s.in_off.push(s.inputs.len() as u32);
        s.tasks.push(Task {
            cpus: t.cpus,
            ..Task::new(TaskState::Waiting, t.ttype)
        });
        s.arena.extend_from_slice(&t.config);
        s.cfg_off.push(s.arena.len() as u32);
        for &y in &t.inputs {
            s.inputs.push(if y == d_id { pid } else { y });
        }
        s.in_off.push(s.inputs.len() as u32);
    }
    s.build_consumers();
    let reads_d = t.inputs.iter().filter(|&&y| y == d_id).count() as u32;
    for i in 0..k {
        s.tasks[2 * i].refc = reads_d;
        s.tasks[2 * i + 1].refc = 1;
        s.tasks[2 * i + 1].waiting = reads_d;
    }
    s
}
