//! The network stack: a smoltcp [`Interface`] with DHCPv4 (or a static
//! address), a pool of listening TCP sockets on the API port, and one
//! [`Connection`] per established socket.
//!
//! The kernel owns the NIC (a `smoltcp::phy::Device`) and the clock; it
//! calls [`NetStack::poll`] whenever a packet arrives or the time from
//! [`NetStack::poll_delay_ms`] has passed, and sleeps (`hlt`) otherwise.
//!
//! ```text
//!  Device ─► Counting ─► Interface::poll ─► SocketSet ─┬─ dhcpv4::Socket
//!                                                      └─ tcp::Socket × max_connections
//!                                                           │ (listen on port, one client each)
//!                                                           ▼
//!                                   TcpStream: impl Stream ─► Connection::poll ─► App::handle
//! ```
//!
//! Socket life cycle, per slot: `Listen` → a client connects → a
//! [`Connection`] is attached once the handshake is done → the connection
//! closes (`Connection: close`, bad input, peer FIN, idle/request timeout)
//! and the socket sends its FIN after the queued bytes → once TCP is done
//! (`Closed`, or `TimeWait`, which we cut short: the port is a server port
//! and a late duplicate segment is harmless to HTTP) or [`LINGER_MS`] after
//! the close at the latest (a peer that vanished, or never reads), the
//! socket is aborted and listens again. So `max_connections` clients are
//! served at once ([`default_max_connections`] sizes the pool by memory),
//! a client past the last free slot is reset (smoltcp answers a SYN no
//! socket listens for with RST), and an abandoned client never keeps a
//! socket.
//!
//! Addressing: `IpConfig::Static` is applied in [`NetStack::new`];
//! `IpConfig::Dhcp` runs a DHCPv4 client and, without a lease after
//! `dhcp_timeout_ms`, drops it and applies
//! [`mm::cmdline::FALLBACK_STATIC_IP`]. [`NetStack::take_ready`] reports the
//! first address once, for the `READY http://IP:PORT` line.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use mm::cmdline::{FALLBACK_STATIC_IP, IpConfig};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, RxToken, TxToken};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

use crate::server::conn::{ConnConfig, ConnState, Connection, Stream, StreamError};
use crate::server::http::Request;
use crate::server::response::Response;

/// Receive buffer per TCP socket. A request head (8 KiB) fits; a 64 KiB
/// body flows through under TCP flow control.
pub const TCP_RX_BUFFER_BYTES: usize = 8 * 1024;
/// Transmit buffer per TCP socket; larger answers drain from the
/// connection's queue as the peer acknowledges.
pub const TCP_TX_BUFFER_BYTES: usize = 32 * 1024;
/// How long a socket whose connection has closed may take to finish TCP's
/// closing handshake (and deliver what is still queued) before it is
/// aborted and listens again.
pub const LINGER_MS: u64 = 10_000;
/// smoltcp's per-socket timeout, counted from the peer's last segment: a
/// peer silent this long while we have data or a SYN-ACK in flight is
/// given up (half-open handshakes, vanished clients). Longer than the
/// connection idle timeout, else an idle close would reset at once
/// instead of sending its FIN.
pub const TCP_TIMEOUT_MS: u64 = 2 * crate::server::conn::DEFAULT_IDLE_TIMEOUT_MS;
/// Default [`NetConfig::dhcp_timeout_ms`].
pub const DEFAULT_DHCP_TIMEOUT_MS: u64 = 3_000;
/// Default [`NetConfig::max_connections`]: the 16 clients API.md promises
/// to serve at once, and the fewest [`default_max_connections`] gives.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// The most listening sockets [`default_max_connections`] gives.
pub const MAX_CONNECTIONS_CAP: usize = 32;
/// Buffer bytes a connection slot holds for as long as the kernel runs.
pub const SOCKET_BUFFER_BYTES: usize = TCP_RX_BUFFER_BYTES + TCP_TX_BUFFER_BYTES;

/// [`NetConfig::max_connections`] for a kernel whose kmalloc memory (the
/// direct-mapped RAM, where the socket buffers live) is `lowmem_bytes`:
/// as many slots as keep their buffers within 1/64 of it, at least
/// [`DEFAULT_MAX_CONNECTIONS`] and at most [`MAX_CONNECTIONS_CAP`] — a
/// table sized by memory at boot, as Linux's `tcp_init()` sizes its
/// hash tables and `tcp_mem`. 80 MiB or more gets 32: a client past the
/// last slot is reset (smoltcp answers a SYN nobody listens for with
/// RST), which `wrk -c32` counted as thousands of read errors a second
/// with 16; each idle slot costs every poll a look at one more socket.
pub fn default_max_connections(lowmem_bytes: u64) -> usize {
    let fits = lowmem_bytes / 64 / SOCKET_BUFFER_BYTES as u64;
    (fits.min(MAX_CONNECTIONS_CAP as u64) as usize).max(DEFAULT_MAX_CONNECTIONS)
}
/// Rounds of (interface poll, serve) per [`NetStack::poll`]: answers
/// written by one round go out on the wire in the next.
const MAX_ROUNDS: usize = 8;

/// What the kernel knows at boot about the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The NIC's MAC address.
    pub mac: [u8; 6],
    /// `ip=`: DHCP (default) or a static address.
    pub ip: IpConfig,
    /// `port=`: the API's TCP port.
    pub port: u16,
    /// Clients served at once (listening sockets); at least 1.
    pub max_connections: usize,
    /// `token=`: bearer token required by non-GET requests.
    pub token: Option<alloc::string::String>,
    /// Wait this long for a DHCP lease before the static fallback.
    pub dhcp_timeout_ms: u64,
    /// How the NIC is attached (`"virtio-pci"`, `"virtio-mmio"`), for
    /// `/api/net`; `None` where there is no such thing (host tests).
    pub transport: Option<&'static str>,
}

impl NetConfig {
    /// The defaults of API.md for a NIC with `mac`: DHCP, port 80, 16
    /// connections, no token, 3 s DHCP timeout.
    pub fn new(mac: [u8; 6]) -> NetConfig {
        NetConfig {
            mac,
            ip: IpConfig::Dhcp,
            port: mm::cmdline::DEFAULT_PORT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            token: None,
            dhcp_timeout_ms: DEFAULT_DHCP_TIMEOUT_MS,
            transport: None,
        }
    }
}

/// Where the IPv4 address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressSource {
    /// Not configured yet (DHCP running).
    #[default]
    None,
    /// A DHCP lease.
    Dhcp,
    /// `ip=A.B.C.D/N,GW` on the command line.
    Static,
    /// No lease within the DHCP timeout: `10.0.2.15/24`, gateway `10.0.2.2`.
    Fallback,
}

impl AddressSource {
    /// `"none"`, `"dhcp"`, `"static"`, `"fallback"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AddressSource::None => "none",
            AddressSource::Dhcp => "dhcp",
            AddressSource::Static => "static",
            AddressSource::Fallback => "fallback",
        }
    }
}

/// A snapshot of the stack for `/api/net` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetStats {
    pub mac: [u8; 6],
    /// Address and prefix length, once configured.
    pub ipv4: Option<([u8; 4], u8)>,
    pub gateway: Option<[u8; 4]>,
    pub address_source: AddressSource,
    pub port: u16,
    /// Frames received from / handed to the device.
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Listening-pool size (`max_connections`).
    pub tcp_sockets_total: usize,
    /// Sockets with a client (connecting, connected or closing).
    pub tcp_sockets_in_use: usize,
    /// Connections accepted since boot.
    pub tcp_connections: u64,
    /// Requests handed to the [`App`] since boot (401s never reach it).
    pub http_requests: u64,
    /// [`NetConfig::transport`].
    pub transport: Option<&'static str>,
}

/// The HTTP application behind the stack: the API.
pub trait App {
    /// Answer one request. `net` is the stack's state as of this poll.
    /// [`Response::pending`] parks it (see [`crate::server::conn`]): it is
    /// handed back, with `req.park` set, on every later poll of its
    /// connection until answered.
    fn handle(&mut self, req: &Request, net: &NetStats) -> Response;

    /// The client of the request parked under `token` went away: end its
    /// wait (nothing will ask again). The default does nothing.
    fn cancel(&mut self, token: u64) {
        let _ = token;
    }
}

/// Any `FnMut(&Request, &NetStats) -> Response` is an [`App`] (tests,
/// small servers).
impl<F: FnMut(&Request, &NetStats) -> Response> App for F {
    fn handle(&mut self, req: &Request, net: &NetStats) -> Response {
        self(req, net)
    }
}

/// One listening socket and the client it serves.
struct Slot {
    handle: SocketHandle,
    conn: Option<Connection>,
    /// The connection closed at this time; TCP is finishing.
    closed_at_ms: Option<u64>,
}

/// How the address is being obtained.
enum Addressing {
    /// DHCP running; fall back at `deadline_ms` without a lease.
    Dhcp {
        handle: SocketHandle,
        deadline_ms: u64,
    },
    /// Static, fallback, or a lease that the DHCP socket keeps renewing
    /// (`handle` is then `Some`).
    Configured { dhcp: Option<SocketHandle> },
}

/// The stack; see the module doc.
pub struct NetStack {
    iface: Interface,
    sockets: SocketSet<'static>,
    slots: Vec<Slot>,
    addressing: Addressing,
    conn_config: ConnConfig,
    mac: [u8; 6],
    transport: Option<&'static str>,
    port: u16,
    address_source: AddressSource,
    gateway: Option<[u8; 4]>,
    ready: Option<([u8; 4], u16)>,
    ready_reported: bool,
    rx_packets: u64,
    tx_packets: u64,
    tcp_connections: u64,
    http_requests: u64,
}

impl NetStack {
    /// Build the interface on `device` and open the listening pool.
    pub fn new<D: Device>(config: NetConfig, device: &mut D, now_ms: u64) -> NetStack {
        let now = instant(now_ms);
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(config.mac)));
        // Initial sequence numbers and DHCP transaction ids come from this.
        iface_config.random_seed = seed(&config.mac, now_ms);
        let iface = Interface::new(iface_config, device, now);
        let mut sockets = SocketSet::new(Vec::new());

        let count = config.max_connections.max(1);
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; TCP_RX_BUFFER_BYTES]),
                tcp::SocketBuffer::new(vec![0; TCP_TX_BUFFER_BYTES]),
            );
            // Answers are written whole; do not hold their last segment
            // back for the peer's delayed ACK (cf. TCP_NODELAY).
            socket.set_nagle_enabled(false);
            socket.set_timeout(Some(Duration::from_millis(TCP_TIMEOUT_MS)));
            // Only a zero port can fail, and then nothing can be served.
            let _ = socket.listen(config.port);
            slots.push(Slot {
                handle: sockets.add(socket),
                conn: None,
                closed_at_ms: None,
            });
        }

        let conn_config = ConnConfig {
            token: config.token.as_deref().map(Arc::from),
            ..ConnConfig::default()
        };
        let mut stack = NetStack {
            iface,
            sockets,
            slots,
            addressing: Addressing::Configured { dhcp: None },
            conn_config,
            mac: config.mac,
            transport: config.transport,
            port: config.port,
            address_source: AddressSource::None,
            gateway: None,
            ready: None,
            ready_reported: false,
            rx_packets: 0,
            tx_packets: 0,
            tcp_connections: 0,
            http_requests: 0,
        };
        match config.ip {
            IpConfig::Static { .. } => stack.apply_static(config.ip, AddressSource::Static),
            IpConfig::Dhcp => {
                let handle = stack.sockets.add(dhcpv4::Socket::new());
                stack.addressing = Addressing::Dhcp {
                    handle,
                    deadline_ms: now_ms.saturating_add(config.dhcp_timeout_ms),
                };
            }
        }
        stack
    }

    /// Move packets, run DHCP, serve every connection, and put the answers
    /// on the wire. Returns whether anything happened (a packet moved, a
    /// connection made progress, a socket changed state, the address
    /// changed); `false` means polling again before an event or
    /// [`NetStack::poll_delay_ms`] is pointless.
    pub fn poll<D: Device>(&mut self, device: &mut D, now_ms: u64, app: &mut dyn App) -> bool {
        let now = instant(now_ms);
        let mut happened = false;
        for _ in 0..MAX_ROUNDS {
            let mut counting = Counting {
                inner: &mut *device,
                rx: 0,
                tx: 0,
            };
            self.iface.poll(now, &mut counting, &mut self.sockets);
            let moved = counting.rx + counting.tx > 0;
            self.rx_packets += counting.rx;
            self.tx_packets += counting.tx;
            let addressed = self.poll_addressing(now_ms);
            let served = self.serve(now_ms, app);
            happened |= moved || addressed || served;
            if !served {
                break;
            }
        }
        happened
    }

    /// Milliseconds until [`NetStack::poll`] must run again even without a
    /// packet: smoltcp's timers (retransmission, delayed ACK, DHCP), the
    /// connections' idle and request deadlines, sockets lingering after a
    /// close, and the DHCP fallback. `None`: only a packet can change
    /// anything.
    pub fn poll_delay_ms(&mut self, now_ms: u64) -> Option<u64> {
        let mut delay = self
            .iface
            .poll_delay(instant(now_ms), &self.sockets)
            .map(|d| d.total_millis());
        let mut consider = |deadline_ms: u64| {
            let d = deadline_ms.saturating_sub(now_ms);
            delay = Some(delay.map_or(d, |cur| cur.min(d)));
        };
        for slot in &self.slots {
            if let Some(deadline) = slot.conn.as_ref().and_then(Connection::deadline_ms) {
                consider(deadline);
            }
            if let Some(closed_at) = slot.closed_at_ms {
                consider(closed_at.saturating_add(LINGER_MS));
            }
        }
        if let Addressing::Dhcp { deadline_ms, .. } = self.addressing {
            consider(deadline_ms);
        }
        delay
    }

    /// The address and port to announce, exactly once: when an IPv4
    /// address is first configured.
    pub fn take_ready(&mut self) -> Option<([u8; 4], u16)> {
        if self.ready_reported {
            return None;
        }
        let ready = self.ready.take();
        self.ready_reported = ready.is_some();
        ready
    }

    /// A snapshot for `/api/net`.
    pub fn stats(&self) -> NetStats {
        let in_use = self
            .slots
            .iter()
            .filter(|slot| {
                let socket = self.sockets.get::<tcp::Socket>(slot.handle);
                !matches!(socket.state(), tcp::State::Listen | tcp::State::Closed)
            })
            .count();
        NetStats {
            mac: self.mac,
            ipv4: self.iface.ip_addrs().iter().find_map(|cidr| match cidr {
                IpCidr::Ipv4(v4) => Some((v4.address().octets(), v4.prefix_len())),
                // With `proto-ipv6` unified in by another crate.
                #[allow(unreachable_patterns)]
                _ => None,
            }),
            gateway: self.gateway,
            address_source: self.address_source,
            port: self.port,
            rx_packets: self.rx_packets,
            tx_packets: self.tx_packets,
            tcp_sockets_total: self.slots.len(),
            tcp_sockets_in_use: in_use,
            tcp_connections: self.tcp_connections,
            http_requests: self.http_requests,
            transport: self.transport,
        }
    }

    /// DHCP events and the fallback deadline; true if the address changed.
    fn poll_addressing(&mut self, now_ms: u64) -> bool {
        let handle = match self.addressing {
            Addressing::Dhcp { handle, .. } => handle,
            Addressing::Configured { dhcp: Some(handle) } => handle,
            Addressing::Configured { dhcp: None } => return false,
        };
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            Some(dhcpv4::Event::Configured(config)) => Some(Some((config.address, config.router))),
            Some(dhcpv4::Event::Deconfigured) => Some(None),
            None => None,
        };
        match event {
            Some(Some((address, router))) => {
                self.set_address(address, router, AddressSource::Dhcp);
                self.addressing = Addressing::Configured { dhcp: Some(handle) };
                true
            }
            Some(None) => {
                // Lease lost: no address until the next one.
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                self.gateway = None;
                self.address_source = AddressSource::None;
                false
            }
            None => match self.addressing {
                Addressing::Dhcp { deadline_ms, .. } if now_ms >= deadline_ms => {
                    self.sockets.remove(handle);
                    self.apply_static(FALLBACK_STATIC_IP, AddressSource::Fallback);
                    true
                }
                _ => false,
            },
        }
    }

    fn apply_static(&mut self, ip: IpConfig, source: AddressSource) {
        if let IpConfig::Static {
            addr,
            prefix_len,
            gateway,
        } = ip
        {
            let address = Ipv4Cidr::new(Ipv4Address::from(addr), prefix_len.min(32));
            self.set_address(address, Some(Ipv4Address::from(gateway)), source);
        }
        self.addressing = Addressing::Configured { dhcp: None };
    }

    fn set_address(
        &mut self,
        address: Ipv4Cidr,
        router: Option<Ipv4Address>,
        source: AddressSource,
    ) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // One address never overflows the table.
            let _ = addrs.push(IpCidr::Ipv4(address));
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some(router) = router {
            // One default route never overflows the table.
            let _ = self.iface.routes_mut().add_default_ipv4_route(router);
        }
        self.gateway = router.map(|r| r.octets());
        self.address_source = source;
        if !self.ready_reported && self.ready.is_none() {
            self.ready = Some((address.address().octets(), self.port));
        }
    }

    /// Attach, serve and recycle every slot; true if anything progressed.
    fn serve(&mut self, now_ms: u64, app: &mut dyn App) -> bool {
        let mut stats = self.stats();
        let NetStack {
            sockets,
            slots,
            conn_config,
            port,
            tcp_connections,
            http_requests,
            ..
        } = self;
        let mut progressed = false;
        for slot in slots.iter_mut() {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            match socket.state() {
                tcp::State::Listen | tcp::State::SynReceived => continue,
                tcp::State::Closed | tcp::State::TimeWait => {
                    // Done (or reset, or timed out): serve the next client.
                    socket.abort();
                    let _ = socket.listen(*port);
                    if let Some(token) = slot.conn.take().and_then(|mut c| c.abandon()) {
                        app.cancel(token);
                    }
                    slot.closed_at_ms = None;
                    progressed = true;
                    continue;
                }
                _ => {}
            }
            if let Some(closed_at) = slot.closed_at_ms {
                if now_ms >= closed_at.saturating_add(LINGER_MS) {
                    socket.abort();
                    let _ = socket.listen(*port);
                    slot.closed_at_ms = None;
                    progressed = true;
                }
                continue;
            }
            let conn = match &mut slot.conn {
                Some(conn) => conn,
                None => {
                    *tcp_connections += 1;
                    progressed = true;
                    slot.conn
                        .insert(Connection::new(conn_config.clone(), now_ms))
                }
            };
            let before = (
                conn.requests_served(),
                conn.pending_output(),
                conn.buffered_input(),
            );
            let mut stream = TcpStream { socket };
            let mut handler = |req: &Request| {
                // The request being answered counts (once, not per retry
                // of a parked one).
                if req.park.is_none() {
                    *http_requests += 1;
                }
                stats.http_requests = *http_requests;
                app.handle(req, &stats)
            };
            let state = conn.poll(&mut stream, now_ms, &mut handler);
            if let Some(token) = conn.take_cancelled() {
                app.cancel(token);
            }
            match state {
                ConnState::Open => {
                    let after = (
                        conn.requests_served(),
                        conn.pending_output(),
                        conn.buffered_input(),
                    );
                    progressed |= after != before;
                }
                ConnState::Closed => {
                    slot.conn = None;
                    slot.closed_at_ms = Some(now_ms);
                    progressed = true;
                }
            }
        }
        progressed
    }
}

/// A smoltcp TCP socket as a [`Stream`].
struct TcpStream<'s, 'a> {
    socket: &'s mut tcp::Socket<'a>,
}

impl Stream for TcpStream<'_, '_> {
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        match self.socket.recv_slice(buf) {
            Ok(n) => Ok(n),
            // The peer's FIN with nothing left to read: `may_recv` now
            // says false and the connection winds down.
            Err(tcp::RecvError::Finished) => Ok(0),
            Err(tcp::RecvError::InvalidState) => Err(StreamError::Closed),
        }
    }

    fn send(&mut self, data: &[u8]) -> Result<usize, StreamError> {
        self.socket
            .send_slice(data)
            .map_err(|tcp::SendError::InvalidState| StreamError::Closed)
    }

    fn may_recv(&self) -> bool {
        self.socket.may_recv()
    }

    fn close(&mut self) {
        self.socket.close();
    }
}

/// The kernel's device, counting the frames that pass.
struct Counting<'d, D: Device> {
    inner: &'d mut D,
    rx: u64,
    tx: u64,
}

struct CountRx<'c, T> {
    inner: T,
    count: &'c mut u64,
}

struct CountTx<'c, T> {
    inner: T,
    count: &'c mut u64,
}

impl<D: Device> Device for Counting<'_, D> {
    type RxToken<'a>
        = CountRx<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = CountTx<'a, D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.inner.receive(timestamp)?;
        Some((
            CountRx {
                inner: rx,
                count: &mut self.rx,
            },
            CountTx {
                inner: tx,
                count: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let tx = self.inner.transmit(timestamp)?;
        Some(CountTx {
            inner: tx,
            count: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

impl<T: RxToken> RxToken for CountRx<'_, T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        *self.count += 1;
        self.inner.consume(f)
    }

    fn meta(&self) -> smoltcp::phy::PacketMeta {
        self.inner.meta()
    }
}

impl<T: TxToken> TxToken for CountTx<'_, T> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        *self.count += 1;
        self.inner.consume(len, f)
    }

    fn set_meta(&mut self, meta: smoltcp::phy::PacketMeta) {
        self.inner.set_meta(meta);
    }
}

fn instant(now_ms: u64) -> Instant {
    Instant::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX))
}

/// A seed that differs per NIC and per boot moment (splitmix64 of both).
fn seed(mac: &[u8; 6], now_ms: u64) -> u64 {
    let mut x = mac.iter().fold(now_ms ^ 0x9e37_79b9_7f4a_7c15, |acc, &b| {
        acc.rotate_left(8) ^ u64::from(b)
    });
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests;
