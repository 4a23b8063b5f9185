//! The SIP endpoint: the transaction layer and the UAS core that sit between the transports and
//! the transaction user (the call router).
//!
//! One task owns every transaction, the dialog routing table, the digest challenger and the
//! registrar writes ([`core::Core`], which takes `now` and does no I/O); the thin shell in
//! [`run`] feeds it inbound messages, commands and timer ticks and hands its transmissions to the
//! [`Transports`]. Calls reach the router as [`IncomingCall`]s with their own event channel;
//! the router answers through an [`EndpointHandle`].

mod core;
mod limit;
mod stats;
mod wheel;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::message::{
    Branch, CSeq, Headers, Method, NameAddr, Request, Response, StatusCode, Tag, Transport, Via,
};
use crate::registrar::{Binding, Registrar};
use crate::transaction::Key;
use crate::transport::{Inbound, Target, Transports};

pub use self::core::Core;
pub use limit::{RateLimit, MAX_SOURCES};
pub use stats::Stats;

/// Who placed an incoming call, as decided by the trunk allow-lists and digest authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A configured trunk, by name (its allow-list matched the source address).
    Trunk(String),
    /// A `[[sip_users]]` phone that authenticated with digest.
    User(String),
}

/// What happens to an incoming call after it was handed over.
// Requests are boxed for the reason given at [`ClientEvent`].
#[derive(Debug)]
pub enum CallEvent {
    /// The caller sent CANCEL before a final response; the endpoint already answered the CANCEL
    /// with 200 and the INVITE with 487 (RFC 3261 §9.2).
    Cancelled,
    /// The ACK for our 2xx arrived (RFC 3261 §13.3.1.4).
    Ack(Box<Request>),
    /// An in-dialog request (BYE, INFO, UPDATE, re-INVITE): answer it with
    /// [`EndpointHandle::respond`] and the given key. Shared with its transaction, not copied.
    Request(Arc<Request>, Box<Key>),
    /// No ACK came for our final response (Timer H or L): the call is over.
    NoAck,
    /// The transport failed while sending a response.
    TransportError,
}

/// An INVITE that passed the edge's checks, for call control to answer.
#[derive(Debug)]
pub struct IncomingCall {
    /// The INVITE (shared with its transaction, not copied).
    pub request: Arc<Request>,
    /// Where it came from.
    pub source: SocketAddr,
    /// The trunk or authenticated user that placed it.
    pub origin: Origin,
    /// The To tag every response to this INVITE must carry (so the 487 the endpoint may send on
    /// CANCEL matches the dialog the router's 180 created).
    pub local_tag: Tag,
    /// The server transaction's key, for [`EndpointHandle::respond`].
    pub key: Key,
    /// Events for this call (cancel, ACK, in-dialog requests).
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    /// Counts this INVITE as handed over but not yet taken, until [`IncomingCall::mark_taken`]
    /// or the call is dropped.
    claim: Option<Claim>,
}

impl IncomingCall {
    /// A response to the INVITE carrying the call's To tag.
    pub fn response(&self, status: StatusCode) -> Response {
        self.request.response(status, Some(&self.local_tag))
    }

    /// Call control has taken the call: it is counted wherever call control counts its live
    /// calls, so [`EndpointHandle::untaken_calls`] no longer needs to. Dropping the call
    /// (after answering it) does the same.
    pub fn mark_taken(&mut self) {
        self.claim = None;
    }
}

/// An INVITE between the endpoint and call control: handed over, not yet taken. A drain ends
/// only when no call is live *and* none of these exist, so an INVITE accepted a moment
/// before the drain began is never abandoned in the channel between the two.
struct Claim(Arc<Shared>);

impl Claim {
    /// Counts a hand-over, then reports whether a drain had begun. Both are sequentially
    /// consistent, as are the drain's flag store and its read of the count: either this
    /// sees the drain and refuses the INVITE, or the drain sees the count and waits.
    fn new(shared: &Arc<Shared>) -> (Self, bool) {
        shared.untaken_calls.fetch_add(1, Ordering::SeqCst);
        let draining = shared.draining.load(Ordering::SeqCst);
        (Self(shared.clone()), draining)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.untaken_calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claim")
    }
}

/// What a request we sent came to.
// Messages are boxed: a tokio channel allocates its slots 32 at a time and a transaction keeps
// its sender for as long as it lingers (32 s over UDP), so a 600-byte event cost 19 KiB per
// request for half a minute (measured: a third of the RSS at 500 calls/s).
#[derive(Debug)]
pub enum ClientEvent {
    /// A provisional or final response (and, for INVITE, further 2xx from other forks).
    Response(Box<Response>),
    /// No final response in time (Timer B/F): treat as 408.
    Timeout,
    /// The transport could not deliver the request.
    TransportError,
}

pub(crate) enum Command {
    Respond {
        key: Key,
        response: Response,
    },
    SendRequest {
        /// Shared with the sender of an INVITE, which needs it for a CANCEL.
        request: Arc<Request>,
        target: Target,
        /// Where the responses go; `None` when nobody waits for them.
        events: Option<mpsc::UnboundedSender<ClientEvent>>,
        /// For an INVITE that creates a dialog: where the dialog's in-dialog requests go.
        dialog: Option<mpsc::UnboundedSender<CallEvent>>,
    },
    SendStateless {
        request: Request,
        target: Target,
    },
}

/// An INVITE we sent: the request as it went out (with our Via, for a later CANCEL) and the
/// two streams it produces.
#[derive(Debug)]
pub struct OutgoingInvite {
    /// The INVITE as sent, top Via included (RFC 3261 §9.1: the CANCEL copies it); shared
    /// with its client transaction.
    pub request: Arc<Request>,
    /// Provisional and final responses (and further 2xx from other forks).
    pub responses: mpsc::UnboundedReceiver<ClientEvent>,
    /// Requests the callee sends within the dialogs the INVITE creates (BYE, INFO, re-INVITE):
    /// the routing table learns each dialog from the 1xx/2xx with a To tag.
    pub events: mpsc::UnboundedReceiver<CallEvent>,
}

/// State shared between the endpoint task and its handles.
struct Shared {
    draining: AtomicBool,
    /// INVITEs handed to call control and not yet taken (see [`Claim`]).
    untaken_calls: AtomicU64,
    registrar: Mutex<Registrar>,
    stats: Stats,
}

impl Shared {
    fn new(config: &Config) -> Self {
        Self {
            draining: AtomicBool::new(false),
            untaken_calls: AtomicU64::new(0),
            registrar: Mutex::new(Registrar::new(config.registration)),
            stats: Stats::default(),
        }
    }
}

/// A cheap, clonable handle to the endpoint task.
#[derive(Clone)]
pub struct EndpointHandle {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    transports: Transports,
}

impl EndpointHandle {
    /// Sends a response within the server transaction `key` (provisional or final).
    pub fn respond(&self, key: &Key, response: Response) {
        let _ = self.commands.send(Command::Respond {
            key: key.clone(),
            response,
        });
    }

    /// Sends `request`, which we originate, in a new client transaction toward `target`. Its
    /// Via is ours alone (RFC 3261 §8.1.1.7), with a fresh branch, whatever the request
    /// carried. Responses arrive on the returned channel.
    pub fn send_request(
        &self,
        request: Request,
        target: Target,
    ) -> mpsc::UnboundedReceiver<ClientEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.start_request(self.with_our_via(request, target), target, Some(tx), None);
        rx
    }

    /// Sends `request` like [`EndpointHandle::send_request`] for a sender that does not wait
    /// for its answer (a BYE: the dialog ends either way). No channel is made for its responses;
    /// the transaction still retransmits and absorbs them.
    pub fn send_request_unwatched(&self, request: Request, target: Target) {
        self.start_request(self.with_our_via(request, target), target, None, None);
    }

    /// Sends an INVITE toward `target` like [`EndpointHandle::send_request`], and routes the
    /// requests of every dialog it creates (RFC 3261 §12.1.2: a 1xx with a To tag or a 2xx
    /// creates one) to [`OutgoingInvite::events`] for as long as that receiver lives.
    pub fn send_invite(&self, request: Request, target: Target) -> OutgoingInvite {
        let (responses_tx, responses) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let request = self.with_our_via(request, target);
        self.start_request(
            Arc::clone(&request),
            target,
            Some(responses_tx),
            Some(events_tx),
        );
        OutgoingInvite {
            request,
            responses,
            events,
        }
    }

    /// `request` with our own Via only, with a fresh branch (RFC 3261 §8.1.1.7).
    fn with_our_via(&self, mut request: Request, target: Target) -> Arc<Request> {
        request.headers.via = vec![self.via(target, &Branch::random())];
        Arc::new(request)
    }

    /// Hands `request` to the endpoint task for a new client transaction.
    fn start_request(
        &self,
        request: Arc<Request>,
        target: Target,
        events: Option<mpsc::UnboundedSender<ClientEvent>>,
        dialog: Option<mpsc::UnboundedSender<CallEvent>>,
    ) {
        let _ = self.commands.send(Command::SendRequest {
            request,
            target,
            events,
            dialog,
        });
    }

    /// Cancels a pending INVITE sent with [`EndpointHandle::send_invite`] (RFC 3261 §9.1): a
    /// CANCEL with the INVITE's Request-URI, Call-ID, From, To, CSeq number, Route and top Via
    /// (so it matches the INVITE's branch), in a client transaction of its own. The INVITE's
    /// responses then bring the 487 (or a 2xx that crossed the CANCEL, to be ACKed and hung
    /// up).
    pub fn cancel(&self, invite: &Request, target: Target) {
        let mut headers = Headers::new(
            invite.headers.from.clone(),
            invite.headers.to.clone(),
            invite.headers.call_id.clone(),
            CSeq {
                seq: invite.headers.cseq.seq,
                method: Method::Cancel,
            },
        );
        headers.via = invite.headers.via.first().cloned().into_iter().collect();
        headers.route = invite.headers.route.clone();
        headers.max_forwards = Some(70);
        let cancel = Request {
            method: Method::Cancel,
            uri: invite.uri.clone(),
            headers,
            body: Default::default(),
        };
        // Nobody waits for the CANCEL's own 200: the INVITE's responses tell the outcome.
        self.start_request(Arc::new(cancel), target, None, None);
    }

    /// Sends a request outside any transaction (the ACK for a 2xx, RFC 3261 §13.2.2.4). The
    /// caller provides the Via (use [`EndpointHandle::via`]).
    pub fn send_stateless(&self, request: Request, target: Target) {
        let _ = self
            .commands
            .send(Command::SendStateless { request, target });
    }

    /// A Via for a request we originate toward `target`.
    pub fn via(&self, target: Target, branch: &Branch) -> Via {
        let (host, port) = self.transports.via_host_port(target.transport, target.addr);
        let transport = match target.transport {
            crate::config::ListenTransport::Udp => Transport::Udp,
            crate::config::ListenTransport::Tcp => Transport::Tcp,
        };
        Via::new(transport, host, Some(port), branch)
    }

    /// Our Contact toward `target` (RFC 3261 §8.1.1.8, §12.1.1): `sip:user@host:port`, with
    /// `;transport=tcp` over TCP, at the address the Via uses.
    pub fn contact(&self, target: Target, user: &str) -> NameAddr {
        let (host, port) = self.transports.via_host_port(target.transport, target.addr);
        let mut uri = crate::message::Uri::sip(Some(user), host, Some(port));
        if target.transport == crate::config::ListenTransport::Tcp {
            if let Some(sip) = uri.as_sip_mut() {
                sip.params.set("transport", Some("tcp".into()));
            }
        }
        NameAddr::new(uri)
    }

    /// The registered contacts of `user` (the location service, RFC 3261 §10).
    pub fn locate(&self, user: &str) -> Vec<Binding> {
        self.shared.registrar().lookup(user, Instant::now())
    }

    /// Starts draining: from now on new INVITEs get 503 with Retry-After.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
    }

    /// INVITEs handed to call control that it has not taken yet. Once a drain has begun
    /// and this reads 0, every call accepted before it is counted by call control.
    pub fn untaken_calls(&self) -> u64 {
        self.shared.untaken_calls.load(Ordering::SeqCst)
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The transports (bound addresses, transport counters).
    pub fn transports(&self) -> &Transports {
        &self.transports
    }
}

/// Binds the transports and starts the endpoint task. Incoming calls arrive on the returned
/// receiver; everything stops when `shutdown` turns true.
pub async fn start(
    config: &Config,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(EndpointHandle, mpsc::Receiver<IncomingCall>)> {
    // Bounded: a flood of datagrams beyond what the endpoint can take is shed at the socket.
    let (inbound_tx, inbound_rx) = mpsc::channel::<Inbound>(4096);
    let transports = Transports::bind(config, inbound_tx, shutdown.clone()).await?;
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (calls_tx, calls_rx) = mpsc::channel(1024);
    let shared = Arc::new(Shared::new(config));
    let handle = EndpointHandle {
        commands: commands_tx,
        shared: shared.clone(),
        transports: transports.clone(),
    };
    let core = Core::new(config, shared, calls_tx, Instant::now());
    tokio::spawn(run(core, inbound_rx, commands_rx, transports, shutdown));
    Ok((handle, calls_rx))
}

/// How often expired registrations and dead dialog routes are swept. Often, so that each sweep
/// is small: every SIP message waits while it runs, and at 1,500 calls/s a sweep every 5 s
/// (mostly dropping the ended dialog routes) took 8–20 ms (measured).
const HOUSEKEEPING: Duration = Duration::from_millis(250);

async fn run(
    mut core: Core,
    mut inbound: mpsc::Receiver<Inbound>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    transports: Transports,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    // One timer, moved only when the core's next deadline changes: re-registering a timer for
    // every message was measurable at thousands of messages per second.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        let deadline = core.poll_timeout();
        if deadline != armed {
            if let Some(at) = deadline {
                timer.as_mut().reset(at.into());
            }
            armed = deadline;
        }
        tokio::select! {
            _ = crate::transport::stopped(&mut shutdown) => break,
            Some(mut item) = inbound.recv() => {
                let now = Instant::now();
                // What else has arrived is handled in the same turn, up to a bound, so a
                // burst costs one wake-up rather than one per message.
                let mut handled = 0;
                loop {
                    core.set_backlog(inbound.len());
                    core.handle_inbound(now, item);
                    handled += 1;
                    if handled == INBOUND_BATCH {
                        break;
                    }
                    let Ok(next) = inbound.try_recv() else { break };
                    item = next;
                }
            }
            Some(command) = commands.recv() => {
                let now = Instant::now();
                core.handle_command(now, command);
                // Likewise for commands: call control sends several per call at once.
                for _ in 1..INBOUND_BATCH {
                    let Ok(command) = commands.try_recv() else { break };
                    core.handle_command(now, command);
                }
            }
            _ = &mut timer, if armed.is_some() => {
                armed = None;
                let now = Instant::now();
                // Responses call control queued before it let go of a call are applied
                // first; else a transaction's owner check could take the dropped receiver of
                // a refused INVITE for an abandoned one and answer 500, not the queued 503.
                while let Ok(command) = commands.try_recv() {
                    core.handle_command(now, command);
                }
                core.handle_timeout(now);
            }
            _ = housekeeping.tick() => core.housekeeping(Instant::now()),
        }
        while let Some((target, bytes)) = core.poll_transmit() {
            transports.send(&target, bytes);
        }
    }
}

/// Inbound messages (or commands) handled at most in one turn of the endpoint loop.
const INBOUND_BATCH: usize = 32;

impl Shared {
    fn registrar(&self) -> std::sync::MutexGuard<'_, Registrar> {
        // Plain data behind the lock, never held across an await: a panic elsewhere cannot leave
        // it in a state worse than losing the location service, so keep serving.
        self.registrar.lock().unwrap_or_else(|p| p.into_inner())
    }
}
