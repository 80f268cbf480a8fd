//! Inter-processor interrupts: a per-CPU work queue and TLB shootdown.
//!
//! * **Work on other CPUs** (cf. `queue_work_on()` + a per-CPU worker
//!   thread, simplified: no scheduler here). Each CPU has a small ring of
//!   [`Work`] items; [`queue_work_on`] appends one and sends the CPU a
//!   `RESCHEDULE_VECTOR` IPI, which does nothing but end its `hlt`. An
//!   application processor's idle loop ([`ap_idle`]) runs its queue with
//!   interrupts on, then sleeps. The boot CPU serves the network and does
//!   not take work.
//! * **TLB shootdown** (cf. `flush_tlb_kernel_range()` →
//!   `on_each_cpu(do_kernel_range_flush)`): after a kernel mapping is
//!   removed (vunmap, iounmap, pkmap's flush), the CPU that removed it
//!   flushes its own TLB and then has every other online CPU flush the
//!   same range through a `CALL_FUNCTION_VECTOR` IPI, waiting until each
//!   has acknowledged — only then may the freed frames or virtual range be
//!   reused. One shootdown is in flight at a time (`SHOOTDOWN` lock).
//!
//! Interrupt handlers here take no lock and allocate nothing.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;
use x86_64::VirtAddr as XVirt;
use x86_64::instructions::{interrupts, tlb};

use super::idt::{self, TrapFrame};
use super::percpu::{self, MAX_CPUS};
use super::{apic, smp};
use crate::memory::mapper::FLUSH_ALL_CEILING;

/// Wakes a CPU to look at its work queue (Linux's `RESCHEDULE_VECTOR`).
pub const RESCHEDULE_VECTOR: u8 = 0xfd;
/// Runs a cross-CPU function call: here, a TLB flush (Linux's
/// `CALL_FUNCTION_VECTOR`).
pub const CALL_FUNCTION_VECTOR: u8 = 0xfc;
/// ICR: fixed delivery, physical destination, level assert.
const ICR_FIXED_ASSERT: u32 = 1 << 14;
/// How long a sender waits for a CPU's acknowledgement before it reports
/// the CPU as stuck (and goes on: a lost IPI must not hang the kernel).
const ACK_TIMEOUT_US: u64 = 100_000;

/// A function and its argument, run on another CPU.
#[derive(Clone, Copy)]
pub struct Work {
    /// What to run; it must not use the kernel heap (the slab allocator is
    /// not per-CPU yet) and must not sleep.
    pub func: fn(usize),
    /// Its argument.
    pub arg: usize,
}

/// Items a CPU's queue holds.
const QUEUE_LEN: usize = 8;

/// One CPU's queue.
struct WorkQueue {
    ring: Mutex<Ring>,
    /// Items this CPU has run (`/api/cpus` `work_done`).
    done: AtomicU64,
    /// Shootdown IPIs this CPU has handled.
    flushes: AtomicU64,
}

struct Ring {
    items: [Option<Work>; QUEUE_LEN],
    head: usize,
    len: usize,
}

impl WorkQueue {
    const fn new() -> WorkQueue {
        WorkQueue {
            ring: Mutex::new(Ring {
                items: [None; QUEUE_LEN],
                head: 0,
                len: 0,
            }),
            done: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }
    }
}

static QUEUES: [WorkQueue; MAX_CPUS] = [const { WorkQueue::new() }; MAX_CPUS];

/// Why work could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// Not an online application processor.
    NotOnline,
    /// Its queue is full.
    Full,
    /// The wake-up IPI did not leave the local APIC.
    IpiFailed,
}

/// Installs the two IPI handlers (on the shared IDT; every CPU uses them).
pub fn init() {
    idt::set_irq_handler(RESCHEDULE_VECTOR, reschedule_interrupt);
    idt::set_irq_handler(CALL_FUNCTION_VECTOR, call_function_interrupt);
}

/// The physical APIC id of online CPU `cpu`, if it is online.
fn apic_id_of(cpu: usize) -> Option<u32> {
    smp::online_cpus()
        .find(|&(c, _)| c == cpu)
        .map(|(_, id)| id)
}

/// Queues `work` on application processor `cpu` and wakes it.
pub fn queue_work_on(cpu: usize, work: Work) -> Result<(), QueueError> {
    if cpu == 0 || cpu >= MAX_CPUS {
        return Err(QueueError::NotOnline);
    }
    let apic_id = apic_id_of(cpu).ok_or(QueueError::NotOnline)?;
    {
        let mut ring = QUEUES[cpu].ring.lock();
        if ring.len == QUEUE_LEN {
            return Err(QueueError::Full);
        }
        let at = (ring.head + ring.len) % QUEUE_LEN;
        ring.items[at] = Some(work);
        ring.len += 1;
    }
    apic::send_ipi(
        apic_id as u8,
        ICR_FIXED_ASSERT | u32::from(RESCHEDULE_VECTOR),
        1000,
    )
    .map_err(|_| QueueError::IpiFailed)
}

/// The next item of this CPU's queue.
fn pop(cpu: usize) -> Option<Work> {
    let mut ring = QUEUES[cpu].ring.lock();
    if ring.len == 0 {
        return None;
    }
    let head = ring.head;
    let w = ring.items[head].take();
    ring.head = (ring.head + 1) % QUEUE_LEN;
    ring.len -= 1;
    w
}

/// An application processor's idle loop (cf. `cpu_startup_entry()` with a
/// worker): run queued work with interrupts on; with none, `sti; hlt`
/// atomically, so a wake-up sent after the check still ends the `hlt`.
pub fn ap_idle(cpu: usize) -> ! {
    loop {
        interrupts::disable();
        match pop(cpu) {
            Some(w) => {
                interrupts::enable();
                // Under TCG, a softmmu TLB a whole flush may have shrunk
                // grows back before the work runs (see `tcg`).
                super::tcg::regrow_after_full_flush(cpu);
                (w.func)(w.arg);
                QUEUES[cpu].done.fetch_add(1, Ordering::Relaxed);
            }
            None => interrupts::enable_and_hlt(),
        }
    }
}

/// Work items `cpu` has run.
pub fn work_done(cpu: usize) -> u64 {
    QUEUES
        .get(cpu)
        .map_or(0, |q| q.done.load(Ordering::Relaxed))
}

/// Shootdown IPIs `cpu` has handled.
pub fn flushes_received(cpu: usize) -> u64 {
    QUEUES
        .get(cpu)
        .map_or(0, |q| q.flushes.load(Ordering::Relaxed))
}

fn reschedule_interrupt(_frame: &mut TrapFrame) {
    apic::eoi();
}

// ----------------------------------------------------------------------
// TLB shootdown
// ----------------------------------------------------------------------

/// Serialises shootdowns: the range below belongs to the holder.
static SHOOTDOWN: Mutex<()> = Mutex::new(());
static FLUSH_START: AtomicU64 = AtomicU64::new(0);
static FLUSH_PAGES: AtomicU64 = AtomicU64::new(0);
/// CPUs that have still to acknowledge the shootdown in flight.
static FLUSH_PENDING: AtomicU32 = AtomicU32::new(0);
/// Shootdowns sent (each to every other online CPU).
static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
/// Acknowledgements that did not come in time.
static SHOOTDOWN_TIMEOUTS: AtomicUsize = AtomicUsize::new(0);

/// Flushes `[first, first + nr_pages pages)` from this CPU's TLB: `invlpg`
/// per page up to [`FLUSH_ALL_CEILING`] pages, else a CR3 reload (which
/// `tcg` notes: under TCG it may shrink the CPU's softmmu TLB).
pub fn flush_local(first: u64, nr_pages: u64) {
    if nr_pages > FLUSH_ALL_CEILING {
        tlb::flush_all();
        super::tcg::note_full_flush(percpu::this_cpu_id());
    } else {
        for i in 0..nr_pages {
            tlb::flush(XVirt::new(first + i * mm::types::PAGE_SIZE));
        }
    }
}

/// Has every other online CPU flush `nr_pages` pages from `first` (the
/// caller has flushed its own TLB), and waits for them (cf.
/// `flush_tlb_kernel_range()`). A no-op on one CPU.
pub fn flush_tlb_kernel_range_others(first: u64, nr_pages: u64) {
    let me = percpu::this_cpu_id();
    let others = || smp::online_cpus().filter(move |&(c, _)| c != me);
    if nr_pages == 0 || others().next().is_none() {
        return;
    }
    // A CPU waiting here with interrupts on would take another CPU's
    // shootdown IPI meanwhile; with them off it could not, so two
    // senders could wait on each other. Spin with interrupts enabled.
    let _guard = loop {
        if let Some(g) = SHOOTDOWN.try_lock() {
            break g;
        }
        core::hint::spin_loop();
    };
    FLUSH_START.store(first, Ordering::Relaxed);
    FLUSH_PAGES.store(nr_pages, Ordering::Relaxed);
    let n = others().count() as u32;
    FLUSH_PENDING.store(n, Ordering::Release);
    for (_, apic_id) in others() {
        if apic::send_ipi(
            apic_id as u8,
            ICR_FIXED_ASSERT | u32::from(CALL_FUNCTION_VECTOR),
            1000,
        )
        .is_err()
        {
            FLUSH_PENDING.fetch_sub(1, Ordering::AcqRel);
            log::error!("tlb: shootdown IPI to APIC id {apic_id} did not leave");
        }
    }
    let deadline = super::tsc::now_us().saturating_add(ACK_TIMEOUT_US);
    while FLUSH_PENDING.load(Ordering::Acquire) != 0 {
        if super::tsc::now_us() >= deadline {
            let n = SHOOTDOWN_TIMEOUTS.fetch_add(1, Ordering::Relaxed) + 1;
            log::error!(
                "tlb: {} CPU(s) did not acknowledge a shootdown of {nr_pages} pages at {first:#x} ({n} so far)",
                FLUSH_PENDING.load(Ordering::Relaxed)
            );
            break;
        }
        core::hint::spin_loop();
    }
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
}

fn call_function_interrupt(_frame: &mut TrapFrame) {
    flush_local(
        FLUSH_START.load(Ordering::Relaxed),
        FLUSH_PAGES.load(Ordering::Relaxed),
    );
    let cpu = percpu::this_cpu_id();
    QUEUES[cpu].flushes.fetch_add(1, Ordering::Relaxed);
    FLUSH_PENDING.fetch_sub(1, Ordering::AcqRel);
    apic::eoi();
}

/// Shootdowns sent so far.
pub fn shootdowns() -> u64 {
    SHOOTDOWNS.load(Ordering::Relaxed)
}
