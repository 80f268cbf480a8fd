//! The kernel's side of the HTTP API: what `net::api` cannot know from `mm`
//! alone (the clocks: milliseconds since boot, and TSC nanoseconds for
//! `POST /api/bench`; DMA buffers, kernel sections, paging statistics, the
//! walk of the live page tables, byte access through vmalloc-area mappings),
//! the boot facts it serves (`/api/memmap`, `/proc/iomem`), and the
//! virtual-memory state it shares with the kernel ([`vm`]).

use alloc::boxed::Box;
use alloc::vec::Vec;

use mm::pgtable::Walk;
use mm::platform::{FRAME_BYTES, PageMapper};
use mm::procfs::{E820Type, KernelSections, Meminfo};
use mm::types::{PAGE_SIZE, PhysAddr, VirtAddr};
use mm::vmalloc::VmapKind;
use net::api::{
    API_CALLER, BootView, CoherentInfo, DMA_OWNER, DmaCallError, DmaInfo, PageAccess, PageTouch,
    System, Vm,
};

use crate::arch::x86_64::{boot, paging, tsc};
use crate::memory;
use crate::pvh::BootInfo;

unsafe extern "C" {
    static __text_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
}

/// The kernel as `net::api` sees it.
pub struct KernelSystem {
    vmalloc_size: u64,
}

impl KernelSystem {
    pub const fn new(vmalloc_size: u64) -> Self {
        KernelSystem { vmalloc_size }
    }
}

impl System for KernelSystem {
    fn uptime_ms(&self) -> u64 {
        tsc::now_ms()
    }

    fn now_ns(&self) -> u64 {
        // TSC since entry at the calibrated rate. No lock, no allocation.
        tsc::now_ns()
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn boot_time_unix(&self) -> Option<u64> {
        crate::arch::x86_64::rtc::boot_time_unix(tsc::now_ms)
    }

    fn log_record(&self, since: u64) -> Option<net::api::dmesg::LogRecord> {
        crate::logger::record(since)
    }

    fn log_next_seq(&self) -> Option<u64> {
        Some(crate::logger::next_seq())
    }

    fn printk(&self, level: net::api::dmesg::LogLevel, line: &str) {
        use net::api::dmesg::LogLevel;
        let level = match level {
            LogLevel::Emerg | LogLevel::Alert | LogLevel::Crit | LogLevel::Err => log::Level::Error,
            LogLevel::Warning => log::Level::Warn,
            LogLevel::Notice | LogLevel::Info => log::Level::Info,
            LogLevel::Debug => log::Level::Debug,
        };
        log::log!(level, "{line}");
    }

    fn dma(&self) -> DmaInfo {
        crate::drivers::dma::dma_info()
    }

    fn dma_alloc_coherent(&self, size: u64) -> Result<CoherentInfo, DmaCallError> {
        // The same registry (and lock) as virtio-net's buffers; the API
        // keeps the address and size and frees by them.
        let buf = crate::drivers::dma::dma_alloc_coherent(size, DMA_OWNER)?;
        Ok(buf.info())
    }

    fn dma_free_coherent(&self, dma_addr: PhysAddr, size: u64) -> Result<(), DmaCallError> {
        Ok(crate::drivers::dma::free_coherent_at(dma_addr.0, size)?)
    }

    fn kernel_sections(&self) -> KernelSections {
        let (text, rodata, data) = (
            &raw const __text_start as u64,
            &raw const __rodata_start as u64,
            &raw const __data_start as u64,
        );
        let bss = boot::bss();
        let range = |a: u64, b: u64| Some((PhysAddr(a), PhysAddr(b)));
        KernelSections {
            code: range(text, rodata),
            rodata: range(rodata, data),
            data: range(data, bss.start),
            bss: range(bss.start, bss.end),
        }
    }

    fn percpu_first_chunk(&self) -> Option<(u64, mm::percpu::FirstChunkLayout)> {
        crate::arch::x86_64::percpu::first_chunk()
    }

    fn cpus(&self) -> alloc::vec::Vec<net::api::CpuInfo> {
        use crate::arch::x86_64::ipi;
        crate::arch::x86_64::smp::online_cpus()
            .map(|(cpu, apic_id)| net::api::CpuInfo {
                cpu,
                apic_id,
                work_done: ipi::work_done(cpu),
                tlb_flushes: ipi::flushes_received(cpu),
            })
            .collect()
    }

    fn tlb_shootdowns(&self) -> u64 {
        crate::arch::x86_64::ipi::shootdowns()
    }

    fn run_on_cpus(
        &self,
        n: usize,
        job: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(), &'static str> {
        crate::smp_work::run_on_cpus(n, job)
    }

    fn meminfo(&self, mi: &mut Meminfo) {
        let (n4k, n2m) = memory::paging::direct_map_pages();
        mi.direct_map_4k_kb = n4k * 4;
        mi.direct_map_2m_kb = n2m * 2048;
        // The API overwrites the Vmalloc* lines from the area allocator.
        mi.vmalloc_total_kb = self.vmalloc_size >> 10;
        let boot_tables: u64 = memory::memblock()
            .reserved_regions()
            .iter()
            .filter(|r| r.name == "page table")
            .map(|r| r.size_bytes)
            .sum();
        mi.page_tables_kb = (boot_tables >> 10) + memory::mapper::table_pages() * (PAGE_SIZE >> 10);
        mi.kernel_stack_kb =
            (boot::BOOT_STACK_SIZE + crate::arch::x86_64::smp::ap_stack_bytes()) >> 10;
    }

    fn pagetable(&self, addr: VirtAddr) -> Option<Walk> {
        Some(paging::walk_current(addr.0).0)
    }

    fn touch_kernel_page(&self, virt: VirtAddr, access: PageAccess<'_>) -> Option<PageTouch> {
        // Only a page of an area the API made: its vmalloc areas (frames it
        // owns) and its ioremaps (the API refuses any RAM but the `mem=`
        // tail and touches device ranges not at all).
        let area = memory::vmalloc::areas().find(virt).copied();
        let Some(area) = area.filter(|a| {
            virt.0.is_multiple_of(PAGE_SIZE)
                && virt.0 < a.end().0
                && a.caller() == API_CALLER
                && matches!(a.kind, VmapKind::Vmalloc | VmapKind::Ioremap)
        }) else {
            return Some(PageTouch::NotOurs);
        };
        let mapped = memory::mm().platform().translate(virt);
        if area.lazy {
            // Let the CPU fault the page in: the #PF handler maps the zero
            // page (read) or a zeroed frame (write), or the probe comes
            // back with why it could not. A page with a frame of its own
            // needs no fault.
            let zero = memory::fault::zero_page();
            // SAFETY: `virt` is in a lazy vmalloc area (checked above). The
            // write probe runs only on a page not yet written (unmapped or
            // the zero page), whose bytes are all 0; the API is single-
            // threaded, so that cannot change before the store.
            let probed = unsafe {
                match (&access, mapped) {
                    (PageAccess::Read(_), None) => memory::fault::probe_read(virt),
                    (PageAccess::Write(_), None) => memory::fault::probe_write(virt),
                    (PageAccess::Write(_), Some(pfn)) if pfn == zero => {
                        memory::fault::probe_write(virt)
                    }
                    _ => Ok(()),
                }
            };
            if let Err(e) = probed {
                return Some(PageTouch::Fault(e));
            }
        } else if mapped.is_none() {
            return Some(PageTouch::NotOurs);
        }
        let ptr = core::ptr::with_exposed_provenance_mut::<u8>(virt.0 as usize);
        match access {
            PageAccess::Read(f) => {
                // SAFETY: `virt` is a present page of a live area the API
                // made (checked or faulted in above; single-threaded, so
                // nothing unmaps it while `f` runs), readable, and mapping
                // the API's frame, the zero page, or reserved RAM no Rust
                // object lives in: no `&mut` to these bytes exists.
                let bytes = unsafe { core::slice::from_raw_parts(ptr.cast_const(), FRAME_BYTES) };
                f(bytes);
            }
            PageAccess::Write(f) => {
                // SAFETY: as above, and writable: an eager vmalloc or an
                // ioremap maps read/write, and a lazy page was just given a
                // frame of its own by the write probe. No other reference
                // to the frame exists.
                let bytes = unsafe { core::slice::from_raw_parts_mut(ptr, FRAME_BYTES) };
                f(bytes);
            }
        }
        Some(PageTouch::Done)
    }
}

/// The kernel's virtual-memory state for [`net::api::Api::with_vm`]: the
/// vmap areas, the pkmap pool, the kmap_atomic stack and the mapper on the
/// live tables.
pub fn vm() -> Vm<'static> {
    let mapper: &'static dyn PageMapper = memory::mm().platform();
    Vm {
        areas: memory::vmalloc::vmap_areas(),
        pkmap: memory::highmem::pkmap(),
        kmap_atomic: memory::highmem::kmap_atomic_stack(),
        mapper,
    }
}

/// Boot facts for the API, copied once into the heap and kept for the life
/// of the kernel.
pub fn boot_view(boot: &'static BootInfo) -> BootView<'static> {
    let firmware_map: Vec<(PhysAddr, PhysAddr, E820Type)> = boot
        .memmap()
        .iter()
        .map(|e| {
            (
                PhysAddr(e.addr),
                PhysAddr(e.end()),
                E820Type::from_raw(e.kind.as_e820()),
            )
        })
        .collect();
    let memblock = memory::memblock().clone();
    // `/proc/iomem`'s device lines: the platform's MMIO as Linux names it
    // (`pci_mmcfg_insert_resources()`, `ioapic_insert_resources()`,
    // `lapic_insert_resource()`), then the driven PCI function's BARs.
    let mut devices: Vec<mm::procfs::IomemDevice<'static>> = Vec::new();
    let leak = |s: alloc::string::String| -> &'static str { alloc::string::String::leak(s) };
    if let Some(info) = crate::acpi::info() {
        if let Some(m) = info.mcfg {
            let name = alloc::format!(
                "PCI MMCONFIG {:04x} [bus {:02x}-{:02x}]",
                m.segment,
                m.bus_start,
                m.bus_end
            );
            devices.push((PhysAddr(m.base), PhysAddr(m.base + m.size()), leak(name)));
        }
        for (i, io) in info.ioapics[..info.nr_ioapics].iter().enumerate() {
            let base = u64::from(io.addr);
            // IO_APIC_SLOT_SIZE: 1 KiB.
            devices.push((
                PhysAddr(base),
                PhysAddr(base + 0x400),
                leak(alloc::format!("IOAPIC {i}")),
            ));
        }
        devices.push((
            PhysAddr(info.lapic_base),
            PhysAddr(info.lapic_base + 0x1000),
            "Local APIC",
        ));
    }
    devices.extend(
        crate::drivers::pci::device_mmio()
            .iter()
            .map(|(start, end, name)| (PhysAddr(*start), PhysAddr(*end), name.as_str())),
    );
    BootView {
        cmdline: boot.cmdline,
        firmware_map: Box::leak(firmware_map.into_boxed_slice()),
        memblock: Box::leak(Box::new(memblock)),
        devices: Box::leak(devices.into_boxed_slice()),
    }
}
