//! The `closeout` command's overhead and cleanup speed:
//! - `closeout run -- true` against plain `true` and against `tini -- true` (Debian's `tini`,
//!   when installed: `apt-get install tini`), in one group (targets: ≤ 2 ms over plain `true`,
//!   ≤ 1.5× tini);
//! - a 1,000-process tree left behind, grace 0: from the command's exit to nothing left (the
//!   report's `cleanup_us`) (≤ 100 ms);
//! - closeout's peak RSS while it supervises that tree (`VmHWM`, sampled every 2 ms) (≤ 16 MiB),
//!   printed.
//!
//! Run: `cargo bench -p closeout-cli --bench run`

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

const CLOSEOUT: &str = env!("CARGO_BIN_EXE_closeout");

fn state() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn status(cmd: &mut Command) {
    let s = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(s.success());
}

fn overhead(c: &mut Criterion) {
    let dir = state();
    let mut g = c.benchmark_group("run_true");
    g.sample_size(50);
    g.bench_function("plain_true_baseline", |b| b.iter(|| status(&mut Command::new("true"))));
    if Command::new("tini").arg("--version").output().is_ok() {
        g.bench_function("tini_true", |b| b.iter(|| status(Command::new("tini").args(["-s", "--", "true"]))));
    } else {
        println!("run_true/tini_true: tini is not installed (apt-get install tini); skipped");
    }
    g.bench_function("closeout_run_true", |b| {
        b.iter(|| {
            status(Command::new(CLOSEOUT).args(["run", "--", "true"]).env("CLOSEOUT_STATE_DIR", dir.path()))
        })
    });
    g.bench_function("closeout_run_true_no_cgroup", |b| {
        b.iter(|| {
            status(
                Command::new(CLOSEOUT)
                    .args(["run", "--no-cgroup", "--", "true"])
                    .env("CLOSEOUT_STATE_DIR", dir.path()),
            )
        })
    });
    g.finish();
}

/// The script leaves 1,000 sleepers (each a process as soon as it is forked) and exits.
const LEAVE_1000: &str = "i=0; while [ $i -lt 1000 ]; do sleep 300 & i=$((i+1)); done";

fn run_leaving_1000(state: &Path, report: &Path) -> (Duration, u64) {
    let mut child = Command::new(CLOSEOUT)
        .args(["run", "--grace", "0s", "--json", report.to_str().unwrap(), "--", "sh", "-c", LEAVE_1000])
        .env("CLOSEOUT_STATE_DIR", state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut peak_kib = 0;
    let status_file = format!("/proc/{}/status", child.id());
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let left = r["left_behind"]["processes"].as_array().unwrap().len();
    assert!(left >= 1000, "only {left} left behind");
    assert!(r["survivors"].as_array().unwrap().is_empty());
    (Duration::from_micros(r["cleanup_us"].as_u64().unwrap()), peak_kib)
}

fn cleanup_1000(c: &mut Criterion) {
    let dir = state();
    let report = dir.path().join("r.json");
    let mut g = c.benchmark_group("left_behind_1000");
    g.sample_size(10).measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(1));
    g.sampling_mode(criterion::SamplingMode::Flat);
    let mut peak = 0;
    g.bench_function("exit_to_nothing_left_grace_0", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (took, kib) = run_leaving_1000(dir.path(), &report);
                total += took;
                peak = peak.max(kib);
            }
            total
        })
    });
    g.finish();
    println!("peak_rss_supervising_1000: {:.1} MiB (VmHWM, the highest of every run)", peak as f64 / 1024.0);
}

criterion_group!(benches, overhead, cleanup_1000);
criterion_main!(benches);
