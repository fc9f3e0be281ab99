//! Port helpers for test harnesses: wait until a port accepts connections, or until nothing
//! listens on it any more, each within a timeout. Async (on tokio) and blocking.
//!
//! A port is *accepting* when a TCP connect to it succeeds (the connection is closed at once),
//! and *free* when binding it succeeds (the listener is dropped at once; like `std`'s, it sets
//! `SO_REUSEADDR`, so connections of an earlier listener left in `TIME_WAIT` do not count).

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// The port did not reach the state waited for within the timeout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{addr} was not {state} after {waited:?} (last error: {last})")]
pub struct PortTimeout {
    /// The address waited on.
    pub addr: SocketAddr,
    /// "accepting connections" or "free".
    pub state: &'static str,
    /// How long it waited.
    pub waited: Duration,
    /// What the last attempt said.
    pub last: String,
}

const ACCEPTING: &str = "accepting connections";
const FREE: &str = "free";

/// Waits until a TCP connect to `addr` succeeds, trying every few milliseconds (1 ms, doubling
/// to 50 ms) until `timeout` has passed. Any `Duration` works: zero tries once.
///
/// # Errors
///
/// [`PortTimeout`] with the last connect error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// closeout_net::wait_until_accepting(addr, Duration::from_secs(5)).await?;
/// drop(listener);
/// closeout_net::wait_until_free(addr, Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
pub async fn wait_until_accepting(addr: SocketAddr, timeout: Duration) -> Result<(), PortTimeout> {
    let mut waiter = Waiter::new(addr, ACCEPTING, timeout);
    loop {
        let left = waiter.left();
        let attempt =
            tokio::time::timeout(left.max(Duration::from_millis(1)), tokio::net::TcpStream::connect(addr))
                .await;
        match attempt {
            Ok(Ok(_stream)) => return Ok(()),
            Ok(Err(e)) => waiter.last = e.to_string(),
            Err(_) => waiter.last = "connect timed out".into(),
        }
        tokio::time::sleep(waiter.next_pause()?).await;
    }
}

/// Waits until `addr` can be bound (nothing listens on it), within `timeout`.
///
/// # Errors
///
/// [`PortTimeout`] with the last bind error.
pub async fn wait_until_free(addr: SocketAddr, timeout: Duration) -> Result<(), PortTimeout> {
    let mut waiter = Waiter::new(addr, FREE, timeout);
    loop {
        match TcpListener::bind(addr) {
            Ok(_listener) => return Ok(()),
            Err(e) => waiter.last = e.to_string(),
        }
        tokio::time::sleep(waiter.next_pause()?).await;
    }
}

/// [`wait_until_accepting`] for sync code (no runtime needed).
///
/// # Errors
///
/// [`PortTimeout`] with the last connect error.
///
/// ```
/// use std::time::Duration;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// closeout_net::wait_until_accepting_blocking(addr, Duration::from_secs(5))?;
/// drop(listener);
/// closeout_net::wait_until_free_blocking(addr, Duration::from_secs(5))?;
/// let err = closeout_net::wait_until_accepting_blocking(addr, Duration::from_millis(20)).unwrap_err();
/// assert_eq!(err.state, "accepting connections");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn wait_until_accepting_blocking(addr: SocketAddr, timeout: Duration) -> Result<(), PortTimeout> {
    let mut waiter = Waiter::new(addr, ACCEPTING, timeout);
    loop {
        let left = waiter.left().max(Duration::from_millis(1));
        match std::net::TcpStream::connect_timeout(&addr, left) {
            Ok(_stream) => return Ok(()),
            Err(e) => waiter.last = e.to_string(),
        }
        std::thread::sleep(waiter.next_pause()?);
    }
}

/// [`wait_until_free`] for sync code.
///
/// # Errors
///
/// [`PortTimeout`] with the last bind error.
pub fn wait_until_free_blocking(addr: SocketAddr, timeout: Duration) -> Result<(), PortTimeout> {
    let mut waiter = Waiter::new(addr, FREE, timeout);
    loop {
        match TcpListener::bind(addr) {
            Ok(_listener) => return Ok(()),
            Err(e) => waiter.last = e.to_string(),
        }
        std::thread::sleep(waiter.next_pause()?);
    }
}

/// The shared back-off and deadline of the four waits.
struct Waiter {
    addr: SocketAddr,
    state: &'static str,
    start: Instant,
    until: Instant,
    pause: Duration,
    last: String,
}

impl Waiter {
    fn new(addr: SocketAddr, state: &'static str, timeout: Duration) -> Waiter {
        let start = Instant::now();
        let until = closeout::saturating_deadline(start, timeout);
        Waiter { addr, state, start, until, pause: Duration::from_millis(1), last: String::new() }
    }

    /// Time left (zero once past the deadline).
    fn left(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }

    /// The next pause, never past the deadline; the error once the deadline has passed.
    fn next_pause(&mut self) -> Result<Duration, PortTimeout> {
        let left = self.left();
        if left.is_zero() {
            return Err(PortTimeout {
                addr: self.addr,
                state: self.state,
                waited: self.start.elapsed(),
                last: std::mem::take(&mut self.last),
            });
        }
        let pause = self.pause.min(left);
        self.pause = (self.pause * 2).min(Duration::from_millis(50));
        Ok(pause)
    }
}
