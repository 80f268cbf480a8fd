//! COM1 console: a minimal 16550 UART driver (115200 8N1, transmit only)
//! behind a lock that a fault or panic can break.
//!
//! Why not the `uart_16550` crate: its 0.9 API builds on stable, but its
//! transmit path can wait on modem-status CTS and its constructors run a
//! loopback self-test; a console that must still print from a double-fault
//! handler wants no waits it cannot bound. This is the 8250/16550 subset Linux's
//! earlyprintk uses (arch/x86/boot/early_serial_console.c).

use core::fmt::{self, Write};
use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, Ordering};

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
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status
const LSR_THRE: u8 = 1 << 5; // transmit holding register empty

/// A 16550 on x86 port I/O.
pub struct Uart {
    base: u16,
}

impl Uart {
    pub const fn new(base: u16) -> Self {
        Uart { base }
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
    }

    /// Sends one byte. Waits for THRE a bounded time: with no UART (or a
    /// stuck one) output is dropped rather than hanging the kernel.
    pub fn write_byte(&mut self, byte: u8) {
        for _ in 0..100_000 {
            if self.inb(LSR) & LSR_THRE != 0 {
                break;
            }
            spin_loop();
        }
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

/// How long a non-fatal writer spins before assuming the holder is the
/// context it interrupted (single CPU: it will not release until we return).
const LOCK_SPINS: u32 = 1 << 20;

/// Programs COM1. Call first thing in `kmain`.
pub fn init() {
    with_console(|uart| uart.init());
}

/// Marks the kernel as dying: every later console user breaks the lock.
/// Records the logger still holds for want of a clock are printed first.
pub fn enter_fatal() {
    FATAL.store(true, Ordering::SeqCst);
    crate::logger::flush_held();
}

/// Whether the kernel is dying ([`enter_fatal`]).
pub fn is_fatal() -> bool {
    FATAL.load(Ordering::Relaxed)
}

/// Runs `f` with the UART, interrupts off.
///
/// Interrupts are disabled while the lock is held, so on this single CPU a
/// held lock seen here means we interrupted its holder (an exception or NMI
/// raised while printing). Waiting would deadlock, so after a bounded spin
/// (at once on fatal paths) the lock is stolen; at worst two messages
/// interleave.
pub fn with_console<R>(f: impl FnOnce(&mut Uart) -> R) -> R {
    interrupts::without_interrupts(|| {
        let mut spins = 0u32;
        loop {
            if let Some(mut uart) = CONSOLE.try_lock() {
                return f(&mut uart);
            }
            if FATAL.load(Ordering::Relaxed) || spins >= LOCK_SPINS {
                // SAFETY: the holder is the context this one interrupted on
                // the same CPU (see above), or the kernel is dying; it cannot
                // run until we return, and the UART tolerates interleaved
                // bytes. No memory is protected by this lock but the `Uart`,
                // whose only state is its port number.
                unsafe { CONSOLE.force_unlock() };
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
