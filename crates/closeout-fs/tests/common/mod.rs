//! Helpers shared by the crash tests.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::Duration;

/// Waits for a helper process to print `READY`, then SIGKILLs it at a random moment in the next
/// 0–20 ms (xorshift on `seed`) and reaps it.
pub fn kill_at_a_random_moment(child: &mut Child, seed: &mut u64) {
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l.contains("READY")), "the helper never said READY");
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    std::thread::sleep(Duration::from_micros(*seed % 20_000));
    child.kill().unwrap();
    child.wait().unwrap();
}
