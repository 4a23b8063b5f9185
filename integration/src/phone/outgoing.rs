//! Calls the phone places: the INVITE client transaction (RFC 3261 §17.1.1), ACK for every
//! final response, CANCEL (§9.1), and requests inside the dialog (BYE, INFO).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip::message::{
    CSeq, CallId, Contact, Headers, Host, Message, Method, NameAddr, Request, Response, Tag, Uri,
};
use tokio::task::JoinHandle;

use super::{uri_addr, Dialog, Inner, Phone, T1};

/// How a call is placed.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// The user part of From and Contact: the caller's number.
    pub from_user: String,
    /// Extra header fields for the INVITE.
    pub headers: Vec<(String, String)>,
    /// Whether a 2xx is acknowledged automatically (off: to test what a missing ACK does).
    pub ack_2xx: bool,
    /// The INVITE's Max-Forwards.
    pub max_forwards: u32,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            from_user: String::from("+15557654321"),
            headers: Vec::new(),
            ack_2xx: true,
            max_forwards: 70,
        }
    }
}

/// A call the phone placed. Dropping it stops retransmitting the INVITE, nothing more.
pub struct OutgoingCall {
    inner: Arc<Inner>,
    invite: Request,
    target: SocketAddr,
    retransmit: JoinHandle<()>,
}

impl Phone {
    /// Calls `number` at `to` (e.g. Tandem's SIP UDP address) offering `sdp` (no body if empty),
    /// from `+15557654321`.
    pub async fn call(&self, to: SocketAddr, number: &str, sdp: &str) -> OutgoingCall {
        self.call_with(to, number, sdp, CallOptions::default())
            .await
    }

    /// Calls `number` at `to` with `options`: sends the INVITE (Request-URI
    /// `sip:NUMBER@TO`) and retransmits it at T1, doubling, until a response arrives
    /// (RFC 3261 §17.1.1.2, Timers A and B).
    pub async fn call_with(
        &self,
        to: SocketAddr,
        number: &str,
        sdp: &str,
        options: CallOptions,
    ) -> OutgoingCall {
        let inner = &self.inner;
        let uri = Uri::sip(Some(number), Host::from(to.ip()), Some(to.port()));
        let local_tag = Tag::random();
        let mut from = NameAddr::new(inner.local_uri(&options.from_user));
        from.set_tag(&local_tag);
        let mut headers = Headers::new(
            from,
            NameAddr::new(uri.clone()),
            CallId::random(),
            CSeq {
                seq: 1,
                method: Method::Invite,
            },
        );
        headers.via = vec![inner.via()];
        headers.max_forwards = Some(options.max_forwards);
        headers.contact =
            Contact::Addresses(vec![NameAddr::new(inner.local_uri(&options.from_user))]);
        for (name, value) in &options.headers {
            headers.push(name.clone(), value.clone());
        }
        if !sdp.is_empty() {
            headers.push("Content-Type", "application/sdp");
        }
        let invite = Request {
            method: Method::Invite,
            uri,
            headers,
            body: Bytes::from(sdp.to_owned()),
        };
        inner.lock().dialogs.insert(
            invite.headers.call_id.clone(),
            Dialog {
                is_caller: true,
                invite: invite.clone(),
                peer: to,
                local_tag,
                remote_tag: None,
                remote_target: None,
                route_set: Vec::new(),
                local_cseq: 1,
                local_sdp: (!sdp.is_empty()).then(|| sdp.to_owned()),
                remote_sdp: None,
                ack_2xx: options.ack_2xx,
                ack: None,
                final_status: None,
                acked: false,
            },
        );
        let retransmit = tokio::spawn(retransmit_invite(inner.clone(), invite.clone(), to));
        OutgoingCall {
            inner: inner.clone(),
            invite,
            target: to,
            retransmit,
        }
    }
}

impl OutgoingCall {
    /// The call's Call-ID.
    pub fn call_id(&self) -> &CallId {
        &self.invite.headers.call_id
    }

    /// The INVITE as sent.
    pub fn invite(&self) -> &Request {
        &self.invite
    }

    /// Every response to the INVITE so far (retransmissions included), in order.
    pub fn responses(&self) -> Vec<Response> {
        self.inner.lock().invite_responses(self.call_id())
    }

    /// Waits for a response to the INVITE with status `code` (provisional or final).
    pub async fn wait_status(&self, code: u16, timeout: Duration) -> Response {
        let call_id = self.call_id().clone();
        self.inner
            .wait(
                timeout,
                &format!("{code} response to the INVITE"),
                Some(&call_id),
                |state| {
                    state
                        .invite_responses(&call_id)
                        .into_iter()
                        .find(|r| r.status.code() == code)
                },
            )
            .await
    }

    /// Waits for the first provisional response other than 100 Trying (180, 183, ...).
    pub async fn wait_provisional(&self, timeout: Duration) -> Response {
        let call_id = self.call_id().clone();
        self.inner
            .wait(
                timeout,
                "provisional response (101-199) to the INVITE",
                Some(&call_id),
                |state| {
                    state
                        .invite_responses(&call_id)
                        .into_iter()
                        .find(|r| r.status.is_provisional() && r.status.code() > 100)
                },
            )
            .await
    }

    /// Waits for the final response to the INVITE, whatever its status.
    pub async fn wait_final(&self, timeout: Duration) -> Response {
        let call_id = self.call_id().clone();
        self.inner
            .wait(
                timeout,
                "final response to the INVITE",
                Some(&call_id),
                |state| {
                    state
                        .invite_responses(&call_id)
                        .into_iter()
                        .find(|r| r.status.is_final())
                },
            )
            .await
    }

    /// The SDP of the 2xx, once one arrived.
    pub fn remote_sdp(&self) -> Option<String> {
        self.inner
            .lock()
            .dialogs
            .get(self.call_id())
            .and_then(|d| d.remote_sdp.clone())
    }

    /// Cancels the INVITE (RFC 3261 §9.1: same Request-URI, Call-ID, From, To, CSeq number
    /// and top Via as the INVITE) and returns the response to the CANCEL. The INVITE's own
    /// final response (487) is for [`OutgoingCall::wait_status`].
    pub async fn cancel(&self) -> Response {
        let mut headers = Headers::new(
            self.invite.headers.from.clone(),
            self.invite.headers.to.clone(),
            self.invite.headers.call_id.clone(),
            CSeq {
                seq: self.invite.headers.cseq.seq,
                method: Method::Cancel,
            },
        );
        headers.via = self.invite.headers.via.iter().take(1).cloned().collect();
        headers.max_forwards = Some(70);
        headers.route = self.invite.headers.route.clone();
        let cancel = Request {
            method: Method::Cancel,
            uri: self.invite.uri.clone(),
            headers,
            body: Bytes::new(),
        };
        self.inner.non_invite_transaction(cancel, self.target).await
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

    /// Sends a re-INVITE without an offer and ACKs the 2xx with `answer(offer)`: the answer
    /// to the offer the 2xx carried (RFC 3264 §4, a late offer). Returns the final response.
    pub async fn reinvite_late_offer(&self, answer: impl Fn(&str) -> String + Sync) -> Response {
        self.inner
            .reinvite_answering(self.call_id(), "", Some(&answer))
            .await
    }

    /// Waits for Tandem's BYE in this call (already answered 200 by the phone).
    pub async fn wait_bye(&self, timeout: Duration) -> Request {
        self.wait_request(Method::Bye, timeout).await
    }

    /// Waits for the first request with `method` received in this call.
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

    async fn in_dialog(&self, method: Method, body: Option<(&str, &str)>) -> Response {
        self.inner.in_dialog(self.call_id(), method, body).await
    }
}

impl Drop for OutgoingCall {
    fn drop(&mut self) {
        self.retransmit.abort();
    }
}

/// RFC 3261 §17.1.1.2: Timer A fires at T1, doubling each time; any response stops it; Timer B
/// (64·T1) ends the attempt.
async fn retransmit_invite(inner: Arc<Inner>, invite: Request, to: SocketAddr) {
    let branch = invite.branch().expect("the INVITE has a branch");
    let message = Message::Request(invite);
    let give_up = tokio::time::Instant::now() + T1 * 64;
    let mut interval = T1;
    loop {
        inner.transmit(message.clone(), to).await;
        tokio::time::sleep(interval).await;
        let answered = inner
            .lock()
            .response_to(&branch, &Method::Invite, false)
            .is_some();
        if answered || tokio::time::Instant::now() >= give_up {
            return;
        }
        interval *= 2;
    }
}

/// A response arrived: for the INVITE of a call we placed, update the dialog and acknowledge a
/// final response (RFC 3261 §17.1.1.3 for non-2xx, §13.2.2.4 for 2xx).
pub(super) async fn handle_response(inner: &Arc<Inner>, response: Response) {
    if response.headers.cseq.method != Method::Invite {
        return;
    }
    if !response.status.is_final() {
        if response.status.code() > 100 {
            // An early dialog's To tag (RFC 3261 §12.1.2).
            let mut state = inner.lock();
            if let Some(dialog) = state.dialogs.get_mut(&response.headers.call_id) {
                if dialog.is_caller && dialog.remote_tag.is_none() {
                    dialog.remote_tag = response.headers.to.tag();
                }
            }
        }
        return;
    }
    let ack = {
        let mut state = inner.lock();
        let Some(dialog) = state.dialogs.get_mut(&response.headers.call_id) else {
            return;
        };
        // A re-INVITE's response (a later CSeq) is acknowledged by `Inner::reinvite`.
        if !dialog.is_caller || response.headers.cseq.seq != dialog.invite.headers.cseq.seq {
            return;
        }
        if response.status.is_success() {
            acknowledge_success(inner, dialog, &response)
        } else {
            Some(acknowledge_failure(dialog, &response))
        }
    };
    if let Some((ack, to)) = ack {
        inner.transmit(Message::Request(ack), to).await;
    }
}

/// RFC 3261 §13.2.2.4: the dialog is confirmed; the ACK is a new transaction sent to the
/// remote target through the route set, and is resent for every retransmitted 2xx.
fn acknowledge_success(
    inner: &Inner,
    dialog: &mut Dialog,
    response: &Response,
) -> Option<(Request, SocketAddr)> {
    if dialog.ack.is_none() {
        dialog.remote_tag = response.headers.to.tag();
        dialog.remote_target = response
            .headers
            .contact
            .addresses()
            .first()
            .map(|c| c.uri.clone());
        dialog.route_set = response
            .headers
            .record_route
            .iter()
            .rev()
            .cloned()
            .collect();
        if !response.body.is_empty() {
            dialog.remote_sdp = Some(String::from_utf8_lossy(&response.body).into_owned());
        }
    }
    if !dialog.ack_2xx {
        return None;
    }
    if dialog.ack.is_none() {
        let target = dialog
            .remote_target
            .clone()
            .unwrap_or_else(|| dialog.invite.uri.clone());
        let mut headers = Headers::new(
            dialog.invite.headers.from.clone(),
            response.headers.to.clone(),
            dialog.invite.headers.call_id.clone(),
            CSeq {
                seq: dialog.invite.headers.cseq.seq,
                method: Method::Ack,
            },
        );
        headers.via = vec![inner.via()];
        headers.max_forwards = Some(70);
        headers.route = dialog.route_set.clone();
        let to = dialog
            .route_set
            .first()
            .and_then(|route| uri_addr(&route.uri))
            .or_else(|| uri_addr(&target))
            .unwrap_or(dialog.peer);
        let ack = Request {
            method: Method::Ack,
            uri: target,
            headers,
            body: Bytes::new(),
        };
        dialog.ack = Some((ack, to));
    }
    dialog.ack.clone()
}

/// RFC 3261 §17.1.1.3: the ACK of a non-2xx final response belongs to the INVITE transaction:
/// same Request-URI, top Via (branch), From, Call-ID and CSeq number, and the response's To.
fn acknowledge_failure(dialog: &Dialog, response: &Response) -> (Request, SocketAddr) {
    let invite = &dialog.invite;
    let mut headers = Headers::new(
        invite.headers.from.clone(),
        response.headers.to.clone(),
        invite.headers.call_id.clone(),
        CSeq {
            seq: invite.headers.cseq.seq,
            method: Method::Ack,
        },
    );
    headers.via = invite.headers.via.iter().take(1).cloned().collect();
    headers.max_forwards = Some(70);
    headers.route = invite.headers.route.clone();
    let ack = Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    };
    (ack, dialog.peer)
}
