//! No hang on a busy runtime: `*_blocking` calls and a `Scope`'s drop finish wherever they are
//! made. The matrix: no runtime / current-thread / multi-thread with 1 and 2 workers × called
//! from `block_on`, a task (two at once on 2 workers), a blocking thread, a plain thread ×
//! cleanups that sleep on a timer, do socket I/O on 127.0.0.1, or spin with a timeout. Every
//! cell is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use closeout::{Registry, Resource, Scope};

#[derive(Clone, Copy, Debug)]
enum Rt {
    None,
    Current,
    Multi1,
    Multi2,
}

#[derive(Clone, Copy, Debug)]
enum Caller {
    BlockOn,
    Task,
    TwoTasks,
    BlockingThread,
    PlainThread,
}

#[derive(Clone, Copy, Debug)]
enum Work {
    Sleep,
    Socket,
    Spin,
}

/// An echo server on a plain thread: answers every connection's line.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 5];
                if conn.read_exact(&mut buf).is_ok() {
                    let _ = conn.write_all(&buf);
                }
            });
        }
    });
    addr
}

/// The three kinds of work, each counting itself in `ran` when it finished.
async fn sleep_then_count(ran: Arc<AtomicUsize>) {
    tokio::time::sleep(Duration::from_millis(20)).await;
    ran.fetch_add(1, Ordering::SeqCst);
}

async fn echo_then_count(addr: SocketAddr, ran: Arc<AtomicUsize>) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"bye!\n").await?;
    let mut back = [0u8; 5];
    s.read_exact(&mut back).await?;
    ran.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn spin_then_count(ran: Arc<AtomicUsize>) {
    let until = std::time::Instant::now() + Duration::from_millis(20);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    ran.fetch_add(1, Ordering::SeqCst);
}

/// Three cleanups of kind `work`, each counting itself in `ran`.
fn cleanups(work: Work, addr: SocketAddr, ran: &Arc<AtomicUsize>) -> Vec<Resource> {
    (0..3)
        .map(|i| {
            let ran = ran.clone();
            let id = format!("{work:?}-{i}");
            match work {
                Work::Sleep => Resource::new_async(id, sleep_then_count(ran)),
                Work::Socket => Resource::new_async(id, echo_then_count(addr, ran)),
                Work::Spin => Resource::new(id, move || spin_then_count(ran)).timeout(Duration::from_secs(5)),
            }
        })
        .collect()
}

/// One blocking release of each kind: a registry's `cleanup_all_blocking` and a scope's drop.
fn release_both(work: Work, addr: SocketAddr) -> usize {
    let ran = Arc::new(AtomicUsize::new(0));
    let registry = Registry::new();
    for r in cleanups(work, addr, &ran) {
        registry.register(r).unwrap();
    }
    let report = registry.cleanup_all_blocking();
    assert!(report.is_success(), "{work:?}: {report}");
    let scope = Scope::new();
    for _ in 0..3 {
        let ran = ran.clone();
        match work {
            Work::Sleep => {
                scope.defer_async(sleep_then_count(ran)).unwrap();
            }
            Work::Socket => {
                scope.defer_async(echo_then_count(addr, ran)).unwrap();
            }
            Work::Spin => {
                scope.defer(move || spin_then_count(ran)).unwrap();
            }
        }
    }
    drop(scope);
    ran.load(Ordering::SeqCst)
}

fn runtime(rt: Rt) -> Option<tokio::runtime::Runtime> {
    let mut b = match rt {
        Rt::None => return None,
        Rt::Current => tokio::runtime::Builder::new_current_thread(),
        Rt::Multi1 | Rt::Multi2 => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Rt::Multi1 = rt {
        b.worker_threads(1);
    }
    if let Rt::Multi2 = rt {
        b.worker_threads(2);
    }
    Some(b.enable_all().build().unwrap())
}

fn cell(rt: Rt, caller: Caller, work: Work, addr: SocketAddr) -> usize {
    let Some(runtime) = runtime(rt) else {
        return release_both(work, addr);
    };
    let ran = match caller {
        Caller::BlockOn => runtime.block_on(async move { release_both(work, addr) }),
        Caller::Task => runtime
            .block_on(async move { tokio::spawn(async move { release_both(work, addr) }).await.unwrap() }),
        Caller::TwoTasks => runtime.block_on(async move {
            let a = tokio::spawn(async move { release_both(work, addr) });
            let b = tokio::spawn(async move { release_both(work, addr) });
            (a.await.unwrap() + b.await.unwrap()) / 2
        }),
        Caller::BlockingThread => runtime.block_on(async move {
            tokio::task::spawn_blocking(move || release_both(work, addr)).await.unwrap()
        }),
        Caller::PlainThread => {
            let _guard = runtime.enter();
            std::thread::spawn(move || release_both(work, addr)).join().unwrap()
        }
    };
    // The runtime is dropped off this thread's async context.
    std::thread::spawn(move || drop(runtime)).join().unwrap();
    ran
}

#[test]
fn blocking_releases_finish_on_every_runtime_from_every_caller() {
    let addr = echo_server();
    let mut cells = Vec::new();
    for rt in [Rt::None, Rt::Current, Rt::Multi1, Rt::Multi2] {
        let callers: &[Caller] = match rt {
            Rt::None => &[Caller::PlainThread],
            Rt::Current | Rt::Multi1 => {
                &[Caller::BlockOn, Caller::Task, Caller::BlockingThread, Caller::PlainThread]
            }
            Rt::Multi2 => &[
                Caller::BlockOn,
                Caller::Task,
                Caller::TwoTasks,
                Caller::BlockingThread,
                Caller::PlainThread,
            ],
        };
        for &caller in callers {
            for work in [Work::Sleep, Work::Socket, Work::Spin] {
                cells.push((rt, caller, work));
            }
        }
    }
    for (rt, caller, work) in cells {
        eprintln!("cell: {rt:?} × {caller:?} × {work:?}");
        let ran = common::within(Duration::from_secs(20), move || cell(rt, caller, work, addr));
        assert_eq!(ran, 6, "{rt:?} × {caller:?} × {work:?}: every cleanup ran");
    }
}
