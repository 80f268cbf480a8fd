//! `/proc/pagetypeinfo`, `POST /api/bench` (pages, kmalloc and cache
//! workloads; vmalloc is in `vm/tests.rs`, which has a vmalloc area) and
//! the slab families of `/metrics`, over the simulated machine.

use super::*;

fn post(t: &mut T<'_>, path: &str, body: Value) -> HttpResponse {
    t.request("POST", path, Some(&body.to_string()))
}

fn bench(t: &mut T<'_>, body: Value) -> HttpResponse {
    post(t, "/api/bench", body)
}

/// A successful run: 200, `ops == iterations`, the percentiles ordered.
fn bench_ok(t: &mut T<'_>, body: Value) -> Value {
    let r = bench(t, body.clone());
    assert_eq!(r.status, 200, "{body}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["workload"], body["workload"], "{j}");
    assert_eq!(j["ops"], body["iterations"], "{j}");
    let n = |k: &str| {
        j[k].as_u64()
            .unwrap_or_else(|| panic!("{k} is not a number: {j}"))
    };
    assert!(n("min_ns") <= n("p50_ns"), "{j}");
    assert!(n("p50_ns") <= n("p99_ns"), "{j}");
    assert!(n("p99_ns") <= n("max_ns"), "{j}");
    assert!(
        n("min_ns") <= n("ns_per_op") && n("ns_per_op") <= n("max_ns"),
        "{j}"
    );
    assert!(n("total_ns") >= n("ns_per_op") * n("ops"), "{j}");
    j
}

/// `name → (active_objs, num_objs, num_slabs)` of every cache.
fn slab_counts(t: &mut T<'_>) -> Vec<(String, u64, u64, u64)> {
    t.json("/api/slabinfo")["caches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["active_objs"].as_u64().unwrap(),
                c["num_objs"].as_u64().unwrap(),
                c["num_slabs"].as_u64().unwrap(),
            )
        })
        .collect()
}

// ----------------------------------------------------------------------
// /proc/pagetypeinfo
// ----------------------------------------------------------------------

#[test]
fn pagetypeinfo_is_the_formatter_text_and_matches_buddyinfo() {
    run(DEFAULT, |t| {
        let r = t.get("/proc/pagetypeinfo");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        let mut expected = String::new();
        mm::procfs::pagetypeinfo(&t.mm.lock(), &mut expected).unwrap();
        assert_eq!(r.text(), expected);

        let text = r.text().to_string();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("Page block order: 9"));
        assert_eq!(lines.next(), Some("Pages per block:  512"));
        // Six rows per populated zone, one per migrate type, adding up to
        // buddyinfo's counts; and the same lists as /api/zones reports.
        // At boot the kernel's own (Unmovable) pages have claimed a
        // pageblock of DMA32; nothing else is used by anything but Movable.
        let info = t.buddyinfo();
        let zones = t.json("/api/zones");
        let mut sums: Vec<(String, Vec<u64>)> = Vec::new();
        for line in text.lines().filter(|l| l.contains(", type ")) {
            let (head, rest) = line.split_once(", type ").unwrap();
            let zone = head.split_once("zone ").unwrap().1.trim();
            let mut fields = rest.split_whitespace();
            let mtype = fields.next().unwrap();
            let counts: Vec<u64> = fields.map(|c| c.parse().unwrap()).collect();
            assert_eq!(counts.len(), 11, "{line}");
            let z = zones["zones"]
                .as_array()
                .unwrap()
                .iter()
                .find(|z| z["name"] == zone)
                .unwrap();
            assert_eq!(z["free_lists"][mtype], json!(counts), "{line}");
            if !["Unmovable", "Movable"].contains(&mtype)
                || (mtype == "Unmovable" && zone != "DMA32")
            {
                assert!(counts.iter().all(|&c| c == 0), "{line}");
            }
            match sums.iter_mut().find(|(n, _)| n == zone) {
                Some((_, s)) => s.iter_mut().zip(&counts).for_each(|(a, b)| *a += b),
                None => sums.push((zone.to_string(), counts)),
            }
        }
        for (zone, sum) in &sums {
            assert_eq!(sum.as_slice(), counts_of(&info, zone), "{zone}");
        }
        assert_eq!(
            sums.iter().map(|(z, _)| z.as_str()).collect::<Vec<_>>(),
            ["DMA", "DMA32", "HighMem"]
        );
        assert!(text.contains("\nNumber of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate \n"), "{text}");

        // It follows the allocator: an order-3 block moves the counts.
        let h = t.alloc_ok(json!({"type":"pages","order":3,"gfp":"GFP_DMA"}));
        let mut after = String::new();
        mm::procfs::pagetypeinfo(&t.mm.lock(), &mut after).unwrap();
        assert_ne!(after, expected);
        assert_eq!(t.get("/proc/pagetypeinfo").text(), after);
        let r = t.request("DELETE", &format!("/api/alloc/{}", h["id"]), None);
        assert_eq!(r.status, 200);
        // The unmovable request claimed an order-10 block of DMA: after
        // the free the block is whole again, but its two pageblocks stay
        // Unmovable and it waits on the Unmovable list (as in Linux: a
        // free does not give a pageblock back).
        let freed = t.get("/proc/pagetypeinfo").text().to_string();
        let row = |text: &str, ty: &str| {
            text.lines()
                .find(|l| l.contains("zone      DMA, type") && l.contains(ty))
                .unwrap()
                .to_string()
        };
        assert!(
            row(&freed, "Unmovable").ends_with("      0      1 "),
            "{freed}"
        );
        assert!(
            freed.contains("Node 0, zone      DMA            2            6 "),
            "{freed}"
        );
        assert_eq!(t.buddyinfo(), info);
        assert_eq!(error(&t.request("POST", "/proc/pagetypeinfo", None)).0, 405);
    });
}

fn counts_of(info: &[(String, Vec<u64>)], zone: &str) -> Vec<u64> {
    counts(info, zone).to_vec()
}

// ----------------------------------------------------------------------
// POST /api/bench
// ----------------------------------------------------------------------

#[test]
fn bench_every_workload_leaves_the_allocators_as_they_were() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        let slabs = slab_counts(t);
        let runs = [
            json!({"workload":"pages","iterations":1000}),
            json!({"workload":"pages","iterations":200,"order":3}),
            json!({"workload":"pages","iterations":10,"order":10}),
            json!({"workload":"kmalloc","iterations":1000}),
            json!({"workload":"kmalloc","iterations":500,"size":100}),
            json!({"workload":"kmalloc","iterations":100,"size":20000}),
            json!({"workload":"cache","iterations":1000,"cache":"kmalloc-64"}),
        ];
        for body in runs {
            let j = bench_ok(t, body.clone());
            // The fake clock: 100 ns an operation, one in 63 at 40 µs.
            assert_eq!(j["min_ns"], CLOCK_STEP_NS, "{j}");
            assert_eq!(j["p50_ns"], CLOCK_STEP_NS, "{j}");
            let iterations = body["iterations"].as_u64().unwrap();
            if iterations >= 2 * CLOCK_HICCUP_EVERY {
                assert_eq!(j["max_ns"], CLOCK_HICCUP_NS, "{j}");
            }
            if iterations >= 1000 {
                assert_eq!(j["p99_ns"], CLOCK_HICCUP_NS, "{j}");
                assert!(j["ns_per_op"].as_u64().unwrap() > CLOCK_STEP_NS, "{j}");
            }
            assert_eq!(t.buddyinfo(), boot, "{body}");
            assert_eq!(slab_counts(t), slabs, "{body}");
        }
        // The parameters used are echoed.
        let j = bench_ok(t, json!({"workload":"pages","iterations":1}));
        assert_eq!(j["order"], 0);
        assert_eq!(j["ops"], 1);
        let j = bench_ok(t, json!({"workload":"kmalloc","iterations":1}));
        assert_eq!(j["size"], 64);
        let j = bench_ok(
            t,
            json!({"workload":"cache","iterations":1,"cache":"kmalloc-64"}),
        );
        assert_eq!(
            (j["cache"].as_str(), j["size"].as_u64()),
            (Some("kmalloc-64"), Some(64))
        );
        assert!(j.get("order").is_none(), "{j}");

        // Nothing was handed out.
        assert_eq!(t.json("/api/allocations")["allocations"], json!([]));
        assert_eq!(t.api.quota().0, 0);
        assert_eq!(t.buddyinfo(), boot);
    });
}

/// `"cpus":4`: host threads stand for the CPUs. Each runs its share on
/// its own page lists, the answer has every CPU's figures, and nothing is
/// lost; kmalloc pairs go through the slab layer from every thread.
#[test]
fn bench_on_four_cpus_runs_each_share_on_its_own_lists() {
    run(PCP, |t| {
        t.system.online_cpus.set(4);
        t.mm.set_nr_cpus(4);
        let boot = t.mm.drained_buddyinfo();
        let slabs = slab_counts(t);
        for (workload, global_lock) in [
            ("pages", false),
            ("pages", true),
            ("kmalloc", false),
            ("kmalloc", true),
        ] {
            let body =
                json!({"workload":workload,"iterations":2000,"cpus":4,"global_lock":global_lock});
            let r = bench(t, body.clone());
            assert_eq!(r.status, 200, "{body}: {}", r.text());
            let j: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(
                (j["ops"].as_u64(), j["cpus"].as_u64()),
                (Some(8000), Some(4)),
                "{j}"
            );
            assert_eq!(j["workload"], workload, "{j}");
            assert_eq!(j["global_lock"], global_lock, "{j}");
            let per_cpu = j["per_cpu"].as_array().unwrap();
            let cpus: Vec<u64> = per_cpu.iter().map(|p| p["cpu"].as_u64().unwrap()).collect();
            assert_eq!(cpus, [0, 1, 2, 3], "{j}");
            assert!(per_cpu.iter().all(|p| p["ops"] == 2000), "{j}");
            if workload == "pages" && !global_lock {
                // Every CPU refilled its own lists, and its last free
                // left a page waiting on them.
                let cpus = t.json("/api/cpus");
                for cpu in cpus["online"].as_array().unwrap() {
                    assert!(cpu["pcp"]["count"].as_u64().unwrap() > 0, "{cpus}");
                }
            }
        }
        // Every page came back and every cache has its slab count of before
        // (which frames the slabs hold may differ: the CPUs froze and
        // released slabs in their own order); reset restores boot exactly.
        let pages = |b: &mm::manager::BuddySnapshot| -> u64 {
            b.iter()
                .flat_map(|z| z.iter().enumerate().map(|(o, n)| n << o))
                .sum()
        };
        assert_eq!(pages(&t.mm.drained_buddyinfo()), pages(&boot));
        assert_eq!(slab_counts(t), slabs);
        assert_eq!(post(t, "/api/reset", json!({})).status, 200);
        assert_eq!(t.mm.drained_buddyinfo(), boot);
        for (body, status) in [
            (json!({"workload":"pages","iterations":10,"cpus":5}), 404),
            (json!({"workload":"pages","iterations":10,"cpus":9}), 400),
            (json!({"workload":"pages","iterations":10,"cpus":0}), 400),
            (
                json!({"workload":"cache","iterations":10,"cpus":2,"cache":"kmalloc-64"}),
                400,
            ),
            (
                json!({"workload":"pages","iterations":100000,"cpus":4,"order":10}),
                400,
            ),
        ] {
            let r = bench(t, body.clone());
            assert_eq!(r.status, status, "{body}: {}", r.text());
        }
    });
}

/// `"duration_ms"`: every CPU runs pairs until the shared deadline (the
/// simulated clock advances 1 µs a reading), looking at the clock every
/// 32 pairs; nothing is lost, and the bad combinations are 400.
#[test]
fn bench_for_a_duration_runs_every_cpu_until_the_deadline() {
    run(PCP, |t| {
        t.system.online_cpus.set(2);
        t.mm.set_nr_cpus(2);
        let boot = t.mm.drained_buddyinfo();
        let ok = |t: &mut T<'_>, body: Value| -> Value {
            let r = bench(t, body.clone());
            assert_eq!(r.status, 200, "{body}: {}", r.text());
            serde_json::from_slice(&r.body).unwrap()
        };
        for workload in ["pages", "kmalloc"] {
            let j = ok(t, json!({"workload":workload,"duration_ms":2,"cpus":2}));
            assert_eq!(
                (j["duration_ms"].as_u64(), j["cpus"].as_u64()),
                (Some(2), Some(2)),
                "{j}"
            );
            let per_cpu = j["per_cpu"].as_array().unwrap();
            let ops: Vec<u64> = per_cpu.iter().map(|p| p["ops"].as_u64().unwrap()).collect();
            assert_eq!(ops.len(), 2, "{j}");
            assert!(ops.iter().all(|&n| n > 0 && n % 32 == 0), "{j}");
            assert_eq!(j["ops"].as_u64(), Some(ops.iter().sum()), "{j}");
            assert!(j["ops_per_sec"].as_u64().unwrap() > 0, "{j}");
        }
        // One CPU, the default: still the several-CPU answer.
        let j = ok(t, json!({"workload":"pages","duration_ms":1}));
        assert_eq!(j["per_cpu"].as_array().map(Vec::len), Some(1), "{j}");
        for body in [
            json!({"workload":"pages","duration_ms":1,"iterations":10}),
            json!({"workload":"pages","duration_ms":0}),
            json!({"workload":"kmalloc","duration_ms":1001}),
            json!({"workload":"vmalloc","duration_ms":1}),
            json!({"workload":"cache","duration_ms":1,"cache":"kmalloc-64"}),
        ] {
            let r = bench(t, body.clone());
            assert_eq!(r.status, 400, "{body}: {}", r.text());
        }
        assert_eq!(post(t, "/api/reset", json!({})).status, 200);
        assert_eq!(t.mm.drained_buddyinfo(), boot);
    });
}

#[test]
fn bench_of_an_empty_cache_gives_its_new_slab_back() {
    run(DEFAULT, |t| {
        for (name, flags) in [
            ("bench200", json!([])),
            ("bench-debug", json!(["SLAB_RED_ZONE", "SLAB_POISON"])),
        ] {
            let r = post(
                t,
                "/api/caches",
                json!({"name":name,"size":200,"flags":flags}),
            );
            assert_eq!(r.status, 201, "{}", r.text());
            let before = t.buddyinfo();
            let slabs = slab_counts(t);
            // The first operation needs a slab the cache does not have.
            let j = bench_ok(t, json!({"workload":"cache","iterations":300,"cache":name}));
            assert_eq!(j["size"], 200);
            assert_eq!(t.buddyinfo(), before, "{name}");
            assert_eq!(slab_counts(t), slabs, "{name}");

            // A cache with a live object and a slab: the run reuses it.
            let h = t.alloc_ok(json!({"type":"cache","cache":name}));
            let before = t.buddyinfo();
            let slabs = slab_counts(t);
            bench_ok(t, json!({"workload":"cache","iterations":300,"cache":name}));
            assert_eq!(t.buddyinfo(), before, "{name}");
            assert_eq!(slab_counts(t), slabs, "{name}");
            let r = t.request("DELETE", &format!("/api/alloc/{}", h["id"]), None);
            assert_eq!(r.status, 200, "{}", r.text());
        }
        // A shrunk kmalloc cache (no spare slab) is settled back too.
        let r = post(t, "/api/caches/kmalloc-192/shrink", json!({}));
        assert_eq!(r.status, 200, "{}", r.text());
        let before = t.buddyinfo();
        let slabs = slab_counts(t);
        bench_ok(t, json!({"workload":"kmalloc","iterations":100,"size":150}));
        assert_eq!(t.buddyinfo(), before);
        assert_eq!(slab_counts(t), slabs);
        // Corruption counters stayed at zero.
        let info = t.json("/api/slabinfo");
        for c in info["caches"].as_array().unwrap() {
            assert_eq!(c["corruption"]["total"], 0, "{c}");
        }
    });
}

#[test]
fn bench_bad_requests() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        for (body, status) in [
            (json!({}), 400),
            (json!({"iterations":10}), 400),
            (json!({"workload":"pages"}), 400),
            (json!({"workload":"slub","iterations":10}), 400),
            (json!({"workload":"pages","iterations":0}), 400),
            (json!({"workload":"pages","iterations":100_001}), 400),
            (json!({"workload":"pages","iterations":-1}), 400),
            (json!({"workload":"pages","iterations":"10"}), 400),
            (json!({"workload":"pages","iterations":10,"order":11}), 400),
            (json!({"workload":"pages","iterations":10,"size":64}), 400),
            // 5000 order-10 blocks is over the per-run page budget.
            (
                json!({"workload":"pages","iterations":5000,"order":10}),
                400,
            ),
            (json!({"workload":"kmalloc","iterations":10,"size":0}), 400),
            (
                json!({"workload":"kmalloc","iterations":10,"size":4_194_305}),
                400,
            ),
            (json!({"workload":"kmalloc","iterations":10,"order":1}), 400),
            (
                json!({"workload":"kmalloc","iterations":100_000,"size":4_194_304}),
                400,
            ),
            (json!({"workload":"cache","iterations":10}), 400),
            (
                json!({"workload":"cache","iterations":10,"cache":"has space"}),
                400,
            ),
            (
                json!({"workload":"cache","iterations":10,"cache":"nope"}),
                404,
            ),
            // This build's API has no vmalloc area.
            (json!({"workload":"vmalloc","iterations":10}), 404),
        ] {
            let r = bench(t, body.clone());
            let code = if status == 404 { "ENOENT" } else { "EINVAL" };
            assert_eq!(error(&r), (status, code.into()), "{body}: {}", r.text());
        }
        for raw in [
            "",
            "{",
            "[1,2]",
            "{\"workload\":\"pages\",\"iterations\":10} x",
        ] {
            let r = t.request("POST", "/api/bench", Some(raw));
            assert_eq!(error(&r), (400, "EINVAL".into()), "{raw:?}");
        }
        let r = t.get("/api/bench");
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("POST"));
        assert_eq!(t.buddyinfo(), boot);
    });
}

#[test]
fn bench_needs_the_token() {
    run(
        Opts {
            token: Some(TOKEN),
            ..DEFAULT
        },
        |t| {
            t.token = None;
            let r = bench(t, json!({"workload":"pages","iterations":10}));
            assert_eq!(error(&r), (401, "EACCES".into()));
            t.token = Some(TOKEN);
            bench_ok(t, json!({"workload":"pages","iterations":10}));
        },
    );
}

#[test]
fn bench_out_of_memory_is_507_and_holds_nothing() {
    run(
        Opts {
            quota_pct: 100,
            ..DEFAULT
        },
        |t| {
            // Take every order-10 block GFP_KERNEL can reach.
            let mut held = 0;
            while t
                .alloc(json!({"type":"pages","order":10,"gfp":"GFP_KERNEL"}))
                .status
                == 201
            {
                held += 1;
                assert!(held < 64);
            }
            assert!(held > 0);
            let before = t.buddyinfo();
            let r = bench(t, json!({"workload":"pages","iterations":1000,"order":10}));
            assert_eq!(error(&r), (507, "ENOMEM".into()), "{}", r.text());
            assert!(r.text().contains("order:10"), "{}", r.text());
            assert_eq!(t.buddyinfo(), before);
            // Smaller blocks still run.
            bench_ok(t, json!({"workload":"pages","iterations":100,"order":0}));
            assert_eq!(t.buddyinfo(), before);
            let r = t.request("POST", "/api/reset", None);
            assert_eq!(r.status, 200);
            assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
        },
    );
}

#[test]
fn bench_of_one_operation_over_the_quota_is_507_equota() {
    run(
        Opts {
            quota_pct: 2,
            ..DEFAULT
        },
        |t| {
            let r = bench(t, json!({"workload":"pages","iterations":10,"order":10}));
            assert_eq!(error(&r), (507, "EQUOTA".into()), "{}", r.text());
            bench_ok(t, json!({"workload":"pages","iterations":10,"order":8}));
        },
    );
}

// ----------------------------------------------------------------------
// /metrics
// ----------------------------------------------------------------------

#[test]
fn metrics_have_slab_families() {
    run(DEFAULT, |t| {
        let r = post(t, "/api/caches", json!({"name":"obj200","size":200}));
        assert_eq!(r.status, 201, "{}", r.text());
        let h = t.alloc_ok(json!({"type":"cache","cache":"obj200"}));
        let text = t.get("/metrics").text().to_string();
        for family in [
            "pagezone_slab_active_objects",
            "pagezone_slab_objects",
            "pagezone_slab_slabs",
            "pagezone_slab_object_size_bytes",
            "pagezone_slab_quarantined_objects",
            "pagezone_slab_pages",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} gauge\n")),
                "{family}"
            );
        }
        assert!(text.contains("# TYPE pagezone_slab_corruptions_total counter\n"));
        // Every cache has its lines, with /api/slabinfo's numbers.
        let info = t.json("/api/slabinfo");
        for c in info["caches"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            for (family, key) in [
                ("pagezone_slab_active_objects", "active_objs"),
                ("pagezone_slab_objects", "num_objs"),
                ("pagezone_slab_slabs", "num_slabs"),
                ("pagezone_slab_object_size_bytes", "object_size"),
            ] {
                let line = format!("{family}{{cache=\"{name}\"}} {}\n", c[key]);
                assert!(text.contains(&line), "missing {line:?}");
            }
            for kind in [
                "red_zone",
                "poison",
                "double_free",
                "free_pointer",
                "invalid_free",
            ] {
                let line = format!(
                    "pagezone_slab_corruptions_total{{cache=\"{name}\",kind=\"{kind}\"}} 0\n"
                );
                assert!(text.contains(&line), "missing {line:?}");
            }
        }
        assert!(text.contains("pagezone_slab_active_objects{cache=\"obj200\"} 1\n"));
        assert!(text.contains("pagezone_slab_slabs{cache=\"obj200\"} 1\n"));
        let pages = info["slab_pages"].as_u64().unwrap();
        assert!(text.contains(&format!("pagezone_slab_pages {pages}\n")));
        // Still valid exposition: every sample a name and a number.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        }
        let r = t.request("DELETE", &format!("/api/alloc/{}", h["id"]), None);
        assert_eq!(r.status, 200);
    });
}

/// `(series, value)` of every sample of `text`.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn sample(text: &str, series: &str) -> f64 {
    samples(text)
        .into_iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("no {series}"))
        .1
}

#[test]
fn metrics_are_well_formed_node_exporter_families_from_the_proc_texts() {
    run(DEFAULT, |t| {
        let before = t.get("/metrics").text().to_string();
        let series = r#"pagezone_page_alloc_total{zone="HighMem",order="3"}"#;
        let freed = r#"pagezone_page_free_total{zone="HighMem",order="3"}"#;
        let h = t.alloc_ok(json!({"type":"pages","order":3,"gfp":"GFP_HIGHUSER"}));
        assert_eq!(h["zone"], "HighMem");
        let r = t.request("DELETE", &format!("/api/alloc/{}", h["id"]), None);
        assert_eq!(r.status, 200);
        let text = t.get("/metrics").text().to_string();
        assert_eq!(sample(&text, series), sample(&before, series) + 1.0);
        assert_eq!(sample(&text, freed), sample(&before, freed) + 1.0);
        assert!(text.contains("# TYPE pagezone_page_alloc_fail_total counter\n"));
        // A refused order-10 DMA request (the zone holds none) counts as a
        // failure under DMA, order 10.
        let fail = r#"pagezone_page_alloc_fail_total{zone="DMA",order="10"}"#;
        let mut held = Vec::new();
        loop {
            let r = t.alloc(json!({"type":"pages","order":10,"gfp":"GFP_DMA","oom":false}));
            if r.status != 201 {
                assert_eq!(r.status, 507, "{}", r.text());
                break;
            }
            held.push(serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"].clone());
        }
        let after = t.get("/metrics").text().to_string();
        assert!(sample(&after, fail) >= sample(&text, fail) + 1.0);
        for id in held {
            assert_eq!(
                t.request("DELETE", &format!("/api/alloc/{id}"), None)
                    .status,
                200
            );
        }
        let text = t.get("/metrics").text().to_string();

        // Boot time: the System's wall clock, and node_exporter's pair.
        assert_eq!(sample(&text, "pagezone_boot_time_seconds"), 1_700_000_000.0);
        assert_eq!(sample(&text, "node_boot_time_seconds"), 1_700_000_000.0);
        assert_eq!(sample(&text, "node_time_seconds"), 1_700_000_001.234);

        // The node_exporter families carry /proc's numbers.
        let meminfo = t.get("/proc/meminfo").text().to_string();
        let kb = |key: &str| -> f64 {
            let line = meminfo.lines().find(|l| l.starts_with(key)).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<f64>()
                .unwrap()
                * 1024.0
        };
        for (metric, key) in [
            ("node_memory_MemTotal_bytes", "MemTotal:"),
            ("node_memory_MemFree_bytes", "MemFree:"),
            ("node_memory_MemAvailable_bytes", "MemAvailable:"),
            ("node_memory_HighTotal_bytes", "HighTotal:"),
            ("node_memory_Active_file_bytes", "Active(file):"),
        ] {
            assert_eq!(sample(&text, metric), kb(key), "{metric}");
        }
        let buddyinfo = t.get("/proc/buddyinfo").text().to_string();
        for line in buddyinfo.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            for (order, n) in f[4..].iter().enumerate() {
                let series = format!(
                    "node_buddyinfo_blocks{{node=\"0\",size=\"{order}\",zone=\"{}\"}}",
                    f[3]
                );
                assert_eq!(
                    sample(&text, &series),
                    n.parse::<f64>().unwrap(),
                    "{series}"
                );
            }
        }
        let zones = t.json("/api/zones");
        for z in zones["zones"].as_array().unwrap() {
            let name = z["name"].as_str().unwrap();
            for (i, p) in z["protection"].as_array().unwrap().iter().enumerate() {
                let series = format!("node_zoneinfo_protection_{i}{{node=\"0\",zone=\"{name}\"}}");
                assert_eq!(sample(&text, &series), p.as_f64().unwrap(), "{series}");
            }
            let series = format!("node_zoneinfo_managed_pages{{node=\"0\",zone=\"{name}\"}}");
            assert_eq!(sample(&text, &series), z["managed"].as_f64().unwrap());
            let series = format!("node_zoneinfo_min_pages{{node=\"0\",zone=\"{name}\"}}");
            assert_eq!(
                sample(&text, &series),
                z["watermarks"]["min"].as_f64().unwrap()
            );
        }
        assert_eq!(
            sample(
                &text,
                r#"node_slabinfo_object_size_bytes{slab="kmalloc-64"}"#
            ),
            64.0
        );
        assert!(text.contains("# TYPE node_vmstat_pgfault untyped\n"));

        // Exposition rules: each family's HELP and TYPE once, before its
        // samples, and its samples together.
        let mut seen: Vec<String> = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(!seen.contains(&name), "{name} twice");
                seen.push(name.clone());
                current = name;
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{line} outside its family");
            }
        }
        // The label sets that partition a whole.
        let pool = t.json("/api/net")["tcp_sockets"]["total"].as_f64().unwrap();
        let tcp: f64 = samples(&text)
            .iter()
            .filter(|(s, _)| s.starts_with("pagezone_tcp_sockets{"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(tcp, pool);
    });
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(
        format!("{}", super::super::metrics::label_value(r#"a"b\c"#)),
        r#"a\"b\\c"#
    );
    assert_eq!(
        format!("{}", super::super::metrics::label_value("kmalloc-64")),
        "kmalloc-64"
    );
}

#[test]
fn extfrag_and_unusable_index_are_linux_text_from_the_free_lists() {
    run(DEFAULT, |t| {
        for (path, render) in [
            (
                "/sys/kernel/debug/extfrag/extfrag_index",
                mm::procfs::extfrag_index as fn(&_, &mut String) -> core::fmt::Result,
            ),
            (
                "/sys/kernel/debug/extfrag/unusable_index",
                mm::procfs::unusable_index,
            ),
        ] {
            let r = t.get(path);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
            let mut expected = String::new();
            render(&t.mm.lock(), &mut expected).unwrap();
            assert_eq!(r.text(), expected);
            let lines: Vec<&str> = expected.lines().collect();
            assert_eq!(lines.len(), 3, "DMA, DMA32, HighMem: {expected}");
            for line in lines {
                assert!(line.starts_with("Node 0, zone "), "{line}");
                assert_eq!(line.split_whitespace().count(), 4 + 11, "{line}");
            }
        }
        // Every order has a free block somewhere in each zone at boot
        // (HighMem has only order-10 blocks: smaller requests split one):
        // no request would fail, so every fragmentation index is -1.000,
        // and HighMem has nothing unusable below order 10.
        let ext = t
            .get("/sys/kernel/debug/extfrag/extfrag_index")
            .text()
            .to_string();
        assert!(
            ext.lines().all(|l| l.matches("-1.000").count() == 11),
            "{ext}"
        );
        let unusable = t
            .get("/sys/kernel/debug/extfrag/unusable_index")
            .text()
            .to_string();
        assert!(
            unusable.contains("Node 0, zone  HighMem 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 \n"),
            "{unusable}"
        );
    });
}
