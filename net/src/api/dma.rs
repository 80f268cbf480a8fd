//! The `dma` allocation type: `POST /api/alloc {"type":"dma","size":N}` is
//! `dma_alloc_coherent(N)`, with its free, fill, checksum and reset.
//!
//! The buffer is the kernel's: [`super::System::dma_alloc_coherent`] takes it from
//! the one coherent DMA registry the drivers use (virtio-net's rings and
//! frame buffers, the swiotlb area), recorded with owner [`DMA_OWNER`], so
//! `/api/dma` lists the API's buffers next to the drivers' as Linux's
//! `/sys/kernel/debug/dma-api` would. The API keeps only what it needs to
//! free it again (`dma_addr`, `size`) and to describe it; it can free no
//! other buffer, because it only ever names the addresses it was given.
//!
//! A coherent buffer is one buddy block of `GFP_DMA32` frames (falling back
//! to ZONE_DMA), zeroed, direct-mapped, below 4 GiB. Its handle counts the
//! block's `2^order` pages against the quota, and fill and checksum cover
//! the whole block (`bytes` = `PAGE_SIZE << order`, as for a `pages`
//! handle) through the direct map; `size` stays the bytes asked for, as
//! `/api/dma` shows it.
//!
//! Errors: size 0 or over one buddy block (4 MiB) → 400 EINVAL; no memory
//! or a full registry → 507 ENOMEM; over the quota → 507 EQUOTA; a system
//! without DMA → 400 EINVAL "not available in this build"; `?order=` other
//! than the block's → 409 EBUSY with nothing freed.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::ToString;
use core::fmt;
use serde::Serialize;

use mm::dma::{CoherentInfo, DmaError};
use mm::gfp::GfpFlags;
use mm::platform::Platform;
use mm::types::{MAX_ORDER, Order, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use mm::zone::ZoneType;

use super::Api;
use super::alloc_cmd::{find_handle, parse_id, parse_order_param};
use super::views::{GfpName, Hex};
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::Response;
use crate::server::router::RouteId;

/// The owner the API's coherent buffers carry in the DMA registry
/// (`/api/dma`'s `owner`).
pub const DMA_OWNER: &str = "api";

/// Largest coherent buffer from the buddy allocator: one block of order
/// `MAX_ORDER` (4 MiB).
pub const MAX_DMA_SIZE: u64 = PAGE_SIZE << MAX_ORDER;
/// Largest coherent buffer at all: over [`MAX_DMA_SIZE`] it comes from the
/// CMA area (`cma=`), if there is one.
pub const MAX_CMA_DMA_SIZE: u64 = mm::dma::MAX_CMA_BYTES;

/// The flags `dma_alloc_coherent()` allocates with (cf. `mm::dma`), shown
/// as the handle's `gfp`.
const DMA_GFP: GfpFlags = GfpFlags::GFP_KERNEL
    .union(GfpFlags::DMA32)
    .union(GfpFlags::ZERO);

/// Why [`super::System::dma_alloc_coherent`] or
/// [`super::System::dma_free_coherent`]
/// failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaCallError {
    /// This system has no coherent DMA (the trait's default).
    NotAvailable,
    /// The registry refused, as `mm::dma` reports it.
    Dma(DmaError),
}

impl From<DmaError> for DmaCallError {
    fn from(e: DmaError) -> Self {
        DmaCallError::Dma(e)
    }
}

impl fmt::Display for DmaCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaCallError::NotAvailable => write!(f, "coherent DMA is not available in this build"),
            DmaCallError::Dma(e) => e.fmt(f),
        }
    }
}

/// A `DmaCallError` as API.md's status and code.
fn dma_error(e: DmaCallError) -> ApiError {
    let message = e.to_string();
    match e {
        DmaCallError::NotAvailable => ApiError::einval(
            "allocation type \"dma\" is not available in this build (no coherent DMA)",
        ),
        DmaCallError::Dma(
            DmaError::NoMemory { .. }
            | DmaError::RegistryFull
            | DmaError::Unreachable { .. }
            | DmaError::NoBouncePool
            | DmaError::BounceFull { .. }
            | DmaError::TooManyMappings,
        ) => ApiError::enomem(message),
        DmaCallError::Dma(DmaError::InvalidSize { .. }) => ApiError::einval(message),
        DmaCallError::Dma(DmaError::NotFound { .. }) => ApiError::enoent(message),
        DmaCallError::Dma(
            DmaError::SizeMismatch { .. }
            | DmaError::Free(_)
            | DmaError::BadBouncePool
            | DmaError::BadSegments
            | DmaError::NotRam { .. },
        ) => ApiError::ebusy(message),
    }
}

/// One live `dma` handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaHandle {
    pub id: u64,
    /// Bytes asked for (what the registry records and the free names).
    pub size: u64,
    /// The buddy block behind it (for a CMA-backed buffer, `MAX_ORDER`;
    /// see `nr_pages`).
    pub order: Order,
    /// Pages behind it: `2^order`, or the CMA run's length.
    pub nr_pages: u64,
    /// Taken from the CMA area (over 4 MiB).
    pub cma: bool,
    pub zone: ZoneType,
    /// Where the device reaches it (== physical: no IOMMU).
    pub dma_addr: PhysAddr,
    /// Where the CPU reaches it (direct map).
    pub cpu_addr: VirtAddr,
    pub created_ms: u64,
}

impl DmaHandle {
    fn pfn(&self) -> Pfn {
        Pfn::from_phys(self.dma_addr)
    }
}

/// The `dma` part of [`Api`]'s state.
#[derive(Default)]
pub(super) struct DmaState {
    pub(super) handles: BTreeMap<u64, DmaHandle>,
}

/// A `dma` handle as API.md's `Handle`, plus the DMA view of it.
#[derive(Serialize)]
pub(super) struct DmaHandleJson {
    id: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    /// The buddy block's order; `null` for a CMA run.
    order: Option<u8>,
    nr_pages: u64,
    zone: &'static str,
    pfn: u64,
    phys: Hex,
    virt: Hex,
    gfp: GfpName,
    created_ms: u64,
    dma_addr: Hex,
    cpu_addr: Hex,
    owner: &'static str,
}

impl From<&DmaHandle> for DmaHandleJson {
    fn from(h: &DmaHandle) -> DmaHandleJson {
        DmaHandleJson {
            id: h.id,
            kind: "dma",
            size: h.size,
            order: (!h.cma).then_some(h.order.get()),
            nr_pages: h.nr_pages,
            zone: h.zone.name(),
            pfn: h.pfn().0,
            phys: Hex::new(h.dma_addr.0),
            virt: Hex::new(h.cpu_addr.0),
            gfp: GfpName(DMA_GFP),
            created_ms: h.created_ms,
            dma_addr: Hex::new(h.dma_addr.0),
            cpu_addr: Hex::new(h.cpu_addr.0),
            owner: DMA_OWNER,
        }
    }
}

impl<P: Platform> Api<'_, P> {
    /// The live `dma` handles, by id.
    pub fn dma_handles(&self) -> impl Iterator<Item = &DmaHandle> {
        self.dma.handles.values()
    }

    /// Whether `id` names a live `dma` handle.
    pub(super) fn is_dma_handle(&self, id: &str) -> bool {
        parse_id(id).is_ok_and(|id| self.dma.handles.contains_key(&id))
    }

    /// `{"type":"dma","size":N}` → `dma_alloc_coherent(N)`.
    pub(super) fn alloc_dma(&mut self, size: Option<u64>) -> Result<Response, ApiError> {
        let size = size.ok_or_else(|| {
            ApiError::einval(format!("missing \"size\" (bytes, 1..={MAX_DMA_SIZE})"))
        })?;
        // Up to one buddy block from the buddy allocator; larger buffers
        // (to MAX_CMA_DMA_SIZE) from the CMA area, as dma_alloc_coherent()
        // does through dma_alloc_contiguous().
        let cma = self.mm.lock().cma_area().is_some();
        let nr_pages = match Order::from_size_bytes(size) {
            Some(order) if size > 0 => order.nr_pages(),
            _ if cma && size > MAX_DMA_SIZE && size <= MAX_CMA_DMA_SIZE => size.div_ceil(PAGE_SIZE),
            // Within the contract's range but beyond one buddy block: what
            // is missing is the CMA area, as for {"type":"cma"} (404).
            _ if !cma && size > MAX_DMA_SIZE && size <= MAX_CMA_DMA_SIZE => {
                return Err(ApiError::enoent(format!(
                    "dma size {size} is over one buddy block ({MAX_DMA_SIZE}) and there is no CMA area (boot with cma=SIZE)"
                )));
            }
            _ if !cma => {
                return Err(ApiError::einval(format!(
                    "dma size {size} is out of range 1..={MAX_CMA_DMA_SIZE} (over {MAX_DMA_SIZE}: from a CMA area, cma=)"
                )));
            }
            _ => {
                return Err(ApiError::einval(format!(
                    "dma size {size} is out of range 1..={MAX_CMA_DMA_SIZE} (over {MAX_DMA_SIZE}: from the CMA area)"
                )));
            }
        };
        let held = self.quota_held_pages();
        if held.saturating_add(nr_pages) > self.quota_pages {
            return Err(ApiError::equota(format!(
                "API quota reached: {held} of {} pages ({} % of managed memory) held, {nr_pages} more asked",
                self.quota_pages, self.quota_pct
            )));
        }
        let info = self.system.dma_alloc_coherent(size).map_err(dma_error)?;
        let CoherentInfo {
            cpu_addr,
            dma_addr,
            order,
            nr_pages,
            cma,
            zone,
            ..
        } = info;
        let handle = DmaHandle {
            id: self.next_id,
            size,
            order,
            nr_pages,
            cma,
            zone,
            dma_addr,
            cpu_addr,
            created_ms: self.system.uptime_ms(),
        };
        self.next_id += 1;
        self.held_pages += nr_pages;
        self.dma.handles.insert(handle.id, handle);
        Ok(Response::json(201, &DmaHandleJson::from(&handle)))
    }

    fn forget_dma(&mut self, h: &DmaHandle) {
        if self.dma.handles.remove(&h.id).is_some() {
            self.held_pages -= h.nr_pages;
        }
    }

    /// `DELETE /api/alloc/{id}[?order=K]`, `POST …/fill`, `GET …/checksum`
    /// on a `dma` handle.
    pub(super) fn dma_handle_cmd(
        &mut self,
        route: RouteId,
        id: &str,
        req: &Request,
    ) -> Result<Response, ApiError> {
        let (_, h) = find_handle(&self.dma.handles, id)?;
        match route {
            RouteId::Free => self.free_dma(&h, req.query_param("order")),
            RouteId::Fill => self.fill_phys(req, h.pfn(), h.nr_pages),
            RouteId::Checksum => self.checksum_phys(req, h.pfn(), h.nr_pages),
            _ => Err(ApiError::enoent(format!(
                "{} is not available in this build",
                req.path
            ))),
        }
    }

    /// `dma_free_coherent()` of a handle; `?order=` must be its block's.
    fn free_dma(&mut self, h: &DmaHandle, order: Option<&str>) -> Result<Response, ApiError> {
        if let Some(s) = order {
            let order = parse_order_param(s)?;
            if h.cma || order != h.order {
                return Err(ApiError::ebusy(format!(
                    "allocation {} has order {}, not {order}; nothing freed",
                    h.id, h.order
                )));
            }
        }
        match self.system.dma_free_coherent(h.dma_addr, h.size) {
            Ok(()) => {}
            // The registry no longer has it: nothing is left to free, so
            // the handle goes too, and the oddity is reported.
            Err(e @ DmaCallError::Dma(DmaError::NotFound { .. })) => {
                self.forget_dma(h);
                return Err(ApiError::ebusy(format!(
                    "allocation {}: {e}; handle dropped",
                    h.id
                )));
            }
            Err(e) => return Err(dma_error(e)),
        }
        self.forget_dma(h);
        #[derive(Serialize)]
        struct Freed {
            freed: u64,
            order: Option<u8>,
            nr_pages: u64,
        }
        Ok(Response::json(
            200,
            &Freed {
                freed: h.id,
                order: (!h.cma).then_some(h.order.get()),
                nr_pages: h.nr_pages,
            },
        ))
    }

    /// `POST /api/reset`'s `dma` part: frees every `dma` handle. Returns
    /// the buffers freed (a refused free leaves the buffer allocated —
    /// leaked, never corrupted — and drops the handle all the same).
    pub(super) fn reset_dma(&mut self) -> u64 {
        let mut freed = 0;
        while let Some((_, h)) = self.dma.handles.pop_first() {
            if self.system.dma_free_coherent(h.dma_addr, h.size).is_ok() {
                freed += 1;
            }
            self.held_pages -= h.nr_pages;
        }
        // An emptied BTreeMap keeps its root node: drop it too, or that
        // node stays wherever the heap put it during the run.
        self.dma.handles = BTreeMap::new();
        freed
    }
}
