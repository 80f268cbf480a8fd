//! `make bench`: Pagezone's kmalloc/kfree beside talc, rlsf and the system
//! allocator, in one run, printed side by side (ns per operation).
//!
//! Workloads (sizes from precomputed tables so the RNG is not timed):
//! * LIFO pair — `p = alloc(size); free(p)`, size 64 and uniform 8..4096;
//!   reported per pair.
//! * random interleaved — 1024 live slots; each step frees a random slot and
//!   allocates a new random size into it; reported per operation (a step is
//!   two), sizes uniform and log-uniform over 8..4096.
//!
//! Pagezone runs on a simulated direct map. `pagezone (kernel)` implements
//! `ObjectMemory` the way the kernel does — a raw load/store at
//! `base + (addr - PAGE_OFFSET)`, no bounds check — and calls `kmalloc` on
//! `&mut SlabAllocator` (the exclusive path); `pagezone (kernel, per-CPU
//! path)` takes the kernel heap's order of paths — `kmalloc_cpu` /
//! `kfree_cpu` (a CPU's free list and `list_lock` slow paths, under its
//! flag alone), the exclusive ones when those decline; `+lock` adds the
//! spin lock the kernel's `GlobalAlloc` took around every call; `pagezone (safe arena)` uses the
//! host `ArenaMemory` (one bounds check per word). talc and rlsf run
//! unlocked on a claimed heap; so do good_memory_allocator, bsa's `Heap`
//! (power-of-two blocks, buddy merge by list scan) and axallocator's
//! `SlabByteAllocator` (ArceOS: slabs of 64..4096 bytes over a bsa `Heap`),
//! each on its own 128 MiB page-aligned buffer; `system` is the host's
//! malloc (glibc, with its per-thread cache).
//!
//! Last, the tracepoints' cost (`mm::trace`), LIFO 64 B pairs with the
//! kernel heap's arrangement, a `MemoryManager` as the page source:
//! `kmem:kmalloc` + `kmem:kfree` off (one relaxed load of the enable mask
//! and a branch in kmalloc and in kfree) and on (recorded into an
//! 8192-record ring, timestamped by the simulated platform's clock — an
//! atomic add here, `rdtsc` in the kernel). The rows above use a page
//! source without a tracer, where the tracepoints compile away.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::time::Instant;

use benches::{InstrCount, cell, leaked_arena, median_of_3, print_table};
use mm::gfp::GfpFlags;
use mm::manager::MemoryManager;
use mm::memblock::Memblock;
use mm::page::Page;
use mm::page_alloc::PageAlloc;
use mm::platform::sim::SimPlatform;
use mm::slab::{ArenaMemory, ObjectMemory, PageSource, SlabAllocator, SlabFlags, SlabMeta};
use mm::trace::{EventId, TRACE_BUF_ENTRIES, TraceRecord};
use mm::types::{PAGE_OFFSET, Pfn, PhysAddr};
use mm::zone::ZoneLayout;

const RAM: u64 = 128 << 20;
const HEAP: usize = 128 << 20;
const SLOTS: usize = 1024;
const TABLE: usize = 1 << 16;

trait Alloc {
    fn alloc(&mut self, size: usize) -> usize;
    fn free(&mut self, p: usize, size: usize);
}

// ----------------------------------------------------------------------
// Pagezone
// ----------------------------------------------------------------------

/// The kernel's `ObjectMemory`: plain loads and stores into the direct map
/// (here: a host buffer standing in for it).
///
/// The kernel's `DirectMap` dereferences the address itself; here the
/// buffer sits elsewhere, so an address is moved by `bias` (the buffer's
/// start less `PAGE_OFFSET`, computed once): one add, as close as a host
/// process gets to the kernel's identity (it used to compute `base +
/// (addr - PAGE_OFFSET)` at every access, three instructions more).
struct RawDirectMap {
    bias: *mut u8,
}

impl RawDirectMap {
    /// Where `addr` lives in the buffer.
    #[inline(always)]
    fn at(&self, addr: u64) -> *mut u8 {
        // `wrapping_add` keeps the buffer's provenance through the
        // out-of-bounds `bias`; the result is inside the buffer.
        self.bias.wrapping_add(addr as usize)
    }
}

impl ObjectMemory for RawDirectMap {
    #[inline(always)]
    fn read_u64(&self, addr: u64) -> u64 {
        // SAFETY: the slab layer only passes addresses of frames it owns,
        // all inside the RAM-sized buffer.
        unsafe { (self.at(addr) as *const u64).read() }
    }
    #[inline(always)]
    fn write_u64(&self, addr: u64, v: u64) {
        // SAFETY: as above.
        unsafe { (self.at(addr) as *mut u64).write(v) }
    }
    #[inline(always)]
    fn read_u8(&self, addr: u64) -> u8 {
        // SAFETY: as above.
        unsafe { self.at(addr).read() }
    }
    #[inline(always)]
    fn write_u8(&self, addr: u64, v: u8) {
        // SAFETY: as above.
        unsafe { self.at(addr).write(v) }
    }
    #[inline]
    fn fill(&self, addr: u64, len: usize, byte: u8) {
        // SAFETY: as above.
        unsafe { self.at(addr).write_bytes(byte, len) }
    }
}

fn page_alloc() -> spin::Mutex<PageAlloc<'static>> {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), RAM).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    let mem_map = Box::leak(vec![Page::new_reserved(); (RAM >> 12) as usize].into_boxed_slice());
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(RAM, RAM)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    spin::Mutex::new(pa)
}

fn slab() -> SlabAllocator<'static> {
    let metas = Box::leak(vec![SlabMeta::EMPTY; (RAM >> 12) as usize].into_boxed_slice());
    SlabAllocator::new(metas, SlabFlags::NONE)
}

struct Pagezone<M: ObjectMemory, S: PageSource = spin::Mutex<PageAlloc<'static>>> {
    slab: SlabAllocator<'static>,
    mem: M,
    pages: S,
}

impl<M: ObjectMemory, S: PageSource> Alloc for Pagezone<M, S> {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        self.slab
            .kmalloc(&self.mem, &self.pages, size, GfpFlags::GFP_KERNEL)
            .unwrap() as usize
    }
    #[inline(always)]
    fn free(&mut self, p: usize, _size: usize) {
        let _ = self.slab.kfree(&self.mem, &self.pages, p as u64);
    }
}

/// The kernel heap's order of paths (`slab_glue::kmalloc_fast` /
/// `kfree_fast`): CPU 0's free list under its flag alone
/// (`kmalloc_cpu`, `kfree_cpu`, with their `list_lock` slow paths), and
/// the exclusive `kmalloc` / `kfree` when those decline. No lock is taken
/// here: one thread, one CPU.
/// An allocator's own state at a page boundary on the heap, where the
/// kernel's is at a fixed place in `.bss`. On the stack (where `main`
/// would build it) its address moves with ASLR and the environment's
/// size, and so did the LIFO rows: the same binary and instruction count
/// gave 4.5 ns in one run and 7.0–7.5 ns in ten others, by where the
/// per-CPU slab entries fell relative to the objects (their offsets in a
/// page, a layout effect of the CPU's, not a code path). Page-aligned,
/// every run measures the same layout.
#[repr(C, align(4096))]
struct PageAligned<T>(T);

impl<T> PageAligned<T> {
    fn boxed(t: T) -> Box<PageAligned<T>> {
        Box::new(PageAligned(t))
    }
}

struct PagezoneCpu {
    slab: SlabAllocator<'static>,
    mem: RawDirectMap,
    pages: spin::Mutex<PageAlloc<'static>>,
}

impl Alloc for PagezoneCpu {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        // SAFETY: CPU 0 < NR_CPUS; this thread is the only user of the
        // allocator, so it holds every CPU's slot (what the flag ensures).
        let fast = unsafe {
            self.slab
                .kmalloc_cpu(0, &self.mem, size, GfpFlags::GFP_KERNEL)
        };
        match fast {
            Some(p) => p as usize,
            None => self
                .slab
                .kmalloc(&self.mem, &self.pages, size, GfpFlags::GFP_KERNEL)
                .unwrap() as usize,
        }
    }
    #[inline(always)]
    fn free(&mut self, p: usize, _size: usize) {
        // SAFETY: as above; `p` came from `alloc` and is freed once.
        if !unsafe { self.slab.kfree_cpu(0, &self.mem, p as u64) } {
            let _ = self.slab.kfree(&self.mem, &self.pages, p as u64);
        }
    }
}

/// As the kernel's `GlobalAlloc` will run it: the slab lock around each call.
struct PagezoneLocked<M: ObjectMemory> {
    slab: spin::Mutex<SlabAllocator<'static>>,
    mem: M,
    pages: spin::Mutex<PageAlloc<'static>>,
}

impl<M: ObjectMemory> Alloc for PagezoneLocked<M> {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        self.slab
            .lock()
            .kmalloc(&self.mem, &self.pages, size, GfpFlags::GFP_KERNEL)
            .unwrap() as usize
    }
    #[inline(always)]
    fn free(&mut self, p: usize, _size: usize) {
        let _ = self.slab.lock().kfree(&self.mem, &self.pages, p as u64);
    }
}

/// The kernel's arrangement for tracing: a `MemoryManager` (with its
/// tracer) as the page source.
struct PagezoneTraced {
    slab: SlabAllocator<'static>,
    mem: RawDirectMap,
    mm: &'static MemoryManager<'static, SimPlatform>,
}

impl Alloc for PagezoneTraced {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        self.slab
            .kmalloc(&self.mem, self.mm, size, GfpFlags::GFP_KERNEL)
            .unwrap() as usize
    }
    #[inline(always)]
    fn free(&mut self, p: usize, _size: usize) {
        let _ = self.slab.kfree(&self.mem, self.mm, p as u64);
    }
}

fn traced() -> PagezoneTraced {
    let pa = page_alloc().into_inner();
    let mm = Box::leak(Box::new(MemoryManager::new(pa, SimPlatform::new(0))));
    mm.attach_trace_buffer(Box::leak(
        vec![TraceRecord::EMPTY; TRACE_BUF_ENTRIES].into_boxed_slice(),
    ));
    PagezoneTraced {
        slab: slab(),
        mem: raw_ram(),
        mm,
    }
}

fn raw_ram() -> RawDirectMap {
    // Page-aligned, as the direct map is: a plain `vec!` of this size
    // comes from `mmap` 16 bytes into a page, which put every object
    // 16 bytes off its kernel alignment (a 64 B object across two cache
    // lines).
    let base = leaked_arena(RAM as usize, 4096);
    RawDirectMap {
        bias: base.wrapping_sub(PAGE_OFFSET as usize),
    }
}

// ----------------------------------------------------------------------
// The others
// ----------------------------------------------------------------------

struct Talc(talc::base::Talc<talc::source::Manual, talc::DefaultBinning>);

impl Talc {
    fn new() -> Self {
        let cell = talc::cell::TalcCell::<talc::source::Manual, talc::DefaultBinning>::new(
            talc::source::Manual,
        );
        let heap = Box::leak(vec![0u8; HEAP].into_boxed_slice());
        // SAFETY: the leaked buffer is ours for the program's lifetime.
        unsafe { cell.claim(heap.as_mut_ptr(), HEAP) }.expect("talc claim");
        Talc(cell.into_inner())
    }
}

impl Alloc for Talc {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        // SAFETY: size is non-zero.
        unsafe { self.0.allocate(Layout::from_size_align_unchecked(size, 8)) }
            .unwrap()
            .as_ptr() as usize
    }
    #[inline(always)]
    fn free(&mut self, p: usize, size: usize) {
        // SAFETY: p came from allocate with this layout.
        unsafe {
            self.0
                .deallocate(p as *mut u8, Layout::from_size_align_unchecked(size, 8))
        }
    }
}

struct Rlsf(rlsf::Tlsf<'static, u32, u32, 28, 16>);

impl Rlsf {
    fn new() -> Self {
        let mut tlsf = rlsf::Tlsf::new();
        let pool: &'static mut [MaybeUninit<u8>] =
            Box::leak(vec![MaybeUninit::new(0u8); HEAP].into_boxed_slice());
        tlsf.insert_free_block(pool);
        Rlsf(tlsf)
    }
}

impl Alloc for Rlsf {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        // SAFETY: size is non-zero.
        self.0
            .allocate(unsafe { Layout::from_size_align_unchecked(size, 8) })
            .unwrap()
            .as_ptr() as usize
    }
    #[inline(always)]
    fn free(&mut self, p: usize, _size: usize) {
        // SAFETY: p came from allocate with align 8.
        unsafe { self.0.deallocate(NonNull::new_unchecked(p as *mut u8), 8) }
    }
}

/// good_memory_allocator keeps pointers to its own fields in the heap: it
/// must not move once initialised, hence the box.
struct Galloc(Box<good_memory_allocator::Allocator>);

impl Galloc {
    fn new() -> Self {
        let mut a = Box::new(good_memory_allocator::Allocator::empty());
        // SAFETY: the leaked buffer is ours for the program's lifetime; the
        // boxed allocator never moves.
        unsafe { a.init(leaked_arena(HEAP, 4096) as usize, HEAP) };
        Galloc(a)
    }
}

impl Alloc for Galloc {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        // SAFETY: size is non-zero.
        let p = unsafe { self.0.alloc(Layout::from_size_align_unchecked(size, 8)) };
        assert!(!p.is_null(), "good_memory_allocator: out of memory");
        p as usize
    }
    #[inline(always)]
    fn free(&mut self, p: usize, _size: usize) {
        // SAFETY: p came from alloc.
        unsafe { self.0.dealloc(p as *mut u8) }
    }
}

/// Max block 2^31 bytes: the size the crate's own examples use.
struct BsaHeap(Box<buddy_system_allocator::Heap<32>>);

impl BsaHeap {
    fn new() -> Self {
        let mut h = Box::new(buddy_system_allocator::Heap::<32>::new());
        // SAFETY: the leaked buffer is ours for the program's lifetime.
        unsafe { h.init(leaked_arena(HEAP, 4096) as usize, HEAP) };
        BsaHeap(h)
    }
}

impl Alloc for BsaHeap {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        // SAFETY: size is non-zero.
        self.0
            .alloc(unsafe { Layout::from_size_align_unchecked(size, 8) })
            .expect("bsa Heap: out of memory")
            .as_ptr() as usize
    }
    #[inline(always)]
    fn free(&mut self, p: usize, size: usize) {
        // SAFETY: p came from alloc with this layout.
        unsafe {
            self.0.dealloc(
                NonNull::new_unchecked(p as *mut u8),
                Layout::from_size_align_unchecked(size, 8),
            )
        }
    }
}

struct AxSlab(axallocator::SlabByteAllocator);

impl AxSlab {
    fn new() -> Self {
        use axallocator::BaseAllocator;
        let mut a = axallocator::SlabByteAllocator::new();
        // The crate wants a page-aligned start and a size that is a multiple
        // of 32 KiB.
        a.init(leaked_arena(HEAP, 4096) as usize, HEAP);
        AxSlab(a)
    }
}

impl Alloc for AxSlab {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        use axallocator::ByteAllocator;
        // SAFETY: size is non-zero.
        self.0
            .alloc(unsafe { Layout::from_size_align_unchecked(size, 8) })
            .expect("axallocator slab: out of memory")
            .as_ptr() as usize
    }
    #[inline(always)]
    fn free(&mut self, p: usize, size: usize) {
        use axallocator::ByteAllocator;
        // SAFETY: p came from alloc with this layout.
        unsafe {
            self.0.dealloc(
                NonNull::new_unchecked(p as *mut u8),
                Layout::from_size_align_unchecked(size, 8),
            )
        }
    }
}

/// No allocator: the bench loop alone (`alloc` returns a made-up
/// address, `free` only hides its arguments from the optimiser), the
/// floor under every other row: what the loop's table reads, live-set
/// bookkeeping and calls cost by themselves.
struct BenchLoop;

impl Alloc for BenchLoop {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        black_box(0x1000 + size)
    }
    #[inline(always)]
    fn free(&mut self, p: usize, size: usize) {
        black_box((p, size));
    }
}

struct Sys;

impl Alloc for Sys {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> usize {
        // SAFETY: size is non-zero.
        unsafe { System.alloc(Layout::from_size_align_unchecked(size, 8)) as usize }
    }
    #[inline(always)]
    fn free(&mut self, p: usize, size: usize) {
        // SAFETY: p came from alloc with this layout.
        unsafe { System.dealloc(p as *mut u8, Layout::from_size_align_unchecked(size, 8)) }
    }
}

// ----------------------------------------------------------------------
// Workloads
// ----------------------------------------------------------------------

struct Tables {
    uniform: Vec<usize>,
    log_uniform: Vec<usize>,
    slot: Vec<usize>,
}

fn tables() -> Tables {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut t = Tables {
        uniform: Vec::new(),
        log_uniform: Vec::new(),
        slot: Vec::new(),
    };
    for _ in 0..TABLE {
        t.uniform.push(8 + (next() % 4089) as usize);
        let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
        t.log_uniform
            .push(((8.0f64 * 512f64.powf(u)) as usize).clamp(8, 4096));
        t.slot.push((next() as usize) % SLOTS);
    }
    t
}

/// ns per pair of `p = alloc(sizes[i]); free(p)`.
fn lifo_pairs<A: Alloc>(a: &mut A, sizes: &[usize], iters: usize) -> f64 {
    let sizes = table(sizes);
    // Warm up (slabs exist, caches hot).
    for i in 0..TABLE {
        let s = sizes[i & (TABLE - 1)];
        let p = a.alloc(s);
        a.free(opaque(p), s);
    }
    let (start, cpu) = (Instant::now(), thread_cpu_ns());
    for i in 0..iters {
        let s = sizes[i & (TABLE - 1)];
        let p = a.alloc(s);
        a.free(opaque(p), s);
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    LAST_CPU.with(|c| c.set((thread_cpu_ns() - cpu) as f64 / iters as f64));
    ns
}

/// A workload table as an array: indexed with `i & (TABLE - 1)`, it needs
/// no bounds check (a compare and a branch an access, which the kernel's
/// callers do not have).
fn table(t: &[usize]) -> &[usize; TABLE] {
    t.try_into().expect("workload tables hold TABLE entries")
}

/// `p`, which the optimiser cannot see through (so `free(alloc())` is not
/// folded away), kept in its register: `std::hint::black_box` takes the
/// value's address, a store and a reload that put a store-to-load
/// forwarding on the path from one allocation to the next, which the
/// kernel's callers do not have.
#[inline(always)]
fn opaque(mut p: usize) -> usize {
    // SAFETY: an empty asm block that claims to change `p`'s register;
    // it touches no memory, stack or flags.
    unsafe { std::arch::asm!("/* {0} */", inout(reg) p, options(nomem, nostack, preserves_flags)) };
    p
}

/// ns per operation of random free-then-alloc steps over `SLOTS` live slots.
fn random_ops<A: Alloc>(a: &mut A, sizes: &[usize], slots_table: &[usize], steps: usize) -> f64 {
    let (sizes, slots_table) = (table(sizes), table(slots_table));
    let mut live = [(0usize, 0usize); SLOTS];
    for (i, l) in live.iter_mut().enumerate() {
        let s = sizes[i];
        *l = (a.alloc(s), s);
    }
    let (start, cpu) = (Instant::now(), thread_cpu_ns());
    for i in 0..steps {
        let j = slots_table[i & (TABLE - 1)];
        let (p, s) = live[j];
        a.free(opaque(p), s);
        let ns = sizes[(i + SLOTS) & (TABLE - 1)];
        live[j] = (a.alloc(ns), ns);
    }
    let ns = start.elapsed().as_nanos() as f64 / (2 * steps) as f64;
    LAST_CPU.with(|c| c.set((thread_cpu_ns() - cpu) as f64 / (2 * steps) as f64));
    for (p, s) in live {
        a.free(p, s);
    }
    ns
}

/// The median of three runs (every table of `make bench` is made so).
/// `PZ_BENCH_RAW=1` also prints the fastest of the three to stderr with
/// three decimals, as wall-clock time (`raw <ns>`) and as this thread's
/// CPU time (`rawcpu <ns>`, which leaves out the time other tenants of a
/// shared host ran instead), for comparing binaries run alternately.
fn median3(mut f: impl FnMut() -> f64) -> f64 {
    let (mut fastest, mut fastest_cpu) = (f64::INFINITY, f64::INFINITY);
    let median = median_of_3(|| {
        let ns = f();
        fastest_cpu = fastest_cpu.min(LAST_CPU.with(|c| c.get()));
        fastest = fastest.min(ns);
        Ok(ns)
    })
    .expect("plain timings");
    if std::env::var_os("PZ_BENCH_RAW").is_some() {
        eprintln!("raw {fastest:.3}");
        eprintln!("rawcpu {fastest_cpu:.3}");
    }
    median
}

thread_local! {
    /// CPU time per pair or operation of the last timed loop, ns.
    static LAST_CPU: std::cell::Cell<f64> = const { std::cell::Cell::new(f64::NAN) };
}

/// This thread's CPU time, ns (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: glibc's clock_gettime writes one timespec to `ts`.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `PZ_BENCH_ONLY=<allocator substring>[:<workload 0..3>]` (for profiling)
/// runs only matching rows / one workload; the default runs everything.
fn selected(name: &str) -> bool {
    match std::env::var("PZ_BENCH_ONLY") {
        Ok(f) => name.contains(f.split(':').next().unwrap_or("")),
        Err(_) => true,
    }
}

fn workload_selected(w: usize) -> bool {
    match std::env::var("PZ_BENCH_ONLY") {
        Ok(f) => f
            .split(':')
            .nth(1)
            .is_none_or(|x| x.parse::<usize>().is_ok_and(|x| x == w)),
        Err(_) => true,
    }
}

/// `PZ_BENCH_ITERS=<n>` (for callgrind) runs `n` pairs or steps per
/// timed run instead of 10 M pairs and 4 M steps: the instructions of two
/// runs with different `n`, subtracted, are the workload's alone (three
/// timed runs each, plus the warm-up of a LIFO row, which is fixed).
fn iters(default: usize) -> usize {
    std::env::var("PZ_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Pairs or steps per timed run when counting instructions (and twice
/// that): enough that the difference dwarfs any run-to-run wobble in
/// the set-up (there is none in a deterministic program, but the count
/// is divided by it).
const COUNT_N: usize = 20_000;

fn run<A: Alloc>(a: &mut A, t: &Tables) -> [f64; 4] {
    let fixed64 = vec![64usize; TABLE];
    let pairs = iters(10_000_000);
    let steps = iters(4_000_000);
    let mut r = [f64::NAN; 4];
    if workload_selected(0) {
        r[0] = median3(|| lifo_pairs(a, &fixed64, pairs));
    }
    if workload_selected(1) {
        r[1] = median3(|| lifo_pairs(a, &t.uniform, pairs));
    }
    if workload_selected(2) {
        r[2] = median3(|| random_ops(a, &t.uniform, &t.slot, steps));
    }
    if workload_selected(3) {
        r[3] = median3(|| random_ops(a, &t.log_uniform, &t.slot, steps));
    }
    r
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches`
    }
    let t = tables();
    let mut results: Vec<(&str, [f64; 4])> = Vec::new();
    if selected("pagezone (kernel)") {
        let mut pz = PageAligned::boxed(Pagezone {
            slab: slab(),
            mem: raw_ram(),
            pages: page_alloc(),
        });
        let pz = &mut pz.0;
        results.push(("pagezone (kernel)", run(pz, &t)));
        pz.slab.shrink_all(&pz.mem, &pz.pages);
        pz.slab
            .check_invariants(&pz.mem)
            .expect("slab invariants after the run");
    }
    if selected("pagezone (kernel, per-CPU path)") {
        let mut pzc = PageAligned::boxed(PagezoneCpu {
            slab: slab(),
            mem: raw_ram(),
            pages: page_alloc(),
        });
        let pzc = &mut pzc.0;
        results.push(("pagezone (kernel, per-CPU path)", run(pzc, &t)));
        pzc.slab.shrink_all(&pzc.mem, &pzc.pages);
        pzc.slab
            .check_invariants(&pzc.mem)
            .expect("slab invariants after the run");
    }
    if selected("pagezone +lock") {
        let mut pzl = PageAligned::boxed(PagezoneLocked {
            slab: spin::Mutex::new(slab()),
            mem: raw_ram(),
            pages: page_alloc(),
        });
        results.push(("pagezone +lock", run(&mut pzl.0, &t)));
    }
    if selected("pagezone (safe arena)") {
        let mut pza = PageAligned::boxed(Pagezone {
            slab: slab(),
            mem: ArenaMemory::new(Pfn(0), RAM >> 12),
            pages: page_alloc(),
        });
        results.push(("pagezone (safe arena)", run(&mut pza.0, &t)));
    }
    if selected("talc 5.1") {
        results.push(("talc 5.1", run(&mut Talc::new(), &t)));
    }
    if selected("rlsf 0.2") {
        results.push(("rlsf 0.2", run(&mut Rlsf::new(), &t)));
    }
    if selected("good_memory_allocator 0.1") {
        results.push(("good_memory_allocator 0.1", run(&mut Galloc::new(), &t)));
    }
    if selected("buddy_system_allocator 0.13 Heap") {
        results.push((
            "buddy_system_allocator 0.13 Heap",
            run(&mut BsaHeap::new(), &t),
        ));
    }
    if selected("axallocator 0.2 slab") {
        results.push(("axallocator 0.2 slab", run(&mut AxSlab::new(), &t)));
    }
    if selected("system (glibc malloc)") {
        results.push(("system (glibc malloc)", run(&mut Sys, &t)));
    }
    if selected("bench loop alone (no allocator)") {
        results.push(("bench loop alone (no allocator)", run(&mut BenchLoop, &t)));
    }

    let pages_only = |rows: &mut Vec<Vec<String>>| {
        for name in [
            "buddy_system_allocator 0.13 FrameAllocator",
            "axallocator 0.2 bitmap",
        ] {
            let mut row = vec![name.to_string()];
            row.extend(std::iter::repeat_n("n/a: pages only".to_string(), 4));
            rows.push(row);
        }
    };
    let mut rows: Vec<Vec<String>> = results
        .iter()
        .map(|(name, r)| {
            let mut row = vec![name.to_string()];
            row.extend(r.iter().map(|ns| cell(&Ok(*ns))));
            row
        })
        .collect();
    pages_only(&mut rows);
    const HEADER: [&str; 5] = [
        "allocator",
        "LIFO 64 B pair",
        "LIFO 8..4096 pair",
        "rand uniform 8..4096 op (1024 live)",
        "rand log-uniform op (1024 live)",
    ];
    print_table(
        "Slab layer (kmalloc): ns per alloc+free pair (LIFO) or per random operation; median of 3 runs",
        &HEADER,
        &rows,
    );
    println!();
    println!(
        "Issue 12 targets for kmalloc (pagezone (kernel)): LIFO 64 B pair <= 4 ns, random uniform op <= 8 ns."
    );

    if let Some(counter) = InstrCount::new() {
        let mut rows: Vec<Vec<String>> = results
            .iter()
            .map(|(name, _)| {
                let mut row = vec![name.to_string()];
                row.extend((0..4).map(|w| {
                    if !workload_selected(w) {
                        return String::new();
                    }
                    // Every timed run is three runs of `n` pairs or steps
                    // (`median3`); a step is two operations.
                    let ops_per = if w < 2 { 3.0 } else { 6.0 };
                    let per_op = counter.per_op(
                        COUNT_N,
                        |n| {
                            vec![
                                ("PZ_BENCH_ONLY", format!("{name}:{w}")),
                                ("PZ_BENCH_ITERS", n.to_string()),
                            ]
                        },
                        |n| ops_per * n as f64,
                    );
                    cell(&per_op)
                }));
                eprintln!("kmalloc: {name} counted");
                row
            })
            .collect();
        pages_only(&mut rows);
        print_table(
            &format!(
                "Slab layer (kmalloc): instructions per pair or operation, the same workloads counted \
                 (valgrind cachegrind, {COUNT_N} against {} pairs or steps)",
                2 * COUNT_N
            ),
            &HEADER,
            &rows,
        );
        println!();
        println!(
            "A count includes the bench loop's own instructions (the table read, the call), alike for every row."
        );
    }

    if selected("tracing") {
        let fixed64 = vec![64usize; TABLE];
        const PAIRS: usize = 10_000_000;
        let mut pz = traced();
        let off = median3(|| lifo_pairs(&mut pz, &fixed64, PAIRS));
        let events = EventId::Kmalloc.bit() | EventId::Kfree.bit();
        pz.mm.tracer().set_enabled(events, true);
        let on = median3(|| lifo_pairs(&mut pz, &fixed64, PAIRS));
        pz.mm.tracer().set_enabled(events, false);
        let stats = pz.mm.tracer().stats();
        print_table(
            "kmalloc/kfree 64 B LIFO pair with the kmem:kmalloc/kfree tracepoints off and on, ns (median of 3)",
            &["tracepoints", "ns per pair", "ring"],
            &[
                vec!["off".into(), cell(&Ok(off)), String::new()],
                vec![
                    "on".into(),
                    cell(&Ok(on)),
                    format!(
                        "{} records kept, {} overwritten",
                        stats.entries, stats.overrun
                    ),
                ],
            ],
        );
    }
}
