//! The counting allocator against a model: after any sequence of allocations, growths,
//! shrinks and frees, on one thread or spread over more threads than it has slots, the live
//! bytes and blocks it reports are exactly what is alive. It is this binary's global
//! allocator, so its checks run one after another in one test: the test harness's own
//! threads allocate too (printing a finished test's result), and would be counted in another
//! test's window.

use std::sync::Mutex;

use closeout::alloc::{Counting, HeapStats};
use closeout::leak::LeakCheck;
use proptest::prelude::*;

#[global_allocator]
static HEAP: Counting = Counting::system();

#[test]
fn the_counting_allocator_counts_exactly() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(128));
    runner.run(&proptest::collection::vec(op(), 0..200), live_bytes_and_blocks_match_the_model).unwrap();
    counts_stay_exact_across_more_threads_than_slots();
    a_heap_bound_fails_a_check_that_kept_memory_and_names_the_growth();
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    Grow(usize, usize),
    Shrink(usize),
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..5000).prop_map(Op::Alloc),
        (any::<usize>(), 1usize..5000).prop_map(|(i, n)| Op::Grow(i, n)),
        any::<usize>().prop_map(Op::Shrink),
        any::<usize>().prop_map(Op::Free),
    ]
}

fn delta(before: HeapStats, after: HeapStats) -> (i64, i64, u64) {
    (
        after.live_bytes - before.live_bytes,
        after.live_blocks - before.live_blocks,
        after.allocations - before.allocations,
    )
}

/// Any sequence of operations: the counts change by exactly what is alive.
fn live_bytes_and_blocks_match_the_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    {
        // The container is allocated before the snapshot and never grows during the run.
        let mut live: Vec<Vec<u8>> = Vec::with_capacity(ops.len());
        let mut fresh_blocks = 0u64;
        let before = HEAP.stats();
        for op in &ops {
            match *op {
                Op::Alloc(n) => {
                    live.push(Vec::with_capacity(n));
                    fresh_blocks += 1;
                }
                Op::Grow(i, n) if !live.is_empty() => {
                    let i = i % live.len();
                    let v = &mut live[i];
                    v.resize(v.capacity(), 0);
                    v.reserve_exact(n);
                }
                Op::Shrink(i) if !live.is_empty() => {
                    let i = i % live.len();
                    let v = &mut live[i];
                    v.truncate(v.len() / 2);
                    v.shrink_to_fit();
                    // A vector shrunk to nothing frees its block.
                }
                Op::Free(i) if !live.is_empty() => {
                    let i = i % live.len();
                    drop(live.swap_remove(i));
                }
                _ => {}
            }
        }
        let after = HEAP.stats();
        let bytes: usize = live.iter().map(|v| v.capacity()).sum();
        let blocks = live.iter().filter(|v| v.capacity() > 0).count();
        let (d_bytes, d_blocks, d_allocs) = delta(before, after);
        prop_assert_eq!(d_bytes, bytes as i64);
        prop_assert_eq!(d_blocks, blocks as i64);
        // A shrink to nothing and a later growth allocate anew; plain growths reallocate.
        prop_assert!(d_allocs >= fresh_blocks, "{} allocations counted, {} made", d_allocs, fresh_blocks);
        live.clear(); // frees every block, keeps the container
        let end = HEAP.stats();
        prop_assert_eq!(end.live_bytes, before.live_bytes);
        prop_assert_eq!(end.live_blocks, before.live_blocks);
    }
    Ok(())
}

/// 400 threads — more than the 255 slots of their own — each allocate blocks, hand half of
/// them to the next thread to free and keep the rest until joined: the sum is exact, whatever
/// slot each count landed in (some negative: freed far from where allocated).
fn counts_stay_exact_across_more_threads_than_slots() {
    const THREADS: usize = 400;
    // Everything the test allocates from here on is freed before `after`, except the kept
    // blocks and their container.
    let kept = std::sync::Arc::new(Mutex::new(Vec::with_capacity(THREADS * 8)));
    let before = HEAP.stats();
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| std::sync::mpsc::channel::<Vec<u8>>()).unzip();
    let mut receivers: Vec<Option<_>> = receivers.into_iter().map(Some).collect();
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let to_next = senders[(i + 1) % THREADS].clone();
            let from_prev = receivers[i].take().unwrap();
            let kept = kept.clone();
            std::thread::spawn(move || {
                for n in 0..8 {
                    let block = Vec::<u8>::with_capacity(100 + n);
                    if n % 2 == 0 {
                        to_next.send(block).unwrap();
                    } else {
                        kept.lock().unwrap().push(block);
                    }
                }
                drop(to_next);
                for block in from_prev.iter().take(4) {
                    drop(block);
                }
            })
        })
        .collect();
    drop(senders);
    for h in handles {
        h.join().unwrap();
    }
    drop(receivers);
    let after = HEAP.stats();
    let kept = kept.lock().unwrap();
    let expected: usize = kept.iter().map(|v| v.capacity()).sum();
    // Thread stacks are not heap; each ended thread freed its own bookkeeping. What is left is
    // the kept blocks (their container was allocated before the snapshot and never grew).
    assert_eq!(kept.len(), THREADS * 4);
    assert_eq!(after.live_bytes - before.live_bytes, expected as i64);
    assert_eq!(after.live_blocks - before.live_blocks, kept.len() as i64);
}

fn a_heap_bound_fails_a_check_that_kept_memory_and_names_the_growth() {
    let mut check =
        LeakCheck::new().tracked_only().max_heap_growth(&HEAP, 64 * 1024).timeout(std::time::Duration::ZERO);
    let kept = vec![7u8; 1 << 20];
    let leaks = check.check().unwrap_err();
    let growth = leaks.heap_growth().unwrap();
    assert!(growth.bytes >= 1 << 20 && growth.bound == 64 * 1024, "{growth:?}");
    assert!(leaks.to_string().contains("heap grew by"), "{leaks}");
    drop(kept);
    let check = LeakCheck::new().tracked_only().max_heap_growth(&HEAP, 64 * 1024);
    let used = vec![7u8; 1 << 20];
    drop(used);
    check.assert();
}
