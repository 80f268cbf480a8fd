//! CMA on a real guest (issue 11): `cma=16M` sets aside 16 MiB of
//! MIGRATE_CMA pageblocks that unmovable allocations never touch and
//! movable ones borrow; `{"type":"cma"}` takes an 8 MiB contiguous run
//! back, migrating the movable pages in the way (their bytes survive), and
//! `DELETE` gives it back.

use serde_json::json;
use tests::api::{
    alloc, assert_selfcheck_ok, buddyinfo, delete_req, get_json, meminfo_kb, pipelined, post,
    post_req, reset_to_boot, with_guest_log,
};
use tests::check::hex;
use tests::http::Client;
use tests::{BootOptions, boot_ready};

const MIB: u64 = 1 << 20;

#[test]
fn cma_area_lends_to_movable_pages_and_cma_alloc_takes_a_run_back() {
    let (guest, port) = boot_ready(
        BootOptions::default()
            .mem("128M")
            .append("cma=16M api_quota=100"),
    );
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        let cma = get_json(&mut c, "/api/cma");
        let area = &cma["areas"][0];
        assert_eq!(area["size"], 16 * MIB, "{cma}");
        assert_eq!(
            (area["used_pages"].as_u64(), area["free_pages"].as_u64()),
            (Some(0), Some(4096))
        );
        let (base, end) = {
            let b = hex(&area["base"]) >> 12;
            (b, b + 4096)
        };
        assert_eq!(meminfo_kb(&mut c, "CmaTotal"), 16 * 1024);
        assert_eq!(meminfo_kb(&mut c, "CmaFree"), 16 * 1024);
        let pt = c.request("GET", "/proc/pagetypeinfo", None).text();
        assert!(pt.contains("type          CMA"), "{pt}");

        // Unmovable pages until memory runs out: none in the area.
        let (n, failed) = tests::api::alloc_until_fail(
            &mut c,
            &json!({"type":"pages","order":0,"oom":false}),
            100_000,
            16,
        );
        assert_eq!(failed.map(|r| r.status), Some(507));
        assert!(n > 1000);
        assert_eq!(
            meminfo_kb(&mut c, "CmaFree"),
            16 * 1024,
            "no unmovable page in CMA"
        );
        // Movable pages do go there.
        let mut movable: Vec<(u64, u64)> = Vec::new();
        for r in pipelined(
            &mut c,
            &(0..1024)
                .map(|_| {
                    post_req(
                        "/api/alloc",
                        r#"{"type":"pages","order":0,"gfp":"GFP_HIGHUSER_MOVABLE","oom":false}"#,
                    )
                })
                .collect::<Vec<_>>(),
            16,
        ) {
            if r.status == 201 {
                let h = r.json();
                movable.push((h["id"].as_u64().unwrap(), h["pfn"].as_u64().unwrap()));
            }
        }
        let in_area: Vec<(u64, u64)> = movable
            .iter()
            .copied()
            .filter(|&(_, p)| (base..end).contains(&p))
            .collect();
        assert!(
            in_area.len() > 500,
            "{} of {} movable pages in the area",
            in_area.len(),
            movable.len()
        );
        assert!(meminfo_kb(&mut c, "CmaFree") < 16 * 1024 - 2000);
        // Room to migrate into: free the unmovable pages again.
        let unmovable: Vec<String> = tests::api::all_allocations(&mut c)
            .iter()
            .filter(|h| h["gfp"] == "GFP_KERNEL")
            .map(|h| delete_req(&format!("/api/alloc/{}", h["id"])))
            .collect();
        for r in pipelined(&mut c, &unmovable, 16) {
            assert_eq!(r.status, 200, "{}", r.text());
        }
        // Bytes in the movable pages of the area.
        let sample: Vec<(u64, u8)> = in_area
            .iter()
            .step_by(8)
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

        // 8 MiB of the area, contiguous: the movable pages in the way move.
        let moved_before = get_json(&mut c, "/api/vmstat")["pgmigrate_success"]
            .as_u64()
            .unwrap();
        let r = alloc(&mut c, &json!({"type":"cma","size":8 * MIB}));
        assert_eq!(r.status, 201, "{}", r.text());
        let h = r.json();
        let (id, pfn) = (h["id"].as_u64().unwrap(), h["pfn"].as_u64().unwrap());
        assert_eq!(h["nr_pages"], 2048);
        assert!(pfn >= base && pfn + 2048 <= end, "{h}");
        assert_eq!(
            pfn % 256,
            0,
            "aligned as dma_alloc_contiguous asks (1 MiB cap)"
        );
        let moved = get_json(&mut c, "/api/vmstat")["pgmigrate_success"]
            .as_u64()
            .unwrap()
            - moved_before;
        assert!(moved > 0, "movable pages were in the way");
        for &(mid, byte) in &sample {
            let m = get_json(&mut c, &format!("/api/alloc/{mid}"));
            let p = m["pfn"].as_u64().unwrap();
            assert!(
                !(pfn..pfn + 2048).contains(&p),
                "page {mid} still in the run"
            );
            let sum = get_json(&mut c, &format!("/api/alloc/{mid}/checksum"));
            assert_eq!(
                hex(&sum["crc32"]),
                u64::from(crc32fast::hash(&vec![byte; 4096]))
            );
        }
        assert_eq!(get_json(&mut c, "/api/cma")["areas"][0]["used_pages"], 2048);
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
            u64::from(crc32fast::hash(&vec![0x42u8; 8 * MIB as usize]))
        );
        assert_selfcheck_ok(&mut c, "with a CMA run");
        assert_eq!(
            c.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
        assert_eq!(get_json(&mut c, "/api/cma")["areas"][0]["used_pages"], 0);
        reset_to_boot(&mut c, &boot, "after CMA");
        assert_eq!(meminfo_kb(&mut c, "CmaFree"), 16 * 1024);
    });
}
