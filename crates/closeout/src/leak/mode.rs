//! How much leak tracking costs: Netty's levels, set in code or by `CLOSEOUT_LEAK`.

use std::fmt;
use std::str::FromStr;

/// How much a [`Tracker`](crate::leak::Tracker) records.
///
/// | mode | cost per tracked object | what a leak report shows |
/// |---|---|---|
/// | `Off` | a relaxed atomic load and a branch | nothing |
/// | `Sampled(n)` | one in `n` objects as `Full`; the rest a thread-local counter | kinds, names, ages of the sample |
/// | `Full` | a record in a sharded table (one uncontended lock) | every object: kind, name, age, thread |
/// | `Backtrace` | `Full` plus a captured backtrace (microseconds) | also where each one was created |
///
/// The default is `Full` in debug builds and `Off` in release builds, unless `CLOSEOUT_LEAK`
/// says otherwise (`off`, `sampled:N`, `full`, `backtrace`).
///
/// ```
/// use closeout::leak::Mode;
/// assert_eq!("sampled:128".parse::<Mode>()?, Mode::Sampled(128));
/// assert_eq!("backtrace".parse::<Mode>()?, Mode::Backtrace);
/// assert!("sometimes".parse::<Mode>().is_err());
/// # Ok::<(), closeout::leak::ParseModeError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Mode {
    /// Nothing is recorded.
    Off,
    /// One in `n` objects is recorded (`n` ≥ 1; 1 is `Full`).
    Sampled(u32),
    /// Every object is recorded.
    Full,
    /// Every object is recorded with the backtrace of its creation.
    Backtrace,
}

/// The environment variable read by [`Mode::from_env`] and the global tracker.
pub const ENV: &str = "CLOSEOUT_LEAK";

impl Mode {
    /// The mode `CLOSEOUT_LEAK` asks for, if it is set and valid; an invalid value is reported
    /// with a `tracing` warning and ignored.
    pub fn from_env() -> Option<Mode> {
        let value = std::env::var(ENV).ok()?;
        match value.parse() {
            Ok(mode) => Some(mode),
            Err(e) => {
                tracing::warn!(%value, error = %e, "closeout: ignoring {ENV}");
                None
            }
        }
    }

    /// `CLOSEOUT_LEAK` if set, else `Full` in debug builds and `Off` in release builds.
    pub fn default_for_build() -> Mode {
        Mode::from_env().unwrap_or(if cfg!(debug_assertions) { Mode::Full } else { Mode::Off })
    }

    pub(crate) fn encode(self) -> (u8, u32) {
        match self {
            Mode::Off => (0, 0),
            Mode::Sampled(n) => (1, n.max(1)),
            Mode::Full => (2, 1),
            Mode::Backtrace => (3, 1),
        }
    }

    pub(crate) fn decode(level: u8, n: u32) -> Mode {
        match level {
            0 => Mode::Off,
            1 => Mode::Sampled(n),
            2 => Mode::Full,
            _ => Mode::Backtrace,
        }
    }
}

/// A leak mode that is not one of `off`, `sampled:N` (N ≥ 1), `full` or `backtrace`; it holds
/// what was given.
///
/// ```
/// let err = "sometimes".parse::<closeout::leak::Mode>().unwrap_err();
/// assert_eq!(err.0, "sometimes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("leak mode `{0}` is not off, sampled:N (N ≥ 1), full or backtrace")]
pub struct ParseModeError(pub String);

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Mode, ParseModeError> {
        let bad = || ParseModeError(s.to_owned());
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "0" => Ok(Mode::Off),
            "full" | "on" => Ok(Mode::Full),
            "backtrace" => Ok(Mode::Backtrace),
            other => {
                let n = other.strip_prefix("sampled:").ok_or_else(bad)?;
                match n.parse::<u32>() {
                    Ok(n) if n >= 1 => Ok(Mode::Sampled(n)),
                    _ => Err(bad()),
                }
            }
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Off => f.write_str("off"),
            Mode::Sampled(n) => write!(f, "sampled:{n}"),
            Mode::Full => f.write_str("full"),
            Mode::Backtrace => f.write_str("backtrace"),
        }
    }
}
