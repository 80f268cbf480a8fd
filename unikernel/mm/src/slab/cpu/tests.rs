//! Host tests for the per-CPU half: the object-boundary test the fast paths
//! rely on, where a flush puts a CPU slab, the `kfree` hint (it may only
//! ever free an object of the hinted CPU slab), a refill that fails, and a
//! property test that interleaves allocations and frees with random
//! flushes, shrinks, destroys and page-allocator failures, checking every
//! invariant and every count exactly after each step.

use std::collections::BTreeMap;
use std::vec::Vec;

use proptest::prelude::*;

use super::super::tests::{FailingPages, Fixture};
use super::*;
use crate::kmalloc::KMALLOC_SIZES;
use crate::types::PAGE_SIZE;

/// [`KmemCache::is_object_offset`]'s multiply against `%`, for every
/// kmalloc stride and a spread of odd ones, at and around every multiple
/// and at offsets past the last object.
#[test]
fn object_offset_test_is_exact() {
    let mut sizes: Vec<u32> = (8..=4096).step_by(8).collect();
    sizes.extend([3000, 3008, 4104, 8192, 12_000, 65_536, 1 << 20, 4 << 20]);
    for size in sizes {
        let geo = calculate_sizes(size as usize, 0, SlabFlags::NONE, false);
        let c = KmemCache {
            size: geo.size,
            div_magic: div_magic(geo.size),
            objs_end: geo.objects * geo.size,
            ..KmemCache::EMPTY
        };
        let slab_bytes = PAGE_SIZE << geo.order;
        let step = geo.size as u64;
        let mut off = 0u64;
        while off < slab_bytes {
            for o in [off, off + 1, off + 7, off + 8, off.wrapping_sub(1)] {
                let want = o < c.objs_end as u64 && o.is_multiple_of(step);
                assert_eq!(c.is_object_offset(o), want, "size {size} offset {o}");
            }
            off += step;
        }
        for o in [slab_bytes, u64::MAX, u64::MAX - step + 1, 1 << 40] {
            assert!(!c.is_object_offset(o), "size {size} offset {o:#x}");
        }
    }
}

fn cpu_of(f: &Fixture, id: CacheId) -> KmemCacheCpu {
    f.slab.pcpu[f.slab.smp_processor_id()].slabs[id.slot()]
}

/// No CPU slab of `id` on this CPU, and the cache's geometry copied.
fn assert_no_cpu_slab(f: &Fixture, id: CacheId) {
    let cc = cpu_of(f, id);
    assert_eq!((cc.freelist, cc.slab, cc.pfn), (0, 0, 0));
    let c = &f.slab.caches[id.slot()];
    assert_eq!((cc.div_magic, cc.offset, cc.objs_end), (c.div_magic, c.offset, 0));
}

fn alloc_n(f: &mut Fixture, id: CacheId, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            f.slab
                .kmem_cache_alloc(&f.mem, &f.pages, id, GfpFlags::GFP_KERNEL)
                .unwrap()
        })
        .collect()
}

/// `deactivate_slab()` puts a partial CPU slab on the partial list, a full
/// one in the full count, an empty one on the empty list — or back to the
/// buddy allocator once the reserve is full — and a shrink counts the
/// slabs it gave back, however they left.
#[test]
fn flush_puts_the_cpu_slab_where_its_state_says() {
    let mut f = Fixture::new(24);
    let id = f
        .slab
        .kmem_cache_create("flush512", 512, 0, SlabFlags::NONE, None)
        .unwrap();
    let per = f.slab.cache_info(&f.mem, id).unwrap().objs_per_slab as usize;
    let info = |f: &Fixture| {
        let i = f.slab.cache_info(&f.mem, id).unwrap();
        (i.slabs_full, i.slabs_partial, i.slabs_empty, i.active_objs)
    };

    // Partial CPU slab → partial list.
    let a = alloc_n(&mut f, id, 3);
    assert_eq!(info(&f), (0, 1, 0, 3));
    f.slab.flush_all(&f.mem, &f.pages, id.slot());
    assert_no_cpu_slab(&f, id);
    assert_eq!(info(&f), (0, 1, 0, 3));
    f.slab.check_invariants(&f.mem).unwrap();

    // The next allocation refreezes it; fill it: full CPU slab → full.
    let b = alloc_n(&mut f, id, per - 3);
    assert_eq!(cpu_of(&f, id).freelist, 0);
    f.slab.flush_all(&f.mem, &f.pages, id.slot());
    assert_eq!(info(&f), (1, 0, 0, per as u64));
    f.slab.check_invariants(&f.mem).unwrap();

    // Two more slabs made empty on the list fill the reserve; a third,
    // emptied while frozen and then flushed, goes back to the buddy.
    let c = alloc_n(&mut f, id, 3 * per);
    for &o in &c[..2 * per] {
        f.slab.kmem_cache_free(&f.mem, &f.pages, id, o).unwrap();
    }
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        (i.slabs_empty, i.num_slabs),
        (2, 4),
        "two empty slabs on the list, one full, one full CPU slab"
    );
    for &o in &c[2 * per..] {
        f.slab.kmem_cache_free(&f.mem, &f.pages, id, o).unwrap();
    }
    let cc = cpu_of(&f, id);
    assert_ne!(cc.slab, 0);
    assert_eq!(
        f.slab.cpu_slab_inuse(&f.mem, id.slot(), &cc),
        0,
        "the CPU slab is empty but still frozen"
    );
    assert_eq!(f.slab.cache_info(&f.mem, id).unwrap().slabs_empty, 3);
    f.slab.flush_all(&f.mem, &f.pages, id.slot());
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        (i.slabs_empty, i.slabs_full, i.num_slabs),
        (2, 1, 3),
        "past the reserve: freed"
    );
    f.slab.check_invariants(&f.mem).unwrap();

    for o in a.into_iter().chain(b) {
        f.slab.kmem_cache_free(&f.mem, &f.pages, id, o).unwrap();
    }
    // The full slab became empty on the list: past the reserve, freed.
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!((i.active_objs, i.num_slabs), (0, 2));
    // A shrink counts what it gave back, the CPU slab included.
    let _ = alloc_n(&mut f, id, 1)
        .into_iter()
        .map(|o| f.slab.kmem_cache_free(&f.mem, &f.pages, id, o).unwrap())
        .count();
    assert_ne!(cpu_of(&f, id).slab, 0);
    assert_eq!(f.slab.kmem_cache_shrink(&f.mem, &f.pages, id), Ok(2));
    assert_eq!(f.slab.cache_info(&f.mem, id).unwrap().num_slabs, 0);
    f.slab.check_invariants(&f.mem).unwrap();
    f.slab.kmem_cache_destroy(&f.mem, &f.pages, id).unwrap();
    f.assert_buddy_restored();
}

/// The `kfree` hint only picks which CPU slab to test first: an object of
/// another cache, or of another slab of the hinted cache, still goes to
/// its own slab; `kmem_cache_free` with a stale id is refused even when
/// the object lies on the CPU slab of the cache now in that slot.
#[test]
fn the_free_hint_never_misdirects_a_free() {
    let mut f = Fixture::new(24);
    let (p, m) = (&f.pages, &f.mem);
    let a = f.slab.kmalloc(m, p, 64, GfpFlags::GFP_KERNEL).unwrap();
    let b = f.slab.kmalloc(m, p, 128, GfpFlags::GFP_KERNEL).unwrap();
    assert_eq!(
        f.slab.pcpu[0].hint as usize,
        f.slab.cache_of(b).unwrap().slot()
    );
    f.slab.kfree(m, p, a).unwrap();
    assert_eq!(
        f.slab.pcpu[0].hint as usize,
        f.slab.cache_of(a).unwrap().slot(),
        "the lookup moved the hint"
    );
    f.slab.kfree(m, p, b).unwrap();
    for name in ["kmalloc-64", "kmalloc-128"] {
        let i = f
            .slab
            .cache_info(&f.mem, f.slab.find_cache(name).unwrap())
            .unwrap();
        assert_eq!(i.active_objs, 0, "{name}");
    }
    // Invalid frees inside the hinted CPU slab are still refused.
    let c = f.slab.kmalloc(m, p, 64, GfpFlags::GFP_KERNEL).unwrap();
    assert_eq!(
        f.slab.kfree(m, p, c + 8).unwrap_err().kind,
        CorruptionKind::InvalidFree(InvalidFreeKind::NotObjectStart)
    );
    f.slab.kfree(m, p, c).unwrap();
    assert_eq!(
        f.slab.kfree(m, p, c).unwrap_err().kind,
        CorruptionKind::DoubleFree,
        "a second kfree of the CPU free list's head"
    );
    f.slab.check_invariants(m).unwrap();

    // A stale id whose slot now holds a new cache.
    let old = f
        .slab
        .kmem_cache_create("gen_a", 200, 0, SlabFlags::NONE, None)
        .unwrap();
    f.slab.kmem_cache_destroy(&f.mem, p, old).unwrap();
    let new = f
        .slab
        .kmem_cache_create("gen_b", 200, 0, SlabFlags::NONE, None)
        .unwrap();
    assert_eq!(old.slot(), new.slot());
    let o = f
        .slab
        .kmem_cache_alloc(m, p, new, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_eq!(
        f.slab.kmem_cache_free(m, p, old, o).unwrap_err().kind,
        CorruptionKind::InvalidFree(InvalidFreeKind::WrongCache)
    );
    assert_eq!(f.slab.cache_info(&f.mem, new).unwrap().active_objs, 1);
    f.slab.kmem_cache_free(m, p, new, o).unwrap();
    f.slab.kmem_cache_destroy(&f.mem, p, new).unwrap();
    f.slab.check_invariants(m).unwrap();
}

/// A refill that cannot get a slab leaves the exhausted CPU slab in the
/// full count and the CPU with none: nothing counted twice.
#[test]
fn a_failed_refill_leaves_exact_counts() {
    let mut f = Fixture::new(24);
    let id = f
        .slab
        .kmem_cache_create("refill", 1000, 0, SlabFlags::NONE, None)
        .unwrap();
    let per = f.slab.cache_info(&f.mem, id).unwrap().objs_per_slab as usize;
    let objs = alloc_n(&mut f, id, per);
    let failing = FailingPages::new(&f.pages);
    failing.fail(true);
    assert!(matches!(
        f.slab
            .kmem_cache_alloc(&f.mem, &failing, id, GfpFlags::GFP_KERNEL),
        Err(SlabError::NoMemory { .. })
    ));
    assert_no_cpu_slab(&f, id);
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        (i.active_objs, i.slabs_full, i.num_slabs),
        (per as u64, 1, 1)
    );
    f.slab.check_invariants(&f.mem).unwrap();
    for o in objs {
        f.slab.kmem_cache_free(&f.mem, &failing, id, o).unwrap();
    }
    f.slab.kmem_cache_destroy(&f.mem, &f.pages, id).unwrap();
    f.assert_buddy_restored();
}

// ----------------------------------------------------------------------
// Property test
// ----------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// `kmalloc`; `twin` 0 normal, 1 `GFP_DMA`, 2 `__GFP_ACCOUNT`.
    Kmalloc {
        size: usize,
        twin: u8,
        zero: bool,
    },
    /// `kmem_cache_alloc` from user cache `which`.
    Cache {
        which: usize,
    },
    /// Allocate from user cache `which` until its CPU slab has no free
    /// object left, so that the next allocation must refill.
    Exhaust {
        which: usize,
    },
    /// Free the live object `pick` selects.
    Free {
        pick: usize,
    },
    /// Free a user-cache object, then free it again at once: the second
    /// free must be reported (the object heads a free list either way)
    /// and the object quarantined.
    FreeTwice {
        pick: usize,
    },
    /// `flush_all()` of one cache (by slot), or of every cache.
    Flush {
        slot: usize,
    },
    FlushEvery,
    /// Deactivate this CPU's slab of one cache only.
    Deactivate {
        slot: usize,
    },
    /// Run on CPU `cpu` from now on: its own CPU slabs, and frees of
    /// objects another CPU's slab holds (frozen there: remote frees).
    OnCpu {
        cpu: usize,
    },
    /// `kmem_cache_shrink` of a user cache, or `shrink_all`.
    Shrink {
        which: usize,
    },
    /// `kmem_cache_shrink_keep` of a kmalloc cache.
    ShrinkKeep {
        slot: usize,
        keep: u32,
    },
    /// Destroy and recreate a user cache that holds no live object.
    Recreate {
        which: usize,
    },
    /// The page allocator refuses (or serves again) from now on.
    Fail {
        on: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Mostly a few classes, so CPU slabs run out and refill often.
        6 => (prop_oneof![
                3 => prop::sample::select(vec![8usize, 64, 100, 1000, 4096, 8192]),
                1 => 1usize..=8192,
            ], prop::sample::select(vec![0u8, 0, 0, 1, 2]), prop::bool::weighted(0.1))
            .prop_map(|(size, twin, zero)| Op::Kmalloc { size, twin, zero }),
        4 => (0usize..3).prop_map(|which| Op::Cache { which }),
        1 => (0usize..3).prop_map(|which| Op::Exhaust { which }),
        8 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => any::<usize>().prop_map(|pick| Op::FreeTwice { pick }),
        2 => (0usize..MAX_CACHES).prop_map(|slot| Op::Flush { slot }),
        1 => Just(Op::FlushEvery),
        2 => (0usize..MAX_CACHES).prop_map(|slot| Op::Deactivate { slot }),
        1 => (0usize..4).prop_map(|which| Op::Shrink { which }),
        1 => (0usize..crate::kmalloc::NR_KMALLOC_SLOTS, 0u32..4)
            .prop_map(|(slot, keep)| Op::ShrinkKeep { slot, keep }),
        1 => (0usize..3).prop_map(|which| Op::Recreate { which }),
        2 => any::<bool>().prop_map(|on| Op::Fail { on }),
        3 => prop::sample::select(vec![0usize, 1, 3, 7]).prop_map(|cpu| Op::OnCpu { cpu }),
    ]
}

/// `(object size, flags)` of the three user caches: a plain one, one with
/// a multi-page slab, and a debug one.
const USER: [(usize, SlabFlags); 3] = [
    (200, SlabFlags::NONE),
    (3000, SlabFlags::HWCACHE_ALIGN),
    (96, SlabFlags(SlabFlags::RED_ZONE.0 | SlabFlags::POISON.0)),
];

struct Live {
    slot: usize,
    cache: Option<usize>,
    req: usize,
    tag: u8,
}

/// Every count a view shows, against the model: per cache, objects in use
/// (live plus quarantined) and quarantined; slab states that add up; slab
/// frames equal to the frames `mem_map` marks as slab.
fn check_counts(
    f: &Fixture,
    live: &BTreeMap<u64, Live>,
    quarantined: &[u64; MAX_CACHES],
) -> Result<(), TestCaseError> {
    let mut per = [0u64; MAX_CACHES];
    for l in live.values() {
        per[l.slot] += 1;
    }
    let mut frames = 0;
    for i in f.slab.caches(&f.mem) {
        let slot = i.id.slot();
        prop_assert_eq!(i.active_objs, per[slot] + quarantined[slot], "{}", i.name);
        prop_assert_eq!(i.quarantined, quarantined[slot], "{}", i.name);
        prop_assert_eq!(
            i.slabs_full + i.slabs_partial + i.slabs_empty,
            i.num_slabs,
            "{}",
            i.name
        );
        prop_assert_eq!(i.active_slabs, i.slabs_full + i.slabs_partial);
        prop_assert_eq!(i.num_objs, i.num_slabs * i.objs_per_slab as u64);
        prop_assert!(i.active_objs <= i.num_objs);
        frames += i.num_slabs * i.pages_per_slab as u64;
    }
    prop_assert_eq!(frames, f.slab.slab_pages() - f.slab.large_stats().1);
    let pa = f.pages.lock();
    let marked = (0..pa.lowmem_pfn().0)
        .filter(|&pfn| pa.page(Pfn(pfn)).is_some_and(|p| p.is_slab()))
        .count() as u64;
    prop_assert_eq!(marked, frames, "mem_map's slab frames");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn flushes_shrinks_and_failures_keep_every_count_exact(
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let mut f = Fixture::new(24);
        let failing = FailingPages::new(&f.pages);
        let mut ids: Vec<CacheId> = USER
            .iter()
            .enumerate()
            .map(|(i, &(size, flags))| {
                f.slab.kmem_cache_create(&format!("cpu{i}"), size, 0, flags, None).unwrap()
            })
            .collect();
        let mut live: BTreeMap<u64, Live> = BTreeMap::new();
        let mut quarantined = [0u64; MAX_CACHES];
        let mut tag = 0u8;
        for op in &ops {
            tag = tag.wrapping_add(1);
            let (p, m) = (&failing, &f.mem);
            match *op {
                Op::Kmalloc { size, twin, zero } => {
                    let mut gfp = [GfpFlags::GFP_KERNEL, GfpFlags::GFP_KERNEL | GfpFlags::DMA,
                        GfpFlags::GFP_KERNEL | GfpFlags::ACCOUNT][twin as usize];
                    if zero { gfp = gfp.union(GfpFlags::ZERO); }
                    match f.slab.kmalloc(m, p, size, gfp) {
                        Ok(a) => {
                            if zero { prop_assert_eq!(m.check(a, size, 0), None); }
                            let slot = f.slab.cache_of(a).unwrap().slot();
                            let class = KMALLOC_SIZES.iter().position(|&c| c >= size).unwrap();
                            // Slots: normal, then kmalloc-cg-*, then dma-kmalloc-*.
                            let kind = [0, 2, 1][twin as usize];
                            prop_assert_eq!(slot, class + kind * KMALLOC_SIZES.len());
                            m.fill(a, size, tag);
                            let fresh = live.insert(a, Live { slot, cache: None, req: size, tag }).is_none();
                            prop_assert!(fresh, "handed out twice");
                        }
                        Err(e) => prop_assert!(matches!(e, SlabError::NoMemory { .. }), "{:?}", e),
                    }
                }
                Op::Cache { which } => {
                    match f.slab.kmem_cache_alloc(m, p, ids[which], GfpFlags::GFP_KERNEL) {
                        Ok(a) => {
                            prop_assert_eq!(f.slab.cache_of(a), Some(ids[which]));
                            let req = USER[which].0;
                            m.fill(a, req, tag);
                            let l = Live { slot: ids[which].slot(), cache: Some(which), req, tag };
                            let fresh = live.insert(a, l).is_none();
                            prop_assert!(fresh, "handed out twice");
                        }
                        Err(e) => prop_assert!(matches!(e, SlabError::NoMemory { .. }), "{:?}", e),
                    }
                }
                Op::Exhaust { which } => {
                    let id = ids[which];
                    let per = f.slab.cache_info(&f.mem, id).unwrap().objs_per_slab;
                    for _ in 0..per {
                        let cc = f.slab.pcpu[f.slab.smp_processor_id()].slabs[id.slot()];
                        if cc.slab != 0 && cc.freelist == 0 { break; }
                        let Ok(a) = f.slab.kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL) else { break };
                        let req = USER[which].0;
                        m.fill(a, req, tag);
                        let l = Live { slot: id.slot(), cache: Some(which), req, tag };
                        let fresh = live.insert(a, l).is_none();
                        prop_assert!(fresh, "handed out twice");
                    }
                }
                Op::Free { pick } | Op::FreeTwice { pick } => {
                    let twice = matches!(op, Op::FreeTwice { .. });
                    let candidates: Vec<u64> = live
                        .iter()
                        .filter(|(_, l)| !twice || l.cache.is_some())
                        .map(|(&a, _)| a)
                        .collect();
                    if candidates.is_empty() { continue; }
                    let addr = candidates[pick % candidates.len()];
                    let l = live.remove(&addr).unwrap();
                    prop_assert_eq!(m.check(addr, l.req, l.tag), None, "object intact at free");
                    match l.cache {
                        Some(w) => f.slab.kmem_cache_free(m, p, ids[w], addr).unwrap(),
                        None => f.slab.kfree(m, p, addr).unwrap(),
                    }
                    if twice {
                        let w = l.cache.unwrap();
                        let e = f.slab.kmem_cache_free(m, p, ids[w], addr).unwrap_err();
                        prop_assert_eq!(e.kind, CorruptionKind::DoubleFree);
                        quarantined[l.slot] += 1;
                    }
                }
                Op::Flush { slot } => f.slab.flush_all(&f.mem, p, slot),
                Op::FlushEvery => {
                    for slot in 0..MAX_CACHES { f.slab.flush_all(&f.mem, p, slot); }
                }
                Op::Deactivate { slot } => {
                    let cpu = f.slab.smp_processor_id();
                    f.slab.deactivate_slab(&f.mem, p, cpu, slot)
                }
                Op::Shrink { which } => {
                    if which == 3 { f.slab.shrink_all(&f.mem, p); } else { f.slab.kmem_cache_shrink(&f.mem, p, ids[which]).unwrap(); }
                }
                Op::ShrinkKeep { slot, keep } => {
                    let id = f.slab.id_of(slot);
                    let before = f.slab.cache_info(&f.mem, id).unwrap();
                    f.slab.kmem_cache_shrink_keep(p, id, keep).unwrap();
                    let after = f.slab.cache_info(&f.mem, id).unwrap();
                    prop_assert!(after.slabs_empty <= before.slabs_empty.min(keep as u64 + 1));
                }
                Op::Recreate { which } => {
                    let slot = ids[which].slot();
                    if live.values().any(|l| l.cache == Some(which)) { continue; }
                    f.slab.kmem_cache_destroy(&f.mem, p, ids[which]).unwrap();
                    quarantined[slot] = 0;
                    let (size, flags) = USER[which];
                    ids[which] = f.slab.kmem_cache_create(&format!("cpu{which}"), size, 0, flags, None).unwrap();
                }
                Op::Fail { on } => failing.fail(on),
                Op::OnCpu { cpu } => f.slab.set_this_cpu(cpu),
            }
            f.slab.check_invariants(&f.mem).map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_counts(&f, &live, &quarantined)?;
        }
        failing.fail(false);
        for (addr, l) in std::mem::take(&mut live) {
            prop_assert_eq!(f.mem.check(addr, l.req, l.tag), None);
            match l.cache {
                Some(w) => f.slab.kmem_cache_free(&f.mem, &f.pages, ids[w], addr).unwrap(),
                None => f.slab.kfree(&f.mem, &f.pages, addr).unwrap(),
            }
        }
        check_counts(&f, &live, &quarantined)?;
        // Quarantined objects of the user caches leave with their caches;
        // then a shrink gives every slab back, CPU slabs included.
        for id in ids {
            f.slab.kmem_cache_destroy(&f.mem, &f.pages, id).unwrap();
        }
        f.slab.shrink_all(&f.mem, &f.pages);
        f.slab.check_invariants(&f.mem).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(f.slab.slab_pages(), 0);
        f.assert_buddy_restored();
    }
}

/// The general free's bound (`plain_end`) is the object bound of a plain
/// cache and 0 for a debug one (every debug flag), so one test routes
/// every debug free to the checks: a red-zoned kmalloc object `kfree`d
/// with its red zone clobbered is caught and quarantined. A plain free
/// that misses the hint lands on its own slab's free list, counts exact,
/// and freeing it again is reported as a double free.
#[test]
fn the_plain_bound_sends_every_debug_free_to_the_checks() {
    let mut f = Fixture::new(24);
    let plain = f
        .slab
        .kmem_cache_create("plain96", 96, 0, SlabFlags::NONE, None)
        .unwrap();
    for (name, flags) in [
        ("rz", SlabFlags::RED_ZONE),
        ("poison", SlabFlags::POISON),
        ("checks", SlabFlags::CONSISTENCY_CHECKS),
    ] {
        let id = f.slab.kmem_cache_create(name, 96, 0, flags, None).unwrap();
        let c = &f.slab.caches[id.slot()];
        assert_eq!((c.plain_end, c.objs_end > 0), (0, true), "{name}");
        // Every offset fails the plain bound, object starts included.
        assert!(!c.is_plain_object_offset(0) && !c.is_plain_object_offset(c.size as u64));
        assert!(c.is_object_offset(0) && c.is_object_offset(c.size as u64));
    }
    let c = &f.slab.caches[plain.slot()];
    assert_eq!(c.plain_end, c.objs_end);
    for off in [0, c.size as u64, (c.objects as u64 - 1) * c.size as u64] {
        assert!(c.is_plain_object_offset(off), "offset {off}");
    }
    for off in [1, c.objs_end as u64, u64::MAX] {
        assert!(!c.is_plain_object_offset(off), "offset {off}");
    }

    // A red-zoned kmalloc object, kfreed with its red zone clobbered: the
    // general free must run the debug checks, not push it.
    let mut d = Fixture::with_kmalloc_debug(24, SlabFlags::RED_ZONE);
    let (p, m) = (&d.pages, &d.mem);
    let obj = d.slab.kmalloc(m, p, 64, GfpFlags::GFP_KERNEL).unwrap();
    m.write_u8(obj + 64, 0x12);
    let err = d.slab.kfree(m, p, obj).unwrap_err();
    assert_eq!((err.kind, err.addr), (CorruptionKind::RedZone, obj));
    let i = kmalloc_cache_info(&d, "kmalloc-64");
    assert_eq!(
        (i.corruption.red_zone, i.quarantined, i.active_objs),
        (1, 1, 1)
    );
    d.slab.check_invariants(m).unwrap();

    // A plain object freed while the hint names another cache: the
    // general free pushes it onto its own (listed) slab.
    let per = f.slab.cache_info(&f.mem, plain).unwrap().objs_per_slab as usize;
    let objs = alloc_n(&mut f, plain, per + 1); // one full slab listed
    let other = f
        .slab
        .kmalloc(&f.mem, &f.pages, 8, GfpFlags::GFP_KERNEL)
        .unwrap(); // the hint moves to kmalloc-8
    f.slab.kfree(&f.mem, &f.pages, objs[0]).unwrap();
    // Partial: that slab, and the CPU slab (one object of `per` taken).
    let i = f.slab.cache_info(&f.mem, plain).unwrap();
    assert_eq!(
        (i.slabs_full, i.slabs_partial, i.active_objs),
        (0, 2, per as u64)
    );
    // Freeing it again is a double free of the slab's free-list head.
    let err = f.slab.kfree(&f.mem, &f.pages, objs[0]).unwrap_err();
    assert_eq!(err.kind, CorruptionKind::DoubleFree);
    f.slab.kfree(&f.mem, &f.pages, other).unwrap();
    f.slab.check_invariants(&f.mem).unwrap();
}

fn kmalloc_cache_info(f: &Fixture, name: &str) -> CacheInfo {
    let id = f.slab.find_cache(name).unwrap();
    f.slab.cache_info(&f.mem, id).unwrap()
}

/// The partial list, head to tail, checked against its tail-to-head walk
/// and its count.
fn partial_list(f: &Fixture, id: CacheId) -> Vec<u32> {
    let node = &f.slab.caches[id.slot()].node;
    let mut fwd = Vec::new();
    let mut p = node.partial.head;
    while p != NIL {
        fwd.push(p);
        p = f.slab.metas[p as usize].next;
    }
    let mut back = Vec::new();
    let mut p = node.partial.tail;
    while p != NIL {
        back.push(p);
        p = f.slab.metas[p as usize].prev;
    }
    back.reverse();
    assert_eq!(fwd, back, "next and prev links disagree");
    assert_eq!(fwd.len(), node.partial.nr as usize);
    fwd
}

/// `__slab_free`'s branch-free list update (the stores of a free that
/// moves no slab go to a scratch entry): a free into a full slab appends
/// it at the tail of the partial list — an empty list included — and a
/// free into a partial slab, at the head, in the middle or at the tail,
/// leaves the list exactly as it was.
#[test]
fn a_free_moves_only_a_full_slab_to_the_partial_tail() {
    let mut f = Fixture::new(24);
    let id = f
        .slab
        .kmem_cache_create("tail512", 512, 0, SlabFlags::NONE, None)
        .unwrap();
    let per = f.slab.cache_info(&f.mem, id).unwrap().objs_per_slab as usize;
    assert!(per >= 4);
    // Slabs A, B, C full and listed; D frozen with one object taken.
    let objs = alloc_n(&mut f, id, 3 * per + 1);
    let mask = u64::from(f.slab.caches[id.slot()].pfn_mask);
    let slab_of = |addr: u64| (((addr - PAGE_OFFSET) >> PAGE_SHIFT) & !mask) as u32;
    let (a, b, c) = (objs[0], objs[per], objs[2 * per]);
    let (sa, sb, sc) = (slab_of(a), slab_of(b), slab_of(c));
    assert!(sa != sb && sb != sc && sa != sc);
    // Keep the hint on another cache so every free takes the general path.
    let other = f
        .slab
        .kmalloc(&f.mem, &f.pages, 8, GfpFlags::GFP_KERNEL)
        .unwrap();
    let free = |f: &mut Fixture, addr: u64| f.slab.kfree(&f.mem, &f.pages, addr).unwrap();
    let full = |f: &Fixture| f.slab.caches[id.slot()].node.full.nr;
    assert_eq!((partial_list(&f, id), full(&f)), (vec![], 3));

    free(&mut f, b); // full → partial, into an empty list
    assert_eq!((partial_list(&f, id), full(&f)), (vec![sb], 2));
    free(&mut f, a); // full → partial, appended
    assert_eq!((partial_list(&f, id), full(&f)), (vec![sb, sa], 1));
    free(&mut f, objs[per + 1]); // partial head: no move
    free(&mut f, objs[1]); // partial tail: no move
    assert_eq!((partial_list(&f, id), full(&f)), (vec![sb, sa], 1));
    free(&mut f, c); // full → partial behind the tail
    assert_eq!((partial_list(&f, id), full(&f)), (vec![sb, sa, sc], 0));
    free(&mut f, objs[2]); // the middle: no move
    assert_eq!(partial_list(&f, id), vec![sb, sa, sc]);
    let m = f.slab.metas[sa as usize];
    assert_eq!((m.prev, m.next, m.inuse as usize), (sb, sc, per - 3));
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(i.active_objs as usize, 3 * per + 1 - 6);
    f.slab.check_invariants(&f.mem).unwrap();
    free(&mut f, other);
}

/// `__slab_free`'s one test for its rare cases: the last object of a
/// listed slab coming back moves the slab to the empty list, and a free
/// into that empty slab, or of the object heading a slab's free list, is
/// a double free: reported, the object quarantined (in use for good).
#[test]
fn the_last_object_and_double_frees_of_a_listed_slab() {
    let mut f = Fixture::new(24);
    let id = f
        .slab
        .kmem_cache_create("last256", 256, 0, SlabFlags::NONE, None)
        .unwrap();
    let per = f.slab.cache_info(&f.mem, id).unwrap().objs_per_slab as usize;
    let objs = alloc_n(&mut f, id, per + 1); // slab A full, B frozen
    let other = f
        .slab
        .kmalloc(&f.mem, &f.pages, 8, GfpFlags::GFP_KERNEL)
        .unwrap(); // the hint elsewhere: every free below is a general one
    let counts = |f: &Fixture| {
        let i = f.slab.cache_info(&f.mem, id).unwrap();
        (i.slabs_full, i.slabs_partial, i.slabs_empty, i.active_objs)
    };
    for (k, &o) in objs[..per].iter().enumerate().skip(1) {
        f.slab.kfree(&f.mem, &f.pages, o).unwrap();
        assert_eq!(counts(&f), (0, 2, 0, (per + 1 - k) as u64));
    }
    // objs[1] heads A's free list now (the last one freed is objs[per-1]).
    let head = objs[per - 1];
    let err = f.slab.kfree(&f.mem, &f.pages, head).unwrap_err();
    assert_eq!(err.kind, CorruptionKind::DoubleFree);
    // Detected, and the object quarantined (in use, never handed out).
    assert_eq!(counts(&f), (0, 2, 0, 3));
    f.slab.kfree(&f.mem, &f.pages, objs[0]).unwrap();
    // Not empty: the quarantined object stays in use.
    assert_eq!(counts(&f), (0, 2, 0, 2));
    f.slab.check_invariants(&f.mem).unwrap();

    // A big cache's slab, emptied by the general free; freeing into the
    // empty slab again is a double free.
    let big = f
        .slab
        .kmem_cache_create("last1", 3 * PAGE_SIZE as usize, 0, SlabFlags::NONE, None)
        .unwrap();
    let per_big = f.slab.cache_info(&f.mem, big).unwrap().objs_per_slab as usize;
    let bo = alloc_n(&mut f, big, per_big + 1);
    let o = bo[0];
    f.slab.kfree(&f.mem, &f.pages, other).unwrap(); // hint back on kmalloc-8
    for &x in &bo[1..per_big] {
        f.slab.kfree(&f.mem, &f.pages, x).unwrap();
    }
    f.slab.kfree(&f.mem, &f.pages, o).unwrap();
    let i = f.slab.cache_info(&f.mem, big).unwrap();
    assert_eq!((i.slabs_empty, i.active_objs), (1, 1));
    let err = f.slab.kfree(&f.mem, &f.pages, o).unwrap_err();
    assert_eq!(err.kind, CorruptionKind::DoubleFree);
    // Quarantined: the slab holds one object in use again.
    let i = f.slab.cache_info(&f.mem, big).unwrap();
    let (full, partial) = if per_big == 1 { (1, 0) } else { (0, 1) };
    assert_eq!(
        (
            i.slabs_empty,
            i.slabs_full,
            i.slabs_partial - 1,
            i.active_objs
        ),
        (0, full, partial, 2)
    );
    assert_eq!(i.quarantined, 1);
    f.slab.check_invariants(&f.mem).unwrap();
}

/// The exclusive paths' CPU number is a [`CpuIdx`] (so `pcpu[cpu]` needs
/// no mask): `set_this_cpu` maps each CPU to its own slot and anything
/// out of range to CPU 0's, and an allocation under each CPU fills that
/// CPU's `kmem_cache_cpu` and no other.
#[test]
fn this_cpu_is_a_cpu_index() {
    let mut f = Fixture::new(16);
    for (i, cpu) in CpuIdx::ALL.iter().enumerate() {
        assert_eq!(*cpu as usize, i);
        f.slab.set_this_cpu(i);
        assert_eq!(f.slab.smp_processor_id(), i);
    }
    for cpu in [NR_CPUS, NR_CPUS + 1, 255, usize::MAX] {
        f.slab.set_this_cpu(cpu);
        assert_eq!(f.slab.smp_processor_id(), 0, "cpu {cpu}");
    }
    let slot = crate::kmalloc::SIZE_TO_SLOT[(64 - 1) >> 3] as usize;
    for cpu in [3, 0, 7] {
        f.slab.set_this_cpu(cpu);
        let obj = f
            .slab
            .kmalloc(&f.mem, &f.pages, 64, GfpFlags::GFP_KERNEL)
            .unwrap();
        let owners: Vec<usize> = (0..NR_CPUS)
            .filter(|&k| {
                let cc = f.slab.pcpu[k].slabs[slot];
                obj.wrapping_sub(cc.slab) < PAGE_SIZE
            })
            .collect();
        assert_eq!(owners, [cpu], "object {obj:#x}");
    }
}

/// Every CPU's `kmem_cache_cpu` carries its cache's fast-path geometry
/// from creation on, the bound (`objs_end`) only while the CPU has a slab
/// frozen; zeros once the cache is destroyed (so the free fast path's
/// bound refuses any address there, even on a stale hint), and the next
/// cache in the slot's own; objects of that cache then take the fast
/// paths on every CPU.
#[test]
fn the_geometry_copy_follows_its_cache() {
    let mut f = Fixture::new(16);
    let copies = |f: &Fixture, slot: usize| -> Vec<(u64, u32, u32)> {
        (0..NR_CPUS)
            .map(|k| {
                let cc = f.slab.pcpu[k].slabs[slot];
                (cc.div_magic, cc.offset, cc.objs_end)
            })
            .collect()
    };
    let a = f
        .slab
        .kmem_cache_create("geo-a", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    // 100 bytes → a 104-byte stride, 39 objects in a page, the free
    // pointer mid-object (SLUB's `s->offset`).
    let want_a = (div_magic(104), 48, 0);
    assert_eq!(f.slab.caches[a.slot()].size, 104);
    assert_eq!(copies(&f, a.slot()), vec![want_a; NR_CPUS]);
    for cpu in [0, 5] {
        f.slab.set_this_cpu(cpu);
        let o = f
            .slab
            .kmem_cache_alloc(&f.mem, &f.pages, a, GfpFlags::GFP_KERNEL)
            .unwrap();
        assert_eq!(f.slab.cpu_slab_inuse(&f.mem, a.slot(), &cpu_of(&f, a)), 1);
        f.slab.kmem_cache_free(&f.mem, &f.pages, a, o).unwrap();
        assert_eq!(
            f.slab.cpu_slab_inuse(&f.mem, a.slot(), &cpu_of(&f, a)),
            0,
            "freed by the fast path"
        );
    }
    let frozen = (div_magic(104), 48, 39 * 104);
    let mut want = vec![want_a; NR_CPUS];
    (want[0], want[5]) = (frozen, frozen);
    assert_eq!(copies(&f, a.slot()), want);
    f.slab.set_this_cpu(0);
    f.slab.kmem_cache_destroy(&f.mem, &f.pages, a).unwrap();
    assert_eq!(copies(&f, a.slot()), vec![(0, 0, 0); NR_CPUS]);
    assert!(!cpu_of(&f, a).is_object_offset(0));
    f.slab.check_invariants(&f.mem).unwrap();

    let b = f
        .slab
        .kmem_cache_create("geo-b", 512, 0, SlabFlags::NONE, None)
        .unwrap();
    assert_eq!(b.slot(), a.slot(), "the slot is reused");
    let geo = calculate_sizes(512, 0, SlabFlags::NONE, false);
    let want_b = (div_magic(geo.size), geo.offset, 0);
    assert_eq!(copies(&f, b.slot()), vec![want_b; NR_CPUS]);
    let o = f
        .slab
        .kmem_cache_alloc(&f.mem, &f.pages, b, GfpFlags::GFP_KERNEL)
        .unwrap();
    f.slab.kmem_cache_free(&f.mem, &f.pages, b, o).unwrap();
    assert_eq!(f.slab.cpu_slab_inuse(&f.mem, b.slot(), &cpu_of(&f, b)), 0);
    f.slab.check_invariants(&f.mem).unwrap();
}

/// [`CacheSlot::new`] is the slot itself, masked to the table.
#[test]
fn a_cache_slot_is_its_index() {
    for slot in 0..4 * MAX_CACHES {
        assert_eq!(CacheSlot::new(slot) as usize, slot % MAX_CACHES);
    }
    assert_eq!(CacheSlot::new(usize::MAX) as usize, MAX_CACHES - 1);
}

/// The free list of a frozen slab, walked as the views walk it.
fn list_len(f: &Fixture, base: u64, first: u32) -> usize {
    let mut n = 0;
    let mut p = if first == NIL { 0 } else { base + first as u64 };
    let c = &f.slab.caches[f.slab.cache_of(base).unwrap().slot()];
    while p != 0 {
        n += 1;
        assert!(n <= c.objects as usize, "a cycle");
        p = f.mem.read_u64(p + c.offset as u64);
    }
    n
}

/// The fast paths keep no count: frees onto a frozen slab's CPU list —
/// this CPU's, and another CPU's remote ones — touch neither the slab's
/// overlay entry nor a cache counter, yet every view counts them at once,
/// and a flush hands the slab its objects back with the count the walk
/// makes (cf. `deactivate_slab()`).
#[test]
fn fast_frees_are_counted_by_the_walk_and_come_back_with_a_flush() {
    let mut f = Fixture::new(24);
    let id = f
        .slab
        .kmem_cache_create("walk512", 512, 0, SlabFlags::NONE, None)
        .unwrap();
    let per = f.slab.cache_info(&f.mem, id).unwrap().objs_per_slab as usize;
    assert!(per >= 8);
    let info = |f: &Fixture| {
        let i = f.slab.cache_info(&f.mem, id).unwrap();
        (i.slabs_full, i.slabs_partial, i.slabs_empty, i.active_objs)
    };
    f.slab.set_this_cpu(0);
    let a = alloc_n(&mut f, id, per - 1);
    let s0 = cpu_of(&f, id);
    for &o in &a[..3] {
        f.slab.kmem_cache_free(&f.mem, &f.pages, id, o).unwrap();
    }
    let m0 = f.slab.metas[s0.slab_pfn() as usize];
    assert_eq!(
        (m0.prev, m0.freelist, m0.inuse as usize),
        (FROZEN, NIL, per),
        "the fast frees left the frozen slab's entry alone"
    );
    assert_eq!(f.slab.caches[id.slot()].node.list_inuse, 0);
    assert_eq!(info(&f), (0, 1, 0, per as u64 - 4));
    assert_eq!(
        f.slab.cpu_slab_inuse(&f.mem, id.slot(), &cpu_of(&f, id)),
        per as u32 - 4
    );

    // CPU 5 freezes a slab of its own (the partial list is empty: a new
    // one), and frees one of CPU 0's objects: onto CPU 0's list.
    f.slab.set_this_cpu(5);
    let b = alloc_n(&mut f, id, 2);
    let s5 = cpu_of(&f, id);
    assert_ne!(s5.slab, s0.slab);
    f.slab.kfree(&f.mem, &f.pages, a[3]).unwrap();
    assert_eq!(
        f.slab.pcpu[0].slabs[id.slot()].freelist,
        a[3],
        "a remote free"
    );
    assert_eq!(info(&f), (0, 2, 0, per as u64 - 5 + 2));
    f.slab.check_invariants(&f.mem).unwrap();
    // A LIFO pair on CPU 5 moves nothing.
    let x = alloc_n(&mut f, id, 1)[0];
    assert_eq!(info(&f), (0, 2, 0, per as u64 - 5 + 3));
    f.slab.kfree(&f.mem, &f.pages, x).unwrap();
    assert_eq!(info(&f), (0, 2, 0, per as u64 - 5 + 2));

    f.slab.flush_all(&f.mem, &f.pages, id.slot());
    for (cc, inuse) in [(s0, per - 5), (s5, 2)] {
        let m = f.slab.metas[cc.slab_pfn() as usize];
        assert_eq!(m.inuse as usize, inuse);
        assert_ne!(m.prev, FROZEN);
        assert_eq!(list_len(&f, cc.slab, m.freelist), per - inuse);
    }
    assert_eq!(f.slab.caches[id.slot()].node.list_inuse, per as u64 - 3);
    assert_eq!(info(&f), (0, 2, 0, per as u64 - 3));
    f.slab.check_invariants(&f.mem).unwrap();

    for o in a[4..].iter().chain(&b) {
        f.slab.kfree(&f.mem, &f.pages, *o).unwrap();
    }
    assert_eq!(info(&f).3, 0);
    f.slab.kmem_cache_destroy(&f.mem, &f.pages, id).unwrap();
    f.slab.shrink_all(&f.mem, &f.pages);
    f.slab.check_invariants(&f.mem).unwrap();
    f.assert_buddy_restored();
}

/// The walks are bounded: a CPU free list made into a cycle, or with a
/// free pointer off the slab's objects, neither hangs a view nor escapes
/// the recount, and the flush cuts it where it broke and reports it (cf.
/// `on_freelist()`: "Freelist cleared", "Freechain corrupt").
#[test]
fn a_corrupt_cpu_free_list_is_caught_by_the_bounded_walk() {
    let mut f = Fixture::new(24);
    let id = f
        .slab
        .kmem_cache_create("cycle512", 512, 0, SlabFlags::NONE, None)
        .unwrap();
    let per = f.slab.cache_info(&f.mem, id).unwrap().objs_per_slab as u64;
    let off = u64::from(f.slab.caches[id.slot()].offset);
    let active = |f: &Fixture| f.slab.cache_info(&f.mem, id).unwrap().active_objs;

    // A cycle: b → c → b.
    f.slab.set_this_cpu(0);
    let a = alloc_n(&mut f, id, 3);
    for &o in a[1..].iter().rev() {
        f.slab.kmem_cache_free(&f.mem, &f.pages, id, o).unwrap();
    }
    assert_eq!(active(&f), 1);
    let s0 = cpu_of(&f, id);
    assert_eq!(s0.freelist, a[1]);
    f.mem.write_u64(a[2] + off, a[1]);
    let walk = s0.walk_freelist(&f.mem, per as u32);
    assert_eq!(
        (walk.free, walk.bad),
        (0, Some(0)),
        "nothing of it is trusted"
    );
    assert_eq!(active(&f), per, "the view ends, and counts the list lost");
    let e = f.slab.check_invariants(&f.mem).unwrap_err();
    assert_eq!(e.what, "free list longer than the slab (cycle)");
    f.slab.flush_all(&f.mem, &f.pages, id.slot());
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(i.corruption.free_pointer, 1);
    assert_eq!((i.slabs_full, i.active_objs), (1, per));
    let m = f.slab.metas[s0.slab_pfn() as usize];
    assert_eq!((m.freelist, m.inuse as u64), (NIL, per), "Freelist cleared");
    f.slab.check_invariants(&f.mem).unwrap();

    // A free pointer off an object boundary, two objects down the list:
    // those two stay free, the rest is cut off.
    let c = alloc_n(&mut f, id, 3);
    let s1 = cpu_of(&f, id);
    assert_ne!(s1.slab, s0.slab);
    f.slab.kmem_cache_free(&f.mem, &f.pages, id, c[2]).unwrap();
    let second = f.mem.read_u64(c[2] + off);
    assert_eq!(
        second,
        s1.slab + 3 * 512,
        "the slab's first never-used object"
    );
    f.mem.write_u64(second + off, s1.slab + 8);
    let walk = cpu_of(&f, id).walk_freelist(&f.mem, per as u32);
    assert_eq!((walk.free, walk.bad), (2, Some(second)));
    assert_eq!(active(&f), per + per - 2);
    let e = f.slab.check_invariants(&f.mem).unwrap_err();
    assert_eq!(e.what, "free pointer off an object boundary");
    f.slab.flush_all(&f.mem, &f.pages, id.slot());
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(i.corruption.free_pointer, 2);
    assert_eq!(
        (i.slabs_full, i.slabs_partial, i.active_objs),
        (1, 1, 2 * per - 2)
    );
    assert_eq!(
        f.mem.read_u64(second + off),
        0,
        "Freechain corrupt: cut after it"
    );
    f.slab.check_invariants(&f.mem).unwrap();
    // The two left come back out, then a new slab.
    let d = alloc_n(&mut f, id, 3);
    assert_eq!((d[0], d[1]), (c[2], second));
    assert!(d[2] < s1.slab || d[2] >= s1.slab + 4096);
    f.slab.check_invariants(&f.mem).unwrap();
}
