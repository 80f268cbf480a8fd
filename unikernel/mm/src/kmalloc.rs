//! `kmalloc`: general-purpose allocation by size over fixed slab caches
//! (cf. `mm/slab_common.c`: `kmalloc_caches`, `kmalloc_index()`,
//! `kmalloc_slab()`, `__kmalloc_large_node()`, `krealloc()`, `ksize()`).
//!
//! Sizes 1..=8 KiB go to one of thirteen caches `kmalloc-8` … `kmalloc-8k`
//! (powers of two plus `kmalloc-96` and `kmalloc-192`, which Linux keeps
//! because 96- and 192-byte requests are common and would waste a third in
//! the next power of two); `GFP_DMA` picks the `dma-kmalloc-*` twin, whose
//! slabs come from ZONE_DMA, and `__GFP_ACCOUNT` the `kmalloc-cg-*` twin
//! (Linux's memcg-accounted caches), which keeps the objects users ask for
//! out of the slabs the kernel's own heap lives in. The size → cache step is one load from a
//! 1 KiB table indexed by `(size - 1) / 8` (Linux splits it into
//! `size_index[]` + `fls()`; one table is faster and a kilobyte is cheap).
//! Larger requests, up to 4 MiB (order 10), bypass the slab and take a
//! buddy block (`kmalloc_large`); its frames are labelled in the slab
//! overlay so `kfree` recognises it from the address alone.
//!
//! **Alignment.** Slabs are naturally aligned buddy blocks and every kmalloc
//! cache aligns its object stride to the largest power of two dividing its
//! class size — even with red zones — so a power-of-two class hands out
//! objects aligned to their size, `kmalloc-96` to 32, `kmalloc-192` to 64,
//! and `kmalloc_large` blocks to their own size (as Linux guarantees since
//! 6.x). Hence [`kmalloc_size_for_layout`]: rounding the size up to a
//! multiple of the alignment makes any `Layout` with `align` ≤ 4 MiB come
//! back aligned, which is what the kernel's `GlobalAlloc` does.
//!
//! `kmalloc(0)` returns [`ZERO_SIZE_PTR`] (16): not NULL, so callers do not
//! mistake it for failure, yet never a real object — `kfree` ignores it and
//! any access faults in the first page.

use crate::gfp::GfpFlags;
use crate::slab::{
    CacheName, Corruption, InvalidFreeKind, META_LARGE_HEAD, META_LARGE_TAIL, ObjectMemory,
    PageSource, SlabAllocator, SlabError, SlabFlags, SlabMeta, SlabPageKind, calculate_sizes,
    ptr_or_null, slab_va, trace_kfree, trace_slab_alloc,
};
use crate::trace::EventId;
use crate::types::{MAX_ORDER, Order, PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE, Pfn};

/// Smallest kmalloc class, as a shift (cf. `KMALLOC_SHIFT_LOW`).
pub const KMALLOC_SHIFT_LOW: u32 = 3;
/// Largest kmalloc class, as a shift (cf. `KMALLOC_SHIFT_HIGH` = `PAGE_SHIFT + 1`).
pub const KMALLOC_SHIFT_HIGH: u32 = PAGE_SHIFT + 1;
/// Largest size served by a kmalloc cache (cf. `KMALLOC_MAX_CACHE_SIZE`).
pub const KMALLOC_MAX_CACHE_SIZE: usize = 1 << KMALLOC_SHIFT_HIGH;
/// Largest `kmalloc` (cf. `KMALLOC_MAX_SIZE`): one order-10 block.
pub const KMALLOC_MAX_SIZE: usize = (PAGE_SIZE as usize) << MAX_ORDER;
/// What `kmalloc(0)` returns (cf. `ZERO_SIZE_PTR`).
pub const ZERO_SIZE_PTR: u64 = 16;

/// The kmalloc class sizes, in cache-slot order.
pub const KMALLOC_SIZES: [usize; NR_KMALLOC_SIZES] = [
    8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
];
/// Number of kmalloc classes.
pub const NR_KMALLOC_SIZES: usize = 13;
/// Cache slots reserved for kmalloc: normal classes, the `kmalloc-cg-*`
/// twins for `__GFP_ACCOUNT`, then the DMA twins — Linux 6.1's creation
/// order (`enum kmalloc_cache_type`: KMALLOC_NORMAL, KMALLOC_CGROUP, …,
/// KMALLOC_DMA), so `/proc/slabinfo` lists them as Linux does.
pub const NR_KMALLOC_SLOTS: usize = 3 * NR_KMALLOC_SIZES;

/// Which twin a request uses (cf. `kmalloc_type()`): DMA wins over
/// accounting, as in Linux.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmallocType {
    Normal = 0,
    Cgroup = 1,
    Dma = 2,
}

impl KmallocType {
    const ALL: [KmallocType; 3] = [KmallocType::Normal, KmallocType::Cgroup, KmallocType::Dma];

    /// `kmalloc_type()` without a branch: the DMA bit is bit 0, the
    /// ACCOUNT bit bit 22.
    #[inline(always)]
    const fn index(gfp: GfpFlags) -> usize {
        let dma = gfp.bits() & GfpFlags::DMA.bits();
        let cg = (gfp.bits() >> 22) & 1 & !dma;
        (2 * dma + cg) as usize
    }
}

/// Linux's `kmalloc_index()`: 0 for size 0, 1 for 65..=96, 2 for
/// 129..=192, else `ceil(log2(size))` from 3 (≤ 8) to 13 (≤ 8 KiB); `None`
/// above 8 KiB (`kmalloc_large`).
pub const fn kmalloc_index(size: usize) -> Option<u32> {
    if size == 0 {
        return Some(0);
    }
    if size > KMALLOC_MAX_CACHE_SIZE {
        return None;
    }
    if size <= 8 {
        return Some(KMALLOC_SHIFT_LOW);
    }
    if size > 64 && size <= 96 {
        return Some(1);
    }
    if size > 128 && size <= 192 {
        return Some(2);
    }
    Some(usize::BITS - (size - 1).leading_zeros())
}

/// Slot of the smallest class holding `(bucket + 1) * 8` bytes.
const fn bucket_slot(bucket: usize) -> u8 {
    let size = (bucket + 1) * 8;
    let mut slot = 0;
    while KMALLOC_SIZES[slot] < size {
        slot += 1;
    }
    slot as u8
}

/// A normal kmalloc class's cache slot (`kmalloc-8` … `kmalloc-8k`), as
/// a type whose range the compiler knows: a slot read from
/// [`SIZE_TO_SLOT`] indexes a per-CPU or cache array without a bounds
/// check or a mask (one instruction of every `kmalloc`'s fast path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum KmallocSlot {
    K8,
    K16,
    K32,
    K64,
    K96,
    K128,
    K192,
    K256,
    K512,
    K1k,
    K2k,
    K4k,
    K8k,
}

impl KmallocSlot {
    /// Every class, in slot order.
    const ALL: [KmallocSlot; NR_KMALLOC_SIZES] = [
        KmallocSlot::K8,
        KmallocSlot::K16,
        KmallocSlot::K32,
        KmallocSlot::K64,
        KmallocSlot::K96,
        KmallocSlot::K128,
        KmallocSlot::K192,
        KmallocSlot::K256,
        KmallocSlot::K512,
        KmallocSlot::K1k,
        KmallocSlot::K2k,
        KmallocSlot::K4k,
        KmallocSlot::K8k,
    ];
}

/// Size → cache slot, indexed by `(size - 1) >> 3` for sizes 1..=8192.
pub(crate) static SIZE_TO_SLOT: [KmallocSlot; KMALLOC_MAX_CACHE_SIZE / 8] = {
    let mut t = [KmallocSlot::K8; KMALLOC_MAX_CACHE_SIZE / 8];
    let mut i = 0;
    while i < t.len() {
        t[i] = KmallocSlot::ALL[bucket_slot(i) as usize];
        i += 1;
    }
    t
};

/// The class size `kmalloc(size)` uses, `None` for 0 or `kmalloc_large`
/// sizes (cf. `kmalloc_size_roundup()`).
pub fn kmalloc_size_roundup(size: usize) -> Option<usize> {
    (size.wrapping_sub(1) < KMALLOC_MAX_CACHE_SIZE)
        .then(|| KMALLOC_SIZES[SIZE_TO_SLOT[(size - 1) >> 3] as usize])
}

/// The `kmalloc` size that returns memory for `Layout { size, align }`
/// aligned to `align` (see the module docs): `size` rounded up to a
/// multiple of `align`. `None` past [`KMALLOC_MAX_SIZE`] or for an
/// `align` that is not a power of two.
pub const fn kmalloc_size_for_layout(size: usize, align: usize) -> Option<usize> {
    if !align.is_power_of_two() {
        return None;
    }
    match size.checked_next_multiple_of(align) {
        Some(s) if s <= KMALLOC_MAX_SIZE => Some(s),
        _ => None,
    }
}

/// `kmalloc-8` … `kmalloc-8k`, `dma-kmalloc-…`, `kmalloc-cg-…` (cf.
/// `kmalloc_info[]`).
fn kmalloc_name(size: usize, kind: KmallocType) -> CacheName {
    use core::fmt::Write;
    let prefix = match kind {
        KmallocType::Normal => "kmalloc-",
        KmallocType::Dma => "dma-kmalloc-",
        KmallocType::Cgroup => "kmalloc-cg-",
    };
    let mut name = CacheName::new(prefix).unwrap_or_else(|| unreachable!());
    let _ = if size >= 1024 {
        write!(name, "{}k", size / 1024)
    } else {
        write!(name, "{size}")
    };
    name
}

impl SlabAllocator<'_> {
    /// cf. `create_kmalloc_caches()`: normal classes, then the DMA ones,
    /// then the accounted (`kmalloc-cg-*`) ones. Each aligned to the
    /// largest power of two dividing its size.
    pub(crate) fn create_kmalloc_caches(&mut self, debug: SlabFlags) {
        for kind in KmallocType::ALL {
            for (i, &size) in KMALLOC_SIZES.iter().enumerate() {
                let flags = match kind {
                    KmallocType::Normal => debug,
                    KmallocType::Dma => debug.union(SlabFlags::CACHE_DMA),
                    KmallocType::Cgroup => debug.union(SlabFlags::ACCOUNT),
                };
                let align = 1usize << size.trailing_zeros();
                let geo = calculate_sizes(size, align, flags, false);
                let slot = i + kind as usize * NR_KMALLOC_SIZES;
                self.setup_cache(
                    slot,
                    kmalloc_name(size, kind),
                    size,
                    geo,
                    flags,
                    None,
                    crate::slab::CacheKind::Kmalloc,
                );
            }
        }
    }

    /// `kmalloc()`: `size` bytes aligned as the module docs say, `GFP_DMA`
    /// and `__GFP_ACCOUNT` pick their twin caches, `__GFP_ZERO` zeroes.
    /// `kmalloc(0)` is [`ZERO_SIZE_PTR`].
    #[inline]
    pub fn kmalloc<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        size: usize,
        gfp: GfpFlags,
    ) -> Result<u64, SlabError> {
        if size.wrapping_sub(1) < KMALLOC_MAX_CACHE_SIZE {
            let mut slot = SIZE_TO_SLOT[((size - 1) >> 3) & (SIZE_TO_SLOT.len() - 1)] as usize;
            // The kernel heap asks neither DMA nor accounting: one test.
            if gfp.intersects(GfpFlags::DMA.union(GfpFlags::ACCOUNT)) {
                slot += KmallocType::index(gfp) * NR_KMALLOC_SIZES;
            }
            let r = self.slab_alloc(mem, pages, slot, gfp, size);
            if pages.trace_enabled(EventId::Kmalloc) {
                let bytes = (size, self.cache_stride(slot));
                trace_slab_alloc(pages, EventId::Kmalloc, ptr_or_null(&r), bytes, gfp, false);
            }
            return r;
        }
        self.kmalloc_big(mem, pages, size, gfp)
    }

    #[cold]
    #[inline(never)]
    fn kmalloc_big<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        size: usize,
        gfp: GfpFlags,
    ) -> Result<u64, SlabError> {
        if size == 0 {
            return Ok(ZERO_SIZE_PTR);
        }
        let r = self.kmalloc_large(mem, pages, size, gfp);
        if pages.trace_enabled(EventId::Kmalloc) {
            // cf. __kmalloc_large_node(): bytes_alloc is PAGE_SIZE << order.
            let bytes_alloc = Order::from_size_bytes(size as u64).map_or(0, |o| o.size_bytes());
            trace_slab_alloc(
                pages,
                EventId::Kmalloc,
                ptr_or_null(&r),
                (size, bytes_alloc),
                gfp,
                false,
            );
        }
        r
    }

    /// `kzalloc()`: `kmalloc` with `__GFP_ZERO`.
    #[inline]
    pub fn kzalloc<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        size: usize,
        gfp: GfpFlags,
    ) -> Result<u64, SlabError> {
        self.kmalloc(mem, pages, size, gfp.union(GfpFlags::ZERO))
    }

    /// cf. `__kmalloc_large_node()`: a buddy block of `get_order(size)`
    /// frames (zone modifiers honoured, HighMem never), labelled in the
    /// overlay so `kfree` knows it.
    pub fn kmalloc_large<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        size: usize,
        gfp: GfpFlags,
    ) -> Result<u64, SlabError> {
        if size > KMALLOC_MAX_SIZE {
            return Err(SlabError::TooLarge { size });
        }
        let order = Order::from_size_bytes(size as u64).ok_or(SlabError::TooLarge { size })?;
        let pfn = pages
            .alloc_slab_pages(
                gfp.difference(GfpFlags::HIGHMEM.union(GfpFlags::ZERO)),
                order,
                SlabPageKind::Large,
            )
            .map_err(|_| SlabError::NoMemory { order })?;
        let nr = order.nr_pages() as usize;
        if !self.metas.extend_to(pfn.index() + nr) {
            pages.free_slab_pages(pfn, order, SlabPageKind::Large);
            return Err(SlabError::NoMemory { order });
        }
        self.metas[pfn.index()] = SlabMeta {
            cache: META_LARGE_HEAD,
            inuse: order.get() as u16,
            ..SlabMeta::EMPTY
        };
        for m in &mut self.metas[pfn.index() + 1..pfn.index() + nr] {
            *m = SlabMeta {
                cache: META_LARGE_TAIL,
                ..SlabMeta::EMPTY
            };
        }
        self.large_allocs += 1;
        self.large_pages += nr as u64;
        let addr = slab_va(pfn.0 as u32);
        if gfp.contains(GfpFlags::ZERO) {
            mem.fill(addr, order.size_bytes() as usize, 0);
        }
        Ok(addr)
    }

    /// `kfree()`: `NULL` and [`ZERO_SIZE_PTR`] are no-ops; a slab object or
    /// `kmalloc_large` block is freed; anything else is reported as an
    /// invalid free and changes nothing.
    ///
    /// Always inlined: the general free behind the fast path is part of it
    /// (see `slab/cpu.rs`), and a call would cost the random-order frees
    /// that take it a fifth of their instructions.
    #[inline(always)]
    pub fn kfree<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        addr: u64,
    ) -> Result<(), Corruption> {
        if pages.trace_enabled(EventId::Kfree) {
            trace_kfree(pages, addr);
        }
        // `ZERO_OR_NULL_PTR()` is tested behind the fast path (in
        // `slab_free`): no address up to `ZERO_SIZE_PTR` passes its test.
        self.slab_free(mem, pages, addr, None)
    }

    /// cf. `free_large_kmalloc()`: only the block's first byte frees it.
    pub(crate) fn free_large<S: PageSource + ?Sized>(
        &mut self,
        pages: &S,
        addr: u64,
    ) -> Result<(), Corruption> {
        let phys = addr.wrapping_sub(PAGE_OFFSET);
        let pfn = (phys >> PAGE_SHIFT) as usize;
        let meta = self.metas.get(pfn).copied().unwrap_or(SlabMeta::EMPTY);
        match meta.cache {
            META_LARGE_HEAD if phys.is_multiple_of(PAGE_SIZE) => {
                let Some(order) = Order::new(meta.inuse as u8) else {
                    return Err(self.stray_free(InvalidFreeKind::NotSlab, addr));
                };
                let nr = order.nr_pages() as usize;
                self.metas[pfn..pfn + nr].fill(SlabMeta::EMPTY);
                self.large_allocs -= 1;
                self.large_pages -= nr as u64;
                pages.free_slab_pages(Pfn(pfn as u64), order, SlabPageKind::Large);
                Ok(())
            }
            META_LARGE_HEAD | META_LARGE_TAIL => {
                Err(self.stray_free(InvalidFreeKind::NotObjectStart, addr))
            }
            _ => Err(self.stray_free(InvalidFreeKind::NotSlab, addr)),
        }
    }

    /// `ksize()`: usable bytes of an allocation — the cache's
    /// `object_size` (the class size for kmalloc), or the whole block for
    /// `kmalloc_large`; 0 for `NULL`/[`ZERO_SIZE_PTR`]; `None` for an
    /// address that is no allocation start. With `SLAB_RED_ZONE` only the
    /// requested size may be written: grow it with [`Self::krealloc`].
    pub fn ksize(&self, addr: u64) -> Option<usize> {
        if addr <= ZERO_SIZE_PTR {
            return Some(0);
        }
        let phys = addr.wrapping_sub(PAGE_OFFSET);
        let pfn = (phys >> PAGE_SHIFT) as usize;
        let meta = self.metas.get(pfn)?;
        match meta.cache {
            0 | META_LARGE_TAIL => None,
            META_LARGE_HEAD => phys
                .is_multiple_of(PAGE_SIZE)
                .then(|| (PAGE_SIZE as usize) << meta.inuse),
            id => self.object_size_at(id as usize - 1, phys),
        }
    }

    /// `krealloc()`: resize keeping the first `min(old, new)` bytes. In
    /// place when the object already holds `new_size` (a red-zoned object's
    /// tracked size follows); else a new allocation, copy, and `kfree`.
    /// `krealloc(NULL or ZERO_SIZE_PTR, n)` is `kmalloc(n)`;
    /// `krealloc(p, 0)` frees `p` and returns [`ZERO_SIZE_PTR`]. On failure
    /// the old allocation is untouched.
    pub fn krealloc<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        addr: u64,
        new_size: usize,
        gfp: GfpFlags,
    ) -> Result<u64, SlabError> {
        if addr <= ZERO_SIZE_PTR {
            return self.kmalloc(mem, pages, new_size, gfp);
        }
        let ks = self.ksize(addr).ok_or(SlabError::Invalid)?;
        if new_size == 0 {
            let _ = self.kfree(mem, pages, addr);
            return Ok(ZERO_SIZE_PTR);
        }
        let old = self.tracked_size(mem, addr).unwrap_or(ks);
        if new_size <= ks {
            if gfp.contains(GfpFlags::ZERO) && new_size > old {
                mem.fill(addr + old as u64, new_size - old, 0);
            }
            self.set_tracked_size(mem, addr, new_size);
            return Ok(addr);
        }
        let new = self.kmalloc(mem, pages, new_size, gfp)?;
        mem.copy(new, addr, old.min(new_size));
        let _ = self.kfree(mem, pages, addr);
        Ok(new)
    }
}

#[cfg(test)]
mod tests;
