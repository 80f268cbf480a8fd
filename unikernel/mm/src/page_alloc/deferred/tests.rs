//! Deferred init against eager init: the same state at the end, whatever
//! order chunks, growths and the final sweep come in; correct views
//! meanwhile; allocations that grow zones; descriptors boot never wrote
//! never read.

use super::*;
use crate::gfp::GfpFlags;
use crate::manager::MemoryManager;
use crate::platform::sim::SimPlatform;
use crate::procfs::Meminfo;
use crate::types::{PAGE_SIZE, PhysAddr};
use crate::zone::Zone;
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

/// A `mem_map` full of junk: whatever the firmware left in RAM.
fn junk_mem_map(nr_pages: u64, seed: u64) -> &'static mut [Page] {
    let mut x = seed | 1;
    let mut next = move || {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pages = (0..nr_pages)
        .map(|_| {
            let (a, b) = (next(), next());
            Page {
                flags: PageFlags(a as u16),
                zone: (a >> 16) as u8,
                order: (a >> 24) as u8,
                refcount: (a >> 32) as u16,
                owner: OwnerTag((a >> 48) as u16),
                prev: b as u32,
                next: (b >> 32) as u32,
            }
        })
        .collect::<Vec<_>>();
    Box::leak(pages.into_boxed_slice())
}

fn clean_mem_map(nr_pages: u64) -> &'static mut [Page] {
    Box::leak(vec![Page::new_reserved(); nr_pages as usize].into_boxed_slice())
}

/// The 2 GiB q35 guest as the kernel sees it: usable 0–0x9fc00 and
/// 1M–0x7ffdf000, page 0, the kernel and boot info reserved, then
/// mem_map, the slab overlay and page tables from memblock below lowmem,
/// and `cma` if asked.
fn q35_memblock(lowmem: u64, cma: bool) -> Memblock {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), 0x9fc00).unwrap();
    mb.add(PhysAddr(0x10_0000), 0x7ffd_f000 - 0x10_0000)
        .unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "firmware").unwrap();
    mb.reserve(PhysAddr(0x10_0000), 0x1fb000, "kernel").unwrap();
    mb.reserve(PhysAddr(0x21e0), 0x38, "boot info").unwrap();
    let max_pfn = 0x7ffdf_u64;
    mb.alloc_named(max_pfn * 16, PAGE_SIZE, PhysAddr(lowmem), "mem_map")
        .unwrap();
    mb.alloc_named(
        (lowmem >> 12) * 16,
        PAGE_SIZE,
        PhysAddr(lowmem),
        "slab_meta",
    )
    .unwrap();
    for _ in 0..7 {
        mb.alloc_named(PAGE_SIZE, PAGE_SIZE, PhysAddr(lowmem), "page table")
            .unwrap();
    }
    if cma {
        mb.alloc_named(64 * MIB, 4 * MIB, PhysAddr(lowmem), "cma")
            .unwrap();
    }
    mb
}

fn layout_of(mb: &Memblock, lowmem: u64) -> ZoneLayout {
    ZoneLayout::from_bytes(lowmem, mb.end_of_ram().0)
}

/// Eager boot: what the kernel did before deferred init.
fn eager(mb: &Memblock, layout: ZoneLayout) -> PageAlloc<'static> {
    let mut pa = PageAlloc::new(clean_mem_map(layout.max_pfn.0), layout).unwrap();
    pa.memblock_free_all(mb).unwrap();
    pa.setup_watermarks();
    pa
}

/// Deferred boot over a junk `mem_map`.
fn deferred(mb: &Memblock, layout: ZoneLayout, boot_pages: u64, seed: u64) -> PageAlloc<'static> {
    let mut pa =
        PageAlloc::new_deferred(junk_mem_map(layout.max_pfn.0, seed), layout, mb, boot_pages)
            .unwrap();
    pa.setup_watermarks();
    pa
}

fn buddyinfo(pa: &PageAlloc<'_>) -> Vec<[u64; NR_ORDERS]> {
    pa.zones().iter().map(Zone::free_area_counts).collect()
}

/// Everything two allocators must agree on to be in the same state.
fn assert_same(a: &PageAlloc<'_>, b: &PageAlloc<'_>) {
    let counts = |pa: &PageAlloc<'_>| {
        pa.zones()
            .iter()
            .map(|z| (z.present_pages, z.managed_pages, z.free_pages))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(a), counts(b), "present, managed, free");
    assert_eq!(buddyinfo(a), buddyinfo(b), "buddyinfo");
    let max = a.max_pfn().index();
    for pfn in 0..max {
        assert_eq!(a.mem_map[pfn], b.mem_map[pfn], "descriptor of pfn {pfn:#x}");
    }
    assert_eq!(
        a.zones(),
        b.zones(),
        "zones (counters, free lists, watermarks)"
    );
    assert_eq!(a.min_free_kbytes(), b.min_free_kbytes());
    assert_eq!(a.vm_events(), b.vm_events());
    assert_eq!(a.totalram_pages(), b.totalram_pages());
}

/// What must hold at any moment of deferred init, against the eager
/// state `e` (no allocation made yet).
fn assert_views_midway(e: &PageAlloc<'_>, d: &PageAlloc<'_>) {
    d.check_invariants().unwrap();
    for (ze, zd) in e.zones().iter().zip(d.zones()) {
        assert_eq!(ze.present_pages, zd.present_pages, "{}: present", ze.name());
        assert_eq!(
            ze.managed_pages,
            zd.managed_pages + d.deferred.pending_pages(zd.ztype),
            "{}: managed + deferred",
            ze.name()
        );
        assert_eq!(
            zd.free_pages,
            zd.managed_pages,
            "{}: all managed free",
            zd.name()
        );
    }
    // MemTotal counts deferred pages from the start, as in Linux 6.1.
    assert_eq!(e.totalram_pages(), d.totalram_pages());
    // What buddyinfo will be once deferred init is done.
    let mut after = buddyinfo(d);
    for (zone, more) in after.iter_mut().zip(d.deferred_free_area_counts()) {
        for (c, m) in zone.iter_mut().zip(more) {
            *c += m;
        }
    }
    assert_eq!(after, buddyinfo(e));
    // Every descriptor reads as what it is, or as its placeholder.
    for pfn in 0..d.max_pfn().0 {
        let (pe, pd) = (e.page(Pfn(pfn)).unwrap(), d.page(Pfn(pfn)).unwrap());
        if d.early_page_uninitialised(Pfn(pfn)) {
            assert_eq!(pd.is_nomap(), pe.is_nomap(), "pfn {pfn:#x}");
            assert!(pd.is_reserved() && !pd.is_buddy() && !pd.is_allocated());
            assert_eq!(pd.zone, pe.zone);
            assert_eq!(pd.is_highmem(), pe.is_highmem());
            let owner = if pe.is_nomap() {
                OwnerTag::NONE
            } else {
                OwnerTag::DEFERRED
            };
            assert_eq!(pd.owner, owner, "pfn {pfn:#x}");
        } else if pe.is_reserved() {
            assert_eq!(pe, pd, "pfn {pfn:#x}");
        }
        assert_eq!(
            e.pageblock_migratetype(Pfn(pfn)),
            d.pageblock_migratetype(Pfn(pfn))
        );
    }
    for zt in ZoneType::ALL {
        assert_eq!(e.pageblock_counts(zt), d.pageblock_counts(zt), "{zt:?}");
    }
    let (me, md) = (Meminfo::from_page_alloc(e), Meminfo::from_page_alloc(d));
    assert_eq!(me.mem_total_kb, md.mem_total_kb);
}

#[test]
fn q35_2g_deferred_then_all_is_eager_init() {
    let lowmem = 896 * MIB;
    let mb = q35_memblock(lowmem, false);
    let layout = layout_of(&mb, lowmem);
    let e = eager(&mb, layout);
    let mut d = deferred(&mb, layout, 8192, 1);
    assert!(d.deferred_pending());
    let stats = d.deferred_stats();
    assert!(stats.deferred_pages > 400_000, "{stats:?}");
    assert_eq!(
        stats.boot_pages + stats.deferred_pages,
        e.zones().iter().map(|z| z.managed_pages).sum::<u64>()
    );
    // Boot wrote a few descriptors per zone, not mem_map.
    let written = (0..layout.max_pfn.0)
        .filter(|&p| !d.early_page_uninitialised(Pfn(p)))
        .count();
    assert!(written < 40_000, "{written} descriptors written at boot");
    assert_views_midway(&e, &d);
    let freed = d.deferred_init_all();
    assert_eq!(freed, stats.deferred_pages);
    assert!(!d.deferred_pending());
    assert_same(&e, &d);
    d.check_invariants().unwrap();
}

#[test]
fn chunks_from_the_main_loop_reach_the_same_state() {
    let lowmem = 896 * MIB;
    let mb = q35_memblock(lowmem, false);
    let layout = layout_of(&mb, lowmem);
    let e = eager(&mb, layout);
    let mut d = deferred(&mb, layout, 8192, 2);
    let mut steps = 0;
    while d.deferred_pending() {
        d.deferred_init_chunk(8192);
        steps += 1;
        if steps % 16 == 0 {
            assert_views_midway(&e, &d);
        }
    }
    assert!(steps > 10, "{steps} chunks");
    assert_eq!(d.deferred_stats().chunks, steps);
    assert_same(&e, &d);
}

#[test]
fn reservations_in_the_deferred_part_are_written_at_boot() {
    let lowmem = 896 * MIB;
    let mb = q35_memblock(lowmem, true);
    let layout = layout_of(&mb, lowmem);
    let d = deferred(&mb, layout, 0, 3);
    for r in mb.reserved_regions() {
        for pfn in Pfn::from_phys(r.base).0..Pfn::from_phys_up(r.end()).0 {
            assert!(!d.early_page_uninitialised(Pfn(pfn)), "{} {pfn:#x}", r.name);
            let p = d.page(Pfn(pfn)).unwrap();
            assert!(p.is_reserved());
            let owner = OwnerTag::from_name(r.name).unwrap_or(OwnerTag::MEMBLOCK);
            assert_eq!(p.owner, owner, "{} {pfn:#x}", r.name);
        }
    }
    // DMA is whole at boot; with boot_pages 0 the others start deferred.
    assert_eq!(d.deferred.pending_pages(ZoneType::Dma), 0);
    assert!(d.deferred.pending_pages(ZoneType::Dma32) > 0);
    assert!(d.deferred.pending_pages(ZoneType::HighMem) > 0);
}

#[test]
fn cma_activates_over_a_deferred_zone_and_ends_as_eager() {
    let lowmem = 896 * MIB;
    let mb = q35_memblock(lowmem, true);
    let layout = layout_of(&mb, lowmem);
    let base = mb
        .reserved_regions()
        .iter()
        .find(|r| r.name == "cma")
        .unwrap()
        .base;
    let count = (64 * MIB) >> 12;
    let mut e = PageAlloc::new(clean_mem_map(layout.max_pfn.0), layout).unwrap();
    e.memblock_free_all(&mb).unwrap();
    e.activate_cma(Pfn::from_phys(base), count).unwrap();
    e.setup_watermarks();
    let mut d =
        PageAlloc::new_deferred(junk_mem_map(layout.max_pfn.0, 4), layout, &mb, 4096).unwrap();
    d.activate_cma(Pfn::from_phys(base), count).unwrap();
    d.setup_watermarks();
    d.check_invariants().unwrap();
    d.deferred_init_all();
    assert_same(&e, &d);
}

#[test]
fn allocations_grow_zones_and_find_all_memory() {
    let lowmem = 896 * MIB;
    let mb = q35_memblock(lowmem, false);
    let layout = layout_of(&mb, lowmem);
    let mut e = eager(&mb, layout);
    let mut d = deferred(&mb, layout, 2048, 5);
    // Frame for frame: the per-CPU lists (which atomic requests do not
    // drain) would keep different leftovers after different histories.
    e.set_pcp_enabled(false);
    d.set_pcp_enabled(false);
    let highmem_boot = d.zone(ZoneType::HighMem).managed_pages;
    // More HighMem than boot handed over, one frame at a time: each time
    // the zone runs short it grows, never falling back to DMA32 while it
    // has deferred pages.
    for i in 0..highmem_boot + 10_000 {
        let pfn = d
            .alloc_pages(GfpFlags::GFP_HIGHUSER, Order::ZERO, OwnerTag::API)
            .unwrap();
        assert_eq!(d.zone_of(pfn), Some(ZoneType::HighMem), "allocation {i}");
    }
    let stats = d.deferred_stats();
    assert!(
        stats.grows >= 1 && stats.grown_pages >= PAGES_PER_SECTION,
        "{stats:?}"
    );
    d.check_invariants().unwrap();
    // Then everything, eager and deferred alike: as many frames.
    let drain = |pa: &mut PageAlloc<'_>| {
        let mut got = Vec::new();
        let highatomic = GfpFlags::GFP_ATOMIC.union(GfpFlags::HIGHMEM);
        for gfp in [highatomic, GfpFlags::GFP_ATOMIC] {
            for o in (0..=MAX_ORDER as u8).rev() {
                let order = Order::new(o).unwrap();
                while let Ok(pfn) = pa.alloc_pages(gfp, order, OwnerTag::API) {
                    got.push((pfn, o));
                }
            }
        }
        got
    };
    for _ in 0..highmem_boot + 10_000 {
        e.alloc_pages(GfpFlags::GFP_HIGHUSER, Order::ZERO, OwnerTag::API)
            .unwrap();
    }
    let (ge, gd) = (drain(&mut e), drain(&mut d));
    assert!(!d.deferred_pending(), "running dry initialises everything");
    let frames = |g: &[(Pfn, u8)]| g.iter().map(|&(_, o)| 1u64 << o).sum::<u64>();
    assert_eq!(frames(&ge), frames(&gd));
    d.check_invariants().unwrap();
}

#[test]
fn an_uninitialised_frame_cannot_be_freed_or_taken() {
    let lowmem = 896 * MIB;
    let mb = q35_memblock(lowmem, false);
    let layout = layout_of(&mb, lowmem);
    let mut d = deferred(&mb, layout, 2048, 6);
    let pfn = (0..layout.max_pfn.0)
        .rev()
        .map(Pfn)
        .find(|&p| d.early_page_uninitialised(p) && !d.page(p).unwrap().is_nomap())
        .unwrap();
    let before = (d.zones().to_vec(), buddyinfo(&d));
    for o in 0..=MAX_ORDER as u8 {
        assert_eq!(
            d.free_pages(pfn, Order::new(o).unwrap()),
            Err(crate::page_alloc::FreeError::Reserved { pfn })
        );
    }
    assert!(
        d.take_page_off_buddy(pfn, Order::ZERO, OwnerTag::API)
            .is_err()
    );
    assert_eq!(d.compound_head(pfn), None);
    assert_eq!((d.zones().to_vec(), buddyinfo(&d)), before);
    d.check_invariants().unwrap();
}

#[test]
fn boot_buddyinfo_counts_what_deferred_init_will_add() {
    let lowmem = 896 * MIB;
    let mb = q35_memblock(lowmem, false);
    let layout = layout_of(&mb, lowmem);
    let e = eager(&mb, layout);
    let d = deferred(&mb, layout, 8192, 7);
    let mm = MemoryManager::new(d, SimPlatform::new(0));
    mm.mark_boot_complete();
    let boot: Vec<_> = mm.boot_buddyinfo().to_vec();
    assert_eq!(boot, buddyinfo(&e));
    assert_ne!(mm.buddyinfo().to_vec(), boot, "not handed over yet");
    mm.lock().deferred_init_all();
    assert_eq!(mm.buddyinfo().to_vec(), boot);
}

/// A smaller machine for the property test: RAM with a hole, random
/// reservations.
fn small_memblock(reservations: &[(u64, u64)]) -> Memblock {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), 0x9fc00).unwrap();
    mb.add(PhysAddr(0x10_0000), 100 * MIB - 0x10_0000).unwrap();
    mb.add(PhysAddr(112 * MIB), 144 * MIB - 0x1234).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "firmware").unwrap();
    for &(base, size) in reservations {
        let _ = mb.reserve(PhysAddr(base), size, "memblock");
    }
    mb
}

#[derive(Clone, Debug)]
enum Step {
    Chunk(u64),
    Grow(usize, u8),
    Zone(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u64..20_000).prop_map(Step::Chunk),
        (0usize..NR_ZONES, 0u8..=MAX_ORDER as u8).prop_map(|(z, o)| Step::Grow(z, o)),
        (0usize..NR_ZONES).prop_map(Step::Zone),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any interleaving of main-loop chunks, growths and whole zones ends
    /// where eager init starts, with correct views at every step.
    #[test]
    fn any_order_of_deferred_work_ends_as_eager_init(
        reservations in prop::collection::vec((0u64..256 * MIB, 1u64..3 * MIB), 0..12),
        lowmem_mib in prop::sample::select(vec![32u64, 64, 98, 200]),
        boot_pages in 0u64..20_000,
        steps in prop::collection::vec(step(), 0..12),
        seed in any::<u64>(),
    ) {
        let lowmem = lowmem_mib * MIB;
        let mb = small_memblock(&reservations);
        let layout = layout_of(&mb, lowmem);
        let e = eager(&mb, layout);
        let mut d = deferred(&mb, layout, boot_pages, seed);
        assert_views_midway(&e, &d);
        for s in steps {
            match s {
                Step::Chunk(n) => { d.deferred_init_chunk(n); }
                Step::Grow(z, o) => { d.deferred_grow_zone(z, Order::new(o).unwrap()); }
                Step::Zone(z) => { d.deferred_init_zone(ZoneType::ALL[z]); }
            }
            assert_views_midway(&e, &d);
        }
        d.deferred_init_all();
        assert_same(&e, &d);
    }
}
