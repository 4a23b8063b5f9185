//! UDP: one socket per `[sip] listen` address and one receive task per socket.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::{accept_bytes, Inbound, Limits, Received, Stats};
use crate::config::ListenTransport;

/// Kernel buffer size asked for: bursts of INVITEs must queue in the kernel, not be dropped
/// (`RcvbufErrors`), while the endpoint task catches up.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

pub(super) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

pub(super) async fn receive_loop(
    socket: Arc<UdpSocket>,
    limits: Limits,
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    // One byte more than the limit, so an oversize datagram is detectable rather than silently
    // truncated into something that might parse.
    let mut buf = vec![0u8; limits.max_message_size + 1];
    let local = match socket.local_addr() {
        Ok(local) => local,
        Err(e) => {
            tracing::error!(error = %e, "UDP socket has no local address; not receiving");
            return;
        }
    };
    loop {
        let (len, source) = tokio::select! {
            _ = super::stopped(&mut shutdown) => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP port-unreachable from an earlier send surfaces here on some
                    // platforms; it says nothing about this socket's health.
                    tracing::debug!(error = %e, "UDP receive error");
                    continue;
                }
            },
        };
        if len > limits.max_message_size {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%source, len, "oversize datagram dropped");
            continue;
        }
        let datagram = &buf[..len];
        // RFC 5626 §4.4.2: STUN keep-alives and stray CRLFs on UDP are not SIP messages.
        if datagram.iter().all(|&b| b == b'\r' || b == b'\n') {
            continue;
        }
        let reply_socket = &socket;
        let message = accept_bytes(datagram, source, &stats, |reply: Bytes| {
            let _ = reply_socket.try_send_to(&reply, source);
        });
        if let Some(message) = message {
            let item = Inbound {
                message,
                received: Received {
                    source,
                    local,
                    transport: ListenTransport::Udp,
                    connection: None,
                },
            };
            // A full endpoint queue means overload: shed the datagram, the peer retransmits.
            if inbound.try_send(item).is_err() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
