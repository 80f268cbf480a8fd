//! The line between policy and mechanism: what `mm` needs from whoever owns
//! the page tables.
//!
//! `mm` never dereferences an address. When it must touch a frame's bytes
//! (`__GFP_ZERO`, fill, checksum) it asks the [`Platform`] to lend it a
//! mapping of that frame for the duration of a closure: the direct map for
//! lowmem, a `kmap_atomic` window for HighMem. The kernel implements it on
//! real page tables; [`sim::SimPlatform`] implements it on a host arena so
//! the same code is tested by `cargo test`.

use crate::types::{PAGE_SIZE, Pfn};

/// Bytes in one frame, as a `usize` for slices.
pub const FRAME_BYTES: usize = PAGE_SIZE as usize;

/// Access to physical frames through a temporary mapping.
pub trait Platform: Sync {
    /// Runs `f` over the [`FRAME_BYTES`] bytes of frame `pfn`, mapped only
    /// for the duration of the call (cf. `kmap_local_page()` /
    /// `kunmap_local()`). The caller must own the frame.
    fn with_frame(&self, pfn: Pfn, f: &mut dyn FnMut(&mut [u8]));
}

/// A simulated RAM arena for host tests: every frame of `[0, nr_frames)` is
/// backed by a heap buffer, so fill/checksum/zeroing are real byte work.
#[cfg(any(test, feature = "sim"))]
pub mod sim {
    extern crate alloc;
    extern crate std;

    use alloc::vec;
    use alloc::vec::Vec;
    use std::sync::Mutex;

    use super::{FRAME_BYTES, Platform};
    use crate::types::Pfn;

    /// RAM for `nr_frames` frames, initially filled with 0xCC so that a
    /// missing `__GFP_ZERO` shows.
    pub struct SimPlatform {
        ram: Mutex<Vec<u8>>,
    }

    impl SimPlatform {
        /// An arena of `nr_frames` frames.
        pub fn new(nr_frames: u64) -> Self {
            SimPlatform { ram: Mutex::new(vec![0xCC; nr_frames as usize * FRAME_BYTES]) }
        }

        /// A copy of frame `pfn`'s bytes, for assertions.
        pub fn frame(&self, pfn: Pfn) -> Vec<u8> {
            let ram = self.ram.lock().unwrap_or_else(|e| e.into_inner());
            let at = pfn.index() * FRAME_BYTES;
            ram[at..at + FRAME_BYTES].to_vec()
        }
    }

    impl Platform for SimPlatform {
        fn with_frame(&self, pfn: Pfn, f: &mut dyn FnMut(&mut [u8])) {
            let mut ram = self.ram.lock().unwrap_or_else(|e| e.into_inner());
            let at = pfn.index() * FRAME_BYTES;
            f(&mut ram[at..at + FRAME_BYTES]);
        }
    }
}
