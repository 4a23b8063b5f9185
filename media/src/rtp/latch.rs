//! Symmetric-RTP latching done safely: which source address a leg accepts packets from, and
//! where it sends them.
//!
//! Symmetric RTP (RFC 4961) lets a peer behind NAT be reached at the address its packets come
//! from rather than the one its SDP signalled. Latching on *any* packet is the "RTP bleed"
//! hole: whoever sends first, or last, captures the stream. The rule here:
//! - Without latching, only the signalled address is accepted; everything else is dropped.
//! - With latching, the first source seen within the window after start is latched, whether
//!   or not it is the signalled one, and from then on only that source is accepted and media
//!   is sent to it. Any other source is dropped forever; the latch never moves.
//! - If the window passes with no packet, the leg falls back to the signalled address only.
//!
//! Sans-IO: the caller passes `now`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long after start a latching leg accepts a first source from any address.
pub const DEFAULT_LATCH_WINDOW: Duration = Duration::from_secs(2);

/// The source-address policy of one leg.
#[derive(Debug, Clone)]
pub struct Latch {
    signalled: SocketAddr,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Only the signalled address is accepted.
    SignalledOnly,
    /// Latching: the first source before the deadline is latched.
    ExpectFirstSource { deadline: Instant },
    /// Latched onto this source for good.
    Latched(SocketAddr),
}

impl Latch {
    /// A leg that accepts only `signalled`.
    pub fn signalled_only(signalled: SocketAddr) -> Self {
        Self {
            signalled,
            state: State::SignalledOnly,
        }
    }

    /// A leg that latches onto the first source seen within `window` of `now`.
    pub fn latching(signalled: SocketAddr, now: Instant, window: Duration) -> Self {
        Self {
            signalled,
            state: State::ExpectFirstSource {
                deadline: now + window,
            },
        }
    }

    /// Whether a packet from `source` arriving at `now` is accepted; may latch.
    pub fn handle_source(&mut self, now: Instant, source: SocketAddr) -> bool {
        match self.state {
            State::SignalledOnly => source == self.signalled,
            State::Latched(latched) => source == latched,
            State::ExpectFirstSource { deadline } if now <= deadline => {
                self.state = State::Latched(source);
                true
            }
            State::ExpectFirstSource { .. } => {
                // The window closed with nobody latched: from now on the signalled address
                // is the only acceptable source.
                self.state = State::SignalledOnly;
                source == self.signalled
            }
        }
    }

    /// Where media for this leg is sent: the latched source, else the signalled address.
    pub fn destination(&self) -> SocketAddr {
        match self.state {
            State::Latched(latched) => latched,
            _ => self.signalled,
        }
    }

    /// The latched source, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        match self.state {
            State::Latched(latched) => Some(latched),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn without_latching_only_the_signalled_address_is_accepted() {
        let start = Instant::now();
        let mut latch = Latch::signalled_only(address(1000));
        assert!(!latch.handle_source(start, address(2000)));
        assert!(latch.handle_source(start, address(1000)));
        assert_eq!(latch.destination(), address(1000));
    }

    #[test]
    fn the_first_source_in_the_window_is_latched_and_nobody_else_ever() {
        let start = Instant::now();
        let mut latch = Latch::latching(address(1000), start, DEFAULT_LATCH_WINDOW);
        assert!(latch.handle_source(start + Duration::from_millis(100), address(3000)));
        assert_eq!(latch.destination(), address(3000));
        // Neither a third party nor the signalled address can take the stream over.
        assert!(!latch.handle_source(start + Duration::from_millis(200), address(4000)));
        assert!(!latch.handle_source(start + Duration::from_millis(300), address(1000)));
        assert!(latch.handle_source(start + Duration::from_secs(60), address(3000)));
        assert_eq!(latch.latched(), Some(address(3000)));
    }

    #[test]
    fn after_the_window_only_the_signalled_address_is_accepted() {
        let start = Instant::now();
        let mut latch = Latch::latching(address(1000), start, DEFAULT_LATCH_WINDOW);
        assert!(!latch.handle_source(start + Duration::from_secs(3), address(3000)));
        assert!(latch.handle_source(start + Duration::from_secs(4), address(1000)));
        assert_eq!(latch.latched(), None);
        assert_eq!(latch.destination(), address(1000));
    }
}
