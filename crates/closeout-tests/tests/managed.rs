//! One integration convention for every managed type of the sibling crates: `resource(id)` puts
//! its release in a `Registry`, `defer_in(scope, name)` in a `Scope`, and a released scope hands
//! the value itself back, unreleased. Each type, all three, with real processes, files, locks
//! and sockets on 127.0.0.1.

use std::io::Write;
use std::time::Duration;

use closeout::{Registry, Scope};

fn released_scope() -> Scope {
    let scope = Scope::new();
    let _ = scope.close_shared();
    scope
}

#[test]
fn process_trees_follow_the_convention() {
    use closeout_process::{ProcessTree, TreeOptions};
    let spawn =
        || ProcessTree::spawn(std::process::Command::new("sleep").arg("30"), TreeOptions::new()).unwrap();
    let tree = spawn();
    let registry = Registry::new();
    registry.register(tree.resource("tree")).unwrap();
    assert!(registry.shutdown_blocking().is_success());
    assert!(!tree.is_running());
    let tree = spawn();
    let scope = Scope::new();
    tree.defer_in(&scope, "tree").unwrap();
    assert!(scope.close().is_success());
    assert!(!tree.is_running());
    let tree = spawn();
    let back = tree.defer_in(&released_scope(), "tree").unwrap_err().into_inner();
    assert!(back.is_running(), "handed back, not stopped");
    back.stop();
}

#[test]
fn file_locks_and_atomic_files_follow_the_convention() {
    use closeout_fs::{AtomicFile, FileLock};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("lock");
    let lock = || FileLock::exclusive(&path, Duration::from_secs(1)).unwrap();
    let registry = Registry::new();
    registry.register(lock().resource("lock")).unwrap();
    assert!(registry.shutdown_blocking().is_success());
    let scope = Scope::new();
    lock().defer_in(&scope, "lock").unwrap();
    assert!(scope.close().is_success());
    let back = lock().defer_in(&released_scope(), "lock").unwrap_err().into_inner();
    assert!(FileLock::exclusive(&path, Duration::ZERO).is_err(), "handed back still held");
    drop(back);

    let target = tmp.path().join("file");
    let write = |text: &[u8]| {
        let mut f = AtomicFile::create(&target).unwrap().with_backup();
        f.write_all(text).unwrap();
        f
    };
    let scope = Scope::new();
    write(b"abandoned").defer_in(&scope, "write").unwrap();
    assert!(scope.close().is_success());
    assert!(!target.exists(), "an abandoned write commits nothing");
    let registry = Registry::new();
    registry.register(write(b"one").commit().unwrap().resource("commit")).unwrap();
    assert!(registry.shutdown_blocking().is_success());
    let back =
        write(b"two").commit().unwrap().defer_in(&released_scope(), "commit").unwrap_err().into_inner();
    back.rollback().unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"one", "handed back with its backup");
}

#[test]
fn tcp_servers_and_websockets_follow_the_convention() {
    use closeout_net::{TcpServer, WsConn, WsOptions};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let serve = || async {
            let server = TcpServer::bind("127.0.0.1:0").await.unwrap().grace(Duration::from_secs(2));
            let addr = server.local_addr().unwrap();
            let handle = server.serve(|stream, _peer, token| async move {
                if let Ok(ws) = WsConn::accept(stream, WsOptions::new()).await {
                    tokio::select! {
                        _ = ws.closed() => {}
                        _ = token.cancelled() => { ws.close().await; }
                    }
                }
            });
            (handle, addr)
        };
        let (handle, _) = serve().await;
        let registry = Registry::new();
        registry.register(handle.resource("server")).unwrap();
        assert!(registry.shutdown().await.is_success());
        let (handle, addr) = serve().await;
        let scope = Scope::new();
        handle.defer_in(&scope, "server").unwrap();
        let conn = WsConn::connect(&format!("ws://{addr}"), WsOptions::new()).await.unwrap();
        conn.defer_in(&scope, "client").unwrap();
        let report = scope.close_async().await;
        assert!(report.is_success(), "{report}");
        assert!(conn.is_closed());
        let (handle, _) = serve().await;
        let back = handle.defer_in(&released_scope(), "server").unwrap_err().into_inner();
        assert!(back.shutdown().await.forced.is_empty(), "handed back still serving, then shut down by hand");
    });
}

/// Each managed resource says in its report entry what its release did: a server how many
/// connections drained and how many were forced, a process tree how many processes it stopped
/// and how many needed SIGKILL, a temp dir how much it removed.
#[test]
fn managed_resources_say_what_they_did_in_the_report() {
    use closeout_net::TcpServer;
    use closeout_process::{ProcessTree, TreeOptions};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let registry = Registry::new();
        // One connection that ends when asked (drained), one that ignores the token (forced).
        let server = TcpServer::bind("127.0.0.1:0").await.unwrap().grace(Duration::from_millis(200));
        let addr = server.local_addr().unwrap();
        let handle = server.serve(|_stream, peer, token| async move {
            if peer.port() % 2 == 0 {
                token.cancelled().await;
            } else {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        registry.register(handle.resource("api")).unwrap();
        let mut clients = Vec::new();
        let mut parity = [0, 0];
        while parity[0] == 0 || parity[1] == 0 {
            let client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let port = client.local_addr().unwrap().port() as usize % 2;
            parity[port] += 1;
            clients.push(client);
        }
        // Every connection is accepted before the teardown.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while handle.open_connections() < clients.len() && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // A shell that ignores SIGTERM, with a child: two processes, both need SIGKILL.
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "trap '' TERM; sleep 30 & wait"]);
        let tree =
            ProcessTree::spawn(&mut cmd, TreeOptions::new().grace(Duration::from_millis(100))).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        registry.register(tree.resource("workers")).unwrap();

        let dir = closeout_fs::temp_dir_in(&registry, "scratch").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        for name in ["a", "b", "sub/c"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }

        let report = registry.shutdown().await;
        let detail = |id: &str| report.get(id).unwrap().detail().unwrap_or_default().to_owned();
        assert_eq!(
            detail("api"),
            format!("drained {} connection(s), {} forced", parity[0], parity[1]),
            "{report}"
        );
        assert!(detail("workers").starts_with("stopped 2 process(es), "), "{report}");
        assert!(detail("workers").contains("needed SIGKILL"), "{report}");
        assert_eq!(detail("scratch"), "removed 3 file(s) and 1 subdirectory", "{report}");
        assert!(report.to_string().contains("drained "), "{report}");
    });
}
