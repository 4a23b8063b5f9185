//! Transaction keys: which transaction a message belongs to (RFC 3261 §17.1.3, §17.2.3, §9.2).

use compact_str::CompactString;

use crate::message::{CallId, Host, Method, Request, Response, Tag, Transport, Via};

/// Identifies one transaction, client or server side. Client and server keys never compare
/// equal, so one map may hold both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(Inner);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Inner {
    /// RFC 3261 §17.1.3: the top Via branch and the CSeq method.
    Client {
        branch: CompactString,
        method: Method,
    },
    /// RFC 3261 §17.2.3: branch, sent-by and method (ACK counted as INVITE).
    Server {
        branch: CompactString,
        sent_by: SentBy,
        method: Method,
    },
    /// RFC 3261 §17.2.3, the rules for RFC 2543 peers whose branch lacks the magic cookie
    /// (boxed: rare, and three times the size of the others).
    ServerRfc2543(Box<Rfc2543>),
}

/// The fields RFC 3261 §17.2.3 matches requests from RFC 2543 peers by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rfc2543 {
    request_uri: String,
    from_tag: Option<Tag>,
    call_id: CallId,
    cseq: u32,
    method: Method,
    top_via: ViaIdentity,
}

/// The sent-by of a Via, with the host compared case-insensitively (RFC 3261 §19.1.4 compares
/// hosts that way; §17.2.3 compares sent-by values).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SentBy {
    host: Host,
    port: Option<u16>,
}

/// What identifies a hop's Via for the RFC 2543 rules: transport, sent-by and branch. The
/// `received` and `rport` parameters are left out because we add them ourselves on receipt
/// (§18.2.1, RFC 3581), possibly differently for a retransmission arriving by another path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ViaIdentity {
    transport: Transport,
    sent_by: SentBy,
    branch: Option<CompactString>,
}

impl Key {
    /// Server transaction key of an incoming request (RFC 3261 §17.2.3): branch + sent-by + method,
    /// where ACK maps to INVITE; falls back to the RFC 2543 rules (Request-URI, To tag, From tag,
    /// Call-ID, CSeq, top Via) when the branch lacks the z9hG4bK cookie.
    ///
    /// The RFC 2543 key leaves the To tag out: the ACK for a non-2xx carries the tag of the
    /// server's response, which the INVITE did not, so it could never match otherwise.
    /// `None` if the request has no top Via.
    pub fn server(request: &Request) -> Option<Key> {
        // RFC 3261 §17.2.3: "the method of the request matches the one that created the
        // transaction, except for ACK, where the method of the request that created the
        // transaction is INVITE".
        let method = match request.headers.cseq.method {
            Method::Ack => Method::Invite,
            ref other => other.clone(),
        };
        Key::server_with_method(request, method)
    }

    /// Key of the INVITE server transaction a CANCEL refers to (§9.2): same as server(cancel) but
    /// method INVITE.
    pub fn invite_for_cancel(cancel: &Request) -> Option<Key> {
        Key::server_with_method(cancel, Method::Invite)
    }

    /// Client transaction key of an outgoing request (§17.1.3): top Via branch + CSeq method.
    pub fn client(request: &Request) -> Option<Key> {
        let via = request.headers.top_via()?;
        Key::client_from(via, &request.headers.cseq.method)
    }

    /// Client transaction key a received response matches (§17.1.3): top Via branch + CSeq method.
    pub fn client_for_response(response: &Response) -> Option<Key> {
        let via = response.headers.top_via()?;
        Key::client_from(via, &response.headers.cseq.method)
    }

    /// The method of the transaction (INVITE for the key of an ACK to a non-2xx).
    pub fn method(&self) -> &Method {
        match &self.0 {
            Inner::Client { method, .. } | Inner::Server { method, .. } => method,
            Inner::ServerRfc2543(key) => &key.method,
        }
    }

    fn client_from(via: &Via, method: &Method) -> Option<Key> {
        // RFC 3261 §17.1.3: the CSeq method is part of the key because a CANCEL shares the
        // INVITE's branch but is a transaction of its own.
        let branch = via.branch()?;
        Some(Key(Inner::Client {
            branch: normalize_branch(branch.as_str()),
            method: method.clone(),
        }))
    }

    fn server_with_method(request: &Request, method: Method) -> Option<Key> {
        let via = request.headers.top_via()?;
        let branch = via.branch().filter(|b| b.is_rfc3261());
        let key = match branch {
            Some(branch) => Inner::Server {
                branch: normalize_branch(branch.as_str()),
                sent_by: SentBy::of(via),
                method,
            },
            // RFC 3261 §17.2.3: without the cookie, match on Request-URI, tags, Call-ID, CSeq and
            // the top Via, as RFC 2543 did. The CSeq number alone is kept because the ACK (and
            // for §9.2 the CANCEL) differs from the INVITE in the CSeq method only.
            None => Inner::ServerRfc2543(Box::new(Rfc2543 {
                request_uri: request.uri.to_string(),
                from_tag: request.headers.from.tag(),
                call_id: request.headers.call_id.clone(),
                cseq: request.headers.cseq.seq,
                method,
                top_via: ViaIdentity {
                    transport: via.transport.clone(),
                    sent_by: SentBy::of(via),
                    branch: via.branch().map(|b| normalize_branch(b.as_str())),
                },
            })),
        };
        Some(Key(key))
    }
}

impl SentBy {
    fn of(via: &Via) -> SentBy {
        let host = match &via.host {
            Host::Domain(name) => Host::Domain(name.to_ascii_lowercase()),
            ip => ip.clone(),
        };
        SentBy {
            host,
            port: via.port,
        }
    }
}

/// Branches compare case-insensitively: RFC 3261 §7.3.1 makes parameter values case-insensitive
/// unless a header's definition says otherwise, and §20.42 does not.
/// Ours and SIPp's fit in 24 bytes and so are kept without allocating.
fn normalize_branch(branch: &str) -> CompactString {
    let mut normal = CompactString::from(branch);
    normal.make_ascii_lowercase();
    normal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse, Message, StatusCode};

    fn request(text: &str) -> Request {
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn invite(via: &str) -> Request {
        request(&format!(
            "INVITE sip:bob@example.com SIP/2.0\r\n\
             Via: {via}\r\n\
             From: <sip:alice@example.com>;tag=a1\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: call-1\r\n\
             CSeq: 7 INVITE\r\n\
             Max-Forwards: 70\r\n\r\n"
        ))
    }

    fn with_method(req: &Request, method: Method, to_tag: Option<&str>) -> Request {
        let mut r = req.clone();
        r.method = method.clone();
        r.headers.cseq.method = method;
        if let Some(tag) = to_tag {
            r.headers.to.set_tag(&Tag::new(tag));
        }
        r
    }

    const VIA: &str = "SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds";

    #[test]
    fn ack_for_non_2xx_matches_the_invite_server_transaction() {
        let inv = invite(VIA);
        let ack = with_method(&inv, Method::Ack, Some("server-tag"));
        assert_eq!(Key::server(&ack), Key::server(&inv));
        assert_eq!(
            Key::server(&inv).map(|k| k.method().clone()),
            Some(Method::Invite)
        );
    }

    #[test]
    fn cancel_has_its_own_key_but_finds_the_invite() {
        let inv = invite(VIA);
        let cancel = with_method(&inv, Method::Cancel, None);
        let cancel_key = Key::server(&cancel);
        assert!(cancel_key.is_some());
        assert_ne!(cancel_key, Key::server(&inv));
        assert_eq!(Key::invite_for_cancel(&cancel), Key::server(&inv));
    }

    #[test]
    fn server_key_depends_on_branch_sent_by_and_method() {
        let inv = invite(VIA);
        let other_branch = invite("SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bKother");
        let other_host = invite("SIP/2.0/UDP pc34.example.com:5060;branch=z9hG4bK776asdhds");
        let other_port = invite("SIP/2.0/UDP pc33.example.com:5070;branch=z9hG4bK776asdhds");
        let upper_host = invite("SIP/2.0/UDP PC33.Example.COM:5060;branch=z9hG4bK776asdhds");
        let bye = with_method(&inv, Method::Bye, None);
        assert_ne!(Key::server(&inv), Key::server(&other_branch));
        assert_ne!(Key::server(&inv), Key::server(&other_host));
        assert_ne!(Key::server(&inv), Key::server(&other_port));
        assert_ne!(Key::server(&inv), Key::server(&bye));
        assert_eq!(Key::server(&inv), Key::server(&upper_host));
    }

    #[test]
    fn responses_match_the_client_transaction_of_their_method() {
        let inv = invite(VIA);
        let cancel = with_method(&inv, Method::Cancel, None);
        let ok_invite = inv.response(StatusCode::OK, Some(&Tag::new("b")));
        let ok_cancel = cancel.response(StatusCode::OK, Some(&Tag::new("b")));
        let unrelated = invite("SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bKother")
            .response(StatusCode::OK, None);
        assert_eq!(Key::client_for_response(&ok_invite), Key::client(&inv));
        assert_eq!(Key::client_for_response(&ok_cancel), Key::client(&cancel));
        assert_ne!(Key::client_for_response(&ok_cancel), Key::client(&inv));
        assert_ne!(Key::client_for_response(&unrelated), Key::client(&inv));
    }

    #[test]
    fn client_and_server_keys_never_collide() {
        let inv = invite(VIA);
        assert_ne!(Key::client(&inv), Key::server(&inv));
    }

    #[test]
    fn rfc2543_fallback_without_the_cookie() {
        let inv = invite("SIP/2.0/UDP old.example.com:5060;branch=1234");
        let retransmission = inv.clone();
        let ack = with_method(&inv, Method::Ack, Some("server-tag"));
        let cancel = with_method(&inv, Method::Cancel, None);
        assert_eq!(Key::server(&retransmission), Key::server(&inv));
        assert_eq!(Key::server(&ack), Key::server(&inv));
        assert_eq!(Key::invite_for_cancel(&cancel), Key::server(&inv));
        assert_ne!(Key::server(&cancel), Key::server(&inv));

        let mut next_cseq = inv.clone();
        next_cseq.headers.cseq.seq += 1;
        assert_ne!(Key::server(&next_cseq), Key::server(&inv));
        let mut other_call = inv.clone();
        other_call.headers.call_id = CallId::new("call-2");
        assert_ne!(Key::server(&other_call), Key::server(&inv));
        let mut other_from = inv.clone();
        other_from.headers.from.set_tag(&Tag::new("a2"));
        assert_ne!(Key::server(&other_from), Key::server(&inv));
        let mut other_uri = inv.clone();
        other_uri.uri = request(
            "OPTIONS sip:carol@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>\r\n\
             To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
        )
        .uri;
        assert_ne!(Key::server(&other_uri), Key::server(&inv));
        let other_hop = invite("SIP/2.0/UDP other.example.com:5060;branch=1234");
        assert_ne!(Key::server(&other_hop), Key::server(&inv));

        // A request with no branch at all also falls back.
        let no_branch = invite("SIP/2.0/UDP old.example.com:5060");
        assert!(Key::server(&no_branch).is_some());
        assert_ne!(Key::server(&no_branch), Key::server(&inv));
    }

    #[test]
    fn no_via_no_key() {
        let mut inv = invite(VIA);
        inv.headers.via.clear();
        assert_eq!(Key::server(&inv), None);
        assert_eq!(Key::invite_for_cancel(&inv), None);
        assert_eq!(Key::client(&inv), None);
        let mut response = invite(VIA).response(StatusCode::OK, None);
        response.headers.via.clear();
        assert_eq!(Key::client_for_response(&response), None);
    }
}
