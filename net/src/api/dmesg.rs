//! The kernel log ring (cf. `kernel/printk/printk_ringbuffer.c`) and its
//! views: `GET /api/dmesg?since=SEQ` as `dmesg` prints it
//! (`[    1.234567] text`, one line per record) and `GET /api/dmesg.json`
//! as `{"records":[{"seq","ts_us","level","text"}]}`.
//!
//! [`LogRing`] is a fixed array of fixed-size records — no heap, so the
//! kernel's logger can append from anywhere, with any lock held; when full,
//! the oldest record goes (as printk's ring overwrites). A record longer
//! than [`LOG_LINE_MAX`] bytes is cut there. Sequence numbers never repeat,
//! so a reader can ask for what is new since the last record it saw.

use core::fmt::Write as _;

use serde::Serialize;

use super::Api;
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::{BodyWriter, CONTENT_TYPE_JSON, CONTENT_TYPE_TEXT, Response};
use mm::platform::Platform;

/// Bytes of text one record keeps.
pub const LOG_LINE_MAX: usize = 200;

/// Linux's console log levels (`include/linux/kern_levels.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[repr(u8)]
pub enum LogLevel {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// One record of the ring.
#[derive(Clone, Copy)]
pub struct LogRecord {
    pub seq: u64,
    /// Microseconds since boot.
    pub ts_us: u64,
    pub level: LogLevel,
    len: u8,
    text: [u8; LOG_LINE_MAX],
}

impl LogRecord {
    /// An unused slot: all zeroes (`Emerg` is 0), so a ring in a static
    /// lies in `.bss`. Never shown: only records pushed are.
    const EMPTY: LogRecord = LogRecord {
        seq: 0,
        ts_us: 0,
        level: LogLevel::Emerg,
        len: 0,
        text: [0; LOG_LINE_MAX],
    };

    /// The text (a cut in the middle of a UTF-8 sequence is dropped).
    pub fn text(&self) -> &str {
        let bytes = &self.text[..usize::from(self.len)];
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

/// A ring of `N` records; see the module docs.
pub struct LogRing<const N: usize> {
    records: [LogRecord; N],
    /// Sequence number the next record gets (the first is 0).
    next_seq: u64,
}

impl<const N: usize> Default for LogRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LogRing<N> {
    pub const fn new() -> Self {
        LogRing {
            records: [LogRecord::EMPTY; N],
            next_seq: 0,
        }
    }

    /// Append one line (no newline), cut at [`LOG_LINE_MAX`] bytes on a
    /// character boundary; the oldest record is overwritten when full.
    pub fn push(&mut self, ts_us: u64, level: LogLevel, text: &str) -> u64 {
        let mut end = text.len().min(LOG_LINE_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let seq = self.next_seq;
        let r = &mut self.records[(seq % N as u64) as usize];
        r.seq = seq;
        r.ts_us = ts_us;
        r.level = level;
        r.len = end as u8;
        r.text[..end].copy_from_slice(&text.as_bytes()[..end]);
        self.next_seq += 1;
        seq
    }

    /// The oldest sequence number still held.
    pub fn first_seq(&self) -> u64 {
        self.next_seq.saturating_sub(N as u64)
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The first record with `seq >= since` still held, copied out.
    pub fn first_since(&self, since: u64) -> Option<LogRecord> {
        let seq = since.max(self.first_seq());
        (seq < self.next_seq).then(|| self.records[(seq % N as u64) as usize])
    }
}

#[derive(Serialize)]
struct RecordJson<'r> {
    seq: u64,
    ts_us: u64,
    level: u8,
    text: &'r str,
}

impl<P: Platform> Api<'_, P> {
    /// The records from `?since=` on, one at a time (no lock is held
    /// while the answer is built).
    fn each_record(
        &self,
        req: &Request,
        mut f: impl FnMut(&LogRecord) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut seq = match req.query_param("since") {
            None => 0,
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|_| !s.starts_with('+'))
                .ok_or_else(|| ApiError::einval(alloc::format!("malformed since '{s}'")))?,
        };
        // Bounded: at most one ring's worth, even if the kernel keeps
        // logging while we read.
        for _ in 0..4096 {
            let Some(r) = self.system.log_record(seq) else {
                break;
            };
            f(&r)?;
            seq = r.seq + 1;
        }
        Ok(())
    }

    /// `GET /api/dmesg?since=SEQ`: text, `[seconds.micros] text` per line.
    pub(super) fn dmesg_text(&self, req: &Request) -> Result<Response, ApiError> {
        let mut w = BodyWriter::new();
        self.each_record(req, |r| {
            let (s, us) = (r.ts_us / 1_000_000, r.ts_us % 1_000_000);
            writeln!(w, "[{s:5}.{us:06}] {}", r.text())
                .map_err(|_| ApiError::enomem("out of memory building the response"))
        })?;
        Ok(w.finish(200, CONTENT_TYPE_TEXT)?)
    }

    /// `GET /api/dmesg.json?since=SEQ`.
    pub(super) fn dmesg_json(&self, req: &Request) -> Result<Response, ApiError> {
        let mut w = BodyWriter::new();
        w.write_bytes(br#"{"records":["#)?;
        let mut first = true;
        self.each_record(req, |r| {
            if !first {
                w.write_bytes(b",")?;
            }
            first = false;
            w.json(&RecordJson {
                seq: r.seq,
                ts_us: r.ts_us,
                level: r.level as u8,
                text: r.text(),
            })?;
            Ok(())
        })?;
        w.write_bytes(b"]}")?;
        Ok(w.finish(200, CONTENT_TYPE_JSON)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_records_with_unique_seqs() {
        let mut ring: LogRing<4> = LogRing::new();
        assert!(ring.first_since(0).is_none());
        for i in 0..6u64 {
            assert_eq!(
                ring.push(i * 10, LogLevel::Info, &std::format!("line {i}")),
                i
            );
        }
        assert_eq!((ring.first_seq(), ring.next_seq()), (2, 6));
        // Asking for an overwritten seq gives the oldest one held.
        let r = ring.first_since(0).unwrap();
        assert_eq!((r.seq, r.ts_us, r.text()), (2, 20, "line 2"));
        assert_eq!(ring.first_since(5).unwrap().text(), "line 5");
        assert!(ring.first_since(6).is_none());
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let mut ring: LogRing<2> = LogRing::new();
        let long = "é".repeat(150); // 300 bytes
        ring.push(0, LogLevel::Warning, &long);
        let r = ring.first_since(0).unwrap();
        assert_eq!(r.text().len(), LOG_LINE_MAX);
        assert!(r.text().chars().all(|c| c == 'é'));
        assert_eq!(r.level, LogLevel::Warning);
    }
}
