//! `POST /api/bench`: allocator micro-benchmarks run in the guest.
//!
//! A run is `iterations` operations, each one allocation and its free
//! through the entry points the API itself uses — `alloc_pages` +
//! `__free_pages`, `kmalloc` + `kfree`, `vmalloc` + `vfree`,
//! `kmem_cache_alloc` + `kmem_cache_free` — each timed with
//! [`System::now_ns`](super::System::now_ns) (the TSC in the kernel). The
//! answer is the mean and the nearest-rank p50/p99 of those per-operation
//! times.
//!
//! Why it is shaped this way:
//!
//! * **It cannot wedge the kernel.** The kernel serves one request at a
//!   time, so a run is bounded twice: at most [`MAX_BENCH_ITERATIONS`]
//!   operations, and at most [`MAX_BENCH_WORK`] units of work, a unit being
//!   a page an operation touches (a vmalloc page, which is also mapped,
//!   unmapped and flushed, counts [`VMALLOC_PAGE_COST`]; a vmalloc area's
//!   pages are rounded up to a power of two, and so are kmalloc_large's
//!   and alloc_pages' by their order, so that the bound is one maximum of
//!   `iterations` per size class, which `/openapi.json` states exactly).
//!   Anything larger is 400 EINVAL before anything is allocated.
//! * **Nothing allocates under an allocator lock.** The latency samples go
//!   into a buffer reserved before the first operation (and before any
//!   lock); operations hand back plain errors, turned into messages only
//!   once the lock is dropped.
//! * **It leaves no trace.** An operation holds its allocation only until
//!   the free right after it, so a failure mid-run (507 ENOMEM) holds
//!   nothing. A slab cache that had to grow a slab for the run (it had no
//!   free object) is settled back to its slab count from before, so
//!   `/api/buddyinfo` after a run equals the one before.
//! * **Several CPUs at once** (`"cpus":N`, pages and kmalloc): each CPU
//!   runs `iterations` pairs on its own per-CPU lists or slabs, started
//!   together by the kernel's work queues ([`super::System::run_on_cpus`]);
//!   `"global_lock":true` puts every pair under one spin lock, the
//!   comparison. With `"duration_ms":D` instead of `"iterations"` every
//!   CPU runs pairs until D ms after the start, so all of them are
//!   measured over the same window, whatever their speed (as
//!   will-it-scale runs each task for the same time); `ops_per_sec` is
//!   then the sum of the CPUs' own rates, and a run is bounded by D ≤
//!   [`MAX_BENCH_DURATION_MS`] instead of by the work bounds above.
//!   Afterwards every page is back and every cache has its slab count of
//!   before, but which frames the slabs hold may differ (each CPU froze
//!   and released slabs in its own order): `POST /api/reset` restores the
//!   boot buddy state exactly.
//! * **Transient, but within the quota.** One operation's allocation must
//!   fit in the API quota next to what the API holds (507 EQUOTA).

use alloc::format;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use mm::gfp::GfpFlags;
use mm::kmalloc::{KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, kmalloc_size_roundup};
use mm::page::OwnerTag;
use mm::page_alloc::AllocError;
use mm::platform::Platform;
use mm::slab::{CacheId, Corruption, MAX_CACHES, SlabError};
use mm::types::{MAX_ORDER, Order, PAGE_SIZE};
use mm::vmalloc;

use super::alloc_cmd::parse_body;
use super::slab::{DynMem, locked, no_slab, settle_cache, slab_error};
use super::vm::{DynMapper, vm_error};
use super::{Api, System};
use crate::server::error::ApiError;
use crate::server::response::Response;

/// The vmalloc workload purges its lazily freed areas whenever this many
/// pages wait: one PTE table's worth.
const BENCH_LAZY_PAGES: u64 = 512;

/// Most operations one run may time.
pub const MAX_BENCH_ITERATIONS: u64 = 100_000;
/// Longest run a `"duration_ms"` may ask for, in milliseconds.
pub const MAX_BENCH_DURATION_MS: u64 = 1000;
/// Pairs between two looks at the clock in a `"duration_ms"` run.
const PAIRS_PER_CLOCK_CHECK: u64 = 32;
/// Most pairs one CPU makes in a `"duration_ms"` run, should its clock
/// stand still (a platform's default clock does): about 20 s of the
/// fastest pair measured.
const MAX_DURATION_PAIRS: u64 = 1 << 30;
/// Most work one run may do, in pages touched (see the module doc): about
/// a second of a TCG guest's time, far less under KVM.
pub const MAX_BENCH_WORK: u64 = 1 << 22;
/// Work units of one vmalloc page: a frame allocated and freed, a PTE set,
/// cleared and flushed.
pub const VMALLOC_PAGE_COST: u64 = 8;
/// `"size"` of the kmalloc workload when none is given.
pub const DEFAULT_KMALLOC_SIZE: u64 = 64;
/// `"size"` of the vmalloc workload when none is given.
pub const DEFAULT_VMALLOC_SIZE: u64 = 16384;
/// The caller the run's vmap areas carry (seen only should one leak).
const BENCH_CALLER: &str = "api_bench";

/// The body of `POST /api/bench`.
#[derive(Deserialize)]
struct BenchBody<'b> {
    #[serde(borrow)]
    workload: Option<&'b str>,
    iterations: Option<u64>,
    /// `pages`: the block order (default 0).
    order: Option<u64>,
    /// `kmalloc`, `vmalloc`: bytes.
    size: Option<u64>,
    /// `cache`: the cache's name.
    #[serde(borrow)]
    cache: Option<&'b str>,
    /// CPUs to run on at once (default 1), each doing `iterations`.
    cpus: Option<u64>,
    /// With `cpus`: every operation under one global spin lock, the
    /// comparison for the per-CPU fast paths (default false).
    global_lock: Option<bool>,
    /// Instead of `iterations` (pages and kmalloc): every CPU runs pairs
    /// for this many milliseconds.
    duration_ms: Option<u64>,
}

/// How long each CPU of a several-CPU run goes on.
#[derive(Clone, Copy)]
enum Limit {
    /// This many pairs on every CPU.
    Iterations(u64),
    /// Pairs until this many nanoseconds after the start.
    Duration(u64),
}

/// One workload with its parameters checked.
#[derive(Clone, Copy)]
enum Workload {
    Pages { order: Order },
    Kmalloc { size: usize },
    Vmalloc { size: u64 },
    Cache { id: CacheId, object_size: u32 },
}

/// The answer: API.md's `ops`, `ns_per_op`, `p50_ns`, `p99_ns`, plus the
/// extremes, the wall time of the whole run and the parameters used.
#[derive(Serialize)]
struct BenchJson<'b> {
    workload: &'b str,
    ops: u64,
    /// Mean of the per-operation times.
    ns_per_op: u64,
    p50_ns: u64,
    p99_ns: u64,
    min_ns: u64,
    max_ns: u64,
    /// The whole run, timing overhead included.
    total_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'b str>,
}

/// What a slab operation reports, turned into an [`ApiError`] (which
/// allocates its message) only after the slab lock is dropped.
enum SlabOpError {
    Alloc(SlabError),
    Free(Corruption),
}

/// The nearest-rank `pct`th percentile of ascending `sorted` (0 if empty).
fn percentile(sorted: &[u64], pct: u64) -> u64 {
    let rank = (sorted.len() as u64 * pct).div_ceil(100).max(1);
    usize::try_from(rank - 1)
        .ok()
        .and_then(|i| sorted.get(i))
        .copied()
        .unwrap_or(0)
}

/// Per-operation times and the whole run's, in ns.
struct Timings {
    total_ns: u64,
    /// Ascending.
    samples: Vec<u64>,
}

impl Timings {
    fn json<'b>(&self, workload: &'b str) -> BenchJson<'b> {
        let ops = self.samples.len() as u64;
        let sum: u64 = self.samples.iter().fold(0, |a, &s| a.saturating_add(s));
        BenchJson {
            workload,
            ops,
            ns_per_op: sum.checked_div(ops).unwrap_or(0),
            p50_ns: percentile(&self.samples, 50),
            p99_ns: percentile(&self.samples, 99),
            min_ns: self.samples.first().copied().unwrap_or(0),
            max_ns: self.samples.last().copied().unwrap_or(0),
            total_ns: self.total_ns,
            order: None,
            size: None,
            cache: None,
        }
    }
}

/// Runs `op` `iterations` times, timing each call with `clock`; stops at
/// the first error. `samples` must arrive with room for `iterations` more
/// reserved: pushing within it never allocates.
fn time_ops(
    clock: &dyn System,
    samples: &mut Vec<u64>,
    iterations: usize,
    mut op: impl FnMut() -> Result<(), ApiError>,
) -> Result<u64, ApiError> {
    debug_assert!(samples.capacity() - samples.len() >= iterations);
    let start = clock.now_ns();
    for _ in 0..iterations {
        let t0 = clock.now_ns();
        op()?;
        let t1 = clock.now_ns();
        samples.push(t1.saturating_sub(t0));
    }
    Ok(clock.now_ns().saturating_sub(start))
}

fn alloc_error(e: AllocError, order: Order) -> ApiError {
    match e {
        AllocError::NoMemory { .. } => ApiError::enomem(format!(
            "page allocation failure: order:{order}, mode:{}",
            GfpFlags::GFP_KERNEL
        )),
        AllocError::ZoneBad { .. } => ApiError::einval("conflicting zone modifiers"),
    }
}

fn slab_op_error(e: SlabOpError, what: &str) -> ApiError {
    match e {
        SlabOpError::Alloc(e) => slab_error(e, what),
        SlabOpError::Free(c) => ApiError::ebusy(format!("{what}: free refused: {c}")),
    }
}

/// Refuses a parameter the workload does not take.
fn unused(given: bool, param: &str, workload: &str) -> Result<(), ApiError> {
    if given {
        return Err(ApiError::einval(format!(
            "\"{param}\" does not apply to the {workload} workload"
        )));
    }
    Ok(())
}

impl<P: Platform> Api<'_, P> {
    /// `POST /api/bench`.
    pub(super) fn bench(&mut self, body: &[u8]) -> Result<Response, ApiError> {
        let raw = body;
        let body: BenchBody<'_> = parse_body(raw)?;
        if let Some(w) = body.workload {
            let allowed: &[&str] = match w {
                "pages" => &[
                    "workload",
                    "iterations",
                    "order",
                    "cpus",
                    "global_lock",
                    "duration_ms",
                ],
                "kmalloc" => &[
                    "workload",
                    "iterations",
                    "size",
                    "cpus",
                    "global_lock",
                    "duration_ms",
                ],
                "vmalloc" => &["workload", "iterations", "size"],
                _ => &["workload", "iterations", "cache"],
            };
            super::alloc_cmd::check_fields(raw, allowed, &format!("the {w} workload"))?;
        }
        let name = body.workload.ok_or_else(|| {
            ApiError::einval("missing \"workload\" (pages, kmalloc, vmalloc or cache)")
        })?;
        let iterations = match (body.iterations, body.duration_ms) {
            (Some(_), Some(_)) => {
                return Err(ApiError::einval(
                    "give \"iterations\" or \"duration_ms\", not both",
                ));
            }
            (None, Some(ms)) if !(1..=MAX_BENCH_DURATION_MS).contains(&ms) => {
                return Err(ApiError::einval(format!(
                    "duration_ms {ms} is out of range 1..={MAX_BENCH_DURATION_MS}"
                )));
            }
            // Checked against the workload's bound below as one iteration.
            (None, Some(_)) => 1,
            (it, None) => it.ok_or_else(|| {
                ApiError::einval(format!(
                    "missing \"iterations\" (1..={MAX_BENCH_ITERATIONS})"
                ))
            })?,
        };
        if !(1..=MAX_BENCH_ITERATIONS).contains(&iterations) {
            return Err(ApiError::einval(format!(
                "iterations {iterations} is out of range 1..={MAX_BENCH_ITERATIONS}"
            )));
        }
        // (workload, bytes one operation holds, work units per operation)
        let (workload, op_bytes, op_work) = match name {
            "pages" => {
                unused(body.size.is_some(), "size", name)?;
                unused(body.cache.is_some(), "cache", name)?;
                let order = body.order.unwrap_or(0);
                let order = u8::try_from(order)
                    .ok()
                    .and_then(Order::new)
                    .ok_or_else(|| {
                        ApiError::einval(format!("order {order} is out of range 0..={MAX_ORDER}"))
                    })?;
                (
                    Workload::Pages { order },
                    order.size_bytes(),
                    order.nr_pages(),
                )
            }
            "kmalloc" => {
                unused(body.order.is_some(), "order", name)?;
                unused(body.cache.is_some(), "cache", name)?;
                let size = body.size.unwrap_or(DEFAULT_KMALLOC_SIZE);
                let size = usize::try_from(size)
                    .ok()
                    .filter(|s| (1..=KMALLOC_MAX_SIZE).contains(s))
                    .ok_or_else(|| {
                        ApiError::einval(format!(
                            "size {size} is out of range 1..={KMALLOC_MAX_SIZE}"
                        ))
                    })?;
                // A kmalloc class object, or a kmalloc_large block.
                let bytes = kmalloc_size_roundup(size).map_or_else(
                    || Order::from_size_bytes(size as u64).map_or(0, |o| o.size_bytes()),
                    |s| s as u64,
                );
                let work = if size > KMALLOC_MAX_CACHE_SIZE {
                    bytes.div_ceil(PAGE_SIZE)
                } else {
                    1
                };
                (Workload::Kmalloc { size }, bytes, work)
            }
            "vmalloc" => {
                unused(body.order.is_some(), "order", name)?;
                unused(body.cache.is_some(), "cache", name)?;
                if self.vm_state().is_none() {
                    return Err(ApiError::enoent(
                        "the vmalloc workload is not available in this build",
                    ));
                }
                let size = body.size.unwrap_or(DEFAULT_VMALLOC_SIZE);
                let max = MAX_BENCH_WORK / VMALLOC_PAGE_COST * PAGE_SIZE;
                if !(1..=max).contains(&size) {
                    return Err(ApiError::einval(format!(
                        "size {size} is out of range 1..={max}"
                    )));
                }
                let nr_pages = size.div_ceil(PAGE_SIZE);
                // Counted by power-of-two size class, so that the budget
                // is a bound per class that /openapi.json can state
                // (JSON Schema cannot multiply iterations by pages).
                (
                    Workload::Vmalloc { size },
                    nr_pages * PAGE_SIZE,
                    nr_pages.next_power_of_two() * VMALLOC_PAGE_COST,
                )
            }
            "cache" => {
                unused(body.order.is_some(), "order", name)?;
                unused(body.size.is_some(), "size", name)?;
                let cache = body.cache.ok_or_else(|| {
                    ApiError::einval("missing \"cache\" (the name of an existing cache)")
                })?;
                let info = self.find_cache(cache)?;
                (
                    Workload::Cache {
                        id: info.id,
                        object_size: info.object_size,
                    },
                    u64::from(info.size),
                    1,
                )
            }
            other => {
                return Err(ApiError::einval(format!(
                    "unknown workload \"{other}\" (pages, kmalloc, vmalloc or cache)"
                )));
            }
        };
        let work = iterations.saturating_mul(op_work);
        if work > MAX_BENCH_WORK {
            return Err(ApiError::einval(format!(
                "{iterations} iterations of {op_work} pages each is over the limit of \
                 {MAX_BENCH_WORK} pages per run: at most {} iterations",
                MAX_BENCH_WORK / op_work
            )));
        }
        let cpus = body.cpus.unwrap_or(1);
        if cpus != 1 || body.global_lock.is_some() || body.duration_ms.is_some() {
            if !matches!(workload, Workload::Pages { .. } | Workload::Kmalloc { .. }) {
                return Err(ApiError::einval(format!(
                    "\"cpus\", \"global_lock\" and \"duration_ms\" apply to the pages \
                     and kmalloc workloads, not to {name}"
                )));
            }
            if !(1..=mm::types::NR_CPUS as u64).contains(&cpus) {
                return Err(ApiError::einval(format!(
                    "cpus {cpus} is out of range 1..={}",
                    mm::types::NR_CPUS
                )));
            }
            // A well-formed request for more CPUs than this machine has:
            // the CPUs are what is missing (as a cache that does not exist).
            let online = self.system.cpus().len() as u64;
            if cpus > online {
                return Err(ApiError::enoent(format!(
                    "cpus {cpus}: only {online} CPU{} online",
                    if online == 1 { "" } else { "s" }
                )));
            }
            // The work bound holds per CPU: the CPUs run their shares at once.
            self.check_quota(op_bytes.saturating_mul(cpus))?;
            let limit = match body.duration_ms {
                Some(ms) => Limit::Duration(ms * 1_000_000),
                None => Limit::Iterations(iterations),
            };
            return self.bench_cpus(
                workload,
                limit,
                cpus as usize,
                body.global_lock.unwrap_or(false),
            );
        }
        self.check_quota(op_bytes)?;

        // Reserved before any allocator lock is taken (u64: the bound
        // above keeps this under 1 MiB).
        let n = iterations as usize;
        let mut samples: Vec<u64> = Vec::new();
        samples
            .try_reserve_exact(n)
            .map_err(|_| ApiError::enomem(format!("no memory for {iterations} latency samples")))?;
        let total_ns = match workload {
            Workload::Pages { order } => self.bench_pages(&mut samples, n, order),
            Workload::Vmalloc { size } => self.bench_vmalloc(&mut samples, n, size),
            Workload::Kmalloc { .. } | Workload::Cache { .. } => {
                self.bench_slab(&mut samples, n, workload, body.cache.unwrap_or_default())
            }
        }?;
        samples.sort_unstable();
        let timings = Timings { total_ns, samples };
        let mut json = timings.json(name);
        match workload {
            Workload::Pages { order } => json.order = Some(order.get()),
            Workload::Kmalloc { size } => json.size = Some(size as u64),
            Workload::Vmalloc { size } => json.size = Some(size),
            Workload::Cache { object_size, .. } => {
                json.size = Some(u64::from(object_size));
                json.cache = body.cache;
            }
        }
        Ok(Response::json(200, &json))
    }

    /// `alloc_pages(GFP_KERNEL, order)` + `__free_pages()`, the zone lock
    /// taken by each call.
    fn bench_pages(&self, samples: &mut Vec<u64>, n: usize, order: Order) -> Result<u64, ApiError> {
        let mm = self.mm;
        time_ops(self.system, samples, n, || {
            let pfn = mm
                .alloc_pages(GfpFlags::GFP_KERNEL, order, OwnerTag::API)
                .map_err(|e| alloc_error(e, order))?;
            mm.free_pages(pfn, order).map_err(|e| {
                ApiError::ebusy(format!(
                    "__free_pages({:#x}, {order}) refused: {e:?}",
                    pfn.0
                ))
            })
        })
    }

    /// `alloc_pages(GFP_KERNEL, order)` + `__free_pages()` pairs, or
    /// `kmalloc(size, GFP_KERNEL)` + `kfree()` pairs as the kernel heap
    /// makes them ([`super::SlabAccess::kmalloc_kfree`]), on `cpus` CPUs at
    /// once, `limit` on each, through [`System::run_on_cpus`]: the
    /// per-CPU fast paths scaling — or, with `global_lock`, every pair
    /// under one spin lock shared by all CPUs (what one lock around the
    /// allocator costs). The answer's `ops` and `ns_per_op` are the
    /// aggregate (all pairs over the wall time), `per_cpu` each CPU's own,
    /// and min/p50/p99/max describe the per-CPU means. `ops_per_sec` is
    /// all pairs over the wall time for [`Limit::Iterations`], and the sum
    /// of the CPUs' own rates for [`Limit::Duration`], where every CPU ran
    /// for the whole window (an application processor starts a wake-up
    /// later than the boot CPU, so its own time is the measure of it).
    fn bench_cpus(
        &self,
        workload: Workload,
        limit: Limit,
        cpus: usize,
        global_lock: bool,
    ) -> Result<Response, ApiError> {
        use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        const N: usize = mm::types::NR_CPUS;
        let mm = self.mm;
        // The platform's clock (the TSC in the kernel): `System` is the
        // boot CPU's, the platform every CPU's.
        let clock = mm.platform();
        let ops: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
        let ns: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
        let cpu_of: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
        let failed = AtomicBool::new(false);
        let lock = spin::Mutex::new(());
        let access = match workload {
            Workload::Kmalloc { .. } => Some(self.slab_access()?),
            _ => None,
        };
        let before = match access {
            Some(a) => Some(slab_counts_before(a)?),
            None => None,
        };
        let pair = || -> bool {
            match (workload, access) {
                (Workload::Pages { order }, _) => {
                    match mm.alloc_pages(GfpFlags::GFP_KERNEL, order, OwnerTag::API) {
                        Ok(pfn) => mm.free_pages(pfn, order).is_ok(),
                        Err(_) => false,
                    }
                }
                (Workload::Kmalloc { size }, Some(a)) => a.kmalloc_kfree(size).is_ok(),
                _ => false,
            }
        };
        let (budget, run_ns) = match limit {
            Limit::Iterations(n) => (n, None),
            Limit::Duration(ns) => (MAX_DURATION_PAIRS, Some(ns)),
        };
        let start = clock.now_ns();
        let deadline = run_ns.map(|ns| start.saturating_add(ns));
        let job = |slot: usize, cpu: usize| {
            let t0 = clock.now_ns();
            let mut done = 0;
            while done < budget {
                let _g = global_lock.then(|| lock.lock());
                if !pair() {
                    failed.store(true, Ordering::Relaxed);
                    break;
                }
                done += 1;
                if let Some(d) = deadline
                    && done % PAIRS_PER_CLOCK_CHECK == 0
                    && clock.now_ns() >= d
                {
                    break;
                }
            }
            ops[slot].store(done, Ordering::Relaxed);
            ns[slot].store(clock.now_ns().saturating_sub(t0), Ordering::Relaxed);
            cpu_of[slot].store(cpu as u64, Ordering::Relaxed);
        };
        self.system
            .run_on_cpus(cpus, &job)
            .map_err(|why| ApiError::ebusy(format!("cannot run on {cpus} CPUs: {why}")))?;
        let wall = clock.now_ns().saturating_sub(start);
        if let (Some(a), Some(before)) = (access, &before) {
            settle_grown(a, mm, before);
        }
        if failed.load(Ordering::Relaxed) {
            return Err(match workload {
                Workload::Pages { order } => alloc_error(
                    AllocError::NoMemory {
                        order,
                        gfp: GfpFlags::GFP_KERNEL,
                    },
                    order,
                ),
                _ => ApiError::enomem(format!(
                    "a kmalloc/kfree pair failed on one of {cpus} CPUs (or this system \
                     has no per-CPU kmalloc path)"
                )),
            });
        }
        #[derive(Serialize)]
        struct PerCpu {
            cpu: u64,
            ops: u64,
            ns_per_op: u64,
        }
        #[derive(Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            base: BenchJson<'a>,
            cpus: usize,
            global_lock: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            duration_ms: Option<u64>,
            /// Pairs per second over all CPUs.
            ops_per_sec: u64,
            per_cpu: &'a [PerCpu],
        }
        let mut per_cpu: Vec<PerCpu> = Vec::new();
        per_cpu
            .try_reserve_exact(cpus)
            .map_err(|_| ApiError::enomem("no memory for the per-CPU results"))?;
        for slot in 0..cpus {
            let o = ops[slot].load(Ordering::Relaxed);
            per_cpu.push(PerCpu {
                cpu: cpu_of[slot].load(Ordering::Relaxed),
                ops: o,
                ns_per_op: ns[slot].load(Ordering::Relaxed).checked_div(o).unwrap_or(0),
            });
        }
        let mut means: Vec<u64> = Vec::new();
        means
            .try_reserve_exact(cpus)
            .map_err(|_| ApiError::enomem("no memory for the per-CPU results"))?;
        means.extend(per_cpu.iter().map(|p| p.ns_per_op));
        means.sort_unstable();
        let total: u64 = per_cpu.iter().map(|p| p.ops).sum();
        let base = BenchJson {
            workload: match workload {
                Workload::Kmalloc { .. } => "kmalloc",
                _ => "pages",
            },
            ops: total,
            ns_per_op: wall.checked_div(total).unwrap_or(0),
            p50_ns: percentile(&means, 50),
            p99_ns: percentile(&means, 99),
            min_ns: means.first().copied().unwrap_or(0),
            max_ns: means.last().copied().unwrap_or(0),
            total_ns: wall,
            order: match workload {
                Workload::Pages { order } => Some(order.get()),
                _ => None,
            },
            size: match workload {
                Workload::Kmalloc { size } => Some(size as u64),
                _ => None,
            },
            cache: None,
        };
        let rate = |ops: u64, ns: u64| {
            (u128::from(ops) * 1_000_000_000)
                .checked_div(u128::from(ns))
                .map_or(0, |v| v as u64)
        };
        let ops_per_sec = match limit {
            Limit::Iterations(_) => rate(total, wall),
            Limit::Duration(_) => (0..cpus)
                .map(|slot| {
                    rate(
                        ops[slot].load(Ordering::Relaxed),
                        ns[slot].load(Ordering::Relaxed),
                    )
                })
                .sum(),
        };
        let json = Json {
            base,
            cpus,
            global_lock,
            duration_ms: run_ns.map(|ns| ns / 1_000_000),
            ops_per_sec,
            per_cpu: &per_cpu,
        };
        Ok(Response::json(200, &json))
    }

    /// `vmalloc(size)` + `vfree()` under one hold of the vmap-area lock,
    /// with the lazily freed areas purged every [`BENCH_LAZY_PAGES`].
    /// A failed vmalloc undoes itself, so an error leaves nothing behind.
    fn bench_vmalloc(&self, samples: &mut Vec<u64>, n: usize, size: u64) -> Result<u64, ApiError> {
        let vm = self.vm_state().ok_or_else(|| {
            ApiError::enoent("the vmalloc workload is not available in this build")
        })?;
        let mm = self.mm;
        let mapper = DynMapper(vm.mapper);
        let timed = time_ops(self.system, samples, n, || {
            let result = {
                let mut areas = vm.areas.lock();
                let r = vmalloc::vmalloc(&mut areas, mm, &mapper, size, BENCH_CALLER)
                    .and_then(|area| vmalloc::vfree(&mut areas, mm, &mapper, area.start));
                // With lazy purging each pair's area is fresh address
                // space: purging once a PTE table's worth waits keeps the
                // run inside the page tables it found (or one more), so
                // it leaves the page allocator as it found it.
                if areas.lazy_pages() >= BENCH_LAZY_PAGES {
                    areas.purge(&mapper);
                }
                r
            };
            result.map(drop).map_err(vm_error)
        });
        // The run's last freed areas, and any page table they emptied,
        // are back before the answer (cf. vm_unmap_aliases()).
        vm.areas.lock().purge(&mapper);
        timed
    }

    /// `kmalloc(size, GFP_KERNEL)` + `kfree()`, or `kmem_cache_alloc()` +
    /// `kmem_cache_free()`, the slab lock taken once per operation. Caches
    /// that grew during the run are settled back to their slab counts from
    /// before it (see the module doc), error or not.
    fn bench_slab(
        &self,
        samples: &mut Vec<u64>,
        n: usize,
        workload: Workload,
        cache_name: &str,
    ) -> Result<u64, ApiError> {
        let access = self.slab_access()?;
        let mm = self.mm;
        let before = slab_counts_before(access)?;
        let op = |slab: &mut mm::slab::SlabAllocator<'_>, mem: &DynMem<'_>| match workload {
            Workload::Kmalloc { size } => {
                let addr = slab
                    .kmalloc(mem, mm, size, GfpFlags::GFP_KERNEL)
                    .map_err(SlabOpError::Alloc)?;
                slab.kfree(mem, mm, addr).map_err(SlabOpError::Free)
            }
            Workload::Cache { id, .. } => {
                let addr = slab
                    .kmem_cache_alloc(mem, mm, id, GfpFlags::GFP_KERNEL)
                    .map_err(SlabOpError::Alloc)?;
                slab.kmem_cache_free(mem, mm, id, addr)
                    .map_err(SlabOpError::Free)
            }
            // Not slab workloads; never passed here.
            Workload::Pages { .. } | Workload::Vmalloc { .. } => Ok(()),
        };
        let result = time_ops(self.system, samples, n, || {
            locked(access, op)
                .ok_or_else(no_slab)?
                .map_err(|e| match workload {
                    Workload::Kmalloc { size } => {
                        slab_op_error(e, &format!("kmalloc({size}, GFP_KERNEL)"))
                    }
                    _ => slab_op_error(e, &format!("kmem_cache_alloc({cache_name}, GFP_KERNEL)")),
                })
        });
        settle_grown(access, mm, &before);
        result
    }
}

/// Every cache's slab count now, `u64::MAX` for unused slots.
fn slab_counts_before(access: &dyn super::SlabAccess) -> Result<[u64; MAX_CACHES], ApiError> {
    let mut before = [u64::MAX; MAX_CACHES];
    locked(access, |slab, mem| {
        for c in slab.caches(mem) {
            before[c.id.slot()] = c.num_slabs;
        }
    })
    .ok_or_else(no_slab)?;
    Ok(before)
}

/// Settles every cache that grew since `before` back to its slab count
/// then (see the module doc): a run leaves the slab layer as it found it.
fn settle_grown<P: Platform>(
    access: &dyn super::SlabAccess,
    mm: &mm::manager::MemoryManager<'_, P>,
    before: &[u64; MAX_CACHES],
) {
    locked(access, |slab, mem| {
        let mut grown = [None; MAX_CACHES];
        for c in slab.caches(mem) {
            let was = before[c.id.slot()];
            if was != u64::MAX && c.num_slabs > was {
                grown[c.id.slot()] = Some((c.id, was));
            }
        }
        for (id, was) in grown.into_iter().flatten() {
            settle_cache(slab, mem, mm, id, Some(was));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[7], 50), 7);
        assert_eq!(percentile(&[7], 99), 7);
        let v: std::vec::Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&v, 100), 100);
        assert_eq!(percentile(&v, 0), 1);
        let v: std::vec::Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99), 990);
        assert_eq!(percentile(&[1, 2, 3], 50), 2);
        assert_eq!(percentile(&[1, 2, 3, 4], 50), 2);
    }
}
