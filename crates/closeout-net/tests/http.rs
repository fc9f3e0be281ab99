//! `HttpServer` with an axum app and a real HTTP/1.1 client (hyper's) on 127.0.0.1: during
//! the drain, requests in flight finish and get their responses, a request past the grace is
//! cut, new connections are refused, and the report counts both.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use closeout::{Registry, Status};
use closeout_net::{CutRequests, HttpServer};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

/// One GET over a fresh connection, with hyper's client: the status and body, or the error.
async fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("host", "127.0.0.1").body(Empty::<Bytes>::new()).unwrap();
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "slow done"
            }),
        )
        .route(
            "/stuck",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "never"
            }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teardown_drains_in_flight_requests_and_cuts_what_outlives_the_grace() {
    let registry = Registry::new();
    let listener = HttpServer::bind("127.0.0.1:0").await.unwrap().grace(Duration::from_secs(1));
    let server = closeout_net::serve_http(&registry, "api", listener, app()).await.unwrap();
    let addr = server.local_addr();
    assert_eq!(fetch(addr, "/").await.unwrap(), (200, "hello".into()));

    let slow: Vec<_> = (0..2).map(|_| tokio::spawn(fetch(addr, "/slow"))).collect();
    let stuck = tokio::spawn(fetch(addr, "/stuck"));
    let until = Instant::now() + Duration::from_secs(5);
    while server.in_flight() < 3 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.in_flight(), 3);

    let teardown = tokio::spawn({
        let registry = registry.clone();
        async move { registry.shutdown().await }
    });
    // Once the drain began, nothing new gets in.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(fetch(addr, "/").await.is_err(), "accepted a connection during the drain");

    for r in slow {
        assert_eq!(r.await.unwrap().unwrap(), (200, "slow done".into()), "in-flight requests finish");
    }
    let cut = stuck.await.unwrap();
    assert!(cut.is_err(), "the stuck request is cut: {cut:?}");

    let report = teardown.await.unwrap();
    let entry = report.get("api").unwrap();
    assert_eq!(entry.detail(), Some("drained 2 request(s), 1 cut (3 connection(s))"), "{report}");
    let Status::Failed(err) = entry.status() else { panic!("{report}") };
    let cut = err.get_ref().downcast_ref::<CutRequests>().unwrap();
    assert_eq!((cut.report.drained, cut.report.cut, cut.report.served), (2, 1, 4));
    assert!(
        entry.duration() >= Duration::from_millis(900) && entry.duration() < Duration::from_secs(5),
        "{report}"
    );
}

#[tokio::test]
async fn an_idle_server_drains_at_once_and_reports_success() {
    let registry = Registry::new();
    let server = HttpServer::bind("127.0.0.1:0").await.unwrap().serve(app());
    registry.register(server.resource("api")).unwrap();
    // An idle keep-alive connection does not hold the drain up.
    let stream = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let started = Instant::now();
    let report = registry.shutdown().await;
    assert!(report.is_success(), "{report}");
    assert!(started.elapsed() < Duration::from_secs(2), "{report}");
    // Later calls get the same report.
    assert_eq!(server.shutdown().await.cut, 0);
    drop(stream);
}
