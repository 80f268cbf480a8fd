//! External fragmentation indices (cf. `mm/vmstat.c`: `fill_contig_page_info()`,
//! `__fragmentation_index()`, `unusable_free_index()`, and the debugfs files
//! `extfrag/extfrag_index` and `extfrag/unusable_index`).
//!
//! For an allocation of order `o` in a zone:
//! - the **unusable free index** is the share of free memory that cannot
//!   serve it (in blocks smaller than `2^o`): 0 = none, 1 = all of it;
//! - the **fragmentation index** says, for a request that would fail,
//!   whether it fails for lack of memory (towards 0) or because the free
//!   memory is in pieces (towards 1) — compaction only helps in the second
//!   case (`sysctl_extfrag_threshold`, default 500). A request that would
//!   succeed reads -1 (`-1000` in thousandths).

use core::fmt::{self, Write};

use super::{NODE_ID, populated};
use crate::page_alloc::PageAlloc;
use crate::types::NR_ORDERS;
use crate::zone::Zone;

/// Free memory of a zone as seen by one request order (cf. `struct
/// contig_page_info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContigPageInfo {
    /// Free base pages.
    pub free_pages: u64,
    /// Free blocks of any order.
    pub free_blocks_total: u64,
    /// Free blocks of the request's size that the free blocks of at least
    /// that order could be cut into.
    pub free_blocks_suitable: u64,
}

/// cf. `fill_contig_page_info()`: from the zone's free block counts.
pub fn fill_contig_page_info(zone: &Zone, suitable_order: usize) -> ContigPageInfo {
    let mut info = ContigPageInfo::default();
    for (order, area) in zone.free_area.iter().enumerate() {
        let blocks = area.nr_free;
        info.free_blocks_total += blocks;
        info.free_pages += blocks << order;
        if order >= suitable_order {
            info.free_blocks_suitable += blocks << (order - suitable_order);
        }
    }
    info
}

/// cf. `__fragmentation_index()`, in thousandths: -1000 when a block of
/// `order` is free; else `1000 - (1000 + free_pages·1000/2^order) /
/// free_blocks_total`; 0 with no free block at all.
pub fn fragmentation_index_of(order: usize, info: &ContigPageInfo) -> i64 {
    if order >= NR_ORDERS || info.free_blocks_total == 0 {
        return 0;
    }
    if info.free_blocks_suitable != 0 {
        return -1000;
    }
    let requested = 1u64 << order;
    1000 - ((1000 + info.free_pages * 1000 / requested) / info.free_blocks_total) as i64
}

/// cf. `fragmentation_index()`: of a zone, for `order`.
pub fn fragmentation_index(zone: &Zone, order: usize) -> i64 {
    fragmentation_index_of(order, &fill_contig_page_info(zone, order))
}

/// cf. `unusable_free_index()`, in thousandths: the share of free pages in
/// blocks too small for `order`; 1000 when nothing is free.
pub fn unusable_free_index(order: usize, info: &ContigPageInfo) -> i64 {
    if info.free_pages == 0 {
        return 1000;
    }
    ((info.free_pages - (info.free_blocks_suitable << order)) * 1000 / info.free_pages) as i64
}

/// `/sys/kernel/debug/extfrag/unusable_index` (cf. `unusable_show_print()`):
/// `Node 0, zone %8s ` then `%d.%03d ` per order, populated zones.
pub fn unusable_index(pa: &PageAlloc<'_>, w: &mut impl Write) -> fmt::Result {
    for zone in pa.zones().iter().filter(|z| populated(z)) {
        write!(w, "Node {}, zone {:>8} ", NODE_ID, zone.name())?;
        for order in 0..NR_ORDERS {
            let index = unusable_free_index(order, &fill_contig_page_info(zone, order));
            write!(w, "{}.{:03} ", index / 1000, index % 1000)?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

/// `/sys/kernel/debug/extfrag/extfrag_index` (cf. `extfrag_show_print()`):
/// `Node 0, zone %8s ` then `%2d.%03d ` per order (`-1.000` where a
/// request would succeed), populated zones.
pub fn extfrag_index(pa: &PageAlloc<'_>, w: &mut impl Write) -> fmt::Result {
    for zone in pa.zones().iter().filter(|z| populated(z)) {
        write!(w, "Node {}, zone {:>8} ", NODE_ID, zone.name())?;
        for order in 0..NR_ORDERS {
            let index = fragmentation_index(zone, order);
            // C's `/` and `%` truncate toward zero, as Rust's do; a
            // negative index other than -1000 prints as Linux prints it
            // (`0.-500`), byte for byte.
            write!(w, "{:2}.{:03} ", index / 1000, index % 1000)?;
        }
        w.write_char('\n')?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::string::String;

    use super::*;
    use crate::types::Pfn;
    use crate::zone::{FreeArea, ZoneType};

    fn zone_with(counts: [u64; NR_ORDERS]) -> Zone {
        let mut z = Zone::new(ZoneType::Normal, Pfn(0), Pfn(1 << 20));
        for (area, n) in z.free_area.iter_mut().zip(counts) {
            *area = FreeArea {
                nr_free: n,
                ..FreeArea::EMPTY
            };
        }
        z
    }

    #[test]
    fn contig_page_info_counts_blocks_pages_and_suitable_blocks() {
        // 3 order-0, 2 order-1, 1 order-3: 3 + 4 + 8 = 15 pages.
        let z = zone_with([3, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let info = fill_contig_page_info(&z, 1);
        assert_eq!(
            info,
            ContigPageInfo {
                free_pages: 15,
                free_blocks_total: 6,
                free_blocks_suitable: 2 + 4,
            }
        );
    }

    #[test]
    fn fragmentation_index_by_hand() {
        let z = zone_with([3, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        // Order 3 is available: -1000.
        assert_eq!(fragmentation_index(&z, 3), -1000);
        // Order 4 (16 pages) is not: 1000 - (1000 + 15000/16) / 6
        // = 1000 - (1000 + 937) / 6 = 1000 - 322 = 678.
        assert_eq!(fragmentation_index(&z, 4), 678);
        // Order 10: 1000 - (1000 + 15000/1024) / 6 = 1000 - 169 = 831.
        assert_eq!(fragmentation_index(&z, 10), 831);
        // Nothing free: 0 ("fails for lack of memory").
        assert_eq!(fragmentation_index(&zone_with([0; NR_ORDERS]), 2), 0);
        // One free order-0 page against an order-1 request: memory, not
        // fragmentation: 1000 - (1000 + 500) / 1 < 0.
        assert_eq!(
            fragmentation_index(&zone_with([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 1),
            -500
        );
    }

    #[test]
    fn unusable_index_by_hand() {
        let z = zone_with([3, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let u = |o| unusable_free_index(o, &fill_contig_page_info(&z, o));
        assert_eq!(u(0), 0);
        // Order 1: the 3 single pages are unusable: 3000/15 = 200.
        assert_eq!(u(1), 200);
        // Order 2: 3 + 4 = 7 of 15 → 466.
        assert_eq!(u(2), 466);
        // Order 3: the order-3 block serves: still 7/15.
        assert_eq!(u(3), 466);
        assert_eq!(u(4), 1000);
        assert_eq!(unusable_free_index(0, &ContigPageInfo::default()), 1000);
    }

    #[test]
    fn text_formats_match_linux() {
        let z = zone_with([3, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let mut s = String::new();
        write!(s, "Node 0, zone {:>8} ", z.name()).unwrap();
        for order in 0..NR_ORDERS {
            let index = fragmentation_index(&z, order);
            write!(s, "{:2}.{:03} ", index / 1000, index % 1000).unwrap();
        }
        assert_eq!(
            s,
            "Node 0, zone   Normal -1.000 -1.000 -1.000 -1.000  0.678  0.756  0.795  0.814  0.824  0.829  0.831 "
        );
    }
}
