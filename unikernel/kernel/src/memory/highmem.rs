//! Reaching frames that have no permanent mapping: the fixmap's
//! `kmap_atomic` slots (cf. `kmap_local_page()` and `arch/x86/mm/highmem_32.c`),
//! the persistent pkmap pool (`kmap()`), and the [`KernelPlatform`] that
//! lends `mm` a mapping of any frame. The policies (slot choice, reference
//! counts, lazy flush, stack order) are `mm::highmem`'s [`Pkmap`] and
//! [`KmapAtomicStack`]; this module keeps them in statics and hands them
//! the real page tables (`KernelPlatform`'s `PageMapper`, see `mapper.rs`).
//!
//! A HighMem frame is never in the direct map. To zero, fill or checksum
//! one, the kernel maps it into the next free fixmap slot (a stack: nested
//! maps unmap in reverse order), uses it, unmaps it and flushes that TLB
//! entry. Interrupts stay off meanwhile, as Linux disables preemption and
//! page faults: the slot belongs to this CPU until it is released.

use spin::{Mutex, Once};
use x86_64::instructions::interrupts;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTableFlags as F, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr as XPhys, VirtAddr as XVirt};

use mm::highmem::{KmapAtomicStack, KmapError, Pkmap};
use mm::layout::{FIXMAP_END, LAST_PKMAP, PKMAP_BASE};
use mm::platform::{FRAME_BYTES, Platform};
use mm::types::{PAGE_SIZE, Pfn, VirtAddr};

use super::paging::phys_to_virt;
use crate::arch::x86_64::paging as early;
use crate::arch::x86_64::percpu::MAX_CPUS;

/// Creates the page tables under the pkmap and fixmap windows at boot, so
/// that mapping a slot later is a single PTE write and never allocates.
pub(super) fn prepare_tables(
    pt: &mut OffsetPageTable<'_>,
    frames: &mut impl FrameAllocator<Size4KiB>,
) {
    let first = Page::<Size4KiB>::containing_address(XVirt::new(PKMAP_BASE));
    let last = Page::<Size4KiB>::containing_address(XVirt::new(FIXMAP_END - PAGE_SIZE));
    // Touch one page per 2 MiB: a map then unmap leaves its PT in place.
    let mut page = first;
    let dummy = PhysFrame::<Size4KiB>::containing_address(XPhys::new(0));
    while page <= last {
        // SAFETY: a transient mapping in tables that are not live yet; it is
        // removed again at once, only the intermediate tables remain.
        unsafe {
            match pt.map_to(page, dummy, F::PRESENT, frames) {
                Ok(flush) => flush.ignore(),
                Err(e) => panic!("paging: kmap window tables: {e:?}"),
            }
        }
        if let Ok((_, flush)) = pt.unmap(page) {
            flush.ignore();
        }
        page += 512;
    }
    let _ = LAST_PKMAP;
}

/// Each CPU's kmap_atomic slots (cf. `current->kmap_ctrl`): which of its
/// fixmap slots is next, and the frames mapped in the used ones. A CPU
/// touches only its own (interrupts off meanwhile), so the lock is never
/// contended; it is there for the views.
static KMAP_ATOMIC: [Mutex<KmapAtomicStack>; MAX_CPUS] = [
    Mutex::new(KmapAtomicStack::for_cpu(0)),
    Mutex::new(KmapAtomicStack::for_cpu(1)),
    Mutex::new(KmapAtomicStack::for_cpu(2)),
    Mutex::new(KmapAtomicStack::for_cpu(3)),
    Mutex::new(KmapAtomicStack::for_cpu(4)),
    Mutex::new(KmapAtomicStack::for_cpu(5)),
    Mutex::new(KmapAtomicStack::for_cpu(6)),
    Mutex::new(KmapAtomicStack::for_cpu(7)),
];
const _: () = assert!(MAX_CPUS == 8 && MAX_CPUS <= mm::types::NR_CPUS);

/// The persistent kmap pool, once [`init_pkmap`] ran.
static PKMAP: Once<Mutex<Pkmap>> = Once::new();

/// Sets up the pkmap pool: frames from `lowmem_end` up are HighMem.
pub(super) fn init_pkmap(lowmem_end: Pfn) {
    PKMAP.call_once(|| Mutex::new(Pkmap::new(lowmem_end)));
}

/// The persistent kmap pool (cf. `kmap_lock`). Lock order: this → zone
/// lock → page-table lock.
pub fn pkmap() -> &'static Mutex<Pkmap> {
    PKMAP.get().expect("memory::init has run")
}

/// CPU 0's kmap_atomic stack (the API's CPU), for `/api/kmap`'s
/// `atomic.used` and the selfcheck.
pub fn kmap_atomic_stack() -> &'static Mutex<KmapAtomicStack> {
    &KMAP_ATOMIC[0]
}

/// `kmap(page)`: the direct-map address of a lowmem frame, a pkmap slot
/// for a HighMem one (cf. `kmap()`); fails when every slot is busy.
pub fn kmap(pfn: Pfn) -> Result<VirtAddr, KmapError> {
    pkmap().lock().kmap(&KernelPlatform::new(), pfn)
}

/// `kunmap(page)`.
pub fn kunmap(pfn: Pfn) -> Result<(), KmapError> {
    pkmap().lock().kunmap(pfn)
}

/// Maps `pfn` into the next kmap_atomic slot, runs `f` on its bytes, and
/// unmaps it (cf. `kmap_atomic()` / `kunmap_atomic()`), with interrupts off
/// throughout, as Linux disables preemption and page faults. The stack's
/// lock is held only to push and pop, so `f` may nest another
/// kmap_atomic; an out-of-order unmap (impossible with this closure shape,
/// checked anyway) is reported as a bug and leaves the slot mapped.
pub fn with_kmap_atomic<R>(pfn: Pfn, f: impl FnOnce(&mut [u8]) -> R) -> R {
    interrupts::without_interrupts(|| {
        let mapper = KernelPlatform::new();
        let stack = &KMAP_ATOMIC[crate::arch::x86_64::percpu::this_cpu_id() & (MAX_CPUS - 1)];
        let (idx, virt) = match stack.lock().push(&mapper, pfn) {
            Ok(slot) => slot,
            Err(e) => panic!("kmap_atomic of pfn {:#x}: {e}", pfn.0),
        };
        // SAFETY: the slot is ours (the stack reserved it, interrupts are
        // off), the mapper just installed a writable PTE for exactly this
        // frame (the slot's previous mapping was removed and flushed when
        // it was popped), and the caller owns `pfn`; nothing else refers to
        // the slot's address until it is popped below.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                core::ptr::with_exposed_provenance_mut::<u8>(virt.0 as usize),
                FRAME_BYTES,
            )
        };
        let r = f(bytes);
        if let Err(e) = stack.lock().pop(&mapper, virt) {
            log::error!("BUG: kunmap_atomic of slot {idx}: {e}");
        }
        r
    })
}

/// `mm`'s view of the machine: frames through the direct map when it
/// reaches them, through kmap_atomic otherwise.
pub struct KernelPlatform {
    _private: (),
}

impl KernelPlatform {
    pub(super) const fn new() -> Self {
        KernelPlatform { _private: () }
    }
}

impl Platform for KernelPlatform {
    fn now_ns(&self) -> u64 {
        crate::arch::x86_64::tsc::now_ns()
    }

    #[inline(always)]
    fn cpu_id(&self) -> usize {
        crate::arch::x86_64::percpu::this_cpu_id()
    }

    fn with_frame(&self, pfn: Pfn, f: &mut dyn FnMut(&mut [u8])) {
        let phys = pfn.phys().0;
        if early::phys_accessible(phys, PAGE_SIZE) {
            // SAFETY: the frame lies inside the direct map (checked), which
            // maps it writable; `Platform::with_frame`'s contract is that the
            // caller owns the frame, so no other reference to it exists.
            let bytes = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(phys), FRAME_BYTES) };
            f(bytes);
        } else {
            with_kmap_atomic(pfn, |bytes| f(bytes));
        }
    }
}
