//! `GET /api/allocations?offset=&limit=` and `GET /api/alloc/{id}`: the
//! API's handles, whatever their type, in id order.
//!
//! The handles live in one table per type (pages here, the others in
//! `vm`, `slab`, `dma`); the listing merges them lazily by id, so listing
//! copies nothing but the page asked for, and renders it through a
//! [`BodyWriter`] (page-sized, fallible pieces): with 20 000 live handles
//! and the heap nearly dry, the answer is a page of them or a 507 — never a
//! multi-megabyte buffer the kernel cannot get.

use core::iter::Peekable;

use serde::Serialize;

use mm::platform::Platform;

use super::alloc_cmd::parse_id;
use super::views::HandleJson;
use super::vm::VmHandleJson;
use super::{Api, dma, slab};
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::{BodyWriter, CONTENT_TYPE_JSON, Response};

/// `limit` when the query gives none (API.md).
pub const DEFAULT_LIMIT: u64 = 1000;
/// Largest `limit` accepted: a page stays a few hundred KiB.
pub const MAX_LIMIT: u64 = 1000;

/// Any handle as JSON (the fields of its type's `Handle`).
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum AnyHandleJson {
    Pages(HandleJson),
    Vm(VmHandleJson),
    Slab(slab::SlabHandleJson),
    Dma(dma::DmaHandleJson),
    PageCache(super::pagecache::PageCacheJson),
    Cma(super::cma::CmaHandleJson),
    Percpu(super::percpu::PercpuHandleJson),
}

/// Merges seven id-ordered streams (one per handle table) into one
/// id-ordered stream, without collecting them.
struct MergeById<
    A: Iterator,
    B: Iterator,
    C: Iterator,
    D: Iterator,
    E: Iterator,
    F: Iterator,
    G: Iterator,
> {
    a: Peekable<A>,
    b: Peekable<B>,
    c: Peekable<C>,
    d: Peekable<D>,
    e: Peekable<E>,
    f: Peekable<F>,
    g: Peekable<G>,
}

impl<A, B, C, D, E, F, G> Iterator for MergeById<A, B, C, D, E, F, G>
where
    A: Iterator<Item = (u64, AnyHandleJson)>,
    B: Iterator<Item = (u64, AnyHandleJson)>,
    C: Iterator<Item = (u64, AnyHandleJson)>,
    D: Iterator<Item = (u64, AnyHandleJson)>,
    E: Iterator<Item = (u64, AnyHandleJson)>,
    F: Iterator<Item = (u64, AnyHandleJson)>,
    G: Iterator<Item = (u64, AnyHandleJson)>,
{
    type Item = AnyHandleJson;

    fn next(&mut self) -> Option<AnyHandleJson> {
        let id = |p: Option<&(u64, AnyHandleJson)>| p.map_or(u64::MAX, |(id, _)| *id);
        let ids = [
            id(self.a.peek()),
            id(self.b.peek()),
            id(self.c.peek()),
            id(self.d.peek()),
            id(self.e.peek()),
            id(self.f.peek()),
            id(self.g.peek()),
        ];
        let (which, _) = ids.iter().enumerate().min_by_key(|(_, id)| **id)?;
        let next = match which {
            0 => self.a.next(),
            1 => self.b.next(),
            2 => self.c.next(),
            3 => self.d.next(),
            4 => self.e.next(),
            5 => self.f.next(),
            _ => self.g.next(),
        };
        next.map(|(_, h)| h)
    }
}

/// A query parameter that must be a decimal number in `0..=max`.
fn parse_count(name: &str, value: Option<&str>, default: u64, max: u64) -> Result<u64, ApiError> {
    let Some(s) = value else { return Ok(default) };
    s.parse::<u64>()
        .ok()
        .filter(|v| *v <= max && !s.starts_with('+'))
        .ok_or_else(|| {
            ApiError::einval(alloc::format!(
                "{name} must be a number in 0..={max}, not '{s}'"
            ))
        })
}

impl<P: Platform> Api<'_, P> {
    /// Live handles of every type.
    pub(super) fn nr_handles(&self) -> usize {
        self.handles.len()
            + self.vm.handles.len()
            + self.slab.handles.len()
            + self.dma.handles.len()
            + self.pagecache.handles.len()
            + self.cma.handles.len()
            + self.percpu.handles.len()
    }

    /// Every handle in id order, rendered lazily.
    fn all_handles(&self) -> impl Iterator<Item = AnyHandleJson> + '_ {
        let pages = self.handles.values();
        let vm = self.vm.handles.values();
        let slab = self.slab.handles.values();
        let dma = self.dma.handles.values();
        MergeById {
            a: pages
                .map(|h| (h.id, AnyHandleJson::Pages(HandleJson::from(h))))
                .peekable(),
            b: vm
                .map(|h| (h.id, AnyHandleJson::Vm(VmHandleJson::from(h))))
                .peekable(),
            c: slab
                .map(|h| (h.id, AnyHandleJson::Slab(h.into())))
                .peekable(),
            d: dma.map(|h| (h.id, AnyHandleJson::Dma(h.into()))).peekable(),
            e: self
                .pagecache
                .handles
                .values()
                .map(|h| (h.id, AnyHandleJson::PageCache(h.into())))
                .peekable(),
            f: self
                .cma
                .handles
                .values()
                .map(|h| (h.id, AnyHandleJson::Cma(h.into())))
                .peekable(),
            g: self
                .percpu
                .handles
                .values()
                .map(|h| (h.id, AnyHandleJson::Percpu(self.percpu.json(h))))
                .peekable(),
        }
    }

    /// `GET /api/allocations?offset=&limit=`:
    /// `{"total":N,"offset":O,"limit":L,"allocations":[Handle…]}`.
    pub(super) fn allocations_view(&self, req: &Request) -> Result<Response, ApiError> {
        let offset = parse_count("offset", req.query_param("offset"), 0, u64::MAX >> 1)?;
        let limit = parse_count("limit", req.query_param("limit"), DEFAULT_LIMIT, MAX_LIMIT)?;
        let total = self.nr_handles();
        let mut w = BodyWriter::new();
        use core::fmt::Write as _;
        let _ = write!(
            w,
            r#"{{"total":{total},"offset":{offset},"limit":{limit},"allocations":["#
        );
        let page = self
            .all_handles()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX));
        for (i, h) in page.enumerate() {
            if i > 0 {
                w.write_bytes(b",")?;
            }
            w.json(&h)?;
        }
        w.write_bytes(b"]}")?;
        Ok(w.finish(200, CONTENT_TYPE_JSON)?)
    }

    /// `GET /api/alloc/{id}`: one handle, of whatever type.
    pub(super) fn handle_view(&self, id: &str) -> Result<Response, ApiError> {
        let id = parse_id(id)?;
        let json = if let Some(h) = self.handles.get(&id) {
            AnyHandleJson::Pages(HandleJson::from(h))
        } else if let Some(h) = self.vm.handles.get(&id) {
            AnyHandleJson::Vm(VmHandleJson::from(h))
        } else if let Some(h) = self.slab.handles.get(&id) {
            AnyHandleJson::Slab(h.into())
        } else if let Some(h) = self.dma.handles.get(&id) {
            AnyHandleJson::Dma(h.into())
        } else if let Some(h) = self.pagecache.handles.get(&id) {
            AnyHandleJson::PageCache(h.into())
        } else if let Some(h) = self.cma.handles.get(&id) {
            AnyHandleJson::Cma(h.into())
        } else if let Some(h) = self.percpu.handles.get(&id) {
            AnyHandleJson::Percpu(self.percpu.json(h))
        } else {
            return Err(ApiError::enoent(alloc::format!(
                "no allocation with id {id}"
            )));
        };
        Ok(Response::json(200, &json))
    }
}
