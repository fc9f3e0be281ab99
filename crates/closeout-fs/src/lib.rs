//! Files that are released properly.
//!
//! Why: the file left half-written by a crash, the temp file nobody removed, the lock file of a
//! process that died, the directory tree a failed setup left behind, the path that escaped its
//! sandbox through a symlink. Each helper here releases what it creates on every path, and can
//! register that release in a [`closeout`] [`Scope`](closeout::Scope) or
//! [`Registry`](closeout::Registry) (category `File`).
//!
//! - [`AtomicFile`]: replaced all at once or not at all, never with wider permissions;
//!   [`recover`] removes the temp files and backups of writers that were killed, and nothing
//!   else.
//! - [`FileLock`]: exclusive and shared advisory locks with a timeout; the lock file records
//!   its owner's pid and is free again the moment that owner dies.
//! - [`Transaction`]: writes, copies, moves and deletes applied all or nothing, even across a
//!   crash: a durable intent record precedes every effect, and [`Transaction::recover`] rolls
//!   back (or finishes) the transaction of an owner that was killed.
//! - [`DirBuilder`]: rolls back exactly the directories it created.
//! - [`temp_dir`], [`temp_dir_in`]: temp directories removed by their scope or registry.
//! - [`Dir`]: every helper works inside a directory, optionally confined so that no `..`,
//!   absolute path or symlink can lead outside it (`openat2` with `RESOLVE_BENEATH`).
//!
//! ```
//! use closeout_fs::{Dir, Transaction};
//! let tmp = tempfile::tempdir()?;
//! let root = Dir::confined(tmp.path())?;
//! Transaction::new(&root).write("a.txt", "A").write("b.txt", "B").apply()?;
//! assert_eq!(root.read("b.txt")?, b"B");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Failure behaviour and limits
//!
//! Linux (and other Unixes for everything but confinement, which needs `openat2`). Every error
//! names the path and the operation. Confinement is enforced by the kernel at each open; it
//! does not protect against another process with the same rights changing the tree between
//! two operations of a [`Transaction`].
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

mod atomic;
mod builder;
mod dir;
mod error;
mod fd;
mod lock;
mod names;
mod temp;
mod txn;

pub use atomic::{AtomicFile, Committed, recover};
pub use builder::DirBuilder;
pub use dir::Dir;
pub use error::FsError;
pub use fd::{adopt_fd, close_fd};
pub use lock::FileLock;
pub use temp::{temp_dir, temp_dir_in};
pub use txn::{TRANSACTION_KIND, Transaction, reap_transactions};
