//! Host tests for fault injection: `should_fail_ex()`'s semantics check by
//! check (interval, probability, times, space, in Linux's order), the
//! `fail_page_alloc` and `failslab` filters, the debugfs-style setters, the
//! hooks in the buddy and slab allocators (an injected failure changes
//! nothing), and a property test of random alloc/free under injection.

use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::page::{OwnerTag, Page};
use crate::page_alloc::{AllocError, PageAlloc};
use crate::slab::SlabError;
use crate::slab::tests::Fixture;
use crate::types::{NR_ORDERS, Pfn};
use crate::zone::{NR_ZONES, ZoneLayout, ZoneType};

const MIB: u64 = 1 << 20;

fn order(o: u8) -> Order {
    Order::new(o).unwrap()
}

/// An armed attribute: `fail_page_alloc=<interval>,<probability>,<space>,<times>`.
fn attr(interval: u64, probability: u8, space: u64, times: i64) -> FaultAttr {
    let mut a = FaultAttr::new();
    a.setup(FaultConfig {
        interval,
        probability,
        space,
        times,
    });
    a
}

fn pattern(a: &mut FaultAttr, calls: usize, size: u64) -> Vec<bool> {
    (0..calls).map(|_| a.should_fail(size)).collect()
}

// ----------------------------------------------------------------------
// should_fail(): Linux's semantics
// ----------------------------------------------------------------------

#[test]
fn defaults_are_fault_attr_initializer_and_never_fail() {
    let mut a = FaultAttr::new();
    assert_eq!(
        (
            a.probability(),
            a.interval(),
            a.times(),
            a.space(),
            a.verbose()
        ),
        (0, 1, 1, 0, 2)
    );
    assert!(!a.is_armed());
    assert!(pattern(&mut a, 1000, 4096).iter().all(|&f| !f));
    assert_eq!((a.count(), a.injected()), (0, 0));
    // Probability 0 is checked first: nothing else moves either.
    let mut a = attr(3, 0, 100, -1);
    assert!(pattern(&mut a, 10, 1).iter().all(|&f| !f));
    assert_eq!((a.space(), a.count()), (100, 0));
    // Linux's default times=1: arming only the probability fails once.
    let mut a = FaultAttr::new();
    a.set("probability", "100").unwrap();
    assert_eq!(pattern(&mut a, 5, 1), [true, false, false, false, false]);
    assert_eq!(a.times(), 0);
}

#[test]
fn interval_3_fails_every_third_call() {
    let mut a = attr(3, 100, 0, -1);
    let f = pattern(&mut a, 9, 4096);
    assert_eq!(
        f,
        [false, false, true, false, false, true, false, false, true]
    );
    assert_eq!((a.count(), a.injected(), a.times()), (9, 3, -1));
}

#[test]
fn times_2_fails_exactly_twice() {
    let mut a = attr(1, 100, 0, 2);
    let f = pattern(&mut a, 10, 4096);
    assert_eq!(f.iter().filter(|&&x| x).count(), 2);
    assert_eq!(&f[..2], [true, true]);
    assert_eq!((a.times(), a.injected()), (0, 2));
    assert!(!a.is_armed(), "times == 0 disarms");
    // times == 0 is checked before space: the budget is not consumed.
    let mut a = attr(1, 100, 50, 0);
    assert!(!a.should_fail(1));
    assert_eq!(a.space(), 50);
}

#[test]
fn space_lets_the_budget_through_first() {
    // space=8192 with 1 KiB objects: let through while space > size, so
    // seven objects pass and the eighth (which would use the last KiB)
    // is eligible, as with Linux's `atomic_read(&attr->space) > size`.
    let mut a = attr(1, 100, 8192, -1);
    let f = pattern(&mut a, 10, 1024);
    assert_eq!(f.iter().position(|&x| x), Some(7));
    assert_eq!(a.space(), 1024);
    // 4 KiB pieces: the first of two passes.
    let mut a = attr(1, 100, 8192, -1);
    assert_eq!(pattern(&mut a, 3, 4096), [false, true, true]);
    // A call bigger than the budget is eligible at once and leaves it.
    let mut a = attr(1, 100, 8192, -1);
    assert!(a.should_fail(8192));
    assert_eq!(a.space(), 8192);
    // Space is spent before interval counts.
    let mut a = attr(2, 100, 3, -1);
    assert_eq!(
        pattern(&mut a, 6, 1),
        [false, false, false, true, false, true]
    );
    assert_eq!(a.count(), 4);
}

#[test]
fn probability_is_a_percentage_and_the_seed_repeats() {
    let mut a = attr(1, 10, 0, -1);
    let f = pattern(&mut a, 20_000, 1);
    let n = f.iter().filter(|&&x| x).count();
    assert!((1700..=2300).contains(&n), "{n} of 20000 at 10%");
    assert_eq!(a.injected(), n as u64);
    let mut b = attr(1, 10, 0, -1);
    assert_eq!(pattern(&mut b, 20_000, 1), f, "same seed, same failures");
    let mut c = attr(1, 10, 0, -1);
    c.set_seed(12345);
    assert_ne!(pattern(&mut c, 20_000, 1), f);
    // 100 always fails, 1 rarely.
    let mut a = attr(1, 100, 0, -1);
    assert!(pattern(&mut a, 1000, 1).iter().all(|&x| x));
    let mut a = attr(1, 1, 0, -1);
    let n = pattern(&mut a, 10_000, 1).iter().filter(|&&x| x).count();
    assert!((50..=150).contains(&n), "{n} of 10000 at 1%");
    // Interval and probability combine: at most every 2nd, half of those.
    let mut a = attr(2, 50, 0, -1);
    let f = pattern(&mut a, 10_000, 1);
    assert!(f.iter().step_by(2).all(|&x| !x), "odd calls never fail");
    let n = f.iter().filter(|&&x| x).count();
    assert!((2200..=2800).contains(&n), "{n}");
}

// ----------------------------------------------------------------------
// Attributes
// ----------------------------------------------------------------------

#[test]
fn set_and_get_validate_every_attribute() {
    let mut a = FaultAttr::new();
    for (name, value, want) in [
        ("probability", "100", 100),
        ("probability", " 0\n", 0),
        ("interval", "1", 1),
        ("interval", "1000", 1000),
        ("times", "-1", -1),
        ("times", "0", 0),
        ("space", "8192", 8192),
        ("verbose", "0", 0),
    ] {
        a.set(name, value).unwrap();
        assert_eq!(a.get(name), Some(want), "{name}={value}");
    }
    let before = a;
    let errors = [
        (
            "probability",
            "101",
            "probability: out of range (expected 0..=100)",
        ),
        (
            "probability",
            "-1",
            "probability: out of range (expected 0..=100)",
        ),
        ("probability", "ten", "probability: not a decimal integer"),
        (
            "interval",
            "0",
            "interval: out of range (expected 1..=9223372036854775807)",
        ),
        (
            "times",
            "-2",
            "times: out of range (expected -1..=9223372036854775807)",
        ),
        (
            "space",
            "-1",
            "space: out of range (expected 0..=9223372036854775807)",
        ),
        ("space", "", "space: not a decimal integer"),
        ("space", "0x10", "space: not a decimal integer"),
        (
            "space",
            "99999999999999999999",
            "space: out of range (expected 0..=9223372036854775807)",
        ),
        ("verbose", "3", "verbose: out of range (expected 0..=2)"),
        ("task-filter", "1", "unknown attribute"),
    ];
    for (name, value, msg) in errors {
        let e = a.set(name, value).unwrap_err();
        assert_eq!(format!("{e}"), msg, "{name}={value}");
        assert_eq!(a, before, "a refused set changes nothing");
    }
    assert_eq!(a.get("bogus"), None);
    assert_eq!(FaultAttr::attributes(), FAULT_ATTR_ATTRIBUTES);
    for name in FaultAttr::attributes() {
        assert!(a.get(name).is_some(), "{name}");
    }
}

#[test]
fn page_alloc_and_slab_attributes() {
    let mut p = FailPageAlloc::new();
    assert_eq!(
        (p.ignore_gfp_highmem, p.ignore_gfp_reclaim, p.min_order),
        (true, true, 1)
    );
    for name in FailPageAlloc::attributes() {
        assert!(p.get(name).is_some(), "{name}");
    }
    p.set("ignore-gfp-wait", "N").unwrap();
    p.set("ignore-gfp-highmem", "off").unwrap();
    p.set("min-order", "0").unwrap();
    p.set("probability", "5").unwrap();
    assert_eq!(p.get("ignore-gfp-wait"), Some(0));
    assert_eq!(p.get("ignore-gfp-highmem"), Some(0));
    assert_eq!(p.get("min-order"), Some(0));
    assert_eq!(p.get("probability"), Some(5));
    let e = p.set("min-order", "11").unwrap_err();
    assert_eq!(format!("{e}"), "min-order: out of range (expected 0..=10)");
    let e = p.set("ignore-gfp-wait", "maybe").unwrap_err();
    assert_eq!(
        format!("{e}"),
        "ignore-gfp-wait: expected a boolean (1/0, y/n, on/off)"
    );
    assert_eq!(
        p.set("cache-filter", "1"),
        Err(FaultAttrError::UnknownAttribute)
    );

    let mut s = FailSlab::new();
    assert_eq!((s.ignore_gfp_reclaim, s.cache_filter), (true, false));
    for name in FailSlab::attributes() {
        assert!(s.get(name).is_some(), "{name}");
    }
    s.set("cache-filter", "Y").unwrap();
    s.set("ignore-gfp-wait", "0").unwrap();
    assert_eq!(
        (s.get("cache-filter"), s.get("ignore-gfp-wait")),
        (Some(1), Some(0))
    );
    assert_eq!(
        s.set("min-order", "1"),
        Err(FaultAttrError::UnknownAttribute)
    );
}

#[test]
fn boot_option_parse() {
    assert_eq!(
        FaultConfig::parse("3,100,8192,-1"),
        Ok(FaultConfig {
            interval: 3,
            probability: 100,
            space: 8192,
            times: -1
        })
    );
    assert_eq!(
        FaultConfig::parse("1,2,3"),
        Err(FaultAttrError::NotFourFields)
    );
    assert_eq!(
        FaultConfig::parse("1,2,3,4,5"),
        Err(FaultAttrError::NotFourFields)
    );
    assert!(matches!(
        FaultConfig::parse("0,2,3,4"),
        Err(FaultAttrError::OutOfRange {
            name: "interval",
            ..
        })
    ));
}

// ----------------------------------------------------------------------
// fail_page_alloc
// ----------------------------------------------------------------------

fn armed_page_alloc() -> FailPageAlloc {
    let mut p = FailPageAlloc::new();
    p.attr = attr(1, 100, 0, -1);
    p
}

#[test]
fn fail_page_alloc_filters() {
    let mut p = armed_page_alloc();
    // Defaults: min-order 1, ignore-gfp-wait, ignore-gfp-highmem.
    assert!(!p.should_fail_alloc_page(GfpFlags::GFP_ATOMIC, Order::ZERO));
    assert!(p.should_fail_alloc_page(GfpFlags::GFP_ATOMIC, order(1)));
    assert!(!p.should_fail_alloc_page(GfpFlags::GFP_KERNEL, order(1)));
    assert!(p.should_fail_alloc_page(GfpFlags::GFP_NOWAIT, order(3)));
    assert!(!p.should_fail_alloc_page(GfpFlags::GFP_ATOMIC | GfpFlags::HIGHMEM, order(1)));
    assert!(!p.should_fail_alloc_page(GfpFlags::GFP_ATOMIC | GfpFlags::NOFAIL, order(1)));
    // Every filter off: only __GFP_NOFAIL is still spared.
    p.set("ignore-gfp-wait", "0").unwrap();
    p.set("ignore-gfp-highmem", "0").unwrap();
    p.set("min-order", "0").unwrap();
    for gfp in [
        GfpFlags::GFP_KERNEL,
        GfpFlags::GFP_ATOMIC,
        GfpFlags::GFP_HIGHUSER,
        GfpFlags::GFP_ATOMIC | GfpFlags::MEMALLOC,
    ] {
        assert!(p.should_fail_alloc_page(gfp, Order::ZERO), "{gfp}");
        assert!(
            !p.should_fail_alloc_page(gfp | GfpFlags::NOFAIL, Order::ZERO),
            "{gfp}"
        );
    }
    // Space counts pages here, as Linux passes `1 << order`.
    let mut p = FailPageAlloc::new();
    p.attr = attr(1, 100, 5, -1);
    assert!(!p.should_fail_alloc_page(GfpFlags::GFP_ATOMIC, order(2))); // 5 > 4
    assert_eq!(p.attr.space(), 1);
    assert!(p.should_fail_alloc_page(GfpFlags::GFP_ATOMIC, order(1)));
}

/// 32 MiB of lowmem (DMA + DMA32), page 0 reserved, watermarks set.
fn boot(ram_mib: u64) -> PageAlloc<'static> {
    let layout = ZoneLayout::from_bytes(ram_mib * MIB, ram_mib * MIB);
    let mem_map = Box::leak(vec![Page::new_reserved(); layout.max_pfn.index()].into_boxed_slice());
    let mut pa = PageAlloc::new(mem_map, layout).unwrap();
    pa.mark_ram(Pfn(0), layout.max_pfn).unwrap();
    pa.free_bootmem(Pfn(1), layout.max_pfn).unwrap();
    pa.setup_watermarks();
    // Exact buddy predictions: the per-CPU lists are off here (the
    // property tests and page_alloc::pcp's tests run them on).
    pa.set_pcp_enabled(false);
    pa
}

fn buddyinfo(pa: &PageAlloc<'_>) -> [[u64; NR_ORDERS]; NR_ZONES] {
    core::array::from_fn(|z| pa.free_area_counts(ZoneType::ALL[z]))
}

#[test]
fn alloc_pages_hook_fails_cleanly() {
    let mut pa = boot(32);
    let before = (pa.zones().to_vec(), buddyinfo(&pa));
    pa.fail_page_alloc_mut().attr = attr(1, 100, 0, -1);
    let gfp = GfpFlags::GFP_ATOMIC;
    assert_eq!(
        pa.alloc_pages(gfp, order(2), OwnerTag::API),
        Err(AllocError::NoMemory {
            order: order(2),
            gfp
        })
    );
    assert_eq!(
        (pa.zones().to_vec(), buddyinfo(&pa)),
        before,
        "nothing changed"
    );
    assert_eq!(pa.fail_page_alloc().attr.injected(), 1);
    // Spared: order 0, GFP_KERNEL, __GFP_NOFAIL.
    let a = pa.alloc_pages(gfp, Order::ZERO, OwnerTag::API).unwrap();
    let b = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, order(2), OwnerTag::API)
        .unwrap();
    let c = pa
        .alloc_pages(gfp | GfpFlags::NOFAIL, order(2), OwnerTag::API)
        .unwrap();
    // A bad zone combination is refused as such, not counted as injected.
    assert!(matches!(
        pa.alloc_pages(
            gfp | GfpFlags::DMA | GfpFlags::DMA32,
            order(1),
            OwnerTag::API
        ),
        Err(AllocError::ZoneBad { .. })
    ));
    assert_eq!(pa.fail_page_alloc().attr.injected(), 1);
    pa.free_pages(a, Order::ZERO).unwrap();
    pa.free_pages(b, order(2)).unwrap();
    pa.free_pages(c, order(2)).unwrap();
    assert_eq!(buddyinfo(&pa), before.1);
    pa.check_invariants().unwrap();
}

// ----------------------------------------------------------------------
// failslab
// ----------------------------------------------------------------------

#[test]
fn failslab_filters() {
    let mut s = FailSlab::new();
    s.attr = attr(1, 100, 0, -1);
    let plain = SlabFlags::NONE;
    assert!(
        !s.should_failslab(plain, 64, GfpFlags::GFP_KERNEL),
        "ignore-gfp-wait"
    );
    assert!(s.should_failslab(plain, 64, GfpFlags::GFP_ATOMIC));
    assert!(!s.should_failslab(plain, 64, GfpFlags::GFP_ATOMIC | GfpFlags::NOFAIL));
    s.cache_filter = true;
    assert!(!s.should_failslab(plain, 64, GfpFlags::GFP_ATOMIC));
    assert!(s.should_failslab(SlabFlags::FAILSLAB, 64, GfpFlags::GFP_ATOMIC));
    s.ignore_gfp_reclaim = false;
    assert!(s.should_failslab(SlabFlags::FAILSLAB, 64, GfpFlags::GFP_KERNEL));
    // Space counts object bytes.
    let mut s = FailSlab::new();
    s.attr = attr(1, 100, 200, -1);
    assert!(!s.should_failslab(plain, 64, GfpFlags::GFP_ATOMIC));
    assert!(!s.should_failslab(plain, 64, GfpFlags::GFP_ATOMIC));
    assert!(!s.should_failslab(plain, 64, GfpFlags::GFP_ATOMIC));
    assert!(s.should_failslab(plain, 64, GfpFlags::GFP_ATOMIC)); // 8 left
}

#[test]
fn failslab_hook_fails_kmem_cache_alloc_with_nothing_leaked() {
    let mut f = Fixture::new(24);
    let id = f
        .slab
        .kmem_cache_create("fi-test", 200, 8, SlabFlags::NONE, None)
        .unwrap();
    let gfp = GfpFlags::GFP_ATOMIC;
    // One object so a slab exists: the failure must not come from growing.
    let first = f.slab.kmem_cache_alloc(&f.mem, &f.pages, id, gfp).unwrap();
    let info = f.slab.cache_info(&f.mem, id).unwrap();
    let slab_pages = f.slab.slab_pages();
    let buddy = f.buddy();
    f.slab.failslab_mut().attr = attr(1, 100, 0, -1);
    assert!(matches!(
        f.slab.kmem_cache_alloc(&f.mem, &f.pages, id, gfp),
        Err(SlabError::NoMemory { .. })
    ));
    assert_eq!(
        f.slab.cache_info(&f.mem, id).unwrap(),
        info,
        "cache counts unchanged"
    );
    assert_eq!((f.slab.slab_pages(), f.buddy()), (slab_pages, buddy));
    // kmalloc enters the slab the same way.
    assert!(matches!(
        f.slab.kmalloc(&f.mem, &f.pages, 100, gfp),
        Err(SlabError::NoMemory { .. })
    ));
    assert_eq!(f.slab.failslab().attr.injected(), 2);
    // Spared: GFP_KERNEL (ignore-gfp-wait) and __GFP_NOFAIL.
    let a = f
        .slab
        .kmem_cache_alloc(&f.mem, &f.pages, id, GfpFlags::GFP_KERNEL)
        .unwrap();
    let b = f
        .slab
        .kmem_cache_alloc(&f.mem, &f.pages, id, gfp | GfpFlags::NOFAIL)
        .unwrap();
    let k = f
        .slab
        .kmalloc(&f.mem, &f.pages, 100, gfp | GfpFlags::NOFAIL)
        .unwrap();
    // kmalloc_large goes to the page allocator: failslab does not see it
    // (Linux: __kmalloc_large_node() → alloc_pages()), fail_page_alloc does.
    let big = f.slab.kmalloc(&f.mem, &f.pages, 64 << 10, gfp).unwrap();
    f.slab.kfree(&f.mem, &f.pages, big).unwrap();
    f.pages.lock().fail_page_alloc_mut().attr = attr(1, 100, 0, -1);
    assert!(matches!(
        f.slab.kmalloc(&f.mem, &f.pages, 64 << 10, gfp),
        Err(SlabError::NoMemory { .. })
    ));
    f.pages.lock().fail_page_alloc_mut().attr = FaultAttr::new();
    assert_eq!(f.slab.failslab().attr.injected(), 2);
    for obj in [first, a, b] {
        f.slab.kmem_cache_free(&f.mem, &f.pages, id, obj).unwrap();
    }
    f.slab.kfree(&f.mem, &f.pages, k).unwrap();
    f.slab.failslab_mut().attr = FaultAttr::new();
    f.slab.kmem_cache_destroy(&f.mem, &f.pages, id).unwrap();
    f.slab.shrink_all(&f.mem, &f.pages);
    f.assert_buddy_restored();
}

#[test]
fn failslab_cache_filter_picks_flagged_caches() {
    let mut f = Fixture::new(24);
    let plain = f
        .slab
        .kmem_cache_create("fi-plain", 64, 8, SlabFlags::NONE, None)
        .unwrap();
    let marked = f
        .slab
        .kmem_cache_create("fi-marked", 64, 8, SlabFlags::FAILSLAB, None)
        .unwrap();
    assert_eq!(
        SlabFlags::from_name("SLAB_FAILSLAB"),
        Some(SlabFlags::FAILSLAB)
    );
    {
        let mut fs = f.slab.failslab_mut();
        fs.attr = attr(1, 100, 0, -1);
        fs.set("cache-filter", "1").unwrap();
    }
    let gfp = GfpFlags::GFP_ATOMIC;
    let p = f
        .slab
        .kmem_cache_alloc(&f.mem, &f.pages, plain, gfp)
        .unwrap();
    assert!(
        f.slab
            .kmem_cache_alloc(&f.mem, &f.pages, marked, gfp)
            .is_err()
    );
    f.slab.kmem_cache_free(&f.mem, &f.pages, plain, p).unwrap();
    f.slab.kmem_cache_destroy(&f.mem, &f.pages, plain).unwrap();
    f.slab.kmem_cache_destroy(&f.mem, &f.pages, marked).unwrap();
    f.assert_buddy_restored();
}

// ----------------------------------------------------------------------
// Property: random traffic under injection keeps the buddy allocator whole
// ----------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_traffic_under_fail_page_alloc(
        seed in any::<u64>(),
        ops in prop::collection::vec((0u8..4, 0u8..=4, 0usize..64), 1..200),
    ) {
        let mut pa = boot(24);
        let boot_state = buddyinfo(&pa);
        {
            let mut f = pa.fail_page_alloc_mut();
            f.attr = attr(1, 10, 0, -1);
            f.attr.set_seed(seed);
            f.min_order = 0;
            f.ignore_gfp_reclaim = false;
        }
        let mut live: Vec<(Pfn, Order)> = Vec::new();
        let mut failed = 0u64;
        for (kind, o, pick) in ops {
            if kind == 0 && !live.is_empty() {
                let (pfn, ord) = live.swap_remove(pick % live.len());
                prop_assert_eq!(pa.free_pages(pfn, ord), Ok(()));
            } else {
                let gfp = [GfpFlags::GFP_KERNEL, GfpFlags::GFP_ATOMIC, GfpFlags::GFP_NOWAIT][kind as usize % 3];
                match pa.alloc_pages(gfp, order(o), OwnerTag::API) {
                    Ok(pfn) => {
                        prop_assert!(pfn.is_aligned(order(o)));
                        live.push((pfn, order(o)));
                    }
                    Err(e) => {
                        prop_assert_eq!(e, AllocError::NoMemory { order: order(o), gfp });
                        failed += 1;
                    }
                }
            }
            prop_assert_eq!(pa.check_invariants(), Ok(()));
        }
        // 24 MiB never runs out under 200 small requests: every failure
        // was injected.
        prop_assert_eq!(failed, pa.fail_page_alloc().attr.injected());
        for (pfn, ord) in live {
            prop_assert_eq!(pa.free_pages(pfn, ord), Ok(()));
        }
        prop_assert_eq!(pa.check_invariants(), Ok(()));
        prop_assert_eq!(buddyinfo(&pa), boot_state);
    }
}
