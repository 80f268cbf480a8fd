//! Memory bring-up. Stub: the lead replaces it with the final page tables,
//! memblock and buddy wiring.

/// Initialises memory management from the firmware map.
pub fn init(boot: &crate::pvh::BootInfo) {
    log::info!(
        "memory: init stub ({} map entries, {} MiB usable); boot tables stay live",
        boot.nr_memmap,
        boot.ram_bytes() >> 20
    );
}
