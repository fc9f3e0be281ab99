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
