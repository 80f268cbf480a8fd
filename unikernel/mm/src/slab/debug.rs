//! SLUB debugging: red zones, poisoning, free-list consistency (cf. the
//! `CONFIG_SLUB_DEBUG` half of `mm/slub.c`: `init_object()`,
//! `check_object()`, `check_valid_pointer()`, `on_freelist()`,
//! `alloc_debug_processing()`, `free_debug_processing()`).
//!
//! Debug caches never freeze a CPU slab, so every object goes through
//! here. Object layout with debugging:
//!
//! ```text
//! | object_size | red zone → inuse_off | free pointer | orig_size | pad |
//!   ^ kmalloc: bytes [orig_size, object_size) are red zone too
//! ```
//!
//! A corruption is counted, reported through the hook, and the object is
//! quarantined: counted in use (and in `quarantined`), never handed out
//! again, released only with its cache.

use super::{
    CacheId, Corruption, CorruptionKind, KmemCache, NIL, ObjectMemory, POISON_END, POISON_FREE,
    PageSource, SLUB_RED_ACTIVE, SLUB_RED_INACTIVE, SlabAllocator, SlabError, SlabFlags, list_kind,
    slab_va,
};
use crate::gfp::GfpFlags;

/// cf. `init_object()`: poison a free object (not with a constructor) and
/// set its red zone for the state.
pub(super) fn init_object<M: ObjectMemory>(c: &KmemCache, mem: &M, p: u64, active: bool) {
    let os = c.object_size as u64;
    if !active && c.flags.contains(SlabFlags::POISON) && c.ctor.is_none() {
        mem.fill(p, os as usize - 1, POISON_FREE);
        mem.write_u8(p + os - 1, POISON_END);
    }
    if c.flags.contains(SlabFlags::RED_ZONE) {
        let val = if active {
            SLUB_RED_ACTIVE
        } else {
            SLUB_RED_INACTIVE
        };
        mem.fill(p + os, (c.inuse_off - c.object_size) as usize, val);
    }
}

/// cf. `check_valid_pointer()`: 0 (end) or an object start of this slab.
fn valid_pointer(c: &KmemCache, base: u64, p: u64) -> bool {
    if p == 0 {
        return true;
    }
    let Some(off) = p.checked_sub(base) else {
        return false;
    };
    off < c.objs_end as u64 && off.is_multiple_of(c.size as u64)
}

/// cf. `check_object(…, SLUB_RED_INACTIVE)`: a free object's red zone and
/// poison are intact. Returns the kind and object offset of the first bad
/// byte.
pub(super) fn check_free_object<M: ObjectMemory>(
    c: &KmemCache,
    mem: &M,
    p: u64,
) -> Option<(CorruptionKind, u32)> {
    let os = c.object_size;
    if c.flags.contains(SlabFlags::RED_ZONE)
        && let Some(i) = mem.check(
            p + os as u64,
            (c.inuse_off - os) as usize,
            SLUB_RED_INACTIVE,
        )
    {
        return Some((CorruptionKind::RedZone, os + i as u32));
    }
    if c.flags.contains(SlabFlags::POISON) && c.ctor.is_none() {
        if let Some(i) = mem.check(p, os as usize - 1, POISON_FREE) {
            return Some((CorruptionKind::Poison, i as u32));
        }
        if mem.read_u8(p + os as u64 - 1) != POISON_END {
            return Some((CorruptionKind::Poison, os - 1));
        }
    }
    None
}

/// cf. `check_object(…, SLUB_RED_ACTIVE)` with `kmalloc_redzone`: an
/// allocated object's red zone, and the bytes between its requested size
/// and `object_size`, are intact.
fn check_active_object<M: ObjectMemory>(c: &KmemCache, mem: &M, p: u64) -> Option<u32> {
    if !c.flags.contains(SlabFlags::RED_ZONE) {
        return None;
    }
    let os = c.object_size;
    if let Some(i) = mem.check(p + os as u64, (c.inuse_off - os) as usize, SLUB_RED_ACTIVE) {
        return Some(os + i as u32);
    }
    let orig = (mem.read_u64(p + c.orig_off as u64) as u32).min(os);
    mem.check(p + orig as u64, (os - orig) as usize, SLUB_RED_ACTIVE)
        .map(|i| orig + i as u32)
}

/// cf. `on_freelist()`: is `addr` on the free list starting at offset
/// `first` of the slab at `base`? The walk is bounded by the object count
/// and stops at an invalid pointer.
fn on_freelist<M: ObjectMemory>(c: &KmemCache, mem: &M, base: u64, first: u32, addr: u64) -> bool {
    if first == NIL {
        return false;
    }
    let mut p = base + first as u64;
    for _ in 0..c.objects {
        if p == addr {
            return true;
        }
        let next = mem.read_u64(p + c.offset as u64);
        if next == 0 || !valid_pointer(c, base, next) {
            return false;
        }
        p = next;
    }
    false
}

impl SlabAllocator<'_> {
    /// cf. `alloc_debug_processing()` inside `___slab_alloc()`: take one
    /// object from a listed slab, check it, and make it active. A corrupted
    /// object is quarantined and the next one tried; a corrupted free
    /// pointer isolates the rest of that slab's free list.
    #[inline(never)]
    pub(super) fn alloc_debug<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
        orig_size: usize,
    ) -> Result<u64, SlabError> {
        loop {
            let pfn = self.get_slab(mem, pages, slot, gfp)?;
            let before = list_kind(&self.metas[pfn as usize]);
            let c = &mut self.caches[slot];
            let base = slab_va(pfn);
            let m = &mut self.metas[pfn as usize];
            let obj = base + m.freelist as u64;
            let next = mem.read_u64(obj + c.offset as u64);
            if !valid_pointer(c, base, next) {
                // cf. "Freechain corrupt" → slab_fix("Isolate corrupted freechain")
                let lost = c.objects - m.inuse as u32;
                m.freelist = NIL;
                m.inuse = c.objects as u16;
                c.node.list_inuse += lost as u64;
                c.quarantined += lost as u64;
                let offset = Some(c.offset);
                self.relist(pages, slot, pfn, before);
                self.corrupt(slot, CorruptionKind::FreePointer, obj, offset);
                continue;
            }
            m.freelist = if next == 0 { NIL } else { (next - base) as u32 };
            m.inuse += 1;
            c.node.list_inuse += 1;
            let bad = check_free_object(c, mem, obj);
            if bad.is_some() {
                c.quarantined += 1;
            }
            self.relist(pages, slot, pfn, before);
            if let Some((kind, off)) = bad {
                self.corrupt(slot, kind, obj, Some(off));
                continue;
            }
            let c = &self.caches[slot];
            init_object(c, mem, obj, true);
            if c.flags.contains(SlabFlags::RED_ZONE) {
                let orig = orig_size.min(c.object_size as usize);
                mem.write_u64(obj + c.orig_off as u64, orig as u64);
                mem.fill(
                    obj + orig as u64,
                    c.object_size as usize - orig,
                    SLUB_RED_ACTIVE,
                );
            }
            if gfp.contains(GfpFlags::ZERO) {
                let len = if c.flags.contains(SlabFlags::RED_ZONE) {
                    orig_size
                } else {
                    c.object_size as usize
                };
                mem.fill(obj, len.min(c.object_size as usize), 0);
            }
            return Ok(obj);
        }
    }

    /// cf. `free_debug_processing()`: the object (already known to be an
    /// object start of this cache) must not be free already and its red
    /// zones must be intact; then it is poisoned and red-zoned as free. On
    /// error the object is quarantined and nothing else changes.
    pub(super) fn free_debug_checks<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        _pages: &S,
        slot: usize,
        head: u32,
        addr: u64,
    ) -> Result<(), Corruption> {
        let c = &self.caches[slot];
        let base = slab_va(head);
        if on_freelist(c, mem, base, self.metas[head as usize].freelist, addr) {
            self.quarantine_free_object(mem, slot, head, addr);
            return Err(self.corrupt(slot, CorruptionKind::DoubleFree, addr, None));
        }
        if let Some(off) = check_active_object(c, mem, addr) {
            // cf. slab_fix(s, "Object at 0x%p not freed")
            self.caches[slot].quarantined += 1;
            return Err(self.corrupt(slot, CorruptionKind::RedZone, addr, Some(off)));
        }
        init_object(c, mem, addr, false);
        Ok(())
    }

    /// The size `kmalloc` was asked for, where a red zone tracks it
    /// (cf. `get_orig_size()`).
    pub(crate) fn tracked_size<M: ObjectMemory>(&self, mem: &M, addr: u64) -> Option<usize> {
        let id: CacheId = self.cache_of(addr)?;
        let c = &self.caches[id.slot()];
        c.flags
            .contains(SlabFlags::RED_ZONE)
            .then(|| (mem.read_u64(addr + c.orig_off as u64) as usize).min(c.object_size as usize))
    }

    /// Re-track a red-zoned object's requested size (`krealloc` in place):
    /// bytes from `new_size` to `object_size` become red zone.
    pub(crate) fn set_tracked_size<M: ObjectMemory>(&self, mem: &M, addr: u64, new_size: usize) {
        let Some(id) = self.cache_of(addr) else {
            return;
        };
        let c = &self.caches[id.slot()];
        if c.flags.contains(SlabFlags::RED_ZONE) {
            let n = new_size.min(c.object_size as usize);
            mem.write_u64(addr + c.orig_off as u64, n as u64);
            mem.fill(addr + n as u64, c.object_size as usize - n, SLUB_RED_ACTIVE);
        }
    }
}
