//! Tracepoints on a real guest (issue 14): tracefs over HTTP, Linux's
//! `trace` format with the kernel's TSC timestamps, kswapd's wake under
//! pressure, disable and reset; and the kernel heap traced (kmalloc under
//! the slab lock, recorded without the heap) without wedging anything.

use serde_json::json;
use tests::api::{alloc, alloc_until_fail, buddyinfo, post, reset_to_boot, with_guest_log};
use tests::http::Client;
use tests::{BootOptions, boot_ready};

const TRACING: &str = "/sys/kernel/tracing";

fn put(c: &mut Client, file: &str, body: &str) -> String {
    let r = c.request("PUT", &format!("{TRACING}/{file}"), Some(body));
    assert_eq!(r.status, 200, "PUT {file}: {}", r.text());
    r.text()
}

fn get(c: &mut Client, file: &str) -> String {
    let r = c.request("GET", &format!("{TRACING}/{file}"), None);
    assert_eq!(r.status, 200, "GET {file}: {}", r.text());
    r.text()
}

/// The record lines of `trace` (header dropped).
fn trace_lines(c: &mut Client) -> Vec<String> {
    get(c, "trace")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// `          <idle>-0       [000] .....   123.456789: ` and the rest.
fn split_line(l: &str) -> (&str, &str) {
    assert!(
        l.starts_with("          <idle>-0       [000] ..... "),
        "{l}"
    );
    let (ts, rest) = l[36..].split_once(": ").unwrap_or_else(|| panic!("{l}"));
    let (s, us) = ts.trim_start().split_once('.').unwrap();
    assert!(s.parse::<u64>().is_ok() && us.len() == 6, "{l}");
    (ts, rest)
}

#[test]
fn page_alloc_line_kswapd_wake_disable_and_reset() {
    let (guest, port) = boot_ready(BootOptions::default().mem("128M").append("api_quota=100"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        let available = get(&mut c, "available_events");
        assert!(
            available.lines().any(|l| l == "kmem:mm_page_alloc"),
            "{available}"
        );
        assert!(
            available
                .lines()
                .any(|l| l == "vmscan:mm_vmscan_kswapd_wake")
        );
        let header = get(&mut c, "trace");
        assert!(
            header.starts_with(
                "# tracer: nop\n#\n# entries-in-buffer/entries-written: 0/0   #P:1\n#\n"
            ),
            "{header}"
        );

        assert_eq!(
            put(&mut c, "events/kmem/mm_page_alloc/enable", "1\n"),
            "1\n"
        );
        assert_eq!(
            put(&mut c, "events/vmscan/mm_vmscan_kswapd_wake/enable", "1"),
            "1\n"
        );
        assert_eq!(get(&mut c, "events/vmscan/enable"), "X\n");

        let r = alloc(
            &mut c,
            &json!({"type":"pages","order":3,"gfp":"GFP_KERNEL"}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let pfn = r.json()["pfn"].as_u64().unwrap();
        let want = format!(" pfn={pfn:#x} order=3 migratetype=0 gfp_flags=GFP_KERNEL");
        let lines = trace_lines(&mut c);
        let line = lines
            .iter()
            .find(|l| l.ends_with(&want))
            .unwrap_or_else(|| panic!("no line ending {want:?} in {lines:#?}"));
        let (_, event) = split_line(line);
        let page = event
            .strip_prefix("mm_page_alloc: page=")
            .and_then(|p| p.strip_suffix(&want))
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            page.len() == 16 && page.starts_with("ffff888"),
            "page= is the descriptor's direct-map address: {line}"
        );

        // trace_pipe consumes what is there, then has nothing more of it.
        let pipe = get(&mut c, "trace_pipe");
        assert!(pipe.lines().any(|l| l.ends_with(&want)), "{pipe}");
        assert!(!trace_lines(&mut c).iter().any(|l| l.ends_with(&want)));

        // Pressure: a page cache for kswapd to reclaim, then fill memory
        // below the low watermark; the next request runs kswapd.
        let r = post(
            &mut c,
            "/api/alloc",
            &json!({"type":"pagecache","size":8 << 20}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let body = json!({"type":"pages","order":6,"oom":false});
        let (n, _) = alloc_until_fail(&mut c, &body, 100_000, 8);
        assert!(n > 100, "{n} order-6 blocks");
        let lines = trace_lines(&mut c);
        let wakes: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains(": mm_vmscan_kswapd_wake: "))
            .collect();
        assert!(!wakes.is_empty(), "no kswapd wake in {} lines", lines.len());
        for l in &wakes {
            assert_eq!(
                split_line(l).1,
                "mm_vmscan_kswapd_wake: nid=0 order=0",
                "{l}"
            );
        }
        // Timestamps (TSC, ns → µs) never go backwards.
        let stamps: Vec<f64> = lines
            .iter()
            .map(|l| split_line(l).0.trim().parse().unwrap())
            .collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");

        // Disabled: no new lines, whatever runs.
        assert_eq!(put(&mut c, "events/enable", "0"), "0\n");
        let before = trace_lines(&mut c).len();
        let _ = alloc(
            &mut c,
            &json!({"type":"pages","order":0,"gfp":"GFP_ATOMIC"}),
        );
        let _ = alloc(&mut c, &json!({"type":"pages","order":6,"oom":false}));
        assert_eq!(trace_lines(&mut c).len(), before);

        // Reset: the ring is empty and everything is off.
        assert_eq!(put(&mut c, "events/kmem/enable", "1"), "1\n");
        reset_to_boot(&mut c, &boot, "after tracing under pressure");
        assert!(get(&mut c, "trace").contains("# entries-in-buffer/entries-written: 0/0   #P:1\n"));
        assert!(trace_lines(&mut c).is_empty());
        assert_eq!(get(&mut c, "events/enable"), "0\n");

        // Errors.
        let r = c.request("PUT", &format!("{TRACING}/events/kmem/enable"), Some("2"));
        assert_eq!(r.status, 400, "{}", r.text());
        let r = c.request("GET", &format!("{TRACING}/events/kmem/nope/enable"), None);
        assert_eq!(r.status, 404, "{}", r.text());
    });
}

#[test]
fn the_kernel_heap_traced_does_not_recurse_or_wedge() {
    let (guest, port) = boot_ready(BootOptions::default().mem("256M"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        // Every kmem event, the heap's kmalloc/kfree included: the HTTP
        // layer's own allocations are traced from under the slab lock.
        put(&mut c, "events/kmem/enable", "1");
        for _ in 0..20 {
            let r = alloc(&mut c, &json!({"type":"kmalloc","size":100}));
            assert_eq!(r.status, 201, "{}", r.text());
        }
        let text = get(&mut c, "trace");
        assert!(
            text.lines().any(|l| l.contains(": kmalloc: call_site=0x0 ptr=ffff888")
                && l.contains(" bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL_ACCOUNT node=-1 accounted=true")),
            "{}",
            &text[..text.len().min(4000)]
        );
        // The heap's own: GFP_KERNEL|__GFP_NOFAIL, not accounted.
        assert!(text.contains("gfp_flags=GFP_KERNEL|__GFP_NOFAIL node=-1 accounted=false"));
        // Reading the pipe allocates while it consumes; it ends anyway.
        for _ in 0..3 {
            let pipe = get(&mut c, "trace_pipe");
            assert!(!pipe.starts_with('#'));
        }
        reset_to_boot(&mut c, &boot, "after tracing the heap");
    });
}
