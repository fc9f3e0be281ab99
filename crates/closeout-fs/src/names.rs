//! The names of the files closeout-fs makes next to a user's files: temp files, backups, set-aside
//! originals and transaction intent records. One format, made and parsed here, so that
//! [`recover`](crate::recover) and [`Transaction::recover`](crate::Transaction::recover) remove
//! exactly what they made and never a user's file whose name merely looks similar.
//!
//! `.<base>.closeout-<kind>.<pid>-<start>.<n>`: `base` is the file's own name (shortened with a
//! hash when the whole would pass the 255-byte limit of a file name), `pid` and `start` (the
//! process's start time in clock ticks since boot, from `/proc`) name the owner exactly, so a
//! reused pid is never taken for a live owner, and `n` makes the name unique.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicU64, Ordering};

/// The longest file name Linux filesystems take, in bytes.
const NAME_MAX: usize = 255;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// What a made file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An [`AtomicFile`](crate::AtomicFile)'s new content, before the rename.
    Tmp,
    /// A committed [`AtomicFile`](crate::AtomicFile)'s previous version.
    Bak,
    /// An original a [`Transaction`](crate::Transaction) set aside.
    Aside,
    /// A [`Transaction`](crate::Transaction)'s intent record.
    Intent,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Tmp => ".closeout-tmp.",
            Kind::Bak => ".closeout-bak.",
            Kind::Aside => ".closeout-txn.",
            Kind::Intent => ".closeout-intent.",
        }
    }

    const ALL: [Kind; 4] = [Kind::Tmp, Kind::Bak, Kind::Aside, Kind::Intent];
}

/// A process, exactly: its pid and its start time, so a later process with the same pid is
/// a different owner.
pub(crate) type Owner = closeout_journal::ProcessId;

/// A new name of `kind` for a file made beside `name`, owned by this process; it always fits
/// in a file name.
pub(crate) fn make(name: &OsStr, kind: Kind) -> OsString {
    let owner = Owner::current();
    let tail =
        format!("{}{}-{}.{}", kind.tag(), owner.pid, owner.start, NEXT.fetch_add(1, Ordering::Relaxed));
    let room = NAME_MAX - 1 - tail.len();
    let mut out = Vec::with_capacity(NAME_MAX);
    out.push(b'.');
    let base = name.as_bytes();
    if base.len() <= room {
        out.extend_from_slice(base);
    } else {
        // A prefix and a hash of the whole name: still recognisable, still unique.
        let hash = format!("~{:016x}", fnv1a(base));
        out.extend_from_slice(&base[..room - hash.len()]);
        out.extend_from_slice(hash.as_bytes());
    }
    out.extend_from_slice(tail.as_bytes());
    OsString::from_vec(out)
}

/// The kind and owner of a name that [`make`] made; `None` for any other name, however close.
pub(crate) fn parse(name: &OsStr) -> Option<(Kind, Owner)> {
    // A base that is not UTF-8 is fine: only the (ASCII) tail must be ours.
    let name = String::from_utf8_lossy(name.as_bytes());
    if !name.starts_with('.') {
        return None;
    }
    for kind in Kind::ALL {
        let Some((base, tail)) = name.rsplit_once(kind.tag()) else { continue };
        if base.len() < 2 {
            return None;
        }
        let (owner, n) = tail.split_once('.')?;
        let (pid, start) = owner.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(pid) && digits(start) && digits(n)) {
            return None;
        }
        return Some((kind, Owner { pid: pid.parse().ok()?, start: start.parse().ok()? }));
    }
    None
}

/// FNV-1a, 64 bits: a stable hash for shortened names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_names_fit_parse_back_and_name_this_process() {
        for len in [1, 10, 200, 230, 254, 255] {
            let base = OsString::from("n".repeat(len));
            for kind in Kind::ALL {
                let made = make(&base, kind);
                assert!(made.len() <= NAME_MAX, "{len} {kind:?}: {} bytes", made.len());
                assert_eq!(parse(&made), Some((kind, Owner::current())), "{made:?}");
            }
        }
        assert!(Owner::current().is_alive());
    }

    #[test]
    fn names_that_only_look_like_ours_are_not_ours() {
        for name in [
            "report.closeout-tmp.1-2.3",  // no leading dot
            ".x.closeout-tmp.12.3",       // no start time
            ".x.closeout-tmp.12-abc.3",   // not digits
            ".x.closeout-tmp.12-3.4.bak", // something after
            ".x.closeout-tmp.-3.4",       // empty pid
            ".closeout-tmp.1-2.3",        // no base
            "my.closeout-bak.notes",      // a user's file
            ".x.closeout-tmp.1-2.",       // empty n
        ] {
            assert_eq!(parse(OsStr::new(name)), None, "{name}");
        }
    }
}
