//! Host tests for the slab layer: Linux's slab geometry, list transitions,
//! zones and page descriptors, the empty-slab reserve, constructors, the
//! `lib/slub_kunit.c` corruption cases (each expecting its exact detection),
//! `/proc/slabinfo` golden text, and a property test over random
//! kmalloc/kfree and odd user caches that ends with the buddy allocator
//! exactly as it started.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::vec::Vec;

use proptest::prelude::*;

use super::geometry::calculate_order;
use super::*;
use crate::kmalloc::{KMALLOC_SIZES, ZERO_SIZE_PTR};
use crate::memblock::Memblock;
use crate::page::OwnerTag;
use crate::page::Page;
use crate::page_alloc::{AllocError, PageAlloc};
use crate::types::{NR_ORDERS, PhysAddr};
use crate::zone::{NR_ZONES, ZoneLayout, ZoneType};

const MIB: u64 = 1 << 20;

/// What an overlay entry holds before the slab layer writes it, in the
/// fixtures: a plausible slab of cache slot 0, to be misread if anything
/// reads past the written part.
pub(crate) const UNWRITTEN_META: SlabMeta = SlabMeta {
    cache: 1,
    inuse: 1,
    freelist: 0,
    prev: 0,
    next: 0,
};

/// A buddy allocator over `ram_mib` MiB of lowmem (DMA below 16 MiB, DMA32
/// above), an arena standing in for the direct map, and a slab allocator.
pub(crate) struct Fixture {
    pub pages: spin::Mutex<PageAlloc<'static>>,
    pub mem: ArenaMemory,
    pub slab: SlabAllocator<'static>,
    boot: [[u64; NR_ORDERS]; NR_ZONES],
}

impl Fixture {
    pub fn new(ram_mib: u64) -> Self {
        Self::with_kmalloc_debug(ram_mib, SlabFlags::NONE)
    }

    pub fn with_kmalloc_debug(ram_mib: u64, debug: SlabFlags) -> Self {
        let ram = ram_mib * MIB;
        let nr = ram >> PAGE_SHIFT;
        let mut mb = Memblock::new();
        mb.add(PhysAddr(0), ram).unwrap();
        mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
        let mem_map = Box::leak(vec![Page::new_reserved(); nr as usize].into_boxed_slice());
        let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(ram, ram)).unwrap();
        pa.memblock_free_all(&mb).unwrap();
        pa.setup_watermarks();
        let boot = core::array::from_fn(|z| pa.free_area_counts(ZoneType::ALL[z]));
        // The overlay as the kernel hands it over: never written. Every
        // entry claims a slab of the first cache, so a read of one the
        // slab layer has not written yet would show in every test.
        let metas = Box::leak(vec![UNWRITTEN_META; pa.lowmem_pfn().index()].into_boxed_slice());
        Fixture {
            pages: spin::Mutex::new(pa),
            mem: ArenaMemory::new(Pfn(0), nr),
            slab: SlabAllocator::new(metas, debug),
            boot,
        }
    }

    /// The buddy lists with the per-CPU lists drained into them.
    pub fn buddy(&self) -> [[u64; NR_ORDERS]; NR_ZONES] {
        let mut pa = self.pages.lock();
        pa.drain_all_pages();
        core::array::from_fn(|z| pa.free_area_counts(ZoneType::ALL[z]))
    }

    pub fn assert_buddy_restored(&self) {
        assert_eq!(
            self.buddy(),
            self.boot,
            "buddy free_area differs from its starting state"
        );
        self.pages.lock().check_invariants().unwrap();
    }

    /// Take every order-0 page the allocator will give, in every zone.
    pub fn exhaust_buddy(&self) -> Vec<Pfn> {
        let mut pa = self.pages.lock();
        let mut got = Vec::new();
        for gfp in [
            GfpFlags::GFP_KERNEL,
            GfpFlags::GFP_ATOMIC,
            GfpFlags::GFP_ATOMIC | GfpFlags::DMA,
        ] {
            while let Ok(p) = pa.alloc_pages(gfp, Order::ZERO, OwnerTag::API) {
                got.push(p);
            }
        }
        got
    }

    pub fn release(&self, hog: Vec<Pfn>) {
        let mut pa = self.pages.lock();
        for p in hog {
            pa.free_pages(p, Order::ZERO).unwrap();
        }
    }

    fn page(&self, addr: u64) -> Page {
        *self
            .pages
            .lock()
            .page(Pfn((addr - PAGE_OFFSET) >> PAGE_SHIFT))
            .unwrap()
    }
}

/// Fault injection: a page source that can be told to fail.
pub(crate) struct FailingPages<'p> {
    inner: &'p spin::Mutex<PageAlloc<'static>>,
    failing: Cell<bool>,
}

impl<'p> FailingPages<'p> {
    pub fn new(inner: &'p spin::Mutex<PageAlloc<'static>>) -> Self {
        FailingPages {
            inner,
            failing: Cell::new(false),
        }
    }

    pub fn fail(&self, on: bool) {
        self.failing.set(on);
    }
}

impl PageSource for FailingPages<'_> {
    fn alloc_slab_pages(
        &self,
        gfp: GfpFlags,
        order: Order,
        kind: SlabPageKind,
    ) -> Result<Pfn, AllocError> {
        if self.failing.get() {
            return Err(AllocError::NoMemory { order, gfp });
        }
        self.inner.alloc_slab_pages(gfp, order, kind)
    }

    fn free_slab_pages(&self, pfn: Pfn, order: Order, kind: SlabPageKind) {
        self.inner.free_slab_pages(pfn, order, kind)
    }
}

fn kmalloc_info(f: &Fixture, name: &str) -> CacheInfo {
    f.slab
        .cache_info(&f.mem, f.slab.find_cache(name).unwrap())
        .unwrap()
}

// ----------------------------------------------------------------------
// Geometry
// ----------------------------------------------------------------------

#[test]
fn kmalloc_geometry_matches_linux_slub_on_one_cpu() {
    let f = Fixture::new(24);
    // (name, objperslab, pagesperslab) as /proc/slabinfo shows them on a
    // 1-CPU x86_64 SLUB kernel.
    let expect = [
        ("kmalloc-8", 512, 1),
        ("kmalloc-16", 256, 1),
        ("kmalloc-32", 128, 1),
        ("kmalloc-64", 64, 1),
        ("kmalloc-96", 42, 1),
        ("kmalloc-128", 32, 1),
        ("kmalloc-192", 21, 1),
        ("kmalloc-256", 16, 1),
        ("kmalloc-512", 8, 1),
        ("kmalloc-1k", 8, 2),
        ("kmalloc-2k", 8, 4),
        ("kmalloc-4k", 8, 8),
        ("kmalloc-8k", 4, 8),
    ];
    for (name, objs, pages) in expect {
        for n in [name.to_string(), format!("dma-{name}")] {
            let i = kmalloc_info(&f, &n);
            assert_eq!((i.objs_per_slab, i.pages_per_slab), (objs, pages), "{n}");
            assert_eq!(i.kind, CacheKind::Kmalloc);
        }
    }
    assert_eq!(kmalloc_info(&f, "kmalloc-96").align, 32);
    assert_eq!(kmalloc_info(&f, "kmalloc-192").align, 64);
}

#[test]
fn calculate_order_bounds_waste() {
    for size in (8..=8192u32).step_by(8) {
        let order = calculate_order(size);
        let slab = (PAGE_SIZE as u32) << order;
        let objs = slab / size;
        assert!(objs >= 1, "size {size}");
        if order <= SLUB_MAX_ORDER && objs >= SLUB_MIN_OBJECTS && order > 0 {
            // A higher order was only chosen because a lower one wasted more
            // than the accepted fraction or held too few objects.
            let lower = (PAGE_SIZE as u32) << (order - 1);
            assert!(
                lower % size > lower / 16 || lower / size < SLUB_MIN_OBJECTS,
                "size {size}"
            );
        }
        if size <= 4096 {
            assert!(
                slab % size <= slab / 4,
                "size {size}: waste {} of {slab}",
                slab % size
            );
        }
    }
    // 200 bytes aligned to 64: stride 256, 16 per page.
    let g = calculate_sizes(200, 64, SlabFlags::NONE, false);
    assert_eq!((g.size, g.order, g.objects, g.offset), (256, 0, 16, 96));
    // Debug layout: 64-byte object, 8 bytes of red zone, free pointer and
    // tracked size outside it.
    let g = calculate_sizes(64, 0, SlabFlags::RED_ZONE | SlabFlags::POISON, false);
    assert_eq!(
        (g.inuse_off, g.offset, g.orig_off, g.size),
        (72, 72, 80, 88)
    );
    // HWCACHE_ALIGN: a line for big objects, half a line for 20-byte ones.
    assert_eq!(
        calculate_sizes(100, 0, SlabFlags::HWCACHE_ALIGN, false).size,
        128
    );
    assert_eq!(
        calculate_sizes(20, 0, SlabFlags::HWCACHE_ALIGN, false).size,
        32
    );
}

// ----------------------------------------------------------------------
// Caches, lists, zones, descriptors
// ----------------------------------------------------------------------

#[test]
fn cache_lifecycle_moves_slabs_between_lists() {
    let mut f = Fixture::new(24);
    let (p, m) = (&f.pages, &f.mem);
    let id = f
        .slab
        .kmem_cache_create_kind("test_200", 200, 64, SlabFlags::NONE, None, CacheKind::Api)
        .unwrap();
    assert_eq!(
        f.slab
            .kmem_cache_create("test_200", 8, 0, SlabFlags::NONE, None),
        Err(SlabError::Exists)
    );
    let info = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        (info.size, info.objs_per_slab, info.num_slabs, info.kind),
        (256, 16, 0, CacheKind::Api)
    );

    let a = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_eq!(a % 64, 0);
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        (i.active_objs, i.num_objs, i.slabs_partial, i.slabs_full),
        (1, 16, 1, 0)
    );
    assert_eq!(f.slab.cache_of(a), Some(id));
    let page = f.page(a);
    assert!(
        page.is_slab() && page.owner == OwnerTag::SLAB,
        "mem_map marks the slab"
    );

    let mut objs = vec![a];
    for _ in 0..15 {
        objs.push(
            f.slab
                .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
                .unwrap(),
        );
    }
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        (i.active_objs, i.slabs_full, i.slabs_partial, i.num_slabs),
        (16, 1, 0, 1)
    );
    objs.push(
        f.slab
            .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
            .unwrap(),
    );
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        (i.active_objs, i.slabs_full, i.slabs_partial, i.num_slabs),
        (17, 1, 1, 2)
    );
    f.slab.check_invariants(m).unwrap();

    assert_eq!(
        f.slab.kmem_cache_destroy(&f.mem, p, id),
        Err(SlabError::Busy { active_objs: 17 })
    );
    // Free an object of the full (inactive) slab: full → partial.
    f.slab.kmem_cache_free(m, p, id, objs[3]).unwrap();
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!((i.slabs_full, i.slabs_partial), (0, 2));
    for &o in objs.iter().filter(|&&o| o != objs[3]) {
        f.slab.kmem_cache_free(m, p, id, o).unwrap();
    }
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        (i.active_objs, i.slabs_empty, i.num_slabs),
        (0, 2, 2),
        "two empty slabs kept"
    );
    f.slab.check_invariants(m).unwrap();
    assert_eq!(f.slab.kmem_cache_shrink(&f.mem, p, id), Ok(2));
    assert!(
        !f.page(a).is_slab(),
        "slab pages went back to the buddy allocator"
    );
    f.slab.kmem_cache_destroy(&f.mem, p, id).unwrap();
    assert_eq!(f.slab.cache_info(&f.mem, id), None, "stale handle refused");
    assert_eq!(
        f.slab.kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL),
        Err(SlabError::NoCache)
    );
    assert_eq!(
        f.slab.kmem_cache_shrink(&f.mem, p, id),
        Err(SlabError::NoCache)
    );
    let kid = f.slab.find_cache("kmalloc-64").unwrap();
    assert_eq!(
        f.slab.kmem_cache_destroy(&f.mem, p, kid),
        Err(SlabError::Permanent)
    );
    f.assert_buddy_restored();
}

#[test]
fn empty_slabs_beyond_the_reserve_return_to_the_buddy_allocator() {
    let mut f = Fixture::new(24);
    let (p, m) = (&f.pages, &f.mem);
    let id = f
        .slab
        .kmem_cache_create("k512", 512, 0, SlabFlags::NONE, None)
        .unwrap();
    let objs: Vec<u64> = (0..8 * 10)
        .map(|_| {
            f.slab
                .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
                .unwrap()
        })
        .collect();
    assert_eq!(f.slab.cache_info(&f.mem, id).unwrap().num_slabs, 10);
    for o in objs {
        f.slab.kmem_cache_free(m, p, id, o).unwrap();
    }
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    // The active slab (now empty) plus SLAB_EMPTY_RESERVE listed ones.
    assert_eq!(i.num_slabs, 1 + SLAB_EMPTY_RESERVE as u64);
    assert_eq!(i.slabs_empty, i.num_slabs);
    assert_eq!(f.slab.shrink_all(&f.mem, p), 3);
    f.slab.check_invariants(m).unwrap();
    f.assert_buddy_restored();
}

#[test]
fn dma_caches_and_gfp_dma_take_zone_dma_pages() {
    let mut f = Fixture::new(24);
    let (p, m) = (&f.pages, &f.mem);
    let dma_limit = PAGE_OFFSET + (16 << 20);
    let id = f
        .slab
        .kmem_cache_create("dma_objs", 100, 0, SlabFlags::CACHE_DMA, None)
        .unwrap();
    let a = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert!(a < dma_limit);
    let b = f
        .slab
        .kmalloc(m, p, 100, GfpFlags::GFP_KERNEL | GfpFlags::DMA)
        .unwrap();
    assert!(b < dma_limit);
    assert_eq!(f.slab.cache_of(b), f.slab.find_cache("dma-kmalloc-128"));
    let c = f.slab.kmalloc(m, p, 100, GfpFlags::GFP_KERNEL).unwrap();
    assert!(c >= dma_limit, "GFP_KERNEL prefers DMA32 here");
    assert_eq!(f.slab.cache_of(c), f.slab.find_cache("kmalloc-128"));
    // HighMem requests still get lowmem objects.
    let d = f.slab.kmalloc(m, p, 100, GfpFlags::GFP_HIGHUSER).unwrap();
    assert_eq!(f.slab.cache_of(d), f.slab.find_cache("kmalloc-128"));
    for x in [b, c, d] {
        f.slab.kfree(m, p, x).unwrap();
    }
    f.slab.kmem_cache_free(m, p, id, a).unwrap();
    f.slab.kmem_cache_destroy(&f.mem, p, id).unwrap();
    f.slab.shrink_all(&f.mem, p);
    f.assert_buddy_restored();
}

thread_local! {
    static CTOR_CALLS: Cell<usize> = const { Cell::new(0) };
    static REPORTS: RefCell<Vec<(String, Corruption)>> = const { RefCell::new(Vec::new()) };
}

fn ctor_pattern(mem: &dyn ObjectMemory, addr: u64, size: usize) {
    CTOR_CALLS.with(|c| c.set(c.get() + 1));
    mem.fill(addr, size, 0x42);
}

#[test]
fn constructor_runs_once_per_object_and_its_state_survives_free() {
    let mut f = Fixture::new(24);
    let (p, m) = (&f.pages, &f.mem);
    CTOR_CALLS.with(|c| c.set(0));
    let id = f
        .slab
        .kmem_cache_create("ctor_objs", 24, 0, SlabFlags::NONE, Some(ctor_pattern))
        .unwrap();
    let objs = f.slab.cache_info(&f.mem, id).unwrap().objs_per_slab as usize;
    let a = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_eq!(CTOR_CALLS.with(Cell::get), objs);
    assert_eq!(m.check(a, 24, 0x42), None);
    f.slab.kmem_cache_free(m, p, id, a).unwrap();
    let b = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_eq!(a, b, "LIFO");
    assert_eq!(
        m.check(b, 24, 0x42),
        None,
        "free pointer lives outside a ctor'd object"
    );
    assert_eq!(CTOR_CALLS.with(Cell::get), objs);
    f.slab.kmem_cache_free(m, p, id, b).unwrap();
}

#[test]
fn create_rejects_bad_parameters() {
    let mut f = Fixture::new(24);
    let s = &mut f.slab;
    assert_eq!(
        s.kmem_cache_create("", 8, 0, SlabFlags::NONE, None),
        Err(SlabError::Invalid)
    );
    assert_eq!(
        s.kmem_cache_create("has space", 8, 0, SlabFlags::NONE, None),
        Err(SlabError::Invalid)
    );
    assert_eq!(
        s.kmem_cache_create(&"x".repeat(33), 8, 0, SlabFlags::NONE, None),
        Err(SlabError::Invalid)
    );
    assert_eq!(
        s.kmem_cache_create("zero", 0, 0, SlabFlags::NONE, None),
        Err(SlabError::Invalid)
    );
    assert_eq!(
        s.kmem_cache_create("align", 8, 24, SlabFlags::NONE, None),
        Err(SlabError::Invalid)
    );
    assert_eq!(
        s.kmem_cache_create("align2", 8, 8192, SlabFlags::NONE, None),
        Err(SlabError::Invalid)
    );
    assert_eq!(
        s.kmem_cache_create("flags", 8, 0, SlabFlags(1), None),
        Err(SlabError::Invalid)
    );
    assert_eq!(
        s.kmem_cache_create("kmalloc-64", 8, 0, SlabFlags::NONE, None),
        Err(SlabError::Exists)
    );
    for i in 0..MAX_CACHES - crate::kmalloc::NR_KMALLOC_SLOTS {
        s.kmem_cache_create(&format!("c{i}"), 8, 0, SlabFlags::NONE, None)
            .unwrap();
    }
    assert_eq!(
        s.kmem_cache_create("one_more", 8, 0, SlabFlags::NONE, None),
        Err(SlabError::TooManyCaches)
    );
    let big = s.find_cache("c0").unwrap();
    s.kmem_cache_destroy(&f.mem, &f.pages, big).unwrap();
    let again = s
        .kmem_cache_create("one_more", 4 << 20, 0, SlabFlags::NONE, None)
        .unwrap();
    assert_ne!(again, big, "a reused slot gets a new generation");
    assert_eq!(s.cache_info(&f.mem, again).unwrap().pages_per_slab, 1024);
}

// ----------------------------------------------------------------------
// Corruption detection (cf. lib/slub_kunit.c)
// ----------------------------------------------------------------------

fn record(cache: &str, c: &Corruption) {
    REPORTS.with(|r| r.borrow_mut().push((cache.to_string(), *c)));
}

fn take_reports() -> Vec<(String, Corruption)> {
    REPORTS.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

fn debug_fixture() -> Fixture {
    let mut f = Fixture::with_kmalloc_debug(24, SlabFlags::RED_ZONE);
    f.slab.set_report_hook(record);
    take_reports();
    f
}

#[test]
fn kunit_clobber_zone_is_caught_on_free_and_the_object_quarantined() {
    // cf. test_clobber_zone: write one byte past a 64-byte object.
    let mut f = debug_fixture();
    let (p, m) = (&f.pages, &f.mem);
    let id = f
        .slab
        .kmem_cache_create("TestSlub_RZ_alloc", 64, 0, SlabFlags::RED_ZONE, None)
        .unwrap();
    let obj = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    m.write_u8(obj + 64, 0x12);
    let err = f.slab.kmem_cache_free(m, p, id, obj).unwrap_err();
    assert_eq!(
        (err.kind, err.offset, err.addr),
        (CorruptionKind::RedZone, Some(64), obj)
    );
    let reports = take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, "TestSlub_RZ_alloc");
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        (i.corruption.red_zone, i.quarantined, i.active_objs),
        (1, 1, 1)
    );
    // Quarantined: never handed out again.
    for _ in 0..200 {
        assert_ne!(
            f.slab
                .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
                .unwrap(),
            obj
        );
    }
    f.slab.check_invariants(m).unwrap();
}

#[test]
fn kunit_write_after_free_is_caught_on_alloc() {
    // cf. test_first_word / test_clobber_50th_byte: SLAB_POISON cache, write
    // into a freed object, allocate again.
    for (at, byte) in [(0u64, 0x78u8), (50, 0x9a)] {
        let mut f = debug_fixture();
        let (p, m) = (&f.pages, &f.mem);
        let id = f
            .slab
            .kmem_cache_create("TestSlub_1th_word_free", 64, 0, SlabFlags::POISON, None)
            .unwrap();
        let obj = f
            .slab
            .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
            .unwrap();
        f.slab.kmem_cache_free(m, p, id, obj).unwrap();
        assert_eq!(m.check(obj, 63, POISON_FREE), None);
        assert_eq!(m.read_u8(obj + 63), POISON_END);
        m.write_u8(obj + at, byte);
        let next = f
            .slab
            .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
            .unwrap();
        assert_ne!(next, obj, "the corrupted object is skipped");
        let reports = take_reports();
        assert_eq!(reports.len(), 1);
        let c = reports[0].1;
        assert_eq!(
            (c.kind, c.addr, c.offset),
            (CorruptionKind::Poison, obj, Some(at as u32))
        );
        let i = f.slab.cache_info(&f.mem, id).unwrap();
        assert_eq!(
            (i.corruption.poison, i.quarantined, i.active_objs),
            (1, 1, 2)
        );
        f.slab.check_invariants(m).unwrap();
    }
}

#[test]
fn kunit_clobber_redzone_of_a_free_object_is_caught_on_alloc() {
    // cf. test_clobber_redzone_free.
    let mut f = debug_fixture();
    let (p, m) = (&f.pages, &f.mem);
    let id = f
        .slab
        .kmem_cache_create("TestSlub_RZ_free", 64, 0, SlabFlags::RED_ZONE, None)
        .unwrap();
    let obj = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    f.slab.kmem_cache_free(m, p, id, obj).unwrap();
    m.write_u8(obj + 64, 0xab);
    let next = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_ne!(next, obj);
    let c = take_reports()[0].1;
    assert_eq!(
        (c.kind, c.addr, c.offset),
        (CorruptionKind::RedZone, obj, Some(64))
    );
}

#[test]
fn kunit_kmalloc_redzone_access_catches_writes_past_the_requested_size() {
    // cf. test_kmalloc_redzone_access: kmalloc(18) from kmalloc-32 (red
    // zoned), write bytes 18 and 19, free.
    let mut f = debug_fixture();
    let (p, m) = (&f.pages, &f.mem);
    let obj = f.slab.kmalloc(m, p, 18, GfpFlags::GFP_KERNEL).unwrap();
    assert_eq!(f.slab.cache_of(obj), f.slab.find_cache("kmalloc-32"));
    assert_eq!(obj % 32, 0, "natural alignment survives red zoning");
    m.fill(obj, 18, 0x11); // all of the requested bytes are fine
    m.write_u8(obj + 18, 0xab);
    m.write_u8(obj + 19, 0xab);
    let err = f.slab.kfree(m, p, obj).unwrap_err();
    assert_eq!((err.kind, err.offset), (CorruptionKind::RedZone, Some(18)));
    assert_eq!(take_reports()[0].0, "kmalloc-32");
    assert_eq!(kmalloc_info(&f, "kmalloc-32").corruption.red_zone, 1);
    // Writing within the requested size is fine.
    let ok = f.slab.kmalloc(m, p, 18, GfpFlags::GFP_KERNEL).unwrap();
    m.fill(ok, 18, 0x22);
    f.slab.kfree(m, p, ok).unwrap();
    // krealloc in place moves the red zone with the size.
    let r = f.slab.kmalloc(m, p, 18, GfpFlags::GFP_KERNEL).unwrap();
    assert_eq!(f.slab.krealloc(m, p, r, 30, GfpFlags::GFP_KERNEL), Ok(r));
    m.fill(r, 30, 0x33);
    f.slab.kfree(m, p, r).unwrap();
    assert!(take_reports().is_empty());
    f.slab.check_invariants(m).unwrap();
}

#[test]
fn kunit_next_pointer_corruption_isolates_the_free_chain() {
    // cf. test_next_pointer.
    let mut f = debug_fixture();
    let (p, m) = (&f.pages, &f.mem);
    let id = f
        .slab
        .kmem_cache_create("TestSlub_next_ptr_free", 64, 0, SlabFlags::POISON, None)
        .unwrap();
    let a = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    let objs = f.slab.cache_info(&f.mem, id).unwrap().objs_per_slab as u64;
    f.slab.kmem_cache_free(m, p, id, a).unwrap();
    let offset = 64; // free pointer right after a poisoned object
    m.write_u64(a + offset, m.read_u64(a + offset) + 0x12);
    let b = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert!(
        f.slab.cache_of(b) == Some(id)
            && (b - PAGE_OFFSET) >> PAGE_SHIFT != (a - PAGE_OFFSET) >> PAGE_SHIFT
    );
    let c = take_reports()[0].1;
    assert_eq!((c.kind, c.addr), (CorruptionKind::FreePointer, a));
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        i.quarantined, objs,
        "the whole chain from the bad pointer is isolated"
    );
    assert_eq!(i.corruption.free_pointer, 1);
    f.slab.check_invariants(m).unwrap();
}

#[test]
fn double_free_is_detected_in_debug_and_plain_caches() {
    let mut f = debug_fixture();
    let (p, m) = (&f.pages, &f.mem);
    // Debug cache: found anywhere on the free list.
    let id = f
        .slab
        .kmem_cache_create("df_debug", 48, 0, SlabFlags::RED_ZONE, None)
        .unwrap();
    let a = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    let b = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    f.slab.kmem_cache_free(m, p, id, a).unwrap();
    f.slab.kmem_cache_free(m, p, id, b).unwrap();
    let err = f.slab.kmem_cache_free(m, p, id, a).unwrap_err();
    assert_eq!((err.kind, err.addr), (CorruptionKind::DoubleFree, a));
    let i = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(
        (i.corruption.double_free, i.quarantined, i.active_objs),
        (1, 1, 1)
    );
    for _ in 0..100 {
        assert_ne!(
            f.slab
                .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
                .unwrap(),
            a,
            "quarantined"
        );
    }
    // Plain cache, active slab: the free list head (cf. set_freepointer()).
    let plain = f
        .slab
        .kmem_cache_create("df_plain", 48, 0, SlabFlags::NONE, None)
        .unwrap();
    let x = f
        .slab
        .kmem_cache_alloc(m, p, plain, GfpFlags::GFP_KERNEL)
        .unwrap();
    f.slab.kmem_cache_free(m, p, plain, x).unwrap();
    let err = f.slab.kmem_cache_free(m, p, plain, x).unwrap_err();
    assert_eq!(err.kind, CorruptionKind::DoubleFree);
    assert_ne!(
        f.slab
            .kmem_cache_alloc(m, p, plain, GfpFlags::GFP_KERNEL)
            .unwrap(),
        x
    );
    // Plain cache, inactive slab.
    let objs = f.slab.cache_info(&f.mem, plain).unwrap().objs_per_slab as usize;
    let held: Vec<u64> = (0..objs + 1)
        .map(|_| {
            f.slab
                .kmem_cache_alloc(m, p, plain, GfpFlags::GFP_KERNEL)
                .unwrap()
        })
        .collect();
    let old = held[0];
    assert_ne!(f.slab.cache_info(&f.mem, plain).unwrap().num_slabs, 1);
    f.slab.kmem_cache_free(m, p, plain, old).unwrap();
    assert_eq!(
        f.slab.kmem_cache_free(m, p, plain, old).unwrap_err().kind,
        CorruptionKind::DoubleFree
    );
    assert_eq!(
        f.slab
            .cache_info(&f.mem, plain)
            .unwrap()
            .corruption
            .double_free,
        2
    );
    assert_eq!(take_reports().len(), 3);
    f.slab.check_invariants(m).unwrap();
}

#[test]
fn invalid_frees_are_reported_and_change_nothing() {
    let mut f = debug_fixture();
    let (p, m) = (&f.pages, &f.mem);
    let id = f
        .slab
        .kmem_cache_create("inv", 40, 0, SlabFlags::NONE, None)
        .unwrap();
    let other = f
        .slab
        .kmem_cache_create("inv_other", 40, 0, SlabFlags::NONE, None)
        .unwrap();
    let a = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    let before = f.slab.cache_info(&f.mem, id).unwrap();
    let kind = |r: Result<(), Corruption>| r.unwrap_err().kind;
    use InvalidFreeKind::*;
    assert_eq!(
        kind(f.slab.kfree(m, p, a + 8)),
        CorruptionKind::InvalidFree(NotObjectStart)
    );
    assert_eq!(
        kind(f.slab.kmem_cache_free(m, p, other, a)),
        CorruptionKind::InvalidFree(WrongCache)
    );
    // A page the slab layer does not own (buddy-allocated), an address
    // outside lowmem, and one below the direct map.
    let foreign = f
        .pages
        .lock()
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
        .unwrap();
    let foreign_va = PAGE_OFFSET + foreign.phys().0;
    assert_eq!(
        kind(f.slab.kfree(m, p, foreign_va)),
        CorruptionKind::InvalidFree(NotSlab)
    );
    assert_eq!(
        kind(f.slab.kfree(m, p, PAGE_OFFSET + (1 << 40))),
        CorruptionKind::InvalidFree(NotSlab)
    );
    assert_eq!(
        kind(f.slab.kfree(m, p, 0x1000)),
        CorruptionKind::InvalidFree(NotSlab)
    );
    // Past the last object of a slab (leftover bytes): 40 → stride 40,
    // 102 objects = 4080 bytes, 16 left.
    let slab_base = a & !(PAGE_SIZE - 1);
    assert_eq!(
        kind(f.slab.kfree(m, p, slab_base + 4080)),
        CorruptionKind::InvalidFree(NotObjectStart)
    );
    let after = f.slab.cache_info(&f.mem, id).unwrap();
    assert_eq!(after.active_objs, before.active_objs);
    // Counted against the cache that owns the address.
    assert_eq!(after.corruption.invalid_free, 3);
    assert_eq!(
        f.slab
            .cache_info(&f.mem, other)
            .unwrap()
            .corruption
            .invalid_free,
        0
    );
    assert_eq!(f.slab.stray_frees(), 3);
    assert_eq!(take_reports().len(), 6);
    assert!(
        f.page(foreign_va).is_head() && !f.page(foreign_va).is_slab(),
        "foreign page untouched"
    );
    f.slab.kmem_cache_free(m, p, id, a).unwrap();
    f.slab.check_invariants(m).unwrap();
}

#[test]
fn destroy_releases_quarantined_objects_with_the_cache() {
    let mut f = debug_fixture();
    let (p, m) = (&f.pages, &f.mem);
    let id = f
        .slab
        .kmem_cache_create("q", 64, 0, SlabFlags::RED_ZONE | SlabFlags::POISON, None)
        .unwrap();
    let a = f
        .slab
        .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    m.write_u8(a + 70, 0);
    assert!(f.slab.kmem_cache_free(m, p, id, a).is_err());
    assert_eq!(f.slab.cache_info(&f.mem, id).unwrap().active_objs, 1);
    f.slab.kmem_cache_destroy(&f.mem, p, id).unwrap();
    f.slab.shrink_all(&f.mem, p);
    f.assert_buddy_restored();
}

// ----------------------------------------------------------------------
// /proc/slabinfo
// ----------------------------------------------------------------------

#[test]
fn slabinfo_golden() {
    let mut f = Fixture::new(24);
    let (p, m) = (&f.pages, &f.mem);
    let id = f
        .slab
        .kmem_cache_create_kind("test_cache", 200, 64, SlabFlags::NONE, None, CacheKind::Api)
        .unwrap();
    for _ in 0..3 {
        f.slab
            .kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL)
            .unwrap();
    }
    let k = f.slab.kmalloc(m, p, 40, GfpFlags::GFP_KERNEL).unwrap();
    assert_eq!(f.slab.cache_of(k), f.slab.find_cache("kmalloc-64"));
    let mut out = String::new();
    f.slab.slabinfo(&f.mem, &mut out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "slabinfo - version: 2.1");
    assert_eq!(
        lines[1],
        "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"
    );
    assert_eq!(
        lines[2],
        "test_cache             3     16    256   16    1 : tunables    0    0    0 : slabdata      1      1      0"
    );
    assert_eq!(
        lines[3],
        "dma-kmalloc-8k         0      0   8192    4    8 : tunables    0    0    0 : slabdata      0      0      0"
    );
    assert!(lines.contains(
        &"kmalloc-64             1     64     64   64    1 : tunables    0    0    0 : slabdata      1      1      0"
    ));
    assert_eq!(
        *lines.last().unwrap(),
        "kmalloc-8              0      0      8  512    1 : tunables    0    0    0 : slabdata      0      0      0"
    );
    assert_eq!(lines.len(), 2 + 1 + crate::kmalloc::NR_KMALLOC_SLOTS);
    assert!(
        out.ends_with('\n') && lines.iter().all(|l| !l.ends_with(' ')),
        "no trailing spaces"
    );
    let long = f
        .slab
        .kmem_cache_create("a_name_longer_than_17", 8, 0, SlabFlags::NONE, None)
        .unwrap();
    let mut out = String::new();
    f.slab.slabinfo(&f.mem, &mut out).unwrap();
    assert!(
        out.lines()
            .nth(2)
            .unwrap()
            .starts_with("a_name_longer_than_17      0      0      8  512")
    );
    let info = f.slab.cache_info(&f.mem, long).unwrap();
    assert_eq!(info.name.as_str(), "a_name_longer_than_17");
    assert_eq!(f.slab.slab_pages(), 2);
}

// ----------------------------------------------------------------------
// Through the real MemoryManager and Platform
// ----------------------------------------------------------------------

#[test]
fn platform_memory_shares_bytes_with_memory_manager_fill_and_checksum() {
    use crate::manager::MemoryManager;
    use crate::platform::sim::SimPlatform;
    let ram = 24 * MIB;
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), ram).unwrap();
    let mem_map = Box::leak(vec![Page::new_reserved(); (ram >> 12) as usize].into_boxed_slice());
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(ram, ram)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    let mm = MemoryManager::new(pa, SimPlatform::new(ram >> 12));
    let metas = Box::leak(vec![SlabMeta::EMPTY; (ram >> 12) as usize].into_boxed_slice());
    let mut slab = SlabAllocator::new(metas, SlabFlags::NONE);
    let mem = PlatformMemory(mm.platform());
    let a = slab.kzalloc(&mem, &mm, 5000, GfpFlags::GFP_KERNEL).unwrap();
    assert_eq!(slab.ksize(a), Some(8192));
    let pfn = Pfn((a - PAGE_OFFSET) >> PAGE_SHIFT);
    assert!(mm.platform().frame(pfn).iter().all(|&b| b == 0));
    mm.fill(pfn, 1, 0x5a);
    assert_eq!(mem.check(a, 4096, 0x5a), None);
    let big = slab
        .kmalloc(&mem, &mm, 100_000, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_eq!(
        mm.lock()
            .page(Pfn((big - PAGE_OFFSET) >> PAGE_SHIFT))
            .unwrap()
            .owner,
        OwnerTag::HEAP
    );
    slab.kfree(&mem, &mm, big).unwrap();
    slab.kfree(&mem, &mm, a).unwrap();
    slab.shrink_all(&mem, &mm);
    assert_eq!(mm.drained_buddyinfo(), mm.boot_buddyinfo());
}

// ----------------------------------------------------------------------
// Property test
// ----------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Kmalloc { size: usize, dma: bool, zero: bool },
    Large { size: usize },
    Cache { which: usize },
    Free { pick: usize },
    Shrink { which: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..=8192, prop::bool::weighted(0.15), any::<bool>())
            .prop_map(|(size, dma, zero)| Op::Kmalloc { size, dma, zero }),
        3 => (0u32..14).prop_map(|sh| Op::Kmalloc { size: (1usize << sh).max(1), dma: false, zero: false }),
        1 => (8193usize..=80_000).prop_map(|size| Op::Large { size }),
        4 => (0usize..3).prop_map(|which| Op::Cache { which }),
        6 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => (0usize..4).prop_map(|which| Op::Shrink { which }),
    ]
}

fn cache_spec() -> impl Strategy<Value = (usize, usize, u32)> {
    (1usize..=3000, 0u32..=9, 0u32..16).prop_map(|(size, ash, fl)| {
        let align = if ash == 0 { 0 } else { 1 << ash };
        let mut flags = SlabFlags::NONE;
        for (bit, f) in [
            SlabFlags::HWCACHE_ALIGN,
            SlabFlags::RED_ZONE,
            SlabFlags::POISON,
            SlabFlags::CACHE_DMA,
        ]
        .into_iter()
        .enumerate()
        {
            if fl & (1 << bit) != 0 {
                flags = flags | f;
            }
        }
        (size, align, flags.0)
    })
}

struct Live {
    len: usize,
    req: usize,
    tag: u8,
    cache: Option<CacheId>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_kmalloc_and_caches_keep_every_invariant(
        specs in prop::collection::vec(cache_spec(), 3),
        ops in prop::collection::vec(op(), 1..400),
        debug_kmalloc in any::<bool>(),
    ) {
        let mut f = Fixture::with_kmalloc_debug(24, if debug_kmalloc { SlabFlags::RED_ZONE | SlabFlags::POISON } else { SlabFlags::NONE });
        let (p, m) = (&f.pages, &f.mem);
        let ids: Vec<CacheId> = specs.iter().enumerate().map(|(i, &(size, align, fl))| {
            f.slab.kmem_cache_create(&format!("prop{i}"), size, align, SlabFlags(fl), None).unwrap()
        }).collect();
        let mut live: BTreeMap<u64, Live> = BTreeMap::new();
        let mut tag = 0u8;
        for (n, op) in ops.iter().enumerate() {
            tag = tag.wrapping_add(1);
            let (res, req, cache) = match *op {
                Op::Kmalloc { size, dma, zero } => {
                    let mut gfp = GfpFlags::GFP_KERNEL;
                    if dma { gfp = gfp.union(GfpFlags::DMA); }
                    if zero { gfp = gfp.union(GfpFlags::ZERO); }
                    let r = f.slab.kmalloc(m, p, size, gfp);
                    if let (Ok(a), true) = (r, zero) {
                        prop_assert_eq!(m.check(a, size, 0), None, "kzalloc zeroes");
                    }
                    if let Ok(a) = r {
                        let class = KMALLOC_SIZES.iter().copied().find(|&c| c >= size).unwrap();
                        prop_assert_eq!(a % (1 << class.trailing_zeros()), 0, "natural alignment of kmalloc-{}", class);
                        let name = f.slab.cache_info(&f.mem, f.slab.cache_of(a).unwrap()).unwrap().name;
                        let class = crate::kmalloc::kmalloc_size_roundup(size).unwrap();
                        let suffix = if class >= 1024 { format!("-{}k", class / 1024) } else { format!("-{class}") };
                        prop_assert!(name.as_str().ends_with(&suffix), "{} for {}", name, size);
                        prop_assert_eq!(name.as_str().starts_with("dma-"), dma);
                        if dma { prop_assert!(a < PAGE_OFFSET + (16 << 20)); }
                    }
                    (r, size, None)
                }
                Op::Large { size } => {
                    let r = f.slab.kmalloc(m, p, size, GfpFlags::GFP_KERNEL);
                    if let Ok(a) = r {
                        prop_assert_eq!((a - PAGE_OFFSET) % (PAGE_SIZE << Order::from_size_bytes(size as u64).unwrap().get()), 0);
                    }
                    (r, size, None)
                }
                Op::Cache { which } => {
                    let id = ids[which];
                    let r = f.slab.kmem_cache_alloc(m, p, id, GfpFlags::GFP_KERNEL);
                    if let Ok(a) = r {
                        let info = f.slab.cache_info(&f.mem, id).unwrap();
                        prop_assert_eq!(a % info.align as u64, 0);
                        if specs[which].1 != 0 { prop_assert_eq!(a % specs[which].1 as u64, 0); }
                        prop_assert_eq!(f.slab.cache_of(a), Some(id));
                    }
                    (r, specs[which].0, Some(id))
                }
                Op::Free { pick } => {
                    if !live.is_empty() {
                        let addr = *live.keys().nth(pick % live.len()).unwrap();
                        let l = live.remove(&addr).unwrap();
                        prop_assert_eq!(m.check(addr, l.req, l.tag), None, "object content intact at free");
                        match l.cache {
                            Some(id) => f.slab.kmem_cache_free(m, p, id, addr).unwrap(),
                            None => f.slab.kfree(m, p, addr).unwrap(),
                        }
                    }
                    continue;
                }
                Op::Shrink { which } => {
                    if which == 3 { f.slab.shrink_all(&f.mem, p); } else { f.slab.kmem_cache_shrink(&f.mem, p, ids[which]).unwrap(); }
                    continue;
                }
            };
            let Ok(addr) = res else {
                prop_assert!(matches!(res, Err(SlabError::NoMemory { .. })), "{:?}", res);
                continue;
            };
            let len = f.slab.ksize(addr).unwrap();
            prop_assert!(len >= req, "ksize {} < size {}", len, req);
            // No overlap with any live allocation.
            if let Some((&prev, l)) = live.range(..addr).next_back() {
                prop_assert!(prev + l.len as u64 <= addr, "overlaps the allocation below");
            }
            if let Some((&next, _)) = live.range(addr..).next() {
                prop_assert!(addr + len as u64 <= next, "overlaps the allocation above");
            }
            // Inside a slab (or large block) the buddy allocator marked.
            let page = f.page(addr);
            prop_assert!(page.is_allocated(), "slab and large blocks are compound");
            prop_assert_eq!(page.is_slab(), len <= 8192 || cache.is_some());
            m.fill(addr, req, tag);
            live.insert(addr, Live { len, req, tag, cache });
            if n % 32 == 0 {
                f.slab.check_invariants(m).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        f.slab.check_invariants(m).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let total: u64 = f.slab.caches(&f.mem).map(|c| c.active_objs).sum();
        prop_assert_eq!(total + f.slab.large_stats().0, live.len() as u64, "counters equal the live set");
        for (addr, l) in std::mem::take(&mut live) {
            prop_assert_eq!(m.check(addr, l.req, l.tag), None);
            f.slab.kfree(m, p, addr).unwrap();
        }
        f.slab.shrink_all(&f.mem, p);
        f.slab.check_invariants(m).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(f.slab.slab_pages(), 0);
        for id in ids {
            f.slab.kmem_cache_destroy(&f.mem, p, id).unwrap();
        }
        prop_assert_eq!(f.buddy(), f.boot, "buddy state equals its starting state");
        f.pages.lock().check_invariants().map_err(TestCaseError::fail)?;
    }
}

#[test]
fn zero_size_and_null_are_special() {
    let mut f = Fixture::new(24);
    let (p, m) = (&f.pages, &f.mem);
    assert_eq!(
        f.slab.kmalloc(m, p, 0, GfpFlags::GFP_KERNEL),
        Ok(ZERO_SIZE_PTR)
    );
    assert_eq!(f.slab.kfree(m, p, ZERO_SIZE_PTR), Ok(()));
    assert_eq!(f.slab.kfree(m, p, 0), Ok(()));
    assert_eq!(f.slab.ksize(ZERO_SIZE_PTR), Some(0));
    assert_eq!(f.slab.slab_pages(), 0, "nothing allocated for size 0");
}

#[test]
fn an_unwritten_overlay_reads_as_no_slab_until_the_slab_layer_reaches_it() {
    let mut f = Fixture::new(64);
    let (p, m) = (&f.pages, &f.mem);
    // Nothing reached yet: nothing written, every frame is no slab's.
    assert_eq!(f.slab.metas.len(), 0);
    assert_eq!(f.slab.nr_frames(), ((64 * MIB) >> PAGE_SHIFT) as usize);
    let far = slab_va(15_000);
    let err = f.slab.kfree(m, p, far).unwrap_err();
    assert_eq!(
        err.kind,
        CorruptionKind::InvalidFree(InvalidFreeKind::NotSlab)
    );
    // One allocation writes the entries of its slab's 2 MiB of frames
    // (and those below it).
    let a = f.slab.kmalloc(m, p, 64, GfpFlags::GFP_KERNEL).unwrap();
    let pfn = ((a - PAGE_OFFSET) >> PAGE_SHIFT) as usize;
    let written = f.slab.metas.len();
    assert_eq!(written, (pfn + 1).next_multiple_of(512));
    for (i, meta) in f.slab.metas.iter().enumerate() {
        if i == pfn {
            assert_eq!(
                f.slab.cache_of_pfn(Pfn(i as u64)),
                f.slab.find_cache("kmalloc-64")
            );
            assert_ne!(*meta, UNWRITTEN_META);
        } else {
            assert_eq!(*meta, SlabMeta::EMPTY, "frame {i}");
        }
    }
    // Frames past the written part are still refused, and counted.
    let err = f.slab.kfree(m, p, slab_va(written as u32 + 7)).unwrap_err();
    assert_eq!(
        err.kind,
        CorruptionKind::InvalidFree(InvalidFreeKind::NotSlab)
    );
    assert_eq!(f.slab.stray_frees(), 2);
    f.slab.kfree(m, p, a).unwrap();
    f.slab.check_invariants(m).unwrap();
    f.slab.shrink_all(&f.mem, p);
    f.assert_buddy_restored();
}
