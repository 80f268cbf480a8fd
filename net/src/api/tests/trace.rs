//! tracefs over HTTP: enable files, `trace` and `trace_pipe`, clearing,
//! reset, the ring overflowing, errors.

use super::*;

const TRACING: &str = "/sys/kernel/tracing";

impl T<'_> {
    fn put_text(&mut self, path: &str, body: &str) -> HttpResponse {
        self.request("PUT", &format!("{TRACING}/{path}"), Some(body))
    }

    fn enable(&mut self, path: &str, on: bool) {
        let r = self.put_text(path, if on { "1\n" } else { "0\n" });
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }

    fn trace(&mut self) -> String {
        let r = self.get(&format!("{TRACING}/trace"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        r.text().to_string()
    }

    fn trace_lines(&mut self) -> Vec<String> {
        self.trace()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }
}

/// The fields after the timestamp: `event: fields`.
fn event_part(line: &str) -> &str {
    let (_, rest) = line.split_once(": ").unwrap();
    rest
}

#[test]
fn available_events_and_enable_files() {
    run(DEFAULT, |t| {
        let ev = t.get(&format!("{TRACING}/available_events"));
        assert_eq!(ev.status, 200);
        let lines: Vec<&str> = ev.text().lines().collect();
        for want in [
            "kmem:mm_page_alloc",
            "kmem:mm_page_free",
            "kmem:kmalloc",
            "kmem:kfree",
            "kmem:kmem_cache_alloc",
            "kmem:kmem_cache_free",
            "vmscan:mm_vmscan_kswapd_wake",
            "vmscan:mm_vmscan_kswapd_sleep",
            "vmscan:mm_vmscan_direct_reclaim_begin",
            "vmscan:mm_vmscan_direct_reclaim_end",
            "oom:mark_victim",
        ] {
            assert!(lines.contains(&want), "{want} in {lines:?}");
        }

        let get = |t: &mut T<'_>, p: &str| t.get(&format!("{TRACING}/{p}")).text().to_string();
        assert_eq!(get(t, "events/kmem/mm_page_alloc/enable"), "0\n");
        assert_eq!(get(t, "events/kmem/enable"), "0\n");
        let r = t.put_text("events/kmem/mm_page_alloc/enable", "1");
        assert_eq!((r.status, r.text()), (200, "1\n"));
        assert_eq!(get(t, "events/kmem/enable"), "X\n");
        assert_eq!(get(t, "events/enable"), "X\n");
        t.enable("events/kmem/enable", true);
        assert_eq!(get(t, "events/kmem/kfree/enable"), "1\n");
        assert_eq!(get(t, "events/vmscan/enable"), "0\n");
        t.enable("events/enable", true);
        assert_eq!(get(t, "events/oom/mark_victim/enable"), "1\n");
        t.enable("events/enable", false);
        assert_eq!(get(t, "events/enable"), "0\n");

        // Errors in API.md's format.
        for body in ["2", "", "yes", "1 1", "\u{ff}"] {
            let r = t.put_text("events/kmem/kmalloc/enable", body);
            assert_eq!(r.status, 400, "{body:?}");
            let e: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(e["error"]["code"], "EINVAL");
        }
        for path in [
            "events/kmem/nope/enable",
            "events/sched/enable",
            "events/sched/sched_switch/enable",
            "events/oom/mm_page_alloc/enable",
        ] {
            assert_eq!(t.put_text(path, "1").status, 404, "{path}");
            let r = t.get(&format!("{TRACING}/{path}"));
            assert_eq!(r.status, 404, "{path}");
            let e: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(e["error"]["code"], "ENOENT");
        }
        assert_eq!(
            t.request("DELETE", &format!("{TRACING}/trace"), None)
                .status,
            405
        );
        assert_eq!(t.get(&format!("{TRACING}/events/enable")).text(), "0\n");
    });
}

#[test]
fn page_alloc_line_is_linux_and_disable_reset_stop_it() {
    run(DEFAULT, |t| {
        // Disabled: nothing recorded.
        t.alloc_ok(json!({"type":"pages","order":1}));
        let text = t.trace();
        assert!(
            text.starts_with(
                "# tracer: nop\n#\n# entries-in-buffer/entries-written: 0/0   #P:1\n#\n"
            )
        );
        assert!(text.ends_with("#              | |         |   |||||     |         |\n"));

        t.enable("events/kmem/mm_page_alloc/enable", true);
        let h = t.alloc_ok(json!({"type":"pages","order":3,"gfp":"GFP_KERNEL"}));
        let pfn = h["pfn"].as_u64().unwrap();
        let lines = t.trace_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0];
        assert!(
            l.starts_with("          <idle>-0       [000] ..... "),
            "{l}"
        );
        let page = t.mm.tracer().page_base() + pfn * core::mem::size_of::<Page>() as u64;
        assert_eq!(
            event_part(l),
            format!(
                "mm_page_alloc: page={page:016x} pfn={pfn:#x} order=3 migratetype=0 gfp_flags=GFP_KERNEL"
            )
        );
        // The timestamp: %5lu.%06lu.
        let ts = l[36..].split(':').next().unwrap().trim();
        let (s, us) = ts.split_once('.').unwrap();
        assert!(s.parse::<u64>().is_ok() && us.len() == 6, "{ts}");
        assert!(
            t.trace()
                .contains("# entries-in-buffer/entries-written: 1/1   #P:1\n")
        );

        // Free events are another tracepoint, off.
        let id = h["id"].as_u64().unwrap();
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
        assert_eq!(t.trace_lines().len(), 1);

        // Disabled again: no new lines.
        t.enable("events/kmem/mm_page_alloc/enable", false);
        t.alloc_ok(json!({"type":"pages","order":0}));
        assert_eq!(t.trace_lines().len(), 1);

        // `echo > trace` clears, the enable state stays.
        t.enable("events/kmem/enable", true);
        t.alloc_ok(json!({"type":"pages","order":0}));
        assert_eq!(t.put_text("trace", "").status, 200);
        assert!(t.trace_lines().is_empty());
        assert_eq!(
            t.get(&format!("{TRACING}/events/kmem/enable")).text(),
            "1\n"
        );

        // Reset: ring empty, every event off (and its frees unrecorded).
        t.alloc_ok(json!({"type":"pages","order":0}));
        assert_eq!(t.request("POST", "/api/reset", None).status, 200);
        assert!(t.trace_lines().is_empty());
        assert_eq!(t.get(&format!("{TRACING}/events/enable")).text(), "0\n");
        t.alloc_ok(json!({"type":"pages","order":0}));
        assert!(t.trace_lines().is_empty());
        assert_eq!(t.request("POST", "/api/reset", None).status, 200);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn trace_pipe_consumes_and_kmalloc_fields_are_linux() {
    run(DEFAULT, |t| {
        t.enable("events/kmem/kmalloc/enable", true);
        t.enable("events/kmem/kfree/enable", true);
        let h = t.alloc_ok(json!({"type":"kmalloc","size":40}));
        let virt = hex(&h["virt"]);
        let id = h["id"].as_u64().unwrap();
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
        let mut stream = t.open_stream(&format!("{TRACING}/trace_pipe"));
        assert!(stream.head().unwrap().starts_with("HTTP/1.1 200 OK\r\n"));
        let (text, _) = stream.body();
        let lines: Vec<&str> = text.lines().collect();
        assert!(!text.starts_with('#'), "trace_pipe has no header");
        assert!(
            lines.iter().any(|l| event_part(l)
                == format!("kmalloc: call_site=0x0 ptr={virt:016x} bytes_req=40 bytes_alloc=64 gfp_flags=GFP_KERNEL_ACCOUNT node=-1 accounted=true")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| event_part(l) == format!("kfree: call_site=0x0 ptr={virt:016x}")),
            "{lines:?}"
        );
        // Consumed: nothing more comes, and `trace` has nothing.
        t.pump(&mut stream, 300);
        assert_eq!(stream.body().0, text);
        t.close_stream(stream);
        let mut again = t.open_stream(&format!("{TRACING}/trace_pipe"));
        t.pump(&mut again, 300);
        assert_eq!(again.body(), (String::new(), false));
        t.close_stream(again);
        assert!(t.trace_lines().is_empty());
    });
}

#[test]
fn a_full_ring_keeps_the_newest_and_says_what_it_lost() {
    run(DEFAULT, |t| {
        t.enable("events/kmem/mm_page_alloc/enable", true);
        t.enable("events/kmem/mm_page_free/enable", true);
        let n = TRACE_RING_ENTRIES as u64; // 2n events: alloc + free each
        let r = t.request(
            "POST",
            "/api/bench",
            Some(&json!({"workload":"pages","iterations":n}).to_string()),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let text = t.trace();
        let want = format!(
            "# entries-in-buffer/entries-written: {n}/{}   #P:1\n",
            2 * n
        );
        assert!(text.contains(&want), "{}", &text[..200]);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len() as u64, n);
        assert!(event_part(lines.last().unwrap()).starts_with("mm_page_free: "));
        // Timestamps never go backwards.
        let ts = |l: &str| l[36..].split(':').next().unwrap().trim().to_string();
        let stamps: Vec<f64> = lines.iter().map(|l| ts(l).parse().unwrap()).collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
        // trace_pipe reports the overrun once, then the records.
        let mut stream = t.open_stream(&format!("{TRACING}/trace_pipe"));
        t.pump(&mut stream, 300);
        let pipe = stream.body().0;
        t.close_stream(stream);
        assert!(
            pipe.starts_with(&format!("CPU:0 [LOST {n} EVENTS]\n")),
            "{}",
            &pipe[..80]
        );
        assert_eq!(pipe.lines().count() as u64, n + 1);
        assert_eq!(t.request("POST", "/api/reset", None).status, 200);
    });
}

/// `"cpus":2` bench with `kmem:mm_page_alloc` on, host threads standing
/// for the CPUs; answers the bench's `per_cpu[].ops`.
fn bench_on_two_cpus(t: &mut T<'_>, n: u64) -> Vec<u64> {
    t.system.online_cpus.set(2);
    t.mm.set_nr_cpus(2);
    let body = json!({"workload":"pages","iterations":n,"cpus":2}).to_string();
    let r = t.request("POST", "/api/bench", Some(&body));
    assert_eq!(r.status, 200, "{}", r.text());
    let j: Value = serde_json::from_slice(&r.body).unwrap();
    j["per_cpu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ops"].as_u64().unwrap())
        .collect()
}

/// `[00N]` of a trace line.
fn cpu_column(l: &str) -> &str {
    &l[25..30]
}

/// A trace line's timestamp in µs.
fn line_us(l: &str) -> u64 {
    let (s, us) = l[36..]
        .split(':')
        .next()
        .unwrap()
        .trim()
        .split_once('.')
        .unwrap();
    s.parse::<u64>().unwrap() * 1_000_000 + us.parse::<u64>().unwrap()
}

#[test]
fn two_cpus_merge_in_trace_trace_pipe_events_and_per_cpu_files() {
    run(DEFAULT, |t| {
        t.enable("events/kmem/mm_page_alloc/enable", true);
        let mut sse = t.open_stream("/api/events?event=kmem:mm_page_alloc");
        let n = 300;
        assert_eq!(bench_on_two_cpus(t, n), [n, n]);
        let text = t.trace();
        assert!(
            text.contains(&format!(
                "# entries-in-buffer/entries-written: {0}/{0}   #P:2\n",
                2 * n
            )),
            "{}",
            &text[..200]
        );
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let on = |cpu: &str| lines.iter().filter(|l| cpu_column(l) == cpu).count() as u64;
        assert_eq!(
            (on("[000]"), on("[001]")),
            (n, n),
            "each CPU's allocations, on its column"
        );
        assert!(lines.iter().all(|l| l.contains("mm_page_alloc: ")));
        assert!(
            lines.windows(2).all(|w| line_us(w[0]) <= line_us(w[1])),
            "merged by timestamp"
        );
        // The per-CPU files: one CPU's lines, its counters, the sizes.
        let per_cpu = t.get(&format!("{TRACING}/per_cpu/cpu1/trace"));
        assert_eq!(per_cpu.status, 200);
        let cpu1: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| cpu_column(l) == "[001]")
            .collect();
        let text1 = per_cpu.text();
        assert!(
            text1.contains("entries-written: 600/600   #P:2\n"),
            "the header counts every CPU"
        );
        assert_eq!(
            text1
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            cpu1
        );
        let stats = t
            .get(&format!("{TRACING}/per_cpu/cpu1/stats"))
            .text()
            .to_string();
        let bytes = n * mm::trace::TRACE_RECORD_BYTES;
        assert!(
            stats.starts_with(&format!(
                "entries: {n}\noverrun: 0\ncommit overrun: 0\nbytes: {bytes}\noldest event ts: "
            )),
            "{stats}"
        );
        assert!(
            stats.ends_with("dropped events: 0\nread events: 0\n"),
            "{stats}"
        );
        let kb = (TRACE_RING_ENTRIES as u64 * mm::trace::TRACE_RECORD_BYTES) >> 10;
        assert_eq!(
            t.get(&format!("{TRACING}/buffer_size_kb")).text(),
            format!("{kb}\n")
        );
        assert_eq!(
            t.get(&format!("{TRACING}/per_cpu/cpu3/buffer_size_kb"))
                .text(),
            format!("{kb}\n")
        );
        assert_eq!(
            t.get(&format!("{TRACING}/buffer_total_size_kb")).text(),
            format!("{}\n", kb * TRACE_CPUS as u64)
        );
        for bad in [
            "cpu4/trace",
            "cpu/trace",
            "cpu01x/stats",
            "1/trace",
            "cpu0/bogus",
        ] {
            assert_eq!(
                t.get(&format!("{TRACING}/per_cpu/{bad}")).status,
                404,
                "{bad}"
            );
        }
        // /api/events: every record once, merged, numbered per CPU.
        t.pump(&mut sse, 300);
        let (events, named) = sse.sse();
        assert!(named.iter().all(|(e, _)| e == "subscribed"), "{named:?}");
        assert_eq!(events.len() as u64, 2 * n);
        let ts: Vec<u64> = events
            .iter()
            .map(|e| e["ts_ns"].as_u64().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
        for cpu in [0, 1] {
            let seqs: Vec<u64> = events
                .iter()
                .filter(|e| e["cpu"] == cpu)
                .map(|e| e["seq"].as_u64().unwrap())
                .collect();
            assert_eq!(seqs.len() as u64, n);
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "CPU {cpu}: {seqs:?}"
            );
        }
        t.close_stream(sse);
        // trace_pipe: the same lines, consumed.
        let mut pipe = t.open_stream(&format!("{TRACING}/trace_pipe"));
        t.pump(&mut pipe, 300);
        let piped = pipe.body().0;
        t.close_stream(pipe);
        assert_eq!(piped.lines().collect::<Vec<_>>(), lines);
        assert!(t.trace_lines().is_empty());
        let stats = t
            .get(&format!("{TRACING}/per_cpu/cpu1/stats"))
            .text()
            .to_string();
        assert!(
            stats.starts_with("entries: 0\n") && stats.ends_with(&format!("read events: {n}\n")),
            "{stats}"
        );
        mm::platform::sim::set_current_cpu(0);
    });
}

#[test]
fn full_rings_lose_per_cpu_and_say_so_exactly() {
    run(DEFAULT, |t| {
        t.enable("events/kmem/mm_page_alloc/enable", true);
        let mut sse = t.open_stream("/api/events?event=kmem:mm_page_alloc");
        let n = TRACE_RING_ENTRIES as u64 + 100;
        assert_eq!(bench_on_two_cpus(t, n), [n, n]);
        let text = t.trace();
        let m = TRACE_RING_ENTRIES as u64;
        assert!(
            text.contains(&format!("entries-written: {}/{}   #P:2\n", 2 * m, 2 * n)),
            "{}",
            &text[..200]
        );
        for cpu in 0..2 {
            let s = t
                .get(&format!("{TRACING}/per_cpu/cpu{cpu}/stats"))
                .text()
                .to_string();
            assert!(
                s.starts_with(&format!("entries: {m}\noverrun: 100\n")),
                "{s}"
            );
        }
        let mut pipe = t.open_stream(&format!("{TRACING}/trace_pipe"));
        t.pump(&mut pipe, 300);
        let piped = pipe.body().0;
        t.close_stream(pipe);
        assert!(
            piped.starts_with("CPU:0 [LOST 100 EVENTS]\nCPU:1 [LOST 100 EVENTS]\n"),
            "{}",
            &piped[..80]
        );
        assert_eq!(piped.lines().count() as u64, 2 * m + 2);
        // The subscriber is told the total once, then gets what is left.
        t.pump(&mut sse, 300);
        let (events, named) = sse.sse();
        let lost: Vec<u64> = named
            .iter()
            .filter(|(e, _)| e == "lost")
            .map(|(_, v)| v["lost"].as_u64().unwrap())
            .collect();
        assert_eq!(lost, [200]);
        assert_eq!(events.len() as u64, 2 * m);
        t.close_stream(sse);
        mm::platform::sim::set_current_cpu(0);
    });
}
