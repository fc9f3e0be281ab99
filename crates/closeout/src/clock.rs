//! A cheap monotonic clock for timestamps that are only shown as ages (registration and
//! tracking times), in nanoseconds. On Linux the coarse monotonic clock: a few nanoseconds a
//! read and millisecond resolution, which keeps clock reads off the registration and tracking
//! hot paths. Elsewhere, `Instant` since the first read.

use std::time::Duration;

/// Nanoseconds on a monotonic clock.
pub(crate) type Stamp = u64;

/// A stamp older than any real one.
pub(crate) const ZERO: Stamp = 0;

#[cfg(target_os = "linux")]
pub(crate) fn now() -> Stamp {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn now() -> Stamp {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    // Starts at 1 so that no real stamp equals `ZERO`.
    START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64 + 1
}

/// Nanoseconds from `epoch` to now.
pub(crate) fn since(epoch: Stamp) -> u64 {
    now().saturating_sub(epoch)
}

/// The time from `earlier` to `later`.
pub(crate) fn between(earlier: Stamp, later: Stamp) -> Duration {
    Duration::from_nanos(later.saturating_sub(earlier))
}

/// The stamp `age` ago.
pub(crate) fn before(age: Duration) -> Stamp {
    now().saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX))
}
