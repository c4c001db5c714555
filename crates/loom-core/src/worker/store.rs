//! The worker's data store: its objects by data id.

use std::collections::hash_map::Entry;

use super::IdMap;
use crate::data::DataRef;

/// The objects this worker holds, by data id.
///
/// The objects sit in one dense vector of slots (freed slots are reused) and a hash map finds
/// the slot of an id: the map's 8-byte entries keep its spare capacity (up to half of a table
/// after it grows) cheap, where 48-byte `DataRef`s in the table itself would cost ~117 bytes
/// per object at W1's million merges (issue #26).
#[derive(Debug, Default)]
pub(super) struct Store {
    slot: IdMap<u32>,
    objs: Vec<Option<DataRef>>,
    free: Vec<u32>,
}

impl Store {
    /// The object `id`.
    #[inline]
    pub fn get(&self, id: &i32) -> Option<&DataRef> {
        let s = *self.slot.get(id)?;
        self.objs[s as usize].as_ref()
    }

    /// Whether `id` is held.
    #[inline]
    pub fn contains_key(&self, id: &i32) -> bool {
        self.slot.contains_key(id)
    }

    /// Stores `obj` as `id` (replacing an object held under that id).
    #[inline]
    pub fn insert(&mut self, id: i32, obj: DataRef) {
        match self.slot.entry(id) {
            Entry::Occupied(e) => self.objs[*e.get() as usize] = Some(obj),
            Entry::Vacant(e) => {
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
                e.insert(s);
            }
        }
    }

    /// Takes object `id` out.
    #[inline]
    pub fn remove(&mut self, id: &i32) -> Option<DataRef> {
        let s = self.slot.remove(id)?;
        self.free.push(s);
        self.objs[s as usize].take()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.slot.len()
    }

    /// The objects with their ids, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &DataRef)> {
        self.slot
            .iter()
            .filter_map(|(&id, &s)| self.objs[s as usize].as_ref().map(|o| (id, o)))
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
}
