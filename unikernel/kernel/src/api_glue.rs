//! The kernel's side of the HTTP API: what `net::api` cannot know from `mm`
//! alone (clock, DMA buffers, kernel sections, paging statistics), and the
//! boot facts it serves (`/api/memmap`, `/proc/iomem`).

use alloc::boxed::Box;
use alloc::vec::Vec;

use mm::procfs::{E820Type, KernelSections, Meminfo};
use mm::types::PhysAddr;
use net::api::{BootView, DmaInfo, System};

use crate::arch::x86_64::{boot, tsc};
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

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn dma(&self) -> DmaInfo {
        crate::drivers::dma::dma_info()
    }

    fn kernel_sections(&self) -> KernelSections {
        let (text, rodata, data) =
            (&raw const __text_start as u64, &raw const __rodata_start as u64, &raw const __data_start as u64);
        let bss = boot::bss();
        let range = |a: u64, b: u64| Some((PhysAddr(a), PhysAddr(b)));
        KernelSections {
            code: range(text, rodata),
            rodata: range(rodata, data),
            data: range(data, bss.start),
            bss: range(bss.start, bss.end),
        }
    }

    fn meminfo(&self, mi: &mut Meminfo) {
        let (n4k, n2m) = memory::paging::direct_map_pages();
        mi.direct_map_4k_kb = n4k * 4;
        mi.direct_map_2m_kb = n2m * 2048;
        mi.vmalloc_total_kb = self.vmalloc_size >> 10;
        let ioremap_bytes: u64 = memory::ioremap::areas().iter().flatten().map(|a| a.size).sum();
        mi.vmalloc_used_kb = ioremap_bytes >> 10;
        let boot_tables: u64 = memory::memblock()
            .reserved_regions()
            .iter()
            .filter(|r| r.name == "page table")
            .map(|r| r.size_bytes)
            .sum();
        mi.page_tables_kb = boot_tables >> 10;
        mi.kernel_stack_kb = boot::BOOT_STACK_SIZE >> 10;
    }
}

/// Boot facts for the API, copied once into the heap and kept for the life
/// of the kernel.
pub fn boot_view(boot: &'static BootInfo) -> BootView<'static> {
    let firmware_map: Vec<(PhysAddr, PhysAddr, E820Type)> = boot
        .memmap()
        .iter()
        .map(|e| (PhysAddr(e.addr), PhysAddr(e.end()), E820Type::from_raw(e.kind.as_e820())))
        .collect();
    let memblock = memory::memblock().clone();
    BootView {
        cmdline: boot.cmdline,
        firmware_map: Box::leak(firmware_map.into_boxed_slice()),
        memblock: Box::leak(Box::new(memblock)),
    }
}
