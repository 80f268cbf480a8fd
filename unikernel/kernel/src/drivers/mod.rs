//! Device drivers: PCI enumeration over ECAM, DMA on `mm`, virtio-net.

pub mod dma;
pub mod pci;
pub mod virtio;
