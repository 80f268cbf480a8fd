//! LRU lists and page reclaim (cf. `mm/vmscan.c`, `mm/swap.c`).
//!
//! Each zone keeps an *inactive* and an *active* list of file pages
//! (Pagezone's page cache: clean, so reclaim never writes anything back).
//! The lists are intrusive in `mem_map`, through the same `prev`/`next`
//! links a free block uses (a frame is never both, as `page->lru` serves
//! both in Linux), with `PG_lru`, `PG_active` and `PG_referenced` as flags.
//!
//! Aging is Linux's second chance: a new page enters the inactive list
//! (`folio_add_lru()`); an access sets `referenced`, and a second access of
//! an inactive page activates it (`folio_mark_accessed()`). Reclaim first
//! refills the inactive list from the tail of the active one while the
//! inactive list is too small (`inactive_is_low()`, `shrink_active_list()`
//! — moved pages lose `referenced`), then scans the inactive tail
//! (`shrink_inactive_list()`): a referenced page is activated again, an
//! unreferenced one is taken off the LRU and handed to the caller, who
//! owns the mapping from frame to file page, drops it and frees the frame.
//! Only order-0 pages are on the LRU.

use crate::page::{NIL, PageFlags};
use crate::page_alloc::PageAlloc;
use crate::page_alloc::int_sqrt;
use crate::types::Pfn;
use crate::vmstat::VmEvent;
use crate::zone::{NR_ZONES, ZoneType};

/// Pages one reclaim batch scans at most (cf. `SWAP_CLUSTER_MAX`).
pub const SWAP_CLUSTER_MAX: usize = 32;

/// One intrusive list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LruList {
    head: u32,
    tail: u32,
    pub nr: u64,
}

impl LruList {
    pub const EMPTY: LruList = LruList {
        head: NIL,
        tail: NIL,
        nr: 0,
    };
}

/// A zone's file LRU (cf. `struct lruvec`, file half).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lruvec {
    pub inactive: LruList,
    pub active: LruList,
}

impl Lruvec {
    pub const EMPTY: Lruvec = Lruvec {
        inactive: LruList::EMPTY,
        active: LruList::EMPTY,
    };
}

/// Who reclaims, for the counters (`pgscan_kswapd` vs `pgscan_direct`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaimer {
    Kswapd,
    Direct,
}

/// Why an LRU operation was refused (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LruError {
    /// Not an allocated order-0 page.
    NotOrderZero,
    /// Already on an LRU list.
    OnLru,
    /// Not on an LRU list.
    NotOnLru,
}

/// What one reclaim pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Inactive pages looked at.
    pub scanned: u64,
    /// Pages taken off the LRU for the caller to drop.
    pub isolated: u64,
    /// Pages moved active → inactive.
    pub deactivated: u64,
    /// Pages moved inactive → active (referenced: second chance).
    pub activated: u64,
}

impl PageAlloc<'_> {
    fn lru_list(&mut self, zi: usize, active: bool) -> &mut LruList {
        let v = &mut self.lru[zi];
        if active {
            &mut v.active
        } else {
            &mut v.inactive
        }
    }

    /// Link `pfn` at the head of one list.
    fn lru_link_head(&mut self, pfn: u32, zi: usize, active: bool) {
        let head = self.lru_list(zi, active).head;
        {
            let p = &mut self.mem_map[pfn as usize];
            p.prev = NIL;
            p.next = head;
            p.flags.insert(PageFlags::LRU);
            if active {
                p.flags.insert(PageFlags::ACTIVE);
            } else {
                p.flags.remove(PageFlags::ACTIVE);
            }
        }
        if head != NIL {
            self.mem_map[head as usize].prev = pfn;
        }
        let l = self.lru_list(zi, active);
        l.head = pfn;
        if l.tail == NIL {
            l.tail = pfn;
        }
        l.nr += 1;
    }

    /// Unlink `pfn` from whichever list it is on.
    fn lru_unlink(&mut self, pfn: u32) {
        let (prev, next, zi, active) = {
            let p = &mut self.mem_map[pfn as usize];
            let links = (
                p.prev,
                p.next,
                p.zone as usize,
                p.flags.contains(PageFlags::ACTIVE),
            );
            p.prev = NIL;
            p.next = NIL;
            p.flags.remove(PageFlags::LRU.union(PageFlags::ACTIVE));
            links
        };
        if prev != NIL {
            self.mem_map[prev as usize].next = next;
        }
        if next != NIL {
            self.mem_map[next as usize].prev = prev;
        }
        let l = self.lru_list(zi, active);
        if l.head == pfn {
            l.head = next;
        }
        if l.tail == pfn {
            l.tail = prev;
        }
        l.nr -= 1;
    }

    /// `folio_add_lru()`: an allocated order-0 page joins its zone's
    /// inactive list, unreferenced.
    pub fn lru_add(&mut self, pfn: Pfn) -> Result<(), LruError> {
        let p = self.page(pfn).ok_or(LruError::NotOrderZero)?;
        if !p.is_head() || p.order != 0 {
            return Err(LruError::NotOrderZero);
        }
        if p.flags.contains(PageFlags::LRU) {
            return Err(LruError::OnLru);
        }
        let zi = p.zone as usize;
        self.mem_map[pfn.index()]
            .flags
            .remove(PageFlags::REFERENCED);
        self.lru_link_head(pfn.0 as u32, zi, false);
        Ok(())
    }

    /// Take `pfn` off the LRU (before it is freed or dropped).
    pub fn lru_del(&mut self, pfn: Pfn) -> Result<(), LruError> {
        let p = self.page(pfn).ok_or(LruError::NotOnLru)?;
        if !p.flags.contains(PageFlags::LRU) {
            return Err(LruError::NotOnLru);
        }
        self.lru_unlink(pfn.0 as u32);
        self.mem_map[pfn.index()]
            .flags
            .remove(PageFlags::REFERENCED);
        Ok(())
    }

    /// Put `dst` where `src` is on the LRU, with its active and referenced
    /// state, and take `src` off (cf. `folio_migrate_flags()` plus the LRU
    /// putback of the new folio in migration). Both are in one zone.
    pub fn lru_replace(&mut self, src: Pfn, dst: Pfn) -> Result<(), LruError> {
        let p = self.page(src).ok_or(LruError::NotOnLru)?;
        if !p.flags.contains(PageFlags::LRU) {
            return Err(LruError::NotOnLru);
        }
        if self
            .page(dst)
            .is_none_or(|d| d.flags.contains(PageFlags::LRU))
        {
            return Err(LruError::OnLru);
        }
        let keep = PageFlags::LRU
            .union(PageFlags::ACTIVE)
            .union(PageFlags::REFERENCED);
        let (prev, next, flags, zi) = (p.prev, p.next, p.flags, p.zone as usize);
        {
            let s = &mut self.mem_map[src.index()];
            s.flags.remove(keep);
            s.prev = NIL;
            s.next = NIL;
        }
        {
            let d = &mut self.mem_map[dst.index()];
            d.flags.remove(keep);
            d.flags.insert(PageFlags(flags.0 & keep.0));
            d.prev = prev;
            d.next = next;
        }
        let (s, d) = (src.0 as u32, dst.0 as u32);
        if prev != NIL {
            self.mem_map[prev as usize].next = d;
        }
        if next != NIL {
            self.mem_map[next as usize].prev = d;
        }
        let l = self.lru_list(zi, flags.contains(PageFlags::ACTIVE));
        if l.head == s {
            l.head = d;
        }
        if l.tail == s {
            l.tail = d;
        }
        Ok(())
    }

    /// `folio_mark_accessed()`: unreferenced → referenced; referenced and
    /// inactive → active (and unreferenced again); anything else stays.
    pub fn mark_page_accessed(&mut self, pfn: Pfn) -> Result<(), LruError> {
        let p = self.page(pfn).ok_or(LruError::NotOnLru)?;
        if !p.flags.contains(PageFlags::LRU) {
            return Err(LruError::NotOnLru);
        }
        let (referenced, active, zi) = (
            p.flags.contains(PageFlags::REFERENCED),
            p.flags.contains(PageFlags::ACTIVE),
            p.zone as usize,
        );
        if referenced && !active {
            self.lru_unlink(pfn.0 as u32);
            self.lru_link_head(pfn.0 as u32, zi, true);
            self.mem_map[pfn.index()]
                .flags
                .remove(PageFlags::REFERENCED);
            self.vm_events_mut().inc(VmEvent::PgActivate);
        } else if !referenced {
            self.mem_map[pfn.index()]
                .flags
                .insert(PageFlags::REFERENCED);
        }
        Ok(())
    }

    /// The zone's LRU sizes `(inactive, active)`.
    pub fn lru_sizes(&self, zone: ZoneType) -> (u64, u64) {
        let v = &self.lru[zone.index()];
        (v.inactive.nr, v.active.nr)
    }

    /// Pages on every LRU list.
    pub fn lru_pages(&self) -> u64 {
        self.lru.iter().map(|v| v.inactive.nr + v.active.nr).sum()
    }

    /// `inactive_is_low()` for file pages: the inactive list should hold
    /// at least `active / inactive_ratio`, where the ratio is
    /// `int_sqrt(10 * GB of the list)` (1 below 1 GiB).
    fn inactive_is_low(&self, zi: usize) -> bool {
        let v = &self.lru[zi];
        let gb = (v.inactive.nr + v.active.nr) >> (30 - 12);
        let ratio = if gb > 0 { int_sqrt(10 * gb) } else { 1 };
        v.inactive.nr * ratio < v.active.nr
    }

    /// `shrink_active_list()`: move up to `nr` pages from the active
    /// tail to the inactive head, clearing `referenced` (file pages are
    /// deactivated whatever their references, as Linux does for
    /// non-executable file pages).
    fn shrink_active_list(&mut self, zi: usize, nr: usize, stats: &mut ReclaimStats) {
        for _ in 0..nr {
            let tail = self.lru[zi].active.tail;
            if tail == NIL {
                break;
            }
            self.lru_unlink(tail);
            self.mem_map[tail as usize]
                .flags
                .remove(PageFlags::REFERENCED);
            self.lru_link_head(tail, zi, false);
            stats.deactivated += 1;
        }
        self.vm_events_mut()
            .count(VmEvent::PgDeactivate, stats.deactivated);
        self.vm_events_mut()
            .count(VmEvent::PgRefill, stats.deactivated);
    }

    /// `shrink_inactive_list()`: scan up to `nr_to_scan` pages from the
    /// inactive tail; referenced ones are activated (second chance),
    /// unreferenced ones are taken off the LRU into `out` (at most its
    /// length) for the caller to drop and free.
    fn shrink_inactive_list(
        &mut self,
        zi: usize,
        nr_to_scan: usize,
        out: &mut [Pfn],
        taken: &mut usize,
        stats: &mut ReclaimStats,
    ) {
        for _ in 0..nr_to_scan {
            if *taken == out.len() {
                break;
            }
            let tail = self.lru[zi].inactive.tail;
            if tail == NIL {
                break;
            }
            stats.scanned += 1;
            self.lru_unlink(tail);
            let p = &mut self.mem_map[tail as usize];
            if p.flags.contains(PageFlags::REFERENCED) {
                p.flags.remove(PageFlags::REFERENCED);
                self.lru_link_head(tail, zi, true);
                stats.activated += 1;
                self.vm_events_mut().inc(VmEvent::PgActivate);
            } else {
                out[*taken] = Pfn(u64::from(tail));
                *taken += 1;
                stats.isolated += 1;
            }
        }
    }

    /// One reclaim pass over the zones up to `highest` (cf. `shrink_node()`
    /// → `shrink_lruvec()`): refill inactive lists that are too small, then
    /// isolate up to `out.len()` unreferenced inactive pages, highest zone
    /// first. Returns how many of `out` are filled and the pass's figures;
    /// counts `pgscan_*` here and leaves `pgsteal_*` to
    /// [`PageAlloc::count_steal`] once the caller has freed the pages.
    pub fn shrink_lru(
        &mut self,
        highest: ZoneType,
        who: Reclaimer,
        out: &mut [Pfn],
    ) -> (usize, ReclaimStats) {
        let mut stats = ReclaimStats::default();
        let mut taken = 0;
        for zi in (0..=highest.index()).rev() {
            if self.inactive_is_low(zi) {
                let active = self.lru[zi].active.nr as usize;
                self.shrink_active_list(zi, active.min(SWAP_CLUSTER_MAX * 4), &mut stats);
            }
            // Two rounds: the second finds what the first activated or
            // deactivated (cf. reclaim priorities rising).
            for _ in 0..2 {
                let scan = (self.lru[zi].inactive.nr as usize).min(out.len() * 4);
                self.shrink_inactive_list(zi, scan, out, &mut taken, &mut stats);
                if taken == out.len() {
                    break;
                }
                if self.lru[zi].inactive.nr == 0 && self.lru[zi].active.nr > 0 {
                    let active = self.lru[zi].active.nr as usize;
                    self.shrink_active_list(zi, active.min(out.len()), &mut stats);
                }
            }
            if taken == out.len() {
                break;
            }
        }
        let scan = match who {
            Reclaimer::Kswapd => VmEvent::PgScanKswapd,
            Reclaimer::Direct => VmEvent::PgScanDirect,
        };
        self.vm_events_mut().count(scan, stats.scanned);
        self.vm_events_mut()
            .count(VmEvent::PgScanFile, stats.scanned);
        (taken, stats)
    }

    /// `pgsteal_*`: pages reclaim actually freed.
    pub fn count_steal(&mut self, who: Reclaimer, nr: u64) {
        let steal = match who {
            Reclaimer::Kswapd => VmEvent::PgStealKswapd,
            Reclaimer::Direct => VmEvent::PgStealDirect,
        };
        self.vm_events_mut().count(steal, nr);
        self.vm_events_mut().count(VmEvent::PgStealFile, nr);
    }

    /// Walk every LRU list and check links, flags, counts and that every
    /// page on them is an allocated order-0 page of the list's zone.
    pub fn check_lru(&self) -> Result<(), &'static str> {
        for (zi, v) in self.lru.iter().enumerate() {
            for (list, active) in [(&v.inactive, false), (&v.active, true)] {
                let (mut n, mut prev, mut cur) = (0u64, NIL, list.head);
                while cur != NIL {
                    if n >= list.nr {
                        return Err("LRU list longer than its count (or cyclic)");
                    }
                    let p = &self.mem_map[cur as usize];
                    if !p.flags.contains(PageFlags::LRU)
                        || p.flags.contains(PageFlags::ACTIVE) != active
                    {
                        return Err("LRU page flags do not match its list");
                    }
                    if !p.is_head() || p.order != 0 || p.zone as usize != zi {
                        return Err("LRU page is not an allocated order-0 page of the zone");
                    }
                    if p.prev != prev {
                        return Err("LRU back link broken");
                    }
                    n += 1;
                    prev = cur;
                    cur = p.next;
                }
                if n != list.nr || list.tail != prev {
                    return Err("LRU count or tail does not match the list");
                }
            }
        }
        let flagged = self
            .mem_map
            .iter()
            .filter(|p| p.flags.contains(PageFlags::LRU))
            .count() as u64;
        if flagged != self.lru_pages() {
            return Err("PG_lru pages missing from the lists");
        }
        Ok(())
    }
}

const _: () = assert!(NR_ZONES == 4);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gfp::GfpFlags;
    use crate::page::{OwnerTag, Page};
    use crate::types::Order;
    use std::vec::Vec;

    fn pa(mem_map: &mut [Page]) -> PageAlloc<'_> {
        crate::page_alloc::test_machine_64m(mem_map)
    }

    fn page(pa: &mut PageAlloc<'_>) -> Pfn {
        let pfn = pa
            .alloc_pages(GfpFlags::GFP_HIGHUSER, Order::ZERO, OwnerTag::PAGECACHE)
            .unwrap();
        pa.lru_add(pfn).unwrap();
        pfn
    }

    #[test]
    fn new_pages_are_inactive_and_reclaimed_oldest_first() {
        let mut mem_map = std::vec![Page::new_reserved(); (64 << 20) >> 12];
        let mut pa = pa(&mut mem_map);
        let pages: Vec<Pfn> = (0..5).map(|_| page(&mut pa)).collect();
        assert_eq!(pa.lru_sizes(ZoneType::HighMem), (5, 0));
        pa.check_lru().unwrap();
        let mut out = [Pfn(0); 2];
        let (n, stats) = pa.shrink_lru(ZoneType::HighMem, Reclaimer::Direct, &mut out);
        assert_eq!(n, 2);
        assert_eq!(out, [pages[0], pages[1]], "the tail is the oldest");
        assert_eq!((stats.scanned, stats.isolated), (2, 2));
        assert_eq!(pa.lru_sizes(ZoneType::HighMem), (3, 0));
        assert!(!pa.page(pages[0]).unwrap().flags.contains(PageFlags::LRU));
        pa.check_lru().unwrap();
        assert_eq!(pa.vm_events().get(VmEvent::PgScanDirect), 2);
    }

    #[test]
    fn second_chance_and_activation() {
        let mut mem_map = std::vec![Page::new_reserved(); (64 << 20) >> 12];
        let mut pa = pa(&mut mem_map);
        let pages: Vec<Pfn> = (0..4).map(|_| page(&mut pa)).collect();
        // One access: referenced, still inactive. Two: active.
        pa.mark_page_accessed(pages[0]).unwrap();
        assert_eq!(pa.lru_sizes(ZoneType::HighMem), (4, 0));
        pa.mark_page_accessed(pages[1]).unwrap();
        pa.mark_page_accessed(pages[1]).unwrap();
        assert_eq!(pa.lru_sizes(ZoneType::HighMem), (3, 1));
        pa.check_lru().unwrap();
        // Reclaim two: pages[0] (referenced) gets its second chance and is
        // activated; pages[2] and pages[3] go.
        let mut out = [Pfn(0); 2];
        let (n, stats) = pa.shrink_lru(ZoneType::HighMem, Reclaimer::Kswapd, &mut out);
        assert_eq!(n, 2);
        assert_eq!(out, [pages[2], pages[3]]);
        assert_eq!((stats.activated, stats.scanned), (1, 3));
        let first_scan = stats.scanned;
        assert_eq!(pa.lru_sizes(ZoneType::HighMem), (0, 2));
        pa.check_lru().unwrap();
        // Only active pages left: reclaim deactivates (clearing referenced)
        // and then takes them.
        let mut out = [Pfn(0); 1];
        let (n, stats) = pa.shrink_lru(ZoneType::HighMem, Reclaimer::Kswapd, &mut out);
        assert_eq!((n, stats.deactivated > 0), (1, true));
        pa.check_lru().unwrap();
        assert_eq!(
            pa.vm_events().get(VmEvent::PgScanKswapd),
            first_scan + stats.scanned
        );
    }

    #[test]
    fn freeing_an_lru_page_takes_it_off_and_errors_change_nothing() {
        let mut mem_map = std::vec![Page::new_reserved(); (64 << 20) >> 12];
        let mut pa = pa(&mut mem_map);
        let a = page(&mut pa);
        let b = page(&mut pa);
        assert_eq!(pa.lru_add(a), Err(LruError::OnLru));
        let big = pa
            .alloc_pages(
                GfpFlags::GFP_HIGHUSER,
                Order::new(1).unwrap(),
                OwnerTag::API,
            )
            .unwrap();
        assert_eq!(pa.lru_add(big), Err(LruError::NotOrderZero));
        pa.free_pages(a, Order::ZERO).unwrap();
        assert_eq!(pa.lru_sizes(ZoneType::HighMem), (1, 0));
        pa.check_lru().unwrap();
        pa.check_invariants().unwrap();
        assert_eq!(pa.mark_page_accessed(a), Err(LruError::NotOnLru));
        pa.lru_del(b).unwrap();
        assert_eq!(pa.lru_pages(), 0);
        pa.free_pages(b, Order::ZERO).unwrap();
        pa.free_pages(big, Order::new(1).unwrap()).unwrap();
        pa.check_lru().unwrap();
        pa.check_invariants().unwrap();
    }
}
