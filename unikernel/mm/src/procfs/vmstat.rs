//! `/proc/vmstat` (cf. `vmstat_start()` / `vmstat_show()` in mm/vmstat.c)
//! and its JSON twin's fields.
//!
//! Linux prints every item of `vmstat_text[]`, zeros included, then a
//! deprecated `nr_unstable 0`. API.md asks more of us — every counter shown
//! is real — so this view prints, in `vmstat_text[]` order, only:
//! - the state counters Pagezone computes: `nr_free_pages` from the zones,
//!   and the node counters the kernel supplies in [`VmstatExtra`];
//! - the event counters something counts ([`crate::vmstat::MAINTAINED`]).
//!
//! A parser keyed on names (procps `vmstat -s`, `sar`, node_exporter) reads
//! it unchanged; each line is `name value\n` as `vmstat_show()` writes it.

use core::fmt::{self, Write};

use crate::page_alloc::PageAlloc;

/// Node counters `/proc/vmstat` takes from outside the page allocator.
/// `None` means "not known": the line is left out rather than printed as 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmstatExtra {
    /// `nr_slab_reclaimable`, in pages (`NR_SLAB_RECLAIMABLE_B` is kept in
    /// bytes and shown in pages, cf. `global_node_page_state_pages()`).
    pub nr_slab_reclaimable: Option<u64>,
    /// `nr_slab_unreclaimable`, in pages.
    pub nr_slab_unreclaimable: Option<u64>,
    /// `nr_kernel_stack`, in kB (Linux counts this one in kB).
    pub nr_kernel_stack_kb: Option<u64>,
    /// `nr_page_table_pages`.
    pub nr_page_table_pages: Option<u64>,
}

impl VmstatExtra {
    /// Nothing known beyond the page allocator.
    pub const NONE: VmstatExtra = VmstatExtra {
        nr_slab_reclaimable: None,
        nr_slab_unreclaimable: None,
        nr_kernel_stack_kb: None,
        nr_page_table_pages: None,
    };
}

/// `(name, value)` for every line of `/proc/vmstat`, in order: the fields
/// of `/api/vmstat`.
pub fn vmstat_fields<'a>(
    pa: &'a PageAlloc<'_>,
    extra: &VmstatExtra,
) -> impl Iterator<Item = (&'static str, u64)> + 'a {
    let e = *extra;
    // enum zone_stat_item, then enum node_stat_item (vmstat_text[] order).
    let state = [
        Some(("nr_free_pages", pa.nr_free_pages())),
        Some(("nr_free_cma", pa.cma_free_pages())),
        e.nr_slab_reclaimable.map(|v| ("nr_slab_reclaimable", v)),
        e.nr_slab_unreclaimable
            .map(|v| ("nr_slab_unreclaimable", v)),
        e.nr_kernel_stack_kb.map(|v| ("nr_kernel_stack", v)),
        e.nr_page_table_pages.map(|v| ("nr_page_table_pages", v)),
    ];
    let events = pa.vm_events().maintained().map(|(ev, v)| (ev.name(), v));
    state.into_iter().flatten().chain(events)
}

/// `/proc/vmstat`: [`vmstat_fields`] as `name value` lines (cf.
/// `vmstat_show()`: `seq_puts(name)`, `seq_put_decimal_ull(" ", value)`,
/// `'\n'`).
pub fn vmstat(
    pa: &PageAlloc<'_>,
    extra: &VmstatExtra,
    w: &mut (impl Write + ?Sized),
) -> fmt::Result {
    for (name, value) in vmstat_fields(pa, extra) {
        writeln!(w, "{name} {value}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gfp::GfpFlags;
    use crate::page::OwnerTag;
    use crate::procfs::tests::mem_map;
    use crate::types::{Order, Pfn};
    use crate::zone::ZoneLayout;

    /// 40 MiB, all free: DMA [0, 4096), DMA32 [4096, 6000), no Normal,
    /// HighMem [6000, 10000).
    fn small() -> PageAlloc<'static> {
        let layout = ZoneLayout {
            lowmem_pfn: Pfn(6000),
            max_pfn: Pfn(10_000),
        };
        let mut pa = PageAlloc::new(mem_map(10_000), layout).unwrap();
        pa.mark_ram(Pfn(0), Pfn(10_000)).unwrap();
        pa.free_bootmem(Pfn(0), Pfn(10_000)).unwrap();
        pa.setup_watermarks();
        pa.set_pcp_enabled(false); // golden counts of the buddy lists
        pa
    }

    fn render(pa: &PageAlloc<'_>, extra: &VmstatExtra) -> String {
        let mut s = String::new();
        vmstat(pa, extra, &mut s).unwrap();
        s
    }

    fn order(o: u8) -> Order {
        Order::new(o).unwrap()
    }

    #[test]
    fn golden_after_boot() {
        // Boot hands 10000 pages over: pgfree counts them (as Linux's
        // __free_pages_core() does), nothing allocated yet.
        let pa = small();
        assert_eq!(
            render(&pa, &VmstatExtra::NONE),
            "nr_free_pages 10000\n\
             nr_free_cma 0\n\
             pgpgin 0\n\
             pgalloc_dma 0\n\
             pgalloc_dma32 0\n\
             pgalloc_normal 0\n\
             pgalloc_high 0\n\
             allocstall_dma 0\n\
             allocstall_dma32 0\n\
             allocstall_normal 0\n\
             allocstall_high 0\n\
             pgfree 10000\n\
             pgactivate 0\n\
             pgdeactivate 0\n\
             pgfault 0\n\
             pgmajfault 0\n\
             pgrefill 0\n\
             pgsteal_kswapd 0\n\
             pgsteal_direct 0\n\
             pgscan_kswapd 0\n\
             pgscan_direct 0\n\
             pgscan_file 0\n\
             pgsteal_file 0\n\
             oom_kill 0\n\
             pgmigrate_success 0\n\
             pgmigrate_fail 0\n\
             compact_migrate_scanned 0\n\
             compact_free_scanned 0\n\
             compact_isolated 0\n\
             compact_stall 0\n\
             compact_fail 0\n\
             compact_success 0\n"
        );
    }

    #[test]
    fn golden_after_allocations_and_frees() {
        let mut pa = small();
        // GFP_KERNEL: Normal is empty, so DMA32; 1 page.
        let k = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
            .unwrap();
        // GFP_HIGHUSER order 2: HighMem, 4 pages.
        let h = pa
            .alloc_pages(GfpFlags::GFP_HIGHUSER, order(2), OwnerTag::API)
            .unwrap();
        // GFP_DMA order 3: DMA, 8 pages.
        let d = pa
            .alloc_pages(GfpFlags::GFP_DMA, order(3), OwnerTag::API)
            .unwrap();
        assert_eq!(pa.zone_of(k), Some(crate::zone::ZoneType::Dma32));
        assert_eq!(pa.zone_of(h), Some(crate::zone::ZoneType::HighMem));
        assert_eq!(pa.zone_of(d), Some(crate::zone::ZoneType::Dma));
        pa.free_pages(h, order(2)).unwrap();
        // A refused free counts nothing.
        assert!(pa.free_pages(h, order(2)).is_err());
        let extra = VmstatExtra {
            nr_slab_reclaimable: Some(0),
            nr_slab_unreclaimable: Some(3),
            nr_kernel_stack_kb: Some(16),
            nr_page_table_pages: Some(5),
        };
        // Free: 10000 - 1 - 4 - 8 + 4.
        assert_eq!(
            render(&pa, &extra),
            "nr_free_pages 9991\n\
             nr_free_cma 0\n\
             nr_slab_reclaimable 0\n\
             nr_slab_unreclaimable 3\n\
             nr_kernel_stack 16\n\
             nr_page_table_pages 5\n\
             pgpgin 0\n\
             pgalloc_dma 8\n\
             pgalloc_dma32 1\n\
             pgalloc_normal 0\n\
             pgalloc_high 4\n\
             allocstall_dma 0\n\
             allocstall_dma32 0\n\
             allocstall_normal 0\n\
             allocstall_high 0\n\
             pgfree 10004\n\
             pgactivate 0\n\
             pgdeactivate 0\n\
             pgfault 0\n\
             pgmajfault 0\n\
             pgrefill 0\n\
             pgsteal_kswapd 0\n\
             pgsteal_direct 0\n\
             pgscan_kswapd 0\n\
             pgscan_direct 0\n\
             pgscan_file 0\n\
             pgsteal_file 0\n\
             oom_kill 0\n\
             pgmigrate_success 0\n\
             pgmigrate_fail 0\n\
             compact_migrate_scanned 0\n\
             compact_free_scanned 0\n\
             compact_isolated 0\n\
             compact_stall 0\n\
             compact_fail 0\n\
             compact_success 0\n"
        );
        // Only some of the extras known: the others are left out.
        let partial = VmstatExtra {
            nr_page_table_pages: Some(7),
            ..VmstatExtra::NONE
        };
        let text = render(&pa, &partial);
        assert!(text.starts_with(
            "nr_free_pages 9991\nnr_free_cma 0\nnr_page_table_pages 7\npgpgin 0\npgalloc_dma 8\n"
        ));
        // The JSON fields are the same lines.
        let fields: Vec<String> = vmstat_fields(&pa, &extra)
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect();
        assert_eq!(fields.concat(), render(&pa, &extra));
    }

    #[test]
    fn writes_through_a_dyn_writer() {
        let pa = small();
        let mut s = String::new();
        let w: &mut dyn Write = &mut s;
        vmstat(&pa, &VmstatExtra::default(), w).unwrap();
        assert_eq!(s, render(&pa, &VmstatExtra::NONE));
    }
}
