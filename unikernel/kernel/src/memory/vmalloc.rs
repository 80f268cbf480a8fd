//! The vmalloc area on the real page tables: `mm::vmalloc`'s
//! [`VmapAreaAllocator`] in a static (cf. `vmap_area_lock` with its trees),
//! sized by `vmalloc=`, and the kernel's entry points to vmalloc/vfree.
//! ioremap lives in `ioremap.rs`; both share this allocator, so
//! `/proc/vmallocinfo` lists the kernel's MMIO mappings next to the API's
//! vmalloc areas.
//!
//! Lock order: the allocator's lock → zone lock (frame allocation) →
//! page-table lock (inside the mapper).

use spin::{Mutex, MutexGuard};

use mm::layout::{VMALLOC_MAX_SIZE, VMALLOC_START};
use mm::types::VirtAddr;
use mm::vmalloc::{self as vm, VmallocError, VmapArea, VmapAreaAllocator};

/// The vmap areas (about 300 KiB: built in place by the `const fn`
/// constructor, never on a stack), over an empty range until [`init`]
/// gives it its own: all zeroes, so it lies in `.bss` and costs the image
/// nothing.
static VMAP: Mutex<VmapAreaAllocator> = Mutex::new(VmapAreaAllocator::new(VirtAddr(0), 0));

/// Sizes the area to `vmalloc=` (clamped to what the layout leaves room
/// for); before any ioremap.
pub(super) fn init(vmalloc_size: u64) {
    let size = if vmalloc_size > VMALLOC_MAX_SIZE {
        log::warn!(
            "vmalloc={vmalloc_size:#x} is larger than the {VMALLOC_MAX_SIZE:#x} the layout allows; clamped"
        );
        VMALLOC_MAX_SIZE
    } else {
        vmalloc_size
    };
    let mut areas = VMAP.lock();
    if let Err(e) = areas.reinit(VirtAddr(VMALLOC_START), size) {
        log::error!("vmalloc: cannot resize the area: {e}");
    }
    // Lazy areas map this read-only until a page is written.
    areas.set_zero_page(super::fault::zero_page());
    let (start, end) = areas.range();
    log::info!(
        "vmalloc: area {:#x}-{:#x} ({} MiB), up to {} areas, one guard page each",
        start.0,
        end.0,
        (end.0 - start.0) >> 20,
        areas.capacity()
    );
}

/// The allocator itself (`/api/vmallocinfo`, the API's vmalloc).
pub fn vmap_areas() -> &'static Mutex<VmapAreaAllocator> {
    &VMAP
}

/// The allocator, locked.
pub fn areas() -> MutexGuard<'static, VmapAreaAllocator> {
    VMAP.lock()
}

/// `vmalloc(size)` for the kernel's own use.
pub fn vmalloc(size: u64, caller: &'static str) -> Result<VmapArea, VmallocError> {
    let mm = super::mm();
    vm::vmalloc(&mut VMAP.lock(), mm, mm.platform(), size, caller)
}

/// Turns on lazy purging of freed vmap areas (see
/// [`VmapAreaAllocator::set_lazy_purge`]), with Linux's threshold for the
/// CPUs online now: from then on `vfree`, `vunmap` and `iounmap` flush the
/// TLBs (an IPI to every other CPU) once per batch of areas, not once each.
pub fn enable_lazy_purge() {
    let cpus = crate::arch::x86_64::smp::online_cpus().count();
    let max = vm::lazy_max_pages(cpus);
    VMAP.lock().set_lazy_purge(max);
    log::info!("vmalloc: lazy purge of freed areas, up to {max} pages ({cpus} CPUs)");
}

/// `vfree(addr)`.
pub fn vfree(addr: VirtAddr) -> Result<VmapArea, VmallocError> {
    let mm = super::mm();
    vm::vfree(&mut VMAP.lock(), mm, mm.platform(), addr)
}

/// For a fault report: which vmap area `vaddr` belongs to, and whether it
/// hit the area's guard page (the classic vmalloc overrun). Never blocks:
/// the fault may have happened with the allocator's lock held.
pub fn describe_fault_address(vaddr: u64) {
    let Some(areas) = VMAP.try_lock() else {
        log::error!("  (vmalloc area lock held: cannot name the area)");
        return;
    };
    let Some(area) = areas.find(VirtAddr(vaddr)) else {
        return;
    };
    let what = if vaddr >= area.guard_page().0 {
        "the guard page after"
    } else {
        ""
    };
    log::error!(
        "  {vaddr:#x} is in {what}{}{:?} area {:#x}-{:#x} ({} pages, caller {})",
        if what.is_empty() { "" } else { " " },
        area.kind,
        area.start.0,
        area.end().0,
        area.nr_pages,
        area.caller()
    );
}
