//! Rust symbol shapes for the perf backend's demangling test: a plain function, a
//! generic one (two instances), a const-generic method, a trait impl called through
//! `dyn` and a non-ASCII name, each with work of its own (distinct constants, so the
//! linker cannot fold two into one symbol) and so a leaf of the profile. std adds
//! closures (`lang_start`'s). `shapes [SECONDS]` prints "ready", then loops until
//! SECONDS (default 60) have passed or it is killed.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

macro_rules! work {
    ($seed:expr, $k:expr) => {{
        let mut x: u64 = $seed | 1;
        for i in 0..black_box(300_000u64) {
            x ^= x << 13;
            x ^= x >> 7;
            x = x.wrapping_mul($k).wrapping_add(black_box(i));
        }
        x
    }};
}

#[inline(never)]
fn plain(seed: u64) -> u64 {
    work!(seed, 0x9E37_79B9_7F4A_7C15)
}

#[inline(never)]
fn generic<T: Into<u64>>(v: T) -> u64 {
    work!(v.into(), 0xBF58_476D_1CE4_E5B9)
}

struct Grid<const N: usize>;

impl<const N: usize> Grid<N> {
    #[inline(never)]
    fn walk(&self, seed: u64) -> u64 {
        work!(seed ^ N as u64, 0x94D0_49BB_1331_11EB)
    }
}

trait Shape {
    fn area(&self, seed: u64) -> u64;
}

struct Square;

impl Shape for Square {
    #[inline(never)]
    fn area(&self, seed: u64) -> u64 {
        work!(seed, 0xD6E8_FEB8_6659_FD93)
    }
}

#[inline(never)]
fn größe(seed: u64) -> u64 {
    work!(seed, 0xA076_1D64_78BD_642F)
}

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let shape: Box<dyn Shape> = Box::new(Square);
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut acc = 0u64;
    while Instant::now() < deadline {
        acc = black_box(plain(black_box(acc)));
        acc = black_box(generic(black_box(acc as u32)));
        acc = black_box(generic(black_box(acc)));
        acc = black_box(Grid::<7>.walk(black_box(acc)));
        acc = black_box(black_box(&shape).area(black_box(acc)));
        acc = black_box(größe(black_box(acc)));
    }
    black_box(acc);
}
