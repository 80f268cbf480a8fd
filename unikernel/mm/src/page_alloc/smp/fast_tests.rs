//! The fast paths' table ([`FastPaths`]) against its inputs: every input
//! change is seen by the very next call, and the one-load free check
//! refuses exactly what the general path refuses.

extern crate std;

use std::vec;
use std::vec::Vec;

use super::{FAST_GFP_BITS, FastAlloc, FastPaths, NO_FAST_REFILL};
use crate::fault_inject::{FaultAttr, FaultConfig};
use crate::gfp::GfpFlags;
use crate::memblock::Memblock;
use crate::page::{OwnerTag, Page};
use crate::page_alloc::{FreeError, PageAlloc, test_machine_64m};
use crate::types::{Order, Pfn, PhysAddr};
use crate::zone::{MigrateType, NR_ZONES, PAGEBLOCK_NR_PAGES, ZoneLayout, ZoneType};

const NR_PAGES: usize = (64 << 20) >> 12;

fn row(pa: &PageAlloc<'_>, gfp: GfpFlags) -> FastAlloc {
    pa.fast.alloc[(gfp.bits() & FAST_GFP_BITS) as usize]
}

fn alloc0(pa: &mut PageAlloc<'_>, gfp: GfpFlags) -> Pfn {
    pa.alloc_pages(gfp, Order::ZERO, OwnerTag::API).unwrap()
}

#[test]
fn rows_say_what_the_full_path_would_try_first() {
    let mut m = vec![Page::new_reserved(); NR_PAGES];
    let pa = test_machine_64m(&mut m);
    for bits in 0..=FAST_GFP_BITS {
        let gfp = GfpFlags::from_bits_truncate(bits);
        let r = row(&pa, gfp);
        if gfp.is_zone_bad() {
            assert_eq!(r, FastAlloc::NONE, "{gfp}");
            continue;
        }
        let highest = gfp.gfp_zone();
        let zi = (0..=highest.index())
            .rev()
            .find(|&zi| pa.zones[zi].is_populated())
            .unwrap();
        let z = &pa.zones[zi];
        let mark = z.watermarks.low + z.lowmem_reserve[highest.index()];
        assert_eq!(usize::from(r.zi), zi, "{gfp}");
        assert_eq!(r.mark, [mark, mark + 1, mark + 3, mark + 7], "{gfp}");
        assert_eq!(usize::from(r.mt), gfp.migratetype().index(), "{gfp}");
        assert_eq!(r.cma, gfp.migratetype() == MigrateType::Movable);
        assert!(!r.count_cma, "no CMA area");
    }
    assert_eq!(pa.fast.free_limit, pa.max_pfn().0);
    assert_eq!(pa.fast.reserve_len, 0);
}

/// A zone brought within a batch of its LOW mark: the fast path still
/// pops its list; once the HighAtomic reserve grows by a pageblock (the
/// mark with it), the very next allocation goes to the next zone — as
/// the full path says — and comes back when the reserve is given up.
#[test]
fn a_mark_raised_by_the_highatomic_reserve_is_seen_by_the_next_allocation() {
    let mut m = vec![Page::new_reserved(); NR_PAGES];
    let mut pa = test_machine_64m(&mut m);
    let gfp = GfpFlags::GFP_KERNEL;
    let r = row(&pa, gfp);
    let zi = usize::from(r.zi);
    assert!(zi < NR_ZONES && zi > 0);
    let mut held = Vec::new();
    while pa.zones[zi].free_pages > r.mark[0] + 200 {
        held.push(alloc0(&mut pa, gfp));
    }
    assert!(pa.zones[zi].free_pages > r.mark[0]);
    // A listed page: the fast path hands it straight back.
    let p = alloc0(&mut pa, gfp);
    pa.free_pages(p, Order::ZERO).unwrap();
    let q = alloc0(&mut pa, gfp);
    assert_eq!(q, p);
    pa.free_pages(q, Order::ZERO).unwrap();
    // The reserve takes a pageblock of the zone with a free block in it:
    // 512 more pages unusable.
    let zt = ZoneType::ALL[zi];
    let pb = (0..crate::types::NR_ORDERS)
        .rev()
        .flat_map(|o| pa.zones[zi].free_area[o].free_list[..3].to_vec())
        .find(|l| !l.is_empty())
        .map(|l| Pfn(u64::from(l.head)))
        .unwrap();
    pa.reserve_highatomic_pageblock(pb, zi);
    assert_eq!(pa.zone(zt).nr_reserved_highatomic, PAGEBLOCK_NR_PAGES);
    assert_eq!(row(&pa, gfp).mark[0], r.mark[0] + PAGEBLOCK_NR_PAGES);
    let lower = alloc0(&mut pa, gfp);
    assert!(
        pa.zone_of(lower).unwrap().index() < zi,
        "served below the zone whose mark rose"
    );
    pa.free_pages(lower, Order::ZERO).unwrap();
    // Given back: the listed page is handed out again.
    assert!(pa.unreserve_highatomic_pageblock(zt, MigrateType::Unmovable, true));
    assert_eq!(row(&pa, gfp).mark, r.mark);
    assert_eq!(alloc0(&mut pa, gfp), p);
    pa.free_pages(p, Order::ZERO).unwrap();
    for h in held {
        pa.free_pages(h, Order::ZERO).unwrap();
    }
    pa.check_invariants().unwrap();
}

/// Memory handed over later (managed pages grow, the watermarks and
/// `lowmem_reserve` are recomputed): the next allocation uses the newly
/// populated zone, not the list of the zone that was first before.
#[test]
fn a_zone_populated_later_is_used_by_the_next_allocation() {
    // DMA [0, 16M) and DMA32 [16M, 64M); only DMA's RAM handed over.
    let layout = ZoneLayout::from_bytes(64 << 20, 64 << 20);
    let mut m = vec![Page::new_reserved(); NR_PAGES];
    let mut pa = PageAlloc::new(&mut m, layout).unwrap();
    pa.mark_ram(Pfn(1), Pfn(NR_PAGES as u64)).unwrap();
    pa.free_bootmem(Pfn(1), Pfn(4096)).unwrap();
    pa.setup_watermarks();
    let gfp = GfpFlags::GFP_KERNEL;
    assert_eq!(usize::from(row(&pa, gfp).zi), ZoneType::Dma.index());
    let p = alloc0(&mut pa, gfp);
    assert_eq!(pa.zone_of(p), Some(ZoneType::Dma));
    pa.free_pages(p, Order::ZERO).unwrap(); // on DMA's list now
    // DMA32 gets its memory: even before the watermarks are recomputed,
    // the next allocation is DMA32's (its lists are off until then, so
    // it comes from the buddy lists).
    pa.free_bootmem(Pfn(4096), Pfn(NR_PAGES as u64)).unwrap();
    assert_eq!(usize::from(row(&pa, gfp).zi), ZoneType::Dma32.index());
    assert_eq!(pa.pageset(ZoneType::Dma32.index(), 0).high, 0);
    let q = alloc0(&mut pa, gfp);
    assert_eq!(pa.zone_of(q), Some(ZoneType::Dma32));
    pa.setup_watermarks();
    let r = row(&pa, gfp);
    assert_eq!(usize::from(r.zi), ZoneType::Dma32.index());
    let dma32 = pa.zone(ZoneType::Dma32);
    assert_eq!(r.mark[0], dma32.watermarks.low);
    // DMA keeps back a share of DMA32's pages from DMA32 requests.
    let dma = row(&pa, GfpFlags::GFP_DMA);
    assert_eq!(usize::from(dma.zi), ZoneType::Dma.index());
    assert_eq!(dma.mark[0], pa.zone(ZoneType::Dma).watermarks.low);
    assert!(pa.zone(ZoneType::Dma).lowmem_reserve[ZoneType::Dma32.index()] > 0);
    let q2 = alloc0(&mut pa, gfp);
    assert_eq!(pa.zone_of(q2), Some(ZoneType::Dma32));
    for x in [q, q2] {
        pa.free_pages(x, Order::ZERO).unwrap();
    }
    pa.check_invariants().unwrap();
}

/// Arming `fail_page_alloc` fails the very next allocation, though a
/// page waits on the list; once its `times` run out, that page comes.
#[test]
fn arming_fail_page_alloc_is_seen_by_the_next_allocation() {
    let mut m = vec![Page::new_reserved(); NR_PAGES];
    let mut pa = test_machine_64m(&mut m);
    let gfp = GfpFlags::GFP_KERNEL;
    let p = alloc0(&mut pa, gfp);
    pa.free_pages(p, Order::ZERO).unwrap();
    let mut attr = FaultAttr::new();
    attr.setup(FaultConfig {
        interval: 1,
        probability: 100,
        space: 0,
        times: 1,
    });
    {
        let mut f = pa.fail_page_alloc_mut();
        f.attr = attr;
        f.min_order = 0;
        f.ignore_gfp_reclaim = false;
    }
    assert!(pa.alloc_pages(gfp, Order::ZERO, OwnerTag::API).is_err());
    assert_eq!(alloc0(&mut pa, gfp), p);
    pa.free_pages(p, Order::ZERO).unwrap();
    pa.check_invariants().unwrap();
}

/// The lists turned off, a CPU count change, `high` and `batch` set by
/// hand, the kernel heap's reserve carved: the table follows each.
#[test]
fn the_table_follows_lists_cpus_and_the_reserve() {
    let mut m = vec![Page::new_reserved(); NR_PAGES];
    let mut pa = test_machine_64m(&mut m);
    let on = pa.fast;
    pa.set_pcp_enabled(false);
    // The rows stay (an allocation finds its list empty and takes from
    // the buddy lists); frees all take the general path.
    assert_eq!(pa.fast.alloc, on.alloc);
    assert_eq!(pa.fast.free_limit, 0);
    assert_ne!(pa.fast, FastPaths::NONE);
    pa.set_pcp_enabled(true);
    assert_eq!(pa.fast, on);
    pa.set_nr_cpus(4);
    assert_eq!(pa.fast, pa.compute_fast_paths());
    pa.set_pcp_high_batch(0, 1);
    assert_eq!(pa.fast.free_limit, 0, "a zone without lists: frees go slow");
    pa.set_pcp_high_batch(16, 4);
    assert_eq!(pa.fast.free_limit, pa.max_pfn().0);
    let stats = pa.setup_kernel_reserve().unwrap();
    assert_eq!(
        (pa.fast.reserve_start, pa.fast.reserve_len),
        (stats.start_pfn.0, stats.nr_pages)
    );
    // A pool frame of the reserve is refused, as by the general path.
    assert_eq!(
        pa.free_pages(stats.start_pfn, Order::ZERO),
        Err(FreeError::Reserved {
            pfn: stats.start_pfn
        })
    );
    pa.check_invariants().unwrap();
}

/// Deferred init moves the free limit up chunk by chunk; frames past it
/// are freed by the general path (which refuses the unwritten ones).
#[test]
fn deferred_init_raises_the_free_limit() {
    let ram = 64u64 << 20;
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), ram).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    let layout = ZoneLayout::from_bytes(ram, ram);
    let mut m = vec![Page::new_reserved(); NR_PAGES];
    let mut pa = PageAlloc::new_deferred(&mut m, layout, &mb, 4096).unwrap();
    pa.setup_watermarks();
    let first = pa.fast.free_limit;
    assert!(first < pa.max_pfn().0, "something is deferred");
    assert!(pa.early_page_uninitialised(Pfn(first)));
    assert!(!pa.early_page_uninitialised(Pfn(first - 1)));
    assert!(pa.free_pages(Pfn(first), Order::ZERO).is_err());
    let mut limits = vec![first];
    while pa.deferred_pending() {
        pa.deferred_init_chunk(1024);
        assert_eq!(pa.fast, pa.compute_fast_paths());
        limits.push(pa.fast.free_limit);
    }
    assert!(limits.windows(2).all(|w| w[0] < w[1]), "{limits:?}");
    assert_eq!(pa.fast.free_limit, pa.max_pfn().0);
    pa.check_invariants().unwrap();
}

/// Every kind of misuse, freed with the lists on (the per-CPU one-load
/// check, and the buddy one for order 5), with them off (the buddy
/// one-load check, [`PageAlloc::free_pages_buddy_fast`]) and with them off
/// and the fast paths off (the general path only, `check_free()`): the
/// same answer, nothing changed.
#[test]
fn the_one_load_free_check_refuses_what_the_general_path_refuses() {
    fn run(pcp: bool, fast: bool) -> Vec<Result<(), FreeError>> {
        NO_FAST_REFILL.with(|c| c.set(!fast));
        let mut m = vec![Page::new_reserved(); NR_PAGES];
        let mut pa = test_machine_64m(&mut m);
        pa.set_pcp_enabled(pcp);
        let o = |n| Order::new(n).unwrap();
        let gfp = GfpFlags::GFP_KERNEL;
        let a = pa.alloc_pages(gfp, o(2), OwnerTag::API).unwrap();
        let c = pa
            .alloc_pages(gfp | GfpFlags::COMP, o(3), OwnerTag::API)
            .unwrap();
        let s = pa.alloc_pages(gfp, o(0), OwnerTag::SLAB).unwrap();
        pa.set_slab(s, true).unwrap();
        let f = pa.alloc_pages(gfp, o(1), OwnerTag::API).unwrap();
        pa.free_pages(f, o(1)).unwrap();
        let b = pa.alloc_pages(gfp, o(5), OwnerTag::API).unwrap();
        let bc = pa
            .alloc_pages(gfp | GfpFlags::COMP, o(5), OwnerTag::API)
            .unwrap();
        let bs = pa.alloc_pages(gfp, o(5), OwnerTag::SLAB).unwrap();
        pa.set_slab(bs, true).unwrap();
        let bf = pa.alloc_pages(gfp, o(6), OwnerTag::API).unwrap();
        pa.free_pages(bf, o(6)).unwrap();
        let before = (pa.zones().to_vec(), pa.nr_free_pages(), pa.nr_pcp_pages());
        let out = vec![
            pa.free_pages(a, o(1)),            // wrong order
            pa.free_pages(a, o(3)),            // wrong order
            pa.free_pages(a.add(1), o(0)),     // inside a non-compound block
            pa.free_pages(c.add(2), o(0)),     // a compound tail
            pa.free_pages(c, o(2)),            // wrong order, compound
            pa.free_pages(s, o(0)),            // a slab page
            pa.free_pages(f, o(1)),            // double free
            pa.free_pages(Pfn(0), o(0)),       // reserved (the BIOS page)
            pa.free_pages(pa.max_pfn(), o(0)), // past the end
            pa.free_pages(b, o(4)),            // wrong order, above the lists'
            pa.free_pages(b, o(6)),            // wrong order
            pa.free_pages(b.add(8), o(3)),     // inside a non-compound block
            pa.free_pages(bc.add(1), o(0)),    // a compound tail
            pa.free_pages(bc.add(16), o(4)),   // a compound tail, order 4
            pa.free_pages(bs, o(5)),           // a slab block
            pa.free_pages(bf, o(6)),           // double free, order 6
            pa.free_pages(Pfn(0), o(5)),       // reserved, order 5
            pa.free_pages(pa.max_pfn(), o(5)), // past the end, order 5
        ];
        assert_eq!(
            before,
            (pa.zones().to_vec(), pa.nr_free_pages(), pa.nr_pcp_pages())
        );
        pa.set_slab(s, false).unwrap();
        pa.set_slab(bs, false).unwrap();
        for (p, n) in [(a, 2), (c, 3), (s, 0), (b, 5), (bc, 5), (bs, 5)] {
            pa.free_pages(p, o(n)).unwrap();
        }
        pa.check_invariants().unwrap();
        NO_FAST_REFILL.with(|c| c.set(false));
        out
    }
    let fast = run(true, true);
    assert_eq!(fast, run(false, true));
    assert_eq!(fast, run(false, false));
    assert_eq!(fast, run(true, false));
    assert!(fast.iter().all(Result::is_err), "{fast:?}");
}

/// The refill the fast path does itself when its list is empty (or, with
/// the lists off, its take from the buddy lists), and the free straight to
/// the buddy lists ([`PageAlloc::free_pages_buddy_fast`]), give what the
/// full path gives: the same blocks in the same order, the same lists, counters and
/// descriptors after a random run of allocations and frees of orders 0–3, 5 and 9
/// over every zone and migrate type (Normal preferred with
/// ALLOC_NOFRAGMENT included, on a q35-like 2 GiB machine).
/// With the lists off this is also the check that the exclusive side's
/// one-store head writes (`prep_taken_head` after
/// `ZoneFree::rmqueue_smallest_taken`, the buddy free's head store) leave
/// exactly the descriptors `prep_new_page()` and the general free leave.
#[test]
fn the_fast_refill_gives_what_the_full_path_gives() {
    fn run(fast_refill: bool, lists: bool) -> (Vec<Option<Pfn>>, Vec<u8>, std::string::String) {
        NO_FAST_REFILL.with(|c| c.set(!fast_refill));
        let ram = 2u64 << 30;
        let mut mb = Memblock::new();
        mb.add(PhysAddr(0), ram).unwrap();
        mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
        let mut m = vec![Page::new_reserved(); (ram >> 12) as usize];
        let mut pa = PageAlloc::new(&mut m, ZoneLayout::from_bytes(896 << 20, ram)).unwrap();
        pa.memblock_free_all(&mb).unwrap();
        pa.setup_watermarks();
        pa.set_pcp_enabled(lists);
        let gfps = [
            GfpFlags::GFP_KERNEL,
            GfpFlags::GFP_KERNEL | GfpFlags::RECLAIMABLE,
            GfpFlags::GFP_HIGHUSER_MOVABLE,
            GfpFlags::GFP_DMA32,
            GfpFlags::GFP_DMA,
            GfpFlags::GFP_ATOMIC,
            GfpFlags::GFP_KERNEL | GfpFlags::COMP,
        ];
        let mut seed = 0x5eed_u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut live: Vec<(Pfn, Order)> = Vec::new();
        let mut got = Vec::new();
        for _ in 0..40_000 {
            let r = rnd();
            if live.len() < 3000 && (r % 8 < 5 || live.is_empty()) {
                // Orders 0–3 mostly; 5 and 9 go straight to the buddy lists.
                let order = Order::new([0, 1, 2, 3, 0, 1, 5, 9][(r >> 8) as usize % 8]).unwrap();
                let gfp = gfps[(r >> 16) as usize % gfps.len()];
                let p = pa.alloc_pages(gfp, order, OwnerTag::API).ok();
                if let Some(p) = p {
                    live.push((p, order));
                }
                got.push(p);
            } else {
                let (p, order) = live.swap_remove((r >> 8) as usize % live.len());
                pa.free_pages(p, order).unwrap();
            }
        }
        pa.check_invariants().unwrap();
        let map: Vec<u8> = pa.mem_map[..pa.max_pfn().index()]
            .iter()
            .flat_map(|p| std::format!("{p:?}").into_bytes())
            .collect();
        let state = std::format!(
            "{:?}\n{:?}\n{:?}",
            pa.zones(),
            pa.vm_events(),
            pa.alloc_counters()
        );
        NO_FAST_REFILL.with(|c| c.set(false));
        (got, map, state)
    }
    for lists in [true, false] {
        let (fast, full) = (run(true, lists), run(false, lists));
        assert_eq!(fast.0, full.0, "blocks handed out (lists {lists})");
        assert!(fast.1 == full.1, "descriptors (lists {lists})");
        assert_eq!(fast.2, full.2, "zones, lists and counters (lists {lists})");
    }
}

/// The lists-off allocation of a non-movable request
/// (`alloc_pages_buddy_taken`: the head written before the unlink, the
/// mask updated by one subtraction, the split a jump) in its three cases —
/// the block found leaves its list with others on it (its mask bit stays),
/// empties it (the bit goes), or its type's lists are empty (the steal of
/// `__rmqueue()`) — leaves the same state, step by step, as the full path.
#[test]
fn the_lists_off_allocation_keeps_or_clears_the_mask_bit_as_the_full_path() {
    fn run(fast: bool) -> Vec<std::string::String> {
        NO_FAST_REFILL.with(|c| c.set(!fast));
        let mut m = vec![Page::new_reserved(); NR_PAGES];
        let mut pa = test_machine_64m(&mut m);
        pa.set_pcp_enabled(false);
        let mut states = Vec::new();
        // GFP_KERNEL's zone on this machine (lowmem 32 MiB: DMA32).
        let zt = ZoneType::Dma32;
        let mut snap = |pa: &PageAlloc<'_>, what: &str| {
            pa.check_invariants().unwrap();
            states.push(std::format!(
                "{what}: masks {:?} counts {:?}\n{:?}",
                pa.zone(zt).free_area_mask,
                pa.free_area_counts(zt),
                &pa.mem_map[..NR_PAGES]
            ));
        };
        let k = GfpFlags::GFP_KERNEL;
        let unmovable = MigrateType::Unmovable.index();
        // Boot: every pageblock Movable, so the first request steals.
        assert_eq!(pa.zone(zt).free_area_mask[unmovable], 0);
        let a = alloc0(&mut pa, k);
        assert_eq!(pa.zone_of(a), Some(zt));
        snap(&pa, "steal");
        // The split left one block on each Unmovable list below the one
        // stolen from: the next order-1 request empties the order-1 list.
        let mask = pa.zone(zt).free_area_mask[unmovable];
        assert_ne!(mask & 0b10, 0, "{mask:#b}");
        let b = pa
            .alloc_pages(k, Order::new(1).unwrap(), OwnerTag::API)
            .unwrap();
        snap(&pa, "emptied");
        assert_eq!(pa.zone(zt).free_area_mask[unmovable] & 0b10, 0);
        // Two order-2 blocks that cannot merge (their buddies are taken):
        // one allocation leaves the other, and the bit.
        let c = pa
            .alloc_pages(k, Order::new(2).unwrap(), OwnerTag::API)
            .unwrap();
        let d = pa
            .alloc_pages(k, Order::new(2).unwrap(), OwnerTag::API)
            .unwrap();
        let e = pa
            .alloc_pages(k, Order::new(2).unwrap(), OwnerTag::API)
            .unwrap();
        let f = pa
            .alloc_pages(k, Order::new(2).unwrap(), OwnerTag::API)
            .unwrap();
        snap(&pa, "four order-2");
        pa.free_pages(c, Order::new(2).unwrap()).unwrap();
        pa.free_pages(e, Order::new(2).unwrap()).unwrap();
        snap(&pa, "two order-2 free");
        let free_order2 = pa.free_area_counts(zt)[2];
        let g = pa
            .alloc_pages(k, Order::new(2).unwrap(), OwnerTag::API)
            .unwrap();
        snap(&pa, "kept");
        assert_eq!(pa.free_area_counts(zt)[2], free_order2 - 1);
        assert_ne!(pa.zone(zt).free_area_mask[unmovable] & 0b100, 0);
        for (p, o) in [(a, 0), (b, 1), (d, 2), (f, 2), (g, 2)] {
            pa.free_pages(p, Order::new(o).unwrap()).unwrap();
        }
        snap(&pa, "all back");
        NO_FAST_REFILL.with(|c| c.set(false));
        states
    }
    let fast = run(true);
    let full = run(false);
    assert_eq!(fast.len(), full.len());
    for (a, b) in fast.iter().zip(&full) {
        assert!(a == b, "{}", &a[..a.find('\n').unwrap_or(a.len())]);
    }
}

/// The table's merge range of each zone (`merge_lo`, `merge_span`) holds
/// exactly the PFNs whose whole `MAX_ORDER` block lies in the zone's span
/// and below `max_pfn`, on a machine whose zone edges and `max_pfn` (6000,
/// 10 000) fall inside `MAX_ORDER` blocks; the buddy fast free trusts it
/// to skip the merge's range and zone checks.
#[test]
fn the_merge_range_holds_the_max_order_blocks_wholly_in_a_zone() {
    let pa = crate::page_alloc::tests::sim(false);
    let max_pfn = pa.max_pfn().0;
    let mut seen = 0;
    for (zi, z) in pa.zones().iter().enumerate() {
        let (lo, span) = (pa.fast.merge_lo[zi], pa.fast.merge_span[zi]);
        for pfn in 0..max_pfn + 2048 {
            let chunk = pfn & !1023;
            let whole = chunk >= z.start_pfn.0 && chunk + 1024 <= z.end_pfn.0.min(max_pfn);
            assert_eq!(pfn.wrapping_sub(lo) < span, whole, "zone {zi} pfn {pfn}");
            seen += u64::from(whole);
        }
    }
    // DMA [0, 4096): 4 blocks; Normal [4096, 6000): 1; HighMem [6000,
    // 10 000): [6144, 9216), 3.
    assert_eq!(seen, (4 + 1 + 3) * 1024);
}
