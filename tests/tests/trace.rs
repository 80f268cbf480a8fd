//! Tracepoints on a real guest (issue 14): tracefs over HTTP, Linux's
//! `trace` format with the kernel's TSC timestamps, kswapd's wake under
//! pressure, disable and reset; and the kernel heap traced (kmalloc under
//! the slab lock, recorded without the heap) without wedging anything.

use serde_json::json;
use std::time::{Duration, Instant};
use tests::api::{alloc, alloc_until_fail, buddyinfo, post, reset_to_boot, with_guest_log};

use tests::http::{Client, StreamReader};
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
        let mut pipe = StreamReader::open(port, &format!("{TRACING}/trace_pipe"));
        let text = pipe.read_until(Duration::from_secs(10), |b| {
            b.lines().any(|l| l.ends_with(&want))
        });
        assert!(text.lines().any(|l| l.ends_with(&want)), "{text}");
        drop(pipe);
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
        // Reading the pipe allocates while it consumes (each round's
        // answer is kmalloc'ed, and traced): lines keep coming, and the
        // server keeps serving everyone else.
        let mut pipe = StreamReader::open(port, &format!("{TRACING}/trace_pipe"));
        pipe.read_for(Duration::from_secs(1));
        let r = alloc(&mut c, &json!({"type":"kmalloc","size":100}));
        assert_eq!(r.status, 201, "{}", r.text());
        let text = pipe.read_until(Duration::from_secs(10), |b| b.contains("bytes_req=100 "));
        assert!(!text.starts_with('#') && text.contains(": kmalloc: "));
        drop(pipe);
        reset_to_boot(&mut c, &boot, "after tracing the heap");
    });
}

/// Reads `s` until an event passes `pred` (10 s at most).
fn sse_until(
    s: &mut StreamReader,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (events, _) = s.sse();
        if events.iter().any(&pred) || Instant::now() >= end {
            return events;
        }
        s.read_for(Duration::from_millis(50));
    }
}

#[test]
fn trace_pipe_blocks_and_event_streams_filter_live() {
    let (guest, port) = boot_ready(BootOptions::default().mem("256M"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        put(&mut c, "events/kmem/mm_page_alloc/enable", "1");
        // A blocking trace_pipe: the head comes at once, then lines as
        // they are recorded — here one written after the request started.
        let mut pipe = StreamReader::open(port, &format!("{TRACING}/trace_pipe"));
        assert!(
            pipe.head().starts_with("HTTP/1.1 200 OK\r\n"),
            "{}",
            pipe.head()
        );
        assert!(pipe.head().contains("Transfer-Encoding: chunked\r\n"));
        pipe.read_for(Duration::from_millis(300));
        assert!(!pipe.body().1, "still open");
        let r = alloc(&mut c, &json!({"type":"pages","order":5}));
        assert_eq!(r.status, 201, "{}", r.text());
        let pfn = r.json()["pfn"].as_u64().unwrap();
        let want = format!(" pfn={pfn:#x} order=5 migratetype=0 gfp_flags=GFP_KERNEL");
        let text = pipe.read_until(Duration::from_secs(10), |b| b.contains(&want));
        assert!(text.lines().any(|l| l.ends_with(&want)), "{text}");
        drop(pipe);

        // Two subscribers with different filters, and a third that sees all.
        let path = "/api/events?event=kmem:mm_page_alloc&order=4";
        let mut order4 = StreamReader::open(port, path);
        let mut dma = StreamReader::open(port, "/api/events?event=kmem&zone=DMA");
        let mut all = StreamReader::open(port, "/api/events");
        for s in [&order4, &dma, &all] {
            assert!(
                s.head().contains("Content-Type: text/event-stream\r\n"),
                "{}",
                s.head()
            );
        }
        let r = c.request("GET", "/api/events?zone=Dma", None);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "EINVAL");

        let a = alloc(&mut c, &json!({"type":"pages","order":4}));
        let b = alloc(&mut c, &json!({"type":"pages","order":4,"gfp":"GFP_DMA"}));
        let d = alloc(&mut c, &json!({"type":"pages","order":2,"gfp":"GFP_DMA"}));
        for r in [&a, &b, &d] {
            assert_eq!(r.status, 201, "{}", r.text());
        }
        let pfn = |r: &tests::http::Response| r.json()["pfn"].as_u64().unwrap();
        let is_alloc_of = |p: u64| {
            move |e: &serde_json::Value| {
                e["event"] == "kmem:mm_page_alloc" && e["fields"]["pfn"].as_u64() == Some(p)
            }
        };
        let events = sse_until(&mut order4, is_alloc_of(pfn(&b)));
        assert!(
            events
                .iter()
                .all(|e| e["event"] == "kmem:mm_page_alloc" && e["order"] == 4),
            "{events:?}"
        );
        let ea = events
            .iter()
            .find(|e| is_alloc_of(pfn(&a))(e))
            .unwrap_or_else(|| panic!("{events:?}"));
        assert_eq!(ea["fields"]["order"], 4);
        assert_eq!(ea["fields"]["gfp_flags"], "GFP_KERNEL");
        assert_eq!(ea["zone"], a.json()["zone"]);
        assert!(ea["ts_ns"].as_u64().unwrap() > 0);
        assert!(events.iter().any(is_alloc_of(pfn(&b))));
        assert!(
            !events.iter().any(is_alloc_of(pfn(&d))),
            "order 2 filtered out"
        );

        let events = sse_until(&mut dma, is_alloc_of(pfn(&d)));
        assert!(events.iter().all(|e| e["zone"] == "DMA"), "{events:?}");
        assert!(events.iter().any(is_alloc_of(pfn(&b))));
        assert!(!events.iter().any(is_alloc_of(pfn(&a))) || a.json()["zone"] == "DMA");
        let events = sse_until(&mut all, is_alloc_of(pfn(&d)));
        for r in [&a, &b, &d] {
            assert_eq!(events.iter().filter(|e| is_alloc_of(pfn(r))(e)).count(), 1);
        }
        let (_, named) = all.sse();
        assert_eq!(named[0].0, "subscribed", "{named:?}");
        assert!(!named.iter().any(|(e, _)| e == "lost"), "{named:?}");
        drop((order4, dma, all));

        // Booted without page_owner=on: no such file, as in Linux.
        let r = c.request("GET", "/sys/kernel/debug/page_owner", None);
        assert_eq!(r.status, 404, "{}", r.text());

        reset_to_boot(&mut c, &boot, "after the streams");
    });
}

/// `/sys/kernel/debug/page_owner`, read to its end.
fn page_owner_text(port: u16) -> String {
    let mut s = StreamReader::open(port, "/sys/kernel/debug/page_owner");
    assert!(s.head().starts_with("HTTP/1.1 200 OK\r\n"), "{}", s.head());
    let end = Instant::now() + Duration::from_secs(30);
    while !s.body().1 {
        assert!(Instant::now() < end, "page_owner did not end");
        s.read_for(Duration::from_millis(50));
    }
    s.body().0
}

#[test]
fn page_owner_names_the_handle_task_order_gfp_and_call_site() {
    let (guest, port) = boot_ready(BootOptions::default().mem("128M").append("page_owner=on"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        // The kernel's own blocks since boot are there (heap, slabs).
        let text = page_owner_text(port);
        assert!(
            text.starts_with("Page allocated via order "),
            "{}",
            &text[..text.len().min(500)]
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("Owner ") && !l.starts_with("Owner api")),
            "the kernel's own blocks"
        );

        let r = post(&mut c, "/api/tasks", &json!({"name":"owner-test"}));
        assert_eq!(r.status, 201, "{}", r.text());
        let pid = r.json()["pid"].as_u64().unwrap();
        let r = alloc(
            &mut c,
            &json!({"type":"pages","order":2,"gfp":"GFP_DMA32","task":pid}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let (id, pfn) = (
            r.json()["id"].as_u64().unwrap(),
            r.json()["pfn"].as_u64().unwrap(),
        );
        let text = page_owner_text(port);
        let block = text
            .split_terminator("\n\n")
            .find(|b| {
                b.lines()
                    .nth(1)
                    .is_some_and(|l| l.starts_with(&format!("PFN {pfn} ")))
            })
            .unwrap_or_else(|| panic!("no block for PFN {pfn}"));
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines.len(), 4, "{block}");
        assert!(
            lines[0].starts_with("Page allocated via order 2, mask 0x")
                && lines[0].contains("GFP_DMA32"),
            "{block}"
        );
        assert!(
            lines[0].contains(&format!(", pid {pid}, tgid {pid} (owner-test), ts ")),
            "{block}"
        );
        assert!(lines[0].ends_with(" ns, free_ts 0 ns"), "{block}");
        assert!(
            lines[1].starts_with(&format!(
                "PFN {pfn} type Unmovable Block {} type ",
                pfn >> 9
            )),
            "{block}"
        );
        assert!(lines[1].ends_with("|node=0|zone=1)"), "DMA32: {block}");
        assert!(
            lines[2].starts_with(" net/src/api/alloc_cmd.rs:"),
            "{block}"
        );
        assert_eq!(lines[3], format!("Owner api, handle {id}"));

        let pm = c.request(
            "GET",
            &format!("/api/pagemap?start_pfn={pfn}&count=4"),
            None,
        );
        assert_eq!(pm.status, 200, "{}", pm.text());
        let run = &pm.json()["runs"][0];
        assert_eq!(run["nr_pages"], 4);
        assert_eq!(run["alloc"]["handle"].as_u64(), Some(id));
        assert_eq!(run["alloc"]["pid"].as_u64(), Some(pid));
        assert_eq!(run["alloc"]["order"], 2);

        let r = c.request("DELETE", &format!("/api/tasks/{pid}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            !page_owner_text(port).contains(&format!("\nPFN {pfn} ")),
            "freed"
        );
        reset_to_boot(&mut c, &boot, "after page_owner");
    });
}

/// `(cpu, µs)` of a trace line: the `[00N]` column and the timestamp.
fn cpu_and_us(l: &str) -> (u32, u64) {
    assert!(l.starts_with("          <idle>-0       ["), "{l}");
    let cpu = l[26..29].parse().unwrap_or_else(|_| panic!("{l}"));
    let (s, us) = l[36..]
        .split(':')
        .next()
        .and_then(|ts| ts.trim().split_once('.'))
        .unwrap_or_else(|| panic!("{l}"));
    (
        cpu,
        s.parse::<u64>().unwrap() * 1_000_000 + us.parse::<u64>().unwrap(),
    )
}

/// Issue 14's last gap: a bench on two CPUs records on both, each into
/// its own ring, and `trace` merges them by timestamp with the real CPU
/// column; the per-CPU files agree with what the bench did on each CPU.
#[test]
fn two_cpus_record_into_their_own_rings_and_trace_merges_them() {
    let (guest, port) = boot_ready(BootOptions::default().mem("128M").smp(2));
    let mut c = Client::connect(port);
    with_guest_log(&guest, || {
        let log = guest.log();
        assert!(
            log.iter().any(|l| l
                .contains("memory: trace rings 2 CPUs x 8192 records x 72 bytes = 1152 KiB at ")),
            "one ring per possible CPU, said at boot"
        );
        assert_eq!(get(&mut c, "buffer_size_kb"), "576\n");
        assert_eq!(get(&mut c, "buffer_total_size_kb"), "1152\n");
        assert!(get(&mut c, "trace").contains("entries-written: 0/0   #P:2\n"));
        assert_eq!(put(&mut c, "events/kmem/mm_page_alloc/enable", "1"), "1\n");

        let n = 2000u64;
        let r = post(
            &mut c,
            "/api/bench",
            &json!({"workload":"pages","cpus":2,"iterations":n}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let ops: Vec<(u64, u64)> = r.json()["per_cpu"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["cpu"].as_u64().unwrap(), p["ops"].as_u64().unwrap()))
            .collect();
        assert_eq!(ops, [(0, n), (1, n)]);

        let lines = trace_lines(&mut c);
        let stamps: Vec<(u32, u64)> = lines.iter().map(|l| cpu_and_us(l)).collect();
        let on = |cpu| stamps.iter().filter(|(c, _)| *c == cpu).count() as u64;
        // CPU 1 ran the bench alone; CPU 0 also serves the requests (its
        // slab pages are traced too). Each ring holds 8192: nothing lost.
        assert_eq!(on(1), n, "every allocation CPU 1 made, on [001]");
        assert!(on(0) >= n, "CPU 0's {} lines", on(0));
        assert_eq!(on(0) + on(1), lines.len() as u64, "no other CPU");
        assert!(
            stamps.windows(2).all(|w| w[0].1 <= w[1].1),
            "merged by timestamp"
        );
        assert!(lines.iter().all(|l| l.contains(": mm_page_alloc: page=")));

        let stats = get(&mut c, "per_cpu/cpu1/stats");
        assert!(
            stats.starts_with(&format!(
                "entries: {n}\noverrun: 0\ncommit overrun: 0\nbytes: {}\n",
                n * 72
            )),
            "{stats}"
        );
        assert!(
            stats.contains("\ndropped events: 0\nread events: 0\n"),
            "{stats}"
        );
        let cpu1: Vec<String> = get(&mut c, "per_cpu/cpu1/trace")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        let want: Vec<&String> = lines.iter().filter(|l| l[26..29] == *"001").collect();
        assert_eq!(cpu1.iter().collect::<Vec<_>>(), want);

        // trace_pipe takes both CPUs' records, in the same order.
        let mut pipe = StreamReader::open(port, &format!("{TRACING}/trace_pipe"));
        let last = lines.last().unwrap().clone();
        let text = pipe.read_until(Duration::from_secs(20), |b| b.contains(&last));
        drop(pipe);
        let piped: Vec<&str> = text.lines().take(lines.len()).collect();
        assert_eq!(piped, lines.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(get(&mut c, "per_cpu/cpu1/stats").contains(&format!("\nread events: {n}\n")));
        assert_eq!(put(&mut c, "events/enable", "0"), "0\n");
    });
}

/// The smallest guest that must boot (5 MiB) with two CPUs: the rings
/// share an eighth of RAM, or one full ring if that is more (so it still
/// boots and traces): under SeaBIOS exactly one full ring, 4,096 records a
/// CPU; under qboot, whose e820 gives the last 132 KiB too, an eighth of
/// RAM is a little more.
#[test]
fn a_5m_guest_with_two_cpus_boots_with_smaller_rings() {
    let machine = BootOptions::default().machine;
    // RAM: [0, 0x9fc00) and [1 MiB, the machine's end of RAM).
    let ram = 0x9fc00 + (machine.ram_end_pfn(5) << 12) - (1 << 20);
    let records = ((ram / 8).max(8192 * 72) / 72 / 2).min(8192);
    assert_eq!(
        records,
        if machine == tests::Machine::Q35Seabios { 4096 } else { 4208 }
    );
    let (guest, port) = boot_ready(BootOptions::default().mem("5M").smp(2));
    let mut c = Client::connect(port);
    with_guest_log(&guest, || {
        let line = format!(
            "memory: trace rings 2 CPUs x {records} records x 72 bytes = {} KiB at ",
            2 * records * 72 / 1024
        );
        assert!(
            guest.log().iter().any(|l| l.contains(&line)),
            "two smaller rings: {line}"
        );
        let kb = (records * 72) >> 10;
        assert_eq!(get(&mut c, "buffer_size_kb"), format!("{kb}\n"));
        assert_eq!(get(&mut c, "buffer_total_size_kb"), format!("{}\n", 2 * kb));
        put(&mut c, "events/kmem/mm_page_alloc/enable", "1");
        // Two CPUs' per-CPU units and trace rings leave this guest at
        // about its min watermark after boot, where GFP_KERNEL may be
        // refused; GFP_ATOMIC may dip below min (ALLOC_HARDER), as on
        // Linux.
        let r = alloc(
            &mut c,
            &json!({"type":"pages","order":0,"gfp":"GFP_ATOMIC"}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let pfn = r.json()["pfn"].as_u64().unwrap();
        let want = format!(" pfn={pfn:#x} order=0 migratetype=0 gfp_flags=GFP_ATOMIC");
        assert!(
            trace_lines(&mut c).iter().any(|l| l.contains(&want)),
            "the allocation's line"
        );
        assert!(get(&mut c, "trace").contains("#P:2\n"));
    });
}
