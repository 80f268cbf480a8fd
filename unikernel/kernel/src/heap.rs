//! The kernel's global heap: `kmalloc`/`kfree` on the slab allocator.
//!
//! Everything the kernel allocates with `alloc` (smoltcp's socket buffers,
//! virtio-drivers' queues bookkeeping, the HTTP layer's strings and
//! vectors, the API's tables) is a kmalloc object, so it shows in
//! `/proc/slabinfo` under `kmalloc-*`, and anything over 8 KiB is a
//! `kmalloc_large` block straight from the buddy allocator (owner `heap`).
//!
//! * **Alignment.** `mm::kmalloc::kmalloc_size_for_layout` rounds the size
//!   up to a multiple of the alignment; kmalloc classes (and large blocks)
//!   are aligned to the largest power of two dividing their size, so any
//!   `Layout` up to 4 MiB comes back aligned.
//! * **Flags.** Every heap request is `GFP_KERNEL | __GFP_NOFAIL` first:
//!   `__GFP_NOFAIL` exempts it from fault injection (`failslab`,
//!   `fail_page_alloc`; cf. `should_failslab()` / `should_fail_alloc_page()`),
//!   so arming those never aborts the kernel. It cannot make memory appear:
//!   here there is nothing to reclaim, so the fallback follows.
//! * **Reserve.** If that fails, [`kmalloc_reserve`] retries with
//!   `GFP_ATOMIC | __GFP_MEMALLOC | __GFP_NOFAIL`: below MIN as atomic
//!   requests may go, then into the kernel heap's own reserve
//!   (`mm::reserve`), which the API cannot reach (`GfpFlags::parse`
//!   refuses `__GFP_MEMALLOC`). Only when that is exhausted too does an
//!   allocation fail (and the kernel abort).
//! * **Early boot.** Until [`init`] has put the slab allocator up, a bump
//!   allocator over a static `.bss` arena serves; its objects are never
//!   freed (`dealloc` of an arena pointer is a no-op, `realloc` copies out).
//! * **Locks** (DESIGN.md): the heap takes the slab lock, and the slab lock
//!   takes the zone lock on its slow path. So nothing may allocate or free
//!   while holding `mm.lock()` or the slab lock; a violation panics with a
//!   message (see `slab_glue::lock`) rather than deadlocking. Interrupt
//!   handlers never allocate.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use mm::cmdline::BootParams;
use mm::gfp::GfpFlags;
use mm::kmalloc::kmalloc_size_for_layout;
use mm::slab::HeapPages;

use crate::memory;
use crate::slab_glue::{self, DirectMap};

#[global_allocator]
static HEAP: KernelHeap = KernelHeap;

/// Bytes of the early-boot arena.
const EARLY_HEAP_BYTES: usize = 16 * 1024;

/// The early-boot arena in `.bss` (zeroed by the boot stub).
#[repr(C, align(4096))]
struct EarlyArena(UnsafeCell<[u8; EARLY_HEAP_BYTES]>);

// SAFETY: the arena's bytes are handed out at most once each: the bump
// offset only grows, by compare-and-swap, so no two callers share a byte.
unsafe impl Sync for EarlyArena {}

static EARLY: EarlyArena = EarlyArena(UnsafeCell::new([0; EARLY_HEAP_BYTES]));
/// Bytes of [`EARLY`] handed out.
static EARLY_USED: AtomicUsize = AtomicUsize::new(0);

fn early_base() -> *mut u8 {
    EARLY.0.get().cast::<u8>()
}

/// Whether `p` points into the early arena.
#[inline(always)]
fn in_early(p: *mut u8) -> bool {
    (p.addr().wrapping_sub(early_base().addr())) < EARLY_HEAP_BYTES
}

/// Bump allocation from the early arena; null when it is full. Its bytes
/// are zero (`.bss`, never reused), which `alloc_zeroed` relies on.
#[cold]
fn early_alloc(layout: Layout) -> *mut u8 {
    let base = early_base();
    let mut used = EARLY_USED.load(Ordering::Relaxed);
    loop {
        let Some(start) = base
            .addr()
            .checked_add(used)
            .and_then(|a| a.checked_next_multiple_of(layout.align()))
            .map(|a| a - base.addr())
        else {
            return ptr::null_mut();
        };
        let end = match start.checked_add(layout.size()) {
            Some(end) if end <= EARLY_HEAP_BYTES => end,
            _ => return ptr::null_mut(),
        };
        match EARLY_USED.compare_exchange(used, end, Ordering::Relaxed, Ordering::Relaxed) {
            // `start < EARLY_HEAP_BYTES`: in bounds of the arena, keeping
            // its provenance.
            Ok(_) => return base.wrapping_add(start),
            Err(now) => used = now,
        }
    }
}

/// The `#[global_allocator]`: kmalloc once the slab allocator is up.
struct KernelHeap;

/// What every heap request asks first: a normal kernel allocation that
/// fault injection must never fail. Its pages come through
/// [`HeapPages`], which adds `__GFP_MEMALLOC`: after boot the heap grows
/// into the kernel reserve before the zones (so the API's churn of the
/// zones never moves the heap's pages, and reset finds the buddy state of
/// boot), and the reserve is also the zones' last resort.
const GFP_HEAP: GfpFlags = GfpFlags::GFP_KERNEL.union(GfpFlags::NOFAIL);

/// The fallback: atomic (below MIN), then the kernel reserve; still exempt
/// from fault injection.
const GFP_HEAP_RESERVE: GfpFlags = GfpFlags::GFP_ATOMIC
    .union(GfpFlags::MEMALLOC)
    .union(GfpFlags::NOFAIL);

impl KernelHeap {
    #[inline(always)]
    fn kmalloc(&self, layout: Layout, gfp: GfpFlags) -> *mut u8 {
        let Some(size) = kmalloc_size_for_layout(layout.size(), layout.align()) else {
            return ptr::null_mut();
        };
        // This CPU's free list first, under its flag alone.
        if let Some(addr) = slab_glue::kmalloc_fast(size, gfp) {
            return ptr::with_exposed_provenance_mut(addr as usize);
        }
        let mut slab = slab_glue::lock();
        match slab.as_mut() {
            Some(slab) => match slab.kmalloc(&DirectMap, &HeapPages(memory::mm()), size, gfp) {
                Ok(addr) => ptr::with_exposed_provenance_mut(addr as usize),
                Err(_) => kmalloc_reserve(slab, size, gfp),
            },
            None => {
                drop(slab);
                early_alloc(layout)
            }
        }
    }
}

/// A failed heap allocation is fatal to the kernel (`handle_alloc_error`),
/// so before giving up it may dip below MIN as `GFP_ATOMIC` does
/// (`__GFP_HIGH`), and then into the kernel reserve (`__GFP_MEMALLOC`,
/// cf. `ALLOC_NO_WATERMARKS`): the API, which is what exhausts memory and
/// may itself use `GFP_ATOMIC`, cannot push the kernel's own allocations
/// over.
#[cold]
#[inline(never)]
fn kmalloc_reserve(
    slab: &mut mm::slab::SlabAllocator<'static>,
    size: usize,
    gfp: GfpFlags,
) -> *mut u8 {
    // Only __GFP_ZERO carries over: without __GFP_DIRECT_RECLAIM the
    // request gets the full atomic discount below MIN.
    let gfp = (gfp & GfpFlags::ZERO) | GFP_HEAP_RESERVE;
    match slab.kmalloc(&DirectMap, &HeapPages(memory::mm()), size, gfp) {
        Ok(addr) => ptr::with_exposed_provenance_mut(addr as usize),
        Err(_) => ptr::null_mut(),
    }
}

// SAFETY: every pointer returned is either a fresh kmalloc object or large
// block of at least `kmalloc_size_for_layout(size, align)` bytes, aligned
// to `align` (see the module docs), in the direct map and owned by no one
// else until freed; or fresh bytes of the early arena. `dealloc` and
// `realloc` give back exactly what was handed out (kfree finds the cache
// from the address), and ignore arena pointers.
unsafe impl GlobalAlloc for KernelHeap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.kmalloc(layout, GFP_HEAP)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // kzalloc; early arena bytes are zero already.
        self.kmalloc(layout, GFP_HEAP | GfpFlags::ZERO)
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        if in_early(p) {
            return;
        }
        if slab_glue::kfree_fast(p.expose_provenance() as u64) {
            return;
        }
        if let Some(slab) = slab_glue::lock().as_mut() {
            // A bad free is reported by the slab layer (serial + counter)
            // and changes nothing; there is no one to return it to.
            let _ = slab.kfree(
                &DirectMap,
                &HeapPages(memory::mm()),
                p.expose_provenance() as u64,
            );
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if in_early(p) {
            // SAFETY: the caller guarantees `new_size` with `layout.align()`
            // is a valid layout (GlobalAlloc::realloc's contract).
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            let new = self.kmalloc(new_layout, GFP_HEAP);
            if !new.is_null() {
                // SAFETY: `p` is valid for `layout.size()` bytes (the
                // caller's allocation), `new` for `new_size`; they are
                // distinct allocations, so they do not overlap.
                unsafe { ptr::copy_nonoverlapping(p, new, layout.size().min(new_size)) };
            }
            return new;
        }
        let Some(size) = kmalloc_size_for_layout(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let mut slab = slab_glue::lock();
        let Some(slab) = slab.as_mut() else {
            return ptr::null_mut();
        };
        // In place when the object already holds `size` (same address, so
        // still aligned), else kmalloc(size) + copy + kfree; on failure the
        // old object is untouched, as `realloc` requires.
        let addr = p.expose_provenance() as u64;
        let mm = &HeapPages(memory::mm());
        match slab
            .krealloc(&DirectMap, mm, addr, size, GFP_HEAP)
            .or_else(|_| slab.krealloc(&DirectMap, mm, addr, size, GFP_HEAP_RESERVE))
        {
            Ok(addr) => ptr::with_exposed_provenance_mut(addr as usize),
            Err(_) => ptr::null_mut(),
        }
    }
}

/// Puts the slab allocator up and the heap on it (with `failslab=` from
/// the command line armed). Call once, right after `memory::init`.
#[inline(never)]
pub fn init(params: &BootParams<'_>) {
    slab_glue::init(params.failslab);
    log::info!(
        "heap: kmalloc (early arena: {} of {} bytes used, kept)",
        EARLY_USED.load(Ordering::Relaxed),
        EARLY_HEAP_BYTES
    );
}
