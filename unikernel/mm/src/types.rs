//! Address and frame newtypes shared by every allocator in `mm`.
//!
//! A physical address, a virtual address, a page frame number and a buddy
//! order are all "just integers" in C, and mixing them up is the classic
//! memory-manager bug. Each gets its own type here so the compiler catches a
//! PFN passed where a byte address was meant. The constants mirror x86_64
//! Linux (`PAGE_SHIFT`, `MAX_PAGE_ORDER`, `PAGE_OFFSET`).

use core::fmt;

/// log2 of the base page size (cf. `PAGE_SHIFT`).
pub const PAGE_SHIFT: u32 = 12;
/// Base page size in bytes (cf. `PAGE_SIZE`).
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Highest buddy order: blocks go up to `2^MAX_ORDER` pages = 4 MiB
/// (cf. `MAX_PAGE_ORDER`, formerly `MAX_ORDER - 1`).
pub const MAX_ORDER: usize = 10;
/// Number of free lists per zone, one per order `0..=MAX_ORDER`
/// (cf. `NR_PAGE_ORDERS`).
pub const NR_ORDERS: usize = MAX_ORDER + 1;

/// CPUs the per-CPU structures (pagesets, `kmem_cache_cpu`, vm event
/// counters) are sized for (cf. `NR_CPUS`); the kernel brings up at most
/// this many.
pub const NR_CPUS: usize = 8;
/// Virtual base of the direct map of lowmem (cf. x86_64 `PAGE_OFFSET` with
/// 4-level paging): lowmem frame at `phys` is visible at `PAGE_OFFSET + phys`.
pub const PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;

/// A page frame number: physical address `>> PAGE_SHIFT`.
///
/// Kept distinct from [`PhysAddr`] so an index into `mem_map` is never
/// confused with a byte address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u64);

/// A physical byte address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

/// A virtual byte address (kernel address space).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtAddr(pub u64);

impl Pfn {
    /// The frame containing `addr` (cf. `PHYS_PFN()` / `PFN_DOWN()`).
    pub const fn from_phys(addr: PhysAddr) -> Pfn {
        Pfn(addr.0 >> PAGE_SHIFT)
    }

    /// The first frame starting at or above `addr` (cf. `PFN_UP()`); used
    /// when shrinking a byte range inward to whole pages. Saturates instead of
    /// overflowing for addresses in the last page of the address space.
    pub const fn from_phys_up(addr: PhysAddr) -> Pfn {
        match addr.0.checked_add(PAGE_SIZE - 1) {
            Some(a) => Pfn(a >> PAGE_SHIFT),
            None => Pfn(u64::MAX >> PAGE_SHIFT),
        }
    }

    /// Physical address of the first byte of the frame (cf. `PFN_PHYS()`).
    pub const fn phys(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }

    /// The raw frame number as an index into `mem_map`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// `self + nr_pages`, saturating (frame arithmetic never wraps silently).
    pub const fn add(self, nr_pages: u64) -> Pfn {
        Pfn(self.0.saturating_add(nr_pages))
    }

    /// Whether this frame is the first of a naturally aligned block of
    /// `order` (buddy blocks must be).
    pub const fn is_aligned(self, order: Order) -> bool {
        self.0 & (order.nr_pages() - 1) == 0
    }
}

impl PhysAddr {
    /// Whether the address is a multiple of `align_bytes` (a power of two).
    pub const fn is_aligned(self, align_bytes: u64) -> bool {
        align_bytes != 0 && self.0 & (align_bytes - 1) == 0
    }

    /// Round down to a multiple of `align_bytes` (a power of two).
    pub const fn align_down(self, align_bytes: u64) -> PhysAddr {
        PhysAddr(self.0 & !(align_bytes - 1))
    }

    /// Round up to a multiple of `align_bytes` (a power of two); `None` on
    /// overflow.
    pub const fn checked_align_up(self, align_bytes: u64) -> Option<PhysAddr> {
        match self.0.checked_add(align_bytes - 1) {
            Some(a) => Some(PhysAddr(a & !(align_bytes - 1))),
            None => None,
        }
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A buddy order, guaranteed to be in `0..=MAX_ORDER`.
///
/// Validating once at construction means the allocator can index
/// `free_area[order]` and shift by `order` without re-checking, and a request
/// for order 11 from the HTTP API is rejected before it reaches the buddy
/// code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Order(u8);

impl Order {
    /// Order 0: a single page.
    pub const ZERO: Order = Order(0);
    /// The largest block the buddy allocator manages (4 MiB).
    pub const MAX: Order = Order(MAX_ORDER as u8);

    /// `Some` if `order <= MAX_ORDER`.
    pub const fn new(order: u8) -> Option<Order> {
        if order as usize <= MAX_ORDER {
            Some(Order(order))
        } else {
            None
        }
    }

    /// The smallest order whose block holds `size_bytes` (cf. `get_order()`);
    /// `None` if that exceeds `MAX_ORDER`. Size 0 maps to order 0 like Linux.
    pub const fn from_size_bytes(size_bytes: u64) -> Option<Order> {
        let mut order = 0u8;
        while (order as usize) <= MAX_ORDER {
            if (PAGE_SIZE << order) >= size_bytes {
                return Some(Order(order));
            }
            order += 1;
        }
        None
    }

    /// The order as a plain number.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The order as an array index (`free_area[order.index()]`).
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Pages in a block of this order: `2^order`.
    pub const fn nr_pages(self) -> u64 {
        1 << self.0
    }

    /// Bytes in a block of this order.
    pub const fn size_bytes(self) -> u64 {
        PAGE_SIZE << self.0
    }

    /// One order up, or `None` at `MAX_ORDER`.
    pub const fn succ(self) -> Option<Order> {
        Order::new(self.0 + 1)
    }

    /// One order down, or `None` at 0.
    pub const fn pred(self) -> Option<Order> {
        if self.0 == 0 {
            None
        } else {
            Some(Order(self.0 - 1))
        }
    }

    /// Every valid order, ascending.
    pub fn all() -> impl Iterator<Item = Order> {
        (0..=MAX_ORDER as u8).map(Order)
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_bounds() {
        assert_eq!(Order::new(10), Some(Order::MAX));
        assert_eq!(Order::new(11), None);
        assert_eq!(Order::MAX.nr_pages(), 1024);
        assert_eq!(Order::MAX.size_bytes(), 4 << 20);
        assert_eq!(Order::from_size_bytes(0), Some(Order::ZERO));
        assert_eq!(Order::from_size_bytes(4096), Some(Order::ZERO));
        assert_eq!(Order::from_size_bytes(4097).map(Order::get), Some(1));
        assert_eq!(Order::from_size_bytes(4 << 20), Some(Order::MAX));
        assert_eq!(Order::from_size_bytes((4 << 20) + 1), None);
        assert_eq!(Order::MAX.succ(), None);
        assert_eq!(Order::ZERO.pred(), None);
        assert_eq!(Order::all().count(), NR_ORDERS);
    }

    #[test]
    fn pfn_conversions() {
        assert_eq!(Pfn::from_phys(PhysAddr(0x9fc00)), Pfn(0x9f));
        assert_eq!(Pfn::from_phys_up(PhysAddr(0x9fc00)), Pfn(0xa0));
        assert_eq!(Pfn::from_phys_up(PhysAddr(0x1000)), Pfn(1));
        assert_eq!(Pfn::from_phys_up(PhysAddr(u64::MAX)), Pfn(u64::MAX >> 12));
        assert_eq!(Pfn(0x100).phys(), PhysAddr(0x10_0000));
        assert!(Pfn(0x400).is_aligned(Order::MAX));
        assert!(!Pfn(0x401).is_aligned(Order::new(1).unwrap()));
        assert_eq!(PhysAddr(0x1234).align_down(0x1000), PhysAddr(0x1000));
        assert_eq!(
            PhysAddr(0x1234).checked_align_up(0x1000),
            Some(PhysAddr(0x2000))
        );
        assert_eq!(PhysAddr(u64::MAX).checked_align_up(0x1000), None);
    }
}
