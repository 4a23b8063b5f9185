//! The DTMF listener: while a call collects digits and is not bridged (`<Gather>`), a relay
//! thread reads the call's RTP socket, keeps only packets from an accepted source ([`Latch`])
//! and reports each RFC 4733 telephone-event once
//! ([`Relays::listen`](super::relay::Relays::listen)). Audio packets are read and discarded:
//! nothing records the caller yet. Media nobody reads stays queued in the kernel (a relay
//! taking the socket over discards it first).
//!
//! The relay threads listen, not the runtime: they register the socket itself with their epoll
//! (no duplicate descriptor, so a call holds none beyond its RTP sockets), and the runtime's
//! threads never see a packet of media. Only one party may read a socket at a time: stop the
//! listener ([`Listener::stop`], which waits until the thread has deregistered the socket)
//! before a relay takes it over.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::latch::Latch;
use super::packet::Packet;
use super::PayloadType;
use crate::dtmf::EventReceiver;

/// What to listen to.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The call's RTP socket, non-blocking.
    pub socket: Arc<UdpSocket>,
    /// The address the caller's SDP signalled.
    pub remote: SocketAddr,
    /// Whether to latch onto the first source (see [`super::latch`]); else only `remote`.
    pub latching: bool,
    /// How long a latching leg accepts its first source.
    pub latch_window: Duration,
    /// The negotiated telephone-event payload type; `None`: nothing to report.
    pub telephone_event: Option<PayloadType>,
}

/// A running listener (from [`Relays::listen`](super::relay::Relays::listen)). Dropping it stops it without waiting.
#[derive(Debug)]
pub struct Listener {
    pub(super) id: u64,
    /// `None` once stopped.
    pub(super) worker: Option<super::relay::WorkerHandle>,
}

impl Listener {
    /// Stops listening and waits until the relay thread no longer reads the socket.
    pub async fn stop(mut self) {
        if let Some(worker) = self.worker.take() {
            let (reply, stopped) = oneshot::channel();
            worker.stop_listening(self.id, Some(reply));
            // A relay thread that is gone has no sockets registered either.
            let _ = stopped.await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop_listening(self.id, None);
        }
    }
}

/// The listener's logic, without I/O: what the relay thread does with each datagram read.
#[derive(Debug)]
pub(crate) struct DigitReader {
    latch: Latch,
    events: EventReceiver,
    telephone_event: Option<PayloadType>,
    digits: mpsc::Sender<char>,
}

impl DigitReader {
    pub(crate) fn new(config: &ListenerConfig, digits: mpsc::Sender<char>, now: Instant) -> Self {
        let latch = if config.latching {
            Latch::latching(config.remote, now, config.latch_window)
        } else {
            Latch::signalled_only(config.remote)
        };
        Self {
            latch,
            events: EventReceiver::new(),
            telephone_event: config.telephone_event,
            digits,
        }
    }

    /// Takes one datagram from `source`; reports a new key press to the call. `false` once the
    /// call has stopped reading keys.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        if !self.latch.handle_source(now, source) {
            return true;
        }
        let Some(key) = telephone_event(datagram, self.telephone_event, &mut self.events) else {
            return true;
        };
        // A full queue means the call task is not keeping up; a dropped key is what a
        // congested DTMF path does too.
        !(self.digits.try_send(key).is_err() && self.digits.is_closed())
    }
}

/// The key of a new telephone-event in `datagram`, if it carries one.
fn telephone_event(
    datagram: &[u8],
    payload_type: Option<PayloadType>,
    events: &mut EventReceiver,
) -> Option<char> {
    let payload_type = payload_type?;
    let packet = Packet::parse(datagram).ok()?;
    if packet.header.payload_type != payload_type {
        return None;
    }
    events
        .handle_payload(packet.header.timestamp, packet.payload)
        .ok()
        .flatten()
        .and_then(|received| received.event.key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{Event, EventSender};
    use crate::rtp::relay::{Relays, RelaysConfig};
    use crate::rtp::{RtpTimestamp, Sender, SeqNo, Ssrc};

    fn dtmf_packets(key: char, sender: &mut Sender) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut event = EventSender::new(Event::from_key(key).unwrap(), 800, 10);
        let start = sender.next_timestamp();
        while let Some((marker, payload)) = event.next_payload() {
            let header = sender.stamp_event(PayloadType(101), start, marker);
            let mut bytes = Vec::new();
            crate::rtp::packet::write(&header, &payload.encode(), &mut bytes);
            packets.push(bytes);
        }
        sender.start_talkspurt(800);
        packets
    }

    #[tokio::test]
    async fn reports_each_key_once_from_the_signalled_source_only() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let socket = Arc::new(socket);
        let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let intruder = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (digits_tx, mut digits) = mpsc::channel(8);
        let relays = Relays::spawn(RelaysConfig { threads: 1 }).unwrap();
        let listener = relays.listen(
            ListenerConfig {
                socket: Arc::clone(&socket),
                remote: caller.local_addr().unwrap(),
                latching: false,
                latch_window: Duration::from_secs(2),
                telephone_event: Some(PayloadType(101)),
            },
            digits_tx,
        );
        let to = socket.local_addr().unwrap();
        let mut sender = Sender::new(Ssrc(7), SeqNo(1), RtpTimestamp(1000));
        let mut forged = Sender::new(Ssrc(9), SeqNo(1), RtpTimestamp(5000));
        for packet in dtmf_packets('9', &mut forged) {
            intruder.send_to(&packet, to).await.unwrap();
        }
        for key in ['1', '#'] {
            for packet in dtmf_packets(key, &mut sender) {
                caller.send_to(&packet, to).await.unwrap();
            }
        }
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(
                tokio::time::timeout(Duration::from_secs(5), digits.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        assert_eq!(got, ['1', '#']);
        listener.stop().await;
        // After stop, the socket is free for another reader and nothing more is reported.
        for packet in dtmf_packets('5', &mut sender) {
            caller.send_to(&packet, to).await.unwrap();
        }
        let mut buffer = [0u8; 1500];
        let reader = tokio::net::UdpSocket::from_std(socket.try_clone().unwrap()).unwrap();
        let (_, from) = tokio::time::timeout(Duration::from_secs(5), reader.recv_from(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, caller.local_addr().unwrap());
        assert!(digits.try_recv().is_err());
    }
}
