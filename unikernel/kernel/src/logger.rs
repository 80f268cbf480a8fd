//! `log` backend on the serial console: `[    1.234] [ INFO] message`, the
//! timestamp (seconds.milliseconds, like dmesg) only once
//! [`crate::time::set_clock`] has registered a clock. Messages from other
//! crates carry their target (`[ WARN] acpi: …`).

use core::fmt::{self, Write};

use log::{Level, LevelFilter, Log, Metadata, Record};
use net::api::dmesg::{LogLevel, LogRecord, LogRing};
use spin::Mutex;

use crate::arch::x86_64::serial;

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

/// How long a record waits for the ring (another CPU appending, or a
/// reader) before it goes to the console only.
const RING_SPINS: u32 = 1 << 20;

/// Appends a line to the ring, waiting a bounded time: another CPU holds
/// it only for one copy, but a record logged while this CPU holds it (an
/// exception inside a reader) would wait forever, so after [`RING_SPINS`]
/// it reaches the console only.
fn push(ms: u64, level: Level, line: &str) {
    let level = match level {
        Level::Error => LogLevel::Err,
        Level::Warn => LogLevel::Warning,
        Level::Info => LogLevel::Info,
        Level::Debug | Level::Trace => LogLevel::Debug,
    };
    x86_64::instructions::interrupts::without_interrupts(|| {
        for _ in 0..RING_SPINS {
            if let Some(mut ring) = RING.try_lock() {
                ring.push(ms * 1000, level, line);
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
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => " WARN",
            Level::Info => " INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        // Read the clock before taking the console: a clock that logs or
        // faults must not find the console held by us.
        let now = crate::time::now_ms();
        serial::with_console(|uart| {
            if let Some(ms) = now {
                let _ = write!(uart, "[{:5}.{:03}] ", ms / 1000, ms % 1000);
            }
            let _ = write!(uart, "[{level}] ");
            let target = record.target();
            if !target.starts_with(env!("CARGO_CRATE_NAME")) {
                let _ = write!(uart, "{target}: ");
            }
            let _ = writeln!(uart, "{}", record.args());
        });
        // The same record for the ring, formatted without the heap.
        let mut line = LineBuf::new();
        let target = record.target();
        if !target.starts_with(env!("CARGO_CRATE_NAME")) {
            let _ = write!(line, "{target}: ");
        }
        let _ = write!(line, "{}", record.args());
        push(now.unwrap_or(0), record.level(), line.as_str());
    }

    fn flush(&self) {}
}

/// Installs the logger at `Info`. A second call is harmless.
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

/// Applies `loglevel=error|warn|info|debug|trace|off` from the command line.
pub fn apply_cmdline(cmdline: &str) {
    for value in cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("loglevel="))
    {
        match value.parse::<LevelFilter>() {
            Ok(filter) => {
                log::set_max_level(filter);
                log::info!("log level set to {filter}");
            }
            Err(_) => {
                log::warn!("cmdline: unknown loglevel={value} (error|warn|info|debug|trace|off)")
            }
        }
    }
}

/// A fixed line buffer for console output that must not allocate (boot,
/// or while an allocator lock is held).
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
