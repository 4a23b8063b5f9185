//! Tests of the dialog.

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
