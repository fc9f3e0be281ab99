//! A real server on 127.0.0.1 with real clients: a request in flight when shutdown begins is
//! answered, new connections are refused, a client that never finishes is force-closed after
//! the grace period, and the report names each.

use std::time::{Duration, Instant};

use closeout::{Registry, Status};
use closeout_net::{Forced, TcpServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_refuses_new_and_forces_the_stuck() {
    let grace = Duration::from_millis(400);
    let server = TcpServer::bind("127.0.0.1:0").await.unwrap().grace(grace);
    let addr = server.local_addr().unwrap();
    let handle = server.serve(|mut stream, _peer, token| async move {
        let mut line = [0u8; 5];
        if stream.read_exact(&mut line).await.is_err() {
            return;
        }
        if &line == b"slow\n" {
            // A request in flight: finishes after shutdown began, within the grace period.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let _ = stream.write_all(b"done\n").await;
        } else {
            // A connection that ignores the token and never finishes.
            let _ = token;
            std::future::pending::<()>().await;
        }
    });
    let registry = Registry::new();
    registry.register(handle.resource("api")).unwrap();

    let mut slow = TcpStream::connect(addr).await.unwrap();
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    let slow_peer = slow.local_addr().unwrap();
    let stuck_peer = stuck.local_addr().unwrap();
    slow.write_all(b"slow\n").await.unwrap();
    stuck.write_all(b"hang\n").await.unwrap();
    while handle.open_connections() < 2 {
        tokio::task::yield_now().await;
    }

    let started = Instant::now();
    let teardown = tokio::spawn(async move { registry.shutdown().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "a new connection was accepted during shutdown");

    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "done\n", "the request in flight was answered");

    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), stuck.read_to_end(&mut rest)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the stuck connection was closed: {n:?}");
    assert!(started.elapsed() >= grace, "closed only after the grace period");

    let report = teardown.await.unwrap();
    let entry = report.get("api").unwrap();
    assert_eq!(entry.category().as_str(), "network");
    let Status::Failed(err) = entry.status() else { panic!("{report}") };
    let forced = err.get_ref().downcast_ref::<Forced>().expect("a Forced error");
    assert_eq!(forced.peers, [stuck_peer]);
    let drain = handle.shutdown().await; // idempotent: the same report
    assert_eq!(drain.drained, [slow_peer]);
    assert_eq!(drain.forced, [stuck_peer]);
    assert_eq!(drain.accepted, 2);
}

#[tokio::test(flavor = "current_thread")]
async fn handlers_that_watch_their_token_all_drain() {
    let server = TcpServer::bind("127.0.0.1:0").await.unwrap().grace(Duration::from_secs(10));
    let addr = server.local_addr().unwrap();
    let handle = server.serve(|_stream, _peer, token| async move { token.cancelled().await });
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    while handle.open_connections() < 50 {
        tokio::task::yield_now().await;
    }
    let report = handle.shutdown().await;
    assert_eq!(report.drained.len(), 50);
    assert!(report.forced.is_empty());
    assert!(report.took < Duration::from_secs(5), "did not wait for the grace period: {:?}", report.took);
}
