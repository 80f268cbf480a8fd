//! Host tests of the selfcheck walks: a clean machine reports nothing and
//! counts what it walked; each structure corrupted behind its owner's back
//! is reported exactly (subsystem, sentence, address), all problems at
//! once. Machines come from `vmalloc/tests.rs` (64 MiB, lowmem 32 MiB, a
//! reserved hole for ioremap) and `slab/tests.rs` (`Fixture`).

use std::vec::Vec;

use super::*;
use crate::gfp::GfpFlags;
use crate::highmem::{KmapAtomicStack, Pkmap, fixmap_addr, pkmap_addr};
use crate::platform::MapProt;
use crate::slab::tests::Fixture;
use crate::slab::{POISON_FREE, SLUB_RED_INACTIVE, SlabFlags, slab_va};
use crate::types::{Order, PAGE_OFFSET, PAGE_SHIFT, Pfn, PhysAddr};
use crate::vmalloc::tests::{RAM, RESERVED_BASE, areas, machine, mem_map};
use crate::vmalloc::{ioremap, vmalloc, vmap};
use crate::zone::ZoneType;

const P: u64 = PAGE_SIZE;

/// Runs one check, returning what it reported and counted.
fn run(check: impl FnOnce(&mut dyn FnMut(Problem), &mut Checked)) -> (Vec<Problem>, Checked) {
    let mut problems = Vec::new();
    let mut checked = Checked::default();
    check(&mut |p| problems.push(p), &mut checked);
    (problems, checked)
}

/// `(subsystem, what, addr)` of each problem, for exact comparison.
fn brief(problems: &[Problem]) -> Vec<(&'static str, &'static str, Option<u64>)> {
    problems
        .iter()
        .map(|p| (p.subsystem, p.what, p.addr))
        .collect()
}

#[test]
fn a_clean_machine_reports_nothing_and_counts_what_it_walked() {
    let mut mm_map = mem_map();
    let mm = machine(&mut mm_map);
    let sim = mm.platform();
    let mut va = areas();
    let mut sizes = 0;
    for size in [P, 3 * P, 16 * P] {
        vmalloc(&mut va, &mm, sim, size, "test").unwrap();
        sizes += size / P;
    }
    let own = mm
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::new(1).unwrap(), OwnerTag::API)
        .unwrap();
    vmap(&mut va, sim, &[own, own.add(1)], MapProt::KERNEL, "test").unwrap();
    ioremap(&mut va, &mm, sim, PhysAddr(RESERVED_BASE), 2 * P, "test").unwrap();
    let pa = mm.lock();
    let mut pk = Pkmap::new(pa.lowmem_pfn());
    let high = pa.lowmem_pfn();
    pk.kmap(sim, high).unwrap();
    pk.kmap(sim, high.add(1)).unwrap();
    pk.kunmap(high.add(1)).unwrap(); // count 1: mapped, awaiting the lazy flush
    let mut atomic = KmapAtomicStack::new();
    atomic.push(sim, high.add(2)).unwrap();
    atomic.push(sim, Pfn(5)).unwrap();

    let mut checked = Checked::default();
    let mut problems = Vec::new();
    let mut sink = |p| problems.push(p);
    check_buddy(&pa, &mut sink, &mut checked);
    check_vmap_areas(&va, sim, &pa, &mut sink, &mut checked);
    check_pkmap(&pk, sim, &mut sink, &mut checked);
    check_kmap_atomic(&atomic, sim, &mut sink, &mut checked);
    assert_eq!(problems, []);

    let free_blocks: u64 = ZoneType::ALL
        .iter()
        .flat_map(|&z| pa.free_area_counts(z))
        .sum();
    assert_eq!(checked.pages, RAM >> PAGE_SHIFT);
    assert_eq!(checked.pages, pa.max_pfn().0);
    assert_eq!(checked.free_blocks, free_blocks);
    assert_eq!(checked.free_pages, pa.nr_free_pages());
    // One reserved frame (bios) plus the 2 MiB hole, and the vmalloc
    // frames (order 0 each) plus the order-1 vmap block allocated.
    assert_eq!(checked.reserved_pages, 1 + 512);
    assert_eq!(checked.allocated_blocks, sizes + 1);
    assert_eq!((checked.vmap_areas, checked.guard_pages), (5, 5));
    assert_eq!(checked.ptes, sizes + 2 + 2 + 2 + 2);
    assert_eq!(checked.ptes, sim.nr_ptes() as u64);
    assert_eq!((checked.pkmap_slots, checked.kmap_atomic_slots), (1024, 16));
    assert_eq!(checked.fields().len(), 15);
    assert_eq!(checked.fields()[0], ("pages", RAM >> PAGE_SHIFT));
    assert_eq!(pa.check_invariants(), Ok(()));
}

#[test]
fn buddy_reports_every_corrupted_frame_and_check_invariants_the_first() {
    let mut mm_map = mem_map();
    let mm = machine(&mut mm_map);
    let head = mm
        .alloc_pages(
            GfpFlags::GFP_KERNEL | GfpFlags::COMP,
            Order::new(2).unwrap(),
            OwnerTag::API,
        )
        .unwrap();
    let mut pa = mm.lock();
    // A frame inside the largest free block of DMA: owned while free.
    let free_block = Pfn(1 << 10); // pfn 1024 heads an order-10 block at boot
    assert!(pa.page(free_block).unwrap().is_buddy());
    let map = pa.mem_map_mut();
    map[free_block.index() + 3].owner = OwnerTag::API;
    // An allocated frame inside that free block.
    map[free_block.index() + 7]
        .flags
        .insert(crate::page::PageFlags::TAIL);
    // An allocated block whose head lost its reference and a tail relabelled.
    map[head.index()].refcount = 0;
    map[head.index() + 2].owner = OwnerTag::NET;
    let (problems, checked) = run(|s, c| check_buddy(&pa, s, c));
    assert_eq!(
        brief(&problems),
        [
            (
                BUDDY,
                "free frame has an owner or a refcount",
                Some(free_block.0 + 3)
            ),
            (
                BUDDY,
                "frame inside a free block is not free",
                Some(free_block.0 + 7)
            ),
            (
                BUDDY,
                "tail frame outside an allocated block",
                Some(free_block.0 + 7)
            ),
            (BUDDY, "allocated block head with refcount 0", Some(head.0)),
            (
                BUDDY,
                "tail frame owner differs from its head",
                Some(head.0 + 2)
            ),
        ]
    );
    assert_eq!(checked.pages, pa.max_pfn().0, "the walk went on to the end");
    assert_eq!(
        problems[0].to_string(),
        "buddy: free frame has an owner or a refcount (pfn 1027)"
    );
    assert_eq!(
        pa.check_invariants(),
        Err("free frame has an owner or a refcount")
    );
}

#[test]
fn buddy_survives_a_cyclic_free_list() {
    let mut mm_map = mem_map();
    let mm = machine(&mut mm_map);
    let mut pa = mm.lock();
    let dma = pa.zone(ZoneType::Dma).free_area[10];
    assert!(dma.nr_free >= 2);
    let first = dma.free_list[crate::zone::MigrateType::Movable.index()].head as usize;
    pa.mem_map_mut()[first].next = first as u32; // points at itself
    let (problems, _) = run(|s, c| check_buddy(&pa, s, c));
    // The walk stops at nr_free entries instead of spinning.
    assert_eq!(
        brief(&problems),
        [
            (BUDDY, "free list back link broken", Some(first as u64)),
            (BUDDY, "free list back link broken", Some(first as u64)),
            (
                BUDDY,
                "free list longer than nr_free (or cyclic)",
                Some(first as u64)
            ),
        ][3 - dma.nr_free.min(3) as usize..]
    );
}

#[test]
fn vmalloc_ptes_guards_and_owners_behind_the_allocators_back() {
    let mut mm_map = mem_map();
    let mm = machine(&mut mm_map);
    let sim = mm.platform();
    let mut va = areas();
    let a = vmalloc(&mut va, &mm, sim, 4 * P, "test").unwrap();
    let b = vmalloc(&mut va, &mm, sim, 2 * P, "test").unwrap();
    let io = ioremap(&mut va, &mm, sim, PhysAddr(RESERVED_BASE), P, "test").unwrap();
    // A page of `a` unmapped, `a`'s guard mapped, `b`'s frame relabelled,
    // the ioremap page pointed one frame further.
    let lost = sim.unmap_page(VirtAddr(a.start.0 + P)).unwrap();
    sim.flush_tlb_range(a.start, a.end());
    sim.map_page(a.guard_page(), lost, MapProt::KERNEL).unwrap();
    let b_pfn = sim.translate(b.start).unwrap();
    mm.lock().set_owner(b_pfn, OwnerTag::API).unwrap();
    let io_pfn = sim.unmap_page(io).unwrap();
    sim.map_page(io, io_pfn.add(1), MapProt::KERNEL_NOCACHE)
        .unwrap();
    let pa = mm.lock();
    let (problems, checked) = run(|s, c| check_vmap_areas(&va, sim, &pa, s, c));
    assert_eq!(
        brief(&problems),
        [
            (
                VMALLOC,
                "page of an area is not mapped",
                Some(a.start.0 + P)
            ),
            (VMALLOC, "guard page is mapped", Some(a.guard_page().0)),
            (
                VMALLOC,
                "vmalloc page maps a frame not owned by vmalloc",
                Some(b.start.0)
            ),
            (
                VMALLOC,
                "ioremap page does not map phys + offset",
                Some(io.0)
            ),
        ]
    );
    assert_eq!((checked.vmap_areas, checked.guard_pages), (3, 3));
    assert_eq!(checked.ptes, 3 + 2 + 1);
}

#[test]
fn vmalloc_page_over_a_freed_frame_is_a_use_after_free() {
    let mut mm_map = mem_map();
    let mm = machine(&mut mm_map);
    let sim = mm.platform();
    let mut va = areas();
    let a = vmalloc(&mut va, &mm, sim, P, "test").unwrap();
    let pfn = sim.translate(a.start).unwrap();
    mm.free_pages(pfn, Order::ZERO).unwrap(); // behind vfree's back
    let pa = mm.lock();
    let (problems, _) = run(|s, c| check_vmap_areas(&va, sim, &pa, s, c));
    assert_eq!(
        brief(&problems),
        [(
            VMALLOC,
            "vmalloc page maps a frame that is not allocated",
            Some(a.start.0)
        )]
    );
}

#[test]
fn pkmap_and_kmap_atomic_ptes_behind_their_backs() {
    let mut mm_map = mem_map();
    let mm = machine(&mut mm_map);
    let sim = mm.platform();
    let high = mm.lock().lowmem_pfn();
    let mut pk = Pkmap::new(high);
    let used = pk.kmap(sim, high).unwrap();
    let other = pk.kmap(sim, high.add(1)).unwrap();
    // A stray PTE in a free slot, a used slot unmapped, one pointed elsewhere.
    sim.map_page(pkmap_addr(100), high.add(9), MapProt::KERNEL)
        .unwrap();
    sim.unmap_page(used).unwrap();
    sim.unmap_page(other).unwrap();
    sim.map_page(other, high.add(5), MapProt::KERNEL).unwrap();
    let (problems, checked) = run(|s, c| check_pkmap(&pk, sim, s, c));
    assert_eq!(
        brief(&problems),
        [
            (PKMAP, "mapped slot has no PTE", Some(used.0)),
            (PKMAP, "slot PTE maps another frame", Some(other.0)),
            (PKMAP, "free slot has a PTE", Some(pkmap_addr(100).0)),
        ]
    );
    assert_eq!((checked.pkmap_slots, checked.ptes), (1024, 1));

    let mut atomic = KmapAtomicStack::new();
    atomic.push(sim, high.add(20)).unwrap();
    let (_, top) = atomic.push(sim, high.add(21)).unwrap();
    sim.unmap_page(top).unwrap();
    sim.map_page(fixmap_addr(5), high.add(22), MapProt::KERNEL)
        .unwrap();
    let (problems, checked) = run(|s, c| check_kmap_atomic(&atomic, sim, s, c));
    assert_eq!(
        brief(&problems),
        [
            (KMAP_ATOMIC, "stacked slot has no PTE", Some(top.0)),
            (
                KMAP_ATOMIC,
                "slot above the stack has a PTE",
                Some(fixmap_addr(5).0)
            ),
        ]
    );
    assert_eq!((checked.kmap_atomic_slots, checked.ptes), (16, 1));
}

/// A debug cache of 64-byte objects with `n` objects allocated and every
/// other one freed again; returns the cache and the freed objects.
fn debug_cache(f: &mut Fixture, n: usize) -> (crate::slab::CacheId, Vec<u64>) {
    let flags = SlabFlags::POISON | SlabFlags::RED_ZONE;
    let id = f
        .slab
        .kmem_cache_create("selfcheck", 64, 0, flags, None)
        .unwrap();
    let objs: Vec<u64> = (0..n)
        .map(|_| {
            f.slab
                .kmem_cache_alloc(&f.mem, &f.pages, id, GfpFlags::GFP_KERNEL)
                .unwrap()
        })
        .collect();
    let freed: Vec<u64> = objs.iter().copied().step_by(2).collect();
    for &o in &freed {
        f.slab.kmem_cache_free(&f.mem, &f.pages, id, o).unwrap();
    }
    (id, freed)
}

#[test]
fn a_clean_slab_reports_nothing_and_counts_its_objects() {
    let mut f = Fixture::new(24);
    let (id, _) = debug_cache(&mut f, 100);
    for size in [8, 100, 3000] {
        f.slab
            .kmalloc(&f.mem, &f.pages, size, GfpFlags::GFP_KERNEL)
            .unwrap();
    }
    f.slab
        .kmalloc(&f.mem, &f.pages, 64 << 10, GfpFlags::GFP_KERNEL)
        .unwrap(); // kmalloc_large
    let (problems, checked) = run(|s, c| check_slab(&f.slab, &f.mem, s, c));
    assert_eq!(problems, []);
    let (mut slabs, mut objs, mut active) = (0, 0, 0);
    for c in f.slab.caches(&f.mem) {
        slabs += c.num_slabs;
        objs += c.num_objs;
        active += c.active_objs;
    }
    assert_eq!(checked.caches, f.slab.caches(&f.mem).count() as u64);
    assert_eq!((checked.slabs, checked.objects), (slabs, objs));
    assert_eq!(checked.free_objects, objs - active);
    let info = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(checked.poison_checked, info.num_objs - info.active_objs);
    let (problems, _) = run(|s, c| check_slab_pages(&f.slab, &f.pages.lock(), s, c));
    assert_eq!(problems, []);
}

#[test]
fn slab_poison_red_zone_free_list_and_counters_behind_its_back() {
    let mut f = Fixture::new(24);
    let (id, freed) = debug_cache(&mut f, 100);
    let name = crate::slab::CacheName::new("selfcheck");
    // Use after free: a freed object's poison, another's red zone (the
    // free list is LIFO: freed[2] comes first).
    f.mem.write_u8(freed[2] + 10, 0x41);
    f.mem.write_u8(freed[1] + 64, 0x42);
    assert_eq!(f.mem.read_u8(freed[2] + 11), POISON_FREE);
    assert_eq!(f.mem.read_u8(freed[1] + 65), SLUB_RED_INACTIVE);
    let (problems, checked) = run(|s, c| check_slab(&f.slab, &f.mem, s, c));
    assert_eq!(
        brief(&problems),
        [
            (SLAB, "free object's poison overwritten", Some(freed[2])),
            (SLAB, "free object's red zone overwritten", Some(freed[1])),
        ]
    );
    assert!(problems.iter().all(|p| p.cache == name));
    let info = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(checked.poison_checked, info.num_objs - info.active_objs);
    assert_eq!(
        problems[0].to_string(),
        format!(
            "slab: selfcheck: free object's poison overwritten (at {:#x})",
            freed[2]
        )
    );
    let err = f.slab.check_invariants(&f.mem).unwrap_err();
    assert_eq!(
        (err.cache.as_str(), err.what),
        ("selfcheck", "free object's poison overwritten")
    );

    // A wild free pointer, and an in-use count off by one on another slab.
    let off = f.slab.free_pointer_offset(id) as u64;
    let head = |o: u64| ((o - PAGE_OFFSET) >> PAGE_SHIFT) as u32;
    f.mem.write_u64(freed[0] + off, 0x1234_5678);
    let slab_pfn = head(freed[0]);
    let other = freed
        .iter()
        .map(|&o| head(o))
        .find(|&p| p != slab_pfn)
        .unwrap();
    f.slab.metas[other as usize].inuse += 1;
    let (problems, _) = run(|s, c| check_slab(&f.slab, &f.mem, s, c));
    let got = brief(&problems);
    assert!(got.contains(&(
        SLAB,
        "free pointer outside its slab",
        Some(slab_va(slab_pfn))
    )));
    assert!(got.contains(&(
        SLAB,
        "free list length != objects - inuse",
        Some(slab_va(other))
    )));
    assert!(got.contains(&(SLAB, "list_inuse does not match the slabs", None)));
}

#[test]
fn slab_frames_must_be_marked_in_mem_map() {
    let mut f = Fixture::new(24);
    let (_, freed) = debug_cache(&mut f, 4);
    let pfn = Pfn((freed[0] - PAGE_OFFSET) >> PAGE_SHIFT);
    f.pages.lock().set_slab(pfn, false).unwrap();
    let (problems, _) = run(|s, c| check_slab_pages(&f.slab, &f.pages.lock(), s, c));
    assert_eq!(
        brief(&problems),
        [(
            SLAB,
            "slab frame not marked SLAB in mem_map",
            Some(slab_va(pfn.0 as u32))
        )]
    );
}
