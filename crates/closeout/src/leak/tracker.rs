//! [`Tracker`]: the table of live tracked objects, and [`LeakToken`], one entry in it.
//!
//! The table is sharded: each thread records into the shard its number picks, under that
//! shard's own lock, so threads tracking at once do not contend; a token removes its record
//! from whichever shard holds it. Each shard is a slab of fixed chunks ([`ChunkVec`]: no
//! doubling slack, no moves) with a free list threaded through its vacant records, and every
//! record carries a generation so a stale token can never remove a newer record in a reused
//! slot (invariants T1–T3 on `Shard`). Lock order: one shard lock at a time, never nested;
//! `THREAD_NAMES` is taken with no shard lock held.

use std::any::Any;
use std::backtrace::Backtrace;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};
use std::time::Duration;

use crate::chunked::ChunkVec;
use crate::clock;
use crate::leak::mode::Mode;

const SHARDS: usize = 32;
const IDX_BITS: u32 = 27;
/// Records the global tracker reports besides its own (a watched registry's stale resources),
/// set by the side that has them, so the tracker depends on nothing that uses it.
static GLOBAL_SOURCE: std::sync::OnceLock<fn() -> Vec<LeakRecord>> = std::sync::OnceLock::new();

/// Adds `source` to what the global tracker's [`Tracker::live`] reports (once per process).
pub(crate) fn set_global_source(source: fn() -> Vec<LeakRecord>) {
    let _ = GLOBAL_SOURCE.set(source);
}

/// The kind recorded for an object tracked with an empty kind.
pub(crate) const EMPTY_KIND: &str = "(no kind)";
/// `level` before the global tracker has read `CLOSEOUT_LEAK`.
const UNSET: u8 = 0x7f;
/// A bit of the global tracker's `level`: some thread has [entered](Tracker::enter) a tracker
/// of its own, so [`Tracker::current`] must look at the thread's routing before it records.
/// Only the global table ever carries it; every reader of a mode masks it off.
const ROUTE: u8 = 0x80;

/// One live tracked object, as stored: 40 bytes. A vacant record is a link in its shard's free
/// list (`thread` holds the next free index), so the free list costs no memory of its own.
struct Record {
    kind: &'static str,
    /// The name and the backtrace, out of line: most objects have neither.
    extra: Option<Box<Extra>>,
    created: clock::Stamp,
    /// The tracking thread's number; in a vacant record, the next vacant index (or `NONE`).
    thread: u32,
    generation: u32,
}

/// What only some records carry.
struct Extra {
    name: Option<Box<str>>,
    backtrace: Option<Arc<Backtrace>>,
}

/// The end of a shard's free list.
const NONE: u32 = u32::MAX;

impl Record {
    const VACANT: Record =
        Record { kind: "", extra: None, created: clock::ZERO, thread: NONE, generation: 0 };

    fn is_vacant(&self) -> bool {
        self.kind.is_empty()
    }

    fn name(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.name.as_deref())
    }

    fn backtrace(&self) -> Option<&Arc<Backtrace>> {
        self.extra.as_ref().and_then(|e| e.backtrace.as_ref())
    }
}

impl Extra {
    /// Nothing to store out of line when there is neither a name nor a backtrace.
    #[inline]
    fn new(name: Option<Box<str>>, backtrace: Option<Arc<Backtrace>>) -> Option<Box<Extra>> {
        (name.is_some() || backtrace.is_some()).then(|| Box::new(Extra { name, backtrace }))
    }
}

/// One shard's slab.
///
/// # Invariants
///
/// T1. A vacant record is on the free list exactly once (linked through `thread`, headed by
///     `free`), and every index on the free list is vacant.
/// T2. `len` counts the occupied records.
/// T3. A record's generation changes only when it is vacated, so a key (index + generation)
///     names at most one occupancy.
struct Shard {
    records: ChunkVec<Record>,
    free: u32,
    len: usize,
    /// Objects tracked through an `Arc`: live while a strong reference is.
    weak: Vec<(u32, Weak<dyn Any + Send + Sync>)>,
    /// The newest creation stamp: stamps in a shard strictly increase (the coarse clock ticks
    /// in milliseconds), so `live()` lists a thread's objects in creation order even when their
    /// slots were reused.
    last: clock::Stamp,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard::new()
    }
}

impl Shard {
    fn slot(&mut self, idx: u32) -> &mut Record {
        &mut self.records[idx as usize]
    }

    /// Stores `record` (made and timed by the caller, outside the lock) with the slot's
    /// generation.
    #[inline]
    fn insert(&mut self, record: Record) -> (u32, u32) {
        let idx = if self.free != NONE {
            // Invariant T1: the head of the free list is vacant.
            let idx = self.free;
            self.free = self.slot(idx).thread;
            idx
        } else {
            // A key has 27 index bits: 2^27 live records in one shard would be 5 GiB of them.
            self.records.push(Record::VACANT) as u32
        };
        let created = record.created.max(self.last.saturating_add(1));
        self.last = created;
        let slot = self.slot(idx);
        let generation = slot.generation;
        *slot = Record { generation, created, ..record };
        self.len += 1;
        (idx, generation)
    }

    /// Vacates `idx` if it still holds `generation`; returns what must be dropped outside the
    /// lock.
    #[inline]
    fn remove(&mut self, idx: u32, generation: u32) -> Option<Record> {
        let free = self.free;
        let slot = self.records.get_mut(idx as usize)?;
        if slot.is_vacant() || slot.generation != generation {
            return None;
        }
        // Invariant T3: a new generation; T1: the vacated index heads the free list.
        let next = Record { generation: generation.wrapping_add(1), thread: free, ..Record::VACANT };
        let old = std::mem::replace(slot, next);
        self.free = idx;
        self.len -= 1;
        Some(old)
    }

    /// Drops the records of `Arc`s whose last strong reference is gone.
    fn prune(&mut self) -> Vec<Record> {
        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.weak.len() {
            if self.weak[i].1.strong_count() == 0 {
                let (idx, _) = self.weak.swap_remove(i);
                let generation = self.slot(idx).generation;
                gone.extend(self.remove(idx, generation));
            } else {
                i += 1;
            }
        }
        gone
    }
}

/// One shard, on cache lines of its own: threads working on neighbouring shards must not
/// invalidate each other's lines.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// The shared state of a tracker.
pub(crate) struct Inner {
    level: AtomicU8,
    sample: AtomicU32,
    shards: [Padded; SHARDS],
}

impl Inner {
    const fn new(level: u8) -> Inner {
        Inner {
            level: AtomicU8::new(level),
            sample: AtomicU32::new(1),
            shards: [const { Padded(Mutex::new(Shard::new())) }; SHARDS],
        }
    }

    fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        // Only slab bookkeeping happens under a shard lock; a poisoned one is still consistent.
        crate::sync::lock_std(&self.shards[i].0)
    }

    fn set_mode(&self, mode: Mode) {
        let (level, n) = mode.encode();
        self.sample.store(n, Ordering::Relaxed);
        // The routing bit is not the mode's: keep it as `enter`/`exit` left it.
        let _ =
            self.level.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| Some(level | (old & ROUTE)));
    }

    /// The mode's level, without the routing bit.
    #[inline(always)]
    fn level(&self) -> u8 {
        self.level.load(Ordering::Relaxed) & !ROUTE
    }

    fn mode(&self) -> Mode {
        Mode::decode(self.level(), self.sample.load(Ordering::Relaxed))
    }

    /// The cheap part of tracking: whether this object is recorded, and with a backtrace. `Off`
    /// is one relaxed load and a branch, inlined into the caller; every other mode goes out of
    /// line.
    #[inline(always)]
    fn admit(&self) -> Option<bool> {
        // Relaxed: the mode is a hint read on every track; a change may take effect a little
        // late on other threads, which `set_mode` documents.
        match self.level() {
            0 => None,
            level => self.admit_slow(level),
        }
    }

    #[inline(never)]
    fn admit_slow(&self, level: u8) -> Option<bool> {
        match level {
            1 => {
                let n = self.sample.load(Ordering::Relaxed);
                SAMPLE.with(|c| {
                    let next = c.get() + 1;
                    if next >= n {
                        c.set(0);
                        Some(false)
                    } else {
                        c.set(next);
                        None
                    }
                })
            }
            2 => Some(false),
            UNSET => {
                init_global();
                self.admit()
            }
            _ => Some(true),
        }
    }

    #[inline(never)]
    fn insert(&self, kind: &'static str, name: Option<Box<str>>, backtrace: bool) -> u64 {
        let backtrace = backtrace.then(|| Arc::new(Backtrace::force_capture()));
        self.insert_record(kind, name, backtrace, clock::now())
    }

    /// Records in this thread's shard; returns the record's key.
    fn insert_record(
        &self,
        kind: &'static str,
        name: Option<Box<str>>,
        backtrace: Option<Arc<Backtrace>>,
        created: clock::Stamp,
    ) -> u64 {
        let thread = thread_number();
        let shard = thread as usize % SHARDS;
        // An empty kind would read as a vacant slot (`Record::is_vacant`); an empty name as no
        // name at all, which `LeakRecord::name` then generates.
        let kind = if kind.is_empty() { EMPTY_KIND } else { kind };
        let name = name.filter(|n| !n.is_empty());
        let record = Record { kind, extra: Extra::new(name, backtrace), created, thread, generation: 0 };
        let (idx, generation) = self.shard(shard).insert(record);
        key(shard, idx, generation)
    }

    #[inline(never)]
    fn remove(&self, key: u64) {
        let (shard, idx, generation) = unkey(key);
        // Dropped after the lock is released: a name and a backtrace to free.
        let _old = self.shard(shard).remove(idx, generation);
    }
}

impl Shard {
    const fn new() -> Shard {
        Shard { records: ChunkVec::new(), free: NONE, len: 0, weak: Vec::new(), last: clock::ZERO }
    }
}

fn key(shard: usize, idx: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | ((shard as u64) << IDX_BITS) | u64::from(idx)
}

fn unkey(key: u64) -> (usize, u32, u32) {
    let low = key as u32;
    ((low >> IDX_BITS) as usize, low & ((1 << IDX_BITS) - 1), (key >> 32) as u32)
}

static GLOBAL: Inner = Inner::new(UNSET);
static GLOBAL_INIT: Once = Once::new();

fn init_global() {
    GLOBAL_INIT.call_once(|| {
        if GLOBAL.level() == UNSET {
            GLOBAL.set_mode(Mode::default_for_build());
        }
    });
}

thread_local! {
    static SAMPLE: Cell<u32> = const { Cell::new(0) };
    static THREAD: Cell<u32> = const { Cell::new(0) };
    /// The tracker this thread [entered](Tracker::enter), if any.
    static ROUTED: RefCell<Option<Tracker>> = const { RefCell::new(None) };
}

/// How many threads have entered a tracker. Invariant R1: the global table's `ROUTE` bit is set
/// exactly while this is above zero; both change together under this lock. A thread's own
/// lookups need no more ordering than that: the thread that enters sets the bit itself, before
/// its first lookup, and other threads route nothing.
static ROUTED_THREADS: Mutex<usize> = Mutex::new(0);

static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);
/// Names of the threads that tracked something, by number, so a report can name a thread that
/// has since ended.
static THREAD_NAMES: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());

/// This thread's number (1, 2, …), assigned on first use.
fn thread_number() -> u32 {
    THREAD.with(|t| {
        let n = t.get();
        if n != 0 {
            return n;
        }
        let n = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        t.set(n);
        let mut names = crate::sync::lock_std(&THREAD_NAMES);
        let i = n as usize;
        if names.len() <= i {
            names.resize(i + 1, None);
        }
        names[i] = std::thread::current().name().map(str::to_owned);
        n
    })
}

fn thread_name(n: u32) -> String {
    let names = crate::sync::lock_std(&THREAD_NAMES);
    match names.get(n as usize).cloned().flatten() {
        Some(name) => format!("{name} (#{n})"),
        None => format!("#{n}"),
    }
}

/// A tracker's table is `'static`, so a token refers to it with a plain reference: no
/// reference count to bump per token, which would be one cache line all threads fight over. A
/// separate tracker's table is leaked for that (a few KiB, once per [`Tracker::new`]); its
/// records are freed when the last [`Tracker`] handle to it is dropped.
#[derive(Clone)]
enum Handle {
    Global,
    Local(Arc<Owned>),
    /// The thread's entered tracker if it has one, else the global one, looked up per call.
    Current,
}

/// Clears a separate tracker's records when its last handle goes.
struct Owned(&'static Inner);

impl Drop for Owned {
    fn drop(&mut self) {
        // No handle is left to create records: free the whole table. A token still alive finds
        // its slot gone and does nothing.
        for i in 0..SHARDS {
            let old = std::mem::take(&mut *self.0.shard(i));
            drop(old);
        }
    }
}

impl Handle {
    #[inline(always)]
    fn inner(&self) -> &'static Inner {
        match self {
            Handle::Global | Handle::Current => &GLOBAL,
            Handle::Local(owned) => owned.0,
        }
    }

    /// The table this handle records into now: for `Current`, the entered tracker's while
    /// this thread has one. A plain reference (every table is `'static`): no reference count
    /// is touched, so a separate tracker's `Full` path pays nothing for routing.
    fn table(&self) -> &'static Inner {
        match self {
            Handle::Current if GLOBAL.level.load(Ordering::Relaxed) & ROUTE != 0 => {
                ROUTED.with(|r| r.borrow().as_ref().map_or(&GLOBAL, |t| t.0.table()))
            }
            other => other.inner(),
        }
    }
}

/// While alive, [`Tracker::current`] on this thread is the tracker it was made from; dropping
/// it restores what was current before. Made by [`Tracker::enter`]; not `Send`, because the
/// routing belongs to the thread that entered.
#[must_use = "the tracker is current only while the guard lives"]
pub struct Entered {
    previous: Option<Tracker>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl fmt::Debug for Entered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entered").finish_non_exhaustive()
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // `try_with`: during thread exit the slot may be gone; the count must still go down.
        let _ = ROUTED.try_with(|r| *r.borrow_mut() = previous);
        let mut n = crate::sync::lock_std(&ROUTED_THREADS);
        *n -= 1;
        if *n == 0 {
            GLOBAL.level.fetch_and(!ROUTE, Ordering::Relaxed);
        }
    }
}

/// A table of live tracked objects. [`Tracker::global`] is the process-wide one the free
/// functions of [`leak`](crate::leak) use; [`Tracker::new`] makes a separate one, to isolate a
/// test or a subsystem.
///
/// ```
/// use closeout::leak::{Mode, Tracker};
/// let tracker = Tracker::new(Mode::Full);
/// let token = tracker.token("connection");
/// assert_eq!(tracker.live().len(), 1);
/// drop(token);
/// assert!(tracker.live().is_empty());
/// ```
#[derive(Clone)]
pub struct Tracker(Handle);

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker").field("mode", &self.mode()).field("live", &self.len()).finish()
    }
}

impl Tracker {
    /// A separate tracker in `mode`.
    pub fn new(mode: Mode) -> Tracker {
        let inner: &'static Inner = Box::leak(Box::new(Inner::new(0)));
        inner.set_mode(mode);
        Tracker(Handle::Local(Arc::new(Owned(inner))))
    }

    /// The process-wide tracker. Its mode comes from `CLOSEOUT_LEAK` on first use (see
    /// [`Mode::default_for_build`]) unless [`set_mode`](Tracker::set_mode) set it first.
    pub fn global() -> Tracker {
        Tracker(Handle::Global)
    }

    /// The tracker objects made on this thread are recorded in: the one this thread
    /// [entered](Tracker::enter), else the global one. [`Tracked::new`](crate::leak::Tracked::new),
    /// [`track`](crate::leak::track), [`LeakCheck::new`](crate::leak::LeakCheck::new) and the
    /// records of a dropped registry use it, so a test that enters a tracker of its own sees
    /// exactly its own objects even while other tests run on other threads.
    ///
    /// Looked up at each use: while no thread has entered a tracker this costs nothing over the
    /// global one (`Off` stays one load and a branch); while one has, each record made through it
    /// reads a thread-local.
    ///
    /// ```
    /// use closeout::leak::{Mode, Tracked, Tracker};
    /// let mine = Tracker::new(Mode::Full);
    /// {
    ///     let _entered = mine.enter();
    ///     let _conn = Tracked::new(7u8); // recorded in `mine`, not in the global tracker
    ///     assert_eq!(mine.len(), 1);
    ///     assert_eq!(Tracker::current().len(), 1);
    /// }
    /// assert!(mine.is_empty());
    /// ```
    pub fn current() -> Tracker {
        Tracker(Handle::Current)
    }

    /// Makes this tracker [current](Tracker::current) on this thread until the guard is dropped
    /// (guards nest; each restores the one before). Threads this thread starts are not routed:
    /// enter the tracker on them too (a runtime's `on_thread_start` can), or their objects go to
    /// the global tracker.
    ///
    /// ```
    /// use closeout::leak::{LeakToken, Mode, Tracker};
    /// let tracker = Tracker::new(Mode::Full);
    /// let entered = tracker.enter();
    /// let token = LeakToken::new("socket");
    /// assert_eq!(tracker.live()[0].kind(), "socket");
    /// drop((token, entered));
    /// ```
    pub fn enter(&self) -> Entered {
        {
            let mut n = crate::sync::lock_std(&ROUTED_THREADS);
            *n += 1;
            if *n == 1 {
                GLOBAL.level.fetch_or(ROUTE, Ordering::Relaxed);
            }
        }
        // `Current` is entered as whatever it stands for now (not as itself: that would
        // route to itself).
        let this = match &self.0 {
            Handle::Current => ROUTED.with(|r| r.borrow().clone()).unwrap_or_else(Tracker::global),
            _ => self.clone(),
        };
        let previous = ROUTED.with(|r| r.borrow_mut().replace(this));
        Entered { previous, _not_send: std::marker::PhantomData }
    }

    /// Changes the mode; objects already tracked stay tracked.
    pub fn set_mode(&self, mode: Mode) {
        let table = self.0.table();
        if std::ptr::eq(table, &GLOBAL) {
            // Whatever the environment says is overridden from now on.
            GLOBAL_INIT.call_once(|| ());
        }
        table.set_mode(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        let table = self.0.table();
        if std::ptr::eq(table, &GLOBAL) {
            init_global();
        }
        table.mode()
    }

    /// Tracks one object of `kind` until the token is dropped.
    #[inline]
    pub fn token(&self, kind: &'static str) -> LeakToken {
        self.token_inner(kind, None)
    }

    /// Like [`token`](Tracker::token), with a name for the report.
    pub fn token_named(&self, kind: &'static str, name: impl Into<Cow<'static, str>>) -> LeakToken {
        let name = name.into();
        self.token_inner(kind, Some(name))
    }

    #[inline(always)]
    fn token_inner(&self, kind: &'static str, name: Option<Cow<'static, str>>) -> LeakToken {
        // `Off` and nobody routed: one relaxed load and a branch (see `admit`).
        if self.0.inner().level.load(Ordering::Relaxed) == 0 {
            return LeakToken { table: None, key: 0 };
        }
        self.token_slow(kind, name)
    }

    #[inline(never)]
    fn token_slow(&self, kind: &'static str, name: Option<Cow<'static, str>>) -> LeakToken {
        let inner = self.0.table();
        match inner.admit() {
            None => LeakToken { table: None, key: 0 },
            Some(backtrace) => {
                let key = inner.insert(kind, name.map(|n| n.into_owned().into_boxed_str()), backtrace);
                LeakToken { table: Some(inner), key }
            }
        }
    }

    /// Tracks an `Arc`'s value until its last strong reference is gone (held only weakly, so
    /// tracking never keeps it alive). A reference cycle shows up here as an object that never
    /// goes away.
    ///
    /// ```
    /// use closeout::leak::{Mode, Tracker};
    /// use std::sync::Arc;
    /// let tracker = Tracker::new(Mode::Full);
    /// let shared = Arc::new(5);
    /// tracker.track_arc(&shared, "config");
    /// assert_eq!(tracker.live().len(), 1);
    /// drop(shared);
    /// assert!(tracker.live().is_empty());
    /// ```
    pub fn track_arc<T: Send + Sync + 'static>(&self, arc: &Arc<T>, kind: &'static str) {
        let inner = self.0.table();
        let Some(backtrace) = inner.admit() else { return };
        let key = inner.insert(kind, None, backtrace);
        let (shard, idx, _) = unkey(key);
        let weak: Weak<dyn Any + Send + Sync> = Arc::downgrade(arc) as Weak<dyn Any + Send + Sync>;
        inner.shard(shard).weak.push((idx, weak));
    }

    /// Records a finding that stays until [`clear`](Tracker::clear): something that was leaked
    /// for good (a registry dropped with resources), with its creation time `age` ago.
    pub(crate) fn record_leaked(
        &self,
        kind: &'static str,
        name: String,
        age: Duration,
        backtrace: Option<Arc<Backtrace>>,
    ) {
        let inner = self.0.table();
        if inner.admit().is_none() {
            return;
        }
        inner.insert_record(kind, Some(name.into_boxed_str()), backtrace, clock::before(age));
    }

    /// How many objects are tracked now (`Arc`s whose value is gone included until the next
    /// [`live`](Tracker::live)).
    pub fn len(&self) -> usize {
        let inner = self.0.table();
        (0..SHARDS).map(|i| inner.shard(i).len).sum()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live tracked object, oldest first.
    pub fn live(&self) -> Vec<LeakRecord> {
        let inner = self.0.table();
        let now = clock::now();
        let mut out = Vec::new();
        for i in 0..SHARDS {
            let gone;
            {
                let mut shard = inner.shard(i);
                gone = shard.prune();
                for (idx, r) in shard.records.iter().enumerate() {
                    if !r.is_vacant() {
                        out.push(LeakRecord {
                            id: key(i, idx as u32, r.generation),
                            kind: r.kind,
                            name: r.name().map(str::to_owned),
                            age: clock::between(r.created, now),
                            thread: r.thread,
                            backtrace: r.backtrace().cloned(),
                            created: r.created,
                        });
                    }
                }
            }
            drop(gone);
        }
        if std::ptr::eq(inner, &GLOBAL)
            && let Some(source) = GLOBAL_SOURCE.get()
        {
            out.extend(source());
        }
        // Oldest first; a shard's stamps strictly increase, so only objects of different threads
        // can tie, and those go by thread.
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.thread.cmp(&b.thread)).then(a.id.cmp(&b.id)));
        out
    }

    /// Whether records are taken with backtraces now.
    /// One load on every registration; the environment is read only on the first.
    #[inline]
    pub(crate) fn wants_backtraces(&self) -> bool {
        // Relaxed: a mode is a setting read on its own, like `admit`'s.
        let raw = self.0.inner().level.load(Ordering::Relaxed);
        if raw & ROUTE != 0 && matches!(self.0, Handle::Current) {
            // Routed: the thread's tracker decides (registrations only, never the `Off` path).
            return self.mode() == Mode::Backtrace;
        }
        match raw & !ROUTE {
            UNSET => self.mode() == Mode::Backtrace,
            level => Mode::decode(level, 1) == Mode::Backtrace,
        }
    }

    /// Live objects tracked at least `age` ago, oldest first.
    pub fn live_older_than(&self, age: Duration) -> Vec<LeakRecord> {
        self.live().into_iter().filter(|r| r.age >= age).collect()
    }

    /// Live objects of `kind`, oldest first.
    pub fn live_of_kind(&self, kind: &str) -> Vec<LeakRecord> {
        self.live().into_iter().filter(|r| r.kind == kind).collect()
    }

    /// Forgets every record (tokens still alive become inert) and returns how many there were.
    pub fn clear(&self) -> usize {
        clear_table(self.0.table())
    }
}

fn clear_table(inner: &Inner) -> usize {
    let mut n = 0;
    for i in 0..SHARDS {
        let old = {
            let mut shard = inner.shard(i);
            n += shard.len;
            let mut old = Vec::new();
            shard.weak.clear();
            for idx in 0..shard.records.len() as u32 {
                let generation = shard.slot(idx).generation;
                old.extend(shard.remove(idx, generation));
            }
            old
        };
        drop(old);
    }
    n
}

/// One live tracked object.
#[derive(Clone, Debug)]
pub struct LeakRecord {
    id: u64,
    kind: &'static str,
    name: Option<String>,
    age: Duration,
    thread: u32,
    backtrace: Option<Arc<Backtrace>>,
    /// The creation stamp, which orders records exactly (ages are rounded to the clock).
    created: clock::Stamp,
}

impl LeakRecord {
    pub(crate) fn synthetic(
        id: u64,
        kind: &'static str,
        name: String,
        age: Duration,
        backtrace: Option<Arc<Backtrace>>,
    ) -> LeakRecord {
        LeakRecord { id, kind, name: Some(name), age, thread: 0, backtrace, created: clock::before(age) }
    }

    /// Unique among the records of its tracker.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What it is (a type name for [`Tracked`](crate::leak::Tracked)).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Its name: the one given, or `kind#id`.
    pub fn name(&self) -> Cow<'_, str> {
        match &self.name {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(format!("{}#{}", self.kind, self.id)),
        }
    }

    /// How long ago it was tracked (millisecond resolution on Linux).
    pub fn age(&self) -> Duration {
        self.age
    }

    /// The thread that tracked it, by name when it had one.
    pub fn thread(&self) -> String {
        thread_name(self.thread)
    }

    /// Where it was created, in [`Mode::Backtrace`].
    pub fn backtrace(&self) -> Option<&Backtrace> {
        self.backtrace.as_deref()
    }
}

/// Tracks one object for as long as it lives: put it in a field of your own type, or use
/// [`Tracked`](crate::leak::Tracked). Dropping it untracks. In [`Mode::Off`] (and for objects a
/// sample skips) it is inert and costs nothing to drop.
///
/// ```
/// use closeout::leak::{LeakToken, Mode, Tracker};
///
/// struct Connection {
///     _leak: LeakToken,
/// }
///
/// let tracker = Tracker::new(Mode::Full);
/// let conn = Connection { _leak: tracker.token("connection") };
/// assert_eq!(tracker.live()[0].kind(), "connection");
/// drop(conn);
/// assert!(tracker.is_empty());
/// ```
#[must_use = "dropping the token untracks the object at once"]
pub struct LeakToken {
    table: Option<&'static Inner>,
    key: u64,
}

impl LeakToken {
    /// Tracks one object of `kind` in the global tracker.
    #[inline]
    pub fn new(kind: &'static str) -> LeakToken {
        Tracker::current().token(kind)
    }

    /// Whether this token holds a record (false in `Off` mode or when sampled out).
    pub fn is_tracked(&self) -> bool {
        self.table.is_some()
    }
}

impl Drop for LeakToken {
    #[inline]
    fn drop(&mut self) {
        if let Some(table) = self.table {
            table.remove(self.key);
        }
    }
}

impl fmt::Debug for LeakToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakToken").field("tracked", &self.is_tracked()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_small() {
        assert!(std::mem::size_of::<Record>() <= 40, "Record is {} bytes", std::mem::size_of::<Record>());
    }

    #[test]
    fn keys_round_trip_and_stale_keys_miss() {
        let t = Tracker::new(Mode::Full);
        let a = t.token("a");
        let key_a = a.key;
        drop(a);
        let b = t.token("b"); // reuses the slot with the next generation
        assert_eq!(unkey(b.key).1, unkey(key_a).1);
        t.0.inner().remove(key_a); // stale: must not remove `b`
        assert_eq!(t.len(), 1);
        drop(b);
        assert_eq!(t.len(), 0);
    }
}
