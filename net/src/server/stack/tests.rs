//! The stack over an in-memory Ethernet wire against a smoltcp client.

use std::format;
use std::string::String;
use std::vec::Vec;

use smoltcp::socket::tcp;

use super::*;
use crate::testing::*;

fn echo() -> impl FnMut(&Request, &NetStats) -> Response {
    |req: &Request, _: &NetStats| {
        if req.path == "/big" {
            let body: Vec<u8> = (0..200 * 1024).map(|i: u32| (i % 251) as u8).collect();
            Response::bytes(200, "application/octet-stream", body)
        } else {
            Response::text(200, req.path.clone())
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

#[test]
fn static_address_is_ready_exactly_once() {
    let mut net = Net::with_static(4, None);
    assert_eq!(net.stack.take_ready(), Some((SERVER_IP, PORT)));
    assert_eq!(net.stack.take_ready(), None);
    let stats = net.stack.stats();
    assert_eq!(stats.ipv4, Some((SERVER_IP, 24)));
    assert_eq!(stats.gateway, Some(CLIENT_IP));
    assert_eq!(stats.address_source, AddressSource::Static);
    assert_eq!(stats.mac, SERVER_MAC);
    assert_eq!((stats.tcp_sockets_total, stats.tcp_sockets_in_use), (4, 0));
    // Nothing pending: only a packet can wake us.
    assert_eq!(net.stack.poll_delay_ms(net.now_ms), None);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let mut net = Net::with_static(16, None);
    let mut app = echo();
    let c = net.connect();
    for i in 0..5 {
        let r = net.exchange(c, &get(&format!("/r{i}")), &mut app);
        assert_eq!((r.status, r.text()), (200, format!("/r{i}").as_str()));
        assert_eq!(r.header("connection"), None);
    }
    // Pipelined, in one segment.
    let mut both = get("/a");
    both.extend(get("/b"));
    net.send(c, &both, &mut app);
    let a = net.response(c, false, 1000, &mut app).unwrap();
    let b = net.response(c, false, 1000, &mut app).unwrap();
    assert_eq!((a.text(), b.text()), ("/a", "/b"));
    let stats = net.stack.stats();
    assert_eq!(stats.http_requests, 7);
    assert_eq!(stats.tcp_connections, 1);
    assert_eq!(stats.tcp_sockets_in_use, 1);
    assert!(stats.rx_packets > 0 && stats.tx_packets > 0);
    // Connection: close ends it; the socket listens again.
    let r = net.exchange(
        c,
        b"GET /bye HTTP/1.1\r\nConnection: close\r\n\r\n",
        &mut app,
    );
    assert_eq!(r.header("connection"), Some("close"));
    net.socket(c).close();
    net.run_for(100, &mut app);
    assert_eq!(net.stack.stats().tcp_sockets_in_use, 0);
}

#[test]
fn sixteen_concurrent_clients_are_all_answered() {
    let mut net = Net::with_static(16, None);
    let mut app = echo();
    let clients: Vec<_> = (0..16).map(|_| net.connect()).collect();
    for &c in &clients {
        net.establish(c, &mut app);
    }
    assert_eq!(net.stack.stats().tcp_sockets_in_use, 16);
    for (i, &c) in clients.iter().enumerate() {
        net.send(c, &get(&format!("/c{i}")), &mut app);
    }
    for (i, &c) in clients.iter().enumerate() {
        let r = net.response(c, false, 2000, &mut app).unwrap();
        assert_eq!(r.text(), format!("/c{i}"));
    }
    // A 17th client finds no listening socket: refused, nothing breaks.
    let extra = net.connect();
    net.run_for(50, &mut app);
    assert_eq!(net.socket(extra).state(), tcp::State::Closed);
    // One leaves; a newcomer is served on its socket.
    net.socket(clients[0]).close();
    net.run_for(100, &mut app);
    assert_eq!(net.stack.stats().tcp_sockets_in_use, 15);
    let late = net.connect();
    let r = net.exchange(late, &get("/late"), &mut app);
    assert_eq!(r.text(), "/late");
    // The others still keep their connections.
    let r = net.exchange(clients[15], &get("/still"), &mut app);
    assert_eq!(r.text(), "/still");
}

#[test]
fn a_200_kib_response_arrives_whole() {
    let mut net = Net::with_static(2, None);
    let mut app = echo();
    let c = net.connect();
    let r = net.exchange(c, &get("/big"), &mut app);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("204800"));
    let expected: Vec<u8> = (0..200 * 1024).map(|i: u32| (i % 251) as u8).collect();
    assert!(r.body == expected, "body differs");
    // And the connection is still usable.
    assert_eq!(net.exchange(c, &get("/after"), &mut app).text(), "/after");
}

#[test]
fn idle_client_is_closed_and_its_socket_recycled() {
    let mut net = Net::with_static(1, None);
    let mut app = echo();
    let idle = net.connect();
    net.establish(idle, &mut app);
    assert_eq!(net.stack.stats().tcp_sockets_in_use, 1);
    // The idle deadline drives the timer.
    let delay = net.stack.poll_delay_ms(net.now_ms).unwrap();
    assert!(
        delay <= crate::server::conn::DEFAULT_IDLE_TIMEOUT_MS,
        "{delay}"
    );
    net.run_for(crate::server::conn::DEFAULT_IDLE_TIMEOUT_MS + 50, &mut app);
    // The server sent its FIN; the client never closes (abandoned).
    assert_eq!(net.socket(idle).state(), tcp::State::CloseWait);
    net.run_for(LINGER_MS + 50, &mut app);
    assert_eq!(net.stack.stats().tcp_sockets_in_use, 0);
    // The only socket serves a new client.
    let next = net.connect();
    assert_eq!(net.exchange(next, &get("/next"), &mut app).text(), "/next");
}

#[test]
fn vanished_client_mid_response_frees_the_socket() {
    let mut net = Net::with_static(1, None);
    let mut app = echo();
    let c = net.connect();
    net.establish(c, &mut app);
    net.send(c, &get("/big"), &mut app);
    for _ in 0..3 {
        net.step(&mut app);
    }
    *net.server_end.unplugged.borrow_mut() = true;
    net.run_for(40_000, &mut app);
    assert_eq!(net.stack.stats().tcp_sockets_in_use, 0);
    *net.server_end.unplugged.borrow_mut() = false;
    net.socket(c).abort();
    net.run_for(10, &mut app);
    let next = net.connect();
    assert_eq!(net.exchange(next, &get("/x"), &mut app).text(), "/x");
}

#[test]
fn half_open_handshake_frees_the_socket() {
    let mut net = Net::with_static(1, None);
    let mut app = echo();
    let c = net.connect();
    net.step(&mut app); // the client's SYN goes out
    net.step(&mut app); // the server answers SYN-ACK...
    *net.server_end.unplugged.borrow_mut() = true; // ...into the void
    net.run_for(100, &mut app);
    assert_eq!(net.stack.stats().tcp_sockets_in_use, 1);
    net.run_for(TCP_TIMEOUT_MS + 1000, &mut app);
    assert_eq!(net.stack.stats().tcp_sockets_in_use, 0);
    *net.server_end.unplugged.borrow_mut() = false;
    net.socket(c).abort();
    let next = net.connect();
    assert_eq!(net.exchange(next, &get("/x"), &mut app).text(), "/x");
}

#[test]
fn dhcp_without_server_falls_back_to_the_static_address() {
    let mut config = NetConfig::new(SERVER_MAC);
    config.dhcp_timeout_ms = 3000;
    let mut net = Net::new(config);
    let mut app = echo();
    assert_eq!(net.stack.take_ready(), None);
    assert_eq!(net.stack.stats().ipv4, None);
    let delay = net.stack.poll_delay_ms(net.now_ms).unwrap();
    assert!(delay <= 3000, "{delay}");
    net.run_for(2900, &mut app);
    assert_eq!(net.stack.take_ready(), None);
    // The DHCP client did try.
    assert!(net.stack.stats().tx_packets > 0);
    net.run_for(200, &mut app);
    assert_eq!(net.stack.take_ready(), Some(([10, 0, 2, 15], 80)));
    assert_eq!(net.stack.take_ready(), None);
    let stats = net.stack.stats();
    assert_eq!(stats.ipv4, Some(([10, 0, 2, 15], 24)));
    assert_eq!(stats.gateway, Some([10, 0, 2, 2]));
    assert_eq!(stats.address_source, AddressSource::Fallback);
    // And it serves.
    let c = net.connect();
    assert_eq!(net.exchange(c, &get("/up"), &mut app).text(), "/up");
}

#[test]
fn idle_stack_reports_nothing_happened() {
    let mut net = Net::with_static(2, None);
    let mut app = echo();
    let c = net.connect();
    net.exchange(c, &get("/x"), &mut app);
    net.run_for(100, &mut app);
    let now = net.now_ms;
    assert!(!net.stack.poll(&mut net.server_end, now, &mut app));
    let mut app2 = |_: &Request, s: &NetStats| Response::text(200, format!("{}", s.http_requests));
    let r = net.exchange(c, &get("/n"), &mut app2);
    assert_eq!(r.text(), "2");
    let _ = String::new();
}

/// A minimal DHCP server on the wire: OFFER for DISCOVER, ACK for REQUEST.
fn dhcp_reply(frame: &[u8], offered: [u8; 4]) -> Option<Vec<u8>> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        EthernetRepr, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
    };
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if udp.dst_port() != 67 {
        return None;
    }
    let dhcp = DhcpPacket::new_checked(udp.payload()).ok()?;
    let req = DhcpRepr::parse(&dhcp).ok()?;
    let message_type = match req.message_type {
        DhcpMessageType::Discover => DhcpMessageType::Offer,
        DhcpMessageType::Request => DhcpMessageType::Ack,
        _ => return None,
    };
    let server = Ipv4Address::from(CLIENT_IP);
    let repr = DhcpRepr {
        message_type,
        transaction_id: req.transaction_id,
        secs: 0,
        client_hardware_address: req.client_hardware_address,
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: Ipv4Address::from(offered),
        server_ip: server,
        router: Some(server),
        subnet_mask: Some(Ipv4Address::new(255, 255, 255, 0)),
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(server),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(3600),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let dhcp_len = repr.buffer_len();
    let mut buf = vec![0u8; 14 + 20 + 8 + dhcp_len];
    let caps = ChecksumCapabilities::default();
    let dst = Ipv4Address::BROADCAST;
    UdpRepr {
        src_port: 67,
        dst_port: 68,
    }
    .emit(
        &mut UdpPacket::new_unchecked(&mut buf[34..]),
        &IpAddress::from(server),
        &IpAddress::from(dst),
        dhcp_len,
        |payload| repr.emit(&mut DhcpPacket::new_unchecked(payload)).unwrap(),
        &caps,
    );
    Ipv4Repr {
        src_addr: server,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: 8 + dhcp_len,
        hop_limit: 64,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..]), &caps);
    EthernetRepr {
        src_addr: EthernetAddress(CLIENT_MAC),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    Some(buf)
}

#[test]
fn dhcp_lease_is_applied_and_reported_once() {
    let mut config = NetConfig::new(SERVER_MAC);
    config.dhcp_timeout_ms = 3000;
    let mut net = Net::new(config);
    let mut app = echo();
    let offered = [10, 0, 2, 77];
    let mut ready = None;
    for _ in 0..2000 {
        net.stack.poll(&mut net.server_end, net.now_ms, &mut app);
        let frames: Vec<Vec<u8>> = net.client_end.rx.borrow_mut().drain(..).collect();
        for frame in frames {
            if let Some(reply) = dhcp_reply(&frame, offered) {
                net.client_end.tx.borrow_mut().push_back(reply);
            }
        }
        if let Some(r) = net.stack.take_ready() {
            ready = Some((r, net.now_ms));
            break;
        }
        net.now_ms += 1;
    }
    let ((ip, port), at) = ready.expect("a lease");
    assert_eq!((ip, port), (offered, 80));
    assert!(at < 1000 + 3000, "before the fallback deadline");
    let stats = net.stack.stats();
    assert_eq!(stats.ipv4, Some((offered, 24)));
    assert_eq!(stats.gateway, Some(CLIENT_IP));
    assert_eq!(stats.address_source, AddressSource::Dhcp);
    // The fallback deadline passes: the lease stays.
    net.run_for(5000, &mut app);
    assert_eq!(net.stack.stats().ipv4, Some((offered, 24)));
    assert_eq!(net.stack.take_ready(), None);
}

/// An app whose `/sleep` parks until `/wake` is asked (on any
/// connection) or its deadline (`now + 5 s` when parked) passes, as the
/// API's sleeping allocations do; it records cancellations.
struct Sleepy {
    woken: bool,
    parked_calls: u64,
    cancelled: Vec<u64>,
}

impl App for Sleepy {
    fn handle(&mut self, req: &Request, net: &NetStats) -> Response {
        match req.path.as_str() {
            "/wake" => {
                self.woken = true;
                Response::text(200, "ok")
            }
            "/sleep" if self.woken => {
                Response::text(201, format!("after {} requests", net.http_requests))
            }
            "/sleep" => {
                self.parked_calls += 1;
                let until_ms = req.park.map_or(0, |p| p.since_ms) + 5_000;
                Response::pending(42, until_ms)
            }
            _ => Response::text(200, req.path.clone()),
        }
    }

    fn cancel(&mut self, token: u64) {
        self.cancelled.push(token);
    }
}

fn sleepy() -> Sleepy {
    Sleepy {
        woken: false,
        parked_calls: 0,
        cancelled: Vec::new(),
    }
}

#[test]
fn parked_request_is_woken_by_another_connection_and_does_not_spin() {
    let mut net = Net::with_static(4, None);
    let mut app = sleepy();
    let a = net.connect();
    let b = net.connect();
    net.establish(a, &mut app);
    net.establish(b, &mut app);
    net.send(a, &get("/sleep"), &mut app);
    assert!(net.response(a, false, 200, &mut app).is_none(), "parked");
    net.run_for(100, &mut app);
    // Nothing else to do: poll says so (no spin), and the timer is due at
    // the handler's deadline at the latest.
    let now = net.now_ms;
    let calls = app.parked_calls;
    assert!(!net.stack.poll(&mut net.server_end, now, &mut app));
    assert_eq!(app.parked_calls, calls + 1, "one retry per poll");
    let delay = net.stack.poll_delay_ms(now).unwrap();
    assert!(delay <= 5_000, "{delay}");
    // Other connections are served meanwhile; the wake-up frees `a`.
    assert_eq!(net.exchange(b, &get("/other"), &mut app).text(), "/other");
    let woke_at = net.now_ms;
    assert_eq!(net.exchange(b, &get("/wake"), &mut app).text(), "ok");
    let r = net.response(a, false, 100, &mut app).expect("answered");
    assert!(net.now_ms - woke_at < 10, "answered within a few polls");
    // Requests are counted once each, retries not at all.
    assert_eq!((r.status, r.text()), (201, "after 3 requests"));
    assert!(app.cancelled.is_empty());
    assert_eq!(net.stack.stats().http_requests, 3);
}

#[test]
fn client_gone_while_parked_cancels_its_wait() {
    // An orderly close (FIN) while parked.
    let mut net = Net::with_static(2, None);
    let mut app = sleepy();
    let a = net.connect();
    net.send(a, &get("/sleep"), &mut app);
    net.run_for(50, &mut app);
    assert!(app.cancelled.is_empty());
    net.socket(a).close();
    net.run_for(50, &mut app);
    assert_eq!(app.cancelled, [42]);
    // A reset.
    let b = net.connect();
    net.send(b, &get("/sleep"), &mut app);
    net.run_for(50, &mut app);
    net.socket(b).abort();
    net.run_for(50, &mut app);
    assert_eq!(app.cancelled, [42, 42]);
    net.run_for(LINGER_MS + 100, &mut app);
    assert_eq!(net.stack.stats().tcp_sockets_in_use, 0);
}

#[test]
fn the_connection_pool_is_sized_by_lowmem() {
    const MIB: u64 = 1 << 20;
    // 1/64 of lowmem in 40 KiB slots, between 16 and 32.
    assert_eq!(SOCKET_BUFFER_BYTES, 40 * 1024);
    assert_eq!(default_max_connections(0), 16);
    assert_eq!(default_max_connections(3 * MIB), 16);
    assert_eq!(default_max_connections(40 * MIB), 16);
    assert_eq!(default_max_connections(41 * MIB), 16); // 16.4 slots
    assert_eq!(default_max_connections(64 * MIB), 25); // 25.6
    assert_eq!(default_max_connections(80 * MIB - 1), 31);
    assert_eq!(default_max_connections(80 * MIB), 32);
    assert_eq!(default_max_connections(896 * MIB), 32);
    assert_eq!(default_max_connections(u64::MAX), 32);
}
