//! `log` backend on the serial console: `[    1.234567] message` (other
//! levels than INFO tagged: `[ WARN] message`), the timestamp in
//! seconds.microseconds since kernel entry, as printk's.
//! Messages from other crates carry their target (`[ WARN] acpi: …`).
//!
//! As on Linux, the kernel log and the console are filtered apart: every
//! message down to INFO (DEBUG too at `loglevel=debug`) lands in the log
//! ring behind `/api/dmesg`, while the console prints only down to its own
//! level (cf. `console_loglevel`), set by `loglevel=`, `quiet` (errors
//! only) or `debug`. Under TCG each console byte costs about a
//! microsecond, so `quiet` is also the fast boot.
//!
//! The clock runs a few milliseconds into the boot ([`crate::time`]): what
//! is logged before is held here with its TSC reading and printed, with its
//! real timestamp, as soon as the clock runs — the way Linux keeps early
//! messages in its log buffer and replays them to a console that registers
//! later. A fatal path, a full holding area, or a clock that never comes
//! prints the held records at once, without a timestamp.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use log::{Level, LevelFilter, Log, Metadata, Record};
use net::api::dmesg::{LogLevel, LogRecord, LogRing};
use spin::Mutex;

use crate::arch::x86_64::serial;
use crate::time::ClockState;

/// Records the log ring keeps (about 110 KiB of `.bss`).
const LOG_RING_RECORDS: usize = 512;

/// The kernel log ring behind `/api/dmesg` (cf. printk's ring buffer):
/// every record that reaches the console lands here too.
static RING: Mutex<LogRing<LOG_RING_RECORDS>> = Mutex::new(LogRing::new());

/// The first record with `seq >= since`, copied out (`/api/dmesg`).
pub fn record(since: u64) -> Option<LogRecord> {
    x86_64::instructions::interrupts::without_interrupts(|| RING.lock().first_since(since))
}

/// The sequence number the ring gives its next record.
pub fn next_seq() -> u64 {
    x86_64::instructions::interrupts::without_interrupts(|| RING.lock().next_seq())
}

/// Records logged before the clock ran (the boot logs about 40).
const HELD_RECORDS: usize = 64;

/// A record waiting for the clock: TSC ticks since entry, level, text.
struct Held {
    ticks: u64,
    level: Level,
    line: LineBuf,
}

/// Records logged before the clock runs, oldest first.
struct HeldRecords {
    records: [Option<Held>; HELD_RECORDS],
    len: usize,
}

static HELD: Mutex<HeldRecords> = Mutex::new(HeldRecords {
    records: [const { None }; HELD_RECORDS],
    len: 0,
});

/// Prints and rings every held record: with its timestamp if the clock
/// runs, else without. Called with the console free.
fn release_held() {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let Some(mut held) = HELD.try_lock() else {
            return; // a fault while releasing: its own line goes first
        };
        let timed = crate::time::now_us().is_some();
        let len = held.len;
        for slot in &mut held.records[..len] {
            let Some(h) = slot.take() else { continue };
            let us = timed.then(|| crate::arch::x86_64::tsc::ticks_to_ns(h.ticks) / 1000);
            if on_console(h.level) {
                serial::with_console(|uart| write_line(uart, us, h.level, h.line.as_str()));
            }
            push(us.unwrap_or(0), h.level, h.line.as_str());
        }
        held.len = 0;
    });
}

/// Prints whatever is still held, untimed: for fatal paths, so an early
/// crash shows everything before its report.
pub fn flush_held() {
    release_held();
}

/// Holds a record until the clock runs; false if there is no room (then
/// the caller prints the held ones and this one untimed).
fn hold(level: Level, line: LineBuf) -> bool {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let Some(mut held) = HELD.try_lock() else {
            return false;
        };
        let n = held.len;
        if n >= HELD_RECORDS {
            return false;
        }
        held.records[n] = Some(Held {
            ticks: crate::arch::x86_64::tsc::ticks_since_boot(),
            level,
            line,
        });
        held.len = n + 1;
        true
    })
}

fn level_text(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => " WARN",
        Level::Info => " INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// One console line: `[    1.234567] text` for INFO, as Linux's console
/// prints it, `[    1.234567] [ WARN] text` for the other levels; no
/// timestamp if `us` is `None`. (Every byte costs: about 0.7 us under TCG.)
fn write_line(uart: &mut serial::Uart, us: Option<u64>, level: Level, text: &str) {
    if let Some(us) = us {
        let _ = write!(uart, "[{:5}.{:06}] ", us / 1_000_000, us % 1_000_000);
    }
    if level != Level::Info {
        let _ = write!(uart, "[{}] ", level_text(level));
    }
    let _ = writeln!(uart, "{text}");
}

/// How long a record waits for the ring (another CPU appending, or a
/// reader) before it goes to the console only.
const RING_SPINS: u32 = 1 << 20;

/// Appends a line to the ring, waiting a bounded time: another CPU holds
/// it only for one copy, but a record logged while this CPU holds it (an
/// exception inside a reader) would wait forever, so after [`RING_SPINS`]
/// it reaches the console only.
fn push(us: u64, level: Level, line: &str) {
    let level = match level {
        Level::Error => LogLevel::Err,
        Level::Warn => LogLevel::Warning,
        Level::Info => LogLevel::Info,
        Level::Debug | Level::Trace => LogLevel::Debug,
    };
    x86_64::instructions::interrupts::without_interrupts(|| {
        for _ in 0..RING_SPINS {
            if let Some(mut ring) = RING.try_lock() {
                ring.push(us, level, line);
                return;
            }
            core::hint::spin_loop();
        }
    });
}

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // virtio-drivers narrates feature negotiation at INFO: detail here.
        let level = match metadata.level() {
            Level::Info if metadata.target().starts_with("virtio_drivers") => Level::Debug,
            level => level,
        };
        level <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // The record, formatted without the heap.
        let mut line = LineBuf::new();
        let target = record.target();
        if !target.starts_with(env!("CARGO_CRATE_NAME")) {
            let _ = write!(line, "{target}: ");
        }
        let _ = write!(line, "{}", record.args());
        // Read the clock before taking the console: a clock that logs or
        // faults must not find the console held by us.
        let state = crate::time::clock_state();
        if state == ClockState::Pending && !serial::is_fatal() && hold(record.level(), line.clone())
        {
            return;
        }
        // Held records go out first, in order.
        release_held();
        let now = crate::time::now_us();
        if on_console(record.level()) {
            serial::with_console(|uart| write_line(uart, now, record.level(), line.as_str()));
        }
        push(now.unwrap_or(0), record.level(), line.as_str());
    }

    fn flush(&self) {}
}

/// The console's level (cf. `console_loglevel`), a `LevelFilter` as
/// `usize`; [`log::max_level`] is the ring's, never below INFO.
static CONSOLE_LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);

/// Whether a record of `level` is printed, not only kept in the ring. A
/// fatal path prints everything.
fn on_console(level: Level) -> bool {
    level as usize <= CONSOLE_LEVEL.load(Relaxed) || serial::is_fatal()
}

/// Installs the logger at `Info`. A second call is harmless.
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

/// Applies the command line's console level (`loglevel=`, `quiet`,
/// `debug`: [`mm::cmdline::BootParams::loglevel`]); the ring keeps INFO
/// and up whatever the console shows (cf. `console_loglevel` against
/// the log buffer, which stores every level).
pub fn apply_cmdline(level: Option<mm::cmdline::LogLevel>) {
    use mm::cmdline::LogLevel as L;
    let Some(level) = level else { return };
    let filter = match level {
        L::Off => LevelFilter::Off,
        L::Error => LevelFilter::Error,
        L::Warn => LevelFilter::Warn,
        L::Info => LevelFilter::Info,
        L::Debug => LevelFilter::Debug,
        L::Trace => LevelFilter::Trace,
    };
    CONSOLE_LEVEL.store(filter as usize, Relaxed);
    log::set_max_level(filter.max(LevelFilter::Info));
    log::info!("console log level {}", level.as_str());
}

/// A fixed line buffer for console output that must not allocate (boot,
/// or while an allocator lock is held).
#[derive(Clone)]
pub struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl LineBuf {
    pub const fn new() -> Self {
        LineBuf {
            buf: [0; 256],
            len: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_str(&self) -> &str {
        // Truncation in `write_str` may split a UTF-8 sequence: keep the
        // valid prefix.
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// `fmt::Write` onto the log at INFO, one record per line: lets the text
/// formatters of `mm` (procfs, selftest) print to the console without a heap.
#[derive(Default)]
pub struct LogWriter {
    line: Option<LineBuf>,
}

impl fmt::Write for LogWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, part) in s.split('\n').enumerate() {
            if i > 0
                && let Some(line) = self.line.take()
            {
                log::info!("{}", line.as_str());
            }
            if !part.is_empty() {
                self.line.get_or_insert_with(LineBuf::new).write_str(part)?;
            }
        }
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            log::info!("{}", line.as_str());
        }
    }
}
