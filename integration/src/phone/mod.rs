//! A scripted SIP user agent on a real UDP socket: it calls Tandem the way a trunk does
//! ([`Phone::call`]) and takes calls from Tandem the way a phone or carrier does
//! ([`Phone::listen`]), handling the protocol chores on its own — retransmissions over UDP,
//! ACKs, answers to in-dialog requests — so that a test states only the call flow.
//!
//! Every message sent and received is kept in a trace ([`Phone::trace`]) that a failed wait
//! prints, so a failing test shows the exchange that led to it.
//!
//! Messages are built and parsed with the `sip` crate's message types; the transaction and
//! dialog rules applied here are the RFC's, written down again for the test side:
//! RFC 3261 §17.1.1 (INVITE client), §17.1.2 (non-INVITE client), §13.3.1.4 (2xx
//! retransmission until ACK), §12 (dialogs), §9 (CANCEL).

mod incoming;
mod outgoing;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::message::{
    parse, Branch, CSeq, CallId, Contact, Headers, Host, Message, Method, NameAddr, Request,
    Response, StatusCode, Tag, Transport, Uri, Via,
};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use incoming::{Answer, IncomingCall};
pub use outgoing::{CallOptions, OutgoingCall};

/// The phone's T1 (RFC 3261 §17.1.1.1): short, as Tandem's test instances use.
pub const T1: Duration = Duration::from_millis(50);
/// RFC 3261 §17.1.2.2: T2 caps the retransmission interval of non-INVITE requests and 2xx.
pub const T2: Duration = Duration::from_secs(4);
/// How long a request waits for its final response before the test fails. Longer than Timer F
/// (64·T1): on a loaded test machine a debug build can take a while.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which way a traced message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The phone received it.
    Received,
    /// The phone sent it.
    Sent,
}

/// One message of the trace.
#[derive(Debug, Clone)]
pub struct Traced {
    /// Received or sent.
    pub direction: Direction,
    /// The other side's address.
    pub peer: SocketAddr,
    /// The message.
    pub message: Message,
    /// When.
    pub at: Instant,
}

/// A SIP user agent on 127.0.0.1. Dropping it closes its socket.
pub struct Phone {
    inner: Arc<Inner>,
    receiver: JoinHandle<()>,
}

/// What produces the SDP answer to an offer received in an INVITE.
type SdpAnswerer = Arc<dyn Fn(&str) -> String + Send + Sync>;

pub(crate) struct Inner {
    socket: UdpSocket,
    addr: SocketAddr,
    state: Mutex<State>,
    changes: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    trace: Vec<Traced>,
    /// Calls by Call-ID, placed or taken.
    dialogs: HashMap<CallId, Dialog>,
    /// Taken calls in arrival order, and how many [`Phone::wait_invite`] handed out.
    incoming: Vec<CallId>,
    incoming_handed_out: usize,
    /// The last response sent to each request, by (branch, method), resent when the request
    /// is retransmitted (RFC 3261 §17.2.1, §17.2.2).
    responses: HashMap<(String, Method), (Response, SocketAddr)>,
    answer: Option<Answer>,
    sdp_answerer: Option<SdpAnswerer>,
    version: u64,
}

/// One call, placed (the phone is the caller) or taken (the callee).
struct Dialog {
    is_caller: bool,
    /// The initial INVITE, as sent or received.
    invite: Request,
    /// Where the INVITE went, or came from.
    peer: SocketAddr,
    local_tag: Tag,
    remote_tag: Option<Tag>,
    /// The other side's Contact (RFC 3261 §12.1).
    remote_target: Option<Uri>,
    /// RFC 3261 §12.1.1 / §12.1.2: Record-Route as is for the callee, reversed for the caller.
    route_set: Vec<NameAddr>,
    local_cseq: u32,
    local_sdp: Option<String>,
    remote_sdp: Option<String>,
    /// Caller: acknowledge 2xx automatically, and the ACK sent (resent for each 2xx).
    ack_2xx: bool,
    ack: Option<(Request, SocketAddr)>,
    /// Callee: the final response status sent, and whether its ACK arrived.
    final_status: Option<u16>,
    acked: bool,
}

impl Phone {
    /// A phone on 127.0.0.1 port 0 that places calls; INVITEs sent to it get 486 Busy Here
    /// unless [`Phone::set_answer`] says otherwise.
    pub async fn bind() -> Phone {
        Phone::start(
            Answer::Reject {
                status: 486,
                after: Duration::ZERO,
            },
            None,
        )
        .await
    }

    /// A phone on 127.0.0.1 port 0 that takes calls as `answer` says, answering offers with the
    /// SDP `sdp_answer` makes of them (e.g. `move |offer| rtp::sdp_answer_for(addr, offer)`).
    pub async fn listen(
        answer: Answer,
        sdp_answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Phone {
        Phone::start(answer, Some(Arc::new(sdp_answer))).await
    }

    async fn start(answer: Answer, sdp_answerer: Option<SdpAnswerer>) -> Phone {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("a free UDP port");
        let addr = socket.local_addr().expect("a bound address");
        let (changes, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            socket,
            addr,
            state: Mutex::new(State {
                answer: Some(answer),
                sdp_answerer,
                ..State::default()
            }),
            changes,
        });
        let receiver = tokio::spawn(receive(inner.clone()));
        Phone { inner, receiver }
    }

    /// The phone's address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// A SIP URI of this phone, `sip:USER@127.0.0.1:PORT`.
    pub fn uri(&self, user: &str) -> String {
        self.inner.local_uri(user).to_string()
    }

    /// How the next INVITEs are answered.
    pub fn set_answer(&self, answer: Answer) {
        self.inner.lock().answer = Some(answer);
    }

    /// How offers of the next INVITEs are answered.
    pub fn set_sdp_answer(&self, sdp_answer: impl Fn(&str) -> String + Send + Sync + 'static) {
        self.inner.lock().sdp_answerer = Some(Arc::new(sdp_answer));
    }

    /// Every message sent and received so far.
    pub fn trace(&self) -> Vec<Traced> {
        self.inner.lock().trace.clone()
    }

    /// The trace as text, one message per paragraph, for failure messages.
    pub fn trace_text(&self) -> String {
        self.inner.trace_text(None)
    }

    /// Sends raw bytes to `to` (they are not traced).
    pub async fn send_raw(&self, to: SocketAddr, bytes: &[u8]) {
        self.inner
            .socket
            .send_to(bytes, to)
            .await
            .expect("sending a datagram");
    }

    /// A new out-of-dialog request from this phone (user `tester`) to `request_uri`, with
    /// fresh Call-ID, From tag and branch: Via, From, To, Call-ID, CSeq 1, Max-Forwards 70 and
    /// Contact. Send it with [`Phone::request`].
    pub fn new_request(&self, method: Method, request_uri: &str) -> Request {
        let uri = Uri::parse(request_uri).expect("a valid Request-URI");
        let mut from = NameAddr::new(self.inner.local_uri("tester"));
        from.set_tag(&Tag::random());
        let to = NameAddr::new(uri.clone());
        let mut headers = Headers::new(
            from,
            to,
            CallId::random(),
            CSeq {
                seq: 1,
                method: method.clone(),
            },
        );
        headers.via = vec![self.inner.via()];
        headers.max_forwards = Some(70);
        headers.contact = Contact::Addresses(vec![NameAddr::new(self.inner.local_uri("tester"))]);
        Request {
            method,
            uri,
            headers,
            body: Bytes::new(),
        }
    }

    /// Sends a non-INVITE `request` to `to`, retransmitting per RFC 3261 §17.1.2.2, and returns
    /// its final response.
    pub async fn request(&self, to: SocketAddr, request: Request) -> Response {
        self.inner.non_invite_transaction(request, to).await
    }

    /// Sends OPTIONS to `to` and returns the final response.
    pub async fn options(&self, to: SocketAddr) -> Response {
        let request = self.new_request(Method::Options, &format!("sip:ping@{to}"));
        self.request(to, request).await
    }

    /// Waits for the `index`th (0-based, in arrival order) request with `method` the phone
    /// received, in any call or none, and returns it.
    pub async fn wait_request(&self, method: Method, index: usize, timeout: Duration) -> Request {
        let what = format!("request #{index} with method {method}");
        self.inner
            .wait(timeout, &what, None, |state| {
                state
                    .trace
                    .iter()
                    .filter(|t| t.direction == Direction::Received)
                    .filter_map(|t| match &t.message {
                        Message::Request(r) if r.method == method => Some(r.clone()),
                        _ => None,
                    })
                    .nth(index)
            })
            .await
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new request in call `call_id`'s dialog, and where it goes.
    fn dialog_request(&self, call_id: &CallId, method: Method) -> (Request, SocketAddr) {
        let mut state = self.lock();
        let dialog = state.dialogs.get_mut(call_id).expect("the call's dialog");
        dialog.request(self, method)
    }

    /// Sends a non-INVITE `method` in call `call_id`'s dialog, with an optional
    /// `(content type, body)`, and returns its final response.
    async fn in_dialog(
        self: &Arc<Self>,
        call_id: &CallId,
        method: Method,
        body: Option<(&str, &str)>,
    ) -> Response {
        let (mut request, to) = self.dialog_request(call_id, method);
        if let Some((content_type, body)) = body {
            request.headers.push("Content-Type", content_type);
            request.body = Bytes::from(body.to_owned());
        }
        self.non_invite_transaction(request, to).await
    }

    /// Sends a re-INVITE offering `sdp` in call `call_id`'s dialog (either direction), ACKs its
    /// final response, and returns it.
    async fn reinvite(self: &Arc<Self>, call_id: &CallId, sdp: &str) -> Response {
        self.reinvite_answering(call_id, sdp, None).await
    }

    /// A re-INVITE offering `sdp`, or none if it is empty: then `answer` makes the answer the
    /// ACK carries from the offer of the 2xx (RFC 3264 §4, a late offer).
    async fn reinvite_answering(
        self: &Arc<Self>,
        call_id: &CallId,
        sdp: &str,
        answer: Option<&(dyn Fn(&str) -> String + Sync)>,
    ) -> Response {
        let (mut request, to) = self.dialog_request(call_id, Method::Invite);
        if !sdp.is_empty() {
            request.headers.push("Content-Type", "application/sdp");
            request.body = Bytes::from(sdp.to_owned());
        }
        let cseq = request.headers.cseq.seq;
        let via = request.headers.via.clone();
        let response = self.non_invite_transaction(request, to).await;
        // RFC 3261 §13.2.2.4: the ACK for a 2xx is its own transaction in the dialog; §17.1.1.3:
        // the ACK for a non-2xx belongs to the re-INVITE's transaction (its branch) and takes
        // the response's To. Both carry the re-INVITE's CSeq number.
        let (mut ack, to) = self.dialog_request(call_id, Method::Ack);
        ack.headers.cseq.seq = cseq;
        if !response.status.is_success() {
            ack.headers.via = via;
            ack.headers.to = response.headers.to.clone();
        }
        if let (Some(answer), true) = (answer, response.status.is_success()) {
            let offer = String::from_utf8_lossy(&response.body).into_owned();
            ack.headers.push("Content-Type", "application/sdp");
            ack.body = Bytes::from(answer(&offer));
        }
        self.transmit(Message::Request(ack), to).await;
        response
    }

    fn local_uri(&self, user: &str) -> Uri {
        Uri::sip(
            Some(user),
            Host::from(self.addr.ip()),
            Some(self.addr.port()),
        )
    }

    /// A Via for a new request: a fresh branch, and rport (RFC 3581).
    fn via(&self) -> Via {
        Via::new(
            Transport::Udp,
            Host::from(self.addr.ip()),
            Some(self.addr.port()),
            &Branch::random(),
        )
    }

    /// Sends a message and adds it to the trace.
    async fn transmit(&self, message: Message, to: SocketAddr) {
        let bytes = message.to_bytes();
        // A send error (say, ICMP unreachable from an earlier datagram) is the network's
        // business: the test sees the missing answer.
        let _ = self.socket.send_to(&bytes, to).await;
        self.record(Direction::Sent, to, message);
    }

    fn record(&self, direction: Direction, peer: SocketAddr, message: Message) {
        let mut state = self.lock();
        state.trace.push(Traced {
            direction,
            peer,
            message,
            at: Instant::now(),
        });
        state.version += 1;
        let version = state.version;
        drop(state);
        self.changes.send_replace(version);
    }

    /// Waits until `check` finds what it looks for in the state; panics after `timeout` with
    /// `what` and the trace (of `call_id` only, if given).
    async fn wait<T>(
        &self,
        timeout: Duration,
        what: &str,
        call_id: Option<&CallId>,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> T {
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = check(&self.lock()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                panic!(
                    "phone {}: no {what} within {timeout:?}. Trace:\n{}",
                    self.addr,
                    self.trace_text(call_id)
                );
            }
        }
    }

    fn trace_text(&self, call_id: Option<&CallId>) -> String {
        let state = self.lock();
        let Some(first) = state.trace.first().map(|t| t.at) else {
            return String::from("(nothing sent or received)\n");
        };
        let mut text = String::new();
        for traced in state
            .trace
            .iter()
            .filter(|t| call_id.is_none_or(|id| t.message.headers().call_id == *id))
        {
            let arrow = match traced.direction {
                Direction::Received => "<-",
                Direction::Sent => "->",
            };
            let _ = writeln!(
                text,
                "+{:?} {arrow} {}\n{}",
                traced.at - first,
                traced.peer,
                String::from_utf8_lossy(&traced.message.to_bytes()).trim_end()
            );
        }
        text
    }

    /// RFC 3261 §17.1.2.2: sends `request`, retransmits it at T1, doubling up to T2, until a
    /// final response with its branch and method arrives; returns that response.
    async fn non_invite_transaction(
        self: &Arc<Self>,
        request: Request,
        to: SocketAddr,
    ) -> Response {
        let branch = request.branch().expect("a request with a Via branch");
        let method = request.method.clone();
        let call_id = request.headers.call_id.clone();
        let retransmit = tokio::spawn({
            let inner = self.clone();
            let message = Message::Request(request);
            let branch = branch.clone();
            let method = method.clone();
            async move {
                let mut interval = T1;
                loop {
                    inner.transmit(message.clone(), to).await;
                    tokio::time::sleep(interval).await;
                    if inner.lock().response_to(&branch, &method, true).is_some() {
                        return;
                    }
                    interval = (interval * 2).min(T2);
                }
            }
        });
        let what = format!("final response to {method}");
        let response = self
            .wait(RESPONSE_TIMEOUT, &what, Some(&call_id), |state| {
                state.response_to(&branch, &method, true)
            })
            .await;
        retransmit.abort();
        response
    }

    /// Sends `response` to `to`, remembering it for retransmissions of its request.
    async fn respond(&self, request: &Request, response: Response, to: SocketAddr) {
        if let Some(branch) = request.branch() {
            self.lock().responses.insert(
                (branch.as_str().to_owned(), request.method.clone()),
                (response.clone(), to),
            );
        }
        self.transmit(Message::Response(response), to).await;
    }
}

impl State {
    /// The first response received with `branch` and `method` (final only, if asked).
    fn response_to(&self, branch: &Branch, method: &Method, final_only: bool) -> Option<Response> {
        self.trace.iter().find_map(|t| match &t.message {
            Message::Response(r)
                if t.direction == Direction::Received
                    && r.headers.cseq.method == *method
                    && r.headers.top_via().and_then(Via::branch).as_ref() == Some(branch)
                    && (!final_only || r.status.is_final()) =>
            {
                Some(r.clone())
            }
            _ => None,
        })
    }

    /// Responses received for the INVITE of `call_id`, in order.
    fn invite_responses(&self, call_id: &CallId) -> Vec<Response> {
        self.trace
            .iter()
            .filter(|t| t.direction == Direction::Received)
            .filter_map(|t| match &t.message {
                Message::Response(r)
                    if r.headers.call_id == *call_id && r.headers.cseq.method == Method::Invite =>
                {
                    Some(r.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// The `index`th request with `method` received in the call `call_id`.
    fn request_in(&self, call_id: &CallId, method: &Method, index: usize) -> Option<Request> {
        self.trace
            .iter()
            .filter(|t| t.direction == Direction::Received)
            .filter_map(|t| match &t.message {
                Message::Request(r) if r.headers.call_id == *call_id && r.method == *method => {
                    Some(r.clone())
                }
                _ => None,
            })
            .nth(index)
    }
}

impl Dialog {
    /// A request inside this dialog (RFC 3261 §12.2.1.1) and where to send it: the Request-URI
    /// is the remote target, Route the route set, the CSeq one more than the last.
    fn request(&mut self, inner: &Inner, method: Method) -> (Request, SocketAddr) {
        self.local_cseq += 1;
        let (mut local, mut remote) = if self.is_caller {
            (
                self.invite.headers.from.clone(),
                self.invite.headers.to.clone(),
            )
        } else {
            (
                self.invite.headers.to.clone(),
                self.invite.headers.from.clone(),
            )
        };
        local.set_tag(&self.local_tag);
        if let Some(tag) = &self.remote_tag {
            remote.set_tag(tag);
        }
        let target = self
            .remote_target
            .clone()
            .unwrap_or_else(|| remote.uri.clone());
        let mut headers = Headers::new(
            local,
            remote,
            self.invite.headers.call_id.clone(),
            CSeq {
                seq: self.local_cseq,
                method: method.clone(),
            },
        );
        headers.via = vec![inner.via()];
        headers.max_forwards = Some(70);
        headers.route = self.route_set.clone();
        headers.contact = Contact::Addresses(vec![NameAddr::new(inner.local_uri("tester"))]);
        // Loose routing (RFC 3261 §16.12): the first Route's address, else the target's.
        let to = self
            .route_set
            .first()
            .and_then(|route| uri_addr(&route.uri))
            .or_else(|| uri_addr(&target))
            .unwrap_or(self.peer);
        let request = Request {
            method,
            uri: target,
            headers,
            body: Bytes::new(),
        };
        (request, to)
    }
}

/// The address of a SIP URI with an IP host (port 5060 when absent).
pub fn uri_addr(uri: &Uri) -> Option<SocketAddr> {
    let sip = uri.as_sip()?;
    Some(SocketAddr::new(sip.host.ip()?, sip.port.unwrap_or(5060)))
}

/// A response to `request` with `status`, the To tag `tag` (unless the request has one) and,
/// for dialog-creating answers, our Contact.
fn response(inner: &Inner, request: &Request, status: u16, tag: &Tag) -> Response {
    let status = StatusCode::new(status).expect("a status code 100-699");
    let mut response = request.response(status, Some(tag));
    if request.method == Method::Invite && status.code() > 100 && status.code() < 300 {
        response.headers.contact =
            Contact::Addresses(vec![NameAddr::new(inner.local_uri("tester"))]);
    }
    response
}

async fn receive(inner: Arc<Inner>) {
    let mut buffer = vec![0u8; 65536];
    loop {
        let Ok((length, from)) = inner.socket.recv_from(&mut buffer).await else {
            // ICMP errors from an earlier send surface here; keep listening.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let Ok(message) = parse(&buffer[..length]) else {
            continue;
        };
        inner.record(Direction::Received, from, message.clone());
        match message {
            Message::Response(response) => outgoing::handle_response(&inner, response).await,
            Message::Request(request) => handle_request(&inner, request, from).await,
        }
    }
}

async fn handle_request(inner: &Arc<Inner>, request: Request, from: SocketAddr) {
    // RFC 3261 §17.2: a retransmitted request gets the response its first copy got.
    if request.method != Method::Ack {
        let key = request
            .branch()
            .map(|b| (b.as_str().to_owned(), request.method.clone()));
        let cached = key.and_then(|key| inner.lock().responses.get(&key).cloned());
        if let Some((response, to)) = cached {
            inner.transmit(Message::Response(response), to).await;
            return;
        }
    }
    let call_id = request.headers.call_id.clone();
    let in_dialog = request.headers.to.tag().is_some();
    match request.method {
        Method::Invite if !in_dialog => incoming::handle_invite(inner, request, from).await,
        Method::Ack => incoming::handle_ack(inner, &request),
        Method::Cancel => incoming::handle_cancel(inner, request, from).await,
        _ => {
            // BYE, re-INVITE, INFO, UPDATE, OPTIONS...: 200 if we know the dialog (or the
            // request is outside any), 481 otherwise (RFC 3261 §12.2.2).
            let (status, tag, sdp) = {
                let mut state = inner.lock();
                match state.dialogs.get_mut(&call_id) {
                    Some(dialog) => {
                        if request.method == Method::Invite && !request.body.is_empty() {
                            dialog.remote_sdp =
                                Some(String::from_utf8_lossy(&request.body).into_owned());
                        }
                        let sdp = (request.method == Method::Invite)
                            .then(|| dialog.local_sdp.clone())
                            .flatten();
                        (200, dialog.local_tag.clone(), sdp)
                    }
                    None if !in_dialog => (200, Tag::random(), None),
                    None => (481, Tag::random(), None),
                }
            };
            let mut answer = response(inner, &request, status, &tag);
            if let Some(sdp) = sdp {
                answer.headers.push("Content-Type", "application/sdp");
                answer.body = Bytes::from(sdp);
            }
            inner.respond(&request, answer, from).await;
        }
    }
}
