//! Host tests of the pkmap pool and the kmap_atomic stack over the
//! simulated page table (lowmem ends at 32 MiB).

use std::vec::Vec;

use super::*;
use crate::platform::sim::SimPlatform;

const LOWMEM_END: Pfn = Pfn((32 << 20) >> 12);
const P: u64 = PAGE_SIZE;

/// The i-th HighMem frame.
fn high(i: u64) -> Pfn {
    LOWMEM_END.add(i)
}

fn setup() -> (SimPlatform, Pkmap) {
    // No RAM needed: mapping never touches bytes.
    (SimPlatform::new(0), Pkmap::new(LOWMEM_END))
}

#[test]
fn kmap_of_lowmem_is_the_direct_map() {
    let (sim, mut pk) = setup();
    let pfn = Pfn(0x1234);
    assert_eq!(pk.kmap(&sim, pfn), Ok(VirtAddr(PAGE_OFFSET + 0x123_4000)));
    assert_eq!(
        pk.page_address(pfn),
        Some(VirtAddr(PAGE_OFFSET + 0x123_4000))
    );
    assert_eq!(pk.nr_mapped(), 0);
    assert_eq!(sim.nr_ptes(), 0);
    assert_eq!(pk.kunmap(pfn), Ok(()));
    // The last lowmem frame, and the first HighMem one.
    assert_eq!(
        pk.kmap(&sim, Pfn(LOWMEM_END.0 - 1)).unwrap().0,
        PAGE_OFFSET + (32 << 20) - P
    );
    assert_eq!(pk.kmap(&sim, high(0)), Ok(pkmap_addr(0)));
}

#[test]
fn kmap_refcounts_and_lazy_unmap() {
    let (sim, mut pk) = setup();
    let pfn = high(7);
    assert_eq!(
        pk.page_address(pfn),
        None,
        "an unmapped HighMem page has no address"
    );
    let v = pk.kmap(&sim, pfn).unwrap();
    assert_eq!(v, VirtAddr(PKMAP_BASE));
    assert_eq!(sim.translate(v), Some(pfn));
    assert_eq!(sim.pte(v).unwrap().1, MapProt::KERNEL);
    assert_eq!(pk.kmap(&sim, pfn), Ok(v), "second kmap reuses the slot");
    assert_eq!(sim.map_unmap_counts(), (1, 0));
    let e: Vec<_> = pk.slots().collect();
    assert_eq!(
        e,
        [PkmapEntry {
            slot: 0,
            virt: v,
            pfn,
            count: 3
        }]
    );
    assert_eq!(e[0].users(), 2);
    assert_eq!(pk.nr_used(), 1);
    pk.kunmap(pfn).unwrap();
    pk.kunmap(pfn).unwrap();
    // Unused but still mapped (count 1): lazily kept.
    assert_eq!(pk.slots().next().unwrap().count, 1);
    assert_eq!((pk.nr_used(), pk.nr_mapped()), (0, 1));
    assert_eq!(sim.translate(v), Some(pfn));
    assert_eq!(pk.page_address(pfn), Some(v));
    assert_eq!(pk.kunmap(pfn), Err(KmapError::NotMapped { pfn }));
    assert_eq!(
        pk.kunmap(high(8)),
        Err(KmapError::NotMapped { pfn: high(8) })
    );
    // kmap again: the cached mapping comes back without a new PTE.
    assert_eq!(pk.kmap(&sim, pfn), Ok(v));
    assert_eq!(sim.map_unmap_counts(), (1, 0));
    assert_eq!(pk.flush_stats(), (0, 0));
}

#[test]
fn slot_exhaustion_fails_with_no_slot_then_recovers() {
    let (sim, mut pk) = setup();
    for i in 0..LAST_PKMAP as u64 {
        assert_eq!(pk.kmap(&sim, high(i)), Ok(pkmap_addr(i as usize)));
    }
    assert_eq!(sim.nr_ptes(), LAST_PKMAP);
    assert_eq!(pk.kmap(&sim, high(5000)), Err(KmapError::NoSlot));
    assert_eq!(
        pk.flush_stats(),
        (0, 0),
        "nothing to flush: every slot has a user"
    );
    // Already-mapped pages can still take more users.
    assert_eq!(pk.kmap(&sim, high(3)), Ok(pkmap_addr(3)));
    // Release one slot: the next kmap flushes it lazily and takes it.
    pk.kunmap(high(100)).unwrap();
    let v = pk.kmap(&sim, high(5000)).unwrap();
    assert_eq!(v, pkmap_addr(100));
    assert_eq!(sim.translate(v), Some(high(5000)));
    assert_eq!(pk.flush_stats(), (1, 1));
    assert_eq!(sim.unflushed(), 0);
    assert_eq!(sim.stale_remaps(), 0, "the slot was flushed before reuse");
    assert_eq!(pk.page_address(high(100)), None);
    assert_eq!(pk.nr_used(), LAST_PKMAP);
    assert_eq!(pk.kmap(&sim, high(5001)), Err(KmapError::NoSlot));
}

#[test]
fn unused_slots_are_flushed_in_bulk_only_when_none_is_free() {
    let (sim, mut pk) = setup();
    for i in 0..LAST_PKMAP as u64 {
        pk.kmap(&sim, high(i)).unwrap();
        pk.kunmap(high(i)).unwrap();
    }
    // 1024 unused mappings linger; no flush so far.
    assert_eq!((pk.nr_used(), pk.nr_mapped()), (0, LAST_PKMAP));
    assert_eq!(sim.nr_ptes(), LAST_PKMAP);
    assert_eq!(sim.tlb_flushes(), 0);
    let flushes = sim.tlb_flushes();
    let v = pk.kmap(&sim, high(2000)).unwrap();
    // One flush of the whole window, then the search restarts next-fit.
    assert_eq!(sim.tlb_flushes() - flushes, 1);
    assert_eq!(pk.flush_stats(), (1, LAST_PKMAP as u64));
    assert_eq!(v, pkmap_addr(0));
    assert_eq!(sim.nr_ptes(), 1);
    assert_eq!(sim.unflushed(), 0);
    assert_eq!(sim.stale_remaps(), 0);
}

#[test]
fn free_slots_are_used_next_fit() {
    let (sim, mut pk) = setup();
    for i in 0..4 {
        pk.kmap(&sim, high(i)).unwrap();
    }
    pk.kunmap(high(1)).unwrap();
    // Slot 1 is unused but mapped (cached); the next new page takes slot 4.
    assert_eq!(pk.kmap(&sim, high(9)), Ok(pkmap_addr(4)));
    assert_eq!(
        pk.kmap(&sim, high(1)),
        Ok(pkmap_addr(1)),
        "cached mapping reused"
    );
}

#[test]
fn kunmap_by_slot() {
    let (sim, mut pk) = setup();
    let v = pk.kmap(&sim, high(1)).unwrap();
    let slot = pkmap_nr(v).unwrap();
    assert_eq!(pk.kunmap_slot(slot), Ok(high(1)));
    assert_eq!(pk.kunmap_slot(slot), Err(KmapError::NoSuchSlot { slot }));
    assert_eq!(pk.kunmap_slot(3), Err(KmapError::NoSuchSlot { slot: 3 }));
    assert_eq!(
        pk.kunmap_slot(LAST_PKMAP),
        Err(KmapError::NoSuchSlot { slot: LAST_PKMAP })
    );
    assert_eq!(pkmap_nr(VirtAddr(PKMAP_BASE + 5 * P + 17)), Some(5));
    assert_eq!(pkmap_nr(VirtAddr(PKMAP_BASE - 1)), None);
    assert_eq!(pkmap_nr(fixmap_addr(0)), None);
}

#[test]
fn kmap_map_failure_consumes_no_slot() {
    let (sim, mut pk) = setup();
    sim.fail_maps_after(Some(0));
    assert!(matches!(
        pk.kmap(&sim, high(1)),
        Err(KmapError::Map(MapError::NoMemory { .. }))
    ));
    assert_eq!(pk.nr_mapped(), 0);
    sim.fail_maps_after(None);
    assert_eq!(pk.kmap(&sim, high(1)), Ok(pkmap_addr(0)));
}

#[test]
fn kmap_atomic_is_a_stack() {
    let sim = SimPlatform::new(0);
    let mut st = KmapAtomicStack::new();
    let (i0, a) = st.push(&sim, high(1)).unwrap();
    let (i1, b) = st.push(&sim, Pfn(5)).unwrap();
    assert_eq!(
        (i0, a, i1, b),
        (0, VirtAddr(FIXMAP_BASE), 1, VirtAddr(FIXMAP_BASE + P))
    );
    assert_eq!(sim.translate(a), Some(high(1)));
    assert_eq!(sim.translate(b), Some(Pfn(5)));
    // Out of order: reported, nothing unmapped.
    assert_eq!(
        st.pop(&sim, a),
        Err(KmapError::AtomicOutOfOrder {
            expected: b,
            got: a
        })
    );
    assert_eq!(st.depth(), 2);
    assert_eq!(sim.translate(a), Some(high(1)));
    // In order, with any address inside the page.
    let flushes = sim.tlb_flushes();
    assert_eq!(st.pop(&sim, VirtAddr(b.0 + 123)), Ok(Pfn(5)));
    assert_eq!(st.pop(&sim, a), Ok(high(1)));
    assert_eq!(sim.tlb_flushes() - flushes, 2);
    assert_eq!((sim.nr_ptes(), sim.unflushed()), (0, 0));
    assert_eq!(st.pop(&sim, a), Err(KmapError::AtomicUnderflow { virt: a }));
}

/// Each CPU has its own window of slots: two CPUs' stacks at the same
/// depth map different addresses, neither sees the other's slots, and a
/// pop on one refuses the other's address.
#[test]
fn every_cpu_has_its_own_kmap_atomic_slots() {
    let sim = SimPlatform::new(0);
    let mut cpu0 = KmapAtomicStack::for_cpu(0);
    let mut cpu3 = KmapAtomicStack::for_cpu(3);
    let (i0, a0) = cpu0.push(&sim, high(1)).unwrap();
    let (i3, a3) = cpu3.push(&sim, high(2)).unwrap();
    assert_eq!((i0, i3), (0, 0));
    assert_eq!(a0, fixmap_addr(0));
    assert_eq!(a3, fixmap_addr_cpu(3, 0));
    assert_eq!(a3.0 - a0.0, 3 * NR_FIX_KMAP as u64 * PAGE_SIZE);
    assert!(a3.0 + PAGE_SIZE <= crate::layout::FIXMAP_END);
    assert_eq!(sim.translate(a0), Some(high(1)));
    assert_eq!(sim.translate(a3), Some(high(2)));
    assert!(matches!(
        cpu3.pop(&sim, a0),
        Err(KmapError::AtomicOutOfOrder { .. })
    ));
    assert_eq!(cpu3.pop(&sim, a3), Ok(high(2)));
    assert_eq!(sim.translate(a0), Some(high(1)), "CPU 0's slot untouched");
    assert_eq!(cpu0.pop(&sim, a0), Ok(high(1)));
    // The last CPU's last slot ends the fixmap.
    assert_eq!(
        fixmap_addr_cpu(crate::types::NR_CPUS - 1, NR_FIX_KMAP - 1).0 + PAGE_SIZE,
        crate::layout::FIXMAP_END
    );
}

#[test]
fn kmap_atomic_depth_is_bounded() {
    let sim = SimPlatform::new(0);
    let mut st = KmapAtomicStack::default();
    for i in 0..NR_FIX_KMAP {
        assert_eq!(st.push(&sim, high(i as u64)), Ok((i, fixmap_addr(i))));
    }
    assert_eq!(st.push(&sim, high(99)), Err(KmapError::AtomicOverflow));
    assert_eq!(st.depth(), NR_FIX_KMAP);
    for i in (0..NR_FIX_KMAP).rev() {
        assert_eq!(st.pop(&sim, fixmap_addr(i)), Ok(high(i as u64)));
    }
    // Slots are reused with no stale translation.
    st.push(&sim, high(50)).unwrap();
    assert_eq!(sim.stale_remaps(), 0);
    // A map failure leaves the depth alone.
    sim.fail_maps_after(Some(0));
    assert!(matches!(st.push(&sim, high(51)), Err(KmapError::Map(_))));
    assert_eq!(st.depth(), 1);
}

#[test]
fn errors_display() {
    let s = std::format!(
        "{}",
        KmapError::AtomicOutOfOrder {
            expected: fixmap_addr(1),
            got: fixmap_addr(0)
        }
    );
    assert!(s.contains("out of order"), "{s}");
    assert_eq!(
        std::format!("{}", KmapError::NoSlot),
        "all 1024 pkmap slots are in use"
    );
}
