//! Slab caches, kmalloc and mempools on the real guest, whose own heap is
//! kmalloc: counts in `/api/slabinfo` at every step, `/proc/slabinfo`'s
//! format, and reset back to the boot state.

use serde_json::{Value, json};
use tests::check::hex;
use tests::http::Client;
use tests::{BootOptions, boot_ready};

const PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;

fn buddyinfo(c: &mut Client) -> Value {
    let r = c.request("GET", "/api/buddyinfo", None);
    assert_eq!(r.status, 200);
    r.json()["zones"].clone()
}

fn caches(c: &mut Client) -> Vec<Value> {
    let r = c.request("GET", "/api/slabinfo", None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["caches"].as_array().unwrap().clone()
}

fn cache(c: &mut Client, name: &str) -> Option<Value> {
    caches(c).into_iter().find(|x| x["name"] == name)
}

/// `(active_objs, num_objs, [full, partial, empty])`.
fn counts(c: &mut Client, name: &str) -> (u64, u64, [u64; 3]) {
    let x = cache(c, name).unwrap_or_else(|| panic!("no cache {name}"));
    let n = |v: &Value| v.as_u64().unwrap();
    (
        n(&x["active_objs"]),
        n(&x["num_objs"]),
        [
            n(&x["slabs"]["full"]),
            n(&x["slabs"]["partial"]),
            n(&x["slabs"]["empty"]),
        ],
    )
}

fn post(c: &mut Client, path: &str, body: Value) -> tests::http::Response {
    c.request("POST", path, Some(&body.to_string()))
}

fn alloc_ok(c: &mut Client, body: Value) -> Value {
    let r = post(c, "/api/alloc", body.clone());
    assert_eq!(r.status, 201, "{body}: {}", r.text());
    r.json()
}

fn free(c: &mut Client, id: u64) {
    let r = c.request("DELETE", &format!("/api/alloc/{id}"), None);
    assert_eq!(r.status, 200, "free {id}: {}", r.text());
}

fn error_code(r: &tests::http::Response) -> String {
    r.json()["error"]["code"].as_str().unwrap().to_string()
}

#[test]
fn kmalloc_40_then_a_cache_of_200_byte_objects_step_by_step() {
    // pcp=off: every slab page given back shows in buddyinfo at once.
    let (_guest, port) = boot_ready(BootOptions::default().mem("512M").append("pcp=off"));
    let mut c = Client::connect(port);
    // Warm the connection's own allocations up, then take the references.
    for _ in 0..2 {
        caches(&mut c);
        buddyinfo(&mut c);
    }
    let boot = buddyinfo(&mut c);

    // The kernel's own heap is kmalloc: the 16 listening sockets' 8 KiB
    // receive buffers are kmalloc-8k objects.
    assert!(
        counts(&mut c, "kmalloc-8k").0 >= 16,
        "{:?}",
        cache(&mut c, "kmalloc-8k")
    );

    // kmalloc(40) is a kmalloc-64 object.
    let before = counts(&mut c, "kmalloc-cg-64").0;
    let h = alloc_ok(&mut c, json!({"type":"kmalloc","size":40}));
    assert_eq!(h["type"], "kmalloc");
    assert_eq!(h["size"], 40);
    assert_eq!(h["ksize"], 64);
    assert_eq!(h["cache"], "kmalloc-cg-64");
    let phys = hex(&h["phys"]);
    assert_eq!(phys % 64, 0);
    assert_eq!(hex(&h["virt"]), PAGE_OFFSET + phys);
    assert_eq!(h["pfn"], phys / 4096);
    assert_eq!(counts(&mut c, "kmalloc-cg-64").0, before + 1);
    let id = h["id"].as_u64().unwrap();
    let r = post(&mut c, &format!("/api/alloc/{id}/fill"), json!({"byte":90}));
    assert_eq!((r.status, r.json()["bytes"].as_u64()), (200, Some(40)));
    let sum = c
        .request("GET", &format!("/api/alloc/{id}/checksum"), None)
        .json();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[90; 40]);
    assert_eq!(
        (sum["bytes"].as_u64(), hex(&sum["crc32"])),
        (Some(40), u64::from(crc.finalize()))
    );
    free(&mut c, id);
    assert_eq!(counts(&mut c, "kmalloc-cg-64").0, before);

    // A cache of 200-byte objects aligned to 64: 256-byte stride, 16 per page.
    let r = post(
        &mut c,
        "/api/caches",
        json!({"name":"obj200","size":200,"align":64,"flags":[]}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let info = r.json();
    for (key, want) in [
        ("object_size", 200),
        ("size", 256),
        ("align", 64),
        ("objs_per_slab", 16),
        ("pages_per_slab", 1),
    ] {
        assert_eq!(info[key], want, "{key} in {info}");
    }
    assert_eq!(info["kind"], "api");
    assert_eq!(counts(&mut c, "obj200"), (0, 0, [0, 0, 0]));
    let r = post(&mut c, "/api/caches", json!({"name":"obj200","size":200}));
    assert_eq!((r.status, error_code(&r).as_str()), (409, "EBUSY"));

    let mut ids = Vec::new();
    let first = alloc_ok(&mut c, json!({"type":"cache","cache":"obj200"}));
    assert_eq!(
        (first["cache"].as_str(), first["size"].as_u64()),
        (Some("obj200"), Some(200))
    );
    assert_eq!(hex(&first["phys"]) % 64, 0);
    ids.push(first["id"].as_u64().unwrap());
    assert_eq!(counts(&mut c, "obj200"), (1, 16, [0, 1, 0]));
    for _ in 1..16 {
        ids.push(
            alloc_ok(&mut c, json!({"type":"cache","cache":"obj200"}))["id"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(counts(&mut c, "obj200"), (16, 16, [1, 0, 0]));
    ids.push(
        alloc_ok(&mut c, json!({"type":"cache","cache":"obj200"}))["id"]
            .as_u64()
            .unwrap(),
    );
    assert_eq!(counts(&mut c, "obj200"), (17, 32, [1, 1, 0]));

    // Live objects: destroy is refused and changes nothing.
    let r = c.request("DELETE", "/api/caches/obj200", None);
    assert_eq!((r.status, error_code(&r).as_str()), (409, "EBUSY"));
    assert_eq!(counts(&mut c, "obj200"), (17, 32, [1, 1, 0]));
    // kmalloc caches are never destroyed.
    let r = c.request("DELETE", "/api/caches/kmalloc-64", None);
    assert_eq!((r.status, error_code(&r).as_str()), (409, "EBUSY"));

    free(&mut c, ids.pop().unwrap());
    assert_eq!(counts(&mut c, "obj200"), (16, 32, [1, 0, 1]));
    free(&mut c, ids.remove(0));
    assert_eq!(counts(&mut c, "obj200"), (15, 32, [0, 1, 1]));
    for id in ids.drain(..) {
        free(&mut c, id);
    }
    assert_eq!(counts(&mut c, "obj200"), (0, 32, [0, 0, 2]));
    let r = c.request("POST", "/api/caches/obj200/shrink", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"freed_slabs":2}));
    assert_eq!(counts(&mut c, "obj200"), (0, 0, [0, 0, 0]));
    let r = c.request("DELETE", "/api/caches/obj200", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(cache(&mut c, "obj200").is_none());
    assert_eq!(c.request("DELETE", "/api/caches/obj200", None).status, 404);
    // The kmalloc(40) above grew kmalloc-cg-64 by one slab, kept empty (as
    // SLUB keeps empty slabs) until a shrink (or a reset) gives it back.
    let r = c.request("POST", "/api/caches/kmalloc-cg-64/shrink", None);
    assert_eq!(r.json(), json!({"freed_slabs":1}));
    assert_eq!(buddyinfo(&mut c), boot, "every slab page went back");
}

#[test]
fn mempool_reset_and_proc_slabinfo() {
    let (_guest, port) = boot_ready(BootOptions::default().mem("512M"));
    let mut c = Client::connect(port);
    for _ in 0..2 {
        caches(&mut c);
        buddyinfo(&mut c);
    }
    let boot = buddyinfo(&mut c);
    let boot_names: Vec<Value> = caches(&mut c).iter().map(|x| x["name"].clone()).collect();

    // A mempool over an API cache: its reserve is min_nr live objects.
    assert_eq!(
        post(
            &mut c,
            "/api/caches",
            json!({"name":"pool_objs","size":200,"align":64})
        )
        .status,
        201
    );
    let r = post(
        &mut c,
        "/api/mempools",
        json!({"name":"p","cache":"pool_objs","min_nr":4}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"name":"p","cache":"pool_objs","min_nr":4,"curr_nr":4})
    );
    assert_eq!(counts(&mut c, "pool_objs").0, 4);
    let h = alloc_ok(&mut c, json!({"type":"mempool","pool":"p"}));
    assert_eq!(
        (h["type"].as_str(), h["pool"].as_str(), h["cache"].as_str()),
        (Some("mempool"), Some("p"), Some("pool_objs"))
    );
    let pools = c.request("GET", "/api/mempools", None).json();
    assert_eq!(
        pools,
        json!({"pools":[{"name":"p","cache":"pool_objs","min_nr":4,"curr_nr":4}]}),
        "the cache served first"
    );
    assert_eq!(counts(&mut c, "pool_objs").0, 5);
    let r = post(&mut c, "/api/mempools/p/resize", json!({"min_nr":6}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["curr_nr"], 6);
    assert_eq!(counts(&mut c, "pool_objs").0, 7);
    let r = c.request("DELETE", "/api/mempools/p", None);
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (409, "EBUSY"),
        "an element is out"
    );
    let r = c.request("DELETE", "/api/caches/pool_objs", None);
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (409, "EBUSY"),
        "under a mempool"
    );

    // More of every kind, then reset.
    assert_eq!(
        post(
            &mut c,
            "/api/caches",
            json!({"name":"dbg","size":24,"flags":["SLAB_RED_ZONE","SLAB_POISON"]})
        )
        .status,
        201
    );
    alloc_ok(&mut c, json!({"type":"cache","cache":"dbg"}));
    alloc_ok(&mut c, json!({"type":"kmalloc","size":100,"gfp":"GFP_DMA"}));
    alloc_ok(&mut c, json!({"type":"kmalloc","size":20000}));
    alloc_ok(&mut c, json!({"type":"pages","order":1}));
    let meminfo = c.request("GET", "/api/meminfo", None).json();
    let slab_pages = c.request("GET", "/api/slabinfo", None).json()["slab_pages"]
        .as_u64()
        .unwrap();
    assert!(slab_pages > 0);
    assert_eq!(meminfo["Slab"], meminfo["SUnreclaim"]);
    assert!(meminfo["Slab"].as_u64().unwrap() > 0);

    // /proc/slabinfo: Linux's 2.1 format, one line per cache.
    let r = c.request("GET", "/proc/slabinfo", None);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "slabinfo - version: 2.1");
    assert_eq!(
        lines[1],
        "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"
    );
    let json_caches = caches(&mut c);
    assert_eq!(lines.len() - 2, json_caches.len());
    let mut names = Vec::new();
    for line in &lines[2..] {
        assert!(!line.ends_with(' '), "{line:?}");
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 16, "{line}");
        assert_eq!(
            (f[6], f[7], f[11], f[12]),
            (":", "tunables", ":", "slabdata"),
            "{line}"
        );
        for n in f[1..6].iter().chain(&f[8..11]).chain(&f[13..16]) {
            n.parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
        }
        names.push(f[0].to_string());
    }
    assert_eq!(&names[..2], ["dbg", "pool_objs"], "newest first");
    for want in [
        "kmalloc-8",
        "kmalloc-96",
        "kmalloc-192",
        "kmalloc-8k",
        "dma-kmalloc-128",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }

    let r = c.request("POST", "/api/reset", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["freed"], 5);
    let after: Vec<Value> = caches(&mut c).iter().map(|x| x["name"].clone()).collect();
    assert_eq!(after, boot_names, "API caches are gone");
    assert_eq!(
        c.request("GET", "/api/mempools", None).json(),
        json!({"pools":[]})
    );
    assert_eq!(
        c.request("GET", "/api/allocations", None).json()["allocations"],
        json!([])
    );
    assert_eq!(buddyinfo(&mut c), boot);
}
