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
mod tests {
    use super::*;
    use crate::message::{parse, Branch, Host, Message, Transport};

    /// The INVITE as Alice's phone sent it.
    const INVITE_SENT: &str = "INVITE sip:bob@biloxi.example SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.example;branch=z9hG4bK74bf9\r\n\
        Max-Forwards: 70\r\n\
        From: Alice <sip:alice@atlanta.example>;tag=9fxced76sl\r\n\
        To: Bob <sip:bob@biloxi.example>\r\n\
        Call-ID: 3848276298220188511@atlanta.example\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:alice@pc33.atlanta.example>\r\n\
        Content-Length: 0\r\n\r\n";

    /// The same INVITE as Bob's phone received it, after two record-routing proxies.
    const INVITE_RECEIVED: &str = "INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
        Via: SIP/2.0/UDP p2.biloxi.example;branch=z9hG4bKp2\r\n\
        Via: SIP/2.0/UDP p1.atlanta.example;branch=z9hG4bKp1\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.example;branch=z9hG4bK74bf9\r\n\
        Max-Forwards: 68\r\n\
        Record-Route: <sip:p2.biloxi.example;lr>\r\n\
        Record-Route: <sip:p1.atlanta.example;lr>\r\n\
        From: Alice <sip:alice@atlanta.example>;tag=9fxced76sl\r\n\
        To: Bob <sip:bob@biloxi.example>\r\n\
        Call-ID: 3848276298220188511@atlanta.example\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:alice@pc33.atlanta.example>\r\n\
        Content-Length: 0\r\n\r\n";

    /// Bob's 200 as Alice's phone received it (the proxies copied Record-Route into it).
    const OK_RECEIVED: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.example;branch=z9hG4bK74bf9\r\n\
        Record-Route: <sip:p2.biloxi.example;lr>\r\n\
        Record-Route: <sip:p1.atlanta.example;lr>\r\n\
        From: Alice <sip:alice@atlanta.example>;tag=9fxced76sl\r\n\
        To: Bob <sip:bob@biloxi.example>;tag=8321234356\r\n\
        Call-ID: 3848276298220188511@atlanta.example\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:bob@192.0.2.4>\r\n\
        Content-Length: 0\r\n\r\n";

    fn request(text: &str) -> Request {
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("expected a request"),
        }
    }

    fn response(text: &str) -> Response {
        match parse(text.as_bytes()).unwrap() {
            Message::Response(r) => r,
            Message::Request(_) => panic!("expected a response"),
        }
    }

    /// A message as the peer sees it: serialized and parsed again.
    fn over_the_wire(r: &Request) -> Request {
        request(std::str::from_utf8(&r.to_bytes()).unwrap())
    }

    fn via(host: &str) -> Via {
        Via::new(
            Transport::Udp,
            Host::Domain(host.to_owned()),
            None,
            &Branch::random(),
        )
    }

    fn contact(uri: &str) -> NameAddr {
        NameAddr::new(Uri::parse(uri).unwrap())
    }

    fn route_uris(routes: &[NameAddr]) -> Vec<String> {
        routes.iter().map(|r| r.uri.to_string()).collect()
    }

    /// Bob's 200 built from the received INVITE, as his phone would send it.
    fn uas_ok(invite: &Request) -> Response {
        let mut ok = invite.response(StatusCode::OK, Some(&Tag::new("8321234356")));
        ok.headers.record_route = invite.headers.record_route.clone();
        ok.headers.contact = Contact::Addresses(vec![contact("sip:bob@192.0.2.4")]);
        ok
    }

    fn both_sides() -> (Dialog, Dialog) {
        let received = request(INVITE_RECEIVED);
        let uas = Dialog::new_uas(&received, &uas_ok(&received)).unwrap();
        let uac = Dialog::new_uac(&request(INVITE_SENT), &response(OK_RECEIVED)).unwrap();
        (uac, uas)
    }

    #[test]
    fn both_sides_build_mirrored_dialogs() {
        let (uac, uas) = both_sides();
        assert_eq!(uac.state(), DialogState::Confirmed);
        assert_eq!(uas.state(), DialogState::Confirmed);
        assert_eq!(uac.id().call_id, uas.id().call_id);
        assert_eq!(uac.id().local_tag, Tag::new("9fxced76sl"));
        assert_eq!(uac.id().remote_tag, Tag::new("8321234356"));
        assert_eq!(uas.id().local_tag, uac.id().remote_tag);
        assert_eq!(uas.id().remote_tag, uac.id().local_tag);
        assert_eq!(uac.remote_target().to_string(), "sip:bob@192.0.2.4");
        assert_eq!(
            uas.remote_target().to_string(),
            "sip:alice@pc33.atlanta.example"
        );
        // §12.1.1: the UAS keeps Record-Route in order; §12.1.2: the UAC reverses it, so each
        // side's first hop is the proxy nearest to it.
        assert_eq!(
            route_uris(uas.route_set()),
            ["sip:p2.biloxi.example;lr", "sip:p1.atlanta.example;lr"]
        );
        assert_eq!(
            route_uris(uac.route_set()),
            ["sip:p1.atlanta.example;lr", "sip:p2.biloxi.example;lr"]
        );
        assert_eq!(uac.local_seq(), Some(314159));
        assert_eq!(uac.remote_seq(), None);
        assert_eq!(uas.local_seq(), None);
        assert_eq!(uas.remote_seq(), Some(314159));
        assert_eq!(uas.local_address().tag(), Some(Tag::new("8321234356")));
        assert_eq!(uas.remote_address().tag(), Some(Tag::new("9fxced76sl")));
    }

    #[test]
    fn re_invite_refreshes_targets_at_both_ends_and_bye_ends_the_dialog() {
        let (mut uac, mut uas) = both_sides();

        // Alice moves to a new address and re-INVITEs.
        let new_alice = contact("sip:alice@198.51.100.9:5070");
        let reinvite = uac.create_request(Method::Invite, via("198.51.100.9"), &new_alice);
        assert_eq!(reinvite.method, Method::Invite);
        assert_eq!(reinvite.headers.cseq.seq, 314160);
        assert_eq!(reinvite.headers.cseq.method, Method::Invite);
        assert_eq!(reinvite.uri.to_string(), "sip:bob@192.0.2.4");
        assert_eq!(
            route_uris(&reinvite.headers.route),
            ["sip:p1.atlanta.example;lr", "sip:p2.biloxi.example;lr"]
        );
        assert_eq!(reinvite.headers.from.tag(), Some(Tag::new("9fxced76sl")));
        assert_eq!(reinvite.headers.to.tag(), Some(Tag::new("8321234356")));
        assert_eq!(reinvite.headers.max_forwards, Some(70));
        assert_eq!(
            reinvite.headers.contact.addresses(),
            std::slice::from_ref(&new_alice)
        );
        assert_eq!(reinvite.headers.via.len(), 1);

        let at_bob = over_the_wire(&reinvite);
        uas.handle_request(&at_bob).unwrap();
        assert_eq!(uas.remote_target(), &new_alice.uri);
        assert_eq!(uas.remote_seq(), Some(314160));

        // Bob answers from a new address too; Alice's 2xx handling refreshes her target.
        let mut ok = at_bob.response(StatusCode::OK, None);
        ok.headers.contact = Contact::Addresses(vec![contact("sip:bob@192.0.2.44")]);
        uac.handle_response(&ok);
        assert_eq!(uac.remote_target().to_string(), "sip:bob@192.0.2.44");
        assert_eq!(uac.state(), DialogState::Confirmed);
        // The route set is not changed by a re-INVITE (§12.2.1.2).
        assert_eq!(uac.route_set().len(), 2);

        let ack = uac.create_ack(reinvite.headers.cseq.seq, via("198.51.100.9"));
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.headers.cseq.seq, 314160);
        assert_eq!(ack.headers.cseq.method, Method::Ack);
        assert_eq!(ack.uri.to_string(), "sip:bob@192.0.2.44");
        assert!(ack.headers.contact.is_empty());
        assert_eq!(uac.local_seq(), Some(314160));
        uas.handle_request(&over_the_wire(&ack)).unwrap();

        // Bob hangs up: his first request in the dialog picks a fresh local sequence number
        // and follows his own route set to Alice's new address.
        let bye = uas.create_request(
            Method::Bye,
            via("192.0.2.4"),
            &contact("sip:bob@192.0.2.44"),
        );
        assert_eq!(bye.headers.cseq.seq, 1);
        assert_eq!(bye.uri, new_alice.uri);
        assert_eq!(
            route_uris(&bye.headers.route),
            ["sip:p2.biloxi.example;lr", "sip:p1.atlanta.example;lr"]
        );
        assert_eq!(bye.headers.from.tag(), Some(Tag::new("8321234356")));
        assert_eq!(bye.headers.to.tag(), Some(Tag::new("9fxced76sl")));
        assert!(bye.headers.contact.is_empty());
        let at_alice = over_the_wire(&bye);
        uac.handle_request(&at_alice).unwrap();
        assert_eq!(uac.state(), DialogState::Terminated);
        assert_eq!(uac.remote_seq(), Some(1));
        assert_eq!(uac.handle_request(&at_alice), Err(DialogError::Terminated));

        // Bob's side ends when his BYE is answered.
        assert_eq!(uas.state(), DialogState::Confirmed);
        uas.handle_response(&at_alice.response(StatusCode::OK, None));
        assert_eq!(uas.state(), DialogState::Terminated);
    }

    #[test]
    fn requests_below_the_remote_sequence_number_are_out_of_order() {
        let (mut uac, mut uas) = both_sides();
        let contact_alice = contact("sip:alice@pc33.atlanta.example");
        let first = uac.create_request(Method::Info, via("pc33.atlanta.example"), &contact_alice);
        let second = uac.create_request(Method::Info, via("pc33.atlanta.example"), &contact_alice);
        assert_eq!(first.headers.cseq.seq + 1, second.headers.cseq.seq);
        assert!(
            first.headers.contact.is_empty(),
            "INFO is no target refresh"
        );
        uas.handle_request(&over_the_wire(&second)).unwrap();
        assert_eq!(
            uas.handle_request(&over_the_wire(&first)),
            Err(DialogError::CSeqOutOfOrder {
                received: 314160,
                remote: 314161
            })
        );
        assert_eq!(uas.remote_seq(), Some(314161));
        // A retransmission carries the same number and is not out of order here (the
        // transaction layer absorbs it).
        uas.handle_request(&over_the_wire(&second)).unwrap();
        // An ACK for the original INVITE carries its lower number and is still accepted.
        let ack = uac.create_ack(314159, via("pc33.atlanta.example"));
        uas.handle_request(&over_the_wire(&ack)).unwrap();
        assert_eq!(uas.remote_seq(), Some(314161));
    }

    #[test]
    fn ack_and_cancel_reuse_the_invite_sequence_number() {
        let (mut uac, _) = both_sides();
        let alice = contact("sip:alice@pc33.atlanta.example");
        let reinvite = uac.create_request(Method::Invite, via("a"), &alice);
        let info = uac.create_request(Method::Info, via("a"), &alice);
        assert_eq!(info.headers.cseq.seq, reinvite.headers.cseq.seq + 1);
        let cancel = uac.create_request(Method::Cancel, via("a"), &alice);
        assert_eq!(cancel.headers.cseq.seq, reinvite.headers.cseq.seq);
        assert_eq!(cancel.headers.cseq.method, Method::Cancel);
        let ack = uac.create_request(Method::Ack, via("a"), &alice);
        assert_eq!(ack.headers.cseq.seq, reinvite.headers.cseq.seq);
        assert!(ack.headers.contact.is_empty());
        assert_eq!(uac.local_seq(), Some(info.headers.cseq.seq));
        let update = uac.create_request(Method::Update, via("a"), &alice);
        assert_eq!(update.headers.cseq.seq, info.headers.cseq.seq + 1);
        assert_eq!(update.headers.contact.addresses(), [alice]);
    }

    #[test]
    fn strict_routing_puts_the_first_hop_in_the_request_uri() {
        let received = request(&INVITE_RECEIVED.replace(
            "Record-Route: <sip:p2.biloxi.example;lr>",
            "Record-Route: <sip:p2.biloxi.example;transport=tcp>",
        ));
        let mut uas = Dialog::new_uas(&received, &uas_ok(&received)).unwrap();
        let bye = uas.create_request(Method::Bye, via("192.0.2.4"), &contact("sip:bob@192.0.2.4"));
        // §12.2.1.1: the strict router's URI becomes the Request-URI; the rest of the route
        // set follows, then the remote target as the last Route.
        assert_eq!(bye.uri.to_string(), "sip:p2.biloxi.example;transport=tcp");
        assert_eq!(
            route_uris(&bye.headers.route),
            [
                "sip:p1.atlanta.example;lr",
                "sip:alice@pc33.atlanta.example"
            ]
        );
        // The message survives serialization with that shape.
        let wire = over_the_wire(&bye);
        assert_eq!(wire.uri, bye.uri);
        assert_eq!(wire.headers.route, bye.headers.route);
    }

    #[test]
    fn without_a_route_set_requests_go_straight_to_the_remote_target() {
        let uac_ok = OK_RECEIVED
            .replace("Record-Route: <sip:p2.biloxi.example;lr>\r\n", "")
            .replace("Record-Route: <sip:p1.atlanta.example;lr>\r\n", "");
        let mut uac = Dialog::new_uac(&request(INVITE_SENT), &response(&uac_ok)).unwrap();
        assert!(uac.route_set().is_empty());
        let bye = uac.create_request(Method::Bye, via("a"), &contact("sip:alice@a"));
        assert_eq!(bye.uri.to_string(), "sip:bob@192.0.2.4");
        assert!(bye.headers.route.is_empty());
    }

    #[test]
    fn early_dialogs_confirm_and_recompute_the_uac_route_set() {
        let ringing = OK_RECEIVED
            .replace("200 OK", "180 Ringing")
            .replace("Record-Route: <sip:p1.atlanta.example;lr>\r\n", "");
        let mut uac = Dialog::new_uac(&request(INVITE_SENT), &response(&ringing)).unwrap();
        assert_eq!(uac.state(), DialogState::Early);
        assert_eq!(route_uris(uac.route_set()), ["sip:p2.biloxi.example;lr"]);
        // A 2xx to some other request (PRACK, UPDATE) does not confirm it.
        let prack_ok = OK_RECEIVED.replace("CSeq: 314159 INVITE", "CSeq: 314160 PRACK");
        uac.handle_response(&response(&prack_ok));
        assert_eq!(uac.state(), DialogState::Early);
        // A 2xx for another dialog (a forked answer) is ignored.
        let forked = OK_RECEIVED.replace("tag=8321234356", "tag=other");
        uac.handle_response(&response(&forked));
        assert_eq!(uac.state(), DialogState::Early);
        // §13.2.2.4: the 2xx confirms the dialog and the route set is recomputed from it.
        uac.handle_response(&response(OK_RECEIVED));
        assert_eq!(uac.state(), DialogState::Confirmed);
        assert_eq!(
            route_uris(uac.route_set()),
            ["sip:p1.atlanta.example;lr", "sip:p2.biloxi.example;lr"]
        );

        // The UAS side confirms when it sends its 2xx.
        let received = request(INVITE_RECEIVED);
        let mut ringing = received.response(StatusCode::RINGING, Some(&Tag::new("b")));
        ringing.headers.contact = Contact::Addresses(vec![contact("sip:bob@192.0.2.4")]);
        let mut uas = Dialog::new_uas(&received, &ringing).unwrap();
        assert_eq!(uas.state(), DialogState::Early);
        uas.confirm();
        assert_eq!(uas.state(), DialogState::Confirmed);
        uas.confirm();
        assert_eq!(uas.state(), DialogState::Confirmed);
    }

    #[test]
    fn a_failed_invite_ends_its_early_dialog() {
        let ringing = OK_RECEIVED.replace("200 OK", "183 Session Progress");
        let mut uac = Dialog::new_uac(&request(INVITE_SENT), &response(&ringing)).unwrap();
        uac.handle_response(&response(&ringing));
        assert_eq!(uac.state(), DialogState::Early);
        uac.handle_response(&response(&OK_RECEIVED.replace("200 OK", "486 Busy Here")));
        assert_eq!(uac.state(), DialogState::Terminated);
        uac.confirm();
        assert_eq!(uac.state(), DialogState::Terminated);
    }

    #[test]
    fn a_481_or_408_to_an_in_dialog_request_ends_the_dialog() {
        for status in ["481 Call/Transaction Does Not Exist", "408 Request Timeout"] {
            let (mut uac, _) = both_sides();
            let info = uac.create_request(Method::Info, via("a"), &contact("sip:alice@a"));
            // Other failures leave the dialog alone.
            uac.handle_response(&info.response(StatusCode::new(415).unwrap(), None));
            assert_eq!(uac.state(), DialogState::Confirmed);
            let code: u16 = status[..3].parse().unwrap();
            uac.handle_response(&info.response(StatusCode::new(code).unwrap(), None));
            assert_eq!(uac.state(), DialogState::Terminated, "{status}");
        }
    }

    #[test]
    fn dialog_creation_needs_tags_a_contact_and_a_dialog_creating_response() {
        let sent = request(INVITE_SENT);
        let ok = response(OK_RECEIVED);
        let no_to_tag = response(&OK_RECEIVED.replace(";tag=8321234356", ""));
        assert_eq!(
            Dialog::new_uac(&sent, &no_to_tag).unwrap_err(),
            DialogError::MissingToTag
        );
        let no_from_tag = request(&INVITE_SENT.replace(";tag=9fxced76sl", ""));
        assert_eq!(
            Dialog::new_uac(&no_from_tag, &ok).unwrap_err(),
            DialogError::MissingFromTag
        );
        let received_untagged = request(&INVITE_RECEIVED.replace(";tag=9fxced76sl", ""));
        assert_eq!(
            Dialog::new_uas(&received_untagged, &uas_ok(&received_untagged)).unwrap_err(),
            DialogError::MissingFromTag
        );
        let no_contact = response(&OK_RECEIVED.replace("Contact: <sip:bob@192.0.2.4>\r\n", ""));
        assert_eq!(
            Dialog::new_uac(&sent, &no_contact).unwrap_err(),
            DialogError::MissingContact
        );
        let received = request(INVITE_RECEIVED);
        let mut ok_uas = uas_ok(&received);
        ok_uas.headers.to = received.headers.to.clone();
        assert_eq!(
            Dialog::new_uas(&received, &ok_uas).unwrap_err(),
            DialogError::MissingToTag
        );
        for status in ["100 Trying", "486 Busy Here", "302 Moved Temporarily"] {
            let r = response(&OK_RECEIVED.replace("200 OK", status));
            assert!(matches!(
                Dialog::new_uac(&sent, &r),
                Err(DialogError::NotDialogCreating(_))
            ));
        }
        let other_call = response(&OK_RECEIVED.replace("Call-ID: 38", "Call-ID: 99"));
        assert_eq!(
            Dialog::new_uac(&sent, &other_call).unwrap_err(),
            DialogError::WrongDialog
        );
    }

    #[test]
    fn requests_of_other_dialogs_are_refused_without_changing_state() {
        let (mut uac, mut uas) = both_sides();
        let bye = uac.create_request(Method::Bye, via("a"), &contact("sip:alice@a"));
        let mut foreign = over_the_wire(&bye);
        foreign.headers.to.set_tag(&Tag::new("not-bob"));
        assert_eq!(uas.handle_request(&foreign), Err(DialogError::WrongDialog));
        assert_eq!(uas.state(), DialogState::Confirmed);
        assert_eq!(uas.remote_seq(), Some(314159));
        uas.handle_request(&over_the_wire(&bye)).unwrap();
        assert_eq!(uas.state(), DialogState::Terminated);
    }
}
