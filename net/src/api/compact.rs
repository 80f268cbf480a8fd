//! Compaction over HTTP: `POST /api/compact` (= writing
//! `/proc/sys/vm/compact_memory`), direct compaction in the allocation
//! slow path, and the API as the one owner of its movable pages.
//!
//! The API's movable pages are its `pages` handles allocated with
//! `__GFP_MOVABLE` (marked [`PageFlags::MOVABLE`](mm::page::PageFlags) at
//! allocation) and its page cache (on the LRU). When compaction moves one
//! ([`mm::compaction`]) the handle keeps its id and its bytes; its `pfn`,
//! `phys` and `virt` change. A page the API kmaps is pinned: it stays,
//! counted in `pgmigrate_fail`.

use alloc::collections::BTreeMap;
use alloc::format;
use serde::{Deserialize, Serialize};

use mm::compaction::{CompactResult, MigrateOwner};
use mm::gfp::GfpFlags;
use mm::platform::Platform;
use mm::types::{NR_ORDERS, Order, PAGE_OFFSET, Pfn, VirtAddr};
use mm::zone::{NR_ZONES, ZoneType};

use super::alloc_cmd::parse_body;
use super::pagecache::PageCacheState;
use super::vm::VmState;
use super::{Api, Handle};
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::Response;

/// The API as compaction sees it: the owner of its movable pages.
struct ApiPages<'s, 'a> {
    handles: &'s mut BTreeMap<u64, Handle>,
    pagecache: &'s mut PageCacheState,
    vm: &'s VmState<'a>,
    /// page_owner's records follow the pages (`now_ns`: the old frames'
    /// free time).
    page_owner: &'s mm::page_owner::PageOwner<'a>,
    now_ns: u64,
}

impl MigrateOwner for ApiPages<'_, '_> {
    fn can_migrate(&mut self, pfn: Pfn) -> bool {
        !self.vm.is_kmapped(pfn)
    }

    fn migrated(&mut self, moves: &[(Pfn, Pfn)]) {
        for &(src, dst) in moves {
            self.page_owner.migrate(src, dst, self.now_ns);
        }
        let mut rest = 0;
        for &(src, dst) in moves {
            if !self.pagecache.migrated(src, dst) {
                rest += 1;
            }
        }
        if rest == 0 {
            return;
        }
        // One pass over the pages handles for the whole batch.
        for h in self.handles.values_mut() {
            if let Some(&(_, dst)) = moves.iter().find(|(src, _)| *src == h.pfn) {
                h.pfn = dst;
                // Same zone, so a lowmem page stays directly mapped.
                h.virt = h.virt.map(|_| VirtAddr(PAGE_OFFSET + dst.phys().0));
            }
        }
    }
}

#[derive(Deserialize)]
struct CompactBody<'b> {
    #[serde(borrow)]
    zone: Option<&'b str>,
}

/// `{"DMA":[…],…}`: free blocks per order of the zones compacted.
#[derive(Serialize)]
struct FreeAreas(#[serde(serialize_with = "zone_map")] [Option<[u64; NR_ORDERS]>; NR_ZONES]);

fn zone_map<S: serde::Serializer>(
    areas: &[Option<[u64; NR_ORDERS]>; NR_ZONES],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(None)?;
    for (zt, counts) in ZoneType::ALL.iter().zip(areas) {
        if let Some(c) = counts {
            map.serialize_entry(zt.name(), c)?;
        }
    }
    map.end()
}

#[derive(Serialize)]
struct ZoneResult {
    zone: &'static str,
    result: &'static str,
    migrate_scanned: u64,
    free_scanned: u64,
    migrated: u64,
    failed: u64,
}

impl<'a, P: Platform> Api<'a, P> {
    /// Runs `f` with the API as the owner of the movable pages.
    pub(super) fn with_migrate_owner<R>(
        &mut self,
        f: impl FnOnce(&mut dyn MigrateOwner) -> R,
    ) -> R {
        let mm = self.mm;
        let mut owner = ApiPages {
            handles: &mut self.handles,
            pagecache: &mut self.pagecache,
            vm: &self.vm,
            page_owner: mm.page_owner(),
            now_ns: mm.platform().now_ns(),
        };
        f(&mut owner)
    }

    /// `POST /api/compact` `{"zone"?:NAME}`: compact every populated zone
    /// (or one) whole, as writing `/proc/sys/vm/compact_memory` does (cf.
    /// `compact_node()`).
    pub(super) fn compact(&mut self, req: &Request) -> Result<Response, ApiError> {
        // No body, or JSON null: every zone.
        let body: CompactBody<'_> =
            if req.body.iter().all(u8::is_ascii_whitespace) || req.body.trim_ascii() == b"null" {
                CompactBody { zone: None }
            } else {
                let body = parse_body(&req.body)?;
                super::alloc_cmd::check_fields(&req.body, &["zone"], "a compaction")?;
                body
            };
        let zone = match body.zone {
            None => None,
            Some(name) => Some(
                ZoneType::ALL
                    .into_iter()
                    .find(|z| z.name() == name)
                    .ok_or_else(|| ApiError::einval(format!("unknown zone \"{name}\"")))?,
            ),
        };
        let populated = |zt: ZoneType, pa: &mm::page_alloc::PageAlloc<'_>| {
            zone.is_none_or(|z| z == zt) && pa.zone(zt).is_populated()
        };
        let snapshot = |api: &Self| {
            let pa = api.mm.lock();
            FreeAreas(ZoneType::ALL.map(|zt| populated(zt, &pa).then(|| pa.free_area_counts(zt))))
        };
        if let Some(z) = zone
            && !self.mm.lock().zone(z).is_populated()
        {
            // A zone this machine does not populate: nothing to compact
            // there (404, as a name that exists in no machine is 400).
            return Err(ApiError::enoent(format!("zone {} has no memory", z.name())));
        }
        let before = snapshot(self);
        let mm = self.mm;
        let (stats, _) = self.with_migrate_owner(|owner| mm.compact_memory(zone, owner));
        let after = snapshot(self);
        let (mut migrated, mut failed) = (0, 0);
        let mut zones = alloc::vec::Vec::new();
        zones
            .try_reserve(NR_ZONES)
            .map_err(|_| ApiError::enomem("no memory for the answer"))?;
        for s in stats.iter().flatten() {
            {
                migrated += s.migrated;
                failed += s.failed;
                zones.push(ZoneResult {
                    zone: s.zone.name(),
                    result: s.result.name(),
                    migrate_scanned: s.migrate_scanned,
                    free_scanned: s.free_scanned,
                    migrated: s.migrated,
                    failed: s.failed,
                });
            }
        }
        #[derive(Serialize)]
        struct Compacted<'z> {
            migrated: u64,
            failed: u64,
            free_area_before: FreeAreas,
            free_area_after: FreeAreas,
            zones: &'z [ZoneResult],
        }
        Ok(Response::json(
            200,
            &Compacted {
                migrated,
                failed,
                free_area_before: before,
                free_area_after: after,
                zones: &zones,
            },
        ))
    }

    /// Direct compaction in the allocation slow path (cf.
    /// `__alloc_pages_direct_compact()`): for order > 0, with the API as the
    /// pages' owner. Whether it moved pages and a block of `order` is free
    /// now — worth another attempt. (A zone that could serve the request
    /// already needs none: the attempt failed for another reason, such as
    /// injected faults, which Linux checks once per request.)
    pub(super) fn direct_compact(&mut self, gfp: GfpFlags, order: Order) -> bool {
        if order.get() == 0 {
            return false;
        }
        let mm = self.mm;
        let moved_before = mm
            .lock()
            .vm_events()
            .get(mm::vmstat::VmEvent::PgMigrateSuccess);
        let r = self.with_migrate_owner(|owner| mm.try_to_compact_pages(gfp, order, owner));
        let moved = mm
            .lock()
            .vm_events()
            .get(mm::vmstat::VmEvent::PgMigrateSuccess)
            > moved_before;
        r == CompactResult::Success && moved
    }
}
