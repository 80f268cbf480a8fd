//! Host tests for the buddy allocator: exact split/merge counts, refused
//! frees, q35-like boot maps through memblock, Linux watermark numbers, and
//! a property test over random alloc/free sequences.

use super::*;
use crate::memblock::Memblock;
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn order(o: u8) -> Order {
    Order::new(o).unwrap()
}

/// A `mem_map` that lives for the whole test (tests may leak).
fn mem_map(nr_pages: u64) -> &'static mut [Page] {
    Box::leak(vec![Page::new_reserved(); nr_pages as usize].into_boxed_slice())
}

/// Allocator over `layout` with RAM `ram` (PFN ranges) of which `free` is
/// handed to the buddy allocator.
fn build(layout: ZoneLayout, ram: &[(u64, u64)], free: &[(u64, u64)]) -> PageAlloc<'static> {
    let mut pa = PageAlloc::new(mem_map(layout.max_pfn.0), layout).unwrap();
    for &(s, e) in ram {
        pa.mark_ram(Pfn(s), Pfn(e)).unwrap();
    }
    for &(s, e) in free {
        pa.free_bootmem(Pfn(s), Pfn(e)).unwrap();
    }
    pa.check_invariants().unwrap();
    pa
}

/// Everything a refused call must leave untouched.
fn snapshot(pa: &PageAlloc<'_>) -> (Vec<Zone>, Vec<Page>) {
    (
        pa.zones().to_vec(),
        pa.mem_map[..pa.max_pfn().index()].to_vec(),
    )
}

fn counts(pa: &PageAlloc<'_>, zt: ZoneType) -> [u64; NR_ORDERS] {
    pa.free_area_counts(zt)
}

// ----------------------------------------------------------------------
// Split and merge
// ----------------------------------------------------------------------

/// A single 2 MiB DMA zone: one order-9 block.
fn two_mib() -> PageAlloc<'static> {
    build(
        ZoneLayout::from_bytes(896 * MIB, 2 * MIB),
        &[(0, 512)],
        &[(0, 512)],
    )
}

#[test]
fn split_and_merge_exact_counts() {
    let mut pa = two_mib();
    assert_eq!(
        counts(&pa, ZoneType::Dma),
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    );
    let pfn = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::SELFTEST)
        .unwrap();
    assert_eq!(pfn, Pfn(0));
    assert_eq!(
        counts(&pa, ZoneType::Dma),
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    );
    assert_eq!(pa.nr_free_pages(), 511);
    let p = pa.page(pfn).unwrap();
    assert!(p.is_head() && p.order == 0 && p.refcount == 1 && p.owner == OwnerTag::SELFTEST);
    pa.check_invariants().unwrap();
    pa.free_pages(pfn, Order::ZERO).unwrap();
    assert_eq!(
        counts(&pa, ZoneType::Dma),
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    );
    assert_eq!(pa.nr_free_pages(), 512);
    pa.check_invariants().unwrap();
}

#[test]
fn mixed_orders_split_and_coalesce() {
    let mut pa = two_mib();
    let a = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, order(3), OwnerTag::API)
        .unwrap();
    assert_eq!(
        counts(&pa, ZoneType::Dma),
        [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    );
    // The order-3 buddy of `a` serves the next order-2 request, and so on.
    let b = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, order(2), OwnerTag::API)
        .unwrap();
    let c = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, order(2), OwnerTag::API)
        .unwrap();
    assert_eq!((a, b, c), (Pfn(0), Pfn(8), Pfn(12)));
    assert_eq!(
        counts(&pa, ZoneType::Dma),
        [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    );
    // Without __GFP_COMP the tails are left unmarked (the head alone
    // carries the block), and compound_head() still finds the head.
    let t = pa.page(Pfn(5)).unwrap();
    assert!(!t.is_tail() && t.owner == OwnerTag::NONE && !t.is_allocated());
    assert_eq!(pa.compound_head(Pfn(5)), Some((a, order(3))));
    assert_eq!(
        pa.free_pages(Pfn(5), Order::ZERO),
        Err(FreeError::NotHead { pfn: Pfn(5) })
    );
    assert_eq!(pa.compound_head(Pfn(13)), Some((c, order(2))));
    pa.free_pages(b, order(2)).unwrap(); // buddy c allocated: no merge
    assert_eq!(
        counts(&pa, ZoneType::Dma),
        [0, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0]
    );
    pa.free_pages(a, order(3)).unwrap(); // buddy (8..16) not fully free
    assert_eq!(
        counts(&pa, ZoneType::Dma),
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    );
    pa.free_pages(c, order(2)).unwrap(); // merges all the way up
    assert_eq!(
        counts(&pa, ZoneType::Dma),
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    );
    assert_eq!(pa.compound_head(Pfn(5)), None);
    pa.check_invariants().unwrap();
}

#[test]
fn boot_blocks_are_aligned_and_cut_at_zone_boundaries() {
    // lowmem at PFN 6000 (not 4 MiB aligned): DMA32 = [4096, 6000).
    let layout = ZoneLayout {
        lowmem_pfn: Pfn(6000),
        max_pfn: Pfn(7000),
    };
    let mut pa = build(layout, &[(0, 7000)], &[(3, 7000)]);
    // DMA [3, 4096): 1+2(4..8)... exact decomposition of [3,4096).
    assert_eq!(
        counts(&pa, ZoneType::Dma),
        [1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 3]
    );
    // DMA32 [4096, 6000) = 1024 + 512 + 256 + 64 + 32 + 16.
    assert_eq!(
        counts(&pa, ZoneType::Dma32),
        [0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1]
    );
    // HighMem [6000, 7000) = 16+128+... ending at 7000.
    let hm = counts(&pa, ZoneType::HighMem);
    let pages: u64 = hm.iter().enumerate().map(|(o, n)| n << o).sum();
    assert_eq!(pages, 1000);
    assert_eq!(pa.zone(ZoneType::Dma).managed_pages, 4093);
    assert_eq!(pa.zone(ZoneType::Dma).present_pages, 4096);
    // Freeing around the boundary never merges across it.
    let mut live = Vec::new();
    while let Ok(p) = pa.alloc_pages(GfpFlags::GFP_HIGHUSER, Order::ZERO, OwnerTag::API) {
        live.push(p);
    }
    for p in live.into_iter().rev() {
        pa.free_pages(p, Order::ZERO).unwrap();
    }
    assert_eq!(
        counts(&pa, ZoneType::Dma32),
        [0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1]
    );
    assert_eq!(counts(&pa, ZoneType::HighMem), hm);
    pa.check_invariants().unwrap();
}

// ----------------------------------------------------------------------
// Refused operations
// ----------------------------------------------------------------------

#[test]
fn invalid_frees_are_refused_without_change() {
    // RAM 0..512 with a hole at 100..110 and reserved 200..210.
    let layout = ZoneLayout::from_bytes(896 * MIB, 2 * MIB);
    let mut pa = build(
        layout,
        &[(0, 100), (110, 512)],
        &[(0, 100), (110, 200), (210, 512)],
    );
    let a = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, order(2), OwnerTag::API)
        .unwrap();
    let b = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
        .unwrap();
    let freed = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, order(1), OwnerTag::API)
        .unwrap();
    pa.free_pages(freed, order(1)).unwrap();
    let before = snapshot(&pa);
    let cases = [
        (
            a,
            order(1),
            FreeError::WrongOrder {
                allocated: order(2),
                requested: order(1),
            },
        ),
        (
            a,
            order(3),
            FreeError::WrongOrder {
                allocated: order(2),
                requested: order(3),
            },
        ),
        (
            Pfn(a.0 + 1),
            Order::ZERO,
            FreeError::NotHead { pfn: Pfn(a.0 + 1) },
        ),
        (
            Pfn(a.0 + 2),
            order(1),
            FreeError::NotHead { pfn: Pfn(a.0 + 2) },
        ),
        (freed, order(1), FreeError::DoubleFree { pfn: freed }),
        (
            Pfn(500),
            Order::ZERO,
            FreeError::DoubleFree { pfn: Pfn(500) },
        ),
        (Pfn(205), Order::ZERO, FreeError::Reserved { pfn: Pfn(205) }),
        (Pfn(105), Order::ZERO, FreeError::NotRam { pfn: Pfn(105) }),
        (Pfn(512), Order::ZERO, FreeError::NotRam { pfn: Pfn(512) }),
        (
            Pfn(u64::MAX),
            Order::MAX,
            FreeError::NotRam { pfn: Pfn(u64::MAX) },
        ),
    ];
    for (pfn, ord, err) in cases {
        assert_eq!(pa.free_pages(pfn, ord), Err(err), "free({pfn}, {ord})");
        assert!(
            snapshot(&pa) == before,
            "state changed by free({pfn}, {ord})"
        );
    }
    // A buddy head that is free is a double free too.
    let head = (0..512)
        .map(Pfn)
        .find(|&p| pa.page(p).unwrap().is_buddy())
        .unwrap();
    assert_eq!(
        pa.free_pages(head, Order::ZERO),
        Err(FreeError::DoubleFree { pfn: head })
    );
    // Slab pages must be released by the slab layer first.
    pa.set_slab(b, true).unwrap();
    assert_eq!(
        pa.free_pages(b, Order::ZERO),
        Err(FreeError::Slab { pfn: b })
    );
    assert_eq!(
        pa.set_slab(Pfn(a.0 + 1), true),
        Err(FreeError::NotHead { pfn: Pfn(a.0 + 1) })
    );
    pa.set_slab(b, false).unwrap();
    assert!(snapshot(&pa) == before);
    pa.free_pages(b, Order::ZERO).unwrap();
    pa.free_pages(a, order(2)).unwrap();
    pa.check_invariants().unwrap();
}

#[test]
fn bad_boot_ranges_and_flags_are_refused() {
    let layout = ZoneLayout::from_bytes(896 * MIB, 2 * MIB);
    assert_eq!(
        PageAlloc::new(mem_map(100), layout).err(),
        Some(InitError::MemMapTooSmall {
            needed: 512,
            len: 100
        })
    );
    let huge = ZoneLayout {
        lowmem_pfn: Pfn(0),
        max_pfn: Pfn(u32::MAX as u64),
    };
    assert!(matches!(
        PageAlloc::new(mem_map(0), huge),
        Err(InitError::MaxPfnTooLarge { .. })
    ));
    let mut pa = build(layout, &[(0, 100)], &[(0, 50)]);
    let before = snapshot(&pa);
    assert_eq!(
        pa.free_bootmem(Pfn(90), Pfn(110)),
        Err(InitError::NotRam { pfn: Pfn(100) })
    );
    assert_eq!(
        pa.free_bootmem(Pfn(40), Pfn(60)),
        Err(InitError::NotReserved { pfn: Pfn(40) })
    );
    assert_eq!(
        pa.free_bootmem(Pfn(60), Pfn(50)),
        Err(InitError::BadRange {
            start: Pfn(60),
            end: Pfn(50)
        })
    );
    assert_eq!(
        pa.mark_ram(Pfn(0), Pfn(513)),
        Err(InitError::BadRange {
            start: Pfn(0),
            end: Pfn(513)
        })
    );
    assert!(snapshot(&pa) == before);
    let bad = GfpFlags::GFP_KERNEL | GfpFlags::DMA | GfpFlags::HIGHMEM;
    assert_eq!(
        pa.alloc_pages(bad, Order::ZERO, OwnerTag::API),
        Err(AllocError::ZoneBad { gfp: bad })
    );
    assert!(snapshot(&pa) == before);
    // Marking RAM twice does not double-count.
    assert_eq!(pa.mark_ram(Pfn(0), Pfn(120)), Ok(20));
    assert_eq!(pa.zone(ZoneType::Dma).present_pages, 120);
    pa.check_invariants().unwrap();
}

#[test]
fn out_of_memory_reports_order_and_gfp() {
    let mut pa = two_mib();
    let a = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, order(9), OwnerTag::API)
        .unwrap();
    let err = pa
        .alloc_pages(GfpFlags::GFP_ATOMIC, Order::ZERO, OwnerTag::API)
        .unwrap_err();
    assert_eq!(
        err,
        AllocError::NoMemory {
            order: Order::ZERO,
            gfp: GfpFlags::GFP_ATOMIC
        }
    );
    assert_eq!(
        format!("{err}"),
        "page allocation failure: order:0, mode:0x820(GFP_ATOMIC)"
    );
    assert!(
        pa.alloc_pages(GfpFlags::GFP_KERNEL, order(10), OwnerTag::API)
            .is_err()
    );
    pa.free_pages(a, order(9)).unwrap();
    // Order 10 can never fit in 2 MiB.
    assert!(
        pa.alloc_pages(GfpFlags::GFP_KERNEL, order(10), OwnerTag::API)
            .is_err()
    );
    pa.check_invariants().unwrap();
}

// ----------------------------------------------------------------------
// q35-like boot maps through memblock
// ----------------------------------------------------------------------

/// memblock for a 2 GiB q35 guest: usable 0–0x9fc00 and 1M–0x7ffe0000
/// (0x9fc00–1M is firmware-reserved, i.e. not in memblock.memory), page 0
/// and the kernel image reserved, `mem_map` allocated from memblock.
fn q35_2g_memblock() -> Memblock {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), 0x9fc00).unwrap();
    mb.add(PhysAddr(0x10_0000), 0x7ffe_0000 - 0x10_0000)
        .unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "firmware").unwrap();
    mb.reserve(PhysAddr(0x10_0000), 2 * MIB, "kernel").unwrap();
    mb
}

/// Boot `mb` as the kernel will: size `mem_map` from the end of RAM, take
/// it from memblock below lowmem, hand everything free to the buddy.
fn boot(mut mb: Memblock, lowmem_bytes: u64) -> (PageAlloc<'static>, Memblock) {
    let layout = ZoneLayout::from_bytes(lowmem_bytes, mb.end_of_ram().0);
    let size = layout.max_pfn.0 * core::mem::size_of::<Page>() as u64;
    mb.alloc_named(size, PAGE_SIZE, PhysAddr(lowmem_bytes), "mem_map")
        .unwrap();
    let mut pa = PageAlloc::new(mem_map(layout.max_pfn.0), layout).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.check_invariants().unwrap();
    (pa, mb)
}

/// Frames memblock says are free (whole pages), as a bitmap.
fn allocatable(mb: &Memblock, max_pfn: Pfn) -> Vec<bool> {
    let mut ok = vec![false; max_pfn.index()];
    mb.for_each_free_range(|s, e| {
        for pfn in Pfn::from_phys(s).0..Pfn::from_phys(e).0.min(max_pfn.0) {
            ok[pfn as usize] = true;
        }
    });
    ok
}

/// Allocate until nothing is left, largest orders first; every frame handed
/// out must be free RAM per memblock and handed out once. Returns the blocks.
fn exhaust(pa: &mut PageAlloc<'_>, mb: &Memblock, gfp: GfpFlags) -> Vec<(Pfn, Order)> {
    let ok = allocatable(mb, pa.max_pfn());
    let mut seen = vec![false; pa.max_pfn().index()];
    let mut live = Vec::new();
    for o in (0..=MAX_ORDER as u8).rev() {
        while let Ok(pfn) = pa.alloc_pages(gfp, order(o), OwnerTag::API) {
            assert!(pfn.is_aligned(order(o)));
            for f in pfn.0..pfn.0 + (1 << o) {
                assert!(ok[f as usize], "allocated reserved frame or hole {f:#x}");
                assert!(!seen[f as usize], "frame {f:#x} handed out twice");
                seen[f as usize] = true;
            }
            live.push((pfn, order(o)));
        }
    }
    live
}

#[test]
fn q35_2g_lowmem_896m() {
    let (mut pa, mb) = boot(q35_2g_memblock(), 896 * MIB);
    assert_eq!(pa.max_pfn(), Pfn(0x7ffe0));
    assert_eq!(pa.lowmem_pfn(), Pfn(229_376));
    let z = |zt| {
        let z: &Zone = pa.zone(zt);
        (z.start_pfn.0, z.end_pfn.0, z.present_pages, z.managed_pages)
    };
    // DMA: 159 frames below 0x9fc00 plus [0x100, 0x1000); minus page 0 and
    // the 2 MiB kernel image.
    assert_eq!(
        z(ZoneType::Dma),
        (0, 4096, 159 + 3840, 159 + 3840 - 1 - 512)
    );
    // DMA32 up to lowmem, minus the 8 MiB mem_map (2048 frames) at its top.
    assert_eq!(z(ZoneType::Dma32), (4096, 229_376, 225_280, 225_280 - 2048));
    assert_eq!(z(ZoneType::Normal), (229_376, 229_376, 0, 0));
    assert_eq!(z(ZoneType::HighMem), (229_376, 0x7ffe0, 294_880, 294_880));
    assert!(!pa.zone(ZoneType::Normal).is_populated());
    assert_eq!(pa.zone(ZoneType::Dma32).spanned_pages(), 225_280);
    // Firmware gap and reserved frames keep their state and labels.
    assert!(pa.page(Pfn(0xa0)).unwrap().is_nomap());
    assert_eq!(pa.page(Pfn(0)).unwrap().owner, OwnerTag::FIRMWARE);
    assert_eq!(pa.page(Pfn(0x100)).unwrap().owner, OwnerTag::KERNEL_IMAGE);
    assert_eq!(pa.page(Pfn(229_375)).unwrap().owner, OwnerTag::MEM_MAP);
    assert!(pa.page(Pfn(229_376)).unwrap().is_highmem());
    assert_eq!(pa.page(Pfn(0x7ffe0)), None);
    let initial: Vec<_> = ZoneType::ALL.iter().map(|&zt| counts(&pa, zt)).collect();
    let total = pa.nr_free_pages();
    assert_eq!(total, pa.totalram_pages());

    let live = exhaust(&mut pa, &mb, GfpFlags::GFP_HIGHUSER);
    assert_eq!(pa.nr_free_pages(), 0);
    assert_eq!(live.iter().map(|(_, o)| o.nr_pages()).sum::<u64>(), total);
    pa.check_invariants().unwrap();
    for (pfn, o) in live {
        pa.free_pages(pfn, o).unwrap();
    }
    let after: Vec<_> = ZoneType::ALL.iter().map(|&zt| counts(&pa, zt)).collect();
    assert_eq!(after, initial);
    pa.check_invariants().unwrap();
}

#[test]
fn pci_hole_and_ram_above_4g_lowmem_6g() {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), 0x9fc00).unwrap();
    mb.add(PhysAddr(0x10_0000), 3 * GIB - 0x10_0000).unwrap(); // PCI hole 3–4 GiB
    mb.add(PhysAddr(4 * GIB), 4 * GIB).unwrap(); // 4–8 GiB
    mb.reserve(PhysAddr(0), 0x1000, "firmware").unwrap();
    mb.reserve(PhysAddr(0x10_0000), 2 * MIB, "kernel").unwrap();
    let (mut pa, mb) = boot(mb, 6 * GIB);
    let gib_pfns = GIB >> PAGE_SHIFT;
    let z = |zt| {
        let z: &Zone = pa.zone(zt);
        (z.start_pfn.0, z.end_pfn.0, z.present_pages, z.managed_pages)
    };
    let mem_map_pages = (8 * gib_pfns * 16).div_ceil(PAGE_SIZE);
    assert_eq!(z(ZoneType::Dma), (0, 4096, 3999, 3999 - 1 - 512));
    assert_eq!(
        z(ZoneType::Dma32),
        (4096, 4 * gib_pfns, 3 * gib_pfns - 4096, 3 * gib_pfns - 4096)
    );
    assert_eq!(
        z(ZoneType::Normal),
        (
            4 * gib_pfns,
            6 * gib_pfns,
            2 * gib_pfns,
            2 * gib_pfns - mem_map_pages
        )
    );
    assert_eq!(
        z(ZoneType::HighMem),
        (6 * gib_pfns, 8 * gib_pfns, 2 * gib_pfns, 2 * gib_pfns)
    );
    assert!(pa.page(Pfn(3 * gib_pfns)).unwrap().is_nomap()); // PCI hole
    // Direct map ends at lowmem, even above 4 GiB.
    assert_eq!(
        pa.page_address(Pfn(6 * gib_pfns - 1)),
        Some(VirtAddr(PAGE_OFFSET + 6 * GIB - PAGE_SIZE))
    );
    assert_eq!(pa.page_address(Pfn(6 * gib_pfns)), None);

    // GFP_KERNEL prefers Normal; GFP_DMA32 never goes above 4 GiB.
    let k = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
        .unwrap();
    assert_eq!(pa.zone_of(k), Some(ZoneType::Normal));
    let d = pa
        .alloc_pages(
            GfpFlags::GFP_KERNEL | GfpFlags::DMA32,
            Order::MAX,
            OwnerTag::API,
        )
        .unwrap();
    assert_eq!(pa.zone_of(d), Some(ZoneType::Dma32));
    pa.free_pages(k, Order::ZERO).unwrap();
    pa.free_pages(d, Order::MAX).unwrap();

    let initial: Vec<_> = ZoneType::ALL.iter().map(|&zt| counts(&pa, zt)).collect();
    let live = exhaust(&mut pa, &mb, GfpFlags::GFP_HIGHUSER);
    assert_eq!(pa.nr_free_pages(), 0);
    for (pfn, o) in live {
        pa.free_pages(pfn, o).unwrap();
    }
    let after: Vec<_> = ZoneType::ALL.iter().map(|&zt| counts(&pa, zt)).collect();
    assert_eq!(after, initial);
    pa.check_invariants().unwrap();
}

#[test]
fn direct_map_helpers() {
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    let low = pa.lowmem_pfn();
    assert_eq!(
        pa.page_address(Pfn(1)),
        Some(VirtAddr(PAGE_OFFSET + 0x1000))
    );
    assert_eq!(pa.page_address(low), None);
    assert_eq!(
        pa.phys_to_virt(PhysAddr(0x1234)),
        Some(VirtAddr(PAGE_OFFSET + 0x1234))
    );
    assert_eq!(pa.phys_to_virt(low.phys()), None);
    assert_eq!(
        pa.virt_to_phys(VirtAddr(PAGE_OFFSET + 0x1234)),
        Some(PhysAddr(0x1234))
    );
    assert_eq!(pa.virt_to_phys(VirtAddr(PAGE_OFFSET + low.phys().0)), None);
    assert_eq!(pa.virt_to_phys(VirtAddr(0x1000)), None);
    // __get_free_pages strips __GFP_HIGHMEM and returns a direct-map address.
    let va = pa
        .__get_free_pages(GfpFlags::GFP_HIGHUSER, order(2), OwnerTag::API)
        .unwrap();
    let pa_addr = pa.virt_to_phys(va).unwrap();
    assert_ne!(pa.zone_of(Pfn::from_phys(pa_addr)), Some(ZoneType::HighMem));
    assert_eq!(
        pa.free_pages_addr(va, order(1)).unwrap_err(),
        FreeError::WrongOrder {
            allocated: order(2),
            requested: order(1)
        }
    );
    pa.free_pages_addr(va, order(2)).unwrap();
    assert!(matches!(
        pa.free_pages_addr(VirtAddr(0xdead_0000), Order::ZERO),
        Err(FreeError::NotRam { .. })
    ));
    // A HighMem allocation has no direct-map address.
    let h = pa
        .alloc_pages(GfpFlags::GFP_HIGHUSER, Order::ZERO, OwnerTag::API)
        .unwrap();
    assert_eq!(pa.zone_of(h), Some(ZoneType::HighMem));
    assert_eq!(pa.page_address(h), None);
    pa.free_pages(h, Order::ZERO).unwrap();
    pa.check_invariants().unwrap();
}

// ----------------------------------------------------------------------
// Watermarks and lowmem_reserve
// ----------------------------------------------------------------------

#[test]
fn watermarks_match_linux_arithmetic() {
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    pa.setup_watermarks();
    // managed: DMA 3486, DMA32 223232, Normal 0, HighMem 294880.
    // lowmem_kbytes = (3486 + 223232) * 4 = 906872;
    // min_free_kbytes = int_sqrt(906872 * 16) = int_sqrt(14509952) = 3809.
    assert_eq!(pa.min_free_kbytes(), 3809);
    // pages_min = 3809 >> 2 = 952; lowmem_pages = 226718.
    // DMA:   tmp = 952*3486/226718 = 14; min 14; gap max(14>>2, 3486*10/10000) = 3.
    // DMA32: tmp = 952*223232/226718 = 937; gap max(234, 223) = 234.
    // HighMem: min = clamp(294880/1024 = 287, 32, 128) = 128;
    //          tmp = 952*294880/226718 = 1238; gap max(309, 294) = 309.
    let wm = |zt| {
        let w = pa.zone(zt).watermarks;
        (w.min, w.low, w.high)
    };
    assert_eq!(wm(ZoneType::Dma), (14, 17, 20));
    assert_eq!(wm(ZoneType::Dma32), (937, 1171, 1405));
    assert_eq!(wm(ZoneType::Normal), (0, 0, 0));
    assert_eq!(wm(ZoneType::HighMem), (128, 437, 746));
    // lowmem_reserve: DMA  [0, 223232/256, 223232/256, 518112/256]
    //                 DMA32 [0, 0, 0/256, 294880/256]; Normal has no pages.
    assert_eq!(pa.zone(ZoneType::Dma).lowmem_reserve, [0, 872, 872, 2023]);
    assert_eq!(pa.zone(ZoneType::Dma32).lowmem_reserve, [0, 0, 0, 1151]);
    assert_eq!(pa.zone(ZoneType::Normal).lowmem_reserve, [0, 0, 0, 0]);
    assert_eq!(pa.zone(ZoneType::HighMem).lowmem_reserve, [0, 0, 0, 0]);
    // totalreserve: DMA min(2023+20, 3486) + DMA32 (1151+1405) + HighMem 746.
    assert_eq!(pa.totalreserve_pages(), 2043 + 2556 + 746);
    assert_eq!(int_sqrt(0), 0);
    assert_eq!(int_sqrt(15), 3);
    assert_eq!(int_sqrt(16), 4);
    assert_eq!(int_sqrt(u64::MAX), u32::MAX as u64);
}

#[test]
fn min_free_kbytes_is_clamped() {
    // 2 MiB of lowmem: sqrt(2048*16) = 181 → kept; 256 KiB: sqrt(4096) = 64 → 128.
    let mut pa = two_mib();
    pa.setup_watermarks();
    assert_eq!(pa.min_free_kbytes(), 181);
    let layout = ZoneLayout::from_bytes(896 * MIB, 256 * 1024);
    let mut small = build(layout, &[(0, 64)], &[(0, 64)]);
    small.setup_watermarks();
    assert_eq!(small.min_free_kbytes(), 128);
    // No lowmem managed at all must not divide by zero.
    let layout = ZoneLayout {
        lowmem_pfn: Pfn(0),
        max_pfn: Pfn(1024),
    };
    let mut high_only = build(layout, &[(0, 1024)], &[(0, 1024)]);
    high_only.setup_watermarks();
    assert_eq!(high_only.zone(ZoneType::HighMem).watermarks.min, 32);
}

/// Allocate order-0 pages with `gfp` until refused; returns the count.
fn drain(pa: &mut PageAlloc<'_>, gfp: GfpFlags, live: &mut Vec<Pfn>) -> u64 {
    let mut n = 0;
    while let Ok(p) = pa.alloc_pages(gfp, Order::ZERO, OwnerTag::SELFTEST) {
        live.push(p);
        n += 1;
    }
    n
}

#[test]
fn atomic_dips_below_min_where_kernel_stops() {
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    pa.setup_watermarks();
    pa.set_pcp_enabled(false); // exact free counts
    let dma = |pa: &PageAlloc<'_>| pa.zone(ZoneType::Dma).free_pages;
    let mut live = Vec::new();
    // GFP_DMA zonelist is DMA only; reserve[0] is 0. The fast path stops at
    // LOW (17), the slow path at MIN (14).
    drain(&mut pa, GfpFlags::GFP_KERNEL | GfpFlags::DMA, &mut live);
    assert_eq!(dma(&pa), 14);
    // __GFP_HIGH (blocking): MIN/2 = 7.
    assert_eq!(
        drain(
            &mut pa,
            GfpFlags::GFP_KERNEL | GfpFlags::HIGH | GfpFlags::DMA,
            &mut live
        ),
        7
    );
    assert_eq!(dma(&pa), 7);
    // GFP_ATOMIC: 14 - 7 = 7, then - 7/4 = 6.
    assert_eq!(
        drain(&mut pa, GfpFlags::GFP_ATOMIC | GfpFlags::DMA, &mut live),
        1
    );
    assert_eq!(dma(&pa), 6);
    assert!(
        pa.alloc_pages(
            GfpFlags::GFP_KERNEL | GfpFlags::DMA,
            Order::ZERO,
            OwnerTag::API
        )
        .is_err()
    );
    // GFP_NOWAIT gets no discount at all.
    for p in live.drain(..).take(10) {
        pa.free_pages(p, Order::ZERO).unwrap();
    }
    assert_eq!(dma(&pa), 16);
    assert_eq!(
        drain(&mut pa, GfpFlags::GFP_NOWAIT | GfpFlags::DMA, &mut live),
        2
    );
    pa.check_invariants().unwrap();
}

#[test]
fn fallback_to_lower_zones_stops_at_lowmem_reserve() {
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    pa.setup_watermarks();
    pa.set_pcp_enabled(false); // exact free counts
    let free = |pa: &PageAlloc<'_>, zt| pa.zone(zt).free_pages;
    let mut live = Vec::new();
    // GFP_KERNEL: Normal (empty) → DMA32 → DMA, highest_zoneidx = Normal.
    while let Ok(p) = pa.alloc_pages(GfpFlags::GFP_KERNEL, Order::MAX, OwnerTag::API) {
        live.push((p, Order::MAX));
    }
    let mut small = Vec::new();
    drain(&mut pa, GfpFlags::GFP_KERNEL, &mut small);
    live.extend(small.drain(..).map(|p| (p, Order::ZERO)));
    // DMA32 drained to its MIN (reserve[Normal] = 0); DMA kept MIN plus
    // lowmem_reserve[Normal] = 14 + 872.
    assert_eq!(free(&pa, ZoneType::Dma32), 937);
    assert_eq!(free(&pa, ZoneType::Dma), 886);
    assert_eq!(free(&pa, ZoneType::HighMem), 294_880);
    // GFP_DMA itself may still use the protected pages.
    let d = pa
        .alloc_pages(
            GfpFlags::GFP_KERNEL | GfpFlags::DMA,
            Order::ZERO,
            OwnerTag::API,
        )
        .unwrap();
    assert_eq!(pa.zone_of(d), Some(ZoneType::Dma));
    live.push((d, Order::ZERO));
    // GFP_HIGHUSER drains HighMem, then finds DMA32/DMA protected by the
    // larger lowmem_reserve[HighMem].
    drain(&mut pa, GfpFlags::GFP_HIGHUSER, &mut small);
    // HighMem ends at its MIN (GFP_HIGHUSER may block: no discount); DMA32
    // (937 <= 937 + 1151) and DMA (885 <= 14 + 2023) gave nothing more.
    assert_eq!(free(&pa, ZoneType::HighMem), 128);
    assert_eq!(free(&pa, ZoneType::Dma32), 937);
    assert_eq!(free(&pa, ZoneType::Dma), 885);
    for (p, o) in live
        .into_iter()
        .chain(small.into_iter().map(|p| (p, Order::ZERO)))
    {
        pa.free_pages(p, o).unwrap();
    }
    pa.check_invariants().unwrap();
}

// ----------------------------------------------------------------------
// Property test: random alloc/free sequences
// ----------------------------------------------------------------------

const GFP_MIX: [GfpFlags; 7] = [
    GfpFlags::GFP_KERNEL,
    GfpFlags::GFP_ATOMIC,
    GfpFlags::GFP_DMA,
    GfpFlags::GFP_DMA32,
    GfpFlags::GFP_HIGHUSER,
    GfpFlags::GFP_KERNEL.union(GfpFlags::DMA),
    GfpFlags::GFP_ATOMIC.union(GfpFlags::DMA32),
];

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        order: u8,
        gfp: usize,
    },
    Free {
        idx: prop::sample::Index,
    },
    /// Give every per-CPU list back (`drain_all_pages`).
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    let ord = prop_oneof![3 => 0u8..=3, 1 => 0u8..=10];
    prop_oneof![
        3 => (ord, 0..GFP_MIX.len()).prop_map(|(order, gfp)| Op::Alloc { order, gfp }),
        2 => any::<prop::sample::Index>().prop_map(|idx| Op::Free { idx }),
        1 => Just(Op::Drain),
    ]
}

/// 40 MiB with a firmware hole, a reserved kernel, and zone boundaries that
/// are not MAX_ORDER-aligned: DMA [0,4096), DMA32 [4096,6000),
/// HighMem [6000,10000).
pub(crate) fn sim(pcp: bool) -> PageAlloc<'static> {
    let layout = ZoneLayout {
        lowmem_pfn: Pfn(6000),
        max_pfn: Pfn(10_000),
    };
    let mut pa = build(
        layout,
        &[(0, 159), (256, 10_000)],
        &[(1, 159), (512, 10_000)],
    );
    pa.setup_watermarks();
    pa.set_pcp_enabled(pcp);
    pa
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_alloc_free_keeps_invariants(
        ops in prop::collection::vec(op(), 1..150),
        pcp in any::<bool>(),
    ) {
        let mut pa = sim(pcp);
        let initial: Vec<_> = ZoneType::ALL.iter().map(|&zt| counts(&pa, zt)).collect();
        let initial_free = pa.nr_free_pages();
        let mut live: Vec<(Pfn, Order, GfpFlags)> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { order: o, gfp } => {
                    let gfp = GFP_MIX[gfp];
                    let before = snapshot(&pa);
                    match pa.alloc_pages(gfp, order(o), OwnerTag::API) {
                        Ok(pfn) => {
                            let ord = order(o);
                            prop_assert!(pfn.is_aligned(ord));
                            let end = pfn.0 + ord.nr_pages();
                            let zt = pa.zone_of(pfn).unwrap();
                            prop_assert_eq!(pa.zone_of(Pfn(end - 1)), Some(zt));
                            prop_assert!(zt <= gfp.gfp_zone(), "{:?} from {:?}", gfp, zt);
                            for &(q, qo, _) in &live {
                                prop_assert!(end <= q.0 || q.0 + qo.nr_pages() <= pfn.0, "overlap");
                            }
                            let head = pa.page(pfn).unwrap();
                            prop_assert!(head.is_head() && head.order == o && head.refcount == 1);
                            live.push((pfn, ord, gfp));
                        }
                        Err(e) => {
                            prop_assert_eq!(e, AllocError::NoMemory { order: order(o), gfp });
                            if pcp {
                                // A failing request may have drained the
                                // per-CPU lists; no page was lost.
                                prop_assert_eq!(
                                    pa.nr_free_pages() + pa.nr_pcp_pages(),
                                    before.0.iter().map(|z| z.free_pages + z.pcp.iter().map(|p| u64::from(p.count)).sum::<u64>()).sum::<u64>()
                                );
                            } else {
                                prop_assert!(snapshot(&pa) == before);
                            }
                        }
                    }
                }
                Op::Free { idx } => {
                    if !live.is_empty() {
                        let (pfn, ord, _) = live.swap_remove(idx.index(live.len()));
                        pa.free_pages(pfn, ord).unwrap();
                    }
                }
                Op::Drain => {
                    let pcp_pages = pa.nr_pcp_pages();
                    prop_assert_eq!(pa.drain_all_pages(), pcp_pages);
                    prop_assert_eq!(pa.nr_pcp_pages(), 0);
                }
            }
            pa.check_invariants().map_err(TestCaseError::fail)?;
        }
        for (pfn, ord, _) in live {
            pa.free_pages(pfn, ord).unwrap();
        }
        pa.drain_all_pages();
        let after: Vec<_> = ZoneType::ALL.iter().map(|&zt| counts(&pa, zt)).collect();
        prop_assert_eq!(after, initial);
        prop_assert_eq!(pa.nr_free_pages(), initial_free);
        pa.check_invariants().map_err(TestCaseError::fail)?;
    }

    #[test]
    fn free_bootmem_any_range_matches_page_count(start in 0u64..10_000, len in 0u64..10_000) {
        let layout = ZoneLayout { lowmem_pfn: Pfn(6000), max_pfn: Pfn(10_000) };
        let end = (start + len).min(10_000);
        let mut pa = PageAlloc::new(mem_map(10_000), layout).unwrap();
        pa.mark_ram(Pfn(0), Pfn(10_000)).unwrap();
        prop_assert_eq!(pa.free_bootmem(Pfn(start), Pfn(end)), Ok(end - start));
        prop_assert_eq!(pa.nr_free_pages(), end - start);
        prop_assert_eq!(pa.totalram_pages(), end - start);
        pa.check_invariants().map_err(TestCaseError::fail)?;
    }
}

// ----------------------------------------------------------------------
// Per-CPU page lists (see `pcp`)
// ----------------------------------------------------------------------

mod pcp_lists {
    use super::*;
    use crate::page_alloc::pcp::{order_to_pindex, zone_batchsize, zone_highsize};

    fn q35() -> PageAlloc<'static> {
        let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
        pa.setup_watermarks();
        pa
    }

    fn pcp(pa: &PageAlloc<'_>, zt: ZoneType) -> pcp::PerCpuPages {
        *pa.pageset(zt.index(), 0)
    }

    #[test]
    fn batch_and_high_follow_linux() {
        // zone_batchsize(): min(managed >> 10, 256) / 4, then 2^n - 1.
        assert_eq!(zone_batchsize(3486), 1); // 3 / 4 = 0 → 1 → 2^0 - 1 → max 1
        assert_eq!(zone_batchsize(223_232), 63); // 218 / 4 = 54; 81 → 64 - 1
        assert_eq!(zone_batchsize(294_880), 63); // 256 / 4 = 64; 96 → 64 - 1
        assert_eq!(zone_batchsize(4 << 20), 63);
        assert_eq!(zone_highsize(1171, 63, 1), 1171);
        assert_eq!(zone_highsize(17, 1, 1), 17);
        assert_eq!(zone_highsize(100, 63, 1), 252, "at least four batches");
        let pa = q35();
        // high = the LOW watermark: DMA 14 + 3, DMA32 937 + 234, HighMem 128 + 309.
        let hb = |zt| (pcp(&pa, zt).high, pcp(&pa, zt).batch);
        assert_eq!(hb(ZoneType::Dma), (17, 1));
        assert_eq!(hb(ZoneType::Dma32), (1171, 63));
        assert_eq!(
            hb(ZoneType::Normal),
            (0, 1),
            "an empty zone keeps the boot pageset"
        );
        assert_eq!(hb(ZoneType::HighMem), (437, 63));
    }

    #[test]
    fn an_order0_allocation_takes_a_batch_and_a_free_keeps_the_page() {
        let mut pa = q35();
        let free = pa.zone(ZoneType::Dma32).free_pages;
        let p = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
            .unwrap();
        assert_eq!(pa.zone_of(p), Some(ZoneType::Dma32));
        // rmqueue_bulk() took 63 pages off the buddy lists; 62 wait.
        assert_eq!(pa.zone(ZoneType::Dma32).free_pages, free - 63);
        assert_eq!(pcp(&pa, ZoneType::Dma32).count, 62);
        let list = pcp(&pa, ZoneType::Dma32).lists[order_to_pindex(MigrateType::Unmovable, 0)];
        assert!(!list.is_empty());
        pa.check_invariants().unwrap();
        // The free goes on the list head: the next allocation gets it back.
        pa.free_pages(p, Order::ZERO).unwrap();
        assert_eq!(pcp(&pa, ZoneType::Dma32).count, 63);
        assert_eq!(pa.zone(ZoneType::Dma32).free_pages, free - 63);
        assert!(pa.page(p).unwrap().is_pcp());
        let again = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
            .unwrap();
        assert_eq!(again, p, "LIFO: the cache-hot page");
        pa.free_pages(again, Order::ZERO).unwrap();
        assert_eq!(pa.drain_all_pages(), 63);
        assert_eq!(pa.zone(ZoneType::Dma32).free_pages, free);
        pa.check_invariants().unwrap();
    }

    #[test]
    fn a_page_on_a_list_is_free_and_cannot_be_freed_again() {
        let mut pa = q35();
        let p = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, order(2), OwnerTag::API)
            .unwrap();
        pa.free_pages(p, order(2)).unwrap();
        assert!(pa.page(p).unwrap().is_pcp());
        let before = snapshot(&pa);
        assert_eq!(
            pa.free_pages(p, order(2)),
            Err(FreeError::DoubleFree { pfn: p })
        );
        assert_eq!(
            pa.free_pages(p.add(1), Order::ZERO),
            Err(FreeError::DoubleFree { pfn: p.add(1) })
        );
        assert_eq!(
            pa.set_owner(p, OwnerTag::SLAB),
            Err(FreeError::DoubleFree { pfn: p })
        );
        assert!(snapshot(&pa) == before);
        assert_eq!(pa.compound_head(p), None);
    }

    #[test]
    fn orders_above_costly_bypass_the_lists_and_high_order_batches_shrink() {
        let mut pa = q35();
        let free = pa.zone(ZoneType::Dma32).free_pages;
        let p = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, order(4), OwnerTag::API)
            .unwrap();
        assert_eq!(pa.zone(ZoneType::Dma32).free_pages, free - 16);
        pa.free_pages(p, order(4)).unwrap();
        assert_eq!(pa.zone(ZoneType::Dma32).free_pages, free);
        assert_eq!(pa.nr_pcp_pages(), 0);
        // Order 3: batch 63 >> 3 = 7 blocks.
        let p = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, order(3), OwnerTag::API)
            .unwrap();
        assert_eq!(pa.zone(ZoneType::Dma32).free_pages, free - 7 * 8);
        assert_eq!(pcp(&pa, ZoneType::Dma32).count, 6 * 8);
        pa.free_pages(p, order(3)).unwrap();
        pa.check_invariants().unwrap();
    }

    #[test]
    fn a_list_past_high_gives_batches_back_doubling_while_frees_run() {
        let mut pa = q35();
        let zt = ZoneType::Dma32;
        let free = pa.zone(zt).free_pages;
        let mut live = Vec::new();
        for _ in 0..1300 {
            live.push(
                pa.alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
                    .unwrap(),
            );
        }
        // Refills took whole batches: 21 of 63 for 1300 pages.
        assert_eq!(free - pa.zone(zt).free_pages, 21 * 63);
        assert_eq!(pcp(&pa, zt).count, 21 * 63 - 1300);
        let mut counts = Vec::new();
        for p in live {
            pa.free_pages(p, Order::ZERO).unwrap();
            let c = pcp(&pa, zt).count;
            assert!(c < 1171, "never at or over high after a free");
            counts.push(c);
        }
        // The first free over high gave back one batch (63), the next a
        // doubled one (126): free_factor grows while nothing is allocated.
        let drops: Vec<u32> = counts
            .windows(2)
            .filter(|w| w[1] < w[0])
            .map(|w| w[0] + 1 - w[1])
            .collect();
        assert_eq!(&drops[..2], &[63, 126]);
        pa.check_invariants().unwrap();
        pa.drain_all_pages();
        assert_eq!(pa.zone(zt).free_pages, free);
    }

    #[test]
    fn off_means_straight_to_the_buddy_and_on_again_resizes() {
        let mut pa = q35();
        let p = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
            .unwrap();
        assert!(pa.nr_pcp_pages() > 0);
        pa.set_pcp_enabled(false);
        assert!(!pa.pcp_enabled());
        assert_eq!(pa.nr_pcp_pages(), 0, "turning the lists off drains them");
        assert_eq!(pcp(&pa, ZoneType::Dma32).high, 0);
        let free = pa.zone(ZoneType::Dma32).free_pages;
        pa.free_pages(p, Order::ZERO).unwrap();
        assert_eq!(pa.zone(ZoneType::Dma32).free_pages, free + 1);
        let q = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
            .unwrap();
        assert_eq!(pa.zone(ZoneType::Dma32).free_pages, free);
        pa.free_pages(q, Order::ZERO).unwrap();
        pa.set_pcp_enabled(true);
        assert_eq!(pcp(&pa, ZoneType::Dma32).high, 1171);
        pa.check_invariants().unwrap();
    }

    #[test]
    fn special_pageblocks_wait_on_the_movable_list_and_go_home_on_drain() {
        let mut pa = q35();
        let zt = ZoneType::Dma32;
        let p = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
            .unwrap();
        let q = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
            .unwrap();
        pa.drain_all_pages();
        // p's pageblock becomes HighAtomic: its frees wait on the Movable
        // list and return to the HighAtomic list.
        pa.set_pageblock_migratetype(p, MigrateType::HighAtomic);
        pa.free_pages(p, Order::ZERO).unwrap();
        let movable0 = pcp(&pa, zt).lists[order_to_pindex(MigrateType::Movable, 0)];
        assert_eq!(movable0.head, p.0 as u32);
        pa.drain_all_pages();
        let on_highatomic =
            pa.zones[zt.index()].free_area[0].free_list[MigrateType::HighAtomic.index()].head;
        assert_eq!(on_highatomic, p.0 as u32);
        // An isolated pageblock's frees skip the lists.
        pa.set_pageblock_migratetype(q, MigrateType::Isolate);
        pa.free_pages(q, Order::ZERO).unwrap();
        assert_eq!(pa.nr_pcp_pages(), 0);
        assert!(!pa.page(q).unwrap().is_pcp() && pa.compound_head(q).is_none());
        pa.check_invariants().unwrap();
    }

    #[test]
    fn a_blocking_request_drains_the_lists_before_it_fails() {
        let mut pa = q35();
        pa.set_pcp_enabled(true);
        // Fill DMA (batch 1, high 17) from GFP_DMA pages, then free a few:
        // they wait on DMA's list, invisible to the watermark check.
        let mut live = Vec::new();
        while let Ok(p) = pa.alloc_pages(
            GfpFlags::GFP_NOWAIT | GfpFlags::DMA,
            Order::ZERO,
            OwnerTag::API,
        ) {
            live.push(p);
        }
        for p in live.drain(..10) {
            pa.free_pages(p, Order::ZERO).unwrap();
        }
        assert_eq!(pcp(&pa, ZoneType::Dma).count, 10);
        let free = pa.zone(ZoneType::Dma).free_pages;
        // GFP_KERNEL | GFP_DMA may block: the slow path drains and the 10
        // pages count again.
        assert!(free <= 14, "at or below MIN: {free}");
        let p = pa
            .alloc_pages(
                GfpFlags::GFP_KERNEL | GfpFlags::DMA,
                Order::ZERO,
                OwnerTag::API,
            )
            .expect("served after the drain");
        assert_eq!(pa.zone_of(p), Some(ZoneType::Dma));
        assert_eq!(pcp(&pa, ZoneType::Dma).count, 0);
        assert_eq!(pa.zone(ZoneType::Dma).free_pages, free + 10 - 1);
        // A request that may not block does not drain (cf. the drain in
        // __alloc_pages_direct_reclaim()): it fails with pages waiting.
        pa.free_pages(p, Order::ZERO).unwrap();
        for p in live.drain(..5) {
            pa.free_pages(p, Order::ZERO).unwrap();
        }
        let waiting = pcp(&pa, ZoneType::Dma).count;
        assert_eq!(waiting, 6);
        while pa
            .alloc_pages(
                GfpFlags::GFP_NOWAIT | GfpFlags::DMA,
                Order::ZERO,
                OwnerTag::API,
            )
            .is_ok()
        {}
        assert_eq!(
            pcp(&pa, ZoneType::Dma).count,
            0,
            "its own list serves it first"
        );
        pa.check_invariants().unwrap();
    }
}

/// What [`buddy_state`] returns.
type BuddyState = (Vec<(usize, usize, usize, u32)>, Vec<Page>);

/// Every free block as (zone, order, migrate type, pfn), sorted, and the
/// descriptors without their list links: the buddy state up to the order
/// of blocks within a list (frees go to the head, boot frees to the tail).
fn buddy_state(pa: &PageAlloc<'_>) -> BuddyState {
    let mut blocks = Vec::new();
    for (zi, zone) in pa.zones().iter().enumerate() {
        for (o, area) in zone.free_area.iter().enumerate() {
            for (mt, list) in area.free_list.iter().enumerate() {
                let mut cur = list.head;
                while crate::page::is_pfn_link(cur) {
                    blocks.push((zi, o, mt, cur));
                    cur = pa.mem_map[cur as usize].next;
                }
            }
        }
    }
    blocks.sort_unstable();
    let pages = pa.mem_map[..pa.max_pfn().index()]
        .iter()
        .map(|p| Page {
            prev: NIL,
            next: NIL,
            ..*p
        })
        .collect();
    (blocks, pages)
}

/// The buddy core's shortcuts (zone_lock.rs): `expand()` links each half
/// onto a list the search saw empty, and the merge loop skips the range
/// and zone checks only inside a `MAX_ORDER` block wholly in one zone.
/// Splitting must leave one block alone on each lower list, and freeing
/// frames on both sides of a zone edge that is not `MAX_ORDER`-aligned
/// must give back exactly the boot blocks and descriptors.
#[test]
fn split_into_empty_lists_and_merge_at_unaligned_zone_edges() {
    let mut pa = sim(false);
    let boot = snapshot(&pa);
    let boot_state = buddy_state(&pa);
    let hm = ZoneType::HighMem.index();
    let mt = MigrateType::Movable;
    let before = counts(&pa, ZoneType::HighMem);
    // The search takes the smallest order with a Movable block.
    let found = (0..NR_ORDERS)
        .find(|&o| !pa.zones[hm].free_area[o].is_empty(mt))
        .unwrap();
    assert!(found > 0, "HighMem starts with no order-0 block");
    let pfn = pa
        .alloc_pages(GfpFlags::GFP_HIGHUSER_MOVABLE, Order::ZERO, OwnerTag::API)
        .unwrap();
    let after = counts(&pa, ZoneType::HighMem);
    for o in 0..NR_ORDERS {
        let expect = match o {
            o if o < found => before[o] + 1,
            o if o == found => before[o] - 1,
            _ => before[o],
        };
        assert_eq!(after[o], expect, "order {o}");
    }
    for k in 0..found {
        let half = pfn.0 as u32 + (1 << k);
        let list = pa.zones[hm].free_area[k].free_list[mt.index()];
        assert_eq!((list.head, list.tail), (half, half), "order {k}");
        let p = &pa.mem_map[half as usize];
        assert!(p.is_buddy() && usize::from(p.order) == k);
        assert_eq!(
            (p.prev, p.next),
            (LIST_END + mt as u32, LIST_END + mt as u32)
        );
    }
    pa.check_invariants().unwrap();
    pa.free_pages(pfn, Order::ZERO).unwrap();
    assert!(snapshot(&pa) == boot);

    // DMA32 is [4096, 6000), HighMem [6000, 10000): the MAX_ORDER block
    // [5120, 6144) straddles the edge, [4096, 5120) lies in DMA32.
    let frames: Vec<Pfn> = (4090..6200).map(Pfn).collect();
    for &f in &frames {
        pa.take_page_off_buddy(f, Order::ZERO, OwnerTag::API)
            .unwrap();
    }
    pa.check_invariants().unwrap();
    for &f in frames.iter().rev() {
        pa.free_pages(f, Order::ZERO).unwrap();
    }
    pa.check_invariants().unwrap();
    assert!(buddy_state(&pa) == boot_state);
    for &f in frames
        .iter()
        .step_by(2)
        .chain(frames.iter().skip(1).step_by(2))
    {
        pa.take_page_off_buddy(f, Order::ZERO, OwnerTag::API)
            .unwrap();
    }
    for &f in frames
        .iter()
        .step_by(3)
        .chain(frames.iter().skip(1).step_by(3))
        .chain(frames.iter().skip(2).step_by(3))
    {
        pa.free_pages(f, Order::ZERO).unwrap();
        if f.0 % 97 == 0 {
            pa.check_invariants().unwrap();
        }
    }
    pa.check_invariants().unwrap();
    assert!(buddy_state(&pa) == boot_state);
}
