//! [`MemoryManager`]: the page allocator behind its lock, plus the
//! [`Platform`] that lends it mappings. This is the object the kernel keeps
//! in a static and the HTTP API drives; host tests build the same object
//! over a simulated arena.
//!
//! Locking rule (DESIGN.md): nothing here allocates from the global heap,
//! and byte work (zeroing, fill, checksum) happens with the zone lock
//! dropped — the caller owns the frames it touches.
//!
//! Locking (cf. `zone->lock` and `pcp->lock`): the allocator sits in a
//! [`BrLock`] with one flag per CPU. [`MemoryManager::alloc_pages`] and
//! [`MemoryManager::free_pages`] try the running CPU's per-CPU lists first
//! holding only that CPU's flag ([`crate::page_alloc::smp`]), so CPUs
//! allocating and freeing small blocks at once never wait for each other;
//! a list's refill or trim adds only its zone's `zone->lock`
//! ([`crate::page_alloc::zone_lock`]). Everything else — the buddy
//! allocator, refills that must steal another migrate type's pageblocks,
//! drains, compaction, the views — takes [`MemoryManager::lock`], every
//! flag at once.
//!
//! It also owns the [`Tracer`] (tracepoints and their per-CPU rings,
//! `mm::trace`), each ring behind a lock of its own and reached by
//! tracepoints with `try_lock` only, so recording under the zone or slab
//! lock cannot deadlock.

use spin::Mutex;

use crate::gfp::GfpFlags;
use crate::page::OwnerTag;
use crate::page_alloc::smp::FreeFast;
use crate::page_alloc::{AllocError, FreeError, PageAlloc};
use crate::platform::Platform;
use crate::sync::{BrLock, BrWriteGuard};
use crate::trace::{EventId, TraceEvent, TraceRecord, Tracer};
use crate::types::{NR_ORDERS, Order, Pfn};
use crate::zone::NR_ZONES;

/// Every zone's free_area counts: what `/proc/buddyinfo` shows.
pub type BuddySnapshot = [[u64; NR_ORDERS]; NR_ZONES];

/// The page allocator and its platform.
pub struct MemoryManager<'a, P: Platform> {
    zone_lock: BrLock<PageAlloc<'a>>,
    platform: P,
    boot_buddyinfo: Mutex<BuddySnapshot>,
    tracer: Tracer<'a>,
    page_owner: crate::page_owner::PageOwner<'a>,
}

impl<'a, P: Platform> MemoryManager<'a, P> {
    /// Wraps a fully initialised allocator (memory handed over, watermarks
    /// set). Its free_area counts now become the "after boot" reference
    /// that `POST /api/reset` must return to.
    pub fn new(pages: PageAlloc<'a>, platform: P) -> Self {
        let boot_buddyinfo = boot_snapshot(&pages);
        // `page=%p` in page events: the descriptor's address in mem_map.
        let page_base = pages
            .page(Pfn(0))
            .map_or(0, |p| core::ptr::from_ref(p) as u64);
        MemoryManager {
            zone_lock: BrLock::new(pages),
            platform,
            boot_buddyinfo: Mutex::new(boot_buddyinfo),
            tracer: Tracer::new(page_base),
            page_owner: crate::page_owner::PageOwner::new(),
        }
    }

    /// page_owner (`mm::page_owner`): off until the kernel lends it its
    /// array (`page_owner=on`).
    pub fn page_owner(&self) -> &crate::page_owner::PageOwner<'a> {
        &self.page_owner
    }

    /// The tracepoints' enable mask and ring.
    pub fn tracer(&self) -> &Tracer<'a> {
        &self.tracer
    }

    /// Lends CPU 0 its trace ring (hosts and benches that trace on one
    /// CPU); see [`MemoryManager::attach_trace_buffers`].
    pub fn attach_trace_buffer(&self, slots: &'a mut [TraceRecord]) {
        self.attach_trace_buffers(slots, 1);
    }

    /// Lends the per-CPU trace rings their records (once, at boot: the
    /// kernel carves them from memblock, so no ring touches the heap):
    /// `slots` split into `nr_cpus` equal rings, CPU 0's first (at most
    /// [`crate::trace::NR_TRACE_CPUS`]; a remainder is left unused). Until
    /// then events are dropped.
    pub fn attach_trace_buffers(&self, slots: &'a mut [TraceRecord], nr_cpus: usize) {
        let nr = nr_cpus.clamp(1, crate::trace::NR_TRACE_CPUS);
        let per_cpu = slots.len() / nr;
        if per_cpu == 0 {
            return;
        }
        for (cpu, ring) in slots.chunks_exact_mut(per_cpu).take(nr).enumerate() {
            self.tracer.attach(cpu, ring);
        }
    }

    /// Whether tracepoint `id` is on (one relaxed load); for
    /// [`crate::trace_event!`].
    #[inline(always)]
    pub fn trace_enabled(&self, id: EventId) -> bool {
        self.tracer.enabled(id)
    }

    /// The `kmem:mm_page_alloc` tracepoint, for every way a block leaves
    /// the buddy allocator through this manager (`alloc_pages`, slab pages),
    /// and page_owner's record of it (the caller's location is page_owner's
    /// call site).
    #[inline(always)]
    #[track_caller]
    pub(crate) fn trace_page_alloc(&self, pfn: Pfn, order: Order, gfp: GfpFlags) {
        let now = || self.platform.now_ns();
        let caller = core::panic::Location::caller();
        self.page_owner
            .set_page_owner(pfn, order.get(), gfp, caller, now);
        crate::trace_event!(
            self,
            MmPageAlloc {
                pfn,
                order: order.get(),
                migratetype: gfp.migratetype() as u8,
                gfp
            }
        );
    }

    /// The `kmem:mm_page_free` tracepoint, and page_owner's free.
    #[inline(always)]
    pub(crate) fn trace_page_free(&self, pfn: Pfn, order: Order) {
        self.page_owner
            .reset_page_owner(pfn, || self.platform.now_ns());
        crate::trace_event!(
            self,
            MmPageFree {
                pfn,
                order: order.get()
            }
        );
    }

    /// Records `event` with the platform's clock and CPU; for
    /// [`crate::trace_event!`], after [`MemoryManager::trace_enabled`].
    #[cold]
    #[inline(never)]
    pub fn trace_record(&self, event: TraceEvent) {
        self.tracer
            .record_with(|| self.platform.now_ns(), self.platform.cpu_id(), event);
    }

    /// The allocator, locked: for views and for callers that batch work.
    /// Never allocate from the heap while holding it.
    /// (Every CPU's flag: the per-CPU fast paths wait meanwhile. The
    /// fast paths' counters are folded in first, so what the guard shows
    /// is exact.)
    #[inline]
    pub fn lock(&self) -> BrWriteGuard<'_, PageAlloc<'a>> {
        let mut pa = self.zone_lock.write();
        pa.set_this_cpu(self.platform.cpu_id());
        pa.fold_vm_diffs();
        pa
    }

    /// Declares `n` CPUs online: each gets a flag of the lock and a share
    /// of every zone's per-CPU `high` (cf. the CPU-hotplug callbacks'
    /// `zone_pcp_update()`). The kernel calls it once its CPUs are up.
    pub fn set_nr_cpus(&self, n: usize) {
        self.zone_lock.set_nr_cpus(n);
        self.lock().set_nr_cpus(n);
    }

    /// CPUs online.
    pub fn nr_cpus(&self) -> usize {
        self.zone_lock.nr_cpus()
    }

    /// The platform (mapping services).
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The buddy state right after boot.
    pub fn boot_buddyinfo(&self) -> BuddySnapshot {
        *self.boot_buddyinfo.lock()
    }

    /// Records the current buddy state as "right after boot". The kernel
    /// calls it once its own boot-time allocations (heap, DMA rings, page
    /// tables for MMIO) are done, just before it announces READY.
    /// From here on the kernel heap grows into the kernel reserve first
    /// ([`PageAlloc::set_heap_reserve_first`]).
    /// The per-CPU lists are drained first, as `POST /api/reset` drains
    /// them, so the two states compare block for block; and frames
    /// deferred init has still to hand over count as handed over: "after
    /// boot" is after deferred init, whenever that finishes.
    pub fn mark_boot_complete(&self) {
        let now = {
            let mut pages = self.lock();
            pages.set_heap_reserve_first(true);
            pages.drain_all_pages();
            boot_snapshot(&pages)
        };
        *self.boot_buddyinfo.lock() = now;
    }

    /// The buddy state now.
    pub fn buddyinfo(&self) -> BuddySnapshot {
        buddy_snapshot(&self.lock())
    }

    /// Drains every per-CPU list into the buddy lists
    /// ([`PageAlloc::drain_all_pages`]); returns the pages given back.
    pub fn drain_all_pages(&self) -> u64 {
        self.lock().drain_all_pages()
    }

    /// The buddy state with the per-CPU lists drained into it: a function
    /// of which frames are allocated alone, so equal to the boot state
    /// once everything allocated since is freed.
    pub fn drained_buddyinfo(&self) -> BuddySnapshot {
        let mut pa = self.lock();
        pa.drain_all_pages();
        buddy_snapshot(&pa)
    }

    /// `alloc_pages()` with `__GFP_ZERO` honoured: the block is zeroed
    /// through the platform (kmap_atomic for HighMem) after the lock is
    /// dropped. The caller's location is page_owner's call site.
    ///
    /// The per-CPU fast path is inlined; the locked path is one call away
    /// (`alloc_pages_locked`), so the common case saves
    /// and restores few registers.
    #[track_caller]
    #[inline]
    pub fn alloc_pages(
        &self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Result<Pfn, AllocError> {
        let pfn = match self.alloc_pages_fast(gfp, order, owner) {
            Some(pfn) => pfn,
            None => self.alloc_pages_locked(gfp, order, owner)?,
        };
        self.trace_page_alloc(pfn, order, gfp);
        if gfp.contains(GfpFlags::ZERO) {
            self.fill(pfn, order.nr_pages(), 0);
        }
        Ok(pfn)
    }

    /// `alloc_pages_bulk_array()` for order-0 frames (cf.
    /// `__alloc_pages_bulk()`, what `vmalloc()` allocates its pages with):
    /// fills `out` from the front with as many frames as the running CPU's
    /// list serves under one take of its flag (refilled as a single
    /// allocation would refill it), and where that serves none, one frame
    /// through [`MemoryManager::alloc_pages`] — reclaim, OOM and all, as
    /// Linux's bulk allocator falls back to `__alloc_pages()` for one page.
    /// Each frame gets the tracepoint, page_owner's record (this caller's
    /// location) and `__GFP_ZERO` as from `alloc_pages`.
    ///
    /// `Ok(n)`: the first `n` slots of `out` are frames, `n` ≥ 1 unless
    /// `out` is empty; `Err` only when that one allocation failed.
    #[track_caller]
    pub fn alloc_pages_bulk(
        &self,
        gfp: GfpFlags,
        owner: OwnerTag,
        out: &mut [Pfn],
    ) -> Result<usize, AllocError> {
        if out.is_empty() {
            return Ok(0);
        }
        let cpu = self.platform.cpu_id();
        let n = match self.zone_lock.read_cpu(cpu) {
            #[allow(unsafe_code)]
            // SAFETY: as in `alloc_pages_fast`.
            Some(pa) => unsafe { PageAlloc::alloc_pcp_cpu_bulk(pa.as_ptr(), cpu, gfp, owner, out) },
            None => 0,
        };
        if n == 0 {
            out[0] = self.alloc_pages(gfp, Order::ZERO, owner)?;
            return Ok(1);
        }
        for &pfn in &out[..n] {
            self.trace_page_alloc(pfn, Order::ZERO, gfp);
            if gfp.contains(GfpFlags::ZERO) {
                self.fill(pfn, 1, 0);
            }
        }
        Ok(n)
    }

    /// Frees order-0 frames as [`MemoryManager::free_pages`] would one by
    /// one, those the running CPU's list takes under one take of its flag
    /// (cf. `free_unref_page_list()`, which `release_pages()` uses), the
    /// rest through the exclusive side. A frame the allocator refuses is
    /// left as it was and reported to `refused`; the others are freed.
    pub fn free_pages_bulk(&self, pfns: &[Pfn], refused: &mut dyn FnMut(Pfn, FreeError)) {
        for chunk in pfns.chunks(u64::BITS as usize) {
            // Bit i: chunk[i] is for the exclusive side.
            let mut slow = u64::MAX;
            let cpu = self.platform.cpu_id();
            if let Some(pa) = self.zone_lock.read_cpu(cpu) {
                slow = 0;
                for (i, &pfn) in chunk.iter().enumerate() {
                    #[allow(unsafe_code)]
                    // SAFETY: as in `free_pages_fast`: the caller owns the
                    // frames it frees.
                    unsafe {
                        match PageAlloc::free_pcp_cpu(pa.as_ptr(), cpu, pfn, Order::ZERO) {
                            FreeFast::Done => {}
                            FreeFast::Trim { zi, pindex, count } => {
                                PageAlloc::pcp_trim_cpu(pa.as_ptr(), cpu, zi, pindex, count)
                            }
                            FreeFast::Slow => slow |= 1 << i,
                        }
                    }
                }
            }
            // The flag is dropped: the tracepoints, and the exclusive side.
            for (i, &pfn) in chunk.iter().enumerate() {
                if slow & (1 << i) != 0
                    && let Err(err) = self.free_pages_locked(pfn, Order::ZERO)
                {
                    refused(pfn, err);
                    continue;
                }
                self.trace_page_free(pfn, Order::ZERO);
            }
        }
    }

    /// [`MemoryManager::alloc_pages`] on the exclusive side.
    #[inline(never)]
    fn alloc_pages_locked(
        &self,
        gfp: GfpFlags,
        order: Order,
        owner: OwnerTag,
    ) -> Result<Pfn, AllocError> {
        let (pfn, extfrag) = {
            let mut pa = self.lock();
            let pfn = pa.alloc_pages(gfp, order, owner)?;
            let extfrag = if self.trace_enabled(crate::trace::EventId::MmPageAllocExtfrag) {
                pa.extfrag.last.take()
            } else {
                None
            };
            (pfn, extfrag)
        };
        if let Some(ev) = extfrag {
            self.trace_record(ev);
        }
        Ok(pfn)
    }

    /// `get_zeroed_page()`: one zeroed lowmem frame.
    #[track_caller]
    pub fn get_zeroed_page(&self, gfp: GfpFlags, owner: OwnerTag) -> Result<Pfn, AllocError> {
        self.alloc_pages(
            gfp.difference(GfpFlags::HIGHMEM).union(GfpFlags::ZERO),
            Order::ZERO,
            owner,
        )
    }

    /// `__free_pages()`: refused, with nothing changed, unless `pfn` heads an
    /// allocated block of exactly `order`.
    #[inline]
    pub fn free_pages(&self, pfn: Pfn, order: Order) -> Result<(), FreeError> {
        if !self.free_pages_fast(pfn, order) {
            self.free_pages_locked(pfn, order)?;
        }
        self.trace_page_free(pfn, order);
        Ok(())
    }

    /// [`MemoryManager::free_pages`] on the exclusive side.
    #[inline(never)]
    fn free_pages_locked(&self, pfn: Pfn, order: Order) -> Result<(), FreeError> {
        self.lock().free_pages(pfn, order)
    }

    /// The running CPU's per-CPU lists, under its flag only, refilled
    /// under the zone's lock when empty ([`PageAlloc::alloc_pcp_cpu`]).
    #[inline(always)]
    fn alloc_pages_fast(&self, gfp: GfpFlags, order: Order, owner: OwnerTag) -> Option<Pfn> {
        let cpu = self.platform.cpu_id();
        let pa = self.zone_lock.read_cpu(cpu)?;
        #[allow(unsafe_code)]
        // SAFETY: `pa` holds `cpu`'s flag (so `cpu` < NR_CPUS) and no zone
        // lock is held; the platform says this code runs on `cpu`.
        unsafe {
            PageAlloc::alloc_pcp_cpu(pa.as_ptr(), cpu, gfp, order, owner)
        }
    }

    /// [`MemoryManager::alloc_pages_fast`]'s counterpart for frees: `true`
    /// when the block is on this CPU's list (and the list trimmed under
    /// the zone's lock if it grew past `high`), `false` with nothing
    /// changed when the exclusive side must decide.
    #[inline(always)]
    fn free_pages_fast(&self, pfn: Pfn, order: Order) -> bool {
        let cpu = self.platform.cpu_id();
        let Some(pa) = self.zone_lock.read_cpu(cpu) else {
            return false;
        };
        #[allow(unsafe_code)]
        // SAFETY: as in `alloc_pages_fast`; the caller of `free_pages` owns
        // the block it frees (the contract of `__free_pages()`).
        unsafe {
            match PageAlloc::free_pcp_cpu(pa.as_ptr(), cpu, pfn, order) {
                FreeFast::Done => true,
                FreeFast::Trim { zi, pindex, count } => {
                    PageAlloc::pcp_trim_cpu(pa.as_ptr(), cpu, zi, pindex, count);
                    true
                }
                FreeFast::Slow => false,
            }
        }
    }

    /// Writes `byte` into every byte of `nr_pages` frames from `pfn`;
    /// returns the number of bytes written.
    pub fn fill(&self, pfn: Pfn, nr_pages: u64, byte: u8) -> u64 {
        for i in 0..nr_pages {
            self.platform
                .with_frame(pfn.add(i), &mut |bytes| bytes.fill(byte));
        }
        nr_pages * crate::types::PAGE_SIZE
    }

    /// Runs `f` over the `len` bytes from physical address `phys`, a frame
    /// at a time through the platform's mappings (`kmap_atomic` for
    /// HighMem): for touching part of an allocation (`fill`/`checksum`
    /// with `offset`/`length`) or an object inside a slab.
    pub fn with_bytes(&self, phys: u64, len: u64, f: &mut dyn FnMut(&mut [u8])) {
        let frame = crate::types::PAGE_SIZE;
        let mut done = 0u64;
        while done < len {
            let at = phys + done;
            let off = (at % frame) as usize;
            let n = (len - done).min(frame - off as u64) as usize;
            self.platform
                .with_frame(Pfn(at / frame), &mut |bytes| f(&mut bytes[off..off + n]));
            done += n as u64;
        }
    }

    /// CRC-32 (IEEE) of `nr_pages` frames from `pfn`, read through the
    /// platform's mappings; returns `(bytes, crc)`.
    pub fn checksum(&self, pfn: Pfn, nr_pages: u64) -> (u64, u32) {
        let mut crc = crate::crc32::Crc32::new();
        for i in 0..nr_pages {
            self.platform
                .with_frame(pfn.add(i), &mut |bytes| crc.update(bytes));
        }
        (nr_pages * crate::types::PAGE_SIZE, crc.finish())
    }
}

fn buddy_snapshot(pages: &PageAlloc<'_>) -> BuddySnapshot {
    let mut snap = [[0; NR_ORDERS]; NR_ZONES];
    for (slot, zone) in snap.iter_mut().zip(pages.zones()) {
        *slot = zone.free_area_counts();
    }
    snap
}

/// The buddy state once deferred init has handed everything over: now,
/// plus the blocks it will add (they never merge with blocks outside their
/// chunks, see [`crate::page_alloc::deferred`]).
fn boot_snapshot(pages: &PageAlloc<'_>) -> BuddySnapshot {
    let mut snap = buddy_snapshot(pages);
    let deferred = pages.deferred_free_area_counts();
    for (zone, more) in snap.iter_mut().zip(deferred) {
        for (count, add) in zone.iter_mut().zip(more) {
            *count += add;
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memblock::Memblock;
    use crate::page::Page;
    use crate::platform::sim::SimPlatform;
    use crate::types::PhysAddr;
    use crate::zone::ZoneLayout;

    fn manager(mem_map: &mut [Page]) -> MemoryManager<'_, SimPlatform> {
        let ram = 64u64 << 20;
        let mut mb = Memblock::new();
        mb.add(PhysAddr(0), ram).unwrap();
        mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
        let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(32 << 20, ram)).unwrap();
        pa.memblock_free_all(&mb).unwrap();
        pa.setup_watermarks();
        MemoryManager::new(pa, SimPlatform::new(ram >> 12))
    }

    #[test]
    fn gfp_zero_zeroes_highmem_through_the_platform() {
        let mut mem_map = std::vec![Page::new_reserved(); (64 << 20) >> 12];
        let mm = manager(&mut mem_map);
        let pfn = mm
            .alloc_pages(
                GfpFlags::GFP_HIGHUSER | GfpFlags::ZERO,
                Order::new(1).unwrap(),
                OwnerTag::API,
            )
            .unwrap();
        assert!(pfn.0 >= (32 << 20) >> 12, "GFP_HIGHUSER lands in HighMem");
        assert!(mm.platform().frame(pfn).iter().all(|&b| b == 0));
        assert!(mm.platform().frame(pfn.add(1)).iter().all(|&b| b == 0));
        // Without __GFP_ZERO the arena's 0xCC shows through.
        let dirty = mm
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
            .unwrap();
        assert_eq!(mm.platform().frame(dirty)[0], 0xCC);
    }

    /// Everything two managers must agree on to be in the same state.
    fn assert_same(a: &MemoryManager<'_, SimPlatform>, b: &MemoryManager<'_, SimPlatform>) {
        let (pa, pb) = (a.lock(), b.lock());
        assert_eq!(pa.zones(), pb.zones(), "zones, per-CPU lists included");
        assert_eq!(pa.vm_events(), pb.vm_events());
        for pfn in 0..pa.max_pfn().0 {
            assert_eq!(pa.page(Pfn(pfn)), pb.page(Pfn(pfn)), "pfn {pfn:#x}");
        }
    }

    /// `alloc_pages_bulk` leaves the machine as that many `alloc_pages`
    /// calls leave its twin — the same frames in the same order, the same
    /// descriptors, buddy and per-CPU lists and counters — across refills
    /// of the per-CPU list, for each zone the GFPs reach, with the lists
    /// off, and with `fail_page_alloc` failing every third allocation (a
    /// frame at a time then: the fast path is out); and
    /// `free_pages_bulk` does what `free_pages` one frame at a time does,
    /// refusing a double free, a tail and a frame never allocated with the
    /// same errors and nothing changed for them.
    #[test]
    fn bulk_allocations_and_frees_equal_one_call_a_frame() {
        use crate::fault_inject::{FaultAttr, FaultConfig};
        use crate::test_rng::Rng;
        let gfps = [
            GfpFlags::GFP_KERNEL,
            GfpFlags::GFP_KERNEL | GfpFlags::HIGHMEM,
            GfpFlags::GFP_KERNEL | GfpFlags::MOVABLE,
            GfpFlags::GFP_HIGHUSER | GfpFlags::ZERO,
            GfpFlags::GFP_DMA,
        ];
        for case in ["lists", "lists off", "fail_page_alloc"] {
            let mut ma = std::vec![Page::new_reserved(); (64 << 20) >> 12];
            let mut mb = std::vec![Page::new_reserved(); (64 << 20) >> 12];
            let (a, b) = (manager(&mut ma), manager(&mut mb));
            for m in [&a, &b] {
                let mut pa = m.lock();
                match case {
                    "lists off" => pa.set_pcp_enabled(false),
                    "fail_page_alloc" => {
                        let mut attr = FaultAttr::new();
                        attr.setup(FaultConfig {
                            interval: 3,
                            probability: 100,
                            space: 0,
                            times: -1,
                        });
                        let mut f = pa.fail_page_alloc_mut();
                        f.attr = attr;
                        f.min_order = 0;
                        f.ignore_gfp_reclaim = false;
                    }
                    _ => {}
                }
            }
            let mut rng = Rng(0xb01c);
            let mut below = |n: u64| rng.next() % n;
            let mut held: Vec<Pfn> = Vec::new();
            let (mut bulk_calls, mut failures) = (0, 0);
            for step in 0..300 {
                let gfp = gfps[below(gfps.len() as u64) as usize];
                let mut out = std::vec![Pfn(0); 1 + below(40) as usize];
                match a.alloc_pages_bulk(gfp, OwnerTag::VMALLOC, &mut out) {
                    Ok(n) => {
                        assert!(n >= 1, "{case} step {step}: none");
                        bulk_calls += usize::from(n > 1);
                        for &pfn in &out[..n] {
                            let one = b.alloc_pages(gfp, Order::ZERO, OwnerTag::VMALLOC);
                            assert_eq!(one, Ok(pfn), "{case} step {step}");
                            if gfp.contains(GfpFlags::ZERO) {
                                assert!(a.platform().frame(pfn).iter().all(|&x| x == 0));
                            }
                        }
                        held.extend_from_slice(&out[..n]);
                    }
                    Err(e) => {
                        failures += 1;
                        let one = b.alloc_pages(gfp, Order::ZERO, OwnerTag::VMALLOC);
                        assert_eq!(one, Err(e), "{case} step {step}");
                    }
                }
                // Free a random run of what is held, in bulk on `a`, a
                // frame at a time on `b`.
                if below(3) == 0 && !held.is_empty() {
                    let from = below(held.len() as u64) as usize;
                    let to = (from + 1 + below(70) as usize).min(held.len());
                    let run: Vec<Pfn> = held.drain(from..to).collect();
                    a.free_pages_bulk(&run, &mut |pfn, e| panic!("{case}: {pfn:?} {e:?}"));
                    for &pfn in &run {
                        b.free_pages(pfn, Order::ZERO).unwrap();
                    }
                }
                assert_same(&a, &b);
            }
            // With the lists off or fault injection armed, every frame
            // takes the full path: a call serves one.
            match case {
                "lists" => assert!(bulk_calls > 20, "{case}: {bulk_calls} served more than one"),
                _ => assert_eq!(bulk_calls, 0, "{case}"),
            }
            assert_eq!(
                failures > 0,
                case == "fail_page_alloc",
                "{case}: {failures} failures"
            );
            // Refusals: a double free, a tail, a frame never allocated,
            // between good frames.
            let pair = a
                .alloc_pages(GfpFlags::GFP_KERNEL, Order::new(1).unwrap(), OwnerTag::API)
                .unwrap();
            let freed = held.pop().unwrap();
            a.free_pages(freed, Order::ZERO).unwrap();
            let before = a.buddyinfo();
            let mut refused = Vec::new();
            let good = [held.pop().unwrap(), held.pop().unwrap()];
            a.free_pages_bulk(
                &[good[0], freed, pair.add(1), Pfn(0), good[1]],
                &mut |pfn, e| refused.push((pfn, e)),
            );
            let expect = |pfn: Pfn| a.free_pages(pfn, Order::ZERO).unwrap_err();
            assert_eq!(
                refused,
                [
                    (freed, expect(freed)),
                    (pair.add(1), expect(pair.add(1))),
                    (Pfn(0), expect(Pfn(0))),
                ],
                "{case}"
            );
            assert_ne!(
                before,
                a.drained_buddyinfo(),
                "{case}: the good frames were freed"
            );
            a.free_pages(pair, Order::new(1).unwrap()).unwrap();
            a.free_pages_bulk(&held, &mut |pfn, e| panic!("{case}: {pfn:?} {e:?}"));
            assert_eq!(a.drained_buddyinfo(), a.boot_buddyinfo(), "{case}");
            a.lock().check_invariants().unwrap();
        }
    }

    #[test]
    fn fill_then_checksum_round_trips() {
        let mut mem_map = std::vec![Page::new_reserved(); (64 << 20) >> 12];
        let mm = manager(&mut mem_map);
        let pfn = mm
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::new(2).unwrap(), OwnerTag::API)
            .unwrap();
        assert_eq!(mm.fill(pfn, 4, 0xA5), 4 * 4096);
        let (bytes, crc) = mm.checksum(pfn, 4);
        assert_eq!(bytes, 16384);
        let mut reference = crate::crc32::Crc32::new();
        reference.update(&std::vec![0xA5u8; 16384]);
        assert_eq!(crc, reference.finish());
        mm.free_pages(pfn, Order::new(2).unwrap()).unwrap();
        assert_eq!(mm.drained_buddyinfo(), mm.boot_buddyinfo());
    }
}
