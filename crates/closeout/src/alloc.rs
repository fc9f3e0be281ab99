//! [`Counting`]: a global allocator wrapper that counts the live heap, for memory-growth checks
//! ([`LeakCheck::max_heap_growth`](crate::leak::LeakCheck::max_heap_growth)) and memory
//! monitoring. Opt-in: it counts only once a program makes it the global allocator.
//!
//! ```
//! use closeout::alloc::Counting;
//!
//! #[global_allocator]
//! static HEAP: Counting = Counting::system();
//!
//! let before = HEAP.stats();
//! let kept = vec![0u8; 4096];
//! let after = HEAP.stats();
//! assert!(after.live_bytes - before.live_bytes >= 4096);
//! # drop(kept);
//! ```
//!
//! # Cost and precision
//!
//! Each thread counts into a slot of its own with a plain load and store (no locked
//! instruction), so counting adds a few instructions per allocation
//! (BENCHMARKS.md: `alloc_counting`). The first 255 threads that allocate get a slot each, for
//! the life of the process; later threads share one last slot with atomic adds. A memory block
//! freed on another thread than the one that allocated it is counted there, so one slot can go
//! negative: only the sum means something. [`Counting::stats`] adds the slots up one by one
//! while other threads keep allocating, so a figure read during concurrent allocation is off by
//! what those threads did meanwhile; read it when the threads you measure are quiet.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Slots of each counting allocator; the last one is shared.
const SLOTS: usize = 256;
const SHARED: usize = SLOTS - 1;

/// Gives out slot numbers, each once per process (a slot is never handed back: a thread that
/// ends leaves its counts in it, where they still belong to the sum).
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot plus one (0: not assigned yet). Const-initialized and without a
    /// destructor, so reading it never allocates (this runs inside the allocator).
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// One thread's counts, on a cache line of its own.
///
/// Invariant C1: a slot below `SHARED` is written only by the one thread it was given to (plain
/// load + store, no read-modify-write needed); the shared slot only with `fetch_add`. Readers
/// load each field with `Relaxed`: the counts guard no other memory, so no ordering is needed
/// beyond each field's own atomicity.
#[repr(align(64))]
struct Slot {
    bytes: AtomicIsize,
    allocations: AtomicUsize,
    frees: AtomicUsize,
}

impl Slot {
    const fn new() -> Slot {
        Slot { bytes: AtomicIsize::new(0), allocations: AtomicUsize::new(0), frees: AtomicUsize::new(0) }
    }
}

/// A global allocator that forwards to `A` (the system allocator by default) and counts the
/// live heap: bytes and blocks alive now, and how many were ever allocated.
///
/// ```
/// use closeout::alloc::Counting;
/// use std::alloc::System;
///
/// #[global_allocator]
/// static HEAP: Counting<System> = Counting::new(System);
///
/// let stats = HEAP.stats();
/// assert!(stats.live_bytes >= 0 && stats.allocations >= stats.live_blocks as u64);
/// ```
pub struct Counting<A = System> {
    inner: A,
    slots: [Slot; SLOTS],
}

impl Counting<System> {
    /// Counts the system allocator.
    pub const fn system() -> Counting<System> {
        Counting::new(System)
    }
}

impl<A> Counting<A> {
    /// Counts `inner`.
    pub const fn new(inner: A) -> Counting<A> {
        Counting { inner, slots: [const { Slot::new() }; SLOTS] }
    }

    /// The counts now (see the [module](self) docs for their precision under concurrency).
    pub fn stats(&self) -> HeapStats {
        let mut stats = HeapStats::default();
        let mut frees = 0u64;
        for slot in &self.slots {
            stats.live_bytes += slot.bytes.load(Ordering::Relaxed) as i64;
            stats.allocations += slot.allocations.load(Ordering::Relaxed) as u64;
            frees += slot.frees.load(Ordering::Relaxed) as u64;
        }
        stats.live_blocks = stats.allocations as i64 - frees as i64;
        stats
    }

    /// Adds to this thread's slot: `bytes` alive (negative when freed), and one allocation or
    /// one free. Two counters per call: what blocks are alive is allocations minus frees.
    #[inline(always)]
    fn count(&self, bytes: isize, event: Event) {
        let n = slot_number();
        // `SLOTS` is a power of two and `n < SLOTS`: the mask only spares a bounds check.
        let slot = &self.slots[n & (SLOTS - 1)];
        let counter = match event {
            Event::Alloc => Some(&slot.allocations),
            Event::Free => Some(&slot.frees),
            Event::Realloc => None,
        };
        if n == SHARED {
            slot.bytes.fetch_add(bytes, Ordering::Relaxed);
            if let Some(c) = counter {
                c.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            // C1: only this thread writes this slot, so a load and a store cannot lose a count.
            add_isize(&slot.bytes, bytes);
            if let Some(c) = counter {
                add_usize(c, 1);
            }
        }
    }
}

/// What a call of the allocator did.
#[derive(Clone, Copy)]
enum Event {
    Alloc,
    Free,
    Realloc,
}

/// `a += v` for a counter only this thread writes (C1).
#[inline(always)]
fn add_isize(a: &AtomicIsize, v: isize) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

/// `a += v` for a counter only this thread writes (C1).
#[inline(always)]
fn add_usize(a: &AtomicUsize, v: usize) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

/// This thread's slot: its own while there are any left, else the shared one. During thread
/// teardown (the thread-local gone) the shared one.
#[inline(always)]
fn slot_number() -> usize {
    SLOT.try_with(|s| {
        let n = s.get();
        if n != 0 {
            return n - 1;
        }
        let n = NEXT_SLOT.fetch_add(1, Ordering::Relaxed).min(SHARED);
        s.set(n + 1);
        n
    })
    .unwrap_or(SHARED)
}

// The one `unsafe` of this module: implementing `GlobalAlloc`. The counting touches only the
// counters (atomics, C1); memory itself is handled by `inner` alone.
#[allow(unsafe_code)]
// SAFETY: every method forwards its arguments unchanged to `inner`, whose `GlobalAlloc`
// contract is the same as ours, and returns what it returned; counting neither allocates nor
// unwinds (const thread-local without destructor, atomics), so it cannot re-enter the
// allocator or break the no-unwind rule.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            self.count(layout.size() as isize, Event::Alloc);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            self.count(layout.size() as isize, Event::Alloc);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { self.inner.dealloc(ptr, layout) };
        self.count(-(layout.size() as isize), Event::Free);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            let grown = new_size as isize - layout.size() as isize;
            self.count(grown, Event::Realloc);
        }
        p
    }
}

impl<A> fmt::Debug for Counting<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counting").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// What a [`Counting`] allocator counted.
///
/// ```
/// let stats = closeout::alloc::HeapStats::default();
/// assert_eq!(stats.live_bytes, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HeapStats {
    /// Bytes allocated and not freed.
    pub live_bytes: i64,
    /// Blocks allocated and not freed.
    pub live_blocks: i64,
    /// Allocations ever made (a reallocation is not one).
    pub allocations: u64,
}

/// A source of [`HeapStats`]: what [`LeakCheck::max_heap_growth`](crate::leak::LeakCheck::max_heap_growth)
/// reads. [`Counting`] is one; a test can give its own figures.
///
/// ```
/// use closeout::alloc::{Counting, HeapCounter};
/// static HEAP: Counting = Counting::system(); // not the global allocator here: counts nothing
/// assert_eq!(HEAP.heap_stats().live_bytes, 0);
/// ```
pub trait HeapCounter: Send + Sync + std::panic::RefUnwindSafe {
    /// The counts now.
    fn heap_stats(&self) -> HeapStats;
}

impl<A: Send + Sync + std::panic::RefUnwindSafe> HeapCounter for Counting<A> {
    fn heap_stats(&self) -> HeapStats {
        self.stats()
    }
}

impl fmt::Debug for dyn HeapCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.heap_stats(), f)
    }
}
