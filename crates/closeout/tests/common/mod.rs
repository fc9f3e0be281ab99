//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An ordered record of what ran, shared with cleanups.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn new() -> Log {
        Log::default()
    }

    pub fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }

    /// A sync cleanup that records `name`.
    pub fn rec(&self, name: impl Into<String>) -> impl FnOnce() + Send + 'static {
        let log = self.clone();
        let name = name.into();
        move || log.push(name)
    }

    /// An async cleanup that waits `ms` on a real tokio timer, then records `name`.
    pub fn rec_after(
        &self,
        ms: u64,
        name: impl Into<String>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let log = self.clone();
        let name = name.into();
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            log.push(name);
        }
    }

    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self, name: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|s| *s == name).count()
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.0.lock().unwrap().iter().position(|s| s == name)
    }
}

/// Runs `f` on a thread and fails the test if it does not return within `limit`: no test may
/// hang the suite.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// Awaits `fut`, failing the test after `limit`.
pub async fn bounded<F: std::future::Future>(limit: Duration, fut: F) -> F::Output {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| panic!("did not finish within {limit:?}"))
}

/// An error for cleanups that fail on purpose.
pub fn boom(msg: &str) -> std::io::Error {
    std::io::Error::other(msg.to_owned())
}

/// Runs a test that checks process-wide state (the global leak tracker, threads, fds, child
/// processes, hooks) in a process of its own. `cargo test` runs a binary's tests as threads of
/// one process, so there this re-runs just the named test in a child process and checks that it
/// passed; under nextest, which already gives every test its own process, it runs in place.
/// The child is bounded: killed and failed after 60 s.
pub fn isolated(name: &str, body: impl FnOnce()) {
    const CHILD: &str = "CLOSEOUT_ISOLATED_TEST";
    if std::env::var_os("NEXTEST").is_some() || std::env::var(CHILD).is_ok_and(|v| v == name) {
        return body();
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: its own process did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} in its own process: {}\n{stdout}\n{stderr}",
        out.status
    );
}
