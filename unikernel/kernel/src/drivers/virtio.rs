//! virtio-net (virtio 1.x §5.1) as a `smoltcp::phy::Device`, over either
//! transport `virtio-drivers` offers — virtio-pci (§4.1: q35) or
//! virtio-mmio (§4.2: QEMU `microvm`, Firecracker) — and the [`KernelHal`]
//! that gives `virtio-drivers` memory from `mm`. One driver: the transports
//! differ only in how [`probe_pci`] / [`probe_mmio`] find the device and
//! its interrupt; both hand a [`VirtioTransport`] to the same set-up.
//!
//! Buffers: the driver uses `VirtIONetRaw` and owns its frames. Receive and
//! transmit frames are 2 KiB slots in two coherent DMA buffers ("virtio-net
//! rx" / "virtio-net tx", [`QUEUE_SIZE`] slots each); the virtqueues' rings
//! come from `Hal::dma_alloc` ("virtio-net queue"). All of it is in the
//! direct map below 4 GiB, so `Hal::share` hands the device physical
//! addresses and nothing is bounced on the data path; buffers that are not
//! (stack, vmalloc, HighMem) go through the bounce pool.
//!
//! Interrupts: PCI INTx, or the virtio-mmio line, through the IOAPIC,
//! level-triggered. The handler masks the pin and flags the event; the
//! main loop reads the ISR / InterruptStatus and acknowledges (which
//! deasserts the line), unmasks, and polls the queues.

use core::cell::RefCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use alloc::vec;
use mm::cmdline::virtio_mmio::VirtioMmioDevice;
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::virtio_device_type;
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal};
use x86_64::structures::paging::Translate;

use mm::dma::{DmaBuffer, DmaDirection, MAX_SEGMENTS, PhysSegment};
use mm::types::{PAGE_OFFSET, PAGE_SIZE};

use super::dma;
use super::pci::{self, Ecam, PciFunction};
use super::transport::VirtioTransport;
use crate::arch::x86_64::idt::TrapFrame;
use crate::arch::x86_64::{apic, idt, ioapic, paging as early};
use crate::memory::{ioremap, paging::kernel_page_table};

/// Descriptors per virtqueue, and frames per direction.
pub const QUEUE_SIZE: usize = 64;
/// Bytes per frame slot: virtio-net header (12) + a 1514-byte frame fit.
pub const SLOT_BYTES: usize = 2048;
/// Vector of the NIC's interrupt (INTx or the virtio-mmio line).
pub const NIC_VECTOR: u8 = 0x30;
/// Largest Ethernet frame without FCS.
const MAX_FRAME: usize = 1514;

// ---------------------------------------------------------------------------
// Hal

/// `virtio_drivers::Hal` on the kernel's memory manager.
pub struct KernelHal;

fn dma_direction(dir: BufferDirection) -> DmaDirection {
    match dir {
        BufferDirection::DriverToDevice => DmaDirection::ToDevice,
        BufferDirection::DeviceToDriver => DmaDirection::FromDevice,
        BufferDirection::Both => DmaDirection::Bidirectional,
    }
}

/// Device address of `[va, va + len)` if the device can use it as is: in
/// the direct map (hence physically contiguous) and below 4 GiB.
fn direct_dma_addr(va: u64, len: u64) -> Option<u64> {
    let pa = va.checked_sub(PAGE_OFFSET)?;
    let end = pa.checked_add(len)?;
    (early::phys_accessible(pa, len) && end <= 1 << 32).then_some(pa)
}

/// Physical segments of a buffer outside the direct map, by page-table walk.
fn segments(va: u64, len: u64, out: &mut [PhysSegment; MAX_SEGMENTS]) -> Option<usize> {
    let pt = kernel_page_table();
    let mut n = 0usize;
    let mut done = 0;
    while done < len {
        let v = va + done;
        let chunk = (PAGE_SIZE - v % PAGE_SIZE).min(len - done);
        let pa = pt
            .translate_addr(x86_64::VirtAddr::try_new(v).ok()?)?
            .as_u64();
        match n.checked_sub(1).map(|i| &mut out[i]) {
            Some(last) if last.addr.0 + last.len == pa => last.len += chunk,
            _ => {
                *out.get_mut(n)? = PhysSegment {
                    addr: mm::types::PhysAddr(pa),
                    len: chunk,
                };
                n += 1;
            }
        }
        done += chunk;
    }
    Some(n)
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned, physically contiguous
// memory from the buddy allocator that no one else references until
// `dma_dealloc`; `mmio_phys_to_virt` returns uncached mappings of the BAR
// (never aliasing Rust objects: ioremap refuses allocator-owned RAM);
// `share` returns an address at which the device sees the buffer's bytes
// (itself, or a bounce copy), and `unshare` copies back before the driver
// reads.
unsafe impl Hal for KernelHal {
    fn dma_alloc(
        pages: usize,
        _direction: BufferDirection,
    ) -> (virtio_drivers::PhysAddr, NonNull<u8>) {
        match dma::dma_alloc_coherent(pages as u64 * PAGE_SIZE, "virtio-net queue") {
            Ok(buf) => {
                // Ownership passes to the driver (the registry keeps the
                // record); `dma_dealloc` frees by address.
                let (pa, va) = (buf.dma_addr().0, buf.cpu_addr().0);
                match NonNull::new(core::ptr::with_exposed_provenance_mut::<u8>(va as usize)) {
                    Some(ptr) => (pa, ptr),
                    None => (0, NonNull::dangling()),
                }
            }
            Err(e) => {
                log::error!("virtio: dma_alloc of {pages} pages: {e}");
                // paddr 0 is how the trait reports failure (`Dma::new` checks).
                (0, NonNull::dangling())
            }
        }
    }

    unsafe fn dma_dealloc(
        paddr: virtio_drivers::PhysAddr,
        _vaddr: NonNull<u8>,
        pages: usize,
    ) -> i32 {
        match dma::free_coherent_at(paddr, pages as u64 * PAGE_SIZE) {
            Ok(()) => 0,
            Err(e) => {
                log::error!("virtio: dma_dealloc {paddr:#x}: {e}");
                -1
            }
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: virtio_drivers::PhysAddr, size: usize) -> NonNull<u8> {
        // BARs are mapped whole by `pci::map_bars`; anything else is
        // mapped now.
        let va = ioremap::find(paddr, size as u64).map(|v| v.0).or_else(|| {
            ioremap::ioremap_caller(paddr, size as u64, "virtio-pci")
                .ok()
                .map(|v| v.0)
        });
        match va
            .and_then(|va| NonNull::new(core::ptr::with_exposed_provenance_mut::<u8>(va as usize)))
        {
            Some(ptr) => ptr,
            // The trait has no error path; the transport validated the range
            // against the BAR, so this means the vmalloc window is exhausted.
            None => panic!("virtio: cannot map MMIO {paddr:#x}+{size:#x}"),
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> virtio_drivers::PhysAddr {
        let va = buffer.as_ptr().cast::<u8>().expose_provenance() as u64;
        let len = buffer.len() as u64;
        if let Some(pa) = direct_dma_addr(va, len) {
            return pa;
        }
        let mut segs = [PhysSegment::default(); MAX_SEGMENTS];
        let Some(n) = segments(va, len, &mut segs) else {
            panic!("virtio: share of unmapped or too scattered buffer {va:#x}+{len:#x}");
        };
        match dma::map_single(&segs[..n], dma_direction(direction)) {
            Ok(pa) => pa.0,
            // No error path in the trait; our buffers are all direct-mapped,
            // so this is a driver bug or a bounce pool far too small.
            Err(e) => panic!("virtio: cannot bounce {len} bytes at {va:#x}: {e}"),
        }
    }

    unsafe fn unshare(
        paddr: virtio_drivers::PhysAddr,
        _buffer: NonNull<[u8]>,
        direction: BufferDirection,
    ) {
        if dma::in_bounce_area(paddr)
            && let Err(e) = dma::unmap_single(paddr, dma_direction(direction))
        {
            log::error!("virtio: unshare of bounce mapping {paddr:#x}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------
// Interrupt

static IRQ_PENDING: AtomicBool = AtomicBool::new(false);
/// GSI of the NIC's INTx (`u32::MAX`: none routed).
static IRQ_GSI: AtomicU32 = AtomicU32::new(u32::MAX);

fn nic_interrupt(_frame: &mut TrapFrame) {
    let gsi = IRQ_GSI.load(Ordering::Relaxed);
    if gsi != u32::MAX {
        ioapic::mask(gsi);
    }
    IRQ_PENDING.store(true, Ordering::Release);
    STATS.irqs.fetch_add(1, Ordering::Relaxed);
    apic::eoi();
}

/// Whether the NIC interrupted since the main loop last looked.
pub fn irq_pending() -> bool {
    IRQ_PENDING.load(Ordering::Acquire)
}

/// GSI of `f`'s INTx in APIC mode. On q35 (ICH9) the root-bus slots 0-24
/// route INTx to PIRQ E-H by `(slot + pin) mod 4` (QEMU `ich9_cc_update()`:
/// `irr[slot][intx] = (slot + intx) % 4 + 4`), and PIRQ A-H are wired to
/// IOAPIC inputs 16-23 — what QEMU's DSDT `_PRT` says (GSIE-GSIH), which we
/// cannot evaluate without AML. Elsewhere, the firmware's interrupt line as
/// an ISA IRQ (through the MADT overrides).
fn intx_gsi(f: &PciFunction, q35: bool) -> Option<(u32, &'static str)> {
    if !(1..=4).contains(&f.irq_pin) {
        return None;
    }
    if q35 && f.df.bus == 0 && f.df.device <= 24 {
        let pirq = 4 + (u32::from(f.df.device) + u32::from(f.irq_pin) - 1) % 4;
        return Some((16 + pirq, "q35 _PRT: PIRQ E-H"));
    }
    let info = crate::acpi::info()?;
    (f.irq_line < 16).then(|| (info.isa_irq_to_gsi(f.irq_line), "interrupt line"))
}

// ---------------------------------------------------------------------------
// The device

/// Counters of the NIC, readable without the device.
pub struct NicStats {
    pub rx_packets: AtomicU64,
    pub tx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_dropped: AtomicU64,
    pub tx_dropped: AtomicU64,
    pub irqs: AtomicU64,
}

/// The NIC's counters.
pub static STATS: NicStats = NicStats {
    rx_packets: AtomicU64::new(0),
    tx_packets: AtomicU64::new(0),
    rx_bytes: AtomicU64::new(0),
    tx_bytes: AtomicU64::new(0),
    rx_dropped: AtomicU64::new(0),
    tx_dropped: AtomicU64::new(0),
    irqs: AtomicU64::new(0),
};

type Raw = VirtIONetRaw<KernelHal, VirtioTransport, QUEUE_SIZE>;

/// How the NIC is attached: `/api/net`'s `transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicTransport {
    /// virtio-pci (modern), found on the PCI bus through ECAM.
    Pci,
    /// virtio-mmio, from `virtio_mmio.device=` or the DSDT.
    Mmio,
}

impl NicTransport {
    /// `"virtio-pci"` / `"virtio-mmio"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            NicTransport::Pci => "virtio-pci",
            NicTransport::Mmio => "virtio-mmio",
        }
    }
}

/// Where the NIC's interrupt goes: a GSI of the IOAPIC, and how to say it.
struct NicIrq {
    gsi: u32,
    how: &'static str,
}

struct Inner {
    raw: Raw,
    /// Receive slot posted under each descriptor token.
    rx_slot_of: [u16; QUEUE_SIZE],
    /// Transmit slot and length in flight under each token.
    tx_slot_of: [Option<(u16, u16)>; QUEUE_SIZE],
    tx_free: [u16; QUEUE_SIZE],
    nr_tx_free: usize,
}

impl Inner {
    fn pop_tx_slot(&mut self) -> Option<u16> {
        self.nr_tx_free = self.nr_tx_free.checked_sub(1)?;
        Some(self.tx_free[self.nr_tx_free])
    }

    fn push_tx_slot(&mut self, slot: u16) {
        if let Some(free) = self.tx_free.get_mut(self.nr_tx_free) {
            *free = slot;
            self.nr_tx_free += 1;
        }
    }
}

/// The frame memory: two coherent buffers of [`QUEUE_SIZE`] slots.
struct Frames {
    rx: DmaBuffer,
    tx: DmaBuffer,
}

impl Frames {
    /// Slot `slot` of `area`.
    ///
    /// # Safety
    /// The caller must own the slot: not posted to the device, and no other
    /// slice of it alive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slot(area: &DmaBuffer, slot: u16) -> &mut [u8] {
        let base = area.cpu_addr().0 as usize + usize::from(slot) * SLOT_BYTES;
        // SAFETY: `area` is a live coherent buffer of QUEUE_SIZE * SLOT_BYTES
        // bytes in the direct map (mapped writable) and `slot < QUEUE_SIZE`
        // (slot numbers come from our own tables); exclusivity is the
        // caller's promise.
        unsafe {
            core::slice::from_raw_parts_mut(
                core::ptr::with_exposed_provenance_mut(base),
                SLOT_BYTES,
            )
        }
    }
}

/// State shared by the tokens handed to smoltcp.
struct Shared {
    inner: RefCell<Inner>,
    frames: Frames,
    hdr_len: usize,
}

impl Shared {
    /// Gives receive slot `slot` back to the device.
    fn repost_rx(&self, slot: u16) {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            log::error!("virtio-net: rx slot {slot} lost (device busy)");
            return;
        };
        // SAFETY: the slot came back from the device (receive_complete) and
        // its token has been consumed; from here the device owns it again
        // and we keep no slice of it.
        let buf = unsafe { Frames::slot(&self.frames.rx, slot) };
        // SAFETY: `buf` stays valid (coherent buffer, never freed) and is not
        // touched until the device returns it through `receive`.
        match unsafe { inner.raw.receive_begin(buf) } {
            Ok(token) => match inner.rx_slot_of.get_mut(usize::from(token)) {
                Some(s) => *s = slot,
                None => log::error!("virtio-net: rx token {token} out of range"),
            },
            Err(e) => log::error!("virtio-net: re-posting rx slot {slot}: {e}"),
        }
    }

    /// Collects finished transmissions, freeing their slots.
    fn reclaim_tx(&self, inner: &mut Inner) {
        while let Some(token) = inner.raw.poll_transmit() {
            let Some(Some((slot, len))) = inner.tx_slot_of.get(usize::from(token)).copied() else {
                log::error!("virtio-net: unknown tx token {token}");
                return;
            };
            // SAFETY: the slot was handed to the device with this token and
            // the device has finished with it; the same slice is passed back.
            let buf = unsafe { Frames::slot(&self.frames.tx, slot) };
            // SAFETY: same buffer as `transmit_begin` got for `token`.
            match unsafe { inner.raw.transmit_complete(token, &buf[..usize::from(len)]) } {
                Ok(_) => {
                    inner.tx_slot_of[usize::from(token)] = None;
                    inner.push_tx_slot(slot);
                }
                Err(e) => {
                    log::error!("virtio-net: transmit_complete({token}): {e}");
                    return;
                }
            }
        }
    }
}

/// The virtio-net device as smoltcp sees it.
pub struct VirtioNet {
    shared: Shared,
    mac: [u8; 6],
    transport: NicTransport,
}

impl VirtioNet {
    /// The NIC's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// How the NIC is attached.
    pub fn transport(&self) -> NicTransport {
        self.transport
    }

    /// If the NIC interrupted: acknowledge it at the device (reading the
    /// ISR deasserts INTx) and unmask the pin. Call before polling, with
    /// interrupts off.
    pub fn handle_irq(&mut self) {
        if IRQ_PENDING.swap(false, Ordering::AcqRel) {
            let _ = self.shared.inner.get_mut().raw.ack_interrupt();
            let gsi = IRQ_GSI.load(Ordering::Relaxed);
            if gsi != u32::MAX {
                ioapic::unmask(gsi);
            }
        }
    }
}

/// Finds the virtio-net PCI function, brings it up and routes its INTx
/// (cf. `virtio_pci_probe()`). `None` (logged) if there is none or it fails.
pub fn probe_pci(root: &mut PciRoot<Ecam>, functions: &[PciFunction]) -> Option<VirtioNet> {
    let Some(f) = functions
        .iter()
        .find(|f| virtio_device_type(&f.info) == Some(DeviceType::Network))
    else {
        log::error!("virtio-net: no virtio-net PCI function");
        return None;
    };
    if !pci::map_bars(root, f, "virtio-net_BAR") {
        return None;
    }
    let transport = PciTransport::new::<KernelHal, _>(root, f.df);
    pci::enable_device(root, f.df);
    let transport = match transport {
        Ok(t) => t,
        Err(e) => {
            log::error!("virtio-net {}: transport: {e}", f.df);
            return None;
        }
    };
    let q35 = functions.iter().any(|g| {
        g.df.bus == 0
            && g.df.device == 0
            && (g.info.vendor_id, g.info.device_id) == (0x8086, 0x29c0)
    });
    let irq = intx_gsi(f, q35).map(|(gsi, how)| NicIrq { gsi, how });
    if irq.is_none() {
        log::error!("virtio-net {}: no usable INTx", f.df);
    }
    let name = NicName::Pci(f.df);
    setup(
        VirtioTransport::Pci(transport),
        NicTransport::Pci,
        irq,
        name,
    )
}

/// Finds virtio-net among the virtio-mmio transports the command line or
/// the DSDT listed (virtio 1.x §4.2.2: magic "virt", device ID 1), brings it
/// up and routes its line. Transports with another device, or none (device
/// ID 0), are skipped. `None` (logged) if no network device is there.
/// cf. `virtio_mmio_probe()`, for each `vm_cmdline_set()` / ACPI device.
pub fn probe_mmio(devices: &[VirtioMmioDevice]) -> Option<VirtioNet> {
    for d in devices {
        let Ok(size) = usize::try_from(d.size) else {
            continue;
        };
        let va = match ioremap::ioremap_caller(d.base, d.size, "virtio-mmio") {
            Ok(v) => v.0,
            Err(e) => {
                log::error!("virtio-mmio {:#x}+{:#x}: ioremap: {e}", d.base, d.size);
                continue;
            }
        };
        let Some(header) = NonNull::new(core::ptr::with_exposed_provenance_mut::<VirtIOHeader>(
            va as usize,
        )) else {
            continue;
        };
        // SAFETY: `header` is the uncached ioremap of the whole
        // `[base, base + size)` window the firmware or command line gave
        // (register header and config space), 4 KiB-page mapped for the
        // kernel's lifetime (never unmapped), so valid for `'static` and
        // aligned (transports sit on 512-byte boundaries at least). The
        // constructor checks the magic and version before anything else.
        let transport = match unsafe { MmioTransport::new(header, size) } {
            Ok(t) => t,
            Err(e) => {
                log::warn!("virtio-mmio {:#x}: {e}; skipped", d.base);
                continue;
            }
        };
        // virtio 1.x §4.2.2: Version 1 is the legacy interface, 2 modern.
        let version = u32::from(transport.version());
        if transport.device_type() != DeviceType::Network {
            log::info!(
                "virtio-mmio {:#x}: device ID {} (version {version}); not driven",
                d.base,
                transport.device_type() as u32
            );
            continue;
        }
        log::info!(
            "virtio-mmio {:#x}+{:#x}: network device, version {version}, GSI {}",
            d.base,
            d.size,
            d.irq
        );
        let irq = Some(NicIrq {
            gsi: d.irq,
            how: "virtio-mmio line",
        });
        let name = NicName::Mmio(d.base);
        return setup(
            VirtioTransport::Mmio(transport),
            NicTransport::Mmio,
            irq,
            name,
        );
    }
    log::error!(
        "virtio-net: none of {} virtio-mmio transport(s) is a network device",
        devices.len()
    );
    None
}

/// The NIC in log lines: its PCI address or its MMIO base.
#[derive(Clone, Copy)]
enum NicName {
    Pci(virtio_drivers::transport::pci::bus::DeviceFunction),
    Mmio(u64),
}

impl core::fmt::Display for NicName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NicName::Pci(df) => write!(f, "{df}"),
            NicName::Mmio(base) => write!(f, "mmio@{base:#x}"),
        }
    }
}

/// The transport-independent part (cf. `virtnet_probe()`): feature
/// negotiation and queues
/// (`VirtIONetRaw::new`), frame buffers, receive slots posted, the
/// interrupt routed through the IOAPIC (level, active high: PCI INTx and
/// the virtio-mmio line alike stay asserted until acknowledged).
fn setup(
    transport: VirtioTransport,
    kind: NicTransport,
    irq: Option<NicIrq>,
    name: NicName,
) -> Option<VirtioNet> {
    let raw = match Raw::new(transport) {
        Ok(r) => r,
        Err(e) => {
            log::error!("virtio-net {name}: init: {e}");
            return None;
        }
    };
    let mut probe_hdr = [0u8; 64];
    let hdr_len = match raw.fill_buffer_header(&mut probe_hdr) {
        Ok(n) => n,
        Err(e) => {
            log::error!("virtio-net {name}: header size: {e}");
            return None;
        }
    };
    let area = (QUEUE_SIZE * SLOT_BYTES) as u64;
    let (rx, tx) = match (
        dma::dma_alloc_coherent(area, "virtio-net rx"),
        dma::dma_alloc_coherent(area, "virtio-net tx"),
    ) {
        (Ok(rx), Ok(tx)) => (rx, tx),
        (rx, tx) => {
            for buf in [rx, tx].into_iter().flatten() {
                let _ = dma::dma_free_coherent(buf);
            }
            log::error!("virtio-net {name}: no memory for frame buffers");
            return None;
        }
    };
    let mac = raw.mac_address();
    let mut tx_free = [0u16; QUEUE_SIZE];
    for (i, s) in tx_free.iter_mut().enumerate() {
        *s = i as u16;
    }
    let net = VirtioNet {
        shared: Shared {
            inner: RefCell::new(Inner {
                raw,
                rx_slot_of: [0; QUEUE_SIZE],
                tx_slot_of: [None; QUEUE_SIZE],
                tx_free,
                nr_tx_free: QUEUE_SIZE,
            }),
            frames: Frames { rx, tx },
            hdr_len,
        },
        mac,
        transport: kind,
    };
    for slot in 0..QUEUE_SIZE as u16 {
        net.shared.repost_rx(slot);
    }

    match irq {
        Some(NicIrq { gsi, how }) => {
            IRQ_GSI.store(gsi, Ordering::Relaxed);
            idt::set_irq_handler(NIC_VECTOR, nic_interrupt);
            // Level-triggered; QEMU's DSDT declares PCI links and the
            // virtio-mmio lines active-high (its IOAPIC model ignores
            // polarity anyway).
            if ioapic::route(gsi, NIC_VECTOR, true, false, apic::id()) {
                log::info!("virtio-net {name}: GSI {gsi} ({how}) -> vector {NIC_VECTOR:#x}, level");
            } else {
                IRQ_GSI.store(u32::MAX, Ordering::Relaxed);
                log::error!("virtio-net {name}: no IOAPIC has GSI {gsi}; timer polling only");
            }
        }
        None => log::error!("virtio-net {name}: no interrupt; timer polling only"),
    }
    let mut net = net;
    net.shared.inner.get_mut().raw.enable_interrupts();
    log::info!(
        "virtio-net {name} ({}): MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {QUEUE_SIZE} x {SLOT_BYTES} B rx/tx slots at {:#x}/{:#x}, header {hdr_len} B",
        kind.as_str(),
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        net.shared.frames.rx.dma_addr().0,
        net.shared.frames.tx.dma_addr().0,
    );
    Some(net)
}

/// A received frame; the slot goes back to the device when dropped.
pub struct NetRx<'a> {
    shared: &'a Shared,
    slot: u16,
    hdr: usize,
    len: usize,
}

impl smoltcp::phy::RxToken for NetRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        // SAFETY: the device returned this slot (receive_complete) and it is
        // re-posted only when `self` drops, after `f`; `hdr + len <=
        // SLOT_BYTES` was checked in `receive`.
        let slot = unsafe { Frames::slot(&self.shared.frames.rx, self.slot) };
        f(&slot[self.hdr..self.hdr + self.len])
    }
}

impl Drop for NetRx<'_> {
    fn drop(&mut self) {
        self.shared.repost_rx(self.slot);
    }
}

/// Permission to send one frame.
pub struct NetTx<'a> {
    shared: &'a Shared,
}

impl smoltcp::phy::TxToken for NetTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let shared = self.shared;
        let slot = {
            let mut inner = shared.inner.borrow_mut();
            shared.reclaim_tx(&mut inner);
            inner.pop_tx_slot()
        };
        let total = shared.hdr_len + len;
        let Some(slot) = slot.filter(|_| len <= MAX_FRAME && total <= SLOT_BYTES) else {
            // No slot (not expected: tokens are handed out only with one
            // free) or an oversized frame: build it, count it, drop it.
            STATS.tx_dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(slot) = slot {
                shared.inner.borrow_mut().push_tx_slot(slot);
            }
            return f(&mut vec![0u8; len]);
        };
        // SAFETY: the slot was just taken off the free list: the device does
        // not own it and no other slice of it exists.
        let buf = unsafe { Frames::slot(&shared.frames.tx, slot) };
        let r = f(&mut buf[shared.hdr_len..total]);
        let mut inner = shared.inner.borrow_mut();
        let sent = inner.raw.fill_buffer_header(buf).is_ok()
            // SAFETY: the slot stays untouched until `reclaim_tx` sees its
            // token come back; it lives as long as the device.
            && match unsafe { inner.raw.transmit_begin(&buf[..total]) } {
                Ok(token) => match inner.tx_slot_of.get_mut(usize::from(token)) {
                    Some(e) => {
                        *e = Some((slot, total as u16));
                        true
                    }
                    None => false,
                },
                Err(e) => {
                    log::warn!("virtio-net: transmit_begin: {e}");
                    false
                }
            };
        if sent {
            STATS.tx_packets.fetch_add(1, Ordering::Relaxed);
            STATS.tx_bytes.fetch_add(len as u64, Ordering::Relaxed);
        } else {
            STATS.tx_dropped.fetch_add(1, Ordering::Relaxed);
            inner.push_tx_slot(slot);
        }
        r
    }
}

impl Device for VirtioNet {
    type RxToken<'a> = NetRx<'a>;
    type TxToken<'a> = NetTx<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(NetRx<'_>, NetTx<'_>)> {
        let shared = &self.shared;
        let mut inner = shared.inner.borrow_mut();
        shared.reclaim_tx(&mut inner);
        if inner.nr_tx_free == 0 {
            return None;
        }
        let token = inner.raw.poll_receive()?;
        let Some(&slot) = inner.rx_slot_of.get(usize::from(token)) else {
            log::error!("virtio-net: rx token {token} out of range");
            return None;
        };
        // SAFETY: the device has completed this slot's descriptor, so it no
        // longer writes it; the slice is the one `receive_begin` got.
        let buf = unsafe { Frames::slot(&shared.frames.rx, slot) };
        // SAFETY: `token` came from `poll_receive` and `buf` is the buffer
        // posted under it.
        let done = unsafe { inner.raw.receive_complete(token, buf) };
        drop(inner);
        match done {
            Ok((hdr, len)) if hdr + len <= SLOT_BYTES && len > 0 => {
                STATS.rx_packets.fetch_add(1, Ordering::Relaxed);
                STATS.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
                Some((
                    NetRx {
                        shared,
                        slot,
                        hdr,
                        len,
                    },
                    NetTx { shared },
                ))
            }
            other => {
                if let Err(e) = other {
                    log::warn!("virtio-net: receive_complete: {e}");
                }
                STATS.rx_dropped.fetch_add(1, Ordering::Relaxed);
                shared.repost_rx(slot);
                None
            }
        }
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<NetTx<'_>> {
        let shared = &self.shared;
        let mut inner = shared.inner.borrow_mut();
        shared.reclaim_tx(&mut inner);
        (inner.nr_tx_free > 0).then_some(NetTx { shared })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(QUEUE_SIZE);
        caps
    }
}
