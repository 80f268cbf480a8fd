//! x86_64: PVH entry, descriptor tables, exceptions, serial, QEMU exit.

pub mod boot;
pub mod gdt;
pub mod idt;
pub mod paging;
pub mod pic;
pub mod qemu;
pub mod serial;

/// Descriptor tables and interrupt controllers, in dependency order. Leaves
/// interrupts disabled.
pub fn init() {
    gdt::init();
    idt::init();
    pic::remap_and_mask();
    log::info!(
        "8259 PICs remapped to {:#x}/{:#x} and masked",
        pic::PIC1_VECTOR_BASE,
        pic::PIC2_VECTOR_BASE
    );
}
