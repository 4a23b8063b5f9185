//! The INVITE client transaction (RFC 3261 §17.1.1, with RFC 6026 §7.2's Accepted state).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Event, Queue, TimerName, TimerTable, Timers};
use crate::message::{CSeq, Headers, Method, Request, Response};

/// Sends an INVITE, retransmits it over UDP, acknowledges 3xx–6xx responses and passes every
/// response (and, after a 2xx, every further 2xx) to the TU.
#[derive(Debug)]
pub struct ClientInvite {
    /// The INVITE, until its final response (the ACK for a 3xx–6xx is built from it): a
    /// transaction lingering for Timer D or M keeps only that ACK.
    request: Option<Arc<Request>>,
    /// The INVITE on the wire, kept for retransmissions until a response stops them.
    request_bytes: Bytes,
    /// The ACK for a 3xx–6xx, built once and re-sent for each retransmitted final response.
    ack: Option<Bytes>,
    reliable: bool,
    timers: Timers,
    state: State,
    table: TimerTable<Timer, 4>,
    /// Interval of the next Timer A.
    retransmit_interval: Duration,
    transmits: Queue<Bytes>,
    events: Queue<Event>,
}

/// The states of RFC 3261 Figure 5 as updated by RFC 6026 §7.2. A transport error in any state
/// informs the TU and ends in Terminated (§17.1.4).
///
/// ```text
///                                |INVITE from TU
///              Timer A fires     |INVITE sent             Timer B fires
///              Reset A,          V                        or Transport Err.
///              INVITE sent +-----------+                  inform TU
///                +---------|           |----------------------------+
///                |         |  Calling  |                            |
///                +-------->|           |-----------+                |
///                          +-----------+ 2xx       |                |
///                             |  |       2xx to TU |                |
///                             |  |1xx              |                |
///     300-699 +---------------+  |1xx to TU        |                |
///    ACK sent |                  |                 |                |
/// resp. to TU |  1xx             V                 |                |
///             |  1xx to TU +-----------+           |                |
///             |  +---------|           |           |                |
///             |  |         |Proceeding |---------->|                |
///             |  +-------->|           | 2xx       |                |
///             |            +-----------+ 2xx to TU |                |
///             |       300-699    |                 |                |
///             |       ACK sent,  |                 V                |
///             |       resp. to TU|           +-----------+          |
///             |                  |           |           |---+      |
///             |                  V           | Accepted  |   | 2xx  |
///             |            +-----------+     |           |<--+ 2xx  |
///             |            |           |     +-----------+   to TU  |
///             |            | Completed |           |                |
///             |            |           |           | Timer M        |
///             |            +-----------+           | fires          |
///             |              ^   |                 | -              |
///             |              |   | Timer D fires   |                |
///             +--------------+   | -               |                |
///                 300-699        |                 |                |
///                 ACK sent       V                 V                |
///                          +-----------------------------+          |
///                          |         Terminated          |<---------+
///                          +-----------------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The INVITE is out; no response yet (Timers A and B run).
    Calling,
    /// A provisional arrived; waiting for the final response with no timer (the TU decides when
    /// to give up, e.g. by sending CANCEL).
    Proceeding,
    /// A 3xx–6xx arrived and was ACKed; absorbing its retransmissions until Timer D.
    Completed,
    /// RFC 6026: a 2xx arrived; passing further 2xx to the TU until Timer M.
    Accepted,
    /// Done; the owner drops the transaction.
    Terminated,
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    A,
    B,
    D,
    M,
}

impl TimerName for Timer {
    fn index(self) -> usize {
        self as usize
    }
}

impl ClientInvite {
    /// Starts the transaction: queues the INVITE and arms Timer B (and Timer A over UDP).
    pub fn new(
        request: impl Into<Arc<Request>>,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> Self {
        let request = request.into();
        let request_bytes = request.to_wire();
        let mut transaction = ClientInvite {
            request: Some(request),
            request_bytes: request_bytes.clone(),
            ack: None,
            reliable,
            timers,
            state: State::Calling,
            table: TimerTable::new(),
            retransmit_interval: timers.t1,
            transmits: Queue::new(),
            events: Queue::new(),
        };
        transaction.transmits.push(request_bytes);
        // RFC 3261 §17.1.1.2: Timer A (T1) only for unreliable transports; Timer B (64*T1)
        // always.
        if !reliable {
            transaction.table.set(Timer::A, now + timers.t1);
        }
        transaction
            .table
            .set(Timer::B, now + timers.transaction_timeout());
        transaction
    }

    /// The INVITE this transaction sends; `None` once its final response arrived.
    pub fn request(&self) -> Option<&Request> {
        self.request.as_deref()
    }

    /// Feeds a response that matched this transaction ([`super::Key::client_for_response`]).
    pub fn handle_response(&mut self, response: Response, now: Instant) {
        if response.headers.cseq.method != Method::Invite {
            return;
        }
        let status = response.status;
        match self.state {
            State::Calling | State::Proceeding => {
                if status.is_provisional() {
                    // RFC 3261 §17.1.1.2: in Proceeding the request is no longer retransmitted,
                    // and Timer B only guards Calling.
                    self.table.stop(Timer::A);
                    self.table.stop(Timer::B);
                    self.state = State::Proceeding;
                    self.events.push(Event::Response(Box::new(response)));
                } else if status.is_success() {
                    // RFC 6026 §7.2: a 2xx moves to Accepted, where retransmitted 2xx and 2xx
                    // from other forks reach the TU until Timer M.
                    self.table.stop_all();
                    self.table
                        .set(Timer::M, now + self.timers.transaction_timeout());
                    self.state = State::Accepted;
                    self.release_request();
                    self.events.push(Event::Response(Box::new(response)));
                } else {
                    // RFC 3261 §17.1.1.2: a 3xx-6xx is ACKed by the transaction, passed up, and
                    // the transaction waits Timer D for retransmissions of it.
                    self.table.stop_all();
                    if let Some(ack) = self.ack_for(&response) {
                        let ack = ack.to_wire();
                        self.transmits.push(ack.clone());
                        self.ack = Some(ack);
                    }
                    self.state = State::Completed;
                    self.release_request();
                    self.events.push(Event::Response(Box::new(response)));
                    let linger = self.timers.timer_d(self.reliable);
                    if linger.is_zero() {
                        self.terminate();
                    } else {
                        self.table.set(Timer::D, now + linger);
                    }
                }
            }
            State::Completed => {
                // RFC 3261 §17.1.1.2: each retransmission of the final response is ACKed again
                // and not passed up.
                if status.is_final() && !status.is_success() {
                    if let Some(ack) = &self.ack {
                        self.transmits.push(ack.clone());
                    }
                }
            }
            State::Accepted => {
                // RFC 6026 §7.2: every 2xx goes to the TU, which ACKs it (§13.2.2.4).
                if status.is_success() {
                    self.events.push(Event::Response(Box::new(response)));
                }
            }
            State::Terminated => {}
        }
    }

    /// Wire bytes to send to the transaction's peer: the INVITE, its retransmissions and ACKs.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// The earliest armed timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.next()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Timers that end the transaction go first, so a retransmission due at the same instant
        // is not sent by a transaction that has just given up.
        if self.table.expire(Timer::B, now) {
            // RFC 3261 §17.1.1.2: Timer B fired in Calling; the TU treats it as a 408.
            self.events.push(Event::Timeout);
            self.terminate();
        }
        if self.table.expire(Timer::D, now) || self.table.expire(Timer::M, now) {
            self.terminate();
        }
        if self.table.expire(Timer::A, now) {
            // RFC 3261 §17.1.1.2: retransmit and double the interval, without a cap.
            self.transmits.push(self.request_bytes.clone());
            self.retransmit_interval = self.retransmit_interval.saturating_mul(2);
            self.table.set(Timer::A, now + self.retransmit_interval);
        }
    }

    /// The transport failed to send this transaction's message (§17.1.4).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != State::Terminated {
            self.events.push(Event::TransportError);
            self.terminate();
        }
    }

    /// Whether the transaction reached Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    fn terminate(&mut self) {
        self.table.stop_all();
        self.state = State::Terminated;
        self.events.push(Event::Terminated);
    }

    /// After the final response nothing re-sends the INVITE or builds from it.
    fn release_request(&mut self) {
        self.request = None;
        self.request_bytes = Bytes::new();
    }

    /// The ACK for a 3xx-6xx response, built as RFC 3261 §17.1.1.3 says (from the INVITE,
    /// which is kept until the first final response).
    fn ack_for(&self, response: &Response) -> Option<Request> {
        let request = self.request.as_deref()?;
        let invite = &request.headers;
        // Same Call-ID, From and CSeq number; To from the response (it carries the server's
        // tag); CSeq method ACK.
        let mut headers = Headers::new(
            invite.from.clone(),
            response.headers.to.clone(),
            invite.call_id.clone(),
            CSeq {
                seq: invite.cseq.seq,
                method: Method::Ack,
            },
        );
        // "The ACK MUST contain a single Via header field, and this MUST be equal to the top Via
        // header field of the original request."
        headers.via = invite.via.first().cloned().into_iter().collect();
        // "If the INVITE request whose response is being acknowledged had Route header fields,
        // those header fields MUST appear in the ACK."
        headers.route = invite.route.clone();
        // §8.1.1.6: every request carries Max-Forwards; the INVITE's value is the one the path
        // already accepted.
        headers.max_forwards = Some(invite.max_forwards.unwrap_or(70));
        Some(Request {
            method: Method::Ack,
            uri: request.uri.clone(),
            headers,
            body: Bytes::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse, Message, StatusCode, Tag};

    fn invite() -> Request {
        let text = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
            Via: SIP/2.0/UDP proxy.atlanta.example.com;branch=z9hG4bKproxy\r\n\
            Route: <sip:p1.example.com;lr>\r\n\
            Route: <sip:p2.example.com;lr>\r\n\
            Max-Forwards: 69\r\n\
            From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
            To: Bob <sip:bob@biloxi.example.com>\r\n\
            Call-ID: a84b4c76e66710\r\n\
            CSeq: 314159 INVITE\r\n\
            Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
            Content-Type: application/sdp\r\n\r\nv=0\r\n";
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn ack_for_non_2xx_follows_17_1_1_3() {
        let start = Instant::now();
        let request = invite();
        let mut transaction = ClientInvite::new(request.clone(), false, Timers::default(), start);
        assert_eq!(transaction.poll_transmit(), Some(request.to_wire()));
        let busy = request.response(StatusCode::BUSY_HERE, Some(&Tag::new("srv")));
        transaction.handle_response(busy.clone(), start);

        let sent = transaction.poll_transmit().expect("the ACK is queued");
        let ack = match parse(&sent) {
            Ok(Message::Request(ack)) => ack,
            other => panic!("expected an ACK, got {other:?}"),
        };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, request.uri);
        assert_eq!(ack.headers.call_id, request.headers.call_id);
        assert_eq!(ack.headers.from, request.headers.from);
        assert_eq!(ack.headers.to, busy.headers.to);
        assert_eq!(ack.headers.to.tag(), Some(Tag::new("srv")));
        assert_eq!(ack.headers.cseq.seq, 314159);
        assert_eq!(ack.headers.cseq.method, Method::Ack);
        assert_eq!(ack.headers.via, vec![request.headers.via[0].clone()]);
        assert_eq!(ack.headers.route, request.headers.route);
        assert_eq!(ack.headers.max_forwards, Some(69));
        assert!(ack.body.is_empty());
        assert_eq!(ack.headers.get("Content-Type"), None);

        assert_eq!(
            transaction.poll_event(),
            Some(Event::Response(Box::new(busy)))
        );
        assert_eq!(transaction.poll_event(), None);
        assert!(!transaction.is_terminated());
    }

    #[test]
    fn reliable_non_2xx_terminates_at_once_after_the_ack() {
        let start = Instant::now();
        let request = invite();
        let mut transaction = ClientInvite::new(request.clone(), true, Timers::default(), start);
        let _ = transaction.poll_transmit();
        transaction.handle_response(request.response(StatusCode::DECLINE, None), start);
        assert!(transaction.is_terminated());
        assert!(
            transaction.poll_transmit().is_some(),
            "the ACK is still queued"
        );
        assert!(matches!(transaction.poll_event(), Some(Event::Response(_))));
        assert_eq!(transaction.poll_event(), Some(Event::Terminated));
        assert_eq!(transaction.poll_timeout(), None);
    }

    #[test]
    fn provisional_stops_timer_b() {
        let start = Instant::now();
        let request = invite();
        let mut transaction = ClientInvite::new(request.clone(), false, Timers::default(), start);
        transaction.handle_response(
            request.response(StatusCode::RINGING, None),
            start + Duration::from_secs(1),
        );
        assert_eq!(transaction.poll_timeout(), None);
        transaction.handle_timeout(start + Duration::from_secs(600));
        assert!(!transaction.is_terminated());
    }

    #[test]
    fn transport_error_terminates() {
        let start = Instant::now();
        let mut transaction = ClientInvite::new(invite(), false, Timers::default(), start);
        transaction.handle_transport_error(start);
        assert_eq!(transaction.poll_event(), Some(Event::TransportError));
        assert_eq!(transaction.poll_event(), Some(Event::Terminated));
        assert!(transaction.is_terminated());
        transaction.handle_transport_error(start);
        assert_eq!(transaction.poll_event(), None);
    }
}
