//! Symmetric-RTP latching done safely: which source address a leg accepts packets from, and
//! where it sends them.
//!
//! Symmetric RTP (RFC 4961) lets a peer behind NAT be reached at the address its packets come
//! from rather than the one its SDP signalled. Latching on *any* packet is the "RTP bleed"
//! hole: whoever sends first, or last, captures the stream. The rule here:
//! - Without latching, only the signalled address is accepted; everything else is dropped.
//! - With latching, the first source seen within the window after start is latched, whether
//!   or not it is the signalled one, and from then on only that source is accepted and media
//!   is sent to it. Any other source is dropped; only the leg's own signalling (below) opens
//!   the latch again.
//! - If the window passes with no packet, the leg falls back to the signalled address only.
//! - When the leg's new offer moves its media (RFC 3264 §8, [`Latch::renew`]), a latching leg
//!   gets a new window: the source it had latched stays accepted (and keeps being sent to)
//!   until the first *other* source in the window takes its place for good; with none, the
//!   old latch stands. A leg without latching simply accepts the new address instead of the
//!   old one. A third party can therefore take a stream over only in a window the leg's own
//!   signalling opened, as at the start, never by sending last.
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
    /// How long a first source is awaited; `None` for a leg that does not latch.
    window: Option<Duration>,
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
    /// Latched onto `previous`, but the leg's media moved: the first other source before the
    /// deadline replaces it; after the deadline `previous` stands.
    ExpectNewSource {
        previous: SocketAddr,
        deadline: Instant,
    },
}

impl Latch {
    /// A leg that accepts only `signalled`.
    pub fn signalled_only(signalled: SocketAddr) -> Self {
        Self {
            signalled,
            window: None,
            state: State::SignalledOnly,
        }
    }

    /// A leg that latches onto the first source seen within `window` of `now`.
    pub fn latching(signalled: SocketAddr, now: Instant, window: Duration) -> Self {
        Self {
            signalled,
            window: Some(window),
            state: State::ExpectFirstSource {
                deadline: now + window,
            },
        }
    }

    /// The leg's new offer signals `signalled` (RFC 3264 §8: "modifying the session"). A leg
    /// without latching accepts only the new address from now on. A latching leg opens a new
    /// window from `now`: a source it had latched stays accepted, and stays where media goes,
    /// until the first other source in the window replaces it; one that had latched nothing
    /// latches the first source in the window, as at the start.
    pub fn renew(&mut self, signalled: SocketAddr, now: Instant) {
        self.signalled = signalled;
        let Some(window) = self.window else {
            return;
        };
        let deadline = now + window;
        self.state = match self.state {
            State::Latched(previous) | State::ExpectNewSource { previous, .. } => {
                State::ExpectNewSource { previous, deadline }
            }
            State::SignalledOnly | State::ExpectFirstSource { .. } => {
                State::ExpectFirstSource { deadline }
            }
        };
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
            State::ExpectNewSource { previous, deadline } if now <= deadline => {
                // The old source may go on sending until the new one starts (RFC 3264 §8.3.1
                // asks the mover to keep listening on the old address meanwhile); once another
                // source shows up, the old one is refused like any stranger.
                if source != previous {
                    self.state = State::Latched(source);
                }
                true
            }
            State::ExpectNewSource { previous, .. } => {
                self.state = State::Latched(previous);
                source == previous
            }
        }
    }

    /// Where media for this leg is sent: the latched source, else the signalled address.
    pub fn destination(&self) -> SocketAddr {
        self.latched().unwrap_or(self.signalled)
    }

    /// The latched source, if any (while a new one is awaited, the one latched before).
    pub fn latched(&self) -> Option<SocketAddr> {
        match self.state {
            State::Latched(latched)
            | State::ExpectNewSource {
                previous: latched, ..
            } => Some(latched),
            State::SignalledOnly | State::ExpectFirstSource { .. } => None,
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

    #[test]
    fn a_renewed_leg_without_latching_accepts_only_its_new_address() {
        let start = Instant::now();
        let mut latch = Latch::signalled_only(address(1000));
        latch.renew(address(2000), start);
        assert!(!latch.handle_source(start, address(1000)));
        assert!(!latch.handle_source(start, address(3000)));
        assert!(latch.handle_source(start, address(2000)));
        assert_eq!(latch.destination(), address(2000));
        assert_eq!(latch.latched(), None);
    }

    #[test]
    fn a_renewed_latch_keeps_the_old_source_until_a_new_one_takes_its_place_for_good() {
        let start = Instant::now();
        let mut latch = Latch::latching(address(1000), start, DEFAULT_LATCH_WINDOW);
        assert!(latch.handle_source(start, address(3000)));
        let moved = start + Duration::from_secs(60);
        latch.renew(address(2000), moved);
        // Until the new source shows up, the old one is heard and sent to.
        assert!(latch.handle_source(moved, address(3000)));
        assert_eq!(latch.destination(), address(3000));
        assert!(latch.handle_source(moved + Duration::from_millis(500), address(4000)));
        assert_eq!(latch.destination(), address(4000));
        assert_eq!(latch.latched(), Some(address(4000)));
        // No RTP bleed: neither the old source nor anybody else gets back in.
        let later = moved + Duration::from_millis(600);
        assert!(!latch.handle_source(later, address(3000)));
        assert!(!latch.handle_source(later, address(2000)));
        assert!(latch.handle_source(later, address(4000)));
    }

    #[test]
    fn a_renewed_latch_with_no_new_source_in_the_window_keeps_the_old_one() {
        let start = Instant::now();
        let mut latch = Latch::latching(address(1000), start, DEFAULT_LATCH_WINDOW);
        assert!(latch.handle_source(start, address(3000)));
        latch.renew(address(2000), start + Duration::from_secs(10));
        let after = start + Duration::from_secs(13);
        assert!(!latch.handle_source(after, address(4000)));
        assert!(latch.handle_source(after, address(3000)));
        assert_eq!(latch.latched(), Some(address(3000)));
    }

    #[test]
    fn a_latch_that_fell_back_to_the_signalled_address_gets_a_new_first_source_window() {
        let start = Instant::now();
        let mut latch = Latch::latching(address(1000), start, DEFAULT_LATCH_WINDOW);
        assert!(!latch.handle_source(start + Duration::from_secs(3), address(3000)));
        let moved = start + Duration::from_secs(10);
        latch.renew(address(2000), moved);
        assert_eq!(latch.destination(), address(2000));
        assert!(latch.handle_source(moved, address(5000)));
        assert_eq!(latch.latched(), Some(address(5000)));
        assert!(!latch.handle_source(moved, address(2000)));
    }
}
