//! [`HttpServer`]: an axum `Router`, or any hyper-compatible tower service, served over
//! HTTP/1.1 until a teardown, then drained: it stops accepting, lets in-flight requests finish
//! within a grace period, closes idle keep-alive connections, cuts what is left, and says how
//! many requests drained and how many were cut (feature `http`).
//!
//! It replaces the `axum::serve(..).with_graceful_shutdown(..)` glue: that waits for in-flight
//! requests without a bound and reports nothing.
//!
//! # Invariants
//!
//! H1. Every request is counted in `in_flight` from the moment the service is called until its
//!    response future ends or is dropped; it is counted once more at its end, as drained when
//!    the drain had begun and cutting had not, as cut once cutting has begun.
//! H2. Cutting begins (`cutting`) before any connection task is aborted, so a request dropped by
//!    the abort is never counted as drained.
//!
//! Lock order: `Shared::state` (an async lock) is the only lock; the counters are atomics read
//! and written with `SeqCst` (they are few and not on a hot path of their own).

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use closeout::{Category, Detail, Registry, Resource};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The grace period of an [`HttpServer`] unless [`HttpListener::grace`] says otherwise.
pub const DEFAULT_HTTP_GRACE: Duration = Duration::from_secs(10);

/// What one drain of an [`HttpServer`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpDrainReport {
    /// Requests in flight when the drain began, or arriving on open connections during it,
    /// that finished within the grace period.
    pub drained: u64,
    /// Requests still running at the end of the grace period, cut by closing their connection.
    pub cut: u64,
    /// Connections open when the drain began.
    pub connections: u64,
    /// Requests served over the server's life (cut ones included).
    pub served: u64,
    /// How long the drain took.
    pub took: Duration,
}

impl HttpDrainReport {
    /// One line for a report entry: "drained 12 request(s), 1 cut (4 connection(s))".
    ///
    /// ```
    /// assert_eq!(closeout_net::HttpDrainReport::default().summary(), "drained 0 request(s), 0 cut (0 connection(s))");
    /// ```
    pub fn summary(&self) -> String {
        format!("drained {} request(s), {} cut ({} connection(s))", self.drained, self.cut, self.connections)
    }
}

/// A drain that had to cut requests, as a teardown report shows it.
#[derive(Debug, thiserror::Error)]
#[error("{} request(s) were still running after the {grace:?} grace period and were cut ({} drained)", report.cut, report.drained)]
pub struct CutRequests {
    /// The grace period that passed.
    pub grace: Duration,
    /// The whole drain.
    pub report: HttpDrainReport,
}

/// What an [`HttpServer`] serves: a tower service of hyper requests answering with `B`
/// bodies, cloned per connection — an axum `Router` is one. Implemented for every such
/// service.
///
/// ```
/// fn servable<S: closeout_net::HttpService<B>, B: closeout_net::HttpBody>(_: &S) {}
/// servable(&axum::Router::new());
/// ```
pub trait HttpService<B>:
    tower_service::Service<
        Request<Incoming>,
        Response = Response<B>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: tower_service::Service<
            Request<Incoming>,
            Response = Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A response body an [`HttpServer`] can send: any `http_body::Body` whose chunks and errors
/// cross threads. Implemented for every such body.
///
/// ```
/// fn sendable<B: closeout_net::HttpBody>() {}
/// sendable::<axum::body::Body>();
/// ```
pub trait HttpBody:
    http_body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<B> HttpBody for B where
    B: http_body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

/// A running HTTP/1.1 server (feature `http`): an axum `Router`, or any tower service of hyper
/// requests, served until a teardown, then drained — it stops accepting, lets in-flight
/// requests finish within its grace period, closes idle keep-alive connections, cuts what is
/// left, and says how many requests drained and how many were cut. It replaces the
/// `axum::serve(..).with_graceful_shutdown(..)` glue, which waits without a bound and reports
/// nothing. Clones are handles to the same server.
///
/// ```
/// use axum::{Router, routing::get};
/// use closeout::Registry;
/// use closeout_net::HttpServer;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Registry::new();
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// let server = HttpServer::bind("127.0.0.1:0").await?.serve(app);
/// registry.register(server.resource("http"))?; // serves until the teardown, then drains
/// let report = registry.shutdown().await;
/// assert_eq!(report.get("http").unwrap().detail(), Some("drained 0 request(s), 0 cut (0 connection(s))"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpServer {
    shared: Arc<Shared>,
}

/// A bound listener, not serving yet: set the grace, then [`serve`](HttpListener::serve).
#[derive(Debug)]
pub struct HttpListener {
    listener: TcpListener,
    grace: Duration,
}

struct Shared {
    addr: SocketAddr,
    grace: Duration,
    token: CancellationToken,
    counts: Arc<Counts>,
    state: tokio::sync::Mutex<State>,
}

/// The request counters (H1, H2).
#[derive(Default)]
struct Counts {
    in_flight: AtomicU64,
    served: AtomicU64,
    draining: AtomicBool,
    cutting: AtomicBool,
    drained: AtomicU64,
    cut: AtomicU64,
}

/// The accept loop while it runs (its result is the drain's report), then the report.
struct State {
    serving: Option<tokio::task::JoinHandle<HttpDrainReport>>,
    report: HttpDrainReport,
}

/// Counts one request from its call to the end or drop of its response future (H1).
struct InFlight(Arc<Counts>);

impl InFlight {
    fn new(counts: &Arc<Counts>) -> InFlight {
        counts.in_flight.fetch_add(1, Ordering::SeqCst);
        counts.served.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(counts))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.0;
        c.in_flight.fetch_sub(1, Ordering::SeqCst);
        if c.cutting.load(Ordering::SeqCst) {
            c.cut.fetch_add(1, Ordering::SeqCst);
        } else if c.draining.load(Ordering::SeqCst) {
            c.drained.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl HttpServer {
    /// Binds `addr` (use port 0 for any free port).
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> std::io::Result<HttpListener> {
        Ok(HttpListener { listener: TcpListener::bind(addr).await?, grace: DEFAULT_HTTP_GRACE })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> u64 {
        self.shared.counts.in_flight.load(Ordering::SeqCst)
    }

    /// Stops accepting, drains, and reports (see [`HttpServer`]). Concurrent and
    /// later calls wait for the same drain and get the same report.
    pub async fn shutdown(&self) -> HttpDrainReport {
        self.shared.token.cancel();
        let mut state = self.shared.state.lock().await;
        let state = &mut *state;
        // Cancel safety: the handle is dropped only once its report is stored.
        if let Some(handle) = state.serving.as_mut() {
            state.report = handle.await.unwrap_or_default();
            state.serving = None;
        }
        state.report.clone()
    }

    /// A registry resource (category `Network`) whose cleanup is [`shutdown`](HttpServer::shutdown):
    /// `Ok` when every request drained, else [`CutRequests`]. Its report entry says what the
    /// drain did ([`HttpDrainReport::summary`]).
    pub fn resource(&self, id: impl Into<String>) -> Resource {
        let detail = Detail::new();
        let (server, note) = (self.clone(), detail.clone());
        Resource::new_async(id, async move {
            let report = server.shutdown().await;
            note.set(report.summary());
            if report.cut == 0 { Ok(()) } else { Err(CutRequests { grace: server.shared.grace, report }) }
        })
        .category(Category::Network)
        .detail(&detail)
    }
}

impl fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.shared.addr)
            .field("grace", &self.shared.grace)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl HttpListener {
    /// How long in-flight requests may take once the drain begins (default 10 s). Any value
    /// works: zero cuts whatever is running at once.
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> HttpListener {
        self.grace = grace;
        self
    }

    /// The address it listens on.
    ///
    /// # Errors
    ///
    /// What the OS says.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `service` (an axum `Router`, or any tower service of hyper requests) on the
    /// current tokio runtime until [`HttpServer::shutdown`] (or its resource's teardown).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn serve<S, B>(self, service: S) -> HttpServer
    where
        S: HttpService<B>,
        B: HttpBody,
    {
        let addr = self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let token = CancellationToken::new();
        let counts = Arc::new(Counts::default());
        let accept = accept_loop(self.listener, service, token.clone(), Arc::clone(&counts), self.grace);
        let handle = tokio::spawn(accept);
        HttpServer {
            shared: Arc::new(Shared {
                addr,
                grace: self.grace,
                token,
                counts,
                state: tokio::sync::Mutex::new(State {
                    serving: Some(handle),
                    report: HttpDrainReport::default(),
                }),
            }),
        }
    }
}

/// Accepts until cancelled, then drains: the one task that owns the listener and every
/// connection task.
async fn accept_loop<S, B>(
    listener: TcpListener,
    service: S,
    token: CancellationToken,
    counts: Arc<Counts>,
    grace: Duration,
) -> HttpDrainReport
where
    S: HttpService<B>,
    B: HttpBody,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // Out of fds and the like: back off briefly rather than spin (as
                        // `TcpServer` does).
                        tracing::warn!(error = %e, "closeout-net: HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(service.clone());
                let counts = Arc::clone(&counts);
                let token = token.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let guard = InFlight::new(&counts);
                        let response = hyper::service::Service::call(&service, req);
                        async move {
                            let response = response.await;
                            drop(guard);
                            response
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        () = token.cancelled() => {
                            // Finish the request in progress, then close (idle ones close now).
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            // Reap finished connections as we go, so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let start = Instant::now();
    drop(listener); // stop accepting: new connections are refused from here on
    counts.draining.store(true, Ordering::SeqCst);
    let open = connections.len() as u64;
    let until = tokio::time::Instant::from_std(closeout::saturating_deadline(start, grace));
    while !connections.is_empty() {
        if tokio::time::timeout_at(until, connections.join_next()).await.is_err() {
            break;
        }
    }
    // H2: cutting is marked before any abort.
    counts.cutting.store(true, Ordering::SeqCst);
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    HttpDrainReport {
        drained: counts.drained.load(Ordering::SeqCst),
        cut: counts.cut.load(Ordering::SeqCst),
        connections: open,
        served: counts.served.load(Ordering::SeqCst),
        took: start.elapsed(),
    }
}

/// Serves `service` at `listener`'s address and registers it in `registry` as `id`: the one
/// call for an axum app in a registry.
///
/// # Errors
///
/// The registry's refusal ([`closeout::RegisterError`]), with the server drained first (it
/// had served nothing yet).
///
/// ```
/// use axum::{Router, routing::get};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = closeout::Registry::new();
/// let listener = closeout_net::HttpServer::bind("127.0.0.1:0").await?;
/// let server = closeout_net::serve_http(&registry, "api", listener, Router::new().route("/", get(|| async { "ok" }))).await?;
/// println!("serving on {}", server.local_addr());
/// registry.shutdown().await;
/// # Ok(()) }
/// ```
pub async fn serve_http<S, B>(
    registry: &Registry,
    id: impl Into<String>,
    listener: HttpListener,
    service: S,
) -> Result<HttpServer, closeout::RegisterError>
where
    S: HttpService<B>,
    B: HttpBody,
{
    let server = listener.serve(service);
    match registry.register(server.resource(id)) {
        Ok(()) => Ok(server),
        Err(refused) => {
            server.shutdown().await;
            Err(refused)
        }
    }
}
