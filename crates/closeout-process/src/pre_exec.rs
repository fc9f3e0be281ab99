//! What runs in the child between `fork` and `exec`: the only unsafe code of the crate.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child join its cgroup (`join`: an open `cgroup.procs`, written `0` — itself),
/// call `setsid` and/or arm its parent-death signal, all before `exec`: so it runs nothing, and
/// starts nothing, outside its cgroup.
#[allow(unsafe_code)]
pub(crate) fn install(cmd: &mut Command, new_session: bool, kill_with_parent: bool, join: Option<i32>) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before `exec`, where only async-signal-safe
    // operations are allowed. It calls `write` on a descriptor opened before the fork (kept
    // open by the parent until the spawn returns), `setsid`, `prctl(PR_SET_PDEATHSIG)` and
    // `getppid` through rustix (single system calls through libc, all async-signal-safe),
    // allocates nothing and takes no lock; `io::Error::from` on an `Errno` only stores the
    // number.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = join {
                let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                rustix::io::write(fd, b"0")?;
            }
            if new_session {
                rustix::process::setsid()?;
            }
            if kill_with_parent {
                rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
                // The parent may have died before the signal was armed: then nobody would send
                // it, so give up now rather than run orphaned.
                if rustix::process::getppid() != Some(parent) {
                    return Err(std::io::Error::from(rustix::io::Errno::SRCH));
                }
            }
            Ok(())
        });
    }
}
