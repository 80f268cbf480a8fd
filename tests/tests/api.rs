//! The HTTP API of a real guest, over QEMU's port forward on 127.0.0.1.

use serde_json::{Value, json};
use tests::check::{hex, predict_alloc, zone_counts};
use tests::http::{Client, request, request_patiently};
use tests::{BootOptions, Machine, boot_ready};

const MIB: u64 = 1 << 20;

fn buddyinfo(c: &mut Client) -> Vec<(String, Vec<u64>)> {
    let r = c.request("GET", "/api/buddyinfo", None);
    assert_eq!(r.status, 200);
    r.json()["zones"]
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

fn alloc(c: &mut Client, body: Value) -> tests::http::Response {
    c.request("POST", "/api/alloc", Some(&body.to_string()))
}

fn error_code(r: &tests::http::Response) -> String {
    let j = r.json();
    assert!(
        j["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{j}"
    );
    j["error"]["code"].as_str().unwrap().to_string()
}

#[test]
fn zones_fields_and_buddyinfo() {
    let (_guest, port) = boot_ready(BootOptions::default().mem("2G"));
    let mut c = Client::connect(port);
    let health = c.request("GET", "/api/health", None);
    assert_eq!(health.status, 200);
    assert_eq!(health.header("content-type"), Some("application/json"));
    assert_eq!(health.json()["status"], "ok");

    let z = c.request("GET", "/api/zones", None).json();
    assert_eq!(z["max_order"], 10);
    assert_eq!(hex(&z["lowmem_limit"]), 896 * MIB);
    let zones = z["zones"].as_array().unwrap();
    let names: Vec<_> = zones.iter().map(|z| z["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["DMA", "DMA32", "Normal", "HighMem"]);
    let lowmem_pfn = 896 * MIB / 4096;
    let expect = [
        (0, 4096),
        (4096, lowmem_pfn),
        (lowmem_pfn, lowmem_pfn),
        (lowmem_pfn, Machine::from_env().ram_end_pfn(2048)),
    ];
    for (zone, (start, end)) in zones.iter().zip(expect) {
        assert_eq!(zone["start_pfn"], start, "{zone}");
        assert_eq!(zone["end_pfn"], end, "{zone}");
        assert_eq!(zone["spanned"], end - start, "{zone}");
        for key in ["present", "managed", "free"] {
            assert!(zone[key].is_u64(), "{key} in {zone}");
        }
        assert!(zone["managed"].as_u64() <= zone["present"].as_u64());
        let wm = &zone["watermarks"];
        assert!(
            wm["min"].as_u64() <= wm["low"].as_u64() && wm["low"].as_u64() <= wm["high"].as_u64(),
            "{zone}"
        );
        assert_eq!(zone["protection"].as_array().unwrap().len(), 4);
        let fa = zone["free_area"].as_array().unwrap();
        assert_eq!(fa.len(), 11);
        let pages: u64 = fa
            .iter()
            .enumerate()
            .map(|(o, n)| n.as_u64().unwrap() << o)
            .sum();
        assert_eq!(
            pages,
            zone["free"].as_u64().unwrap(),
            "free_area adds up to free in {zone}"
        );
    }
    assert_eq!(zones[2]["present"], 0);
    assert_eq!(
        zones[3]["present"],
        Machine::from_env().ram_end_pfn(2048) - lowmem_pfn
    );

    // /proc/buddyinfo: Linux's format, populated zones only, same numbers.
    let text = c.request("GET", "/proc/buddyinfo", None);
    assert_eq!(text.status, 200);
    assert!(
        text.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let info = buddyinfo(&mut c);
    let mut expected = String::new();
    for (name, counts) in info.iter().filter(|(n, _)| n != "Normal") {
        expected.push_str(&format!("Node 0, zone {name:>8} "));
        for n in counts {
            expected.push_str(&format!("{n:>6} "));
        }
        expected.push('\n');
    }
    assert_eq!(text.text(), expected);
}

#[test]
fn pages_allocations_split_free_fill_and_reset() {
    // pcp=off: every split and merge shows in the buddy lists at once.
    let (_guest, port) = boot_ready(BootOptions::default().mem("2G").append("pcp=off"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);

    // Order 3 from ZONE_DMA: below 16 MiB, 32 KiB aligned, split as
    // predicted from the free lists of its migrate type (Unmovable).
    let predicted = predict_alloc(
        &c.request("GET", "/api/zones", None).json(),
        "DMA",
        "Unmovable",
        3,
    );
    let r = alloc(&mut c, json!({"type":"pages","order":3,"gfp":"GFP_DMA"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let h = r.json();
    assert_eq!(h["type"], "pages");
    assert_eq!(h["order"], 3);
    assert_eq!(h["size"], 32768);
    assert_eq!(h["zone"], "DMA");
    let phys = hex(&h["phys"]);
    assert!(phys < 16 * MIB && phys.is_multiple_of(32768), "{phys:#x}");
    assert_eq!(h["pfn"], phys / 4096);
    assert_eq!(hex(&h["virt"]), 0xffff_8880_0000_0000 + phys);
    let after = buddyinfo(&mut c);
    assert_eq!(zone_counts(&after, "DMA"), predicted.as_slice());
    let id = h["id"].as_u64().unwrap();
    let listed = c.request("GET", "/api/allocations", None).json();
    assert!(
        listed["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id)
    );

    // Freeing with the wrong order is refused and changes nothing.
    let wrong = c.request("DELETE", &format!("/api/alloc/{id}?order=2"), None);
    assert_eq!(wrong.status, 409);
    assert_eq!(error_code(&wrong), "EBUSY");
    assert_eq!(buddyinfo(&mut c), after);
    let ok = c.request("DELETE", &format!("/api/alloc/{id}?order=3"), None);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        buddyinfo(&mut c),
        boot,
        "freeing merges back to the boot state"
    );
    assert_eq!(
        c.request("DELETE", &format!("/api/alloc/{id}"), None)
            .status,
        404
    );

    // GFP_HIGHUSER: a HighMem frame with no kernel mapping; fill and
    // checksum go through kmap_atomic.
    let hi = alloc(
        &mut c,
        json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"}),
    )
    .json();
    assert_eq!(hi["zone"], "HighMem");
    assert!(hi["virt"].is_null());
    assert!(hex(&hi["phys"]) >= 896 * MIB);
    let hid = hi["id"].as_u64().unwrap();
    let fill = c.request(
        "POST",
        &format!("/api/alloc/{hid}/fill"),
        Some(r#"{"byte":165}"#),
    );
    assert_eq!(fill.status, 200, "{}", fill.text());
    assert_eq!(fill.json()["bytes"], 4096);
    let sum = c
        .request("GET", &format!("/api/alloc/{hid}/checksum"), None)
        .json();
    assert_eq!(sum["bytes"], 4096);
    let mut h = crc32fast::Hasher::new();
    h.update(&[0xA5; 4096]);
    assert_eq!(hex(&sum["crc32"]), h.finalize() as u64);

    // A lowmem block of 4 pages with __GFP_ZERO reads back as zeroes.
    let z = alloc(
        &mut c,
        json!({"type":"pages","order":2,"gfp":"GFP_KERNEL|__GFP_ZERO"}),
    )
    .json();
    let zsum = c
        .request("GET", &format!("/api/alloc/{}/checksum", z["id"]), None)
        .json();
    let mut h = crc32fast::Hasher::new();
    h.update(&[0; 16384]);
    assert_eq!(hex(&zsum["crc32"]), h.finalize() as u64);

    // 20 random allocations, then reset: back to the boot buddyinfo.
    let gfps = [
        "GFP_KERNEL",
        "GFP_DMA",
        "GFP_DMA32",
        "GFP_HIGHUSER",
        "GFP_ATOMIC",
        "GFP_KERNEL|__GFP_ZERO",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let order = seed % 8;
        let gfp = gfps[(seed >> 8) as usize % gfps.len()];
        let r = alloc(&mut c, json!({"type":"pages","order":order,"gfp":gfp}));
        assert_eq!(r.status, 201, "order {order} {gfp}: {}", r.text());
    }
    assert_ne!(buddyinfo(&mut c), boot);
    let reset = c.request("POST", "/api/reset", None);
    assert_eq!(reset.status, 200);
    assert_eq!(reset.json()["freed"], 22);
    assert_eq!(buddyinfo(&mut c), boot);
    assert_eq!(
        c.request("GET", "/api/allocations", None).json()["allocations"],
        json!([])
    );
}

#[test]
fn every_error_row_of_the_contract() {
    let (_guest, port) = boot_ready(BootOptions::default().mem("512M"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);

    // 400 EINVAL: malformed JSON, out-of-range order, unknown GFP flag.
    for body in [
        r#"{"type":"pages","order":"#,
        r#"{"type":"pages","order":11}"#,
        r#"{"type":"pages","order":1,"gfp":"GFP_BOGUS"}"#,
    ] {
        let r = c.request("POST", "/api/alloc", Some(body));
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(error_code(&r), "EINVAL");
    }
    // 404 ENOENT: unknown path and unknown handle.
    let r = c.request("GET", "/api/nonexistent", None);
    assert_eq!((r.status, error_code(&r).as_str()), (404, "ENOENT"));
    let r = c.request("POST", "/api/alloc/4242/fill", Some(r#"{"byte":1}"#));
    assert_eq!((r.status, error_code(&r).as_str()), (404, "ENOENT"));
    // 405 with Allow.
    let r = c.request("DELETE", "/api/zones", None);
    assert_eq!((r.status, error_code(&r).as_str()), (405, "EINVAL"));
    assert!(
        r.header("allow").unwrap().contains("GET"),
        "{:?}",
        r.headers
    );
    // 507 ENOMEM: ZONE_DMA runs dry long before the quota.
    let mut ids = 0;
    let last = loop {
        let r = alloc(&mut c, json!({"type":"pages","order":10,"gfp":"GFP_DMA"}));
        if r.status != 201 {
            break r;
        }
        ids += 1;
        assert!(ids < 16, "ZONE_DMA holds at most 3 order-10 blocks");
    };
    assert_eq!((last.status, error_code(&last).as_str()), (507, "ENOMEM"));
    assert_eq!(c.request("POST", "/api/reset", None).status, 200);
    assert_eq!(buddyinfo(&mut c), boot);

    // 413: a body over 64 KiB (refused from Content-Length alone).
    let mut big = Client::connect(port);
    big.send_raw(b"POST /api/alloc HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n");
    let r = big.read_response(false);
    assert_eq!((r.status, error_code(&r).as_str()), (413, "E2BIG"));
    // 431: a request head over 8 KiB.
    let mut long = Client::connect(port);
    let filler = "a".repeat(9000);
    long.send_raw(format!("GET /api/health HTTP/1.1\r\nX-Filler: {filler}\r\n\r\n").as_bytes());
    let r = long.read_response(false);
    assert_eq!((r.status, error_code(&r).as_str()), (431, "E2BIG"));
    // A malformed request line.
    let mut bad = Client::connect(port);
    bad.send_raw(b"BLAH\r\n\r\n");
    assert_eq!(bad.read_response(false).status, 400);

    // The kernel is still fine and nothing leaked.
    assert_eq!(request(port, "GET", "/api/health", None).status, 200);
    assert_eq!(buddyinfo(&mut c), boot);
}

#[test]
fn token_and_quota() {
    let (_guest, port) = boot_ready(
        BootOptions::default()
            .mem("512M")
            .append("token=s3cret api_quota=2"),
    );
    let mut c = Client::connect(port);
    // 401 EACCES without the bearer token; GETs stay open.
    let r = alloc(&mut c, json!({"type":"pages","order":0}));
    assert_eq!((r.status, error_code(&r).as_str()), (401, "EACCES"));
    assert_eq!(c.request("GET", "/api/zones", None).status, 200);
    let auth = [("Authorization", "Bearer s3cret")];
    // 507 EQUOTA: 2 % of ~128k managed pages is ~2600 pages: the third
    // order-10 block crosses it.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = c.request_with(
            "POST",
            "/api/alloc",
            Some(r#"{"type":"pages","order":10,"gfp":"GFP_KERNEL"}"#),
            &auth,
        );
        statuses.push((
            r.status,
            if r.status == 201 {
                String::new()
            } else {
                error_code(&r)
            },
        ));
    }
    assert_eq!(statuses[0].0, 201);
    assert_eq!(statuses[1].0, 201);
    assert_eq!(statuses[2], (507, "EQUOTA".to_string()));
    let reset = c.request_with("POST", "/api/reset", None, &auth);
    assert_eq!(reset.json()["freed"], 2);
}

/// The pool is sized by lowmem (`net::default_max_connections`): 32
/// slots from 80 MiB, the 16 API.md promises in a small guest; every
/// slot serves a keep-alive client at the same time.
#[test]
fn as_many_concurrent_keep_alive_clients_as_the_pool_has() {
    let (small, port) = boot_ready(BootOptions::default().mem("32M"));
    let net = Client::connect(port)
        .request("GET", "/api/net", None)
        .json();
    assert_eq!(net["tcp_sockets"]["total"], 16, "{net}");
    drop(small);

    let (_guest, port) = boot_ready(BootOptions::default().mem("512M"));
    // The clients connect one after the other, each answered once: QEMU's
    // user network accepts the host side with a listen backlog of 1, so a
    // burst of connects overflows the host's queue and some wait seconds
    // in SYN retransmissions before the guest sees them.
    let mut clients: Vec<Client> = (0..32)
        .map(|i| {
            let mut c = Client::connect(port);
            assert_eq!(
                c.request("GET", "/api/health", None).status,
                200,
                "client {i}"
            );
            c
        })
        .collect();
    // All 32 hold a slot now (a 33rd would be reset).
    let net = clients[0].request("GET", "/api/net", None).json();
    assert_eq!(net["tcp_sockets"]["total"], 32, "{net}");
    assert_eq!(net["tcp_sockets"]["in_use"], 32, "{net}");
    let start = std::sync::Arc::new(std::sync::Barrier::new(32));
    let handles: Vec<_> = clients
        .drain(..)
        .enumerate()
        .map(|(i, mut c)| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..5 {
                    let r = c.request("GET", "/api/buddyinfo", None);
                    assert_eq!(r.status, 200, "client {i}");
                    assert!(r.json()["zones"].is_array());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
}

#[test]
fn dma_net_and_memmap_views() {
    let (_guest, port) = boot_ready(BootOptions::default().mem("2G").append("loglevel=info"));
    let mut c = Client::connect(port);

    // virtio-net's rings and frame buffers are coherent DMA buffers below
    // 4 GiB, direct-mapped, from the low zones; the bounce pool is idle
    // because every buffer the driver shares is already reachable.
    let dma = c.request("GET", "/api/dma", None).json();
    let coherent = dma["coherent"].as_array().unwrap();
    for owner in [
        "virtio-net rx",
        "virtio-net tx",
        "virtio-net queue",
        "swiotlb",
    ] {
        assert!(
            coherent.iter().any(|b| b["owner"] == owner),
            "{owner} in {dma}"
        );
    }
    for b in coherent {
        let (addr, size) = (hex(&b["dma_addr"]), b["size"].as_u64().unwrap());
        assert!(
            addr.is_multiple_of(4096) && size.is_multiple_of(4096) && addr + size <= 4 << 30,
            "{b}"
        );
        assert_eq!(hex(&b["cpu_addr"]), 0xffff_8880_0000_0000 + addr, "{b}");
        assert!(b["zone"] == "DMA32" || b["zone"] == "DMA", "{b}");
    }
    assert_eq!(dma["bounce"]["slots"], 64);
    assert_eq!(dma["bounce"]["used"], 0);

    let net = c.request("GET", "/api/net", None).json();
    assert_eq!(net["mac"], "52:54:00:12:34:56");
    assert_eq!(net["ipv4"], "10.0.2.15");
    assert_eq!(net["tcp_sockets"]["total"], 32, "{net}");
    // virtio-pci on q35, virtio-mmio on microvm: the same driver.
    assert_eq!(net["transport"], Machine::from_env().transport(), "{net}");
    assert!(net["tcp_sockets"]["in_use"].as_u64().unwrap() >= 1, "{net}");
    assert!(
        net["rx_packets"].as_u64().unwrap() > 0 && net["tx_packets"].as_u64().unwrap() > 0,
        "{net}"
    );

    // The memory map: sorted, disjoint, the kernel image at 1 MiB, memblock's
    // named reservations, and the firmware's reserved ranges.
    let memmap = c.request("GET", "/api/memmap", None).json();
    assert_eq!(
        memmap["cmdline"],
        format!("loglevel=info{}", Machine::from_env().appended_cmdline())
    );
    let entries = memmap["entries"].as_array().unwrap();
    let mut last_end = 0;
    for e in entries {
        let (start, end) = (hex(&e["start"]), hex(&e["end"]));
        assert!(start >= last_end && end > start, "sorted and disjoint: {e}");
        last_end = end;
    }
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {memmap}"))
    };
    assert_eq!(
        (
            hex(&find("kernel")["start"]),
            find("kernel")["type"].clone()
        ),
        (0x10_0000, json!("kernel"))
    );
    assert_eq!(find("mem_map")["type"], "memblock");
    assert_eq!(
        find("mem_map")["size"],
        Machine::from_env().ram_end_pfn(2048) * 16,
        "one 16-byte struct page per frame"
    );
    assert_eq!(find("firmware")["type"], "reserved");
    let usable: u64 = entries
        .iter()
        .filter(|e| e["type"] == "usable")
        .map(|e| e["size"].as_u64().unwrap())
        .sum();
    let zones = c.request("GET", "/api/zones", None).json();
    let managed: u64 = zones["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["managed"].as_u64().unwrap())
        .sum();
    // What memblock handed over is what the zones manage (page-rounded).
    assert!(
        usable / 4096 >= managed && usable / 4096 - managed < 8,
        "usable {usable:#x} vs managed {managed} pages"
    );
}

/// Garbage in, nothing lost: random bytes, random JSON-ish bodies and
/// random paths must never crash or wedge the kernel, leak a socket, or
/// change the buddy state (every request that allocates fails validation or
/// is reset at the end).
#[test]
fn random_garbage_never_hurts_the_kernel() {
    let (guest, port) = boot_ready(BootOptions::default().mem("512M"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces = [
        "{",
        "}",
        "\"type\"",
        ":",
        "\"pages\"",
        "\"order\"",
        "-1",
        "99999999999999999999",
        "1e9",
        ",",
        "[",
        "]",
        "\"gfp\"",
        "\"GFP_DMA|GFP_DMA32\"",
        "null",
        "\"kmalloc\"",
        "\"size\"",
        "0",
        "\u{0}",
        "\\u0000",
        "\"vmalloc\"",
        "\"ioremap\"",
        "\"phys\"",
        "\"0xffffffffffffffff\"",
        "\"cache\"",
        "\"nope\"",
        "true",
    ];
    for i in 0..150 {
        let mut body = String::new();
        for _ in 0..(next() % 12) {
            body.push_str(pieces[(next() % pieces.len() as u64) as usize]);
        }
        let path = [
            "/api/alloc",
            "/api/caches",
            "/api/mempools",
            "/api/kmap",
            "/api/bench",
            "/api/alloc/1/fill",
        ][(next() % 6) as usize];
        let r = c.request("POST", path, Some(&body));
        assert!(
            matches!(r.status, 200 | 201 | 400 | 404 | 409 | 507),
            "request {i}: POST {path} {body:?} → {} {}",
            r.status,
            r.text()
        );
        if r.status >= 400 {
            let j = r.json();
            assert!(j["error"]["code"].is_string(), "{j}");
        }
    }
    // Raw byte soup on fresh connections: the server answers 400 or closes.
    // It may close (and reset) before all bytes are in, so a failed write
    // is fine; what matters is that the kernel stays up and loses nothing.
    for _ in 0..30 {
        use std::io::Write;
        let n = 1 + next() % 300;
        let mut bytes: Vec<u8> = (0..n).map(|_| (next() & 0xff) as u8).collect();
        bytes.extend_from_slice(b"\r\n\r\n");
        if let Ok(mut raw) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = raw.write_all(&bytes);
        }
    }
    // The dropped raw clients may hold every socket for a while (until
    // their connections wind down), so ask patiently, as a client of a
    // saturated server would.
    let patience = std::time::Duration::from_secs(30);
    let reset = request_patiently(port, "POST", "/api/reset", None, patience);
    assert_eq!(reset.status, 200);
    let mut c = Client::connect_patiently(port, patience);
    assert_eq!(buddyinfo(&mut c), boot);
    assert_eq!(c.request("GET", "/api/health", None).status, 200);
    assert!(
        guest
            .log()
            .iter()
            .all(|l| !l.contains("PANIC") && !l.contains("EXCEPTION"))
    );
}

/// `{"type":"dma"}` is `dma_alloc_coherent` on the kernel's own registry:
/// the API's buffer shows up in `/api/dma` next to virtio-net's, is zeroed,
/// contiguous and below 4 GiB, fills and checksums through the direct map,
/// and freeing it (or a reset) leaves the registry and buddyinfo as at boot.
#[test]
fn dma_alloc_coherent_shares_the_kernels_registry() {
    let (_guest, port) = boot_ready(BootOptions::default().mem("512M"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    let coherent = |c: &mut Client| {
        let r = c.request("GET", "/api/dma", None);
        assert_eq!(r.status, 200);
        r.json()["coherent"].as_array().unwrap().clone()
    };
    let boot_dma = coherent(&mut c);
    assert!(boot_dma.iter().all(|b| b["owner"] != "api"), "{boot_dma:?}");

    let r = alloc(&mut c, json!({"type":"dma","size":65536}));
    assert_eq!(r.status, 201, "{}", r.text());
    let h = r.json();
    assert_eq!(h["type"], "dma");
    assert_eq!(h["size"], 65536);
    assert_eq!(h["order"], 4, "64 KiB is one order-4 block");
    assert_eq!(h["nr_pages"], 16);
    assert!(h["zone"] == "DMA32" || h["zone"] == "DMA", "{h}");
    let dma_addr = hex(&h["dma_addr"]);
    assert!(
        dma_addr.is_multiple_of(65536) && dma_addr + 65536 <= 4 << 30,
        "{dma_addr:#x}"
    );
    assert_eq!(hex(&h["phys"]), dma_addr, "no IOMMU: dma_addr == phys");
    assert_eq!(h["pfn"], dma_addr / 4096);
    assert_eq!(hex(&h["cpu_addr"]), 0xffff_8880_0000_0000 + dma_addr);
    assert_eq!(hex(&h["virt"]), hex(&h["cpu_addr"]));
    let id = h["id"].as_u64().unwrap();

    // Listed with the driver's buffers, in the same registry.
    let live = coherent(&mut c);
    assert_eq!(live.len(), boot_dma.len() + 1, "{live:?}");
    for owner in [
        "virtio-net rx",
        "virtio-net tx",
        "virtio-net queue",
        "swiotlb",
    ] {
        assert!(
            live.iter().any(|b| b["owner"] == owner),
            "{owner} in {live:?}"
        );
    }
    let mine: Vec<_> = live.iter().filter(|b| b["owner"] == "api").collect();
    assert_eq!(
        mine,
        [
            &json!({"owner":"api","cpu_addr":h["cpu_addr"],"dma_addr":h["dma_addr"],
            "size":65536,"zone":h["zone"]})
        ]
    );
    let listed = c.request("GET", "/api/allocations", None).json();
    assert!(
        listed["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id && a["type"] == "dma"),
        "{listed}"
    );

    // Zeroed; then every byte written and read back through the direct map.
    let crc = |byte: u8| {
        let mut h = crc32fast::Hasher::new();
        h.update(&[byte; 65536]);
        u64::from(h.finalize())
    };
    let sum = c
        .request("GET", &format!("/api/alloc/{id}/checksum"), None)
        .json();
    assert_eq!(
        (sum["bytes"].as_u64(), hex(&sum["crc32"])),
        (Some(65536), crc(0))
    );
    let fill = c.request(
        "POST",
        &format!("/api/alloc/{id}/fill"),
        Some(r#"{"byte":90}"#),
    );
    assert_eq!(fill.status, 200, "{}", fill.text());
    assert_eq!(fill.json()["bytes"], 65536);
    let sum = c
        .request("GET", &format!("/api/alloc/{id}/checksum"), None)
        .json();
    assert_eq!(
        (sum["bytes"].as_u64(), hex(&sum["crc32"])),
        (Some(65536), crc(0x5A))
    );

    // A wrong order frees nothing; the right one frees it everywhere.
    let wrong = c.request("DELETE", &format!("/api/alloc/{id}?order=3"), None);
    assert_eq!((wrong.status, error_code(&wrong).as_str()), (409, "EBUSY"));
    assert_eq!(coherent(&mut c).len(), boot_dma.len() + 1);
    let ok = c.request("DELETE", &format!("/api/alloc/{id}"), None);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(coherent(&mut c), boot_dma, "gone from /api/dma");
    assert_eq!(buddyinfo(&mut c), boot, "merged back to the boot state");
    assert_eq!(
        c.request("DELETE", &format!("/api/alloc/{id}"), None)
            .status,
        404
    );

    // Bad sizes are 400; over one buddy block without a cma= area, 404
    // (the area is what is missing); reset frees what is left.
    for (size, status, code) in [
        (0, 400, "EINVAL"),
        (1024 * MIB + 1, 400, "EINVAL"),
        (4 * MIB + 1, 404, "ENOENT"),
    ] {
        let r = alloc(&mut c, json!({"type":"dma","size":size}));
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (status, code),
            "{size}"
        );
    }
    for size in [1, 4096, MIB] {
        let r = alloc(&mut c, json!({"type":"dma","size":size}));
        assert_eq!(r.status, 201, "{size}: {}", r.text());
    }
    assert_eq!(coherent(&mut c).len(), boot_dma.len() + 3);
    let reset = c.request("POST", "/api/reset", None);
    assert_eq!(reset.json()["freed"], 3);
    assert_eq!(coherent(&mut c), boot_dma);
    assert_eq!(buddyinfo(&mut c), boot);
}

/// The per-CPU page lists as the kernel boots by default: sized as Linux
/// sizes them, an order-0 request refills a batch, a free waits on the
/// list, zoneinfo and `/api/zones` agree, and reset drains them so
/// buddyinfo equals boot.
#[test]
fn per_cpu_page_lists_refill_in_batches_and_reset_drains_them() {
    let (_guest, port) = boot_ready(BootOptions::default().mem("2G"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    let dma32 = |c: &mut Client| {
        let zones = c.request("GET", "/api/zones", None).json();
        zones["zones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["name"] == "DMA32")
            .unwrap()
            .clone()
    };
    let z = dma32(&mut c);
    let pcp = &z["pagesets"][0];
    // zone_batchsize(): min(managed >> 10, 256) / 4 → 2^n - 1; a 2 GiB
    // guest's DMA32 has well over 256 Ki pages, so batch is 63; high is
    // the zone's LOW watermark.
    assert_eq!(pcp["batch"], 63, "{z}");
    assert_eq!(pcp["high"], z["watermarks"]["low"], "{z}");
    let (free0, count0) = (z["free"].as_u64().unwrap(), pcp["count"].as_u64().unwrap());
    let mut ids = Vec::new();
    for _ in 0..100 {
        let r = alloc(&mut c, json!({"type":"pages","order":0,"gfp":"GFP_DMA32"}));
        assert_eq!(r.status, 201, "{}", r.text());
        ids.push(r.json()["id"].as_u64().unwrap());
    }
    let z = dma32(&mut c);
    let (free1, count1) = (
        z["free"].as_u64().unwrap(),
        z["pagesets"][0]["count"].as_u64().unwrap(),
    );
    // The buddy lists gave whole batches of 63; what was not handed out
    // waits on the list (the kernel's own heap may have taken a few).
    assert_eq!((free0 - free1) % 63, 0, "{free0} -> {free1}");
    assert!(free0 + count0 - free1 - count1 >= 100);
    let text = c.request("GET", "/proc/zoneinfo", None).text();
    assert!(
        text.contains(&format!("  pagesets\n    cpu: 0\n              count: {count1}\n              high:  {}\n              batch: 63\n", pcp["high"])),
        "{text}"
    );
    for id in ids {
        assert_eq!(
            c.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
    }
    assert!(dma32(&mut c)["pagesets"][0]["count"].as_u64().unwrap() > 0);
    assert_ne!(buddyinfo(&mut c), boot, "freed pages wait on the list");
    // /api/cpus: the boot CPU, its APIC id, its lists summed over zones.
    let cpus = c.request("GET", "/api/cpus", None).json();
    let cpu0 = &cpus["online"][0];
    assert_eq!(cpus["online"].as_array().unwrap().len(), 1, "{cpus}");
    assert_eq!(cpu0["cpu"], 0);
    assert_eq!(cpu0["apic_id"], 0, "q35's boot CPU");
    let listed: u64 = cpu0["pagesets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_u64().unwrap())
        .sum();
    assert_eq!(cpu0["pcp"]["count"].as_u64(), Some(listed));
    assert!(listed > 0);
    let r = c.request("POST", "/api/reset", None);
    assert_eq!(r.status, 200);
    assert_eq!(dma32(&mut c)["pagesets"][0]["count"], 0);
    assert_eq!(buddyinfo(&mut c), boot);
}

/// alloc_percpu in the guest, one CPU: the first chunk (one unit from
/// memblock: the CPU's 64-byte static area and a 16 KiB dynamic part)
/// is `Percpu` from boot and serves first, without the buddy allocator;
/// an object too big for what is left takes a buddy chunk, which goes
/// back with it. Objects are zeroed, filled and read back.
#[test]
fn percpu_objects_fill_the_first_chunk_then_a_buddy_chunk() {
    let (_guest, port) = boot_ready(BootOptions::default().mem("512M"));
    let mut c = Client::connect(port);
    let percpu_kb = |c: &mut Client| {
        c.request("GET", "/api/meminfo", None).json()["Percpu"]
            .as_u64()
            .unwrap()
    };
    let boot = buddyinfo(&mut c);
    assert_eq!(percpu_kb(&mut c), 16, "the first chunk: one unit's 4 pages");
    let memmap = c.request("GET", "/api/memmap", None).json();
    let first = memmap["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "percpu")
        .unwrap_or_else(|| panic!("no percpu reservation in {memmap}"));
    assert_eq!(first["type"], "memblock", "{first}");
    assert_eq!(first["size"], 16384, "the unit's tail went back: {first}");
    let unit0 = 0xffff_8880_0000_0000 + hex(&first["start"]);

    let r = alloc(&mut c, json!({"type":"percpu","size":100,"align":64}));
    assert_eq!(r.status, 201, "{}", r.text());
    let h = r.json();
    assert_eq!(
        (h["chunk"].as_u64(), h["offset"].as_u64()),
        (Some(0), Some(64)),
        "{h}"
    );
    let addrs = h["addresses"].as_array().unwrap();
    assert_eq!(addrs.len(), 1);
    assert_eq!(hex(&addrs[0]), unit0 + 64, "{h}");
    assert_eq!(percpu_kb(&mut c), 16);
    assert_eq!(
        buddyinfo(&mut c),
        boot,
        "the first chunk is not the buddy's"
    );
    let id = h["id"].as_u64().unwrap();
    let zero = c
        .request("GET", &format!("/api/alloc/{id}/checksum"), None)
        .json();
    let r = c.request(
        "POST",
        &format!("/api/alloc/{id}/fill"),
        Some(r#"{"byte":90}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let full = c
        .request("GET", &format!("/api/alloc/{id}/checksum"), None)
        .json();
    assert_eq!(zero["bytes"], 100);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[0u8; 100]);
    assert_eq!(hex(&zero["crc32"]), crc.finalize() as u64, "zeroed");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[90u8; 100]);
    assert_eq!(hex(&full["crc32"]), crc.finalize() as u64);

    // 16 KiB no longer fits: a buddy chunk (32 KiB units) takes it.
    let r = alloc(&mut c, json!({"type":"percpu","size":16384,"align":64}));
    assert_eq!(r.status, 201, "{}", r.text());
    let big = r.json();
    assert_eq!(
        (big["chunk"].as_u64(), big["offset"].as_u64()),
        (Some(1), Some(0)),
        "{big}"
    );
    assert_eq!(percpu_kb(&mut c), 16 + 32);
    assert_ne!(buddyinfo(&mut c), boot, "a chunk from the buddy allocator");
    let big_id = big["id"].as_u64().unwrap();
    for id in [big_id, id] {
        assert_eq!(
            c.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
    }
    assert_eq!(percpu_kb(&mut c), 16, "the first chunk stays");
    // The requests' own heap churn settles with the reset.
    assert_eq!(c.request("POST", "/api/reset", None).status, 200);
    assert_eq!(percpu_kb(&mut c), 16);
    assert_eq!(buddyinfo(&mut c), boot);
}
