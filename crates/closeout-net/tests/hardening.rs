//! The network never hangs or drops silently: `WsConn::close` returns within its timeout when
//! the peer stopped reading and the socket buffer is full; a slow reader gets every message,
//! in order; a panicking TCP handler is reported at once and does not hold the drain.

use std::time::{Duration, Instant};

use closeout_net::TcpServer;
#[cfg(feature = "ws")]
use closeout_net::{CloseReason, Message, WsConn, WsOptions};
use tokio::io::AsyncWriteExt;

#[cfg(feature = "ws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_within_its_timeout_when_the_peer_stopped_reading() {
    for close_timeout in [Duration::from_millis(100), Duration::from_millis(400)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let opts = WsOptions::new().close_timeout(close_timeout);
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            WsConn::accept(stream, opts).await.unwrap()
        });
        // A client that completes the handshake, then never reads again.
        let (deaf, _) = tokio_tungstenite::connect_async(format!("ws://{addr}")).await.unwrap();
        let conn = server.await.unwrap();
        // Fill every buffer between us: sends block once the peer's window is full.
        let filler = {
            let conn = conn.clone();
            tokio::spawn(async move {
                let big = Message::binary(vec![0u8; 1 << 20]);
                while conn.send(big.clone()).await.is_ok() {}
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let reason = tokio::time::timeout(Duration::from_secs(10), conn.close()).await.expect("close hung");
        let took = started.elapsed();
        assert_eq!(reason, CloseReason::HandshakeTimeout);
        assert!(
            took < close_timeout + Duration::from_millis(500),
            "close took {took:?} for {close_timeout:?}"
        );
        assert!(conn.is_closed());
        let _ = tokio::time::timeout(Duration::from_secs(5), filler).await.expect("the blocked send ended");
        drop(deaf);
    }
}

#[cfg(feature = "ws")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_message_in_order() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    const N: usize = 2_000;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let conn = WsConn::accept(stream, WsOptions::new()).await.unwrap();
        let mut got = Vec::new();
        while got.len() < N {
            match tokio::time::timeout(Duration::from_secs(10), conn.recv()).await.expect("a message") {
                Some(Message::Text(t)) => got.push(t.to_string()),
                Some(_) => {}
                None => break,
            }
            if got.len() % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await; // slower than the sender
            }
        }
        got
    });
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}")).await.unwrap();
    for i in 0..N {
        futures_util::SinkExt::send(&mut client, Message::text(format!("m{i}"))).await.unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(30), server).await.unwrap().unwrap();
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(got.len(), N, "no message dropped");
    assert_eq!(got, expected, "in order");
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_reported_at_once_and_does_not_hold_the_drain() {
    let grace = Duration::from_secs(5);
    let server = TcpServer::bind("127.0.0.1:0").await.unwrap().grace(grace);
    let addr = server.local_addr().unwrap();
    let handle = server.serve(|mut stream, _peer, token| async move {
        let mut first = [0u8; 1];
        if tokio::io::AsyncReadExt::read_exact(&mut stream, &mut first).await.is_err() {
            return;
        }
        if first[0] == b'p' {
            panic!("handler failed");
        }
        token.cancelled().await;
    });
    let registry = closeout::Registry::new();
    registry.register(handle.resource("api")).unwrap();
    let mut good = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut bad = tokio::net::TcpStream::connect(addr).await.unwrap();
    good.write_all(b"g").await.unwrap();
    bad.write_all(b"p").await.unwrap();
    // The panicking handler drops its stream: the client reads EOF once the panic happened
    // (before that, the bad connection may not even have been accepted yet).
    let mut eof = [0u8; 1];
    let n =
        tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut bad, &mut eof)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the bad connection was closed by its panic: {n:?}");
    // Then exactly the good one counts as open: the panicked one was removed at once.
    let until = Instant::now() + Duration::from_secs(5);
    while handle.open_connections() != 1 {
        assert!(Instant::now() < until, "the panicked connection still counts as open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let report = registry.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2), "the drain did not wait for the panicked handler");
    let entry = report.get("api").unwrap();
    let msg = entry.status().to_string();
    assert!(msg.contains("handler failed") && msg.contains("panicked"), "{msg}");
    let drained = handle.shutdown().await;
    assert_eq!(drained.panicked.len(), 1);
    assert_eq!(drained.drained.len(), 1);
    assert!(drained.forced.is_empty());
}
