//! `ioremap()`: device memory (PCIe ECAM, BARs, the local and I/O APICs)
//! and RAM held back with `mem=` mapped uncached into the vmalloc area
//! (cf. `arch/x86/mm/ioremap.c`), through `mm::vmalloc::ioremap` on the
//! shared [`VmapAreaAllocator`](mm::vmalloc::VmapAreaAllocator): each
//! mapping is a `VM_IOREMAP` area with its guard page and its caller, and
//! shows in `/proc/vmallocinfo`.
//!
//! There is no identity map below lowmem except the kernel image, so every
//! MMIO access in the kernel goes through an address handed out here.
//!
//! Mappings are `PCD|PWT` (UC- with the default PAT: strong uncached for
//! registers that have side effects) and `NX`. Page-table pages come from
//! the buddy allocator, tagged `PAGE_TABLE` (see `mapper.rs`). RAM the buddy
//! allocator owns (free or allocated) is refused: mapping it uncached would
//! alias cached direct-map entries (cf. the `walk_system_ram_range()` check
//! in `__ioremap_caller()`); reserved and not-RAM frames are fine.

use mm::types::{PhysAddr, VirtAddr};
use mm::vmalloc::{self as vm, VmallocError, VmapArea, VmapKind};

use super::vmalloc::areas;

/// Maps `[phys, phys + size)` uncached; see the module doc.
#[allow(
    dead_code,
    reason = "kernel API; the HTTP API calls mm::vmalloc::ioremap itself"
)]
pub fn ioremap(phys: u64, size: u64) -> Result<VirtAddr, VmallocError> {
    ioremap_caller(phys, size, "ioremap")
}

/// [`ioremap`] recording `caller` for `/proc/vmallocinfo` (one word, as
/// Linux prints a symbol there: parsers split the line on spaces).
pub fn ioremap_caller(
    phys: u64,
    size: u64,
    caller: &'static str,
) -> Result<VirtAddr, VmallocError> {
    let mm = super::mm();
    let virt = vm::ioremap(
        &mut areas(),
        mm,
        mm.platform(),
        PhysAddr(phys),
        size,
        caller,
    )?;
    log::debug!("ioremap: {phys:#x}+{size:#x} at {:#x} ({caller})", virt.0);
    Ok(virt)
}

/// `iounmap(addr)`: `addr` as [`ioremap`] returned it.
#[allow(
    dead_code,
    reason = "kernel API; the devices we drive stay mapped for the kernel's life"
)]
pub fn iounmap(addr: VirtAddr) -> Result<VmapArea, VmallocError> {
    let mm = super::mm();
    vm::iounmap(&mut areas(), mm.platform(), addr)
}

/// An existing ioremap area that covers `[phys, phys + size)`, as the
/// virtual address of `phys` (drivers that learn sub-ranges of a BAR
/// mapped whole).
pub fn find(phys: u64, size: u64) -> Option<VirtAddr> {
    let end = phys.checked_add(size)?;
    areas()
        .iter()
        .filter(|a| a.kind == VmapKind::Ioremap)
        .find(|a| a.phys.0 <= phys && end <= a.phys.0 + a.size)
        .map(|a| VirtAddr(a.start.0 + (phys - a.phys.0)))
}
