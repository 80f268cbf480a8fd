//! Static ACPI tables, read once at boot with the `acpi` crate (no alloc, no
//! AML): the MCFG gives the PCIe ECAM window the PCI driver needs; the MADT
//! gives the local APIC, the I/O APICs, ISA overrides and the CPU count.
//! Results land in a plain [`AcpiInfo`]; missing tables are logged, not
//! fatal (cf. Linux `acpi_boot_table_init()` / `acpi_parse_madt()`).
//!
//! Machines without PCI (QEMU `microvm`) declare their virtio-mmio
//! transports in the DSDT, found by [`mm::cmdline::virtio_mmio::scan_dsdt`].
//! A machine without ACPI at all (`microvm,acpi=off`, Firecracker) gets the
//! same [`AcpiInfo`] from the MP table ([`crate::mptable`]), else from the
//! PC's fixed addresses, so the rest of the kernel asks one place.

use core::ptr::NonNull;

use ::acpi::address::AddressSpace;
use ::acpi::sdt::fadt::Fadt;
use ::acpi::sdt::madt::{Madt, MadtEntry};
use ::acpi::sdt::mcfg::Mcfg;
use ::acpi::{AcpiTables, Handler, PciAddress, PhysicalMapping};
use mm::cmdline::virtio_mmio::{self, VirtioMmioDevices};
use spin::Once;

use crate::arch::x86_64::paging::{phys_accessible, phys_to_virt_early, read_phys_volatile};

/// I/O APICs kept (q35 has one).
pub const MAX_IOAPICS: usize = 4;
/// ISA interrupt source overrides kept (q35 has five).
pub const MAX_ISOS: usize = 16;
/// Local APIC IDs kept.
pub const MAX_CPUS: usize = 64;

/// One MCFG allocation: ECAM for `segment`, buses `bus_start..=bus_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McfgEntry {
    pub base: u64,
    pub segment: u16,
    pub bus_start: u8,
    pub bus_end: u8,
}

impl McfgEntry {
    /// Bytes of ECAM space this entry covers (1 MiB per bus).
    pub const fn size(&self) -> u64 {
        (self.bus_end as u64 + 1).saturating_sub(self.bus_start as u64) << 20
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    pub addr: u32,
    pub gsi_base: u32,
}

/// An ISA IRQ routed to a different GSI (MADT type 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptOverride {
    pub isa_irq: u8,
    pub gsi: u32,
    /// MPS INTI flags: polarity bits 0-1, trigger mode bits 2-3.
    pub flags: u16,
}

/// What boot code learnt from ACPI.
#[derive(Clone, Copy, Debug)]
pub struct AcpiInfo {
    /// The segment-0 ECAM window (the first MCFG entry), if any.
    pub mcfg: Option<McfgEntry>,
    /// Local APIC MMIO base (MADT, or its 64-bit override entry).
    pub lapic_base: u64,
    pub ioapics: [IoApic; MAX_IOAPICS],
    pub nr_ioapics: usize,
    pub overrides: [InterruptOverride; MAX_ISOS],
    pub nr_overrides: usize,
    /// Enabled processors (MADT flag bit 0), in MADT order; the first
    /// [`MAX_CPUS`] of their APIC ids are in `cpu_apic_ids`.
    pub nr_cpus: usize,
    pub cpu_apic_ids: [u32; MAX_CPUS],
    /// MADT flag PCAT_COMPAT: legacy 8259s present (to be masked).
    pub has_8259: bool,
    /// The ACPI PM timer (FADT PM_TMR_BLK): I/O port and counter width
    /// (24, or 32 with TMR_VAL_EXT); the TSC's calibration reference.
    pub pm_timer: Option<(u16, u8)>,
    /// Where all this came from.
    pub source: FirmwareTables,
    /// virtio-mmio transports the DSDT declares (`LNRO0005`); looked for
    /// only on a machine without PCIe (no MCFG), the only one that uses them.
    pub virtio_mmio: VirtioMmioDevices,
}

/// Which firmware tables described the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareTables {
    Acpi,
    /// No ACPI: the MP table (MP spec 1.4).
    MpTable,
    /// Neither: the PC's fixed addresses, one CPU.
    Defaults,
}

impl AcpiInfo {
    const fn empty() -> Self {
        AcpiInfo {
            mcfg: None,
            lapic_base: 0xfee0_0000,
            ioapics: [IoApic {
                id: 0,
                addr: 0,
                gsi_base: 0,
            }; MAX_IOAPICS],
            nr_ioapics: 0,
            overrides: [InterruptOverride {
                isa_irq: 0,
                gsi: 0,
                flags: 0,
            }; MAX_ISOS],
            nr_overrides: 0,
            nr_cpus: 0,
            cpu_apic_ids: [0; MAX_CPUS],
            has_8259: true,
            pm_timer: None,
            source: FirmwareTables::Acpi,
            virtio_mmio: VirtioMmioDevices::new(),
        }
    }

    /// Without ACPI: the MP table if there is one, else the PC's fixed
    /// LAPIC (0xfee00000) and IOAPIC (0xfec00000, GSI 0-23) and one CPU.
    fn without_acpi() -> Self {
        let mut info = AcpiInfo::empty();
        if crate::mptable::parse(&mut info) {
            info.source = FirmwareTables::MpTable;
        } else {
            info.source = FirmwareTables::Defaults;
            log::warn!(
                "no ACPI and no MP table: assuming one CPU, LAPIC at {:#x}, IOAPIC at {PC_IOAPIC:#x} (GSI 0-23)",
                info.lapic_base
            );
        }
        if info.nr_ioapics == 0 {
            info.ioapics[0] = IoApic {
                id: 0,
                addr: PC_IOAPIC,
                gsi_base: 0,
            };
            info.nr_ioapics = 1;
        }
        if info.nr_cpus == 0 {
            info.nr_cpus = 1;
        }
        info
    }

    pub fn ioapics(&self) -> &[IoApic] {
        &self.ioapics[..self.nr_ioapics]
    }

    pub fn overrides(&self) -> &[InterruptOverride] {
        &self.overrides[..self.nr_overrides]
    }

    /// GSI of ISA `irq` after overrides (identity if none).
    pub fn isa_irq_to_gsi(&self, irq: u8) -> u32 {
        self.overrides()
            .iter()
            .find(|o| o.isa_irq == irq)
            .map_or(u32::from(irq), |o| o.gsi)
    }
}

/// The PC's I/O APIC address, where every machine here puts the first.
const PC_IOAPIC: u32 = 0xfec0_0000;

static ACPI_INFO: Once<AcpiInfo> = Once::new();

/// The result of [`init`] (from ACPI, the MP table or the PC defaults:
/// [`AcpiInfo::source`]); `None` only before it ran.
pub fn info() -> Option<&'static AcpiInfo> {
    ACPI_INFO.get()
}

/// Maps ACPI tables through the early physical window (identity during
/// boot). Only what table parsing needs does something; the AML-side hooks
/// (unused: no `aml` feature) are inert.
#[derive(Clone, Copy, Debug)]
struct EarlyHandler;

impl Handler for EarlyHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> ::acpi::RawPhysicalMapping<T> {
        let phys = physical_address as u64;
        if !phys_accessible(phys, size as u64) {
            // The trait cannot fail. `init` checked the RSDP and every
            // RSDT/XSDT entry against the window, so this is a table pointing
            // outside memory: stop with a clear message instead of faulting.
            panic!("ACPI: table at {phys:#x} (+{size:#x}) lies outside the early physical window");
        }
        let Some(virt) = NonNull::new(phys_to_virt_early(phys).cast::<T>()) else {
            panic!("ACPI: asked to map physical address 0");
        };
        // SAFETY: `virt` is the window address of `[phys, phys + size)`,
        // which is mapped for the kernel's lifetime (identity map, later the
        // direct map); each mapping is a distinct physical region the crate
        // asked for, used read-only by table parsing. Nothing is unmapped.
        unsafe { ::acpi::RawPhysicalMapping::new(physical_address, virt, size, size) }
    }

    unsafe fn unmap_physical_region<T>(&self, _region: ::acpi::RawPhysicalMapping<T>) {}

    fn read_u8(&self, address: usize) -> u8 {
        read_volatile_phys(address)
    }
    fn read_u16(&self, address: usize) -> u16 {
        read_volatile_phys(address)
    }
    fn read_u32(&self, address: usize) -> u32 {
        read_volatile_phys(address)
    }
    fn read_u64(&self, address: usize) -> u64 {
        read_volatile_phys(address)
    }

    fn write_u8(&self, address: usize, _value: u8) {
        log::warn!("ACPI: ignored write to {address:#x}");
    }
    fn write_u16(&self, address: usize, _value: u16) {
        log::warn!("ACPI: ignored write to {address:#x}");
    }
    fn write_u32(&self, address: usize, _value: u32) {
        log::warn!("ACPI: ignored write to {address:#x}");
    }
    fn write_u64(&self, address: usize, _value: u64) {
        log::warn!("ACPI: ignored write to {address:#x}");
    }

    // Port I/O is only reached from AML evaluation, which this kernel does
    // not build (no `aml` feature): refuse rather than touch hardware.
    fn read_io_u8(&self, port: u16) -> u8 {
        log::warn!("ACPI: ignored read of port {port:#x}");
        !0
    }
    fn read_io_u16(&self, port: u16) -> u16 {
        log::warn!("ACPI: ignored read of port {port:#x}");
        !0
    }
    fn read_io_u32(&self, port: u16) -> u32 {
        log::warn!("ACPI: ignored read of port {port:#x}");
        !0
    }

    fn write_io_u8(&self, port: u16, _value: u8) {
        log::warn!("ACPI: ignored write to port {port:#x}");
    }
    fn write_io_u16(&self, port: u16, _value: u16) {
        log::warn!("ACPI: ignored write to port {port:#x}");
    }
    fn write_io_u32(&self, port: u16, _value: u32) {
        log::warn!("ACPI: ignored write to port {port:#x}");
    }

    fn read_pci_u8(&self, _address: PciAddress, _offset: u16) -> u8 {
        0xff
    }
    fn read_pci_u16(&self, _address: PciAddress, _offset: u16) -> u16 {
        0xffff
    }
    fn read_pci_u32(&self, _address: PciAddress, _offset: u16) -> u32 {
        0xffff_ffff
    }
    fn write_pci_u8(&self, _address: PciAddress, _offset: u16, _value: u8) {}
    fn write_pci_u16(&self, _address: PciAddress, _offset: u16, _value: u16) {}
    fn write_pci_u32(&self, _address: PciAddress, _offset: u16, _value: u32) {}

    fn nanos_since_boot(&self) -> u64 {
        crate::time::now_ms().unwrap_or(0).saturating_mul(1_000_000)
    }
    fn stall(&self, microseconds: u64) {
        for _ in 0..microseconds.saturating_mul(100) {
            core::hint::spin_loop();
        }
    }
    fn sleep(&self, milliseconds: u64) {
        self.stall(milliseconds.saturating_mul(1000));
    }
}

/// AML field reads; all-ones when outside the window or misaligned, like a
/// read from nothing on a bus.
fn read_volatile_phys<
    T: crate::arch::x86_64::paging::Pod + core::ops::Not<Output = T> + Default,
>(
    address: usize,
) -> T {
    read_phys_volatile(address as u64).unwrap_or(!T::default())
}

/// Parses MCFG, MADT, FADT and the DSDT's virtio-mmio devices from the
/// RSDP at `rsdp` (physical). Without a usable RSDP, the MP table or the
/// PC defaults ([`FirmwareTables`]); missing tables leave defaults and a
/// log line. Never `None` (the `Option` is for callers' convenience).
#[inline(never)] // not in `kmain`'s frame, which lives as long as the kernel
pub fn init(rsdp: Option<u64>) -> Option<&'static AcpiInfo> {
    match parse_acpi(rsdp) {
        Some(info) => Some(ACPI_INFO.call_once(|| info)),
        None => Some(ACPI_INFO.call_once(AcpiInfo::without_acpi)),
    }
}

fn parse_acpi(rsdp: Option<u64>) -> Option<AcpiInfo> {
    let Some(rsdp) = rsdp else {
        log::info!("ACPI: no RSDP; continuing without ACPI (no PCIe ECAM)");
        return None;
    };
    if !phys_accessible(rsdp, 36) {
        log::warn!("ACPI: RSDP at {rsdp:#x} is outside the early physical window; ignored");
        return None;
    }
    // SAFETY: `rsdp` came from the PVH start info or a checksummed BIOS-area
    // scan and lies inside the physical window; `from_rsdp` validates the
    // signature before trusting anything else, and every later mapping goes
    // through `EarlyHandler`, which refuses addresses outside the window.
    let tables = match unsafe { AcpiTables::from_rsdp(EarlyHandler, rsdp as usize) } {
        Ok(tables) => tables,
        Err(err) => {
            log::warn!("ACPI: unusable RSDP at {rsdp:#x}: {err:?}");
            return None;
        }
    };
    if let Some(bad) = tables
        .table_entries()
        .find(|&t| !phys_accessible(t as u64, 36))
    {
        log::warn!(
            "ACPI: RSDT/XSDT points outside the early physical window ({bad:#x}); ignoring ACPI"
        );
        return None;
    }
    log::info!("ACPI: RSDP {rsdp:#x}");
    // One line per table, in the spirit of Linux's `ACPI: MCFG 0x… 00003C (v01 BOCHS  BXPC …)`.
    for (phys, header) in tables.table_headers() {
        let (signature, length, revision) = (header.signature, header.length, header.revision);
        let (oem_id, oem_table_id) = (header.oem_id, header.oem_table_id);
        log::info!(
            "ACPI: {signature} {phys:#010x} {length:06X} (v{revision:02} {:6} {:8})",
            core::str::from_utf8(&oem_id).unwrap_or("?"),
            core::str::from_utf8(&oem_table_id).unwrap_or("?"),
        );
    }

    let mut info = AcpiInfo::empty();
    match tables.find_table::<Mcfg>() {
        Some(mcfg) => parse_mcfg(&mcfg, &mut info),
        None => log::info!("ACPI: no MCFG: no PCIe ECAM (a machine without PCI)"),
    }
    match tables.find_table::<Madt>() {
        Some(madt) => parse_madt(&madt, &mut info),
        None => log::warn!(
            "ACPI: no MADT; assuming one CPU and a LAPIC at {:#x}",
            info.lapic_base
        ),
    }
    match tables.find_table::<Fadt>() {
        Some(fadt) => info.pm_timer = parse_pm_timer(&fadt),
        None => log::warn!("ACPI: no FADT; no PM timer"),
    }
    if info.nr_cpus == 0 {
        info.nr_cpus = 1;
    }
    match tables.dsdt() {
        // The DSDT's virtio-mmio transports are where the NIC is looked
        // for only on a machine without PCIe (`net_glue::run`); scanning
        // its AML byte by byte costs q35's boot 40 k instructions.
        Ok(_) if info.mcfg.is_some() => {
            log::debug!("ACPI: PCIe (MCFG) present; DSDT not scanned for virtio-mmio")
        }
        Ok(dsdt) if phys_accessible(dsdt.phys_address as u64, u64::from(dsdt.length)) => {
            // SAFETY: the whole table lies inside the early physical window
            // (checked above), which maps it readable for the kernel's
            // lifetime; firmware tables are not written after boot.
            let aml = unsafe {
                core::slice::from_raw_parts(
                    phys_to_virt_early(dsdt.phys_address as u64).cast_const(),
                    dsdt.length as usize,
                )
            };
            info.virtio_mmio = virtio_mmio::scan_dsdt(aml);
            for d in info.virtio_mmio.as_slice() {
                log::info!(
                    "ACPI: DSDT: virtio-mmio (LNRO0005) at {:#x}+{:#x}, GSI {}",
                    d.base,
                    d.size,
                    d.irq
                );
            }
        }
        Ok(dsdt) => log::warn!(
            "ACPI: DSDT at {:#x} lies outside the early physical window; not scanned",
            dsdt.phys_address
        ),
        Err(e) => log::info!("ACPI: no DSDT ({e:?})"),
    }
    Some(info)
}

/// The FADT's PM timer, if it is in I/O space (cf. `acpi_pm_timer`'s
/// `pmtmr_ioport` from `acpi_gbl_FADT.xpm_timer_block`).
fn parse_pm_timer(fadt: &PhysicalMapping<EarlyHandler, Fadt>) -> Option<(u16, u8)> {
    let block = match fadt.pm_timer_block() {
        Ok(Some(b)) => b,
        Ok(None) => {
            log::info!("ACPI: FADT has no PM timer");
            return None;
        }
        Err(e) => {
            log::warn!("ACPI: FADT PM timer block unreadable: {e:?}");
            return None;
        }
    };
    let port = u16::try_from(block.address).ok();
    match (block.address_space, port) {
        (AddressSpace::SystemIo, Some(port)) if port != 0 => {
            let bits = if { fadt.flags }.pm_timer_is_32_bit() {
                32
            } else {
                24
            };
            log::info!("ACPI: PM-Timer IO Port: {port:#x} ({bits} bits)");
            Some((port, bits))
        }
        _ => {
            log::info!(
                "ACPI: PM timer not in I/O space ({:#x}); not used",
                block.address
            );
            None
        }
    }
}

fn parse_mcfg(mcfg: &PhysicalMapping<EarlyHandler, Mcfg>, info: &mut AcpiInfo) {
    for (i, e) in mcfg.entries().iter().enumerate() {
        let entry = McfgEntry {
            base: e.base_address,
            segment: e.pci_segment_group,
            bus_start: e.bus_number_start,
            bus_end: e.bus_number_end,
        };
        log::info!(
            "ACPI: MCFG[{i}]: ECAM base {:#x} segment {} buses {:#04x}-{:#04x} ({} MiB)",
            entry.base,
            entry.segment,
            entry.bus_start,
            entry.bus_end,
            entry.size() >> 20
        );
        if info.mcfg.is_none() && entry.segment == 0 {
            info.mcfg = Some(entry);
        }
    }
    if info.mcfg.is_none() {
        log::warn!("ACPI: MCFG has no segment-0 entry");
    }
}

fn parse_madt(madt: &PhysicalMapping<EarlyHandler, Madt>, info: &mut AcpiInfo) {
    let table = madt.get();
    info.lapic_base = u64::from(table.local_apic_address);
    info.has_8259 = table.supports_8259();
    let mut nr_listed_cpus = 0usize;
    for entry in table.entries() {
        match entry {
            MadtEntry::LocalApic(lapic) => {
                nr_listed_cpus += 1;
                let (uid, id, flags) = (lapic.processor_id, lapic.apic_id, { lapic.flags });
                log::info!(
                    "ACPI: LAPIC (acpi_id[{uid:#04x}] lapic_id[{id:#04x}] {})",
                    lapic_state(flags)
                );
                if flags & MADT_ENABLED != 0 {
                    push_cpu(info, u32::from(id));
                }
            }
            MadtEntry::LocalX2Apic(x2) => {
                nr_listed_cpus += 1;
                let (uid, id, flags) = ({ x2.processor_uid }, { x2.x2apic_id }, { x2.flags });
                log::info!(
                    "ACPI: X2APIC (apic_id[{id:#x}] uid[{uid:#x}] {})",
                    lapic_state(flags)
                );
                if flags & MADT_ENABLED != 0 {
                    push_cpu(info, id);
                }
            }
            MadtEntry::IoApic(io) => {
                let ioapic = IoApic {
                    id: io.io_apic_id,
                    addr: { io.io_apic_address },
                    gsi_base: { io.global_system_interrupt_base },
                };
                if info.nr_ioapics < MAX_IOAPICS {
                    info.ioapics[info.nr_ioapics] = ioapic;
                    info.nr_ioapics += 1;
                } else {
                    log::warn!(
                        "ACPI: more than {MAX_IOAPICS} I/O APICs; id {} ignored",
                        ioapic.id
                    );
                }
            }
            MadtEntry::InterruptSourceOverride(iso) => {
                let o = InterruptOverride {
                    isa_irq: iso.irq,
                    gsi: { iso.global_system_interrupt },
                    flags: { iso.flags },
                };
                if info.nr_overrides < MAX_ISOS {
                    info.overrides[info.nr_overrides] = o;
                    info.nr_overrides += 1;
                }
            }
            MadtEntry::LocalApicAddressOverride(o) => info.lapic_base = o.local_apic_address,
            _ => {}
        }
    }
    log::info!(
        "ACPI: MADT: LAPIC at {:#x}, {} CPU(s) enabled of {nr_listed_cpus} listed, 8259 {}",
        info.lapic_base,
        info.nr_cpus,
        if info.has_8259 { "present" } else { "absent" }
    );
    for io in info.ioapics() {
        log::info!(
            "ACPI: IOAPIC[{}]: address {:#x}, GSI base {}",
            io.id,
            io.addr,
            io.gsi_base
        );
    }
    for o in info.overrides() {
        log::info!(
            "ACPI: INT_SRC_OVR (bus 0 bus_irq {} global_irq {} flags {:#x})",
            o.isa_irq,
            o.gsi,
            o.flags
        );
    }
}

/// MADT processor flag: enabled, to be started at boot (ACPI 6.5 §5.2.12.2).
const MADT_ENABLED: u32 = 1 << 0;
/// MADT processor flag: not enabled, but may be hot-added (ACPI 6.3+).
const MADT_ONLINE_CAPABLE: u32 = 1 << 1;

/// How a MADT processor entry's flags read in the log (Linux's wording,
/// plus "online-capable" for the hot-pluggable ones it does not start).
fn lapic_state(flags: u32) -> &'static str {
    if flags & MADT_ENABLED != 0 {
        "enabled"
    } else if flags & MADT_ONLINE_CAPABLE != 0 {
        "disabled, online-capable"
    } else {
        "disabled"
    }
}

/// Records an enabled processor (cf. `acpi_register_lapic()`): the ones
/// `smp` starts. Only enabled entries count; an online-capable one is a
/// hot-plug slot, not a CPU to start at boot.
fn push_cpu(info: &mut AcpiInfo, apic_id: u32) {
    if info.nr_cpus < MAX_CPUS {
        info.cpu_apic_ids[info.nr_cpus] = apic_id;
    }
    info.nr_cpus += 1;
}
