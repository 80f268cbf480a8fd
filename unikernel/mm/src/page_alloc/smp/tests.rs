//! The per-CPU fast paths under real concurrency: host threads stand for
//! CPUs (`sim::set_current_cpu`) and hammer one [`MemoryManager`] at once —
//! allocations and frees on every CPU, blocks freed on another CPU than
//! the one that allocated them, drains and exclusive-side allocations in
//! the middle — then every buddy invariant is checked and the drained
//! state must equal boot's.

extern crate std;

use std::sync::mpsc;
use std::vec::Vec;

use crate::gfp::GfpFlags;
use crate::manager::MemoryManager;
use crate::memblock::Memblock;
use crate::page::{OwnerTag, Page, PageFlags};
use crate::page_alloc::PageAlloc;
use crate::platform::Platform;
use crate::platform::sim::{SimPlatform, set_current_cpu};
use crate::types::{Order, Pfn, PhysAddr};
use crate::vmstat::VmEvent;
use crate::zone::ZoneLayout;

const RAM: u64 = 64 << 20;

fn manager(mem_map: &mut [Page], cpus: usize) -> MemoryManager<'_, SimPlatform> {
    manager_lowmem(mem_map, cpus, RAM)
}

/// DMA [0, 16M), DMA32 [16M, lowmem), HighMem [lowmem, 64M).
fn manager_lowmem(
    mem_map: &mut [Page],
    cpus: usize,
    lowmem: u64,
) -> MemoryManager<'_, SimPlatform> {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), RAM).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(lowmem, RAM)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    let mm = MemoryManager::new(pa, SimPlatform::new(RAM >> 12));
    mm.set_nr_cpus(cpus);
    mm
}

/// xorshift64*: a fixed, seedable stream per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Writes `stamp` into the block's first 8 bytes (its owner's mark).
fn stamp(mm: &MemoryManager<'_, SimPlatform>, pfn: Pfn, stamp: u64) {
    mm.platform()
        .with_frame(pfn, &mut |b| b[..8].copy_from_slice(&stamp.to_le_bytes()));
}

fn read_stamp(mm: &MemoryManager<'_, SimPlatform>, pfn: Pfn) -> u64 {
    let mut v = [0u8; 8];
    mm.platform()
        .with_frame(pfn, &mut |b| v.copy_from_slice(&b[..8]));
    u64::from_le_bytes(v)
}

#[test]
fn fast_paths_hand_out_each_block_once_on_four_cpus() {
    let mut mem_map = std::vec![Page::new_reserved(); (RAM >> 12) as usize];
    let mm = manager(&mut mem_map, 4);
    let boot = mm.drained_buddyinfo();
    let (pgfree0, pgalloc0) = {
        let pa = mm.lock();
        let ev = pa.vm_events();
        (ev.get(VmEvent::PgFree), ev.get(VmEvent::PgAllocDma32))
    };
    const OPS: usize = 20_000;
    // Each CPU sends some blocks to the next CPU, which frees them:
    // remote frees, as when a page allocated on one CPU dies on another.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel::<(Pfn, Order, u64)>()).unzip();
    let mut rxs: Vec<Option<mpsc::Receiver<(Pfn, Order, u64)>>> =
        rxs.into_iter().map(Some).collect();
    let allocated = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for cpu in 0..4usize {
            let mm = &mm;
            let tx = txs[(cpu + 1) % 4].clone();
            let rx = rxs[cpu].take().unwrap();
            let allocated = &allocated;
            s.spawn(move || {
                set_current_cpu(cpu);
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (cpu as u64 + 1));
                let mut live: Vec<(Pfn, Order, u64)> = Vec::new();
                for i in 0..OPS {
                    let r = rng.next();
                    // Remote frees first: blocks another CPU handed over.
                    while let Ok((pfn, order, mark)) = rx.try_recv() {
                        assert_eq!(
                            read_stamp(mm, pfn),
                            mark,
                            "a block changed hands while live"
                        );
                        mm.free_pages(pfn, order).unwrap();
                    }
                    if live.len() < 300 && r % 13 == 2 {
                        // The bulk allocator: up to 8 frames at once.
                        let mut out = [Pfn(0); 8];
                        let want = 1 + (r >> 24) as usize % 8;
                        let n = mm
                            .alloc_pages_bulk(GfpFlags::GFP_KERNEL, OwnerTag::API, &mut out[..want])
                            .unwrap();
                        allocated.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        for (k, &pfn) in out[..n].iter().enumerate() {
                            let mark = ((cpu as u64) << 56) | ((k as u64) << 40) | i as u64;
                            stamp(mm, pfn, mark);
                            live.push((pfn, Order::ZERO, mark));
                        }
                    } else if r % 13 == 3 {
                        // A bulk free of the order-0 blocks among the last 8.
                        let from = live.len().saturating_sub(8);
                        let mut run = Vec::new();
                        let mut k = from;
                        while k < live.len() {
                            if live[k].1 == Order::ZERO {
                                let (pfn, _, mark) = live.swap_remove(k);
                                assert_eq!(read_stamp(mm, pfn), mark, "two owners of one block");
                                run.push(pfn);
                            } else {
                                k += 1;
                            }
                        }
                        mm.free_pages_bulk(&run, &mut |pfn, e| panic!("{pfn:?}: {e:?}"));
                    } else if live.len() < 300 && (!r.is_multiple_of(3) || live.is_empty()) {
                        let order = Order::new(if r.is_multiple_of(8) {
                            (r >> 8) as u8 % 4
                        } else {
                            0
                        })
                        .unwrap();
                        let gfp = if r.is_multiple_of(5) {
                            GfpFlags::GFP_KERNEL | GfpFlags::COMP
                        } else {
                            GfpFlags::GFP_KERNEL
                        };
                        let pfn = mm.alloc_pages(gfp, order, OwnerTag::API).unwrap();
                        allocated.fetch_add(order.nr_pages(), std::sync::atomic::Ordering::Relaxed);
                        let mark = ((cpu as u64) << 56) | i as u64;
                        stamp(mm, pfn, mark);
                        live.push((pfn, order, mark));
                    } else {
                        let (pfn, order, mark) = live.swap_remove((r >> 16) as usize % live.len());
                        assert_eq!(read_stamp(mm, pfn), mark, "two owners of one block");
                        if r.is_multiple_of(7) {
                            tx.send((pfn, order, mark)).unwrap();
                        } else {
                            mm.free_pages(pfn, order).unwrap();
                        }
                    }
                    // Now and then the exclusive side: a drain of every
                    // CPU's lists, or an order-5 block from the buddy.
                    if i % 997 == 0 {
                        mm.drain_all_pages();
                    } else if i % 1499 == 0 {
                        let o = Order::new(5).unwrap();
                        let pfn = mm
                            .alloc_pages(GfpFlags::GFP_KERNEL, o, OwnerTag::API)
                            .unwrap();
                        allocated.fetch_add(o.nr_pages(), std::sync::atomic::Ordering::Relaxed);
                        mm.free_pages(pfn, o).unwrap();
                    }
                }
                drop(tx);
                for (pfn, order, mark) in live {
                    assert_eq!(read_stamp(mm, pfn), mark);
                    mm.free_pages(pfn, order).unwrap();
                }
                // Until every other CPU is done sending.
                for (pfn, order, mark) in rx {
                    assert_eq!(read_stamp(mm, pfn), mark);
                    mm.free_pages(pfn, order).unwrap();
                }
            });
        }
        drop(txs);
    });
    let pa_check = mm.lock().check_invariants();
    assert_eq!(pa_check, Ok(()));
    let pa = mm.lock();
    let ev = pa.vm_events();
    let allocated = allocated.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        ev.get(VmEvent::PgAllocDma32) - pgalloc0,
        allocated,
        "pgalloc counts every page"
    );
    assert_eq!(
        ev.get(VmEvent::PgFree) - pgfree0,
        allocated,
        "pgfree counts every page"
    );
    drop(pa);
    assert_eq!(mm.drained_buddyinfo(), boot, "everything came back");
}

#[test]
fn a_cpu_uses_its_own_lists_and_a_drain_empties_all() {
    let mut mem_map = std::vec![Page::new_reserved(); (RAM >> 12) as usize];
    let mm = manager(&mut mem_map, 2);
    let boot = mm.drained_buddyinfo();
    let on = |cpu: usize| {
        set_current_cpu(cpu);
        let pfn = mm
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
            .unwrap();
        mm.free_pages(pfn, Order::ZERO).unwrap();
        pfn
    };
    let a = on(0);
    let b = on(1);
    let pa = mm.lock();
    let zi = pa.zone_of(a).unwrap().index();
    let (c0, c1) = (pa.zones()[zi].pcp[0].count, pa.zones()[zi].pcp[1].count);
    // Each CPU refilled its own list with a batch and got its block back.
    let batch = pa.zones()[zi].pcp[0].batch;
    assert_eq!((c0, c1), (batch, batch));
    assert_ne!(a, b, "CPU 1 did not get a block from CPU 0's list");
    assert!(pa.page(a).unwrap().flags.contains(PageFlags::PCP));
    drop(pa);
    // The fast paths ran: CPU 1's second pair never took the exclusive side
    // (its list serves it), yet counted its events.
    set_current_cpu(1);
    let before = mm.lock().vm_events().get(VmEvent::PgFree);
    let counted = |mm: &MemoryManager<'_, SimPlatform>| {
        let pa = mm.lock();
        let c = pa.alloc_counters();
        (c.alloc[zi][0], c.free[zi][0])
    };
    let (allocs, frees) = counted(&mm);
    let pfn = mm
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
        .unwrap();
    assert_eq!(pfn, b, "LIFO: the block just freed comes back");
    mm.free_pages(pfn, Order::ZERO).unwrap();
    assert_eq!(mm.lock().vm_events().get(VmEvent::PgFree), before + 1);
    assert_eq!(
        counted(&mm),
        (allocs + 1, frees + 1),
        "per-zone, per-order counts folded"
    );
    set_current_cpu(0);
    assert_eq!(mm.drain_all_pages(), 2 * u64::from(batch));
    assert_eq!(mm.buddyinfo(), boot);
}

#[test]
fn misuse_on_the_fast_path_is_refused_like_the_slow_one() {
    let mut mem_map = std::vec![Page::new_reserved(); (RAM >> 12) as usize];
    let mm = manager(&mut mem_map, 2);
    set_current_cpu(1);
    let pfn = mm
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::new(1).unwrap(), OwnerTag::API)
        .unwrap();
    assert!(mm.free_pages(pfn, Order::ZERO).is_err(), "wrong order");
    assert!(
        mm.free_pages(pfn.add(1), Order::ZERO).is_err(),
        "not a head"
    );
    mm.free_pages(pfn, Order::new(1).unwrap()).unwrap();
    assert!(
        mm.free_pages(pfn, Order::new(1).unwrap()).is_err(),
        "double free of a listed block"
    );
    assert_eq!(mm.lock().check_invariants(), Ok(()));
    set_current_cpu(0);
}

/// Issue 13's zone locks under load: four CPUs with `high` 8 and `batch` 3
/// on three zones and three migrate types, so nearly every few operations
/// refill or trim a list under a zone lock while the other CPUs' fast
/// paths, refills and trims go on; drains, order-5 blocks and full
/// invariant checks take the exclusive side in the middle. Each check
/// sees a consistent allocator (no shared-side holder runs then), the
/// counters are exact, and the drained state equals boot.
#[test]
fn refills_and_trims_under_zone_locks_on_four_cpus_and_three_zones() {
    let mut mem_map = std::vec![Page::new_reserved(); (RAM >> 12) as usize];
    let mm = manager_lowmem(&mut mem_map, 4, 32 << 20);
    mm.lock().set_pcp_high_batch(8, 3);
    let boot = mm.drained_buddyinfo();
    let zones = [
        crate::zone::ZoneType::Dma,
        crate::zone::ZoneType::Dma32,
        crate::zone::ZoneType::HighMem,
    ];
    let (pgfree0, pgalloc0, locked0) = {
        let pa = mm.lock();
        let ev = pa.vm_events();
        let alloc: Vec<u64> = [
            VmEvent::PgAllocDma,
            VmEvent::PgAllocDma32,
            VmEvent::PgAllocHigh,
        ]
        .iter()
        .map(|&e| ev.get(e))
        .collect();
        (ev.get(VmEvent::PgFree), alloc, pa.pcp_zone_locked_ops())
    };
    assert!(zones.iter().all(|&zt| mm.lock().zone(zt).is_populated()));
    const OPS: usize = 12_000;
    let gfps = [
        GfpFlags::GFP_KERNEL,                         // DMA32, unmovable
        GfpFlags::GFP_KERNEL | GfpFlags::DMA,         // DMA
        GfpFlags::GFP_HIGHUSER_MOVABLE,               // HighMem, movable
        GfpFlags::GFP_KERNEL | GfpFlags::RECLAIMABLE, // DMA32, reclaimable
        GfpFlags::GFP_HIGHUSER | GfpFlags::COMP,      // HighMem, unmovable
    ];
    let allocated = [(); 3].map(|_| std::sync::atomic::AtomicU64::new(0));
    let checks = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for cpu in 0..4usize {
            let (mm, allocated, checks) = (&mm, &allocated, &checks);
            s.spawn(move || {
                set_current_cpu(cpu);
                let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((cpu as u64 + 1) << 17));
                let mut live: Vec<(Pfn, Order, u64)> = Vec::new();
                for i in 0..OPS {
                    let r = rng.next();
                    if live.len() < 64 && (r.is_multiple_of(2) || live.is_empty()) {
                        let order = Order::new(if r.is_multiple_of(4) {
                            (r >> 8) as u8 % 4
                        } else {
                            0
                        })
                        .unwrap();
                        let gfp = gfps[(r >> 20) as usize % gfps.len()];
                        let pfn = mm.alloc_pages(gfp, order, OwnerTag::API).unwrap();
                        let zi = mm.lock().zone_of(pfn).unwrap().index();
                        let slot = zones.iter().position(|z| z.index() == zi).unwrap();
                        allocated[slot]
                            .fetch_add(order.nr_pages(), std::sync::atomic::Ordering::Relaxed);
                        let mark = ((cpu as u64) << 56) | i as u64;
                        stamp(mm, pfn, mark);
                        live.push((pfn, order, mark));
                    } else {
                        let (pfn, order, mark) = live.swap_remove((r >> 16) as usize % live.len());
                        assert_eq!(read_stamp(mm, pfn), mark, "two owners of one block");
                        mm.free_pages(pfn, order).unwrap();
                    }
                    match i % 1000 {
                        // Exclusive: every invariant, mid-run.
                        0 => {
                            assert_eq!(mm.lock().check_invariants(), Ok(()));
                            checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        333 => {
                            mm.drain_all_pages();
                        }
                        666 => {
                            let o = Order::new(5).unwrap();
                            let pfn = mm
                                .alloc_pages(GfpFlags::GFP_KERNEL, o, OwnerTag::API)
                                .unwrap();
                            let slot = zones
                                .iter()
                                .position(|z| Some(*z) == mm.lock().zone_of(pfn))
                                .unwrap();
                            allocated[slot]
                                .fetch_add(o.nr_pages(), std::sync::atomic::Ordering::Relaxed);
                            mm.free_pages(pfn, o).unwrap();
                        }
                        _ => {}
                    }
                }
                for (pfn, order, mark) in live {
                    assert_eq!(read_stamp(mm, pfn), mark);
                    mm.free_pages(pfn, order).unwrap();
                }
            });
        }
    });
    assert_eq!(checks.load(std::sync::atomic::Ordering::Relaxed), 4 * 12);
    assert_eq!(mm.lock().check_invariants(), Ok(()));
    let pa = mm.lock();
    let ev = pa.vm_events();
    let (refills, trims) = pa.pcp_zone_locked_ops();
    // With batch 3 and high 8 most refills and trims run under a zone
    // lock; a few thousand of each at least.
    assert!(
        refills - locked0.0 > 2_000,
        "refills under zone locks: {}",
        refills - locked0.0
    );
    assert!(
        trims - locked0.1 > 2_000,
        "trims under zone locks: {}",
        trims - locked0.1
    );
    let mut total = 0;
    for (slot, e) in [
        VmEvent::PgAllocDma,
        VmEvent::PgAllocDma32,
        VmEvent::PgAllocHigh,
    ]
    .iter()
    .enumerate()
    {
        let n = allocated[slot].load(std::sync::atomic::Ordering::Relaxed);
        assert!(n > 0, "zone {slot} was used");
        assert_eq!(
            ev.get(*e) - pgalloc0[slot],
            n,
            "pgalloc of zone {slot} counts every page"
        );
        total += n;
    }
    assert_eq!(
        ev.get(VmEvent::PgFree) - pgfree0,
        total,
        "pgfree counts every page"
    );
    drop(pa);
    assert_eq!(mm.drained_buddyinfo(), boot, "everything came back");
    // NR_FREE_PAGES equals the recount of the free lists (the invariant
    // check above), and with nothing live it is everything managed.
    let pa = mm.lock();
    for &zt in &zones {
        let z = pa.zone(zt);
        assert_eq!(
            z.free_pages,
            z.free_area_counts()
                .iter()
                .enumerate()
                .map(|(o, n)| n << o)
                .sum::<u64>()
        );
    }
}

/// What the zone locks buy, shown deterministically: while CPU 0 sits in
/// the middle of a DMA32 refill (its flag and DMA32's `zone->lock` held),
/// CPU 1's fast path and CPU 1's refill of another zone complete; only
/// CPU 1's refill of DMA32 waits, and it completes once the lock is
/// released. (Before issue 13 a refill took every CPU's flag, so all
/// three would have waited.)
#[test]
fn a_held_zone_lock_stops_only_refills_of_that_zone() {
    use crate::page_alloc::smp::FreeFast;
    use crate::sync::BrLock;
    use crate::zone::ZoneType;
    let mut mem_map = std::vec![Page::new_reserved(); (RAM >> 12) as usize];
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), RAM).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    let mut pa = PageAlloc::new(&mut mem_map, ZoneLayout::from_bytes(32 << 20, RAM)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    pa.set_nr_cpus(2);
    let lock = BrLock::new(pa);
    lock.set_nr_cpus(2);
    let boot = lock
        .write()
        .zones()
        .iter()
        .map(|z| z.free_area_counts())
        .collect::<Vec<_>>();
    let (dma32, dma) = (ZoneType::Dma32.index(), ZoneType::Dma.index());
    // Movable: a fresh allocator's pageblocks are all Movable, so these
    // refills need no stealing (which would take the exclusive side).
    let kernel = GfpFlags::GFP_KERNEL | GfpFlags::MOVABLE;
    let alloc_on_1 = |gfp: GfpFlags, order: u8| {
        let g = lock.read_cpu(1).unwrap();
        // SAFETY: `g` holds CPU 1's flag; this thread acts as CPU 1 and
        // holds no zone lock.
        unsafe {
            PageAlloc::alloc_pcp_cpu(
                g.as_ptr(),
                1,
                gfp,
                Order::new(order).unwrap(),
                OwnerTag::API,
            )
        }
    };
    // CPU 1 primes its DMA32 order-0 list: a refill, one block out and back.
    let p = alloc_on_1(kernel, 0).unwrap();
    {
        let g = lock.read_cpu(1).unwrap();
        // SAFETY: as above; `p` is ours.
        assert_eq!(
            unsafe { PageAlloc::free_pcp_cpu(g.as_ptr(), 1, p, Order::ZERO) },
            FreeFast::Done
        );
    }
    std::thread::scope(|s| {
        // CPU 0, mid-refill of DMA32.
        let g0 = lock.read_cpu(0).unwrap();
        // SAFETY: `g0` holds CPU 0's flag; the zone lock is an atomic.
        let zone_lock = unsafe { &(*g0.as_ptr()).zone_lock[dma32] }.lock();
        let a = alloc_on_1(kernel, 0).expect("CPU 1's fast path while CPU 0 refills DMA32");
        let b = alloc_on_1(kernel | GfpFlags::DMA, 0).expect("CPU 1 refills DMA meanwhile");
        // An empty DMA32 list (order 1) must wait for DMA32's lock.
        let waiting = s.spawn(|| alloc_on_1(kernel, 1));
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !waiting.is_finished(),
            "a DMA32 refill ran while DMA32's lock was held"
        );
        drop(zone_lock);
        drop(g0);
        let c = waiting
            .join()
            .unwrap()
            .expect("the DMA32 refill, once the lock is free");
        let mut pa = lock.write();
        assert_eq!(pa.zone_of(a).unwrap().index(), dma32);
        assert_eq!(pa.zone_of(b).unwrap().index(), dma);
        assert_eq!(pa.zone_of(c).unwrap().index(), dma32);
        // Three refills under zone locks (the priming one, DMA, DMA32).
        pa.fold_vm_diffs();
        assert_eq!(pa.pcp_zone_locked_ops().0, 3);
        for (pfn, o) in [(a, 0), (b, 0), (c, 1)] {
            pa.free_pages(pfn, Order::new(o).unwrap()).unwrap();
        }
        pa.drain_all_pages();
        assert_eq!(pa.check_invariants(), Ok(()));
        assert_eq!(
            pa.zones()
                .iter()
                .map(|z| z.free_area_counts())
                .collect::<Vec<_>>(),
            boot
        );
    });
}
