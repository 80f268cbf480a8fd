//! Boot time, measured from the host (issue 12, item 4): QEMU launch →
//! first serial line, → `READY`, → first HTTP 200 (connecting after
//! `READY`), and the guest's own entry → `READY` from its console. Five
//! boots at `-m 2G` under TCG on q35 (or the machine `MACHINE` names:
//! `MACHINE=microvm`), medians printed.
//!
//! It asserts nothing about time (machines differ); it is `#[ignore]`d so
//! `make test` does not pay for five extra boots. Run it with
//!
//! ```sh
//! PAGEZONE_ELF=$PWD/target/pagezone.elf cargo test -p tests --test boottime -- --ignored --nocapture
//! ```
//!
//! (`BOOTTIME_RUNS=N` and `BOOTTIME_MEM=SIZE` change the defaults.)

use std::time::{Duration, Instant};

use tests::http::Client;
use tests::{BootOptions, Guest};

/// One boot's figures, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Sample {
    first_line_ms: f64,
    ready_ms: f64,
    first_200_ms: f64,
    guest_ready_ms: f64,
}

/// The guest's entry → READY from `net: ready after N ms`.
fn guest_ready_ms(line: &str) -> f64 {
    let rest = &line[line.find("ready after ").expect("ready after") + 12..];
    rest.split(" ms").next().unwrap().trim().parse().unwrap()
}

fn boot_once(mem: &str) -> Sample {
    let t0 = Instant::now();
    let mut guest = Guest::boot(
        BootOptions::default()
            .mem(mem)
            .network()
            .append("loglevel=info"),
    );
    guest.wait_for("");
    let first_line = t0.elapsed();
    let line = guest.wait_for("net: ready after ");
    guest.wait_for("READY http://");
    let ready = t0.elapsed();
    let port = guest.host_port.unwrap();
    let mut c = Client::connect(port);
    let r = c.request("GET", "/api/health", None);
    let first_200 = t0.elapsed();
    assert_eq!(r.status, 200);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Sample {
        first_line_ms: ms(first_line),
        ready_ms: ms(ready),
        first_200_ms: ms(first_200),
        guest_ready_ms: guest_ready_ms(&line),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
#[ignore = "measures, asserts nothing; run with --ignored --nocapture"]
fn launch_to_ready_and_first_200() {
    let runs: usize = std::env::var("BOOTTIME_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mem = std::env::var("BOOTTIME_MEM").unwrap_or_else(|_| "2G".into());
    let samples: Vec<Sample> = (0..runs).map(|_| boot_once(&mem)).collect();
    for (i, s) in samples.iter().enumerate() {
        println!(
            "run {i}: launch→first line {:6.1} ms, →READY {:6.1} ms, →first 200 {:6.1} ms; guest entry→READY {:6.1} ms",
            s.first_line_ms, s.ready_ms, s.first_200_ms, s.guest_ready_ms
        );
    }
    let col = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    println!(
        "median of {runs} (-m {mem}, TCG, {:?}): launch→first line {:.1} ms, launch→READY {:.1} ms, launch→first 200 {:.1} ms, guest entry→READY {:.1} ms",
        tests::Machine::from_env(),
        col(|s| s.first_line_ms),
        col(|s| s.ready_ms),
        col(|s| s.first_200_ms),
        col(|s| s.guest_ready_ms)
    );
}
