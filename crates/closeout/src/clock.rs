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

/// The instant `after` past `from`, saturating: a span past what an `Instant` can hold (such
/// as `Duration::MAX`, meaning "never") gives a moment about a century away instead of a panic.
///
/// Every crate of the workspace computes deadlines with this, so that no `Duration` a caller
/// passes can overflow a clock.
///
/// ```
/// use std::time::{Duration, Instant};
/// let now = Instant::now();
/// assert_eq!(closeout::saturating_deadline(now, Duration::from_secs(1)), now + Duration::from_secs(1));
/// assert!(closeout::saturating_deadline(now, Duration::MAX) > now + Duration::from_secs(3_000_000_000));
/// ```
pub fn saturating_deadline(from: std::time::Instant, after: Duration) -> std::time::Instant {
    /// About a century: far past any real deadline, and it fits every platform's `Instant`.
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    from.checked_add(after).or_else(|| from.checked_add(FAR)).unwrap_or(from)
}
