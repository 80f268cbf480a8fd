//! Leaving QEMU with a status: `-device isa-debug-exit,iobase=0xf4,iosize=0x04`
//! turns a write of `v` to port 0xf4 into process exit status `(v << 1) | 1`.

use x86_64::instructions::port::Port;

/// Port of QEMU's isa-debug-exit device.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Values written to isa-debug-exit; QEMU exits with `(v << 1) | 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum QemuExitCode {
    /// Exit status 33.
    Success = 0x10,
    /// Exit status 35.
    Failed = 0x11,
}

/// Exits QEMU with `code`. Without the device (real hardware, or QEMU
/// started without it) the write is ignored and the CPU halts for good.
pub fn exit_qemu(code: QemuExitCode) -> ! {
    // SAFETY: port 0xf4 is isa-debug-exit under QEMU and unassigned on the
    // PC platform otherwise; writing it touches no memory. Whatever happens
    // next, this function does not return.
    unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(code as u32) };
    halt_forever()
}

/// `cli; hlt` forever (an NMI may wake us; we halt again).
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
