//! `struct page`: the per-frame descriptor stored in `mem_map`.
//!
//! Every physical frame below `max_pfn` has exactly one [`Page`], indexed by
//! PFN from 0 (Linux's flat `mem_map`). It is the single source of truth for
//! what a frame is — a hole, reserved, free inside the buddy allocator, the
//! head or a tail of an allocated block, a slab page — and who owns it. Double
//! free detection, `/api/pagetable` and every accounting view read it.
//!
//! The descriptor is deliberately small (16 bytes, asserted ≤ 24): a 2 GiB
//! guest needs 512 Ki of them and they live in lowmem before any heap exists.
//! Free-list links are PFNs rather than pointers so the array is plain data
//! (no `unsafe`, no self-references) and fits in `u32`.

use core::fmt;

/// Free-list link meaning "no frame" (end of list / not linked).
pub const NIL: u32 = u32::MAX;

/// First of the list-end markers: on a buddy free list, the first block's
/// `prev` and the last block's `next` are `LIST_END + migrate type`, so a
/// block can be unlinked in O(1) without being told its list (Linux's
/// lists are circular through their head for the same reason). No PFN
/// reaches it: `max_pfn` is checked against it.
pub const LIST_END: u32 = 0xFFFF_FF00;

/// Whether a free-list link names a frame rather than a list end.
#[inline(always)]
pub const fn is_pfn_link(link: u32) -> bool {
    link < LIST_END
}

/// Where [`PageFlags::PB_MIGRATE`] starts.
const PB_MIGRATE_SHIFT: u16 = 13;

/// Per-frame state bits (cf. `enum pageflags` plus the page-type field).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PageFlags(pub u16);

impl PageFlags {
    /// No flag: a managed frame inside a free buddy block (not its head).
    pub const EMPTY: PageFlags = PageFlags(0);
    /// Not available to the buddy allocator: firmware, kernel image, memblock
    /// allocations, or RAM not yet handed over (cf. `PG_reserved`).
    pub const RESERVED: PageFlags = PageFlags(1 << 0);
    /// Head of a free block sitting on a `free_area` list; `order` is valid
    /// (cf. `PageBuddy()` / `PG_buddy` page type).
    pub const BUDDY: PageFlags = PageFlags(1 << 1);
    /// First frame of an allocated block; `order`, `refcount`, `owner` valid
    /// (cf. `PG_head` of a compound page).
    pub const HEAD: PageFlags = PageFlags(1 << 2);
    /// Non-first frame of an allocated block (cf. `PageTail()`).
    pub const TAIL: PageFlags = PageFlags(1 << 3);
    /// Allocated block currently backing a slab (cf. `PG_slab`).
    pub const SLAB: PageFlags = PageFlags(1 << 4);
    /// Frame belongs to ZONE_HIGHMEM: it has no direct-map address.
    pub const HIGHMEM: PageFlags = PageFlags(1 << 5);
    /// Not RAM at all (hole, device range); never allocatable
    /// (cf. memblock `MEMBLOCK_NOMAP` / pfn not `pfn_valid()`).
    pub const NOMAP: PageFlags = PageFlags(1 << 6);
    /// On an LRU list (cf. `PG_lru`); `prev`/`next` link it there.
    pub const LRU: PageFlags = PageFlags(1 << 7);
    /// On the active rather than the inactive list (cf. `PG_active`).
    pub const ACTIVE: PageFlags = PageFlags(1 << 8);
    /// Accessed since the LRU last looked (cf. `PG_referenced`).
    pub const REFERENCED: PageFlags = PageFlags(1 << 9);
    /// An allocated block whose one owner can move it (cf. `__PageMovable()`
    /// for pages off the LRU): the owner set it, and answers compaction's
    /// [`crate::compaction::MigrateOwner`] calls. LRU pages are movable too.
    pub const MOVABLE: PageFlags = PageFlags(1 << 10);
    /// Head of a free block sitting on a per-CPU list; `order` is valid
    /// (see [`crate::page_alloc::pcp`]). Free, but not on the buddy lists.
    pub const PCP: PageFlags = PageFlags(1 << 11);
    /// Head of a compound block (`__GFP_COMP`, cf. `PG_head`): its other
    /// frames are marked [`PageFlags::TAIL`] and carry its owner. A block
    /// allocated without `__GFP_COMP` keeps its metadata in the head alone,
    /// as Linux's non-compound high-order pages do.
    pub const COMPOUND: PageFlags = PageFlags(1 << 12);
    /// Bits 13–15 of a pageblock's first frame hold the pageblock's
    /// [`crate::zone::MigrateType`] (Linux keeps these `PB_migrate` bits in
    /// a separate `pageblock_flags` bitmap; here they ride in the
    /// descriptor, which has room). Meaningless on other frames.
    pub const PB_MIGRATE: PageFlags = PageFlags(0b111 << PB_MIGRATE_SHIFT);

    const NAMES: [(PageFlags, &'static str); 9] = [
        (PageFlags::RESERVED, "reserved"),
        (PageFlags::BUDDY, "buddy"),
        (PageFlags::PCP, "pcp"),
        (PageFlags::HEAD, "head"),
        (PageFlags::COMPOUND, "compound"),
        (PageFlags::TAIL, "tail"),
        (PageFlags::SLAB, "slab"),
        (PageFlags::HIGHMEM, "highmem"),
        (PageFlags::NOMAP, "nomap"),
    ];

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: PageFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: PageFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Set the bits of `other`.
    pub fn insert(&mut self, other: PageFlags) {
        self.0 |= other.0;
    }

    /// Clear the bits of `other`.
    pub fn remove(&mut self, other: PageFlags) {
        self.0 &= !other.0;
    }

    /// Union, usable in `const` context.
    pub const fn union(self, other: PageFlags) -> PageFlags {
        PageFlags(self.0 | other.0)
    }

    /// Lower-case names of the set bits, for `/api/pagetable`-style output
    /// (cf. `%pGp`).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        PageFlags::NAMES
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

impl fmt::Debug for PageFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageFlags(")?;
        let mut first = true;
        for n in self.names() {
            if !first {
                write!(f, "|")?;
            }
            write!(f, "{n}")?;
            first = false;
        }
        write!(f, ")")
    }
}

/// Who an allocated or reserved frame belongs to; shown by the API and used
/// to prove the API frees only what it allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct OwnerTag(pub u16);

impl OwnerTag {
    /// Unowned (free or never labelled).
    pub const NONE: OwnerTag = OwnerTag(0);
    /// Reserved by firmware (e820 reserved, BIOS area).
    pub const FIRMWARE: OwnerTag = OwnerTag(1);
    /// The kernel image (.text/.data/.bss).
    pub const KERNEL_IMAGE: OwnerTag = OwnerTag(2);
    /// A memblock allocation made during boot.
    pub const MEMBLOCK: OwnerTag = OwnerTag(3);
    /// The `mem_map` array itself.
    pub const MEM_MAP: OwnerTag = OwnerTag(4);
    /// Page-table pages.
    pub const PAGE_TABLE: OwnerTag = OwnerTag(5);
    /// The boot loader's information (PVH start info, memory map, cmdline).
    pub const BOOT_INFO: OwnerTag = OwnerTag(6);
    /// Allocated on behalf of an HTTP API request.
    pub const API: OwnerTag = OwnerTag(7);
    /// Allocated by the in-guest selftest.
    pub const SELFTEST: OwnerTag = OwnerTag(8);
    /// Backing a slab cache.
    pub const SLAB: OwnerTag = OwnerTag(9);
    /// Backing a vmalloc area.
    pub const VMALLOC: OwnerTag = OwnerTag(10);
    /// Coherent DMA buffers and the bounce pool (virtio-net's and the API's).
    pub const DMA: OwnerTag = OwnerTag(11);
    /// The kernel's global heap.
    pub const HEAP: OwnerTag = OwnerTag(12);
    /// Network stack buffers.
    pub const NET: OwnerTag = OwnerTag(13);
    /// A frame sitting in the kernel heap's reserve pool, not handed out
    /// (see [`crate::reserve`]); only the reserve gives it back.
    pub const RESERVE: OwnerTag = OwnerTag(14);

    /// Page-cache pages (clean, file-backed; on the LRU).
    pub const PAGECACHE: OwnerTag = OwnerTag(15);
    /// A free frame compaction's free scanner took off the free lists as a
    /// migration target (`isolate_freepages()`), for the length of one
    /// compaction run.
    pub const COMPACTION: OwnerTag = OwnerTag(16);
    /// Handed out by `cma_alloc()` from the CMA area.
    pub const CMA: OwnerTag = OwnerTag(17);
    /// A chunk of the dynamic per-CPU allocator (`alloc_percpu()`).
    pub const PERCPU: OwnerTag = OwnerTag(18);
    /// RAM whose descriptor deferred init has not written yet (see
    /// [`crate::page_alloc::deferred`]): memblock's, not yet the buddy
    /// allocator's.
    pub const DEFERRED: OwnerTag = OwnerTag(19);

    const NAMES: [(OwnerTag, &'static str); 20] = [
        (OwnerTag::NONE, "none"),
        (OwnerTag::FIRMWARE, "firmware"),
        (OwnerTag::KERNEL_IMAGE, "kernel"),
        (OwnerTag::MEMBLOCK, "memblock"),
        (OwnerTag::MEM_MAP, "mem_map"),
        (OwnerTag::PAGE_TABLE, "page table"),
        (OwnerTag::BOOT_INFO, "boot info"),
        (OwnerTag::API, "api"),
        (OwnerTag::SELFTEST, "selftest"),
        (OwnerTag::SLAB, "slab"),
        (OwnerTag::VMALLOC, "vmalloc"),
        (OwnerTag::DMA, "dma"),
        (OwnerTag::HEAP, "heap"),
        (OwnerTag::NET, "net"),
        (OwnerTag::RESERVE, "reserve"),
        (OwnerTag::PAGECACHE, "pagecache"),
        (OwnerTag::COMPACTION, "compaction"),
        (OwnerTag::CMA, "cma"),
        (OwnerTag::PERCPU, "percpu"),
        (OwnerTag::DEFERRED, "deferred"),
    ];

    /// Human-readable name for API output; `"unknown"` for unlisted tags.
    pub fn name(self) -> &'static str {
        OwnerTag::NAMES
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("unknown", |(_, n)| n)
    }

    /// Inverse of [`OwnerTag::name`], so a memblock reservation named
    /// `"kernel"` can label its frames `KERNEL_IMAGE`; `None` for a name
    /// that is no owner tag.
    pub fn from_name(name: &str) -> Option<OwnerTag> {
        OwnerTag::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(t, _)| *t)
    }
}

/// The descriptor of one physical frame (cf. `struct page`).
///
/// Which fields are meaningful depends on `flags`: `order` for `BUDDY` and
/// `HEAD`, `refcount` for `HEAD`, `prev`/`next` only while `BUDDY` (they link
/// the block into its zone's `free_area[order]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// State bits.
    pub flags: PageFlags,
    /// Index of the zone ([`crate::zone::ZoneType`] as `u8`) the frame
    /// belongs to (cf. the zone bits of `page->flags`).
    pub zone: u8,
    /// Block order for a `BUDDY` or `HEAD` frame (cf. `buddy_order()` /
    /// `compound_order()`).
    pub order: u8,
    /// Users of an allocated block head (cf. `page_ref_count()`).
    pub refcount: u16,
    /// Owner label, for reporting.
    pub owner: OwnerTag,
    /// Previous free block on the same free list (PFN or [`NIL`]).
    pub prev: u32,
    /// Next free block on the same free list (PFN or [`NIL`]).
    pub next: u32,
}

/// `mem_map` costs `size_of::<Page>()` bytes per 4 KiB frame; keep it small.
const _: () = assert!(core::mem::size_of::<Page>() <= 24);

impl Page {
    /// The state every descriptor starts in: not RAM, not allocatable,
    /// unlinked (cf. `__init_single_page()` + `SetPageReserved()`).
    pub const fn new_reserved() -> Page {
        Page {
            flags: PageFlags::RESERVED.union(PageFlags::NOMAP),
            zone: 0,
            order: 0,
            refcount: 0,
            owner: OwnerTag::NONE,
            prev: NIL,
            next: NIL,
        }
    }

    /// The pageblock migrate type stored in this frame (meaningful on a
    /// pageblock's first frame only; cf. `get_pfnblock_flags_mask()`).
    pub const fn pageblock_migratetype(&self) -> u8 {
        ((self.flags.0 & PageFlags::PB_MIGRATE.0) >> PB_MIGRATE_SHIFT) as u8
    }

    /// Store a pageblock migrate type (cf. `set_pfnblock_flags_mask()`).
    pub fn set_pageblock_migratetype(&mut self, mt: u8) {
        self.flags.0 = (self.flags.0 & !PageFlags::PB_MIGRATE.0)
            | ((u16::from(mt) & 0b111) << PB_MIGRATE_SHIFT);
    }

    /// Free block head on a free list (cf. `PageBuddy()`).
    pub const fn is_buddy(&self) -> bool {
        self.flags.contains(PageFlags::BUDDY)
    }

    /// Free block head on a per-CPU list.
    pub const fn is_pcp(&self) -> bool {
        self.flags.contains(PageFlags::PCP)
    }

    /// Head of an allocated block.
    pub const fn is_head(&self) -> bool {
        self.flags.contains(PageFlags::HEAD)
    }

    /// Head of a compound block (its tails are marked).
    pub const fn is_compound(&self) -> bool {
        self.flags.contains(PageFlags::COMPOUND)
    }

    /// Non-first page of a compound block.
    pub const fn is_tail(&self) -> bool {
        self.flags.contains(PageFlags::TAIL)
    }

    /// Reserved: not handed to the buddy allocator (cf. `PageReserved()`).
    pub const fn is_reserved(&self) -> bool {
        self.flags.contains(PageFlags::RESERVED)
    }

    /// Not RAM.
    pub const fn is_nomap(&self) -> bool {
        self.flags.contains(PageFlags::NOMAP)
    }

    /// In ZONE_HIGHMEM (cf. `PageHighMem()`).
    pub const fn is_highmem(&self) -> bool {
        self.flags.contains(PageFlags::HIGHMEM)
    }

    /// Backing a slab (cf. `PageSlab()`).
    pub const fn is_slab(&self) -> bool {
        self.flags.contains(PageFlags::SLAB)
    }

    /// The head or a marked tail of an allocated block. A frame inside a
    /// non-compound block is unmarked: ask
    /// [`crate::page_alloc::PageAlloc::compound_head`].
    pub const fn is_allocated(&self) -> bool {
        self.flags
            .intersects(PageFlags::HEAD.union(PageFlags::TAIL))
    }
}

impl Default for Page {
    fn default() -> Self {
        Page::new_reserved()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_small_and_starts_reserved() {
        assert_eq!(core::mem::size_of::<Page>(), 16);
        let p = Page::new_reserved();
        assert!(p.is_reserved() && p.is_nomap());
        assert!(!p.is_buddy() && !p.is_allocated());
        assert_eq!((p.prev, p.next), (NIL, NIL));
        assert_eq!(format!("{:?}", p.flags), "PageFlags(reserved|nomap)");
    }

    #[test]
    fn owner_names_round_trip() {
        for (tag, name) in OwnerTag::NAMES {
            assert_eq!(tag.name(), name);
            assert_eq!(OwnerTag::from_name(name), Some(tag));
        }
        assert_eq!(OwnerTag(999).name(), "unknown");
        assert_eq!(OwnerTag::DMA.name(), "dma");
        assert_eq!(OwnerTag::RESERVE.name(), "reserve");
        assert_eq!(OwnerTag::from_name("bogus"), None);
    }
}
