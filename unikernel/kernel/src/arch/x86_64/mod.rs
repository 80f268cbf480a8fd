//! x86_64: PVH entry, descriptor tables, exceptions, serial, QEMU exit.

pub mod apic;
pub mod boot;
pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod ipi;
pub mod paging;
pub mod percpu;
pub mod pic;
pub mod qemu;
pub mod rtc;
pub mod serial;
pub mod smp;
pub mod tcg;
pub mod tsc;

/// Descriptor tables and interrupt controllers, in dependency order. Leaves
/// interrupts disabled.
pub fn init() {
    gdt::init();
    percpu::init_bsp();
    idt::init();
    pic::remap_and_mask();
    log::debug!(
        "8259 PICs remapped to {:#x}/{:#x} and masked",
        pic::PIC1_VECTOR_BASE,
        pic::PIC2_VECTOR_BASE
    );
}

/// Local APIC (timer, EOI) and I/O APICs (all pins masked), through
/// `ioremap`: call after memory management is up and the TSC calibrated.
/// Leaves interrupts disabled.
pub fn init_interrupt_controllers() {
    let Some(info) = crate::acpi::info() else {
        log::error!("no ACPI: no APIC set-up; the main loop will spin instead of sleeping");
        return;
    };
    apic::init(info.lapic_base);
    ioapic::init(info);
    ipi::init();
}
