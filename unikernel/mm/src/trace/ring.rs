//! The per-CPU ring buffers and their merged readers (cf.
//! `kernel/trace/ring_buffer.c` and `trace_find_next_entry()` in
//! `kernel/trace/trace.c`).
//!
//! Each CPU has a ring of its own ([`NR_TRACE_CPUS`] of them, one per
//! possible CPU), behind a lock of its own: a writer takes only the ring
//! of the CPU it runs on, with `try_lock`, so writers on different CPUs
//! never meet, and a writer never waits for a reader (it drops the event
//! and counts it in its CPU's `dropped`). The timestamp is read with the
//! ring held, so each ring is in timestamp order even when an interrupt
//! records between a writer's clock read and its commit would otherwise
//! have reordered them.
//!
//! Readers merge: each step peeks the next record of every CPU and takes
//! the oldest (ties go to the lower CPU), as `trace_find_next_entry()`
//! does. A reader holds every ring's lock for one batch of records
//! (`out.len()`, 32 in `net`), never longer: the copy is O(batch ×
//! CPUs) and the formatting happens after, rings unlocked. Positions are
//! per CPU ([`TraceCursor`], [`ConsumeLimit`], [`TracePos`]): a record is
//! `(cpu, seq)`, `seq` counting that CPU's records since boot.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::{Mutex, MutexGuard};

use super::{TraceEvent, TraceRecord};

#[cfg(test)]
mod tests;

/// Records per CPU ring the kernel lends (cf. `buffer_size_kb`, which is
/// per CPU too); the kernel may lend fewer on a small machine.
pub const TRACE_BUF_ENTRIES: usize = 8192;
/// CPUs with a ring of their own: every CPU the kernel can bring up
/// ([`crate::types::NR_CPUS`]).
pub const NR_TRACE_CPUS: usize = crate::types::NR_CPUS;

/// Counters of the rings, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Records in the rings now, not yet consumed (cf.
    /// `ring_buffer_entries()`).
    pub entries: u64,
    /// Records overwritten by newer ones before `trace_pipe` read them
    /// (cf. `ring_buffer_overrun_cpu()`).
    pub overrun: u64,
    /// Events dropped because the ring was busy (a reader, or a nested
    /// writer such as a fault handler) or no ring was lent.
    pub dropped: u64,
    /// Records the rings hold at most.
    pub capacity: u64,
}

/// One CPU's counters (the `per_cpu/cpuN/stats` file, cf.
/// `tracing_stats_read()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTraceStats {
    /// Records in the ring, not yet consumed (`entries:`).
    pub entries: u64,
    /// Unconsumed records overwritten (`overrun:`).
    pub overrun: u64,
    /// Events dropped on this CPU (`dropped events:`).
    pub dropped: u64,
    /// Records consumed by `trace_pipe` (`read events:`).
    pub read: u64,
    /// Records the ring holds at most.
    pub capacity: u64,
    /// Timestamp of the oldest unconsumed record (`oldest event ts:`), 0
    /// if none.
    pub oldest_ts_ns: u64,
}

/// One CPU's ring: record `seq` lives in `slots[seq % len]`; sequence
/// numbers `[oldest, tail)` are still there, `[head, tail)` are not yet
/// consumed by `trace_pipe` (what `trace` shows). Subscribers
/// ([`Tracer::read_from`]) keep their own position in `[oldest, tail]`.
struct CpuBuffer<'a> {
    slots: &'a mut [TraceRecord],
    head: u64,
    tail: u64,
    /// The oldest record not overwritten nor cleared.
    oldest: u64,
    /// Where the last clear left `tail`: what lies below was cleared, not
    /// lost, for a subscriber that had not read it.
    cleared_at: u64,
    overrun: u64,
    /// Overwritten since the last consuming read (`[LOST N EVENTS]`).
    lost_unread: u64,
    /// Consumed since the last clear (cf. `cpu_buffer->read`).
    read: u64,
    /// The newest timestamp recorded: a clock that steps back is clamped
    /// to it, so the ring stays in timestamp order.
    last_ts: u64,
}

impl CpuBuffer<'_> {
    const fn empty() -> Self {
        CpuBuffer {
            slots: &mut [],
            head: 0,
            tail: 0,
            oldest: 0,
            cleared_at: 0,
            overrun: 0,
            lost_unread: 0,
            read: 0,
            last_ts: 0,
        }
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    fn slot(&self, seq: u64) -> usize {
        (seq % self.len()) as usize
    }

    fn at(&self, seq: u64) -> &TraceRecord {
        &self.slots[self.slot(seq)]
    }

    /// Overwrites the oldest record when full (an overrun if `trace_pipe`
    /// had not consumed it yet); `false` without slots.
    fn push(&mut self, rec: TraceRecord) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        if self.tail - self.oldest == self.len() {
            self.oldest += 1;
            if self.head < self.oldest {
                self.head = self.oldest;
                self.overrun += 1;
                self.lost_unread += 1;
            }
        }
        let at = self.slot(self.tail);
        self.slots[at] = rec;
        self.tail += 1;
        true
    }

    fn reset(&mut self) {
        self.head = self.tail;
        self.oldest = self.tail;
        self.cleared_at = self.tail;
        self.overrun = 0;
        self.lost_unread = 0;
        self.read = 0;
    }
}

/// Every ring, locked (a reader's batch).
type Rings<'g, 'a> = [MutexGuard<'g, CpuBuffer<'a>>; NR_TRACE_CPUS];

/// The merge step (cf. `trace_find_next_entry()`): the CPU whose record at
/// `next[cpu]` (below `end[cpu]`) is the oldest; ties go to the lower CPU.
fn oldest_cpu(
    rings: &Rings<'_, '_>,
    next: &[u64; NR_TRACE_CPUS],
    end: &[u64; NR_TRACE_CPUS],
) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for (cpu, ring) in rings.iter().enumerate() {
        if next[cpu] < end[cpu] {
            let ts = ring.at(next[cpu]).ts_ns;
            if best.is_none_or(|(b, _)| ts < b) {
                best = Some((ts, cpu));
            }
        }
    }
    best.map(|(_, cpu)| cpu)
}

/// Where a non-consuming reader is, per CPU: the next sequence number and
/// the end fixed when it started (so a reader never chases its own
/// events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceCursor {
    next: [u64; NR_TRACE_CPUS],
    end: [u64; NR_TRACE_CPUS],
    /// Records skipped because they were overwritten while reading.
    pub skipped: u64,
}

/// Where a consuming read stops, per CPU: the rings' ends when it began,
/// so `trace_pipe` never chases the records its own answer causes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumeLimit([u64; NR_TRACE_CPUS]);

/// A subscriber's position: the next sequence number per CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracePos([u64; NR_TRACE_CPUS]);

/// What [`Tracer::consume`] took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Consumed {
    /// Records copied into the batch.
    pub nr: usize,
    /// Per CPU, records overwritten before this read could take them (cf.
    /// `CPU:%d [LOST %lu EVENTS]`); each reported once.
    pub lost: [u64; NR_TRACE_CPUS],
}

impl Consumed {
    /// Lost records over every CPU.
    pub fn total_lost(&self) -> u64 {
        self.lost.iter().sum()
    }
}

/// What [`Tracer::read_from`] copied for one subscriber.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberRead {
    /// Records copied into the batch.
    pub nr: usize,
    /// Records overwritten, over every CPU, before this subscriber could
    /// read them (it did not keep up); counted once.
    pub lost: u64,
}

/// Stops recording while held (cf. `tracing_stop()` / `tracing_start()`
/// around a `trace` dump).
pub struct PauseGuard<'t> {
    paused: &'t AtomicBool,
    was: bool,
}

impl Drop for PauseGuard<'_> {
    fn drop(&mut self) {
        self.paused.store(self.was, Ordering::Relaxed);
    }
}

/// The tracepoints' enable mask and per-CPU rings; see the module docs.
pub struct Tracer<'a> {
    mask: AtomicU64,
    paused: AtomicBool,
    /// Per CPU: events dropped (ring busy or not lent).
    dropped: [AtomicU64; NR_TRACE_CPUS],
    /// Events from a CPU number beyond [`NR_TRACE_CPUS`].
    dropped_other: AtomicU64,
    cpus: [Mutex<CpuBuffer<'a>>; NR_TRACE_CPUS],
    page_base: u64,
}

impl<'a> Tracer<'a> {
    /// Every event disabled, no ring yet (events are dropped until
    /// [`Tracer::attach`]). `page_base` is the address of pfn 0's
    /// descriptor, for `page=%p` (0 if unknown).
    pub const fn new(page_base: u64) -> Self {
        Tracer {
            mask: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            dropped: [const { AtomicU64::new(0) }; NR_TRACE_CPUS],
            dropped_other: AtomicU64::new(0),
            cpus: [const { Mutex::new(CpuBuffer::empty()) }; NR_TRACE_CPUS],
            page_base,
        }
    }

    /// Lends `cpu` its ring (once, at boot; a later call replaces it and
    /// empties it). Every slot is overwritten before it is read. A CPU
    /// beyond [`NR_TRACE_CPUS`] is ignored.
    pub fn attach(&self, cpu: usize, slots: &'a mut [TraceRecord]) {
        if let Some(ring) = self.cpus.get(cpu) {
            *ring.lock() = CpuBuffer {
                slots,
                ..CpuBuffer::empty()
            };
        }
    }

    /// CPUs that have a ring (the kernel lends one per possible CPU).
    pub fn nr_rings(&self) -> usize {
        self.cpus
            .iter()
            .filter(|c| !c.lock().slots.is_empty())
            .count()
    }

    /// Records `cpu`'s ring holds at most (0 if none was lent).
    pub fn ring_entries(&self, cpu: usize) -> usize {
        self.cpus.get(cpu).map_or(0, |c| c.lock().slots.len())
    }

    /// The address `page=` prints for pfn 0.
    pub fn page_base(&self) -> u64 {
        self.page_base
    }

    /// Whether `id` is enabled: one relaxed load.
    #[inline(always)]
    pub fn enabled(&self, id: super::EventId) -> bool {
        self.mask.load(Ordering::Relaxed) & id.bit() != 0
    }

    /// The enable mask (bit [`super::EventId::bit`] per event).
    pub fn mask(&self) -> u64 {
        self.mask.load(Ordering::Relaxed)
    }

    /// Enables or disables the events in `mask`
    /// (`events/{system}/{event}/enable`, `events/{system}/enable`).
    pub fn set_enabled(&self, mask: u64, on: bool) {
        if on {
            self.mask.fetch_or(mask, Ordering::Relaxed);
        } else {
            self.mask.fetch_and(!mask, Ordering::Relaxed);
        }
    }

    /// Records `event` at `ts_ns` on `cpu`'s ring; see
    /// [`Tracer::record_with`].
    pub fn record(&self, ts_ns: u64, cpu: usize, event: TraceEvent) {
        self.record_with(|| ts_ns, cpu, event);
    }

    /// Records `event` on `cpu`'s ring, the CPU the caller runs on (cf.
    /// `trace_event_buffer_lock_reserve()` + commit), stamped with
    /// `clock()` read while the ring is held. Dropped (and counted) if the
    /// ring is busy, while paused, or if none was lent. Never blocks,
    /// never allocates. Callers test [`Tracer::enabled`] first (the
    /// [`crate::trace_event!`] macro does).
    #[cold]
    #[inline(never)]
    pub fn record_with(&self, clock: impl FnOnce() -> u64, cpu: usize, event: TraceEvent) {
        if self.paused.load(Ordering::Relaxed) {
            return; // as Linux drops events while tracing is stopped
        }
        let (Some(ring), Some(dropped)) = (self.cpus.get(cpu), self.dropped.get(cpu)) else {
            self.dropped_other.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let stored = match ring.try_lock() {
            Some(mut ring) if !ring.slots.is_empty() => {
                let ts_ns = clock().max(ring.last_ts);
                ring.last_ts = ts_ns;
                ring.push(TraceRecord {
                    ts_ns,
                    cpu: cpu as u16,
                    event,
                })
            }
            _ => false,
        };
        if !stored {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stops recording until the guard drops.
    pub fn pause(&self) -> PauseGuard<'_> {
        PauseGuard {
            paused: &self.paused,
            was: self.paused.swap(true, Ordering::Relaxed),
        }
    }

    /// Empties every ring and zeroes the counters (cf. `echo > trace`:
    /// `tracing_reset_online_cpus()`). The enable mask is kept.
    pub fn clear(&self) {
        for (cpu, dropped) in self.cpus.iter().zip(&self.dropped) {
            cpu.lock().reset();
            dropped.store(0, Ordering::Relaxed);
        }
        self.dropped_other.store(0, Ordering::Relaxed);
    }

    /// Back to boot: every event disabled, the rings empty.
    pub fn reset(&self) {
        self.mask.store(0, Ordering::Relaxed);
        self.clear();
    }

    /// The rings' counters, summed over CPUs.
    pub fn stats(&self) -> TraceStats {
        let mut s = TraceStats {
            dropped: self.dropped_other.load(Ordering::Relaxed),
            ..TraceStats::default()
        };
        for cpu in 0..NR_TRACE_CPUS {
            let c = self.cpu_stats(cpu);
            s.entries += c.entries;
            s.overrun += c.overrun;
            s.dropped += c.dropped;
            s.capacity += c.capacity;
        }
        s
    }

    /// One CPU's counters (zeros beyond [`NR_TRACE_CPUS`]).
    pub fn cpu_stats(&self, cpu: usize) -> CpuTraceStats {
        let (Some(ring), Some(dropped)) = (self.cpus.get(cpu), self.dropped.get(cpu)) else {
            return CpuTraceStats::default();
        };
        let ring = ring.lock();
        CpuTraceStats {
            entries: ring.tail - ring.head,
            overrun: ring.overrun,
            dropped: dropped.load(Ordering::Relaxed),
            read: ring.read,
            capacity: ring.len(),
            oldest_ts_ns: if ring.head < ring.tail {
                ring.at(ring.head).ts_ns
            } else {
                0
            },
        }
    }

    /// Holds `cpu`'s ring as a reader or an interrupted writer would.
    #[cfg(test)]
    pub(super) fn hold_ring(&self, cpu: usize) -> impl Sized + '_ {
        self.cpus[cpu].lock()
    }

    /// Every ring, locked in CPU order (readers only: writers `try_lock`,
    /// so this order cannot deadlock with them).
    fn lock_all(&self) -> Rings<'_, 'a> {
        core::array::from_fn(|cpu| self.cpus[cpu].lock())
    }

    /// A non-consuming reader over what every ring holds now, unconsumed.
    pub fn cursor(&self) -> TraceCursor {
        let rings = self.lock_all();
        TraceCursor {
            next: core::array::from_fn(|cpu| rings[cpu].head),
            end: core::array::from_fn(|cpu| rings[cpu].tail),
            skipped: 0,
        }
    }

    /// A non-consuming reader over `cpu`'s ring alone (the
    /// `per_cpu/cpuN/trace` file); an empty one beyond [`NR_TRACE_CPUS`].
    pub fn cpu_cursor(&self, cpu: usize) -> TraceCursor {
        let mut c = self.cursor();
        for other in (0..NR_TRACE_CPUS).filter(|&o| o != cpu) {
            c.next[other] = c.end[other];
        }
        c
    }

    /// Copies the next records of `cursor`, merged by timestamp, into
    /// `out`; returns how many (0 at the end). Records overwritten since
    /// the cursor was made are skipped and counted in
    /// [`TraceCursor::skipped`].
    pub fn read(&self, cursor: &mut TraceCursor, out: &mut [TraceRecord]) -> usize {
        let rings = self.lock_all();
        let mut end = cursor.end;
        for (cpu, ring) in rings.iter().enumerate() {
            if cursor.next[cpu] < ring.head {
                let gone = ring.head.min(cursor.end[cpu]);
                cursor.skipped += gone.saturating_sub(cursor.next[cpu]);
                cursor.next[cpu] = gone;
            }
            end[cpu] = end[cpu].min(ring.tail);
        }
        let mut n = 0;
        while n < out.len() {
            let Some(cpu) = oldest_cpu(&rings, &cursor.next, &end) else {
                break;
            };
            out[n] = *rings[cpu].at(cursor.next[cpu]);
            cursor.next[cpu] += 1;
            n += 1;
        }
        n
    }

    /// Where a consuming read that starts now stops: it never chases its
    /// own events.
    pub fn consume_limit(&self) -> ConsumeLimit {
        let rings = self.lock_all();
        ConsumeLimit(core::array::from_fn(|cpu| rings[cpu].tail))
    }

    /// Pops up to `out.len()` of the oldest records below `limit`, merged
    /// by timestamp over the CPUs, into `out` (cf. `ring_buffer_consume()`
    /// on the CPU `trace_find_next_entry()` picked).
    pub fn consume(&self, limit: &ConsumeLimit, out: &mut [TraceRecord]) -> Consumed {
        let mut rings = self.lock_all();
        let mut c = Consumed::default();
        let mut next = [0; NR_TRACE_CPUS];
        let mut end = [0; NR_TRACE_CPUS];
        for (cpu, ring) in rings.iter_mut().enumerate() {
            c.lost[cpu] = core::mem::take(&mut ring.lost_unread);
            next[cpu] = ring.head;
            end[cpu] = limit.0[cpu].min(ring.tail);
        }
        while c.nr < out.len() {
            let Some(cpu) = oldest_cpu(&rings, &next, &end) else {
                break;
            };
            out[c.nr] = *rings[cpu].at(next[cpu]);
            next[cpu] += 1;
            c.nr += 1;
        }
        for (cpu, ring) in rings.iter_mut().enumerate() {
            ring.read += next[cpu] - ring.head;
            ring.head = next[cpu];
        }
        c
    }

    /// A new subscriber's position: it sees what is recorded from now on.
    pub fn subscribe_position(&self) -> TracePos {
        let rings = self.lock_all();
        TracePos(core::array::from_fn(|cpu| rings[cpu].tail))
    }

    /// Copies the records from `pos` on, merged by timestamp, into `out`
    /// and advances `pos`, without consuming: each subscriber
    /// (`/api/events`) has its own per-CPU position, and the rings never
    /// wait for one. `seqs[i]`, if given, gets `out[i]`'s sequence number
    /// on its CPU. Records overwritten before the subscriber got to them
    /// are skipped and reported as [`SubscriberRead::lost`]; records
    /// cleared (`echo > trace`, reset) are skipped silently.
    pub fn read_from(
        &self,
        pos: &mut TracePos,
        out: &mut [TraceRecord],
        mut seqs: Option<&mut [u64]>,
    ) -> SubscriberRead {
        let rings = self.lock_all();
        let mut r = SubscriberRead::default();
        let mut end = [0; NR_TRACE_CPUS];
        for (cpu, ring) in rings.iter().enumerate() {
            let p = &mut pos.0[cpu];
            if *p < ring.oldest {
                r.lost += ring.oldest.saturating_sub((*p).max(ring.cleared_at));
                *p = ring.oldest;
            }
            // (A position past the end cannot happen: `tail` never goes back.)
            *p = (*p).min(ring.tail);
            end[cpu] = ring.tail;
        }
        let max = seqs.as_ref().map_or(out.len(), |s| s.len().min(out.len()));
        while r.nr < max {
            let Some(cpu) = oldest_cpu(&rings, &pos.0, &end) else {
                break;
            };
            out[r.nr] = *rings[cpu].at(pos.0[cpu]);
            if let Some(s) = seqs.as_deref_mut() {
                s[r.nr] = pos.0[cpu];
            }
            pos.0[cpu] += 1;
            r.nr += 1;
        }
        r
    }
}
