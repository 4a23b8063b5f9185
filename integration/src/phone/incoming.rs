//! Calls the phone takes: 100 Trying, 180 Ringing, then the final response the configured
//! [`Answer`] asks for, retransmitted until its ACK (RFC 3261 §13.3.1.4 for 2xx, §17.2.1 for
//! the rest); CANCEL before the final response ends the INVITE with 487 (§9.2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip::message::{CallId, Message, Method, Request, Response, Tag};

use super::{response, Dialog, Inner, Phone, T1, T2};

/// How the phone answers an INVITE (after 100 Trying and 180 Ringing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 OK with the SDP answer, after this delay.
    After(Duration),
    /// A final `status` (486, 603, ...), after `after`.
    Reject {
        /// The status code.
        status: u16,
        /// The delay before it.
        after: Duration,
    },
    /// Ring until cancelled.
    Never,
}

/// A call the phone was offered.
pub struct IncomingCall {
    inner: Arc<Inner>,
    invite: Request,
    source: SocketAddr,
}

impl Phone {
    /// Waits for the next INVITE the phone was offered (each call is handed out once).
    pub async fn wait_invite(&self, timeout: Duration) -> IncomingCall {
        let (invite, source) = self
            .inner
            .wait(timeout, "incoming INVITE", None, |state| {
                let call_id = state.incoming.get(state.incoming_handed_out)?;
                let dialog = state.dialogs.get(call_id)?;
                Some((dialog.invite.clone(), dialog.peer))
            })
            .await;
        self.inner.lock().incoming_handed_out += 1;
        IncomingCall {
            inner: self.inner.clone(),
            invite,
            source,
        }
    }
}

impl IncomingCall {
    /// The call's Call-ID.
    pub fn call_id(&self) -> &CallId {
        &self.invite.headers.call_id
    }

    /// The INVITE as received.
    pub fn invite(&self) -> &Request {
        &self.invite
    }

    /// Where the INVITE came from.
    pub fn source(&self) -> SocketAddr {
        self.source
    }

    /// The SDP offer of the INVITE (empty if it had none).
    pub fn offer_sdp(&self) -> String {
        String::from_utf8_lossy(&self.invite.body).into_owned()
    }

    /// The final response status the phone sent, if any yet.
    pub fn final_status(&self) -> Option<u16> {
        self.inner
            .lock()
            .dialogs
            .get(self.call_id())
            .and_then(|d| d.final_status)
    }

    /// Waits for the ACK of the final response.
    pub async fn wait_ack(&self, timeout: Duration) -> Request {
        self.wait_request(Method::Ack, timeout).await
    }

    /// Waits for a CANCEL of the INVITE (already answered: 200, and 487 for the INVITE).
    pub async fn wait_cancel(&self, timeout: Duration) -> Request {
        self.wait_request(Method::Cancel, timeout).await
    }

    /// Waits for a BYE in this call (already answered 200).
    pub async fn wait_bye(&self, timeout: Duration) -> Request {
        self.wait_request(Method::Bye, timeout).await
    }

    /// Waits for the first request with `method` received in this call after the INVITE.
    pub async fn wait_request(&self, method: Method, timeout: Duration) -> Request {
        let call_id = self.call_id().clone();
        self.inner
            .wait(
                timeout,
                &format!("{method} in the call"),
                Some(&call_id),
                |state| state.request_in(&call_id, &method, 0),
            )
            .await
    }

    /// Hangs up: sends BYE in the dialog and returns its final response.
    pub async fn bye(&self) -> Response {
        self.in_dialog(Method::Bye, None).await
    }

    /// Sends INFO with `content_type` and `body` in the dialog and returns its final response.
    pub async fn info(&self, content_type: &str, body: &str) -> Response {
        self.in_dialog(Method::Info, Some((content_type, body)))
            .await
    }

    /// Sends a re-INVITE offering `sdp` in the dialog (ACKing a 2xx) and returns its final
    /// response.
    pub async fn reinvite(&self, sdp: &str) -> Response {
        self.inner.reinvite(self.call_id(), sdp).await
    }

    /// Sends a re-INVITE without an offer and ACKs the 2xx with `answer(offer)` (see
    /// [`super::OutgoingCall::reinvite_late_offer`]).
    pub async fn reinvite_late_offer(&self, answer: impl Fn(&str) -> String + Sync) -> Response {
        self.inner
            .reinvite_answering(self.call_id(), "", Some(&answer))
            .await
    }

    async fn in_dialog(&self, method: Method, body: Option<(&str, &str)>) -> Response {
        self.inner.in_dialog(self.call_id(), method, body).await
    }
}

/// A new INVITE: 100 Trying at once, then the configured script in a task of its own.
pub(super) async fn handle_invite(inner: &Arc<Inner>, invite: Request, from: SocketAddr) {
    let local_tag = Tag::random();
    let (answer, answerer) = {
        let mut state = inner.lock();
        let call_id = invite.headers.call_id.clone();
        state.dialogs.insert(
            call_id.clone(),
            Dialog {
                is_caller: false,
                invite: invite.clone(),
                peer: from,
                local_tag: local_tag.clone(),
                remote_tag: invite.headers.from.tag(),
                remote_target: invite
                    .headers
                    .contact
                    .addresses()
                    .first()
                    .map(|c| c.uri.clone()),
                route_set: invite.headers.record_route.clone(),
                local_cseq: 0,
                local_sdp: None,
                remote_sdp: (!invite.body.is_empty())
                    .then(|| String::from_utf8_lossy(&invite.body).into_owned()),
                ack_2xx: false,
                ack: None,
                final_status: None,
                acked: false,
            },
        );
        state.incoming.push(call_id);
        (
            state.answer.unwrap_or(Answer::Never),
            state.sdp_answerer.clone(),
        )
    };
    // RFC 3261 §17.2.1: a 100 at once stops the caller's INVITE retransmissions.
    let trying = response(inner, &invite, 100, &local_tag);
    inner.respond(&invite, trying, from).await;
    tokio::spawn(answer_script(
        inner.clone(),
        invite,
        from,
        local_tag,
        answer,
        answerer,
    ));
}

/// An ACK: for a call we took, its final response is acknowledged.
pub(super) fn handle_ack(inner: &Inner, ack: &Request) {
    if let Some(dialog) = inner.lock().dialogs.get_mut(&ack.headers.call_id) {
        if !dialog.is_caller {
            dialog.acked = true;
        }
    }
}

/// RFC 3261 §9.2: a CANCEL matching a pending INVITE gets 200, and the INVITE 487; one
/// matching nothing gets 481.
pub(super) async fn handle_cancel(inner: &Arc<Inner>, cancel: Request, from: SocketAddr) {
    let branch = cancel.branch();
    let found = {
        let mut state = inner.lock();
        state
            .dialogs
            .values_mut()
            .find(|d| !d.is_caller && d.invite.branch() == branch)
            .map(|dialog| {
                let pending = dialog.final_status.is_none();
                if pending {
                    dialog.final_status = Some(487);
                }
                (dialog.invite.clone(), dialog.local_tag.clone(), pending)
            })
    };
    let Some((invite, tag, pending)) = found else {
        let unknown = response(inner, &cancel, 481, &Tag::random());
        inner.respond(&cancel, unknown, from).await;
        return;
    };
    let ok = response(inner, &cancel, 200, &tag);
    inner.respond(&cancel, ok, from).await;
    if pending {
        let terminated = response(inner, &invite, 487, &tag);
        send_final(inner.clone(), invite, terminated, from).await;
    }
}

/// 180 Ringing, then the final response `answer` asks for, unless a CANCEL came first.
async fn answer_script(
    inner: Arc<Inner>,
    invite: Request,
    from: SocketAddr,
    tag: Tag,
    answer: Answer,
    answerer: Option<super::SdpAnswerer>,
) {
    let ringing = response(&inner, &invite, 180, &tag);
    inner.respond(&invite, ringing, from).await;
    let (status, delay) = match answer {
        Answer::Never => return,
        Answer::After(delay) => (200, delay),
        Answer::Reject { status, after } => (status, after),
    };
    tokio::time::sleep(delay).await;
    let mut final_response = response(&inner, &invite, status, &tag);
    // An INVITE without an offer is answered without SDP: this phone does not make offers
    // in 2xx (RFC 3264 §4 would allow it).
    let sdp = match (&answerer, status) {
        (Some(answerer), 200..=299) if !invite.body.is_empty() => {
            Some(answerer(&String::from_utf8_lossy(&invite.body)))
        }
        _ => None,
    };
    {
        let mut state = inner.lock();
        let Some(dialog) = state.dialogs.get_mut(&invite.headers.call_id) else {
            return;
        };
        if dialog.final_status.is_some() {
            // Cancelled meanwhile.
            return;
        }
        dialog.final_status = Some(status);
        dialog.local_sdp = sdp.clone();
    }
    if let Some(sdp) = sdp.filter(|s| !s.is_empty()) {
        final_response
            .headers
            .push("Content-Type", "application/sdp");
        final_response.body = Bytes::from(sdp);
    }
    send_final(inner, invite, final_response, from).await;
}

/// Sends a final response to an INVITE and retransmits it at T1, doubling up to T2, until the
/// ACK arrives or 64·T1 passed (RFC 3261 §13.3.1.4 for 2xx; Timer G and H for the others).
async fn send_final(inner: Arc<Inner>, invite: Request, final_response: Response, to: SocketAddr) {
    inner.respond(&invite, final_response.clone(), to).await;
    let call_id = invite.headers.call_id.clone();
    tokio::spawn(async move {
        let give_up = tokio::time::Instant::now() + T1 * 64;
        let mut interval = T1;
        loop {
            tokio::time::sleep(interval).await;
            let acked = inner.lock().dialogs.get(&call_id).is_none_or(|d| d.acked);
            if acked || tokio::time::Instant::now() >= give_up {
                return;
            }
            inner
                .transmit(Message::Response(final_response.clone()), to)
                .await;
            interval = (interval * 2).min(T2);
        }
    });
}
