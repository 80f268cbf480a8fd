//! CMA over HTTP: `{"type":"cma","size":N}` is `cma_alloc()` (contiguous
//! frames of the `cma=` area, movable pages migrated out of the way),
//! `DELETE` is `cma_release()`, fill and checksum touch the run, and
//! `GET /api/cma` shows the area (API.md v2).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::ToString;
use serde::Serialize;

use mm::cma::{CmaArea, CmaError};
use mm::platform::Platform;
use mm::types::{PAGE_OFFSET, PAGE_SIZE, Pfn};
use mm::zone::ZoneType;

use super::Api;
use super::alloc_cmd::{find_handle, parse_id};
use super::views::Hex;
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::Response;
use crate::server::router::RouteId;

/// One live `cma` handle: `count` frames from `pfn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmaHandle {
    pub id: u64,
    pub pfn: Pfn,
    pub count: u64,
    pub zone: ZoneType,
    /// Direct-mapped (a lowmem area).
    pub lowmem: bool,
    pub created_ms: u64,
}

/// The CMA part of [`Api`]'s state.
#[derive(Default)]
pub(super) struct CmaState {
    pub(super) handles: BTreeMap<u64, CmaHandle>,
}

#[derive(Serialize)]
pub(super) struct CmaHandleJson {
    id: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    nr_pages: u64,
    zone: &'static str,
    pfn: u64,
    phys: Hex,
    virt: Option<Hex>,
    created_ms: u64,
}

impl From<&CmaHandle> for CmaHandleJson {
    fn from(h: &CmaHandle) -> Self {
        CmaHandleJson {
            id: h.id,
            kind: "cma",
            size: h.count * PAGE_SIZE,
            nr_pages: h.count,
            zone: h.zone.name(),
            pfn: h.pfn.0,
            phys: Hex::new(h.pfn.phys().0),
            virt: h.lowmem.then(|| Hex::new(PAGE_OFFSET + h.pfn.phys().0)),
            created_ms: h.created_ms,
        }
    }
}

fn cma_error(e: CmaError) -> ApiError {
    let msg = e.to_string();
    match e {
        CmaError::NoArea => ApiError::enoent(msg),
        CmaError::BadSize { .. } => ApiError::einval(msg),
        CmaError::Busy { .. } => ApiError::enomem(msg),
        CmaError::NotAllocated { .. } => ApiError::ebusy(msg),
    }
}

/// `get_order(size)`: the alignment `dma_alloc_contiguous()` asks for.
fn get_order(bytes: u64) -> u8 {
    let pages = bytes.div_ceil(PAGE_SIZE).max(1);
    (64 - (pages - 1).leading_zeros()) as u8
}

impl<P: Platform> Api<'_, P> {
    /// `{"type":"cma","size":N}`.
    pub(super) fn alloc_cma(&mut self, size: Option<u64>) -> Result<Response, ApiError> {
        let size = size.ok_or_else(|| ApiError::einval("missing \"size\" (bytes)"))?;
        if size == 0 {
            return Err(ApiError::einval("size must be at least 1 byte"));
        }
        let count = size.div_ceil(PAGE_SIZE);
        if self.quota_held_pages().saturating_add(count) > self.quota_pages {
            return Err(ApiError::equota(format!(
                "API quota reached: {} of {} pages held, {count} more asked",
                self.quota_held_pages(),
                self.quota_pages
            )));
        }
        let mm = self.mm;
        let pfn = self
            .with_migrate_owner(|owner| mm.cma_alloc(count, get_order(size), owner))
            .map_err(cma_error)?;
        let (zone, lowmem) = {
            let pa = self.mm.lock();
            (pa.zone_of(pfn), pa.page_address(pfn).is_some())
        };
        let handle = CmaHandle {
            id: self.next_id,
            pfn,
            count,
            zone: zone.unwrap_or(ZoneType::Dma32),
            lowmem,
            created_ms: self.system.uptime_ms(),
        };
        self.next_id += 1;
        self.held_pages += count;
        self.cma.handles.insert(handle.id, handle);
        Ok(Response::json(201, &CmaHandleJson::from(&handle)))
    }

    /// Whether `id` names a `cma` handle.
    pub(super) fn is_cma_handle(&self, id: &str) -> bool {
        parse_id(id).is_ok_and(|id| self.cma.handles.contains_key(&id))
    }

    /// Free, fill or checksum of a `cma` handle.
    pub(super) fn cma_handle_cmd(
        &mut self,
        route: RouteId,
        id: &str,
        req: &Request,
    ) -> Result<Response, ApiError> {
        let (id, h) = find_handle(&self.cma.handles, id)?;
        match route {
            RouteId::Free => {
                self.mm.cma_release(h.pfn, h.count).map_err(cma_error)?;
                self.cma.handles.remove(&id);
                self.held_pages -= h.count;
                self.wake_page_waiters();
                #[derive(Serialize)]
                struct Freed {
                    freed: u64,
                    nr_pages: u64,
                }
                Ok(Response::json(
                    200,
                    &Freed {
                        freed: id,
                        nr_pages: h.count,
                    },
                ))
            }
            RouteId::Fill => self.fill_phys(req, h.pfn, h.count),
            RouteId::Checksum => self.checksum_phys(req, h.pfn, h.count),
            _ => Err(ApiError::enoent(format!("{} is not available", req.path))),
        }
    }

    /// `GET /api/cma`: `{"areas":[{"base","size","used_pages","free_pages"}]}`.
    pub(super) fn cma_view(&self) -> Response {
        #[derive(Serialize)]
        struct AreaJson {
            base: Hex,
            size: u64,
            nr_pages: u64,
            used_pages: u64,
            free_pages: u64,
            zone: &'static str,
        }
        #[derive(Serialize)]
        struct Areas<'x> {
            areas: &'x [AreaJson],
        }
        let pa = self.mm.lock();
        let area: Option<CmaArea> = pa.cma_area();
        let json = area.map(|a| {
            [AreaJson {
                base: Hex::new(a.base.phys().0),
                size: a.count * PAGE_SIZE,
                nr_pages: a.count,
                used_pages: pa.cma_used_pages(),
                free_pages: pa.cma_free_pages(),
                zone: pa.zone_of(a.base).map_or("?", |z| z.name()),
            }]
        });
        drop(pa);
        let areas: &[AreaJson] = json.as_ref().map_or(&[], |a| a.as_slice());
        Response::json(200, &Areas { areas })
    }

    /// `POST /api/reset`'s CMA part: every run released.
    pub(super) fn reset_cma(&mut self) -> u64 {
        let mut freed = 0;
        while let Some((_, h)) = self.cma.handles.pop_first() {
            if self.mm.cma_release(h.pfn, h.count).is_ok() {
                freed += 1;
            }
            self.held_pages -= h.count;
        }
        self.cma.handles = BTreeMap::new();
        freed
    }
}
