//! The page cache, the LRU, direct reclaim and kswapd.

use super::*;

const FULL: Opts = Opts {
    quota_pct: 100,
    ..DEFAULT
};

fn expected_crc(id: u64, nr: usize) -> u64 {
    let mut all = Vec::new();
    for i in 0..nr {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        crate::api::pagecache::fill_page(id, i, &mut page);
        all.extend_from_slice(&page);
    }
    crc32(&all)
}

fn vmstat(t: &mut T<'_>, name: &str) -> u64 {
    t.json("/api/vmstat")[name].as_u64().unwrap()
}

#[test]
fn pagecache_is_reclaimed_under_pressure_and_read_back_unchanged() {
    run(FULL, |t| {
        let boot = t.boot_buddyinfo();
        let h = t.alloc_ok(json!({"type":"pagecache","size":65536}));
        let id = h["id"].as_u64().unwrap();
        assert_eq!(
            (h["nr_pages"].as_u64(), h["resident_pages"].as_u64()),
            (Some(16), Some(16))
        );
        let mi = t.json("/api/meminfo");
        assert_eq!(mi["Cached"], 64);
        assert_eq!(mi["Inactive(file)"], 64);
        let crc = expected_crc(id, 16);
        let sum = t.json(&format!("/api/alloc/{id}/checksum"));
        assert_eq!(hex(&sum["crc32"]), crc);
        // Read twice: the pages are active now.
        t.json(&format!("/api/alloc/{id}/checksum"));
        assert_eq!(t.json("/api/meminfo")["Active(file)"], 64);
        let r = t.request(
            "POST",
            &format!("/api/alloc/{id}/fill"),
            Some(r#"{"byte":1}"#),
        );
        assert_eq!(error(&r).0, 400);
        // Fill memory with pages: direct reclaim drops the page cache
        // before anything is refused.
        let mut filled = Vec::new();
        loop {
            let r = t.alloc(json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER","oom":false}));
            if r.status != 201 {
                assert_eq!(error(&r), (507, "ENOMEM".into()));
                break;
            }
            filled.push(
                serde_json::from_slice::<Value>(&r.body).unwrap()["id"]
                    .as_u64()
                    .unwrap(),
            );
            assert!(filled.len() < 100_000);
        }
        assert_eq!(t.json(&format!("/api/alloc/{id}"))["resident_pages"], 0);
        assert_eq!(t.json("/api/meminfo")["Cached"], 0);
        // kswapd (between requests) and direct reclaim (inside the one that
        // found no page) dropped all 16.
        assert!(vmstat(t, "pgsteal_direct") + vmstat(t, "pgsteal_kswapd") >= 16);
        // No memory to read it back: 507, nothing changes.
        let r = t.get(&format!("/api/alloc/{id}/checksum"));
        assert_eq!(error(&r).0, 507);
        // Free the pages (the pressure goes), read back: 16 major faults,
        // the same bytes.
        let faults = vmstat(t, "pgmajfault");
        for id in filled.drain(..) {
            t.request("DELETE", &format!("/api/alloc/{id}"), None);
        }
        let sum = t.json(&format!("/api/alloc/{id}/checksum"));
        assert_eq!(hex(&sum["crc32"]), crc);
        assert!(vmstat(t, "pgmajfault") - faults >= 16);
        assert_eq!(t.json(&format!("/api/alloc/{id}"))["resident_pages"], 16);
        assert_eq!(t.json("/api/selfcheck")["ok"], true);
        t.request("POST", "/api/reset", None);
        assert_eq!(t.buddyinfo(), boot);
        assert_eq!(t.json("/api/meminfo")["Cached"], 0);
    });
}

#[test]
fn kswapd_reclaims_to_the_high_watermark_after_the_request_that_woke_it() {
    run(FULL, |t| {
        let boot = t.boot_buddyinfo();
        // A cache left with empty slabs: kswapd's shrinker returns them.
        let r = t.request(
            "POST",
            "/api/caches",
            Some(r#"{"name":"shrinkme","size":2000}"#),
        );
        assert_eq!(r.status, 201);
        let objs: Vec<u64> = (0..10)
            .map(|_| {
                t.alloc_ok(json!({"type":"cache","cache":"shrinkme"}))["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        for id in objs {
            t.request("DELETE", &format!("/api/alloc/{id}"), None);
        }
        let slabs = |t: &mut T<'_>| -> u64 {
            t.json("/api/slabinfo")["caches"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "shrinkme")
                .unwrap()["num_slabs"]
                .as_u64()
                .unwrap()
        };
        assert!(slabs(t) > 0);
        let file_pages = 4096u64;
        let h = t.alloc_ok(json!({"type":"pagecache","size":file_pages * PAGE_SIZE}));
        let id = h["id"].as_u64().unwrap();
        // Fill memory until an allocation has to dip below a low watermark
        // (the slow path): that wakes kswapd, which runs before the next
        // request — here the GET of /api/vmstat.
        let mut n = 0;
        while vmstat(t, "pgsteal_kswapd") == 0 {
            let r = t.alloc(json!({"type":"pages","order":4,"gfp":"GFP_HIGHUSER","oom":false}));
            assert_eq!(r.status, 201, "{}", r.text());
            n += 1;
            assert!(n < 10_000, "kswapd never ran");
        }
        // kswapd stopped only once every zone was above its high mark.
        for z in t.json("/api/zones")["zones"].as_array().unwrap() {
            if z["managed"].as_u64() > Some(0) {
                assert!(
                    z["free"].as_u64() >= z["watermarks"]["high"].as_u64(),
                    "{} free {} < high {}",
                    z["name"],
                    z["free"],
                    z["watermarks"]["high"]
                );
            }
        }
        let resident = t.json(&format!("/api/alloc/{id}"))["resident_pages"]
            .as_u64()
            .unwrap();
        assert!(resident < file_pages, "kswapd dropped part of the file");
        assert_eq!(
            file_pages - resident,
            vmstat(t, "pgsteal_kswapd") + vmstat(t, "pgsteal_direct")
        );
        assert_eq!(t.json("/api/selfcheck")["ok"], true);
        t.request("POST", "/api/reset", None);
        assert_eq!(t.buddyinfo(), boot);
    });
}
