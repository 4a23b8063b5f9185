//! Dialled legs: one task per device or SIP destination, owning that leg's signalling and its
//! RTP ports until it ends. A leg reports to its call's task ([`LegReport`]) and obeys
//! [`LegCommand`]s; a closed command channel means the call is gone, and the leg releases
//! itself the way a cancel (not answered) or hang-up (answered) would.

use std::net::SocketAddr;
use std::sync::Arc;

use media::ports::RtpPorts;
use media::rtp::Codec;
use media::sdp::{self, Negotiated, Session};
use presence::{CallEvent as DeviceEvent, Identity, ToDevice};
use sip::dialog::Dialog;
use sip::endpoint::{CallEvent, ClientEvent};
use sip::message::{
    Branch, CSeq, CallId, Contact, Headers, Method, NameAddr, Request, StatusCode, Tag, Uri,
};
use sip::transport::Target;
use tokio::sync::mpsc;

use super::reoffer::Reoffer;
use super::Services;
use crate::call::{DialId, LegEvent, LegFailure};
use crate::sid::CallSid;

/// The codecs Tandem offers and accepts, in order of preference.
pub(super) const CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

/// What the call's task tells a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LegCommand {
    /// Withdraw the offer (CANCEL / `cancel`).
    Cancel,
    /// End the answered leg (BYE / `hangup`).
    HangUp,
}

/// An answered leg's media, handed to the call's task for the relay.
#[derive(Debug)]
pub(super) struct LegMedia {
    /// The leg's RTP and RTCP sockets (released when this drops).
    pub ports: RtpPorts,
    /// What offer/answer settled.
    pub negotiated: Negotiated,
    /// Whether the relay latches onto the leg's first source (clients behind NAT).
    pub latching: bool,
}

/// What a leg did.
#[derive(Debug)]
pub(super) enum LegUpdate {
    /// Alerting.
    Ringing,
    /// Answered, with its media (boxed: it would make every report, and so every slot of the
    /// report channel, several times larger).
    Answered(Box<LegMedia>),
    /// Ended unanswered.
    Failed(LegFailure),
    /// The answered party hung up.
    Ended,
    /// The answered party pressed keys out of band (a client's `dtmf`), for the caller.
    Digits(String),
    /// The answered party's re-INVITE made a new offer (hold, resume, media moved), as
    /// answered (boxed like `Answered`).
    Reoffered(Box<Reoffer>),
}

impl LegUpdate {
    /// The state machine's view of it; `None` for what only the media path cares about.
    pub(super) fn event(&self) -> Option<LegEvent> {
        Some(match self {
            LegUpdate::Ringing => LegEvent::Ringing,
            LegUpdate::Answered(_) => LegEvent::Answered,
            LegUpdate::Failed(failure) => LegEvent::Failed(*failure),
            LegUpdate::Ended => LegEvent::Ended,
            LegUpdate::Digits(_) | LegUpdate::Reoffered(_) => return None,
        })
    }
}

/// A leg's report to its call.
#[derive(Debug)]
pub(super) struct LegReport {
    /// The dial the leg belongs to.
    pub dial: DialId,
    /// The leg.
    pub sid: CallSid,
    /// What happened.
    pub update: LegUpdate,
}

/// Everything a leg task needs.
pub(super) struct LegContext {
    pub services: Arc<Services>,
    pub dial: DialId,
    pub sid: CallSid,
    pub reports: mpsc::UnboundedSender<LegReport>,
    pub commands: mpsc::UnboundedReceiver<LegCommand>,
    /// The caller ID the leg presents.
    pub caller_id: String,
    /// The dialled party as the caller dialled it (a client's `to`).
    pub to: String,
    /// The leg's RTP ports until it is answered; then they travel in [`LegMedia`].
    pub ports: Option<RtpPorts>,
    /// Our SDP offer for this leg; once answered, the description we last sent it.
    pub offer: Session,
    /// The media address of our offer (a re-INVITE is answered from it).
    pub media: SocketAddr,
    /// Max-Forwards of a SIP leg: the caller's, decremented.
    pub max_forwards: u32,
}

impl LegContext {
    fn report(&self, update: LegUpdate) {
        let _ = self.reports.send(LegReport {
            dial: self.dial,
            sid: self.sid.clone(),
            update,
        });
    }

    /// Reports the answer, handing the leg's ports to the call for the relay. An answer that
    /// declined our offer of RTCP multiplexing has the leg's RTCP on its own port (RFC 5761
    /// §5.1.1), which is opened now.
    fn answered(&mut self, negotiated: Negotiated, latching: bool) {
        if let Some(mut ports) = self.ports.take() {
            if !negotiated.rtcp_mux {
                if let Err(error) = ports.open_rtcp() {
                    tracing::warn!(leg = %self.sid, %error, "no RTCP port: the leg goes without RTCP");
                }
            }
            self.report(LegUpdate::Answered(Box::new(LegMedia {
                ports,
                negotiated,
                latching,
            })));
        }
    }

    /// Accepts the party's SDP answer; `None` (after logging) if it is unusable.
    fn accept(&self, answer: &[u8]) -> Option<Negotiated> {
        let negotiated = Session::parse(answer)
            .and_then(|session| sdp::accept_answer(&self.offer, &session, &CODECS));
        match negotiated {
            Ok(negotiated) => Some(negotiated),
            Err(error) => {
                tracing::warn!(leg = %self.sid, %error, "dialled party's SDP answer is unusable");
                None
            }
        }
    }
}

/// Replies a device may queue before the leg reads them (a call produces a handful).
const DEVICE_REPLIES: usize = 16;

/// Offers the call to one client device, with its `<Client>` noun's custom `parameters`, and
/// follows it until it ends.
pub(super) async fn client(
    mut leg: LegContext,
    identity: Identity,
    device: presence::registry::Reachable,
    parameters: Vec<(String, String)>,
) {
    let (replies_tx, mut replies) = mpsc::channel(DEVICE_REPLIES);
    let invite = ToDevice::Invite {
        call_sid: leg.sid.to_string(),
        from: leg.caller_id.clone(),
        to: leg.to.clone(),
        sdp: leg.offer.to_text(),
        parameters,
        replies: replies_tx,
    };
    if let Err(error) = device.sender.try_send(invite) {
        tracing::info!(leg = %leg.sid, %error, "device could not be offered the call");
        leg.report(LegUpdate::Failed(LegFailure::Failed));
        return;
    }
    let call_sid = leg.sid.to_string();
    let mut answered = false;
    let mut rang = false;
    // Held while answered: the device shows busy and is offered no other call.
    let mut busy = None;
    loop {
        tokio::select! {
            reply = replies.recv() => {
                let event = reply.map(|reply| reply.event).unwrap_or(DeviceEvent::Gone);
                match event {
                    DeviceEvent::Ringing => {
                        if !rang && !answered {
                            rang = true;
                            leg.report(LegUpdate::Ringing);
                        }
                    }
                    DeviceEvent::Answer { sdp } if !answered => {
                        let Some(negotiated) = leg.accept(sdp.as_bytes()) else {
                            let _ = device.sender.try_send(ToDevice::Hangup {
                                call_sid,
                                reason: "failed".into(),
                            });
                            leg.report(LegUpdate::Failed(LegFailure::Failed));
                            return;
                        };
                        answered = true;
                        busy = leg.services.presence.mark_busy(&identity, device.device_id);
                        leg.answered(negotiated, true);
                    }
                    DeviceEvent::Answer { .. } => {}
                    DeviceEvent::Dtmf { digits } if answered => {
                        leg.report(LegUpdate::Digits(digits));
                    }
                    DeviceEvent::Dtmf { .. } => {
                        tracing::debug!(leg = %leg.sid, "client DTMF before the answer ignored");
                    }
                    DeviceEvent::Reject => {
                        leg.report(if answered {
                            LegUpdate::Ended
                        } else {
                            LegUpdate::Failed(LegFailure::Rejected)
                        });
                        return;
                    }
                    DeviceEvent::Hangup | DeviceEvent::Gone => {
                        leg.report(if answered {
                            LegUpdate::Ended
                        } else {
                            LegUpdate::Failed(LegFailure::Failed)
                        });
                        drop(busy);
                        return;
                    }
                }
            }
            command = leg.commands.recv() => {
                let event = match (command, answered) {
                    (Some(LegCommand::HangUp), _) | (None, true) => ToDevice::Hangup {
                        call_sid,
                        reason: "completed".into(),
                    },
                    (Some(LegCommand::Cancel), _) | (None, false) => ToDevice::Cancel { call_sid },
                };
                let _ = device.sender.try_send(event);
                return;
            }
        }
    }
}

/// Sends the call to one SIP destination (Request-URI `uri`, To the address of record `to`)
/// and follows it until it ends.
pub(super) async fn sip(mut leg: LegContext, uri: Uri, to: Uri, target: Target) {
    let endpoint = leg.services.endpoint.clone();
    let contact = endpoint.contact(target, "tandem");
    let mut from = NameAddr::new(caller_uri(&leg.caller_id, &contact));
    from.set_tag(&Tag::random());
    let mut headers = Headers::new(
        from,
        NameAddr::new(to),
        CallId::random(),
        CSeq {
            seq: 1,
            method: Method::Invite,
        },
    );
    headers.max_forwards = Some(leg.max_forwards);
    headers.contact = Contact::Addresses(vec![contact.clone()]);
    headers.push("Content-Type", "application/sdp");
    let request = Request {
        method: Method::Invite,
        uri,
        headers,
        body: leg.offer.to_text().into_bytes().into(),
    };
    let mut outgoing = endpoint.send_invite(request, target);
    // Whether the callee agreed to RTCP multiplexing, once it answered.
    let mut rtcp_mux = false;
    let mut late_offer = super::reoffer::LateOffer::default();
    let mut dialog: Option<Dialog> = None;
    let mut rang = false;
    let mut answered = false;
    let mut cancelled = false;
    let mut responses_open = true;
    loop {
        tokio::select! {
            event = outgoing.responses.recv(), if responses_open => {
                let response = match event {
                    Some(ClientEvent::Response(response)) => response,
                    Some(ClientEvent::Timeout) => {
                        leg.report(LegUpdate::Failed(LegFailure::NoAnswer));
                        return;
                    }
                    Some(ClientEvent::TransportError) => {
                        leg.report(LegUpdate::Failed(LegFailure::Failed));
                        return;
                    }
                    None => {
                        responses_open = false;
                        if !answered {
                            leg.report(LegUpdate::Failed(LegFailure::Failed));
                            return;
                        }
                        continue;
                    }
                };
                let code = response.status.code();
                if code < 200 {
                    if code > 100 && !rang && !cancelled {
                        rang = true;
                        leg.report(LegUpdate::Ringing);
                    }
                    continue;
                }
                if code >= 300 {
                    leg.report(LegUpdate::Failed(failure_of(response.status)));
                    return;
                }
                // RFC 3261 §13.2.2.4: every 2xx (retransmissions too) is ACKed.
                if dialog.is_none() {
                    match Dialog::new_uac(&outgoing.request, &response) {
                        Ok(created) => dialog = Some(created),
                        Err(error) => {
                            tracing::warn!(leg = %leg.sid, %error, "2xx without a usable dialog");
                            leg.report(LegUpdate::Failed(LegFailure::Failed));
                            return;
                        }
                    }
                }
                let Some(current) = dialog.as_mut() else { continue };
                acknowledge(&endpoint, current, &outgoing.request, target);
                if answered {
                    continue;
                }
                answered = true;
                let negotiated = if cancelled { None } else { leg.accept(&response.body) };
                let Some(negotiated) = negotiated else {
                    // Answered after our CANCEL crossed it, or with SDP we cannot use.
                    send_bye(&endpoint, current, &contact, target);
                    if !cancelled {
                        leg.report(LegUpdate::Failed(LegFailure::Failed));
                    }
                    return;
                };
                rtcp_mux = negotiated.rtcp_mux;
                leg.answered(negotiated, false);
            }
            event = outgoing.events.recv() => {
                let (request, key) = match event {
                    Some(CallEvent::Request(request, key)) => (request, key),
                    Some(CallEvent::Ack(ack)) => {
                        if let Some(answered) = late_offer.answer_in(&ack, &leg.offer) {
                            leg.report(LegUpdate::Reoffered(Box::new(answered)));
                        }
                        continue;
                    }
                    _ => continue,
                };
                let ends = request.method == Method::Bye;
                if request.method == Method::Info && answered {
                    // The callee's key presses by SIP INFO go to the caller as RFC 4733
                    // events (the relay plays them); its in-band events are relayed as is.
                    if let Some(digit) = super::task::info_digit(&request) {
                        leg.report(LegUpdate::Digits(digit.to_string()));
                    }
                }
                let response = if request.method == Method::Invite {
                    // A re-INVITE (hold, refresh, media moved): answered like the caller's;
                    // the call's task follows the new offer. `leg.offer` becomes the
                    // description we last sent the callee: our answers to its re-INVITEs
                    // continue the offer's origin (RFC 3264 §8); the offer itself was needed
                    // only to read the 2xx, which precedes any re-INVITE in the dialog.
                    let (response, reoffer) = super::reoffer::answer_reinvite(
                        &request,
                        leg.media,
                        rtcp_mux,
                        &mut leg.offer,
                        &contact,
                    );
                    if let Some(reoffer) = reoffer.filter(|_| answered) {
                        leg.report(LegUpdate::Reoffered(Box::new(reoffer)));
                    }
                    if answered {
                        late_offer.expect(&request, &response);
                    }
                    response
                } else {
                    request.response(StatusCode::OK, None)
                };
                endpoint.respond(&key, response);
                if ends {
                    leg.report(LegUpdate::Ended);
                    return;
                }
            }
            command = leg.commands.recv() => {
                match (command, dialog.as_mut()) {
                    (Some(LegCommand::HangUp) | None, Some(current)) if answered => {
                        send_bye(&endpoint, current, &contact, target);
                        return;
                    }
                    (Some(_) | None, _) if !cancelled => {
                        // RFC 3261 §9.1: CANCEL the pending INVITE; its 487 (or a 2xx that
                        // crossed the CANCEL, then ACKed and hung up) still arrives above.
                        cancelled = true;
                        endpoint.cancel(&outgoing.request, target);
                    }
                    _ => {}
                }
                if command.is_none() && cancelled && !answered {
                    // The call is gone; keep absorbing responses until the INVITE's
                    // transaction ends (bounded by Timer B), without more commands.
                    drain_after_cancel(&mut outgoing.responses, &endpoint, &outgoing.request, &contact, target).await;
                    return;
                }
            }
        }
    }
}

/// After a CANCEL when nobody listens any more: a 2xx that crossed it is ACKed and hung up.
async fn drain_after_cancel(
    responses: &mut mpsc::UnboundedReceiver<ClientEvent>,
    endpoint: &sip::endpoint::EndpointHandle,
    invite: &Request,
    contact: &NameAddr,
    target: Target,
) {
    while let Some(event) = responses.recv().await {
        let ClientEvent::Response(response) = event else {
            return;
        };
        if response.status.code() < 200 {
            continue;
        }
        if response.status.code() < 300 {
            if let Ok(mut dialog) = Dialog::new_uac(invite, &response) {
                acknowledge(endpoint, &mut dialog, invite, target);
                send_bye(endpoint, &mut dialog, contact, target);
            }
        }
        return;
    }
}

/// ACKs a 2xx to `invite` in `dialog` (RFC 3261 §13.2.2.4: outside any transaction, to the
/// remote target) and confirms the dialog.
fn acknowledge(
    endpoint: &sip::endpoint::EndpointHandle,
    dialog: &mut Dialog,
    invite: &Request,
    fallback: Target,
) {
    let target = dialog_target(dialog.remote_target(), fallback);
    let ack = dialog.create_ack(
        invite.headers.cseq.seq,
        endpoint.via(target, &Branch::random()),
    );
    endpoint.send_stateless(ack, target);
    dialog.confirm();
}

/// Sends BYE in `dialog`; nobody waits for its response (the transaction retransmits alone).
pub(super) fn send_bye(
    endpoint: &sip::endpoint::EndpointHandle,
    dialog: &mut Dialog,
    contact: &NameAddr,
    fallback: Target,
) {
    let target = dialog_target(dialog.remote_target(), fallback);
    let bye = dialog.create_request(
        Method::Bye,
        endpoint.via(target, &Branch::random()),
        contact,
    );
    endpoint.send_request_unwatched(bye, target);
}

/// Where in-dialog requests go: the remote target if it names an IP address (RFC 3261
/// §12.2.1.1), else the address the dialog was set up with.
pub(super) fn dialog_target(remote: &Uri, fallback: Target) -> Target {
    match uri_target(remote) {
        Some(target) => target,
        None => fallback,
    }
}

/// The transport and socket address of a SIP URI whose host is an IP literal (5060 when no
/// port; `;transport=tcp` selects TCP). Host names are not resolved here.
pub(super) fn uri_target(uri: &Uri) -> Option<Target> {
    let sip = uri.as_sip()?;
    let ip = sip.host.ip()?;
    let address = SocketAddr::new(ip, sip.port.unwrap_or(5060));
    let tcp = sip
        .params
        .get("transport")
        .flatten()
        .is_some_and(|value| value.eq_ignore_ascii_case("tcp"));
    Some(if tcp {
        Target::tcp(address)
    } else {
        Target::udp(address)
    })
}

/// Twilio's outcome for a final response to a dialled INVITE.
fn failure_of(status: StatusCode) -> LegFailure {
    match status.code() {
        486 | 600 => LegFailure::Busy,
        603 => LegFailure::Rejected,
        408 | 480 | 487 => LegFailure::NoAnswer,
        _ => LegFailure::Failed,
    }
}

/// The From URI of a dialled leg: the caller ID as user part if it is a plain number or
/// token, else `anonymous`.
fn caller_uri(caller_id: &str, contact: &NameAddr) -> Uri {
    let plain = !caller_id.is_empty()
        && caller_id.len() <= 64
        && caller_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-_.".contains(&b));
    let user = if plain { caller_id } else { "anonymous" };
    let mut uri = contact.uri.clone();
    if let Some(sip) = uri.as_sip_mut() {
        sip.user = Some(user.into());
        sip.params = Default::default();
    }
    uri
}
