//! One HTTP connection: bytes in, requests to the handler, responses out.
//!
//! [`Connection::poll`] never blocks. Each call reads what the [`Stream`]
//! has, answers every complete request in arrival order (pipelining),
//! queues the answers and writes as much as the stream accepts; the rest
//! drains on later polls. Memory per connection is bounded: the parser
//! holds at most one head (8 KiB) and one body (64 KiB) plus one read, and
//! no new request is answered while more than [`OUT_QUEUE_SOFT_LIMIT`]
//! bytes wait to be sent (so the queue is at most that plus one response;
//! TCP flow control then holds the client back).
//!
//! The connection closes (calls [`Stream::close`] and reports
//! [`ConnState::Closed`]) after: an answer to `Connection: close` or to an
//! HTTP/1.0 request without keep-alive; an error answer to malformed input
//! (400/413/431 — the rest of the stream cannot be trusted); the peer's
//! end of stream once everything complete is answered; a stream error;
//! [`ConnConfig::idle_timeout_ms`] without any byte moving either way; or
//! [`ConnConfig::request_timeout_ms`] with one request still incomplete
//! (a client trickling bytes cannot hold a socket forever). Timed-out
//! connections are closed silently, as Linux servers commonly do.
//!
//! With a [`ConnConfig::token`], every request but GET and HEAD must carry
//! `Authorization: Bearer <token>`, else it gets 401 EACCES (API.md) and
//! never reaches the handler.
//!
//! **Parked requests.** A handler may answer "not yet"
//! ([`Response::pending`]: a request sleeping on a wait queue, e.g. an
//! allocation with `wait_ms`). The connection then keeps that request and
//! hands it to the handler again — marked as a retry with
//! [`crate::server::http::Park`] — on every later poll, until it answers;
//! the handler owns the waiting and its deadline, the connection only
//! promises to ask by the `until_ms` it was given ([`Connection::deadline_ms`]
//! reports it, so the main loop's timer fires in time). Meanwhile it reads
//! nothing more (pipelined requests wait their turn in order; TCP holds
//! the rest back), answers nothing, and neither times out as idle nor as a
//! slow request. A retry that stays pending changes nothing a caller can
//! see, so it is not progress. A peer that closes its side while its
//! request is parked has gone away (as nginx treats a client abort): the
//! connection closes and [`Connection::take_cancelled`] hands the token
//! back for the handler's owner to cancel the wait; so does
//! [`Connection::abandon`] for a connection dropped because its socket
//! died.
//!
//! **Streams.** A handler may answer with the head of a stream
//! ([`Response::stream`]: `trace_pipe`, `/api/events`). The connection
//! sends the head at once (`Transfer-Encoding: chunked` to HTTP/1.1,
//! close-delimited to HTTP/1.0) and keeps the request as it keeps a parked
//! one, but hands it back only while less than [`STREAM_QUEUE_LIMIT`]
//! bytes wait to be sent: a reader that does not keep up is not asked for
//! more, so the queue stays bounded and the producer (the trace ring)
//! moves on without it. Each answer's body goes out as a chunk; an answer
//! that is not [`Response::stream_more`] ends the stream (its body is the
//! last chunk, then the empty one) and the connection carries on with
//! the next request. A stream whose reader stays stalled for
//! [`ConnConfig::idle_timeout_ms`] is closed, and a peer that closes ends
//! it ([`Connection::take_cancelled`]), as for a parked request.

use alloc::borrow::Cow;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::server::error::ApiError;
use crate::server::http::{Method, Park, Request, RequestParser, Version};
use crate::server::response::{ConnectionHeader, Response};

/// Default [`ConnConfig::idle_timeout_ms`].
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10_000;
/// Default [`ConnConfig::request_timeout_ms`].
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// No further request is answered while this much output is queued.
pub const OUT_QUEUE_SOFT_LIMIT: usize = 64 * 1024;
/// Bytes asked from the stream per `recv` (about one Ethernet MSS).
const RECV_CHUNK: usize = 1536;
/// A stream is asked for more only while less than this waits to be sent.
pub const STREAM_QUEUE_LIMIT: usize = 16 * 1024;

/// A non-blocking byte stream (a smoltcp TCP socket in the kernel, a fake
/// in tests). The adapter hands a connection over once it is established.
pub trait Stream {
    /// Copy received bytes into `buf`; `Ok(0)` when none are available now.
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, StreamError>;
    /// Queue bytes for sending; may accept fewer than offered, `Ok(0)` when
    /// the send buffer is full.
    fn send(&mut self, data: &[u8]) -> Result<usize, StreamError>;
    /// Whether more bytes may still arrive (false once the peer has closed
    /// its side and everything it sent was read).
    fn may_recv(&self) -> bool;
    /// Close our side (FIN after the queued bytes); the socket is freed by
    /// its owner once TCP is done with it.
    fn close(&mut self);
}

/// A stream failure; the connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The peer reset the connection or the socket is no longer connected.
    Closed,
    /// Any other failure.
    Failed,
}

/// Per-connection settings; clone one per connection (the token is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnConfig {
    /// Close after this long without a byte received or sent.
    pub idle_timeout_ms: u64,
    /// Close when a request stays incomplete this long after its first byte.
    pub request_timeout_ms: u64,
    /// `token=`: required as a bearer token by non-GET/HEAD requests.
    pub token: Option<Arc<str>>,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            token: None,
        }
    }
}

/// What the owner of the socket should do after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Keep polling.
    Open,
    /// Done: [`Stream::close`] was called; drop the connection.
    Closed,
}

/// What one pass over the parsed requests achieved.
enum Step {
    /// Answers were queued.
    Answered,
    /// No complete request is buffered.
    NeedInput,
    /// The output queue is over its limit.
    QueueFull,
    /// A request is parked and still pending.
    Parked,
}

/// A request the handler has not answered yet; see the module doc.
#[derive(Debug)]
struct Parked {
    request: Request,
    token: u64,
    since_ms: u64,
    until_ms: u64,
    /// A stream whose head is sent ([`Response::stream`]), and whether its
    /// body is chunked (else the close ends it).
    stream: Option<Chunked>,
}

/// A stream's framing: `Transfer-Encoding: chunked` or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunked(bool);

/// The state of one connection; see the module doc.
#[derive(Debug)]
pub struct Connection {
    config: ConnConfig,
    parser: RequestParser,
    /// Response bytes waiting for the stream, never an empty chunk.
    out: VecDeque<Cow<'static, [u8]>>,
    /// Bytes of `out.front()` already sent.
    out_offset: usize,
    /// Bytes in `out` not yet sent.
    out_bytes: usize,
    last_activity_ms: u64,
    /// When the first byte of the still-incomplete request arrived.
    request_started_ms: Option<u64>,
    /// The last answer is queued: flush it, then close.
    closing: bool,
    closed: bool,
    requests: u64,
    /// The request the handler answered with [`Response::pending`].
    parked: Option<Parked>,
    /// The token of a parked request dropped by a close, for
    /// [`Connection::take_cancelled`].
    cancelled: Option<u64>,
}

impl Connection {
    /// A connection accepted at `now_ms`.
    pub fn new(config: ConnConfig, now_ms: u64) -> Connection {
        Connection {
            config,
            parser: RequestParser::new(),
            out: VecDeque::new(),
            out_offset: 0,
            out_bytes: 0,
            last_activity_ms: now_ms,
            request_started_ms: None,
            closing: false,
            closed: false,
            requests: 0,
            parked: None,
            cancelled: None,
        }
    }

    /// Read, answer and write as far as possible without blocking; see the
    /// module doc for when the connection closes.
    pub fn poll<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        now_ms: u64,
        handler: &mut impl FnMut(&Request) -> Response,
    ) -> ConnState {
        if self.closed {
            return ConnState::Closed;
        }
        let mut scratch = [0u8; RECV_CHUNK];
        loop {
            if self.flush(stream, now_ms).is_err() {
                return self.finish(stream);
            }
            if self.closing {
                // Read and drop what the peer still sends while the last
                // answer drains, so its stack has no reason to reset us.
                while stream.may_recv() {
                    match stream.recv(&mut scratch) {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
                if self.out_bytes == 0 {
                    return self.finish(stream);
                }
                break;
            }
            match self.answer(now_ms, handler) {
                Step::Answered => continue,
                Step::QueueFull => break,
                Step::Parked => {
                    // Send what was answered before it; read nothing more.
                    // A peer that closed while its request sleeps is gone.
                    if self.flush(stream, now_ms).is_err() || !stream.may_recv() {
                        return self.finish(stream);
                    }
                    break;
                }
                Step::NeedInput => {}
            }
            if !stream.may_recv() {
                // End of stream: everything complete is answered; a
                // partial request never will be.
                self.closing = true;
                continue;
            }
            match stream.recv(&mut scratch) {
                Ok(0) => break,
                Ok(n) => {
                    self.parser.feed(&scratch[..n.min(RECV_CHUNK)]);
                    self.last_activity_ms = now_ms;
                    if self.request_started_ms.is_none() && self.parser.has_partial() {
                        self.request_started_ms = Some(now_ms);
                    }
                }
                Err(_) => return self.finish(stream),
            }
        }
        // (A parked request is the handler's to end, at its `until_ms`;
        // a stream with a stalled reader is ours.)
        let stalled = self
            .parked
            .as_ref()
            .is_some_and(|p| p.stream.is_some() && self.out_bytes >= STREAM_QUEUE_LIMIT);
        if (self.parked.is_none() || stalled)
            && self
                .deadline_ms()
                .is_some_and(|deadline| now_ms >= deadline)
        {
            return self.finish(stream);
        }
        ConnState::Open
    }

    /// When this connection must be polled again if nothing happens (for
    /// the main loop's timer): its idle or request timeout, or, while a
    /// request is parked, the `until_ms` the handler gave; `None` once
    /// closed.
    pub fn deadline_ms(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        if let Some(parked) = &self.parked {
            if parked.stream.is_some() && self.out_bytes >= STREAM_QUEUE_LIMIT {
                // Not asked while stalled: a reader stuck this long goes.
                return Some(
                    self.last_activity_ms
                        .saturating_add(self.config.idle_timeout_ms),
                );
            }
            return Some(parked.until_ms);
        }
        let idle = self
            .last_activity_ms
            .saturating_add(self.config.idle_timeout_ms);
        Some(match self.request_started_ms {
            Some(t) => idle.min(t.saturating_add(self.config.request_timeout_ms)),
            None => idle,
        })
    }

    /// Whether [`Stream::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Requests answered so far (metrics).
    pub fn requests_served(&self) -> u64 {
        self.requests
    }

    /// Response bytes queued and not yet accepted by the stream.
    pub fn pending_output(&self) -> usize {
        self.out_bytes
    }

    /// Request bytes received and not yet answered.
    pub fn buffered_input(&self) -> usize {
        self.parser.buffered()
    }

    /// The token of the request parked now, if one is.
    pub fn parked_token(&self) -> Option<u64> {
        self.parked.as_ref().map(|p| p.token)
    }

    /// The token of a parked request that a close dropped unanswered
    /// (once): its wait must be cancelled.
    pub fn take_cancelled(&mut self) -> Option<u64> {
        self.cancelled.take()
    }

    /// Drop the connection's state without a word (its socket is gone);
    /// returns the token of a parked request whose wait must be cancelled.
    pub fn abandon(&mut self) -> Option<u64> {
        self.closed = true;
        self.parser = RequestParser::new();
        self.out = VecDeque::new();
        self.out_offset = 0;
        self.out_bytes = 0;
        let parked = self.parked.take().map(|p| p.token);
        parked.or_else(|| self.cancelled.take())
    }

    /// Answer buffered complete requests until none is left, the output
    /// queue is full, or an answer ends the connection.
    fn answer(&mut self, now_ms: u64, handler: &mut impl FnMut(&Request) -> Response) -> Step {
        let mut answered = false;
        if let Some(parked) = self.parked.take() {
            let step = match parked.stream {
                Some(chunked) => self.continue_stream(parked, chunked, now_ms, handler),
                None => self.retry_parked(parked, now_ms, handler),
            };
            match step {
                Some(step) => return step,
                None => answered = true,
            }
        }
        while self.out_bytes < OUT_QUEUE_SOFT_LIMIT {
            match self.parser.next_request() {
                Some(Ok(request)) => {
                    answered = true;
                    self.request_started_ms = self.parser.has_partial().then_some(now_ms);
                    let response = if self.authorized(&request) {
                        handler(&request)
                    } else {
                        ApiError::eacces("missing or wrong bearer token").into_response()
                    };
                    if let Some(pending) = response.pending {
                        self.parked = Some(Parked {
                            request,
                            token: pending.token,
                            since_ms: now_ms,
                            until_ms: pending.until_ms,
                            stream: None,
                        });
                        return Step::Parked;
                    }
                    if let Some(more) = response.stream {
                        if request.method == Method::Head {
                            // The head alone; the stream never starts.
                            self.cancelled = Some(more.token);
                        } else {
                            let chunked = self.start_stream(&request, response);
                            if self.closing {
                                // Out of memory for its head: no stream.
                                self.cancelled = Some(more.token);
                                return Step::Answered;
                            }
                            self.parked = Some(Parked {
                                request,
                                token: more.token,
                                since_ms: now_ms,
                                until_ms: more.until_ms,
                                stream: Some(chunked),
                            });
                            return Step::Parked;
                        }
                    }
                    if !self.respond(&request, response) {
                        return Step::Answered;
                    }
                }
                Some(Err(error)) => {
                    let response = error.into_api_error().into_response();
                    self.queue(response, false, ConnectionHeader::Close);
                    self.closing = true;
                    return Step::Answered;
                }
                None if self.parser.take_continue() => {
                    self.push_out(Cow::Borrowed(b"HTTP/1.1 100 Continue\r\n\r\n"));
                    return Step::Answered;
                }
                None if answered => return Step::Answered,
                None => return Step::NeedInput,
            }
        }
        if answered {
            Step::Answered
        } else {
            Step::QueueFull
        }
    }

    /// Queue the answer to `request`; `false` if the connection closes
    /// after it.
    fn respond(&mut self, request: &Request, response: Response) -> bool {
        self.requests += 1;
        let keep_alive = request.keep_alive();
        let connection = match (keep_alive, request.version) {
            (false, _) => ConnectionHeader::Close,
            (true, Version::Http10) => ConnectionHeader::KeepAlive,
            (true, Version::Http11) => ConnectionHeader::Default,
        };
        self.queue(response, request.method == Method::Head, connection);
        if !keep_alive {
            self.closing = true;
        }
        keep_alive
    }

    /// Hand a parked request back to the handler: `None` once answered
    /// and the connection goes on with the next request.
    fn retry_parked(
        &mut self,
        mut parked: Parked,
        now_ms: u64,
        handler: &mut impl FnMut(&Request) -> Response,
    ) -> Option<Step> {
        parked.request.park = Some(Park {
            token: parked.token,
            since_ms: parked.since_ms,
        });
        let response = handler(&parked.request);
        if let Some(pending) = response.pending {
            parked.token = pending.token;
            parked.until_ms = pending.until_ms;
            self.parked = Some(parked);
            return Some(Step::Parked);
        }
        // The idle and request clocks start again from the answer.
        self.last_activity_ms = now_ms;
        self.request_started_ms = self.parser.has_partial().then_some(now_ms);
        if !self.respond(&parked.request, response) {
            return Some(Step::Answered);
        }
        None
    }

    /// Ask a stream's handler for more, if the reader keeps up: `None`
    /// once the stream ended and the connection goes on with the next
    /// request.
    fn continue_stream(
        &mut self,
        mut parked: Parked,
        chunked: Chunked,
        now_ms: u64,
        handler: &mut impl FnMut(&Request) -> Response,
    ) -> Option<Step> {
        if self.out_bytes >= STREAM_QUEUE_LIMIT {
            self.parked = Some(parked);
            return Some(Step::Parked);
        }
        parked.request.park = Some(Park {
            token: parked.token,
            since_ms: parked.since_ms,
        });
        let response = handler(&parked.request);
        let more = response.stream;
        self.push_stream_body(chunked, response);
        if self.closing {
            // Out of memory for a chunk: the stream ends here.
            self.cancelled = more.map(|m| m.token);
            return Some(Step::Answered);
        }
        if let Some(more) = more {
            parked.token = more.token;
            parked.until_ms = more.until_ms;
            self.parked = Some(parked);
            return Some(Step::Parked);
        }
        // The end: the empty chunk, or the close for HTTP/1.0.
        if chunked.0 {
            self.push_out(Cow::Borrowed(b"0\r\n\r\n"));
        }
        if !chunked.0 || !parked.request.keep_alive() {
            self.closing = true;
            return Some(Step::Answered);
        }
        self.last_activity_ms = now_ms;
        self.request_started_ms = self.parser.has_partial().then_some(now_ms);
        None
    }

    /// Queue a stream's head and first piece (see the module doc).
    fn start_stream(&mut self, request: &Request, response: Response) -> Chunked {
        self.requests += 1;
        let chunked = Chunked(request.version == Version::Http11);
        let connection = match (chunked.0, request.keep_alive()) {
            (true, true) => ConnectionHeader::Default,
            _ => ConnectionHeader::Close,
        };
        let head = response.stream_head_bytes(connection, chunked.0);
        if self.out.try_reserve(1).is_err() {
            self.closing = true;
            return chunked;
        }
        self.push_out(Cow::Owned(head));
        self.push_stream_body(chunked, response);
        chunked
    }

    /// Queue a stream answer's body, one chunk per piece. Should the heap
    /// refuse a chunk's buffer, the stream cannot go on whole: the
    /// connection ends after what is queued.
    fn push_stream_body(&mut self, chunked: Chunked, response: Response) {
        let Response { body, tail, .. } = response;
        let pieces = core::iter::once(&*body).chain(tail.iter().map(Vec::as_slice));
        for piece in pieces.filter(|p| !p.is_empty()) {
            let mut chunk = Vec::new();
            if chunk.try_reserve_exact(piece.len() + 20).is_err()
                || self.out.try_reserve(1).is_err()
            {
                self.closing = true;
                return;
            }
            if chunked.0 {
                let _ = core::fmt::Write::write_fmt(
                    &mut HexLen(&mut chunk),
                    format_args!("{:x}\r\n", piece.len()),
                );
            }
            chunk.extend_from_slice(piece);
            if chunked.0 {
                chunk.extend_from_slice(b"\r\n");
            }
            self.push_out(Cow::Owned(chunk));
        }
    }

    fn authorized(&self, request: &Request) -> bool {
        match &self.config.token {
            None => true,
            Some(_) if matches!(request.method, Method::Get | Method::Head) => true,
            Some(token) => request
                .bearer_token()
                .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())),
        }
    }

    fn queue(&mut self, response: Response, head_request: bool, connection: ConnectionHeader) {
        let (head, body, tail) = response.into_wire(head_request, connection);
        // The queue grows fallibly: should the heap refuse even that, the
        // answer cannot be sent whole, so the connection ends after what
        // is already queued rather than the kernel aborting.
        if self.out.try_reserve(2 + tail.len()).is_err() {
            self.closing = true;
            return;
        }
        self.push_out(Cow::Owned(head));
        self.push_out(body);
        for piece in tail {
            self.push_out(Cow::Owned(piece));
        }
    }

    fn push_out(&mut self, chunk: Cow<'static, [u8]>) {
        if !chunk.is_empty() {
            self.out_bytes += chunk.len();
            self.out.push_back(chunk);
        }
    }

    /// Send queued bytes until the stream takes no more.
    fn flush<S: Stream + ?Sized>(
        &mut self,
        stream: &mut S,
        now_ms: u64,
    ) -> Result<(), StreamError> {
        while let Some(front) = self.out.front() {
            let pending = front.get(self.out_offset..).unwrap_or_default();
            let sent = stream.send(pending)?.min(pending.len());
            if sent == 0 {
                break;
            }
            self.last_activity_ms = now_ms;
            self.out_offset += sent;
            self.out_bytes -= sent;
            if self.out_offset >= front.len() {
                self.out.pop_front();
                self.out_offset = 0;
            }
        }
        if self.out.is_empty() && self.out.capacity() > 0 {
            // Drained: give the queue's ring back (a pipelining client
            // grows it to hundreds of slots), so an idle connection holds
            // nothing it allocated while memory was short.
            self.out = VecDeque::new();
        }
        Ok(())
    }

    fn finish<S: Stream + ?Sized>(&mut self, stream: &mut S) -> ConnState {
        stream.close();
        self.closed = true;
        self.out = VecDeque::new();
        self.out_offset = 0;
        self.out_bytes = 0;
        self.parser = RequestParser::new();
        self.request_started_ms = None;
        if let Some(parked) = self.parked.take() {
            self.cancelled = Some(parked.token);
        }
        ConnState::Closed
    }
}

/// `fmt::Write` into a reserved `Vec` (a chunk's size line).
struct HexLen<'v>(&'v mut Vec<u8>);

impl core::fmt::Write for HexLen<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Compare without an early exit, so timing does not reveal how much of a
/// guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
