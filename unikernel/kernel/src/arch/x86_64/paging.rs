//! Early access to physical memory and to the live page tables.
//!
//! While the PVH boot tables are active, physical == virtual below 4 GiB
//! ([`super::boot::BOOT_IDENTITY_LIMIT`]). Once the final tables with the
//! direct map are loaded, the lead code calls [`set_phys_window`] with
//! `mm::types::PAGE_OFFSET` (0xffff_8880_0000_0000) and the lowmem limit, and
//! every early reader (fault reports, ACPI, PVH parsing) follows.

use core::sync::atomic::{AtomicU64, Ordering};

use mm::pgtable::{self, Walk};
use x86_64::registers::control::Cr3;

use super::boot::BOOT_IDENTITY_LIMIT;

/// Added to a physical address to get its kernel virtual address. 0 while
/// the boot identity map is live.
pub static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

/// Physical addresses below this are reachable at `phys + PHYS_OFFSET`.
static PHYS_LIMIT: AtomicU64 = AtomicU64::new(BOOT_IDENTITY_LIMIT);

/// Switches the window to `[0, limit)` at `offset` (the direct map), after
/// CR3 points at tables that map it.
pub fn set_phys_window(offset: u64, limit: u64) {
    PHYS_LIMIT.store(limit, Ordering::SeqCst);
    PHYS_OFFSET.store(offset, Ordering::SeqCst);
}

/// Virtual address of physical `phys` through the current window. Only a
/// computation: the caller checks [`phys_accessible`] before dereferencing.
pub fn phys_to_virt_early(phys: u64) -> *mut u8 {
    let virt = phys.wrapping_add(PHYS_OFFSET.load(Ordering::Relaxed));
    core::ptr::with_exposed_provenance_mut(virt as usize)
}

/// True if `[phys, phys + len)` lies inside the window.
pub fn phys_accessible(phys: u64, len: u64) -> bool {
    phys.checked_add(len)
        .is_some_and(|end| end <= PHYS_LIMIT.load(Ordering::Relaxed))
}

/// Types that may be copied straight out of physical memory.
///
/// # Safety
/// Every bit pattern of `size_of::<Self>()` bytes must be a valid `Self`
/// (integers, byte arrays, `repr(C)` structs of those without padding
/// invariants), and `Self` must own no pointers.
pub unsafe trait Pod: Copy {}

// SAFETY: plain integers and byte arrays accept every bit pattern.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl<const N: usize> Pod for [u8; N] {}

/// Window address of `[phys, phys + size_of::<T>())`, if the whole range
/// is inside the window and the address is not null.
fn window_ptr<T>(phys: u64) -> Option<*const T> {
    let ptr = phys_to_virt_early(phys).cast::<T>().cast_const();
    (phys_accessible(phys, size_of::<T>() as u64) && !ptr.is_null()).then_some(ptr)
}

/// Copies a `T` from physical `phys` (any alignment: firmware structures
/// promise none), or `None` outside the window.
pub fn read_phys<T: Pod>(phys: u64) -> Option<T> {
    let ptr = window_ptr::<T>(phys)?;
    // SAFETY: the window maps `[0, PHYS_LIMIT)` readable at PHYS_OFFSET (the
    // boot identity map, or the direct map once `set_phys_window` was
    // called) and `window_ptr` checked the whole range lies inside it and is
    // not null; `T: Pod` accepts whatever bytes are there.
    Some(unsafe { ptr.read_unaligned() })
}

/// Reads a naturally aligned `T` at physical `phys` with one volatile
/// access (live page-table entries, device registers), or `None` if
/// misaligned or outside the window.
pub fn read_phys_volatile<T: Pod>(phys: u64) -> Option<T> {
    if !phys.is_multiple_of(align_of::<T>() as u64) {
        return None;
    }
    let ptr = window_ptr::<T>(phys)?;
    // SAFETY: as in `read_phys`, and the pointer is aligned for `T` (the
    // window offset is page-aligned, so alignment carries over). Volatile:
    // the CPU or a device may change the value under us.
    Some(unsafe { ptr.read_volatile() })
}

/// Physical address of the active top-level table (CR3 without flags).
pub fn cr3_phys() -> u64 {
    let (frame, _) = Cr3::read_raw();
    frame.start_address().as_u64()
}

/// Walks `vaddr` through the active page tables. Returns the walk and
/// whether every table could be read (a table outside the window reads as
/// 0, i.e. not present).
pub fn walk_current(vaddr: u64) -> (Walk, bool) {
    let mut complete = true;
    let walk = pgtable::walk(cr3_phys(), vaddr, |phys| {
        read_phys_volatile::<u64>(phys).unwrap_or_else(|| {
            complete = false;
            0
        })
    });
    (walk, complete)
}
