//! [`TcpServer`]: a TCP server whose shutdown stops accepting, drains, then force-closes.

use crate::lock;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use closeout::{Category, Resource};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

/// How long open connections may take to finish after shutdown begins, unless
/// [`TcpServer::grace`] says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How one shutdown went, connection by connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections that were open when shutdown began and finished within the grace period.
    pub drained: Vec<SocketAddr>,
    /// Connections still open at the end of the grace period, closed by force.
    pub forced: Vec<SocketAddr>,
    /// Connections whose handler panicked (any time in the server's life), with the panic's
    /// message: counted as closed the moment they panicked, never waited for.
    pub panicked: Vec<(SocketAddr, String)>,
    /// Connections accepted over the server's life.
    pub accepted: u64,
    /// How long the shutdown took.
    pub took: Duration,
}

impl DrainReport {
    /// One line for a report entry: "drained 12 connection(s), 1 forced", plus panicked
    /// handlers when there were any.
    ///
    /// ```
    /// let report = closeout_net::DrainReport::default();
    /// assert_eq!(report.summary(), "drained 0 connection(s), 0 forced");
    /// ```
    pub fn summary(&self) -> String {
        let mut line = format!("drained {} connection(s), {} forced", self.drained.len(), self.forced.len());
        if !self.panicked.is_empty() {
            line.push_str(&format!(", {} handler(s) panicked", self.panicked.len()));
        }
        line
    }
}

/// A shutdown that had to force connections closed, as a teardown report shows it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} connection(s) still open after the {grace:?} grace period were closed by force: {peers:?}; {} handler(s) panicked: {panicked:?}",
    peers.len(),
    panicked.len()
)]
pub struct Forced {
    /// The grace period.
    pub grace: Duration,
    /// Their peers.
    pub peers: Vec<SocketAddr>,
    /// Connections whose handler panicked, with the message.
    pub panicked: Vec<(SocketAddr, String)>,
}

struct Conn {
    peer: SocketAddr,
    abort: Option<AbortHandle>,
}

#[derive(Default)]
struct Conns {
    open: HashMap<u64, Conn>,
    next: u64,
    accepted: u64,
    /// Set when shutdown begins: connections that end from then on were drained.
    draining: bool,
    drained: Vec<SocketAddr>,
    panicked: Vec<(SocketAddr, String)>,
}

struct Shared {
    conns: Mutex<Conns>,
    changed: Notify,
    /// Cancelled first: stop accepting.
    accept: CancellationToken,
    /// Cancelled second: tell connection handlers to finish.
    connections: CancellationToken,
    grace: Duration,
    report: tokio::sync::Mutex<Option<DrainReport>>,
    acceptor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        lock(&self.conns)
    }
}

/// A listening socket, not yet serving.
///
/// ```
/// use closeout_net::TcpServer;
/// use std::time::Duration;
/// use tokio::io::AsyncWriteExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let server = TcpServer::bind("127.0.0.1:0").await?.grace(Duration::from_secs(1));
/// let addr = server.local_addr()?;
/// let handle = server.serve(|mut stream, _peer, _token| async move {
///     let _ = stream.write_all(b"hello\n").await;
/// });
/// let _client = tokio::net::TcpStream::connect(addr).await?;
/// let report = handle.shutdown().await;
/// assert!(report.forced.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TcpServer {
    listener: TcpListener,
    grace: Duration,
}

impl TcpServer {
    /// Binds `addr`.
    ///
    /// # Errors
    ///
    /// What binding returns.
    pub async fn bind(addr: impl ToSocketAddrs) -> std::io::Result<TcpServer> {
        Ok(TcpServer { listener: TcpListener::bind(addr).await?, grace: DEFAULT_GRACE })
    }

    /// Serves an already bound listener.
    pub fn from_listener(listener: TcpListener) -> TcpServer {
        TcpServer { listener, grace: DEFAULT_GRACE }
    }

    /// How long open connections may take to finish once shutdown begins.
    pub fn grace(mut self, grace: Duration) -> TcpServer {
        self.grace = grace;
        self
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// What the OS returns.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts accepting on the current tokio runtime; each connection runs `handler` on its own
    /// task with a token that is cancelled when shutdown begins (finish the current request,
    /// then return).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn serve<H, Fut>(self, handler: H) -> ServerHandle
    where
        H: Fn(TcpStream, SocketAddr, CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            conns: Mutex::new(Conns::default()),
            changed: Notify::new(),
            accept: CancellationToken::new(),
            connections: CancellationToken::new(),
            grace: self.grace,
            report: tokio::sync::Mutex::new(None),
            acceptor: Mutex::new(None),
        });
        let acceptor = tokio::spawn(accept_loop(self.listener, Arc::clone(&shared), Arc::new(handler)));
        *lock(&shared.acceptor) = Some(acceptor);
        ServerHandle { shared }
    }
}

async fn accept_loop<H, Fut>(listener: TcpListener, shared: Arc<Shared>, handler: Arc<H>)
where
    H: Fn(TcpStream, SocketAddr, CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shared.accept.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of fds and the like: back off briefly rather than spin.
                    tracing::warn!(error = %e, "closeout-net: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let id = {
            let mut conns = shared.conns();
            let id = conns.next;
            conns.next += 1;
            conns.accepted += 1;
            conns.open.insert(id, Conn { peer, abort: None });
            id
        };
        let token = shared.connections.child_token();
        let handler = Arc::clone(&handler);
        let done = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            use futures_util::FutureExt;
            use std::panic::AssertUnwindSafe;
            // A handler that panics (making its future, or running it) ends its connection at
            // once and is reported; it never holds the drain for its grace period.
            let ended = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(stream, peer, token))) {
                Ok(conn) => AssertUnwindSafe(conn).catch_unwind().await,
                Err(payload) => Err(payload),
            };
            let mut conns = done.conns();
            if let Some(c) = conns.open.remove(&id) {
                match ended {
                    Ok(()) if conns.draining => conns.drained.push(c.peer),
                    Ok(()) => {}
                    Err(payload) => {
                        let msg = panic_text(&*payload);
                        // A payload whose own destructor panics must not take this task down.
                        if let Err(again) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(payload)))
                        {
                            std::mem::forget(again);
                        }
                        tracing::error!(peer = %c.peer, panic = %msg, "closeout-net: connection handler panicked");
                        conns.panicked.push((c.peer, msg));
                    }
                }
            }
            drop(conns);
            done.changed.notify_waiters();
        });
        if let Some(c) = shared.conns().open.get_mut(&id) {
            c.abort = Some(task.abort_handle());
        }
    }
    // The listener is dropped here: new connections are refused from now on.
}

/// A serving [`TcpServer`]. Clone it freely; [`shutdown`](ServerHandle::shutdown) is
/// idempotent (later calls wait for and return the first shutdown's report).
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").field("open", &self.open_connections()).finish()
    }
}

impl ServerHandle {
    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        self.shared.conns().open.len()
    }

    /// Stops accepting, tells handlers to finish, waits up to the grace period for them, then
    /// aborts the rest (dropping their sockets closes them) and reports each connection.
    pub async fn shutdown(&self) -> DrainReport {
        let mut report = self.shared.report.lock().await;
        if let Some(r) = report.as_ref() {
            return r.clone();
        }
        let start = Instant::now();
        // 1. Stop accepting: the accept loop ends and drops the listener.
        self.shared.accept.cancel();
        let acceptor = lock(&self.shared.acceptor).take();
        if let Some(acceptor) = acceptor {
            let _ = acceptor.await;
        }
        // 2. Ask the open connections to finish.
        self.shared.conns().draining = true;
        self.shared.connections.cancel();
        // 3. Wait for them, up to the grace period.
        let until = tokio::time::Instant::from_std(closeout::saturating_deadline(start, self.shared.grace));
        loop {
            let changed = self.shared.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.shared.conns().open.is_empty() {
                break;
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                break;
            }
        }
        // 4. Force-close what is left.
        let (forced, drained, panicked, accepted) = {
            let mut conns = self.shared.conns();
            let forced: Vec<SocketAddr> = conns
                .open
                .drain()
                .map(|(_, c)| {
                    if let Some(abort) = c.abort {
                        abort.abort();
                    }
                    c.peer
                })
                .collect();
            (forced, std::mem::take(&mut conns.drained), std::mem::take(&mut conns.panicked), conns.accepted)
        };
        let done = DrainReport { drained, forced, panicked, accepted, took: start.elapsed() };
        *report = Some(done.clone());
        done
    }

    /// A registry resource (category `Network`) whose cleanup is [`shutdown`](ServerHandle::shutdown):
    /// `Ok` when every connection drained, else the [`Forced`] list.
    ///
    /// ```
    /// use closeout::Registry;
    /// use closeout_net::TcpServer;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = Registry::new();
    /// let server = TcpServer::bind("127.0.0.1:0").await?;
    /// let handle = server.serve(|_stream, _peer, token| async move { token.cancelled().await });
    /// registry.register(handle.resource("api"))?;
    /// assert!(registry.shutdown().await.is_success());
    /// # Ok(()) }
    /// ```
    ///
    /// Its report entry says what the drain did: "drained 12 connection(s), 1 forced" (and
    /// how many handlers panicked, if any).
    pub fn resource(&self, id: impl Into<String>) -> Resource {
        let detail = closeout::Detail::new();
        Resource::new_async(id, self.clone().release(Some(detail.clone())))
            .category(Category::Network)
            .detail(&detail)
    }

    /// Shuts the server down when `scope` is released (see [`resource`](ServerHandle::resource)).
    ///
    /// # Errors
    ///
    /// [`Rejected`](closeout::Rejected) with the handle, still serving, if the scope was
    /// released.
    pub fn defer_in(
        &self,
        scope: &closeout::Scope,
        name: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<(), closeout::Rejected<ServerHandle>> {
        scope.defer_release_async(name, self.clone(), |h| h.release(None)).map(drop)
    }

    /// The shutdown as a cleanup result: `Ok` when every connection drained.
    async fn release(self, detail: Option<closeout::Detail>) -> Result<(), Forced> {
        let grace = self.shared.grace;
        let report = self.shutdown().await;
        if let Some(detail) = detail {
            detail.set(report.summary());
        }
        if report.forced.is_empty() && report.panicked.is_empty() {
            Ok(())
        } else {
            Err(Forced { grace, peers: report.forced, panicked: report.panicked })
        }
    }
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}
