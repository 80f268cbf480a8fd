//! Tasks and the OOM killer over HTTP (API.md v2, "Tasks and the OOM
//! killer"): `POST/GET /api/tasks`, `GET/DELETE /api/tasks/{pid}`,
//! `PUT /api/tasks/{pid}/oom_score_adj`, `/proc/{pid}/oom_score[_adj]`,
//! `GET /api/oom`, and `"task"`/`"oom"`/`"wait_ms"` on `POST /api/alloc`
//! (the sleeping itself is `wait.rs`'s).
//!
//! The mechanism is `mm::oom` (the task table, `oom_badness()`,
//! `select_bad_process()`, the report in Linux's words); this module owns
//! which handle belongs to which task and runs `out_of_memory()` in the
//! allocation slow path: a request whose GFP may reclaim directly
//! (`GFP_KERNEL`, `GFP_HIGHUSER…`; never `GFP_ATOMIC`/`GFP_NOWAIT`) that
//! the allocator refuses with ENOMEM makes the OOM killer pick the task
//! with the highest badness, print the report to the kernel log, free the
//! victim's handles (what `oom_reaper` does) and count `oom_kill`; then the
//! request is retried. With `"oom":false` (`__GFP_RETRY_MAYFAIL`) it is
//! not. There is nothing to reclaim yet, so direct reclaim is skipped —
//! the OOM killer comes straight after the watermark passes.
//!
//! A task's pages are counted from its live handles whenever they are
//! needed (a handle freed by any path simply stops counting), as anon
//! (`pages`, `dma`) or kernel (slab and vmalloc) memory.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use serde::{Deserialize, Serialize};

use mm::gfp::GfpFlags;
use mm::oom::{
    self, MmCounter, OOM_SCORE_ADJ_MAX, OOM_SCORE_ADJ_MIN, OomContext, Pid, TaskError, TaskTable,
    ZoneReport,
};
use mm::platform::Platform;
use mm::types::{Order, PAGE_SIZE};
use mm::vmstat::VmEvent;
use mm::zone::{NR_ZONES, ZoneType};

use super::Api;
use super::alloc_cmd::parse_body;
use super::dmesg::LogLevel;
use super::fixed_text::FixedText;
use super::wait::{MEMPOOL_DEFAULT_WAIT_MS, Queue, Retry, check_wait_ms, pool_key};
use crate::server::error::ApiError;
use crate::server::http::{Headers, Method, Request, Version};
use crate::server::response::{
    BodyWriter, CONTENT_TYPE_JSON, CONTENT_TYPE_TEXT, OutOfMemory, Response,
};

/// OOM reports `/api/oom` keeps (the newest).
pub const OOM_REPORTS_KEPT: usize = 8;
/// Kills one request may cause before it gives up.
const MAX_KILLS_PER_REQUEST: usize = 8;
/// Direct-reclaim rounds one request may run (cf. `MAX_RECLAIM_RETRIES`).
const MAX_RECLAIM_ROUNDS: usize = 16;

/// The tasks, the handles they own and the OOM killer's record.
///
/// The record holds no heap memory: an OOM kill happens exactly when
/// memory is gone, and anything allocated then would stay wherever the
/// heap found room (and keep `POST /api/reset` from finding the boot
/// state). A report's text is the kernel log records it was printed as,
/// read back from the log ring when `/api/oom` is asked.
#[derive(Default)]
pub(super) struct TaskState {
    table: TaskTable,
    /// Handle id → owning task.
    owners: BTreeMap<u64, Pid>,
    kills: u64,
    /// The newest reports, oldest first.
    reports: [Option<OomReport>; OOM_REPORTS_KEPT],
    next_report_seq: u64,
}

/// One OOM kill (or a refusal with no victim) as `/api/oom` shows it.
#[derive(Clone, Copy)]
struct OomReport {
    seq: u64,
    victim: Option<Victim>,
    gfp: GfpFlags,
    order: u8,
    /// The kernel log records `[first, end)` that hold its text.
    log: Option<(u64, u64)>,
}

#[derive(Clone, Copy)]
struct Victim {
    pid: u32,
    name: oom::TaskName,
    oom_score: u64,
    rss_pages: u64,
}

#[derive(Serialize)]
struct VictimJson<'v> {
    pid: u32,
    name: &'v str,
    oom_score: u64,
    rss_pages: u64,
}

#[derive(Serialize)]
struct TaskJson<'t> {
    pid: u32,
    name: &'t str,
    oom_score_adj: i16,
    rss_pages: u64,
    oom_score: u64,
}

#[derive(Deserialize)]
struct TaskBody<'b> {
    #[serde(borrow)]
    name: Option<&'b str>,
    oom_score_adj: Option<i64>,
}

#[derive(Deserialize)]
struct AdjBody {
    value: Option<i64>,
}

/// The fields of an alloc body this module reads (the rest are the
/// allocation's own).
#[derive(Deserialize)]
struct OomFields<'b> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'b str>,
    #[serde(borrow)]
    gfp: Option<&'b str>,
    #[serde(borrow)]
    pool: Option<&'b str>,
    order: Option<u64>,
    task: Option<u64>,
    oom: Option<bool>,
    wait_ms: Option<u64>,
}

/// What [`Api::alloc_plan`] read from an alloc body.
struct AllocPlan {
    task: Option<Pid>,
    gfp: GfpFlags,
    order: Order,
    may_reclaim: bool,
    may_oom: bool,
    max_reclaims: usize,
    /// Sleep on this queue, with this key, this long, if all else fails.
    sleep: Option<(Queue, u64, u64)>,
}

/// Whether a refusal is one that waiting can cure: out of memory, or the
/// API quota (both freed by the same frees).
fn may_sleep_on(e: &ApiError) -> bool {
    e.status == 507
}

fn task_error(e: TaskError) -> ApiError {
    let message = format!("{e}");
    match e {
        TaskError::NoSuchTask { .. } => ApiError::enoent(message),
        TaskError::TableFull | TaskError::PidsExhausted => ApiError::enomem(message),
        _ => ApiError::einval(message),
    }
}

fn parse_pid(s: &str) -> Result<Pid, ApiError> {
    s.parse::<u32>()
        .ok()
        .filter(|&p| p > 0 && !s.starts_with('+'))
        .map(Pid)
        .ok_or_else(|| ApiError::einval(format!("malformed pid '{s}'")))
}

fn adj_in_range(v: i64) -> Result<i32, ApiError> {
    i32::try_from(v)
        .ok()
        .filter(|v| (i32::from(OOM_SCORE_ADJ_MIN)..=i32::from(OOM_SCORE_ADJ_MAX)).contains(v))
        .ok_or_else(|| ApiError::einval(format!("oom_score_adj {v} is out of range -1000..=1000")))
}

impl<P: Platform> Api<'_, P> {
    /// The name of task `pid` (`/sys/kernel/debug/page_owner`'s comm), if
    /// it still exists.
    pub(super) fn task_comm(&self, pid: u32) -> Option<&str> {
        self.tasks.table.get(Pid(pid)).map(|t| t.name())
    }

    /// `totalpages` of `constrained_alloc()` for an unconstrained
    /// allocation: RAM (no swap).
    fn oom_totalpages(&self) -> u64 {
        oom::oom_totalpages(self.mm.lock().totalram_pages(), 0)
    }

    /// Pages a live handle holds and how Linux would count them, or
    /// `None` if `id` is no live handle.
    fn handle_pages(&self, id: u64) -> Option<(MmCounter, u64)> {
        if let Some(h) = self.handles.get(&id) {
            return Some((MmCounter::Anon, h.order.nr_pages()));
        }
        if let Some(h) = self.dma_handle_pages(id) {
            return Some((MmCounter::Anon, h));
        }
        if let Some(h) = self.pagecache.handles.get(&id) {
            return Some((MmCounter::File, h.resident_pages()));
        }
        if let Some(pages) = self.vm_handle_pages(id) {
            return Some(pages);
        }
        if let Some(h) = self.cma.handles.get(&id) {
            return Some((MmCounter::Kernel, h.count));
        }
        if let Some(h) = self.percpu.handles.get(&id) {
            // Per-CPU memory is the kernel's (cf. MM_KERNELPAGES): the
            // object's bytes in every unit, in whole pages.
            let units = self.percpu.alloc.nr_units() as u64;
            return Some((
                MmCounter::Kernel,
                (h.size * units).div_ceil(mm::types::PAGE_SIZE),
            ));
        }
        self.slab_handle_pages(id)
            .map(|pages| (MmCounter::Kernel, pages))
    }

    /// Recount every task's pages from its live handles, without
    /// allocating: this runs in the OOM path, when memory is gone, over
    /// possibly tens of thousands of handles. Handles freed since (by any
    /// path) stop counting; up to a batch of their stale entries is dropped
    /// each time.
    fn sync_task_counters(&mut self) {
        // Per task: pages by counter, then lazy pages not yet backed.
        let mut sums: [(Pid, [u64; 4]); oom::MAX_TASKS] = [(Pid(0), [0; 4]); oom::MAX_TASKS];
        let mut nr = 0;
        for t in self.tasks.table.iter().take(oom::MAX_TASKS) {
            sums[nr] = (t.pid(), [0; 4]);
            nr += 1;
        }
        let mut dead = [0u64; 64];
        let mut nr_dead = 0;
        for (&id, &pid) in &self.tasks.owners {
            match self.handle_pages(id) {
                Some((counter, pages)) => {
                    if let Some((_, c)) = sums[..nr].iter_mut().find(|(p, _)| *p == pid) {
                        c[counter as usize] += pages;
                        c[3] += self.unpopulated_pages(id);
                    }
                }
                None if nr_dead < dead.len() => {
                    dead[nr_dead] = id;
                    nr_dead += 1;
                }
                None => {}
            }
        }
        for id in &dead[..nr_dead] {
            self.tasks.owners.remove(id);
        }
        for &(pid, counts) in &sums[..nr] {
            for (i, counter) in [MmCounter::Anon, MmCounter::File, MmCounter::Kernel]
                .into_iter()
                .enumerate()
            {
                let held = self.tasks.table.get(pid).map_or(0, |t| t.counter(counter));
                let _ = self.tasks.table.uncharge(pid, counter, held);
                let _ = self.tasks.table.charge(pid, counter, counts[i]);
            }
            let _ = self.tasks.table.set_unpopulated(pid, counts[3]);
        }
    }

    fn task_json(&self, pid: Pid, totalpages: u64) -> Option<Response> {
        let t = self.tasks.table.get(pid)?;
        Some(Response::json(
            200,
            &TaskJson {
                pid: t.pid().0,
                name: t.name(),
                oom_score_adj: t.oom_score_adj(),
                rss_pages: t.total_pages(),
                oom_score: oom::proc_oom_score(t, totalpages),
            },
        ))
    }

    /// `POST /api/tasks`.
    pub(super) fn task_create(&mut self, req: &Request) -> Result<Response, ApiError> {
        super::alloc_cmd::check_fields(&req.body, &["name", "oom_score_adj"], "a task")?;
        let body: TaskBody<'_> = parse_body(&req.body)?;
        let name = body
            .name
            .ok_or_else(|| ApiError::einval("missing \"name\""))?;
        // The body's strings are not unescaped: a backslash is a JSON
        // escape, which a comm never needs (printable ASCII but '"', '\\').
        if name.contains('\\') {
            return Err(ApiError::einval(
                "a task name is printable ASCII without '\"' or '\\'",
            ));
        }
        let adj = adj_in_range(body.oom_score_adj.unwrap_or(0))?;
        let pid = self.tasks.table.create(name, adj).map_err(task_error)?;
        let total = self.oom_totalpages();
        let mut r = self
            .task_json(pid, total)
            .ok_or_else(|| ApiError::enoent("task vanished"))?;
        r.status = 201;
        Ok(r)
    }

    /// `GET /api/tasks`.
    pub(super) fn task_list(&mut self) -> Result<Response, ApiError> {
        self.sync_task_counters();
        let total = self.oom_totalpages();
        #[derive(Serialize)]
        struct Tasks<'t> {
            tasks: Vec<TaskJson<'t>>,
        }
        let tasks = self
            .tasks
            .table
            .iter()
            .map(|t| TaskJson {
                pid: t.pid().0,
                name: t.name(),
                oom_score_adj: t.oom_score_adj(),
                rss_pages: t.total_pages(),
                oom_score: oom::proc_oom_score(t, total),
            })
            .collect();
        Ok(Response::json(200, &Tasks { tasks }))
    }

    /// `GET /api/tasks/{pid}`.
    pub(super) fn task_get(&mut self, pid: &str) -> Result<Response, ApiError> {
        let pid = parse_pid(pid)?;
        self.sync_task_counters();
        let total = self.oom_totalpages();
        self.task_json(pid, total)
            .ok_or_else(|| ApiError::enoent(format!("no task with pid {}", pid.0)))
    }

    /// `DELETE /api/tasks/{pid}`: the task exits; its handles are freed.
    pub(super) fn task_delete(&mut self, pid: &str) -> Result<Response, ApiError> {
        let pid = parse_pid(pid)?;
        if self.tasks.table.get(pid).is_none() {
            return Err(ApiError::enoent(format!("no task with pid {}", pid.0)));
        }
        let freed = self.free_task_handles(pid);
        let _ = self.tasks.table.remove(pid);
        #[derive(Serialize)]
        struct Exited {
            pid: u32,
            freed: u64,
        }
        Ok(Response::json(200, &Exited { pid: pid.0, freed }))
    }

    /// `PUT /api/tasks/{pid}/oom_score_adj` `{"value":N}`.
    pub(super) fn task_set_adj(&mut self, pid: &str, req: &Request) -> Result<Response, ApiError> {
        let pid = parse_pid(pid)?;
        super::alloc_cmd::check_fields(&req.body, &["value"], "oom_score_adj")?;
        let body: AdjBody = parse_body(&req.body)?;
        let value = adj_in_range(
            body.value
                .ok_or_else(|| ApiError::einval("missing \"value\" (-1000..=1000)"))?,
        )?;
        self.tasks
            .table
            .set_oom_score_adj(pid, value)
            .map_err(task_error)?;
        self.task_get(&format!("{}", pid.0))
    }

    /// `GET /proc/{pid}/oom_score` and `/proc/{pid}/oom_score_adj`.
    pub(super) fn proc_oom(&mut self, pid: &str, adj: bool) -> Result<Response, ApiError> {
        let pid = parse_pid(pid)?;
        self.sync_task_counters();
        let total = self.oom_totalpages();
        let t = self
            .tasks
            .table
            .get(pid)
            .ok_or_else(|| ApiError::enoent(format!("no task with pid {}", pid.0)))?;
        let mut text = String::new();
        let _ = if adj {
            oom::write_proc_oom_score_adj(&mut text, t)
        } else {
            oom::write_proc_oom_score(&mut text, t, total)
        };
        Ok(Response::bytes(200, CONTENT_TYPE_TEXT, text.into_bytes()))
    }

    /// `GET /api/oom`.
    pub(super) fn oom_view(&self) -> Result<Response, ApiError> {
        let mut w = BodyWriter::new();
        write!(w, r#"{{"kills":{},"reports":["#, self.tasks.kills).map_err(|_| OutOfMemory)?;
        for (i, r) in self.tasks.reports.iter().flatten().enumerate() {
            if i > 0 {
                w.write_bytes(b",")?;
            }
            #[derive(Serialize)]
            struct Head<'v> {
                seq: u64,
                victim: Option<VictimJson<'v>>,
                gfp: super::views::GfpName,
                order: u8,
            }
            let head = w_json_prefix(&Head {
                seq: r.seq,
                victim: r.victim.as_ref().map(|v| VictimJson {
                    pid: v.pid,
                    name: v.name.as_str(),
                    oom_score: v.oom_score,
                    rss_pages: v.rss_pages,
                }),
                gfp: super::views::GfpName(r.gfp),
                order: r.order,
            })?;
            // `{…}` without its closing brace, then `"text"`.
            w.write_bytes(&head[..head.len() - 1])?;
            w.write_bytes(br#","text":"#)?;
            let mut text = String::new();
            if let Some((first, end)) = r.log {
                let mut seq = first;
                while seq < end {
                    let Some(rec) = self.system.log_record(seq) else {
                        break;
                    };
                    if rec.seq >= end {
                        break;
                    }
                    text.push_str(rec.text());
                    text.push('\n');
                    seq = rec.seq + 1;
                }
            }
            w.json(text.as_str())?;
            w.write_bytes(b"}")?;
        }
        w.write_bytes(b"]}")?;
        Ok(w.finish(200, CONTENT_TYPE_JSON)?)
    }

    /// Free every handle `pid` owns, through the ordinary free paths, a
    /// fixed-size batch at a time (no allocation that grows with the
    /// number of handles: this is the OOM killer's reaper). Returns how
    /// many were freed.
    fn free_task_handles(&mut self, pid: Pid) -> u64 {
        let mut freed = 0;
        loop {
            let mut batch = [0u64; 256];
            let mut n = 0;
            for (&id, _) in self.tasks.owners.iter().filter(|&(_, &p)| p == pid) {
                batch[n] = id;
                n += 1;
                if n == batch.len() {
                    break;
                }
            }
            if n == 0 {
                return freed;
            }
            for &id in &batch[..n] {
                self.tasks.owners.remove(&id);
                if self.free_handle(id) {
                    freed += 1;
                }
            }
        }
    }

    /// `out_of_memory()`: pick a victim, report, kill. `false` when no
    /// task can be killed (the report then says so and is kept too).
    fn out_of_memory(&mut self, gfp: GfpFlags, order: Order, invoker: Option<Pid>) -> bool {
        self.sync_task_counters();
        let totalpages = self.oom_totalpages();
        let victim = oom::select_bad_process(&self.tasks.table, totalpages);
        let zones: [ZoneReport; NR_ZONES] = {
            let pa = self.mm.lock();
            core::array::from_fn(|i| ZoneReport::from_zone(pa.zone(ZoneType::ALL[i])))
        };
        let (comm, adj) = invoker
            .and_then(|p| self.tasks.table.get(p))
            .map_or(("api", 0), |t| (t.name(), t.oom_score_adj()));
        // Printed line by line into the kernel log without the heap (this
        // runs when memory is gone); the ring is where the text lives on.
        let first = self.system.log_next_seq();
        {
            let mut printer = LinePrinter::new(self.system);
            let _ = oom::write_oom_report(
                &mut printer,
                &OomContext {
                    comm,
                    oom_score_adj: adj,
                    gfp_mask: gfp,
                    order,
                },
                &zones,
                &self.tasks.table,
                victim.as_ref().map(|v| &v.task),
            );
            printer.flush();
        }
        let log = first.zip(self.system.log_next_seq());
        let report = OomReport {
            seq: self.tasks.next_report_seq,
            victim: victim.as_ref().map(|v| Victim {
                pid: v.task.pid().0,
                name: *v.task.comm(),
                oom_score: oom::proc_oom_score(&v.task, totalpages),
                rss_pages: v.task.total_pages(),
            }),
            gfp,
            order: order.get(),
            log,
        };
        let reports = &mut self.tasks.reports;
        if reports.iter().all(Option::is_some) {
            reports.rotate_left(1);
            reports[OOM_REPORTS_KEPT - 1] = None;
        }
        if let Some(slot) = reports.iter_mut().find(|r| r.is_none()) {
            *slot = Some(report);
        }
        self.tasks.next_report_seq += 1;
        let Some(victim) = victim else {
            return false;
        };
        let pid = victim.task.pid();
        mm::trace_event!(self.mm, MarkVictim { pid: pid.0 as i32 });
        self.free_task_handles(pid);
        let _ = self.tasks.table.remove(pid);
        self.tasks.kills += 1;
        self.mm.lock().vm_events_mut().inc(VmEvent::OomKill);
        true
    }

    /// What an alloc body asks of the slow path, checked.
    fn alloc_plan(&self, req: &Request) -> Result<AllocPlan, ApiError> {
        let f: OomFields<'_> = parse_body(&req.body)?;
        let task = match f.task {
            None => None,
            Some(p) => {
                let pid = u32::try_from(p)
                    .ok()
                    .filter(|&p| p > 0)
                    .map(Pid)
                    .ok_or_else(|| ApiError::einval(format!("malformed task {p}")))?;
                if self.tasks.table.get(pid).is_none() {
                    return Err(ApiError::enoent(format!("no task with pid {p}")));
                }
                Some(pid)
            }
        };
        // The GFP the slow path looks at (the allocation parses it again
        // and answers for malformed ones).
        let gfp = f
            .gfp
            .and_then(|s| GfpFlags::parse(s).ok())
            .unwrap_or(GfpFlags::GFP_KERNEL);
        let order = match f.kind {
            Some("pages") => f
                .order
                .and_then(|o| u8::try_from(o).ok())
                .and_then(Order::new)
                .unwrap_or(Order::ZERO),
            _ => Order::ZERO,
        };
        let may_reclaim = gfp.contains(GfpFlags::DIRECT_RECLAIM);
        check_wait_ms(f.wait_ms, may_reclaim)?;
        // cf. mempool_alloc(): the pool's allocations are __GFP_NORETRY
        // (one round of reclaim, never the OOM killer), and with
        // __GFP_DIRECT_RECLAIM it sleeps on the pool instead of failing.
        let mempool = f.kind == Some("mempool");
        // cf. __alloc_pages_slowpath(): __GFP_NORETRY gives up after one
        // round of reclaim and never calls the OOM killer;
        // __GFP_RETRY_MAYFAIL (or "oom":false) reclaims but never kills.
        // With no task at all there is nothing to kill (and no report to
        // print for every refusal).
        let no_retry = gfp.contains(GfpFlags::NORETRY) || mempool;
        // cf. __alloc_pages_may_oom(): "The OOM killer will not help
        // higher order allocs" above PAGE_ALLOC_COSTLY_ORDER.
        let may_oom = may_reclaim
            && f.oom != Some(false)
            && order.index() <= mm::compaction::PAGE_ALLOC_COSTLY_ORDER
            && !no_retry
            && !gfp.contains(GfpFlags::RETRY_MAYFAIL)
            && !self.tasks.table.is_empty();
        let wait_ms = match (mempool, f.wait_ms) {
            (true, None) => MEMPOOL_DEFAULT_WAIT_MS,
            (_, w) => w.unwrap_or(0),
        };
        let sleep = (may_reclaim && wait_ms > 0).then(|| {
            if mempool {
                (
                    Queue::Mempool,
                    pool_key(f.pool.unwrap_or_default()),
                    wait_ms,
                )
            } else {
                (Queue::Pages, 0, wait_ms)
            }
        });
        Ok(AllocPlan {
            task,
            gfp,
            order,
            may_reclaim,
            may_oom,
            max_reclaims: if no_retry { 1 } else { MAX_RECLAIM_ROUNDS },
            sleep,
        })
    }

    /// The allocation itself, once (the fast path), recording its task.
    fn alloc_attempt(&mut self, req: &Request, task: Option<Pid>) -> Result<Response, ApiError> {
        let first_id = self.next_id;
        // page_owner's `current`: what this request allocates is for the
        // handle it will create, and for its task.
        let mm = self.mm;
        let _current = mm
            .page_owner()
            .set_current(first_id, task.map_or(0, |p| p.0));
        let r = self.check_kernel_reserve().and_then(|()| self.alloc(req))?;
        if let (Some(pid), true) = (task, self.next_id > first_id) {
            self.tasks.owners.insert(first_id, pid);
        }
        Ok(r)
    }

    /// `POST /api/alloc` with `"task"`, `"oom"` and `"wait_ms"`: the
    /// allocation itself, then (on ENOMEM, for a GFP that may reclaim)
    /// direct reclaim, the OOM killer and a retry, at most
    /// [`MAX_KILLS_PER_REQUEST`] times; then, if it may sleep, a wait
    /// (see `wait.rs`). A parked request's retries come here too.
    pub(super) fn alloc_for_task(&mut self, req: &Request) -> Result<Response, ApiError> {
        let Some(park) = req.park else {
            return self.alloc_slow_path(req);
        };
        let result = self.alloc_retry(req, park.token);
        if !matches!(&result, Ok(r) if r.pending.is_some()) {
            // Answered (or refused): off the queue (cf. finish_wait()).
            self.finish_wait(park.token, false);
        }
        result
    }

    /// A sleeping allocation's retry: asleep still, or one more attempt.
    fn alloc_retry(&mut self, req: &Request, token: u64) -> Result<Response, ApiError> {
        // Checked again: the task may have been killed meanwhile.
        let plan = self.alloc_plan(req)?;
        let wait_ms = plan.sleep.map_or(0, |(_, _, ms)| ms);
        let (timed_out, waited_ms) = match self.poll_wait(token, wait_ms)? {
            Retry::Sleep(pending) => return Ok(pending),
            Retry::Attempt {
                timed_out,
                waited_ms,
            } => (timed_out, waited_ms),
        };
        match self.alloc_attempt(req, plan.task) {
            Err(e) if may_sleep_on(&e) && !timed_out => self.rearm_wait(token),
            Err(mut e) if may_sleep_on(&e) => {
                self.finish_wait(token, true);
                let _ = write!(
                    e.message,
                    "; still failing after sleeping {waited_ms} ms (wait_ms {wait_ms})"
                );
                Err(e)
            }
            other => other,
        }
    }

    /// The first call: fast path, slow path, then maybe sleep.
    fn alloc_slow_path(&mut self, req: &Request) -> Result<Response, ApiError> {
        let plan = self.alloc_plan(req)?;
        let AllocPlan {
            task,
            gfp,
            order,
            may_reclaim,
            may_oom,
            max_reclaims,
            sleep,
        } = plan;
        let mut kills = 0;
        let mut reclaims = 0;
        let mut compacted = false;
        let error = loop {
            match self.alloc_attempt(req, task) {
                Ok(r) => return Ok(r),
                // cf. __alloc_pages_slowpath(): direct reclaim first (while
                // it makes progress), then the OOM killer.
                Err(e)
                    if e.status == 507
                        && e.code == "ENOMEM"
                        && may_reclaim
                        && reclaims < max_reclaims
                        && self.direct_reclaim(gfp, order) > 0 =>
                {
                    reclaims += 1;
                }
                // Then, for order > 0, direct compaction once, and a retry
                // if it made a block (cf. __alloc_pages_direct_compact()).
                Err(e)
                    if e.status == 507
                        && e.code == "ENOMEM"
                        && may_reclaim
                        && order.get() > 0
                        && !compacted
                        && {
                            compacted = true;
                            self.direct_compact(gfp, order)
                        } => {}
                Err(e)
                    if e.status == 507
                        && e.code == "ENOMEM"
                        && may_oom
                        && kills < MAX_KILLS_PER_REQUEST =>
                {
                    if !self.out_of_memory(gfp, order, task) {
                        let mut e = e;
                        let _ = write!(
                            e.message,
                            "; out of memory and no killable task (see GET /api/oom)"
                        );
                        break e;
                    }
                    kills += 1;
                    // The requesting task itself may have been the victim.
                    if let Some(pid) = task
                        && self.tasks.table.get(pid).is_none()
                    {
                        return Err(ApiError::enomem(format!(
                            "the OOM killer chose task {} itself",
                            pid.0
                        )));
                    }
                }
                Err(e) => break e,
            }
        };
        match sleep {
            Some((queue, key, wait_ms)) if may_sleep_on(&error) => {
                self.prepare_to_wait(queue, key, wait_ms, error)
            }
            _ => Err(error),
        }
    }

    /// `pagefault_out_of_memory()` for a page fault in handle `id` at
    /// `addr` that found no frame (`VM_FAULT_OOM`), on its `round`-th
    /// failure: direct reclaim while it frees anything, then the OOM
    /// killer, invoked by the handle's task. `Ok` means "touch the page
    /// again"; 507 when nothing can be freed or killed, when the rounds
    /// run out, or when the victim was the area's own task (in Linux the
    /// faulting process dies).
    pub(super) fn pagefault_out_of_memory(
        &mut self,
        id: u64,
        addr: u64,
        round: usize,
    ) -> Result<(), ApiError> {
        let gfp = mm::fault::LAZY_FAULT_GFP;
        let oom = |why: &str| ApiError::enomem(format!("page fault at {addr:#x}: {why}"));
        if round > MAX_RECLAIM_ROUNDS + MAX_KILLS_PER_REQUEST {
            return Err(oom(
                "out of memory, still, after reclaim and the OOM killer",
            ));
        }
        if round <= MAX_RECLAIM_ROUNDS && self.direct_reclaim(gfp, Order::ZERO) > 0 {
            return Ok(());
        }
        let task = self.tasks.owners.get(&id).copied();
        if !self.out_of_memory(gfp, Order::ZERO, task) {
            return Err(oom("out of memory and no killable task (see GET /api/oom)"));
        }
        if !self.vm.handles.contains_key(&id) {
            let pid = task.map_or(0, |p| p.0);
            return Err(oom(&format!(
                "the OOM killer killed task {pid}, which owned this area (see GET /api/oom)"
            )));
        }
        Ok(())
    }

    /// `POST /api/reset`'s task part: every task and OOM record goes.
    pub(super) fn reset_tasks(&mut self) {
        self.tasks.owners = BTreeMap::new();
        let pids: Vec<Pid> = self.tasks.table.iter().map(|t| t.pid()).collect();
        for pid in pids {
            let _ = self.tasks.table.remove(pid);
        }
    }
}

impl<P: Platform> Api<'_, P> {
    fn dma_handle_pages(&self, id: u64) -> Option<u64> {
        self.dma.handles.get(&id).map(|h| h.nr_pages)
    }

    /// Pages of a lazy vmalloc handle not yet written (0 for the rest).
    fn unpopulated_pages(&self, id: u64) -> u64 {
        self.vm
            .handles
            .get(&id)
            .filter(|h| h.lazy)
            .map_or(0, |h| h.nr_pages - h.resident)
    }

    /// A vmalloc handle's frames: kernel memory, except that a lazy area's
    /// written pages count as anonymous memory (its `MM_ANONPAGES`), which
    /// is what demand-zero memory is in Linux.
    fn vm_handle_pages(&self, id: u64) -> Option<(MmCounter, u64)> {
        self.vm
            .handles
            .get(&id)
            .filter(|h| h.kind == super::VmHandleKind::Vmalloc)
            .map(|h| {
                let counter = if h.lazy {
                    MmCounter::Anon
                } else {
                    MmCounter::Kernel
                };
                (counter, h.resident)
            })
    }

    fn slab_handle_pages(&self, id: u64) -> Option<u64> {
        self.slab
            .handles
            .get(&id)
            .map(|h| h.footprint.div_ceil(PAGE_SIZE))
    }

    /// `DELETE /api/alloc/{id}` of any handle type; `false` if there was
    /// no such handle (freed by another path already) or it was refused.
    fn free_handle(&mut self, id: u64) -> bool {
        let id = FixedText::<20>::of(&id);
        let req = Request {
            method: Method::Delete,
            path: String::new(),
            query: String::new(),
            version: Version::Http11,
            headers: Headers::default(),
            body: Vec::new(),
            park: None,
        };
        let freed = self.free_any(&req, id.as_str()).is_ok();
        if freed {
            // A task's exit and the OOM reaper free through here.
            self.wake_page_waiters();
        }
        freed
    }

    /// `DELETE /api/alloc/{id}` of any handle type.
    fn free_any(&mut self, req: &Request, id: &str) -> Result<Response, ApiError> {
        if self.is_pagecache_handle(id) {
            return self.pagecache_cmd(crate::server::router::RouteId::Free, id, req);
        }
        if self.is_slab_handle(id) {
            return self.slab_handle_cmd(crate::server::router::RouteId::Free, id, req);
        }
        if self.is_dma_handle(id) {
            return self.dma_handle_cmd(crate::server::router::RouteId::Free, id, req);
        }
        if self.is_cma_handle(id) {
            return self.cma_handle_cmd(crate::server::router::RouteId::Free, id, req);
        }
        if self.is_percpu_handle(id) {
            return self.percpu_handle_cmd(crate::server::router::RouteId::Free, id, req);
        }
        self.free(req, id, None)
    }
}

/// `value` as JSON, for splicing into a streamed object.
fn w_json_prefix<T: Serialize>(value: &T) -> Result<Vec<u8>, OutOfMemory> {
    crate::server::json::to_vec(value).map_err(|_| OutOfMemory)
}

/// `fmt::Write` onto the kernel log, one `printk` per line, through a
/// fixed line buffer (lines longer than it are cut, as printk cuts).
struct LinePrinter<'s> {
    system: &'s dyn super::System,
    line: FixedText<256>,
}

impl<'s> LinePrinter<'s> {
    fn new(system: &'s dyn super::System) -> Self {
        LinePrinter {
            system,
            line: FixedText::new(),
        }
    }

    fn flush(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = self.line.as_str();
        let level = if text.starts_with("Out of memory") {
            LogLevel::Err
        } else {
            LogLevel::Warning
        };
        self.system.printk(level, text);
        self.line.clear();
    }
}

impl core::fmt::Write for LinePrinter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for (i, part) in s.split('\n').enumerate() {
            if i > 0 {
                self.flush();
            }
            self.line.write_str(part)?;
        }
        Ok(())
    }
}
