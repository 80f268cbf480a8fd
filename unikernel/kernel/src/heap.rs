//! The kernel's global heap — interim.
//!
//! `alloc` (smoltcp's sockets, the HTTP layer's strings and vectors,
//! virtio-drivers' indirect descriptor lists) needs a `#[global_allocator]`
//! before the slab allocator exists. This one is `talc` over a few order-10
//! (4 MiB) blocks taken from the buddy allocator at boot, tagged
//! `OwnerTag::HEAP`, from ZONE_DMA32 so that every heap object is in the
//! direct map, physically contiguous within its block and below 4 GiB: the
//! virtio `Hal` can then hand heap buffers to the device without bouncing.
//! The slab issue replaces this module with kmalloc behind the global
//! allocator; until then the heap is fixed-size (8 MiB) and never grows.
//!
//! Rules (DESIGN.md): never allocate while holding the zone lock
//! (`mm.lock()`) — the heap does not call into the buddy allocator after
//! boot, but the slab-backed successor will — and never from an interrupt
//! handler (the heap lock is not interrupt-safe).

use spin::Once;
use talc::TalcLock;
use talc::source::Manual;

use mm::gfp::GfpFlags;
use mm::page::OwnerTag;
use mm::types::{Order, PAGE_OFFSET, Pfn};

/// Blocks of `Order::MAX` (4 MiB) the heap takes at boot.
pub const HEAP_BLOCKS: usize = 2;

#[global_allocator]
static HEAP: TalcLock<spin::Mutex<()>, Manual> = TalcLock::new(Manual);

/// Where the heap's memory came from: physically contiguous runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapRegion {
    pub phys: u64,
    pub size: u64,
}

static REGIONS: Once<([HeapRegion; HEAP_BLOCKS], usize)> = Once::new();

/// Heap statistics (`/api/meminfo`-style reporting until slab exists).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes handed to the allocator.
    pub total_bytes: usize,
    /// Bytes in live allocations (as requested).
    pub allocated_bytes: usize,
    /// Bytes free for allocation.
    pub free_bytes: usize,
    /// Live allocations.
    pub allocations: usize,
    /// Allocations since boot.
    pub total_allocations: u64,
    /// Free holes between allocations.
    pub fragments: usize,
    /// Physically contiguous regions backing the heap.
    pub regions: usize,
}

/// Takes the heap's blocks from the buddy allocator and hands them to the
/// allocator. Call once, after `memory::init`, before anything allocates.
pub fn init() {
    let mm = crate::memory::mm();
    let order = Order::MAX;
    let mut blocks = [Pfn(0); HEAP_BLOCKS];
    let mut nr = 0;
    for slot in &mut blocks {
        match mm.alloc_pages(GfpFlags::GFP_KERNEL | GfpFlags::DMA32, order, OwnerTag::HEAP) {
            Ok(pfn) => {
                *slot = pfn;
                nr += 1;
            }
            Err(e) => log::error!("heap: order-{order} block: {e}"),
        }
    }
    let blocks = &mut blocks[..nr];
    blocks.sort_unstable();
    // Merge adjacent blocks into contiguous runs; each run is one talc heap.
    let mut regions = [HeapRegion::default(); HEAP_BLOCKS];
    let mut nr_regions: usize = 0;
    for pfn in blocks.iter() {
        let phys = pfn.phys().0;
        match nr_regions.checked_sub(1).map(|i| &mut regions[i]) {
            Some(last) if last.phys + last.size == phys => last.size += order.size_bytes(),
            _ => {
                regions[nr_regions] = HeapRegion { phys, size: order.size_bytes() };
                nr_regions += 1;
            }
        }
    }
    let mut talc = HEAP.lock();
    for r in &regions[..nr_regions] {
        let base = core::ptr::with_exposed_provenance_mut::<u8>((PAGE_OFFSET + r.phys) as usize);
        // SAFETY: `[r.phys, r.phys + r.size)` is a run of order-10 blocks
        // the buddy allocator just gave us (HEAP-owned, never freed), from
        // ZONE_DMA32 and so inside the direct map, which maps it writable at
        // `PAGE_OFFSET + phys`. Nothing else refers to it; from here on only
        // talc touches it. `Manual` allows claiming.
        match unsafe { talc.claim(base, r.size as usize) } {
            Some(_) => log::info!(
                "heap: {} KiB at phys {:#x} (virt {:#x}), talc, interim until kmalloc",
                r.size >> 10,
                r.phys,
                PAGE_OFFSET + r.phys
            ),
            None => log::error!("heap: talc refused {:#x}+{:#x}", r.phys, r.size),
        }
    }
    drop(talc);
    REGIONS.call_once(|| (regions, nr_regions));
}

/// The physically contiguous regions the heap lives in.
#[allow(dead_code, reason = "read by the API (/api/meminfo, /proc/iomem)")]
pub fn regions() -> &'static [HeapRegion] {
    REGIONS.get().map_or(&[], |(r, n)| &r[..*n])
}

/// Current heap statistics.
#[allow(dead_code, reason = "read by the API (/api/meminfo)")]
pub fn stats() -> HeapStats {
    let c = *HEAP.lock().counters();
    HeapStats {
        total_bytes: c.claimed_bytes,
        allocated_bytes: c.allocated_bytes,
        free_bytes: c.available_bytes,
        allocations: c.allocation_count,
        total_allocations: c.total_allocation_count,
        fragments: c.fragment_count,
        regions: regions().len(),
    }
}
