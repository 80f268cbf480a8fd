//! QEMU's TCG (its software CPU) as seen from the guest: detecting it, and
//! giving an application processor the softmmu TLB the boot CPU gets.
//!
//! Not Linux: Linux does not tune itself for TCG. This kernel runs under
//! TCG in every test and benchmark, and there one QEMU heuristic made the
//! second CPU markedly slower than the first on the same work.
//!
//! **The mechanism** (QEMU `accel/tcg/cputlb.c`). Every vCPU translates
//! guest addresses through a software TLB of its own. The TLB is
//! direct-mapped: a page's slot is its page number modulo the table size,
//! and an 8-entry victim TLB sits behind it. QEMU sizes the table at run
//! time, and only when the vCPU flushes its whole TLB
//! (`tlb_mmu_resize_locked()`):
//! * it starts at 256 entries;
//! * a flush doubles it when more than 70 % of the entries were used since
//!   the last flush;
//! * a flush shrinks it when less than 30 % were used over the last 100 ms.
//!
//! The boot CPU's table grows during boot, which touches thousands of pages
//! between CR3 writes. An application processor's table never does, so two
//! of its hot pages can share a slot and swap through the victim TLB (under
//! its lock) on every access.
//!
//! **Measured** on a `-smp 2` guest, with each vCPU's thread pinned in turn
//! to the same host core:
//! * a kmalloc-64/kfree pair took 1.6–1.8× as long on CPU 1 as on CPU 0;
//! * `perf` put 12 % of CPU 1's thread in QEMU's `victim_tlb_hit()` and
//!   51 % in QEMU rather than in translated code, against 27 % on CPU 0;
//! * order-0 page pairs, whose hot pages happened not to collide, ran at
//!   the same speed on both CPUs.
//!
//! After [`grow_softmmu_tlb`], the same pairs take the same time on both
//! CPUs.
//!
//! [`grow_softmmu_tlb`] does for an AP what the boot does for the boot CPU:
//! it reads one byte from each of more than 70 % as many distinct pages as
//! the table has entries, then flushes, and repeats (64 → 8192 entries,
//! 6,096 reads in all, about 1.2 ms). Under KVM or on hardware it does nothing.
//!
//! **After a whole-TLB flush.** QEMU may shrink the table again at a later
//! whole flush that follows 100 ms of light use, and a range flush of more
//! than 33 pages (a large `vfree`, pkmap's flush) reloads CR3 on every
//! CPU. Measured: after three 1 MiB vmalloc/vfree pairs, CPU 1's kmalloc
//! pairs were back at 1.6× CPU 0's. So [`note_full_flush`] marks the CPU,
//! and [`regrow_after_full_flush`] grows its table again at the next
//! quiet moment: an AP before its next work item, the boot CPU before it
//! next sleeps in its main loop.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use x86_64::instructions::tlb;

use super::percpu::MAX_CPUS;
use crate::memory::paging;
use mm::types::PAGE_SIZE;

/// QEMU's smallest table (`CPU_TLB_DYN_MIN_BITS` = 6): the rounds of
/// [`grow_softmmu_tlb`] start from it, so they end at the target whatever
/// size the table had (a larger one first shrinks to the round's size or
/// keeps its own, and the rounds catch up with it).
const TCG_TLB_MIN_ENTRIES: u64 = 64;
/// The size [`grow_softmmu_tlb`] aims for: pages that share a slot must then
/// lie a multiple of 32 MiB apart.
const TCG_TLB_TARGET_ENTRIES: u64 = 8192;

/// 0 not yet asked, 1 TCG, 2 not TCG.
static IS_TCG: AtomicU8 = AtomicU8::new(0);

/// CPUs that reloaded CR3 since their table last grew.
static FULL_FLUSHED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Whether this CPU is QEMU's TCG: the CPUID hypervisor bit, and the
/// hypervisor leaf's signature "TCGTCGTCGTCG" (QEMU's `tcg-cpuid`
/// property, on by default).
pub fn is_tcg() -> bool {
    match IS_TCG.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    // CPUID leaf 1 exists on every x86_64 CPU; leaf 0x4000_0000 is read
    // only when the hypervisor bit says a hypervisor defines it.
    let leaf1 = core::arch::x86_64::__cpuid(1);
    let tcg = leaf1.ecx & (1 << 31) != 0 && {
        let hv = core::arch::x86_64::__cpuid(0x4000_0000);
        let mut sig = [0u8; 12];
        sig[0..4].copy_from_slice(&hv.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&hv.ecx.to_le_bytes());
        sig[8..12].copy_from_slice(&hv.edx.to_le_bytes());
        &sig == b"TCGTCGTCGTCG"
    };
    IS_TCG.store(if tcg { 1 } else { 2 }, Ordering::Relaxed);
    tcg
}

/// Under TCG, grows this vCPU's softmmu TLB towards
/// [`TCG_TLB_TARGET_ENTRIES`] (see the module docs); returns the size it
/// aimed at (0 when not under TCG). Reads pages of the direct map's
/// longest range only, so a small guest grows its table as far as its RAM
/// allows. Call with the final page tables live, on the CPU to grow.
pub fn grow_softmmu_tlb() -> u64 {
    if !is_tcg() {
        return 0;
    }
    let (start, end) = paging::direct_map_longest();
    let first = start.div_ceil(PAGE_SIZE);
    let pages = (end / PAGE_SIZE).saturating_sub(first);
    let mut entries = TCG_TLB_MIN_ENTRIES;
    while entries < TCG_TLB_TARGET_ENTRIES {
        // Three quarters of the table: above QEMU's 70 % threshold.
        let touch = entries / 4 * 3;
        if touch > pages {
            break;
        }
        for i in 0..touch {
            // SAFETY: `first + i` < the end of a range the direct map maps
            // (readable, and never unmapped); a one-byte volatile read of
            // RAM changes nothing.
            unsafe {
                core::ptr::read_volatile(paging::phys_to_virt((first + i) * PAGE_SIZE));
            }
        }
        tlb::flush_all();
        entries *= 2;
    }
    // Grown now: a CR3 reload before this one no longer counts.
    if let Some(flag) = FULL_FLUSHED.get(super::percpu::this_cpu_id()) {
        flag.store(false, Ordering::Relaxed);
    }
    entries
}

/// Notes that `cpu` reloaded CR3 (a whole-TLB flush): under TCG its
/// softmmu TLB may have shrunk (see the module docs). Interrupt-safe.
pub fn note_full_flush(cpu: usize) {
    if is_tcg()
        && let Some(flag) = FULL_FLUSHED.get(cpu)
    {
        flag.store(true, Ordering::Relaxed);
    }
}

/// Grows `cpu`'s softmmu TLB again if it reloaded CR3 since it last grew;
/// returns whether it did. Call on `cpu`, outside interrupt handlers.
pub fn regrow_after_full_flush(cpu: usize) -> bool {
    let flushed = FULL_FLUSHED
        .get(cpu)
        .is_some_and(|flag| flag.swap(false, Ordering::Relaxed));
    if flushed {
        grow_softmmu_tlb();
    }
    flushed
}
