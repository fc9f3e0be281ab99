//! `#[closeout::test(leaks = "os")]`: threads, descriptors and child processes are checked.
//! With `heap`, the live heap too. One test in this binary, because those are process-wide (the
//! attribute's docs say so).

use std::time::Duration;

use closeout::testing::{self, LeakScope, Options};

#[global_allocator]
static HEAP: closeout::alloc::Counting = closeout::alloc::Counting::system();

// The outer bound (8 MiB) lets the nested fixture below keep its 4 MiB.
#[closeout::test(leaks = "os", leak_timeout_ms = 3000, heap = HEAP, max_heap_growth = 8388608)]
fn os_state_and_heap_are_checked_and_clean_work_passes() {
    // Clean work: a file opened and closed, a thread joined, a child waited for.
    let file = tempfile::tempfile().unwrap();
    drop(file);
    std::thread::spawn(|| ()).join().unwrap();
    std::process::Command::new("true").status().unwrap();

    // The nested fixtures below fail on purpose. The default panic hook would print their
    // panics, and with RUST_BACKTRACE set its first backtrace loads the debug info for good
    // (tens of MiB of heap here), which the outer heap bound would rightly count: keep quiet.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));

    // A nested fixture whose body leaves a thread running fails naming the thread; the thread
    // ends after 300 ms, within this test's own 3 s retry, so this test still passes.
    let nested = std::panic::catch_unwind(|| {
        testing::run(Options::new().leaks(LeakScope::Os).leak_timeout(Duration::from_millis(50)), |_| {
            std::thread::Builder::new()
                .name("left-running".into())
                .spawn(|| std::thread::sleep(Duration::from_millis(300)))
                .unwrap();
        })
    });
    let message = nested.unwrap_err().downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("left-running") && message.contains("still running"), "{message}");

    // A nested fixture whose body keeps 4 MiB fails naming the growth; one that uses 8 MiB and
    // frees it passes.
    let kept = std::panic::catch_unwind(|| {
        testing::run(
            Options::new().max_heap_growth(&HEAP, 1 << 20).leak_timeout(Duration::from_millis(20)),
            |_| {
                std::mem::forget(vec![1u8; 4 << 20]);
            },
        )
    });
    let message = kept.unwrap_err().downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("heap grew by") && message.contains("the bound is 1048576 bytes"), "{message}");
    std::panic::set_hook(hook);
    testing::run(Options::new().max_heap_growth(&HEAP, 1 << 20), |_| drop(vec![1u8; 8 << 20]));
}
