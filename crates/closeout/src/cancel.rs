//! Cancel first: the [`CancellationToken`] each [`Scope`](crate::Scope) and
//! [`Registry`](crate::Registry) owns.
//!
//! Cleanups that stop work from the outside (abort a task, join a thread) are the last resort;
//! work that watches a token can wind down on its own and finish cleanly. So a teardown cancels
//! its owner's token *before* any cleanup runs, and tracked tasks, threads and blocking jobs
//! measure their grace period from that moment.
//!
//! The state lives under the owner's own lock: creating the token and cancelling it are ordered
//! by that lock, so a token handed out concurrently with the start of a teardown is never missed.
//! The token is created on first use, so a scope that never asks for one pays nothing.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// An owner's token and when it was cancelled. Always accessed under the owner's lock.
#[derive(Default)]
pub(crate) struct Cancel {
    token: Option<CancellationToken>,
    at: Option<Instant>,
}

impl Cancel {
    /// The token, created on first use (as a child of `parent` when there is one). A token
    /// created after the owner was cancelled is born cancelled.
    pub(crate) fn token(&mut self, parent: Option<CancellationToken>) -> CancellationToken {
        let at = self.at;
        self.token
            .get_or_insert_with(|| {
                let token = parent.map_or_else(CancellationToken::new, |p| p.child_token());
                if at.is_some() {
                    token.cancel();
                }
                token
            })
            .clone()
    }

    /// Marks the owner cancelled now (the first time) and returns the token to cancel once the
    /// lock is released: cancelling wakes waiters, which is not work to do under a lock.
    pub(crate) fn begin(&mut self) -> Option<CancellationToken> {
        self.at.get_or_insert_with(Instant::now);
        self.token.clone()
    }

    /// When the owner's teardown began, if it did.
    pub(crate) fn cancelled_at(&self) -> Option<Instant> {
        self.at
    }

    /// A registry that stays usable after `cleanup_all` gets a fresh token for what comes next.
    pub(crate) fn reset(&mut self) {
        *self = Cancel::default();
    }
}
