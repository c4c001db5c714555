//! Tracing: compact, append-only trace files written by the server and by every worker while a
//! client has asked for it (`client.setTrace(dir)` → `TRACE{dir}` → `UPDATE{dir, worker_id}`).
//! `hyperloom report DIR` turns them into an HTML report.
//!
//! # Files
//! - `<dir>/server.trace`: the plan (one record per task), scheduling decisions, completions,
//!   scheduler time, workers.
//! - `<dir>/worker-<id>.trace` (`id` = the server's worker index): task execution, transfers,
//!   CPU occupancy.
//!
//! # Format (version 1)
//! ASCII text, one record per line, fields separated by one space, integers in decimal. The first
//! line is a header; every other line starts with a one-letter tag and, for events, the time `t`
//! in **microseconds since the file's epoch** (the header's wall-clock time, unix µs; the times
//! themselves come from a monotonic clock). A reader ignores tags it does not know, and a last
//! line without its `\n` (a process that died mid-write) is incomplete and must be dropped.
//! Strings that may contain spaces (labels) are the last field and run to the end of the line,
//! with `\` → `\\`, newline → `\n`, carriage return → `\r`. Task ids are the server's internal
//! ids (identical in every file of a run).
//!
//! `server.trace`:
//! | record | meaning |
//! |---|---|
//! | `HYPERLOOM-TRACE 1 server <epoch_us>` | header |
//! | `Y <symbol id> <name>` | a symbol (task type) name; all at open, new ones as workers register |
//! | `W <t> <worker> <ip:port> <cpus>` | a worker (connected at open, or registering later) |
//! | `C <t> <worker>` | worker lost |
//! | `P <t> <client> <first id> <n>` | a plan (or a dslice/dget expansion) of `n` tasks was accepted |
//! | `T <id> <type> <inputs> [<label>]` | a planned task of the preceding `P`: type symbol id, inputs as `a,b,c` or `-`. Repeated for a task whose inputs an expansion replaced (the last one counts) |
//! | `S <t> <id> <worker>` | task sent to a worker (scheduled) |
//! | `F <t> <id> <worker> <size>` | task finished (result size in bytes) |
//! | `X <t> <id> <worker> [<message>]` | task failed on that worker, with the worker's error message (cut to 4 KiB; escaped like labels) |
//! | `R <t> <dur_us> <n>` | a scheduling round that placed `n` > 0 tasks took `dur_us` |
//!
//! `worker-<id>.trace`:
//! | record | meaning |
//! |---|---|
//! | `HYPERLOOM-TRACE 1 worker <epoch_us> <id> <cpus> <data port>` | header |
//! | `S <t> <id> <slot>` | task started executing; `slot` = its first CPU slot, -1 for light (0-cpu) tasks |
//! | `F <t> <id> <size>` | task finished |
//! | `X <t> <id>` | task failed |
//! | `D <t> <id> <bytes> <address>` | a data stream was queued to a worker (`ip:port`) or to the server/client (`!:port`) |
//! | `R <t> <id> <bytes> <from data port> <dur_us> <via>` | an object was received completely; `dur_us` from its header frame to its last byte; `via`: `stream` (its bytes came on a data connection) or `link` (its sender's data file was hard-linked, `peer-link`: no byte copied); traces before `via` was written end at `dur_us` and read as `stream` |
//! | `M <t> <proc%> <sys%>` | CPU occupancy sampled about once a second: this process's user+system time, children included, as percent of one core since the previous sample; the machine's busy percent of all cores |
//!
//! Times are read once per event: the server's records of one event (a chunk of messages, a
//! scheduling round) share its time, and a worker task started right after another ended in the
//! same call gets that end time as its start.
//!
//! Records are built in memory and written out in blocks of 64 KiB and at least once a second
//! (the owner calls [`TraceWriter::maybe_flush`] on events and the process on a 1 s timer), and
//! on close: tracing costs a few formatted integers per event.

mod cpu;
pub(crate) mod server;
pub mod worker;

pub use cpu::CpuSampler;
pub use worker::WorkerTrace;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The format version written in the header.
pub const VERSION: u32 = 1;
/// Buffered bytes that trigger a write.
const BLOCK: usize = 64 << 10;
/// Maximum age of buffered records.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One trace file: records are appended to a buffer and written out in blocks.
///
/// A record is `rec(tag)` (writes the tag and the time) or `line(tag)` (the tag only), then
/// fields, then [`TraceWriter::end`]. After a write error the writer stops writing and
/// [`TraceWriter::take_error`] reports it once.
#[derive(Debug)]
pub struct TraceWriter {
    file: Option<File>,
    buf: Vec<u8>,
    start: Instant,
    last_flush: Instant,
    path: PathBuf,
    dir: PathBuf,
    error: Option<String>,
}

impl TraceWriter {
    /// Creates (truncates) `dir/name` (creating `dir` and its parents) and writes the header
    /// `HYPERLOOM-TRACE 1 <kind> <epoch_us>` followed by ` <extra>` when given.
    pub fn create(dir: &Path, name: &str, kind: &str, extra: &str) -> Result<TraceWriter, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create trace directory {}: {e}", dir.display()))?;
        let path = dir.join(name);
        let file = File::create(&path)
            .map_err(|e| format!("cannot create trace file {}: {e}", path.display()))?;
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let now = Instant::now();
        let mut w = TraceWriter {
            file: Some(file),
            buf: Vec::with_capacity(BLOCK + 4096),
            start: now,
            last_flush: now,
            path,
            dir: dir.to_owned(),
            error: None,
        };
        w.buf.extend_from_slice(b"HYPERLOOM-TRACE");
        w.u(VERSION as u64);
        w.buf.push(b' ');
        w.buf.extend_from_slice(kind.as_bytes());
        w.u(epoch);
        if !extra.is_empty() {
            w.buf.push(b' ');
            w.buf.extend_from_slice(extra.as_bytes());
        }
        w.buf.push(b'\n');
        Ok(w)
    }

    /// The trace directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Microseconds since the file's epoch.
    #[inline]
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Microseconds from the file's epoch to `t`.
    #[inline]
    pub fn at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_micros() as u64
    }

    /// Starts an event record: `tag` and the current time.
    #[inline]
    pub fn rec(&mut self, tag: u8) -> &mut Self {
        let t = self.now();
        self.rec_at(tag, t)
    }

    /// Starts an event record with time `t` (µs since the epoch).
    #[inline]
    pub fn rec_at(&mut self, tag: u8, t: u64) -> &mut Self {
        self.buf.push(tag);
        self.u(t)
    }

    /// Starts a record without a time.
    #[inline]
    pub fn line(&mut self, tag: u8) -> &mut Self {
        self.buf.push(tag);
        self
    }

    /// ` <v>` in decimal.
    #[inline]
    pub fn u(&mut self, v: u64) -> &mut Self {
        self.buf.push(b' ');
        push_u64(&mut self.buf, v);
        self
    }

    /// ` <v>` in decimal (signed).
    #[inline]
    pub fn i(&mut self, v: i64) -> &mut Self {
        self.buf.push(b' ');
        if v < 0 {
            self.buf.push(b'-');
        }
        push_u64(&mut self.buf, v.unsigned_abs());
        self
    }

    /// ` <ids>` as `a,b,c`, or ` -` when empty.
    #[inline]
    pub fn ids(&mut self, ids: &[i32]) -> &mut Self {
        self.ids_from(ids.iter().copied())
    }

    /// ` <ids>` as `a,b,c`, or ` -` when empty.
    #[inline]
    pub fn ids_from(&mut self, ids: impl IntoIterator<Item = i32>) -> &mut Self {
        self.buf.push(b' ');
        let mut empty = true;
        for x in ids {
            if !empty {
                self.buf.push(b',');
            }
            empty = false;
            if x < 0 {
                self.buf.push(b'-');
            }
            push_u64(&mut self.buf, (x as i64).unsigned_abs());
        }
        if empty {
            self.buf.push(b'-');
        }
        self
    }

    /// ` <s>` for a token without spaces (addresses, symbol names); spaces and control
    /// characters are replaced by `_`.
    pub fn word(&mut self, s: &str) -> &mut Self {
        self.buf.push(b' ');
        if s.is_empty() {
            self.buf.push(b'-');
        }
        self.buf.extend(
            s.bytes()
                .map(|b| if b <= b' ' || b == 0x7f { b'_' } else { b }),
        );
        self
    }

    /// ` <s>` escaped (`\\`, `\n`, `\r`); must be the last field of the record.
    pub fn text(&mut self, s: &[u8]) -> &mut Self {
        self.buf.push(b' ');
        for &b in s {
            match b {
                b'\\' => self.buf.extend_from_slice(b"\\\\"),
                b'\n' => self.buf.extend_from_slice(b"\\n"),
                b'\r' => self.buf.extend_from_slice(b"\\r"),
                _ => self.buf.push(b),
            }
        }
        self
    }

    /// Ends the record; writes the buffer out when a block is full.
    #[inline]
    pub fn end(&mut self) {
        self.buf.push(b'\n');
        if self.buf.len() >= BLOCK {
            self.write_out();
        }
    }

    /// Writes the buffer out if the oldest buffered record may be older than a second.
    #[inline]
    pub fn maybe_flush(&mut self) {
        if !self.buf.is_empty() && self.last_flush.elapsed() >= FLUSH_EVERY {
            self.write_out();
        }
    }

    /// Writes everything buffered.
    pub fn flush(&mut self) {
        self.write_out();
    }

    /// A write error, reported once.
    pub fn take_error(&mut self) -> Option<String> {
        self.error.take()
    }

    fn write_out(&mut self) {
        self.last_flush = Instant::now();
        if let Some(f) = &mut self.file {
            if let Err(e) = f.write_all(&self.buf) {
                self.error = Some(format!(
                    "cannot write trace file {}: {e}; tracing stopped",
                    self.path.display()
                ));
                self.file = None;
            }
        }
        self.buf.clear();
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        self.write_out();
    }
}

const DIGITS2: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `v` in decimal (two digits per step).
#[inline]
pub fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    while v >= 100 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGITS2[d..d + 2]);
    }
    if v >= 10 {
        let d = v as usize * 2;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGITS2[d..d + 2]);
    } else {
        i -= 1;
        tmp[i] = b'0' + v as u8;
    }
    buf.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests;
