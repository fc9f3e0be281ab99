//! What runs in the child between `fork` and `exec`: the only unsafe code of the crate.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child call `setsid` and/or arm its parent-death signal before `exec`.
#[allow(unsafe_code)]
pub(crate) fn install(cmd: &mut Command, new_session: bool, kill_with_parent: bool) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before `exec`, where only async-signal-safe
    // operations are allowed. It calls `setsid`, `prctl(PR_SET_PDEATHSIG)` and `getppid`
    // through rustix (single system calls through libc, all async-signal-safe), allocates
    // nothing and takes no lock; `io::Error::from` on an `Errno` only stores the number.
    unsafe {
        cmd.pre_exec(move || {
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
