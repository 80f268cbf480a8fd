//! Host tests for the task table and the OOM killer: table limits and
//! errors, pid monotonicity, `oom_badness()` and `/proc/PID/oom_score`
//! against values worked out by hand from Linux 6.1's formulas, victim
//! selection (exempt tasks, ties), and a golden report for a small machine.

use std::string::String;

use super::*;

/// 1 GiB of RAM, no swap: `totalpages / 1000 == 262`.
const TOTAL_1G: u64 = 262_144;

fn order(o: u8) -> Order {
    Order::new(o).unwrap()
}

/// A table holding one task with `anon` pages and `adj`.
fn one(anon: u64, adj: i32) -> (TaskTable, Pid) {
    let mut t = TaskTable::new();
    let pid = t.create("t", adj).unwrap();
    t.charge(pid, MmCounter::Anon, anon).unwrap();
    (t, pid)
}

fn badness(anon: u64, adj: i32, totalpages: u64) -> Option<i64> {
    let (t, pid) = one(anon, adj);
    t.get(pid).unwrap().badness(totalpages)
}

fn score(anon: u64, adj: i32, totalpages: u64) -> u64 {
    let (t, pid) = one(anon, adj);
    t.get(pid).unwrap().oom_score(totalpages)
}

// ----------------------------------------------------------------------
// Task table
// ----------------------------------------------------------------------

#[test]
fn pids_start_at_one_and_are_never_reused() {
    let mut t = TaskTable::new();
    assert!(t.is_empty());
    let a = t.create("a", 0).unwrap();
    let b = t.create("b", 0).unwrap();
    assert_eq!((a, b), (Pid(1), Pid(2)));
    t.remove(b).unwrap();
    t.remove(a).unwrap();
    assert!(t.is_empty());
    // Freed pids are not handed out again.
    assert_eq!(t.create("c", 0), Ok(Pid(3)));
    // A refused create does not consume a pid.
    assert_eq!(t.create("", 0), Err(TaskError::NameEmpty));
    assert_eq!(
        t.create("d", 1001),
        Err(TaskError::OomScoreAdjRange { value: 1001 })
    );
    assert_eq!(t.create("d", 0), Ok(Pid(4)));
}

#[test]
fn table_full_then_room_again() {
    let mut t = TaskTable::new();
    for i in 0..MAX_TASKS {
        assert_eq!(t.create("w", 0), Ok(Pid(i as u32 + 1)));
    }
    assert_eq!(t.len(), MAX_TASKS);
    assert_eq!(t.create("w", 0), Err(TaskError::TableFull));
    t.remove(Pid(10)).unwrap();
    assert_eq!(t.create("w", 0), Ok(Pid(MAX_TASKS as u32 + 1)));
    assert_eq!(t.create("w", 0), Err(TaskError::TableFull));
}

#[test]
fn iteration_is_creation_order_after_removals() {
    let mut t = TaskTable::new();
    for name in ["a", "b", "c", "d"] {
        t.create(name, 0).unwrap();
    }
    t.remove(Pid(2)).unwrap();
    t.create("e", 0).unwrap();
    let names: Vec<&str> = t.iter().map(Task::name).collect();
    assert_eq!(names, ["a", "c", "d", "e"]);
    let pids: Vec<u32> = t.iter().map(|t| t.pid().0).collect();
    assert_eq!(pids, [1, 3, 4, 5]);
    assert!(t.get(Pid(2)).is_none());
    assert_eq!(t.get(Pid(4)).unwrap().name(), "d");
}

#[test]
fn names_follow_task_comm_rules() {
    let max = "abcdefghijklmno"; // 15 bytes = TASK_COMM_LEN - 1
    assert_eq!(TaskName::new(max).unwrap().as_str(), max);
    assert_eq!(
        TaskName::new("kworker/0:1 x~").unwrap().to_string(),
        "kworker/0:1 x~"
    );
    assert_eq!(TaskName::new(""), Err(TaskError::NameEmpty));
    assert_eq!(
        TaskName::new("abcdefghijklmnop"),
        Err(TaskError::NameTooLong { len: 16 })
    );
    assert_eq!(
        TaskName::new("tab\there"),
        Err(TaskError::NameNotPrintable { byte: b'\t' })
    );
    assert_eq!(
        TaskName::new("del\x7f"),
        Err(TaskError::NameNotPrintable { byte: 0x7f })
    );
    assert_eq!(
        TaskName::new("café"),
        Err(TaskError::NameNotPrintable { byte: 0xc3 })
    );
}

#[test]
fn oom_score_adj_range_is_linux_s() {
    let mut t = TaskTable::new();
    let pid = t.create("a", OOM_SCORE_ADJ_MIN.into()).unwrap();
    assert_eq!(t.get(pid).unwrap().oom_score_adj(), -1000);
    assert_eq!(t.set_oom_score_adj(pid, 1000), Ok(()));
    assert_eq!(t.get(pid).unwrap().oom_score_adj(), 1000);
    for bad in [-1001, 1001, i32::MIN, i32::MAX] {
        assert_eq!(
            t.set_oom_score_adj(pid, bad),
            Err(TaskError::OomScoreAdjRange { value: bad })
        );
        assert_eq!(
            t.create("b", bad),
            Err(TaskError::OomScoreAdjRange { value: bad })
        );
    }
    assert_eq!(t.get(pid).unwrap().oom_score_adj(), 1000);
    assert_eq!(
        t.set_oom_score_adj(Pid(99), 0),
        Err(TaskError::NoSuchTask { pid: Pid(99) })
    );
    assert_eq!(
        t.remove(Pid(99)),
        Err(TaskError::NoSuchTask { pid: Pid(99) })
    );
}

#[test]
fn charge_and_uncharge_per_counter() {
    let mut t = TaskTable::new();
    let pid = t.create("a", 0).unwrap();
    t.charge(pid, MmCounter::Anon, 10).unwrap();
    t.charge(pid, MmCounter::File, 3).unwrap();
    t.charge(pid, MmCounter::Kernel, 5).unwrap();
    let task = *t.get(pid).unwrap();
    assert_eq!(task.counter(MmCounter::Anon), 10);
    assert_eq!(task.rss_pages(), 13);
    assert_eq!(task.kernel_pages(), 5);
    assert_eq!(task.total_pages(), 18);

    assert_eq!(
        t.uncharge(pid, MmCounter::File, 4),
        Err(TaskError::Uncharge {
            pid,
            counter: MmCounter::File,
            charged: 3,
            nr_pages: 4
        })
    );
    assert_eq!(t.get(pid).unwrap().counter(MmCounter::File), 3);
    t.uncharge(pid, MmCounter::File, 3).unwrap();
    t.uncharge(pid, MmCounter::Anon, 10).unwrap();
    assert_eq!(t.get(pid).unwrap().total_pages(), 5);

    assert_eq!(
        t.charge(pid, MmCounter::Kernel, u64::MAX),
        Err(TaskError::ChargeOverflow {
            pid,
            counter: MmCounter::Kernel
        })
    );
    assert_eq!(t.get(pid).unwrap().kernel_pages(), 5);
    assert_eq!(
        t.charge(Pid(7), MmCounter::Anon, 1),
        Err(TaskError::NoSuchTask { pid: Pid(7) })
    );
    let gone = t.remove(pid).unwrap();
    assert_eq!(gone.kernel_pages(), 5);
}

#[test]
fn errors_display() {
    assert_eq!(
        TaskError::NameTooLong { len: 20 }.to_string(),
        "task name is 20 bytes, at most 15 allowed"
    );
    assert_eq!(
        TaskError::OomScoreAdjRange { value: 2000 }.to_string(),
        "oom_score_adj 2000 outside -1000..1000"
    );
    assert_eq!(
        TaskError::NoSuchTask { pid: Pid(3) }.to_string(),
        "no task with pid 3"
    );
}

// ----------------------------------------------------------------------
// oom_badness() and /proc/PID/oom_score
// ----------------------------------------------------------------------

#[test]
fn badness_matches_linux_arithmetic() {
    // points = rss + 0 + 0; adj *= totalpages / 1000 (= 262 here).
    assert_eq!(badness(1000, 0, TOTAL_1G), Some(1000));
    assert_eq!(badness(1000, 500, TOTAL_1G), Some(1000 + 500 * 262));
    assert_eq!(badness(1000, -500, TOTAL_1G), Some(-130_000));
    assert_eq!(badness(1000, 1000, TOTAL_1G), Some(263_000));
    assert_eq!(badness(1000, -999, TOTAL_1G), Some(1000 - 999 * 262));
    assert_eq!(badness(0, -1, TOTAL_1G), Some(-262));
    // OOM_SCORE_ADJ_MIN is LONG_MIN, however large the task.
    assert_eq!(badness(1 << 40, -1000, TOTAL_1G), None);
    // totalpages is divided first: below 1000 pages the adjustment is 0.
    assert_eq!(badness(10, 1000, 999), Some(10));
    assert_eq!(badness(10, -999, 999), Some(10));
    assert_eq!(badness(10, 1000, 1999), Some(1010));
}

#[test]
fn badness_counts_every_kind_of_page() {
    let mut t = TaskTable::new();
    let pid = t.create("a", 0).unwrap();
    t.charge(pid, MmCounter::Anon, 100).unwrap();
    t.charge(pid, MmCounter::File, 20).unwrap();
    t.charge(pid, MmCounter::Kernel, 3).unwrap();
    assert_eq!(oom_badness(t.get(pid).unwrap(), TOTAL_1G), Some(123));
}

#[test]
fn oom_score_matches_proc_oom_score() {
    // (1000 + badness * 1000 / totalpages) * 2 / 3, truncating as C does.
    assert_eq!(score(0, 0, TOTAL_1G), 666);
    assert_eq!(score(1000, 0, TOTAL_1G), 668); // 1000e3/262144 = 3
    assert_eq!(score(1000, 500, TOTAL_1G), 1002); // 132000e3/262144 = 503
    assert_eq!(score(1000, -500, TOTAL_1G), 336); // -130000e3/262144 = -495
    assert_eq!(score(1000, 1000, TOTAL_1G), 1335); // 263000e3/262144 = 1003
    assert_eq!(score(0, -999, TOTAL_1G), 1); // -261738e3/262144 = -998
    assert_eq!(score(TOTAL_1G, 0, TOTAL_1G), 1333);
    // LONG_MIN reads as 0.
    assert_eq!(score(TOTAL_1G, -1000, TOTAL_1G), 0);
    // A zero totalpages is taken as 1 rather than divide by zero.
    assert_eq!(score(0, 0, 0), 666);
}

#[test]
fn proc_text() {
    let (mut t, pid) = one(1000, 500);
    let mut s = String::new();
    write_proc_oom_score(&mut s, t.get(pid).unwrap(), TOTAL_1G).unwrap();
    write_proc_oom_score_adj(&mut s, t.get(pid).unwrap()).unwrap();
    t.set_oom_score_adj(pid, -1000).unwrap();
    write_proc_oom_score(&mut s, t.get(pid).unwrap(), TOTAL_1G).unwrap();
    write_proc_oom_score_adj(&mut s, t.get(pid).unwrap()).unwrap();
    assert_eq!(s, "1002\n500\n0\n-1000\n");
}

#[test]
fn totalpages_is_ram_plus_swap() {
    assert_eq!(oom_totalpages(TOTAL_1G, 0), TOTAL_1G);
    assert_eq!(oom_totalpages(100, 28), 128);
}

// ----------------------------------------------------------------------
// select_bad_process()
// ----------------------------------------------------------------------

/// Three tasks: an exempt one, an ordinary one and a preferred one.
fn three(exempt_anon: u64, normal_anon: u64, preferred_anon: u64) -> TaskTable {
    let mut t = TaskTable::new();
    for (name, adj, anon) in [
        ("sshd", -1000, exempt_anon),
        ("worker", 0, normal_anon),
        ("cache", 500, preferred_anon),
    ] {
        let pid = t.create(name, adj).unwrap();
        t.charge(pid, MmCounter::Anon, anon).unwrap();
    }
    t
}

fn victim(t: &TaskTable, totalpages: u64) -> Option<(u32, i64)> {
    select_bad_process(t, totalpages).map(|v| (v.task.pid().0, v.points))
}

#[test]
fn exempt_task_is_never_chosen_even_if_largest() {
    // cache: 10 + 500 * 262 = 131010 beats worker's 1000.
    let t = three(250_000, 1000, 10);
    assert_eq!(victim(&t, TOTAL_1G), Some((3, 131_010)));
    // A worker bigger than cache's adjusted score wins.
    let t = three(250_000, 200_000, 10);
    assert_eq!(victim(&t, TOTAL_1G), Some((2, 200_000)));
    // Only the exempt task holds memory: the others still rank above it.
    let t = three(250_000, 0, 0);
    assert_eq!(victim(&t, TOTAL_1G), Some((3, 131_000)));
}

#[test]
fn ties_go_to_the_later_task() {
    let mut t = TaskTable::new();
    for name in ["a", "b", "c"] {
        let pid = t.create(name, 0).unwrap();
        t.charge(pid, MmCounter::Anon, 7).unwrap();
    }
    // points == chosen_points replaces the choice (only `<` skips).
    assert_eq!(victim(&t, TOTAL_1G), Some((3, 7)));
    t.charge(Pid(1), MmCounter::Anon, 1).unwrap();
    assert_eq!(victim(&t, TOTAL_1G), Some((1, 8)));
}

#[test]
fn negative_badness_is_still_eligible() {
    let mut t = TaskTable::new();
    t.create("a", -999).unwrap();
    t.create("b", -500).unwrap();
    assert_eq!(victim(&t, TOTAL_1G), Some((2, -131_000)));
}

#[test]
fn no_eligible_task() {
    assert_eq!(victim(&TaskTable::new(), TOTAL_1G), None);
    let mut t = TaskTable::new();
    let pid = t.create("init", -1000).unwrap();
    t.charge(pid, MmCounter::Anon, 1000).unwrap();
    assert_eq!(victim(&t, TOTAL_1G), None);
}

#[test]
fn victim_is_a_snapshot() {
    let mut t = three(0, 200_000, 0);
    let v = select_bad_process(&t, TOTAL_1G).unwrap();
    t.remove(v.task.pid()).unwrap();
    assert_eq!(v.task.name(), "worker");
    assert_eq!(v.task.rss_pages(), 200_000);
}

// ----------------------------------------------------------------------
// The report
// ----------------------------------------------------------------------

/// A 80 MiB machine: DMA 16 MiB, DMA32 48 MiB, no Normal, HighMem 16 MiB.
fn small_machine() -> [ZoneReport; NR_ZONES] {
    let mut nr_free_dma = [0; NR_ORDERS];
    nr_free_dma[..3].copy_from_slice(&[4, 2, 1]);
    nr_free_dma[10] = 1;
    let mut nr_free_dma32 = [0; NR_ORDERS];
    nr_free_dma32[..2].copy_from_slice(&[10, 5]);
    let mut nr_free_high = [0; NR_ORDERS];
    nr_free_high[0] = 8;
    [
        ZoneReport {
            zone: ZoneType::Dma,
            free_pages: 1036,
            watermarks: Watermarks {
                min: 10,
                low: 12,
                high: 15,
            },
            present_pages: 4096,
            managed_pages: 3990,
            lowmem_reserve: [0, 46, 46, 46],
            nr_free: nr_free_dma,
        },
        ZoneReport {
            zone: ZoneType::Dma32,
            free_pages: 20,
            watermarks: Watermarks {
                min: 40,
                low: 50,
                high: 60,
            },
            present_pages: 12288,
            managed_pages: 12000,
            lowmem_reserve: [0; NR_ZONES],
            nr_free: nr_free_dma32,
        },
        ZoneReport {
            zone: ZoneType::Normal,
            free_pages: 0,
            watermarks: Watermarks::default(),
            present_pages: 0,
            managed_pages: 0,
            lowmem_reserve: [0; NR_ZONES],
            nr_free: [0; NR_ORDERS],
        },
        ZoneReport {
            zone: ZoneType::HighMem,
            free_pages: 8,
            watermarks: Watermarks {
                min: 4,
                low: 5,
                high: 6,
            },
            present_pages: 4096,
            managed_pages: 4096,
            lowmem_reserve: [0; NR_ZONES],
            nr_free: nr_free_high,
        },
    ]
}

fn small_tasks() -> TaskTable {
    let mut t = TaskTable::new();
    let sshd = t.create("sshd", -1000).unwrap();
    t.charge(sshd, MmCounter::Anon, 300).unwrap();
    let worker = t.create("worker", 0).unwrap();
    t.charge(worker, MmCounter::Anon, 1000).unwrap();
    t.charge(worker, MmCounter::File, 24).unwrap();
    t.charge(worker, MmCounter::Kernel, 40).unwrap();
    let hog = t.create("hog", 500).unwrap();
    t.charge(hog, MmCounter::Anon, 2000).unwrap();
    t
}

const GOLDEN: &str = "\
worker invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=2, oom_score_adj=0
Mem-Info:
Node 0 DMA free:4144kB boost:0kB min:40kB low:48kB high:60kB present:16384kB managed:15960kB
lowmem_reserve[]: 0 46 46 46
Node 0 DMA32 free:80kB boost:0kB min:160kB low:200kB high:240kB present:49152kB managed:48000kB
lowmem_reserve[]: 0 0 0 0
Node 0 DMA: 4*4kB 2*8kB 1*16kB 0*32kB 0*64kB 0*128kB 0*256kB 0*512kB 0*1024kB 0*2048kB 1*4096kB = 4144kB
Node 0 DMA32: 10*4kB 5*8kB 0*16kB 0*32kB 0*64kB 0*128kB 0*256kB 0*512kB 0*1024kB 0*2048kB 0*4096kB = 80kB
0 pages in swap cache
Free swap  = 0kB
Total swap = 0kB
20480 pages RAM
4096 pages HighMem/MovableOnly
394 pages reserved
0 pages hwpoisoned
Tasks state (memory values in pages):
[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name
[      1]     0     1      300      300        0        0         -1000 sshd
[      2]     0     2     1064     1024        0        0             0 worker
[      3]     0     3     2000     2000        0        0           500 hog
oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),task=hog,pid=3,uid=0
Out of memory: Killed process 3 (hog) total-vm:8000kB, anon-rss:8000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:0kB oom_score_adj:500
";

#[test]
fn golden_report_small_machine() {
    let zones = small_machine();
    let tasks = small_tasks();
    // totalram = managed pages = 20086, so adj is scaled by 20.
    let totalpages = oom_totalpages(zones.iter().map(|z| z.managed_pages).sum(), 0);
    let v = select_bad_process(&tasks, totalpages).unwrap();
    assert_eq!((v.task.name(), v.points), ("hog", 2000 + 500 * 20));
    let worker = tasks.get(Pid(2)).unwrap();
    let oc = OomContext {
        comm: worker.name(),
        oom_score_adj: worker.oom_score_adj(),
        gfp_mask: GfpFlags::GFP_KERNEL,
        order: order(2),
    };
    let mut s = String::new();
    write_oom_report(&mut s, &oc, &zones, &tasks, Some(&v.task)).unwrap();
    assert_eq!(s, GOLDEN, "\n{s}");
}

#[test]
fn report_without_victim_and_highmem_zones() {
    let zones = small_machine();
    let mut tasks = TaskTable::new();
    tasks.create("init", -1000).unwrap();
    assert!(select_bad_process(&tasks, 20086).is_none());
    let oc = OomContext {
        comm: "api",
        oom_score_adj: 0,
        gfp_mask: GfpFlags::GFP_HIGHUSER,
        order: order(0),
    };
    let mut s = String::new();
    write_oom_report(&mut s, &oc, &zones, &tasks, None).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[0].starts_with("api invoked oom-killer: gfp_mask=0x"));
    assert!(lines[0].ends_with(", order=0, oom_score_adj=0"));
    // GFP_HIGHUSER may use HighMem, so its zone is shown too.
    assert!(lines.contains(
        &"Node 0 HighMem free:32kB boost:0kB min:16kB low:20kB high:24kB \
          present:16384kB managed:16384kB"
    ));
    assert!(lines.contains(
        &"Node 0 HighMem: 8*4kB 0*8kB 0*16kB 0*32kB 0*64kB 0*128kB 0*256kB \
          0*512kB 0*1024kB 0*2048kB 0*4096kB = 32kB"
    ));
    assert!(!s.contains("Node 0 Normal"));
    assert!(!s.contains("oom-kill:"));
    assert_eq!(
        &lines[lines.len() - 2..],
        [
            "[      1]     0     1        0        0        0        0         -1000 init",
            "Out of memory and no killable processes...",
        ]
    );
}

#[test]
fn report_from_real_zones() {
    let mut z = Zone::new(ZoneType::Dma, crate::types::Pfn(0), crate::types::Pfn(4096));
    z.present_pages = 4096;
    z.managed_pages = 4000;
    z.free_pages = 3;
    z.free_area[0].nr_free = 1;
    z.free_area[1].nr_free = 1;
    let r = ZoneReport::from_zone(&z);
    assert_eq!(r.nr_free[..3], [1, 1, 0]);
    let mut s = String::new();
    show_mem(&mut s, &[r], ZoneType::Normal).unwrap();
    assert!(s.contains("Node 0 DMA: 1*4kB 1*8kB 0*16kB"));
    assert!(s.contains("= 12kB\n"));
    assert!(s.contains("\n96 pages reserved\n"));
}

#[test]
fn kill_message_splits_anon_and_file() {
    let tasks = small_tasks();
    let mut s = String::new();
    oom_kill_message(&mut s, tasks.get(Pid(2)).unwrap()).unwrap();
    assert_eq!(
        s,
        "Out of memory: Killed process 2 (worker) total-vm:4256kB, anon-rss:4000kB, \
         file-rss:96kB, shmem-rss:0kB, UID:0 pgtables:0kB oom_score_adj:0\n"
    );
}

#[test]
fn total_vm_counts_unbacked_lazy_pages_but_badness_does_not() {
    let mut tasks = small_tasks();
    let before = tasks.get(Pid(2)).unwrap().badness(1 << 20);
    // 768 MiB of lazy address space, none written.
    tasks.set_unpopulated(Pid(2), 196_608).unwrap();
    let t = tasks.get(Pid(2)).unwrap();
    assert_eq!(t.total_vm(), t.total_pages() + 196_608);
    assert_eq!(t.badness(1 << 20), before, "only what a kill frees counts");
    let mut s = String::new();
    oom_kill_message(&mut s, t).unwrap();
    assert!(
        s.contains(&format!("total-vm:{}kB,", 4256 + 196_608 * 4)),
        "{s}"
    );
    assert_eq!(
        tasks.set_unpopulated(Pid(99), 1),
        Err(TaskError::NoSuchTask { pid: Pid(99) })
    );
}
