//! The CMOS real-time clock (MC146818, ports 0x70/0x71): the one wall
//! clock a PC guest has. Read once, lazily, to turn uptime into a Unix
//! timestamp for `/metrics`' `pagezone_boot_time_seconds`.
//!
//! cf. Linux `mc146818_get_time()` (drivers/rtc/rtc-mc146818-lib.c):
//! wait out an update in progress, read every register, and read again
//! until two reads agree; BCD or binary per register B; the century from
//! the register ACPI's FADT names (0x32 on QEMU and most PCs), else
//! `year < 70` means 20xx. QEMU runs the RTC in UTC by default
//! (`-rtc base=utc`), so the result is UTC.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
/// Register A bit 7: an update is in progress (registers unstable).
const RTC_UIP: u8 = 0x80;
/// Register B bit 2: binary, not BCD. Bit 1: 24-hour mode.
const RTC_DM_BINARY: u8 = 0x04;
const RTC_24H: u8 = 0x02;
/// The century register (ACPI FADT `century`; QEMU puts it here).
const RTC_CENTURY: u8 = 0x32;

/// Reads CMOS register `reg`, NMI left enabled (bit 7 clear).
fn cmos_read(reg: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 are the PC's CMOS index and data ports;
    // selecting a register below 0x80 and reading it touches no memory
    // and has no side effect on the RTC (only register C's read clears
    // interrupt flags, and it is never read here).
    unsafe {
        Port::<u8>::new(CMOS_INDEX).write(reg & 0x7f);
        Port::<u8>::new(CMOS_DATA).read()
    }
}

/// `[sec, min, hour, mday, mon, year, century, reg B]`.
fn read_raw() -> [u8; 8] {
    [
        cmos_read(0x00),
        cmos_read(0x02),
        cmos_read(0x04),
        cmos_read(0x07),
        cmos_read(0x08),
        cmos_read(0x09),
        cmos_read(RTC_CENTURY),
        cmos_read(0x0b),
    ]
}

fn bcd(v: u8) -> u64 {
    u64::from(v >> 4) * 10 + u64::from(v & 0x0f)
}

/// Seconds since 1970-01-01 of a proleptic Gregorian date (cf.
/// `mktime64()`; days from Howard Hinnant's `days_from_civil`).
pub fn unix_time(year: u64, mon: u64, day: u64, hour: u64, min: u64, sec: u64) -> Option<u64> {
    if !(1..=12).contains(&mon) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let y = if mon <= 2 { year.checked_sub(1)? } else { year } as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = mon as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (hour * 3600 + min * 60 + sec) as i64;
    u64::try_from(secs).ok()
}

/// The RTC's time as Unix seconds (UTC), or `None` if it reads as
/// nonsense (no RTC).
pub fn read_unix_time() -> Option<u64> {
    let mut raw = [0u8; 8];
    let mut agreed = false;
    for _ in 0..16 {
        // An update takes under 2 ms and is flagged 244 µs ahead.
        let mut spins = 0;
        while cmos_read(0x0a) & RTC_UIP != 0 && spins < 100_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        let first = read_raw();
        raw = read_raw();
        if first == raw {
            agreed = true;
            break;
        }
    }
    if !agreed {
        return None;
    }
    let [sec, min, hour, mday, mon, year, century, reg_b] = raw;
    let conv = |v: u8| {
        if reg_b & RTC_DM_BINARY != 0 {
            u64::from(v)
        } else {
            bcd(v)
        }
    };
    let pm = reg_b & RTC_24H == 0 && hour & 0x80 != 0;
    let mut hour = conv(hour & 0x7f);
    if reg_b & RTC_24H == 0 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let century = conv(century);
    let year = conv(year);
    let year = if (19..=30).contains(&century) {
        century * 100 + year
    } else if year < 70 {
        2000 + year
    } else {
        1900 + year
    };
    unix_time(year, conv(mon), conv(mday), hour, conv(min), conv(sec))
}

/// Unix time of the boot: the RTC read once (the first time it is
/// asked), less the uptime at that moment; then the same answer for
/// good. `None` without a sane RTC.
pub fn boot_time_unix(uptime_ms: impl Fn() -> u64) -> Option<u64> {
    /// 0: not read yet; `u64::MAX`: no RTC.
    static BOOT_TIME: AtomicU64 = AtomicU64::new(0);
    let cached = BOOT_TIME.load(Ordering::Relaxed);
    if cached == u64::MAX {
        return None;
    }
    if cached != 0 {
        return Some(cached);
    }
    let value = read_unix_time()
        .and_then(|now| now.checked_sub(uptime_ms() / 1000))
        .filter(|&t| t > 0);
    BOOT_TIME.store(value.unwrap_or(u64::MAX), Ordering::Relaxed);
    value
}
