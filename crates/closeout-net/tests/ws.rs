//! WebSocket connections on 127.0.0.1: a real client while the server drains, a silent peer
//! closed by the heartbeat, and an idempotent close.

use std::time::{Duration, Instant};

use closeout_net::{CloseReason, Message, TcpServer, WsConn, WsError, WsOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_closed_with_a_handshake_when_the_server_drains() {
    let server = TcpServer::bind("127.0.0.1:0").await.unwrap().grace(Duration::from_secs(5));
    let addr = server.local_addr().unwrap();
    let handle = server.serve(|stream, _peer, token| async move {
        let Ok(ws) = WsConn::accept(stream, WsOptions::new()).await else { return };
        loop {
            tokio::select! {
                msg = ws.recv() => match msg {
                    Some(msg) => { let _ = ws.send(msg).await; }
                    None => return,
                },
                _ = token.cancelled() => {
                    ws.close().await; // drain: say goodbye properly
                    return;
                }
            }
        }
    });
    let client = WsConn::connect(&format!("ws://{addr}"), WsOptions::new()).await.unwrap();
    client.send(Message::text("hello")).await.unwrap();
    assert_eq!(client.recv().await.unwrap(), Message::text("hello"));

    let report = handle.shutdown().await;
    assert_eq!(report.drained.len(), 1, "{report:?}");
    assert!(report.forced.is_empty());
    assert_eq!(client.closed().await, CloseReason::ByPeer(1000));
    assert!(matches!(client.send(Message::text("late")).await, Err(WsError::Closed(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_closed_by_the_heartbeat() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = WsOptions::new().heartbeat(Duration::from_millis(50)).timeout(Duration::from_millis(250));
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let conn = WsConn::accept(stream, opts).await.unwrap();
        let start = Instant::now();
        (conn.closed().await, start.elapsed())
    });
    // A peer that completes the handshake and then never reads: it never answers a ping.
    let (silent, _) = tokio_tungstenite::connect_async(format!("ws://{addr}")).await.unwrap();
    let (reason, after) = tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
    assert_eq!(reason, CloseReason::HeartbeatTimeout);
    assert!(after >= Duration::from_millis(250), "closed after {after:?}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_answers_pings_stays_open_and_close_is_idempotent() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = WsOptions::new().heartbeat(Duration::from_millis(20)).timeout(Duration::from_millis(100));
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        WsConn::accept(stream, opts).await.unwrap()
    });
    let client = WsConn::connect(&format!("ws://{addr}"), opts).await.unwrap();
    let server = server.await.unwrap();
    // Both drivers answer pings: well past the timeout, still open.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!server.is_closed() && !client.is_closed());
    let (a, b) = tokio::join!(client.close(), client.close());
    assert_eq!(a, CloseReason::Closed);
    assert_eq!(a, b);
    assert_eq!(server.closed().await, CloseReason::ByPeer(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_with_back_off_and_stops_cleanly() {
    use closeout_net::{Backoff, Health, Reconnecting};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // A server that drops every connection 30 ms after accepting it.
    let accepted = Arc::new(AtomicUsize::new(0));
    let server = TcpServer::bind("127.0.0.1:0").await.unwrap().grace(Duration::from_secs(1));
    let addr = server.local_addr().unwrap();
    let count = accepted.clone();
    let handle = server.serve(move |stream, _peer, _token| {
        let count = count.clone();
        async move {
            let Ok(ws) = WsConn::accept(stream, WsOptions::new()).await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            ws.close().await;
        }
    });
    let client = Arc::new(Reconnecting::start(
        format!("ws://{addr}"),
        WsOptions::new(),
        Backoff::new(Duration::from_millis(10), Duration::from_millis(40)),
    ));
    let mut seen_waiting = false;
    let start = Instant::now();
    while accepted.load(Ordering::SeqCst) < 3 {
        seen_waiting |= matches!(client.health(), Health::Waiting { .. });
        assert!(start.elapsed() < Duration::from_secs(10), "did not reconnect");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(seen_waiting, "backed off between connections");
    let registry = closeout::Registry::new();
    registry.register(client.clone().resource("upstream")).unwrap();
    assert!(registry.shutdown().await.is_success());
    assert_eq!(client.health(), Health::Stopped);
    let after = accepted.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), after, "no reconnect after stop");
    handle.shutdown().await;
}
