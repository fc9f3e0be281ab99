//! Network servers that shut down properly.
//!
//! Why: a server that exits by dropping everything cuts off requests in flight; one that waits
//! for every connection can wait forever on a client that never hangs up. A [`TcpServer`]
//! shuts down in three steps: stop accepting (the listener is closed, new connections are
//! refused), let open connections finish within a grace period (their handlers' tokens are
//! cancelled so they can wrap up), then force-close whatever is left. The [`DrainReport`] names
//! each connection that drained and each that was forced; as a [`closeout`] resource the same
//! goes into the teardown report (category `Network`).
//!
//! ```
//! use closeout::Registry;
//! use closeout_net::TcpServer;
//! use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new();
//! let server = TcpServer::bind("127.0.0.1:0").await?.grace(Duration::from_secs(5));
//! let handle = server.serve(|stream, peer, token| async move {
//!     // serve `stream` until the client is done or `token` is cancelled
//!     # let _ = (stream, peer);
//!     token.cancelled().await;
//! });
//! registry.register(handle.resource("http"))?;
//! let report = registry.shutdown().await; // stop accepting, drain, force-close, report
//! assert!(report.is_success());
//! # Ok(()) }
//! ```
//!
//! With the `ws` feature, `WsConn` is a WebSocket connection (server or client side) with a
//! ping/pong heartbeat that closes a silent peer, an idempotent close handshake bounded by its
//! timeout, and back-pressure instead of dropped messages; `Reconnecting` keeps a client
//! connection up with exponential back-off and an observable `Health`.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "http")]
mod http;
mod port;
#[cfg(feature = "ws")]
mod reconnect;
mod server;
#[cfg(feature = "ws")]
mod ws;

#[cfg(feature = "http")]
pub use http::{
    CutRequests, DEFAULT_HTTP_GRACE, HttpBody, HttpDrainReport, HttpListener, HttpServer, HttpService,
    serve_http,
};
pub use port::{
    PortTimeout, wait_until_accepting, wait_until_accepting_blocking, wait_until_free,
    wait_until_free_blocking,
};
#[cfg(feature = "ws")]
pub use reconnect::{Backoff, Health, Reconnecting};
pub use server::{DEFAULT_GRACE, DrainReport, Forced, ServerHandle, TcpServer};
#[cfg(feature = "ws")]
pub use tokio_tungstenite::tungstenite::Message;
#[cfg(feature = "ws")]
pub use ws::{CloseReason, NotClean, WsConn, WsError, WsOptions};

/// Locks `m`, taking the guard back if a panic poisoned it: every lock in this crate guards
/// plain values that no user code changes while it is held, so the state is still consistent.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
