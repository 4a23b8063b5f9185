//! The non-INVITE client transaction (RFC 3261 §17.1.2).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Event, Queue, TimerName, TimerTable, Timers};
use crate::message::{Method, Request, Response};

/// Sends a non-INVITE request (BYE, CANCEL, OPTIONS, REGISTER, ...), retransmits it over UDP and
/// passes its provisional and final responses to the TU.
#[derive(Debug)]
pub struct ClientNonInvite {
    /// The request's method, which its responses carry in their CSeq (the parsed request
    /// itself is not kept: only its bytes are ever sent again).
    method: Method,
    /// The request on the wire, kept for retransmissions until the final response.
    request_bytes: Bytes,
    reliable: bool,
    timers: Timers,
    state: State,
    table: TimerTable<Timer, 3>,
    /// Interval of the next Timer E while in Trying.
    retransmit_interval: Duration,
    transmits: Queue<Bytes>,
    events: Queue<Event>,
}

/// The states of RFC 3261 Figure 6. A transport error in Trying or Proceeding informs the TU and
/// ends in Terminated (§17.1.4).
///
/// ```text
///                                    |Request from TU
///                                    |send request
///                Timer E             V
///                send request  +-----------+
///                    +---------|           |-------------------+
///                    |         |  Trying   |  Timer F          |
///                    +-------->|           |  or Transport Err.|
///                              +-----------+  inform TU        |
///                 200-699         |  |                         |
///                 resp. to TU     |  |1xx                      |
///                 +---------------+  |resp. to TU              |
///                 |                  |                         |
///                 |   Timer E        V       Timer F           |
///                 |   send req +-----------+ or Transport Err. |
///                 |  +---------|           | inform TU         |
///                 |  |         |Proceeding |------------------>|
///                 |  +-------->|           |-----+             |
///                 |            +-----------+     |1xx          |
///                 |              |      ^        |resp to TU   |
///                 | 200-699      |      +--------+             |
///                 | resp. to TU  |                             |
///                 |              |                             |
///                 |              V                             |
///                 |            +-----------+                   |
///                 |            |           |                   |
///                 |            | Completed |                   |
///                 |            |           |                   |
///                 |            +-----------+                   |
///                 |              ^   |                         |
///                 |              |   | Timer K                 |
///                 +--------------+   | -                       |
///                                    |                         |
///                                    V                         |
///              NOTE:           +-----------+                   |
///                              |           |                   |
///          transitions         | Terminated|<------------------+
///          labeled with        |           |
///          the event           +-----------+
///          over the action
///          to take
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The request is out; no response yet (Timers E and F run).
    Trying,
    /// A provisional arrived; still retransmitting every T2 until a final response or Timer F.
    Proceeding,
    /// A final response arrived; absorbing its retransmissions until Timer K.
    Completed,
    /// Done; the owner drops the transaction.
    Terminated,
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    E,
    F,
    K,
}

impl TimerName for Timer {
    fn index(self) -> usize {
        self as usize
    }
}

impl ClientNonInvite {
    /// Starts the transaction: queues the request and arms Timer F (and Timer E over UDP).
    pub fn new(request: Request, reliable: bool, timers: Timers, now: Instant) -> Self {
        let request_bytes = request.to_wire();
        let mut transaction = ClientNonInvite {
            method: request.method,
            request_bytes: request_bytes.clone(),
            reliable,
            timers,
            state: State::Trying,
            table: TimerTable::new(),
            retransmit_interval: timers.t1,
            transmits: Queue::new(),
            events: Queue::new(),
        };
        transaction.transmits.push(request_bytes);
        // RFC 3261 §17.1.2.2: Timer E (T1) only for unreliable transports; Timer F (64*T1)
        // always.
        if !reliable {
            transaction.table.set(Timer::E, now + timers.t1);
        }
        transaction
            .table
            .set(Timer::F, now + timers.transaction_timeout());
        transaction
    }

    /// Feeds a response that matched this transaction ([`super::Key::client_for_response`]).
    pub fn handle_response(&mut self, response: Response, now: Instant) {
        if response.headers.cseq.method != self.method {
            return;
        }
        match self.state {
            State::Trying | State::Proceeding => {
                if response.status.is_provisional() {
                    // RFC 3261 §17.1.2.2: Timer E keeps running; from its next firing on it is
                    // reset to T2 (see handle_timeout).
                    self.state = State::Proceeding;
                    self.events.push(Event::Response(Box::new(response)));
                } else {
                    // RFC 3261 §17.1.2.2: a final response goes to the TU; Timer K absorbs its
                    // retransmissions (T4 over UDP, zero over reliable transports).
                    self.table.stop_all();
                    self.state = State::Completed;
                    self.request_bytes = Bytes::new();
                    self.events.push(Event::Response(Box::new(response)));
                    let linger = self.timers.t4_unless_reliable(self.reliable);
                    if linger.is_zero() {
                        self.terminate();
                    } else {
                        self.table.set(Timer::K, now + linger);
                    }
                }
            }
            // RFC 3261 §17.1.2.2: retransmitted responses are absorbed in Completed.
            State::Completed | State::Terminated => {}
        }
    }

    /// Wire bytes to send to the transaction's peer: the request and its retransmissions.
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
        if self.table.expire(Timer::F, now) {
            // RFC 3261 §17.1.2.2: Timer F in Trying or Proceeding; the TU treats it as a 408.
            self.events.push(Event::Timeout);
            self.terminate();
        }
        if self.table.expire(Timer::K, now) {
            self.terminate();
        }
        if self.table.expire(Timer::E, now) {
            self.transmits.push(self.request_bytes.clone());
            // RFC 3261 §17.1.2.2: in Trying the interval doubles up to T2; in Proceeding Timer E
            // is reset to T2.
            let interval = match self.state {
                State::Proceeding => self.timers.t2,
                _ => {
                    let interval = self.retransmit_interval;
                    self.retransmit_interval = self.timers.doubled_up_to_t2(interval);
                    self.retransmit_interval
                }
            };
            self.table.set(Timer::E, now + interval);
        }
    }

    /// The transport failed to send this transaction's request (§17.1.4).
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
    use crate::message::{parse, Message, Method, StatusCode};

    fn options() -> Request {
        let text = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKopt1\r\n\
            Max-Forwards: 70\r\n\
            From: <sip:alice@example.com>;tag=1\r\n\
            To: <sip:bob@example.com>\r\n\
            Call-ID: opt-1\r\n\
            CSeq: 1 OPTIONS\r\n\r\n";
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn final_response_lingers_t4_over_udp_and_absorbs_retransmissions() {
        let start = Instant::now();
        let request = options();
        let mut transaction =
            ClientNonInvite::new(request.clone(), false, Timers::default(), start);
        let _ = transaction.poll_transmit();
        let ok = request.response(StatusCode::OK, None);
        let at = start + Duration::from_millis(200);
        transaction.handle_response(ok.clone(), at);
        transaction.handle_response(ok.clone(), at);
        assert_eq!(
            transaction.poll_event(),
            Some(Event::Response(Box::new(ok)))
        );
        assert_eq!(transaction.poll_event(), None);
        assert_eq!(
            transaction.poll_timeout(),
            Some(at + Duration::from_secs(5))
        );
        transaction.handle_timeout(at + Duration::from_secs(5));
        assert_eq!(transaction.poll_event(), Some(Event::Terminated));
        assert_eq!(transaction.poll_transmit(), None);
    }

    #[test]
    fn final_response_over_reliable_terminates_at_once() {
        let start = Instant::now();
        let request = options();
        let mut transaction = ClientNonInvite::new(request.clone(), true, Timers::default(), start);
        transaction.handle_response(request.response(StatusCode::NOT_FOUND, None), start);
        assert!(transaction.is_terminated());
        assert!(matches!(transaction.poll_event(), Some(Event::Response(_))));
        assert_eq!(transaction.poll_event(), Some(Event::Terminated));
    }

    #[test]
    fn response_for_another_method_is_ignored() {
        let start = Instant::now();
        let request = options();
        let mut transaction =
            ClientNonInvite::new(request.clone(), false, Timers::default(), start);
        let mut stray = request.response(StatusCode::OK, None);
        stray.headers.cseq.method = Method::Cancel;
        transaction.handle_response(stray, start);
        assert_eq!(transaction.poll_event(), None);
        assert!(!transaction.is_terminated());
    }
}
