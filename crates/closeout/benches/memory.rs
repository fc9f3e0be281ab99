//! Bytes per registered resource, counted by a counting global allocator.
//!
//! Registers 1,000 and 100,000 sync resources with ids like `res-12345`, a category and no
//! tags, and reports the live heap growth per resource. The closures are zero-sized, so the
//! figure is everything *beyond* the closure: slot, id, index. Also reports the same for scope
//! actions. Prints a table; it is not a criterion timing benchmark.
//!
//! Run: `cargo bench --bench memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use closeout::{Category, Registry, Resource, Scope};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers to the system allocator and only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same pointer and layout, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same pointer and layout, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    println!("{:<34} {:>10} {:>14}", "what", "count", "bytes/each");
    for n in [1_000usize, 100_000] {
        let ids: Vec<String> = (0..n).map(|i| format!("res-{i}")).collect();
        let id_bytes: usize = ids.iter().map(|s| s.capacity()).sum();
        let registry = Registry::new();
        let before = LIVE.load(Ordering::Relaxed);
        for id in ids {
            registry.register(Resource::new(id, || ()).category(Category::Database)).unwrap();
        }
        // The ids were allocated before `before`; they moved in, so add them back.
        let grown = LIVE.load(Ordering::Relaxed) - before + id_bytes as isize;
        println!("{:<34} {:>10} {:>14.1}", "registry resource (incl. id)", n, grown as f64 / n as f64);
        assert_eq!(registry.cleanup_all_blocking().len(), n);
    }
    for n in [1_000usize, 100_000] {
        let scope = Scope::new();
        let before = LIVE.load(Ordering::Relaxed);
        for _ in 0..n {
            scope.defer(|| ()).unwrap();
        }
        let grown = LIVE.load(Ordering::Relaxed) - before;
        println!("{:<34} {:>10} {:>14.1}", "scope action", n, grown as f64 / n as f64);
        drop(scope);
    }
}
