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
//! the exclusive side writes it. Everything else — an empty free list, an
//! object of another cache, slab or CPU (a remote free), debug caches,
//! fault injection, tracing — returns to the caller, which takes the
//! exclusive side and the general path.

#![allow(unsafe_code)]

#[cfg(test)]
mod tests;

use super::{MAX_CACHES, ObjectMemory, SlabAllocator, SlabCpu};
use crate::gfp::GfpFlags;
use crate::kmalloc::{KMALLOC_MAX_CACHE_SIZE, SIZE_TO_SLOT};

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
        if self.failslab_armed
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
            return None;
        }
        let c = &self.caches[slot];
        cc.freelist = mem.read_u64(obj + u64::from(c.offset));
        cc.inuse += 1;
        pc.hint = slot as u8;
        if gfp.contains(GfpFlags::ZERO) {
            mem.fill(obj, c.object_size as usize, 0);
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
        let hint = pc.hint as usize & (MAX_CACHES - 1);
        let c = &self.caches[hint];
        let cc = &mut pc.slabs[hint];
        let off = addr.wrapping_sub(cc.slab);
        let head = cc.freelist;
        if !c.is_object_offset(off) || head == addr {
            return false;
        }
        mem.write_u64(addr + u64::from(c.offset), head);
        cc.freelist = addr;
        cc.inuse -= 1;
        true
    }
}
