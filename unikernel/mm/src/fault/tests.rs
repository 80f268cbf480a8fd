//! Demand paging on the simulated machine of the vmalloc tests (64 MiB,
//! HighMem above 32 MiB): each row of the module doc's table, resident
//! accounting, `pgfault`, teardown, and a fault at exhaustion.

use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::platform::sim::SimPlatform;
use crate::vmalloc::tests::{areas, machine, mem_map};
use crate::vmalloc::{VmallocError, VmapArea, vfree, vmalloc, vmalloc_lazy};
use crate::zone::ZoneType;

const P: u64 = PAGE_SIZE;
/// pfn 0 is memblock-reserved ("bios") in the test machine: never on a
/// free list, like the kernel's `empty_zero_page` in .bss.
const ZERO: Pfn = Pfn(0);

fn setup(sim: &SimPlatform) -> std::boxed::Box<VmapAreaAllocator> {
    sim.with_frame(ZERO, &mut |b| b.fill(0));
    let mut a = areas();
    a.set_zero_page(ZERO);
    a
}

fn pgfault<Pl: Platform>(mm: &MemoryManager<'_, Pl>) -> u64 {
    mm.lock().vm_events().get(VmEvent::PgFault)
}

fn area_at(a: &VmapAreaAllocator, start: VirtAddr) -> VmapArea {
    *a.find(start).unwrap()
}

#[test]
fn lazy_area_maps_nothing_until_touched() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = setup(sim);
    let boot = mm.drained_buddyinfo();
    let area = vmalloc_lazy(&mut *a, sim, 64 * P, "lazy").unwrap();
    assert!(area.lazy);
    assert_eq!((area.nr_pages, area.resident), (64, 0));
    assert_eq!(sim.nr_ptes(), 0, "nothing mapped up front");
    assert_eq!(mm.drained_buddyinfo(), boot, "no frame taken");
    assert_eq!(a.stats().vmalloc_pages, 0, "VmallocUsed counts frames");
    a.check_invariants().unwrap();
}

#[test]
fn read_maps_the_zero_page_read_only_and_write_replaces_it() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = setup(sim);
    let area = vmalloc_lazy(&mut *a, sim, 4 * P, "lazy").unwrap();
    let before = pgfault(&mm);
    let addr = VirtAddr(area.start.0 + P + 123);

    let r = handle_vmalloc_fault(&mut *a, &mm, sim, addr, FaultAccess::Read).unwrap();
    assert_eq!(r, FaultResolution::ZeroPage);
    assert_eq!(
        sim.pte(VirtAddr(area.start.0 + P)),
        Some((ZERO, MapProt::KERNEL_RO))
    );
    assert_eq!(
        area_at(&a, area.start).resident,
        0,
        "the zero page is shared"
    );

    let flushes = sim.tlb_flushes();
    let r = handle_vmalloc_fault(&mut *a, &mm, sim, addr, FaultAccess::Write).unwrap();
    let FaultResolution::NewFrame(frame) = r else {
        panic!("{r:?}")
    };
    assert_ne!(frame, ZERO);
    assert_eq!(
        sim.pte(VirtAddr(area.start.0 + P)),
        Some((frame, MapProt::KERNEL))
    );
    assert!(sim.tlb_flushes() > flushes, "the zero-page PTE was flushed");
    assert_eq!(sim.unflushed(), 0);
    assert!(sim.frame(frame).iter().all(|&b| b == 0), "a zeroed frame");
    assert!(
        sim.frame(ZERO).iter().all(|&b| b == 0),
        "zero page untouched"
    );
    {
        let pages = mm.lock();
        assert_eq!(pages.zone_of(frame), Some(ZoneType::HighMem));
        assert_eq!(pages.page(frame).unwrap().owner, OwnerTag::VMALLOC);
    }
    assert_eq!(area_at(&a, area.start).resident, 1);
    assert_eq!(pgfault(&mm) - before, 2, "one pgfault per fault");
    a.check_invariants().unwrap();
}

#[test]
fn write_to_an_untouched_page_installs_a_frame_directly() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = setup(sim);
    let area = vmalloc_lazy(&mut *a, sim, 4 * P, "lazy").unwrap();
    let r = handle_vmalloc_fault(&mut *a, &mm, sim, area.start, FaultAccess::Write).unwrap();
    assert!(matches!(r, FaultResolution::NewFrame(_)));
    assert_eq!(sim.nr_ptes(), 1);
    // Faulting again on a page that already has its frame is spurious.
    let again = handle_vmalloc_fault(&mut *a, &mm, sim, area.start, FaultAccess::Read).unwrap();
    assert_eq!(again, FaultResolution::Spurious);
    let again = handle_vmalloc_fault(&mut *a, &mm, sim, area.start, FaultAccess::Write).unwrap();
    assert_eq!(again, FaultResolution::Spurious);
    assert_eq!(area_at(&a, area.start).resident, 1);
}

#[test]
fn faults_outside_lazy_areas_are_bad() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = setup(sim);
    let lazy = vmalloc_lazy(&mut *a, sim, 2 * P, "lazy").unwrap();
    let eager = vmalloc(&mut *a, &mm, sim, 2 * P, "eager").unwrap();
    let before = pgfault(&mm);
    for (addr, what) in [
        (lazy.guard_page(), "the guard page"),
        (eager.start, "an eager area"),
        (eager.guard_page(), "an eager guard page"),
        (VirtAddr(eager.reserved_end().0 + 16 * P), "no area"),
    ] {
        for access in [FaultAccess::Read, FaultAccess::Write] {
            assert_eq!(
                handle_vmalloc_fault(&mut *a, &mm, sim, addr, access),
                Err(FaultError::BadArea),
                "{what}"
            );
        }
    }
    assert_eq!(pgfault(&mm), before, "bad faults are not pgfaults here");
    assert!(sim.pte(lazy.guard_page()).is_none());
}

#[test]
fn no_zero_page_no_lazy_area() {
    let mut a = areas();
    assert_eq!(
        vmalloc_lazy(&mut *a, &SimPlatform::new(1), P, "lazy").unwrap_err(),
        VmallocError::NoZeroPage
    );
}

#[test]
fn vfree_of_a_lazy_area_frees_its_frames_but_never_the_zero_page() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = setup(sim);
    let boot = mm.drained_buddyinfo();
    let area = vmalloc_lazy(&mut *a, sim, 16 * P, "lazy").unwrap();
    // Pages 0..4 read, 2..8 written, 8..16 untouched.
    for i in 0..4 {
        let v = VirtAddr(area.start.0 + i * P);
        handle_vmalloc_fault(&mut *a, &mm, sim, v, FaultAccess::Read).unwrap();
    }
    for i in 2..8 {
        let v = VirtAddr(area.start.0 + i * P);
        handle_vmalloc_fault(&mut *a, &mm, sim, v, FaultAccess::Write).unwrap();
    }
    assert_eq!(area_at(&a, area.start).resident, 6);
    assert_eq!(a.stats().vmalloc_pages, 6);
    assert_eq!(sim.nr_ptes(), 8);
    let freed = vfree(&mut *a, &mm, sim, area.start).unwrap();
    assert_eq!(freed.resident, 6);
    assert_eq!(
        mm.drained_buddyinfo(),
        boot,
        "every faulted frame went back"
    );
    assert_eq!((sim.nr_ptes(), sim.unflushed()), (0, 0));
    mm.lock().check_invariants().unwrap();
    a.check_invariants().unwrap();
}

#[test]
fn fault_at_exhaustion_is_oom_and_changes_nothing() {
    let mut mm_ = mem_map();
    let mm = machine(&mut mm_);
    let sim = mm.platform();
    let mut a = setup(sim);
    let area = vmalloc_lazy(&mut *a, sim, 4 * P, "lazy").unwrap();
    // Read first, so the write must replace the zero page.
    handle_vmalloc_fault(&mut *a, &mm, sim, area.start, FaultAccess::Read).unwrap();
    let mut hog = Vec::new();
    while let Ok(p) = mm.alloc_pages(LAZY_FAULT_GFP, Order::ZERO, OwnerTag::API) {
        hog.push(p);
    }
    for addr in [area.start, VirtAddr(area.start.0 + P)] {
        assert_eq!(
            handle_vmalloc_fault(&mut *a, &mm, sim, addr, FaultAccess::Write),
            Err(FaultError::Oom)
        );
    }
    assert_eq!(sim.pte(area.start), Some((ZERO, MapProt::KERNEL_RO)));
    assert!(sim.pte(VirtAddr(area.start.0 + P)).is_none());
    assert_eq!(area_at(&a, area.start).resident, 0);
    // Memory comes back (reclaim, an OOM kill): the retry succeeds.
    for p in hog.drain(..) {
        mm.free_pages(p, Order::ZERO).unwrap();
    }
    let r = handle_vmalloc_fault(&mut *a, &mm, sim, area.start, FaultAccess::Write).unwrap();
    assert!(matches!(r, FaultResolution::NewFrame(_)));
    vfree(&mut *a, &mm, sim, area.start).unwrap();
    assert_eq!(mm.drained_buddyinfo(), mm.boot_buddyinfo());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of reads and writes: resident = pages written, PTEs =
    /// pages touched, every written page has its own zeroed frame, every
    /// only-read page the zero page, and vfree restores buddyinfo.
    #[test]
    fn resident_pages_track_the_pages_written(
        ops in proptest::collection::vec((0u64..32, any::<bool>()), 0..96)
    ) {
        let mut mm_ = mem_map();
        let mm = machine(&mut mm_);
        let sim = mm.platform();
        let mut a = setup(sim);
        let boot = mm.drained_buddyinfo();
        let area = vmalloc_lazy(&mut *a, sim, 32 * P, "prop").unwrap();
        let (mut read, mut written) = ([false; 32], [false; 32]);
        for &(i, write) in &ops {
            let v = VirtAddr(area.start.0 + i * P + (i * 7) % P);
            let access = if write { FaultAccess::Write } else { FaultAccess::Read };
            handle_vmalloc_fault(&mut *a, &mm, sim, v, access).unwrap();
            if write { written[i as usize] = true } else { read[i as usize] = true }
        }
        let nr_written = written.iter().filter(|&&w| w).count() as u64;
        let nr_touched = (0..32).filter(|&i| read[i] || written[i]).count();
        prop_assert_eq!(area_at(&a, area.start).resident, nr_written);
        prop_assert_eq!(sim.nr_ptes(), nr_touched);
        for i in 0..32u64 {
            let pte = sim.pte(VirtAddr(area.start.0 + i * P));
            match (read[i as usize], written[i as usize]) {
                (_, true) => {
                    let (pfn, prot) = pte.unwrap();
                    prop_assert!(pfn != ZERO && prot == MapProt::KERNEL);
                }
                (true, false) => prop_assert_eq!(pte, Some((ZERO, MapProt::KERNEL_RO))),
                (false, false) => prop_assert_eq!(pte, None),
            }
        }
        // Spurious faults count too, as `handle_mm_fault()` counts on entry.
        prop_assert_eq!(pgfault(&mm), ops.len() as u64);
        vfree(&mut *a, &mm, sim, area.start).unwrap();
        prop_assert_eq!(mm.drained_buddyinfo(), boot);
        prop_assert_eq!(sim.nr_ptes(), 0);
    }
}
