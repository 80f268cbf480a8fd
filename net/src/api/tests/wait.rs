//! Sleeping allocations (`"wait_ms"`, `mempool_alloc`): parked on one
//! connection, woken by what another one frees.

use super::*;

const FULL: Opts = Opts {
    quota_pct: 100,
    ..DEFAULT
};

impl T<'_> {
    /// Let `ms` pass, one millisecond per step, the kernel's clock (the
    /// API's) kept on the network's.
    fn sleep_ms(&mut self, ms: u64) {
        for _ in 0..ms {
            self.system.uptime_ms.set(self.net.now_ms);
            self.net.step(&mut self.api);
        }
        self.system.uptime_ms.set(self.net.now_ms);
    }

    /// Send `POST /api/alloc` with `body` on a connection of its own and
    /// step until the server has seen it; the answer is read with
    /// [`T::answer`].
    fn alloc_async(&mut self, body: Value) -> SocketHandle {
        self.system.uptime_ms.set(self.net.now_ms);
        let body = body.to_string();
        let req = format!(
            "POST /api/alloc HTTP/1.1\r\nHost: 10.0.2.15\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let c = self.net.connect();
        self.net.send(c, req.as_bytes(), &mut self.api);
        self.sleep_ms(20);
        c
    }

    /// The answer on `c` within `ms`, the clocks kept together.
    fn answer(&mut self, c: SocketHandle, ms: u64) -> Option<HttpResponse> {
        for _ in 0..ms {
            if let Some(r) = self.net.response(c, false, 0, &mut self.api) {
                return Some(r);
            }
            self.sleep_ms(1);
        }
        self.net.response(c, false, 0, &mut self.api)
    }

    /// A `/metrics` sample, e.g. `pagezone_wait_queue_waiters{queue="pages"}`.
    fn metric(&mut self, series: &str) -> u64 {
        let text = self.get("/metrics").text().to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    }

    fn waiters(&mut self, queue: &str) -> u64 {
        self.metric(&format!("pagezone_wait_queue_waiters{{queue=\"{queue}\"}}"))
    }

    /// Allocate pages, largest blocks first, until memory is gone, even
    /// for `GFP_ATOMIC` (never killing a task); the handle ids, largest
    /// first.
    fn exhaust(&mut self) -> Vec<u64> {
        let mut ids = Vec::new();
        for (gfp, order) in ["GFP_KERNEL", "GFP_ATOMIC"]
            .into_iter()
            .flat_map(|gfp| (0..=10).rev().map(move |o| (gfp, o)))
        {
            loop {
                let r = self.alloc(json!({"type":"pages","order":order,"gfp":gfp,"oom":false}));
                if r.status != 201 {
                    assert_eq!(error(&r).0, 507, "{}", r.text());
                    break;
                }
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                ids.push(v["id"].as_u64().unwrap());
            }
        }
        assert!(!ids.is_empty());
        ids
    }
}

#[test]
fn sleeping_alloc_is_woken_by_a_free_on_another_connection() {
    run(FULL, |t| {
        let ids = t.exhaust();
        let refused = t.alloc(json!({"type":"pages","order":0}));
        assert_eq!(error(&refused), (507, "ENOMEM".into()));
        let c = t.alloc_async(json!({"type":"pages","order":0,"wait_ms":10_000}));
        assert!(t.answer(c, 200).is_none(), "asleep");
        assert_eq!(t.waiters("pages"), 1);
        // Everything else is served meanwhile.
        assert_eq!(t.get("/api/health").status, 200);
        let freed_at = t.net.now_ms;
        let r = t.request("DELETE", &format!("/api/alloc/{}", ids[0]), None);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = t.answer(c, 1000).expect("woken");
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(t.net.now_ms - freed_at < 20, "woken at once");
        assert_eq!(t.waiters("pages"), 0);
        assert_eq!(
            t.metric("pagezone_wait_queue_wakeups_total{queue=\"pages\"}"),
            1
        );
        // Counted once, as the 201 it became.
        let m = t.get("/metrics").text().to_string();
        assert!(
            m.contains("pagezone_http_requests_total{route=\"/api/alloc\",status=\"201\"}"),
            "{m}"
        );
        assert_eq!(t.api.nr_waiters(), 0);
        t.request("POST", "/api/reset", None);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn sleeping_alloc_times_out_with_507_after_wait_ms() {
    run(FULL, |t| {
        let ids = t.exhaust();
        let start = t.net.now_ms;
        let c = t.alloc_async(json!({"type":"pages","order":2,"wait_ms":300}));
        assert!(t.answer(c, 250).is_none(), "still asleep");
        let r = t.answer(c, 200).expect("timed out");
        let waited = t.net.now_ms - start;
        assert!((300..330).contains(&waited), "{waited} ms");
        assert_eq!(error(&r), (507, "ENOMEM".into()));
        assert!(
            r.text().contains("still failing after sleeping 3") && r.text().contains("wait_ms 300"),
            "{}",
            r.text()
        );
        assert_eq!(t.waiters("pages"), 0);
        assert_eq!(
            t.metric("pagezone_wait_queue_timeouts_total{queue=\"pages\"}"),
            1
        );
        // A wake-up that does not help (too little freed) sleeps again.
        let c = t.alloc_async(json!({"type":"pages","order":10,"wait_ms":200}));
        let smallest = ids.last().unwrap();
        let r = t.request("DELETE", &format!("/api/alloc/{smallest}"), None);
        assert_eq!(r.status, 200);
        assert!(
            t.answer(c, 100).is_none(),
            "asleep again after a futile wake-up"
        );
        assert_eq!(
            t.metric("pagezone_wait_queue_wakeups_total{queue=\"pages\"}"),
            1
        );
        let r = t.answer(c, 200).expect("timed out");
        assert_eq!(error(&r).0, 507);
    });
}

#[test]
fn atomic_allocations_cannot_sleep() {
    run(FULL, |t| {
        for (body, why) in [
            (
                json!({"type":"pages","order":0,"gfp":"GFP_ATOMIC","wait_ms":10}),
                "cannot sleep",
            ),
            (
                json!({"type":"kmalloc","size":64,"gfp":"GFP_NOWAIT","wait_ms":1}),
                "cannot sleep",
            ),
            (
                json!({"type":"pages","order":0,"wait_ms":30_001}),
                "out of range",
            ),
        ] {
            let r = t.alloc(body.clone());
            assert_eq!(error(&r), (400, "EINVAL".into()), "{body}");
            assert!(r.text().contains(why), "{body}: {}", r.text());
        }
        // 0 and 30000 are fine; an allocation that succeeds never sleeps.
        t.alloc_ok(json!({"type":"pages","order":0,"gfp":"GFP_ATOMIC","wait_ms":0}));
        t.alloc_ok(json!({"type":"pages","order":0,"wait_ms":30_000}));
        assert_eq!(t.waiters("pages"), 0);
    });
}

#[test]
fn mempool_alloc_sleeps_until_mempool_free() {
    run(FULL, |t| {
        let r = t.request(
            "POST",
            "/api/caches",
            Some(&json!({"name":"objs","size":1000}).to_string()),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let r = t.request(
            "POST",
            "/api/mempools",
            Some(&json!({"name":"p","cache":"objs","min_nr":2}).to_string()),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let pages = t.exhaust();
        // The cache's slabs are full and cannot grow.
        while t.alloc(json!({"type":"cache","cache":"objs"})).status == 201 {}
        let a = t.alloc_ok(json!({"type":"mempool","pool":"p"}));
        t.alloc_ok(json!({"type":"mempool","pool":"p"}));
        // The reserve is empty. Atomic: fails at once.
        let r = t.alloc(json!({"type":"mempool","pool":"p","gfp":"GFP_ATOMIC"}));
        assert_eq!(error(&r), (507, "ENOMEM".into()));
        // "wait_ms":0 opts out of sleeping.
        let r = t.alloc(json!({"type":"mempool","pool":"p","wait_ms":0}));
        assert_eq!(error(&r).0, 507);
        // GFP_KERNEL without wait_ms sleeps, as Linux's mempool_alloc does.
        let c = t.alloc_async(json!({"type":"mempool","pool":"p"}));
        assert!(t.answer(c, 100).is_none());
        assert_eq!(t.waiters("mempool"), 1);
        // Pages freed elsewhere do not wake it: only its pool's frees.
        let r = t.request("DELETE", &format!("/api/alloc/{}", pages[0]), None);
        assert_eq!(r.status, 200);
        assert!(t.answer(c, 100).is_none(), "waits for mempool_free");
        let r = t.request("DELETE", &format!("/api/alloc/{}", a["id"]), None);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = t.answer(c, 50).expect("woken by mempool_free");
        assert_eq!(r.status, 201, "{}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["type"], "mempool");
        assert_eq!(t.waiters("mempool"), 0);
        let r = t.request("POST", "/api/reset", None);
        assert_eq!(r.status, 200);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn mempool_destroyed_under_a_sleeper_is_404() {
    run(FULL, |t| {
        t.request(
            "POST",
            "/api/caches",
            Some(&json!({"name":"objs","size":3000}).to_string()),
        );
        let r = t.request(
            "POST",
            "/api/mempools",
            Some(&json!({"name":"q","cache":"objs","min_nr":0}).to_string()),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        t.exhaust();
        while t.alloc(json!({"type":"cache","cache":"objs"})).status == 201 {}
        let c = t.alloc_async(json!({"type":"mempool","pool":"q","wait_ms":5000}));
        assert!(t.answer(c, 50).is_none());
        let r = t.request("DELETE", "/api/mempools/q", None);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = t.answer(c, 50).expect("woken");
        assert_eq!(error(&r), (404, "ENOENT".into()));
        assert_eq!(t.api.nr_waiters(), 0);
    });
}

#[test]
fn reset_and_vanished_clients_leave_no_waiters() {
    run(FULL, |t| {
        t.exhaust();
        let parked: Vec<_> = (0..3)
            .map(|_| t.alloc_async(json!({"type":"pages","order":0,"wait_ms":20_000})))
            .collect();
        assert_eq!(t.waiters("pages"), 3);
        // One client gives up: its wait is cancelled.
        t.net.socket(parked[0]).abort();
        t.sleep_ms(20);
        assert_eq!(t.waiters("pages"), 2);
        t.net.socket(parked[1]).close();
        t.sleep_ms(20);
        assert_eq!(t.waiters("pages"), 1);
        // Reset: the last sleeper is told, allocates nothing, and the
        // buddy allocator is back at boot.
        let r = t.request("POST", "/api/reset", None);
        assert_eq!(r.status, 200);
        let r = t.answer(parked[2], 50).expect("answered");
        assert_eq!(error(&r), (507, "ENOMEM".into()));
        assert_eq!(t.api.nr_waiters(), 0);
        assert_eq!(t.json("/api/allocations")["total"], 0);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn sleeping_allocation_of_a_task_is_woken_by_its_oom_victims_reaper() {
    run(FULL, |t| {
        // A victim holds memory; the sleeper's own task is protected.
        let task = |t: &mut T<'_>, name: &str, adj: i64| {
            let r = t.request(
                "POST",
                "/api/tasks",
                Some(&json!({"name":name,"oom_score_adj":adj}).to_string()),
            );
            serde_json::from_slice::<Value>(&r.body).unwrap()["pid"]
                .as_u64()
                .unwrap()
        };
        let victim = task(t, "victim", 1000);
        let me = task(t, "me", -1000);
        t.alloc_ok(json!({"type":"pages","order":10,"task":victim}));
        t.exhaust();
        // "oom":false: no kill on its own behalf, so it sleeps.
        let c =
            t.alloc_async(json!({"type":"pages","order":0,"task":me,"oom":false,"wait_ms":5000}));
        assert!(t.answer(c, 50).is_none());
        // Another request runs the OOM killer (order 3: above
        // PAGE_ALLOC_COSTLY_ORDER Linux never kills): the victim's handles
        // are freed by the reaper, which wakes the sleeper too.
        let r = t.alloc(json!({"type":"pages","order":3}));
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(t.json("/api/oom")["kills"], 1);
        let r = t.answer(c, 50).expect("woken by the reaper");
        assert_eq!(r.status, 201, "{}", r.text());
    });
}
