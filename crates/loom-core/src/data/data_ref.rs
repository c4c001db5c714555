//! [`DataRef`]: how the worker's store, running tasks, arrays and sends hold a data object.

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::Arc;

use super::DataObject;

/// A reference to an immutable data object: a tiny plain object (at most
/// [`INLINE_LEN`](super::INLINE_LEN) bytes, held inside the object) is held by value and
/// copied on clone; any other object is shared ([`Arc`]) and cloning shares it.
///
/// Why (issue #26): a 1M-task plan makes millions of tiny objects (consts, merges, sizes); an
/// `Arc` for each cost an allocation and a free per object (~180 instructions of the worker's
/// ~2,000 per task at W1) and 80 bytes of heap besides the store's entry.
///
/// Deref gives the object. Bytes of an inline object live inside the `DataRef`, so they move
/// with it: code that hands out a pointer to an object's bytes beyond a borrow holds an
/// `Arc<DataObject>` ([`DataRef::to_shared`]), as [`StreamPart::Shared`](super::stream::StreamPart)
/// does.
pub struct DataRef(Held);

enum Held {
    /// A plain object with inline bytes: it owns no memory or file, so it is never dropped
    /// (dropping it would only check that).
    Inline(ManuallyDrop<DataObject>),
    Shared(Arc<DataObject>),
}

impl DataRef {
    /// Holds `obj`: by value when it is a plain object with inline bytes, else shared.
    #[inline]
    pub fn new(obj: DataObject) -> DataRef {
        match &obj {
            DataObject::Plain(p) if p.is_inline() => DataRef(Held::Inline(ManuallyDrop::new(obj))),
            _ => DataRef(Held::Shared(Arc::new(obj))),
        }
    }

    /// The object as an `Arc`: the shared one, or a new shared copy of an inline object.
    pub fn to_shared(&self) -> Arc<DataObject> {
        match &self.0 {
            Held::Inline(o) => Arc::new(copy_inline(o)),
            Held::Shared(a) => a.clone(),
        }
    }

    /// Whether the object is held by value (its bytes move with this reference).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Held::Inline(_))
    }

    /// References to a shared object (`Arc::strong_count`); 1 for an inline object.
    pub fn strong_count(this: &DataRef) -> usize {
        match &this.0 {
            Held::Inline(_) => 1,
            Held::Shared(a) => Arc::strong_count(a),
        }
    }

    /// Whether both refer to the same shared object (never for inline objects, which are
    /// copies).
    pub fn ptr_eq(a: &DataRef, b: &DataRef) -> bool {
        match (&a.0, &b.0) {
            (Held::Shared(x), Held::Shared(y)) => Arc::ptr_eq(x, y),
            _ => false,
        }
    }
}

/// A copy of an inline plain object.
#[inline]
fn copy_inline(o: &DataObject) -> DataObject {
    match o {
        DataObject::Plain(p) => DataObject::Plain(p.copy_inline()),
        _ => unreachable!("only plain objects are held inline"),
    }
}

impl Clone for DataRef {
    #[inline]
    fn clone(&self) -> Self {
        match &self.0 {
            Held::Inline(o) => DataRef(Held::Inline(ManuallyDrop::new(copy_inline(o)))),
            Held::Shared(a) => DataRef(Held::Shared(a.clone())),
        }
    }
}

impl Deref for DataRef {
    type Target = DataObject;

    #[inline]
    fn deref(&self) -> &DataObject {
        match &self.0 {
            Held::Inline(o) => o,
            Held::Shared(a) => a,
        }
    }
}

impl From<Arc<DataObject>> for DataRef {
    fn from(a: Arc<DataObject>) -> Self {
        DataRef(Held::Shared(a))
    }
}

impl std::fmt::Debug for DataRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}
