//! Test support: two smoltcp interfaces joined by an in-memory Ethernet
//! wire, the server side being a [`NetStack`] and the client side a plain
//! smoltcp interface with TCP client sockets, on a simulated clock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::string::String;
use std::vec;
use std::vec::Vec;

use mm::cmdline::IpConfig;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use crate::server::stack::{App, NetConfig, NetStack};

pub const SERVER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
pub const CLIENT_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
pub const SERVER_IP: [u8; 4] = [10, 0, 2, 15];
pub const CLIENT_IP: [u8; 4] = [10, 0, 2, 2];
pub const PORT: u16 = 80;

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of the wire: frames sent appear in the other end's `rx`.
pub struct PipeEnd {
    pub(crate) rx: Queue,
    pub(crate) tx: Queue,
    /// Drop everything sent (a vanished peer).
    pub unplugged: Rc<RefCell<bool>>,
}

/// A connected pair of ends sharing the unplug switch.
pub fn pipe() -> (PipeEnd, PipeEnd) {
    let a: Queue = Rc::default();
    let b: Queue = Rc::default();
    let unplugged = Rc::new(RefCell::new(false));
    (
        PipeEnd {
            rx: a.clone(),
            tx: b.clone(),
            unplugged: unplugged.clone(),
        },
        PipeEnd {
            rx: b,
            tx: a,
            unplugged,
        },
    )
}

pub struct PipeRx(Vec<u8>);
pub struct PipeTx<'a>(&'a PipeEnd);

impl smoltcp::phy::RxToken for PipeRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for PipeTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        if !*self.0.unplugged.borrow() {
            self.0.tx.borrow_mut().push_back(buf);
        }
        r
    }
}

impl Device for PipeEnd {
    type RxToken<'a> = PipeRx;
    type TxToken<'a> = PipeTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(PipeRx, PipeTx<'_>)> {
        let frame = self.rx.borrow_mut().pop_front()?;
        Some((PipeRx(frame), PipeTx(self)))
    }

    fn transmit(&mut self, _: Instant) -> Option<PipeTx<'_>> {
        Some(PipeTx(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
}

/// Parse one response from the front of `buf` (`head_only`: the request
/// was HEAD, no body follows); `None` if incomplete.
pub fn parse_response(buf: &[u8], head_only: bool) -> Option<(HttpResponse, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header colon");
            (n.trim().into(), v.trim().into())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().expect("numeric length"))
        .unwrap_or(0);
    let len = if head_only || status == 100 { 0 } else { len };
    if buf.len() < end + len {
        return None;
    }
    Some((
        HttpResponse {
            status,
            headers,
            body: buf[end..end + len].to_vec(),
        },
        end + len,
    ))
}

/// The server stack, a client interface, the wire and the clock.
pub struct Net {
    pub stack: NetStack,
    pub server_end: PipeEnd,
    pub client_end: PipeEnd,
    pub client: Interface,
    pub sockets: SocketSet<'static>,
    pub now_ms: u64,
    next_port: u16,
    /// Bytes received per client socket not yet parsed.
    inbox: Vec<(SocketHandle, Vec<u8>)>,
}

impl Net {
    pub fn new(config: NetConfig) -> Net {
        let (mut server_end, mut client_end) = pipe();
        let now_ms = 1_000;
        let stack = NetStack::new(config, &mut server_end, now_ms);
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC)));
        cfg.random_seed = 7;
        let mut client = Interface::new(cfg, &mut client_end, Instant::from_millis(now_ms as i64));
        client.update_ip_addrs(|a| {
            a.push(IpCidr::new(
                IpAddress::from(Ipv4Address::from(CLIENT_IP)),
                24,
            ))
            .unwrap();
        });
        Net {
            stack,
            server_end,
            client_end,
            client,
            sockets: SocketSet::new(Vec::new()),
            now_ms,
            next_port: 49152,
            inbox: Vec::new(),
        }
    }

    /// A stack with the static test address and `max_connections`.
    pub fn with_static(max_connections: usize, token: Option<&str>) -> Net {
        let mut config = NetConfig::new(SERVER_MAC);
        // The simulated NIC is smoltcp's loopback, so say so.
        config.transport = Some("loopback");
        config.ip = IpConfig::Static {
            addr: SERVER_IP,
            prefix_len: 24,
            gateway: CLIENT_IP,
        };
        config.port = PORT;
        config.max_connections = max_connections;
        config.token = token.map(String::from);
        Net::new(config)
    }

    /// One exchange on both sides at the current time, then 1 ms passes.
    /// Returns whether the server reported activity.
    pub fn step(&mut self, app: &mut dyn App) -> bool {
        let now = Instant::from_millis(self.now_ms as i64);
        let a = self.stack.poll(&mut self.server_end, self.now_ms, app);
        self.client
            .poll(now, &mut self.client_end, &mut self.sockets);
        self.drain_sockets();
        self.now_ms += 1;
        a
    }

    /// Let `ms` of simulated time pass, exchanging packets, jumping over
    /// idle stretches as the server's poll_delay allows.
    pub fn run_for(&mut self, ms: u64, app: &mut dyn App) {
        let end = self.now_ms + ms;
        while self.now_ms < end {
            self.step(app);
            let idle =
                self.server_end.rx.borrow().is_empty() && self.client_end.rx.borrow().is_empty();
            if idle {
                let server = self.stack.poll_delay_ms(self.now_ms).unwrap_or(u64::MAX);
                let client = self
                    .client
                    .poll_delay(Instant::from_millis(self.now_ms as i64), &self.sockets)
                    .map_or(u64::MAX, |d| d.total_millis());
                let skip = server.min(client).min(end - self.now_ms);
                self.now_ms += skip.saturating_sub(1);
            }
        }
    }

    fn drain_sockets(&mut self) {
        for (handle, buf) in &mut self.inbox {
            let socket = self.sockets.get_mut::<tcp::Socket>(*handle);
            while socket.can_recv() {
                let mut chunk = [0u8; 4096];
                match socket.recv_slice(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
        }
    }

    /// Open a client connection (not yet established).
    pub fn connect(&mut self) -> SocketHandle {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 256 * 1024]),
            tcp::SocketBuffer::new(vec![0; 128 * 1024]),
        );
        socket.set_ack_delay(None);
        socket.set_nagle_enabled(false);
        let port = self.next_port;
        self.next_port += 1;
        socket
            .connect(
                self.client.context(),
                (IpAddress::from(Ipv4Address::from(SERVER_IP)), PORT),
                port,
            )
            .unwrap();
        let handle = self.sockets.add(socket);
        self.inbox.push((handle, Vec::new()));
        handle
    }

    pub fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    /// Queue request bytes on a client socket (it must be able to take
    /// them; steps the network while its buffer is full).
    pub fn send(&mut self, handle: SocketHandle, mut bytes: &[u8], app: &mut dyn App) {
        let mut spins = 0;
        while !bytes.is_empty() {
            let socket = self.socket(handle);
            if socket.may_send() {
                let n = socket.send_slice(bytes).unwrap();
                bytes = &bytes[n..];
            }
            if !bytes.is_empty() {
                self.step(app);
                spins += 1;
                assert!(spins < 100_000, "client could not send");
            }
        }
    }

    /// Step until one response is complete on `handle` (within `limit_ms`).
    pub fn response(
        &mut self,
        handle: SocketHandle,
        head_only: bool,
        limit_ms: u64,
        app: &mut dyn App,
    ) -> Option<HttpResponse> {
        let deadline = self.now_ms + limit_ms;
        loop {
            let slot = self.inbox.iter_mut().find(|(h, _)| *h == handle).unwrap();
            if let Some((resp, used)) = parse_response(&slot.1, head_only) {
                slot.1.drain(..used);
                return Some(resp);
            }
            if self.now_ms >= deadline {
                return None;
            }
            self.step(app);
        }
    }

    /// Every byte received on `handle` so far and not yet parsed, taken
    /// (for streamed answers, which [`Net::response`] cannot frame).
    pub fn take_received(&mut self, handle: SocketHandle) -> Vec<u8> {
        let slot = self.inbox.iter_mut().find(|(h, _)| *h == handle).unwrap();
        core::mem::take(&mut slot.1)
    }

    /// Send one request on `handle` and wait for its response.
    pub fn exchange(
        &mut self,
        handle: SocketHandle,
        request: &[u8],
        app: &mut dyn App,
    ) -> HttpResponse {
        let head_only = request.starts_with(b"HEAD ");
        self.send(handle, request, app);
        self.response(handle, head_only, 5_000, app)
            .unwrap_or_else(|| panic!("no response to {}", String::from_utf8_lossy(request)))
    }

    /// Step until `handle` is established.
    pub fn establish(&mut self, handle: SocketHandle, app: &mut dyn App) {
        for _ in 0..1000 {
            if self.socket(handle).state() == tcp::State::Established {
                return;
            }
            self.step(app);
        }
        panic!(
            "connection not established: {:?}",
            self.socket(handle).state()
        );
    }
}
