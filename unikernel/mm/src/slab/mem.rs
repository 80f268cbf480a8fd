//! How the slab layer touches object memory without `unsafe`.
//!
//! Slab objects live in direct-mapped lowmem (`PAGE_OFFSET + phys`), and the
//! allocator must read and write them: the free pointer inside each free
//! object, red zones, poison, the tracked request size, `kzalloc` zeroing,
//! `krealloc` copying. `mm` forbids `unsafe`, so that access goes through
//! [`ObjectMemory`], a trait over *virtual* addresses. The slab code is
//! generic over it (never `dyn` on a hot path), so the kernel's
//! implementation — plain pointer loads and stores at the address, a
//! zero-sized type — monomorphizes to exactly the `mov`s Linux's SLUB would
//! execute. Host tests and benches use `ArenaMemory` (feature `sim`: a word
//! array standing in for the direct map) or [`PlatformMemory`] (through
//! [`Platform::with_frame`], so object bytes are the very bytes
//! `MemoryManager::fill`/`checksum` see).

use crate::platform::{FRAME_BYTES, Platform};
use crate::types::{PAGE_OFFSET, PAGE_SHIFT, Pfn};

/// Word and byte access to direct-mapped memory at virtual addresses.
///
/// The slab layer only ever passes addresses inside slab or `kmalloc_large`
/// pages it owns; `read_u64`/`write_u64` addresses are 8-byte aligned.
/// Implementations for the kernel should mark every method `#[inline]` and
/// override the bulk defaults (`fill`, `check`, `copy`) with
/// `write_bytes`/slice compares/`copy`.
pub trait ObjectMemory {
    /// Load the 8-byte little-endian word at `addr` (8-byte aligned).
    fn read_u64(&self, addr: u64) -> u64;
    /// Store the 8-byte word `v` at `addr` (8-byte aligned).
    fn write_u64(&self, addr: u64, v: u64);
    /// Load one byte.
    fn read_u8(&self, addr: u64) -> u8;
    /// Store one byte.
    fn write_u8(&self, addr: u64, v: u8);

    /// Set `len` bytes from `addr` to `byte` (cf. `memset`).
    fn fill(&self, addr: u64, len: usize, byte: u8) {
        for i in 0..len as u64 {
            self.write_u8(addr + i, byte);
        }
    }

    /// Offset of the first of `len` bytes from `addr` that is not `byte`
    /// (cf. `memchr_inv()`), `None` if all match.
    fn check(&self, addr: u64, len: usize, byte: u8) -> Option<usize> {
        (0..len).find(|&i| self.read_u8(addr + i as u64) != byte)
    }

    /// Copy `len` bytes from `src` to `dst`; the ranges do not overlap
    /// (cf. `memcpy`).
    fn copy(&self, dst: u64, src: u64, len: usize) {
        for i in 0..len as u64 {
            self.write_u8(dst + i, self.read_u8(src + i));
        }
    }
}

/// [`ObjectMemory`] through [`Platform::with_frame`]: every access borrows a
/// mapping of the frame behind a direct-map address. Slow (a closure and, on
/// the host, a lock per access) but it shares bytes with everything else
/// that goes through the platform — which is what the HTTP layer's host
/// tests need for fill/checksum of `kmalloc` and `cache` handles.
pub struct PlatformMemory<'p, P: Platform>(pub &'p P);

impl<P: Platform> PlatformMemory<'_, P> {
    fn locate(addr: u64) -> (Pfn, usize) {
        let phys = addr.wrapping_sub(PAGE_OFFSET);
        (Pfn(phys >> PAGE_SHIFT), (phys as usize) & (FRAME_BYTES - 1))
    }
}

impl<P: Platform> ObjectMemory for PlatformMemory<'_, P> {
    fn read_u64(&self, addr: u64) -> u64 {
        let (pfn, off) = Self::locate(addr);
        let mut word = [0u8; 8];
        self.0
            .with_frame(pfn, &mut |b| word.copy_from_slice(&b[off..off + 8]));
        u64::from_le_bytes(word)
    }

    fn write_u64(&self, addr: u64, v: u64) {
        let (pfn, off) = Self::locate(addr);
        self.0.with_frame(pfn, &mut |b| {
            b[off..off + 8].copy_from_slice(&v.to_le_bytes())
        });
    }

    fn read_u8(&self, addr: u64) -> u8 {
        let (pfn, off) = Self::locate(addr);
        let mut v = 0;
        self.0.with_frame(pfn, &mut |b| v = b[off]);
        v
    }

    fn write_u8(&self, addr: u64, v: u8) {
        let (pfn, off) = Self::locate(addr);
        self.0.with_frame(pfn, &mut |b| b[off] = v);
    }

    fn fill(&self, mut addr: u64, mut len: usize, byte: u8) {
        while len > 0 {
            let (pfn, off) = Self::locate(addr);
            let n = len.min(FRAME_BYTES - off);
            self.0.with_frame(pfn, &mut |b| b[off..off + n].fill(byte));
            addr += n as u64;
            len -= n;
        }
    }

    fn check(&self, addr: u64, len: usize, byte: u8) -> Option<usize> {
        let mut done = 0;
        while done < len {
            let (pfn, off) = Self::locate(addr + done as u64);
            let n = (len - done).min(FRAME_BYTES - off);
            let mut hit = None;
            self.0.with_frame(pfn, &mut |b| {
                hit = b[off..off + n].iter().position(|&x| x != byte)
            });
            if let Some(i) = hit {
                return Some(done + i);
            }
            done += n;
        }
        None
    }
}

#[cfg(any(test, feature = "sim"))]
pub use arena::ArenaMemory;

#[cfg(any(test, feature = "sim"))]
mod arena {
    extern crate alloc;

    use alloc::vec::Vec;
    use core::cell::Cell;

    use super::ObjectMemory;
    use crate::types::{PAGE_OFFSET, PAGE_SIZE, Pfn};

    /// A host stand-in for the direct map of frames `[start, start + n)`:
    /// one `Cell<u64>` per word, so a word access is one bounds-checked
    /// load or store — the closest safe Rust gets to the kernel's plain
    /// `mov`, which is what the benchmark needs. Starts zeroed. An access
    /// outside the arena panics (a slab bug, never silently ignored).
    pub struct ArenaMemory {
        base: u64,
        words: Vec<Cell<u64>>,
    }

    impl ArenaMemory {
        /// Direct-map view of `nr_frames` frames from `start`.
        pub fn new(start: Pfn, nr_frames: u64) -> Self {
            let nr_words = (nr_frames * PAGE_SIZE / 8) as usize;
            ArenaMemory {
                base: PAGE_OFFSET + start.phys().0,
                words: alloc::vec![Cell::new(0); nr_words],
            }
        }

        #[inline(always)]
        fn word(&self, addr: u64) -> &Cell<u64> {
            &self.words[(addr.wrapping_sub(self.base) >> 3) as usize]
        }
    }

    impl ObjectMemory for ArenaMemory {
        #[inline(always)]
        fn read_u64(&self, addr: u64) -> u64 {
            self.word(addr).get()
        }

        #[inline(always)]
        fn write_u64(&self, addr: u64, v: u64) {
            self.word(addr).set(v)
        }

        #[inline]
        fn read_u8(&self, addr: u64) -> u8 {
            (self.word(addr).get() >> ((addr & 7) * 8)) as u8
        }

        #[inline]
        fn write_u8(&self, addr: u64, v: u8) {
            let w = self.word(addr);
            let shift = (addr & 7) * 8;
            w.set((w.get() & !(0xff << shift)) | ((v as u64) << shift));
        }

        fn fill(&self, addr: u64, len: usize, byte: u8) {
            let end = addr + len as u64;
            let mut a = addr;
            while a < end && a & 7 != 0 {
                self.write_u8(a, byte);
                a += 1;
            }
            let pattern = u64::from_ne_bytes([byte; 8]);
            while a + 8 <= end {
                self.word(a).set(pattern);
                a += 8;
            }
            while a < end {
                self.write_u8(a, byte);
                a += 1;
            }
        }

        fn check(&self, addr: u64, len: usize, byte: u8) -> Option<usize> {
            let pattern = u64::from_ne_bytes([byte; 8]);
            let mut i = 0usize;
            while i < len {
                let a = addr + i as u64;
                if a & 7 == 0 && i + 8 <= len && self.word(a).get() == pattern {
                    i += 8;
                    continue;
                }
                if self.read_u8(a) != byte {
                    return Some(i);
                }
                i += 1;
            }
            None
        }

        fn copy(&self, dst: u64, src: u64, len: usize) {
            if dst & 7 == 0 && src & 7 == 0 {
                let words = len / 8;
                for i in 0..words as u64 {
                    self.word(dst + i * 8).set(self.word(src + i * 8).get());
                }
                for i in (words * 8) as u64..len as u64 {
                    self.write_u8(dst + i, self.read_u8(src + i));
                }
            } else {
                for i in 0..len as u64 {
                    self.write_u8(dst + i, self.read_u8(src + i));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::sim::SimPlatform;

    fn exercise(m: &impl ObjectMemory, base: u64) {
        m.fill(base + 3, 30, 0x6b);
        assert_eq!(m.check(base + 3, 30, 0x6b), None);
        m.write_u8(base + 20, 0x12);
        assert_eq!(m.check(base + 3, 30, 0x6b), Some(17));
        assert_eq!(m.read_u8(base + 20), 0x12);
        m.write_u64(base + 64, 0x0102_0304_0506_0708);
        assert_eq!(m.read_u64(base + 64), 0x0102_0304_0506_0708);
        assert_eq!(m.read_u8(base + 64), 0x08, "little-endian");
        m.copy(base + 128, base + 64, 8);
        assert_eq!(m.read_u64(base + 128), 0x0102_0304_0506_0708);
        // Across a frame boundary.
        m.fill(base + 4090, 12, 0xa5);
        assert_eq!(m.check(base + 4090, 12, 0xa5), None);
    }

    #[test]
    fn arena_and_platform_memory_agree_on_semantics() {
        let arena = ArenaMemory::new(Pfn(16), 4);
        exercise(&arena, PAGE_OFFSET + (16 << 12));
        let sim = SimPlatform::new(32);
        exercise(&PlatformMemory(&sim), PAGE_OFFSET + (16 << 12));
        assert_eq!(
            sim.frame(Pfn(16))[20],
            0x12,
            "bytes land in the platform's frames"
        );
        assert_eq!(sim.frame(Pfn(17))[5], 0xa5);
    }
}
