//! `virtio_mmio.device=<size>@<base>:<irq>[:<id>]`: a virtio-mmio transport
//! described on the kernel command line, as QEMU's `microvm` (with
//! `auto-kernel-cmdline=on`, its default when ACPI is off) and Firecracker
//! pass them (cf. Linux `vm_cmdline_set()` in drivers/virtio/virtio_mmio.c).
//!
//! Linux registers one platform device per occurrence, so, unlike the other
//! options, a repeated `virtio_mmio.device=` adds a device rather than
//! replacing the previous value; up to [`MAX_DEVICES`] are kept.
//!
//! Syntax, as Linux reads it: `<size>` is a `memparse()` SIZE (`512`,
//! `4K`, `0x200`); `<base>` is decimal or `0x` hex (`%lli`, without
//! Linux's octal); `<irq>` is a non-zero decimal GSI; the optional `<id>`
//! is the decimal platform-device id, which the kernel only logs. Unlike
//! Linux, a zero size or a range past the 64-bit address space is refused.

use core::fmt;

use super::{SizeError, parse_size};

/// Transports kept from the command line (QEMU's `microvm` has at most 24,
/// but attaches a command-line entry only for those with a device; eight
/// is its transport count without a second IOAPIC).
pub const MAX_DEVICES: usize = 8;

/// One `virtio_mmio.device=` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtioMmioDevice {
    /// Physical address of the transport's register window.
    pub base: u64,
    /// Length of the window in bytes (QEMU and Firecracker: 512 / 4 KiB).
    pub size: u64,
    /// The interrupt line: a GSI of the IOAPIC.
    pub irq: u32,
    /// The `:<id>` suffix, if given.
    pub id: Option<u32>,
}

/// Why an entry did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioMmioError {
    /// The `<size>` part.
    Size(SizeError),
    /// Zero size, or `base + size` past 2^64.
    BadRange,
    /// No `@` after the size.
    MissingBase,
    /// `<base>` is not a decimal or `0x` hex number.
    BadBase,
    /// No `:<irq>` after the base.
    MissingIrq,
    /// `<irq>` is not a decimal number, or is 0.
    BadIrq,
    /// `<id>` is not a decimal number, or something follows it.
    BadId,
    /// More than [`MAX_DEVICES`] entries.
    TooMany,
}

impl fmt::Display for VirtioMmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VirtioMmioError::Size(e) => write!(f, "size: {e}"),
            VirtioMmioError::BadRange => f.write_str("empty or overflowing range"),
            VirtioMmioError::MissingBase => f.write_str("missing @<base>"),
            VirtioMmioError::BadBase => f.write_str("base is not a decimal or 0x hex number"),
            VirtioMmioError::MissingIrq => f.write_str("missing :<irq>"),
            VirtioMmioError::BadIrq => f.write_str("irq must be a non-zero decimal number"),
            VirtioMmioError::BadId => f.write_str("id must be a decimal number, last"),
            VirtioMmioError::TooMany => write!(f, "more than {MAX_DEVICES} devices"),
        }
    }
}

/// The transports of the command line, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtioMmioDevices {
    devices: [VirtioMmioDevice; MAX_DEVICES],
    len: usize,
}

impl VirtioMmioDevices {
    /// No devices.
    pub const fn new() -> Self {
        VirtioMmioDevices {
            devices: [VirtioMmioDevice {
                base: 0,
                size: 0,
                irq: 0,
                id: None,
            }; MAX_DEVICES],
            len: 0,
        }
    }

    /// The entries, in command-line order.
    pub fn as_slice(&self) -> &[VirtioMmioDevice] {
        &self.devices[..self.len]
    }

    /// Appends `d`; refuses past [`MAX_DEVICES`] (nothing changes then).
    pub fn push(&mut self, d: VirtioMmioDevice) -> Result<(), VirtioMmioError> {
        let slot = self
            .devices
            .get_mut(self.len)
            .ok_or(VirtioMmioError::TooMany)?;
        *slot = d;
        self.len += 1;
        Ok(())
    }
}

/// Decimal, or hex after `0x`/`0X`; nothing else.
fn parse_number(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn parse_decimal_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses the value of one `virtio_mmio.device=` (cf. `vm_cmdline_set()`).
pub fn parse_device(value: &str) -> Result<VirtioMmioDevice, VirtioMmioError> {
    let (size, rest) = value.split_once('@').ok_or(VirtioMmioError::MissingBase)?;
    let size = parse_size(size).map_err(VirtioMmioError::Size)?;
    let (base, rest) = rest.split_once(':').ok_or(VirtioMmioError::MissingIrq)?;
    let base = parse_number(base).ok_or(VirtioMmioError::BadBase)?;
    let (irq, id) = match rest.split_once(':') {
        Some((irq, id)) => (irq, Some(id)),
        None => (rest, None),
    };
    let irq = parse_decimal_u32(irq)
        .filter(|&i| i != 0)
        .ok_or(VirtioMmioError::BadIrq)?;
    let id = match id {
        Some(id) => Some(parse_decimal_u32(id).ok_or(VirtioMmioError::BadId)?),
        None => None,
    };
    if size == 0 || base.checked_add(size).is_none() {
        return Err(VirtioMmioError::BadRange);
    }
    Ok(VirtioMmioDevice {
        base,
        size,
        irq,
        id,
    })
}

/// ACPI `_HID` of a virtio-mmio transport (Linux `virtio_mmio_acpi_match`).
pub const ACPI_HID: &[u8] = b"LNRO0005";

/// Finds the virtio-mmio transports a DSDT declares, as QEMU's `microvm`
/// (with ACPI on) and Firecracker write them: a `Device` whose
/// `Name (_HID, "LNRO0005")` is followed by `Name (_CRS, ResourceTemplate
/// { Memory32Fixed (…, base, length) Interrupt (…) { gsi } })`.
///
/// This is a scan of the static AML bytes, not an interpreter (the kernel
/// has no AML support): after each `"LNRO0005"` string it takes the first
/// Memory32Fixed descriptor (ACPI 6.5 §6.4.3.4: `86 09 00 info base len`)
/// and the first Extended Interrupt descriptor after it (§6.4.3.6: `89 len
/// len flags count irq…`) before the next `"LNRO0005"`. A `_CRS` computed by
/// a method would not be found; every entry is then checked at the device
/// (magic "virt") before use. Entries past [`MAX_DEVICES`] are dropped.
/// cf. Linux `acpi_create_platform_device()` feeding `virtio_mmio_probe()`.
pub fn scan_dsdt(aml: &[u8]) -> VirtioMmioDevices {
    let mut found = VirtioMmioDevices::default();
    let hid_at = |from: usize| -> Option<usize> {
        aml.get(from..)?
            .windows(ACPI_HID.len() + 1)
            .position(|w| &w[..ACPI_HID.len()] == ACPI_HID && w[ACPI_HID.len()] == 0)
            .map(|i| from + i)
    };
    let u32_at =
        |i: usize| -> Option<u32> { Some(u32::from_le_bytes(aml.get(i..i + 4)?.try_into().ok()?)) };
    let mut next = hid_at(0);
    while let Some(start) = next {
        let body_start = start + ACPI_HID.len() + 1;
        next = hid_at(body_start);
        let body = &aml[body_start..next.unwrap_or(aml.len())];
        let Some(mem) = body.windows(3).position(|w| w == [0x86, 0x09, 0x00]) else {
            continue;
        };
        let mem = body_start + mem;
        let (Some(base), Some(size)) = (u32_at(mem + 4), u32_at(mem + 8)) else {
            continue;
        };
        // Extended Interrupt: tag 0x89, length >= 6, at least one entry.
        let irq = body
            .get(mem - body_start + 12..)
            .unwrap_or(&[])
            .windows(5)
            .position(|w| w[0] == 0x89 && u16::from_le_bytes([w[1], w[2]]) >= 6 && w[4] >= 1)
            .and_then(|i| u32_at(mem + 12 + i + 5));
        let Some(irq) = irq.filter(|&i| i != 0) else {
            continue;
        };
        if size == 0 {
            continue;
        }
        let device = VirtioMmioDevice {
            base: u64::from(base),
            size: u64::from(size),
            irq,
            id: None,
        };
        if found.push(device).is_err() {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_microvm_and_firecracker_forms() {
        // What QEMU's microvm appends (`microvm_get_mmio_cmdline()`).
        assert_eq!(
            parse_device("512@0xfeb00000:5"),
            Ok(VirtioMmioDevice {
                base: 0xfeb0_0000,
                size: 512,
                irq: 5,
                id: None
            })
        );
        // Firecracker: `4K@0xd0000000:5` (size with a suffix).
        assert_eq!(
            parse_device("4K@0xd0000000:5"),
            Ok(VirtioMmioDevice {
                base: 0xd000_0000,
                size: 4096,
                irq: 5,
                id: None
            })
        );
        // Decimal base, an id, hex size.
        assert_eq!(
            parse_device("0x200@4272947200:17:3"),
            Ok(VirtioMmioDevice {
                base: 0xfeb0_0000,
                size: 0x200,
                irq: 17,
                id: Some(3)
            })
        );
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        use VirtioMmioError::*;
        let cases: &[(&str, VirtioMmioError)] = &[
            ("", MissingBase),
            ("512", MissingBase),
            ("@0x1000:5", Size(SizeError::Empty)),
            ("12Q@0x1000:5", Size(SizeError::BadSuffix)),
            ("512@0x1000", MissingIrq),
            ("512@:5", BadBase),
            ("512@0x:5", BadBase),
            ("512@0xfeb0000g:5", BadBase),
            ("512@-1:5", BadBase),
            ("512@0x1000:", BadIrq),
            ("512@0x1000:0", BadIrq),
            ("512@0x1000:x", BadIrq),
            ("512@0x1000:5x", BadIrq),
            ("512@0x1000:99999999999", BadIrq),
            ("512@0x1000:5:", BadId),
            ("512@0x1000:5:1:2", BadId),
            ("512@0x1000:5:a", BadId),
            ("0@0x1000:5", BadRange),
            ("0x1000@0xfffffffffffff001:5", BadRange),
            ("512@0x10000000000000000:5", BadBase),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_device(input), Err(want), "{input:?}");
        }
        // The reason reads as a sentence.
        assert_eq!(MissingIrq.to_string(), "missing :<irq>");
        assert_eq!(
            Size(SizeError::BadSuffix).to_string(),
            "size: bad size suffix"
        );
    }

    #[test]
    fn at_most_max_devices_are_kept() {
        let mut list = VirtioMmioDevices::default();
        for i in 0..MAX_DEVICES as u64 {
            let d = VirtioMmioDevice {
                base: 0x1000 * i,
                size: 512,
                irq: 5 + i as u32,
                id: None,
            };
            assert_eq!(list.push(d), Ok(()));
        }
        let before = list;
        assert_eq!(
            list.push(VirtioMmioDevice::default()),
            Err(VirtioMmioError::TooMany)
        );
        assert_eq!(list, before);
        assert_eq!(list.as_slice().len(), MAX_DEVICES);
        assert_eq!(list.as_slice()[7].irq, 12);
    }

    /// One `Device (VRnn)` as QEMU's `acpi_dsdt_add_virtio()` emits it.
    fn qemu_virtio_device(n: u8, base: u32, gsi: u32) -> std::vec::Vec<u8> {
        let mut crs = std::vec![0x86, 0x09, 0x00, 0x01];
        crs.extend_from_slice(&base.to_le_bytes());
        crs.extend_from_slice(&0x200u32.to_le_bytes());
        crs.extend_from_slice(&[0x89, 0x06, 0x00, 0x09, 0x01]);
        crs.extend_from_slice(&gsi.to_le_bytes());
        crs.extend_from_slice(&[0x79, 0x00]);
        let mut body = std::vec::Vec::new();
        body.extend_from_slice(b"VR0");
        body.push(b'0' + n);
        body.extend_from_slice(b"\x08_HID\x0dLNRO0005\x00");
        body.extend_from_slice(&[0x08, b'_', b'U', b'I', b'D', 0x0a, n]);
        body.extend_from_slice(b"\x08_CCA\x01");
        body.extend_from_slice(b"\x08_CRS\x11");
        body.push((crs.len() + 3) as u8);
        body.extend_from_slice(&[0x0a, crs.len() as u8]);
        body.extend_from_slice(&crs);
        let mut dev = std::vec![0x5b, 0x82, (body.len() + 1) as u8];
        dev.extend_from_slice(&body);
        dev
    }

    #[test]
    fn dsdt_scan_finds_qemu_microvm_devices() {
        // Header-ish noise, another device with a Memory32Fixed (the GED),
        // then two transports.
        let mut aml = std::vec![0u8; 36];
        aml.extend_from_slice(b"\x5b\x82\x20GED_\x08_HID\x0dACPI0013\x00");
        aml.extend_from_slice(&[0x86, 0x09, 0x00, 0x01, 0, 0, 0xea, 0xfe, 4, 0, 0, 0]);
        aml.extend(qemu_virtio_device(0, 0xfeb0_0000, 24));
        aml.extend(qemu_virtio_device(1, 0xfeb0_0200, 25));
        let found = scan_dsdt(&aml);
        assert_eq!(
            found.as_slice(),
            &[
                VirtioMmioDevice {
                    base: 0xfeb0_0000,
                    size: 0x200,
                    irq: 24,
                    id: None
                },
                VirtioMmioDevice {
                    base: 0xfeb0_0200,
                    size: 0x200,
                    irq: 25,
                    id: None
                },
            ]
        );
    }

    #[test]
    fn dsdt_scan_skips_incomplete_entries_and_never_reads_past_the_end() {
        let full = qemu_virtio_device(0, 0xfeb0_0000, 24);
        // Every truncation: no panic; the device appears only when whole
        // up to its interrupt number.
        let irq_end = full.len() - 2;
        for len in 0..=full.len() {
            let found = scan_dsdt(&full[..len]);
            assert_eq!(
                found.as_slice().len(),
                usize::from(len >= irq_end),
                "len {len}"
            );
        }
        // A _HID without a _CRS, then a good one: only the good one.
        let mut aml = b"\x08_HID\x0dLNRO0005\x00\x08_UID\x00".to_vec();
        aml.extend(qemu_virtio_device(1, 0xfeb0_0200, 25));
        assert_eq!(scan_dsdt(&aml).as_slice()[0].base, 0xfeb0_0200);
        assert_eq!(scan_dsdt(&aml).as_slice().len(), 1);
        // GSI 0 is no interrupt.
        assert!(
            scan_dsdt(&qemu_virtio_device(0, 0xfeb0_0000, 0))
                .as_slice()
                .is_empty()
        );
        // Nothing at all.
        assert!(scan_dsdt(b"").as_slice().is_empty());
    }
}
