//! Virtual memory over HTTP: `/api/vmallocinfo`, `/proc/vmallocinfo`,
//! `/api/kmap` (GET, POST, DELETE `/{slot}`), `/api/pagetable`, and the
//! `vmalloc` and `ioremap` allocation types with their free, fill,
//! checksum and reset.
//!
//! The state is the kernel's: the vmap-area allocator, the pkmap pool and
//! the kmap_atomic stack live in kernel statics (the kernel's own ioremaps
//! share them) and reach the API as a [`Vm`] through [`Api::with_vm`],
//! with the [`PageMapper`] that installs PTEs. Host tests pass the same
//! `mm` types over the simulated platform. Without a [`Vm`] these routes
//! answer 404 "not available in this build".
//!
//! What the API owns here, and nothing else, it may undo: its vmalloc and
//! ioremap handles (areas whose caller is [`API_CALLER`]) and its own kmap
//! references ([`VmState`] counts them per slot), so `DELETE
//! /api/kmap/{slot}` cannot drop a kmap the kernel holds, and a `pages`
//! handle that the API still kmaps cannot be freed (409).
//!
//! `ioremap` over the API maps only what cannot hurt the kernel: RAM that
//! the firmware reports but `mem=` held back (the `mem_limit` tail) and
//! ranges that are not RAM at all (device memory). RAM the buddy allocator
//! manages is refused by `mm` itself (`RamInUse`), RAM the kernel reserved
//! (its image, `mem_map`, boot page tables, firmware pages) by this module;
//! both are 409 EBUSY. Fill and checksum of an ioremap handle are served
//! only when it maps RAM: reading or writing device registers has side
//! effects, so that is 409 too.
//!
//! Error mapping (one place, [`vm_error`] and [`kmap_error`]): no space,
//! no memory, too many areas, no kmap slot → 507 ENOMEM; bad size or
//! alignment → 400; not an area start, unknown slot → 404; wrong kind, RAM
//! in use → 409 EBUSY.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use spin::Mutex;

use mm::crc32::Crc32;
use mm::fault::{self as pf, FaultAccess, FaultError};
use mm::highmem::{KmapAtomicStack, KmapError, Pkmap, pkmap_nr};
use mm::layout::{
    FIXMAP_BASE, LAST_PKMAP, NR_FIX_KMAP, PKMAP_BASE, VMALLOC_MAX_SIZE, VMALLOC_START,
};
use mm::pgtable::{self, Walk};
use mm::platform::{MapError, MapProt, PageMapper, Platform};
use mm::procfs::{E820Type, Meminfo};
use mm::types::{PAGE_OFFSET, PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use mm::vmalloc::{self as vmalloc, VmallocError, VmapArea, VmapAreaAllocator};
use mm::zone::{NR_ZONES, ZoneType};

use super::alloc_cmd::{Checksummed, Filled, parse_body, parse_checksum_range, parse_fill};
use super::views::Hex;
use super::{Api, Handle};
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::{Response, try_string};

#[cfg(test)]
mod tests;

/// The caller recorded for the API's vmalloc and ioremap areas (one word,
/// as Linux prints a symbol in `/proc/vmallocinfo`).
pub const API_CALLER: &str = "api_alloc";

/// The kernel's virtual-memory state, lent to the API.
#[derive(Clone, Copy)]
pub struct Vm<'a> {
    /// The vmap areas (cf. `vmap_area_lock`).
    pub areas: &'a Mutex<VmapAreaAllocator>,
    /// The persistent kmap pool (cf. `kmap_lock`).
    pub pkmap: &'a Mutex<Pkmap>,
    /// The kmap_atomic slots (read for `atomic.used`).
    pub kmap_atomic: &'a Mutex<KmapAtomicStack>,
    /// Installs and removes PTEs (the kernel's real tables, or the sim's).
    pub mapper: &'a dyn PageMapper,
}

/// `&dyn PageMapper` as a sized `PageMapper` for `mm`'s generic calls.
pub(super) struct DynMapper<'m>(pub(super) &'m dyn PageMapper);

impl PageMapper for DynMapper<'_> {
    fn map_page(&self, virt: VirtAddr, pfn: Pfn, prot: MapProt) -> Result<(), MapError> {
        self.0.map_page(virt, pfn, prot)
    }
    fn map_pages(
        &self,
        virt: VirtAddr,
        nr: u64,
        pfn_at: &dyn Fn(u64) -> Pfn,
        prot: MapProt,
    ) -> Result<(), (u64, MapError)> {
        self.0.map_pages(virt, nr, pfn_at, prot)
    }
    fn unmap_page(&self, virt: VirtAddr) -> Option<Pfn> {
        self.0.unmap_page(virt)
    }
    fn unmap_pages(&self, virt: VirtAddr, nr: u64, each: &mut dyn FnMut(u64, Option<Pfn>)) {
        self.0.unmap_pages(virt, nr, each)
    }
    fn flush_tlb_range(&self, start: VirtAddr, end: VirtAddr) {
        self.0.flush_tlb_range(start, end)
    }
    fn translate(&self, virt: VirtAddr) -> Option<Pfn> {
        self.0.translate(virt)
    }
}

/// One access to a page of a VM handle ([`super::System::touch_kernel_page`]).
pub enum PageAccess<'f> {
    /// Read the page (checksum): a lazy page not yet touched reads as the
    /// zero page.
    Read(&'f mut dyn FnMut(&[u8])),
    /// Write the page (fill): a lazy page gets a frame of its own first.
    Write(&'f mut dyn FnMut(&mut [u8])),
}

impl PageAccess<'_> {
    /// The access as the fault handler sees it.
    pub fn fault_access(&self) -> FaultAccess {
        match self {
            PageAccess::Read(_) => FaultAccess::Read,
            PageAccess::Write(_) => FaultAccess::Write,
        }
    }

    /// Runs the access over `bytes`.
    pub fn run(&mut self, bytes: &mut [u8]) {
        match self {
            PageAccess::Read(f) => f(bytes),
            PageAccess::Write(f) => f(bytes),
        }
    }
}

/// What [`super::System::touch_kernel_page`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageTouch {
    /// The access ran.
    Done,
    /// `virt` is not a page of an API area (or, eager, not mapped).
    NotOurs,
    /// The page fault the access raised could not be resolved; the access
    /// did not run.
    Fault(FaultError),
}

/// What a VM handle maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmHandleKind {
    /// `vmalloc(size)`: frames of the API's own, freed with the handle.
    Vmalloc,
    /// `ioremap(phys, size)`: a physical range, not owned.
    Ioremap,
}

impl VmHandleKind {
    /// The handle's `type`.
    pub const fn name(self) -> &'static str {
        match self {
            VmHandleKind::Vmalloc => "vmalloc",
            VmHandleKind::Ioremap => "ioremap",
        }
    }
}

/// One live vmalloc or ioremap handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmHandle {
    pub id: u64,
    pub kind: VmHandleKind,
    /// vmalloc: the area start; ioremap: the address of `phys` itself.
    pub virt: VirtAddr,
    /// The area (page-aligned), what vfree/iounmap take.
    pub area_start: VirtAddr,
    /// vmalloc: the first page's frame; ioremap: the address asked for.
    pub phys: PhysAddr,
    /// vmalloc: bytes mapped (whole pages); ioremap: bytes asked for.
    pub size: u64,
    /// Pages mapped (guard excluded).
    pub nr_pages: u64,
    /// vmalloc: frames per zone (`ZoneType` index).
    pub zone_pages: [u64; NR_ZONES],
    /// ioremap: the range is RAM (the `mem=` tail), so fill/checksum may
    /// touch it; vmalloc: always.
    pub ram: bool,
    pub created_ms: u64,
    /// A demand-zero vmalloc (`"lazy":true`): pages get frames when first
    /// written.
    pub lazy: bool,
    /// Pages backed by a frame of their own: `nr_pages` for an eager
    /// vmalloc, those written so far for a lazy one, 0 for ioremap.
    pub resident: u64,
}

/// The API's share of one pkmap slot.
#[derive(Clone, Copy, Debug)]
struct ApiKmap {
    pfn: Pfn,
    users: u32,
}

/// The VM part of [`Api`]'s state.
#[derive(Default)]
pub(super) struct VmState<'a> {
    parts: Option<Vm<'a>>,
    pub(super) handles: BTreeMap<u64, VmHandle>,
    /// API kmap references by pkmap slot.
    kmaps: BTreeMap<usize, ApiKmap>,
}

impl VmState<'_> {
    /// Whether the API kmaps frame `pfn` (pinning it against migration).
    pub(super) fn is_kmapped(&self, pfn: Pfn) -> bool {
        self.kmaps.values().any(|k| k.pfn == pfn)
    }
}

/// A `VmallocError` as API.md's status and code.
pub fn vm_error(e: VmallocError) -> ApiError {
    let message = e.to_string();
    match e {
        VmallocError::NoSpace { .. }
        | VmallocError::TooManyAreas { .. }
        | VmallocError::NoMemory { .. }
        | VmallocError::Map(MapError::NoMemory { .. }) => ApiError::enomem(message),
        VmallocError::BadSize { .. }
        | VmallocError::BadAlign { .. }
        | VmallocError::NoZeroPage
        | VmallocError::Map(MapError::BadAddress { .. }) => ApiError::einval(message),
        VmallocError::NotAreaStart { .. } => ApiError::enoent(message),
        VmallocError::WrongKind { .. }
        | VmallocError::RamInUse { .. }
        | VmallocError::InUse { .. }
        | VmallocError::Map(MapError::AlreadyMapped { .. })
        | VmallocError::NotMapped { .. }
        | VmallocError::FreeFrame { .. } => ApiError::ebusy(message),
    }
}

/// A `KmapError` as API.md's status and code.
pub fn kmap_error(e: KmapError) -> ApiError {
    let message = e.to_string();
    match e {
        KmapError::NoSlot
        | KmapError::AtomicOverflow
        | KmapError::Map(MapError::NoMemory { .. }) => ApiError::enomem(message),
        KmapError::NoSuchSlot { .. } | KmapError::NotMapped { .. } => ApiError::enoent(message),
        KmapError::Map(_)
        | KmapError::AtomicUnderflow { .. }
        | KmapError::AtomicOutOfOrder { .. } => ApiError::ebusy(message),
    }
}

/// `"0x…"` (1 to 16 hex digits) as a number.
fn parse_hex(what: &str, s: &str) -> Result<u64, ApiError> {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .filter(|d| !d.is_empty() && d.len() <= 16 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|d| u64::from_str_radix(d, 16).ok())
        .ok_or_else(|| {
            ApiError::einval(format!(
                "malformed {what} '{s}': expected \"0x\" and 1 to 16 hex digits"
            ))
        })
}

fn not_built(req: &Request) -> ApiError {
    ApiError::enoent(format!("{} is not available in this build", req.path))
}

#[derive(Deserialize)]
struct KmapBody {
    id: Option<u64>,
}

/// A VM handle as API.md's `Handle` (same keys as a `pages` handle).
#[derive(Serialize)]
pub(super) struct VmHandleJson {
    id: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    order: Option<u8>,
    nr_pages: u64,
    zone: Option<&'static str>,
    pfn: u64,
    phys: Hex,
    virt: Hex,
    gfp: Option<&'static str>,
    created_ms: u64,
    /// vmalloc: frames per zone, e.g. `{"HighMem":256}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    zones: Option<ZonePages>,
    /// ioremap: whether the range is RAM (fill/checksum allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    ram: Option<bool>,
    /// Lazy vmalloc only: `true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    lazy: Option<bool>,
    /// Lazy vmalloc only: pages written so far, each with a frame of its
    /// own (`nr_pages` is what is reserved).
    #[serde(skip_serializing_if = "Option::is_none")]
    resident_pages: Option<u64>,
    caller: &'static str,
}

/// `{"DMA":n,…}` for the zones that hold any of a vmalloc area's frames.
struct ZonePages([u64; NR_ZONES]);

impl Serialize for ZonePages {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for zt in ZoneType::ALL {
            if self.0[zt.index()] != 0 {
                map.serialize_entry(zt.name(), &self.0[zt.index()])?;
            }
        }
        map.end()
    }
}

impl From<&VmHandle> for VmHandleJson {
    fn from(h: &VmHandle) -> VmHandleJson {
        let vmalloc = h.kind == VmHandleKind::Vmalloc;
        // The zone of the first frame, like a pages handle's.
        let zone = vmalloc
            .then(|| ZoneType::ALL.iter().find(|z| h.zone_pages[z.index()] != 0))
            .flatten();
        VmHandleJson {
            id: h.id,
            kind: h.kind.name(),
            size: h.size,
            order: None,
            nr_pages: h.nr_pages,
            zone: zone.map(|z| z.name()),
            pfn: h.phys.0 / PAGE_SIZE,
            phys: Hex::new(h.phys.0),
            virt: Hex::new(h.virt.0),
            gfp: match (vmalloc, h.lazy) {
                (false, _) => None,
                (true, false) => Some("GFP_KERNEL|__GFP_HIGHMEM"),
                // What each page fault allocates with (pf::LAZY_FAULT_GFP).
                (true, true) => Some("GFP_KERNEL|__GFP_HIGHMEM|__GFP_ZERO"),
            },
            created_ms: h.created_ms,
            zones: vmalloc.then_some(ZonePages(h.zone_pages)),
            ram: (!vmalloc).then_some(h.ram),
            lazy: h.lazy.then_some(true),
            resident_pages: h.lazy.then_some(h.resident),
            caller: API_CALLER,
        }
    }
}

/// One area of `/api/vmallocinfo`.
#[derive(Serialize)]
struct AreaJson {
    start: Hex,
    /// End of the usable range (exclusive): the guard page's address.
    end: Hex,
    /// Usable bytes, guard excluded.
    size: u64,
    nr_pages: u64,
    kind: &'static str,
    phys: Hex,
    caller: &'static str,
    /// Bytes reserved with the guard page (what `/proc/vmallocinfo` prints).
    reserved_size: u64,
}

impl From<&VmapArea> for AreaJson {
    fn from(a: &VmapArea) -> AreaJson {
        AreaJson {
            start: Hex::new(a.start.0),
            end: Hex::new(a.end().0),
            size: a.size,
            nr_pages: a.nr_pages,
            kind: a.kind.name(),
            phys: Hex::new(a.phys.0),
            caller: a.caller(),
            reserved_size: a.reserved_size(),
        }
    }
}

/// Where an address lies in DESIGN.md's layout.
fn region(addr: u64, kernel_image: Option<(u64, u64)>) -> &'static str {
    const DIRECT_MAP_SIZE: u64 = 64 << 40;
    if !pgtable::is_canonical(addr) {
        "non-canonical"
    } else if kernel_image.is_some_and(|(s, e)| s <= addr && addr < e) {
        "kernel image"
    } else if (PAGE_OFFSET..PAGE_OFFSET + DIRECT_MAP_SIZE).contains(&addr) {
        "direct map"
    } else if (VMALLOC_START..VMALLOC_START + VMALLOC_MAX_SIZE).contains(&addr) {
        "vmalloc"
    } else if (PKMAP_BASE..FIXMAP_BASE).contains(&addr) {
        "pkmap"
    } else if (FIXMAP_BASE..mm::layout::FIXMAP_END).contains(&addr) {
        "fixmap"
    } else {
        "unused"
    }
}

impl<'a, P: Platform> Api<'a, P> {
    /// Gives the API the kernel's virtual-memory state; see the module doc.
    pub fn with_vm(mut self, vm: Vm<'a>) -> Self {
        self.vm.parts = Some(vm);
        self
    }

    /// The live vmalloc and ioremap handles, by id.
    pub fn vm_handles(&self) -> impl Iterator<Item = &VmHandle> {
        self.vm.handles.values()
    }

    fn vm_parts(&self, req: &Request) -> Result<Vm<'a>, ApiError> {
        self.vm.parts.ok_or_else(|| not_built(req))
    }

    /// Whether this build serves the `vmalloc` and `ioremap` types.
    pub(super) fn has_vm(&self) -> bool {
        self.vm.parts.is_some()
    }

    /// The kernel's VM state, if this build has one.
    pub(super) fn vm_state(&self) -> Option<Vm<'a>> {
        self.vm.parts
    }

    /// The VM handle `id` names, if it is one (a malformed id is `None`,
    /// for the caller's own parsing to report).
    pub(super) fn vm_lookup(&self, id: &str) -> Option<VmHandle> {
        let id = id
            .parse::<u64>()
            .ok()
            .filter(|_| id.bytes().all(|b| b.is_ascii_digit()))?;
        self.vm.handles.get(&id).copied()
    }

    /// 409 if the API still kmaps `handle`'s page: freeing it would leave a
    /// pkmap slot mapping a free frame.
    pub(super) fn check_not_kmapped(&self, handle: &Handle) -> Result<(), ApiError> {
        match self.vm.kmaps.iter().find(|(_, k)| k.pfn == handle.pfn) {
            Some((slot, k)) => Err(ApiError::ebusy(format!(
                "allocation {} is kmapped in pkmap slot {slot} ({} API users); DELETE /api/kmap/{slot} first",
                handle.id, k.users
            ))),
            None => Ok(()),
        }
    }

    /// meminfo's `VmallocTotal`, `VmallocUsed` (vmalloc pages, as Linux's
    /// `vmalloc_nr_pages()`) and `VmallocChunk` (the largest free range;
    /// Linux prints 0 since 4.12) from the area allocator.
    pub(super) fn vm_meminfo(&self, mi: &mut Meminfo) {
        if let Some(vm) = self.vm.parts {
            let stats = vm.areas.lock().stats();
            mi.vmalloc_total_kb = stats.total_bytes >> 10;
            mi.vmalloc_used_kb = stats.vmalloc_pages * (PAGE_SIZE >> 10);
            mi.vmalloc_chunk_kb = stats.largest_free_bytes >> 10;
        }
    }

    // ------------------------------------------------------------------
    // POST /api/alloc {"type":"vmalloc"|"ioremap"}
    // ------------------------------------------------------------------

    fn insert_vm_handle(&mut self, mut handle: VmHandle) -> Response {
        handle.id = self.next_id;
        self.next_id += 1;
        self.held_pages += handle.resident;
        self.vm.handles.insert(handle.id, handle);
        Response::json(201, &VmHandleJson::from(&handle))
    }

    /// `{"type":"vmalloc","size":N}` → `vmalloc(N)`; with `"lazy":true`,
    /// [`vmalloc::vmalloc_lazy`]: only address space is reserved, so the
    /// quota (which counts frames) does not apply until pages are written.
    pub(super) fn alloc_vmalloc(
        &mut self,
        req: &Request,
        size: Option<u64>,
        lazy: bool,
    ) -> Result<Response, ApiError> {
        let vm = self.vm_parts(req)?;
        let size = size.ok_or_else(|| ApiError::einval("missing \"size\" (bytes)"))?;
        if size == 0 {
            return Err(ApiError::einval("size must be at least 1 byte"));
        }
        if lazy {
            let mapper = DynMapper(vm.mapper);
            let area = vmalloc::vmalloc_lazy(&mut vm.areas.lock(), &mapper, size, API_CALLER)
                .map_err(vm_error)?;
            return Ok(self.insert_vm_handle(VmHandle {
                id: 0,
                kind: VmHandleKind::Vmalloc,
                virt: area.start,
                area_start: area.start,
                phys: PhysAddr(0),
                size: area.size,
                nr_pages: area.nr_pages,
                zone_pages: [0; NR_ZONES],
                ram: true,
                created_ms: self.system.uptime_ms(),
                lazy: true,
                resident: 0,
            }));
        }
        let nr_pages = size.div_ceil(PAGE_SIZE);
        if self.quota_held_pages().saturating_add(nr_pages) > self.quota_pages {
            return Err(ApiError::equota(format!(
                "API quota reached: {} of {} pages ({} % of managed memory) held, {} more asked",
                self.held_pages, self.quota_pages, self.quota_pct, nr_pages
            )));
        }
        let mapper = DynMapper(vm.mapper);
        let area = vmalloc::vmalloc(&mut vm.areas.lock(), self.mm, &mapper, size, API_CALLER)
            .map_err(vm_error)?;
        let mut zone_pages = [0; NR_ZONES];
        {
            let pa = self.mm.lock();
            for i in 0..area.nr_pages {
                let zone = vm
                    .mapper
                    .translate(VirtAddr(area.start.0 + i * PAGE_SIZE))
                    .and_then(|pfn| pa.zone_of(pfn));
                if let Some(z) = zone {
                    zone_pages[z.index()] += 1;
                }
            }
        }
        Ok(self.insert_vm_handle(VmHandle {
            id: 0,
            kind: VmHandleKind::Vmalloc,
            virt: area.start,
            area_start: area.start,
            phys: area.phys,
            size: area.size,
            nr_pages: area.nr_pages,
            zone_pages,
            ram: true,
            created_ms: self.system.uptime_ms(),
            lazy: false,
            resident: area.nr_pages,
        }))
    }

    /// Refuses RAM that is not the `mem=` tail: firmware RAM outside
    /// memblock's limited regions is either the buddy allocator's or the
    /// kernel's.
    fn check_ioremap_range(&self, phys: u64, end: u64) -> Result<(), ApiError> {
        let mb = self.boot.memblock;
        let held_back = |a: u64| {
            mb.limited_regions()
                .iter()
                .any(|r| r.base.0 <= a && a < r.end().0)
        };
        for &(s, e, t) in self.boot.firmware_map {
            if t != E820Type::Ram || e.0 <= phys || end <= s.0 {
                continue;
            }
            let mut at = s.0.max(phys) & !(PAGE_SIZE - 1);
            while at < e.0.min(end) {
                if !held_back(at) {
                    let pfn = Pfn::from_phys(PhysAddr(at));
                    let managed = self
                        .mm
                        .lock()
                        .page(pfn)
                        .is_some_and(|p| !p.is_reserved() && !p.is_nomap());
                    if managed {
                        return Err(vm_error(VmallocError::RamInUse { pfn }));
                    }
                    let owner = mb
                        .reserved_regions()
                        .iter()
                        .find(|r| r.base.0 <= at && at < r.end().0)
                        .map_or("the kernel", |r| r.name);
                    return Err(ApiError::ebusy(format!(
                        "ioremap of RAM at {at:#x} reserved by {owner}: only the mem= tail and device ranges may be mapped"
                    )));
                }
                at += PAGE_SIZE;
            }
        }
        Ok(())
    }

    /// Whether `[phys, end)` is all firmware RAM.
    fn is_ram(&self, phys: u64, end: u64) -> bool {
        let mut at = phys;
        while at < end {
            match self
                .boot
                .firmware_map
                .iter()
                .find(|(s, e, t)| *t == E820Type::Ram && s.0 <= at && at < e.0)
            {
                Some((_, e, _)) => at = e.0,
                None => return false,
            }
        }
        true
    }

    /// `{"type":"ioremap","phys":"0x…","size":N}` → `ioremap(phys, N)`.
    pub(super) fn alloc_ioremap(
        &mut self,
        req: &Request,
        phys: Option<&str>,
        size: Option<u64>,
    ) -> Result<Response, ApiError> {
        let vm = self.vm_parts(req)?;
        let phys = parse_hex(
            "phys",
            phys.ok_or_else(|| ApiError::einval("missing \"phys\" (\"0x…\")"))?,
        )?;
        let size = size.ok_or_else(|| ApiError::einval("missing \"size\" (bytes)"))?;
        if size == 0 {
            return Err(ApiError::einval("size must be at least 1 byte"));
        }
        let end = phys
            .checked_add(size)
            .filter(|&e| e <= 1 << 52)
            .ok_or_else(|| {
                // Well-formed, but nothing is there: 404, as a PFN past
                // the end of memory.
                ApiError::enoent(format!(
                    "range {phys:#x}+{size:#x} is beyond the physical address space"
                ))
            })?;
        self.check_ioremap_range(phys, end)?;
        let mapper = DynMapper(vm.mapper);
        let (virt, nr_pages) = {
            let mut areas = vm.areas.lock();
            let virt = vmalloc::ioremap(
                &mut areas,
                self.mm,
                &mapper,
                PhysAddr(phys),
                size,
                API_CALLER,
            )
            .map_err(|e| match e {
                // Past the physical address width the page tables take
                // (MAXPHYADDR): nothing to map there either.
                VmallocError::Map(MapError::BadAddress { .. }) => ApiError::enoent(format!(
                    "range {phys:#x}+{size:#x} is beyond the physical addresses this CPU maps ({e})"
                )),
                e => vm_error(e),
            })?;
            let area_start = VirtAddr(virt.0 & !(PAGE_SIZE - 1));
            (virt, areas.find(area_start).map_or(0, |a| a.nr_pages))
        };
        Ok(self.insert_vm_handle(VmHandle {
            id: 0,
            kind: VmHandleKind::Ioremap,
            virt,
            area_start: VirtAddr(virt.0 & !(PAGE_SIZE - 1)),
            phys: PhysAddr(phys),
            size,
            nr_pages,
            zone_pages: [0; NR_ZONES],
            ram: self.is_ram(phys, end),
            created_ms: self.system.uptime_ms(),
            lazy: false,
            resident: 0,
        }))
    }

    /// Unmaps (and for vmalloc frees) a VM handle's area.
    fn release_vm(&mut self, vm: Vm<'a>, h: &VmHandle) -> Result<(), VmallocError> {
        let mapper = DynMapper(vm.mapper);
        let mut areas = vm.areas.lock();
        match h.kind {
            VmHandleKind::Vmalloc => {
                vmalloc::vfree(&mut areas, self.mm, &mapper, h.area_start).map(drop)
            }
            VmHandleKind::Ioremap => vmalloc::iounmap(&mut areas, &mapper, h.virt).map(drop),
        }
    }

    fn forget_vm(&mut self, h: &VmHandle) {
        if let Some(h) = self.vm.handles.remove(&h.id) {
            self.held_pages -= h.resident;
        }
    }

    /// `DELETE /api/alloc/{id}` of a VM handle: `vfree` or `iounmap`.
    pub(super) fn free_vm(
        &mut self,
        req: &Request,
        h: VmHandle,
        order: Option<&str>,
    ) -> Result<Response, ApiError> {
        let vm = self.vm_parts(req)?;
        if order.is_some() {
            return Err(ApiError::einval(format!(
                "?order= applies to pages handles; {} is {}",
                h.id,
                h.kind.name()
            )));
        }
        match self.release_vm(vm, &h) {
            Ok(()) => {}
            // The area is gone either way (mm finished the teardown): the
            // handle must go too, and the problem is reported.
            Err(e @ (VmallocError::NotMapped { .. } | VmallocError::FreeFrame { .. })) => {
                self.forget_vm(&h);
                return Err(vm_error(e));
            }
            Err(e) => return Err(vm_error(e)),
        }
        self.forget_vm(&h);
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
                order: None,
                nr_pages: h.nr_pages,
            },
        ))
    }

    /// Runs `access` over `[start, start + len)` of a VM handle's mapping,
    /// page by page: through the mapping itself where the kernel lends it
    /// ([`super::System::touch_kernel_page`], where a lazy page faults in
    /// through the CPU's #PF), else through the frame the PTE maps, with
    /// lazy faults resolved here (host fakes, which have no MMU). Stops at
    /// the first page whose fault cannot be resolved and says where.
    fn touch_mapping(
        &mut self,
        vm: Vm<'a>,
        id: u64,
        start: u64,
        len: u64,
        access: &mut PageAccess<'_>,
    ) -> Result<Option<(u64, FaultError)>, ApiError> {
        let end = start + len;
        let mut at = start;
        let zero = vm.areas.lock().zero_page();
        let lazy = self.vm.handles.get(&id).is_some_and(|h| h.lazy);
        while at < end {
            let page = at & !(PAGE_SIZE - 1);
            let off = (at - page) as usize;
            let n = (PAGE_SIZE - (at - page)).min(end - at) as usize;
            // A lazy page written for the first time gains a frame: note
            // whether it had one, to account the new one afterwards.
            let before = vm.mapper.translate(VirtAddr(page));
            let had_frame = before.is_some() && before != zero;
            let touched = match access {
                PageAccess::Read(f) => {
                    let mut part = |b: &[u8]| f(&b[off..off + n]);
                    self.touch_page(vm, VirtAddr(page), lazy, PageAccess::Read(&mut part))
                }
                PageAccess::Write(f) => {
                    let mut part = |b: &mut [u8]| f(&mut b[off..off + n]);
                    self.touch_page(vm, VirtAddr(page), lazy, PageAccess::Write(&mut part))
                }
            };
            match touched {
                PageTouch::Done => {}
                PageTouch::NotOurs => {
                    return Err(ApiError::ebusy(format!(
                        "{page:#x} is not a mapped page of an API area"
                    )));
                }
                PageTouch::Fault(e) => return Ok(Some((at, e))),
            }
            if lazy && !had_frame {
                self.account_fault_in(vm, id, VirtAddr(page), zero);
            }
            at += n as u64;
        }
        Ok(None)
    }

    /// One page of [`Api::touch_mapping`]: through the kernel's mapping,
    /// or on the host through the frame.
    fn touch_page(
        &self,
        vm: Vm<'a>,
        page: VirtAddr,
        lazy: bool,
        mut access: PageAccess<'_>,
    ) -> PageTouch {
        let kernel = match &mut access {
            PageAccess::Read(f) => self.system.touch_kernel_page(page, PageAccess::Read(*f)),
            PageAccess::Write(f) => self.system.touch_kernel_page(page, PageAccess::Write(*f)),
        };
        match kernel {
            Some(t) => t,
            None => match self.touch_through_frame(vm, page, lazy, &mut access) {
                Ok(()) => PageTouch::Done,
                Err(e) => PageTouch::Fault(e),
            },
        }
    }

    /// The host path of [`Api::touch_mapping`] for one page: resolve a
    /// lazy fault the way the #PF handler would, then touch the frame the
    /// PTE maps.
    fn touch_through_frame(
        &self,
        vm: Vm<'a>,
        page: VirtAddr,
        lazy: bool,
        access: &mut PageAccess<'_>,
    ) -> Result<(), FaultError> {
        let zero = vm.areas.lock().zero_page();
        let pte = vm.mapper.translate(page);
        let needs_fault = match (pte, access.fault_access()) {
            (None, _) => true,
            (Some(pfn), FaultAccess::Write) => Some(pfn) == zero,
            (Some(_), FaultAccess::Read) => false,
        };
        if needs_fault {
            if !lazy {
                return Err(FaultError::BadArea);
            }
            let mapper = DynMapper(vm.mapper);
            pf::handle_vmalloc_fault(
                &mut vm.areas.lock(),
                self.mm,
                &mapper,
                page,
                access.fault_access(),
            )?;
        }
        let pfn = vm.mapper.translate(page).ok_or(FaultError::BadArea)?;
        self.mm.platform().with_frame(pfn, &mut |b| access.run(b));
        Ok(())
    }

    /// After a lazy page was touched: if it now has a frame of its own,
    /// charge it to the handle (resident pages, zones, the API's pages).
    fn account_fault_in(&mut self, vm: Vm<'a>, id: u64, page: VirtAddr, zero: Option<Pfn>) {
        let Some(pfn) = vm.mapper.translate(page).filter(|&p| Some(p) != zero) else {
            return;
        };
        let zone = self.mm.lock().zone_of(pfn);
        let Some(h) = self.vm.handles.get_mut(&id) else {
            return;
        };
        h.resident += 1;
        if let Some(z) = zone {
            h.zone_pages[z.index()] += 1;
        }
        if page == h.area_start {
            h.phys = pfn.phys();
        }
        self.held_pages += 1;
    }

    /// Touches a range of a VM handle, recovering from page faults that
    /// found no memory as `pagefault_out_of_memory()` does — direct
    /// reclaim, then the OOM killer — and touching again; 507 when neither
    /// helps or when the victim was the area's own task.
    fn touch_handle(
        &mut self,
        vm: Vm<'a>,
        id: u64,
        start: u64,
        len: u64,
        access: &mut PageAccess<'_>,
    ) -> Result<(), ApiError> {
        let end = start + len;
        let mut at = start;
        // Rounds of recovery for the page at `at`: a page that needed
        // reclaim does not use up the next page's rounds.
        let mut rounds = 0;
        loop {
            match self.touch_mapping(vm, id, at, end - at, access)? {
                None => return Ok(()),
                Some((stop, FaultError::BadArea)) => {
                    return Err(ApiError::ebusy(format!(
                        "page fault at {stop:#x} outside any lazy area"
                    )));
                }
                Some((stop, FaultError::Oom)) => {
                    rounds = if stop == at { rounds + 1 } else { 1 };
                    self.pagefault_out_of_memory(id, stop, rounds)?;
                    at = stop;
                }
            }
        }
    }

    /// `POST /api/alloc/{id}/fill` of a VM handle, through its mapping.
    pub(super) fn fill_vm(&mut self, req: &Request, h: VmHandle) -> Result<Response, ApiError> {
        let (byte, touch) = parse_fill(&req.body, h.size)?;
        let vm = self.touchable(req, &h)?;
        let mut fill = |bytes: &mut [u8]| bytes.fill(byte);
        self.touch_handle(
            vm,
            h.id,
            h.virt.0 + touch.offset,
            touch.length,
            &mut PageAccess::Write(&mut fill),
        )?;
        Ok(Response::json(200, &Filled::new(touch)))
    }

    /// `GET /api/alloc/{id}/checksum` of a VM handle, through its mapping.
    pub(super) fn checksum_vm(&mut self, req: &Request, h: VmHandle) -> Result<Response, ApiError> {
        let touch = parse_checksum_range(req, h.size)?;
        let vm = self.touchable(req, &h)?;
        let mut crc = Crc32::new();
        let mut sum = |bytes: &[u8]| crc.update(bytes);
        self.touch_handle(
            vm,
            h.id,
            h.virt.0 + touch.offset,
            touch.length,
            &mut PageAccess::Read(&mut sum),
        )?;
        Ok(Response::json(200, &Checksummed::new(touch, crc.finish())))
    }

    fn touchable(&self, req: &Request, h: &VmHandle) -> Result<Vm<'a>, ApiError> {
        let vm = self.vm_parts(req)?;
        if !h.ram {
            return Err(ApiError::ebusy(format!(
                "allocation {} maps device memory at {:#x}: fill and checksum touch RAM only",
                h.id, h.phys.0
            )));
        }
        Ok(vm)
    }

    /// `POST /api/reset`'s VM part, run first: drops the API's kmaps (so
    /// the pages can be freed), flushes the unused pkmap slots, frees the
    /// vmalloc and ioremap handles. Returns the handles freed.
    pub(super) fn reset_vm(&mut self) -> u64 {
        let Some(vm) = self.vm.parts else {
            return 0;
        };
        {
            let mut pkmap = vm.pkmap.lock();
            for (&slot, k) in &self.vm.kmaps {
                for _ in 0..k.users {
                    let _ = pkmap.kunmap_slot(slot);
                }
            }
            pkmap.flush_all_zero_pkmaps(&DynMapper(vm.mapper));
        }
        self.vm.kmaps.clear();
        let mut freed = 0;
        while let Some((_, h)) = self.vm.handles.pop_first() {
            // Each is an area the API made with this kind; if the teardown
            // ever complained, mm still released the area.
            if self.release_vm(vm, &h).is_ok() {
                freed += 1;
            }
            self.held_pages -= h.resident;
        }
        // An emptied BTreeMap keeps its root node: drop it too.
        self.vm.handles = BTreeMap::new();
        // The freed areas' space, and the page tables their unmapping
        // emptied, come back with the lazy purge's flush.
        vm.areas.lock().purge(&DynMapper(vm.mapper));
        freed
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// `/metrics`' vmalloc and kmap families.
    pub(super) fn vm_metrics(&self, out: &mut super::metrics::MetricsOut) {
        use super::metrics::family;
        use core::fmt::Write;
        let Some(vm) = self.vm.parts else {
            return;
        };
        let (stats, by_kind) = {
            let areas = vm.areas.lock();
            let mut by_kind = [("vmalloc", 0u64), ("vmap", 0), ("ioremap", 0)];
            for a in areas.iter() {
                if let Some(k) = by_kind.iter_mut().find(|(n, _)| *n == a.kind.name()) {
                    k.1 += 1;
                }
            }
            (areas.stats(), by_kind)
        };
        let gauges = [
            (
                "pagezone_vmalloc_total_bytes",
                "Size of the vmalloc area (VmallocTotal).",
                stats.total_bytes,
            ),
            (
                "pagezone_vmalloc_used_bytes",
                "Bytes of all vmap areas, guard pages excluded.",
                stats.used_bytes,
            ),
            (
                "pagezone_vmalloc_pages",
                "Pages of vmalloc areas (VmallocUsed).",
                stats.vmalloc_pages,
            ),
            (
                "pagezone_vmalloc_largest_free_bytes",
                "Largest free range of the vmalloc area.",
                stats.largest_free_bytes,
            ),
            (
                "pagezone_api_vm_handles",
                "Live API vmalloc and ioremap allocations.",
                self.vm.handles.len() as u64,
            ),
        ];
        for (name, help, v) in gauges {
            family(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
        family(
            out,
            "pagezone_vmalloc_areas",
            "gauge",
            "Live vmap areas by kind.",
        );
        for (kind, n) in &by_kind {
            let _ = writeln!(out, "pagezone_vmalloc_areas{{kind=\"{kind}\"}} {n}");
        }
        let (used, mapped) = {
            let pkmap = vm.pkmap.lock();
            (pkmap.nr_used(), pkmap.nr_mapped())
        };
        // A partition of the slots, so that sum() is the pool's size.
        family(
            out,
            "pagezone_pkmap_slots",
            "gauge",
            "Persistent kmap slots by state: with a user, mapped without one (awaiting flush_all_zero_pkmaps), free.",
        );
        let pending = mapped.saturating_sub(used);
        let free = (LAST_PKMAP as u64).saturating_sub(mapped as u64);
        let _ = writeln!(out, "pagezone_pkmap_slots{{state=\"used\"}} {used}");
        let _ = writeln!(
            out,
            "pagezone_pkmap_slots{{state=\"flush_pending\"}} {pending}"
        );
        let _ = writeln!(out, "pagezone_pkmap_slots{{state=\"free\"}} {free}");
        family(
            out,
            "pagezone_kmap_atomic_slots_used",
            "gauge",
            "kmap_atomic (fixmap) slots in use.",
        );
        let _ = writeln!(
            out,
            "pagezone_kmap_atomic_slots_used {}",
            vm.kmap_atomic.lock().depth()
        );
    }

    /// `GET /api/vmallocinfo`.
    pub(super) fn vmallocinfo(&self, req: &Request) -> Result<Response, ApiError> {
        let vm = self.vm_parts(req)?;
        // Copy out without allocating under the lock: reserve, then retry
        // larger should areas have appeared in between.
        let mut capacity = vm.areas.lock().nr_areas() + 8;
        let (areas, range, stats, lazy_pages) = loop {
            let mut copy: Vec<VmapArea> = Vec::with_capacity(capacity);
            let areas = vm.areas.lock();
            if areas.nr_areas() <= copy.capacity() {
                copy.extend(areas.iter().copied());
                break (copy, areas.range(), areas.stats(), areas.lazy_pages());
            }
            capacity = areas.nr_areas() + 8;
        };
        #[derive(Serialize)]
        struct Vmallocinfo {
            start: Hex,
            end: Hex,
            total: u64,
            used: u64,
            vmalloc_pages: u64,
            largest_free: u64,
            nr_areas: usize,
            /// Pages of freed areas waiting for the lazy purge's TLB flush.
            lazy_pages: u64,
            areas: Vec<AreaJson>,
        }
        Ok(Response::json(
            200,
            &Vmallocinfo {
                start: Hex::new(range.0.0),
                end: Hex::new(range.1.0),
                total: stats.total_bytes,
                used: stats.used_bytes,
                vmalloc_pages: stats.vmalloc_pages,
                largest_free: stats.largest_free_bytes,
                nr_areas: stats.nr_areas,
                lazy_pages,
                areas: areas.iter().map(AreaJson::from).collect(),
            },
        ))
    }

    /// `GET /proc/vmallocinfo`: Linux's lines, by `mm`'s formatter, into a
    /// buffer reserved before the lock was taken.
    pub(super) fn proc_vmallocinfo(&self, req: &Request) -> Result<Response, ApiError> {
        let vm = self.vm_parts(req)?;
        let mut capacity = (vm.areas.lock().nr_areas() + 8) * 128;
        loop {
            let mut text = try_string(capacity)?;
            let (done, nr) = {
                let areas = vm.areas.lock();
                (
                    areas
                        .write_vmallocinfo(&mut super::text::Bounded(&mut text))
                        .is_ok(),
                    areas.nr_areas(),
                )
            };
            if done {
                return Ok(Response::text(200, text));
            }
            capacity = capacity.max((nr + 8) * 128) * 2;
        }
    }

    /// `GET /api/kmap`.
    pub(super) fn kmap_info(&self, req: &Request) -> Result<Response, ApiError> {
        let vm = self.vm_parts(req)?;
        #[derive(Serialize)]
        struct Entry {
            slot: usize,
            virt: Hex,
            pfn: u64,
            /// Linux's `pkmap_count`: 1 = mapped, no user (awaits the lazy
            /// flush); n ≥ 2 = n − 1 users.
            count: u32,
            users: u32,
            /// Users that are the API's (`DELETE /api/kmap/{slot}` drops one).
            api_users: u32,
        }
        #[derive(Serialize)]
        struct PkmapJson {
            base: Hex,
            slots: usize,
            used: usize,
            mapped: usize,
            flushes: u64,
            lazy_unmapped: u64,
            entries: Vec<Entry>,
        }
        #[derive(Serialize)]
        struct Atomic {
            base: Hex,
            slots: usize,
            used: usize,
        }
        #[derive(Serialize)]
        struct Kmap {
            pkmap: PkmapJson,
            atomic: Atomic,
        }
        let mut entries = Vec::with_capacity(LAST_PKMAP);
        let (used, mapped, (flushes, lazy)) = {
            let pkmap = vm.pkmap.lock();
            entries.extend(pkmap.slots().map(|e| Entry {
                slot: e.slot,
                virt: Hex::new(e.virt.0),
                pfn: e.pfn.0,
                count: e.count,
                users: e.users(),
                api_users: 0,
            }));
            (pkmap.nr_used(), pkmap.nr_mapped(), pkmap.flush_stats())
        };
        for e in &mut entries {
            e.api_users = self.vm.kmaps.get(&e.slot).map_or(0, |k| k.users);
        }
        let atomic_used = vm.kmap_atomic.lock().depth();
        Ok(Response::json(
            200,
            &Kmap {
                pkmap: PkmapJson {
                    base: Hex::new(PKMAP_BASE),
                    slots: LAST_PKMAP,
                    used,
                    mapped,
                    flushes,
                    lazy_unmapped: lazy,
                    entries,
                },
                atomic: Atomic {
                    base: Hex::new(FIXMAP_BASE),
                    slots: NR_FIX_KMAP,
                    used: atomic_used,
                },
            },
        ))
    }

    /// `POST /api/kmap {"id":N}`: `kmap()` of a pages handle's first page.
    /// A HighMem page gets a pkmap slot; a lowmem page answers its
    /// direct-map address with `"slot":null` (nothing to undo).
    pub(super) fn kmap(&mut self, req: &Request) -> Result<Response, ApiError> {
        let vm = self.vm_parts(req)?;
        super::alloc_cmd::check_fields(&req.body, &["id"], "a kmap")?;
        let body: KmapBody = parse_body(&req.body)?;
        let id = body
            .id
            .ok_or_else(|| ApiError::einval("missing \"id\" (a pages handle)"))?;
        if let Some(h) = self.vm.handles.get(&id) {
            return Err(ApiError::einval(format!(
                "allocation {id} is {}: kmap takes a pages handle (a vm area is mapped already)",
                h.kind.name()
            )));
        }
        if self.dma.handles.contains_key(&id) {
            return Err(ApiError::einval(format!(
                "allocation {id} is dma: kmap takes a pages handle (a coherent buffer is direct-mapped already)"
            )));
        }
        if let Some(h) = self.slab.handles.get(&id) {
            return Err(ApiError::einval(format!(
                "allocation {id} is {}: kmap takes a pages handle (a slab object lives in lowmem, direct-mapped already at {})",
                h.kind.name(),
                Hex::new(h.addr)
            )));
        }
        let handle = self
            .handles
            .get(&id)
            .copied()
            .ok_or_else(|| ApiError::enoent(format!("no allocation with id {id}")))?;
        let (virt, count) = {
            let mut pkmap = vm.pkmap.lock();
            let virt = pkmap
                .kmap(&DynMapper(vm.mapper), handle.pfn)
                .map_err(kmap_error)?;
            let count = pkmap_nr(virt)
                .and_then(|s| pkmap.slots().find(|e| e.slot == s))
                .map(|e| e.count);
            (virt, count)
        };
        let slot = pkmap_nr(virt);
        if let Some(slot) = slot {
            self.vm
                .kmaps
                .entry(slot)
                .or_insert(ApiKmap {
                    pfn: handle.pfn,
                    users: 0,
                })
                .users += 1;
        }
        #[derive(Serialize)]
        struct Kmapped {
            slot: Option<usize>,
            virt: Hex,
            pfn: u64,
            id: u64,
            count: Option<u32>,
        }
        Ok(Response::json(
            200,
            &Kmapped {
                slot,
                virt: Hex::new(virt.0),
                pfn: handle.pfn.0,
                id,
                count,
            },
        ))
    }

    /// `DELETE /api/kmap/{slot}`: `kunmap()` of one of the API's kmaps.
    pub(super) fn kunmap(&mut self, req: &Request, slot: &str) -> Result<Response, ApiError> {
        let vm = self.vm_parts(req)?;
        let nr = slot
            .parse::<usize>()
            .ok()
            .filter(|_| slot.len() <= 6 && slot.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ApiError::einval(format!("malformed kmap slot '{slot}'")))?;
        let Some(k) = self.vm.kmaps.get(&nr).copied() else {
            return Err(ApiError::enoent(format!("no API kmap in pkmap slot {nr}")));
        };
        let (pfn, count) = {
            let mut pkmap = vm.pkmap.lock();
            let pfn = pkmap.kunmap_slot(nr).map_err(kmap_error)?;
            (
                pfn,
                pkmap.slots().find(|e| e.slot == nr).map_or(0, |e| e.count),
            )
        };
        if k.users <= 1 {
            self.vm.kmaps.remove(&nr);
        } else if let Some(k) = self.vm.kmaps.get_mut(&nr) {
            k.users -= 1;
        }
        #[derive(Serialize)]
        struct Kunmapped {
            slot: usize,
            pfn: u64,
            count: u32,
        }
        Ok(Response::json(
            200,
            &Kunmapped {
                slot: nr,
                pfn: pfn.0,
                count,
            },
        ))
    }

    /// `GET /api/pagetable?addr=0x…`: the live tables' walk, from the
    /// kernel ([`super::System::pagetable`]).
    pub(super) fn pagetable(&self, req: &Request) -> Result<Response, ApiError> {
        let addr = req
            .query_param("addr")
            .ok_or_else(|| ApiError::einval("missing ?addr=0x…"))?;
        let addr = parse_hex("addr", addr)?;
        let walk: Walk = self
            .system
            .pagetable(VirtAddr(addr))
            .ok_or_else(|| not_built(req))?;
        #[derive(Serialize)]
        struct LevelJson {
            level: &'static str,
            index: u16,
            entry: Hex,
            flags: Vec<&'static str>,
            /// The table holding the entry.
            table: Hex,
            /// What the entry points at: the next table or the page.
            target: Option<Hex>,
        }
        #[derive(Serialize)]
        struct AreaRef {
            start: Hex,
            end: Hex,
            kind: &'static str,
            caller: &'static str,
            /// `addr` is the area's guard page.
            guard: bool,
        }
        #[derive(Serialize)]
        struct PagetableJson {
            addr: Hex,
            canonical: bool,
            mapped: bool,
            phys: Option<Hex>,
            page_size: Option<u64>,
            region: &'static str,
            area: Option<AreaRef>,
            levels: Vec<LevelJson>,
        }
        let image = self.system.kernel_sections();
        let image = match (image.code, image.bss) {
            (Some((s, _)), Some((_, e))) => Some((s.0, e.0)),
            _ => None,
        };
        let area = self.vm.parts.and_then(|vm| {
            vm.areas.lock().find(VirtAddr(addr)).map(|a| AreaRef {
                start: Hex::new(a.start.0),
                end: Hex::new(a.end().0),
                kind: a.kind.name(),
                caller: a.caller(),
                guard: addr >= a.end().0,
            })
        });
        let levels = walk
            .levels()
            .iter()
            .map(|l| LevelJson {
                level: l.level.name(),
                index: l.index,
                entry: Hex::new(l.entry),
                flags: l.flags().collect(),
                table: Hex::new(l.table_phys),
                target: l.present().then(|| Hex::new(l.target_phys())),
            })
            .collect();
        Ok(Response::json(
            200,
            &PagetableJson {
                addr: Hex::new(addr),
                canonical: walk.canonical(),
                mapped: walk.mapped(),
                phys: walk.phys.map(Hex::new),
                page_size: walk.mapped().then_some(walk.page_size),
                region: region(addr, image),
                area,
                levels,
            },
        ))
    }
}
