//! Task storage: one [`Segment`] per plan (or per dslice/dget expansion), struct-of-arrays,
//! indexed by `internal id - base`. Segments are sorted by base (ids only grow), so an internal
//! id is located by binary search over the bases.

use super::Server;

/// Stored but not reachable from any result: never computed.
pub(crate) const UNPLANNED: u8 = 0;
/// Planned, some inputs not finished.
pub(crate) const WAITING: u8 = 1;
/// All inputs finished; in a ready queue (or parked).
pub(crate) const READY: u8 = 2;
/// Sent to a worker (assigned or running there).
pub(crate) const RUNNING: u8 = 3;
/// The result exists on at least one worker.
pub(crate) const FINISHED: u8 = 4;
/// Done and its data removed (or never needed).
pub(crate) const FREED: u8 = 5;
/// Failed (itself or an input).
pub(crate) const FAILED: u8 = 6;

/// The client holds the result (result task, not released).
pub(crate) const RESULT: u8 = 1;
/// Inputs replaced by a dslice/dget expansion (see `Server::overrides`).
pub(crate) const OVERRIDE: u8 = 2;
/// TASK_FINISHED was already sent for this result (a recomputation must not repeat it).
pub(crate) const NOTIFIED: u8 = 4;
/// Sent to its worker before its inputs finished (pipelining): the worker starts it when the
/// inputs it computes itself are published.
pub(crate) const EARLY: u8 = 8;

/// The tasks of one plan: internal ids `base..base+n`.
pub(crate) struct Segment {
    pub(crate) base: i32,
    pub(crate) n: u32,
    /// Owning client index.
    pub(crate) client: u32,
    /// Client id of the first task (None for tasks created by an expansion).
    pub(crate) cbase: Option<i32>,
    pub(crate) ttype: Vec<i32>,
    /// Config of task i: `arena[cfg_off[i]..cfg_off[i+1]]`.
    pub(crate) cfg_off: Vec<u32>,
    pub(crate) arena: Vec<u8>,
    /// Inputs (internal ids) of task i: `inputs[in_off[i]..in_off[i+1]]`.
    pub(crate) in_off: Vec<u32>,
    pub(crate) inputs: Vec<i32>,
    /// Consumers inside this segment (one entry per input edge).
    pub(crate) cons_off: Vec<u32>,
    pub(crate) cons: Vec<i32>,
    pub(crate) state: Vec<u8>,
    pub(crate) flags: Vec<u8>,
    pub(crate) cpus: Vec<u16>,
    /// Unfinished input edges (planned tasks only).
    pub(crate) waiting: Vec<u32>,
    /// Unfinished planned consumer edges.
    pub(crate) refc: Vec<u32>,
    /// Running: the worker it runs on. Finished: its primary owner.
    pub(crate) wk: Vec<u16>,
    /// Result size (for locality).
    pub(crate) size: Vec<u64>,
    /// Tasks in WAITING..=FINISHED; the segment is dropped when it reaches 0.
    pub(crate) live: u32,
}

impl Segment {
    #[inline]
    pub(crate) fn config(&self, off: usize) -> &[u8] {
        &self.arena[self.cfg_off[off] as usize..self.cfg_off[off + 1] as usize]
    }

    #[inline]
    pub(crate) fn inputs(&self, off: usize) -> &[i32] {
        &self.inputs[self.in_off[off] as usize..self.in_off[off + 1] as usize]
    }

    #[inline]
    pub(crate) fn input_range(&self, off: usize) -> (usize, usize) {
        (self.in_off[off] as usize, self.in_off[off + 1] as usize)
    }

    #[inline]
    pub(crate) fn cons_range(&self, off: usize) -> (usize, usize) {
        (self.cons_off[off] as usize, self.cons_off[off + 1] as usize)
    }

    /// Builds the consumer CSR from the inputs (edges whose input lies in this segment).
    pub(crate) fn build_consumers(&mut self) {
        let n = self.n as usize;
        let mut cnt = vec![0u32; n + 1];
        let base = self.base;
        for &x in &self.inputs {
            let d = x.wrapping_sub(base) as u32;
            if d < self.n {
                cnt[d as usize + 1] += 1;
            }
        }
        for i in 0..n {
            cnt[i + 1] += cnt[i];
        }
        let mut cons = vec![0i32; cnt[n] as usize];
        let mut fill = cnt.clone();
        for i in 0..n {
            let (a, b) = self.input_range(i);
            for k in a..b {
                let d = self.inputs[k].wrapping_sub(base) as u32;
                if d < self.n {
                    let slot = &mut fill[d as usize];
                    cons[*slot as usize] = base + i as i32;
                    *slot += 1;
                }
            }
        }
        self.cons_off = cnt;
        self.cons = cons;
    }

    /// The client id of task `off`, or -1 for expansion tasks.
    #[inline]
    pub(crate) fn client_id(&self, off: usize) -> i32 {
        match self.cbase {
            Some(b) => b + off as i32,
            None => -1,
        }
    }
}

impl Server {
    /// (segment index, offset) of internal id `id`, if its segment is live.
    #[inline]
    pub(crate) fn locate(&self, id: i32) -> Option<(usize, usize)> {
        let segs = &self.segs;
        // Fast path: the newest segment.
        if let Some(last) = segs.last() {
            let d = id.wrapping_sub(last.base) as u32;
            if d < last.n {
                return Some((segs.len() - 1, d as usize));
            }
        }
        let k = segs.partition_point(|s| s.base <= id);
        if k == 0 {
            return None;
        }
        let s = &segs[k - 1];
        let d = id.wrapping_sub(s.base) as u32;
        (d < s.n).then_some((k - 1, d as usize))
    }

    /// Like [`Server::locate`], trying segment `hint` first.
    #[inline]
    pub(crate) fn locate_hint(&self, id: i32, hint: usize) -> Option<(usize, usize)> {
        let s = &self.segs[hint];
        let d = id.wrapping_sub(s.base) as u32;
        if d < s.n {
            return Some((hint, d as usize));
        }
        self.locate(id)
    }

    /// The inputs of a task, taking dslice/dget overrides into account.
    pub(crate) fn task_inputs(&self, si: usize, off: usize) -> &[i32] {
        let seg = &self.segs[si];
        if seg.flags[off] & OVERRIDE != 0 {
            let id = seg.base + off as i32;
            return self.overrides.get(&id).map(Vec::as_slice).unwrap_or(&[]);
        }
        seg.inputs(off)
    }

    /// The label of a task, or "" if it has none.
    pub(crate) fn label_of(&self, id: i32) -> &str {
        self.labels.get(&id).map(|s| &**s).unwrap_or("")
    }
}
