//! The RTP port pool: hands out an even RTP port and the RTCP port above it (RFC 3550 §11:
//! "RTP SHOULD use an even destination port number and the corresponding RTCP stream SHOULD
//! use the next higher (odd) destination port number") from a configured range, with both UDP
//! sockets already bound, so a port is never promised and then found taken.
//!
//! Ports in use by anybody else (another process, or a socket of ours still draining) are
//! skipped: binding is the test. A lease returns its pair to the pool when dropped; the search
//! starts after the last port handed out, so a just-released port is not reused at once (late
//! packets of the previous call land on nobody).
//!
//! The sockets are plain non-blocking std sockets, registered with no reactor: whoever reads
//! one registers it for as long as it reads (the DTMF listener with the runtime, a relay with
//! its relay thread), so media nobody waits for wakes nobody.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

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
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    leased: HashSet<u16>,
    /// The even port the next search starts at.
    cursor: u16,
}

/// An allocated pair: both sockets bound, released to the pool on drop.
#[derive(Debug)]
pub struct RtpPorts {
    /// The RTP socket (even port). Shared so a relay and a player can use it in turn.
    pub rtp: Arc<UdpSocket>,
    /// The RTCP socket (RTP port + 1).
    pub rtcp: Arc<UdpSocket>,
    lease: Lease,
}

/// Returns a port pair to its pool when dropped.
#[derive(Debug)]
struct Lease {
    pool: Arc<Inner>,
    port: u16,
}

impl PortPool {
    /// A pool over the ports `first..=last` on `address`. The first even port at or above
    /// `first` whose successor is at most `last` is the first pair.
    pub fn new(address: IpAddr, first: u16, last: u16) -> Result<Self, PortError> {
        let start = first.saturating_add(first % 2);
        if first > last || start >= last || start == 0 {
            return Err(PortError::EmptyRange { first, last });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                address,
                first: start,
                last,
                state: Mutex::new(State {
                    leased: HashSet::new(),
                    cursor: start,
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
        self.lock().leased.len()
    }

    /// Allocates a pair: the next even port (after the last one handed out) that is neither
    /// leased nor bound elsewhere, with both sockets bound and non-blocking.
    pub fn allocate(&self) -> Result<RtpPorts, PortError> {
        let inner = &self.inner;
        let pairs = self.capacity();
        let mut state = self.lock();
        let mut port = state.cursor;
        for _ in 0..pairs {
            let candidate = port;
            port = if u32::from(candidate) + 3 > u32::from(inner.last) {
                inner.first
            } else {
                candidate + 2
            };
            if state.leased.contains(&candidate) {
                continue;
            }
            let (rtp, rtcp) = match bind_pair(inner.address, candidate) {
                Ok(pair) => pair,
                // Out of descriptors: every other port would fail the same way, so stop
                // rather than try the whole range for each call.
                Err(error) if is_descriptor_exhaustion(&error) => {
                    return Err(PortError::Descriptors(error));
                }
                Err(_) => continue,
            };
            state.leased.insert(candidate);
            state.cursor = port;
            drop(state);
            return Ok(RtpPorts {
                rtp: Arc::new(rtp),
                rtcp: Arc::new(rtcp),
                lease: Lease {
                    pool: Arc::clone(inner),
                    port: candidate,
                },
            });
        }
        Err(PortError::Exhausted {
            first: inner.first,
            last: inner.last,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner)
    }
}

impl RtpPorts {
    /// The RTP port (even); RTCP is this + 1.
    pub fn port(&self) -> u16 {
        self.lease.port
    }

    /// The RTP socket's local address, as put in SDP (with the advertised IP if different).
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::new(self.lease.pool.address, self.lease.port)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        lock(&self.pool).leased.remove(&self.port);
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

fn bind_pair(address: IpAddr, port: u16) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let rtp = UdpSocket::bind(SocketAddr::new(address, port))?;
    let rtcp = UdpSocket::bind(SocketAddr::new(address, port + 1))?;
    rtp.set_nonblocking(true)?;
    rtcp.set_nonblocking(true)?;
    Ok((rtp, rtcp))
}

/// Reads and drops what is queued on a non-blocking socket, at most `limit` datagrams; returns
/// how many were dropped. Errors queued by ICMP (a port unreachable after a send) are consumed
/// like datagrams, but not counted.
pub(crate) fn discard_queued(socket: &UdpSocket, limit: usize) -> usize {
    let mut buffer = [0u8; 1];
    let mut discarded = 0;
    for _ in 0..limit {
        match socket.recv_from(&mut buffer) {
            // A datagram longer than the buffer is truncated and dropped whole.
            Ok(_) => discarded += 1,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
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
