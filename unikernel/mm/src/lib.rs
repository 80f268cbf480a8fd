#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
// `unsafe` lives in five audited modules — `sync`, `page_alloc::memmap`,
// `page_alloc::smp`, `page_alloc::zone_lock` and `slab::smp`: the per-CPU
// fast paths and the zone locks; everywhere else it is an error.
#![deny(unsafe_code)]

pub mod cma;
pub mod cmdline;
pub mod compaction;
pub mod crc32;
pub mod dma;
pub mod fault;
pub mod fault_inject;
pub mod gfp;
pub mod highmem;
pub mod iomem;
pub mod kmalloc;
pub mod layout;
pub mod manager;
pub mod memblock;
pub mod mempool;
pub mod oom;
pub mod page;
pub mod page_alloc;
pub mod page_owner;
pub mod percpu;
pub mod pgtable;
pub mod platform;
pub mod procfs;
pub mod reserve;
pub mod selfcheck;
pub mod selftest;
pub mod slab;
pub mod sync;
#[cfg(test)]
mod test_rng;
pub mod trace;
pub mod types;
pub mod vmalloc;
pub mod vmscan;
pub mod vmstat;
pub mod wait;
pub mod zone;
