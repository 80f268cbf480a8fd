//! SLUB's fast paths on one CPU without the exclusive lock (cf.
//! `slab_alloc_node()` / `do_slab_free()`, which in Linux touch only
//! `this_cpu_ptr(s->cpu_slab)` with a `this_cpu_cmpxchg_double`).
//!
//! The allocator sits in a [`crate::sync::BrLock`], as the page allocator
//! does ([`crate::page_alloc::smp`]): [`SlabAllocator::kmalloc_cpu`] and
//! [`SlabAllocator::kfree_cpu`] run holding only their CPU's flag, next to
//! the same calls on other CPUs, and touch only
//! * the CPU's own [`SlabCpu`] slot (its `kmem_cache_cpu` of every cache
//!   and its free hint), and
//! * objects on that CPU's free lists, or the one the caller hands back:
//!   owned, reached through the caller's [`ObjectMemory`].
//!
//! Cache geometry (`offset`, `size`, `object_size`) is read-only here; only
//! the exclusive side writes it.
//!
//! Behind the fast paths, still under the CPU's flag alone, the slow paths
//! that only move slabs between a cache's lists take that cache's node
//! `list_lock` ([`NodeCell`], cf. `n->list_lock`):
//! * an empty CPU free list freezes the first partial (else empty) slab of
//!   the cache, unfreezing the full CPU slab to the full count (cf.
//!   `___slab_alloc()` → `get_partial_node()`);
//! * a free into a slab no CPU has frozen — a remote free of another CPU's
//!   object into a full or partial slab — pushes onto that slab's free
//!   list and moves it full → partial (tail) or partial → empty (cf.
//!   `__slab_free()`).
//!
//! What still returns to the caller for the exclusive side and the general
//! path: a new slab and an empty slab past the reserve (both go through
//! the page allocator: cf. `new_slab()`, `discard_slab()`), a free into
//! another CPU's frozen slab (Linux pushes it onto `slab->freelist` with a
//! `cmpxchg_double`; here it goes onto that CPU's free list, which only the
//! exclusive side may touch), double and invalid frees (to be reported),
//! debug caches, fault injection and tracing. See [`super::KmemCacheNode`]
//! for what protects each field.

#![allow(unsafe_code)]

#[cfg(test)]
mod tests;

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{
    CacheSlot, FROZEN, KmemCacheNode, MAX_CACHES, MetaAccess, NIL, ObjectMemory, SLAB_EMPTY_RESERVE,
    SlabAllocator, SlabCpu, SlabMeta, slab_va,
};
use crate::gfp::GfpFlags;
use crate::kmalloc::{KMALLOC_MAX_CACHE_SIZE, SIZE_TO_SLOT};
use crate::types::{PAGE_OFFSET, PAGE_SHIFT};

/// A cache's [`KmemCacheNode`] with its `list_lock` (cf. `struct
/// kmem_cache_node`: `spinlock_t list_lock` beside the lists it guards).
///
/// Reached mutably through `&mut` by the exclusive side (no lock: no
/// shared-side holder can run), and through [`NodeCell::lock`] by a CPU
/// holding its flag of the slab `BrLock`. [`Deref`] without the lock is
/// for the exclusive side and the views it runs (as for
/// [`crate::sync::PcpCell`]).
pub(crate) struct NodeCell {
    list_lock: AtomicBool,
    node: UnsafeCell<KmemCacheNode>,
}

// SAFETY: the node is written through a shared reference only under
// `list_lock` (`NodeCell::lock`), and read without it only by the
// exclusive side of the slab lock, which excludes every `list_lock`
// holder (see the type's docs).
unsafe impl Sync for NodeCell {}

impl NodeCell {
    pub(crate) const fn new() -> NodeCell {
        NodeCell {
            list_lock: AtomicBool::new(false),
            node: UnsafeCell::new(KmemCacheNode::EMPTY),
        }
    }

    /// `spin_lock(&n->list_lock)`.
    ///
    /// # Safety
    /// The caller holds one CPU's flag of the slab `BrLock` (so no
    /// exclusive holder touches the node meanwhile).
    #[inline]
    pub(crate) unsafe fn lock(&self) -> NodeGuard<'_> {
        while self
            .list_lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.list_lock.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        NodeGuard { cell: self }
    }
}

impl Deref for NodeCell {
    type Target = KmemCacheNode;
    #[inline(always)]
    fn deref(&self) -> &KmemCacheNode {
        // SAFETY: see the `Sync` impl: only the exclusive side (or a
        // single-threaded owner) reads the node without its lock.
        unsafe { &*self.node.get() }
    }
}

impl DerefMut for NodeCell {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut KmemCacheNode {
        self.node.get_mut()
    }
}

impl Clone for NodeCell {
    fn clone(&self) -> Self {
        NodeCell {
            list_lock: AtomicBool::new(false),
            node: UnsafeCell::new(**self),
        }
    }
}

impl core::fmt::Debug for NodeCell {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}

/// A held `list_lock`: the node, mutably.
pub(crate) struct NodeGuard<'a> {
    cell: &'a NodeCell,
}

impl Deref for NodeGuard<'_> {
    type Target = KmemCacheNode;
    #[inline(always)]
    fn deref(&self) -> &KmemCacheNode {
        // SAFETY: `list_lock` is held and the caller of `lock` holds a CPU
        // flag, so nothing else reaches the node.
        unsafe { &*self.cell.node.get() }
    }
}

impl DerefMut for NodeGuard<'_> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut KmemCacheNode {
        // SAFETY: as for `deref`; `&mut self` makes the reference unique.
        unsafe { &mut *self.cell.node.get() }
    }
}

impl Drop for NodeGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.cell.list_lock.store(false, Ordering::Release);
    }
}

/// The per-frame overlay (cf. the `struct slab`s inside `mem_map`): the
/// written part through `&mut` for the exclusive side, one entry at a time
/// for a `list_lock` holder ([`LockedMetas`]), `SlabMeta::cache` by
/// anyone ([`MetaTable::cache_of`]).
///
/// The table covers every lowmem frame but is written only as far as the
/// slab layer has reached ([`MetaTable::extend_to`]), the way Linux's
/// `DEFERRED_STRUCT_PAGE_INIT` leaves descriptors unwritten until they are
/// needed: an entry at or past `len` is no slab's and reads as
/// [`SlabMeta::EMPTY`] through the bounds check every reader already
/// makes. Writing all of it at boot (3.5 MiB for 896 MiB of lowmem) was a
/// third of the instructions the boot ran before `READY`.
pub struct MetaTable<'a> {
    /// Non-null (a slice's pointer): so `metas.get(pfn)` needs no test
    /// for a null `Option` after its bounds check.
    ptr: NonNull<SlabMeta>,
    /// Entries written so far (`[0, len)`); grows only on the exclusive
    /// side, so a flag holder reading it sees no change while it reads.
    len: usize,
    /// Entries the memory holds: the lowmem frames.
    cap: usize,
    _owns: PhantomData<&'a mut [SlabMeta]>,
}

/// Frames whose entries [`MetaTable::extend_to`] writes at least at once
/// (2 MiB of frames, 8 KiB of entries), so a cache growing upwards does
/// not extend the table on every new slab.
const META_EXTEND_FRAMES: usize = 512;

// SAFETY: the table is a `&'a mut [SlabMeta]` whose entries are written
// through a shared reference only under their cache's `list_lock`
// (`LockedMetas`), and whose `cache` fields and `len` only the exclusive
// side writes; the `Deref` reading the whole slice is for the exclusive
// side.
unsafe impl Sync for MetaTable<'_> {}
// SAFETY: owning the table owns the borrowed slice.
unsafe impl Send for MetaTable<'_> {}

impl<'a> MetaTable<'a> {
    /// A table over `metas`, none of it written yet: what the memory
    /// holds does not matter.
    pub(crate) fn new(metas: &'a mut [SlabMeta]) -> MetaTable<'a> {
        MetaTable {
            len: 0,
            cap: metas.len(),
            ptr: NonNull::from(metas).cast(),
            _owns: PhantomData,
        }
    }

    /// Frames the table can describe (the slab layer uses no frame at or
    /// beyond it).
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// Makes the entries of frames below `end` valid, writing
    /// [`SlabMeta::EMPTY`] into those not yet written (at least
    /// [`META_EXTEND_FRAMES`] at once); `false`, with nothing changed, if
    /// `end` is past the table. Before the slab layer makes a frame a
    /// slab's or `kmalloc_large`'s.
    pub(crate) fn extend_to(&mut self, end: usize) -> bool {
        if end > self.cap {
            return false;
        }
        if end > self.len {
            let new_len = end.next_multiple_of(META_EXTEND_FRAMES).min(self.cap);
            // SAFETY: `[len, new_len)` lies inside the borrowed slice, and
            // `&mut self` is the exclusive side: nobody reads past `len`.
            let fresh = unsafe {
                core::slice::from_raw_parts_mut(self.ptr.as_ptr().add(self.len), new_len - self.len)
            };
            fresh.fill(SlabMeta::EMPTY);
            self.len = new_len;
        }
        true
    }

    /// `SlabMeta::cache` of frame `pfn` (0 past the written part): written
    /// only by the exclusive side, so any CPU holding its flag may read it
    /// (cf. `virt_to_slab()` → `slab->slab_cache`).
    #[inline(always)]
    pub(crate) fn cache_of(&self, pfn: usize) -> u16 {
        if pfn >= self.len {
            return 0;
        }
        // SAFETY: in bounds; only this field is read, by a raw place
        // expression (no reference to the entry, whose other fields a
        // `list_lock` holder may be writing), and no one writes it
        // outside the exclusive side.
        unsafe { core::ptr::addr_of!((*self.ptr.as_ptr().add(pfn)).cache).read() }
    }
}

impl Deref for MetaTable<'_> {
    type Target = [SlabMeta];
    #[inline(always)]
    fn deref(&self) -> &[SlabMeta] {
        // SAFETY: the written part of the slice borrowed for 'a; see the
        // `Sync` impl for who reads it whole.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for MetaTable<'_> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [SlabMeta] {
        // SAFETY: the written part of the slice borrowed mutably for 'a;
        // `&mut self` is unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// One cache's overlay entries, for the holder of its `list_lock`.
pub(crate) struct LockedMetas<'t, 'a> {
    table: &'t MetaTable<'a>,
    /// The cache's `SlabMeta::cache` value (slot + 1).
    cache: u16,
}

impl MetaAccess for LockedMetas<'_, '_> {
    #[inline(always)]
    fn at(&mut self, pfn: u32) -> &mut SlabMeta {
        let pfn = pfn as usize;
        assert!(
            pfn < self.table.len && self.table.cache_of(pfn) == self.cache,
            "list_lock holder reached another cache's slab"
        );
        // SAFETY: in bounds, and the entry belongs to the cache whose
        // `list_lock` the creator of `self` holds (checked above), which
        // makes it this holder's alone; `&mut self` keeps the returned
        // reference unique while it lives.
        unsafe { &mut *self.table.ptr.as_ptr().add(pfn) }
    }
}

impl SlabAllocator<'_> {
    /// `kmalloc(size, gfp)` from CPU `cpu`'s free list of the size class,
    /// or `None` (nothing changed) when the general path must decide.
    ///
    /// # Safety
    /// The caller holds `cpu`'s flag of the [`crate::sync::BrLock`] this
    /// allocator lives in, runs on `cpu`, and `cpu < NR_CPUS`.
    #[inline(always)]
    pub unsafe fn kmalloc_cpu<M: ObjectMemory>(
        &self,
        cpu: usize,
        mem: &M,
        size: usize,
        gfp: GfpFlags,
    ) -> Option<u64> {
        // `failslab` never fails `__GFP_NOFAIL` (cf. `__should_failslab()`):
        // for the kernel heap's constant flags the test compiles away.
        if (self.failslab_armed && !gfp.contains(GfpFlags::NOFAIL))
            || size.wrapping_sub(1) >= KMALLOC_MAX_CACHE_SIZE
            || gfp.intersects(GfpFlags::DMA.union(GfpFlags::ACCOUNT))
        {
            return None;
        }
        let slot = SIZE_TO_SLOT[((size - 1) >> 3) & (SIZE_TO_SLOT.len() - 1)] as usize;
        // SAFETY: the caller holds `cpu`'s flag: the slot is ours alone.
        let pc: &mut SlabCpu = unsafe { self.pcpu[cpu].slot_mut() };
        let cc = &mut pc.slabs[slot];
        let obj = cc.freelist;
        if obj == 0 {
            // SAFETY: the caller's contract, passed on.
            return unsafe { self.refill_cpu(cpu, mem, slot, gfp) };
        }
        cc.freelist = mem.read_u64(obj + u64::from(cc.offset));
        pc.hint = CacheSlot::new(slot);
        if gfp.contains(GfpFlags::ZERO) {
            mem.fill(obj, self.caches[slot].object_size as usize, 0);
        }
        Some(obj)
    }

    /// `kfree(addr)` onto CPU `cpu`'s free list when `addr` is an object
    /// of that CPU's slab of the cache it used last (the hint), else
    /// `false` with nothing changed.
    ///
    /// # Safety
    /// As for [`SlabAllocator::kmalloc_cpu`]; and the caller owns the
    /// object it frees, as every caller of `kfree` must.
    #[inline(always)]
    pub unsafe fn kfree_cpu<M: ObjectMemory>(&self, cpu: usize, mem: &M, addr: u64) -> bool {
        // SAFETY: the caller holds `cpu`'s flag.
        let pc: &mut SlabCpu = unsafe { self.pcpu[cpu].slot_mut() };
        let hint = pc.hint as usize;
        let cc = &mut pc.slabs[hint];
        let off = addr.wrapping_sub(cc.slab);
        let head = cc.freelist;
        if !cc.is_object_offset(off) || head == addr {
            // SAFETY: the caller's contract, passed on.
            return unsafe { self.kfree_cpu_slow(cpu, mem, addr) };
        }
        super::cpu::set_freepointer_fast(mem, addr + u64::from(cc.offset), head);
        cc.freelist = addr;
        true
    }

    /// cf. `___slab_alloc()` → `get_partial_node()` under the CPU's flag:
    /// CPU `cpu`'s free list of plain cache `slot` is empty, so its slab
    /// (if any) is full. Under the cache's `list_lock`, move that slab to
    /// the full count, freeze the first partial slab — else an empty one —
    /// in its place (cf. `acquire_slab()` + `get_freelist()`), and hand out
    /// its first object. `None`, nothing changed, when the cache is a debug
    /// one or has no listed slab with a free object (a new slab needs the
    /// page allocator: the exclusive side's `new_slab()`).
    ///
    /// # Safety
    /// As for [`SlabAllocator::kmalloc_cpu`].
    #[cold]
    #[inline(never)]
    unsafe fn refill_cpu<M: ObjectMemory>(
        &self,
        cpu: usize,
        mem: &M,
        slot: usize,
        gfp: GfpFlags,
    ) -> Option<u64> {
        let slot = slot & (MAX_CACHES - 1);
        let c = &self.caches[slot];
        if !c.live || c.is_debug() {
            return None;
        }
        // SAFETY: the caller holds `cpu`'s flag: the slot is ours alone.
        let pc: &mut SlabCpu = unsafe { self.pcpu[cpu].slot_mut() };
        let cc = &mut pc.slabs[slot];
        debug_assert_eq!(cc.freelist, 0);
        // SAFETY: the caller holds a CPU flag of the slab lock.
        let mut node = unsafe { c.node.lock() };
        let mut metas = LockedMetas {
            table: &self.metas,
            cache: slot as u16 + 1,
        };
        let pfn = if node.partial.head != NIL {
            node.partial.pop(&mut metas)
        } else if node.empty.head != NIL {
            node.empty.pop(&mut metas)
        } else {
            return None;
        };
        if cc.slab != 0 {
            // Its every object handed out: the overlay entry says so
            // already (how it was frozen); it only joins the full count
            // (cf. deactivate_slab()'s M_FULL_NOLIST).
            metas.at(cc.slab_pfn()).prev = NIL;
            node.full.nr += 1;
            node.list_inuse += u64::from(c.objects);
        }
        let m = metas.at(pfn);
        let base = slab_va(pfn);
        let obj = base + u64::from(m.freelist);
        cc.freelist = mem.read_u64(obj + u64::from(c.offset));
        cc.slab = base;
        cc.objs_end = c.objs_end;
        cc.pfn = pfn;
        node.list_inuse -= u64::from(m.inuse);
        m.freelist = NIL;
        m.inuse = c.objects as u16;
        m.prev = FROZEN;
        drop(node);
        pc.hint = CacheSlot::new(slot);
        if gfp.contains(GfpFlags::ZERO) {
            mem.fill(obj, c.object_size as usize, 0);
        }
        Some(obj)
    }

    /// `kfree(addr)` that missed the hint, under CPU `cpu`'s flag (cf.
    /// `kfree()` → `virt_to_slab()` → `do_slab_free()` / `__slab_free()`):
    /// the cache from the overlay; an object of this CPU's slab of it goes
    /// onto this CPU's free list, one of a slab no CPU has frozen onto the
    /// slab's own, under the cache's `list_lock`, moving the slab full →
    /// partial (to the tail) or partial → empty. `false`, nothing changed,
    /// for what the exclusive side must do (see the module docs).
    ///
    /// # Safety
    /// As for [`SlabAllocator::kfree_cpu`].
    #[inline(never)]
    unsafe fn kfree_cpu_slow<M: ObjectMemory>(&self, cpu: usize, mem: &M, addr: u64) -> bool {
        let pfn = (addr.wrapping_sub(PAGE_OFFSET) >> PAGE_SHIFT) as usize;
        let slot = (self.metas.cache_of(pfn) as usize).wrapping_sub(1);
        let Some(c) = self.caches.get(slot) else {
            return false;
        };
        // A slot no live cache holds is `KmemCache::EMPTY`, whose plain
        // bound is 0 (and no frame names it: a destroyed cache's slabs
        // are gone): this test refuses it too.
        let off = addr & c.slab_mask;
        if !c.is_plain_object_offset(off) {
            return false;
        }
        debug_assert!(c.live);
        let base = addr - off;
        // SAFETY: the caller holds `cpu`'s flag: the slot is ours alone.
        let pc: &mut SlabCpu = unsafe { self.pcpu[cpu].slot_mut() };
        let cc = &mut pc.slabs[slot];
        if cc.slab == base {
            // This CPU's slab of another cache than the hint's.
            if cc.freelist == addr {
                return false; // a double free, for the general path to report
            }
            mem.write_u64(addr + u64::from(cc.offset), cc.freelist);
            cc.freelist = addr;
            pc.hint = CacheSlot::new(slot);
            return true;
        }
        // A tail call (five arguments, all in registers): this function
        // keeps no value across it, so it saves no registers, and a free
        // that the hint missed but this CPU's slab takes stays cheap.
        // SAFETY: the caller's contract, passed on.
        unsafe { self.kfree_cpu_listed(cpu, mem, addr, slot) }
    }

    /// [`Self::kfree_cpu_slow`] into a slab that is not this CPU's: under
    /// the cache's `list_lock`, push onto the slab's own free list and
    /// move it full → partial (to the tail); the slab's last object, a
    /// double free and another CPU's slab go on to
    /// [`Self::kfree_cpu_slow_last`]. `slot` is a plain cache whose slab
    /// `addr` is an object start of (the caller checked).
    ///
    /// # Safety
    /// As for [`SlabAllocator::kfree_cpu`].
    #[inline(never)]
    unsafe fn kfree_cpu_listed<M: ObjectMemory>(
        &self,
        cpu: usize,
        mem: &M,
        addr: u64,
        slot: usize,
    ) -> bool {
        let slot = slot & (MAX_CACHES - 1);
        let c = &self.caches[slot];
        let off = (addr & c.slab_mask) as u32;
        let base = addr - u64::from(off);
        let pfn = (addr.wrapping_sub(PAGE_OFFSET) >> PAGE_SHIFT) as u32;
        let head = pfn & !c.pfn_mask;
        // SAFETY: the caller holds a CPU flag of the slab lock.
        let mut node = unsafe { c.node.lock() };
        let mut metas = LockedMetas {
            table: &self.metas,
            cache: slot as u16 + 1,
        };
        let m = metas.at(head);
        let prior = m.freelist;
        // One test for everything but a push that leaves the slab in use:
        // another CPU's slab, a double free (the object heads the free
        // list — NIL is no offset — or the slab is empty), the last object.
        if m.prev == FROZEN || prior == off || m.inuse <= 1 {
            drop(node);
            // SAFETY: the caller's contract, passed on.
            return unsafe { self.kfree_cpu_slow_last(cpu, mem, addr, slot) };
        }
        let prior_va = if prior == NIL {
            0
        } else {
            base + u64::from(prior)
        };
        mem.write_u64(addr + u64::from(c.offset), prior_va);
        m.freelist = off;
        m.inuse -= 1;
        node.list_inuse -= 1;
        if prior == NIL {
            // Full → partial, to the tail: `SlabList::push_tail` on the
            // entry already in hand (one overlay check fewer).
            let tail = node.partial.tail;
            m.prev = tail;
            m.next = NIL;
            if tail != NIL {
                metas.at(tail).next = head;
            } else {
                node.partial.head = head;
            }
            node.partial.tail = head;
            node.partial.nr += 1;
            node.full.nr -= 1;
        }
        drop(node);
        // SAFETY: the caller holds `cpu`'s flag: the slot is ours alone.
        let pc: &mut SlabCpu = unsafe { self.pcpu[cpu].slot_mut() };
        pc.hint = CacheSlot::new(slot);
        true
    }

    /// [`Self::kfree_cpu_listed`]'s rare cases, under the `list_lock` again
    /// and tested again (other CPUs may have freed into the slab between):
    /// the last object of a slab (partial or full → empty, unless the
    /// slab would go back to the page allocator), and what the exclusive
    /// side must do — another CPU's slab, a double free — `false`.
    ///
    /// # Safety
    /// As for [`SlabAllocator::kfree_cpu`].
    #[cold]
    #[inline(never)]
    unsafe fn kfree_cpu_slow_last<M: ObjectMemory>(
        &self,
        cpu: usize,
        mem: &M,
        addr: u64,
        slot: usize,
    ) -> bool {
        let c = &self.caches[slot & (MAX_CACHES - 1)];
        let base = addr - (addr & c.slab_mask);
        let pfn = (addr.wrapping_sub(PAGE_OFFSET) >> PAGE_SHIFT) as u32;
        let head = pfn & !c.pfn_mask;
        // SAFETY: the caller holds a CPU flag of the slab lock.
        let mut node = unsafe { c.node.lock() };
        let mut metas = LockedMetas {
            table: &self.metas,
            cache: slot as u16 + 1,
        };
        let m = metas.at(head);
        let prior = m.freelist;
        let prior_va = if prior == NIL {
            0
        } else {
            base + u64::from(prior)
        };
        if m.prev == FROZEN
            || prior_va == addr
            || m.inuse == 0
            || (m.inuse == 1 && node.empty.nr >= SLAB_EMPTY_RESERVE)
        {
            // Another CPU's slab, a double free, or a slab that would go
            // back to the page allocator: the exclusive side's.
            return false;
        }
        // The slab may have changed while the lock was dropped (other
        // CPUs' frees into it): the general push and list moves.
        mem.write_u64(addr + u64::from(c.offset), prior_va);
        m.freelist = (addr - base) as u32;
        m.inuse -= 1;
        let now_empty = m.inuse == 0;
        node.list_inuse -= 1;
        if prior == NIL {
            // Full → partial (or → empty, a one-object slab).
            node.full.nr -= 1;
            if now_empty {
                node.empty.push(&mut metas, head);
            } else {
                node.partial.push_tail(&mut metas, head);
            }
        } else if now_empty {
            node.partial.remove(&mut metas, head);
            node.empty.push(&mut metas, head);
        }
        drop(node);
        // SAFETY: the caller holds `cpu`'s flag: the slot is ours alone.
        let pc: &mut SlabCpu = unsafe { self.pcpu[cpu].slot_mut() };
        pc.hint = CacheSlot::new(slot);
        true
    }
}
