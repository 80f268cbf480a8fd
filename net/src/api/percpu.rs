//! Per-CPU memory over HTTP (API.md v2 "CPUs and per-CPU memory"):
//! `{"type":"percpu","size":N,"align":A}` is `alloc_percpu()`, answering
//! one address per CPU; `DELETE` is `free_percpu()`; fill and checksum
//! touch every CPU's copy. The first chunk is the kernel's, set up at
//! boot from memblock ([`super::System::percpu_first_chunk`]): its dynamic
//! part is served first and it stays. Further chunks come from the buddy
//! allocator (lowmem, owner `percpu`) as `mm::percpu` asks for them and go
//! back when they empty; `Percpu` in `/proc/meminfo` counts them all.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use mm::gfp::GfpFlags;
use mm::page::OwnerTag;
use mm::percpu::{FirstChunkLayout, PCPU_MAX_CHUNKS, PcpuError, Percpu, PercpuPtr};
use mm::platform::Platform;
use mm::types::{NR_CPUS, Order, PAGE_OFFSET, PAGE_SIZE, Pfn};

use super::Api;
use super::alloc_cmd::{
    Checksummed, Filled, find_handle, parse_checksum_range, parse_fill, parse_id,
};
use super::views::Hex;
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::Response;
use crate::server::router::RouteId;

/// One live `percpu` handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PercpuHandle {
    pub id: u64,
    pub ptr: PercpuPtr,
    /// Bytes asked for (each CPU's copy).
    pub size: u64,
    pub align: u64,
    pub created_ms: u64,
}

/// The per-CPU part of [`Api`]'s state.
pub(super) struct PercpuState {
    /// Boxed once at boot: the chunks' bitmaps are kilobytes.
    pub(super) alloc: Box<Percpu>,
    /// Each chunk slot's block: its first frame and order.
    pub(super) chunk_blocks: [Option<(Pfn, Order)>; PCPU_MAX_CHUNKS],
    pub(super) handles: BTreeMap<u64, PercpuHandle>,
}

impl PercpuState {
    /// One unit per CPU: per possible CPU when the kernel lends a first
    /// chunk (its units), else per CPU the memory manager has (cf.
    /// `nr_cpu_ids`: the kernel declares its CPUs before it builds the
    /// API). The first chunk takes slot 0 and is never given back.
    pub(super) fn new(nr_cpus: usize, first: Option<(u64, FirstChunkLayout)>) -> Self {
        let units = first.map_or(nr_cpus, |(_, l)| l.nr_units).clamp(1, NR_CPUS);
        let mut alloc = Box::new(Percpu::new(units));
        if let Some((base, layout)) = first {
            // Cannot fail: a fresh allocator, and units taken from the
            // layout the kernel built with `FirstChunkLayout::embed`.
            let lent = alloc.setup_first_chunk(base, &layout);
            debug_assert!(lent.is_ok(), "{lent:?}");
        }
        PercpuState {
            alloc,
            chunk_blocks: [None; PCPU_MAX_CHUNKS],
            handles: BTreeMap::new(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct PercpuHandleJson {
    id: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    align: u64,
    chunk: u8,
    offset: u32,
    /// CPU `n`'s copy at index `n` (cf. `per_cpu_ptr()`).
    addresses: Addresses,
    created_ms: u64,
}

/// One address per CPU with a unit, serialized as they are computed: the
/// answer allocates nothing per CPU.
pub(super) struct Addresses {
    /// Unit 0's address and the units (the chunk is contiguous).
    base: Option<u64>,
    units: usize,
}

impl Serialize for Addresses {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = if self.base.is_some() { self.units } else { 0 };
        let mut seq = s.serialize_seq(Some(n))?;
        if let Some(base) = self.base {
            for cpu in 0..self.units {
                seq.serialize_element(&Hex::new(base + (cpu * mm::percpu::PCPU_UNIT_SIZE) as u64))?;
            }
        }
        seq.end()
    }
}

impl PercpuState {
    /// The handle as JSON (one address per CPU with a unit).
    pub(super) fn json(&self, h: &PercpuHandle) -> PercpuHandleJson {
        let addresses = Addresses {
            base: self.alloc.addr(h.ptr, 0),
            units: self.alloc.nr_units(),
        };
        PercpuHandleJson {
            id: h.id,
            kind: "percpu",
            size: h.size,
            align: h.align,
            chunk: h.ptr.chunk,
            offset: h.ptr.off,
            addresses,
            created_ms: h.created_ms,
        }
    }
}

fn pcpu_error(e: PcpuError, size: u64, align: u64) -> ApiError {
    match e {
        PcpuError::Invalid => ApiError::einval(format!(
            "illegal size ({size}) or align ({align}) for percpu allocation: size 1..={} bytes, align a power of two up to {PAGE_SIZE}",
            mm::percpu::PCPU_UNIT_SIZE
        )),
        PcpuError::NoSpace => ApiError::enomem(format!(
            "no per-CPU chunk has room for {size} bytes and all {PCPU_MAX_CHUNKS} chunks are in use"
        )),
        PcpuError::NotAllocated => ApiError::ebusy("no per-CPU allocation there"),
    }
}

impl<P: Platform> Api<'_, P> {
    /// `{"type":"percpu","size":N,"align":A}` (align defaults to 8, as
    /// `alloc_percpu(type)` of a `u64` would).
    pub(super) fn alloc_percpu(
        &mut self,
        size: Option<u64>,
        align: Option<u64>,
    ) -> Result<Response, ApiError> {
        let size = size.ok_or_else(|| ApiError::einval("missing \"size\" (bytes)"))?;
        let align = align.unwrap_or(8);
        // cf. pcpu_alloc(): "illegal size or align" unless align is a power
        // of two up to PAGE_SIZE (and size 1..=PCPU_MIN_UNIT_SIZE, below).
        if !align.is_power_of_two() || align > PAGE_SIZE {
            return Err(ApiError::einval(format!(
                "illegal size ({size}) or align ({align}) for percpu allocation: size 1..=32768 bytes, align a power of two up to 4096"
            )));
        }
        let (usize_size, usize_align) = (
            usize::try_from(size).unwrap_or(usize::MAX),
            usize::try_from(align).unwrap_or(usize::MAX),
        );
        let st = &mut self.percpu;
        if st
            .alloc
            .needs_chunk(usize_size, usize_align)
            .map_err(|e| pcpu_error(e, size, align))?
        {
            // cf. pcpu_create_chunk(): the chunk's units, contiguous in
            // the direct map.
            let pages = st.alloc.chunk_bytes() / PAGE_SIZE;
            let order = Order::from_size_bytes(pages * PAGE_SIZE)
                .ok_or_else(|| ApiError::enomem("per-CPU chunk larger than MAX_ORDER"))?;
            if self.held_pages.saturating_add(order.nr_pages()) > self.quota_pages {
                return Err(ApiError::equota(format!(
                    "API quota reached: {} of {} pages held, a per-CPU chunk needs {}",
                    self.held_pages,
                    self.quota_pages,
                    order.nr_pages()
                )));
            }
            let pfn = self
                .mm
                .alloc_pages(GfpFlags::GFP_KERNEL, order, OwnerTag::PERCPU)
                .map_err(|_| {
                    ApiError::enomem(format!(
                        "no memory for a per-CPU chunk (order {})",
                        order.get()
                    ))
                })?;
            let st = &mut self.percpu;
            match st.alloc.add_chunk(PAGE_OFFSET + pfn.phys().0) {
                Ok(slot) => {
                    st.chunk_blocks[usize::from(slot)] = Some((pfn, order));
                    self.held_pages += order.nr_pages();
                }
                Err(e) => {
                    let _ = self.mm.free_pages(pfn, order);
                    return Err(pcpu_error(e, size, align));
                }
            }
        }
        let ptr = self
            .percpu
            .alloc
            .alloc(usize_size, usize_align)
            .map_err(|e| pcpu_error(e, size, align))?;
        // Fresh per-CPU memory is zeroed in every unit (cf. pcpu_alloc()'s
        // memset over each CPU's copy).
        self.percpu_touch(ptr, 0, size, &mut |b| b.fill(0));
        let handle = PercpuHandle {
            id: self.next_id,
            ptr,
            size,
            align,
            created_ms: self.system.uptime_ms(),
        };
        self.next_id += 1;
        self.percpu.handles.insert(handle.id, handle);
        Ok(Response::json(201, &self.percpu.json(&handle)))
    }

    /// Runs `f` over `[off, off + len)` of every CPU's copy of `ptr`.
    fn percpu_touch(&self, ptr: PercpuPtr, off: u64, len: u64, f: &mut dyn FnMut(&mut [u8])) {
        for cpu in 0..self.percpu.alloc.nr_units() {
            if let Some(va) = self.percpu.alloc.addr(ptr, cpu) {
                self.mm.with_bytes(va - PAGE_OFFSET + off, len, f);
            }
        }
    }

    /// Whether `id` names a `percpu` handle.
    pub(super) fn is_percpu_handle(&self, id: &str) -> bool {
        parse_id(id).is_ok_and(|id| self.percpu.handles.contains_key(&id))
    }

    /// Free a handle's object; an emptied chunk's block goes back.
    fn free_percpu(&mut self, h: &PercpuHandle) {
        let st = &mut self.percpu;
        if let Ok((_, Some(_base))) = st.alloc.free(h.ptr)
            && let Some((pfn, order)) = st.chunk_blocks[usize::from(h.ptr.chunk)].take()
        {
            let _ = self.mm.free_pages(pfn, order);
            self.held_pages -= order.nr_pages();
        }
        self.percpu.handles.remove(&h.id);
    }

    /// Free, fill or checksum of a `percpu` handle; fill and checksum run
    /// over every CPU's copy in CPU order.
    pub(super) fn percpu_handle_cmd(
        &mut self,
        route: RouteId,
        id: &str,
        req: &Request,
    ) -> Result<Response, ApiError> {
        let (id, h) = find_handle(&self.percpu.handles, id)?;
        match route {
            RouteId::Free => {
                self.free_percpu(&h);
                self.wake_page_waiters();
                #[derive(Serialize)]
                struct Freed {
                    freed: u64,
                    size: u64,
                }
                Ok(Response::json(
                    200,
                    &Freed {
                        freed: id,
                        size: h.size,
                    },
                ))
            }
            RouteId::Fill => {
                let (byte, touch) = parse_fill(&req.body, h.size)?;
                self.percpu_touch(h.ptr, touch.offset, touch.length, &mut |b| b.fill(byte));
                let mut filled = Filled::new(touch);
                filled.bytes *= self.percpu.alloc.nr_units() as u64;
                Ok(Response::json(200, &filled))
            }
            _ => {
                let touch = parse_checksum_range(req, h.size)?;
                let mut crc = mm::crc32::Crc32::new();
                self.percpu_touch(h.ptr, touch.offset, touch.length, &mut |b| crc.update(b));
                let mut sum = Checksummed::new(touch, crc.finish());
                sum.bytes *= self.percpu.alloc.nr_units() as u64;
                Ok(Response::json(200, &sum))
            }
        }
    }

    /// `Percpu` in `/proc/meminfo`, in pages (cf. `pcpu_nr_pages()`).
    pub(super) fn percpu_pages(&self) -> u64 {
        self.percpu.alloc.nr_pages()
    }

    /// `POST /api/reset`'s per-CPU part: every object freed, so every
    /// chunk goes back.
    pub(super) fn reset_percpu(&mut self) -> u64 {
        let handles = core::mem::take(&mut self.percpu.handles);
        for h in handles.values() {
            self.free_percpu(h);
        }
        handles.len() as u64
    }
}
