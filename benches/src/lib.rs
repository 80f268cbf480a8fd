//! What `make bench`'s three host tables and its whole-system figures share:
//! the random tables (drawn before any clock starts, so the RNG is never
//! timed), the statistic (median of three runs per cell), an arena aligned to
//! its size for the allocators that keep their lists inside the memory they
//! manage, and the table printer. The benchmarks themselves are
//! `harness = false` targets in `benches/`; see `docs/benchmarks.md`.
//!
//! * `pages`   — the page layer: `mm::page_alloc::PageAlloc` beside
//!   `buddy_system_allocator`, `axallocator`'s bitmap, talc, rlsf,
//!   good_memory_allocator and the system allocator.
//! * `kmalloc` — the slab layer: kmalloc/kfree beside the byte allocators.
//! * `system`  — the booted image under QEMU: boot time, HTTP throughput,
//!   image size, smallest RAM that serves, idle CPU.
//!
//! Nothing here asserts anything about time.
//!
//! Beside the ns tables, the host benches print the same workloads counted
//! in instructions ([`InstrCount`]): this bench binary run again under
//! valgrind's cachegrind at two sizes, the difference divided by the
//! operations between them. A count does not move with the host's load,
//! which swings these ns figures 1.4–2× within minutes on a shared VM, so
//! it is the figure to compare across runs and machines; the ns say what
//! that work costs here, cache misses and mispredictions included.

use std::alloc::{Layout, alloc_zeroed};
use std::process::Command;
use std::time::Duration;

/// xorshift64* — small, fast and the same on every machine, so every
/// allocator sees the same sequence.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The median of a cell's runs; `Err` if any run failed (the first reason).
pub fn median(runs: Vec<Result<f64, String>>) -> Result<f64, String> {
    let mut ok = Vec::with_capacity(runs.len());
    for r in runs {
        ok.push(r?);
    }
    ok.sort_by(f64::total_cmp);
    ok.get(ok.len() / 2)
        .copied()
        .ok_or_else(|| "no run".to_string())
}

/// Runs `f` three times and keeps the median: how every timed cell is made.
pub fn median_of_3(mut f: impl FnMut() -> Result<f64, String>) -> Result<f64, String> {
    median((0..3).map(|_| f()).collect())
}

/// The median of plain samples (boot times); `None` when there are none.
pub fn median_duration(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

/// A zeroed, leaked buffer of `size_bytes` aligned to `align` — written once
/// here, so no page fault of the host is timed later. Buddy-style heaps
/// (buddy_system_allocator's `Heap`) can only form their largest block in
/// an arena aligned to its size.
pub fn leaked_arena(size_bytes: usize, align: usize) -> *mut u8 {
    let layout = Layout::from_size_align(size_bytes, align).expect("arena layout");
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null(), "could not allocate a {size_bytes}-byte arena");
    p
}

/// One table cell: `12.3` for a time in ns, the reason for anything else.
pub fn cell(r: &Result<f64, String>) -> String {
    match r {
        Ok(ns) if *ns >= 1000.0 => format!("{ns:.0}"),
        Ok(ns) => format!("{ns:.1}"),
        Err(why) => why.clone(),
    }
}

/// Prints a table as GitHub markdown (it reads as a table on a terminal
/// too, and `docs/benchmarks.md` takes it verbatim).
pub fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&width)
            .enumerate()
            .map(|(i, (c, w))| {
                let pad = w - c.chars().count();
                // The first column is a name: left-aligned; numbers right.
                if i == 0 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    println!();
    println!("{title}");
    println!();
    line(header.iter().map(|h| h.to_string()).collect());
    println!(
        "|{}|",
        width
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 {
                format!(":{}", "-".repeat(w + 1))
            } else {
                format!("{}:", "-".repeat(w + 1))
            })
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        line(r.clone());
    }
}

/// Counts instructions per operation by re-running the current bench
/// binary under `valgrind --tool=cachegrind --cache-sim=no` (see the
/// module docs). `None` when counting is off: `PZ_BENCH_INSTR=0`, or no
/// `valgrind` on the machine (`.ci/deps.sh bench` installs it).
pub struct InstrCount {
    exe: std::path::PathBuf,
}

/// The environment variable a counting child sees, so that it runs one
/// workload and does not count in turn.
pub const COUNTING_CHILD: &str = "PZ_BENCH_COUNTING";

impl InstrCount {
    /// Counting, if it is on and valgrind runs.
    pub fn new() -> Option<InstrCount> {
        if std::env::var("PZ_BENCH_INSTR").is_ok_and(|v| v == "0")
            || std::env::var_os(COUNTING_CHILD).is_some()
        {
            return None;
        }
        let ok = Command::new("valgrind")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let exe = std::env::current_exe().ok()?;
        ok.then_some(InstrCount { exe })
    }

    /// Instructions the child executes with `env` set (besides
    /// [`COUNTING_CHILD`]).
    pub fn total(&self, env: &[(&str, String)]) -> Result<u64, String> {
        let out = Command::new("valgrind")
            .args([
                "--tool=cachegrind",
                "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
            ])
            .arg(&self.exe)
            .env(COUNTING_CHILD, "1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .map_err(|e| format!("valgrind: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!("valgrind: exit {}", out.status));
        }
        // `==PID== I   refs:      56,999,909`
        stderr
            .lines()
            .find_map(|l| {
                let (_, n) = l.split_once("refs:")?;
                l.contains(" I ").then(|| n.trim().replace(',', "").parse().ok())?
            })
            .ok_or_else(|| "valgrind: no instruction count".to_string())
    }

    /// Instructions per operation: the child run with `env(n)` and with
    /// `env(2 n)`, the difference over `ops(n)`, the operations the second
    /// run did beyond the first. Whatever both runs do alike (set-up,
    /// tables, warm-up) cancels out.
    pub fn per_op(
        &self,
        n: usize,
        env: impl Fn(usize) -> Vec<(&'static str, String)>,
        ops: impl Fn(usize) -> f64,
    ) -> Result<f64, String> {
        let small = self.total(&env(n))?;
        let large = self.total(&env(2 * n))?;
        Ok((large as f64 - small as f64) / ops(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_run() {
        assert_eq!(median(vec![Ok(3.0), Ok(1.0), Ok(2.0)]), Ok(2.0));
        assert_eq!(
            median(vec![Ok(1.0), Err("OOM".into()), Ok(2.0)]),
            Err("OOM".into())
        );
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
            let u = a.unit();
            b.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn cells_print_times_and_reasons() {
        assert_eq!(cell(&Ok(12.345)), "12.3");
        assert_eq!(cell(&Ok(12345.6)), "12346");
        assert_eq!(cell(&Err("n/a: pages only".into())), "n/a: pages only");
    }
}
