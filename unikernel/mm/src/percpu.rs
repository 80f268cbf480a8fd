//! The dynamic per-CPU allocator: `alloc_percpu()` / `free_percpu()`
//! (cf. mm/percpu.c).
//!
//! A per-CPU allocation is one offset that is valid in every CPU's *unit*:
//! a chunk is `nr_units` units of [`PCPU_UNIT_SIZE`] bytes laid end to end,
//! and CPU `n`'s copy of an object at offset `off` lives at
//! `base + n * PCPU_UNIT_SIZE + off` (Linux's `per_cpu_ptr()` adds the
//! CPU's `__per_cpu_offset[]` the same way). Each chunk keeps Linux's two
//! bitmaps over [`PCPU_MIN_ALLOC_SIZE`]-byte fragments: `alloc_map` (in
//! use) and `bound_map` (where each allocation starts, so a free needs no
//! size), and is searched first fit (cf. `pcpu_find_block_fit()` +
//! `pcpu_alloc_area()`, without the block hints).
//!
//! The crate never touches memory: the caller lends each chunk's memory
//! ([`Percpu::add_chunk`]; the kernel takes it from the buddy allocator)
//! and gets it back when a dynamic chunk empties ([`Percpu::free`]), so
//! every chunk is fully populated and `Percpu` in `/proc/meminfo` is
//! chunks × units × unit pages (cf. `pcpu_nr_pages()`), the first chunk's
//! units counted to the end of their dynamic part.
//!
//! **The first chunk** (cf. `setup_per_cpu_areas()` →
//! `pcpu_embed_first_chunk()` → `pcpu_setup_first_chunk()`): one unit per
//! possible CPU, lent once at boot (from memblock), each unit laid out as
//! the static per-CPU area, a reserved part and the first dynamic part
//! ([`FirstChunkLayout`]). [`Percpu::setup_first_chunk`] hides the static
//! and reserved parts (and the unit's tail past the dynamic part) from
//! `alloc_percpu`, which serves from the dynamic part before any new
//! chunk, and never gives the chunk back.

use crate::types::PAGE_SIZE;

/// Allocation granule (cf. `PCPU_MIN_ALLOC_SIZE`).
pub const PCPU_MIN_ALLOC_SIZE: usize = 4;
/// Bytes per CPU per chunk, and the largest allocation
/// (cf. `PCPU_MIN_UNIT_SIZE`, 32 KiB).
pub const PCPU_UNIT_SIZE: usize = 32 << 10;
/// Pages of one unit.
pub const PCPU_UNIT_PAGES: u64 = PCPU_UNIT_SIZE as u64 / PAGE_SIZE;
/// Chunks at most (each holds up to one unit's worth of objects per CPU).
pub const PCPU_MAX_CHUNKS: usize = 8;

const BITS: usize = PCPU_UNIT_SIZE / PCPU_MIN_ALLOC_SIZE;
const WORDS: usize = BITS / 64;

/// Why a per-CPU request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcpuError {
    /// Size 0 or over [`PCPU_UNIT_SIZE`], or an alignment that is not a
    /// power of two up to `PAGE_SIZE` (cf. "illegal size or align").
    Invalid,
    /// No chunk has room and no chunk slot is left for a new one.
    NoSpace,
    /// No allocation starts at that pointer.
    NotAllocated,
}

/// A per-CPU pointer: a chunk and an offset in every unit of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PercpuPtr {
    /// Chunk slot.
    pub chunk: u8,
    /// Byte offset in each unit.
    pub off: u32,
}

/// One unit of the first chunk (cf. `struct pcpu_alloc_info` as
/// `pcpu_embed_first_chunk()` builds it for one group of CPUs, in
/// [`PCPU_UNIT_SIZE`] units): `[0, static_size)` holds the static per-CPU
/// variables, `[static_size, +reserved_size)` the reserved part, then
/// `dyn_size` bytes `alloc_percpu` serves from; the unit's tail past them
/// is populated but hidden.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstChunkLayout {
    /// Bytes of the static per-CPU area (cf. `ai->static_size`).
    pub static_size: usize,
    /// Bytes reserved after it (cf. `ai->reserved_size`).
    pub reserved_size: usize,
    /// Bytes of the first dynamic part (cf. `ai->dyn_size`): at least what
    /// was asked, grown to the page boundary.
    pub dyn_size: usize,
    /// Bytes per unit (cf. `ai->unit_size`).
    pub unit_size: usize,
    /// Units: one per possible CPU.
    pub nr_units: usize,
}

impl FirstChunkLayout {
    /// The layout `pcpu_embed_first_chunk()` computes (via
    /// `pcpu_build_alloc_info()`): `size_sum = PFN_ALIGN(static +
    /// reserved + dyn)`, the dynamic part grown to fill it, and the unit
    /// `max(size_sum, PCPU_MIN_UNIT_SIZE)` — here always
    /// [`PCPU_UNIT_SIZE`], so a sum past it is [`PcpuError::Invalid`].
    /// The static and reserved sizes are rounded to the allocation granule.
    pub fn embed(
        static_size: usize,
        reserved_size: usize,
        dyn_size: usize,
        nr_units: usize,
    ) -> Result<FirstChunkLayout, PcpuError> {
        let static_size = static_size.next_multiple_of(PCPU_MIN_ALLOC_SIZE);
        let reserved_size = reserved_size.next_multiple_of(PCPU_MIN_ALLOC_SIZE);
        let size_sum =
            (static_size + reserved_size + dyn_size).next_multiple_of(PAGE_SIZE as usize);
        if size_sum > PCPU_UNIT_SIZE || nr_units == 0 {
            return Err(PcpuError::Invalid);
        }
        Ok(FirstChunkLayout {
            static_size,
            reserved_size,
            dyn_size: size_sum - static_size - reserved_size,
            unit_size: PCPU_UNIT_SIZE,
            nr_units,
        })
    }

    /// Pages of a unit in use (cf. `PFN_DOWN(size_sum)`).
    pub fn pages_per_cpu(&self) -> usize {
        (self.static_size + self.reserved_size + self.dyn_size) / PAGE_SIZE as usize
    }

    /// Bytes of the whole chunk: what the caller lends.
    pub fn chunk_bytes(&self) -> u64 {
        (self.unit_size * self.nr_units) as u64
    }
}

/// Linux's boot line (`pcpu_embed_first_chunk()`'s `pr_info`), without
/// the `percpu: ` prefix: `Embedded 8 pages/cpu s1024 r8192 d23552 u32768`.
impl core::fmt::Display for FirstChunkLayout {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Embedded {} pages/cpu s{} r{} d{} u{}",
            self.pages_per_cpu(),
            self.static_size,
            self.reserved_size,
            self.dyn_size,
            self.unit_size
        )
    }
}

/// One chunk (cf. `struct pcpu_chunk`).
#[derive(Clone, Debug)]
struct Chunk {
    /// Address of unit 0 (its memory is the caller's).
    base: u64,
    alloc_map: [u64; WORDS],
    bound_map: [u64; WORDS],
    free_bytes: usize,
    /// Allocations, the hidden areas included.
    nr_alloc: usize,
    /// The first chunk: its dynamic part is `[start, end)` (cf.
    /// `chunk->start_offset` / `end_offset`), the rest hidden (marked
    /// allocated, one bound each, counted in `nr_alloc`); never released.
    first: Option<(usize, usize)>,
}

impl Chunk {
    fn new(base: u64) -> Chunk {
        Chunk {
            base,
            alloc_map: [0; WORDS],
            bound_map: [0; WORDS],
            free_bytes: PCPU_UNIT_SIZE,
            nr_alloc: 0,
            first: None,
        }
    }

    /// Areas hidden from `alloc_percpu` in this chunk.
    fn nr_hidden(&self) -> usize {
        self.first.map_or(0, |(start, end)| {
            usize::from(start > 0) + usize::from(end < PCPU_UNIT_SIZE)
        })
    }

    /// Mark `[from, to)` bytes allocated as one area (cf. the hidden
    /// areas `pcpu_alloc_first_chunk()` sets up).
    fn hide(&mut self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        Chunk::set_range(
            &mut self.alloc_map,
            from / PCPU_MIN_ALLOC_SIZE..to / PCPU_MIN_ALLOC_SIZE,
        );
        Chunk::set(&mut self.bound_map, from / PCPU_MIN_ALLOC_SIZE, true);
        self.free_bytes -= to - from;
        self.nr_alloc += 1;
    }

    /// Sets bits `bits` a word at a time (cf. `bitmap_set()`).
    fn set_range(map: &mut [u64; WORDS], bits: core::ops::Range<usize>) {
        let mut b = bits.start;
        while b < bits.end {
            let (word, shift) = (b / 64, b % 64);
            let n = (64 - shift).min(bits.end - b);
            let mask = if n == 64 {
                !0
            } else {
                ((1u64 << n) - 1) << shift
            };
            map[word] |= mask;
            b += n;
        }
    }

    fn test(map: &[u64; WORDS], bit: usize) -> bool {
        map[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn set(map: &mut [u64; WORDS], bit: usize, on: bool) {
        if on {
            map[bit / 64] |= 1 << (bit % 64);
        } else {
            map[bit / 64] &= !(1 << (bit % 64));
        }
    }

    /// First fit of `bits` fragments aligned to `align` fragments.
    fn find_fit(&self, bits: usize, align: usize) -> Option<usize> {
        let mut start = 0;
        while start + bits <= BITS {
            match (start..start + bits).find(|&b| Chunk::test(&self.alloc_map, b)) {
                None => return Some(start),
                Some(used) => start = (used + 1).next_multiple_of(align),
            }
        }
        None
    }

    /// cf. `pcpu_alloc_area()`.
    fn alloc_area(&mut self, bits: usize, align: usize) -> Option<usize> {
        let start = self.find_fit(bits, align)?;
        for b in start..start + bits {
            Chunk::set(&mut self.alloc_map, b, true);
        }
        Chunk::set(&mut self.bound_map, start, true);
        self.free_bytes -= bits * PCPU_MIN_ALLOC_SIZE;
        self.nr_alloc += 1;
        Some(start)
    }

    /// cf. `pcpu_free_area()`: the allocation runs to the next bound or
    /// the first free fragment. Returns its size in bytes.
    fn free_area(&mut self, start: usize) -> Option<usize> {
        if !Chunk::test(&self.bound_map, start) || !Chunk::test(&self.alloc_map, start) {
            return None;
        }
        let mut end = start + 1;
        while end < BITS && Chunk::test(&self.alloc_map, end) && !Chunk::test(&self.bound_map, end)
        {
            end += 1;
        }
        for b in start..end {
            Chunk::set(&mut self.alloc_map, b, false);
        }
        Chunk::set(&mut self.bound_map, start, false);
        let bytes = (end - start) * PCPU_MIN_ALLOC_SIZE;
        self.free_bytes += bytes;
        self.nr_alloc -= 1;
        Some(bytes)
    }
}

/// Counters for `/api/percpu`-style views (cf. `percpu_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PercpuStats {
    /// Allocations served.
    pub nr_alloc: u64,
    /// Frees.
    pub nr_dealloc: u64,
    /// Allocations live now.
    pub nr_cur_alloc: u64,
    /// Most live at once.
    pub nr_max_alloc: u64,
    /// Chunks created / released over time.
    pub nr_chunks_created: u64,
    /// Chunks given back when they emptied.
    pub nr_chunks_released: u64,
}

/// The allocator: up to [`PCPU_MAX_CHUNKS`] chunks of `nr_units` units.
#[derive(Debug)]
pub struct Percpu {
    chunks: [Option<Chunk>; PCPU_MAX_CHUNKS],
    nr_units: usize,
    stats: PercpuStats,
}

impl Percpu {
    /// No chunk yet; one unit per possible CPU.
    pub fn new(nr_units: usize) -> Percpu {
        Percpu {
            chunks: core::array::from_fn(|_| None),
            nr_units: nr_units.max(1),
            stats: PercpuStats::default(),
        }
    }

    /// Units per chunk (possible CPUs, cf. `pcpu_nr_units`).
    pub fn nr_units(&self) -> usize {
        self.nr_units
    }

    /// Bytes a chunk spans: what [`Percpu::add_chunk`] must be lent.
    pub fn chunk_bytes(&self) -> u64 {
        (PCPU_UNIT_SIZE * self.nr_units) as u64
    }

    /// Reject what `pcpu_alloc()` rejects; the size rounded to the granule
    /// and the alignment raised to it, in fragments.
    fn check_request(size: usize, align: usize) -> Result<(usize, usize), PcpuError> {
        let align = align.max(PCPU_MIN_ALLOC_SIZE);
        let size = size.next_multiple_of(PCPU_MIN_ALLOC_SIZE);
        if size == 0
            || size > PCPU_UNIT_SIZE
            || align > PAGE_SIZE as usize
            || !align.is_power_of_two()
        {
            return Err(PcpuError::Invalid);
        }
        Ok((size / PCPU_MIN_ALLOC_SIZE, align / PCPU_MIN_ALLOC_SIZE))
    }

    /// Whether `alloc(size, align)` needs a new chunk first: `Ok(false)`
    /// if a chunk has room, `Ok(true)` if a chunk slot is free for one,
    /// the refusal otherwise.
    pub fn needs_chunk(&self, size: usize, align: usize) -> Result<bool, PcpuError> {
        let (bits, align) = Percpu::check_request(size, align)?;
        if self.chunks.iter().flatten().any(|c| {
            c.free_bytes >= bits * PCPU_MIN_ALLOC_SIZE && c.find_fit(bits, align).is_some()
        }) {
            return Ok(false);
        }
        if self.chunks.iter().any(Option::is_none) {
            Ok(true)
        } else {
            Err(PcpuError::NoSpace)
        }
    }

    /// Lend a chunk of [`Percpu::chunk_bytes`] bytes at `base` (cf.
    /// `pcpu_create_chunk()`); returns its slot.
    pub fn add_chunk(&mut self, base: u64) -> Result<u8, PcpuError> {
        let slot = self
            .chunks
            .iter()
            .position(Option::is_none)
            .ok_or(PcpuError::NoSpace)?;
        self.chunks[slot] = Some(Chunk::new(base));
        self.stats.nr_chunks_created += 1;
        Ok(slot as u8)
    }

    /// Lend the first chunk at `base` (cf. `pcpu_setup_first_chunk()`):
    /// [`FirstChunkLayout::chunk_bytes`] bytes, laid out as `layout` says,
    /// in slot 0 of an allocator that has no chunk yet. Its dynamic part is
    /// served before any other chunk's, and it is never given back.
    pub fn setup_first_chunk(
        &mut self,
        base: u64,
        layout: &FirstChunkLayout,
    ) -> Result<u8, PcpuError> {
        let start = layout.static_size + layout.reserved_size;
        let end = start + layout.dyn_size;
        if self.chunks.iter().any(Option::is_some)
            || layout.nr_units != self.nr_units
            || layout.unit_size != PCPU_UNIT_SIZE
            || end > PCPU_UNIT_SIZE
            || !start.is_multiple_of(PCPU_MIN_ALLOC_SIZE)
            || !end.is_multiple_of(PCPU_MIN_ALLOC_SIZE)
        {
            return Err(PcpuError::Invalid);
        }
        let mut c = Chunk::new(base);
        c.hide(0, start);
        c.hide(end, PCPU_UNIT_SIZE);
        c.first = Some((start, end));
        self.chunks[0] = Some(c);
        Ok(0)
    }

    /// `alloc_percpu()`: `size` bytes aligned to `align` in every unit,
    /// first fit over the chunks (cf. `pcpu_alloc()`). The caller adds a
    /// chunk first when [`Percpu::needs_chunk`] says so.
    pub fn alloc(&mut self, size: usize, align: usize) -> Result<PercpuPtr, PcpuError> {
        let (bits, align) = Percpu::check_request(size, align)?;
        for (slot, chunk) in self.chunks.iter_mut().enumerate() {
            let Some(c) = chunk else { continue };
            if c.free_bytes < bits * PCPU_MIN_ALLOC_SIZE {
                continue;
            }
            if let Some(start) = c.alloc_area(bits, align) {
                self.stats.nr_alloc += 1;
                self.stats.nr_cur_alloc += 1;
                self.stats.nr_max_alloc = self.stats.nr_max_alloc.max(self.stats.nr_cur_alloc);
                return Ok(PercpuPtr {
                    chunk: slot as u8,
                    off: (start * PCPU_MIN_ALLOC_SIZE) as u32,
                });
            }
        }
        Err(PcpuError::NoSpace)
    }

    /// `free_percpu()`: returns the bytes freed and, if the chunk emptied,
    /// its base, which the caller gives back (cf. the empty-chunk release
    /// of `pcpu_balance_free()`; here at once, so freeing everything
    /// returns every page).
    pub fn free(&mut self, ptr: PercpuPtr) -> Result<(usize, Option<u64>), PcpuError> {
        let slot = usize::from(ptr.chunk);
        let off = ptr.off as usize;
        let chunk = self
            .chunks
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|_| off.is_multiple_of(PCPU_MIN_ALLOC_SIZE) && off < PCPU_UNIT_SIZE)
            .ok_or(PcpuError::NotAllocated)?;
        if chunk
            .first
            .is_some_and(|(start, end)| off < start || off >= end)
        {
            return Err(PcpuError::NotAllocated); // a hidden area
        }
        let bytes = chunk
            .free_area(off / PCPU_MIN_ALLOC_SIZE)
            .ok_or(PcpuError::NotAllocated)?;
        self.stats.nr_dealloc += 1;
        self.stats.nr_cur_alloc -= 1;
        let released = (chunk.nr_alloc == 0 && chunk.first.is_none()).then_some(chunk.base);
        if released.is_some() {
            self.chunks[slot] = None;
            self.stats.nr_chunks_released += 1;
        }
        Ok((bytes, released))
    }

    /// CPU `cpu`'s copy of `ptr` (cf. `per_cpu_ptr()`); `None` for a CPU
    /// without a unit or a chunk that is gone.
    pub fn addr(&self, ptr: PercpuPtr, cpu: usize) -> Option<u64> {
        let c = self.chunks.get(usize::from(ptr.chunk))?.as_ref()?;
        (cpu < self.nr_units).then(|| c.base + (cpu * PCPU_UNIT_SIZE) as u64 + u64::from(ptr.off))
    }

    /// Pages lent to chunks, every unit counted (cf. `pcpu_nr_pages()`,
    /// meminfo `Percpu`); of a first-chunk unit, the pages up to the end
    /// of its dynamic part.
    pub fn nr_pages(&self) -> u64 {
        let per_unit: u64 = self
            .chunks
            .iter()
            .flatten()
            .map(|c| match c.first {
                // Only `[0, end)` of a first-chunk unit is the chunk's: the
                // caller may give the tail back (cf. the unused part
                // `pcpu_embed_first_chunk()` frees), and it is hidden.
                Some((_, end)) => (end as u64).div_ceil(PAGE_SIZE),
                None => PCPU_UNIT_PAGES,
            })
            .sum();
        per_unit * self.nr_units as u64
    }

    /// Chunks in use.
    pub fn nr_chunks(&self) -> usize {
        self.chunks.iter().flatten().count()
    }

    /// Bytes free in each unit over all chunks.
    pub fn free_bytes(&self) -> usize {
        self.chunks.iter().flatten().map(|c| c.free_bytes).sum()
    }

    /// The counters.
    pub fn stats(&self) -> PercpuStats {
        self.stats
    }

    /// Each chunk's base (unit 0), in slot order.
    pub fn chunk_bases(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.iter().flatten().map(|c| c.base)
    }

    /// Recount every chunk from its bitmaps (cf. the checks of
    /// `pcpu_chunk_check()`): free bytes and allocations match, every
    /// bound is in use, and the statistics add up.
    pub fn check(&self) -> Result<(), &'static str> {
        let mut live = 0u64;
        for c in self.chunks.iter().flatten() {
            let used = c
                .alloc_map
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>();
            let bounds = c
                .bound_map
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>();
            if PCPU_UNIT_SIZE - used * PCPU_MIN_ALLOC_SIZE != c.free_bytes {
                return Err("chunk free_bytes does not match its alloc_map");
            }
            if bounds != c.nr_alloc {
                return Err("chunk allocation count does not match its bound_map");
            }
            if c.bound_map
                .iter()
                .zip(&c.alloc_map)
                .any(|(b, a)| b & !a != 0)
            {
                return Err("an allocation starts on a free fragment");
            }
            if c.nr_alloc == 0 && c.first.is_none() {
                return Err("an empty chunk was kept");
            }
            live += (c.nr_alloc - c.nr_hidden()) as u64;
        }
        if live != self.stats.nr_cur_alloc {
            return Err("live allocations do not match the chunks");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: u64 = 0xffff_8880_0100_0000;

    proptest! {
        /// A word at a time sets exactly the bits one at a time would.
        #[test]
        fn set_range_sets_exactly_the_range(a in 0..BITS, b in 0..=BITS, seed: u64) {
            let bits = a.min(b)..a.max(b);
            let mut words = [0u64; WORDS];
            words[0] = seed; // bits already set stay set
            let mut one_by_one = words;
            for bit in bits.clone() {
                Chunk::set(&mut one_by_one, bit, true);
            }
            Chunk::set_range(&mut words, bits);
            prop_assert_eq!(words, one_by_one);
        }
    }

    fn with_chunk(units: usize) -> Percpu {
        let mut p = Percpu::new(units);
        assert_eq!(p.needs_chunk(8, 8), Ok(true));
        p.add_chunk(BASE).unwrap();
        p
    }

    #[test]
    fn first_chunk_layout_is_linuxs_embed_layout() {
        let l = FirstChunkLayout::embed(1021, 8192, 20480, 4).unwrap();
        assert_eq!(
            l,
            FirstChunkLayout {
                static_size: 1024,
                reserved_size: 8192,
                dyn_size: 32768 - 1024 - 8192,
                unit_size: 32768,
                nr_units: 4,
            }
        );
        assert_eq!(l.pages_per_cpu(), 8);
        assert_eq!(l.chunk_bytes(), 4 * 32768);
        assert_eq!(
            std::format!("percpu: {l}"),
            "percpu: Embedded 8 pages/cpu s1024 r8192 d23552 u32768"
        );
        // A small sum is grown to its page, not to the unit.
        let small = FirstChunkLayout::embed(512, 0, 1024, 1).unwrap();
        assert_eq!((small.dyn_size, small.pages_per_cpu()), (4096 - 512, 1));
        assert_eq!(
            std::format!("{small}"),
            "Embedded 1 pages/cpu s512 r0 d3584 u32768"
        );
        assert_eq!(
            FirstChunkLayout::embed(30000, 8192, 0, 2),
            Err(PcpuError::Invalid)
        );
        assert_eq!(
            FirstChunkLayout::embed(64, 0, 64, 0),
            Err(PcpuError::Invalid)
        );
    }

    #[test]
    fn alloc_percpu_serves_the_first_chunks_dynamic_part_first() {
        let l = FirstChunkLayout::embed(1024, 8192, 4096, 2).unwrap();
        let (start, end) = (1024 + 8192, 4 * 4096);
        let mut p = Percpu::new(2);
        assert_eq!(p.setup_first_chunk(BASE, &l), Ok(0));
        assert_eq!(
            p.setup_first_chunk(BASE, &l),
            Err(PcpuError::Invalid),
            "once"
        );
        assert_eq!(
            p.nr_pages(),
            2 * l.pages_per_cpu() as u64,
            "meminfo Percpu counts its populated pages, not the unit's tail"
        );
        assert_eq!(p.free_bytes(), end - start);
        p.check().unwrap();
        // The first allocation lands at the dynamic part's start, on every
        // CPU's unit.
        assert_eq!(p.needs_chunk(64, 64), Ok(false));
        let a = p.alloc(64, 64).unwrap();
        assert_eq!(
            a,
            PercpuPtr {
                chunk: 0,
                off: start as u32
            }
        );
        assert_eq!(
            p.addr(a, 1),
            Some(BASE + PCPU_UNIT_SIZE as u64 + start as u64)
        );
        // Fill the dynamic part: the next request needs a new chunk.
        let rest = p.alloc(end - start - 64, 4).unwrap();
        assert_eq!(rest.off as usize, start + 64);
        assert_eq!(p.free_bytes(), 0);
        assert_eq!(
            p.needs_chunk(4, 4),
            Ok(true),
            "hidden areas are never handed out"
        );
        p.add_chunk(BASE + 0x10_0000).unwrap();
        let b = p.alloc(4, 4).unwrap();
        assert_eq!(b, PercpuPtr { chunk: 1, off: 0 });
        p.check().unwrap();
        // Hidden areas cannot be freed; the allocation next to the tail
        // frees exactly its bytes; the first chunk stays when it empties.
        for off in [0, 1024, start as u32 - 4, end as u32] {
            assert_eq!(
                p.free(PercpuPtr { chunk: 0, off }),
                Err(PcpuError::NotAllocated)
            );
        }
        assert_eq!(p.free(rest), Ok((end - start - 64, None)));
        assert_eq!(
            p.free(a),
            Ok((64, None)),
            "the first chunk is never released"
        );
        assert_eq!(p.free(b), Ok((4, Some(BASE + 0x10_0000))));
        assert_eq!((p.nr_chunks(), p.free_bytes()), (1, end - start));
        p.check().unwrap();
        // A dynamic chunk refuses to become the first one.
        let mut q = with_chunk(2);
        assert_eq!(q.setup_first_chunk(BASE, &l), Err(PcpuError::Invalid));
    }

    #[test]
    fn sizes_round_to_the_granule_and_bad_requests_are_refused() {
        let mut p = with_chunk(2);
        assert_eq!(p.alloc(0, 8), Err(PcpuError::Invalid));
        assert_eq!(p.alloc(PCPU_UNIT_SIZE + 1, 8), Err(PcpuError::Invalid));
        assert_eq!(p.alloc(8, 12), Err(PcpuError::Invalid));
        assert_eq!(p.alloc(8, 8192), Err(PcpuError::Invalid));
        let a = p.alloc(1, 1).unwrap();
        let b = p.alloc(6, 8).unwrap();
        assert_eq!((a.off, b.off), (0, 8), "1 byte takes 4; 8-aligned next");
        assert_eq!(p.free_bytes(), PCPU_UNIT_SIZE - 4 - 8);
        assert_eq!(p.addr(b, 0), Some(BASE + 8));
        assert_eq!(p.addr(b, 1), Some(BASE + PCPU_UNIT_SIZE as u64 + 8));
        assert_eq!(p.addr(b, 2), None);
        assert_eq!(p.free(a), Ok((4, None)));
        assert_eq!(p.free(a), Err(PcpuError::NotAllocated));
        assert_eq!(
            p.free(PercpuPtr { chunk: 0, off: 12 }),
            Err(PcpuError::NotAllocated)
        );
        assert_eq!(
            p.free(b),
            Ok((8, Some(BASE))),
            "the emptied chunk goes back"
        );
        assert_eq!((p.nr_chunks(), p.nr_pages()), (0, 0));
        p.check().unwrap();
    }

    #[test]
    fn a_full_chunk_asks_for_another_and_meminfo_counts_every_unit() {
        let mut p = with_chunk(4);
        assert_eq!(p.nr_pages(), 4 * PCPU_UNIT_PAGES);
        let big = p.alloc(PCPU_UNIT_SIZE, 4096).unwrap();
        assert_eq!(big.off, 0);
        assert_eq!(p.needs_chunk(4, 4), Ok(true));
        assert_eq!(p.alloc(4, 4), Err(PcpuError::NoSpace));
        p.add_chunk(BASE + p.chunk_bytes()).unwrap();
        let small = p.alloc(4, 4).unwrap();
        assert_eq!(small.chunk, 1);
        assert_eq!(p.nr_pages(), 8 * PCPU_UNIT_PAGES);
        for _ in 2..PCPU_MAX_CHUNKS {
            p.add_chunk(0).unwrap();
        }
        assert_eq!(p.add_chunk(0), Err(PcpuError::NoSpace));
        let stats = p.stats();
        assert_eq!((stats.nr_alloc, stats.nr_cur_alloc), (2, 2));
    }

    proptest! {
        #[test]
        fn random_allocs_never_overlap_and_freeing_all_returns_every_chunk(
            ops in prop::collection::vec((1usize..5000, 0u32..13, any::<bool>(), any::<prop::sample::Index>()), 1..300)
        ) {
            let mut p = Percpu::new(2);
            let mut next_base = BASE;
            let mut live: Vec<(PercpuPtr, usize)> = Vec::new();
            for (size, align_shift, free, idx) in ops {
                if free && !live.is_empty() {
                    let (ptr, size) = live.swap_remove(idx.index(live.len()));
                    let (bytes, _) = p.free(ptr).unwrap();
                    prop_assert_eq!(bytes, size.next_multiple_of(4));
                } else {
                    let align = 1usize << align_shift;
                    match p.needs_chunk(size, align) {
                        Ok(true) => {
                            p.add_chunk(next_base).unwrap();
                            next_base += p.chunk_bytes();
                        }
                        Ok(false) => {}
                        Err(e) => {
                            prop_assert_eq!(e, PcpuError::NoSpace);
                            continue;
                        }
                    }
                    let ptr = p.alloc(size, align).unwrap();
                    prop_assert_eq!(ptr.off as usize % align.max(4), 0);
                    let end = ptr.off as usize + size;
                    prop_assert!(end <= PCPU_UNIT_SIZE);
                    for &(q, qs) in &live {
                        if q.chunk == ptr.chunk {
                            prop_assert!(end <= q.off as usize || q.off as usize + qs <= ptr.off as usize, "overlap");
                        }
                    }
                    live.push((ptr, size));
                }
                p.check().map_err(TestCaseError::fail)?;
            }
            for (ptr, _) in live {
                p.free(ptr).unwrap();
            }
            prop_assert_eq!(p.nr_chunks(), 0);
            prop_assert_eq!(p.stats().nr_cur_alloc, 0);
            prop_assert_eq!(p.stats().nr_chunks_created, p.stats().nr_chunks_released);
        }
    }
}
