//! RFC 3261 §17 transactions, with RFC 6026's `Accepted` state, as sans-IO state machines.
//!
//! One file per transaction kind: [`ClientInvite`] (§17.1.1), [`ClientNonInvite`] (§17.1.2),
//! [`ServerInvite`] (§17.2.1) and [`ServerNonInvite`] (§17.2.2); [`Key`] (§17.1.3, §17.2.3)
//! says which transaction a message belongs to. Each machine is fed with `handle_*(…, now)` and
//! drained with `poll_transmit()` (wire bytes for the transaction's peer), `poll_event()` (what
//! the TU must know) and `poll_timeout()` (when to call `handle_timeout`). Nothing here reads the
//! clock, does I/O or spawns. The owner drops a machine after draining it once it reports
//! [`Event::Terminated`].
//!
//! # Timers
//!
//! | Timer | Machine            | Value                                   | Meaning                                   |
//! |-------|--------------------|-----------------------------------------|-------------------------------------------|
//! | A     | ClientInvite       | T1, doubling without cap; UDP only      | INVITE retransmission                     |
//! | B     | ClientInvite       | 64·T1                                   | no response at all to the INVITE          |
//! | D     | ClientInvite       | max(32 s, 64·T1) UDP, 0 reliable        | absorb retransmitted 3xx–6xx              |
//! | M     | ClientInvite       | 64·T1 (RFC 6026)                        | pass further 2xx (retransmits, forks) up  |
//! | E     | ClientNonInvite    | T1 doubling to T2 (T2 after a 1xx); UDP | request retransmission                    |
//! | F     | ClientNonInvite    | 64·T1                                   | no final response                         |
//! | K     | ClientNonInvite    | T4 UDP, 0 reliable                      | absorb retransmitted finals               |
//! | G     | ServerInvite       | T1 doubling, capped at T2; UDP only     | 3xx–6xx retransmission                    |
//! | H     | ServerInvite       | 64·T1                                   | no ACK for the 3xx–6xx                    |
//! | I     | ServerInvite       | T4 UDP, 0 reliable                      | absorb retransmitted ACKs                 |
//! | L     | ServerInvite       | 64·T1 (RFC 6026)                        | absorb retransmitted INVITEs after a 2xx  |
//! | 2xx   | ServerInvite       | T1 doubling, capped at T2; UDP only     | 2xx retransmission (RFC 3261 §13.3.1.4)   |
//! | J     | ServerNonInvite    | 64·T1 UDP, 0 reliable                   | absorb retransmitted requests             |
//!
//! # Deliberate deviations and choices
//!
//! - [`ServerInvite`] sends `100 Trying` as soon as it is created instead of waiting 200 ms for
//!   the TU (§17.2.1 allows either).
//! - [`ServerInvite`] retransmits its 2xx over UDP until [`ServerInvite::handle_ack`] or Timer L.
//!   RFC 3261 §13.3.1.4 gives that job to the UAS core; keeping it here gives the endpoint one
//!   place for every retransmission. It emits [`Event::NoAck`] when Timer L fires without an ACK
//!   (the UAS core's "no ACK within 64·T1" of §13.3.1.4).
//! - Timer D is max(32 s, 64·T1): §17.1.1.2 asks for "at least 32 seconds", and a server with a
//!   larger T1 keeps retransmitting its final response for 64·T1 (Timer H).
//! - A timer re-armed by a retransmission counts from the `now` it fired at, so an owner that
//!   calls `handle_timeout` late does not cause a burst of catch-up retransmissions.
//! - Retransmissions are never sent over reliable transports; Timers B, F, H, L and M still run.
//! - At most [`MAX_QUEUED`] transmissions and events wait to be polled; beyond that new items are
//!   dropped, so a peer flooding retransmissions cannot grow memory when the owner stalls.
//! - The RFC 2543 fallback key leaves out the To tag: the ACK for a non-2xx carries the tag the
//!   server chose, which the INVITE did not, and §17.2.3 matches them by the remaining fields.
//!   A side effect: an RFC 2543 peer's ACK for a 2xx also matches the INVITE server transaction;
//!   [`ServerInvite::handle_request`] then counts it as the ACK (like `handle_ack`), and the
//!   owner still has to pass it to the dialog.

mod client_invite;
mod client_non_invite;
mod key;
mod server_invite;
mod server_non_invite;

#[cfg(test)]
mod tests;

pub use client_invite::ClientInvite;
pub use client_non_invite::ClientNonInvite;
pub use key::Key;
pub use server_invite::ServerInvite;
pub use server_non_invite::ServerNonInvite;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::message::Response;

/// RFC 3261 timer base values (§17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// Maximum duration a message remains in the network (default 5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64·T1: Timers B, F, H, J (UDP), L and M (RFC 3261 Table 4, RFC 6026 §8.4).
    pub fn transaction_timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The next retransmission interval after `interval` when doubling is capped at T2
    /// (Timers E and G, §17.1.2.2 and §17.2.1).
    fn doubled_up_to_t2(&self, interval: Duration) -> Duration {
        interval.saturating_mul(2).min(self.t2)
    }

    /// Timer D: "at least 32 seconds" on unreliable transports (§17.1.1.2), zero on reliable.
    fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.transaction_timeout())
        }
    }

    /// Timers I and K: T4 on unreliable transports, zero on reliable (§17.1.2.2, §17.2.1).
    fn t4_unless_reliable(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }
}

/// What a transaction tells its owner (the transaction user). The response is boxed where it
/// is received: the endpoint hands it on boxed, so no allocation is added, and an event queue
/// slot is 16 bytes rather than 600.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A response for the TU (client transactions): every 1xx, the final response; and in
    /// ClientInvite's Accepted state, every further 2xx (retransmissions/forks) for the TU/dialog.
    Response(Box<Response>),
    /// Timer B/F (client) fired: no final response in time; the TU should act as if a 408 arrived.
    Timeout,
    /// ServerInvite: Timer H fired (no ACK for a non-2xx final) or Timer L fired in Accepted state
    /// without the 2xx ever being ACKed.
    NoAck,
    /// The transport reported failure (§17.1.4 / §17.2.4).
    TransportError,
    /// The transaction reached Terminated; the owner drops it (after draining `poll_transmit`,
    /// which may still hold a last message such as the ACK sent on a reliable transport).
    Terminated,
}

/// Bound on transmissions and on events waiting to be polled, per transaction.
pub const MAX_QUEUED: usize = 64;

/// A FIFO that drops new items once [`MAX_QUEUED`] are waiting. The owner drains it after
/// every input, so it mostly holds one item: that one is kept inline, and only a second one
/// waiting allocates (a message sent cost an allocation here, for a queue of one).
#[derive(Debug)]
struct Queue<T> {
    /// The oldest item, when it is the only one or was queued while the queue was empty.
    first: Option<T>,
    /// Items queued behind `first`.
    rest: VecDeque<T>,
}

impl<T> Queue<T> {
    fn new() -> Self {
        Queue {
            first: None,
            rest: VecDeque::new(),
        }
    }

    fn push(&mut self, item: T) {
        let queued = usize::from(self.first.is_some()) + self.rest.len();
        if queued == 0 {
            self.first = Some(item);
        } else if queued < MAX_QUEUED {
            // The owner is expected to drain after every call; if it does not, what is dropped
            // is at worst a retransmission or a duplicate event, never unbounded memory.
            self.rest.push_back(item);
        }
    }

    fn pop(&mut self) -> Option<T> {
        if let Some(item) = self.first.take() {
            return Some(item);
        }
        let item = self.rest.pop_front();
        if item.is_none() && self.rest.capacity() > 0 {
            // Drained: the buffer goes back, so a transaction lingering for its timers holds no
            // queue memory.
            self.rest = VecDeque::new();
        }
        item
    }
}

/// The timers one machine uses, named by an enum that indexes a [`TimerTable`].
trait TimerName: Copy {
    /// Position in the table.
    fn index(self) -> usize;
}

/// A small table of deadlines, one slot per timer (quinn style).
#[derive(Debug)]
struct TimerTable<T, const N: usize> {
    deadlines: [Option<Instant>; N],
    names: PhantomData<T>,
}

impl<T: TimerName, const N: usize> TimerTable<T, N> {
    fn new() -> Self {
        TimerTable {
            deadlines: [None; N],
            names: PhantomData,
        }
    }

    fn set(&mut self, timer: T, deadline: Instant) {
        self.deadlines[timer.index()] = Some(deadline);
    }

    fn stop(&mut self, timer: T) {
        self.deadlines[timer.index()] = None;
    }

    fn stop_all(&mut self) {
        self.deadlines = [None; N];
    }

    /// The earliest armed deadline.
    fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Whether `timer` is due at `now`; if so it is disarmed (the caller re-arms it if needed).
    fn expire(&mut self, timer: T, now: Instant) -> bool {
        let slot = &mut self.deadlines[timer.index()];
        match *slot {
            Some(deadline) if deadline <= now => {
                *slot = None;
                true
            }
            _ => false,
        }
    }
}
