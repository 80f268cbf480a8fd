//! Sleeping allocations on a real guest (issue 10, item 4): with memory
//! gone, a `"wait_ms"` request sleeps on one connection while the guest
//! serves others, and answers 201 as soon as another connection frees
//! memory — or 507 once its time is up; a mempool allocation sleeps until
//! an element comes back to its pool. Reset gives back the boot buddyinfo.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::api::{
    alloc, alloc_until_fail, assert_selfcheck_ok, buddyinfo, error_code, post, reset_to_boot,
    with_guest_log,
};
use tests::http::{Client, Response};
use tests::{BootOptions, boot_ready};

/// One sample of `/metrics`, e.g. `pagezone_wait_queue_waiters{queue="pages"}`.
fn metric(c: &mut Client, series: &str) -> u64 {
    let text = c.request("GET", "/metrics", None).text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

fn waiters(c: &mut Client, queue: &str) -> u64 {
    metric(
        c,
        &format!("pagezone_wait_queue_waiters{{queue=\"{queue}\"}}"),
    )
}

/// Polls `/metrics` (no fixed sleep) until `n` requests sleep on `queue`.
fn until_waiters(c: &mut Client, queue: &str, n: u64) {
    let end = Instant::now() + Duration::from_secs(10);
    while waiters(c, queue) != n {
        assert!(Instant::now() < end, "never {n} sleepers on {queue}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Every page the guest will give, for `GFP_KERNEL` and then `GFP_ATOMIC`,
/// never killing anyone.
fn run_memory_dry(c: &mut Client) {
    for gfp in ["GFP_KERNEL", "GFP_ATOMIC"] {
        for order in (0..=10u32).rev() {
            let body = json!({"type":"pages","order":order,"gfp":gfp,"oom":false});
            let (_, failed) = alloc_until_fail(c, &body, 100_000, 16);
            assert_eq!(failed.map(|r| r.status), Some(507), "{gfp} order {order}");
        }
    }
}

/// `body` sent on a connection of its own from a thread; the answer and
/// when it came.
fn alloc_in_thread(port: u16, body: Value) -> thread::JoinHandle<(Response, Instant)> {
    thread::spawn(move || {
        let mut c = Client::connect(port);
        let r = alloc(&mut c, &body);
        (r, Instant::now())
    })
}

fn id(r: &Response) -> u64 {
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_u64().unwrap()
}

#[test]
fn sleeping_allocation_is_woken_by_a_free_and_times_out_otherwise() {
    let (guest, port) = boot_ready(BootOptions::default().mem("128M").append("api_quota=100"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        let first = id(&alloc(&mut c, &json!({"type":"pages","order":10})));
        run_memory_dry(&mut c);

        // Sleeps on its own connection; this one is served meanwhile.
        let started = Instant::now();
        let sleeper = alloc_in_thread(port, json!({"type":"pages","order":4,"wait_ms":10_000}));
        until_waiters(&mut c, "pages", 1);
        assert!(!sleeper.is_finished(), "answered without memory");
        let freed_at = Instant::now();
        let r = c.request("DELETE", &format!("/api/alloc/{first}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        let (r, answered_at) = sleeper.join().unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["order"], 4);
        let wake = answered_at - freed_at;
        let total = answered_at - started;
        eprintln!("wait: woken {wake:?} after the free; {total:?} from the request");
        assert!(
            wake < Duration::from_secs(1),
            "woken {wake:?} after the free"
        );
        assert!(
            total < Duration::from_secs(5),
            "{total:?} for wait_ms 10000"
        );
        assert_eq!(waiters(&mut c, "pages"), 0);

        // Nothing is freed: 507 once wait_ms is up.
        run_memory_dry(&mut c);
        let started = Instant::now();
        let r = alloc(&mut c, &json!({"type":"pages","order":0,"wait_ms":1500}));
        let waited = started.elapsed();
        eprintln!("wait: 507 after {waited:?} for wait_ms 1500");
        assert_eq!((r.status, error_code(&r).as_str()), (507, "ENOMEM"));
        assert!(
            r.text().contains("still failing after sleeping"),
            "{}",
            r.text()
        );
        // Not before its time (the guest's clock, a few ms of rounding);
        // late only as much as a loaded host delays a TCG guest's timer.
        assert!(
            (Duration::from_millis(1490)..Duration::from_millis(4500)).contains(&waited),
            "{waited:?}"
        );
        assert_eq!(
            metric(
                &mut c,
                "pagezone_wait_queue_timeouts_total{queue=\"pages\"}"
            ),
            1
        );
        // Atomic allocations cannot sleep.
        let r = alloc(
            &mut c,
            &json!({"type":"pages","order":0,"gfp":"GFP_ATOMIC","wait_ms":100}),
        );
        assert_eq!((r.status, error_code(&r).as_str()), (400, "EINVAL"));
        assert_selfcheck_ok(&mut c, "after the sleeps");
        // A reset ends every sleep: the sleeper answers 507, allocates
        // nothing, and the buddy allocator is at its boot state.
        let sleeper = alloc_in_thread(port, json!({"type":"pages","order":0,"wait_ms":20_000}));
        until_waiters(&mut c, "pages", 1);
        let r = c.request("POST", "/api/reset", None);
        assert_eq!(r.status, 200, "{}", r.text());
        let (r, _) = sleeper.join().unwrap();
        assert_eq!(r.status, 507, "{}", r.text());
        assert!(r.text().contains("POST /api/reset"), "{}", r.text());
        assert_eq!(waiters(&mut c, "pages"), 0);
        assert_eq!(
            buddyinfo(&mut c),
            boot,
            "right after a reset with a sleeper"
        );
        reset_to_boot(&mut c, &boot, "after sleeping allocations");
    });
}

#[test]
fn mempool_alloc_sleeps_until_an_element_is_freed_to_its_pool() {
    let (guest, port) = boot_ready(BootOptions::default().mem("128M").append("api_quota=100"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        let r = post(&mut c, "/api/caches", &json!({"name":"objs","size":1000}));
        assert_eq!(r.status, 201, "{}", r.text());
        let r = post(
            &mut c,
            "/api/mempools",
            &json!({"name":"p","cache":"objs","min_nr":2}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        run_memory_dry(&mut c);
        // The cache's slabs fill up and cannot grow; then the reserve.
        let (_, failed) =
            alloc_until_fail(&mut c, &json!({"type":"cache","cache":"objs"}), 1000, 1);
        assert_eq!(failed.map(|r| r.status), Some(507));
        let element = id(&alloc(&mut c, &json!({"type":"mempool","pool":"p"})));
        id(&alloc(&mut c, &json!({"type":"mempool","pool":"p"})));
        // GFP_ATOMIC never sleeps.
        let r = alloc(
            &mut c,
            &json!({"type":"mempool","pool":"p","gfp":"GFP_ATOMIC"}),
        );
        assert_eq!(r.status, 507, "{}", r.text());
        // GFP_KERNEL (no wait_ms): sleeps for an element.
        let sleeper = alloc_in_thread(port, json!({"type":"mempool","pool":"p"}));
        until_waiters(&mut c, "mempool", 1);
        let freed_at = Instant::now();
        let r = c.request("DELETE", &format!("/api/alloc/{element}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        let (r, answered_at) = sleeper.join().unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["pool"], "p");
        let wake = answered_at - freed_at;
        eprintln!("wait: mempool_alloc woken {wake:?} after mempool_free");
        assert!(wake < Duration::from_secs(1), "{wake:?}");
        assert_eq!(waiters(&mut c, "mempool"), 0);
        reset_to_boot(&mut c, &boot, "after mempool sleeps");
    });
}
