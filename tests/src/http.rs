//! A minimal HTTP/1.1 client for the integration tests: raw bytes over a
//! `TcpStream` to 127.0.0.1 so tests see exactly what the guest sends
//! (status line, headers, Content-Length framing, keep-alive).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One keep-alive connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects to `127.0.0.1:port` with generous timeouts (TCG guests are slow).
    pub fn connect(port: u16) -> Client {
        let stream =
            TcpStream::connect(("127.0.0.1", port)).expect("connect to the guest's port forward");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Connects and checks the connection is served (a HEAD of
    /// `/api/health` answered), retrying while the guest's sockets are all
    /// busy and it resets new connections, for at most `patience`.
    pub fn connect_patiently(port: u16, patience: Duration) -> Client {
        let end = std::time::Instant::now() + patience;
        loop {
            let mut c = Client::connect(port);
            let head = b"HEAD /api/health HTTP/1.1\r\nHost: pagezone\r\n\r\n";
            let answer = c
                .writer
                .write_all(head)
                .and_then(|()| c.try_read_response(true));
            match answer {
                Ok(r) if r.status == 200 => return c,
                _ if std::time::Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                other => panic!("no served connection within {patience:?}: {other:?}"),
            }
        }
    }

    /// Sends raw bytes (for malformed-request tests).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    /// Sends a request with an optional body and reads the response.
    pub fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> Response {
        self.request_with(method, path, body, &[])
    }

    /// Like [`request`](Self::request) with extra header lines.
    pub fn request_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: pagezone\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        self.send_raw(req.as_bytes());
        self.read_response(method == "HEAD")
    }

    /// Reads one response (headers, then exactly Content-Length bytes);
    /// panics on a broken connection or a malformed response.
    pub fn read_response(&mut self, head_only: bool) -> Response {
        self.try_read_response(head_only)
            .unwrap_or_else(|e| panic!("reading the response: {e}"))
    }

    /// Like [`read_response`](Self::read_response), with I/O errors (a
    /// reset or closed connection) returned instead of panicking.
    pub fn try_read_response(&mut self, head_only: bool) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        assert!(version.starts_with("HTTP/1."), "bad status line {line:?}");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header {h:?}"));
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().expect("numeric Content-Length"))
            .unwrap_or(0);
        let mut body = vec![0; if head_only { 0 } else { len }];
        self.reader.read_exact(&mut body)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// One request on a fresh connection, retried while the connection is
/// refused or reset (all of the guest's sockets busy) until `patience` runs
/// out: what a well-behaved client does when a server is saturated.
pub fn request_patiently(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    patience: Duration,
) -> Response {
    let end = std::time::Instant::now() + patience;
    loop {
        let attempt = TcpStream::connect(("127.0.0.1", port)).and_then(|stream| {
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            let mut c = Client {
                reader: BufReader::new(stream.try_clone()?),
                writer: stream,
            };
            let mut req = format!("{method} {path} HTTP/1.1\r\nHost: pagezone\r\n");
            if let Some(b) = body {
                req.push_str(&format!("Content-Length: {}\r\n", b.len()));
            }
            req.push_str("\r\n");
            req.push_str(body.unwrap_or(""));
            c.writer.write_all(req.as_bytes())?;
            c.try_read_response(method == "HEAD")
        });
        match attempt {
            Ok(r) => return r,
            Err(e) if std::time::Instant::now() < end => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{method} {path}: no answer within {patience:?}: {e}"),
        }
    }
}

/// One request on a fresh connection.
pub fn request(port: u16, method: &str, path: &str, body: Option<&str>) -> Response {
    Client::connect(port).request(method, path, body)
}

/// A streamed answer (`trace_pipe`, `/api/events`): a `GET` on a
/// connection of its own whose chunked body is read as it arrives.
pub struct StreamReader {
    stream: TcpStream,
    raw: Vec<u8>,
    head_len: Option<usize>,
}

impl StreamReader {
    /// Sends `GET path` and waits (up to 30 s) for the answer's head.
    pub fn open(port: u16, path: &str) -> StreamReader {
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).expect("connect to the guest's port forward");
        stream.set_nodelay(true).unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: pagezone\r\n\r\n").as_bytes())
            .unwrap();
        let mut s = StreamReader {
            stream,
            raw: Vec::new(),
            head_len: None,
        };
        let end = std::time::Instant::now() + Duration::from_secs(30);
        while s.head_len.is_none() {
            assert!(std::time::Instant::now() < end, "no head for {path}");
            s.read_for(Duration::from_millis(100));
        }
        s
    }

    /// The head (status line and headers).
    pub fn head(&self) -> &str {
        std::str::from_utf8(&self.raw[..self.head_len.expect("head")]).expect("ASCII head")
    }

    /// Reads whatever arrives for `d`.
    pub fn read_for(&mut self, d: Duration) {
        let end = std::time::Instant::now() + d;
        loop {
            let now = std::time::Instant::now();
            if now >= end {
                break;
            }
            self.stream
                .set_read_timeout(Some((end - now).max(Duration::from_millis(1))))
                .unwrap();
            let mut buf = [0u8; 16384];
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading the stream: {e}"),
            }
            if self.head_len.is_none() {
                self.head_len = self
                    .raw
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| p + 4);
            }
        }
    }

    /// Reads until `done(body so far)` holds or `timeout` passes; the body.
    pub fn read_until(&mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let end = std::time::Instant::now() + timeout;
        loop {
            let body = self.body().0;
            if done(&body) || std::time::Instant::now() >= end {
                return body;
            }
            self.read_for(Duration::from_millis(50));
        }
    }

    /// The body so far, de-chunked, and whether its last chunk came.
    pub fn body(&self) -> (String, bool) {
        let Some(head) = self.head_len else {
            return (String::new(), false);
        };
        let mut rest = &self.raw[head..];
        let mut out = Vec::new();
        let ended = loop {
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                break false;
            };
            let size = std::str::from_utf8(&rest[..eol]).expect("chunk size");
            let len = usize::from_str_radix(size, 16).expect("hex chunk size");
            if len == 0 {
                break true;
            }
            let data = &rest[eol + 2..];
            if data.len() < len + 2 {
                break false;
            }
            assert_eq!(&data[len..len + 2], b"\r\n", "chunk framing");
            out.extend_from_slice(&data[..len]);
            rest = &data[len + 2..];
        };
        (String::from_utf8(out).expect("UTF-8 stream"), ended)
    }

    /// The JSON of every SSE `data:` line of unnamed events so far, and
    /// the named ones (`lost`, `subscribed`) as `(name, data)`.
    pub fn sse(&self) -> (Vec<serde_json::Value>, Vec<(String, serde_json::Value)>) {
        let (body, _) = self.body();
        let (mut data, mut named) = (Vec::new(), Vec::new());
        // Only complete events (ended by a blank line).
        let complete = body.rfind("\n\n").map_or("", |i| &body[..i]);
        for block in complete.split("\n\n").filter(|b| !b.is_empty()) {
            let mut event = None;
            let mut payload = None;
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    payload = Some(serde_json::from_str(d).expect("SSE data is JSON"));
                } else {
                    assert!(line.starts_with(':'), "SSE line {line:?}");
                }
            }
            match (event, payload) {
                (None, Some(v)) => data.push(v),
                (Some(e), Some(v)) => named.push((e, v)),
                _ => {}
            }
        }
        (data, named)
    }
}
