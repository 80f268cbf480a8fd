//! `/proc/pagetypeinfo`, `POST /api/bench` and the slab families of
//! `/metrics` on a real guest: the text agrees with `/api/buddyinfo`, every
//! workload answers TSC timings and leaves the buddy allocator as it found
//! it, and every slab cache has its metrics.

use std::time::Instant;

use serde_json::{Value, json};
use tests::http::{Client, Response};
use tests::{BootOptions, boot_ready};

fn get(c: &mut Client, path: &str) -> Value {
    let r = c.request("GET", path, None);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

fn text(c: &mut Client, path: &str) -> String {
    let r = c.request("GET", path, None);
    assert_eq!(r.status, 200, "{path}");
    assert!(
        r.header("content-type").unwrap().starts_with("text/plain"),
        "{path}"
    );
    r.text()
}

fn post(c: &mut Client, path: &str, body: Value) -> Response {
    c.request("POST", path, Some(&body.to_string()))
}

fn error(r: &Response) -> (u16, String) {
    let j = r.json();
    assert!(
        j["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{j}"
    );
    (r.status, j["error"]["code"].as_str().unwrap().to_string())
}

/// `[(zone, free_area)]` of `/api/buddyinfo`.
fn buddyinfo(c: &mut Client) -> Vec<(String, Vec<u64>)> {
    get(c, "/api/buddyinfo")["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| {
            let counts = z["free_area"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .collect();
            (z["name"].as_str().unwrap().to_string(), counts)
        })
        .collect()
}

/// `(cache, num_slabs)` of every slab cache.
fn num_slabs(c: &mut Client) -> Vec<(String, u64)> {
    get(c, "/api/slabinfo")["caches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap().to_string(),
                x["num_slabs"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A run that must succeed, with sane numbers; returns the answer.
fn bench(c: &mut Client, body: Value) -> Value {
    let started = Instant::now();
    let r = post(c, "/api/bench", body.clone());
    let wall_ns = started.elapsed().as_nanos() as u64;
    assert_eq!(r.status, 200, "{body}: {}", r.text());
    let j = r.json();
    let n = |k: &str| {
        j[k].as_u64()
            .unwrap_or_else(|| panic!("{k} is not a number: {j}"))
    };
    assert_eq!(j["workload"], body["workload"], "{j}");
    assert_eq!(j["ops"], body["iterations"], "{j}");
    assert!(
        n("min_ns") <= n("p50_ns") && n("p50_ns") <= n("p99_ns") && n("p99_ns") <= n("max_ns"),
        "{j}"
    );
    assert!(
        n("ns_per_op") >= n("min_ns") && n("ns_per_op") <= n("max_ns"),
        "{j}"
    );
    // The TSC clock runs: an alloc + free pair takes some time, and less
    // than a millisecond on average even under TCG.
    assert!(n("p50_ns") > 0, "{j}");
    assert!(n("ns_per_op") > 0 && n("ns_per_op") < 1_000_000, "{j}");
    assert!(n("total_ns") >= n("ns_per_op") * n("ops"), "{j}");
    // The guest's run cannot have taken longer than the request did (with
    // a generous allowance for the calibration of a TSC under emulation).
    assert!(
        n("total_ns") <= wall_ns * 2 + 1_000_000_000,
        "{j}: host saw {wall_ns} ns"
    );
    eprintln!("bench {body} -> {j}");
    j
}

#[test]
fn pagetypeinfo_bench_and_slab_metrics() {
    // pcp=off: the benchmarks' frees must show in buddyinfo at once.
    let (_guest, port) = boot_ready(BootOptions::default().mem("2G").append("pcp=off"));
    let mut c = Client::connect(port);

    // Warm the connection's and each route's own allocations up (the
    // kernel heap is kmalloc), then take the references.
    for _ in 0..2 {
        buddyinfo(&mut c);
        text(&mut c, "/proc/pagetypeinfo");
        text(&mut c, "/metrics");
        get(&mut c, "/api/slabinfo");
        for w in [
            json!({"workload":"pages","iterations":10}),
            json!({"workload":"kmalloc","iterations":10}),
            json!({"workload":"vmalloc","iterations":10}),
            json!({"workload":"cache","iterations":10,"cache":"kmalloc-64"}),
        ] {
            assert_eq!(post(&mut c, "/api/bench", w).status, 200);
        }
    }

    // /proc/pagetypeinfo: Linux's header, then one row per migrate type of
    // each populated zone; the Movable rows are /api/buddyinfo.
    let before = buddyinfo(&mut c);
    let pt = text(&mut c, "/proc/pagetypeinfo");
    assert_eq!(buddyinfo(&mut c), before, "nothing moved while reading");
    let mut lines = pt.lines();
    assert_eq!(lines.next(), Some("Page block order: 9"));
    assert_eq!(lines.next(), Some("Pages per block:  512"));
    assert_eq!(lines.next(), Some(""));
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("Free pages count per migrate type at order "),
        "{header}"
    );
    let orders: Vec<&str> = header.split_whitespace().skip(8).collect();
    assert_eq!(
        orders,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
        "{header}"
    );
    let populated: Vec<String> = get(&mut c, "/api/zones")["zones"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|z| z["present"].as_u64().unwrap() > 0)
        .map(|z| z["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        populated,
        ["DMA", "DMA32", "HighMem"],
        "2 GiB with lowmem=896M"
    );
    // Per zone, the six migrate types' rows add up to buddyinfo (the
    // kernel's own pages are Unmovable, the rest Movable at boot); no CMA
    // area and nothing isolated.
    let mut sums: Vec<(String, Vec<u64>)> = Vec::new();
    for line in pt
        .lines()
        .filter(|l| l.starts_with("Node ") && l.contains(", type "))
    {
        let (head, rest) = line.split_once(", type ").unwrap();
        let zone = head.split_once("zone ").unwrap().1.trim().to_string();
        let mut fields = rest.split_whitespace();
        let mtype = fields.next().unwrap();
        // Linux prints ">100000" for a list it stopped counting.
        let counts: Vec<u64> = fields
            .map(|f| f.trim_start_matches('>').parse().unwrap())
            .collect();
        assert_eq!(counts.len(), 11, "{line}");
        if ["CMA", "Isolate"].contains(&mtype) {
            assert!(counts.iter().all(|&n| n == 0), "{line}");
        }
        match sums.iter_mut().find(|(z, _)| *z == zone) {
            Some((_, s)) => s.iter_mut().zip(&counts).for_each(|(a, b)| *a += b),
            None => sums.push((zone, counts)),
        }
    }
    for (zone, sum) in &sums {
        let want = &before.iter().find(|(n, _)| n == zone).unwrap().1;
        if want.iter().all(|&n| n < 100_000) {
            assert_eq!(sum, want, "{zone}");
        }
    }
    assert_eq!(
        sums.iter().map(|(z, _)| z.as_str()).collect::<Vec<_>>(),
        populated
    );
    let blocks = pt
        .split_once("Number of blocks type")
        .map(|(_, b)| b)
        .expect("block counts");
    for zone in &populated {
        assert!(
            blocks.contains(&format!("zone {zone:>8} ")),
            "{zone}: {blocks}"
        );
    }

    // The fragmentation indices, one line per populated zone, 11 orders:
    // at boot every order is free somewhere in each zone (-1.000).
    for (path, each) in [
        ("/sys/kernel/debug/extfrag/extfrag_index", "-1.000"),
        ("/sys/kernel/debug/extfrag/unusable_index", ""),
    ] {
        let r = c.request("GET", path, None);
        assert_eq!(r.status, 200, "{path}");
        let text = r.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), populated.len(), "{text}");
        for (line, zone) in lines.iter().zip(&populated) {
            assert!(
                line.starts_with(&format!("Node 0, zone {zone:>8} ")),
                "{line}"
            );
            let fields: Vec<&str> = line.split_whitespace().skip(4).collect();
            assert_eq!(fields.len(), 11, "{line}");
            if !each.is_empty() {
                assert!(fields.iter().all(|f| *f == each), "{line}");
            }
        }
    }

    // POST /api/bench: every workload, buddyinfo untouched.
    let r = post(
        &mut c,
        "/api/caches",
        json!({"name":"bench-obj","size":200}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let before = buddyinfo(&mut c);
    let slabs = num_slabs(&mut c);
    for body in [
        json!({"workload":"pages","iterations":20000}),
        json!({"workload":"pages","iterations":2000,"order":4}),
        json!({"workload":"kmalloc","iterations":20000}),
        json!({"workload":"kmalloc","iterations":2000,"size":20000}),
        json!({"workload":"vmalloc","iterations":2000}),
        json!({"workload":"cache","iterations":20000,"cache":"kmalloc-64"}),
        // A cache without a slab: the run's slab is given back.
        json!({"workload":"cache","iterations":20000,"cache":"bench-obj"}),
    ] {
        let j = bench(&mut c, body.clone());
        if body["workload"] == "vmalloc" {
            assert_eq!(j["size"], 16384);
        }
        assert_eq!(buddyinfo(&mut c), before, "{body} changed /api/buddyinfo");
    }
    assert_eq!(num_slabs(&mut c), slabs, "a cache kept a slab the run grew");
    assert_eq!(get(&mut c, "/api/allocations")["allocations"], json!([]));
    for (body, status, code) in [
        (json!({"workload":"pages","iterations":0}), 400, "EINVAL"),
        (
            json!({"workload":"pages","iterations":100_001}),
            400,
            "EINVAL",
        ),
        (
            json!({"workload":"pages","iterations":10,"order":11}),
            400,
            "EINVAL",
        ),
        (json!({"workload":"heap","iterations":10}), 400, "EINVAL"),
        (
            json!({"workload":"cache","iterations":10,"cache":"no-such-cache"}),
            404,
            "ENOENT",
        ),
    ] {
        let r = post(&mut c, "/api/bench", body.clone());
        assert_eq!(error(&r), (status, code.to_string()), "{body}");
    }
    assert_eq!(buddyinfo(&mut c), before);

    // /metrics: every cache's slab lines, /api/slabinfo's numbers.
    let m = text(&mut c, "/metrics");
    let caches = get(&mut c, "/api/slabinfo")["caches"].clone();
    let caches = caches.as_array().unwrap();
    assert!(caches.iter().any(|x| x["name"] == "kmalloc-64"));
    for x in caches {
        let name = x["name"].as_str().unwrap();
        for family in [
            "pagezone_slab_active_objects",
            "pagezone_slab_objects",
            "pagezone_slab_slabs",
        ] {
            let prefix = format!("{family}{{cache=\"{name}\"}} ");
            assert!(m.lines().any(|l| l.starts_with(&prefix)), "no {prefix:?}");
        }
        for key in ["num_slabs", "object_size"] {
            let family = if key == "num_slabs" {
                "pagezone_slab_slabs"
            } else {
                "pagezone_slab_object_size_bytes"
            };
            let line = format!("{family}{{cache=\"{name}\"}} {}", x[key]);
            assert!(m.lines().any(|l| l == line), "no {line:?}");
        }
        let line =
            format!("pagezone_slab_corruptions_total{{cache=\"{name}\",kind=\"red_zone\"}} 0");
        assert!(m.lines().any(|l| l == line), "no {line:?}");
    }
    for family in [
        "# TYPE pagezone_slab_active_objects gauge",
        "# TYPE pagezone_slab_objects gauge",
        "# TYPE pagezone_slab_slabs gauge",
        "# TYPE pagezone_slab_corruptions_total counter",
        "# TYPE pagezone_slab_pages gauge",
    ] {
        assert!(m.lines().any(|l| l == family), "no {family:?}");
    }
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
    }

    // Reset destroys the API cache and brings the boot state back.
    assert_eq!(post(&mut c, "/api/reset", json!({})).status, 200);
}
