//! The vmalloc area: virtually contiguous kernel mappings of scattered
//! frames (`vmalloc`), of caller-given frames (`vmap`) and of physical
//! ranges such as MMIO or held-back RAM (`ioremap`) (cf. `mm/vmalloc.c`).
//!
//! Two layers, as in Linux:
//! - [`VmapAreaAllocator`] hands out virtual ranges of
//!   `[VMALLOC_START, VMALLOC_START + vmalloc=)`. Linux keeps busy and free
//!   `vmap_area`s in two red-black trees (the free one augmented with
//!   `subtree_max_size`). Here both are sorted fixed arrays — no heap, since
//!   this runs under the vmap-area lock where the heap must not be used:
//!   lookup by address is a binary search (O(log n)), the free-space search
//!   is first fit in address order (O(free ranges)), insertion and removal
//!   shift the arrays (a memmove of at most [`MAX_VMAP_AREAS`] entries).
//!   Each area is followed by one unmapped guard page, reserved with it but
//!   not usable (Linux's default, i.e. no `VM_NO_GUARD`), so an overrun
//!   faults instead of corrupting the next area. With lazy purging on
//!   ([`VmapAreaAllocator::set_lazy_purge`]) a freed area's range waits on a
//!   third sorted array, Linux's purge list, until one TLB flush over the
//!   list's span returns it to the free space.
//! - [`vmalloc`], [`vfree`], [`vmap`], [`vunmap`], [`ioremap`], [`iounmap`]
//!   allocate frames from the [`MemoryManager`] and install 4 KiB PTEs
//!   through a [`PageMapper`]. They hold no lock of their own: the caller
//!   holds the allocator (its `vmap_area_lock`) and must not hold the zone
//!   lock, which frame allocation and page-table allocation take.
//!
//! Linux keeps `vm_struct->pages`, the frame list of a vmalloc area. Storing
//! it would need a heap allocation per area, so this crate keeps none:
//! [`vfree`] recovers each frame from the page table as it unmaps it
//! ([`PageMapper::unmap_page`] returns the frame), the PTEs being the one
//! source of truth. Only the first frame is recorded ([`VmapArea::phys`]).

use core::fmt;

use crate::gfp::GfpFlags;
use crate::manager::MemoryManager;
use crate::page::OwnerTag;
use crate::page_alloc::{AllocError, FreeError};
use crate::platform::{MapError, MapProt, PageMapper, Platform};
use crate::selfcheck::{Checked, Problem, VMALLOC};
use crate::types::{PAGE_SHIFT, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};

#[cfg(test)]
pub(crate) mod tests;

/// Capacity of the default [`VmapAreaAllocator`]: live areas at once. Linux
/// has no such limit (areas come from a slab cache); 4096 areas cost about
/// 300 KiB of static memory, and the kernel's own ioremaps plus the API's
/// quota stay far below.
pub const MAX_VMAP_AREAS: usize = 4096;

/// Bytes of unmapped guard after every area (cf. the `PAGE_SIZE` that
/// `__get_vm_area_node()` adds unless `VM_NO_GUARD`).
pub const GUARD_SIZE: u64 = PAGE_SIZE;

/// Largest alignment `ioremap` asks for (cf. `IOREMAP_MAX_ORDER`, generic
/// default `7 + PAGE_SHIFT`): big ranges get naturally aligned so a kernel
/// with huge vmap could use large pages.
pub const IOREMAP_MAX_ORDER: u32 = 7 + PAGE_SHIFT;

/// What an area maps (the `VM_ALLOC` / `VM_MAP` / `VM_IOREMAP` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmapKind {
    /// Frames allocated by [`vmalloc`], freed by [`vfree`].
    Vmalloc,
    /// Caller-owned frames mapped by [`vmap`].
    Vmap,
    /// A physical range mapped uncached by [`ioremap`].
    Ioremap,
}

impl VmapKind {
    /// The word `/proc/vmallocinfo` and the API print.
    pub const fn name(self) -> &'static str {
        match self {
            VmapKind::Vmalloc => "vmalloc",
            VmapKind::Vmap => "vmap",
            VmapKind::Ioremap => "ioremap",
        }
    }
}

/// One busy range of the vmalloc area (cf. `struct vmap_area` with its
/// `vm_struct`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmapArea {
    /// First usable byte (page-aligned).
    pub start: VirtAddr,
    /// Usable bytes, a multiple of `PAGE_SIZE`, **without** the guard page
    /// (cf. `get_vm_area_size()`).
    pub size: u64,
    /// What it maps.
    pub kind: VmapKind,
    /// Pages mapped (`size / PAGE_SIZE`).
    pub nr_pages: u64,
    /// Physical address of the first page (vmalloc, vmap) or the page-aligned
    /// base of the mapped range (ioremap, cf. `vm_struct->phys_addr`).
    pub phys: PhysAddr,
    /// Who asked (cf. `vm_struct->caller`, printed with `%pS`): see
    /// [`VmapArea::caller`]. An `Option` so that an empty slot is all
    /// zeroes and the kernel's static allocator costs no image bytes.
    caller_name: Option<&'static str>,
    /// Demand-zero ([`vmalloc_lazy`]): nothing is mapped up front; the #PF
    /// handler ([`crate::fault`]) maps the zero page on a read and a zeroed
    /// frame on the first write to each page.
    pub lazy: bool,
    /// Pages backed by a frame of their own: `nr_pages` for an eager
    /// vmalloc area, the pages written so far for a lazy one (zero-page
    /// mappings excluded). 0 for vmap and ioremap, whose frames are not the
    /// area's.
    pub resident: u64,
}

impl VmapArea {
    const EMPTY: VmapArea = VmapArea {
        start: VirtAddr(0),
        size: 0,
        kind: VmapKind::Vmalloc,
        nr_pages: 0,
        phys: PhysAddr(0),
        caller_name: None,
        lazy: false,
        resident: 0,
    };

    /// Who asked for the area (cf. `vm_struct->caller`, printed with `%pS`).
    pub const fn caller(&self) -> &'static str {
        match self.caller_name {
            Some(c) => c,
            None => "",
        }
    }

    /// End of the usable range, which is also the guard page's address.
    pub const fn end(&self) -> VirtAddr {
        VirtAddr(self.start.0 + self.size)
    }

    /// The guard page after the area.
    pub const fn guard_page(&self) -> VirtAddr {
        self.end()
    }

    /// Bytes reserved, guard included (cf. `vm_struct->size`, which
    /// `/proc/vmallocinfo` prints).
    pub const fn reserved_size(&self) -> u64 {
        self.size + GUARD_SIZE
    }

    /// End of the reserved range (guard included, exclusive).
    pub const fn reserved_end(&self) -> VirtAddr {
        VirtAddr(self.start.0 + self.reserved_size())
    }

    /// Whether `addr` lies in the reserved range (guard page included, so a
    /// fault just past the end names its area).
    pub const fn contains(&self, addr: VirtAddr) -> bool {
        addr.0 >= self.start.0 && addr.0 < self.start.0 + self.reserved_size()
    }
}

/// Failures of the vmalloc layer. A failed call changes nothing: partial
/// work is unwound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmallocError {
    /// Size 0, or a size/range that overflows the address space.
    BadSize {
        /// Bytes asked for.
        size: u64,
    },
    /// The alignment is not a power of two.
    BadAlign {
        /// Alignment asked for.
        align: u64,
    },
    /// No free range fits (cf. `vmap allocation for size %lu failed: use
    /// vmalloc=<size> to increase size`).
    NoSpace {
        /// Bytes asked for (page-rounded, guard excluded).
        size: u64,
        /// Alignment asked for.
        align: u64,
    },
    /// [`VmapAreaAllocator::reinit`] while areas are live.
    InUse {
        /// Live areas.
        nr_areas: usize,
    },
    /// Every area slot is in use.
    TooManyAreas {
        /// The allocator's capacity.
        max: usize,
    },
    /// `addr` does not start an area (cf. the "Trying to vfree()
    /// nonexistent vm area" warning).
    NotAreaStart {
        /// The address given.
        addr: VirtAddr,
        /// Start of the area containing `addr`, if any.
        area: Option<VirtAddr>,
    },
    /// The area is of another kind (e.g. `vfree` of an ioremap).
    WrongKind {
        /// The area's start.
        addr: VirtAddr,
        /// What it is.
        kind: VmapKind,
        /// What the call handles.
        expected: VmapKind,
    },
    /// Frame allocation failed after `nr_pages_done` pages (all given back).
    NoMemory {
        /// Pages that had been allocated before the failure.
        nr_pages_done: u64,
        /// The buddy allocator's answer.
        err: AllocError,
    },
    /// Installing a PTE failed (all given back).
    Map(MapError),
    /// A lazy area was asked for before the kernel set the zero page.
    NoZeroPage,
    /// `ioremap` of RAM that the buddy allocator manages (cf. "ioremap on
    /// RAM at %pa - %pa" in `__ioremap_caller()`).
    RamInUse {
        /// First managed frame of the range.
        pfn: Pfn,
    },
    /// Teardown found a page of the area unmapped (the area was still freed).
    NotMapped {
        /// The unmapped page.
        virt: VirtAddr,
    },
    /// Teardown could not give a frame back (the area was still freed).
    FreeFrame {
        /// The frame.
        pfn: Pfn,
        /// The buddy allocator's answer.
        err: FreeError,
    },
}

impl fmt::Display for VmallocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmallocError::BadSize { size } => write!(f, "invalid size {size}"),
            VmallocError::BadAlign { align } => {
                write!(f, "alignment {align:#x} is not a power of two")
            }
            VmallocError::NoSpace { size, align } => {
                write!(
                    f,
                    "vmap allocation for size {size} (align {align:#x}) failed: use vmalloc=<size> to increase size"
                )
            }
            VmallocError::InUse { nr_areas } => write!(f, "{nr_areas} vmap areas still in use"),
            VmallocError::TooManyAreas { max } => write!(f, "all {max} vmap areas in use"),
            VmallocError::NotAreaStart {
                addr,
                area: Some(a),
            } => {
                write!(f, "{addr} is inside the area at {a}, not its start")
            }
            VmallocError::NotAreaStart { addr, area: None } => write!(f, "no vm area at {addr}"),
            VmallocError::WrongKind {
                addr,
                kind,
                expected,
            } => {
                write!(f, "area {addr} is {}, not {}", kind.name(), expected.name())
            }
            VmallocError::NoMemory { nr_pages_done, err } => {
                write!(f, "out of memory after {nr_pages_done} pages: {err}")
            }
            VmallocError::Map(e) => write!(f, "mapping failed: {e}"),
            VmallocError::NoZeroPage => write!(f, "no zero page: lazy areas are unavailable"),
            VmallocError::RamInUse { pfn } => write!(
                f,
                "ioremap on RAM managed by the page allocator (pfn {pfn})"
            ),
            VmallocError::NotMapped { virt } => write!(f, "page {virt} of the area was not mapped"),
            VmallocError::FreeFrame { pfn, err } => write!(f, "freeing pfn {pfn}: {err}"),
        }
    }
}

/// A free range `[start, end)` of the vmalloc area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FreeRange {
    start: u64,
    end: u64,
}

impl FreeRange {
    const EMPTY: FreeRange = FreeRange { start: 0, end: 0 };
}

/// Inserts `[start, end)` into the sorted, merged ranges `list[..n]`,
/// merging with the range that ends at `start` and the one that begins at
/// `end`; returns the new count (cf. `merge_or_add_vmap_area()`).
fn merge_or_add(list: &mut [FreeRange], n: usize, start: u64, end: u64) -> usize {
    let pos = list[..n].partition_point(|r| r.start < start);
    let merge_prev = pos > 0 && list[pos - 1].end == start;
    let merge_next = pos < n && list[pos].start == end;
    match (merge_prev, merge_next) {
        (true, true) => {
            list[pos - 1].end = list[pos].end;
            list.copy_within(pos + 1..n, pos);
            n - 1
        }
        (true, false) => {
            list[pos - 1].end = end;
            n
        }
        (false, true) => {
            list[pos].start = start;
            n
        }
        (false, false) => {
            list.copy_within(pos..n, pos + 1);
            list[pos] = FreeRange { start, end };
            n + 1
        }
    }
}

/// Linux's `lazy_max_pages()`: 32 MiB of freed vmap space per bit of the
/// online CPU count may wait for one purge.
pub fn lazy_max_pages(nr_cpus: usize) -> u64 {
    let log = usize::BITS - nr_cpus.max(1).leading_zeros();
    u64::from(log) * ((32 << 20) / PAGE_SIZE)
}

/// Statistics for `/proc/meminfo` and `/api/vmallocinfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmallocStats {
    /// Size of the vmalloc area (`VmallocTotal`).
    pub total_bytes: u64,
    /// Usable bytes of all areas, guards excluded.
    pub used_bytes: u64,
    /// Bytes reserved by all areas, guards included.
    pub reserved_bytes: u64,
    /// Frames owned by `vmalloc` areas (Linux's `VmallocUsed` =
    /// `vmalloc_nr_pages()`): lazy areas count their resident pages only.
    pub vmalloc_pages: u64,
    /// Largest free range (`VmallocChunk`; Linux prints 0 since 4.12, we
    /// still compute it).
    pub largest_free_bytes: u64,
    /// Live areas.
    pub nr_areas: usize,
    /// Free ranges.
    pub nr_free_ranges: usize,
}

/// The vmap-area allocator (cf. `vmap_area_root` + `free_vmap_area_root`).
///
/// `N` is the capacity in areas; `F` must be `N + 1` (free ranges alternate
/// with busy areas, so there is at most one more): the defaults give
/// [`MAX_VMAP_AREAS`]. It is large (about 300 KiB at the default
/// capacity): the kernel keeps it in a static behind its lock, built by the
/// `const fn` [`VmapAreaAllocator::new`] and sized with
/// [`VmapAreaAllocator::reinit`]; tests keep it in a `Box`.
pub struct VmapAreaAllocator<
    const N: usize = MAX_VMAP_AREAS,
    const F: usize = { MAX_VMAP_AREAS + 1 },
> {
    start: u64,
    end: u64,
    /// Busy areas sorted by start, `[..nr_busy]` valid.
    busy: [VmapArea; N],
    nr_busy: usize,
    /// Free ranges sorted, disjoint and never adjacent (merged), `[..nr_free]`.
    free: [FreeRange; F],
    nr_free: usize,
    /// The shared zero page lazy areas map on a read fault (cf.
    /// `ZERO_PAGE()`); `None` until the kernel provides it.
    zero_page: Option<Pfn>,
    /// Freed areas whose translations may still be cached in some CPU's
    /// TLB (cf. `purge_vmap_area_root`): sorted, merged, `[..nr_purge]`;
    /// their space is reused only after [`VmapAreaAllocator::purge`].
    purge: [FreeRange; N],
    nr_purge: usize,
    /// Pages (guards included) on the purge list (cf. `vmap_lazy_nr`).
    lazy_pages: u64,
    /// Lazy purging's threshold in pages, 0 when freed areas are released
    /// at once ([`VmapAreaAllocator::set_lazy_purge`]).
    lazy_max_pages: u64,
}

impl VmapAreaAllocator {
    /// An allocator over `[start, start + size)` with [`MAX_VMAP_AREAS`]
    /// slots; the range is shrunk inward to whole pages.
    pub const fn new(start: VirtAddr, size: u64) -> Self {
        Self::with_capacity(start, size)
    }
}

impl<const N: usize, const F: usize> VmapAreaAllocator<N, F> {
    /// An allocator of capacity `N` over `[start, start + size)`, shrunk
    /// inward to whole pages (and clamped at the top of the address space).
    pub const fn with_capacity(start: VirtAddr, size: u64) -> Self {
        const { assert!(F == N + 1, "VmapAreaAllocator<N, F> needs F == N + 1") };
        let s = match start.0.checked_add(PAGE_SIZE - 1) {
            Some(s) => s & !(PAGE_SIZE - 1),
            None => start.0 & !(PAGE_SIZE - 1),
        };
        let e = start.0.saturating_add(size) & !(PAGE_SIZE - 1);
        let e = if e < s { s } else { e };
        let mut free = [FreeRange::EMPTY; F];
        let nr_free = if e > s {
            free[0] = FreeRange { start: s, end: e };
            1
        } else {
            0
        };
        VmapAreaAllocator {
            start: s,
            end: e,
            busy: [VmapArea::EMPTY; N],
            nr_busy: 0,
            free,
            nr_free,
            zero_page: None,
            purge: [FreeRange::EMPTY; N],
            nr_purge: 0,
            lazy_pages: 0,
            lazy_max_pages: 0,
        }
    }

    /// Sets the frame of the shared zero page (cf. `empty_zero_page`): a
    /// reserved, zeroed frame nothing ever writes, mapped read-only by read
    /// faults in lazy areas and never freed by [`vfree`].
    pub fn set_zero_page(&mut self, pfn: Pfn) {
        self.zero_page = Some(pfn);
    }

    /// The shared zero page, once set.
    pub const fn zero_page(&self) -> Option<Pfn> {
        self.zero_page
    }

    /// Re-targets an empty allocator to `[start, start + size)` in place —
    /// for the kernel, whose static is built by the `const fn` constructor
    /// before `vmalloc=` is parsed (a temporary would not fit a kernel
    /// stack). Refused while areas are live.
    pub fn reinit(&mut self, start: VirtAddr, size: u64) -> Result<(), VmallocError> {
        if self.nr_busy + self.nr_purge != 0 {
            return Err(VmallocError::InUse {
                nr_areas: self.nr_busy + self.nr_purge,
            });
        }
        let fresh = VmapAreaAllocator::<0, 1>::with_capacity(start, size);
        (self.start, self.end, self.nr_free) = (fresh.start, fresh.end, fresh.nr_free);
        self.free[0] = fresh.free[0];
        Ok(())
    }

    /// The managed range `[start, end)`.
    pub const fn range(&self) -> (VirtAddr, VirtAddr) {
        (VirtAddr(self.start), VirtAddr(self.end))
    }

    /// Whether `addr` is in the managed range (cf. `is_vmalloc_addr()`).
    pub const fn is_vmalloc_addr(&self, addr: VirtAddr) -> bool {
        addr.0 >= self.start && addr.0 < self.end
    }

    /// Maximum number of live areas.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Reserves `size` bytes (rounded up to pages) plus a guard page at the
    /// lowest address aligned to `align` (a power of two; below `PAGE_SIZE`
    /// means `PAGE_SIZE`) — cf. `alloc_vmap_area()`, `__alloc_vmap_area()`,
    /// `find_vmap_lowest_match()`, `adjust_va_to_fit_type()`. The area's
    /// `phys` is 0 until its owner records it.
    pub fn alloc(
        &mut self,
        size: u64,
        align: u64,
        kind: VmapKind,
        caller: &'static str,
    ) -> Result<VmapArea, VmallocError> {
        let i = self.alloc_index(size, align, kind, caller)?;
        Ok(self.busy[i])
    }

    /// [`VmapAreaAllocator::alloc`], returning the new area's index in the
    /// busy list (valid until the next `alloc` or `free`).
    fn alloc_index(
        &mut self,
        size: u64,
        align: u64,
        kind: VmapKind,
        caller: &'static str,
    ) -> Result<usize, VmallocError> {
        if !align.is_power_of_two() {
            return Err(VmallocError::BadAlign { align });
        }
        let size_pages = match size.checked_add(PAGE_SIZE - 1) {
            Some(s) if size != 0 => s & !(PAGE_SIZE - 1),
            _ => return Err(VmallocError::BadSize { size }),
        };
        let Some(total) = size_pages.checked_add(GUARD_SIZE) else {
            return Err(VmallocError::BadSize { size });
        };
        // Busy areas and purge ranges together separate the free ranges,
        // of which there are at most `F` = `N` + 1.
        if self.nr_busy + self.nr_purge >= N {
            return Err(VmallocError::TooManyAreas { max: N });
        }
        let align = if align < PAGE_SIZE { PAGE_SIZE } else { align };
        let Some((idx, nva_start)) = self.find_lowest_match(total, align) else {
            return Err(VmallocError::NoSpace {
                size: size_pages,
                align,
            });
        };
        self.adjust_va_to_fit_type(idx, nva_start, total);
        let area = VmapArea {
            start: VirtAddr(nva_start),
            size: size_pages,
            kind,
            nr_pages: size_pages / PAGE_SIZE,
            phys: PhysAddr(0),
            caller_name: Some(caller),
            lazy: false,
            resident: 0,
        };
        let pos = self.busy[..self.nr_busy].partition_point(|a| a.start.0 < nva_start);
        self.busy.copy_within(pos..self.nr_busy, pos + 1);
        self.busy[pos] = area;
        self.nr_busy += 1;
        Ok(pos)
    }

    /// First free range, in address order, holding `total` bytes at an
    /// `align`ed start (cf. `find_vmap_lowest_match()`, which gets there in
    /// O(log n) with the augmented tree; first fit over the array here).
    fn find_lowest_match(&self, total: u64, align: u64) -> Option<(usize, u64)> {
        self.free[..self.nr_free]
            .iter()
            .enumerate()
            .find_map(|(i, r)| {
                let nva = r.start.checked_add(align - 1)? & !(align - 1);
                (nva < r.end && r.end - nva >= total).then_some((i, nva))
            })
    }

    /// Carves `[nva_start, nva_start + total)` out of free range `idx`
    /// (cf. `adjust_va_to_fit_type()` and its four fit types).
    fn adjust_va_to_fit_type(&mut self, idx: usize, nva_start: u64, total: u64) {
        let r = self.free[idx];
        let nva_end = nva_start + total;
        match (r.start == nva_start, r.end == nva_end) {
            // FL_FIT_TYPE: the whole range.
            (true, true) => {
                self.free.copy_within(idx + 1..self.nr_free, idx);
                self.nr_free -= 1;
            }
            // LE_FIT_TYPE: its left edge.
            (true, false) => self.free[idx].start = nva_end,
            // RE_FIT_TYPE: its right edge.
            (false, true) => self.free[idx].end = nva_start,
            // NE_FIT_TYPE: the middle; the range splits in two. There is
            // room: free ranges ≤ busy areas + 1 ≤ N + 1 = F.
            (false, false) => {
                self.free.copy_within(idx + 1..self.nr_free, idx + 2);
                self.free[idx].end = nva_start;
                self.free[idx + 1] = FreeRange {
                    start: nva_end,
                    end: r.end,
                };
                self.nr_free += 1;
            }
        }
    }

    fn busy_index_containing(&self, addr: VirtAddr) -> Option<usize> {
        let pos = self.busy[..self.nr_busy].partition_point(|a| a.start.0 <= addr.0);
        let i = pos.checked_sub(1)?;
        self.busy[i].contains(addr).then_some(i)
    }

    /// The area whose reserved range (guard included) contains `addr`, by
    /// binary search (cf. `find_vmap_area()`).
    pub fn find(&self, addr: VirtAddr) -> Option<&VmapArea> {
        self.busy_index_containing(addr).map(|i| &self.busy[i])
    }

    fn index_of_start(&self, start: VirtAddr) -> Result<usize, VmallocError> {
        match self.busy_index_containing(start) {
            Some(i) if self.busy[i].start == start => Ok(i),
            Some(i) => Err(VmallocError::NotAreaStart {
                addr: start,
                area: Some(self.busy[i].start),
            }),
            None => Err(VmallocError::NotAreaStart {
                addr: start,
                area: None,
            }),
        }
    }

    fn area_mut(&mut self, start: VirtAddr) -> Option<&mut VmapArea> {
        let i = self.index_of_start(start).ok()?;
        Some(&mut self.busy[i])
    }

    /// The area whose usable range (guard page excluded) contains `addr`.
    pub(crate) fn area_containing_mut(&mut self, addr: VirtAddr) -> Option<&mut VmapArea> {
        let i = self.busy_index_containing(addr)?;
        let area = &mut self.busy[i];
        (addr.0 < area.end().0).then_some(area)
    }

    /// Releases the area starting at `start` (guard included) and merges
    /// the range with its free neighbours (cf. `free_vmap_area()` →
    /// `merge_or_add_vmap_area()`). Refused unless `start` starts an area.
    /// Unmapping is the caller's job, before this.
    pub fn free(&mut self, start: VirtAddr) -> Result<VmapArea, VmallocError> {
        let i = self.index_of_start(start)?;
        Ok(self.free_index(i))
    }

    /// [`VmapAreaAllocator::free`] of the area at index `i` of the busy
    /// list (as [`VmapAreaAllocator::index_of_start`] found it).
    fn free_index(&mut self, i: usize) -> VmapArea {
        let area = self.remove_busy(i);
        self.merge_or_add_vmap_area(area.start.0, area.reserved_end().0);
        area
    }

    /// Takes the area at index `i` off the busy list.
    fn remove_busy(&mut self, i: usize) -> VmapArea {
        let area = self.busy[i];
        self.busy.copy_within(i + 1..self.nr_busy, i);
        self.nr_busy -= 1;
        area
    }

    /// Releases the area at index `i` (as [`VmapAreaAllocator::free`]
    /// does), or with lazy purging on, puts its range on the purge list
    /// instead, its space reused only after the next
    /// [`VmapAreaAllocator::purge`] (cf. `free_vmap_area_noflush()`). The
    /// caller has cleared its PTEs, without a TLB flush in the lazy case.
    fn retire_index(&mut self, i: usize) -> VmapArea {
        if self.lazy_max_pages == 0 {
            return self.free_index(i);
        }
        let area = self.remove_busy(i);
        let (start, end) = (area.start.0, area.reserved_end().0);
        self.lazy_pages += (end - start) / PAGE_SIZE;
        let n = self.nr_purge;
        self.nr_purge = merge_or_add(&mut self.purge, n, start, end);
        area
    }

    /// Turns lazy purging of freed areas on, with a threshold of
    /// `max_pages` (see [`lazy_max_pages`]), or off with 0 (the default;
    /// the kernel turns it on). With it, [`vfree`], [`vunmap`] and
    /// [`iounmap`] clear the PTEs without a TLB flush — the frames of a
    /// vmalloc area go back to the buddy allocator at once, as in Linux —
    /// and the range waits on the purge list; once more than `max_pages`
    /// wait, or an allocation finds no room, one flush over the list's span
    /// retires every range on it (cf. `free_vmap_area_noflush()`,
    /// `purge_vmap_area_lazy()`). Turning it off purges nothing: call
    /// [`VmapAreaAllocator::purge`] first.
    pub fn set_lazy_purge(&mut self, max_pages: u64) {
        self.lazy_max_pages = max_pages;
    }

    /// Whether freed areas wait on the purge list.
    pub const fn lazy_purge(&self) -> bool {
        self.lazy_max_pages != 0
    }

    /// [`VmapAreaAllocator::alloc`], tried once more after a purge when it
    /// found no room or no slot and the purge list holds some (cf.
    /// `alloc_vmap_area()`: `purge_vmap_area_lazy()`, then retry).
    pub fn alloc_or_purge(
        &mut self,
        mapper: &impl PageMapper,
        size: u64,
        align: u64,
        kind: VmapKind,
        caller: &'static str,
    ) -> Result<VmapArea, VmallocError> {
        let i = self.alloc_index_or_purge(mapper, size, align, kind, caller)?;
        Ok(self.busy[i])
    }

    fn alloc_index_or_purge(
        &mut self,
        mapper: &impl PageMapper,
        size: u64,
        align: u64,
        kind: VmapKind,
        caller: &'static str,
    ) -> Result<usize, VmallocError> {
        match self.alloc_index(size, align, kind, caller) {
            Err(VmallocError::NoSpace { .. } | VmallocError::TooManyAreas { .. })
                if self.nr_purge > 0 =>
            {
                self.purge(mapper);
                self.alloc_index(size, align, kind, caller)
            }
            r => r,
        }
    }

    /// Purges if more than the threshold waits (cf. the `vmap_lazy_nr`
    /// check at the end of `free_vmap_area_noflush()`).
    fn purge_if_over(&mut self, mapper: &impl PageMapper) {
        if self.lazy_max_pages != 0 && self.lazy_pages > self.lazy_max_pages {
            self.purge(mapper);
        }
    }

    /// Pages (guard pages included) waiting on the purge list.
    pub const fn lazy_pages(&self) -> u64 {
        self.lazy_pages
    }

    /// The ranges on the purge list, `[start, end)` in address order (cf.
    /// the `unpurged vm_area` lines of `/proc/vmallocinfo`).
    pub fn unpurged(&self) -> impl Iterator<Item = (VirtAddr, VirtAddr)> + '_ {
        self.purge[..self.nr_purge]
            .iter()
            .map(|r| (VirtAddr(r.start), VirtAddr(r.end)))
    }

    /// Flushes the TLBs over the purge list's span, once, and returns its
    /// ranges to the free space (cf. `__purge_vmap_area_lazy()`); returns
    /// the pages purged.
    pub fn purge(&mut self, mapper: &impl PageMapper) -> u64 {
        if self.nr_purge == 0 {
            return 0;
        }
        let (lo, hi) = (self.purge[0].start, self.purge[self.nr_purge - 1].end);
        mapper.flush_tlb_range(VirtAddr(lo), VirtAddr(hi));
        for k in 0..self.nr_purge {
            let r = self.purge[k];
            self.merge_or_add_vmap_area(r.start, r.end);
        }
        self.nr_purge = 0;
        core::mem::take(&mut self.lazy_pages)
    }

    /// Inserts `[start, end)` into the free ranges, merging with the range
    /// that ends at `start` and the one that begins at `end` (cf.
    /// `merge_or_add_vmap_area()`).
    fn merge_or_add_vmap_area(&mut self, start: u64, end: u64) {
        let n = self.nr_free;
        self.nr_free = merge_or_add(&mut self.free, n, start, end);
    }

    /// Live areas in address order (for `/proc/vmallocinfo`).
    pub fn iter(&self) -> impl Iterator<Item = &VmapArea> + '_ {
        self.busy[..self.nr_busy].iter()
    }

    /// Free ranges `[start, end)` in address order.
    pub fn free_ranges(&self) -> impl Iterator<Item = (VirtAddr, VirtAddr)> + '_ {
        self.free[..self.nr_free]
            .iter()
            .map(|r| (VirtAddr(r.start), VirtAddr(r.end)))
    }

    /// Number of live areas.
    pub fn nr_areas(&self) -> usize {
        self.nr_busy
    }

    /// Counters, recomputed from the arrays (O(n); n ≤ `N`).
    pub fn stats(&self) -> VmallocStats {
        let areas = self.iter();
        let (mut used, mut reserved, mut vpages) = (0, 0, 0);
        for a in areas {
            used += a.size;
            reserved += a.reserved_size();
            if a.kind == VmapKind::Vmalloc {
                vpages += a.resident;
            }
        }
        VmallocStats {
            total_bytes: self.end - self.start,
            used_bytes: used,
            reserved_bytes: reserved,
            vmalloc_pages: vpages,
            largest_free_bytes: self.free[..self.nr_free]
                .iter()
                .map(|r| r.end - r.start)
                .max()
                .unwrap_or(0),
            nr_areas: self.nr_busy,
            nr_free_ranges: self.nr_free,
        }
    }

    /// Writes `/proc/vmallocinfo` (cf. `vmalloc_info_show()` / `show_vmap_area_info`):
    /// `0x%pK-0x%pK %7ld caller[ pages=N][ phys=%pa] kind`, the size and end
    /// including the guard page as Linux prints `vm->size`. Like Linux,
    /// `pages=` appears for vmalloc areas only and `phys=` for ioremap only.
    pub fn write_vmallocinfo(&self, w: &mut dyn fmt::Write) -> fmt::Result {
        for a in self.iter() {
            write!(
                w,
                "0x{:016x}-0x{:016x} {:7}",
                a.start.0,
                a.reserved_end().0,
                a.reserved_size()
            )?;
            if !a.caller().is_empty() {
                write!(w, " {}", a.caller())?;
            }
            // `vm->nr_pages`: the frames the area owns (for a lazy area,
            // those faulted in so far).
            if a.kind == VmapKind::Vmalloc && a.resident != 0 {
                write!(w, " pages={}", a.resident)?;
            }
            if a.kind == VmapKind::Ioremap && a.phys.0 != 0 {
                write!(w, " phys=0x{:016x}", a.phys.0)?;
            }
            writeln!(w, " {}", a.kind.name())?;
        }
        // cf. show_purge_info().
        for (start, end) in self.unpurged() {
            writeln!(
                w,
                "0x{:016x}-0x{:016x} {:7} unpurged vm_area",
                start.0,
                end.0,
                end.0 - start.0
            )?;
        }
        Ok(())
    }

    /// Recounts the structure: busy areas sorted, page-aligned, inside the
    /// range and disjoint; free ranges sorted, non-empty, never adjacent
    /// (fully merged); and busy ∪ free tiles the range exactly. O(n); for
    /// tests. The first problem of [`VmapAreaAllocator::check_each`].
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let mut first = None;
        self.check_each(
            &mut |p| {
                first.get_or_insert(p.what);
            },
            &mut Checked::default(),
        );
        first.map_or(Ok(()), Err)
    }

    /// The walk behind [`VmapAreaAllocator::check_invariants`], reporting
    /// every problem with the address it concerns (cf. the augmented-tree
    /// checks of `lib/test_vmalloc.c`'s users: no overlap, fully merged
    /// free space).
    pub(crate) fn check_each(&self, sink: &mut dyn FnMut(Problem), _checked: &mut Checked) {
        let mut bad = |what, at: u64| sink(Problem::new(VMALLOC, what, Some(at)));
        let busy = &self.busy[..self.nr_busy];
        let free = &self.free[..self.nr_free];
        for a in busy {
            if a.start.0 % PAGE_SIZE != 0 || a.size == 0 || a.size % PAGE_SIZE != 0 {
                bad("busy area not page-aligned or empty", a.start.0);
            }
        }
        for a in busy {
            if a.nr_pages != a.size / PAGE_SIZE {
                bad("nr_pages disagrees with size", a.start.0);
            }
            // (An eager area is at 0 while `vmalloc` maps it, or when made
            // by `alloc` alone; the page walk checks it against the PTEs.)
            let resident_ok = match a.kind {
                VmapKind::Vmalloc => a.resident <= a.nr_pages,
                _ => !a.lazy && a.resident == 0,
            };
            if !resident_ok {
                bad(
                    "resident page count impossible for the area's kind",
                    a.start.0,
                );
            }
        }
        for r in free.iter().filter(|r| r.start >= r.end) {
            bad("empty free range", r.start);
        }
        for w in free.windows(2).filter(|w| w[0].end >= w[1].start) {
            bad("free ranges unsorted, overlapping or unmerged", w[1].start);
        }
        let purge = &self.purge[..self.nr_purge];
        for r in purge
            .iter()
            .filter(|r| r.start >= r.end || r.start % PAGE_SIZE != 0)
        {
            bad("empty or unaligned range on the purge list", r.start);
        }
        for w in purge.windows(2).filter(|w| w[0].end >= w[1].start) {
            bad("purge list unsorted, overlapping or unmerged", w[1].start);
        }
        if purge
            .iter()
            .map(|r| (r.end - r.start) / PAGE_SIZE)
            .sum::<u64>()
            != self.lazy_pages
        {
            bad("lazy page count disagrees with the purge list", self.start);
        }
        if self.nr_busy + self.nr_purge > N {
            bad("more busy areas and purge ranges than slots", self.start);
        }
        // Walk the three lists in address order: they must tile
        // [start, end).
        let (mut b, mut f, mut u, mut at) = (0, 0, 0, self.start);
        while at < self.end {
            if b < busy.len() && busy[b].start.0 == at {
                at = busy[b].reserved_end().0;
                b += 1;
            } else if f < free.len() && free[f].start == at {
                at = free[f].end;
                f += 1;
            } else if u < purge.len() && purge[u].start == at {
                at = purge[u].end;
                u += 1;
            } else {
                bad("gap or overlap between busy, free and purged ranges", at);
                return;
            }
        }
        if at != self.end || b != busy.len() || f != free.len() || u != purge.len() {
            bad("ranges run past the end of the area", at);
        }
    }
}

// ---------------------------------------------------------------------------
// vmalloc / vfree
// ---------------------------------------------------------------------------

/// Pages unmapped per TLB flush when tearing down an area whose frames are
/// then freed: without lazy purging, frames go back to the buddy allocator
/// only after their translations are flushed, and without a heap the frame
/// numbers wait in a stack buffer of this size.
const TEARDOWN_BATCH: usize = 64;

/// Frames asked of the bulk allocator at a time by [`vmalloc`], and the
/// teardown batch of areas this small.
const ALLOC_BATCH: usize = 16;

/// `vmalloc(size)`: `size` bytes (rounded up to pages) of virtually
/// contiguous memory from order-0 frames allocated one by one with
/// `GFP_KERNEL | __GFP_HIGHMEM` — HighMem first, then the lower zones.
pub fn vmalloc<P: Platform, const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mm: &MemoryManager<'_, P>,
    mapper: &impl PageMapper,
    size: u64,
    caller: &'static str,
) -> Result<VmapArea, VmallocError> {
    __vmalloc_node_range(
        areas,
        mm,
        mapper,
        size,
        1,
        GfpFlags::GFP_KERNEL | GfpFlags::HIGHMEM,
        MapProt::KERNEL,
        caller,
    )
}

/// `vzalloc(size)`: [`vmalloc`] with every frame zeroed through the
/// platform (kmap_atomic for HighMem) before it is mapped.
pub fn vzalloc<P: Platform, const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mm: &MemoryManager<'_, P>,
    mapper: &impl PageMapper,
    size: u64,
    caller: &'static str,
) -> Result<VmapArea, VmallocError> {
    let gfp = GfpFlags::GFP_KERNEL | GfpFlags::HIGHMEM | GfpFlags::ZERO;
    __vmalloc_node_range(areas, mm, mapper, size, 1, gfp, MapProt::KERNEL, caller)
}

/// The general form (cf. `__vmalloc_node_range()` → `__get_vm_area_node()`,
/// `__vmalloc_area_node()`, `vm_area_alloc_pages()`, `vmap_pages_range()`):
/// reserve an `align`ed area, then for each page allocate an order-0 frame
/// with `gfp` (`__GFP_ZERO` honoured) and map it with `prot`. On any
/// failure everything done so far is undone — PTEs removed and flushed,
/// frames freed, area released — and the error returned.
#[allow(clippy::too_many_arguments)]
pub fn __vmalloc_node_range<P: Platform, const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mm: &MemoryManager<'_, P>,
    mapper: &impl PageMapper,
    size: u64,
    align: u64,
    gfp: GfpFlags,
    prot: MapProt,
    caller: &'static str,
) -> Result<VmapArea, VmallocError> {
    let idx = areas.alloc_index_or_purge(mapper, size, align, VmapKind::Vmalloc, caller)?;
    let area = areas.busy[idx];
    // cf. vm_area_alloc_pages(): frames in batches from the bulk
    // allocator, which falls back to one `alloc_pages()` when its fast
    // path has none.
    let mut batch = [Pfn(0); ALLOC_BATCH];
    let mut phys = PhysAddr(0);
    let mut done = 0;
    while done < area.nr_pages {
        let want = (area.nr_pages - done).min(ALLOC_BATCH as u64) as usize;
        let got = match mm.alloc_pages_bulk(gfp, OwnerTag::VMALLOC, &mut batch[..want]) {
            Ok(got) => got,
            Err(err) => {
                unwind(areas, mm, mapper, &area, done);
                return Err(VmallocError::NoMemory {
                    nr_pages_done: done,
                    err,
                });
            }
        };
        if done == 0 {
            phys = batch[0].phys();
        }
        let virt = VirtAddr(area.start.0 + done * PAGE_SIZE);
        if let Err((k, e)) = mapper.map_pages(virt, got as u64, &|k| batch[k as usize], prot) {
            // Never mapped, so no stale translation: free them right away.
            mm.free_pages_bulk(&batch[k as usize..got], &mut |_, _| {});
            unwind(areas, mm, mapper, &area, done + k);
            return Err(VmallocError::Map(e));
        }
        done += got as u64;
    }
    let a = &mut areas.busy[idx];
    a.phys = phys;
    a.resident = a.nr_pages;
    Ok(*a)
}

/// A demand-zero vmalloc: reserves `size` bytes (rounded up to pages, plus
/// the guard page) and maps nothing. Each page is populated by the #PF
/// handler on first touch ([`crate::fault::handle_vmalloc_fault`]): a read
/// maps the shared zero page read-only, a write installs a zeroed frame
/// of its own. Linux's vmalloc is never lazy — this is what its anonymous
/// user memory does (`do_anonymous_page()`), moved into the vmalloc area
/// so that a kernel without user space can show it. Freed by [`vfree`].
/// Refused without a zero page ([`VmapAreaAllocator::set_zero_page`]).
pub fn vmalloc_lazy<const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mapper: &impl PageMapper,
    size: u64,
    caller: &'static str,
) -> Result<VmapArea, VmallocError> {
    if areas.zero_page.is_none() {
        return Err(VmallocError::NoZeroPage);
    }
    let area = areas.alloc_or_purge(mapper, size, 1, VmapKind::Vmalloc, caller)?;
    match areas.area_mut(area.start) {
        Some(a) => {
            a.lazy = true;
            Ok(*a)
        }
        // Unreachable: we hold the allocator and just created it.
        None => Ok(VmapArea { lazy: true, ..area }),
    }
}

/// Undo a partial vmalloc: `nr_mapped` pages are mapped and own frames.
fn unwind<P: Platform, const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mm: &MemoryManager<'_, P>,
    mapper: &impl PageMapper,
    area: &VmapArea,
    nr_mapped: u64,
) {
    let _ = unmap_area_pages(mapper, area.start, nr_mapped, Some(&release_to(mm)), None);
    let _ = areas.free(area.start);
}

/// Gives frames back, reporting each one refused; `None` where the frames
/// are not ours (vmap, ioremap).
type Release<'r> = Option<&'r dyn Fn(&[Pfn], &mut dyn FnMut(Pfn, FreeError))>;

/// Frees the frames of a vmalloc area through `mm`.
fn release_to<'r, P: Platform>(
    mm: &'r MemoryManager<'_, P>,
) -> impl Fn(&[Pfn], &mut dyn FnMut(Pfn, FreeError)) + 'r {
    move |pfns, refused| mm.free_pages_bulk(pfns, refused)
}

/// Removes the PTEs of `nr_pages` pages from `start` and flushes the TLB;
/// with `release`, hands each frame they mapped to it — only after the
/// flush that covers it (cf. `vunmap_range()` then `__free_page()` in
/// `vfree()`). Carries on past problems and reports the first one.
///
/// `lazy_zero` marks a demand-zero area: pages never touched are not
/// mapped (not a problem), and those mapping this frame — the shared zero
/// page — are unmapped but not released.
fn unmap_area_pages(
    mapper: &impl PageMapper,
    start: VirtAddr,
    nr_pages: u64,
    release: Release<'_>,
    lazy_zero: Option<Pfn>,
) -> Result<(), VmallocError> {
    unmap_area_pages_flush(mapper, start, nr_pages, release, lazy_zero, true)
}

/// [`unmap_area_pages`], without the TLB flush when `flush` is false (lazy
/// purging: the frames are released at once, as Linux's `vfree()` frees
/// them after `vunmap_range_noflush()`).
fn unmap_area_pages_flush(
    mapper: &impl PageMapper,
    start: VirtAddr,
    nr_pages: u64,
    release: Release<'_>,
    lazy_zero: Option<Pfn>,
    flush: bool,
) -> Result<(), VmallocError> {
    // The frame buffer sized to the area: a small one is not worth a
    // memset of the large one.
    if nr_pages <= ALLOC_BATCH as u64 {
        unmap_area_pages_in::<ALLOC_BATCH>(mapper, start, nr_pages, release, lazy_zero, flush)
    } else {
        unmap_area_pages_in::<TEARDOWN_BATCH>(mapper, start, nr_pages, release, lazy_zero, flush)
    }
}

/// [`unmap_area_pages`] with frames released in batches of up to `B`.
fn unmap_area_pages_in<const B: usize>(
    mapper: &impl PageMapper,
    start: VirtAddr,
    nr_pages: u64,
    release: Release<'_>,
    lazy_zero: Option<Pfn>,
    flush: bool,
) -> Result<(), VmallocError> {
    let mut first_err = None;
    let mut pfns = [Pfn(0); B];
    let batch = if release.is_some() {
        B as u64
    } else {
        nr_pages.max(1)
    };
    let mut done = 0;
    while done < nr_pages {
        let n = batch.min(nr_pages - done);
        let mut got = 0;
        let from = VirtAddr(start.0 + done * PAGE_SIZE);
        mapper.unmap_pages(from, n, &mut |k, old| match old {
            Some(pfn) if Some(pfn) == lazy_zero => {}
            Some(pfn) if release.is_some() => {
                pfns[got] = pfn;
                got += 1;
            }
            Some(_) => {}
            None if lazy_zero.is_some() => {}
            None => {
                let virt = VirtAddr(from.0 + k * PAGE_SIZE);
                first_err.get_or_insert(VmallocError::NotMapped { virt });
            }
        });
        if flush {
            mapper.flush_tlb_range(
                VirtAddr(start.0 + done * PAGE_SIZE),
                VirtAddr(start.0 + (done + n) * PAGE_SIZE),
            );
        }
        if let Some(release) = release {
            release(&pfns[..got], &mut |pfn, err| {
                first_err.get_or_insert(VmallocError::FreeFrame { pfn, err });
            });
        }
        done += n;
    }
    first_err.map_or(Ok(()), Err)
}

/// The area starting at `addr`, if it is of `kind`, with its index in the
/// busy list for [`VmapAreaAllocator::free_index`] (the caller holds the
/// allocator meanwhile); an error, with nothing changed, otherwise.
fn take_area<const N: usize, const F: usize>(
    areas: &VmapAreaAllocator<N, F>,
    addr: VirtAddr,
    kind: VmapKind,
) -> Result<(usize, VmapArea), VmallocError> {
    let i = areas.index_of_start(addr)?;
    let area = areas.busy[i];
    if area.kind != kind {
        return Err(VmallocError::WrongKind {
            addr,
            kind: area.kind,
            expected: kind,
        });
    }
    Ok((i, area))
}

/// `vfree(addr)`: unmaps a [`vmalloc`] area, flushes the TLB and frees its
/// frames (recovered from the PTEs, see the module docs) and the area
/// (cf. `vfree()` → `remove_vm_area()`); with lazy purging, frees the
/// frames without a flush and puts the range on the purge list instead,
/// purging it if more than the threshold waits (cf.
/// `free_unmap_vmap_area()` → `free_vmap_area_noflush()`). Refused, with nothing changed, if
/// `addr` is not the start of a vmalloc area. A page found unmapped or a
/// frame the buddy allocator refuses is reported after the teardown
/// completes; the area is released either way.
pub fn vfree<P: Platform, const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mm: &MemoryManager<'_, P>,
    mapper: &impl PageMapper,
    addr: VirtAddr,
) -> Result<VmapArea, VmallocError> {
    remove_vm_area(
        areas,
        mapper,
        addr,
        VmapKind::Vmalloc,
        Some(&release_to(mm)),
    )
}

/// The teardown [`vfree`], [`vunmap`] and [`iounmap`] share (cf.
/// `remove_vm_area()` → `free_unmap_vmap_area()`): the area starting at
/// `addr`, if it is of `kind`, is unmapped, its frames handed to
/// `release`, and the area released — or, with lazy purging, put on the
/// purge list without a flush, purged if over the threshold.
fn remove_vm_area<const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mapper: &impl PageMapper,
    addr: VirtAddr,
    kind: VmapKind,
    release: Release<'_>,
) -> Result<VmapArea, VmallocError> {
    let (i, area) = take_area(areas, addr, kind)?;
    // A lazy area without a zero page cannot exist (vmalloc_lazy refuses),
    // so `lazy_zero` is `Some` exactly for lazy areas.
    let lazy_zero = if area.lazy { areas.zero_page } else { None };
    let flush = !areas.lazy_purge();
    let teardown =
        unmap_area_pages_flush(mapper, area.start, area.nr_pages, release, lazy_zero, flush);
    let area = areas.retire_index(i);
    areas.purge_if_over(mapper);
    teardown.map(|()| area)
}

// ---------------------------------------------------------------------------
// vmap / vunmap
// ---------------------------------------------------------------------------

/// `vmap(pages, count, VM_MAP, prot)`: maps caller-owned frames `pfns`
/// contiguously (cf. `vmap()`). The frames stay the caller's: [`vunmap`]
/// does not free them.
pub fn vmap<const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mapper: &impl PageMapper,
    pfns: &[Pfn],
    prot: MapProt,
    caller: &'static str,
) -> Result<VmapArea, VmallocError> {
    let size = (pfns.len() as u64)
        .checked_mul(PAGE_SIZE)
        .ok_or(VmallocError::BadSize { size: u64::MAX })?;
    let area = areas.alloc_or_purge(mapper, size, 1, VmapKind::Vmap, caller)?;
    if let Err((i, e)) = mapper.map_pages(area.start, area.nr_pages, &|i| pfns[i as usize], prot) {
        let _ = unmap_area_pages(mapper, area.start, i, None, None);
        let _ = areas.free(area.start);
        return Err(VmallocError::Map(e));
    }
    let a = areas
        .area_mut(area.start)
        .ok_or(VmallocError::NotAreaStart {
            addr: area.start,
            area: None,
        })?;
    a.phys = pfns[0].phys();
    Ok(*a)
}

/// `vunmap(addr)`: removes a [`vmap`] mapping and flushes the TLB; the
/// frames are not touched (cf. `vunmap()`).
pub fn vunmap<const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mapper: &impl PageMapper,
    addr: VirtAddr,
) -> Result<VmapArea, VmallocError> {
    remove_vm_area(areas, mapper, addr, VmapKind::Vmap, None)
}

// ---------------------------------------------------------------------------
// ioremap / iounmap
// ---------------------------------------------------------------------------

/// `ioremap(phys, size)`: maps `[phys, phys + size)`, widened outward to
/// whole pages, uncached (cf. `__ioremap_caller()`), and returns the virtual
/// address of `phys` itself (the area start plus `phys`'s offset in its
/// page). Refused for any frame the buddy allocator manages — free or
/// allocated, i.e. RAM that is neither reserved nor absent (cf.
/// `__ioremap_check_ram()`): reserved RAM (the `mem=` tail, firmware
/// tables) and frames outside RAM (MMIO) are fine. The area is aligned to
/// its size's power of two, up to [`IOREMAP_MAX_ORDER`].
pub fn ioremap<P: Platform, const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mm: &MemoryManager<'_, P>,
    mapper: &impl PageMapper,
    phys: PhysAddr,
    size: u64,
    caller: &'static str,
) -> Result<VirtAddr, VmallocError> {
    // Don't allow wraparound or zero size.
    let last = match phys.0.checked_add(size.wrapping_sub(1)) {
        Some(last) if size != 0 => last,
        _ => return Err(VmallocError::BadSize { size }),
    };
    let offset = phys.0 & (PAGE_SIZE - 1);
    let base = phys.0 - offset;
    let Some(end) = (last | (PAGE_SIZE - 1)).checked_add(1) else {
        return Err(VmallocError::BadSize { size });
    };
    let map_size = end - base;
    {
        let pages = mm.lock();
        let mut pfn = Pfn::from_phys(PhysAddr(base));
        // Frames past max_pfn have no descriptor: nothing to check there.
        let end_pfn = Pfn::from_phys(PhysAddr(end)).min(pages.max_pfn());
        while pfn < end_pfn {
            if pages
                .page(pfn)
                .is_some_and(|p| !p.is_reserved() && !p.is_nomap())
            {
                return Err(VmallocError::RamInUse { pfn });
            }
            pfn = pfn.add(1);
        }
    }
    // cf. __get_vm_area_node(): VM_IOREMAP areas are naturally aligned.
    let order = (64 - (map_size - 1).leading_zeros()).clamp(PAGE_SHIFT, IOREMAP_MAX_ORDER);
    let area = areas.alloc_or_purge(mapper, map_size, 1 << order, VmapKind::Ioremap, caller)?;
    let pfn_at = |i: u64| Pfn::from_phys(PhysAddr(base + i * PAGE_SIZE));
    if let Err((i, e)) =
        mapper.map_pages(area.start, area.nr_pages, &pfn_at, MapProt::KERNEL_NOCACHE)
    {
        let _ = unmap_area_pages(mapper, area.start, i, None, None);
        let _ = areas.free(area.start);
        return Err(VmallocError::Map(e));
    }
    if let Some(a) = areas.area_mut(area.start) {
        a.phys = PhysAddr(base);
    }
    Ok(VirtAddr(area.start.0 + offset))
}

/// `iounmap(addr)`: `addr` as [`ioremap`] returned it (any address in the
/// area's first page, cf. `addr & PAGE_MASK` in `iounmap()`). Unmaps,
/// flushes, releases the area.
pub fn iounmap<const N: usize, const F: usize>(
    areas: &mut VmapAreaAllocator<N, F>,
    mapper: &impl PageMapper,
    addr: VirtAddr,
) -> Result<VmapArea, VmallocError> {
    let page = VirtAddr(addr.0 & !(PAGE_SIZE - 1));
    remove_vm_area(areas, mapper, page, VmapKind::Ioremap, None)
}
