//! The slab side of the API over the simulated machine: kmalloc, cache and
//! mempool handles, `/api/slabinfo` counts at every step, `/proc/slabinfo`
//! format, mempool reserves under memory pressure, quota, reset, errors.

use std::sync::Mutex;

use mm::manager::MemoryManager;
use mm::platform::sim::SimPlatform;
use mm::slab::{ObjectMemory, PlatformMemory, SlabAllocator, SlabFlags, SlabMeta};
use mm::types::PAGE_OFFSET;

use super::*;

/// The slab allocator of the simulated machine, behind a lock like the
/// kernel's, its objects reached through the platform (so fill/checksum
/// and the slab layer see the same bytes).
pub(super) struct SimSlab<'m> {
    slab: Mutex<SlabAllocator<'static>>,
    platform: &'m SimPlatform,
    mm: &'m MemoryManager<'m, SimPlatform>,
}

impl<'m> SimSlab<'m> {
    pub(super) fn new(mm: &'m MemoryManager<'m, SimPlatform>) -> Self {
        let frames = mm.lock().lowmem_pfn().index();
        let metas = Box::leak(vec![SlabMeta::EMPTY; frames].into_boxed_slice());
        SimSlab {
            slab: Mutex::new(SlabAllocator::new(metas, SlabFlags::NONE)),
            platform: mm.platform(),
            mm,
        }
    }

    /// `settle_kmalloc_caches`, as the kernel runs it at boot.
    pub(super) fn settle(&self, mm: &MemoryManager<'_, SimPlatform>) {
        let mut slab = self.slab.lock().unwrap();
        settle_kmalloc_caches(&mut slab, &PlatformMemory(self.platform), mm);
    }

    /// Every slab counter equals a recount of the structures.
    pub(super) fn check_invariants(&self) {
        let slab = self.slab.lock().unwrap();
        slab.check_invariants(&PlatformMemory(self.platform))
            .unwrap_or_else(|e| panic!("slab invariants: {e}"));
    }
}

impl SlabAccess for SimSlab<'_> {
    fn with_slab(&self, f: &mut dyn FnMut(&mut SlabAllocator<'_>, &dyn ObjectMemory)) {
        // A std Mutex, not re-entrant either: a handler that called back
        // into the API under the lock would deadlock here as it would panic
        // in the kernel.
        let mut slab = self
            .slab
            .try_lock()
            .expect("slab lock re-entered (the kernel would panic)");
        f(&mut slab, &PlatformMemory(self.platform));
    }

    /// Threads standing for CPUs share the one lock here (blocking, not
    /// `try_lock`: they contend for real); each acts as its CPU.
    fn kmalloc_kfree(&self, size: usize) -> Result<(), &'static str> {
        let mut slab = self.slab.lock().unwrap();
        slab.set_this_cpu(self.platform.cpu_id());
        let mem = PlatformMemory(self.platform);
        let addr = slab
            .kmalloc(&mem, self.mm, size, mm::gfp::GfpFlags::GFP_KERNEL)
            .map_err(|_| "kmalloc failed")?;
        slab.kfree(&mem, self.mm, addr).map_err(|_| "kfree refused")
    }
}

// ----------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------

impl T<'_> {
    fn cache(&mut self, name: &str) -> Option<Value> {
        self.json("/api/slabinfo")["caches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    }

    /// `(active_objs, num_objs, [full, partial, empty])` of a cache.
    fn counts(&mut self, name: &str) -> (u64, u64, [u64; 3]) {
        let c = self
            .cache(name)
            .unwrap_or_else(|| panic!("no cache {name}"));
        let s = &c["slabs"];
        (
            c["active_objs"].as_u64().unwrap(),
            c["num_objs"].as_u64().unwrap(),
            [
                s["full"].as_u64().unwrap(),
                s["partial"].as_u64().unwrap(),
                s["empty"].as_u64().unwrap(),
            ],
        )
    }

    fn post(&mut self, path: &str, body: Value) -> HttpResponse {
        self.request("POST", path, Some(&body.to_string()))
    }

    fn pools(&mut self) -> Value {
        self.json("/api/mempools")["pools"].clone()
    }

    fn free(&mut self, id: u64) {
        let r = self.request("DELETE", &format!("/api/alloc/{id}"), None);
        assert_eq!(r.status, 200, "free {id}: {}", r.text());
    }
}

fn id(h: &Value) -> u64 {
    h["id"].as_u64().unwrap()
}

// ----------------------------------------------------------------------
// Tests
// ----------------------------------------------------------------------

#[test]
fn kmalloc_40_is_a_kmalloc_64_object_with_fill_and_checksum() {
    run(DEFAULT, |t| {
        let (active, ..) = t.counts("kmalloc-cg-64");
        let h = t.alloc_ok(json!({"type":"kmalloc","size":40}));
        assert_eq!(h["type"], "kmalloc");
        assert_eq!(h["size"], 40);
        assert_eq!(h["ksize"], 64);
        assert_eq!(h["cache"], "kmalloc-cg-64");
        assert_eq!(h["order"], 0);
        assert_eq!(h["gfp"], "GFP_KERNEL");
        let phys = hex(&h["phys"]);
        assert_eq!(phys % 64, 0, "kmalloc-cg-64 objects are 64-byte aligned");
        assert_eq!(hex(&h["virt"]), PAGE_OFFSET + phys);
        assert_eq!(h["pfn"], phys >> 12);
        assert_eq!(h["zone"], "DMA32");
        assert_eq!(t.counts("kmalloc-cg-64").0, active + 1);
        let listed = t.json("/api/allocations")["allocations"].clone();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0], h);

        // fill/checksum cover exactly the 40 bytes asked for.
        let r = t.post(&format!("/api/alloc/{}/fill", id(&h)), json!({"byte":0xA5}));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).unwrap()["bytes"],
            40
        );
        let frame = t.mm.platform().frame(mm::types::Pfn(phys >> 12));
        let off = (phys & 0xfff) as usize;
        assert!(frame[off..off + 40].iter().all(|&b| b == 0xA5));
        let sum = t.json(&format!("/api/alloc/{}/checksum", id(&h)));
        assert_eq!(sum["bytes"], 40);
        assert_eq!(hex(&sum["crc32"]), crc32(&[0xA5; 40]));

        // DMA: the dma- twin, from ZONE_DMA; zeroed on __GFP_ZERO.
        let d = t.alloc_ok(json!({"type":"kmalloc","size":100,"gfp":"GFP_DMA|__GFP_ZERO"}));
        assert_eq!(d["cache"], "dma-kmalloc-128");
        assert_eq!(d["zone"], "DMA");
        let sum = t.json(&format!("/api/alloc/{}/checksum", id(&d)));
        assert_eq!(hex(&sum["crc32"]), crc32(&[0; 100]));

        // Over 8 KiB: kmalloc_large, a buddy block of its own.
        let big = t.alloc_ok(json!({"type":"kmalloc","size":20000}));
        assert!(big["cache"].is_null());
        assert_eq!(big["ksize"], 32768);
        assert_eq!(big["order"], 3);
        assert_eq!(hex(&big["phys"]) % 32768, 0);
        let info = t.json("/api/slabinfo");
        assert_eq!(info["kmalloc_large"], json!({"allocs":1,"pages":8}));

        t.free(id(&h));
        assert_eq!(t.counts("kmalloc-cg-64").0, active);
        let r = t.request("DELETE", &format!("/api/alloc/{}", id(&h)), None);
        assert_eq!(error(&r), (404, "ENOENT".into()));
        let r = t.request("DELETE", &format!("/api/alloc/{}?order=3", id(&big)), None);
        assert_eq!(error(&r), (400, "EINVAL".into()));
        assert_eq!(
            t.request("POST", "/api/reset", None).body,
            br#"{"freed":2}"#
        );
        assert_eq!(t.json("/api/slabinfo")["kmalloc_large"]["allocs"], 0);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn cache_of_200_byte_objects_aligned_64_step_by_step() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        let r = t.post(
            "/api/caches",
            json!({"name":"obj200","size":200,"align":64}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let c: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            c,
            json!({"name":"obj200","object_size":200,"size":256,"align":64,"objs_per_slab":16,
                "pages_per_slab":1,"active_objs":0,"num_objs":0,"active_slabs":0,"num_slabs":0,
                "slabs":{"full":0,"partial":0,"empty":0},"flags":[],"kind":"api",
                "corruption":{"red_zone":0,"poison":0,"double_free":0,"free_pointer":0,
                    "invalid_free":0,"total":0},"quarantined":0})
        );
        assert_eq!(
            t.cache("obj200").unwrap(),
            c,
            "/api/slabinfo shows the same record"
        );
        // Duplicate name: 409.
        let r = t.post("/api/caches", json!({"name":"obj200","size":64}));
        assert_eq!(error(&r), (409, "EBUSY".into()));

        let mut ids = Vec::new();
        let h = t.alloc_ok(json!({"type":"cache","cache":"obj200"}));
        assert_eq!(
            (h["type"].as_str(), h["size"].as_u64()),
            (Some("cache"), Some(200))
        );
        assert_eq!(h["cache"], "obj200");
        assert_eq!(hex(&h["phys"]) % 64, 0);
        ids.push(id(&h));
        assert_eq!(t.counts("obj200"), (1, 16, [0, 1, 0]));
        for _ in 1..16 {
            ids.push(id(&t.alloc_ok(json!({"type":"cache","cache":"obj200"}))));
        }
        assert_eq!(t.counts("obj200"), (16, 16, [1, 0, 0]));
        ids.push(id(&t.alloc_ok(json!({"type":"cache","cache":"obj200"}))));
        assert_eq!(t.counts("obj200"), (17, 32, [1, 1, 0]));
        let c = t.cache("obj200").unwrap();
        assert_eq!(
            (c["active_slabs"].as_u64(), c["num_slabs"].as_u64()),
            (Some(2), Some(2))
        );

        // Destroy with live objects: 409, nothing changes.
        let r = t.request("DELETE", "/api/caches/obj200", None);
        assert_eq!(error(&r), (409, "EBUSY".into()));
        assert_eq!(t.counts("obj200"), (17, 32, [1, 1, 0]));

        // Free the seventeenth: its slab is empty and kept as a reserve.
        t.free(ids.pop().unwrap());
        assert_eq!(t.counts("obj200"), (16, 32, [1, 0, 1]));
        // Free one of the first slab: full → partial.
        t.free(ids.remove(0));
        assert_eq!(t.counts("obj200"), (15, 32, [0, 1, 1]));
        for i in ids.drain(..) {
            t.free(i);
        }
        assert_eq!(t.counts("obj200"), (0, 32, [0, 0, 2]));
        // Shrink: the empty slabs go back to the buddy allocator.
        let r = t.request("POST", "/api/caches/obj200/shrink", None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, br#"{"freed_slabs":2}"#);
        assert_eq!(t.counts("obj200"), (0, 0, [0, 0, 0]));
        assert_eq!(t.buddyinfo(), boot);
        // /proc/slabinfo lists it, newest first.
        let r = t.get("/proc/slabinfo");
        let text = r.text();
        assert!(
            text.lines().nth(2).unwrap().starts_with("obj200 "),
            "{text}"
        );

        let r = t.request("DELETE", "/api/caches/obj200", None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(t.cache("obj200").is_none());
        let r = t.request("DELETE", "/api/caches/obj200", None);
        assert_eq!(error(&r), (404, "ENOENT".into()));
        let r = t.alloc(json!({"type":"cache","cache":"obj200"}));
        assert_eq!(error(&r), (404, "ENOENT".into()));
        assert_eq!(t.buddyinfo(), boot);
    });
}

#[test]
fn flags_red_zone_poison_dma_and_hwcache_align() {
    run(DEFAULT, |t| {
        let r = t.post(
            "/api/caches",
            json!({"name":"dbg","size":24,"align":0,
                "flags":["SLAB_RED_ZONE","SLAB_POISON","SLAB_CACHE_DMA","SLAB_HWCACHE_ALIGN"]}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let c: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            c["flags"],
            json!([
                "SLAB_HWCACHE_ALIGN",
                "SLAB_CACHE_DMA",
                "SLAB_POISON",
                "SLAB_RED_ZONE"
            ])
        );
        assert_eq!(
            c["align"], 32,
            "HWCACHE_ALIGN halves the line while two objects fit"
        );
        let h = t.alloc_ok(json!({"type":"cache","cache":"dbg"}));
        assert_eq!(h["zone"], "DMA", "SLAB_CACHE_DMA slabs come from ZONE_DMA");
        // Filling the object's own bytes never touches the red zone.
        let r = t.post(&format!("/api/alloc/{}/fill", id(&h)), json!({"byte":255}));
        assert_eq!(r.status, 200);
        t.free(id(&h));
        let c = t.cache("dbg").unwrap();
        assert_eq!(c["corruption"]["total"], 0);
        assert_eq!(c["quarantined"], 0);
        // A second object passes the poison check on allocation.
        let h = t.alloc_ok(json!({"type":"cache","cache":"dbg"}));
        t.free(id(&h));
        assert_eq!(t.cache("dbg").unwrap()["corruption"]["total"], 0);
        assert_eq!(t.request("DELETE", "/api/caches/dbg", None).status, 200);
    });
}

#[test]
fn mempool_reserve_serves_when_the_cache_cannot_grow() {
    run(
        Opts {
            quota_pct: 100,
            ..DEFAULT
        },
        |t| {
            let boot = t.buddyinfo();
            assert_eq!(
                t.post(
                    "/api/caches",
                    json!({"name":"pool_objs","size":200,"align":64})
                )
                .status,
                201
            );
            let r = t.post(
                "/api/mempools",
                json!({"name":"p","cache":"pool_objs","min_nr":4}),
            );
            assert_eq!(r.status, 201, "{}", r.text());
            assert_eq!(
                serde_json::from_slice::<Value>(&r.body).unwrap(),
                json!({"name":"p","cache":"pool_objs","min_nr":4,"curr_nr":4})
            );
            assert_eq!(
                t.pools(),
                json!([{"name":"p","cache":"pool_objs","min_nr":4,"curr_nr":4}])
            );
            assert_eq!(t.counts("pool_objs").0, 4, "the reserve is 4 live objects");
            // Duplicate pool, unknown cache, bad min_nr.
            let r = t.post(
                "/api/mempools",
                json!({"name":"p","cache":"pool_objs","min_nr":1}),
            );
            assert_eq!(error(&r), (409, "EBUSY".into()));
            let r = t.post(
                "/api/mempools",
                json!({"name":"q","cache":"nope","min_nr":1}),
            );
            assert_eq!(error(&r), (404, "ENOENT".into()));
            let r = t.post(
                "/api/mempools",
                json!({"name":"q","cache":"pool_objs","min_nr":65}),
            );
            assert_eq!(error(&r), (400, "EINVAL".into()));
            // The cache serves first: the reserve stays full.
            let h = t.alloc_ok(json!({"type":"mempool","pool":"p"}));
            assert_eq!(
                (h["type"].as_str(), h["pool"].as_str()),
                (Some("mempool"), Some("p"))
            );
            assert_eq!(h["cache"], "pool_objs");
            assert_eq!(t.pools()[0]["curr_nr"], 4);
            // The cache cannot be destroyed under its pool, nor the pool
            // while an element is out.
            let r = t.request("DELETE", "/api/caches/pool_objs", None);
            assert_eq!(error(&r), (409, "EBUSY".into()));
            let r = t.request("DELETE", "/api/mempools/p", None);
            assert_eq!(error(&r), (409, "EBUSY".into()));

            // Take every lowmem page GFP_KERNEL will give, largest first.
            let mut hogs = 0;
            for order in (0..=10).rev() {
                loop {
                    let r = t.alloc(json!({"type":"pages","order":order,"gfp":"GFP_KERNEL"}));
                    if r.status != 201 {
                        assert_eq!(error(&r), (507, "ENOMEM".into()));
                        break;
                    }
                    hogs += 1;
                }
            }
            assert!(hogs > 0);
            // The slab's remaining free objects, then the reserve, then 507.
            let (active, num, _) = t.counts("pool_objs");
            let mut out = vec![id(&h)];
            for _ in active..num {
                out.push(id(&t.alloc_ok(json!({"type":"mempool","pool":"p"}))));
            }
            assert_eq!(t.pools()[0]["curr_nr"], 4);
            for left in (0..4).rev() {
                out.push(id(&t.alloc_ok(json!({"type":"mempool","pool":"p"}))));
                assert_eq!(t.pools()[0]["curr_nr"], left);
            }
            // (GFP_KERNEL would sleep for an element: see tests/wait.rs;
            // "wait_ms":0 asks it not to.)
            let r = t.alloc(json!({"type":"mempool","pool":"p","wait_ms":0}));
            assert_eq!(error(&r), (507, "ENOMEM".into()));
            let r = t.alloc(json!({"type":"cache","cache":"pool_objs"}));
            assert_eq!(error(&r), (507, "ENOMEM".into()));
            // Frees refill the reserve first.
            for (i, e) in out.drain(..6).enumerate() {
                t.free(e);
                assert_eq!(t.pools()[0]["curr_nr"], (i + 1).min(4) as u64);
            }
            // Resize: shrink gives back, grow takes again.
            let r = t.post("/api/mempools/p/resize", json!({"min_nr":2}));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(
                t.pools()[0],
                json!({"name":"p","cache":"pool_objs","min_nr":2,"curr_nr":2})
            );
            let r = t.post("/api/mempools/p/resize", json!({"min_nr":3}));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(t.pools()[0]["curr_nr"], 3);
            let r = t.post("/api/mempools/p/resize", json!({"min_nr":99}));
            assert_eq!(error(&r), (400, "EINVAL".into()));
            let r = t.post("/api/mempools/nope/resize", json!({"min_nr":1}));
            assert_eq!(error(&r), (404, "ENOENT".into()));
            let r = t.alloc(json!({"type":"mempool","pool":"nope"}));
            assert_eq!(error(&r), (404, "ENOENT".into()));

            // Reset frees pages, elements, the pool and the cache.
            let r = t.request("POST", "/api/reset", None);
            assert_eq!(r.status, 200);
            assert_eq!(t.pools(), json!([]));
            assert!(t.cache("pool_objs").is_none());
            assert_eq!(t.json("/api/allocations")["allocations"], json!([]));
            assert_eq!(t.buddyinfo(), boot);
        },
    );
}

#[test]
fn mempool_destroy_then_cache_destroy() {
    run(DEFAULT, |t| {
        t.post("/api/caches", json!({"name":"c1","size":64}));
        let r = t.post(
            "/api/mempools",
            json!({"name":"m1","cache":"c1","min_nr":3}),
        );
        assert_eq!(r.status, 201);
        let h = t.alloc_ok(json!({"type":"mempool","pool":"m1"}));
        t.free(id(&h));
        assert_eq!(t.request("DELETE", "/api/mempools/m1", None).status, 200);
        let r = t.request("DELETE", "/api/mempools/m1", None);
        assert_eq!(error(&r), (404, "ENOENT".into()));
        assert_eq!(t.counts("c1").0, 0, "the reserve went back to the cache");
        assert_eq!(t.request("DELETE", "/api/caches/c1", None).status, 200);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn proc_slabinfo_is_linux_2_1() {
    run(DEFAULT, |t| {
        t.post(
            "/api/caches",
            json!({"name":"my_cache","size":100,"align":8}),
        );
        t.alloc_ok(json!({"type":"cache","cache":"my_cache"}));
        let r = t.get("/proc/slabinfo");
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        let text = r.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "slabinfo - version: 2.1");
        assert_eq!(
            lines[1],
            "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"
        );
        let caches = t.json("/api/slabinfo")["caches"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(lines.len(), 2 + caches.len());
        for (line, c) in lines[2..].iter().zip(&caches) {
            assert!(!line.ends_with(' '), "{line:?}");
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 16, "{line}");
            assert_eq!(
                (f[6], f[7], f[11], f[12]),
                (":", "tunables", ":", "slabdata")
            );
            assert_eq!(f[0], c["name"]);
            assert_eq!(f[1], c["active_objs"].to_string());
            assert_eq!(f[2], c["num_objs"].to_string());
            assert_eq!(f[3], c["size"].to_string());
            assert_eq!(f[4], c["objs_per_slab"].to_string());
            assert_eq!(f[5], c["pages_per_slab"].to_string());
            assert_eq!(f[13], c["active_slabs"].to_string());
            assert_eq!(f[14], c["num_slabs"].to_string());
        }
        assert_eq!(
            lines[2],
            "my_cache               1     39    104   39    1 : tunables    0    0    0 : slabdata      1      1      0"
        );
        assert!(lines.iter().any(|l| l.starts_with("kmalloc-8 ")));
        assert!(lines.iter().any(|l| l.starts_with("dma-kmalloc-8k ")));
        assert_eq!(caches.len(), 1 + mm::kmalloc::NR_KMALLOC_SLOTS);
    });
}

#[test]
fn meminfo_slab_counts_slab_pages() {
    run(DEFAULT, |t| {
        // The kmalloc caches' spare slabs (settled at boot).
        let spare = t.json("/api/slabinfo")["slab_pages"].as_u64().unwrap();
        assert!(spare > 0);
        let before = t.json("/api/meminfo");
        assert_eq!(before["Slab"], spare * 4);
        t.post("/api/caches", json!({"name":"big","size":3000}));
        let h = t.alloc_ok(json!({"type":"cache","cache":"big"}));
        let pages = t.cache("big").unwrap()["pages_per_slab"].as_u64().unwrap();
        let after = t.json("/api/meminfo");
        let kb = (spare + pages) * 4;
        assert_eq!(after["Slab"], kb);
        assert_eq!(after["SUnreclaim"], kb);
        assert_eq!(after["SReclaimable"], 0);
        let r = t.get("/proc/meminfo");
        let line = r
            .text()
            .lines()
            .find(|l| l.starts_with("Slab:"))
            .unwrap()
            .to_string();
        assert_eq!(line.split_whitespace().nth(1).unwrap(), kb.to_string());
        assert_eq!(t.json("/api/slabinfo")["slab_pages"], spare + pages);
        t.free(id(&h));
        t.request("POST", "/api/reset", None);
        assert_eq!(t.json("/api/meminfo")["Slab"], spare * 4);
    });
}

#[test]
fn slab_handles_count_against_the_quota() {
    run(
        Opts {
            quota_pct: 1,
            ..DEFAULT
        },
        |t| {
            // 1 % of ~28k managed pages is ~280 pages: 4 MiB (1024) is over.
            let r = t.alloc(json!({"type":"kmalloc","size":4 << 20}));
            assert_eq!(error(&r), (507, "EQUOTA".into()));
            let mut n = 0;
            let last = loop {
                let r = t.alloc(json!({"type":"kmalloc","size":256 << 10}));
                if r.status != 201 {
                    break r;
                }
                n += 1;
            };
            assert_eq!(error(&last), (507, "EQUOTA".into()));
            assert!(n >= 1, "{n}");
            // Pages and slab handles share the one quota.
            let r = t.alloc(json!({"type":"pages","order":7}));
            assert_eq!(error(&r), (507, "EQUOTA".into()));
            t.request("POST", "/api/reset", None);
            assert_eq!(t.alloc(json!({"type":"pages","order":7})).status, 201);
        },
    );
}

#[test]
fn slab_errors_are_exact() {
    run(DEFAULT, |t| {
        for (body, status, why) in [
            (json!({"name":"x","size":0}), 400, "size 0"),
            (json!({"name":"x","size":5000000}), 400, "out of range"),
            (json!({"name":"x","size":64,"align":3}), 400, "power of two"),
            (
                json!({"name":"x","size":64,"align":8192}),
                400,
                "power of two",
            ),
            (
                json!({"name":"x","size":64,"flags":["SLAB_BOGUS"]}),
                400,
                "SLAB_BOGUS",
            ),
            (
                json!({"name":"x","size":64,"flags":"SLAB_POISON"}),
                400,
                "malformed JSON",
            ),
            (
                json!({"name":"has space","size":64}),
                400,
                "malformed cache name",
            ),
            (json!({"name":"","size":64}), 400, "malformed cache name"),
            (json!({"size":64}), 400, "missing \"name\""),
            (json!({"name":"x"}), 400, "missing \"size\""),
            (json!({"name":"kmalloc-64","size":64}), 409, "exists"),
        ] {
            let r = t.post("/api/caches", body.clone());
            let j: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(r.status, status, "{body}: {j}");
            assert!(
                j["error"]["message"].as_str().unwrap().contains(why),
                "{body}: {j}"
            );
        }
        for (body, status) in [
            (json!({"type":"kmalloc"}), 400),
            (json!({"type":"kmalloc","size":(4 << 20) + 1}), 400),
            (json!({"type":"kmalloc","size":8,"gfp":"GFP_BOGUS"}), 400),
            (json!({"type":"cache"}), 400),
            (json!({"type":"cache","cache":"nope"}), 404),
            (json!({"type":"mempool"}), 400),
            (json!({"type":"mempool","pool":"nope"}), 404),
        ] {
            let r = t.alloc(body.clone());
            assert_eq!(r.status, status, "{body}: {}", r.text());
        }
        // The kmalloc caches are permanent; shrinking them is allowed.
        let r = t.request("DELETE", "/api/caches/kmalloc-64", None);
        assert_eq!(error(&r), (409, "EBUSY".into()));
        assert_eq!(
            t.request("POST", "/api/caches/kmalloc-64/shrink", None)
                .status,
            200
        );
        let r = t.request("POST", "/api/caches/nope/shrink", None);
        assert_eq!(error(&r), (404, "ENOENT".into()));
        let r = t.request("DELETE", "/api/mempools/nope", None);
        assert_eq!(error(&r), (404, "ENOENT".into()));
        let r = t.request("GET", "/api/caches/kmalloc-64", None);
        assert_eq!(error(&r), (405, "EINVAL".into()));
        // Fill of a slab handle checks its body like any other.
        let h = t.alloc_ok(json!({"type":"kmalloc","size":16}));
        let r = t.post(&format!("/api/alloc/{}/fill", id(&h)), json!({"byte":256}));
        assert_eq!(error(&r), (400, "EINVAL".into()));
        t.request("POST", "/api/reset", None);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn reset_frees_every_slab_handle_pool_and_api_cache() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        let before = t.json("/api/slabinfo")["caches"].clone();
        t.post("/api/caches", json!({"name":"a","size":200,"align":64}));
        t.post(
            "/api/caches",
            json!({"name":"b","size":1000,"flags":["SLAB_POISON"]}),
        );
        t.post("/api/mempools", json!({"name":"pa","cache":"a","min_nr":5}));
        let mut n = 0;
        for body in [
            json!({"type":"kmalloc","size":40}),
            json!({"type":"kmalloc","size":9000}),
            json!({"type":"cache","cache":"a"}),
            json!({"type":"cache","cache":"b"}),
            json!({"type":"mempool","pool":"pa"}),
            json!({"type":"pages","order":2}),
        ] {
            t.alloc_ok(body);
            n += 1;
        }
        let r = t.request("POST", "/api/reset", None);
        assert_eq!(r.body, format!("{{\"freed\":{n}}}").into_bytes());
        assert_eq!(t.json("/api/slabinfo")["caches"], before);
        assert_eq!(t.pools(), json!([]));
        assert_eq!(t.buddyinfo(), boot);
    });
}
