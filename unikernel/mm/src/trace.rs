//! Tracepoints: Linux's `kmem:`, `vmscan:` and `oom:` events recorded into
//! bounded per-CPU ring buffers, printed as tracefs prints them (cf.
//! `include/trace/events/{kmem,vmscan,oom}.h`, `kernel/trace/ring_buffer.c`,
//! `kernel/trace/trace.c`, `kernel/trace/trace_output.c`).
//!
//! What it owns and why:
//! * **The enable mask** — one `AtomicU64`, a bit per [`EventId`], checked
//!   with one relaxed load before anything else ([`Tracer::enabled`]), so a
//!   disabled tracepoint costs a load and a branch, like a static key that
//!   is off. The [`crate::trace_event!`] macro is the hook: it builds the
//!   event only after the test.
//! * **The rings** ([`ring`]) — fixed-size [`TraceRecord`]s (event and its
//!   fields, a timestamp), one ring per CPU, each over a slice the owner
//!   lends once ([`Tracer::attach`]): nothing here touches the heap, so
//!   recording from the heap's own `kmalloc` cannot recurse, and a ring
//!   never grows under pressure (reset still equals boot). A writer records
//!   into the ring of the CPU it runs on; a full ring overwrites its own
//!   oldest record and counts it (`overrun`, cf.
//!   `ring_buffer_overrun_cpu()`), never another CPU's.
//! * **Never blocking a writer** — a tracepoint takes its CPU's ring with
//!   `try_lock`; if a reader (or an interrupted writer) holds it, the event
//!   is dropped and counted in that CPU's `dropped` instead of
//!   deadlocking, as `ring_buffer_lock_reserve()` refuses nested commits.
//!
//! Readers merge the rings by timestamp as Linux's
//! `trace_find_next_entry()` does (peek every CPU, take the oldest):
//! [`Tracer::cursor`] + [`Tracer::read`] iterate without consuming (the
//! `trace` file; [`Tracer::pause`] stops recording meanwhile, as
//! `tracing_stop()` does while `trace` is open), [`Tracer::consume`] pops
//! (`trace_pipe`), [`Tracer::read_from`] serves subscribers with per-CPU
//! positions. All copy records out in batches, so formatting — which may
//! allocate in the caller — happens with the rings unlocked.
//!
//! Output: [`write_header`] is the `trace` file's header and
//! [`TraceRecord::line`] one line. There are no threads and no kallsyms, so
//! every line's task is `<idle>-0` (what Linux prints for pid 0: all work
//! here runs in the one kernel context, between interrupts), its CPU column
//! the CPU that recorded it, its flags `.....`, and `call_site=` is `0x0`
//! (`%pS` of an unknown address). `%p` prints as with `no_hash_pointers`
//! (16 hex digits), so `page=` and `ptr=` are real addresses: `page=` is
//! the frame's descriptor in `mem_map`.

#[cfg(test)]
mod tests;

pub mod ring;

use core::fmt;

use crate::gfp::GfpFlags;
use crate::slab::CacheName;
use crate::types::Pfn;

pub use ring::{
    ConsumeLimit, Consumed, CpuTraceStats, NR_TRACE_CPUS, PauseGuard, SubscriberRead,
    TRACE_BUF_ENTRIES, TraceCursor, TracePos, TraceStats, Tracer,
};
/// `sizeof(struct page)` here, for `page=%p`.
const PAGE_DESC_BYTES: u64 = core::mem::size_of::<crate::page::Page>() as u64;

macro_rules! events {
    ($( $id:ident = $system:literal : $name:literal, )*) => {
        /// A tracepoint (cf. `struct trace_event_call`). Variant names are
        /// those of [`TraceEvent`], which carries the fields.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum EventId { $( $id, )* }

        impl EventId {
            /// Every event, in `available_events` order.
            pub const ALL: &'static [EventId] = &[ $( EventId::$id, )* ];

            /// The trace system (`kmem`, `vmscan`, `oom`).
            pub const fn system(self) -> &'static str {
                match self { $( EventId::$id => $system, )* }
            }

            /// The event name (`mm_page_alloc`, …).
            pub const fn name(self) -> &'static str {
                match self { $( EventId::$id => $name, )* }
            }
        }
    };
}

events! {
    MmPageAlloc = "kmem": "mm_page_alloc",
    MmPageFree = "kmem": "mm_page_free",
    Kmalloc = "kmem": "kmalloc",
    Kfree = "kmem": "kfree",
    KmemCacheAlloc = "kmem": "kmem_cache_alloc",
    KmemCacheFree = "kmem": "kmem_cache_free",
    MmVmscanKswapdSleep = "vmscan": "mm_vmscan_kswapd_sleep",
    MmVmscanKswapdWake = "vmscan": "mm_vmscan_kswapd_wake",
    MmVmscanDirectReclaimBegin = "vmscan": "mm_vmscan_direct_reclaim_begin",
    MmVmscanDirectReclaimEnd = "vmscan": "mm_vmscan_direct_reclaim_end",
    MarkVictim = "oom": "mark_victim",
    MmPageAllocExtfrag = "kmem": "mm_page_alloc_extfrag",
    MmCompactionBegin = "compaction": "mm_compaction_begin",
    MmCompactionEnd = "compaction": "mm_compaction_end",
}

impl EventId {
    /// Its bit in the enable mask.
    #[inline(always)]
    pub const fn bit(self) -> u64 {
        1 << self as u8
    }

    /// `system:name`'s event, as tracefs paths name it.
    pub fn lookup(system: &str, name: &str) -> Option<EventId> {
        EventId::ALL
            .iter()
            .copied()
            .find(|e| e.system() == system && e.name() == name)
    }

    /// Whether `system` has any event here.
    pub fn is_system(system: &str) -> bool {
        EventId::ALL.iter().any(|e| e.system() == system)
    }

    /// The mask of every event of `system` (0 if none).
    pub fn system_mask(system: &str) -> u64 {
        EventId::ALL
            .iter()
            .filter(|e| e.system() == system)
            .fold(0, |m, e| m | e.bit())
    }
}

/// One event with the fields its `TP_STRUCT__entry` keeps. Addresses are
/// `u64`; `call_site` is what `%pS` would print (0 here: no return
/// addresses, no kallsyms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// `kmem:mm_page_alloc` (`__alloc_pages()`).
    MmPageAlloc {
        pfn: Pfn,
        order: u8,
        migratetype: u8,
        gfp: GfpFlags,
    },
    /// `kmem:mm_page_free` (`__free_pages()`).
    MmPageFree { pfn: Pfn, order: u8 },
    /// `kmem:kmalloc` (also `kmalloc_large`; `ptr` 0 when it failed).
    Kmalloc {
        call_site: u64,
        ptr: u64,
        bytes_req: u64,
        bytes_alloc: u64,
        gfp: GfpFlags,
    },
    /// `kmem:kfree` (traced before the `ZERO_OR_NULL_PTR` test, as Linux).
    Kfree { call_site: u64, ptr: u64 },
    /// `kmem:kmem_cache_alloc` (`bytes_req` = `object_size`, `bytes_alloc`
    /// = `size`; `accounted` = `__GFP_ACCOUNT` or `SLAB_ACCOUNT`).
    KmemCacheAlloc {
        call_site: u64,
        ptr: u64,
        bytes_req: u64,
        bytes_alloc: u64,
        gfp: GfpFlags,
        accounted: bool,
    },
    /// `kmem:kmem_cache_free`.
    KmemCacheFree {
        call_site: u64,
        ptr: u64,
        name: CacheName,
    },
    /// `vmscan:mm_vmscan_kswapd_sleep`.
    MmVmscanKswapdSleep { nid: i32 },
    /// `vmscan:mm_vmscan_kswapd_wake` (`zid` is recorded, not printed).
    MmVmscanKswapdWake { nid: i32, zid: i32, order: i32 },
    /// `vmscan:mm_vmscan_direct_reclaim_begin`.
    MmVmscanDirectReclaimBegin { order: i32, gfp: GfpFlags },
    /// `vmscan:mm_vmscan_direct_reclaim_end`.
    MmVmscanDirectReclaimEnd { nr_reclaimed: u64 },
    /// `oom:mark_victim`.
    MarkVictim { pid: i32 },
    /// `kmem:mm_page_alloc_extfrag` (`__rmqueue_fallback()`): a block of
    /// another migrate type served the allocation.
    MmPageAllocExtfrag {
        pfn: Pfn,
        alloc_order: u8,
        fallback_order: u8,
        alloc_migratetype: u8,
        fallback_migratetype: u8,
        change_ownership: bool,
    },
    /// `compaction:mm_compaction_begin` (`compact_zone()`).
    MmCompactionBegin {
        zone_start: u64,
        migrate_pfn: u64,
        free_pfn: u64,
        zone_end: u64,
        sync: bool,
    },
    /// `compaction:mm_compaction_end`.
    MmCompactionEnd {
        zone_start: u64,
        migrate_pfn: u64,
        free_pfn: u64,
        zone_end: u64,
        sync: bool,
        status: &'static str,
    },
}

impl TraceEvent {
    /// Which tracepoint this is.
    pub const fn id(&self) -> EventId {
        match self {
            TraceEvent::MmPageAlloc { .. } => EventId::MmPageAlloc,
            TraceEvent::MmPageFree { .. } => EventId::MmPageFree,
            TraceEvent::Kmalloc { .. } => EventId::Kmalloc,
            TraceEvent::Kfree { .. } => EventId::Kfree,
            TraceEvent::KmemCacheAlloc { .. } => EventId::KmemCacheAlloc,
            TraceEvent::KmemCacheFree { .. } => EventId::KmemCacheFree,
            TraceEvent::MmVmscanKswapdSleep { .. } => EventId::MmVmscanKswapdSleep,
            TraceEvent::MmVmscanKswapdWake { .. } => EventId::MmVmscanKswapdWake,
            TraceEvent::MmVmscanDirectReclaimBegin { .. } => EventId::MmVmscanDirectReclaimBegin,
            TraceEvent::MmVmscanDirectReclaimEnd { .. } => EventId::MmVmscanDirectReclaimEnd,
            TraceEvent::MarkVictim { .. } => EventId::MarkVictim,
            TraceEvent::MmPageAllocExtfrag { .. } => EventId::MmPageAllocExtfrag,
            TraceEvent::MmCompactionBegin { .. } => EventId::MmCompactionBegin,
            TraceEvent::MmCompactionEnd { .. } => EventId::MmCompactionEnd,
        }
    }
}

/// One ring entry (cf. `struct ring_buffer_event` + the event's entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceRecord {
    /// Nanoseconds of the platform clock ([`crate::platform::Platform::now_ns`]).
    pub ts_ns: u64,
    /// CPU that recorded it.
    pub cpu: u16,
    pub event: TraceEvent,
}

impl TraceRecord {
    /// A filler for the slices lent to [`Tracer::attach`] and for readers'
    /// batches.
    pub const EMPTY: TraceRecord = TraceRecord {
        ts_ns: 0,
        cpu: 0,
        event: TraceEvent::MarkVictim { pid: 0 },
    };

    /// The line the `trace` file prints for it (without the newline);
    /// `page_base` is [`Tracer::page_base`].
    pub fn line(&self, page_base: u64) -> TraceLine<'_> {
        TraceLine {
            rec: self,
            page_base,
        }
    }
}

/// [`TraceRecord::line`]'s `Display`.
pub struct TraceLine<'r> {
    rec: &'r TraceRecord,
    page_base: u64,
}

impl fmt::Display for TraceLine<'_> {
    /// cf. `trace_print_context()` (`%16s-%-7d [%03d] ` + irq flags +
    /// ` %5lu.%06lu: `), `trace_raw_output_prep()` (`name: `) and the
    /// event's `TP_printk`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.rec;
        // ns2usecs() rounds to the nearest microsecond.
        let us = r.ts_ns.saturating_add(500) / 1000;
        write!(
            f,
            "{:>16}-{:<7} [{:03}] ..... {:5}.{:06}: {}: ",
            "<idle>",
            0,
            r.cpu,
            us / 1_000_000,
            us % 1_000_000,
            r.event.id().name()
        )?;
        let page = |pfn: Pfn| {
            self.page_base
                .wrapping_add(pfn.0.wrapping_mul(PAGE_DESC_BYTES))
        };
        let tf = |b: bool| if b { "true" } else { "false" };
        match r.event {
            TraceEvent::MmPageAlloc {
                pfn,
                order,
                migratetype,
                gfp,
            } => write!(
                f,
                "page={:016x} pfn={:#x} order={order} migratetype={migratetype} gfp_flags={}",
                page(pfn),
                pfn.0,
                ShowGfpFlags(gfp)
            ),
            TraceEvent::MmPageFree { pfn, order } => {
                write!(f, "page={:016x} pfn={:#x} order={order}", page(pfn), pfn.0)
            }
            TraceEvent::Kmalloc {
                call_site,
                ptr,
                bytes_req,
                bytes_alloc,
                gfp,
            } => write!(
                f,
                "call_site={call_site:#x} ptr={ptr:016x} bytes_req={bytes_req} bytes_alloc={bytes_alloc} gfp_flags={} node=-1 accounted={}",
                ShowGfpFlags(gfp),
                tf(gfp.contains(GfpFlags::ACCOUNT))
            ),
            TraceEvent::Kfree { call_site, ptr } => {
                write!(f, "call_site={call_site:#x} ptr={ptr:016x}")
            }
            TraceEvent::KmemCacheAlloc {
                call_site,
                ptr,
                bytes_req,
                bytes_alloc,
                gfp,
                accounted,
            } => write!(
                f,
                "call_site={call_site:#x} ptr={ptr:016x} bytes_req={bytes_req} bytes_alloc={bytes_alloc} gfp_flags={} node=-1 accounted={}",
                ShowGfpFlags(gfp),
                tf(accounted)
            ),
            TraceEvent::KmemCacheFree {
                call_site,
                ptr,
                name,
            } => write!(
                f,
                "call_site={call_site:#x} ptr={ptr:016x} name={}",
                name.as_str()
            ),
            TraceEvent::MmVmscanKswapdSleep { nid } => write!(f, "nid={nid}"),
            TraceEvent::MmVmscanKswapdWake { nid, order, .. } => {
                write!(f, "nid={nid} order={order}")
            }
            TraceEvent::MmVmscanDirectReclaimBegin { order, gfp } => {
                write!(f, "order={order} gfp_flags={}", ShowGfpFlags(gfp))
            }
            TraceEvent::MmVmscanDirectReclaimEnd { nr_reclaimed } => {
                write!(f, "nr_reclaimed={nr_reclaimed}")
            }
            TraceEvent::MarkVictim { pid } => write!(f, "pid={pid}"),
            TraceEvent::MmPageAllocExtfrag {
                pfn,
                alloc_order,
                fallback_order,
                alloc_migratetype,
                fallback_migratetype,
                change_ownership,
            } => write!(
                f,
                "page={:016x} pfn={:#x} alloc_order={alloc_order} fallback_order={fallback_order} \
                 pageblock_order={} alloc_migratetype={alloc_migratetype} \
                 fallback_migratetype={fallback_migratetype} fragmenting={} change_ownership={}",
                page(pfn),
                pfn.0,
                crate::zone::PAGEBLOCK_ORDER,
                u8::from((fallback_order as usize) < crate::zone::PAGEBLOCK_ORDER),
                u8::from(change_ownership),
            ),
            TraceEvent::MmCompactionBegin {
                zone_start,
                migrate_pfn,
                free_pfn,
                zone_end,
                sync,
            } => write!(
                f,
                "zone_start={zone_start:#x} migrate_pfn={migrate_pfn:#x} free_pfn={free_pfn:#x} \
                 zone_end={zone_end:#x}, mode={}",
                if sync { "sync" } else { "async" }
            ),
            TraceEvent::MmCompactionEnd {
                zone_start,
                migrate_pfn,
                free_pfn,
                zone_end,
                sync,
                status,
            } => write!(
                f,
                "zone_start={zone_start:#x} migrate_pfn={migrate_pfn:#x} free_pfn={free_pfn:#x} \
                 zone_end={zone_end:#x}, mode={} status={status}",
                if sync { "sync" } else { "async" }
            ),
        }
    }
}

/// `show_gfp_flags()` (`include/trace/events/mmflags.h`): Linux 6.1's
/// `__def_gfpflag_names` in its order, each name printed when all its bits
/// are left and then removed, leftover bits as `0x…`, `none` for 0 (cf.
/// `trace_print_flags_seq()`). Not [`GfpFlags`]'s `Display`, whose table
/// serves the API's strings and lacks e.g. `GFP_KERNEL_ACCOUNT`.
pub struct ShowGfpFlags(pub GfpFlags);

impl ShowGfpFlags {
    const NAMES: [(&'static str, u32); 34] = {
        const fn b(f: GfpFlags) -> u32 {
            f.bits()
        }
        let highuser_movable = b(GfpFlags::GFP_HIGHUSER) | b(GfpFlags::MOVABLE);
        let transhuge_light =
            (highuser_movable | b(GfpFlags::COMP) | b(GfpFlags::NOMEMALLOC) | b(GfpFlags::NOWARN))
                & !b(GfpFlags::RECLAIM);
        [
            (
                "GFP_TRANSHUGE",
                transhuge_light | b(GfpFlags::DIRECT_RECLAIM),
            ),
            ("GFP_TRANSHUGE_LIGHT", transhuge_light),
            ("GFP_HIGHUSER_MOVABLE", highuser_movable),
            ("GFP_HIGHUSER", b(GfpFlags::GFP_HIGHUSER)),
            ("GFP_USER", b(GfpFlags::GFP_USER)),
            (
                "GFP_KERNEL_ACCOUNT",
                b(GfpFlags::GFP_KERNEL) | b(GfpFlags::ACCOUNT),
            ),
            ("GFP_KERNEL", b(GfpFlags::GFP_KERNEL)),
            ("GFP_NOFS", b(GfpFlags::RECLAIM) | b(GfpFlags::IO)),
            ("GFP_ATOMIC", b(GfpFlags::GFP_ATOMIC)),
            ("GFP_NOIO", b(GfpFlags::RECLAIM)),
            ("GFP_NOWAIT", b(GfpFlags::GFP_NOWAIT)),
            ("GFP_DMA", b(GfpFlags::DMA)),
            ("__GFP_HIGHMEM", b(GfpFlags::HIGHMEM)),
            ("GFP_DMA32", b(GfpFlags::DMA32)),
            ("__GFP_HIGH", b(GfpFlags::HIGH)),
            ("__GFP_IO", b(GfpFlags::IO)),
            ("__GFP_FS", b(GfpFlags::FS)),
            ("__GFP_NOWARN", b(GfpFlags::NOWARN)),
            ("__GFP_RETRY_MAYFAIL", b(GfpFlags::RETRY_MAYFAIL)),
            ("__GFP_NOFAIL", b(GfpFlags::NOFAIL)),
            ("__GFP_NORETRY", b(GfpFlags::NORETRY)),
            ("__GFP_COMP", b(GfpFlags::COMP)),
            ("__GFP_ZERO", b(GfpFlags::ZERO)),
            ("__GFP_NOMEMALLOC", b(GfpFlags::NOMEMALLOC)),
            ("__GFP_MEMALLOC", b(GfpFlags::MEMALLOC)),
            ("__GFP_HARDWALL", b(GfpFlags::HARDWALL)),
            ("__GFP_THISNODE", 0x20_0000),
            ("__GFP_RECLAIMABLE", b(GfpFlags::RECLAIMABLE)),
            ("__GFP_MOVABLE", b(GfpFlags::MOVABLE)),
            ("__GFP_ACCOUNT", b(GfpFlags::ACCOUNT)),
            ("__GFP_WRITE", b(GfpFlags::WRITE)),
            ("__GFP_RECLAIM", b(GfpFlags::RECLAIM)),
            ("__GFP_DIRECT_RECLAIM", b(GfpFlags::DIRECT_RECLAIM)),
            ("__GFP_KSWAPD_RECLAIM", b(GfpFlags::KSWAPD_RECLAIM)),
        ]
    };
}

impl fmt::Display for ShowGfpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut flags = self.0.bits();
        if flags == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for (name, mask) in Self::NAMES.iter() {
            if flags == 0 {
                break;
            }
            if flags & mask != *mask {
                continue;
            }
            flags &= !mask;
            if !first {
                f.write_str("|")?;
            }
            first = false;
            f.write_str(name)?;
        }
        if flags != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{flags:#x}")?;
        }
        Ok(())
    }
}

/// The `trace` file's header (cf. `s_show()` with no entry yet: `# tracer:
/// nop`, then `print_event_info()` and `print_func_help_header_irq()`
/// without TGIDs). `stats` sums every CPU's ring, also in a
/// `per_cpu/cpuN/trace` file, as `get_total_entries()` does; `nr_cpus` is
/// `#P:`, the CPUs online.
pub fn write_header(w: &mut dyn fmt::Write, stats: &TraceStats, nr_cpus: usize) -> fmt::Result {
    write!(
        w,
        "# tracer: nop\n\
         #\n\
         # entries-in-buffer/entries-written: {}/{}   #P:{}\n\
         #\n",
        stats.entries,
        stats.entries + stats.overrun,
        nr_cpus
    )?;
    w.write_str(
        "#                                _-----=> irqs-off/BH-disabled\n\
         #                               / _----=> need-resched\n\
         #                              | / _---=> hardirq/softirq\n\
         #                              || / _--=> preempt-depth\n\
         #                              ||| / _-=> migrate-disable\n\
         #                              |||| /     delay\n\
         #           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n\
         #              | |         |   |||||     |         |\n",
    )
}

/// Bytes one record takes in a ring (`bytes:`, `buffer_size_kb`).
pub const TRACE_RECORD_BYTES: u64 = core::mem::size_of::<TraceRecord>() as u64;

/// `per_cpu/cpuN/stats` (cf. `tracing_stats_read()` with a clock in ns:
/// `ns2usecs()` rounds). `commit overrun` is 0: a commit here never
/// spans pages. `now_ns` is the trace clock now.
pub fn write_cpu_stats(w: &mut dyn fmt::Write, s: &CpuTraceStats, now_ns: u64) -> fmt::Result {
    let secs = |ns: u64| {
        let us = ns.saturating_add(500) / 1000;
        (us / 1_000_000, us % 1_000_000)
    };
    let (old_s, old_us) = secs(s.oldest_ts_ns);
    let (now_s, now_us) = secs(now_ns);
    write!(
        w,
        "entries: {}\n\
         overrun: {}\n\
         commit overrun: 0\n\
         bytes: {}\n\
         oldest event ts: {old_s:5}.{old_us:06}\n\
         now ts: {now_s:5}.{now_us:06}\n\
         dropped events: {}\n\
         read events: {}\n",
        s.entries,
        s.overrun,
        s.entries * TRACE_RECORD_BYTES,
        s.dropped,
        s.read
    )
}

/// A tracepoint: `trace_event!(src, Kmalloc { call_site: 0, ptr, … })`
/// records `TraceEvent::Kmalloc { … }` if `EventId::Kmalloc` is enabled.
/// `src` is anything with `trace_enabled(EventId) -> bool` and
/// `trace_record(TraceEvent)`: the [`crate::manager::MemoryManager`] or a
/// [`crate::slab::PageSource`]. Disabled, it costs the one relaxed load of
/// [`Tracer::enabled`]; the fields are not even evaluated.
#[macro_export]
macro_rules! trace_event {
    ($src:expr, $ev:ident { $($field:tt)* }) => {{
        let src = &$src;
        if src.trace_enabled($crate::trace::EventId::$ev) {
            src.trace_record($crate::trace::TraceEvent::$ev { $($field)* });
        }
    }};
}
