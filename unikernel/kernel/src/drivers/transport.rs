//! The NIC's transport: virtio-pci or virtio-mmio, one type for the one
//! driver (virtio 1.x §4.1, §4.2).
//!
//! `virtio_drivers::transport::SomeTransport` does the same but carries a
//! third, x86-only variant (pKVM's hypercall PCI) into every method; this
//! kernel never meets that, and the enum below keeps it out of the image.

use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Either transport.
#[derive(Debug)]
pub enum VirtioTransport {
    Pci(PciTransport),
    Mmio(MmioTransport<'static>),
}

macro_rules! each {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            VirtioTransport::Pci($t) => $e,
            VirtioTransport::Mmio($t) => $e,
        }
    };
}

impl Transport for VirtioTransport {
    fn device_type(&self) -> DeviceType {
        each!(self, t => t.device_type())
    }
    fn read_device_features(&mut self) -> u64 {
        each!(self, t => t.read_device_features())
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        each!(self, t => t.write_driver_features(driver_features))
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        each!(self, t => t.max_queue_size(queue))
    }
    fn notify(&mut self, queue: u16) {
        each!(self, t => t.notify(queue))
    }
    fn get_status(&self) -> DeviceStatus {
        each!(self, t => t.get_status())
    }
    fn set_status(&mut self, status: DeviceStatus) {
        each!(self, t => t.set_status(status))
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        each!(self, t => t.set_guest_page_size(guest_page_size))
    }
    fn requires_legacy_layout(&self) -> bool {
        each!(self, t => t.requires_legacy_layout())
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        each!(self, t => t.queue_set(queue, size, descriptors, driver_area, device_area))
    }
    fn queue_unset(&mut self, queue: u16) {
        each!(self, t => t.queue_unset(queue))
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        each!(self, t => t.queue_used(queue))
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        each!(self, t => t.ack_interrupt())
    }
    fn read_config_generation(&self) -> u32 {
        each!(self, t => t.read_config_generation())
    }
    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T> {
        each!(self, t => t.read_config_space(offset))
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<()> {
        each!(self, t => t.write_config_space(offset, value))
    }
}
