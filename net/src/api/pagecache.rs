//! The page cache (API.md v2, "Reclaimable and lazy memory"):
//! `{"type":"pagecache","size":N}` handles are clean file pages whose bytes
//! are a fixed function of (handle id, page index, byte), as if read from
//! a file. Their frames sit on the zones' LRU lists (`mm::vmscan`); reclaim
//! — kswapd between the low and high watermarks, direct reclaim in the
//! allocation slow path — drops unreferenced ones, and the next read of a
//! dropped page reads it back in: a major fault (`pgmajfault`, `pgpgin`),
//! with the same checksum as before. Every read marks the page accessed
//! (`folio_mark_accessed()`). `fill` is refused: the pages are clean and
//! read-only.
//!
//! Reclaim is driven from here because this module owns the mapping from a
//! frame back to its file page (Linux's `page->mapping`/`index`).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;

use serde::Serialize;

use mm::gfp::GfpFlags;
use mm::page::OwnerTag;
use mm::platform::Platform;
use mm::types::{Order, PAGE_SIZE, Pfn};
use mm::vmscan::{Reclaimer, SWAP_CLUSTER_MAX};
use mm::vmstat::VmEvent;
use mm::zone::ZoneType;

use super::Api;
use super::alloc_cmd::{Checksummed, parse_checksum_range};
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::Response;

/// Largest page-cache handle (1 GiB of file).
pub const MAX_PAGECACHE_SIZE: u64 = 1 << 30;
/// Pages kswapd reclaims at most per run (it runs again after the next
/// request if the zone is still below high).
const KSWAPD_BATCH: usize = 4096;
/// `mm_vmscan_kswapd_wake`'s `zid` (recorded, not printed): kswapd balances
/// every zone up to the highest, and no request passes it a zone index
/// or order (so `order=0`).
const KSWAPD_ZID: i32 = mm::zone::NR_ZONES as i32 - 1;
/// `pgpgin` is kept in 512-byte sectors (cf. `count_vm_events(PGPGIN)`).
const SECTORS_PER_PAGE: u64 = PAGE_SIZE / 512;

/// One page-cache handle.
#[derive(Debug)]
pub struct PageCacheHandle {
    pub id: u64,
    pub size: u64,
    /// Each page's frame while resident.
    pages: Vec<Option<Pfn>>,
    pub created_ms: u64,
}

impl PageCacheHandle {
    pub fn nr_pages(&self) -> u64 {
        self.pages.len() as u64
    }

    pub fn resident_pages(&self) -> u64 {
        self.pages.iter().flatten().count() as u64
    }
}

/// The page-cache part of [`Api`]'s state.
#[derive(Default)]
pub(super) struct PageCacheState {
    pub(super) handles: BTreeMap<u64, PageCacheHandle>,
    /// Resident frame → (handle id, page index).
    rmap: BTreeMap<u64, (u64, usize)>,
    /// A zone went below its low watermark: kswapd runs before the next
    /// request (cf. `wakeup_kswapd()`), never inside the one that woke it.
    pub(super) kswapd_woken: bool,
    pub(super) kswapd_runs: u64,
}

impl PageCacheState {
    /// Compaction moved a page from `src` to `dst`: if it is one of ours,
    /// repoint the file's page and the reverse map (the LRU position moved
    /// in `mem_map` already). Whether it was ours.
    pub(super) fn migrated(&mut self, src: Pfn, dst: Pfn) -> bool {
        let Some((id, index)) = self.rmap.remove(&src.0) else {
            return false;
        };
        self.rmap.insert(dst.0, (id, index));
        if let Some(slot) = self
            .handles
            .get_mut(&id)
            .and_then(|h| h.pages.get_mut(index))
        {
            *slot = Some(dst);
        }
        true
    }
}

#[derive(Serialize)]
pub(super) struct PageCacheJson {
    id: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    nr_pages: u64,
    resident_pages: u64,
    created_ms: u64,
}

impl From<&PageCacheHandle> for PageCacheJson {
    fn from(h: &PageCacheHandle) -> Self {
        PageCacheJson {
            id: h.id,
            kind: "pagecache",
            size: h.size,
            nr_pages: h.nr_pages(),
            resident_pages: h.resident_pages(),
            created_ms: h.created_ms,
        }
    }
}

/// The file's byte `j` of page `index` of handle `id`.
pub(super) fn fill_page(id: u64, index: usize, bytes: &mut [u8]) {
    let seed = id
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(index as u64 * 0x2545_f491);
    for (j, b) in bytes.iter_mut().enumerate() {
        *b = (seed >> ((j % 8) * 8)) as u8 ^ (j / 8) as u8;
    }
}

impl<P: Platform> Api<'_, P> {
    /// Read one page in: a frame (reclaiming if need be), the file's
    /// bytes, onto the LRU. `None` when memory cannot be had.
    fn read_in(&mut self, id: u64, index: usize) -> Option<Pfn> {
        // What Linux's page cache allocates with (mapping_gfp_mask()):
        // movable, so compaction may migrate it.
        let gfp = GfpFlags::GFP_HIGHUSER_MOVABLE;
        let pfn = match self.mm.alloc_pages(gfp, Order::ZERO, OwnerTag::PAGECACHE) {
            Ok(pfn) => pfn,
            Err(_) => {
                self.direct_reclaim(gfp, Order::ZERO);
                self.mm
                    .alloc_pages(gfp, Order::ZERO, OwnerTag::PAGECACHE)
                    .ok()?
            }
        };
        self.mm.with_bytes(pfn.0 * PAGE_SIZE, PAGE_SIZE, &mut |b| {
            fill_page(id, index, b)
        });
        let _ = self.mm.lock().lru_add(pfn);
        self.pagecache.rmap.insert(pfn.0, (id, index));
        self.note_watermarks();
        Some(pfn)
    }

    /// `{"type":"pagecache","size":N}`.
    pub(super) fn alloc_pagecache(&mut self, size: Option<u64>) -> Result<Response, ApiError> {
        let size = size
            .filter(|s| (1..=MAX_PAGECACHE_SIZE).contains(s))
            .ok_or_else(|| {
                ApiError::einval(format!(
                    "pagecache needs \"size\" in 1..={MAX_PAGECACHE_SIZE}"
                ))
            })?;
        let nr = size.div_ceil(PAGE_SIZE) as usize;
        let mut pages = Vec::new();
        pages
            .try_reserve_exact(nr)
            .map_err(|_| ApiError::enomem("out of memory for the page table of the file"))?;
        pages.resize(nr, None);
        let id = self.next_id;
        self.next_id += 1;
        self.pagecache.handles.insert(
            id,
            PageCacheHandle {
                id,
                size,
                pages,
                created_ms: self.system.uptime_ms(),
            },
        );
        for index in 0..nr {
            match self.read_in(id, index) {
                Some(pfn) => {
                    if let Some(h) = self.pagecache.handles.get_mut(&id) {
                        h.pages[index] = Some(pfn);
                    }
                }
                None => {
                    self.drop_pagecache(id);
                    return Err(ApiError::enomem(format!(
                        "page cache: no memory for page {index} of {nr}, even after reclaim"
                    )));
                }
            }
        }
        let h = self.pagecache.handles.get(&id).map(PageCacheJson::from);
        Ok(Response::json(201, &h))
    }

    /// Free a handle's resident pages and forget it.
    pub(super) fn drop_pagecache(&mut self, id: u64) -> bool {
        let Some(h) = self.pagecache.handles.remove(&id) else {
            return false;
        };
        for pfn in h.pages.into_iter().flatten() {
            self.pagecache.rmap.remove(&pfn.0);
            let _ = self.mm.free_pages(pfn, Order::ZERO);
        }
        true
    }

    /// Whether `id` names a page-cache handle.
    pub(super) fn is_pagecache_handle(&self, id: &str) -> bool {
        super::alloc_cmd::parse_id(id).is_ok_and(|id| self.pagecache.handles.contains_key(&id))
    }

    /// `DELETE`, `fill` and `checksum` of a page-cache handle.
    pub(super) fn pagecache_cmd(
        &mut self,
        route: crate::server::router::RouteId,
        id: &str,
        req: &Request,
    ) -> Result<Response, ApiError> {
        use crate::server::router::RouteId;
        let id = super::alloc_cmd::parse_id(id)?;
        match route {
            RouteId::Free => {
                if req.query_param("order").is_some() {
                    return Err(ApiError::einval(format!(
                        "?order= applies to pages handles; allocation {id} is a pagecache handle"
                    )));
                }
                self.drop_pagecache(id);
                #[derive(Serialize)]
                struct Freed {
                    freed: u64,
                }
                Ok(Response::json(200, &Freed { freed: id }))
            }
            RouteId::Fill => Err(ApiError::einval(format!(
                "allocation {id} is pagecache: clean file pages are read-only"
            ))),
            _ => self.pagecache_checksum(id, req),
        }
    }

    /// `GET …/checksum` of a page-cache handle: evicted pages are read
    /// back in (major faults); every page read is marked accessed.
    fn pagecache_checksum(&mut self, id: u64, req: &Request) -> Result<Response, ApiError> {
        let (size, nr) = self
            .pagecache
            .handles
            .get(&id)
            .map(|h| (h.size, h.pages.len()))
            .ok_or_else(|| ApiError::enoent(format!("no allocation with id {id}")))?;
        let touch = parse_checksum_range(req, size)?;
        let mut crc = mm::crc32::Crc32::new();
        let (first, end) = (touch.offset, touch.offset + touch.length);
        let mut at = first;
        while at < end {
            let index = (at / PAGE_SIZE) as usize;
            if index >= nr {
                break;
            }
            let resident = self
                .pagecache
                .handles
                .get(&id)
                .and_then(|h| h.pages.get(index).copied())
                .flatten();
            let pfn = match resident {
                Some(pfn) => pfn,
                None => {
                    let pfn = self.read_in(id, index).ok_or_else(|| {
                        ApiError::enomem(format!(
                            "page cache: no memory to read page {index} back in"
                        ))
                    })?;
                    if let Some(h) = self.pagecache.handles.get_mut(&id) {
                        h.pages[index] = Some(pfn);
                    }
                    // A major fault is a fault: `handle_mm_fault()` counts
                    // PGFAULT on entry, `filemap_fault()` PGMAJFAULT.
                    let mut pa = self.mm.lock();
                    pa.vm_events_mut().inc(VmEvent::PgFault);
                    pa.vm_events_mut().inc(VmEvent::PgMajFault);
                    pa.vm_events_mut().count(VmEvent::PgpgIn, SECTORS_PER_PAGE);
                    pfn
                }
            };
            let _ = self.mm.lock().mark_page_accessed(pfn);
            let in_page = at % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(end - at);
            self.mm
                .with_bytes(pfn.0 * PAGE_SIZE + in_page, n, &mut |b| crc.update(b));
            at += n;
        }
        Ok(Response::json(200, &Checksummed::new(touch, crc.finish())))
    }

    /// Drop up to `nr` reclaimable pages (cf. `shrink_node()` +
    /// `shrink_folio_list()` for clean file pages). Returns pages freed.
    pub(super) fn reclaim(&mut self, who: Reclaimer, highest: ZoneType, nr: usize) -> u64 {
        let mut freed = 0u64;
        let mut out = [Pfn(0); SWAP_CLUSTER_MAX];
        while (freed as usize) < nr {
            let want = (nr - freed as usize).min(SWAP_CLUSTER_MAX);
            let (n, _) = self.mm.lock().shrink_lru(highest, who, &mut out[..want]);
            if n == 0 {
                break;
            }
            for &pfn in &out[..n] {
                if let Some((id, index)) = self.pagecache.rmap.remove(&pfn.0)
                    && let Some(h) = self.pagecache.handles.get_mut(&id)
                {
                    h.pages[index] = None;
                }
                if self.mm.free_pages(pfn, Order::ZERO).is_ok() {
                    freed += 1;
                }
            }
            self.mm.lock().count_steal(who, n as u64);
        }
        if freed > 0 {
            // Reclaim made room: sleeping allocations retry.
            self.wake_page_waiters();
        }
        freed
    }

    /// Direct reclaim for a request that may sleep (`allocstall_*`).
    pub(super) fn direct_reclaim(&mut self, gfp: GfpFlags, order: Order) -> u64 {
        if !gfp.contains(GfpFlags::DIRECT_RECLAIM) || self.mm.lock().lru_pages() == 0 {
            return 0;
        }
        let highest = gfp.gfp_zone();
        self.mm
            .lock()
            .vm_events_mut()
            .inc(VmEvent::allocstall(highest));
        mm::trace_event!(
            self.mm,
            MmVmscanDirectReclaimBegin {
                order: order.get().into(),
                gfp
            }
        );
        let nr_reclaimed = self.reclaim(
            Reclaimer::Direct,
            highest,
            SWAP_CLUSTER_MAX.max(2 << order.get()),
        );
        mm::trace_event!(self.mm, MmVmscanDirectReclaimEnd { nr_reclaimed });
        nr_reclaimed
    }

    /// After an allocation: a zone below its low watermark wakes kswapd.
    pub(super) fn note_watermarks(&mut self) {
        let low = {
            let pa = self.mm.lock();
            pa.zones()
                .iter()
                .any(|z| z.is_populated() && z.free_pages < z.watermarks.low)
                && pa.lru_pages() > 0
        };
        if low {
            self.pagecache.kswapd_woken = true;
        }
    }

    /// kswapd's run (cf. `balance_pgdat()`): reclaim until every zone is
    /// above its high watermark or nothing is left to reclaim.
    pub(super) fn kswapd(&mut self) {
        if !core::mem::take(&mut self.pagecache.kswapd_woken) {
            return;
        }
        self.pagecache.kswapd_runs += 1;
        mm::trace_event!(
            self.mm,
            MmVmscanKswapdWake {
                nid: 0,
                zid: KSWAPD_ZID,
                order: 0
            }
        );
        // Shrinkers first (cf. `shrink_slab()`): empty slabs of the caches
        // that are not the kernel heap's own go back, and pkmap slots no
        // one uses are unmapped.
        self.shrink_slab_caches();
        if let Some(vm) = self.vm_state() {
            vm.pkmap
                .lock()
                .flush_all_zero_pkmaps(&super::vm::DynMapper(vm.mapper));
        }
        let mut reclaimed = 0usize;
        for zt in ZoneType::ALL.iter().rev() {
            while reclaimed < KSWAPD_BATCH {
                let short = {
                    let pa = self.mm.lock();
                    let z = pa.zone(*zt);
                    (z.is_populated() && z.free_pages < z.watermarks.high)
                        .then(|| (z.watermarks.high - z.free_pages) as usize)
                };
                let Some(short) = short else { break };
                let got = self.reclaim(Reclaimer::Kswapd, *zt, short.min(SWAP_CLUSTER_MAX));
                if got == 0 {
                    break;
                }
                reclaimed += got as usize;
            }
        }
        mm::trace_event!(self.mm, MmVmscanKswapdSleep { nid: 0 });
    }

    /// Page-cache pages resident, for meminfo.
    pub(super) fn pagecache_pages(&self) -> u64 {
        self.pagecache.rmap.len() as u64
    }

    /// `POST /api/reset`'s page-cache part.
    pub(super) fn reset_pagecache(&mut self) -> u64 {
        let ids: Vec<u64> = self.pagecache.handles.keys().copied().collect();
        let n = ids.len() as u64;
        for id in ids {
            self.drop_pagecache(id);
        }
        self.pagecache.handles = BTreeMap::new();
        self.pagecache.rmap = BTreeMap::new();
        n
    }
}
