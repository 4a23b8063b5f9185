//! The INVITE server transaction (RFC 3261 §17.2.1, with RFC 6026 §7.1's Accepted state).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Event, Queue, TimerName, TimerTable, Timers};
use crate::message::{Method, Request, Response, StatusCode};

/// Answers a received INVITE: sends `100 Trying` at once, then the TU's responses; absorbs
/// retransmitted INVITEs, retransmits final responses over UDP and waits for their ACK.
#[derive(Debug)]
pub struct ServerInvite {
    /// The INVITE, until the final response: a transaction lingering for Timer L or I keeps
    /// only what it re-sends.
    request: Option<Arc<Request>>,
    /// The INVITE's CSeq number, which the ACK for a 2xx must carry.
    cseq: u32,
    reliable: bool,
    timers: Timers,
    state: State,
    table: TimerTable<Timer, 5>,
    /// The response a retransmission repeats: the last provisional in Proceeding, the final
    /// response in Completed and Accepted.
    last_response: Bytes,
    /// Interval of the next Timer G or 2xx retransmission.
    retransmit_interval: Duration,
    /// Whether the 2xx was acknowledged (Accepted only).
    acked: bool,
    transmits: Queue<Bytes>,
    events: Queue<Event>,
}

/// The states of RFC 3261 Figure 7 as updated by RFC 6026 §7.1. A transport error in any state
/// informs the TU and ends in Terminated (§17.2.4). In Accepted this transaction also
/// retransmits the 2xx over UDP until the TU reports the ACK (RFC 3261 §13.3.1.4).
///
/// ```text
///                                |INVITE
///                                |pass INV to TU
///             INVITE             V send 100 Trying
///             send response+-----------+
///                 +--------|           |--------+ 101-199 from TU
///                 |        |           |        | send response
///                 +------->|           |<-------+
///                          | Proceeding|
///                          |           |
///                          +-----------+
///             300-699 from TU |    |2xx from TU
///             send response   |    |send response
///                             |    +--------------------+
///                             |                         |
///             INVITE          V          Timer G fires  |
///             send response+-----------+ send response  |
///                 +--------|           |--------+       |
///                 |        | Completed |        |       |
///                 +------->|           |<-------+       |
///                          +-----------+                |
///                             |    |                    |
///                         ACK |    |                    |
///                         -   |    +----------------+   |
///                             |   Timer H fires     |   |
///                             V   inform TU (NoAck) |   V
///                          +-----------+            | +-----------+
///                          |           |            | |           |--+ INVITE: absorb
///                          | Confirmed |            | | Accepted  |  | 2xx from TU: send
///                          |           |            | |           |<-+ ACK / TU's ACK:
///                          +-----------+            | +-----------+    stop 2xx retransmits
///                                |                  |       |
///                                |Timer I fires     |       |Timer L fires
///                                |-                 |       |(NoAck if never ACKed)
///                                V                  |       V
///                          +-------------------------------------+
///                          |              Terminated             |
///                          +-------------------------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The TU has not sent a final response yet.
    Proceeding,
    /// A 3xx–6xx was sent; retransmitting it (Timer G) until the ACK arrives or Timer H.
    Completed,
    /// The ACK for the 3xx–6xx arrived; absorbing its retransmissions until Timer I.
    Confirmed,
    /// RFC 6026: a 2xx was sent; absorbing retransmitted INVITEs until Timer L.
    Accepted,
    /// Done; the owner drops the transaction.
    Terminated,
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    G,
    H,
    I,
    L,
    /// RFC 3261 §13.3.1.4: the 2xx retransmission, T1 doubling up to T2.
    Retransmit2xx,
}

impl TimerName for Timer {
    fn index(self) -> usize {
        self as usize
    }
}

impl ServerInvite {
    /// Starts the transaction for a received INVITE and queues `100 Trying` (RFC 3261 §17.2.1
    /// allows sending it at once rather than after 200 ms; §8.2.6.1 copies Timestamp into it).
    pub fn new(request: Request, reliable: bool, timers: Timers, _now: Instant) -> Self {
        let trying = request.response(StatusCode::TRYING, None).to_wire();
        let mut transaction = ServerInvite {
            cseq: request.headers.cseq.seq,
            request: Some(Arc::new(request)),
            reliable,
            timers,
            state: State::Proceeding,
            table: TimerTable::new(),
            last_response: trying.clone(),
            retransmit_interval: timers.t1,
            acked: false,
            transmits: Queue::new(),
            events: Queue::new(),
        };
        transaction.transmits.push(trying);
        transaction
    }

    /// The INVITE this transaction answers; `None` once the final response was sent.
    pub fn request(&self) -> Option<&Request> {
        self.request.as_deref()
    }

    /// The request, shared: handed to the TU without a copy.
    pub fn shared_request(&self) -> Option<Arc<Request>> {
        self.request.clone()
    }

    /// The INVITE's CSeq number.
    pub fn cseq(&self) -> u32 {
        self.cseq
    }

    /// Whether no final response was sent yet: a CANCEL still has an effect (RFC 3261 §9.2), so
    /// the endpoint answers the INVITE with 487.
    pub fn is_proceeding(&self) -> bool {
        self.state == State::Proceeding
    }

    /// Feeds a request that matched this transaction ([`super::Key::server`]): a retransmitted
    /// INVITE, or the ACK for a 3xx–6xx.
    pub fn handle_request(&mut self, request: Request, now: Instant) {
        match (&request.method, self.state) {
            // RFC 3261 §17.2.1: a retransmitted INVITE in Proceeding gets the last provisional,
            // in Completed the final response.
            (Method::Invite, State::Proceeding | State::Completed) => {
                self.transmits.push(self.last_response.clone());
            }
            // RFC 6026 §7.1: retransmitted INVITEs in Accepted are absorbed; only the 2xx
            // retransmission schedule re-sends the 2xx.
            (Method::Invite, _) => {}
            (Method::Ack, State::Completed) => {
                // RFC 3261 §17.2.1: the ACK stops the retransmissions; Timer I absorbs ACK
                // retransmissions (T4 over UDP, zero over reliable transports).
                self.table.stop(Timer::G);
                self.table.stop(Timer::H);
                self.state = State::Confirmed;
                let linger = self.timers.t4_unless_reliable(self.reliable);
                if linger.is_zero() {
                    self.terminate();
                } else {
                    self.table.set(Timer::I, now + linger);
                }
            }
            // Only an RFC 2543 peer's ACK for the 2xx matches this transaction (its key ignores
            // the branch); it acknowledges the 2xx just as the TU's report would.
            (Method::Ack, State::Accepted) => self.handle_ack(now),
            // Absorbed: ACK retransmissions in Confirmed, anything else.
            _ => {}
        }
    }

    /// Sends a response from the TU: a 1xx stays in Proceeding, a 2xx moves to Accepted (Timer
    /// L), a 3xx–6xx moves to Completed (Timers G and H). After a final response only a repeated
    /// 2xx is still sent (RFC 6026 §7.1); anything else is discarded.
    pub fn send_response(&mut self, response: Response, now: Instant) {
        let status = response.status;
        let bytes = response.to_wire();
        match self.state {
            State::Proceeding if status.is_provisional() => {
                self.transmits.push(bytes.clone());
                self.last_response = bytes;
            }
            State::Proceeding if status.is_success() => {
                // RFC 6026 §7.1: Accepted absorbs retransmitted INVITEs for 64*T1 (Timer L).
                self.transmits.push(bytes.clone());
                self.last_response = bytes;
                self.state = State::Accepted;
                self.request = None;
                self.table
                    .set(Timer::L, now + self.timers.transaction_timeout());
                // RFC 3261 §13.3.1.4: the 2xx is retransmitted at T1 doubling up to T2 until the
                // ACK arrives; only over unreliable transports.
                if !self.reliable {
                    self.retransmit_interval = self.timers.t1;
                    self.table.set(Timer::Retransmit2xx, now + self.timers.t1);
                }
            }
            State::Proceeding => {
                // RFC 3261 §17.2.1: Timer G (T1, UDP only) retransmits, Timer H (64*T1, every
                // transport) bounds the wait for the ACK.
                self.transmits.push(bytes.clone());
                self.last_response = bytes;
                self.state = State::Completed;
                self.request = None;
                if !self.reliable {
                    self.retransmit_interval = self.timers.t1;
                    self.table.set(Timer::G, now + self.timers.t1);
                }
                self.table
                    .set(Timer::H, now + self.timers.transaction_timeout());
            }
            // RFC 6026 §7.1: a 2xx passed down in Accepted goes to the transport.
            State::Accepted if status.is_success() => self.transmits.push(bytes),
            State::Accepted | State::Completed | State::Confirmed | State::Terminated => {}
        }
    }

    /// The TU saw the ACK for its 2xx (that ACK is a transaction of its own, routed by dialog):
    /// stops the 2xx retransmissions. The transaction stays Accepted until Timer L.
    pub fn handle_ack(&mut self, _now: Instant) {
        if self.state == State::Accepted {
            self.acked = true;
            self.table.stop(Timer::Retransmit2xx);
        }
    }

    /// Wire bytes to send to the transaction's peer: responses and their retransmissions.
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
        if self.table.expire(Timer::H, now) {
            // RFC 3261 §17.2.1: no ACK for the 3xx-6xx within 64*T1.
            self.events.push(Event::NoAck);
            self.terminate();
        }
        if self.table.expire(Timer::L, now) {
            // RFC 3261 §13.3.1.4: a 2xx never ACKed within 64*T1 means the dialog should end.
            if !self.acked {
                self.events.push(Event::NoAck);
            }
            self.terminate();
        }
        if self.table.expire(Timer::I, now) {
            self.terminate();
        }
        for timer in [Timer::G, Timer::Retransmit2xx] {
            if self.table.expire(timer, now) {
                // RFC 3261 §17.2.1 (Timer G) and §13.3.1.4 (2xx): double the interval up to T2.
                self.transmits.push(self.last_response.clone());
                self.retransmit_interval = self.timers.doubled_up_to_t2(self.retransmit_interval);
                self.table.set(timer, now + self.retransmit_interval);
            }
        }
    }

    /// The transport failed to send this transaction's response (§17.2.4).
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse, Message, Tag};

    fn invite() -> Request {
        let text = "INVITE sip:bob@example.com SIP/2.0\r\n\
            Via: SIP/2.0/TCP pc33.example.com;branch=z9hG4bKsi1\r\n\
            Max-Forwards: 70\r\n\
            From: <sip:alice@example.com>;tag=1\r\n\
            To: <sip:bob@example.com>\r\n\
            Call-ID: si-1\r\n\
            CSeq: 1 INVITE\r\n\
            Timestamp: 54\r\n\r\n";
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn response_status(bytes: Option<Bytes>) -> Option<u16> {
        match parse(&bytes?) {
            Ok(Message::Response(r)) => Some(r.status.code()),
            _ => None,
        }
    }

    #[test]
    fn trying_is_sent_at_once_with_the_timestamp() {
        let start = Instant::now();
        let mut transaction = ServerInvite::new(invite(), true, Timers::default(), start);
        let sent = transaction.poll_transmit().expect("100 Trying is queued");
        let trying = match parse(&sent) {
            Ok(Message::Response(r)) => r,
            other => panic!("expected 100 Trying, got {other:?}"),
        };
        assert_eq!(trying.status, StatusCode::TRYING);
        assert_eq!(trying.headers.get("Timestamp"), Some("54"));
        assert!(transaction.is_proceeding());
        assert_eq!(transaction.poll_timeout(), None);
    }

    #[test]
    fn reliable_non_2xx_waits_h_without_retransmitting_and_ack_ends_it_at_once() {
        let start = Instant::now();
        let request = invite();
        let mut transaction = ServerInvite::new(request.clone(), true, Timers::default(), start);
        let _ = transaction.poll_transmit();
        transaction.send_response(
            request.response(StatusCode::BUSY_HERE, Some(&Tag::new("t"))),
            start,
        );
        assert_eq!(response_status(transaction.poll_transmit()), Some(486));
        assert_eq!(
            transaction.poll_timeout(),
            Some(start + Duration::from_secs(32))
        );
        let mut ack = request.clone();
        ack.method = Method::Ack;
        ack.headers.cseq.method = Method::Ack;
        transaction.handle_request(ack, start + Duration::from_secs(1));
        assert!(transaction.is_terminated());
        assert_eq!(transaction.poll_event(), Some(Event::Terminated));
        assert_eq!(transaction.poll_transmit(), None);
    }

    #[test]
    fn responses_after_the_final_are_discarded_except_a_repeated_2xx() {
        let start = Instant::now();
        let request = invite();
        let mut transaction = ServerInvite::new(request.clone(), true, Timers::default(), start);
        let _ = transaction.poll_transmit();
        let ok = request.response(StatusCode::OK, Some(&Tag::new("t")));
        transaction.send_response(ok.clone(), start);
        transaction.send_response(request.response(StatusCode::RINGING, None), start);
        transaction.send_response(request.response(StatusCode::DECLINE, None), start);
        transaction.send_response(ok, start);
        assert_eq!(response_status(transaction.poll_transmit()), Some(200));
        assert_eq!(response_status(transaction.poll_transmit()), Some(200));
        assert_eq!(transaction.poll_transmit(), None);
        assert!(!transaction.is_proceeding());
    }

    #[test]
    fn ack_stops_timer_h_even_when_timer_i_outlasts_it() {
        // With T4 longer than 64*T1, a Timer H left running would report a spurious NoAck.
        let start = Instant::now();
        let timers = Timers {
            t4: Duration::from_secs(60),
            ..Timers::default()
        };
        let request = invite();
        let mut transaction = ServerInvite::new(request.clone(), false, timers, start);
        transaction.send_response(request.response(StatusCode::DECLINE, None), start);
        let mut ack = request.clone();
        ack.method = Method::Ack;
        ack.headers.cseq.method = Method::Ack;
        transaction.handle_request(ack, start + Duration::from_secs(1));
        while let Some(at) = transaction.poll_timeout() {
            transaction.handle_timeout(at);
        }
        assert_eq!(transaction.poll_event(), Some(Event::Terminated));
        assert_eq!(transaction.poll_event(), None);
    }

    #[test]
    fn transport_error_terminates() {
        let start = Instant::now();
        let mut transaction = ServerInvite::new(invite(), false, Timers::default(), start);
        transaction.handle_transport_error(start);
        assert_eq!(transaction.poll_event(), Some(Event::TransportError));
        assert_eq!(transaction.poll_event(), Some(Event::Terminated));
        assert!(transaction.is_terminated());
    }
}
