//! A seeded random walk over every command and view of the API, for the
//! fault-injection run (many walkers at once) and `make soak` (one walker
//! for minutes). A [`Walker`] owns one keep-alive connection and remembers
//! what its answers created (handles, caches, pools, kmap slots) so later
//! steps use real names and ids; it never sends a reset itself.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::VIEWS;
use crate::http::{Client, Response};

/// Statuses a well-formed request may get under memory pressure and fault
/// injection: success, a refusal of something our own state made stale
/// (404 freed id, 409 cache in use, 400 kmap of the wrong kind), or 507.
pub const ALLOWED: [u16; 6] = [200, 201, 400, 404, 409, 507];

/// xorshift64*: small, seedable, the same sequence everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// Log-uniform in `1..=max`: small sizes as often as large ones.
    pub fn size(&mut self, max: u64) -> u64 {
        let bits = 64 - max.leading_zeros() as u64;
        let b = self.below(bits) + 1;
        (self.next_u64() % (1u64 << b)).clamp(1, max)
    }
}

const GFPS: [&str; 9] = [
    "GFP_KERNEL",
    "GFP_HIGHUSER_MOVABLE",
    "GFP_USER|__GFP_MOVABLE",
    "GFP_ATOMIC",
    "GFP_DMA",
    "GFP_DMA32",
    "GFP_HIGHUSER",
    "GFP_KERNEL|__GFP_ZERO",
    "GFP_HIGHUSER|__GFP_ZERO|__GFP_NOWARN",
];

const CACHE_FLAGS: [&str; 4] = [
    "SLAB_HWCACHE_ALIGN",
    "SLAB_POISON",
    "SLAB_RED_ZONE",
    "SLAB_CACHE_DMA",
];

/// One client's walk.
pub struct Walker {
    pub c: Client,
    pub rng: Rng,
    tag: String,
    /// Live handles this walker made: id and type.
    handles: Vec<(u64, String)>,
    caches: Vec<String>,
    pools: Vec<String>,
    slots: Vec<u64>,
    /// Tasks this walker created (pids); their handles vanish with them.
    tasks: Vec<u64>,
    made: u64,
    /// Answers seen, by status.
    pub statuses: BTreeMap<u16, u64>,
    pub steps: u64,
}

impl Walker {
    /// `tag` prefixes the caches and pools this walker creates (keep it
    /// short and distinct per walker: names are at most 32 characters).
    pub fn new(c: Client, seed: u64, tag: &str) -> Walker {
        Walker {
            c,
            rng: Rng::new(seed),
            tag: tag.into(),
            handles: Vec::new(),
            caches: Vec::new(),
            pools: Vec::new(),
            slots: Vec::new(),
            tasks: Vec::new(),
            made: 0,
            statuses: BTreeMap::new(),
            steps: 0,
        }
    }

    /// Forget everything made (after someone sent `POST /api/reset`).
    pub fn forget_all(&mut self) {
        self.handles.clear();
        self.caches.clear();
        self.pools.clear();
        self.slots.clear();
        self.tasks.clear();
    }

    fn send(&mut self, method: &str, path: &str, body: Option<Value>) -> Response {
        let body = body.map(|b| b.to_string());
        self.c.request(method, path, body.as_deref())
    }

    fn handle_of(&mut self, kind: Option<&str>) -> Option<u64> {
        let pool: Vec<u64> = self
            .handles
            .iter()
            .filter(|(_, t)| kind.is_none_or(|k| k == t))
            .map(|(id, _)| *id)
            .collect();
        (!pool.is_empty()).then(|| *self.rng.pick(&pool))
    }

    fn alloc_body(&mut self) -> Value {
        let mut body = self.alloc_body_untasked();
        // A third of the allocations belong to a task (when there is one).
        if !self.tasks.is_empty() && self.rng.below(3) == 0 {
            let pid = *self.rng.pick(&self.tasks);
            body["task"] = json!(pid);
        }
        body
    }

    fn alloc_body_untasked(&mut self) -> Value {
        let r = &mut self.rng;
        match r.below(10) {
            9 => json!({"type":"percpu","size":r.size(8192),"align":1u64 << r.below(13)}),
            7 => json!({"type":"pagecache","size":r.size(1 << 20)}),
            8 => json!({"type":"vmalloc","size":r.size(64 << 20),"lazy":true}),
            0 | 1 => {
                json!({"type":"pages","order":r.below(11),"gfp":*r.pick(&GFPS)})
            }
            2 => json!({"type":"kmalloc","size":r.size(1 << 16)}),
            3 => json!({"type":"vmalloc","size":r.size(4 << 20)}),
            4 => json!({"type":"dma","size":r.size(256 << 10)}),
            5 if !self.caches.is_empty() => {
                json!({"type":"cache","cache":*r.pick(&self.caches)})
            }
            6 if !self.pools.is_empty() => {
                // An empty reserve would sleep (30 s by default) with no
                // one to free: sleep briefly, or not at all.
                json!({"type":"mempool","pool":*r.pick(&self.pools),"wait_ms":r.below(2) * 20})
            }
            _ => json!({"type":"kmalloc","size":r.size(4096)}),
        }
    }

    /// One random request; returns what it was and the answer's status.
    /// Updates the walker's state from the answer.
    pub fn step(&mut self) -> (String, u16) {
        self.steps += 1;
        let (what, r) = match self.rng.below(20) {
            0..=5 => {
                let body = self.alloc_body();
                let r = self.send("POST", "/api/alloc", Some(body.clone()));
                if r.status == 201 {
                    let h = r.json();
                    let id = h["id"].as_u64().expect("201 has an id");
                    self.handles
                        .push((id, h["type"].as_str().unwrap_or("").to_string()));
                }
                (format!("alloc {body}"), r)
            }
            6 | 7 => match self.handle_of(None) {
                Some(id) => {
                    let r = self.send("DELETE", &format!("/api/alloc/{id}"), None);
                    if matches!(r.status, 200 | 404) {
                        self.handles.retain(|(h, _)| *h != id);
                    }
                    (format!("free {id}"), r)
                }
                None => self.view(),
            },
            8 => match self.handle_of(None) {
                Some(id) => {
                    let byte = self.rng.below(256);
                    let r = self.send(
                        "POST",
                        &format!("/api/alloc/{id}/fill"),
                        Some(json!({"byte":byte})),
                    );
                    (format!("fill {id}"), r)
                }
                None => self.view(),
            },
            9 => match self.handle_of(None) {
                Some(id) => {
                    let r = self.send("GET", &format!("/api/alloc/{id}/checksum"), None);
                    (format!("checksum {id}"), r)
                }
                None => self.view(),
            },
            10 => match self.handle_of(Some("pages")) {
                Some(id) => {
                    let r = self.send("POST", "/api/kmap", Some(json!({"id":id})));
                    if matches!(r.status, 200 | 201)
                        && let Some(slot) = r.json()["slot"].as_u64()
                    {
                        self.slots.push(slot);
                    }
                    (format!("kmap {id}"), r)
                }
                None => self.view(),
            },
            11 if !self.slots.is_empty() => {
                let i = self.rng.below(self.slots.len() as u64) as usize;
                let slot = self.slots.swap_remove(i);
                let r = self.send("DELETE", &format!("/api/kmap/{slot}"), None);
                (format!("kunmap {slot}"), r)
            }
            12 if self.caches.len() < 4 => {
                self.made += 1;
                let name = format!("{}-c{}", self.tag, self.made);
                let size = self.rng.size(16384);
                let flags: Vec<&str> = CACHE_FLAGS
                    .iter()
                    .copied()
                    .filter(|_| self.rng.below(3) == 0)
                    .collect();
                let body = json!({"name":name,"size":size,"flags":flags});
                let r = self.send("POST", "/api/caches", Some(body.clone()));
                if r.status == 201 {
                    self.caches.push(name);
                }
                (format!("cache create {body}"), r)
            }
            13 if !self.caches.is_empty() => {
                let name = self.rng.pick(&self.caches).clone();
                let r = if self.rng.below(2) == 0 {
                    self.send("POST", &format!("/api/caches/{name}/shrink"), None)
                } else {
                    let r = self.send("DELETE", &format!("/api/caches/{name}"), None);
                    if r.status == 200 {
                        self.caches.retain(|n| *n != name);
                    }
                    r
                };
                (format!("cache shrink/destroy {name}"), r)
            }
            14 if !self.caches.is_empty() && self.pools.len() < 3 => {
                self.made += 1;
                let name = format!("{}-p{}", self.tag, self.made);
                let cache = self.rng.pick(&self.caches).clone();
                let body = json!({"name":name,"cache":cache,"min_nr":self.rng.below(9)});
                let r = self.send("POST", "/api/mempools", Some(body.clone()));
                if r.status == 201 {
                    self.pools.push(name);
                }
                (format!("mempool create {body}"), r)
            }
            15 if !self.pools.is_empty() => {
                let name = self.rng.pick(&self.pools).clone();
                let r = if self.rng.below(2) == 0 {
                    let min_nr = self.rng.below(9);
                    self.send(
                        "POST",
                        &format!("/api/mempools/{name}/resize"),
                        Some(json!({"min_nr":min_nr})),
                    )
                } else {
                    let r = self.send("DELETE", &format!("/api/mempools/{name}"), None);
                    if r.status == 200 {
                        self.pools.retain(|n| *n != name);
                    }
                    r
                };
                (format!("mempool resize/destroy {name}"), r)
            }
            16 => match self.handle_of(None) {
                Some(id) => {
                    let r = self.send("GET", &format!("/api/alloc/{id}"), None);
                    (format!("handle {id}"), r)
                }
                None => self.view(),
            },
            17 if self.tasks.len() < 4 => {
                let adj = self.rng.below(2001) as i64 - 1000;
                let name = format!("t{}", self.made);
                self.made += 1;
                let r = self.send(
                    "POST",
                    "/api/tasks",
                    Some(json!({"name":name,"oom_score_adj":adj})),
                );
                if r.status == 201 {
                    self.tasks.push(r.json()["pid"].as_u64().expect("a pid"));
                }
                (format!("task {name} adj {adj}"), r)
            }
            18 if !self.tasks.is_empty() => {
                let pid = *self.rng.pick(&self.tasks);
                let r = self.send("DELETE", &format!("/api/tasks/{pid}"), None);
                if matches!(r.status, 200 | 404) {
                    self.tasks.retain(|p| *p != pid);
                }
                (format!("task {pid} exits"), r)
            }
            // Compaction now and then, of one zone or all, while the
            // other commands keep memory fragmented and pages pinned.
            19 if self.rng.below(2) == 0 => {
                let body = match self.rng.below(3) {
                    0 => json!({}),
                    1 => json!({"zone":"DMA32"}),
                    _ => json!({"zone":"HighMem"}),
                };
                let r = self.send("POST", "/api/compact", Some(body.clone()));
                (format!("compact {body}"), r)
            }
            _ => self.view(),
        };
        *self.statuses.entry(r.status).or_default() += 1;
        (what, r.status)
    }

    fn view(&mut self) -> (String, Response) {
        let extra = [
            "/api/selfcheck",
            "/api/health",
            "/api/memmap",
            "/api/allocations?offset=0&limit=50",
            "/api/pagetable?addr=0xffff888000100000",
            "/sys/kernel/debug/fail_page_alloc/probability",
            "/sys/kernel/debug/failslab/times",
            "/api/dmesg?since=0",
            "/api/dmesg.json",
            "/proc/vmstat",
            "/api/vmstat",
            "/api/oom",
            "/api/tasks",
            "/sys/kernel/debug/extfrag/extfrag_index",
            "/sys/kernel/debug/extfrag/unusable_index",
            "/api/cma",
            "/api/cpus",
            "/sys/kernel/tracing/trace",
        ];
        let path = if self.rng.below(4) == 0 {
            *self.rng.pick(&extra)
        } else {
            *self.rng.pick(&VIEWS)
        };
        let r = self.send("GET", path, None);
        (format!("GET {path}"), r)
    }
}
