//! Host tests of the vmap-area allocator (after Linux's `lib/test_vmalloc.c`)
//! and of vmalloc/vmap/ioremap on the simulated machine: 64 MiB with
//! DMA [0,16M), DMA32 [16M,32M), HighMem [32M,64M), and [56M,58M) held back
//! as reserved RAM for ioremap.

use crate::test_rng::Rng;
use std::boxed::Box;
use std::string::String;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::layout::VMALLOC_START;
use crate::memblock::Memblock;
use crate::page::Page;
use crate::page_alloc::PageAlloc;
use crate::platform::CacheMode;
use crate::platform::sim::SimPlatform;
use crate::types::Order;
use crate::zone::{ZoneLayout, ZoneType};

pub(crate) const RAM: u64 = 64 << 20;
pub(crate) const LOWMEM: u64 = 32 << 20;
pub(crate) const RESERVED_BASE: u64 = 56 << 20;
const RESERVED_SIZE: u64 = 2 << 20;
const VMALLOC_SIZE: u64 = 1 << 30;

pub(crate) fn mem_map() -> Vec<Page> {
    vec![Page::new_reserved(); (RAM >> 12) as usize]
}

pub(crate) fn machine(mem_map: &mut [Page]) -> MemoryManager<'_, SimPlatform> {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), RAM).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    mb.reserve(PhysAddr(RESERVED_BASE), RESERVED_SIZE, "mem_limit")
        .unwrap();
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(LOWMEM, RAM)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    MemoryManager::new(pa, SimPlatform::new(RAM >> 12))
}

pub(crate) fn areas() -> Box<VmapAreaAllocator> {
    Box::new(VmapAreaAllocator::new(
        VirtAddr(VMALLOC_START),
        VMALLOC_SIZE,
    ))
}

/// Everything freed: one free range spanning the whole area.
fn assert_pristine<const N: usize, const F: usize>(a: &VmapAreaAllocator<N, F>) {
    a.check_invariants().unwrap();
    let (start, end) = a.range();
    assert_eq!(a.free_ranges().collect::<Vec<_>>(), vec![(start, end)]);
    assert_eq!(a.nr_areas(), 0);
    assert_eq!(a.stats().largest_free_bytes, end.0 - start.0);
}

const P: u64 = PAGE_SIZE;

// ---------------------------------------------------------------------------
// lib/test_vmalloc.c cases, on the area allocator
// ---------------------------------------------------------------------------

#[test]
fn fix_size_alloc_test() {
    let mut a = areas();
    for _ in 0..10_000 {
        let area = a
            .alloc(3 * P, 1, VmapKind::Vmalloc, "fix_size_alloc_test")
            .unwrap();
        // First fit with everything freed: always the bottom of the area.
        assert_eq!(area.start, VirtAddr(VMALLOC_START));
        assert_eq!(
            (area.size, area.nr_pages, area.reserved_size()),
            (3 * P, 3, 4 * P)
        );
        a.free(area.start).unwrap();
    }
    assert_pristine(&a);
}

#[test]
fn full_fit_alloc_test() {
    let mut a = areas();
    let junk_length = 2000;
    let mut keep = Vec::new();
    let mut junk = Vec::new();
    for _ in 0..junk_length {
        keep.push(a.alloc(P, 1, VmapKind::Vmalloc, "ptr").unwrap().start);
        junk.push(a.alloc(P, 1, VmapKind::Vmalloc, "junk_ptr").unwrap().start);
    }
    for &j in &junk {
        a.free(j).unwrap();
    }
    a.check_invariants().unwrap();
    // Every hole is exactly one page + guard; the last one merged with the tail.
    assert_eq!(a.stats().nr_free_ranges, junk_length);
    for _ in 0..10_000 {
        let tmp = a.alloc(P, 1, VmapKind::Vmalloc, "full_fit").unwrap();
        // FL_FIT_TYPE: the lowest hole, consumed whole.
        assert_eq!(tmp.start, junk[0]);
        assert_eq!(a.stats().nr_free_ranges, junk_length - 1);
        a.free(tmp.start).unwrap();
    }
    for &k in &keep {
        a.free(k).unwrap();
    }
    assert_pristine(&a);
}

#[test]
fn long_busy_list_alloc_test() {
    let mut a = areas();
    let busy: Vec<_> = (0..4000)
        .map(|_| a.alloc(P, 1, VmapKind::Vmalloc, "busy").unwrap())
        .collect();
    for _ in 0..2000 {
        let tmp = a.alloc(P, 1, VmapKind::Vmalloc, "long_busy").unwrap();
        assert_eq!(tmp.start.0, VMALLOC_START + 4000 * 2 * P);
        assert_eq!(
            a.find(VirtAddr(tmp.start.0 + 7)).map(|x| x.start),
            Some(tmp.start)
        );
        a.free(tmp.start).unwrap();
    }
    // Lookup by address across the long list: start, middle, guard page.
    for b in &busy {
        assert_eq!(a.find(b.start), Some(b));
        assert_eq!(a.find(VirtAddr(b.start.0 + P - 1)), Some(b));
        assert_eq!(a.find(b.guard_page()), Some(b));
    }
    assert_eq!(a.find(VirtAddr(VMALLOC_START - 1)), None);
    assert_eq!(a.find(VirtAddr(VMALLOC_START + 4000 * 2 * P)), None);
    for b in busy.iter().rev() {
        a.free(b.start).unwrap();
    }
    assert_pristine(&a);
}

#[test]
fn random_size_alloc_test() {
    let mut a = areas();
    let mut rng = Rng(0x5eed_1234_abcd);
    for _ in 0..10_000 {
        let n = rng.next() % 100 + 1;
        let area = a.alloc(n * P, 1, VmapKind::Vmalloc, "random_size").unwrap();
        assert_eq!(area.size, n * P);
        a.free(area.start).unwrap();
    }
    assert_pristine(&a);
}

#[test]
fn fix_align_alloc_test() {
    // THREAD_ALIGN << 1 on x86_64 = 32 KiB.
    let mut a = areas();
    let mut live = Vec::new();
    for i in 0..1000 {
        let area = a
            .alloc(5 * P, 32 << 10, VmapKind::Vmalloc, "fix_align")
            .unwrap();
        assert_eq!(area.start.0 % (32 << 10), 0);
        // Keep every other one so later ones must skip unaligned holes.
        if i % 2 == 0 {
            live.push(area.start);
        } else {
            a.free(area.start).unwrap();
        }
    }
    a.check_invariants().unwrap();
    for s in live {
        a.free(s).unwrap();
    }
    assert_pristine(&a);
}

#[test]
fn random_size_align_alloc_test() {
    let mut a = areas();
    let mut rng = Rng(0xdead_beef_f00d);
    let mut live = Vec::new();
    for _ in 0..2000 {
        let rnd = rng.next() & 0xff;
        let align = 1u64 << (rnd % 23);
        let size = (rnd % 10 + 1) * P;
        let area = a
            .alloc(size, align, VmapKind::Vmalloc, "random_size_align")
            .unwrap();
        assert_eq!(area.start.0 % align.max(P), 0);
        assert_eq!(area.size, size);
        live.push(area.start);
        if rng.next().is_multiple_of(3) {
            let victim = live.swap_remove((rng.next() as usize) % live.len());
            a.free(victim).unwrap();
        }
    }
    a.check_invariants().unwrap();
    for s in live {
        a.free(s).unwrap();
    }
    assert_pristine(&a);
}

/// Expected to fail, as in Linux: alignments beyond what the area can hold.
#[test]
fn align_shift_alloc_test() {
    let mut a = areas();
    // VMALLOC_START = 0xffff_c900_0000_0000 is aligned to 2^40 exactly.
    let start_align = VMALLOC_START.trailing_zeros();
    assert_eq!(start_align, 40);
    let mut failed = 0;
    for i in 0..64 {
        let align = 1u64 << i;
        match a.alloc(P, align, VmapKind::Vmalloc, "align_shift") {
            Ok(area) => {
                assert!(i <= start_align, "align 2^{i} cannot fit");
                assert_eq!(area.start, VirtAddr(VMALLOC_START));
                a.free(area.start).unwrap();
            }
            Err(e) => {
                assert!(i > start_align);
                assert_eq!(e, VmallocError::NoSpace { size: P, align });
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 64 - 41, "the test fails as it should");
    assert_eq!(
        a.alloc(P, 3 * P, VmapKind::Vmalloc, "x"),
        Err(VmallocError::BadAlign { align: 3 * P })
    );
    assert_eq!(
        a.alloc(P, 0, VmapKind::Vmalloc, "x"),
        Err(VmallocError::BadAlign { align: 0 })
    );
    assert_pristine(&a);
}

#[test]
fn bad_sizes_and_exhaustion() {
    let mut a = areas();
    assert_eq!(
        a.alloc(0, 1, VmapKind::Vmalloc, "x"),
        Err(VmallocError::BadSize { size: 0 })
    );
    assert_eq!(
        a.alloc(u64::MAX, 1, VmapKind::Vmalloc, "x"),
        Err(VmallocError::BadSize { size: u64::MAX })
    );
    // The whole area minus the guard fits exactly once.
    let all = a
        .alloc(VMALLOC_SIZE - P, 1, VmapKind::Vmalloc, "all")
        .unwrap();
    assert_eq!(a.stats().nr_free_ranges, 0);
    assert_eq!(
        a.alloc(P, 1, VmapKind::Vmalloc, "x"),
        Err(VmallocError::NoSpace { size: P, align: P })
    );
    a.free(all.start).unwrap();
    assert_eq!(
        a.alloc(VMALLOC_SIZE, 1, VmapKind::Vmalloc, "x"),
        Err(VmallocError::NoSpace {
            size: VMALLOC_SIZE,
            align: P
        })
    );
    // Sub-page sizes round up to a page.
    assert_eq!(a.alloc(1, 1, VmapKind::Vmalloc, "x").unwrap().size, P);
}

#[test]
fn capacity_is_enforced_and_recovers() {
    let mut a = Box::new(VmapAreaAllocator::<8, 9>::with_capacity(
        VirtAddr(VMALLOC_START),
        1 << 20,
    ));
    let mut v: Vec<_> = (0..8)
        .map(|_| a.alloc(P, 1, VmapKind::Vmalloc, "x").unwrap().start)
        .collect();
    assert_eq!(
        a.alloc(P, 1, VmapKind::Vmalloc, "x"),
        Err(VmallocError::TooManyAreas { max: 8 })
    );
    // Free every other one: 4 busy, 5 free ranges; NE splits still fit in F.
    for s in v.iter().step_by(2) {
        a.free(*s).unwrap();
    }
    v = v.into_iter().skip(1).step_by(2).collect();
    for _ in 0..4 {
        v.push(a.alloc(P, 1, VmapKind::Vmalloc, "x").unwrap().start);
        a.check_invariants().unwrap();
    }
    for s in v {
        a.free(s).unwrap();
    }
    assert_pristine(&*a);
}

#[test]
fn free_requires_an_area_start_and_merges_in_any_order() {
    let mut a = areas();
    let v: Vec<_> = (1..=6)
        .map(|n| a.alloc(n * P, 1, VmapKind::Vmalloc, "x").unwrap())
        .collect();
    assert_eq!(
        a.free(VirtAddr(v[2].start.0 + P)),
        Err(VmallocError::NotAreaStart {
            addr: VirtAddr(v[2].start.0 + P),
            area: Some(v[2].start)
        })
    );
    assert_eq!(
        a.free(VirtAddr(VMALLOC_START + VMALLOC_SIZE - P)),
        Err(VmallocError::NotAreaStart {
            addr: VirtAddr(VMALLOC_START + VMALLOC_SIZE - P),
            area: None
        })
    );
    // Free 1, 3, 5 (holes), then 4 (merges with 3's and 5's holes: LE+RE),
    // then 0, 2.
    for i in [1, 3, 5, 4, 0, 2] {
        assert_eq!(a.free(v[i].start), Ok(v[i]));
        a.check_invariants().unwrap();
        assert_eq!(
            a.free(v[i].start).unwrap_err(),
            VmallocError::NotAreaStart {
                addr: v[i].start,
                area: None
            }
        );
    }
    assert_pristine(&a);
}

#[test]
fn stats_and_iteration_follow_the_areas() {
    let mut a = areas();
    let x = a.alloc(4 * P, 1, VmapKind::Vmalloc, "x").unwrap();
    let y = a.alloc(2 * P, 1, VmapKind::Ioremap, "y").unwrap();
    let z = a.alloc(P, 1, VmapKind::Vmap, "z").unwrap();
    a.free(y.start).unwrap();
    let s = a.stats();
    assert_eq!(s.total_bytes, VMALLOC_SIZE);
    assert_eq!(s.used_bytes, 5 * P);
    assert_eq!(s.reserved_bytes, 7 * P);
    // VmallocUsed counts frames: an area reserved with `alloc` alone (as
    // `vmalloc` does before it maps anything) has none yet.
    assert_eq!(s.vmalloc_pages, 0);
    assert_eq!(s.nr_areas, 2);
    assert_eq!(s.largest_free_bytes, VMALLOC_SIZE - 5 * P - 3 * P - 2 * P);
    assert_eq!(
        a.iter().map(|v| v.start).collect::<Vec<_>>(),
        vec![x.start, z.start]
    );
    assert_eq!(a.free_ranges().count(), 2);
    assert!(a.is_vmalloc_addr(VirtAddr(VMALLOC_START)));
    assert!(!a.is_vmalloc_addr(VirtAddr(VMALLOC_START + VMALLOC_SIZE)));
}

#[test]
fn new_shrinks_to_whole_pages() {
    let a = VmapAreaAllocator::<4, 5>::with_capacity(VirtAddr(VMALLOC_START + 1), 3 * P);
    assert_eq!(
        a.range(),
        (VirtAddr(VMALLOC_START + P), VirtAddr(VMALLOC_START + 3 * P))
    );
    let empty = VmapAreaAllocator::<4, 5>::with_capacity(VirtAddr(u64::MAX - 10), 100);
    assert_eq!(empty.stats().total_bytes, 0);
    assert_eq!(empty.free_ranges().count(), 0);
    empty.check_invariants().unwrap();
}

// ---------------------------------------------------------------------------
// vmalloc / vfree on the simulated machine
// ---------------------------------------------------------------------------

/// Frames of `area` in page order, read from the simulated page table.
fn frames_of(sim: &SimPlatform, area: &VmapArea) -> Vec<Pfn> {
    (0..area.nr_pages)
        .map(|i| sim.translate(VirtAddr(area.start.0 + i * P)).unwrap())
        .collect()
}

fn lowmem_pfn() -> Pfn {
    Pfn(LOWMEM >> 12)
}

#[test]
fn vmalloc_1mib_maps_256_scattered_highmem_frames_and_vfree_restores_buddyinfo() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    // Fragment HighMem: take all of it in single pages, give back every
    // other one.
    let mut taken = Vec::new();
    loop {
        let pfn = mm
            .alloc_pages(GfpFlags::GFP_HIGHUSER, Order::ZERO, OwnerTag::API)
            .unwrap();
        if pfn < lowmem_pfn() {
            mm.free_pages(pfn, Order::ZERO).unwrap();
            break;
        }
        taken.push(pfn);
    }
    taken.sort();
    for pfn in taken.iter().step_by(2) {
        mm.free_pages(*pfn, Order::ZERO).unwrap();
    }
    let before = mm.drained_buddyinfo();
    let flushes = sim.tlb_flushes();

    let area = vmalloc(&mut *a, &mm, sim, 1 << 20, "test_vmalloc_1m").unwrap();
    assert_eq!(area.kind, VmapKind::Vmalloc);
    assert_eq!((area.size, area.nr_pages), (1 << 20, 256));
    assert!(a.is_vmalloc_addr(area.start));
    let ptes = sim.ptes_in(area.start, area.reserved_end());
    assert_eq!(ptes.len(), 256, "256 PTEs, none on the guard page");
    assert!(sim.pte(area.guard_page()).is_none());
    assert!(ptes.iter().all(|&(_, _, prot)| prot == MapProt::KERNEL));
    let frames = frames_of(sim, &area);
    assert_eq!(area.phys, frames[0].phys());
    {
        let pages = mm.lock();
        for &f in &frames {
            assert_eq!(pages.zone_of(f), Some(ZoneType::HighMem));
            let page = pages.page(f).unwrap();
            assert!(page.is_head() && page.is_highmem());
            assert_eq!(page.owner, OwnerTag::VMALLOC);
        }
    }
    assert!(
        frames.windows(2).all(|w| w[1].0 != w[0].0 + 1),
        "no two neighbours physically contiguous"
    );
    let mut distinct = frames.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 256);

    let freed = vfree(&mut *a, &mm, sim, area.start).unwrap();
    assert_eq!(freed.start, area.start);
    assert_eq!(
        mm.drained_buddyinfo(),
        before,
        "vfree restores buddyinfo exactly"
    );
    assert_eq!(sim.ptes_in(area.start, area.reserved_end()).len(), 0);
    assert_eq!(sim.unflushed(), 0, "every unmapped page was flushed");
    assert_eq!(sim.tlb_flushes() - flushes, 256 / TEARDOWN_BATCH as u64);
    assert_eq!(sim.stale_remaps(), 0);
    assert_pristine(&*a);
    mm.lock().check_invariants().unwrap();
}

#[test]
fn vmalloc_prefers_highmem_and_falls_back_to_lower_zones() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    let boot = mm.drained_buddyinfo();
    // HighMem managed = 32 MiB - the 2 MiB reserved; ask for all of it and more.
    let area = vmalloc(&mut *a, &mm, sim, 40 << 20, "big").unwrap();
    let frames = frames_of(sim, &area);
    let pages = mm.lock();
    let high = frames
        .iter()
        .filter(|&&f| pages.zone_of(f) == Some(ZoneType::HighMem))
        .count();
    assert!(
        high > 0 && high < frames.len(),
        "HighMem first ({high}), then lower zones"
    );
    // HighMem was taken before any lowmem frame.
    let first_low = frames.iter().position(|&f| f < lowmem_pfn()).unwrap();
    assert!(frames[..first_low].iter().all(|&f| f >= lowmem_pfn()));
    assert!(frames[first_low..].iter().all(|&f| f < lowmem_pfn()));
    drop(pages);
    vfree(&mut *a, &mm, sim, area.start).unwrap();
    assert_eq!(mm.drained_buddyinfo(), boot);
}

#[test]
fn vzalloc_zeroes_and_vmalloc_does_not() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    let dirty = vmalloc(&mut *a, &mm, sim, 3 * P, "dirty").unwrap();
    let clean = vzalloc(&mut *a, &mm, sim, 5 * P + 1, "clean").unwrap();
    assert_eq!(clean.nr_pages, 6);
    assert_eq!(
        clean.start,
        dirty.reserved_end(),
        "first fit: right after the guard"
    );
    for f in frames_of(sim, &dirty) {
        assert!(sim.frame(f).iter().all(|&b| b == 0xCC));
    }
    for f in frames_of(sim, &clean) {
        assert!(f >= lowmem_pfn());
        assert!(sim.frame(f).iter().all(|&b| b == 0));
    }
    vfree(&mut *a, &mm, sim, clean.start).unwrap();
    vfree(&mut *a, &mm, sim, dirty.start).unwrap();
    assert_eq!(mm.drained_buddyinfo(), mm.boot_buddyinfo());
    assert_eq!(sim.nr_ptes(), 0);
}

#[test]
fn vmalloc_out_of_memory_unwinds_everything() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    let boot = mm.drained_buddyinfo();
    let err = vmalloc(&mut *a, &mm, sim, RAM, "too_big").unwrap_err();
    let VmallocError::NoMemory { nr_pages_done, .. } = err else {
        panic!("{err:?}")
    };
    assert!(
        nr_pages_done > 10_000,
        "failed late, after {nr_pages_done} pages"
    );
    assert_eq!(mm.drained_buddyinfo(), boot);
    assert_eq!(sim.nr_ptes(), 0);
    assert_eq!(sim.unflushed(), 0);
    assert_pristine(&*a);
    mm.lock().check_invariants().unwrap();
    // The machine still works.
    let ok = vmalloc(&mut *a, &mm, sim, 1 << 20, "after").unwrap();
    vfree(&mut *a, &mm, sim, ok.start).unwrap();
}

#[test]
fn vmalloc_map_failure_unwinds_everything() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    let boot = mm.drained_buddyinfo();
    sim.fail_maps_after(Some(10));
    let err = vmalloc(&mut *a, &mm, sim, 16 * P, "map_fails").unwrap_err();
    assert_eq!(
        err,
        VmallocError::Map(MapError::NoMemory {
            virt: VirtAddr(VMALLOC_START + 10 * P)
        })
    );
    sim.fail_maps_after(None);
    assert_eq!(mm.drained_buddyinfo(), boot);
    assert_eq!(sim.nr_ptes(), 0);
    assert_eq!(sim.unflushed(), 0);
    assert_pristine(&*a);
}

#[test]
fn vfree_refuses_what_is_not_a_vmalloc_area_start() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    let area = vmalloc(&mut *a, &mm, sim, 4 * P, "x").unwrap();
    let inside = VirtAddr(area.start.0 + P);
    assert_eq!(
        vfree(&mut *a, &mm, sim, inside),
        Err(VmallocError::NotAreaStart {
            addr: inside,
            area: Some(area.start)
        })
    );
    assert_eq!(
        vfree(&mut *a, &mm, sim, area.guard_page()),
        Err(VmallocError::NotAreaStart {
            addr: area.guard_page(),
            area: Some(area.start)
        })
    );
    let nowhere = VirtAddr(VMALLOC_START + (1 << 29));
    assert_eq!(
        vfree(&mut *a, &mm, sim, nowhere),
        Err(VmallocError::NotAreaStart {
            addr: nowhere,
            area: None
        })
    );
    let pfn = mm
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
        .unwrap();
    let v = vmap(&mut *a, sim, &[pfn], MapProt::KERNEL, "vmap").unwrap();
    assert_eq!(
        vfree(&mut *a, &mm, sim, v.start),
        Err(VmallocError::WrongKind {
            addr: v.start,
            kind: VmapKind::Vmap,
            expected: VmapKind::Vmalloc
        })
    );
    assert_eq!(
        vunmap(&mut *a, sim, area.start),
        Err(VmallocError::WrongKind {
            addr: area.start,
            kind: VmapKind::Vmalloc,
            expected: VmapKind::Vmap
        })
    );
    // Nothing changed by the refusals.
    assert_eq!(sim.ptes_in(area.start, area.end()).len(), 4);
    assert_eq!(a.nr_areas(), 2);
    vunmap(&mut *a, sim, v.start).unwrap();
    vfree(&mut *a, &mm, sim, area.start).unwrap();
    mm.free_pages(pfn, Order::ZERO).unwrap();
    assert_eq!(mm.drained_buddyinfo(), mm.boot_buddyinfo());
    assert_pristine(&*a);
}

#[test]
fn vfree_reports_a_missing_pte_but_still_frees() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    let area = vmalloc(&mut *a, &mm, sim, 2 * P, "x").unwrap();
    let lost = sim.unmap_page(area.start).unwrap();
    assert_eq!(
        vfree(&mut *a, &mm, sim, area.start),
        Err(VmallocError::NotMapped { virt: area.start })
    );
    assert_pristine(&*a);
    mm.free_pages(lost, Order::ZERO).unwrap();
    assert_eq!(mm.drained_buddyinfo(), mm.boot_buddyinfo());
}

#[test]
fn guard_pages_are_never_mapped() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    let mut rng = Rng(42);
    let mut live: Vec<VmapArea> = Vec::new();
    for _ in 0..300 {
        if live.is_empty() || !rng.next().is_multiple_of(3) {
            let n = rng.next() % 8 + 1;
            live.push(vmalloc(&mut *a, &mm, sim, n * P, "guard").unwrap());
        } else {
            let v = live.swap_remove((rng.next() as usize) % live.len());
            vfree(&mut *a, &mm, sim, v.start).unwrap();
        }
        for v in &live {
            assert!(sim.pte(v.guard_page()).is_none());
        }
        let total: u64 = live.iter().map(|v| v.nr_pages).sum();
        assert_eq!(sim.nr_ptes() as u64, total);
    }
    for v in live {
        vfree(&mut *a, &mm, sim, v.start).unwrap();
    }
    assert_eq!(sim.stale_remaps(), 0);
    assert_eq!(mm.drained_buddyinfo(), mm.boot_buddyinfo());
    assert_pristine(&*a);
}

#[test]
fn fix_size_vmalloc_vfree_loop_on_the_machine() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    for _ in 0..500 {
        let v = vmalloc(&mut *a, &mm, sim, 3 * P, "fix_size_alloc_test").unwrap();
        assert_eq!(v.start, VirtAddr(VMALLOC_START));
        vfree(&mut *a, &mm, sim, v.start).unwrap();
    }
    assert_eq!(mm.drained_buddyinfo(), mm.boot_buddyinfo());
    assert_eq!(sim.stale_remaps(), 0);
}

// ---------------------------------------------------------------------------
// vmap / vunmap
// ---------------------------------------------------------------------------

#[test]
fn vmap_maps_given_frames_and_vunmap_leaves_them() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    let pfns: Vec<Pfn> = [
        GfpFlags::GFP_HIGHUSER,
        GfpFlags::GFP_DMA,
        GfpFlags::GFP_KERNEL,
    ]
    .iter()
    .map(|&g| mm.alloc_pages(g, Order::ZERO, OwnerTag::API).unwrap())
    .collect();
    let v = vmap(&mut *a, sim, &pfns, MapProt::KERNEL_RO, "vmap_test").unwrap();
    assert_eq!(
        (v.kind, v.nr_pages, v.phys),
        (VmapKind::Vmap, 3, pfns[0].phys())
    );
    assert_eq!(frames_of(sim, &v), pfns);
    assert_eq!(sim.pte(v.start).unwrap().1, MapProt::KERNEL_RO);
    assert!(sim.pte(v.guard_page()).is_none());
    vunmap(&mut *a, sim, v.start).unwrap();
    assert_eq!(sim.nr_ptes(), 0);
    assert_eq!(sim.unflushed(), 0);
    // Still the caller's: freeing them works exactly once.
    for &p in &pfns {
        mm.free_pages(p, Order::ZERO).unwrap();
    }
    assert_eq!(mm.drained_buddyinfo(), mm.boot_buddyinfo());
    assert_eq!(
        vmap(&mut *a, sim, &[], MapProt::KERNEL, "empty"),
        Err(VmallocError::BadSize { size: 0 })
    );
    // A map failure in the middle unwinds.
    sim.fail_maps_after(Some(1));
    assert!(matches!(
        vmap(&mut *a, sim, &pfns, MapProt::KERNEL, "x"),
        Err(VmallocError::Map(_))
    ));
    sim.fail_maps_after(None);
    assert_eq!(sim.nr_ptes(), 0);
    assert_pristine(&*a);
}

// ---------------------------------------------------------------------------
// ioremap / iounmap
// ---------------------------------------------------------------------------

#[test]
fn ioremap_of_reserved_ram_maps_it_uncached() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    let virt = ioremap(
        &mut *a,
        &mm,
        sim,
        PhysAddr(RESERVED_BASE),
        RESERVED_SIZE,
        "mem_tail",
    )
    .unwrap();
    let area = *a.find(virt).unwrap();
    assert_eq!(area.start, virt);
    assert_eq!(
        (area.kind, area.nr_pages, area.phys),
        (VmapKind::Ioremap, 512, PhysAddr(RESERVED_BASE))
    );
    // 2 MiB → aligned to 2^IOREMAP_MAX_ORDER (512 KiB).
    assert_eq!(virt.0 % (1 << IOREMAP_MAX_ORDER), 0);
    let ptes = sim.ptes_in(area.start, area.reserved_end());
    assert_eq!(ptes.len(), 512);
    for (i, &(v, pfn, prot)) in ptes.iter().enumerate() {
        assert_eq!(v.0, virt.0 + i as u64 * P);
        assert_eq!(pfn, Pfn((RESERVED_BASE >> 12) + i as u64));
        assert_eq!(prot.cache, CacheMode::Uncached);
        assert!(prot.writable && !prot.executable);
    }
    iounmap(&mut *a, sim, virt).unwrap();
    assert_eq!(sim.nr_ptes(), 0);
    assert_eq!(sim.unflushed(), 0);
    assert_pristine(&*a);
    assert_eq!(
        mm.drained_buddyinfo(),
        mm.boot_buddyinfo(),
        "ioremap touches no frame"
    );
}

#[test]
fn ioremap_widens_to_pages_and_returns_the_offset() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    // A LAPIC-like MMIO register block beyond RAM, straddling a page boundary.
    let phys = PhysAddr(0xfee0_0ff0);
    let virt = ioremap(&mut *a, &mm, sim, phys, 0x20, "lapic").unwrap();
    assert_eq!(virt.0 & 0xfff, 0xff0);
    let area = *a.find(virt).unwrap();
    assert_eq!((area.nr_pages, area.phys), (2, PhysAddr(0xfee0_0000)));
    assert_eq!(area.start.0 % (2 * P), 0, "8 KiB area aligned to 8 KiB");
    assert_eq!(sim.translate(virt), Some(Pfn(0xfee00)));
    assert_eq!(sim.translate(VirtAddr(virt.0 + 0x10)), Some(Pfn(0xfee01)));
    // iounmap takes the returned address (offset inside the first page).
    assert_eq!(
        iounmap(&mut *a, sim, VirtAddr(virt.0 + P)),
        Err(VmallocError::NotAreaStart {
            addr: VirtAddr(area.start.0 + P),
            area: Some(area.start)
        })
    );
    iounmap(&mut *a, sim, virt).unwrap();
    assert_eq!(sim.nr_ptes(), 0);
    // Degenerate ranges.
    assert_eq!(
        ioremap(&mut *a, &mm, sim, phys, 0, "x"),
        Err(VmallocError::BadSize { size: 0 })
    );
    assert_eq!(
        ioremap(&mut *a, &mm, sim, PhysAddr(u64::MAX - 10), 100, "x"),
        Err(VmallocError::BadSize { size: 100 })
    );
    assert_eq!(
        ioremap(&mut *a, &mm, sim, PhysAddr(u64::MAX - 0xfff), 0x1000, "x"),
        Err(VmallocError::BadSize { size: 0x1000 })
    );
    assert_pristine(&*a);
}

#[test]
fn ioremap_of_buddy_ram_is_refused() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    // Free RAM (inside a free buddy block, not its head).
    assert_eq!(
        ioremap(&mut *a, &mm, sim, PhysAddr(0x0010_1000), P, "x"),
        Err(VmallocError::RamInUse { pfn: Pfn(0x101) })
    );
    // Allocated RAM (a block head and its tail).
    let pfn = mm
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::new(1).unwrap(), OwnerTag::API)
        .unwrap();
    assert_eq!(
        ioremap(&mut *a, &mm, sim, pfn.phys(), P, "x"),
        Err(VmallocError::RamInUse { pfn })
    );
    assert_eq!(
        ioremap(&mut *a, &mm, sim, pfn.add(1).phys(), P, "x"),
        Err(VmallocError::RamInUse { pfn: pfn.add(1) })
    );
    // A range that starts reserved and runs into managed RAM.
    assert_eq!(
        ioremap(
            &mut *a,
            &mm,
            sim,
            PhysAddr(RESERVED_BASE),
            RESERVED_SIZE + 1,
            "x"
        ),
        Err(VmallocError::RamInUse {
            pfn: Pfn((RESERVED_BASE + RESERVED_SIZE) >> 12)
        })
    );
    // The BIOS page (reserved) is fine.
    let bios = ioremap(&mut *a, &mm, sim, PhysAddr(0), P, "bios").unwrap();
    iounmap(&mut *a, sim, bios).unwrap();
    assert_eq!(sim.nr_ptes(), 0);
    assert_pristine(&*a);
    mm.free_pages(pfn, Order::new(1).unwrap()).unwrap();
}

// ---------------------------------------------------------------------------
// /proc/vmallocinfo
// ---------------------------------------------------------------------------

#[test]
fn vmallocinfo_uses_linux_line_format() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    let v = vmalloc(&mut *a, &mm, sim, 4 * P, "api_vmalloc+0x0/0x0").unwrap();
    let io = ioremap(
        &mut *a,
        &mm,
        sim,
        PhysAddr(0xb000_0000),
        0x10_0000,
        "pci_ecam",
    )
    .unwrap();
    let pfn = mm
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
        .unwrap();
    let m = vmap(&mut *a, sim, &[pfn], MapProt::KERNEL, "vmap_test").unwrap();
    let mut s = String::new();
    a.write_vmallocinfo(&mut s).unwrap();
    let expected = std::format!(
        "0x{:016x}-0x{:016x}   20480 api_vmalloc+0x0/0x0 pages=4 vmalloc\n\
         0x{:016x}-0x{:016x}    8192 vmap_test vmap\n\
         0x{:016x}-0x{:016x} 1052672 pci_ecam phys=0x00000000b0000000 ioremap\n",
        v.start.0,
        v.start.0 + 5 * P,
        m.start.0,
        m.start.0 + 2 * P,
        io.0,
        io.0 + 0x10_1000,
    );
    assert_eq!(s, expected);
    assert_eq!(
        io.0,
        VMALLOC_START + (1 << IOREMAP_MAX_ORDER),
        "ioremap skipped to its alignment"
    );
}

// ---------------------------------------------------------------------------
// Property: random alloc/free against a model, with a full recount
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Alloc { pages: u64, align_shift: u32 },
    Free { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..=8, 12u32..=16).prop_map(|(pages, align_shift)| Op::Alloc { pages, align_shift }),
        2 => any::<usize>().prop_map(|pick| Op::Free { pick }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_alloc_free_keeps_the_books(ops in proptest::collection::vec(op(), 1..200)) {
        // 256 pages and 16 slots: both NoSpace and TooManyAreas happen.
        let mut a = Box::new(VmapAreaAllocator::<16, 17>::with_capacity(VirtAddr(VMALLOC_START), 256 * P));
        let mut model: Vec<VmapArea> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { pages, align_shift } => {
                    let align = 1u64 << align_shift;
                    match a.alloc(pages * P, align, VmapKind::Vmalloc, "prop") {
                        Ok(v) => {
                            prop_assert_eq!(v.start.0 % align, 0);
                            prop_assert!(v.reserved_end().0 <= VMALLOC_START + 256 * P);
                            // First fit: no aligned start below it would have fitted.
                            let mut s = VMALLOC_START;
                            while s < v.start.0 {
                                let e = s + (pages + 1) * P;
                                let clash = model.iter().any(|m| s < m.reserved_end().0 && m.start.0 < e);
                                prop_assert!(clash, "lower fit at {:#x} skipped", s);
                                s += align;
                            }
                            model.push(v);
                        }
                        Err(VmallocError::TooManyAreas { max }) => prop_assert_eq!(model.len(), max),
                        Err(VmallocError::NoSpace { .. }) => {
                            // Really no room: every aligned start clashes or overruns.
                            let mut s = VMALLOC_START;
                            while s + (pages + 1) * P <= VMALLOC_START + 256 * P {
                                let e = s + (pages + 1) * P;
                                prop_assert!(model.iter().any(|m| s < m.reserved_end().0 && m.start.0 < e));
                                s += align;
                            }
                        }
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Op::Free { pick } => {
                    if !model.is_empty() {
                        let v = model.swap_remove(pick % model.len());
                        prop_assert_eq!(a.free(v.start), Ok(v));
                    }
                }
            }
            a.check_invariants().map_err(TestCaseError::fail)?;
            // Recount used and free bytes and lookups from the model.
            let used: u64 = model.iter().map(|m| m.size).sum();
            let reserved: u64 = model.iter().map(|m| m.reserved_size()).sum();
            let st = a.stats();
            prop_assert_eq!(st.used_bytes, used);
            prop_assert_eq!(st.reserved_bytes, reserved);
            prop_assert_eq!(st.nr_areas, model.len());
            let free: u64 = a.free_ranges().map(|(s, e)| e.0 - s.0).sum();
            prop_assert_eq!(free + reserved, 256 * P);
            let largest = a.free_ranges().map(|(s, e)| e.0 - s.0).max().unwrap_or(0);
            prop_assert_eq!(st.largest_free_bytes, largest);
            for m in &model {
                prop_assert_eq!(a.find(m.start), Some(m));
                prop_assert_eq!(a.find(m.guard_page()), Some(m));
            }
        }
        for m in model {
            a.free(m.start).unwrap();
        }
        assert_pristine(&*a);
    }
}

#[test]
fn reinit_retargets_an_empty_allocator() {
    let mut a = areas();
    let v = a.alloc(P, 1, VmapKind::Vmalloc, "x").unwrap();
    assert_eq!(
        a.reinit(VirtAddr(VMALLOC_START), 1 << 20),
        Err(VmallocError::InUse { nr_areas: 1 })
    );
    a.free(v.start).unwrap();
    a.reinit(VirtAddr(VMALLOC_START), 1 << 20).unwrap();
    assert_eq!(a.stats().total_bytes, 1 << 20);
    assert_pristine(&*a);
    assert_eq!(
        a.alloc(1 << 20, 1, VmapKind::Vmalloc, "x").unwrap_err(),
        VmallocError::NoSpace {
            size: 1 << 20,
            align: P
        }
    );
}

// ---------------------------------------------------------------------------
// Lazy purging (cf. free_vmap_area_noflush(), purge_vmap_area_lazy())
// ---------------------------------------------------------------------------

/// With lazy purging a vfree clears the PTEs and frees the frames at once
/// but flushes nothing: the range waits on the purge list, listed as
/// `unpurged vm_area`, its space not reused, until one flush over the
/// list's span returns it all.
#[test]
fn lazy_vfree_waits_for_one_flush_then_the_space_comes_back() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = areas();
    a.set_lazy_purge(lazy_max_pages(2));
    assert_eq!(lazy_max_pages(1), 8192);
    assert_eq!(lazy_max_pages(2), 16384);
    assert_eq!(lazy_max_pages(4), 24576);
    let boot = mm.drained_buddyinfo();
    let x = vmalloc(&mut *a, &mm, sim, 4 * P, "x").unwrap();
    let y = vmalloc(&mut *a, &mm, sim, 2 * P, "y").unwrap();
    let flushes = sim.tlb_flushes();
    vfree(&mut *a, &mm, sim, x.start).unwrap();
    vfree(&mut *a, &mm, sim, y.start).unwrap();
    assert_eq!(sim.tlb_flushes(), flushes, "no flush on a lazy vfree");
    assert_eq!(sim.nr_ptes(), 0, "the PTEs are cleared at once");
    assert_eq!(sim.unflushed(), 6, "their translations wait for the purge");
    assert_eq!(mm.drained_buddyinfo(), boot, "the frames are back at once");
    // x and y were adjacent: one merged range, guards included.
    assert_eq!(a.lazy_pages(), 5 + 3);
    assert_eq!(
        a.unpurged().collect::<Vec<_>>(),
        vec![(x.start, y.reserved_end())]
    );
    assert_eq!(a.nr_areas(), 0);
    a.check_invariants().unwrap();
    let mut text = String::new();
    a.write_vmallocinfo(&mut text).unwrap();
    assert_eq!(
        text,
        format!(
            "0x{:016x}-0x{:016x} {:7} unpurged vm_area\n",
            x.start.0,
            y.reserved_end().0,
            8 * P
        )
    );
    // The next area does not reuse the unpurged space.
    let z = vmalloc(&mut *a, &mm, sim, P, "z").unwrap();
    assert_eq!(z.start, y.reserved_end());
    vfree(&mut *a, &mm, sim, z.start).unwrap();
    assert_eq!(a.lazy_pages(), 10);
    // One flush over the whole span, then everything is free again.
    assert_eq!(a.purge(sim), 10);
    assert_eq!(sim.tlb_flushes(), flushes + 1);
    assert_eq!(sim.unflushed(), 0);
    assert_eq!(a.lazy_pages(), 0);
    assert_pristine(&*a);
    assert_eq!(sim.stale_remaps(), 0);
}

/// Past the threshold the freeing call purges; an allocation that finds no
/// room, or no slot, purges and tries again; vunmap and iounmap are lazy
/// too.
#[test]
fn lazy_purge_runs_past_its_threshold_and_when_an_allocation_needs_it() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let boot = mm.drained_buddyinfo();
    // 64 pages of space, 4 slots.
    let mut a = Box::new(VmapAreaAllocator::<4, 5>::with_capacity(
        VirtAddr(VMALLOC_START),
        64 * P,
    ));
    // The threshold: 9 and 18 pages wait, 23 is over 20 and purges.
    a.set_lazy_purge(20);
    for (pages, waiting) in [(8, 9), (8, 18), (4, 0)] {
        let v = vmalloc(&mut *a, &mm, sim, pages * P, "t").unwrap();
        vfree(&mut *a, &mm, sim, v.start).unwrap();
        assert_eq!(a.lazy_pages(), waiting, "after freeing {pages} pages");
        a.check_invariants().unwrap();
    }
    assert_pristine(&*a);
    // No room: 32 pages wait, 41 are asked of the 64.
    a.set_lazy_purge(1000);
    let v = vmalloc(&mut *a, &mm, sim, 31 * P, "room").unwrap();
    vfree(&mut *a, &mm, sim, v.start).unwrap();
    assert_eq!(a.lazy_pages(), 32);
    let w = vmalloc(&mut *a, &mm, sim, 40 * P, "room").unwrap();
    assert_eq!(w.start.0, VMALLOC_START, "purged, then first fit");
    assert_eq!(a.lazy_pages(), 0);
    vfree(&mut *a, &mm, sim, w.start).unwrap();
    a.purge(sim);
    // No slot: two busy areas and two purge ranges fill the four slots.
    let small: Vec<VmapArea> = (0..4)
        .map(|_| vmalloc(&mut *a, &mm, sim, P, "slot").unwrap())
        .collect();
    vfree(&mut *a, &mm, sim, small[0].start).unwrap();
    vfree(&mut *a, &mm, sim, small[2].start).unwrap();
    assert_eq!(a.unpurged().count(), 2);
    let x = vmalloc(&mut *a, &mm, sim, P, "slot").unwrap();
    assert_eq!(x.start, small[0].start, "purged, then first fit");
    assert_eq!(a.lazy_pages(), 0);
    for v in [x, small[1], small[3]] {
        vfree(&mut *a, &mm, sim, v.start).unwrap();
    }
    // vunmap and iounmap wait too.
    let pfn = mm
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
        .unwrap();
    let m = vmap(&mut *a, sim, &[pfn], MapProt::KERNEL, "vmap").unwrap();
    vunmap(&mut *a, sim, m.start).unwrap();
    let io = ioremap(&mut *a, &mm, sim, PhysAddr(RESERVED_BASE), P, "io").unwrap();
    iounmap(&mut *a, sim, io).unwrap();
    assert!(a.lazy_pages() >= 4, "{}", a.lazy_pages());
    assert_eq!(sim.nr_ptes(), 0);
    assert!(sim.unflushed() > 0);
    a.purge(sim);
    assert_eq!(sim.unflushed(), 0);
    assert_pristine(&*a);
    mm.free_pages(pfn, Order::ZERO).unwrap();
    assert_eq!(mm.drained_buddyinfo(), boot);
    assert_eq!(sim.stale_remaps(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random vmallocs and vfrees with lazy purging at a random
    /// threshold, in a small area with few slots: the books tile the
    /// range after every step, no page is ever mapped again before its old
    /// translation was flushed, and a final purge leaves the allocator
    /// pristine and every frame back.
    #[test]
    fn lazy_purging_never_reuses_an_unflushed_page(
        ops in proptest::collection::vec((0u64..8, 1u64..6), 1..150),
        threshold in 1u64..64,
    ) {
        let mut mm_ = mem_map();
        let mm = machine(&mut mm_);
        let sim = mm.platform();
        let boot = mm.drained_buddyinfo();
        let mut a = Box::new(VmapAreaAllocator::<8, 9>::with_capacity(
            VirtAddr(VMALLOC_START),
            48 * P,
        ));
        a.set_lazy_purge(threshold);
        let mut live: Vec<VmapArea> = Vec::new();
        for (pick, pages) in ops {
            if pick < 5 {
                match vmalloc(&mut *a, &mm, sim, pages * P, "prop") {
                    Ok(v) => live.push(v),
                    Err(VmallocError::NoSpace { .. } | VmallocError::TooManyAreas { .. }) => {
                        // Only after a purge found nothing to give.
                        prop_assert_eq!(a.lazy_pages(), 0);
                    }
                    Err(e) => prop_assert!(false, "{:?}", e),
                }
            } else if !live.is_empty() {
                let v = live.swap_remove(pick as usize % live.len());
                vfree(&mut *a, &mm, sim, v.start).unwrap();
                prop_assert!(a.lazy_pages() <= threshold);
            }
            prop_assert_eq!(a.check_invariants(), Ok(()));
            prop_assert_eq!(sim.stale_remaps(), 0);
        }
        for v in live {
            vfree(&mut *a, &mm, sim, v.start).unwrap();
        }
        a.purge(sim);
        assert_pristine(&*a);
        prop_assert_eq!(sim.unflushed(), 0);
        prop_assert_eq!(mm.drained_buddyinfo(), boot);
    }
}
