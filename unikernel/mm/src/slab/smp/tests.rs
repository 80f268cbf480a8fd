//! SLUB's per-CPU fast paths under real concurrency: host threads stand
//! for CPUs and run kmalloc/kfree on one [`SlabAllocator`] in a
//! [`BrLock`], as the kernel's heap does — fast path under their own flag,
//! the general path under every flag — with objects freed on another CPU
//! than the one that allocated them (into that CPU's frozen slab, or a
//! listed one). Every object is stamped and checked on free; afterwards
//! every slab invariant holds and no object is in use.
//!
//! The CPU-flag slow paths (refill from the partial list, frees into
//! unfrozen slabs, both under the cache's `list_lock`) are tested exactly
//! on one thread first, then under churn with caches shrunk by a
//! concurrent exclusive holder; drained, the buddy allocator is as at boot.

extern crate std;

use std::sync::mpsc;
use std::vec::Vec;

use super::super::{
    FROZEN, NIL, ObjectMemory, PlatformMemory, SLAB_EMPTY_RESERVE, SlabAllocator, SlabFlags,
    SlabMeta, slab_va,
};
use crate::gfp::GfpFlags;
use crate::kmalloc::SIZE_TO_SLOT;
use crate::manager::MemoryManager;
use crate::memblock::Memblock;
use crate::page::Page;
use crate::page_alloc::PageAlloc;
use crate::platform::sim::{SimPlatform, set_current_cpu};
use crate::sync::BrLock;
use crate::types::PhysAddr;
use crate::zone::ZoneLayout;

const RAM: u64 = 64 << 20;
const CPUS: usize = 4;

type Mem<'p> = PlatformMemory<'p, SimPlatform>;

fn kmalloc(
    slab: &BrLock<SlabAllocator<'_>>,
    mm: &MemoryManager<'_, SimPlatform>,
    mem: &Mem<'_>,
    cpu: usize,
    size: usize,
    fast: &mut u64,
) -> u64 {
    if let Some(g) = slab.read_cpu(cpu) {
        // SAFETY: `g` holds `cpu`'s flag and this thread plays `cpu`.
        #[allow(unsafe_code)]
        if let Some(addr) = unsafe { g.kmalloc_cpu(cpu, mem, size, GfpFlags::GFP_KERNEL) } {
            *fast += 1;
            return addr;
        }
    }
    let mut g = slab.write();
    g.set_this_cpu(cpu);
    g.kmalloc(mem, mm, size, GfpFlags::GFP_KERNEL).unwrap()
}

fn kfree(
    slab: &BrLock<SlabAllocator<'_>>,
    mm: &MemoryManager<'_, SimPlatform>,
    mem: &Mem<'_>,
    cpu: usize,
    addr: u64,
    fast: &mut u64,
) {
    if let Some(g) = slab.read_cpu(cpu) {
        // SAFETY: as in `kmalloc`; this thread owns the object.
        #[allow(unsafe_code)]
        if unsafe { g.kfree_cpu(cpu, mem, addr) } {
            *fast += 1;
            return;
        }
    }
    let mut g = slab.write();
    g.set_this_cpu(cpu);
    g.kfree(mem, mm, addr).unwrap();
}

#[test]
fn kmalloc_and_kfree_on_four_cpus_with_remote_frees() {
    let (mm, metas) = setup(CPUS);
    let slab = BrLock::new(SlabAllocator::new(metas, SlabFlags::NONE));
    slab.set_nr_cpus(CPUS);
    let mem = PlatformMemory(mm.platform());
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..CPUS).map(|_| mpsc::channel::<(u64, u64)>()).unzip();
    let mut rxs: Vec<Option<mpsc::Receiver<(u64, u64)>>> = rxs.into_iter().map(Some).collect();
    let fast_total = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for cpu in 0..CPUS {
            let (slab, mm, mem, fast_total) = (&slab, &mm, &mem, &fast_total);
            let tx = txs[(cpu + 1) % CPUS].clone();
            let rx = rxs[cpu].take().unwrap();
            s.spawn(move || {
                set_current_cpu(cpu);
                let mut fast = 0u64;
                let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ cpu as u64;
                let mut live: Vec<(u64, u64)> = Vec::new();
                for i in 0..6000u64 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    while let Ok((addr, mark)) = rx.try_recv() {
                        assert_eq!(
                            mem.read_u64(addr),
                            mark,
                            "an object changed hands while live"
                        );
                        kfree(slab, mm, mem, cpu, addr, &mut fast);
                    }
                    if live.len() < 200 && (!rng.is_multiple_of(3) || live.is_empty()) {
                        let size = [8, 64, 64, 64, 192, 1000][(rng >> 8) as usize % 6];
                        let addr = kmalloc(slab, mm, mem, cpu, size, &mut fast);
                        let mark = ((cpu as u64) << 48) | i;
                        mem.write_u64(addr, mark);
                        live.push((addr, mark));
                    } else {
                        let (addr, mark) = live.swap_remove((rng >> 20) as usize % live.len());
                        assert_eq!(mem.read_u64(addr), mark, "two owners of one object");
                        if rng.is_multiple_of(5) {
                            tx.send((addr, mark)).unwrap(); // freed on the next CPU
                        } else {
                            kfree(slab, mm, mem, cpu, addr, &mut fast);
                        }
                    }
                }
                drop(tx);
                for (addr, mark) in live {
                    assert_eq!(mem.read_u64(addr), mark);
                    kfree(slab, mm, mem, cpu, addr, &mut fast);
                }
                for (addr, mark) in rx {
                    assert_eq!(mem.read_u64(addr), mark);
                    kfree(slab, mm, mem, cpu, addr, &mut fast);
                }
                fast_total.fetch_add(fast, std::sync::atomic::Ordering::Relaxed);
            });
        }
        drop(txs);
    });
    let g = slab.write();
    g.check_invariants(&mem).unwrap();
    let in_use: u64 = g.caches(&mem).map(|c| c.active_objs).sum();
    assert_eq!(in_use, 0, "every object came back");
    // Most operations took the fast paths.
    let fast = fast_total.into_inner();
    std::println!("{fast} of about 32000 operations took a fast path");
    assert!(fast > 6_000, "the fast paths ran: {fast}");
    drop(g);
    assert_eq!(mm.lock().check_invariants(), Ok(()));
}

/// A fresh manager over `RAM` for `cpus` CPUs, its slab overlay leaked.
fn setup(cpus: usize) -> (MemoryManager<'static, SimPlatform>, &'static mut [SlabMeta]) {
    let mem_map = std::vec![Page::new_reserved(); (RAM >> 12) as usize].leak();
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), RAM).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(RAM, RAM)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    let mm = MemoryManager::new(pa, SimPlatform::new(RAM >> 12));
    mm.set_nr_cpus(cpus);
    let metas = std::vec![crate::slab::tests::UNWRITTEN_META; (RAM >> 12) as usize].leak();
    (mm, metas)
}

/// The shared side's slow paths, step by step on one thread, with the
/// exact state after each: a remote free into a full slab (full →
/// partial, to the tail, under `list_lock`), a CPU whose free list ran dry
/// freezing that partial slab, a free into another CPU's frozen slab and
/// a double free left to the exclusive side, and a free that would empty
/// a slab past the reserve left to it too (it needs the page allocator).
#[test]
fn cpu_flag_slow_paths_move_slabs_under_list_lock() {
    let (mm, metas) = setup(2);
    let slab = BrLock::new(SlabAllocator::new(metas, SlabFlags::NONE));
    slab.set_nr_cpus(2);
    let mem = PlatformMemory(mm.platform());
    let slot = SIZE_TO_SLOT[(64 - 1) >> 3] as usize;
    let objects = slab.write().caches[slot].objects as usize;
    // CPU 0 fills two slabs' worth through the exclusive side: its first
    // slab goes full when the second is frozen.
    let mut objs = Vec::new();
    {
        let mut g = slab.write();
        g.set_this_cpu(0);
        for _ in 0..objects + 1 {
            objs.push(g.kmalloc(&mem, &mm, 64, GfpFlags::GFP_KERNEL).unwrap());
        }
        let n = &*g.caches[slot].node;
        assert_eq!((n.full.nr, n.partial.nr, n.empty.nr), (1, 0, 0));
        assert_eq!(n.list_inuse, objects as u64);
    }
    let first = slab_va(((objs[0] - crate::types::PAGE_OFFSET) >> 12) as u32);
    let second = objs[objects];
    let cpu_slab0 = slab.write().pcpu[0].slabs[slot].slab;
    assert_eq!(cpu_slab0, second & !0xfff, "the second slab is CPU 0's");
    // CPU 1 frees two objects of the full slab: full → partial.
    for &o in &objs[3..5] {
        let g = slab.read_cpu(1).unwrap();
        // SAFETY: `g` holds CPU 1's flag; this thread owns the object.
        assert!(
            unsafe { g.kfree_cpu(1, &mem, o) },
            "free into an unfrozen slab"
        );
    }
    {
        let g = slab.write();
        let n = &*g.caches[slot].node;
        assert_eq!((n.full.nr, n.partial.nr, n.empty.nr), (0, 1, 0));
        assert_eq!(n.list_inuse, objects as u64 - 2);
        let head = ((first - crate::types::PAGE_OFFSET) >> 12) as usize;
        assert_eq!(n.partial.head as usize, head);
        assert_eq!(g.metas[head].inuse as usize, objects - 2);
        assert_eq!(u64::from(g.metas[head].freelist), objs[4] - first, "LIFO");
        assert_eq!(g.pcpu[1].hint as usize, slot);
        g.check_invariants(&mem).unwrap();
    }
    // CPU 1 frees an object of CPU 0's frozen slab: not under list_lock.
    {
        let g = slab.read_cpu(1).unwrap();
        // SAFETY: as above.
        assert!(
            !unsafe { g.kfree_cpu(1, &mem, second) },
            "another CPU's frozen slab"
        );
        // SAFETY: as above: a double free is the exclusive side's to report.
        assert!(!unsafe { g.kfree_cpu(1, &mem, objs[4]) }, "double free");
    }
    // CPU 1 has no slab: its refill freezes the partial slab, handing out
    // the object freed last.
    {
        let g = slab.read_cpu(1).unwrap();
        // SAFETY: `g` holds CPU 1's flag.
        let a = unsafe { g.kmalloc_cpu(1, &mem, 64, GfpFlags::GFP_KERNEL) };
        assert_eq!(a, Some(objs[4]));
        // SAFETY: as above.
        let b = unsafe { g.kmalloc_cpu(1, &mem, 64, GfpFlags::GFP_KERNEL) };
        assert_eq!(b, Some(objs[3]));
        // SAFETY: as above: the slab is full again, nothing is listed.
        let c = unsafe { g.kmalloc_cpu(1, &mem, 64, GfpFlags::GFP_KERNEL) };
        assert_eq!(
            c, None,
            "no listed slab: a new one needs the exclusive side"
        );
    }
    {
        let g = slab.write();
        let n = &*g.caches[slot].node;
        assert_eq!(
            (n.full.nr, n.partial.nr, n.empty.nr, n.list_inuse),
            (0, 0, 0, 0)
        );
        let cc = g.pcpu[1].slabs[slot];
        assert_eq!(
            (
                cc.slab,
                cc.freelist,
                g.cpu_slab_inuse(&mem, slot, &cc) as usize
            ),
            (first, 0, objects)
        );
        let m = g.metas[cc.slab_pfn() as usize];
        assert_eq!((m.prev, m.next, m.freelist), (FROZEN, NIL, NIL));
        g.check_invariants(&mem).unwrap();
    }
    // CPU 1's full slab goes to the full count when it refills again, from
    // an empty slab; frees that would empty a slab past the reserve are
    // left to the exclusive side.
    {
        let mut g = slab.write();
        g.set_this_cpu(0);
        // Two more empty slabs on the list: the reserve.
        let id = g.id_of(slot);
        for _ in 0..SLAB_EMPTY_RESERVE {
            g.grow_empty_slab(&mem, &mm, id, GfpFlags::GFP_KERNEL)
                .unwrap();
        }
    }
    {
        let g = slab.read_cpu(1).unwrap();
        // SAFETY: `g` holds CPU 1's flag.
        let a = unsafe { g.kmalloc_cpu(1, &mem, 64, GfpFlags::GFP_KERNEL) }.unwrap();
        // SAFETY: as above; this thread owns `a`.
        assert!(unsafe { g.kfree_cpu(1, &mem, a) }, "onto its own free list");
    }
    {
        let g = slab.write();
        let n = &*g.caches[slot].node;
        assert_eq!((n.full.nr, n.empty.nr), (1, SLAB_EMPTY_RESERVE - 1));
        g.check_invariants(&mem).unwrap();
    }
    {
        // CPU 0's slab: give it back to the lists so that its objects'
        // frees go through list_lock; the last would empty a slab while the
        // reserve is full again.
        let mut g = slab.write();
        g.set_this_cpu(0);
        g.deactivate_slab(&mem, &mm, 0, slot);
        let id = g.id_of(slot);
        g.grow_empty_slab(&mem, &mm, id, GfpFlags::GFP_KERNEL)
            .unwrap();
        assert_eq!(g.caches[slot].node.empty.nr, SLAB_EMPTY_RESERVE);
    }
    {
        let g = slab.read_cpu(0).unwrap();
        // SAFETY: `g` holds CPU 0's flag; this thread owns `second`.
        assert!(
            !unsafe { g.kfree_cpu(0, &mem, second) },
            "would discard past the reserve"
        );
    }
    let mut g = slab.write();
    g.set_this_cpu(0);
    g.kfree(&mem, &mm, second).unwrap();
    g.check_invariants(&mem).unwrap();
}

/// Real threads as CPUs: kmalloc and kfree of mixed sizes with a quarter
/// of the frees remote (the object passes to the next CPU), bursts that
/// grow and drain caches so slabs churn through the partial and empty
/// lists, and a CPU that now and then takes the exclusive side to shrink
/// every cache (flushing every CPU's slab and giving empty slabs back to
/// the buddy allocator) while the others run. Afterwards every slab
/// invariant holds, nothing is in use, and once the caches are shrunk and
/// the per-CPU page lists drained the buddy allocator is as before.
#[test]
fn list_lock_churn_with_remote_frees_and_concurrent_shrinks() {
    const CPUS: usize = 4;
    let (mm, metas) = setup(CPUS);
    mm.drain_all_pages();
    let boot = mm.buddyinfo();
    let slab = BrLock::new(SlabAllocator::new(metas, SlabFlags::NONE));
    slab.set_nr_cpus(CPUS);
    let mem = PlatformMemory(mm.platform());
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..CPUS).map(|_| mpsc::channel::<(u64, u64)>()).unzip();
    let mut rxs: Vec<Option<mpsc::Receiver<(u64, u64)>>> = rxs.into_iter().map(Some).collect();
    let exclusive_total = std::sync::atomic::AtomicU64::new(0);
    let ops_total = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for cpu in 0..CPUS {
            let (slab, mm, mem) = (&slab, &mm, &mem);
            let (exclusive_total, ops_total) = (&exclusive_total, &ops_total);
            let tx = txs[(cpu + 1) % CPUS].clone();
            let rx = rxs[cpu].take().unwrap();
            s.spawn(move || {
                set_current_cpu(cpu);
                let mut fast = 0u64;
                let mut ops = 0u64;
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (cpu as u64 * 0x1234_5678);
                let mut live: Vec<(u64, u64)> = Vec::new();
                for i in 0..20_000u64 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    while let Ok((addr, mark)) = rx.try_recv() {
                        assert_eq!(
                            mem.read_u64(addr),
                            mark,
                            "an object changed hands while live"
                        );
                        kfree(slab, mm, mem, cpu, addr, &mut fast);
                        ops += 1;
                    }
                    if cpu == 0 && i % 2000 == 1999 {
                        let mut g = slab.write();
                        g.set_this_cpu(cpu);
                        g.shrink_all(mem, mm);
                        ops += 1;
                    }
                    // Bursts: grow to ~600 live objects, then drain to ~0.
                    let phase = (i / 1500).is_multiple_of(2);
                    let want_alloc = phase != rng.is_multiple_of(4);
                    if live.len() < 600 && (want_alloc || live.is_empty()) {
                        let size = [8, 32, 64, 64, 96, 192, 512, 1024][(rng >> 8) as usize % 8];
                        let addr = kmalloc(slab, mm, mem, cpu, size, &mut fast);
                        let mark = ((cpu as u64) << 48) | i;
                        mem.write_u64(addr, mark);
                        live.push((addr, mark));
                    } else {
                        let (addr, mark) = live.swap_remove((rng >> 20) as usize % live.len());
                        assert_eq!(mem.read_u64(addr), mark, "two owners of one object");
                        if rng.is_multiple_of(4) {
                            tx.send((addr, mark)).unwrap();
                            continue;
                        }
                        kfree(slab, mm, mem, cpu, addr, &mut fast);
                    }
                    ops += 1;
                }
                drop(tx);
                for (addr, mark) in live {
                    assert_eq!(mem.read_u64(addr), mark);
                    kfree(slab, mm, mem, cpu, addr, &mut fast);
                    ops += 1;
                }
                for (addr, mark) in rx {
                    assert_eq!(mem.read_u64(addr), mark);
                    kfree(slab, mm, mem, cpu, addr, &mut fast);
                    ops += 1;
                }
                exclusive_total.fetch_add(ops - fast, std::sync::atomic::Ordering::Relaxed);
                ops_total.fetch_add(ops, std::sync::atomic::Ordering::Relaxed);
            });
        }
        drop(txs);
    });
    let mut g = slab.write();
    g.check_invariants(&mem).unwrap();
    let in_use: u64 = g.caches(&mem).map(|c| c.active_objs).sum();
    assert_eq!(in_use, 0, "every object came back");
    let (excl, ops) = (exclusive_total.into_inner(), ops_total.into_inner());
    std::println!("{excl} of {ops} operations took the exclusive side");
    assert!(
        excl * 10 < ops,
        "the CPU-flag paths (fast and list_lock) carried the load"
    );
    g.shrink_all(&mem, &mm);
    assert_eq!(g.slab_pages(), 0, "every slab went back");
    g.check_invariants(&mem).unwrap();
    drop(g);
    mm.drain_all_pages();
    assert_eq!(
        mm.buddyinfo(),
        boot,
        "drained, the buddy allocator is as at boot"
    );
    assert_eq!(mm.lock().check_invariants(), Ok(()));
}

/// `kfree_cpu`'s two halves behind a missed hint, exactly: the lookup
/// that pushes onto this CPU's slab of another cache without `list_lock`
/// and hands the rest on by a tail call, and the `list_lock` half, which
/// appends a slab going full → partial after the old tail (links both
/// ways) on the entry it already holds. An overlay entry naming an empty
/// cache slot (no live cache) is refused by the plain bound alone.
#[test]
fn missed_hint_frees_split_between_the_lookup_and_the_list_lock_half() {
    let (mm, metas) = setup(1);
    let slab = BrLock::new(SlabAllocator::new(metas, SlabFlags::NONE));
    let mem = PlatformMemory(mm.platform());
    let s64 = SIZE_TO_SLOT[(64 - 1) >> 3] as usize;
    let s128 = SIZE_TO_SLOT[(128 - 1) >> 3] as usize;
    let objects = slab.write().caches[s64].objects as usize;
    // Three slabs of kmalloc-64: two full (listed), the third CPU 0's.
    let mut objs = Vec::new();
    {
        let mut g = slab.write();
        g.set_this_cpu(0);
        for _ in 0..2 * objects + 1 {
            objs.push(g.kmalloc(&mem, &mm, 64, GfpFlags::GFP_KERNEL).unwrap());
        }
        assert_eq!(g.caches[s64].node.full.nr, 2);
    }
    let pfn_of = |a: u64| ((a - crate::types::PAGE_OFFSET) >> 12) as u32;
    let (a, b) = (pfn_of(objs[0]), pfn_of(objs[objects]));
    let mine = objs[2 * objects];
    // The hint moves to kmalloc-128; a free of CPU 0's own kmalloc-64
    // object misses it and lands on the CPU free list, lock untouched.
    let x = {
        let g = slab.read_cpu(0).unwrap();
        // SAFETY: `g` holds CPU 0's flag.
        let x = unsafe { g.kmalloc_cpu(0, &mem, 128, GfpFlags::GFP_KERNEL) };
        assert_eq!(x, None, "no kmalloc-128 slab yet");
        drop(g);
        let mut g = slab.write();
        g.set_this_cpu(0);
        g.kmalloc(&mem, &mm, 128, GfpFlags::GFP_KERNEL).unwrap()
    };
    {
        let g = slab.read_cpu(0).unwrap();
        assert_eq!(g.pcpu[0].hint as usize, s128);
        // SAFETY: `g` holds CPU 0's flag; this thread owns `mine`.
        assert!(unsafe { g.kfree_cpu(0, &mem, mine) });
        let cc = g.pcpu[0].slabs[s64];
        assert_eq!((cc.freelist, g.cpu_slab_inuse(&mem, s64, &cc)), (mine, 0));
        assert_eq!(g.pcpu[0].hint as usize, s64);
        // Full → partial twice (both miss the hint: neither slab is the
        // CPU's): `a` onto the empty partial list, then `b` after it.
        for o in [objs[1], objs[objects + 2]] {
            // SAFETY: as above; this thread owns `o`.
            assert!(unsafe { g.kfree_cpu(0, &mem, o) }, "into a full slab");
        }
    }
    {
        let g = slab.write();
        let n = &*g.caches[s64].node;
        assert_eq!((n.full.nr, n.partial.nr), (0, 2));
        assert_eq!((n.partial.head, n.partial.tail), (a, b));
        assert_eq!(
            (g.metas[a as usize].prev, g.metas[a as usize].next),
            (NIL, b)
        );
        assert_eq!(
            (g.metas[b as usize].prev, g.metas[b as usize].next),
            (a, NIL)
        );
        assert_eq!(
            u64::from(g.metas[b as usize].freelist),
            objs[objects + 2] - slab_va(b)
        );
        assert_eq!(n.list_inuse, 2 * objects as u64 - 2);
        g.check_invariants(&mem).unwrap();
    }
    // An overlay entry naming a cache slot that holds no cache: refused,
    // nothing changed.
    {
        let mut g = slab.write();
        let dead = (crate::slab::MAX_CACHES - 1) as u16;
        assert!(!g.caches[dead as usize].live);
        let pfn = a as usize;
        let saved = g.metas[pfn];
        g.metas[pfn].cache = dead + 1;
        drop(g);
        let g = slab.read_cpu(0).unwrap();
        // SAFETY: `g` holds CPU 0's flag; nothing is freed.
        assert!(!unsafe { g.kfree_cpu(0, &mem, slab_va(a)) });
        drop(g);
        let mut g = slab.write();
        g.metas[pfn] = saved;
        g.check_invariants(&mem).unwrap();
    }
    let mut g = slab.write();
    g.set_this_cpu(0);
    g.kfree(&mem, &mm, x).unwrap();
    g.check_invariants(&mem).unwrap();
}

/// `ZERO_SIZE_PTR` (16) and other tiny addresses never pass a free fast
/// path's test, even when the hint names a small-object cache whose CPU
/// slab a shrink took away (without a slab, the slab address is 0 and the
/// address itself is the "offset": 16 is a multiple of 8). Both paths
/// refuse them, `kfree` treats `ZERO_SIZE_PTR` as the no-op it is and
/// `kmem_cache_free` reports it, and nothing changes.
#[test]
fn tiny_addresses_never_take_a_fast_free() {
    let mut f = super::super::tests::Fixture::new(16);
    let cpu_of = |f: &super::super::tests::Fixture, id: super::super::CacheId| {
        f.slab.pcpu[0].slabs[id.slot()]
    };
    let id = f.slab.find_cache("kmalloc-8").unwrap();
    let o = f
        .slab
        .kmalloc(&f.mem, &f.pages, 8, GfpFlags::GFP_KERNEL)
        .unwrap();
    f.slab.kfree(&f.mem, &f.pages, o).unwrap();
    assert_eq!(f.slab.pcpu[0].hint as usize, id.slot());
    f.slab.kmem_cache_shrink(&f.mem, &f.pages, id).unwrap();
    assert_eq!(cpu_of(&f, id).slab, 0, "no CPU slab, the hint unchanged");
    assert_eq!(f.slab.pcpu[0].hint as usize, id.slot());
    for addr in [8, crate::kmalloc::ZERO_SIZE_PTR, 24, 64] {
        // SAFETY: CPU 0, this thread alone; nothing is freed (the test).
        assert!(!unsafe { f.slab.kfree_cpu(0, &f.mem, addr) }, "{addr}");
        assert_eq!(cpu_of(&f, id).freelist, 0, "{addr}");
        assert!(f.slab.kmem_cache_free(&f.mem, &f.pages, id, addr).is_err());
        assert_eq!(cpu_of(&f, id).freelist, 0, "{addr}");
    }
    f.slab
        .kfree(&f.mem, &f.pages, crate::kmalloc::ZERO_SIZE_PTR)
        .unwrap();
    f.slab.kfree(&f.mem, &f.pages, 0).unwrap();
    assert_eq!(cpu_of(&f, id).freelist, 0);
    assert_eq!(f.slab.cache_info(&f.mem, id).unwrap().active_objs, 0);
    f.slab.check_invariants(&f.mem).unwrap();
    // With a CPU slab frozen again: the same, its free list untouched.
    let o = f
        .slab
        .kmalloc(&f.mem, &f.pages, 8, GfpFlags::GFP_KERNEL)
        .unwrap();
    let head = cpu_of(&f, id).freelist;
    assert_ne!(cpu_of(&f, id).slab, 0);
    for addr in [0, 8, crate::kmalloc::ZERO_SIZE_PTR] {
        // SAFETY: as above.
        assert!(!unsafe { f.slab.kfree_cpu(0, &f.mem, addr) }, "{addr}");
        f.slab.kfree(&f.mem, &f.pages, addr).unwrap();
        assert_eq!(cpu_of(&f, id).freelist, head, "{addr}");
    }
    assert_eq!(f.slab.cache_info(&f.mem, id).unwrap().active_objs, 1);
    f.slab.kfree(&f.mem, &f.pages, o).unwrap();
    assert_eq!(cpu_of(&f, id).freelist, o);
    f.slab.check_invariants(&f.mem).unwrap();
}

/// With `failslab` armed to fail everything, the per-CPU allocation
/// defers to the general path (which injects), except for `__GFP_NOFAIL`
/// (the kernel heap's flags), which `failslab` never fails: it pops this
/// CPU's free list as usual, and nothing is counted as injected.
#[test]
fn armed_failslab_spares_nofail_on_the_cpu_path() {
    use crate::fault_inject::{FaultAttr, FaultConfig};
    let mut f = super::super::tests::Fixture::new(16);
    let gfp = GfpFlags::GFP_ATOMIC;
    let warm = f.slab.kmalloc(&f.mem, &f.pages, 64, gfp).unwrap();
    let mut attr = FaultAttr::new();
    attr.setup(FaultConfig {
        interval: 1,
        probability: 100,
        space: 0,
        times: -1,
    });
    f.slab.failslab_mut().attr = attr;
    // SAFETY: CPU 0, this thread alone.
    assert_eq!(unsafe { f.slab.kmalloc_cpu(0, &f.mem, 64, gfp) }, None);
    // SAFETY: as above.
    let o = unsafe { f.slab.kmalloc_cpu(0, &f.mem, 64, gfp | GfpFlags::NOFAIL) };
    assert_eq!(
        o.map(|o| o - warm),
        Some(64),
        "the next object of the CPU slab"
    );
    assert!(f.slab.kmalloc(&f.mem, &f.pages, 64, gfp).is_err());
    assert_eq!(f.slab.failslab().attr.injected(), 1);
    f.slab.failslab_mut().attr = FaultAttr::new();
    for obj in [warm, o.unwrap()] {
        f.slab.kfree(&f.mem, &f.pages, obj).unwrap();
    }
    f.slab.check_invariants(&f.mem).unwrap();
}

/// The per-CPU paths keep no count, yet every view is exact after every
/// step: kmalloc/kfree through `kmalloc_cpu`/`kfree_cpu` (the exclusive
/// paths when they decline) on four CPUs, objects freed on any CPU (onto
/// a frozen slab's list, this CPU's or, through the exclusive side,
/// another's), with flushes between; each cache's `active_objs` and slab
/// split against a model of the live objects, and the recount every few
/// steps.
#[test]
fn per_cpu_paths_keep_every_view_exact_at_every_step() {
    let (mm, metas) = setup(CPUS);
    let slab = BrLock::new(SlabAllocator::new(metas, SlabFlags::NONE));
    slab.set_nr_cpus(CPUS);
    let mem = PlatformMemory(mm.platform());
    let mut rng = crate::test_rng::Rng(0x0005_eed5_1ab6);
    let mut live: Vec<(u64, usize)> = Vec::new();
    let (mut fast, mut flushes) = (0u64, 0);
    for step in 0..4000 {
        let r = rng.next();
        let cpu = (r % CPUS as u64) as usize;
        set_current_cpu(cpu);
        let grow = live.len() < 40 || (live.len() < 300 && r & 0x300 != 0);
        if r >> 60 == 0 {
            let mut g = slab.write();
            let slot = (r >> 20) as usize % SIZE_TO_SLOT.len();
            g.flush_all(&mem, &mm, SIZE_TO_SLOT[slot] as usize);
            flushes += 1;
        } else if grow {
            let size = [64, 64, 512, 1024, 200][(r >> 8) as usize % 5];
            let a = kmalloc(&slab, &mm, &mem, cpu, size, &mut fast);
            let slot = slab.write().cache_of(a).unwrap().slot();
            live.push((a, slot));
        } else {
            let (a, _) = live.swap_remove((r >> 16) as usize % live.len());
            kfree(&slab, &mm, &mem, cpu, a, &mut fast);
        }
        let g = slab.write();
        for i in g.caches(&mem) {
            let want = live.iter().filter(|l| l.1 == i.id.slot()).count() as u64;
            assert_eq!(i.active_objs, want, "{} at step {step}", i.name);
            assert_eq!(i.slabs_full + i.slabs_partial + i.slabs_empty, i.num_slabs);
            assert!(i.slabs_full * i.objs_per_slab as u64 <= want);
            assert!(want <= (i.slabs_full + i.slabs_partial) * i.objs_per_slab as u64);
        }
        if step % 100 == 99 {
            g.check_invariants(&mem).unwrap();
        }
    }
    assert!(fast > 2000 && flushes > 0, "the per-CPU paths ran: {fast}");
    for (a, _) in std::mem::take(&mut live) {
        kfree(&slab, &mm, &mem, 0, a, &mut fast);
    }
    let mut g = slab.write();
    assert_eq!(g.caches(&mem).map(|c| c.active_objs).sum::<u64>(), 0);
    g.shrink_all(&mem, &mm);
    assert_eq!(g.slab_pages(), 0, "every slab went back");
    g.check_invariants(&mem).unwrap();
}
