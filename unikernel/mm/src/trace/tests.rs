//! Host tests for the tracepoints: every event's line against a line
//! written out by hand in Linux 6.1's format, the `trace` header, the ring
//! (overwrite, overrun, consuming and non-consuming reads, pause, clear),
//! the enable mask, and the hooks in the page allocator, kmalloc and the
//! slab through a real `MemoryManager`.

extern crate alloc;
extern crate std;

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use std::format;

use super::*;
use crate::manager::MemoryManager;
use crate::memblock::Memblock;
use crate::page::{OwnerTag, Page};
use crate::page_alloc::PageAlloc;
use crate::platform::sim::SimPlatform;
use crate::slab::{ArenaMemory, SlabAllocator, SlabFlags, SlabMeta};
use crate::types::{Order, PhysAddr};
use crate::zone::ZoneLayout;

fn rec(ts_ns: u64, event: TraceEvent) -> TraceRecord {
    TraceRecord {
        ts_ns,
        cpu: 0,
        event,
    }
}

fn line(r: &TraceRecord, page_base: u64) -> String {
    r.line(page_base).to_string()
}

fn tracer_with(n: usize) -> Tracer<'static> {
    let t = Tracer::new(0);
    t.attach(0, Box::leak(vec![TraceRecord::EMPTY; n].into_boxed_slice()));
    t
}

fn ev(i: u64) -> TraceEvent {
    TraceEvent::MmVmscanDirectReclaimEnd { nr_reclaimed: i }
}

#[test]
fn every_event_prints_as_linux_tp_printk() {
    let base = 0xffff_8880_0100_0000;
    let cases: &[(TraceEvent, &str)] = &[
        (
            TraceEvent::MmPageAlloc {
                pfn: Pfn(0x1c3a8),
                order: 3,
                migratetype: 0,
                gfp: GfpFlags::GFP_KERNEL,
            },
            "mm_page_alloc: page=ffff8880011c3a80 pfn=0x1c3a8 order=3 migratetype=0 gfp_flags=GFP_KERNEL",
        ),
        (
            TraceEvent::MmPageFree {
                pfn: Pfn(0x10),
                order: 0,
            },
            "mm_page_free: page=ffff888001000100 pfn=0x10 order=0",
        ),
        (
            TraceEvent::Kmalloc {
                call_site: 0,
                ptr: 0xffff_8880_0345_6780,
                bytes_req: 40,
                bytes_alloc: 64,
                gfp: GfpFlags::GFP_KERNEL | GfpFlags::ACCOUNT,
            },
            "kmalloc: call_site=0x0 ptr=ffff888003456780 bytes_req=40 bytes_alloc=64 gfp_flags=GFP_KERNEL_ACCOUNT node=-1 accounted=true",
        ),
        (
            TraceEvent::Kfree {
                call_site: 0,
                ptr: 0xffff_8880_0345_6780,
            },
            "kfree: call_site=0x0 ptr=ffff888003456780",
        ),
        (
            TraceEvent::KmemCacheAlloc {
                call_site: 0,
                ptr: 0xffff_8880_0200_0100,
                bytes_req: 200,
                bytes_alloc: 256,
                gfp: GfpFlags::GFP_ATOMIC,
                accounted: false,
            },
            "kmem_cache_alloc: call_site=0x0 ptr=ffff888002000100 bytes_req=200 bytes_alloc=256 gfp_flags=GFP_ATOMIC node=-1 accounted=false",
        ),
        (
            TraceEvent::KmemCacheFree {
                call_site: 0,
                ptr: 0xffff_8880_0200_0100,
                name: CacheName::new("my_cache").unwrap(),
            },
            "kmem_cache_free: call_site=0x0 ptr=ffff888002000100 name=my_cache",
        ),
        (
            TraceEvent::MmVmscanKswapdWake {
                nid: 0,
                zid: 1,
                order: 0,
            },
            "mm_vmscan_kswapd_wake: nid=0 order=0",
        ),
        (
            TraceEvent::MmVmscanKswapdSleep { nid: 0 },
            "mm_vmscan_kswapd_sleep: nid=0",
        ),
        (
            TraceEvent::MmVmscanDirectReclaimBegin {
                order: 2,
                gfp: GfpFlags::GFP_HIGHUSER,
            },
            "mm_vmscan_direct_reclaim_begin: order=2 gfp_flags=GFP_HIGHUSER",
        ),
        (
            TraceEvent::MmVmscanDirectReclaimEnd { nr_reclaimed: 32 },
            "mm_vmscan_direct_reclaim_end: nr_reclaimed=32",
        ),
        (TraceEvent::MarkVictim { pid: 3 }, "mark_victim: pid=3"),
        (
            TraceEvent::MmPageAllocExtfrag {
                pfn: Pfn(0x400),
                alloc_order: 0,
                fallback_order: 10,
                alloc_migratetype: 0,
                fallback_migratetype: 1,
                change_ownership: true,
            },
            "mm_page_alloc_extfrag: page=ffff888001004000 pfn=0x400 alloc_order=0 fallback_order=10 pageblock_order=9 alloc_migratetype=0 fallback_migratetype=1 fragmenting=0 change_ownership=1",
        ),
        (
            TraceEvent::MmCompactionBegin {
                zone_start: 0x1000,
                migrate_pfn: 0x1000,
                free_pfn: 0x37e00,
                zone_end: 0x38000,
                sync: true,
            },
            "mm_compaction_begin: zone_start=0x1000 migrate_pfn=0x1000 free_pfn=0x37e00 zone_end=0x38000, mode=sync",
        ),
        (
            TraceEvent::MmCompactionEnd {
                zone_start: 0x1000,
                migrate_pfn: 0x2400,
                free_pfn: 0x2600,
                zone_end: 0x38000,
                sync: true,
                status: "complete",
            },
            "mm_compaction_end: zone_start=0x1000 migrate_pfn=0x2400 free_pfn=0x2600 zone_end=0x38000, mode=sync status=complete",
        ),
    ];
    for &(event, body) in cases {
        let got = line(&rec(12_345_678_000, event), base);
        let want = format!("          <idle>-0       [000] .....    12.345678: {body}");
        assert_eq!(got, want);
    }
}

#[test]
fn timestamps_round_to_microseconds_and_widen_past_five_digits() {
    let e = TraceEvent::MarkVictim { pid: 1 };
    // ns2usecs() rounds: 1.0000005 s prints as 1.000001.
    assert!(line(&rec(1_000_000_500, e), 0).contains(" .....     1.000001: "));
    assert!(line(&rec(499, e), 0).contains(" .....     0.000000: "));
    assert!(line(&rec(123_456_000_000_000, e), 0).contains(" ..... 123456.000000: "));
}

#[test]
fn gfp_flags_none_and_leftover_bits_print_as_show_gfp_flags() {
    let r = rec(
        0,
        TraceEvent::MmVmscanDirectReclaimBegin {
            order: 0,
            gfp: GfpFlags::empty(),
        },
    );
    assert!(line(&r, 0).ends_with("order=0 gfp_flags=none"));
    // Linux 6.1's table order: composites first, GFP_KERNEL_ACCOUNT before
    // GFP_KERNEL, __GFP_MOVABLE after __GFP_HARDWALL, leftovers in hex.
    let show = |g: GfpFlags| ShowGfpFlags(g).to_string();
    assert_eq!(show(GfpFlags::GFP_KERNEL), "GFP_KERNEL");
    assert_eq!(
        show(GfpFlags::GFP_KERNEL | GfpFlags::ACCOUNT),
        "GFP_KERNEL_ACCOUNT"
    );
    assert_eq!(
        show(GfpFlags::GFP_HIGHUSER | GfpFlags::MOVABLE),
        "GFP_HIGHUSER_MOVABLE"
    );
    assert_eq!(
        show(GfpFlags::GFP_KERNEL | GfpFlags::ZERO | GfpFlags::NOFAIL),
        "GFP_KERNEL|__GFP_NOFAIL|__GFP_ZERO"
    );
    assert_eq!(
        show(GfpFlags::GFP_ATOMIC | GfpFlags::DMA),
        "GFP_ATOMIC|GFP_DMA"
    );
    assert_eq!(show(GfpFlags::GFP_NOWAIT), "GFP_NOWAIT");
    assert_eq!(
        show(GfpFlags::RECLAIM | GfpFlags::IO | GfpFlags::MOVABLE),
        "GFP_NOFS|__GFP_MOVABLE"
    );
    assert_eq!(
        show(GfpFlags::KSWAPD_RECLAIM | GfpFlags::WRITE),
        "GFP_NOWAIT|__GFP_WRITE"
    );
}

#[test]
fn header_is_linux_trace_header() {
    let stats = TraceStats {
        entries: 3,
        overrun: 2,
        dropped: 0,
        capacity: 8,
    };
    let mut s = String::new();
    write_header(&mut s, &stats, 1).unwrap();
    let want = "\
# tracer: nop
#
# entries-in-buffer/entries-written: 3/5   #P:1
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
";
    assert_eq!(s, want);
    // The columns line up with a line's fields: CPU# over [000], the flag
    // column over ....., TIMESTAMP ends over the timestamp's last digit.
    let l = line(&rec(12_345_678_000, ev(0)), 0);
    let cols = want.lines().nth(10).unwrap();
    assert_eq!(&l[25..29], "[000");
    assert_eq!(&cols[25..29], "CPU#");
    assert_eq!(&l[31..36], ".....");
    assert_eq!(&cols[31..36], "|||||");
}

#[test]
fn enable_mask_by_event_and_system() {
    let t = tracer_with(4);
    assert!(EventId::ALL.iter().all(|&e| !t.enabled(e)));
    t.set_enabled(EventId::MmPageAlloc.bit(), true);
    assert!(t.enabled(EventId::MmPageAlloc));
    assert!(!t.enabled(EventId::MmPageFree));
    t.set_enabled(EventId::system_mask("vmscan"), true);
    assert!(t.enabled(EventId::MmVmscanKswapdWake));
    assert!(t.enabled(EventId::MmVmscanDirectReclaimEnd));
    assert!(!t.enabled(EventId::MarkVictim));
    t.set_enabled(EventId::system_mask("kmem"), false);
    assert!(!t.enabled(EventId::MmPageAlloc));
    assert_eq!(EventId::system_mask("nope"), 0);
    assert_eq!(
        EventId::lookup("kmem", "mm_page_alloc"),
        Some(EventId::MmPageAlloc)
    );
    assert_eq!(EventId::lookup("vmscan", "mm_page_alloc"), None);
    assert!(EventId::is_system("oom") && !EventId::is_system("sched"));
    // Every bit is distinct and fits the mask.
    let all = EventId::ALL.iter().fold(0u64, |m, e| {
        assert_eq!(m & e.bit(), 0);
        m | e.bit()
    });
    assert_eq!(all.count_ones() as usize, EventId::ALL.len());
    t.reset();
    assert_eq!(t.mask(), 0);
}

#[test]
fn full_ring_overwrites_the_oldest_and_counts_the_overrun() {
    let t = tracer_with(4);
    for i in 0..10 {
        t.record(i, 0, ev(i));
    }
    let s = t.stats();
    assert_eq!((s.entries, s.overrun, s.dropped, s.capacity), (4, 6, 0, 4));
    let mut c = t.cursor();
    let mut out = [TraceRecord::EMPTY; 3];
    let n = t.read(&mut c, &mut out);
    assert_eq!(n, 3);
    assert_eq!(out.map(|r| r.ts_ns), [6, 7, 8]);
    assert_eq!(t.read(&mut c, &mut out), 1);
    assert_eq!(out[0].ts_ns, 9);
    assert_eq!(t.read(&mut c, &mut out), 0);
    // Reading does not consume.
    assert_eq!(t.stats().entries, 4);
}

#[test]
fn a_reader_stops_at_its_start_and_skips_what_was_overwritten_meanwhile() {
    let t = tracer_with(4);
    for i in 0..4 {
        t.record(i, 0, ev(i));
    }
    let mut c = t.cursor();
    let mut out = [TraceRecord::EMPTY; 1];
    assert_eq!(t.read(&mut c, &mut out), 1);
    assert_eq!(out[0].ts_ns, 0);
    // Two newer records overwrite 0 and 1: the reader skips 1 and stops
    // at 3, the end it started with.
    t.record(4, 0, ev(4));
    t.record(5, 0, ev(5));
    let mut rest = [TraceRecord::EMPTY; 8];
    let n = t.read(&mut c, &mut rest);
    assert_eq!(
        rest[..n].iter().map(|r| r.ts_ns).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(c.skipped, 1);
}

#[test]
fn consuming_reads_remove_and_report_lost_events_once() {
    let t = tracer_with(4);
    for i in 0..6 {
        t.record(i, 0, ev(i));
    }
    let limit = t.consume_limit();
    let mut out = [TraceRecord::EMPTY; 3];
    let c = t.consume(&limit, &mut out);
    assert_eq!((c.nr, c.total_lost()), (3, 2));
    assert_eq!(out.map(|r| r.ts_ns), [2, 3, 4]);
    // A record after the limit is left for the next read.
    t.record(6, 0, ev(6));
    let c = t.consume(&limit, &mut out);
    assert_eq!((c.nr, c.total_lost()), (1, 0));
    assert_eq!(out[0].ts_ns, 5);
    assert_eq!(t.stats().entries, 1);
    let c = t.consume(&t.consume_limit(), &mut out);
    assert_eq!((c.nr, out[0].ts_ns), (1, 6));
    assert_eq!(t.stats().entries, 0);
}

#[test]
fn clear_empties_keeps_the_mask_and_pause_drops_events() {
    let t = tracer_with(4);
    t.set_enabled(EventId::MarkVictim.bit(), true);
    for i in 0..6 {
        t.record(i, 0, ev(i));
    }
    t.clear();
    assert_eq!(
        t.stats(),
        TraceStats {
            capacity: 4,
            ..TraceStats::default()
        }
    );
    assert!(t.enabled(EventId::MarkVictim));
    {
        let _p = t.pause();
        t.record(1, 0, ev(1));
    }
    assert_eq!(t.stats().entries, 0);
    t.record(2, 0, ev(2));
    assert_eq!(t.stats().entries, 1);
}

#[test]
fn busy_or_missing_ring_drops_instead_of_blocking() {
    let t = Tracer::new(0);
    t.record(1, 0, ev(1));
    assert_eq!(t.stats().dropped, 1, "no ring lent yet");
    let t = tracer_with(4);
    {
        let _held = t.hold_ring(0); // a reader, or an interrupted writer
        t.record(1, 0, ev(1));
    }
    assert_eq!((t.stats().entries, t.stats().dropped), (0, 1));
}

fn manager() -> MemoryManager<'static, SimPlatform> {
    let ram = 32u64 << 20;
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), ram).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    let mem_map = Box::leak(vec![Page::new_reserved(); (ram >> 12) as usize].into_boxed_slice());
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(ram, ram)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    let mm = MemoryManager::new(pa, SimPlatform::new(ram >> 12));
    mm.attach_trace_buffer(Box::leak(vec![TraceRecord::EMPTY; 64].into_boxed_slice()));
    mm
}

fn drain(mm: &MemoryManager<'_, SimPlatform>) -> Vec<TraceRecord> {
    let mut all = Vec::new();
    let mut out = [TraceRecord::EMPTY; 16];
    let limit = mm.tracer().consume_limit();
    loop {
        let c = mm.tracer().consume(&limit, &mut out);
        if c.nr == 0 {
            return all;
        }
        all.extend_from_slice(&out[..c.nr]);
    }
}

#[test]
fn page_alloc_and_free_are_traced_only_when_enabled() {
    let mm = manager();
    let o3 = Order::new(3).unwrap();
    let p = mm
        .alloc_pages(GfpFlags::GFP_KERNEL, o3, OwnerTag::API)
        .unwrap();
    mm.free_pages(p, o3).unwrap();
    assert!(drain(&mm).is_empty(), "disabled: nothing recorded");

    let t = mm.tracer();
    t.set_enabled(EventId::MmPageAlloc.bit() | EventId::MmPageFree.bit(), true);
    let gfp = GfpFlags::GFP_KERNEL | GfpFlags::MOVABLE;
    let p = mm.alloc_pages(gfp, o3, OwnerTag::API).unwrap();
    assert!(
        mm.free_pages(p, Order::ZERO).is_err(),
        "a refused free is no free"
    );
    mm.free_pages(p, o3).unwrap();
    let recs = drain(&mm);
    assert_eq!(
        recs.iter().map(|r| r.event).collect::<Vec<_>>(),
        [
            TraceEvent::MmPageAlloc {
                pfn: p,
                order: 3,
                migratetype: 1,
                gfp
            },
            TraceEvent::MmPageFree { pfn: p, order: 3 },
        ]
    );
    assert!(recs[0].ts_ns < recs[1].ts_ns, "the sim clock advances");
    // page= is the frame's descriptor in mem_map.
    let desc = core::ptr::from_ref(mm.lock().page(p).unwrap()) as u64;
    let l = recs[0].line(t.page_base()).to_string();
    assert!(
        l.contains(&format!(
            "page={desc:016x} pfn={:#x} order=3 migratetype=1 gfp_flags=GFP_KERNEL|__GFP_MOVABLE",
            p.0
        )) || l.contains(&format!(
            "page={desc:016x} pfn={:#x} order=3 migratetype=1 ",
            p.0
        )),
        "{l}"
    );
}

#[test]
fn kmalloc_kfree_and_cache_events_through_the_manager() {
    let mm = manager();
    let nr = 32u64 << 8;
    let mem = ArenaMemory::new(Pfn(0), nr);
    let metas = Box::leak(vec![SlabMeta::EMPTY; nr as usize].into_boxed_slice());
    let mut slab = SlabAllocator::new(metas, SlabFlags::NONE);
    let cache = slab
        .kmem_cache_create("trace_cache", 200, 64, SlabFlags::NONE, None)
        .unwrap();
    mm.tracer().set_enabled(
        EventId::system_mask("kmem") & !(EventId::MmPageAlloc.bit() | EventId::MmPageFree.bit()),
        true,
    );

    let a = slab.kmalloc(&mem, &mm, 40, GfpFlags::GFP_KERNEL).unwrap();
    let big = slab
        .kmalloc(&mem, &mm, 10_000, GfpFlags::GFP_KERNEL)
        .unwrap();
    slab.kfree(&mem, &mm, a).unwrap();
    slab.kfree(&mem, &mm, big).unwrap();
    let o = slab
        .kmem_cache_alloc(&mem, &mm, cache, GfpFlags::GFP_KERNEL)
        .unwrap();
    slab.kmem_cache_free(&mem, &mm, cache, o).unwrap();
    let evs: Vec<TraceEvent> = drain(&mm).iter().map(|r| r.event).collect();
    let gfp = GfpFlags::GFP_KERNEL;
    assert_eq!(
        evs,
        [
            TraceEvent::Kmalloc {
                call_site: 0,
                ptr: a,
                bytes_req: 40,
                bytes_alloc: 64,
                gfp
            },
            TraceEvent::Kmalloc {
                call_site: 0,
                ptr: big,
                bytes_req: 10_000,
                bytes_alloc: 16384,
                gfp
            },
            TraceEvent::Kfree {
                call_site: 0,
                ptr: a
            },
            TraceEvent::Kfree {
                call_site: 0,
                ptr: big
            },
            TraceEvent::KmemCacheAlloc {
                call_site: 0,
                ptr: o,
                bytes_req: 200,
                bytes_alloc: 256,
                gfp,
                accounted: false
            },
            TraceEvent::KmemCacheFree {
                call_site: 0,
                ptr: o,
                name: CacheName::new("trace_cache").unwrap()
            },
        ]
    );
    // A failed kmalloc is traced with ptr=0 (NULL), as Linux does.
    assert!(slab.kmalloc(&mem, &mm, 1 << 30, gfp).is_err());
}

#[test]
fn slab_growth_is_a_page_allocation_too() {
    let mm = manager();
    let nr = 32u64 << 8;
    let mem = ArenaMemory::new(Pfn(0), nr);
    let metas = Box::leak(vec![SlabMeta::EMPTY; nr as usize].into_boxed_slice());
    let mut slab = SlabAllocator::new(metas, SlabFlags::NONE);
    mm.tracer()
        .set_enabled(EventId::MmPageAlloc.bit() | EventId::MmPageFree.bit(), true);
    let a = slab.kmalloc(&mem, &mm, 40, GfpFlags::GFP_KERNEL).unwrap();
    let evs: Vec<TraceEvent> = drain(&mm).iter().map(|r| r.event).collect();
    let [
        TraceEvent::MmPageAlloc {
            pfn, order, gfp, ..
        },
    ] = evs[..]
    else {
        panic!("one slab page for kmalloc-64: {evs:?}");
    };
    assert_eq!((order, gfp), (0, GfpFlags::GFP_KERNEL));
    assert_eq!(pfn.0, (a - crate::types::PAGE_OFFSET) >> 12);
    slab.kfree(&mem, &mm, a).unwrap();
    slab.shrink_all(&mem, &mm);
    let evs: Vec<TraceEvent> = drain(&mm).iter().map(|r| r.event).collect();
    assert_eq!(evs, [TraceEvent::MmPageFree { pfn, order: 0 }]);
}

#[test]
fn subscribers_read_at_their_own_pace_and_are_told_what_they_lost() {
    let t = tracer_with(4);
    t.record(0, 0, ev(0));
    // Subscribers see what comes after they subscribed.
    let (mut fast, mut slow) = (t.subscribe_position(), t.subscribe_position());
    let mut out = [TraceRecord::EMPTY; 8];
    let ts = |out: &[TraceRecord], n| out[..n].iter().map(|r| r.ts_ns).collect::<Vec<_>>();
    for i in 1..4 {
        t.record(i, 0, ev(i));
    }
    let r = t.read_from(&mut fast, &mut out, None);
    assert_eq!((r.lost, ts(&out, r.nr)), (0, vec![1, 2, 3]));
    // trace_pipe consuming changes nothing for subscribers, and records
    // subscribers have read are not consumed for trace_pipe.
    assert_eq!(t.stats().entries, 4);
    let mut pipe = [TraceRecord::EMPTY; 8];
    assert_eq!(t.consume(&t.consume_limit(), &mut pipe).nr, 4);
    for i in 4..10 {
        t.record(i, 0, ev(i));
    }
    // Consumed records overwritten are no overrun; unconsumed ones are.
    assert_eq!(t.stats().overrun, 2, "4 and 5 went unconsumed");
    let r = t.read_from(&mut fast, &mut out, None);
    assert_eq!((r.lost, ts(&out, r.nr)), (2, vec![6, 7, 8, 9]), "4, 5 lost");
    let r = t.read_from(&mut slow, &mut out[..2], None);
    assert_eq!((r.lost, ts(&out, r.nr)), (5, vec![6, 7]), "1..=5 lost");
    let r = t.read_from(&mut slow, &mut out, None);
    assert_eq!((r.lost, ts(&out, r.nr)), (0, vec![8, 9]), "lost told once");
    assert_eq!(
        t.read_from(&mut slow, &mut out, None),
        SubscriberRead::default()
    );
    // A clear skips what it removed without calling it lost.
    t.record(10, 0, ev(10));
    t.clear();
    t.record(11, 0, ev(11));
    let r = t.read_from(&mut slow, &mut out, None);
    assert_eq!((r.lost, ts(&out, r.nr)), (0, vec![11]));
}
