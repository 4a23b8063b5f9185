//! One relay thread: an epoll instance (mio, edge-triggered) with the sockets of the calls it
//! relays, a table of those calls, and their RTCP deadlines.
//!
//! Each wake-up reads every ready socket until it would block, forwarding as it goes, but at
//! most [`BUDGET`] datagrams per socket before it serves the others: a socket flooded faster
//! than it can be drained is put on a backlog and resumed after the rest, so one hostile
//! sender cannot starve the other calls on the thread. Commands (start, stop, DTMF, hold,
//! update, listen) arrive on a channel that the thread reads after each batch of ready
//! sockets, and at least every [`COMMAND_INTERVAL`]: nobody wakes the thread for a command
//! (under load a wake per start and stop cost more than the relaying), and a token in one
//! batch of events always means the call (or listener) registered under it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use tokio::sync::{oneshot, watch};

use super::{DirectionReport, Leg, LegSession, RelayConfig, RelayReport, RtcpEndpoint, Side};
use crate::dtmf::{Event, EventSender, PAYLOAD_LEN};
use crate::rtp::control::{LegControl, MAX_RTCP_LEN};
use crate::rtp::forward::{Dropped, Forwarder};
use crate::rtp::latch::Latch;
use crate::rtp::listener::{DigitReader, ListenerConfig};
use crate::rtp::packet::{self, MAX_PACKET_LEN};
use crate::rtp::{PayloadType, RtpTimestamp, Sender, Ssrc, CLOCK_RATE, PACKET_INTERVAL};

/// Datagrams read from one socket before the others get a turn.
const BUDGET: usize = 64;

/// The longest a command waits for the thread to look (a relay's first packets wait in its
/// sockets meanwhile; `Relay::stop` returns that much later at most).
const COMMAND_INTERVAL: Duration = Duration::from_millis(5);

/// How long each injected key press lasts, in timestamp units (100 ms at 8 kHz).
const KEY_DURATION: u32 = 800;

/// Silence between injected key presses.
const KEY_GAP: Duration = Duration::from_millis(60);

/// The volume of injected key presses (−dBm0).
const KEY_VOLUME: u8 = 10;

/// Key presses that may wait to be played toward one leg.
const MAX_PENDING_KEYS: usize = 64;

/// What a relay thread is asked to do.
#[derive(Debug)]
pub(super) enum Command {
    /// Register the legs' sockets and relay between them.
    Start(Box<Start>),
    /// Deregister and report; `reply: None` when nobody waits for the report.
    Stop {
        id: u64,
        reply: Option<oneshot::Sender<RelayReport>>,
    },
    /// Play key presses toward one leg.
    Dtmf {
        id: u64,
        toward: Side,
        digits: String,
    },
    /// Stop or resume forwarding toward one leg.
    Hold { id: u64, toward: Side, held: bool },
    /// Follow one leg to its renegotiated media.
    Update {
        id: u64,
        side: Side,
        session: LegSession,
    },
    /// Register a socket and read key presses from it.
    Listen(Box<Listen>),
    /// Deregister a listener's socket; `reply: None` when nobody waits.
    StopListening {
        id: u64,
        reply: Option<oneshot::Sender<()>>,
    },
}

/// A DTMF listener to start.
#[derive(Debug)]
pub(super) struct Listen {
    pub(super) id: u64,
    pub(super) config: ListenerConfig,
    pub(super) digits: tokio::sync::mpsc::Sender<char>,
}

/// A relay to start.
#[derive(Debug)]
pub(super) struct Start {
    pub(super) id: u64,
    pub(super) a: Leg,
    pub(super) b: Leg,
    pub(super) config: RelayConfig,
    pub(super) publish: watch::Sender<RelayReport>,
}

/// The way to one relay thread. The thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    commands: mpsc::Sender<Command>,
}

impl Handle {
    /// Starts a relay thread.
    pub(super) fn spawn() -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let (commands, receiver) = mpsc::channel();
        let worker = Worker {
            poll,
            commands: receiver,
            calls: Vec::new(),
            free: Vec::new(),
            slots: HashMap::new(),
            listeners: HashMap::new(),
            deadlines: BTreeSet::new(),
            backlog: Vec::new(),
            buffer: vec![0; MAX_PACKET_LEN.max(MAX_RTCP_LEN) + 1],
            out: Vec::with_capacity(MAX_PACKET_LEN),
        };
        std::thread::Builder::new()
            .name("tandem-relay".to_owned())
            .spawn(move || worker.run())?;
        Ok(Self { commands })
    }

    /// Queues a command for the thread. A thread that is gone has nothing to start or stop,
    /// so a failed send is ignored.
    pub(super) fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Stops the listener `id`; `reply` hears when its socket is deregistered.
    pub(crate) fn stop_listening(&self, id: u64, reply: Option<oneshot::Sender<()>>) {
        self.send(Command::StopListening { id, reply });
    }
}

struct Worker {
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    /// The relayed calls, by slot; a slot's tokens are `slot << 2 | kind`.
    calls: Vec<Option<Call>>,
    /// Empty slots, reused first.
    free: Vec<usize>,
    /// Relay id → slot.
    slots: HashMap<u64, usize>,
    /// DTMF listeners by id (their token is [`LISTENER`] | id).
    listeners: HashMap<u64, Listening>,
    /// Deadlines (RTCP reports, injected key presses): (when, relay id). A call's current
    /// deadline is in [`Call::deadline`]; an entry that no longer matches it is stale and
    /// skipped.
    deadlines: BTreeSet<(Instant, u64)>,
    /// Sockets that still had datagrams when their budget ran out.
    backlog: Vec<Token>,
    /// One receive buffer, one byte longer than the largest datagram accepted, so an
    /// oversized one is seen as such rather than silently truncated.
    buffer: Vec<u8>,
    out: Vec<u8>,
}

/// The bit that marks a listener's token (a relay's is `slot << 2 | kind`, far below it).
const LISTENER: usize = 1 << 62;

/// A DTMF listener: one socket, read for key presses only.
struct Listening {
    socket: Arc<UdpSocket>,
    reader: DigitReader,
}

/// Which of a call's four sockets a token names.
#[derive(Debug, Clone, Copy)]
enum Socket {
    RtpA,
    RtpB,
    RtcpA,
    RtcpB,
}

impl Socket {
    const ALL: [Socket; 4] = [Socket::RtpA, Socket::RtpB, Socket::RtcpA, Socket::RtcpB];

    fn token(self, slot: usize) -> Token {
        Token(slot << 2 | self as usize)
    }

    fn of(token: Token) -> (usize, Self) {
        (token.0 >> 2, Self::ALL[token.0 & 3])
    }
}

/// One direction's state.
struct Direction {
    latch: Latch,
    forwarder: Forwarder,
    report: DirectionReport,
    /// Key presses being played into this direction's outgoing stream; its forwarded packets
    /// are held back meanwhile.
    injection: Option<Injection>,
    /// Since when the receiving leg holds the call: this direction's packets are read and
    /// dropped.
    held_since: Option<Instant>,
}

/// RFC 4733 events Tandem plays into a forwarded stream: one key at a time, a packet every
/// 20 ms, timestamps following the wall clock from where the stream stood.
struct Injection {
    keys: VecDeque<Event>,
    /// The key playing and its start timestamp.
    playing: Option<(EventSender, RtpTimestamp)>,
    payload_type: PayloadType,
    /// Where the stream stood when the injection began, in time and in timestamp units.
    origin: (Instant, RtpTimestamp),
    /// When the next packet is due.
    next_at: Instant,
}

/// One leg's RTCP.
struct LegRtcp {
    endpoint: RtcpEndpoint,
    /// Whether it shares the leg's RTP socket (RFC 5761): then it is not registered on its
    /// own, and what arrives there is told apart by [`packet::is_rtcp`].
    muxed: bool,
    control: LegControl,
    /// Where our reports go: the signalled address until the peer's RTCP arrives.
    destination: SocketAddr,
}

/// One relayed call.
struct Call {
    id: u64,
    a: Leg,
    b: Leg,
    from_a: Direction,
    from_b: Direction,
    rtcp_a: Option<LegRtcp>,
    rtcp_b: Option<LegRtcp>,
    publish: watch::Sender<RelayReport>,
    deadline: Option<Instant>,
}

impl Worker {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.backlog.is_empty() {
                let until_deadline = self
                    .deadlines
                    .first()
                    .map(|(at, _)| at.saturating_duration_since(Instant::now()));
                until_deadline.map_or(COMMAND_INTERVAL, |wait| wait.min(COMMAND_INTERVAL))
            } else {
                Duration::ZERO
            };
            if let Err(error) = self.poll.poll(&mut events, Some(timeout)) {
                if error.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(%error, "relay thread: epoll failed; its calls lose media");
                return;
            }
            let now = Instant::now();
            for event in &events {
                self.handle_readable(event.token(), now);
            }
            for token in std::mem::take(&mut self.backlog) {
                self.handle_readable(token, now);
            }
            self.handle_deadlines(Instant::now());
            if !self.handle_commands() {
                return;
            }
        }
    }

    /// Reads one ready socket, up to the budget.
    fn handle_readable(&mut self, token: Token, now: Instant) {
        if token.0 & LISTENER != 0 {
            self.listen_to(token, now);
            return;
        }
        let (slot, socket) = Socket::of(token);
        let Some(call) = self.calls.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let exhausted = match socket {
            Socket::RtpA | Socket::RtpB => {
                call.relay_rtp(socket, now, &mut self.buffer, &mut self.out)
            }
            Socket::RtcpA | Socket::RtcpB => call.receive_control(socket, now, &mut self.buffer),
        };
        if exhausted {
            self.backlog.push(token);
        }
    }

    /// Reads one listener's socket, up to the budget.
    fn listen_to(&mut self, token: Token, now: Instant) {
        let id = (token.0 & !LISTENER) as u64;
        let Some(listening) = self.listeners.get_mut(&id) else {
            return;
        };
        for _ in 0..BUDGET {
            match listening.socket.recv_from(&mut self.buffer) {
                Ok((length, source)) => {
                    let datagram = &self.buffer[..length.min(MAX_PACKET_LEN)];
                    if !listening.reader.handle_datagram(now, source, datagram) {
                        // The call no longer reads keys: the rest waits for its stop.
                        return;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                // ICMP port unreachable and the like: the peer may come back; keep reading.
                Err(_) => {}
            }
        }
        self.backlog.push(token);
    }

    /// Serves the calls whose deadline has come (RTCP reports, injected key presses).
    fn handle_deadlines(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                return;
            }
            self.deadlines.pop_first();
            let Some(call) = call_mut(&self.slots, &mut self.calls, id) else {
                continue;
            };
            if call.deadline != Some(at) {
                continue;
            }
            // Its entry is off the set now.
            call.deadline = None;
            call.handle_timeout(now, &mut self.out);
            reschedule(&mut self.deadlines, call);
        }
    }

    /// Handles every queued command; `false` once every handle is gone.
    fn handle_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Start(start)) => self.start(*start),
                Ok(Command::Stop { id, reply }) => {
                    let report = self.stop(id);
                    if let Some(reply) = reply {
                        let _ = reply.send(report);
                    }
                }
                Ok(Command::Dtmf { id, toward, digits }) => self.send_dtmf(id, toward, &digits),
                Ok(Command::Hold { id, toward, held }) => {
                    if let Some(call) = call_mut(&self.slots, &mut self.calls, id) {
                        call.hold(Instant::now(), toward, held);
                    }
                }
                Ok(Command::Update { id, side, session }) => {
                    if let Some(call) = call_mut(&self.slots, &mut self.calls, id) {
                        call.update(Instant::now(), side, session);
                    }
                }
                Ok(Command::Listen(listen)) => self.listen(*listen),
                Ok(Command::StopListening { id, reply }) => {
                    if let Some(listening) = self.listeners.remove(&id) {
                        let fd = listening.socket.as_raw_fd();
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn start(&mut self, start: Start) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.calls.push(None);
            self.calls.len() - 1
        });
        let call = Call::new(start);
        if let Err(error) = call.register(self.poll.registry(), slot) {
            // Typically the socket is already registered here (the same socket in two
            // relays at once): a misuse, reported rather than relayed half-way.
            tracing::error!(%error, "relay: could not register the legs' sockets");
            call.deregister(self.poll.registry());
            self.free.push(slot);
            return;
        }
        if let Some(deadline) = call.deadline {
            self.deadlines.insert((deadline, call.id));
        }
        self.slots.insert(call.id, slot);
        if let Some(entry) = self.calls.get_mut(slot) {
            *entry = Some(call);
        }
    }

    fn listen(&mut self, listen: Listen) {
        let Listen { id, config, digits } = listen;
        let Ok(token) = usize::try_from(id).map(|id| Token(LISTENER | id)) else {
            return;
        };
        let fd = config.socket.as_raw_fd();
        let registered =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), token, Interest::READABLE);
        if let Err(error) = registered {
            // Typically the socket is registered here already (read by a relay): a misuse.
            tracing::error!(%error, "DTMF listener: could not register the RTP socket");
            return;
        }
        let reader = DigitReader::new(&config, digits, Instant::now());
        self.listeners.insert(
            id,
            Listening {
                socket: config.socket,
                reader,
            },
        );
    }

    fn send_dtmf(&mut self, id: u64, toward: Side, digits: &str) {
        let Some(call) = call_mut(&self.slots, &mut self.calls, id) else {
            return;
        };
        let now = Instant::now();
        call.queue_keys(now, toward, digits, &mut self.out);
        reschedule(&mut self.deadlines, call);
    }

    fn stop(&mut self, id: u64) -> RelayReport {
        let Some(slot) = self.slots.remove(&id) else {
            return RelayReport::default();
        };
        let Some(call) = self.calls.get_mut(slot).and_then(Option::take) else {
            return RelayReport::default();
        };
        self.free.push(slot);
        if let Some(deadline) = call.deadline {
            self.deadlines.remove(&(deadline, id));
        }
        call.deregister(self.poll.registry());
        call.snapshot()
    }
}

/// A leg's RTCP socket, if it has one of its own (not multiplexed on the RTP socket).
fn own_socket(rtcp: &Option<LegRtcp>) -> Option<&UdpSocket> {
    rtcp.as_ref()
        .filter(|rtcp| !rtcp.muxed)
        .map(|rtcp| &*rtcp.endpoint.socket)
}

/// Moves `call`'s entry in `deadlines` to its next deadline.
fn reschedule(deadlines: &mut BTreeSet<(Instant, u64)>, call: &mut Call) {
    let next = call.next_deadline();
    if next == call.deadline {
        return;
    }
    if let Some(old) = call.deadline {
        deadlines.remove(&(old, call.id));
    }
    if let Some(next) = next {
        deadlines.insert((next, call.id));
    }
    call.deadline = next;
}

/// The call relayed under `id`, if it still is.
fn call_mut<'a>(
    slots: &HashMap<u64, usize>,
    calls: &'a mut [Option<Call>],
    id: u64,
) -> Option<&'a mut Call> {
    let slot = *slots.get(&id)?;
    calls.get_mut(slot)?.as_mut()
}

impl Call {
    fn new(start: Start) -> Self {
        let Start {
            id,
            a,
            b,
            config,
            publish,
        } = start;
        let now = Instant::now();
        let latch = |leg: &Leg| {
            if leg.latching {
                Latch::latching(leg.remote, now, config.latch_window)
            } else {
                Latch::signalled_only(leg.remote)
            }
        };
        let direction = |from: &Leg, to: &Leg| Direction {
            latch: latch(from),
            forwarder: Forwarder::new(from.format, to.format, Sender::random()),
            report: DirectionReport::default(),
            injection: None,
            held_since: None,
        };
        let rtcp = |leg: &Leg| {
            let endpoint = leg.rtcp.clone()?;
            // RFC 7022: a random CNAME per session does not reveal host or user.
            let cname = format!("{:016x}@tandem", rand::random::<u64>());
            let control = LegControl::new(
                &cname,
                config.rtcp_minimum_interval,
                now,
                SystemTime::now(),
                rand::random(),
            );
            Some(LegRtcp {
                destination: endpoint.remote,
                muxed: leg.is_rtcp_muxed(),
                endpoint,
                control,
            })
        };
        let mut call = Self {
            id,
            from_a: direction(&a, &b),
            from_b: direction(&b, &a),
            rtcp_a: rtcp(&a),
            rtcp_b: rtcp(&b),
            a,
            b,
            publish,
            deadline: None,
        };
        call.deadline = call.next_deadline();
        call
    }

    /// The sockets to register, in the order of [`Socket::ALL`].
    fn sockets(&self) -> [Option<&UdpSocket>; 4] {
        [
            Some(&*self.a.socket),
            Some(&*self.b.socket),
            own_socket(&self.rtcp_a),
            own_socket(&self.rtcp_b),
        ]
    }

    fn register(&self, registry: &Registry, slot: usize) -> std::io::Result<()> {
        for (socket, kind) in self.sockets().into_iter().zip(Socket::ALL) {
            if let Some(socket) = socket {
                let fd = socket.as_raw_fd();
                registry.register(&mut SourceFd(&fd), kind.token(slot), Interest::READABLE)?;
            }
        }
        Ok(())
    }

    /// Deregisters whatever is registered; errors mean it was not.
    fn deregister(&self, registry: &Registry) {
        for socket in self.sockets().into_iter().flatten() {
            let _ = registry.deregister(&mut SourceFd(&socket.as_raw_fd()));
        }
    }

    /// Forwards what arrived on one leg's RTP socket to the other leg (and reads the leg's
    /// RTCP among it, if multiplexed); `true` when the budget ran out before the socket was
    /// drained.
    fn relay_rtp(
        &mut self,
        socket: Socket,
        now: Instant,
        buffer: &mut [u8],
        out: &mut Vec<u8>,
    ) -> bool {
        // Our SSRC toward a leg is the one of the stream forwarded to it (see
        // receive_control).
        let (incoming, outgoing, direction, destination, mut rtcp, ours) = match socket {
            Socket::RtpA => (
                &self.a.socket,
                &self.b.socket,
                &mut self.from_a,
                self.from_b.latch.destination(),
                self.rtcp_a.as_mut().filter(|rtcp| rtcp.muxed),
                self.from_b.forwarder.sender().ssrc(),
            ),
            _ => (
                &self.b.socket,
                &self.a.socket,
                &mut self.from_b,
                self.from_a.latch.destination(),
                self.rtcp_b.as_mut().filter(|rtcp| rtcp.muxed),
                self.from_a.forwarder.sender().ssrc(),
            ),
        };
        let mut heard_control = false;
        let mut exhausted = true;
        for _ in 0..BUDGET {
            match incoming.recv_from(buffer) {
                Ok((length, source)) => {
                    let datagram = &buffer[..length];
                    match rtcp.as_deref_mut() {
                        Some(rtcp) if packet::is_rtcp(datagram) => {
                            handle_control(rtcp, &direction.latch, ours, now, source, datagram);
                            heard_control = true;
                        }
                        _ => {
                            relay_one(direction, now, source, datagram, outgoing, destination, out)
                        }
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    exhausted = false;
                    break;
                }
                // A queued ICMP error and the like: reading it cleared it; go on.
                Err(_) => {}
            }
        }
        if heard_control {
            self.publish.send_replace(self.snapshot());
        }
        exhausted
    }

    /// Reads one leg's RTCP socket; `true` when the budget ran out.
    fn receive_control(&mut self, socket: Socket, now: Instant, buffer: &mut [u8]) -> bool {
        // Leg A's RTP goes out through from_b's forwarder, so our SSRC towards A is its; A's
        // own source is what from_a's latch follows.
        let (rtcp, rtp_latch, ours) = match socket {
            Socket::RtcpA => (
                &mut self.rtcp_a,
                &self.from_a.latch,
                self.from_b.forwarder.sender().ssrc(),
            ),
            _ => (
                &mut self.rtcp_b,
                &self.from_b.latch,
                self.from_a.forwarder.sender().ssrc(),
            ),
        };
        let Some(rtcp) = rtcp.as_mut() else {
            return false;
        };
        let mut exhausted = true;
        for _ in 0..BUDGET {
            match rtcp.endpoint.socket.recv_from(buffer) {
                Ok((length, source)) => {
                    handle_control(rtcp, rtp_latch, ours, now, source, &buffer[..length]);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    exhausted = false;
                    break;
                }
                Err(_) => {}
            }
        }
        self.publish.send_replace(self.snapshot());
        exhausted
    }

    /// Sends what is due at `now`: RTCP reports, injected key presses.
    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<u8>) {
        let rtcp_due = [&self.rtcp_a, &self.rtcp_b]
            .into_iter()
            .flatten()
            .any(|rtcp| rtcp.control.poll_timeout() <= now);
        if rtcp_due {
            // Leg A: we send it what came from B, and report on what came from A.
            if let Some(rtcp) = self.rtcp_a.as_mut() {
                send_control(
                    rtcp,
                    now,
                    &self.from_b.forwarder,
                    &mut self.from_a.forwarder,
                    out,
                );
            }
            if let Some(rtcp) = self.rtcp_b.as_mut() {
                send_control(
                    rtcp,
                    now,
                    &self.from_a.forwarder,
                    &mut self.from_b.forwarder,
                    out,
                );
            }
            self.publish.send_replace(self.snapshot());
        }
        // What goes toward A is the B → A direction's stream, and vice versa.
        let destination_a = self.from_a.latch.destination();
        let destination_b = self.from_b.latch.destination();
        play_keys(&mut self.from_b, now, &self.a.socket, destination_a, out);
        play_keys(&mut self.from_a, now, &self.b.socket, destination_b, out);
    }

    /// Stops or resumes the stream toward one leg.
    fn hold(&mut self, now: Instant, toward: Side, held: bool) {
        let direction = match toward {
            Side::A => &mut self.from_b,
            Side::B => &mut self.from_a,
        };
        match (held, direction.held_since) {
            (true, None) => direction.held_since = Some(now),
            (false, Some(since)) => {
                direction.held_since = None;
                let paused = now.saturating_duration_since(since);
                direction
                    .forwarder
                    .sender_mut()
                    .start_talkspurt(samples(paused));
            }
            _ => {}
        }
    }

    /// Follows one leg to its renegotiated media (RFC 3264 §8). Only the leg's own
    /// direction reads its format and latch, and only the other direction writes toward it,
    /// so each of the two forwarders changes one side; their senders, and so the streams'
    /// SSRCs and numbering, go on.
    fn update(&mut self, now: Instant, side: Side, session: LegSession) {
        let (leg, from_leg, toward_leg, rtcp) = match side {
            Side::A => (
                &mut self.a,
                &mut self.from_a,
                &mut self.from_b,
                &mut self.rtcp_a,
            ),
            Side::B => (
                &mut self.b,
                &mut self.from_b,
                &mut self.from_a,
                &mut self.rtcp_b,
            ),
        };
        if session.remote != leg.remote {
            // A re-offer that keeps the address leaves the latch alone: a new window would
            // only give a stranger a chance to take the stream over.
            from_leg.latch.renew(session.remote, now);
        }
        from_leg.forwarder.set_incoming(session.format);
        toward_leg.forwarder.set_outgoing(session.format);
        if let Some(injection) = toward_leg.injection.as_mut() {
            match session.format.telephone_event {
                Some(payload_type) => injection.payload_type = payload_type,
                None => {
                    // The leg no longer takes events: the keys waiting are dropped, and the
                    // injection ends (the forwarded stream resuming) at its next tick.
                    tracing::debug!(?side, "DTMF dropped: the leg renegotiated without events");
                    injection.keys.clear();
                    injection.playing = None;
                }
            }
        }
        if let Some(rtcp) = rtcp.as_mut() {
            if rtcp.endpoint.remote != session.remote_rtcp {
                // Reports go to the new address until the peer's own arrive (RFC 4961).
                rtcp.endpoint.remote = session.remote_rtcp;
                rtcp.destination = session.remote_rtcp;
            }
        }
        leg.remote = session.remote;
        leg.format = session.format;
    }

    /// Queues key presses toward one leg, starting at once when none are playing.
    fn queue_keys(&mut self, now: Instant, toward: Side, digits: &str, out: &mut Vec<u8>) {
        let (direction, socket, destination) = match toward {
            Side::A => (
                &mut self.from_b,
                &self.a.socket,
                self.from_a.latch.destination(),
            ),
            Side::B => (
                &mut self.from_a,
                &self.b.socket,
                self.from_b.latch.destination(),
            ),
        };
        if direction.held_since.is_some() {
            tracing::debug!(?toward, "DTMF not sent: the leg holds the call");
            return;
        }
        let Some(payload_type) = direction.forwarder.outgoing().telephone_event else {
            tracing::debug!(
                ?toward,
                "DTMF not sent: the leg negotiated no telephone-events"
            );
            return;
        };
        let origin = (now, direction.forwarder.sender().next_timestamp());
        let injection = direction.injection.get_or_insert_with(|| Injection {
            keys: VecDeque::new(),
            playing: None,
            payload_type,
            origin,
            next_at: now,
        });
        for event in digits.chars().filter_map(Event::from_key) {
            if injection.keys.len() >= MAX_PENDING_KEYS {
                tracing::debug!(?toward, "DTMF keys dropped: too many waiting");
                break;
            }
            injection.keys.push_back(event);
        }
        play_keys(direction, now, socket, destination, out);
    }

    /// When something is next due: an RTCP report of either leg or an injected packet.
    fn next_deadline(&self) -> Option<Instant> {
        let rtcp = [&self.rtcp_a, &self.rtcp_b]
            .into_iter()
            .flatten()
            .map(|rtcp| rtcp.control.poll_timeout());
        let keys = [&self.from_a, &self.from_b]
            .into_iter()
            .filter_map(|direction| direction.injection.as_ref())
            .map(|injection| injection.next_at);
        rtcp.chain(keys).min()
    }

    fn snapshot(&self) -> RelayReport {
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
            a_to_b: finish(&self.from_a),
            b_to_a: finish(&self.from_b),
            rtcp_a: control(&self.rtcp_a),
            rtcp_b: control(&self.rtcp_b),
        }
    }
}

/// Sends the injected packets of `direction` that are due, toward `destination`; ends the
/// injection (the forwarded stream resumes as a new talkspurt) once every key is played.
fn play_keys(
    direction: &mut Direction,
    now: Instant,
    socket: &UdpSocket,
    destination: SocketAddr,
    out: &mut Vec<u8>,
) {
    let Some(injection) = direction.injection.as_mut() else {
        return;
    };
    let sender = direction.forwarder.sender_mut();
    while injection.next_at <= now {
        if injection.playing.is_none() {
            let Some(event) = injection.keys.pop_front() else {
                // RFC 4733 §2.5.1.3 leaves audio to resume after the event; the stream's
                // timestamps skip the time the keys took.
                let elapsed = now.saturating_duration_since(injection.origin.0);
                sender.start_talkspurt(samples(elapsed));
                direction.injection = None;
                return;
            };
            let elapsed = injection
                .next_at
                .saturating_duration_since(injection.origin.0);
            let start = injection.origin.1.wrapping_add(samples(elapsed));
            injection.playing = Some((EventSender::new(event, KEY_DURATION, KEY_VOLUME), start));
        }
        let Some((events, start)) = injection.playing.as_mut() else {
            return;
        };
        match events.next_payload() {
            Some((marker, payload)) => {
                let header = sender.stamp_event(injection.payload_type, *start, marker);
                let length = packet::write(&header, &payload.encode()[..PAYLOAD_LEN], out);
                match socket.send_to(&out[..length], destination) {
                    Ok(_) => direction.report.forwarded += 1,
                    Err(_) => direction.report.send_failures += 1,
                }
                injection.next_at += PACKET_INTERVAL;
            }
            None => {
                injection.playing = None;
                if !injection.keys.is_empty() {
                    injection.next_at += KEY_GAP;
                }
            }
        }
    }
}

/// Timestamp units (8 kHz) in `duration`.
fn samples(duration: Duration) -> u32 {
    (duration.as_micros() * u128::from(CLOCK_RATE) / 1_000_000) as u32
}

fn relay_one(
    direction: &mut Direction,
    now: Instant,
    source: SocketAddr,
    datagram: &[u8],
    outgoing: &UdpSocket,
    destination: SocketAddr,
    out: &mut Vec<u8>,
) {
    if !direction.latch.handle_source(now, source) {
        direction.report.foreign_source += 1;
        return;
    }
    if direction.held_since.is_some() {
        direction.report.held += 1;
        return;
    }
    if direction.injection.is_some() {
        // Key presses are being played into this stream: its own packets wait them out.
        return;
    }
    match direction.forwarder.handle_datagram(now, datagram, out) {
        Ok(length) => match outgoing.send_to(&out[..length], destination) {
            Ok(_) => direction.report.forwarded += 1,
            Err(_) => direction.report.send_failures += 1,
        },
        Err(Dropped::Malformed(_))
        | Err(Dropped::UnexpectedPayloadType(_))
        | Err(Dropped::NoTelephoneEventOnOutgoingLeg) => direction.report.unusable += 1,
    }
}

fn handle_control(
    rtcp: &mut LegRtcp,
    rtp_latch: &Latch,
    our_ssrc: Ssrc,
    now: Instant,
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
        .handle_datagram(now, datagram, our_ssrc)
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
            .send_to(buffer, rtcp.destination)
            .is_err()
    {
        rtcp.control.count_send_failure();
    }
}
