//! The tokio shell around the SIP core: UDP and TCP sockets (RFC 3261 §18).
//!
//! Receive paths parse in the socket's own task (so parsing runs beside the endpoint task), stamp
//! the top Via with `received`/`rport` (§18.2.1, RFC 3581 §4), answer what cannot be parsed
//! (400/505, or drop when no response is possible) and hand every good message to the endpoint
//! over one bounded channel. Sending never awaits: a full UDP socket buffer or a full TCP writer
//! queue drops the message (retransmission timers exist for that) or closes the slow connection.

mod tcp;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use compact_str::{CompactString, ToCompactString};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, ListenTransport};
use crate::message::{Host, Message, Request, Via};

pub use tcp::TcpStats;

/// Identifies one TCP connection for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

/// A message that arrived, parsed, with how it arrived.
#[derive(Debug)]
pub struct Inbound {
    /// The message (a request's top Via already carries `received`/`rport`).
    pub message: Message,
    /// Where it came from and over what.
    pub received: Received,
}

/// How a message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The peer's address.
    pub source: SocketAddr,
    /// Our socket's address (the listener for UDP, the connection's local end for TCP).
    pub local: SocketAddr,
    /// The transport it came over.
    pub transport: ListenTransport,
    /// The TCP connection it came over.
    pub connection: Option<ConnectionId>,
}

/// Where to send a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// UDP or TCP.
    pub transport: ListenTransport,
    /// The peer's address.
    pub addr: SocketAddr,
    /// An existing TCP connection to prefer (RFC 3261 §18.2.2: responses go back over the
    /// connection the request came on, while it is open).
    pub connection: Option<ConnectionId>,
    /// The local UDP socket to send from: responses leave from the socket the request reached,
    /// so NAT bindings and symmetric peers see the address they sent to.
    pub local: Option<SocketAddr>,
}

impl Target {
    /// A UDP destination, sent from any of our sockets of the right address family.
    pub fn udp(addr: SocketAddr) -> Target {
        Target {
            transport: ListenTransport::Udp,
            addr,
            connection: None,
            local: None,
        }
    }

    /// A TCP destination: an open connection to `addr` is reused, else one is opened.
    pub fn tcp(addr: SocketAddr) -> Target {
        Target {
            transport: ListenTransport::Tcp,
            ..Target::udp(addr)
        }
    }

    /// Where a response to a request that arrived as `received` goes (RFC 3261 §18.2.2 with
    /// RFC 3581 §4). `via` is the request's top Via as stamped on receipt.
    pub fn for_response(via: &Via, received: &Received) -> Target {
        let Received {
            source,
            local,
            transport,
            connection,
        } = *received;
        if transport == ListenTransport::Tcp {
            // Reliable: the same connection; if it is gone, a new one to the source IP and the
            // sent-by port (the transport layer reconnects to `addr`).
            let port = via.port.unwrap_or(5060);
            return Target {
                transport,
                addr: connection.map_or(SocketAddr::new(source.ip(), port), |_| source),
                connection,
                local: None,
            };
        }
        // Unreliable. We ignore maddr (multicast responses are not something a softswitch
        // should ever send on a peer's say-so). With rport, answer the exact source address and
        // port; otherwise the received address (the source IP) at the sent-by port.
        let addr = match via.rport() {
            Some(_) => source,
            None => SocketAddr::new(source.ip(), via.port.unwrap_or(5060)),
        };
        Target {
            transport,
            addr,
            connection: None,
            local: Some(local),
        }
    }
}

/// Adds `received` (when the sent-by host is not the source IP) and fills an empty `rport`
/// (RFC 3261 §18.2.1, RFC 3581 §4) in a request's top Via.
pub fn stamp_via(request: &mut Request, source: SocketAddr) {
    let Some(via) = request.headers.via.first_mut() else {
        return;
    };
    let rport_requested = via.rport().is_some();
    if via.host.ip() != Some(source.ip()) || rport_requested {
        via.params.set("received", Some(received_text(source.ip())));
    }
    if rport_requested {
        via.params
            .set("rport", Some(source.port().to_compact_string()));
    }
}

fn received_text(ip: IpAddr) -> CompactString {
    // RFC 5118 §4.5: `received` carries a bare IPv6 address, without brackets.
    ip.to_compact_string()
}

/// Counters shared by the transports, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages that could not be parsed.
    pub malformed: AtomicU64,
    /// 400/505 responses sent for them.
    pub malformed_answered: AtomicU64,
    /// Messages dropped because a queue or socket buffer was full.
    pub dropped: AtomicU64,
    /// TCP specifics.
    pub tcp: TcpStats,
}

/// Handle to the bound sockets. Cheap to clone.
#[derive(Clone)]
pub struct Transports {
    inner: Arc<Inner>,
}

struct Inner {
    udp: Vec<Arc<UdpSocket>>,
    /// Local address of each socket in `udp`, same order.
    udp_local: Vec<SocketAddr>,
    tcp: tcp::Registry,
    stats: Arc<Stats>,
    local: Vec<(ListenTransport, SocketAddr)>,
    advertised: Option<IpAddr>,
    /// Destination IP → our source IP toward it, learned once per destination (see
    /// [`Transports::via_host_port`]); cleared when it reaches [`ROUTE_CACHE_LIMIT`] entries.
    source_ips: std::sync::Mutex<std::collections::HashMap<IpAddr, IpAddr>>,
}

/// Destinations whose source address [`Transports::via_host_port`] remembers.
const ROUTE_CACHE_LIMIT: usize = 4096;

/// Limits applied to every connection and datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_message_size: usize,
    pub tcp_idle_timeout: std::time::Duration,
    pub max_connections_per_ip: usize,
}

impl Transports {
    /// Binds every `[sip] listen` socket and starts their receive tasks. Good messages go to
    /// `inbound`; tasks end when `shutdown` turns true.
    pub async fn bind(
        config: &Config,
        inbound: mpsc::Sender<Inbound>,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Transports> {
        let limits = Limits {
            max_message_size: config.max_message_size,
            tcp_idle_timeout: config.tcp_idle_timeout,
            max_connections_per_ip: config.max_connections_per_ip,
        };
        let stats = Arc::new(Stats::default());
        let tcp = tcp::Registry::new(limits, inbound.clone(), stats.clone(), shutdown.clone());
        let mut udp = Vec::new();
        let mut udp_local = Vec::new();
        let mut local = Vec::new();
        for listen in &config.listen {
            match listen.transport {
                ListenTransport::Udp => {
                    let socket = Arc::new(udp::bind(listen.addr)?);
                    let addr = socket.local_addr()?;
                    local.push((ListenTransport::Udp, addr));
                    udp_local.push(addr);
                    tokio::spawn(udp::receive_loop(
                        socket.clone(),
                        limits,
                        inbound.clone(),
                        stats.clone(),
                        shutdown.clone(),
                    ));
                    udp.push(socket);
                }
                ListenTransport::Tcp => {
                    let listener = tokio::net::TcpListener::bind(listen.addr).await?;
                    local.push((ListenTransport::Tcp, listener.local_addr()?));
                    tokio::spawn(tcp.clone().accept_loop(listener));
                }
            }
        }
        Ok(Transports {
            inner: Arc::new(Inner {
                udp,
                udp_local,
                tcp,
                stats,
                local,
                advertised: config.advertised_address,
                source_ips: Default::default(),
            }),
        })
    }

    /// Sends `bytes` to `target` without waiting. Over UDP a full socket buffer drops the
    /// datagram (transactions retransmit); over TCP the connection's writer queue is used, and a
    /// missing connection is opened in the background.
    pub fn send(&self, target: &Target, bytes: Bytes) {
        match target.transport {
            ListenTransport::Udp => {
                let Some(socket) = self.udp_for(target) else {
                    self.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(to = %target.addr, "no UDP socket of that address family");
                    return;
                };
                if let Err(e) = socket.try_send_to(&bytes, target.addr) {
                    self.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(to = %target.addr, error = %e, "UDP send failed");
                }
            }
            ListenTransport::Tcp => self.inner.tcp.send(target, bytes),
        }
    }

    /// The bound addresses, in `[sip] listen` order.
    pub fn local_addrs(&self) -> &[(ListenTransport, SocketAddr)] {
        &self.inner.local
    }

    /// The Via we put on requests we originate over `transport` toward `to`: the advertised
    /// address if configured, else the bound address of that transport.
    pub fn via_host_port(&self, transport: ListenTransport, to: SocketAddr) -> (Host, u16) {
        let bound = self
            .inner
            .local
            .iter()
            .find(|(t, a)| *t == transport && a.is_ipv4() == to.is_ipv4())
            .or_else(|| self.inner.local.iter().find(|(t, _)| *t == transport))
            .map(|(_, a)| *a)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        let ip = match (self.inner.advertised, bound.ip()) {
            (Some(adv), _) => adv,
            (None, ip) if ip.is_unspecified() => self.source_ip_toward(to).unwrap_or(ip),
            (None, ip) => ip,
        };
        (Host::from(ip), bound.port())
    }

    /// Our source IP toward `to` when bound to a wildcard address: asking the kernel costs a
    /// socket, so each destination is asked once (routes change rarely; the cache is bounded).
    fn source_ip_toward(&self, to: SocketAddr) -> Option<IpAddr> {
        // Plain data, never held across an await: a poisoned lock still holds a usable map.
        let lock = || {
            self.inner
                .source_ips
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        if let Some(ip) = lock().get(&to.ip()) {
            return Some(*ip);
        }
        let ip = local_ip_toward(to)?;
        let mut cache = lock();
        if cache.len() >= ROUTE_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(to.ip(), ip);
        Some(ip)
    }

    /// Transport counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    fn udp_for(&self, target: &Target) -> Option<&Arc<UdpSocket>> {
        let to = target.addr;
        let mut sockets = self.inner.udp.iter().zip(&self.inner.udp_local);
        let by_local = target
            .local
            .and_then(|local| sockets.clone().find(|(_, a)| **a == local));
        by_local
            .or_else(|| sockets.find(|(_, a)| a.is_ipv4() == to.is_ipv4()))
            .map(|(socket, _)| socket)
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The returned guard is dropped here, so callers' futures stay Send.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The local address the kernel would use toward `to` (a connected UDP socket, no packet sent).
fn local_ip_toward(to: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if to.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(to).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// Parses a received buffer; answers what must be answered; returns the message to dispatch.
/// Shared by both transports so their receive semantics cannot drift apart.
fn accept_bytes(
    bytes: &[u8],
    source: SocketAddr,
    stats: &Stats,
    reply: impl FnOnce(Bytes),
) -> Option<Message> {
    match crate::message::parse(bytes) {
        Ok(Message::Request(mut request)) => {
            stamp_via(&mut request, source);
            Some(Message::Request(request))
        }
        Ok(response) => Some(response),
        Err(e) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            match e.reply() {
                Some(bytes) => {
                    stats.malformed_answered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%source, error = %e, "malformed request answered");
                    reply(Bytes::from(bytes));
                }
                None => tracing::debug!(%source, error = %e, "malformed message dropped"),
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse;

    fn request(via: &str) -> Request {
        let text = format!(
            "OPTIONS sip:x@example.com SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    fn udp_from(source: SocketAddr) -> Received {
        Received {
            source,
            local: "198.51.100.1:5060".parse().unwrap(),
            transport: ListenTransport::Udp,
            connection: None,
        }
    }

    #[test]
    fn rport_answers_the_source_port() {
        let mut r = request("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport");
        let source: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        stamp_via(&mut r, source);
        let via = &r.headers.via[0];
        assert_eq!(via.received(), Some("192.0.2.7"));
        assert_eq!(via.rport(), Some(Some(40000)));
        let t = Target::for_response(via, &udp_from(source));
        assert_eq!(t.addr, source);
        assert_eq!(t.local, Some(udp_from(source).local));
    }

    #[test]
    fn without_rport_answers_received_at_sent_by_port() {
        let mut r = request("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1");
        let source: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        stamp_via(&mut r, source);
        let via = &r.headers.via[0];
        assert_eq!(via.received(), Some("192.0.2.7"));
        let t = Target::for_response(via, &udp_from(source));
        assert_eq!(t.addr, "192.0.2.7:5070".parse().unwrap());
    }

    #[test]
    fn matching_sent_by_gets_no_received() {
        let mut r = request("SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK1");
        stamp_via(&mut r, "192.0.2.7:5060".parse().unwrap());
        assert_eq!(r.headers.via[0].received(), None);
    }

    #[test]
    fn ipv6_received_is_bare() {
        let mut r = request("SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bK1;rport");
        let source: SocketAddr = "[2001:db8::10]:6000".parse().unwrap();
        stamp_via(&mut r, source);
        assert_eq!(r.headers.via[0].received(), Some("2001:db8::10"));
        let reparsed = parse(&r.to_bytes()).unwrap();
        assert_eq!(reparsed.headers().via[0].received(), Some("2001:db8::10"));
    }

    #[test]
    fn tcp_answers_on_the_connection() {
        let r = request("SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1");
        let source: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let c = Some(ConnectionId(7));
        let mut received = Received {
            transport: ListenTransport::Tcp,
            connection: c,
            ..udp_from(source)
        };
        let t = Target::for_response(&r.headers.via[0], &received);
        assert_eq!((t.addr, t.connection), (source, c));
        received.connection = None;
        let t = Target::for_response(&r.headers.via[0], &received);
        assert_eq!(t.addr, "192.0.2.7:5070".parse().unwrap());
    }
}
