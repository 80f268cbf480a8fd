#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod types;
pub mod page;
pub mod gfp;
pub mod zone;
pub mod page_alloc;
pub mod memblock;
pub mod cmdline;
pub mod pgtable;
pub mod procfs;
pub mod selftest;
pub mod platform;
pub mod manager;
pub mod crc32;
pub mod layout;
pub mod dma;
pub mod slab;
pub mod kmalloc;
pub mod mempool;
pub mod vmalloc;
pub mod highmem;
