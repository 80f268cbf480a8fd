//! The buddy allocator's consistency walk (cf. `CONFIG_DEBUG_VM`:
//! `check_new_page()`, `free_page_is_bad()`, `bad_page()`), over every
//! free list and every descriptor at once. It reports every problem to a
//! sink and carries on; [`PageAlloc::check_invariants`] is its first
//! problem. `/api/selfcheck` reaches it through
//! [`crate::selfcheck::check_buddy`].

use super::PageAlloc;
use crate::page::{LIST_END, NIL, OwnerTag, PageFlags, is_pfn_link};
use crate::selfcheck::{BUDDY, Checked, Problem};
use crate::types::{MAX_ORDER, Pfn};
use crate::zone::{NR_ZONES, ZoneType};

/// Flags no frame inside a free block (past its head) may carry.
const NOT_FREE: PageFlags = PageFlags::BUDDY
    .union(PageFlags::PCP)
    .union(PageFlags::HEAD)
    .union(PageFlags::TAIL)
    .union(PageFlags::RESERVED)
    .union(PageFlags::NOMAP)
    .union(PageFlags::SLAB);

impl PageAlloc<'_> {
    /// Recount everything from scratch and compare with the counters:
    /// every free-list entry is a BUDDY head of the list's order, naturally
    /// aligned, inside its zone, with consistent back links; `nr_free` and
    /// `free_pages` match the lists; no frame of a free block is anything but
    /// free (nor owned, nor referenced); every managed frame is either in a
    /// free block or allocated; and no BUDDY head is missing from the lists.
    /// O(max_pfn); for tests and the in-guest selftest. The first problem
    /// of [`PageAlloc::check_each`].
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

    /// The walk behind [`PageAlloc::check_invariants`], reporting every
    /// problem (with the PFN it concerns) and counting what it walked.
    pub(crate) fn check_each(&self, sink: &mut dyn FnMut(Problem), checked: &mut Checked) {
        let mut bad = |what, pfn: u64| sink(Problem::new(BUDDY, what, Some(pfn)));
        let listed = self.check_free_lists(&mut bad, checked);
        let pcp_listed = self.check_pcp_lists(&mut bad, checked);
        // The fast paths' table must say what its inputs say now: a stale
        // one would pass a watermark or take a free the general path
        // would not.
        if self.fast_paths_stale() {
            bad(
                "fast-path table stale (an input changed without a refresh)",
                0,
            );
        }
        self.check_mem_map(listed, pcp_listed, &mut bad, checked);
    }

    /// Walks every free list; returns the number of blocks listed.
    fn check_free_lists(
        &self,
        bad: &mut dyn FnMut(&'static str, u64),
        checked: &mut Checked,
    ) -> u64 {
        let max = self.layout.max_pfn.0;
        let mut buddy_heads_listed = 0u64;
        for (zi, zone) in self.zones.iter().enumerate() {
            let mut free_pages = 0u64;
            let mut free_cma = 0u64;
            for (order, area) in zone.free_area.iter().enumerate() {
                let mut cur = area.free_list[crate::zone::MigrateType::Cma.index()].head;
                let mut n = 0u64;
                while is_pfn_link(cur) && n <= area.nr_free {
                    free_cma += 1 << order;
                    n += 1;
                    cur = self.mem_map[cur as usize].next;
                }
                let mut count = 0u64;
                // A walk cut short (cycle, wild link) leaves the counts unknown.
                let mut complete = true;
                for (mt, list) in area.free_list.iter().enumerate() {
                    // The search reads the mask, not the lists.
                    let masked = zone.free_area_mask[mt] & (1 << order) != 0;
                    if masked != (list.head != NIL) {
                        bad(
                            "free_area_mask bit disagrees with its free list",
                            list.head as u64,
                        );
                    }
                    let end = LIST_END + mt as u32;
                    let mut prev = end;
                    let mut cur = if list.head == NIL { end } else { list.head };
                    while cur != end {
                        let pfn = cur as u64;
                        if !is_pfn_link(cur) {
                            bad("free list ends in another list's marker", pfn);
                            complete = false;
                            break;
                        }
                        if count >= area.nr_free {
                            bad("free list longer than nr_free (or cyclic)", pfn);
                            complete = false;
                            break;
                        }
                        if pfn >= max {
                            bad("free list entry past max_pfn", pfn);
                            complete = false;
                            break;
                        }
                        let p = &self.mem_map[pfn as usize];
                        if !p.is_buddy() || p.order as usize != order {
                            bad(
                                "free list entry is not a BUDDY head of the list's order",
                                pfn,
                            );
                            complete = false;
                            break;
                        }
                        if p.zone as usize != zi {
                            bad("free list entry in the wrong zone", pfn);
                        }
                        let end = pfn + (1 << order);
                        if pfn & ((1 << order) - 1) != 0 {
                            bad("free block not aligned to its order", pfn);
                        }
                        if pfn < zone.start_pfn.0 || end > zone.end_pfn.0 {
                            bad("free block outside its zone", pfn);
                        }
                        if p.prev != prev {
                            bad("free list back link broken", pfn);
                        }
                        if p.owner != OwnerTag::NONE || p.refcount != 0 {
                            // cf. page_bad_reason(): "nonzero _refcount", "non-NULL mapping"
                            bad("free frame has an owner or a refcount", pfn);
                        }
                        for t in (pfn + 1)..end.min(max) {
                            let q = &self.mem_map[t as usize];
                            if q.flags.intersects(NOT_FREE) || q.zone as usize != zi {
                                bad("frame inside a free block is not free", t);
                            } else if q.owner != OwnerTag::NONE || q.refcount != 0 {
                                bad("free frame has an owner or a refcount", t);
                            }
                        }
                        count += 1;
                        free_pages += 1 << order;
                        prev = cur;
                        cur = p.next;
                    }
                    if !complete {
                        break;
                    }
                    let tail = if list.tail == NIL { end } else { list.tail };
                    if tail != prev {
                        bad("free list tail pointer broken", list.tail as u64);
                    }
                }
                checked.free_blocks += count;
                checked.free_pages += count << order;
                buddy_heads_listed += count;
                if complete && count != area.nr_free {
                    bad("nr_free does not match the free lists", zone.start_pfn.0);
                }
            }
            if free_cma != zone.nr_free_cma {
                bad(
                    "nr_free_cma does not match the CMA free lists",
                    zone.start_pfn.0,
                );
            }
            if free_pages != zone.free_pages {
                bad(
                    "zone free_pages does not match the free lists",
                    zone.start_pfn.0,
                );
            }
            if zone.free_pages > zone.managed_pages || zone.managed_pages > zone.present_pages {
                bad("free <= managed <= present violated", zone.start_pfn.0);
            }
        }
        buddy_heads_listed
    }

    /// Walks every per-CPU list: each entry a PCP head of the list's order,
    /// aligned, in the zone, its other frames free; `count` matches; lists
    /// only where `high` allows them. Returns the number of blocks listed.
    fn check_pcp_lists(
        &self,
        bad: &mut dyn FnMut(&'static str, u64),
        checked: &mut Checked,
    ) -> u64 {
        use super::pcp::{NR_PCP_LISTS, pindex_to_order};
        let max = self.layout.max_pfn.0;
        let mut listed = 0u64;
        for (zi, zone) in self.zones.iter().enumerate() {
            for pcp in &zone.pcp {
                let mut pages = 0u64;
                for pindex in 0..NR_PCP_LISTS {
                    let order = pindex_to_order(pindex);
                    let mut prev = NIL;
                    let mut cur = pcp.lists[pindex].head;
                    let mut n = 0u64;
                    while cur != NIL {
                        let pfn = u64::from(cur);
                        if pfn >= max || n > zone.managed_pages {
                            bad("per-CPU list entry past max_pfn (or cyclic)", pfn);
                            break;
                        }
                        let p = &self.mem_map[pfn as usize];
                        if !p.is_pcp() || p.is_buddy() || p.order as usize != order {
                            bad(
                                "per-CPU list entry is not a PCP head of the list's order",
                                pfn,
                            );
                            break;
                        }
                        let end = pfn + (1 << order);
                        if p.zone as usize != zi || pfn < zone.start_pfn.0 || end > zone.end_pfn.0 {
                            bad("per-CPU list entry outside its zone", pfn);
                        }
                        if pfn & ((1 << order) - 1) != 0 {
                            bad("per-CPU block not aligned to its order", pfn);
                        }
                        // The first block's `prev` is not kept (see the
                        // list functions in `smp`).
                        if p.prev != prev && prev != NIL {
                            bad("per-CPU list back link broken", pfn);
                        }
                        if p.owner != OwnerTag::NONE || p.refcount != 0 {
                            bad("free frame has an owner or a refcount", pfn);
                        }
                        for t in (pfn + 1)..end.min(max) {
                            let q = &self.mem_map[t as usize];
                            if q.flags.intersects(NOT_FREE) || q.zone as usize != zi {
                                bad("frame inside a per-CPU block is not free", t);
                            }
                        }
                        n += 1;
                        pages += 1 << order;
                        prev = cur;
                        cur = p.next;
                    }
                    // Nor an empty list's `tail`.
                    if prev != NIL && pcp.lists[pindex].tail != prev {
                        bad(
                            "per-CPU list tail pointer broken",
                            u64::from(pcp.lists[pindex].tail),
                        );
                    }
                    listed += n;
                }
                checked.free_pages += pages;
                if pages != u64::from(pcp.count) {
                    bad(
                        "pcp count does not match the per-CPU lists",
                        zone.start_pfn.0,
                    );
                }
                if pcp.high == 0 && pcp.count > 0 {
                    bad("pages on a per-CPU list that is off", zone.start_pfn.0);
                }
            }
        }
        listed
    }

    /// Whole-map pass: zone links, present/managed recount, block shapes,
    /// orphan BUDDY and PCP heads.
    fn check_mem_map(
        &self,
        buddy_heads_listed: u64,
        pcp_heads_listed: u64,
        bad: &mut dyn FnMut(&'static str, u64),
        checked: &mut Checked,
    ) {
        let max = self.layout.max_pfn.0;
        let mut present = [0u64; NR_ZONES];
        let mut managed = [0u64; NR_ZONES];
        let mut buddy_heads = 0u64;
        let mut pcp_heads = 0u64;
        let mut in_free_block = 0u64; // frames left in the current free block
        let mut in_alloc_block = 0u64; // frames left in the current allocated block
        let mut head_owner = OwnerTag::NONE;
        let mut head_compound = false;
        for pfn in 0..max as usize {
            let pfn_u = pfn as u64;
            // A descriptor deferred init has not written reads as its
            // placeholder, as everywhere.
            let p = self
                .deferred_placeholder(Pfn(pfn_u))
                .unwrap_or(&self.mem_map[pfn]);
            checked.pages += 1;
            let zi = p.zone as usize;
            if zi >= NR_ZONES || !self.zones[zi].spans(Pfn(pfn_u)) {
                bad("page zone link does not match the layout", pfn_u);
                in_free_block = in_free_block.saturating_sub(1);
                in_alloc_block = in_alloc_block.saturating_sub(1);
                continue;
            }
            if p.is_highmem() != (zi == ZoneType::HighMem.index()) {
                bad("HIGHMEM flag does not match the zone", pfn_u);
            }
            if !p.is_nomap() {
                present[zi] += 1;
            }
            if p.is_nomap() && !p.is_reserved() {
                bad("non-RAM frame is not reserved", pfn_u);
            }
            if p.is_reserved() {
                checked.reserved_pages += 1;
                if p.flags.intersects(
                    PageFlags::BUDDY
                        .union(PageFlags::PCP)
                        .union(PageFlags::HEAD)
                        .union(PageFlags::TAIL),
                ) {
                    bad("reserved frame is in the buddy allocator", pfn_u);
                }
                if in_free_block > 0 || in_alloc_block > 0 {
                    bad("reserved frame inside a block", pfn_u);
                }
            } else {
                managed[zi] += 1;
                if p.is_buddy() {
                    buddy_heads += 1;
                    if in_free_block > 0 || in_alloc_block > 0 {
                        bad("free block head inside another block", pfn_u);
                    }
                    in_free_block = 1 << p.order.min(MAX_ORDER as u8);
                    in_alloc_block = 0;
                } else if p.is_pcp() {
                    pcp_heads += 1;
                    if in_free_block > 0 || in_alloc_block > 0 {
                        bad("per-CPU block head inside another block", pfn_u);
                    }
                    in_free_block = 1 << p.order.min(MAX_ORDER as u8);
                    in_alloc_block = 0;
                } else if p.is_head() {
                    checked.allocated_blocks += 1;
                    if in_free_block > 0 || in_alloc_block > 0 {
                        bad("allocated block head inside another block", pfn_u);
                    }
                    if p.order as usize > MAX_ORDER || pfn_u & ((1 << p.order) - 1) != 0 {
                        bad("allocated block misaligned", pfn_u);
                    }
                    if p.refcount == 0 {
                        // cf. bad_page(): an allocated page with no user.
                        bad("allocated block head with refcount 0", pfn_u);
                    }
                    in_alloc_block = 1 << p.order.min(MAX_ORDER as u8);
                    in_free_block = 0;
                    head_owner = p.owner;
                    head_compound = p.is_compound();
                } else if p.is_tail() {
                    if in_alloc_block == 0 {
                        bad("tail frame outside an allocated block", pfn_u);
                    } else if !head_compound {
                        bad("TAIL frame in a block that is not compound", pfn_u);
                    } else if p.owner != head_owner {
                        bad("tail frame owner differs from its head", pfn_u);
                    }
                } else if in_alloc_block > 0 {
                    if head_compound {
                        bad("frame of a compound block not marked TAIL", pfn_u);
                    } else if p.owner != OwnerTag::NONE || p.refcount != 0 || p.is_slab() {
                        // cf. free_tail_pages_check() for the compound case.
                        bad("frame of a non-compound block carries metadata", pfn_u);
                    }
                } else if in_free_block == 0 {
                    bad("managed frame is neither free nor allocated", pfn_u);
                }
                if p.is_slab() && !p.is_allocated() {
                    bad("SLAB flag on a frame that is not allocated", pfn_u);
                }
            }
            in_free_block = in_free_block.saturating_sub(1);
            in_alloc_block = in_alloc_block.saturating_sub(1);
        }
        if in_free_block > 0 || in_alloc_block > 0 {
            bad("block runs past max_pfn", max);
        }
        if buddy_heads != buddy_heads_listed {
            bad("BUDDY head missing from the free lists", max);
        }
        if pcp_heads != pcp_heads_listed {
            bad("PCP head missing from the per-CPU lists", max);
        }
        for zi in 0..NR_ZONES {
            let start = self.zones[zi].start_pfn.0;
            if present[zi] != self.zones[zi].present_pages {
                bad("present_pages does not match mem_map", start);
            }
            if managed[zi] != self.zones[zi].managed_pages {
                bad("managed_pages does not match mem_map", start);
            }
        }
    }

    /// The descriptors, writable: for tests that corrupt `mem_map` behind
    /// the allocator's back.
    #[cfg(test)]
    pub(crate) fn mem_map_mut(&mut self) -> &mut [crate::page::Page] {
        &mut self.mem_map
    }
}
