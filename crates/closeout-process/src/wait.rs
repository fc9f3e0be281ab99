//! What a stop sleeps on between two looks at the tree: woken by the kernel the moment the
//! direct child exits (its pidfd turns readable) or the tree's cgroup changes state (an inotify
//! watch on `cgroup.events`, which the kernel modifies when `populated` goes to 0), and
//! otherwise after the ladder's back-off pause. So a stop neither spins nor oversleeps.
//!
//! Both sources sit in one epoll instance: the blocking stop waits in `epoll_wait`, the async
//! stop does the same on tokio's blocking pool. Each source is consumed
//! once it fired (the pidfd leaves the set, the inotify queue is drained), so a readiness that
//! stays true cannot turn the wait into a busy loop.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::event::epoll;

const ROOT: u64 = 1;
const EVENTS: u64 = 2;

/// The wake-up sources of one stop.
pub(crate) struct Wake {
    epoll: OwnedFd,
    /// The child's pidfd while it is in the set (it leaves once it fired).
    root: Option<OwnedFd>,
    /// This stop's watch in the shared inotify instance.
    watch: Option<i32>,
}

/// One inotify instance for the whole process, shared by every stop: closing an inotify
/// instance waits for an SRCU grace period in the kernel (7 ms measured here, with `strace
/// -T`), which a stop per instance paid at its end. A watch is added per stop and removed
/// after it (asynchronous in the kernel). An event wakes every stop waiting on the instance;
/// each one re-reads its own `cgroup.events`, so a wake-up meant for another stop costs one
/// look, and one drained by another stop costs at most one back-off pause.
fn shared_inotify() -> Option<BorrowedFd<'static>> {
    static INOTIFY: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    INOTIFY
        .get_or_init(|| {
            use rustix::fs::inotify;
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()
        })
        .as_ref()
        .map(|fd| fd.as_fd())
}

impl Wake {
    /// Watches `root` (a pidfd, duplicated here) and the cgroup's `cgroup.events`, whichever
    /// are given. `None` if the kernel offers neither epoll nor the sources (then the caller
    /// just sleeps).
    pub(crate) fn new(root: Option<BorrowedFd<'_>>, events: Option<&Path>) -> Option<Wake> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).ok()?;
        let root = root.and_then(|fd| {
            let fd = fd.try_clone_to_owned().ok()?;
            epoll::add(&ep, &fd, epoll::EventData::new_u64(ROOT), epoll::EventFlags::IN).ok()?;
            Some(fd)
        });
        let watch = events.and_then(|path| {
            use rustix::fs::inotify;
            let fd = shared_inotify()?;
            let wd = inotify::add_watch(fd, path, inotify::WatchFlags::MODIFY).ok()?;
            epoll::add(&ep, fd, epoll::EventData::new_u64(EVENTS), epoll::EventFlags::IN).ok()?;
            Some(wd)
        });
        Some(Wake { epoll: ep, root, watch })
    }

    /// Sleeps until a source fires or `pause` passed.
    pub(crate) fn wait(&mut self, pause: Duration) {
        self.collect(pause);
    }

    /// [`wait`](Wake::wait) for the async stop, on tokio's blocking pool: the runtime's own
    /// threads never block, and this needs no IO driver (an `AsyncFd` would panic in a runtime
    /// built without `enable_io`). Gives the `Wake` back for the next wait; `None` if the
    /// runtime is shutting down (the caller then sleeps on timers).
    pub(crate) async fn wait_async(mut self, pause: Duration) -> Option<Wake> {
        tokio::task::spawn_blocking(move || {
            self.wait(pause);
            self
        })
        .await
        .ok()
    }

    /// Waits up to `timeout` in `epoll_wait`, then consumes what fired.
    fn collect(&mut self, timeout: Duration) {
        // The ladder's pauses are at most 50 ms: the seconds fit any `time_t`.
        let timeout = rustix::event::Timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut buf = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 4];
        let events = match epoll::wait(&self.epoll, &mut buf, Some(&timeout)) {
            Ok((events, _)) => events,
            // Interrupted: the caller looks and comes back.
            Err(rustix::io::Errno::INTR) => return,
            // Never spin on an error: sleep the pause out instead.
            Err(_) => {
                std::thread::sleep(Duration::new(timeout.tv_sec as u64, timeout.tv_nsec as u32));
                return;
            }
        };
        for event in events.iter() {
            match event.data.u64() {
                ROOT => {
                    // Readable for good once the child exited: leave the set.
                    if let Some(fd) = self.root.take() {
                        let _ = epoll::delete(&self.epoll, &fd);
                    }
                }
                EVENTS => self.drain_inotify(),
                _ => {}
            }
        }
    }

    fn drain_inotify(&self) {
        let Some(fd) = shared_inotify() else { return };
        let mut buf = [0u8; 1024];
        while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        if let (Some(wd), Some(fd)) = (self.watch, shared_inotify()) {
            // Gone already if the cgroup was removed (the kernel dropped the watch with it).
            let _ = rustix::fs::inotify::remove_watch(fd, wd);
        }
    }
}

/// Whether `pidfd`'s process has exited, without reaping it (`waitid(P_PIDFD, WNOWAIT)`): its
/// pid stays reserved (a zombie) until the stop collects it, so the number cannot be reused
/// meanwhile. `None` if the kernel cannot tell (no pidfd support).
pub(crate) fn exited(pidfd: BorrowedFd<'_>) -> Option<bool> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    match waitid(WaitId::PidFd(pidfd), WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT)
    {
        Ok(status) => Some(status.is_some()),
        Err(_) => None,
    }
}

/// Reaps the exited child behind `pidfd` (call after [`exited`] said it has exited, and its
/// identity was checked).
pub(crate) fn reap(pidfd: BorrowedFd<'_>) {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let _ = waitid(WaitId::PidFd(pidfd), WaitIdOptions::EXITED | WaitIdOptions::NOHANG);
}

/// A pidfd for our child `pid` (not yet reaped, so the number is still its own).
pub(crate) fn pidfd(pid: u32) -> io::Result<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("pid 0"))?;
    Ok(rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A wait with nothing to wake it sleeps its pause out (it never spins), and a child's exit
    /// ends a long wait early.
    #[test]
    fn a_wait_sleeps_its_pause_and_a_child_exit_wakes_it() {
        let mut idle = Wake::new(None, None).expect("epoll");
        let start = Instant::now();
        for _ in 0..5 {
            idle.wait(Duration::from_millis(4));
        }
        assert!(start.elapsed() >= Duration::from_millis(20), "returned early: {:?}", start.elapsed());

        let mut child = std::process::Command::new("sleep").arg("0.05").spawn().unwrap();
        let fd = pidfd(child.id()).unwrap();
        let mut wake = Wake::new(Some(fd.as_fd()), None).expect("epoll");
        let start = Instant::now();
        wake.wait(Duration::from_secs(30));
        assert!(start.elapsed() < Duration::from_secs(20), "the exit did not wake the wait");
        assert_eq!(exited(fd.as_fd()), Some(true));
        // Consumed: the next wait sleeps again instead of returning at once.
        let start = Instant::now();
        wake.wait(Duration::from_millis(20));
        assert!(start.elapsed() >= Duration::from_millis(20));
        child.wait().unwrap();
    }
}
