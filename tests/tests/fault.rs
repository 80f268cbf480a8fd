//! Linux's fault injection (`fail_page_alloc`, `failslab`) on the real
//! guest: the debugfs files read and write as Linux's do, a deterministic
//! arming fails exactly the allocations it says, and sixteen clients
//! driving every command while 10 % of eligible allocations fail never
//! get anything but an answer — then reset gives back the boot state.

use std::time::{Duration, Instant};

use serde_json::json;
use tests::api::{
    alloc, assert_selfcheck_ok, body_excerpt, buddyinfo, error_code, get_json, panic_lines,
    reset_to_boot, with_guest_log,
};
use tests::http::{Client, Response};
use tests::walk::{ALLOWED, Walker};
use tests::{BootOptions, boot_ready};

const FAIL_PAGE_ALLOC: &str = "/sys/kernel/debug/fail_page_alloc";
const FAILSLAB: &str = "/sys/kernel/debug/failslab";

/// `PUT {dir}/{attr}` with the value as the body, as `echo value > file`.
fn put(c: &mut Client, dir: &str, attr: &str, value: &str) -> Response {
    c.request("PUT", &format!("{dir}/{attr}"), Some(value))
}

/// `PUT` that must succeed, and a `GET` that reads the value back.
fn set(c: &mut Client, dir: &str, attr: &str, value: &str) {
    let r = put(c, dir, attr, value);
    assert_eq!(
        r.status,
        200,
        "PUT {dir}/{attr} {value}: {}",
        body_excerpt(&r)
    );
    assert_eq!(read(c, dir, attr), format!("{value}\n"), "{dir}/{attr}");
}

fn read(c: &mut Client, dir: &str, attr: &str) -> String {
    let r = c.request("GET", &format!("{dir}/{attr}"), None);
    assert_eq!(r.status, 200, "GET {dir}/{attr}: {}", body_excerpt(&r));
    r.text()
}

#[test]
fn fail_page_alloc_fails_exactly_the_next_two_and_refuses_bad_values() {
    let (guest, port) = boot_ready(BootOptions::default().mem("64M"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        // Linux's defaults: disabled, and order 0 is never failed.
        assert_eq!(read(&mut c, FAIL_PAGE_ALLOC, "probability"), "0\n");
        assert_eq!(read(&mut c, FAIL_PAGE_ALLOC, "min-order"), "1\n");
        for (attr, value) in [
            ("interval", "1"),
            ("probability", "100"),
            ("times", "2"),
            ("ignore-gfp-wait", "0"),
        ] {
            set(&mut c, FAIL_PAGE_ALLOC, attr, value);
        }
        let order1 = json!({"type":"pages","order":1,"gfp":"GFP_KERNEL"});
        // Below min-order: not eligible, and uses up none of `times`.
        let r = alloc(
            &mut c,
            &json!({"type":"pages","order":0,"gfp":"GFP_KERNEL"}),
        );
        assert_eq!(r.status, 201, "order 0 under min-order 1: {}", r.text());
        for i in 0..2 {
            let r = alloc(&mut c, &order1);
            assert_eq!(r.status, 507, "injected failure {i}: {}", r.text());
            assert_eq!(error_code(&r), "ENOMEM");
        }
        let r = alloc(&mut c, &order1);
        assert_eq!(r.status, 201, "times used up: {}", r.text());
        assert_eq!(read(&mut c, FAIL_PAGE_ALLOC, "times"), "0\n");

        // Bad values are 400 and change nothing; unknown files are 404.
        for (dir, attr, bad) in [
            (FAIL_PAGE_ALLOC, "probability", "101"),
            (FAIL_PAGE_ALLOC, "interval", "0"),
            (FAIL_PAGE_ALLOC, "probability", "abc"),
            (FAIL_PAGE_ALLOC, "times", "-2"),
            (FAILSLAB, "probability", "101"),
            (FAILSLAB, "interval", "0"),
            (FAILSLAB, "probability", "abc"),
        ] {
            let before = read(&mut c, dir, attr);
            let r = put(&mut c, dir, attr, bad);
            assert_eq!(r.status, 400, "{dir}/{attr} = {bad}: {}", r.text());
            assert_eq!(error_code(&r), "EINVAL");
            assert_eq!(read(&mut c, dir, attr), before, "{dir}/{attr} unchanged");
        }
        for path in [
            format!("{FAIL_PAGE_ALLOC}/no-such-attribute"),
            format!("{FAILSLAB}/min-order"),
            "/sys/kernel/debug/fail_nothing/probability".to_string(),
        ] {
            let r = c.request("GET", &path, None);
            assert_eq!(r.status, 404, "GET {path}: {}", r.text());
            let r = c.request("PUT", &path, Some("1"));
            assert_eq!(r.status, 404, "PUT {path}: {}", r.text());
        }

        // failslab, once: the next accounted kmalloc fails, the one after not.
        for (attr, value) in [
            ("interval", "1"),
            ("probability", "100"),
            ("times", "1"),
            ("ignore-gfp-wait", "0"),
        ] {
            set(&mut c, FAILSLAB, attr, value);
        }
        let kmalloc = json!({"type":"kmalloc","size":64});
        let r = alloc(&mut c, &kmalloc);
        assert_eq!((r.status, error_code(&r)), (507, "ENOMEM".into()));
        assert_eq!(alloc(&mut c, &kmalloc).status, 201);

        reset_to_boot(&mut c, &boot, "after the deterministic faults");
        assert_selfcheck_ok(&mut c, "after the deterministic faults");
    });
}

#[test]
fn boot_options_arm_fault_injection() {
    let opts = BootOptions::default()
        .mem("64M")
        .append("fail_page_alloc=3,50,0,7 failslab=1,100,0,-1");
    let (guest, port) = boot_ready(opts);
    let mut c = Client::connect(port);
    with_guest_log(&guest, || {
        for (dir, attr, want) in [
            (FAIL_PAGE_ALLOC, "interval", "3\n"),
            (FAIL_PAGE_ALLOC, "probability", "50\n"),
            (FAIL_PAGE_ALLOC, "space", "0\n"),
            (FAIL_PAGE_ALLOC, "times", "7\n"),
            (FAILSLAB, "interval", "1\n"),
            (FAILSLAB, "probability", "100\n"),
            (FAILSLAB, "times", "-1\n"),
        ] {
            assert_eq!(read(&mut c, dir, attr), want, "{dir}/{attr}");
        }
        // The kernel answering with failslab at 100 % is the point: its own
        // heap is never failed.
        assert_eq!(get_json(&mut c, "/api/health")["status"], "ok");
        assert_selfcheck_ok(&mut c, "failslab=…,100,…");
    });
}

/// `(name, num_slabs)` of the kernel heap's kmalloc caches (not the
/// accounted `kmalloc-cg-*` twins the API's kmalloc uses).
fn kmalloc_slabs(c: &mut Client) -> Vec<(String, u64)> {
    get_json(c, "/api/slabinfo")["caches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| {
            let name = x["name"].as_str()?;
            (name.starts_with("kmalloc-") && !name.starts_with("kmalloc-cg-"))
                .then(|| (name.to_string(), x["num_slabs"].as_u64().unwrap()))
        })
        .collect()
}

fn rx_packets(c: &mut Client) -> u64 {
    get_json(c, "/api/net")["rx_packets"].as_u64().unwrap()
}

#[test]
fn sixteen_clients_drive_everything_while_allocations_fail() {
    let (guest, port) = boot_ready(BootOptions::default().mem("2G"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    let boot_slabs = kmalloc_slabs(&mut c);
    with_guest_log(&guest, || {
        for dir in [FAIL_PAGE_ALLOC, FAILSLAB] {
            for (attr, value) in [
                ("probability", "10"),
                ("times", "-1"),
                ("ignore-gfp-wait", "0"),
            ] {
                set(&mut c, dir, attr, value);
            }
        }
        let rx_before = rx_packets(&mut c);
        let seed: u64 = std::env::var("FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed);
        // The guest serves at least 16 connections at once: ours makes way for the
        // sixteen clients, which start together once all are served.
        drop(c);
        let start = std::sync::Arc::new(std::sync::Barrier::new(16));
        let walkers: Vec<_> = (0..16u64)
            .map(|i| {
                let start = start.clone();
                std::thread::spawn(move || {
                    let conn = Client::connect_patiently(port, Duration::from_secs(30));
                    start.wait();
                    let end = Instant::now() + Duration::from_secs(20);
                    let mut w = Walker::new(conn, seed ^ ((i + 1) * 0x9e37_79b9), &format!("t{i}"));
                    while Instant::now() < end {
                        let (what, status) = w.step();
                        assert!(
                            ALLOWED.contains(&status),
                            "client {i} step {}: {what} answered {status}",
                            w.steps
                        );
                    }
                    // The connection still works after the run.
                    let r = w.c.request("GET", "/api/health", None);
                    assert_eq!(r.status, 200, "client {i} after the run");
                    (w.steps, w.statuses)
                })
            })
            .collect();
        let mut steps = 0;
        let mut histogram = std::collections::BTreeMap::<u16, u64>::new();
        for (i, t) in walkers.into_iter().enumerate() {
            let (n, statuses) = t.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            assert!(n > 0, "client {i} made no step");
            steps += n;
            for (s, k) in statuses {
                *histogram.entry(s).or_default() += k;
            }
        }
        eprintln!("16 clients, {steps} steps in 20 s: {histogram:?}");
        assert!(
            histogram.get(&507).copied().unwrap_or(0) > 0,
            "10 % injection made no 507 in {steps} steps: {histogram:?}"
        );
        assert!(panic_lines(&guest).is_empty(), "{:?}", panic_lines(&guest));
        let mut c = Client::connect_patiently(port, Duration::from_secs(30));
        let rx_after = rx_packets(&mut c);
        assert!(rx_after > rx_before, "rx_packets {rx_before} → {rx_after}");

        for dir in [FAIL_PAGE_ALLOC, FAILSLAB] {
            set(&mut c, dir, "probability", "0");
        }
        reset_to_boot(&mut c, &boot, "after the fault-injection run");
        assert_eq!(
            kmalloc_slabs(&mut c),
            boot_slabs,
            "kernel kmalloc caches' slabs after reset vs boot"
        );
        assert_selfcheck_ok(&mut c, "after the fault-injection run");
    });
}
