//! `zone->lock`: one spin lock per zone for its buddy free lists, so a
//! CPU refilling or trimming its per-CPU lists holds only its own
//! [`crate::sync::BrLock`] flag plus that zone's lock — other CPUs' fast
//! paths, and their refills and trims of other zones, go on meanwhile (cf.
//! `rmqueue_bulk()` and `free_pcppages_bulk()` under
//! `spin_lock_irqsave(&zone->lock)` in Linux 6.1).
//!
//! # Who protects what (cf. the comments of `struct zone` in
//! `include/linux/mmzone.h`)
//!
//! The allocator lives in a `BrLock`. Three ways in:
//! * **exclusive** ([`crate::manager::MemoryManager::lock`]): every CPU's
//!   flag. No shared-side code runs, so the exclusive holder owns all of
//!   [`PageAlloc`] and takes no zone lock (holding every flag excludes
//!   every zone-lock holder, who holds a flag while it holds a zone lock).
//! * **shared, per-CPU** (`alloc_pcp_cpu` / `free_pcp_cpu` in
//!   [`super::smp`]): one CPU's flag; touches only that CPU's slots.
//! * **shared + `zone_lock[zi]`** ([`PageAlloc::pcp_trim_cpu`] and the
//!   refill inside `alloc_pcp_cpu`): one CPU's flag, then zone `zi`'s
//!   lock. Lock order: flag, then one zone lock; never two zone locks,
//!   never a flag while holding a zone lock, so nothing can deadlock.
//!
//! | data | written by | read without a lock by |
//! |---|---|---|
//! | `Zone::free_area[]` (lists, `nr_free`), `free_pages` (`NR_FREE_PAGES`), `nr_free_cma` | `zone_lock[zi]` or exclusive | fast paths' watermark check (racy, atomic loads — as `zone_page_state()`) |
//! | descriptor of a `BUDDY` block of zone `zi`: flags, `order`, `prev`, `next` | `zone_lock[zi]` or exclusive | — (flags: others load atomically, see below) |
//! | `Zone::pcp[cpu]`, `PageAlloc::vm_diff[cpu]` | CPU `cpu` under its flag, or exclusive | — |
//! | descriptor of a block on CPU `cpu`'s lists, or owned by a caller | that CPU / the caller | — |
//! | watermarks, `lowmem_reserve`, `managed_pages`, `nr_reserved_highatomic`, `cma_pages`, pageblock migrate types, `layout`, `reserve`, `deferred`, fault injection, the fast paths' table (`PageAlloc::fast`, recomputed from the others) | exclusive only | everyone |
//! | `Page::zone` | boot / deferred init (exclusive) | everyone |
//!
//! A descriptor's `flags` word is the one field read by CPUs that do not
//! own the frame: a pageblock's migrate type rides in its first frame's
//! flags, and the buddy search reads a neighbour's `BUDDY` bit. So every
//! access to `flags` that can run concurrently is atomic. Writes are plain
//! atomic stores, not read-modify-writes: a frame's flags are written only
//! by its owner — the zone lock for a free block, a CPU for its listed
//! blocks, the caller for an allocated one — and the pageblock bits, which
//! sit in a frame somebody else may own, only by the exclusive side. The
//! zone-locked refill therefore never steals another migrate type's
//! pageblock (`rmqueue_fallback()` rewrites pageblock types and counts
//! `extfrag` events): when its own type's lists are empty it stops, and
//! an empty list is refilled, with fallback, on the exclusive side.
//!
//! Counters: `NR_FREE_PAGES` (and `nr_free`, `NR_FREE_CMA_PAGES`) are
//! per-zone counters updated under the zone lock, exact at every unlock —
//! the watermark checks need them now, and with one writer at a time per
//! zone there is nothing to fold. Event counters (the per-zone, per-order
//! block counts, from which `pgalloc_*` and `pgfree` are derived) stay
//! per-CPU diffs ([`super::smp::VmDiff`]) folded on the exclusive side,
//! which is where every reader of them is.
//!
//! # Interrupts
//! Linux takes `zone->lock` with `spin_lock_irqsave()` because pages are
//! freed from interrupt context (network buffers in softirq, RCU
//! callbacks), and an interrupt arriving while its CPU holds the lock
//! would spin on it forever. Here no interrupt handler allocates or frees
//! (DESIGN.md: handlers only acknowledge and wake; the network is polled
//! from the main loop), so no lock of the allocator is ever wanted in
//! interrupt context and they leave interrupts on. A handler that one day
//! frees pages must first make these locks (and the `BrLock` flags, as
//! `pcp_spin_lock()` does) disable interrupts.

#![allow(unsafe_code)]

/// An unrolled chain of steps entered in the middle (Duff's device): the
/// step labelled with `sel`'s value runs first, then every step after it
/// in the order written; any other value runs `other`, which must
/// diverge. `enter_chain!(o, return; 'a 0 => {s0}, 'b 1 => {s1})`
/// expands to
/// `{ 'b: { { 'a: { match o { 0 => break 'a, 1 => break 'b, _ => return } } {s0} } } {s1} }`:
/// one jump through a table, then straight-line code.
macro_rules! enter_chain {
    ($sel:expr, $other:expr; $($l:lifetime $v:literal => $step:block),+ $(,)?) => {
        enter_chain!(@rev $sel, $other; []; $($l $v => $step;)+)
    };
    // Reverse the steps: the last one written is the outermost block.
    (@rev $sel:expr, $other:expr; [$($r:tt)*]; $l:lifetime $v:literal => $step:block; $($rest:tt)*) => {
        enter_chain!(@rev $sel, $other; [$l $v => $step; $($r)*]; $($rest)*)
    };
    (@rev $sel:expr, $other:expr; [$($r:tt)*];) => {
        enter_chain!(@nest $sel, $other; []; $($r)*)
    };
    // Each block ends where its step starts; the innermost dispatches.
    (@nest $sel:expr, $other:expr; [$($arms:tt)*]; $l:lifetime $v:literal => $step:block; $($rest:tt)*) => {
        {
            $l: {
                enter_chain!(@nest $sel, $other; [$($arms)* $v => break $l,]; $($rest)*)
            }
            $step
        }
    };
    (@nest $sel:expr, $other:expr; [$($arms:tt)*];) => {
        match $sel {
            $($arms)*
            _ => $other,
        }
    };
}

#[cfg(test)]
mod tests;

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64};

use super::{AllocFlags, PageAlloc};
use crate::page::{LIST_END, NIL, Page, PageFlags, is_pfn_link};
use crate::types::{MAX_ORDER, NR_ORDERS, Order, Pfn};
use crate::zone::{
    FreeList, MIGRATE_TYPES, MigrateType, NR_ZONES, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, Zone,
};

// `link_half` and `unlink_links` write `prev` and `next` as one `u64`.
const _: () = assert!(
    core::mem::offset_of!(Page, next) == core::mem::offset_of!(Page, prev) + 4
        && cfg!(target_endian = "little")
);

/// One zone's spin lock (cf. `zone->lock`), on a cache line of its own so
/// CPUs locking different zones share no written line.
#[repr(align(64))]
pub struct ZoneLock(AtomicBool);

impl ZoneLock {
    /// Unlocked.
    pub const fn new() -> ZoneLock {
        ZoneLock(AtomicBool::new(false))
    }

    /// Spins until the lock is ours (test-and-test-and-set).
    #[inline]
    pub fn lock(&self) -> ZoneLockGuard<'_> {
        while self
            .0
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            while self.0.load(Relaxed) {
                core::hint::spin_loop();
            }
        }
        ZoneLockGuard(self)
    }
}

impl Default for ZoneLock {
    fn default() -> ZoneLock {
        ZoneLock::new()
    }
}

/// Holds a [`ZoneLock`]; unlocks on drop.
pub struct ZoneLockGuard<'a>(&'a ZoneLock);

impl Drop for ZoneLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.0.store(false, Release);
    }
}

/// A `u64` field other CPUs read racily, as an atomic.
///
/// # Safety
/// `p` is valid and aligned; every concurrent access is atomic.
#[inline(always)]
pub(super) unsafe fn ld64(p: *mut u64) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { AtomicU64::from_ptr(p) }.load(Relaxed)
}

/// Stores into a `u64` field other CPUs read racily.
///
/// # Safety
/// As for [`ld64`], and the caller is the field's only writer now.
#[inline(always)]
pub(super) unsafe fn st64(p: *mut u64, v: u64) {
    // SAFETY: the caller's contract.
    unsafe { AtomicU64::from_ptr(p) }.store(v, Relaxed)
}

/// A `u32` list link other CPUs read racily, as an atomic.
///
/// # Safety
/// As for [`ld64`].
#[inline(always)]
pub(super) unsafe fn ld32(p: *mut u32) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { AtomicU32::from_ptr(p) }.load(Relaxed)
}

/// Stores into a `u32` list link other CPUs read racily.
///
/// # Safety
/// As for [`st64`].
#[inline(always)]
pub(super) unsafe fn st32(p: *mut u32, v: u32) {
    // SAFETY: the caller's contract.
    unsafe { AtomicU32::from_ptr(p) }.store(v, Relaxed)
}

/// A descriptor's flags word as an atomic.
///
/// # Safety
/// `p` points into the live `mem_map`.
#[inline(always)]
pub(super) unsafe fn flags_of<'x>(p: *mut Page) -> &'x AtomicU16 {
    // SAFETY: `PageFlags` is a `u16` newtype: an aligned `u16` inside the
    // live array; every concurrent access to it is atomic (module docs).
    unsafe { AtomicU16::from_ptr(&raw mut (*p).flags.0) }
}

/// Sets and clears bits of a flags word its owner alone writes (a plain
/// load and store: see the module docs for why no other CPU writes it).
///
/// # Safety
/// As for [`flags_of`], and the caller owns the frame.
#[inline(always)]
pub(super) unsafe fn flags_update(p: *mut Page, set: PageFlags, clear: PageFlags) -> PageFlags {
    // SAFETY: the caller's contract.
    let f = unsafe { flags_of(p) };
    let old = f.load(Relaxed);
    f.store((old & !clear.0) | set.0, Relaxed);
    PageFlags(old)
}

/// The migrate type in a pageblock's first frame (cf.
/// `get_pfnblock_flags_mask()`'s `READ_ONCE`).
///
/// # Safety
/// `map` is the live `mem_map` and `pfn` < `max_pfn`.
#[inline(always)]
pub(super) unsafe fn pageblock_mt_raw(map: *mut Page, pfn: u64) -> MigrateType {
    // SAFETY: the caller's contract.
    let bits = unsafe { pageblock_mt_bits(map, pfn) };
    // 6–7 read as Movable; a select, not a table (`from_index`).
    let idx = if bits < MIGRATE_TYPES {
        bits
    } else {
        MigrateType::Movable as usize
    };
    const _: () = assert!(MIGRATE_TYPES == 6 && MigrateType::Isolate as usize == 5);
    // SAFETY: `MigrateType` is a `repr(u8)` enum whose discriminants are
    // its indices 0..MIGRATE_TYPES, and `idx` is one.
    unsafe { core::mem::transmute::<u8, MigrateType>(idx as u8) }
}

/// [`pageblock_mt_raw`] as the raw 3-bit field (a [`MigrateType`] index,
/// or 6–7, which read as Movable), for the fast path's two comparisons.
///
/// # Safety
/// As for [`pageblock_mt_raw`].
#[inline(always)]
pub(super) unsafe fn pageblock_mt_bits(map: *mut Page, pfn: u64) -> usize {
    let first = (pfn & !(PAGEBLOCK_NR_PAGES - 1)) as usize;
    // SAFETY: `first` ≤ `pfn` < max_pfn; flags atomically.
    let bits = unsafe { flags_of(map.add(first)) }.load(Relaxed);
    let mask = PageFlags::PB_MIGRATE.0;
    usize::from((bits & mask) >> mask.trailing_zeros())
}

/// The exclusive side's way into the buddy core: `&mut self` is the proof
/// [`ZoneFree`]'s contract asks for.
impl PageAlloc<'_> {
    /// cf. `__rmqueue()`: the smallest block of `mt`'s lists (CMA's for a
    /// movable request, see [`ZoneFree::rmqueue_nofallback`]);
    /// failing that, steal from a fallback type and try again.
    pub(super) fn __rmqueue(
        &mut self,
        zi: usize,
        order: Order,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> Option<Pfn> {
        let zf = self.zone_free(zi);
        // SAFETY: `&mut self`: the exclusive side.
        if let Some(pfn) = unsafe { zf.rmqueue_nofallback(order, mt, flags) } {
            return Some(Pfn(u64::from(pfn)));
        }
        while self.rmqueue_fallback(zi, order, mt, flags) {
            let zf = self.zone_free(zi);
            // SAFETY: as above.
            let got = unsafe {
                zf.rmqueue_smallest(order.index(), mt).or_else(|| {
                    if flags.cma {
                        zf.rmqueue_smallest(order.index(), MigrateType::Cma)
                    } else {
                        None
                    }
                })
            };
            if let Some(pfn) = got {
                return Some(Pfn(u64::from(pfn)));
            }
        }
        None
    }

    /// `__rmqueue()` without its fallback ([`ZoneFree::rmqueue_nofallback`]):
    /// `None` when only stealing from another migrate type could help.
    #[inline(always)]
    pub(super) fn rmqueue_nofallback(
        &mut self,
        zi: usize,
        order: Order,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> Option<u32> {
        let zf = self.zone_free(zi);
        // SAFETY: `&mut self`: the exclusive side.
        unsafe {
            if flags.cma {
                zf.rmqueue_nofallback(order, mt, flags)
            } else {
                // All `rmqueue_nofallback` does without CMA, inlined.
                zf.rmqueue_smallest_inline(order.index(), mt)
            }
        }
    }

    /// Zone `zi`'s buddy core ([`ZoneFree`]) for the exclusive
    /// holder: `&mut self` is the proof its methods' contract asks for.
    #[inline(always)]
    pub(crate) fn zone_free(&mut self, zi: usize) -> ZoneFree<true> {
        assert!(zi < NR_ZONES);
        // SAFETY: `self` is live and `zi` indexes `zones` (checked).
        unsafe { ZoneFree::new(self, zi) }
    }

    /// Take the smallest free block of at least `order` from `mt`'s lists
    /// and split it down, the halves going to `mt`'s lists
    /// (cf. `__rmqueue_smallest()`).
    pub(crate) fn rmqueue_smallest(
        &mut self,
        zi: usize,
        order: Order,
        mt: MigrateType,
    ) -> Option<Pfn> {
        let zf = self.zone_free(zi);
        // SAFETY: `&mut self`: the exclusive side.
        unsafe { zf.rmqueue_smallest(order.index(), mt) }.map(|pfn| Pfn(u64::from(pfn)))
    }

    /// Is `buddy` the head of a free block of exactly `order` in zone `zi`?
    /// (cf. `page_is_buddy()`; the zone check keeps merges from crossing a
    /// zone boundary that is not `MAX_ORDER`-aligned.)
    pub(crate) fn page_is_buddy(&mut self, buddy: u64, order: usize, zi: usize) -> bool {
        let zf = self.zone_free(zi);
        // SAFETY: `&mut self`: the exclusive side.
        unsafe { zf.page_is_buddy(buddy, order) }
    }

    /// Put a block on `mt`'s free list, merging with free buddies first
    /// (cf. `__free_one_page()`, see [`ZoneFree::free_one_page`]).
    #[inline]
    pub(crate) fn free_one_page(
        &mut self,
        pfn: u64,
        order: usize,
        zi: usize,
        mt: MigrateType,
        to_tail: bool,
    ) {
        let zf = self.zone_free(zi);
        // SAFETY: `&mut self`: the exclusive side.
        unsafe { zf.free_one_page(pfn, order, mt, to_tail) }
    }

    // ----------------------------------------------------------------
    // Free lists (cf. add_to_free_list() / del_page_from_free_list())
    // ----------------------------------------------------------------

    pub(super) fn add_to_free_list(
        &mut self,
        pfn: u32,
        order: usize,
        zi: usize,
        mt: MigrateType,
        to_tail: bool,
    ) {
        let zf = self.zone_free(zi);
        // SAFETY: `&mut self`: the exclusive side.
        unsafe { zf.add(pfn, order, mt, to_tail) }
    }

    /// O(1) unlink; clears BUDDY and the free-page count of the block.
    /// The block's own links are reset, so a frame's descriptor is a
    /// function of its state alone (tests compare whole `mem_map`s).
    #[inline]
    pub(super) fn del_from_free_list(&mut self, pfn: u32, order: usize, zi: usize) {
        let zf = self.zone_free(zi);
        // SAFETY: `&mut self`: the exclusive side.
        unsafe { zf.del(pfn, order) }
    }
}

/// One zone's buddy free lists as `zone->lock` gives them: the buddy core
/// (cf. `__free_one_page()`, `__rmqueue_smallest()`, `expand()`,
/// `add_to_free_list()` / `del_page_from_free_list()`) over raw pointers,
/// so the exclusive holder and a zone-lock holder run the same code.
///
/// Every method is `unsafe` with one contract: the caller holds this
/// zone's lock (and its CPU's flag), or the exclusive side, for the call.
///
/// `EXCL`: the caller holds the exclusive side ([`PageAlloc::zone_free`]),
/// so no other CPU reads or writes anything at all meanwhile. The merge
/// then tests a buddy with one 32-bit load of its flags, zone and order
/// against a pattern and clears its BUDDY bit and order with one store,
/// and a list that empties is cleared with one 64-bit store. Under a zone
/// lock (`!EXCL`) other CPUs read flags words and write the descriptors
/// of frames they own, so every access stays the width the module docs
/// give it (a mixed-size access racing a store is undefined behaviour).
#[derive(Clone, Copy)]
pub(crate) struct ZoneFree<const EXCL: bool> {
    map: *mut Page,
    max_pfn: u64,
    zone: *mut Zone,
    zi: usize,
}

/// A PFN times this is the PFN in both halves of a `u64`: a list's head
/// and tail, as one store.
const PFN_PAIR: u64 = 1 << 32 | 1;

impl ZoneFree<true> {
    /// [`ZoneFree::rmqueue_smallest`] for a caller that rewrites the whole
    /// head descriptor (`prep_new_page()` on the exclusive side): the
    /// head keeps its BUDDY bit and links until then, so they are not
    /// written twice. `prep(head)` runs once the head's links are read,
    /// before the unlink and the split, whose out-of-line call is then
    /// the last act (a jump; the halves lie past the block `prep` may
    /// write, and the unlink writes the neighbours and the list only).
    ///
    /// # Safety
    /// The method contract; `prep` writes the head's flags and links, and
    /// touches nothing of the zone's lists or of the frames past the
    /// block's first `2^order`.
    #[inline(always)]
    pub(crate) unsafe fn rmqueue_smallest_taken(
        self,
        order: usize,
        mt: MigrateType,
        prep: impl FnOnce(u32),
        on_empty: impl FnOnce() -> Option<u32>,
    ) -> Option<u32> {
        // SAFETY: the function contract.
        unsafe { self.rmqueue_smallest_head::<false>(order, mt, prep, on_empty) }
    }
}

/// `PageFlags::BUDDY` in the 32-bit word of flags, zone and order.
const W_BUDDY: u32 = PageFlags::BUDDY.0 as u32;
/// The order byte in that word.
const W_ORDER_SHIFT: u32 = 24;
const _: () = assert!(
    core::mem::offset_of!(Page, flags) == 0
        && core::mem::offset_of!(Page, zone) == 2
        && core::mem::offset_of!(Page, order) == 3
        && core::mem::size_of::<crate::zone::FreeList>() == 8
        && core::mem::align_of::<Page>() >= 4
);

/// The first order from `order` up whose list has a block, by a migrate
/// type's `free_area_mask` word (the search of `__rmqueue_smallest()`).
#[inline(always)]
fn first_nonempty(mask: u16, order: usize) -> Option<usize> {
    if order >= NR_ORDERS {
        return None;
    }
    let m = (mask & ((1 << NR_ORDERS) - 1)) >> order;
    if m == 0 {
        return None;
    }
    let current = order + m.trailing_zeros() as usize;
    // SAFETY: `m` has no bit at or past NR_ORDERS - order (masked).
    unsafe { core::hint::assert_unchecked(current < NR_ORDERS) };
    Some(current)
}

/// [`ZoneFree::expand`] of the exclusive side, out of line, with the zone
/// as scalars: a `ZoneFree` (four words) would be passed through memory,
/// spilled by the caller and, as the split's stores may alias it, its
/// fields reloaded level by level. `expand()` reads only the `mem_map`
/// base and the zone, so the copy it runs on has no `max_pfn` (0: any
/// [`ZoneFree::page_is_buddy`] on it would say no) and no zone index.
///
/// # Safety
/// As for [`ZoneFree::expand`] on `ZoneFree::<true>` of the allocator
/// whose `mem_map` starts at `map` and whose zone is `zone`.
#[inline(never)]
unsafe fn expand_outlined(
    map: *mut Page,
    zone: *mut Zone,
    head: u32,
    order: usize,
    current: usize,
    mt: MigrateType,
) -> Option<u32> {
    let zf = ZoneFree::<true> {
        map,
        max_pfn: 0,
        zone,
        zi: usize::MAX,
    };
    // SAFETY: the function contract; a `MAX_ORDER` block goes to
    // `expand_max_outlined`.
    unsafe {
        core::hint::assert_unchecked(current < MAX_ORDER);
        zf.expand(head, order, current, mt)
    };
    // `Some(head)` (a listed block's head is never NIL), written so the
    // compiler cannot fold the caller's result to a constant and must
    // keep the call a jump.
    (head != NIL).then_some(head)
}

/// [`ZoneFree::rmqueue_smallest`]'s one out-of-line copy (per side),
/// with the zone's fields as scalar arguments: a `ZoneFree` (four words)
/// would go through memory, spilled by every caller.
///
/// # Safety
/// As for [`ZoneFree::rmqueue_smallest`] on the `ZoneFree` these fields
/// make up.
#[inline(never)]
unsafe fn rmqueue_smallest_outlined<const EXCL: bool>(
    map: *mut Page,
    max_pfn: u64,
    zone: *mut Zone,
    zi: usize,
    order: usize,
    mt: MigrateType,
) -> Option<u32> {
    let zf = ZoneFree::<EXCL> {
        map,
        max_pfn,
        zone,
        zi,
    };
    // SAFETY: the function contract.
    unsafe { zf.rmqueue_smallest_inline(order, mt) }
}

/// [`expand_outlined`] for a `MAX_ORDER` block, the common case (a
/// block from the lists of the largest order): a function of its own, so
/// its one chain shares no code with the others' (shared, the last level
/// held its constants in registers for all of them, saved and restored
/// at every call).
///
/// # Safety
/// As for [`expand_outlined`] with `current` = `MAX_ORDER`.
#[inline(never)]
unsafe fn expand_max_outlined(
    map: *mut Page,
    zone: *mut Zone,
    head: u32,
    order: usize,
    mt: MigrateType,
) -> Option<u32> {
    let zf = ZoneFree::<true> {
        map,
        max_pfn: 0,
        zone,
        zi: usize::MAX,
    };
    // SAFETY: the function contract.
    unsafe { zf.expand(head, order, MAX_ORDER, mt) };
    // As in `expand_outlined`: `Some(head)`, not foldable by the caller.
    (head != NIL).then_some(head)
}

/// What one level of the exclusive side's unrolled merge did
/// ([`ZoneFree::merge_level_common`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    /// Took the buddy in, emptying its list.
    Merged,
    /// The buddy does not merge: the merge ends here.
    Stop,
    /// The buddy merges but is not alone on the freed block's type's
    /// list: nothing changed; the general level takes it.
    Rare,
}

/// Whether a block of type `mt` merges with a free buddy whose pageblock
/// has the `PB_MIGRATE` bits of `flags` (at pageblock order and above; cf.
/// the `migratetype_is_mergeable()` test in `__free_one_page()`).
#[inline(always)]
fn pb_mergeable(flags: u16, mt: MigrateType) -> bool {
    let mask = PageFlags::PB_MIGRATE.0;
    let bits = usize::from((flags & mask) >> mask.trailing_zeros());
    if bits == mt.index() {
        return true;
    }
    let buddy_mt = MigrateType::from_index(bits).unwrap_or(MigrateType::Movable);
    mt == buddy_mt || (mt.is_mergeable() && buddy_mt.is_mergeable())
}

impl<const EXCL: bool> ZoneFree<EXCL> {
    /// Zone `zi` of the allocator at `pa`.
    ///
    /// # Safety
    /// `pa` is live; `zi` < `NR_ZONES`; with `EXCL`, the caller holds the
    /// exclusive side for as long as it uses the result.
    #[inline(always)]
    pub(crate) unsafe fn new(pa: *mut PageAlloc<'_>, zi: usize) -> ZoneFree<EXCL> {
        // SAFETY: `mem_map` and `layout` are written only at construction;
        // the zone is reached as a raw place (no reference formed).
        unsafe {
            ZoneFree {
                map: (*pa).mem_map.base(),
                max_pfn: (*pa).layout.max_pfn.0,
                zone: &raw mut (*pa).zones[zi],
                zi,
            }
        }
    }

    /// The zone's `free_area_mask` word of migrate type `mt` (an index):
    /// bit `order` set while that list has a block. This code alone
    /// writes it, under the zone's lock or the exclusive side.
    ///
    /// # Safety
    /// The method contract; `mt` < `MIGRATE_TYPES`.
    #[inline(always)]
    unsafe fn mask_of(self, mt: usize) -> *mut u16 {
        debug_assert!(mt < MIGRATE_TYPES);
        // SAFETY: the array has MIGRATE_TYPES entries; a raw place.
        unsafe { (&raw mut (*self.zone).free_area_mask).cast::<u16>().add(mt) }
    }

    #[inline(always)]
    unsafe fn page(self, pfn: u64) -> *mut Page {
        // SAFETY: callers pass PFNs below max_pfn (≤ the array's length).
        unsafe { self.map.add(pfn as usize) }
    }

    /// The pageblock's migrate type, read atomically.
    ///
    /// # Safety
    /// `pfn` < `max_pfn`.
    #[inline(always)]
    pub(crate) unsafe fn pageblock_mt(self, pfn: u64) -> MigrateType {
        // SAFETY: the caller's contract.
        unsafe { pageblock_mt_raw(self.map, pfn) }
    }

    /// Is `buddy` the head of a free block of exactly `order` in this zone?
    /// (cf. `page_is_buddy()`.) The zone is read first: it never changes,
    /// and a frame of another zone belongs to another lock.
    #[inline(always)]
    pub(crate) unsafe fn page_is_buddy(self, buddy: u64, order: usize) -> bool {
        if buddy >= self.max_pfn {
            return false;
        }
        // SAFETY: in range; `zone` is immutable; `flags` atomically; a
        // BUDDY frame of this zone is ours under the lock, `order` too.
        unsafe {
            let p = self.page(buddy);
            usize::from((*p).zone) == self.zi
                && flags_of(p).load(Relaxed) & PageFlags::BUDDY.0 != 0
                && usize::from((*p).order) == order
        }
    }

    /// Links a free block at the head or tail of `mt`'s list of `order`,
    /// marked BUDDY, and counts it free (cf. `__add_to_free_list()` +
    /// `account_freepages()`).
    #[inline]
    pub(crate) unsafe fn add(self, pfn: u32, order: usize, mt: MigrateType, to_tail: bool) {
        // SAFETY: the method contract.
        unsafe {
            self.link(pfn, order, mt, to_tail);
            self.account_free(1 << order);
        }
    }

    /// Adds `nr_pages` to the zone's `NR_FREE_PAGES` (negative: takes
    /// away). A split or a merge moves pages between lists without
    /// changing the total, so [`ZoneFree::rmqueue_smallest`] and
    /// [`ZoneFree::free_one_page`] account once for the whole operation
    /// (cf. `account_freepages()`); the total is exact at every unlock.
    #[inline(always)]
    unsafe fn account_free(self, nr_pages: i64) {
        // SAFETY: the method contract.
        unsafe {
            let fp = &raw mut (*self.zone).free_pages;
            st64(fp, ld64(fp).wrapping_add_signed(nr_pages));
        }
    }

    /// [`ZoneFree::add`] without `NR_FREE_PAGES` (`nr_free` and the CMA
    /// count are per list, so they are kept here).
    #[inline(always)]
    unsafe fn link(self, pfn: u32, order: usize, mt: MigrateType, to_tail: bool) {
        // SAFETY: the method contract.
        unsafe { self.link_clearing(pfn, order, mt, to_tail, 0) }
    }

    /// [`ZoneFree::link`], clearing the `cleared` bits of `mt`'s mask in
    /// the same read-modify-write that sets the list's own bit (the merge
    /// hands over the bits of the lists it emptied: two read-modify-writes
    /// of one word in a row wait for each other through the store buffer).
    ///
    /// # Safety
    /// As for [`ZoneFree::link`]; the lists of the `cleared` orders of
    /// `mt` are empty.
    #[inline(always)]
    unsafe fn link_clearing(
        self,
        pfn: u32,
        order: usize,
        mt: MigrateType,
        to_tail: bool,
        cleared: u32,
    ) {
        let end = LIST_END + mt as u32;
        // SAFETY: the lock (method contract) makes the lists, the counters
        // and the blocks' descriptors ours; racy readers load atomically.
        unsafe {
            let area = &raw mut (*self.zone).free_area[order];
            let head = &raw mut (*area).free_list[mt.index()].head;
            let tail = &raw mut (*area).free_list[mt.index()].tail;
            let first = ld32(head);
            if first == NIL || cleared != 0 {
                let m = self.mask_of(mt.index());
                *m = (u32::from(*m) & !cleared | u32::from(first == NIL) << order) as u16;
            }
            let (prev, next) = if first == NIL {
                st32(head, pfn);
                st32(tail, pfn);
                (end, end)
            } else if to_tail {
                let prev = ld32(tail);
                st32(tail, pfn);
                (*self.page(u64::from(prev))).next = pfn;
                (prev, end)
            } else {
                st32(head, pfn);
                (*self.page(u64::from(first))).prev = pfn;
                (end, first)
            };
            st64(&raw mut (*area).nr_free, ld64(&raw mut (*area).nr_free) + 1);
            let p = self.page(u64::from(pfn));
            if EXCL {
                // cf. set_buddy_order(): BUDDY and the order as one 32-bit
                // store, the width the next reader loads (nobody else
                // runs).
                let w = p.cast::<u32>().read();
                p.cast::<u32>().write(
                    w & !(0xff << W_ORDER_SHIFT) | W_BUDDY | (order as u32) << W_ORDER_SHIFT,
                );
            } else {
                flags_update(p, PageFlags::BUDDY, PageFlags::EMPTY);
                (*p).order = order as u8;
            }
            // Both links as one store: the merge loads them as one.
            (&raw mut (*p).prev)
                .cast::<u64>()
                .write_unaligned(u64::from(prev) | u64::from(next) << 32);
            if mt == MigrateType::Cma {
                let fc = &raw mut (*self.zone).nr_free_cma;
                st64(fc, ld64(fc) + (1 << order));
            }
        }
    }

    /// O(1) unlink; clears BUDDY and the block's links and uncounts it (cf.
    /// `del_page_from_free_list()`). A first or last block names its list
    /// in its end link ([`LIST_END`]).
    #[inline]
    pub(crate) unsafe fn del(self, pfn: u32, order: usize) {
        // SAFETY: the method contract.
        unsafe {
            self.unlink(pfn, order);
            self.account_free(-(1 << order));
        }
    }

    /// [`ZoneFree::del`] without `NR_FREE_PAGES`.
    #[inline(always)]
    unsafe fn unlink(self, pfn: u32, order: usize) {
        // SAFETY: the method contract.
        unsafe {
            self.unlink_list(pfn, order);
            // A free block in a CMA pageblock is on the CMA list (CMA
            // blocks change lists only through isolation, which moves a
            // pageblock's free blocks before it retypes it). Only a zone
            // with a CMA area pays for the pageblock read.
            if (*self.zone).cma_pages > 0 {
                self.uncount_cma(pfn, order);
            }
        }
    }

    /// Takes a CMA pageblock's free block out of `NR_FREE_CMA_PAGES` (the
    /// part of [`ZoneFree::unlink`] only a zone with CMA pays for).
    #[inline(always)]
    unsafe fn uncount_cma(self, pfn: u32, order: usize) {
        // SAFETY: as for `add`; `pfn` is a free block of this zone.
        unsafe {
            if self.pageblock_mt(u64::from(pfn)) == MigrateType::Cma {
                let fc = &raw mut (*self.zone).nr_free_cma;
                st64(fc, ld64(fc) - (1 << order));
            }
        }
    }

    /// One of `order`'s free lists, by the end link a first or last block
    /// holds ([`LIST_END`] + migrate type), without a bounds check.
    ///
    /// # Safety
    /// The method contract; `order` < `NR_ORDERS`; `end` is an end link
    /// [`ZoneFree::link`] wrote: `LIST_END + mt` for a [`MigrateType`]
    /// (< `MIGRATE_TYPES`, the lists a `FreeArea` has).
    #[inline(always)]
    unsafe fn list_by_end(self, order: usize, end: u32) -> *mut FreeList {
        debug_assert!(((end - LIST_END) as usize) < MIGRATE_TYPES);
        // SAFETY: the caller's contract: in bounds of `free_list`.
        unsafe {
            (&raw mut (*self.zone).free_area[order].free_list)
                .cast::<FreeList>()
                .add((end - LIST_END) as usize)
        }
    }

    /// The list operation of [`ZoneFree::unlink`]: clears BUDDY and the
    /// block's links, fixes its neighbours (or its list's head and tail)
    /// and `nr_free`; no page counter.
    #[inline(always)]
    unsafe fn unlink_list(self, pfn: u32, order: usize) {
        // SAFETY: the method contract; `pfn` is a free block's head.
        unsafe { self.unlink_page(self.page(u64::from(pfn)), order) }
    }

    /// [`ZoneFree::unlink_list`] for the descriptor at `p`.
    ///
    /// # Safety
    /// The method contract; `p` is the head of a free block of `order` on
    /// this zone's lists. A frame's end links are only ever written by
    /// `link` / `link_half` (LIST_END + a migrate type), so
    /// `list_by_end` holds.
    #[inline(always)]
    unsafe fn unlink_page(self, p: *mut Page, order: usize) {
        // SAFETY: as for `add`, and the function contract.
        unsafe {
            flags_update(p, PageFlags::EMPTY, PageFlags::BUDDY);
            self.unlink_links(p, order);
        }
    }

    /// The list part of [`ZoneFree::unlink_page`]: resets the block's
    /// links, fixes its neighbours (or empties its list, clearing the
    /// list's bit in the mask) and `nr_free`; the flags are the caller's.
    ///
    /// # Safety
    /// As for [`ZoneFree::unlink_page`].
    #[inline(always)]
    unsafe fn unlink_links(self, p: *mut Page, order: usize) {
        // SAFETY: the function contract.
        unsafe {
            if let Some(mt) = self.unlink_links_nomask(p, order) {
                *self.mask_of(mt) &= !(1 << order);
            }
        }
    }

    /// [`ZoneFree::unlink_links`] but for the mask: returns the migrate
    /// type (an index) of the list the block was alone on, whose mask bit
    /// the caller clears.
    ///
    /// # Safety
    /// As for [`ZoneFree::unlink_page`].
    #[inline(always)]
    unsafe fn unlink_links_nomask(self, p: *mut Page, order: usize) -> Option<usize> {
        // SAFETY: the function contract.
        unsafe {
            let (prev, next) = ((*p).prev, (*p).next);
            // Both links NIL as one store (read by no other CPU).
            (&raw mut (*p).prev).cast::<u64>().write_unaligned(u64::MAX);
            self.unlink_known(order, prev, next)
        }
    }

    /// The list part of [`ZoneFree::unlink_links_nomask`] once the block's
    /// links `prev` and `next` have been read (and reset).
    ///
    /// # Safety
    /// As for [`ZoneFree::unlink_page`]; `prev` and `next` were the links
    /// of a free block of `order` on this zone's lists.
    #[inline(always)]
    unsafe fn unlink_known(self, order: usize, prev: u32, next: u32) -> Option<usize> {
        let mut emptied = None;
        // SAFETY: as for `add`, and the function contract.
        unsafe {
            if prev == next {
                // Both are its list's end link (two links naming one block
                // cannot both be PFNs): the block was alone, the list empties.
                let list = self.list_by_end(order, prev);
                if EXCL {
                    // Head and tail NIL as one store: nobody else runs.
                    list.cast::<u64>().write_unaligned(u64::MAX);
                } else {
                    st32(&raw mut (*list).head, NIL);
                    st32(&raw mut (*list).tail, NIL);
                }
                emptied = Some((prev - LIST_END) as usize);
            } else {
                // Rare in a split-and-merge-back pattern, where each level's
                // list holds just the buddy.
                core::hint::cold_path();
                if is_pfn_link(prev) {
                    (*self.page(u64::from(prev))).next = next;
                } else {
                    st32(&raw mut (*self.list_by_end(order, prev)).head, next);
                }
                if is_pfn_link(next) {
                    (*self.page(u64::from(next))).prev = prev;
                } else {
                    st32(&raw mut (*self.list_by_end(order, next)).tail, prev);
                }
            }
            let nr_free = &raw mut (*self.zone).free_area[order].nr_free;
            st64(nr_free, ld64(nr_free) - 1);
        }
        emptied
    }

    /// [`ZoneFree::link`] of the upper half of order `O` of the block
    /// whose head `head` has its descriptor at `hp`, onto `mt`'s list of
    /// order `O`, known to be empty: `expand()`'s halves go to `mt`'s lists
    /// below the order [`ZoneFree::rmqueue_smallest`] found its block at,
    /// and it found the block there because every one of those lists was
    /// empty. The half's descriptor is at a constant offset from `hp`, the
    /// list and `nr_free` at constant offsets in the zone. No CMA count
    /// and no mask bit: the caller adds all the halves at once.
    ///
    /// # Safety
    /// The method contract; the block `[head, head + 2^(O+1))` is a free
    /// block of this zone being split, and `mt`'s list of order `O` is
    /// empty.
    #[inline(always)]
    unsafe fn link_half<const O: usize>(
        self,
        hp: *mut Page,
        head: u32,
        head_pair: u64,
        mt: MigrateType,
    ) {
        // SAFETY: the function contract.
        unsafe { self.link_half_at(hp, head, head_pair, mt, O) }
    }

    /// [`ZoneFree::link_half`] for an order known only at run time (a
    /// split of one level, where the unrolled chain's dispatch would cost
    /// more than the level).
    ///
    /// # Safety
    /// As for [`ZoneFree::link_half`], with `O` = `o` < `MAX_ORDER`.
    #[inline(always)]
    unsafe fn link_half_at(
        self,
        hp: *mut Page,
        head: u32,
        head_pair: u64,
        mt: MigrateType,
        o: usize,
    ) {
        debug_assert!(o < MAX_ORDER);
        let end = u64::from(LIST_END + mt as u32);
        let pfn = head + (1 << o);
        // SAFETY: as for `link`; the half is inside the caller's block.
        unsafe {
            let area = &raw mut (*self.zone).free_area[o];
            let list = &raw mut (*area).free_list[mt.index()];
            debug_assert_eq!(ld32(&raw mut (*list).head), NIL);
            if EXCL {
                // Head and tail as one store (`head_pair` is the head's PFN
                // in both halves): one store fewer a level, and nobody
                // else runs (another CPU's 32-bit load of `head` would
                // otherwise race a 64-bit store).
                debug_assert_eq!(head_pair, u64::from(head) * PFN_PAIR);
                list.cast::<u64>()
                    .write_unaligned(head_pair + (1u64 << o) * PFN_PAIR);
            } else {
                st32(&raw mut (*list).head, pfn);
                st32(&raw mut (*list).tail, pfn);
            }
            st64(&raw mut (*area).nr_free, ld64(&raw mut (*area).nr_free) + 1);
            let p = hp.byte_add(core::mem::size_of::<Page>() << o);
            debug_assert_eq!(p, self.page(u64::from(pfn)));
            if EXCL {
                // cf. set_buddy_order(): BUDDY and the order in one 32-bit
                // store, the width the merge loads it with (a load that
                // spans two narrower stores still in the store buffer
                // waits for them to reach the cache). No other CPU runs.
                // (The order byte of a frame inside a free block is not
                // always 0: a block freed from a per-CPU list keeps its
                // order when it merges into a lower head.)
                let w = p.cast::<u32>().read();
                p.cast::<u32>()
                    .write(w & !(0xff << W_ORDER_SHIFT) | W_BUDDY | (o as u32) << W_ORDER_SHIFT);
            } else {
                flags_update(p, PageFlags::BUDDY, PageFlags::EMPTY);
                (*p).order = o as u8;
            }
            // `prev` and `next` (adjacent, read by no other CPU) as one
            // store: both the list's end link.
            (&raw mut (*p).prev)
                .cast::<u64>()
                .write_unaligned(end | end << 32);
        }
    }

    /// [`ZoneFree::expand`] as a loop: one level, or the zone-locked side
    /// (a loop keeps the image small; its refills split few levels).
    ///
    /// # Safety
    /// As for [`ZoneFree::expand`].
    #[inline(always)]
    unsafe fn expand_loop(self, head: u32, order: usize, current: usize, mt: MigrateType) {
        // SAFETY: `head` < max_pfn (a listed block's head).
        let hp = unsafe { self.page(u64::from(head)) };
        let head_pair = u64::from(head) * PFN_PAIR;
        let mut o = current;
        while o > order {
            o -= 1;
            // SAFETY: the function contract: order ≤ o < current.
            unsafe { self.link_half_at(hp, head, head_pair, mt, o) };
        }
    }

    /// [`ZoneFree::expand`] out of line ([`expand_outlined`]), for the
    /// exclusive side's lists-off allocation: inlined into that big
    /// function, the split's chain lost registers to it and reloaded them
    /// level by level. Returns `Some(head)`, the caller's own result, so
    /// the caller's call is its last act (a jump).
    ///
    /// # Safety
    /// As for [`ZoneFree::expand`].
    #[inline(always)]
    unsafe fn expand_tail(
        self,
        head: u32,
        order: usize,
        current: usize,
        mt: MigrateType,
    ) -> Option<u32> {
        // SAFETY: the function contract.
        unsafe {
            if current == MAX_ORDER {
                expand_max_outlined(self.map, self.zone, head, order, mt)
            } else {
                expand_outlined(self.map, self.zone, head, order, current, mt)
            }
        }
    }

    /// cf. `expand()`: the upper halves of the block at `head`, of order
    /// `current`, go onto `mt`'s lists of orders `current - 1` down to
    /// `order` ([`ZoneFree::link_half`]), which are empty; the lowest
    /// `2^order` frames are the caller's. Unrolled, entered at `current`.
    ///
    /// # Safety
    /// The method contract; `head` is the head of a block of order
    /// `current` just taken off the lists, and `mt`'s lists of orders
    /// `order..current` are empty.
    #[inline(always)]
    unsafe fn expand(self, head: u32, order: usize, current: usize, mt: MigrateType) {
        const _: () = assert!(MAX_ORDER == 10, "one split level per order below MAX_ORDER");
        // SAFETY: `head` < max_pfn (a listed block's head).
        let hp = unsafe { self.page(u64::from(head)) };
        let head_pair = u64::from(head) * PFN_PAIR;
        // Tested first, so the dispatch is one compare and one jump
        // through a table (the `current` chain's table would come first).
        if EXCL && current == MAX_ORDER && order < MAX_ORDER {
            // The common case, a MAX_ORDER block split: the levels from
            // `order` up, entered at `order`, with no test for the end (the
            // lists are distinct and empty, so the order of the links does
            // not matter).
            macro_rules! up {
                ($o:literal) => {
                    // SAFETY: the function contract: order ≤ $o < current.
                    unsafe { self.link_half::<$o>(hp, head, head_pair, mt) };
                };
            }
            enter_chain!(order, return;
                'u0 0 => { up!(0); },
                'u1 1 => { up!(1); },
                'u2 2 => { up!(2); },
                'u3 3 => { up!(3); },
                'u4 4 => { up!(4); },
                'u5 5 => { up!(5); },
                'u6 6 => { up!(6); },
                'u7 7 => { up!(7); },
                'u8 8 => { up!(8); },
                'u9 9 => { up!(9); },
            );
            return;
        }
        if current <= order {
            return;
        }
        if current == order + 1 || !EXCL {
            // SAFETY: the function contract.
            unsafe { self.expand_loop(head, order, current, mt) };
            return;
        }
        macro_rules! level {
            ($o:literal) => {
                // SAFETY: the function contract: order ≤ $o < current.
                unsafe { self.link_half::<$o>(hp, head, head_pair, mt) };
                if order == $o {
                    return;
                }
            };
        }
        // Enter the chain at `current`: the level below it first.
        // (`current` < MAX_ORDER here: a level 9 of this chain would be
        // merged with the one above, whose code then holds its constants
        // in registers for both, which the split pays to save.)
        debug_assert!(current < MAX_ORDER);
        enter_chain!(current, return;
            'e9 9 => { level!(8); },
            'e8 8 => { level!(7); },
            'e7 7 => { level!(6); },
            'e6 6 => { level!(5); },
            'e5 5 => { level!(4); },
            'e4 4 => { level!(3); },
            'e3 3 => { level!(2); },
            'e2 2 => { level!(1); },
            'e1 1 => { level!(0); },
        );
    }

    /// The merge loop of [`ZoneFree::free_one_page`] for a block whose
    /// `MAX_ORDER` block crosses a zone edge or `max_pfn`, from `order` up
    /// to `limit` while the buddy is free: returns the merged block's head
    /// and its order (below `limit` when a buddy stopped the loop). Every
    /// buddy gets the range and zone checks of `page_is_buddy()`.
    /// `PB_CHECK`: the levels are at pageblock order or more, where a type
    /// that keeps its own accounting does not merge with another (and the
    /// CMA count is taken per buddy; below, the caller takes it at once).
    #[inline(always)]
    unsafe fn merge_edge<const PB_CHECK: bool>(
        self,
        mut pfn: u64,
        mut order: usize,
        limit: usize,
        mt: MigrateType,
        cma: bool,
    ) -> (u64, usize) {
        // SAFETY: the method contract; page_is_buddy checks range and zone.
        unsafe {
            while order < limit {
                let buddy_pfn = pfn ^ (1 << order); // cf. __find_buddy_pfn()
                if !self.page_is_buddy(buddy_pfn, order) {
                    break;
                }
                let bp = self.page(buddy_pfn); // below max_pfn: it is free
                if PB_CHECK {
                    let buddy_mt = self.pageblock_mt(buddy_pfn);
                    if mt != buddy_mt && (!mt.is_mergeable() || !buddy_mt.is_mergeable()) {
                        break;
                    }
                }
                self.unlink_page(bp, order);
                if PB_CHECK && cma {
                    self.uncount_cma(buddy_pfn as u32, order);
                }
                (*bp).order = 0;
                pfn &= buddy_pfn; // the combined block starts at the lower half
                order += 1;
            }
        }
        (pfn, order)
    }

    /// One level of [`ZoneFree::free_one_page`]'s merge: if the buddy of
    /// the block whose descriptor is `*off` bytes into `mem_map` (order
    /// `o`) is free (and, from pageblock order, of a type it may merge
    /// with), takes it off its list and makes `*off` the combined block's
    /// head; `false` with nothing changed otherwise. The head is kept as a
    /// byte offset, so finding the buddy's descriptor is one `xor`. For
    /// the merge's loop (the zone-locked side's, and the out-of-line copy
    /// of the exclusive side's, which stay loops to keep the image small),
    /// and for the level the unrolled chain's common case leaves to it
    /// ([`ZoneFree::merge_level_common`]).
    ///
    /// # Safety
    /// The method contract; the whole `MAX_ORDER` block holding the block
    /// is this zone's, below `max_pfn`, with written descriptors;
    /// `o` < `MAX_ORDER`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn merge_level_at(
        self,
        o: usize,
        off: &mut usize,
        mt: MigrateType,
        mt_index: usize,
        end_pair: u64,
        cma: bool,
        cleared: &mut u32,
    ) -> bool {
        const PAGE: usize = core::mem::size_of::<Page>();
        let buddy_off = *off ^ (PAGE << o); // cf. __find_buddy_pfn()
        // At pageblock order and above the buddy is a pageblock's first
        // frame: its flags word holds its pageblock's migrate type.
        let pb = o >= PAGEBLOCK_ORDER;
        // SAFETY: the function contract: the buddy lies in the same
        // MAX_ORDER block, in this zone; a BUDDY frame of this zone and
        // its list are ours (lock or exclusive side).
        unsafe {
            let bp = self.map.byte_add(buddy_off);
            debug_assert_eq!(usize::from((*bp).zone), self.zi);
            if EXCL {
                // cf. page_is_buddy(): BUDDY set and the order byte equal
                // to o, as one load against a pattern; `x` is then the
                // word with BUDDY and the order cleared (cf.
                // del_page_from_free_list()'s __ClearPageBuddy() and
                // set_page_private(page, 0)). No other CPU runs.
                let w = bp.cast::<u32>().read();
                let x = w ^ (W_BUDDY | (o as u32) << W_ORDER_SHIFT);
                if x & (W_BUDDY | 0xff << W_ORDER_SHIFT) != 0 {
                    // Once a free: the order it stopped at is set here,
                    // not ahead of every level.
                    core::hint::cold_path();
                    return false;
                }
                if pb && !pb_mergeable(w as u16, mt) {
                    core::hint::cold_path();
                    return false;
                }
                bp.cast::<u32>().write(x);
            } else {
                let f = flags_of(bp).load(Relaxed);
                if f & PageFlags::BUDDY.0 == 0 || usize::from((*bp).order) != o {
                    return false;
                }
                if pb && !pb_mergeable(f, mt) {
                    return false;
                }
                flags_of(bp).store(f & !PageFlags::BUDDY.0, Relaxed);
                (*bp).order = 0;
            }
            // cf. del_page_from_free_list(). Both links as one load: a
            // buddy alone on `mt`'s list (each level's, when a block
            // split is merged back) has both set to that list's end link,
            // and one compare finds it; its list then empties with one
            // store at a constant place. A list of `mt` that empties has
            // its mask bit cleared once, by the caller, for all the
            // levels: ten read-modify-writes of one word would each wait
            // for the last (store forwarding).
            // The compare takes the links from memory (the rare case
            // reads them again).
            let links_p = (&raw mut (*bp).prev).cast::<u64>();
            if links_p.read_unaligned() == end_pair {
                links_p.write_unaligned(u64::MAX); // both NIL
                let list = &raw mut (*self.zone).free_area[o].free_list[mt_index];
                if EXCL {
                    list.cast::<u64>().write_unaligned(u64::MAX);
                } else {
                    st32(&raw mut (*list).head, NIL);
                    st32(&raw mut (*list).tail, NIL);
                }
                let nr_free = &raw mut (*self.zone).free_area[o].nr_free;
                st64(nr_free, ld64(nr_free) - 1);
                *cleared |= 1 << o;
            } else {
                core::hint::cold_path();
                // (Volatile: a plain load would be merged with the
                // compare's into a register the common case then needs.)
                let prev = (&raw const (*bp).prev).read_volatile();
                let next = (&raw const (*bp).next).read_volatile();
                links_p.write_unaligned(u64::MAX); // both NIL
                if let Some(list_mt) = self.unlink_known(o, prev, next) {
                    *self.mask_of(list_mt) &= !(1 << o);
                }
            }
            // Below pageblock order the caller counts the CMA pages of all
            // the buddies at once (they share the freed block's pageblock).
            if pb && cma {
                self.uncount_cma((buddy_off / PAGE) as u32, o);
            }
        }
        *off &= buddy_off; // the combined block starts at the lower half
        true
    }

    /// One level of the exclusive side's unrolled merge
    /// ([`ZoneFree::merge_in_zone`]) for its common case only: the buddy
    /// free, and alone on `mt`'s list of order `O` (each level's, when a
    /// block split is merged back), which it then empties. Anything else
    /// changes nothing: [`Level::Stop`] when the buddy does not merge,
    /// [`Level::Rare`] when it does but is not alone on `mt`'s list (the
    /// caller finishes with [`ZoneFree::merge_level_at`], which handles
    /// it). So the levels need not say which lists they emptied: all of
    /// those they merged, up to where the chain stopped.
    ///
    /// # Safety
    /// As for [`ZoneFree::merge_level_at`], with `O` = `o`; the exclusive
    /// side. `O` is a constant, so the buddy's bit, the pattern and the
    /// list's and counter's places are immediates.
    #[inline(always)]
    unsafe fn merge_level_common<const O: usize>(
        self,
        off: &mut usize,
        mt: MigrateType,
        mt_index: usize,
        end_pair: u64,
        cma: bool,
    ) -> Level {
        const PAGE: usize = core::mem::size_of::<Page>();
        debug_assert!(EXCL);
        let buddy_off = *off ^ (PAGE << O); // cf. __find_buddy_pfn()
        let pb = O >= PAGEBLOCK_ORDER;
        // SAFETY: the function contract (see `merge_level_at`).
        unsafe {
            let bp = self.map.byte_add(buddy_off);
            debug_assert_eq!(usize::from((*bp).zone), self.zi);
            // As in `merge_level_at`: BUDDY and the order against a
            // pattern, one load; `x` the word with both cleared.
            let w = bp.cast::<u32>().read();
            let x = w ^ (W_BUDDY | (O as u32) << W_ORDER_SHIFT);
            if x & (W_BUDDY | 0xff << W_ORDER_SHIFT) != 0 {
                core::hint::cold_path();
                return Level::Stop;
            }
            if pb && !pb_mergeable(w as u16, mt) {
                core::hint::cold_path();
                return Level::Stop;
            }
            // Both links against the list's end pair, from memory.
            let links_p = (&raw mut (*bp).prev).cast::<u64>();
            if links_p.read_unaligned() != end_pair {
                core::hint::cold_path();
                return Level::Rare;
            }
            bp.cast::<u32>().write(x);
            links_p.write_unaligned(u64::MAX); // both NIL
            let area = &raw mut (*self.zone).free_area[O];
            (&raw mut (*area).free_list[mt_index])
                .cast::<u64>()
                .write_unaligned(u64::MAX);
            let nr_free = &raw mut (*area).nr_free;
            st64(nr_free, ld64(nr_free) - 1);
            if pb && cma {
                self.uncount_cma((buddy_off / PAGE) as u32, O);
            }
        }
        *off &= buddy_off; // the combined block starts at the lower half
        Level::Merged
    }

    /// The merge of [`ZoneFree::free_one_page`] when the whole `MAX_ORDER`
    /// block holding `pfn` is this zone's (no buddy can be past `max_pfn`
    /// or in another zone): the levels from `order` up to `MAX_ORDER`,
    /// unrolled ([`ZoneFree::merge_level_common`]), entered at `order`, until a
    /// buddy stops it. Returns the merged block's head and order.
    ///
    /// # Safety
    /// The method contract, and the whole `MAX_ORDER` block holding `pfn`
    /// is this zone's, below `max_pfn`.
    ///
    /// Returns `(pfn, order, cleared)`, where `cleared` has a bit
    /// for each order whose list of `mt` the merge emptied, for the
    /// caller's mask update ([`ZoneFree::link_clearing`]).
    #[inline(always)]
    unsafe fn merge_in_zone<const CHAIN: bool>(
        self,
        pfn: u64,
        order: usize,
        mt: MigrateType,
        cma: bool,
    ) -> (u64, usize, u32) {
        const _: () = assert!(MAX_ORDER == 10, "one merge level per order below MAX_ORDER");
        const PAGE: usize = core::mem::size_of::<Page>();
        // A local copy, so its fields are registers (the one `self` points
        // to could alias the descriptors the levels store to).
        let this = ZoneFree::<EXCL> { ..self };
        let mt_index = mt.index();
        // `prev` and `next` of a block alone on `mt`'s list.
        let end = u64::from(LIST_END + mt as u32);
        let end_pair = end | end << 32;
        let mut off = pfn as usize * PAGE;
        let mut cleared = 0u32;
        macro_rules! level {
            ($done:lifetime, $o:literal) => {
                // SAFETY: the function contract.
                match unsafe {
                    this.merge_level_common::<$o>(&mut off, mt, mt_index, end_pair, cma)
                } {
                    Level::Merged => {}
                    Level::Stop => break $done($o, 1u32 << $o, false),
                    Level::Rare => break $done($o, 1u32 << $o, true),
                }
            };
        }
        if !EXCL || !CHAIN {
            let mut o = order;
            // SAFETY: the function contract.
            while o < MAX_ORDER
                && unsafe {
                    this.merge_level_at(o, &mut off, mt, mt_index, end_pair, cma, &mut cleared)
                }
            {
                o += 1;
            }
            return ((off / PAGE) as u64, o, cleared);
        }
        // (Each exit says `1 << stop` as a constant: worked out after
        // the join, it took a variable shift.)
        let (stop, stop_bit, rare) = 'done: {
            // Enter the chain at `order`.
            enter_chain!(order, break 'done (order, 1u32 << order, false);
                'l0 0 => { level!('done, 0); },
                'l1 1 => { level!('done, 1); },
                'l2 2 => { level!('done, 2); },
                'l3 3 => { level!('done, 3); },
                'l4 4 => { level!('done, 4); },
                'l5 5 => { level!('done, 5); },
                'l6 6 => { level!('done, 6); },
                'l7 7 => { level!('done, 7); },
                'l8 8 => { level!('done, 8); },
                'l9 9 => { level!('done, 9); },
            );
            (MAX_ORDER, 1u32 << MAX_ORDER, false)
        };
        // Every level the chain merged emptied its list of `mt`.
        debug_assert!(order <= stop && stop <= MAX_ORDER && stop_bit == 1 << stop);
        cleared = stop_bit - (1u32 << order);
        let mut o = stop;
        if rare {
            // A buddy not alone on `mt`'s list: that level, and the rest,
            // by the loop, which handles it.
            core::hint::cold_path();
            // SAFETY: the function contract.
            while o < MAX_ORDER
                && unsafe {
                    this.merge_level_at(o, &mut off, mt, mt_index, end_pair, cma, &mut cleared)
                }
            {
                o += 1;
            }
        }
        ((off / PAGE) as u64, o, cleared)
    }

    /// Put a block on `mt`'s free list, merging with free buddies first
    /// (cf. `__free_one_page()`). `to_tail` is `FPI_TO_TAIL`. From
    /// pageblock order up, a block of a type that keeps its own accounting
    /// (HighAtomic, CMA, Isolate) does not merge with one of another type.
    ///
    /// Each level is one look at the buddy, one unlink and one order
    /// write. What does not change from level to level is looked at once:
    /// whether the zone has CMA pages to count, and whether the `MAX_ORDER`
    /// block holding `pfn` lies wholly in this zone — then no buddy can be
    /// past `max_pfn` or in another zone (a buddy below `MAX_ORDER` stays
    /// in that block), the levels are unrolled, and only a block at a zone
    /// edge pays for those checks. Deferred init writes a `MAX_ORDER`
    /// chunk's descriptors before it frees any of its frames (see
    /// [`super::deferred`]), so the buddies read are written ones.
    #[inline(never)]
    pub(crate) unsafe fn free_one_page(
        self,
        pfn: u64,
        order: usize,
        mt: MigrateType,
        to_tail: bool,
    ) {
        // SAFETY: the method contract.
        unsafe { self.free_one_page_with::<false>(pfn, order, mt, to_tail) }
    }

    /// [`ZoneFree::free_one_page`] inlined into its caller (the exclusive
    /// side's free straight to the buddy lists, where the call's register
    /// saves were a tenth of the work, and the per-CPU lists' trim), with
    /// the exclusive side's unrolled merge.
    #[inline(always)]
    pub(crate) unsafe fn free_one_page_inline(
        self,
        pfn: u64,
        order: usize,
        mt: MigrateType,
        to_tail: bool,
    ) {
        // SAFETY: the method contract.
        unsafe { self.free_one_page_with::<true>(pfn, order, mt, to_tail) }
    }

    /// [`ZoneFree::free_one_page_inline`] given whether the `MAX_ORDER`
    /// block holding `pfn` lies wholly in this zone and below `max_pfn`
    /// (the buddy fast free reads it from the fast paths' table).
    ///
    /// # Safety
    /// The method contract; `in_zone` is that test's answer.
    #[inline(always)]
    pub(crate) unsafe fn free_one_page_inline_known(
        self,
        pfn: u64,
        order: usize,
        mt: MigrateType,
        in_zone: bool,
    ) {
        // SAFETY: the method contract.
        unsafe { self.free_one_page_in::<true>(pfn, order, mt, false, in_zone) }
    }

    /// [`ZoneFree::free_one_page`]; `CHAIN`: on the exclusive side, the
    /// unrolled merge ([`ZoneFree::merge_in_zone`]), else its loop (the
    /// out-of-line copy, for the exclusive side's other callers, keeps
    /// the image small).
    #[inline(always)]
    unsafe fn free_one_page_with<const CHAIN: bool>(
        self,
        pfn: u64,
        order: usize,
        mt: MigrateType,
        to_tail: bool,
    ) {
        // SAFETY: the method contract.
        unsafe {
            let chunk = pfn & !((1u64 << MAX_ORDER) - 1);
            let in_zone = chunk >= (*self.zone).start_pfn.0
                && chunk + (1u64 << MAX_ORDER) <= (*self.zone).end_pfn.0.min(self.max_pfn);
            self.free_one_page_in::<CHAIN>(pfn, order, mt, to_tail, in_zone)
        }
    }

    /// [`ZoneFree::free_one_page_with`] past its `in_zone` test.
    ///
    /// # Safety
    /// The method contract; `in_zone` says whether the `MAX_ORDER` block
    /// holding `pfn` lies wholly in this zone and below `max_pfn`.
    #[inline(always)]
    unsafe fn free_one_page_in<const CHAIN: bool>(
        self,
        pfn: u64,
        order: usize,
        mt: MigrateType,
        to_tail: bool,
        in_zone: bool,
    ) {
        debug_assert_eq!(in_zone, {
            let chunk = pfn & !((1u64 << MAX_ORDER) - 1);
            // SAFETY: a raw place; the zone's span never changes.
            unsafe {
                chunk >= (*self.zone).start_pfn.0
                    && chunk + (1u64 << MAX_ORDER) <= (*self.zone).end_pfn.0.min(self.max_pfn)
            }
        });
        // Checked once here (free where the caller's order is an `Order`):
        // the merged order is then at most MAX_ORDER too.
        assert!(order <= MAX_ORDER);
        let nr_pages = 1i64 << order;
        const PB_LIMIT: usize = if PAGEBLOCK_ORDER < MAX_ORDER {
            PAGEBLOCK_ORDER
        } else {
            MAX_ORDER
        };
        // SAFETY: the method contract; every PFN touched is below max_pfn
        // (page_is_buddy checks the buddy, or the whole MAX_ORDER block is
        // in this zone) and in this zone.
        unsafe {
            let cma = (*self.zone).cma_pages > 0;
            // The buddies merged in were free already: only the block
            // freed changes NR_FREE_PAGES.
            self.account_free(nr_pages);
            let (pfn, order, cleared) = if in_zone {
                let (merged, merged_order, cleared) =
                    self.merge_in_zone::<CHAIN>(pfn, order, mt, cma);
                // (The merge stops at MAX_ORDER, given an order ≤ MAX_ORDER.)
                core::hint::assert_unchecked(merged_order <= MAX_ORDER);
                // The buddies merged below pageblock order lie in `pfn`'s
                // pageblock: out of NR_FREE_CMA_PAGES together if it is
                // CMA's (those from pageblock order were counted each).
                if cma && order < PB_LIMIT && self.pageblock_mt(pfn) == MigrateType::Cma {
                    let below = merged_order.min(PB_LIMIT);
                    let fc = &raw mut (*self.zone).nr_free_cma;
                    st64(fc, ld64(fc) - ((1u64 << below) - nr_pages as u64));
                }
                (merged, merged_order, cleared)
            } else {
                let (mut pfn, mut order) = self.merge_edge::<false>(pfn, order, PB_LIMIT, mt, cma);
                if cma && self.pageblock_mt(pfn) == MigrateType::Cma {
                    let fc = &raw mut (*self.zone).nr_free_cma;
                    st64(fc, ld64(fc) - ((1u64 << order) - nr_pages as u64));
                }
                if (PB_LIMIT..MAX_ORDER).contains(&order) {
                    // No buddy stopped the merge below pageblock order.
                    (pfn, order) = self.merge_edge::<true>(pfn, order, MAX_ORDER, mt, cma);
                }
                (pfn, order, 0)
            };
            // cf. buddy_merge_likely(): if the next-larger buddy is free,
            // this block will probably merge soon; keep it at the tail so
            // it is not handed out first. (The buddy that stopped the
            // merge is the last one looked at, as in Linux.)
            let to_tail = to_tail
                || (order < MAX_ORDER - 1 && {
                    let buddy_pfn = pfn ^ (1 << order);
                    let higher_page = buddy_pfn & pfn;
                    let higher_buddy = higher_page ^ (1 << (order + 1));
                    self.page_is_buddy(higher_buddy, order + 1)
                });
            self.link_clearing(pfn as u32, order, mt, to_tail, cleared);
        }
    }

    /// Take the smallest free block of at least `order` from `mt`'s lists
    /// and split it down, the halves going to `mt`'s lists
    /// (cf. `__rmqueue_smallest()`).
    ///
    /// The search reads one word, the type's mask of non-empty orders.
    /// `expand()` is one list write, one descriptor write and one
    /// `nr_free` increment per level: the halves go to `mt`'s lists below
    /// the order the block was found at, which the search has just seen
    /// empty ([`ZoneFree::link_half`]), and the CMA count and the
    /// mask take all the halves at once.
    #[inline(always)]
    pub(crate) unsafe fn rmqueue_smallest(self, order: usize, mt: MigrateType) -> Option<u32> {
        // SAFETY: the method contract.
        unsafe {
            rmqueue_smallest_outlined::<EXCL>(self.map, self.max_pfn, self.zone, self.zi, order, mt)
        }
    }

    /// [`ZoneFree::rmqueue_smallest`] inlined into its caller (the
    /// exclusive side's allocation with the per-CPU lists off, and its
    /// refill of them).
    #[inline(always)]
    pub(crate) unsafe fn rmqueue_smallest_inline(
        self,
        order: usize,
        mt: MigrateType,
    ) -> Option<u32> {
        // SAFETY: the method contract.
        unsafe { self.rmqueue_smallest_head::<true>(order, mt, |_| {}, || None) }
    }

    /// [`ZoneFree::rmqueue_smallest_inline`] with `CLEAN_HEAD`: the head
    /// leaves with BUDDY cleared and its links NIL; without, it keeps
    /// them for a caller that rewrites the whole descriptor at once.
    /// `prep(head)` runs before the unlink and the split (see there); with
    /// `mt`'s lists empty, the
    /// result is `on_empty()`'s (a call there is a jump too).
    ///
    /// # Safety
    /// The method contract; without `CLEAN_HEAD`, `prep` rewrites the
    /// head's flags and links (as [`ZoneFree::rmqueue_smallest_taken`]
    /// says).
    #[inline(always)]
    unsafe fn rmqueue_smallest_head<const CLEAN_HEAD: bool>(
        self,
        order: usize,
        mt: MigrateType,
        prep: impl FnOnce(u32),
        on_empty: impl FnOnce() -> Option<u32>,
    ) -> Option<u32> {
        // SAFETY: the method contract.
        unsafe {
            let m = self.mask_of(mt.index());
            let mask = *m;
            let Some(current) = first_nonempty(mask, order) else {
                return on_empty();
            };
            let list = &raw mut (*self.zone).free_area[current].free_list[mt.index()];
            let head = ld32(&raw mut (*list).head);
            // cf. del_page_from_free_list(), with the mask left to the end.
            let p = self.page(u64::from(head));
            let links = (&raw const (*p).prev).cast::<u64>().read_unaligned();
            if EXCL && !CLEAN_HEAD && links as u32 == (links >> 32) as u32 {
                // The block alone on its list (a MAX_ORDER block split and
                // merged back; equal links are both the end link of the
                // list it was read from, as in `unlink_known`): the list
                // empties, at the place just read, with one store, and the
                // rest knows it did. (What follows below, for this case;
                // written out, not joined with the general case, where the
                // compiler would keep both alive.)
                debug_assert_eq!(links as u32, LIST_END + mt as u32);
                prep(head);
                list.cast::<u64>().write_unaligned(u64::MAX);
                let nr_free = &raw mut (*self.zone).free_area[current].nr_free;
                st64(nr_free, ld64(nr_free) - 1);
                if (*self.zone).cma_pages > 0 {
                    self.uncount_cma(head, current);
                }
                debug_assert_eq!(mask & ((1u16 << current) - (1u16 << order)), 0);
                *m = mask.wrapping_sub(1u16 << order);
                if mt == MigrateType::Cma {
                    let fc = &raw mut (*self.zone).nr_free_cma;
                    st64(fc, ld64(fc) + (1 << current) - (1 << order));
                }
                self.account_free(-(1 << order));
                return self.expand_tail(head, order, current, mt);
            }
            let emptied = if CLEAN_HEAD {
                flags_update(p, PageFlags::EMPTY, PageFlags::BUDDY);
                let emptied = self.unlink_links_nomask(p, current);
                prep(head);
                emptied
            } else {
                // The head is the caller's to write now that its links
                // are read (early: what `prep` needs is then dead for the
                // rest, which keeps the registers for it).
                prep(head);
                self.unlink_known(current, links as u32, (links >> 32) as u32)
            };
            debug_assert!(emptied.is_none() || emptied == Some(mt.index()));
            if (*self.zone).cma_pages > 0 {
                self.uncount_cma(head, current);
            }
            // One store for the mask: the list the block left may be
            // empty, those of orders `order..current` are not (their
            // halves are linked next). Bits `order..current` are clear
            // (the search found `current` the first set one), so taking
            // `1 << order` away clears bit `current` and sets them all;
            // adding `1 << current` back keeps a list that did not empty.
            debug_assert_eq!(mask & ((1u16 << current) - (1u16 << order)), 0);
            *m = mask
                .wrapping_sub(1u16 << order)
                .wrapping_add(u16::from(emptied.is_none()) << current);
            if mt == MigrateType::Cma {
                let fc = &raw mut (*self.zone).nr_free_cma;
                st64(fc, ld64(fc) + (1 << current) - (1 << order));
            }
            self.account_free(-(1 << order));
            if EXCL && (!CLEAN_HEAD || current > order + 1) {
                // One copy of the unrolled split for the exclusive side
                // (a one-level split of the general path stays inline),
                // called last, so the call is a jump.
                return self.expand_tail(head, order, current, mt);
            }
            self.expand_loop(head, order, current, mt);
            Some(head)
        }
    }

    /// `__rmqueue()` up to where it would steal from another migrate type:
    /// from CMA first when over half the zone's free memory is there (a
    /// movable request), then `mt`'s lists, then CMA's
    /// (cf. `__rmqueue_cma_fallback()`). `None` means only
    /// `rmqueue_fallback()` could help.
    #[inline]
    pub(crate) unsafe fn rmqueue_nofallback(
        self,
        order: Order,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> Option<u32> {
        let o = order.index();
        // SAFETY: the method contract.
        unsafe {
            if flags.cma
                && ld64(&raw mut (*self.zone).nr_free_cma)
                    > ld64(&raw mut (*self.zone).free_pages) / 2
                && let Some(pfn) = self.rmqueue_smallest(o, MigrateType::Cma)
            {
                return Some(pfn);
            }
            if let Some(pfn) = self.rmqueue_smallest(o, mt) {
                return Some(pfn);
            }
            if flags.cma {
                return self.rmqueue_smallest(o, MigrateType::Cma);
            }
        }
        None
    }
}
