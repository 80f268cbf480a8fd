//! Tasks and the OOM killer (cf. `mm/oom_kill.c`, `fs/proc/base.c`).
//!
//! Pagezone has no processes, but API.md lets a client create *tasks* that
//! own handles, so that an allocation which cannot be satisfied even after
//! reclaim has someone to kill. This module owns the task table (pids,
//! names, `oom_score_adj`, the pages charged to each task) and the OOM
//! killer's policy: `oom_badness()`, `/proc/PID/oom_score`,
//! `select_bad_process()`, and the report Linux prints when it kills. It
//! decides nothing about *when* to kill and frees nothing: the allocation
//! slow path calls [`select_bad_process`], writes [`write_oom_report`] to the
//! kernel log, frees the victim's handles (uncharging them here) and
//! [`TaskTable::remove`]s it.
//!
//! Everything is fixed-size (no heap in this crate): at most [`MAX_TASKS`]
//! tasks, names of at most 15 bytes as in `task->comm`.
//!
//! Log levels, for a caller that splits the report into dmesg records:
//! `dump_header()`'s first line is `KERN_WARNING`, the `Mem-Info:` block is
//! `printk()` at the default level (warning), the task dump and the
//! `oom-kill:` summary are `KERN_INFO`, the "Killed process" line is
//! `KERN_ERR` and "Out of memory and no killable processes..." is
//! `KERN_WARNING`.

use core::fmt::{self, Write};

use crate::gfp::GfpFlags;
use crate::procfs::NODE_ID;
use crate::types::{NR_ORDERS, Order, PAGE_SHIFT, PAGE_SIZE};
use crate::zone::{NR_ZONES, Watermarks, Zone, ZoneType};

/// `oom_score_adj` that exempts a task from the OOM killer
/// (cf. `include/uapi/linux/oom.h`).
pub const OOM_SCORE_ADJ_MIN: i16 = -1000;
/// Largest `oom_score_adj`: the task is killed first
/// (cf. `include/uapi/linux/oom.h`).
pub const OOM_SCORE_ADJ_MAX: i16 = 1000;
/// Size of `task->comm` including its NUL (cf. `TASK_COMM_LEN`); names hold
/// at most `TASK_COMM_LEN - 1` bytes.
pub const TASK_COMM_LEN: usize = 16;
/// Capacity of the [`TaskTable`].
pub const MAX_TASKS: usize = 64;

/// Swap entries per task: there is no swap (cf. `MM_SWAPENTS`).
const SWAPENTS: u64 = 0;
/// Page-table bytes per task: tasks have no page tables of their own
/// (cf. `mm_pgtables_bytes()`).
const PGTABLES_BYTES: u64 = 0;

/// Pages → kB (cf. `K()` in `mm/oom_kill.c` and `mm/page_alloc.c`).
const fn pages_to_kb(nr_pages: u64) -> u64 {
    nr_pages << (PAGE_SHIFT - 10)
}

// ----------------------------------------------------------------------
// Tasks
// ----------------------------------------------------------------------

/// A task id (cf. `pid_t`). Allocated from 1 upward and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(pub u32);

impl fmt::Display for Pid {
    /// The number, honouring width and alignment (`%7d` in the task dump).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A task's name (cf. `task->comm`): 1 to `TASK_COMM_LEN - 1` bytes of
/// printable ASCII.
///
/// Linux silently truncates a longer `comm`; the API refuses it instead so
/// a client never sees a name it did not send. Only printable ASCII is
/// accepted so the name can go into JSON, `/proc` text and the kernel log
/// without escaping.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskName {
    bytes: [u8; TASK_COMM_LEN - 1],
    len: u8,
}

impl TaskName {
    /// The name of an unused table slot; never handed out.
    const EMPTY: TaskName = TaskName {
        bytes: [0; TASK_COMM_LEN - 1],
        len: 0,
    };

    /// Checks and copies `name`.
    pub fn new(name: &str) -> Result<TaskName, TaskError> {
        let src = name.as_bytes();
        if src.is_empty() {
            return Err(TaskError::NameEmpty);
        }
        if src.len() > TASK_COMM_LEN - 1 {
            return Err(TaskError::NameTooLong { len: src.len() });
        }
        if let Some(&byte) = src.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
            return Err(TaskError::NameNotPrintable { byte });
        }
        let mut out = TaskName::EMPTY;
        out.bytes[..src.len()].copy_from_slice(src);
        // At most 15: checked above.
        out.len = src.len() as u8;
        Ok(out)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored, so this cannot fail.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// What kind of memory a charge is (cf. `enum mm_counter`).
///
/// API.md counts everything a task's handles hold towards its badness;
/// Linux's counters split it so the kill message can say what was freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmCounter {
    /// Pages of `pages` handles: anonymous memory (cf. `MM_ANONPAGES`).
    Anon = 0,
    /// Pages of `pagecache` handles: file-backed memory
    /// (cf. `MM_FILEPAGES`).
    File = 1,
    /// Pages of `slab` and `vmalloc` handles. Linux does not charge kernel
    /// memory to a task's mm; API.md does, so the OOM killer can reclaim
    /// it by killing the owner.
    Kernel = 2,
}

/// Number of [`MmCounter`] kinds.
const NR_MM_COUNTERS: usize = 3;

/// One task: a name, an `oom_score_adj` and the pages its handles hold.
///
/// Only a [`TaskTable`] creates and changes tasks; this is a read-only view
/// (and, copied, a snapshot of a victim).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    pid: Pid,
    comm: TaskName,
    oom_score_adj: i16,
    counters: [u64; NR_MM_COUNTERS],
    /// Pages of address space reserved but not yet backed (lazy areas
    /// not yet written): in `total_vm`, in no rss, freed by nothing.
    unpopulated: u64,
}

impl Task {
    /// An unused table slot.
    const EMPTY: Task = Task {
        pid: Pid(0),
        comm: TaskName::EMPTY,
        oom_score_adj: 0,
        counters: [0; NR_MM_COUNTERS],
        unpopulated: 0,
    };

    /// Its pid.
    pub const fn pid(&self) -> Pid {
        self.pid
    }

    /// Its name (cf. `task->comm`).
    pub const fn comm(&self) -> &TaskName {
        &self.comm
    }

    /// Its name as text.
    pub fn name(&self) -> &str {
        self.comm.as_str()
    }

    /// Its `oom_score_adj` (cf. `task->signal->oom_score_adj`).
    pub const fn oom_score_adj(&self) -> i16 {
        self.oom_score_adj
    }

    /// Pages charged of one kind (cf. `get_mm_counter()`).
    pub const fn counter(&self, counter: MmCounter) -> u64 {
        self.counters[counter as usize]
    }

    /// Resident pages: anonymous plus file-backed (cf. `get_mm_rss()`,
    /// without shmem, which does not exist here).
    pub const fn rss_pages(&self) -> u64 {
        self.counter(MmCounter::Anon) + self.counter(MmCounter::File)
    }

    /// Pages of the task's slab and vmalloc handles.
    pub const fn kernel_pages(&self) -> u64 {
        self.counter(MmCounter::Kernel)
    }

    /// Every page charged to the task: what killing it frees.
    pub const fn total_pages(&self) -> u64 {
        self.rss_pages() + self.kernel_pages()
    }

    /// `total_vm`: every page of the task's handles, backed or not — what
    /// it holds plus the unwritten part of its lazy areas (a task has no
    /// mappings beyond its handles). Larger than RAM is fine: that is
    /// overcommit.
    pub const fn total_vm(&self) -> u64 {
        self.total_pages() + self.unpopulated
    }

    /// [`oom_badness`] of this task.
    pub fn badness(&self, totalpages: u64) -> Option<i64> {
        oom_badness(self, totalpages)
    }

    /// [`proc_oom_score`] of this task.
    pub fn oom_score(&self, totalpages: u64) -> u64 {
        proc_oom_score(self, totalpages)
    }
}

/// Why a task operation was refused. A refused call changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskError {
    /// The name is empty.
    NameEmpty,
    /// The name is longer than `TASK_COMM_LEN - 1` bytes.
    NameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a byte outside printable ASCII.
    NameNotPrintable {
        /// The first such byte.
        byte: u8,
    },
    /// `oom_score_adj` outside `OOM_SCORE_ADJ_MIN..=OOM_SCORE_ADJ_MAX`
    /// (cf. `-EINVAL` from `oom_score_adj_write()`).
    OomScoreAdjRange {
        /// The value given.
        value: i32,
    },
    /// All [`MAX_TASKS`] slots are in use.
    TableFull,
    /// The pid counter reached `u32::MAX`.
    PidsExhausted,
    /// No live task has this pid (cf. `-ESRCH`).
    NoSuchTask {
        /// The pid given.
        pid: Pid,
    },
    /// An uncharge of more pages than are charged: the caller's accounting
    /// is wrong.
    Uncharge {
        /// The task.
        pid: Pid,
        /// The counter.
        counter: MmCounter,
        /// Pages charged.
        charged: u64,
        /// Pages asked to uncharge.
        nr_pages: u64,
    },
    /// A charge would overflow the counter.
    ChargeOverflow {
        /// The task.
        pid: Pid,
        /// The counter.
        counter: MmCounter,
    },
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::NameEmpty => write!(f, "task name is empty"),
            TaskError::NameTooLong { len } => write!(
                f,
                "task name is {len} bytes, at most {} allowed",
                TASK_COMM_LEN - 1
            ),
            TaskError::NameNotPrintable { byte } => {
                write!(f, "task name holds byte {byte:#04x}, not printable ASCII")
            }
            TaskError::OomScoreAdjRange { value } => write!(
                f,
                "oom_score_adj {value} outside {OOM_SCORE_ADJ_MIN}..{OOM_SCORE_ADJ_MAX}"
            ),
            TaskError::TableFull => write!(f, "task table full ({MAX_TASKS} tasks)"),
            TaskError::PidsExhausted => write!(f, "no pids left"),
            TaskError::NoSuchTask { pid } => write!(f, "no task with pid {pid}"),
            TaskError::Uncharge {
                pid,
                counter,
                charged,
                nr_pages,
            } => write!(
                f,
                "task {pid}: uncharging {nr_pages} {counter:?} pages, {charged} charged"
            ),
            TaskError::ChargeOverflow { pid, counter } => {
                write!(f, "task {pid}: {counter:?} page counter overflow")
            }
        }
    }
}

/// Checks a new `oom_score_adj` (cf. the range check in
/// `oom_score_adj_write()`).
fn check_oom_score_adj(value: i32) -> Result<i16, TaskError> {
    if (i32::from(OOM_SCORE_ADJ_MIN)..=i32::from(OOM_SCORE_ADJ_MAX)).contains(&value) {
        // In range, so it fits.
        Ok(value as i16)
    } else {
        Err(TaskError::OomScoreAdjRange { value })
    }
}

/// The live tasks, in creation order (which is pid order).
///
/// Creation order is what Linux's `for_each_process()` walks (new tasks go
/// to the tail of the `init_task.tasks` list), and both victim selection
/// and the task dump depend on it: ties go to the later task. Removing
/// shifts the tail down, which keeps the order at the cost of moving at
/// most [`MAX_TASKS`] entries.
#[derive(Clone, Debug)]
pub struct TaskTable {
    tasks: [Task; MAX_TASKS],
    nr_tasks: usize,
    /// Last pid handed out (cf. `pid_namespace::last_pid`); 0 before the
    /// first.
    last_pid: u32,
}

impl Default for TaskTable {
    fn default() -> Self {
        TaskTable::new()
    }
}

impl TaskTable {
    /// An empty table; the first task gets pid 1.
    pub const fn new() -> TaskTable {
        TaskTable {
            tasks: [Task::EMPTY; MAX_TASKS],
            nr_tasks: 0,
            last_pid: 0,
        }
    }

    /// Creates a task with no memory charged and returns its pid.
    pub fn create(&mut self, name: &str, oom_score_adj: i32) -> Result<Pid, TaskError> {
        let comm = TaskName::new(name)?;
        let oom_score_adj = check_oom_score_adj(oom_score_adj)?;
        if self.nr_tasks == MAX_TASKS {
            return Err(TaskError::TableFull);
        }
        let pid = Pid(self
            .last_pid
            .checked_add(1)
            .ok_or(TaskError::PidsExhausted)?);
        self.last_pid = pid.0;
        self.tasks[self.nr_tasks] = Task {
            pid,
            comm,
            oom_score_adj,
            counters: [0; NR_MM_COUNTERS],
            unpopulated: 0,
        };
        self.nr_tasks += 1;
        Ok(pid)
    }

    /// Slot of `pid`: pids increase along the table, so a binary search.
    fn index(&self, pid: Pid) -> Result<usize, TaskError> {
        self.tasks[..self.nr_tasks]
            .binary_search_by_key(&pid, |t| t.pid)
            .map_err(|_| TaskError::NoSuchTask { pid })
    }

    /// The task with this pid.
    pub fn get(&self, pid: Pid) -> Option<&Task> {
        self.index(pid).ok().map(|i| &self.tasks[i])
    }

    /// Removes a task and returns it. The caller frees its handles first
    /// (or after, uncharging nothing: the counters leave with the task).
    pub fn remove(&mut self, pid: Pid) -> Result<Task, TaskError> {
        let i = self.index(pid)?;
        let task = self.tasks[i];
        self.tasks.copy_within(i + 1..self.nr_tasks, i);
        self.nr_tasks -= 1;
        self.tasks[self.nr_tasks] = Task::EMPTY;
        Ok(task)
    }

    /// The live tasks in creation order (cf. `for_each_process()`).
    pub fn iter(&self) -> core::slice::Iter<'_, Task> {
        self.tasks[..self.nr_tasks].iter()
    }

    /// Number of live tasks.
    pub const fn len(&self) -> usize {
        self.nr_tasks
    }

    /// Whether there are no tasks.
    pub const fn is_empty(&self) -> bool {
        self.nr_tasks == 0
    }

    /// Sets a task's `oom_score_adj`, as writing `/proc/PID/oom_score_adj`
    /// does (cf. `oom_score_adj_write()`, `__set_oom_adj()`; there is no
    /// `CAP_SYS_RESOURCE` check: the API is the only user).
    pub fn set_oom_score_adj(&mut self, pid: Pid, value: i32) -> Result<(), TaskError> {
        let value = check_oom_score_adj(value)?;
        let i = self.index(pid)?;
        self.tasks[i].oom_score_adj = value;
        Ok(())
    }

    /// Charges `nr_pages` of one kind to a task (a handle it owns was
    /// created or grew; cf. `add_mm_counter()`).
    pub fn charge(&mut self, pid: Pid, counter: MmCounter, nr_pages: u64) -> Result<(), TaskError> {
        let i = self.index(pid)?;
        let slot = &mut self.tasks[i].counters[counter as usize];
        *slot = slot
            .checked_add(nr_pages)
            .ok_or(TaskError::ChargeOverflow { pid, counter })?;
        Ok(())
    }

    /// Sets the task's reserved-but-unbacked pages (see [`Task::total_vm`]).
    pub fn set_unpopulated(&mut self, pid: Pid, nr_pages: u64) -> Result<(), TaskError> {
        let i = self.index(pid)?;
        self.tasks[i].unpopulated = nr_pages;
        Ok(())
    }

    /// Uncharges `nr_pages` of one kind (a handle it owns was freed or
    /// shrank). Refuses to go below zero.
    pub fn uncharge(
        &mut self,
        pid: Pid,
        counter: MmCounter,
        nr_pages: u64,
    ) -> Result<(), TaskError> {
        let i = self.index(pid)?;
        let slot = &mut self.tasks[i].counters[counter as usize];
        *slot = slot.checked_sub(nr_pages).ok_or(TaskError::Uncharge {
            pid,
            counter,
            charged: *slot,
            nr_pages,
        })?;
        Ok(())
    }
}

// ----------------------------------------------------------------------
// Badness and victim selection
// ----------------------------------------------------------------------

/// `totalpages` for an allocation without cpuset or mempolicy limits
/// (cf. `constrained_alloc()` returning `CONSTRAINT_NONE`).
pub const fn oom_totalpages(totalram_pages: u64, total_swap_pages: u64) -> u64 {
    totalram_pages + total_swap_pages
}

/// How bad it would be *not* to kill `task`: its pages, shifted by
/// `oom_score_adj` in thousandths of `totalpages` (cf. `oom_badness()`).
///
/// `None` is Linux's `LONG_MIN`: the task is exempt
/// (`oom_score_adj == OOM_SCORE_ADJ_MIN`). The normalisation is Linux's
/// `adj *= totalpages / 1000`: `totalpages` is divided *before* the
/// multiplication, so on a machine with fewer than 1000 pages
/// `oom_score_adj` changes nothing. The baseline is `get_mm_rss() +
/// MM_SWAPENTS + mm_pgtables_bytes() / PAGE_SIZE` in Linux; here swap and
/// page tables are 0 and the task's slab/vmalloc pages are added
/// (API.md).
pub fn oom_badness(task: &Task, totalpages: u64) -> Option<i64> {
    if task.oom_score_adj == OOM_SCORE_ADJ_MIN {
        return None;
    }
    let pages = task
        .rss_pages()
        .saturating_add(SWAPENTS)
        .saturating_add(PGTABLES_BYTES / PAGE_SIZE)
        .saturating_add(task.kernel_pages());
    let points = i64::try_from(pages).unwrap_or(i64::MAX);
    let per_mille = i64::try_from(totalpages / 1000).unwrap_or(i64::MAX);
    let adj = i64::from(task.oom_score_adj).saturating_mul(per_mille);
    Some(points.saturating_add(adj))
}

/// The value of `/proc/PID/oom_score` (cf. `proc_oom_score()`):
/// `(1000 + badness * 1000 / totalpages) * 2 / 3`, and 0 for an exempt
/// task.
///
/// The `* 2 / 3` maps the historical `[0, 2000]` range down to
/// `[0, 1333]`; a task that holds nothing and has `oom_score_adj` 0 reads
/// 666. Linux's `totalpages` is never 0; a 0 here is taken as 1 (as
/// `constrained_alloc()` does for a memcg limit of 0) rather than divide by
/// zero.
pub fn proc_oom_score(task: &Task, totalpages: u64) -> u64 {
    let Some(badness) = oom_badness(task, totalpages) else {
        return 0;
    };
    let totalpages = i64::try_from(totalpages).unwrap_or(i64::MAX).max(1);
    let points = 1000i64
        .saturating_add(badness.saturating_mul(1000) / totalpages)
        .saturating_mul(2)
        / 3;
    // `badness >= -totalpages` (the adjustment is at most `totalpages`), so
    // `points >= 0` and Linux's conversion to `unsigned long` is exact.
    u64::try_from(points).unwrap_or(0)
}

/// The task the OOM killer picked, and its badness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomVictim {
    /// A copy of the task as it was when chosen.
    pub task: Task,
    /// Its [`oom_badness`] (cf. `oc->chosen_points`).
    pub points: i64,
}

/// The task with the highest [`oom_badness`], or `None` if every task is
/// exempt or there are none (cf. `select_bad_process()`,
/// `oom_evaluate_task()`).
///
/// Linux skips a task only if `points < chosen_points`, so on a tie the
/// task later in `for_each_process()` order — the newer one — replaces
/// the earlier. The parts of `oom_evaluate_task()` that have no
/// counterpart are left out: there are no unkillable kernel threads or
/// init, no cpusets, no `oom_task_origin()`, and a victim is killed
/// synchronously, so there is never a victim in flight to abort for.
pub fn select_bad_process(tasks: &TaskTable, totalpages: u64) -> Option<OomVictim> {
    let mut chosen: Option<OomVictim> = None;
    for task in tasks.iter() {
        let Some(points) = oom_badness(task, totalpages) else {
            continue;
        };
        if chosen.is_some_and(|c| points < c.points) {
            continue;
        }
        chosen = Some(OomVictim {
            task: *task,
            points,
        });
    }
    chosen
}

// ----------------------------------------------------------------------
// The report
// ----------------------------------------------------------------------

/// Who invoked the OOM killer and for what (the parts of `struct
/// oom_control` and `current` that `dump_header()` prints).
#[derive(Clone, Copy, Debug)]
pub struct OomContext<'a> {
    /// `current->comm`: the name of the task the allocation was for, or
    /// `"api"` for a request without a task.
    pub comm: &'a str,
    /// `current->signal->oom_score_adj` (0 for `"api"`).
    pub oom_score_adj: i16,
    /// The failed allocation's flags (`oc->gfp_mask`).
    pub gfp_mask: GfpFlags,
    /// The failed allocation's order (`oc->order`).
    pub order: Order,
}

/// One zone's numbers for the `Mem-Info:` block, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneReport {
    /// Which zone.
    pub zone: ZoneType,
    /// Free pages (cf. `NR_FREE_PAGES`).
    pub free_pages: u64,
    /// Watermarks.
    pub watermarks: Watermarks,
    /// RAM pages in the zone (cf. `present_pages`).
    pub present_pages: u64,
    /// Pages handed to the buddy allocator (cf. `managed_pages`).
    pub managed_pages: u64,
    /// `lowmem_reserve[]`.
    pub lowmem_reserve: [u64; NR_ZONES],
    /// Free blocks per order (cf. `free_area[order].nr_free`).
    pub nr_free: [u64; NR_ORDERS],
}

impl ZoneReport {
    /// The numbers of one zone, read under its lock by the caller.
    pub fn from_zone(zone: &Zone) -> ZoneReport {
        ZoneReport {
            zone: zone.ztype,
            free_pages: zone.free_pages,
            watermarks: zone.watermarks,
            present_pages: zone.present_pages,
            managed_pages: zone.managed_pages,
            lowmem_reserve: zone.lowmem_reserve,
            nr_free: zone.free_area_counts(),
        }
    }

    /// cf. `populated_zone()`.
    const fn populated(&self) -> bool {
        self.present_pages > 0
    }
}

/// The `Mem-Info:` block (cf. `__show_mem()` and `__show_free_areas()`),
/// for zones up to `max_zone` (`gfp_zone()` of the failed allocation, as
/// `dump_header()` passes it).
///
/// Kept from `__show_free_areas()`, in its order: per populated zone the
/// line with `free`, `boost` (always 0: no watermark boosting), `min`,
/// `low`, `high`, `present`, `managed`, then `lowmem_reserve[]`; then per
/// zone the free blocks by order. Left out are the global and per-node LRU
/// summaries and the per-zone LRU, pcp, mlock, bounce and CMA fields (not
/// tracked), `reserved_highatomic` (no highatomic reserve yet), hugetlb
/// lines and the pagecache total. Linux prints each non-zero count's
/// migrate types in parentheses (`2*8kB (UM)`); there are no migrate types
/// yet, so none are printed. The swap lines are Linux's
/// `show_swap_cache_info()` with no swap; the totals are `__show_mem()`'s
/// over all populated zones (with `CONFIG_MEMORY_FAILURE`, no CMA).
pub fn show_mem(w: &mut dyn Write, zones: &[ZoneReport], max_zone: ZoneType) -> fmt::Result {
    writeln!(w, "Mem-Info:")?;
    let shown = || {
        zones
            .iter()
            .filter(move |z| z.populated() && z.zone <= max_zone)
    };
    for z in shown() {
        writeln!(
            w,
            "Node {NODE_ID} {} free:{}kB boost:0kB min:{}kB low:{}kB high:{}kB \
             present:{}kB managed:{}kB",
            z.zone.name(),
            pages_to_kb(z.free_pages),
            pages_to_kb(z.watermarks.min),
            pages_to_kb(z.watermarks.low),
            pages_to_kb(z.watermarks.high),
            pages_to_kb(z.present_pages),
            pages_to_kb(z.managed_pages),
        )?;
        write!(w, "lowmem_reserve[]:")?;
        for r in z.lowmem_reserve {
            write!(w, " {r}")?;
        }
        writeln!(w)?;
    }
    for z in shown() {
        write!(w, "Node {NODE_ID} {}: ", z.zone.name())?;
        let mut total_pages = 0u64;
        for (order, &nr) in z.nr_free.iter().enumerate() {
            write!(w, "{nr}*{}kB ", pages_to_kb(1) << order)?;
            total_pages = total_pages.saturating_add(nr << order);
        }
        writeln!(w, "= {}kB", pages_to_kb(total_pages))?;
    }
    writeln!(w, "0 pages in swap cache")?;
    writeln!(w, "Free swap  = 0kB")?;
    writeln!(w, "Total swap = 0kB")?;
    let (mut total, mut reserved, mut highmem) = (0u64, 0u64, 0u64);
    for z in zones.iter().filter(|z| z.populated()) {
        total += z.present_pages;
        reserved += z.present_pages.saturating_sub(z.managed_pages);
        if z.zone.is_highmem() {
            highmem += z.present_pages;
        }
    }
    writeln!(w, "{total} pages RAM")?;
    writeln!(w, "{highmem} pages HighMem/MovableOnly")?;
    writeln!(w, "{reserved} pages reserved")?;
    writeln!(w, "0 pages hwpoisoned")
}

/// The task table dump (cf. `dump_tasks()`, `dump_task()`): every task,
/// exempt ones included, uid 0, tgid = pid.
pub fn dump_tasks(w: &mut dyn Write, tasks: &TaskTable) -> fmt::Result {
    writeln!(w, "Tasks state (memory values in pages):")?;
    writeln!(
        w,
        "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name"
    )?;
    for t in tasks.iter() {
        // "[%7d] %5d %5d %8lu %8lu %8ld %8lu         %5hd %s\n"
        writeln!(
            w,
            "[{:>7}] {:>5} {:>5} {:>8} {:>8} {:>8} {:>8}         {:>5} {}",
            t.pid,
            0,
            t.pid,
            t.total_vm(),
            t.rss_pages(),
            PGTABLES_BYTES,
            SWAPENTS,
            t.oom_score_adj,
            t.comm,
        )?;
    }
    Ok(())
}

/// `dump_header()`: who invoked the killer and why, `Mem-Info:`, the task
/// dump and, if a victim was chosen, the one-line summary
/// (cf. `dump_oom_summary()`).
///
/// Left out: `dump_stack()` (no unwinder), "COMPACTION is disabled!!!"
/// and the unreclaimable-slab dump. The summary is what Linux prints
/// without cpusets or memcg: constraint `CONSTRAINT_NONE` and no nodemask.
pub fn dump_header(
    w: &mut dyn Write,
    oc: &OomContext<'_>,
    zones: &[ZoneReport],
    tasks: &TaskTable,
    victim: Option<&Task>,
) -> fmt::Result {
    writeln!(
        w,
        "{} invoked oom-killer: gfp_mask={:#x}({}), order={}, oom_score_adj={}",
        oc.comm,
        oc.gfp_mask.bits(),
        oc.gfp_mask,
        oc.order,
        oc.oom_score_adj
    )?;
    show_mem(w, zones, oc.gfp_mask.gfp_zone())?;
    dump_tasks(w, tasks)?;
    if let Some(v) = victim {
        writeln!(
            w,
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),task={},pid={},uid=0",
            v.comm, v.pid
        )?;
    }
    Ok(())
}

/// The kill line (cf. the `pr_err()` in `__oom_kill_process()`, with
/// `message` "Out of memory"): sizes in kB, no shmem, no page tables,
/// uid 0.
pub fn oom_kill_message(w: &mut dyn Write, victim: &Task) -> fmt::Result {
    writeln!(
        w,
        "Out of memory: Killed process {} ({}) total-vm:{}kB, anon-rss:{}kB, \
         file-rss:{}kB, shmem-rss:0kB, UID:0 pgtables:{}kB oom_score_adj:{}",
        victim.pid,
        victim.comm,
        pages_to_kb(victim.total_vm()),
        pages_to_kb(victim.counter(MmCounter::Anon)),
        pages_to_kb(victim.counter(MmCounter::File)),
        PGTABLES_BYTES >> 10,
        victim.oom_score_adj,
    )
}

/// The whole report of one `out_of_memory()` call: [`dump_header`], then
/// the kill line, or — with no victim — "Out of memory and no killable
/// processes..." (where Linux panics; the caller fails the allocation).
///
/// Write it before freeing the victim's handles, so the task dump shows
/// what the victim held.
pub fn write_oom_report(
    w: &mut dyn Write,
    oc: &OomContext<'_>,
    zones: &[ZoneReport],
    tasks: &TaskTable,
    victim: Option<&Task>,
) -> fmt::Result {
    dump_header(w, oc, zones, tasks, victim)?;
    match victim {
        Some(v) => oom_kill_message(w, v),
        None => writeln!(w, "Out of memory and no killable processes..."),
    }
}

/// `/proc/PID/oom_score` (cf. `proc_oom_score()`: `"%lu\n"`).
pub fn write_proc_oom_score(w: &mut dyn Write, task: &Task, totalpages: u64) -> fmt::Result {
    writeln!(w, "{}", proc_oom_score(task, totalpages))
}

/// `/proc/PID/oom_score_adj` (cf. `oom_score_adj_read()`: `"%hd\n"`).
pub fn write_proc_oom_score_adj(w: &mut dyn Write, task: &Task) -> fmt::Result {
    writeln!(w, "{}", task.oom_score_adj)
}

#[cfg(test)]
mod tests;
