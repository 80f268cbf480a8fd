//! The virtual-memory routes over the network stack: the same scaled-down
//! q35 as `api/tests.rs` (128 MiB of firmware RAM, `lowmem=64M`,
//! `mem=120M`), with a [`Vm`] over the simulated platform — whose arena
//! here backs all firmware RAM, the `mem=` tail included, so an ioremap of
//! the tail can be filled — and a fake `System` whose page-table walk is
//! synthesized from the sim's PTEs.

use std::boxed::Box;
use std::cell::Cell;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use mm::highmem::{KmapAtomicStack, Pkmap};
use mm::layout::{PKMAP_BASE, VMALLOC_START};
use mm::manager::MemoryManager;
use mm::page::Page;
use mm::page_alloc::{AllocError, PageAlloc};
use mm::pgtable::{self, Walk};
use mm::platform::sim::SimPlatform;
use mm::platform::{PageMapper, Platform};
use mm::procfs::KernelSections;
use mm::types::{PAGE_OFFSET, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use mm::vmalloc::{VmallocError, VmapAreaAllocator, VmapKind};
use mm::zone::ZoneLayout;
use serde_json::{Value, json};
use smoltcp::iface::SocketHandle;
use spin::Mutex;

use super::super::{Api, BootView, DEFAULT_API_QUOTA_PCT, System};
use super::{Vm, kmap_error, vm_error};
use crate::testing::{HttpResponse, Net};

// The machine of `api/tests.rs`: its firmware map, memblock and sizes.
use super::super::tests::{LOWMEM, MEM_LIMIT, MIB, e820, memblock};

/// End of firmware RAM (the `mem=` tail is `[MEM_LIMIT, RAM_END)`).
const RAM_END: u64 = 0x07fe_0000;

/// The shared zero page: the first frame of the (memblock-reserved) kernel
/// image.
const ZERO_PAGE: Pfn = Pfn(MIB / PAGE_SIZE);

/// A 4-level walk synthesized from the sim: the direct map of lowmem is
/// present, the windows resolve through the sim's PTEs, the rest is not
/// mapped below the PUD. Fake table addresses encode the level.
fn sim_walk(sim: &SimPlatform, vaddr: u64) -> Walk {
    const P: u64 = pgtable::PRESENT | pgtable::WRITABLE;
    let table = |level: u64| level << 40;
    pgtable::walk(table(1), vaddr, |entry_phys| match entry_phys >> 40 {
        1 => table(2) | P,
        2 => table(3) | P,
        3 if (PAGE_OFFSET..PAGE_OFFSET + LOWMEM).contains(&vaddr) => table(4) | P,
        3 if vaddr >= VMALLOC_START => table(4) | P,
        4 if (PAGE_OFFSET..PAGE_OFFSET + LOWMEM).contains(&vaddr) => {
            ((vaddr - PAGE_OFFSET) & pgtable::ADDR_MASK) | P | pgtable::NX
        }
        4 => sim
            .translate(VirtAddr(vaddr & !(PAGE_SIZE - 1)))
            .map_or(0, |pfn| pfn.phys().0 | P | pgtable::NX),
        _ => 0,
    })
}

struct FakeSystem<'s> {
    uptime_ms: Cell<u64>,
    sim: &'s SimPlatform,
}

impl System for FakeSystem<'_> {
    fn uptime_ms(&self) -> u64 {
        self.uptime_ms.get()
    }
    fn version(&self) -> &str {
        "0.1.0-test"
    }
    fn kernel_sections(&self) -> KernelSections {
        KernelSections {
            code: Some((PhysAddr(0x10_0000), PhysAddr(0x18_0000))),
            rodata: Some((PhysAddr(0x18_0000), PhysAddr(0x1c_0000))),
            data: Some((PhysAddr(0x1c_0000), PhysAddr(0x1e_0000))),
            bss: Some((PhysAddr(0x1e_0000), PhysAddr(0x30_0000))),
        }
    }
    fn pagetable(&self, addr: VirtAddr) -> Option<Walk> {
        Some(sim_walk(self.sim, addr.0))
    }
}

struct T<'a> {
    api: Api<'a, SimPlatform>,
    mm: &'a MemoryManager<'a, SimPlatform>,
    areas: &'a Mutex<VmapAreaAllocator>,
    net: Net,
    client: Option<SocketHandle>,
}

/// Runs `body` with the API over a vmalloc area of `vmalloc_size` bytes.
fn run_with(vmalloc_size: u64, body: impl FnOnce(&mut T<'_>)) {
    let fw = e820();
    let mb = memblock(&fw);
    let layout = ZoneLayout::from_bytes(LOWMEM, mb.end_of_ram().0);
    let mut mem_map = vec![Page::new_reserved(); layout.max_pfn.index()];
    let mut pa = PageAlloc::new(&mut mem_map, layout).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    // Exact buddy predictions: no per-CPU lists (as `pcp=off`).
    pa.set_pcp_enabled(false);
    // The arena backs every firmware RAM frame, the mem= tail included.
    let mm = MemoryManager::new(pa, SimPlatform::new(RAM_END / PAGE_SIZE));
    let areas = Box::new(Mutex::new(VmapAreaAllocator::new(
        VirtAddr(VMALLOC_START),
        vmalloc_size,
    )));
    // The zero page is a frame of the kernel image, as in the kernel.
    mm.platform().with_frame(ZERO_PAGE, &mut |b| b.fill(0));
    areas.lock().set_zero_page(ZERO_PAGE);
    let pkmap = Box::new(Mutex::new(Pkmap::new(Pfn(LOWMEM / PAGE_SIZE))));
    let atomic = Mutex::new(KmapAtomicStack::new());
    let system = FakeSystem {
        uptime_ms: Cell::new(99),
        sim: mm.platform(),
    };
    let boot = BootView {
        cmdline: "lowmem=64M mem=120M",
        firmware_map: &fw,
        memblock: &mb,
        devices: &[],
    };
    let vm = Vm {
        areas: &areas,
        pkmap: &pkmap,
        kmap_atomic: &atomic,
        mapper: mm.platform(),
    };
    let mut t = T {
        api: Api::new(&mm, boot, &system, DEFAULT_API_QUOTA_PCT).with_vm(vm),
        mm: &mm,
        areas: &areas,
        net: Net::with_static(16, None),
        client: None,
    };
    body(&mut t);
    mm.lock().check_invariants().unwrap();
    areas.lock().check_invariants().unwrap();
    assert_eq!(mm.platform().unflushed(), 0, "every unmap was flushed");
    assert_eq!(mm.platform().stale_remaps(), 0);
}

fn run(body: impl FnOnce(&mut T<'_>)) {
    run_with(1 << 30, body);
}

impl T<'_> {
    fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 10.0.2.15\r\n");
        if let Some(body) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        let c = match self.client {
            Some(c) if self.net.socket(c).may_send() => c,
            _ => {
                let c = self.net.connect();
                self.client = Some(c);
                c
            }
        };
        self.net.exchange(c, req.as_bytes(), &mut self.api)
    }

    fn json(&mut self, path: &str) -> Value {
        let r = self.request("GET", path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    fn text(&mut self, path: &str) -> String {
        let r = self.request("GET", path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        r.text().to_string()
    }

    fn post(&mut self, path: &str, body: Value) -> HttpResponse {
        self.request("POST", path, Some(&body.to_string()))
    }

    fn alloc_ok(&mut self, body: Value) -> Value {
        let r = self.post("/api/alloc", body.clone());
        assert_eq!(r.status, 201, "{body}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    fn ok(&mut self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.request(method, path, body.map(|b| b.to_string()).as_deref());
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    fn walk(&mut self, addr: u64) -> Value {
        self.json(&format!("/api/pagetable?addr={addr:#x}"))
    }

    fn buddyinfo(&self) -> mm::manager::BuddySnapshot {
        self.mm.buddyinfo()
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

fn crc32(bytes: &[u8]) -> u64 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    u64::from(h.finalize())
}

// ----------------------------------------------------------------------
// vmalloc
// ----------------------------------------------------------------------

#[test]
fn vmalloc_maps_256_pages_with_a_guard_and_shows_everywhere() {
    run(|t| {
        let boot = t.buddyinfo();
        let info = t.json("/api/vmallocinfo");
        assert_eq!(hex(&info["start"]), VMALLOC_START);
        assert_eq!(hex(&info["end"]), VMALLOC_START + (1 << 30));
        assert_eq!(info["areas"], json!([]));
        assert_eq!(t.text("/proc/vmallocinfo"), "");

        let h = t.alloc_ok(json!({"type":"vmalloc","size":1 << 20}));
        assert_eq!(h["type"], "vmalloc");
        assert_eq!(h["size"], 1 << 20);
        assert_eq!(h["nr_pages"], 256);
        assert_eq!(h["order"], Value::Null);
        assert_eq!(h["created_ms"], 99);
        let virt = hex(&h["virt"]);
        assert_eq!(virt, VMALLOC_START, "first fit: the area's start");
        // vmalloc asks for __GFP_HIGHMEM: HighMem (64..120 MiB here) first.
        assert_eq!(h["zones"], json!({"HighMem":256}));
        assert_eq!(h["zone"], "HighMem");
        let phys = hex(&h["phys"]);
        assert!((LOWMEM..MEM_LIMIT).contains(&phys), "{phys:#x}");
        assert_eq!(h["pfn"], phys / PAGE_SIZE);

        // Each page walks to a 4 KiB PTE; the first one to `phys`; the
        // guard page after the area is not mapped.
        for i in 0..256u64 {
            let w = t.walk(virt + i * PAGE_SIZE);
            assert_eq!(w["mapped"], true, "page {i}: {w}");
            assert_eq!(w["page_size"], 4096);
            assert_eq!(w["region"], "vmalloc");
            assert_eq!(w["area"]["guard"], false);
            let levels = w["levels"].as_array().unwrap();
            let names: Vec<&str> = levels
                .iter()
                .map(|l| l["level"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["PGD", "PUD", "PMD", "PTE"]);
            let pte = &levels[3];
            assert_eq!(pte["index"], (virt + i * PAGE_SIZE) >> 12 & 511);
            assert_eq!(pte["flags"], json!(["PRESENT", "WRITABLE", "NX"]));
            if i == 0 {
                assert_eq!(hex(&w["phys"]), phys);
            }
        }
        let guard = t.walk(virt + (1 << 20));
        assert_eq!(guard["mapped"], false);
        assert_eq!(guard["phys"], Value::Null);
        assert_eq!(guard["area"]["guard"], true);
        assert_eq!(guard["area"]["caller"], "api_alloc");

        let info = t.json("/api/vmallocinfo");
        assert_eq!(
            info["areas"],
            json!([{"start":format!("{virt:#x}"),"end":format!("{:#x}", virt + (1 << 20)),"size":1 << 20,
                "nr_pages":256,"kind":"vmalloc","phys":format!("{phys:#x}"),"caller":"api_alloc",
                "reserved_size":(1 << 20) + 4096}])
        );
        assert_eq!(info["vmalloc_pages"], 256);
        // Linux's format: `0x%pK-0x%pK %7ld caller pages=N vmalloc`, the
        // size and end including the guard page.
        assert_eq!(
            t.text("/proc/vmallocinfo"),
            format!(
                "0x{virt:016x}-0x{:016x} 1052672 api_alloc pages=256 vmalloc\n",
                virt + (1 << 20) + 4096
            )
        );
        let mi = t.json("/api/meminfo");
        assert_eq!(mi["VmallocTotal"], 1 << 20);
        assert_eq!(mi["VmallocUsed"], 1024);
        assert_eq!(mi["VmallocChunk"], ((1u64 << 30) - (1 << 20) - 4096) >> 10);
        let text = t.text("/proc/meminfo");
        assert!(text.contains("VmallocUsed:        1024 kB\n"), "{text}");

        // Fill and checksum go through the mapping, page by page.
        let id = h["id"].as_u64().unwrap();
        assert_eq!(
            t.ok(
                "POST",
                &format!("/api/alloc/{id}/fill"),
                Some(json!({"byte":0xA5}))
            ),
            json!({"bytes":1 << 20})
        );
        let c = t.ok("GET", &format!("/api/alloc/{id}/checksum"), None);
        assert_eq!(c["bytes"], 1 << 20);
        assert_eq!(hex(&c["crc32"]), crc32(&vec![0xA5; 1 << 20]));
        let pfn =
            t.mm.platform()
                .translate(VirtAddr(virt + 77 * PAGE_SIZE))
                .unwrap();
        assert!(t.mm.platform().frame(pfn).iter().all(|&b| b == 0xA5));

        let listed = t.json("/api/allocations");
        assert_eq!(listed["allocations"][0]["type"], "vmalloc");
        assert_eq!(
            t.api.quota().0,
            256,
            "vmalloc pages count against the quota"
        );

        // vfree: PTEs gone (and flushed: see run_with), frames back.
        let r = t.ok("DELETE", &format!("/api/alloc/{id}"), None);
        assert_eq!(r, json!({"freed":id,"order":null,"nr_pages":256}));
        assert_eq!(t.mm.platform().nr_ptes(), 0);
        assert_eq!(t.buddyinfo(), boot);
        assert_eq!(t.api.quota().0, 0);
        assert_eq!(t.json("/api/vmallocinfo")["areas"], json!([]));
        assert_eq!(
            error(&t.request("DELETE", &format!("/api/alloc/{id}"), None)),
            (404, "ENOENT".into())
        );
    });
}

#[test]
fn vmalloc_frames_are_scattered_when_memory_is_fragmented() {
    run(|t| {
        // Take 64 HighMem pages and give every other one back: the free
        // singles are where order-0 requests go first.
        let ids: Vec<u64> = (0..64)
            .map(|_| {
                t.alloc_ok(json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"}))["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        for id in ids.iter().step_by(2) {
            t.ok("DELETE", &format!("/api/alloc/{id}"), None);
        }
        let h = t.alloc_ok(json!({"type":"vmalloc","size":32 * 4096}));
        let virt = hex(&h["virt"]);
        let frames: Vec<u64> = (0..32)
            .map(|i| hex(&t.walk(virt + i * PAGE_SIZE)["phys"]))
            .collect();
        let contiguous = frames
            .windows(2)
            .filter(|w| w[1] == w[0] + PAGE_SIZE)
            .count();
        assert_eq!(contiguous, 0, "{frames:x?}");
        assert_eq!(t.ok("POST", "/api/reset", None), json!({"freed": 33}));
        assert_eq!(t.buddyinfo(), t.mm.boot_buddyinfo());
    });
}

#[test]
fn vmalloc_errors() {
    run_with(4 * MIB, |t| {
        let boot = t.buddyinfo();
        for (body, status, code, why) in [
            (json!({"type":"vmalloc"}), 400, "EINVAL", "(bytes)"),
            (
                json!({"type":"vmalloc","size":0}),
                400,
                "EINVAL",
                "at least",
            ),
            (
                json!({"type":"vmalloc","size":-1}),
                400,
                "EINVAL",
                "malformed JSON",
            ),
            (
                json!({"type":"vmalloc","size":"1"}),
                400,
                "EINVAL",
                "malformed JSON",
            ),
            // The area is 4 MiB: 4 MiB plus a guard page does not fit.
            (
                json!({"type":"vmalloc","size":4 * MIB}),
                507,
                "ENOMEM",
                "vmalloc=<size>",
            ),
            (
                json!({"type":"vmalloc","size":u64::MAX}),
                507,
                "EQUOTA",
                "quota",
            ),
        ] {
            let r = t.post("/api/alloc", body.clone());
            assert_eq!(error(&r), (status, code.to_string()), "{body}");
            assert!(r.text().contains(why), "{body}: {}", r.text());
        }
        // A mapping failure halfway is unwound: 507, nothing left behind.
        t.mm.platform().fail_maps_after(Some(5));
        let r = t.post("/api/alloc", json!({"type":"vmalloc","size":16 * 4096}));
        assert_eq!(error(&r), (507, "ENOMEM".into()), "{}", r.text());
        t.mm.platform().fail_maps_after(None);
        assert_eq!(t.mm.platform().nr_ptes(), 0);
        assert_eq!(t.areas.lock().nr_areas(), 0);

        // ?order= is for pages handles.
        let h = t.alloc_ok(json!({"type":"vmalloc","size":8192}));
        let id = h["id"].as_u64().unwrap();
        let r = t.request("DELETE", &format!("/api/alloc/{id}?order=1"), None);
        assert_eq!(error(&r), (400, "EINVAL".into()));
        for (body, status) in [
            (json!({"byte":256}), 400),
            (json!({}), 400),
            (json!({"byte":7}), 200),
        ] {
            let r = t.post(&format!("/api/alloc/{id}/fill"), body.clone());
            assert_eq!(r.status, status, "{body}: {}", r.text());
        }
        t.ok("DELETE", &format!("/api/alloc/{id}"), None);
        assert_eq!(
            t.buddyinfo(),
            boot,
            "no request leaked or freed anything else"
        );
    });
}

#[test]
fn error_mapping_is_api_md_s_table() {
    use mm::platform::MapError;
    let v = VirtAddr(VMALLOC_START);
    let cases: [(VmallocError, u16); 13] = [
        (VmallocError::NoSpace { size: 1, align: 1 }, 507),
        (VmallocError::TooManyAreas { max: 1 }, 507),
        (
            VmallocError::NoMemory {
                nr_pages_done: 1,
                err: AllocError::NoMemory {
                    order: mm::types::Order::ZERO,
                    gfp: mm::gfp::GfpFlags::GFP_KERNEL,
                },
            },
            507,
        ),
        (VmallocError::Map(MapError::NoMemory { virt: v }), 507),
        (VmallocError::BadSize { size: 0 }, 400),
        (VmallocError::BadAlign { align: 3 }, 400),
        (VmallocError::Map(MapError::BadAddress { virt: v }), 400),
        (
            VmallocError::NotAreaStart {
                addr: v,
                area: None,
            },
            404,
        ),
        (
            VmallocError::WrongKind {
                addr: v,
                kind: VmapKind::Vmap,
                expected: VmapKind::Vmalloc,
            },
            409,
        ),
        (VmallocError::RamInUse { pfn: Pfn(1) }, 409),
        (VmallocError::InUse { nr_areas: 1 }, 409),
        (
            VmallocError::Map(MapError::AlreadyMapped {
                virt: v,
                pfn: Pfn(1),
            }),
            409,
        ),
        (VmallocError::NotMapped { virt: v }, 409),
    ];
    for (e, status) in cases {
        let api = vm_error(e);
        assert_eq!(api.status, status, "{e:?}");
        assert_eq!(
            api.code,
            match status {
                507 => "ENOMEM",
                400 => "EINVAL",
                404 => "ENOENT",
                _ => "EBUSY",
            }
        );
    }
    use mm::highmem::KmapError;
    assert_eq!(kmap_error(KmapError::NoSlot).status, 507);
    assert_eq!(kmap_error(KmapError::NoSuchSlot { slot: 3 }).status, 404);
    assert_eq!(kmap_error(KmapError::NotMapped { pfn: Pfn(3) }).status, 404);
    assert_eq!(
        kmap_error(KmapError::AtomicOutOfOrder {
            expected: v,
            got: v
        })
        .status,
        409
    );
}

// ----------------------------------------------------------------------
// ioremap
// ----------------------------------------------------------------------

#[test]
fn ioremap_of_the_mem_tail_fills_and_checksums() {
    run(|t| {
        let boot = t.buddyinfo();
        let tail = MEM_LIMIT;
        let h = t.alloc_ok(json!({"type":"ioremap","phys":format!("{tail:#x}"),"size":0x40_0000}));
        assert_eq!(h["type"], "ioremap");
        assert_eq!(h["nr_pages"], 1024);
        assert_eq!(h["ram"], true);
        assert_eq!(h["zone"], Value::Null);
        assert_eq!(hex(&h["phys"]), tail);
        let virt = hex(&h["virt"]);
        // Uncached PTEs onto the tail's frames.
        let w = t.walk(virt + 5 * PAGE_SIZE);
        assert_eq!(hex(&w["phys"]), tail + 5 * PAGE_SIZE);
        let id = h["id"].as_u64().unwrap();
        assert_eq!(
            t.ok(
                "POST",
                &format!("/api/alloc/{id}/fill"),
                Some(json!({"byte":0x5A}))
            ),
            json!({"bytes":0x40_0000})
        );
        assert!(
            t.mm.platform()
                .frame(Pfn(tail / PAGE_SIZE + 1023))
                .iter()
                .all(|&b| b == 0x5A)
        );
        let c = t.ok("GET", &format!("/api/alloc/{id}/checksum"), None);
        assert_eq!(hex(&c["crc32"]), crc32(&vec![0x5A; 0x40_0000]));
        assert_eq!(t.api.quota().0, 0, "ioremap holds no memory");

        // An unaligned range: the bytes asked for, no more.
        let h2 = t.alloc_ok(
            json!({"type":"ioremap","phys":format!("{:#x}", tail + 0x10_0100),"size":0x1000}),
        );
        assert_eq!(hex(&h2["virt"]) % PAGE_SIZE, 0x100);
        assert_eq!(h2["nr_pages"], 2);
        let id2 = h2["id"].as_u64().unwrap();
        t.ok(
            "POST",
            &format!("/api/alloc/{id2}/fill"),
            Some(json!({"byte":1})),
        );
        let frame = t.mm.platform().frame(Pfn((tail + 0x10_0000) / PAGE_SIZE));
        assert_eq!((frame[0xff], frame[0x100], frame[0xfff]), (0x5A, 1, 1));
        let next = t.mm.platform().frame(Pfn((tail + 0x10_1000) / PAGE_SIZE));
        assert_eq!((next[0xff], next[0x100]), (1, 0x5A));

        let text = t.text("/proc/vmallocinfo");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with(&format!(" 4198400 api_alloc phys=0x{tail:016x} ioremap")),
            "{text}"
        );
        assert!(
            lines[1].ends_with(&format!(
                "   12288 api_alloc phys=0x{:016x} ioremap",
                tail + 0x10_0000
            )),
            "{text}"
        );
        let info = t.json("/api/vmallocinfo");
        assert_eq!(info["areas"][0]["kind"], "ioremap");
        assert_eq!(hex(&info["areas"][0]["phys"]), tail);
        assert_eq!(
            t.json("/api/meminfo")["VmallocUsed"],
            0,
            "VmallocUsed counts vmalloc pages only"
        );

        t.ok("DELETE", &format!("/api/alloc/{id}"), None);
        t.ok("DELETE", &format!("/api/alloc/{id2}"), None);
        assert_eq!(t.mm.platform().nr_ptes(), 0);
        assert_eq!(t.buddyinfo(), boot);
    });
}

#[test]
fn ioremap_refuses_owned_ram_and_does_not_touch_devices() {
    run(|t| {
        let boot = t.buddyinfo();
        for (phys, size, status, why) in [
            // Buddy-managed RAM (free or not): mm's own check.
            ("0x2000000", 4096, 409, "managed by the page allocator"),
            // A range that runs from the tail back into managed RAM.
            ("0x77ff000", 8192, 409, "managed by the page allocator"),
            // RAM the kernel reserved (its image, page 0).
            ("0x100000", 4096, 409, "reserved by kernel"),
            ("0x0", 16, 409, "reserved by firmware"),
            ("0x1234", 0, 400, "at least"),
            ("1234", 4096, 400, "malformed phys"),
            ("0x", 4096, 400, "malformed phys"),
            ("0x12345678901234567", 4096, 400, "malformed phys"),
            ("0xffffffffffff0000", 0x10_0000, 404, "beyond the physical"),
        ] {
            let r = t.post(
                "/api/alloc",
                json!({"type":"ioremap","phys":phys,"size":size}),
            );
            let code = match status {
                409 => "EBUSY",
                404 => "ENOENT",
                _ => "EINVAL",
            };
            assert_eq!(error(&r), (status, code.into()), "{phys}+{size}");
            assert!(r.text().contains(why), "{phys}: {}", r.text());
        }
        for body in [
            json!({"type":"ioremap","size":4096}),
            json!({"type":"ioremap","phys":"0x7800000"}),
        ] {
            assert_eq!(error(&t.post("/api/alloc", body)), (400, "EINVAL".into()));
        }
        // A device range maps, but fill and checksum refuse to touch it.
        let h = t.alloc_ok(json!({"type":"ioremap","phys":"0xb0000000","size":0x2000}));
        assert_eq!(h["ram"], false);
        let id = h["id"].as_u64().unwrap();
        let r = t.post(&format!("/api/alloc/{id}/fill"), json!({"byte":1}));
        assert_eq!(error(&r), (409, "EBUSY".into()));
        let r = t.request("GET", &format!("/api/alloc/{id}/checksum"), None);
        assert_eq!(error(&r), (409, "EBUSY".into()));
        // kmap is for pages handles.
        let r = t.post("/api/kmap", json!({"id":id}));
        assert_eq!(error(&r), (400, "EINVAL".into()));
        t.ok("DELETE", &format!("/api/alloc/{id}"), None);
        assert_eq!(t.buddyinfo(), boot);
        assert_eq!(t.mm.platform().nr_ptes(), 0);
    });
}

// ----------------------------------------------------------------------
// kmap
// ----------------------------------------------------------------------

#[test]
fn kmap_of_highmem_and_lowmem_pages() {
    run(|t| {
        let high = t.alloc_ok(json!({"type":"pages","order":1,"gfp":"GFP_HIGHUSER"}));
        assert_eq!(high["virt"], Value::Null);
        let (hid, hpfn) = (high["id"].as_u64().unwrap(), high["pfn"].as_u64().unwrap());
        let k = t.ok("POST", "/api/kmap", Some(json!({"id":hid})));
        assert_eq!(
            k,
            json!({"slot":0,"virt":format!("{PKMAP_BASE:#x}"),"pfn":hpfn,"id":hid,"count":2})
        );
        // The slot maps the page: its walk ends at the frame.
        assert_eq!(hex(&t.walk(PKMAP_BASE)["phys"]), hpfn * PAGE_SIZE);
        assert_eq!(t.walk(PKMAP_BASE)["region"], "pkmap");
        // Again: the same slot, one more user.
        let k2 = t.ok("POST", "/api/kmap", Some(json!({"id":hid})));
        assert_eq!(
            (k2["slot"].clone(), k2["count"].clone()),
            (json!(0), json!(3))
        );
        let info = t.json("/api/kmap");
        assert_eq!(hex(&info["pkmap"]["base"]), PKMAP_BASE);
        assert_eq!(info["pkmap"]["slots"], 1024);
        assert_eq!(info["pkmap"]["used"], 1);
        assert_eq!(
            info["pkmap"]["entries"],
            json!([{"slot":0,"virt":format!("{PKMAP_BASE:#x}"),"pfn":hpfn,"count":3,"users":2,"api_users":2}])
        );
        assert_eq!(info["atomic"]["slots"], 16);
        assert_eq!(info["atomic"]["used"], 0);

        // A kmapped page cannot be freed.
        let r = t.request("DELETE", &format!("/api/alloc/{hid}"), None);
        assert_eq!(error(&r), (409, "EBUSY".into()));
        assert_eq!(
            t.ok("DELETE", "/api/kmap/0", None),
            json!({"slot":0,"pfn":hpfn,"count":2})
        );
        assert_eq!(
            t.ok("DELETE", "/api/kmap/0", None),
            json!({"slot":0,"pfn":hpfn,"count":1})
        );
        // count 1: still mapped, awaiting the lazy flush; no API user left.
        assert_eq!(
            error(&t.request("DELETE", "/api/kmap/0", None)),
            (404, "ENOENT".into())
        );
        let info = t.json("/api/kmap");
        assert_eq!(info["pkmap"]["used"], 0);
        assert_eq!(info["pkmap"]["mapped"], 1);
        t.ok("DELETE", &format!("/api/alloc/{hid}"), None);

        // A lowmem page: its direct-map address, no slot.
        let low = t.alloc_ok(json!({"type":"pages","order":0}));
        let lid = low["id"].as_u64().unwrap();
        let k = t.ok("POST", "/api/kmap", Some(json!({"id":lid})));
        assert_eq!(k["slot"], Value::Null);
        assert_eq!(k["count"], Value::Null);
        assert_eq!(hex(&k["virt"]), hex(&low["virt"]));
        assert_eq!(t.json("/api/kmap")["pkmap"]["used"], 0);
        t.ok("DELETE", &format!("/api/alloc/{lid}"), None);

        for (body, status) in [
            (json!({}), 400),
            (json!({"id":"x"}), 400),
            (json!({"id":4242}), 404),
        ] {
            let r = t.post("/api/kmap", body.clone());
            assert_eq!(r.status, status, "{body}: {}", r.text());
        }
        for (path, status) in [
            ("/api/kmap/x", 400),
            ("/api/kmap/-1", 400),
            ("/api/kmap/1024", 404),
            ("/api/kmap/5", 404),
        ] {
            assert_eq!(t.request("DELETE", path, None).status, status, "{path}");
        }
    });
}

#[test]
fn kmap_slots_run_out_with_507_and_unused_ones_are_flushed_lazily() {
    run(|t| {
        let boot = t.buddyinfo();
        let mut slots = Vec::new();
        for _ in 0..1024 {
            let h = t.alloc_ok(json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"}));
            let k = t.ok("POST", "/api/kmap", Some(json!({"id":h["id"]})));
            slots.push(k["slot"].as_u64().unwrap());
        }
        slots.sort_unstable();
        assert_eq!(slots, (0..1024).collect::<Vec<_>>());
        let h = t.alloc_ok(json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"}));
        let r = t.post("/api/kmap", json!({"id":h["id"]}));
        assert_eq!(error(&r), (507, "ENOMEM".into()));
        // One slot's user goes: the next kmap flushes it and takes it.
        t.ok("DELETE", "/api/kmap/17", None);
        let k = t.ok("POST", "/api/kmap", Some(json!({"id":h["id"]})));
        assert_eq!(k["slot"], 17);
        assert_eq!(t.json("/api/kmap")["pkmap"]["flushes"], 1);
        // Reset drops every API kmap and flushes the window.
        let freed = t.ok("POST", "/api/reset", None)["freed"].as_u64().unwrap();
        assert_eq!(freed, 1025);
        let info = t.json("/api/kmap");
        assert_eq!(
            (
                info["pkmap"]["used"].clone(),
                info["pkmap"]["mapped"].clone()
            ),
            (json!(0), json!(0))
        );
        assert_eq!(t.mm.platform().nr_ptes(), 0);
        assert_eq!(t.buddyinfo(), boot);
    });
}

// ----------------------------------------------------------------------
// Page-table walk, reset, allocations
// ----------------------------------------------------------------------

#[test]
fn metrics_show_vmalloc_and_kmap() {
    run(|t| {
        t.alloc_ok(json!({"type":"vmalloc","size":3 * 4096}));
        let r = t.request("GET", "/metrics", None);
        assert_eq!(r.status, 200);
        let m = r.text();
        for line in [
            "pagezone_vmalloc_total_bytes 1073741824",
            "pagezone_vmalloc_pages 3",
            "pagezone_vmalloc_areas{kind=\"vmalloc\"} 1",
            "pagezone_vmalloc_areas{kind=\"ioremap\"} 0",
            "pagezone_pkmap_slots{state=\"used\"} 0",
            "pagezone_pkmap_slots{state=\"flush_pending\"} 0",
            "pagezone_pkmap_slots{state=\"free\"} 1024",
            "pagezone_kmap_atomic_slots_used 0",
            "pagezone_api_vm_handles 1",
        ] {
            assert!(m.lines().any(|l| l == line), "{line} in\n{m}");
        }
        t.ok("POST", "/api/reset", None);
    });
}

#[test]
fn pagetable_walks_and_bad_addresses() {
    run(|t| {
        // Lowmem: its direct-map address is mapped; HighMem's is not.
        let low = t.walk(PAGE_OFFSET + 0x20_0000);
        assert_eq!(
            (low["mapped"].clone(), low["region"].clone()),
            (json!(true), json!("direct map"))
        );
        assert_eq!(hex(&low["phys"]), 0x20_0000);
        let high = t.walk(PAGE_OFFSET + LOWMEM);
        assert_eq!(high["mapped"], false);
        assert_eq!(high["page_size"], Value::Null);
        assert_eq!(
            high["levels"].as_array().unwrap().last().unwrap()["entry"],
            "0x0"
        );
        let nc = t.walk(0x8000_0000_0000_0000);
        assert_eq!(
            nc,
            json!({"addr":"0x8000000000000000","canonical":false,"mapped":false,"phys":null,
            "page_size":null,"region":"non-canonical","area":null,"levels":[]})
        );
        assert_eq!(t.walk(0x10_0000)["region"], "kernel image");
        for q in [
            "",
            "?addr=",
            "?addr=123",
            "?addr=0xg",
            "?addr=0x11112222333344445",
            "?x=0x1",
        ] {
            let r = t.request("GET", &format!("/api/pagetable{q}"), None);
            assert_eq!(error(&r), (400, "EINVAL".into()), "{q}");
        }
    });
}

#[test]
fn reset_frees_every_kind_and_restores_boot_state() {
    run(|t| {
        let boot = t.buddyinfo();
        let boot_info = t.json("/api/vmallocinfo");
        let v = t.alloc_ok(json!({"type":"vmalloc","size":5000}));
        assert_eq!(
            (v["size"].clone(), v["nr_pages"].clone()),
            (json!(8192), json!(2))
        );
        t.alloc_ok(json!({"type":"ioremap","phys":format!("{MEM_LIMIT:#x}"),"size":4096}));
        let p = t.alloc_ok(json!({"type":"pages","order":2,"gfp":"GFP_HIGHUSER"}));
        t.ok("POST", "/api/kmap", Some(json!({"id":p["id"]})));
        let all = t.json("/api/allocations")["allocations"].clone();
        let kinds: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["vmalloc", "ioremap", "pages"], "by id");
        assert_eq!(t.ok("POST", "/api/reset", None), json!({"freed":3}));
        assert_eq!(t.json("/api/vmallocinfo"), boot_info);
        assert_eq!(
            t.json("/api/allocations"),
            json!({"total":0,"offset":0,"limit":1000,"allocations":[]})
        );
        assert_eq!(t.json("/api/kmap")["pkmap"]["entries"], json!([]));
        assert_eq!(t.mm.platform().nr_ptes(), 0);
        assert_eq!(t.buddyinfo(), boot);
        assert_eq!(t.api.quota().0, 0);
    });
}

// ----------------------------------------------------------------------
// POST /api/bench {"workload":"vmalloc"}
// ----------------------------------------------------------------------

#[test]
fn bench_vmalloc_maps_and_frees_every_time() {
    run_with(4 * MIB, |t| {
        let boot = t.buddyinfo();
        let boot_info = t.json("/api/vmallocinfo");
        for (body, size) in [
            (json!({"workload":"vmalloc","iterations":200}), 16384),
            (
                json!({"workload":"vmalloc","iterations":20,"size":5000}),
                5000,
            ),
            (
                json!({"workload":"vmalloc","iterations":3,"size":2 * MIB}),
                2 * MIB,
            ),
        ] {
            let j = t.ok("POST", "/api/bench", Some(body.clone()));
            assert_eq!(j["workload"], "vmalloc");
            assert_eq!(j["ops"], body["iterations"], "{j}");
            assert_eq!(j["size"], size, "{j}");
            // This system keeps the default clock (uptime_ms scaled): too
            // coarse for one operation, but the fields are all there.
            for k in [
                "ns_per_op",
                "p50_ns",
                "p99_ns",
                "min_ns",
                "max_ns",
                "total_ns",
            ] {
                assert!(j[k].is_u64(), "{k}: {j}");
            }
            assert!(j["p50_ns"].as_u64() <= j["p99_ns"].as_u64(), "{j}");
            assert_eq!(t.buddyinfo(), boot, "{body}");
            assert_eq!(t.json("/api/vmallocinfo"), boot_info, "{body}");
            assert_eq!(t.mm.platform().nr_ptes(), 0);
        }
        assert_eq!(
            t.json("/api/allocations"),
            json!({"total":0,"offset":0,"limit":1000,"allocations":[]})
        );

        // Bad sizes; the area is 4 MiB, so 4 MiB plus a guard cannot fit.
        for (body, status, code) in [
            (
                json!({"workload":"vmalloc","iterations":10,"size":0}),
                400,
                "EINVAL",
            ),
            (
                json!({"workload":"vmalloc","iterations":10,"order":1}),
                400,
                "EINVAL",
            ),
            (
                json!({"workload":"vmalloc","iterations":10,"size":4 * MIB}),
                507,
                "ENOMEM",
            ),
            // 100000 x 256 pages is over the per-run budget.
            (
                json!({"workload":"vmalloc","iterations":100_000,"size":MIB}),
                400,
                "EINVAL",
            ),
        ] {
            let r = t.post("/api/bench", body.clone());
            assert_eq!(
                error(&r),
                (status, code.to_string()),
                "{body}: {}",
                r.text()
            );
        }

        // A mapping failure in the 13th operation: 507, and what that
        // operation had mapped is unwound; the 12 before were freed.
        t.mm.platform().fail_maps_after(Some(50));
        let r = t.post("/api/bench", json!({"workload":"vmalloc","iterations":100}));
        assert_eq!(error(&r), (507, "ENOMEM".into()), "{}", r.text());
        t.mm.platform().fail_maps_after(None);
        assert_eq!(t.mm.platform().nr_ptes(), 0);
        assert_eq!(t.areas.lock().nr_areas(), 0);
        assert_eq!(t.buddyinfo(), boot);
    });
}

// ----------------------------------------------------------------------
// {"type":"dma"} on a system without coherent DMA
// ----------------------------------------------------------------------

/// This fake keeps `System`'s DMA defaults: the type is known, but the
/// system has no registry to take buffers from.
#[test]
fn dma_without_a_dma_system_is_400_not_available() {
    run(|t| {
        let boot = t.buddyinfo();
        let r = t.post("/api/alloc", json!({"type":"dma","size":4096}));
        assert_eq!(error(&r), (400, "EINVAL".to_string()));
        assert!(r.text().contains("not available"), "{}", r.text());
        // Size checks come first, as for every other type.
        let r = t.post("/api/alloc", json!({"type":"dma","size":0}));
        assert_eq!(error(&r), (400, "EINVAL".to_string()));
        assert!(r.text().contains("out of range"), "{}", r.text());
        assert_eq!(
            t.json("/api/allocations"),
            json!({"total":0,"offset":0,"limit":1000,"allocations":[]})
        );
        assert_eq!(t.buddyinfo(), boot);
        assert_eq!(t.api.quota().0, 0);
    });
}

/// `fill`/`checksum` with `offset`/`length` through a vmalloc mapping,
/// across a page boundary.
#[test]
fn vmalloc_fill_and_checksum_of_a_part() {
    run(|t| {
        let h = t.alloc_ok(json!({"type":"vmalloc","size":8192}));
        let id = h["id"].as_u64().unwrap();
        t.ok(
            "POST",
            &format!("/api/alloc/{id}/fill"),
            Some(json!({"byte":0})),
        );
        let r = t.ok(
            "POST",
            &format!("/api/alloc/{id}/fill"),
            Some(json!({"byte":7,"offset":4000,"length":200})),
        );
        assert_eq!(r, json!({"bytes":200,"offset":4000}));
        let part = t.ok(
            "GET",
            &format!("/api/alloc/{id}/checksum?offset=4000&length=200"),
            None,
        );
        let mut crc = mm::crc32::Crc32::new();
        crc.update(&[7u8; 200]);
        assert_eq!(hex(&part["crc32"]), u64::from(crc.finish()));
        let r = t.request(
            "GET",
            &format!("/api/alloc/{id}/checksum?offset=8193"),
            None,
        );
        assert_eq!(r.status, 400);
        t.request("POST", "/api/reset", None);
    });
}

// ---------------------------------------------------------------------------
// Lazy (demand-zero) vmalloc
// ---------------------------------------------------------------------------

/// Status and message of an error answer.
fn error_message(r: &HttpResponse) -> (u16, String) {
    let j: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{}", r.text()));
    (
        r.status,
        j["error"]["message"].as_str().unwrap().to_string(),
    )
}

fn vmstat(t: &mut T<'_>, name: &str) -> u64 {
    t.json("/api/vmstat")[name].as_u64().unwrap()
}

fn resident(t: &mut T<'_>, id: u64) -> u64 {
    t.json(&format!("/api/alloc/{id}"))["resident_pages"]
        .as_u64()
        .unwrap()
}

#[test]
fn lazy_vmalloc_reserves_address_space_and_faults_pages_in() {
    run(|t| {
        let boot = t.buddyinfo();
        let pgfault0 = vmstat(t, "pgfault");
        // 64 MiB of address space on a 120 MiB machine, far beyond the
        // API's quota: only frames count.
        let h = t.alloc_ok(json!({"type":"vmalloc","size":64 * MIB,"lazy":true}));
        assert_eq!(
            (h["lazy"].as_bool(), h["resident_pages"].as_u64()),
            (Some(true), Some(0))
        );
        assert_eq!(h["nr_pages"], 16384);
        assert_eq!(h["gfp"], "GFP_KERNEL|__GFP_HIGHMEM|__GFP_ZERO");
        let id = h["id"].as_u64().unwrap();
        let start = hex(&h["virt"]);
        assert_eq!(t.buddyinfo(), boot, "nothing allocated up front");
        assert_eq!(
            t.mm.platform()
                .ptes_in(VirtAddr(start), VirtAddr(start + 64 * MIB))
                .len(),
            0
        );

        // A read of 3 pages maps the zero page and allocates nothing.
        let r = t.request(
            "GET",
            &format!("/api/alloc/{id}/checksum?offset=0&length={}", 3 * PAGE_SIZE),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(hex(&v["crc32"]), crc32(&vec![0; 3 * PAGE_SIZE as usize]));
        assert_eq!(resident(t, id), 0);
        assert_eq!(vmstat(t, "pgfault") - pgfault0, 3);
        assert_eq!(t.buddyinfo(), boot);
        for i in 0..3 {
            let pte = t.mm.platform().pte(VirtAddr(start + i * PAGE_SIZE));
            assert_eq!(pte, Some((ZERO_PAGE, mm::platform::MapProt::KERNEL_RO)));
        }

        // Writing 5 pages (2 of them read before) gives each its own frame.
        let r = t.post(
            &format!("/api/alloc/{id}/fill"),
            json!({"byte":0xAB,"offset":PAGE_SIZE + 1,"length":5 * PAGE_SIZE - 2}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(resident(t, id), 5);
        assert_eq!(vmstat(t, "pgfault") - pgfault0, 3 + 5);
        let h = t.json(&format!("/api/alloc/{id}"));
        assert_eq!(h["zones"]["HighMem"], 5, "{h}");
        assert!(hex(&h["phys"]) == 0, "page 0 was only read: {h}");
        let info = t.text("/proc/meminfo");
        assert!(
            info.contains(&format!("VmallocUsed:    {:8} kB", 5 * 4)),
            "{info}"
        );
        // The bytes read back: page 0 zero, then 0xAB from byte 4097 on.
        let len = 8 * PAGE_SIZE;
        let r = t.request(
            "GET",
            &format!("/api/alloc/{id}/checksum?offset=0&length={len}"),
            None,
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let mut want = vec![0u8; len as usize];
        want[(PAGE_SIZE + 1) as usize..(6 * PAGE_SIZE - 1) as usize].fill(0xAB);
        assert_eq!(hex(&v["crc32"]), crc32(&want));
        assert_eq!(resident(t, id), 5, "reads never add frames");
        let sc = t.json("/api/selfcheck");
        assert_eq!(sc["ok"], true, "{sc}");

        let r = t.request("DELETE", &format!("/api/alloc/{id}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(t.buddyinfo(), boot, "vfree gave every faulted frame back");
    });
}

#[test]
fn lazy_vmalloc_at_exhaustion_answers_507_and_keeps_what_it_wrote() {
    run(|t| {
        let boot = t.buddyinfo();
        let h = t.alloc_ok(json!({"type":"vmalloc","size":200 * MIB,"lazy":true}));
        let id = h["id"].as_u64().unwrap();
        // More than the machine has: the fill faults until memory is gone,
        // then (no task to kill) answers 507 naming the address.
        let r = t.post(&format!("/api/alloc/{id}/fill"), json!({"byte":1}));
        let (status, message) = error_message(&r);
        assert_eq!(status, 507, "{message}");
        assert!(message.contains("page fault at 0x"), "{message}");
        assert!(message.contains("no killable task"), "{message}");
        let written = resident(t, id);
        assert!(
            written > 10_000,
            "{written} pages written before memory ran out"
        );
        let sc = t.json("/api/selfcheck");
        assert_eq!(sc["ok"], true, "{sc}");
        let r = t.post("/api/reset", json!({}));
        assert_eq!(r.status, 200);
        assert_eq!(t.buddyinfo(), boot);
    });
}

#[test]
fn lazy_applies_to_vmalloc_only() {
    run(|t| {
        for body in [
            json!({"type":"pages","order":0,"lazy":true}),
            json!({"type":"kmalloc","size":64,"lazy":false}),
        ] {
            let r = t.post("/api/alloc", body.clone());
            let (status, message) = error_message(&r);
            assert_eq!(status, 400, "{body}: {message}");
            assert!(
                message.contains("\"lazy\" applies to \"vmalloc\" only"),
                "{message}"
            );
        }
        let h = t.alloc_ok(json!({"type":"vmalloc","size":8192,"lazy":false}));
        assert!(
            h.get("lazy").is_none() && h.get("resident_pages").is_none(),
            "{h}"
        );
    });
}
