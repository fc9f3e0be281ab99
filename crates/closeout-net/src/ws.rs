//! [`WsConn`]: a WebSocket connection that closes properly and notices a dead peer.

use std::net::SocketAddr;
use std::time::Duration;

use closeout::{Category, Resource};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Heartbeat and close timing.
///
/// ```
/// use closeout_net::WsOptions;
/// use std::time::Duration;
/// let opts = WsOptions::new().heartbeat(Duration::from_secs(10)).timeout(Duration::from_secs(30));
/// # let _ = opts;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct WsOptions {
    heartbeat: Duration,
    timeout: Duration,
    close_timeout: Duration,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions::new()
    }
}

impl WsOptions {
    /// Ping every 15 s, dead after 45 s of silence, 5 s for the close handshake.
    pub fn new() -> WsOptions {
        WsOptions {
            heartbeat: Duration::from_secs(15),
            timeout: Duration::from_secs(45),
            close_timeout: Duration::from_secs(5),
        }
    }

    /// How often to ping. `Duration::ZERO` turns the heartbeat off: no pings, and no silence
    /// check (the peer is then only closed when the connection ends or errors).
    pub fn heartbeat(mut self, every: Duration) -> WsOptions {
        self.heartbeat = every;
        self
    }

    /// How long the peer may stay silent before it is closed as dead; checked at each heartbeat.
    /// `Duration::ZERO` closes the connection at the first heartbeat.
    pub fn timeout(mut self, after: Duration) -> WsOptions {
        self.timeout = after;
        self
    }

    /// How long to wait for the peer's Close after sending ours. `Duration::ZERO` does not wait.
    pub fn close_timeout(mut self, after: Duration) -> WsOptions {
        self.close_timeout = after;
        self
    }
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// We closed and the peer answered: the close handshake completed.
    Closed,
    /// The peer closed, with this code.
    ByPeer(u16),
    /// We closed and the peer did not answer within the close timeout.
    HandshakeTimeout,
    /// The peer sent nothing, not even a pong, for the heartbeat timeout.
    HeartbeatTimeout,
    /// The connection failed.
    Error(String),
}

impl CloseReason {
    /// Whether it ended with a completed close handshake (either side starting it).
    pub fn is_clean(&self) -> bool {
        matches!(self, CloseReason::Closed | CloseReason::ByPeer(_))
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Closed => f.write_str("closed (handshake completed)"),
            CloseReason::ByPeer(code) => write!(f, "closed by the peer (code {code})"),
            CloseReason::HandshakeTimeout => f.write_str("the peer did not answer the close handshake"),
            CloseReason::HeartbeatTimeout => f.write_str("the peer went silent (heartbeat timeout)"),
            CloseReason::Error(e) => write!(f, "connection failed: {e}"),
        }
    }
}

/// A WebSocket failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The connection is closed.
    #[error("the connection is closed: {0}")]
    Closed(CloseReason),
    /// The handshake or a frame failed.
    #[error("websocket: {0}")]
    Protocol(#[from] tokio_tungstenite::tungstenite::Error),
}

/// A close that was not a completed handshake, as a teardown report shows it.
#[derive(Debug, thiserror::Error)]
#[error("websocket {peer}: {reason}")]
pub struct NotClean {
    /// The peer, if known.
    pub peer: String,
    /// How it ended.
    pub reason: CloseReason,
}

enum Cmd {
    Send(Message, oneshot::Sender<Result<(), WsError>>),
    Close,
}

/// A WebSocket connection driven by its own task. Cheap to clone.
///
/// A driver task owns the socket. It sends a ping every `heartbeat`; a peer silent (no frame of
/// any kind, pongs included) for `timeout` is closed as dead. [`close`](WsConn::close) runs the
/// close handshake — send Close, wait up to `close_timeout` for the peer's Close — and is
/// idempotent: every caller gets the same [`CloseReason`]. Dropping every handle closes too.
///
/// ```
/// use closeout_net::{WsConn, WsOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let server = tokio::spawn(async move {
///     let (stream, _) = listener.accept().await.unwrap();
///     let conn = WsConn::accept(stream, WsOptions::new()).await.unwrap();
///     conn.closed().await // until the client closes
/// });
/// let client = WsConn::connect(&format!("ws://{addr}"), WsOptions::new()).await?;
/// assert!(client.close().await.is_clean());
/// assert!(server.await?.is_clean());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WsConn {
    cmds: mpsc::Sender<Cmd>,
    inbox: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Message>>>,
    state: watch::Receiver<Option<CloseReason>>,
    /// Shared with the driver task: `close` sets the reason itself when it has to abort the
    /// driver (a peer that stopped reading, a full socket buffer).
    closer: std::sync::Arc<Closer>,
    peer: Option<SocketAddr>,
}

/// What `close` needs to end a connection whose driver is stuck.
struct Closer {
    state: watch::Sender<Option<CloseReason>>,
    driver: tokio::task::AbortHandle,
    close_timeout: Duration,
}

impl Closer {
    /// Publishes `reason` unless the connection already ended otherwise.
    fn end(&self, reason: CloseReason) {
        self.state.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

impl std::fmt::Debug for WsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConn").field("peer", &self.peer).field("closed", &*self.state.borrow()).finish()
    }
}

impl WsConn {
    /// Runs the server handshake on an accepted TCP stream.
    ///
    /// # Errors
    ///
    /// [`WsError::Protocol`] if the handshake fails.
    pub async fn accept(stream: tokio::net::TcpStream, opts: WsOptions) -> Result<WsConn, WsError> {
        let peer = stream.peer_addr().ok();
        let ws = tokio_tungstenite::accept_async(stream).await?;
        Ok(WsConn::drive(ws, opts, peer))
    }

    /// Connects to `url` (`ws://`).
    ///
    /// # Errors
    ///
    /// [`WsError::Protocol`] if connecting or the handshake fails.
    pub async fn connect(url: &str, opts: WsOptions) -> Result<WsConn, WsError> {
        let (ws, _response) = tokio_tungstenite::connect_async(url).await?;
        let peer = match ws.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(s) => s.peer_addr().ok(),
            _ => None,
        };
        Ok(WsConn::drive(ws, opts, peer))
    }

    /// Wraps an established WebSocket stream of any transport.
    pub fn drive<S>(ws: WebSocketStream<S>, opts: WsOptions, peer: Option<SocketAddr>) -> WsConn
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::channel(64);
        let (state_tx, state_rx) = watch::channel(None);
        let (closer_tx, closer_rx) = oneshot::channel::<std::sync::Arc<Closer>>();
        let task = tokio::spawn(async move {
            let reason = driver(ws, opts, cmd_rx, in_tx).await;
            if let Ok(closer) = closer_rx.await {
                closer.end(reason);
            }
        });
        let closer = std::sync::Arc::new(Closer {
            state: state_tx,
            driver: task.abort_handle(),
            close_timeout: opts.close_timeout,
        });
        let _ = closer_tx.send(std::sync::Arc::clone(&closer));
        WsConn {
            cmds: cmd_tx,
            inbox: std::sync::Arc::new(tokio::sync::Mutex::new(in_rx)),
            state: state_rx,
            closer,
            peer,
        }
    }

    /// The peer's address, when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Sends a message.
    ///
    /// # Errors
    ///
    /// [`WsError::Closed`] once the connection is closed or closing.
    pub async fn send(&self, msg: Message) -> Result<(), WsError> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Send(msg, tx)).await.is_err() {
            return Err(WsError::Closed(self.closed().await));
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(WsError::Closed(self.closed().await)),
        }
    }

    /// The next text or binary message; `None` once the connection is closed.
    pub async fn recv(&self) -> Option<Message> {
        self.inbox.lock().await.recv().await
    }

    /// Runs the close handshake (once; later calls wait for the first) and returns how the
    /// connection ended, within the close timeout ([`WsOptions::close_timeout`]) whatever the
    /// peer does: a peer that stopped reading (its socket buffer full, so not even our Close
    /// frame can be sent) gets [`CloseReason::HandshakeTimeout`], and the TCP stream is closed.
    pub async fn close(&self) -> CloseReason {
        let until = Instant::from_std(closeout::saturating_deadline(
            std::time::Instant::now(),
            self.closer.close_timeout,
        ));
        let asked = tokio::time::timeout_at(until, self.cmds.send(Cmd::Close)).await;
        if asked.is_ok()
            && let Ok(reason) = tokio::time::timeout_at(until, self.closed()).await
        {
            return reason;
        }
        // The driver is stuck (most likely writing to a peer that stopped reading): give up the
        // handshake; aborting the driver drops the socket, which closes the TCP stream.
        // The reason first, so whoever sees the driver gone reads it.
        self.closer.end(CloseReason::HandshakeTimeout);
        self.closer.driver.abort();
        self.closed().await
    }

    /// Waits until the connection has ended, without closing it.
    pub async fn closed(&self) -> CloseReason {
        let mut state = self.state.clone();
        loop {
            if let Some(reason) = state.borrow_and_update().clone() {
                return reason;
            }
            if self.closer.driver.is_finished() {
                // Ended without a word (aborted, or its runtime went away).
                self.closer.end(CloseReason::Error("the connection's driver ended".into()));
                continue;
            }
            // Bounded, so a driver that ends without publishing is noticed.
            let _ = tokio::time::timeout(Duration::from_millis(100), state.changed()).await;
        }
    }

    /// Whether it has ended.
    pub fn is_closed(&self) -> bool {
        self.state.borrow().is_some()
    }

    /// A registry resource (category `Network`) whose cleanup closes the connection: `Ok` for
    /// a completed handshake, else [`NotClean`].
    pub fn resource(&self, id: impl Into<String>) -> Resource {
        Resource::new_async(id, self.clone().release()).category(Category::Network)
    }

    /// Closes the connection when `scope` is released (see [`resource`](WsConn::resource)).
    ///
    /// # Errors
    ///
    /// [`Rejected`](closeout::Rejected) with the connection, still open, if the scope was
    /// released.
    pub fn defer_in(
        &self,
        scope: &closeout::Scope,
        name: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<(), closeout::Rejected<WsConn>> {
        scope.defer_release_async(name, self.clone(), WsConn::release).map(drop)
    }

    /// The close as a cleanup result: `Ok` for a completed handshake.
    async fn release(self) -> Result<(), NotClean> {
        let reason = self.close().await;
        if reason.is_clean() {
            Ok(())
        } else {
            Err(NotClean { peer: self.peer.map_or_else(|| "?".into(), |p| p.to_string()), reason })
        }
    }
}

async fn driver<S>(
    ws: WebSocketStream<S>,
    opts: WsOptions,
    mut cmds: mpsc::Receiver<Cmd>,
    inbox: mpsc::Sender<Message>,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let mut last_heard = Instant::now();
    // A zero heartbeat is off: the ticker is never polled (a zero period would make tokio panic).
    let beat = opts.heartbeat.max(Duration::from_nanos(1));
    let heartbeat_on = !opts.heartbeat.is_zero();
    let first = Instant::from_std(closeout::saturating_deadline(Instant::now().into_std(), beat));
    let mut ticks = tokio::time::interval_at(first, beat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing: Option<Instant> = None;
    // A message the reader has no room for yet: the socket is not read until it is delivered
    // (back-pressure reaches the peer through TCP), never dropped.
    let mut pending: Option<Message> = None;
    let close_frame = || Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }));
    loop {
        let close_deadline = closing
            .map(|t| Instant::from_std(closeout::saturating_deadline(t.into_std(), opts.close_timeout)));
        tokio::select! {
            permit = inbox.reserve(), if pending.is_some() => {
                match permit {
                    Ok(permit) => {
                        if let Some(msg) = pending.take() {
                            permit.send(msg);
                        }
                    }
                    // Nobody will read any more: nothing to deliver to.
                    Err(_) => pending = None,
                }
                // Waiting on our reader is not the peer's silence.
                last_heard = Instant::now();
            }
            frame = stream.next(), if pending.is_none() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Close(frame))) => {
                        if closing.is_some() {
                            return CloseReason::Closed;
                        }
                        // tungstenite has queued the answering Close: flush it out (closing
                        // the sink sends nothing more once a Close was answered).
                        let _ = sink.close().await;
                        return CloseReason::ByPeer(frame.map_or(1005, |f| u16::from(f.code)));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                        // tungstenite queues the pong for a ping; push it out.
                        let _ = sink.flush().await;
                    }
                    Some(Ok(msg)) => {
                        if let Err(mpsc::error::TrySendError::Full(msg)) = inbox.try_send(msg) {
                            pending = Some(msg);
                        }
                    }
                    Some(Err(e)) => return CloseReason::Error(e.to_string()),
                    None => {
                        return if closing.is_some() {
                            CloseReason::Closed
                        } else {
                            CloseReason::Error("connection ended without a close frame".into())
                        };
                    }
                }
            }
            cmd = cmds.recv(), if closing.is_none() => match cmd {
                Some(Cmd::Send(msg, reply)) => {
                    let sent = sink.send(msg).await.map_err(WsError::from);
                    let _ = reply.send(sent);
                }
                // Asked to close, or every handle dropped.
                Some(Cmd::Close) | None => {
                    if let Err(e) = sink.send(close_frame()).await {
                        return CloseReason::Error(e.to_string());
                    }
                    closing = Some(Instant::now());
                }
            },
            _ = ticks.tick(), if closing.is_none() && heartbeat_on => {
                if pending.is_none() && last_heard.elapsed() >= opts.timeout {
                    let _ = sink.close().await;
                    return CloseReason::HeartbeatTimeout;
                }
                if let Err(e) = sink.send(Message::Ping(Default::default())).await {
                    return CloseReason::Error(e.to_string());
                }
            }
            _ = async { tokio::time::sleep_until(close_deadline.unwrap_or_else(Instant::now)).await }, if close_deadline.is_some() => {
                return CloseReason::HandshakeTimeout;
            }
        }
    }
}
