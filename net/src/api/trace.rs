//! tracefs over HTTP (`/sys/kernel/tracing/…`, cf. `kernel/trace/trace.c`,
//! `kernel/trace/trace_events.c`): the files a Linux user drives with
//! `echo` and `cat`, over `mm::trace`'s tracepoints and ring.
//!
//! | path | GET | PUT |
//! |---|---|---|
//! | `trace` | header + every CPU's records merged by timestamp, not consumed | any body: clear the rings (what `echo > trace`'s `O_TRUNC` does) |
//! | `trace_pipe` | consuming, blocking: a stream of lines (`events.rs`) | — |
//! | `per_cpu/cpuN/trace` | as `trace`, CPU N's ring alone (the header still counts every CPU, as Linux's) | — |
//! | `per_cpu/cpuN/stats` | CPU N's counters (`tracing_stats_read()`) | — |
//! | `buffer_size_kb`, `per_cpu/cpuN/buffer_size_kb` | one ring's size in KiB (`X` if they differ) | — |
//! | `buffer_total_size_kb` | every ring's, summed | — |
//! | `available_events` | `system:event` lines | — |
//! | `events/enable`, `events/{system}/enable` | `0`, `1` or `X` (mixed) | `0`/`1` for all of them |
//! | `events/{system}/{event}/enable` | `0` or `1` | `0`/`1` |
//!
//! `trace` stops recording while it is rendered, as Linux stops tracing
//! while `trace` is open, so its own allocations never push out what it is
//! printing. It renders with the ring unlocked, in batches copied out of
//! it, into a [`BodyWriter`] (page-sized fallible pieces): a full ring
//! needs no contiguous buffer, and a heap that refuses a piece is 507.

use core::fmt::Write as _;

use alloc::format;

use mm::platform::Platform;
use mm::trace::{
    EventId, TRACE_RECORD_BYTES, TraceCursor, TraceRecord, Tracer, write_cpu_stats, write_header,
};

use super::Api;
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::{BodyWriter, CONTENT_TYPE_TEXT, Response};

/// Records copied out of the ring per lock hold.
const BATCH: usize = 32;

/// Which `enable` file a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EnableFile<'p> {
    /// `events/enable`: every event.
    All,
    /// `events/{system}/enable`.
    System(&'p str),
    /// `events/{system}/{event}/enable`.
    Event(&'p str, &'p str),
}

impl<'a, P: Platform> Api<'a, P> {
    fn tracer(&self) -> &Tracer<'a> {
        self.mm.tracer()
    }

    /// `GET /sys/kernel/tracing/trace`: every CPU's ring, merged by
    /// timestamp (cf. `s_show()` over `trace_find_next_entry()`).
    pub(super) fn trace_read(&self) -> Result<Response, ApiError> {
        self.trace_render(None)
    }

    /// `trace` over every CPU or, for `per_cpu/cpuN/trace`, one.
    fn trace_render(&self, cpu: Option<usize>) -> Result<Response, ApiError> {
        let t = self.tracer();
        let _stopped = t.pause();
        let mut w = BodyWriter::new();
        let _ = write_header(&mut w, &t.stats(), self.mm.nr_cpus());
        let mut cursor: TraceCursor = match cpu {
            None => t.cursor(),
            Some(cpu) => t.cpu_cursor(cpu),
        };
        let mut batch = [TraceRecord::EMPTY; BATCH];
        loop {
            let n = t.read(&mut cursor, &mut batch);
            if n == 0 {
                break;
            }
            for r in &batch[..n] {
                let _ = writeln!(w, "{}", r.line(t.page_base()));
            }
        }
        Ok(w.finish(200, CONTENT_TYPE_TEXT)?)
    }

    /// `GET /sys/kernel/tracing/per_cpu/{cpu}/{file}`: `cpu` is `cpuN`,
    /// N a CPU with a ring (Linux has a directory per tracing CPU).
    pub(super) fn trace_per_cpu(&self, dir: &str, file: &str) -> Result<Response, ApiError> {
        let t = self.tracer();
        let cpu = dir
            .strip_prefix("cpu")
            .filter(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| t.ring_entries(n) > 0)
            .ok_or_else(|| {
                ApiError::enoent(format!(
                    "no per_cpu/{dir}: CPUs with a ring are cpu0..cpu{}",
                    t.nr_rings().saturating_sub(1)
                ))
            })?;
        match file {
            "trace" => self.trace_render(Some(cpu)),
            "stats" => {
                let mut w = BodyWriter::new();
                let _ = write_cpu_stats(&mut w, &t.cpu_stats(cpu), self.mm.platform().now_ns());
                Ok(w.finish(200, CONTENT_TYPE_TEXT)?)
            }
            "buffer_size_kb" => {
                let mut w = BodyWriter::new();
                let _ = writeln!(w, "{}", ring_kb(t.ring_entries(cpu)));
                Ok(w.finish(200, CONTENT_TYPE_TEXT)?)
            }
            _ => Err(ApiError::enoent(format!(
                "no per_cpu/{dir}/{file}: there are trace, stats and buffer_size_kb"
            ))),
        }
    }

    /// `GET /sys/kernel/tracing/buffer_size_kb`: one ring's KiB if every
    /// CPU's is the same size, else `X` (cf. `tracing_entries_read()`; the
    /// rings are lent at full size, so never `(expanded: …)`).
    pub(super) fn trace_buffer_size_kb(&self) -> Result<Response, ApiError> {
        let t = self.tracer();
        let first = t.ring_entries(0);
        let mut w = BodyWriter::new();
        let _ = if (0..t.nr_rings()).all(|cpu| t.ring_entries(cpu) == first) {
            writeln!(w, "{}", ring_kb(first))
        } else {
            w.write_str("X\n")
        };
        Ok(w.finish(200, CONTENT_TYPE_TEXT)?)
    }

    /// `GET /sys/kernel/tracing/buffer_total_size_kb`: every ring's KiB,
    /// summed (cf. `tracing_total_entries_read()`).
    pub(super) fn trace_buffer_total_size_kb(&self) -> Result<Response, ApiError> {
        let t = self.tracer();
        let kb: u64 = (0..t.nr_rings())
            .map(|cpu| ring_kb(t.ring_entries(cpu)))
            .sum();
        let mut w = BodyWriter::new();
        let _ = writeln!(w, "{kb}");
        Ok(w.finish(200, CONTENT_TYPE_TEXT)?)
    }

    /// `PUT /sys/kernel/tracing/trace` (any body): empty the ring.
    pub(super) fn trace_clear(&self) -> Response {
        self.tracer().clear();
        Response::text(200, "")
    }

    /// `GET /sys/kernel/tracing/available_events`.
    pub(super) fn available_events(&self) -> Result<Response, ApiError> {
        let mut w = BodyWriter::new();
        for e in EventId::ALL {
            let _ = writeln!(w, "{}:{}", e.system(), e.name());
        }
        Ok(w.finish(200, CONTENT_TYPE_TEXT)?)
    }

    /// `GET …/enable`: `1` if every event the file covers is on, `0` if
    /// none, `X` if some (cf. `system_enable_read()`).
    pub(super) fn trace_enable_get(&self, file: EnableFile<'_>) -> Result<Response, ApiError> {
        let mask = enable_mask(file)?;
        let on = self.tracer().mask() & mask;
        let value = if on == mask {
            "1\n"
        } else if on == 0 {
            "0\n"
        } else {
            "X\n"
        };
        Ok(Response::text(200, value))
    }

    /// `PUT …/enable` with body `0` or `1` (a trailing newline is fine, as
    /// from `echo`); answers the new value.
    pub(super) fn trace_enable_set(
        &self,
        file: EnableFile<'_>,
        req: &Request,
    ) -> Result<Response, ApiError> {
        let mask = enable_mask(file)?;
        let on = match core::str::from_utf8(&req.body).map(str::trim) {
            Ok("0") => false,
            Ok("1") => true,
            _ => {
                return Err(ApiError::einval(
                    "write 0 (disable) or 1 (enable) to an enable file",
                ));
            }
        };
        self.tracer().set_enabled(mask, on);
        self.trace_enable_get(file)
    }
}

/// The events an `enable` file covers; 404 for an unknown system or event.
fn enable_mask(file: EnableFile<'_>) -> Result<u64, ApiError> {
    match file {
        EnableFile::All => Ok(EventId::ALL.iter().fold(0, |m, e| m | e.bit())),
        EnableFile::System(system) => match EventId::system_mask(system) {
            0 => Err(ApiError::enoent(format!("no trace system {system}"))),
            m => Ok(m),
        },
        EnableFile::Event(system, event) => EventId::lookup(system, event)
            .map(EventId::bit)
            .ok_or_else(|| ApiError::enoent(format!("no trace event {system}:{event}"))),
    }
}

/// A ring of `entries` records in KiB (`buffer_size_kb` is the per-CPU
/// buffer's bytes `>> 10`).
fn ring_kb(entries: usize) -> u64 {
    (entries as u64 * TRACE_RECORD_BYTES) >> 10
}
