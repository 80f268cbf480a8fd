//! PCI enumeration through PCIe ECAM (PCI Firmware Spec 3.x §4.1; the MCFG
//! table gives the window), with `virtio-drivers`' `PciRoot` on top.
//!
//! The window is mapped with `ioremap`, bus by bus (1 MiB each). q35 puts
//! every device of this machine on bus 0 and we enumerate no bridges, so
//! only bus 0 is mapped; the accessor below answers "no device" (all ones)
//! for any other bus instead of touching unmapped memory. That is why this
//! uses its own [`ConfigurationAccess`] rather than `MmioCam`, whose safety
//! contract wants the full 256 MiB mapped.
//!
//! Every write to a function's command register makes QEMU rebuild its
//! memory map (a `memory_region_transaction_commit()`), and
//! `PciRoot::bar_info` turns decoding off and on again around every single
//! BAR: the boot did some 90 of those, about 20 ms under TCG. So BARs are
//! sized only for functions this kernel drives (virtio-net), all of a
//! function's at once with decoding off (cf. `pci_read_bases()`), and
//! decoding stays off until the driver enables the device; the other
//! functions keep the firmware's assignment, listed at `loglevel=debug`.
//!
//! A firmware that assigns no BARs (qboot, which `make run` uses on q35:
//! it reaches the kernel in a fraction of SeaBIOS's time) leaves them at
//! zero; a driven function's are then placed in the PCI gap of the e820
//! map ([`assign_unassigned_bars`], cf. `pci_assign_unassigned_resources()`
//! with `e820__setup_pci_gap()`'s window).

use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, MemoryBarType,
    PciRoot,
};
use virtio_drivers::transport::pci::virtio_device_type;

use alloc::vec::Vec;

use crate::acpi;
use crate::memory::ioremap;

/// Buses mapped from the start of the MCFG range.
pub const MAPPED_BUSES: u16 = 1;

/// Config space of `[bus_start, bus_start + nr_buses)` through one ioremap.
pub struct Ecam {
    virt: u64,
    bus_start: u8,
    nr_buses: u16,
}

impl Ecam {
    /// Virtual address of a config register, if its bus is mapped.
    fn reg(&self, df: DeviceFunction, offset: u8) -> Option<u64> {
        let bus = u16::from(df.bus).checked_sub(u16::from(self.bus_start))?;
        (bus < self.nr_buses && df.valid() && offset.is_multiple_of(4)).then(|| {
            self.virt
                + (u64::from(bus) << 20)
                + (u64::from(df.device) << 15)
                + (u64::from(df.function) << 12)
                + u64::from(offset)
        })
    }
}

impl ConfigurationAccess for Ecam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        match self.reg(df, offset) {
            // SAFETY: `reg` returns an aligned address inside the ioremapped
            // (uncached) ECAM pages of a mapped bus. Volatile: config space.
            Some(addr) => unsafe {
                core::ptr::with_exposed_provenance::<u32>(addr as usize).read_volatile()
            },
            None => u32::MAX,
        }
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        match self.reg(df, offset) {
            // SAFETY: as in `read_word`; `&mut self` serialises writers.
            Some(addr) => unsafe {
                core::ptr::with_exposed_provenance_mut::<u32>(addr as usize).write_volatile(data)
            },
            None => log::warn!("pci: write to unmapped config space {df} +{offset:#x} dropped"),
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Ecam {
            virt: self.virt,
            bus_start: self.bus_start,
            nr_buses: self.nr_buses,
        }
    }
}

/// A function found on the bus.
#[derive(Clone, Debug)]
pub struct PciFunction {
    pub df: DeviceFunction,
    pub info: DeviceFunctionInfo,
    pub irq_line: u8,
    /// INTx pin, 1 = INTA … 4 = INTD; 0 = none.
    pub irq_pin: u8,
    /// The BARs as sized at enumeration.
    pub bars: [Option<BarInfo>; 6],
}

/// Maps the ECAM window of the MCFG's segment 0 and returns the root.
pub fn init() -> Option<PciRoot<Ecam>> {
    let Some(mcfg) = acpi::info().and_then(|i| i.mcfg) else {
        // Not an error: machines such as QEMU `microvm` and Firecracker
        // have no PCI; the NIC is then a virtio-mmio transport.
        log::info!("pci: no MCFG (ECAM) in ACPI; no PCI on this machine");
        return None;
    };
    let nr_buses = (u16::from(mcfg.bus_end) + 1 - u16::from(mcfg.bus_start)).min(MAPPED_BUSES);
    let size = u64::from(nr_buses) << 20;
    let virt = match ioremap::ioremap_caller(mcfg.base, size, "PCIe_ECAM") {
        Ok(v) => v.0,
        Err(e) => {
            log::error!("pci: ioremap of ECAM {:#x}+{size:#x}: {e}", mcfg.base);
            return None;
        }
    };
    log::info!(
        "pci: ECAM {:#x} for buses {:02x}-{:02x} (MCFG); mapped bus {:02x} only ({} MiB at {virt:#x}): no bridges are enumerated",
        mcfg.base,
        mcfg.bus_start,
        mcfg.bus_end,
        mcfg.bus_start,
        size >> 20
    );
    // A second accessor over the same window for registers `PciRoot` has no
    // getter for (interrupt line/pin), which it never writes.
    CONFIG_READER.call_once(|| Ecam {
        virt,
        bus_start: mcfg.bus_start,
        nr_buses,
    });
    Some(PciRoot::new(Ecam {
        virt,
        bus_start: mcfg.bus_start,
        nr_buses,
    }))
}

/// A human name for a function (virtio type, else its class).
pub fn describe(info: &DeviceFunctionInfo) -> &'static str {
    use virtio_drivers::transport::DeviceType;
    if let Some(t) = virtio_device_type(info) {
        return match t {
            DeviceType::Network => "virtio-net",
            DeviceType::Block => "virtio-blk",
            DeviceType::Console => "virtio-console",
            DeviceType::EntropySource => "virtio-rng",
            DeviceType::GPU => "virtio-gpu",
            _ => "virtio (other)",
        };
    }
    match (info.class, info.subclass) {
        (0x06, 0x00) => "host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI bridge",
        (0x03, 0x00) => "VGA controller",
        (0x01, 0x06) => "SATA controller",
        (0x0c, 0x05) => "SMBus controller",
        (0x02, 0x00) => "Ethernet controller",
        _ => "device",
    }
}

/// Logs every function on the mapped buses with its INTx (and the BARs of
/// those with a driver here), assigns the driven functions' memory BARs
/// the firmware left unassigned (see [`assign_unassigned_bars`];
/// `firmware_map` is the e820 map, `[start, end)` of every entry), and
/// returns them.
pub fn enumerate(root: &mut PciRoot<Ecam>, firmware_map: &[(u64, u64)]) -> Vec<PciFunction> {
    let mut found = Vec::new();
    let bus = acpi::info().and_then(|i| i.mcfg).map_or(0, |m| m.bus_start);
    let functions: Vec<_> = root.enumerate_bus(bus).collect();
    for (df, info) in functions {
        let int = config_read(df, 0x3c);
        let (irq_line, irq_pin) = (int as u8, (int >> 8) as u8);
        log::info!(
            "PCI {df} {:04x}:{:04x} class {:02x}.{:02x} {}{}",
            info.vendor_id,
            info.device_id,
            info.class,
            info.subclass,
            describe(&info),
            IntxText(irq_pin, irq_line)
        );
        let mut bars = [const { None }; 6];
        let standard =
            info.header_type == virtio_drivers::transport::pci::bus::HeaderType::Standard;
        if standard && has_driver(&info) {
            match read_bars(root, df) {
                Ok(b) => bars = b,
                Err(e) => log::warn!("PCI {df}: BARs unreadable: {e:?}"),
            }
            for (i, bar) in bars.iter().enumerate() {
                if let Some(bar) = bar {
                    log_bar(df, i, bar);
                }
            }
        } else if standard {
            // No driver here: the firmware's assignment, unsized (sizing
            // costs QEMU two memory-map rebuilds per function).
            for i in 0..6 {
                let raw = config_read(df, 0x10 + 4 * i);
                if raw != 0 {
                    log::debug!("PCI {df}   BAR{i} register {raw:#010x} (no driver: not sized)");
                }
            }
        }
        found.push(PciFunction {
            df,
            info,
            irq_line,
            irq_pin,
            bars,
        });
    }
    let unassigned = |f: &PciFunction| {
        f.bars
            .iter()
            .any(|b| matches!(b, Some(BarInfo::Memory { address: 0, size, .. }) if *size > 0))
    };
    if found.iter().any(unassigned) {
        assign_unassigned_bars(root, &mut found, firmware_map);
    }
    let mmio = found
        .iter()
        .filter(|f| has_driver(&f.info))
        .flat_map(|f| {
            f.bars.iter().filter_map(move |b| match b {
                Some(BarInfo::Memory { address, size, .. }) if *address != 0 && *size != 0 => {
                    Some((*address, address + size, alloc::format!("0000:{}", f.df)))
                }
                _ => None,
            })
        })
        .collect();
    DEVICE_MMIO.call_once(|| mmio);
    found
}

/// The memory BARs of the functions a driver here uses, as `[start, end)`
/// and the function's name (`0000:00:01.0`), once enumerated: whether the
/// firmware or [`assign_unassigned_bars`] placed them, `/proc/iomem`
/// lists them (cf. the BAR resources Linux inserts at enumeration).
static DEVICE_MMIO: spin::Once<Vec<(u64, u64, alloc::string::String)>> = spin::Once::new();

/// See [`DEVICE_MMIO`]; empty before enumeration or without PCI.
pub fn device_mmio() -> &'static [(u64, u64, alloc::string::String)] {
    DEVICE_MMIO.get().map_or(&[], Vec::as_slice)
}

/// Places every memory BAR of a driven function that reads zero (the
/// firmware assigned none) at the lowest naturally aligned address of the
/// PCI gap that meets nothing else, and writes it (decoding is off from
/// [`read_bars`]). cf. `pci_assign_unassigned_resources()` →
/// `pci_assign_resource()`: the window is `e820__setup_pci_gap()`'s (no
/// `_CRS` here), below the x86 APIC/firmware area, around the ECAM, the
/// APICs and the BARs the firmware did assign (sized for this, their
/// decoding restored). An I/O BAR left unassigned stays so (no driver
/// here uses one); a BAR that finds no room stays zero and its driver
/// fails to map it.
fn assign_unassigned_bars(
    root: &mut PciRoot<Ecam>,
    found: &mut [PciFunction],
    firmware_map: &[(u64, u64)],
) {
    use mm::iomem::{IomemAllocator, X86_PLATFORM_AREA, pci_gap};
    let Some((gap_start, gap_size)) = pci_gap(firmware_map) else {
        log::error!("pci: no gap of 4 MiB below 4 GiB in the e820 map: unassigned BARs stay so");
        return;
    };
    log::info!(
        "[mem {gap_start:#010x}-{:#010x}] available for PCI devices",
        gap_start + gap_size - 1
    );
    let mut iomem = IomemAllocator::new(gap_start, (gap_start + gap_size).min(X86_PLATFORM_AREA.0));
    let mut claims: Vec<(u64, u64)> = Vec::new();
    if let Some(info) = acpi::info() {
        if let Some(m) = info.mcfg {
            claims.push((m.base, m.base + m.size()));
        }
        claims.push((info.lapic_base, info.lapic_base + 0x1000));
        for io in &info.ioapics[..info.nr_ioapics] {
            claims.push((u64::from(io.addr), u64::from(io.addr) + 0x1000));
        }
    }
    // What the firmware did assign, driven functions' and the others'
    // (only a memory BAR with an address can be in the way: an I/O BAR's
    // register reads 1 even when unassigned).
    let assigned_mmio = |raw: u32| raw & 1 == 0 && raw & !0xf != 0;
    for f in found.iter_mut() {
        let standard =
            f.info.header_type == virtio_drivers::transport::pci::bus::HeaderType::Standard;
        if standard
            && !has_driver(&f.info)
            && (0..6).any(|i| assigned_mmio(config_read(f.df, 0x10 + 4 * i)))
        {
            let (_, command) = root.get_status_command(f.df);
            match read_bars(root, f.df) {
                Ok(b) => f.bars = b,
                Err(e) => log::warn!("PCI {}: BARs unreadable: {e:?}", f.df),
            }
            root.set_command(f.df, command);
        }
        for bar in f.bars.iter().flatten() {
            if let BarInfo::Memory { address, size, .. } = bar
                && *address != 0
            {
                claims.push((*address, address + size));
            }
        }
    }
    for (start, end) in claims {
        if let Err(e) = iomem.claim(start, end) {
            log::warn!("pci: {e}; placing BARs without [{start:#x}, {end:#x})");
        }
    }
    for f in found.iter_mut().filter(|f| has_driver(&f.info)) {
        for index in 0..6 {
            let Some(BarInfo::Memory {
                address_type,
                prefetchable,
                address: 0,
                size,
            }) = f.bars[index]
            else {
                if let Some(BarInfo::IO { address: 0, size }) = f.bars[index] {
                    log::warn!("PCI {}: BAR{index} io (size {size:#x}) unassigned", f.df);
                }
                continue;
            };
            if address_type == MemoryBarType::Below1MiB {
                // A legacy BAR that must sit below 1 MiB: the gap is far
                // above, and no driver here has one.
                log::warn!("PCI {}: BAR{index} (below 1 MiB) unassigned", f.df);
                continue;
            }
            let addr = match iomem.alloc(size) {
                Ok(a) => a,
                Err(e) => {
                    log::error!("PCI {}: BAR{index} (size {size:#x}): {e}", f.df);
                    continue;
                }
            };
            match address_type {
                MemoryBarType::Width64 => root.set_bar_64(f.df, index as u8, addr),
                _ => root.set_bar_32(f.df, index as u8, addr as u32),
            }
            f.bars[index] = Some(BarInfo::Memory {
                address_type,
                prefetchable,
                address: addr,
                size,
            });
            // Linux's wording: "pci 0000:00:01.0: BAR 4: assigned [mem …]".
            log::info!(
                "PCI {}   BAR{index} assigned [mem {addr:#010x}-{:#010x}{}{}]",
                f.df,
                addr + size - 1,
                if address_type == MemoryBarType::Width64 {
                    " 64bit"
                } else {
                    ""
                },
                if prefetchable { " pref" } else { "" }
            );
        }
    }
}

/// Whether this kernel drives the function (virtio-net only): its BARs
/// are sized and mapped; the others' are only listed.
fn has_driver(info: &DeviceFunctionInfo) -> bool {
    virtio_device_type(info) == Some(virtio_drivers::transport::DeviceType::Network)
}

/// Sizes every BAR of `df` with decoding off around all of them, not
/// each (cf. `pci_read_bases()`); a function whose BAR registers all read
/// zero has none to size, and its decoding is left alone. Decoding stays
/// off afterwards: only functions a driver here is about to set up come
/// here, and [`enable_device`] turns it on again (one memory-map rebuild
/// saved).
fn read_bars(
    root: &mut PciRoot<Ecam>,
    df: DeviceFunction,
) -> Result<[Option<BarInfo>; 6], virtio_drivers::transport::pci::bus::PciError> {
    if (0..6).all(|i| config_read(df, 0x10 + 4 * i) == 0) {
        return Ok([const { None }; 6]);
    }
    let (_, command) = root.get_status_command(df);
    let decode = Command::IO_SPACE | Command::MEMORY_SPACE;
    if command.intersects(decode) {
        root.set_command(df, command - decode);
    }
    // With decoding off, `bar_info` leaves the command register alone.
    root.bars(df)
}

struct IntxText(u8, u8);

impl core::fmt::Display for IntxText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 => Ok(()),
            pin @ 1..=4 => write!(f, ", INT{} (line {})", (b'A' + pin - 1) as char, self.1),
            other => write!(f, ", bad INTx pin {other}"),
        }
    }
}

fn log_bar(df: DeviceFunction, index: usize, bar: &BarInfo) {
    match bar {
        BarInfo::Memory {
            address_type,
            prefetchable,
            address,
            size,
        } => log::info!(
            "PCI {df}   BAR{index} mem{} {address:#x} size {size:#x}{}",
            match address_type {
                MemoryBarType::Width64 => "64",
                MemoryBarType::Below1MiB => "1M",
                _ => "32",
            },
            if *prefetchable { " pref" } else { "" }
        ),
        BarInfo::IO { address, size } => {
            log::info!("PCI {df}   BAR{index} io {address:#x} size {size:#x}")
        }
    }
}

/// Read-only accessor for registers `PciRoot` has no getter for.
static CONFIG_READER: spin::Once<Ecam> = spin::Once::new();

/// One config-space dword (all ones before [`init`]).
pub fn config_read(df: DeviceFunction, offset: u8) -> u32 {
    CONFIG_READER
        .get()
        .map_or(u32::MAX, |e| e.read_word(df, offset))
}

/// Maps each memory BAR of `f` whole with `ioremap`, so a driver's
/// sub-ranges are found in one area per BAR. Decoding stays off (from
/// enumeration) until [`enable_device`]: a driver that sizes BARs again
/// (`PciTransport::new`) then costs no memory-map rebuilds. False if a BAR
/// cannot be mapped.
pub fn map_bars(root: &mut PciRoot<Ecam>, f: &PciFunction, caller: &'static str) -> bool {
    for (i, bar) in f.bars.iter().enumerate() {
        if let Some(BarInfo::Memory { address, size, .. }) = bar {
            if *address == 0 || *size == 0 {
                continue;
            }
            if let Err(e) = ioremap::ioremap_caller(*address, *size, caller) {
                log::error!(
                    "PCI {}: ioremap of BAR{i} {address:#x}+{size:#x}: {e}",
                    f.df
                );
                return false;
            }
        }
    }
    let (_, command) = root.get_status_command(f.df);
    let decode = Command::IO_SPACE | Command::MEMORY_SPACE;
    if command.intersects(decode) {
        root.set_command(f.df, command - decode);
    }
    true
}

/// Turns on memory decoding and bus mastering for `df` (the device is
/// about to DMA; cf. `pci_enable_device()` + `pci_set_master()`).
pub fn enable_device(root: &mut PciRoot<Ecam>, df: DeviceFunction) {
    let (_, command) = root.get_status_command(df);
    root.set_command(df, command | Command::MEMORY_SPACE | Command::BUS_MASTER);
}
