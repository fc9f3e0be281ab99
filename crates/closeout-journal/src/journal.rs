//! The owner's side: [`Journal`] records each external resource before it exists, completes
//! the record once it does, and releases it when the resource is gone; when nothing is left
//! unreleased, the owner's file goes away.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::JournalError;
use crate::identity::{ProcessId, boot_id};
use crate::record::{Header, Line, Resource};
use crate::store::{FileStore, Store};

/// This process's journal: a handle to share (clones are the same journal).
///
/// ```
/// use closeout_journal::{Journal, PathKind, Resource};
/// let state = tempfile::tempdir()?;
/// let journal = Journal::open(state.path())?;
/// let dir = tempfile::tempdir()?.keep().join("work");
/// // The intent is durable before the directory exists.
/// let entry = journal.record(Resource::Path { path: dir.clone(), what: PathKind::Dir, id: None })?;
/// std::fs::create_dir(&dir)?;
/// entry.complete(Resource::Path { path: dir.clone(), what: PathKind::Dir, id: Some(closeout_journal::FileId::of(&dir)?) })?;
/// // ... used; then removed by the owner, and released:
/// std::fs::remove_dir(&dir)?;
/// entry.release()?;
/// assert_eq!(journal.live(), 0); // and the owner file is gone
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("live", &self.live()).finish()
    }
}

struct Inner {
    store: Box<dyn Store>,
    header: Header,
    /// Lock order: taken alone; held across the store's write, so lines go out in order and
    /// the "nothing left, retire" decision cannot race a new intent.
    state: Mutex<State>,
}

struct State {
    next: u64,
    /// The records not released yet: 8 bytes each, plus the table's slack.
    live: HashSet<u64>,
}

/// A record in the journal; complete it once the resource exists, release it once it is gone.
/// Dropping it without a release keeps the record, for a reap to clean up.
#[derive(Debug)]
#[must_use = "a record is released only by `release`"]
pub struct Entry {
    journal: Journal,
    id: u64,
    /// Whether reaping its resource twice is harmless (a tree, a path): then its last release
    /// need not be written (store invariant J4).
    idempotent: bool,
}

impl Journal {
    /// The journal in `dir` (see [`FileStore::open`]).
    ///
    /// # Errors
    ///
    /// As [`FileStore::open`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Journal, JournalError> {
        Ok(Journal::with_store(FileStore::open(dir.as_ref())?))
    }

    /// The journal in [`default_state_dir`](crate::default_state_dir).
    ///
    /// # Errors
    ///
    /// As [`FileStore::open`].
    pub fn open_default() -> Result<Journal, JournalError> {
        Journal::open(crate::default_state_dir())
    }

    /// A journal on any [`Store`].
    pub fn with_store(store: impl Store) -> Journal {
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let header = Header {
            version: 1,
            boot_id: boot_id(),
            owner: ProcessId::current(),
            cmdline: std::env::args().collect(),
            created_ms,
        };
        Journal {
            inner: Arc::new(Inner {
                store: Box::new(store),
                header,
                state: Mutex::new(State { next: 0, live: HashSet::new() }),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the intent to create `resource`, durably: create it only after this returns.
    ///
    /// # Errors
    ///
    /// [`JournalError::Refused`] with the resource handed back, if the line could not be
    /// written (then do not create the resource: nothing would reap it).
    pub fn record(&self, resource: Resource) -> Result<Entry, JournalError> {
        let mut state = self.state();
        let id = state.next;
        let idempotent = matches!(resource, Resource::ProcessTree { .. } | Resource::Path { .. });
        let line = Line::Intent { id, resource };
        match self.inner.store.append(&self.inner.header, &line) {
            Ok(()) => {
                state.next += 1;
                state.live.insert(id);
                Ok(Entry { journal: self.clone(), id, idempotent })
            }
            Err(e) => {
                let Line::Intent { resource, .. } = line else { unreachable!("built above") };
                Err(JournalError::Refused { why: e.to_string(), resource: Box::new(resource) })
            }
        }
    }

    /// How many records are not released yet.
    pub fn live(&self) -> usize {
        self.state().live.len()
    }

    /// Who this journal's owner is.
    pub fn header(&self) -> &Header {
        &self.inner.header
    }
}

impl Entry {
    /// The record's number in the owner's file.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Completes the record with what creation produced (pids and start times, the real path).
    ///
    /// # Errors
    ///
    /// The line could not be written: the intent stays, which a reap treats as "maybe created".
    pub fn complete(&self, resource: Resource) -> Result<(), JournalError> {
        let _state = self.journal.state();
        self.journal.inner.store.append(&self.journal.inner.header, &Line::Complete { id: self.id, resource })
    }

    /// Releases the record: the resource is gone. The last release removes the owner's file.
    ///
    /// # Errors
    ///
    /// The line could not be written; the entry is handed back to try again.
    pub fn release(self) -> Result<(), ReleaseError> {
        let journal = self.journal.clone();
        let mut state = journal.state();
        let last = state.live.len() == 1 && state.live.contains(&self.id);
        // The last record goes with the file; only a non-idempotent one needs its release
        // written first (J4).
        if !(last && self.idempotent)
            && let Err(e) = journal.inner.store.append(&journal.inner.header, &Line::Release { id: self.id })
        {
            drop(state);
            return Err(ReleaseError { entry: self, source: e });
        }
        state.live.remove(&self.id);
        if state.live.is_empty() {
            // Nothing left: the file goes (a new record makes a new one). If it cannot, it
            // holds only released records, which a reap removes without doing anything.
            let _ = journal.inner.store.retire();
        }
        Ok(())
    }
}

/// A release that could not be written: the entry is handed back, to try again (or to keep,
/// so that a reap cleans up).
#[derive(Debug, thiserror::Error)]
#[error("releasing journal record {}: {source}", entry.id)]
pub struct ReleaseError {
    entry: Entry,
    source: JournalError,
}

impl ReleaseError {
    /// The entry that is still unreleased.
    pub fn into_entry(self) -> Entry {
        self.entry
    }

    /// Why the release failed.
    pub fn error(&self) -> &JournalError {
        &self.source
    }
}

/// The process's default journal (lock order: taken alone, never across a record).
static DEFAULT: Mutex<Option<Journal>> = Mutex::new(None);

impl Journal {
    /// Makes this journal the process's default: from now on, closeout's managed resources —
    /// process trees (`closeout-process`), temp dirs (`closeout-fs`) — record themselves in it
    /// when they are created, with no code of yours. Returns the previous default.
    ///
    /// ```
    /// use closeout_journal::Journal;
    /// let state = tempfile::tempdir()?;
    /// let journal = Journal::open(state.path())?;
    /// journal.set_default();
    /// assert!(Journal::current().is_some());
    /// Journal::clear_default();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_default(&self) -> Option<Journal> {
        DEFAULT.lock().unwrap_or_else(|p| p.into_inner()).replace(self.clone())
    }

    /// Removes the default journal (resources created from now on are not recorded); returns it.
    pub fn clear_default() -> Option<Journal> {
        DEFAULT.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The default journal, if one is set.
    pub fn current() -> Option<Journal> {
        DEFAULT.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Journal {
    /// Opens the journal in `dir` for a service that restarts: first reaps the dead owners that
    /// ran this same program (its earlier, crashed runs), then returns the journal and that
    /// reap's report. Other programs' owners are left alone.
    ///
    /// # Errors
    ///
    /// As [`Journal::open`]; a record that fails to reap is in the report, not an error.
    ///
    /// ```
    /// let state = tempfile::tempdir()?;
    /// let (journal, report) = closeout_journal::Journal::open_reaping_own(state.path())?;
    /// assert!(report.is_success());
    /// # let _ = journal;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_reaping_own(dir: impl AsRef<Path>) -> Result<(Journal, crate::ReapReport), JournalError> {
        let store = FileStore::open(dir.as_ref())?;
        let report = crate::reap(&store, &crate::ReapOptions::new().same_program(true))?;
        Ok((Journal::with_store(store), report))
    }
}
