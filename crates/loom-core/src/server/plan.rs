//! Plan ingestion: a zero-copy scan of the encoded `Plan`, whole-plan validation, then insertion
//! as one [`Segment`] and backward planning from the result tasks.

use super::graph::{self, Segment};
use super::wire::{Malformed, Rd};
use super::Server;

/// Why a plan was rejected; `task` is (client id, label) of the offending task.
#[derive(Debug)]
pub(crate) struct PlanError {
    pub(crate) task: Option<(i32, String)>,
    pub(crate) cause: String,
}

fn plan_err(cause: impl Into<String>) -> PlanError {
    PlanError {
        task: None,
        cause: cause.into(),
    }
}

struct TaskScan<'a> {
    ttype: Option<i32>,
    config: &'a [u8],
    n_inputs: u32,
    rr: i32,
    result: bool,
    label: Option<&'a [u8]>,
}

/// Scans one `Task`; inputs (client ids) are appended to `sink` when given.
#[inline(always)]
fn scan_task<'a>(b: &'a [u8], mut sink: Option<&mut Vec<i32>>) -> Result<TaskScan<'a>, Malformed> {
    let mut r = Rd::new(b);
    let mut t = TaskScan {
        ttype: None,
        config: &[],
        n_inputs: 0,
        rr: -1,
        result: false,
        label: None,
    };
    while !r.done() {
        let (f, wt) = r.key()?;
        match f {
            1 => t.ttype = Some(r.varint_of(wt)? as i32),
            2 => t.config = r.bytes_of(wt)?,
            3 => {
                if wt == 0 {
                    let v = r.varint()? as i32;
                    t.n_inputs += 1;
                    if let Some(s) = sink.as_deref_mut() {
                        s.push(v);
                    }
                } else if wt == 2 {
                    let mut p = Rd::new(r.bytes()?);
                    while !p.done() {
                        let v = p.varint()? as i32;
                        t.n_inputs += 1;
                        if let Some(s) = sink.as_deref_mut() {
                            s.push(v);
                        }
                    }
                } else {
                    return Err(Malformed);
                }
            }
            5 => t.rr = r.varint_of(wt)? as i32,
            6 => t.result = r.varint_of(wt)? != 0,
            12 => t.label = Some(r.bytes_of(wt)?),
            _ => r.skip(wt)?,
        }
    }
    Ok(t)
}

/// Scans a `ResourceRequest`: Ok(cpus) or the cause of rejection.
fn scan_request(b: &[u8], cpus_sym: i32) -> Result<Result<u16, String>, Malformed> {
    let mut r = Rd::new(b);
    let mut found: Vec<(i32, i64)> = Vec::new();
    while !r.done() {
        let (f, wt) = r.key()?;
        if f == 1 {
            let mut m = Rd::new(r.bytes_of(wt)?);
            let (mut ty, mut val) = (-1i32, 0i64);
            while !m.done() {
                let (f, wt) = m.key()?;
                match f {
                    1 => ty = m.varint_of(wt)? as i32,
                    2 => val = m.varint_of(wt)? as i32 as i64,
                    _ => m.skip(wt)?,
                }
            }
            found.push((ty, val));
        } else {
            r.skip(wt)?;
        }
    }
    Ok(match found.as_slice() {
        [(ty, v)] if *ty == cpus_sym => {
            if *v < 0 || *v > u16::MAX as i64 {
                Err(format!("invalid cpus request {v}"))
            } else {
                Ok(*v as u16)
            }
        }
        [(ty, _)] => Err(format!("unknown resource type {ty}")),
        _ => Err(format!(
            "a resource request must name exactly one resource (it names {})",
            found.len()
        )),
    })
}

impl Server {
    /// Validates and inserts a plan of client `ci`. On error nothing is changed.
    pub(crate) fn ingest_plan(&mut self, ci: u32, plan: &[u8]) -> Result<(), PlanError> {
        let malformed = |_| plan_err("malformed plan message");
        // Pass 1: task count, id_base and the resource requests (task bodies are skipped).
        let mut requests: Vec<Result<u16, String>> = Vec::new();
        let mut id_base: Option<i64> = None;
        let mut n = 0usize;
        let mut r = Rd::new(plan);
        while !r.done() {
            let (f, wt) = r.key().map_err(malformed)?;
            match f {
                1 => requests.push(
                    scan_request(r.bytes_of(wt).map_err(malformed)?, self.sym.cpus)
                        .map_err(malformed)?,
                ),
                2 => {
                    r.bytes_of(wt).map_err(malformed)?;
                    n += 1;
                }
                4 => id_base = Some(r.varint_of(wt).map_err(malformed)? as i32 as i64),
                _ => r.skip(wt).map_err(malformed)?,
            }
        }
        let base = id_base.ok_or_else(|| plan_err("id_base is missing"))?;
        let client = &self.clients[ci as usize];
        if base < client.next_base {
            return Err(plan_err(format!(
                "id_base {base} overlaps an earlier plan (next free id is {})",
                client.next_base
            )));
        }
        if base + n as i64 > i32::MAX as i64 || plan.len() > u32::MAX as usize {
            return Err(plan_err("plan too large"));
        }
        let ibase = self.next_id as i64;
        if ibase + n as i64 > i32::MAX as i64 {
            return Err(plan_err("internal task id space exhausted"));
        }
        let base = base as i32;
        let ibase = ibase as i32;
        let max_cpus = self
            .workers
            .iter()
            .filter(|w| w.alive)
            .map(|w| w.cpus)
            .max();

        // Pass 2: fill the arrays, check each task and resolve its inputs to internal ids.
        let mut ttype = Vec::with_capacity(n);
        let mut cfg_off = Vec::with_capacity(n + 1);
        let mut arena = Vec::with_capacity(n);
        let mut in_off = Vec::with_capacity(n + 1);
        let mut inputs: Vec<i32> = Vec::with_capacity(n + n / 2);
        let mut flags = vec![0u8; n];
        let mut cpus = vec![0u16; n];
        let mut labels: Vec<(u32, &[u8])> = Vec::new();
        cfg_off.push(0u32);
        in_off.push(0u32);
        let mut forward = false;
        let mut r = Rd::new(plan);
        let mut i = 0usize;
        while !r.done() {
            let (f, wt) = r.key().map_err(malformed)?;
            if f != 2 {
                r.skip(wt).map_err(malformed)?;
                continue;
            }
            let first_input = inputs.len();
            let t = scan_task(r.bytes_of(wt).map_err(malformed)?, Some(&mut inputs))
                .map_err(malformed)?;
            let err = |cause: String| PlanError {
                task: Some((
                    base + i as i32,
                    t.label
                        .map(|l| String::from_utf8_lossy(l).into_owned())
                        .unwrap_or_default(),
                )),
                cause,
            };
            arena.extend_from_slice(t.config);
            cfg_off.push(arena.len() as u32);
            in_off.push(inputs.len() as u32);
            if let Some(l) = t.label {
                labels.push((i as u32, l));
            }
            if t.result {
                flags[i] = graph::RESULT;
            }
            let ty = t.ttype.unwrap_or(-1);
            ttype.push(ty);
            if ty < 0 || !self.known_type.get(ty as usize).copied().unwrap_or(false) {
                return Err(err(format!("unknown task type {ty}")));
            }
            if t.rr != -1 {
                match requests.get(t.rr as usize) {
                    _ if t.rr < 0 => {
                        return Err(err(format!("invalid resource request index {}", t.rr)))
                    }
                    None => return Err(err(format!("invalid resource request index {}", t.rr))),
                    Some(Err(cause)) => return Err(err(cause.clone())),
                    Some(Ok(c)) => {
                        cpus[i] = *c;
                        if let Some(m) = max_cpus {
                            if *c as u32 > m {
                                return Err(err(format!(
                                    "no worker can satisfy cpus({c}): no worker has more than {m}"
                                )));
                            }
                        }
                    }
                }
            }
            let own = base + i as i32;
            for input in &mut inputs[first_input..] {
                let cid = *input;
                let d = cid.wrapping_sub(base) as u32;
                if (d as usize) < n {
                    if cid == own {
                        return Err(err("task depends on itself".into()));
                    }
                    forward |= cid > own;
                    *input = ibase + d as i32;
                    continue;
                }
                let Some(x) = self.resolve_client_id(ci, cid) else {
                    return Err(err(format!("unknown input id {cid}")));
                };
                let (si, off) = self.locate(x).expect("resolved id has a segment");
                let s = &self.segs[si];
                let cause = match s.state[off] {
                    graph::UNPLANNED => Some(format!(
                        "input id {cid} was never computed (not reachable from a result)"
                    )),
                    graph::FREED => Some(format!("input id {cid} was released")),
                    graph::FAILED => Some(format!("input id {cid} failed")),
                    _ if s.ttype[off] == self.sym.dslice || s.ttype[off] == self.sym.dget => Some(
                        format!("input id {cid} is a dslice/dget task of an earlier plan"),
                    ),
                    _ => None,
                };
                if let Some(cause) = cause {
                    return Err(err(cause));
                }
                *input = x;
            }
            i += 1;
        }
        if inputs.capacity() > inputs.len() + inputs.len() / 4 + 16 {
            inputs.shrink_to_fit();
        }
        arena.shrink_to_fit();
        let label_of = |off: usize| -> String {
            labels
                .binary_search_by_key(&(off as u32), |l| l.0)
                .map(|k| String::from_utf8_lossy(labels[k].1).into_owned())
                .unwrap_or_default()
        };
        let task_err = |off: usize, cause: String| PlanError {
            task: Some((base + off as i32, label_of(off))),
            cause,
        };

        let mut seg = Segment {
            base: ibase,
            n: n as u32,
            client: ci,
            cbase: Some(base),
            ttype,
            cfg_off,
            arena,
            in_off,
            inputs,
            cons_off: Vec::new(),
            cons: Vec::new(),
            state: vec![graph::UNPLANNED; n],
            flags,
            cpus,
            waiting: vec![0; n],
            refc: vec![0; n],
            wk: vec![super::NO_WORKER; n],
            size: vec![0; n],
            live: 0,
        };
        seg.build_consumers();

        // dslice/dget shape: one input, not a result, exactly one consumer in this plan (not itself
        // a dslice/dget).
        for t in 0..n {
            let ty = seg.ttype[t];
            if ty != self.sym.dslice && ty != self.sym.dget {
                continue;
            }
            let (a, b) = seg.cons_range(t);
            if seg.inputs(t).len() != 1 {
                return Err(task_err(t, "dslice/dget needs exactly one input".into()));
            }
            if seg.flags[t] & graph::RESULT != 0 {
                return Err(task_err(t, "dslice/dget cannot be a result".into()));
            }
            if b - a != 1 {
                return Err(task_err(t, "dslice/dget needs exactly one consumer".into()));
            }
            let c = (seg.cons[a] - ibase) as usize;
            if seg.ttype[c] == self.sym.dslice || seg.ttype[c] == self.sym.dget {
                return Err(task_err(t, "dslice/dget consumed by a dslice/dget".into()));
            }
        }

        // Cycles (only possible with forward references): Kahn's algorithm over in-plan edges.
        if forward {
            let mut indeg = vec![0u32; n];
            for t in 0..n {
                indeg[t] = seg
                    .inputs(t)
                    .iter()
                    .filter(|&&x| (x.wrapping_sub(ibase) as u32) < n as u32)
                    .count() as u32;
            }
            let mut stack: Vec<u32> = (0..n as u32).filter(|&t| indeg[t as usize] == 0).collect();
            let mut seen = 0usize;
            while let Some(t) = stack.pop() {
                seen += 1;
                let (a, b) = seg.cons_range(t as usize);
                for k in a..b {
                    let c = (seg.cons[k] - ibase) as usize;
                    indeg[c] -= 1;
                    if indeg[c] == 0 {
                        stack.push(c as u32);
                    }
                }
            }
            if seen < n {
                let t = (0..n).find(|&t| indeg[t] > 0).expect("a task on a cycle");
                return Err(task_err(t, "dependency cycle".into()));
            }
        }

        // ---- Accepted: commit. ----
        self.next_id = ibase + n as i32;
        let client = &mut self.clients[ci as usize];
        client.next_base = base as i64 + n as i64;
        client.ranges.push((base, n as u32, ibase));
        for (off, l) in labels {
            self.labels.insert(
                ibase + off as i32,
                String::from_utf8_lossy(l).into_owned().into_boxed_str(),
            );
        }

        // Backward planning from the results.
        let mut stack: Vec<u32> = Vec::new();
        for t in 0..n {
            if seg.flags[t] & graph::RESULT != 0 {
                seg.state[t] = graph::WAITING;
                stack.push(t as u32);
            }
        }
        let mut ext: Vec<(i32, i32)> = Vec::new(); // (earlier input, consumer) edges
        while let Some(t) = stack.pop() {
            let t = t as usize;
            seg.live += 1;
            let (a, b) = seg.input_range(t);
            for k in a..b {
                let x = seg.inputs[k];
                let d = x.wrapping_sub(ibase) as u32;
                if (d as usize) < n {
                    seg.refc[d as usize] += 1;
                    seg.waiting[t] += 1;
                    if seg.state[d as usize] == graph::UNPLANNED {
                        seg.state[d as usize] = graph::WAITING;
                        stack.push(d);
                    }
                } else {
                    ext.push((x, ibase + t as i32));
                }
            }
        }
        for &(x, c) in &ext {
            let (si, off) = self.locate(x).expect("validated input");
            let s = &mut self.segs[si];
            s.refc[off] += 1;
            if s.state[off] != graph::FINISHED {
                seg.waiting[(c - ibase) as usize] += 1;
            }
            // Recorded even for finished inputs: if the input is lost with a worker and
            // recomputed, its consumers must wait for it again.
            self.extra_cons.entry(x).or_default().push(c);
        }
        if seg.live == 0 {
            self.segs_dirty = true;
        }
        // Reserve the ready queue once (rather than growing it by doubling).
        let ready_light = (0..n)
            .filter(|&t| seg.state[t] == graph::WAITING && seg.waiting[t] == 0 && seg.cpus[t] == 0)
            .count();
        self.light_q.reserve(ready_light);
        let si = self.segs.len();
        self.segs.push(seg);
        self.trace_segment(si);
        for t in 0..n {
            let s = &self.segs[si];
            if s.state[t] == graph::WAITING && s.waiting[t] == 0 {
                self.make_ready(si, t);
            }
        }
        Ok(())
    }
}
