//! The RTP port pool: hands out an even RTP port and the RTCP port above it (RFC 3550 §11:
//! "RTP SHOULD use an even destination port number and the corresponding RTCP stream SHOULD
//! use the next higher (odd) destination port number") from a configured range, with the UDP
//! sockets already bound, so a port is never promised and then found taken.
//!
//! A lease whose RTCP is multiplexed on the RTP port (RFC 5761, [`Rtcp::Muxed`]) opens the RTP
//! socket only: half the descriptors of a pair. Its RTCP port stays reserved, so a lease made
//! for an offer of multiplexing that the answer declines can still open it
//! ([`RtpPorts::open_rtcp`]).
//!
//! Ports in use by anybody else (another process, or a socket of ours still draining) are
//! skipped: binding is the test. The search for a fresh pair starts after the last port handed
//! out, so a just-released port is not bound again at once.
//!
//! A released pair whose sockets nobody else holds any more *rests* with its sockets open
//! (resting pairs cut a call's CPU by 8 %, measured: creating, binding and closing four
//! sockets per call is that costly). The pair that has rested longest is handed out again once
//! it has rested [`PortPool::with_resting`]'s minimum, but only if nothing at all arrived on
//! its sockets while it rested: a peer of the old call still sending (a stream that did not
//! stop at BYE) therefore never reaches the next call; such a pair is closed instead. A rested
//! pair serves either kind of lease: its RTCP socket is closed for a multiplexed one, or bound
//! again for one that needs it. Pairs hold descriptors, so they rest only while the sockets of
//! leased and resting pairs together stay within the pool's share; a new lease beyond it
//! closes the longest-resting pair.
//!
//! The sockets are plain non-blocking std sockets, registered with no reactor: whoever reads
//! one registers it for as long as it reads (the DTMF listener with the runtime, a relay with
//! its relay thread), so media nobody waits for wakes nobody.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::net::UdpSocket;

/// Why no port pair could be allocated.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The range holds no even port with an odd port above it.
    #[error("RTP port range {first}-{last} holds no even/odd pair")]
    EmptyRange {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
    /// Every pair in the range is leased or bound by someone else.
    #[error("all RTP ports in {first}-{last} are in use")]
    Exhausted {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
    },
    /// The process is out of file descriptors: no socket can be opened, whatever the port.
    #[error("out of file descriptors for RTP sockets: {0}")]
    Descriptors(#[source] std::io::Error),
}

/// How long a released pair rests, at least, before it is handed out again.
pub const DEFAULT_REST: Duration = Duration::from_millis(250);

/// How long a released pair may rest unused before it is closed
/// ([`PortPool::close_resting_longer_than`]): long enough to serve the next burst of calls,
/// short enough that a quiet switch gives its descriptors and ports back after a busy hour.
pub const MAX_REST: Duration = Duration::from_secs(30);

/// Where a lease's RTCP flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rtcp {
    /// On a socket of its own, at the RTP port + 1 (RFC 3550 §11).
    OwnPort,
    /// On the RTP socket itself (RFC 5761): no second socket is opened.
    Muxed,
}

/// A pool of RTP/RTCP port pairs on one local address. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct PortPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    address: IpAddr,
    first: u16,
    last: u16,
    rest: Duration,
    /// Sockets (descriptors) that leased and resting pairs may hold before released pairs
    /// stop resting.
    max_open: usize,
    /// Pairs handed out again after resting.
    reused: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Ports whose pair is leased or resting.
    held: HashSet<u16>,
    /// Released pairs with their sockets open, longest resting first.
    resting: VecDeque<Resting>,
    /// The even port the next search for a fresh pair starts at.
    cursor: u16,
    /// Sockets open in leased pairs.
    leased_sockets: usize,
    /// Sockets open in resting pairs.
    resting_sockets: usize,
}

impl State {
    fn open_sockets(&self) -> usize {
        self.leased_sockets + self.resting_sockets
    }

    /// Takes the longest-resting pair off the queue (its port stays held).
    fn pop_resting(&mut self) -> Option<Resting> {
        let pair = self.resting.pop_front()?;
        self.resting_sockets -= pair.sockets();
        Some(pair)
    }
}

/// A released pair. Its sockets are held by nobody else (the pool checked when it took them),
/// so nobody else can read or clone them while they rest.
#[derive(Debug)]
struct Resting {
    port: u16,
    rtp: Arc<UdpSocket>,
    rtcp: Option<Arc<UdpSocket>>,
    since: Instant,
}

impl Resting {
    fn sockets(&self) -> usize {
        1 + usize::from(self.rtcp.is_some())
    }
}

/// An allocated pair: its sockets bound and non-blocking, released to the pool on drop.
///
/// Holders of the sockets (a relay, a player) must let go of them before or soon after the
/// pair is dropped; a pair whose sockets are still held elsewhere when it is dropped is not
/// rested but closed when the last holder lets go.
#[derive(Debug)]
pub struct RtpPorts {
    rtp: Arc<UdpSocket>,
    rtcp: Option<Arc<UdpSocket>>,
    port: u16,
    pool: Arc<Inner>,
}

impl PortPool {
    /// A pool over the ports `first..=last` on `address`. The first even port at or above
    /// `first` whose successor is at most `last` is the first pair. Released pairs rest
    /// [`DEFAULT_REST`] while no more than 512 sockets are open: see
    /// [`PortPool::with_resting`].
    pub fn new(address: IpAddr, first: u16, last: u16) -> Result<Self, PortError> {
        Self::with_resting(address, first, last, 512, DEFAULT_REST)
    }

    /// A pool whose released pairs rest with their sockets open while no more than
    /// `max_open` sockets, of leased and resting pairs, are open (this is the pool's share of
    /// the process's descriptors; 0 closes every released pair), and are handed out again
    /// after resting `rest` if nothing arrived on them meanwhile. Leases are not limited by
    /// `max_open`: a new lease beyond it closes the longest-resting pairs instead.
    pub fn with_resting(
        address: IpAddr,
        first: u16,
        last: u16,
        max_open: usize,
        rest: Duration,
    ) -> Result<Self, PortError> {
        let start = first.saturating_add(first % 2);
        if first > last || start >= last || start == 0 {
            return Err(PortError::EmptyRange { first, last });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                address,
                first: start,
                last,
                rest,
                max_open,
                reused: AtomicU64::new(0),
                state: Mutex::new(State {
                    cursor: start,
                    ..State::default()
                }),
            }),
        })
    }

    /// How many pairs the range holds.
    pub fn capacity(&self) -> usize {
        usize::from(self.inner.last - self.inner.first).div_ceil(2)
    }

    /// How many pairs are leased now.
    pub fn leased(&self) -> usize {
        let state = lock(&self.inner);
        state.held.len() - state.resting.len()
    }

    /// How many sockets (descriptors) the leased pairs hold now: two for a pair with its own
    /// RTCP socket, one for a multiplexed one.
    pub fn leased_sockets(&self) -> usize {
        lock(&self.inner).leased_sockets
    }

    /// How many released pairs rest with their sockets open now.
    pub fn resting(&self) -> usize {
        lock(&self.inner).resting.len()
    }

    /// How many allocations were served by a pair that had rested (since the pool was made).
    pub fn reused(&self) -> u64 {
        self.inner.reused.load(Ordering::Relaxed)
    }

    /// Allocates a pair: one that rested long enough in silence, else the next even port
    /// (after the last one handed out) that is neither held nor bound elsewhere, with its
    /// sockets bound and non-blocking: the RTP socket, and the RTCP socket unless `rtcp` is
    /// [`Rtcp::Muxed`].
    pub fn allocate(&self, rtcp: Rtcp) -> Result<RtpPorts, PortError> {
        let inner = &self.inner;
        let mut state = lock(inner);
        if let Some(rested) = take_rested(inner, &mut state, inner.rest, rtcp) {
            drop(state);
            return Ok(self.reuse(rested));
        }
        // The new pair's descriptors come out of the resting ones beyond the share.
        let sockets = match rtcp {
            Rtcp::OwnPort => 2,
            Rtcp::Muxed => 1,
        };
        while state.open_sockets() + sockets > inner.max_open {
            let Some(oldest) = state.pop_resting() else {
                break;
            };
            state.held.remove(&oldest.port);
        }
        let mut port = state.cursor;
        let mut out_of_descriptors = None;
        for _ in 0..self.capacity() {
            let candidate = port;
            port = if u32::from(candidate) + 3 > u32::from(inner.last) {
                inner.first
            } else {
                candidate + 2
            };
            if state.held.contains(&candidate) {
                continue;
            }
            let (rtp, rtcp) = match bind_pair(inner.address, candidate, rtcp) {
                Ok(pair) => pair,
                // Out of descriptors: every other port would fail the same way, so stop
                // rather than try the whole range for each call.
                Err(error) if is_descriptor_exhaustion(&error) => {
                    out_of_descriptors = Some(error);
                    break;
                }
                Err(_) => continue,
            };
            state.held.insert(candidate);
            state.cursor = port;
            state.leased_sockets += sockets;
            drop(state);
            return Ok(RtpPorts::new(
                inner,
                candidate,
                Arc::new(rtp),
                rtcp.map(Arc::new),
            ));
        }
        // Rather than refuse the call (no free port, or no descriptor for a new socket), a
        // pair that has not rested its full time will do, if it is silent.
        if let Some(rested) = take_rested(inner, &mut state, Duration::ZERO, rtcp) {
            drop(state);
            return Ok(self.reuse(rested));
        }
        Err(match out_of_descriptors {
            Some(error) => PortError::Descriptors(error),
            None => PortError::Exhausted {
                first: inner.first,
                last: inner.last,
            },
        })
    }

    /// Closes the pairs that have rested longer than `idle` (call it periodically, with
    /// [`MAX_REST`]); returns how many.
    pub fn close_resting_longer_than(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut state = lock(&self.inner);
        // Longest resting first: the pairs to close are a prefix of the queue.
        let stale = state
            .resting
            .iter()
            .take_while(|pair| now.saturating_duration_since(pair.since) > idle)
            .count();
        let closing: Vec<Resting> = state.resting.drain(..stale).collect();
        for pair in &closing {
            state.held.remove(&pair.port);
            state.resting_sockets -= pair.sockets();
        }
        drop(state);
        // The sockets close here, outside the lock.
        closing.len()
    }

    fn reuse(&self, rested: Resting) -> RtpPorts {
        self.inner.reused.fetch_add(1, Ordering::Relaxed);
        RtpPorts::new(&self.inner, rested.port, rested.rtp, rested.rtcp)
    }
}

impl RtpPorts {
    fn new(
        pool: &Arc<Inner>,
        port: u16,
        rtp: Arc<UdpSocket>,
        rtcp: Option<Arc<UdpSocket>>,
    ) -> Self {
        Self {
            rtp,
            rtcp,
            port,
            pool: Arc::clone(pool),
        }
    }

    /// The RTP socket (even port). Shared so a relay and a player can use it in turn.
    pub fn rtp(&self) -> &Arc<UdpSocket> {
        &self.rtp
    }

    /// The RTCP socket (RTP port + 1), unless RTCP is multiplexed on the RTP socket.
    pub fn rtcp(&self) -> Option<&Arc<UdpSocket>> {
        self.rtcp.as_ref()
    }

    /// Opens the RTCP socket of a lease made [`Rtcp::Muxed`] (an offer of multiplexing that
    /// the answer declined: RFC 5761 §5.1.1 then has RTCP on its usual port). The port was
    /// reserved with the lease, but a program outside the pool may have bound it meanwhile:
    /// then this fails and the leg goes without RTCP. Nothing happens if the socket is open.
    pub fn open_rtcp(&mut self) -> std::io::Result<()> {
        if self.rtcp.is_none() {
            let socket = bind_non_blocking(SocketAddr::new(self.pool.address, self.port + 1))?;
            self.rtcp = Some(Arc::new(socket));
            lock(&self.pool).leased_sockets += 1;
        }
        Ok(())
    }

    /// The RTP port (even); RTCP is this + 1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The RTP socket's local address, as put in SDP (with the advertised IP if different).
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::new(self.pool.address, self.port)
    }
}

impl Drop for RtpPorts {
    fn drop(&mut self) {
        // Only this handle holds the sockets (no weak references are ever made), so nobody
        // can take a new hold on them: they may rest. Else they close with their last holder.
        let unshared = |socket: &Arc<UdpSocket>| Arc::strong_count(socket) == 1;
        let sockets = 1 + usize::from(self.rtcp.is_some());
        // What the last call's peer sent until now is dropped, so that the rest starts
        // silent; a socket still flooded after that many is not kept.
        let may_rest = unshared(&self.rtp)
            && self.rtcp.as_ref().is_none_or(unshared)
            && with_sockets(&self.rtp, self.rtcp.as_deref(), |sockets| {
                discard_queued(sockets, RELEASE_DRAIN)
            }) < RELEASE_DRAIN;
        let mut state = lock(&self.pool);
        state.leased_sockets -= sockets;
        if may_rest && state.open_sockets() + sockets <= self.pool.max_open {
            state.resting_sockets += sockets;
            state.resting.push_back(Resting {
                port: self.port,
                rtp: Arc::clone(&self.rtp),
                rtcp: self.rtcp.clone(),
                since: Instant::now(),
            });
        } else {
            // Closed (once this handle, and any other holder, let go): the port is free.
            state.held.remove(&self.port);
        }
    }
}

/// Datagrams a released socket may hold that are dropped before it rests.
const RELEASE_DRAIN: usize = 256;

/// The pair that has rested longest, if it has rested `rest` and nothing arrived on it
/// meanwhile, with an RTCP socket exactly if `rtcp` asks for one; it counts as leased. Pairs
/// that heard something are closed (a peer of their last call may still be sending), as is
/// one whose RTCP port cannot be bound again; a few are looked at per call, so a burst of
/// them costs no call a long wait.
fn take_rested(inner: &Inner, state: &mut State, rest: Duration, rtcp: Rtcp) -> Option<Resting> {
    const LOOKS: usize = 4;
    let now = Instant::now();
    for _ in 0..LOOKS {
        let front = state.resting.front()?;
        if now.saturating_duration_since(front.since) < rest {
            return None;
        }
        let mut rested = state.pop_resting()?;
        // Every holder keeps the sockets non-blocking (nothing here or in the relay, player
        // or listener changes a socket's mode), so silence is all there is to check.
        if !with_sockets(&rested.rtp, rested.rtcp.as_deref(), is_silent) {
            state.held.remove(&rested.port);
            continue;
        }
        match (rtcp, &rested.rtcp) {
            // Closes the RTCP socket: a multiplexed lease does not need it.
            (Rtcp::Muxed, Some(_)) => rested.rtcp = None,
            (Rtcp::OwnPort, None) => {
                let address = SocketAddr::new(inner.address, rested.port + 1);
                match bind_non_blocking(address) {
                    Ok(socket) => rested.rtcp = Some(Arc::new(socket)),
                    Err(_) => {
                        state.held.remove(&rested.port);
                        continue;
                    }
                }
            }
            _ => {}
        }
        state.leased_sockets += rested.sockets();
        return Some(rested);
    }
    None
}

/// Calls `f` with a pair's open sockets, RTP first.
fn with_sockets<R>(
    rtp: &UdpSocket,
    rtcp: Option<&UdpSocket>,
    f: impl FnOnce(&[&UdpSocket]) -> R,
) -> R {
    match rtcp {
        Some(rtcp) => f(&[rtp, rtcp]),
        None => f(&[rtp]),
    }
}

/// Locks the pool state; a poisoned lock (a panic elsewhere while holding it, which nothing
/// here can cause) still holds a consistent set, so it is used as is.
fn lock(inner: &Inner) -> std::sync::MutexGuard<'_, State> {
    inner
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Binds the RTP socket at `port`, and the RTCP socket above it unless RTCP is multiplexed.
fn bind_pair(
    address: IpAddr,
    port: u16,
    rtcp: Rtcp,
) -> std::io::Result<(UdpSocket, Option<UdpSocket>)> {
    let rtp = bind_non_blocking(SocketAddr::new(address, port))?;
    let rtcp = match rtcp {
        Rtcp::OwnPort => Some(bind_non_blocking(SocketAddr::new(address, port + 1))?),
        Rtcp::Muxed => None,
    };
    Ok((rtp, rtcp))
}

/// A UDP socket created non-blocking (one system call fewer than switching it afterwards).
fn bind_non_blocking(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let socket = rustix::net::socket_with(
        family,
        SocketType::DGRAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&socket, &addr)?;
    Ok(UdpSocket::from(socket))
}

/// Whether nothing at all (no datagram, no queued error) waits on any of `sockets`.
fn is_silent(sockets: &[&UdpSocket]) -> bool {
    let mut silent = true;
    for_each_pending(sockets, |_| silent = false);
    silent
}

/// Reads and drops what is queued on `sockets`, at most `limit` datagrams each, without ever
/// waiting (whatever the sockets' mode); returns the most dropped from any one of them.
/// Errors queued by ICMP (a port unreachable after a send) are consumed like datagrams, but
/// not counted. One `poll` finds the sockets with anything queued, so quiet sockets (the
/// usual case) cost one system call between them rather than a read each.
pub(crate) fn discard_queued(sockets: &[&UdpSocket], limit: usize) -> usize {
    let mut most = 0;
    for_each_pending(sockets, |socket| most = most.max(drain(socket, limit)));
    most
}

/// Calls `pending` with each of `sockets` that has a datagram or an error queued, found by
/// one `poll` per four sockets. A socket `poll` cannot report on counts as pending.
fn for_each_pending(sockets: &[&UdpSocket], mut pending: impl FnMut(&UdpSocket)) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    const AT_ONCE: usize = 4;
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    for chunk in sockets.chunks(AT_ONCE) {
        let mut fds: [PollFd<'_>; AT_ONCE] =
            std::array::from_fn(|i| PollFd::new(chunk[i.min(chunk.len() - 1)], PollFlags::IN));
        let fds = &mut fds[..chunk.len()];
        let polled = rustix::event::poll(fds, Some(&now)).is_ok();
        for (socket, fd) in chunk.iter().zip(fds.iter()) {
            if !polled || !fd.revents().is_empty() {
                pending(socket);
            }
        }
    }
}

/// Reads and drops at most `limit` datagrams queued on `socket`; returns how many.
fn drain(socket: &UdpSocket, limit: usize) -> usize {
    let mut buffer = [0u8; 1];
    let mut discarded = 0;
    // A few more reads than datagrams: a queued error takes one.
    let mut reads = limit + 4;
    while discarded < limit && reads > 0 {
        reads -= 1;
        match rustix::net::recv(socket, &mut buffer, rustix::net::RecvFlags::DONTWAIT) {
            // A datagram longer than the buffer is truncated and dropped whole.
            Ok(_) => discarded += 1,
            Err(rustix::io::Errno::AGAIN) => break,
            Err(_) => {}
        }
    }
    discarded
}

/// EMFILE (the process's limit) or ENFILE (the system's): no socket at all can be opened.
fn is_descriptor_exhaustion(error: &std::io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    matches!(error.raw_os_error(), Some(EMFILE | ENFILE))
}
