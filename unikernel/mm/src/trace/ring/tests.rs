//! The per-CPU rings: records from several CPUs come out of every reader
//! (`trace`'s cursor, `trace_pipe`'s consume, subscribers) merged by
//! timestamp with their CPU; a full ring overwrites only its own oldest
//! records and every count (overrun, lost, dropped) is exact; and under
//! real threads standing for CPUs, with a consumer and a subscriber
//! reading meanwhile, every record is accounted for exactly once.

extern crate alloc;
extern crate std;

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use super::*;
use crate::gfp::GfpFlags;
use crate::manager::MemoryManager;
use crate::memblock::Memblock;
use crate::page::{OwnerTag, Page};
use crate::page_alloc::PageAlloc;
use crate::platform::sim::{SimPlatform, set_current_cpu};
use crate::trace::{EventId, TRACE_RECORD_BYTES, write_cpu_stats, write_header};
use crate::types::{Order, PhysAddr};
use crate::zone::ZoneLayout;
use std::format;

/// A tracer with a ring of `n` records on each of CPUs `0..cpus`.
fn tracer(cpus: usize, n: usize) -> Tracer<'static> {
    let t = Tracer::new(0);
    for cpu in 0..cpus {
        t.attach(
            cpu,
            Box::leak(vec![TraceRecord::EMPTY; n].into_boxed_slice()),
        );
    }
    t
}

fn ev(i: u64) -> TraceEvent {
    TraceEvent::MmVmscanDirectReclaimEnd { nr_reclaimed: i }
}

/// `(ts in µs, cpu)` of records.
fn ts_cpu(recs: &[TraceRecord]) -> Vec<(u64, u16)> {
    recs.iter().map(|r| (r.ts_ns / 1000, r.cpu)).collect()
}

fn read_all(t: &Tracer<'_>, mut c: TraceCursor, batch: usize) -> Vec<TraceRecord> {
    let mut all = Vec::new();
    let mut out = vec![TraceRecord::EMPTY; batch];
    loop {
        let n = t.read(&mut c, &mut out);
        if n == 0 {
            return all;
        }
        all.extend_from_slice(&out[..n]);
    }
}

/// Records at these `(µs, cpu)`, each on its CPU in this order.
fn record_at(t: &Tracer<'_>, at: &[(u64, usize)]) {
    for (i, &(us, cpu)) in at.iter().enumerate() {
        t.record(us * 1000, cpu, ev(i as u64));
    }
}

const THREE_CPUS: &[(u64, usize)] = &[
    (20, 1),
    (10, 0),
    (30, 2),
    (40, 0),
    (50, 1),
    (40, 2),
    (60, 1),
];
const MERGED: &[(u64, u16)] = &[
    (10, 0),
    (20, 1),
    (30, 2),
    (40, 0),
    (40, 2),
    (50, 1),
    (60, 1),
];

#[test]
fn trace_merges_every_cpu_by_timestamp_with_its_cpu_column() {
    let t = tracer(3, 8);
    record_at(&t, THREE_CPUS);
    // Batches of 2: the merge goes on across lock holds.
    let all = read_all(&t, t.cursor(), 2);
    assert_eq!(
        ts_cpu(&all),
        MERGED,
        "oldest first; a tie goes to the lower CPU"
    );
    let lines: Vec<String> = all.iter().map(|r| r.line(0).to_string()).collect();
    assert_eq!(
        lines[1],
        "          <idle>-0       [001] .....     0.000020: mm_vmscan_direct_reclaim_end: nr_reclaimed=0"
    );
    assert_eq!(
        lines[2],
        "          <idle>-0       [002] .....     0.000030: mm_vmscan_direct_reclaim_end: nr_reclaimed=2"
    );
    // The per-CPU file's reader sees its CPU alone.
    let cpu1 = read_all(&t, t.cpu_cursor(1), 8);
    assert_eq!(ts_cpu(&cpu1), [(20, 1), (50, 1), (60, 1)]);
    assert!(read_all(&t, t.cpu_cursor(5), 8).is_empty());
    // The header counts every CPU.
    let mut h = String::new();
    write_header(&mut h, &t.stats(), 3).unwrap();
    assert!(
        h.contains("# entries-in-buffer/entries-written: 7/7   #P:3\n"),
        "{h}"
    );
    assert_eq!(t.nr_rings(), 3);
}

#[test]
fn trace_pipe_consumes_in_timestamp_order_and_counts_reads_per_cpu() {
    let t = tracer(3, 8);
    record_at(&t, THREE_CPUS);
    let limit = t.consume_limit();
    // Recorded after the limit: left for the next read.
    t.record(70_000, 2, ev(99));
    let mut out = [TraceRecord::EMPTY; 3];
    let mut all = Vec::new();
    loop {
        let c = t.consume(&limit, &mut out);
        assert_eq!(c.total_lost(), 0);
        if c.nr == 0 {
            break;
        }
        all.extend_from_slice(&out[..c.nr]);
    }
    assert_eq!(ts_cpu(&all), MERGED);
    let reads: Vec<(u64, u64)> = (0..3)
        .map(|cpu| (t.cpu_stats(cpu).read, t.cpu_stats(cpu).entries))
        .collect();
    assert_eq!(reads, [(2, 0), (3, 0), (2, 1)]);
    let c = t.consume(&t.consume_limit(), &mut out);
    assert_eq!((c.nr, ts_cpu(&out[..1])), (1, vec![(70, 2)]));
}

#[test]
fn subscribers_get_merged_records_with_per_cpu_sequence_numbers() {
    let t = tracer(3, 8);
    t.record(1_000, 1, ev(0)); // before subscribing: not seen
    let mut pos = t.subscribe_position();
    record_at(&t, THREE_CPUS);
    let mut out = [TraceRecord::EMPTY; 4];
    let mut seqs = [0u64; 4];
    let r = t.read_from(&mut pos, &mut out, Some(&mut seqs));
    assert_eq!((r.nr, r.lost), (4, 0));
    assert_eq!(ts_cpu(&out), MERGED[..4]);
    // CPU 1's first record here is its second since boot.
    assert_eq!(seqs, [0, 1, 0, 1]);
    let r = t.read_from(&mut pos, &mut out, Some(&mut seqs));
    assert_eq!(r.nr, 3);
    assert_eq!(ts_cpu(&out[..3]), MERGED[4..]);
    assert_eq!(seqs[..3], [1, 2, 3]);
    assert_eq!(
        t.read_from(&mut pos, &mut out, None),
        SubscriberRead::default()
    );
}

#[test]
fn a_full_ring_overwrites_only_its_own_oldest_and_every_count_is_exact() {
    let t = tracer(2, 4);
    let mut sub = t.subscribe_position();
    // CPU 0 records 10 into its 4 slots, CPU 1 two.
    for i in 0..10 {
        t.record(i * 1000 + 100, 0, ev(i));
    }
    t.record(3_500, 1, ev(100));
    t.record(8_500, 1, ev(101));
    let (c0, c1) = (t.cpu_stats(0), t.cpu_stats(1));
    assert_eq!((c0.entries, c0.overrun, c0.capacity), (4, 6, 4));
    assert_eq!((c1.entries, c1.overrun, c1.capacity), (2, 0, 4));
    assert_eq!(c0.oldest_ts_ns, 6_100, "record 6 is CPU 0's oldest left");
    assert_eq!(c1.oldest_ts_ns, 3_500, "CPU 1 lost nothing");
    let mut h = String::new();
    write_header(&mut h, &t.stats(), 2).unwrap();
    assert!(h.contains("entries-written: 6/12   #P:2\n"), "{h}");
    let want = [(3, 1), (6, 0), (7, 0), (8, 0), (8, 1), (9, 0)];
    assert_eq!(ts_cpu(&read_all(&t, t.cursor(), 32)), want);
    // The subscriber lost CPU 0's six, exactly, and nothing of CPU 1's.
    let mut out = [TraceRecord::EMPTY; 16];
    let r = t.read_from(&mut sub, &mut out, None);
    assert_eq!((r.lost, ts_cpu(&out[..r.nr])), (6, want.to_vec()));
    // trace_pipe is told per CPU, once.
    let c = t.consume(&t.consume_limit(), &mut out);
    assert_eq!((c.nr, c.lost[0], c.lost[1]), (6, 6, 0));
    assert_eq!(t.consume(&t.consume_limit(), &mut out).total_lost(), 0);
}

#[test]
fn drops_are_counted_on_the_cpu_that_dropped() {
    let t = tracer(2, 4);
    {
        let _reader = t.hold_ring(1);
        t.record(1, 1, ev(1));
        t.record(2, 0, ev(2));
    }
    t.record(3, 7, ev(3)); // a CPU without a ring
    t.record(4, NR_TRACE_CPUS, ev(4)); // beyond every ring
    let d: Vec<u64> = (0..8).map(|c| t.cpu_stats(c).dropped).collect();
    assert_eq!(d, [0, 1, 0, 0, 0, 0, 0, 1]);
    assert_eq!((t.stats().dropped, t.stats().entries), (3, 1));
    t.clear();
    assert_eq!(t.stats().dropped, 0);
}

#[test]
fn a_clock_stepping_back_is_clamped_so_a_ring_stays_ordered() {
    let t = tracer(1, 4);
    t.record(5_000, 0, ev(0));
    t.record(4_000, 0, ev(1));
    assert_eq!(ts_cpu(&read_all(&t, t.cursor(), 4)), [(5, 0), (5, 0)]);
}

#[test]
fn per_cpu_stats_print_as_tracing_stats_read() {
    let t = tracer(2, 4);
    for i in 0..6 {
        t.record(1_234_567_890 + i, 1, ev(i));
    }
    let mut out = [TraceRecord::EMPTY; 1];
    t.consume(&t.consume_limit(), &mut out);
    let mut s = String::new();
    write_cpu_stats(&mut s, &t.cpu_stats(1), 2_000_000_499).unwrap();
    let bytes = 3 * TRACE_RECORD_BYTES;
    assert_eq!(
        s,
        format!(
            "entries: 3\noverrun: 2\ncommit overrun: 0\nbytes: {bytes}\n\
             oldest event ts:     1.234568\nnow ts:     2.000000\n\
             dropped events: 0\nread events: 1\n"
        )
    );
}

fn manager(cpus: usize, ring: usize) -> MemoryManager<'static, SimPlatform> {
    let ram = 64u64 << 20;
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), ram).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    let mem_map = Box::leak(vec![Page::new_reserved(); (ram >> 12) as usize].into_boxed_slice());
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(ram, ram)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    let mm = MemoryManager::new(pa, SimPlatform::new(ram >> 12));
    mm.set_nr_cpus(cpus);
    mm.attach_trace_buffers(
        Box::leak(vec![TraceRecord::EMPTY; cpus * ring].into_boxed_slice()),
        cpus,
    );
    mm
}

/// Four threads stand for four CPUs, each allocating and freeing pages
/// with `kmem:mm_page_{alloc,free}` on, while a `trace_pipe` consumer and
/// a subscriber read. Rings of `ring` records: small ones overwrite.
fn stress(ring: usize) -> [u64; 3] {
    const CPUS: usize = 4;
    const OPS: u64 = 20_000;
    let mm = manager(CPUS, ring);
    let t = mm.tracer();
    t.set_enabled(EventId::MmPageAlloc.bit() | EventId::MmPageFree.bit(), true);
    let done = AtomicBool::new(false);
    let mut consumed: Vec<TraceRecord> = Vec::new();
    let mut lost = [0u64; NR_TRACE_CPUS];
    let mut seen = [0u64; NR_TRACE_CPUS];
    let mut sub_lost = 0;
    // Subscribed before any CPU records.
    let mut pos = t.subscribe_position();
    // Everyone starts at once, so the readers really meet the writers.
    let start = std::sync::Barrier::new(CPUS + 1);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..CPUS)
            .map(|cpu| {
                let (mm, start) = (&mm, &start);
                s.spawn(move || {
                    set_current_cpu(cpu);
                    start.wait();
                    for _ in 0..OPS {
                        let p = mm
                            .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
                            .unwrap();
                        mm.free_pages(p, Order::ZERO).unwrap();
                    }
                })
            })
            .collect();
        let (done, consumed, lost, seen, sub_lost) =
            (&done, &mut consumed, &mut lost, &mut seen, &mut sub_lost);
        let start = &start;
        let reader = s.spawn(move || {
            start.wait();
            let mut out = [TraceRecord::EMPTY; 32];
            let mut sub = [TraceRecord::EMPTY; 32];
            loop {
                // Read once more after the writers are done.
                let finished = done.load(AtomicOrdering::Acquire);
                let c = t.consume(&t.consume_limit(), &mut out);
                for (l, n) in lost.iter_mut().zip(c.lost) {
                    *l += n;
                }
                consumed.extend_from_slice(&out[..c.nr]);
                let r = t.read_from(&mut pos, &mut sub, None);
                *sub_lost += r.lost;
                for rec in &sub[..r.nr] {
                    seen[rec.cpu as usize] += 1;
                }
                if finished && c.nr == 0 && r.nr == 0 {
                    break;
                }
                // A reader polls (trace_pipe every 100 ms in `net`); one
                // that spun would hold the rings most of the time and
                // every writer would drop.
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, AtomicOrdering::Release);
        reader.join().unwrap();
    });
    let stats: Vec<CpuTraceStats> = (0..CPUS).map(|c| t.cpu_stats(c)).collect();
    let mut per_cpu = [0u64; NR_TRACE_CPUS];
    for r in &consumed {
        per_cpu[r.cpu as usize] += 1;
    }
    for cpu in 0..CPUS {
        let want = 2 * OPS;
        assert_eq!(
            per_cpu[cpu] + lost[cpu] + stats[cpu].dropped,
            want,
            "CPU {cpu}: consumed {} + lost {} + dropped {}",
            per_cpu[cpu],
            lost[cpu],
            stats[cpu].dropped
        );
        assert_eq!(
            stats[cpu].overrun, lost[cpu],
            "CPU {cpu}: overrun is what was lost"
        );
        assert_eq!(stats[cpu].read, per_cpu[cpu]);
        assert_eq!(stats[cpu].entries, 0);
    }
    let total_seen: u64 = seen.iter().sum();
    let total_dropped: u64 = stats.iter().map(|s| s.dropped).sum();
    assert_eq!(total_seen + sub_lost + total_dropped, CPUS as u64 * 2 * OPS);
    // No record twice (the sim clock never repeats), and the consumed
    // stream is in timestamp order across rounds too.
    assert!(
        consumed.windows(2).all(|w| w[0].ts_ns < w[1].ts_ns),
        "merged stream out of order"
    );
    let total_lost: u64 = lost.iter().sum();
    // Each CPU's own records alternate alloc, free of the same frame
    // wherever nothing was dropped or lost between them.
    if total_lost + total_dropped == 0 {
        for cpu in 0..CPUS as u16 {
            let mine: Vec<&TraceRecord> = consumed.iter().filter(|r| r.cpu == cpu).collect();
            for pair in mine.chunks(2) {
                match (pair[0].event, pair[1].event) {
                    (
                        TraceEvent::MmPageAlloc { pfn: a, .. },
                        TraceEvent::MmPageFree { pfn: f, .. },
                    ) => {
                        assert_eq!(a, f)
                    }
                    other => panic!("CPU {cpu}: {other:?}"),
                }
            }
        }
    }
    [consumed.len() as u64, total_lost, total_dropped]
}

#[test]
fn four_cpus_tracing_at_once_lose_nothing_uncounted_with_room() {
    let [consumed, lost, _dropped] = stress(2 * 20_000 + 16);
    assert_eq!(lost, 0, "rings with room for everything overwrite nothing");
    assert!(consumed > 0);
}

#[test]
fn four_cpus_tracing_at_once_overwrite_and_count_exactly_in_small_rings() {
    let [_, lost, _] = stress(64);
    assert!(lost > 0, "64-record rings overwrite");
}
