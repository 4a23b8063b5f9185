//! Re-INVITEs of an answered party, the caller or a SIP callee alike (RFC 3264 §8, "modifying
//! the session"): the answer Tandem gives, and what the call's task does with the party's new
//! media.
//!
//! A new offer is answered from the same local port; it may hold the call (§8.4), move the
//! party's media to another address or port (§8.3.1), or pick another codec or
//! telephone-event payload type (§8.3.2). The task remembers the result for a bridge started
//! later and applies it to a running relay: hold with [`Relay::hold`], the rest with
//! [`Relay::update`] (only when it changed, so a hold or a session refresh costs the relay
//! nothing more). An offer without anything we can use gets 488 and the session stays as it
//! was (RFC 3261 §14.2); a re-INVITE without an offer gets our current session as its offer,
//! and the party's answer in the ACK is followed the same way ([`LateOffer`]).
//!
//! Every description we send a party continues the origin of the first one (RFC 3264 §8):
//! same `o=` session id, the version one up when the description changed and the same when
//! it did not ([`Session::following`]).

use std::net::SocketAddr;

use media::rtp::relay::{LegSession, Relay, Side};
use media::sdp::{self, Negotiated, SdpError, Session};
use sip::message::{Contact, NameAddr, Request, Response, StatusCode};

use super::leg::CODECS;

/// A party's new offer, as Tandem answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reoffer {
    /// What the new offer/answer settled (an RFC 2543 hold's `c=0.0.0.0` included).
    pub negotiated: Negotiated,
    /// Whether the offer holds the call (RFC 3264 §8.4: `sendonly` or `inactive`; RFC 2543's
    /// `c=0.0.0.0` too): the party is sent nothing until an offer asks for media again.
    pub held: bool,
}

/// The response to a re-INVITE of a party whose media Tandem receives at `local`, with
/// `contact` as our Contact; `rtcp_mux` says whether the party's RTCP shares that port, which
/// the new answer keeps (the port's sockets stay as they are). `sent` is the description we
/// last sent the party: unchanged, the offer of our 200 to a re-INVITE that made none;
/// replaced by our answer to one that made a usable offer. Returns the offer as answered, if
/// the re-INVITE made a usable one.
pub(super) fn answer_reinvite(
    request: &Request,
    local: SocketAddr,
    rtcp_mux: bool,
    sent: &mut Session,
    contact: &NameAddr,
) -> (Response, Option<Reoffer>) {
    let reoffer = if request.body.is_empty() {
        // Our session as it stands, unchanged and so with the same `o=` version (RFC 3264 §8).
        None
    } else {
        match answer(&request.body, local, rtcp_mux) {
            Ok((answer, reoffer)) => {
                *sent = answer.following(sent);
                Some(reoffer)
            }
            Err(error) => {
                // RFC 3261 §14.2: a UAS that cannot accept the new offer answers 488 and the
                // session goes on as before.
                tracing::info!(%error, "re-INVITE offer has nothing we can use");
                let response = request
                    .response(StatusCode::NOT_ACCEPTABLE_HERE, None)
                    .with_reason("Incompatible Media");
                return (response, None);
            }
        }
    };
    let mut response = request.response(StatusCode::OK, None);
    response.headers.contact = Contact::Addresses(vec![contact.clone()]);
    response.headers.push("Content-Type", "application/sdp");
    response.body = sent.to_text().into_bytes().into();
    (response, reoffer)
}

/// Takes a party's answered `reoffer` into `current` (what the call's task remembers of the
/// party's media, for a bridge started later; `None` before the party answered) and `held`,
/// and into `relay` when one is bridged with the party as leg `side`. Returns whether the
/// party's media moved or changed format.
pub(super) fn follow(
    current: Option<&mut Negotiated>,
    held: &mut bool,
    reoffer: &Reoffer,
    relay: Option<&Relay>,
    side: Side,
) -> bool {
    *held = reoffer.held;
    if let Some(relay) = relay {
        relay.hold(side, reoffer.held);
    }
    let Some(current) = current else {
        return false;
    };
    let mut negotiated = reoffer.negotiated;
    if negotiated.remote.ip().is_unspecified() {
        // RFC 2543's hold names no address: the media stays where it was (prompts still play
        // to a holding caller, and a resume that names no new address continues there).
        negotiated.remote = current.remote;
        negotiated.remote_rtcp = current.remote_rtcp;
    }
    let session = LegSession::from(&negotiated);
    let changed = session != LegSession::from(&*current);
    *current = negotiated;
    if changed {
        tracing::info!(
            ?side,
            remote = %session.remote,
            codec = ?session.format.codec,
            "the party's media changed"
        );
        if let Some(relay) = relay {
            relay.update(side, session);
        }
    }
    changed
}

/// A party's re-INVITE without an offer that our 2xx answered with one, by its CSeq number:
/// the party's ACK brings the answer (RFC 3264 §4). The caller's task keeps one for the
/// caller, a SIP leg's task one for its callee.
#[derive(Debug, Default)]
pub(super) struct LateOffer(Option<u32>);

impl LateOffer {
    /// Remembers `request` if it made no offer and our `response` to it, a 2xx, did.
    pub(super) fn expect(&mut self, request: &Request, response: &Response) {
        if request.body.is_empty() && response.status.is_success() {
            self.0 = Some(request.headers.cseq.seq);
        }
    }

    /// The answer `ack` brings if it acknowledges the late offer, read against `sent` (the
    /// offer of our 2xx) as a re-offer the call follows like any other. An ACK without a body,
    /// or with an unusable one (logged: RFC 3261 leaves no response to refuse an ACK with),
    /// leaves the session as it was.
    pub(super) fn answer_in(&mut self, ack: &Request, sent: &Session) -> Option<Reoffer> {
        if self.0 != Some(ack.headers.cseq.seq) {
            return None;
        }
        self.0 = None;
        read_late_answer(sent, &ack.body).unwrap_or_else(|error| {
            tracing::info!(%error, "the answer in the party's ACK is unusable");
            None
        })
    }
}

/// The answer in an ACK `body` to our offer `sent`, as a re-offer; `None` without a body.
fn read_late_answer(sent: &Session, body: &[u8]) -> Result<Option<Reoffer>, SdpError> {
    if body.is_empty() {
        return Ok(None);
    }
    let negotiated = sdp::accept_answer(sent, &Session::parse(body)?, &CODECS)?;
    Ok(Some(Reoffer {
        negotiated,
        held: holds(&negotiated),
    }))
}

/// The answer to a new offer `body` from our `local` address (its origin still its own), and
/// the offer as answered.
fn answer(body: &[u8], local: SocketAddr, rtcp_mux: bool) -> Result<(Session, Reoffer), SdpError> {
    let answer = sdp::answer(&Session::parse(body)?, local, &CODECS, rtcp_mux)?;
    let negotiated = answer.negotiated;
    Ok((
        answer.session,
        Reoffer {
            negotiated,
            held: holds(&negotiated),
        },
    ))
}

/// Whether a negotiation holds the call (RFC 3264 §8.4: we may not send, or RFC 2543's
/// `c=0.0.0.0`).
fn holds(negotiated: &Negotiated) -> bool {
    !negotiated.direction.is_sending() || negotiated.remote.ip().is_unspecified()
}

#[cfg(test)]
mod tests {
    use media::rtp::{Codec, PayloadType};
    use sip::message::Message;

    use super::*;

    const LOCAL: &str = "127.0.0.1:20000";

    fn reinvite(body: &str) -> Request {
        let text = format!(
            "INVITE sip:t@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:t@127.0.0.1>;tag=2\r\nCall-ID: c\r\n\
             CSeq: 3 INVITE\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match sip::message::parse(text.as_bytes()).unwrap() {
            Message::Request(request) => request,
            other => panic!("{other:?}"),
        }
    }

    fn offer(ip: &str, port: u16, formats: &str, extra: &str) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {formats}\r\na=rtpmap:101 telephone-event/8000\r\n{extra}"
        )
    }

    fn contact() -> NameAddr {
        NameAddr::new(sip::message::Uri::parse("sip:tandem@127.0.0.1:5060").unwrap())
    }

    /// Our first description to a dialled party: the offer of our INVITE.
    fn our_offer() -> Session {
        sdp::offer(LOCAL.parse().unwrap(), &CODECS, 42)
    }

    fn answered(body: &str) -> (Response, Option<Reoffer>) {
        answer_reinvite(
            &reinvite(body),
            LOCAL.parse().unwrap(),
            false,
            &mut our_offer(),
            &contact(),
        )
    }

    /// The `o=` session id and version of a response's SDP.
    fn origin_of(response: &Response) -> (u64, u64) {
        let origin = Session::parse(&response.body).unwrap().origin;
        (origin.session_id, origin.session_version)
    }

    #[test]
    fn a_new_address_and_codec_are_answered_and_reported() {
        let (response, reoffer) = answered(&offer("127.0.0.2", 30000, "8 101", ""));
        assert_eq!(response.status, StatusCode::OK);
        let body = String::from_utf8(response.body.to_vec()).unwrap();
        assert!(body.contains("m=audio 20000 RTP/AVP 8 101"), "{body}");
        let reoffer = reoffer.unwrap();
        assert!(!reoffer.held);
        assert_eq!(reoffer.negotiated.codec, Codec::Pcma);
        assert_eq!(reoffer.negotiated.telephone_event, Some(PayloadType(101)));
        assert_eq!(
            reoffer.negotiated.remote,
            "127.0.0.2:30000".parse().unwrap()
        );
    }

    #[test]
    fn holds_are_recognised_in_all_three_spellings() {
        for (ip, extra) in [
            ("127.0.0.2", "a=sendonly\r\n"),
            ("127.0.0.2", "a=inactive\r\n"),
            ("0.0.0.0", ""),
        ] {
            let (response, reoffer) = answered(&offer(ip, 30000, "0 101", extra));
            assert_eq!(response.status, StatusCode::OK);
            assert!(reoffer.unwrap().held, "{ip} {extra}");
        }
    }

    #[test]
    fn an_offer_without_a_usable_codec_gets_488_and_no_offer_gets_the_current_session() {
        let (response, reoffer) = answered(&offer("127.0.0.2", 30000, "18", ""));
        assert_eq!(response.status, StatusCode::NOT_ACCEPTABLE_HERE);
        assert!(response.body.is_empty());
        assert_eq!(reoffer, None);
        let (response, reoffer) = answered("garbage");
        assert_eq!(response.status, StatusCode::NOT_ACCEPTABLE_HERE);
        assert_eq!(reoffer, None);
        let (response, reoffer) = answered("");
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body, our_offer().to_string().as_bytes());
        assert_eq!(reoffer, None);
    }

    #[test]
    fn our_answers_keep_the_origin_of_our_first_sdp_and_version_only_changes() {
        // The caller's first SDP from us is our answer to its INVITE; a callee's, our offer.
        let callers_offer = Session::parse(offer("127.0.0.2", 30000, "0 101", "").as_bytes());
        let our_answer = sdp::answer(
            &callers_offer.unwrap(),
            LOCAL.parse().unwrap(),
            &CODECS,
            false,
        );
        for first in [our_answer.unwrap().session, our_offer()] {
            let (id, version) = (first.origin.session_id, first.origin.session_version);
            let mut sent = first;
            let mut send = |body: &str| {
                let request = reinvite(body);
                let local = LOCAL.parse().unwrap();
                answer_reinvite(&request, local, false, &mut sent, &contact()).0
            };
            let hold = offer("127.0.0.2", 30000, "0 101", "a=sendonly\r\n");
            let held = send(&hold);
            assert_eq!(origin_of(&held), (id, version + 1));
            // The same offer again (a session refresh) is answered with the same SDP, version
            // and all; so is a re-INVITE without an offer.
            assert_eq!(send(&hold).body, held.body);
            assert_eq!(send("").body, held.body);
            // A refused offer sends no SDP and changes nothing.
            let refused = send(&offer("127.0.0.2", 30000, "18", ""));
            assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE_HERE);
            let resumed = send(&offer("127.0.0.2", 30000, "0 101", ""));
            assert_eq!(origin_of(&resumed), (id, version + 2));
            assert_eq!(send("").body, resumed.body);
        }
    }

    #[test]
    fn only_a_change_of_address_or_format_counts_and_a_2543_hold_keeps_the_address() {
        let reoffer = |body: &str| answered(body).1.unwrap();
        let mut current = reoffer(&offer("127.0.0.2", 30000, "0 101", "")).negotiated;
        let mut held = false;
        let mut follow =
            |body: &str| follow(Some(&mut current), &mut held, &reoffer(body), None, Side::A);
        assert!(
            !follow(&offer("127.0.0.2", 30000, "0 101", "")),
            "a refresh"
        );
        assert!(!follow(&offer(
            "127.0.0.2",
            30000,
            "0 101",
            "a=sendonly\r\n"
        )));
        assert!(!follow(&offer("0.0.0.0", 30000, "0 101", "")));
        assert!(!follow(&offer("127.0.0.2", 30000, "0 101", "")), "resumed");
        assert!(
            follow(&offer("127.0.0.2", 30002, "0 101", "")),
            "a new port"
        );
        assert!(
            follow(&offer("127.0.0.2", 30002, "8 101", "")),
            "a new codec"
        );
        assert!(follow(&offer("127.0.0.2", 30002, "8", "")), "no events");
        assert_eq!(current.remote, "127.0.0.2:30002".parse().unwrap());
        assert_eq!(current.codec, Codec::Pcma);
        assert_eq!(current.telephone_event, None);
    }
}
