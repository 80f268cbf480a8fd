//! Commands: `POST /api/alloc`, `DELETE /api/alloc/{id}`, fill, checksum,
//! `POST /api/reset`.

use alloc::format;
use serde::{Deserialize, Serialize};

use mm::gfp::GfpFlags;
use mm::page::OwnerTag;
use mm::page_alloc::{AllocError, FreeError};
use mm::platform::Platform;
use mm::types::{MAX_ORDER, Order};

use super::views::{HandleJson, Hex};
use super::{Api, Handle};
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::Response;

/// The body of `POST /api/alloc`, every field optional so that each
/// missing one gets its own message.
#[derive(Deserialize)]
struct AllocBody<'b> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'b str>,
    order: Option<u64>,
    #[serde(borrow)]
    gfp: Option<&'b str>,
    /// Bytes (`vmalloc`, `ioremap`, `dma`).
    size: Option<u64>,
    /// `"0x…"` (`ioremap`).
    #[serde(borrow)]
    phys: Option<&'b str>,
    /// Demand-zero (`vmalloc` only).
    lazy: Option<bool>,
    /// Bytes (`percpu` only).
    align: Option<u64>,
}

#[derive(Deserialize)]
struct FillBody {
    byte: Option<u64>,
    offset: Option<u64>,
    length: Option<u64>,
}

/// The part of an allocation a fill or checksum touches: `offset` and
/// `length` bytes (API.md v2), the whole allocation by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Touch {
    pub offset: u64,
    pub length: u64,
    /// Whether the request named a range (the answer then says `offset`).
    pub ranged: bool,
}

impl Touch {
    /// `[offset, offset + length)` inside `total` bytes, or 400.
    fn within(offset: Option<u64>, length: Option<u64>, total: u64) -> Result<Touch, ApiError> {
        let ranged = offset.is_some() || length.is_some();
        let offset = offset.unwrap_or(0);
        if offset > total {
            return Err(ApiError::einval(format!(
                "offset {offset} is past the allocation's {total} bytes"
            )));
        }
        let length = length.unwrap_or(total - offset);
        if length > total - offset {
            return Err(ApiError::einval(format!(
                "offset {offset} + length {length} is past the allocation's {total} bytes"
            )));
        }
        Ok(Touch {
            offset,
            length,
            ranged,
        })
    }

    /// The `offset` field of the answer: present only when asked for.
    pub fn offset_field(self) -> Option<u64> {
        self.ranged.then_some(self.offset)
    }
}

/// `POST …/fill` body: `{"byte":0-255,"offset"?,"length"?}` over an
/// allocation of `total` bytes.
pub(super) fn parse_fill(body: &[u8], total: u64) -> Result<(u8, Touch), ApiError> {
    let parsed: FillBody = parse_body(body)?;
    check_fields(body, &["byte", "offset", "length"], "a fill")?;
    let body = parsed;
    let byte = body
        .byte
        .ok_or_else(|| ApiError::einval("missing \"byte\" (0..=255)"))?;
    let byte = u8::try_from(byte)
        .map_err(|_| ApiError::einval(format!("byte {byte} is out of range 0..=255")))?;
    Ok((byte, Touch::within(body.offset, body.length, total)?))
}

/// `GET …/checksum?offset=&length=` over an allocation of `total` bytes.
pub(super) fn parse_checksum_range(req: &Request, total: u64) -> Result<Touch, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        match req.query_param(name) {
            None => Ok(None),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|_| !s.starts_with('+'))
                .map(Some)
                .ok_or_else(|| ApiError::einval(format!("malformed {name} '{s}'"))),
        }
    };
    Touch::within(number("offset")?, number("length")?, total)
}

/// `{"bytes":N[,"offset":O]}`, the answer to a fill.
#[derive(Serialize)]
pub(super) struct Filled {
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// `{"bytes":N,"crc32":"0x…"[,"offset":O]}`, the answer to a checksum.
#[derive(Serialize)]
pub(super) struct Checksummed {
    pub bytes: u64,
    pub crc32: Hex,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl Checksummed {
    pub fn new(touch: Touch, crc: u32) -> Checksummed {
        Checksummed {
            bytes: touch.length,
            crc32: Hex::padded32(crc),
            offset: touch.offset_field(),
        }
    }
}

impl Filled {
    pub fn new(touch: Touch) -> Filled {
        Filled {
            bytes: touch.length,
            offset: touch.offset_field(),
        }
    }
}

/// Allocation types of API.md that this build does not implement yet.
const NOT_YET: [&str; 2] = ["vmalloc", "ioremap"];

/// Deepest `[`/`{` nesting a body may have. serde-json-core recurses once
/// per level (also through fields it ignores), so a 64 KiB body of `[`
/// would otherwise overflow the kernel stack.
const MAX_JSON_NESTING: usize = 16;

/// The deepest bracket nesting of `body`, outside strings.
fn json_nesting(body: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parse a JSON object body; trailing bytes other than whitespace are an
/// error.
pub(super) fn parse_body<'b, T: Deserialize<'b>>(body: &'b [u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::einval("a JSON body is required"));
    }
    if json_nesting(body) > MAX_JSON_NESTING {
        return Err(ApiError::einval(format!(
            "malformed JSON body: nested deeper than {MAX_JSON_NESTING} levels"
        )));
    }
    match serde_json_core::from_slice::<T>(body) {
        Ok((value, used))
            if body
                .get(used..)
                .unwrap_or_default()
                .iter()
                .all(u8::is_ascii_whitespace) =>
        {
            Ok(value)
        }
        Ok(_) => Err(ApiError::einval("malformed JSON body: trailing characters")),
        Err(e) => Err(ApiError::einval(format!("malformed JSON body: {e}"))),
    }
}

/// The top-level keys of a JSON object body, checked against `allowed`:
/// the first key not in it, if any (a visitor over the object that skips
/// every value; nothing is allocated).
struct FieldCheck<'a> {
    allowed: &'a [&'a str],
}

impl<'de> serde::de::DeserializeSeed<'de> for FieldCheck<'_> {
    type Value = Option<&'de str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldCheck<'_> {
    type Value = Option<&'de str>;
    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut unknown = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            map.next_value::<serde::de::IgnoredAny>()?;
            if unknown.is_none() && !self.allowed.contains(&key) {
                unknown = Some(key);
            }
        }
        Ok(unknown)
    }
}

/// Refuses (400 EINVAL) a JSON object body with a field outside
/// `allowed`: a field that does not apply to this request (`what` says to
/// what, e.g. `type "pages"`) or that no request takes, so that a typo
/// is an error rather than a silently ignored option, and the server is
/// exactly as strict as `/openapi.json`'s `additionalProperties: false`.
/// An empty body passes (the caller decides whether one is required).
pub(super) fn check_fields(body: &[u8], allowed: &[&str], what: &str) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let mut de = serde_json_core::de::Deserializer::new(body, None);
    match serde::de::DeserializeSeed::deserialize(FieldCheck { allowed }, &mut de) {
        Ok(None) => Ok(()),
        Ok(Some(field)) => Err(ApiError::einval(format!(
            "\"{field}\" does not apply to {what} (it takes {})",
            FieldList(allowed)
        ))),
        Err(e) => Err(ApiError::einval(format!("malformed JSON body: {e}"))),
    }
}

/// `"a", "b", "c"`.
struct FieldList<'a>(&'a [&'a str]);

impl core::fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "\"{name}\"")?;
        }
        Ok(())
    }
}

/// The fields `POST /api/alloc` takes for each `type`: the type's own,
/// and the slow path's (`gfp`, `task`, `oom`, `wait_ms`), which every
/// type goes through.
pub(super) fn alloc_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "pages" => &["type", "gfp", "task", "oom", "wait_ms", "order"],
        "kmalloc" | "dma" | "pagecache" | "cma" => {
            &["type", "gfp", "task", "oom", "wait_ms", "size"]
        }
        "vmalloc" => &["type", "gfp", "task", "oom", "wait_ms", "size", "lazy"],
        "ioremap" => &["type", "gfp", "task", "oom", "wait_ms", "size", "phys"],
        "cache" => &["type", "gfp", "task", "oom", "wait_ms", "cache"],
        "mempool" => &["type", "gfp", "task", "oom", "wait_ms", "pool"],
        "percpu" => &["type", "gfp", "task", "oom", "wait_ms", "size", "align"],
        _ => return None,
    })
}

/// The query parameters `/openapi.json` documents for route `id`, for
/// the routes that take any; `None` for the others (their query string
/// is not looked at).
pub(super) fn documented_query(
    id: crate::server::router::RouteId,
) -> Option<&'static [&'static str]> {
    use crate::server::router::RouteId;
    Some(match id {
        RouteId::Allocations => &["offset", "limit"],
        RouteId::Pagemap => &["start_pfn", "count"],
        RouteId::Free => &["order"],
        RouteId::Checksum => &["offset", "length"],
        RouteId::Pagetable => &["addr"],
        RouteId::Dmesg | RouteId::DmesgJson => &["since"],
        _ => return None,
    })
}

/// Refuses (400 EINVAL) a query parameter a route does not take, as
/// [`check_fields`] does for body fields: a misspelt `?lenght=` must not
/// silently mean "the whole allocation".
pub(super) fn check_query(req: &Request, allowed: &[&str]) -> Result<(), ApiError> {
    if req.query.is_empty() {
        return Ok(());
    }
    for pair in req.query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !allowed.contains(&key) {
            return Err(ApiError::einval(format!(
                "unknown query parameter '{key}' (this route takes {})",
                FieldList(allowed)
            )));
        }
    }
    Ok(())
}

/// A handle id: decimal digits, at least 1.
pub(super) fn parse_id(s: &str) -> Result<u64, ApiError> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::einval(format!("malformed handle id '{s}'")));
    }
    s.parse::<u64>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| ApiError::einval(format!("malformed handle id '{s}'")))
}

/// The live handle `id` names in one handle table, with its number; 404
/// ENOENT if there is none.
pub(super) fn find_handle<T: Copy>(
    handles: &alloc::collections::BTreeMap<u64, T>,
    id: &str,
) -> Result<(u64, T), ApiError> {
    let id = parse_id(id)?;
    let h = *handles
        .get(&id)
        .ok_or_else(|| ApiError::enoent(format!("no allocation with id {id}")))?;
    Ok((id, h))
}

/// `?order=K` of a free: decimal digits, 0..=10.
pub(super) fn parse_order_param(s: &str) -> Result<Order, ApiError> {
    let value = s
        .parse::<u64>()
        .ok()
        .filter(|_| !s.starts_with('+'))
        .ok_or_else(|| ApiError::einval(format!("malformed order '{s}'")))?;
    parse_order(value)
}

fn parse_order(value: u64) -> Result<Order, ApiError> {
    u8::try_from(value)
        .ok()
        .and_then(Order::new)
        .ok_or_else(|| ApiError::einval(format!("order {value} is out of range 0..={MAX_ORDER}")))
}

impl<P: Platform> Api<'_, P> {
    fn lookup(&self, id: &str) -> Result<Handle, ApiError> {
        let id = parse_id(id)?;
        self.handles
            .get(&id)
            .copied()
            .ok_or_else(|| ApiError::enoent(format!("no allocation with id {id}")))
    }

    /// `POST /api/alloc`.
    pub(super) fn alloc(&mut self, req: &Request) -> Result<Response, ApiError> {
        let body: AllocBody<'_> = parse_body(&req.body)?;
        if body.lazy.is_some() && body.kind != Some("vmalloc") {
            return Err(ApiError::einval(
                "\"lazy\" applies to \"vmalloc\" only (demand-zero areas)",
            ));
        }
        if let Some(kind) = body.kind
            && let Some(allowed) = alloc_fields(kind)
        {
            check_fields(&req.body, allowed, &format!("type \"{kind}\""))?;
            // Every type's slow path reads "gfp": a malformed one is an
            // error whatever the type.
            if let Some(s) = body.gfp {
                GfpFlags::parse(s)
                    .map_err(|e| ApiError::einval(format!("bad gfp \"{s}\": {e}")))?;
            }
        }
        match body.kind {
            None => return Err(ApiError::einval("missing \"type\"")),
            Some("pages") => {}
            Some("vmalloc") if self.has_vm() => {
                return self.alloc_vmalloc(req, body.size, body.lazy == Some(true));
            }
            Some("ioremap") if self.has_vm() => {
                return self.alloc_ioremap(req, body.phys, body.size);
            }
            Some(kind @ ("kmalloc" | "cache" | "mempool")) => {
                return self.alloc_slab(kind, &req.body);
            }
            Some("dma") => return self.alloc_dma(body.size),
            Some("pagecache") => return self.alloc_pagecache(body.size),
            Some("cma") => return self.alloc_cma(body.size),
            Some("percpu") => return self.alloc_percpu(body.size, body.align),
            Some(kind) if NOT_YET.contains(&kind) => {
                return Err(ApiError::einval(format!(
                    "allocation type \"{kind}\" is not supported yet in this build (only \"pages\", \"kmalloc\", \"cache\", \"mempool\", \"dma\")"
                )));
            }
            Some(kind) => {
                return Err(ApiError::einval(format!(
                    "unknown allocation type \"{kind}\""
                )));
            }
        }
        let order = parse_order(
            body.order
                .ok_or_else(|| ApiError::einval("missing \"order\" (0..=10)"))?,
        )?;
        let gfp = match body.gfp {
            None => GfpFlags::GFP_KERNEL,
            Some(s) => {
                GfpFlags::parse(s).map_err(|e| ApiError::einval(format!("bad gfp \"{s}\": {e}")))?
            }
        };
        let nr_pages = order.nr_pages();
        if self.quota_held_pages() + nr_pages > self.quota_pages {
            return Err(ApiError::equota(format!(
                "API quota reached: {} of {} pages ({} % of managed memory) held, {} more asked",
                self.quota_held_pages(),
                self.quota_pages,
                self.quota_pct,
                nr_pages
            )));
        }
        let pfn = self
            .mm
            .alloc_pages(gfp, order, OwnerTag::API)
            .map_err(|e| match e {
                AllocError::NoMemory { .. } => ApiError::enomem(format!(
                    "page allocation failure: order:{order}, mode:{gfp}"
                )),
                AllocError::ZoneBad { .. } => {
                    ApiError::einval(format!("conflicting zone modifiers in {gfp}"))
                }
            })?;
        let (zone, virt) = {
            let pa = self.mm.lock();
            (pa.zone_of(pfn), pa.page_address(pfn))
        };
        let Some(zone) = zone else {
            // Cannot happen for a frame the allocator handed out; never
            // keep what we cannot describe.
            let _ = self.mm.free_pages(pfn, order);
            return Err(ApiError::enomem("allocated frame outside every zone"));
        };
        let handle = Handle {
            id: self.next_id,
            pfn,
            order,
            gfp,
            zone,
            virt,
            created_ms: self.system.uptime_ms(),
        };
        self.next_id += 1;
        self.held_pages += nr_pages;
        // A movable allocation's one owner is this handle: compaction may
        // move it (see `compact.rs`).
        if gfp.contains(GfpFlags::MOVABLE) {
            let _ = self.mm.lock().set_movable(pfn, true);
        }
        self.handles.insert(handle.id, handle);
        Ok(Response::json(201, &HandleJson::from(&handle)))
    }

    /// `DELETE /api/alloc/{id}[?order=K]`.
    pub(super) fn free(
        &mut self,
        req: &Request,
        id: &str,
        order: Option<&str>,
    ) -> Result<Response, ApiError> {
        if let Some(h) = self.vm_lookup(id) {
            return self.free_vm(req, h, order);
        }
        let handle = self.lookup(id)?;
        self.check_not_kmapped(&handle)?;
        let order = match order {
            None => handle.order,
            Some(s) => parse_order_param(s)?,
        };
        // The allocator itself refuses a wrong order (cf. bad_page()), so
        // the check is the kernel's, not a copy of it.
        self.mm.free_pages(handle.pfn, order).map_err(|e| match e {
            FreeError::WrongOrder {
                allocated,
                requested,
            } => ApiError::ebusy(format!(
                "allocation {} has order {allocated}, not {requested}; nothing freed",
                handle.id
            )),
            other => ApiError::ebusy(format!(
                "allocation {} cannot be freed: {other:?}",
                handle.id
            )),
        })?;
        self.forget(handle);
        #[derive(Serialize)]
        struct Freed {
            freed: u64,
            order: u8,
            nr_pages: u64,
        }
        Ok(Response::json(
            200,
            &Freed {
                freed: handle.id,
                order: handle.order.get(),
                nr_pages: handle.order.nr_pages(),
            },
        ))
    }

    fn forget(&mut self, handle: Handle) {
        if self.handles.remove(&handle.id).is_some() {
            self.held_pages -= handle.order.nr_pages();
        }
    }

    /// `POST /api/alloc/{id}/fill`.
    pub(super) fn fill(&mut self, req: &Request, id: &str) -> Result<Response, ApiError> {
        let vm_handle = self.vm_lookup(id);
        let handle = match vm_handle {
            Some(_) => None,
            None => Some(self.lookup(id)?),
        };
        let handle = match (handle, vm_handle) {
            (Some(handle), _) => handle,
            (None, Some(h)) => return self.fill_vm(req, h),
            (None, None) => return Err(ApiError::enoent(format!("no allocation with id {id}"))),
        };
        self.fill_phys(req, handle.pfn, handle.order.nr_pages())
    }

    /// `fill` of `nr_pages` physically contiguous frames from `pfn`
    /// (pages, dma and cma handles), through the platform's mappings.
    pub(super) fn fill_phys(
        &self,
        req: &Request,
        pfn: mm::types::Pfn,
        nr_pages: u64,
    ) -> Result<Response, ApiError> {
        let (byte, touch) = parse_fill(&req.body, nr_pages * mm::types::PAGE_SIZE)?;
        let phys = pfn.phys().0 + touch.offset;
        self.mm
            .with_bytes(phys, touch.length, &mut |bytes| bytes.fill(byte));
        Ok(Response::json(200, &Filled::new(touch)))
    }

    /// `checksum` of `nr_pages` physically contiguous frames from `pfn`.
    pub(super) fn checksum_phys(
        &self,
        req: &Request,
        pfn: mm::types::Pfn,
        nr_pages: u64,
    ) -> Result<Response, ApiError> {
        let touch = parse_checksum_range(req, nr_pages * mm::types::PAGE_SIZE)?;
        let mut crc = mm::crc32::Crc32::new();
        let phys = pfn.phys().0 + touch.offset;
        self.mm
            .with_bytes(phys, touch.length, &mut |bytes| crc.update(bytes));
        Ok(Response::json(200, &Checksummed::new(touch, crc.finish())))
    }

    /// `GET /api/alloc/{id}/checksum`.
    pub(super) fn checksum(&mut self, req: &Request, id: &str) -> Result<Response, ApiError> {
        if let Some(h) = self.vm_lookup(id) {
            return self.checksum_vm(req, h);
        }
        let handle = self.lookup(id)?;
        self.checksum_phys(req, handle.pfn, handle.order.nr_pages())
    }

    /// `POST /api/reset`: free every handle.
    pub(super) fn reset(&mut self) -> Response {
        // Tracing back to boot first (all events off, ring empty), so the
        // frees below are not recorded.
        self.mm.tracer().reset();
        // Kmaps and vm areas first: a kmapped page cannot be freed.
        self.reset_tasks();
        let mut freed = self.reset_pagecache();
        freed += self.reset_vm();
        freed += self.reset_dma();
        freed += self.reset_cma();
        freed += self.reset_percpu();
        freed += self.reset_slab();
        while let Some((_, handle)) = self.handles.pop_first() {
            // Each handle is a block the API allocated with exactly this
            // order, so the free cannot be refused; if it ever were, the
            // block stays allocated (leaked, never corrupted).
            if self.mm.free_pages(handle.pfn, handle.order).is_ok() {
                freed += 1;
            }
            self.held_pages -= handle.order.nr_pages();
        }
        // An emptied BTreeMap keeps its root node: drop it too, or that
        // node stays wherever the heap put it during the run.
        self.handles = alloc::collections::BTreeMap::new();
        self.settle_slab();
        // The per-CPU lists go back to the buddy allocator (boot's state
        // was recorded drained), HighAtomic pageblocks reserved during the
        // run go back to Movable and their free blocks merge again, and
        // the frames deferred init has still to hand over come in now, as
        // the boot state counts them (`mark_boot_complete`).
        {
            let mut pa = self.mm.lock();
            pa.drain_all_pages();
            pa.release_highatomic_reserve();
            pa.deferred_init_all();
        }
        #[derive(Serialize)]
        struct Reset {
            freed: u64,
        }
        Response::json(200, &Reset { freed })
    }
}
