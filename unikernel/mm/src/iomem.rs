//! The physical address space outside RAM: where PCI memory BARs the
//! firmware left unassigned may go.
//!
//! SeaBIOS assigns every BAR before it starts the kernel; a minimal
//! firmware such as qboot leaves them at zero, as Linux then finds them
//! and assigns them itself (`pci_assign_unassigned_resources()`). Without
//! the host bridge's `_CRS` (this kernel does not run the DSDT's AML on
//! q35), Linux takes the window from the e820 map instead:
//! [`pci_gap`] is `e820__setup_pci_gap()`, the largest hole below 4 GiB,
//! and [`IomemAllocator`] places each BAR at the lowest naturally aligned
//! address above its start that overlaps nothing claimed (cf.
//! `allocate_resource()` over `iomem_resource` from `PCIBIOS_MIN_MEM`,
//! which is `pci_mem_start`).

/// Where the search for the PCI gap ends: 4 GiB (cf. `MAX_GAP_END`).
pub const MAX_GAP_END: u64 = 1 << 32;

/// The smallest gap [`pci_gap`] accepts: 4 MiB, as
/// `e820__setup_pci_gap()` starts `gapsize` at `0x400000`.
pub const MIN_GAP: u64 = 0x40_0000;

/// The x86 interrupt and firmware area, `[0xfec00000, 4 GiB)`: the I/O
/// APIC, HPET, local APIC and BIOS flash sit there whether or not the
/// e820 map says so (qboot's does not), so no BAR is placed in it.
pub const X86_PLATFORM_AREA: (u64, u64) = (0xfec0_0000, MAX_GAP_END);

/// The largest hole below 4 GiB between the ranges of the firmware's
/// memory map (`[start, end)` pairs of any type, in any order, possibly
/// overlapping), as `(start, size)`; `None` if no hole of at least
/// [`MIN_GAP`] exists.
///
/// cf. `e820_search_gap()`, which walks the sanitised map from the top
/// down and keeps a hole as large as the best one so far (`>=`), so of
/// two equal holes the lower wins. This walks up, past the highest end
/// seen so far (so overlapping entries need no sanitising first), and
/// keeps only a strictly larger hole: the same answer.
pub fn pci_gap(map: &[(u64, u64)]) -> Option<(u64, u64)> {
    let mut sorted = heapless_sort::Sorted::new(map);
    let mut covered = 0u64; // everything below is in some entry or a hole seen
    let mut best: Option<(u64, u64)> = None;
    let consider = |start: u64, end: u64, best: &mut Option<(u64, u64)>| {
        let end = end.min(MAX_GAP_END);
        if end > start && end - start >= MIN_GAP && best.is_none_or(|(_, size)| end - start > size)
        {
            *best = Some((start, end - start));
        }
    };
    for &(start, end) in sorted.as_mut_slice().iter() {
        if start >= MAX_GAP_END {
            break;
        }
        consider(covered, start, &mut best);
        covered = covered.max(end);
    }
    consider(covered, MAX_GAP_END, &mut best);
    best
}

/// The map, sorted by start, in a fixed array (no allocation on the
/// boot path): up to [`heapless_sort::MAX`] entries, as many as
/// `E820_MAX_ENTRIES_ZEROPAGE`; more are ignored.
mod heapless_sort {
    pub const MAX: usize = 128;

    pub struct Sorted {
        items: [(u64, u64); MAX],
        len: usize,
    }

    impl Sorted {
        pub fn new(map: &[(u64, u64)]) -> Sorted {
            let mut s = Sorted {
                items: [(0, 0); MAX],
                len: map.len().min(MAX),
            };
            s.items[..s.len].copy_from_slice(&map[..s.len]);
            s.items[..s.len].sort_unstable();
            s
        }

        pub fn as_mut_slice(&mut self) -> &mut [(u64, u64)] {
            &mut self.items[..self.len]
        }
    }
}

/// Why a BAR could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IomemError {
    /// The size is zero or not a power of two (a BAR's always is).
    BadSize(u64),
    /// No aligned hole of that size is left in the window.
    NoSpace(u64),
    /// Too many ranges claimed (see [`IomemAllocator::MAX_CLAIMED`]).
    TooMany,
}

impl core::fmt::Display for IomemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IomemError::BadSize(s) => write!(f, "BAR size {s:#x} is not a power of two"),
            IomemError::NoSpace(s) => write!(f, "no {s:#x}-byte aligned hole left for PCI"),
            IomemError::TooMany => write!(f, "too many claimed I/O memory ranges"),
        }
    }
}

/// First-fit placement of memory BARs in `[window.0, window.1)`, around
/// ranges already claimed (platform MMIO, BARs the firmware assigned,
/// BARs placed before). cf. `allocate_resource()` with
/// `pcibios_align_resource()`: the lowest address that is a multiple of
/// the BAR's size (its natural alignment, which the hardware requires)
/// and overlaps no claimed range.
#[derive(Clone, Debug)]
pub struct IomemAllocator {
    window: (u64, u64),
    claimed: [(u64, u64); Self::MAX_CLAIMED],
    nr_claimed: usize,
}

impl IomemAllocator {
    /// Claimed ranges kept (platform devices, other functions' BARs, the
    /// BARs placed): far more than a machine of this kernel has.
    pub const MAX_CLAIMED: usize = 64;

    /// An allocator over `[start, end)`.
    pub fn new(start: u64, end: u64) -> IomemAllocator {
        IomemAllocator {
            window: (start, end.max(start)),
            claimed: [(0, 0); Self::MAX_CLAIMED],
            nr_claimed: 0,
        }
    }

    /// The window.
    pub fn window(&self) -> (u64, u64) {
        self.window
    }

    /// Marks `[start, end)` as taken (cf. `request_resource()`); empty
    /// ranges are ignored.
    pub fn claim(&mut self, start: u64, end: u64) -> Result<(), IomemError> {
        if start >= end {
            return Ok(());
        }
        let slot = self
            .claimed
            .get_mut(self.nr_claimed)
            .ok_or(IomemError::TooMany)?;
        *slot = (start, end);
        self.nr_claimed += 1;
        Ok(())
    }

    /// The ranges claimed so far, in claim order.
    pub fn claimed(&self) -> &[(u64, u64)] {
        &self.claimed[..self.nr_claimed]
    }

    /// Places a BAR of `size` bytes (a power of two): the lowest address
    /// in the window, aligned to `size`, whose range meets no claimed one;
    /// the range is claimed before it is returned.
    pub fn alloc(&mut self, size: u64) -> Result<u64, IomemError> {
        if !size.is_power_of_two() {
            return Err(IomemError::BadSize(size));
        }
        let (lo, hi) = self.window;
        let mut at = lo
            .checked_next_multiple_of(size)
            .ok_or(IomemError::NoSpace(size))?;
        loop {
            let end = at.checked_add(size).ok_or(IomemError::NoSpace(size))?;
            if end > hi {
                return Err(IomemError::NoSpace(size));
            }
            // The claimed range in the way that ends highest: past it is
            // the next place worth trying (each step passes one range).
            let blocker = self
                .claimed()
                .iter()
                .filter(|&&(s, e)| s < end && at < e)
                .map(|&(_, e)| e)
                .max();
            match blocker {
                None => {
                    self.claim(at, end)?;
                    return Ok(at);
                }
                Some(e) => {
                    at = e
                        .checked_next_multiple_of(size)
                        .ok_or(IomemError::NoSpace(size))?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// QEMU q35 under qboot, -m 2G: RAM to 2 GiB, ECAM at 0xb0000000.
    const QBOOT_Q35: [(u64, u64); 7] = [
        (0, 0x9fc00),
        (0x9fc00, 0xa0000),
        (0xd0000, 0xf0000),
        (0xf0000, 0x10_0000),
        (0x10_0000, 0x8000_0000),
        (0xb000_0000, 0xc000_0000),
        (0xfd_0000_0000, 0x100_0000_0000),
    ];

    #[test]
    fn the_gap_is_the_largest_hole_below_4g_as_e820_search_gap_finds_it() {
        // Above the ECAM: 1 GiB; between RAM and the ECAM: 768 MiB.
        assert_eq!(pci_gap(&QBOOT_Q35), Some((0xc000_0000, 0x4000_0000)));
        // SeaBIOS's map of the same machine adds reserved ranges at the
        // top (fed1c000 and the BIOS flash), and RAM ends lower.
        let seabios = [
            (0, 0x9fc00),
            (0x9fc00, 0xa0000),
            (0xf0000, 0x10_0000),
            (0x10_0000, 0x7ffd_f000),
            (0x7ffd_f000, 0x8000_0000),
            (0xb000_0000, 0xc000_0000),
            (0xfed1_c000, 0xfed2_0000),
            (0xfffc_0000, 0x1_0000_0000),
            (0xfd_0000_0000, 0x100_0000_0000),
        ];
        assert_eq!(pci_gap(&seabios), Some((0xc000_0000, 0x3ed1_c000)));
        // Order does not matter.
        let mut shuffled = QBOOT_Q35;
        shuffled.reverse();
        assert_eq!(pci_gap(&shuffled), pci_gap(&QBOOT_Q35));
    }

    #[test]
    fn no_gap_of_4_mib_is_none_and_a_tie_goes_to_the_lower_hole() {
        // RAM to 4 GiB but for two 3 MiB holes.
        let full = [
            (0, 0x1000_0000),
            (0x1030_0000, 0xf000_0000),
            (0xf030_0000, 0x1_0000_0000),
        ];
        assert_eq!(pci_gap(&full), None);
        // Two 16 MiB holes: e820_search_gap() walks down and keeps a gap
        // as large as the best (`>=`), so the lower one.
        let tie = [
            (0, 0x1000_0000),
            (0x1100_0000, 0xf000_0000),
            (0xf100_0000, 0x1_0000_0000),
        ];
        assert_eq!(pci_gap(&tie), Some((0x1000_0000, 0x100_0000)));
        // No map at all: everything below 4 GiB.
        assert_eq!(pci_gap(&[]), Some((0, MAX_GAP_END)));
    }

    #[test]
    fn bars_go_lowest_first_naturally_aligned_around_claimed_ranges() {
        let mut a = IomemAllocator::new(0xc000_0000, X86_PLATFORM_AREA.0);
        // virtio-net on q35: a 4 KiB BAR and a 16 KiB one.
        assert_eq!(a.alloc(0x1000), Ok(0xc000_0000));
        assert_eq!(a.alloc(0x4000), Ok(0xc000_4000));
        assert_eq!(a.alloc(0x1000), Ok(0xc000_1000));
        // A claimed range in the way is skipped, alignment kept.
        a.claim(0xc000_8000, 0xc001_0001).unwrap();
        assert_eq!(a.alloc(0x8000), Ok(0xc001_8000));
        assert_eq!(a.alloc(0x3000), Err(IomemError::BadSize(0x3000)));
        assert_eq!(a.alloc(0), Err(IomemError::BadSize(0)));
        // Nothing fits past the window's end.
        assert_eq!(a.alloc(0x8000_0000), Err(IomemError::NoSpace(0x8000_0000)));
        let mut small = IomemAllocator::new(0x1000, 0x3000);
        assert_eq!(small.alloc(0x1000), Ok(0x1000));
        assert_eq!(small.alloc(0x1000), Ok(0x2000));
        assert_eq!(small.alloc(0x1000), Err(IomemError::NoSpace(0x1000)));
        // Near the top of the address space nothing wraps.
        let mut top = IomemAllocator::new(u64::MAX - 0xfff, u64::MAX);
        assert_eq!(top.alloc(0x1000), Err(IomemError::NoSpace(0x1000)));
    }

    #[test]
    fn the_claim_table_is_bounded() {
        let mut a = IomemAllocator::new(0, 1 << 40);
        for i in 0..IomemAllocator::MAX_CLAIMED as u64 {
            a.claim(i << 20, (i << 20) + 1).unwrap();
        }
        assert_eq!(a.claim(1 << 39, (1 << 39) + 1), Err(IomemError::TooMany));
        assert_eq!(a.alloc(0x1000), Err(IomemError::TooMany));
        // An empty range takes no slot.
        assert_eq!(a.claim(5, 5), Ok(()));
    }

    proptest! {
        /// Whatever was claimed and asked for: every BAR placed is aligned
        /// to its size, inside the window, and overlaps nothing claimed
        /// before it or placed with it; and it is the lowest such place
        /// (no aligned free slot below it).
        #[test]
        fn placed_bars_are_aligned_disjoint_and_lowest(
            claims in proptest::collection::vec((0u64..1 << 24, 1u64..1 << 20), 0..12),
            sizes in proptest::collection::vec(12u32..22, 1..16),
        ) {
            let window = (0x10_0000u64, 0x200_0000u64);
            let mut a = IomemAllocator::new(window.0, window.1);
            for &(s, len) in &claims {
                a.claim(s, s + len).unwrap();
            }
            for &shift in &sizes {
                let size = 1u64 << shift;
                let before: Vec<(u64, u64)> = a.claimed().to_vec();
                let free = |at: u64| before.iter().all(|&(s, e)| at + size <= s || e <= at);
                match a.alloc(size) {
                    Ok(at) => {
                        prop_assert_eq!(at % size, 0);
                        prop_assert!(at >= window.0 && at + size <= window.1);
                        prop_assert!(free(at));
                        let mut lower = window.0.next_multiple_of(size);
                        while lower < at {
                            prop_assert!(!free(lower), "{:#x} was free below {:#x}", lower, at);
                            lower += size;
                        }
                    }
                    Err(e) => {
                        prop_assert_eq!(e, IomemError::NoSpace(size));
                        let mut at = window.0.next_multiple_of(size);
                        while at + size <= window.1 {
                            prop_assert!(!free(at));
                            at += size;
                        }
                    }
                }
            }
        }

        /// The gap is a hole: it meets no entry, lies below 4 GiB, is at
        /// least MIN_GAP, and no larger hole exists.
        #[test]
        fn the_gap_meets_no_entry_and_none_is_larger(
            map in proptest::collection::vec((0u64..1 << 33, 1u64..1 << 31), 0..10),
        ) {
            let map: Vec<(u64, u64)> = map.iter().map(|&(s, l)| (s, s + l)).collect();
            let hole_at = |lo: u64, hi: u64| map.iter().all(|&(s, e)| hi <= s || e <= lo);
            // Every maximal hole below 4 GiB, from the sorted boundaries.
            let mut points: Vec<u64> = vec![0, MAX_GAP_END];
            for &(s, e) in &map {
                points.extend([s.min(MAX_GAP_END), e.min(MAX_GAP_END)]);
            }
            points.sort_unstable();
            points.dedup();
            let largest = points
                .windows(2)
                .filter(|w| hole_at(w[0], w[1]))
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or(0);
            match pci_gap(&map) {
                Some((start, size)) => {
                    prop_assert!(size >= MIN_GAP && start + size <= MAX_GAP_END);
                    prop_assert!(hole_at(start, start + size));
                    // Holes between adjacent boundaries may merge into a
                    // larger one: compare with merged holes too.
                    prop_assert!(size >= largest);
                }
                None => prop_assert!(largest < MIN_GAP),
            }
        }
    }
}
