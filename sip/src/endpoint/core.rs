//! The endpoint's state and decisions, driven by `handle_*(now, ..)` and drained with
//! `poll_transmit`/`poll_timeout`. No sockets, no clock: the shell in `super::run` does that.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::limit::{RateLimit, SourceLimiter};
use super::wheel::Wheel;
use super::{CallEvent, Claim, ClientEvent, Command, IncomingCall, Origin, Shared};
use crate::auth::{Challenger, Verdict};
use crate::config::{Config, ListenTransport, User};
use crate::message::{
    CallId, Headers, Message, Method, Request, Response, Scheme, StatusCode, Tag,
};
use crate::transaction::{
    ClientInvite, ClientNonInvite, Event, Key, ServerInvite, ServerNonInvite, Timers,
};
use crate::transport::{Inbound, Received, Target};

/// Methods we implement, for Allow (RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO";
/// Retry-After sent with 503 while draining (seconds).
const DRAIN_RETRY_AFTER: u32 = 30;
/// Inbound messages waiting behind the one being handled beyond which new INVITEs are refused
/// with 503: the endpoint is falling behind, and every call it accepts now adds work (and, over
/// UDP, retransmissions) to a queue that only grows; refusing new calls lets the ones in progress
/// finish (RFC 3261 §21.5.4). At ~10 µs a message, 1,024 queued messages is ~10 ms of lag.
pub const OVERLOAD_BACKLOG: usize = 1024;
/// Retry-After sent with an overload 503 (seconds).
const OVERLOAD_RETRY_AFTER: u32 = 5;
/// Nonce lifetime for digest challenges.
const NONCE_LIFETIME: Duration = Duration::from_secs(300);

enum ServerTransaction {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

enum ClientTransaction {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

/// Delegates the shared sans-IO surface of the two transaction kinds of one side.
macro_rules! delegate {
    ($value:expr, $t:ident => $body:expr) => {
        match $value {
            Self::Invite($t) => $body,
            Self::NonInvite($t) => $body,
        }
    };
}

impl ServerTransaction {
    fn poll_transmit(&mut self) -> Option<Bytes> {
        delegate!(self, t => t.poll_transmit())
    }
    fn poll_event(&mut self) -> Option<Event> {
        delegate!(self, t => t.poll_event())
    }
    fn poll_timeout(&self) -> Option<Instant> {
        delegate!(self, t => t.poll_timeout())
    }
    fn handle_timeout(&mut self, now: Instant) {
        delegate!(self, t => t.handle_timeout(now))
    }
    fn handle_request(&mut self, request: Request, now: Instant) {
        delegate!(self, t => t.handle_request(request, now))
    }
    fn send_response(&mut self, response: Response, now: Instant) {
        delegate!(self, t => t.send_response(response, now))
    }
    fn is_terminated(&self) -> bool {
        delegate!(self, t => t.is_terminated())
    }
    /// The request, until the final response (see the transactions' `request`).
    fn request(&self) -> Option<&Request> {
        delegate!(self, t => t.request())
    }

    /// The same, shared with the TU without a copy.
    fn shared_request(&self) -> Option<Arc<Request>> {
        delegate!(self, t => t.shared_request())
    }
}

impl ClientTransaction {
    fn poll_transmit(&mut self) -> Option<Bytes> {
        delegate!(self, t => t.poll_transmit())
    }
    fn poll_event(&mut self) -> Option<Event> {
        delegate!(self, t => t.poll_event())
    }
    fn poll_timeout(&self) -> Option<Instant> {
        delegate!(self, t => t.poll_timeout())
    }
    fn handle_timeout(&mut self, now: Instant) {
        delegate!(self, t => t.handle_timeout(now))
    }
    fn handle_response(&mut self, response: Response, now: Instant) {
        delegate!(self, t => t.handle_response(response, now))
    }
    fn is_terminated(&self) -> bool {
        delegate!(self, t => t.is_terminated())
    }
}

struct ServerEntry {
    /// The key the table holds it under, shared with its timers.
    key: Arc<Key>,
    transaction: ServerTransaction,
    reply_to: Target,
    /// The call that owns this INVITE transaction, if it was handed to call control.
    call: Option<mpsc::UnboundedSender<CallEvent>>,
    /// Local To tag of an INVITE's responses.
    local_tag: Option<Tag>,
    /// Key in the merged-request index (§8.2.2.2), removed with the transaction.
    merge_key: Option<MergeKey>,
    /// Who sent the INVITE or REGISTER, as admission decided.
    origin: Option<Origin>,
    /// For a request handed to call control: when it must have been answered. Non-INVITE
    /// server transactions have no timer of their own, so a call task that never answers would
    /// otherwise keep the transaction forever.
    answer_by: Option<Instant>,
    /// The earliest of this transaction's deadlines queued in the timer wheel.
    armed: Option<Instant>,
}

struct ClientEntry {
    /// The key the table holds it under, shared with its timers.
    key: Arc<Key>,
    transaction: ClientTransaction,
    target: Target,
    /// Where the transaction's responses go; `None` once the receiver is gone (the owner check
    /// releases it, so a lingering transaction does not keep the channel alive).
    events: Option<mpsc::UnboundedSender<ClientEvent>>,
    /// For an INVITE we sent: the owner of the dialogs its responses create.
    dialog: Option<mpsc::UnboundedSender<CallEvent>>,
    /// The earliest of this transaction's deadlines queued in the timer wheel.
    armed: Option<Instant>,
}

/// RFC 3261 §8.2.2.2: requests without a To tag are "merged" when From tag, Call-ID and CSeq
/// equal those of a request in a live transaction, but the transaction differs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MergeKey {
    from_tag: Option<Tag>,
    call_id: CallId,
    cseq: u32,
    method: Method,
}

/// What admission decided for a new request.
enum Admission {
    /// Answer at once, keeping no state (boxed: one allocation beside the dozens that building
    /// a response takes, and it keeps the enum small).
    Stateless(Box<Response>),
    /// Create a server transaction; for INVITE and REGISTER, who sent it.
    Stateful(Option<Origin>),
}

/// Dialogs are routed on (Call-ID, our tag, their tag).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DialogKey {
    call_id: CallId,
    local_tag: Tag,
    remote_tag: Tag,
}

struct DialogRoute {
    call: mpsc::UnboundedSender<CallEvent>,
    /// The INVITE server transaction whose 2xx the dialog's next ACK confirms: the dialog's
    /// first INVITE where we are the UAS, then the peer's latest re-INVITE we answered 2xx (in
    /// a dialog we created as UAC too, where there is none before the peer's first re-INVITE).
    invite: Option<Key>,
}

/// Whose timer fired. Keys are shared with the tables (a transaction arms several timers, and
/// a busy endpoint holds ~100,000 of them: a copy of the key each was an allocation and 80
/// bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimerOwner {
    Server(Arc<Key>),
    Client(Arc<Key>),
    /// A check on the server or client transaction with this key: whether call control let
    /// go of it (see [`Core::check_owner`]).
    Owner(Arc<Key>),
}

/// The endpoint's tables, hashed with foldhash (seeded per process) rather than SipHash: each
/// doubling rehashes every entry while every SIP message waits, and at thousands of calls per
/// second the transaction tables hold a hundred thousand lingering transactions.
type Table<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// An empty transaction table with room for [`TRANSACTIONS_CAPACITY`] entries, so the first
/// doublings of a busy start do not happen under load.
fn transaction_table<V>() -> Table<Arc<Key>, V> {
    HashMap::with_capacity_and_hasher(TRANSACTIONS_CAPACITY, Default::default())
}

/// Transactions a table holds before its first doubling: 32 Ki buckets of a shared key and a
/// box, about 0.5 MB per table (computed from the sizes, not measured).
const TRANSACTIONS_CAPACITY: usize = 1 << 14;

/// How long after a request is handed over, and then how often while the transaction lives,
/// its owner is checked (see [`Core::check_owner`]).
const OWNER_CHECK: Duration = Duration::from_secs(4);

/// The endpoint's state machine.
pub struct Core {
    timers: Timers,
    trunks: Vec<crate::config::Trunk>,
    users: Vec<User>,
    shared: Arc<Shared>,
    calls: mpsc::Sender<IncomingCall>,
    challenger: Challenger,
    // Boxed: tens of thousands of transactions live at a few hundred calls per second (each
    // lingers 32 s), and growing a table of inline entries moved megabytes in one go, a stall
    // of the whole endpoint; boxes make a rehash move pointers.
    servers: Table<Arc<Key>, Box<ServerEntry>>,
    clients: Table<Arc<Key>, Box<ClientEntry>>,
    merged: Table<MergeKey, Key>,
    dialogs: Table<DialogKey, DialogRoute>,
    /// Timer deadlines; stale entries are skipped when they fire.
    deadlines: Wheel<TimerOwner>,
    /// The per-source rate limit of requests from sources that are not trunks.
    limiter: Option<SourceLimiter>,
    /// Inbound messages queued behind the current one (see [`Core::set_backlog`]).
    backlog: usize,
    transmits: VecDeque<(Target, Bytes)>,
}

impl Core {
    pub(super) fn new(
        config: &Config,
        shared: Arc<Shared>,
        calls: mpsc::Sender<IncomingCall>,
        now: Instant,
    ) -> Core {
        Core {
            timers: config.timers,
            trunks: config.trunks.clone(),
            users: config.users.clone(),
            shared,
            calls,
            challenger: Challenger::new(config.realm.clone(), NONCE_LIFETIME, now)
                .with_algorithms(&config.digest_algorithms),
            servers: transaction_table(),
            clients: transaction_table(),
            merged: Table::default(),
            dialogs: Table::default(),
            deadlines: Wheel::new(now),
            limiter: config
                .rate_limit_per_source
                .map(|rate| SourceLimiter::new(RateLimit::per_second(rate), now)),
            backlog: 0,
            transmits: VecDeque::new(),
        }
    }

    /// The next bytes to put on the wire.
    pub fn poll_transmit(&mut self) -> Option<(Target, Bytes)> {
        self.transmits.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.poll_timeout()
    }

    /// Fires every transaction timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(owner) = self.deadlines.pop(now) {
            match owner {
                TimerOwner::Server(key) => {
                    let Some(entry) = self.servers.get_mut(&key) else {
                        continue;
                    };
                    disarm(&mut entry.armed, now);
                    if entry.transaction.poll_timeout().is_some_and(|t| t <= now) {
                        entry.transaction.handle_timeout(now);
                    }
                    self.drive_server(&key);
                }
                TimerOwner::Client(key) => {
                    let Some(entry) = self.clients.get_mut(&key) else {
                        continue;
                    };
                    disarm(&mut entry.armed, now);
                    if entry.transaction.poll_timeout().is_some_and(|t| t <= now) {
                        entry.transaction.handle_timeout(now);
                    }
                    self.drive_client(&key);
                }
                TimerOwner::Owner(key) => self.check_owner(now, key),
            }
        }
    }

    /// Periodic sweeps: expired registrations, dialog routes whose call has gone, and the
    /// rate limiter's idle sources. Nothing here walks the transaction tables: at thousands of
    /// calls per second they hold a hundred thousand lingering transactions, and a walk
    /// stalled every SIP message for tens of milliseconds. Transactions are checked one at a
    /// time by their own timers instead ([`Core::check_owner`]).
    pub fn housekeeping(&mut self, now: Instant) {
        self.shared.registrar().expire(now);
        self.dialogs.retain(|_, route| !route.call.is_closed());
        self.shared
            .stats
            .dialogs
            .store(self.dialogs.len() as u64, Ordering::Relaxed);
        if let Some(limiter) = &mut self.limiter {
            limiter.sweep(now);
            self.shared
                .stats
                .rate_limited_sources
                .store(limiter.len() as u64, Ordering::Relaxed);
        }
    }

    /// Arms a check of the transaction with `key` at `at` ([`Core::check_owner`]).
    fn check_owner_at(&mut self, at: Instant, key: &Arc<Key>) {
        self.deadlines
            .insert(at, TimerOwner::Owner(Arc::clone(key)));
    }

    /// One transaction's check on its owner, [`OWNER_CHECK`] after it was handed over and then
    /// every [`OWNER_CHECK`] while it lives:
    /// - a request call control was given and has not answered, although its call is gone
    ///   (an INVITE) or its time is up (`answer_by`), gets 500, so that no transaction outlives
    ///   its owner;
    /// - a sender whose receiver is gone is dropped. A transaction lingers 32 s after its final
    ///   response (Timers J, K, L, M over UDP), and the sender it holds keeps the whole channel
    ///   allocated: at hundreds of calls per second, megabytes nobody would read.
    fn check_owner(&mut self, now: Instant, key: Arc<Key>) {
        fn release<T>(sender: &mut Option<mpsc::UnboundedSender<T>>) {
            if sender.as_ref().is_some_and(|sender| sender.is_closed()) {
                *sender = None;
            }
        }
        if let Some(entry) = self.servers.get_mut(&key) {
            let call_gone = entry.call.as_ref().is_some_and(|call| call.is_closed())
                && matches!(&entry.transaction, ServerTransaction::Invite(t) if t.is_proceeding());
            let late = entry.answer_by.is_some_and(|at| at <= now);
            release(&mut entry.call);
            let watching = entry.call.is_some() || entry.answer_by.is_some();
            if call_gone || late {
                entry.answer_by = None;
                entry.call = None;
                tracing::warn!(?key, "call control did not answer a request; answering 500");
                // A transaction that already sent its final response discards this one.
                self.reply(now, &key, StatusCode::SERVER_INTERNAL_ERROR, |r| {
                    r.with_reason("Call Control Did Not Answer")
                });
            } else if watching {
                let next = match entry.answer_by {
                    Some(at) => at.min(now + OWNER_CHECK),
                    None => now + OWNER_CHECK,
                };
                self.check_owner_at(next, &key);
            }
        } else if let Some(entry) = self.clients.get_mut(&key) {
            release(&mut entry.events);
            release(&mut entry.dialog);
            if entry.events.is_some() || entry.dialog.is_some() {
                self.check_owner_at(now + OWNER_CHECK, &key);
            }
        }
    }

    /// Whether a request from `source` may be handled: trunks are not limited (their
    /// allow-list already vouches for them); anyone else gets [`RateLimit`]'s budget.
    fn within_rate_limit(&mut self, now: Instant, source: std::net::IpAddr) -> bool {
        match &mut self.limiter {
            Some(limiter) if trunk_for(&self.trunks, source).is_none() => {
                limiter.admit(now, source)
            }
            _ => true,
        }
    }

    /// How many inbound messages wait behind the next one; the shell tells before each. Over
    /// [`OVERLOAD_BACKLOG`], new INVITEs are refused with 503.
    pub fn set_backlog(&mut self, backlog: usize) {
        self.backlog = backlog;
    }

    /// A message from a transport.
    pub fn handle_inbound(&mut self, now: Instant, inbound: Inbound) {
        self.deadlines.advance(now);
        let source = inbound.received;
        match inbound.message {
            Message::Request(request) => {
                self.shared.stats.count_request(&request.method);
                self.handle_request(now, request, &source);
            }
            Message::Response(response) => {
                self.shared.stats.count_response_in(response.status);
                self.handle_response(now, response);
            }
        }
    }

    /// A command from a handle.
    pub(super) fn handle_command(&mut self, now: Instant, command: Command) {
        self.deadlines.advance(now);
        match command {
            Command::Respond { key, response } => self.respond_in(now, &key, response),
            Command::SendRequest {
                request,
                target,
                events,
                dialog,
            } => self.start_client(now, request, target, events, dialog),
            Command::SendStateless { request, target } => {
                self.transmits.push_back((target, request.to_wire()));
            }
        }
    }

    fn handle_request(&mut self, now: Instant, request: Request, from: &Received) {
        let Some(key) = Key::server(&request) else {
            return;
        };
        if !self.within_rate_limit(now, from.source.ip()) {
            self.shared
                .stats
                .rate_limited
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if request.method == Method::Ack {
            self.handle_ack(now, key, request);
            return;
        }
        if let Some(entry) = self.servers.get_mut(&key) {
            // A retransmission: the transaction absorbs it (and re-sends its last response).
            entry.transaction.handle_request(request, now);
            self.drive_server(&key);
            return;
        }
        let Some(via) = request.headers.top_via() else {
            return;
        };
        let reply_to = Target::for_response(via, from);
        let origin = match self.admit(now, &request, from) {
            Admission::Stateless(response) => {
                self.shared.stats.count_response_out(response.status);
                self.transmits.push_back((reply_to, response.to_wire()));
                return;
            }
            Admission::Stateful(origin) => origin,
        };
        let reliable = from.transport == ListenTransport::Tcp;

        let merge_key = request.headers.to.tag().is_none().then(|| MergeKey {
            from_tag: request.headers.from.tag(),
            call_id: request.headers.call_id.clone(),
            cseq: request.headers.cseq.seq,
            method: request.method.clone(),
        });
        let merged = merge_key
            .as_ref()
            .and_then(|m| self.merged.get(m))
            .is_some_and(|other| *other != key);

        let is_invite = request.method == Method::Invite;
        let transaction = if is_invite {
            ServerTransaction::Invite(ServerInvite::new(request, reliable, self.timers, now))
        } else {
            ServerTransaction::NonInvite(ServerNonInvite::new(request, reliable, self.timers, now))
        };
        let local_tag = is_invite.then(Tag::random);
        if let (Some(m), false) = (&merge_key, merged) {
            self.merged.insert(m.clone(), key.clone());
        }
        let shared_key = Arc::new(key.clone());
        self.servers.insert(
            Arc::clone(&shared_key),
            Box::new(ServerEntry {
                key: shared_key,
                transaction,
                reply_to,
                call: None,
                local_tag,
                merge_key: if merged { None } else { merge_key },
                answer_by: None,
                origin,
                armed: None,
            }),
        );
        self.shared
            .stats
            .server_transactions
            .fetch_add(1, Ordering::Relaxed);

        if merged {
            self.reply(now, &key, StatusCode::LOOP_DETECTED, |r| {
                r.with_reason("Merged Request")
            });
        } else {
            self.dispatch(now, &key, from);
        }
        self.drive_server(&key);
    }

    /// The UAS core's decision for a new request (RFC 3261 §8.2), then per method.
    fn dispatch(&mut self, now: Instant, key: &Key, from: &Received) {
        let Some(entry) = self.servers.get(key) else {
            return;
        };
        // A new transaction: no response has been sent yet.
        let Some(request) = entry.transaction.request() else {
            return;
        };
        let tag = entry.local_tag.clone().unwrap_or_else(Tag::random);
        if let Some(response) = simple_answer(request, &tag) {
            self.respond_in(now, key, response);
            return;
        }
        match request.method {
            Method::Invite => self.handle_invite(now, key, from),
            Method::Cancel => self.handle_cancel(now, key),
            Method::Register => self.handle_register(now, key, from),
            // `simple_answer` has answered every other method.
            _ => self.route_in_dialog(now, key),
        }
    }

    fn handle_invite(&mut self, now: Instant, key: &Key, from: &Received) {
        let Some(request) = self.servers.get(key).and_then(|e| e.transaction.request()) else {
            return;
        };
        if request.headers.to.tag().is_some() {
            // A re-INVITE: it belongs to a dialog.
            self.route_in_dialog(now, key);
            return;
        }
        if !request.body.is_empty()
            && !request
                .headers
                .content_type()
                .is_some_and(|ct| media_type_is(ct, "application/sdp"))
        {
            self.reply(now, key, StatusCode::UNSUPPORTED_MEDIA_TYPE, |mut r| {
                r.headers.push("Accept", "application/sdp");
                r
            });
            return;
        }
        // Admission refuses INVITEs once a drain has begun; this check closes the window in
        // which a drain begins between admission and the hand-over (see `Claim`).
        let (claim, draining) = Claim::new(&self.shared);
        if draining {
            self.reply(now, key, StatusCode::SERVICE_UNAVAILABLE, |mut r| {
                r.headers.push("Retry-After", DRAIN_RETRY_AFTER.to_string());
                r
            });
            return;
        }
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        let (Some(origin), Some(request)) =
            (entry.origin.clone(), entry.transaction.shared_request())
        else {
            // Admission gives every out-of-dialog INVITE an origin; nothing else gets here,
            // and only unanswered.
            return;
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let local_tag = entry.local_tag.clone().unwrap_or_else(Tag::random);
        let call = IncomingCall {
            request,
            source: from.source,
            origin,
            local_tag,
            key: key.clone(),
            events: events_rx,
            claim: Some(claim),
        };
        entry.call = Some(events_tx);
        let owner = Arc::clone(&entry.key);
        self.check_owner_at(now + OWNER_CHECK, &owner);
        if let Err(e) = self.calls.try_send(call) {
            // Call control is saturated or gone: refuse cleanly rather than queue without bound.
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "Overloaded",
                mpsc::error::TrySendError::Closed(_) => "No Call Control",
            };
            if let Some(entry) = self.servers.get_mut(key) {
                entry.call = None;
            }
            self.reply(now, key, StatusCode::SERVICE_UNAVAILABLE, |r| {
                r.with_reason(reason)
            });
        }
    }

    /// Decides, before any transaction state exists, whether a request is answered at once
    /// (RFC 3261 §8.2.7 allows a stateless UAS) or gets a transaction. Everything a hostile or
    /// scanning peer can cause without credentials is stateless: out-of-dialog OPTIONS, INVITEs
    /// from non-trunk sources without valid credentials (407/403), REGISTERs without valid
    /// credentials (401/403), and INVITEs while draining (503). No state is kept for them and no
    /// response is retransmitted (a lost one is regenerated when the peer retransmits), so a
    /// flood can neither fill memory nor be amplified by Timer G.
    fn admit(&mut self, now: Instant, request: &Request, from: &Received) -> Admission {
        let out_of_dialog = request.headers.to.tag().is_none();
        match request.method {
            Method::Options if out_of_dialog => simple_answer(request, &Tag::random())
                .map_or(Admission::Stateful(None), |r| {
                    Admission::Stateless(Box::new(r))
                }),
            Method::Invite if out_of_dialog => {
                if self.shared.draining.load(Ordering::Relaxed) {
                    let mut r =
                        request.response(StatusCode::SERVICE_UNAVAILABLE, Some(&Tag::random()));
                    r.headers.push("Retry-After", DRAIN_RETRY_AFTER.to_string());
                    return Admission::Stateless(Box::new(r));
                }
                if self.backlog > OVERLOAD_BACKLOG {
                    self.shared
                        .stats
                        .invites_shed
                        .fetch_add(1, Ordering::Relaxed);
                    let mut r = request
                        .response(StatusCode::SERVICE_UNAVAILABLE, Some(&Tag::random()))
                        .with_reason("Overloaded");
                    r.headers
                        .push("Retry-After", OVERLOAD_RETRY_AFTER.to_string());
                    return Admission::Stateless(Box::new(r));
                }
                if let Some(trunk) = trunk_for(&self.trunks, from.source.ip()) {
                    return Admission::Stateful(Some(Origin::Trunk(trunk.name.clone())));
                }
                match self.check_credentials(now, request, "Proxy-Authorization") {
                    Ok(user) => Admission::Stateful(Some(Origin::User(user))),
                    Err(refusal) => {
                        self.shared
                            .stats
                            .invites_refused
                            .fetch_add(1, Ordering::Relaxed);
                        Admission::Stateless(refusal)
                    }
                }
            }
            Method::Register => match self.check_credentials(now, request, "Authorization") {
                Ok(user) => Admission::Stateful(Some(Origin::User(user))),
                Err(refusal) => Admission::Stateless(refusal),
            },
            _ => Admission::Stateful(None),
        }
    }

    /// Digest-authenticates `request` against `[[sip_users]]`: the username, or the response to
    /// send instead (a 401/407 challenge, or 403). Unknown users and wrong passwords get the
    /// same answers, so scanning reveals nothing.
    fn check_credentials(
        &mut self,
        now: Instant,
        request: &Request,
        header: &str,
    ) -> Result<String, Box<Response>> {
        let (status, challenge_header) = if header == "Authorization" {
            (StatusCode::UNAUTHORIZED, "WWW-Authenticate")
        } else {
            (
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "Proxy-Authenticate",
            )
        };
        let refuse = |status| Box::new(request.response(status, Some(&Tag::random())));
        if self.users.is_empty() {
            // No phones configured: nobody can authenticate, and challenging would invite
            // pointless guessing.
            return Err(refuse(StatusCode::FORBIDDEN));
        }
        let users = &self.users;
        let verdict = self.challenger.verify(
            request,
            header,
            |name| {
                users
                    .iter()
                    .find(|u| u.username == name)
                    .map(|u| u.password.clone())
            },
            now,
        );
        match verdict {
            Verdict::Authenticated { username } => Ok(username),
            Verdict::Missing | Verdict::Stale => {
                let stale = matches!(verdict, Verdict::Stale);
                let mut r = refuse(status);
                for challenge in self.challenger.challenge(now, stale) {
                    r.headers.push(challenge_header, challenge);
                }
                Err(r)
            }
            Verdict::Rejected(reason) => {
                tracing::debug!(?reason, "digest credentials rejected");
                Err(refuse(StatusCode::FORBIDDEN))
            }
        }
    }

    fn handle_register(&mut self, now: Instant, key: &Key, from: &Received) {
        let Some(entry) = self.servers.get(key) else {
            return;
        };
        // Admission authenticated every REGISTER that has a transaction.
        let Some(Origin::User(user)) = entry.origin.clone() else {
            return;
        };
        let Some(request) = entry.transaction.request() else {
            return;
        };
        // RFC 3261 §10.3 step 6: an authenticated user may only change its own bindings.
        if request.headers.to.uri.user() != Some(user.as_str()) {
            self.reply(now, key, StatusCode::FORBIDDEN, |r| {
                r.with_reason("Not Your Address-of-Record")
            });
            return;
        }
        let response = self.shared.registrar().handle_register(
            request,
            &user,
            from.source,
            from.transport,
            now,
        );
        self.respond_in(now, key, response);
    }

    fn handle_cancel(&mut self, now: Instant, key: &Key) {
        let invite_key = self
            .servers
            .get(key)
            .and_then(|e| e.transaction.request().and_then(Key::invite_for_cancel))
            .filter(|k| self.servers.contains_key(k));
        let Some(invite_key) = invite_key else {
            // §9.2: no matching transaction.
            self.reply(now, key, StatusCode::CALL_DOES_NOT_EXIST, |r| r);
            return;
        };
        // §9.2: the CANCEL itself gets 200 whether or not the INVITE is still pending (a final
        // response already sent simply means the CANCEL has no effect). It goes first, the
        // INVITE's 487 right after.
        self.reply(now, key, StatusCode::OK, |r| r);
        let Some(invite) = self.servers.get_mut(&invite_key) else {
            return;
        };
        if !matches!(&invite.transaction, ServerTransaction::Invite(t) if t.is_proceeding()) {
            return;
        }
        let Some(request) = invite.transaction.request() else {
            return;
        };
        let terminated =
            request.response(StatusCode::REQUEST_TERMINATED, invite.local_tag.as_ref());
        invite.transaction.send_response(terminated, now);
        if let Some(call) = invite.call.take() {
            let _ = call.send(CallEvent::Cancelled);
        }
        self.shared
            .stats
            .count_response_out(StatusCode::REQUEST_TERMINATED);
        self.drive_server(&invite_key);
    }

    fn route_in_dialog(&mut self, now: Instant, key: &Key) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        let Some(request) = entry.transaction.shared_request() else {
            return;
        };
        let route = dialog_key(&request.headers).and_then(|d| self.dialogs.get(&d));
        match route {
            Some(route) if !route.call.is_closed() => {
                let _ = route
                    .call
                    .send(CallEvent::Request(request, Box::new(key.clone())));
                let answer_by = now + self.timers.transaction_timeout();
                entry.answer_by = Some(answer_by);
                let owner = Arc::clone(&entry.key);
                self.check_owner_at(answer_by, &owner);
            }
            // §12.2.2: a request for a dialog we do not know gets 481.
            _ => self.reply(now, key, StatusCode::CALL_DOES_NOT_EXIST, |r| r),
        }
    }

    fn handle_ack(&mut self, now: Instant, key: Key, request: Request) {
        if let Some(entry) = self.servers.get_mut(&key) {
            // The ACK for a non-2xx final: part of the INVITE transaction (§17.2.1).
            entry.transaction.handle_request(request, now);
            self.drive_server(&key);
            return;
        }
        // The ACK for a 2xx is its own transaction-less request, routed by dialog (§13.3.1.4).
        let Some(route) = dialog_key(&request.headers).and_then(|d| self.dialogs.get(&d)) else {
            return;
        };
        let Some(invite) = route.invite.clone() else {
            // No 2xx of ours in this dialog awaits an ACK (a dialog we created as UAC, before
            // the peer's first re-INVITE): nothing to confirm.
            return;
        };
        let cseq = request.headers.cseq.seq;
        let _ = route.call.send(CallEvent::Ack(Box::new(request)));
        if let Some(ServerEntry {
            transaction: ServerTransaction::Invite(t),
            ..
        }) = self.servers.get_mut(&invite).map(|entry| &mut **entry)
        {
            // Only the ACK of this INVITE (same CSeq number) stops its 2xx retransmissions.
            if t.cseq() == cseq {
                t.handle_ack(now);
            }
        }
        self.drive_server(&invite);
    }

    fn handle_response(&mut self, now: Instant, response: Response) {
        let Some(key) = Key::client_for_response(&response) else {
            return;
        };
        let Some(entry) = self.clients.get_mut(&key) else {
            // §17.1.3 / §18.1.2: a response matching no transaction is discarded.
            return;
        };
        entry.transaction.handle_response(response, now);
        self.drive_client(&key);
    }

    /// Sends a response built from the transaction's request by `edit`.
    fn reply(
        &mut self,
        now: Instant,
        key: &Key,
        status: StatusCode,
        edit: impl FnOnce(Response) -> Response,
    ) {
        let Some(entry) = self.servers.get(key) else {
            return;
        };
        let Some(request) = entry.transaction.request() else {
            // A final response went out already; the transaction would discard another.
            return;
        };
        let tag = entry.local_tag.clone().unwrap_or_else(Tag::random);
        let response = edit(request.response(status, Some(&tag)));
        self.respond_in(now, key, response);
    }

    /// Sends `response` in server transaction `key` (from the core or from call control).
    fn respond_in(&mut self, now: Instant, key: &Key, response: Response) {
        let Some(entry) = self.servers.get_mut(key) else {
            tracing::debug!(?key, "response for a finished transaction dropped");
            return;
        };
        // Answered: the owner check must not take the transaction, lingering for Timer J, for
        // one that call control left unanswered.
        if response.status.code() >= 200 {
            entry.answer_by = None;
        }
        // A 1xx/2xx with a To tag to an INVITE creates a dialog route to the owning call.
        if let (ServerTransaction::Invite(_), Some(call)) = (&entry.transaction, &entry.call) {
            if response.status != StatusCode::TRYING && response.status.code() < 300 {
                if let Some(d) = dialog_key(&response.headers) {
                    self.dialogs.entry(d).or_insert_with(|| DialogRoute {
                        call: call.clone(),
                        invite: Some(key.clone()),
                    });
                    self.shared
                        .stats
                        .dialogs
                        .store(self.dialogs.len() as u64, Ordering::Relaxed);
                }
            }
        }
        // A 2xx to a re-INVITE: the dialog's next ACK (§13.3.1.4) confirms this transaction,
        // not the dialog's first INVITE's, whichever side created the dialog.
        if let ServerTransaction::Invite(_) = &entry.transaction {
            if response.status.is_success() {
                if let Some(route) =
                    dialog_key(&response.headers).and_then(|d| self.dialogs.get_mut(&d))
                {
                    route.invite = Some(key.clone());
                }
            }
        }
        self.shared.stats.count_response_out(response.status);
        entry.transaction.send_response(response, now);
        self.drive_server(key);
    }

    fn start_client(
        &mut self,
        now: Instant,
        request: Arc<Request>,
        target: Target,
        events: Option<mpsc::UnboundedSender<ClientEvent>>,
        dialog: Option<mpsc::UnboundedSender<CallEvent>>,
    ) {
        let Some(key) = Key::client(&request) else {
            if let Some(events) = events {
                let _ = events.send(ClientEvent::TransportError);
            }
            return;
        };
        let reliable = target.transport == ListenTransport::Tcp;
        // A request nobody waits on holds no channel, so its owner needs no checks.
        let watched = events.is_some() || dialog.is_some();
        let transaction = if request.method == Method::Invite {
            ClientTransaction::Invite(ClientInvite::new(request, reliable, self.timers, now))
        } else {
            // Only an INVITE's sender keeps a share: this one is unwrapped, not copied.
            let request = Arc::unwrap_or_clone(request);
            ClientTransaction::NonInvite(ClientNonInvite::new(request, reliable, self.timers, now))
        };
        let key = Arc::new(key);
        self.clients.insert(
            Arc::clone(&key),
            Box::new(ClientEntry {
                key: Arc::clone(&key),
                transaction,
                target,
                events,
                dialog,
                armed: None,
            }),
        );
        self.shared
            .stats
            .client_transactions
            .fetch_add(1, Ordering::Relaxed);
        if watched {
            self.check_owner_at(now + OWNER_CHECK, &key);
        }
        self.drive_client(&key);
    }

    /// Drains a server transaction's output and reschedules it.
    fn drive_server(&mut self, key: &Key) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        while let Some(bytes) = entry.transaction.poll_transmit() {
            self.transmits.push_back((entry.reply_to, bytes));
        }
        while let Some(event) = entry.transaction.poll_event() {
            let call_event = match event {
                Event::NoAck => Some(CallEvent::NoAck),
                Event::TransportError => Some(CallEvent::TransportError),
                Event::Response(_) | Event::Timeout | Event::Terminated => None,
            };
            if let (Some(ev), Some(call)) = (call_event, &entry.call) {
                let _ = call.send(ev);
            }
        }
        if entry.transaction.is_terminated() {
            if let Some(entry) = self.servers.remove(key) {
                if let Some(m) = entry.merge_key {
                    self.merged.remove(&m);
                }
            }
            self.shared
                .stats
                .server_transactions
                .fetch_sub(1, Ordering::Relaxed);
        } else if let Some(at) = entry.transaction.poll_timeout() {
            if arm(&mut entry.armed, at) {
                self.deadlines
                    .insert(at, TimerOwner::Server(Arc::clone(&entry.key)));
            }
        }
    }

    /// Drains a client transaction's output and reschedules it.
    fn drive_client(&mut self, key: &Key) {
        let Some(entry) = self.clients.get_mut(key) else {
            return;
        };
        while let Some(bytes) = entry.transaction.poll_transmit() {
            self.transmits.push_back((entry.target, bytes));
        }
        while let Some(event) = entry.transaction.poll_event() {
            let client_event = match event {
                Event::Response(r) => {
                    if let Some(owner) = &entry.dialog {
                        if let Some(d) = uac_dialog_key(&r) {
                            self.dialogs.entry(d).or_insert_with(|| DialogRoute {
                                call: owner.clone(),
                                invite: None,
                            });
                        }
                    }
                    Some(ClientEvent::Response(r))
                }
                Event::Timeout => Some(ClientEvent::Timeout),
                Event::TransportError => Some(ClientEvent::TransportError),
                Event::NoAck | Event::Terminated => None,
            };
            if let (Some(ev), Some(events)) = (client_event, &entry.events) {
                let _ = events.send(ev);
            }
        }
        if entry.transaction.is_terminated() {
            self.clients.remove(key);
            self.shared
                .stats
                .client_transactions
                .fetch_sub(1, Ordering::Relaxed);
        } else if let Some(at) = entry.transaction.poll_timeout() {
            if arm(&mut entry.armed, at) {
                self.deadlines
                    .insert(at, TimerOwner::Client(Arc::clone(&entry.key)));
            }
        }
    }
}

/// Whether a transaction's next deadline `at` needs a wheel entry: only when none of its
/// entries comes at or before it. A transaction is driven after every message it handles, and
/// queueing a deadline each time made several entries per transaction (a busy endpoint holds
/// ~100,000 of them).
fn arm(armed: &mut Option<Instant>, at: Instant) -> bool {
    if armed.is_some_and(|earliest| earliest <= at) {
        return false;
    }
    *armed = Some(at);
    true
}

/// A wheel entry of the transaction fired at `now`: if its earliest entry is due, none of its
/// entries is known to be queued any more (later ones may be; they fire harmlessly).
fn disarm(armed: &mut Option<Instant>, now: Instant) {
    if armed.is_some_and(|earliest| earliest <= now) {
        *armed = None;
    }
}

/// The dialog of a message on a dialog where we are the UAS (our tag is in To), for requests
/// we receive and responses we send alike.
fn dialog_key(headers: &Headers) -> Option<DialogKey> {
    Some(DialogKey {
        call_id: headers.call_id.clone(),
        local_tag: headers.to.tag()?,
        remote_tag: headers.from.tag()?,
    })
}

/// The trunk whose allow-list holds `source`, if any (the first in configuration order).
fn trunk_for(
    trunks: &[crate::config::Trunk],
    source: std::net::IpAddr,
) -> Option<&crate::config::Trunk> {
    trunks
        .iter()
        .find(|trunk| trunk.allow.iter().any(|net| net.contains(&source)))
}

/// The dialog a response to our INVITE creates (RFC 3261 §12.1.2): any 101–299 with a To tag.
/// Our tag is in From; the callee's requests carry it in To, so [`dialog_key`] finds the route.
fn uac_dialog_key(response: &Response) -> Option<DialogKey> {
    let code = response.status.code();
    if !(101..300).contains(&code) || response.headers.cseq.method != Method::Invite {
        return None;
    }
    Some(DialogKey {
        call_id: response.headers.call_id.clone(),
        local_tag: response.headers.from.tag()?,
        remote_tag: response.headers.to.tag()?,
    })
}

/// The answer to a request that needs no state beyond its transaction (RFC 3261 §8.2): 416 for
/// a Request-URI scheme we do not understand (§8.2.2.1), 420 for option tags in Require
/// (§8.2.2.3: we support none yet), 200 to OPTIONS (§11.2), 405/501 for methods we do not
/// handle. `None` for INVITE, CANCEL, REGISTER and in-dialog requests, which the endpoint
/// decides with its own state.
fn simple_answer(request: &Request, tag: &Tag) -> Option<Response> {
    let method = &request.method;
    let respond = |status| request.response(status, Some(tag));
    if *method == Method::Cancel {
        return None;
    }
    if !matches!(request.uri.scheme(), Scheme::Sip | Scheme::Sips) {
        return Some(respond(StatusCode::UNSUPPORTED_URI_SCHEME));
    }
    let unsupported: Vec<&str> = request
        .headers
        .get_all("Require")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if !unsupported.is_empty() {
        let mut r = respond(StatusCode::BAD_EXTENSION);
        r.headers.push("Unsupported", unsupported.join(", "));
        return Some(r);
    }
    let mut r = match method {
        Method::Options => {
            let mut r = respond(StatusCode::OK);
            r.headers.push("Accept", "application/sdp");
            r.headers.push("Accept-Encoding", "identity");
            r.headers.push("Accept-Language", "en");
            r.headers.push("Supported", "");
            r
        }
        Method::Invite
        | Method::Register
        | Method::Bye
        | Method::Info
        | Method::Update
        | Method::Prack => return None,
        Method::Extension(_) => respond(StatusCode::NOT_IMPLEMENTED),
        _ => respond(StatusCode::METHOD_NOT_ALLOWED),
    };
    r.headers.push("Allow", ALLOW);
    Some(r)
}

/// Compares the media type of a Content-Type value, ignoring parameters and case.
fn media_type_is(content_type: &str, expected: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::config::Trunk;

    fn core() -> (Core, mpsc::Receiver<IncomingCall>) {
        let config = Config {
            trunks: vec![Trunk {
                name: "t".into(),
                allow: vec!["127.0.0.1/32".parse().unwrap()],
                outbound_uri: None,
            }],
            ..Config::default()
        };
        let shared = Arc::new(Shared::new(&config));
        let (calls, receiver) = mpsc::channel(8);
        (Core::new(&config, shared, calls, Instant::now()), receiver)
    }

    fn invite(n: u32) -> Inbound {
        let text = format!(
            "INVITE sip:+15550100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKov{n}\r\n\
             From: <sip:c@127.0.0.1>;tag=f{n}\r\nTo: <sip:+15550100@127.0.0.1>\r\nCall-ID: ov-{n}\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let source: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        Inbound {
            message: crate::message::parse(text.as_bytes()).unwrap(),
            received: Received {
                source,
                local: "127.0.0.1:5060".parse().unwrap(),
                transport: ListenTransport::Udp,
                connection: None,
            },
        }
    }

    fn sent(core: &mut Core) -> Vec<String> {
        std::iter::from_fn(|| core.poll_transmit())
            .map(|(_, bytes)| String::from_utf8_lossy(&bytes).into_owned())
            .collect()
    }

    #[test]
    fn a_long_inbound_backlog_refuses_new_invites_statelessly() {
        let (mut core, mut calls) = core();
        let now = Instant::now();
        core.set_backlog(OVERLOAD_BACKLOG);
        core.handle_inbound(now, invite(1));
        assert!(
            calls.try_recv().is_ok(),
            "at the threshold the call is taken"
        );
        assert!(sent(&mut core)[0].starts_with("SIP/2.0 100 "));

        core.set_backlog(OVERLOAD_BACKLOG + 1);
        core.handle_inbound(now, invite(2));
        assert!(
            calls.try_recv().is_err(),
            "over it, call control never sees the call"
        );
        let answers = sent(&mut core);
        assert_eq!(answers.len(), 1);
        assert!(
            answers[0].starts_with("SIP/2.0 503 Overloaded"),
            "{}",
            answers[0]
        );
        assert!(answers[0].contains("Retry-After: 5"));
        assert_eq!(
            core.servers.len(),
            1,
            "no transaction for the refused INVITE"
        );
        assert_eq!(core.shared.stats.invites_shed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_handed_over_invite_counts_as_untaken_until_call_control_takes_or_drops_it() {
        let (mut core, mut calls) = core();
        let now = Instant::now();
        let untaken = |core: &Core| core.shared.untaken_calls.load(Ordering::SeqCst);
        core.handle_inbound(now, invite(1));
        let mut first = calls.try_recv().unwrap();
        assert_eq!(untaken(&core), 1, "in the channel or not yet listed");
        first.mark_taken();
        assert_eq!(untaken(&core), 0);

        core.handle_inbound(now, invite(2));
        assert_eq!(untaken(&core), 1);
        drop(calls.try_recv().unwrap());
        assert_eq!(
            untaken(&core),
            0,
            "a call answered and dropped is not waited for"
        );

        // Call control saturated: the refused INVITE's count goes with it.
        for n in 3..20 {
            core.handle_inbound(now, invite(n));
        }
        assert_eq!(untaken(&core), 8, "the channel holds 8");
        drop(calls);
        assert_eq!(untaken(&core), 0);

        // Once a drain has begun, a claim reports it (so the hand-over refuses an INVITE
        // admitted just before) and admission refuses new ones without a transaction.
        let (mut core, mut calls) = super::tests::core();
        core.shared.draining.store(true, Ordering::SeqCst);
        let (claim, draining) = Claim::new(&core.shared);
        assert!(draining);
        drop(claim);
        assert_eq!(untaken(&core), 0);
        core.handle_inbound(now, invite(30));
        assert!(calls.try_recv().is_err());
        assert!(sent(&mut core)[0].starts_with("SIP/2.0 503 "));
        assert!(core.servers.is_empty());
    }

    #[test]
    fn lingering_transactions_let_go_of_channels_nobody_reads() {
        let (mut core, mut calls) = core();
        let now = Instant::now();
        // A server INVITE handed to call control, answered 486: its transaction lingers
        // (Timer H) with the call's event sender.
        core.handle_inbound(now, invite(1));
        let call = calls.try_recv().unwrap();
        let call_sender = core
            .servers
            .get(&call.key)
            .unwrap()
            .call
            .as_ref()
            .unwrap()
            .downgrade();
        let response = call
            .request
            .response(StatusCode::BUSY_HERE, Some(&call.local_tag));
        core.handle_command(
            now,
            Command::Respond {
                key: call.key.clone(),
                response,
            },
        );
        // A client request whose owner is gone before it completes.
        let (events, receiver) = mpsc::unbounded_channel();
        let client_sender = events.downgrade();
        let crate::message::Message::Request(request) = invite(2).message else {
            unreachable!("invite() builds a request");
        };
        core.handle_command(
            now,
            Command::SendRequest {
                request: Arc::new(request),
                target: Target {
                    transport: ListenTransport::Udp,
                    addr: "127.0.0.1:5070".parse().unwrap(),
                    connection: None,
                    local: None,
                },
                events: Some(events),
                dialog: None,
            },
        );
        let first_check = now + OWNER_CHECK;
        core.handle_timeout(first_check);
        assert!(client_sender.upgrade().is_some(), "still read: kept");
        assert!(call_sender.upgrade().is_some());

        drop(receiver);
        drop(call);
        core.handle_timeout(first_check + OWNER_CHECK);
        assert_eq!(core.servers.len(), 1, "the transactions still linger");
        assert_eq!(core.clients.len(), 1);
        assert!(client_sender.upgrade().is_none(), "released");
        assert!(call_sender.upgrade().is_none(), "released");
    }

    #[test]
    fn an_invite_whose_call_control_let_go_unanswered_gets_500_at_its_owner_check() {
        let (mut core, mut calls) = core();
        let now = Instant::now();
        core.handle_inbound(now, invite(1));
        assert!(sent(&mut core)[0].starts_with("SIP/2.0 100 "));
        drop(calls.try_recv().unwrap());
        core.handle_timeout(now + OWNER_CHECK / 2);
        assert!(
            sent(&mut core).is_empty(),
            "nothing before the check is due"
        );
        core.handle_timeout(now + OWNER_CHECK);
        let answers = sent(&mut core);
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert!(
            answers[0].starts_with("SIP/2.0 500 Call Control Did Not Answer"),
            "{}",
            answers[0]
        );
    }
}
