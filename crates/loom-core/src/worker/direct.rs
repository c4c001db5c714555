//! Objects a client fetches from this worker's data port (`fetch-direct`, our extension; see
//! docs/protocol-extensions.md): the server answered the client's FETCH with the object's
//! location, and the client asks this worker for it on an authenticated data connection.

use std::path::PathBuf;
use std::sync::Arc;

use crate::data::stream::{encode_stream_parts, StreamPart, SHARED_PAYLOAD_MIN};
use crate::data::DataObject;

use super::Worker;

/// How a directly fetched object leaves this worker.
pub enum DirectObject {
    /// Its data file, for a client on this host that maps it itself: `obj` keeps the file until
    /// the client says it has mapped it (or its connection closes).
    File {
        /// The object (holding it keeps its file).
        obj: Arc<DataObject>,
        /// The data file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// Its data stream, exactly as sent to a peer (DataHeader, then its frames).
    Stream(Vec<StreamPart>),
}

impl Worker {
    /// Object `id` for a direct fetch: its data file when `file` (the client shares this host)
    /// and the object is a spilled plain object, else its stream; `None` when this worker does
    /// not hold it (released, or never here).
    pub fn direct_object(&self, id: i32, file: bool) -> Option<DirectObject> {
        let obj = self.store.get(&id)?;
        if file {
            if let DataObject::Plain(p) = &**obj {
                if let Some(path) = p.file_path() {
                    return Some(DirectObject::File {
                        obj: obj.to_shared(),
                        path: path.to_owned(),
                        size: p.len() as u64,
                    });
                }
            }
        }
        Some(DirectObject::Stream(encode_stream_parts(
            id,
            obj,
            &self.ids,
            SHARED_PAYLOAD_MIN,
        )))
    }
}
