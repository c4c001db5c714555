//! The worker's data store: its objects by data id.

use crate::data::DataRef;

/// Ids per page of slot numbers (a page of 64 ids is 260 bytes).
const PAGE_BITS: u32 = 6;
/// Pages per block (a block of 1,024 pages covers 65,536 ids and is 8 KiB of page pointers).
const BLOCK_BITS: u32 = 10;
const PAGE_MASK: u32 = (1 << PAGE_BITS) - 1;
const BLOCK_MASK: u32 = (1 << BLOCK_BITS) - 1;

/// Slot numbers (+ 1; 0: no object) of 64 consecutive ids, and how many are set.
struct Page {
    slots: [u32; 1 << PAGE_BITS],
    used: u32,
}

/// The pages of 65,536 consecutive ids (a page only while it holds an object), and how many.
struct Block {
    pages: Box<[Option<Box<Page>>]>,
    used: u32,
}

/// The objects this worker holds, by data id.
///
/// The objects sit in one dense vector of slots (freed slots are reused); the slot of an id
/// is found by the id's bits, as in a page table: block `id >> 16`, page `(id >> 6) & 1023`,
/// entry `id & 63`. Ids are numbered by the server's counter, so the objects a worker holds
/// at once lie in a few ranges: W1's merges (every third id, about half of them on each of
/// 2 workers) are ~10 to a page, ~25 bytes of pages each. Why not a hash map (issue #26):
/// hashing, probing and growing it cost ~170 of the worker's ~1,710 instructions per task at
/// W1 (callgrind `worker-core`); here a lookup is three loads. The cost: a page (260 bytes) per 64-id range holding any object, a block
/// (8 KiB) per 65,536-id range, and the block table (8 bytes per 65,536 ids up to the largest
/// id held; 512 KiB at most, for negative ids). Pages and blocks are freed once empty.
#[derive(Default)]
pub(super) struct Store {
    /// Block `k` covers ids (as u32) `k << 16 ..`.
    blocks: Vec<Option<Box<Block>>>,
    objs: Vec<Option<DataRef>>,
    free: Vec<u32>,
    len: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Block, page and entry of id `id`.
#[inline(always)]
fn split(id: i32) -> (usize, usize, usize) {
    let k = id as u32;
    (
        (k >> (PAGE_BITS + BLOCK_BITS)) as usize,
        ((k >> PAGE_BITS) & BLOCK_MASK) as usize,
        (k & PAGE_MASK) as usize,
    )
}

impl Store {
    /// The slot (+ 1) entry of `id`, if its page exists.
    #[inline(always)]
    fn entry(&self, id: i32) -> Option<u32> {
        let (b, p, e) = split(id);
        let page = self.blocks.get(b)?.as_deref()?.pages[p].as_deref()?;
        Some(page.slots[e])
    }

    /// The object `id`.
    #[inline]
    pub fn get(&self, id: &i32) -> Option<&DataRef> {
        match self.entry(*id)? {
            0 => None,
            s => self.objs[s as usize - 1].as_ref(),
        }
    }

    /// Whether `id` is held.
    #[inline]
    pub fn contains_key(&self, id: &i32) -> bool {
        self.entry(*id).is_some_and(|s| s != 0)
    }

    /// Stores `obj` as `id` (replacing an object held under that id).
    #[inline]
    pub fn insert(&mut self, id: i32, obj: DataRef) {
        let (b, p, e) = split(id);
        if self.blocks.len() <= b {
            self.blocks.resize_with(b + 1, || None);
        }
        let block = self.blocks[b].get_or_insert_with(|| {
            Box::new(Block {
                pages: std::iter::repeat_with(|| None)
                    .take(1 << BLOCK_BITS)
                    .collect(),
                used: 0,
            })
        });
        let page = match &mut block.pages[p] {
            Some(page) => page,
            empty => {
                block.used += 1;
                empty.insert(Box::new(Page {
                    slots: [0; 1 << PAGE_BITS],
                    used: 0,
                }))
            }
        };
        match page.slots[e] {
            0 => {
                let s = match self.free.pop() {
                    Some(s) => {
                        self.objs[s as usize] = Some(obj);
                        s
                    }
                    None => {
                        self.objs.push(Some(obj));
                        (self.objs.len() - 1) as u32
                    }
                };
                page.slots[e] = s + 1;
                page.used += 1;
                self.len += 1;
            }
            s => self.objs[s as usize - 1] = Some(obj),
        }
    }

    /// Takes object `id` out.
    #[inline]
    pub fn remove(&mut self, id: &i32) -> Option<DataRef> {
        let (b, p, e) = split(*id);
        let block = self.blocks.get_mut(b)?.as_deref_mut()?;
        let page = block.pages[p].as_deref_mut()?;
        let s = std::mem::replace(&mut page.slots[e], 0);
        if s == 0 {
            return None;
        }
        page.used -= 1;
        if page.used == 0 {
            block.pages[p] = None;
            block.used -= 1;
            if block.used == 0 {
                self.blocks[b] = None;
            }
        }
        self.len -= 1;
        self.free.push(s - 1);
        self.objs[s as usize - 1].take()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The objects with their ids, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &DataRef)> {
        self.blocks.iter().enumerate().flat_map(move |(b, block)| {
            block.iter().flat_map(move |block| {
                block.pages.iter().enumerate().flat_map(move |(p, page)| {
                    page.iter().flat_map(move |page| {
                        page.slots.iter().enumerate().filter_map(move |(e, &s)| {
                            let obj = self.objs[s.checked_sub(1)? as usize].as_ref()?;
                            let id = (b as u32) << (PAGE_BITS + BLOCK_BITS)
                                | (p as u32) << PAGE_BITS
                                | e as u32;
                            Some((id as i32, obj))
                        })
                    })
                })
            })
        })
    }

    /// Pages and blocks allocated now (tests: they are freed once empty).
    #[cfg(test)]
    fn tables(&self) -> (usize, usize) {
        let blocks = self.blocks.iter().flatten();
        let pages = blocks
            .clone()
            .map(|b| b.pages.iter().flatten().count())
            .sum();
        (blocks.count(), pages)
    }
}

impl std::ops::Index<&i32> for Store {
    type Output = DataRef;

    fn index(&self, id: &i32) -> &DataRef {
        self.get(id).expect("no object with this id")
    }
}

#[cfg(test)]
mod tests {
    use super::Store;
    use crate::data::{DataObject, DataRef, Plain};

    fn obj(b: &[u8]) -> DataRef {
        DataRef::new(DataObject::Plain(Plain::from_slice(b)))
    }

    #[test]
    fn slots_are_reused_and_ids_replace() {
        let mut s = Store::default();
        s.insert(5, obj(b"a"));
        s.insert(-3, obj(b"b"));
        s.insert(5, obj(b"c"));
        assert_eq!(s.len(), 2);
        assert_eq!(s[&5].bytes(), Some(&b"c"[..]));
        assert_eq!(s.remove(&5).unwrap().bytes(), Some(&b"c"[..]));
        assert!(s.remove(&5).is_none() && !s.contains_key(&5) && s.get(&5).is_none());
        s.insert(9, obj(b"d"));
        assert_eq!(s.objs.len(), 2, "the freed slot is reused");
        let mut all: Vec<_> = s
            .iter()
            .map(|(id, o)| (id, o.bytes().unwrap().to_vec()))
            .collect();
        all.sort();
        assert_eq!(all, [(-3, b"b".to_vec()), (9, b"d".to_vec())]);
    }

    /// Random inserts, replacements and removals over ids dense and sparse, at the ends of the
    /// i32 range and across page and block boundaries read exactly as a hash map of the same
    /// operations; empty pages and blocks are freed.
    #[test]
    fn reads_as_a_map_and_frees_empty_pages() {
        use std::collections::HashMap;
        let mut s = Store::default();
        let mut model: HashMap<i32, u8> = HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let ranges: [(i32, u32); 5] = [
            (0, 300),
            (65_530, 20),
            (3_000_000, 5_000),
            (i32::MAX - 70, 71),
            (i32::MIN, 130),
        ];
        for round in 0..60_000u32 {
            let r = next();
            let (lo, n) = ranges[(r % 5) as usize];
            let id = lo.wrapping_add(((r >> 8) % u64::from(n)) as i32);
            let v = (r >> 40) as u8;
            if round < 30_000 && (r >> 32) % 3 != 0 || round >= 30_000 && (r >> 32) % 3 == 0 {
                s.insert(id, obj(&[v]));
                model.insert(id, v);
            } else {
                assert_eq!(
                    s.remove(&id).map(|o| o.bytes().unwrap()[0]),
                    model.remove(&id),
                    "remove {id}"
                );
            }
            let probe = lo.wrapping_add(((next() >> 8) % u64::from(n)) as i32);
            assert_eq!(
                s.get(&probe).map(|o| o.bytes().unwrap()[0]),
                model.get(&probe).copied(),
                "get {probe}"
            );
            assert_eq!(s.contains_key(&probe), model.contains_key(&probe));
            assert_eq!(s.len(), model.len());
        }
        let mut all: Vec<_> = s
            .iter()
            .map(|(id, o)| (id, o.bytes().unwrap()[0]))
            .collect();
        all.sort();
        let mut want: Vec<_> = model.iter().map(|(&id, &v)| (id, v)).collect();
        want.sort();
        assert_eq!(all, want);
        for id in want.iter().map(|w| w.0) {
            assert!(s.remove(&id).is_some());
        }
        assert_eq!(
            (s.len(), s.tables()),
            (0, (0, 0)),
            "every page and block freed"
        );
        assert!(s.iter().next().is_none());
    }
}
