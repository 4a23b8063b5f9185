//! Dialogs (RFC 3261 §12): the peer-to-peer relationship an INVITE sets up, holding what every
//! later request in it needs: the tags, the sequence numbers, the remote target and the route
//! set.
//!
//! Sans-IO and transaction-agnostic: the caller feeds the requests and responses that belong to
//! the dialog and sends the requests it builds through new client transactions. The dialog does
//! not match messages to dialogs (the caller indexes by [`DialogId`]) and does not handle
//! session descriptions.

use bytes::Bytes;

use crate::message::{
    CSeq, CallId, Contact, Headers, Method, NameAddr, Request, Response, StatusCode, Tag, Uri, Via,
};

/// RFC 3261 §8.1.1.5: CSeq numbers stay below 2**31.
const MAX_CSEQ: u32 = (1 << 31) - 1;

/// RFC 3261 §8.1.1.6: the Max-Forwards a UAC puts in new requests.
const MAX_FORWARDS: u32 = 70;

/// What identifies a dialog at one end (RFC 3261 §12): the Call-ID and both tags, seen from
/// this side. The peer's identifier has the tags swapped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID of every request in the dialog.
    pub call_id: CallId,
    /// Our tag (From in requests we send, To in requests we receive).
    pub local_tag: Tag,
    /// The peer's tag.
    pub remote_tag: Tag,
}

/// Where a dialog is in its life (RFC 3261 §12, §12.3):
///
/// ```text
///   1xx with To tag      2xx to the INVITE
///  ───────────────▶ Early ───────────────▶ Confirmed
///                     │                       │
///                     │ non-2xx final,        │ BYE sent and answered or
///                     │ 481 or 408            │ received, 481 or 408
///                     ▼                       ▼
///                  Terminated ◀───────────────┘
/// ```
/// A 2xx creates the dialog directly in `Confirmed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialogState {
    /// Created by a provisional response; the INVITE has no final answer yet.
    Early,
    /// The INVITE was accepted with a 2xx.
    Confirmed,
    /// Ended: requests in it are answered with 481.
    Terminated,
}

/// Why a dialog could not be created or a request could not be applied to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// The response has no To tag, so it cannot create a dialog (RFC 3261 §12.1).
    #[error("response has no To tag")]
    MissingToTag,
    /// The request has no From tag: RFC 2543 peers without tags are not supported.
    #[error("request has no From tag")]
    MissingFromTag,
    /// No Contact to take the remote target from (RFC 3261 §12.1.1, §12.1.2).
    #[error("no Contact to use as remote target")]
    MissingContact,
    /// Only 101–199 and 2xx responses create dialogs (RFC 3261 §12.1).
    #[error("a {0} response does not create a dialog")]
    NotDialogCreating(StatusCode),
    /// The message's Call-ID or tags belong to another dialog.
    #[error("message belongs to another dialog")]
    WrongDialog,
    /// The request's CSeq is below the remote sequence number (RFC 3261 §12.2.2): answer 500.
    #[error("CSeq {received} is below the remote sequence number {remote}")]
    CSeqOutOfOrder {
        /// The CSeq number of the request.
        received: u32,
        /// The highest CSeq number seen from the peer.
        remote: u32,
    },
    /// The dialog has ended: answer 481 (RFC 3261 §12.2.2).
    #[error("dialog is terminated")]
    Terminated,
}

/// One dialog, from one side.
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    state: DialogState,
    role: Role,
    /// CSeq of the last request we sent in the dialog; `None` until we send one (UAS).
    local_seq: Option<u32>,
    /// CSeq of the last request the peer sent; `None` until it sends one (UAC).
    remote_seq: Option<u32>,
    /// CSeq of the last INVITE we sent, which ACK and CANCEL reuse (RFC 3261 §13.2.2.4, §9.1).
    invite_seq: Option<u32>,
    /// Our address with our tag: From of the requests we send.
    local: NameAddr,
    /// The peer's address with its tag: To of the requests we send.
    remote: NameAddr,
    remote_target: Uri,
    route_set: Vec<NameAddr>,
}

/// Which side created the dialog: it decides how a 2xx to the INVITE updates the route set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Uac,
    Uas,
}

impl Dialog {
    /// UAS side (RFC 3261 §12.1.1): from the request and the 1xx (with To tag) or 2xx we sent.
    /// Route set = the request's Record-Route in order; remote target = the request's Contact;
    /// remote sequence number = the request's CSeq.
    pub fn new_uas(request: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let state = creating_state(request, response)?;
        let local_tag = response.headers.to.tag().ok_or(DialogError::MissingToTag)?;
        let remote_tag = request
            .headers
            .from
            .tag()
            .ok_or(DialogError::MissingFromTag)?;
        let remote_target = first_contact(&request.headers)?;
        let mut local = request.headers.to.clone();
        local.set_tag(&local_tag);
        Ok(Dialog {
            id: DialogId {
                call_id: request.headers.call_id.clone(),
                local_tag,
                remote_tag,
            },
            state,
            role: Role::Uas,
            local_seq: None,
            remote_seq: Some(request.headers.cseq.seq),
            invite_seq: None,
            local,
            remote: request.headers.from.clone(),
            remote_target,
            route_set: request.headers.record_route.clone(),
        })
    }

    /// UAC side (RFC 3261 §12.1.2): from our request and the response received. Route set =
    /// the response's Record-Route reversed; remote target = the response's Contact; local
    /// sequence number = the request's CSeq.
    pub fn new_uac(request: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let state = creating_state(request, response)?;
        let remote_tag = response.headers.to.tag().ok_or(DialogError::MissingToTag)?;
        let local_tag = request
            .headers
            .from
            .tag()
            .ok_or(DialogError::MissingFromTag)?;
        let remote_target = first_contact(&response.headers)?;
        let seq = request.headers.cseq.seq;
        Ok(Dialog {
            id: DialogId {
                call_id: request.headers.call_id.clone(),
                local_tag,
                remote_tag,
            },
            state,
            role: Role::Uac,
            local_seq: Some(seq),
            remote_seq: None,
            invite_seq: (request.method == Method::Invite).then_some(seq),
            local: request.headers.from.clone(),
            remote: response.headers.to.clone(),
            remote_target,
            route_set: reversed(&response.headers.record_route),
        })
    }

    /// The dialog's identifier as seen from this side.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// Where the dialog is in its life.
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// The URI requests in the dialog are sent to (the peer's latest Contact).
    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    /// The proxies requests in the dialog traverse, first hop first.
    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    /// The CSeq number of the last request we sent, if any.
    pub fn local_seq(&self) -> Option<u32> {
        self.local_seq
    }

    /// The CSeq number of the last request the peer sent, if any.
    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// Our address with our tag (the From of requests we send).
    pub fn local_address(&self) -> &NameAddr {
        &self.local
    }

    /// The peer's address with its tag (the To of requests we send).
    pub fn remote_address(&self) -> &NameAddr {
        &self.remote
    }

    /// A new request in the dialog (RFC 3261 §12.2.1.1): the local CSeq incremented (ACK and
    /// CANCEL reuse the last INVITE's instead), From and To with tags, the Call-ID, the
    /// Request-URI and Route per the route set (loose or strict routing), Max-Forwards 70, and
    /// `via` (prepared by the caller with a fresh branch). `local_contact` goes in Contact for
    /// target refresh requests (INVITE, UPDATE, SUBSCRIBE, NOTIFY).
    pub fn create_request(
        &mut self,
        method: Method,
        via: Via,
        local_contact: &NameAddr,
    ) -> Request {
        let seq = match method {
            Method::Ack | Method::Cancel => self.invite_seq.or(self.local_seq).unwrap_or(1),
            _ => {
                // §12.2.1.1: an empty local sequence number may start anywhere (§8.1.1.5).
                let next = self
                    .local_seq
                    .map_or(1, |s| s.saturating_add(1).min(MAX_CSEQ));
                self.local_seq = Some(next);
                if method == Method::Invite {
                    self.invite_seq = Some(next);
                }
                next
            }
        };
        let refresh = is_target_refresh(&method);
        let mut request = self.build_request(method, seq, via);
        if refresh {
            request.headers.contact = Contact::Addresses(vec![local_contact.clone()]);
        }
        request
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_cseq` (RFC 3261 §13.2.2.4): same CSeq
    /// number, method ACK, routed like any request in the dialog. The local CSeq is unchanged.
    pub fn create_ack(&self, invite_cseq: u32, via: Via) -> Request {
        self.build_request(Method::Ack, invite_cseq, via)
    }

    /// Applies a request received in the dialog (RFC 3261 §12.2.2). A CSeq below the remote
    /// sequence number is out of order (answer 500); a target refresh request's Contact
    /// replaces the remote target; BYE terminates the dialog.
    pub fn handle_request(&mut self, request: &Request) -> Result<(), DialogError> {
        let headers = &request.headers;
        if headers.call_id != self.id.call_id
            || headers.from.tag().as_ref() != Some(&self.id.remote_tag)
            || headers.to.tag().as_ref() != Some(&self.id.local_tag)
        {
            return Err(DialogError::WrongDialog);
        }
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        let seq = headers.cseq.seq;
        // ACK and CANCEL carry the number of the INVITE they belong to, which may be below
        // requests sent since; they are not new requests in the §12.2.2 sense.
        if !matches!(request.method, Method::Ack | Method::Cancel) {
            if let Some(remote) = self.remote_seq {
                if seq < remote {
                    return Err(DialogError::CSeqOutOfOrder {
                        received: seq,
                        remote,
                    });
                }
            }
            self.remote_seq = Some(seq);
        }
        if is_target_refresh(&request.method) {
            if let Some(contact) = headers.contact.addresses().first() {
                self.remote_target = contact.uri.clone();
            }
        }
        if request.method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        Ok(())
    }

    /// Applies a response to a request we sent in the dialog. A 2xx to a target refresh
    /// request refreshes the remote target; a 2xx to the INVITE confirms an early dialog (and,
    /// at the UAC, recomputes the route set from it, RFC 3261 §13.2.2.4); a non-2xx final
    /// response to the INVITE ends an early dialog; 481 or 408 to any request ends the dialog
    /// (§12.2.1.2); any final response to our BYE ends it. Responses carrying another dialog's
    /// To tag (a forked 2xx) are ignored: they need a dialog of their own.
    pub fn handle_response(&mut self, response: &Response) {
        let headers = &response.headers;
        let foreign_tag = headers
            .to
            .tag()
            .is_some_and(|tag| tag != self.id.remote_tag);
        if headers.call_id != self.id.call_id || foreign_tag {
            tracing::debug!(status = %response.status, "response for another dialog ignored");
            return;
        }
        if self.state == DialogState::Terminated || !response.status.is_final() {
            return;
        }
        let method = &headers.cseq.method;
        if response.status.is_success() {
            if *method == Method::Invite && self.state == DialogState::Early {
                self.state = DialogState::Confirmed;
                if self.role == Role::Uac {
                    self.route_set = reversed(&headers.record_route);
                }
            }
            if is_target_refresh(method) {
                if let Some(contact) = headers.contact.addresses().first() {
                    self.remote_target = contact.uri.clone();
                }
            }
        }
        let ends_early_dialog = *method == Method::Invite
            && self.state == DialogState::Early
            && !response.status.is_success();
        if ends_early_dialog
            || *method == Method::Bye
            || response.status == StatusCode::CALL_DOES_NOT_EXIST
            || response.status == StatusCode::REQUEST_TIMEOUT
        {
            self.state = DialogState::Terminated;
        }
    }

    /// Confirms an early dialog (the UAS sent its 2xx, or the UAC got one). No effect in other
    /// states.
    pub fn confirm(&mut self) {
        if self.state == DialogState::Early {
            self.state = DialogState::Confirmed;
        }
    }

    fn build_request(&self, method: Method, seq: u32, via: Via) -> Request {
        let mut headers = Headers::new(
            self.local.clone(),
            self.remote.clone(),
            self.id.call_id.clone(),
            CSeq {
                seq,
                method: method.clone(),
            },
        );
        headers.via = vec![via];
        headers.max_forwards = Some(MAX_FORWARDS);
        let (uri, route) = self.request_target();
        headers.route = route;
        Request {
            method,
            uri,
            headers,
            body: Bytes::new(),
        }
    }

    /// The Request-URI and Route header values of a request in the dialog (RFC 3261
    /// §12.2.1.1).
    fn request_target(&self) -> (Uri, Vec<NameAddr>) {
        match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            // Loose routing: the first hop understands Route, so the Request-URI names the
            // peer and the route set goes in Route unchanged.
            Some(first) if is_loose_router(first) => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            // Strict routing (RFC 2543 proxies): the first hop must find itself in the
            // Request-URI, and the remote target travels as the last Route value.
            Some(first) => {
                let mut uri = first.uri.clone();
                if let Some(sip) = uri.as_sip_mut() {
                    // Parameters not allowed in a Request-URI (RFC 3261 §19.1.1 table).
                    sip.headers = None;
                    sip.params.remove("method");
                }
                let mut route = self.route_set[1..].to_vec();
                route.push(NameAddr::new(self.remote_target.clone()));
                (uri, route)
            }
        }
    }
}

/// The state a dialog starts in, or why `response` cannot create one.
fn creating_state(request: &Request, response: &Response) -> Result<DialogState, DialogError> {
    if response.headers.call_id != request.headers.call_id {
        return Err(DialogError::WrongDialog);
    }
    let status = response.status;
    if status.is_success() {
        Ok(DialogState::Confirmed)
    } else if status.is_provisional() && status != StatusCode::TRYING {
        Ok(DialogState::Early)
    } else {
        Err(DialogError::NotDialogCreating(status))
    }
}

fn first_contact(headers: &Headers) -> Result<Uri, DialogError> {
    headers
        .contact
        .addresses()
        .first()
        .map(|c| c.uri.clone())
        .ok_or(DialogError::MissingContact)
}

fn reversed(record_route: &[NameAddr]) -> Vec<NameAddr> {
    record_route.iter().rev().cloned().collect()
}

/// RFC 3261 §16.12.1.1: a proxy that understands loose routing puts `lr` in its Record-Route
/// URI.
fn is_loose_router(hop: &NameAddr) -> bool {
    hop.uri.as_sip().is_some_and(|u| u.params.contains("lr"))
}

/// Methods whose Contact replaces the remote target (RFC 3261 §12.2, RFC 3311 §5.1 for
/// UPDATE, RFC 6665 §4.1.2.2 and §4.1.2.3 for SUBSCRIBE and NOTIFY).
fn is_target_refresh(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify
    )
}

#[cfg(test)]
mod tests;
