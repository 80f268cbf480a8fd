//! HTTP responses and their wire form.
//!
//! Every response carries `Content-Length` (a client can always tell where
//! it ends, which keeps pipelining simple), but for a *stream*
//! ([`Response::stream`]: `trace_pipe`, Server-Sent Events), whose end
//! nobody knows in advance: it goes out with `Transfer-Encoding: chunked`
//! (RFC 9112 §7.1), or to HTTP/1.0 clients delimited by the close. `204`
//! and `304` carry neither a length nor a body, as RFC 9110 §8.6 requires.
//! The body is a `Cow` so the embedded dashboard assets (`&'static [u8]`)
//! are sent straight from the image without a copy.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use serde::Serialize;

use crate::server::error::ApiError;
use crate::server::json;

/// `Content-Type` of JSON bodies.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Type` of plain-text bodies (`/proc/...`, `/metrics`).
pub const CONTENT_TYPE_TEXT: &str = "text/plain; charset=utf-8";

/// A response as built by a handler; [`Response::head_bytes`] renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// `Content-Type`; omitted from the wire when empty.
    pub content_type: &'static str,
    /// Further headers (`Allow`, `Cache-Control`, ...). `Content-Length`,
    /// `Content-Type` and `Connection` are written by the serializer and
    /// must not appear here. CR and LF in values are replaced by spaces.
    pub headers: Vec<(&'static str, String)>,
    pub body: Cow<'static, [u8]>,
    /// Further pieces of the body, sent after `body` in order. A large
    /// view is built by [`BodyWriter`] in pieces of at most
    /// [`PIECE_BYTES`], each its own (fallible) allocation, so it never
    /// needs one contiguous high-order buffer from a memory-starved heap.
    pub tail: Vec<Vec<u8>>,
    /// Not an answer yet: the handler parked the request (see
    /// [`Response::pending`]). Such a response is never sent.
    pub pending: Option<Pending>,
    /// A stream goes on after this body (see [`Response::stream`]): the
    /// connection asks the handler for more under this token.
    pub stream: Option<Pending>,
}

/// A handler's "not yet": the request sleeps on the handler's wait queue
/// under `token`, until `until_ms` at the latest (the clock the
/// connection is polled with). The connection keeps the request, answers
/// nothing after it (pipelined requests wait their turn), and hands it to
/// the handler again on every later poll with [`crate::server::http::Park`]
/// set, until the handler answers; it polls by `until_ms` at the latest,
/// so the handler must answer then. Should the client go away first, the
/// server calls [`crate::server::stack::App::cancel`] with the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The handler's name for the wait (opaque to the server).
    pub token: u64,
    /// The latest time the handler must be asked again.
    pub until_ms: u64,
}

/// Which `Connection` header the serializer adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// None: HTTP/1.1 keep-alive is the default.
    Default,
    /// `Connection: close`: the server closes after this response.
    Close,
    /// `Connection: keep-alive`: an HTTP/1.0 client asked to keep it open.
    KeepAlive,
}

impl Response {
    /// `status` with `value` serialized as JSON. Should the value be too
    /// large to serialize (over [`json::MAX_JSON_BYTES`]), or the heap
    /// refuse the buffer, the answer is a 507 ENOMEM error instead.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        match json::to_vec(value) {
            Ok(body) => Response::bytes(status, CONTENT_TYPE_JSON, body),
            Err(json::JsonError::TooLarge) => {
                ApiError::enomem("response too large to serialize").into_response()
            }
            Err(json::JsonError::NoMemory) => {
                ApiError::enomem("out of memory building the response").into_response()
            }
        }
    }

    /// `status` with a UTF-8 plain-text body.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::bytes(status, CONTENT_TYPE_TEXT, body.into().into_bytes())
    }

    /// `status` with any body: an owned `Vec<u8>` or a `&'static [u8]`.
    pub fn bytes(
        status: u16,
        content_type: &'static str,
        body: impl Into<Cow<'static, [u8]>>,
    ) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
            tail: Vec::new(),
            pending: None,
            stream: None,
        }
    }

    /// No answer yet: park the request (see [`Pending`]). Status 0 and no
    /// body; a connection never puts it on the wire.
    pub fn pending(token: u64, until_ms: u64) -> Response {
        Response {
            pending: Some(Pending { token, until_ms }),
            ..Response::empty(0)
        }
    }

    /// The head and first bytes of a stream that goes on: the connection
    /// sends them at once (chunked), then hands the request back, with
    /// [`crate::server::http::Park`] set to `token`, whenever it has room
    /// for more and at `until_ms` at the latest. Each such call answers
    /// [`Response::stream_more`] (its body is the next piece; empty is
    /// fine) to go on, or anything else to end the stream (its body is the
    /// last piece; status and headers are ignored, they went out first).
    /// A client that goes away ends it too, through
    /// [`crate::server::stack::App::cancel`] with the token. A reader that
    /// does not keep up is not asked (the queue stays bounded): what the
    /// handler produces meanwhile is its to drop.
    pub fn stream(
        status: u16,
        content_type: &'static str,
        body: impl Into<Cow<'static, [u8]>>,
        token: u64,
        until_ms: u64,
    ) -> Response {
        Response {
            stream: Some(Pending { token, until_ms }),
            ..Response::bytes(status, content_type, body)
        }
    }

    /// The next piece of a stream, which goes on (see [`Response::stream`]).
    pub fn stream_more(body: impl Into<Cow<'static, [u8]>>, token: u64, until_ms: u64) -> Response {
        Response::stream(200, "", body, token, until_ms)
    }

    /// `status` without a body (e.g. `204`).
    pub fn empty(status: u16) -> Response {
        Response::bytes(status, "", &[][..])
    }

    /// Add a header (builder style).
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The value of header `name` (ASCII case-insensitive) among the extra
    /// headers.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this status is sent without `Content-Length` and body.
    fn bodiless(&self) -> bool {
        self.status == 204 || self.status == 304 || (100..200).contains(&self.status)
    }

    /// Status line and headers, up to and including the empty line.
    pub fn head_bytes(&self, connection: ConnectionHeader) -> Vec<u8> {
        self.head_bytes_framed(connection, true)
    }

    /// The head of a stream ([`Response::stream`]): `chunked` for an
    /// HTTP/1.1 client; else no framing header, the body ends with the
    /// connection (`connection` should then be `Close`).
    pub fn stream_head_bytes(&self, connection: ConnectionHeader, chunked: bool) -> Vec<u8> {
        self.head_bytes_framed(connection, chunked)
    }

    fn head_bytes_framed(&self, connection: ConnectionHeader, chunked: bool) -> Vec<u8> {
        let mut head = String::with_capacity(128 + self.headers.len() * 32);
        // `fmt::Write` for `String` cannot fail.
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        if !self.content_type.is_empty() {
            push_header(&mut head, "Content-Type", self.content_type);
        }
        if self.stream.is_some() {
            // A stream's end is unknown: chunked for HTTP/1.1, the close
            // for HTTP/1.0 (see `stream_head_bytes`).
            if chunked {
                head.push_str("Transfer-Encoding: chunked\r\n");
            }
        } else if !self.bodiless() {
            let _ = write!(head, "Content-Length: {}\r\n", self.body_len());
        }
        for (name, value) in &self.headers {
            push_header(&mut head, name, value);
        }
        match connection {
            ConnectionHeader::Default => {}
            ConnectionHeader::Close => head.push_str("Connection: close\r\n"),
            ConnectionHeader::KeepAlive => head.push_str("Connection: keep-alive\r\n"),
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// Bytes of the whole body (`body` and every `tail` piece).
    pub fn body_len(&self) -> usize {
        self.body.len() + self.tail.iter().map(Vec::len).sum::<usize>()
    }

    /// The whole body in one buffer (tests, diagnostics).
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut all = self.body.to_vec();
        for piece in &self.tail {
            all.extend_from_slice(piece);
        }
        all
    }

    /// Split into what goes on the wire: the head, then the body pieces
    /// (none for HEAD and bodiless statuses). A small single-piece body is
    /// appended to the head so that one `send` carries both; larger ones
    /// stay as they are (a `'static` asset is never copied).
    pub fn into_wire(
        self,
        head_request: bool,
        connection: ConnectionHeader,
    ) -> (Vec<u8>, Cow<'static, [u8]>, Vec<Vec<u8>>) {
        const INLINE_BODY_BYTES: usize = 2048;
        let mut head = self.head_bytes(connection);
        if head_request || self.bodiless() {
            return (head, Cow::Borrowed(&[]), Vec::new());
        }
        if self.tail.is_empty() && self.body.len() <= INLINE_BODY_BYTES {
            head.extend_from_slice(&self.body);
            return (head, Cow::Borrowed(&[]), Vec::new());
        }
        (head, self.body, self.tail)
    }

    /// The whole response as bytes (tests, diagnostics). `head_request`
    /// drops the body but keeps the GET `Content-Length`.
    pub fn to_bytes(&self, head_request: bool, connection: ConnectionHeader) -> Vec<u8> {
        let mut out = self.head_bytes(connection);
        if !(head_request || self.bodiless()) {
            out.extend_from_slice(&self.body_bytes());
        }
        out
    }
}

/// Largest piece [`BodyWriter`] allocates: a kmalloc-4096 object, one
/// page, never a multi-page `kmalloc_large` block.
pub const PIECE_BYTES: usize = 4096;

/// The heap refused a piece of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

impl From<OutOfMemory> for ApiError {
    fn from(_: OutOfMemory) -> ApiError {
        ApiError::enomem("out of memory building the response")
    }
}

/// An empty `String` with room for `capacity` bytes, or [`OutOfMemory`]
/// when the heap cannot give it (`String::with_capacity` would abort).
pub fn try_string(capacity: usize) -> Result<String, OutOfMemory> {
    let mut s = String::new();
    s.try_reserve_exact(capacity).map_err(|_| OutOfMemory)?;
    Ok(s)
}

/// An empty `Vec` with room for `capacity` items, or [`OutOfMemory`].
pub fn try_vec<T>(capacity: usize) -> Result<Vec<T>, OutOfMemory> {
    let mut v = Vec::new();
    v.try_reserve_exact(capacity).map_err(|_| OutOfMemory)?;
    Ok(v)
}

/// A response body written in page-sized pieces, every allocation
/// fallible (cf. `seq_file`, which fills a view page by page): as
/// `fmt::Write` for text, [`BodyWriter::json`] for one JSON value at a
/// time. The first failed allocation sticks ([`BodyWriter::finish`] then
/// answers [`OutOfMemory`]) and later writes are dropped, so a view
/// renderer can write on and check once.
#[derive(Debug, Default)]
pub struct BodyWriter {
    pieces: Vec<Vec<u8>>,
    failed: bool,
}

impl BodyWriter {
    pub fn new() -> BodyWriter {
        BodyWriter::default()
    }

    /// Append `bytes`, opening new pieces as the last one fills.
    pub fn write_bytes(&mut self, mut bytes: &[u8]) -> Result<(), OutOfMemory> {
        if self.failed {
            return Err(OutOfMemory);
        }
        while !bytes.is_empty() {
            let room = self.pieces.last().map_or(0, |p| PIECE_BYTES - p.len());
            if room == 0 {
                if self.pieces.try_reserve(1).is_err() {
                    self.failed = true;
                    return Err(OutOfMemory);
                }
                let mut piece = Vec::new();
                if piece.try_reserve_exact(PIECE_BYTES).is_err() {
                    self.failed = true;
                    return Err(OutOfMemory);
                }
                self.pieces.push(piece);
                continue;
            }
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            if let Some(last) = self.pieces.last_mut() {
                // Within the capacity reserved above: no allocation.
                last.extend_from_slice(now);
            }
            bytes = rest;
        }
        Ok(())
    }

    /// Append `value` as compact JSON (serialized on its own first, so it
    /// should be one element of a list, not the whole list).
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), OutOfMemory> {
        match json::to_vec(value) {
            Ok(bytes) => self.write_bytes(&bytes),
            Err(_) => {
                self.failed = true;
                Err(OutOfMemory)
            }
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pieces.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The response, or [`OutOfMemory`] if any piece could not be had.
    pub fn finish(self, status: u16, content_type: &'static str) -> Result<Response, OutOfMemory> {
        if self.failed {
            return Err(OutOfMemory);
        }
        let mut pieces = self.pieces.into_iter();
        let first = pieces.next().unwrap_or_default();
        let mut response = Response::bytes(status, content_type, first);
        response.tail = pieces.collect();
        Ok(response)
    }
}

impl fmt::Write for BodyWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Response {
        e.into_response()
    }
}

fn push_header(head: &mut String, name: &str, value: &str) {
    head.push_str(name);
    head.push_str(": ");
    // No header splitting, whatever a handler put in a value.
    head.extend(
        value
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
    );
    head.push_str("\r\n");
}

/// RFC 9110 §15 reason phrases; empty for codes we never send (allowed:
/// clients must ignore the phrase).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        uptime_ms: u64,
    }

    #[test]
    fn json_response_bytes() {
        let r = Response::json(
            200,
            &Health {
                status: "ok",
                uptime_ms: 7,
            },
        );
        assert_eq!(
            r.to_bytes(false, ConnectionHeader::Default),
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n\
              {\"status\":\"ok\",\"uptime_ms\":7}"
                .as_slice()
        );
    }

    #[test]
    fn head_keeps_length_drops_body() {
        let r = Response::text(200, "hello\n");
        assert_eq!(
            r.to_bytes(true, ConnectionHeader::Close),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n\
              Connection: close\r\n\r\n"
                .as_slice()
        );
    }

    #[test]
    fn extra_headers_and_keep_alive() {
        static ASSET: &[u8] = b"body{}";
        let r = Response::bytes(200, "text/css", ASSET).with_header("Cache-Control", "no-cache");
        assert!(matches!(r.body, Cow::Borrowed(_)));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert_eq!(
            r.to_bytes(false, ConnectionHeader::KeepAlive),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nContent-Length: 6\r\n\
              Cache-Control: no-cache\r\nConnection: keep-alive\r\n\r\nbody{}"
                .as_slice()
        );
    }

    #[test]
    fn header_values_cannot_split() {
        let r = Response::empty(204).with_header("X-Evil", "a\r\nSet-Cookie: x");
        assert_eq!(
            r.to_bytes(false, ConnectionHeader::Default),
            b"HTTP/1.1 204 No Content\r\nX-Evil: a  Set-Cookie: x\r\n\r\n".as_slice()
        );
    }

    #[test]
    fn body_writer_pieces_are_page_sized_and_sent_in_order() {
        use core::fmt::Write as _;
        let mut w = BodyWriter::new();
        for i in 0..3000 {
            writeln!(w, "line {i}").unwrap();
        }
        let expected: String = (0..3000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(w.len(), expected.len());
        let r = w.finish(200, CONTENT_TYPE_TEXT).unwrap();
        assert!(r.body.len() == PIECE_BYTES && r.tail.iter().all(|p| p.len() <= PIECE_BYTES));
        assert_eq!(r.tail.len(), expected.len().div_ceil(PIECE_BYTES) - 1);
        assert_eq!(r.body_bytes(), expected.as_bytes());
        let wire = r.to_bytes(false, ConnectionHeader::Default);
        let head = format!("Content-Length: {}\r\n", expected.len());
        assert!(wire.windows(head.len()).any(|w| w == head.as_bytes()));
        assert!(wire.ends_with(expected.as_bytes()));
        let (_, body, tail) = r.into_wire(false, ConnectionHeader::Default);
        assert_eq!(
            body.len() + tail.iter().map(Vec::len).sum::<usize>(),
            expected.len()
        );
    }

    #[test]
    fn bodiless_statuses_have_no_length() {
        let mut r = Response::text(204, "ignored");
        assert!(
            r.to_bytes(false, ConnectionHeader::Default)
                .ends_with(b"\r\n\r\n")
        );
        r.status = 201;
        assert!(
            r.to_bytes(false, ConnectionHeader::Default)
                .ends_with(b"\r\n\r\nignored")
        );
        assert_eq!(
            Response::empty(201).to_bytes(false, ConnectionHeader::Default),
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n".as_slice()
        );
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(413), "Content Too Large");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(507), "Insufficient Storage");
        assert_eq!(reason_phrase(299), "");
        assert!(
            Response::empty(299)
                .to_bytes(false, ConnectionHeader::Default)
                .starts_with(b"HTTP/1.1 299 \r\n")
        );
    }
}
