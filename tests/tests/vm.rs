//! Virtual memory on the real guest: vmalloc on real page tables, guard
//! pages, HighMem reached only through kmap/kmap_atomic, ioremap of the
//! `mem=` tail and of the kernel's devices, and reset back to boot.

use serde_json::{Value, json};
use tests::check::hex;
use tests::http::{Client, Response};
use tests::{BootOptions, Machine, boot_ready};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
const PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;
const VMALLOC_START: u64 = 0xffff_c900_0000_0000;
const PKMAP_BASE: u64 = 0xffff_fe00_0000_0000;
/// `lowmem=` default: frames from here up are HighMem.
const LOWMEM: u64 = 896 * MIB;

fn ok(c: &mut Client, method: &str, path: &str, body: Option<Value>) -> Value {
    let r = c.request(method, path, body.as_ref().map(Value::to_string).as_deref());
    assert!(
        r.status == 200 || r.status == 201,
        "{method} {path}: {} {}",
        r.status,
        r.text()
    );
    r.json()
}

fn get(c: &mut Client, path: &str) -> Value {
    ok(c, "GET", path, None)
}

fn text(c: &mut Client, path: &str) -> String {
    let r = c.request("GET", path, None);
    assert_eq!(r.status, 200, "{path}");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    r.text()
}

fn alloc(c: &mut Client, body: Value) -> Value {
    let r = c.request("POST", "/api/alloc", Some(&body.to_string()));
    assert_eq!(r.status, 201, "{body}: {}", r.text());
    r.json()
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

fn walk(c: &mut Client, addr: u64) -> Value {
    get(c, &format!("/api/pagetable?addr={addr:#x}"))
}

fn crc32(bytes: &[u8]) -> u64 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    u64::from(h.finalize())
}

fn buddyinfo(c: &mut Client) -> Value {
    get(c, "/api/buddyinfo")
}

#[test]
fn vmalloc_highmem_kmap_and_reset_on_real_page_tables() {
    let (_guest, port) = boot_ready(BootOptions::default().mem("2G"));
    let mut c = Client::connect(port);
    let boot_buddy = buddyinfo(&mut c);
    let boot_vmallocinfo = text(&mut c, "/proc/vmallocinfo");

    // The kernel's own MMIO is in the vmalloc area, with its callers: on
    // q35 the ECAM window and the NIC's BAR, on microvm its transport.
    let nic: &[&str] = if Machine::from_env().is_microvm() {
        &["virtio-mmio"]
    } else {
        &["PCIe_ECAM", "virtio-net_BAR"]
    };
    for &caller in ["LAPIC", "IOAPIC"].iter().chain(nic) {
        let line = boot_vmallocinfo
            .lines()
            .find(|l| l.contains(&format!(" {caller} ")))
            .unwrap_or_else(|| panic!("{caller} in\n{boot_vmallocinfo}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "{line}");
        assert!(
            fields[3].starts_with("phys=0x") && fields[3].len() == 23,
            "{line}"
        );
        assert_eq!(fields[4], "ioremap", "{line}");
        let (start, end) = fields[0].split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(&start[2..], 16).unwrap(),
            u64::from_str_radix(&end[2..], 16).unwrap(),
        );
        assert!(
            start >= VMALLOC_START && end - start == fields[1].parse::<u64>().unwrap(),
            "{line}"
        );
        // Mapped uncached; the guard page (the last page of the range) is not.
        let w = walk(&mut c, start);
        assert_eq!(w["mapped"], true, "{caller}: {w}");
        let flags = &w["levels"][3]["flags"];
        assert!(
            flags.as_array().unwrap().contains(&json!("PCD")),
            "{caller}: {w}"
        );
        assert_eq!(
            walk(&mut c, end - PAGE)["mapped"],
            false,
            "{caller}'s guard page"
        );
    }
    let info = get(&mut c, "/api/vmallocinfo");
    assert_eq!(hex(&info["start"]), VMALLOC_START);
    assert_eq!(hex(&info["end"]), VMALLOC_START + (1 << 30));
    assert_eq!(get(&mut c, "/api/meminfo")["VmallocTotal"], 1 << 20);

    // Fragment HighMem: 512 single pages, every other one given back.
    let ids: Vec<u64> = (0..512)
        .map(|_| {
            alloc(
                &mut c,
                json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"}),
            )["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    for id in ids.iter().step_by(2) {
        ok(&mut c, "DELETE", &format!("/api/alloc/{id}"), None);
    }

    // vmalloc 1 MiB: 256 4 KiB PTEs inside the area, frames in HighMem and
    // scattered, the guard page after it unmapped.
    let h = alloc(&mut c, json!({"type":"vmalloc","size":MIB}));
    assert_eq!(h["type"], "vmalloc");
    assert_eq!(h["nr_pages"], 256);
    let virt = hex(&h["virt"]);
    assert!(
        virt >= VMALLOC_START && virt + MIB <= VMALLOC_START + (1 << 30),
        "{virt:#x}"
    );
    let mut frames = Vec::new();
    for i in 0..256 {
        let w = walk(&mut c, virt + i * PAGE);
        assert_eq!(w["mapped"], true, "page {i}: {w}");
        assert_eq!(w["page_size"], 4096, "page {i}");
        assert_eq!(w["region"], "vmalloc");
        let levels = w["levels"].as_array().unwrap();
        let names: Vec<&str> = levels
            .iter()
            .map(|l| l["level"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["PGD", "PUD", "PMD", "PTE"], "page {i}");
        assert_eq!(levels[3]["index"], ((virt + i * PAGE) >> 12) & 511);
        let flags: Vec<&str> = levels[3]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        for f in ["PRESENT", "WRITABLE", "NX"] {
            assert!(flags.contains(&f), "page {i}: {flags:?}");
        }
        assert!(!flags.contains(&"PCD"), "vmalloc is cached");
        frames.push(hex(&w["phys"]));
    }
    assert_eq!(frames[0], hex(&h["phys"]));
    assert!(
        frames.iter().all(|&p| p >= LOWMEM),
        "frames come from HighMem first: {frames:x?}"
    );
    let contiguous = frames.windows(2).filter(|w| w[1] == w[0] + PAGE).count();
    assert!(
        contiguous <= 8,
        "{contiguous} contiguous neighbours: {frames:x?}"
    );
    let guard = walk(&mut c, virt + MIB);
    assert_eq!(guard["mapped"], false);
    assert_eq!(guard["area"]["guard"], true);
    let id = h["id"].as_u64().unwrap();
    assert_eq!(
        ok(
            &mut c,
            "POST",
            &format!("/api/alloc/{id}/fill"),
            Some(json!({"byte":0x5A}))
        ),
        json!({"bytes":MIB})
    );
    let sum = get(&mut c, &format!("/api/alloc/{id}/checksum"));
    assert_eq!(hex(&sum["crc32"]), crc32(&vec![0x5A; MIB as usize]));
    let vi = text(&mut c, "/proc/vmallocinfo");
    let line = vi
        .lines()
        .find(|l| l.starts_with(&format!("0x{virt:016x}-")))
        .unwrap_or_else(|| panic!("{vi}"));
    assert_eq!(
        line,
        format!(
            "0x{virt:016x}-0x{:016x} 1052672 api_alloc pages=256 vmalloc",
            virt + MIB + PAGE
        )
    );
    assert_eq!(get(&mut c, "/api/meminfo")["VmallocUsed"], 1024);

    // A HighMem page: no direct mapping, reached by kmap_atomic for fill
    // and checksum, and by a pkmap slot for kmap.
    let p = alloc(
        &mut c,
        json!({"type":"pages","order":2,"gfp":"GFP_HIGHUSER"}),
    );
    assert_eq!(p["zone"], "HighMem");
    assert_eq!(p["virt"], Value::Null);
    let (pid, phys) = (p["id"].as_u64().unwrap(), hex(&p["phys"]));
    let would_be = walk(&mut c, PAGE_OFFSET + phys);
    assert_eq!(
        would_be["mapped"], false,
        "HighMem is never in the direct map: {would_be}"
    );
    assert_eq!(would_be["region"], "direct map");
    // ...while a lowmem frame's direct-map address walks to it.
    assert_eq!(
        hex(&walk(&mut c, PAGE_OFFSET + 0x20_0000)["phys"]),
        0x20_0000
    );
    ok(
        &mut c,
        "POST",
        &format!("/api/alloc/{pid}/fill"),
        Some(json!({"byte":0xA5})),
    );
    let sum = get(&mut c, &format!("/api/alloc/{pid}/checksum"));
    assert_eq!(hex(&sum["crc32"]), crc32(&vec![0xA5; 4 * PAGE as usize]));
    let k = ok(&mut c, "POST", "/api/kmap", Some(json!({"id":pid})));
    let slot = k["slot"].as_u64().expect("a HighMem page gets a slot");
    let kvirt = hex(&k["virt"]);
    assert_eq!(kvirt, PKMAP_BASE + slot * PAGE);
    assert_eq!(k["pfn"], phys / PAGE);
    let km = get(&mut c, "/api/kmap");
    assert_eq!(km["pkmap"]["slots"], 1024);
    assert_eq!(km["atomic"]["slots"], 16);
    assert_eq!(km["atomic"]["used"], 0);
    let entry = km["pkmap"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["slot"] == slot)
        .cloned()
        .unwrap();
    assert_eq!(
        (entry["pfn"].clone(), entry["count"].clone()),
        (json!(phys / PAGE), json!(2))
    );
    let kw = walk(&mut c, kvirt);
    assert_eq!(
        (kw["region"].clone(), hex(&kw["phys"])),
        (json!("pkmap"), phys)
    );
    let busy = c.request("DELETE", &format!("/api/alloc/{pid}"), None);
    assert_eq!(
        error(&busy),
        (409, "EBUSY".into()),
        "a kmapped page cannot be freed"
    );
    assert_eq!(
        ok(&mut c, "DELETE", &format!("/api/kmap/{slot}"), None)["count"],
        1
    );
    assert_eq!(
        error(&c.request("DELETE", &format!("/api/kmap/{slot}"), None)),
        (404, "ENOENT".into())
    );
    // A lowmem page's kmap is its direct-map address.
    let low = alloc(&mut c, json!({"type":"pages","order":0,"gfp":"GFP_KERNEL"}));
    let k = ok(&mut c, "POST", "/api/kmap", Some(json!({"id":low["id"]})));
    assert_eq!(
        (k["slot"].clone(), k["virt"].clone()),
        (Value::Null, low["virt"].clone())
    );
    ok(&mut c, "POST", "/api/kmap", Some(json!({"id":pid})));

    // Reset frees everything, kmaps included: vmallocinfo and buddyinfo
    // are back to their boot values (vmalloc's page tables too).
    let freed = ok(&mut c, "POST", "/api/reset", None)["freed"]
        .as_u64()
        .unwrap();
    assert_eq!(freed, 256 + 1 + 2);
    assert_eq!(text(&mut c, "/proc/vmallocinfo"), boot_vmallocinfo);
    assert_eq!(buddyinfo(&mut c), boot_buddy);
    assert_eq!(get(&mut c, "/api/kmap")["pkmap"]["used"], 0);
    assert_eq!(walk(&mut c, virt)["mapped"], false);
}

#[test]
fn mem_tail_is_reserved_and_ioremap_maps_it() {
    let (_guest, port) = boot_ready(BootOptions::default().mem("2G").append("mem=1G"));
    let mut c = Client::connect(port);
    let boot_buddy = buddyinfo(&mut c);
    let boot_vmallocinfo = text(&mut c, "/proc/vmallocinfo");

    let memmap = get(&mut c, "/api/memmap");
    let tail = memmap["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "mem_limit")
        .unwrap_or_else(|| panic!("{memmap}"))
        .clone();
    assert_eq!(hex(&tail["start"]), 1 << 30);
    assert!(hex(&tail["end"]) > (1 << 30) + 8 * MIB, "{tail}");
    let iomem = text(&mut c, "/proc/iomem");
    let line = iomem
        .lines()
        .find(|l| l.starts_with("40000000-"))
        .unwrap_or_else(|| panic!("{iomem}"));
    assert!(line.ends_with(" : Reserved"), "{line}");

    let h = alloc(
        &mut c,
        json!({"type":"ioremap","phys":"0x40000000","size":0x80_0000}),
    );
    assert_eq!(h["type"], "ioremap");
    assert_eq!(h["nr_pages"], 2048);
    assert_eq!(h["ram"], true);
    let (id, virt) = (h["id"].as_u64().unwrap(), hex(&h["virt"]));
    assert!(virt >= VMALLOC_START, "{virt:#x}");
    let w = walk(&mut c, virt + 0x7f_f000);
    assert_eq!(hex(&w["phys"]), 0x4000_0000 + 0x7f_f000);
    let flags = w["levels"][3]["flags"].as_array().unwrap().clone();
    assert!(
        flags.contains(&json!("PCD")) && flags.contains(&json!("PWT")),
        "uncached: {flags:?}"
    );
    assert_eq!(
        walk(&mut c, virt + 0x80_0000)["mapped"],
        false,
        "guard page"
    );
    assert_eq!(
        ok(
            &mut c,
            "POST",
            &format!("/api/alloc/{id}/fill"),
            Some(json!({"byte":0x3C}))
        ),
        json!({"bytes":0x80_0000})
    );
    let sum = get(&mut c, &format!("/api/alloc/{id}/checksum"));
    assert_eq!(hex(&sum["crc32"]), crc32(&vec![0x3C; 0x80_0000]));
    let vi = text(&mut c, "/proc/vmallocinfo");
    assert!(
        vi.lines()
            .any(|l| l.ends_with(" 8392704 api_alloc phys=0x0000000040000000 ioremap")),
        "{vi}"
    );
    assert_eq!(get(&mut c, "/api/meminfo")["VmallocUsed"], 0);

    // Buddy-owned RAM is refused; so is the kernel's own.
    for phys in ["0x2000000", "0x100000"] {
        let r = c.request(
            "POST",
            "/api/alloc",
            Some(&json!({"type":"ioremap","phys":phys,"size":4096}).to_string()),
        );
        assert_eq!(error(&r), (409, "EBUSY".into()), "{phys}: {}", r.text());
    }
    // A device range maps, but is never touched.
    let lapic = alloc(
        &mut c,
        json!({"type":"ioremap","phys":"0xfee00000","size":4096}),
    );
    assert_eq!(lapic["ram"], false);
    let r = c.request("GET", &format!("/api/alloc/{}/checksum", lapic["id"]), None);
    assert_eq!(error(&r), (409, "EBUSY".into()));
    for (body, status) in [
        (json!({"type":"vmalloc","size":0}), 400),
        (json!({"type":"vmalloc","size":4u64 << 30}), 507),
        (json!({"type":"ioremap","phys":"40000000","size":4096}), 400),
    ] {
        let r = c.request("POST", "/api/alloc", Some(&body.to_string()));
        assert_eq!(r.status, status, "{body}: {}", r.text());
    }

    ok(&mut c, "DELETE", &format!("/api/alloc/{id}"), None);
    assert_eq!(walk(&mut c, virt)["mapped"], false);
    assert_eq!(ok(&mut c, "POST", "/api/reset", None)["freed"], 1);
    assert_eq!(text(&mut c, "/proc/vmallocinfo"), boot_vmallocinfo);
    assert_eq!(buddyinfo(&mut c), boot_buddy);
}

/// The NIC's memory BARs are in `/proc/iomem` where the boot put them, and
/// the platform's MMIO beside them:
/// under qboot (q35) the kernel assigned them (`BAR1 assigned [mem …]`),
/// naturally aligned in the e820 map's PCI gap; under
/// SeaBIOS the firmware did (`BAR1 mem32 0xfebd1000 size 0x1000`), and
/// nothing was assigned. No PCI on microvm: nothing to list.
#[test]
fn the_nics_bars_are_in_proc_iomem_where_the_boot_put_them() {
    let machine = Machine::from_env();
    let (guest, port) = boot_ready(BootOptions::default().mem("512M"));
    let mut c = Client::connect(port);
    let iomem = text(&mut c, "/proc/iomem");
    if machine.is_microvm() {
        assert!(!iomem.contains(" : 0000:"), "{iomem}");
        return;
    }
    // The BARs of the virtio-net function, the last word on each index.
    let log = guest.log();
    let nic = log
        .iter()
        .find_map(|l| {
            let (_, rest) = l.split_once("] PCI ")?;
            rest.contains(" virtio-net,").then(|| rest[..7].to_string())
        })
        .unwrap_or_else(|| panic!("no virtio-net function in the log"));
    let mut bars: std::collections::BTreeMap<u8, (u64, u64)> = Default::default();
    let mut assigned = 0;
    for l in &log {
        let Some((_, rest)) = l.split_once(&format!("] PCI {nic}   BAR")) else {
            continue;
        };
        let index: u8 = rest[..1].parse().unwrap();
        let words: Vec<&str> = rest[1..].split_whitespace().collect();
        let range = if words[0] == "assigned" {
            // `assigned [mem 0xc0004000-0xc0007fff 64bit pref]`
            assigned += 1;
            let span = words[2].trim_end_matches(']');
            let (s, e) = span.split_once('-').unwrap();
            (hex_str(s), hex_str(e) + 1)
        } else if words[0].starts_with("mem") {
            let addr = hex_str(words[1]);
            let size = hex_str(words[3]);
            (addr, addr + size)
        } else {
            continue;
        };
        bars.insert(index, range);
    }
    let bars: Vec<(u64, u64)> = bars.into_values().filter(|&(s, _)| s != 0).collect();
    assert!(bars.len() >= 2, "the NIC's memory BARs: {bars:x?}");
    if machine == Machine::Q35 {
        assert_eq!(assigned, bars.len(), "qboot leaves every BAR to the kernel");
        // The window: the largest hole below 4 GiB in the e820 map (at
        // -m 512M the one between RAM and the ECAM, from 0x20000000).
        let window = log
            .iter()
            .find_map(|l| {
                let (_, rest) = l.split_once("] [mem ")?;
                let (span, _) = rest.split_once("] available for PCI devices")?;
                let (s, e) = span.split_once('-')?;
                Some((hex_str(s), hex_str(e) + 1))
            })
            .unwrap_or_else(|| panic!("no PCI gap in the log"));
        assert_eq!(
            window,
            (0x2000_0000, 0xb000_0000),
            "512 MiB of RAM, the ECAM"
        );
        for &(s, e) in &bars {
            let size = e - s;
            assert!(size.is_power_of_two() && s % size == 0, "{s:#x}+{size:#x}");
            assert!(window.0 <= s && e <= window.1, "{s:#x} in {window:x?}");
        }
    } else {
        assert_eq!(assigned, 0, "SeaBIOS assigned them");
    }
    for (s, e) in bars {
        let line = format!("{s:08x}-{:08x} : 0000:{nic}", e - 1);
        assert!(iomem.lines().any(|l| l == line), "{line} in\n{iomem}");
    }
    // The platform's MMIO, as Linux names it: the ECAM inside the e820's
    // reserved range, the IOAPIC's 1 KiB slot and the local APIC's page.
    for line in [
        "  b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]",
        "fec00000-fec003ff : IOAPIC 0",
        "fee00000-fee00fff : Local APIC",
    ] {
        assert!(iomem.lines().any(|l| l == line), "{line} in\n{iomem}");
    }
}

fn hex_str(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{s}: {e}"))
}
