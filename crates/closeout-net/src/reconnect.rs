//! [`Reconnecting`]: a WebSocket client that reconnects with exponential back-off and says how
//! it is doing.

use crate::lock;
use std::sync::Mutex;
use std::time::Duration;

use closeout::{Category, Resource};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ws::{WsConn, WsOptions};

/// Exponential back-off between attempts.
///
/// ```
/// use closeout_net::Backoff;
/// use std::time::Duration;
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(b.delay(1), Duration::from_millis(100));
/// assert_eq!(b.delay(3), Duration::from_millis(400));
/// assert_eq!(b.delay(10), Duration::from_secs(1)); // capped
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Starts at `initial`, doubles each failed attempt, never above `max`.
    ///
    /// Every input works: `initial` is at least [`Backoff::MIN`] (a zero back-off would retry in
    /// a busy loop against a peer that is down) and `max` at least `initial`; `Duration::MAX`
    /// saturates.
    ///
    /// ```
    /// use closeout_net::Backoff;
    /// use std::time::Duration;
    /// let b = Backoff::new(Duration::ZERO, Duration::ZERO);
    /// assert_eq!(b.delay(1), Backoff::MIN);
    /// assert_eq!(Backoff::new(Duration::MAX, Duration::MAX).delay(u32::MAX), Duration::MAX);
    /// ```
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Backoff::MIN);
        Backoff { initial, max: max.max(initial) }
    }

    /// The shortest wait between attempts: 1 ms.
    pub const MIN: Duration = Duration::from_millis(1);

    /// The wait before attempt `n + 1` after `n` failures in a row (`n` ≥ 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How a [`Reconnecting`] client is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Connecting; `attempt` counts failures in a row before this one.
    Connecting {
        /// Failures in a row so far.
        attempt: u32,
    },
    /// Connected.
    Connected,
    /// Waiting `retry_in` before the next attempt.
    Waiting {
        /// Failures in a row so far.
        attempt: u32,
        /// The back-off.
        retry_in: Duration,
    },
    /// Stopped for good.
    Stopped,
}

/// A client that keeps a WebSocket connection up.
///
/// A task keeps one connection up: connect; when it ends, wait (100 ms, 200 ms, … up to the
/// cap; reset after a successful connection) and connect again. Its [`Health`] is observable at
/// any time. [`stop`](Reconnecting::stop) ends the loop and closes the current connection with
/// a handshake; it is idempotent, and it is the cleanup when registered in a
/// [`Registry`](closeout::Registry).
///
/// ```
/// use closeout_net::{Backoff, Health, Reconnecting, WsOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Nothing listens there: the client keeps trying, backing off.
/// let client = Reconnecting::start("ws://127.0.0.1:9", WsOptions::new(), Backoff::default());
/// tokio::time::sleep(std::time::Duration::from_millis(50)).await;
/// assert!(matches!(client.health(), Health::Waiting { .. } | Health::Connecting { .. }));
/// client.stop().await;
/// assert_eq!(client.health(), Health::Stopped);
/// # }
/// ```
#[derive(Debug)]
pub struct Reconnecting {
    state: watch::Receiver<(Health, Option<WsConn>)>,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Reconnecting {
    /// Starts connecting to `url` on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn start(url: impl Into<String>, opts: WsOptions, backoff: Backoff) -> Reconnecting {
        let (tx, rx) = watch::channel((Health::Connecting { attempt: 0 }, None));
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(url.into(), opts, backoff, tx, stop.clone()));
        Reconnecting { state: rx, stop, task: Mutex::new(Some(task)) }
    }

    /// How it is doing now.
    pub fn health(&self) -> Health {
        self.state.borrow().0.clone()
    }

    /// The current connection, when connected.
    pub fn current(&self) -> Option<WsConn> {
        self.state.borrow().1.clone()
    }

    /// Waits for a connection (`None` once stopped).
    pub async fn connected(&self) -> Option<WsConn> {
        let mut state = self.state.clone();
        loop {
            {
                let s = state.borrow_and_update();
                match &s.0 {
                    Health::Connected => return s.1.clone(),
                    Health::Stopped => return None,
                    _ => {}
                }
            }
            if state.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Stops reconnecting and closes the current connection with a handshake. Idempotent.
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// A registry resource (category `Network`) whose cleanup is [`stop`](Reconnecting::stop).
    pub fn resource(self: &std::sync::Arc<Self>, id: impl Into<String>) -> Resource {
        Resource::new_async(id, Reconnecting::release(std::sync::Arc::clone(self)))
            .category(Category::Network)
    }

    /// Stops the client when `scope` is released.
    ///
    /// # Errors
    ///
    /// [`Rejected`](closeout::Rejected) with the client, still running, if the scope was
    /// released.
    pub fn defer_in(
        self: &std::sync::Arc<Self>,
        scope: &closeout::Scope,
        name: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<(), closeout::Rejected<std::sync::Arc<Reconnecting>>> {
        scope.defer_release_async(name, std::sync::Arc::clone(self), Reconnecting::release).map(drop)
    }

    async fn release(this: std::sync::Arc<Self>) {
        this.stop().await;
    }
}

async fn run(
    url: String,
    opts: WsOptions,
    backoff: Backoff,
    state: watch::Sender<(Health, Option<WsConn>)>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        state.send_replace((Health::Connecting { attempt: failures }, None));
        let attempt = tokio::select! {
            _ = stop.cancelled() => break,
            conn = WsConn::connect(&url, opts) => conn,
        };
        match attempt {
            Ok(conn) => {
                state.send_replace((Health::Connected, Some(conn.clone())));
                tokio::select! {
                    reason = conn.closed() => tracing::debug!(%url, %reason, "closeout-net: connection ended; reconnecting"),
                    _ = stop.cancelled() => {
                        conn.close().await;
                        break;
                    }
                }
                // A connection that was up and ended: start the back-off over.
                failures = 1;
            }
            Err(e) => {
                tracing::debug!(%url, error = %e, "closeout-net: connect failed");
                failures += 1;
            }
        }
        let retry_in = backoff.delay(failures);
        state.send_replace((Health::Waiting { attempt: failures, retry_in }, None));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(retry_in) => {}
        }
    }
    state.send_replace((Health::Stopped, None));
}
