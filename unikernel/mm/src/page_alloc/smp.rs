//! The per-CPU fast paths: order ≤ 3 allocations and frees that touch only
//! the running CPU's lists, with no lock another CPU takes in the common
//! case (cf. `rmqueue_pcplist()` and `free_unref_page()` under
//! `pcp_spin_lock()` in Linux 6.1, which take `zone->lock` only to refill
//! or trim a list).
//!
//! The allocator sits in a [`crate::sync::BrLock`]: one flag per CPU.
//! [`PageAlloc::alloc_pcp_cpu`] and [`PageAlloc::free_pcp_cpu`] run with
//! only their CPU's flag held, next to the same calls on other CPUs; every
//! other path — refill (`rmqueue_bulk`), trim (`free_pcppages_bulk`),
//! drains, the buddy allocator itself, compaction, the views — takes the
//! exclusive side (all flags: `zone->lock` with every `pcp->lock`).
//!
//! What a fast path may touch, and why it is its own:
//! * its CPU's [`PerCpuPages`] for each zone and its [`VmDiff`] — slots no
//!   other CPU reads while the flag is held ([`crate::sync::PcpCell`]);
//! * the descriptors of blocks on its own lists, and of the block its
//!   caller hands back or receives — owned, as Linux's `struct page` is by
//!   whoever holds the page, through raw pointers
//!   ([`super::memmap::MemMap::ptr`]);
//! * `flags` atomically: a pageblock's migrate type is read from its first
//!   frame's flags by any CPU freeing a page of that pageblock, while that
//!   frame may be one this CPU is handing out;
//! * zone fields (watermarks, free counts) read-only: only the exclusive
//!   side writes them.
//!
//! Anything unusual — an empty or full list, a watermark to check fully,
//! fault injection, a frame on the LRU, in the heap's reserve, not yet
//! initialised, an isolated pageblock, a misuse to refuse — returns to the
//! caller, which takes the exclusive side and runs the general path.

#![allow(unsafe_code)]

#[cfg(test)]
mod tests;

use core::sync::atomic::Ordering::Relaxed;

use super::PageAlloc;
use super::pcp::{PerCpuPages, nr_pcp_free, order_to_pindex, pcp_allowed_order};
use crate::gfp::GfpFlags;
use crate::page::{NIL, OwnerTag, PageFlags};
use crate::types::{Order, Pfn};
use crate::vmstat::VmEvent;
use crate::zone::{FreeList, MIGRATE_PCPTYPES, MigrateType, NR_ZONES};

/// Orders the fast paths serve (0..=`PAGE_ALLOC_COSTLY_ORDER`).
const PCP_ORDERS: usize = super::pcp::PAGE_ALLOC_COSTLY_ORDER + 1;

/// What one CPU's fast paths counted since the last fold (cf.
/// `vm_stat_diff` / the per-CPU `vm_event_states`): `pgalloc_<zone>`,
/// `pgfree`, and the blocks for [`crate::vmstat::AllocCounters`].
/// [`PageAlloc::fold_vm_diffs`] adds them to the global counters under
/// the exclusive lock, which every reader of the counters holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmDiff {
    /// Pages handed out per zone.
    pub pgalloc: [u64; NR_ZONES],
    /// Pages freed.
    pub pgfree: u64,
    /// Blocks handed out, by zone and order.
    pub alloc: [[u64; PCP_ORDERS]; NR_ZONES],
    /// Blocks freed, by zone and order.
    pub free: [[u64; PCP_ORDERS]; NR_ZONES],
}

impl VmDiff {
    /// Nothing counted.
    pub const ZERO: VmDiff = VmDiff {
        pgalloc: [0; NR_ZONES],
        pgfree: 0,
        alloc: [[0; PCP_ORDERS]; NR_ZONES],
        free: [[0; PCP_ORDERS]; NR_ZONES],
    };
}

/// What [`PageAlloc::free_pcp_cpu`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeFast {
    /// The block is on this CPU's list.
    Done,
    /// The block is on this CPU's list, which is now over `high`: give
    /// `count` pages back from list `pindex` of zone `zi` under the
    /// exclusive lock ([`PageAlloc::pcp_trim`]).
    Trim {
        /// Zone index.
        zi: usize,
        /// The list the block went on.
        pindex: usize,
        /// Pages to give back.
        count: u32,
    },
    /// Nothing changed: take the exclusive lock and free through
    /// [`PageAlloc::free_pages`], which decides (and refuses misuse).
    Slow,
}

/// Flags the fast free path leaves to the general one.
const FREE_SLOW_FLAGS: PageFlags = PageFlags::BUDDY
    .union(PageFlags::PCP)
    .union(PageFlags::TAIL)
    .union(PageFlags::SLAB)
    .union(PageFlags::LRU)
    .union(PageFlags::RESERVED)
    .union(PageFlags::NOMAP);

impl PageAlloc<'_> {
    /// Adds every CPU's [`VmDiff`] to the event counters and clears it
    /// (cf. `fold_diff()` in `refresh_cpu_vm_stats()`). The lock calls it
    /// before handing out the exclusive side, so readers see exact counts.
    #[inline]
    pub fn fold_vm_diffs(&mut self) {
        for cpu in 0..self.nr_cpus {
            let d = &mut *self.vm_diff[cpu];
            if *d == VmDiff::ZERO {
                continue;
            }
            for (zi, n) in d.pgalloc.iter().enumerate() {
                self.vm_events.count_zid(VmEvent::PgAllocDma, zi, *n);
            }
            self.vm_events.count(VmEvent::PgFree, d.pgfree);
            for zi in 0..NR_ZONES {
                for o in 0..PCP_ORDERS {
                    self.alloc_counters.add_alloc(zi, o, d.alloc[zi][o]);
                    self.alloc_counters.add_free(zi, o, d.free[zi][o]);
                }
            }
            *d = VmDiff::ZERO;
        }
    }

    /// [`PageAlloc::alloc_pages`]'s first case on CPU `cpu` without the
    /// exclusive lock: a block popped from `cpu`'s list of the first zone
    /// the request may use, when that zone is above its LOW watermark and
    /// the list is not empty — the same block the general path would hand
    /// out. `None` with nothing changed otherwise.
    ///
    /// # Safety
    /// The caller holds `cpu`'s flag of the [`crate::sync::BrLock`] this
    /// allocator lives in (so no exclusive holder runs and no other caller
    /// uses `cpu`'s slots), and `cpu < NR_CPUS`.
    #[inline]
    pub unsafe fn alloc_pcp_cpu(
        &self,
        cpu: usize,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Option<Pfn> {
        // The same zone, watermark and list as `alloc_pages_pcp_fast`:
        // the zone fields are written only by the exclusive side, so they
        // hold still here.
        let (zi, pindex) = self.pcp_fast_target(gfp, order)?;
        let o = order.index();
        let zone = &self.zones[zi];
        // SAFETY: the caller holds `cpu`'s flag: this slot is ours alone.
        let pcp: &mut PerCpuPages = unsafe { zone.pcp[cpu].slot_mut() };
        if pcp.lists[pindex].head == NIL {
            return None;
        }
        pcp.free_factor >>= 1;
        // SAFETY: the list is this CPU's, so are its blocks' descriptors.
        let pfn = unsafe { self.list_pop_head_raw(&mut pcp.lists[pindex]) };
        pcp.count -= 1 << o;
        // SAFETY: our slot, as above.
        let diff = unsafe { self.vm_diff[cpu].slot_mut() };
        diff.pgalloc[zi] += 1 << o;
        diff.alloc[zi][o] += 1;
        // cf. prep_new_page(): the block is now the caller's.
        // SAFETY: `pfn` came off our list: its descriptor is ours; flags
        // are accessed atomically (see the module docs).
        unsafe {
            let i = pfn as usize;
            let f = self.mem_map.flags_atomic(i);
            f.fetch_and(
                !(PageFlags::BUDDY
                    .union(PageFlags::PCP)
                    .union(PageFlags::MOVABLE))
                .0,
                Relaxed,
            );
            f.fetch_or(PageFlags::HEAD.0, Relaxed);
            let p = self.mem_map.ptr(i);
            (*p).order = order.get();
            (*p).refcount = 1;
            (*p).owner = owner;
            (*p).prev = NIL;
            (*p).next = NIL;
            // cf. prep_compound_page(), for a `__GFP_COMP` block.
            if o > 0 && gfp.contains(GfpFlags::COMP) {
                f.fetch_or(PageFlags::COMPOUND.0, Relaxed);
                for t in i + 1..i + (1 << o) {
                    self.mem_map.flags_atomic(t).fetch_or(PageFlags::TAIL.0, Relaxed);
                    (*self.mem_map.ptr(t)).owner = owner;
                }
            }
        }
        Some(Pfn(u64::from(pfn)))
    }

    /// [`PageAlloc::free_pages`] of an order ≤ 3 block on CPU `cpu`
    /// without the exclusive lock: the block goes on `cpu`'s list (cf.
    /// `free_unref_page()`). Only a plain allocated head of exactly `order`
    /// takes this path; anything else is [`FreeFast::Slow`] with nothing
    /// changed.
    ///
    /// # Safety
    /// As for [`PageAlloc::alloc_pcp_cpu`]; and the caller owns the block
    /// (no other CPU frees or reads it meanwhile), as any caller of
    /// `free_pages` must.
    #[inline]
    pub unsafe fn free_pcp_cpu(&self, cpu: usize, pfn: Pfn, order: Order) -> FreeFast {
        let o = order.index();
        if !pcp_allowed_order(o)
            || pfn >= self.layout.max_pfn
            || self.early_page_uninitialised(pfn)
            || self.reserve.as_ref().is_some_and(|r| r.contains(pfn))
        {
            return FreeFast::Slow;
        }
        let i = pfn.index();
        // SAFETY: in bounds (checked against max_pfn); flags atomically.
        let flags = PageFlags(unsafe { self.mem_map.flags_atomic(i) }.load(Relaxed));
        if !flags.contains(PageFlags::HEAD) || flags.intersects(FREE_SLOW_FLAGS) {
            return FreeFast::Slow;
        }
        let p = self.mem_map.ptr(i);
        // SAFETY: the caller owns the block, so its head descriptor.
        let (head_order, owner, zi) = unsafe { ((*p).order, (*p).owner, usize::from((*p).zone)) };
        if usize::from(head_order) != o || owner == OwnerTag::RESERVE || zi >= NR_ZONES {
            return FreeFast::Slow;
        }
        let zone = &self.zones[zi];
        // SAFETY: the caller holds `cpu`'s flag.
        let pcp: &mut PerCpuPages = unsafe { zone.pcp[cpu].slot_mut() };
        let mt = self.pageblock_migratetype_atomic(pfn);
        if pcp.high == 0 || mt == MigrateType::Isolate {
            return FreeFast::Slow;
        }
        // SAFETY: our slot.
        let diff = unsafe { self.vm_diff[cpu].slot_mut() };
        diff.pgfree += 1 << o;
        diff.free[zi][o] += 1;
        // cf. free_pages_prepare(): the descriptors are clean again, tails
        // included for a compound block.
        // SAFETY: the caller's block; flags atomically.
        unsafe {
            let f = self.mem_map.flags_atomic(i);
            f.fetch_and(
                !(PageFlags::HEAD
                    .union(PageFlags::COMPOUND)
                    .union(PageFlags::SLAB)
                    .union(PageFlags::MOVABLE))
                .0,
                Relaxed,
            );
            (*p).refcount = 0;
            (*p).owner = OwnerTag::NONE;
            if flags.contains(PageFlags::COMPOUND) {
                for t in i + 1..i + (1 << o) {
                    self.mem_map
                        .flags_atomic(t)
                        .fetch_and(!PageFlags::TAIL.union(PageFlags::SLAB).0, Relaxed);
                    (*self.mem_map.ptr(t)).owner = OwnerTag::NONE;
                }
            }
            // cf. free_unref_page_commit(): on the list, marked PCP.
            f.fetch_or(PageFlags::PCP.0, Relaxed);
            (*p).order = o as u8;
        }
        let pcp_mt = if mt.index() >= MIGRATE_PCPTYPES {
            MigrateType::Movable
        } else {
            mt
        };
        let pindex = order_to_pindex(pcp_mt, o);
        // SAFETY: our list; `pfn` is the caller's block, now on it.
        unsafe { self.list_add_head_raw(&mut pcp.lists[pindex], pfn.0 as u32) };
        pcp.count += 1 << o;
        let free_high = pcp.free_factor > 0 && o > 0;
        let high = if free_high { 0 } else { pcp.high };
        if pcp.count >= high {
            let count = nr_pcp_free(pcp, high, free_high);
            return FreeFast::Trim { zi, pindex, count };
        }
        FreeFast::Done
    }

    /// Gives `count` pages back from this CPU's lists of zone `zi`,
    /// starting at list `pindex`, after [`FreeFast::Trim`] (cf. the
    /// `free_pcppages_bulk()` call in `free_unref_page_commit()`, done
    /// under `zone->lock`). Fewer if a drain got there first.
    pub fn pcp_trim(&mut self, zi: usize, pindex: usize, count: u32) {
        let cpu = self.this_cpu();
        if count > 0 && self.zones[zi].pcp[cpu].count > 0 {
            self.free_pcppages_bulk(zi, cpu, count, pindex);
        }
    }

    /// The pageblock's migrate type, read atomically (cf.
    /// `get_pfnblock_flags_mask()`'s `READ_ONCE`).
    fn pageblock_migratetype_atomic(&self, pfn: Pfn) -> MigrateType {
        let first = (pfn.0 & !(crate::zone::PAGEBLOCK_NR_PAGES - 1)) as usize;
        // SAFETY: `first` ≤ `pfn` < max_pfn ≤ len; flags atomically.
        let bits = unsafe { self.mem_map.flags_atomic(first) }.load(Relaxed);
        let p = crate::page::Page {
            flags: PageFlags(bits),
            ..crate::page::Page::new_reserved()
        };
        MigrateType::from_index(usize::from(p.pageblock_migratetype()))
            .unwrap_or(MigrateType::Movable)
    }

    /// Unlinks the first block of a non-empty per-CPU list.
    ///
    /// # Safety
    /// The list and its blocks' descriptors are the caller's alone.
    #[inline(always)]
    unsafe fn list_pop_head_raw(&self, list: &mut FreeList) -> u32 {
        let pfn = list.head;
        // SAFETY: the caller's list: its members' links are ours.
        unsafe {
            let p = self.mem_map.ptr(pfn as usize);
            let next = (*p).next;
            (*p).next = NIL;
            list.head = next;
            if next == NIL {
                list.tail = NIL;
            } else {
                (*self.mem_map.ptr(next as usize)).prev = NIL;
            }
        }
        pfn
    }

    /// Links `pfn` at the head of a per-CPU list.
    ///
    /// # Safety
    /// The list, its blocks and `pfn`'s descriptor are the caller's alone.
    #[inline(always)]
    unsafe fn list_add_head_raw(&self, list: &mut FreeList, pfn: u32) {
        let next = list.head;
        // SAFETY: the caller's list and block.
        unsafe {
            let p = self.mem_map.ptr(pfn as usize);
            (*p).prev = NIL;
            (*p).next = next;
            if next == NIL {
                list.tail = pfn;
            } else {
                (*self.mem_map.ptr(next as usize)).prev = pfn;
            }
        }
        list.head = pfn;
    }
}

