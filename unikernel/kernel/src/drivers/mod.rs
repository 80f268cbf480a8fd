//! Device drivers: PCI enumeration over ECAM, DMA on `mm`, virtio-net over
//! virtio-pci or virtio-mmio.

pub mod dma;
pub mod pci;
pub mod transport;
pub mod virtio;
