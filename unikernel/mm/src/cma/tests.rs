//! CMA on a simulated 64 MiB machine (DMA [0,16M), DMA32 [16M,32M),
//! HighMem [32M,64M)) with `cma=8M@24M`: lent to movable allocations
//! only, and taken back whole by `cma_alloc`, migrating what is in the way.

use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::memblock::Memblock;
use crate::page::Page;
use crate::platform::sim::SimPlatform;
use crate::types::PhysAddr;
use crate::zone::{ZoneLayout, ZoneType};

const MIB: u64 = 1 << 20;
const CMA_BASE: Pfn = Pfn((24 * MIB) >> 12);
const CMA_PAGES: u64 = (8 * MIB) >> 12;

fn mem_map() -> Vec<Page> {
    vec![Page::new_reserved(); ((64 * MIB) >> 12) as usize]
}

fn machine(mem_map: &mut [Page]) -> MemoryManager<'_, SimPlatform> {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), 64 * MIB).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    mb.reserve(CMA_BASE.phys(), CMA_PAGES << 12, "cma").unwrap();
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(32 * MIB, 64 * MIB)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    let area = pa.activate_cma(CMA_BASE, CMA_PAGES).unwrap();
    assert_eq!(
        area,
        CmaArea {
            base: CMA_BASE,
            count: CMA_PAGES
        }
    );
    MemoryManager::new(pa, SimPlatform::new((64 * MIB) >> 12))
}

fn in_cma(p: Pfn) -> bool {
    (CMA_BASE.0..CMA_BASE.0 + CMA_PAGES).contains(&p.0)
}

#[derive(Default)]
struct Owner {
    pages: BTreeMap<u64, u8>,
    pinned: Vec<u64>,
}

impl MigrateOwner for Owner {
    fn can_migrate(&mut self, pfn: Pfn) -> bool {
        !self.pinned.contains(&pfn.0)
    }
    fn migrated(&mut self, moves: &[(Pfn, Pfn)]) {
        for &(s, d) in moves {
            let b = self.pages.remove(&s.0).expect("ours");
            self.pages.insert(d.0, b);
        }
    }
}

#[test]
fn the_area_is_cma_pageblocks_free_to_movable_allocations_only() {
    let mut m = mem_map();
    let mm = machine(&mut m);
    {
        let pa = mm.lock();
        let z = pa.zone(ZoneType::Dma32);
        assert_eq!((z.cma_pages, z.nr_free_cma), (CMA_PAGES, CMA_PAGES));
        assert_eq!(
            pa.pageblock_counts(ZoneType::Dma32)[MigrateType::Cma.index()],
            4
        );
        assert_eq!(pa.cma_free_pages(), CMA_PAGES);
        pa.check_invariants().unwrap();
    }
    // Unmovable allocations never land in the area, even when it is all
    // that is left of DMA32.
    let mut held = Vec::new();
    while let Ok(p) = mm.alloc_pages(GfpFlags::GFP_DMA32, Order::ZERO, OwnerTag::API) {
        assert!(!in_cma(p), "unmovable page {p} in the CMA area");
        held.push(p);
    }
    assert_eq!(mm.lock().zone(ZoneType::Dma32).nr_free_cma, CMA_PAGES);
    // A movable request does use it.
    let p = mm
        .alloc_pages(
            GfpFlags::GFP_USER | GfpFlags::MOVABLE | GfpFlags::DMA32,
            Order::ZERO,
            OwnerTag::API,
        )
        .unwrap();
    assert!(in_cma(p), "{p}");
    assert_eq!(mm.lock().zone(ZoneType::Dma32).nr_free_cma, CMA_PAGES - 1);
    mm.lock().check_invariants().unwrap();
}

#[test]
fn cma_alloc_migrates_movable_pages_out_and_release_gives_the_area_back() {
    let mut m = mem_map();
    let mm = machine(&mut m);
    let boot = mm.drained_buddyinfo();
    // Movable pages all over DMA32, CMA area included; every third kept.
    let gfp = GfpFlags::GFP_USER | GfpFlags::MOVABLE | GfpFlags::DMA32;
    let mut owner = Owner::default();
    let mut all = Vec::new();
    while let Ok(p) = mm.alloc_pages(gfp, Order::ZERO, OwnerTag::API) {
        if mm.lock().zone_of(p) != Some(ZoneType::Dma32) {
            mm.free_pages(p, Order::ZERO).unwrap();
            break;
        }
        all.push(p);
    }
    assert!(
        all.iter().filter(|&&p| in_cma(p)).count() > 1000,
        "movable pages used the area"
    );
    for (i, &p) in all.iter().enumerate() {
        if i % 3 == 0 {
            let b = (p.0 % 251) as u8;
            mm.fill(p, 1, b);
            mm.lock().set_movable(p, true).unwrap();
            owner.pages.insert(p.0, b);
        } else {
            mm.free_pages(p, Order::ZERO).unwrap();
        }
    }
    let before_moves = mm.lock().vm_events().get(VmEvent::PgMigrateSuccess);
    // 2 MiB, 1 MiB-aligned.
    let got = mm.cma_alloc(512, 8, &mut owner).unwrap();
    assert!(in_cma(got) && in_cma(Pfn(got.0 + 511)), "{got}");
    assert_eq!(got.0 % 256, 0, "1 MiB aligned");
    {
        let pa = mm.lock();
        for p in got.0..got.0 + 512 {
            let pg = pa.page(Pfn(p)).unwrap();
            assert!(
                pg.is_head() && pg.order == 0 && pg.owner == OwnerTag::CMA,
                "{p:#x}"
            );
        }
        assert_eq!(pa.cma_used_pages(), 512);
        pa.check_invariants().unwrap();
    }
    let moved = mm.lock().vm_events().get(VmEvent::PgMigrateSuccess) - before_moves;
    assert!(moved > 0, "pages in the way were migrated");
    for (&p, &b) in &owner.pages {
        assert!(
            !(got.0..got.0 + 512).contains(&p),
            "{p:#x} still in the run"
        );
        assert!(
            mm.platform().frame(Pfn(p)).iter().all(|&x| x == b),
            "{p:#x} lost its bytes"
        );
    }
    // Another run does not overlap the first.
    let second = mm.cma_alloc(512, 8, &mut owner).unwrap();
    assert!(second.0 >= got.0 + 512 || second.0 + 512 <= got.0);
    mm.cma_release(got, 512).unwrap();
    mm.cma_release(second, 512).unwrap();
    assert_eq!(
        mm.cma_release(got, 1),
        Err(CmaError::NotAllocated { pfn: got })
    );
    for &p in owner.pages.keys() {
        mm.free_pages(Pfn(p), Order::ZERO).unwrap();
    }
    assert_eq!(
        mm.drained_buddyinfo(),
        boot,
        "everything back where boot had it"
    );
    assert_eq!(mm.lock().cma_free_pages(), CMA_PAGES);
    mm.lock().check_invariants().unwrap();
}

#[test]
fn a_pinned_page_makes_cma_alloc_skip_its_run() {
    let mut m = mem_map();
    let mm = machine(&mut m);
    let gfp = GfpFlags::GFP_USER | GfpFlags::MOVABLE | GfpFlags::DMA32;
    // Fill the area first (movable requests prefer it once it holds over
    // half of the zone's free memory; take pages until one is in it).
    let mut owner = Owner::default();
    let mut pinned = None;
    while pinned.is_none() {
        let p = mm.alloc_pages(gfp, Order::ZERO, OwnerTag::API).unwrap();
        mm.lock().set_movable(p, true).unwrap();
        owner.pages.insert(p.0, 0);
        if in_cma(p) {
            pinned = Some(p);
        }
    }
    let pinned = pinned.unwrap();
    owner.pinned.push(pinned.0);
    // The whole area cannot be had: the pinned page is in it.
    assert_eq!(
        mm.cma_alloc(CMA_PAGES, 8, &mut owner),
        Err(CmaError::Busy { count: CMA_PAGES })
    );
    assert!(mm.lock().vm_events().get(VmEvent::PgMigrateFail) >= 1);
    // Half of it can: the run without the pinned page.
    let got = mm.cma_alloc(CMA_PAGES / 2, 8, &mut owner).unwrap();
    assert!(!(got.0..got.0 + CMA_PAGES / 2).contains(&pinned.0));
    assert!(
        owner.pages.contains_key(&pinned.0),
        "the pinned page stayed"
    );
    {
        let pa = mm.lock();
        pa.check_invariants().unwrap();
        assert_eq!(
            pa.pageblock_counts(ZoneType::Dma32)[MigrateType::Cma.index()],
            4,
            "no pageblock left isolated"
        );
    }
    assert_eq!(
        mm.cma_alloc(0, 0, &mut owner),
        Err(CmaError::BadSize { count: 0 })
    );
    assert_eq!(
        mm.cma_alloc(CMA_PAGES + 1, 0, &mut owner),
        Err(CmaError::BadSize {
            count: CMA_PAGES + 1
        })
    );
}

#[test]
fn dma_alloc_coherent_over_4m_comes_from_the_area() {
    let mut m = mem_map();
    let mm = machine(&mut m);
    let boot = mm.drained_buddyinfo();
    // Dirty the area first, so the zeroing shows.
    for p in CMA_BASE.0..CMA_BASE.0 + CMA_PAGES {
        mm.platform().with_frame(Pfn(p), &mut |b| b.fill(0xAA));
    }
    let mut dma = crate::dma::Dma::new();
    let buf = dma.dma_alloc_coherent(&mm, 6 * MIB, "test").unwrap();
    let info = buf.info();
    assert!(info.cma, "{info:?}");
    assert_eq!(info.nr_pages, 1536);
    assert_eq!(info.zone, ZoneType::Dma32);
    let pfn = Pfn::from_phys(info.dma_addr);
    assert!(in_cma(pfn) && in_cma(Pfn(pfn.0 + 1535)));
    for p in pfn.0..pfn.0 + 1536 {
        assert!(
            mm.platform().frame(Pfn(p)).iter().all(|&b| b == 0),
            "zeroed"
        );
    }
    assert_eq!(mm.lock().cma_used_pages(), 1536);
    dma.dma_free_coherent(&mm, buf).unwrap();
    assert_eq!(mm.lock().cma_used_pages(), 0);
    assert_eq!(mm.drained_buddyinfo(), boot);
    // Larger than the area: refused, nothing taken.
    assert!(dma.dma_alloc_coherent(&mm, 9 * MIB, "test").is_err());
    assert_eq!(mm.drained_buddyinfo(), boot);
}

#[test]
fn a_full_area_then_a_run_then_a_dma_buffer_keeps_the_counts() {
    let mut m = mem_map();
    let mm = machine(&mut m);
    let gfp = GfpFlags::GFP_USER | GfpFlags::MOVABLE | GfpFlags::DMA32;
    let mut owner = Owner::default();
    let mut unmov = Vec::new();
    while let Ok(p) = mm.alloc_pages(GfpFlags::GFP_DMA32, Order::ZERO, OwnerTag::API) {
        unmov.push(p);
    }
    while let Ok(p) = mm.alloc_pages(gfp, Order::ZERO, OwnerTag::API) {
        mm.lock().set_movable(p, true).unwrap();
        owner.pages.insert(p.0, 0);
    }
    for p in unmov {
        mm.free_pages(p, Order::ZERO).unwrap();
    }
    mm.lock().check_invariants().unwrap();
    let got = mm.cma_alloc(1536, 8, &mut owner).unwrap();
    mm.lock().check_invariants().unwrap();
    mm.cma_release(got, 1536).unwrap();
    mm.lock().check_invariants().unwrap();
    let mut dma = crate::dma::Dma::new();
    let buf = dma.dma_alloc_coherent(&mm, 5 * MIB, "test").unwrap();
    mm.lock().check_invariants().unwrap();
    dma.dma_free_coherent(&mm, buf).unwrap();
    mm.lock().check_invariants().unwrap();
    for &p in owner.pages.keys() {
        mm.free_pages(Pfn(p), Order::ZERO).unwrap();
    }
    mm.lock().check_invariants().unwrap();
    mm.drain_all_pages();
    assert_eq!(mm.lock().cma_free_pages(), CMA_PAGES);
}

#[test]
fn a_run_inside_a_free_4m_block_keeps_the_counts() {
    let mut m = mem_map();
    let mm = machine(&mut m);
    let mut owner = Owner::default();
    // The area is free in order-10 blocks; pin a movable page at its very
    // start so that a one-pageblock run must start after it, inside a free
    // order-10 block whose head is outside the run.
    let mut held = Vec::new();
    while let Ok(p) = mm.alloc_pages(GfpFlags::GFP_DMA32, Order::ZERO, OwnerTag::API) {
        held.push(p);
    }
    let first = mm
        .alloc_pages(
            GfpFlags::GFP_USER | GfpFlags::MOVABLE | GfpFlags::DMA32,
            Order::ZERO,
            OwnerTag::API,
        )
        .unwrap();
    assert!(in_cma(first));
    mm.lock().set_movable(first, true).unwrap();
    owner.pages.insert(first.0, 0);
    owner.pinned.push(first.0);
    for p in held {
        mm.free_pages(p, Order::ZERO).unwrap();
    }
    mm.drain_all_pages();
    let free_before = mm.lock().cma_free_pages();
    // 1 MiB-aligned candidates: the first holds the pinned page, the
    // second starts inside the first pageblock and ends in the next one.
    let got = mm.cma_alloc(512, 8, &mut owner).unwrap();
    assert_eq!(got.0, first.0 + 256, "the run after the pinned page's");
    mm.lock().check_invariants().unwrap();
    mm.cma_release(got, 512).unwrap();
    mm.drain_all_pages();
    let pa = mm.lock();
    pa.check_invariants().unwrap();
    assert_eq!(
        pa.cma_free_pages(),
        free_before,
        "no free page left on an Isolate list"
    );
    assert_eq!(
        pa.pageblock_counts(ZoneType::Dma32)[MigrateType::Isolate.index()],
        0
    );
}
