//! `#[closeout::test(leaks = "os")]`: threads, descriptors and child processes are checked.
//! One test in this binary, because those are process-wide (the attribute's docs say so).

use std::time::Duration;

use closeout::testing::{self, LeakScope, Options};

#[closeout::test(leaks = "os", leak_timeout_ms = 3000)]
fn os_state_is_checked_and_clean_work_passes() {
    // Clean work: a file opened and closed, a thread joined, a child waited for.
    let file = tempfile::tempfile().unwrap();
    drop(file);
    std::thread::spawn(|| ()).join().unwrap();
    std::process::Command::new("true").status().unwrap();

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
}
