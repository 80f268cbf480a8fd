//! The whole API over the network stack: a real `MemoryManager` on the
//! simulated RAM arena, a fake `System`, and HTTP bytes through smoltcp.
//!
//! The machine is a q35 guest scaled down: 128 MiB of firmware RAM with
//! the legacy hole, ACPI tables at the top, `lowmem=64M` (so HighMem
//! exists) and `mem=120M` (so a `mem_limit` tail exists).

use std::cell::{Cell, RefCell};
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use mm::manager::MemoryManager;
use mm::memblock::Memblock;
use mm::page::Page;
use mm::page_alloc::PageAlloc;
use mm::platform::sim::SimPlatform;
use mm::procfs::{E820Type, KernelSections};
use mm::types::{PAGE_SIZE, PhysAddr};
use mm::zone::ZoneLayout;
use serde_json::{Value, json};
use smoltcp::iface::SocketHandle;

use super::*;
use crate::testing::{HttpResponse, Net};

mod compact;
mod dashboard;
mod dma;
mod dmesg;
mod events;
mod extras;
mod failure;
mod oom;
mod pagecache;
mod percpu;
mod slab;
mod trace;
mod vmstat;
mod wait;

pub(super) const MIB: u64 = 1 << 20;
pub(super) const LOWMEM: u64 = 64 * MIB;
pub(super) const MEM_LIMIT: u64 = 120 * MIB;
const CMDLINE: &str = "lowmem=64M mem=120M";
const TOKEN: &str = "s3cret";
/// Records in each of the test machine's trace rings (the kernel has 8192).
pub(super) const TRACE_RING_ENTRIES: usize = 1024;
/// CPUs the test machine lends a trace ring (its possible CPUs).
pub(super) const TRACE_CPUS: usize = 4;

pub(super) fn e820() -> Vec<(PhysAddr, PhysAddr, E820Type)> {
    let r = |s: u64, e: u64, t| (PhysAddr(s), PhysAddr(e), t);
    vec![
        r(0, 0x9fc00, E820Type::Ram),
        r(0x9fc00, 0xa0000, E820Type::Reserved),
        r(0xf0000, 0x10_0000, E820Type::Reserved),
        r(0x10_0000, 0x07fe_0000, E820Type::Ram),
        r(0x07fe_0000, 0x07ff_0000, E820Type::Acpi),
        r(0x07ff_0000, 0x0800_0000, E820Type::Nvs),
        r(0xb000_0000, 0xc000_0000, E820Type::Reserved),
        r(0xfffc_0000, 0x1_0000_0000, E820Type::Reserved),
    ]
}

/// memblock as the kernel builds it (cf. `memblock_setup()`): RAM from
/// the firmware map, page 0, a 2 MiB kernel at 1 MiB, `mem=`, and the
/// `mem_map` allocation below lowmem.
pub(super) fn memblock(fw: &[(PhysAddr, PhysAddr, E820Type)]) -> Memblock {
    let mut mb = Memblock::new();
    for &(s, e, t) in fw {
        if t == E820Type::Ram {
            mb.add(s, e.0 - s.0).unwrap();
        }
    }
    mb.reserve(PhysAddr(0), PAGE_SIZE, "firmware").unwrap();
    mb.reserve(PhysAddr(MIB), 2 * MIB, "kernel").unwrap();
    mb.enforce_memory_limit(PhysAddr(MEM_LIMIT)).unwrap();
    let max_pfn = mb.end_of_ram().0 / PAGE_SIZE;
    let size = max_pfn * core::mem::size_of::<Page>() as u64;
    mb.alloc_named(size, PAGE_SIZE, PhysAddr(LOWMEM), "mem_map")
        .unwrap();
    mb
}

struct FakeSystem<'m> {
    /// The simulated kernel's coherent DMA registry (`mm::dma::Dma` on the
    /// same `MemoryManager`): the API's `dma` buffers live here.
    mm: &'m MemoryManager<'m, SimPlatform>,
    dma: RefCell<mm::dma::Dma>,
    uptime_ms: Cell<u64>,
    /// `now_ns`: calls so far and the time (see there).
    clock_calls: Cell<u64>,
    clock_ns: Cell<u64>,
    /// The kernel log ring, as the kernel's logger fills it.
    log: RefCell<crate::api::dmesg::LogRing<64>>,
    /// CPUs `cpus()` reports online (APIC id = CPU number, as on q35).
    online_cpus: Cell<usize>,
}

/// What `FakeSystem::now_ns` advances per call: 100 ns, and 40 µs every
/// [`CLOCK_HICCUP_EVERY`]th call, so timed operations have a tail. A bench
/// reads the clock an even number of times (start, end, and twice per
/// operation), so each operation's second read is an odd call: an odd
/// period makes every `CLOCK_HICCUP_EVERY` operations one slow one.
const CLOCK_STEP_NS: u64 = 100;
const CLOCK_HICCUP_NS: u64 = 40_000;
const CLOCK_HICCUP_EVERY: u64 = 63;

impl System for FakeSystem<'_> {
    fn cpus(&self) -> Vec<CpuInfo> {
        (0..self.online_cpus.get())
            .map(|cpu| CpuInfo {
                cpu,
                apic_id: cpu as u32,
                ..CpuInfo::default()
            })
            .collect()
    }

    /// Host threads stand for the CPUs (`sim::set_current_cpu`).
    fn run_on_cpus(
        &self,
        n: usize,
        job: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(), &'static str> {
        if n > self.online_cpus.get() {
            return Err("not that many CPUs");
        }
        std::thread::scope(|s| {
            for slot in 1..n {
                s.spawn(move || {
                    mm::platform::sim::set_current_cpu(slot);
                    job(slot, slot);
                });
            }
            job(0, 0);
        });
        Ok(())
    }

    fn log_record(&self, since: u64) -> Option<crate::api::dmesg::LogRecord> {
        self.log.borrow().first_since(since)
    }

    fn log_next_seq(&self) -> Option<u64> {
        Some(self.log.borrow().next_seq())
    }

    fn printk(&self, level: crate::api::dmesg::LogLevel, line: &str) {
        let ts_us = self.uptime_ms.get() * 1000;
        self.log.borrow_mut().push(ts_us, level, line);
    }

    fn uptime_ms(&self) -> u64 {
        self.uptime_ms.get()
    }
    fn now_ns(&self) -> u64 {
        let n = self.clock_calls.get() + 1;
        self.clock_calls.set(n);
        let step = if n.is_multiple_of(CLOCK_HICCUP_EVERY) {
            CLOCK_HICCUP_NS
        } else {
            CLOCK_STEP_NS
        };
        self.clock_ns.set(self.clock_ns.get() + step);
        self.clock_ns.get()
    }
    fn version(&self) -> &str {
        "0.1.0-test"
    }
    fn boot_time_unix(&self) -> Option<u64> {
        Some(1_700_000_000)
    }
    fn dma(&self) -> DmaInfo {
        // A made-up driver buffer first (its frames are not really taken),
        // then the registry's real ones.
        let snap = self.dma.borrow().snapshot();
        let mut coherent = vec![CoherentBuffer {
            owner: "virtio-net rx".into(),
            cpu_addr: 0xffff_8880_0020_0000,
            dma_addr: 0x20_0000,
            size_bytes: 16384,
            zone: "DMA32",
        }];
        coherent.extend(snap.coherent().map(|b| CoherentBuffer {
            owner: b.owner.into(),
            cpu_addr: b.cpu_addr.0,
            dma_addr: b.dma_addr.0,
            size_bytes: b.size,
            zone: b.zone.name(),
        }));
        DmaInfo {
            coherent,
            bounce: BounceInfo {
                slots: 64,
                used: 1,
                bytes_bounced: 1514,
            },
        }
    }
    fn dma_alloc_coherent(&self, size: u64) -> Result<mm::dma::CoherentInfo, DmaCallError> {
        let buf = self
            .dma
            .borrow_mut()
            .dma_alloc_coherent(self.mm, size, DMA_OWNER)?;
        Ok(buf.info())
    }
    fn dma_free_coherent(&self, dma_addr: PhysAddr, size: u64) -> Result<(), DmaCallError> {
        Ok(self
            .dma
            .borrow_mut()
            .free_coherent_at(self.mm, dma_addr, size)?)
    }
    fn kernel_sections(&self) -> KernelSections {
        KernelSections {
            code: Some((PhysAddr(0x10_0000), PhysAddr(0x18_0000))),
            rodata: Some((PhysAddr(0x18_0000), PhysAddr(0x1c_0000))),
            data: Some((PhysAddr(0x1c_0000), PhysAddr(0x1e_0000))),
            bss: Some((PhysAddr(0x1e_0000), PhysAddr(0x30_0000))),
        }
    }
}

/// The API under test, the network, and a keep-alive client.
struct T<'a> {
    api: Api<'a, SimPlatform>,
    mm: &'a MemoryManager<'a, SimPlatform>,
    /// The kernel side's clock and log.
    system: &'a FakeSystem<'a>,
    net: Net,
    client: Option<SocketHandle>,
    token: Option<&'static str>,
}

struct Opts {
    quota_pct: u8,
    token: Option<&'static str>,
    /// Per-CPU page lists on, as the kernel boots by default. Off (as with
    /// `pcp=off`) in most tests, which predict the buddy lists exactly.
    pcp: bool,
}

const DEFAULT: Opts = Opts {
    quota_pct: DEFAULT_API_QUOTA_PCT,
    token: None,
    pcp: false,
};

/// [`DEFAULT`] with the per-CPU lists on.
const PCP: Opts = Opts {
    pcp: true,
    ..DEFAULT
};

fn run(opts: Opts, body: impl FnOnce(&mut T<'_>)) {
    let fw = e820();
    let mb = memblock(&fw);
    let layout = ZoneLayout::from_bytes(LOWMEM, mb.end_of_ram().0);
    let mut mem_map = vec![Page::new_reserved(); layout.max_pfn.index()];
    let mut pa = PageAlloc::new(&mut mem_map, layout).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    pa.set_pcp_enabled(opts.pcp);
    let mut trace_ring = vec![mm::trace::TraceRecord::EMPTY; TRACE_CPUS * TRACE_RING_ENTRIES];
    let mm = MemoryManager::new(pa, SimPlatform::new(layout.max_pfn.0));
    mm.attach_trace_buffers(&mut trace_ring, TRACE_CPUS);
    let slab = slab::SimSlab::new(&mm);
    // As the kernel does before it records the "after boot" buddy state.
    slab.settle(&mm);
    mm.mark_boot_complete();
    let system = FakeSystem {
        mm: &mm,
        dma: RefCell::new(mm::dma::Dma::new()),
        uptime_ms: Cell::new(1234),
        clock_calls: Cell::new(0),
        clock_ns: Cell::new(0),
        log: RefCell::new(crate::api::dmesg::LogRing::new()),
        online_cpus: Cell::new(1),
    };
    let boot = BootView {
        cmdline: CMDLINE,
        firmware_map: &fw,
        memblock: &mb,
        // The NIC's BARs where the kernel places them under qboot.
        devices: &[
            (PhysAddr(0xc000_0000), PhysAddr(0xc000_1000), "0000:00:01.0"),
            (PhysAddr(0xc000_4000), PhysAddr(0xc000_8000), "0000:00:01.0"),
        ],
    };
    let mut t = T {
        api: Api::new(&mm, boot, &system, opts.quota_pct).with_slab(&slab),
        mm: &mm,
        system: &system,
        net: Net::with_static(16, opts.token),
        client: None,
        token: opts.token,
    };
    body(&mut t);
    mm.lock().check_invariants().unwrap();
    slab.check_invariants();
}

impl T<'_> {
    fn conn(&mut self) -> SocketHandle {
        match self.client {
            Some(c) if self.net.socket(c).may_send() => c,
            _ => {
                let c = self.net.connect();
                self.client = Some(c);
                c
            }
        }
    }

    /// Raw bytes on a fresh connection, one response back.
    fn raw(&mut self, bytes: &[u8]) -> HttpResponse {
        let c = self.net.connect();
        let r = self.net.exchange(c, bytes, &mut self.api);
        self.net.socket(c).close();
        r
    }

    fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 10.0.2.15\r\n");
        if let (Some(token), false) = (self.token, method == "GET") {
            req.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(body) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        let c = self.conn();
        self.net.exchange(c, req.as_bytes(), &mut self.api)
    }

    fn get(&mut self, path: &str) -> HttpResponse {
        self.request("GET", path, None)
    }

    fn json(&mut self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        serde_json::from_slice(&r.body).unwrap()
    }

    fn alloc(&mut self, body: Value) -> HttpResponse {
        self.request("POST", "/api/alloc", Some(&body.to_string()))
    }

    fn alloc_ok(&mut self, body: Value) -> Value {
        let r = self.alloc(body.clone());
        assert_eq!(r.status, 201, "{body}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    fn buddyinfo(&mut self) -> Vec<(String, Vec<u64>)> {
        self.json("/api/buddyinfo")["zones"]
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

    fn boot_buddyinfo(&self) -> Vec<(String, Vec<u64>)> {
        ["DMA", "DMA32", "Normal", "HighMem"]
            .iter()
            .zip(self.mm.boot_buddyinfo())
            .map(|(n, c)| (n.to_string(), c.to_vec()))
            .collect()
    }
}

fn hex(v: &Value) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("expected a hex string, got {v}"));
    assert!(
        s.starts_with("0x")
            && s[2..]
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
        "{s}"
    );
    u64::from_str_radix(&s[2..], 16).unwrap()
}

fn error(r: &HttpResponse) -> (u16, String) {
    let j: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{}", r.text()));
    assert!(
        j["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{j}"
    );
    (r.status, j["error"]["code"].as_str().unwrap().to_string())
}

fn counts<'v>(info: &'v [(String, Vec<u64>)], zone: &str) -> &'v [u64] {
    &info.iter().find(|(n, _)| n == zone).unwrap().1
}

/// What allocating `order` with migrate type `mt` does to `zone`'s
/// free_area, predicted from its free lists by type (`/api/zones`).
fn predict_alloc(t: &mut T<'_>, zone: &str, mt: &str, order: usize) -> Vec<u64> {
    ::tests::check::predict_alloc(&t.json("/api/zones"), zone, mt, order)
}

fn crc32(bytes: &[u8]) -> u64 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    u64::from(h.finalize())
}

// ----------------------------------------------------------------------
// Views
// ----------------------------------------------------------------------

#[test]
fn zones_exact() {
    run(DEFAULT, |t| {
        let z = t.json("/api/zones");
        assert_eq!(z["max_order"], 10);
        assert_eq!(hex(&z["lowmem_limit"]), LOWMEM);
        let zones = z["zones"].as_array().unwrap();
        let names: Vec<_> = zones.iter().map(|z| z["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["DMA", "DMA32", "Normal", "HighMem"]);
        let (low, end) = (LOWMEM / PAGE_SIZE, MEM_LIMIT / PAGE_SIZE);
        let expect = [(0, 4096), (4096, low), (low, low), (low, end)];
        let pa = t.mm.lock();
        for ((zone, (start, stop)), real) in zones.iter().zip(expect).zip(pa.zones()) {
            let keys: Vec<_> = zone.as_object().unwrap().keys().cloned().collect();
            for key in [
                "name",
                "start_pfn",
                "end_pfn",
                "spanned",
                "present",
                "managed",
                "free",
                "watermarks",
                "protection",
                "free_area",
            ] {
                assert!(keys.iter().any(|k| k == key), "{key} in {zone}");
            }
            assert_eq!(zone["start_pfn"], start, "{zone}");
            assert_eq!(zone["end_pfn"], stop, "{zone}");
            assert_eq!(zone["spanned"], stop - start, "{zone}");
            assert_eq!(zone["present"], real.present_pages);
            assert_eq!(zone["managed"], real.managed_pages);
            assert_eq!(zone["free"], real.free_pages);
            assert_eq!(
                zone["watermarks"],
                json!({"min": real.watermarks.min, "low": real.watermarks.low, "high": real.watermarks.high})
            );
            assert_eq!(zone["protection"], json!(real.lowmem_reserve));
            let fa = zone["free_area"].as_array().unwrap();
            assert_eq!(fa.len(), 11);
            let pages: u64 = fa
                .iter()
                .enumerate()
                .map(|(o, n)| n.as_u64().unwrap() << o)
                .sum();
            assert_eq!(pages, real.free_pages, "free_area adds up in {zone}");
        }
        // DMA: the legacy hole and the first page are not present.
        assert!(
            zones[0]["present"].as_u64() < zones[0]["spanned"].as_u64(),
            "the legacy hole"
        );
        assert_eq!(zones[2]["present"], 0);
        assert_eq!(zones[2]["free_area"], json!([0u64; 11].to_vec()));
        assert_eq!(zones[3]["present"], end - low);
        assert!(zones[3]["free"].as_u64().unwrap() > 0);
    });
}

#[test]
fn buddyinfo_json_and_golden_proc_text() {
    run(DEFAULT, |t| {
        let info = t.buddyinfo();
        assert_eq!(info, t.boot_buddyinfo());
        let r = t.get("/proc/buddyinfo");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        // DMA: frames 1..0x9f (1+2+4+…+64 and 16+8+4+2+1 up to 0x9f),
        // 0x300..0x1000 after the kernel (one order-8, three order-10).
        // DMA32: [16M, 64M) but mem_map's 120 pages at its top (30720
        // descriptors of 16 bytes): 11 order-10 blocks and 904 pages below
        // mem_map (512+256+128+8). The kmalloc caches' spare slabs take 62
        // pages at boot (settle_kmalloc_caches): unmovable, so they steal
        // the largest Movable block, an order-10 one, and its 962 other
        // pages stay free on the Unmovable lists (512+256+128+64+2).
        // HighMem: [64M, 120M) = 14
        // order-10 blocks. Normal is empty: absent. Every count is
        // followed by a space, the last one too.
        let golden = "\
Node 0, zone      DMA      2      2      2      2      2      1      1      0      1      0      3 \n\
Node 0, zone    DMA32      0      1      0      1      0      0      1      2      2      2     10 \n\
Node 0, zone  HighMem      0      0      0      0      0      0      0      0      0      0     14 \n";
        assert_eq!(r.text(), golden);
        // The same numbers as the JSON view.
        let mut expected = String::new();
        for (name, counts) in info.iter().filter(|(n, _)| n != "Normal") {
            expected.push_str(&format!("Node 0, zone {name:>8} "));
            for n in counts {
                expected.push_str(&format!("{n:>6} "));
            }
            expected.push('\n');
        }
        assert_eq!(r.text(), expected);
    });
}

#[test]
fn memmap_merges_firmware_memblock_and_mem_limit() {
    run(DEFAULT, |t| {
        let m = t.json("/api/memmap");
        assert_eq!(m["cmdline"], CMDLINE);
        let entries: Vec<(u64, u64, String, String)> = m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(
                    e["size"].as_u64().unwrap(),
                    hex(&e["end"]) - hex(&e["start"])
                );
                (
                    hex(&e["start"]),
                    hex(&e["end"]),
                    e["type"].as_str().unwrap().to_string(),
                    e["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mem_map_bytes = (MEM_LIMIT / PAGE_SIZE) * core::mem::size_of::<Page>() as u64;
        let mem_map_start = LOWMEM - mem_map_bytes.next_multiple_of(PAGE_SIZE);
        let e = |s: u64, end: u64, ty: &str, name: &str| (s, end, ty.to_string(), name.to_string());
        assert_eq!(
            entries,
            vec![
                e(0, 0x1000, "reserved", "firmware"),
                e(0x1000, 0x9fc00, "usable", "System RAM"),
                e(0x9fc00, 0xa0000, "reserved", "Reserved"),
                e(0xf0000, 0x10_0000, "reserved", "Reserved"),
                e(0x10_0000, 0x30_0000, "kernel", "kernel"),
                e(0x30_0000, mem_map_start, "usable", "System RAM"),
                e(mem_map_start, LOWMEM, "memblock", "mem_map"),
                e(LOWMEM, MEM_LIMIT, "usable", "System RAM"),
                e(MEM_LIMIT, 0x07fe_0000, "mem_limit", "mem_limit"),
                e(0x07fe_0000, 0x07ff_0000, "acpi", "ACPI Tables"),
                e(
                    0x07ff_0000,
                    0x0800_0000,
                    "acpi",
                    "ACPI Non-volatile Storage"
                ),
                e(0xb000_0000, 0xc000_0000, "reserved", "Reserved"),
                e(0xfffc_0000, 0x1_0000_0000, "reserved", "Reserved"),
            ]
        );
    });
}

#[test]
fn meminfo_json_matches_proc_text() {
    run(DEFAULT, |t| {
        let j = t.json("/api/meminfo");
        let text = t.get("/proc/meminfo");
        assert_eq!(text.status, 200);
        let obj = j.as_object().unwrap();
        let lines: Vec<&str> = text.text().lines().collect();
        assert_eq!(obj.len(), lines.len());
        for line in &lines {
            let (key, rest) = line.split_once(':').unwrap();
            let value: u64 = rest.trim().trim_end_matches(" kB").trim().parse().unwrap();
            assert_eq!(j[key], value, "{key}");
        }
        for key in [
            "MemTotal",
            "MemFree",
            "LowTotal",
            "HighTotal",
            "Slab",
            "VmallocUsed",
        ] {
            assert!(j[key].is_u64(), "{key}");
        }
        let managed: u64 = t.mm.lock().totalram_pages();
        assert_eq!(j["MemTotal"], managed * 4);
        assert_eq!(j["HighTotal"], (MEM_LIMIT - LOWMEM) / 1024);
        assert!(lines[0].starts_with("MemTotal:       ") && lines[0].ends_with(" kB"));
        // An allocation shows.
        let free = j["MemFree"].as_u64().unwrap();
        t.alloc_ok(json!({"type":"pages","order":4}));
        assert_eq!(t.json("/api/meminfo")["MemFree"], free - 64);
    });
}

#[test]
fn zoneinfo_and_iomem_texts() {
    run(DEFAULT, |t| {
        let z = t.get("/proc/zoneinfo");
        assert_eq!(z.status, 200);
        let text = z.text();
        let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("Node")).collect();
        assert_eq!(
            headers,
            [
                "Node 0, zone      DMA",
                "Node 0, zone    DMA32",
                "Node 0, zone   Normal",
                "Node 0, zone  HighMem"
            ]
        );
        assert!(text.contains("\n  per-node stats\n      nr_inactive_anon 0\n"));
        assert!(text.contains("        protection: ("));
        let iomem = t.get("/proc/iomem");
        assert_eq!(iomem.status, 200);
        let lines: Vec<&str> = iomem.text().lines().collect();
        assert_eq!(lines[0], "00000000-00000fff : Reserved");
        assert_eq!(lines[1], "00001000-0009fbff : System RAM");
        assert!(
            lines.contains(&"00100000-077fffff : System RAM"),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"  00100000-0017ffff : Kernel code"),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"  001e0000-002fffff : Kernel bss"),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"07800000-07fdffff : Reserved"),
            "mem= tail: {lines:#?}"
        );
        assert!(
            lines.contains(&"07fe0000-07feffff : ACPI Tables"),
            "{lines:#?}"
        );
        // The BARs, top level in the hole above the ECAM, in order.
        let at = lines
            .iter()
            .position(|l| l.starts_with("c0000000-"))
            .unwrap_or_else(|| panic!("{lines:#?}"));
        assert_eq!(
            lines[at..at + 2],
            [
                "c0000000-c0000fff : 0000:00:01.0",
                "c0004000-c0007fff : 0000:00:01.0"
            ]
        );
        assert!(
            lines[at - 1].starts_with("b0000000-bfffffff : "),
            "{lines:#?}"
        );
    });
}

#[test]
fn health_dma_net_dashboard_openapi_metrics() {
    run(DEFAULT, |t| {
        assert_eq!(
            t.json("/api/health"),
            json!({"status":"ok","uptime_ms":1234,"version":"0.1.0-test"})
        );
        assert_eq!(
            t.json("/api/dma"),
            json!({"coherent":[{"owner":"virtio-net rx","cpu_addr":"0xffff888000200000",
                "dma_addr":"0x200000","size":16384,"zone":"DMA32"}],
                "bounce":{"slots":64,"used":1,"bytes_bounced":1514}})
        );
        let n = t.json("/api/net");
        assert_eq!(n["mac"], "52:54:00:12:34:56");
        assert_eq!(n["ipv4"], "10.0.2.15");
        assert_eq!(n["prefix_len"], 24);
        assert_eq!(n["gateway"], "10.0.2.2");
        assert!(n["rx_packets"].as_u64().unwrap() > 0);
        assert!(n["tx_packets"].as_u64().unwrap() > 0);
        assert_eq!(n["tcp_sockets"], json!({"total":16,"in_use":1}));
        assert_eq!(n["transport"], "loopback");

        let d = t.get("/");
        assert_eq!(d.status, 200);
        assert_eq!(d.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(d.body == include_bytes!("../../../web-ui/index.html"));

        // /openapi.json describes exactly the routes that are served.
        let o = t.json("/openapi.json");
        assert!(o["openapi"].as_str().unwrap().starts_with("3."));
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in o["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        documented.sort();
        let mut built: Vec<(String, String)> = BUILT_ROUTES
            .iter()
            .map(|id| (id.method().as_str().to_string(), id.pattern().to_string()))
            .collect();
        built.sort();
        assert_eq!(documented, built);

        let m = t.get("/metrics");
        assert_eq!(m.status, 200);
        assert!(
            m.header("content-type")
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let text = m.text();
        assert!(text.contains("pagezone_buddy_free_blocks{zone=\"HighMem\",order=\"10\"} 14\n"));
        assert!(text.contains("pagezone_api_handles 0\n"));
        assert!(
            text.contains(
                "# TYPE pagezone_build_info gauge\npagezone_build_info{version=\"0.1.0-test\"} 1\n"
            ),
            "{text}"
        );
        // The socket states partition the pool: sum() is its size.
        assert!(
            text.contains("pagezone_tcp_sockets{state=\"in_use\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("pagezone_tcp_sockets{state=\"listening\"} 15\n"),
            "{text}"
        );
        assert!(
            text.contains("pagezone_http_requests_total{route=\"/api/health\",status=\"200\"} 1\n")
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        }
    });
}

#[test]
fn head_is_get_without_a_body() {
    run(DEFAULT, |t| {
        let get = t.get("/api/zones");
        let head = t.request("HEAD", "/api/zones", None);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length").unwrap(),
            get.body.len().to_string()
        );
        // The connection is still in step.
        assert_eq!(t.get("/api/health").status, 200);
    });
}

// ----------------------------------------------------------------------
// Commands
// ----------------------------------------------------------------------

#[test]
fn gfp_dma_order_3_splits_as_predicted_and_frees_back() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        let predicted = predict_alloc(t, "DMA", "Unmovable", 3);
        let h = t.alloc_ok(json!({"type":"pages","order":3,"gfp":"GFP_DMA"}));
        assert_eq!(h["id"], 1);
        assert_eq!(h["type"], "pages");
        assert_eq!(h["order"], 3);
        assert_eq!(h["size"], 32768);
        assert_eq!(h["zone"], "DMA");
        assert_eq!(h["created_ms"], 1234);
        let phys = hex(&h["phys"]);
        assert!(phys < 16 * MIB && phys.is_multiple_of(32768), "{phys:#x}");
        assert_eq!(h["pfn"], phys / PAGE_SIZE);
        assert_eq!(hex(&h["virt"]), 0xffff_8880_0000_0000 + phys);
        let after = t.buddyinfo();
        assert_eq!(counts(&after, "DMA"), predicted);
        for zone in ["DMA32", "Normal", "HighMem"] {
            assert_eq!(counts(&after, zone), counts(&boot, zone), "{zone}");
        }
        let listed = t.json("/api/allocations");
        assert_eq!(listed["allocations"], json!([h.clone()]));

        // Wrong order: 409, nothing freed.
        let wrong = t.request("DELETE", "/api/alloc/1?order=2", None);
        assert_eq!(error(&wrong), (409, "EBUSY".into()));
        assert_eq!(t.buddyinfo(), after);
        let ok = t.request("DELETE", "/api/alloc/1?order=3", None);
        assert_eq!(ok.status, 200, "{}", ok.text());
        let freed: Value = serde_json::from_slice(&ok.body).unwrap();
        assert_eq!(freed["freed"], 1);
        assert_eq!(t.buddyinfo(), boot, "freeing merges back");
        let again = t.request("DELETE", "/api/alloc/1", None);
        assert_eq!(error(&again), (404, "ENOENT".into()));
        // Ids keep increasing.
        let h2 = t.alloc_ok(json!({"type":"pages","order":0}));
        assert_eq!(h2["id"], 2);
        assert_eq!(h2["zone"], "DMA32", "GFP_KERNEL is the default");
        assert_eq!(t.request("DELETE", "/api/alloc/2", None).status, 200);
    });
}

#[test]
fn highmem_page_has_no_virt_and_fill_checksum_round_trip() {
    run(DEFAULT, |t| {
        let hi = t.alloc_ok(json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"}));
        assert_eq!(hi["zone"], "HighMem");
        assert!(hi["virt"].is_null());
        assert!(hex(&hi["phys"]) >= LOWMEM);
        let id = hi["id"].as_u64().unwrap();
        let fill = t.request(
            "POST",
            &format!("/api/alloc/{id}/fill"),
            Some(r#"{"byte":165}"#),
        );
        assert_eq!(fill.status, 200, "{}", fill.text());
        assert_eq!(fill.body, br#"{"bytes":4096}"#);
        let sum = t.json(&format!("/api/alloc/{id}/checksum"));
        assert_eq!(sum["bytes"], 4096);
        assert_eq!(hex(&sum["crc32"]), crc32(&[0xA5; 4096]));
        assert_eq!(sum["crc32"].as_str().unwrap().len(), 10, "8 hex digits");

        // Lowmem, order 2, __GFP_ZERO: zeroes; then filled.
        let z = t.alloc_ok(json!({"type":"pages","order":2,"gfp":"GFP_KERNEL|__GFP_ZERO"}));
        let zid = z["id"].as_u64().unwrap();
        let sum = t.json(&format!("/api/alloc/{zid}/checksum"));
        assert_eq!(
            (sum["bytes"].as_u64(), hex(&sum["crc32"])),
            (Some(16384), crc32(&[0; 16384]))
        );
        let fill = t.request(
            "POST",
            &format!("/api/alloc/{zid}/fill"),
            Some(r#" { "byte" : 0 , "x":[1,{"y":2}] } "#),
        );
        assert_eq!(error(&fill), (400, "EINVAL".into()));
        let fill = t.request(
            "POST",
            &format!("/api/alloc/{zid}/fill"),
            Some(r#" { "byte" : 0 } "#),
        );
        assert_eq!(fill.status, 200, "{}", fill.text());
        let fill = t.request(
            "POST",
            &format!("/api/alloc/{zid}/fill"),
            Some(r#"{"byte":255}"#),
        );
        assert_eq!(fill.status, 200);
        let sum = t.json(&format!("/api/alloc/{zid}/checksum"));
        assert_eq!(hex(&sum["crc32"]), crc32(&[0xff; 16384]));
        // The simulated RAM agrees.
        let pfn = mm::types::Pfn(z["pfn"].as_u64().unwrap());
        assert!(t.mm.platform().frame(pfn.add(3)).iter().all(|&b| b == 0xff));
    });
}

#[test]
fn twenty_random_allocations_then_reset_restore_boot_buddyinfo() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        assert_eq!(boot, t.boot_buddyinfo());
        let gfps = [
            "GFP_KERNEL",
            "GFP_DMA",
            "GFP_DMA32",
            "GFP_HIGHUSER",
            "GFP_ATOMIC",
            "GFP_KERNEL|__GFP_ZERO",
            "GFP_HIGHUSER | __GFP_ZERO | __GFP_NOWARN",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in 0..20 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let order = seed % 8;
            let gfp = gfps[(seed >> 8) as usize % gfps.len()];
            let h = t.alloc_ok(json!({"type":"pages","order":order,"gfp":gfp}));
            assert_eq!(h["id"], i + 1);
        }
        assert_ne!(t.buddyinfo(), boot);
        assert_eq!(
            t.json("/api/allocations")["allocations"]
                .as_array()
                .unwrap()
                .len(),
            20
        );
        let reset = t.request("POST", "/api/reset", None);
        assert_eq!(reset.status, 200);
        assert_eq!(reset.body, br#"{"freed":20}"#);
        assert_eq!(t.buddyinfo(), boot);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
        assert_eq!(
            t.json("/api/allocations"),
            json!({"total":0,"offset":0,"limit":1000,"allocations":[]})
        );
        assert_eq!(t.api.quota().0, 0);
        let reset = t.request("POST", "/api/reset", None);
        assert_eq!(reset.body, br#"{"freed":0}"#);
    });
}

// ----------------------------------------------------------------------
// Errors: every row of API.md's table that exists in this build
// ----------------------------------------------------------------------

#[test]
fn bad_requests_are_400_einval() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        let cases: &[(&str, &str)] = &[
            (r#"{"type":"pages","order":"#, "malformed JSON"),
            (r#"{"type":"pages","order":3} x"#, "trailing"),
            ("", "required"),
            ("[]", "malformed JSON"),
            (r#"{"type":"pages","order":11}"#, "out of range"),
            (r#"{"type":"pages","order":-1}"#, "malformed JSON"),
            (
                r#"{"type":"pages","order":99999999999999999999999}"#,
                "malformed JSON",
            ),
            (
                r#"{"type":"pages","order":1,"gfp":"GFP_BOGUS"}"#,
                "GFP_BOGUS",
            ),
            (r#"{"type":"pages","order":1,"gfp":""}"#, "bad gfp"),
            (
                r#"{"type":"pages","order":1,"gfp":"GFP_DMA|GFP_HIGHUSER"}"#,
                "bad gfp",
            ),
            (r#"{"type":"pages","order":1,"gfp":7}"#, "malformed JSON"),
            (r#"{"order":1}"#, "missing \"type\""),
            (r#"{"type":"pages"}"#, "missing \"order\""),
            (r#"{"type":"bogus","order":1}"#, "unknown allocation type"),
            (r#"{"type":"kmalloc","size":4194305}"#, "out of range"),
            (r#"{"type":"vmalloc","size":4096}"#, "not supported yet"),
            (r#"{"type":"dma","size":0}"#, "out of range"),
            (r#"{"type":"dma","size":1073741825}"#, "out of range"),
            (r#"{"type":"percpu","size":8,"align":3}"#, "illegal size"),
            (r#"{"type":"dma"}"#, "missing \"size\""),
            (r#"{"type":"dma","size":-1}"#, "malformed JSON"),
        ];
        for (body, why) in cases {
            let r = t.request("POST", "/api/alloc", Some(body));
            assert_eq!(error(&r), (400, "EINVAL".into()), "{body}");
            let j: Value = serde_json::from_slice(&r.body).unwrap();
            let message = j["error"]["message"].as_str().unwrap();
            assert!(message.contains(why), "{body}: {message}");
        }
        // Deep nesting is refused before the recursive parser sees it.
        let deep = format!(r#"{{"type":"pages","order":0,"x":{}}}"#, "[".repeat(60_000));
        let r = t.request("POST", "/api/alloc", Some(&deep));
        assert_eq!(error(&r), (400, "EINVAL".into()));
        // Shallow nesting parses (brackets inside strings do not count),
        // and a field no allocation takes is refused, not ignored.
        let nested = r#"{"type":"pages","order":0,"x":[[[{"a":"]]]]]]"}]]]}"#;
        let r = t.request("POST", "/api/alloc", Some(nested));
        assert_eq!(error(&r), (400, "EINVAL".into()));
        assert!(
            r.text()
                .contains(r#"\"x\" does not apply to type \"pages\""#),
            "{}",
            r.text()
        );
        // So is a field of another type ("size" is kmalloc's, not pages').
        let r = t.alloc(json!({"type":"pages","order":0,"size":4096}));
        assert_eq!(error(&r), (400, "EINVAL".into()));
        assert!(
            r.text()
                .contains(r#"\"size\" does not apply to type \"pages\""#),
            "{}",
            r.text()
        );
        // And a malformed GFP, whether or not the type's own call reads it.
        let r = t.alloc(json!({"type":"dma","size":4096,"gfp":"GFP_BOGUS"}));
        assert_eq!(error(&r), (400, "EINVAL".into()));
        assert_eq!(
            t.request("POST", "/api/reset", None).body,
            br#"{"freed":0}"#
        );
        let h = t.alloc_ok(json!({"type":"pages","order":0}));
        let id = h["id"].as_u64().unwrap();
        for (method, path, body) in [
            ("DELETE", "/api/alloc/abc".to_string(), None),
            ("DELETE", "/api/alloc/0".to_string(), None),
            ("DELETE", "/api/alloc/-1".to_string(), None),
            (
                "DELETE",
                "/api/alloc/99999999999999999999999".to_string(),
                None,
            ),
            ("DELETE", format!("/api/alloc/{id}?order=x"), None),
            ("DELETE", format!("/api/alloc/{id}?order=11"), None),
            ("DELETE", format!("/api/alloc/{id}?order=+0"), None),
            (
                "POST",
                format!("/api/alloc/{id}/fill"),
                Some(r#"{"byte":256}"#),
            ),
            (
                "POST",
                format!("/api/alloc/{id}/fill"),
                Some(r#"{"byte":-1}"#),
            ),
            ("POST", format!("/api/alloc/{id}/fill"), Some(r#"{}"#)),
            ("POST", format!("/api/alloc/{id}/fill"), None),
            ("GET", "/api/alloc/x/checksum".to_string(), None),
        ] {
            let r = t.request(method, &path, body);
            assert_eq!(error(&r), (400, "EINVAL".into()), "{method} {path}");
        }
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
        assert_eq!(
            t.buddyinfo(),
            boot,
            "no request leaked or freed anything else"
        );
        // A malformed request line: 400 and the connection closes.
        let r = t.raw(b"BLAH\r\n\r\n");
        assert_eq!(error(&r), (400, "EINVAL".into()));
        assert_eq!(r.header("connection"), Some("close"));
    });
}

#[test]
fn not_found_and_method_not_allowed() {
    run(DEFAULT, |t| {
        let r = t.get("/api/nonexistent");
        assert_eq!(error(&r), (404, "ENOENT".into()));
        // Routes of API.md not built yet: 404 like any absent path.
        for path in ["/proc/vmallocinfo", "/api/kmap", "/ui/app.js"] {
            let r = t.get(path);
            assert_eq!(error(&r), (404, "ENOENT".into()), "{path}");
            assert!(
                r.text().contains("not available in this build"),
                "{}",
                r.text()
            );
        }
        // Built, and `{}` lacks its "workload".
        let r = t.request("POST", "/api/bench", Some("{}"));
        assert_eq!(error(&r), (400, "EINVAL".into()));
        // Unknown handles.
        for (method, path, body) in [
            ("DELETE", "/api/alloc/4242", None),
            ("POST", "/api/alloc/4242/fill", Some(r#"{"byte":1}"#)),
            ("GET", "/api/alloc/4242/checksum", None),
        ] {
            let r = t.request(method, path, body);
            assert_eq!(error(&r), (404, "ENOENT".into()), "{method} {path}");
        }
        // 405 with the exact Allow of what is built.
        for (method, path, allow) in [
            ("DELETE", "/api/zones", "GET, HEAD"),
            ("POST", "/proc/buddyinfo", "GET, HEAD"),
            ("POST", "/proc/pagetypeinfo", "GET, HEAD"),
            ("GET", "/api/bench", "POST"),
            ("GET", "/api/alloc", "POST"),
            ("GET", "/api/reset", "POST"),
            ("PUT", "/api/alloc/1", "GET, HEAD, DELETE"),
            ("PUT", "/api/alloc/1/fill", "POST"),
            ("POST", "/api/alloc/1/checksum", "GET, HEAD"),
            ("POST", "/", "GET, HEAD"),
        ] {
            let r = t.request(method, path, Some("{}"));
            assert_eq!(error(&r), (405, "EINVAL".into()), "{method} {path}");
            assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        }
    });
}

#[test]
fn token_guards_every_non_get() {
    run(
        Opts {
            token: Some(TOKEN),
            ..DEFAULT
        },
        |t| {
            let body = r#"{"type":"pages","order":0}"#;
            let req = format!(
                "POST /api/alloc HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let r = t.raw(req.as_bytes());
            assert_eq!(error(&r), (401, "EACCES".into()));
            assert!(r.header("www-authenticate").is_some());
            let req = format!(
                "POST /api/alloc HTTP/1.1\r\nAuthorization: Bearer wrong\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            assert_eq!(t.raw(req.as_bytes()).status, 401);
            for (m, p) in [("DELETE", "/api/alloc/1"), ("POST", "/api/reset")] {
                let r = t.raw(format!("{m} {p} HTTP/1.1\r\n\r\n").as_bytes());
                assert_eq!(r.status, 401, "{m} {p}");
            }
            assert!(
                t.json("/api/allocations")["allocations"]
                    .as_array()
                    .unwrap()
                    .is_empty()
            );
            // GETs stay open; with the token writes work.
            assert_eq!(t.raw(b"GET /api/zones HTTP/1.1\r\n\r\n").status, 200);
            let h = t.alloc_ok(json!({"type":"pages","order":0}));
            assert_eq!(h["id"], 1);
            assert_eq!(
                t.request("POST", "/api/reset", None).body,
                br#"{"freed":1}"#
            );
        },
    );
}

#[test]
fn conflicting_free_is_409_and_changes_nothing() {
    run(DEFAULT, |t| {
        let h = t.alloc_ok(json!({"type":"pages","order":5,"gfp":"GFP_DMA32"}));
        let before = t.buddyinfo();
        for order in [0, 4, 6, 10] {
            let r = t.request(
                "DELETE",
                &format!("/api/alloc/{}?order={order}", h["id"]),
                None,
            );
            assert_eq!(error(&r), (409, "EBUSY".into()), "order {order}");
        }
        assert_eq!(t.buddyinfo(), before);
        assert_eq!(
            t.json("/api/allocations")["allocations"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{}", h["id"]), None)
                .status,
            200
        );
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn oversize_body_413_and_head_431() {
    run(DEFAULT, |t| {
        let r = t.raw(b"POST /api/alloc HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n");
        assert_eq!(error(&r), (413, "E2BIG".into()));
        let filler = "a".repeat(9000);
        let r = t.raw(format!("GET /api/health HTTP/1.1\r\nX-Filler: {filler}\r\n\r\n").as_bytes());
        assert_eq!(error(&r), (431, "E2BIG".into()));
        // A body just under the limit is read and judged as JSON.
        let body = format!(
            r#"{{"type":"pages","order":0,"pad":"{}"}}"#,
            "p".repeat(60_000)
        );
        let r = t.request("POST", "/api/alloc", Some(&body));
        assert_eq!(error(&r), (400, "EINVAL".into()));
        assert!(r.text().contains(r#"\"pad\" does not apply"#));
        assert_eq!(t.get("/api/health").status, 200);
    });
}

#[test]
fn exhausting_zone_dma_is_507_enomem() {
    run(DEFAULT, |t| {
        let boot = t.buddyinfo();
        let mut ok = 0;
        let last = loop {
            let r = t.alloc(json!({"type":"pages","order":10,"gfp":"GFP_DMA"}));
            if r.status != 201 {
                break r;
            }
            ok += 1;
            assert!(ok < 16, "ZONE_DMA holds at most 3 order-10 blocks");
        };
        assert_eq!(ok, 3);
        assert_eq!(error(&last), (507, "ENOMEM".into()));
        assert!(last.text().contains("order:10"), "{}", last.text());
        assert_eq!(counts(&t.buddyinfo(), "DMA")[10], 0);
        let reset = t.request("POST", "/api/reset", None);
        assert_eq!(reset.body, br#"{"freed":3}"#);
        assert_eq!(t.buddyinfo(), boot);
    });
}

#[test]
fn quota_is_507_equota() {
    run(
        Opts {
            quota_pct: 2,
            ..DEFAULT
        },
        |t| {
            let managed = t.mm.lock().totalram_pages();
            let (held, quota) = t.api.quota();
            assert_eq!((held, quota), (0, managed * 2 / 100));
            assert!((512..768).contains(&quota), "{quota}");
            let body = json!({"type":"pages","order":8,"gfp":"GFP_KERNEL"});
            assert_eq!(t.alloc(body.clone()).status, 201);
            assert_eq!(t.alloc(body.clone()).status, 201);
            let r = t.alloc(body.clone());
            assert_eq!(error(&r), (507, "EQUOTA".into()));
            // Smaller ones still fit under the quota.
            assert_eq!(t.alloc(json!({"type":"pages","order":0})).status, 201);
            assert_eq!(
                t.request("POST", "/api/reset", None).body,
                br#"{"freed":3}"#
            );
            assert_eq!(t.alloc(body).status, 201, "the quota is free again");
        },
    );
}

#[test]
fn concurrent_clients_and_pipelining_through_the_api() {
    run(DEFAULT, |t| {
        let clients: Vec<_> = (0..16).map(|_| t.net.connect()).collect();
        for (i, &c) in clients.iter().enumerate() {
            let body = r#"{"type":"pages","order":1}"#;
            let req = format!(
                "POST /api/alloc HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}GET /api/buddyinfo HTTP/1.1\r\n\r\n",
                body.len()
            );
            t.net.send(c, req.as_bytes(), &mut t.api);
            let _ = i;
        }
        let mut ids = Vec::new();
        for &c in &clients {
            let r = t.net.response(c, false, 5000, &mut t.api).unwrap();
            assert_eq!(r.status, 201);
            let h: Value = serde_json::from_slice(&r.body).unwrap();
            ids.push(h["id"].as_u64().unwrap());
            let b = t.net.response(c, false, 5000, &mut t.api).unwrap();
            assert_eq!(b.status, 200);
        }
        ids.sort();
        assert_eq!(ids, (1..=16).collect::<Vec<_>>());
        for &c in &clients {
            t.net.socket(c).close();
        }
        t.net.run_for(100, &mut t.api);
        assert_eq!(t.request("POST", "/api/reset", None).status, 200);
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

/// A seeded random walk over every command, valid and invalid: each answer
/// has an allowed status and API.md's error body, the allocator's
/// invariants hold after every step, and reset brings the buddy state back
/// to boot — no request, however odd, leaks or corrupts anything.
#[test]
fn random_command_walk_keeps_every_invariant() {
    run(DEFAULT, |t| command_walk(t, 0x243f_6a88_85a3_08d3, false));
}

/// The same walk with Linux's fault injection failing 10 % of the page and
/// slab allocations (`GFP_KERNEL` included): every answer is still one of
/// the contract's, `/api/selfcheck` stays clean, and reset is exact.
#[test]
fn random_command_walk_under_injected_failures() {
    run(DEFAULT, |t| {
        for (fault, attr, value) in [
            ("fail_page_alloc", "probability", "10"),
            ("fail_page_alloc", "times", "-1"),
            ("fail_page_alloc", "ignore-gfp-wait", "0"),
            ("fail_page_alloc", "min-order", "0"),
            ("failslab", "probability", "10"),
            ("failslab", "times", "-1"),
            ("failslab", "ignore-gfp-wait", "0"),
        ] {
            let path = format!("/sys/kernel/debug/{fault}/{attr}");
            assert_eq!(t.request("PUT", &path, Some(value)).status, 200, "{path}");
        }
        command_walk(t, 0x1319_8a2e_0370_7344, true);
        let injected: u64 = ["fail_page_alloc", "failslab"]
            .iter()
            .map(|f| {
                let r = t.get(&format!("/sys/kernel/debug/{f}/injected"));
                r.text().trim().parse::<u64>().unwrap()
            })
            .sum();
        assert!(injected >= 10, "{injected} failures injected");
        assert_eq!(t.json("/api/selfcheck")["ok"], true);
    });
}

fn command_walk(t: &mut T<'_>, seed: u64, injecting: bool) {
    {
        let mut seed = seed;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let gfps = [
            "GFP_KERNEL",
            "GFP_DMA",
            "GFP_DMA32",
            "GFP_HIGHUSER",
            "GFP_ATOMIC",
            "GFP_KERNEL|__GFP_ZERO",
            "__GFP_HIGHMEM",
            "GFP_DMA|GFP_DMA32",
            "bogus",
        ];
        let mut ids: Vec<u64> = Vec::new();
        let mut by_status = std::collections::BTreeMap::<u16, u32>::new();
        let mut dma_buffers = 0;
        for step in 0..400 {
            let gfp = gfps[next(gfps.len() as u64) as usize];
            let id = if ids.is_empty() || next(5) == 0 {
                next(1000)
            } else {
                ids[next(ids.len() as u64) as usize]
            };
            let (method, path, body) = match next(12) {
                0 | 1 => ("POST", "/api/alloc".to_string(),
                    Some(json!({"type":"pages","order":next(13),"gfp":gfp}).to_string())),
                2 if next(3) == 0 => ("POST", "/api/alloc".to_string(),
                    Some(json!({"type":"dma","size":next(5 << 20)}).to_string())),
                2 => ("POST", "/api/alloc".to_string(),
                    Some(json!({"type":"kmalloc","size":next(20000),"gfp":gfp}).to_string())),
                3 => ("POST", "/api/alloc".to_string(),
                    Some(json!({"type":"cache","cache":(["c1","c2","kmalloc-64","nope"][next(4) as usize])}).to_string())),
                4 => ("POST", "/api/alloc".to_string(),
                    Some(json!({"type":"mempool","pool":(["p1","nope"][next(2) as usize])}).to_string())),
                5 => ("DELETE", format!("/api/alloc/{id}?order={}", next(12)), None),
                6 => ("DELETE", format!("/api/alloc/{id}"), None),
                7 => ("POST", format!("/api/alloc/{id}/fill"), Some(json!({"byte":next(300)}).to_string())),
                8 => ("GET", format!("/api/alloc/{id}/checksum"), None),
                9 => ("POST", "/api/caches".to_string(), Some(json!({
                    "name":(["c1","c2"][next(2) as usize]),"size":next(5000),"align":(1u64 << next(13)),
                    "flags":([["SLAB_POISON"],["SLAB_RED_ZONE"],["SLAB_BOGUS"]][next(3) as usize])}).to_string())),
                10 => match next(3) {
                    0 => ("DELETE", format!("/api/caches/{}", ["c1","c2","kmalloc-64"][next(3) as usize]), None),
                    1 => ("POST", format!("/api/caches/{}/shrink", ["c1","c2","kmalloc-64"][next(3) as usize]), None),
                    _ => ("POST", "/api/mempools".to_string(),
                        Some(json!({"name":"p1","cache":(["c1","c2"][next(2) as usize]),"min_nr":next(80)}).to_string())),
                },
                _ => match next(2) {
                    0 => ("POST", "/api/mempools/p1/resize".to_string(), Some(json!({"min_nr":next(80)}).to_string())),
                    _ => ("DELETE", "/api/mempools/p1".to_string(), None),
                },
            };
            let r = t.request(method, &path, body.as_deref());
            assert!(
                matches!(r.status, 200 | 201 | 400 | 404 | 409 | 507),
                "step {step}: {method} {path} {body:?} → {} {}",
                r.status,
                r.text()
            );
            *by_status.entry(r.status).or_default() += 1;
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            if r.status >= 400 {
                assert!(
                    v["error"]["code"].is_string() && v["error"]["message"].is_string(),
                    "{v}"
                );
            } else if r.status == 201 && path == "/api/alloc" {
                ids.push(v["id"].as_u64().unwrap());
                dma_buffers += u32::from(v["type"] == "dma");
            }
            t.mm.lock().check_invariants().unwrap();
            if step % 50 == 0 {
                let check = t.json("/api/selfcheck");
                assert_eq!(check["ok"], true, "step {step}: {check}");
            }
        }
        // The walk really exercised both sides: successes and every kind
        // of refusal.
        for status in [200, 201, 400, 404, 409] {
            assert!(
                by_status.get(&status).is_some_and(|&n| n >= 5),
                "{by_status:?}"
            );
        }
        assert!(dma_buffers >= 3, "{dma_buffers} dma buffers");
        if injecting {
            assert!(
                by_status.get(&507).is_some_and(|&n| n >= 5),
                "{by_status:?}"
            );
        }
        let r = t.request("POST", "/api/reset", None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
        assert_eq!(t.json("/api/allocations")["allocations"], json!([]));
        assert!(
            !t.json("/api/dma")["coherent"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["owner"] == DMA_OWNER),
            "reset freed every dma buffer"
        );
    }
}

/// With the per-CPU lists on (the kernel's default): an order-0 request
/// takes a batch off the buddy lists, a free keeps its page on the list,
/// `/api/zones` and `/proc/zoneinfo` show the pageset, and reset drains
/// it so buddyinfo equals boot again.
#[test]
fn per_cpu_lists_show_in_zones_and_reset_drains_them() {
    run(PCP, |t| {
        let boot = t.buddyinfo();
        assert_eq!(boot, t.boot_buddyinfo());
        let zone = |t: &mut T<'_>, name: &str| {
            t.json("/api/zones")["zones"]
                .as_array()
                .unwrap()
                .iter()
                .find(|z| z["name"] == name)
                .unwrap()
                .clone()
        };
        let before = zone(t, "DMA32");
        let (high, batch) = (
            before["pagesets"][0]["high"].as_u64().unwrap(),
            before["pagesets"][0]["batch"].as_u64().unwrap(),
        );
        assert_eq!(before["pagesets"][0]["cpu"], 0);
        assert!(high >= 4 * batch && batch >= 1, "{before}");
        let count0 = before["pagesets"][0]["count"].as_u64().unwrap();
        let a = t.alloc_ok(json!({"type":"pages","order":0,"gfp":"GFP_DMA32"}));
        let after = zone(t, "DMA32");
        let count = after["pagesets"][0]["count"].as_u64().unwrap();
        let free_drop = before["free"].as_u64().unwrap() - after["free"].as_u64().unwrap();
        // Either the list had the page already, or a refill moved whole
        // pages from the buddy lists: free + pcp count lost exactly one.
        assert_eq!(free_drop + count0, count + 1, "{after}");
        let id = a["id"].as_u64().unwrap();
        assert_eq!(
            t.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
        let freed = zone(t, "DMA32");
        assert_eq!(freed["pagesets"][0]["count"].as_u64().unwrap(), count + 1);
        let zoneinfo = t.get("/proc/zoneinfo");
        let text = zoneinfo.text();
        assert!(
            text.contains(&format!(
                "  pagesets\n    cpu: 0\n              count: {}\n              high:  {high}\n              batch: {batch}\n",
                count + 1
            )),
            "{text}"
        );
        assert_eq!(t.request("POST", "/api/reset", None).status, 200);
        assert_eq!(zone(t, "DMA32")["pagesets"][0]["count"], 0);
        assert_eq!(t.buddyinfo(), boot);
    });
}
