//! Compaction on the simulated 64 MiB machine of the vmalloc tests (DMA
//! [0,16M), DMA32 [16M,32M), HighMem [32M,64M), a mem= hole at 56–58M):
//! pages really move (their bytes are checked at the new frame), owners
//! are told, pinned pages stay, and the free memory coalesces.

use std::collections::BTreeMap;
use std::vec::Vec;

use super::*;
use crate::platform::sim::SimPlatform;
use crate::vmalloc::tests::{machine, mem_map};

/// A test owner: movable pages by current frame, with the byte pattern
/// each must hold; some pinned.
#[derive(Default)]
struct Owner {
    pages: BTreeMap<u64, u8>,
    pinned: Vec<u64>,
    told: u64,
}

impl MigrateOwner for Owner {
    fn can_migrate(&mut self, pfn: Pfn) -> bool {
        !self.pinned.contains(&pfn.0)
    }
    fn migrated(&mut self, moves: &[(Pfn, Pfn)]) {
        for &(src, dst) in moves {
            let byte = self.pages.remove(&src.0).expect("a page of ours moved");
            assert!(self.pages.insert(dst.0, byte).is_none());
            self.told += 1;
        }
    }
}

fn order(o: u8) -> Order {
    Order::new(o).unwrap()
}

/// Fills HighMem with movable pages, then frees every other one: half of
/// the zone free, nothing above order 0. Returns the owner of the rest.
fn checkerboard(mm: &MemoryManager<'_, SimPlatform>) -> Owner {
    let mut owner = Owner::default();
    let mut all = Vec::new();
    {
        // Every HighMem frame, watermarks or not.
        let mut pa = mm.lock();
        let zi = ZoneType::HighMem.index();
        while let Some(p) = pa.rmqueue_smallest(zi, order(0), MigrateType::Movable) {
            pa.prep_new_page(p, order(0), OwnerTag::API);
            all.push(p);
        }
    }
    all.sort();
    for (i, &p) in all.iter().enumerate() {
        if i % 2 == 0 {
            let byte = (p.0 % 251) as u8;
            mm.fill(p, 1, byte);
            mm.lock().set_movable(p, true).unwrap();
            owner.pages.insert(p.0, byte);
        } else {
            mm.free_pages(p, order(0)).unwrap();
        }
    }
    owner
}

fn highmem_counts(mm: &MemoryManager<'_, SimPlatform>) -> [u64; crate::types::NR_ORDERS] {
    mm.lock().free_area_counts(ZoneType::HighMem)
}

fn assert_contents(mm: &MemoryManager<'_, SimPlatform>, owner: &Owner) {
    for (&pfn, &byte) in &owner.pages {
        let f = mm.platform().frame(Pfn(pfn));
        assert!(f.iter().all(|&b| b == byte), "pfn {pfn:#x} lost its bytes");
        let pa = mm.lock();
        let p = pa.page(Pfn(pfn)).unwrap();
        assert!(p.is_head() && p.flags.contains(PageFlags::MOVABLE));
        assert_eq!(p.owner, OwnerTag::API);
    }
}

#[test]
fn compact_memory_moves_pages_up_and_frees_high_orders_below() {
    let mut m = mem_map();
    let mm = machine(&mut m);
    let mut owner = checkerboard(&mm);
    // Some of the kept pages are unmovable (no MOVABLE mark): they stay.
    let unmovable: Vec<u64> = owner.pages.keys().copied().step_by(7).collect();
    for &p in &unmovable {
        mm.lock().set_movable(Pfn(p), false).unwrap();
        owner.pages.remove(&p);
    }
    let before = highmem_counts(&mm);
    mm.drain_all_pages(); // compaction drains them: count them in before
    let free_before = mm.lock().zone(ZoneType::HighMem).free_pages;
    assert_eq!(
        before[1..].iter().sum::<u64>(),
        0,
        "{before:?}: only order-0 holes"
    );
    let n = owner.pages.len() as u64;

    let s = mm.compact_zone(ZoneType::HighMem, None, &mut owner);
    assert_eq!(s.result, CompactResult::Complete);
    assert!(s.migrated > n / 3, "{s:?}");
    assert_eq!(s.failed, 0);
    assert_eq!(owner.told, s.migrated, "every move was reported");
    assert_eq!(owner.pages.len() as u64, n, "no page lost");
    assert_contents(&mm, &owner);

    for &p in &unmovable {
        let pa = mm.lock();
        let pg = pa.page(Pfn(p)).unwrap();
        assert!(
            pg.is_head() && pg.owner == OwnerTag::API,
            "unmovable {p:#x} was moved"
        );
        drop(pa);
        assert!(
            mm.platform()
                .frame(Pfn(p))
                .iter()
                .all(|&b| b == (p % 251) as u8)
        );
    }
    let after = highmem_counts(&mm);
    assert_eq!(mm.lock().zone(ZoneType::HighMem).free_pages, free_before);
    // An unmovable page every 14 frames pins the layout: free runs up to
    // 13 frames long form between them (order 3), no longer.
    assert!(after[3] > 0, "order-3 blocks formed: {after:?}");
    // Used pages gathered at the top: the lowest owned frame is above
    // every free frame but a few.
    let ev = mm.lock().vm_events();
    assert_eq!(ev.get(VmEvent::PgMigrateSuccess), s.migrated);
    assert_eq!(ev.get(VmEvent::CompactMigrateScanned), s.migrate_scanned);
    assert_eq!(ev.get(VmEvent::CompactFreeScanned), s.free_scanned);
    assert!(s.migrate_scanned > 0 && s.free_scanned > 0);
    mm.lock().check_invariants().unwrap();
    // Nothing was left isolated.
    let pa = mm.lock();
    for pfn in 0..pa.max_pfn().0 {
        assert_ne!(pa.page(Pfn(pfn)).unwrap().owner, OwnerTag::COMPACTION);
    }
}

#[test]
fn pinned_pages_stay_and_count_as_failures() {
    let mut m = mem_map();
    let mm = machine(&mut m);
    let mut owner = checkerboard(&mm);
    let pinned: Vec<u64> = owner.pages.keys().copied().step_by(10).collect();
    owner.pinned = pinned.clone();
    let s = mm.compact_zone(ZoneType::HighMem, None, &mut owner);
    assert!(s.failed > 0 && s.failed <= pinned.len() as u64, "{s:?}");
    for p in &pinned {
        assert!(owner.pages.contains_key(p), "pinned {p:#x} moved");
    }
    assert_eq!(mm.lock().vm_events().get(VmEvent::PgMigrateFail), s.failed);
    assert_contents(&mm, &owner);
    mm.lock().check_invariants().unwrap();
}

#[test]
fn lru_pages_move_with_their_lru_position() {
    let mut m = mem_map();
    let mm = machine(&mut m);
    let mut owner = checkerboard(&mm);
    // Put the owned pages on the LRU too (the page cache's case), some
    // active.
    {
        let mut pa = mm.lock();
        for (i, &p) in owner.pages.keys().enumerate() {
            pa.lru_add(Pfn(p)).unwrap();
            if i % 3 == 0 {
                pa.mark_page_accessed(Pfn(p)).unwrap();
                pa.mark_page_accessed(Pfn(p)).unwrap();
            }
        }
    }
    let sizes = mm.lock().lru_sizes(ZoneType::HighMem);
    let s = mm.compact_zone(ZoneType::HighMem, None, &mut owner);
    assert!(s.migrated > 0);
    let pa = mm.lock();
    assert_eq!(
        pa.lru_sizes(ZoneType::HighMem),
        sizes,
        "LRU sizes unchanged"
    );
    for &p in owner.pages.keys() {
        assert!(pa.page(Pfn(p)).unwrap().flags.contains(PageFlags::LRU));
    }
    pa.check_lru().unwrap();
    pa.check_invariants().unwrap();
}

#[test]
fn direct_compaction_stops_once_the_order_is_free() {
    // The same checkerboard twice: compacted whole, and for an order-4
    // allocation, which stops as soon as an order-4 block is free.
    let (mut m1, mut m2) = (mem_map(), mem_map());
    let (whole_mm, direct_mm) = (machine(&mut m1), machine(&mut m2));
    let mut whole_owner = checkerboard(&whole_mm);
    let whole = whole_mm.compact_zone(ZoneType::HighMem, None, &mut whole_owner);
    let mut owner = checkerboard(&direct_mm);
    let zt = ZoneType::HighMem;
    assert_eq!(
        direct_mm.lock().compaction_suitable(zt, order(4)),
        CompactResult::Complete
    );
    let r = direct_mm.try_to_compact_pages(GfpFlags::GFP_HIGHUSER_MOVABLE, order(4), &mut owner);
    assert_eq!(r, CompactResult::Success);
    let pa = direct_mm.lock();
    let ev = pa.vm_events();
    assert_eq!(
        (
            ev.get(VmEvent::CompactStall),
            ev.get(VmEvent::CompactSuccess),
            ev.get(VmEvent::CompactFail)
        ),
        (1, 1, 0)
    );
    let moved = ev.get(VmEvent::PgMigrateSuccess);
    assert!(
        moved > 0 && moved < whole.migrated,
        "{moved} vs {}",
        whole.migrated
    );
    assert!(pa.free_area_counts(zt)[4..].iter().any(|&n| n > 0));
    // The allocation itself now succeeds in HighMem.
    drop(pa);
    let p = direct_mm
        .alloc_pages(GfpFlags::GFP_HIGHUSER_MOVABLE, order(4), OwnerTag::API)
        .unwrap();
    assert_eq!(direct_mm.lock().zone_of(p), Some(zt));
    assert_contents(&direct_mm, &owner);
}

#[test]
fn deferral_follows_linux() {
    let mut d = CompactDefer::NEW;
    // Never failed: never deferred.
    assert!(!d.deferred(order(3)));
    d.defer(order(3));
    assert_eq!(d.defer_shift, 1);
    // 1 << 1 = 2 attempts: the first is skipped, the second tried.
    assert!(d.deferred(order(3)));
    assert!(!d.deferred(order(3)));
    for _ in 0..10 {
        d.defer(order(3));
    }
    assert_eq!(d.defer_shift, COMPACT_MAX_DEFER_SHIFT);
    // Orders below the lowest failure are never deferred.
    d.order_failed = 3;
    assert!(!d.deferred(order(2)));
    let skipped = (0..64).filter(|_| d.deferred(order(5))).count();
    assert_eq!(skipped, 63);
    d.reset(order(5), true);
    assert_eq!((d.considered, d.defer_shift, d.order_failed), (0, 0, 6));
}

#[test]
fn compaction_is_skipped_without_room_to_migrate_into() {
    let mut m = mem_map();
    let mm = machine(&mut m);
    // Fill HighMem to just above min: compact_gap (2 << order) no longer
    // fits above the watermark.
    {
        let mut pa = mm.lock();
        let zi = ZoneType::HighMem.index();
        while pa.zone(ZoneType::HighMem).free_pages > pa.zone(ZoneType::HighMem).watermarks.min + 8
        {
            let p = pa.rmqueue_mt(zi, order(0), MigrateType::Movable).unwrap();
            pa.prep_new_page(p, order(0), OwnerTag::API);
        }
    }
    assert_eq!(
        mm.lock().compaction_suitable(ZoneType::HighMem, order(5)),
        CompactResult::Skipped
    );
    // Direct compaction skips HighMem and finds DMA32 able to serve the
    // request as it is: no page was scanned.
    let mut none = Owner::default();
    let r = mm.try_to_compact_pages(GfpFlags::GFP_HIGHUSER, order(5), &mut none);
    assert_eq!(r, CompactResult::Success);
    let pa = mm.lock();
    let ev = pa.vm_events();
    assert_eq!(ev.get(VmEvent::CompactStall), 1);
    assert_eq!(ev.get(VmEvent::CompactMigrateScanned), 0);
}
