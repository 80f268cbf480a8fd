//! Connection tests over a scripted byte stream ([`Fake`]).

use super::*;
use crate::server::http::{MAX_BODY_BYTES, MAX_HEAD_BYTES};
use crate::server::router::{RouteMatch, route};
use serde::Serialize;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

/// A scripted peer: hands out `segments` one `recv` at a time (never
/// joining two), accepts at most `send_chunk` bytes per `send` and at
/// most `send_budget` bytes until the test refills it.
struct Fake {
    segments: VecDeque<Vec<u8>>,
    /// After the segments: the peer has closed its side.
    eof: bool,
    sent: Vec<u8>,
    send_chunk: usize,
    send_budget: usize,
    closed: bool,
    fail: Option<StreamError>,
    recv_calls: usize,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            segments: VecDeque::new(),
            eof: false,
            sent: Vec::new(),
            send_chunk: usize::MAX,
            send_budget: usize::MAX,
            closed: false,
            fail: None,
            recv_calls: 0,
        }
    }

    fn with(input: &[u8]) -> Fake {
        let mut f = Fake::new();
        f.push(input);
        f
    }

    fn push(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.segments.push_back(data.to_vec());
        }
    }

    fn pending_input(&self) -> usize {
        self.segments.iter().map(Vec::len).sum()
    }

    fn sent_str(&self) -> String {
        String::from_utf8_lossy(&self.sent).into_owned()
    }
}

impl Stream for Fake {
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        self.recv_calls += 1;
        if let Some(e) = self.fail {
            return Err(e);
        }
        let Some(front) = self.segments.front_mut() else {
            return Ok(0);
        };
        let n = front.len().min(buf.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            self.segments.pop_front();
        }
        Ok(n)
    }

    fn send(&mut self, data: &[u8]) -> Result<usize, StreamError> {
        if let Some(e) = self.fail {
            return Err(e);
        }
        assert!(!self.closed, "send after close");
        let n = data.len().min(self.send_chunk).min(self.send_budget);
        self.send_budget -= n;
        self.sent.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn may_recv(&self) -> bool {
        !self.closed && (!self.eof || !self.segments.is_empty())
    }

    fn close(&mut self) {
        self.closed = true;
    }
}

#[derive(Serialize)]
struct Echo<'a> {
    route: &'a str,
    method: &'a str,
    id: Option<&'a str>,
    query: &'a str,
    body_len: usize,
}

/// A miniature API layer: route, then echo what was routed.
fn api(req: &Request) -> Response {
    match route(req.method, &req.path) {
        RouteMatch::Found(id, params) => Response::json(
            200,
            &Echo {
                route: id.pattern(),
                method: req.method.as_str(),
                id: params.get("id"),
                query: &req.query,
                body_len: req.body.len(),
            },
        ),
        RouteMatch::NotFound => {
            ApiError::enoent(format!("no route for {}", req.path)).into_response()
        }
        RouteMatch::MethodNotAllowed(allow) => ApiError::method_not_allowed(&allow).into_response(),
    }
}

/// Poll until the connection closes or stops making progress.
fn drive(conn: &mut Connection, fake: &mut Fake, now_ms: u64) -> ConnState {
    drive_with(conn, fake, now_ms, &mut api)
}

/// [`drive`] with any handler.
fn drive_with(
    conn: &mut Connection,
    fake: &mut Fake,
    now_ms: u64,
    mut handler: impl FnMut(&Request) -> Response,
) -> ConnState {
    for _ in 0..100_000 {
        let before = (fake.sent.len(), fake.pending_input());
        let state = conn.poll(fake, now_ms, &mut handler);
        if state == ConnState::Closed || (fake.sent.len(), fake.pending_input()) == before {
            return state;
        }
    }
    panic!("no quiescence");
}

fn serve(input: &[u8]) -> (Fake, ConnState) {
    let mut fake = Fake::with(input);
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let state = drive(&mut conn, &mut fake, 0);
    (fake, state)
}

#[derive(Debug, PartialEq)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Client side: split a byte stream into responses; `head` lists which
/// of them answer HEAD requests (no body despite Content-Length).
fn responses(mut bytes: &[u8], head: &[usize]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("incomplete head")
            + 4;
        let text = std::str::from_utf8(&bytes[..end - 4]).unwrap();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_string(), v.to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "Content-Length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let body_len = if head.contains(&out.len()) { 0 } else { len };
        let body = bytes[end..end + body_len].to_vec();
        bytes = &bytes[end + body_len..];
        out.push(Resp {
            status,
            headers,
            body,
        });
    }
    out
}

const PIPELINE: &[u8] = b"GET /api/health HTTP/1.1\r\nHost: pz\r\n\r\n\
    POST /api/alloc/7/fill?x=1 HTTP/1.1\r\nContent-Length: 12\r\n\r\n{\"byte\":255}\
    HEAD /api/zones HTTP/1.1\r\n\r\n\
    DELETE /api/alloc/9 HTTP/1.1\r\nContent-Length: 0\r\n\r\n\
    GET /nope HTTP/1.1\r\n\r\n";

#[test]
fn pipelined_requests_in_order() {
    let (fake, state) = serve(PIPELINE);
    assert_eq!(state, ConnState::Open);
    assert!(!fake.closed);
    let r = responses(&fake.sent, &[2]);
    assert_eq!(r.len(), 5);
    assert_eq!(r[0].status, 200);
    assert_eq!(
        r[0].body_str(),
        r#"{"route":"/api/health","method":"GET","id":null,"query":"","body_len":0}"#
    );
    assert_eq!(
        r[1].body_str(),
        r#"{"route":"/api/alloc/{id}/fill","method":"POST","id":"7","query":"x=1","body_len":12}"#
    );
    assert_eq!(r[2].status, 200);
    assert!(r[2].body.is_empty());
    let get_len =
        r#"{"route":"/api/zones","method":"HEAD","id":null,"query":"","body_len":0}"#.len();
    assert_eq!(
        r[2].header("Content-Length"),
        Some(get_len.to_string().as_str())
    );
    assert_eq!(
        r[3].body_str(),
        r#"{"route":"/api/alloc/{id}","method":"DELETE","id":"9","query":"","body_len":0}"#
    );
    assert_eq!(r[4].status, 404);
    assert!(r.iter().all(|r| r.header("Connection").is_none()));
}

#[test]
fn every_split_point_gives_the_same_bytes() {
    let (whole, _) = serve(PIPELINE);
    for split in 0..=PIPELINE.len() {
        for send_chunk in [usize::MAX, 3] {
            let mut fake = Fake::new();
            fake.push(&PIPELINE[..split]);
            fake.push(&PIPELINE[split..]);
            fake.send_chunk = send_chunk;
            let mut conn = Connection::new(ConnConfig::default(), 0);
            assert_eq!(drive(&mut conn, &mut fake, 0), ConnState::Open);
            assert_eq!(
                fake.sent, whole.sent,
                "split at {split}, send_chunk {send_chunk}"
            );
        }
    }
}

#[test]
fn byte_by_byte_in_and_out() {
    let (whole, _) = serve(PIPELINE);
    let mut fake = Fake::new();
    for b in PIPELINE {
        fake.push(&[*b]);
    }
    fake.send_chunk = 1;
    let mut conn = Connection::new(ConnConfig::default(), 0);
    assert_eq!(drive(&mut conn, &mut fake, 0), ConnState::Open);
    assert_eq!(fake.sent, whole.sent);
    assert_eq!(conn.requests_served(), 5);
    assert_eq!(conn.buffered_input(), 0);
    assert_eq!(conn.pending_output(), 0);
}

#[test]
fn segments_arriving_across_polls() {
    let mut fake = Fake::new();
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut handler = api;
    for (i, chunk) in PIPELINE.chunks(7).enumerate() {
        fake.push(chunk);
        assert_eq!(
            conn.poll(&mut fake, i as u64, &mut handler),
            ConnState::Open
        );
    }
    assert_eq!(fake.sent, serve(PIPELINE).0.sent);
}

fn error_case(input: &[u8]) -> (Resp, Fake) {
    let (fake, state) = serve(input);
    assert_eq!(
        state,
        ConnState::Closed,
        "{}",
        String::from_utf8_lossy(input)
    );
    assert!(fake.closed);
    let mut r = responses(&fake.sent, &[]);
    assert_eq!(r.len(), 1, "{}", fake.sent_str());
    assert_eq!(r[0].header("Connection"), Some("close"));
    (r.remove(0), fake)
}

#[test]
fn bad_request_line_exact_bytes_then_close() {
    let (fake, _) = serve(b"GARBAGE\r\n\r\nGET /api/health HTTP/1.1\r\n\r\n");
    assert_eq!(
        fake.sent_str(),
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 62\r\n\
         Connection: close\r\n\r\n\
         {\"error\":{\"code\":\"EINVAL\",\"message\":\"malformed request line\"}}"
    );
    assert!(fake.closed);
}

#[test]
fn malformed_inputs_get_400_and_close() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"GET / HTTP/1.1\r\nHost\r\n\r\n",
            "header line without colon",
        ),
        (b"GET / HTTP/9.9\r\n\r\n", "unsupported HTTP version"),
        (b"G@T / HTTP/1.1\r\n\r\n", "malformed method"),
        (
            b"POST /api/alloc HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "malformed Content-Length",
        ),
        (
            b"POST /api/alloc HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            "conflicting Content-Length headers",
        ),
        (
            b"POST /api/alloc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Transfer-Encoding is not supported; send Content-Length",
        ),
    ];
    for &(input, why) in cases {
        let (r, _) = error_case(input);
        assert_eq!(r.status, 400);
        let expected = format!(r#"{{"error":{{"code":"EINVAL","message":"{why}"}}}}"#);
        assert_eq!(r.body_str(), expected);
    }
}

#[test]
fn responses_before_an_error_are_kept() {
    let (fake, state) =
        serve(b"GET /api/health HTTP/1.1\r\n\r\nBAD\r\n\r\nGET /api/health HTTP/1.1\r\n\r\n");
    assert_eq!(state, ConnState::Closed);
    let r = responses(&fake.sent, &[]);
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 400]);
}

#[test]
fn oversize_head_431() {
    let mut input = Vec::from(&b"GET /api/health HTTP/1.1\r\nX-Big: "[..]);
    input.resize(MAX_HEAD_BYTES + 10, b'a');
    input.extend_from_slice(b"\r\n\r\n");
    let (r, _) = error_case(&input);
    assert_eq!(r.status, 431);
    assert_eq!(
        r.body_str(),
        r#"{"error":{"code":"E2BIG","message":"request head over 8192 bytes"}}"#
    );
    // Refused without waiting for the end of the head.
    let (r, _) = error_case(&input[..MAX_HEAD_BYTES]);
    assert_eq!(r.status, 431);
}

#[test]
fn oversize_body_413_without_reading_it() {
    let head = b"POST /api/alloc HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
    let mut fake = Fake::with(head);
    let mut conn = Connection::new(ConnConfig::default(), 0);
    // The client waits for the answer before sending the body.
    assert_eq!(drive(&mut conn, &mut fake, 0), ConnState::Closed);
    let r = responses(&fake.sent, &[]);
    assert_eq!(r[0].status, 413);
    assert_eq!(
        r[0].body_str(),
        r#"{"error":{"code":"E2BIG","message":"request body over 65536 bytes"}}"#
    );
    // A body of exactly the limit is served.
    let mut input = Vec::from(&b"POST /api/alloc HTTP/1.1\r\nContent-Length: 65536\r\n\r\n"[..]);
    input.resize(input.len() + MAX_BODY_BYTES, b'{');
    let (fake, state) = serve(&input);
    assert_eq!(state, ConnState::Open);
    assert!(
        responses(&fake.sent, &[])[0]
            .body_str()
            .ends_with("\"body_len\":65536}")
    );
}

#[test]
fn error_response_drains_while_client_keeps_sending() {
    let mut fake = Fake::with(b"POST /api/alloc HTTP/1.1\r\nContent-Length: 999999\r\n\r\n");
    fake.push(&[b'x'; 5000]);
    fake.send_chunk = 10;
    fake.send_budget = 20;
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut handler = api;
    assert_eq!(conn.poll(&mut fake, 0, &mut handler), ConnState::Open);
    assert_eq!(fake.pending_input(), 0, "excess input is discarded");
    assert!(!fake.closed);
    fake.send_budget = usize::MAX;
    assert_eq!(conn.poll(&mut fake, 1, &mut handler), ConnState::Closed);
    assert_eq!(responses(&fake.sent, &[])[0].status, 413);
}

#[test]
fn missing_content_length_means_no_body() {
    let (fake, state) = serve(b"POST /api/reset HTTP/1.1\r\n\r\nGET /api/health HTTP/1.1\r\n\r\n");
    assert_eq!(state, ConnState::Open);
    let r = responses(&fake.sent, &[]);
    assert_eq!(r.len(), 2);
    assert!(r[0].body_str().contains("\"body_len\":0"));
}

#[test]
fn unknown_methods() {
    let (fake, state) = serve(
        b"BREW /api/zones HTTP/1.1\r\n\r\nBREW /pot HTTP/1.1\r\n\r\nget /api/zones HTTP/1.1\r\n\r\n",
    );
    assert_eq!(state, ConnState::Open);
    let r = responses(&fake.sent, &[]);
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        [405, 404, 405]
    );
    assert_eq!(r[0].header("Allow"), Some("GET, HEAD"));
}

#[test]
fn not_found_and_method_not_allowed_exact() {
    let (fake, _) = serve(b"GET /api/nope HTTP/1.1\r\n\r\nGET /api/alloc HTTP/1.1\r\n\r\nPUT /api/kmap HTTP/1.1\r\n\r\n");
    let expected = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 62\r\n\r\n\
         {\"error\":{\"code\":\"ENOENT\",\"message\":\"no route for /api/nope\"}}\
         HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 73\r\n\
         Allow: POST\r\n\r\n\
         {\"error\":{\"code\":\"EINVAL\",\"message\":\"method not allowed; allowed: POST\"}}\
         HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 84\r\n\
         Allow: GET, HEAD, POST\r\n\r\n\
         {\"error\":{\"code\":\"EINVAL\",\"message\":\"method not allowed; allowed: GET, HEAD, POST\"}}";
    assert_eq!(fake.sent_str(), expected);
}

#[test]
fn head_sends_headers_only() {
    let run = |input: &[u8]| {
        let mut fake = Fake::with(input);
        let mut conn = Connection::new(ConnConfig::default(), 0);
        let mut handler = |_: &Request| Response::text(200, "hello world\n");
        assert_eq!(conn.poll(&mut fake, 0, &mut handler), ConnState::Open);
        fake.sent_str()
    };
    let get = run(b"GET /x HTTP/1.1\r\n\r\n");
    let head = run(b"HEAD /x HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n");
    let get_head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
                    Content-Length: 12\r\n\r\n";
    assert_eq!(get, std::format!("{get_head}hello world\n"));
    // The HEAD answer is the GET answer without its body; the pipelined
    // GET after it is intact.
    assert_eq!(head, std::format!("{get_head}{get}"));
    // HEAD of a large static body sends no body either.
    let mut fake = Fake::with(b"HEAD /ui/big HTTP/1.1\r\n\r\n");
    let mut conn = Connection::new(ConnConfig::default(), 0);
    static BIG: [u8; 10_000] = [b'b'; 10_000];
    let mut handler = |_: &Request| Response::bytes(200, "text/html", &BIG[..]);
    conn.poll(&mut fake, 0, &mut handler);
    assert_eq!(
        fake.sent_str(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 10000\r\n\r\n"
    );
}

#[test]
fn expect_100_continue() {
    let mut fake = Fake::with(
        b"POST /api/reset HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    );
    let mut conn = Connection::new(ConnConfig::default(), 0);
    assert_eq!(drive(&mut conn, &mut fake, 0), ConnState::Open);
    assert_eq!(fake.sent_str(), "HTTP/1.1 100 Continue\r\n\r\n");
    fake.push(b"{}");
    assert_eq!(drive(&mut conn, &mut fake, 1), ConnState::Open);
    let final_response = &fake.sent[25..];
    let r = responses(final_response, &[]);
    assert_eq!(r.len(), 1);
    assert!(r[0].body_str().contains("\"body_len\":2"));
    // Too large: straight to 413, no 100.
    let (fake, state) =
        serve(b"POST /api/alloc HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 70000\r\n\r\n");
    assert_eq!(state, ConnState::Closed);
    assert!(fake.sent_str().starts_with("HTTP/1.1 413 "));
}

#[test]
fn keep_alive_close_and_http10() {
    let (fake, state) = serve(b"GET /api/health HTTP/1.1\r\n\r\n");
    assert_eq!(state, ConnState::Open);
    assert!(!fake.closed);

    let (fake, state) = serve(
        b"GET /api/health HTTP/1.1\r\nConnection: close\r\n\r\nGET /api/health HTTP/1.1\r\n\r\n",
    );
    assert_eq!(state, ConnState::Closed);
    let r = responses(&fake.sent, &[]);
    assert_eq!(r.len(), 1, "nothing is answered after Connection: close");
    assert_eq!(r[0].header("Connection"), Some("close"));

    let (fake, state) = serve(b"GET /api/health HTTP/1.0\r\n\r\n");
    assert_eq!(state, ConnState::Closed);
    assert_eq!(
        responses(&fake.sent, &[])[0].header("Connection"),
        Some("close")
    );

    let (fake, state) =
        serve(b"GET /api/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /api/health HTTP/1.0\r\n\r\n");
    assert_eq!(state, ConnState::Closed);
    let r = responses(&fake.sent, &[]);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].header("Connection"), Some("keep-alive"));
    assert_eq!(r[1].header("Connection"), Some("close"));
}

#[test]
fn peer_half_close() {
    // Complete requests before the FIN are answered, then we close.
    let mut fake =
        Fake::with(b"GET /api/health HTTP/1.1\r\n\r\nGET /api/zones HTTP/1.1\r\n\r\nGET /par");
    fake.eof = true;
    let mut conn = Connection::new(ConnConfig::default(), 0);
    assert_eq!(drive(&mut conn, &mut fake, 0), ConnState::Closed);
    assert!(fake.closed);
    assert_eq!(responses(&fake.sent, &[]).len(), 2);
    // An idle peer that closes gets closed without a word.
    let mut fake = Fake::new();
    fake.eof = true;
    let mut conn = Connection::new(ConnConfig::default(), 0);
    assert_eq!(drive(&mut conn, &mut fake, 0), ConnState::Closed);
    assert!(fake.sent.is_empty());
}

#[test]
fn idle_timeout_closes() {
    let mut fake = Fake::new();
    let mut conn = Connection::new(ConnConfig::default(), 1000);
    let mut handler = api;
    assert_eq!(conn.poll(&mut fake, 1000, &mut handler), ConnState::Open);
    assert_eq!(conn.deadline_ms(), Some(11_000));
    assert_eq!(conn.poll(&mut fake, 10_999, &mut handler), ConnState::Open);
    // Activity pushes the deadline back.
    fake.push(b"GET /api/health HTTP/1.1\r\n\r\n");
    assert_eq!(conn.poll(&mut fake, 10_999, &mut handler), ConnState::Open);
    assert_eq!(conn.poll(&mut fake, 20_998, &mut handler), ConnState::Open);
    assert!(!fake.closed);
    assert_eq!(
        conn.poll(&mut fake, 20_999, &mut handler),
        ConnState::Closed
    );
    assert!(fake.closed);
    assert_eq!(conn.deadline_ms(), None);
    // Once closed, polls do nothing.
    let calls = fake.recv_calls;
    assert_eq!(
        conn.poll(&mut fake, 30_000, &mut handler),
        ConnState::Closed
    );
    assert_eq!(fake.recv_calls, calls);
}

#[test]
fn idle_timeout_is_configurable_and_covers_stalled_output() {
    let config = ConnConfig {
        idle_timeout_ms: 50,
        ..ConnConfig::default()
    };
    let mut fake = Fake::with(b"GET /api/health HTTP/1.1\r\n\r\n");
    fake.send_budget = 0; // the client never reads
    let mut conn = Connection::new(config, 0);
    let mut handler = api;
    assert_eq!(conn.poll(&mut fake, 10, &mut handler), ConnState::Open);
    assert!(conn.pending_output() > 0);
    assert_eq!(conn.poll(&mut fake, 59, &mut handler), ConnState::Open);
    assert_eq!(conn.poll(&mut fake, 60, &mut handler), ConnState::Closed);
}

#[test]
fn trickled_request_hits_the_request_timeout() {
    let mut fake = Fake::new();
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut handler = api;
    let mut now = 0;
    let mut state = ConnState::Open;
    for b in b"GET /api/health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaa" {
        now += 5_000;
        fake.push(&[*b]);
        state = conn.poll(&mut fake, now, &mut handler);
        if state == ConnState::Closed {
            break;
        }
    }
    assert_eq!(state, ConnState::Closed);
    assert_eq!(now, 35_000, "first byte at 5 s + 30 s");
    assert!(fake.sent.is_empty());
}

#[test]
fn large_response_drains_over_many_small_sends() {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let expected_body = big.clone();
    let mut handler =
        move |_: &Request| Response::bytes(200, "application/octet-stream", big.clone());
    let mut fake = Fake::with(b"GET /api/health HTTP/1.1\r\n\r\nGET /api/health HTTP/1.1\r\n\r\n");
    fake.send_chunk = 1460;
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut polls = 0;
    while conn.requests_served() < 2 || conn.pending_output() > 0 {
        fake.send_budget = 4096; // one window per poll
        let before = fake.sent.len();
        assert_eq!(conn.poll(&mut fake, polls, &mut handler), ConnState::Open);
        assert!(fake.sent.len() > before, "stalled after {polls} polls");
        assert!(conn.pending_output() <= OUT_QUEUE_SOFT_LIMIT + expected_body.len() + 200);
        polls += 1;
    }
    assert!(polls > 90, "{polls}");
    let r = responses(&fake.sent, &[]);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|r| r.body == expected_body));
    assert_eq!(conn.pending_output(), 0);
}

#[test]
fn static_body_is_sent_from_the_static() {
    static ASSET: [u8; 5000] = [b'a'; 5000];
    let mut handler = |_: &Request| Response::bytes(200, "text/css", &ASSET[..]);
    let mut fake = Fake::with(b"GET /ui/x.css HTTP/1.1\r\n\r\n");
    let mut conn = Connection::new(ConnConfig::default(), 0);
    conn.poll(&mut fake, 0, &mut handler);
    assert!(fake.sent.ends_with(&ASSET));
}

#[test]
fn memory_stays_bounded_when_the_client_never_reads() {
    let mut input = Vec::new();
    for _ in 0..5000 {
        input.extend_from_slice(b"GET /api/health HTTP/1.1\r\n\r\n");
    }
    let mut fake = Fake::new();
    for chunk in input.chunks(1000) {
        fake.push(chunk);
    }
    fake.send_budget = 0;
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut handler = api;
    assert_eq!(conn.poll(&mut fake, 0, &mut handler), ConnState::Open);
    assert!(conn.pending_output() < OUT_QUEUE_SOFT_LIMIT + 1000);
    assert!(conn.buffered_input() <= RECV_CHUNK);
    assert!(
        fake.pending_input() > input.len() / 2,
        "backpressure reaches the socket"
    );
    // Once the client reads, everything is answered.
    fake.send_budget = usize::MAX;
    assert_eq!(drive(&mut conn, &mut fake, 1), ConnState::Open);
    assert_eq!(responses(&fake.sent, &[]).len(), 5000);
    assert_eq!(conn.requests_served(), 5000);
}

#[test]
fn token_required_for_writes() {
    let config = ConnConfig {
        token: Some(Arc::from("s3cret")),
        ..ConnConfig::default()
    };
    let input = b"POST /api/reset HTTP/1.1\r\n\r\n\
        POST /api/reset HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n\
        POST /api/reset HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n\r\n\
        POST /api/reset HTTP/1.1\r\nAuthorization: Basic czNjcmV0\r\n\r\n\
        POST /api/reset HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n\
        DELETE /api/alloc/1 HTTP/1.1\r\nAuthorization: bearer s3cret\r\n\r\n\
        GET /api/health HTTP/1.1\r\n\r\n\
        HEAD /api/health HTTP/1.1\r\n\r\n\
        BREW /api/health HTTP/1.1\r\n\r\n";
    let mut fake = Fake::with(input);
    let mut conn = Connection::new(config, 0);
    let mut calls = 0;
    let mut handler = |r: &Request| {
        calls += 1;
        api(r)
    };
    assert_eq!(conn.poll(&mut fake, 0, &mut handler), ConnState::Open);
    assert_eq!(calls, 4);
    let r = responses(&fake.sent, &[7]);
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        [401, 401, 401, 401, 200, 200, 200, 200, 401]
    );
    let expected = "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 69\r\n\
                    WWW-Authenticate: Bearer realm=\"pagezone\"\r\n\r\n\
                    {\"error\":{\"code\":\"EACCES\",\"message\":\"missing or wrong bearer token\"}}";
    assert!(fake.sent_str().starts_with(expected), "{}", fake.sent_str());
    assert!(!fake.closed, "a 401 keeps the connection");
}

#[test]
fn stream_errors_close() {
    for e in [StreamError::Closed, StreamError::Failed] {
        let mut fake = Fake::with(b"GET /api/health HTTP/1.1\r\n\r\n");
        fake.fail = Some(e);
        let mut conn = Connection::new(ConnConfig::default(), 0);
        assert_eq!(conn.poll(&mut fake, 0, &mut api), ConnState::Closed);
        assert!(conn.is_closed());
    }
    // A send failure while answering.
    let mut fake = Fake::with(b"GET /api/health HTTP/1.1\r\n\r\n");
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut handler = api;
    fake.send_budget = 0;
    assert_eq!(conn.poll(&mut fake, 0, &mut handler), ConnState::Open);
    fake.fail = Some(StreamError::Closed);
    assert_eq!(conn.poll(&mut fake, 1, &mut handler), ConnState::Closed);
    assert_eq!(conn.pending_output(), 0);
}

#[test]
fn garbage_streams_never_panic() {
    let alphabet: &[u8] =
        b"GET POST HTTP/1.0 HTTP/1.1\r\n\r\n: Content-Length Connection close 12 /api/health %";
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..500 {
        let len = (next() % 400) as usize;
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let mut fake = Fake::new();
        for chunk in input.chunks(1 + (next() % 50) as usize) {
            fake.push(chunk);
        }
        fake.send_chunk = 1 + (next() % 100) as usize;
        fake.eof = next() % 2 == 0;
        let mut conn = Connection::new(ConnConfig::default(), 0);
        drive(&mut conn, &mut fake, 0);
        // Whatever was sent parses as whole responses.
        if conn.pending_output() == 0 {
            let _ = responses(&fake.sent, &[]);
        }
    }
}

/// Property tests: whatever bytes arrive, split however TCP splits
/// them, the connection never panics, always quiesces, and everything
/// it sends is a well-formed sequence of HTTP/1.1 responses whose
/// errors are API.md's JSON.
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Tokens that make near-valid HTTP, so the parser's deeper states
    /// are reached, not just the request-line check.
    const TOKENS: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"DELETE ",
        b"PUT ",
        b"OPTIONS ",
        b"BREW ",
        b"get ",
        b"/api/health",
        b"/api/alloc/7",
        b"/api/zones?x=%zz",
        b"/%00",
        b"*",
        b"/",
        b" HTTP/1.1",
        b" HTTP/1.0",
        b" HTTP/2.0",
        b"\r\n",
        b"\n",
        b"\r\n\r\n",
        b"Host: pz",
        b"Content-Length: ",
        b"Content-Length: 5",
        b"Content-Length: 99999999",
        b"Content-Length: -1",
        b"Transfer-Encoding: chunked",
        b"Connection: close",
        b"Connection: keep-alive",
        b"Expect: 100-continue",
        b"Authorization: Bearer x",
        b":",
        b" ",
        b"0",
        b"7",
        b"{\"byte\":1}",
        b"\x00",
        b"\xff\xfe",
    ];

    fn check_output(fake: &Fake) {
        for r in responses(&fake.sent, &[]) {
            assert!(
                matches!(r.status, 100 | 200 | 400 | 401 | 404 | 405 | 413 | 431),
                "unexpected status {}",
                r.status
            );
            if r.status >= 400 {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                assert!(v["error"]["code"].is_string(), "{v}");
                assert!(v["error"]["message"].is_string(), "{v}");
            }
        }
    }

    fn run(segments: Vec<Vec<u8>>, send_chunk: usize) -> Fake {
        let mut fake = Fake::new();
        fake.send_chunk = send_chunk;
        for s in &segments {
            fake.push(s);
        }
        fake.eof = true;
        let mut conn = Connection::new(ConnConfig::default(), 0);
        drive(&mut conn, &mut fake, 0);
        fake
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes(segments in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..600), 0..8), chunk in 1usize..2000) {
            check_output(&run(segments, chunk));
        }

        #[test]
        fn near_valid_http(picks in proptest::collection::vec(0..TOKENS.len(), 0..60),
                           cuts in proptest::collection::vec(any::<u16>(), 0..6),
                           chunk in 1usize..400) {
            let stream: Vec<u8> = picks.iter().flat_map(|&i| TOKENS[i].iter().copied()).collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|&c| c as usize % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut segments = Vec::new();
            let mut at = 0;
            for c in cuts {
                segments.push(stream[at..c].to_vec());
                at = c;
            }
            segments.push(stream[at..].to_vec());
            check_output(&run(segments, chunk));
        }
    }
}

/// A handler that parks `/sleep` requests until `*wake` holds, then
/// answers 201; everything else is [`api`]. Records each call's `park`.
struct Sleeper {
    wake: bool,
    calls: Vec<Option<crate::server::http::Park>>,
    next_token: u64,
}

impl Sleeper {
    fn new() -> Sleeper {
        Sleeper {
            wake: false,
            calls: Vec::new(),
            next_token: 7,
        }
    }

    fn handle(&mut self, req: &Request) -> Response {
        if req.path != "/sleep" {
            return api(req);
        }
        self.calls.push(req.park);
        if self.wake {
            Response::text(201, "woke")
        } else {
            // A new token per retry: the connection keeps the latest.
            self.next_token += 1;
            Response::pending(self.next_token, 50_000)
        }
    }
}

const SLEEP: &[u8] = b"POST /sleep HTTP/1.1\r\nContent-Length: 0\r\n\r\n";

#[test]
fn parked_request_waits_then_answers_in_order() {
    let mut input = Vec::from(SLEEP);
    input.extend_from_slice(b"GET /api/health HTTP/1.1\r\n\r\n");
    let mut fake = Fake::with(b"GET /api/zones HTTP/1.1\r\n\r\n");
    fake.push(&input);
    let mut conn = Connection::new(ConnConfig::default(), 1_000);
    let mut s = Sleeper::new();
    let mut handler = |r: &Request| s.handle(r);
    assert_eq!(conn.poll(&mut fake, 1_000, &mut handler), ConnState::Open);
    // The request before it is answered; nothing after it is.
    assert_eq!(responses(&fake.sent, &[]).len(), 1);
    assert_eq!(conn.requests_served(), 1);
    assert_eq!(conn.parked_token(), Some(8));
    assert_eq!(conn.deadline_ms(), Some(50_000), "the handler's until_ms");
    // Long past the idle and request timeouts: still parked, still asked.
    for now in [20_000, 45_000] {
        let before = (
            fake.sent.len(),
            conn.requests_served(),
            conn.buffered_input(),
        );
        assert_eq!(conn.poll(&mut fake, now, &mut handler), ConnState::Open);
        assert_eq!(
            (
                fake.sent.len(),
                conn.requests_served(),
                conn.buffered_input()
            ),
            before,
            "a retry that stays pending changes nothing"
        );
    }
    assert_eq!(conn.parked_token(), Some(10));
    assert_eq!(s.calls[0], None, "the first call is no retry");
    let park = |token| {
        Some(crate::server::http::Park {
            token,
            since_ms: 1_000,
        })
    };
    assert_eq!(s.calls[1..], [park(8), park(9)]);
    s.wake = true;
    let mut handler = |r: &Request| s.handle(r);
    assert_eq!(conn.poll(&mut fake, 46_000, &mut handler), ConnState::Open);
    let r = responses(&fake.sent, &[]);
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 201, 200],
        "answers in request order"
    );
    assert_eq!(r[1].body_str(), "woke");
    assert_eq!(conn.parked_token(), None);
    assert_eq!(conn.requests_served(), 3);
    // The idle clock restarted at the answer.
    assert_eq!(conn.deadline_ms(), Some(46_000 + DEFAULT_IDLE_TIMEOUT_MS));
    assert_eq!(conn.take_cancelled(), None);
}

#[test]
fn parked_request_with_connection_close_closes_after_its_answer() {
    let mut fake =
        Fake::with(b"POST /sleep HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut s = Sleeper::new();
    assert_eq!(
        conn.poll(&mut fake, 0, &mut |r: &Request| s.handle(r)),
        ConnState::Open
    );
    assert!(fake.sent.is_empty());
    s.wake = true;
    assert_eq!(
        conn.poll(&mut fake, 5, &mut |r: &Request| s.handle(r)),
        ConnState::Closed
    );
    let r = responses(&fake.sent, &[]);
    assert_eq!((r.len(), r[0].status), (1, 201));
    assert_eq!(r[0].header("Connection"), Some("close"));
    assert_eq!(conn.take_cancelled(), None, "answered, not cancelled");
}

#[test]
fn peer_gone_while_parked_cancels_once() {
    // The peer's FIN after the request: it went away.
    let mut fake = Fake::with(SLEEP);
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut s = Sleeper::new();
    assert_eq!(
        conn.poll(&mut fake, 0, &mut |r: &Request| s.handle(r)),
        ConnState::Open
    );
    fake.eof = true;
    assert_eq!(
        conn.poll(&mut fake, 1, &mut |r: &Request| s.handle(r)),
        ConnState::Closed
    );
    assert!(fake.closed && fake.sent.is_empty());
    assert_eq!(conn.take_cancelled(), Some(9), "the latest token");
    assert_eq!(conn.take_cancelled(), None);
    assert_eq!(conn.deadline_ms(), None);

    // A socket that died under it (a parked connection neither reads nor
    // writes, so it cannot see that): the owner abandons the connection.
    let mut fake = Fake::with(SLEEP);
    let mut conn = Connection::new(ConnConfig::default(), 0);
    conn.poll(&mut fake, 0, &mut |r: &Request| s.handle(r));
    let token = conn.parked_token();
    assert!(token.is_some());
    assert_eq!(conn.abandon(), token);
    assert_eq!(conn.abandon(), None);
    assert!(conn.is_closed());
}

#[test]
fn parked_connection_reads_nothing_more() {
    let mut fake = Fake::with(SLEEP);
    for _ in 0..100 {
        fake.push(b"GET /api/health HTTP/1.1\r\n\r\n");
    }
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut s = Sleeper::new();
    conn.poll(&mut fake, 0, &mut |r: &Request| s.handle(r));
    let left = fake.pending_input();
    for now in 1..20 {
        conn.poll(&mut fake, now, &mut |r: &Request| s.handle(r));
    }
    assert_eq!(fake.pending_input(), left, "TCP holds the pipeline back");
    assert!(conn.buffered_input() <= RECV_CHUNK);
    s.wake = true;
    assert_eq!(
        drive_with(&mut conn, &mut fake, 30, &mut |r: &Request| s.handle(r)),
        ConnState::Open
    );
    assert_eq!(responses(&fake.sent, &[]).len(), 101);
}

/// A handler streaming `/stream`: each call sends what `feed` holds (and
/// empties it), ending the stream with `"bye\n"` once `end` is set.
struct Streamer {
    feed: Vec<u8>,
    end: bool,
    calls: usize,
}

impl Streamer {
    fn new() -> Streamer {
        Streamer {
            feed: Vec::new(),
            end: false,
            calls: 0,
        }
    }

    fn handle(&mut self, req: &Request, now_ms: u64) -> Response {
        if req.path != "/stream" {
            return api(req);
        }
        self.calls += 1;
        let body = core::mem::take(&mut self.feed);
        match (req.park, self.end) {
            (None, _) => Response::stream(200, "text/event-stream", body, 5, now_ms + 100),
            (Some(p), false) => {
                assert_eq!(p.token, 5);
                Response::stream_more(body, 5, now_ms + 100)
            }
            (Some(_), true) => Response::text(200, "bye\n"),
        }
    }
}

const STREAM: &[u8] = b"GET /stream HTTP/1.1\r\n\r\n";

#[test]
fn stream_is_chunked_goes_on_then_ends_and_the_connection_carries_on() {
    let mut fake = Fake::with(STREAM);
    fake.push(b"GET /api/health HTTP/1.1\r\n\r\n");
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut s = Streamer::new();
    s.feed = b"hello\n".to_vec();
    assert_eq!(
        conn.poll(&mut fake, 0, &mut |r: &Request| s.handle(r, 0)),
        ConnState::Open
    );
    assert_eq!(
        fake.sent_str(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
         Transfer-Encoding: chunked\r\n\r\n6\r\nhello\n\r\n"
    );
    assert_eq!(conn.parked_token(), Some(5));
    assert_eq!(conn.deadline_ms(), Some(100), "asked again by until_ms");
    // Nothing to say: nothing sent, the connection stays (past idle).
    let sent = fake.sent.len();
    conn.poll(&mut fake, 50_000, &mut |r: &Request| s.handle(r, 50_000));
    assert_eq!(fake.sent.len(), sent);
    s.feed = vec![b'x'; 300];
    conn.poll(&mut fake, 50_001, &mut |r: &Request| s.handle(r, 50_001));
    let tail = fake.sent_str()[sent..].to_string();
    assert_eq!(tail, format!("12c\r\n{}\r\n", "x".repeat(300)));
    s.end = true;
    conn.poll(&mut fake, 50_002, &mut |r: &Request| s.handle(r, 50_002));
    let out = fake.sent_str();
    let (end, next) = out[sent..].split_at(out[sent..].find("HTTP/1.1").unwrap());
    assert_eq!(
        end,
        format!("12c\r\n{}\r\n4\r\nbye\n\r\n0\r\n\r\n", "x".repeat(300))
    );
    let r = responses(next.as_bytes(), &[]);
    assert_eq!(
        (r.len(), r[0].status),
        (1, 200),
        "the next request answered"
    );
    assert_eq!(conn.requests_served(), 2, "the stream counts once");
    assert_eq!(conn.parked_token(), None);
    assert_eq!(conn.take_cancelled(), None);
}

#[test]
fn stream_to_http10_is_close_delimited() {
    let mut fake = Fake::with(b"GET /stream HTTP/1.0\r\n\r\n");
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut s = Streamer::new();
    s.feed = b"a\n".to_vec();
    conn.poll(&mut fake, 0, &mut |r: &Request| s.handle(r, 0));
    s.feed = b"b\n".to_vec();
    conn.poll(&mut fake, 1, &mut |r: &Request| s.handle(r, 1));
    s.end = true;
    assert_eq!(
        conn.poll(&mut fake, 2, &mut |r: &Request| s.handle(r, 2)),
        ConnState::Closed
    );
    assert_eq!(
        fake.sent_str(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\na\nb\nbye\n"
    );
}

#[test]
fn stream_peer_gone_cancels_and_head_never_starts() {
    let mut fake = Fake::with(STREAM);
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut s = Streamer::new();
    conn.poll(&mut fake, 0, &mut |r: &Request| s.handle(r, 0));
    fake.eof = true;
    assert_eq!(
        conn.poll(&mut fake, 1, &mut |r: &Request| s.handle(r, 1)),
        ConnState::Closed
    );
    assert_eq!(conn.take_cancelled(), Some(5));

    let mut fake = Fake::with(b"HEAD /stream HTTP/1.1\r\n\r\n");
    let mut conn = Connection::new(ConnConfig::default(), 0);
    conn.poll(&mut fake, 0, &mut |r: &Request| s.handle(r, 0));
    assert_eq!(
        fake.sent_str(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HEAD: GET's headers, no body"
    );
    assert_eq!(
        conn.take_cancelled(),
        Some(5),
        "HEAD: the stream ends at once"
    );
    assert_eq!(conn.parked_token(), None);
}

#[test]
fn slow_stream_reader_is_not_asked_and_a_stalled_one_is_closed() {
    let mut fake = Fake::with(STREAM);
    fake.send_budget = 1000;
    let mut conn = Connection::new(ConnConfig::default(), 0);
    let mut s = Streamer::new();
    conn.poll(&mut fake, 0, &mut |r: &Request| s.handle(r, 0));
    for now in 1..100 {
        s.feed = vec![b'y'; 1000];
        conn.poll(&mut fake, now, &mut |r: &Request| s.handle(r, now));
    }
    let calls = s.calls;
    assert!(
        conn.pending_output() >= STREAM_QUEUE_LIMIT
            && conn.pending_output() < STREAM_QUEUE_LIMIT + 1100,
        "{}",
        conn.pending_output()
    );
    assert!(
        calls < 30,
        "not asked while the queue is full: {calls} calls"
    );
    // Stalled: closed once idle this long (since its last byte went out,
    // at 1 ms), the token handed back.
    assert_eq!(conn.deadline_ms(), Some(1 + DEFAULT_IDLE_TIMEOUT_MS));
    assert_eq!(
        conn.poll(&mut fake, 5_000, &mut |r: &Request| s.handle(r, 5_000)),
        ConnState::Open
    );
    assert_eq!(s.calls, calls);
    assert_eq!(
        conn.poll(
            &mut fake,
            1 + DEFAULT_IDLE_TIMEOUT_MS,
            &mut |r: &Request| s.handle(r, 0)
        ),
        ConnState::Closed
    );
    assert_eq!(conn.take_cancelled(), Some(5));
}
