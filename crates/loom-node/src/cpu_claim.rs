//! The CPUs a pinning worker runs its programs on: its CPU slot `i` is CPU `cpus[i]`.
//!
//! Workers of one machine must not all put their programs on CPUs 0, 1, … (each numbers its
//! slots from 0). A worker takes its CPUs from those it may run on (`sched_getaffinity`: a
//! Slurm step's, a container's or `taskset`'s CPUs), or from the user's `--cpu-list`, and
//! claims each one machine-wide, so that the next pinning worker takes other CPUs. A claim is a
//! Unix socket bound to a name in the abstract namespace, `hyperloom-cpu/<cpu>/<k>`: binding is
//! atomic (two workers starting at once never take the same name), the kernel frees it when the
//! worker's process ends however it ends (no file to clean up after a SIGKILL), and no
//! permissions are involved. `k` counts the workers sharing that CPU: a worker takes the CPUs
//! with the fewest holders (all `k = 0` first, then `k = 1`, …), so workers share a CPU only
//! when every CPU they may use is taken, and then evenly. Names are per network namespace: two
//! containers with their own network do not see each other's claims (each usually has its own
//! CPUs too).

use napi_derive::napi;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// The CPUs of a pinning worker (see the module's note).
#[napi(object)]
pub struct PinnedCpus {
    /// Slot `i` runs its programs on `cpus[i]`. Fewer than the slots asked for when the worker
    /// may run on fewer CPUs: a program on a slot past the end fails, naming the slot.
    pub cpus: Vec<u32>,
    /// Those of `cpus` another pinning worker of this machine holds too (every CPU it may use
    /// was taken).
    pub shared: Vec<u32>,
    /// The claim, for [`release_cpus`] when the worker stops (else it lasts as long as the
    /// process).
    pub claim: u32,
}

/// The claims of this process, by number (each held until released or the process exits).
static HELD: Mutex<Vec<(u32, Vec<OwnedFd>)>> = Mutex::new(Vec::new());

/// Lets go of the CPUs of claim `claim` (from [`claim_cpus`]): the worker stopped, other
/// pinning workers of this machine may take them.
#[napi]
pub fn release_cpus(claim: u32) {
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(c, _)| *c != claim);
}

/// How many workers may share one CPU before a worker stops looking (it then takes the CPUs in
/// order without a claim).
const MOST_HOLDERS: u32 = 64;

/// Claims CPUs for `slots` CPU slots: from `list` (the user's `--cpu-list`: its first `slots`, in
/// its order) or,
/// without it, from the CPUs this process may run on, the ones the fewest other pinning workers
/// of this machine hold first (ascending within each count). The claims last until
/// [`release_cpus`] or the end of this process. Without a CPU set to read (not Linux), slot `i` is CPU `i`.
#[napi]
pub fn claim_cpus(slots: u32, list: Option<Vec<u32>>) -> PinnedCpus {
    match list {
        Some(l) => take(&l, slots as usize, true),
        None => match allowed() {
            Some(a) => take(&a, slots as usize, false),
            None => PinnedCpus {
                cpus: (0..slots).collect(),
                shared: Vec::new(),
                claim: 0,
            },
        },
    }
}

/// Claims up to `slots` of `candidates`: `explicit`, the first ones in their order, each with the
/// fewest holders it has; else the ones with the fewest holders first, in ascending order.
fn take(candidates: &[u32], slots: usize, explicit: bool) -> PinnedCpus {
    let wanted = candidates.len().min(slots);
    // (cpu, holders before us), in the order taken.
    let mut taken: Vec<(u32, u32)> = Vec::with_capacity(wanted);
    let mut held = Vec::new();
    if explicit {
        for &cpu in &candidates[..wanted] {
            let k = (0..MOST_HOLDERS)
                .find(|&k| claim(cpu, k).map(|fd| held.push(fd)).is_some())
                .unwrap_or(MOST_HOLDERS);
            taken.push((cpu, k));
        }
    } else {
        'rounds: for k in 0..MOST_HOLDERS {
            for &cpu in candidates {
                if taken.len() == wanted {
                    break 'rounds;
                }
                if taken.iter().any(|&(c, _)| c == cpu) {
                    continue;
                }
                if let Some(fd) = claim(cpu, k) {
                    held.push(fd);
                    taken.push((cpu, k));
                }
            }
        }
        for &cpu in candidates {
            if taken.len() < wanted && !taken.iter().any(|&(c, _)| c == cpu) {
                taken.push((cpu, MOST_HOLDERS));
            }
        }
        // Slots follow the CPUs' order: a 2-slot worker on CPUs 2-3 has slot 0 on CPU 2.
        taken.sort_unstable_by_key(|&(c, _)| c);
    }
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let claim = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((claim, held));
    PinnedCpus {
        claim,
        cpus: taken.iter().map(|&(c, _)| c).collect(),
        shared: taken
            .iter()
            .filter(|&&(_, k)| k > 0)
            .map(|&(c, _)| c)
            .collect(),
    }
}

/// The CPUs this process may run on, ascending: its main thread's (a runner thread is bound to
/// its program's CPUs, `spawn::bind_thread`).
#[cfg(target_os = "linux")]
pub(crate) fn allowed() -> Option<Vec<u32>> {
    // SAFETY: sched_getaffinity writes at most the size of the set we own.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(libc::getpid(), size, &mut set) != 0 {
            return None;
        }
        set
    };
    Some(
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: CPU_ISSET reads a bit of the set, in range.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .map(|c| c as u32)
            .collect(),
    )
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn allowed() -> Option<Vec<u32>> {
    None
}

/// Binds the abstract name of holder `k` of `cpu`; `None` when another process holds it (or
/// the socket cannot be made: the CPU is then taken unclaimed).
#[cfg(target_os = "linux")]
fn claim(cpu: u32, k: u32) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    let name = format!("hyperloom-cpu/{cpu}/{k}");
    // SAFETY: a socket of our own (close-on-exec: a program must not keep the claim), and a
    // sockaddr_un we fill within its size.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        // sun_path[0] stays 0: the abstract namespace.
        for (i, b) in name.bytes().enumerate() {
            addr.sun_path[i + 1] = b as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
        let r = libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len as libc::socklen_t,
        );
        (r == 0).then_some(fd)
    }
}

#[cfg(not(target_os = "linux"))]
fn claim(_cpu: u32, _k: u32) -> Option<OwnedFd> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_name_is_refused_until_its_holder_lets_go() {
        // A CPU number no machine has, so no worker running here interferes.
        let cpu = 1_000_000 + std::process::id();
        let first = claim(cpu, 0).expect("a free name");
        assert!(claim(cpu, 0).is_none(), "held");
        let second = claim(cpu, 1).expect("the next holder");
        drop(first);
        assert!(claim(cpu, 0).is_some(), "free again once dropped");
        drop(second);
    }

    #[test]
    fn workers_take_cpus_nobody_holds_then_share_evenly() {
        // CPU numbers no machine has, so no worker running here interferes.
        let base = 2_000_000 + std::process::id() * 4;
        let cpus = [base, base + 1];
        let one = |_| take(&cpus, 1, false);
        let (a, b, c, d) = (one(0), one(1), one(2), one(3));
        assert_eq!((a.cpus[0], b.cpus[0]), (base, base + 1), "free ones first");
        assert!(a.shared.is_empty() && b.shared.is_empty());
        assert_eq!(
            (c.cpus[0], d.cpus[0]),
            (base, base + 1),
            "then shared evenly"
        );
        assert_eq!(
            (&c.shared[..], &d.shared[..]),
            (&[base][..], &[base + 1][..])
        );
        // More slots than CPUs: as many as there are, in ascending order.
        let e = take(&[base + 3, base + 2], 3, false);
        assert_eq!(e.cpus, [base + 2, base + 3]);
        // The user's list: in its order, each claimed with the fewest holders it has.
        let f = take(&[base + 3, base], 2, true);
        assert_eq!(f.cpus, [base + 3, base]);
        assert_eq!(f.shared, [base + 3, base]);
        // Released claims are free for the next worker.
        for w in [&a, &c, &e, &f] {
            release_cpus(w.claim);
        }
        let g = take(&[base, base + 3], 2, false);
        assert_eq!(g.cpus, [base, base + 3]);
        assert!(g.shared.is_empty(), "{:?}", g.shared);
    }
}
