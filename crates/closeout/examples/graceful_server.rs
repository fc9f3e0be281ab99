//! A real HTTP server (axum) that shuts down gracefully on SIGTERM or Ctrl-C:
//!
//! 1. the first signal starts the teardown: the server (`closeout_net::HttpServer`, one call
//!    for an axum app) stops accepting at once;
//! 2. requests in flight are drained within its grace period (5 s), and the report says how
//!    many drained and how many were cut;
//! 3. the connection pool the handlers use is closed only after the server has stopped, and the
//!    backend the pool talks to only after the pool (dependency order);
//! 4. the report is printed and the process ends as killed by the signal.
//!
//! ```text
//! cargo run --example graceful_server            # then: curl 127.0.0.1:<port>/slow, Ctrl-C
//! ```
//!
//! It prints `listening on <addr>` once ready; `tests/hooks.rs` starts it, sends a slow request,
//! signals it, and checks that the request was answered and that the order held.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use closeout::hooks::Hooks;
use closeout::owner::{Owner, Spawn};
use closeout::{Category, Registry, Resource};
use closeout_net::HttpServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A pool of connections to the backend, as a database pool would hold.
#[derive(Clone, Default)]
struct Pool(Arc<Mutex<Vec<TcpStream>>>);

impl Pool {
    async fn connect(addr: std::net::SocketAddr, size: usize) -> std::io::Result<Pool> {
        let pool = Pool::default();
        for _ in 0..size {
            let conn = TcpStream::connect(addr).await?;
            pool.0.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
        Ok(pool)
    }

    fn size(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Closes every connection: its cleanup.
    async fn close(self) -> std::io::Result<()> {
        let conns = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        eprintln!("pool: closing {} connections", conns.len());
        for mut conn in conns {
            conn.shutdown().await?;
        }
        Ok(())
    }
}

async fn slow(State(pool): State<Pool>) -> String {
    tokio::time::sleep(Duration::from_millis(500)).await;
    format!("slow answer, {} pooled connections\n", pool.size())
}

async fn hello(State(pool): State<Pool>) -> String {
    format!("hello, {} pooled connections\n", pool.size())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::builder().default_timeout(Duration::from_secs(10)).build()?;

    // The backend: accepts the pool's connections and holds them open until stopped.
    let backend = TcpListener::bind("127.0.0.1:0").await?;
    let backend_addr = backend.local_addr()?;
    registry.spawn(Spawn::new("backend").grace(Duration::from_secs(2)), move |token| async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                Ok((conn, _)) = backend.accept() => held.push(conn),
            }
        }
        // Reads until each peer closes: the pool must be gone before the backend stops.
        for mut conn in held {
            let mut buf = [0u8; 1];
            let _ = conn.read(&mut buf).await;
        }
        eprintln!("backend: stopped");
    })?;

    // Registered by hand (not spawned), so that the backend task's id is the dependency.
    let pool = Pool::connect(backend_addr, 4).await?;
    let closing = pool.clone();
    registry.register(
        Resource::new_async("pool", closing.close()).category(Category::Database).depends_on(["backend"]),
    )?;

    let app = Router::new().route("/", get(hello)).route("/slow", get(slow)).with_state(pool);
    // Serves until the teardown, then stops accepting and drains what is in flight.
    let server = HttpServer::bind("127.0.0.1:0").await?.grace(Duration::from_secs(5)).serve(app);
    registry.register(server.resource("http").depends_on(["pool"]))?;
    println!("listening on {}", server.local_addr());
    std::io::stdout().flush()?;

    let _hooks = Hooks::new(registry.clone()).deadline(Duration::from_secs(15)).install()?;
    // Serve until a signal: the hooks tear everything down and end the process.
    std::future::pending::<()>().await;
    Ok(())
}
