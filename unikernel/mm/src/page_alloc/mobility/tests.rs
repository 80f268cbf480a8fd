//! Mobility grouping on the 64 MiB test machine (DMA [0,16M), DMA32
//! [16M,32M), HighMem [32M,64M), all pageblocks Movable at boot).

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::gfp::GfpFlags;
use crate::page::{OwnerTag, Page};
use crate::page_alloc::test_machine_64m;
use crate::types::NR_ORDERS;

fn mem_map() -> Vec<Page> {
    vec![Page::new_reserved(); (64 << 20) >> 12]
}

fn order(o: u8) -> Order {
    Order::new(o).unwrap()
}

/// Free blocks per order on one type's lists of one zone.
fn list_counts(pa: &PageAlloc<'_>, zt: ZoneType, mt: MigrateType) -> [u64; NR_ORDERS] {
    core::array::from_fn(|o| pa.count_free_list(zt.index(), o, mt, u64::MAX).0)
}

fn all_types_but(mt: MigrateType) -> impl Iterator<Item = MigrateType> {
    MigrateType::ALL.into_iter().filter(move |&t| t != mt)
}

#[test]
fn gfp_picks_the_migrate_type() {
    assert_eq!(GfpFlags::GFP_KERNEL.migratetype(), MigrateType::Unmovable);
    assert_eq!(GfpFlags::GFP_ATOMIC.migratetype(), MigrateType::Unmovable);
    assert_eq!(
        GfpFlags::GFP_HIGHUSER_MOVABLE.migratetype(),
        MigrateType::Movable
    );
    assert_eq!(
        (GfpFlags::GFP_KERNEL | GfpFlags::RECLAIMABLE).migratetype(),
        MigrateType::Reclaimable
    );
    assert_eq!(
        GfpFlags::parse("GFP_HIGHUSER_MOVABLE").unwrap(),
        GfpFlags::GFP_HIGHUSER_MOVABLE
    );
    assert_eq!(GfpFlags::GFP_HIGHUSER_MOVABLE.bits(), 0x100cca);
    assert_eq!(
        std::format!("{}", GfpFlags::GFP_HIGHUSER_MOVABLE),
        "GFP_HIGHUSER_MOVABLE"
    );
    assert_eq!(
        GfpFlags::parse("GFP_KERNEL|__GFP_MOVABLE|__GFP_RECLAIMABLE"),
        Err(crate::gfp::GfpParseError::MobilityConflict)
    );
}

#[test]
fn boot_leaves_every_pageblock_and_free_block_movable() {
    let mut m = mem_map();
    let pa = test_machine_64m(&mut m);
    for zt in [ZoneType::Dma, ZoneType::Dma32, ZoneType::HighMem] {
        // 16 MiB zones (HighMem 32 MiB): 8 (16) pageblocks, all Movable.
        let blocks = pa.pageblock_counts(zt);
        let nr = if zt == ZoneType::HighMem { 16 } else { 8 };
        assert_eq!(blocks[MigrateType::Movable.index()], nr, "{zt:?}");
        assert_eq!(blocks.iter().sum::<u64>(), nr, "{zt:?}");
        for mt in all_types_but(MigrateType::Movable) {
            assert_eq!(list_counts(&pa, zt, mt), [0; NR_ORDERS]);
        }
        assert_eq!(
            list_counts(&pa, zt, MigrateType::Movable),
            pa.free_area_counts(zt)
        );
    }
}

#[test]
fn an_unmovable_request_claims_the_largest_movable_block_and_later_ones_cluster_there() {
    let mut m = mem_map();
    let mut pa = test_machine_64m(&mut m);
    let zt = ZoneType::Dma32;
    let movable_before = pa.pageblock_counts(zt)[MigrateType::Movable.index()];
    let first = pa
        .alloc_pages(GfpFlags::GFP_DMA32, order(0), OwnerTag::API)
        .unwrap();
    // Stole an order-10 block: both of its pageblocks are Unmovable now.
    assert_eq!(first.0 % 1024, 0, "the head of a 4 MiB block");
    assert_eq!(pa.pageblock_migratetype(first), MigrateType::Unmovable);
    assert_eq!(
        pa.pageblock_migratetype(first.add(512)),
        MigrateType::Unmovable
    );
    let blocks = pa.pageblock_counts(zt);
    assert_eq!(blocks[MigrateType::Unmovable.index()], 2);
    assert_eq!(blocks[MigrateType::Movable.index()], movable_before - 2);
    // The rest of the block waits on the Unmovable lists, one per order.
    assert_eq!(
        list_counts(&pa, zt, MigrateType::Unmovable),
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    );
    assert_eq!(pa.extfrag_stats().events, 1);
    assert_eq!(pa.extfrag_stats().change_ownership, 1);
    // 100 more unmovable pages: all inside those two pageblocks, no more
    // stealing.
    for _ in 0..100 {
        let pfn = pa
            .alloc_pages(GfpFlags::GFP_DMA32, order(0), OwnerTag::API)
            .unwrap();
        assert!(pfn.0 >= first.0 && pfn.0 < first.0 + 1024, "{pfn}");
    }
    assert_eq!(pa.extfrag_stats().events, 1);
    // A movable request never lands there while Movable blocks exist.
    let mov = pa
        .alloc_pages(
            GfpFlags::GFP_USER | GfpFlags::MOVABLE | GfpFlags::DMA32,
            order(0),
            OwnerTag::API,
        )
        .unwrap();
    assert!(!(first.0..first.0 + 1024).contains(&mov.0));
    assert_eq!(pa.pageblock_migratetype(mov), MigrateType::Movable);
    pa.check_invariants().unwrap();
}

/// Takes every free frame of zone `zt` off the free lists as `mt` pages
/// (no watermark: `rmqueue_mt`, which steals as it must).
fn drain(pa: &mut PageAlloc<'_>, zt: ZoneType, mt: MigrateType) -> Vec<Pfn> {
    let mut held = Vec::new();
    while let Some(p) = pa.rmqueue_mt(zt.index(), order(0), mt) {
        pa.prep_new_page(p, order(0), OwnerTag::API);
        held.push(p);
    }
    held
}

#[test]
fn a_small_movable_fallback_takes_the_smallest_block_without_claiming() {
    let mut m = mem_map();
    let mut pa = test_machine_64m(&mut m);
    pa.set_pcp_enabled(false); // the frees below go to the buddy lists
    let zt = ZoneType::Dma;
    // All of DMA taken by unmovable pages: every pageblock was claimed.
    let held = drain(&mut pa, zt, MigrateType::Unmovable);
    assert_eq!(pa.pageblock_counts(zt)[MigrateType::Unmovable.index()], 8);
    // Two single free frames come back, on the Unmovable lists.
    for &p in &[held[100], held[2000]] {
        pa.free_pages(p, order(0)).unwrap();
    }
    assert_eq!(list_counts(&pa, zt, MigrateType::Unmovable)[0], 2);
    let before = pa.extfrag_stats();
    // A movable order-0 request may not claim a pageblock
    // (can_steal_fallback()), so it takes one frame and leaves its
    // pageblock Unmovable: a fragmenting fallback.
    let pfn = pa
        .rmqueue_mt(zt.index(), order(0), MigrateType::Movable)
        .unwrap();
    assert!(pfn == held[100] || pfn == held[2000]);
    assert_eq!(pa.pageblock_migratetype(pfn), MigrateType::Unmovable);
    let after = pa.extfrag_stats();
    assert_eq!(after.events, before.events + 1);
    assert_eq!(after.fragmenting, before.fragmenting + 1);
    assert_eq!(after.change_ownership, before.change_ownership);
    pa.prep_new_page(pfn, order(0), OwnerTag::API);
    pa.check_invariants().unwrap();
}

#[test]
fn an_unmovable_request_claims_a_mostly_free_pageblock_whole() {
    let mut m = mem_map();
    let mut pa = test_machine_64m(&mut m);
    let zt = ZoneType::HighMem;
    let zi = zt.index();
    // Take all of HighMem's order-10 blocks but one.
    let mut hog = Vec::new();
    while let Some(p) = pa.rmqueue_smallest(zi, order(10), MigrateType::Movable) {
        pa.prep_new_page(p, order(10), OwnerTag::API);
        hog.push((p, order(10)));
    }
    let (last, _) = hog.pop().unwrap();
    pa.free_pages(last, order(10)).unwrap();
    // Four movable pages from its first pageblock P; its second one, Q,
    // stays a free order-9 block: take that too.
    let movable = GfpFlags::GFP_HIGHUSER_MOVABLE;
    for _ in 0..4 {
        let p = pa.alloc_pages(movable, order(0), OwnerTag::API).unwrap();
        assert!(p.0 >= last.0 && p.0 < last.0 + PAGEBLOCK_NR_PAGES);
    }
    let q = pa
        .rmqueue_smallest(zi, order(9), MigrateType::Movable)
        .unwrap();
    pa.prep_new_page(q, order(9), OwnerTag::API);
    assert_eq!(q.0, last.0 + PAGEBLOCK_NR_PAGES);
    // An unmovable order-3 request: nothing Unmovable is free, so it steals
    // P's largest free block (order 8) and, being unmovable, may claim the
    // pageblock: 508 of its 512 frames are free, so it does, and every
    // free block of P moves to the Unmovable lists.
    let pfn = pa
        .alloc_pages(GfpFlags::GFP_HIGHUSER, order(3), OwnerTag::API)
        .unwrap();
    assert_eq!(pfn.0 & !(PAGEBLOCK_NR_PAGES - 1), last.0);
    assert_eq!(pa.pageblock_migratetype(last), MigrateType::Unmovable);
    let unmovable_free: u64 = (0..NR_ORDERS)
        .map(|o| list_counts(&pa, zt, MigrateType::Unmovable)[o] << o)
        .sum();
    assert_eq!(unmovable_free, 512 - 4 - 8);
    assert_eq!(list_counts(&pa, zt, MigrateType::Movable), [0; NR_ORDERS]);
    assert_eq!(pa.extfrag_stats().change_ownership, 1);
    pa.check_invariants().unwrap();
}

#[test]
fn high_order_atomic_allocations_reserve_a_pageblock_that_others_cannot_use() {
    let mut m = mem_map();
    let mut pa = test_machine_64m(&mut m);
    pa.set_pcp_enabled(false); // exact buddy predictions
    let boot = pa.zones.each_ref().map(|z| z.free_area_counts());
    let zt = ZoneType::HighMem;
    // Only the slow path may allocate: every zone's low is out of reach.
    let marks = pa.zones.each_ref().map(|z| z.watermarks);
    for z in &mut pa.zones {
        z.watermarks.low = 1 << 20;
    }
    pa.refresh_fast_paths();
    let atomic = GfpFlags::GFP_ATOMIC | GfpFlags::HIGHMEM;
    let got = pa.alloc_pages(atomic, order(2), OwnerTag::API).unwrap();
    assert_eq!(pa.zone_of(got), Some(zt));
    // Its pageblock became the HighAtomic reserve, with its free blocks.
    assert_eq!(pa.pageblock_migratetype(got), MigrateType::HighAtomic);
    assert_eq!(pa.zone(zt).nr_reserved_highatomic, PAGEBLOCK_NR_PAGES);
    assert_eq!(pa.pageblock_counts(zt)[MigrateType::HighAtomic.index()], 1);
    let reserved_free: u64 = (0..NR_ORDERS)
        .map(|o| list_counts(&pa, zt, MigrateType::HighAtomic)[o] << o)
        .sum();
    assert_eq!(reserved_free, 512 - 4);
    // An ordinary request is served elsewhere: the reserve is on no list
    // it takes from.
    let other = pa
        .alloc_pages(GfpFlags::GFP_HIGHUSER, order(2), OwnerTag::API)
        .unwrap();
    assert_ne!(pa.pageblock_migratetype(other), MigrateType::HighAtomic);
    // A second atomic one uses the reserve first.
    let again = pa.alloc_pages(atomic, order(2), OwnerTag::API).unwrap();
    assert_eq!(pa.pageblock_migratetype(again), MigrateType::HighAtomic);
    // Linux keeps a zone's last reserved pageblock unless forced.
    assert!(!pa.unreserve_highatomic_pageblock(zt, MigrateType::Unmovable, false));
    assert!(pa.unreserve_highatomic_pageblock(zt, MigrateType::Unmovable, true));
    assert_eq!(pa.zone(zt).nr_reserved_highatomic, 0);
    assert_eq!(pa.pageblock_migratetype(got), MigrateType::Unmovable);
    for (z, m) in pa.zones.iter_mut().zip(marks) {
        z.watermarks = m;
    }
    pa.refresh_fast_paths();
    for (p, o) in [(got, 2), (other, 2), (again, 2)] {
        pa.free_pages(p, order(o)).unwrap();
    }
    pa.release_highatomic_reserve();
    for zt in ZoneType::ALL {
        assert_eq!(pa.free_area_counts(zt), boot[zt.index()], "{zt:?}");
    }
    pa.check_invariants().unwrap();
}

#[test]
fn highatomic_blocks_do_not_merge_with_other_types_at_pageblock_order() {
    let mut m = mem_map();
    let mut pa = test_machine_64m(&mut m);
    let zt = ZoneType::HighMem;
    // Two buddy pageblocks, both free inside an order-10 block: take it,
    // mark its first pageblock HighAtomic, free it.
    let pfn = pa
        .alloc_pages(GfpFlags::GFP_HIGHUSER_MOVABLE, order(10), OwnerTag::API)
        .unwrap();
    pa.free_pages(pfn, order(10)).unwrap();
    let boot = pa.free_area_counts(zt);
    let pfn = pa
        .alloc_pages(GfpFlags::GFP_HIGHUSER_MOVABLE, order(9), OwnerTag::API)
        .unwrap();
    pa.set_pageblock_migratetype(pfn, MigrateType::HighAtomic);
    pa.zones[zt.index()].nr_reserved_highatomic += PAGEBLOCK_NR_PAGES;
    pa.refresh_fast_paths();
    pa.free_pages(pfn, order(9)).unwrap();
    let now = pa.free_area_counts(zt);
    assert_eq!(now[10] + 1, boot[10], "not merged into order 10");
    assert_eq!(now[9], boot[9] + 2);
    assert_eq!(list_counts(&pa, zt, MigrateType::HighAtomic)[9], 1);
    pa.release_highatomic_reserve();
    assert_eq!(
        pa.free_area_counts(zt),
        boot,
        "merged once the reserve is released"
    );
    pa.check_invariants().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random allocations of every type and order, freed in random order:
    /// the invariants hold at each step, every pageblock has a valid type,
    /// the lists add up to nr_free, and once everything is freed and the
    /// HighAtomic reserve released, buddyinfo equals boot.
    #[test]
    fn any_mix_of_types_frees_back_to_boot(
        ops in proptest::collection::vec((0u8..6, 0u8..4, 0u8..4, any::<u16>()), 1..120),
        pcp in any::<bool>(),
    ) {
        let mut m = mem_map();
        let mut pa = test_machine_64m(&mut m);
        pa.set_pcp_enabled(pcp);
        let boot = pa.zones.each_ref().map(|z| z.free_area_counts());
        let mut live: Vec<(Pfn, Order)> = Vec::new();
        for (o, zone, mobility, pick) in ops {
            let zone_gfp = [GfpFlags::GFP_DMA, GfpFlags::GFP_DMA32, GfpFlags::empty(), GfpFlags::HIGHMEM][zone as usize];
            let mob = [GfpFlags::empty(), GfpFlags::MOVABLE, GfpFlags::RECLAIMABLE, GfpFlags::empty()][mobility as usize];
            let base = if mobility == 3 { GfpFlags::GFP_ATOMIC } else { GfpFlags::GFP_KERNEL };
            if pick % 17 == 1 {
                pa.drain_all_pages();
            } else if pick % 3 == 0 && !live.is_empty() {
                let (p, ord) = live.swap_remove(pick as usize % live.len());
                pa.free_pages(p, ord).unwrap();
            } else if let Ok(p) = pa.alloc_pages(base | zone_gfp | mob, order(o * 2), OwnerTag::API) {
                live.push((p, order(o * 2)));
            }
            prop_assert_eq!(pa.check_invariants(), Ok(()));
        }
        // A free block's list matches its pageblock's type, or the
        // ordinary type that stole it: the types that keep their own
        // accounting (HighAtomic, CMA, Isolate) never mix.
        for zt in ZoneType::ALL {
            for o in 0..NR_ORDERS {
                for mt in MigrateType::ALL {
                    let mut cur = pa.zones[zt.index()].free_area[o].free_list[mt.index()].head;
                    while crate::page::is_pfn_link(cur) {
                        let pb = pa.pageblock_migratetype(Pfn(u64::from(cur)));
                        prop_assert!(
                            pb == mt || (mt.is_mergeable() && pb.is_mergeable()),
                            "order-{} block {:#x} on the {:?} list in a {:?} pageblock", o, cur, mt, pb
                        );
                        cur = pa.mem_map[cur as usize].next;
                    }
                }
            }
        }
        for zt in ZoneType::ALL {
            let z = pa.zone(zt);
            for (o, area) in z.free_area.iter().enumerate() {
                let sum: u64 = MigrateType::ALL.iter().map(|&mt| pa.count_free_list(zt.index(), o, mt, u64::MAX).0).sum();
                prop_assert_eq!(sum, area.nr_free);
            }
        }
        for (p, o) in live {
            pa.free_pages(p, o).unwrap();
        }
        pa.drain_all_pages();
        pa.release_highatomic_reserve();
        prop_assert_eq!(pa.zones.each_ref().map(|z| z.free_area_counts()), boot);
        prop_assert_eq!(pa.check_invariants(), Ok(()));
    }
}
