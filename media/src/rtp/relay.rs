//! The relay between the two legs of a bridged call: one tokio task per call that receives on
//! both legs' RTP sockets and forwards each packet to the other leg.
//!
//! The task is a thin shell: source filtering is [`Latch`] and packet translation is
//! [`Forwarder`], both sans-IO. Sends use `try_send_to`, so one leg's full socket buffer never
//! stalls the other direction; a packet that cannot be sent at once is dropped and counted,
//! which is what a router does with a full queue and what RTP tolerates.
//!
//! RTCP (RFC 3550 §6): a leg given an [`RtcpEndpoint`] gets compound reports (SR or RR plus
//! SDES CNAME) at the randomized §6.2 interval, built by the sans-IO [`LegControl`], and the
//! peer's SRs/RRs read from the leg's RTCP socket are recorded in [`RelayReport`]. RTCP is
//! accepted from the IP address the leg's RTP goes to (latched or signalled) or from the
//! signalled RTCP address; once one arrives, ours go back to its source (symmetric RTCP,
//! RFC 4961), else to the signalled RTCP address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::control::{ControlReport, LegControl, DEFAULT_MINIMUM_INTERVAL, MAX_RTCP_LEN};
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
    /// The leg's RTCP socket and the peer's RTCP address; `None` relays RTP only.
    pub rtcp: Option<RtcpEndpoint>,
}

/// Where one leg's RTCP flows.
#[derive(Debug, Clone)]
pub struct RtcpEndpoint {
    /// Our RTCP socket for this leg (RTP port + 1, from [`crate::ports::RtpPorts`]).
    pub socket: Arc<UdpSocket>,
    /// The peer's RTCP address (see [`crate::sdp::Negotiated::remote_rtcp`]).
    pub remote: SocketAddr,
}

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// How long after start a latching leg accepts its first source.
    pub latch_window: Duration,
    /// RFC 3550 §6.2's fixed minimum RTCP interval; each interval is this times a random
    /// factor in 0.5–1.5. Tests shorten it.
    pub rtcp_minimum_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            latch_window: DEFAULT_LATCH_WINDOW,
            rtcp_minimum_interval: DEFAULT_MINIMUM_INTERVAL,
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
    /// RTCP on leg A: what we sent and what phone A reported about our stream to it.
    pub rtcp_a: ControlReport,
    /// RTCP on leg B.
    pub rtcp_b: ControlReport,
}

/// A running relay. Dropping it stops the task.
#[derive(Debug)]
pub struct Relay {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<RelayReport>>,
    snapshot: watch::Receiver<RelayReport>,
}

impl Relay {
    /// Starts relaying between `a` and `b`. Must run inside a tokio runtime.
    pub fn spawn(a: Leg, b: Leg, config: RelayConfig) -> Self {
        let (stop, stopped) = oneshot::channel();
        let (publish, snapshot) = watch::channel(RelayReport::default());
        let task = tokio::spawn(run(a, b, config, stopped, publish));
        Self {
            stop: Some(stop),
            task: Some(task),
            snapshot,
        }
    }

    /// The counters as of the last RTCP event (a report sent or received) while running; the
    /// task publishes them then rather than per packet.
    pub fn latest_report(&self) -> RelayReport {
        *self.snapshot.borrow()
    }

    /// Waits until the next RTCP event publishes counters, and returns them; `None` once the
    /// relay has stopped.
    pub async fn changed_report(&mut self) -> Option<RelayReport> {
        self.snapshot.changed().await.ok()?;
        Some(*self.snapshot.borrow_and_update())
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

/// One leg's RTCP inside the task.
struct LegRtcp {
    endpoint: RtcpEndpoint,
    control: LegControl,
    /// Where our reports go: the signalled address until the peer's RTCP arrives.
    destination: SocketAddr,
}

impl LegRtcp {
    fn new(endpoint: Option<RtcpEndpoint>, config: &RelayConfig, now: Instant) -> Option<Self> {
        let endpoint = endpoint?;
        // RFC 7022: a random CNAME per session does not reveal host or user.
        let cname = format!("{:016x}@tandem", rand::random::<u64>());
        let control = LegControl::new(
            &cname,
            config.rtcp_minimum_interval,
            now,
            SystemTime::now(),
            rand::random(),
        );
        Some(Self {
            destination: endpoint.remote,
            endpoint,
            control,
        })
    }
}

async fn run(
    a: Leg,
    b: Leg,
    config: RelayConfig,
    mut stopped: oneshot::Receiver<()>,
    publish: watch::Sender<RelayReport>,
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
    let mut rtcp_a = LegRtcp::new(a.rtcp.clone(), &config, start);
    let mut rtcp_b = LegRtcp::new(b.rtcp.clone(), &config, start);
    // One byte more than the largest packet, so an oversized datagram is seen as such
    // rather than silently truncated.
    let mut buffer_a = vec![0u8; MAX_PACKET_LEN + 1];
    let mut buffer_b = vec![0u8; MAX_PACKET_LEN + 1];
    let mut control_buffer_a = vec![0u8; MAX_RTCP_LEN + 1];
    let mut control_buffer_b = vec![0u8; MAX_RTCP_LEN + 1];
    let mut out = Vec::with_capacity(MAX_PACKET_LEN);
    // One timer for both legs' reports, reset only when a report goes out, so relaying a
    // packet never touches the timer wheel.
    let deadline = next_deadline(&rtcp_a, &rtcp_b);
    let report_timer = tokio::time::sleep_until(deadline.unwrap_or(start).into());
    tokio::pin!(report_timer);
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
            received = receive_control(rtcp_a.as_ref(), &mut control_buffer_a) => {
                if let (Ok((length, source)), Some(rtcp)) = (received, rtcp_a.as_mut()) {
                    // Leg A's RTP goes out through from_b's forwarder.
                    let ours = from_b.forwarder.sender().ssrc();
                    handle_control(rtcp, &from_b.latch, ours, source, &control_buffer_a[..length]);
                    let _ = publish.send_replace(snapshot(&from_a, &from_b, &rtcp_a, &rtcp_b));
                }
            }
            received = receive_control(rtcp_b.as_ref(), &mut control_buffer_b) => {
                if let (Ok((length, source)), Some(rtcp)) = (received, rtcp_b.as_mut()) {
                    let ours = from_a.forwarder.sender().ssrc();
                    handle_control(rtcp, &from_a.latch, ours, source, &control_buffer_b[..length]);
                    let _ = publish.send_replace(snapshot(&from_a, &from_b, &rtcp_a, &rtcp_b));
                }
            }
            _ = &mut report_timer, if deadline.is_some() => {
                let now = Instant::now();
                // Leg A: we send it what came from B, and report on what came from A.
                if let Some(rtcp) = rtcp_a.as_mut() {
                    send_control(rtcp, now, &from_b.forwarder, &mut from_a.forwarder, &mut out);
                }
                if let Some(rtcp) = rtcp_b.as_mut() {
                    send_control(rtcp, now, &from_a.forwarder, &mut from_b.forwarder, &mut out);
                }
                if let Some(next) = next_deadline(&rtcp_a, &rtcp_b) {
                    report_timer.as_mut().reset(next.into());
                }
                let _ = publish.send_replace(snapshot(&from_a, &from_b, &rtcp_a, &rtcp_b));
            }
        }
    }
    snapshot(&from_a, &from_b, &rtcp_a, &rtcp_b)
}

fn snapshot(
    from_a: &Direction,
    from_b: &Direction,
    rtcp_a: &Option<LegRtcp>,
    rtcp_b: &Option<LegRtcp>,
) -> RelayReport {
    let finish = |direction: &Direction| DirectionReport {
        latched: direction.latch.latched(),
        received: direction
            .forwarder
            .incoming_source()
            .map(|source| source.statistics()),
        ..direction.report
    };
    let control = |rtcp: &Option<LegRtcp>| {
        rtcp.as_ref()
            .map(|rtcp| rtcp.control.report())
            .unwrap_or_default()
    };
    RelayReport {
        a_to_b: finish(from_a),
        b_to_a: finish(from_b),
        rtcp_a: control(rtcp_a),
        rtcp_b: control(rtcp_b),
    }
}

/// Receives on a leg's RTCP socket, or never when the leg has none.
async fn receive_control(
    rtcp: Option<&LegRtcp>,
    buffer: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match rtcp {
        Some(rtcp) => rtcp.endpoint.socket.recv_from(buffer).await,
        None => std::future::pending().await,
    }
}

/// When the next RTCP report of either leg is due; `None` when no leg has RTCP.
fn next_deadline(rtcp_a: &Option<LegRtcp>, rtcp_b: &Option<LegRtcp>) -> Option<Instant> {
    [rtcp_a, rtcp_b]
        .into_iter()
        .flatten()
        .map(|rtcp| rtcp.control.poll_timeout())
        .min()
}

fn handle_control(
    rtcp: &mut LegRtcp,
    rtp_latch: &Latch,
    our_ssrc: super::Ssrc,
    source: SocketAddr,
    datagram: &[u8],
) {
    let accepted = source.ip() == rtp_latch.destination().ip() || source == rtcp.endpoint.remote;
    if !accepted || datagram.len() > MAX_RTCP_LEN {
        rtcp.control.count_malformed();
        return;
    }
    if rtcp
        .control
        .handle_datagram(Instant::now(), datagram, our_ssrc)
        .is_ok()
    {
        // RFC 4961: symmetric RTCP; answer where the peer's reports come from.
        rtcp.destination = source;
    }
}

fn send_control(
    rtcp: &mut LegRtcp,
    now: Instant,
    outgoing: &Forwarder,
    incoming: &mut Forwarder,
    buffer: &mut Vec<u8>,
) {
    let written = rtcp.control.handle_timeout(
        now,
        rand::random(),
        outgoing.sender(),
        incoming.incoming_source_mut(),
        buffer,
    );
    if written
        && rtcp
            .endpoint
            .socket
            .try_send_to(buffer, rtcp.destination)
            .is_err()
    {
        rtcp.control.count_send_failure();
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
