//! The Contiguous Memory Allocator (cf. `mm/cma.c` and
//! `alloc_contig_range()` in `mm/page_alloc.c`).
//!
//! `cma=SIZE[@BASE]` sets aside a pageblock-aligned area at boot. Its
//! pageblocks are `MIGRATE_CMA` and its pages go to the buddy allocator
//! (managed memory): *lent* to movable allocations, which alone may use
//! them ([`crate::page_alloc::AllocFlags::cma`]) and count them as free.
//! [`MemoryManager::cma_alloc`] takes a contiguous, aligned run back:
//! it isolates the run's pageblocks (`start_isolate_page_range()`: their
//! free pages move to the Isolate lists, which nothing allocates from),
//! migrates every movable page in the run elsewhere, takes the now-free
//! pages, and gives the pageblocks back to CMA. A run holding a page that
//! cannot move (pinned, unmovable, already handed out by CMA) is skipped
//! for the next aligned candidate. [`MemoryManager::cma_release`] frees
//! the run back to the CMA lists.
//!
//! Which pages of the area `cma_alloc` handed out is read from `mem_map`
//! (their owner is [`OwnerTag::CMA`]), where Linux keeps a bitmap.

use core::fmt;

use crate::compaction::MigrateOwner;
use crate::gfp::GfpFlags;
use crate::manager::MemoryManager;
use crate::page::OwnerTag;
use crate::page_alloc::{InitError, PageAlloc};
use crate::platform::Platform;
use crate::types::{Order, Pfn};
use crate::vmstat::VmEvent;
use crate::zone::{MigrateType, PAGEBLOCK_NR_PAGES};

/// Largest alignment `cma_alloc` honours, as an order (cf.
/// `CONFIG_CMA_ALIGNMENT`, default 8: 1 MiB).
pub const CMA_ALIGNMENT: u8 = 8;

/// The CMA area (cf. `struct cma`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmaArea {
    /// First frame (pageblock-aligned).
    pub base: Pfn,
    /// Frames (whole pageblocks).
    pub count: u64,
}

impl CmaArea {
    /// One past the last frame.
    pub const fn end(&self) -> Pfn {
        Pfn(self.base.0 + self.count)
    }
}

/// Why CMA refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmaError {
    /// No CMA area (no `cma=` on the command line).
    NoArea,
    /// 0 pages, or more than the area has.
    BadSize {
        /// Pages asked for.
        count: u64,
    },
    /// No aligned run of the area could be emptied (cf. `cma_alloc()`
    /// returning NULL after `-EBUSY` from every range).
    Busy {
        /// Pages asked for.
        count: u64,
    },
    /// `cma_release()` of frames that are not a CMA allocation.
    NotAllocated {
        /// The first such frame.
        pfn: Pfn,
    },
}

impl fmt::Display for CmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmaError::NoArea => write!(f, "no CMA area (boot with cma=SIZE)"),
            CmaError::BadSize { count } => {
                write!(f, "cannot allocate {count} pages from the CMA area")
            }
            CmaError::Busy { count } => write!(
                f,
                "cma_alloc: no {count}-page run of the area could be freed (pinned or unmovable pages)"
            ),
            CmaError::NotAllocated { pfn } => write!(f, "pfn {pfn} is not a CMA allocation"),
        }
    }
}

impl PageAlloc<'_> {
    /// cf. `cma_init_reserved_areas()` → `init_cma_reserved_pageblock()`:
    /// the reserved (memblock) range `[base, base + count)`, whole
    /// `MAX_ORDER` blocks (4 MiB, so that isolating part of the area never
    /// splits a free block at its edge) in one zone, becomes the CMA area — its pageblocks
    /// `MIGRATE_CMA`, its pages freed to the CMA lists.
    pub fn activate_cma(&mut self, base: Pfn, count: u64) -> Result<CmaArea, InitError> {
        let end = Pfn(base.0 + count);
        let bad = InitError::BadRange { start: base, end };
        if count == 0
            || !base.0.is_multiple_of(1 << crate::types::MAX_ORDER)
            || !count.is_multiple_of(1 << crate::types::MAX_ORDER)
            || self.cma.is_some()
        {
            return Err(bad);
        }
        let zt = self.zone_of(base).ok_or(bad)?;
        if self.zone_of(Pfn(end.0 - 1)) != Some(zt) {
            return Err(bad);
        }
        let mut pfn = base.0;
        while pfn < end.0 {
            self.set_pageblock_migratetype(Pfn(pfn), MigrateType::Cma);
            pfn += PAGEBLOCK_NR_PAGES;
        }
        self.free_bootmem(base, end)?;
        self.zones[zt.index()].cma_pages += count;
        self.refresh_fast_paths(); // a zone with CMA pages counts them
        let area = CmaArea { base, count };
        self.cma = Some(area);
        Ok(area)
    }

    /// The CMA area, if any.
    pub fn cma_area(&self) -> Option<CmaArea> {
        self.cma
    }

    /// Pages `cma_alloc` has handed out.
    pub fn cma_used_pages(&self) -> u64 {
        self.cma.map_or(0, |a| {
            (a.base.0..a.end().0)
                .filter(|&p| self.mem_map[p as usize].owner == OwnerTag::CMA)
                .count() as u64
        })
    }

    /// Free pages of the CMA area (`CmaFree`).
    pub fn cma_free_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.nr_free_cma).sum()
    }

    /// cf. `set_migratetype_isolate()` for each pageblock of `[start, end)`
    /// (or back to CMA): move the free blocks first, then change the type,
    /// so the CMA free count follows the lists.
    fn set_range_type(&mut self, start: u64, end: u64, mt: MigrateType) {
        let mut pb = start;
        while pb < end {
            let _ = self.move_freepages_block(Pfn(pb), mt);
            self.set_pageblock_migratetype(Pfn(pb), mt);
            pb += PAGEBLOCK_NR_PAGES;
        }
    }
}

impl<P: Platform> MemoryManager<'_, P> {
    /// `cma_alloc(cma, count, align)`: `count` contiguous frames of the
    /// CMA area, aligned to `2^align` frames (at most [`CMA_ALIGNMENT`]),
    /// each an order-0 page owned by [`OwnerTag::CMA`]; movable pages in
    /// the way are migrated (`owner` repoints its own).
    pub fn cma_alloc(
        &self,
        count: u64,
        align: u8,
        owner: &mut dyn MigrateOwner,
    ) -> Result<Pfn, CmaError> {
        let area = self.lock().cma_area().ok_or(CmaError::NoArea)?;
        if count == 0 || count > area.count {
            return Err(CmaError::BadSize { count });
        }
        let step = 1u64 << align.min(CMA_ALIGNMENT);
        let mut start = area.base.0.next_multiple_of(step);
        while start + count <= area.end().0 {
            // Skip runs holding pages CMA already handed out.
            let taken = {
                let pa = self.lock();
                (start..start + count)
                    .rev()
                    .find(|&p| pa.page(Pfn(p)).is_some_and(|pg| pg.owner == OwnerTag::CMA))
            };
            if let Some(p) = taken {
                start = (p + 1).next_multiple_of(step);
                continue;
            }
            if self.alloc_contig_range(start, start + count, owner) {
                return Ok(Pfn(start));
            }
            start += step;
        }
        Err(CmaError::Busy { count })
    }

    /// cf. `alloc_contig_range(start, end, MIGRATE_CMA)`: isolate, migrate,
    /// take. `false` (the area as it was) if a page cannot move.
    fn alloc_contig_range(&self, start: u64, end: u64, owner: &mut dyn MigrateOwner) -> bool {
        // Isolate whole MAX_ORDER blocks (cf. start_isolate_page_range()'s
        // alignment): a free block must not straddle the isolated range's
        // edge, or half of it would be moved to the Isolate list and left
        // there when the range goes back to CMA.
        let block = 1u64 << crate::types::MAX_ORDER;
        let pb_start = start & !(block - 1);
        let pb_end = end.next_multiple_of(block);
        {
            let mut pa = self.lock();
            pa.set_range_type(pb_start, pb_end, MigrateType::Isolate);
            // Free blocks of the range waiting on per-CPU lists go to the
            // Isolate lists now; later frees there skip the lists (cf. the
            // drain_all_pages() in alloc_contig_range()).
            pa.drain_all_pages();
        }
        let ok = self.migrate_range(start, end, owner);
        let mut pa = self.lock();
        if ok {
            for p in start..end {
                // Every frame is free now (migrated away, on the Isolate
                // lists): take each as an order-0 CMA page.
                if pa
                    .take_page_off_buddy(Pfn(p), Order::ZERO, OwnerTag::CMA)
                    .is_err()
                {
                    // Unreachable: migrate_range checked every frame.
                    for q in start..p {
                        let _ = pa.free_pages(Pfn(q), Order::ZERO);
                    }
                    pa.set_range_type(pb_start, pb_end, MigrateType::Cma);
                    return false;
                }
            }
        }
        pa.set_range_type(pb_start, pb_end, MigrateType::Cma);
        ok
    }

    /// Moves every allocated page of `[start, end)` out of it; `false` at
    /// the first one that cannot move (not movable, pinned, or no target).
    fn migrate_range(&self, start: u64, end: u64, owner: &mut dyn MigrateOwner) -> bool {
        let mut pfn = start;
        while pfn < end {
            let (free_run, movable, highmem) = {
                let pa = self.lock();
                let Some(p) = pa.page(Pfn(pfn)) else {
                    return false;
                };
                if p.is_buddy() {
                    (1u64 << p.order, false, false)
                } else if !p.is_reserved() && pa.compound_head(Pfn(pfn)).is_none() {
                    (1, false, false) // inside a free block (or on a per-CPU list)
                } else {
                    (0, pa.migratable_page(Pfn(pfn)), p.is_highmem())
                }
            };
            if free_run > 0 {
                // A free block that began below `pfn` may not be aligned
                // to it: step to its end.
                let head = pfn;
                pfn = (head | (free_run - 1)) + 1;
                continue;
            }
            if !movable || !owner.can_migrate(Pfn(pfn)) {
                self.lock().vm_events_mut().inc(VmEvent::PgMigrateFail);
                return false;
            }
            // cf. alloc_migration_target(): anywhere but the isolated
            // range (its pageblocks are off every allocation path).
            let gfp = if highmem {
                GfpFlags::GFP_HIGHUSER_MOVABLE
            } else {
                GfpFlags::GFP_USER.union(GfpFlags::MOVABLE)
            };
            let Ok(dst) = self
                .lock()
                .alloc_pages(gfp, Order::ZERO, OwnerTag::COMPACTION)
            else {
                self.lock().vm_events_mut().inc(VmEvent::PgMigrateFail);
                return false;
            };
            crate::compaction::copy_frame(self.platform(), Pfn(pfn), dst);
            owner.migrated(&[(Pfn(pfn), dst)]);
            let mut pa = self.lock();
            pa.finish_migration(Pfn(pfn), dst);
            pa.vm_events_mut().inc(VmEvent::PgMigrateSuccess);
            pfn += 1;
        }
        true
    }

    /// `cma_release(cma, pages, count)`: frees a run `cma_alloc` returned.
    /// Refused, with nothing freed, unless every frame is a CMA page.
    pub fn cma_release(&self, pfn: Pfn, count: u64) -> Result<(), CmaError> {
        let mut pa = self.lock();
        if let Some(bad) = (pfn.0..pfn.0 + count).find(|&p| {
            pa.page(Pfn(p))
                .is_none_or(|pg| !pg.is_head() || pg.owner != OwnerTag::CMA)
        }) {
            return Err(CmaError::NotAllocated { pfn: Pfn(bad) });
        }
        for p in pfn.0..pfn.0 + count {
            let _ = pa.free_pages(Pfn(p), Order::ZERO);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
