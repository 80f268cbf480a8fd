//! Host runs of the selftest on simulated machines, with a `touch` that
//! models physical memory in a map.

use std::collections::HashMap;

use super::*;
use crate::memblock::Memblock;
use crate::procfs::free_area_snapshot;
use crate::procfs::tests::{boot, q35_2g_memblock};
use crate::types::{NR_ORDERS, PhysAddr};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Physical memory as a map from PFN to its contents (one word per page).
#[derive(Default)]
struct Ram {
    words: HashMap<u64, u64>,
    calls: u64,
}

impl Ram {
    /// Write a per-call pattern into every page of the block, read it back.
    fn touch(&mut self, pfn: Pfn, order: Order) -> bool {
        self.calls += 1;
        let pattern = |p: u64| p.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ self.calls;
        for p in pfn.0..pfn.0 + order.nr_pages() {
            self.words.insert(p, pattern(p));
        }
        (pfn.0..pfn.0 + order.nr_pages()).all(|p| self.words.get(&p) == Some(&pattern(p)))
    }
}

fn run_on(
    pa: &mut PageAlloc<'_>,
    scratch_len: usize,
) -> (Result<SelftestReport, SelftestFailure>, String, Ram) {
    let mut ram = Ram::default();
    let mut scratch = vec![(Pfn(0), Order::ZERO); scratch_len];
    let mut log = String::new();
    let r = run(pa, &mut scratch, &mut |pfn, o| ram.touch(pfn, o), &mut log);
    (r, log, ram)
}

fn assert_untouched(pa: &PageAlloc<'_>, before: &[[u64; NR_ORDERS]; NR_ZONES], free: u64) {
    assert_eq!(&free_area_snapshot(pa), before);
    assert_eq!(pa.nr_free_pages(), free);
    pa.check_invariants().unwrap();
}

#[test]
fn q35_2g_lowmem_896m_passes() {
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    // Something the kernel holds across the selftest must survive it.
    let kept = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::new(3).unwrap(), OwnerTag::API)
        .unwrap();
    let before = free_area_snapshot(&pa);
    let free = pa.nr_free_pages();
    let (r, log, ram) = run_on(&mut pa, 512);
    let rep = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(rep.zones_tested, 3, "{log}");
    assert_eq!(rep.zone_fallbacks, 0);
    assert_eq!(rep.orders_unavailable, 0);
    // 2047 pages per zone: 1 + 2 + … + 1024.
    assert!(rep.pages_touched >= 3 * 2047);
    assert_eq!(ram.calls, 3 * 11); // one touch per zone and order
    assert_eq!(rep.highuser_fallback_zone, Some(ZoneType::Dma32));
    // HighMem: 287 order-10, then order 9, then order-0 down to LOW.
    assert!(rep.highmem_blocks >= 288, "{rep:?}");
    // GFP_ATOMIC on DMA: MIN 14, minus half, minus a quarter of the rest.
    assert_eq!(rep.dma_free_at_exhaustion, 6);
    assert_eq!(rep.invalid_frees_refused, 4);
    assert_untouched(&pa, &before, free);
    for line in [
        "selftest: zone DMA orders 0-10 ok\n",
        "selftest: zone DMA32 orders 0-10 ok\n",
        "selftest: zone HighMem orders 0-10 ok\n",
        "GFP_HIGHUSER order 0 served by DMA32\n",
        "selftest: free_area restored ok\n",
        "selftest: PASS: 3 zones",
    ] {
        assert!(log.contains(line), "missing {line:?} in\n{log}");
    }
    assert!(!log.contains("Normal orders"));
    assert_eq!(log.lines().count(), 9, "{log}");
    pa.free_pages(kept, Order::new(3).unwrap()).unwrap();
    // A second run does exactly the same.
    let (r2, _, _) = run_on(&mut pa, 512);
    let (r3, _, _) = run_on(&mut pa, 512);
    assert_eq!(r2.unwrap(), r3.unwrap());
}

#[test]
fn q35_128m_without_highmem_passes() {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), 0x9fc00).unwrap();
    mb.add(PhysAddr(0x10_0000), 0x7fe_0000 - 0x10_0000).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "firmware").unwrap();
    mb.reserve(PhysAddr(0x10_0000), 2 * MIB, "kernel").unwrap();
    let (mut pa, _mb) = boot(mb, 896 * MIB);
    assert!(!pa.zone(ZoneType::HighMem).is_populated());
    let before = free_area_snapshot(&pa);
    let free = pa.nr_free_pages();
    let (r, log, _) = run_on(&mut pa, 64);
    let rep = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(rep.zones_tested, 2);
    assert_eq!(rep.highmem_blocks, 0);
    assert_eq!(rep.highuser_fallback_zone, None);
    assert!(
        log.contains("selftest: fallback skipped (no HighMem)\n"),
        "{log}"
    );
    assert!(rep.dma_blocks > 0);
    assert_untouched(&pa, &before, free);
}

#[test]
fn normal_zone_populated_passes() {
    // 3 GiB below the PCI hole and 3 GiB above 4 GiB, lowmem=5G: Normal is
    // [4G, 5G), HighMem [5G, 7G); GFP_HIGHUSER falls back to Normal.
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), 0x9fc00).unwrap();
    mb.add(PhysAddr(0x10_0000), 3 * GIB - 0x10_0000).unwrap();
    mb.add(PhysAddr(4 * GIB), 3 * GIB).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "firmware").unwrap();
    mb.reserve(PhysAddr(0x10_0000), 2 * MIB, "kernel").unwrap();
    let (mut pa, _mb) = boot(mb, 5 * GIB);
    assert!(pa.zone(ZoneType::Normal).is_populated());
    let before = free_area_snapshot(&pa);
    let free = pa.nr_free_pages();
    let (r, log, _) = run_on(&mut pa, 1024);
    let rep = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(rep.zones_tested, 4);
    assert_eq!(rep.highuser_fallback_zone, Some(ZoneType::Normal));
    assert!(
        log.contains("selftest: zone Normal orders 0-10 ok\n"),
        "{log}"
    );
    assert_untouched(&pa, &before, free);
}

#[test]
fn runs_before_watermarks_are_set_up() {
    // No watermarks: exhaustion empties DMA completely and HighMem drains
    // to zero before GFP_HIGHUSER falls back.
    let layout = crate::zone::ZoneLayout::from_bytes(32 * MIB, 64 * MIB);
    let mut pa = PageAlloc::new(crate::procfs::tests::mem_map(layout.max_pfn.0), layout).unwrap();
    pa.mark_ram(Pfn(0), layout.max_pfn).unwrap();
    pa.free_bootmem(Pfn(1), layout.max_pfn).unwrap();
    let before = free_area_snapshot(&pa);
    let free = pa.nr_free_pages();
    let (r, log, _) = run_on(&mut pa, 64);
    let rep = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(rep.dma_free_at_exhaustion, 0);
    assert_eq!(rep.highmem_blocks, 8); // 32 MiB of HighMem in 4 MiB blocks
    assert_eq!(rep.highuser_fallback_zone, Some(ZoneType::Dma32));
    assert_untouched(&pa, &before, free);
}

#[test]
fn touch_mismatch_fails_and_gives_everything_back() {
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    let before = free_area_snapshot(&pa);
    let free = pa.nr_free_pages();
    let mut scratch = vec![(Pfn(0), Order::ZERO); 512];
    let mut log = String::new();
    let mut calls = 0;
    // The 15th block (DMA32, order 3) reads back wrong.
    let mut touch = |_pfn: Pfn, _o: Order| {
        calls += 1;
        calls != 15
    };
    let err = run(&mut pa, &mut scratch, &mut touch, &mut log).unwrap_err();
    assert_eq!(err.step, Step::ZoneOrders);
    let FailureKind::TouchMismatch { pfn, order } = err.kind else {
        panic!("{err:?}");
    };
    assert_eq!(order, Order::new(3).unwrap());
    assert_eq!(pa.zone_of(pfn), Some(ZoneType::Dma32));
    assert!(log.contains("selftest: zone DMA orders 0-10 ok\n"));
    assert!(log.ends_with(&format!(
        "selftest: FAIL: zone orders: pattern mismatch in order-3 block at pfn {pfn}\n"
    )));
    assert_untouched(&pa, &before, free);
}

#[test]
fn scratch_too_small_fails_without_panic_or_leak() {
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    let before = free_area_snapshot(&pa);
    let free = pa.nr_free_pages();
    let (r, log, _) = run_on(&mut pa, 10);
    let err = r.unwrap_err();
    assert_eq!(
        err,
        SelftestFailure {
            step: Step::Fallback,
            kind: FailureKind::ScratchTooSmall { capacity: 10 }
        }
    );
    assert!(log.contains("FAIL: fallback: scratch of 10 entries too small"));
    assert_untouched(&pa, &before, free);
    // No scratch at all: the same refusal.
    let (r, _, _) = run_on(&mut pa, 0);
    assert!(matches!(
        r.unwrap_err().kind,
        FailureKind::ScratchTooSmall { capacity: 0 }
    ));
    assert_untouched(&pa, &before, free);
}

#[test]
fn zone_gfp_targets_each_zone() {
    for zt in ZoneType::ALL {
        assert_eq!(zone_gfp(zt).gfp_zone(), zt);
    }
    assert_eq!(
        orders_descending().map(Order::get).collect::<Vec<_>>(),
        (0..=10).rev().collect::<Vec<u8>>()
    );
}

#[test]
fn passes_beside_the_kernel_reserve() {
    // As the kernel boots: the heap's reserve carved after the watermarks.
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    let reserve = pa.setup_kernel_reserve().unwrap();
    assert_eq!((reserve.zone, reserve.nr_pages), (ZoneType::Dma32, 1024));
    let before = free_area_snapshot(&pa);
    let free = pa.nr_free_pages();
    let (r, log, _) = run_on(&mut pa, 512);
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_untouched(&pa, &before, free);
    assert_eq!(
        pa.kernel_reserve(),
        Some(reserve),
        "the selftest never reaches it"
    );
    pa.check_kernel_reserve().unwrap();
}
