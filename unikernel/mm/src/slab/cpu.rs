//! The allocation and free paths: the inlined fast paths over each cache's
//! active ("cpu") slab, and the out-of-line slow paths behind them (cf.
//! `slab_alloc_node()`, `___slab_alloc()`, `do_slab_free()`,
//! `__slab_free()`, `deactivate_slab()` in `mm/slub.c`).

use super::*;

impl SlabAllocator<'_> {
    // ------------------------------------------------------------------
    // Allocation
    // ------------------------------------------------------------------

    /// `kmem_cache_alloc()`: one object, `__GFP_ZERO` honoured.
    #[inline]
    pub fn kmem_cache_alloc<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        id: CacheId,
        gfp: GfpFlags,
    ) -> Result<u64, SlabError> {
        let slot = self.resolve(id)?;
        let orig = self.caches[slot].object_size as usize;
        let r = self.slab_alloc(mem, pages, slot, gfp, orig);
        if pages.trace_enabled(crate::trace::EventId::KmemCacheAlloc) {
            // `accounted`: __GFP_ACCOUNT or SLAB_ACCOUNT.
            let accounted = gfp.contains(GfpFlags::ACCOUNT)
                || self.caches[slot].flags.contains(SlabFlags::ACCOUNT);
            let stride = self.cache_stride(slot);
            let id = crate::trace::EventId::KmemCacheAlloc;
            trace_slab_alloc(pages, id, ptr_or_null(&r), (orig, stride), gfp, accounted);
        }
        r
    }

    /// `s->size` of cache `slot` (the object stride), for the `kmalloc`
    /// and `kmem_cache_alloc` tracepoints.
    pub(crate) fn cache_stride(&self, slot: usize) -> u64 {
        u64::from(self.caches[slot & (MAX_CACHES - 1)].size)
    }

    /// The fast path (cf. `slab_alloc_node()`): pop the active slab's free
    /// list. `orig_size` is what the caller asked for (tracked with red
    /// zones, cf. `kmalloc_redzone`). `failslab` is asked first, as
    /// `slab_pre_alloc_hook()` does for every cache, kmalloc's included;
    /// an injected failure changes nothing but the injection counters.
    #[inline(always)]
    pub(crate) fn slab_alloc<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
        orig_size: usize,
    ) -> Result<u64, SlabError> {
        if self.failslab_armed {
            self.should_failslab(slot & (MAX_CACHES - 1), gfp)?;
        }
        let c = &mut self.caches[slot & (MAX_CACHES - 1)];
        let obj = c.freelist;
        if obj != 0 {
            c.freelist = mem.read_u64(obj + c.offset as u64);
            c.cpu_inuse += 1;
            if gfp.contains(GfpFlags::ZERO) {
                mem.fill(obj, c.object_size as usize, 0);
            }
            return Ok(obj);
        }
        self.slab_alloc_slow(mem, pages, slot & (MAX_CACHES - 1), gfp, orig_size)
    }

    /// cf. `should_failslab()`: `Err` (as if the cache could not grow)
    /// when `failslab` injects a failure for this cache and `gfp`.
    #[cold]
    #[inline(never)]
    fn should_failslab(&mut self, slot: usize, gfp: GfpFlags) -> Result<(), SlabError> {
        let c = &self.caches[slot];
        let (flags, object_size, order) = (c.flags, c.object_size, c.order);
        let fail = self
            .failslab
            .should_failslab(flags, u64::from(object_size), gfp);
        // `times` may have run out.
        self.failslab_armed = self.failslab.attr.is_armed();
        if fail {
            return Err(SlabError::NoMemory {
                order: Order::new(order).unwrap_or(Order::ZERO),
            });
        }
        Ok(())
    }

    /// cf. `___slab_alloc()`: the active slab is exhausted (or there is
    /// none). Retire it to the full list, then freeze a partial slab, an
    /// empty one, or a new one. Debug caches allocate one checked object
    /// straight from the lists instead.
    #[cold]
    #[inline(never)]
    fn slab_alloc_slow<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
        orig_size: usize,
    ) -> Result<u64, SlabError> {
        let slot = slot & (MAX_CACHES - 1);
        let c = &mut self.caches[slot];
        if c.is_debug() {
            return self.alloc_debug(mem, pages, slot, gfp, orig_size);
        }
        let metas = &mut *self.metas;
        // Retire the exhausted active slab: with its free list empty, every
        // object is in use (or quarantined), so it goes to the full list
        // (cf. deactivate_slab() of a slab without free objects).
        let old = c.cpu_slab;
        if old != NIL {
            match metas.get_mut(old as usize) {
                Some(m) if c.freelist == 0 && c.cpu_inuse == c.objects => {
                    m.freelist = NIL;
                    m.inuse = c.cpu_inuse as u16;
                    c.list_inuse += c.cpu_inuse as u64;
                    c.cpu_inuse = 0;
                    c.cpu_slab = NIL;
                    c.full.nr += 1;
                }
                _ => self.deactivate_slab(slot),
            }
        }
        // The first partial slab, else an empty one, else a new one
        // (cf. get_partial() + new_slab()), taken off its list.
        let c = &mut self.caches[slot];
        let metas = &mut *self.metas;
        let pfn = if c.partial.head != NIL {
            c.partial.pop(metas)
        } else if c.empty.head != NIL {
            c.empty.pop(metas)
        } else {
            self.new_slab(mem, pages, slot, gfp)?
        };
        // Freeze it (cf. get_freelist()/freeze_slab()) and pop its first
        // object.
        let c = &mut self.caches[slot];
        let Some(m) = self.metas.get_mut(pfn as usize) else {
            unreachable!("slab {pfn} outside the overlay")
        };
        let obj = slab_va(pfn) + m.freelist as u64;
        c.cpu_inuse = m.inuse as u32 + 1;
        c.list_inuse -= m.inuse as u64;
        c.cpu_slab = pfn;
        m.freelist = NIL;
        m.inuse = c.objects as u16;
        c.freelist = mem.read_u64(obj + c.offset as u64);
        if gfp.contains(GfpFlags::ZERO) {
            mem.fill(obj, c.object_size as usize, 0);
        }
        Ok(obj)
    }

    /// A slab with a free object, on its list: the first partial one, else
    /// an empty one, else a new one (cf. `get_partial()` + `new_slab()`).
    pub(super) fn get_slab<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        gfp: GfpFlags,
    ) -> Result<u32, SlabError> {
        let c = &self.caches[slot];
        if c.partial.head != NIL {
            return Ok(c.partial.head);
        }
        if c.empty.head != NIL {
            return Ok(c.empty.head);
        }
        let pfn = self.new_slab(mem, pages, slot, gfp)?;
        self.caches[slot].empty.push(self.metas, pfn);
        Ok(pfn)
    }

    /// cf. `deactivate_slab()`: hand the active slab's free list back to its
    /// head frame and put it on the list its state calls for.
    pub(crate) fn deactivate_slab(&mut self, slot: usize) {
        let c = &mut self.caches[slot];
        let pfn = c.cpu_slab;
        if pfn == NIL {
            return;
        }
        let m = &mut self.metas[pfn as usize];
        m.freelist = if c.freelist == 0 {
            NIL
        } else {
            (c.freelist - slab_va(pfn)) as u32
        };
        m.inuse = c.cpu_inuse as u16;
        c.list_inuse += c.cpu_inuse as u64;
        c.cpu_inuse = 0;
        c.freelist = 0;
        c.cpu_slab = NIL;
        let kind = list_kind(m);
        c.list_push(self.metas, kind, pfn);
    }

    // ------------------------------------------------------------------
    // Free
    // ------------------------------------------------------------------

    /// `kmem_cache_free()`: the object must belong to `id`
    /// ([`InvalidFreeKind::WrongCache`] otherwise, nothing freed).
    #[inline]
    pub fn kmem_cache_free<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        id: CacheId,
        addr: u64,
    ) -> Result<(), Corruption> {
        if pages.trace_enabled(crate::trace::EventId::KmemCacheFree) {
            self.trace_cache_free(pages, id, addr);
        }
        self.slab_free(mem, pages, addr, Some(id))
    }

    /// The `kmem_cache_free` tracepoint, out of line (it copies the name).
    #[cold]
    fn trace_cache_free<S: PageSource + ?Sized>(&self, pages: &S, id: CacheId, addr: u64) {
        let name = self
            .resolve(id)
            .map_or(CacheName::EMPTY, |slot| self.caches[slot].name);
        pages.trace_record(crate::trace::TraceEvent::KmemCacheFree {
            call_site: 0,
            ptr: addr,
            name,
        });
    }

    /// The free fast path (cf. `slab_free()` → `do_slab_free()`): address →
    /// frame → cache → object index by reciprocal multiply; an object of the
    /// active slab is pushed onto its free list. `expect` is the cache named
    /// by `kmem_cache_free`, `None` for `kfree`.
    #[inline(always)]
    pub(crate) fn slab_free<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        addr: u64,
        expect: Option<CacheId>,
    ) -> Result<(), Corruption> {
        let phys = addr.wrapping_sub(PAGE_OFFSET);
        let pfn = (phys >> PAGE_SHIFT) as usize;
        let Some(meta) = self.metas.get(pfn) else {
            return self.free_not_slab(pages, addr, expect);
        };
        let slot = (meta.cache as usize).wrapping_sub(1);
        if slot >= MAX_CACHES {
            return self.free_not_slab(pages, addr, expect);
        }
        if let Some(e) = expect
            && (e.slot as usize != slot || e.generation != self.caches[slot].generation)
        {
            return Err(self.corrupt(
                slot,
                CorruptionKind::InvalidFree(InvalidFreeKind::WrongCache),
                addr,
                None,
            ));
        }
        let c = &mut self.caches[slot];
        let head = (pfn as u32) & !c.pfn_mask;
        let off = phys & (((c.pfn_mask as u64) + 1) * PAGE_SIZE - 1);
        let idx = (off * c.recip as u64) >> 32;
        if idx * c.size as u64 != off || off >= c.objs_end as u64 {
            let kind = CorruptionKind::InvalidFree(InvalidFreeKind::NotObjectStart);
            return Err(self.corrupt(slot, kind, addr, None));
        }
        if head == c.cpu_slab && c.freelist != addr {
            mem.write_u64(addr + c.offset as u64, c.freelist);
            c.freelist = addr;
            c.cpu_inuse -= 1;
            return Ok(());
        }
        self.slab_free_slow(mem, pages, slot, head, addr)
    }

    /// cf. `__slab_free()`: a free to a slab other than the active one, in
    /// a plain cache. The slab's list changes only on full → partial and
    /// partial → empty, each done directly. Debug caches and double frees
    /// go on to [`Self::slab_free_checked`].
    #[inline(never)]
    fn slab_free_slow<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        head: u32,
        addr: u64,
    ) -> Result<(), Corruption> {
        let slot = slot & (MAX_CACHES - 1);
        let c = &mut self.caches[slot];
        let metas = &mut *self.metas;
        let base = slab_va(head);
        let Some(m) = metas.get_mut(head as usize) else {
            return self.slab_free_checked(mem, pages, slot, head, addr);
        };
        let first = m.freelist;
        if head == c.cpu_slab || c.is_debug() || base + first as u64 == addr || m.inuse == 0 {
            return self.slab_free_checked(mem, pages, slot, head, addr);
        }
        let was_full = first == NIL;
        mem.write_u64(
            addr + c.offset as u64,
            if was_full { 0 } else { base + first as u64 },
        );
        m.freelist = (addr - base) as u32;
        m.inuse -= 1;
        c.list_inuse -= 1;
        let now_empty = m.inuse == 0;
        if !was_full && !now_empty {
            return Ok(()); // stays partial
        }
        if was_full {
            c.full.nr -= 1;
        } else {
            c.partial.remove(metas, head);
        }
        if !now_empty {
            // To the tail, as `__slab_free()` does with a slab that was
            // full: it then collects more frees before it is reused, so
            // the next freeze finds more than one free object in it.
            c.partial.push_tail(metas, head);
        } else if c.empty.nr < SLAB_EMPTY_RESERVE {
            c.empty.push(metas, head);
        } else {
            self.discard_slab(pages, slot, head);
        }
        Ok(())
    }

    /// The general `__slab_free()` with `free_debug_processing()`: a free
    /// to a debug cache, or a double free (of the active free list's head,
    /// of a slab's free list head, or into an empty slab).
    #[cold]
    #[inline(never)]
    fn slab_free_checked<M: ObjectMemory, S: PageSource + ?Sized>(
        &mut self,
        mem: &M,
        pages: &S,
        slot: usize,
        head: u32,
        addr: u64,
    ) -> Result<(), Corruption> {
        let c = &mut self.caches[slot];
        if head == c.cpu_slab {
            // Only reached when `addr` heads the active free list: freeing it
            // again is a double free (cf. set_freepointer()'s BUG_ON). Pop it
            // and keep it out of circulation.
            c.freelist = mem.read_u64(addr + c.offset as u64);
            c.cpu_inuse += 1;
            c.quarantined += 1;
            return Err(self.corrupt(slot, CorruptionKind::DoubleFree, addr, None));
        }
        let before = list_kind(&self.metas[head as usize]);
        if c.is_debug() {
            if let Err(e) = self.free_debug_checks(mem, pages, slot, head, addr) {
                self.relist(pages, slot, head, before);
                return Err(e);
            }
        } else {
            let m = &self.metas[head as usize];
            if m.freelist != NIL && slab_va(head) + m.freelist as u64 == addr {
                self.quarantine_free_object(mem, slot, head, addr);
                self.relist(pages, slot, head, before);
                return Err(self.corrupt(slot, CorruptionKind::DoubleFree, addr, None));
            }
        }
        let c = &mut self.caches[slot];
        let m = &mut self.metas[head as usize];
        let old = if m.freelist == NIL {
            0
        } else {
            slab_va(head) + m.freelist as u64
        };
        mem.write_u64(addr + c.offset as u64, old);
        m.freelist = (addr - slab_va(head)) as u32;
        m.inuse -= 1;
        c.list_inuse -= 1;
        self.relist(pages, slot, head, before);
        Ok(())
    }

    /// Take the free object `addr` off its (non-active) slab's free list and
    /// count it in use and quarantined.
    pub(super) fn quarantine_free_object<M: ObjectMemory>(
        &mut self,
        mem: &M,
        slot: usize,
        head: u32,
        addr: u64,
    ) {
        let c = &mut self.caches[slot];
        let base = slab_va(head);
        let m = &mut self.metas[head as usize];
        let target = addr - base;
        let next_of = |p: u64| mem.read_u64(p + c.offset as u64);
        if m.freelist == target as u32 {
            let next = next_of(addr);
            m.freelist = if next == 0 { NIL } else { (next - base) as u32 };
        } else {
            let mut cur = m.freelist;
            let mut steps = 0;
            while cur != NIL && steps < c.objects {
                let p = base + cur as u64;
                let next = next_of(p);
                if next == addr {
                    mem.write_u64(p + c.offset as u64, next_of(addr));
                    break;
                }
                cur = if next == 0 { NIL } else { (next - base) as u32 };
                steps += 1;
            }
        }
        m.inuse += 1;
        c.list_inuse += 1;
        c.quarantined += 1;
    }
}
