//! The kernel heap's guaranteed reserve: one naturally aligned buddy block
//! carved out at boot that only `__GFP_MEMALLOC` requests may use.
//!
//! Why: the kernel's `#[global_allocator]` is kmalloc, and a failed heap
//! allocation aborts the kernel. API requests may drain every zone below
//! MIN with `GFP_ATOMIC`; after that even the heap's atomic fallback finds
//! nothing. Linux answers with `ALLOC_NO_WATERMARKS` (`PF_MEMALLOC` /
//! `__GFP_MEMALLOC`, cf. `__gfp_pfmemalloc_flags()`): such a request may
//! take the last free page, ignoring the watermarks — but so may anyone
//! else who got there first, so nothing is guaranteed. Ours is a separate
//! pool, stronger than Linux's: frames no other request can see, taken from
//! the buddy allocator once ([`PageAlloc::setup_kernel_reserve`]) and served
//! only after both watermark passes of `PageAlloc::alloc_pages` failed.
//!
//! Shape: one block of order R in the highest populated lowmem zone (the
//! heap needs the direct map), R from [`kernel_reserve_pages`]. Every frame
//! in the pool is an allocated order-0 block owned by `reserve` (HEAD,
//! refcount 1), so the buddy invariants hold unchanged and `free_pages`
//! refuses such a frame. Handing out order k marks a first-fit, naturally
//! aligned run exactly as `prep_new_page()` does, with the caller's owner;
//! freeing it (through the ordinary `PageAlloc::free_pages`) marks the run
//! back. A bitmap of at most 1024 bits says which frames are handed out.

use core::fmt;

use crate::gfp::GfpFlags;
use crate::page::{NIL, OwnerTag, PageFlags};
use crate::page_alloc::PageAlloc;
use crate::types::{MAX_ORDER, Order, Pfn};
use crate::vmstat::VmEvent;
use crate::zone::{MigrateType, ZoneType};

/// Smallest reserve, in pages (256 KiB).
pub const KERNEL_RESERVE_MIN_PAGES: u64 = 64;
/// Largest reserve, in pages: one `MAX_ORDER` block (4 MiB).
pub const KERNEL_RESERVE_MAX_PAGES: u64 = 1 << MAX_ORDER;
/// Words of the in-use bitmap.
const BITMAP_WORDS: usize = (KERNEL_RESERVE_MAX_PAGES / 64) as usize;

/// Reserve size for `lowmem_managed` managed lowmem pages: 1/128 of them,
/// clamped to 64..=1024 pages and rounded up to a power of two (one buddy
/// block): 256 KiB for a 16 MiB guest, 4 MiB from 512 MiB of lowmem up.
pub const fn kernel_reserve_pages(lowmem_managed: u64) -> u64 {
    let pages = lowmem_managed / 128;
    let pages = if pages < KERNEL_RESERVE_MIN_PAGES {
        KERNEL_RESERVE_MIN_PAGES
    } else if pages > KERNEL_RESERVE_MAX_PAGES {
        KERNEL_RESERVE_MAX_PAGES
    } else {
        pages
    };
    pages.next_power_of_two()
}

/// Why [`PageAlloc::setup_kernel_reserve`] carved nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReserveError {
    /// The reserve exists already (it is carved once, at boot).
    AlreadySetUp,
    /// No lowmem zone has managed pages.
    NoLowmem,
    /// The chosen zone has no free block at all, not even order 0.
    NoMemory {
        /// The zone tried.
        zone: ZoneType,
    },
}

impl fmt::Display for ReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReserveError::AlreadySetUp => f.write_str("kernel reserve already set up"),
            ReserveError::NoLowmem => f.write_str("no lowmem zone to hold the kernel reserve"),
            ReserveError::NoMemory { zone } => {
                write!(f, "no free block in {} for the kernel reserve", zone.name())
            }
        }
    }
}

/// What the reserve holds and has done, for logs and the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReserveStats {
    /// The zone of the block.
    pub zone: ZoneType,
    /// First frame of the block.
    pub start_pfn: Pfn,
    /// Frames in the block (a power of two).
    pub nr_pages: u64,
    /// Frames [`kernel_reserve_pages`] asked for at boot; more than
    /// `nr_pages` if only a smaller block was free.
    pub wanted_pages: u64,
    /// Frames in the pool now, not handed out.
    pub free_pages: u64,
    /// Low-water mark of `free_pages` since boot.
    pub min_free_pages: u64,
    /// Requests served from the reserve.
    pub allocations: u64,
    /// `__GFP_MEMALLOC` requests the reserve could not serve (too big, no
    /// aligned run free, or a zone the request does not allow).
    pub failures: u64,
}

/// The pool's bookkeeping; the frames' state lives in `mem_map`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelReserve {
    zone: ZoneType,
    start_pfn: Pfn,
    order: Order,
    wanted_pages: u64,
    /// Bit `i` set: frame `start_pfn + i` is handed out.
    in_use: [u64; BITMAP_WORDS],
    free_pages: u64,
    min_free_pages: u64,
    allocations: u64,
    failures: u64,
    /// After boot the heap grows into the reserve before the zones (see
    /// [`PageAlloc::alloc_heap_pages`]).
    heap_first: bool,
}

impl KernelReserve {
    fn new(zone: ZoneType, start_pfn: Pfn, order: Order, wanted_pages: u64) -> Self {
        KernelReserve {
            zone,
            start_pfn,
            order,
            wanted_pages,
            in_use: [0; BITMAP_WORDS],
            free_pages: order.nr_pages(),
            min_free_pages: order.nr_pages(),
            allocations: 0,
            failures: 0,
            heap_first: false,
        }
    }

    /// Frames in the block.
    pub const fn nr_pages(&self) -> u64 {
        self.order.nr_pages()
    }

    /// Whether `pfn` lies in the block.
    pub const fn contains(&self, pfn: Pfn) -> bool {
        pfn.0 >= self.start_pfn.0 && pfn.0 - self.start_pfn.0 < self.nr_pages()
    }

    /// Whether `pfn` (in the block) is handed out.
    pub fn is_handed_out(&self, pfn: Pfn) -> bool {
        self.contains(pfn) && {
            let i = (pfn.0 - self.start_pfn.0) as usize;
            self.in_use[i / 64] & (1 << (i % 64)) != 0
        }
    }

    /// The counters.
    pub const fn stats(&self) -> ReserveStats {
        ReserveStats {
            zone: self.zone,
            start_pfn: self.start_pfn,
            nr_pages: self.nr_pages(),
            wanted_pages: self.wanted_pages,
            free_pages: self.free_pages,
            min_free_pages: self.min_free_pages,
            allocations: self.allocations,
            failures: self.failures,
        }
    }

    /// Word index and mask of a run of `n` ≤ 64 frames from `first`
    /// (`first` a multiple of `n`: the run never crosses a word).
    fn word_mask(first: usize, n: usize) -> (usize, u64) {
        let mask = if n >= 64 {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << (first % 64)
        };
        (first / 64, mask)
    }

    /// Whether the naturally aligned run `[first, first + n)` is all in
    /// the pool.
    fn run_is_free(&self, first: usize, n: usize) -> bool {
        if n >= 64 {
            self.in_use[first / 64..(first + n) / 64]
                .iter()
                .all(|&w| w == 0)
        } else {
            let (w, mask) = Self::word_mask(first, n);
            self.in_use[w] & mask == 0
        }
    }

    /// Set or clear the bits of the naturally aligned run.
    fn mark_run(&mut self, first: usize, n: usize, handed_out: bool) {
        if n >= 64 {
            let fill = if handed_out { u64::MAX } else { 0 };
            self.in_use[first / 64..(first + n) / 64].fill(fill);
        } else {
            let (w, mask) = Self::word_mask(first, n);
            if handed_out {
                self.in_use[w] |= mask;
            } else {
                self.in_use[w] &= !mask;
            }
        }
    }

    /// First-fit: the lowest naturally aligned run of `2^order` pool
    /// frames, as an offset from `start_pfn`.
    fn find_free(&self, order: Order) -> Option<usize> {
        if order > self.order {
            return None;
        }
        let n = order.nr_pages() as usize;
        (0..self.nr_pages() as usize)
            .step_by(n)
            .find(|&first| self.run_is_free(first, n))
    }
}

impl PageAlloc<'_> {
    /// Carve the kernel heap's reserve (see the module docs). Call once at
    /// boot, right after [`PageAlloc::setup_watermarks`].
    ///
    /// The block is [`kernel_reserve_pages`] of the managed lowmem, taken
    /// with `__rmqueue_smallest()` from the highest populated lowmem zone
    /// (Normal, else DMA32, else DMA; never HighMem). If that zone has no
    /// free block so large, the largest smaller order it has is taken
    /// instead; the returned [`ReserveStats`] then show `nr_pages` below
    /// `wanted_pages`.
    pub fn setup_kernel_reserve(&mut self) -> Result<ReserveStats, ReserveError> {
        if self.reserve.is_some() {
            return Err(ReserveError::AlreadySetUp);
        }
        let zone = [ZoneType::Normal, ZoneType::Dma32, ZoneType::Dma]
            .into_iter()
            .find(|zt| self.zones[zt.index()].is_populated())
            .ok_or(ReserveError::NoLowmem)?;
        let wanted_pages = kernel_reserve_pages(self.lowmem_managed_pages());
        let wanted = Order::new(wanted_pages.trailing_zeros() as u8).unwrap_or(Order::MAX);
        for o in (0..=wanted.get()).rev() {
            let order = Order::new(o).unwrap_or(Order::ZERO);
            // Kernel memory: Unmovable, stealing pageblocks as it must.
            if let Some(pfn) = self.rmqueue_mt(zone.index(), order, MigrateType::Unmovable) {
                for i in 0..order.nr_pages() {
                    self.mark_pool_frame(pfn.add(i));
                }
                let reserve = KernelReserve::new(zone, pfn, order, wanted_pages);
                self.reserve = Some(reserve);
                self.refresh_fast_paths(); // its range leaves the fast free path
                return Ok(reserve.stats());
            }
        }
        Err(ReserveError::NoMemory { zone })
    }

    /// The reserve's counters, `None` before it is set up.
    pub fn kernel_reserve(&self) -> Option<ReserveStats> {
        self.reserve.as_ref().map(KernelReserve::stats)
    }

    /// Whether `pfn` lies in the reserve's block (handed out or not).
    pub fn in_kernel_reserve(&self, pfn: Pfn) -> bool {
        self.reserve.as_ref().is_some_and(|r| r.contains(pfn))
    }

    /// From now on the kernel heap grows into the reserve first (the
    /// kernel calls it once its boot-time allocations are in place, with
    /// `mark_boot_complete`). Whatever the API then does to the zones, the
    /// heap's later pages — its answers, a connection's buffers, a table of
    /// thousands of handles — come from the reserve while it has room, so
    /// they never take or split a block the buddy allocator had at boot,
    /// and `POST /api/reset` finds the zones as boot left them. The zones
    /// are the fallback, then (as before) the reserve is the last resort.
    pub fn set_heap_reserve_first(&mut self, on: bool) {
        if let Some(r) = self.reserve.as_mut() {
            r.heap_first = on;
        }
    }

    /// A block for the kernel heap (`gfp` carries `__GFP_MEMALLOC`):
    /// from the reserve first once [`PageAlloc::set_heap_reserve_first`]
    /// is on, else (or when the reserve has no room) as
    /// [`PageAlloc::alloc_pages`] — which itself falls back to the reserve.
    pub fn alloc_heap_pages(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Result<Pfn, crate::page_alloc::AllocError> {
        let first = self
            .reserve
            .as_ref()
            .is_some_and(|r| r.heap_first && r.free_pages >= order.nr_pages());
        if first && gfp.contains(GfpFlags::MEMALLOC) && !gfp.contains(GfpFlags::NOMEMALLOC) {
            let failures = self.reserve.as_ref().map_or(0, |r| r.failures);
            if let Some(pfn) = self.alloc_from_reserve(gfp, order, owner) {
                return Ok(pfn);
            }
            // No room of that order: not a failure of the reserve yet.
            if let Some(r) = self.reserve.as_mut() {
                r.failures = failures;
            }
        }
        self.alloc_pages(gfp, order, owner)
    }

    /// Serve a `__GFP_MEMALLOC` request that both watermark passes refused
    /// (cf. the `ALLOC_NO_WATERMARKS` retry in `__alloc_pages_slowpath()`).
    /// The reserve's zone must be one `gfp` allows (a `GFP_DMA` request
    /// cannot use a DMA32 reserve). Counts a failure when it cannot serve.
    pub(crate) fn alloc_from_reserve(
        &mut self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Option<Pfn> {
        let r = self.reserve.as_mut()?;
        let first = if r.zone.index() <= gfp.gfp_zone().index() {
            r.find_free(order)
        } else {
            None
        };
        let Some(first) = first else {
            r.failures += 1;
            return None;
        };
        let n = order.nr_pages();
        r.mark_run(first, n as usize, true);
        r.free_pages -= n;
        r.min_free_pages = r.min_free_pages.min(r.free_pages);
        r.allocations += 1;
        let pfn = r.start_pfn.add(first as u64);
        // An allocation like any other: pgalloc_<zone> of the reserve's zone.
        self.vm_events
            .count_zid(VmEvent::PgAllocDma, r.zone.index(), n);
        for p in &mut self.mem_map[pfn.index()..pfn.index() + n as usize] {
            // Every pool frame is an order-0 head: back to a plain frame.
            p.flags.remove(PageFlags::HEAD);
            p.refcount = 0;
            p.owner = OwnerTag::NONE;
        }
        self.prep_new_page(pfn, order, owner);
        if order.get() > 0 && gfp.contains(GfpFlags::COMP) {
            self.prep_compound_page(pfn, order);
        }
        Some(pfn)
    }

    /// Take back a block the reserve handed out; `false` (nothing done) if
    /// `pfn` is not in the reserve. The caller (`free_pages`) has checked
    /// that `pfn` heads an allocated block of `order` that is no pool frame.
    pub(crate) fn free_to_reserve(&mut self, pfn: Pfn, order: Order) -> bool {
        let Some(r) = self.reserve.as_mut() else {
            return false;
        };
        if !r.contains(pfn) {
            return false;
        }
        let first = (pfn.0 - r.start_pfn.0) as usize;
        let n = order.nr_pages();
        debug_assert!(
            (0..n).all(|i| r.is_handed_out(pfn.add(i))),
            "reserve frame freed that was not handed out"
        );
        r.mark_run(first, n as usize, false);
        r.free_pages += n;
        for i in 0..n {
            self.mark_pool_frame(pfn.add(i));
        }
        true
    }

    /// A frame in the pool: an allocated order-0 block owned by `reserve`.
    fn mark_pool_frame(&mut self, pfn: Pfn) {
        let p = &mut self.mem_map[pfn.index()];
        p.flags.remove(
            PageFlags::BUDDY
                .union(PageFlags::TAIL)
                .union(PageFlags::SLAB),
        );
        p.flags.insert(PageFlags::HEAD);
        p.order = 0;
        p.refcount = 1;
        p.owner = OwnerTag::RESERVE;
        p.prev = NIL;
        p.next = NIL;
    }

    /// Recount the reserve from `mem_map`: every frame not handed out is a
    /// pool frame (order-0 head, refcount 1, owner `reserve`), every handed
    /// out frame belongs to a block that lies wholly in the reserve and is
    /// no pool frame, and `free_pages` matches the bitmap. `Ok` without a
    /// reserve. For tests and selfchecks, beside `check_invariants`.
    pub fn check_kernel_reserve(&self) -> Result<(), &'static str> {
        let Some(r) = self.reserve.as_ref() else {
            return Ok(());
        };
        let mut free = 0;
        for i in 0..r.nr_pages() {
            let pfn = r.start_pfn.add(i);
            let p = &self.mem_map[pfn.index()];
            let pool = p.is_head()
                && !p.is_tail()
                && p.order == 0
                && p.refcount == 1
                && p.owner == OwnerTag::RESERVE;
            if r.is_handed_out(pfn) {
                if p.owner == OwnerTag::RESERVE {
                    return Err("handed-out reserve frame still owned by the reserve");
                }
                match self.compound_head(pfn) {
                    Some((head, order))
                        if r.contains(head) && r.contains(head.add(order.nr_pages() - 1)) => {}
                    _ => return Err("handed-out reserve frame not in a block inside the reserve"),
                }
            } else {
                if !pool {
                    return Err("reserve pool frame is not an order-0 reserve head");
                }
                free += 1;
            }
        }
        if free != r.free_pages {
            return Err("reserve free_pages does not match its bitmap");
        }
        if r.min_free_pages > r.free_pages {
            return Err("reserve low-water mark above free_pages");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
