//! The journal's writer thread: appends the records the core emits, with group commit — all that
//! arrived while the previous batch was written go out in one `write` and one `fdatasync`, and
//! batches are at least [`MIN_COMMIT_INTERVAL`] apart, so the cost per task stays small at a
//! million tasks. File I/O never runs on the caller's (the event loop's) thread.
//!
//! The journal is compacted ([`super::compact`]) when opened and whenever it has grown to twice
//! its size after the last compaction (and at least [`COMPACT_MIN_BYTES`]): on this thread, from
//! the file itself, written to `PATH.tmp` and renamed over it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{compact, encode_file, read, JournalError, Record};

/// Shortest time between two commits (fsyncs).
pub const MIN_COMMIT_INTERVAL: Duration = Duration::from_millis(2);
/// A journal smaller than this is not compacted while the server runs (default).
pub const COMPACT_MIN_BYTES: u64 = 64 << 20;

enum Msg {
    Append(Vec<u8>),
    /// Answered once everything sent before is on disk.
    Sync(Sender<()>),
}

/// Appends to a journal file on its own thread (see the module doc).
pub struct JournalWriter {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    error: Arc<Mutex<Option<String>>>,
    reported: bool,
}

/// Writing state owned by the writer thread.
struct Sink {
    path: PathBuf,
    file: File,
    size: u64,
    compacted_size: u64,
    compact_min: u64,
}

impl JournalWriter {
    /// Replaces the journal at `path` with `records` (compacted already: see
    /// [`super::compact`]), atomically, then appends from a new thread. `compact_min`: the
    /// journal is compacted while running once it is at least this large and twice its size
    /// after the last compaction.
    pub fn create(path: &Path, records: &[Record], compact_min: u64) -> Result<Self, JournalError> {
        let size = rewrite(path, &encode_file(records))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| io_err(path, source))?;
        let mut sink = Sink {
            path: path.to_owned(),
            file,
            size,
            compacted_size: size,
            compact_min,
        };
        let (tx, rx) = channel();
        let error = Arc::new(Mutex::new(None));
        let err = error.clone();
        let thread = std::thread::Builder::new()
            .name("loom-journal".into())
            .spawn(move || sink.run(rx, err))
            .map_err(|source| io_err(path, source))?;
        Ok(JournalWriter {
            tx: Some(tx),
            thread: Some(thread),
            error,
            reported: false,
        })
    }

    /// Queues framed records for the next commit (no I/O here).
    pub fn append(&self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Append(bytes));
        }
    }

    /// Blocks until everything appended so far is on disk.
    pub fn sync(&self) {
        let (tx, rx) = channel();
        if let Some(t) = &self.tx {
            if t.send(Msg::Sync(tx)).is_ok() {
                let _ = rx.recv();
            }
        }
    }

    /// The first write error, once (for the log).
    pub fn take_error(&mut self) -> Option<String> {
        if self.reported {
            return None;
        }
        let e = self.error.lock().ok()?.clone();
        self.reported = e.is_some();
        e
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Sink {
    fn run(&mut self, rx: Receiver<Msg>, error: Arc<Mutex<Option<String>>>) {
        let mut last = Instant::now() - MIN_COMMIT_INTERVAL;
        let mut buf = Vec::new();
        let mut waiters = Vec::new();
        while let Ok(m) = rx.recv() {
            let since = last.elapsed();
            if since < MIN_COMMIT_INTERVAL {
                std::thread::sleep(MIN_COMMIT_INTERVAL - since);
            }
            let mut next = Some(m);
            while let Some(m) = next.take().or_else(|| rx.try_recv().ok()) {
                match m {
                    Msg::Append(b) if buf.is_empty() => buf = b,
                    Msg::Append(b) => buf.extend_from_slice(&b),
                    Msg::Sync(w) => waiters.push(w),
                }
            }
            if let Err(e) = self.commit(&buf) {
                let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| {
                    format!(
                        "journal {}: {e}; the journal is incomplete",
                        self.path.display()
                    )
                });
            }
            last = Instant::now();
            buf.clear();
            if self.size >= self.compact_min && self.size >= 2 * self.compacted_size {
                if let Err(e) = self.compact() {
                    let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
                    slot.get_or_insert_with(|| format!("{e}"));
                }
            }
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    /// One commit: a write and an fdatasync.
    fn commit(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(buf)?;
        self.file.sync_data()?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Rewrites the file with only what a restore needs.
    fn compact(&mut self) -> Result<(), JournalError> {
        let contents = read(&self.path)?;
        let bytes = encode_file(&compact(contents.records));
        self.size = rewrite(&self.path, &bytes)?;
        self.compacted_size = self.size;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|source| io_err(&self.path, source))?;
        Ok(())
    }
}

/// Writes `bytes` to `PATH.tmp`, syncs it and renames it over `path` (then syncs the folder).
fn rewrite(path: &Path, bytes: &[u8]) -> Result<u64, JournalError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let r = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    r.map_err(|source| io_err(path, source))?;
    Ok(bytes.len() as u64)
}

fn io_err(path: &Path, source: std::io::Error) -> JournalError {
    JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}
