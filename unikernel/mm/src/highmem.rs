//! Reaching HighMem: frames above `lowmem` have no direct-map address, so
//! the kernel maps them on demand (cf. `mm/highmem.c`).
//!
//! - [`Pkmap`], the persistent kmap pool: [`LAST_PKMAP`] slots of a fixed
//!   window at [`PKMAP_BASE`], reference-counted like Linux's
//!   `pkmap_count[]` (0 = free, 1 = mapped but unused, n = n − 1 users).
//!   An unused slot keeps its mapping, so kmapping the same page again is
//!   free; such slots are unmapped in bulk, with one TLB flush, only when no
//!   free slot is left (cf. `flush_all_zero_pkmaps()`). Linux would sleep
//!   when every slot is busy; a unikernel cannot, so `kmap` fails with
//!   [`KmapError::NoSlot`].
//! - [`KmapAtomicStack`], the per-CPU `kmap_atomic` / `kmap_local` slots in
//!   the fixmap: a stack of [`NR_FIX_KMAP`] entries that must be unmapped in
//!   reverse order (cf. `kmap_local_idx_push()`, `kunmap_local_indexed()`).
//!
//! Both decide; the [`PageMapper`] installs the PTEs, so host tests see
//! every mapping and flush. Neither allocates or takes the zone lock.

use core::fmt;

use crate::layout::{FIXMAP_BASE, LAST_PKMAP, NR_FIX_KMAP, PKMAP_BASE};
use crate::platform::{MapError, MapProt, PageMapper};
use crate::types::{PAGE_OFFSET, PAGE_SIZE, Pfn, VirtAddr};

#[cfg(test)]
mod tests;

/// kmap and kmap_atomic failures. A failed call changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmapError {
    /// Every pkmap slot has a user (Linux would sleep on `pkmap_map_wait`).
    NoSlot,
    /// `kunmap` of a HighMem page that has no kmap user.
    NotMapped {
        /// The frame given.
        pfn: Pfn,
    },
    /// `kunmap` of a slot index that is out of range or has no user.
    NoSuchSlot {
        /// The slot given.
        slot: usize,
    },
    /// The page mapper refused the PTE.
    Map(MapError),
    /// All [`NR_FIX_KMAP`] kmap_atomic slots are in use (cf. the `BUG_ON`
    /// in `kmap_local_idx_push()`).
    AtomicOverflow,
    /// `kunmap_atomic` with nothing mapped.
    AtomicUnderflow {
        /// The address given.
        virt: VirtAddr,
    },
    /// `kunmap_atomic` of a slot that is not the top of the stack (cf. the
    /// `WARN_ON_ONCE(addr != __fix_to_virt(FIX_KMAP_BEGIN + idx))` in
    /// `kunmap_local_indexed()`): nothing was unmapped; the kernel reports
    /// it as a bug.
    AtomicOutOfOrder {
        /// The top of the stack, the only address that may be unmapped now.
        expected: VirtAddr,
        /// The address given.
        got: VirtAddr,
    },
}

impl fmt::Display for KmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmapError::NoSlot => write!(f, "all {LAST_PKMAP} pkmap slots are in use"),
            KmapError::NotMapped { pfn } => write!(f, "pfn {pfn} is not kmapped"),
            KmapError::NoSuchSlot { slot } => write!(f, "pkmap slot {slot} is not in use"),
            KmapError::Map(e) => write!(f, "kmap: {e}"),
            KmapError::AtomicOverflow => write!(f, "more than {NR_FIX_KMAP} nested kmap_atomic"),
            KmapError::AtomicUnderflow { virt } => {
                write!(f, "kunmap_atomic({virt}) with no kmap_atomic active")
            }
            KmapError::AtomicOutOfOrder { expected, got } => {
                write!(
                    f,
                    "kunmap_atomic({got}) out of order: {expected} is the most recent mapping"
                )
            }
        }
    }
}

/// Address of pkmap slot `nr` (cf. `PKMAP_ADDR()`).
pub const fn pkmap_addr(nr: usize) -> VirtAddr {
    VirtAddr(PKMAP_BASE + nr as u64 * PAGE_SIZE)
}

/// Slot of a pkmap address (cf. `PKMAP_NR()`), `None` outside the window.
pub const fn pkmap_nr(virt: VirtAddr) -> Option<usize> {
    if virt.0 >= PKMAP_BASE && virt.0 < pkmap_addr(LAST_PKMAP).0 {
        Some(((virt.0 - PKMAP_BASE) / PAGE_SIZE) as usize)
    } else {
        None
    }
}

/// Address of CPU 0's kmap_atomic slot `idx` (cf.
/// `__fix_to_virt(FIX_KMAP_BEGIN + idx)`; our fixmap grows upward from
/// [`FIXMAP_BASE`]).
pub const fn fixmap_addr(idx: usize) -> VirtAddr {
    fixmap_addr_cpu(0, idx)
}

/// Address of CPU `cpu`'s kmap_atomic slot `idx`: each CPU has its own
/// [`NR_FIX_KMAP`] slots (cf. `FIX_KMAP_BEGIN + idx + KM_MAX_IDX * cpu`),
/// so CPUs never share a slot and a slot's TLB entry is flushed on its
/// CPU alone.
pub const fn fixmap_addr_cpu(cpu: usize, idx: usize) -> VirtAddr {
    VirtAddr(FIXMAP_BASE + (cpu * NR_FIX_KMAP + idx) as u64 * PAGE_SIZE)
}

/// One pkmap slot as `/api/kmap` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PkmapEntry {
    /// Slot index.
    pub slot: usize,
    /// Its address.
    pub virt: VirtAddr,
    /// The frame it maps.
    pub pfn: Pfn,
    /// Linux's raw `pkmap_count`: 1 = mapped but unused (awaiting the lazy
    /// flush), n ≥ 2 = n − 1 users.
    pub count: u32,
}

impl PkmapEntry {
    /// kmap users (`count - 1`).
    pub const fn users(&self) -> u32 {
        self.count.saturating_sub(1)
    }
}

/// The persistent kmap pool (cf. `pkmap_count[]`, `page_address_map`,
/// `last_pkmap_nr` under `kmap_lock`). Finding a page's slot is a scan of
/// the 1024 slots (Linux hashes `page_address()`); kmap is not a hot path
/// here.
pub struct Pkmap {
    /// First HighMem frame: below it `kmap` is the direct map.
    lowmem_end: Pfn,
    /// `pkmap_count[]`.
    count: [u32; LAST_PKMAP],
    /// Frame in each slot whose count is non-zero.
    pfn: [Pfn; LAST_PKMAP],
    /// Where the next-fit search for a free slot resumes (cf. `last_pkmap_nr`).
    last_pkmap_nr: usize,
    /// `flush_all_zero_pkmaps()` runs that unmapped something.
    nr_flushes: u64,
    /// Slots unmapped by those runs.
    nr_lazy_unmapped: u64,
}

impl Pkmap {
    /// An empty pool; frames from `lowmem_end` up are HighMem.
    pub const fn new(lowmem_end: Pfn) -> Pkmap {
        Pkmap {
            lowmem_end,
            count: [0; LAST_PKMAP],
            pfn: [Pfn(0); LAST_PKMAP],
            last_pkmap_nr: LAST_PKMAP - 1,
            nr_flushes: 0,
            nr_lazy_unmapped: 0,
        }
    }

    fn is_highmem(&self, pfn: Pfn) -> bool {
        pfn >= self.lowmem_end
    }

    fn slot_of(&self, pfn: Pfn) -> Option<usize> {
        (0..LAST_PKMAP).find(|&nr| self.count[nr] != 0 && self.pfn[nr] == pfn)
    }

    /// The address `pfn` is reachable at without mapping anything (cf.
    /// `page_address()`): the direct map for lowmem, its pkmap slot for a
    /// kmapped HighMem page (still true while the slot awaits the lazy
    /// flush), `None` otherwise.
    pub fn page_address(&self, pfn: Pfn) -> Option<VirtAddr> {
        if !self.is_highmem(pfn) {
            return Some(VirtAddr(PAGE_OFFSET + pfn.phys().0));
        }
        self.slot_of(pfn).map(pkmap_addr)
    }

    /// `kmap(page)`: a lowmem frame's direct-map address (no slot used);
    /// for HighMem the slot already mapping `pfn` with one more user, else a
    /// newly mapped slot (cf. `kmap_high()` → `map_new_virtual()`).
    pub fn kmap(&mut self, mapper: &impl PageMapper, pfn: Pfn) -> Result<VirtAddr, KmapError> {
        if !self.is_highmem(pfn) {
            return Ok(VirtAddr(PAGE_OFFSET + pfn.phys().0));
        }
        let nr = match self.slot_of(pfn) {
            Some(nr) => nr,
            None => self.map_new_virtual(mapper, pfn)?,
        };
        // cf. kmap_high(): pkmap_count[PKMAP_NR(vaddr)]++, BUG_ON(< 2).
        // A count at its limit takes no more users (the slot is "busy").
        self.count[nr] = self.count[nr].checked_add(1).ok_or(KmapError::NoSlot)?;
        Ok(pkmap_addr(nr))
    }

    /// Maps `pfn` into a free slot with count 1 (cf. `map_new_virtual()`).
    /// The search is next-fit from the last slot used, so unused mappings
    /// stay cached as long as possible; only when no slot is free are the
    /// unused ones flushed, once.
    fn map_new_virtual(&mut self, mapper: &impl PageMapper, pfn: Pfn) -> Result<usize, KmapError> {
        let nr = match self.find_free_slot() {
            Some(nr) => nr,
            None => {
                self.flush_all_zero_pkmaps(mapper);
                self.find_free_slot().ok_or(KmapError::NoSlot)?
            }
        };
        mapper
            .map_page(pkmap_addr(nr), pfn, MapProt::KERNEL)
            .map_err(KmapError::Map)?;
        self.count[nr] = 1;
        self.pfn[nr] = pfn;
        self.last_pkmap_nr = nr;
        Ok(nr)
    }

    fn find_free_slot(&self) -> Option<usize> {
        (1..=LAST_PKMAP)
            .map(|k| (self.last_pkmap_nr + k) % LAST_PKMAP)
            .find(|&nr| self.count[nr] == 0)
    }

    /// Unmaps every slot whose count is 1 (mapped, no user) and flushes the
    /// whole window once (cf. `flush_all_zero_pkmaps()`). Returns the
    /// number of slots freed.
    pub fn flush_all_zero_pkmaps(&mut self, mapper: &impl PageMapper) -> usize {
        let mut freed = 0;
        for nr in 0..LAST_PKMAP {
            if self.count[nr] != 1 {
                continue;
            }
            self.count[nr] = 0;
            // A slot with count 1 is mapped by construction; a missing PTE
            // would be the mapper's inconsistency, and the slot is free either way.
            let _ = mapper.unmap_page(pkmap_addr(nr));
            freed += 1;
        }
        if freed != 0 {
            mapper.flush_tlb_range(pkmap_addr(0), pkmap_addr(LAST_PKMAP));
            self.nr_flushes += 1;
            self.nr_lazy_unmapped += freed as u64;
        }
        freed
    }

    /// `kunmap(page)`: drops one user (cf. `kunmap_high()`). Lowmem frames
    /// were never slotted: a no-op. The slot stays mapped until a lazy
    /// flush needs it. Error if `pfn` has no kmap user.
    pub fn kunmap(&mut self, pfn: Pfn) -> Result<(), KmapError> {
        if !self.is_highmem(pfn) {
            return Ok(());
        }
        match self.slot_of(pfn) {
            Some(nr) if self.count[nr] >= 2 => {
                self.count[nr] -= 1;
                Ok(())
            }
            _ => Err(KmapError::NotMapped { pfn }),
        }
    }

    /// `kunmap` by slot index (`DELETE /api/kmap/{slot}`); returns the frame.
    pub fn kunmap_slot(&mut self, slot: usize) -> Result<Pfn, KmapError> {
        match self.count.get(slot) {
            Some(&c) if c >= 2 => {
                self.count[slot] -= 1;
                Ok(self.pfn[slot])
            }
            _ => Err(KmapError::NoSuchSlot { slot }),
        }
    }

    /// Every mapped slot (count ≥ 1), in slot order, for `/api/kmap`.
    pub fn slots(&self) -> impl Iterator<Item = PkmapEntry> + '_ {
        (0..LAST_PKMAP)
            .filter(|&nr| self.count[nr] != 0)
            .map(|nr| PkmapEntry {
                slot: nr,
                virt: pkmap_addr(nr),
                pfn: self.pfn[nr],
                count: self.count[nr],
            })
    }

    /// Slots with at least one user (`/api/kmap` `used`).
    pub fn nr_used(&self) -> usize {
        self.count.iter().filter(|&&c| c >= 2).count()
    }

    /// Slots holding a mapping, used or awaiting the lazy flush.
    pub fn nr_mapped(&self) -> usize {
        self.count.iter().filter(|&&c| c != 0).count()
    }

    /// `(flushes, slots unmapped by them)` of [`Pkmap::flush_all_zero_pkmaps`].
    pub fn flush_stats(&self) -> (u64, u64) {
        (self.nr_flushes, self.nr_lazy_unmapped)
    }

    /// Slot `nr`'s raw `pkmap_count` and frame (meaningful while the count
    /// is non-zero), for [`crate::selfcheck::check_pkmap`].
    pub(crate) fn slot_state(&self, nr: usize) -> (u32, Pfn) {
        (self.count[nr], self.pfn[nr])
    }
}

/// The kmap_atomic / kmap_local slots of one CPU (cf. `current->kmap_ctrl`
/// and the fixmap's `FIX_KMAP_BEGIN..FIX_KMAP_END`): slot `i` is mapped
/// only while the stack is deeper than `i`, and mappings are undone
/// strictly last-in first-out.
pub struct KmapAtomicStack {
    /// The CPU whose fixmap slots these are.
    cpu: usize,
    depth: usize,
    pfns: [Pfn; NR_FIX_KMAP],
}

impl Default for KmapAtomicStack {
    fn default() -> Self {
        KmapAtomicStack::new()
    }
}

impl KmapAtomicStack {
    /// CPU 0's slots, none in use.
    pub const fn new() -> KmapAtomicStack {
        KmapAtomicStack::for_cpu(0)
    }

    /// CPU `cpu`'s slots, none in use.
    pub const fn for_cpu(cpu: usize) -> KmapAtomicStack {
        KmapAtomicStack {
            cpu,
            depth: 0,
            pfns: [Pfn(0); NR_FIX_KMAP],
        }
    }

    /// The CPU whose slots these are.
    pub const fn cpu(&self) -> usize {
        self.cpu
    }

    /// Maps `pfn` in the next slot and returns `(slot, address)` (cf.
    /// `__kmap_local_pfn_prot()`: `kmap_local_idx_push()` then `set_pte_at()`).
    /// Any frame, lowmem included (the caller takes the direct-map shortcut
    /// of `kmap_local_page()` itself if it wants it).
    pub fn push(
        &mut self,
        mapper: &impl PageMapper,
        pfn: Pfn,
    ) -> Result<(usize, VirtAddr), KmapError> {
        if self.depth == NR_FIX_KMAP {
            return Err(KmapError::AtomicOverflow);
        }
        let idx = self.depth;
        let virt = fixmap_addr_cpu(self.cpu, idx);
        mapper
            .map_page(virt, pfn, MapProt::KERNEL)
            .map_err(KmapError::Map)?;
        self.pfns[idx] = pfn;
        self.depth += 1;
        Ok((idx, virt))
    }

    /// Unmaps the top slot, which must be `virt` (any address inside its
    /// page), flushing its TLB entry (cf. `kunmap_local_indexed()`:
    /// `pte_clear()`, `arch_kmap_local_post_unmap()`, `kmap_local_idx_pop()`).
    /// Out of order is refused with nothing changed.
    pub fn pop(&mut self, mapper: &impl PageMapper, virt: VirtAddr) -> Result<Pfn, KmapError> {
        let page = VirtAddr(virt.0 & !(PAGE_SIZE - 1));
        let Some(idx) = self.depth.checked_sub(1) else {
            return Err(KmapError::AtomicUnderflow { virt });
        };
        let expected = fixmap_addr_cpu(self.cpu, idx);
        if page != expected {
            return Err(KmapError::AtomicOutOfOrder {
                expected,
                got: virt,
            });
        }
        let _ = mapper.unmap_page(expected);
        mapper.flush_tlb_range(expected, VirtAddr(expected.0 + PAGE_SIZE));
        self.depth = idx;
        Ok(self.pfns[idx])
    }

    /// Slots in use (`/api/kmap` `atomic.used`).
    pub const fn depth(&self) -> usize {
        self.depth
    }

    /// The frame stacked in slot `idx`, `None` at or above the depth.
    pub const fn slot(&self, idx: usize) -> Option<Pfn> {
        if idx < self.depth {
            Some(self.pfns[idx])
        } else {
            None
        }
    }
}
