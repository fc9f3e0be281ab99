//! Shutdown of a server with 1,000 idle connections whose handlers ignore the shutdown token
//! (the worst case: every one is force-closed when the grace period ends). Reports how long
//! the shutdown took beyond its grace period.
//!
//! Run: `cargo bench -p closeout-net --bench drain`

use std::time::Duration;

use closeout_net::TcpServer;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::io::AsyncReadExt;

const CONNECTIONS: usize = 1000;
const GRACE: Duration = Duration::from_millis(100);

fn drain_1000_idle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut g = c.benchmark_group("drain");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("1000_idle_beyond_grace", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut beyond = Duration::ZERO;
                for _ in 0..iters {
                    let server = TcpServer::bind("127.0.0.1:0").await.unwrap().grace(GRACE);
                    let addr = server.local_addr().unwrap();
                    let handle = server.serve(|mut stream, _peer, _token| async move {
                        let mut buf = [0u8; 64];
                        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                    });
                    let mut clients = Vec::with_capacity(CONNECTIONS);
                    for _ in 0..CONNECTIONS {
                        clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
                    }
                    while handle.open_connections() < CONNECTIONS {
                        tokio::task::yield_now().await;
                    }
                    let report = handle.shutdown().await;
                    assert_eq!(report.forced.len(), CONNECTIONS);
                    beyond += report.took.saturating_sub(GRACE);
                    drop(clients);
                }
                beyond
            })
        });
    });
    g.finish();
}

criterion_group!(benches, drain_1000_idle);
criterion_main!(benches);
