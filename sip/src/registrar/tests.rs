//! Tests of the registrar.

use super::*;
use crate::message::{parse, Message};

fn limits() -> RegistrationLimits {
    RegistrationLimits {
        min_expires: Duration::from_secs(60),
        max_expires: Duration::from_secs(7200),
        default_expires: Duration::from_secs(3600),
        max_contacts_per_user: 3,
    }
}

fn source() -> SocketAddr {
    "192.0.2.10:5060".parse().unwrap()
}

fn register(call_id: &str, cseq: u32, contacts: &[&str], expires: Option<&str>) -> Request {
    let mut text = format!(
        "REGISTER sip:tandem.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7\r\n\
         Max-Forwards: 70\r\n\
         To: Alice <sip:alice@tandem.example>\r\n\
         From: Alice <sip:alice@tandem.example>;tag=456248\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n"
    );
    for c in contacts {
        text.push_str(&format!("Contact: {c}\r\n"));
    }
    if let Some(e) = expires {
        text.push_str(&format!("Expires: {e}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    match parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("expected a request"),
    }
}

/// (URI text, expires parameter) of each Contact in a response.
fn listed(response: &Response) -> Vec<(String, String)> {
    response
        .headers
        .contact
        .addresses()
        .iter()
        .map(|c| {
            (
                c.uri.to_string(),
                c.params.get("expires").flatten().unwrap().to_owned(),
            )
        })
        .collect()
}

fn uris(bindings: &[Binding]) -> Vec<String> {
    bindings.iter().map(|b| b.contact.uri.to_string()).collect()
}

fn handle(registrar: &mut Registrar, request: &Request, now: Instant) -> Response {
    registrar.handle_register(request, "alice", source(), ListenTransport::Udp, now)
}

#[test]
fn registers_a_contact_with_the_default_interval() {
    let start = Instant::now();
    let mut registrar = Registrar::new(limits());
    let request = register("c1", 1, &["<sip:alice@192.0.2.10:5060>;q=0.7"], None);
    let response = handle(&mut registrar, &request, start);
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.headers.to.tag().is_some());
    assert_eq!(
        listed(&response),
        vec![("sip:alice@192.0.2.10:5060".to_owned(), "3600".to_owned())]
    );
    let bindings = registrar.lookup("alice", start);
    assert_eq!(bindings.len(), 1);
    let b = &bindings[0];
    assert_eq!(b.expires_at, start + Duration::from_secs(3600));
    assert_eq!(b.call_id, CallId::new("c1"));
    assert_eq!(b.cseq, 1);
    assert_eq!(b.source, source());
    assert_eq!(b.transport, ListenTransport::Udp);
    assert_eq!(b.contact.params.get("q"), Some(Some("0.7")));
    assert!(registrar.lookup("bob", start).is_empty());
    assert_eq!(registrar.user_count(), 1);
}

#[test]
fn contact_expires_overrides_the_header_and_long_intervals_are_shortened() {
    let start = Instant::now();
    let mut registrar = Registrar::new(limits());
    let request = register(
        "c1",
        1,
        &[
            "<sip:alice@192.0.2.10>;expires=120",
            "<sip:alice@192.0.2.11>",
            "<sip:alice@192.0.2.12>;expires=99999",
        ],
        Some("600"),
    );
    let response = handle(&mut registrar, &request, start);
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        listed(&response),
        vec![
            ("sip:alice@192.0.2.10".to_owned(), "120".to_owned()),
            ("sip:alice@192.0.2.11".to_owned(), "600".to_owned()),
            ("sip:alice@192.0.2.12".to_owned(), "7200".to_owned()),
        ]
    );
}

#[test]
fn too_brief_intervals_get_423_with_min_expires_and_change_nothing() {
    let start = Instant::now();
    let mut registrar = Registrar::new(limits());
    let first = register("c1", 1, &["<sip:alice@192.0.2.10>"], None);
    assert_eq!(handle(&mut registrar, &first, start).status, StatusCode::OK);
    let brief = register(
        "c1",
        2,
        &[
            "<sip:alice@192.0.2.11>",
            "<sip:alice@192.0.2.12>;expires=30",
        ],
        None,
    );
    let response = handle(&mut registrar, &brief, start);
    assert_eq!(response.status, StatusCode::INTERVAL_TOO_BRIEF);
    assert_eq!(response.headers.get("Min-Expires"), Some("60"));
    assert!(response.headers.to.tag().is_some());
    assert_eq!(
        uris(&registrar.lookup("alice", start)),
        vec!["sip:alice@192.0.2.10"]
    );
    // The header interval is checked too.
    let brief = register("c1", 3, &["<sip:alice@192.0.2.11>"], Some("59"));
    assert_eq!(
        handle(&mut registrar, &brief, start).status,
        StatusCode::INTERVAL_TOO_BRIEF
    );
}

#[test]
fn multiple_contacts_and_refreshes_are_listed_most_recent_first() {
    let start = Instant::now();
    let mut registrar = Registrar::new(limits());
    let both = register(
        "c1",
        1,
        &["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"],
        None,
    );
    handle(&mut registrar, &both, start);
    let later = start + Duration::from_secs(100);
    let phone = register("c2", 1, &["<sip:alice@198.51.100.7;transport=tcp>"], None);
    let response = registrar.handle_register(
        &phone,
        "alice",
        "198.51.100.7:40000".parse().unwrap(),
        ListenTransport::Tcp,
        later,
    );
    assert_eq!(
        listed(&response),
        vec![
            (
                "sip:alice@198.51.100.7;transport=tcp".to_owned(),
                "3600".to_owned()
            ),
            ("sip:alice@192.0.2.10".to_owned(), "3500".to_owned()),
            ("sip:alice@192.0.2.11".to_owned(), "3500".to_owned()),
        ]
    );
    let bindings = registrar.lookup("alice", later);
    assert_eq!(bindings[0].transport, ListenTransport::Tcp);
    assert_eq!(bindings[0].source, "198.51.100.7:40000".parse().unwrap());
    // Refreshing the second contact moves it to the front, without duplicating it.
    let even_later = later + Duration::from_secs(10);
    let refresh = register("c1", 2, &["<sip:alice@192.0.2.11>"], Some("300"));
    handle(&mut registrar, &refresh, even_later);
    let bindings = registrar.lookup("alice", even_later);
    assert_eq!(
        uris(&bindings),
        vec![
            "sip:alice@192.0.2.11",
            "sip:alice@198.51.100.7;transport=tcp",
            "sip:alice@192.0.2.10"
        ]
    );
    assert_eq!(
        bindings[0].expires_at,
        even_later + Duration::from_secs(300)
    );
    assert_eq!(bindings[0].cseq, 2);
}

#[test]
fn equivalent_uris_refresh_the_same_binding() {
    let start = Instant::now();
    let mut registrar = Registrar::new(RegistrationLimits {
        max_contacts_per_user: 10,
        ..limits()
    });
    let first = register("c1", 1, &["<sip:alice@Host.Example;transport=UDP>"], None);
    handle(&mut registrar, &first, start);
    let same = register("c1", 2, &["<sip:%61lice@host.example;transport=udp>"], None);
    handle(&mut registrar, &same, start);
    assert_eq!(registrar.lookup("alice", start).len(), 1);
    // A different port, user case or transport is a different binding.
    for (cseq, other) in [
        (3, "<sip:alice@host.example:5060;transport=udp>"),
        (4, "<sip:ALICE@host.example;transport=udp>"),
        (5, "<sip:alice@host.example>"),
    ] {
        let response = handle(&mut registrar, &register("c1", cseq, &[other], None), start);
        assert_eq!(response.status, StatusCode::OK, "{other}");
    }
    assert_eq!(registrar.lookup("alice", start).len(), 4);
}

#[test]
fn uri_equivalence_follows_rfc3261_19_1_4() {
    let eq = |a: &str, b: &str| uri_equivalent(&Uri::parse(a).unwrap(), &Uri::parse(b).unwrap());
    assert!(eq(
        "sip:%61lice@atlanta.com;transport=TCP",
        "sip:alice@AtLanTa.CoM;Transport=tcp"
    ));
    assert!(eq(
        "sip:carol@chicago.com",
        "sip:carol@chicago.com;newparam=5"
    ));
    assert!(eq(
        "sip:carol@chicago.com;security=on",
        "sip:carol@chicago.com;newparam=5"
    ));
    assert!(!eq(
        "SIP:ALICE@AtLanTa.CoM;Transport=udp",
        "sip:alice@AtLanTa.CoM;Transport=UDP"
    ));
    assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
    assert!(!eq(
        "sip:bob@biloxi.com",
        "sip:bob@biloxi.com;transport=udp"
    ));
    assert!(!eq(
        "sip:bob@biloxi.com;transport=udp",
        "sip:bob@biloxi.com"
    ));
    assert!(!eq(
        "sip:carol@chicago.com;security=on",
        "sip:carol@chicago.com;security=off"
    ));
    assert!(!eq("sip:bob@biloxi.com", "sips:bob@biloxi.com"));
    assert!(eq("tel:+1-555", "TEL:+1-555"));
    assert!(!eq("tel:+1-555", "sip:+1-555@x.example"));
}

#[test]
fn expires_zero_removes_one_binding() {
    let start = Instant::now();
    let mut registrar = Registrar::new(limits());
    let both = register(
        "c1",
        1,
        &["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"],
        None,
    );
    handle(&mut registrar, &both, start);
    let remove = register("c1", 2, &["<sip:alice@192.0.2.10>;expires=0"], None);
    let response = handle(&mut registrar, &remove, start);
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        listed(&response),
        vec![("sip:alice@192.0.2.11".to_owned(), "3600".to_owned())]
    );
    let remove = register("c1", 3, &["<sip:alice@192.0.2.11>"], Some("0"));
    let response = handle(&mut registrar, &remove, start);
    assert!(response.headers.contact.is_empty());
    assert!(registrar.lookup("alice", start).is_empty());
    assert_eq!(registrar.user_count(), 0);
}

#[test]
fn wildcard_removes_all_only_with_expires_zero() {
    let start = Instant::now();
    let mut registrar = Registrar::new(limits());
    let both = register(
        "c1",
        5,
        &["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"],
        None,
    );
    handle(&mut registrar, &both, start);
    for expires in [None, Some("60"), Some("zero")] {
        let bad = register("c2", 1, &["*"], expires);
        let response = handle(&mut registrar, &bad, start);
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{expires:?}");
    }
    // Same Call-ID with a CSeq not above the stored one: out of order.
    let stale = register("c1", 5, &["*"], Some("0"));
    assert_eq!(
        handle(&mut registrar, &stale, start).status,
        StatusCode::SERVER_INTERNAL_ERROR
    );
    assert_eq!(registrar.lookup("alice", start).len(), 2);
    let wildcard = register("c1", 6, &["*"], Some("0"));
    let response = handle(&mut registrar, &wildcard, start);
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.headers.contact.is_empty());
    assert!(registrar.lookup("alice", start).is_empty());
    assert_eq!(registrar.user_count(), 0);
}

#[test]
fn out_of_order_cseq_for_the_same_call_id_gets_500() {
    let start = Instant::now();
    let mut registrar = Registrar::new(limits());
    let first = register("c1", 10, &["<sip:alice@192.0.2.10>"], None);
    handle(&mut registrar, &first, start);
    for cseq in [10, 9] {
        let old = register("c1", cseq, &["<sip:alice@192.0.2.10>"], Some("0"));
        let response = handle(&mut registrar, &old, start);
        assert_eq!(response.status, StatusCode::SERVER_INTERNAL_ERROR);
        assert_eq!(registrar.lookup("alice", start).len(), 1);
    }
    // Another Call-ID (the phone rebooted) may restart at any CSeq.
    let rebooted = register("c2", 1, &["<sip:alice@192.0.2.10>"], Some("120"));
    assert_eq!(
        handle(&mut registrar, &rebooted, start).status,
        StatusCode::OK
    );
    let bindings = registrar.lookup("alice", start);
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].call_id, CallId::new("c2"));
    assert_eq!(bindings[0].expires_at, start + Duration::from_secs(120));
}

#[test]
fn too_many_contacts_get_403_and_change_nothing() {
    let start = Instant::now();
    let mut registrar = Registrar::new(limits());
    let three = register(
        "c1",
        1,
        &[
            "<sip:alice@192.0.2.10>",
            "<sip:alice@192.0.2.11>",
            "<sip:alice@192.0.2.12>",
        ],
        None,
    );
    assert_eq!(handle(&mut registrar, &three, start).status, StatusCode::OK);
    let fourth = register("c2", 1, &["<sip:alice@192.0.2.13>"], None);
    assert_eq!(
        handle(&mut registrar, &fourth, start).status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(registrar.lookup("alice", start).len(), 3);
    // Once one expires there is room again.
    let short = register("c1", 2, &["<sip:alice@192.0.2.10>"], Some("60"));
    handle(&mut registrar, &short, start);
    let later = start + Duration::from_secs(61);
    assert_eq!(
        handle(&mut registrar, &fourth, later).status,
        StatusCode::OK
    );
}

#[test]
fn no_contact_lists_the_current_bindings() {
    let start = Instant::now();
    let mut registrar = Registrar::new(limits());
    let query = register("c1", 1, &[], None);
    let response = handle(&mut registrar, &query, start);
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.headers.contact.is_empty());
    handle(
        &mut registrar,
        &register("c1", 2, &["<sip:alice@192.0.2.10>"], None),
        start,
    );
    let response = handle(
        &mut registrar,
        &register("c1", 3, &[], None),
        start + Duration::from_millis(1500),
    );
    // 3598.5 s remain: rounded up.
    assert_eq!(
        listed(&response),
        vec![("sip:alice@192.0.2.10".to_owned(), "3599".to_owned())]
    );
}

#[test]
fn bindings_expire() {
    let start = Instant::now();
    let mut registrar = Registrar::new(limits());
    let request = register(
        "c1",
        1,
        &[
            "<sip:alice@192.0.2.10>;expires=60",
            "<sip:alice@192.0.2.11>;expires=120",
        ],
        None,
    );
    handle(&mut registrar, &request, start);
    registrar.handle_register(
        &register("c9", 1, &["<sip:bob@192.0.2.20>"], Some("60")),
        "bob",
        source(),
        ListenTransport::Udp,
        start,
    );
    assert_eq!(registrar.user_count(), 2);
    assert_eq!(
        registrar.next_expiry(),
        Some(start + Duration::from_secs(60))
    );
    let t60 = start + Duration::from_secs(60);
    assert_eq!(
        uris(&registrar.lookup("alice", t60)),
        vec!["sip:alice@192.0.2.11"]
    );
    assert!(registrar.lookup("bob", t60).is_empty());
    assert_eq!(registrar.expire(t60), 2);
    assert_eq!(registrar.user_count(), 1);
    assert_eq!(registrar.expire(t60), 0);
    assert_eq!(registrar.expire(start + Duration::from_secs(120)), 1);
    assert_eq!(registrar.user_count(), 0);
    assert_eq!(registrar.next_expiry(), None);
}

#[test]
fn malformed_intervals_count_as_3600_then_bounded() {
    let start = Instant::now();
    let mut registrar = Registrar::new(RegistrationLimits {
        max_expires: Duration::from_secs(1800),
        ..limits()
    });
    let request = register(
        "c1",
        1,
        &[
            "<sip:alice@192.0.2.10>;expires=soon",
            "<sip:alice@192.0.2.11>",
        ],
        Some("later"),
    );
    let response = handle(&mut registrar, &request, start);
    assert_eq!(
        listed(&response),
        vec![
            ("sip:alice@192.0.2.10".to_owned(), "1800".to_owned()),
            ("sip:alice@192.0.2.11".to_owned(), "1800".to_owned()),
        ]
    );
}

#[test]
fn delta_seconds_parsing() {
    assert_eq!(parse_delta_seconds("0"), Some(0));
    assert_eq!(parse_delta_seconds("000"), Some(0));
    assert_eq!(parse_delta_seconds("3600"), Some(3600));
    assert_eq!(
        parse_delta_seconds("99999999999999999999"),
        Some(u64::from(u32::MAX))
    );
    assert_eq!(parse_delta_seconds(""), None);
    assert_eq!(parse_delta_seconds("-1"), None);
    assert_eq!(parse_delta_seconds("1.5"), None);
}
