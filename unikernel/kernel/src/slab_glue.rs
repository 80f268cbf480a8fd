//! The kernel's slab allocator: `mm`'s [`SlabAllocator`] behind one spin
//! lock, touching objects through the direct map ([`DirectMap`]) and
//! growing through the buddy allocator ([`memory::mm`]).
//!
//! ```text
//!  #[global_allocator] ──┐                 ┌── net::api (POST /api/caches, kmalloc handles, …)
//!                        ▼                 ▼
//!            SLAB: BrLock<LateInit<SlabAllocator>> ── slow path ──► mm.lock() (zone lock)
//!                        │ objects
//!                        ▼
//!            DirectMap: loads/stores at PAGE_OFFSET + phys
//! ```
//!
//! Lock order: slab lock (one CPU's flag, or all of them), then a cache's
//! node `list_lock` (taken by the CPU-flag slow paths inside
//! [`SlabAllocator::kmalloc_cpu`] / [`SlabAllocator::kfree_cpu`]: refilling
//! from the partial list, remote frees into listed slabs), then the zone
//! lock (taken inside `MemoryManager`'s `PageSource`, by the exclusive side
//! only). Because the global heap *is* this allocator, nothing may
//! allocate from (or free to) the heap while holding either lock: the
//! corruption report hook prints to serial through `log`, which formats
//! into the UART without allocating. The lock remembers which CPU holds
//! it: another CPU spins, but a second acquisition on the holder's own CPU
//! can only be such a re-entry, so it panics with a message instead of
//! spinning forever ([`lock`]).

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use mm::gfp::GfpFlags;
use mm::sync::{BrLock, BrWriteGuard, LateInit};

use crate::arch::x86_64::percpu::MAX_CPUS;

use mm::fault_inject::FaultConfig;
use mm::slab::{Corruption, ObjectMemory, SlabAllocator, SlabFlags, SlabMeta};

use crate::memory;

/// The slab allocator, once [`init`] ran, in a big-reader lock
/// ([`mm::sync::BrLock`]): a CPU's kmalloc/kfree fast paths take only its
/// own flag ([`kmalloc_fast`], [`kfree_fast`]); everything else takes
/// every flag ([`lock`]).
///
/// All zero bytes until [`init`] (a 1-CPU `BrLock` and an unset
/// [`LateInit`], not an `Option`, whose `None` is a non-zero niche byte):
/// so its 37 KB are `.bss`, not part of the image's `.data`.
static SLAB: BrLock<LateInit<SlabAllocator<'static>>> = BrLock::new(LateInit::NONE);

/// Per CPU: whether it holds [`SLAB`]'s exclusive side, so that a second
/// acquisition on the same CPU (re-entry) panics instead of spinning on
/// its own flag forever.
static HELD: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// The slab lock's exclusive side, held. Clears [`HELD`] on release.
pub struct SlabGuard {
    guard: BrWriteGuard<'static, LateInit<SlabAllocator<'static>>>,
    cpu: usize,
}

impl Deref for SlabGuard {
    type Target = LateInit<SlabAllocator<'static>>;
    #[inline(always)]
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl DerefMut for SlabGuard {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

impl Drop for SlabGuard {
    #[inline(always)]
    fn drop(&mut self) {
        HELD[self.cpu].store(false, Ordering::Relaxed);
    }
}

/// The slab lock, every CPU's flag. Spins while other CPUs hold theirs;
/// panics on re-entry (see the module docs): an allocation while this CPU
/// holds the lock, or from an interrupt handler.
#[inline(always)]
pub fn lock() -> SlabGuard {
    let cpu = this_cpu();
    if HELD[cpu].load(Ordering::Relaxed) {
        reentered();
    }
    let mut guard = SLAB.write();
    HELD[cpu].store(true, Ordering::Relaxed);
    if let Some(slab) = guard.as_mut() {
        slab.set_this_cpu(cpu);
    }
    SlabGuard { guard, cpu }
}

/// The running CPU, as an index into [`HELD`].
#[inline(always)]
fn this_cpu() -> usize {
    crate::arch::x86_64::percpu::this_cpu_id() & (MAX_CPUS - 1)
}

/// Lets `n` CPUs take the fast paths (after SMP bring-up).
pub fn set_nr_cpus(n: usize) {
    SLAB.set_nr_cpus(n);
}

/// `kmalloc(size, gfp)` from this CPU's free list of the size class, under
/// this CPU's flag alone ([`SlabAllocator::kmalloc_cpu`]); `None` when the
/// general path must run (empty list, tracing on, re-entry to report).
#[inline(always)]
pub fn kmalloc_fast(size: usize, gfp: GfpFlags) -> Option<u64> {
    let cpu = this_cpu();
    if HELD[cpu].load(Ordering::Relaxed) || memory::mm().trace_enabled(mm::trace::EventId::Kmalloc)
    {
        return None;
    }
    let guard = SLAB.read_cpu(cpu)?;
    let slab = guard.as_ref()?;
    // SAFETY: `guard` holds `cpu`'s flag and this code runs on `cpu`
    // (interrupt handlers never allocate, so nothing else uses the slot).
    unsafe { slab.kmalloc_cpu(cpu, &DirectMap, size, gfp) }
}

/// `kfree(addr)` onto this CPU's free list when the object is on this
/// CPU's slab of the cache it used last ([`SlabAllocator::kfree_cpu`]);
/// `false` when the general path must run.
#[inline(always)]
pub fn kfree_fast(addr: u64) -> bool {
    let cpu = this_cpu();
    if HELD[cpu].load(Ordering::Relaxed) || memory::mm().trace_enabled(mm::trace::EventId::Kfree) {
        return false;
    }
    let Some(guard) = SLAB.read_cpu(cpu) else {
        return false;
    };
    let Some(slab) = guard.as_ref() else {
        return false;
    };
    // SAFETY: as in `kmalloc_fast`; the heap's caller owns the object it
    // frees (GlobalAlloc::dealloc's contract).
    unsafe { slab.kfree_cpu(cpu, &DirectMap, addr) }
}

#[cold]
#[inline(never)]
fn reentered() -> ! {
    panic!("slab: lock re-entered (heap used under the slab or zone lock, or from an interrupt)")
}

/// Objects through the direct map: plain loads and stores at the address.
///
/// Every address the slab layer passes lies inside a slab or
/// `kmalloc_large` block it owns, in lowmem, which the direct map maps
/// writable at `PAGE_OFFSET + phys` for the life of the kernel.
pub struct DirectMap;

impl ObjectMemory for DirectMap {
    #[inline(always)]
    fn read_u64(&self, addr: u64) -> u64 {
        // SAFETY: `addr` is 8-byte aligned (trait contract) and inside a
        // direct-mapped slab page (see the type's docs). The word is a free
        // pointer, red zone or tracked size: slab metadata that no Rust
        // reference covers while the slab layer works on it.
        unsafe { core::ptr::with_exposed_provenance::<u64>(addr as usize).read() }
    }

    #[inline(always)]
    fn write_u64(&self, addr: u64, v: u64) {
        // SAFETY: as for `read_u64`; the word belongs to a free object or to
        // the metadata of an object being handed out or taken back, so no
        // live reference aliases it.
        unsafe { core::ptr::with_exposed_provenance_mut::<u64>(addr as usize).write(v) }
    }

    #[inline(always)]
    fn read_u8(&self, addr: u64) -> u8 {
        // SAFETY: inside a direct-mapped slab page owned by the slab layer
        // (see the type's docs); any byte is a valid `u8`.
        unsafe { core::ptr::with_exposed_provenance::<u8>(addr as usize).read() }
    }

    #[inline(always)]
    fn write_u8(&self, addr: u64, v: u8) {
        // SAFETY: as for `read_u8`; the byte is red zone, poison or part
        // of a free object, which nothing else references.
        unsafe { core::ptr::with_exposed_provenance_mut::<u8>(addr as usize).write(v) }
    }

    #[inline(always)]
    fn fill(&self, addr: u64, len: usize, byte: u8) {
        // SAFETY: `[addr, addr + len)` is one object (kzalloc, poison) or its
        // red zone, inside one direct-mapped slab or large block owned by the
        // slab layer and referenced by no one else at this moment.
        unsafe {
            core::ptr::write_bytes(
                core::ptr::with_exposed_provenance_mut::<u8>(addr as usize),
                byte,
                len,
            )
        }
    }

    #[inline(always)]
    fn check(&self, addr: u64, len: usize, byte: u8) -> Option<usize> {
        // SAFETY: a red zone or poisoned free object inside a direct-mapped
        // slab (see `fill`); it is only read, and no one writes it meanwhile
        // (single CPU, slab lock held).
        let bytes = unsafe {
            core::slice::from_raw_parts(
                core::ptr::with_exposed_provenance::<u8>(addr as usize),
                len,
            )
        };
        bytes.iter().position(|&b| b != byte)
    }

    #[inline(always)]
    fn copy(&self, dst: u64, src: u64, len: usize) {
        // SAFETY: `krealloc` copies the old object into a freshly allocated
        // one: two distinct live objects (so the ranges do not overlap), both
        // direct-mapped, the new one not yet returned to anyone.
        unsafe {
            core::ptr::copy_nonoverlapping(
                core::ptr::with_exposed_provenance::<u8>(src as usize),
                core::ptr::with_exposed_provenance_mut::<u8>(dst as usize),
                len,
            )
        }
    }
}

/// Corruption reports (red zone, poison, double or invalid free), under
/// the slab lock: to serial, without allocating, in Linux's words.
fn report(cache: &str, corruption: &Corruption) {
    log::error!("BUG {cache}: {corruption}; object quarantined, continuing");
}

/// Creates the slab allocator and its kmalloc caches over the overlay
/// `memory::init` carved out. From here on the global heap is kmalloc.
///
/// Out of line, and building the allocator (16 KiB of cache descriptors)
/// straight into its static: `SlabAllocator::new` alone needs 32 KiB of
/// the 64 KiB boot stack, which must not also hold copies of it, nor keep
/// them in `kmain`'s frame for the life of the kernel.
///
/// `failslab` (the `failslab=` boot option) is armed here, before the
/// first kmalloc; the heap itself is exempt (`__GFP_NOFAIL`).
#[inline(never)]
pub fn init(failslab: Option<FaultConfig>) {
    let metas: &'static mut [SlabMeta] =
        memory::take_slab_meta().expect("memory::init carved out the slab overlay");
    let frames = metas.len();
    let mut guard = lock();
    let slab = guard.put(SlabAllocator::new(metas, SlabFlags::NONE));
    slab.set_report_hook(report);
    if let Some(cfg) = failslab {
        slab.failslab_mut().attr.setup(cfg);
    }
    let caches = slab.caches(&DirectMap).count();
    drop(guard);
    log::info!(
        "slab: {caches} kmalloc caches over {frames} lowmem frames; the heap is kmalloc now"
    );
    if let Some(cfg) = failslab {
        memory::log_fault_injection("failslab", cfg);
    }
}

/// Settles the kmalloc caches (`net::api::settle_kmalloc_caches`: no
/// empty slab but [`net::api::KMALLOC_SPARE_SLABS`] spare ones per
/// general-purpose cache). Called once the kernel's boot-time allocations
/// are in place, just before the "after boot" buddy state is recorded, so
/// the heap's churn while serving requests goes through slabs it already
/// holds rather than through the buddy allocator; `POST /api/reset`
/// settles them the same way.
pub fn prewarm() {
    let mm = memory::mm();
    let mut guard = lock();
    let Some(slab) = guard.as_mut() else { return };
    let (freed, taken) = net::api::settle_kmalloc_caches(slab, &DirectMap, mm);
    let pages = slab.slab_pages();
    drop(guard);
    log::info!(
        "slab: kmalloc caches settled (-{freed} empty, +{taken} spare slabs); {} KiB in slabs",
        pages * 4
    );
}

/// Frames held by slabs and `kmalloc_large` blocks.
#[allow(
    dead_code,
    reason = "boot log and debugging; the API reads it through SlabAccess"
)]
pub fn slab_pages() -> u64 {
    lock().as_ref().map_or(0, |s| s.slab_pages())
}

/// The slab allocator as `net::api` reaches it.
pub struct KernelSlab;

impl net::api::SlabAccess for KernelSlab {
    fn with_slab(&self, f: &mut dyn FnMut(&mut SlabAllocator<'_>, &dyn ObjectMemory)) {
        let mut guard = lock();
        if let Some(slab) = guard.as_mut() {
            f(slab, &DirectMap);
        }
    }

    fn kmalloc_kfree(&self, size: usize) -> Result<(), &'static str> {
        let mm = memory::mm();
        let addr = match kmalloc_fast(size, GfpFlags::GFP_KERNEL) {
            Some(addr) => addr,
            None => lock()
                .as_mut()
                .ok_or("no slab allocator")?
                .kmalloc(&DirectMap, mm, size, GfpFlags::GFP_KERNEL)
                .map_err(|_| "kmalloc failed")?,
        };
        if !kfree_fast(addr) {
            let mut guard = lock();
            let slab = guard.as_mut().ok_or("no slab allocator")?;
            slab.kfree(&DirectMap, mm, addr)
                .map_err(|_| "kfree refused")?;
        }
        Ok(())
    }
}
