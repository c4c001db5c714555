//! The symbol dictionary: `loom/...` names mapped to dense ids, in the original's order.

use std::collections::HashMap;

/// Symbols the server creates at start-up, in the original's order (ids 0..=4).
pub const SERVER_SYMBOLS: [&str; 5] = [
    "loom/base/slice",
    "loom/base/get",
    "loom/scheduler/dslice",
    "loom/scheduler/dget",
    "loom/resource/cpus",
];

/// Task types of the original worker, in its registration order.
pub const ORIGINAL_TASK_TYPES: [&str; 13] = [
    "loom/base/get",
    "loom/base/slice",
    "loom/base/size",
    "loom/base/length",
    "loom/data/const",
    "loom/data/merge",
    "loom/data/open",
    "loom/data/split",
    "loom/data/save",
    "loom/array/make",
    "loom/run/run",
    "loom/py/call",
    "loom/py/value",
];

/// Our JavaScript function tasks (the analogs of `loom/py/call` and `loom/py/value`).
pub const JS_TASK_TYPES: [&str; 2] = ["loom/js/call", "loom/js/value"];

/// Data types of our worker, in the original's registration order, then ours.
pub const WORKER_DATA_TYPES: [&str; 5] = [
    "loom/pyobj",
    "loom/index",
    "loom/array",
    "loom/data",
    "loom/js/obj",
];

/// A symbol dictionary: ids are dense from 0, never change and are never removed.
#[derive(Debug, Clone, Default)]
pub struct Symbols {
    names: Vec<String>,
    ids: HashMap<String, i32>,
}

impl Symbols {
    /// An empty dictionary (a worker's, before the server's DICTIONARY arrives).
    pub fn new() -> Self {
        Self::default()
    }

    /// The server's dictionary at start-up: its own symbols, then every standard task and data
    /// type in the order the original produces once its worker registered. Seeding them (rather
    /// than waiting for a worker) gives the original's ids whatever registers first, and lets a
    /// client connect before any worker. Extension task types are added as workers announce them.
    pub fn for_server() -> Self {
        let mut s = Self::new();
        for name in SERVER_SYMBOLS {
            s.add(name);
        }
        for name in ORIGINAL_TASK_TYPES {
            s.add(name);
        }
        for name in WORKER_DATA_TYPES {
            s.add(name);
        }
        for name in JS_TASK_TYPES {
            s.add(name);
        }
        s
    }

    /// Adds `name` if missing and returns its id.
    pub fn add(&mut self, name: &str) -> i32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as i32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    /// The id of `name`, if registered.
    pub fn id(&self, name: &str) -> Option<i32> {
        self.ids.get(name).copied()
    }

    /// The name of `id`, if registered.
    pub fn name(&self, id: i32) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.names.get(i))
            .map(String::as_str)
    }

    /// All names in id order (the DICTIONARY message's list).
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_matches_the_original_order() {
        let s = Symbols::for_server();
        let recorded = include_str!("../tests/data/symbols.txt");
        for line in recorded.lines() {
            let (id, name) = line.split_once('\t').unwrap();
            assert_eq!(s.id(name), Some(id.parse().unwrap()), "{name}");
        }
    }
}
