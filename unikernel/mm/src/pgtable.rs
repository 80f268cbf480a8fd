//! x86_64 4-level page-table walk decoder (cf. Linux's `lookup_address()` and
//! the fault-time dump in `arch/x86/mm/fault.c:dump_pagetable()`).
//!
//! Pure: the caller supplies a `read_entry(phys_of_entry) -> u64` callback, so
//! the kernel reads real tables through its physical-memory window while host
//! tests read a simulated RAM. The same [`Walk`] feeds the exception report
//! and the `/api/pagetable` endpoint (API.md): levels are named like Linux's
//! 4-level layout (PGD → PUD → PMD → PTE), and the walk stops at the first
//! non-present entry or huge-page leaf.

use core::fmt;

/// Entry bit 0: the entry is valid.
pub const PRESENT: u64 = 1 << 0;
/// Entry bit 1: writes allowed (subject to CR0.WP in supervisor mode).
pub const WRITABLE: u64 = 1 << 1;
/// Entry bit 2: user-mode accesses allowed.
pub const USER: u64 = 1 << 2;
/// Entry bit 3: page-level write-through.
pub const PWT: u64 = 1 << 3;
/// Entry bit 4: page-level cache disable.
pub const PCD: u64 = 1 << 4;
/// Entry bit 5: set by the CPU on any access.
pub const ACCESSED: u64 = 1 << 5;
/// Entry bit 6: set by the CPU on a write (leaf entries only).
pub const DIRTY: u64 = 1 << 6;
/// Entry bit 7 in a PUD/PMD: maps a 1 GiB / 2 MiB page (PS). In a PTE the
/// same bit is PAT; in a PGD it is reserved.
pub const HUGE: u64 = 1 << 7;
/// Entry bit 8: global translation, kept across CR3 reloads (leaf only).
pub const GLOBAL: u64 = 1 << 8;
/// Entry bit 63: no-execute (needs EFER.NXE).
pub const NX: u64 = 1 << 63;
/// Physical-address bits 12..=51 of a table pointer or 4 KiB leaf.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// 4 KiB.
pub const PAGE_SIZE_4K: u64 = 1 << 12;
/// 2 MiB (a PMD leaf).
pub const PAGE_SIZE_2M: u64 = 1 << 21;
/// 1 GiB (a PUD leaf).
pub const PAGE_SIZE_1G: u64 = 1 << 30;

/// Entries per table (9 index bits).
pub const ENTRIES_PER_TABLE: u64 = 512;

/// Names for each flag bit, in the order API.md lists them.
const FLAG_NAMES: [(u64, &str); 10] = [
    (PRESENT, "PRESENT"),
    (WRITABLE, "WRITABLE"),
    (USER, "USER"),
    (PWT, "PWT"),
    (PCD, "PCD"),
    (ACCESSED, "ACCESSED"),
    (DIRTY, "DIRTY"),
    (HUGE, "HUGE"),
    (GLOBAL, "GLOBAL"),
    (NX, "NX"),
];

/// A paging level, named as in Linux's 4-level layout (PML4 = PGD,
/// PDPT = PUD, PD = PMD, PT = PTE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Pgd,
    Pud,
    Pmd,
    Pte,
}

impl Level {
    /// All levels, from the root down.
    pub const ALL: [Level; 4] = [Level::Pgd, Level::Pud, Level::Pmd, Level::Pte];

    /// "PGD", "PUD", "PMD" or "PTE" (the strings API.md uses).
    pub const fn name(self) -> &'static str {
        match self {
            Level::Pgd => "PGD",
            Level::Pud => "PUD",
            Level::Pmd => "PMD",
            Level::Pte => "PTE",
        }
    }

    /// Bit position of this level's 9-bit index in a virtual address.
    pub const fn shift(self) -> u32 {
        match self {
            Level::Pgd => 39,
            Level::Pud => 30,
            Level::Pmd => 21,
            Level::Pte => 12,
        }
    }

    /// Index of `vaddr` in a table of this level (0..512).
    pub const fn index_of(self, vaddr: u64) -> u16 {
        ((vaddr >> self.shift()) & (ENTRIES_PER_TABLE - 1)) as u16
    }

    /// Size of the page a leaf entry at this level maps, if this level can
    /// hold a leaf with bit 7 set (PUD: 1 GiB, PMD: 2 MiB) or always is one
    /// (PTE: 4 KiB). `None` for the PGD, which never maps a page.
    pub const fn leaf_size(self) -> Option<u64> {
        match self {
            Level::Pgd => None,
            Level::Pud => Some(PAGE_SIZE_1G),
            Level::Pmd => Some(PAGE_SIZE_2M),
            Level::Pte => Some(PAGE_SIZE_4K),
        }
    }

    const fn next(self) -> Option<Level> {
        match self {
            Level::Pgd => Some(Level::Pud),
            Level::Pud => Some(Level::Pmd),
            Level::Pmd => Some(Level::Pte),
            Level::Pte => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry visited by a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkLevel {
    pub level: Level,
    /// Index of the entry within its table.
    pub index: u16,
    /// Raw 64-bit entry.
    pub entry: u64,
    /// Physical address of the table holding the entry.
    pub table_phys: u64,
}

impl WalkLevel {
    const EMPTY: WalkLevel = WalkLevel {
        level: Level::Pgd,
        index: 0,
        entry: 0,
        table_phys: 0,
    };

    /// Physical address of the entry itself.
    pub const fn entry_phys(&self) -> u64 {
        self.table_phys + self.index as u64 * 8
    }

    pub const fn present(&self) -> bool {
        self.entry & PRESENT != 0
    }

    /// True if this entry is a leaf: a PTE, or a PUD/PMD with bit 7 set.
    pub const fn is_leaf(&self) -> bool {
        match self.level {
            Level::Pgd => false,
            Level::Pud | Level::Pmd => self.entry & HUGE != 0,
            Level::Pte => true,
        }
    }

    /// Physical address this entry points at: the next table, or the page
    /// frame for a leaf (bits below the page size masked off; for huge
    /// pages bit 12 is PAT, not address).
    pub const fn target_phys(&self) -> u64 {
        if self.is_leaf() {
            match self.level.leaf_size() {
                Some(size) => self.entry & ADDR_MASK & !(size - 1),
                None => self.entry & ADDR_MASK,
            }
        } else {
            self.entry & ADDR_MASK
        }
    }

    /// Flag names for this entry, interpreting bit 7 by level: "HUGE" only
    /// in a PUD/PMD, "PAT" in a PTE, dropped (reserved) in a PGD.
    pub fn flags(&self) -> impl Iterator<Item = &'static str> + use<> {
        let level = self.level;
        let entry = self.entry;
        entry_flags(entry)
            .filter(move |&name| name != "HUGE" || matches!(level, Level::Pud | Level::Pmd))
            .chain((level == Level::Pte && entry & HUGE != 0).then_some("PAT"))
    }
}

/// The result of walking one virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    pub vaddr: u64,
    levels: [WalkLevel; 4],
    nr_levels: usize,
    /// Physical address `vaddr` translates to, if mapped.
    pub phys: Option<u64>,
    /// Size of the mapping page (4 KiB, 2 MiB or 1 GiB); 0 if unmapped.
    pub page_size: u64,
}

impl Walk {
    /// The entries visited, root first. Empty for a non-canonical address;
    /// the last one is the leaf or the non-present entry that ended the walk.
    pub fn levels(&self) -> &[WalkLevel] {
        &self.levels[..self.nr_levels]
    }

    pub const fn mapped(&self) -> bool {
        self.phys.is_some()
    }

    /// False if the address is not canonical (bits 63..47 not all equal),
    /// in which case nothing was read.
    pub const fn canonical(&self) -> bool {
        is_canonical(self.vaddr)
    }
}

/// True if bits 63..=47 of `vaddr` are all equal (4-level paging).
pub const fn is_canonical(vaddr: u64) -> bool {
    let top = vaddr >> 47;
    top == 0 || top == 0x1_ffff
}

/// Walks `vaddr` from the root table in `cr3` (low flag/PCID bits ignored).
/// `read_entry` gets the physical address of each 8-byte entry to read.
///
/// Stops at a non-present entry (unmapped) or at a leaf (1 GiB PUD, 2 MiB
/// PMD, 4 KiB PTE). A non-canonical address is unmapped with no levels.
pub fn walk(cr3_phys: u64, vaddr: u64, mut read_entry: impl FnMut(u64) -> u64) -> Walk {
    let mut out = Walk {
        vaddr,
        levels: [WalkLevel::EMPTY; 4],
        nr_levels: 0,
        phys: None,
        page_size: 0,
    };
    if !is_canonical(vaddr) {
        return out;
    }
    let mut table_phys = cr3_phys & ADDR_MASK;
    let mut level = Level::Pgd;
    loop {
        let index = level.index_of(vaddr);
        let entry = read_entry(table_phys + u64::from(index) * 8);
        let visited = WalkLevel {
            level,
            index,
            entry,
            table_phys,
        };
        out.levels[out.nr_levels] = visited;
        out.nr_levels += 1;
        if !visited.present() {
            return out;
        }
        if visited.is_leaf() {
            let size = level.leaf_size().unwrap_or(PAGE_SIZE_4K);
            out.page_size = size;
            out.phys = Some(visited.target_phys() + (vaddr & (size - 1)));
            return out;
        }
        table_phys = visited.target_phys();
        match level.next() {
            Some(next) => level = next,
            // A PTE is always a leaf, so this is unreachable; stay total.
            None => return out,
        }
    }
}

/// Names of the flag bits set in `entry`, in the order PRESENT, WRITABLE,
/// USER, PWT, PCD, ACCESSED, DIRTY, HUGE, GLOBAL, NX. Bit 7 is reported as
/// "HUGE" regardless of level; see [`WalkLevel::flags`] for the level-aware
/// reading.
pub fn entry_flags(entry: u64) -> impl Iterator<Item = &'static str> {
    FLAG_NAMES
        .iter()
        .filter(move |(bit, _)| entry & bit != 0)
        .map(|&(_, name)| name)
}

/// Short page-size label: "4K", "2M", "1G".
pub const fn page_size_name(size: u64) -> &'static str {
    match size {
        PAGE_SIZE_4K => "4K",
        PAGE_SIZE_2M => "2M",
        PAGE_SIZE_1G => "1G",
        _ => "?",
    }
}

impl fmt::Display for WalkLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] = {:#018x} (", self.level, self.index, self.entry)?;
        let mut any = false;
        for name in self.flags() {
            if any {
                f.write_str("|")?;
            }
            f.write_str(name)?;
            any = true;
        }
        if !any {
            f.write_str("-")?;
        }
        f.write_str(") -> ")?;
        if !self.present() {
            f.write_str("not present")
        } else if self.is_leaf() {
            write!(f, "page {:#x}", self.target_phys())
        } else {
            write!(f, "table {:#x}", self.target_phys())
        }
    }
}

impl fmt::Display for Walk {
    /// One line per level, then `=> phys 0x… (4K|2M|1G)` or `=> not mapped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for level in self.levels() {
            writeln!(f, "{level}")?;
        }
        match self.phys {
            Some(phys) => write!(
                f,
                "=> phys {:#x} ({})",
                phys,
                page_size_name(self.page_size)
            ),
            None if !self.canonical() => {
                write!(f, "=> not mapped (non-canonical {:#x})", self.vaddr)
            }
            None => f.write_str("=> not mapped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::format;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    /// Simulated physical memory: frames of 512 entries, allocated on demand.
    struct Phys {
        ram: Vec<u64>,
        next_frame: u64,
        reads: HashMap<u64, usize>,
    }

    const BASE: u64 = 0x10_0000; // tables live from 1 MiB up

    impl Phys {
        fn new() -> Self {
            Phys {
                ram: vec![0; 64 * 512],
                next_frame: 0,
                reads: HashMap::new(),
            }
        }
        fn alloc_table(&mut self) -> u64 {
            let phys = BASE + self.next_frame * PAGE_SIZE_4K;
            self.next_frame += 1;
            phys
        }
        fn slot(phys: u64) -> usize {
            assert_eq!(phys % 8, 0, "entry read must be 8-byte aligned");
            ((phys - BASE) / 8) as usize
        }
        fn set(&mut self, table: u64, index: u16, entry: u64) {
            self.ram[Self::slot(table + u64::from(index) * 8)] = entry;
        }
        fn read(&mut self, phys: u64) -> u64 {
            *self.reads.entry(phys).or_default() += 1;
            self.ram[Self::slot(phys)]
        }
        fn walk(&mut self, cr3: u64, vaddr: u64) -> Walk {
            walk(cr3, vaddr, |p| self.read(p))
        }
    }

    const TABLE: u64 = PRESENT | WRITABLE;

    /// Builds PGD → PUD → PMD → PT for `vaddr`, returns (cr3, pud, pmd, pt).
    fn four_levels(m: &mut Phys, vaddr: u64) -> (u64, u64, u64, u64) {
        let pgd = m.alloc_table();
        let pud = m.alloc_table();
        let pmd = m.alloc_table();
        let pt = m.alloc_table();
        m.set(pgd, Level::Pgd.index_of(vaddr), pud | TABLE);
        m.set(pud, Level::Pud.index_of(vaddr), pmd | TABLE);
        m.set(pmd, Level::Pmd.index_of(vaddr), pt | TABLE);
        (pgd, pud, pmd, pt)
    }

    #[test]
    fn index_split() {
        let v = 0xffff_8880_1234_5678u64;
        assert_eq!(Level::Pgd.index_of(v), 273);
        assert_eq!(Level::Pud.index_of(v), 0);
        assert_eq!(Level::Pmd.index_of(v), 0x91);
        assert_eq!(Level::Pte.index_of(v), 0x145);
        assert_eq!(Level::Pgd.index_of(0xffff_ffff_ffff_f000), 511);
    }

    #[test]
    fn walk_4k_leaf() {
        let mut m = Phys::new();
        let v = 0xffff_c900_0020_3abc;
        let (pgd, pud, pmd, pt) = four_levels(&mut m, v);
        m.set(
            pt,
            Level::Pte.index_of(v),
            0x7654_3000 | PRESENT | WRITABLE | NX | ACCESSED | DIRTY,
        );
        // CR3 low bits (PCID / PWT / PCD) must be ignored.
        let w = m.walk(pgd | 0x18, v);
        assert!(w.mapped());
        assert_eq!(w.page_size, PAGE_SIZE_4K);
        assert_eq!(w.phys, Some(0x7654_3abc));
        let lv = w.levels();
        assert_eq!(lv.len(), 4);
        assert_eq!(lv.iter().map(|l| l.level).collect::<Vec<_>>(), Level::ALL);
        assert_eq!(lv[0].table_phys, pgd);
        assert_eq!(lv[1].table_phys, pud);
        assert_eq!(lv[2].table_phys, pmd);
        assert_eq!(lv[3].table_phys, pt);
        assert_eq!(lv[3].index, 0x003);
        assert_eq!(lv[3].entry_phys(), pt + 3 * 8);
        assert_eq!(
            lv[3].flags().collect::<Vec<_>>(),
            ["PRESENT", "WRITABLE", "ACCESSED", "DIRTY", "NX"]
        );
        // Exactly one read per level.
        assert_eq!(m.reads.values().sum::<usize>(), 4);
    }

    #[test]
    fn walk_2m_leaf_masks_pat_bit() {
        let mut m = Phys::new();
        let v = 0x0000_0000_4030_1234u64; // PMD index 1 of PUD index 1
        let pgd = m.alloc_table();
        let pud = m.alloc_table();
        let pmd = m.alloc_table();
        m.set(pgd, 0, pud | TABLE);
        m.set(pud, 1, pmd | TABLE);
        // bit 12 = PAT in a huge entry: not part of the frame address.
        m.set(pmd, 1, 0x0020_0000 | (1 << 12) | PRESENT | HUGE | GLOBAL);
        let w = m.walk(pgd, v);
        assert_eq!(w.page_size, PAGE_SIZE_2M);
        assert_eq!(w.phys, Some(0x0020_0000 + 0x10_1234));
        assert_eq!(w.levels().len(), 3);
        assert!(w.levels()[2].is_leaf());
        assert_eq!(
            w.levels()[2].flags().collect::<Vec<_>>(),
            ["PRESENT", "HUGE", "GLOBAL"]
        );
    }

    #[test]
    fn walk_1g_leaf_direct_map() {
        let mut m = Phys::new();
        let page_offset = 0xffff_8880_0000_0000u64;
        let pgd = m.alloc_table();
        let pud = m.alloc_table();
        m.set(pgd, Level::Pgd.index_of(page_offset), pud | TABLE);
        for gib in 0..4u16 {
            m.set(
                pud,
                gib,
                (u64::from(gib) * PAGE_SIZE_1G) | PRESENT | WRITABLE | HUGE | NX,
            );
        }
        for phys in [
            0u64,
            0x1234,
            0x3fff_ffff,
            0x4000_0000,
            0xbfff_f008,
            0xffff_ffff,
        ] {
            let w = m.walk(pgd, page_offset + phys);
            assert_eq!(
                w.phys,
                Some(phys),
                "phys_to_virt({phys:#x}) walks back to itself"
            );
            assert_eq!(w.page_size, PAGE_SIZE_1G);
            assert_eq!(w.levels().len(), 2);
        }
        // Past the 4 GiB populated: not present at the PUD.
        let w = m.walk(pgd, page_offset + 4 * PAGE_SIZE_1G);
        assert!(!w.mapped());
        assert_eq!(w.page_size, 0);
        assert_eq!(w.levels().len(), 2);
        assert_eq!(w.levels()[1].index, 4);
    }

    #[test]
    fn not_present_at_each_level() {
        let v = 0x0000_7fff_dead_b000u64;
        for stop in 0..4 {
            let mut m = Phys::new();
            let (pgd, pud, pmd, pt) = four_levels(&mut m, v);
            m.set(pt, Level::Pte.index_of(v), 0x5000 | PRESENT);
            // Clear PRESENT (but keep other bits) at level `stop`.
            let (table, level) = [
                (pgd, Level::Pgd),
                (pud, Level::Pud),
                (pmd, Level::Pmd),
                (pt, Level::Pte),
            ][stop];
            let old = m.ram[Phys::slot(table + u64::from(level.index_of(v)) * 8)];
            m.set(table, level.index_of(v), old & !PRESENT);
            let w = m.walk(pgd, v);
            assert!(!w.mapped(), "stop at {level}");
            assert_eq!(w.phys, None);
            assert_eq!(w.page_size, 0);
            assert_eq!(w.levels().len(), stop + 1);
            assert_eq!(w.levels()[stop].level, level);
            assert!(w.to_string().ends_with("=> not mapped"));
        }
    }

    #[test]
    fn non_canonical_reads_nothing() {
        let mut m = Phys::new();
        let pgd = m.alloc_table();
        for v in [
            0x0000_8000_0000_0000u64,
            0xffff_7fff_ffff_ffff,
            0x1234_0000_0000_0000,
        ] {
            let w = m.walk(pgd, v);
            assert!(!w.mapped() && !w.canonical());
            assert!(w.levels().is_empty());
            assert!(w.to_string().contains("non-canonical"));
        }
        assert!(m.reads.is_empty());
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(is_canonical(0xffff_8000_0000_0000));
    }

    #[test]
    fn flags_and_display() {
        assert_eq!(entry_flags(0).count(), 0);
        assert_eq!(
            entry_flags(u64::MAX).collect::<Vec<_>>(),
            [
                "PRESENT", "WRITABLE", "USER", "PWT", "PCD", "ACCESSED", "DIRTY", "HUGE", "GLOBAL",
                "NX"
            ]
        );
        // Bit 7 in a PTE is PAT, in a PGD reserved.
        let pte = WalkLevel {
            level: Level::Pte,
            index: 0,
            entry: PRESENT | HUGE,
            table_phys: 0,
        };
        assert_eq!(pte.flags().collect::<Vec<_>>(), ["PRESENT", "PAT"]);
        let pgd = WalkLevel {
            level: Level::Pgd,
            index: 0,
            entry: PRESENT | HUGE,
            table_phys: 0,
        };
        assert_eq!(pgd.flags().collect::<Vec<_>>(), ["PRESENT"]);

        let mut m = Phys::new();
        let v = 0xffff_ffff_8010_0000u64;
        let (pgd, _, _, pt) = four_levels(&mut m, v);
        m.set(pt, Level::Pte.index_of(v), 0x10_0000 | PRESENT | GLOBAL);
        let text = m.walk(pgd, v + 0x10).to_string();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[0],
            format!(
                "PGD[511] = {:#018x} (PRESENT|WRITABLE) -> table {:#x}",
                (BASE + 0x1000) | 3,
                BASE + 0x1000
            )
        );
        assert!(
            lines[3].starts_with("PTE[256] = 0x0000000000100101 (PRESENT|GLOBAL) -> page 0x100000")
        );
        assert_eq!(lines[4], "=> phys 0x100010 (4K)");
        let empty = WalkLevel {
            level: Level::Pud,
            index: 7,
            entry: 0,
            table_phys: 0,
        };
        assert_eq!(
            empty.to_string(),
            "PUD[7] = 0x0000000000000000 (-) -> not present"
        );
    }
}
