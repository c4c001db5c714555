//! Objects passed to a peer on the same host by their data files (`peer-link`, our extension;
//! see docs/protocol-extensions.md). The sender announces the extension on its data connection
//! ([`Worker::open_peer_offering`]); a receiver on the same host and user answers with a
//! `PeerHello` naming it, and the sender then offers spilled objects by path on a link
//! connection. The receiver's JS layer hard-links the file into this worker's data directory,
//! checks it, and hands it here ([`Worker::adopt_received`]): from then on it is this worker's
//! own data file, exactly as if the object had arrived on a stream.

use std::path::PathBuf;
use std::time::Instant;

use crate::data::{DataObject, DataRef, Plain};
use crate::proto::comm::Announce;

use super::peer::RecvStat;
use super::Worker;

/// The feature a sender announces and a receiver accepts.
pub const PEER_LINK: &str = "peer-link";

impl Worker {
    /// [`open_peer`](Self::open_peer), with the Announce offering `peer-link` from `host` (this
    /// worker's `<boot id>:<uid>`). The original receiver skips the extra fields.
    pub fn open_peer_offering(&mut self, conn: u32, port: u16, host: &str) -> Vec<u8> {
        self.open_peer_announcing(
            conn,
            port,
            Announce {
                port: i32::from(self.cfg.data_port),
                host: Some(host.to_owned()),
                features: vec![PEER_LINK.to_owned()],
            },
        )
    }

    /// A peer's object `id` arrived as a data file now linked at `path` (in this worker's data
    /// directory; `peer-link`) from the worker with data port `from_port` (0: unknown; the trace's
    /// `R` record names it): it is stored like an object received on a stream (its TRANSFERED
    /// reported, tasks waiting for it woken) and its file deleted when the object goes. The file
    /// is mapped with its pages populated, so the bytes are in this process's memory as a
    /// streamed object's are. On error the file is deleted and nothing is stored.
    pub fn adopt_received(&mut self, id: i32, path: PathBuf, from_port: u16) -> Result<(), String> {
        self.trace_new_call();
        let started = Instant::now();
        let plain = Plain::adopt_file_populated(path)
            .map_err(|e| format!("cannot store linked data id={id}: {e}"))?;
        let stat = RecvStat {
            bytes: plain.len() as u64,
            port: from_port,
            started,
            linked: true,
        };
        self.trace_received(id, stat);
        self.received(id, DataRef::new(DataObject::Plain(plain)));
        self.drain_woken();
        Ok(())
    }
}
