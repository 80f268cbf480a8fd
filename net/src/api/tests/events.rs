//! Live streams over the network: `trace_pipe` blocking and streaming,
//! `/api/events` (Server-Sent Events) with filters, several subscribers,
//! slow ones losing events, the subscriber limit, keep-alives.

use super::*;

const TRACING: &str = "/sys/kernel/tracing";

/// A streamed answer read so far on one connection.
pub(super) struct Stream {
    conn: SocketHandle,
    raw: Vec<u8>,
}

impl Stream {
    /// The head, if it has arrived.
    pub(super) fn head(&self) -> Option<&str> {
        let end = self.raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        Some(std::str::from_utf8(&self.raw[..end + 4]).unwrap())
    }

    /// The body so far, de-chunked, and whether the last chunk came.
    pub(super) fn body(&self) -> (String, bool) {
        let head = self.head().expect("head").len();
        let mut rest = &self.raw[head..];
        let mut out = Vec::new();
        loop {
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return (String::from_utf8(out).unwrap(), false);
            };
            let len =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
            if len == 0 {
                return (String::from_utf8(out).unwrap(), true);
            }
            let data = &rest[eol + 2..];
            if data.len() < len + 2 {
                return (String::from_utf8(out).unwrap(), false);
            }
            assert_eq!(&data[len..len + 2], b"\r\n", "chunk framing");
            out.extend_from_slice(&data[..len]);
            rest = &data[len + 2..];
        }
    }

    /// The SSE data lines' JSON objects so far, and the other events.
    pub(super) fn sse(&self) -> (Vec<Value>, Vec<(String, Value)>) {
        let (body, _) = self.body();
        let (mut data, mut named) = (Vec::new(), Vec::new());
        for block in body.split("\n\n").filter(|b| !b.is_empty()) {
            let mut event = None;
            let mut payload = None;
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    payload = Some(serde_json::from_str::<Value>(d).unwrap());
                } else {
                    assert!(line.starts_with(':'), "SSE line {line:?}");
                }
            }
            match (event, payload) {
                (None, Some(v)) => data.push(v),
                (Some(e), Some(v)) => named.push((e, v)),
                (Some(e), None) => panic!("event {e} without data"),
                (None, None) => {}
            }
        }
        (data, named)
    }
}

impl T<'_> {
    /// Let `ms` pass, the kernel's clock kept on the network's.
    pub(super) fn tick(&mut self, ms: u64) {
        for _ in 0..ms {
            self.system.uptime_ms.set(self.net.now_ms);
            self.net.step(&mut self.api);
        }
        self.system.uptime_ms.set(self.net.now_ms);
    }

    /// `GET path` on a connection of its own, left open.
    pub(super) fn open_stream(&mut self, path: &str) -> Stream {
        self.system.uptime_ms.set(self.net.now_ms);
        let conn = self.net.connect();
        let req = format!("GET {path} HTTP/1.1\r\nHost: 10.0.2.15\r\n\r\n");
        self.net.send(conn, req.as_bytes(), &mut self.api);
        let mut s = Stream {
            conn,
            raw: Vec::new(),
        };
        self.pump(&mut s, 20);
        s
    }

    /// Step `ms` and collect what arrived on `s`.
    pub(super) fn pump(&mut self, s: &mut Stream, ms: u64) {
        self.tick(ms);
        let more = self.net.take_received(s.conn);
        s.raw.extend_from_slice(&more);
    }

    /// Close the client side and let the server notice.
    pub(super) fn close_stream(&mut self, s: Stream) {
        self.net.socket(s.conn).close();
        self.tick(20);
    }

    pub(super) fn enable_event(&mut self, path: &str) {
        let r = self.request("PUT", &format!("{TRACING}/{path}"), Some("1"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[test]
fn trace_pipe_blocks_then_streams_lines_as_they_are_recorded() {
    run(DEFAULT, |t| {
        t.enable_event("events/kmem/mm_page_alloc/enable");
        let mut pipe = t.open_stream(&format!("{TRACING}/trace_pipe"));
        let head = pipe.head().expect("the head comes at once").to_string();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        assert!(!head.contains("Content-Length"), "{head}");
        // Empty ring: it waits (well past the idle timeout), sending nothing.
        t.pump(&mut pipe, 12_000);
        assert_eq!(pipe.body(), (String::new(), false));
        // (The keep-alive client idled out meanwhile: a new one.)
        t.client = None;
        // Another connection allocates; the waiting reader gets the line.
        let h = t.alloc_ok(json!({"type":"pages","order":2}));
        let pfn = h["pfn"].as_u64().unwrap();
        t.pump(&mut pipe, 150);
        let (body, ended) = pipe.body();
        assert!(!ended);
        let want = format!(" pfn={pfn:#x} order=2 migratetype=0 gfp_flags=GFP_KERNEL\n");
        assert!(body.ends_with(&want), "{body:?}");
        assert_eq!(body.lines().count(), 1, "{body}");
        // Consumed: `trace` has it no more.
        let trace = t.get(&format!("{TRACING}/trace")).text().to_string();
        assert!(!trace.contains(&want), "{trace}");
        // More come on the same stream, in order.
        let h2 = t.alloc_ok(json!({"type":"pages","order":0}));
        let pfn2 = h2["pfn"].as_u64().unwrap();
        t.pump(&mut pipe, 150);
        let (body, _) = pipe.body();
        assert_eq!(body.lines().count(), 2, "{body}");
        assert!(body.ends_with(&format!(
            " pfn={pfn2:#x} order=0 migratetype=0 gfp_flags=GFP_KERNEL\n"
        )));
        t.close_stream(pipe);
        // The server is fine and counted the stream once.
        assert_eq!(t.get("/api/health").status, 200);
        assert_eq!(t.request("POST", "/api/reset", None).status, 200);
    });
}

#[test]
fn events_stream_json_with_filters_for_several_subscribers() {
    run(DEFAULT, |t| {
        t.enable_event("events/kmem/enable");
        let mut all = t.open_stream("/api/events");
        let mut dma32 = t.open_stream("/api/events?event=kmem:mm_page_alloc&zone=DMA32&order=2..3");
        let mut frees = t.open_stream("/api/events?filter=kmem%3Amm_page_free");
        let head = all.head().unwrap().to_string();
        assert!(
            head.contains("Content-Type: text/event-stream\r\n"),
            "{head}"
        );
        assert!(head.contains("Cache-Control: no-cache\r\n"), "{head}");
        assert_eq!(t.api.nr_event_subscribers(), 3);
        let (_, named) = dma32.sse();
        assert_eq!(
            named,
            [(
                "subscribed".to_string(),
                json!({"subscriber":1,"filter":{"event":["kmem:mm_page_alloc"],"zone":["DMA32"],"order":[2,3]},"disabled":[]})
            )]
        );

        let a = t.alloc_ok(json!({"type":"pages","order":3,"gfp":"GFP_DMA32"}));
        let b = t.alloc_ok(json!({"type":"pages","order":1,"gfp":"GFP_DMA32"}));
        let c = t.alloc_ok(json!({"type":"pages","order":2,"gfp":"GFP_DMA"}));
        let id = a["id"].as_u64().unwrap();
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
        for s in [&mut all, &mut dma32, &mut frees] {
            t.pump(s, 150);
        }
        let pfn = |h: &Value| h["pfn"].as_u64().unwrap();
        let (events, _) = dma32.sse();
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert_eq!(e["event"], "kmem:mm_page_alloc");
        assert_eq!(
            (e["zone"].as_str(), e["order"].as_u64()),
            (Some("DMA32"), Some(3))
        );
        assert_eq!(e["cpu"], 0);
        assert!(e["ts_ns"].is_u64() && e["seq"].is_u64());
        let f = &e["fields"];
        assert_eq!(
            (
                f["pfn"].as_u64(),
                f["order"].as_u64(),
                f["migratetype"].as_u64(),
                f["gfp_flags"].as_str()
            ),
            (Some(pfn(&a)), Some(3), Some(0), Some("GFP_DMA32"))
        );
        assert!(f["page"].as_str().unwrap().starts_with("0x"));

        let (events, _) = frees.sse();
        assert!(
            events.iter().all(|e| e["event"] == "kmem:mm_page_free"),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e["fields"]["pfn"].as_u64() == Some(pfn(&a)) && e["fields"]["order"] == 3),
            "{events:?}"
        );

        // The unfiltered one sees all three allocations (and the slab's
        // events), each once, in ring order.
        let (events, _) = all.sse();
        let allocs: Vec<u64> = events
            .iter()
            .filter(|e| e["event"] == "kmem:mm_page_alloc")
            .map(|e| e["fields"]["pfn"].as_u64().unwrap())
            .collect();
        for h in [&a, &b, &c] {
            assert_eq!(
                allocs.iter().filter(|&&p| p == pfn(h)).count(),
                1,
                "{allocs:?}"
            );
        }
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let zone_of_c = events
            .iter()
            .find(|e| e["fields"]["pfn"].as_u64() == Some(pfn(&c)))
            .unwrap();
        assert_eq!(zone_of_c["zone"], "DMA");

        // A subscriber that leaves frees its slot.
        t.close_stream(all);
        assert_eq!(t.api.nr_event_subscribers(), 2);
        t.close_stream(dma32);
        t.close_stream(frees);
        assert_eq!(t.api.nr_event_subscribers(), 0);
        assert_eq!(t.request("POST", "/api/reset", None).status, 200);
    });
}

#[test]
fn events_bad_filters_are_400_and_the_subscriber_limit_503() {
    run(DEFAULT, |t| {
        for q in [
            "event=kmem:nope",
            "event=nosystem",
            "event=",
            "zone=dma",
            "zone=DMA32,",
            "order=11",
            "order=3..2",
            "order=a",
            "order=",
            "order=1..2..3",
            "order=-1",
            "bogus=1",
            "zone=DMA&zone=DMA32",
            "event=kmem%3",
            "event=%ff",
        ] {
            let r = t.get(&format!("/api/events?{q}"));
            assert_eq!(error(&r), (400, "EINVAL".to_string()), "{q}: {}", r.text());
        }
        assert_eq!(t.api.nr_event_subscribers(), 0, "no slot taken by a 400");
        let mut open = Vec::new();
        for _ in 0..crate::api::events::MAX_SUBSCRIBERS {
            let s = t.open_stream("/api/events?order=..10");
            assert!(s.head().unwrap().starts_with("HTTP/1.1 200"));
            open.push(s);
        }
        let r = t.get("/api/events");
        assert_eq!(error(&r), (503, "EBUSY".to_string()), "{}", r.text());
        // One leaves: one more may come.
        let s = open.pop().unwrap();
        t.close_stream(s);
        let s = t.open_stream("/api/events");
        assert!(s.head().unwrap().starts_with("HTTP/1.1 200"));
        open.push(s);
        for s in open {
            t.close_stream(s);
        }
        assert_eq!(t.api.nr_event_subscribers(), 0);
    });
}

#[test]
fn a_slow_subscriber_is_told_what_it_lost_and_idle_ones_get_keepalives() {
    run(DEFAULT, |t| {
        t.enable_event("events/kmem/mm_page_alloc/enable");
        t.enable_event("events/kmem/mm_page_free/enable");
        let mut s = t.open_stream("/api/events?event=kmem");
        // More than the ring holds, in one request: the subscriber is not
        // asked in between, so the oldest are overwritten before it reads.
        let n = TRACE_RING_ENTRIES as u64;
        let r = t.request(
            "POST",
            "/api/bench",
            Some(&json!({"workload":"pages","iterations":n}).to_string()),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        for _ in 0..40 {
            t.pump(&mut s, 100);
        }
        let (events, named) = s.sse();
        let lost: Vec<u64> = named
            .iter()
            .filter(|(e, _)| e == "lost")
            .map(|(_, v)| v["lost"].as_u64().unwrap())
            .collect();
        assert_eq!(lost.len(), 1, "told once: {named:?}");
        // Everything recorded is either delivered or counted lost.
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs.len() as u64,
            TRACE_RING_ENTRIES as u64,
            "the ring's worth"
        );
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "no gap after the loss"
        );
        assert_eq!(lost[0] + seqs.len() as u64, 2 * n, "{} lost", lost[0]);
        // Idle: a keep-alive comment every 15 s, nothing else.
        let before = s.body().0.len();
        t.pump(&mut s, crate::api::events::KEEPALIVE_MS + 200);
        let (body, _) = s.body();
        assert_eq!(&body[before..], ": keep-alive\n\n");
        t.close_stream(s);
    });
}

/// Reads `/sys/kernel/debug/page_owner` to its end.
fn page_owner_text(t: &mut T<'_>) -> String {
    let mut s = t.open_stream("/sys/kernel/debug/page_owner");
    assert!(
        s.head().unwrap().starts_with("HTTP/1.1 200 OK\r\n"),
        "{:?}",
        s.head()
    );
    for _ in 0..100 {
        if s.body().1 {
            break;
        }
        t.pump(&mut s, 10);
    }
    let (text, ended) = s.body();
    assert!(ended, "the view ends");
    t.close_stream(s);
    text
}

#[test]
fn page_owner_is_404_when_off_and_says_who_allocated_each_block() {
    run(DEFAULT, |t| {
        let r = t.get("/sys/kernel/debug/page_owner");
        assert_eq!(error(&r), (404, "ENOENT".to_string()), "{}", r.text());
        let max_pfn = t.mm.lock().layout().max_pfn.index();
        let records =
            Box::leak(vec![mm::page_owner::PageOwnerRecord::EMPTY; max_pfn].into_boxed_slice());
        t.mm.page_owner().attach(records);
        assert_eq!(page_owner_text(t), "", "nothing allocated since it was on");

        let task = t.request("POST", "/api/tasks", Some(r#"{"name":"worker"}"#));
        assert_eq!(task.status, 201, "{}", task.text());
        let pid = serde_json::from_slice::<Value>(&task.body).unwrap()["pid"]
            .as_u64()
            .unwrap();
        let h = t.alloc_ok(json!({"type":"pages","order":3,"gfp":"GFP_DMA32","task":pid}));
        let (id, pfn) = (h["id"].as_u64().unwrap(), h["pfn"].as_u64().unwrap());
        let k = t.alloc_ok(json!({"type":"pages","order":0,"gfp":"GFP_ATOMIC"}));
        // Many blocks: the view takes several rounds.
        let mut many = Vec::new();
        for _ in 0..200 {
            many.push(
                t.alloc_ok(json!({"type":"pages","order":0}))["id"]
                    .as_u64()
                    .unwrap(),
            );
        }
        let text = page_owner_text(t);
        let blocks: Vec<&str> = text.split_terminator("\n\n").collect();
        assert!(blocks.len() >= 202, "{} blocks", blocks.len());
        let block = blocks
            .iter()
            .find(|b| {
                b.lines()
                    .nth(1)
                    .is_some_and(|l| l.starts_with(&format!("PFN {pfn} ")))
            })
            .unwrap_or_else(|| panic!("no block for pfn {pfn}:\n{text}"));
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines.len(), 4, "{block}");
        let (head, ts) = lines[0].split_once(", ts ").unwrap();
        let g = mm::gfp::GfpFlags::parse("GFP_DMA32").unwrap();
        assert_eq!(
            head,
            format!(
                "Page allocated via order 3, mask {:#x}({}), pid {pid}, tgid {pid} (worker)",
                g.bits(),
                mm::trace::ShowGfpFlags(g)
            )
        );
        assert!(ts.ends_with(" ns, free_ts 0 ns"), "{ts}");
        assert_eq!(
            lines[1],
            format!(
                "PFN {pfn} type Unmovable Block {} type Unmovable Flags {}",
                pfn >> 9,
                lines[1].rsplit_once(' ').unwrap().1
            )
        );
        assert!(
            lines[1].ends_with("|node=0|zone=1)"),
            "DMA32 is zone 1: {}",
            lines[1]
        );
        assert!(
            lines[2].starts_with(" net/src/api/alloc_cmd.rs:"),
            "the caller of alloc_pages: {}",
            lines[2]
        );
        assert_eq!(lines[3], format!("Owner api, handle {id}"));
        let kpfn = k["pfn"].as_u64().unwrap();
        let kb = blocks
            .iter()
            .find(|b| b.contains(&format!("\nPFN {kpfn} ")))
            .unwrap();
        let atomic = mm::gfp::GfpFlags::GFP_ATOMIC;
        let want = format!(
            "Page allocated via order 0, mask {:#x}(GFP_ATOMIC), pid 0, tgid 0 (swapper/0), ts ",
            atomic.bits()
        );
        assert!(kb.starts_with(&want), "{kb}");

        // Freed: gone from the view.
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
        let text = page_owner_text(t);
        assert!(!text.contains(&format!("\nPFN {pfn} ")));
        assert_eq!(t.request("POST", "/api/reset", None).status, 200);
    });
}

#[test]
fn page_owner_records_follow_pages_that_compaction_moves() {
    run(
        Opts {
            quota_pct: 100,
            ..DEFAULT
        },
        |t| {
            let max_pfn = t.mm.lock().layout().max_pfn.index();
            let records =
                Box::leak(vec![mm::page_owner::PageOwnerRecord::EMPTY; max_pfn].into_boxed_slice());
            t.mm.page_owner().attach(records);
            // HighMem filled with movable pages, every other one freed.
            let mut pages: Vec<(u64, u64)> = Vec::new();
            loop {
                let h = t.alloc_ok(
                    json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER_MOVABLE","oom":false}),
                );
                let id = h["id"].as_u64().unwrap();
                if h["zone"] != "HighMem" {
                    t.request("DELETE", &format!("/api/alloc/{id}"), None);
                    break;
                }
                pages.push((id, h["pfn"].as_u64().unwrap()));
            }
            pages.sort_by_key(|&(_, pfn)| pfn);
            let mut kept = Vec::new();
            for (i, &(id, pfn)) in pages.iter().enumerate() {
                if i % 2 == 1 {
                    t.request("DELETE", &format!("/api/alloc/{id}"), None);
                } else {
                    kept.push((id, pfn));
                }
            }
            let r = t.request("POST", "/api/compact", Some(r#"{"zone":"HighMem"}"#));
            assert_eq!(r.status, 200, "{}", r.text());
            let mut moved = 0;
            for &(id, old) in &kept {
                let now = t.json(&format!("/api/alloc/{id}"))["pfn"].as_u64().unwrap();
                let rec =
                    t.mm.page_owner()
                        .get(Pfn(now))
                        .expect("a record where it is");
                assert_eq!(rec.handle, id, "pfn {now}");
                if now != old {
                    moved += 1;
                    assert!(
                        t.mm.page_owner()
                            .get(Pfn(old))
                            .is_none_or(|r| r.handle != id),
                        "the old frame's record moved away"
                    );
                }
            }
            assert!(moved > 0, "compaction moved pages");
            assert_eq!(t.request("POST", "/api/reset", None).status, 200);
        },
    );
}
