//! Pagezone: a unikernel that serves its own memory manager over HTTP.
//!
//! Boot path: `arch::x86_64::boot` (PVH entry, 32 → 64 bit) calls [`kmain`],
//! which brings up the console, descriptor tables, the PVH start info and
//! ACPI, then hands over to memory management and the main loop.

#![no_std]
#![no_main]

extern crate alloc;

mod acpi;
mod api_glue;
mod arch;
mod drivers;
mod heap;
mod logger;
mod memory;
mod mptable;
mod net_glue;
mod pvh;
mod selftest;
mod slab_glue;
mod smp_work;
mod time;

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use arch::x86_64::qemu::{QemuExitCode, exit_qemu};
use arch::x86_64::{boot, serial};

/// First Rust code, on the boot stack with the boot identity map; called by
/// the PVH stub with the physical address of `hvm_start_info`.
extern "C" fn kmain(start_info_phys: u64) -> ! {
    arch::x86_64::tsc::mark_boot();
    serial::init();
    logger::init();
    log::info!("Pagezone {} booting (PVH)", env!("CARGO_PKG_VERSION"));
    boot::log_layout();

    arch::x86_64::init();
    time::boot_phase("cpu");

    let boot_info = pvh::parse(start_info_phys);
    let params = mm::cmdline::parse(boot_info.cmdline, |w| log::warn!("cmdline: {w}"));
    logger::apply_cmdline(params.loglevel);

    let acpi = acpi::init(boot_info.rsdp);
    // The TSC is calibrated against the ACPI PM timer while the boot goes
    // on: what is logged until then is printed once the clock runs.
    arch::x86_64::tsc::start_calibration(acpi.and_then(|a| a.pm_timer));

    time::boot_phase("firmware");

    memory::init(boot_info, &params);
    arch::x86_64::tsc::finish_calibration();
    heap::init(&params);
    time::boot_phase("slab");
    arch::x86_64::init_interrupt_controllers();
    // The other CPUs start while this one goes on; `cpus_online` waits.
    arch::x86_64::smp::start(params.cpu_init_udelay);
    drivers::dma::init();
    time::boot_phase("interrupts");

    if let Some(kind) = params.crash {
        crash(kind.as_str());
    }

    if params.selftest {
        cpus_online();
        // The selftest drains and restores every zone: all of it first.
        memory::mm().lock().deferred_init_all();
        let ok = selftest::run();
        exit_qemu(if ok {
            QemuExitCode::Success
        } else {
            QemuExitCode::Failed
        });
    }

    net_glue::run(boot_info, &params)
}

/// Waits for the CPUs `smp::start` kicked, then gives each online CPU its
/// flag of the page allocator's lock and its share of the per-CPU lists
/// (cf. the hotplug callbacks). Before the allocators' boot state is
/// recorded and before anything runs on another CPU.
pub fn cpus_online() {
    arch::x86_64::smp::finish();
    let nr_cpu_ids = arch::x86_64::smp::online_cpus()
        .map(|(cpu, _)| cpu + 1)
        .max()
        .unwrap_or(1);
    memory::mm().set_nr_cpus(nr_cpu_ids);
    slab_glue::set_nr_cpus(nr_cpu_ids);
}

/// `crash=KIND` on the command line: trigger a fault to exercise the
/// exception report (each fatal kind must end with QEMU exit status 35).
/// `int3` is the non-fatal check that the entry path returns correctly.
#[inline(never)] // not in `kmain`'s frame, which lives as long as the kernel
fn crash(kind: &str) {
    log::warn!("crash={kind} requested on the command line");
    match kind {
        "pagefault" => {
            // 7.5 GiB: beyond the boot identity map (PUD[7] of PGD[0] is not
            // present), and never mapped by the kernel's final layout either.
            // SAFETY: a deliberate #PF: the write cannot succeed (nothing is
            // mapped there) and the page-fault handler does not return, so
            // no Rust-visible memory is touched. `noreturn` states exactly
            // that.
            unsafe {
                core::arch::asm!(
                    "mov qword ptr [{addr}], {val}",
                    "ud2",
                    addr = in(reg) 0x0000_0001_dead_b000u64,
                    val = in(reg) 0x42u64,
                    options(noreturn, nostack)
                )
            }
        }
        "gp" => {
            // SAFETY: a deliberate #GP: a non-canonical address faults before
            // any access, and the handler does not return.
            unsafe {
                core::arch::asm!(
                    "mov {addr}, qword ptr [{addr}]",
                    "ud2",
                    addr = in(reg) 0x8000_0000_0000_0000u64,
                    options(noreturn, nostack)
                )
            }
        }
        "ud" => {
            // SAFETY: a deliberate #UD; the handler does not return.
            unsafe { core::arch::asm!("ud2", options(noreturn, nostack)) }
        }
        "int3" => {
            // SAFETY: #BP is handled by logging and `iretq` back to the next
            // instruction; all registers are restored by the entry path, so
            // the asm block has no effects the compiler must know about.
            unsafe { core::arch::asm!("int3", options(nostack)) };
            log::info!("crash=int3: returned from the breakpoint handler");
        }
        "doublefault" => {
            // SAFETY: a deliberate #DF, as a kernel stack overflow causes it:
            // with RSP on an unmapped page the push faults (#PF), delivering
            // that #PF needs the same stack and faults again, so the CPU
            // raises #DF, which runs on its own IST stack and never returns.
            // RSP is never restored, hence `noreturn`.
            unsafe {
                core::arch::asm!(
                    "mov rsp, {sp}",
                    "push rax",
                    "ud2",
                    sp = in(reg) 0x0000_0001_dead_c000u64,
                    options(noreturn)
                )
            }
        }
        "vmalloc-overrun" => match memory::vmalloc::vmalloc(4096, "crash=vmalloc-overrun") {
            Ok(area) => {
                let past_end = area.start.0 + area.size;
                log::warn!(
                    "crash=vmalloc-overrun: writing one byte past {:#x}+{:#x}",
                    area.start.0,
                    area.size
                );
                // SAFETY: a deliberate #PF: `past_end` is the area's guard
                // page, which is never mapped, so the write faults before
                // touching memory, and the page-fault handler does not return.
                unsafe {
                    core::ptr::with_exposed_provenance_mut::<u8>(past_end as usize)
                        .write_volatile(0x42)
                };
                unreachable!("the guard page was mapped");
            }
            Err(e) => log::error!("crash=vmalloc-overrun: vmalloc failed: {e}"),
        },
        "panic" => panic!("crash=panic requested on the command line"),
        other => log::warn!(
            "crash={other}: unknown kind (pagefault|gp|ud|doublefault|int3|vmalloc-overrun|panic); ignored"
        ),
    }
}

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    serial::enter_fatal();
    if PANICKING.swap(true, Ordering::SeqCst) {
        // Panicked while panicking: skip formatting, which may be the cause.
        serial::write_str_raw("\nnested panic; exiting\n");
        exit_qemu(QemuExitCode::Failed);
    }
    match info.location() {
        Some(loc) => log::error!(
            "PANIC at {}:{}:{}: {}",
            loc.file(),
            loc.line(),
            loc.column(),
            info.message()
        ),
        None => log::error!("PANIC: {}", info.message()),
    }
    exit_qemu(QemuExitCode::Failed)
}
