//! The DTMF listener: while a call collects digits and is not bridged (`<Gather>`), one task
//! reads the call's RTP socket, keeps only packets from an accepted source ([`Latch`]) and
//! reports each RFC 4733 telephone-event once. Audio packets are read and discarded: nothing
//! records the caller yet. Media nobody reads stays queued in the kernel (a relay taking the
//! socket over discards it first).
//!
//! Only one party may read a socket at a time: stop the listener ([`Listener::stop`], which
//! waits for the task to end) before a relay takes the socket over. The listener registers a
//! duplicate of the socket's descriptor (from [`PortPool::duplicate`](crate::ports::PortPool::duplicate))
//! with the runtime's reactor while it runs and closes it when it stops, so the runtime sees
//! the call's media only while a listener waits for it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::net::UdpSocket;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::latch::Latch;
use super::packet::{Packet, MAX_PACKET_LEN};
use super::PayloadType;
use crate::dtmf::EventReceiver;

/// What to listen to.
#[derive(Debug)]
pub struct ListenerConfig {
    /// A duplicate of the call's RTP socket (non-blocking), which the listener registers with
    /// the runtime and closes when it stops.
    pub socket: UdpSocket,
    /// The address the caller's SDP signalled.
    pub remote: SocketAddr,
    /// Whether to latch onto the first source (see [`super::latch`]); else only `remote`.
    pub latching: bool,
    /// How long a latching leg accepts its first source.
    pub latch_window: Duration,
    /// The negotiated telephone-event payload type; `None`: nothing to report.
    pub telephone_event: Option<PayloadType>,
}

/// A running listener. Dropping it stops the task.
#[derive(Debug)]
pub struct Listener {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Listener {
    /// Starts listening; each key pressed (`0-9 * # A-D`) is sent to `digits` once. Must run
    /// inside a tokio runtime.
    pub fn spawn(config: ListenerConfig, digits: mpsc::Sender<char>) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(config, digits, stopped));
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the task and waits until it no longer reads the socket.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn run(
    config: ListenerConfig,
    digits: mpsc::Sender<char>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut latch = if config.latching {
        Latch::latching(config.remote, Instant::now(), config.latch_window)
    } else {
        Latch::signalled_only(config.remote)
    };
    let socket = match tokio::net::UdpSocket::from_std(config.socket) {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "DTMF listener: the RTP socket could not be registered");
            return;
        }
    };
    let mut events = EventReceiver::new();
    let mut buffer = vec![0u8; MAX_PACKET_LEN];
    loop {
        let (length, source) = tokio::select! {
            _ = &mut stopped => return,
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                // ICMP port unreachable and the like: the peer may come back; keep reading.
                Err(_) => continue,
            },
        };
        if !latch.handle_source(Instant::now(), source) {
            continue;
        }
        let Some(key) = telephone_event(&buffer[..length], config.telephone_event, &mut events)
        else {
            continue;
        };
        // A full queue means the call task is not keeping up; a dropped key is what a
        // congested DTMF path does too.
        if digits.try_send(key).is_err() && digits.is_closed() {
            return;
        }
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
        let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let intruder = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (digits_tx, mut digits) = mpsc::channel(8);
        let listener = Listener::spawn(
            ListenerConfig {
                socket: socket.try_clone().unwrap(),
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
