//! Array, `loom/array`: shared elements of any type.

use super::DataRef;

/// An array of shared elements; its size (sum of element sizes) is computed once.
#[derive(Debug)]
pub struct Array {
    items: Vec<DataRef>,
    size: u64,
}

impl Array {
    /// An array of `items`.
    pub fn new(items: Vec<DataRef>) -> Self {
        let size = items.iter().map(|x| x.size()).sum();
        Array { items, size }
    }

    /// The elements.
    pub fn items(&self) -> &[DataRef] {
        &self.items
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True for `[]`.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sum of the element sizes.
    pub fn size(&self) -> u64 {
        self.size
    }
}
