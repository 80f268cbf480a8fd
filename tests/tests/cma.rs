//! CMA on a real guest (issue 11): `cma=64M` sets aside 64 MiB of
//! MIGRATE_CMA pageblocks that unmovable allocations never touch and
//! movable ones borrow; with the area full of movable pages,
//! `{"type":"cma"}` takes a 32 MiB contiguous run back, migrating the
//! movable pages in the way (their bytes survive), and `DELETE` gives it
//! back.

use serde_json::json;
use tests::api::{
    all_allocations, alloc, alloc_until_fail, assert_selfcheck_ok, buddyinfo, delete_req, get_json,
    meminfo_kb, pipelined, post, post_req, reset_to_boot, with_guest_log,
};
use tests::check::hex;
use tests::http::Client;
use tests::{BootOptions, boot_ready};

const MIB: u64 = 1 << 20;
const AREA_PAGES: u64 = (64 * MIB) >> 12;
const RUN_PAGES: u64 = (32 * MIB) >> 12;

#[test]
fn cma_area_full_of_movable_pages_gives_a_32m_run_back() {
    let (guest, port) = boot_ready(
        BootOptions::default()
            .mem("256M")
            .append("cma=64M api_quota=100"),
    );
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        let cma = get_json(&mut c, "/api/cma");
        let area = &cma["areas"][0];
        assert_eq!(area["size"], 64 * MIB, "{cma}");
        assert_eq!(area["used_pages"], 0);
        assert_eq!(area["free_pages"], AREA_PAGES);
        let base = hex(&area["base"]) >> 12;
        let end = base + AREA_PAGES;
        assert_eq!(meminfo_kb(&mut c, "CmaTotal"), 64 * 1024);
        assert_eq!(meminfo_kb(&mut c, "CmaFree"), 64 * 1024);
        let pt = c.request("GET", "/proc/pagetypeinfo", None).text();
        assert!(pt.contains("type          CMA"), "{pt}");

        // Unmovable blocks of every order until memory runs out: none
        // comes from the area.
        for order in (0..=10u32).rev() {
            let body = json!({"type":"pages","order":order,"oom":false});
            let (_, failed) = alloc_until_fail(&mut c, &body, 100_000, 16);
            assert_eq!(failed.map(|r| r.status), Some(507), "order {order}");
        }
        assert_eq!(
            meminfo_kb(&mut c, "CmaFree"),
            64 * 1024,
            "no unmovable page in CMA"
        );

        // Movable pages fill the area: nothing else is free.
        let body = r#"{"type":"pages","order":0,"gfp":"GFP_HIGHUSER_MOVABLE","oom":false}"#;
        let mut movable: Vec<(u64, u64)> = Vec::new();
        'fill: loop {
            let batch: Vec<String> = (0..512).map(|_| post_req("/api/alloc", body)).collect();
            for r in pipelined(&mut c, &batch, 16) {
                if r.status != 201 {
                    break 'fill;
                }
                let h = r.json();
                movable.push((h["id"].as_u64().unwrap(), h["pfn"].as_u64().unwrap()));
            }
        }
        let in_area: Vec<(u64, u64)> = movable
            .iter()
            .copied()
            .filter(|&(_, p)| (base..end).contains(&p))
            .collect();
        // (Full down to the zone's min watermark.)
        assert!(
            in_area.len() as u64 > AREA_PAGES * 9 / 10,
            "{} in the area",
            in_area.len()
        );
        assert!(meminfo_kb(&mut c, "CmaFree") < 4096, "the area is full");

        // Room to migrate into: the unmovable blocks go again.
        let unmovable: Vec<String> = all_allocations(&mut c)
            .iter()
            .filter(|h| h["gfp"] == "GFP_KERNEL")
            .map(|h| delete_req(&format!("/api/alloc/{}", h["id"])))
            .collect();
        for r in pipelined(&mut c, &unmovable, 16) {
            assert_eq!(r.status, 200, "{}", r.text());
        }
        // A byte pattern in a sample of the area's movable pages.
        let sample: Vec<(u64, u8)> = in_area
            .iter()
            .step_by(64)
            .map(|&(id, p)| (id, (p % 251) as u8))
            .collect();
        for &(id, byte) in &sample {
            let r = post(
                &mut c,
                &format!("/api/alloc/{id}/fill"),
                &json!({"byte":byte}),
            );
            assert_eq!(r.status, 200);
        }

        // 32 MiB of the area, contiguous: the movable pages in the way move.
        let moved_before = get_json(&mut c, "/api/vmstat")["pgmigrate_success"]
            .as_u64()
            .unwrap();
        let r = alloc(&mut c, &json!({"type":"cma","size":32 * MIB}));
        assert_eq!(r.status, 201, "{}", r.text());
        let h = r.json();
        let (id, pfn) = (h["id"].as_u64().unwrap(), h["pfn"].as_u64().unwrap());
        assert_eq!(h["nr_pages"], RUN_PAGES);
        assert!(pfn >= base && pfn + RUN_PAGES <= end, "{h}");
        assert_eq!(
            pfn % 256,
            0,
            "aligned as dma_alloc_contiguous asks (1 MiB cap)"
        );
        let moved = get_json(&mut c, "/api/vmstat")["pgmigrate_success"]
            .as_u64()
            .unwrap()
            - moved_before;
        assert!(
            moved > RUN_PAGES * 8 / 10,
            "the run was full of movable pages: {moved} moved"
        );
        for &(mid, byte) in &sample {
            let m = get_json(&mut c, &format!("/api/alloc/{mid}"));
            let p = m["pfn"].as_u64().unwrap();
            assert!(
                !(pfn..pfn + RUN_PAGES).contains(&p),
                "page {mid} still in the run"
            );
            let sum = get_json(&mut c, &format!("/api/alloc/{mid}/checksum"));
            assert_eq!(
                hex(&sum["crc32"]),
                u64::from(crc32fast::hash(&vec![byte; 4096]))
            );
        }
        assert_eq!(
            get_json(&mut c, "/api/cma")["areas"][0]["used_pages"],
            RUN_PAGES
        );
        // Fill and checksum the run itself.
        let r = post(
            &mut c,
            &format!("/api/alloc/{id}/fill"),
            &json!({"byte":0x42}),
        );
        assert_eq!(r.status, 200);
        let sum = get_json(&mut c, &format!("/api/alloc/{id}/checksum"));
        assert_eq!(
            hex(&sum["crc32"]),
            u64::from(crc32fast::hash(&vec![0x42u8; 32 * MIB as usize]))
        );
        assert_selfcheck_ok(&mut c, "with a CMA run");
        assert_eq!(
            c.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
        assert_eq!(get_json(&mut c, "/api/cma")["areas"][0]["used_pages"], 0);

        // dma_alloc_coherent over 4 MiB comes from the area too (where no
        // page has to move: the registry knows no page's owner).
        let r = alloc(&mut c, &json!({"type":"dma","size":6 * MIB}));
        assert_eq!(r.status, 201, "{}", r.text());
        let d = r.json();
        assert_eq!(
            (d["nr_pages"].as_u64(), d["order"].is_null()),
            (Some(1536), true),
            "{d}"
        );
        let dpfn = d["pfn"].as_u64().unwrap();
        assert!(dpfn >= base && dpfn + 1536 <= end, "{d}");
        let sum = get_json(&mut c, &format!("/api/alloc/{}/checksum", d["id"]));
        assert_eq!(
            hex(&sum["crc32"]),
            u64::from(crc32fast::hash(&vec![0u8; 6 * MIB as usize])),
            "zeroed"
        );
        let listed = get_json(&mut c, "/api/dma");
        assert!(
            listed.to_string().contains(&format!("{:#x}", dpfn << 12)),
            "{listed}"
        );
        assert_eq!(get_json(&mut c, "/api/cma")["areas"][0]["used_pages"], 1536);
        let r = c.request("DELETE", &format!("/api/alloc/{}", d["id"]), None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(get_json(&mut c, "/api/cma")["areas"][0]["used_pages"], 0);
        reset_to_boot(&mut c, &boot, "after CMA");
        assert_eq!(meminfo_kb(&mut c, "CmaFree"), 64 * 1024);
    });
}
