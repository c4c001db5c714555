//! CPU occupancy from `/proc` (Linux; elsewhere nothing is sampled).

use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on every Linux platform we run on).
const HZ: f64 = 100.0;

/// Samples this process's CPU time (children included) and the machine's busy share.
#[derive(Debug)]
pub struct CpuSampler {
    last: Option<(Instant, u64, (u64, u64))>,
}

impl Default for CpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSampler {
    /// A sampler; the first [`CpuSampler::sample`] only sets the baseline.
    pub fn new() -> CpuSampler {
        let mut s = CpuSampler { last: None };
        s.read_now();
        s
    }

    fn read_now(&mut self) -> Option<(f64, f64, Duration)> {
        let now = Instant::now();
        let proc_ticks = read_proc_self()?;
        let sys = read_proc_stat().unwrap_or((0, 0));
        let prev = self.last.replace((now, proc_ticks, sys));
        let (t0, p0, (busy0, total0)) = prev?;
        let dt = now.saturating_duration_since(t0);
        let secs = dt.as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let proc_pct = (proc_ticks.saturating_sub(p0)) as f64 / HZ / secs * 100.0;
        let dtotal = sys.1.saturating_sub(total0);
        let sys_pct = if dtotal == 0 {
            0.0
        } else {
            sys.0.saturating_sub(busy0) as f64 / dtotal as f64 * 100.0
        };
        Some((proc_pct, sys_pct, dt))
    }

    /// (process %, of one core; machine busy %, of all cores) since the previous sample, if at
    /// least `min_gap` passed (else None and the baseline is kept).
    pub fn sample(&mut self, min_gap: Duration) -> Option<(u32, u32)> {
        if let Some((t0, _, _)) = self.last {
            if t0.elapsed() < min_gap {
                return None;
            }
        }
        let (p, s, _) = self.read_now()?;
        Some((p.round() as u32, s.round().min(100.0) as u32))
    }
}

/// utime + stime + cutime + cstime of this process, in ticks.
fn read_proc_self() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14 -> index 11.
    let mut sum = 0u64;
    for k in 11..15 {
        sum += f.get(k)?.parse::<i64>().ok()?.max(0) as u64;
    }
    Some(sum)
}

/// (busy, total) ticks of all CPUs from the first line of `/proc/stat`.
fn read_proc_stat() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    // idle + iowait
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}
