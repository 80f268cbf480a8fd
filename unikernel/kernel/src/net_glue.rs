//! The main loop: the NIC, the network stack and the idle policy.
//!
//! ```text
//!  loop (interrupts off) ─► ack NIC IRQ, unmask ─► NetStack::poll ─► READY once
//!        ▲                                                  │ nothing happened
//!        └──── IRQ (NIC INTx / APIC one-shot) ◄── sti; hlt ◄┘ timer armed at poll_delay_ms
//! ```
//!
//! The kernel runs with interrupts disabled except inside the `sti; hlt`
//! pair here, so interrupt handlers (which only flag events) never race the
//! loop. Work is checked with interrupts off, and `sti` enables them only
//! after the following `hlt` has begun (the STI shadow), so an interrupt
//! that arrives after the check still ends the `hlt`: no lost wake-up.

use core::sync::atomic::Ordering;

use alloc::string::String;

use net::api::Api;
use net::{NetConfig, NetStack};
use x86_64::instructions::interrupts;

use crate::api_glue::{self, KernelSystem};
use crate::arch::x86_64::{apic, tsc};
use crate::drivers::{pci, virtio};
use crate::memory;
use crate::pvh::BootInfo;
use crate::slab_glue;

/// Longest sleep without a deadline: a safety net should the NIC's
/// interrupt routing be wrong (then packets wait at most this long), and
/// cheap when idle (one wake-up a second).
pub const MAX_IDLE_MS: u64 = 1_000;

/// How long after boot deferred struct-page init starts even if the
/// network never comes up (no DHCP server answering).
const DEFERRED_INIT_GRACE_MS: u64 = 500;

/// Finds the NIC — on PCI (ECAM from the MCFG) if the machine has it,
/// else among the virtio-mmio transports of the command line
/// (`virtio_mmio.device=`) and of the DSDT — then serves forever.
pub fn run(boot: &'static BootInfo, params: &mm::cmdline::BootParams<'_>) -> ! {
    let mut nic = if let Some(mut root) = pci::init() {
        let map: alloc::vec::Vec<(u64, u64)> = boot
            .memmap()
            .iter()
            .map(|e| (e.addr, e.addr.saturating_add(e.size)))
            .collect();
        let functions = pci::enumerate(&mut root, &map);
        crate::time::boot_phase("pci");
        virtio::probe_pci(&mut root, &functions)
    } else {
        let from_cmdline = params.virtio_mmio.as_slice();
        let from_dsdt = crate::acpi::info().map_or(&[][..], |i| i.virtio_mmio.as_slice());
        let devices = if from_cmdline.is_empty() {
            from_dsdt
        } else {
            from_cmdline
        };
        log::info!(
            "virtio-mmio: {} transport(s) from the command line, {} from the DSDT; using the {}",
            from_cmdline.len(),
            from_dsdt.len(),
            if from_cmdline.is_empty() {
                "DSDT's"
            } else {
                "command line's"
            }
        );
        if devices.is_empty() {
            idle_forever(
                "no PCI (no MCFG) and no virtio-mmio device (none on the command line or in the DSDT)",
            );
        }
        virtio::probe_mmio(devices)
    };
    let Some(nic) = nic.as_mut() else {
        idle_forever("no network device");
    };
    crate::time::boot_phase("virtio-net");

    // (At loglevel=debug: `/api/dma` lists them too.)
    let dma = crate::drivers::dma::dma_snapshot();
    for buf in dma.coherent() {
        log::debug!(
            "dma: coherent {:<18} {:#010x} {:>7} B ({}) cpu {:#x}",
            buf.owner,
            buf.dma_addr.0,
            buf.size,
            buf.zone.name(),
            buf.cpu_addr.0
        );
    }

    let mut config = NetConfig::new(nic.mac());
    config.transport = Some(nic.transport().as_str());
    config.ip = params.ip;
    config.port = params.port;
    // kmalloc memory: the buddy's frames less HighMem (not mapped).
    let lowmem_pages = {
        let pa = memory::mm().lock();
        pa.totalram_pages() - pa.totalhigh_pages()
    };
    config.max_connections = net::default_max_connections(lowmem_pages * mm::types::PAGE_SIZE);
    config.token = params.token.map(String::from);
    let mut stack = NetStack::new(config, nic, tsc::now_ms());
    let system: &'static KernelSystem = alloc::boxed::Box::leak(alloc::boxed::Box::new(
        KernelSystem::new(params.vmalloc_size),
    ));
    // The other CPUs have had the device probe and the stack's set-up to
    // come up in; the allocators learn how many there are before their
    // boot state is recorded.
    crate::cpus_online();
    // Freed vmap areas wait for one TLB flush per batch from now on; the
    // boot's own (none pending: it was off) were released at once.
    memory::vmalloc::enable_lazy_purge();
    // The kernel's boot-time heap allocations are in place: give its
    // kmalloc caches headroom before the API records their state.
    slab_glue::prewarm();
    let mut app = build_api(boot, system, params.api_quota_pct);
    // Everything the kernel allocates for itself at boot is in place: this
    // is the buddy state `POST /api/reset` returns to.
    memory::mm().mark_boot_complete();
    log::info!("net: stack up; entering the main loop");
    crate::time::boot_phase("network stack");

    let mut irq_warned = false;
    // Deferred struct-page init waits for READY (or, with no address yet,
    // for DEFERRED_INIT_GRACE_MS of boot): the boot has the memory it needs
    // (see `memory::deferred_init_step`), and until the network is up the
    // chunks would only delay each DHCP reply and take the host CPU
    // QEMU's user network answers on.
    let mut ready = false;
    loop {
        nic.handle_irq();
        let busy = stack.poll(nic, tsc::now_ms(), &mut *app);
        if let Some((ip, port)) = stack.take_ready() {
            let us = tsc::now_us();
            log::info!(
                "net: ready after {}.{:03} ms; NIC irqs {}, APIC timer irqs {}",
                us / 1000,
                us % 1000,
                virtio::STATS.irqs.load(Ordering::Relaxed),
                apic::timer_irqs()
            );
            crate::time::boot_phase("network up");
            crate::serial_println!(
                "READY http://{}.{}.{}.{}:{}",
                ip[0],
                ip[1],
                ip[2],
                ip[3],
                port
            );
            // After READY: nobody waits for these.
            memory::attach_trace_ring();
            tsc::refine();
            crate::time::boot_summary("READY");
            ready = true;
        }
        // Deferred struct-page init, a chunk per turn until it is done.
        let deferred =
            (ready || tsc::now_ms() >= DEFERRED_INIT_GRACE_MS) && memory::deferred_init_step();
        if deferred || busy {
            continue;
        }
        // Under TCG, a softmmu TLB a whole flush may have shrunk grows back
        // while there is nothing to do (see `arch::x86_64::tcg`).
        crate::arch::x86_64::tcg::regrow_after_full_flush(0);
        idle(stack.poll_delay_ms(tsc::now_ms()));
        if !irq_warned
            && virtio::STATS.irqs.load(Ordering::Relaxed) == 0
            && virtio::STATS.rx_packets.load(Ordering::Relaxed) >= 32
        {
            irq_warned = true;
            log::warn!(
                "net: {} frames received but no NIC interrupt: INTx routing is wrong; serving by polling every {MAX_IDLE_MS} ms",
                virtio::STATS.rx_packets.load(Ordering::Relaxed)
            );
        }
    }
}

/// The API, built in a frame of its own and kept on the heap (allocated
/// at boot, so part of the state `POST /api/reset` returns to). Built in
/// `run`'s frame, it and the by-value builder steps' copies took some
/// 45 KiB of the 64 KiB kernel stack for as long as the kernel runs,
/// leaving the deepest requests (`/api/vmstat`'s 12 KiB frame) about 2 KiB.
#[inline(never)]
fn build_api(
    boot: &'static BootInfo,
    system: &'static KernelSystem,
    api_quota_pct: u8,
) -> alloc::boxed::Box<Api<'static, memory::highmem::KernelPlatform>> {
    alloc::boxed::Box::new(
        Api::new(
            memory::mm(),
            api_glue::boot_view(boot),
            system,
            api_quota_pct,
        )
        .with_vm(api_glue::vm())
        .with_slab(&slab_glue::KernelSlab),
    )
}

/// Sleeps until an interrupt, with the APIC one-shot armed `delay_ms`
/// ahead (at most [`MAX_IDLE_MS`]). Returns at once if the NIC already
/// raised work or the deadline is now.
fn idle(delay_ms: Option<u64>) {
    debug_assert!(!interrupts::are_enabled());
    if virtio::irq_pending() {
        return;
    }
    let ms = delay_ms.unwrap_or(MAX_IDLE_MS).min(MAX_IDLE_MS);
    if ms == 0 {
        return;
    }
    apic::arm_oneshot_us(ms * 1000);
    // `sti; hlt`: see the module doc for why this cannot miss a wake-up.
    interrupts::enable_and_hlt();
    interrupts::disable();
    apic::cancel_timer();
}

fn idle_forever(why: &str) -> ! {
    crate::cpus_online();
    log::error!("{why}: no network; idling");
    memory::attach_trace_ring();
    while memory::deferred_init_step() {}
    loop {
        interrupts::enable_and_hlt();
    }
}
