//! Process hooks in a real process: the teardown runs once on SIGINT, SIGTERM, SIGHUP, SIGQUIT,
//! a panic or the end of `main`.
//!
//! ```text
//! cargo run --example signal_demo -- plain /tmp/demo   # then press Ctrl-C
//! ```
//!
//! Every cleanup appends its id to `<dir>/log`, so a run can be checked afterwards: the
//! integration tests in `tests/hooks.rs` drive each mode with real signals and read that log.
//!
//! Modes:
//! - `plain`: no tokio runtime; waits for a signal.
//! - `tokio`: under a tokio runtime with a tracked task; waits on `shutdown_signal()`.
//! - `hang`: one cleanup never returns; the deadline (500 ms) still ends the process.
//! - `slow`: one cleanup takes 5 s; a second signal cuts it short.
//! - `panic-main`, `panic-thread`: a panic runs the teardown.
//! - `panic:<where>:<policy>`, where is `main`, `thread` or `task`, policy `main`, `any` or
//!   `off`: the panic policy matrix. The end of `main` still tears down, once.
//! - `stuck`: a thread that ignores its stop flag and a blocking job that never returns; the
//!   end of `main` still ends the process.
//! - `normal`: returns from `main`; dropping the guard runs the teardown.
//! - `slow-exit`: returns from `main`, whose teardown takes 600 ms: a first SIGTERM during it
//!   joins it, and the process then ends killed by SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use closeout::hooks::{Hooks, PanicPolicy};
use closeout::owner::{Owner, Spawn};
use closeout::{Registry, Resource};

fn log_cleanup(dir: &Path, id: &'static str) -> Resource {
    let path = dir.join("log");
    Resource::new(id, move || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        writeln!(f, "{id}")
    })
}

fn ready() {
    println!("ready");
    let _ = std::io::stdout().flush();
}

fn wait_forever() -> ! {
    loop {
        std::thread::park();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "plain".into());
    let dir = PathBuf::from(args.next().unwrap_or_else(|| std::env::temp_dir().display().to_string()));
    std::fs::create_dir_all(&dir)?;

    let registry = Registry::new();
    registry.register(log_cleanup(&dir, "db"))?;
    registry.register(log_cleanup(&dir, "cache").depends_on(["db"]))?;
    let mut hooks = Hooks::new(registry.clone()).deadline(Duration::from_secs(10));

    match mode.as_str() {
        "plain" => {
            let _guard = hooks.install()?;
            ready();
            wait_forever()
        }
        "tokio" => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let log = dir.join("log");
                registry.spawn("worker", move |token| async move {
                    token.cancelled().await;
                    // Winds down by itself once cancelled: reported as finished.
                    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
                    writeln!(f, "worker")
                })?;
                // A "server" that stops on the first signal; its cleanup waits for it to drain.
                let (drained_tx, drained_rx) = tokio::sync::oneshot::channel();
                let marker = dir.join("signal");
                tokio::spawn(async move {
                    let sig = closeout::hooks::shutdown_signal().await;
                    let _ = std::fs::write(marker, sig.to_string());
                    let _ = drained_tx.send(());
                });
                registry.register(
                    Resource::new_async("server", drained_rx)
                        .timeout(Duration::from_secs(5))
                        .depends_on(["cache"]),
                )?;
                let _guard = hooks.install()?;
                ready();
                // The dispatcher exits the process once the teardown is done.
                std::future::pending::<()>().await;
                Ok::<(), Box<dyn std::error::Error>>(())
            })?;
            Ok(())
        }
        "hang" => {
            registry.register(Resource::new("hangs", || std::thread::sleep(Duration::from_secs(3600))))?;
            hooks = hooks.deadline(Duration::from_millis(500));
            let _guard = hooks.install()?;
            ready();
            wait_forever()
        }
        "slow" => {
            registry.register(Resource::new("slow", || std::thread::sleep(Duration::from_secs(5))))?;
            let _guard = hooks.install()?;
            ready();
            wait_forever()
        }
        "panic-main" => {
            let _guard = hooks.install()?;
            panic!("boom in main");
        }
        m if m.starts_with("panic:") => {
            let mut parts = m.split(':').skip(1);
            let place = parts.next().unwrap_or("main").to_owned();
            let policy = match parts.next() {
                Some("any") => PanicPolicy::AnyThread,
                Some("off") => PanicPolicy::Off,
                _ => PanicPolicy::MainThread,
            };
            let guard =
                hooks.panic(policy).on_report(|_, trigger| eprintln!("teardown on {trigger}")).install()?;
            match place.as_str() {
                "thread" => {
                    let _ = std::thread::spawn(|| panic!("boom in a thread")).join();
                }
                "task" => {
                    let rt = tokio::runtime::Runtime::new()?;
                    let _ = rt.block_on(async { tokio::spawn(async { panic!("boom in a task") }).await });
                }
                _ => {
                    let _ = std::panic::catch_unwind(|| panic!("boom in main"));
                }
            }
            eprintln!("still running");
            drop(guard);
            Ok(())
        }
        "panic-thread" => {
            let guard = hooks.panic(PanicPolicy::AnyThread).install()?;
            let worker = std::thread::spawn(|| panic!("boom in a thread"));
            let _ = worker.join();
            // The panic already ran the teardown; dropping the guard does not run it again.
            drop(guard);
            Ok(())
        }
        "stuck" => {
            registry.spawn_thread(Spawn::new("deaf").grace(Duration::from_millis(200)), |_stop| {
                std::thread::sleep(Duration::from_secs(3600))
            })?;
            registry.spawn_blocking(Spawn::new("endless").grace(Duration::from_millis(200)), || {
                std::thread::sleep(Duration::from_secs(3600))
            })?;
            let _guard = hooks.on_report(|report, _| eprintln!("{report}")).install()?;
            Ok(())
        }
        "normal" => {
            let _guard = hooks.install()?;
            Ok(())
        }
        "slow-exit" => {
            let path = dir.join("log");
            registry.register(Resource::new("slow", move || -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
                writeln!(f, "slow-start")?;
                std::thread::sleep(Duration::from_millis(600));
                writeln!(f, "slow-done")
            }))?;
            let _guard = hooks.install()?;
            ready();
            Ok(())
        }
        other => Err(format!("unknown mode {other}").into()),
    }
}
