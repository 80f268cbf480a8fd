//! The page layer of `make bench` (issue 12): `mm`'s
//! `PageAlloc::alloc_pages` / `free_pages` beside the page and heap
//! allocators a Rust kernel could use instead, every row from this one run.
//!
//! Each allocator is asked for what `alloc_pages(order)` promises: a block
//! of `2^order` pages aligned to its own size. Every run starts from a fresh
//! allocator over a 64 MiB arena (`mm` and the pure-bookkeeping allocators
//! get PFNs or addresses, the heaps a real, pre-touched 64 MiB buffer
//! aligned to 64 MiB); a cell is the median of three runs, in ns per pair or
//! per operation, with every random choice drawn into a table before the
//! clock starts.
//!
//! Workloads:
//! * LIFO pair of order 0, 3 and 9: `b = alloc(order); free(b)`, per pair.
//! * random order-0 op, ≤ 10 k live; random orders 0–3 op, ≤ 4 k live: the
//!   live set starts at half the cap, then each operation allocates with
//!   probability `1 − live/cap` (uniform order) and otherwise frees a
//!   uniformly chosen live block — so the live count hovers at half the cap
//!   and never passes it. Per operation; at most `RANDOM_OPS` operations or
//!   `RANDOM_BUDGET` of time per run, whichever ends first (only a slow row
//!   is cut short), then everything is freed untimed.
//! * coalesced: on a separate fresh allocator, the largest page-aligned run
//!   it hands out (bisected, each probe freed again), then `COALESCE_OPS`
//!   operations of the orders 0–3 table, free-all, and the same probe: "yes"
//!   when the largest run is back. `mm` also compares every zone's
//!   per-order free counts (buddyinfo) with the fresh ones.
//!
//! `PZ_BENCH_ONLY=<row substring>` runs only matching rows (profiling).
//! `PZ_BENCH_COUNT=<row>,<pair0|pair3|pair9|rand0|rand03>,<n>[,<table>]`
//! runs exactly `n` pairs or random operations of one workload on one row
//! (`pcp`, `bypassed`, `manager`, or a table row's name) and exits, for
//! instruction counts: under callgrind or cachegrind with two `n`, the
//! difference over Δn is the cost of one pair or operation. A random
//! workload draws its operations up front, `table` of them (default `n`):
//! give both runs the same `table` and the drawing cancels out too. After
//! the ns table, `make bench` prints every row's counts this way
//! ([`benches::InstrCount`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use benches::{InstrCount, Rng, cell, leaked_arena, median_of_3, print_table};
use mm::gfp::GfpFlags;
use mm::memblock::Memblock;
use mm::page::{OwnerTag, Page};
use mm::page_alloc::PageAlloc;
use mm::types::{MAX_ORDER, Order, Pfn, PhysAddr};
use mm::zone::ZoneLayout;

const ARENA_BYTES: usize = 64 << 20;
const PAGE_SIZE: usize = 4096;
const NR_PAGES: usize = ARENA_BYTES / PAGE_SIZE;

const PAIR_BUDGET: Duration = Duration::from_millis(200);
const PAIR_MAX: usize = 4 << 20;
const RANDOM_OPS: usize = 2 << 20;
const RANDOM_BUDGET: Duration = Duration::from_millis(600);
const COALESCE_OPS: usize = 200_000;

/// What every row implements.
trait Pages {
    /// A block of `2^order` pages aligned to its size; `None` if refused.
    fn alloc(&mut self, order: u32) -> Option<usize>;
    fn free(&mut self, block: usize, order: u32);
    /// `nr_pages` contiguous page-aligned pages, rounded up the way the
    /// allocator's own API rounds (buddies: to a power of two); for the
    /// coalescing probe.
    fn alloc_run(&mut self, nr_pages: usize) -> Option<usize>;
    fn free_run(&mut self, block: usize, nr_pages: usize);
    /// Free blocks per zone and order, where the allocator keeps such counts.
    fn free_counts(&self) -> Option<Vec<u64>> {
        None
    }
    /// Give back whatever is cached outside the free lists (mm: the
    /// per-CPU lists, `drain_all_pages()`), before the coalescing check.
    fn settle(&mut self) {}
}

fn page_layout(nr_pages: usize, align: usize) -> Layout {
    Layout::from_size_align(nr_pages * PAGE_SIZE, align).expect("page layout")
}

fn order_layout(order: u32) -> Layout {
    let size = PAGE_SIZE << order;
    page_layout(1 << order, size)
}

fn order_of(nr_pages: usize) -> u32 {
    nr_pages.next_power_of_two().trailing_zeros()
}

/// The one 64 MiB arena the heap-style rows work in, one row at a time.
fn heap_arena() -> *mut u8 {
    static ARENA: OnceLock<usize> = OnceLock::new();
    *ARENA.get_or_init(|| leaked_arena(ARENA_BYTES, ARENA_BYTES) as usize) as *mut u8
}

// ----------------------------------------------------------------------
// mm
// ----------------------------------------------------------------------

struct Mm(PageAlloc<'static>);

/// A fresh `PageAlloc` over 64 MiB as the kernel builds one: memblock with
/// page 0 reserved (firmware), zones DMA [0, 16M) and DMA32 [16M, 64M),
/// `memblock_free_all`, watermarks. The descriptors are leaked (256 KiB a
/// run) so the allocator can be `'static`.
fn mm_fresh(pcp: bool) -> Mm {
    let bytes = ARENA_BYTES as u64;
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), bytes).expect("memblock add");
    mb.reserve(PhysAddr(0), 0x1000, "bios")
        .expect("memblock reserve");
    let mem_map = Box::leak(vec![Page::new_reserved(); NR_PAGES].into_boxed_slice());
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(bytes, bytes)).expect("PageAlloc");
    pa.memblock_free_all(&mb).expect("memblock_free_all");
    pa.setup_watermarks();
    // The only difference between the two mm rows.
    pa.set_pcp_enabled(pcp);
    Mm(pa)
}

impl Pages for Mm {
    #[inline(always)]
    fn alloc(&mut self, order: u32) -> Option<usize> {
        let order = Order::new(order as u8)?;
        self.0
            .alloc_pages(GfpFlags::GFP_KERNEL, order, OwnerTag::API)
            .ok()
            .map(|pfn| pfn.0 as usize)
    }
    #[inline(always)]
    fn free(&mut self, block: usize, order: u32) {
        let order = Order::new(order as u8).expect("order");
        self.0
            .free_pages(Pfn(block as u64), order)
            .expect("free_pages");
    }
    fn alloc_run(&mut self, nr_pages: usize) -> Option<usize> {
        let order = order_of(nr_pages);
        if order as usize > MAX_ORDER {
            return None;
        }
        self.alloc(order)
    }
    fn free_run(&mut self, block: usize, nr_pages: usize) {
        self.free(block, order_of(nr_pages));
    }
    fn settle(&mut self) {
        self.0.drain_all_pages();
    }
    fn free_counts(&self) -> Option<Vec<u64>> {
        let pa = &self.0;
        Some(
            pa.zones()
                .iter()
                .flat_map(|z| pa.free_area_counts(z.ztype))
                .collect(),
        )
    }
}

/// `mm` through `MemoryManager` (what the kernel calls: zone lock and
/// tracepoints), for the tracing table: `traced` enables
/// `kmem:mm_page_alloc` and `kmem:mm_page_free` into a ring of the
/// kernel's size; otherwise every event is off (one relaxed load and a
/// branch per tracepoint). The manager and its ring are leaked per run.
struct MmManager(&'static mm::manager::MemoryManager<'static, mm::platform::sim::SimPlatform>);

fn mm_manager(traced: bool, page_owner: bool) -> MmManager {
    use mm::trace::{EventId, TRACE_BUF_ENTRIES, TraceRecord};
    let Mm(pa) = mm_fresh(true);
    let platform = mm::platform::sim::SimPlatform::new(NR_PAGES as u64);
    let m = Box::leak(Box::new(mm::manager::MemoryManager::new(pa, platform)));
    let ring = Box::leak(vec![TraceRecord::EMPTY; TRACE_BUF_ENTRIES].into_boxed_slice());
    m.attach_trace_buffer(ring);
    if traced {
        m.tracer()
            .set_enabled(EventId::MmPageAlloc.bit() | EventId::MmPageFree.bit(), true);
    }
    if page_owner {
        let records =
            Box::leak(vec![mm::page_owner::PageOwnerRecord::EMPTY; NR_PAGES].into_boxed_slice());
        m.page_owner().attach(records);
    }
    MmManager(m)
}

impl Pages for MmManager {
    #[inline(always)]
    fn alloc(&mut self, order: u32) -> Option<usize> {
        let order = Order::new(order as u8)?;
        self.0
            .alloc_pages(GfpFlags::GFP_KERNEL, order, OwnerTag::API)
            .ok()
            .map(|pfn| pfn.0 as usize)
    }
    #[inline(always)]
    fn free(&mut self, block: usize, order: u32) {
        let order = Order::new(order as u8).expect("order");
        self.0
            .free_pages(Pfn(block as u64), order)
            .expect("free_pages");
    }
    fn alloc_run(&mut self, nr_pages: usize) -> Option<usize> {
        self.alloc(order_of(nr_pages))
    }
    fn free_run(&mut self, block: usize, nr_pages: usize) {
        self.free(block, order_of(nr_pages));
    }
}

// ----------------------------------------------------------------------
// buddy_system_allocator: FrameAllocator (frame numbers, BTreeSet free
// lists) and Heap (intrusive free lists in the arena)
// ----------------------------------------------------------------------

struct BsaFrame(buddy_system_allocator::FrameAllocator);

fn bsa_frame() -> BsaFrame {
    let mut f = buddy_system_allocator::FrameAllocator::new();
    f.add_frame(0, NR_PAGES);
    BsaFrame(f)
}

impl Pages for BsaFrame {
    #[inline(always)]
    fn alloc(&mut self, order: u32) -> Option<usize> {
        self.0.alloc(1 << order)
    }
    #[inline(always)]
    fn free(&mut self, block: usize, order: u32) {
        self.0.dealloc(block, 1 << order);
    }
    fn alloc_run(&mut self, nr_pages: usize) -> Option<usize> {
        self.0.alloc(nr_pages)
    }
    fn free_run(&mut self, block: usize, nr_pages: usize) {
        self.0.dealloc(block, nr_pages);
    }
}

/// Max block 2^31 bytes: the size the crate's own examples use.
struct BsaHeap(Box<buddy_system_allocator::Heap<32>>);

fn bsa_heap() -> BsaHeap {
    let mut h = Box::new(buddy_system_allocator::Heap::<32>::new());
    // SAFETY: the arena is ours, and only this heap uses it until dropped.
    unsafe { h.init(heap_arena() as usize, ARENA_BYTES) };
    BsaHeap(h)
}

impl LayoutAlloc for BsaHeap {
    #[inline(always)]
    fn alloc_layout(&mut self, l: Layout) -> Option<usize> {
        self.0.alloc(l).ok().map(|p| p.as_ptr() as usize)
    }
    #[inline(always)]
    fn free_layout(&mut self, block: usize, l: Layout) {
        // SAFETY: `block` came from `alloc` with this layout.
        unsafe { self.0.dealloc(NonNull::new_unchecked(block as *mut u8), l) }
    }
}

// ----------------------------------------------------------------------
// axallocator's BitmapPageAllocator (ArceOS): one bit per page, pure
// bookkeeping, so it gets addresses that are never dereferenced.
// ----------------------------------------------------------------------

struct AxBitmap(Box<axallocator::BitmapPageAllocator<PAGE_SIZE>>);

/// 1 GiB-aligned, as the crate aligns its base down to 1 GiB.
const BITMAP_BASE: usize = 0x4000_0000;

fn ax_bitmap() -> AxBitmap {
    use axallocator::BaseAllocator;
    let mut b = Box::new(axallocator::BitmapPageAllocator::<PAGE_SIZE>::new());
    b.init(BITMAP_BASE, ARENA_BYTES);
    AxBitmap(b)
}

impl Pages for AxBitmap {
    #[inline(always)]
    fn alloc(&mut self, order: u32) -> Option<usize> {
        use axallocator::PageAllocator;
        self.0.alloc_pages(1 << order, PAGE_SIZE << order).ok()
    }
    #[inline(always)]
    fn free(&mut self, block: usize, order: u32) {
        use axallocator::PageAllocator;
        self.0.dealloc_pages(block, 1 << order);
    }
    fn alloc_run(&mut self, nr_pages: usize) -> Option<usize> {
        use axallocator::PageAllocator;
        self.0.alloc_pages(nr_pages, PAGE_SIZE).ok()
    }
    fn free_run(&mut self, block: usize, nr_pages: usize) {
        use axallocator::PageAllocator;
        self.0.dealloc_pages(block, nr_pages);
    }
}

// ----------------------------------------------------------------------
// General-purpose heaps asked for page-sized, size-aligned blocks
// ----------------------------------------------------------------------

/// Allocators with a `Layout` API; the `Pages` impl below is shared.
trait LayoutAlloc {
    fn alloc_layout(&mut self, l: Layout) -> Option<usize>;
    fn free_layout(&mut self, block: usize, l: Layout);
}

impl<T: LayoutAlloc> Pages for T {
    #[inline(always)]
    fn alloc(&mut self, order: u32) -> Option<usize> {
        self.alloc_layout(order_layout(order))
    }
    #[inline(always)]
    fn free(&mut self, block: usize, order: u32) {
        self.free_layout(block, order_layout(order));
    }
    fn alloc_run(&mut self, nr_pages: usize) -> Option<usize> {
        self.alloc_layout(page_layout(nr_pages, PAGE_SIZE))
    }
    fn free_run(&mut self, block: usize, nr_pages: usize) {
        self.free_layout(block, page_layout(nr_pages, PAGE_SIZE));
    }
}

struct Talc(talc::base::Talc<talc::source::Manual, talc::DefaultBinning>);

fn talc_fresh() -> Talc {
    let cell = talc::cell::TalcCell::<talc::source::Manual, talc::DefaultBinning>::new(
        talc::source::Manual,
    );
    // SAFETY: the arena is ours, and only this allocator uses it until dropped.
    unsafe { cell.claim(heap_arena(), ARENA_BYTES) }.expect("talc claim");
    Talc(cell.into_inner())
}

impl LayoutAlloc for Talc {
    #[inline(always)]
    fn alloc_layout(&mut self, l: Layout) -> Option<usize> {
        // SAFETY: the layout's size is non-zero.
        unsafe { self.0.allocate(l) }.map(|p| p.as_ptr() as usize)
    }
    #[inline(always)]
    fn free_layout(&mut self, block: usize, l: Layout) {
        // SAFETY: `block` came from `allocate` with this layout.
        unsafe { self.0.deallocate(block as *mut u8, l) }
    }
}

struct Rlsf(rlsf::Tlsf<'static, u32, u32, 28, 16>);

fn rlsf_fresh() -> Rlsf {
    let mut tlsf = rlsf::Tlsf::new();
    // SAFETY: the arena is ours, and only this allocator uses it until dropped.
    let pool: &'static mut [MaybeUninit<u8>] =
        unsafe { std::slice::from_raw_parts_mut(heap_arena().cast(), ARENA_BYTES) };
    tlsf.insert_free_block(pool);
    Rlsf(tlsf)
}

impl LayoutAlloc for Rlsf {
    #[inline(always)]
    fn alloc_layout(&mut self, l: Layout) -> Option<usize> {
        self.0.allocate(l).map(|p| p.as_ptr() as usize)
    }
    #[inline(always)]
    fn free_layout(&mut self, block: usize, l: Layout) {
        // SAFETY: `block` came from `allocate` with this alignment.
        unsafe {
            self.0
                .deallocate(NonNull::new_unchecked(block as *mut u8), l.align())
        }
    }
}

/// good_memory_allocator keeps pointers to its own fields in the heap: it
/// must not move once initialised, hence the box.
struct Galloc(Box<good_memory_allocator::Allocator>);

fn galloc_fresh() -> Galloc {
    let mut a = Box::new(good_memory_allocator::Allocator::empty());
    // SAFETY: the arena is ours and only this allocator, which never moves
    // (boxed), uses it until dropped.
    unsafe { a.init(heap_arena() as usize, ARENA_BYTES) };
    Galloc(a)
}

impl LayoutAlloc for Galloc {
    #[inline(always)]
    fn alloc_layout(&mut self, l: Layout) -> Option<usize> {
        // SAFETY: the layout's size is non-zero.
        let p = unsafe { self.0.alloc(l) };
        (!p.is_null()).then_some(p as usize)
    }
    #[inline(always)]
    fn free_layout(&mut self, block: usize, _l: Layout) {
        // SAFETY: `block` came from `alloc`.
        unsafe { self.0.dealloc(block as *mut u8) }
    }
}

/// The host's malloc (glibc): no arena, so no coalescing probe.
/// No allocator: the bench loop alone. `alloc` hands out the next
/// naturally aligned block number from a counter and `free` only hides
/// its argument from the optimiser, so a row of this is what the loop
/// itself costs (the table reads, the live set's `Vec`, the calls) — the
/// floor under every other row.
struct BenchLoop {
    next: usize,
}

impl Pages for BenchLoop {
    #[inline(always)]
    fn alloc(&mut self, order: u32) -> Option<usize> {
        self.next = self.next.wrapping_add(1 << order);
        Some(black_box(self.next))
    }
    #[inline(always)]
    fn free(&mut self, block: usize, order: u32) {
        black_box((block, order));
    }
    fn alloc_run(&mut self, nr_pages: usize) -> Option<usize> {
        self.alloc(order_of(nr_pages))
    }
    fn free_run(&mut self, block: usize, nr_pages: usize) {
        self.free(block, order_of(nr_pages));
    }
}

struct Sys;

impl LayoutAlloc for Sys {
    #[inline(always)]
    fn alloc_layout(&mut self, l: Layout) -> Option<usize> {
        // SAFETY: the layout's size is non-zero.
        let p = unsafe { System.alloc(l) };
        (!p.is_null()).then_some(p as usize)
    }
    #[inline(always)]
    fn free_layout(&mut self, block: usize, l: Layout) {
        // SAFETY: `block` came from `alloc` with this layout.
        unsafe { System.dealloc(block as *mut u8, l) }
    }
}

// ----------------------------------------------------------------------
// Workloads
// ----------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Op {
    alloc: bool,
    order: u8,
    /// For a free: the index into the live set (swap-removed).
    idx: u32,
}

/// A random workload drawn in advance: what to allocate before the clock
/// starts, then the timed operations.
struct OpTable {
    prefill: Vec<u8>,
    ops: Vec<Op>,
}

fn op_table(seed: u64, cap: usize, max_order: u8, nr_ops: usize) -> OpTable {
    let mut rng = Rng::new(seed);
    let order = |rng: &mut Rng| rng.below(u64::from(max_order) + 1) as u8;
    let prefill: Vec<u8> = (0..cap / 2).map(|_| order(&mut rng)).collect();
    let mut live = prefill.len();
    let mut ops = Vec::with_capacity(nr_ops);
    for _ in 0..nr_ops {
        let p_alloc = 1.0 - live as f64 / cap as f64;
        if rng.unit() < p_alloc {
            ops.push(Op {
                alloc: true,
                order: order(&mut rng),
                idx: 0,
            });
            live += 1;
        } else {
            ops.push(Op {
                alloc: false,
                order: 0,
                idx: rng.below(live as u64) as u32,
            });
            live -= 1;
        }
    }
    OpTable { prefill, ops }
}

/// ns per `alloc(order); free()` pair, for `PAIR_BUDGET` after a warm-up.
fn lifo_pairs<A: Pages>(a: &mut A, order: u32) -> Result<f64, String> {
    let oom = || format!("OOM at order {order}");
    for _ in 0..1024 {
        let b = a.alloc(order).ok_or_else(oom)?;
        a.free(black_box(b), order);
    }
    let start = Instant::now();
    let mut pairs = 0;
    while pairs < PAIR_MAX {
        for _ in 0..1024 {
            let b = a.alloc(black_box(order)).ok_or_else(oom)?;
            a.free(black_box(b), order);
        }
        pairs += 1024;
        if start.elapsed() >= PAIR_BUDGET {
            break;
        }
    }
    Ok(start.elapsed().as_nanos() as f64 / pairs as f64)
}

/// Runs `t` on `a` (at most `max_ops` operations and `budget` of time),
/// then frees everything; ns per operation.
fn random_ops<A: Pages>(
    a: &mut A,
    t: &OpTable,
    max_ops: usize,
    budget: Duration,
) -> Result<f64, String> {
    let mut live: Vec<(usize, u8)> = Vec::with_capacity(2 * t.prefill.len() + 1);
    for &o in &t.prefill {
        match a.alloc(u32::from(o)) {
            Some(b) => live.push((b, o)),
            None => {
                for (b, o) in live {
                    a.free(b, u32::from(o));
                }
                return Err("OOM in prefill".into());
            }
        }
    }
    let mut done = 0usize;
    let mut failed = None;
    let start = Instant::now();
    'run: for chunk in t.ops[..max_ops.min(t.ops.len())].chunks(4096) {
        for op in chunk {
            if op.alloc {
                match a.alloc(u32::from(op.order)) {
                    Some(b) => live.push((b, op.order)),
                    None => {
                        failed = Some(format!("OOM after {done} ops"));
                        break 'run;
                    }
                }
            } else {
                let (b, o) = live.swap_remove(op.idx as usize);
                a.free(black_box(b), u32::from(o));
            }
            done += 1;
        }
        if start.elapsed() >= budget {
            break;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / done.max(1) as f64;
    for (b, o) in live {
        a.free(b, u32::from(o));
    }
    failed.map_or(Ok(ns), Err)
}

/// The longest run of pages `a` hands out now (bisected; each probe is
/// freed again).
fn largest_run<A: Pages>(a: &mut A) -> usize {
    let (mut ok, mut bad) = (0usize, NR_PAGES + 1);
    while bad - ok > 1 {
        let mid = (ok + bad) / 2;
        match a.alloc_run(mid) {
            Some(b) => {
                a.free_run(b, mid);
                ok = mid;
            }
            None => bad = mid,
        }
    }
    ok
}

/// Fresh largest run, churn, free-all, largest run again (and, for mm, the
/// free counts per zone and order).
fn coalesced<A: Pages>(mut a: A, churn: &OpTable) -> String {
    let fresh = largest_run(&mut a);
    a.settle();
    let fresh_counts = a.free_counts();
    if let Err(e) = random_ops(&mut a, churn, COALESCE_OPS, Duration::MAX) {
        return format!("? ({e})");
    }
    a.settle();
    let after = largest_run(&mut a);
    a.settle();
    let counts = match (fresh_counts, a.free_counts()) {
        (Some(f), Some(n)) if f == n => ", buddyinfo = fresh",
        (Some(_), Some(_)) => ", buddyinfo differs",
        _ => "",
    };
    if after == fresh {
        format!("yes: {fresh} pages again{counts}")
    } else {
        format!("NO: {after} of {fresh} pages{counts}")
    }
}

struct Tables {
    order0: OpTable,
    orders0_3: OpTable,
}

/// One row: the five timed cells and the coalescing check, each on fresh
/// allocators from `make`.
fn row<A: Pages>(make: impl Fn() -> A, t: &Tables, coalesce: bool) -> Vec<String> {
    let mut cells = Vec::new();
    for order in [0, 3, 9] {
        cells.push(cell(&median_of_3(|| lifo_pairs(&mut make(), order))));
    }
    cells.push(cell(&median_of_3(|| {
        random_ops(&mut make(), &t.order0, RANDOM_OPS, RANDOM_BUDGET)
    })));
    cells.push(cell(&median_of_3(|| {
        random_ops(&mut make(), &t.orders0_3, RANDOM_OPS, RANDOM_BUDGET)
    })));
    cells.push(if coalesce {
        coalesced(make(), &t.orders0_3)
    } else {
        "n/a: no arena of its own".into()
    });
    cells
}

fn selected(name: &str) -> bool {
    std::env::var("PZ_BENCH_ONLY").map_or(true, |f| name.contains(&f))
}

/// `PZ_BENCH_COUNT` (see the module docs).
fn count_mode(spec: &str) {
    fn run<A: Pages>(a: &mut A, work: &str, n: usize, table: usize) {
        let random = |a: &mut A, max_order: u8| {
            let t = op_table(
                0x5eed_0000 + u64::from(max_order),
                if max_order == 0 { 10_000 } else { 4_000 },
                max_order,
                table.max(n),
            );
            random_ops(a, &t, n, Duration::MAX).expect("random ops");
        };
        match work {
            "rand0" => random(a, 0),
            "rand03" => random(a, 3),
            pair => {
                let order: u32 = pair
                    .trim_start_matches("pair")
                    .parse()
                    .expect("pair<order>");
                for _ in 0..n {
                    let b = a.alloc(black_box(order)).expect("alloc");
                    a.free(black_box(b), order);
                }
            }
        }
    }
    let mut it = spec.split(',');
    let (row, work) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
    let n: usize = it
        .next()
        .and_then(|n| n.parse().ok())
        .expect("PZ_BENCH_COUNT=row,workload,n[,table]");
    let table: usize = it.next().and_then(|t| t.parse().ok()).unwrap_or(n);
    match row {
        "pcp" | "mm (pcp)" => run(&mut mm_fresh(true), work, n, table),
        "bypassed" | "mm (pcp bypassed)" => run(&mut mm_fresh(false), work, n, table),
        "manager" => run(&mut mm_manager(false, false), work, n, table),
        "buddy_system_allocator 0.13 FrameAllocator" => run(&mut bsa_frame(), work, n, table),
        "buddy_system_allocator 0.13 Heap" => run(&mut bsa_heap(), work, n, table),
        "axallocator 0.2 bitmap" => run(&mut ax_bitmap(), work, n, table),
        "talc 5.1" => run(&mut talc_fresh(), work, n, table),
        "rlsf 0.2" => run(&mut rlsf_fresh(), work, n, table),
        "good_memory_allocator 0.1" => run(&mut galloc_fresh(), work, n, table),
        "system (glibc malloc)" => run(&mut Sys, work, n, table),
        BENCH_LOOP => run(&mut BenchLoop { next: 0 }, work, n, table),
        _ => panic!("row: pcp, bypassed, manager or a table row's name"),
    }
}

/// The baseline row's name ([`BenchLoop`]).
const BENCH_LOOP: &str = "bench loop alone (no allocator)";

/// Pairs or operations per counted run ([`InstrCount`], twice that for
/// the second): the slowest row (good_memory_allocator's random order-0
/// op, ~15 µs) then takes about half a minute under cachegrind.
const COUNT_N: usize = 10_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches`
    }
    if let Ok(spec) = std::env::var("PZ_BENCH_COUNT") {
        count_mode(&spec);
        return;
    }
    let t = Tables {
        order0: op_table(0x5eed_0000, 10_000, 0, RANDOM_OPS),
        orders0_3: op_table(0x5eed_0003, 4_000, 3, RANDOM_OPS),
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut add = |name: &str, f: &mut dyn FnMut() -> Vec<String>| {
        if selected(name) {
            let mut r = vec![name.to_string()];
            r.extend(f());
            eprintln!("pages: {} done", name);
            rows.push(r);
        }
    };
    add("mm (pcp)", &mut || row(|| mm_fresh(true), &t, true));
    add("mm (pcp bypassed)", &mut || {
        row(|| mm_fresh(false), &t, true)
    });
    add("buddy_system_allocator 0.13 FrameAllocator", &mut || {
        row(bsa_frame, &t, true)
    });
    add("buddy_system_allocator 0.13 Heap", &mut || {
        row(bsa_heap, &t, true)
    });
    add("axallocator 0.2 bitmap", &mut || row(ax_bitmap, &t, true));
    add("axallocator 0.2 slab", &mut || {
        vec!["n/a ‡".to_string(); 6]
    });
    add("talc 5.1", &mut || row(talc_fresh, &t, true));
    add("rlsf 0.2", &mut || row(rlsf_fresh, &t, true));
    add("good_memory_allocator 0.1", &mut || {
        row(galloc_fresh, &t, true)
    });
    add("system (glibc malloc)", &mut || row(|| Sys, &t, false));
    add(BENCH_LOOP, &mut || row(|| BenchLoop { next: 0 }, &t, false));

    // The workload columns both page tables share.
    const COLUMNS: [&str; 6] = [
        "allocator",
        "order-0 pair",
        "order-3 pair",
        "order-9 pair",
        "rand order-0 op (≤10k live)",
        "rand orders 0–3 op (≤4k live)",
    ];
    let mut header = COLUMNS.to_vec();
    header.push("coalesced after free-all");
    print_table(
        "Page layer: ns per alloc+free pair (LIFO) or per random operation; median of 3 runs, fresh allocator on a 64 MiB arena each run",
        &header,
        &rows,
    );
    println!();
    println!(
        "‡ axallocator's slab is a byte allocator (the kmalloc table has it); its blocks over 4 KiB come from a buddy_system_allocator Heap, the row above."
    );
    println!(
        "Coalesced: the largest page-aligned run the allocator hands out, fresh and again after 200 000 random orders 0–3 ops and free-all (mm: also every zone's free blocks per order)."
    );
    println!(
        "Blocks are naturally aligned (2^order pages at a multiple of their size), as alloc_pages returns them. \
         Random ops: the live set starts at half the cap; each op allocates with probability 1 − live/cap, else frees a random live block."
    );

    if let Some(counter) = InstrCount::new() {
        let counted: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let name = r[0].as_str();
                let mut out = vec![name.to_string()];
                for work in ["pair0", "pair3", "pair9", "rand0", "rand03"] {
                    if name == "axallocator 0.2 slab" {
                        out.push("n/a ‡".into());
                        continue;
                    }
                    let per_op = counter.per_op(
                        COUNT_N,
                        |n| {
                            vec![(
                                "PZ_BENCH_COUNT",
                                format!("{name},{work},{n},{}", 2 * COUNT_N),
                            )]
                        },
                        |n| n as f64,
                    );
                    out.push(cell(&per_op));
                }
                eprintln!("pages: {name} counted");
                out
            })
            .collect();
        print_table(
            &format!(
                "Page layer: instructions per pair or random operation, the same workloads counted \
                 (valgrind cachegrind, {COUNT_N} against {} pairs or operations, the random operations drawn before either)",
                2 * COUNT_N
            ),
            &COLUMNS,
            &counted,
        );
        println!();
        println!(
            "A count includes the bench loop's own instructions (the table read, the call), alike for every row; \
             a random row's also differs by the frees of the few blocks live at the end of one run and not the other (±1)."
        );
    }

    // The cost of tracing (issue 14): the same pairs through the
    // MemoryManager the kernel calls, with the page tracepoints off and on,
    // and with page_owner on.
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (name, traced, page_owner) in [
        ("MemoryManager, tracing off", false, false),
        (
            "MemoryManager, kmem:mm_page_alloc + mm_page_free on",
            true,
            false,
        ),
        ("MemoryManager, page_owner=on (tracing off)", false, true),
    ] {
        if !selected(name) {
            continue;
        }
        let mut r = vec![name.to_string()];
        for order in [0, 3] {
            r.push(cell(&median_of_3(|| {
                lifo_pairs(&mut mm_manager(traced, page_owner), order)
            })));
        }
        eprintln!("pages: {name} done");
        rows.push(r);
    }
    println!();
    print_table(
        "Tracing cost: ns per alloc_pages+free_pages pair (LIFO, pcp on) through MemoryManager; median of 3 runs",
        &["tracepoints", "order-0 pair", "order-3 pair"],
        &rows,
    );
    println!();
    println!(
        "Off, a tracepoint (and page_owner's hook) is one relaxed load and a branch; on, each pair records two fixed-size records into the 8192-entry ring (try_lock, no heap), overwriting the oldest; page_owner on writes the block's record at alloc and marks it free at free (one lock each)."
    );
}
