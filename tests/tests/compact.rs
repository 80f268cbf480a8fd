//! Compaction on a real guest (issue 11): HighMem checkered with movable
//! pages is compacted by `POST /api/compact` — pages move and keep their
//! bytes, a kmapped page stays, order-10 blocks come back — and an order-4
//! allocation that only compaction can serve succeeds through direct
//! compaction (`compact_stall`, `compact_success`).

use serde_json::{Value, json};
use tests::api::{
    alloc, assert_selfcheck_ok, buddyinfo, delete_req, get_json, pipelined, post, post_req,
    reset_to_boot, with_guest_log,
};
use tests::check::hex;
use tests::http::Client;
use tests::{BootOptions, boot_ready};

const PAGE: usize = 4096;

/// Movable order-0 pages until one lands outside HighMem; every other one
/// (by frame) freed again. Returns the kept `(id, pfn)`s.
fn checker_highmem(c: &mut Client) -> Vec<(u64, u64)> {
    let body = r#"{"type":"pages","order":0,"gfp":"GFP_HIGHUSER_MOVABLE","oom":false}"#;
    let mut pages = Vec::new();
    'fill: loop {
        let batch: Vec<String> = (0..256).map(|_| post_req("/api/alloc", body)).collect();
        for r in pipelined(c, &batch, 32) {
            assert_eq!(r.status, 201, "{}", r.text());
            let h = r.json();
            let id = h["id"].as_u64().unwrap();
            if h["zone"] != "HighMem" {
                let _ = c.request("DELETE", &format!("/api/alloc/{id}"), None);
                pages.push((id, u64::MAX));
                continue;
            }
            pages.push((id, h["pfn"].as_u64().unwrap()));
        }
        if pages.iter().any(|&(_, pfn)| pfn == u64::MAX) {
            break 'fill;
        }
    }
    // Pages past the first one outside HighMem were freed above or are
    // lower-zone pages: free those too.
    let strays: Vec<String> = pages
        .iter()
        .filter(|&&(_, pfn)| pfn == u64::MAX)
        .map(|&(id, _)| delete_req(&format!("/api/alloc/{id}")))
        .collect();
    let _ = pipelined(c, &strays, 32);
    let mut high: Vec<(u64, u64)> = pages.into_iter().filter(|&(_, p)| p != u64::MAX).collect();
    high.sort_by_key(|&(_, pfn)| pfn);
    let frees: Vec<String> = high
        .iter()
        .skip(1)
        .step_by(2)
        .map(|&(id, _)| delete_req(&format!("/api/alloc/{id}")))
        .collect();
    for r in pipelined(c, &frees, 32) {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    high.into_iter().step_by(2).collect()
}

fn highmem_free_area(c: &mut Client) -> Vec<u64> {
    let z = get_json(c, "/api/zones");
    z["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["name"] == "HighMem")
        .unwrap()["free_area"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect()
}

#[test]
fn compact_memory_moves_pages_keeps_bytes_and_skips_a_kmapped_one() {
    let (guest, port) = boot_ready(
        BootOptions::default()
            .mem("160M")
            .append("lowmem=128M api_quota=100"),
    );
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        let kept = checker_highmem(&mut c);
        assert!(kept.len() > 2000, "{} pages kept", kept.len());
        let before = highmem_free_area(&mut c);
        assert_eq!(before[10], 0, "checkered: {before:?}");
        // A byte pattern in every 16th kept page; one of them kmapped.
        let sample: Vec<(u64, u64, u8)> = kept
            .iter()
            .step_by(16)
            .map(|&(id, pfn)| (id, pfn, (pfn % 251) as u8))
            .collect();
        for &(id, _, byte) in &sample {
            let r = post(
                &mut c,
                &format!("/api/alloc/{id}/fill"),
                &json!({"byte":byte}),
            );
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let (pinned, pinned_pfn, _) = sample[sample.len() / 2];
        let k = post(&mut c, "/api/kmap", &json!({"id":pinned}));
        assert_eq!(k.status, 200, "{}", k.text());
        let slot = k.json()["slot"].as_u64().unwrap();

        let t = "/sys/kernel/tracing";
        let r = c.request("PUT", &format!("{t}/events/compaction/enable"), Some("1"));
        assert_eq!(r.status, 200, "{}", r.text());
        let r = post(&mut c, "/api/compact", &json!({"zone":"HighMem"}));
        assert_eq!(r.status, 200, "{}", r.text());
        let out: Value = r.json();
        let migrated = out["migrated"].as_u64().unwrap();
        assert!(migrated > kept.len() as u64 / 4, "{out}");
        assert!(
            out["failed"].as_u64().unwrap() >= 1,
            "the kmapped page: {out}"
        );
        let after: Vec<u64> = out["free_area_after"]["HighMem"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        assert!(after[10] > 0, "order-10 blocks again: {after:?}");
        assert_eq!(after, highmem_free_area(&mut c));

        for &(id, pfn, byte) in &sample {
            let h = get_json(&mut c, &format!("/api/alloc/{id}"));
            assert_eq!(h["zone"], "HighMem");
            let sum = get_json(&mut c, &format!("/api/alloc/{id}/checksum"));
            let want = crc32fast::hash(&vec![byte; PAGE]);
            assert_eq!(
                hex(&sum["crc32"]),
                u64::from(want),
                "handle {id} (was pfn {pfn:#x})"
            );
        }
        let h = get_json(&mut c, &format!("/api/alloc/{pinned}"));
        assert_eq!(
            h["pfn"].as_u64(),
            Some(pinned_pfn),
            "the kmapped page stayed"
        );
        // compaction:mm_compaction_begin/end in Linux's format.
        let trace = c.request("GET", &format!("{t}/trace"), None).text();
        assert!(
            trace.contains("mm_compaction_begin: zone_start=0x"),
            "{trace}"
        );
        assert!(trace.contains(", mode=sync status=complete"), "{trace}");
        let v = get_json(&mut c, "/api/vmstat");
        assert_eq!(v["pgmigrate_success"].as_u64(), Some(migrated));
        assert!(v["pgmigrate_fail"].as_u64().unwrap() >= 1);
        assert!(v["compact_migrate_scanned"].as_u64().unwrap() > 0);
        let pt = c.request("GET", "/proc/pagetypeinfo", None).text();
        assert!(pt.contains("zone  HighMem, type      Movable"), "{pt}");
        assert_selfcheck_ok(&mut c, "after compaction");
        assert_eq!(
            c.request("DELETE", &format!("/api/kmap/{slot}"), None)
                .status,
            200
        );
        reset_to_boot(&mut c, &boot, "after compaction");
    });
}

#[test]
fn an_order_4_allocation_succeeds_through_direct_compaction() {
    // 32 MiB of HighMem to checker, as in compact_memory's test; lowmem
    // 160 MiB so that the kernel heap's reserve (lowmem/128, a power of
    // two: 2 MiB) holds the handle table of the checkered HighMem. With
    // 1 MiB it ran out, and the last request then passed the API's
    // "kernel memory is low" check only if the drain happened to leave
    // DMA32 a page or two above its min watermark.
    let (guest, port) = boot_ready(
        BootOptions::default()
            .mem("192M")
            .append("lowmem=160M api_quota=100"),
    );
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        // Every steal of another type's block is traced.
        let t = "/sys/kernel/tracing";
        let path = format!("{t}/events/kmem/mm_page_alloc_extfrag/enable");
        assert_eq!(c.request("PUT", &path, Some("1")).status, 200);
        // HighMem checkered first (the kernel heap grows for the handles
        // while memory is plentiful), then the low zones out of the way:
        // every block down to order 4 a GFP_KERNEL request can get (few,
        // large handles; no OOM killer).
        let _kept = checker_highmem(&mut c);
        // HighMem's blocks of order 4 and up (what was left between its
        // watermarks when the fill moved on to DMA32) taken too.
        for order in (4..=10u32).rev() {
            loop {
                let r = alloc(
                    &mut c,
                    &json!({"type":"pages","order":order,"gfp":"GFP_HIGHUSER","oom":false}),
                );
                if r.status != 201 {
                    break;
                }
                let h = r.json();
                if h["zone"] != "HighMem" {
                    let _ = c.request("DELETE", &format!("/api/alloc/{}", h["id"]), None);
                    break;
                }
            }
        }
        assert_eq!(highmem_free_area(&mut c)[4..], [0; 7]);
        // GFP_HIGHUSER (unmovable) blocks stole from HighMem's Movable ones.
        let trace = c.request("GET", &format!("{t}/trace"), None).text();
        assert!(
            trace.contains("mm_page_alloc_extfrag: page=")
                && trace.contains("alloc_migratetype=0 fallback_migratetype=1"),
            "{trace}"
        );
        for order in (4..=10u32).rev() {
            let body = json!({"type":"pages","order":order,"oom":false});
            let (_, failed) = tests::api::alloc_until_fail(&mut c, &body, 100_000, 16);
            assert_eq!(failed.map(|r| r.status), Some(507), "order {order}");
        }
        let before = get_json(&mut c, "/api/vmstat");
        // No order-4 block is free anywhere: only compaction can make one.
        let r = alloc(
            &mut c,
            &json!({"type":"pages","order":4,"gfp":"GFP_HIGHUSER_MOVABLE","oom":false}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["zone"], "HighMem");
        let v = get_json(&mut c, "/api/vmstat");
        let d = |k: &str| v[k].as_u64().unwrap() - before[k].as_u64().unwrap();
        assert_eq!(
            (d("compact_stall"), d("compact_success"), d("compact_fail")),
            (1, 1, 0)
        );
        assert!(d("pgmigrate_success") > 0);
        assert_selfcheck_ok(&mut c, "after direct compaction");
        reset_to_boot(&mut c, &boot, "after direct compaction");
    });
}
