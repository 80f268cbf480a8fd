//! `POST /api/alloc {"type":"percpu"}`: `alloc_percpu()` with one address
//! per CPU, zeroed, filled and checksummed in every copy; chunks from the
//! buddy allocator counted as `Percpu` in meminfo and given back when the
//! last object goes, so reset equals boot.

use super::*;

fn percpu_kb(t: &mut T<'_>) -> u64 {
    t.json("/api/meminfo")["Percpu"].as_u64().unwrap()
}

#[test]
fn percpu_objects_share_a_chunk_and_the_last_free_returns_it() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        assert_eq!(percpu_kb(t), 0);
        let a = t.alloc_ok(json!({"type":"percpu","size":24,"align":8}));
        assert_eq!(a["type"], "percpu");
        assert_eq!(
            (a["size"].as_u64(), a["align"].as_u64()),
            (Some(24), Some(8))
        );
        let addrs = a["addresses"].as_array().unwrap();
        assert_eq!(addrs.len(), t.mm.nr_cpus(), "one address per CPU");
        // One chunk: a 32 KiB unit per CPU, from the buddy allocator.
        assert_eq!(percpu_kb(t), 32 * t.mm.nr_cpus() as u64);
        assert_ne!(t.buddyinfo(), boot);
        // Fresh memory reads as zeroes in every copy.
        let zeroes = crc32fast(&vec![0u8; 24 * t.mm.nr_cpus()]);
        let sum = t.json(&format!("/api/alloc/{}/checksum", a["id"]));
        assert_eq!(sum["bytes"], 24 * t.mm.nr_cpus() as u64);
        assert_eq!(sum["crc32"], format!("{zeroes:#010x}"));
        let r = t.request(
            "POST",
            &format!("/api/alloc/{}/fill", a["id"]),
            Some(r#"{"byte":171}"#),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let sum = t.json(&format!("/api/alloc/{}/checksum", a["id"]));
        let full = crc32fast(&vec![0xABu8; 24 * t.mm.nr_cpus()]);
        assert_eq!(sum["crc32"], format!("{full:#010x}"));
        // A second object lands in the same chunk, after the first.
        let b = t.alloc_ok(json!({"type":"percpu","size":4096,"align":4096}));
        assert_eq!(b["chunk"], a["chunk"]);
        assert_eq!(b["offset"], 4096);
        assert_eq!(percpu_kb(t), 32 * t.mm.nr_cpus() as u64);
        let listed = t.json("/api/allocations")["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["type"] == "percpu")
            .count();
        assert_eq!(listed, 2);
        // Freeing one keeps the chunk; the last returns it.
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{}", a["id"]), None)
                .status,
            200
        );
        assert_eq!(percpu_kb(t), 32 * t.mm.nr_cpus() as u64);
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{}", b["id"]), None)
                .status,
            200
        );
        assert_eq!(percpu_kb(t), 0);
        assert_eq!(t.buddyinfo(), boot);
        // Reset frees what is left, chunk included.
        t.alloc_ok(json!({"type":"percpu","size":8}));
        assert_eq!(
            t.request("POST", "/api/reset", None).body,
            br#"{"freed":1}"#
        );
        assert_eq!(percpu_kb(t), 0);
        assert_eq!(t.buddyinfo(), boot);
    });
}

#[test]
fn bad_percpu_requests_are_400_and_change_nothing() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        for body in [
            json!({"type":"percpu"}),
            json!({"type":"percpu","size":0}),
            json!({"type":"percpu","size":32769}),
            json!({"type":"percpu","size":8,"align":12}),
            json!({"type":"percpu","size":8,"align":8192}),
        ] {
            let r = t.alloc(body.clone());
            assert_eq!(error(&r), (400, "EINVAL".into()), "{body}");
        }
        assert_eq!(t.buddyinfo(), boot);
        assert_eq!(percpu_kb(t), 0);
    });
}

/// CRC-32 (IEEE) as the API reports it.
fn crc32fast(bytes: &[u8]) -> u32 {
    let mut c = mm::crc32::Crc32::new();
    c.update(bytes);
    c.finish()
}

/// `GET /api/cpus`: the boot CPU with its per-CPU page lists, summed over
/// the zones and zone by zone, matching `/api/zones`.
#[test]
fn cpus_lists_the_boot_cpu_with_its_page_lists() {
    run(PCP, |t| {
        let a = t.alloc_ok(json!({"type":"pages","order":0,"gfp":"GFP_DMA32"}));
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{}", a["id"]), None)
                .status,
            200
        );
        let cpus = t.json("/api/cpus");
        let online = cpus["online"].as_array().unwrap();
        assert_eq!(online.len(), 1);
        let cpu = &online[0];
        assert_eq!(
            (cpu["cpu"].as_u64(), cpu["apic_id"].as_u64()),
            (Some(0), Some(0))
        );
        let zones = t.json("/api/zones");
        let mut count = 0;
        let mut high = 0;
        for (z, p) in zones["zones"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|z| z["managed"].as_u64() > Some(0))
            .zip(cpu["pagesets"].as_array().unwrap())
        {
            assert_eq!(p["zone"], z["name"]);
            assert_eq!(p["count"], z["pagesets"][0]["count"]);
            assert_eq!(p["high"], z["pagesets"][0]["high"]);
            count += p["count"].as_u64().unwrap();
            high += p["high"].as_u64().unwrap();
        }
        assert!(count > 0, "the freed page waits on a list");
        assert_eq!(cpu["pcp"]["count"].as_u64(), Some(count));
        assert_eq!(cpu["pcp"]["high"].as_u64(), Some(high));
    });
}

/// `GET /api/cpus` with every CPU of an SMP guest online: each listed
/// with its APIC id, in CPU order. Only CPUs below `mm::types::NR_CPUS`
/// have page lists (all but CPU 0 until the allocator is SMP-safe): the
/// others show `pcp` zero and no pagesets rather than an error.
#[test]
fn cpus_beyond_nr_cpus_are_listed_with_empty_page_lists() {
    run(PCP, |t| {
        t.system.online_cpus.set(4);
        let cpus = t.json("/api/cpus");
        let online = cpus["online"].as_array().unwrap();
        assert_eq!(online.len(), 4, "{cpus}");
        for (n, cpu) in online.iter().enumerate() {
            assert_eq!(cpu["cpu"].as_u64(), Some(n as u64), "{cpus}");
            assert_eq!(cpu["apic_id"].as_u64(), Some(n as u64), "{cpus}");
            if n < mm::types::NR_CPUS {
                assert!(!cpu["pagesets"].as_array().unwrap().is_empty(), "{cpu}");
            } else {
                assert_eq!(cpu["pcp"], json!({"count":0,"high":0,"batch":1}), "{cpu}");
                assert_eq!(cpu["pagesets"], json!([]), "{cpu}");
            }
        }
    });
}

/// A per-CPU chunk the buddy allocator cannot give is 507, changes
/// nothing, and the next request after the failure succeeds.
#[test]
fn a_chunk_that_cannot_be_allocated_is_507_and_changes_nothing() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        let base = "/sys/kernel/debug/fail_page_alloc";
        for (attr, value) in [
            ("probability", "100"),
            ("interval", "1"),
            ("times", "1"),
            ("ignore-gfp-wait", "0"),
        ] {
            assert_eq!(
                t.request("PUT", &format!("{base}/{attr}"), Some(value))
                    .status,
                200
            );
        }
        let r = t.alloc(json!({"type":"percpu","size":64}));
        assert_eq!(error(&r), (507, "ENOMEM".into()));
        assert_eq!(percpu_kb(t), 0);
        assert_eq!(t.buddyinfo(), boot);
        assert_eq!(t.json("/api/allocations")["total"], 0);
        let ok = t.alloc_ok(json!({"type":"percpu","size":64}));
        assert_eq!(ok["offset"], 0);
        assert_eq!(percpu_kb(t), 32 * t.mm.nr_cpus() as u64);
    });
}
