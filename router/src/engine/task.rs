//! One task per inbound call: it owns the call's [`Call`] state machine, the caller's SIP
//! transaction and dialog, the caller's RTP ports, the prompt playing, the DTMF listener, the
//! relay, and the handles of the legs it dialled. It performs the machine's actions and feeds
//! back what happens; nothing else touches the call's state.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use media::ports::{Rtcp, RtpPorts};
use media::rtp::listener::{Listener, ListenerConfig};
use media::rtp::player::{Loops, Prompt};
use media::rtp::relay::{Leg, Relay, RelayConfig, RtcpEndpoint, Side};
use media::rtp::Sender;
use media::sdp::{self, Negotiated, Session};
use sip::config::ListenTransport;
use sip::dialog::Dialog;
use sip::endpoint::{CallEvent, IncomingCall};
use sip::message::{Contact, Method, NameAddr, Request, Response, StatusCode, Transport};
use sip::transport::Target;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::leg::{self, LegCommand, LegContext, LegMedia, LegReport, LegUpdate, CODECS};
use super::{audio, reoffer, Services};
use crate::call::{
    Action, Audio, Call, CallInfo, CallStatus, CallerEvent, DialId, Document, FetchFailure,
    FetchId, LegFailure, PromptId, Start, StartedLeg,
};
use crate::records::{rfc3339, CallRecord, LegRecord};
use crate::sid::CallSid;
use crate::twiml::{self, Loop};

/// Legs one `<Dial>` starts at most (devices of all its identities and SIP targets).
pub const MAX_LEGS: usize = 10;

/// How long a hang-up waits for the ACK of our 200 before sending BYE anyway (RFC 3261 §15:
/// not before the ACK or the server transaction's timeout, 64·T1 with the default T1).
const ACK_WAIT: Duration = Duration::from_secs(32);

/// DTMF keys queued between the listener and the call.
const DIGIT_QUEUE: usize = 32;

/// Handles an incoming call from start to end.
pub(super) async fn run(
    services: Arc<Services>,
    mut incoming: IncomingCall,
    sid: CallSid,
    start: Start,
    status_callback: Option<String>,
) {
    let span = tracing::info_span!("call", call_sid = %sid);
    async move {
        let from = display_user(&incoming.request.headers.from);
        let to = incoming.request.uri.user().unwrap_or_default().to_owned();
        let mut record = CallRecord {
            sid: sid.clone(),
            from: from.as_str().into(),
            to: to.as_str().into(),
            status: CallStatus::Ringing,
            direction: "inbound",
            start_time: rfc3339(SystemTime::now()),
            answer_time: None,
            end_time: None,
            legs: Vec::new(),
        };
        // Listed before anything can wait: a drain counts this call from now on, and no
        // longer needs the endpoint to count it as handed over.
        services.records.update(Arc::new(record.clone()));
        incoming.mark_taken();
        let Some(task) = CallTask::prepare(&services, incoming, &mut record).await else {
            record.end_time = Some(rfc3339(SystemTime::now()));
            services.records.finish(record);
            return;
        };
        let info = CallInfo {
            sid,
            account_sid: services.account_sid.clone(),
            from,
            to,
            start,
            status_callback,
        };
        task.run(info, record).await;
    }
    .instrument(span)
    .await
}

/// The caller's side of the call.
struct Caller {
    /// The INVITE, shared with its server transaction.
    request: Arc<Request>,
    key: sip::transaction::Key,
    local_tag: sip::message::Tag,
    events: mpsc::UnboundedReceiver<CallEvent>,
    target: Target,
    contact: NameAddr,
    ports: RtpPorts,
    /// Our RTP address as our SDP gives it to the caller (its IP is also what dialled legs get).
    media: SocketAddr,
    /// The description we last sent the caller: our answer to its INVITE, then to each of its
    /// re-INVITEs. Each continues the origin of the first (RFC 3264 §8).
    sdp: Session,
    negotiated: Negotiated,
    dialog: Option<Dialog>,
    acked: bool,
    /// The CSeq number of the caller's re-INVITE without an offer that our 2xx answered with
    /// one, until its ACK brings the answer (RFC 3264 §4).
    late_offer: reoffer::LateOffer,
}

/// A webhook fetch in flight, polled by the call's own task (a task of its own per fetch cost
/// a spawn and a cross-thread wake-up per call); dropping it cancels the fetch.
type Fetching = Pin<Box<dyn Future<Output = Result<Document, FetchFailure>> + Send>>;

/// The prompt playing to the caller: its id, and the ways to stop it and to send it after the
/// caller's media when a re-INVITE moves or re-formats it.
struct Playing {
    id: PromptId,
    stop: oneshot::Sender<()>,
    media: watch::Sender<Negotiated>,
}

impl Playing {
    fn stop(self) {
        let _ = self.stop.send(());
    }
}

/// A prompt's end: its id, the error if it could not play, and the RTP sender to continue
/// the caller's stream with.
type PromptDone = (PromptId, Option<String>, Option<Sender>);

/// A dialled leg as the call sees it.
struct LegHandle {
    commands: mpsc::UnboundedSender<LegCommand>,
    media: Option<LegMedia>,
    record: usize,
    /// The party holds the call (its re-INVITE): it is sent no media.
    held: bool,
}

struct CallTask {
    services: Arc<Services>,
    caller: Caller,
    clock: (Instant, SystemTime),
    fetch: Option<(FetchId, Fetching)>,
    prompt: Option<Playing>,
    /// Made by the first prompt (most calls play none, and a tokio channel allocates its
    /// first block of slots when made); kept for the call's life.
    prompt_done: Option<(
        mpsc::UnboundedSender<PromptDone>,
        mpsc::UnboundedReceiver<PromptDone>,
    )>,
    rtp_sender: Option<Sender>,
    listener: Option<Listener>,
    /// Made by the first DTMF listener, like `prompt_done`.
    digits: Option<(mpsc::Sender<char>, mpsc::Receiver<char>)>,
    relay: Option<(CallSid, Relay)>,
    /// Whether the caller holds the call (its last offer was `sendonly` or `inactive`, or put
    /// no address in `c=`): the relay sends it nothing.
    caller_held: bool,
    legs: HashMap<CallSid, LegHandle>,
    /// The record as last published to the call table.
    published: Option<Arc<CallRecord>>,
    leg_reports: (
        mpsc::UnboundedSender<LegReport>,
        mpsc::UnboundedReceiver<LegReport>,
    ),
}

impl CallTask {
    /// Checks the caller's offer and sets up its media; on failure answers the INVITE and
    /// returns `None`.
    async fn prepare(
        services: &Arc<Services>,
        incoming: IncomingCall,
        record: &mut CallRecord,
    ) -> Option<CallTask> {
        let IncomingCall {
            request,
            source,
            key,
            local_tag,
            events,
            ..
        } = incoming;
        let endpoint = &services.endpoint;
        let target = caller_target(&request, source);
        let refuse = |status: StatusCode, reason: &str| {
            endpoint.respond(
                &key,
                request
                    .response(status, Some(&local_tag))
                    .with_reason(reason),
            );
        };
        // RFC 3264 offer/answer with the offer in the INVITE; a late offer (empty INVITE)
        // is refused rather than answered with an offer of ours.
        let offer = match Session::parse(&request.body) {
            Ok(offer) => offer,
            Err(error) => {
                tracing::info!(%error, "INVITE without a usable SDP offer");
                refuse(StatusCode::NOT_ACCEPTABLE_HERE, "SDP Offer Required");
                record.status = CallStatus::Failed;
                return None;
            }
        };
        // RFC 5761: a caller offering RTCP on its RTP port is answered in kind, and so needs
        // one socket here, not two.
        let rtcp = if offer.offers_rtcp_mux() {
            Rtcp::Muxed
        } else {
            Rtcp::OwnPort
        };
        let ports = match services.ports.allocate(rtcp) {
            Ok(ports) => ports,
            Err(error) => {
                tracing::warn!(%error, "no RTP ports for the call");
                refuse(StatusCode::SERVICE_UNAVAILABLE, "No Media Ports");
                record.status = CallStatus::Failed;
                return None;
            }
        };
        let contact = endpoint.contact(target, "tandem");
        let local = SocketAddr::new(media_ip(&contact, source), ports.port());
        let answer = match sdp::answer(&offer, local, &CODECS, rtcp == Rtcp::Muxed) {
            Ok(answer) => answer,
            Err(error) => {
                tracing::info!(%error, "caller's SDP offer has nothing we can use");
                refuse(StatusCode::NOT_ACCEPTABLE_HERE, "Incompatible Media");
                record.status = CallStatus::Failed;
                return None;
            }
        };
        let task = CallTask {
            services: services.clone(),
            caller: Caller {
                request,
                key,
                local_tag,
                events,
                target,
                contact,
                ports,
                media: local,
                sdp: answer.session,
                negotiated: answer.negotiated,
                dialog: None,
                acked: false,
                late_offer: reoffer::LateOffer::default(),
            },
            clock: (Instant::now(), SystemTime::now()),
            fetch: None,
            prompt: None,
            prompt_done: None,
            rtp_sender: Some(Sender::random()),
            listener: None,
            digits: None,
            relay: None,
            caller_held: false,
            legs: HashMap::new(),
            published: None,
            leg_reports: mpsc::unbounded_channel(),
        };
        Some(task)
    }

    async fn run(mut self, info: CallInfo, mut record: CallRecord) {
        let mut call = Call::new(Instant::now(), info);
        loop {
            while let Some(action) = call.poll_action() {
                if let Action::Ended(status) = action {
                    self.finish(&call, &mut record, status).await;
                    return;
                }
                self.perform(&mut call, action, &mut record).await;
            }
            self.refresh(&call, &mut record);
            // The caller's RTP is read for digits from the first <Gather> on (until a bridge
            // takes the socket over): a listener per call cost 3 % of the CPU of calls that
            // never gather (measured). It then keeps running between gathers, so a key held
            // across two of them is not reported twice.
            if call.is_gathering() && self.relay.is_none() {
                self.listen();
            }
            let deadline = call.poll_timeout();
            tokio::select! {
                event = self.caller.events.recv() => self.caller_event(&mut call, event).await,
                result = fetched(&mut self.fetch) => {
                    if let Some((id, result)) = result {
                        call.handle_document(Instant::now(), id, result);
                    }
                }
                Some((id, error, sender)) = when_made(self.prompt_done.as_mut().map(|(_, done)| done.recv())) => {
                    if let Some(sender) = sender {
                        self.rtp_sender.get_or_insert(sender);
                    }
                    if self.prompt.as_ref().is_some_and(|playing| playing.id == id) {
                        self.prompt = None;
                    }
                    call.handle_prompt_finished(Instant::now(), id, error);
                }
                Some(digit) = when_made(self.digits.as_mut().map(|(_, digits)| digits.recv())) => {
                    call.handle_digit(Instant::now(), digit);
                }
                Some(report) = self.leg_reports.1.recv() => self.leg_report(&mut call, report, &mut record).await,
                _ = sleep_until(deadline) => call.handle_timeout(Instant::now()),
            }
        }
    }

    /// Takes the caller's new offer/answer: hold, and media moved or re-formatted, for the
    /// relay, a prompt playing and the DTMF listener.
    async fn follow_caller(&mut self, reoffer: reoffer::Reoffer) {
        let moved = reoffer::follow(
            Some(&mut self.caller.negotiated),
            &mut self.caller_held,
            &reoffer,
            self.relay.as_ref().map(|(_, relay)| relay),
            Side::A,
        );
        if moved {
            // A prompt playing goes on at the new address, in the new format.
            if let Some(playing) = &self.prompt {
                playing.media.send_replace(self.caller.negotiated);
            }
            // A DTMF listener heeds only the caller's old address and payload type: the next
            // turn of the loop starts one for the new ones.
            if let Some(listener) = self.listener.take() {
                listener.stop().await;
            }
        }
    }

    async fn perform(&mut self, call: &mut Call, action: Action, record: &mut CallRecord) {
        let endpoint = self.services.endpoint.clone();
        match action {
            Action::Fetch {
                id,
                url,
                method,
                params,
            } => {
                // A fetch still in flight is superseded: dropped, which cancels it.
                let webhooks = self.services.webhooks.clone();
                let fetching = Box::pin(async move {
                    match webhooks.fetch(&url, method, &params).await {
                        Ok(instructions) => Ok(Document {
                            body: instructions.body,
                            url: instructions.url.into(),
                        }),
                        Err(error) => Err(FetchFailure {
                            code: error.twilio_code(),
                            message: error.to_string(),
                        }),
                    }
                });
                self.fetch = Some((id, fetching));
            }
            Action::Ring => {
                let response = self.caller_response(StatusCode::RINGING);
                endpoint.respond(&self.caller.key, response);
            }
            Action::Answer => {
                let mut response = self.caller_response(StatusCode::OK);
                response.headers.push("Content-Type", "application/sdp");
                response.body = self.caller.sdp.to_text().into_bytes().into();
                match Dialog::new_uas(&self.caller.request, &response) {
                    Ok(dialog) => self.caller.dialog = Some(dialog),
                    Err(error) => tracing::warn!(%error, "answered INVITE without a dialog"),
                }
                endpoint.respond(&self.caller.key, response);
            }
            Action::Refuse { status, reason } => {
                let response = self
                    .caller
                    .request
                    .response(
                        StatusCode::new(status).unwrap_or(StatusCode::SERVER_INTERNAL_ERROR),
                        Some(&self.caller.local_tag),
                    )
                    .with_reason(reason);
                endpoint.respond(&self.caller.key, response);
            }
            Action::HangUp => self.hang_up_caller().await,
            Action::Play { id, audio, loops } => self.play(id, audio, loops),
            Action::StopPlay => {
                if let Some(playing) = self.prompt.take() {
                    playing.stop();
                }
            }
            Action::Dial {
                id,
                targets,
                caller_id,
                to,
            } => {
                let legs = self.dial(id, &targets, &caller_id, &to, record).await;
                call.handle_dial_started(Instant::now(), id, legs);
            }
            Action::CancelLeg(sid) => self.command(&sid, LegCommand::Cancel),
            Action::HangUpLeg(sid) => {
                self.unbridge(&sid).await;
                self.command(&sid, LegCommand::HangUp);
            }
            Action::Bridge(sid) => self.bridge(call, sid).await,
            Action::StatusCallback {
                url,
                method,
                mut params,
            } => {
                params.push("Timestamp", twilio_timestamp(SystemTime::now()));
                self.services
                    .webhooks
                    .send_in_background(url, method, params);
            }
            Action::Ended(_) => {}
        }
    }

    async fn caller_event(&mut self, call: &mut Call, event: Option<CallEvent>) {
        let now = Instant::now();
        match event {
            None | Some(CallEvent::NoAck) | Some(CallEvent::TransportError) => {
                call.handle_caller(now, CallerEvent::Lost)
            }
            Some(CallEvent::Cancelled) => call.handle_caller(now, CallerEvent::Cancelled),
            Some(CallEvent::Ack(ack)) => {
                self.caller.acked = true;
                if let Some(answered) = self.caller.late_offer.answer_in(&ack, &self.caller.sdp) {
                    self.follow_caller(answered).await;
                }
            }
            Some(CallEvent::Request(request, key)) => {
                let endpoint = &self.services.endpoint;
                let response = request.response(StatusCode::OK, None);
                match request.method {
                    Method::Bye => {
                        endpoint.respond(&key, response);
                        call.handle_caller(now, CallerEvent::Bye);
                    }
                    Method::Info => {
                        endpoint.respond(&key, response);
                        if let Some(digit) = info_digit(&request) {
                            call.handle_digit(now, digit);
                        }
                    }
                    Method::Invite => {
                        // A re-INVITE (hold, session refresh, media moved: RFC 3264 §8).
                        let (response, reoffer) = reoffer::answer_reinvite(
                            &request,
                            self.caller.media,
                            self.caller.negotiated.rtcp_mux,
                            &mut self.caller.sdp,
                            &self.caller.contact,
                        );
                        self.caller.late_offer.expect(&request, &response);
                        endpoint.respond(&key, response);
                        if let Some(reoffer) = reoffer {
                            self.follow_caller(reoffer).await;
                        }
                    }
                    _ => endpoint.respond(&key, response),
                }
            }
        }
    }

    async fn leg_report(&mut self, call: &mut Call, report: LegReport, record: &mut CallRecord) {
        let Some(event) = report.update.event() else {
            // Only the party bridged to the caller holds the relay or presses keys at the caller.
            let bridged = self
                .relay
                .as_ref()
                .filter(|(sid, _)| *sid == report.sid)
                .map(|(_, relay)| relay);
            match &report.update {
                LegUpdate::Reoffered(reoffer) => {
                    if let Some(handle) = self.legs.get_mut(&report.sid) {
                        let current = handle.media.as_mut().map(|media| &mut media.negotiated);
                        reoffer::follow(current, &mut handle.held, reoffer, bridged, Side::B);
                    }
                }
                LegUpdate::Digits(digits) => {
                    if let Some(relay) = bridged {
                        relay.send_dtmf(Side::A, digits);
                    }
                }
                _ => {}
            }
            return;
        };
        if let Some(handle) = self.legs.get_mut(&report.sid) {
            if let Some(leg) = record.legs.get_mut(handle.record) {
                leg.status = match &report.update {
                    LegUpdate::Ringing => "ringing",
                    LegUpdate::Answered(_) => "in-progress",
                    LegUpdate::Ended => "completed",
                    LegUpdate::Failed(LegFailure::Busy | LegFailure::Rejected) => "busy",
                    LegUpdate::Failed(LegFailure::NoAnswer) => "no-answer",
                    LegUpdate::Failed(LegFailure::Failed) => "failed",
                    LegUpdate::Digits(_) | LegUpdate::Reoffered(_) => leg.status,
                };
            }
            if let LegUpdate::Answered(media) = report.update {
                handle.media = Some(*media);
            }
        }
        if matches!(event, crate::call::LegEvent::Ended) {
            self.unbridge(&report.sid).await;
        }
        call.handle_leg(Instant::now(), report.dial, &report.sid, event);
    }

    /// Starts one leg per reachable device and SIP destination.
    async fn dial(
        &mut self,
        dial: DialId,
        targets: &[twiml::Target],
        caller_id: &str,
        to: &str,
        record: &mut CallRecord,
    ) -> Vec<StartedLeg> {
        let mut started = Vec::new();
        for (noun, target) in targets.iter().enumerate() {
            let destinations = self.destinations(target);
            if destinations.is_empty() {
                tracing::info!(%target, "dial target unreachable");
            }
            for destination in destinations {
                if started.len() >= MAX_LEGS {
                    tracing::warn!(
                        limit = MAX_LEGS,
                        "dial reaches more legs than allowed; extra ones skipped"
                    );
                    return started;
                }
                // A B2BUA decrements Max-Forwards across its legs like a proxy (RFC 3261
                // §16.6 step 3), so a dial that loops back into Tandem ends after 70 hops.
                let hops_left = self.caller.request.headers.max_forwards.unwrap_or(70);
                if matches!(destination, Destination::Sip { .. }) && hops_left == 0 {
                    tracing::warn!("Max-Forwards exhausted: not dialling SIP (a routing loop?)");
                    continue;
                }
                // Our offer proposes RTCP multiplexing; its port is opened if the answer
                // declines (LegContext::answered).
                let ports = match self.services.ports.allocate(Rtcp::Muxed) {
                    Ok(ports) => ports,
                    Err(error) => {
                        tracing::warn!(%error, "no RTP ports for a dialled leg");
                        continue;
                    }
                };
                let sid = CallSid::random();
                let local = SocketAddr::new(self.caller.media.ip(), ports.port());
                let (commands_tx, commands) = mpsc::unbounded_channel();
                let context = LegContext {
                    services: self.services.clone(),
                    dial,
                    sid: sid.clone(),
                    reports: self.leg_reports.0.clone(),
                    commands,
                    caller_id: caller_id.to_owned(),
                    to: to.to_owned(),
                    ports: Some(ports),
                    media: local,
                    max_forwards: hops_left.saturating_sub(1),
                    offer: sdp::offer(local, &CODECS, rand::random::<u32>().into()),
                };
                record.legs.push(LegRecord {
                    sid: sid.clone(),
                    to: destination.describe().into(),
                    status: "ringing",
                });
                self.legs.insert(
                    sid.clone(),
                    LegHandle {
                        commands: commands_tx,
                        media: None,
                        record: record.legs.len() - 1,
                        held: false,
                    },
                );
                let span = tracing::info_span!("leg", leg_sid = %sid);
                match destination {
                    Destination::Device {
                        identity,
                        device,
                        parameters,
                    } => {
                        tokio::spawn(
                            leg::client(context, identity, device, parameters).instrument(span),
                        );
                    }
                    Destination::Sip {
                        request_uri,
                        to,
                        target,
                    } => {
                        tokio::spawn(leg::sip(context, request_uri, to, target).instrument(span));
                    }
                }
                started.push(StartedLeg { sid, noun });
            }
        }
        started
    }

    /// What a `<Dial>` noun reaches now.
    fn destinations(&self, target: &twiml::Target) -> Vec<Destination> {
        match target {
            twiml::Target::Client(client) => {
                let Ok(identity) = presence::Identity::new(&client.identity) else {
                    return Vec::new();
                };
                // Each device of this identity gets this noun's parameters, and only its own.
                self.services
                    .presence
                    .reachable_devices(&identity)
                    .iter()
                    .map(|device| Destination::Device {
                        identity: identity.clone(),
                        device: device.clone(),
                        parameters: client.parameters.clone(),
                    })
                    .collect()
            }
            twiml::Target::Sip(text) => {
                let Ok(uri) = sip::message::Uri::parse(text) else {
                    return Vec::new();
                };
                // A registered user's contacts first (the location service, RFC 3261 §10);
                // any other URI goes to its host.
                let user = uri.user().unwrap_or_default();
                let bindings = if user.is_empty() {
                    Vec::new()
                } else {
                    self.services.endpoint.locate(user)
                };
                if !bindings.is_empty() {
                    return bindings
                        .into_iter()
                        .map(|binding| {
                            let target = match binding.transport {
                                ListenTransport::Udp => Target::udp(binding.source),
                                ListenTransport::Tcp => Target::tcp(binding.source),
                            };
                            Destination::Sip {
                                request_uri: binding.contact.uri,
                                to: uri.clone(),
                                target,
                            }
                        })
                        .collect();
                }
                leg::uri_target(&uri)
                    .map(|target| {
                        vec![Destination::Sip {
                            request_uri: uri.clone(),
                            to: uri,
                            target,
                        }]
                    })
                    .unwrap_or_default()
            }
            twiml::Target::Number(number) => {
                let Some(trunk) = &self.services.outbound_trunk else {
                    tracing::warn!("<Number> dialled but no trunk has an outbound_uri");
                    return Vec::new();
                };
                let mut uri = trunk.clone();
                if let Some(sip) = uri.as_sip_mut() {
                    sip.user = Some(number.as_str().into());
                }
                leg::uri_target(trunk)
                    .map(|target| {
                        vec![Destination::Sip {
                            request_uri: uri.clone(),
                            to: uri,
                            target,
                        }]
                    })
                    .unwrap_or_default()
            }
        }
    }

    fn command(&self, sid: &CallSid, command: LegCommand) {
        if let Some(handle) = self.legs.get(sid) {
            let _ = handle.commands.send(command);
        }
    }

    async fn bridge(&mut self, call: &mut Call, sid: CallSid) {
        let Some(media) = self
            .legs
            .get_mut(&sid)
            .and_then(|handle| handle.media.take())
        else {
            call.handle_internal_error(Instant::now(), "answered leg without media");
            return;
        };
        if let Some(playing) = self.prompt.take() {
            playing.stop();
        }
        if let Some(listener) = self.listener.take() {
            listener.stop().await;
        }
        let caller = Leg {
            socket: self.caller.ports.rtp().clone(),
            remote: self.caller.negotiated.remote,
            format: (&self.caller.negotiated).into(),
            latching: false,
            rtcp: rtcp_endpoint(&self.caller.ports, &self.caller.negotiated),
        };
        let callee = Leg {
            socket: media.ports.rtp().clone(),
            remote: media.negotiated.remote,
            format: (&media.negotiated).into(),
            latching: media.latching,
            rtcp: rtcp_endpoint(&media.ports, &media.negotiated),
        };
        tracing::info!(leg_sid = %sid, caller = %caller.remote, callee = %callee.remote, "bridged");
        let relay = self
            .services
            .relays
            .relay(caller, callee, RelayConfig::default());
        if self.caller_held {
            relay.hold(Side::A, true);
        }
        // The leg's ports stay leased until the leg is dropped from the table.
        if let Some(handle) = self.legs.get_mut(&sid) {
            if handle.held {
                relay.hold(Side::B, true);
            }
            handle.media = Some(media);
        }
        self.relay = Some((sid.clone(), relay));
    }

    /// Ends the relay with `sid`, if bridged to it.
    async fn unbridge(&mut self, sid: &CallSid) {
        if self
            .relay
            .as_ref()
            .is_some_and(|(bridged, _)| bridged == sid)
        {
            if let Some((_, relay)) = self.relay.take() {
                let report = relay.stop().await;
                tracing::info!(
                    leg_sid = %sid,
                    caller_to_leg = report.a_to_b.forwarded,
                    leg_to_caller = report.b_to_a.forwarded,
                    "bridge ended"
                );
            }
        }
    }

    fn listen(&mut self) {
        if self.listener.is_some() {
            return;
        }
        self.listener = Some(
            self.services.relays.listen(
                ListenerConfig {
                    socket: Arc::clone(self.caller.ports.rtp()),
                    remote: self.caller.negotiated.remote,
                    latching: false,
                    latch_window: media::rtp::latch::DEFAULT_LATCH_WINDOW,
                    telephone_event: self.caller.negotiated.telephone_event,
                },
                self.digits
                    .get_or_insert_with(|| mpsc::channel(DIGIT_QUEUE))
                    .0
                    .clone(),
            ),
        );
    }

    fn play(&mut self, id: PromptId, audio: Audio, loops: Loop) {
        if let Some(playing) = self.prompt.take() {
            playing.stop();
        }
        let (stop_tx, stop) = oneshot::channel();
        let (media_tx, media) = watch::channel(self.caller.negotiated);
        self.prompt = Some(Playing {
            id,
            stop: stop_tx,
            media: media_tx,
        });
        let services = self.services.clone();
        let done = self
            .prompt_done
            .get_or_insert_with(mpsc::unbounded_channel)
            .0
            .clone();
        let sender = self.rtp_sender.take().unwrap_or_else(Sender::random);
        let socket = self.caller.ports.rtp().clone();
        tokio::spawn(async move {
            let (error, sender) =
                stream_prompt(&services, audio, loops, socket, media, sender, stop).await;
            let _ = done.send((id, error, sender));
        });
    }

    async fn hang_up_caller(&mut self) {
        // RFC 3261 §15: no BYE before the ACK of our 2xx (or its transaction's timeout).
        if !self.caller.acked {
            let waited = tokio::time::timeout(ACK_WAIT, async {
                while let Some(event) = self.caller.events.recv().await {
                    match event {
                        CallEvent::Ack(_) => return true,
                        CallEvent::NoAck | CallEvent::TransportError | CallEvent::Cancelled => {
                            return false
                        }
                        CallEvent::Request(request, key) => {
                            let bye = request.method == Method::Bye;
                            self.services
                                .endpoint
                                .respond(&key, request.response(StatusCode::OK, None));
                            if bye {
                                return false;
                            }
                        }
                    }
                }
                false
            })
            .await;
            if waited != Ok(true) {
                return;
            }
        }
        if let Some(dialog) = self.caller.dialog.as_mut() {
            leg::send_bye(
                &self.services.endpoint,
                dialog,
                &self.caller.contact,
                self.caller.target,
            );
        }
    }

    /// Releases everything the call holds and files its record.
    async fn finish(&mut self, call: &Call, record: &mut CallRecord, status: CallStatus) {
        // A fetch in flight is cancelled by dropping it.
        self.fetch = None;
        if let Some(playing) = self.prompt.take() {
            playing.stop();
        }
        if let Some((_, relay)) = self.relay.take() {
            relay.stop().await;
        }
        if let Some(listener) = self.listener.take() {
            listener.stop().await;
        }
        // Dropping the handles closes every leg's command channel: legs still alive cancel
        // or hang up on their own.
        self.legs.clear();
        self.refresh(call, record);
        record.status = status;
        tracing::info!(status = status.as_str(), "call ended");
        self.services.records.finish(record.clone());
    }

    /// Copies the machine's status and times into the record, and publishes it to the call
    /// table when it differs from what was published last.
    fn refresh(&mut self, call: &Call, record: &mut CallRecord) {
        let (_, answered, ended) = call.times();
        let wall = |at: Instant| rfc3339(self.clock.1 + at.saturating_duration_since(self.clock.0));
        record.status = call.status();
        if record.answer_time.is_none() {
            record.answer_time = answered.map(wall);
        }
        if record.end_time.is_none() {
            record.end_time = ended.map(wall);
        }
        if self
            .published
            .as_deref()
            .is_none_or(|published| published.differs_from(record))
        {
            let published = Arc::new(record.clone());
            self.services.records.update(Arc::clone(&published));
            self.published = Some(published);
        }
    }

    fn caller_response(&self, status: StatusCode) -> Response {
        let mut response = self
            .caller
            .request
            .response(status, Some(&self.caller.local_tag));
        response.headers.contact = Contact::Addresses(vec![self.caller.contact.clone()]);
        response
    }
}

/// A place a `<Dial>` noun reaches.
// At most ten live for the moment a dial starts its legs: boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
enum Destination {
    /// A device of a client identity, offered the call over the WebSocket gateway.
    Device {
        identity: presence::Identity,
        device: presence::registry::Reachable,
        /// The `<Client>` noun's custom parameters, for the device's `invite`.
        parameters: Vec<(String, String)>,
    },
    /// A SIP destination: the Request-URI (a registered contact, or the URI itself), the
    /// address of record for To, and where to send.
    Sip {
        request_uri: sip::message::Uri,
        to: sip::message::Uri,
        target: Target,
    },
}

impl Destination {
    fn describe(&self) -> String {
        match self {
            Destination::Device { identity, .. } => format!("client:{}", identity.as_str()),
            Destination::Sip { to, .. } => to.to_string(),
        }
    }
}

/// Streams one prompt until it ends or `stop` fires; the error (if any) and the RTP sender
/// to continue the caller's stream with.
async fn stream_prompt(
    services: &Services,
    audio: Audio,
    loops: Loop,
    socket: Arc<std::net::UdpSocket>,
    mut media: watch::Receiver<Negotiated>,
    sender: Sender,
    mut stop: oneshot::Receiver<()>,
) -> (Option<String>, Option<Sender>) {
    let samples = tokio::select! {
        _ = &mut stop => return (None, Some(sender)),
        resolved = audio::resolve(services, &audio) => match resolved {
            Ok(samples) => samples,
            Err(error) => return (Some(error), Some(sender)),
        },
    };
    // The caller's media as it stands now (it may have moved while the audio was fetched).
    let negotiated = *media.borrow_and_update();
    let prompt = Prompt {
        socket,
        destination: negotiated.remote,
        audio: samples,
        codec: negotiated.codec,
        payload_type: negotiated.payload_type,
        loops: if loops.is_forever() {
            Loops::Forever
        } else {
            Loops::Times(loops.count())
        },
        sender,
    };
    let mut playback = match services.player.play(prompt) {
        Ok(playback) => playback,
        Err(error) => return (Some(error.to_string()), None),
    };
    let finished = loop {
        tokio::select! {
            _ = &mut stop => {
                playback.stop();
                break playback.finished().await;
            }
            finished = playback.finished() => break finished,
            Ok(()) = media.changed() => {
                let moved = *media.borrow_and_update();
                playback.redirect(moved.remote, moved.codec, moved.payload_type);
            }
        }
    };
    match finished {
        Ok(finished) => (None, Some(finished.sender)),
        Err(error) => (Some(error.to_string()), None),
    }
}

/// What `receiving` gives (the next message of a channel made on first use); never completes
/// while there is nothing to wait for.
async fn when_made<F: Future>(receiving: Option<F>) -> F::Output {
    match receiving {
        Some(receiving) => receiving.await,
        None => std::future::pending().await,
    }
}

/// Waits for the pending fetch; never completes without one. Cancel-safe: the fetch lives
/// in `fetch` until it completes.
async fn fetched(
    fetch: &mut Option<(FetchId, Fetching)>,
) -> Option<(FetchId, Result<Document, FetchFailure>)> {
    let Some((id, fetching)) = fetch.as_mut() else {
        return std::future::pending().await;
    };
    let id = *id;
    let result = fetching.await;
    *fetch = None;
    Some((id, result))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Where the caller's in-dialog requests go back to: the address the INVITE came from, over
/// its transport.
fn caller_target(request: &Request, source: SocketAddr) -> Target {
    match request.headers.top_via().map(|via| &via.transport) {
        Some(Transport::Tcp) => Target::tcp(source),
        _ => Target::udp(source),
    }
}

/// The IP Tandem's media uses toward a peer: the one its SIP Contact carries (the advertised
/// address, or the local address of the route toward the peer).
/// Where a leg's RTCP flows: on its RTP socket when multiplexed (RFC 5761), else on the
/// RTCP socket of its ports; none if that could not be opened.
fn rtcp_endpoint(ports: &RtpPorts, negotiated: &Negotiated) -> Option<RtcpEndpoint> {
    let socket = if negotiated.rtcp_mux {
        ports.rtp()
    } else {
        ports.rtcp()?
    };
    Some(RtcpEndpoint {
        socket: socket.clone(),
        remote: negotiated.remote_rtcp,
    })
}

fn media_ip(contact: &NameAddr, peer: SocketAddr) -> std::net::IpAddr {
    contact
        .uri
        .as_sip()
        .and_then(|sip| sip.host.ip())
        .unwrap_or(peer.ip())
}

/// The user part of a From header (or its display name, or `anonymous`), as webhooks show
/// the caller.
fn display_user(from: &NameAddr) -> String {
    from.uri
        .user()
        .map(str::to_owned)
        .or_else(|| from.display_name.clone())
        .unwrap_or_else(|| "anonymous".to_owned())
}

/// The digit of a SIP INFO carrying DTMF (`application/dtmf-relay`: `Signal=5`, or
/// `application/dtmf`: the key itself).
pub(super) fn info_digit(request: &Request) -> Option<char> {
    let content_type = request.headers.content_type()?.to_ascii_lowercase();
    let body = std::str::from_utf8(&request.body).ok()?;
    let key = if content_type.starts_with("application/dtmf-relay") {
        body.lines()
            .find_map(|line| {
                let (name, value) = line.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("signal")
                    .then(|| value.trim())
            })?
            .to_owned()
    } else if content_type.starts_with("application/dtmf") {
        body.trim().to_owned()
    } else {
        return None;
    };
    let mut chars = key.chars();
    let digit = chars.next()?.to_ascii_uppercase();
    (chars.next().is_none() && media::dtmf::Event::from_key(digit).is_some()).then_some(digit)
}

/// Twilio's `Timestamp` format (RFC 2822 with a numeric zone).
fn twilio_timestamp(time: SystemTime) -> String {
    httpdate::fmt_http_date(time).replace("GMT", "+0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(content_type: &str, body: &str) -> Request {
        let text = format!(
            "INFO sip:t@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:t@127.0.0.1>;tag=2\r\nCall-ID: c\r\n\
             CSeq: 2 INFO\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match sip::message::parse(text.as_bytes()).unwrap() {
            sip::message::Message::Request(request) => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sip_info_dtmf_bodies() {
        assert_eq!(
            info_digit(&info(
                "application/dtmf-relay",
                "Signal=5\r\nDuration=160\r\n"
            )),
            Some('5')
        );
        assert_eq!(
            info_digit(&info("application/dtmf-relay", "Signal= #\r\n")),
            Some('#')
        );
        assert_eq!(info_digit(&info("application/dtmf", "*")), Some('*'));
        assert_eq!(
            info_digit(&info("application/dtmf-relay", "Signal=55")),
            None
        );
        assert_eq!(
            info_digit(&info("application/dtmf-relay", "Signal=x")),
            None
        );
        assert_eq!(info_digit(&info("text/plain", "5")), None);
    }

    #[test]
    fn timestamps_look_like_twilios() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_509_015);
        assert_eq!(twilio_timestamp(t), "Tue, 24 Nov 2026 08:30:15 +0000");
    }
}
