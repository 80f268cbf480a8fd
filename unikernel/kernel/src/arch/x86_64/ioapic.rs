//! I/O APICs (82093AA register model) through `ioremap`: every pin masked
//! at boot, then single GSIs routed to a vector on this CPU
//! (cf. `arch/x86/kernel/apic/io_apic.c`).
//!
//! A level-triggered PCI INTx line stays asserted until the driver
//! acknowledges the device. The handler therefore masks its pin and leaves
//! the acknowledgement to the main loop, which unmasks afterwards (the
//! one-shot scheme of Linux's threaded interrupts, `IRQF_ONESHOT`).

use spin::Mutex;

use crate::acpi::MAX_IOAPICS;

const IOREGSEL: usize = 0x00;
const IOWIN: usize = 0x10;
const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_REDTBL: u32 = 0x10;

const RTE_MASKED: u64 = 1 << 16;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_ACTIVE_LOW: u64 = 1 << 13;

#[derive(Clone, Copy, Debug)]
struct IoApic {
    virt: u64,
    gsi_base: u32,
    nr_pins: u32,
}

impl IoApic {
    fn read(&self, reg: u32) -> u32 {
        // SAFETY: `virt` is the ioremap (uncached) mapping of this IOAPIC's
        // register window (IOREGSEL at +0, IOWIN at +0x10, inside one page).
        // The select/data pair is only used under the IOAPICS lock, with
        // interrupts off, so no other access interleaves.
        unsafe {
            core::ptr::with_exposed_provenance_mut::<u32>(self.virt as usize + IOREGSEL)
                .write_volatile(reg);
            core::ptr::with_exposed_provenance::<u32>(self.virt as usize + IOWIN).read_volatile()
        }
    }

    fn write(&self, reg: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::with_exposed_provenance_mut::<u32>(self.virt as usize + IOREGSEL)
                .write_volatile(reg);
            core::ptr::with_exposed_provenance_mut::<u32>(self.virt as usize + IOWIN)
                .write_volatile(value);
        }
    }

    fn write_rte(&self, pin: u32, rte: u64) {
        // Mask first, so a half-written entry never fires; high word, then
        // the low word that carries the mask bit.
        self.write(REG_REDTBL + 2 * pin, (rte as u32) | RTE_MASKED as u32);
        self.write(REG_REDTBL + 2 * pin + 1, (rte >> 32) as u32);
        self.write(REG_REDTBL + 2 * pin, rte as u32);
    }
}

static IOAPICS: Mutex<[Option<IoApic>; MAX_IOAPICS]> = Mutex::new([None; MAX_IOAPICS]);

fn with_ioapics<R>(f: impl FnOnce(&mut [Option<IoApic>; MAX_IOAPICS]) -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(|| f(&mut IOAPICS.lock()))
}

/// Maps every IOAPIC of the MADT and masks all of its pins.
pub fn init(info: &crate::acpi::AcpiInfo) {
    for (i, io) in info.ioapics().iter().enumerate().take(MAX_IOAPICS) {
        let virt = match crate::memory::ioremap::ioremap_caller(u64::from(io.addr), 0x20, "IOAPIC")
        {
            Ok(v) => v.0,
            Err(e) => {
                log::error!("ioapic[{}]: ioremap of {:#x}: {e}", io.id, io.addr);
                continue;
            }
        };
        let mut chip = IoApic {
            virt,
            gsi_base: io.gsi_base,
            nr_pins: 0,
        };
        let version = chip.read(REG_VERSION);
        chip.nr_pins = ((version >> 16) & 0xff) + 1;
        for pin in 0..chip.nr_pins {
            chip.write_rte(pin, RTE_MASKED);
        }
        log::info!(
            "ioapic[{}]: id {} version {:#x} at phys {:#x} (ioremap {virt:#x}), GSI {}-{}, all masked",
            i,
            chip.read(REG_ID) >> 24,
            version & 0xff,
            io.addr,
            io.gsi_base,
            io.gsi_base + chip.nr_pins - 1
        );
        with_ioapics(|chips| chips[i] = Some(chip));
    }
}

fn locate(chips: &[Option<IoApic>], gsi: u32) -> Option<(IoApic, u32)> {
    chips
        .iter()
        .flatten()
        .find(|c| gsi >= c.gsi_base && gsi < c.gsi_base + c.nr_pins)
        .map(|c| (*c, gsi - c.gsi_base))
}

/// Routes `gsi` to `vector` on the CPU with local APIC id `dest` (fixed
/// delivery, physical destination), unmasked. False if no IOAPIC has it.
pub fn route(gsi: u32, vector: u8, level: bool, active_low: bool, dest: u8) -> bool {
    with_ioapics(|chips| {
        let Some((chip, pin)) = locate(chips, gsi) else {
            return false;
        };
        let mut rte = u64::from(vector) | (u64::from(dest) << 56);
        if level {
            rte |= RTE_LEVEL;
        }
        if active_low {
            rte |= RTE_ACTIVE_LOW;
        }
        chip.write_rte(pin, rte);
        true
    })
}

/// Masks `gsi` (interrupt handlers: interrupts are already off).
pub fn mask(gsi: u32) {
    set_mask(gsi, true);
}

/// Unmasks `gsi`.
pub fn unmask(gsi: u32) {
    set_mask(gsi, false);
}

fn set_mask(gsi: u32, masked: bool) {
    with_ioapics(|chips| {
        if let Some((chip, pin)) = locate(chips, gsi) {
            let lo = chip.read(REG_REDTBL + 2 * pin);
            let lo = if masked {
                lo | RTE_MASKED as u32
            } else {
                lo & !(RTE_MASKED as u32)
            };
            chip.write(REG_REDTBL + 2 * pin, lo);
        }
    })
}
