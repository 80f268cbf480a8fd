//! The line between policy and mechanism: what `mm` needs from whoever owns
//! the page tables.
//!
//! `mm` never dereferences an address. When it must touch a frame's bytes
//! (`__GFP_ZERO`, fill, checksum) it asks the [`Platform`] to lend it a
//! mapping of that frame for the duration of a closure: the direct map for
//! lowmem, a `kmap_atomic` window for HighMem. The kernel implements it on
//! real page tables; [`sim::SimPlatform`] implements it on a host arena so
//! the same code is tested by `cargo test`.
//!
//! The second half of the line is [`PageMapper`]: installing and removing
//! 4 KiB kernel PTEs at chosen virtual addresses, for vmalloc, vmap, ioremap
//! and the kmap windows (cf. `vmap_pages_range()`, `vunmap_range()`,
//! `set_pte_at()` on `pkmap_page_table`). [`sim::SimPlatform`] implements it
//! with a simulated page table and TLB so host tests see every PTE and every
//! flush.

use core::fmt;

use crate::types::{PAGE_SIZE, Pfn, VirtAddr};

/// Bytes in one frame, as a `usize` for slices.
pub const FRAME_BYTES: usize = PAGE_SIZE as usize;

/// Access to physical frames through a temporary mapping.
pub trait Platform: Sync {
    /// Runs `f` over the [`FRAME_BYTES`] bytes of frame `pfn`, mapped only
    /// for the duration of the call (cf. `kmap_local_page()` /
    /// `kunmap_local()`). The caller must own the frame.
    fn with_frame(&self, pfn: Pfn, f: &mut dyn FnMut(&mut [u8]));

    /// Nanoseconds of a monotonic clock (since boot on the kernel: the
    /// TSC), for tracepoint timestamps. Called from tracepoints, possibly
    /// under the zone or slab lock: it must neither lock nor allocate. The
    /// default is a clock that stands still.
    fn now_ns(&self) -> u64 {
        0
    }

    /// The CPU running the caller (cf. `smp_processor_id()`): which
    /// per-CPU slot the fast paths and the trace rings use. The default
    /// is for one-CPU platforms.
    fn cpu_id(&self) -> usize {
        0
    }
}

/// Memory type of a mapping (the PAT/PCD/PWT bits of a PTE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheMode {
    /// Normal RAM: write-back cacheable (PAT index 0).
    WriteBack,
    /// Device memory: uncached, `PCD | PWT` (PAT index 3, UC) — what
    /// `ioremap()` asks for (cf. `_PAGE_CACHE_MODE_UC_MINUS` /
    /// `PAGE_KERNEL_NOCACHE`).
    Uncached,
}

/// Protection of one kernel mapping (cf. `pgprot_t`). Kernel mappings are
/// always supervisor-only and present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapProt {
    /// `_PAGE_RW`.
    pub writable: bool,
    /// Executable: `_PAGE_NX` clear. Nothing `mm` maps is code.
    pub executable: bool,
    /// Memory type.
    pub cache: CacheMode,
}

impl MapProt {
    /// `PAGE_KERNEL`: read/write, no-execute, write-back (vmalloc, vmap,
    /// kmap).
    pub const KERNEL: MapProt = MapProt {
        writable: true,
        executable: false,
        cache: CacheMode::WriteBack,
    };
    /// `PAGE_KERNEL_RO`.
    pub const KERNEL_RO: MapProt = MapProt {
        writable: false,
        executable: false,
        cache: CacheMode::WriteBack,
    };
    /// `PAGE_KERNEL_NOCACHE` / `PAGE_KERNEL_IO`: what `ioremap()` uses.
    pub const KERNEL_NOCACHE: MapProt = MapProt {
        writable: true,
        executable: false,
        cache: CacheMode::Uncached,
    };
}

/// Why a [`PageMapper::map_page`] failed. A failed call leaves no PTE
/// behind (intermediate tables it created may stay: Linux keeps them too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// `virt` is not page-aligned, not canonical, or outside the windows
    /// this mapper serves (vmalloc area, pkmap, fixmap).
    BadAddress {
        /// The address given.
        virt: VirtAddr,
    },
    /// A PTE is already present at `virt` (cf. the `WARN_ON(!pte_none(*pte))`
    /// in `vmap_pte_range()`); nothing was changed.
    AlreadyMapped {
        /// The address given.
        virt: VirtAddr,
        /// The frame it maps now.
        pfn: Pfn,
    },
    /// No frame for an intermediate page table (cf. `-ENOMEM` from
    /// `pte_alloc_kernel_track()`), or a huge page covers `virt`.
    NoMemory {
        /// The address given.
        virt: VirtAddr,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::BadAddress { virt } => write!(f, "cannot map at {virt}"),
            MapError::AlreadyMapped { virt, pfn } => write!(f, "{virt} already maps pfn {pfn}"),
            MapError::NoMemory { virt } => write!(f, "no memory for a page table under {virt}"),
        }
    }
}

/// Installs and removes 4 KiB kernel PTEs: the mechanism under vmalloc,
/// vmap, ioremap, kmap and kmap_atomic.
///
/// Contract for implementations (the kernel's walks the real 4-level
/// tables; [`sim::SimPlatform`] keeps a map):
/// - Every call takes `&self` and must be internally locked: callers hold
///   the vmap-area or kmap lock but never the zone lock, so an
///   implementation may allocate page-table frames from the buddy
///   allocator (it allocates them itself and never frees them, like Linux's
///   kernel page tables).
/// - `map_page` never overwrites a present PTE ([`MapError::AlreadyMapped`]).
/// - `unmap_page` clears the PTE and returns the frame it mapped, but does
///   **not** flush the TLB: callers batch the flush with
///   `flush_tlb_range` and must flush before the virtual range or the frame
///   is reused.
pub trait PageMapper: Sync {
    /// Maps the 4 KiB page at `virt` (page-aligned) to frame `pfn` with
    /// `prot` (cf. `set_pte_at()` after `pte_alloc_kernel()`).
    fn map_page(&self, virt: VirtAddr, pfn: Pfn, prot: MapProt) -> Result<(), MapError>;

    /// Maps the `nr` pages from `virt` (page-aligned) to `pfn_at(0)`,
    /// `pfn_at(1)`, … with `prot`, as that many [`PageMapper::map_page`]
    /// calls would (cf. `vmap_pages_range()` and `ioremap_page_range()`,
    /// which walk the tables once per range rather than per page). On an
    /// error at page `i`, pages `0..i` stay mapped, the rest are untouched,
    /// and `(i, error)` is returned. The default maps a page at a time.
    fn map_pages(
        &self,
        virt: VirtAddr,
        nr: u64,
        pfn_at: &dyn Fn(u64) -> Pfn,
        prot: MapProt,
    ) -> Result<(), (u64, MapError)> {
        for i in 0..nr {
            self.map_page(VirtAddr(virt.0 + i * PAGE_SIZE), pfn_at(i), prot)
                .map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Clears the PTE at `virt` and returns the frame it mapped, `None` if
    /// nothing was mapped (cf. `ptep_get_and_clear()` in `vunmap_pte_range()`).
    /// No TLB flush.
    fn unmap_page(&self, virt: VirtAddr) -> Option<Pfn>;

    /// Clears the PTEs of the `nr` pages from `virt`, as that many
    /// [`PageMapper::unmap_page`] calls would, and tells `each` page `i`'s
    /// result (cf. `vunmap_range_noflush()`, one walk per table). No TLB
    /// flush. The default unmaps a page at a time.
    fn unmap_pages(&self, virt: VirtAddr, nr: u64, each: &mut dyn FnMut(u64, Option<Pfn>)) {
        for i in 0..nr {
            each(i, self.unmap_page(VirtAddr(virt.0 + i * PAGE_SIZE)));
        }
    }

    /// Invalidates every TLB entry for `[start, end)` (cf.
    /// `flush_tlb_kernel_range()`; `invlpg` per page or a full flush above
    /// a threshold).
    fn flush_tlb_range(&self, start: VirtAddr, end: VirtAddr);

    /// The frame the 4 KiB PTE at `virt` maps, if present (cf.
    /// `vmalloc_to_pfn()`).
    fn translate(&self, virt: VirtAddr) -> Option<Pfn>;
}

/// A simulated RAM arena for host tests: every frame of `[0, nr_frames)` is
/// backed by a heap buffer, so fill/checksum/zeroing are real byte work.
#[cfg(any(test, feature = "sim"))]
pub mod sim {
    extern crate alloc;
    extern crate std;

    use alloc::collections::{BTreeMap, BTreeSet};
    use alloc::vec;
    use alloc::vec::Vec;
    use std::sync::{Mutex, MutexGuard};

    use super::{FRAME_BYTES, MapError, MapProt, PageMapper, Platform};
    use crate::types::{PAGE_SIZE, Pfn, VirtAddr};

    /// RAM for `nr_frames` frames, initially filled with 0xCC so that a
    /// missing `__GFP_ZERO` shows, plus a simulated kernel page table and
    /// TLB for [`PageMapper`].
    pub struct SimPlatform {
        ram: Mutex<Vec<u8>>,
        mmu: Mutex<SimMmu>,
        /// The simulated clock: [`Platform::now_ns`] advances it by 1 µs
        /// per call, so trace timestamps are distinct and increasing.
        clock_ns: std::sync::atomic::AtomicU64,
    }

    /// The simulated page table (virt → PTE) and what the TLB may still
    /// hold.
    #[derive(Default)]
    struct SimMmu {
        ptes: BTreeMap<u64, (Pfn, MapProt)>,
        /// Pages unmapped but not flushed yet: a real TLB may still
        /// translate them.
        unflushed: BTreeSet<u64>,
        flushes: u64,
        maps: u64,
        unmaps: u64,
        /// `map_page` calls over a page still in `unflushed` (a stale-TLB bug).
        stale_remaps: u64,
        /// Fault injection: `map_page` fails with `NoMemory` once this many
        /// more calls have succeeded.
        map_budget: Option<u64>,
    }

    impl SimPlatform {
        /// An arena of `nr_frames` frames with an empty page table.
        pub fn new(nr_frames: u64) -> Self {
            SimPlatform {
                ram: Mutex::new(vec![0xCC; nr_frames as usize * FRAME_BYTES]),
                mmu: Mutex::new(SimMmu::default()),
                clock_ns: std::sync::atomic::AtomicU64::new(0),
            }
        }

        fn mmu(&self) -> MutexGuard<'_, SimMmu> {
            self.mmu.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// The PTE at `virt` (page-aligned), if present.
        pub fn pte(&self, virt: VirtAddr) -> Option<(Pfn, MapProt)> {
            self.mmu().ptes.get(&virt.0).copied()
        }

        /// Every present PTE in `[start, end)`, in address order.
        pub fn ptes_in(&self, start: VirtAddr, end: VirtAddr) -> Vec<(VirtAddr, Pfn, MapProt)> {
            self.mmu()
                .ptes
                .range(start.0..end.0)
                .map(|(&v, &(p, prot))| (VirtAddr(v), p, prot))
                .collect()
        }

        /// Number of present PTEs.
        pub fn nr_ptes(&self) -> usize {
            self.mmu().ptes.len()
        }

        /// `flush_tlb_range` calls so far.
        pub fn tlb_flushes(&self) -> u64 {
            self.mmu().flushes
        }

        /// Pages unmapped and not yet covered by a flush: stale TLB entries
        /// a real CPU might still use.
        pub fn unflushed(&self) -> usize {
            self.mmu().unflushed.len()
        }

        /// `map_page` calls that reused a page whose old translation was
        /// never flushed (must stay 0).
        pub fn stale_remaps(&self) -> u64 {
            self.mmu().stale_remaps
        }

        /// `(map_page, unmap_page)` successful calls so far.
        pub fn map_unmap_counts(&self) -> (u64, u64) {
            let m = self.mmu();
            (m.maps, m.unmaps)
        }

        /// Fault injection: after `n` more successful `map_page` calls,
        /// every further one fails with [`MapError::NoMemory`]; `None`
        /// lifts the limit.
        pub fn fail_maps_after(&self, n: Option<u64>) {
            self.mmu().map_budget = n;
        }

        /// A copy of frame `pfn`'s bytes, for assertions.
        pub fn frame(&self, pfn: Pfn) -> Vec<u8> {
            let ram = self.ram.lock().unwrap_or_else(|e| e.into_inner());
            let at = pfn.index() * FRAME_BYTES;
            ram[at..at + FRAME_BYTES].to_vec()
        }
    }

    impl Platform for SimPlatform {
        fn with_frame(&self, pfn: Pfn, f: &mut dyn FnMut(&mut [u8])) {
            let mut ram = self.ram.lock().unwrap_or_else(|e| e.into_inner());
            let at = pfn.index() * FRAME_BYTES;
            f(&mut ram[at..at + FRAME_BYTES]);
        }

        fn now_ns(&self) -> u64 {
            self.clock_ns
                .fetch_add(1000, std::sync::atomic::Ordering::Relaxed)
                + 1000
        }

        /// The CPU this host thread plays ([`set_current_cpu`]; 0 unless
        /// set), so threads can stand for CPUs in concurrency tests.
        fn cpu_id(&self) -> usize {
            SIM_CPU.with(|c| c.get())
        }
    }

    std::thread_local! {
        static SIM_CPU: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    /// Makes the calling host thread act as CPU `cpu` for every
    /// [`SimPlatform`] (what [`Platform::cpu_id`] answers on it).
    pub fn set_current_cpu(cpu: usize) {
        SIM_CPU.with(|c| c.set(cpu));
    }

    impl PageMapper for SimPlatform {
        fn map_page(&self, virt: VirtAddr, pfn: Pfn, prot: MapProt) -> Result<(), MapError> {
            // Kernel half only, page-aligned: the real tables serve nothing else.
            if !virt.0.is_multiple_of(PAGE_SIZE) || virt.0 < 0xffff_8000_0000_0000 {
                return Err(MapError::BadAddress { virt });
            }
            let mut m = self.mmu();
            if let Some(&(old, _)) = m.ptes.get(&virt.0) {
                return Err(MapError::AlreadyMapped { virt, pfn: old });
            }
            if let Some(budget) = m.map_budget.as_mut() {
                if *budget == 0 {
                    return Err(MapError::NoMemory { virt });
                }
                *budget -= 1;
            }
            if m.unflushed.contains(&virt.0) {
                m.stale_remaps += 1;
            }
            m.ptes.insert(virt.0, (pfn, prot));
            m.maps += 1;
            Ok(())
        }

        fn unmap_page(&self, virt: VirtAddr) -> Option<Pfn> {
            let mut m = self.mmu();
            let (pfn, _) = m.ptes.remove(&virt.0)?;
            m.unflushed.insert(virt.0);
            m.unmaps += 1;
            Some(pfn)
        }

        fn flush_tlb_range(&self, start: VirtAddr, end: VirtAddr) {
            let mut m = self.mmu();
            m.flushes += 1;
            let stale: Vec<u64> = m.unflushed.range(start.0..end.0).copied().collect();
            for v in stale {
                m.unflushed.remove(&v);
            }
        }

        fn translate(&self, virt: VirtAddr) -> Option<Pfn> {
            self.mmu()
                .ptes
                .get(&(virt.0 & !(PAGE_SIZE - 1)))
                .map(|&(p, _)| p)
        }
    }
}
