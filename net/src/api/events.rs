//! Live tracepoint streams: `GET /sys/kernel/tracing/trace_pipe` that
//! blocks, and `GET /api/events` as Server-Sent Events
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html>).
//!
//! Both are [`Response::stream`]s: the server sends the head at once and
//! hands the request back whenever its reader has room and at
//! [`STREAM_POLL_MS`] at the latest, so a stream costs no thread and no
//! sleep — the main loop serves everyone else in between, as for a parked
//! allocation (DESIGN.md, "No threads, still concurrent").
//!
//! * `trace_pipe` consumes, as Linux's does (`tracing_read_pipe()`): what
//!   one reader takes, no other sees; every CPU's records merged by
//!   timestamp, a CPU's overwritten ones announced as `CPU:N [LOST M
//!   EVENTS]`. With nothing in the rings it sends nothing and waits; lines arrive as events are recorded, until the
//!   client closes. Records its own answer records (its `kmalloc`s, if
//!   traced) come in the next round, never in the same one.
//! * `/api/events` does not consume: every subscriber has its own position
//!   in each CPU's ring ([`mm::trace::Tracer::read_from`]) and a filter;
//!   it gets every CPU's records merged by timestamp. The kernel never
//!   waits for one: a subscriber that falls more than a ring behind (or
//!   whose connection is not read, so the server stops asking, see
//!   `conn.rs`) loses the overwritten records and is told how many (over
//!   every CPU), once, by a `lost` event. Subscribers live in a fixed table of
//!   [`MAX_SUBSCRIBERS`] (more is 503 EBUSY); nothing per event touches
//!   the heap but the answer's page-sized pieces.
//!
//! Wire format of `/api/events` (`text/event-stream`):
//! ```text
//! event: subscribed
//! data: {"subscriber":0,"filter":{"event":["kmem:mm_page_alloc"],"zone":["DMA32"],"order":[0,3]},"disabled":["kmem:mm_page_alloc"]}
//!
//! data: {"seq":17,"ts_ns":4215337000,"cpu":0,"event":"kmem:mm_page_alloc","zone":"DMA32","order":3,"fields":{"page":"0xffff888001234500","pfn":115624,"order":3,"migratetype":0,"gfp_flags":"GFP_KERNEL"}}
//!
//! event: lost
//! data: {"lost":1200}
//!
//! : keep-alive
//! ```
//! Events carry no `event:` line (an `EventSource`'s `onmessage` gets
//! them); `seq` numbers the records of one CPU (`cpu`) since boot, so
//! `(cpu, seq)` names a record and a gap in one CPU's `seq`s is a record
//! filtered out or lost; `fields` are the tracepoint's `TP_STRUCT__entry` fields with
//! their Linux names (addresses as `"0x…"` strings, `gfp_flags` as
//! `show_gfp_flags()` prints it); `zone` and `order` are what the filters
//! test (`null` for events without one). `disabled` lists the filter's
//! events that are not enabled: a subscription does not enable events,
//! the tracefs `enable` files do.

use alloc::format;
use alloc::string::String;
use core::fmt::Write as _;

use mm::platform::Platform;
use mm::trace::{EventId, ShowGfpFlags, TraceEvent, TracePos, TraceRecord};
use mm::types::{MAX_ORDER, Pfn};
use mm::zone::{NR_ZONES, PAGEBLOCK_ORDER, ZoneLayout, ZoneType};

use super::Api;
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::{BodyWriter, CONTENT_TYPE_TEXT, Pending, Response};

/// Streams are asked for more at least this often (the latency of a
/// line once recorded, when nothing else wakes the server).
pub(super) const STREAM_POLL_MS: u64 = 100;
/// A subscriber idle this long gets an SSE comment, so proxies and
/// clients see the connection alive.
pub(super) const KEEPALIVE_MS: u64 = 15_000;
/// Subscribers at once; more are refused with 503.
pub(super) const MAX_SUBSCRIBERS: usize = 8;
/// A slot not asked for this long belongs to a connection that is gone
/// (a live stream is asked every [`STREAM_POLL_MS`]; a stalled one is
/// closed after the idle timeout): a new subscriber may take it.
const SLOT_STALE_MS: u64 = 60_000;
/// Records read per answer: bounds one answer's size; a subscriber that
/// falls further behind catches up over the next rounds or loses.
const RECORDS_PER_ANSWER: usize = 256;
/// Records copied out of the ring per lock hold.
const BATCH: usize = 32;
/// `Content-Type` of Server-Sent Events.
pub const CONTENT_TYPE_SSE: &str = "text/event-stream";

/// Token kinds (top byte), beside `wait.rs`'s queues (1, 2).
const TOKEN_PIPE: u64 = 3;
const TOKEN_EVENTS: u64 = 4;

/// What a subscriber wants (`?event=&zone=&order=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EventFilter {
    /// [`EventId::bit`]s; every event when no `event=` is given.
    pub mask: u64,
    /// Bit `ZoneType as u8` per zone; 0: any (no `zone=`).
    pub zones: u8,
    /// Inclusive order range; `None`: any (no `order=`).
    pub order: Option<(u8, u8)>,
}

impl EventFilter {
    const ALL: EventFilter = EventFilter {
        mask: u64::MAX,
        zones: 0,
        order: None,
    };

    /// Whether a record passes: its event selected, and, for a zone or
    /// order filter, a zone or order it has and that is in range.
    fn matches(&self, rec: &TraceRecord, layout: &ZoneLayout) -> bool {
        let ev = &rec.event;
        if self.mask & ev.id().bit() == 0 {
            return false;
        }
        if self.zones != 0
            && event_zone(ev, layout).is_none_or(|z| self.zones & (1 << z as u8) == 0)
        {
            return false;
        }
        match self.order {
            None => true,
            Some((lo, hi)) => event_order(ev).is_some_and(|o| (lo..=hi).contains(&o)),
        }
    }

    /// The filter as JSON (the `subscribed` event).
    fn write_json(&self, w: &mut BodyWriter) {
        let _ = w.write_str("{\"event\":[");
        let mut first = true;
        for e in EventId::ALL.iter().filter(|e| self.mask & e.bit() != 0) {
            let _ = write!(
                w,
                "{}\"{}:{}\"",
                if first { "" } else { "," },
                e.system(),
                e.name()
            );
            first = false;
        }
        let _ = w.write_str("],\"zone\":");
        if self.zones == 0 {
            let _ = w.write_str("null");
        } else {
            let _ = w.write_str("[");
            let mut first = true;
            for z in ZoneType::ALL
                .iter()
                .filter(|z| self.zones & (1 << **z as u8) != 0)
            {
                let _ = write!(w, "{}\"{}\"", if first { "" } else { "," }, z.name());
                first = false;
            }
            let _ = w.write_str("]");
        }
        let _ = match self.order {
            None => w.write_str(",\"order\":null}"),
            Some((lo, hi)) => write!(w, ",\"order\":[{lo},{hi}]}}"),
        };
    }
}

/// The zone an event is about: its frame's (page events, compaction's
/// zone start) or kswapd's `zid`; `None` for the others.
fn event_zone(ev: &TraceEvent, layout: &ZoneLayout) -> Option<ZoneType> {
    match *ev {
        TraceEvent::MmPageAlloc { pfn, .. }
        | TraceEvent::MmPageFree { pfn, .. }
        | TraceEvent::MmPageAllocExtfrag { pfn, .. } => layout.zone_of(pfn),
        TraceEvent::MmCompactionBegin { zone_start, .. }
        | TraceEvent::MmCompactionEnd { zone_start, .. } => layout.zone_of(Pfn(zone_start)),
        TraceEvent::MmVmscanKswapdWake { zid, .. } => {
            ZoneType::ALL.get(usize::try_from(zid).ok()?).copied()
        }
        _ => None,
    }
}

/// The allocation order an event is about, if it has one.
fn event_order(ev: &TraceEvent) -> Option<u8> {
    match *ev {
        TraceEvent::MmPageAlloc { order, .. } | TraceEvent::MmPageFree { order, .. } => Some(order),
        TraceEvent::MmPageAllocExtfrag { alloc_order, .. } => Some(alloc_order),
        TraceEvent::MmVmscanKswapdWake { order, .. }
        | TraceEvent::MmVmscanDirectReclaimBegin { order, .. } => u8::try_from(order).ok(),
        _ => None,
    }
}

/// One subscriber of `/api/events`.
#[derive(Clone, Copy, Debug)]
struct Subscriber {
    /// Its position in every CPU's ring.
    pos: TracePos,
    filter: EventFilter,
    /// The zones' bounds, fixed after boot (for `zone=`).
    layout: ZoneLayout,
    /// Tells a recycled slot's token from the old one's.
    generation: u32,
    /// Last time its stream sent anything (for keep-alives).
    last_write_ms: u64,
    /// Last time the server asked for more.
    last_poll_ms: u64,
    /// Lost records not yet reported (an answer that could not be built).
    lost: u64,
}

/// The live streams: the subscriber table and `trace_pipe`'s tokens.
#[derive(Default)]
pub(super) struct TraceStreams {
    subscribers: [Option<Subscriber>; MAX_SUBSCRIBERS],
    next_generation: u32,
    next_pipe: u64,
}

fn events_token(slot: usize, generation: u32) -> u64 {
    (TOKEN_EVENTS << 56) | (u64::from(generation) << 8) | slot as u64
}

/// `(slot, generation)` of an `/api/events` token.
fn decode_events(token: u64) -> Option<(usize, u32)> {
    (token >> 56 == TOKEN_EVENTS)
        .then_some(((token & 0xff) as usize, ((token >> 8) & 0xffff_ffff) as u32))
}

/// Whether `token` names a stream of this module (not a wait).
pub(super) fn is_stream_token(token: u64) -> bool {
    matches!(
        token >> 56,
        TOKEN_PIPE | TOKEN_EVENTS | super::page_owner::TOKEN_PAGE_OWNER
    )
}

/// A stream answer that goes on: `w`'s pieces, or nothing if the heap
/// refused one (the stream is not worth ending for it).
fn more(w: BodyWriter, token: u64, until_ms: u64) -> Response {
    let mut r = w
        .finish(200, "")
        .unwrap_or_else(|_| Response::bytes(200, "", &[][..]));
    r.stream = Some(Pending { token, until_ms });
    r
}

impl<'a, P: Platform> Api<'a, P> {
    /// `GET /sys/kernel/tracing/trace_pipe`: consuming, blocking (see the
    /// module doc). Each round takes what the ring holds, up to where it
    /// ended when the round began.
    pub(super) fn trace_pipe(&mut self, req: &Request) -> Result<Response, ApiError> {
        let now = self.system.uptime_ms();
        let token = match req.park {
            Some(p) => p.token,
            None => {
                self.streams.next_pipe = self.streams.next_pipe.wrapping_add(1);
                (TOKEN_PIPE << 56) | (self.streams.next_pipe & ((1 << 56) - 1))
            }
        };
        let t = self.mm.tracer();
        let limit = t.consume_limit();
        let mut w = BodyWriter::new();
        let mut batch = [TraceRecord::EMPTY; BATCH];
        loop {
            let c = t.consume(&limit, &mut batch);
            for (cpu, &lost) in c.lost.iter().enumerate().filter(|(_, l)| **l > 0) {
                // cf. print_trace_line(): overwritten before we read them.
                let _ = writeln!(w, "CPU:{cpu} [LOST {lost} EVENTS]");
            }
            if c.nr == 0 {
                break;
            }
            for r in &batch[..c.nr] {
                let _ = writeln!(w, "{}", r.line(t.page_base()));
            }
        }
        let until = now.saturating_add(STREAM_POLL_MS);
        if req.park.is_some() {
            return Ok(more(w, token, until));
        }
        let mut r = w.finish(200, CONTENT_TYPE_TEXT)?;
        r.stream = Some(Pending {
            token,
            until_ms: until,
        });
        Ok(r)
    }

    /// `GET /api/events?event=&zone=&order=`: subscribe (the first call)
    /// or the next round of a subscriber's stream.
    pub(super) fn events(&mut self, req: &Request) -> Result<Response, ApiError> {
        let now = self.system.uptime_ms();
        match req.park {
            Some(p) => Ok(self.events_more(p.token, now)),
            None => self.events_subscribe(req, now),
        }
    }

    fn events_subscribe(&mut self, req: &Request, now: u64) -> Result<Response, ApiError> {
        let filter = parse_filter(&req.query)?;
        let slot = self
            .streams
            .subscribers
            .iter()
            .position(|s| s.is_none_or(|s| now.saturating_sub(s.last_poll_ms) > SLOT_STALE_MS))
            .ok_or_else(|| {
                ApiError::new(
                    503,
                    "EBUSY",
                    format!(
                        "{MAX_SUBSCRIBERS} event subscribers are connected, the most at once; close one and retry"
                    ),
                )
            })?;
        let generation = self.streams.next_generation;
        self.streams.next_generation = generation.wrapping_add(1);
        let layout = self.mm.lock().layout();
        let tracer = self.mm.tracer();
        self.streams.subscribers[slot] = Some(Subscriber {
            pos: tracer.subscribe_position(),
            filter,
            layout,
            generation,
            last_write_ms: now,
            last_poll_ms: now,
            lost: 0,
        });
        let enabled = tracer.mask();
        let mut w = BodyWriter::new();
        let _ = write!(
            w,
            "event: subscribed\ndata: {{\"subscriber\":{slot},\"filter\":"
        );
        filter.write_json(&mut w);
        let _ = w.write_str(",\"disabled\":[");
        let mut first = true;
        for e in EventId::ALL
            .iter()
            .filter(|e| filter.mask & e.bit() != 0 && enabled & e.bit() == 0)
        {
            let _ = write!(
                w,
                "{}\"{}:{}\"",
                if first { "" } else { "," },
                e.system(),
                e.name()
            );
            first = false;
        }
        let _ = w.write_str("]}\n\n");
        let token = events_token(slot, generation);
        let r = match w.finish(200, CONTENT_TYPE_SSE) {
            Ok(r) => r,
            Err(e) => {
                self.streams.subscribers[slot] = None;
                return Err(e.into());
            }
        };
        Ok(Response {
            stream: Some(Pending {
                token,
                until_ms: now.saturating_add(STREAM_POLL_MS),
            }),
            ..r
        }
        .with_header("Cache-Control", "no-cache"))
    }

    /// A subscriber's next round: what the ring got since, filtered.
    fn events_more(&mut self, token: u64, now: u64) -> Response {
        let Some((slot, generation)) = decode_events(token) else {
            return Response::text(200, "");
        };
        let sub = match self.streams.subscribers.get_mut(slot) {
            Some(Some(s)) if s.generation == generation => s,
            // Its slot was taken over: this stream is over.
            _ => return Response::text(200, ": subscription ended\n\n"),
        };
        sub.last_poll_ms = now;
        let tracer = self.mm.tracer();
        let page_base = tracer.page_base();
        let mut w = BodyWriter::new();
        let mut batch = [TraceRecord::EMPTY; BATCH];
        let mut seqs = [0u64; BATCH];
        let mut read = 0;
        let mut sent = 0u64;
        while read < RECORDS_PER_ANSWER {
            let r = tracer.read_from(&mut sub.pos, &mut batch, Some(&mut seqs));
            sub.lost += r.lost;
            if sub.lost > 0 {
                let _ = write!(w, "event: lost\ndata: {{\"lost\":{}}}\n\n", sub.lost);
                sub.lost = 0;
            }
            if r.nr == 0 {
                break;
            }
            read += r.nr;
            for (rec, &seq) in batch[..r.nr].iter().zip(&seqs) {
                if sub.filter.matches(rec, &sub.layout) {
                    sent += 1;
                    let _ = w.write_str("data: ");
                    write_event_json(&mut w, seq, rec, &sub.layout, page_base);
                    let _ = w.write_str("\n\n");
                }
            }
        }
        if w.is_empty() && now.saturating_sub(sub.last_write_ms) >= KEEPALIVE_MS {
            let _ = w.write_str(": keep-alive\n\n");
        }
        if !w.is_empty() {
            sub.last_write_ms = now;
        }
        let until = now.saturating_add(STREAM_POLL_MS);
        match w.finish(200, "") {
            Ok(mut r) => {
                r.stream = Some(Pending {
                    token,
                    until_ms: until,
                });
                r
            }
            Err(_) => {
                // The heap refused a piece: what this round read is lost
                // to this subscriber, and it is told so next round.
                sub.lost += sent;
                Response::stream_more(&[][..], token, until)
            }
        }
    }

    /// The client of stream `token` went away; `false` if `token` is no
    /// stream's (then it is a wait's).
    pub(super) fn end_stream(&mut self, token: u64) -> bool {
        if !is_stream_token(token) {
            return false;
        }
        if let Some((slot, generation)) = decode_events(token)
            && let Some(s) = self.streams.subscribers.get_mut(slot)
            && s.is_some_and(|s| s.generation == generation)
        {
            *s = None;
        }
        true
    }

    /// Subscribers connected now (tests, metrics).
    #[cfg(test)]
    pub(super) fn nr_event_subscribers(&self) -> usize {
        self.streams.subscribers.iter().flatten().count()
    }
}

/// `?event=&zone=&order=` (and API.md's `filter=`, the same as `event=`).
/// Lists are comma-separated; `event` takes `system:name` or a whole
/// `system`; `zone` takes zone names; `order` is `K`, `A..B` (inclusive),
/// `A..` or `..B` within 0..=MAX_ORDER. Anything else is 400.
pub(super) fn parse_filter(query: &str) -> Result<EventFilter, ApiError> {
    let mut f = EventFilter::ALL;
    let mut seen = [false; 3];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(raw)?;
        let idx = match key {
            "event" | "filter" => 0,
            "zone" => 1,
            "order" => 2,
            _ => {
                return Err(ApiError::einval(format!(
                    "unknown parameter {:?}: /api/events takes event=, zone= and order=",
                    truncate(key)
                )));
            }
        };
        if core::mem::replace(&mut seen[idx], true) {
            return Err(ApiError::einval(format!(
                "{key}= given twice: list values with commas"
            )));
        }
        match idx {
            0 => f.mask = parse_events(&value)?,
            1 => f.zones = parse_zones(&value)?,
            _ => f.order = Some(parse_order(&value)?),
        }
    }
    Ok(f)
}

fn parse_events(value: &str) -> Result<u64, ApiError> {
    let mut mask = 0;
    for sel in value.split(',') {
        let bits = match sel.split_once(':') {
            Some((system, name)) => EventId::lookup(system, name).map_or(0, EventId::bit),
            None => EventId::system_mask(sel),
        };
        if bits == 0 {
            return Err(ApiError::einval(format!(
                "event={:?}: no such trace event or system (see /sys/kernel/tracing/available_events)",
                truncate(sel)
            )));
        }
        mask |= bits;
    }
    Ok(mask)
}

fn parse_zones(value: &str) -> Result<u8, ApiError> {
    let mut zones = 0u8;
    for name in value.split(',') {
        let z = ZoneType::ALL
            .iter()
            .find(|z| z.name() == name)
            .ok_or_else(|| {
                ApiError::einval(format!(
                    "zone={:?}: zones are DMA, DMA32, Normal and HighMem",
                    truncate(name)
                ))
            })?;
        zones |= 1 << *z as u8;
    }
    const _: () = assert!(NR_ZONES <= 8);
    Ok(zones)
}

fn parse_order(value: &str) -> Result<(u8, u8), ApiError> {
    let bad = || {
        ApiError::einval(format!(
            "order={:?}: give K, A..B, A.. or ..B with orders 0..={MAX_ORDER} and A <= B",
            truncate(value)
        ))
    };
    let num = |s: &str, default: u8| -> Result<u8, ApiError> {
        if s.is_empty() {
            return Ok(default);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 2 {
            return Err(bad());
        }
        s.parse::<u8>().map_err(|_| bad())
    };
    let max = MAX_ORDER as u8;
    let (lo, hi) = match value.split_once("..") {
        Some((a, b)) => (num(a, 0)?, num(b, max)?),
        None if !value.is_empty() => {
            let k = num(value, 0)?;
            (k, k)
        }
        None => return Err(bad()),
    };
    if lo > hi || hi > max {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// `%XX` escapes decoded (a client may send `kmem%3Amm_page_alloc`);
/// invalid escapes and non-UTF-8 are 400.
fn percent_decode(raw: &str) -> Result<String, ApiError> {
    let bad = || ApiError::einval("malformed percent-escape in the query");
    let mut out = crate::server::response::try_string(raw.len())?;
    let bytes = raw.as_bytes();
    let mut buf = alloc::vec::Vec::new();
    buf.try_reserve_exact(bytes.len())
        .map_err(|_| ApiError::enomem("out of memory parsing the query"))?;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or_else(bad)?;
                buf.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                buf.push(b' ');
                i += 1;
            }
            b => {
                buf.push(b);
                i += 1;
            }
        }
    }
    out.push_str(core::str::from_utf8(&buf).map_err(|_| bad())?);
    Ok(out)
}

/// At most 64 bytes of `s` for an error message.
fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One record as the JSON object of the module doc.
fn write_event_json(
    w: &mut BodyWriter,
    seq: u64,
    rec: &TraceRecord,
    layout: &ZoneLayout,
    page_base: u64,
) {
    let ev = &rec.event;
    let id = ev.id();
    let _ = write!(
        w,
        "{{\"seq\":{seq},\"ts_ns\":{},\"cpu\":{},\"event\":\"{}:{}\",\"zone\":",
        rec.ts_ns,
        rec.cpu,
        id.system(),
        id.name()
    );
    let _ = match event_zone(ev, layout) {
        Some(z) => write!(w, "\"{}\"", z.name()),
        None => w.write_str("null"),
    };
    let _ = match event_order(ev) {
        Some(o) => write!(w, ",\"order\":{o},\"fields\":{{"),
        None => w.write_str(",\"order\":null,\"fields\":{"),
    };
    let page = |pfn: Pfn| {
        page_base.wrapping_add(
            pfn.0
                .wrapping_mul(core::mem::size_of::<mm::page::Page>() as u64),
        )
    };
    let _ = match *ev {
        TraceEvent::MmPageAlloc {
            pfn,
            order,
            migratetype,
            gfp,
        } => write!(
            w,
            "\"page\":\"{:#x}\",\"pfn\":{},\"order\":{order},\"migratetype\":{migratetype},\"gfp_flags\":\"{}\"",
            page(pfn),
            pfn.0,
            ShowGfpFlags(gfp)
        ),
        TraceEvent::MmPageFree { pfn, order } => write!(
            w,
            "\"page\":\"{:#x}\",\"pfn\":{},\"order\":{order}",
            page(pfn),
            pfn.0
        ),
        TraceEvent::Kmalloc {
            call_site,
            ptr,
            bytes_req,
            bytes_alloc,
            gfp,
        } => write!(
            w,
            "\"call_site\":\"{call_site:#x}\",\"ptr\":\"{ptr:#x}\",\"bytes_req\":{bytes_req},\"bytes_alloc\":{bytes_alloc},\"gfp_flags\":\"{}\",\"node\":-1,\"accounted\":{}",
            ShowGfpFlags(gfp),
            gfp.contains(mm::gfp::GfpFlags::ACCOUNT)
        ),
        TraceEvent::Kfree { call_site, ptr } => {
            write!(w, "\"call_site\":\"{call_site:#x}\",\"ptr\":\"{ptr:#x}\"")
        }
        TraceEvent::KmemCacheAlloc {
            call_site,
            ptr,
            bytes_req,
            bytes_alloc,
            gfp,
            accounted,
        } => write!(
            w,
            "\"call_site\":\"{call_site:#x}\",\"ptr\":\"{ptr:#x}\",\"bytes_req\":{bytes_req},\"bytes_alloc\":{bytes_alloc},\"gfp_flags\":\"{}\",\"node\":-1,\"accounted\":{accounted}",
            ShowGfpFlags(gfp)
        ),
        TraceEvent::KmemCacheFree {
            call_site,
            ptr,
            name,
        } => {
            let _ = write!(
                w,
                "\"call_site\":\"{call_site:#x}\",\"ptr\":\"{ptr:#x}\",\"name\":"
            );
            write_json_str(w, name.as_str())
        }
        TraceEvent::MmVmscanKswapdSleep { nid } => write!(w, "\"nid\":{nid}"),
        TraceEvent::MmVmscanKswapdWake { nid, zid, order } => {
            write!(w, "\"nid\":{nid},\"zid\":{zid},\"order\":{order}")
        }
        TraceEvent::MmVmscanDirectReclaimBegin { order, gfp } => write!(
            w,
            "\"order\":{order},\"gfp_flags\":\"{}\"",
            ShowGfpFlags(gfp)
        ),
        TraceEvent::MmVmscanDirectReclaimEnd { nr_reclaimed } => {
            write!(w, "\"nr_reclaimed\":{nr_reclaimed}")
        }
        TraceEvent::MarkVictim { pid } => write!(w, "\"pid\":{pid}"),
        TraceEvent::MmPageAllocExtfrag {
            pfn,
            alloc_order,
            fallback_order,
            alloc_migratetype,
            fallback_migratetype,
            change_ownership,
        } => write!(
            w,
            "\"page\":\"{:#x}\",\"pfn\":{},\"alloc_order\":{alloc_order},\"fallback_order\":{fallback_order},\"pageblock_order\":{PAGEBLOCK_ORDER},\"alloc_migratetype\":{alloc_migratetype},\"fallback_migratetype\":{fallback_migratetype},\"fragmenting\":{},\"change_ownership\":{change_ownership}",
            page(pfn),
            pfn.0,
            (fallback_order as usize) < PAGEBLOCK_ORDER
        ),
        TraceEvent::MmCompactionBegin {
            zone_start,
            migrate_pfn,
            free_pfn,
            zone_end,
            sync,
        } => write!(
            w,
            "\"zone_start\":{zone_start},\"migrate_pfn\":{migrate_pfn},\"free_pfn\":{free_pfn},\"zone_end\":{zone_end},\"sync\":{sync}"
        ),
        TraceEvent::MmCompactionEnd {
            zone_start,
            migrate_pfn,
            free_pfn,
            zone_end,
            sync,
            status,
        } => write!(
            w,
            "\"zone_start\":{zone_start},\"migrate_pfn\":{migrate_pfn},\"free_pfn\":{free_pfn},\"zone_end\":{zone_end},\"sync\":{sync},\"status\":\"{status}\""
        ),
    };
    let _ = w.write_str("}}");
}

/// `s` as a JSON string (quotes, backslashes and control characters
/// escaped).
fn write_json_str(w: &mut BodyWriter, s: &str) -> core::fmt::Result {
    w.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            c if (c as u32) < 0x20 => write!(w, "\\u{:04x}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_str("\"")
}
