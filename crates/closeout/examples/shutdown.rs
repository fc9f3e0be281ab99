//! A small but real service, torn down in dependency order.
//!
//! A TCP echo server on 127.0.0.1 with a few client connections, a background task that writes
//! to a log file and to a temp dir. Everything is registered with closeout; after a short run
//! (or at Ctrl-C) it prints the plan, tears down, and prints the report.
//!
//! ```sh
//! cargo run --release --example shutdown            # runs for 1.5 s
//! cargo run --release --example shutdown -- 10      # runs for 10 s (Ctrl-C ends it early)
//! ```
//!
//! Dependencies (A -> B: A uses B, so A is torn down first):
//!
//! ```text
//! conn-N -> server -> log-file -> temp-dir
//! ticker -> log-file, temp-dir
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use closeout::{Category, Priority, Registry, Resource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const CLIENTS: usize = 4;

type Log = Arc<Mutex<std::fs::File>>;

fn log(file: &Log, line: &str) {
    let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
    // Losing a log line is not worth failing the service over; the teardown reports real errors.
    let _ = writeln!(f, "{line}");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run_for = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_millis(1500), Duration::from_secs);
    let registry = Registry::builder().deadline(Duration::from_secs(10)).build()?;

    // Temp dir: removed last, after everything that writes into it.
    let temp = tempfile::tempdir()?;
    let temp_path = temp.path().to_owned();
    let tick_dir = temp_path.clone();
    registry.register(
        Resource::new("temp-dir", move || temp.close())
            .category(Category::File)
            .priority(Priority::Low)
            .timeout(Duration::from_secs(2))
            .description("scratch space for the ticker"),
    )?;

    // Log file, inside the temp dir: synced after the server and the ticker stop writing, and
    // before the temp dir goes.
    let log_path = temp_path.join("service.log");
    let log_file: Log = Arc::new(Mutex::new(std::fs::File::create(&log_path)?));
    let lf = log_file.clone();
    registry.register(
        Resource::new("log-file", move || {
            let f = lf.lock().unwrap_or_else(|p| p.into_inner());
            f.sync_all()
        })
        .category(Category::File)
        .description(log_path.display().to_string())
        .depends_on(["temp-dir"]),
    )?;

    // Echo server: stop accepting, then wait for the accept loop and its connections.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let server_log = log_file.clone();
    let server = tokio::spawn(serve(listener, stop_rx, server_log));
    registry.register(
        Resource::new_async("server", async move {
            let _ = stop_tx.send(true);
            server.await.map_err(|e| std::io::Error::other(e.to_string()))?
        })
        .category(Category::Network)
        .priority(Priority::High)
        .timeout(Duration::from_secs(3))
        .metadata("addr", addr.to_string())
        .depends_on(["log-file"]),
    )?;

    // Clients: each closes its side gracefully before the server goes.
    for i in 0..CLIENTS {
        let mut conn = TcpStream::connect(addr).await?;
        conn.write_all(format!("hello from {i}\n").as_bytes()).await?;
        let mut buf = vec![0u8; 64];
        let n = conn.read(&mut buf).await?;
        log(&log_file, &format!("client {i} got echo: {}", String::from_utf8_lossy(&buf[..n]).trim()));
        registry.register(
            Resource::new_async(format!("conn-{i}"), async move {
                conn.shutdown().await?;
                // Drain until the server closes its side too.
                let mut rest = Vec::new();
                conn.read_to_end(&mut rest).await.map(|_| ())
            })
            .category(Category::Network)
            .timeout(Duration::from_secs(1))
            .tag("client")
            .depends_on(["server"]),
        )?;
    }

    // Background task: writes a tick to the log and a file to the temp dir until cancelled.
    let (tick_stop, mut tick_rx) = watch::channel(false);
    let ticker_log = log_file.clone();
    let ticker = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = tick_rx.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    n += 1;
                    log(&ticker_log, &format!("tick {n}"));
                    let _ = std::fs::write(tick_dir.join(format!("tick-{n}")), n.to_string());
                }
            }
        }
        n
    });
    registry.register(
        Resource::new_async("ticker", async move {
            let _ = tick_stop.send(true);
            let ticks = ticker.await.map_err(|e| std::io::Error::other(e.to_string()))?;
            println!("ticker stopped after {ticks} ticks");
            Ok::<(), std::io::Error>(())
        })
        .category(Category::custom("task"))
        .priority(Priority::High)
        .timeout(Duration::from_secs(1))
        .depends_on(["log-file", "temp-dir"]),
    )?;

    println!("echo server on {addr}; running for {run_for:?} (Ctrl-C to stop early)");
    tokio::select! {
        _ = tokio::time::sleep(run_for) => {}
        _ = tokio::signal::ctrl_c() => println!("Ctrl-C: shutting down"),
    }

    println!("{}", registry.plan());
    let report = registry.shutdown().await;
    println!("{report}");
    println!("temp dir and log file removed: {}", !log_path.exists() && !temp_path.exists());
    report.into_result()?;
    Ok(())
}

/// Accepts until told to stop, echoing each line; then waits for open connections to finish.
async fn serve(listener: TcpListener, mut stop: watch::Receiver<bool>, log_file: Log) -> std::io::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let (mut sock, peer) = accepted?;
                log(&log_file, &format!("accepted {peer}"));
                conns.spawn(async move {
                    let mut buf = vec![0u8; 1024];
                    loop {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if sock.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
    log(&log_file, "server stopped");
    Ok(())
}
