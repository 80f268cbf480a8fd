//! vmalloc + vfree of 16 KiB on the host harness (simulated platform), the
//! pair Linux's `lib/test_vmalloc.c` times at about 0.95 µs.
//!
//! `cargo bench -p mm --features sim --bench vmalloc`
//!
//! What it measures: the vmap-area first fit and merge, four order-0
//! allocations from the buddy allocator (`GFP_KERNEL | __GFP_HIGHMEM`), four
//! PTE installs and removals and one TLB-range flush. The simulated page
//! table is a `BTreeMap` behind a `std::sync::Mutex` and the "flush" scans
//! a set, so the mapping half costs more here than `set_pte_at` + `invlpg`
//! would on hardware; the area and frame bookkeeping is the real code. A
//! second figure swaps in a flat array of PTEs (a store per map, a swap per
//! unmap, a no-op flush) to show the cost of `mm` itself.
//!
//! `PZ_BENCH_COUNT=<sim|flat>,<n>` runs exactly `n` pairs on one page table
//! (after the same set-up and warm-up) and exits, for instruction counts:
//! under callgrind with two `n`, the difference over Δn is one pair.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use mm::layout::VMALLOC_START;
use mm::manager::MemoryManager;
use mm::memblock::Memblock;
use mm::page::Page;
use mm::page_alloc::PageAlloc;
use mm::platform::sim::SimPlatform;
use mm::platform::{MapError, MapProt, PageMapper, Platform};
use mm::types::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use mm::vmalloc::{VmapAreaAllocator, vfree, vmalloc};
use mm::zone::ZoneLayout;

const RAM: u64 = 64 << 20;
const SIZE: u64 = 16 << 10;
const ITERS: u32 = 200_000;

/// One level of PTEs over the first `len` pages of the vmalloc area: what
/// the hardware walk costs once the tables exist.
struct ArrayPtes {
    ptes: Vec<AtomicU64>,
}

impl ArrayPtes {
    fn slot(&self, virt: VirtAddr) -> Option<&AtomicU64> {
        self.ptes
            .get((virt.0.checked_sub(VMALLOC_START)? / PAGE_SIZE) as usize)
    }
}

impl PageMapper for ArrayPtes {
    fn map_page(&self, virt: VirtAddr, pfn: Pfn, _prot: MapProt) -> Result<(), MapError> {
        let pte = self.slot(virt).ok_or(MapError::BadAddress { virt })?;
        pte.compare_exchange(0, (pfn.0 << 12) | 1, Ordering::Relaxed, Ordering::Relaxed)
            .map(|_| ())
            .map_err(|old| MapError::AlreadyMapped {
                virt,
                pfn: Pfn(old >> 12),
            })
    }

    fn unmap_page(&self, virt: VirtAddr) -> Option<Pfn> {
        let old = self.slot(virt)?.swap(0, Ordering::Relaxed);
        (old & 1 != 0).then_some(Pfn(old >> 12))
    }

    fn flush_tlb_range(&self, _start: VirtAddr, _end: VirtAddr) {}

    fn translate(&self, virt: VirtAddr) -> Option<Pfn> {
        let pte = self.slot(virt)?.load(Ordering::Relaxed);
        (pte & 1 != 0).then_some(Pfn(pte >> 12))
    }
}

/// ns per vmalloc+vfree pair, best of 5 runs of `ITERS`, with 16 other
/// areas live; with `count`, just that many pairs (and 0.0).
fn time_pairs<P: Platform>(
    mm: &MemoryManager<'_, P>,
    mapper: &impl PageMapper,
    count: Option<u32>,
) -> f64 {
    let mut areas = Box::new(VmapAreaAllocator::new(VirtAddr(VMALLOC_START), 1 << 30));
    let keep: Vec<_> = (0..16)
        .map(|_| vmalloc(&mut *areas, mm, mapper, SIZE, "bench_keep").unwrap())
        .collect();
    let mut pair = || {
        let area = vmalloc(&mut *areas, mm, mapper, black_box(SIZE), "bench").unwrap();
        vfree(&mut *areas, mm, mapper, black_box(area.start)).unwrap();
    };
    for _ in 0..ITERS / 10 {
        pair();
    }
    let mut best = f64::MAX;
    if let Some(n) = count {
        for _ in 0..n {
            pair();
        }
        best = 0.0;
    }
    for _ in 0..if count.is_some() { 0 } else { 5 } {
        let t = Instant::now();
        for _ in 0..ITERS {
            pair();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(ITERS));
    }
    for k in keep {
        vfree(&mut *areas, mm, mapper, k.start).unwrap();
    }
    best
}

fn main() {
    let mut mem_map = vec![Page::new_reserved(); (RAM >> 12) as usize];
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), RAM).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    let mut pa = PageAlloc::new(&mut mem_map, ZoneLayout::from_bytes(32 << 20, RAM)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    let mm = MemoryManager::new(pa, SimPlatform::new(RAM >> 12));
    let array = ArrayPtes {
        ptes: (0..4096).map(|_| AtomicU64::new(0)).collect(),
    };

    if let Ok(spec) = std::env::var("PZ_BENCH_COUNT") {
        let (table, n) = spec.split_once(',').expect("PZ_BENCH_COUNT=<sim|flat>,<n>");
        let n = n.parse().expect("PZ_BENCH_COUNT: n is a number");
        match table {
            "sim" => time_pairs(&mm, mm.platform(), Some(n)),
            "flat" => time_pairs(&mm, &array, Some(n)),
            other => panic!("PZ_BENCH_COUNT: no page table {other:?} (sim or flat)"),
        };
        return;
    }
    let sim = time_pairs(&mm, mm.platform(), None);
    let flat = time_pairs(&mm, &array, None);
    // The same markdown table shape as the rest of `make bench`.
    println!();
    println!(
        "vmalloc layer: vmalloc+vfree 16 KiB, ns per pair (best of 5 runs of {ITERS}, 16 other areas live)"
    );
    println!();
    println!("| page table | ns per pair |");
    println!("|:--|--:|");
    println!("| SimPlatform (BTreeMap behind a Mutex) | {sim:.0} |");
    println!("| flat PTE array (the cost of mm itself) | {flat:.0} |");
    println!("| Linux lib/test_vmalloc.c, for scale | ~950 |");
    // Every frame came back (the per-CPU lists drained into the buddy lists).
    assert_eq!(mm.drained_buddyinfo(), mm.boot_buddyinfo());
}
