//! Scenario tests: a client and a server transaction talking over a simulated lossy link, driven
//! by a virtual clock that jumps from one `poll_timeout` to the next.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::message::{parse, Message, Method, Request, Response, StatusCode, Tag};

/// What the harness needs from every transaction.
trait Machine {
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_event(&mut self) -> Option<Event>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    fn is_terminated(&self) -> bool;
}

trait Client: Machine + HeldRequest {
    fn create(request: Request, reliable: bool, timers: Timers, now: Instant) -> Self;
    fn handle_response(&mut self, response: Response, now: Instant);
}

trait Server: Machine {
    fn create(request: Request, reliable: bool, timers: Timers, now: Instant) -> Self;
    fn request(&self) -> Option<&Request>;
    fn handle_request(&mut self, request: Request, now: Instant);
    fn send_response(&mut self, response: Response, now: Instant);
    /// The TU saw the ACK for a 2xx (INVITE only).
    fn handle_ack(&mut self, now: Instant);
}

macro_rules! machine {
    ($($ty:ty),*) => {$(
        impl Machine for $ty {
            fn poll_transmit(&mut self) -> Option<Bytes> { <$ty>::poll_transmit(self) }
            fn poll_event(&mut self) -> Option<Event> { <$ty>::poll_event(self) }
            fn poll_timeout(&self) -> Option<Instant> { <$ty>::poll_timeout(self) }
            fn handle_timeout(&mut self, now: Instant) { <$ty>::handle_timeout(self, now) }
            fn is_terminated(&self) -> bool { <$ty>::is_terminated(self) }
        }
    )*};
}
machine!(ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite);

macro_rules! client {
    ($($ty:ty),*) => {$(
        impl Client for $ty {
            fn create(request: Request, reliable: bool, timers: Timers, now: Instant) -> Self {
                <$ty>::new(request, reliable, timers, now)
            }
            fn handle_response(&mut self, response: Response, now: Instant) {
                <$ty>::handle_response(self, response, now)
            }
        }
    )*};
}
client!(ClientInvite, ClientNonInvite);

/// What a client transaction still holds of its parsed request.
trait HeldRequest {
    fn request(&self) -> Option<&Request>;
}

impl HeldRequest for ClientInvite {
    fn request(&self) -> Option<&Request> {
        ClientInvite::request(self)
    }
}

impl HeldRequest for ClientNonInvite {
    /// It keeps only the request's method and bytes, from the start.
    fn request(&self) -> Option<&Request> {
        None
    }
}

impl Server for ServerInvite {
    fn create(request: Request, reliable: bool, timers: Timers, now: Instant) -> Self {
        ServerInvite::new(request, reliable, timers, now)
    }
    fn request(&self) -> Option<&Request> {
        ServerInvite::request(self)
    }
    fn handle_request(&mut self, request: Request, now: Instant) {
        ServerInvite::handle_request(self, request, now)
    }
    fn send_response(&mut self, response: Response, now: Instant) {
        ServerInvite::send_response(self, response, now)
    }
    fn handle_ack(&mut self, now: Instant) {
        ServerInvite::handle_ack(self, now)
    }
}

impl Server for ServerNonInvite {
    fn create(request: Request, reliable: bool, timers: Timers, now: Instant) -> Self {
        ServerNonInvite::new(request, reliable, timers, now)
    }
    fn request(&self) -> Option<&Request> {
        ServerNonInvite::request(self)
    }
    fn handle_request(&mut self, request: Request, now: Instant) {
        ServerNonInvite::handle_request(self, request, now)
    }
    fn send_response(&mut self, response: Response, now: Instant) {
        ServerNonInvite::send_response(self, response, now)
    }
    fn handle_ack(&mut self, _now: Instant) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// One message put on the link.
#[derive(Debug)]
struct Packet {
    at: Duration,
    from: Side,
    /// The method of a request, the status code of a response.
    summary: String,
    dropped: bool,
}

/// Decides, per message, whether the link loses it.
type DropPattern = Box<dyn FnMut(Side, &Message) -> bool>;

/// One client transaction and (once its request got through) one server transaction, joined by
/// a link with no delay that drops what the drop pattern says. The server side routes requests
/// by [`Key`] the way an endpoint does: a request with the server transaction's key is a
/// retransmission, an ACK with another key is the TU-level ACK for a 2xx, anything else would be
/// a new transaction (counted as stray).
struct Sim<C, S> {
    start: Instant,
    now: Instant,
    reliable: bool,
    timers: Timers,
    client: C,
    /// The client TU's copy of its request (the transaction lets go of its own at the final
    /// response).
    request: Request,
    client_key: Key,
    server: Option<S>,
    /// The server TU's copy of the request that created the server transaction.
    server_request: Option<Request>,
    server_key: Option<Key>,
    link_drops: DropPattern,
    wire: Vec<Packet>,
    client_events: Vec<(Duration, Event)>,
    server_events: Vec<(Duration, Event)>,
    /// Requests that created a server transaction, i.e. that the server TU saw.
    server_tu_requests: Vec<Duration>,
    /// ACKs for a 2xx that reached the server TU.
    dialog_acks: Vec<Duration>,
    /// Whether the client TU ACKs every 2xx it is given (RFC 3261 §13.2.2.4).
    client_acks_2xx: bool,
    /// Messages that matched no transaction.
    stray: usize,
}

impl<C: Client, S: Server> Sim<C, S> {
    fn new(request: Request, reliable: bool, timers: Timers, link_drops: DropPattern) -> Self {
        let start = Instant::now();
        let client_key = Key::client(&request).expect("test requests have a branch");
        let mut sim = Sim {
            start,
            now: start,
            reliable,
            timers,
            client: C::create(request.clone(), reliable, timers, start),
            request,
            client_key,
            server: None,
            server_request: None,
            server_key: None,
            link_drops,
            wire: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            server_tu_requests: Vec::new(),
            dialog_acks: Vec::new(),
            client_acks_2xx: true,
            stray: 0,
        };
        sim.pump();
        sim
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Moves every queued message and event until nothing is left to move.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut outgoing = Vec::new();
            while let Some(bytes) = self.client.poll_transmit() {
                outgoing.push((Side::Client, bytes));
            }
            while let Some(event) = self.client.poll_event() {
                if let Event::Response(response) = &event {
                    if response.status.is_final() {
                        assert!(
                            self.client.request().is_none(),
                            "a final response releases the client transaction's request"
                        );
                    }
                    if self.client_acks_2xx
                        && response.status.is_success()
                        && response.headers.cseq.method == Method::Invite
                    {
                        let ack = ack_for_2xx(&self.request, response);
                        outgoing.push((Side::Client, Bytes::from(ack.to_bytes())));
                    }
                }
                self.client_events.push((self.elapsed(), event));
            }
            if let Some(server) = &mut self.server {
                while let Some(bytes) = server.poll_transmit() {
                    outgoing.push((Side::Server, bytes));
                }
                while let Some(event) = server.poll_event() {
                    self.server_events.push((self.now - self.start, event));
                }
            }
            if outgoing.is_empty() {
                return;
            }
            for (from, bytes) in outgoing {
                self.carry(from, bytes);
            }
        }
        panic!("messages kept flowing without time passing");
    }

    /// Puts one message on the link and, unless it is lost, hands it to the other side.
    fn carry(&mut self, from: Side, bytes: Bytes) {
        let message = parse(&bytes).expect("transactions send well-formed messages");
        let dropped = (self.link_drops)(from, &message);
        self.wire.push(Packet {
            at: self.elapsed(),
            from,
            summary: match &message {
                Message::Request(r) => r.method.to_string(),
                Message::Response(r) => r.status.code().to_string(),
            },
            dropped,
        });
        if dropped {
            return;
        }
        match message {
            Message::Request(request) => self.deliver_request(request),
            Message::Response(response) => {
                if Key::client_for_response(&response).as_ref() == Some(&self.client_key) {
                    self.client.handle_response(response, self.now);
                } else {
                    self.stray += 1;
                }
            }
        }
    }

    fn deliver_request(&mut self, request: Request) {
        let key = Key::server(&request);
        match &mut self.server {
            None => {
                self.server_key = key;
                self.server_request = Some(request.clone());
                self.server = Some(S::create(request, self.reliable, self.timers, self.now));
                self.server_tu_requests.push(self.now - self.start);
            }
            Some(server) if key == self.server_key => server.handle_request(request, self.now),
            Some(server) if request.method == Method::Ack => {
                self.dialog_acks.push(self.now - self.start);
                server.handle_ack(self.now);
            }
            Some(_) => self.stray += 1,
        }
    }

    /// Lets time pass up to `offset` after the start, firing every timer on the way.
    fn run_until(&mut self, offset: Duration) {
        let deadline = self.start + offset;
        self.pump();
        for _ in 0..10_000 {
            let next = [
                self.client.poll_timeout(),
                self.server.as_ref().and_then(|s| s.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(at) if at <= deadline => {
                    self.now = self.now.max(at);
                    self.client.handle_timeout(self.now);
                    if let Some(server) = &mut self.server {
                        server.handle_timeout(self.now);
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = self.now.max(deadline);
    }

    /// The server TU answers at `offset` after the start.
    fn respond(&mut self, offset: Duration, status: StatusCode) {
        self.run_until(offset);
        let server = self
            .server
            .as_mut()
            .expect("the request reached the server");
        let response = self
            .server_request
            .as_ref()
            .expect("the server TU keeps the request")
            .response(status, Some(&Tag::new("server-tag")));
        server.send_response(response, self.now);
        if status.is_final() {
            assert!(
                server.request().is_none(),
                "a final response releases the server transaction's request"
            );
        }
        self.pump();
    }

    /// Hands the server a copy of bytes as if the network duplicated them, at `offset`.
    fn duplicate_at(&mut self, offset: Duration, from: Side, bytes: Bytes) {
        self.run_until(offset);
        self.carry(from, bytes);
        self.pump();
    }

    /// When `from` put messages summarized as `summary` on the link (lost or not).
    fn sent(&self, from: Side, summary: &str) -> Vec<Duration> {
        self.wire
            .iter()
            .filter(|p| p.from == from && p.summary == summary)
            .map(|p| p.at)
            .collect()
    }

    /// When `from`'s messages summarized as `summary` were lost.
    fn lost(&self, from: Side, summary: &str) -> Vec<Duration> {
        self.wire
            .iter()
            .filter(|p| p.from == from && p.summary == summary && p.dropped)
            .map(|p| p.at)
            .collect()
    }

    /// Whether both transactions reached Terminated.
    fn all_terminated(&self) -> bool {
        self.client.is_terminated() && self.server.as_ref().is_some_and(|s| s.is_terminated())
    }

    fn server(&self) -> &S {
        self.server
            .as_ref()
            .expect("the request reached the server")
    }
}

fn ms(values: &[u64]) -> Vec<Duration> {
    values.iter().map(|&v| Duration::from_millis(v)).collect()
}

fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

fn with_t1(t1_ms: u64) -> Timers {
    Timers {
        t1: Duration::from_millis(t1_ms),
        ..Timers::default()
    }
}

fn no_loss() -> DropPattern {
    Box::new(|_, _| false)
}

fn lose_everything_from(side: Side) -> DropPattern {
    Box::new(move |from, _| from == side)
}

/// Loses the first `count` messages from `side` that `select` picks.
fn lose_first(side: Side, count: usize, select: fn(&Message) -> bool) -> DropPattern {
    let mut seen = 0;
    Box::new(move |from, message| {
        if from == side && select(message) {
            seen += 1;
            seen <= count
        } else {
            false
        }
    })
}

fn is_ack(message: &Message) -> bool {
    matches!(message, Message::Request(r) if r.method == Method::Ack)
}

fn is_final_response(message: &Message) -> bool {
    matches!(message, Message::Response(r) if r.status.is_final())
}

fn is_response(message: &Message) -> bool {
    matches!(message, Message::Response(_))
}

fn request(method: &str, branch: &str, transport: &str) -> Request {
    let text = format!(
        "{method} sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/{transport} pc33.atlanta.example.com:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         To: Bob <sip:bob@biloxi.example.com>\r\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
         CSeq: 314159 {method}\r\n\
         Contact: <sip:alice@pc33.atlanta.example.com>\r\n\r\n"
    );
    match parse(text.as_bytes()) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn invite(transport: &str) -> Request {
    request("INVITE", "z9hG4bKnashds8", transport)
}

/// The UAC core's ACK for a 2xx (RFC 3261 §13.2.2.4): its own transaction, so a new branch.
fn ack_for_2xx(invite: &Request, ok: &Response) -> Request {
    let mut ack = invite.clone();
    ack.method = Method::Ack;
    ack.headers.cseq.method = Method::Ack;
    ack.headers.to = ok.headers.to.clone();
    ack.headers.via[0]
        .params
        .set("branch", Some("z9hG4bKack2xx".into()));
    ack.body = Bytes::new();
    ack
}

/// The CANCEL for an INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, To, From, CSeq number and
/// top Via.
fn cancel_for(invite: &Request) -> Request {
    let mut cancel = invite.clone();
    cancel.method = Method::Cancel;
    cancel.headers.cseq.method = Method::Cancel;
    cancel.headers.via.truncate(1);
    cancel.headers.contact = crate::message::Contact::Addresses(Vec::new());
    cancel.body = Bytes::new();
    cancel
}

fn response_of(bytes: Option<Bytes>) -> Option<Response> {
    match parse(&bytes?) {
        Ok(Message::Response(r)) => Some(r),
        _ => None,
    }
}

fn request_of(bytes: Option<Bytes>) -> Option<Request> {
    match parse(&bytes?) {
        Ok(Message::Request(r)) => Some(r),
        _ => None,
    }
}

fn statuses(events: &[(Duration, Event)]) -> Vec<(Duration, u16)> {
    events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Response(r) => Some((*at, r.status.code())),
            _ => None,
        })
        .collect()
}

fn non_responses(events: &[(Duration, Event)]) -> Vec<(Duration, Event)> {
    events
        .iter()
        .filter(|(_, e)| !matches!(e, Event::Response(_)))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Client retransmission schedules
// ---------------------------------------------------------------------------------------------

fn invite_without_answer(timers: Timers, expected_sends_ms: &[u64], timeout_ms: u64) {
    let mut sim: Sim<ClientInvite, ServerInvite> = Sim::new(
        invite("UDP"),
        false,
        timers,
        lose_everything_from(Side::Client),
    );
    sim.run_until(secs(200.0));
    assert_eq!(sim.sent(Side::Client, "INVITE"), ms(expected_sends_ms));
    assert_eq!(
        sim.client_events,
        vec![
            (Duration::from_millis(timeout_ms), Event::Timeout),
            (Duration::from_millis(timeout_ms), Event::Terminated),
        ]
    );
    assert!(sim.client.is_terminated());
    assert!(sim.server.is_none());
    assert_eq!(sim.client.poll_timeout(), None);
}

#[test]
fn invite_over_udp_without_answer_doubles_timer_a_and_times_out_at_64_t1() {
    invite_without_answer(
        Timers::default(),
        &[0, 500, 1500, 3500, 7500, 15500, 31500],
        32_000,
    );
}

#[test]
fn invite_schedule_scales_with_t1() {
    invite_without_answer(with_t1(100), &[0, 100, 300, 700, 1500, 3100, 6300], 6_400);
}

#[test]
fn nothing_is_retransmitted_over_tcp() {
    for (t1, timeout) in [(500, 32_000), (100, 6_400)] {
        let mut sim: Sim<ClientInvite, ServerInvite> = Sim::new(
            invite("TCP"),
            true,
            with_t1(t1),
            lose_everything_from(Side::Client),
        );
        sim.run_until(secs(100.0));
        assert_eq!(sim.sent(Side::Client, "INVITE"), ms(&[0]));
        assert_eq!(
            sim.client_events,
            vec![
                (Duration::from_millis(timeout), Event::Timeout),
                (Duration::from_millis(timeout), Event::Terminated),
            ]
        );

        let mut sim: Sim<ClientNonInvite, ServerNonInvite> = Sim::new(
            request("OPTIONS", "z9hG4bKopt", "TCP"),
            true,
            with_t1(t1),
            lose_everything_from(Side::Client),
        );
        sim.run_until(secs(100.0));
        assert_eq!(sim.sent(Side::Client, "OPTIONS"), ms(&[0]));
        assert_eq!(
            non_responses(&sim.client_events),
            vec![
                (Duration::from_millis(timeout), Event::Timeout),
                (Duration::from_millis(timeout), Event::Terminated),
            ]
        );
    }
}

#[test]
fn tcp_server_never_retransmits_its_final_response() {
    // Every ACK is lost, so only Timer H ends the transaction; over TCP no 486 is repeated.
    let mut sim: Sim<ClientInvite, ServerInvite> = Sim::new(
        invite("TCP"),
        true,
        Timers::default(),
        lose_first(Side::Client, usize::MAX, is_ack),
    );
    sim.respond(secs(1.0), StatusCode::BUSY_HERE);
    sim.run_until(secs(100.0));
    assert_eq!(sim.sent(Side::Server, "486"), ms(&[1000]));
    assert_eq!(
        sim.server_events,
        vec![(secs(33.0), Event::NoAck), (secs(33.0), Event::Terminated)]
    );
    // The client ACKed and, with Timer D zero over TCP, terminated at once.
    assert_eq!(sim.sent(Side::Client, "ACK"), ms(&[1000]));
    assert_eq!(
        non_responses(&sim.client_events),
        vec![(secs(1.0), Event::Terminated)]
    );
}

#[test]
fn non_invite_over_udp_doubles_timer_e_up_to_t2_and_times_out_at_64_t1() {
    let mut sim: Sim<ClientNonInvite, ServerNonInvite> = Sim::new(
        request("OPTIONS", "z9hG4bKopt", "UDP"),
        false,
        Timers::default(),
        lose_everything_from(Side::Client),
    );
    sim.run_until(secs(100.0));
    assert_eq!(
        sim.sent(Side::Client, "OPTIONS"),
        ms(&[0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
    );
    assert_eq!(
        sim.client_events,
        vec![
            (secs(32.0), Event::Timeout),
            (secs(32.0), Event::Terminated)
        ]
    );
}

#[test]
fn non_invite_after_a_provisional_retransmits_every_t2() {
    // The server answers 100 at 200 ms but never sends a final response.
    let mut sim: Sim<ClientNonInvite, ServerNonInvite> = Sim::new(
        request("REGISTER", "z9hG4bKreg", "UDP"),
        false,
        Timers::default(),
        no_loss(),
    );
    sim.respond(Duration::from_millis(200), StatusCode::TRYING);
    sim.run_until(secs(100.0));
    // Timer E was due at 500 ms; firing in Proceeding resets it to T2 from then on.
    let expected = ms(&[0, 500, 4500, 8500, 12500, 16500, 20500, 24500, 28500]);
    assert_eq!(sim.sent(Side::Client, "REGISTER"), expected);
    // Each retransmission reached the server transaction, which re-sent the 100; the TU saw
    // the request once.
    assert_eq!(sim.server_tu_requests, ms(&[0]));
    assert_eq!(
        sim.sent(Side::Server, "100"),
        [&ms(&[200])[..], &expected[1..]].concat()
    );
    assert_eq!(
        non_responses(&sim.client_events),
        vec![
            (secs(32.0), Event::Timeout),
            (secs(32.0), Event::Terminated)
        ]
    );
    assert_eq!(statuses(&sim.client_events)[0], (ms(&[200])[0], 100));
}

#[test]
fn non_invite_final_over_lossy_udp_link() {
    // The first 200 is lost; the next request retransmission gets it from the server
    // transaction, which also absorbs later retransmissions until Timer J.
    let mut sim: Sim<ClientNonInvite, ServerNonInvite> = Sim::new(
        request("BYE", "z9hG4bKbye", "UDP"),
        false,
        Timers::default(),
        lose_first(Side::Server, 1, is_final_response),
    );
    sim.respond(Duration::from_millis(100), StatusCode::OK);
    sim.run_until(secs(100.0));
    assert_eq!(sim.sent(Side::Client, "BYE"), ms(&[0, 500]));
    assert_eq!(sim.sent(Side::Server, "200"), ms(&[100, 500]));
    assert_eq!(statuses(&sim.client_events), vec![(secs(0.5), 200)]);
    // Timer K = T4 after the 200 arrived; Timer J = 64*T1 after the server sent it.
    assert_eq!(
        non_responses(&sim.client_events),
        vec![(secs(5.5), Event::Terminated)]
    );
    assert_eq!(
        sim.server_events,
        vec![(Duration::from_millis(32_100), Event::Terminated)]
    );
    assert_eq!(sim.server_tu_requests.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// INVITE server transaction
// ---------------------------------------------------------------------------------------------

#[test]
fn retransmitted_invite_is_absorbed_and_the_last_provisional_re_sent() {
    // The 100 Trying is lost, so the client retransmits at T1.
    let mut sim: Sim<ClientInvite, ServerInvite> = Sim::new(
        invite("UDP"),
        false,
        Timers::default(),
        lose_first(Side::Server, 1, is_response),
    );
    sim.run_until(secs(0.5));
    assert_eq!(sim.sent(Side::Client, "INVITE"), ms(&[0, 500]));
    assert_eq!(sim.sent(Side::Server, "100"), ms(&[0, 500]));
    assert_eq!(statuses(&sim.client_events), vec![(secs(0.5), 100)]);

    sim.respond(secs(1.0), StatusCode::RINGING);
    // A late duplicate of the INVITE: the server re-sends its last provisional, the 180.
    let duplicate = Bytes::from(sim.request.to_bytes());
    sim.duplicate_at(secs(2.0), Side::Client, duplicate);
    assert_eq!(sim.sent(Side::Server, "180"), ms(&[1000, 2000]));

    sim.run_until(secs(60.0));
    // The TU saw the INVITE once; the client stopped retransmitting once the 100 arrived and,
    // in Proceeding, has no timer left.
    assert_eq!(sim.server_tu_requests, ms(&[0]));
    assert_eq!(sim.sent(Side::Client, "INVITE"), ms(&[0, 500, 2000]));
    assert_eq!(
        statuses(&sim.client_events),
        vec![(secs(0.5), 100), (secs(1.0), 180), (secs(2.0), 180)]
    );
    assert!(sim.server().is_proceeding());
    assert_eq!(sim.client.poll_timeout(), None);
    assert_eq!(sim.stray, 0);
}

#[test]
fn non_2xx_over_lossy_link_is_retransmitted_until_acked() {
    // The first 486 and the first ACK are lost.
    let mut first_486_lost = lose_first(Side::Server, 1, is_final_response);
    let mut first_ack_lost = lose_first(Side::Client, 1, is_ack);
    let drops: DropPattern = Box::new(move |from, message| {
        first_486_lost(from, message) | first_ack_lost(from, message)
    });
    let mut sim: Sim<ClientInvite, ServerInvite> =
        Sim::new(invite("UDP"), false, Timers::default(), drops);
    sim.respond(secs(1.0), StatusCode::BUSY_HERE);
    sim.run_until(secs(100.0));

    // Timer G: 1.0 (lost), 1.5 (arrives, its ACK is lost), 2.5 (arrives, re-ACKed, ACK arrives).
    assert_eq!(sim.sent(Side::Server, "486"), ms(&[1000, 1500, 2500]));
    assert_eq!(sim.sent(Side::Client, "ACK"), ms(&[1500, 2500]));
    assert_eq!(sim.lost(Side::Server, "486"), ms(&[1000]));
    assert_eq!(sim.lost(Side::Client, "ACK"), ms(&[1500]));
    assert_eq!(sim.sent(Side::Client, "INVITE"), ms(&[0]));
    // The TU saw the 486 once; Timer D ended the client 32 s after it arrived.
    assert_eq!(
        statuses(&sim.client_events),
        vec![(secs(0.0), 100), (secs(1.5), 486)]
    );
    assert_eq!(
        non_responses(&sim.client_events),
        vec![(secs(33.5), Event::Terminated)]
    );
    // Confirmed at 2.5 s, then Timer I (T4).
    assert_eq!(sim.server_events, vec![(secs(7.5), Event::Terminated)]);
    assert_eq!(sim.dialog_acks, vec![]);
    assert_eq!(sim.server_tu_requests, ms(&[0]));
    assert!(sim.all_terminated());
}

#[test]
fn non_2xx_with_every_ack_lost_ends_with_no_ack_at_timer_h() {
    let mut sim: Sim<ClientInvite, ServerInvite> = Sim::new(
        invite("UDP"),
        false,
        Timers::default(),
        lose_first(Side::Client, usize::MAX, is_ack),
    );
    sim.respond(secs(1.0), StatusCode::BUSY_HERE);
    sim.run_until(secs(100.0));
    // Timer G doubles from T1 up to T2 until Timer H = 64*T1 after the first 486.
    let expected = ms(&[
        1000, 1500, 2500, 4500, 8500, 12500, 16500, 20500, 24500, 28500, 32500,
    ]);
    assert_eq!(sim.sent(Side::Server, "486"), expected);
    // The client ACKed every copy, but passed only the first up.
    assert_eq!(sim.sent(Side::Client, "ACK"), expected);
    assert_eq!(
        statuses(&sim.client_events),
        vec![(secs(0.0), 100), (secs(1.0), 486)]
    );
    assert_eq!(
        sim.server_events,
        vec![(secs(33.0), Event::NoAck), (secs(33.0), Event::Terminated)]
    );
}

#[test]
fn two_hundred_is_retransmitted_until_the_tu_reports_the_ack() {
    // The first two ACKs (from the client TU) are lost.
    let mut sim: Sim<ClientInvite, ServerInvite> = Sim::new(
        invite("UDP"),
        false,
        Timers::default(),
        lose_first(Side::Client, 2, is_ack),
    );
    sim.respond(secs(1.0), StatusCode::OK);
    assert!(!sim.server().is_proceeding());

    // A retransmitted INVITE in Accepted is absorbed: no response re-sent (RFC 6026 §7.1).
    let duplicate = Bytes::from(sim.request.to_bytes());
    sim.duplicate_at(secs(1.2), Side::Client, duplicate);
    sim.run_until(secs(100.0));

    assert_eq!(sim.sent(Side::Server, "200"), ms(&[1000, 1500, 2500]));
    assert_eq!(sim.sent(Side::Client, "ACK"), ms(&[1000, 1500, 2500]));
    assert_eq!(sim.dialog_acks, ms(&[2500]));
    assert_eq!(sim.server_tu_requests, ms(&[0]));
    // In Accepted the client passes every 2xx up (RFC 6026 §7.2) and ends at Timer M.
    assert_eq!(
        statuses(&sim.client_events),
        vec![
            (secs(0.0), 100),
            (secs(1.0), 200),
            (secs(1.5), 200),
            (secs(2.5), 200)
        ]
    );
    assert_eq!(
        non_responses(&sim.client_events),
        vec![(secs(33.0), Event::Terminated)]
    );
    // The ACK came in time: Timer L ends the server without NoAck.
    assert_eq!(sim.server_events, vec![(secs(33.0), Event::Terminated)]);
    assert!(sim.all_terminated());
    assert_eq!(sim.stray, 0);
}

#[test]
fn two_hundred_never_acked_gives_no_ack_at_timer_l() {
    let mut sim: Sim<ClientInvite, ServerInvite> = Sim::new(
        invite("UDP"),
        false,
        Timers::default(),
        lose_first(Side::Client, usize::MAX, is_ack),
    );
    sim.respond(secs(1.0), StatusCode::OK);
    sim.run_until(secs(100.0));
    assert_eq!(
        sim.sent(Side::Server, "200"),
        ms(&[1000, 1500, 2500, 4500, 8500, 12500, 16500, 20500, 24500, 28500, 32500])
    );
    assert_eq!(
        sim.server_events,
        vec![(secs(33.0), Event::NoAck), (secs(33.0), Event::Terminated)]
    );
}

#[test]
fn two_hundred_over_tcp_is_not_retransmitted() {
    let mut sim: Sim<ClientInvite, ServerInvite> = Sim::new(
        invite("TCP"),
        true,
        Timers::default(),
        lose_first(Side::Client, usize::MAX, is_ack),
    );
    sim.respond(secs(1.0), StatusCode::OK);
    sim.run_until(secs(100.0));
    assert_eq!(sim.sent(Side::Server, "200"), ms(&[1000]));
    assert_eq!(
        sim.server_events,
        vec![(secs(33.0), Event::NoAck), (secs(33.0), Event::Terminated)]
    );
}

// ---------------------------------------------------------------------------------------------
// CANCEL (RFC 3261 §9), with the two transactions on each side driven by hand
// ---------------------------------------------------------------------------------------------

/// Both sides of an INVITE that got its 100 Trying, with the CANCEL on its way.
struct CancelRace {
    start: Instant,
    client_invite: ClientInvite,
    server_invite: ServerInvite,
    client_cancel: ClientNonInvite,
    cancel: Request,
    /// The INVITE as the server received it (the server TU's copy).
    invite: Request,
}

impl CancelRace {
    fn new() -> CancelRace {
        let start = Instant::now();
        let timers = Timers::default();
        let mut client_invite = ClientInvite::new(invite("UDP"), false, timers, start);
        let arrived = request_of(client_invite.poll_transmit()).expect("the INVITE");
        let invite = arrived.clone();
        let mut server_invite = ServerInvite::new(arrived, false, timers, start);
        let trying = response_of(server_invite.poll_transmit()).expect("100 Trying");
        client_invite.handle_response(trying, start);
        assert!(
            matches!(client_invite.poll_event(), Some(Event::Response(r)) if r.status == StatusCode::TRYING)
        );

        let cancel = cancel_for(client_invite.request().expect("no final response yet"));
        let client_cancel = ClientNonInvite::new(cancel.clone(), false, timers, start);
        CancelRace {
            start,
            client_invite,
            server_invite,
            client_cancel,
            cancel,
            invite,
        }
    }
}

#[test]
fn cancel_racing_a_200_does_not_produce_a_487() {
    let mut race = CancelRace::new();
    let at = race.start + Duration::from_millis(10);

    // The server TU answers 200 just before the CANCEL arrives.
    let ok = race
        .invite
        .response(StatusCode::OK, Some(&Tag::new("callee")));
    race.server_invite.send_response(ok, at);
    let ok_on_wire = race.server_invite.poll_transmit();

    // The CANCEL arrives: it has its own key, and invite_for_cancel finds the INVITE's.
    let cancel = request_of(race.client_cancel.poll_transmit()).expect("the CANCEL");
    assert_eq!(cancel, race.cancel);
    let invite_key = Key::server(&race.invite);
    assert_ne!(Key::server(&cancel), invite_key);
    assert_eq!(Key::invite_for_cancel(&cancel), invite_key);

    // The endpoint's check: the INVITE is no longer Proceeding, so no 487; the CANCEL itself is
    // answered 200 by its own transaction (RFC 3261 §9.2).
    assert!(!race.server_invite.is_proceeding());
    let mut server_cancel = ServerNonInvite::new(cancel.clone(), false, Timers::default(), at);
    let cancel_ok = cancel.response(StatusCode::OK, Some(&Tag::new("callee")));
    server_cancel.send_response(cancel_ok, at);
    let cancel_ok_on_wire = server_cancel.poll_transmit();
    // Had the TU tried a 487 anyway, the INVITE transaction would discard it.
    let late_487 = race
        .invite
        .response(StatusCode::REQUEST_TERMINATED, Some(&Tag::new("callee")));
    race.server_invite.send_response(late_487, at);
    assert_eq!(race.server_invite.poll_transmit(), None);

    // Client side: each response reaches the transaction its key names.
    let cancel_ok = response_of(cancel_ok_on_wire).expect("200 for CANCEL");
    let invite_ok = response_of(ok_on_wire).expect("200 for INVITE");
    assert_eq!(
        Key::client_for_response(&cancel_ok),
        Key::client(&race.cancel)
    );
    assert_eq!(
        Key::client_for_response(&invite_ok),
        Key::client(race.client_invite.request().expect("only a 100 so far"))
    );
    assert_ne!(
        Key::client_for_response(&cancel_ok),
        Key::client(race.client_invite.request().expect("only a 100 so far"))
    );
    race.client_cancel.handle_response(cancel_ok, at);
    assert!(
        matches!(race.client_cancel.poll_event(), Some(Event::Response(r)) if r.status == StatusCode::OK)
    );

    // The INVITE's 200 arrives after the CANCEL was sent: Accepted, and the 200 goes up.
    race.client_invite.handle_response(invite_ok.clone(), at);
    assert_eq!(
        race.client_invite.poll_event(),
        Some(Event::Response(Box::new(invite_ok)))
    );
    assert_eq!(
        race.client_invite.poll_transmit(),
        None,
        "the TU ACKs a 2xx, not the transaction"
    );
    assert!(!race.client_invite.is_terminated());
    assert_eq!(
        race.client_invite.poll_timeout(),
        Some(at + Duration::from_secs(32)),
        "Timer M"
    );
}

#[test]
fn cancel_while_proceeding_lets_the_invite_end_with_487() {
    let mut race = CancelRace::new();
    let at = race.start + Duration::from_millis(10);
    let cancel = request_of(race.client_cancel.poll_transmit()).expect("the CANCEL");

    // Still Proceeding: the endpoint answers the CANCEL 200 and the INVITE 487.
    assert!(race.server_invite.is_proceeding());
    let mut server_cancel = ServerNonInvite::new(cancel.clone(), false, Timers::default(), at);
    server_cancel.send_response(
        cancel.response(StatusCode::OK, Some(&Tag::new("callee"))),
        at,
    );
    let terminated = race
        .invite
        .response(StatusCode::REQUEST_TERMINATED, Some(&Tag::new("callee")));
    race.server_invite.send_response(terminated, at);
    assert!(!race.server_invite.is_proceeding());

    let cancel_ok = response_of(server_cancel.poll_transmit()).expect("200 for CANCEL");
    race.client_cancel.handle_response(cancel_ok, at);
    let invite_487 = response_of(race.server_invite.poll_transmit()).expect("487");
    race.client_invite.handle_response(invite_487, at);
    assert!(
        matches!(race.client_invite.poll_event(), Some(Event::Response(r)) if r.status == StatusCode::REQUEST_TERMINATED)
    );

    // The transaction ACKs the 487 itself, and that ACK confirms the INVITE server transaction.
    let ack = request_of(race.client_invite.poll_transmit()).expect("ACK for 487");
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(Key::server(&ack), Key::server(&race.invite));
    race.server_invite.handle_request(ack, at);
    assert_eq!(
        race.server_invite.poll_timeout(),
        Some(at + Duration::from_secs(5)),
        "Timer I"
    );
}

#[test]
fn the_queue_is_first_in_first_out_bounded_and_holds_one_item_without_a_buffer() {
    let mut queue = Queue::new();
    queue.push(1);
    assert_eq!(queue.rest.capacity(), 0, "one item is held inline");
    queue.push(2);
    assert_eq!(queue.pop(), Some(1));
    queue.push(3);
    assert_eq!(queue.pop(), Some(2));
    assert_eq!(queue.pop(), Some(3));
    assert_eq!(queue.pop(), None);
    assert_eq!(
        queue.rest.capacity(),
        0,
        "a drained queue gives its buffer back"
    );
    for item in 0..2 * MAX_QUEUED {
        queue.push(item);
    }
    let kept = std::iter::from_fn(|| queue.pop()).collect::<Vec<_>>();
    assert_eq!(kept, (0..MAX_QUEUED).collect::<Vec<_>>());
}
