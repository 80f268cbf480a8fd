//! Issue 9, "Running out of memory never kills the kernel": the issue's
//! three crash recipes verbatim, then every allocator run dry in guests of
//! 2 GiB, 32 MiB and 16 MiB. After each: every view answers 200, the
//! in-guest selfcheck finds nothing, and reset gives back the boot
//! buddyinfo exactly.

use serde_json::{Value, json};
use tests::api::{
    all_allocations, alloc, alloc_until_fail, assert_selfcheck_ok, assert_views_ok, buddyinfo,
    error_code, get_json, post, reset_to_boot, with_guest_log,
};
use tests::http::{Client, Response};
use tests::{BootOptions, Guest, boot_ready};

/// Requests in flight at once on the pipelined connection.
const WINDOW: usize = 16;

/// Boots, connects, and takes buddyinfo right after READY (what reset must
/// give back).
fn boot(mem: &str, append: &str) -> (Guest, Client, Value) {
    let (guest, port) = boot_ready(BootOptions::default().mem(mem).append(append));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    (guest, c, boot)
}

/// Pages present in all zones: the bound for every allocation loop.
fn present_pages(c: &mut Client) -> usize {
    get_json(c, "/api/zones")["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["present"].as_u64().unwrap() as usize)
        .sum()
}

/// The zone named `name` in `/api/zones`, if it has pages.
fn populated_zone(c: &mut Client, name: &str) -> Option<Value> {
    get_json(c, "/api/zones")["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["name"] == name && z["managed"].as_u64() > Some(0))
        .cloned()
}

/// A refusal that says memory ran out: 507 with `code`.
fn assert_507(r: &Response, code: &str, what: &str) {
    assert_eq!(
        r.status,
        507,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(error_code(r), code, "{what}");
}

/// Repeats `body` until the first refusal (at most `max` times), which must
/// be 507 `code`; returns the number of 201s.
fn until_507(c: &mut Client, body: &Value, max: usize, code: &str) -> usize {
    let (n, failed) = alloc_until_fail(c, body, max, WINDOW);
    let failed = failed.unwrap_or_else(|| panic!("{body}: still 201 after {max} requests"));
    assert_507(&failed, code, &body.to_string());
    n
}

/// For K = 10 down to 0, `{"type":"pages","order":K,"gfp":gfp}` until 507
/// ENOMEM; returns the number of 201s.
fn pages_by_order_until_507(c: &mut Client, gfp: &str) -> usize {
    let pages = present_pages(c);
    (0..=10u32)
        .rev()
        .map(|k| {
            let body = json!({"type":"pages","order":k,"gfp":gfp});
            until_507(c, &body, (pages >> k) + 64, "ENOMEM")
        })
        .sum()
}

/// The end of every scenario: `total` counts exactly the handles made,
/// every view answers 200, selfcheck is clean, reset frees the handles and
/// gives back the boot buddyinfo, and selfcheck is still clean.
fn views_selfcheck_reset(c: &mut Client, boot: &Value, handles: usize, when: &str) {
    let listed = get_json(c, "/api/allocations");
    assert_eq!(listed["total"], handles as u64, "{when}: total");
    assert_eq!(
        listed["allocations"].as_array().unwrap().len(),
        handles.min(1000),
        "{when}: first page"
    );
    assert_views_ok(c, when);
    assert_selfcheck_ok(c, when);
    let freed = reset_to_boot(c, boot, when);
    assert!(freed >= handles as u64, "{when}: freed {freed} < {handles}");
    assert_selfcheck_ok(c, &format!("{when}, after reset"));
}

#[test]
fn recipe_a_atomic_pages_by_order_then_every_view() {
    let (guest, mut c, boot) = boot("2G", "");
    with_guest_log(&guest, || {
        let n = pages_by_order_until_507(&mut c, "GFP_ATOMIC");
        assert!(n > 200, "only {n} GFP_ATOMIC allocations");
        views_selfcheck_reset(&mut c, &boot, n, "recipe (a)");
    });
}

/// `GFP_HIGHUSER` order 0 until 507 after lowmem was drained by `lowmem_gfp`
/// order by order: every handle must still be answered, every HighMem page
/// handed out accounted exactly, the listing paged whole.
fn highmem_after_lowmem(drain: fn(&mut Client) -> usize, when: &str) {
    // api_quota=100: the quota would stop the HighMem loop at half of
    // memory; the recipe is about running HighMem dry.
    let (guest, mut c, boot) = boot("2G", "api_quota=100");
    with_guest_log(&guest, || {
        let lowmem = drain(&mut c);
        // Free pages, those waiting on the per-CPU lists included.
        let free = |c: &mut Client| {
            let z = populated_zone(c, "HighMem").expect("a 2G guest has HighMem");
            z["free"].as_u64().unwrap() + z["pagesets"][0]["count"].as_u64().unwrap()
        };
        let high_free = free(&mut c);
        let pages = present_pages(&mut c);
        let body = json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"});
        let high = until_507(&mut c, &body, pages + 64, "ENOMEM");
        let n = lowmem + high;

        // The first page of the listing, then all of it by offset.
        let first = get_json(&mut c, "/api/allocations");
        assert_eq!(first["total"], n as u64);
        assert_eq!(first["allocations"].as_array().unwrap().len(), n.min(1000));
        let all = all_allocations(&mut c);
        assert_eq!(all.len(), n);
        let in_highmem = all.iter().filter(|h| h["zone"] == "HighMem").count() as u64;
        assert_eq!(
            high_free - free(&mut c),
            in_highmem,
            "{when}: HighMem pages taken vs HighMem handles ({high} GFP_HIGHUSER 201s)"
        );
        eprintln!("{when}: {lowmem} lowmem handles, {high} GFP_HIGHUSER, {in_highmem} in HighMem");
        views_selfcheck_reset(&mut c, &boot, n, when);
    });
}

#[test]
fn recipe_b_kernel_pages_then_all_of_highmem_then_paged_allocations() {
    highmem_after_lowmem(|c| pages_by_order_until_507(c, "GFP_KERNEL"), "recipe (b)");
}

/// Recipe (b) after recipe (a)'s GFP_ATOMIC drain, which leaves lowmem below
/// MIN: the handles for HighMem pages must then come from the kernel heap's
/// reserve, and running out of it must be a 507 too.
#[test]
fn recipe_b_after_atomic_drain() {
    highmem_after_lowmem(
        |c| pages_by_order_until_507(c, "GFP_ATOMIC"),
        "recipe (b) after (a)",
    );
}

/// Only order-10 GFP_ATOMIC blocks, then HighMem handles one page at a
/// time: before the heap's reserve limit this panicked the kernel ("memory
/// allocation of 632 bytes failed") after ~52 000 handles.
#[test]
fn highmem_handles_after_an_order_10_atomic_drain() {
    highmem_after_lowmem(
        |c| {
            let body = json!({"type":"pages","order":10,"gfp":"GFP_ATOMIC"});
            let max = present_pages(c) >> 10;
            until_507(c, &body, max, "ENOMEM")
        },
        "HighMem after order-10 GFP_ATOMIC",
    );
}

#[test]
fn recipe_c_twenty_thousand_kmalloc_8() {
    let (guest, mut c, boot) = boot("2G", "");
    with_guest_log(&guest, || {
        let body = json!({"type":"kmalloc","size":8});
        // Pipelined on one keep-alive connection, 20 000 take about a
        // second here; none may fail (160 KB of objects).
        let (n, failed) = alloc_until_fail(&mut c, &body, 20_000, WINDOW);
        assert!(failed.is_none(), "{:?}", failed.map(|r| r.text()));
        assert_eq!(n, 20_000);
        let all = all_allocations(&mut c);
        assert!(all.iter().all(|h| h["type"] == "kmalloc" && h["size"] == 8));
        views_selfcheck_reset(&mut c, &boot, n, "recipe (c)");
    });
}

/// One way to run memory dry; returns the handles it left live.
type Scenario = fn(&mut Client) -> usize;

fn pages_gfp_dma(c: &mut Client) -> usize {
    let n = pages_by_order_until_507(c, "GFP_DMA");
    assert_zones(c, &["DMA"], n);
    n
}

fn pages_gfp_dma32(c: &mut Client) -> usize {
    let n = pages_by_order_until_507(c, "GFP_DMA32");
    assert_zones(c, &["DMA32", "DMA"], n);
    n
}

fn pages_gfp_highuser(c: &mut Client) -> usize {
    // Without HighMem (32M, 16M) GFP_HIGHUSER falls back to lowmem.
    let n = pages_by_order_until_507(c, "GFP_HIGHUSER");
    assert_zones(c, &["HighMem", "Normal", "DMA32", "DMA"], n);
    n
}

fn kmalloc_4096(c: &mut Client) -> usize {
    let max = present_pages(c) + 64;
    until_507(c, &json!({"type":"kmalloc","size":4096}), max, "ENOMEM")
}

fn vmalloc_1mib(c: &mut Client) -> usize {
    let max = present_pages(c) / 256 + 4096 + 64;
    until_507(c, &json!({"type":"vmalloc","size":1 << 20}), max, "ENOMEM")
}

fn dma_64k(c: &mut Client) -> usize {
    let max = present_pages(c) / 16 + 64;
    let n = until_507(c, &json!({"type":"dma","size":65536}), max, "ENOMEM");
    let coherent = get_json(c, "/api/dma")["coherent"]
        .as_array()
        .unwrap()
        .len();
    assert!(coherent >= n, "/api/dma lists {coherent} of {n} buffers");
    n
}

/// kmap of distinct HighMem pages until the pkmap slots run out: exactly
/// the free slots succeed, the next is 507. Without HighMem every page is
/// direct-mapped and kmap takes no slot, however many.
fn kmap_slots(c: &mut Client) -> usize {
    let info = get_json(c, "/api/kmap")["pkmap"].clone();
    let free_slots = (info["slots"].as_u64().unwrap() - info["used"].as_u64().unwrap()) as usize;
    assert!(free_slots >= 1000, "{info}");
    let has_highmem = populated_zone(c, "HighMem").is_some();
    let body = json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"});
    let ids: Vec<u64> = (0..free_slots + 8)
        .map(|_| {
            let r = alloc(c, &body);
            assert_eq!(r.status, 201, "{}", r.text());
            r.json()["id"].as_u64().unwrap()
        })
        .collect();
    let mut mapped = 0;
    for &id in &ids {
        let r = post(c, "/api/kmap", &json!({"id":id}));
        if matches!(r.status, 200 | 201) {
            let slot = &r.json()["slot"];
            assert_eq!(slot.is_null(), !has_highmem, "kmap of {id}: {}", r.text());
            mapped += 1;
        } else {
            assert!(has_highmem, "kmap of a lowmem page refused: {}", r.text());
            assert_507(&r, "ENOMEM", "kmap with every slot taken");
            break;
        }
    }
    if has_highmem {
        assert_eq!(mapped, free_slots, "kmaps before the slots ran out");
        let used = get_json(c, "/api/kmap")["pkmap"]["used"].clone();
        assert_eq!(used, info["slots"], "every pkmap slot in use");
    } else {
        assert_eq!(mapped, ids.len());
    }
    ids.len()
}

/// A pool over a cache of 64 KiB objects: mempool_alloc takes from the
/// cache until it runs dry, then the pool's reserve, then 507 (with
/// `"wait_ms":0`: by default a `GFP_KERNEL` mempool_alloc would sleep for
/// an element; see wait.rs).
fn mempool(c: &mut Client) -> usize {
    let r = post(
        c,
        "/api/caches",
        &json!({"name":"exh-pool-obj","size":65536}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = post(
        c,
        "/api/mempools",
        &json!({"name":"exh-pool","cache":"exh-pool-obj","min_nr":4}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let max = present_pages(c) / 16 + 64;
    let n = until_507(
        c,
        &json!({"type":"mempool","pool":"exh-pool","wait_ms":0}),
        max,
        "ENOMEM",
    );
    let pools = get_json(c, "/api/mempools")["pools"].clone();
    let pool = pools
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "exh-pool")
        .unwrap_or_else(|| panic!("{pools}"));
    assert_eq!(pool["curr_nr"], 0, "the reserve is used up: {pool}");
    assert!(n >= 4, "{n}");
    n
}

fn cache_objects(c: &mut Client) -> usize {
    let r = post(c, "/api/caches", &json!({"name":"exh-obj","size":65536}));
    assert_eq!(r.status, 201, "{}", r.text());
    let max = present_pages(c) / 16 + 64;
    until_507(c, &json!({"type":"cache","cache":"exh-obj"}), max, "ENOMEM")
}

/// Every handle's zone is one of `zones`, and there are `n` of them.
fn assert_zones(c: &mut Client, zones: &[&str], n: usize) {
    let all = all_allocations(c);
    assert_eq!(all.len(), n);
    for h in &all {
        let z = h["zone"].as_str().unwrap_or_default();
        assert!(zones.contains(&z), "{h} not in {zones:?}");
    }
}

const SCENARIOS: [(&str, Scenario); 10] = [
    ("pages GFP_DMA", pages_gfp_dma),
    ("pages GFP_DMA32", pages_gfp_dma32),
    ("pages GFP_HIGHUSER", pages_gfp_highuser),
    ("kmalloc 4096", kmalloc_4096),
    ("vmalloc 1 MiB", vmalloc_1mib),
    ("dma 64 KiB", dma_64k),
    ("kmap slots", kmap_slots),
    ("mempool", mempool),
    ("cache objects", cache_objects),
    // Twice the first: a reset leaves nothing behind that changes the next run.
    ("pages GFP_DMA again", pages_gfp_dma),
];

fn every_allocator_runs_dry(mem: &str) {
    let (guest, mut c, boot) = boot(mem, "api_quota=100");
    with_guest_log(&guest, || {
        for (name, scenario) in SCENARIOS {
            let when = format!("{mem}: {name}");
            let t = std::time::Instant::now();
            let n = scenario(&mut c);
            views_selfcheck_reset(&mut c, &boot, n, &when);
            eprintln!("{when}: {n} handles, {:?}", t.elapsed());
        }
    });
}

#[test]
fn every_allocator_runs_dry_in_2g() {
    every_allocator_runs_dry("2G");
}

#[test]
fn every_allocator_runs_dry_in_32m() {
    every_allocator_runs_dry("32M");
}

#[test]
fn every_allocator_runs_dry_in_16m() {
    every_allocator_runs_dry("16M");
}

/// The first "wrong answer": kmalloc of every size until 507, one
/// size after the other without a reset between, then every view — reset
/// must still give back the boot buddyinfo exactly (it once left the same
/// free total in another split).
#[test]
fn kmalloc_of_every_size_until_507_then_reset_is_exact() {
    let (guest, mut c, boot) = boot("32M", "api_quota=100");
    with_guest_log(&guest, || {
        let sizes = [
            8usize,
            16,
            32,
            64,
            96,
            128,
            192,
            256,
            512,
            1024,
            2048,
            4096,
            8192,
            16384,
            65536,
            1 << 20,
            4 << 20,
        ];
        let mut total = 0;
        for size in sizes {
            let body = json!({"type":"kmalloc","size":size});
            let (n, failed) = alloc_until_fail(&mut c, &body, 200_000, WINDOW);
            let failed = failed.unwrap_or_else(|| panic!("kmalloc({size}) never failed"));
            assert_507(&failed, "ENOMEM", &format!("kmalloc({size}) until 507"));
            total += n;
        }
        assert!(total > 1000, "{total} objects");
        let listed = get_json(&mut c, "/api/allocations?limit=1");
        assert_eq!(listed["total"], total as u64);
        let when = "every kmalloc size until 507";
        assert_views_ok(&mut c, when);
        assert_selfcheck_ok(&mut c, when);
        let freed = reset_to_boot(&mut c, &boot, when);
        assert_eq!(freed, total as u64);
        assert_selfcheck_ok(&mut c, &format!("{when}, after reset"));
    });
}
