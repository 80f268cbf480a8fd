//! SLUB's per-CPU fast paths under real concurrency: host threads stand
//! for CPUs and run kmalloc/kfree on one [`SlabAllocator`] in a
//! [`BrLock`], as the kernel's heap does — fast path under their own flag,
//! the general path under every flag — with objects freed on another CPU
//! than the one that allocated them (into that CPU's frozen slab, or a
//! listed one). Every object is stamped and checked on free; afterwards
//! every slab invariant holds and no object is in use.

extern crate std;

use std::sync::mpsc;
use std::vec::Vec;

use super::super::{ObjectMemory, PlatformMemory, SlabAllocator, SlabFlags, SlabMeta};
use crate::gfp::GfpFlags;
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

fn kmalloc(slab: &BrLock<SlabAllocator<'_>>, mm: &MemoryManager<'_, SimPlatform>, mem: &Mem<'_>, cpu: usize, size: usize, fast: &mut u64) -> u64 {
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

fn kfree(slab: &BrLock<SlabAllocator<'_>>, mm: &MemoryManager<'_, SimPlatform>, mem: &Mem<'_>, cpu: usize, addr: u64, fast: &mut u64) {
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
    let mut mem_map = std::vec![Page::new_reserved(); (RAM >> 12) as usize];
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), RAM).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    let mut pa = PageAlloc::new(&mut mem_map, ZoneLayout::from_bytes(RAM, RAM)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    let mm = MemoryManager::new(pa, SimPlatform::new(RAM >> 12));
    mm.set_nr_cpus(CPUS);
    let mut metas = std::vec![SlabMeta::EMPTY; (RAM >> 12) as usize];
    let slab = BrLock::new(SlabAllocator::new(&mut metas, SlabFlags::NONE));
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
                        assert_eq!(mem.read_u64(addr), mark, "an object changed hands while live");
                        kfree(slab, mm, mem, cpu, addr, &mut fast);
                    }
                    if live.len() < 200 && (rng % 3 != 0 || live.is_empty()) {
                        let size = [8, 64, 64, 64, 192, 1000][(rng >> 8) as usize % 6];
                        let addr = kmalloc(slab, mm, mem, cpu, size, &mut fast);
                        let mark = ((cpu as u64) << 48) | i;
                        mem.write_u64(addr, mark);
                        live.push((addr, mark));
                    } else {
                        let (addr, mark) = live.swap_remove((rng >> 20) as usize % live.len());
                        assert_eq!(mem.read_u64(addr), mark, "two owners of one object");
                        if rng % 5 == 0 {
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
    let in_use: u64 = g.caches().map(|c| c.active_objs).sum();
    assert_eq!(in_use, 0, "every object came back");
    // Most operations took the fast paths.
    let fast = fast_total.into_inner();
    std::println!("{fast} of about 32000 operations took a fast path");
    assert!(fast > 6_000, "the fast paths ran: {fast}");
    drop(g);
    assert_eq!(mm.lock().check_invariants(), Ok(()));
}
