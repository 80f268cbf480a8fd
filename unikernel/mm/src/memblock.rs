//! memblock: the boot-time physical memory allocator (cf. `mm/memblock.c`).
//!
//! Before `mem_map` exists there is no buddy allocator, yet boot needs
//! memory (page tables, `mem_map` itself). memblock answers with two sorted
//! range lists: `memory` (RAM reported by firmware) and `reserved` (ranges
//! in use: firmware, kernel image, boot allocations). Free memory is
//! `memory − reserved`; allocation is "find a free hole top-down, then
//! reserve it". At the end of boot [`crate::page_alloc::PageAlloc::memblock_free_all`]
//! hands every free range to the buddy allocator.
//!
//! Arrays are fixed-size (128 regions each, cf. `INIT_MEMBLOCK_REGIONS`)
//! because nothing can be allocated to grow them this early. Every operation
//! either completes or returns an error with the lists unchanged.
//!
//! `mem=` support follows x86 (`parse_memopt()` → `e820__range_remove()`):
//! the limit is an address; RAM above it leaves `memory` and is remembered in
//! `limited` so the kernel can report it (`mem_limit`) and `ioremap` can map
//! it later.

use core::fmt;

use crate::types::{PAGE_SIZE, PhysAddr};

/// Capacity of each region array (cf. `INIT_MEMBLOCK_REGIONS`).
pub const MEMBLOCK_REGIONS: usize = 128;

/// Name given to RAM regions in `memory`.
pub const MEMORY_NAME: &str = "usable";
/// Default name of a reservation made by [`Memblock::alloc`].
pub const ALLOC_NAME: &str = "memblock";
/// Name of RAM cut off by [`Memblock::enforce_memory_limit`].
pub const MEM_LIMIT_NAME: &str = "mem_limit";

/// One physical range (cf. `struct memblock_region`). The name stands in
/// for Linux's flags: it tells `/api/memmap` and `mem_map` owner labels who
/// reserved the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemblockRegion {
    /// First byte.
    pub base: PhysAddr,
    /// Length in bytes (never 0 in a list).
    pub size_bytes: u64,
    /// Who the range belongs to (`"usable"`, `"kernel"`, `"memblock"`…).
    pub name: &'static str,
}

impl MemblockRegion {
    const EMPTY: MemblockRegion = MemblockRegion {
        base: PhysAddr(0),
        size_bytes: 0,
        name: "",
    };

    /// One past the last byte.
    pub const fn end(&self) -> PhysAddr {
        PhysAddr(self.base.0 + self.size_bytes)
    }
}

impl fmt::Display for MemblockRegion {
    /// `[0x0000000000100000-0x00000000001fffff] kernel`, like `memblock=debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:#018x}-{:#018x}] {}",
            self.base.0,
            self.end().0 - 1,
            self.name
        )
    }
}

/// memblock failures; a failed call leaves every list unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemblockError {
    /// A zero-length range, or a zero/`mem=0` limit.
    ZeroSize,
    /// `base + size` overflows the physical address space.
    Overflow {
        /// Range start.
        base: PhysAddr,
        /// Range length.
        size_bytes: u64,
    },
    /// The named region array has no room (cf. `memblock_double_array()`,
    /// which we cannot do without an allocator).
    Full {
        /// `"memory"`, `"reserved"` or `"limited"`.
        array: &'static str,
    },
}

impl fmt::Display for MemblockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemblockError::ZeroSize => write!(f, "zero-sized memblock range"),
            MemblockError::Overflow { base, size_bytes } => {
                write!(f, "range {base} + {size_bytes:#x} overflows")
            }
            MemblockError::Full { array } => write!(f, "memblock.{array} is full"),
        }
    }
}

/// One sorted, non-overlapping region list (cf. `struct memblock_type`).
#[derive(Clone, Copy)]
pub struct MemblockType {
    name: &'static str,
    regions: [MemblockRegion; MEMBLOCK_REGIONS],
    cnt: usize,
}

impl fmt::Debug for MemblockType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemblockType")
            .field("name", &self.name)
            .field("regions", &self.regions())
            .finish()
    }
}

fn checked_end(base: PhysAddr, size_bytes: u64) -> Result<u64, MemblockError> {
    if size_bytes == 0 {
        return Err(MemblockError::ZeroSize);
    }
    base.0
        .checked_add(size_bytes)
        .ok_or(MemblockError::Overflow { base, size_bytes })
}

/// Append to a sorted scratch list, merging with the last region when
/// adjacent and of the same name (cf. `memblock_merge_regions()`).
fn push_merge(
    out: &mut [MemblockRegion; MEMBLOCK_REGIONS],
    n: &mut usize,
    base: u64,
    end: u64,
    name: &'static str,
    array: &'static str,
) -> Result<(), MemblockError> {
    if base >= end {
        return Ok(());
    }
    if *n > 0 {
        let last = &mut out[*n - 1];
        if last.end().0 == base && last.name == name {
            last.size_bytes += end - base;
            return Ok(());
        }
    }
    if *n == MEMBLOCK_REGIONS {
        return Err(MemblockError::Full { array });
    }
    out[*n] = MemblockRegion {
        base: PhysAddr(base),
        size_bytes: end - base,
        name,
    };
    *n += 1;
    Ok(())
}

impl MemblockType {
    const fn new(name: &'static str) -> MemblockType {
        MemblockType {
            name,
            regions: [MemblockRegion::EMPTY; MEMBLOCK_REGIONS],
            cnt: 0,
        }
    }

    /// The regions, sorted by address.
    pub fn regions(&self) -> &[MemblockRegion] {
        &self.regions[..self.cnt]
    }

    /// Sum of the region sizes in bytes.
    pub fn total_size_bytes(&self) -> u64 {
        self.regions().iter().map(|r| r.size_bytes).sum()
    }

    /// Insert `[base, end)` under `name`, keeping only the parts not already
    /// covered by a region, then merge neighbours (cf. `memblock_add_range()`).
    fn add_range(&mut self, base: u64, end: u64, name: &'static str) -> Result<(), MemblockError> {
        let mut out = [MemblockRegion::EMPTY; MEMBLOCK_REGIONS];
        let mut n = 0;
        let mut cur = base; // start of the part of the new range not yet placed
        for r in self.regions() {
            if cur < end && cur < r.base.0 {
                push_merge(&mut out, &mut n, cur, end.min(r.base.0), name, self.name)?;
            }
            push_merge(&mut out, &mut n, r.base.0, r.end().0, r.name, self.name)?;
            cur = cur.max(r.end().0);
        }
        if cur < end {
            push_merge(&mut out, &mut n, cur, end, name, self.name)?;
        }
        self.regions = out;
        self.cnt = n;
        Ok(())
    }

    /// Cut `[base, end)` out of every region, splitting one that straddles
    /// it (cf. `memblock_remove_range()` / `memblock_isolate_range()`).
    fn remove_range(&mut self, base: u64, end: u64) -> Result<(), MemblockError> {
        let mut out = [MemblockRegion::EMPTY; MEMBLOCK_REGIONS];
        let mut n = 0;
        for r in self.regions() {
            let (rb, re) = (r.base.0, r.end().0);
            if re <= base || rb >= end {
                push_merge(&mut out, &mut n, rb, re, r.name, self.name)?;
            } else {
                push_merge(
                    &mut out,
                    &mut n,
                    rb,
                    base.max(rb).min(re),
                    r.name,
                    self.name,
                )?;
                push_merge(&mut out, &mut n, end.max(rb).min(re), re, r.name, self.name)?;
            }
        }
        self.regions = out;
        self.cnt = n;
        Ok(())
    }

    /// Whether any region intersects `[base, end)` (cf. `memblock_overlaps_region()`).
    fn overlaps(&self, base: u64, end: u64) -> bool {
        self.regions()
            .iter()
            .any(|r| r.base.0 < end && base < r.end().0)
    }

    /// Whether `[base, end)` lies inside one region.
    fn contains(&self, base: u64, end: u64) -> bool {
        self.regions()
            .iter()
            .any(|r| r.base.0 <= base && end <= r.end().0)
    }
}

/// The boot memory allocator state (cf. `struct memblock`).
#[derive(Clone, Debug)]
pub struct Memblock {
    memory: MemblockType,
    reserved: MemblockType,
    limited: MemblockType,
}

impl Default for Memblock {
    fn default() -> Self {
        Memblock::new()
    }
}

impl Memblock {
    /// Empty lists; usable as a `static` initialiser.
    pub const fn new() -> Memblock {
        Memblock {
            memory: MemblockType::new("memory"),
            reserved: MemblockType::new("reserved"),
            limited: MemblockType::new("limited"),
        }
    }

    /// Register RAM (cf. `memblock_add()`). Overlaps with known RAM are
    /// fine; adjacent ranges merge.
    pub fn add(&mut self, base: PhysAddr, size_bytes: u64) -> Result<(), MemblockError> {
        let end = checked_end(base, size_bytes)?;
        self.memory.add_range(base.0, end, MEMORY_NAME)
    }

    /// Forget RAM (cf. `memblock_remove()`).
    pub fn remove(&mut self, base: PhysAddr, size_bytes: u64) -> Result<(), MemblockError> {
        let end = checked_end(base, size_bytes)?;
        self.memory.remove_range(base.0, end)
    }

    /// Mark `[base, base+size)` in use by `name` (cf. `memblock_reserve()`).
    /// Parts already reserved keep their first owner's name; the range need
    /// not be RAM (firmware tables often are not).
    pub fn reserve(
        &mut self,
        base: PhysAddr,
        size_bytes: u64,
        name: &'static str,
    ) -> Result<(), MemblockError> {
        let end = checked_end(base, size_bytes)?;
        self.reserved.add_range(base.0, end, name)
    }

    /// Drop a reservation (cf. `memblock_phys_free()`).
    pub fn free(&mut self, base: PhysAddr, size_bytes: u64) -> Result<(), MemblockError> {
        let end = checked_end(base, size_bytes)?;
        self.reserved.remove_range(base.0, end)
    }

    /// Allocate `size_bytes` aligned to `align_bytes` below `max_addr`,
    /// reserved as `"memblock"` (cf. `memblock_phys_alloc_range()`).
    pub fn alloc(
        &mut self,
        size_bytes: u64,
        align_bytes: u64,
        max_addr: PhysAddr,
    ) -> Option<PhysAddr> {
        self.alloc_named(size_bytes, align_bytes, max_addr, ALLOC_NAME)
    }

    /// [`Memblock::alloc`] with the reservation named `name` (e.g.
    /// `"mem_map"`, `"page table"`), so reports say what the memory is for.
    ///
    /// Top-down like Linux (cf. `__memblock_find_range_top_down()`): boot
    /// allocations land high, away from the low memory that DMA-limited
    /// devices need. Page 0 is never returned. `None` for size 0, an
    /// alignment that is not a power of two, or no fitting hole.
    pub fn alloc_named(
        &mut self,
        size_bytes: u64,
        align_bytes: u64,
        max_addr: PhysAddr,
        name: &'static str,
    ) -> Option<PhysAddr> {
        if size_bytes == 0 || !align_bytes.is_power_of_two() {
            return None;
        }
        let mut found = None;
        self.walk_free(true, &mut |start, end| {
            // cf. memblock_find_in_range_node(): never hand out page 0.
            let start = start.max(PAGE_SIZE);
            let end = end.min(max_addr.0);
            if end < start || end - start < size_bytes {
                return true;
            }
            let cand = (end - size_bytes) & !(align_bytes - 1);
            if cand >= start {
                found = Some(cand);
                return false;
            }
            true
        });
        let base = PhysAddr(found?);
        self.reserve(base, size_bytes, name).ok()?;
        Some(base)
    }

    /// Apply `mem=limit` (address semantics, as on x86): RAM at or above
    /// `limit` leaves `memory` and is recorded in `limited` as
    /// `"mem_limit"`. Reservations are kept so reports stay truthful.
    /// Returns the number of bytes removed (0 if RAM ends below the limit).
    pub fn enforce_memory_limit(&mut self, limit: PhysAddr) -> Result<u64, MemblockError> {
        if limit.0 == 0 {
            return Err(MemblockError::ZeroSize);
        }
        let mut limited = self.limited;
        let mut removed = 0;
        for r in self.memory.regions() {
            if r.end().0 > limit.0 {
                let base = r.base.0.max(limit.0);
                limited.add_range(base, r.end().0, MEM_LIMIT_NAME)?;
                removed += r.end().0 - base;
            }
        }
        let mut memory = self.memory;
        memory.remove_range(limit.0, u64::MAX)?;
        self.memory = memory;
        self.limited = limited;
        Ok(removed)
    }

    /// Walk `memory − reserved` in address order (or reverse), byte-exact;
    /// `f` returns `false` to stop (cf. `__next_mem_range()` /
    /// `__next_mem_range_rev()`).
    fn walk_free(&self, reverse: bool, f: &mut dyn FnMut(u64, u64) -> bool) {
        let mem = self.memory.regions();
        let res = self.reserved.regions();
        let nr_gaps = res.len() + 1;
        for mi in 0..mem.len() {
            let m = &mem[if reverse { mem.len() - 1 - mi } else { mi }];
            let (m_start, m_end) = (m.base.0, m.end().0);
            for gi in 0..nr_gaps {
                let g = if reverse { nr_gaps - 1 - gi } else { gi };
                // Gap g lies between reserved[g-1] and reserved[g].
                let r_start = if g == 0 { 0 } else { res[g - 1].end().0 };
                let r_end = if g < res.len() {
                    res[g].base.0
                } else {
                    u64::MAX
                };
                let (s, e) = (m_start.max(r_start), m_end.min(r_end));
                if s < e && !f(s, e) {
                    return;
                }
            }
        }
    }

    /// Call `f(start, end)` for every free range, shrunk inward to whole
    /// pages, in address order (cf. `for_each_free_mem_range()` as used by
    /// `free_low_memory_core_early()`: `PFN_UP(start)`, `PFN_DOWN(end)`).
    pub fn for_each_free_range(&self, mut f: impl FnMut(PhysAddr, PhysAddr)) {
        self.walk_free(false, &mut |s, e| {
            let s = s
                .checked_add(PAGE_SIZE - 1)
                .map_or(u64::MAX, |a| a & !(PAGE_SIZE - 1));
            let e = e & !(PAGE_SIZE - 1);
            if s < e {
                f(PhysAddr(s), PhysAddr(e));
            }
            true
        });
    }

    /// RAM regions, sorted (cf. `for_each_mem_region()`).
    pub fn memory_regions(&self) -> &[MemblockRegion] {
        self.memory.regions()
    }

    /// Reserved regions, sorted (cf. `for_each_reserved_mem_region()`).
    pub fn reserved_regions(&self) -> &[MemblockRegion] {
        self.reserved.regions()
    }

    /// RAM removed by `mem=`, sorted.
    pub fn limited_regions(&self) -> &[MemblockRegion] {
        self.limited.regions()
    }

    /// Bytes of RAM (cf. `memblock_phys_mem_size()`).
    pub fn total_memory(&self) -> u64 {
        self.memory.total_size_bytes()
    }

    /// Bytes reserved (cf. `memblock_reserved_size()`).
    pub fn total_reserved(&self) -> u64 {
        self.reserved.total_size_bytes()
    }

    /// One past the last RAM byte, 0 with no RAM (cf. `memblock_end_of_DRAM()`).
    pub fn end_of_ram(&self) -> PhysAddr {
        self.memory
            .regions()
            .last()
            .map_or(PhysAddr(0), |r| r.end())
    }

    /// First RAM byte (cf. `memblock_start_of_DRAM()`).
    pub fn start_of_ram(&self) -> PhysAddr {
        self.memory
            .regions()
            .first()
            .map_or(PhysAddr(0), |r| r.base)
    }

    /// Whether any byte of the range is reserved (cf. `memblock_is_region_reserved()`).
    pub fn is_reserved(&self, base: PhysAddr, size_bytes: u64) -> bool {
        checked_end(base, size_bytes).is_ok_and(|end| self.reserved.overlaps(base.0, end))
    }

    /// Whether the whole range is RAM (cf. `memblock_is_region_memory()`).
    pub fn is_memory(&self, base: PhysAddr, size_bytes: u64) -> bool {
        checked_end(base, size_bytes).is_ok_and(|end| self.memory.contains(base.0, end))
    }

    /// Whether the whole range is RAM removed by `mem=` (what `ioremap` of
    /// RAM may map).
    pub fn is_limited(&self, base: PhysAddr, size_bytes: u64) -> bool {
        checked_end(base, size_bytes).is_ok_and(|end| self.limited.contains(base.0, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: PhysAddr = PhysAddr(u64::MAX);

    fn spans(rs: &[MemblockRegion]) -> Vec<(u64, u64, &'static str)> {
        rs.iter().map(|r| (r.base.0, r.end().0, r.name)).collect()
    }

    fn free_ranges(mb: &Memblock) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        mb.for_each_free_range(|s, e| v.push((s.0, e.0)));
        v
    }

    #[test]
    fn add_merges_adjacent_and_overlapping() {
        let mut mb = Memblock::new();
        mb.add(PhysAddr(0x10_0000), 0x10_0000).unwrap();
        mb.add(PhysAddr(0x30_0000), 0x10_0000).unwrap();
        assert_eq!(mb.memory_regions().len(), 2);
        mb.add(PhysAddr(0x20_0000), 0x10_0000).unwrap(); // fills the gap
        assert_eq!(
            spans(mb.memory_regions()),
            vec![(0x10_0000, 0x40_0000, "usable")]
        );
        mb.add(PhysAddr(0x38_0000), 0x10_0000).unwrap(); // overlaps the end
        assert_eq!(
            spans(mb.memory_regions()),
            vec![(0x10_0000, 0x48_0000, "usable")]
        );
        mb.add(PhysAddr(0), 0x9fc00).unwrap();
        assert_eq!(mb.total_memory(), 0x9fc00 + 0x38_0000);
        assert_eq!(mb.end_of_ram(), PhysAddr(0x48_0000));
        assert_eq!(mb.start_of_ram(), PhysAddr(0));
    }

    #[test]
    fn reserve_keeps_names_apart() {
        let mut mb = Memblock::new();
        mb.reserve(PhysAddr(0x1000), 0x1000, "kernel").unwrap();
        mb.reserve(PhysAddr(0x2000), 0x1000, "kernel").unwrap();
        mb.reserve(PhysAddr(0x3000), 0x1000, "mem_map").unwrap();
        assert_eq!(
            spans(mb.reserved_regions()),
            vec![(0x1000, 0x3000, "kernel"), (0x3000, 0x4000, "mem_map")]
        );
        // Overlap: only the uncovered parts take the new name.
        mb.reserve(PhysAddr(0), 0x5000, "firmware").unwrap();
        assert_eq!(
            spans(mb.reserved_regions()),
            vec![
                (0, 0x1000, "firmware"),
                (0x1000, 0x3000, "kernel"),
                (0x3000, 0x4000, "mem_map"),
                (0x4000, 0x5000, "firmware")
            ]
        );
        assert!(mb.is_reserved(PhysAddr(0x2fff), 1));
        assert!(!mb.is_reserved(PhysAddr(0x5000), 0x1000));
        // Freeing the middle of a region splits it.
        mb.free(PhysAddr(0x1800), 0x1000).unwrap();
        assert_eq!(
            spans(mb.reserved_regions())[1..3],
            [(0x1000, 0x1800, "kernel"), (0x2800, 0x3000, "kernel")]
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut mb = Memblock::new();
        assert_eq!(mb.add(PhysAddr(0x1000), 0), Err(MemblockError::ZeroSize));
        assert!(matches!(
            mb.add(PhysAddr(u64::MAX - 10), 100),
            Err(MemblockError::Overflow { .. })
        ));
        assert!(matches!(
            mb.reserve(PhysAddr(1), u64::MAX, "x"),
            Err(MemblockError::Overflow { .. })
        ));
        assert_eq!(
            mb.enforce_memory_limit(PhysAddr(0)),
            Err(MemblockError::ZeroSize)
        );
        assert_eq!(mb.alloc(0, 4096, ANY), None);
        assert_eq!(mb.alloc(4096, 3, ANY), None);
        assert_eq!(mb.alloc(4096, 4096, ANY), None); // no memory at all
        assert!(!mb.is_memory(PhysAddr(u64::MAX), 2));
        assert_eq!(mb.memory_regions().len(), 0);
    }

    #[test]
    fn full_array_fails_without_change() {
        let mut mb = Memblock::new();
        for i in 0..MEMBLOCK_REGIONS as u64 {
            mb.reserve(PhysAddr(i * 0x2000), 0x1000, "r").unwrap();
        }
        let before = mb.reserved_regions().to_vec();
        assert_eq!(
            mb.reserve(PhysAddr(0x1000_0000), 0x1000, "r"),
            Err(MemblockError::Full { array: "reserved" })
        );
        // Splitting a region also needs a slot.
        assert_eq!(
            mb.free(PhysAddr(0x400), 0x100),
            Err(MemblockError::Full { array: "reserved" })
        );
        assert_eq!(mb.reserved_regions(), &before[..]);
        // Filling a gap merges two regions into one: allowed when full.
        mb.reserve(PhysAddr(0x1000), 0x1000, "r").unwrap();
        assert_eq!(mb.reserved_regions().len(), MEMBLOCK_REGIONS - 1);
    }

    #[test]
    fn alloc_is_top_down_aligned_and_bounded() {
        let mut mb = Memblock::new();
        mb.add(PhysAddr(0), 0x9fc00).unwrap();
        mb.add(PhysAddr(0x10_0000), 0x7ff0_0000 - 0x20).unwrap();
        let top = mb.end_of_ram().0;
        let a = mb.alloc(0x3000, 0x1000, ANY).unwrap();
        assert_eq!(a.0, (top - 0x3000) & !0xfff);
        assert_eq!(
            spans(mb.reserved_regions()),
            vec![(a.0, a.0 + 0x3000, "memblock")]
        );
        // A second allocation goes right below and merges with the first.
        let b = mb.alloc(0x1000, 0x1000, ANY).unwrap();
        assert_eq!(b.0, a.0 - 0x1000);
        assert_eq!(mb.reserved_regions().len(), 1);
        // Bounded: below 16 MiB.
        let c = mb
            .alloc_named(0x20_0000, 0x20_0000, PhysAddr(16 << 20), "mem_map")
            .unwrap();
        assert_eq!(c, PhysAddr(14 << 20));
        assert_eq!(mb.reserved_regions()[0].name, "mem_map");
        // Only the low 640K fits under 1 MiB; page 0 is never returned.
        let d = mb.alloc(0x9e000, 0x1000, PhysAddr(0x10_0000)).unwrap();
        assert_eq!(d, PhysAddr(0x1000));
        assert_eq!(mb.alloc(0x1000, 0x1000, PhysAddr(0x10_0000)), None);
        assert!(mb.is_reserved(d, 0x9e000));
    }

    #[test]
    fn free_ranges_are_memory_minus_reserved_page_aligned() {
        let mut mb = Memblock::new();
        mb.add(PhysAddr(0), 0x9fc00).unwrap();
        mb.add(PhysAddr(0x10_0000), 0x10_0000).unwrap();
        mb.reserve(PhysAddr(0), 0x1000, "firmware").unwrap();
        mb.reserve(PhysAddr(0x10_0000), 0x8_0800, "kernel").unwrap();
        assert_eq!(
            free_ranges(&mb),
            vec![(0x1000, 0x9f000), (0x18_1000, 0x20_0000)]
        );
    }

    #[test]
    fn mem_limit_moves_ram_to_limited() {
        let mut mb = Memblock::new();
        mb.add(PhysAddr(0), 0x9fc00).unwrap();
        mb.add(PhysAddr(0x10_0000), 0xbff0_0000).unwrap(); // to 3 GiB
        mb.add(PhysAddr(0x1_0000_0000), 0x4000_0000).unwrap(); // 4–5 GiB
        mb.reserve(PhysAddr(0x1_0000_0000), 0x1000, "firmware")
            .unwrap();
        let removed = mb.enforce_memory_limit(PhysAddr(0x8000_0000)).unwrap();
        assert_eq!(removed, 0x4000_0000 + 0x4000_0000);
        assert_eq!(mb.end_of_ram(), PhysAddr(0x8000_0000));
        assert_eq!(
            spans(mb.limited_regions()),
            vec![
                (0x8000_0000, 0xc000_0000, "mem_limit"),
                (0x1_0000_0000, 0x1_4000_0000, "mem_limit")
            ]
        );
        assert!(mb.is_limited(PhysAddr(0x9000_0000), 0x1000));
        assert!(!mb.is_limited(PhysAddr(0xbfff_f000), 0x2000));
        assert!(!mb.is_memory(PhysAddr(0x8000_0000), 0x1000));
        assert_eq!(mb.reserved_regions().len(), 1); // reservations untouched
        // Above the end of RAM: nothing to do.
        assert_eq!(mb.enforce_memory_limit(PhysAddr(0x1_0000_0000)), Ok(0));
        // Allocations respect the new end.
        assert!(mb.alloc(0x1000, 0x1000, ANY).unwrap().0 < 0x8000_0000);
    }
}
