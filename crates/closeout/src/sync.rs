//! The synchronization types of the teardown core: `std::sync`, or under `--cfg loom` loom's
//! checked equivalents, so `tests/loom.rs` can explore every interleaving of the single-flight
//! protocol (see `registry/teardown.rs`, invariants T1, T2 and T5).

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard, atomic};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard, atomic};

/// Locks `m`, taking the guard back if a panic poisoned it. Every lock in closeout guards state
/// that no user code changes while it is held (each lock's module says so where it is
/// declared), so a poisoned lock's state is still consistent and refusing it would only turn
/// one panic into many.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`lock`] for a `std::sync::Mutex` that stays one under loom (state outside the model).
#[cfg(loom)]
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(not(loom))]
pub(crate) use lock as lock_std;
