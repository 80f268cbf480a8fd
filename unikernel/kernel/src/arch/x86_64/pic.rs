//! The legacy 8259A pair, remapped and masked (cf. Linux
//! `arch/x86/kernel/i8259.c:init_8259A()` followed by `mask_8259A()`).
//!
//! After the firmware the master PIC still delivers IRQ0-7 on vectors 8-15,
//! so the PIT tick would arrive as a "double fault" once interrupts are on.
//! We move the PICs to vectors 0x20-0x2f and mask every line; interrupts come
//! from the APIC. A masked 8259 can still raise a spurious IRQ7/IRQ15, which
//! then lands on 0x27/0x2f and is reported as spurious, not as an exception.

use x86_64::instructions::port::Port;

/// Vector of master IRQ0 after remapping.
pub const PIC1_VECTOR_BASE: u8 = 0x20;
/// Vector of slave IRQ8 after remapping.
pub const PIC2_VECTOR_BASE: u8 = 0x28;

const PIC1_CMD: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_CMD: u16 = 0xa0;
const PIC2_DATA: u16 = 0xa1;

fn outb(port: u16, value: u8) {
    // SAFETY: 0x20/0x21/0xa0/0xa1 are the 8259A command/data ports on every
    // PC-compatible machine; the sequence in `remap_and_mask` is the
    // documented ICW1-4 initialisation and touches no memory. Called with
    // interrupts disabled during early boot.
    unsafe { Port::<u8>::new(port).write(value) };
    // Port 0x80 (POST code) write: the customary ~1 us delay for old PICs.
    // SAFETY: port 0x80 is the unused POST diagnostic port.
    unsafe { Port::<u8>::new(0x80).write(0) };
}

/// Re-initialises both PICs at vectors 0x20/0x28 and masks all 16 lines.
pub fn remap_and_mask() {
    outb(PIC1_DATA, 0xff);
    outb(PIC2_DATA, 0xff);
    outb(PIC1_CMD, 0x11); // ICW1: edge, cascade, ICW4 follows
    outb(PIC2_CMD, 0x11);
    outb(PIC1_DATA, PIC1_VECTOR_BASE); // ICW2: vector base
    outb(PIC2_DATA, PIC2_VECTOR_BASE);
    outb(PIC1_DATA, 0x04); // ICW3: slave on IRQ2
    outb(PIC2_DATA, 0x02); // ICW3: cascade identity
    outb(PIC1_DATA, 0x01); // ICW4: 8086 mode
    outb(PIC2_DATA, 0x01);
    outb(PIC1_DATA, 0xff); // OCW1: mask everything
    outb(PIC2_DATA, 0xff);
}
