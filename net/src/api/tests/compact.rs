//! `POST /api/compact`: movable handles move, keep their ids and bytes,
//! and HighMem's free memory coalesces (a kmapped page staying is
//! tested on a real guest, `tests/tests/compact.rs`, and in `mm`).

use super::*;

const FULL: Opts = Opts {
    quota_pct: 100,
    ..DEFAULT
};

#[test]
fn compact_moves_movable_pages_keeps_their_bytes_and_coalesces_highmem() {
    run(FULL, |t| {
        let boot = t.buddyinfo();
        // Every HighMem page the fast path gives, as movable pages.
        let mut pages: Vec<(u64, u64)> = Vec::new();
        loop {
            let r =
                t.alloc(json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER_MOVABLE","oom":false}));
            assert_eq!(r.status, 201, "{}", r.text());
            let h: Value = serde_json::from_slice(&r.body).unwrap();
            let id = h["id"].as_u64().unwrap();
            if h["zone"] != "HighMem" {
                t.request("DELETE", &format!("/api/alloc/{id}"), None);
                break;
            }
            pages.push((id, h["pfn"].as_u64().unwrap()));
        }
        pages.sort_by_key(|&(_, pfn)| pfn);
        // Free every other one; write a byte into each kept one.
        let mut kept = Vec::new();
        for (i, &(id, pfn)) in pages.iter().enumerate() {
            if i % 2 == 1 {
                assert_eq!(
                    t.request("DELETE", &format!("/api/alloc/{id}"), None)
                        .status,
                    200
                );
            } else {
                let byte = (pfn % 251) as u8;
                let r = t.request(
                    "POST",
                    &format!("/api/alloc/{id}/fill"),
                    Some(&json!({"byte":byte}).to_string()),
                );
                assert_eq!(r.status, 200);
                kept.push((id, pfn, byte));
            }
        }
        let r = t.request("POST", "/api/compact", Some(r#"{"zone":"HighMem"}"#));
        assert_eq!(r.status, 200, "{}", r.text());
        let c: Value = serde_json::from_slice(&r.body).unwrap();
        let migrated = c["migrated"].as_u64().unwrap();
        assert!(migrated > kept.len() as u64 / 4, "{c}");
        assert_eq!(c["failed"], 0, "{c}");
        assert_eq!(c["zones"][0]["zone"], "HighMem");
        assert_eq!(c["zones"][0]["result"], "complete");
        let before = &c["free_area_before"]["HighMem"];
        let after = &c["free_area_after"]["HighMem"];
        assert!(
            c["free_area_before"].get("DMA32").is_none(),
            "only the zone asked"
        );
        assert!(
            after[10].as_u64() > before[10].as_u64(),
            "{before} → {after}"
        );

        // Every handle is still there with its bytes; some moved.
        let mut moved = 0;
        for &(id, pfn, byte) in &kept {
            let h = t.json(&format!("/api/alloc/{id}"));
            let now = h["pfn"].as_u64().unwrap();
            assert_eq!(hex(&h["phys"]), now * PAGE_SIZE);
            assert_eq!(h["zone"], "HighMem");
            if now != pfn {
                moved += 1;
            }
            let sum = t.json(&format!("/api/alloc/{id}/checksum"));
            assert_eq!(
                hex(&sum["crc32"]),
                crc32(&vec![byte; PAGE_SIZE as usize]),
                "handle {id} lost its bytes"
            );
        }
        assert_eq!(moved, migrated);

        let v = t.json("/api/vmstat");
        assert_eq!(v["pgmigrate_success"].as_u64(), Some(migrated));
        assert!(v["compact_migrate_scanned"].as_u64().unwrap() > 0);
        assert!(v["compact_free_scanned"].as_u64().unwrap() > 0);
        let sc = t.json("/api/selfcheck");
        assert_eq!(sc["ok"], true, "{sc}");

        assert_eq!(t.request("POST", "/api/reset", None).status, 200);
        assert_eq!(t.buddyinfo(), boot, "reset equals boot after compaction");
    });
}

#[test]
fn compact_of_everything_and_bad_zones() {
    run(DEFAULT, |t| {
        let r = t.request("POST", "/api/compact", None);
        assert_eq!(r.status, 200, "{}", r.text());
        let c: Value = serde_json::from_slice(&r.body).unwrap();
        let zones: Vec<&str> = c["zones"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z["zone"].as_str().unwrap())
            .collect();
        assert_eq!(zones, ["DMA", "DMA32", "HighMem"]);
        for (body, code) in [
            (r#"{"zone":"Movable"}"#, 400),
            (r#"{"zone":"Normal"}"#, 404),
            (r#"{"zone":7}"#, 400),
        ] {
            let r = t.request("POST", "/api/compact", Some(body));
            assert_eq!(error(&r).0, code, "{body}: {}", r.text());
        }
    });
}

#[test]
fn without_a_cma_area_cma_is_404_and_the_view_is_empty() {
    run(DEFAULT, |t| {
        assert_eq!(t.json("/api/cma"), json!({"areas":[]}));
        let r = t.alloc(json!({"type":"cma","size":4096}));
        assert_eq!(error(&r), (404, "ENOENT".to_string()), "{}", r.text());
        let r = t.alloc(json!({"type":"cma"}));
        assert_eq!(error(&r).0, 400);
    });
}
