//! GFP ("get free pages") flags: how an allocation may be satisfied.
//!
//! The flags carry the caller's constraints to the buddy allocator: which
//! zones are acceptable (zone modifiers), whether it may sleep and reclaim,
//! whether it may dip into the emergency reserves below the MIN watermark.
//! Bit values and composite definitions are Linux's (cf.
//! `include/linux/gfp_types.h`), so a value printed here means the same as in
//! a kernel trace. The API receives them as strings, hence [`GfpFlags::parse`]
//! and the `Display` that prints them back in Linux's `%pGg` style.
//!
//! Bitflags are written by hand: `mm` has no dependencies.

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign, Not};

use crate::zone::{MigrateType, ZoneType};

/// A set of GFP flags (cf. `gfp_t`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GfpFlags(u32);

impl GfpFlags {
    // --- Zone modifiers (cf. GFP_ZONEMASK) ---
    /// `__GFP_DMA`: only ZONE_DMA.
    pub const DMA: GfpFlags = GfpFlags(0x01);
    /// `__GFP_HIGHMEM`: ZONE_HIGHMEM and below.
    pub const HIGHMEM: GfpFlags = GfpFlags(0x02);
    /// `__GFP_DMA32`: ZONE_DMA32 and below.
    pub const DMA32: GfpFlags = GfpFlags(0x04);
    /// `__GFP_MOVABLE`: page may be migrated (no effect here: no
    /// ZONE_MOVABLE, no compaction).
    pub const MOVABLE: GfpFlags = GfpFlags(0x08);
    /// `__GFP_RECLAIMABLE` (no effect here: no migrate types).
    pub const RECLAIMABLE: GfpFlags = GfpFlags(0x10);

    // --- Watermark and reclaim modifiers ---
    /// `__GFP_HIGH`: high priority; may use part of the reserve below MIN
    /// (cf. `ALLOC_MIN_RESERVE`).
    pub const HIGH: GfpFlags = GfpFlags(0x20);
    /// `__GFP_IO`: may start physical I/O.
    pub const IO: GfpFlags = GfpFlags(0x40);
    /// `__GFP_FS`: may call into the filesystem.
    pub const FS: GfpFlags = GfpFlags(0x80);
    /// `__GFP_ZERO`: return zeroed memory. The buddy allocator does not touch
    /// memory; the caller's platform zeroes through a mapping.
    pub const ZERO: GfpFlags = GfpFlags(0x100);
    /// `__GFP_DIRECT_RECLAIM`: may sleep and reclaim (i.e. may block).
    pub const DIRECT_RECLAIM: GfpFlags = GfpFlags(0x400);
    /// `__GFP_KSWAPD_RECLAIM`: may wake kswapd.
    pub const KSWAPD_RECLAIM: GfpFlags = GfpFlags(0x800);
    /// `__GFP_WRITE`
    pub const WRITE: GfpFlags = GfpFlags(0x1000);
    /// `__GFP_NOWARN`: suppress the allocation-failure report.
    pub const NOWARN: GfpFlags = GfpFlags(0x2000);
    /// `__GFP_RETRY_MAYFAIL`
    pub const RETRY_MAYFAIL: GfpFlags = GfpFlags(0x4000);
    /// `__GFP_NOFAIL`
    pub const NOFAIL: GfpFlags = GfpFlags(0x8000);
    /// `__GFP_NORETRY`
    pub const NORETRY: GfpFlags = GfpFlags(0x1_0000);
    /// `__GFP_MEMALLOC`
    pub const MEMALLOC: GfpFlags = GfpFlags(0x2_0000);
    /// `__GFP_COMP`
    pub const COMP: GfpFlags = GfpFlags(0x4_0000);
    /// `__GFP_NOMEMALLOC`: never use the reserves, even if atomic.
    pub const NOMEMALLOC: GfpFlags = GfpFlags(0x8_0000);
    /// `__GFP_HARDWALL`: enforce cpuset memory allocation policy.
    pub const HARDWALL: GfpFlags = GfpFlags(0x10_0000);

    /// `__GFP_ACCOUNT`: charge the allocation to the caller's memory
    /// cgroup; kmalloc serves it from the `kmalloc-cg-*` caches. The API
    /// sets it on every object it allocates, so user-driven objects never
    /// share a slab with the kernel's own heap.
    pub const ACCOUNT: GfpFlags = GfpFlags(0x40_0000);

    /// `__GFP_RECLAIM` = direct + kswapd reclaim.
    pub const RECLAIM: GfpFlags = GfpFlags(0x400 | 0x800);

    // --- Composites (cf. gfp_types.h) ---
    /// `GFP_ATOMIC`: cannot sleep, must succeed if at all possible; may use
    /// the reserves below MIN.
    pub const GFP_ATOMIC: GfpFlags = GfpFlags(Self::HIGH.0 | Self::KSWAPD_RECLAIM.0);
    /// `GFP_KERNEL`: ordinary kernel allocation, may sleep.
    pub const GFP_KERNEL: GfpFlags = GfpFlags(Self::RECLAIM.0 | Self::IO.0 | Self::FS.0);
    /// `GFP_NOWAIT`: cannot sleep, no access to reserves.
    pub const GFP_NOWAIT: GfpFlags = GfpFlags(Self::KSWAPD_RECLAIM.0);
    /// `GFP_USER`: userspace allocation, cpuset-constrained.
    pub const GFP_USER: GfpFlags =
        GfpFlags(Self::RECLAIM.0 | Self::IO.0 | Self::FS.0 | Self::HARDWALL.0);
    /// `GFP_DMA`: zone modifier only (combine with GFP_KERNEL/GFP_ATOMIC).
    pub const GFP_DMA: GfpFlags = Self::DMA;
    /// `GFP_DMA32`: zone modifier only.
    pub const GFP_DMA32: GfpFlags = Self::DMA32;
    /// `GFP_HIGHUSER`: user page that may live in HighMem.
    pub const GFP_HIGHUSER: GfpFlags = GfpFlags(Self::GFP_USER.0 | Self::HIGHMEM.0);
    /// `GFP_HIGHUSER_MOVABLE`: a user page that may live in HighMem and may
    /// be migrated (what anonymous memory and the page cache use).
    pub const GFP_HIGHUSER_MOVABLE: GfpFlags = GfpFlags(Self::GFP_HIGHUSER.0 | Self::MOVABLE.0);
    /// The mobility bits (cf. `GFP_MOVABLE_MASK`).
    pub const MOVABLE_MASK: GfpFlags = GfpFlags(Self::MOVABLE.0 | Self::RECLAIMABLE.0);

    /// Zone modifier bits (cf. `GFP_ZONEMASK`).
    pub const ZONEMASK: GfpFlags =
        GfpFlags(Self::DMA.0 | Self::HIGHMEM.0 | Self::DMA32.0 | Self::MOVABLE.0);

    /// The empty set (cf. `0` as a gfp_t; Linux prints it as `none`).
    pub const fn empty() -> GfpFlags {
        GfpFlags(0)
    }

    /// Raw bits, as in a Linux trace.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// From raw bits, dropping bits that name no flag.
    pub const fn from_bits_truncate(bits: u32) -> GfpFlags {
        GfpFlags(bits & Self::ALL_BITS)
    }

    const ALL_BITS: u32 = 0x1f_fdff | 0x40_0000;

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: GfpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: GfpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Union, usable in `const` context.
    pub const fn union(self, other: GfpFlags) -> GfpFlags {
        GfpFlags(self.0 | other.0)
    }

    /// `self` without the bits of `other`.
    pub const fn difference(self, other: GfpFlags) -> GfpFlags {
        GfpFlags(self.0 & !other.0)
    }

    /// Whether the zone modifiers contradict each other: more than one of
    /// DMA, DMA32 and HIGHMEM (cf. `GFP_ZONE_BAD`, where Linux would BUG).
    pub const fn is_zone_bad(self) -> bool {
        let z = self.0 & (Self::DMA.0 | Self::DMA32.0 | Self::HIGHMEM.0);
        z.count_ones() > 1
    }

    /// Highest zone this request may use (cf. `gfp_zone()`); the zonelist
    /// then falls back to every lower zone. A bad combination resolves to the
    /// most restrictive zone asked for, but callers should reject it first
    /// with [`GfpFlags::is_zone_bad`].
    pub const fn gfp_zone(self) -> ZoneType {
        if self.contains(Self::DMA) {
            ZoneType::Dma
        } else if self.contains(Self::DMA32) {
            ZoneType::Dma32
        } else if self.contains(Self::HIGHMEM) {
            ZoneType::HighMem
        } else {
            ZoneType::Normal
        }
    }

    /// The migrate type an allocation with these flags comes from (cf.
    /// `gfp_migratetype()`): `__GFP_MOVABLE` → Movable, `__GFP_RECLAIMABLE`
    /// → Reclaimable, neither → Unmovable. Both at once is a caller bug in
    /// Linux (it would read as HighAtomic); [`GfpFlags::parse`] refuses it
    /// and the kernel never asks, so it is served as Unmovable.
    pub const fn migratetype(self) -> MigrateType {
        match (
            self.contains(Self::MOVABLE),
            self.contains(Self::RECLAIMABLE),
        ) {
            (true, false) => MigrateType::Movable,
            (false, true) => MigrateType::Reclaimable,
            _ => MigrateType::Unmovable,
        }
    }

    /// May the allocation sleep? (cf. `gfpflags_allow_blocking()`).
    pub const fn allows_blocking(self) -> bool {
        self.contains(Self::DIRECT_RECLAIM)
    }

    /// Whether the slow path may use part of the MIN reserve: `__GFP_HIGH`
    /// (cf. `ALLOC_MIN_RESERVE`, which `gfp_to_alloc_flags()` takes straight
    /// from the `__GFP_HIGH` bit).
    pub const fn can_dip_below_min(self) -> bool {
        self.contains(Self::HIGH)
    }

    /// Whether the request cannot block and is allowed to use reserves for
    /// that reason (cf. `ALLOC_NON_BLOCK`: set when `__GFP_DIRECT_RECLAIM` is
    /// absent unless `__GFP_NOMEMALLOC` forbids it).
    pub const fn is_non_block(self) -> bool {
        !self.contains(Self::DIRECT_RECLAIM) && !self.contains(Self::NOMEMALLOC)
    }

    /// The MIN watermark as this request sees it in the slow path
    /// (cf. `__zone_watermark_ok()`): `__GFP_HIGH` removes half of it and a
    /// non-blocking high-priority (atomic) request a further quarter of the
    /// rest. Non-blocking without `__GFP_HIGH` (GFP_NOWAIT) gets no discount.
    pub const fn min_watermark(self, min: u64) -> u64 {
        let mut m = min;
        if self.can_dip_below_min() {
            m -= m / 2;
            if self.is_non_block() {
                m -= m / 4;
            }
        }
        m
    }

    /// Names accepted by [`GfpFlags::parse`] and used by `Display`, most
    /// specific composite first (cf. `__def_gfpflag_names` in
    /// `include/trace/events/mmflags.h`), so printing picks `GFP_HIGHUSER`
    /// over `GFP_USER|__GFP_HIGHMEM`.
    const NAMES: [(&'static str, GfpFlags); 29] = [
        ("GFP_HIGHUSER_MOVABLE", Self::GFP_HIGHUSER_MOVABLE),
        ("GFP_HIGHUSER", Self::GFP_HIGHUSER),
        ("GFP_USER", Self::GFP_USER),
        ("GFP_KERNEL", Self::GFP_KERNEL),
        ("GFP_ATOMIC", Self::GFP_ATOMIC),
        ("GFP_NOWAIT", Self::GFP_NOWAIT),
        ("GFP_DMA", Self::GFP_DMA),
        ("__GFP_HIGHMEM", Self::HIGHMEM),
        ("GFP_DMA32", Self::GFP_DMA32),
        ("__GFP_HIGH", Self::HIGH),
        ("__GFP_IO", Self::IO),
        ("__GFP_FS", Self::FS),
        ("__GFP_NOWARN", Self::NOWARN),
        ("__GFP_RETRY_MAYFAIL", Self::RETRY_MAYFAIL),
        ("__GFP_NOFAIL", Self::NOFAIL),
        ("__GFP_NORETRY", Self::NORETRY),
        ("__GFP_COMP", Self::COMP),
        ("__GFP_ZERO", Self::ZERO),
        ("__GFP_NOMEMALLOC", Self::NOMEMALLOC),
        ("__GFP_MEMALLOC", Self::MEMALLOC),
        ("__GFP_HARDWALL", Self::HARDWALL),
        ("__GFP_MOVABLE", Self::MOVABLE),
        ("__GFP_RECLAIMABLE", Self::RECLAIMABLE),
        ("__GFP_WRITE", Self::WRITE),
        ("__GFP_RECLAIM", Self::RECLAIM),
        ("__GFP_DIRECT_RECLAIM", Self::DIRECT_RECLAIM),
        ("__GFP_KSWAPD_RECLAIM", Self::KSWAPD_RECLAIM),
        ("__GFP_ACCOUNT", Self::ACCOUNT),
        // Aliases accepted on input only; `Display` never reaches them
        // because GFP_DMA/GFP_DMA32 above consume the bits first.
        ("__GFP_DMA", Self::DMA),
    ];

    const INPUT_ONLY: [(&'static str, GfpFlags); 1] = [("__GFP_DMA32", Self::DMA32)];

    /// Flags only the kernel itself may pass: `__GFP_MEMALLOC` opens the
    /// kernel heap's reserve ([`crate::reserve`]), `__GFP_NOFAIL` exempts a
    /// request from fault injection, and `__GFP_NOMEMALLOC` only makes
    /// sense beside them. [`GfpFlags::parse`] refuses them so an API
    /// request can never reach the reserve; `Display` still prints them.
    pub const KERNEL_ONLY: GfpFlags =
        GfpFlags(Self::MEMALLOC.0 | Self::NOFAIL.0 | Self::NOMEMALLOC.0);

    fn lookup(name: &str) -> Option<GfpFlags> {
        Self::NAMES
            .iter()
            .chain(Self::INPUT_ONLY.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }

    /// Parse an API string such as `"GFP_KERNEL | __GFP_ZERO"`.
    ///
    /// Names are Linux's, joined by `|` with optional whitespace. The empty
    /// string is an error (the API supplies its own default). Conflicting
    /// zone modifiers are refused rather than silently resolved, because
    /// Linux treats them as a bug (cf. `GFP_ZONE_BAD`), and so are the
    /// [`GfpFlags::KERNEL_ONLY`] flags.
    pub fn parse(s: &str) -> Result<GfpFlags, GfpParseError<'_>> {
        let mut flags = GfpFlags::empty();
        for part in s.split('|') {
            let name = part.trim();
            if name.is_empty() {
                return Err(GfpParseError::Empty);
            }
            match Self::lookup(name) {
                Some(f) if f.intersects(Self::KERNEL_ONLY) => {
                    return Err(GfpParseError::KernelOnly(name));
                }
                Some(f) => flags |= f,
                None => return Err(GfpParseError::UnknownFlag(name)),
            }
        }
        if flags.is_zone_bad() {
            return Err(GfpParseError::ZoneConflict(flags));
        }
        if flags.contains(Self::MOVABLE_MASK) {
            return Err(GfpParseError::MobilityConflict);
        }
        Ok(flags)
    }
}

/// Why a GFP string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GfpParseError<'a> {
    /// Empty string, or an empty name between two `|`.
    Empty,
    /// A name that is not a GFP flag; carries the offending name.
    UnknownFlag(&'a str),
    /// More than one zone modifier (cf. `GFP_ZONE_BAD`).
    ZoneConflict(GfpFlags),
    /// A [`GfpFlags::KERNEL_ONLY`] flag; carries its name.
    KernelOnly(&'a str),
    /// Both `__GFP_MOVABLE` and `__GFP_RECLAIMABLE` (no such migrate type;
    /// cf. the `VM_WARN_ON` in `gfp_migratetype()`).
    MobilityConflict,
}

impl fmt::Display for GfpParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GfpParseError::Empty => write!(f, "empty gfp flag name"),
            GfpParseError::UnknownFlag(n) => write!(f, "unknown gfp flag '{n}'"),
            GfpParseError::ZoneConflict(g) => {
                write!(f, "conflicting zone modifiers in {g} (GFP_ZONE_BAD)")
            }
            GfpParseError::KernelOnly(n) => {
                write!(f, "gfp flag '{n}' is reserved for the kernel")
            }
            GfpParseError::MobilityConflict => write!(
                f,
                "__GFP_MOVABLE and __GFP_RECLAIMABLE together name no migrate type"
            ),
        }
    }
}

impl fmt::Display for GfpFlags {
    /// Linux's `%pGg` style: composites first, then single flags, then any
    /// leftover bits in hex; `none` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return write!(f, "none");
        }
        let mut rest = *self;
        let mut first = true;
        for (name, mask) in Self::NAMES {
            if mask.0 != 0 && rest.contains(mask) {
                if !first {
                    write!(f, "|")?;
                }
                write!(f, "{name}")?;
                first = false;
                rest = rest.difference(mask);
            }
        }
        if rest.0 != 0 {
            if !first {
                write!(f, "|")?;
            }
            write!(f, "{:#x}", rest.0)?;
        }
        Ok(())
    }
}

impl fmt::Debug for GfpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GfpFlags({self})")
    }
}

impl BitOr for GfpFlags {
    type Output = GfpFlags;
    fn bitor(self, rhs: GfpFlags) -> GfpFlags {
        GfpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for GfpFlags {
    fn bitor_assign(&mut self, rhs: GfpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for GfpFlags {
    type Output = GfpFlags;
    fn bitand(self, rhs: GfpFlags) -> GfpFlags {
        GfpFlags(self.0 & rhs.0)
    }
}

impl Not for GfpFlags {
    type Output = GfpFlags;
    fn not(self) -> GfpFlags {
        GfpFlags(!self.0 & Self::ALL_BITS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_bit_values() {
        assert_eq!(GfpFlags::GFP_KERNEL.bits(), 0xcc0);
        assert_eq!(GfpFlags::GFP_ATOMIC.bits(), 0x820);
        assert_eq!(GfpFlags::GFP_NOWAIT.bits(), 0x800);
        assert_eq!(GfpFlags::GFP_USER.bits(), 0x100cc0);
        assert_eq!(GfpFlags::GFP_HIGHUSER.bits(), 0x100cc2);
        assert_eq!(GfpFlags::ZERO.bits(), 0x100);
        assert_eq!(GfpFlags::NOWARN.bits(), 0x2000);
    }

    #[test]
    fn parse_api_names() {
        let p = |s| GfpFlags::parse(s).unwrap();
        assert_eq!(p("GFP_KERNEL"), GfpFlags::GFP_KERNEL);
        assert_eq!(
            p("GFP_KERNEL|__GFP_ZERO"),
            GfpFlags::GFP_KERNEL | GfpFlags::ZERO
        );
        assert_eq!(
            p(" GFP_ATOMIC |  GFP_DMA "),
            GfpFlags::GFP_ATOMIC | GfpFlags::DMA
        );
        assert_eq!(p("GFP_DMA32"), GfpFlags::DMA32);
        assert_eq!(
            p("GFP_HIGHUSER|__GFP_NOWARN"),
            GfpFlags::GFP_HIGHUSER | GfpFlags::NOWARN
        );
        assert_eq!(
            p("GFP_KERNEL|__GFP_HIGHMEM"),
            GfpFlags::GFP_KERNEL | GfpFlags::HIGHMEM
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            GfpFlags::parse("GFP_BOGUS"),
            Err(GfpParseError::UnknownFlag("GFP_BOGUS"))
        );
        assert_eq!(
            GfpFlags::parse("GFP_KERNEL|gfp_kernel"),
            Err(GfpParseError::UnknownFlag("gfp_kernel"))
        );
        assert_eq!(GfpFlags::parse(""), Err(GfpParseError::Empty));
        assert_eq!(
            GfpFlags::parse("GFP_KERNEL||__GFP_ZERO"),
            Err(GfpParseError::Empty)
        );
        assert!(matches!(
            GfpFlags::parse("GFP_DMA|GFP_DMA32"),
            Err(GfpParseError::ZoneConflict(_))
        ));
        assert!(matches!(
            GfpFlags::parse("GFP_HIGHUSER|GFP_DMA"),
            Err(GfpParseError::ZoneConflict(_))
        ));
        assert!(matches!(
            GfpFlags::parse("GFP_DMA32|__GFP_HIGHMEM"),
            Err(GfpParseError::ZoneConflict(_))
        ));
        let msg = format!("{}", GfpFlags::parse("GFP_KERNAL").unwrap_err());
        assert!(msg.contains("GFP_KERNAL"), "{msg}");
    }

    #[test]
    fn kernel_only_flags_are_refused() {
        for name in ["__GFP_MEMALLOC", "__GFP_NOFAIL", "__GFP_NOMEMALLOC"] {
            assert_eq!(GfpFlags::parse(name), Err(GfpParseError::KernelOnly(name)));
            let line = format!("GFP_ATOMIC | {name}");
            assert_eq!(
                GfpFlags::parse(&line),
                Err(GfpParseError::KernelOnly(name)),
                "{line}"
            );
        }
        let msg = format!("{}", GfpFlags::parse("__GFP_MEMALLOC").unwrap_err());
        assert_eq!(msg, "gfp flag '__GFP_MEMALLOC' is reserved for the kernel");
        // Every other name is still accepted, and the kernel-only ones
        // still print (traces show them).
        for (name, flag) in GfpFlags::NAMES.iter().chain(GfpFlags::INPUT_ONLY.iter()) {
            if !flag.intersects(GfpFlags::KERNEL_ONLY) {
                assert_eq!(GfpFlags::parse(name), Ok(*flag), "{name}");
            }
        }
        assert_eq!(
            format!(
                "{}",
                GfpFlags::GFP_ATOMIC | GfpFlags::MEMALLOC | GfpFlags::NOFAIL
            ),
            "GFP_ATOMIC|__GFP_NOFAIL|__GFP_MEMALLOC"
        );
    }

    #[test]
    fn display_round_trips() {
        let cases = [
            (GfpFlags::GFP_KERNEL, "GFP_KERNEL"),
            (
                GfpFlags::GFP_KERNEL | GfpFlags::ZERO,
                "GFP_KERNEL|__GFP_ZERO",
            ),
            (GfpFlags::GFP_ATOMIC, "GFP_ATOMIC"),
            (GfpFlags::GFP_HIGHUSER, "GFP_HIGHUSER"),
            (GfpFlags::GFP_KERNEL | GfpFlags::DMA, "GFP_KERNEL|GFP_DMA"),
            (
                GfpFlags::GFP_ATOMIC | GfpFlags::DMA32,
                "GFP_ATOMIC|GFP_DMA32",
            ),
            (
                GfpFlags::GFP_KERNEL | GfpFlags::HIGH,
                "GFP_KERNEL|__GFP_HIGH",
            ),
            (
                GfpFlags::GFP_KERNEL | GfpFlags::HIGHMEM,
                "GFP_KERNEL|__GFP_HIGHMEM",
            ),
            (GfpFlags::empty(), "none"),
        ];
        for (g, s) in cases {
            assert_eq!(format!("{g}"), s);
            if g.bits() != 0 {
                assert_eq!(GfpFlags::parse(s), Ok(g));
            }
        }
        assert_eq!(format!("{}", GfpFlags(0x200 | 0x20)), "__GFP_HIGH|0x200");
    }

    #[test]
    fn zone_and_reserve_policy() {
        assert_eq!(GfpFlags::GFP_KERNEL.gfp_zone(), ZoneType::Normal);
        assert_eq!(GfpFlags::GFP_ATOMIC.gfp_zone(), ZoneType::Normal);
        assert_eq!(
            (GfpFlags::GFP_KERNEL | GfpFlags::DMA).gfp_zone(),
            ZoneType::Dma
        );
        assert_eq!(GfpFlags::GFP_DMA32.gfp_zone(), ZoneType::Dma32);
        assert_eq!(GfpFlags::GFP_HIGHUSER.gfp_zone(), ZoneType::HighMem);
        // min 100: __GFP_HIGH → 50; atomic (non-blocking too) → 50 - 12 = 38.
        assert_eq!(GfpFlags::GFP_KERNEL.min_watermark(100), 100);
        assert_eq!(
            (GfpFlags::GFP_KERNEL | GfpFlags::HIGH).min_watermark(100),
            50
        );
        assert_eq!(GfpFlags::GFP_ATOMIC.min_watermark(100), 38);
        assert_eq!(GfpFlags::GFP_NOWAIT.min_watermark(100), 100);
        assert_eq!(
            (GfpFlags::GFP_ATOMIC | GfpFlags::NOMEMALLOC).min_watermark(100),
            50
        );
        assert!(GfpFlags::GFP_KERNEL.allows_blocking());
        assert!(!GfpFlags::GFP_ATOMIC.allows_blocking());
    }
}
