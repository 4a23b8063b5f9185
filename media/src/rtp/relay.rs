//! The relay between the two legs of a bridged call: one tokio task per call that receives on
//! both legs' RTP sockets and forwards each packet to the other leg.
//!
//! The task is a thin shell: source filtering is [`Latch`] and packet translation is
//! [`Forwarder`], both sans-IO. Sends use `try_send_to`, so one leg's full socket buffer never
//! stalls the other direction; a packet that cannot be sent at once is dropped and counted,
//! which is what a router does with a full queue and what RTP tolerates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::forward::{Dropped, Forwarder, LegFormat};
use super::latch::{Latch, DEFAULT_LATCH_WINDOW};
use super::packet::MAX_PACKET_LEN;
use super::source::Statistics;
use super::Sender;

/// One leg of a relayed call.
#[derive(Debug, Clone)]
pub struct Leg {
    /// Our RTP socket for this leg (from [`crate::ports::PortPool`]).
    pub socket: Arc<UdpSocket>,
    /// The address the leg's SDP signalled for its RTP.
    pub remote: SocketAddr,
    /// What the leg negotiated.
    pub format: LegFormat,
    /// Whether to latch onto the first source seen (symmetric RTP for peers behind NAT); see
    /// [`super::latch`] for the rule.
    pub latching: bool,
}

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// How long after start a latching leg accepts its first source.
    pub latch_window: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            latch_window: DEFAULT_LATCH_WINDOW,
        }
    }
}

/// Counters of one direction, from the leg received on to the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionReport {
    /// Packets forwarded.
    pub forwarded: u64,
    /// Datagrams dropped because they came from an address the leg does not accept.
    pub foreign_source: u64,
    /// Datagrams dropped as malformed or of a payload type nobody negotiated.
    pub unusable: u64,
    /// Packets dropped because the outgoing socket could not take them.
    pub send_failures: u64,
    /// The source the receiving leg latched onto, if it latched.
    pub latched: Option<SocketAddr>,
    /// RFC 3550 statistics of the incoming stream (current SSRC), if any packet arrived.
    pub received: Option<Statistics>,
}

/// What a relay did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Leg A → leg B.
    pub a_to_b: DirectionReport,
    /// Leg B → leg A.
    pub b_to_a: DirectionReport,
}

/// A running relay. Dropping it stops the task.
#[derive(Debug)]
pub struct Relay {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<RelayReport>>,
}

impl Relay {
    /// Starts relaying between `a` and `b`. Must run inside a tokio runtime.
    pub fn spawn(a: Leg, b: Leg, config: RelayConfig) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(a, b, config, stopped));
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the relay and returns its counters.
    pub async fn stop(mut self) -> RelayReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => RelayReport::default(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One direction's state inside the task.
struct Direction {
    latch: Latch,
    forwarder: Forwarder,
    report: DirectionReport,
}

async fn run(
    a: Leg,
    b: Leg,
    config: RelayConfig,
    mut stopped: oneshot::Receiver<()>,
) -> RelayReport {
    let start = Instant::now();
    let latch = |leg: &Leg| {
        if leg.latching {
            Latch::latching(leg.remote, start, config.latch_window)
        } else {
            Latch::signalled_only(leg.remote)
        }
    };
    let mut from_a = Direction {
        latch: latch(&a),
        forwarder: Forwarder::new(a.format, b.format, Sender::random()),
        report: DirectionReport::default(),
    };
    let mut from_b = Direction {
        latch: latch(&b),
        forwarder: Forwarder::new(b.format, a.format, Sender::random()),
        report: DirectionReport::default(),
    };
    // One byte more than the largest packet, so an oversized datagram is seen as such
    // rather than silently truncated.
    let mut buffer_a = vec![0u8; MAX_PACKET_LEN + 1];
    let mut buffer_b = vec![0u8; MAX_PACKET_LEN + 1];
    let mut out = Vec::with_capacity(MAX_PACKET_LEN);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            received = a.socket.recv_from(&mut buffer_a) => {
                if let Ok((length, source)) = received {
                    let destination = from_b.latch.destination();
                    relay_one(&mut from_a, source, &buffer_a[..length], &b.socket, destination, &mut out);
                }
            }
            received = b.socket.recv_from(&mut buffer_b) => {
                if let Ok((length, source)) = received {
                    let destination = from_a.latch.destination();
                    relay_one(&mut from_b, source, &buffer_b[..length], &a.socket, destination, &mut out);
                }
            }
        }
    }
    let finish = |direction: Direction| DirectionReport {
        latched: direction.latch.latched(),
        received: direction
            .forwarder
            .incoming_source()
            .map(|source| source.statistics()),
        ..direction.report
    };
    RelayReport {
        a_to_b: finish(from_a),
        b_to_a: finish(from_b),
    }
}

fn relay_one(
    direction: &mut Direction,
    source: SocketAddr,
    datagram: &[u8],
    outgoing: &UdpSocket,
    destination: SocketAddr,
    out: &mut Vec<u8>,
) {
    let now = Instant::now();
    if !direction.latch.handle_source(now, source) {
        direction.report.foreign_source += 1;
        return;
    }
    match direction.forwarder.handle_datagram(now, datagram, out) {
        Ok(length) => match outgoing.try_send_to(&out[..length], destination) {
            Ok(_) => direction.report.forwarded += 1,
            Err(_) => direction.report.send_failures += 1,
        },
        Err(Dropped::Malformed(_))
        | Err(Dropped::UnexpectedPayloadType(_))
        | Err(Dropped::NoTelephoneEventOnOutgoingLeg) => direction.report.unusable += 1,
    }
}
