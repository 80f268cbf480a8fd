//! `POST /api/alloc {"type":"dma"}`: coherent buffers from the (simulated)
//! kernel's `mm::dma::Dma` registry, listed in `/api/dma`, filled and
//! checksummed through the direct map, freed, reset, and counted against
//! the quota.

use super::*;

const PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;

/// The `/api/dma` entries the API owns.
fn api_buffers(t: &mut T<'_>) -> Vec<Value> {
    t.json("/api/dma")["coherent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["owner"] == DMA_OWNER)
        .cloned()
        .collect()
}

#[test]
fn dma_alloc_is_listed_filled_checksummed_and_freed() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        assert_eq!(boot, t.boot_buddyinfo());

        // Dirty a DMA32 block first: a coherent buffer still reads as zeroes.
        let dirty = t.alloc_ok(json!({"type":"pages","order":2,"gfp":"GFP_DMA32"}));
        let did = dirty["id"].as_u64().unwrap();
        let r = t.request(
            "POST",
            &format!("/api/alloc/{did}/fill"),
            Some(r#"{"byte":255}"#),
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{did}"), None)
                .status,
            200
        );
        assert_eq!(t.buddyinfo(), boot);

        let predicted = predict_alloc(t, "DMA32", "Unmovable", 2);
        let h = t.alloc_ok(json!({"type":"dma","size":16384}));
        assert_eq!(h["type"], "dma");
        assert_eq!(h["size"], 16384);
        assert_eq!(h["order"], 2);
        assert_eq!(h["nr_pages"], 4);
        assert_eq!(h["zone"], "DMA32");
        assert_eq!(h["owner"], "api");
        let dma_addr = hex(&h["dma_addr"]);
        assert_eq!(hex(&h["phys"]), dma_addr);
        assert_eq!(h["pfn"], dma_addr / PAGE_SIZE);
        assert!(
            dma_addr.is_multiple_of(16384) && dma_addr + 16384 <= 4 << 30,
            "{dma_addr:#x}"
        );
        assert!((16 * MIB..LOWMEM).contains(&dma_addr), "{dma_addr:#x}");
        assert_eq!(hex(&h["cpu_addr"]), PAGE_OFFSET + dma_addr);
        assert_eq!(hex(&h["virt"]), PAGE_OFFSET + dma_addr);
        let id = h["id"].as_u64().unwrap();

        // One DMA32 block split off as expect() does it.
        let after = t.buddyinfo();
        assert_eq!(counts(&after, "DMA32"), predicted.as_slice());

        // In /api/dma, next to the driver's buffer, with the same addresses.
        let dma = t.json("/api/dma");
        assert_eq!(dma["coherent"][0]["owner"], "virtio-net rx");
        assert_eq!(
            api_buffers(t),
            [
                json!({"owner":"api","cpu_addr":h["cpu_addr"],"dma_addr":h["dma_addr"],
                "size":16384,"zone":"DMA32"})
            ]
        );
        let m = t.get("/metrics").text().to_string();
        assert!(m.contains("\npagezone_dma_coherent_buffers 2\n"), "{m}");
        assert!(m.contains("\npagezone_api_pages 4\n"), "{m}");

        // In /api/allocations.
        let all = t.json("/api/allocations")["allocations"].clone();
        assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
        assert_eq!(all[0]["id"], id);
        assert_eq!(all[0]["type"], "dma");
        assert_eq!(all[0]["dma_addr"], h["dma_addr"]);

        // Zeroed; fill and checksum cover the whole block.
        let sum = t.json(&format!("/api/alloc/{id}/checksum"));
        assert_eq!(sum["bytes"], 16384);
        assert_eq!(hex(&sum["crc32"]), crc32(&[0; 16384]));
        let r = t.request(
            "POST",
            &format!("/api/alloc/{id}/fill"),
            Some(r#"{"byte":90}"#),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, br#"{"bytes":16384}"#);
        let sum = t.json(&format!("/api/alloc/{id}/checksum"));
        assert_eq!(hex(&sum["crc32"]), crc32(&[0x5A; 16384]));
        // The bytes really are in the frames.
        let mut first = Vec::new();
        t.mm.platform()
            .with_frame(mm::types::Pfn(dma_addr / PAGE_SIZE), &mut |b| {
                first.extend_from_slice(&b[..8])
            });
        assert_eq!(first, [0x5A; 8]);
        for bad in [r#"{"byte":256}"#, r#"{}"#, ""] {
            let r = t.request("POST", &format!("/api/alloc/{id}/fill"), Some(bad));
            assert_eq!(error(&r), (400, "EINVAL".into()), "{bad}");
        }

        // kmap takes pages handles only.
        let r = t.request("POST", "/api/kmap", Some(&json!({"id":id}).to_string()));
        assert_eq!(r.status, 404, "no vm state here: {}", r.text());

        // A wrong or malformed order frees nothing.
        for (q, status, code) in [
            ("?order=1", 409, "EBUSY"),
            ("?order=3", 409, "EBUSY"),
            ("?order=11", 400, "EINVAL"),
            ("?order=x", 400, "EINVAL"),
        ] {
            let r = t.request("DELETE", &format!("/api/alloc/{id}{q}"), None);
            assert_eq!(error(&r), (status, code.into()), "{q}");
        }
        assert_eq!(api_buffers(t).len(), 1);
        assert_eq!(t.buddyinfo(), after);

        let r = t.request("DELETE", &format!("/api/alloc/{id}?order=2"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).unwrap(),
            json!({"freed":id,"order":2,"nr_pages":4})
        );
        assert!(api_buffers(t).is_empty());
        assert_eq!(t.buddyinfo(), boot);
        assert_eq!(t.api.quota().0, 0);
        assert_eq!(t.json("/api/allocations")["allocations"], json!([]));
        for (method, path) in [
            ("DELETE", format!("/api/alloc/{id}")),
            ("GET", format!("/api/alloc/{id}/checksum")),
        ] {
            let r = t.request(method, &path, None);
            assert_eq!(error(&r), (404, "ENOENT".into()), "{path}");
        }
    });
}

#[test]
fn dma_sizes_round_to_one_buddy_block() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        for (size, order) in [
            (1u64, 0u64),
            (4096, 0),
            (4097, 1),
            (5000, 1),
            (65536, 4),
            (4 * MIB, 10),
        ] {
            let h = t.alloc_ok(json!({"type":"dma","size":size}));
            assert_eq!(
                (h["size"].as_u64(), h["order"].as_u64()),
                (Some(size), Some(order))
            );
            let id = h["id"].as_u64().unwrap();
            let block = PAGE_SIZE << order;
            assert!(hex(&h["dma_addr"]).is_multiple_of(block), "{h}");
            assert!(h["zone"] == "DMA32" || h["zone"] == "DMA", "{h}");
            let r = t.request(
                "POST",
                &format!("/api/alloc/{id}/fill"),
                Some(r#"{"byte":1}"#),
            );
            assert_eq!(r.status, 200);
            let sum = t.json(&format!("/api/alloc/{id}/checksum"));
            assert_eq!(sum["bytes"], block, "{size}");
            let listed = api_buffers(t);
            assert!(
                listed
                    .iter()
                    .any(|b| b["dma_addr"] == h["dma_addr"] && b["size"] == size),
                "{listed:?}"
            );
        }
        for (body, why) in [
            (json!({"type":"dma","size":0}), "out of range"),
            (json!({"type":"dma","size":1024 * MIB + 1}), "out of range"),
            (json!({"type":"dma","size":u64::MAX}), "out of range"),
            (json!({"type":"dma"}), "missing"),
            (json!({"type":"dma","size":"4096"}), "malformed JSON"),
        ] {
            let r = t.alloc(body.clone());
            assert_eq!(error(&r), (400, "EINVAL".into()), "{body}");
            assert!(r.text().contains(why), "{body}: {}", r.text());
        }
        // Over one buddy block without a CMA area: the area is what is
        // missing (404, as for {"type":"cma"}).
        let r = t.alloc(json!({"type":"dma","size":4 * MIB + 1}));
        assert_eq!(error(&r), (404, "ENOENT".into()));
        assert!(r.text().contains("no CMA area"), "{}", r.text());
        // The refusals left the registry as it was.
        assert_eq!(api_buffers(t).len(), 6);
        let r = t.request("POST", "/api/reset", None);
        assert_eq!(r.body, br#"{"freed":6}"#);
        assert!(api_buffers(t).is_empty());
        assert_eq!(t.buddyinfo(), boot);
    });
}

#[test]
fn reset_frees_dma_buffers_with_everything_else() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        for size in [4096, 65536, 3 * 4096] {
            t.alloc_ok(json!({"type":"dma","size":size}));
        }
        t.alloc_ok(json!({"type":"pages","order":3,"gfp":"GFP_DMA32"}));
        t.alloc_ok(json!({"type":"kmalloc","size":100}));
        t.alloc_ok(json!({"type":"dma","size":100}));
        assert_eq!(api_buffers(t).len(), 4);
        let all = t.json("/api/allocations")["allocations"].clone();
        let ids: Vec<u64> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6], "by id, every kind: {all}");
        assert_eq!(all[5]["type"], "dma");
        let r = t.request("POST", "/api/reset", None);
        assert_eq!(r.body, br#"{"freed":6}"#);
        assert!(api_buffers(t).is_empty());
        assert_eq!(t.json("/api/dma")["coherent"].as_array().unwrap().len(), 1);
        assert_eq!(t.buddyinfo(), boot);
        assert_eq!(t.api.quota().0, 0);
        assert_eq!(t.api.dma_handles().count(), 0);
    });
}

#[test]
fn a_full_registry_is_507_enomem() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        let mut ok = 0;
        let last = loop {
            let r = t.alloc(json!({"type":"dma","size":4096}));
            if r.status != 201 {
                break r;
            }
            ok += 1;
            assert!(ok <= mm::dma::MAX_COHERENT, "the registry is bounded");
        };
        assert_eq!(ok, mm::dma::MAX_COHERENT);
        assert_eq!(error(&last), (507, "ENOMEM".into()));
        assert!(last.text().contains("registry full"), "{}", last.text());
        // Freeing one makes room again.
        let r = t.request("DELETE", "/api/alloc/1", None);
        assert_eq!(r.status, 200);
        assert_eq!(t.alloc(json!({"type":"dma","size":4096})).status, 201);
        assert_eq!(t.request("POST", "/api/reset", None).status, 200);
        assert_eq!(t.buddyinfo(), boot);
    });
}

#[test]
fn dma_buffers_count_against_the_quota() {
    run(
        Opts {
            quota_pct: 2,
            ..DEFAULT
        },
        |t| {
            let (_, quota) = t.api.quota();
            assert!((512..768).contains(&quota), "{quota}");
            // 4 MiB is 1024 pages: over the quota by itself.
            let r = t.alloc(json!({"type":"dma","size":4 * MIB}));
            assert_eq!(error(&r), (507, "EQUOTA".into()));
            // 2 MiB (512 pages) fits once, not twice; a page still does.
            t.alloc_ok(json!({"type":"dma","size":2 * MIB}));
            assert_eq!(t.api.quota().0, 512);
            let r = t.alloc(json!({"type":"dma","size":2 * MIB}));
            assert_eq!(error(&r), (507, "EQUOTA".into()));
            let r = t.alloc(json!({"type":"pages","order":9}));
            assert_eq!(
                error(&r),
                (507, "EQUOTA".into()),
                "dma pages count for pages too"
            );
            t.alloc_ok(json!({"type":"dma","size":1}));
            assert_eq!(t.api.quota().0, 513);
            assert_eq!(api_buffers(t).len(), 2, "refusals allocate nothing");
            assert_eq!(
                t.request("POST", "/api/reset", None).body,
                br#"{"freed":2}"#
            );
            assert_eq!(t.api.quota().0, 0);
            t.alloc_ok(json!({"type":"dma","size":2 * MIB}));
        },
    );
}
