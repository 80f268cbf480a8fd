//! DMA for devices: coherent buffers and a bounce pool (cf. Linux
//! `kernel/dma/mapping.c` and `kernel/dma/swiotlb.c`).
//!
//! There is no IOMMU: a device sees physical addresses, and the one NIC we
//! drive (virtio-net) is given only addresses below 4 GiB. So:
//!
//! - [`Dma::dma_alloc_coherent`] takes physically contiguous, zeroed frames
//!   from `GFP_DMA32` (ZONE_DMA32, falling back to ZONE_DMA), tagged
//!   [`OwnerTag::DMA`], and records them in a fixed-size registry so
//!   `/api/dma` can list every live buffer with its owner. The CPU reaches the
//!   buffer through the direct map, the device at its physical address
//!   (`dma_addr == phys`, cf. `dma_direct_alloc()`).
//! - [`Dma::map_single`] is the streaming path for memory the device cannot
//!   reach directly (not contiguous, not below 4 GiB, not in the direct map):
//!   the swiotlb idea. One coherent area is cut into [`IO_TLB_SIZE`] slots; a
//!   mapping takes a contiguous run of slots, the caller's bytes are copied in,
//!   the device gets the slots' address, and [`Dma::unmap_single`] copies the
//!   device's bytes back out (cf. `swiotlb_tbl_map_single()` /
//!   `swiotlb_tbl_unmap_single()`).
//!
//! Everything here is policy over [`MemoryManager`]; bytes move only through
//! [`Platform::with_frame`], so the whole module runs in host tests on the
//! simulated arena. Nothing allocates from the heap: the registry and the
//! slot map are fixed arrays, so the DMA lock may be taken anywhere the zone
//! lock may (it is always taken first).

use core::fmt;

use crate::gfp::GfpFlags;
use crate::manager::MemoryManager;
use crate::page::OwnerTag;
use crate::page_alloc::{AllocError, FreeError};
use crate::platform::Platform;
use crate::types::{Order, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use crate::zone::{MAX_DMA32_PFN, ZoneType};

/// Live coherent buffers the registry can hold (the bounce area is one).
pub const MAX_COHERENT: usize = 64;
/// log2 of a bounce slot (cf. `IO_TLB_SHIFT`).
pub const IO_TLB_SHIFT: u32 = 11;
/// Bytes per bounce slot (cf. `IO_TLB_SIZE`): 2 KiB.
pub const IO_TLB_SIZE: u64 = 1 << IO_TLB_SHIFT;
/// Most slots a bounce pool may have (512 KiB of bounce space).
pub const MAX_BOUNCE_SLOTS: usize = 256;
/// Bounce mappings live at once.
pub const MAX_BOUNCE_MAPPINGS: usize = 32;
/// Physical segments one streaming mapping may gather (a 64 KiB buffer
/// scattered page by page needs 17).
pub const MAX_SEGMENTS: usize = 32;

/// Which way data flows (cf. `enum dma_data_direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaDirection {
    /// CPU wrote, device reads (`DMA_TO_DEVICE`).
    ToDevice,
    /// Device writes, CPU reads afterwards (`DMA_FROM_DEVICE`).
    FromDevice,
    /// Both (`DMA_BIDIRECTIONAL`).
    Bidirectional,
}

impl DmaDirection {
    /// Whether the device's bytes must be copied back on unmap.
    const fn copies_back(self) -> bool {
        matches!(self, DmaDirection::FromDevice | DmaDirection::Bidirectional)
    }
}

/// One physically contiguous piece of a buffer handed to [`Dma::map_single`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysSegment {
    /// First byte.
    pub addr: PhysAddr,
    /// Length in bytes.
    pub len: u64,
}

/// Why a DMA operation was refused. A refused call changes no state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// Size 0, or more than one buddy block (4 MiB) for a coherent buffer.
    InvalidSize {
        /// Bytes requested.
        size: u64,
    },
    /// The page allocator could not supply the frames.
    NoMemory {
        /// Bytes requested.
        size: u64,
        /// The failure as the allocator reported it.
        cause: AllocError,
    },
    /// The registry of coherent buffers is full ([`MAX_COHERENT`]).
    RegistryFull,
    /// No live coherent buffer or bounce mapping at this DMA address.
    NotFound {
        /// The address given.
        dma_addr: PhysAddr,
    },
    /// A free named the buffer with another size than it was allocated with.
    SizeMismatch {
        /// The address given.
        dma_addr: PhysAddr,
        /// Size recorded at allocation.
        allocated: u64,
        /// Size passed to the free.
        requested: u64,
    },
    /// The allocator refused to take the frames back.
    Free(FreeError),
    /// The frames given are not direct-mapped below 4 GiB (a bug in the
    /// zone policy if it ever shows; reported, never a panic).
    Unreachable {
        /// First frame of the block.
        pfn: Pfn,
    },
    /// `map_single` before [`Dma::swiotlb_init`].
    NoBouncePool,
    /// A second [`Dma::swiotlb_init`], or a pool bigger than [`MAX_BOUNCE_SLOTS`].
    BadBouncePool,
    /// No contiguous run of free slots is large enough (cf. "swiotlb buffer
    /// is full").
    BounceFull {
        /// Bytes requested.
        size: u64,
        /// Slots free right now (maybe not contiguous).
        free_slots: usize,
    },
    /// Every entry of the bounce mapping table is in use.
    TooManyMappings,
    /// More than [`MAX_SEGMENTS`] segments, or none.
    BadSegments,
    /// A segment touches memory that is not RAM (past `max_pfn` or a hole).
    NotRam {
        /// The offending frame.
        pfn: Pfn,
    },
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmaError::InvalidSize { size } => write!(f, "invalid DMA size {size}"),
            DmaError::NoMemory { size, cause } => {
                write!(f, "no memory for {size} DMA bytes: {cause}")
            }
            DmaError::RegistryFull => {
                write!(f, "coherent DMA registry full ({MAX_COHERENT} buffers)")
            }
            DmaError::NotFound { dma_addr } => write!(f, "no DMA buffer at {dma_addr}"),
            DmaError::SizeMismatch {
                dma_addr,
                allocated,
                requested,
            } => write!(
                f,
                "DMA buffer at {dma_addr} has {allocated} bytes, free asked for {requested}"
            ),
            DmaError::Free(e) => write!(f, "freeing DMA frames: {e}"),
            DmaError::Unreachable { pfn } => write!(f, "frame {pfn} is not DMA-reachable"),
            DmaError::NoBouncePool => write!(f, "no bounce pool"),
            DmaError::BadBouncePool => write!(f, "bounce pool already set up or too large"),
            DmaError::BounceFull { size, free_slots } => {
                write!(
                    f,
                    "bounce pool full: {size} bytes wanted, {free_slots} slots free"
                )
            }
            DmaError::TooManyMappings => write!(f, "too many bounce mappings"),
            DmaError::BadSegments => write!(f, "bad segment list"),
            DmaError::NotRam { pfn } => write!(f, "frame {pfn} is not RAM"),
        }
    }
}

/// A live coherent buffer as `/api/dma` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoherentInfo {
    /// Who asked for it ("virtio-net rx", "swiotlb", …).
    pub owner: &'static str,
    /// Where the CPU reaches it (direct map).
    pub cpu_addr: VirtAddr,
    /// Where the device reaches it (== physical address: no IOMMU).
    pub dma_addr: PhysAddr,
    /// Bytes requested.
    pub size: u64,
    /// Buddy order of the block backing it (`2^order` pages); for a
    /// buffer from the CMA area, the largest order (see `nr_pages`).
    pub order: Order,
    /// Pages backing it: `2^order`, or a CMA run's length.
    pub nr_pages: u64,
    /// Taken from the CMA area (`dma_alloc_contiguous()`): buffers larger
    /// than one buddy block.
    pub cma: bool,
    /// Zone the block came from.
    pub zone: ZoneType,
}

/// A coherent buffer handed to its owner. Not `Clone`: it is returned to
/// [`Dma::dma_free_coherent`] exactly once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a coherent DMA buffer must be freed with dma_free_coherent"]
pub struct DmaBuffer {
    info: CoherentInfo,
}

impl DmaBuffer {
    /// CPU (direct-map) address.
    pub fn cpu_addr(&self) -> VirtAddr {
        self.info.cpu_addr
    }
    /// Device address.
    pub fn dma_addr(&self) -> PhysAddr {
        self.info.dma_addr
    }
    /// Bytes requested (the block may be larger: `PAGE_SIZE << order`).
    pub fn size(&self) -> u64 {
        self.info.size
    }
    /// The registry record.
    pub fn info(&self) -> CoherentInfo {
        self.info
    }
}

/// Bounce pool counters for `/api/dma`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BounceStats {
    /// Slots in the pool (0 without a pool).
    pub slots: usize,
    /// Slots held by live mappings.
    pub used: usize,
    /// Bytes copied in and out since boot.
    pub bytes_bounced: u64,
    /// Live mappings.
    pub mappings: usize,
    /// Mappings made since boot.
    pub total_maps: u64,
    /// Mappings refused (pool full, table full).
    pub failures: u64,
    /// DMA address of the pool (`None` without one).
    pub dma_addr: Option<PhysAddr>,
}

/// A copy of the DMA state, taken under the lock and rendered without it.
#[derive(Clone, Copy, Debug)]
pub struct DmaSnapshot {
    coherent: [Option<CoherentInfo>; MAX_COHERENT],
    /// The bounce pool's counters.
    pub bounce: BounceStats,
}

impl DmaSnapshot {
    /// Live coherent buffers, in registry order.
    pub fn coherent(&self) -> impl Iterator<Item = &CoherentInfo> {
        self.coherent.iter().flatten()
    }
}

#[derive(Clone, Copy, Debug)]
struct BounceMapping {
    dma_addr: PhysAddr,
    first_slot: usize,
    nr_slots: usize,
    size: u64,
    segs: [PhysSegment; MAX_SEGMENTS],
    nr_segs: usize,
}

impl BounceMapping {
    fn segs(&self) -> &[PhysSegment] {
        &self.segs[..self.nr_segs]
    }
}

/// The swiotlb area (cf. `struct io_tlb_mem`).
struct BouncePool {
    base: PhysAddr,
    nr_slots: usize,
    slot_used: [bool; MAX_BOUNCE_SLOTS],
    mappings: [Option<BounceMapping>; MAX_BOUNCE_MAPPINGS],
    bytes_bounced: u64,
    total_maps: u64,
    failures: u64,
}

impl BouncePool {
    fn used(&self) -> usize {
        self.slot_used[..self.nr_slots]
            .iter()
            .filter(|&&u| u)
            .count()
    }

    /// First fit: the lowest run of `n` free slots (cf. `swiotlb_search_area()`).
    fn find_run(&self, n: usize) -> Option<usize> {
        let mut run = 0;
        for i in 0..self.nr_slots {
            run = if self.slot_used[i] { 0 } else { run + 1 };
            if run == n {
                return Some(i + 1 - n);
            }
        }
        None
    }
}

/// Largest coherent buffer from the buddy allocator: one order-`MAX_ORDER`
/// block (4 MiB). Larger ones come from the CMA area.
pub const MAX_BUDDY_BYTES: u64 = PAGE_SIZE << crate::types::MAX_ORDER;
/// Largest coherent buffer from the CMA area.
pub const MAX_CMA_BYTES: u64 = 1 << 30;

/// The DMA registry's answer to compaction: it knows no page's owner, so
/// nothing may move for it.
struct Unmovable;

impl crate::compaction::MigrateOwner for Unmovable {
    fn can_migrate(&mut self, _pfn: Pfn) -> bool {
        false
    }
    fn migrated(&mut self, _moves: &[(Pfn, Pfn)]) {}
}

/// Coherent buffers and the bounce pool. The kernel keeps one behind a lock.
pub struct Dma {
    coherent: [Option<CoherentInfo>; MAX_COHERENT],
    bounce: Option<BouncePool>,
}

impl Default for Dma {
    fn default() -> Self {
        Dma::new()
    }
}

impl Dma {
    /// No buffers, no bounce pool.
    pub const fn new() -> Self {
        Dma {
            coherent: [None; MAX_COHERENT],
            bounce: None,
        }
    }

    /// `dma_alloc_coherent()`: `size` bytes (rounded up to a buddy block) of
    /// zeroed, physically contiguous memory below 4 GiB, reachable by the CPU
    /// through the direct map and by the device at `dma_addr`.
    pub fn dma_alloc_coherent<P: Platform>(
        &mut self,
        mm: &MemoryManager<'_, P>,
        size: u64,
        owner: &'static str,
    ) -> Result<DmaBuffer, DmaError> {
        if size > MAX_BUDDY_BYTES && size <= MAX_CMA_BYTES && mm.lock().cma_area().is_some() {
            return self.dma_alloc_contiguous(mm, size, owner);
        }
        let order = match Order::from_size_bytes(size) {
            Some(order) if size > 0 => order,
            _ => return Err(DmaError::InvalidSize { size }),
        };
        let slot = self
            .coherent
            .iter()
            .position(Option::is_none)
            .ok_or(DmaError::RegistryFull)?;
        // cf. dma_direct_alloc(): GFP_DMA32 for a 32-bit coherent mask; the
        // zonelist falls back to ZONE_DMA.
        let gfp = GfpFlags::GFP_KERNEL | GfpFlags::DMA32 | GfpFlags::ZERO;
        let pfn = mm
            .alloc_pages(gfp, order, OwnerTag::DMA)
            .map_err(|cause| DmaError::NoMemory { size, cause })?;
        let (cpu_addr, zone) = {
            let pages = mm.lock();
            (pages.page_address(pfn), pages.zone_of(pfn))
        };
        let end_pfn = pfn.add(order.nr_pages());
        let (Some(cpu_addr), Some(zone)) = (cpu_addr, zone) else {
            let _ = mm.free_pages(pfn, order);
            return Err(DmaError::Unreachable { pfn });
        };
        if end_pfn.0 > MAX_DMA32_PFN {
            let _ = mm.free_pages(pfn, order);
            return Err(DmaError::Unreachable { pfn });
        }
        let info = CoherentInfo {
            owner,
            cpu_addr,
            dma_addr: pfn.phys(),
            size,
            order,
            nr_pages: order.nr_pages(),
            cma: false,
            zone,
        };
        self.coherent[slot] = Some(info);
        Ok(DmaBuffer { info })
    }

    /// cf. `dma_alloc_contiguous()` → `cma_alloc()`: a buffer larger than
    /// one buddy block, from the CMA area, aligned to `get_order(size)`
    /// (capped at 1 MiB), zeroed. The registry knows no page owners, so a
    /// run is taken only where no allocated page would have to move.
    fn dma_alloc_contiguous<P: Platform>(
        &mut self,
        mm: &MemoryManager<'_, P>,
        size: u64,
        owner: &'static str,
    ) -> Result<DmaBuffer, DmaError> {
        let slot = self
            .coherent
            .iter()
            .position(Option::is_none)
            .ok_or(DmaError::RegistryFull)?;
        let count = size.div_ceil(PAGE_SIZE);
        let align = (64 - (count - 1).leading_zeros()) as u8;
        let no_memory = DmaError::NoMemory {
            size,
            cause: AllocError::NoMemory {
                order: Order::MAX,
                gfp: GfpFlags::GFP_KERNEL | GfpFlags::DMA32,
            },
        };
        let pfn = mm
            .cma_alloc(count, align, &mut Unmovable)
            .map_err(|_| no_memory)?;
        let (cpu_addr, zone) = {
            let pages = mm.lock();
            (pages.page_address(pfn), pages.zone_of(pfn))
        };
        let (Some(cpu_addr), Some(zone)) = (cpu_addr, zone) else {
            let _ = mm.cma_release(pfn, count);
            return Err(DmaError::Unreachable { pfn });
        };
        if pfn.0 + count > MAX_DMA32_PFN {
            let _ = mm.cma_release(pfn, count);
            return Err(DmaError::Unreachable { pfn });
        }
        mm.fill(pfn, count, 0);
        let info = CoherentInfo {
            owner,
            cpu_addr,
            dma_addr: pfn.phys(),
            size,
            order: Order::MAX,
            nr_pages: count,
            cma: true,
            zone,
        };
        self.coherent[slot] = Some(info);
        Ok(DmaBuffer { info })
    }

    /// `dma_free_coherent()` of a buffer from [`Dma::dma_alloc_coherent`].
    pub fn dma_free_coherent<P: Platform>(
        &mut self,
        mm: &MemoryManager<'_, P>,
        buf: DmaBuffer,
    ) -> Result<(), DmaError> {
        self.free_coherent_at(mm, buf.info.dma_addr, buf.info.size)
    }

    /// Frees the coherent buffer at `dma_addr`, which must have been
    /// allocated with `size` bytes (drivers that keep only addresses, like
    /// `virtio_drivers::Hal::dma_dealloc`). Refused, with nothing freed, for
    /// an unknown address or another size.
    pub fn free_coherent_at<P: Platform>(
        &mut self,
        mm: &MemoryManager<'_, P>,
        dma_addr: PhysAddr,
        size: u64,
    ) -> Result<(), DmaError> {
        let slot = self
            .coherent
            .iter()
            .position(|e| e.is_some_and(|e| e.dma_addr == dma_addr))
            .ok_or(DmaError::NotFound { dma_addr })?;
        let Some(info) = self.coherent[slot] else {
            return Err(DmaError::NotFound { dma_addr });
        };
        if info.size != size {
            return Err(DmaError::SizeMismatch {
                dma_addr,
                allocated: info.size,
                requested: size,
            });
        }
        if self.bounce.as_ref().is_some_and(|b| b.base == dma_addr) {
            // The bounce area lives as long as the pool.
            return Err(DmaError::NotFound { dma_addr });
        }
        if info.cma {
            mm.cma_release(Pfn::from_phys(dma_addr), info.nr_pages)
                .map_err(|_| DmaError::NotFound { dma_addr })?;
        } else {
            mm.free_pages(Pfn::from_phys(dma_addr), info.order)
                .map_err(DmaError::Free)?;
        }
        self.coherent[slot] = None;
        Ok(())
    }

    /// The registry entry of the coherent buffer at `dma_addr`.
    pub fn coherent_at(&self, dma_addr: PhysAddr) -> Option<CoherentInfo> {
        self.coherent
            .iter()
            .flatten()
            .find(|e| e.dma_addr == dma_addr)
            .copied()
    }

    /// Sets up the bounce pool: one coherent area of `nr_slots` slots (cf.
    /// `swiotlb_init()`), listed in the registry as owner "swiotlb".
    pub fn swiotlb_init<P: Platform>(
        &mut self,
        mm: &MemoryManager<'_, P>,
        nr_slots: usize,
    ) -> Result<(), DmaError> {
        if self.bounce.is_some() || nr_slots == 0 || nr_slots > MAX_BOUNCE_SLOTS {
            return Err(DmaError::BadBouncePool);
        }
        let area = self.dma_alloc_coherent(mm, nr_slots as u64 * IO_TLB_SIZE, "swiotlb")?;
        self.bounce = Some(BouncePool {
            base: area.dma_addr(),
            nr_slots,
            slot_used: [false; MAX_BOUNCE_SLOTS],
            mappings: [None; MAX_BOUNCE_MAPPINGS],
            bytes_bounced: 0,
            total_maps: 0,
            failures: 0,
        });
        // The area stays registered (and owned by the pool) for good.
        let _ = area;
        Ok(())
    }

    /// `swiotlb_tbl_map_single()`: takes a contiguous run of slots for the
    /// buffer made of `segs`, copies its bytes in, and returns the address
    /// the device must use.
    ///
    /// The copy happens for every direction, as Linux does since the
    /// `DMA_FROM_DEVICE` info-leak fix: a device that writes only part of the
    /// buffer then leaves the rest of the caller's bytes unchanged on unmap,
    /// and never sees another mapping's stale data.
    pub fn map_single<P: Platform>(
        &mut self,
        mm: &MemoryManager<'_, P>,
        segs: &[PhysSegment],
        _dir: DmaDirection,
    ) -> Result<PhysAddr, DmaError> {
        if segs.is_empty() || segs.len() > MAX_SEGMENTS || segs.iter().any(|s| s.len == 0) {
            return Err(DmaError::BadSegments);
        }
        check_ram(mm, segs)?;
        let size: u64 = segs.iter().map(|s| s.len).sum();
        let pool = self.bounce.as_mut().ok_or(DmaError::NoBouncePool)?;
        let nr_slots = size.div_ceil(IO_TLB_SIZE) as usize;
        let Some(first_slot) = pool.find_run(nr_slots) else {
            pool.failures += 1;
            let free_slots = pool.nr_slots - pool.used();
            return Err(DmaError::BounceFull { size, free_slots });
        };
        let Some(entry) = pool.mappings.iter().position(Option::is_none) else {
            pool.failures += 1;
            return Err(DmaError::TooManyMappings);
        };
        let dma_addr = PhysAddr(pool.base.0 + first_slot as u64 * IO_TLB_SIZE);
        let mut mapping = BounceMapping {
            dma_addr,
            first_slot,
            nr_slots,
            size,
            segs: [PhysSegment::default(); MAX_SEGMENTS],
            nr_segs: segs.len(),
        };
        mapping.segs[..segs.len()].copy_from_slice(segs);
        let mut at = dma_addr;
        for seg in segs {
            copy_phys(mm.platform(), seg.addr, at, seg.len);
            at = PhysAddr(at.0 + seg.len);
        }
        pool.slot_used[first_slot..first_slot + nr_slots].fill(true);
        pool.mappings[entry] = Some(mapping);
        pool.bytes_bounced += size;
        pool.total_maps += 1;
        Ok(dma_addr)
    }

    /// `swiotlb_tbl_unmap_single()`: copies the device's bytes back to the
    /// original segments when `dir` says the device wrote, and frees the
    /// slots. Returns the bytes copied back.
    pub fn unmap_single<P: Platform>(
        &mut self,
        mm: &MemoryManager<'_, P>,
        dma_addr: PhysAddr,
        dir: DmaDirection,
    ) -> Result<u64, DmaError> {
        let pool = self.bounce.as_mut().ok_or(DmaError::NoBouncePool)?;
        let entry = pool
            .mappings
            .iter()
            .position(|m| m.is_some_and(|m| m.dma_addr == dma_addr))
            .ok_or(DmaError::NotFound { dma_addr })?;
        let Some(mapping) = pool.mappings[entry].take() else {
            return Err(DmaError::NotFound { dma_addr });
        };
        let mut copied = 0;
        if dir.copies_back() {
            let mut at = dma_addr;
            for seg in mapping.segs() {
                copy_phys(mm.platform(), at, seg.addr, seg.len);
                at = PhysAddr(at.0 + seg.len);
            }
            copied = mapping.size;
        }
        pool.slot_used[mapping.first_slot..mapping.first_slot + mapping.nr_slots].fill(false);
        pool.bytes_bounced += copied;
        Ok(copied)
    }

    /// Whether `dma_addr` is a live bounce mapping (as opposed to a buffer
    /// the device reaches directly).
    pub fn is_bounced(&self, dma_addr: PhysAddr) -> bool {
        self.bounce
            .as_ref()
            .is_some_and(|p| p.mappings.iter().flatten().any(|m| m.dma_addr == dma_addr))
    }

    /// The bounce pool's counters.
    pub fn bounce_stats(&self) -> BounceStats {
        match &self.bounce {
            None => BounceStats::default(),
            Some(p) => BounceStats {
                slots: p.nr_slots,
                used: p.used(),
                bytes_bounced: p.bytes_bounced,
                mappings: p.mappings.iter().flatten().count(),
                total_maps: p.total_maps,
                failures: p.failures,
                dma_addr: Some(p.base),
            },
        }
    }

    /// Everything `/api/dma` shows.
    pub fn snapshot(&self) -> DmaSnapshot {
        DmaSnapshot {
            coherent: self.coherent,
            bounce: self.bounce_stats(),
        }
    }
}

/// Every frame a segment touches must be RAM the platform can map.
fn check_ram<P: Platform>(mm: &MemoryManager<'_, P>, segs: &[PhysSegment]) -> Result<(), DmaError> {
    let pages = mm.lock();
    for seg in segs {
        let first = Pfn::from_phys(seg.addr);
        let end = seg
            .addr
            .0
            .checked_add(seg.len)
            .map(|e| Pfn::from_phys_up(PhysAddr(e)))
            .ok_or(DmaError::BadSegments)?;
        for pfn in first.0..end.0 {
            match pages.page(Pfn(pfn)) {
                Some(page) if !page.is_nomap() => {}
                _ => return Err(DmaError::NotRam { pfn: Pfn(pfn) }),
            }
        }
    }
    Ok(())
}

/// Copies `len` bytes between physical addresses through the platform's
/// mappings, a frame-bounded chunk at a time via a small stack buffer (the
/// platform lends one frame at a time; nesting is not allowed).
fn copy_phys<P: Platform>(platform: &P, src: PhysAddr, dst: PhysAddr, len: u64) {
    const CHUNK: u64 = 512;
    let mut buf = [0u8; CHUNK as usize];
    let mut done = 0;
    while done < len {
        let (s, d) = (src.0 + done, dst.0 + done);
        let n = CHUNK
            .min(len - done)
            .min(PAGE_SIZE - s % PAGE_SIZE)
            .min(PAGE_SIZE - d % PAGE_SIZE) as usize;
        let (so, dof) = ((s % PAGE_SIZE) as usize, (d % PAGE_SIZE) as usize);
        platform.with_frame(Pfn::from_phys(PhysAddr(s)), &mut |bytes| {
            buf[..n].copy_from_slice(&bytes[so..so + n]);
        });
        platform.with_frame(Pfn::from_phys(PhysAddr(d)), &mut |bytes| {
            bytes[dof..dof + n].copy_from_slice(&buf[..n]);
        });
        done += n as u64;
    }
}

#[cfg(test)]
mod tests;
