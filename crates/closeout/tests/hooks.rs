//! Process hooks against real processes and real signals: each test starts
//! `examples/signal_demo` in one mode, signals it, and checks the teardown log (one line per
//! cleanup), the exit status and the stderr message. Every wait is bounded.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// The example binary, built next to this test by `cargo test` / `cargo nextest`.
fn demo() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("examples").join("signal_demo");
    assert!(bin.exists(), "{} missing: cargo test builds examples; run through cargo", bin.display());
    bin
}

struct Run {
    child: Child,
    dir: tempfile::TempDir,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Spawns `cmd` with piped output: stderr collected on a thread, and the first stdout line
/// (waited for, bounded) when `first_line` is set.
fn spawn_piped(
    mut cmd: Command,
    first_line: bool,
) -> (Child, std::thread::JoinHandle<String>, Option<String>) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut line = None;
    if first_line {
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        line = rx.recv_timeout(Duration::from_secs(30)).expect("no first line within 30 s");
    }
    (child, stderr, line)
}

/// Starts the demo in `mode` and waits (bounded) for it to say it is ready, when it will.
fn start(mode: &str, wait_ready: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(demo());
    cmd.args([mode, dir.path().to_str().unwrap()]);
    let (child, stderr, line) = spawn_piped(cmd, wait_ready);
    if wait_ready {
        assert_eq!(line.as_deref(), Some("ready"));
    }
    Run { child, dir, stderr: Some(stderr) }
}

impl Run {
    fn signal(&self, sig: Signal) {
        kill_process(Pid::from_child(&self.child), sig).unwrap();
    }

    /// Waits at most `limit` for the process to end; kills it and fails otherwise.
    fn wait(&mut self, limit: Duration) -> (ExitStatus, Vec<String>, String, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
                let stderr = self.stderr.take().map(|t| t.join().unwrap()).unwrap_or_default();
                return (status, log.lines().map(str::to_owned).collect(), stderr, start.elapsed());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("process still running after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn sigterm_runs_the_teardown_once_in_order_and_ends_killed_by_sigterm() {
    let mut run = start("plain", true);
    run.signal(Signal::TERM);
    let (status, log, stderr, _) = run.wait(Duration::from_secs(30));
    assert_eq!(status.signal(), Some(libc_sig(Signal::TERM)), "status {status:?}; stderr: {stderr}");
    // `cache` depends on `db`, so it goes first; each exactly once.
    assert_eq!(log, ["cache", "db"]);
    assert!(stderr.contains("teardown on SIGTERM"), "stderr: {stderr}");
}

#[test]
fn sigint_and_sighup_run_the_teardown_once() {
    for sig in [Signal::INT, Signal::HUP] {
        let mut run = start("plain", true);
        run.signal(sig);
        let (status, log, stderr, _) = run.wait(Duration::from_secs(30));
        assert_eq!(status.signal(), Some(libc_sig(sig)), "{sig:?}: {status:?}; stderr: {stderr}");
        assert_eq!(log, ["cache", "db"], "{sig:?}");
    }
}

#[test]
fn under_tokio_the_token_stops_tasks_and_shutdown_signal_resolves() {
    let mut run = start("tokio", true);
    run.signal(Signal::TERM);
    let (status, log, stderr, _) = run.wait(Duration::from_secs(30));
    assert_eq!(status.signal(), Some(libc_sig(Signal::TERM)), "stderr: {stderr}");
    // The task saw its token cancelled and wound down by itself, before the teardown ended.
    assert_eq!(sorted(log), ["cache", "db", "worker"]);
    assert!(stderr.contains("worker") && stderr.contains("ok"), "report names the task: {stderr}");
    assert_eq!(std::fs::read_to_string(run.dir.path().join("signal")).unwrap(), "SIGTERM");
}

#[test]
fn a_hanging_cleanup_cannot_hold_the_process_past_its_deadline() {
    let mut run = start("hang", true);
    let sent = Instant::now();
    run.signal(Signal::TERM);
    let (status, log, stderr, _) = run.wait(Duration::from_secs(30));
    let took = sent.elapsed();
    assert_eq!(status.signal(), Some(libc_sig(Signal::TERM)), "stderr: {stderr}");
    // `hangs` was registered last, so it runs first and never returns; the deadline (500 ms)
    // plus the slack (200 ms) ends the process anyway, naming it.
    assert!(stderr.contains("passed its 500ms deadline; still running: hangs"), "stderr: {stderr}");
    assert!(log.len() <= 2);
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn a_second_sigint_exits_at_once_naming_what_still_runs() {
    let mut run = start("slow", true);
    run.signal(Signal::INT);
    // Bounded wait until the teardown is under way: `slow` (5 s) is running.
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    run.signal(Signal::INT);
    let (status, log, stderr, _) = run.wait(Duration::from_secs(30));
    assert_eq!(status.signal(), Some(libc_sig(Signal::INT)), "stderr: {stderr}");
    assert!(
        stderr.contains("second SIGINT during teardown; exiting now (still running: slow)"),
        "stderr: {stderr}"
    );
    // Cut short: the cleanups after `slow` never ran.
    assert!(log.is_empty(), "log: {log:?}");
    assert!(sent.elapsed() < Duration::from_secs(4), "the second signal did not cut the 5 s cleanup short");
}

#[test]
fn a_panic_in_main_runs_the_teardown_then_the_previous_hook() {
    let mut run = start("panic-main", false);
    let (status, log, stderr, _) = run.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(101));
    assert_eq!(log, ["cache", "db"]);
    let teardown = stderr.find("teardown on panic").expect("report printed");
    let message = stderr.find("boom in main").expect("the previous hook printed the panic");
    assert!(teardown < message, "teardown first, then the previous hook: {stderr}");
}

/// The panic policy matrix: where the panic happens × the policy. Only the main thread (by
/// default) or any thread (`AnyThread`) tears down on the panic; otherwise the program goes on
/// and the end of `main` tears down. Either way exactly once.
#[test]
fn the_panic_policy_decides_which_panics_tear_down() {
    for place in ["main", "thread", "task"] {
        for policy in ["main", "any", "off"] {
            let mut run = start(&format!("panic:{place}:{policy}"), false);
            let (status, log, stderr, _) = run.wait(Duration::from_secs(30));
            let on_panic = matches!((place, policy), ("main", "main") | (_, "any"));
            assert_eq!(status.code(), Some(0), "{place}/{policy}: {stderr}");
            assert_eq!(log, ["cache", "db"], "{place}/{policy}: torn down exactly once");
            let trigger = if on_panic { "teardown on panic" } else { "teardown on exit" };
            assert!(stderr.contains(trigger), "{place}/{policy}: expected {trigger:?}: {stderr}");
            assert_eq!(stderr.matches("teardown on").count(), 1, "{place}/{policy}: {stderr}");
            assert!(stderr.contains("still running"), "{place}/{policy}: the program went on: {stderr}");
        }
    }
}

#[test]
fn a_panic_in_a_thread_runs_the_teardown_once() {
    let mut run = start("panic-thread", false);
    let (status, log, stderr, _) = run.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(log, ["cache", "db"], "once, although the guard was dropped afterwards too");
    assert!(stderr.contains("boom in a thread"));
}

#[test]
fn a_deaf_thread_and_an_endless_blocking_job_do_not_hang_the_exit() {
    let mut run = start("stuck", false);
    let (status, log, stderr, took) = run.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(log, ["cache", "db"]);
    assert!(stderr.contains("deaf") && stderr.contains("endless"), "stderr: {stderr}");
    assert_eq!(stderr.matches("its thread was detached").count(), 2, "stderr: {stderr}");
    assert!(took < Duration::from_secs(20));
}

#[test]
fn returning_from_main_runs_the_teardown() {
    let mut run = start("normal", false);
    let (status, log, stderr, _) = run.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(log, ["cache", "db"]);
}

fn libc_sig(sig: Signal) -> i32 {
    sig.as_raw()
}

/// `examples/graceful_server`: SIGTERM stops accepting, drains the request in flight, closes
/// the pool after the server and the backend after the pool, then ends killed by SIGTERM.
#[test]
fn graceful_server_drains_in_flight_requests_and_closes_in_dependency_order() {
    let (mut child, stderr, line) = spawn_piped(Command::new(demo().with_file_name("graceful_server")), true);
    let line = line.expect("server did not start");
    let addr = line.strip_prefix("listening on ").expect("address line").to_owned();

    let request = |path: &str| http_get(&addr, path);
    assert!(request("/").unwrap().contains("hello, 4 pooled connections"));
    // A request that takes 500 ms, in flight when the signal arrives.
    let addr2 = addr.clone();
    let in_flight = std::thread::spawn(move || http_get(&addr2, "/slow"));
    std::thread::sleep(Duration::from_millis(150));
    kill_process(Pid::from_child(&child), Signal::TERM).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(request("/").is_err(), "a new connection was accepted after the signal");

    let response = in_flight.join().unwrap().expect("in-flight request");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("slow answer, 4 pooled connections"), "{response}");

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("server did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = stderr.join().unwrap();
    assert_eq!(status.signal(), Some(libc_sig(Signal::TERM)), "stderr: {stderr}");
    let pos = |s: &str| stderr.find(s).unwrap_or_else(|| panic!("{s:?} missing from: {stderr}"));
    // The backend stops only once the pool's connections are closed, so this order is forced
    // by the teardown, not by chance; the report lists them in the order they started.
    assert!(pos("pool: closing 4 connections") < pos("backend: stopped"), "{stderr}");
    // The report lists them in the order they started; the pool starts only once the server
    // has drained (its entry says what the drain did).
    assert!(
        pos("  http (network") < pos("  pool (database") && pos("  pool (database") < pos("  backend (task"),
        "{stderr}"
    );
    assert!(stderr.contains("http (network, medium): drained 1 request(s), 0 cut"), "{stderr}");
    assert!(stderr.contains("3 resource(s)") && stderr.contains("3 ok"), "{stderr}");
}

/// One HTTP/1.1 GET over a fresh connection: the whole response, or the connection's error.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(conn, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    Ok(response)
}

/// The README example's program, built next to this test.
fn readme_hooks() -> PathBuf {
    demo().with_file_name("readme_hooks")
}

/// Whether `pid` catches SIGTERM yet (its hooks are installed): `SigCgt` in `/proc/<pid>/status`.
fn catches_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).map(str::trim).unwrap_or("0");
    let caught = u64::from_str_radix(mask, 16).is_ok_and(|m| m & (1 << (15 - 1)) != 0);
    // SigCgt flips when signal-hook installs its OS handler, a moment *before* it publishes the
    // action that queues the signal for the dispatcher: a SIGTERM sent in between is lost
    // (signal-hook-registry's `register_unchecked_impl`). The dispatcher thread is started only
    // after every action is published, so its presence is the moment the hooks are ready.
    caught && has_thread(pid, "closeout-signal")
}

/// Whether `pid` has a thread whose name starts with `name` (the kernel keeps 15 bytes).
fn has_thread(pid: u32, name: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks
        .flatten()
        .any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end().starts_with(name)))
}

#[test]
fn the_readme_hooks_example_is_this_program() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let start = readme.find("## Process hooks and spawned work").expect("README section");
    let block = &readme[start..];
    let code = &block[block.find("```rust").unwrap()..];
    let body = &code[code.find('\n').unwrap() + 1..];
    let code = &body[..body.find("```").unwrap()];
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let program = squash(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/readme_hooks.rs"))
            .unwrap(),
    );
    // Every line the README shows is in the program, in the same order.
    let mut at = 0;
    for line in
        code.lines().filter(|l| !l.trim_start().starts_with('#')).map(squash).filter(|l| !l.is_empty())
    {
        let found = program[at..].find(&line);
        assert!(found.is_some(), "README line not in examples/readme_hooks.rs (in order): {line}");
        at += found.unwrap_or(0) + line.len();
    }
}

/// The README's pattern (await `shutdown_signal()`, then return from `main`), 50 times: every
/// run prints the report and ends killed by SIGTERM. (The exit path used to win the race.)
#[test]
fn the_readme_hooks_example_always_reports_and_ends_with_the_signal() {
    for i in 0..50 {
        let mut cmd = Command::new(readme_hooks());
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let pid = child.id();
        let until = Instant::now() + Duration::from_secs(20);
        while !catches_sigterm(pid) {
            assert!(Instant::now() < until, "run {i}: hooks never installed");
            std::thread::sleep(Duration::from_millis(2));
        }
        kill_process(Pid::from_child(&child), Signal::TERM).unwrap();
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > until {
                let _ = child.kill();
                panic!("run {i}: still running");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            out.status.signal(),
            Some(15),
            "run {i}: ended killed by SIGTERM: {:?}\n{stderr}",
            out.status
        );
        assert!(stderr.contains("teardown on SIGTERM"), "run {i}: the report was printed: {stderr}");
        assert!(stderr.contains("server") && stderr.contains("pool"), "run {i}: {stderr}");
        assert!(stdout.contains("pool closed"), "run {i}: {stdout}");
    }
}

/// A first SIGTERM during the end-of-main teardown joins it: the teardown finishes (not cut
/// short, as a second signal would), then the process ends killed by SIGTERM.
#[test]
fn a_first_sigterm_during_the_end_of_main_teardown_joins_it() {
    for _ in 0..5 {
        let mut run = start("slow-exit", true);
        let until = Instant::now() + Duration::from_secs(20);
        let log = run.dir.path().join("log");
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("slow-start") {
            assert!(Instant::now() < until, "the end-of-main teardown never started");
            std::thread::sleep(Duration::from_millis(2));
        }
        run.signal(Signal::TERM);
        let (status, log, stderr, _) = run.wait(Duration::from_secs(20));
        assert_eq!(status.signal(), Some(15), "ended with the signal's status: {status:?}\n{stderr}");
        assert_eq!(log, ["slow-start", "slow-done", "cache", "db"], "{stderr}");
        assert!(!stderr.contains("second"), "not treated as a second signal: {stderr}");
    }
}
