//! What the journal records: the owner (header), and per resource an intent, a completion and a
//! release.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::identity::{FileId, ProcessId};

/// An external resource, as much of it as is known at the time of the record: the intent
/// names what is about to be created, the completion adds what creation produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Resource {
    /// A process tree: its cgroup (cgroup mode), its process group, the marker every member
    /// inherits, and the processes known by pid and start time.
    ProcessTree {
        /// The tree's cgroup, when it has one (known before the spawn: it is made first).
        cgroup: Option<PathBuf>,
        /// The marker value (`CLOSEOUT_TREE`) every member inherits.
        marker: String,
        /// The process group (the child's pid), once spawned.
        pgid: Option<u32>,
        /// Processes of the tree, once spawned.
        pids: Vec<ProcessId>,
    },
    /// A path this owner creates and removes: a temp dir, a lock file, a socket file.
    Path {
        /// Where.
        path: PathBuf,
        /// What it is.
        what: PathKind,
        /// The object, once created: reap removes the path only while it is still this one.
        id: Option<FileId>,
    },
    /// A command to run at reap time, for anything closeout does not know (a container, a
    /// test database). Program and arguments are recorded verbatim; no shell is involved.
    Command {
        /// The program.
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// How long the reap lets it run, in milliseconds.
        timeout_ms: u64,
    },
    /// A resource another crate knows how to reap: `kind` names the handler a reap needs
    /// ([`ReapOptions::handler`](crate::ReapOptions::handler)), `data` is the handler's. A
    /// `closeout-fs` transaction is one (`closeout-fs/transaction`, its directory).
    Custom {
        /// Which handler reaps it.
        kind: String,
        /// What the handler needs.
        data: serde_json::Value,
    },
}

/// What kind of object a [`Resource::Path`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// A directory, removed with its contents.
    Dir,
    /// A regular file (a lock file, a pid file).
    File,
    /// A Unix socket file.
    Socket,
}

/// The first line of every owner file: who the owner is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Format version (1).
    pub version: u32,
    /// The boot the owner ran in.
    pub boot_id: String,
    /// The owner process.
    pub owner: ProcessId,
    /// Its command line.
    pub cmdline: Vec<String>,
    /// When the file was made, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// One line of an owner log: the header, or an operation on one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Line {
    /// Who the owner is (the first line).
    Owner(Header),
    /// About to create `resource` (written durably before it exists).
    Intent {
        /// The record's number.
        id: u64,
        /// What is about to be created.
        resource: Resource,
    },
    /// Created: `resource` now says what creation produced.
    Complete {
        /// The record's number.
        id: u64,
        /// What exists now.
        resource: Resource,
    },
    /// Released (by its owner, or reaped).
    Release {
        /// The record's number.
        id: u64,
    },
    /// A reap tried and failed (kept for the next reap).
    Failed {
        /// The record's number.
        id: u64,
        /// Why.
        error: String,
    },
}

/// One resource as the journal knows it after replaying an owner file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Its number in the owner's file.
    pub id: u64,
    /// The latest description (the completion's, else the intent's).
    pub resource: Resource,
    /// Whether creation completed (else the owner died between the intent and the completion,
    /// and the resource may or may not exist).
    pub completed: bool,
    /// The last reap failure, if a reap failed on it before.
    pub last_error: Option<String>,
}

/// Replays lines into the header and the records not released yet, in id order.
///
/// ```
/// let (header, records) = closeout_journal::replay(&[]);
/// assert!(header.is_none() && records.is_empty());
/// ```
pub fn replay(lines: &[Line]) -> (Option<Header>, Vec<Record>) {
    let mut header = None;
    let mut records: std::collections::BTreeMap<u64, Record> = std::collections::BTreeMap::new();
    for line in lines {
        match line {
            Line::Owner(h) => header = Some(h.clone()),
            Line::Intent { id, resource } => {
                records.insert(
                    *id,
                    Record { id: *id, resource: resource.clone(), completed: false, last_error: None },
                );
            }
            Line::Complete { id, resource } => {
                if let Some(r) = records.get_mut(id) {
                    r.resource = resource.clone();
                    r.completed = true;
                }
            }
            Line::Release { id } => {
                records.remove(id);
            }
            Line::Failed { id, error } => {
                if let Some(r) = records.get_mut(id) {
                    r.last_error = Some(error.clone());
                }
            }
        }
    }
    (header, records.into_values().collect())
}

/// The longest a reap lets a recorded command run.
pub const MAX_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Resource {
    /// A command for the reap to run (program and arguments verbatim, no shell), with how long
    /// it may take.
    ///
    /// # Errors
    ///
    /// [`JournalError::Invalid`](crate::JournalError::Invalid) for an empty program, a zero
    /// timeout, or one above [`MAX_COMMAND_TIMEOUT`].
    ///
    /// ```
    /// use closeout_journal::Resource;
    /// use std::time::Duration;
    /// let stop = Resource::command("docker", ["rm", "-f", "test-db"], Duration::from_secs(30))?;
    /// assert!(Resource::command("docker", ["rm"], Duration::ZERO).is_err());
    /// assert!(Resource::command("docker", ["rm"], Duration::MAX).is_err());
    /// # let _ = stop;
    /// # Ok::<(), closeout_journal::JournalError>(())
    /// ```
    pub fn command<S: Into<String>>(
        program: impl Into<String>,
        args: impl IntoIterator<Item = S>,
        timeout: std::time::Duration,
    ) -> Result<Resource, crate::JournalError> {
        let program = program.into();
        if program.is_empty() {
            return Err(crate::JournalError::Invalid("a command needs a program".into()));
        }
        if timeout.is_zero() || timeout > MAX_COMMAND_TIMEOUT {
            return Err(crate::JournalError::Invalid(format!(
                "a command's timeout must be above zero and at most {MAX_COMMAND_TIMEOUT:?}, not {timeout:?}"
            )));
        }
        // At most a day: the milliseconds fit.
        let timeout_ms = timeout.as_millis() as u64;
        Ok(Resource::Command { program, args: args.into_iter().map(Into::into).collect(), timeout_ms })
    }
}
