//! tracefs over HTTP (`/sys/kernel/tracing/…`, cf. `kernel/trace/trace.c`,
//! `kernel/trace/trace_events.c`): the files a Linux user drives with
//! `echo` and `cat`, over `mm::trace`'s tracepoints and ring.
//!
//! | path | GET | PUT |
//! |---|---|---|
//! | `trace` | header + every CPU's records merged by timestamp, not consumed | any body: clear the rings (what `echo > trace`'s `O_TRUNC` does) |
//! | `trace_pipe` | consuming, blocking: a stream of lines (`events.rs`) | — |
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
use mm::trace::{EventId, TraceRecord, Tracer, write_header};

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
        let t = self.tracer();
        let _stopped = t.pause();
        let mut w = BodyWriter::new();
        let _ = write_header(&mut w, &t.stats(), self.mm.nr_cpus());
        let mut cursor = t.cursor();
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
