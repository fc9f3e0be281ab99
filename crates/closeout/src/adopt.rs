//! [`Registry::adopt`]: any value registered with its disposer, kept usable through a guard
//! ([`Adopted`]) until the teardown disposes of it — the seeds' `trackDisposable`, TC39's
//! `DisposableStack.adopt`.
//!
//! The value lives in a cell the guard and the cleanup share (one lock, held only while the
//! guard's closure runs or while the cleanup takes the value out; never while the disposer
//! runs). Whoever takes it first has it: the teardown's disposer, or [`Adopted::take`], which
//! also unregisters the resource.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::cleanup::IntoOutcome;
use crate::error::Error;
use crate::registry::Registry;
use crate::resource::Resource;

/// A value registered in a [`Registry`] with its disposer ([`Registry::adopt`]): usable through
/// [`with`](Adopted::with) until the teardown disposes of it, or taken back with
/// [`take`](Adopted::take). Dropping the guard leaves the value registered: the teardown still
/// disposes of it.
pub struct Adopted<T> {
    cell: Arc<Mutex<Option<T>>>,
    registry: Registry,
    id: String,
}

impl<T> Adopted<T> {
    /// Runs `f` on the value; `None` once the teardown disposed of it.
    ///
    /// ```
    /// let registry = closeout::Registry::new();
    /// let buffer = registry.adopt("buffer", Vec::<u8>::new(), |v| drop(v)).unwrap();
    /// buffer.with(|v| v.push(7));
    /// assert_eq!(buffer.with(|v| v.len()), Some(1));
    /// registry.cleanup_all_blocking();
    /// assert_eq!(buffer.with(|v| v.len()), None); // disposed
    /// ```
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        crate::sync::lock_std(&self.cell).as_mut().map(f)
    }

    /// Whether the value is still there (not yet disposed of or taken).
    pub fn is_alive(&self) -> bool {
        crate::sync::lock_std(&self.cell).is_some()
    }

    /// Lets go of the guard; the value stays registered and the teardown disposes of it (the
    /// same as dropping the guard, said out loud).
    pub fn keep_registered(self) {}

    /// The id it is registered under.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Takes the value back and unregisters it: its disposer will not run. `None` if the
    /// teardown already took it.
    ///
    /// ```
    /// let registry = closeout::Registry::new();
    /// let kept = registry.adopt("conn", String::from("socket"), |_| ()).unwrap();
    /// assert_eq!(kept.take().as_deref(), Some("socket"));
    /// assert!(!registry.contains("conn"));
    /// ```
    pub fn take(self) -> Option<T> {
        let value = crate::sync::lock_std(&self.cell).take();
        if value.is_some() {
            // Dropped unrun: its cleanup would only find the cell empty.
            let _ = self.registry.unregister(&self.id);
        }
        value
    }
}

impl<T> fmt::Debug for Adopted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adopted").field("id", &self.id).field("alive", &self.is_alive()).finish()
    }
}

/// [`Registry::adopt`] refused the value: why, and the value, handed back unused.
#[derive(thiserror::Error)]
#[error("the value could not be adopted: {error}")]
pub struct AdoptError<T> {
    error: Error,
    value: sync_wrapper::SyncWrapper<T>,
}

impl<T> AdoptError<T> {
    /// What went wrong.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The value, back.
    pub fn into_value(self) -> T {
        self.value.into_inner()
    }
}

impl<T> fmt::Debug for AdoptError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdoptError").field("error", &self.error).finish_non_exhaustive()
    }
}

impl Registry {
    /// Registers `value` under `id` with `dispose`, which the teardown calls with the value
    /// (its error, if it returns one, is reported like any cleanup's), and hands back a guard
    /// to use the value meanwhile. For values whose release is a function of them rather than
    /// their `Drop`: a raw handle closed with a call that can fail, a connection returned to a
    /// pool, an owned file descriptor closed with its error reported
    /// (`closeout_fs::close_fd`).
    ///
    /// # Errors
    ///
    /// [`AdoptError`] with the value, unused, when the registry refuses the registration
    /// (a duplicate id, a closed registry, the resource limit).
    ///
    /// ```
    /// use closeout::Registry;
    /// let registry = Registry::new();
    /// let pool = registry.adopt("pool", vec!["conn-1", "conn-2"], |conns| {
    ///     println!("returning {} connections", conns.len());
    /// })?;
    /// pool.with(|conns| conns.push("conn-3"));
    /// let refused = registry.adopt("pool", 5u32, |_| ()).unwrap_err();
    /// assert_eq!(refused.into_value(), 5); // handed back
    /// assert!(registry.cleanup_all_blocking().is_success()); // "returning 3 connections"
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn adopt<T, F, R>(
        &self,
        id: impl Into<String>,
        value: T,
        dispose: F,
    ) -> Result<Adopted<T>, AdoptError<T>>
    where
        T: Send + 'static,
        F: FnOnce(T) -> R + Send + 'static,
        R: IntoOutcome,
    {
        let id = id.into();
        let cell = Arc::new(Mutex::new(Some(value)));
        let shared = Arc::clone(&cell);
        let resource = Resource::new(id.clone(), move || {
            // Taken out under the lock, disposed of after it is released.
            let value = crate::sync::lock_std(&shared).take();
            match value {
                Some(value) => dispose(value).into_outcome(),
                None => Ok(()),
            }
        });
        match self.register(resource) {
            Ok(()) => Ok(Adopted { cell, registry: self.clone(), id }),
            Err(refused) => {
                let (error, resource) = refused.into_parts();
                // Dropped unrun: the closure's clone of the cell goes with it.
                drop(resource);
                // The cell was made here and its only other handle was just dropped unrun:
                // the value is still in it.
                let value = crate::sync::lock_std(&cell).take().expect("nobody else had the value");
                Err(AdoptError { error, value: sync_wrapper::SyncWrapper::new(value) })
            }
        }
    }
}
