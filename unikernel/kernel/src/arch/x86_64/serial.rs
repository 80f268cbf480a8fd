//! COM1 console: a minimal 16550 UART driver (115200 8N1, transmit only)
//! behind a lock that a fault or panic can break, shared by every CPU
//! (the lock records which CPU holds it; see [`with_console`]).
//!
//! Why not the `uart_16550` crate: its 0.9 API builds on stable, but its
//! transmit path can wait on modem-status CTS and its constructors run a
//! loopback self-test; a console that must still print from a double-fault
//! handler wants no waits it cannot bound. This is the 8250/16550 subset Linux's
//! earlyprintk uses (arch/x86/boot/early_serial_console.c).

use core::fmt::{self, Write};
use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use spin::Mutex;
use x86_64::instructions::interrupts;
use x86_64::instructions::port::Port;

/// I/O base of COM1.
pub const COM1: u16 = 0x3f8;

// Register offsets from the base (DLAB = 0 unless noted).
const THR: u16 = 0; // transmit holding (write)
const DLL: u16 = 0; // divisor low (DLAB = 1)
const IER: u16 = 1; // interrupt enable
const DLM: u16 = 1; // divisor high (DLAB = 1)
const FCR: u16 = 2; // FIFO control (write)
const IIR: u16 = 2; // interrupt identification (read)
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status
const LSR_THRE: u8 = 1 << 5; // transmit holding register empty
/// IIR bits 7:6 read 0b11 once FCR has enabled working FIFOs (16550A).
const IIR_FIFO_MASK: u8 = 0xc0;
/// Transmit FIFO depth of a 16550A (Linux's `tx_loadsz` for `PORT_16550A`).
const FIFO_TX_LOADSZ: u8 = 16;

/// A 16550 on x86 port I/O.
pub struct Uart {
    base: u16,
    /// Bytes the transmit FIFO takes at once: 16 on a 16550A, 1 on a UART
    /// without working FIFOs (found by [`Uart::init`]).
    tx_loadsz: u8,
    /// Bytes that may still be written before THRE must be polled again:
    /// after THRE is seen the FIFO is empty, so `tx_loadsz` fit.
    room: u8,
}

impl Uart {
    pub const fn new(base: u16) -> Self {
        Uart {
            base,
            tx_loadsz: 1,
            room: 0,
        }
    }

    fn out(&self, reg: u16, value: u8) {
        // SAFETY: `base` is a 16550's I/O base (COM1 on every PC-compatible
        // machine, QEMU q35 included); writing its registers has no effect on
        // memory, and callers hold the console lock (or have broken it on a
        // fatal path, where only one CPU still runs).
        unsafe { Port::<u8>::new(self.base + reg).write(value) }
    }

    fn inb(&self, reg: u16) -> u8 {
        // SAFETY: as in `out`; reading LSR has no side effects.
        unsafe { Port::<u8>::new(self.base + reg).read() }
    }

    /// 115200 baud (divisor 1 of the 1.8432 MHz / 16 clock), 8N1, FIFOs on,
    /// UART interrupts off (we poll).
    pub fn init(&mut self) {
        self.out(IER, 0x00);
        self.out(LCR, 0x80); // DLAB
        self.out(DLL, 0x01);
        self.out(DLM, 0x00);
        self.out(LCR, 0x03); // 8 data bits, no parity, 1 stop bit, DLAB off
        self.out(FCR, 0xc7); // enable + clear FIFOs, 14-byte trigger
        self.out(MCR, 0x03); // DTR | RTS (OUT2 stays off: no IRQ)
        // cf. `autoconfig()`: FIFOs that work read back as 0b11 in IIR.
        self.tx_loadsz = if self.inb(IIR) & IIR_FIFO_MASK == IIR_FIFO_MASK {
            FIFO_TX_LOADSZ
        } else {
            1
        };
        self.room = 0;
    }

    /// Sends one byte. THRE is polled only when the bytes written since it
    /// was last seen may have filled the transmit FIFO, so a 16550A takes
    /// 16 bytes per poll (cf. Linux 6.1's `serial8250_console_fifo_write()`;
    /// under QEMU each poll is an exit to the device model). The wait is
    /// bounded: with no UART (or a stuck one) output is dropped rather
    /// than hanging the kernel.
    pub fn write_byte(&mut self, byte: u8) {
        if self.room == 0 {
            for _ in 0..100_000 {
                if self.inb(LSR) & LSR_THRE != 0 {
                    break;
                }
                spin_loop();
            }
            self.room = self.tx_loadsz;
        }
        self.room -= 1;
        self.out(THR, byte);
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Uart> = Mutex::new(Uart::new(COM1));

/// Set on fatal paths (exception report, panic): from then on the console
/// lock is taken by force instead of waited for.
static FATAL: AtomicBool = AtomicBool::new(false);

/// The CPU that entered the fatal path first (number + 1): its report is
/// the one printed (cf. Linux's `panic_cpu`); any other CPU that then
/// reaches the console stops there, as `smp_send_stop()` would stop it.
static FATAL_CPU: AtomicUsize = AtomicUsize::new(0);

/// How long a non-fatal writer spins before assuming the holder is the
/// context it interrupted on its own CPU (it will not release until we
/// return).
const LOCK_SPINS: u32 = 1 << 20;

/// How long a writer waits for another CPU to finish its line before
/// stealing the lock anyway: far longer (that CPU is only printing, or its
/// vCPU was descheduled by the host), but still bounded, so a CPU that died
/// holding the console cannot silence the others.
const OTHER_CPU_SPINS: u32 = 1 << 26;

/// The CPU holding the console, as its number + 1; 0 when free (or in the
/// instant between taking the lock and recording the owner).
static OWNER: AtomicUsize = AtomicUsize::new(0);

/// Programs COM1. Call first thing in `kmain`.
pub fn init() {
    with_console(|uart| uart.init());
}

/// Marks the kernel as dying: every later console user breaks the lock.
/// Records the logger still holds for want of a clock are printed first.
pub fn enter_fatal() {
    let me = super::percpu::this_cpu_id() + 1;
    let _ = FATAL_CPU.compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst);
    FATAL.store(true, Ordering::SeqCst);
    crate::logger::flush_held();
}

/// Whether the kernel is dying ([`enter_fatal`]).
pub fn is_fatal() -> bool {
    FATAL.load(Ordering::Relaxed)
}

/// Runs `f` with the UART, interrupts off.
///
/// Interrupts are disabled while the lock is held, so a holder on this
/// CPU means we interrupted it (an exception or NMI raised while
/// printing). Waiting would deadlock, so after a bounded spin (at once on
/// fatal paths) the lock is stolen; at worst two messages interleave. A
/// holder on another CPU is waited for, [`OTHER_CPU_SPINS`] at most. Once
/// a CPU is on the fatal path, every other CPU stops at the console.
pub fn with_console<R>(f: impl FnOnce(&mut Uart) -> R) -> R {
    interrupts::without_interrupts(|| {
        let me = super::percpu::this_cpu_id() + 1;
        let mut spins = 0u32;
        loop {
            if let Some(mut uart) = CONSOLE.try_lock() {
                OWNER.store(me, Ordering::Relaxed);
                let r = f(&mut uart);
                OWNER.store(0, Ordering::Relaxed);
                return r;
            }
            let limit = if OWNER.load(Ordering::Relaxed) == me {
                LOCK_SPINS
            } else {
                OTHER_CPU_SPINS
            };
            let fatal = FATAL.load(Ordering::SeqCst);
            if fatal && FATAL_CPU.load(Ordering::SeqCst) != me {
                // Another CPU is reporting why the kernel dies: stay out
                // of its way (interrupts are off here) until QEMU exits.
                loop {
                    x86_64::instructions::hlt();
                }
            }
            if fatal || spins >= limit {
                // SAFETY: the holder is the context this one interrupted on
                // the same CPU (see above), a CPU that has not let go for
                // OTHER_CPU_SPINS, or the kernel is dying; the UART
                // tolerates interleaved bytes. No memory is protected by
                // this lock but the `Uart`, whose only state is its port
                // number, so two holders cannot corrupt anything.
                unsafe { CONSOLE.force_unlock() };
                // The holder may have been mid-burst: poll THRE first.
                if let Some(mut uart) = CONSOLE.try_lock() {
                    uart.room = 0;
                }
                spins = 0;
            }
            spins = spins.saturating_add(1);
            spin_loop();
        }
    })
}

/// Writes formatted text to the console, no prefix (for lines such as
/// `READY http://…` that tests match exactly).
pub fn print(args: fmt::Arguments<'_>) {
    with_console(|uart| {
        let _ = uart.write_fmt(args);
    });
}

/// Writes a fixed string, avoiding the formatting machinery (nested-fault
/// and nested-panic paths).
pub fn write_str_raw(s: &str) {
    with_console(|uart| {
        let _ = uart.write_str(s);
    });
}

/// `println!` to the serial console, without a log prefix.
#[macro_export]
macro_rules! serial_println {
    () => { $crate::arch::x86_64::serial::print(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::arch::x86_64::serial::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
