//! [`LeakCheck`]: a test fails when it leaves something behind.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use crate::alloc::{HeapCounter, HeapStats};
use crate::leak::os::{OsSnapshot, snapshot};
use crate::leak::report::LeakReport;
use crate::leak::tracker::Tracker;

/// The test guard.
///
/// A snapshot at the start of a test, a check at its end: tracked objects, threads, open file
/// descriptors, child processes and alive tokio tasks that exist at the end but did not at the
/// start are leaks. Async teardown needs a moment, so the check retries with a short back-off
/// (up to [`LeakCheck::timeout`], 1 s by default) before it fails.
///
/// # Parallel tests
///
/// Threads, descriptors and child processes belong to the whole process, so another test
/// running at the same time in the same process looks like a leak of this one. Run guarded
/// tests one per process — `cargo nextest` does that for every test — or with
/// `--test-threads=1` under `cargo test`, or narrow the guard with
/// [`tracked_only`](LeakCheck::tracked_only) and a separate [`Tracker`] per test.
///
/// # Patterns
///
/// Per test:
///
/// ```
/// use closeout::leak::{LeakCheck, Tracked};
/// // `tracked_only` because doctests share a process; a real test checks the OS too.
/// let guard = LeakCheck::new().tracked_only();
/// let conn = Tracked::new(vec![1, 2, 3]);
/// drop(conn); // forget this (`std::mem::forget(conn)`) and the guard fails the test
/// guard.assert();
/// ```
///
/// For a whole test binary, put the guard in a helper every test calls, e.g.
/// `fn guarded(f: impl FnOnce()) { let g = LeakCheck::new(); f(); g.assert() }`; a guard that is
/// dropped without [`assert`](LeakCheck::assert) checks in its `Drop` (unless the test is
/// already panicking).
#[must_use = "a guard checks when it is dropped or asserted"]
pub struct LeakCheck {
    tracker: Tracker,
    tracked_before: HashSet<u64>,
    os_before: OsSnapshot,
    tasks_before: Option<usize>,
    timeout: Duration,
    os: bool,
    ignore_kinds: Vec<String>,
    ignore_names: Vec<String>,
    ignore_fds: Vec<String>,
    ignore_threads: Vec<String>,
    heap: Option<HeapBound>,
    done: bool,
}

/// A bound on heap growth and the snapshot it is measured from.
#[derive(Clone, Copy)]
struct HeapBound {
    counter: &'static dyn HeapCounter,
    before: HeapStats,
    max_growth: u64,
}

impl fmt::Debug for LeakCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakCheck")
            .field("timeout", &self.timeout)
            .field("os", &self.os)
            .finish_non_exhaustive()
    }
}

impl Default for LeakCheck {
    fn default() -> Self {
        LeakCheck::new()
    }
}

impl LeakCheck {
    /// Snapshots the [current](Tracker::current) tracker (the global one unless this thread
    /// entered another) and the OS state now.
    pub fn new() -> LeakCheck {
        LeakCheck::with_tracker(Tracker::current())
    }

    /// Snapshots `tracker` and the OS state now.
    pub fn with_tracker(tracker: Tracker) -> LeakCheck {
        let tracked_before = tracker.live().iter().map(|r| r.id()).collect();
        LeakCheck {
            tracker,
            tracked_before,
            os_before: snapshot(),
            tasks_before: alive_tasks(),
            timeout: Duration::from_secs(1),
            os: true,
            ignore_kinds: Vec::new(),
            ignore_names: Vec::new(),
            ignore_fds: Vec::new(),
            ignore_threads: Vec::new(),
            heap: None,
            done: false,
        }
    }

    /// How long the check retries before it fails (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> LeakCheck {
        self.timeout = timeout;
        self
    }

    /// Checks tracked objects only: for tests that share their process with others.
    pub fn tracked_only(mut self) -> LeakCheck {
        self.os = false;
        self
    }

    /// Ignores tracked objects of this kind.
    pub fn ignore_kind(mut self, kind: impl Into<String>) -> LeakCheck {
        self.ignore_kinds.push(kind.into());
        self
    }

    /// Ignores tracked objects with this name.
    pub fn ignore_name(mut self, name: impl Into<String>) -> LeakCheck {
        self.ignore_names.push(name.into());
        self
    }

    /// Ignores descriptors whose target contains `pattern` (e.g. `"anon_inode:[eventpoll]"`).
    pub fn ignore_fd(mut self, pattern: impl Into<String>) -> LeakCheck {
        self.ignore_fds.push(pattern.into());
        self
    }

    /// Ignores threads whose name contains `pattern` (e.g. a runtime's worker threads).
    pub fn ignore_thread(mut self, pattern: impl Into<String>) -> LeakCheck {
        self.ignore_threads.push(pattern.into());
        self
    }

    /// Also fails when the live heap counted by `counter` (usually the [`Counting`](crate::alloc::Counting)
    /// global allocator) grew by more than `max_growth_bytes` between now — the heap is
    /// snapshotted by this call — and the check. The report names the growth in bytes and
    /// blocks. Like threads and descriptors, the heap belongs to the whole process: run such
    /// tests one per process (nextest), or other tests' allocations count as this one's.
    /// Memory the standard library keeps for good counts as growth too: the first panic
    /// printed with `RUST_BACKTRACE` set loads the program's debug info (tens of MiB).
    ///
    /// ```
    /// use closeout::alloc::Counting;
    /// use closeout::leak::LeakCheck;
    ///
    /// #[global_allocator]
    /// static HEAP: Counting = Counting::system();
    ///
    /// let mut check = LeakCheck::new().tracked_only().max_heap_growth(&HEAP, 64 * 1024);
    /// let kept: &'static mut [u8] = Box::leak(vec![0u8; 1 << 20].into_boxed_slice());
    /// let leaks = check.check().unwrap_err();
    /// assert!(leaks.heap_growth().unwrap().bytes >= 1 << 20);
    /// assert!(leaks.to_string().contains("heap grew by"));
    /// # let _ = kept;
    /// ```
    pub fn max_heap_growth(mut self, counter: &'static dyn HeapCounter, max_growth_bytes: u64) -> LeakCheck {
        self.heap = Some(HeapBound { counter, before: counter.heap_stats(), max_growth: max_growth_bytes });
        self
    }

    /// What leaked now, without waiting.
    pub fn leaks_now(&self) -> Leaks {
        // First, before this check allocates anything of its own.
        let heap = self.heap.and_then(|bound| {
            let now = bound.counter.heap_stats();
            let bytes = now.live_bytes.saturating_sub(bound.before.live_bytes);
            (bytes > 0 && bytes as u64 > bound.max_growth).then(|| HeapGrowth {
                bytes: bytes as u64,
                blocks: now.live_blocks.saturating_sub(bound.before.live_blocks),
                before: bound.before.live_bytes,
                now: now.live_bytes,
                bound: bound.max_growth,
            })
        });
        let tracked: Vec<_> = self
            .tracker
            .live()
            .into_iter()
            .filter(|r| !self.tracked_before.contains(&r.id()))
            .filter(|r| !self.ignore_kinds.iter().any(|k| k == r.kind()))
            .filter(|r| !self.ignore_names.iter().any(|n| *n == r.name()))
            .collect();
        let mut leaks =
            Leaks { tracked: LeakReport::new(tracked, self.tracker.mode()), heap, ..Leaks::default() };
        if self.os {
            let now = snapshot();
            let before = &self.os_before;
            leaks.threads = now
                .threads
                .into_iter()
                .filter(|(tid, name)| {
                    !before.threads.contains_key(tid)
                        && !self.ignore_threads.iter().any(|p| name.contains(p.as_str()))
                })
                .collect();
            leaks.fds = now
                .fds
                .into_iter()
                .filter(|(fd, target)| {
                    before.fds.get(fd) != Some(target)
                        && !self.ignore_fds.iter().any(|p| target.contains(p.as_str()))
                })
                .collect();
            leaks.children = now
                .children
                .into_iter()
                .filter(|(pid, _)| !before.children.contains_key(pid))
                .map(|(pid, (cmd, state))| (pid, cmd, state))
                .collect();
        }
        if let (Some(before), Some(now)) = (self.tasks_before, alive_tasks())
            && now > before
        {
            leaks.tasks = Some((before, now));
        }
        leaks
    }

    /// Checks, retrying with a back-off (1, 2, 4 … ms) until nothing leaks or the timeout
    /// passes.
    ///
    /// # Errors
    ///
    /// [`Leaks`], listing what is still there at the timeout.
    pub fn check(&mut self) -> Result<(), Box<Leaks>> {
        self.done = true;
        let until = crate::clock::saturating_deadline(Instant::now(), self.timeout);
        let mut pause = Duration::from_millis(1);
        loop {
            let leaks = self.leaks_now();
            if leaks.is_empty() {
                return Ok(());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Box::new(leaks));
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Drops the guard without checking: for a test that already failed some other way.
    ///
    /// ```
    /// let guard = closeout::leak::LeakCheck::new().tracked_only();
    /// std::mem::forget(closeout::leak::Tracked::new(1u8));
    /// guard.dismiss(); // no check, no panic
    /// ```
    pub fn dismiss(mut self) {
        self.done = true;
    }

    /// Checks and panics with the list of leaks if there are any.
    ///
    /// # Panics
    ///
    /// When something leaked; the message lists each leak and, in backtrace mode, where it was
    /// created.
    #[track_caller]
    pub fn assert(mut self) {
        if let Err(leaks) = self.check() {
            panic!("{leaks}");
        }
    }
}

impl Drop for LeakCheck {
    fn drop(&mut self) {
        if self.done || std::thread::panicking() {
            return;
        }
        if let Err(leaks) = self.check() {
            panic!("{leaks}");
        }
    }
}

/// Alive tokio tasks of the runtime this thread is in, if any.
fn alive_tasks() -> Option<usize> {
    tokio::runtime::Handle::try_current().ok().map(|h| h.metrics().num_alive_tasks())
}

/// What a [`LeakCheck`] found.
#[derive(Clone, Debug, Default)]
pub struct Leaks {
    tracked: LeakReport,
    threads: Vec<(u32, String)>,
    fds: Vec<(u32, String)>,
    children: Vec<(u32, String, char)>,
    tasks: Option<(usize, usize)>,
    heap: Option<HeapGrowth>,
}

/// How far the live heap grew past its bound ([`LeakCheck::max_heap_growth`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeapGrowth {
    /// Bytes more alive at the check than at the snapshot.
    pub bytes: u64,
    /// Blocks more alive (may be negative: fewer, larger blocks).
    pub blocks: i64,
    /// Live bytes at the snapshot.
    pub before: i64,
    /// Live bytes at the check.
    pub now: i64,
    /// The bound that was passed.
    pub bound: u64,
}

impl Leaks {
    /// Whether nothing leaked.
    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
            && self.threads.is_empty()
            && self.fds.is_empty()
            && self.children.is_empty()
            && self.tasks.is_none()
            && self.heap.is_none()
    }

    /// The heap's growth past its bound, if a bound was set and passed.
    pub fn heap_growth(&self) -> Option<HeapGrowth> {
        self.heap
    }

    /// Tracked objects that leaked.
    pub fn tracked(&self) -> &LeakReport {
        &self.tracked
    }

    /// Threads that were started and are still running: (thread id, name).
    pub fn threads(&self) -> &[(u32, String)] {
        &self.threads
    }

    /// Descriptors opened and still open: (fd, target).
    pub fn fds(&self) -> &[(u32, String)] {
        &self.fds
    }

    /// Child processes started and not reaped: (pid, command, state).
    pub fn children(&self) -> &[(u32, String, char)] {
        &self.children
    }

    /// Alive tokio tasks (before, now), if more are alive than before.
    pub fn tasks(&self) -> Option<(usize, usize)> {
        self.tasks
    }
}

impl std::error::Error for Leaks {}

impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("closeout: no leaks");
        }
        writeln!(f, "closeout: found unexpected leaks:")?;
        if !self.tracked.is_empty() {
            writeln!(f, "{}", self.tracked)?;
        }
        for (tid, name) in &self.threads {
            writeln!(f, "- thread {tid} \"{name}\": started during the test and still running")?;
        }
        for (fd, target) in &self.fds {
            writeln!(f, "- fd {fd} -> {target}: opened during the test and still open")?;
        }
        for (pid, cmd, state) in &self.children {
            let what = if *state == 'Z' { "exited but never waited for (zombie)" } else { "still running" };
            writeln!(f, "- child process {pid} ({cmd}): {what}")?;
        }
        if let Some((before, now)) = self.tasks {
            writeln!(f, "- tokio tasks: {now} alive, {before} before the test")?;
        }
        if let Some(h) = self.heap {
            writeln!(
                f,
                "- heap grew by {} bytes in {} more block(s) ({} -> {} live bytes); the bound is {} bytes",
                h.bytes, h.blocks, h.before, h.now, h.bound
            )?;
        }
        Ok(())
    }
}
