//! The HTTP API of API.md over the memory manager: an [`App`] for
//! [`crate::server::stack::NetStack`].
//!
//! [`Api`] owns what the API hands out — the handle table, every entry a
//! block it allocated with `OwnerTag::API` — and is the only code that can
//! free through HTTP, so a request can never free memory the API did not
//! allocate. Everything else is a view: it copies what it needs out of
//! `mm.lock()` (plain `Copy` data, or text written into a buffer reserved
//! before the lock was taken), drops the lock, and only then builds
//! strings and JSON, so the zone lock is never held across a heap
//! allocation (DESIGN.md).
//!
//! What only the kernel knows (uptime, version, DMA buffers, the kernel
//! image's sections, vmalloc and direct-map figures for meminfo) comes
//! through the [`System`] trait, and so do the `dma` handles' buffers
//! (`dma_alloc_coherent` on the kernel's one registry, see `dma.rs`);
//! boot-time facts (command line, firmware map, the retired memblock)
//! through [`BootView`].
//!
//! Routes of API.md whose subsystems are not built yet answer 404 ENOENT
//! "… is not available in this build", exactly as if absent, and are left
//! out of `/openapi.json` and of `Allow`; [`BUILT_ROUTES`] is the list.

mod alloc_cmd;
mod allocations;
mod bench;
mod cma;
mod compact;
mod dashboard;
mod dma;
pub mod dmesg;
mod events;
mod fault;
mod fixed_text;
mod metrics;
mod node_exporter;
mod page_owner;
mod pagecache;
mod pagemap;
mod percpu;
mod selfcheck;
mod slab;
mod tasks;
mod text;
mod trace;
mod views;
mod vm;
mod vmstat;
mod wait;

#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;

use mm::gfp::GfpFlags;
use mm::manager::MemoryManager;
use mm::memblock::Memblock;
use mm::platform::Platform;
use mm::procfs::{E820Type, KernelSections, Meminfo, ZoneinfoExtra};
use mm::types::{Order, Pfn, PhysAddr, VirtAddr};
use mm::zone::ZoneType;

use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::Response;
use crate::server::router::{NR_ROUTES, ROUTES, Route, RouteId, RouteMatch, route_in};
use crate::server::stack::{App, NetStats};

pub use dma::{DMA_OWNER, DmaCallError, DmaHandle, MAX_DMA_SIZE};
pub use mm::dma::CoherentInfo;
pub use slab::{
    KMALLOC_SPARE_SLABS, SlabAccess, SlabHandle, SlabHandleKind, settle_kmalloc_caches,
};
pub use views::{BounceInfo, CoherentBuffer, CpuInfo, DmaInfo};
pub use vm::{API_CALLER, PageAccess, PageTouch, Vm, VmHandle, VmHandleKind};

/// What only the kernel knows. Every method but [`System::now_ns`] is
/// called without any `mm` lock held and may allocate.
pub trait System {
    /// Milliseconds since boot (the TSC clock).
    fn uptime_ms(&self) -> u64;
    /// A monotonic nanosecond clock of arbitrary origin, for timing
    /// `POST /api/bench` operations (the kernel reads the calibrated TSC).
    /// Unlike the other methods it may be called between allocator calls,
    /// so it must be cheap and must neither allocate nor take a lock. The
    /// default, [`System::uptime_ms`] scaled, is too coarse to time one
    /// operation.
    fn now_ns(&self) -> u64 {
        self.uptime_ms().saturating_mul(1_000_000)
    }
    /// The image's version string (`/api/health`).
    fn version(&self) -> &str;
    /// Unix time of the boot, in seconds: the wall clock read at boot
    /// (the kernel reads the CMOS RTC, which QEMU keeps in UTC) less the
    /// uptime then (`/metrics`' `pagezone_boot_time_seconds`). `None`
    /// (the default): no wall clock.
    fn boot_time_unix(&self) -> Option<u64> {
        None
    }
    /// Coherent DMA buffers and bounce-pool counters (`/api/dma`).
    fn dma(&self) -> DmaInfo {
        DmaInfo::default()
    }
    /// `dma_alloc_coherent(size)` on the kernel's coherent DMA registry
    /// (the one its drivers use), recorded with owner [`DMA_OWNER`], for
    /// `POST /api/alloc {"type":"dma"}`: zeroed, physically contiguous
    /// frames below 4 GiB in the direct map. `size` is 1..=[`MAX_DMA_SIZE`].
    /// The default: not available in this build.
    fn dma_alloc_coherent(&self, size: u64) -> Result<CoherentInfo, DmaCallError> {
        let _ = size;
        Err(DmaCallError::NotAvailable)
    }
    /// `dma_free_coherent()` of a buffer [`System::dma_alloc_coherent`]
    /// returned, named by its DMA address and the size it was allocated
    /// with; refused, with nothing freed, for any other address or size.
    fn dma_free_coherent(&self, dma_addr: PhysAddr, size: u64) -> Result<(), DmaCallError> {
        let _ = (dma_addr, size);
        Err(DmaCallError::NotAvailable)
    }
    /// The kernel image's sections, nested under System RAM in
    /// `/proc/iomem`.
    fn kernel_sections(&self) -> KernelSections {
        KernelSections::default()
    }
    /// Fill in the meminfo lines the page allocator does not know
    /// (`VmallocTotal`, `PageTables`, `DirectMap*`, slab, …); `mi` arrives
    /// filled by `Meminfo::from_page_alloc`.
    fn meminfo(&self, mi: &mut Meminfo) {
        let _ = mi;
    }
    /// The per-CPU allocator's first chunk, if the kernel set one up at
    /// boot (cf. `pcpu_setup_first_chunk()`): unit 0's address in the
    /// direct map and the layout. `alloc_percpu` serves its dynamic part
    /// before it takes a chunk from the buddy allocator, and never gives
    /// it back. The default: none.
    fn percpu_first_chunk(&self) -> Option<(u64, mm::percpu::FirstChunkLayout)> {
        None
    }
    /// The online CPUs: each one's number and local APIC id, in CPU
    /// order (`/api/cpus`). The default: the boot CPU alone, APIC id 0.
    fn cpus(&self) -> Vec<CpuInfo> {
        alloc::vec![CpuInfo {
            cpu: 0,
            apic_id: 0,
            ..CpuInfo::default()
        }]
    }
    /// Runs `job(slot, cpu)` on the first `n` online CPUs at once — slot 0
    /// on the calling CPU, the others through their work queues — and
    /// returns when every one has finished. `job` must not use the heap
    /// (the slab allocator is not per-CPU yet). The default runs one CPU.
    fn run_on_cpus(
        &self,
        n: usize,
        job: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(), &'static str> {
        if n != 1 {
            return Err("this system runs work on one CPU");
        }
        job(0, 0);
        Ok(())
    }
    /// TLB shootdowns sent to other CPUs so far (`/api/cpus`).
    fn tlb_shootdowns(&self) -> u64 {
        0
    }
    /// Per-node counters and pagesets for `/proc/zoneinfo`.
    fn zoneinfo_extra(&self) -> ZoneinfoExtra {
        ZoneinfoExtra::DEFAULT
    }
    /// The walk of `addr` through the live page tables (`/api/pagetable`);
    /// `None` where there are none to walk (the route then answers 404).
    fn pagetable(&self, addr: VirtAddr) -> Option<mm::pgtable::Walk> {
        let _ = addr;
        None
    }
    /// Touches the 4 KiB page at `virt` (page-aligned) through its kernel
    /// mapping: a page of an API vmalloc or ioremap area, for fill and
    /// checksum. In a lazy area an untouched page is faulted in by the CPU
    /// itself — the access goes through the #PF handler (zero page on a
    /// read, a new frame on a write) — and a fault the handler cannot
    /// resolve comes back as [`PageTouch::Fault`] instead of an oops.
    /// `None` (the default) if this system does not lend kernel mappings:
    /// the API then walks the PTE and resolves lazy faults itself (host
    /// fakes, which have no MMU).
    fn touch_kernel_page(&self, virt: VirtAddr, access: PageAccess<'_>) -> Option<PageTouch> {
        let _ = (virt, access);
        None
    }
    /// The first record of the kernel log ring with `seq >= since`, copied
    /// out (`/api/dmesg`); `None` when there is none (the default: no ring).
    fn log_record(&self, since: u64) -> Option<dmesg::LogRecord> {
        let _ = since;
        None
    }
    /// Log one line at `level` (to the console and the ring), as `printk`
    /// does: the OOM killer's report. The default drops it.
    fn printk(&self, level: dmesg::LogLevel, line: &str) {
        let _ = (level, line);
    }
    /// The sequence number the log ring gives its next record (`None`:
    /// no ring), so a report can name the records it was printed as.
    fn log_next_seq(&self) -> Option<u64> {
        None
    }
}

/// Boot-time facts, fixed after boot.
#[derive(Clone, Copy)]
pub struct BootView<'a> {
    /// The kernel command line as given.
    pub cmdline: &'a str,
    /// The firmware memory map, `(start, end_exclusive, type)`.
    pub firmware_map: &'a [(PhysAddr, PhysAddr, E820Type)],
    /// memblock as it was when it handed memory to the buddy allocator:
    /// its reservations (with names) and `mem=`'s limited regions.
    pub memblock: &'a Memblock,
    /// Device MMIO `/proc/iomem` lists: the memory BARs of the PCI
    /// functions a driver here uses, named `0000:BB:DD.F`.
    pub devices: &'a [mm::procfs::IomemDevice<'a>],
}

/// Default share of managed memory the API may hold (`api_quota=`).
pub const DEFAULT_API_QUOTA_PCT: u8 = mm::cmdline::DEFAULT_API_QUOTA_PCT;

/// The routes this build serves (the rest of API.md answers 404).
pub const BUILT_ROUTES: &[RouteId] = &[
    RouteId::Dashboard,
    RouteId::Health,
    RouteId::Memmap,
    RouteId::Zones,
    RouteId::Buddyinfo,
    RouteId::Meminfo,
    RouteId::Slabinfo,
    RouteId::Dma,
    RouteId::MempoolList,
    RouteId::Allocations,
    RouteId::HandleInfo,
    RouteId::NetInfo,
    RouteId::Pagemap,
    RouteId::Metrics,
    RouteId::OpenApi,
    RouteId::ProcBuddyinfo,
    RouteId::ProcZoneinfo,
    RouteId::ProcSlabinfo,
    RouteId::ProcMeminfo,
    RouteId::ProcIomem,
    RouteId::ProcPagetypeinfo,
    RouteId::Alloc,
    RouteId::Free,
    RouteId::Fill,
    RouteId::Checksum,
    RouteId::CacheCreate,
    RouteId::CacheDestroy,
    RouteId::CacheShrink,
    RouteId::MempoolCreate,
    RouteId::MempoolDestroy,
    RouteId::MempoolResize,
    RouteId::Reset,
    RouteId::Vmallocinfo,
    RouteId::ProcVmallocinfo,
    RouteId::KmapInfo,
    RouteId::Kmap,
    RouteId::Kunmap,
    RouteId::Pagetable,
    RouteId::Bench,
    RouteId::Selfcheck,
    RouteId::Dmesg,
    RouteId::ProcVmstat,
    RouteId::Vmstat,
    RouteId::TaskCreate,
    RouteId::TaskList,
    RouteId::TaskGet,
    RouteId::TaskDelete,
    RouteId::TaskOomScoreAdj,
    RouteId::ProcOomScore,
    RouteId::ProcOomScoreAdj,
    RouteId::Oom,
    RouteId::DmesgJson,
    RouteId::FaultAttrGet,
    RouteId::FaultAttrSet,
    RouteId::ExtfragIndex,
    RouteId::UnusableIndex,
    RouteId::Compact,
    RouteId::Cma,
    RouteId::Cpus,
    RouteId::TraceRead,
    RouteId::TraceClear,
    RouteId::TracePipe,
    RouteId::TraceAvailableEvents,
    RouteId::TraceBufferSizeKb,
    RouteId::TraceBufferTotalSizeKb,
    RouteId::TracePerCpu,
    RouteId::TraceEnableAllGet,
    RouteId::TraceEnableAllSet,
    RouteId::TraceEnableSystemGet,
    RouteId::TraceEnableSystemSet,
    RouteId::TraceEnableEventGet,
    RouteId::TraceEnableEventSet,
    RouteId::Events,
    RouteId::PageOwner,
];

/// One live API allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    pub id: u64,
    pub pfn: Pfn,
    pub order: Order,
    pub gfp: GfpFlags,
    pub zone: ZoneType,
    /// Direct-map address; `None` for HighMem.
    pub virt: Option<VirtAddr>,
    pub created_ms: u64,
}

/// Statuses counted per route; anything else is counted as `0`.
const COUNTED_STATUSES: [u16; 14] = [
    200, 201, 204, 304, 400, 401, 404, 405, 409, 413, 431, 500, 503, 507,
];

/// Per-route request counters for `/metrics`: a fixed table, so counting
/// a request never allocates — in particular not the first 507 of a
/// route, which comes exactly when memory is gone, and would otherwise
/// leave a node of the kernel heap wherever memory was then. The table is
/// allocated once, with the `Api`, on the heap: inline it would grow the
/// main loop's stack frame by 120 bytes per route (the kernel's boot stack
/// is 64 KiB, and the deepest request paths need most of it).
#[derive(Debug)]
struct HttpCounters {
    /// `[route as usize or NR_ROUTES for "unmatched"][status slot]`.
    counts: alloc::boxed::Box<[[u64; COUNTED_STATUSES.len() + 1]]>,
}

impl Default for HttpCounters {
    fn default() -> Self {
        HttpCounters {
            counts: alloc::vec![[0; COUNTED_STATUSES.len() + 1]; NR_ROUTES + 1].into_boxed_slice(),
        }
    }
}

impl HttpCounters {
    fn record(&mut self, route: Option<RouteId>, status: u16) {
        let r = route.map_or(NR_ROUTES, |id| id as usize);
        let s = COUNTED_STATUSES
            .iter()
            .position(|&c| c == status)
            .unwrap_or(COUNTED_STATUSES.len());
        if let Some(n) = self.counts.get_mut(r).and_then(|row| row.get_mut(s)) {
            *n += 1;
        }
    }

    /// `(route pattern or "unmatched", status, count)` of every non-zero
    /// counter, ordered by pattern then status.
    fn for_each(&self, mut f: impl FnMut(&'static str, u16, u64)) {
        let pattern = |r: usize| {
            ROUTES
                .iter()
                .find(|route| route.id as usize == r)
                .map_or("unmatched", |route| route.id.pattern())
        };
        let mut order = [0usize; NR_ROUTES + 1];
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i;
        }
        order.sort_unstable_by_key(|&r| pattern(r));
        for r in order {
            let mut row: [(u16, u64); COUNTED_STATUSES.len() + 1] =
                [(0, 0); COUNTED_STATUSES.len() + 1];
            for (i, &n) in self.counts[r].iter().enumerate() {
                row[i] = (COUNTED_STATUSES.get(i).copied().unwrap_or(0), n);
            }
            row.sort_unstable_by_key(|&(status, _)| status);
            for (status, n) in row {
                if n > 0 {
                    f(pattern(r), status, n);
                }
            }
        }
    }
}

/// The API application; see the module doc.
pub struct Api<'a, P: Platform> {
    mm: &'a MemoryManager<'a, P>,
    boot: BootView<'a>,
    system: &'a dyn System,
    routes: Vec<Route>,
    handles: BTreeMap<u64, Handle>,
    next_id: u64,
    /// Pages the API may hold at once.
    quota_pages: u64,
    quota_pct: u8,
    held_pages: u64,
    counters: HttpCounters,
    /// vmalloc/ioremap handles, API kmaps, and the kernel's VM state.
    vm: vm::VmState<'a>,
    /// Slab caches, mempools and the `kmalloc`/`cache`/`mempool` handles.
    slab: slab::SlabState<'a>,
    /// The `dma` handles (coherent buffers from the kernel's registry).
    dma: dma::DmaState,
    /// Tasks, which handles they own, and the OOM killer's record.
    tasks: tasks::TaskState,
    /// Page-cache handles, their frames on the LRU, and kswapd.
    pagecache: pagecache::PageCacheState,
    /// The `cma` handles (runs of the CMA area).
    cma: cma::CmaState,
    /// `alloc_percpu()`: the chunks and the `percpu` handles.
    percpu: percpu::PercpuState,
    /// Sleeping allocations (`wait_ms`, `mempool_alloc`). Boxed (once, at
    /// boot): the queues are kilobytes, and the `Api` lives in the main
    /// loop's frame of a 64 KiB kernel stack that the deepest views
    /// (`/api/vmstat`: 12 KiB) come close to using up.
    waits: alloc::boxed::Box<wait::Waits>,
    /// `trace_pipe` readers and `/api/events` subscribers (boxed once, at
    /// boot, for the same reason).
    streams: alloc::boxed::Box<events::TraceStreams>,
}

impl<'a, P: Platform> Api<'a, P> {
    /// The API over `mm`. `api_quota_pct` (1..=100, clamped) of the
    /// managed pages at this moment is what API handles may hold at once.
    pub fn new(
        mm: &'a MemoryManager<'a, P>,
        boot: BootView<'a>,
        system: &'a dyn System,
        api_quota_pct: u8,
    ) -> Api<'a, P> {
        let pct = api_quota_pct.clamp(1, 100);
        let managed = mm.lock().totalram_pages();
        Api {
            mm,
            boot,
            system,
            routes: ROUTES
                .iter()
                .filter(|r| BUILT_ROUTES.contains(&r.id))
                .copied()
                .collect(),
            handles: BTreeMap::new(),
            next_id: 1,
            quota_pages: managed * u64::from(pct) / 100,
            quota_pct: pct,
            held_pages: 0,
            counters: HttpCounters::default(),
            vm: vm::VmState::default(),
            slab: slab::SlabState::new(),
            dma: dma::DmaState::default(),
            tasks: tasks::TaskState::default(),
            pagecache: pagecache::PageCacheState::default(),
            cma: cma::CmaState::default(),
            percpu: percpu::PercpuState::new(mm.nr_cpus(), system.percpu_first_chunk()),
            waits: alloc::boxed::Box::default(),
            streams: alloc::boxed::Box::default(),
        }
    }

    /// The live handles, by id.
    pub fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.handles.values()
    }

    /// Pages held by API handles, and the quota.
    pub fn quota(&self) -> (u64, u64) {
        (self.held_pages, self.quota_pages)
    }

    fn dispatch(&mut self, req: &Request, net: &NetStats) -> (Option<RouteId>, Response) {
        match route_in(&self.routes, req.method, &req.path) {
            RouteMatch::Found(id, params) => {
                let mut values = params.iter().map(|(_, v)| v);
                let (param, param2) = (values.next(), values.next());
                let result = self.serve(id, param, param2, req, net);
                (Some(id), result.unwrap_or_else(ApiError::into_response))
            }
            RouteMatch::MethodNotAllowed(allow) => {
                (None, ApiError::method_not_allowed(&allow).into_response())
            }
            RouteMatch::NotFound => {
                let known = !matches!(
                    route_in(ROUTES, req.method, &req.path),
                    RouteMatch::NotFound
                );
                let message = if known {
                    format!("{} is not available in this build", req.path)
                } else {
                    format!("no such path: {}", req.path)
                };
                (None, ApiError::enoent(message).into_response())
            }
        }
    }

    fn serve(
        &mut self,
        id: RouteId,
        param: Option<&str>,
        param2: Option<&str>,
        req: &Request,
        net: &NetStats,
    ) -> Result<Response, ApiError> {
        let param = || param.unwrap_or_default();
        let param2 = || param2.unwrap_or_default();
        if let Some(allowed) = alloc_cmd::documented_query(id) {
            alloc_cmd::check_query(req, allowed)?;
        }
        // (`POST /api/alloc` checks inside its slow path, where reclaim
        // and the OOM killer can still make room.)
        if matches!(
            id,
            RouteId::CacheCreate | RouteId::MempoolCreate | RouteId::Kmap | RouteId::Bench
        ) {
            self.check_kernel_reserve()?;
        }
        Ok(match id {
            RouteId::Dashboard => return dashboard::dashboard(req),
            RouteId::Health => views::health(self.system),
            RouteId::Memmap => views::memmap(&self.boot),
            RouteId::Zones => views::zones(self.mm),
            RouteId::Buddyinfo => views::buddyinfo(self.mm),
            RouteId::Meminfo => {
                let reserve = self.mm.lock().kernel_reserve();
                views::meminfo(&self.meminfo(), reserve)
            }
            RouteId::Dma => views::dma(&self.system.dma()),
            RouteId::Allocations => return self.allocations_view(req),
            RouteId::HandleInfo => return self.handle_view(param()),
            RouteId::NetInfo => views::net(net),
            RouteId::Pagemap => {
                let q = |name| req.query_param(name);
                return pagemap::pagemap(self.mm, q("start_pfn"), q("count"));
            }
            RouteId::Metrics => self.metrics(net),
            RouteId::OpenApi => return dashboard::openapi(req),
            RouteId::ProcBuddyinfo => text::buddyinfo(self.mm),
            RouteId::ProcZoneinfo => text::zoneinfo(self.mm, &self.system.zoneinfo_extra()),
            RouteId::ProcMeminfo => text::meminfo(&self.meminfo()),
            RouteId::ProcIomem => text::iomem(&self.boot, &self.system.kernel_sections()),
            RouteId::ProcPagetypeinfo => text::pagetypeinfo(self.mm),
            RouteId::ExtfragIndex => text::extfrag_index(self.mm),
            RouteId::Compact => return self.compact(req),
            RouteId::Cma => self.cma_view(),
            RouteId::Cpus => {
                views::cpus(self.mm, &self.system.cpus(), self.system.tlb_shootdowns())
            }
            RouteId::UnusableIndex => text::unusable_index(self.mm),
            RouteId::Slabinfo => return self.slabinfo(),
            RouteId::ProcSlabinfo => return self.proc_slabinfo(),
            RouteId::MempoolList => return self.mempool_list(),
            RouteId::CacheCreate => return self.cache_create(&req.body),
            RouteId::CacheDestroy => return self.cache_destroy(param()),
            RouteId::CacheShrink => return self.cache_shrink(param()),
            RouteId::MempoolCreate => return self.mempool_create(&req.body),
            RouteId::MempoolDestroy => return self.mempool_destroy(param()),
            RouteId::MempoolResize => return self.mempool_resize(param(), &req.body),
            RouteId::Free | RouteId::Fill | RouteId::Checksum if self.is_slab_handle(param()) => {
                return self.slab_handle_cmd(id, param(), req);
            }
            RouteId::Free | RouteId::Fill | RouteId::Checksum
                if self.is_pagecache_handle(param()) =>
            {
                return self.pagecache_cmd(id, param(), req);
            }
            RouteId::Free | RouteId::Fill | RouteId::Checksum if self.is_dma_handle(param()) => {
                return self.dma_handle_cmd(id, param(), req);
            }
            RouteId::Free | RouteId::Fill | RouteId::Checksum if self.is_cma_handle(param()) => {
                return self.cma_handle_cmd(id, param(), req);
            }
            RouteId::Free | RouteId::Fill | RouteId::Checksum if self.is_percpu_handle(param()) => {
                return self.percpu_handle_cmd(id, param(), req);
            }
            RouteId::Alloc => return self.alloc_for_task(req),
            RouteId::Free => return self.free(req, param(), req.query_param("order")),
            RouteId::Fill => return self.fill(req, param()),
            RouteId::Checksum => return self.checksum(req, param()),
            RouteId::Reset => {
                // Sleepers first: their retries then answer 507 without
                // allocating behind the reset's back.
                self.reset_waits();
                self.reset()
            }
            RouteId::Vmallocinfo => return self.vmallocinfo(req),
            RouteId::ProcVmallocinfo => return self.proc_vmallocinfo(req),
            RouteId::KmapInfo => return self.kmap_info(req),
            RouteId::Kmap => return self.kmap(req),
            RouteId::Kunmap => return self.kunmap(req, param()),
            RouteId::Pagetable => return self.pagetable(req),
            RouteId::Bench => return self.bench(&req.body),
            RouteId::Selfcheck => return self.selfcheck(),
            RouteId::Dmesg => return self.dmesg_text(req),
            RouteId::ProcVmstat => self.proc_vmstat(),
            RouteId::Vmstat => return self.api_vmstat(),
            RouteId::TaskCreate => return self.task_create(req),
            RouteId::TaskList => return self.task_list(),
            RouteId::TaskGet => return self.task_get(param()),
            RouteId::TaskDelete => return self.task_delete(param()),
            RouteId::TaskOomScoreAdj => return self.task_set_adj(param(), req),
            RouteId::ProcOomScore => return self.proc_oom(param(), false),
            RouteId::ProcOomScoreAdj => return self.proc_oom(param(), true),
            RouteId::Oom => return self.oom_view(),
            RouteId::DmesgJson => return self.dmesg_json(req),
            RouteId::FaultAttrGet | RouteId::FaultAttrSet => {
                let (fault, attr) = (param(), param2());
                return if id == RouteId::FaultAttrGet {
                    self.fault_attr_get(fault, attr)
                } else {
                    self.fault_attr_set(fault, attr, req)
                };
            }
            RouteId::TraceRead => return self.trace_read(),
            RouteId::TraceClear => self.trace_clear(),
            RouteId::TracePipe => return self.trace_pipe(req),
            RouteId::Events => return self.events(req),
            RouteId::PageOwner => return self.page_owner(req),
            RouteId::TraceAvailableEvents => return self.available_events(),
            RouteId::TraceBufferSizeKb => return self.trace_buffer_size_kb(),
            RouteId::TraceBufferTotalSizeKb => return self.trace_buffer_total_size_kb(),
            RouteId::TracePerCpu => return self.trace_per_cpu(param(), param2()),
            RouteId::TraceEnableAllGet
            | RouteId::TraceEnableSystemGet
            | RouteId::TraceEnableEventGet => {
                return self.trace_enable_get(enable_file(id, param(), param2()));
            }
            RouteId::TraceEnableAllSet
            | RouteId::TraceEnableSystemSet
            | RouteId::TraceEnableEventSet => {
                return self.trace_enable_set(enable_file(id, param(), param2()), req);
            }
            _ => {
                return Err(ApiError::enoent(format!(
                    "{} is not available in this build",
                    req.path
                )));
            }
        })
    }

    /// Refuse (507) a command that would make the kernel hold more memory
    /// when its heap has little left to grow into: the kernel reserve
    /// (which the heap grows into first after boot) has less than an
    /// eighth (at least 16 pages) left *and* the zone it lies in is at or
    /// below its min watermark, where a `GFP_KERNEL` request for the heap
    /// fails and only the atomic slack below min is left. The API's own
    /// bookkeeping for one more handle (a table node, a response) then
    /// cannot be what empties it. Frees and `POST /api/reset` stay open.
    pub(super) fn check_kernel_reserve(&self) -> Result<(), ApiError> {
        // Copy out, then drop the zone lock before formatting (no heap
        // allocation under it).
        let (r, zone_free, zone_min) = {
            let pa = self.mm.lock();
            let Some(r) = pa.kernel_reserve() else {
                return Ok(());
            };
            let zone = pa.zone(r.zone);
            (r, zone.free_pages, zone.watermarks.min)
        };
        if r.free_pages < (r.nr_pages / 8).max(16) && zone_free <= zone_min {
            return Err(ApiError::enomem(format!(
                "kernel memory is low: the heap has used {} of its {} reserve pages and {} is at its min watermark; free handles or POST /api/reset",
                r.nr_pages - r.free_pages,
                r.nr_pages,
                r.zone.name()
            )));
        }
        Ok(())
    }

    /// `/proc/meminfo`'s values: the allocator's part copied under the
    /// lock, the kernel's added after.
    fn meminfo(&self) -> Meminfo {
        let mut mi = Meminfo::from_page_alloc(&self.mm.lock());
        self.system.meminfo(&mut mi);
        self.vm_meminfo(&mut mi);
        if let Some(pages) = self.slab_pages() {
            // Slabs and kmalloc_large blocks: all unreclaimable here.
            mi.set_slab_kb(0, pages * (mm::types::PAGE_SIZE >> 10));
        }
        // The page cache: every LRU page is a file page.
        let kb = mm::types::PAGE_SIZE >> 10;
        let (mut inactive, mut active) = (0, 0);
        {
            let pa = self.mm.lock();
            for zt in ZoneType::ALL {
                let (i, a) = pa.lru_sizes(zt);
                inactive += i;
                active += a;
            }
        }
        mi.cached_kb = self.pagecache_pages() * kb;
        mi.percpu_kb = self.percpu_pages() * kb;
        mi.active_kb = active * kb;
        mi.inactive_kb = inactive * kb;
        mi.active_file_kb = active * kb;
        mi.inactive_file_kb = inactive * kb;
        mi
    }
}

impl<P: Platform> App for Api<'_, P> {
    fn handle(&mut self, req: &Request, net: &NetStats) -> Response {
        // kswapd, woken by an earlier request, runs before this one.
        self.kswapd();
        let (route, response) = self.dispatch(req, net);
        self.note_watermarks();
        if response.pending.is_some() {
            // Asleep: counted once answered.
            return response;
        }
        if req.park.is_some_and(|p| events::is_stream_token(p.token)) {
            // A stream's next round: the stream was counted when it began.
            return response;
        }
        // Commands that give memory back wake the allocations sleeping
        // for it (the OOM reaper and reclaim wake them where they free).
        if response.status == 200
            && matches!(
                route,
                Some(
                    RouteId::Free
                        | RouteId::TaskDelete
                        | RouteId::CacheShrink
                        | RouteId::CacheDestroy
                        | RouteId::MempoolDestroy
                        | RouteId::MempoolResize
                )
            )
        {
            self.wake_page_waiters();
        }
        self.counters.record(route, response.status);
        response
    }

    fn cancel(&mut self, token: u64) {
        if !self.end_stream(token) {
            self.finish_wait(token, false);
        }
    }
}

/// The tracefs `enable` file a route names.
fn enable_file<'p>(id: RouteId, system: &'p str, event: &'p str) -> trace::EnableFile<'p> {
    match id {
        RouteId::TraceEnableAllGet | RouteId::TraceEnableAllSet => trace::EnableFile::All,
        RouteId::TraceEnableSystemGet | RouteId::TraceEnableSystemSet => {
            trace::EnableFile::System(system)
        }
        _ => trace::EnableFile::Event(system, event),
    }
}

/// `/openapi.json`: OpenAPI 3.0 for [`BUILT_ROUTES`] (a test keeps the
/// two in step), minified and gzip-compressed by `build.rs`; see
/// [`dashboard`].
pub use dashboard::openapi_json;
