//! The kernel command line (QEMU `-append`, PVH `hvm_start_info.cmdline_paddr`).
//!
//! This module owns the *policy* of boot options: their names, syntax,
//! defaults and limits (API.md, "Kernel command line"). It borrows from the
//! command line instead of copying (no allocator exists yet when it runs) and
//! never fails: every unknown or malformed option is handed to a `report`
//! callback — the kernel prints it on the serial console — and ignored, so a
//! typo can never keep the machine from booting. The option keeps its
//! previous value (the default, or an earlier valid occurrence).
//!
//! Syntax follows Linux's `parse_args()`/`next_arg()` (kernel/params.c):
//! options are separated by whitespace, `name=value` or a bare `name`; a
//! value may be double-quoted to hold spaces (`token="a b"`); `-` and `_`
//! are interchangeable in names (cf. `parameq()`); a repeated option is
//! applied again, so the last valid occurrence wins (cf. `early_param`).
//! Sizes follow `memparse()`: decimal or `0x` hex with an optional `K`, `M`
//! or `G` suffix (either case); an overflow is malformed, not wrapped.

use core::fmt;

use crate::fault_inject::{FaultAttrError, FaultConfig};

pub mod virtio_mmio;

use virtio_mmio::{VirtioMmioDevices, VirtioMmioError};

/// Default `lowmem=`: RAM above 896 MiB is ZONE_HIGHMEM, as on i386 Linux.
pub const DEFAULT_LOWMEM: u64 = 896 << 20;
/// Default `vmalloc=`: the size of the vmalloc area.
pub const DEFAULT_VMALLOC_SIZE: u64 = 1 << 30;
/// Default `port=`: the HTTP API port inside the guest.
pub const DEFAULT_PORT: u16 = 80;
/// Default `api_quota=`: share of managed memory the HTTP API may hold.
pub const DEFAULT_API_QUOTA_PCT: u8 = 50;
/// The static configuration used when `ip=dhcp` (the default) gets no lease:
/// QEMU user networking's guest address and gateway.
pub const FALLBACK_STATIC_IP: IpConfig = IpConfig::Static {
    addr: [10, 0, 2, 15],
    prefix_len: 24,
    gateway: [10, 0, 2, 2],
};

/// Everything the command line can set; [`Default`] gives the values used
/// when an option is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootParams<'a> {
    /// `mem=`: ignore RAM above this physical size (kept as reserved boot
    /// memory). Not rounded here; the memblock layer aligns it.
    pub mem_limit: Option<u64>,
    /// `lowmem=`: end of the direct map; RAM above it is ZONE_HIGHMEM.
    pub lowmem: u64,
    /// `vmalloc=`: size in bytes of the vmalloc area.
    pub vmalloc_size: u64,
    /// `port=`: TCP port of the HTTP API.
    pub port: u16,
    /// `ip=`: DHCP or a static address.
    pub ip: IpConfig,
    /// `token=`: bearer token required by non-GET API requests.
    pub token: Option<&'a str>,
    /// `api_quota=`: percentage (1..=100) of managed memory the API may hold.
    pub api_quota_pct: u8,
    /// `selftest`: run the built-in self tests at boot and exit.
    pub selftest: bool,
    /// `pcp=off`: no per-CPU page lists, so every allocation and free of
    /// order 0–3 shows in the buddy lists at once (Pagezone's own switch;
    /// default on, as Linux has them).
    pub pcp: bool,
    /// `page_owner=on`: record who allocated every block
    /// (`/sys/kernel/debug/page_owner`; off by default, as in Linux: it
    /// costs 48 bytes of memblock per frame).
    pub page_owner: bool,
    /// `crash=`: deliberately fault after boot (tests the exception paths).
    pub crash: Option<CrashKind>,
    /// The console's verbosity (cf. `console_loglevel`): `loglevel=`,
    /// `quiet` (errors only, as Linux's `CONSOLE_LOGLEVEL_QUIET` lets
    /// through only `KERN_ERR` and worse) or `debug`, the last one given
    /// winning; `None` keeps the kernel's default (info). The kernel log
    /// (`/api/dmesg`) keeps every info message whatever the console shows.
    pub loglevel: Option<LogLevel>,
    /// `fail_page_alloc=<interval>,<probability>,<space>,<times>`: arm the
    /// buddy allocator's fault injection (cf. `setup_fail_page_alloc()`).
    pub fail_page_alloc: Option<FaultConfig>,
    /// `failslab=<interval>,<probability>,<space>,<times>`: arm the slab
    /// allocator's fault injection (cf. `setup_failslab()`).
    pub failslab: Option<FaultConfig>,
    /// `cma=SIZE[@BASE]`: a contiguous memory area (cf. `early_cma()`):
    /// its size in bytes and, if given, its physical base.
    pub cma: Option<(u64, Option<u64>)>,
    /// `virtio_mmio.device=<size>@<base>:<irq>[:<id>]`, once per device:
    /// the virtio-mmio transports of a machine without PCI (QEMU `microvm`,
    /// Firecracker), cf. `vm_cmdline_set()`.
    pub virtio_mmio: VirtioMmioDevices,
    /// `cpu_init_udelay=N`: microseconds between INIT and the first
    /// STARTUP IPI when starting the other CPUs; `None` lets the kernel
    /// choose (0 on modern CPUs, else 10 ms: cf. `smp_quirk_init_udelay()`).
    pub cpu_init_udelay: Option<u32>,
}

impl Default for BootParams<'_> {
    fn default() -> Self {
        BootParams {
            mem_limit: None,
            lowmem: DEFAULT_LOWMEM,
            vmalloc_size: DEFAULT_VMALLOC_SIZE,
            port: DEFAULT_PORT,
            ip: IpConfig::Dhcp,
            token: None,
            api_quota_pct: DEFAULT_API_QUOTA_PCT,
            selftest: false,
            pcp: true,
            page_owner: false,
            crash: None,
            loglevel: None,
            fail_page_alloc: None,
            failslab: None,
            cma: None,
            virtio_mmio: VirtioMmioDevices::default(),
            cpu_init_udelay: None,
        }
    }
}

/// `ip=`: how the NIC gets its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpConfig {
    /// Ask a DHCP server; fall back to [`FALLBACK_STATIC_IP`] without a lease.
    Dhcp,
    /// `ip=A.B.C.D/N,GW`.
    Static {
        addr: [u8; 4],
        prefix_len: u8,
        gateway: [u8; 4],
    },
}

/// `crash=`: which fault to provoke deliberately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashKind {
    /// `pagefault`: touch an unmapped address (#PF).
    PageFault,
    /// `ud`: execute `ud2` (#UD).
    InvalidOpcode,
    /// `gp`: load a non-canonical address (#GP).
    GeneralProtection,
    /// `panic`: call `panic!`.
    Panic,
    /// `doublefault`: overflow onto an unmapped stack (#DF on its IST stack).
    DoubleFault,
    /// `int3`: a breakpoint the kernel survives (checks the return path).
    Breakpoint,
    /// `vmalloc-overrun`: write one byte past a 4 KiB vmalloc area, into
    /// its guard page (#PF naming the area).
    VmallocOverrun,
}

impl CrashKind {
    /// The command-line spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            CrashKind::PageFault => "pagefault",
            CrashKind::InvalidOpcode => "ud",
            CrashKind::GeneralProtection => "gp",
            CrashKind::Panic => "panic",
            CrashKind::DoubleFault => "doublefault",
            CrashKind::Breakpoint => "int3",
            CrashKind::VmallocOverrun => "vmalloc-overrun",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        [
            CrashKind::PageFault,
            CrashKind::InvalidOpcode,
            CrashKind::GeneralProtection,
            CrashKind::Panic,
            CrashKind::DoubleFault,
            CrashKind::Breakpoint,
            CrashKind::VmallocOverrun,
        ]
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

/// `loglevel=`: the most verbose level printed on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing but the kernel's own fatal reports.
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The command-line spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        [
            LogLevel::Off,
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ]
        .into_iter()
        .find(|l| l.as_str().eq_ignore_ascii_case(s))
    }
}

/// Why a SIZE did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeError {
    /// Nothing at all.
    Empty,
    /// No digits where the number should start (`K`, `0x`, `-1`).
    NoDigits,
    /// Something other than one `K`/`M`/`G` after the digits (`12Q`, `1KB`).
    BadSuffix,
    /// The value does not fit in 64 bits.
    Overflow,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SizeError::Empty => "empty size",
            SizeError::NoDigits => "size has no digits",
            SizeError::BadSuffix => "bad size suffix",
            SizeError::Overflow => "size overflows 64 bits",
        })
    }
}

/// Parse a SIZE: decimal or `0x` hex, optional `K`/`M`/`G` (binary, either
/// case) suffix. cf. `memparse()`, but strict: trailing garbage and overflow
/// are errors rather than silently truncated.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let (digits_and_suffix, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(rest) => (rest, 16),
        None => (s, 10),
    };
    let digits_end = digits_and_suffix
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits_and_suffix.len());
    let (digits, suffix) = digits_and_suffix.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::NoDigits);
    }
    let shift = match suffix {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        _ => return Err(SizeError::BadSuffix),
    };
    // Every character of `digits` is a valid digit, so the only possible
    // error is overflow.
    let value = u64::from_str_radix(digits, radix).map_err(|_| SizeError::Overflow)?;
    value.checked_mul(1u64 << shift).ok_or(SizeError::Overflow)
}

/// What was wrong with a reported option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The option name is not one we know.
    Unknown,
    /// A SIZE value did not parse.
    Size(SizeError),
    /// A value is required (`mem` alone, `port=`).
    MissingValue,
    /// A flag was given a value that is not a boolean (`selftest=maybe`).
    NotBoolean,
    /// Not a decimal number (`port=http`).
    NotANumber,
    /// A number outside the allowed inclusive range.
    OutOfRange { min: u64, max: u64 },
    /// A value outside a fixed set (`crash=`, `loglevel=`); lists the set.
    NotOneOf(&'static str),
    /// `ip=` did not parse; says which part.
    BadIp(&'static str),
    /// `fail_page_alloc=` / `failslab=` did not parse; says why.
    FaultAttr(FaultAttrError),
    /// `virtio_mmio.device=` did not parse, or one too many; says why.
    VirtioMmio(VirtioMmioError),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unknown => f.write_str("unknown option"),
            Problem::Size(e) => e.fmt(f),
            Problem::MissingValue => f.write_str("missing value"),
            Problem::NotBoolean => f.write_str("expected a boolean (1/0, y/n, on/off) or no value"),
            Problem::NotANumber => f.write_str("not a decimal number"),
            Problem::OutOfRange { min, max } => {
                write!(f, "out of range (expected {min}..={max})")
            }
            Problem::NotOneOf(set) => write!(f, "expected one of {set}"),
            Problem::BadIp(why) => write!(f, "expected dhcp or A.B.C.D/N,GW: {why}"),
            Problem::FaultAttr(FaultAttrError::NotFourFields) => {
                f.write_str("expected <interval>,<probability>,<space>,<times>")
            }
            Problem::FaultAttr(e) => {
                write!(f, "expected <interval>,<probability>,<space>,<times>: {e}")
            }
            Problem::VirtioMmio(e) => write!(f, "expected <size>@<base>:<irq>[:<id>]: {e}"),
        }
    }
}

/// One ignored option, as handed to the `report` callback of [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdlineWarning<'a> {
    /// The option exactly as written on the command line (`mem=12Q`).
    pub option: &'a str,
    pub problem: Problem,
}

impl fmt::Display for CmdlineWarning<'_> {
    /// `ignoring unknown option "foo=1"` or
    /// `ignoring malformed option "mem=12Q": bad size suffix`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problem {
            Problem::Unknown => write!(f, "ignoring unknown option \"{}\"", self.option),
            problem => write!(
                f,
                "ignoring malformed option \"{}\": {problem}",
                self.option
            ),
        }
    }
}

/// Parse the whole command line. Never fails: each unknown or malformed
/// option is passed to `report` and ignored, leaving the previous value.
pub fn parse<'a>(cmdline: &'a str, mut report: impl FnMut(CmdlineWarning<'a>)) -> BootParams<'a> {
    let mut params = BootParams::default();
    for option in Options(cmdline) {
        if let Err(problem) = apply(&mut params, option) {
            report(CmdlineWarning { option, problem });
        }
    }
    params
}

/// Iterator over whitespace-separated options, keeping `"…"` together
/// (cf. `next_arg()`).
struct Options<'a>(&'a str);

impl<'a> Iterator for Options<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.0.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if rest.is_empty() {
            self.0 = rest;
            return None;
        }
        let mut in_quote = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quote = !in_quote;
                }
                !in_quote && c.is_ascii_whitespace()
            })
            .map_or(rest.len(), |(i, _)| i);
        let (option, tail) = rest.split_at(end);
        self.0 = tail;
        Some(option)
    }
}

/// Linux's `parameq()`: `-` and `_` are the same in option names.
fn name_is(name: &str, want: &str) -> bool {
    name.len() == want.len()
        && name
            .bytes()
            .zip(want.bytes())
            .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
}

/// Strip one pair of surrounding double quotes (`token="a b"`).
fn unquote(value: &str) -> &str {
    let value = value.strip_prefix('"').unwrap_or(value);
    value.strip_suffix('"').unwrap_or(value)
}

fn apply<'a>(params: &mut BootParams<'a>, option: &'a str) -> Result<(), Problem> {
    let (name, value) = match option.split_once('=') {
        Some((name, value)) => (name, Some(unquote(value))),
        None => (option, None),
    };
    let name = unquote(name);
    let need = |v: Option<&'a str>| v.ok_or(Problem::MissingValue);
    let size = |v: Option<&'a str>| -> Result<u64, Problem> {
        let bytes = parse_size(need(v)?).map_err(Problem::Size)?;
        if bytes == 0 {
            return Err(Problem::OutOfRange {
                min: 1,
                max: u64::MAX,
            });
        }
        Ok(bytes)
    };

    if name_is(name, "mem") {
        params.mem_limit = Some(size(value)?);
    } else if name_is(name, "lowmem") {
        params.lowmem = size(value)?;
    } else if name_is(name, "cma") {
        let v = need(value)?;
        let (sz, base) = match v.split_once('@') {
            Some((sz, base)) => (sz, Some(parse_size(base).map_err(Problem::Size)?)),
            None => (v, None),
        };
        params.cma = Some((size(Some(sz))?, base));
    } else if name_is(name, "vmalloc") {
        params.vmalloc_size = size(value)?;
    } else if name_is(name, "port") {
        params.port = parse_decimal(need(value)?, 1, u16::MAX.into())? as u16;
    } else if name_is(name, "ip") {
        params.ip = parse_ip(need(value)?)?;
    } else if name_is(name, "token") {
        let token = need(value)?;
        if token.is_empty() {
            return Err(Problem::MissingValue);
        }
        params.token = Some(token);
    } else if name_is(name, "api_quota") {
        params.api_quota_pct = parse_decimal(need(value)?, 1, 100)? as u8;
    } else if name_is(name, "selftest") {
        params.selftest = parse_flag(value)?;
    } else if name_is(name, "pcp") {
        params.pcp = parse_flag(value)?;
    } else if name_is(name, "page_owner") {
        params.page_owner = parse_flag(value)?;
    } else if name_is(name, "crash") {
        params.crash = Some(CrashKind::from_name(need(value)?).ok_or(Problem::NotOneOf(
            "pagefault|ud|gp|panic|doublefault|int3|vmalloc-overrun",
        ))?);
    } else if name_is(name, "fail_page_alloc") {
        params.fail_page_alloc =
            Some(FaultConfig::parse(need(value)?).map_err(Problem::FaultAttr)?);
    } else if name_is(name, "failslab") {
        params.failslab = Some(FaultConfig::parse(need(value)?).map_err(Problem::FaultAttr)?);
    } else if name_is(name, "virtio_mmio.device") {
        let device = virtio_mmio::parse_device(need(value)?).map_err(Problem::VirtioMmio)?;
        params
            .virtio_mmio
            .push(device)
            .map_err(Problem::VirtioMmio)?;
    } else if name_is(name, "cpu_init_udelay") {
        params.cpu_init_udelay = Some(parse_decimal(need(value)?, 0, 1_000_000)? as u32);
    } else if name_is(name, "loglevel") {
        params.loglevel = Some(
            LogLevel::from_name(need(value)?)
                .ok_or(Problem::NotOneOf("off|error|warn|info|debug|trace"))?,
        );
    } else if name_is(name, "quiet") && value.is_none() {
        // cf. quiet_kernel(): console_loglevel = CONSOLE_LOGLEVEL_QUIET.
        params.loglevel = Some(LogLevel::Error);
    } else if name_is(name, "debug") && value.is_none() {
        // cf. debug_kernel(): console_loglevel = CONSOLE_LOGLEVEL_DEBUG.
        params.loglevel = Some(LogLevel::Debug);
    } else {
        return Err(Problem::Unknown);
    }
    Ok(())
}

/// A bare flag is true; a value follows `kstrtobool()`.
fn parse_flag(value: Option<&str>) -> Result<bool, Problem> {
    const TRUE: [&str; 4] = ["1", "y", "on", "yes"];
    const FALSE: [&str; 4] = ["0", "n", "off", "no"];
    match value {
        None => Ok(true),
        Some(v) if TRUE.iter().any(|t| t.eq_ignore_ascii_case(v)) => Ok(true),
        Some(v) if FALSE.iter().any(|t| t.eq_ignore_ascii_case(v)) => Ok(false),
        Some(_) => Err(Problem::NotBoolean),
    }
}

/// Plain decimal digits (no sign, no suffix) within `min..=max`.
fn parse_decimal(s: &str, min: u64, max: u64) -> Result<u64, Problem> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::NotANumber);
    }
    match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Problem::OutOfRange { min, max }),
    }
}

/// `dhcp` or `A.B.C.D/N,GW`, with the gateway inside the subnet (otherwise
/// no packet could ever leave it).
fn parse_ip(s: &str) -> Result<IpConfig, Problem> {
    if s.eq_ignore_ascii_case("dhcp") {
        return Ok(IpConfig::Dhcp);
    }
    let (cidr, gateway) = s.split_once(',').ok_or(Problem::BadIp("missing ,GW"))?;
    let (addr, prefix) = cidr.split_once('/').ok_or(Problem::BadIp("missing /N"))?;
    let addr = parse_ipv4(addr).ok_or(Problem::BadIp("bad address"))?;
    let gateway = parse_ipv4(gateway).ok_or(Problem::BadIp("bad gateway"))?;
    let prefix_len = match parse_decimal(prefix, 1, 32) {
        Ok(n) => n as u8,
        Err(_) => return Err(Problem::BadIp("prefix length must be 1..=32")),
    };
    let mask = u32::MAX << (32 - u32::from(prefix_len));
    let (a, g) = (u32::from_be_bytes(addr), u32::from_be_bytes(gateway));
    if a & mask != g & mask || a == g {
        return Err(Problem::BadIp("gateway not in the subnet"));
    }
    Ok(IpConfig::Static {
        addr,
        prefix_len,
        gateway,
    })
}

/// Dotted quad, each part 1 to 3 decimal digits, 0..=255.
fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut out {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// Parse and collect the warnings as their Display strings.
    fn parse_all(cmdline: &str) -> (BootParams<'_>, Vec<String>) {
        let mut warnings = Vec::new();
        let params = parse(cmdline, |w| warnings.push(w.to_string()));
        (params, warnings)
    }

    fn parse_ok(cmdline: &str) -> BootParams<'_> {
        let (params, warnings) = parse_all(cmdline);
        assert!(warnings.is_empty(), "{cmdline:?}: {warnings:?}");
        params
    }

    /// Parse `cmdline`, which must produce exactly one warning, and return it.
    fn one_warning(cmdline: &str) -> (BootParams<'_>, String) {
        let (params, mut warnings) = parse_all(cmdline);
        assert_eq!(warnings.len(), 1, "{cmdline:?}: {warnings:?}");
        (params, warnings.remove(0))
    }

    #[test]
    fn virtio_mmio_devices_accumulate_and_bad_ones_are_reported() {
        use virtio_mmio::VirtioMmioDevice;
        // QEMU microvm's appended form, twice, plus our own options.
        let p = parse_ok(
            "loglevel=info virtio_mmio.device=512@0xfeb00000:5 virtio-mmio.device=4K@0xfeb00200:6:1",
        );
        assert_eq!(
            p.virtio_mmio.as_slice(),
            &[
                VirtioMmioDevice {
                    base: 0xfeb0_0000,
                    size: 512,
                    irq: 5,
                    id: None
                },
                VirtioMmioDevice {
                    base: 0xfeb0_0200,
                    size: 4096,
                    irq: 6,
                    id: Some(1)
                },
            ]
        );
        // A bad entry is reported and skipped; the good ones stay.
        let (p, w) =
            one_warning("virtio_mmio.device=512@0xfeb00000:5 virtio_mmio.device=512@0xfeb00200:0");
        assert_eq!(
            w,
            "ignoring malformed option \"virtio_mmio.device=512@0xfeb00200:0\": expected <size>@<base>:<irq>[:<id>]: irq must be a non-zero decimal number"
        );
        assert_eq!(p.virtio_mmio.as_slice().len(), 1);
        let (p, w) = one_warning("virtio_mmio.device");
        assert_eq!(
            w,
            "ignoring malformed option \"virtio_mmio.device\": missing value"
        );
        assert!(p.virtio_mmio.as_slice().is_empty());
        // The ninth is one too many.
        let nine: String = (0..9u64)
            .map(|i| {
                format!(
                    "virtio_mmio.device=512@{:#x}:{} ",
                    0xfeb0_0000 + 512 * i,
                    5 + i
                )
            })
            .collect();
        let (p, w) = one_warning(&nine);
        assert!(w.ends_with("more than 8 devices"), "{w}");
        assert_eq!(p.virtio_mmio.as_slice().len(), 8);
        assert_eq!(p.virtio_mmio.as_slice()[7].irq, 12);
    }

    #[test]
    fn cpu_init_udelay_takes_microseconds() {
        assert_eq!(parse_ok("").cpu_init_udelay, None);
        assert_eq!(parse_ok("cpu_init_udelay=0").cpu_init_udelay, Some(0));
        assert_eq!(
            parse_ok("cpu-init-udelay=10000").cpu_init_udelay,
            Some(10_000)
        );
        let (p, w) = one_warning("cpu_init_udelay=10ms");
        assert_eq!(p.cpu_init_udelay, None);
        assert!(w.contains("cpu_init_udelay=10ms"), "{w}");
        let (_, w) = one_warning("cpu_init_udelay=1000001");
        assert!(w.contains("1000000"), "{w}");
    }

    #[test]
    fn size_decimal_hex_and_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("0XfF"), Ok(255));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("896M"), Ok(896 << 20));
        assert_eq!(parse_size("896m"), Ok(896 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("0x10M"), Ok(16 << 20));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size("0xffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(parse_size("17179869183G"), Ok(17179869183 << 30));
    }

    #[test]
    fn size_errors() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("K"), Err(SizeError::NoDigits));
        assert_eq!(parse_size("0x"), Err(SizeError::NoDigits));
        assert_eq!(parse_size("0xG"), Err(SizeError::NoDigits));
        assert_eq!(parse_size("-1"), Err(SizeError::NoDigits));
        assert_eq!(parse_size("+1"), Err(SizeError::NoDigits));
        assert_eq!(parse_size(" 1"), Err(SizeError::NoDigits));
        assert_eq!(parse_size("12Q"), Err(SizeError::BadSuffix));
        assert_eq!(parse_size("1KB"), Err(SizeError::BadSuffix));
        assert_eq!(parse_size("1MiB"), Err(SizeError::BadSuffix));
        assert_eq!(parse_size("1T"), Err(SizeError::BadSuffix));
        assert_eq!(parse_size("1 M"), Err(SizeError::BadSuffix));
        assert_eq!(parse_size("1.5G"), Err(SizeError::BadSuffix));
        assert_eq!(parse_size("0x1g0"), Err(SizeError::BadSuffix));
        assert_eq!(parse_size("ff"), Err(SizeError::NoDigits));
        assert_eq!(parse_size("18446744073709551616"), Err(SizeError::Overflow));
        assert_eq!(parse_size("0x10000000000000000"), Err(SizeError::Overflow));
        assert_eq!(parse_size("17179869184G"), Err(SizeError::Overflow));
        assert_eq!(parse_size("18014398509481984K"), Err(SizeError::Overflow));
        assert_eq!(
            parse_size("99999999999999999999999999M"),
            Err(SizeError::Overflow)
        );
    }

    #[test]
    fn empty_cmdline_gives_defaults() {
        for cmdline in ["", " ", "\t \n  "] {
            let params = parse_ok(cmdline);
            assert_eq!(params, BootParams::default());
        }
        let d = BootParams::default();
        assert_eq!(d.mem_limit, None);
        assert_eq!(d.lowmem, 896 * 1024 * 1024);
        assert_eq!(d.vmalloc_size, 1024 * 1024 * 1024);
        assert_eq!(d.port, 80);
        assert_eq!(d.ip, IpConfig::Dhcp);
        assert_eq!(d.token, None);
        assert_eq!(d.api_quota_pct, 50);
        assert!(!d.selftest);
        assert!(d.pcp);
        assert_eq!(d.crash, None);
        assert_eq!(d.loglevel, None);
        assert_eq!(d.fail_page_alloc, None);
        assert_eq!(d.failslab, None);
    }

    #[test]
    fn fault_injection_options() {
        let p = parse_ok("fail_page_alloc=3,100,8192,-1 failslab=1,10,0,5");
        assert_eq!(
            p.fail_page_alloc,
            Some(FaultConfig {
                interval: 3,
                probability: 100,
                space: 8192,
                times: -1,
            })
        );
        assert_eq!(
            p.failslab,
            Some(FaultConfig {
                interval: 1,
                probability: 10,
                space: 0,
                times: 5,
            })
        );
        // Linux spells it with '-' too (parameq()).
        assert!(
            parse_ok("fail-page-alloc=1,1,0,1")
                .fail_page_alloc
                .is_some()
        );
        let form = "expected <interval>,<probability>,<space>,<times>";
        let cases = [
            ("fail_page_alloc", "missing value".to_string()),
            ("fail_page_alloc=", form.to_string()),
            ("fail_page_alloc=1,100,0", form.to_string()),
            ("fail_page_alloc=1,100,0,1,2", form.to_string()),
            (
                "fail_page_alloc=0,100,0,1",
                std::format!("{form}: interval: out of range (expected 1..=9223372036854775807)"),
            ),
            (
                "failslab=1,101,0,1",
                std::format!("{form}: probability: out of range (expected 0..=100)"),
            ),
            (
                "failslab=1,50,-1,1",
                std::format!("{form}: space: out of range (expected 0..=9223372036854775807)"),
            ),
            (
                "failslab=1,50,0,-2",
                std::format!("{form}: times: out of range (expected -1..=9223372036854775807)"),
            ),
            (
                "failslab=1,5O,0,1",
                std::format!("{form}: probability: not a decimal integer"),
            ),
        ];
        for (line, why) in cases {
            let (p, w) = one_warning(line);
            assert_eq!(p, BootParams::default(), "{line}");
            assert_eq!(
                w,
                std::format!("ignoring malformed option \"{line}\": {why}")
            );
        }
        // A bad repeat keeps the earlier valid value.
        let (p, _) = parse_all("failslab=2,50,0,-1 failslab=2,500,0,-1");
        assert_eq!(p.failslab.map(|c| c.probability), Some(50));
    }

    #[test]
    fn every_option() {
        let p = parse_ok(
            "mem=1536M lowmem=0x20000000 vmalloc=256m port=8080 \
             ip=192.168.1.7/16,192.168.0.1 token=s3cr3t api_quota=75 selftest \
             crash=gp loglevel=debug pcp=off page_owner=on cpu_init_udelay=300",
        );
        assert_eq!(
            p,
            BootParams {
                mem_limit: Some(1536 << 20),
                lowmem: 512 << 20,
                vmalloc_size: 256 << 20,
                port: 8080,
                ip: IpConfig::Static {
                    addr: [192, 168, 1, 7],
                    prefix_len: 16,
                    gateway: [192, 168, 0, 1],
                },
                token: Some("s3cr3t"),
                api_quota_pct: 75,
                selftest: true,
                pcp: false,
                page_owner: true,
                crash: Some(CrashKind::GeneralProtection),
                loglevel: Some(LogLevel::Debug),
                fail_page_alloc: None,
                failslab: None,
                cma: None,
                virtio_mmio: virtio_mmio::VirtioMmioDevices::default(),
                cpu_init_udelay: Some(300),
            }
        );
        assert_eq!(parse_ok("cma=64M").cma, Some((64 << 20, None)));
        assert_eq!(
            parse_ok("cma=16M@0x2000000").cma,
            Some((16 << 20, Some(0x200_0000)))
        );
    }

    #[test]
    fn each_crash_kind_and_loglevel() {
        for kind in [
            CrashKind::PageFault,
            CrashKind::InvalidOpcode,
            CrashKind::GeneralProtection,
            CrashKind::Panic,
        ] {
            let line = std::format!("crash={}", kind.as_str());
            assert_eq!(parse_ok(&line).crash, Some(kind));
        }
        assert_eq!(
            parse_ok("crash=PageFault").crash,
            Some(CrashKind::PageFault)
        );
        for level in [
            LogLevel::Off,
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ] {
            let line = std::format!("loglevel={}", level.as_str());
            assert_eq!(parse_ok(&line).loglevel, Some(level));
        }
        assert_eq!(parse_ok("loglevel=TRACE").loglevel, Some(LogLevel::Trace));
        assert!(LogLevel::Error < LogLevel::Trace);
    }

    #[test]
    fn ip_dhcp_and_static() {
        assert_eq!(parse_ok("ip=dhcp").ip, IpConfig::Dhcp);
        assert_eq!(parse_ok("ip=DHCP").ip, IpConfig::Dhcp);
        assert_eq!(parse_ok("ip=10.0.2.15/24,10.0.2.2").ip, FALLBACK_STATIC_IP);
        assert_eq!(
            parse_ok("ip=10.1.2.3/8,10.255.255.254").ip,
            IpConfig::Static {
                addr: [10, 1, 2, 3],
                prefix_len: 8,
                gateway: [10, 255, 255, 254],
            }
        );
        // A static line overrides an earlier dhcp and vice versa.
        assert_eq!(
            parse_ok("ip=10.0.2.15/24,10.0.2.2 ip=dhcp").ip,
            IpConfig::Dhcp
        );
    }

    #[test]
    fn ip_malformed() {
        let cases = [
            ("ip=", "missing ,GW"),
            ("ip=static", "missing ,GW"),
            ("ip=10.0.2.15", "missing ,GW"),
            ("ip=10.0.2.15,10.0.2.2", "missing /N"),
            ("ip=10.0.2.15/24", "missing ,GW"),
            ("ip=10.0.2/24,10.0.2.2", "bad address"),
            ("ip=10.0.2.15.1/24,10.0.2.2", "bad address"),
            ("ip=10.0.2.256/24,10.0.2.2", "bad address"),
            ("ip=10.0..15/24,10.0.2.2", "bad address"),
            ("ip=10.0.2.0015/24,10.0.2.2", "bad address"),
            ("ip=10.0.2.+1/24,10.0.2.2", "bad address"),
            ("ip=10.0.2.15/24,10.0.2", "bad gateway"),
            ("ip=10.0.2.15/24,", "bad gateway"),
            ("ip=10.0.2.15/0,10.0.2.2", "prefix length must be 1..=32"),
            ("ip=10.0.2.15/33,10.0.2.2", "prefix length must be 1..=32"),
            ("ip=10.0.2.15/,10.0.2.2", "prefix length must be 1..=32"),
            ("ip=10.0.2.15/x,10.0.2.2", "prefix length must be 1..=32"),
            ("ip=10.0.2.15/24,10.0.3.2", "gateway not in the subnet"),
            ("ip=10.0.2.15/24,10.0.2.15", "gateway not in the subnet"),
            ("ip=10.0.2.15/32,10.0.2.2", "gateway not in the subnet"),
        ];
        for (line, why) in cases {
            let (p, w) = one_warning(line);
            assert_eq!(p.ip, IpConfig::Dhcp, "{line}");
            assert_eq!(
                w,
                std::format!(
                    "ignoring malformed option \"{line}\": expected dhcp or A.B.C.D/N,GW: {why}"
                )
            );
        }
        assert_eq!(
            one_warning("ip").1,
            "ignoring malformed option \"ip\": missing value"
        );
    }

    #[test]
    fn malformed_sizes_keep_defaults() {
        let (p, w) = one_warning("mem=12Q");
        assert_eq!(p.mem_limit, None);
        assert_eq!(w, "ignoring malformed option \"mem=12Q\": bad size suffix");

        let (p, w) = one_warning("lowmem=");
        assert_eq!(p.lowmem, DEFAULT_LOWMEM);
        assert_eq!(w, "ignoring malformed option \"lowmem=\": empty size");

        let (p, w) = one_warning("vmalloc=99999999999G");
        assert_eq!(p.vmalloc_size, DEFAULT_VMALLOC_SIZE);
        assert_eq!(
            w,
            "ignoring malformed option \"vmalloc=99999999999G\": size overflows 64 bits"
        );

        let (_, w) = one_warning("mem=G");
        assert_eq!(w, "ignoring malformed option \"mem=G\": size has no digits");

        let (p, w) = one_warning("mem");
        assert_eq!(p.mem_limit, None);
        assert_eq!(w, "ignoring malformed option \"mem\": missing value");

        for zero in ["mem=0", "lowmem=0", "vmalloc=0x0", "mem=0G"] {
            let (p, w) = one_warning(zero);
            assert_eq!(p, BootParams::default());
            assert!(
                w.ends_with(": out of range (expected 1..=18446744073709551615)"),
                "{w}"
            );
        }
    }

    #[test]
    fn malformed_port_and_quota() {
        let cases = [
            ("port=0", "out of range (expected 1..=65535)"),
            ("port=65536", "out of range (expected 1..=65535)"),
            (
                "port=99999999999999999999999",
                "out of range (expected 1..=65535)",
            ),
            ("port=http", "not a decimal number"),
            ("port=-1", "not a decimal number"),
            ("port=0x50", "not a decimal number"),
            ("port=", "not a decimal number"),
            ("port", "missing value"),
            ("api_quota=0", "out of range (expected 1..=100)"),
            ("api_quota=101", "out of range (expected 1..=100)"),
            ("api_quota=50%", "not a decimal number"),
            ("api_quota=", "not a decimal number"),
        ];
        for (line, why) in cases {
            let (p, w) = one_warning(line);
            assert_eq!(p, BootParams::default(), "{line}");
            assert_eq!(
                w,
                std::format!("ignoring malformed option \"{line}\": {why}")
            );
        }
        assert_eq!(parse_ok("port=1").port, 1);
        assert_eq!(parse_ok("port=65535").port, 65535);
        assert_eq!(parse_ok("api_quota=1").api_quota_pct, 1);
        assert_eq!(parse_ok("api_quota=100").api_quota_pct, 100);
        assert_eq!(parse_ok("api_quota=007").api_quota_pct, 7);
    }

    #[test]
    fn malformed_choices_flags_and_token() {
        let cases = [
            (
                "crash=oops",
                "expected one of pagefault|ud|gp|panic|doublefault|int3|vmalloc-overrun",
            ),
            (
                "crash=",
                "expected one of pagefault|ud|gp|panic|doublefault|int3|vmalloc-overrun",
            ),
            ("crash", "missing value"),
            (
                "loglevel=7",
                "expected one of off|error|warn|info|debug|trace",
            ),
            ("loglevel", "missing value"),
            (
                "selftest=maybe",
                "expected a boolean (1/0, y/n, on/off) or no value",
            ),
            (
                "selftest=",
                "expected a boolean (1/0, y/n, on/off) or no value",
            ),
            ("token=", "missing value"),
            ("token", "missing value"),
            ("token=\"\"", "missing value"),
        ];
        for (line, why) in cases {
            let (p, w) = one_warning(line);
            assert_eq!(p, BootParams::default(), "{line}");
            assert_eq!(
                w,
                std::format!("ignoring malformed option \"{line}\": {why}")
            );
        }
    }

    #[test]
    fn selftest_flag_values() {
        for on in [
            "selftest",
            "selftest=1",
            "selftest=y",
            "selftest=Y",
            "selftest=on",
            "selftest=yes",
        ] {
            assert!(parse_ok(on).selftest, "{on}");
        }
        for off in [
            "selftest=0",
            "selftest=n",
            "selftest=off",
            "selftest=NO",
            "selftest selftest=0",
        ] {
            assert!(!parse_ok(off).selftest, "{off}");
        }
    }

    #[test]
    fn unknown_options_are_reported_and_ignored() {
        let (p, w) = parse_all("console=ttyS0 mem=1G splash =5 memory=2G");
        assert_eq!(p.mem_limit, Some(1 << 30));
        assert_eq!(
            w,
            [
                "ignoring unknown option \"console=ttyS0\"",
                "ignoring unknown option \"splash\"",
                "ignoring unknown option \"=5\"",
                "ignoring unknown option \"memory=2G\"",
            ]
        );
        // Names are case-sensitive, like Linux.
        assert_eq!(
            one_warning("MEM=1G").1,
            "ignoring unknown option \"MEM=1G\""
        );
    }

    #[test]
    fn warning_fields_borrow_the_cmdline() {
        let cmdline = String::from("port=8080 port=x");
        let mut seen = Vec::new();
        let p = parse(&cmdline, |w| seen.push(w));
        assert_eq!(p.port, 8080);
        assert_eq!(
            seen,
            [CmdlineWarning {
                option: "port=x",
                problem: Problem::NotANumber
            }]
        );
    }

    #[test]
    fn duplicates_last_valid_wins() {
        let p = parse_ok("mem=1G mem=2G port=81 port=82 token=a token=b api_quota=10 api_quota=20");
        assert_eq!(p.mem_limit, Some(2 << 30));
        assert_eq!(p.port, 82);
        assert_eq!(p.token, Some("b"));
        assert_eq!(p.api_quota_pct, 20);
        assert_eq!(
            parse_ok("crash=ud crash=panic").crash,
            Some(CrashKind::Panic)
        );
        assert_eq!(
            parse_ok("loglevel=warn loglevel=info").loglevel,
            Some(LogLevel::Info)
        );
        // `quiet`, `debug` and `loglevel=` set the same thing: the last wins.
        assert_eq!(parse_ok("quiet").loglevel, Some(LogLevel::Error));
        assert_eq!(parse_ok("debug").loglevel, Some(LogLevel::Debug));
        assert_eq!(
            parse_ok("quiet loglevel=warn").loglevel,
            Some(LogLevel::Warn)
        );
        assert_eq!(
            parse_ok("loglevel=debug quiet").loglevel,
            Some(LogLevel::Error)
        );
        // A malformed later occurrence is ignored: the earlier value stays.
        let (p, w) = parse_all("mem=1G mem=bad port=81 port=0");
        assert_eq!(p.mem_limit, Some(1 << 30));
        assert_eq!(p.port, 81);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn whitespace_and_quotes() {
        let p = parse_ok("  \tmem=64M\n\n  port=81   selftest  ");
        assert_eq!(p.mem_limit, Some(64 << 20));
        assert_eq!(p.port, 81);
        assert!(p.selftest);
        // A quoted value may hold spaces; the quotes are not part of it.
        let p = parse_ok("token=\"two words\" port=82");
        assert_eq!(p.token, Some("two words"));
        assert_eq!(p.port, 82);
        assert_eq!(parse_ok("\"port=83\"").port, 83);
        // `=` inside a value belongs to the value.
        assert_eq!(parse_ok("token=a=b").token, Some("a=b"));
        // `-` and `_` are interchangeable in names (parameq()).
        assert_eq!(parse_ok("api-quota=30").api_quota_pct, 30);
        // An unterminated quote swallows the rest of the line, like Linux.
        assert_eq!(parse_ok("token=\"abc port=84").token, Some("abc port=84"));
    }

    #[test]
    fn fallback_ip_constant() {
        assert_eq!(
            FALLBACK_STATIC_IP,
            IpConfig::Static {
                addr: [10, 0, 2, 15],
                prefix_len: 24,
                gateway: [10, 0, 2, 2],
            }
        );
    }
}
