//! `selftest` on the command line: `mm::selftest`'s allocator scenario on
//! the real allocator, with every allocated block written and read back
//! through a real mapping (the direct map, or kmap_atomic for HighMem),
//! plus the checks only the real machine can make: HighMem has no direct
//! mapping, and lowmem's direct-map addresses walk to the right frame.

use mm::platform::Platform;
use mm::types::{Order, PAGE_OFFSET, Pfn};

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
    let before = mm.buddyinfo();
    let mut ok = true;

    let report = {
        let mut scratch = SCRATCH.lock();
        let mut pages = mm.lock();
        let platform = mm.platform();
        let mut touch = |pfn: Pfn, order: Order| touch_block(platform, pfn, order);
        mm::selftest::run(&mut pages, &mut scratch[..], &mut touch, &mut LogWriter::default())
    };
    match report {
        Ok(r) => log::info!("selftest: allocator scenario ok: {r:?}"),
        Err(e) => {
            log::error!("selftest: allocator scenario FAILED: {e}");
            ok = false;
        }
    }

    ok &= check_direct_map(mm);

    let after = mm.buddyinfo();
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
        log::error!("selftest: direct map of {:#x} walks to {:?}", last_low.phys().0, walk.phys);
        ok = false;
    }
    // The first HighMem frame's would-be direct-map address is unmapped.
    if lowmem < max {
        let (walk, _) = walk_current(PAGE_OFFSET + lowmem.phys().0);
        if walk.mapped() {
            log::error!("selftest: HighMem frame {:#x} is in the direct map:\n{walk}", lowmem.phys().0);
            ok = false;
        } else {
            log::info!("selftest: HighMem {:#x} has no direct mapping (walk stops at {})", lowmem.phys().0,
                walk.levels().last().map_or("PGD", |l| l.level.name()));
        }
    }
    ok
}
