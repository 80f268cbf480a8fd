//! The in-guest page allocator selftest, run by the kernel on `selftest`
//! boots and by host tests on simulated machines.
//!
//! It drives the real [`PageAlloc`] through every zone and order, the
//! zonelist fallback, exhaustion down to the reserves and every kind of
//! refused free, checking exact counter changes and the allocator's
//! invariants after each step. The kernel supplies `touch`, which writes a
//! pattern through a real mapping (the direct map or kmap) and reads it
//! back, so the test also proves the frames handed out are real, mapped
//! memory. Whatever happens, the selftest gives back everything it took:
//! on success the buddy free lists match their state at entry block for
//! block, and a failure frees what it still holds before returning. It
//! never panics, and needs no heap: blocks held during the exhaustion
//! steps are recorded in a caller-supplied scratch slice.

use core::fmt::{self, Write};

use crate::gfp::GfpFlags;
use crate::page::OwnerTag;
use crate::page_alloc::{AllocError, FreeError, PageAlloc};
use crate::types::{MAX_ORDER, Order, Pfn};
use crate::zone::{NR_ZONES, Zone, ZoneType};

/// The scenario's steps, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// 1: snapshot every zone's free lists at entry.
    Snapshot,
    /// 2: every populated zone × every order.
    ZoneOrders,
    /// 3: exhaust HighMem, then GFP_HIGHUSER must fall back to lowmem.
    Fallback,
    /// 4: exhaust ZONE_DMA with atomic requests down to its reserve.
    Exhaustion,
    /// 5: invalid frees are refused without side effects.
    InvalidFrees,
    /// 6: everything freed; free lists equal the snapshot.
    Restore,
}

impl Step {
    /// Short name for log lines.
    pub const fn name(self) -> &'static str {
        match self {
            Step::Snapshot => "snapshot",
            Step::ZoneOrders => "zone orders",
            Step::Fallback => "fallback",
            Step::Exhaustion => "exhaustion",
            Step::InvalidFrees => "invalid frees",
            Step::Restore => "restore",
        }
    }
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// [`PageAlloc::check_invariants`] failed.
    Invariant(&'static str),
    /// An allocation the zonelist could satisfy failed.
    AllocFailed {
        /// Zone the request targeted.
        zone: ZoneType,
        /// Requested order.
        order: Order,
        /// The allocator's answer.
        err: AllocError,
    },
    /// A block came from a zone the request should not have used.
    WrongZone {
        /// Zone expected.
        expected: ZoneType,
        /// Zone of the block (`None`: outside every zone).
        got: Option<ZoneType>,
        /// Block head.
        pfn: Pfn,
        /// Block order.
        order: Order,
    },
    /// A block is not aligned to its order.
    Misaligned {
        /// Block head.
        pfn: Pfn,
        /// Block order.
        order: Order,
    },
    /// `touch` read back something other than what it wrote.
    TouchMismatch {
        /// Block head.
        pfn: Pfn,
        /// Block order.
        order: Order,
    },
    /// A zone's free page count is not what the operation implies.
    FreeCount {
        /// The zone.
        zone: ZoneType,
        /// Expected `free_pages`.
        expected: u64,
        /// Actual `free_pages`.
        actual: u64,
    },
    /// Freeing a block the selftest allocated was refused.
    FreeFailed {
        /// Block head.
        pfn: Pfn,
        /// Block order.
        order: Order,
        /// The allocator's answer.
        err: FreeError,
    },
    /// An allocation that must fail succeeded.
    UnexpectedAlloc {
        /// The block handed out.
        pfn: Pfn,
    },
    /// An allocation failed, but not with `NoMemory` for the order asked.
    WrongAllocError {
        /// The allocator's answer.
        err: AllocError,
    },
    /// An exhausted zone is not below its MIN watermark.
    NotBelowMin {
        /// The zone.
        zone: ZoneType,
        /// Its free pages.
        free: u64,
        /// Its MIN watermark.
        min: u64,
    },
    /// An invalid free was accepted.
    InvalidFreeAccepted {
        /// Which case.
        case: &'static str,
        /// The frame passed.
        pfn: Pfn,
    },
    /// An invalid free was refused for the wrong reason.
    InvalidFreeWrongError {
        /// Which case.
        case: &'static str,
        /// The allocator's answer.
        err: FreeError,
    },
    /// A refused free changed allocator state.
    InvalidFreeChangedState {
        /// Which case.
        case: &'static str,
    },
    /// `scratch` cannot hold the blocks an exhaustion step needs.
    ScratchTooSmall {
        /// Its length.
        capacity: usize,
    },
    /// A zone's free lists differ from the entry snapshot (the lowest order
    /// that differs is reported).
    NotRestored {
        /// The zone.
        zone: ZoneType,
        /// The order whose free list differs.
        order: Order,
        /// Free blocks of that order at entry.
        expected: u64,
        /// Free blocks of that order now.
        actual: u64,
    },
}

/// A failed selftest: the step and what went wrong. The allocator has been
/// given back every block the selftest still held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelftestFailure {
    /// Step that failed.
    pub step: Step,
    /// What went wrong.
    pub kind: FailureKind,
}

impl fmt::Display for SelftestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.step.name())?;
        match self.kind {
            FailureKind::Invariant(what) => write!(f, "invariant violated: {what}"),
            FailureKind::AllocFailed { zone, order, err } => {
                write!(f, "zone {} order {order}: {err}", zone.name())
            }
            FailureKind::WrongZone {
                expected,
                got,
                pfn,
                order,
            } => write!(
                f,
                "order-{order} block at pfn {pfn} is in zone {}, expected {}",
                got.map_or("none", ZoneType::name),
                expected.name()
            ),
            FailureKind::Misaligned { pfn, order } => {
                write!(f, "block at pfn {pfn} not aligned to order {order}")
            }
            FailureKind::TouchMismatch { pfn, order } => {
                write!(f, "pattern mismatch in order-{order} block at pfn {pfn}")
            }
            FailureKind::FreeCount {
                zone,
                expected,
                actual,
            } => write!(
                f,
                "zone {} has {actual} free pages, expected {expected}",
                zone.name()
            ),
            FailureKind::FreeFailed { pfn, order, err } => {
                write!(f, "free of order-{order} block at pfn {pfn} refused: {err}")
            }
            FailureKind::UnexpectedAlloc { pfn } => {
                write!(f, "allocation should have failed but returned pfn {pfn}")
            }
            FailureKind::WrongAllocError { err } => write!(f, "unexpected error: {err}"),
            FailureKind::NotBelowMin { zone, free, min } => write!(
                f,
                "zone {} exhausted at {free} free pages, not below min {min}",
                zone.name()
            ),
            FailureKind::InvalidFreeAccepted { case, pfn } => {
                write!(f, "{case}: free of pfn {pfn} was accepted")
            }
            FailureKind::InvalidFreeWrongError { case, err } => {
                write!(f, "{case}: refused for the wrong reason: {err}")
            }
            FailureKind::InvalidFreeChangedState { case } => {
                write!(f, "{case}: refused free changed allocator state")
            }
            FailureKind::ScratchTooSmall { capacity } => {
                write!(f, "scratch of {capacity} entries too small")
            }
            FailureKind::NotRestored {
                zone,
                order,
                expected,
                actual,
            } => write!(
                f,
                "zone {} has {actual} free order-{order} blocks, {expected} at entry",
                zone.name()
            ),
        }
    }
}

/// What a successful run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelftestReport {
    /// Populated zones exercised in step 2.
    pub zones_tested: u32,
    /// Blocks allocated over the whole run.
    pub blocks_allocated: u64,
    /// Pages `touch` wrote and verified.
    pub pages_touched: u64,
    /// Step 2 allocations served by a lower zone because the target zone
    /// could not satisfy them (allowed, reported).
    pub zone_fallbacks: u32,
    /// Step 2 (zone, order) pairs no zone of the zonelist could satisfy.
    pub orders_unavailable: u32,
    /// Step 3: HighMem blocks held when it stopped giving memory (0 if
    /// HighMem is not populated).
    pub highmem_blocks: u32,
    /// Step 3: the zone GFP_HIGHUSER fell back to.
    pub highuser_fallback_zone: Option<ZoneType>,
    /// Step 4: DMA blocks held at exhaustion (0 if DMA is not populated).
    pub dma_blocks: u32,
    /// Step 4: DMA free pages at exhaustion.
    pub dma_free_at_exhaustion: u64,
    /// Step 5: invalid frees refused.
    pub invalid_frees_refused: u32,
}

/// The GFP mask that targets `zt` (cf. `gfp_zone()` inverted).
pub const fn zone_gfp(zt: ZoneType) -> GfpFlags {
    match zt {
        ZoneType::Dma => GfpFlags::GFP_KERNEL.union(GfpFlags::GFP_DMA),
        ZoneType::Dma32 => GfpFlags::GFP_KERNEL.union(GfpFlags::GFP_DMA32),
        ZoneType::Normal => GfpFlags::GFP_KERNEL,
        ZoneType::HighMem => GfpFlags::GFP_HIGHUSER,
    }
}

type Outcome<T> = Result<T, SelftestFailure>;

/// `MAX_ORDER` down to 0: exhaustion takes the largest blocks first so the
/// held set stays small.
fn orders_descending() -> impl Iterator<Item = Order> {
    (0..=MAX_ORDER as u8).rev().filter_map(Order::new)
}

const fn fail(step: Step, kind: FailureKind) -> SelftestFailure {
    SelftestFailure { step, kind }
}

fn free_pages_of(pa: &PageAlloc<'_>) -> [u64; NR_ZONES] {
    let mut out = [0; NR_ZONES];
    for (o, z) in out.iter_mut().zip(pa.zones()) {
        *o = z.free_pages;
    }
    out
}

fn zones_of(pa: &PageAlloc<'_>) -> [Zone; NR_ZONES] {
    let z = pa.zones();
    [z[0].clone(), z[1].clone(), z[2].clone(), z[3].clone()]
}

fn invariants(pa: &PageAlloc<'_>, step: Step) -> Outcome<()> {
    pa.check_invariants()
        .map_err(|what| fail(step, FailureKind::Invariant(what)))
}

/// Check every zone's free page count against `expected`.
fn expect_free(pa: &PageAlloc<'_>, expected: &[u64; NR_ZONES], step: Step) -> Outcome<()> {
    for (zt, (&want, zone)) in ZoneType::ALL.iter().zip(expected.iter().zip(pa.zones())) {
        if zone.free_pages != want {
            return Err(fail(
                step,
                FailureKind::FreeCount {
                    zone: *zt,
                    expected: want,
                    actual: zone.free_pages,
                },
            ));
        }
    }
    Ok(())
}

/// Blocks held during an exhaustion step, recorded in the caller's slice.
struct Held<'s> {
    scratch: &'s mut [(Pfn, Order)],
    len: usize,
}

impl Held<'_> {
    fn push(&mut self, pa: &mut PageAlloc<'_>, block: (Pfn, Order), step: Step) -> Outcome<()> {
        match self.scratch.get_mut(self.len) {
            Some(slot) => {
                *slot = block;
                self.len += 1;
                Ok(())
            }
            None => {
                let capacity = self.scratch.len();
                let _ = pa.free_pages(block.0, block.1);
                self.release(pa);
                Err(fail(step, FailureKind::ScratchTooSmall { capacity }))
            }
        }
    }

    fn pages(&self) -> u64 {
        self.scratch[..self.len]
            .iter()
            .map(|(_, o)| o.nr_pages())
            .sum()
    }

    /// Free every held block, newest first; reports the first refusal.
    fn free_all(&mut self, pa: &mut PageAlloc<'_>, step: Step) -> Outcome<()> {
        let mut first_err = None;
        while self.len > 0 {
            self.len -= 1;
            let (pfn, order) = self.scratch[self.len];
            if let Err(err) = pa.free_pages(pfn, order) {
                first_err.get_or_insert(fail(step, FailureKind::FreeFailed { pfn, order, err }));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Best-effort cleanup on a failure path.
    fn release(&mut self, pa: &mut PageAlloc<'_>) {
        let _ = self.free_all(pa, Step::Restore);
    }

    /// Run `check`; on failure free everything held and pass the error on.
    fn guard<T>(&mut self, pa: &mut PageAlloc<'_>, r: Outcome<T>) -> Outcome<T> {
        if r.is_err() {
            self.release(pa);
        }
        r
    }
}

/// Allocate one block, touch it, check counters and zone, free it, check
/// counters again. Returns the zone that served it, or `None` when the
/// zonelist legitimately had nothing (no zone above its watermark with a
/// free block of that order).
fn one_block(
    pa: &mut PageAlloc<'_>,
    zt: ZoneType,
    order: Order,
    touch: &mut dyn FnMut(Pfn, Order) -> bool,
    report: &mut SelftestReport,
) -> Outcome<Option<ZoneType>> {
    let step = Step::ZoneOrders;
    let gfp = zone_gfp(zt);
    let before = free_pages_of(pa);
    // Predict with the allocator's own rule (cf. get_page_from_freelist()):
    // the fast path takes the first zone above LOW, the slow path the first
    // above the (discounted) MIN.
    let target = pa.zone(zt);
    let target_ok = target.is_populated() && target.watermark_ok(order, target.watermarks.low, zt);
    let any_ok = pa.zones()[..=zt.index()].iter().any(|z| {
        z.is_populated() && z.watermark_ok(order, gfp.min_watermark(z.watermarks.min), zt)
    });
    let pfn = match pa.alloc_pages(gfp, order, OwnerTag::SELFTEST) {
        Ok(pfn) => pfn,
        Err(err) if !any_ok && err == (AllocError::NoMemory { order, gfp }) => {
            expect_free(pa, &before, step)?;
            return Ok(None);
        }
        Err(err) => {
            return Err(fail(
                step,
                FailureKind::AllocFailed {
                    zone: zt,
                    order,
                    err,
                },
            ));
        }
    };
    report.blocks_allocated += 1;
    let checked = check_block(pa, pfn, order, zt, target_ok, &before, touch, report);
    let freed = pa.free_pages(pfn, order);
    let got = checked?;
    freed.map_err(|err| fail(step, FailureKind::FreeFailed { pfn, order, err }))?;
    expect_free(pa, &before, step)?;
    Ok(Some(got))
}

/// The checks on a freshly allocated step-2 block (the caller frees it).
#[allow(clippy::too_many_arguments)]
fn check_block(
    pa: &PageAlloc<'_>,
    pfn: Pfn,
    order: Order,
    zt: ZoneType,
    target_ok: bool,
    before: &[u64; NR_ZONES],
    touch: &mut dyn FnMut(Pfn, Order) -> bool,
    report: &mut SelftestReport,
) -> Outcome<ZoneType> {
    let step = Step::ZoneOrders;
    let got = pa.zone_of(pfn);
    // Only a lower zone, and only when the target could not serve it.
    let fallback_ok = matches!(got, Some(g) if g < zt) && !target_ok;
    let Some(got_zone) = got.filter(|&g| g == zt || fallback_ok) else {
        return Err(fail(
            step,
            FailureKind::WrongZone {
                expected: zt,
                got,
                pfn,
                order,
            },
        ));
    };
    if !pfn.is_aligned(order) {
        return Err(fail(step, FailureKind::Misaligned { pfn, order }));
    }
    let mut expected = *before;
    expected[got_zone.index()] = expected[got_zone.index()].saturating_sub(order.nr_pages());
    expect_free(pa, &expected, step)?;
    if !touch(pfn, order) {
        return Err(fail(step, FailureKind::TouchMismatch { pfn, order }));
    }
    report.pages_touched += order.nr_pages();
    Ok(got_zone)
}

/// Step 2: every populated zone × every order.
fn zone_orders(
    pa: &mut PageAlloc<'_>,
    touch: &mut dyn FnMut(Pfn, Order) -> bool,
    log: &mut dyn Write,
    report: &mut SelftestReport,
) -> Outcome<()> {
    for zt in ZoneType::ALL {
        if !pa.zone(zt).is_populated() {
            continue;
        }
        report.zones_tested += 1;
        let (mut fallbacks, mut unavailable) = (0u32, 0u32);
        for order in Order::all() {
            match one_block(pa, zt, order, touch, report)? {
                Some(got) if got != zt => fallbacks += 1,
                Some(_) => {}
                None => unavailable += 1,
            }
        }
        invariants(pa, Step::ZoneOrders)?;
        report.zone_fallbacks += fallbacks;
        report.orders_unavailable += unavailable;
        let _ = write!(log, "selftest: zone {} orders 0-10 ok", zt.name());
        if fallbacks > 0 {
            let _ = write!(log, " ({fallbacks} served by a lower zone)");
        }
        if unavailable > 0 {
            let _ = write!(log, " ({unavailable} orders unavailable)");
        }
        let _ = writeln!(log);
    }
    Ok(())
}

/// Step 3: drain HighMem, then GFP_HIGHUSER must come from a lower zone.
fn fallback(
    pa: &mut PageAlloc<'_>,
    held: &mut Held<'_>,
    log: &mut dyn Write,
    report: &mut SelftestReport,
) -> Outcome<()> {
    let step = Step::Fallback;
    if !pa.zone(ZoneType::HighMem).is_populated() {
        let _ = writeln!(log, "selftest: fallback skipped (no HighMem)");
        return Ok(());
    }
    let gfp = GfpFlags::GFP_HIGHUSER | GfpFlags::HIGH;
    // Largest order first. Once HighMem is below its watermark for an
    // order the zonelist moves on to lowmem: that block goes straight back
    // and the next order is tried.
    for order in orders_descending() {
        while let Ok(pfn) = pa.alloc_pages(gfp, order, OwnerTag::SELFTEST) {
            report.blocks_allocated += 1;
            if pa.zone_of(pfn) != Some(ZoneType::HighMem) {
                let r = pa
                    .free_pages(pfn, order)
                    .map_err(|err| fail(step, FailureKind::FreeFailed { pfn, order, err }));
                held.guard(pa, r)?;
                break;
            }
            held.push(pa, (pfn, order), step)?;
        }
    }
    let r = invariants(pa, step);
    held.guard(pa, r)?;
    let highmem_free = pa.zone(ZoneType::HighMem).free_pages;
    let before = free_pages_of(pa);
    let pfn = match pa.alloc_pages(GfpFlags::GFP_HIGHUSER, Order::ZERO, OwnerTag::SELFTEST) {
        Ok(pfn) => pfn,
        Err(err) => {
            held.release(pa);
            return Err(fail(
                step,
                FailureKind::AllocFailed {
                    zone: ZoneType::HighMem,
                    order: Order::ZERO,
                    err,
                },
            ));
        }
    };
    report.blocks_allocated += 1;
    let got = pa.zone_of(pfn);
    let r = match got {
        Some(g) if g < ZoneType::HighMem => {
            let mut expected = before;
            expected[g.index()] = expected[g.index()].saturating_sub(1);
            expect_free(pa, &expected, step)
        }
        _ => Err(fail(
            step,
            FailureKind::WrongZone {
                expected: ZoneType::Normal,
                got,
                pfn,
                order: Order::ZERO,
            },
        )),
    };
    let freed = pa.free_pages(pfn, Order::ZERO).map_err(|err| {
        fail(
            step,
            FailureKind::FreeFailed {
                pfn,
                order: Order::ZERO,
                err,
            },
        )
    });
    held.guard(pa, r.and(freed))?;
    report.highmem_blocks = held.len as u32;
    report.highuser_fallback_zone = got;
    let _ = writeln!(
        log,
        "selftest: fallback ok: HighMem drained to {highmem_free} free pages ({} blocks, {} pages held), GFP_HIGHUSER order 0 served by {}",
        held.len,
        held.pages(),
        got.map_or("none", ZoneType::name)
    );
    held.free_all(pa, step)?;
    invariants(pa, step)
}

/// Step 4: exhaust ZONE_DMA with atomic requests; GFP_DMA must then fail.
fn exhaustion(
    pa: &mut PageAlloc<'_>,
    held: &mut Held<'_>,
    log: &mut dyn Write,
    report: &mut SelftestReport,
) -> Outcome<()> {
    let step = Step::Exhaustion;
    if !pa.zone(ZoneType::Dma).is_populated() {
        let _ = writeln!(log, "selftest: exhaustion skipped (no DMA zone)");
        return Ok(());
    }
    let atomic = GfpFlags::GFP_ATOMIC | GfpFlags::GFP_DMA;
    for order in orders_descending() {
        while let Ok(pfn) = pa.alloc_pages(atomic, order, OwnerTag::SELFTEST) {
            report.blocks_allocated += 1;
            held.push(pa, (pfn, order), step)?;
            if pa.zone_of(pfn) != Some(ZoneType::Dma) {
                held.release(pa);
                return Err(fail(
                    step,
                    FailureKind::WrongZone {
                        expected: ZoneType::Dma,
                        got: pa.zone_of(pfn),
                        pfn,
                        order,
                    },
                ));
            }
        }
    }
    let r = invariants(pa, step);
    held.guard(pa, r)?;
    let gfp = GfpFlags::GFP_DMA;
    let r = match pa.alloc_pages(gfp, Order::ZERO, OwnerTag::SELFTEST) {
        Ok(pfn) => {
            let _ = pa.free_pages(pfn, Order::ZERO);
            Err(fail(step, FailureKind::UnexpectedAlloc { pfn }))
        }
        Err(AllocError::NoMemory { order, gfp: g }) if order == Order::ZERO && g == gfp => Ok(()),
        Err(err) => Err(fail(step, FailureKind::WrongAllocError { err })),
    };
    held.guard(pa, r)?;
    let dma = pa.zone(ZoneType::Dma);
    let (free, min) = (dma.free_pages, dma.watermarks.min);
    // Without watermarks (min 0) "below min" means empty.
    if !(free < min || (min == 0 && free == 0)) {
        held.release(pa);
        return Err(fail(
            step,
            FailureKind::NotBelowMin {
                zone: ZoneType::Dma,
                free,
                min,
            },
        ));
    }
    report.dma_blocks = held.len as u32;
    report.dma_free_at_exhaustion = free;
    let _ = writeln!(
        log,
        "selftest: exhaustion ok: DMA drained to {free} free pages (min {min}) by {} atomic blocks, GFP_DMA order 0 refused",
        held.len
    );
    held.free_all(pa, step)?;
    invariants(pa, step)
}

/// One invalid free: must be refused with `expected`, changing nothing.
fn refuse(
    pa: &mut PageAlloc<'_>,
    case: &'static str,
    pfn: Pfn,
    order: Order,
    expected: FreeError,
) -> Outcome<()> {
    let step = Step::InvalidFrees;
    let zones = zones_of(pa);
    let page = pa.page(pfn).copied();
    match pa.free_pages(pfn, order) {
        Ok(()) => Err(fail(step, FailureKind::InvalidFreeAccepted { case, pfn })),
        Err(err) if err != expected => {
            Err(fail(step, FailureKind::InvalidFreeWrongError { case, err }))
        }
        Err(_) if zones_of(pa) != zones || pa.page(pfn).copied() != page => {
            Err(fail(step, FailureKind::InvalidFreeChangedState { case }))
        }
        Err(_) => Ok(()),
    }
}

/// Step 5: double free, wrong order, a tail page, a reserved frame.
fn invalid_frees(
    pa: &mut PageAlloc<'_>,
    log: &mut dyn Write,
    report: &mut SelftestReport,
) -> Outcome<()> {
    let step = Step::InvalidFrees;
    // The zone with the most free memory, so the allocations cannot fail
    // on a watermark.
    let Some(zt) = ZoneType::ALL
        .into_iter()
        .filter(|&z| pa.zone(z).is_populated())
        .max_by_key(|&z| pa.zone(z).free_pages)
    else {
        let _ = writeln!(log, "selftest: invalid frees skipped (no free memory)");
        return Ok(());
    };
    let gfp = zone_gfp(zt);
    let two = Order::new(2).unwrap_or(Order::ZERO);
    let alloc = |pa: &mut PageAlloc<'_>, order| {
        pa.alloc_pages(gfp, order, OwnerTag::SELFTEST)
            .map_err(|err| {
                fail(
                    step,
                    FailureKind::AllocFailed {
                        zone: zt,
                        order,
                        err,
                    },
                )
            })
    };
    // Double free: free a block, then free it again.
    let gone = alloc(pa, Order::ZERO)?;
    report.blocks_allocated += 1;
    pa.free_pages(gone, Order::ZERO).map_err(|err| {
        fail(
            step,
            FailureKind::FreeFailed {
                pfn: gone,
                order: Order::ZERO,
                err,
            },
        )
    })?;
    refuse(
        pa,
        "double free",
        gone,
        Order::ZERO,
        FreeError::DoubleFree { pfn: gone },
    )?;
    let mut refused = 1;
    // Wrong order and tail page on a live order-2 block.
    let live = alloc(pa, two)?;
    report.blocks_allocated += 1;
    let mut r = refuse(
        pa,
        "wrong order",
        live,
        Order::ZERO,
        FreeError::WrongOrder {
            allocated: two,
            requested: Order::ZERO,
        },
    );
    if r.is_ok() {
        refused += 1;
        let tail = live.add(1);
        r = refuse(
            pa,
            "tail page",
            tail,
            Order::ZERO,
            FreeError::NotHead { pfn: tail },
        );
    }
    let freed = pa.free_pages(live, two).map_err(|err| {
        fail(
            step,
            FailureKind::FreeFailed {
                pfn: live,
                order: two,
                err,
            },
        )
    });
    r.and(freed)?;
    refused += 1;
    // A reserved RAM frame (firmware, kernel image, mem_map…), if any.
    let reserved = (0..pa.max_pfn().0).map(Pfn).find(|&pfn| {
        pa.page(pfn)
            .is_some_and(|p| p.is_reserved() && !p.is_nomap())
    });
    match reserved {
        Some(pfn) => {
            refuse(
                pa,
                "reserved frame",
                pfn,
                Order::ZERO,
                FreeError::Reserved { pfn },
            )?;
            refused += 1;
        }
        None => {
            let _ = writeln!(log, "selftest: no reserved RAM frame to test");
        }
    }
    invariants(pa, step)?;
    report.invalid_frees_refused = refused;
    let _ = writeln!(
        log,
        "selftest: invalid frees ok: {refused} refused (double free, wrong order, tail page{}) without side effects",
        if reserved.is_some() {
            ", reserved frame"
        } else {
            ""
        }
    );
    Ok(())
}

/// Run the allocator selftest (see the module docs).
///
/// `scratch` records blocks held while HighMem and DMA are exhausted: it
/// needs roughly one entry per 4 MiB of HighMem plus a few dozen. `touch`
/// must write a pattern into every page of the block through a real
/// mapping and read it back, returning `false` on a mismatch. One line per
/// step and a summary go to `log` (write errors are ignored).
///
/// Returns what was done, or the first failure; either way every block the
/// selftest allocated has been freed.
pub fn run(
    pa: &mut PageAlloc<'_>,
    scratch: &mut [(Pfn, Order)],
    touch: &mut dyn FnMut(Pfn, Order) -> bool,
    log: &mut dyn Write,
) -> Result<SelftestReport, SelftestFailure> {
    // The steps predict the buddy lists block for block, so the per-CPU
    // lists are drained and off while they run, and back on after.
    let pcp_on = pa.pcp_enabled();
    pa.set_pcp_enabled(false);
    let r = run_steps(pa, scratch, touch, log);
    pa.set_pcp_enabled(pcp_on);
    match &r {
        Ok(rep) => {
            let _ = writeln!(
                log,
                "selftest: PASS: {} zones, {} blocks allocated, {} pages touched, {} invalid frees refused",
                rep.zones_tested,
                rep.blocks_allocated,
                rep.pages_touched,
                rep.invalid_frees_refused
            );
        }
        Err(e) => {
            let _ = writeln!(log, "selftest: FAIL: {e}");
        }
    }
    r
}

fn run_steps(
    pa: &mut PageAlloc<'_>,
    scratch: &mut [(Pfn, Order)],
    touch: &mut dyn FnMut(Pfn, Order) -> bool,
    log: &mut dyn Write,
) -> Outcome<SelftestReport> {
    let mut report = SelftestReport::default();
    // 1. Snapshot.
    invariants(pa, Step::Snapshot)?;
    let entry_free = free_pages_of(pa);
    let entry_areas = ZoneType::ALL.map(|zt| pa.free_area_counts(zt));
    let _ = writeln!(
        log,
        "selftest: snapshot: {} free pages (DMA {}, DMA32 {}, Normal {}, HighMem {})",
        pa.nr_free_pages(),
        entry_free[0],
        entry_free[1],
        entry_free[2],
        entry_free[3]
    );
    // 2–5.
    zone_orders(pa, touch, log, &mut report)?;
    let mut held = Held { scratch, len: 0 };
    fallback(pa, &mut held, log, &mut report)?;
    exhaustion(pa, &mut held, log, &mut report)?;
    invalid_frees(pa, log, &mut report)?;
    // 6. Everything is back, block for block.
    let step = Step::Restore;
    invariants(pa, step)?;
    for zt in ZoneType::ALL {
        let now = pa.free_area_counts(zt);
        let then = entry_areas[zt.index()];
        let diff = Order::all().find(|o| now[o.index()] != then[o.index()]);
        if let Some(order) = diff {
            return Err(fail(
                step,
                FailureKind::NotRestored {
                    zone: zt,
                    order,
                    expected: then[order.index()],
                    actual: now[order.index()],
                },
            ));
        }
    }
    expect_free(pa, &entry_free, step)?;
    let _ = writeln!(log, "selftest: free_area restored ok");
    Ok(report)
}

#[cfg(test)]
mod tests;
