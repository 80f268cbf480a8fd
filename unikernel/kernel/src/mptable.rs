//! The Intel MultiProcessor table (MP spec 1.4, chapter 4): what a machine
//! without ACPI says about its CPUs and I/O APICs. QEMU's `microvm` with
//! `acpi=off` (its qboot firmware writes one) and Firecracker (which may
//! boot without ACPI) describe themselves this way (cf. Linux
//! `arch/x86/kernel/mpparse.c`: `smp_scan_config()`, `smp_read_mpc()`).
//!
//! Only what [`crate::acpi::AcpiInfo`] holds is read: processor entries
//! (type 0), I/O APIC entries (type 2) and the local APIC address. Without
//! an MP table either, the PC defaults stand (LAPIC 0xfee00000, one IOAPIC
//! at 0xfec00000 from GSI 0, one CPU).

use crate::acpi::{AcpiInfo, IoApic, MAX_IOAPICS};
use crate::arch::x86_64::paging::read_phys;

/// Entry sizes by type (MP spec table 4-3).
const PROCESSOR_LEN: u64 = 20;
const OTHER_LEN: u64 = 8;

fn checksum_ok(start: u64, len: u64) -> bool {
    (start..start + len).try_fold(0u8, |sum, a| {
        read_phys::<u8>(a).map(|b| sum.wrapping_add(b))
    }) == Some(0)
}

/// Finds the floating pointer "_MP_" (16 bytes, checksummed) in the first
/// KiB of the EBDA, the last KiB of base memory, or 0xF0000-0xFFFFF (MP
/// spec §4.1; cf. `smp_scan_config()`), and returns the configuration
/// table's address.
fn find_config_table() -> Option<u64> {
    let ebda = read_phys::<u16>(0x40e)
        .map(|seg| u64::from(seg) << 4)
        .filter(|a| (0x400..0xa0000).contains(a));
    let areas = [
        ebda.map(|a| (a, a + 1024)),
        Some((0x9fc00, 0xa0000)),
        Some((0xf0000, 0x100000)),
    ];
    let fp = areas.into_iter().flatten().find_map(|(start, end)| {
        (start..end).step_by(16).find(|&a| {
            read_phys::<[u8; 4]>(a).is_some_and(|sig| &sig == b"_MP_") && checksum_ok(a, 16)
        })
    })?;
    let table = u64::from(read_phys::<u32>(fp + 4)?);
    // Feature byte 1 non-zero: a default configuration, no table.
    (table != 0).then_some(table)
}

/// Fills `info` from the MP table, if there is one; says whether it did.
pub fn parse(info: &mut AcpiInfo) -> bool {
    let Some(table) = find_config_table() else {
        return false;
    };
    let (Some(sig), Some(len), Some(lapic)) = (
        read_phys::<[u8; 4]>(table),
        read_phys::<u16>(table + 4),
        read_phys::<u32>(table + 36),
    ) else {
        return false;
    };
    if &sig != b"PCMP" || !checksum_ok(table, u64::from(len)) {
        log::warn!("mptable: configuration table at {table:#x} is not a valid PCMP; ignored");
        return false;
    }
    info.lapic_base = u64::from(lapic);
    let end = table + u64::from(len);
    let mut at = table + 44;
    // By length, not by the entry count, as Linux's `smp_read_mpc()` does
    // (qboot leaves the count 0).
    while at < end {
        let Some(kind) = read_phys::<u8>(at) else {
            break;
        };
        let size = if kind == 0 { PROCESSOR_LEN } else { OTHER_LEN };
        if at + size > end || kind > 4 {
            log::warn!("mptable: entry type {kind} at {at:#x} runs past the table; stopped");
            break;
        }
        let bytes = read_phys::<[u8; 8]>(at).unwrap_or([0; 8]);
        match kind {
            0 => {
                // [1] LAPIC id, [3] flags: bit 0 enabled, bit 1 boot CPU.
                let (id, flags) = (bytes[1], bytes[3]);
                if flags & 1 != 0 {
                    if info.nr_cpus < info.cpu_apic_ids.len() {
                        info.cpu_apic_ids[info.nr_cpus] = u32::from(id);
                    }
                    info.nr_cpus += 1;
                }
            }
            2 => {
                // [1] id, [3] flags bit 0 usable, [4..8] address.
                let addr = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                if bytes[3] & 1 != 0 && info.nr_ioapics < MAX_IOAPICS {
                    // The MP table has no GSI base: IOAPICs number their
                    // pins one after another (cf. `mp_register_ioapic()`),
                    // 24 pins each on every machine this boots on.
                    let gsi_base = info.ioapics().iter().map(|_| 24).sum();
                    info.ioapics[info.nr_ioapics] = IoApic {
                        id: bytes[1],
                        addr,
                        gsi_base,
                    };
                    info.nr_ioapics += 1;
                }
            }
            _ => {}
        }
        at += size;
    }
    log::info!(
        "mptable: at {table:#x}: LAPIC at {lapic:#x}, {} CPU(s), {} IOAPIC(s)",
        info.nr_cpus,
        info.nr_ioapics
    );
    true
}
