//! The relay between the two legs of a bridged call.
//!
//! Relays run on a few dedicated threads ([`Relays`]), not on the tokio runtime: each thread
//! owns an epoll instance (mio) on which the bridged calls' RTP and RTCP sockets are
//! registered while they are relayed, and forwards every datagram from the socket it arrived
//! on to the other leg's socket in the same wake-up. A relayed packet therefore costs one
//! receive, one send and a share of one `epoll_wait`, with no task hand-off, no waker and no
//! runtime bookkeeping per packet, and the runtime's threads never see media at all.
//!
//! The per-call logic stays sans-IO: source filtering is [`Latch`](super::latch::Latch) and
//! packet translation is [`Forwarder`](super::forward::Forwarder). Sends are non-blocking: a
//! packet the outgoing socket cannot take at once is dropped and counted, which is what a
//! router does with a full queue and what RTP tolerates, and one leg never stalls the other.
//!
//! RTCP (RFC 3550 §6): a leg given an [`RtcpEndpoint`] gets compound reports (SR or RR plus
//! SDES CNAME) at the randomized §6.2 interval, built by the sans-IO
//! [`LegControl`](super::control::LegControl), and the peer's SRs/RRs read from the leg's RTCP
//! socket are recorded in [`RelayReport`]. RTCP is accepted from the IP address the leg's RTP
//! goes to (latched or signalled) or from the signalled RTCP address; once one arrives, ours go
//! back to its source (symmetric RTCP, RFC 4961), else to the signalled RTCP address. A leg
//! whose RTCP is multiplexed on its RTP port (RFC 5761) names its RTP socket as the RTCP one.
//!
//! DTMF on behalf of a party whose key presses arrive out of band (a client's `dtmf`
//! message): [`Relay::send_dtmf`] plays RFC 4733 telephone-events into the stream toward one
//! leg, numbered by that stream's own sender, while the audio of that direction is held back;
//! the forwarded stream then resumes as a new talkspurt.
//!
//! A leg whose re-INVITE moves or re-formats its media (RFC 3264 §8) is followed with
//! [`Relay::update`]: the worker thread then sends to the new address, reads and writes the
//! leg's new codec and telephone-event payload type in both directions, and re-opens the leg's
//! latch (see [`super::latch`] for what that admits).
//!
//! The same threads read the RTP socket of a call that gathers digits and is not bridged
//! ([`Relays::listen`], the DTMF listener): the runtime's threads never see a packet of media.
//!
//! Invariant: a socket is read by one party at a time. The DTMF listener has deregistered the
//! socket before [`Listener::stop`] returns, which comes before a relay registers it, and a
//! stopped relay has deregistered its sockets before [`Relay::stop`] returns.

mod worker;

pub(crate) use worker::Handle as WorkerHandle;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::control::{ControlReport, DEFAULT_MINIMUM_INTERVAL};
use super::forward::LegFormat;
use super::latch::DEFAULT_LATCH_WINDOW;
use super::listener::{Listener, ListenerConfig};
use super::source::Statistics;

/// One leg of a relayed call.
#[derive(Debug, Clone)]
pub struct Leg {
    /// Our RTP socket for this leg (from [`crate::ports::PortPool`]), non-blocking.
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

impl Leg {
    /// Whether the leg's RTCP shares its RTP socket (RFC 5761): its endpoint names that socket.
    fn is_rtcp_muxed(&self) -> bool {
        self.rtcp
            .as_ref()
            .is_some_and(|rtcp| Arc::ptr_eq(&rtcp.socket, &self.socket))
    }
}

/// Where one leg's RTCP flows.
#[derive(Debug, Clone)]
pub struct RtcpEndpoint {
    /// Our RTCP socket for this leg (RTP port + 1, from [`crate::ports::RtpPorts`]),
    /// non-blocking; or the leg's RTP socket itself when RTCP is multiplexed on it (RFC 5761:
    /// the relay then tells the two apart by packet type).
    pub socket: Arc<UdpSocket>,
    /// The peer's RTCP address (see [`crate::sdp::Negotiated::remote_rtcp`]).
    pub remote: SocketAddr,
}

/// What a leg's latest offer/answer exchange settled for its media, for [`Relay::update`]:
/// the part of a [`Leg`] that a re-INVITE may change (RFC 3264 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegSession {
    /// The address the leg's SDP now signals for its RTP.
    pub remote: SocketAddr,
    /// What the leg now negotiated.
    pub format: LegFormat,
    /// The peer's RTCP address now (unused for a leg relayed without RTCP).
    pub remote_rtcp: SocketAddr,
}

impl From<&crate::sdp::Negotiated> for LegSession {
    fn from(negotiated: &crate::sdp::Negotiated) -> Self {
        Self {
            remote: negotiated.remote,
            format: negotiated.into(),
            remote_rtcp: negotiated.remote_rtcp,
        }
    }
}

/// Settings of one relayed call.
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
    /// Packets sent on to the other leg: those forwarded, and the telephone-events played
    /// into this direction's stream for a party ([`Relay::send_dtmf`]).
    pub forwarded: u64,
    /// Datagrams dropped because they came from an address the leg does not accept.
    pub foreign_source: u64,
    /// Datagrams dropped as malformed or of a payload type nobody negotiated.
    pub unusable: u64,
    /// Packets dropped because the outgoing socket could not take them.
    pub send_failures: u64,
    /// Packets not forwarded because the receiving leg holds the call ([`Relay::hold`]).
    pub held: u64,
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

/// One leg of a relay, as given to [`Relays::relay`] (`a` first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first leg.
    A,
    /// The second leg.
    B,
}

/// How many relay threads to run.
#[derive(Debug, Clone, Copy)]
pub struct RelaysConfig {
    /// Relay threads; calls are spread over them round-robin. At least 1.
    pub threads: usize,
}

impl Default for RelaysConfig {
    /// One thread per core: a thread relays until its core is busy, and the kernel's share
    /// of a relayed packet (the UDP send and receive) is most of its cost.
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// Why a relay thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelaysError {
    /// The OS refused an epoll instance, its waker or the thread itself.
    #[error("could not start a relay thread: {0}")]
    Start(#[source] std::io::Error),
}

/// The relay threads. Cloning shares them; each thread ends once every handle and every
/// relay it runs are dropped.
#[derive(Debug, Clone)]
pub struct Relays {
    workers: Arc<[worker::Handle]>,
    next_worker: Arc<AtomicUsize>,
    next_id: Arc<AtomicU64>,
}

impl Relays {
    /// Starts `config.threads` relay threads (named `tandem-relay`).
    pub fn spawn(config: RelaysConfig) -> Result<Self, RelaysError> {
        let workers = (0..config.threads.max(1))
            .map(|_| worker::Handle::spawn().map_err(RelaysError::Start))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            workers: workers.into(),
            next_worker: Arc::new(AtomicUsize::new(0)),
            next_id: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Starts relaying between `a` and `b` on the next thread in turn. The sockets must not
    /// be read by anybody else until the relay has stopped.
    pub fn relay(&self, a: Leg, b: Leg, config: RelayConfig) -> Relay {
        let (worker, id) = self.next();
        let (publish, snapshot) = watch::channel(RelayReport::default());
        // Media that arrived before the bridge (a caller's audio while a dial rang, read by
        // nobody) is stale: forwarded, it would reach the other party as one burst. It is
        // dropped here, not in the thread, so that what arrives once this returns is relayed.
        let mut sockets: [&UdpSocket; 4] = [&a.socket; 4];
        let mut count = 0;
        for leg in [&a, &b] {
            let rtcp = leg
                .rtcp
                .as_ref()
                .filter(|_| !leg.is_rtcp_muxed())
                .map(|rtcp| &*rtcp.socket);
            for socket in std::iter::once(&*leg.socket).chain(rtcp) {
                sockets[count] = socket;
                count += 1;
            }
        }
        crate::ports::discard_queued(&sockets[..count], STALE_LIMIT);
        worker.send(worker::Command::Start(Box::new(worker::Start {
            id,
            a,
            b,
            config,
            publish,
        })));
        Relay {
            id,
            worker: Some(worker),
            snapshot,
        }
    }

    /// Starts reading RFC 4733 key presses from `config.socket` on the next thread in turn
    /// (the DTMF listener of a call that is not bridged); each key is sent to `digits` once.
    /// The socket must not be read by anybody else until the listener has stopped.
    pub fn listen(&self, config: ListenerConfig, digits: mpsc::Sender<char>) -> Listener {
        let (worker, id) = self.next();
        worker.send(worker::Command::Listen(Box::new(worker::Listen {
            id,
            config,
            digits,
        })));
        Listener {
            id,
            worker: Some(worker),
        }
    }

    /// The next thread in turn, and a new id for what it is given.
    fn next(&self) -> (worker::Handle, u64) {
        let index = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        (self.workers[index].clone(), id)
    }
}

/// Datagrams queued before a relay starts that it discards per socket, at most (more than a
/// default receive buffer holds; a socket flooded beyond that is the latch's business).
const STALE_LIMIT: usize = 1024;

/// A running relay. Dropping it stops it (without waiting).
#[derive(Debug)]
pub struct Relay {
    id: u64,
    /// `None` once stopped.
    worker: Option<worker::Handle>,
    snapshot: watch::Receiver<RelayReport>,
}

impl Relay {
    /// The counters as of the last RTCP event (a report sent or received) while running; the
    /// relay publishes them then rather than per packet.
    pub fn latest_report(&self) -> RelayReport {
        *self.snapshot.borrow()
    }

    /// Waits until the next RTCP event publishes counters, and returns them; `None` once the
    /// relay has stopped.
    pub async fn changed_report(&mut self) -> Option<RelayReport> {
        self.snapshot.changed().await.ok()?;
        Some(*self.snapshot.borrow_and_update())
    }

    /// Plays `digits` (`0-9 * # A-D`; anything else is skipped) as RFC 4733 telephone-events
    /// toward leg `toward`, one 100 ms event per key with 60 ms between keys, after any digits
    /// still playing. Nothing is sent when that leg did not negotiate telephone-events, and at
    /// most 64 keys wait at a time (more are dropped).
    pub fn send_dtmf(&self, toward: Side, digits: &str) {
        self.command(worker::Command::Dtmf {
            id: self.id,
            toward,
            digits: digits.to_owned(),
        });
    }

    /// Stops (`held`) or resumes forwarding toward leg `toward`: a party that put the call on
    /// hold (an offer of `sendonly` or `inactive`) is sent nothing, while what it sends (music
    /// on hold) still reaches the other leg. On resuming, the stream toward it goes on as a new
    /// talkspurt whose timestamps skip the pause. Key presses for a held leg are dropped.
    pub fn hold(&self, toward: Side, held: bool) {
        self.command(worker::Command::Hold {
            id: self.id,
            toward,
            held,
        });
    }

    /// Follows leg `side` to the media its new offer/answer exchange settled (RFC 3264 §8:
    /// "modifying the session"): RTP toward it goes to `session.remote` (or, for a latching
    /// leg, stays with the source it latched until another source shows up within the latch
    /// window, see [`super::latch`]); its packets are read and the other leg's are written in
    /// `session.format` (PCMU↔PCMA and the telephone-event payload type follow); its RTCP goes
    /// to `session.remote_rtcp` until the peer's own reports arrive from elsewhere. A leg
    /// that does not latch then accepts RTP only from the new address. Hold is unaffected.
    pub fn update(&self, side: Side, session: LegSession) {
        self.command(worker::Command::Update {
            id: self.id,
            side,
            session,
        });
    }

    /// Queues `command` for the relay's thread, unless the relay was stopped.
    fn command(&self, command: worker::Command) {
        if let Some(worker) = &self.worker {
            worker.send(command);
        }
    }

    /// Stops the relay and returns its counters. Once this returns, the relay thread no
    /// longer reads the legs' sockets.
    pub async fn stop(mut self) -> RelayReport {
        let Some(worker) = self.worker.take() else {
            return RelayReport::default();
        };
        let (reply, stopped) = oneshot::channel();
        worker.send(worker::Command::Stop {
            id: self.id,
            reply: Some(reply),
        });
        // A relay thread that is gone has no sockets registered either.
        stopped.await.unwrap_or_else(|_| self.latest_report())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.send(worker::Command::Stop {
                id: self.id,
                reply: None,
            });
        }
    }
}
