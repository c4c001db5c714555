//! Hash maps keyed by ids (task, data and connection ids: i32/u32 or newtypes of them), with a
//! hasher of one multiply instead of SipHash. Ids come from our own server and clients' plans
//! as numbered by the server, not chosen by an adversary, so flooding is not a concern.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Hasher for i32/u32 keys: see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }
    fn write_u32(&mut self, i: u32) {
        // hashbrown picks the bucket from the low bits and the 7-bit tag from the top bits:
        // keep the id itself in the low bits (consecutive ids land in consecutive buckets,
        // which keeps 1M-entry tables cache-friendly) and mix the top bits for the tags.
        let i = u64::from(i);
        self.0 = i ^ (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xFE00_0000_0000_0000);
    }
}

/// A `HashMap` keyed by ids, with [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
