//! Host tests for the VM event counters: the enum against Linux's order,
//! and the page allocator's hooks — `pgalloc_<zone>` equal to the pages
//! handed out from each zone (the kernel reserve's included), `pgfree` to
//! the pages freed (boot included), over fixed cases and random sequences,
//! with the allocator's invariants intact.

use proptest::prelude::*;

use super::*;
use crate::fault_inject::{FaultAttr, FaultConfig};
use crate::gfp::GfpFlags;
use crate::page::{OwnerTag, Page};
use crate::page_alloc::{AllocError, PageAlloc};
use crate::types::{Order, Pfn};
use crate::zone::ZoneLayout;

#[test]
fn all_is_in_discriminant_order_and_names_are_distinct() {
    for (i, e) in VmEvent::ALL.iter().enumerate() {
        assert_eq!(*e as usize, i, "{e:?}");
    }
    let mut names: Vec<_> = VmEvent::ALL.iter().map(|e| e.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), NR_VM_EVENTS);
}

#[test]
fn maintained_is_sorted_without_duplicates() {
    assert!(MAINTAINED.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn per_zone_items_follow_zone_order() {
    for zt in ZoneType::ALL {
        let mut ev = VmEvents::new();
        ev.count_zid(VmEvent::PgAllocDma, zt.index(), 3);
        ev.count_zid(VmEvent::AllocStallDma, zt.index(), 1);
        assert_eq!(ev.get(VmEvent::pgalloc(zt)), 3);
        assert_eq!(ev.get(VmEvent::allocstall(zt)), 1);
        let total: u64 = VmEvent::ALL.iter().map(|&e| ev.get(e)).sum();
        assert_eq!(total, 4);
    }
    assert_eq!(VmEvent::pgalloc(ZoneType::HighMem).name(), "pgalloc_high");
    assert_eq!(
        VmEvent::allocstall(ZoneType::Dma32).name(),
        "allocstall_dma32"
    );
}

#[test]
fn count_inc_get_and_wrap() {
    let mut ev = VmEvents::default();
    ev.count(VmEvent::PgFree, 8);
    ev.inc(VmEvent::PgFree);
    ev.inc(VmEvent::OomKill);
    assert_eq!(ev.get(VmEvent::PgFree), 9);
    assert_eq!(ev.get(VmEvent::OomKill), 1);
    assert_eq!(ev.get(VmEvent::PgFault), 0);
    ev.count(VmEvent::PgFault, u64::MAX);
    ev.inc(VmEvent::PgFault);
    assert_eq!(ev.get(VmEvent::PgFault), 0);
    let shown: Vec<_> = ev.maintained().map(|(e, _)| e).collect();
    assert_eq!(shown, MAINTAINED);
    assert!(VmEvent::PgFree.is_maintained() && !VmEvent::CompactDaemonWake.is_maintained());
    ev.count(VmEvent::PgpgIn, 9); // sectors
    assert_eq!(ev.get(VmEvent::PgpgIn), 9);
    assert_eq!(ev.reported(VmEvent::PgpgIn), 4); // kB
    assert_eq!(ev.reported(VmEvent::PgFree), 9);
}

// ----------------------------------------------------------------------
// Page allocator hooks
// ----------------------------------------------------------------------

fn order(o: u8) -> Order {
    Order::new(o).unwrap()
}

/// 40 MiB with a firmware hole and zone boundaries that are not
/// MAX_ORDER-aligned: DMA [0, 4096), DMA32 [4096, 6000), HighMem
/// [6000, 10000); frames [1, 159) and [512, 10000) free (9805 pages);
/// watermarks and the kernel reserve (64 DMA32 pages) set up.
fn machine() -> PageAlloc<'static> {
    let layout = ZoneLayout {
        lowmem_pfn: Pfn(6000),
        max_pfn: Pfn(10_000),
    };
    let mem_map = Box::leak(vec![Page::new_reserved(); 10_000].into_boxed_slice());
    let mut pa = PageAlloc::new(mem_map, layout).unwrap();
    pa.mark_ram(Pfn(0), Pfn(159)).unwrap();
    pa.mark_ram(Pfn(256), Pfn(10_000)).unwrap();
    pa.free_bootmem(Pfn(1), Pfn(159)).unwrap();
    pa.free_bootmem(Pfn(512), Pfn(10_000)).unwrap();
    pa.setup_watermarks();
    // Exact buddy predictions: the per-CPU lists are off here (the
    // property tests and page_alloc::pcp's tests run them on).
    pa.set_pcp_enabled(false);
    let r = pa.setup_kernel_reserve().unwrap();
    assert_eq!((r.zone, r.nr_pages), (ZoneType::Dma32, 64));
    pa
}

const BOOT_PAGES: u64 = 158 + 9488;

fn pgalloc(pa: &PageAlloc<'_>) -> [u64; NR_ZONES] {
    ZoneType::ALL.map(|zt| pa.vm_events().get(VmEvent::pgalloc(zt)))
}

/// What must hold between the counters and the structures whatever
/// happened (as long as nothing was taken with `take_page_off_buddy`):
/// every page ever freed is free now or was allocated since — the free
/// pages of the zones, of the per-CPU lists and of the reserve's pool are
/// `pgfree - pgalloc`;
/// and no event outside [`MAINTAINED`] moved.
fn check_events(pa: &PageAlloc<'_>) -> Result<(), String> {
    let ev = pa.vm_events();
    let pool_free = pa.kernel_reserve().map_or(0, |r| r.free_pages);
    let allocated: u64 = pgalloc(pa).iter().sum();
    if pa.nr_free_pages() + pa.nr_pcp_pages() + pool_free != ev.get(VmEvent::PgFree) - allocated {
        return Err(format!(
            "free {} + pcp {} + pool {} != pgfree {} - pgalloc {}",
            pa.nr_free_pages(),
            pa.nr_pcp_pages(),
            pool_free,
            ev.get(VmEvent::PgFree),
            allocated
        ));
    }
    for e in VmEvent::ALL {
        if !e.is_maintained() && ev.get(e) != 0 {
            return Err(format!(
                "{} = {} but not in MAINTAINED",
                e.name(),
                ev.get(e)
            ));
        }
    }
    pa.check_invariants().map_err(|e| e.to_string())?;
    pa.check_kernel_reserve().map_err(|e| e.to_string())
}

#[test]
fn boot_counts_pgfree_and_the_reserve_carve_counts_nothing() {
    let pa = machine();
    assert_eq!(pa.vm_events().get(VmEvent::PgFree), BOOT_PAGES);
    assert_eq!(pgalloc(&pa), [0; NR_ZONES]);
    check_events(&pa).unwrap();
}

#[test]
fn each_allocation_counts_its_zone_and_each_free_counts_pgfree() {
    let mut pa = machine();
    let cases = [
        (GfpFlags::GFP_KERNEL, 0, ZoneType::Dma32),
        (GfpFlags::GFP_HIGHUSER, 3, ZoneType::HighMem),
        (GfpFlags::GFP_DMA, 2, ZoneType::Dma),
        // The order-9 half of DMA32's one order-10 block, which the kernel
        // reserve (Unmovable) claimed at boot.
        (GfpFlags::GFP_DMA32, 9, ZoneType::Dma32),
        // None left there: falls back to DMA.
        (GfpFlags::GFP_KERNEL, 10, ZoneType::Dma),
    ];
    let mut expect = [0; NR_ZONES];
    let mut got = Vec::new();
    for (gfp, o, zt) in cases {
        let pfn = pa.alloc_pages(gfp, order(o), OwnerTag::API).unwrap();
        assert_eq!(pa.zone_of(pfn), Some(zt), "{gfp}");
        expect[zt.index()] += 1 << o;
        assert_eq!(pgalloc(&pa), expect);
        check_events(&pa).unwrap();
        got.push((pfn, order(o)));
    }
    for (i, &(pfn, o)) in got.iter().enumerate() {
        pa.free_pages(pfn, o).unwrap();
        let freed: u64 = got[..=i].iter().map(|(_, o)| o.nr_pages()).sum();
        assert_eq!(pa.vm_events().get(VmEvent::PgFree), BOOT_PAGES + freed);
        check_events(&pa).unwrap();
    }
    // Allocation counters never go down.
    assert_eq!(pgalloc(&pa), expect);
}

#[test]
fn reserve_allocations_count_in_the_reserve_zone() {
    let mut pa = machine();
    // Drain the zones so only the reserve can serve.
    let mut hog = Vec::new();
    for gfp in [GfpFlags::GFP_ATOMIC, GfpFlags::GFP_ATOMIC | GfpFlags::DMA] {
        while let Ok(p) = pa.alloc_pages(gfp, Order::ZERO, OwnerTag::API) {
            hog.push(p);
        }
    }
    let before = pgalloc(&pa);
    let memalloc = GfpFlags::GFP_ATOMIC | GfpFlags::MEMALLOC;
    let a = pa.alloc_pages(memalloc, order(2), OwnerTag::HEAP).unwrap();
    let b = pa.alloc_pages(memalloc, order(0), OwnerTag::HEAP).unwrap();
    assert!(pa.in_kernel_reserve(a) && pa.in_kernel_reserve(b));
    assert_eq!(pa.kernel_reserve().unwrap().allocations, 2);
    let mut expect = before;
    expect[ZoneType::Dma32.index()] += 5;
    assert_eq!(pgalloc(&pa), expect);
    check_events(&pa).unwrap();
    // The heap's reserve-first path counts the same way.
    pa.set_heap_reserve_first(true);
    let c = pa
        .alloc_heap_pages(memalloc, order(1), OwnerTag::HEAP)
        .unwrap();
    assert!(pa.in_kernel_reserve(c));
    expect[ZoneType::Dma32.index()] += 2;
    assert_eq!(pgalloc(&pa), expect);
    // Back to the reserve: pgfree like any free.
    let pgfree = pa.vm_events().get(VmEvent::PgFree);
    pa.free_pages(a, order(2)).unwrap();
    pa.free_pages(c, order(1)).unwrap();
    assert_eq!(pa.vm_events().get(VmEvent::PgFree), pgfree + 6);
    check_events(&pa).unwrap();
    pa.free_pages(b, Order::ZERO).unwrap();
    for p in hog {
        pa.free_pages(p, Order::ZERO).unwrap();
    }
    check_events(&pa).unwrap();
}

#[test]
fn failures_and_refusals_count_nothing() {
    let mut pa = machine();
    // DMA's order-10 blocks: [1024, 2048), [2048, 3072), [3072, 4096).
    for _ in 0..3 {
        pa.alloc_pages(GfpFlags::GFP_DMA, order(10), OwnerTag::API)
            .unwrap();
    }
    let events = pa.vm_events();
    let bad = GfpFlags::DMA | GfpFlags::HIGHMEM;
    assert!(matches!(
        pa.alloc_pages(bad, Order::ZERO, OwnerTag::API),
        Err(AllocError::ZoneBad { .. })
    ));
    // No DMA block of order 10 left.
    assert!(
        pa.alloc_pages(GfpFlags::GFP_DMA, order(10), OwnerTag::API)
            .is_err()
    );
    // Injected failure.
    let mut attr = FaultAttr::new();
    attr.setup(FaultConfig {
        interval: 1,
        probability: 100,
        space: 0,
        times: 1,
    });
    pa.fail_page_alloc_mut().attr = attr;
    // fail_page_alloc's defaults spare sleeping and order-0 requests.
    assert!(
        pa.alloc_pages(GfpFlags::GFP_ATOMIC, order(1), OwnerTag::API)
            .is_err()
    );
    assert_eq!(pa.fail_page_alloc().attr.injected(), 1);
    // Refused frees: not allocated, wrong order, a reserve pool frame.
    let pfn = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, order(1), OwnerTag::API)
        .unwrap();
    let events_with_one = pa.vm_events();
    assert!(pa.free_pages(Pfn(600), Order::ZERO).is_err());
    assert!(pa.free_pages(pfn, Order::ZERO).is_err());
    let pool = pa.kernel_reserve().unwrap().start_pfn;
    assert!(pa.free_pages(pool, Order::ZERO).is_err());
    assert_eq!(pa.vm_events(), events_with_one);
    pa.free_pages(pfn, order(1)).unwrap();
    let mut expect = events;
    expect.count(VmEvent::PgAllocDma32, 2);
    expect.count(VmEvent::PgFree, 2);
    assert_eq!(pa.vm_events(), expect);
    check_events(&pa).unwrap();
}

#[test]
fn take_page_off_buddy_counts_no_pgalloc_but_its_free_counts() {
    let mut pa = machine();
    let events = pa.vm_events();
    pa.take_page_off_buddy(Pfn(520), order(3), OwnerTag::SLAB)
        .unwrap();
    assert_eq!(pa.vm_events(), events);
    pa.free_pages(Pfn(520), order(3)).unwrap();
    assert_eq!(pa.vm_events().get(VmEvent::PgFree), BOOT_PAGES + 8);
    // Those 8 pages were freed without being counted as allocated.
    let ev = pa.vm_events();
    let allocated: u64 = pgalloc(&pa).iter().sum();
    assert_eq!(
        pa.nr_free_pages() + pa.nr_pcp_pages() + 64,
        ev.get(VmEvent::PgFree) - allocated - 8
    );
}

#[test]
fn vm_events_mut_is_the_same_counters() {
    let mut pa = machine();
    pa.vm_events_mut().inc(VmEvent::OomKill);
    pa.vm_events_mut().count(VmEvent::PgFault, 3);
    assert_eq!(pa.vm_events().get(VmEvent::OomKill), 1);
    assert_eq!(pa.vm_events().get(VmEvent::PgFault), 3);
}

// ----------------------------------------------------------------------
// Property test: random alloc/free traffic, the reserve included
// ----------------------------------------------------------------------

const GFP_MIX: [GfpFlags; 7] = [
    GfpFlags::GFP_KERNEL,
    GfpFlags::GFP_ATOMIC,
    GfpFlags::GFP_DMA,
    GfpFlags::GFP_DMA32,
    GfpFlags::GFP_HIGHUSER,
    GfpFlags::GFP_ATOMIC.union(GfpFlags::MEMALLOC),
    GfpFlags::GFP_KERNEL.union(GfpFlags::MEMALLOC),
];

#[derive(Clone, Debug)]
enum Op {
    Alloc { order: u8, gfp: usize, heap: bool },
    Free { idx: prop::sample::Index },
    HeapReserveFirst(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let ord = prop_oneof![4 => 0u8..=3, 1 => 0u8..=10];
    prop_oneof![
        6 => (ord, 0..GFP_MIX.len(), any::<bool>())
            .prop_map(|(order, gfp, heap)| Op::Alloc { order, gfp, heap }),
        4 => any::<prop::sample::Index>().prop_map(|idx| Op::Free { idx }),
        1 => any::<bool>().prop_map(Op::HeapReserveFirst),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn pgalloc_and_pgfree_match_the_pages_handed_out_and_freed(
        ops in prop::collection::vec(op(), 1..200)
    ) {
        let mut pa = machine();
        let mut handed_out = [0u64; NR_ZONES];
        let mut freed = BOOT_PAGES;
        let mut live: Vec<(Pfn, Order)> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { order: o, gfp, heap } => {
                    let gfp = GFP_MIX[gfp];
                    let o = order(o);
                    let res = if heap {
                        pa.alloc_heap_pages(gfp, o, OwnerTag::HEAP)
                    } else {
                        pa.alloc_pages(gfp, o, OwnerTag::API)
                    };
                    if let Ok(pfn) = res {
                        handed_out[pa.zone_of(pfn).unwrap().index()] += o.nr_pages();
                        live.push((pfn, o));
                    }
                }
                Op::Free { idx } => {
                    if !live.is_empty() {
                        let (pfn, o) = live.swap_remove(idx.index(live.len()));
                        pa.free_pages(pfn, o).unwrap();
                        freed += o.nr_pages();
                    }
                }
                Op::HeapReserveFirst(on) => pa.set_heap_reserve_first(on),
            }
            prop_assert_eq!(pgalloc(&pa), handed_out);
            prop_assert_eq!(pa.vm_events().get(VmEvent::PgFree), freed);
            check_events(&pa).map_err(TestCaseError::fail)?;
        }
        for (pfn, o) in live {
            pa.free_pages(pfn, o).unwrap();
            freed += o.nr_pages();
        }
        prop_assert_eq!(pa.vm_events().get(VmEvent::PgFree), freed);
        // Everything back: what was freed beyond boot is what was allocated.
        prop_assert_eq!(freed - BOOT_PAGES, handed_out.iter().sum::<u64>());
        check_events(&pa).map_err(TestCaseError::fail)?;
    }
}

// ----------------------------------------------------------------------
// Blocks per zone and order (`AllocCounters`)
// ----------------------------------------------------------------------

#[test]
fn alloc_counters_count_blocks_by_zone_and_order_and_failures_by_highest_zone() {
    let mut pa = machine();
    assert_eq!(
        *pa.alloc_counters(),
        AllocCounters::ZERO,
        "boot frees are not frees"
    );
    let (dma, dma32, high) = (
        ZoneType::Dma.index(),
        ZoneType::Dma32.index(),
        ZoneType::HighMem.index(),
    );
    let a = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, order(0), OwnerTag::API)
        .unwrap();
    let b = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, order(0), OwnerTag::API)
        .unwrap();
    let c = pa
        .alloc_pages(GfpFlags::GFP_HIGHUSER, order(3), OwnerTag::API)
        .unwrap();
    let d = pa
        .alloc_pages(GfpFlags::GFP_DMA, order(2), OwnerTag::API)
        .unwrap();
    let mut expect = AllocCounters::ZERO;
    expect.alloc[dma32][0] = 2;
    expect.alloc[high][3] = 1;
    expect.alloc[dma][2] = 1;
    assert_eq!(*pa.alloc_counters(), expect);
    // A wrong-order free is refused and counts nothing.
    assert!(pa.free_pages(c, order(2)).is_err());
    assert_eq!(*pa.alloc_counters(), expect);
    for (p, o) in [(a, 0), (b, 0), (c, 3), (d, 2)] {
        pa.free_pages(p, order(o)).unwrap();
    }
    expect.free[dma32][0] = 2;
    expect.free[high][3] = 1;
    expect.free[dma][2] = 1;
    assert_eq!(*pa.alloc_counters(), expect);
    // DMA is 16 MiB: no order-10 block is left there after the boot
    // reserve; an order-10 GFP_DMA request fails under DMA, order 10.
    let mut hog = Vec::new();
    while let Ok(p) = pa.alloc_pages(GfpFlags::GFP_DMA, order(10), OwnerTag::API) {
        hog.push(p);
    }
    expect.alloc[dma][10] = hog.len() as u64;
    expect.fail[dma][10] = 1;
    assert_eq!(*pa.alloc_counters(), expect);
    // A bad zone combination is a caller error, not a failure.
    assert!(matches!(
        pa.alloc_pages(GfpFlags::DMA | GfpFlags::DMA32, order(0), OwnerTag::API),
        Err(AllocError::ZoneBad { .. })
    ));
    assert_eq!(*pa.alloc_counters(), expect);
    check_events(&pa).unwrap();
}
