//! The kernel's virtual address space (x86_64, 4-level paging), as
//! DESIGN.md fixes it. Policy, so it lives here; the kernel maps it.
//!
//! ```text
//! 0x0000_0000_0010_0000  kernel image, identity-mapped (4 KiB, W^X)
//! 0xffff_8880_0000_0000  PAGE_OFFSET: direct map of RAM below lowmem
//! 0xffff_c900_0000_0000  VMALLOC_START: vmalloc / vmap / ioremap, vmalloc= long
//! 0xffff_fe00_0000_0000  PKMAP_BASE: 1024 kmap slots (4 MiB)
//! 0xffff_fe00_0040_0000  FIXMAP_BASE: 16 kmap_atomic slots per CPU (NR_CPUS × 64 KiB)
//! ```

pub use crate::types::PAGE_OFFSET;

/// First address of the vmalloc area (cf. `VMALLOC_START`).
pub const VMALLOC_START: u64 = 0xffff_c900_0000_0000;
/// Largest vmalloc area the address space leaves room for (32 TiB, as x86_64).
pub const VMALLOC_MAX_SIZE: u64 = 32 << 40;
/// Base of the persistent-kmap window (cf. `PKMAP_BASE`).
pub const PKMAP_BASE: u64 = 0xffff_fe00_0000_0000;
/// Number of persistent-kmap slots (cf. `LAST_PKMAP`).
pub const LAST_PKMAP: usize = 1024;
/// Base of the fixmap's kmap_atomic slots (cf. `FIX_KMAP_BEGIN`).
pub const FIXMAP_BASE: u64 = PKMAP_BASE + (LAST_PKMAP as u64) * crate::types::PAGE_SIZE;
/// kmap_atomic slots per CPU (cf. `KM_MAX_IDX`): the depth of nested
/// atomic maps.
pub const NR_FIX_KMAP: usize = 16;
/// End of the fixmap: every CPU's [`NR_FIX_KMAP`] slots, CPU `n`'s from
/// `FIXMAP_BASE + n * NR_FIX_KMAP` pages (cf. `FIX_KMAP_BEGIN + idx +
/// KM_MAX_IDX * smp_processor_id()`).
pub const FIXMAP_END: u64 =
    FIXMAP_BASE + (crate::types::NR_CPUS * NR_FIX_KMAP) as u64 * crate::types::PAGE_SIZE;
