//! Host tests for the kernel heap's reserve: sizing, carving at boot,
//! serving `__GFP_MEMALLOC` only once the zones are drained, first-fit
//! alignment, clean exhaustion, refused frees of pool frames, the slab
//! layer growing from it, and a property test of random reserve traffic.

use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::page::Page;
use crate::page_alloc::{AllocError, FreeError};
use crate::slab::tests::Fixture;
use crate::types::{NR_ORDERS, PAGE_SHIFT};
use crate::zone::{NR_ZONES, ZoneLayout};

const MIB: u64 = 1 << 20;

fn order(o: u8) -> Order {
    Order::new(o).unwrap()
}

/// `ram_mib` of RAM, lowmem up to `lowmem_mib`, page 0 reserved,
/// watermarks set; the reserve not yet carved.
fn boot(ram_mib: u64, lowmem_mib: u64) -> PageAlloc<'static> {
    let layout = ZoneLayout::from_bytes(lowmem_mib * MIB, ram_mib * MIB);
    let mem_map = Box::leak(vec![Page::new_reserved(); layout.max_pfn.index()].into_boxed_slice());
    let mut pa = PageAlloc::new(mem_map, layout).unwrap();
    pa.mark_ram(Pfn(0), layout.max_pfn).unwrap();
    pa.free_bootmem(Pfn(1), layout.max_pfn).unwrap();
    pa.setup_watermarks();
    // Exact buddy predictions: the per-CPU lists are off here (the
    // property tests and page_alloc::pcp's tests run them on).
    pa.set_pcp_enabled(false);
    pa
}

fn buddyinfo(pa: &PageAlloc<'_>) -> [[u64; NR_ORDERS]; NR_ZONES] {
    core::array::from_fn(|z| pa.free_area_counts(ZoneType::ALL[z]))
}

fn check(pa: &PageAlloc<'_>) {
    pa.check_invariants().unwrap();
    pa.check_kernel_reserve().unwrap();
}

/// Take every lowmem page GFP_ATOMIC can get (down to its MIN discount).
fn drain(pa: &mut PageAlloc<'_>) -> Vec<Pfn> {
    let mut got = Vec::new();
    for gfp in [GfpFlags::GFP_ATOMIC, GfpFlags::GFP_ATOMIC | GfpFlags::DMA] {
        while let Ok(p) = pa.alloc_pages(gfp, Order::ZERO, OwnerTag::API) {
            got.push(p);
        }
    }
    got
}

fn release(pa: &mut PageAlloc<'_>, pages: Vec<Pfn>) {
    for p in pages {
        pa.free_pages(p, Order::ZERO).unwrap();
    }
}

const MEMALLOC: GfpFlags = GfpFlags::GFP_ATOMIC.union(GfpFlags::MEMALLOC);

#[test]
fn size_is_a_clamped_power_of_two() {
    assert_eq!(kernel_reserve_pages(0), 64);
    assert_eq!(kernel_reserve_pages((16 * MIB) >> PAGE_SHIFT), 64); // 256 KiB
    assert_eq!(kernel_reserve_pages((100 * MIB) >> PAGE_SHIFT), 256); // 200 → 256
    assert_eq!(kernel_reserve_pages((256 * MIB) >> PAGE_SHIFT), 512);
    assert_eq!(kernel_reserve_pages((896 * MIB) >> PAGE_SHIFT), 1024); // 4 MiB
    assert_eq!(kernel_reserve_pages((2048 * MIB) >> PAGE_SHIFT), 1024);
    assert_eq!(kernel_reserve_pages(u64::MAX), KERNEL_RESERVE_MAX_PAGES);
}

#[test]
fn carved_at_boot_from_the_highest_lowmem_zone() {
    // 64 MiB, lowmem 32 MiB: DMA, DMA32, HighMem; 8191 lowmem pages → 64.
    let mut pa = boot(64, 32);
    let free_before = pa.nr_free_pages();
    let dma32_before = pa.zone(ZoneType::Dma32).free_pages;
    let stats = pa.setup_kernel_reserve().unwrap();
    assert_eq!(stats.zone, ZoneType::Dma32);
    assert_eq!((stats.nr_pages, stats.wanted_pages), (64, 64));
    assert_eq!((stats.free_pages, stats.min_free_pages), (64, 64));
    assert_eq!((stats.allocations, stats.failures), (0, 0));
    assert!(stats.start_pfn.is_aligned(order(6)));
    assert_eq!(pa.kernel_reserve(), Some(stats));
    // Not in the buddy's free counts, still managed.
    assert_eq!(pa.nr_free_pages(), free_before - 64);
    assert_eq!(pa.zone(ZoneType::Dma32).free_pages, dma32_before - 64);
    for i in 0..64 {
        let pfn = stats.start_pfn.add(i);
        assert!(pa.in_kernel_reserve(pfn));
        let p = pa.page(pfn).unwrap();
        assert!(p.is_head() && p.order == 0 && p.refcount == 1);
        assert_eq!(p.owner, OwnerTag::RESERVE);
    }
    assert!(!pa.in_kernel_reserve(stats.start_pfn.add(64)));
    check(&pa);
    assert_eq!(pa.setup_kernel_reserve(), Err(ReserveError::AlreadySetUp));

    // 2 GiB with lowmem 896 MiB → 4 MiB; all-lowmem 16 MiB → 256 KiB in DMA.
    let mut big = boot(2048, 896);
    let s = big.setup_kernel_reserve().unwrap();
    assert_eq!((s.zone, s.nr_pages), (ZoneType::Dma32, 1024));
    check(&big);
    let mut small = boot(16, 16);
    let s = small.setup_kernel_reserve().unwrap();
    assert_eq!((s.zone, s.nr_pages), (ZoneType::Dma, 64));
    check(&small);
}

#[test]
fn falls_back_to_a_smaller_block() {
    // Fragment DMA32 so no order-6 block is left there (straight from the
    // free lists: the watermarks would stop alloc_pages first).
    let mut pa = boot(32, 32);
    let zi = ZoneType::Dma32.index();
    let mut held = Vec::new();
    while pa.zone(ZoneType::Dma32).free_area[5..]
        .iter()
        .any(|a| a.nr_free > 0)
    {
        let pfn = pa.rmqueue_mt(zi, order(5), MigrateType::Movable).unwrap();
        pa.prep_new_page(pfn, order(5), OwnerTag::API);
        held.push(pfn);
    }
    // Punch one order-5 hole back.
    let hole = held.pop().unwrap();
    pa.free_pages(hole, order(5)).unwrap();
    let s = pa.setup_kernel_reserve().unwrap();
    assert_eq!(
        (s.zone, s.nr_pages, s.wanted_pages),
        (ZoneType::Dma32, 32, 64)
    );
    check(&pa);
    assert_eq!(
        format!(
            "{}",
            ReserveError::NoMemory {
                zone: ZoneType::Dma32
            }
        ),
        "no free block in DMA32 for the kernel reserve"
    );
}

#[test]
fn pool_frames_cannot_be_freed_or_relabelled() {
    let mut pa = boot(32, 32);
    let s = pa.setup_kernel_reserve().unwrap();
    let snapshot = (
        pa.zones().to_vec(),
        pa.mem_map[..pa.max_pfn().index()].to_vec(),
    );
    let pfn = s.start_pfn.add(3);
    assert_eq!(
        pa.free_pages(pfn, Order::ZERO),
        Err(FreeError::Reserved { pfn })
    );
    assert_eq!(
        pa.set_owner(pfn, OwnerTag::API),
        Err(FreeError::Reserved { pfn })
    );
    assert_eq!(pa.set_slab(pfn, true), Err(FreeError::Reserved { pfn }));
    // Nor may anything be labelled as a pool frame.
    let other = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
        .unwrap();
    assert_eq!(
        pa.set_owner(other, OwnerTag::RESERVE),
        Err(FreeError::Reserved { pfn: other })
    );
    pa.free_pages(other, Order::ZERO).unwrap();
    assert_eq!(
        (
            pa.zones().to_vec(),
            pa.mem_map[..pa.max_pfn().index()].to_vec()
        ),
        snapshot
    );
    check(&pa);
}

#[test]
fn memalloc_is_served_only_after_the_zones_are_drained() {
    let mut pa = boot(32, 32);
    let s = pa.setup_kernel_reserve().unwrap();
    // With memory about, MEMALLOC takes from the buddy like anyone else.
    let early = pa
        .alloc_pages(MEMALLOC, Order::ZERO, OwnerTag::HEAP)
        .unwrap();
    assert!(!pa.in_kernel_reserve(early));
    assert_eq!(pa.kernel_reserve().unwrap().allocations, 0);
    pa.free_pages(early, Order::ZERO).unwrap();

    let hog = drain(&mut pa);
    let drained = buddyinfo(&pa);
    for gfp in [
        GfpFlags::GFP_KERNEL,
        GfpFlags::GFP_ATOMIC,
        GfpFlags::GFP_NOWAIT,
        GfpFlags::GFP_KERNEL | GfpFlags::HIGH,
        GfpFlags::GFP_ATOMIC | GfpFlags::NOFAIL,
        MEMALLOC | GfpFlags::NOMEMALLOC,
    ] {
        assert_eq!(
            pa.alloc_pages(gfp, Order::ZERO, OwnerTag::API),
            Err(AllocError::NoMemory {
                order: Order::ZERO,
                gfp
            }),
            "{gfp}"
        );
    }
    assert_eq!(
        pa.kernel_reserve().unwrap().failures,
        0,
        "only MEMALLOC counts"
    );

    let heap = GfpFlags::GFP_KERNEL | GfpFlags::GFP_ATOMIC | GfpFlags::MEMALLOC | GfpFlags::COMP;
    let a = pa.alloc_pages(heap, order(2), OwnerTag::HEAP).unwrap();
    assert_eq!(a, s.start_pfn);
    let p = pa.page(a).unwrap();
    assert!(p.is_head() && p.order == 2 && p.refcount == 1 && p.owner == OwnerTag::HEAP);
    for i in 1..4 {
        let t = pa.page(a.add(i)).unwrap();
        assert!(t.is_tail() && !t.is_head() && t.owner == OwnerTag::HEAP);
    }
    assert_eq!(pa.compound_head(a.add(3)), Some((a, order(2))));
    assert_eq!(buddyinfo(&pa), drained, "the buddy lists are not touched");
    check(&pa);

    // A GFP_DMA request cannot use a DMA32 reserve: a counted failure.
    assert!(
        pa.alloc_pages(MEMALLOC | GfpFlags::DMA, Order::ZERO, OwnerTag::HEAP)
            .is_err()
    );
    let st = pa.kernel_reserve().unwrap();
    assert_eq!(
        (
            st.allocations,
            st.failures,
            st.free_pages,
            st.min_free_pages
        ),
        (1, 1, 60, 60)
    );

    // Wrong order refused with nothing changed; the right one goes back
    // to the reserve, not to the buddy.
    assert_eq!(
        pa.free_pages(a, Order::ZERO),
        Err(FreeError::WrongOrder {
            allocated: order(2),
            requested: Order::ZERO
        })
    );
    pa.free_pages(a, order(2)).unwrap();
    assert_eq!(buddyinfo(&pa), drained);
    let st = pa.kernel_reserve().unwrap();
    assert_eq!((st.free_pages, st.min_free_pages), (64, 60));
    assert_eq!(
        pa.free_pages(a, order(2)),
        Err(FreeError::Reserved { pfn: a })
    );
    check(&pa);
    release(&mut pa, hog);
    check(&pa);
}

#[test]
fn first_fit_naturally_aligned_for_every_order() {
    let mut pa = boot(32, 32);
    let s = pa.setup_kernel_reserve().unwrap();
    let hog = drain(&mut pa);
    let base = s.start_pfn;
    let take = |pa: &mut PageAlloc<'_>, o: u8| pa.alloc_pages(MEMALLOC, order(o), OwnerTag::HEAP);
    let a = take(&mut pa, 0).unwrap();
    let b = take(&mut pa, 1).unwrap();
    let c = take(&mut pa, 0).unwrap();
    let d = take(&mut pa, 2).unwrap();
    let e = take(&mut pa, 3).unwrap();
    let f = take(&mut pa, 4).unwrap();
    assert_eq!(
        [a, b, c, d, e, f].map(|p| p.0 - base.0),
        [0, 2, 1, 4, 8, 16]
    );
    pa.free_pages(c, Order::ZERO).unwrap();
    let g = take(&mut pa, 5).unwrap();
    assert_eq!(g.0 - base.0, 32);
    check(&pa);
    // Frame 1 is the only one left: an order-1 request cannot fit.
    assert_eq!(pa.kernel_reserve().unwrap().free_pages, 1);
    assert!(take(&mut pa, 1).is_err());
    let h = take(&mut pa, 0).unwrap();
    assert_eq!(h.0 - base.0, 1);
    assert!(take(&mut pa, 0).is_err());
    for (p, o) in [(a, 0), (b, 1), (d, 2), (e, 3), (f, 4), (g, 5), (h, 0)] {
        pa.free_pages(p, order(o)).unwrap();
        check(&pa);
    }
    // Whole again: the largest order fits, one more does not.
    let whole = take(&mut pa, 6).unwrap();
    assert_eq!(whole, base);
    assert!(take(&mut pa, 0).is_err());
    pa.free_pages(whole, order(6)).unwrap();
    assert!(take(&mut pa, 7).is_err(), "bigger than the reserve");
    let st = pa.kernel_reserve().unwrap();
    assert_eq!(
        (
            st.free_pages,
            st.min_free_pages,
            st.allocations,
            st.failures
        ),
        (64, 0, 9, 4)
    );
    check(&pa);
    release(&mut pa, hog);
}

#[test]
fn exhaustion_fails_cleanly_and_counts() {
    let mut pa = boot(32, 32);
    pa.setup_kernel_reserve().unwrap();
    let hog = drain(&mut pa);
    let mut got = Vec::new();
    for _ in 0..64 {
        got.push(
            pa.alloc_pages(MEMALLOC, Order::ZERO, OwnerTag::HEAP)
                .unwrap(),
        );
    }
    let before = (
        pa.zones().to_vec(),
        pa.mem_map[..pa.max_pfn().index()].to_vec(),
    );
    for _ in 0..3 {
        assert_eq!(
            pa.alloc_pages(MEMALLOC, Order::ZERO, OwnerTag::HEAP),
            Err(AllocError::NoMemory {
                order: Order::ZERO,
                gfp: MEMALLOC
            })
        );
    }
    assert_eq!(
        (
            pa.zones().to_vec(),
            pa.mem_map[..pa.max_pfn().index()].to_vec()
        ),
        before
    );
    let st = pa.kernel_reserve().unwrap();
    assert_eq!(
        (
            st.free_pages,
            st.min_free_pages,
            st.allocations,
            st.failures
        ),
        (0, 0, 64, 3)
    );
    check(&pa);
    release(&mut pa, got);
    release(&mut pa, hog);
    check(&pa);
    assert_eq!(pa.kernel_reserve().unwrap().free_pages, 64);
}

#[test]
fn without_a_reserve_memalloc_just_fails() {
    let mut pa = boot(32, 32);
    let hog = drain(&mut pa);
    assert!(
        pa.alloc_pages(MEMALLOC, Order::ZERO, OwnerTag::HEAP)
            .is_err()
    );
    assert_eq!(pa.kernel_reserve(), None);
    assert!(!pa.in_kernel_reserve(Pfn(100)));
    pa.check_kernel_reserve().unwrap();
    release(&mut pa, hog);
}

#[test]
fn the_slab_layer_grows_from_the_reserve() {
    let mut f = Fixture::new(24);
    let s = f.pages.lock().setup_kernel_reserve().unwrap();
    let hog = f.exhaust_buddy();
    let gfp = GfpFlags::GFP_ATOMIC;
    assert!(f.slab.kmalloc(&f.mem, &f.pages, 512, gfp).is_err());
    let heap = gfp | GfpFlags::MEMALLOC | GfpFlags::NOFAIL;
    let small = f.slab.kmalloc(&f.mem, &f.pages, 512, heap).unwrap();
    let large = f.slab.kmalloc(&f.mem, &f.pages, 64 << 10, heap).unwrap();
    {
        let pa = f.pages.lock();
        let pfn = |va: u64| Pfn((va - crate::types::PAGE_OFFSET) >> PAGE_SHIFT);
        assert!(pa.in_kernel_reserve(pfn(small)) && pa.in_kernel_reserve(pfn(large)));
        assert!(pa.page(pfn(small)).unwrap().is_slab());
        assert_eq!(pa.page(pfn(large)).unwrap().owner, OwnerTag::HEAP);
        assert_eq!(pa.kernel_reserve().unwrap().allocations, 2);
        check(&pa);
    }
    f.slab.kfree(&f.mem, &f.pages, small).unwrap();
    f.slab.kfree(&f.mem, &f.pages, large).unwrap();
    f.slab.shrink_all(&f.mem, &f.pages);
    {
        let pa = f.pages.lock();
        assert_eq!(pa.kernel_reserve().unwrap().free_pages, s.nr_pages);
        check(&pa);
    }
    f.release(hog);
}

// ----------------------------------------------------------------------
// Property: random reserve traffic keeps the bitmap and mem_map agreeing
// ----------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_memalloc_traffic(
        ops in prop::collection::vec((any::<bool>(), 0u8..=6, 0usize..64), 1..120),
    ) {
        let mut pa = boot(32, 32);
        let s = pa.setup_kernel_reserve().unwrap();
        let hog = drain(&mut pa);
        let drained = buddyinfo(&pa);
        let mut live: Vec<(Pfn, Order)> = Vec::new();
        for (alloc, o, pick) in ops {
            if alloc || live.is_empty() {
                let in_use: u64 = live.iter().map(|(_, o)| o.nr_pages()).sum();
                match pa.alloc_pages(MEMALLOC, order(o), OwnerTag::HEAP) {
                    Ok(pfn) => {
                        prop_assert!(pfn.is_aligned(order(o)));
                        prop_assert!(pa.in_kernel_reserve(pfn));
                        // No overlap with any live block.
                        for &(q, qo) in &live {
                            let disjoint = pfn.0 + order(o).nr_pages() <= q.0
                                || q.0 + qo.nr_pages() <= pfn.0;
                            prop_assert!(disjoint);
                        }
                        live.push((pfn, order(o)));
                    }
                    // First-fit can only miss when no aligned run is free.
                    Err(_) => {
                        let n = order(o).nr_pages();
                        let run_free = |off: u64| {
                            let start = s.start_pfn.0 + off;
                            live.iter().all(|&(q, qo)| start + n <= q.0 || q.0 + qo.nr_pages() <= start)
                        };
                        let some_run_free = (0..s.nr_pages).step_by(n as usize).any(run_free);
                        prop_assert!(in_use + n > s.nr_pages || !some_run_free);
                        prop_assert!(!some_run_free);
                    }
                }
            } else {
                let (pfn, ord) = live.swap_remove(pick % live.len());
                prop_assert_eq!(pa.free_pages(pfn, ord), Ok(()));
            }
            prop_assert_eq!(pa.check_invariants(), Ok(()));
            prop_assert_eq!(pa.check_kernel_reserve(), Ok(()));
            let in_use: u64 = live.iter().map(|(_, o)| o.nr_pages()).sum();
            prop_assert_eq!(pa.kernel_reserve().unwrap().free_pages, s.nr_pages - in_use);
            prop_assert_eq!(buddyinfo(&pa), drained);
        }
        for (pfn, ord) in live {
            prop_assert_eq!(pa.free_pages(pfn, ord), Ok(()));
        }
        // Fully coalesced: the whole block is one run again.
        let whole = pa.alloc_pages(MEMALLOC, order(6), OwnerTag::HEAP).unwrap();
        prop_assert_eq!(whole, s.start_pfn);
        prop_assert_eq!(pa.free_pages(whole, order(6)), Ok(()));
        release(&mut pa, hog);
        prop_assert_eq!(pa.check_invariants(), Ok(()));
        prop_assert_eq!(pa.check_kernel_reserve(), Ok(()));
        prop_assert_eq!(pa.kernel_reserve().unwrap().free_pages, s.nr_pages);
    }
}
