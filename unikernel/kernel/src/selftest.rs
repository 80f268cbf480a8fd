//! `selftest` on the command line: `mm::selftest`'s allocator scenario on
//! the real allocator, with every allocated block written and read back
//! through a real mapping (the direct map, or kmap_atomic for HighMem),
//! plus the checks only the real machine can make: HighMem has no direct
//! mapping, lowmem's direct-map addresses walk to the right frame, and
//! vmalloc and kmap map frames on the real tables (guard page unmapped,
//! bytes written through the mapping land in the frame, everything —
//! page tables included — given back).

use mm::gfp::GfpFlags;
use mm::page::OwnerTag;
use mm::platform::{PageMapper, Platform};
use mm::types::{Order, PAGE_OFFSET, PAGE_SIZE, Pfn, VirtAddr};

use crate::arch::x86_64::paging::walk_current;
use crate::logger::LogWriter;
use crate::memory;

/// Scratch for the blocks the scenario holds at once (HighMem in MiB / 4
/// plus slack; 2 GiB needs ~300).
static SCRATCH: spin::Mutex<[(Pfn, Order); 4096]> = spin::Mutex::new([(Pfn(0), Order::ZERO); 4096]);

/// Runs the scenario; true only if every check held and buddyinfo is back
/// to its boot value.
pub fn run() -> bool {
    let mm = memory::mm();
    // Drained: what is on the per-CPU lists is free, and the selftest
    // drains them (the buddy lists are what it checks).
    let before = mm.drained_buddyinfo();
    let mut ok = true;

    let report = {
        let mut scratch = SCRATCH.lock();
        let mut pages = mm.lock();
        let platform = mm.platform();
        let mut touch = |pfn: Pfn, order: Order| touch_block(platform, pfn, order);
        mm::selftest::run(
            &mut pages,
            &mut scratch[..],
            &mut touch,
            &mut LogWriter::default(),
        )
    };
    match report {
        Ok(r) => log::info!("selftest: allocator scenario ok: {r:?}"),
        Err(e) => {
            log::error!("selftest: allocator scenario FAILED: {e}");
            ok = false;
        }
    }

    ok &= check_direct_map(mm);
    ok &= check_vmalloc(mm);
    ok &= check_kmap(mm);
    ok &= check_tlb_shootdown(mm);

    let after = mm.drained_buddyinfo();
    if after != before {
        log::error!("selftest: buddyinfo differs from its boot value: {before:?} -> {after:?}");
        ok = false;
    }
    if ok {
        log::info!("selftest: PASS");
    } else {
        log::error!("selftest: FAIL");
    }
    ok
}

/// Writes a pattern derived from each frame's PFN into the first and last
/// 8 bytes of every frame of the block, then reads all of them back.
fn touch_block(platform: &impl Platform, pfn: Pfn, order: Order) -> bool {
    let pattern = |p: Pfn| (p.0 ^ 0x5a5a_0000_0000_0000).to_le_bytes();
    for i in 0..order.nr_pages() {
        let p = pfn.add(i);
        platform.with_frame(p, &mut |bytes| {
            let n = bytes.len();
            bytes[..8].copy_from_slice(&pattern(p));
            bytes[n - 8..].copy_from_slice(&pattern(p));
        });
    }
    let mut ok = true;
    for i in 0..order.nr_pages() {
        let p = pfn.add(i);
        platform.with_frame(p, &mut |bytes| {
            let n = bytes.len();
            ok &= bytes[..8] == pattern(p) && bytes[n - 8..] == pattern(p);
        });
    }
    ok
}

/// The direct map reaches lowmem and only lowmem.
fn check_direct_map(mm: &memory::Mm) -> bool {
    let (lowmem, max) = {
        let pages = mm.lock();
        (pages.lowmem_pfn(), pages.max_pfn())
    };
    let mut ok = true;
    // The last lowmem frame walks to itself.
    let last_low = Pfn(lowmem.0.min(max.0) - 1);
    let (walk, _) = walk_current(PAGE_OFFSET + last_low.phys().0);
    if walk.phys != Some(last_low.phys().0) {
        log::error!(
            "selftest: direct map of {:#x} walks to {:?}",
            last_low.phys().0,
            walk.phys
        );
        ok = false;
    }
    // The first HighMem frame's would-be direct-map address is unmapped.
    if lowmem < max {
        let (walk, _) = walk_current(PAGE_OFFSET + lowmem.phys().0);
        if walk.mapped() {
            log::error!(
                "selftest: HighMem frame {:#x} is in the direct map:\n{walk}",
                lowmem.phys().0
            );
            ok = false;
        } else {
            log::info!(
                "selftest: HighMem {:#x} has no direct mapping (walk stops at {})",
                lowmem.phys().0,
                walk.levels().last().map_or("PGD", |l| l.level.name())
            );
        }
    }
    ok
}

/// vmalloc of 16 pages on the real tables: every page written through the
/// area reads back through its frame, the guard page walks as unmapped,
/// and vfree leaves nothing mapped.
fn check_vmalloc(mm: &memory::Mm) -> bool {
    const NR: u64 = 16;
    let area = match memory::vmalloc::vmalloc(NR * PAGE_SIZE, "selftest") {
        Ok(a) => a,
        Err(e) => {
            log::error!("selftest: vmalloc: {e}");
            return false;
        }
    };
    let mut ok = true;
    for i in 0..NR {
        let virt = area.start.0 + i * PAGE_SIZE;
        // SAFETY: `virt` is a page of the vmalloc area just made, mapped
        // writable to a frame only this function owns until the vfree below.
        unsafe {
            core::ptr::with_exposed_provenance_mut::<u64>(virt as usize)
                .write_volatile(0x5e1f_0000 + i)
        };
        let Some(pfn) = mm.platform().translate(VirtAddr(virt)) else {
            log::error!("selftest: vmalloc page {virt:#x} is not mapped");
            ok = false;
            continue;
        };
        let mut seen = 0;
        mm.platform().with_frame(pfn, &mut |bytes| {
            seen = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default())
        });
        if seen != 0x5e1f_0000 + i {
            log::error!(
                "selftest: vmalloc page {virt:#x} -> pfn {:#x} reads {seen:#x}",
                pfn.0
            );
            ok = false;
        }
    }
    let (guard, _) = walk_current(area.guard_page().0);
    if guard.mapped() {
        log::error!(
            "selftest: vmalloc guard page {:#x} is mapped",
            area.guard_page().0
        );
        ok = false;
    }
    if let Err(e) = memory::vmalloc::vfree(area.start) {
        log::error!("selftest: vfree: {e}");
        ok = false;
    }
    if mm.platform().translate(area.start).is_some() {
        log::error!("selftest: {:#x} still mapped after vfree", area.start.0);
        ok = false;
    }
    if ok {
        log::info!(
            "selftest: vmalloc {NR} pages at {:#x}, guard unmapped, vfree clean",
            area.start.0
        );
    }
    ok
}

/// TLB shootdown, for real: CPU 1 vmallocs a page, writes the round's
/// number into it and publishes the address; CPU 0 reads it through that
/// address (so its TLB now holds the translation) and acknowledges; CPU 1
/// vfrees the page — whose flush must reach CPU 0 — and vmallocs the next
/// round's page, which first fit puts at the same address on a different
/// frame (a plain page allocation holds the freed frame meanwhile). A CPU 0
/// that kept the stale translation would read the previous round's
/// number. Skipped on one CPU.
fn check_tlb_shootdown(mm: &memory::Mm) -> bool {
    use core::sync::atomic::{AtomicU64, Ordering};
    const ROUNDS: u64 = 200;
    if crate::arch::x86_64::smp::online_cpus().count() < 2 {
        log::info!("selftest: TLB shootdown skipped: one CPU");
        return true;
    }
    let addr = AtomicU64::new(0);
    let round = AtomicU64::new(0);
    let acked = AtomicU64::new(0);
    let stale = AtomicU64::new(0);
    let reused = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let shootdowns = crate::arch::x86_64::ipi::shootdowns();
    let job = |slot: usize, _cpu: usize| {
        if slot == 0 {
            // The reader.
            for r in 1..=ROUNDS {
                while round.load(Ordering::Acquire) < r {
                    if failed.load(Ordering::Relaxed) != 0 {
                        return;
                    }
                    core::hint::spin_loop();
                }
                let at = addr.load(Ordering::Relaxed);
                // SAFETY: CPU 1 mapped `at` writable for this round and
                // does not unmap it before our acknowledgement below.
                let seen = unsafe {
                    core::ptr::with_exposed_provenance::<u64>(at as usize).read_volatile()
                };
                if seen != r {
                    stale.fetch_add(1, Ordering::Relaxed);
                }
                acked.store(r, Ordering::Release);
            }
            return;
        }
        // The writer.
        let mut prev: Option<VirtAddr> = None;
        for r in 1..=ROUNDS {
            let mut hold = None;
            if let Some(p) = prev.take() {
                let _ = memory::vmalloc::vfree(p);
                hold = mm
                    .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::SELFTEST)
                    .ok();
            }
            let Ok(area) = memory::vmalloc::vmalloc(PAGE_SIZE, "selftest tlb") else {
                failed.store(1, Ordering::Relaxed);
                return;
            };
            if let Some(h) = hold {
                let _ = mm.free_pages(h, Order::ZERO);
            }
            if addr.load(Ordering::Relaxed) == area.start.0 {
                reused.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: a page of the area just made, mapped writable to a
            // frame this job owns until its vfree.
            unsafe {
                core::ptr::with_exposed_provenance_mut::<u64>(area.start.0 as usize)
                    .write_volatile(r)
            };
            addr.store(area.start.0, Ordering::Relaxed);
            round.store(r, Ordering::Release);
            while acked.load(Ordering::Acquire) < r {
                core::hint::spin_loop();
            }
            prev = Some(area.start);
        }
        if let Some(p) = prev {
            let _ = memory::vmalloc::vfree(p);
        }
    };
    if let Err(e) = crate::smp_work::run_on_cpus(2, &job) {
        log::error!("selftest: TLB shootdown: {e}");
        return false;
    }
    let (stale, reused) = (
        stale.load(Ordering::Relaxed),
        reused.load(Ordering::Relaxed),
    );
    let sent = crate::arch::x86_64::ipi::shootdowns() - shootdowns;
    let ok = failed.load(Ordering::Relaxed) == 0 && stale == 0 && reused > 0 && sent >= ROUNDS;
    if ok {
        log::info!(
            "selftest: TLB shootdown: {ROUNDS} rounds of vmalloc/vfree on CPU 1 read on CPU 0, address reused {reused} times, {sent} shootdowns, no stale read"
        );
    } else {
        log::error!(
            "selftest: TLB shootdown FAILED: {stale} stale reads, address reused {reused} times, {sent} shootdowns, vmalloc failed: {}",
            failed.load(Ordering::Relaxed) != 0
        );
    }
    ok
}

/// kmap of a HighMem page: written through its pkmap slot, read back
/// through kmap_atomic; a lowmem page's kmap is its direct-map address.
fn check_kmap(mm: &memory::Mm) -> bool {
    let Ok(pfn) = mm.alloc_pages(GfpFlags::GFP_HIGHUSER, Order::ZERO, OwnerTag::SELFTEST) else {
        log::info!("selftest: no HighMem page; kmap check skipped");
        return true;
    };
    let mut ok = true;
    match memory::highmem::kmap(pfn) {
        Ok(virt) => {
            // SAFETY: the pkmap slot maps `pfn`, which this function owns,
            // writable, until the kunmap below.
            unsafe {
                core::ptr::with_exposed_provenance_mut::<u64>(virt.0 as usize)
                    .write_volatile(0x6b6d_6170)
            };
            let mut seen = 0;
            mm.platform().with_frame(pfn, &mut |b| {
                seen = u64::from_le_bytes(b[..8].try_into().unwrap_or_default())
            });
            let highmem = virt.0 >= mm::layout::PKMAP_BASE;
            if seen != 0x6b6d_6170 || (!highmem && pfn >= mm.lock().lowmem_pfn()) {
                log::error!(
                    "selftest: kmap of pfn {:#x} at {:#x} reads {seen:#x}",
                    pfn.0,
                    virt.0
                );
                ok = false;
            }
            ok &= memory::highmem::kunmap(pfn).is_ok();
        }
        Err(e) => {
            log::error!("selftest: kmap: {e}");
            ok = false;
        }
    }
    memory::highmem::pkmap()
        .lock()
        .flush_all_zero_pkmaps(mm.platform());
    ok &= mm.free_pages(pfn, Order::ZERO).is_ok();
    if ok {
        log::info!("selftest: kmap/kunmap of HighMem pfn {:#x}", pfn.0);
    }
    ok
}
