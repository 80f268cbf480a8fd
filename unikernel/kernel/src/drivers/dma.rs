//! The kernel's one [`mm::dma::Dma`] (coherent registry + swiotlb-style
//! bounce pool) behind a lock, on the real memory manager.
//!
//! Lock order: DMA lock, then the zone lock (taken inside `mm`). Nothing
//! here allocates from the heap, and interrupt handlers never come here.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, Once};

use mm::dma::{Dma, DmaBuffer, DmaDirection, DmaError, DmaSnapshot, IO_TLB_SIZE, PhysSegment};
use mm::types::PhysAddr;

use crate::memory;

/// Bounce slots (2 KiB each): 128 KiB, enough for a few in-flight frames.
pub const BOUNCE_SLOTS: usize = 64;

/// Built at its first use, not as a constant: an empty registry slot is
/// an `Option`'s niche, not zeros, so `Dma::new()` as the initialiser put
/// the whole registry (21.8 KB) in the image's `.data`; an unset `Once`
/// is zeros and lives in `.bss`.
static DMA: Once<Mutex<Dma>> = Once::new();

fn dma() -> &'static Mutex<Dma> {
    DMA.call_once(|| Mutex::new(Dma::new()))
}
/// `[start, end)` of the bounce area, cached so `unshare` on the hot path
/// knows without the lock that an address is not bounced.
static BOUNCE_START: AtomicU64 = AtomicU64::new(0);
static BOUNCE_END: AtomicU64 = AtomicU64::new(0);

/// Sets up the bounce pool. Failure is logged: devices still work on
/// memory they can reach directly.
#[inline(never)] // not in `kmain`'s frame, which lives as long as the kernel
pub fn init() {
    let mut dma = dma().lock();
    match dma.swiotlb_init(memory::mm(), BOUNCE_SLOTS) {
        Ok(()) => {
            let stats = dma.bounce_stats();
            let start = stats.dma_addr.map_or(0, |a| a.0);
            BOUNCE_START.store(start, Ordering::Relaxed);
            BOUNCE_END.store(start + stats.slots as u64 * IO_TLB_SIZE, Ordering::Relaxed);
            log::info!(
                "dma: bounce pool (swiotlb) {} x {IO_TLB_SIZE} B slots at {start:#x}",
                stats.slots
            );
        }
        Err(e) => log::error!("dma: no bounce pool: {e}"),
    }
}

/// Everything `/api/dma` shows: live coherent buffers and bounce counters.
pub fn dma_snapshot() -> DmaSnapshot {
    dma().lock().snapshot()
}

/// `dma_alloc_coherent()` on the kernel's memory manager (virtio-net's
/// buffers, and the API's `dma` handles with owner `"api"`).
pub fn dma_alloc_coherent(size: u64, owner: &'static str) -> Result<DmaBuffer, DmaError> {
    dma().lock().dma_alloc_coherent(memory::mm(), size, owner)
}

/// `dma_free_coherent()`.
#[allow(
    dead_code,
    reason = "virtio-net and the API free by address (free_coherent_at)"
)]
pub fn dma_free_coherent(buf: DmaBuffer) -> Result<(), DmaError> {
    dma().lock().dma_free_coherent(memory::mm(), buf)
}

/// Frees the coherent buffer at `dma_addr` of `size` bytes.
pub fn free_coherent_at(dma_addr: u64, size: u64) -> Result<(), DmaError> {
    dma()
        .lock()
        .free_coherent_at(memory::mm(), PhysAddr(dma_addr), size)
}

/// Bounces `segs` (see [`Dma::map_single`]).
pub fn map_single(segs: &[PhysSegment], dir: DmaDirection) -> Result<PhysAddr, DmaError> {
    dma().lock().map_single(memory::mm(), segs, dir)
}

/// Ends a bounce mapping (see [`Dma::unmap_single`]).
pub fn unmap_single(dma_addr: u64, dir: DmaDirection) -> Result<u64, DmaError> {
    dma()
        .lock()
        .unmap_single(memory::mm(), PhysAddr(dma_addr), dir)
}

/// Whether `dma_addr` lies in the bounce area (lock-free).
pub fn in_bounce_area(dma_addr: u64) -> bool {
    (BOUNCE_START.load(Ordering::Relaxed)..BOUNCE_END.load(Ordering::Relaxed)).contains(&dma_addr)
}

/// [`dma_snapshot`] in the API's shape (for `net::api::System::dma`). The
/// snapshot is copied under the lock; the conversion allocates after it.
pub fn dma_info() -> net::api::DmaInfo {
    let snap = dma_snapshot();
    net::api::DmaInfo {
        coherent: snap
            .coherent()
            .map(|b| net::api::CoherentBuffer {
                owner: alloc::string::String::from(b.owner),
                cpu_addr: b.cpu_addr.0,
                dma_addr: b.dma_addr.0,
                size_bytes: b.size,
                zone: b.zone.name(),
            })
            .collect(),
        bounce: net::api::BounceInfo {
            slots: snap.bounce.slots as u64,
            used: snap.bounce.used as u64,
            bytes_bounced: snap.bounce.bytes_bounced,
        },
    }
}
