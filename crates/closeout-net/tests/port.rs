//! Port helpers against real sockets on 127.0.0.1: each wait returns once the state is
//! reached mid-wait, and times out with the last error when it never is.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use closeout_net::{
    wait_until_accepting, wait_until_accepting_blocking, wait_until_free, wait_until_free_blocking,
};

/// A port nothing listens on now (bound, then released).
fn released_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn blocking_waits_follow_a_listener_that_comes_and_goes() {
    let addr = released_port();
    // Starts listening after 100 ms, stops after 300 ms more.
    let server = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let l = TcpListener::bind(addr).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(l);
    });
    let started = Instant::now();
    wait_until_accepting_blocking(addr, Duration::from_secs(10)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(90));
    let err = wait_until_free_blocking(addr, Duration::from_millis(50)).unwrap_err();
    assert_eq!((err.addr, err.state), (addr, "free"));
    assert!(!err.last.is_empty(), "says why: {err}");
    wait_until_free_blocking(addr, Duration::from_secs(10)).unwrap();
    server.join().unwrap();
    let err = wait_until_accepting_blocking(addr, Duration::from_millis(30)).unwrap_err();
    assert!(err.waited >= Duration::from_millis(30) && err.waited < Duration::from_secs(5), "{err}");
}

#[tokio::test]
async fn async_waits_follow_a_listener_that_comes_and_goes() {
    let addr = released_port();
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(l);
    });
    wait_until_accepting(addr, Duration::from_secs(10)).await.unwrap();
    assert!(wait_until_free(addr, Duration::from_millis(50)).await.is_err());
    wait_until_free(addr, Duration::from_secs(10)).await.unwrap();
    server.await.unwrap();
    assert!(wait_until_accepting(addr, Duration::ZERO).await.is_err(), "zero tries once");
}
