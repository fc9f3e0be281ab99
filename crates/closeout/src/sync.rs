//! The synchronization types of the teardown core: `std::sync`, or under `--cfg loom` loom's
//! checked equivalents, so `tests/loom.rs` can explore every interleaving of the single-flight
//! protocol (see `registry/teardown.rs`, invariants 1, 2 and 5).

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard, atomic};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard, atomic};
