//! A CPU-bound program with one known hot function, for the perf backend's tests.
//!
//! `hot [SECONDS]` prints "ready" once it is running, then spends most of its time in
//! `hot_loop` and a little in `cold_loop` until SECONDS (default 60) have passed or it is
//! killed. The deadline keeps a forgotten process from spinning forever.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

/// The hot function: integer hashing the optimiser cannot fold away.
#[inline(never)]
fn hot_loop(seed: u64, rounds: u64) -> u64 {
    let mut x = seed;
    for i in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(black_box(i));
    }
    x
}

/// A function that runs a tenth as long, so the profile has a second, smaller leaf.
#[inline(never)]
fn cold_loop(seed: u64, rounds: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..rounds {
        x = x.wrapping_mul(x).rotate_left(7);
    }
    x
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut acc = 0u64;
    while Instant::now() < deadline {
        acc = hot_loop(black_box(acc), black_box(2_000_000));
        acc = cold_loop(black_box(acc), black_box(200_000));
    }
    black_box(acc);
}
