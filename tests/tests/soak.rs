//! `make soak`: one seeded random walk over every command for
//! `SOAK_SECONDS` (default 300) on a `SOAK_MEM` guest (QEMU's `-m`, default
//! 2G; 64M shows a small one) with `api_quota=100`, so memory itself runs
//! out again and again. Every answer is one the
//! contract allows; every ~200 steps selfcheck is clean and reset gives
//! back the boot buddyinfo. At the end: steps, a status histogram and how
//! much the kernel heap (`Slab` in /api/meminfo) grew.
//!
//! `#[ignore]`d so `make test` leaves it out; `SOAK_SEED` repeats a walk.

use std::time::{Duration, Instant};

use serde_json::json;
use tests::api::{
    alloc_until_fail, assert_selfcheck_ok, buddyinfo, meminfo_kb, panic_lines, reset_to_boot,
    with_guest_log,
};
use tests::http::Client;
use tests::walk::{ALLOWED, Walker};
use tests::{BootOptions, boot_ready};

/// Steps between resets.
const RESET_EVERY: u64 = 200;
/// Every this many windows, memory is run dry first (pages of one GFP,
/// order 10 down to 0, until 507), so the walk goes on at exhaustion.
const DRAIN_EVERY: u64 = 3;
const DRAIN_GFPS: [&str; 3] = ["GFP_KERNEL", "GFP_ATOMIC", "GFP_HIGHUSER"];

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
#[ignore = "minutes long: run with `make soak`"]
fn soak_random_walk_over_every_command() {
    let seconds = env_u64("SOAK_SECONDS", 300);
    let seed = env_u64("SOAK_SEED", 0x9a9e_2011e);
    let mem = std::env::var("SOAK_MEM").unwrap_or_else(|_| "2G".into());
    let mut opts = BootOptions::default().mem(&mem).append("api_quota=100");
    opts.deadline = Duration::from_secs(seconds + 120);
    let (guest, port) = boot_ready(opts);
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    let slab_before = meminfo_kb(&mut c, "Slab");
    let mut w = Walker::new(c, seed, "soak");
    with_guest_log(&guest, || {
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut resets = 0u64;
        let mut drains = 0u64;
        while Instant::now() < end {
            if w.steps.is_multiple_of(RESET_EVERY * DRAIN_EVERY) {
                let gfp = DRAIN_GFPS[(drains % 3) as usize];
                for order in (0..=10u32).rev() {
                    let body = json!({"type":"pages","order":order,"gfp":gfp});
                    let (_, failed) = alloc_until_fail(&mut w.c, &body, 600_000 >> order, 16);
                    let status = failed.map(|r| r.status);
                    assert_eq!(status, Some(507), "seed {seed}: draining {body}");
                }
                drains += 1;
            }
            let (what, status) = w.step();
            assert!(
                ALLOWED.contains(&status),
                "seed {seed} step {}: {what} answered {status}",
                w.steps
            );
            if w.steps.is_multiple_of(RESET_EVERY) {
                let when = format!("seed {seed}, reset after step {}", w.steps);
                assert_selfcheck_ok(&mut w.c, &when);
                reset_to_boot(&mut w.c, &boot, &when);
                assert_selfcheck_ok(&mut w.c, &format!("{when}, after reset"));
                w.forget_all();
                resets += 1;
            }
        }
        let when = format!("seed {seed}, the end");
        assert_selfcheck_ok(&mut w.c, &when);
        reset_to_boot(&mut w.c, &boot, &when);
        w.forget_all();
        assert!(panic_lines(&guest).is_empty(), "{:?}", panic_lines(&guest));
        let slab_after = meminfo_kb(&mut w.c, "Slab");
        println!(
            "soak: seed {seed}, {seconds} s, {} steps, {resets} resets",
            w.steps
        );
        println!("soak: {drains} times memory was run dry first");
        println!("soak: statuses {:?}", w.statuses);
        println!(
            "soak: kernel heap (Slab) {slab_before} kB before, {slab_after} kB after ({:+} kB)",
            slab_after as i64 - slab_before as i64
        );
    });
}
