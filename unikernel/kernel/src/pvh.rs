//! The PVH `hvm_start_info` handed over in `%ebx`
//! (xen/include/public/arch-x86/hvm/start_info.h), copied into a
//! [`BootInfo`] that owns everything later code needs, so the firmware's
//! pages can be reused.
//!
//! Firmware data is not trusted: a bad magic is fatal (we were not started by
//! a PVH loader), anything else malformed is logged and skipped.

use core::fmt;
use core::mem::size_of;

use spin::Once;

use crate::arch::x86_64::paging::{Pod, read_phys};

/// `hvm_start_info.magic`: "xEn3" with the high bit set.
pub const HVM_START_MAGIC: u32 = 0x336e_c578;
/// Entries [`BootInfo`] keeps; more are logged and dropped.
pub const MAX_MEMMAP: usize = 128;
/// Capacity of the command-line copy, NUL excluded.
pub const CMDLINE_MAX: usize = 1023;

/// `struct hvm_start_info`, version 1 layout (version 0 ends at `rsdp_paddr`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

// SAFETY: `repr(C)`, only u32/u64 fields, no padding (4 x u32 then 64-bit
// fields at 8-byte offsets, final u32 pair): every bit pattern is valid.
unsafe impl Pod for HvmStartInfo {}

/// Size of the version-0 structure (up to and including `rsdp_paddr`).
const START_INFO_V0_SIZE: usize = 40;

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct HvmMemmapTableEntry {
    addr: u64,
    size: u64,
    type_: u32,
    reserved: u32,
}

// SAFETY: `repr(C)`, two u64 then two u32, no padding, no invariants.
unsafe impl Pod for HvmMemmapTableEntry {}

/// E820 memory type, as in Linux's `enum e820_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// 1: usable RAM.
    Ram,
    /// 2: reserved.
    Reserved,
    /// 3: ACPI tables, reclaimable after parsing.
    Acpi,
    /// 4: ACPI non-volatile storage.
    Nvs,
    /// 5: unusable (bad) memory.
    Unusable,
    /// Anything else (7/12 persistent memory, vendor types).
    Other(u32),
}

impl MemType {
    pub const fn from_e820(raw: u32) -> Self {
        match raw {
            1 => MemType::Ram,
            2 => MemType::Reserved,
            3 => MemType::Acpi,
            4 => MemType::Nvs,
            5 => MemType::Unusable,
            other => MemType::Other(other),
        }
    }

    pub const fn as_e820(self) -> u32 {
        match self {
            MemType::Ram => 1,
            MemType::Reserved => 2,
            MemType::Acpi => 3,
            MemType::Nvs => 4,
            MemType::Unusable => 5,
            MemType::Other(raw) => raw,
        }
    }
}

impl fmt::Display for MemType {
    /// Linux's wording (arch/x86/kernel/e820.c:e820_print_type()).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemType::Ram => f.write_str("usable"),
            MemType::Reserved => f.write_str("reserved"),
            MemType::Acpi => f.write_str("ACPI data"),
            MemType::Nvs => f.write_str("ACPI NVS"),
            MemType::Unusable => f.write_str("unusable"),
            MemType::Other(raw @ (7 | 12)) => write!(f, "persistent (type {raw})"),
            MemType::Other(raw) => write!(f, "type {raw}"),
        }
    }
}

/// One firmware memory-map range, `[addr, addr + size)`, `size > 0`, no
/// overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemmapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: MemType,
}

impl MemmapEntry {
    const EMPTY: MemmapEntry = MemmapEntry {
        addr: 0,
        size: 0,
        kind: MemType::Reserved,
    };

    /// Exclusive end.
    pub const fn end(&self) -> u64 {
        self.addr + self.size
    }
}

/// What the kernel keeps from `hvm_start_info`.
#[derive(Debug)]
pub struct BootInfo {
    /// The first `nr_memmap` entries are valid, in firmware order.
    pub memmap: [MemmapEntry; MAX_MEMMAP],
    pub nr_memmap: usize,
    /// The command line (copied; `""` if none).
    pub cmdline: &'static str,
    /// Physical address of the ACPI RSDP, from start_info or a BIOS-area scan.
    pub rsdp: Option<u64>,
    /// Where `hvm_start_info` itself lies (to reserve it if still needed).
    pub start_info_phys: u64,
    pub start_info_size: u64,
}

impl BootInfo {
    /// The valid memory-map entries.
    pub fn memmap(&self) -> &[MemmapEntry] {
        &self.memmap[..self.nr_memmap]
    }

    /// Total bytes of usable RAM in the map.
    pub fn ram_bytes(&self) -> u64 {
        self.memmap()
            .iter()
            .filter(|e| e.kind == MemType::Ram)
            .map(|e| e.size)
            .sum()
    }
}

struct CmdlineBuf {
    bytes: [u8; CMDLINE_MAX],
    len: usize,
}

static CMDLINE: Once<CmdlineBuf> = Once::new();
static BOOT_INFO: Once<BootInfo> = Once::new();

/// Parses `hvm_start_info` at `start_info_phys`, logs the memory map and
/// command line like Linux does, and keeps the result for the kernel's life.
///
/// Panics if no PVH start info is found there: nothing else can be trusted.
#[inline(never)] // not in `kmain`'s frame, which lives as long as the kernel
pub fn parse(start_info_phys: u64) -> &'static BootInfo {
    BOOT_INFO.call_once(|| parse_once(start_info_phys))
}

fn parse_once(start_info_phys: u64) -> BootInfo {
    let Some(info) = read_phys::<HvmStartInfo>(start_info_phys).filter(|_| start_info_phys != 0)
    else {
        panic!(
            "PVH: hvm_start_info at {start_info_phys:#x} is not readable (not booted through PVH?)"
        );
    };
    if info.magic != HVM_START_MAGIC {
        panic!(
            "PVH: bad hvm_start_info magic {:#010x} at {start_info_phys:#x} (expected {HVM_START_MAGIC:#010x}); \
             not booted through the PVH entry?",
            info.magic
        );
    }
    let start_info_size = if info.version >= 1 {
        size_of::<HvmStartInfo>()
    } else {
        START_INFO_V0_SIZE
    } as u64;
    log::debug!(
        "PVH: start_info at {start_info_phys:#x} ({start_info_size} bytes), version {}, flags {:#x}, {} module(s)",
        info.version,
        info.flags,
        info.nr_modules
    );
    if info.nr_modules != 0 {
        log::warn!(
            "PVH: {} module(s) at {:#x} ignored (no initrd support)",
            info.nr_modules,
            info.modlist_paddr
        );
    }

    let mut boot = BootInfo {
        memmap: [MemmapEntry::EMPTY; MAX_MEMMAP],
        nr_memmap: 0,
        cmdline: "",
        rsdp: None,
        start_info_phys,
        start_info_size,
    };

    if info.version >= 1 {
        read_memmap(&mut boot, info.memmap_paddr, info.memmap_entries);
    } else {
        log::error!("PVH: start_info version 0 carries no memory map");
    }
    log_memmap(&boot);

    boot.cmdline = read_cmdline(info.cmdline_paddr);
    log::info!("Command line: {}", boot.cmdline);

    boot.rsdp = if info.rsdp_paddr != 0 {
        Some(info.rsdp_paddr)
    } else {
        let found = find_rsdp_in_bios_areas();
        match found {
            Some(addr) => log::info!("PVH: no rsdp_paddr; found RSDP at {addr:#x} in BIOS areas"),
            // Normal on machines without ACPI (microvm,acpi=off;
            // Firecracker): `acpi::init` falls back to the MP table.
            None => log::info!("PVH: no rsdp_paddr and no RSDP in the EBDA or 0xE0000-0xFFFFF"),
        }
        found
    };
    boot
}

fn read_memmap(boot: &mut BootInfo, table_phys: u64, nr_entries: u32) {
    let entry_size = size_of::<HvmMemmapTableEntry>() as u64;
    let nr = nr_entries as usize;
    if nr > MAX_MEMMAP {
        log::warn!("PVH: memory map has {nr} entries; keeping the first {MAX_MEMMAP}");
    }
    for i in 0..nr.min(MAX_MEMMAP) {
        let Some(raw) = table_phys
            .checked_add(i as u64 * entry_size)
            .and_then(read_phys::<HvmMemmapTableEntry>)
        else {
            log::warn!(
                "PVH: memmap entry {i} at {table_phys:#x}+{} is unreadable; map truncated",
                i as u64 * entry_size
            );
            break;
        };
        if raw.size == 0 {
            log::warn!(
                "PVH: memmap entry {i} ({:#x}, type {}) has zero size; skipped",
                raw.addr,
                raw.type_
            );
            continue;
        }
        if raw.addr.checked_add(raw.size).is_none() {
            log::warn!(
                "PVH: memmap entry {i} ({:#x} + {:#x}) overflows; skipped",
                raw.addr,
                raw.size
            );
            continue;
        }
        boot.memmap[boot.nr_memmap] = MemmapEntry {
            addr: raw.addr,
            size: raw.size,
            kind: MemType::from_e820(raw.type_),
        };
        boot.nr_memmap += 1;
    }
}

/// `BIOS-e820: [mem 0x…-0x…] usable`, as arch/x86/kernel/e820.c prints it.
fn log_memmap(boot: &BootInfo) {
    log::info!("BIOS-provided physical RAM map:");
    for e in boot.memmap() {
        log::info!(
            "BIOS-e820: [mem {:#018x}-{:#018x}] {}",
            e.addr,
            e.end() - 1,
            e.kind
        );
    }
    let ram = boot.ram_bytes();
    log::info!(
        "PVH: {} map entries, {} MiB usable RAM",
        boot.nr_memmap,
        ram >> 20
    );
}

/// Copies the NUL-terminated command line into a static buffer. Over-long
/// input is truncated, invalid UTF-8 bytes become `?`; both are logged.
fn read_cmdline(phys: u64) -> &'static str {
    if phys == 0 {
        return "";
    }
    let buf = CMDLINE.call_once(|| {
        let mut buf = CmdlineBuf {
            bytes: [0; CMDLINE_MAX],
            len: 0,
        };
        let mut terminated = false;
        for i in 0..=CMDLINE_MAX as u64 {
            let Some(byte) = phys.checked_add(i).and_then(read_phys::<u8>) else {
                log::warn!("PVH: command line at {phys:#x} runs out of readable memory; truncated");
                terminated = true;
                break;
            };
            if byte == 0 {
                terminated = true;
                break;
            }
            if buf.len == CMDLINE_MAX {
                break;
            }
            buf.bytes[buf.len] = byte;
            buf.len += 1;
        }
        if !terminated {
            log::warn!("PVH: command line longer than {CMDLINE_MAX} bytes; truncated");
        }
        let mut replaced = 0usize;
        while let Err(err) = core::str::from_utf8(&buf.bytes[..buf.len]) {
            let bad = err.valid_up_to();
            let n = err.error_len().unwrap_or(buf.len - bad);
            buf.bytes[bad..bad + n].fill(b'?');
            replaced += n;
        }
        if replaced != 0 {
            log::warn!("PVH: command line is not UTF-8; {replaced} byte(s) replaced with '?'");
        }
        buf
    });
    // Valid by construction: every invalid sequence was replaced above.
    core::str::from_utf8(&buf.bytes[..buf.len]).unwrap_or("")
}

/// Finds "RSD PTR " with a valid ACPI 1.0 checksum on a 16-byte boundary in
/// the first KiB of the EBDA or in 0xE0000-0xFFFFF (ACPI 6.5 §5.2.5.1; cf.
/// Linux `acpi_find_root_pointer()`).
pub fn find_rsdp_in_bios_areas() -> Option<u64> {
    // The EBDA segment is stored at 0x40E in the BIOS data area.
    let ebda = read_phys::<u16>(0x40e)
        .map(|seg| u64::from(seg) << 4)
        .filter(|a| (0x400..0xa0000).contains(a));
    let areas = [ebda.map(|a| (a, a + 1024)), Some((0xe0000, 0x100000))];
    areas.into_iter().flatten().find_map(|(start, end)| {
        (start..end).step_by(16).find(|&addr| {
            let Some(head) = read_phys::<[u8; 20]>(addr) else {
                return false;
            };
            &head[..8] == b"RSD PTR " && head.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
        })
    })
}
