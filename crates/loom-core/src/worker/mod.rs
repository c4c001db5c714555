//! Worker side of HyperLoom: data store, built-in tasks, transfers, resource slots.
