//! The non-INVITE server transaction (RFC 3261 §17.2.2).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{Event, Queue, TimerName, TimerTable, Timers};
use crate::message::{Request, Response};

/// Answers a received non-INVITE request: sends the TU's responses and re-sends the last one for
/// each retransmitted request.
#[derive(Debug)]
pub struct ServerNonInvite {
    /// The request, until the final response: a transaction lingering for Timer J keeps only
    /// the response it repeats.
    request: Option<Arc<Request>>,
    reliable: bool,
    timers: Timers,
    state: State,
    table: TimerTable<Timer, 1>,
    /// The last response sent, repeated for each retransmitted request.
    last_response: Option<Bytes>,
    transmits: Queue<Bytes>,
    events: Queue<Event>,
}

/// The states of RFC 3261 Figure 8. A transport error in Proceeding or Completed informs the TU
/// and ends in Terminated (§17.2.4).
///
/// ```text
///                                   |Request received
///                                   |pass to TU
///                                   V
///                             +-----------+
///                             |           |
///                             | Trying    |-------------+
///                             |           |             |
///                             +-----------+             |200-699 from TU
///                                   |                   |send response
///                                   |1xx from TU        |
///                                   |send response      |
///                                   |                   |
///                Request            V      1xx from TU  |
///                send response+-----------+send response|
///                    +--------|           |--------+    |
///                    |        | Proceeding|        |    |
///                    +------->|           |<-------+    |
///                             +-----------+             |
///                                   |                   |
///                                   | 200-699 from TU   |
///                                   | send response     |
///                                   |                   |
///                Request            V                   |
///                send response+-----------+             |
///                    +--------|           |             |
///                    |        | Completed |<------------+
///                    +------->|           |
///                             +-----------+
///                                   |
///                                   |Timer J fires
///                                   |-
///                                   V
///                             +-----------+
///                             |           |
///                             | Terminated|
///                             |           |
///                             +-----------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The TU has not responded yet; retransmitted requests are absorbed.
    Trying,
    /// A provisional was sent; retransmitted requests get it again.
    Proceeding,
    /// A final response was sent; retransmitted requests get it again until Timer J.
    Completed,
    /// Done; the owner drops the transaction.
    Terminated,
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    J,
}

impl TimerName for Timer {
    fn index(self) -> usize {
        self as usize
    }
}

impl ServerNonInvite {
    /// Starts the transaction for a received non-INVITE request. Nothing is sent until the TU
    /// responds.
    pub fn new(request: Request, reliable: bool, timers: Timers, _now: Instant) -> Self {
        ServerNonInvite {
            request: Some(Arc::new(request)),
            reliable,
            timers,
            state: State::Trying,
            table: TimerTable::new(),
            last_response: None,
            transmits: Queue::new(),
            events: Queue::new(),
        }
    }

    /// The request this transaction answers; `None` once the final response was sent.
    pub fn request(&self) -> Option<&Request> {
        self.request.as_deref()
    }

    /// The request, shared: handed to the TU without a copy.
    pub fn shared_request(&self) -> Option<Arc<Request>> {
        self.request.clone()
    }

    /// Feeds a retransmission of the request ([`super::Key::server`] matched).
    pub fn handle_request(&mut self, _request: Request, _now: Instant) {
        // RFC 3261 §17.2.2: absorbed in Trying; in Proceeding and Completed the last response
        // is sent again.
        if matches!(self.state, State::Proceeding | State::Completed) {
            if let Some(last) = &self.last_response {
                self.transmits.push(last.clone());
            }
        }
    }

    /// Sends a response from the TU. Once a final response was sent, any other is discarded
    /// (RFC 3261 §17.2.2).
    pub fn send_response(&mut self, response: Response, now: Instant) {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return;
        }
        let is_final = response.status.is_final();
        let bytes = response.to_wire();
        self.transmits.push(bytes.clone());
        self.last_response = Some(bytes);
        if !is_final {
            self.state = State::Proceeding;
            return;
        }
        // RFC 3261 §17.2.2: Timer J (64*T1 over UDP, zero over reliable transports) absorbs
        // retransmitted requests.
        self.state = State::Completed;
        self.request = None;
        if self.reliable {
            self.terminate();
        } else {
            self.table
                .set(Timer::J, now + self.timers.transaction_timeout());
        }
    }

    /// Wire bytes to send to the transaction's peer: responses and their repetitions.
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
        if self.table.expire(Timer::J, now) {
            self.terminate();
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
    use crate::message::{parse, Message, StatusCode};
    use std::time::Duration;

    fn bye() -> Request {
        let text = "BYE sip:bob@example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKbye1\r\n\
            Max-Forwards: 70\r\n\
            From: <sip:alice@example.com>;tag=1\r\n\
            To: <sip:bob@example.com>;tag=2\r\n\
            Call-ID: bye-1\r\n\
            CSeq: 2 BYE\r\n\r\n";
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn retransmissions_are_absorbed_then_answered_with_the_last_response() {
        let start = Instant::now();
        let request = bye();
        let mut transaction =
            ServerNonInvite::new(request.clone(), false, Timers::default(), start);
        transaction.handle_request(request.clone(), start);
        assert_eq!(transaction.poll_transmit(), None, "Trying absorbs");

        let ok = Bytes::from(request.response(StatusCode::OK, None).to_bytes());
        transaction.send_response(request.response(StatusCode::OK, None), start);
        assert_eq!(transaction.poll_transmit(), Some(ok.clone()));
        transaction.handle_request(request.clone(), start + Duration::from_secs(1));
        assert_eq!(transaction.poll_transmit(), Some(ok));

        transaction.send_response(request.response(StatusCode::DECLINE, None), start);
        assert_eq!(
            transaction.poll_transmit(),
            None,
            "a second final is discarded"
        );

        // Timer J = 64*T1 over UDP.
        assert_eq!(
            transaction.poll_timeout(),
            Some(start + Duration::from_secs(32))
        );
        transaction.handle_timeout(start + Duration::from_millis(31_999));
        assert!(!transaction.is_terminated());
        transaction.handle_timeout(start + Duration::from_secs(32));
        assert_eq!(transaction.poll_event(), Some(Event::Terminated));
    }

    #[test]
    fn reliable_final_terminates_at_once() {
        let start = Instant::now();
        let request = bye();
        let mut transaction = ServerNonInvite::new(request.clone(), true, Timers::default(), start);
        transaction.send_response(request.response(StatusCode::OK, None), start);
        assert!(transaction.poll_transmit().is_some());
        assert!(transaction.is_terminated());
        assert_eq!(transaction.poll_event(), Some(Event::Terminated));
    }
}
