//! Memory bring-up: from the firmware map to a running buddy allocator on
//! the kernel's final page tables. Policy (what is reserved, which zone a
//! frame is in, how blocks split) is `mm`'s; this module is the mechanism
//! that touches CR3 and raw memory.
//!
//! ```text
//!  physical (make run: -m 2G, lowmem=896M)        virtual
//!  0x0000_0000 ┌────────────┐ ZONE_DMA           0x0000_0000_0010_0000 kernel image (identity, W^X)
//!  0x0010_0000 │ kernel     │                    0xffff_8880_0000_0000 direct map of [0, lowmem)
//!  0x0100_0000 ├────────────┤ ZONE_DMA32                               (2 MiB pages where aligned)
//!              │ mem_map,   │                    0xffff_c900_0000_0000 vmalloc area (vmalloc=)
//!              │ page tables│                    0xffff_fe00_0000_0000 pkmap: 1024 kmap slots
//!  0x3800_0000 ├────────────┤ ZONE_HIGHMEM       0xffff_fe00_0040_0000 fixmap: 16 kmap_atomic slots
//!              │ no direct  │ (reached only through kmap / kmap_atomic / vmap)
//!  0x7ffd_f000 └────────────┘ end of RAM (mem= can cap it; the tail stays reserved)
//! ```
//!
//! Order of events (cf. `setup_arch()` → `mm_core_init()`):
//! 1. memblock from the e820 map; reservations for the kernel image, boot
//!    info, page 0; `mem=` applied.
//! 2. final page tables built in memblock frames while the boot identity map
//!    is still live, then CR3 switched and the identity map dropped (but for
//!    the kernel image).
//! 3. `mem_map` allocated from memblock in lowmem, every descriptor reserved.
//!    Beside it, the slab overlay (`SlabMeta` per lowmem frame), all empty.
//! 4. memblock hands its free ranges to the buddy allocator and retires.
//! 5. the vmalloc area is sized (`vmalloc=`) and the pkmap pool set up;
//!    from here on vmalloc, ioremap and kmap map pages through
//!    [`mapper`]'s `PageMapper` on the live tables.

pub mod fault;
pub mod highmem;
pub mod ioremap;
pub mod mapper;
pub mod paging;
pub mod vmalloc;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::{Mutex, Once};

use mm::cmdline::BootParams;
use mm::manager::MemoryManager;
use mm::memblock::Memblock;
use mm::page::Page;
use mm::page_alloc::PageAlloc;
use mm::slab::SlabMeta;
use mm::trace::TraceRecord;
use mm::types::{PAGE_SHIFT, PAGE_SIZE, Pfn, PhysAddr};
use mm::zone::ZoneLayout;

use crate::arch::x86_64::boot;
use crate::logger::LogWriter;
use crate::pvh::{BootInfo, MemType};
use highmem::KernelPlatform;

/// The page allocator and its mapping services, once [`init`] ran.
pub type Mm = MemoryManager<'static, KernelPlatform>;

static MM: Once<Mm> = Once::new();

/// memblock: live during boot, then kept read-only for `/api/memmap`.
/// Built at its first use, as `drivers::dma`'s registry is: the empty
/// region slots' names are non-null `&str`s, so a constant initialiser put
/// the tables (12.4 KB) in the image's `.data`.
static MEMBLOCK: Once<Mutex<Memblock>> = Once::new();

/// The slab overlay carved out by [`init`], until the slab allocator takes it.
static SLAB_META: Mutex<Option<&'static mut [SlabMeta]>> = Mutex::new(None);

/// The per-frame slab overlay (one entry per lowmem frame, all
/// `SlabMeta::EMPTY`), once: the slab allocator's to own.
pub fn take_slab_meta() -> Option<&'static mut [SlabMeta]> {
    SLAB_META.lock().take()
}

/// The memory manager. Panics before [`init`]: nothing may allocate earlier.
pub fn mm() -> &'static Mm {
    MM.get().expect("memory::init has run")
}

/// The retired memblock (regions and reservations as at hand-over).
pub fn memblock() -> spin::MutexGuard<'static, Memblock> {
    MEMBLOCK.call_once(|| Mutex::new(Memblock::new())).lock()
}

/// Brings memory management up. Runs once, on the boot stack, with the boot
/// identity map still live. Never inlined: its locals (memblock copies, the
/// allocator before it moves into its static) must not stay in `kmain`'s
/// frame, which lives as long as the kernel.
#[inline(never)]
pub fn init(boot: &'static BootInfo, params: &BootParams<'_>) {
    let mut mb = memblock();
    memblock_setup(&mut mb, boot, params);
    crate::time::boot_phase("memblock");

    let end_of_ram = mb.end_of_ram().0;
    let lowmem = lowmem_limit(params.lowmem);
    let cma = reserve_cma(&mut mb, params, lowmem.min(end_of_ram));
    let layout = ZoneLayout::from_bytes(lowmem, end_of_ram);
    let max_pfn = layout.max_pfn;
    log::info!(
        "memory: {} MiB RAM, max_pfn {:#x}, lowmem limit {:#x} ({} MiB), HighMem {} MiB",
        mb.total_memory() >> 20,
        max_pfn.0,
        lowmem,
        lowmem.min(end_of_ram) >> 20,
        end_of_ram.saturating_sub(lowmem) >> 20
    );

    // The mem_map lives in lowmem, where the direct map will reach it.
    let mem_map_bytes = max_pfn.0 * size_of::<Page>() as u64;
    let mem_map_phys = mb
        .alloc_named(
            mem_map_bytes,
            PAGE_SIZE,
            PhysAddr(lowmem.min(boot::BOOT_IDENTITY_LIMIT)),
            "mem_map",
        )
        .unwrap_or_else(|| panic!("memblock: no {mem_map_bytes} bytes below lowmem for mem_map"));
    log::info!(
        "memory: mem_map {} descriptors x {} bytes = {} KiB at {:#x}",
        max_pfn.0,
        size_of::<Page>(),
        mem_map_bytes >> 10,
        mem_map_phys.0
    );

    let direct_map_end = lowmem.min(end_of_ram);

    // The slab layer's per-frame overlay (cf. `struct slab` over `struct
    // page`): one `SlabMeta` per lowmem frame, beside mem_map.
    let lowmem_pfns = direct_map_end >> PAGE_SHIFT;
    let slab_meta_bytes = mm::slab::slab_meta_bytes(lowmem_pfns);
    let slab_meta_phys = mb
        .alloc_named(
            slab_meta_bytes,
            PAGE_SIZE,
            PhysAddr(lowmem.min(boot::BOOT_IDENTITY_LIMIT)),
            "slab_meta",
        )
        .unwrap_or_else(|| {
            panic!("memblock: no {slab_meta_bytes} bytes below lowmem for the slab overlay")
        });

    // The trace rings (mm::trace): one per possible CPU (the MADT's, as
    // Linux sizes its ring buffer for cpu_possible_mask), fixed at boot,
    // never the heap's.
    let trace = TraceRings::size(mb.total_memory());
    let trace_bytes = trace.bytes();
    let trace_phys = mb
        .alloc_named(
            trace_bytes,
            PAGE_SIZE,
            PhysAddr(lowmem.min(boot::BOOT_IDENTITY_LIMIT)),
            "trace_ring",
        )
        .unwrap_or_else(|| {
            panic!("memblock: no {trace_bytes} bytes below lowmem for the trace rings")
        });

    // page_owner's side array (mm::page_owner), only when asked for, as
    // Linux allocates page_ext only with `page_owner=on`.
    let page_owner_bytes = max_pfn.0 * size_of::<mm::page_owner::PageOwnerRecord>() as u64;
    let page_owner_phys = params.page_owner.then(|| {
        mb.alloc_named(
            page_owner_bytes,
            PAGE_SIZE,
            PhysAddr(lowmem.min(boot::BOOT_IDENTITY_LIMIT)),
            "page_owner",
        )
        .unwrap_or_else(|| {
            panic!("memblock: no {page_owner_bytes} bytes below lowmem for page_owner")
        })
    });

    paging::init_final_tables(&mut mb, direct_map_end);
    // cf. start_kernel(): setup_per_cpu_areas() right after setup_arch(),
    // while memblock still allocates; the direct map reaches the chunk.
    crate::arch::x86_64::percpu::setup_per_cpu_areas(&mut mb, direct_map_end);
    crate::time::boot_phase("page tables");

    // Neither array is cleared here: mem_map's descriptors are written by
    // `PageAlloc::new_deferred` as deferred init reaches them (cf.
    // CONFIG_DEFERRED_STRUCT_PAGE_INIT), the overlay by the slab allocator
    // (`SlabAllocator::new`). Writing them here too cost 8 MiB + 3.5 MiB of
    // stores on a 2 GiB guest.
    // SAFETY: `mem_map_phys` is a memblock reservation of `mem_map_bytes`
    // below `direct_map_end`, so the direct map (live since the CR3 switch
    // above) maps it writable at `PAGE_OFFSET + phys`. It is page-aligned
    // (align 4096 ≥ align_of::<Page>), reserved forever, and this is the
    // only reference ever made to it, so the `'static mut` slice is unique.
    // Its bytes are whatever RAM held: every field of `Page` is a plain
    // integer (`#[repr(C)]`, no padding), so any bytes are a valid `Page`,
    // and `mm` reads none before writing it.
    let mem_map: &'static mut [Page] = unsafe {
        let ptr = paging::phys_to_virt(mem_map_phys.0).cast::<Page>();
        core::slice::from_raw_parts_mut(ptr, max_pfn.index())
    };

    // SAFETY: as for mem_map: a page-aligned memblock reservation of
    // `slab_meta_bytes` below `direct_map_end`, mapped writable by the
    // direct map, reserved forever, and this is the only reference ever
    // made to it. `SlabMeta` is plain integers too, and the slab allocator
    // fills the slice with `SlabMeta::EMPTY` before any other use.
    let slab_meta: &'static mut [SlabMeta] = unsafe {
        let ptr = paging::phys_to_virt(slab_meta_phys.0).cast::<SlabMeta>();
        core::slice::from_raw_parts_mut(ptr, lowmem_pfns as usize)
    };
    *SLAB_META.lock() = Some(slab_meta);
    log::debug!(
        "memory: slab overlay {} entries x {} bytes = {} KiB at {:#x}",
        lowmem_pfns,
        size_of::<SlabMeta>(),
        slab_meta_bytes >> 10,
        slab_meta_phys.0
    );

    // cf. free_area_init() + memblock_free_all() under
    // CONFIG_DEFERRED_STRUCT_PAGE_INIT: DMA and the first BOOT_PAGES of
    // each other zone now, the rest from the main loop (`deferred_init_step`).
    let mut pages = PageAlloc::new_deferred(mem_map, layout, &mb, DEFERRED_BOOT_PAGES)
        .unwrap_or_else(|e| panic!("page allocator: {e:?}"));
    let stats = pages.deferred_stats();
    log::info!(
        "memory: mem_map initialised for {} free pages ({} MiB) at boot, {} pages ({} MiB) deferred",
        stats.boot_pages,
        (stats.boot_pages * PAGE_SIZE) >> 20,
        stats.deferred_pages,
        (stats.deferred_pages * PAGE_SIZE) >> 20
    );
    crate::time::boot_phase("mem_map");
    let freed = stats.boot_pages;
    if let Some(base) = cma {
        let count = params.cma.map_or(0, |(size, _)| size) >> PAGE_SHIFT;
        match pages.activate_cma(Pfn::from_phys(base), count) {
            Ok(area) => log::info!(
                "cma: {} MiB at {:#x} ({} pageblocks of MIGRATE_CMA), lent to movable allocations",
                (area.count << PAGE_SHIFT) >> 20,
                base.0,
                area.count / mm::zone::PAGEBLOCK_NR_PAGES
            ),
            Err(e) => log::warn!("cma: cannot activate the area at {:#x}: {e:?}", base.0),
        }
    }
    pages.setup_watermarks();
    if !params.pcp {
        pages.set_pcp_enabled(false);
        log::info!(
            "pcp: per-CPU page lists off (pcp=off): orders 0-3 go straight to the buddy lists"
        );
    }
    log::info!(
        "memblock: released {} pages ({} MiB) to the buddy allocator; retiring",
        freed,
        (freed * PAGE_SIZE) >> 20
    );
    setup_kernel_reserve(&mut pages);
    if let Some(cfg) = params.fail_page_alloc {
        pages.fail_page_alloc_mut().attr.setup(cfg);
        log_fault_injection("fail_page_alloc", cfg);
    }
    log_zones(&pages);
    drop(mb);

    let mm = MM.call_once(|| MemoryManager::new(pages, KernelPlatform::new()));
    if let Some(phys) = page_owner_phys {
        // SAFETY: a page-aligned memblock reservation of max_pfn records
        // below the direct map's end (now mapped writable), reserved
        // forever and used by nothing else; every record is written
        // before the slice is made, and this is the only reference made.
        let records: &'static mut [mm::page_owner::PageOwnerRecord] = unsafe {
            let ptr = paging::phys_to_virt(phys.0).cast::<mm::page_owner::PageOwnerRecord>();
            for i in 0..max_pfn.index() {
                ptr.add(i).write(mm::page_owner::PageOwnerRecord::EMPTY);
            }
            core::slice::from_raw_parts_mut(ptr, max_pfn.index())
        };
        mm.page_owner().attach(records);
        log::info!(
            "memory: page_owner on: {} records x {} bytes = {} KiB at {:#x}",
            max_pfn.0,
            size_of::<mm::page_owner::PageOwnerRecord>(),
            page_owner_bytes >> 10,
            phys.0
        );
    }
    // The rings are only written when first needed ([`attach_trace_ring`]).
    *TRACE_RINGS.lock() = Some((trace_phys.0, trace));
    log::info!(
        "memory: trace rings {} CPUs x {} records x {} bytes = {} KiB at {:#x}",
        trace.nr_cpus,
        trace.entries_per_cpu,
        size_of::<TraceRecord>(),
        trace_bytes >> 10,
        trace_phys.0
    );
    log_buddyinfo(mm);

    // The virtual side: the vmalloc area sized by `vmalloc=` (before the
    // first ioremap), and the pkmap pool for frames above lowmem.
    vmalloc::init(params.vmalloc_size);
    let lowmem_pfn = mm.lock().lowmem_pfn();
    highmem::init_pkmap(lowmem_pfn);
    crate::time::boot_phase("buddy, vmalloc");
}

/// How the trace rings are sized: one ring per possible CPU.
#[derive(Clone, Copy, Debug)]
struct TraceRings {
    nr_cpus: usize,
    entries_per_cpu: usize,
}

impl TraceRings {
    /// One ring per CPU the MADT lists (at most the kernel's and the
    /// tracer's CPU limit), each of [`mm::trace::TRACE_BUF_ENTRIES`]
    /// records, unless all of them would take more than an eighth of RAM
    /// and more than one full ring: then each CPU gets an equal share of
    /// that (a 5 MiB guest with 2 CPUs: about 300 KiB each, not 576).
    fn size(ram_bytes: u64) -> Self {
        let max_cpus = mm::trace::NR_TRACE_CPUS.min(crate::arch::x86_64::percpu::MAX_CPUS);
        let nr_cpus = crate::acpi::info()
            .map_or(1, |i| i.nr_cpus)
            .clamp(1, max_cpus);
        let record = size_of::<TraceRecord>() as u64;
        let full = mm::trace::TRACE_BUF_ENTRIES as u64;
        let budget = (ram_bytes / 8).max(full * record);
        let entries_per_cpu = full.min(budget / record / nr_cpus as u64) as usize;
        TraceRings {
            nr_cpus,
            entries_per_cpu,
        }
    }

    fn records(self) -> usize {
        self.nr_cpus * self.entries_per_cpu
    }

    fn bytes(self) -> u64 {
        (self.records() * size_of::<TraceRecord>()) as u64
    }
}

/// The trace rings' memblock reservation (physical address) and sizes,
/// until [`attach_trace_ring`] lends them to the tracer.
static TRACE_RINGS: Mutex<Option<(u64, TraceRings)>> = Mutex::new(None);

/// Initialises the trace rings and lends them to the tracer, one per
/// possible CPU, once (later calls do nothing). Nothing traces before
/// `READY` — tracepoints are enabled by API requests, and until the rings
/// are attached they drop their events — so the kernel calls this once
/// `READY` is out, instead of writing them on the boot path.
pub fn attach_trace_ring() {
    let Some((phys, rings)) = TRACE_RINGS.lock().take() else {
        return;
    };
    let records = rings.records();
    // SAFETY: as for mem_map: a page-aligned memblock reservation of
    // `records` records below the direct map's end, mapped writable by
    // it, reserved forever; every record is written before the slice is
    // made, and the `take` above makes this the only reference ever made
    // to it.
    let trace_rings: &'static mut [TraceRecord] = unsafe {
        let ptr = paging::phys_to_virt(phys).cast::<TraceRecord>();
        for i in 0..records {
            ptr.add(i).write(TraceRecord::EMPTY);
        }
        core::slice::from_raw_parts_mut(ptr, records)
    };
    mm().attach_trace_buffers(trace_rings, rings.nr_cpus);
}

/// Pages of each zone but DMA initialised at boot (16 MiB): enough for
/// everything the kernel allocates before READY (its 4 MiB heap reserve,
/// slabs, DMA rings); an allocation that needs more grows the zone.
const DEFERRED_BOOT_PAGES: u64 = 4096;

/// Pages one turn of the main loop initialises (32 MiB; about 0.3 ms under
/// TCG), so the network is polled between chunks.
const DEFERRED_CHUNK_PAGES: u64 = 8192;

/// Deferred init's start, and whether its end has been reported.
static DEFERRED_START_NS: AtomicU64 = AtomicU64::new(0);
static DEFERRED_REPORTED: AtomicBool = AtomicBool::new(false);

/// One turn of deferred struct-page init from the main loop (cf. the
/// `pgdatinit` kthread's `deferred_init_memmap()`): a chunk, or once
/// everything is in — here, through an allocation that grew a zone, or a
/// reset — the report of it. Returns whether there is more to do.
pub fn deferred_init_step() -> bool {
    if DEFERRED_REPORTED.load(Ordering::Relaxed) {
        return false;
    }
    let t0 = crate::arch::x86_64::tsc::now_ns();
    let _ = DEFERRED_START_NS.compare_exchange(0, t0, Ordering::Relaxed, Ordering::Relaxed);
    let mut pages = mm().lock();
    if pages.deferred_pending() {
        pages.deferred_init_chunk(DEFERRED_CHUNK_PAGES);
        if pages.deferred_pending() {
            return true;
        }
    }
    let stats = pages.deferred_stats();
    drop(pages);
    DEFERRED_REPORTED.store(true, Ordering::Relaxed);
    let ns = crate::arch::x86_64::tsc::now_ns() - DEFERRED_START_NS.load(Ordering::Relaxed);
    // cf. deferred_init_memmap(): "node 0 deferred pages initialised in Nms".
    log::info!(
        "mm: node 0 deferred pages initialised in {}.{:03} ms ({} pages: {} chunks from the main loop, {} zone growths for {} pages)",
        ns / 1_000_000,
        (ns / 1000) % 1000,
        stats.deferred_pages,
        stats.chunks,
        stats.grows,
        stats.grown_pages
    );
    crate::time::boot_phase("deferred mem_map");
    crate::time::boot_summary("boot complete");
    // Under TCG, a softmmu TLB that boot's last flushes may have shrunk
    // grows again, once the boot is over (the APs grow theirs as they come
    // online; see `arch::x86_64::tcg`).
    let entries = crate::arch::x86_64::tcg::grow_softmmu_tlb();
    if entries > 0 {
        log::info!("mm: CPU 0: TCG softmmu TLB grown to {entries} entries");
    }
    false
}

/// `cma=SIZE[@BASE]` (cf. `dma_contiguous_reserve()` →
/// `cma_declare_contiguous()`): reserve the area in memblock — at `BASE`,
/// or top-down in lowmem, 4 MiB-aligned (a `MAX_ORDER` block) — so that
/// the buddy allocator does not get it at hand-over; it joins later, as
/// CMA pageblocks. The size must be whole 4 MiB blocks.
fn reserve_cma(mb: &mut Memblock, params: &BootParams<'_>, lowmem_end: u64) -> Option<PhysAddr> {
    let (size, base) = params.cma?;
    const ALIGN: u64 = 4 << 20;
    if size % ALIGN != 0 {
        log::warn!("cma={size:#x}: not a multiple of 4 MiB (a MAX_ORDER block); ignored");
        return None;
    }
    let placed = match base {
        Some(b) if b % ALIGN != 0 || b + size > lowmem_end => {
            log::warn!("cma=…@{b:#x}: not 4 MiB-aligned or not in lowmem; ignored");
            return None;
        }
        Some(b) => mb
            .reserve(PhysAddr(b), size, "cma")
            .ok()
            .map(|()| PhysAddr(b)),
        None => mb.alloc_named(size, ALIGN, PhysAddr(lowmem_end), "cma"),
    };
    if placed.is_none() {
        log::warn!("cma={size:#x}: no room in lowmem; ignored");
    }
    placed
}

/// Carves the kernel heap's reserve (`mm::reserve`): the pages only the
/// heap's `__GFP_MEMALLOC` fallback can reach once the API has drained the
/// zones. Without it the kernel still runs, with no such guarantee.
fn setup_kernel_reserve(pages: &mut PageAlloc<'_>) {
    match pages.setup_kernel_reserve() {
        Ok(r) => {
            log::info!(
                "kernel reserve: {} pages ({} KiB) in {} at pfn {:#x}",
                r.nr_pages,
                (r.nr_pages * PAGE_SIZE) >> 10,
                r.zone.name(),
                r.start_pfn.0
            );
            if r.nr_pages < r.wanted_pages {
                log::warn!(
                    "kernel reserve: wanted {} pages, no free block that large",
                    r.wanted_pages
                );
            }
        }
        Err(e) => log::warn!("kernel reserve: none ({e})"),
    }
}

/// One line when a boot option arms fault injection (cf. Linux's
/// `FAULT_INJECTION: ...` notices).
pub fn log_fault_injection(name: &str, cfg: mm::fault_inject::FaultConfig) {
    log::warn!(
        "{name}: fault injection armed (interval {}, probability {}%, space {}, times {})",
        cfg.interval,
        cfg.probability,
        cfg.space,
        cfg.times
    );
}

/// memblock from the firmware map (cf. `e820__memblock_setup()`), with the
/// boot-time reservations and `mem=` (cf. `memblock_enforce_memory_limit()`).
fn memblock_setup(mb: &mut Memblock, boot: &BootInfo, params: &BootParams<'_>) {
    for e in boot.memmap().iter().filter(|e| e.kind == MemType::Ram) {
        if let Err(err) = mb.add(PhysAddr(e.addr), e.size) {
            log::warn!(
                "memblock: skipping RAM {:#x}+{:#x}: {err:?}",
                e.addr,
                e.size
            );
        }
    }
    let reserve = |mb: &mut Memblock, range: core::ops::Range<u64>, name: &'static str| {
        let (base, size) = (range.start, range.end.saturating_sub(range.start));
        if let Err(err) = mb.reserve(PhysAddr(base), size, name) {
            log::warn!("memblock: cannot reserve {name} {base:#x}+{size:#x}: {err:?}");
        }
    };
    // Page 0 holds the real-mode IVT and BIOS data; Linux never uses it.
    reserve(mb, 0..PAGE_SIZE, "firmware");
    reserve(mb, boot::kernel_image(), "kernel");
    let si = boot.start_info_phys;
    reserve(mb, si..si + boot.start_info_size.max(1), "boot info");
    crate::arch::x86_64::smp::reserve_trampoline(mb);

    if let Some(limit) = params.mem_limit {
        match mb.enforce_memory_limit(PhysAddr(limit)) {
            Ok(0) => log::info!("mem={limit:#x}: RAM ends below the limit; nothing removed"),
            Ok(removed) => log::info!(
                "mem={limit:#x}: {} MiB above the limit kept out of the allocator (mem_limit)",
                removed >> 20
            ),
            Err(err) => log::warn!("mem={limit:#x}: ignored: {err:?}"),
        }
    }

    for r in mb.memory_regions() {
        log::info!(
            "memblock: memory  [{:#018x}-{:#018x}]",
            r.base.0,
            r.end().0 - 1
        );
    }
    for r in mb.reserved_regions() {
        log::info!(
            "memblock: reserve [{:#018x}-{:#018x}] {}",
            r.base.0,
            r.end().0 - 1,
            r.name
        );
    }
    for r in mb.limited_regions() {
        log::info!(
            "memblock: mem_limit [{:#018x}-{:#018x}]",
            r.base.0,
            r.end().0 - 1
        );
    }
}

/// `lowmem=` rounded down to a 2 MiB boundary (so the direct map can use
/// large pages to its end) and kept above ZONE_DMA.
fn lowmem_limit(requested: u64) -> u64 {
    const MIN_LOWMEM: u64 = 32 << 20;
    let lowmem = requested & !((2 << 20) - 1);
    if lowmem < MIN_LOWMEM {
        log::warn!("lowmem={requested:#x} is below {MIN_LOWMEM:#x}; using {MIN_LOWMEM:#x}");
        return MIN_LOWMEM;
    }
    lowmem
}

/// The zone table as Linux prints it at boot (cf. `free_area_init()`).
fn log_zones(pages: &PageAlloc<'_>) {
    log::info!("Zone ranges:");
    for zone in pages.zones() {
        if zone.spanned_pages() == 0 {
            log::info!("  {:<8} empty", zone.name());
        } else {
            log::info!(
                "  {:<8} [mem {:#018x}-{:#018x}]",
                zone.name(),
                zone.start_pfn.phys().0,
                zone.end_pfn.phys().0 - 1
            );
        }
    }
    for zone in pages.zones() {
        log::info!(
            "zone {:<7} start_pfn={} end_pfn={} spanned={} present={} managed={} deferred={} free={} min={} low={} high={} protection={:?}",
            zone.name(),
            zone.start_pfn.0,
            zone.end_pfn.0,
            zone.spanned_pages(),
            zone.present_pages,
            zone.managed_pages,
            pages.deferred_pages(zone.ztype),
            zone.free_pages,
            zone.watermarks.min,
            zone.watermarks.low,
            zone.watermarks.high,
            zone.lowmem_reserve
        );
    }
}

/// `/proc/buddyinfo`, line by line, to the console.
fn log_buddyinfo(mm: &Mm) {
    let pages = mm.lock();
    log::info!("buddyinfo:");
    let _ = mm::procfs::buddyinfo(&pages, &mut LogWriter::default());
}
