//! The tasks waiting for one data object that is not on this worker yet.

/// The tasks waiting for one data object, one entry per occurrence in their inputs, in the
/// order they came. A lone waiter — the usual case: W1's `arrayMake` waits for 500,000
/// transferred merges, each its input once — is held without an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Waiters {
    One(i32),
    Many(Vec<i32>),
}

impl Waiters {
    /// Adds a waiter (again, for a task that has the object twice among its inputs).
    pub fn push(&mut self, task: i32) {
        match self {
            Waiters::One(first) => *self = Waiters::Many(vec![*first, task]),
            Waiters::Many(v) => v.push(task),
        }
    }

    /// The waiters, in order.
    pub fn as_slice(&self) -> &[i32] {
        match self {
            Waiters::One(t) => std::slice::from_ref(t),
            Waiters::Many(v) => v,
        }
    }

    /// Drops every entry of `task`; true when no waiter is left.
    pub fn remove(&mut self, task: i32) -> bool {
        match self {
            Waiters::One(t) => *t == task,
            Waiters::Many(v) => {
                v.retain(|&t| t != task);
                v.is_empty()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Waiters;

    #[test]
    fn one_then_many_in_order_and_removal() {
        let mut w = Waiters::One(7);
        assert_eq!(w.as_slice(), [7]);
        w.push(9);
        w.push(7);
        assert_eq!(w.as_slice(), [7, 9, 7]);
        assert!(!w.remove(7));
        assert_eq!(w.as_slice(), [9]);
        assert!(w.remove(9));
        assert!(!Waiters::One(1).remove(2));
        assert!(Waiters::One(1).remove(1));
    }
}
