//! "Failure is an answer" (API.md v2): paging of `/api/allocations`, one
//! handle by id, and the answers that used to be wrong.

use super::*;

#[test]
fn allocations_page_through_every_type_in_id_order() {
    run(DEFAULT, |t| {
        let mut ids = Vec::new();
        for i in 0..7u64 {
            let body = match i % 3 {
                0 => json!({"type":"pages","order":0}),
                1 => json!({"type":"kmalloc","size":64}),
                _ => json!({"type":"dma","size":4096}),
            };
            ids.push(t.alloc_ok(body)["id"].as_u64().unwrap());
        }
        let page = t.json("/api/allocations?offset=2&limit=3");
        assert_eq!(page["total"], 7);
        assert_eq!(
            (page["offset"].as_u64(), page["limit"].as_u64()),
            (Some(2), Some(3))
        );
        let got: Vec<u64> = page["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_u64().unwrap())
            .collect();
        assert_eq!(got, ids[2..5]);
        assert_eq!(page["allocations"][0]["type"], "dma");
        assert_eq!(page["allocations"][1]["type"], "pages");
        assert_eq!(page["allocations"][2]["type"], "kmalloc");
        // Past the end: an empty page, the total still told.
        let tail = t.json("/api/allocations?offset=99");
        assert_eq!(tail["allocations"], json!([]));
        assert_eq!(tail["total"], 7);
        for bad in ["limit=1001", "limit=-1", "offset=x", "limit=%2B5"] {
            let r = t.get(&format!("/api/allocations?{bad}"));
            assert_eq!(error(&r).0, 400, "{bad}: {}", r.text());
        }
        // One handle by id, each type.
        for &id in &ids {
            let h = t.json(&format!("/api/alloc/{id}"));
            assert_eq!(h["id"], id);
        }
        let missing = t.get("/api/alloc/999");
        assert_eq!(error(&missing), (404, "ENOENT".into()));
        t.request("POST", "/api/reset", None);
    });
}

#[test]
fn a_large_listing_is_sent_in_page_sized_pieces() {
    run(DEFAULT, |t| {
        for _ in 0..300 {
            t.alloc_ok(json!({"type":"kmalloc","size":8}));
        }
        let r = t.get("/api/allocations");
        assert_eq!(r.status, 200);
        assert!(r.body.len() > 3 * crate::server::response::PIECE_BYTES);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["total"], 300);
        assert_eq!(v["allocations"].as_array().unwrap().len(), 300);
        t.request("POST", "/api/reset", None);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn kmalloc_of_zero_is_zero_size_ptr_and_allocates_nothing() {
    run(DEFAULT, |t| {
        let slab_before = t.json("/api/slabinfo");
        let r = t.alloc(json!({"type":"kmalloc","size":0}));
        assert_eq!(r.status, 200, "{}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["virt"], "0x10");
        assert_eq!(v["id"], Value::Null);
        assert_eq!(t.json("/api/allocations")["total"], 0);
        assert_eq!(t.json("/api/slabinfo"), slab_before);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn cache_names_follow_one_rule_on_create_and_in_openapi() {
    run(DEFAULT, |t| {
        for bad in ["a/b", "a b", "a%2Fb", "", "x?y", "ä", &"n".repeat(33)] {
            let body = json!({"name": bad, "size": 64}).to_string();
            let r = t.request("POST", "/api/caches", Some(&body));
            assert_eq!(error(&r).0, 400, "{bad:?}: {}", r.text());
            let body = json!({"name": bad, "cache": "kmalloc-64", "min_nr": 1}).to_string();
            let r = t.request("POST", "/api/mempools", Some(&body));
            assert_eq!(error(&r).0, 400, "{bad:?}: {}", r.text());
        }
        for good in ["a.b_c-1", &"n".repeat(32)] {
            let body = json!({"name": good, "size": 64}).to_string();
            let r = t.request("POST", "/api/caches", Some(&body));
            assert_eq!(r.status, 201, "{good}: {}", r.text());
            let r = t.request("DELETE", &format!("/api/caches/{good}"), None);
            assert_eq!(r.status, 200, "{good}: {}", r.text());
        }
        let spec: Value = serde_json::from_str(openapi_json().unwrap()).unwrap();
        let name = &spec["paths"]["/api/caches"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["properties"]["name"];
        assert_eq!(name["pattern"], super::super::slab::NAME_PATTERN);
        assert_eq!(name["maxLength"], super::super::slab::NAME_MAX);
    });
}

#[test]
fn selfcheck_is_clean_after_boot_and_after_work() {
    run(DEFAULT, |t| {
        let r = t.json("/api/selfcheck");
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["problems"], json!([]));
        let pages = r["checked"]["pages"].as_u64().unwrap();
        assert_eq!(pages, t.mm.lock().max_pfn().0);
        assert!(r["checked"]["free_blocks"].as_u64().unwrap() > 0);
        for body in [
            json!({"type":"pages","order":3}),
            json!({"type":"kmalloc","size":100}),
            json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"}),
        ] {
            t.alloc_ok(body);
        }
        let r = t.json("/api/selfcheck");
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["checked"]["handles"], 3);
        t.request("POST", "/api/reset", None);
        assert_eq!(t.json("/api/selfcheck")["ok"], true);
    });
}

#[test]
fn fault_injection_attributes_read_write_and_fail_exactly() {
    run(DEFAULT, |t| {
        let base = "/sys/kernel/debug/fail_page_alloc";
        for (attr, value) in [
            ("probability", "100"),
            ("interval", "1"),
            ("times", "2"),
            ("ignore-gfp-wait", "0"),
            ("min-order", "0"),
        ] {
            let r = t.request("PUT", &format!("{base}/{attr}"), Some(value));
            assert_eq!(
                (r.status, r.text().to_string()),
                (200, format!("{value}\n")),
                "{attr}"
            );
            assert_eq!(
                t.get(&format!("{base}/{attr}")).text(),
                format!("{value}\n")
            );
        }
        let statuses: Vec<u16> = (0..3)
            .map(|_| t.alloc(json!({"type":"pages","order":0})).status)
            .collect();
        assert_eq!(statuses, [507, 507, 201]);
        assert_eq!(t.get(&format!("{base}/injected")).text(), "2\n");
        assert_eq!(t.get(&format!("{base}/times")).text(), "0\n");
        for (attr, bad) in [
            ("probability", "101"),
            ("interval", "0"),
            ("times", "-2"),
            ("probability", "abc"),
        ] {
            let r = t.request("PUT", &format!("{base}/{attr}"), Some(bad));
            assert_eq!(error(&r).0, 400, "{attr}={bad}: {}", r.text());
        }
        assert_eq!(error(&t.get(&format!("{base}/nope"))).0, 404);
        assert_eq!(error(&t.get("/sys/kernel/debug/fail_nothing/times")).0, 404);
        // failslab: every accounted kmalloc fails while armed.
        let slab = "/sys/kernel/debug/failslab";
        for (attr, value) in [
            ("probability", "100"),
            ("times", "-1"),
            ("ignore-gfp-wait", "0"),
        ] {
            assert_eq!(
                t.request("PUT", &format!("{slab}/{attr}"), Some(value))
                    .status,
                200
            );
        }
        let r = t.alloc(json!({"type":"kmalloc","size":64}));
        assert_eq!(error(&r), (507, "ENOMEM".into()));
        assert_eq!(
            t.request("PUT", &format!("{slab}/probability"), Some("0"))
                .status,
            200
        );
        t.alloc_ok(json!({"type":"kmalloc","size":64}));
        t.request("POST", "/api/reset", None);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn fill_and_checksum_touch_part_of_a_handle() {
    run(DEFAULT, |t| {
        for body in [
            json!({"type":"pages","order":1,"gfp":"GFP_HIGHUSER"}),
            json!({"type":"kmalloc","size":100}),
            json!({"type":"dma","size":8192}),
        ] {
            let h = t.alloc_ok(body.clone());
            let id = h["id"].as_u64().unwrap();
            let total = match h["type"].as_str().unwrap() {
                "kmalloc" => 100,
                _ => 8192,
            };
            let fill = |t: &mut T<'_>, v: Value| {
                t.request(
                    "POST",
                    &format!("/api/alloc/{id}/fill"),
                    Some(&v.to_string()),
                )
            };
            // Zero the whole, then 0xAB over [10, 10 + 50): a page boundary
            // is crossed for the 8 KiB handles when offset is 4090.
            assert_eq!(fill(t, json!({"byte":0})).status, 200);
            let off = if total > 4096 { 4090 } else { 10 };
            let r = fill(t, json!({"byte":0xab,"offset":off,"length":50}));
            assert_eq!(r.status, 200, "{body}: {}", r.text());
            assert_eq!(
                serde_json::from_slice::<Value>(&r.body).unwrap(),
                json!({"bytes":50,"offset":off})
            );
            // The part reads back as 50 × 0xAB …
            let part = t.json(&format!("/api/alloc/{id}/checksum?offset={off}&length=50"));
            assert_eq!(
                (part["bytes"].as_u64(), part["offset"].as_u64()),
                (Some(50), Some(off))
            );
            assert_eq!(hex(&part["crc32"]), crc32(&[0xab; 50]), "{body}");
            // … and the whole as zeros around it.
            let mut whole = vec![0u8; total as usize];
            whole[off as usize..off as usize + 50].fill(0xab);
            let all = t.json(&format!("/api/alloc/{id}/checksum"));
            assert_eq!(all["offset"], Value::Null);
            assert_eq!(hex(&all["crc32"]), crc32(&whole), "{body}");
            // Out of range: 400, nothing written.
            for bad in [
                json!({"byte":1,"offset":total + 1}),
                json!({"byte":1,"offset":total - 1,"length":2}),
            ] {
                assert_eq!(error(&fill(t, bad.clone())).0, 400, "{bad}");
            }
            let r = t.get(&format!("/api/alloc/{id}/checksum?offset=x"));
            assert_eq!(error(&r).0, 400);
            let r = t.get(&format!("/api/alloc/{id}/checksum?length={}", total + 1));
            assert_eq!(error(&r).0, 400);
            assert_eq!(
                hex(&t.json(&format!("/api/alloc/{id}/checksum"))["crc32"]),
                crc32(&whole)
            );
        }
        t.request("POST", "/api/reset", None);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}
