//! Incremental HTTP/1.1 request parser (RFC 9112).
//!
//! [`RequestParser`] is fed bytes as the network delivers them — split
//! anywhere, several pipelined requests back to back — and hands out
//! complete [`Request`]s in order. It buffers at most one request head
//! ([`MAX_HEAD_BYTES`]) plus one body ([`MAX_BODY_BYTES`]) plus whatever the
//! last read brought beyond them, and refuses a too-large body as soon as
//! `Content-Length` announces it, without reading it.
//!
//! Decisions, all answered with 400 EINVAL unless noted:
//! - Only `HTTP/1.0` and `HTTP/1.1`; the request line is exactly
//!   `METHOD SP target SP version` (single spaces).
//! - Lines may end in CRLF or a bare LF; any other CR or control character
//!   is refused. Empty lines before a request line are skipped (RFC 9112
//!   §2.2) but count towards the head limit.
//! - `Transfer-Encoding` of any kind is refused with 400 (not 501): the API
//!   takes small JSON bodies and clients always know their length. The
//!   table of API.md has no 501, and a 400 keeps clients on one code path.
//! - `Content-Length` must be decimal digits; repeated (or listed) values
//!   must agree. One over [`MAX_BODY_BYTES`] → 413 E2BIG.
//! - Head (request line, headers, the blank line) over [`MAX_HEAD_BYTES`]
//!   → 431 E2BIG, also for a long request target.
//! - Header names are tokens; whitespace before the colon and obsolete
//!   line folding are refused (RFC 9112 §5.1, §5.2).
//! - Duplicate `Host`, `Authorization` or `Content-Type` are refused.
//!   A missing `Host` is tolerated (hand-typed requests).
//! - `Expect: 100-continue` on an HTTP/1.1 request whose body is still
//!   missing gets one `100 Continue` ([`RequestParser::take_continue`]).
//! - The path is percent-decoded and must be UTF-8; the query is kept raw
//!   (see [`query_param`], [`percent_decode`]). Absolute-form targets
//!   (`http://host/path`) are accepted; `*` only with OPTIONS.
//! - An error is final: the parser yields nothing more, and the connection
//!   answers and closes (the byte stream can no longer be trusted).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::server::error::ApiError;

/// Largest request head: request line, headers and the empty line.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Largest request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Request method. Methods outside the list parse as [`Method::Other`]
/// (the router answers them 405 on known paths, 404 elsewhere); a method
/// that is not even a token is a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Other,
}

impl Method {
    /// The methods this server knows, in the order `Allow` lists them.
    pub const ALL: [Method; 7] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Options,
        Method::Patch,
    ];

    /// The wire name (`"OTHER"` for [`Method::Other`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Other => "OTHER",
        }
    }

    /// Methods are case-sensitive (RFC 9110 §9.1): `get` is `Other`.
    fn from_token(token: &[u8]) -> Method {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str().as_bytes() == token)
            .unwrap_or(Method::Other)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Http10,
    Http11,
}

/// The request headers the server and the API use; the rest are checked
/// for syntax and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// `Content-Length`, if sent.
    pub content_length: Option<usize>,
    /// `Connection` lists `close`.
    pub connection_close: bool,
    /// `Connection` lists `keep-alive` (meaningful for HTTP/1.0).
    pub connection_keep_alive: bool,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub host: Option<String>,
    /// `Expect: 100-continue` (other expectations are ignored).
    pub expect_continue: bool,
    /// What `Accept-Encoding` says about gzip (the dashboard is sent
    /// gzip-compressed to clients that accept it).
    pub accept_encoding: AcceptEncoding,
}

/// The part of `Accept-Encoding` (RFC 9110 §12.5.3) the server acts on:
/// whether `gzip` is acceptable. All the request's `Accept-Encoding` lines
/// are one list. A coding is acceptable when listed with a weight above
/// zero (no `;q=` means 1); `x-gzip` is `gzip` (RFC 9110 §8.4.1.3); `*`
/// covers codings not listed; `q=0` refuses. No header, or an empty one,
/// accepts nothing but `identity` here (RFC 9110 lets a server pick any
/// coding then, but a plain `curl` wants the HTML). An element whose
/// weight is not a valid `qvalue` is ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptEncoding {
    /// `gzip` or `x-gzip` listed: whether every listing had weight > 0.
    gzip: Option<bool>,
    /// `*` listed: whether every listing had weight > 0.
    any: Option<bool>,
}

impl AcceptEncoding {
    /// Parse one field line's value (repeatable: lines accumulate).
    pub fn add(&mut self, value: &[u8]) {
        for element in value.split(|&b| b == b',') {
            let mut parts = element.split(|&b| b == b';');
            let coding = trim_ows(parts.next().unwrap_or_default());
            let mut acceptable = Some(true);
            for param in parts {
                let (name, v) = match param.iter().position(|&b| b == b'=') {
                    Some(eq) => (trim_ows(&param[..eq]), trim_ows(&param[eq + 1..])),
                    None => (trim_ows(param), &b""[..]),
                };
                if name.eq_ignore_ascii_case(b"q") {
                    acceptable = qvalue_nonzero(v);
                }
            }
            let Some(acceptable) = acceptable else {
                continue;
            };
            let slot =
                if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                    &mut self.gzip
                } else if coding == b"*" {
                    &mut self.any
                } else {
                    continue;
                };
            *slot = Some(slot.unwrap_or(true) && acceptable);
        }
    }

    /// Whether a gzip-coded body is acceptable.
    pub fn gzip(&self) -> bool {
        self.gzip.or(self.any).unwrap_or(false)
    }
}

/// RFC 9110 §12.4.2 `qvalue` (`0`, `0.5`, `1.000`, ...): whether it is
/// above zero, or `None` when it is not a `qvalue`.
fn qvalue_nonzero(v: &[u8]) -> Option<bool> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match int {
        b"0" => Some(frac.iter().any(|&d| d != b'0')),
        b"1" if frac.iter().all(|&d| d == b'0') => Some(true),
        _ => None,
    }
}

/// One complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Percent-decoded path, starting with `/` (or exactly `*`).
    pub path: String,
    /// Raw query string without the `?` (empty when absent).
    pub query: String,
    pub version: Version,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// Set by the connection when it hands the handler a request the
    /// handler parked earlier ([`crate::server::Response::pending`]): this
    /// call is a retry. `None` the first time.
    pub park: Option<Park>,
}

/// A parked request's retry: which wait it sleeps on and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Park {
    /// The token the handler parked it with (its last pending answer's).
    pub token: u64,
    /// When the connection first parked it (the connection's clock).
    pub since_ms: u64,
}

impl Request {
    /// Whether the connection stays open after the response: HTTP/1.1
    /// unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.headers.connection_close {
            return false;
        }
        match self.version {
            Version::Http11 => true,
            Version::Http10 => self.headers.connection_keep_alive,
        }
    }

    /// The token of `Authorization: Bearer <token>` (scheme matched
    /// case-insensitively).
    pub fn bearer_token(&self) -> Option<&str> {
        let auth = self.headers.authorization.as_deref()?.trim();
        let (scheme, token) = auth.split_once([' ', '\t'])?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// Raw value of query parameter `name` (see [`query_param`]).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_param(&self.query, name)
    }
}

/// Why a request was refused; [`HttpError::into_api_error`] maps it to
/// API.md's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// 400 EINVAL, with what was wrong.
    BadRequest(&'static str),
    /// 431 E2BIG: head over [`MAX_HEAD_BYTES`].
    HeadTooLarge,
    /// 413 E2BIG: `Content-Length` over [`MAX_BODY_BYTES`].
    BodyTooLarge,
}

impl HttpError {
    /// The HTTP status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge => 413,
        }
    }

    pub fn into_api_error(self) -> ApiError {
        match self {
            HttpError::BadRequest(why) => ApiError::einval(why),
            HttpError::HeadTooLarge => ApiError::e2big_head(),
            HttpError::BodyTooLarge => ApiError::e2big_body(),
        }
    }
}

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> ApiError {
        e.into_api_error()
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::HeadTooLarge => f.write_str("request head too large"),
            HttpError::BodyTooLarge => f.write_str("request body too large"),
        }
    }
}

/// A parsed head waiting for its body.
#[derive(Debug)]
struct Pending {
    request: Request,
    head_len: usize,
    body_len: usize,
}

/// The incremental parser; see the module doc.
#[derive(Debug, Default)]
pub struct RequestParser {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`; the fields below are
    /// relative to it so compaction moves nothing else.
    pos: usize,
    /// How far the current head has been searched for its end.
    scanned: usize,
    /// Start of the line being scanned.
    line_start: usize,
    /// A non-empty line (the request line) was seen in this head.
    seen_line: bool,
    pending: Option<Pending>,
    /// The pending head asked for `100 Continue`, not yet sent.
    continue_due: bool,
    failed: bool,
}

impl RequestParser {
    pub fn new() -> RequestParser {
        RequestParser::default()
    }

    /// Append received bytes. Ignored after an error.
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed || data.is_empty() {
            return;
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not yet handed out as a request.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether part of a request has arrived (for timeouts).
    pub fn has_partial(&self) -> bool {
        !self.failed && self.buffered() > 0
    }

    /// True once per request whose head carried `Expect: 100-continue` and
    /// whose body has not fully arrived: the caller then sends
    /// `HTTP/1.1 100 Continue` so the client stops waiting (curl waits
    /// 1 s otherwise). A body over the limit is refused instead.
    pub fn take_continue(&mut self) -> bool {
        core::mem::take(&mut self.continue_due)
    }

    /// Whether the parser refused the input; it yields nothing more.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The next complete request, an error (after which the parser is
    /// done), or `None` when more bytes are needed.
    pub fn next_request(&mut self) -> Option<Result<Request, HttpError>> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(Some(request)) => Some(Ok(request)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                self.buf = Vec::new();
                self.pos = 0;
                self.pending = None;
                Some(Err(e))
            }
        }
    }

    fn step(&mut self) -> Result<Option<Request>, HttpError> {
        if self.pending.is_none() {
            let Some(head_len) = self.find_head_end()? else {
                return Ok(None);
            };
            let head = &self.buf[self.pos..self.pos + head_len];
            let request = parse_head(head)?;
            let body_len = request.headers.content_length.unwrap_or(0);
            if body_len > MAX_BODY_BYTES {
                return Err(HttpError::BodyTooLarge);
            }
            self.continue_due = request.headers.expect_continue
                && request.version == Version::Http11
                && body_len > 0;
            self.pending = Some(Pending {
                request,
                head_len,
                body_len,
            });
        }
        let ready = self
            .pending
            .as_ref()
            .is_some_and(|p| self.buffered() >= p.head_len + p.body_len);
        if !ready {
            return Ok(None);
        }
        let Some(Pending {
            mut request,
            head_len,
            body_len,
        }) = self.pending.take()
        else {
            return Ok(None);
        };
        self.continue_due = false;
        let body_start = self.pos + head_len;
        request.body = self.buf[body_start..body_start + body_len].to_vec();
        self.pos = body_start + body_len;
        self.scanned = 0;
        self.line_start = 0;
        self.seen_line = false;
        if self.pos == self.buf.len() {
            // Keep-alive connections idle with no buffer at all: a buffer
            // kept across requests would stay wherever the heap put it
            // while memory was short (and a pipelining client grows it to
            // a multi-page block), long after the pressure is gone.
            self.buf = Vec::new();
            self.pos = 0;
        }
        Ok(Some(request))
    }

    /// Length of the head (through its empty line) if it is complete.
    fn find_head_end(&mut self) -> Result<Option<usize>, HttpError> {
        let avail = &self.buf[self.pos..];
        // Never look past the limit: a head ending later is too large.
        let window = avail.len().min(MAX_HEAD_BYTES);
        while self.scanned < window {
            let i = self.scanned;
            self.scanned += 1;
            if avail[i] != b'\n' {
                continue;
            }
            let line = &avail[self.line_start..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line_start = i + 1;
            if !line.is_empty() {
                self.seen_line = true;
            } else if self.seen_line {
                return Ok(Some(i + 1));
            }
        }
        if avail.len() >= MAX_HEAD_BYTES {
            return Err(HttpError::HeadTooLarge);
        }
        Ok(None)
    }
}

/// Parse a complete head (request line, header lines, empty line).
fn parse_head(head: &[u8]) -> Result<Request, HttpError> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let request_line = lines
        .next()
        .ok_or(HttpError::BadRequest("missing request line"))?;
    let (method, path, query, version) = parse_request_line(request_line)?;
    let mut headers = Headers::default();
    for line in lines {
        if line.is_empty() {
            // The final empty line (and the empty tail after its LF).
            continue;
        }
        parse_header_line(line, &mut headers)?;
    }
    Ok(Request {
        method,
        path,
        query,
        version,
        headers,
        body: Vec::new(),
        park: None,
    })
}

fn parse_request_line(line: &[u8]) -> Result<(Method, String, String, Version), HttpError> {
    const BAD: HttpError = HttpError::BadRequest("malformed request line");
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequest("malformed method"));
    }
    let method = Method::from_token(method);
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        _ => return Err(HttpError::BadRequest("unsupported HTTP version")),
    };
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(HttpError::BadRequest("malformed request target"));
    }
    // Visible ASCII only, so this cannot fail.
    let target = core::str::from_utf8(target).map_err(|_| BAD)?;
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let (target, absolute) = match strip_absolute_form(target) {
        Some(origin) => (origin, true),
        None => (target, false),
    };
    let (raw_path, query) = target.split_once('?').unwrap_or((target, ""));
    let raw_path = if absolute && raw_path.is_empty() {
        "/"
    } else {
        raw_path
    };
    let path = if raw_path == "*" && method == Method::Options && query.is_empty() {
        String::from("*")
    } else if raw_path.starts_with('/') {
        percent_decode(raw_path)
            .ok_or(HttpError::BadRequest("malformed percent-encoding in path"))?
    } else {
        return Err(HttpError::BadRequest("request target must start with /"));
    };
    Ok((method, path, String::from(query), version))
}

/// `http://host:port/p?q` → `/p?q` (RFC 9112 §3.2.2), `http://host?q` →
/// `?q` (the caller reads an empty path as `/`); others unchanged.
fn strip_absolute_form(target: &str) -> Option<&str> {
    ["http://", "https://"].into_iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        if !head.eq_ignore_ascii_case(scheme) {
            return None;
        }
        let rest = &target[scheme.len()..];
        Some(rest.find(['/', '?']).map_or("", |i| &rest[i..]))
    })
}

fn parse_header_line(line: &[u8], headers: &mut Headers) -> Result<(), HttpError> {
    if line.starts_with(b" ") || line.starts_with(b"\t") {
        return Err(HttpError::BadRequest("obsolete header line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpError::BadRequest("header line without colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequest("malformed header name"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HttpError::BadRequest("control character in header value"));
    }
    let value = trim_ows(value);
    let is = |want: &str| name.eq_ignore_ascii_case(want.as_bytes());
    if is("content-length") {
        let len = parse_content_length(value)?;
        if headers.content_length.is_some_and(|prev| prev != len) {
            return Err(HttpError::BadRequest("conflicting Content-Length headers"));
        }
        headers.content_length = Some(len);
    } else if is("transfer-encoding") {
        return Err(HttpError::BadRequest(
            "Transfer-Encoding is not supported; send Content-Length",
        ));
    } else if is("connection") {
        for option in value.split(|&b| b == b',').map(trim_ows) {
            if option.eq_ignore_ascii_case(b"close") {
                headers.connection_close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                headers.connection_keep_alive = true;
            }
        }
    } else if is("authorization") {
        set_once(
            &mut headers.authorization,
            value,
            "duplicate Authorization header",
        )?;
    } else if is("content-type") {
        set_once(
            &mut headers.content_type,
            value,
            "duplicate Content-Type header",
        )?;
    } else if is("host") {
        set_once(&mut headers.host, value, "duplicate Host header")?;
    } else if is("expect") {
        headers.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
    } else if is("accept-encoding") {
        headers.accept_encoding.add(value);
    }
    Ok(())
}

fn set_once(slot: &mut Option<String>, value: &[u8], dup: &'static str) -> Result<(), HttpError> {
    if slot.is_some() {
        return Err(HttpError::BadRequest(dup));
    }
    let value = core::str::from_utf8(value)
        .map_err(|_| HttpError::BadRequest("header value is not UTF-8"))?;
    *slot = Some(String::from(value));
    Ok(())
}

/// `Content-Length: 5` or the list form `5, 5` (RFC 9110 §8.6); values over
/// the body limit saturate so that they turn into a 413, not a 400.
fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    const BAD: HttpError = HttpError::BadRequest("malformed Content-Length");
    let mut result = None;
    for item in value.split(|&b| b == b',').map(trim_ows) {
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return Err(BAD);
        }
        let len = item.iter().fold(0usize, |acc, &d| {
            acc.saturating_mul(10)
                .saturating_add(usize::from(d - b'0'))
                .min(MAX_BODY_BYTES + 1)
        });
        if result.is_some_and(|prev| prev != len) {
            return Err(HttpError::BadRequest("conflicting Content-Length values"));
        }
        result = Some(len);
    }
    result.ok_or(BAD)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Decode `%XX` escapes; `None` if an escape is malformed or the result is
/// not UTF-8. `+` stays `+`.
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(String::from(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The raw (not percent-decoded) value of the first `name` parameter of a
/// query string `a=1&b=2`; a bare `name` gives `Some("")`. Decode with
/// [`percent_decode`] where a value may need it (addresses like `0x1000`
/// never do).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn parse_all(input: &[u8]) -> Vec<Result<Request, HttpError>> {
        let mut p = RequestParser::new();
        p.feed(input);
        let mut out = Vec::new();
        while let Some(r) = p.next_request() {
            out.push(r);
        }
        out
    }

    fn parse_one(input: &[u8]) -> Result<Request, HttpError> {
        let mut all = parse_all(input);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn err(input: &[u8]) -> HttpError {
        parse_one(input).expect_err("should be refused")
    }

    #[test]
    fn simple_get() {
        let r = parse_one(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/api/health");
        assert_eq!(r.query, "");
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.headers.host.as_deref(), Some("x"));
        assert!(r.body.is_empty());
        assert!(r.keep_alive());
    }

    #[test]
    fn post_with_body_and_headers() {
        let r = parse_one(
            b"POST /api/alloc?x=1 HTTP/1.1\r\ncontent-LENGTH:  13 \r\nContent-Type: application/json\r\n\
              Authorization: Bearer abc\r\n\r\n{\"type\":\"x\"}\n",
        )
        .unwrap();
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.query, "x=1");
        assert_eq!(r.headers.content_length, Some(13));
        assert_eq!(r.headers.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.bearer_token(), Some("abc"));
        assert_eq!(r.body, b"{\"type\":\"x\"}\n");
    }

    #[test]
    fn all_methods() {
        for (name, m) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Patch),
            ("BREW", Method::Other),
            ("get", Method::Other),
            ("M-SEARCH", Method::Other),
        ] {
            let line = std::format!("{name} / HTTP/1.1\r\n\r\n");
            assert_eq!(parse_one(line.as_bytes()).unwrap().method, m, "{name}");
        }
        assert_eq!(
            err(b"GE(T / HTTP/1.1\r\n\r\n"),
            HttpError::BadRequest("malformed method")
        );
    }

    #[test]
    fn bare_lf_and_leading_empty_lines() {
        let all = parse_all(b"\r\n\nGET /a HTTP/1.1\nHost: h\n\nGET /b HTTP/1.0\r\n\r\n");
        let paths: Vec<_> = all
            .iter()
            .map(|r| r.as_ref().unwrap().path.as_str())
            .collect();
        assert_eq!(paths, ["/a", "/b"]);
    }

    #[test]
    fn bad_request_lines() {
        let cases: &[(&[u8], &str)] = &[
            (b"GET\r\n\r\n", "malformed request line"),
            (b"GET /\r\n\r\n", "malformed request line"),
            (b"GET  / HTTP/1.1\r\n\r\n", "malformed request line"),
            (b"GET / HTTP/1.1 \r\n\r\n", "malformed request line"),
            (b" GET / HTTP/1.1\r\n\r\n", "malformed request line"),
            (b"GET / HTTP/1.1 extra\r\n\r\n", "malformed request line"),
            (b"GET / HTTP/2.0\r\n\r\n", "unsupported HTTP version"),
            (b"GET / http/1.1\r\n\r\n", "unsupported HTTP version"),
            (b"GET / HTTP/1.1\rX\r\n\r\n", "unsupported HTTP version"),
            (
                b"GET api HTTP/1.1\r\n\r\n",
                "request target must start with /",
            ),
            (
                b"GET * HTTP/1.1\r\n\r\n",
                "request target must start with /",
            ),
            (b"GET /a\x7fb HTTP/1.1\r\n\r\n", "malformed request target"),
            (
                b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
                "malformed request target",
            ),
            (
                b"GET /%zz HTTP/1.1\r\n\r\n",
                "malformed percent-encoding in path",
            ),
            (
                b"GET /%4 HTTP/1.1\r\n\r\n",
                "malformed percent-encoding in path",
            ),
            (
                b"GET /%ff HTTP/1.1\r\n\r\n",
                "malformed percent-encoding in path",
            ),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
                "malformed request line",
            ),
        ];
        for &(input, why) in cases {
            assert_eq!(
                err(input),
                HttpError::BadRequest(why),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        // TLS client hello without any line end: waits, then 431.
        let mut p = RequestParser::new();
        p.feed(&[0x16; 100]);
        assert!(p.next_request().is_none());
        p.feed(&[0x16; MAX_HEAD_BYTES]);
        assert_eq!(p.next_request(), Some(Err(HttpError::HeadTooLarge)));
    }

    #[test]
    fn targets() {
        let r = parse_one(b"GET /a%20b/%2Fc?addr=0x1000&x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.path, "/a b//c");
        assert_eq!(r.query_param("addr"), Some("0x1000"));
        assert_eq!(r.query_param("x"), Some(""));
        assert_eq!(r.query_param("y"), None);
        let r = parse_one(b"GET http://10.0.2.15:80/api/zones?q=1 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/api/zones", "q=1"));
        let r = parse_one(b"GET HTTP://host HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.path, "/");
        let r = parse_one(b"GET http://host?a=b HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/", "a=b"));
        let r = parse_one(b"OPTIONS * HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.path, "*");
        let r = parse_one(b"GET /p#frag HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.path, "/p");
        let r = parse_one(b"GET /caf%C3%A9 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.path, "/caf\u{e9}");
    }

    #[test]
    fn header_errors() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
                "header line without colon",
            ),
            (
                b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
                "malformed header name",
            ),
            (b"GET / HTTP/1.1\r\n: x\r\n\r\n", "malformed header name"),
            (
                b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
                "obsolete header line folding",
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n",
                "control character in header value",
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
                "control character in header value",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
                "duplicate Host header",
            ),
            (
                b"GET / HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
                "duplicate Authorization header",
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Type: a\r\nContent-Type: a\r\n\r\n",
                "duplicate Content-Type header",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n",
                "header value is not UTF-8",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "Transfer-Encoding is not supported; send Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding is not supported; send Content-Length",
            ),
        ];
        for &(input, why) in cases {
            assert_eq!(
                err(input),
                HttpError::BadRequest(why),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        // obs-text in an unused header is fine; so is an empty value.
        let r = parse_one(b"GET / HTTP/1.1\r\nX-Name: caf\xe9\r\nX-Empty:\r\n\r\n").unwrap();
        assert_eq!(r.path, "/");
    }

    #[test]
    fn content_length_rules() {
        let bad: &[(&[u8], &str)] = &[
            (
                b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
                "malformed Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                "malformed Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
                "malformed Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
                "malformed Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
                "malformed Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1,\r\n\r\n",
                "malformed Content-Length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
                "conflicting Content-Length values",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                "conflicting Content-Length headers",
            ),
        ];
        for &(input, why) in bad {
            assert_eq!(
                err(input),
                HttpError::BadRequest(why),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        // Identical duplicates are accepted (RFC 9110 §8.6).
        let r =
            parse_one(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok")
                .unwrap();
        assert_eq!(r.body, b"ok");
        // Leading zeros are still decimal.
        let r = parse_one(b"POST / HTTP/1.1\r\nContent-Length: 002\r\n\r\nok").unwrap();
        assert_eq!(r.body, b"ok");
        // Missing Content-Length means no body, even for POST.
        let all = parse_all(b"POST /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
        assert_eq!(all.len(), 2);
        assert!(all[0].as_ref().unwrap().body.is_empty());
    }

    #[test]
    fn body_limit_refused_up_front() {
        let mut p = RequestParser::new();
        p.feed(b"POST /api/alloc HTTP/1.1\r\nContent-Length: 65537\r\n\r\n");
        assert_eq!(p.next_request(), Some(Err(HttpError::BodyTooLarge)));
        assert!(p.failed());
        assert_eq!(p.buffered(), 0);
        p.feed(b"more");
        assert_eq!(p.next_request(), None);
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n"),
            HttpError::BodyTooLarge
        );
        // Exactly the limit is fine.
        let mut input = Vec::from(&b"PUT / HTTP/1.1\r\nContent-Length: 65536\r\n\r\n"[..]);
        input.extend(vec![b'z'; MAX_BODY_BYTES]);
        assert_eq!(parse_one(&input).unwrap().body.len(), MAX_BODY_BYTES);
    }

    #[test]
    fn head_limit_exact() {
        // A head of exactly MAX_HEAD_BYTES passes; one more byte is refused.
        let build = |len: usize| {
            let prefix = b"GET / HTTP/1.1\r\nX: ";
            let mut v = Vec::from(&prefix[..]);
            v.resize(len - 4, b'a');
            v.extend_from_slice(b"\r\n\r\n");
            assert_eq!(v.len(), len);
            v
        };
        assert!(parse_one(&build(MAX_HEAD_BYTES)).is_ok());
        assert_eq!(err(&build(MAX_HEAD_BYTES + 1)), HttpError::HeadTooLarge);
        // Refused before the end arrives.
        let mut p = RequestParser::new();
        p.feed(&build(MAX_HEAD_BYTES + 100)[..MAX_HEAD_BYTES]);
        assert_eq!(p.next_request(), Some(Err(HttpError::HeadTooLarge)));
        // Long request target is a head problem too.
        let mut long = Vec::from(&b"GET /"[..]);
        long.extend(vec![b'a'; MAX_HEAD_BYTES]);
        long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(err(&long), HttpError::HeadTooLarge);
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let input: &[u8] = b"POST /a?q=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
                             GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
                             DELETE /c HTTP/1.1\r\nConnection: close\r\n\r\n";
        let whole: Vec<Request> = parse_all(input).into_iter().map(Result::unwrap).collect();
        assert_eq!(whole.len(), 3);
        for split in 0..=input.len() {
            let mut p = RequestParser::new();
            let mut got = Vec::new();
            for part in [&input[..split], &input[split..]] {
                p.feed(part);
                while let Some(r) = p.next_request() {
                    got.push(r.unwrap());
                }
            }
            assert_eq!(got, whole, "split at {split}");
        }
        // Byte by byte.
        let mut p = RequestParser::new();
        let mut got = Vec::new();
        for b in input {
            p.feed(&[*b]);
            while let Some(r) = p.next_request() {
                got.push(r.unwrap());
            }
        }
        assert_eq!(got, whole);
        assert_eq!(p.buffered(), 0);
        assert!(!p.has_partial());
    }

    #[test]
    fn expect_continue_once_until_the_body_arrives() {
        let mut p = RequestParser::new();
        p.feed(b"POST /a HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n");
        assert!(!p.take_continue());
        assert_eq!(p.next_request(), None);
        assert!(p.take_continue());
        assert!(!p.take_continue());
        p.feed(b"ok");
        assert_eq!(p.next_request().unwrap().unwrap().body, b"ok");
        assert!(!p.take_continue());
        // Body already there, HTTP/1.0, or no body: no interim answer.
        for input in [
            &b"POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"[..],
            b"POST /a HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            b"POST /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        ] {
            let mut p = RequestParser::new();
            p.feed(input);
            let _ = p.next_request();
            assert!(!p.take_continue(), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |input: &[u8]| parse_one(input).unwrap().keep_alive();
        assert!(ka(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
    }

    #[test]
    fn accept_encoding_gzip() {
        let gz = |lines: &[&str]| {
            let mut head = String::from("GET / HTTP/1.1\r\n");
            for line in lines {
                head.push_str(&format!("Accept-Encoding: {line}\r\n"));
            }
            head.push_str("\r\n");
            parse_one(head.as_bytes())
                .unwrap()
                .headers
                .accept_encoding
                .gzip()
        };
        assert!(!gz(&[]));
        assert!(!gz(&[""]));
        assert!(gz(&["gzip"]));
        assert!(gz(&["gzip, deflate, br, zstd"]));
        assert!(gz(&["x-gzip"]));
        assert!(gz(&["Gzip;Q=0.5"]));
        assert!(gz(&["gzip;q=0.001"]));
        assert!(gz(&["gzip;q=1.000"]));
        assert!(gz(&["gzip ;\tq=1. , br"]));
        assert!(gz(&["*"]));
        assert!(gz(&["br;q=0, *;q=0.1"]));
        assert!(gz(&["br", "gzip"]));
        assert!(!gz(&["gzip;q=0"]));
        assert!(!gz(&["gzip;q=0.000"]));
        assert!(!gz(&["gzip;q=0, *"]));
        assert!(!gz(&["*, gzip;q=0"]));
        assert!(!gz(&["*;q=0"]));
        assert!(!gz(&["gzip", "gzip;q=0"]));
        assert!(!gz(&["identity"]));
        assert!(!gz(&["gzipped, gzip-ish, xgzip"]));
        // Not qvalues: the element is ignored.
        assert!(!gz(&["gzip;q=2"]));
        assert!(!gz(&["gzip;q=0.0001"]));
        assert!(!gz(&["gzip;q=1.5"]));
        assert!(!gz(&["gzip;q="]));
        assert!(!gz(&["gzip;q"]));
        assert!(gz(&["gzip;q=x, *"]));
        // Other parameters do not matter.
        assert!(gz(&["gzip;level=9"]));
    }

    #[test]
    fn bearer_token_forms() {
        let tok = |auth: &str| {
            let input = std::format!("GET / HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n");
            parse_one(input.as_bytes())
                .unwrap()
                .bearer_token()
                .map(String::from)
        };
        assert_eq!(tok("Bearer s3cret").as_deref(), Some("s3cret"));
        assert_eq!(tok("bearer   s3cret").as_deref(), Some("s3cret"));
        assert_eq!(tok("Basic dXNlcjpwdw=="), None);
        assert_eq!(tok("Bearer"), None);
        assert_eq!(tok("Bearer "), None);
        assert_eq!(tok("Bearers x"), None);
    }

    #[test]
    fn query_strings_and_decoding() {
        assert_eq!(query_param("a=1&b=2&a=3", "a"), Some("1"));
        assert_eq!(query_param("a=1&b=2", "b"), Some("2"));
        assert_eq!(query_param("", "a"), None);
        assert_eq!(query_param("ab=1", "a"), None);
        assert_eq!(query_param("order=3&", "order"), Some("3"));
        assert_eq!(query_param("x==y", "x"), Some("=y"));
        assert_eq!(percent_decode("a%2b+c").as_deref(), Some("a++c"));
        assert_eq!(percent_decode("%").as_deref(), None);
        assert_eq!(percent_decode("%c3").as_deref(), None);
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: random bytes biased towards HTTP
        // syntax, fed in random splits.
        let alphabet: &[u8] = b"GET POST HTTP/1.1\r\n:Content-Length 0123456789 %/?&=\x00\xff";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let len = (next() % 300) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut p = RequestParser::new();
            let mut at = 0;
            while at < input.len() {
                let n = 1 + (next() % 40) as usize;
                let end = (at + n).min(input.len());
                p.feed(&input[at..end]);
                at = end;
                while let Some(r) = p.next_request() {
                    if r.is_err() {
                        assert!(p.failed());
                    }
                }
            }
            assert!(p.buffered() <= MAX_HEAD_BYTES + MAX_BODY_BYTES + 40);
        }
    }
}
