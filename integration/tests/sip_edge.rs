//! The SIP edge end to end over real UDP and TCP sockets on 127.0.0.1: method handling, error
//! responses for bad input, response routing, transaction absorption, CANCEL, trunk checks,
//! TCP framing limits and keep-alives, and requests Tandem originates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use integration::{request, Edge, TcpPeer, UdpPeer};
use sip::endpoint::{CallEvent, ClientEvent, Origin};
use sip::message::{parse, CSeq, CallId, Message, Method, NameAddr, Request, StatusCode, Tag, Uri};
use sip::transport::Target;

#[tokio::test]
async fn options_gets_200_with_capabilities_over_udp_and_tcp() {
    let edge = Edge::start(|_| {}).await;
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:x@{}", edge.udp);
    peer.send(
        edge.udp,
        request("OPTIONS", &uri, peer.addr(), "UDP", "o1", "").as_bytes(),
    )
    .await;
    let r = peer.recv_final().await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("Allow").unwrap().contains("INVITE"));
    assert_eq!(r.headers.get("Accept"), Some("application/sdp"));
    assert!(r.headers.get("Supported").is_some());
    assert!(r.headers.to.tag().is_some());
    // rport was filled in and received added (RFC 3581).
    let via = &r.headers.via[0];
    assert_eq!(via.rport(), Some(Some(peer.addr().port())));
    assert_eq!(via.received(), Some("127.0.0.1"));

    let mut tcp = TcpPeer::connect(edge.tcp).await;
    let local = tcp.stream.local_addr().unwrap();
    tcp.send(request("OPTIONS", &uri, local, "TCP", "o2", "").as_bytes())
        .await;
    assert_eq!(tcp.recv_final().await.status, StatusCode::OK);
}

#[tokio::test]
async fn unsupported_methods_versions_schemes_and_extensions_get_the_rfc_answers() {
    let edge = Edge::start(|_| {}).await;
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:x@{}", edge.udp);
    let cases: Vec<(String, u16)> = vec![
        (
            request("SUBSCRIBE", &uri, peer.addr(), "UDP", "m1", ""),
            405,
        ),
        (request("FOOBAR", &uri, peer.addr(), "UDP", "m2", ""), 501),
        (
            request("OPTIONS", &uri, peer.addr(), "UDP", "m3", "").replacen(
                "SIP/2.0\r\n",
                "SIP/7.0\r\n",
                1,
            ),
            505,
        ),
        (
            request("OPTIONS", "tel:+15550100", peer.addr(), "UDP", "m4", ""),
            416,
        ),
        (
            request(
                "OPTIONS",
                &uri,
                peer.addr(),
                "UDP",
                "m5",
                "Require: nonsense\r\n",
            ),
            420,
        ),
        // A BYE for a dialog that does not exist.
        (
            request("BYE", &uri, peer.addr(), "UDP", "m6", "").replacen(
                &format!("To: <{uri}>"),
                &format!("To: <{uri}>;tag=nosuch"),
                1,
            ),
            481,
        ),
    ];
    for (text, status) in cases {
        peer.send(edge.udp, text.as_bytes()).await;
        let r = peer.recv_final().await;
        assert_eq!(
            r.status.code(),
            status,
            "for {}",
            text.lines().next().unwrap()
        );
        match status {
            405 | 501 => assert!(r.headers.get("Allow").is_some()),
            420 => assert_eq!(r.headers.get("Unsupported"), Some("nonsense")),
            _ => {}
        }
    }
}

#[tokio::test]
async fn malformed_requests_get_400_naming_the_problem_or_are_dropped() {
    let edge = Edge::start(|_| {}).await;
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:x@{}", edge.udp);
    // Bad CSeq: answerable (Via, From, To, Call-ID and CSeq lines are present).
    let bad = request("OPTIONS", &uri, peer.addr(), "UDP", "b1", "")
        .replace("CSeq: 1 OPTIONS", "CSeq: x OPTIONS");
    peer.send(edge.udp, bad.as_bytes()).await;
    // The 400 copies the CSeq as received (RFC 3261 §8.2.6.2), so it is checked as text.
    let text = peer.recv_text().await;
    assert!(
        text.starts_with("SIP/2.0 400 Malformed CSeq Header\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nCSeq: x OPTIONS\r\n") && text.contains("Call-ID: b1@test"),
        "{text}"
    );

    // Content-Length larger than the datagram's body.
    let bad = request("OPTIONS", &uri, peer.addr(), "UDP", "b2", "")
        .replace("Content-Length: 0", "Content-Length: 500");
    peer.send(edge.udp, bad.as_bytes()).await;
    let r = peer.recv_final().await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.reason, "Content-Length Larger Than Body");

    // No Via at all: no response is possible, so nothing comes back, and the edge lives on.
    let bad = request("OPTIONS", &uri, peer.addr(), "UDP", "b3", "");
    let bad: String = bad
        .lines()
        .filter(|l| !l.starts_with("Via"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    peer.send(edge.udp, bad.as_bytes()).await;
    peer.send(edge.udp, b"\x00\xff garbage \r\n\r\n").await;
    assert!(peer.is_silent(Duration::from_millis(300)).await);
    peer.send(
        edge.udp,
        request("OPTIONS", &uri, peer.addr(), "UDP", "b4", "").as_bytes(),
    )
    .await;
    assert_eq!(peer.recv_final().await.status, StatusCode::OK);
    assert!(
        edge.handle
            .transports()
            .stats()
            .malformed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 4
    );
}

#[tokio::test]
async fn invite_reaches_call_control_retransmissions_are_absorbed_and_cancel_gets_487() {
    let mut edge = Edge::start(|_| {}).await;
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:+15550100@{}", edge.udp);
    let invite = request("INVITE", &uri, peer.addr(), "UDP", "i1", "");
    peer.send(edge.udp, invite.as_bytes()).await;
    let Message::Response(trying) = peer.recv().await else {
        panic!()
    };
    assert_eq!(trying.status, StatusCode::TRYING);

    let mut call = tokio::time::timeout(Duration::from_secs(2), edge.calls.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(call.origin, Origin::Trunk("loopback".into()));
    assert_eq!(call.request.uri.user(), Some("+15550100"));
    edge.handle
        .respond(&call.key, call.response(StatusCode::RINGING));
    let ringing = peer.recv_final().await;
    assert_eq!(ringing.status, StatusCode::RINGING);
    let tag = ringing.headers.to.tag().unwrap();

    // A retransmitted INVITE is absorbed: no second call, the 180 is re-sent.
    peer.send(edge.udp, invite.as_bytes()).await;
    assert_eq!(peer.recv_final().await.status, StatusCode::RINGING);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), edge.calls.recv())
            .await
            .is_err()
    );

    // CANCEL: 200 to the CANCEL, 487 (same To tag) to the INVITE, and the call is told.
    let cancel = request("CANCEL", &uri, peer.addr(), "UDP", "i1", "");
    peer.send(edge.udp, cancel.as_bytes()).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let r = peer.recv_final().await;
        got.push((
            r.status.code(),
            r.headers.cseq.method.clone(),
            r.headers.to.tag(),
        ));
    }
    got.sort_by_key(|g| g.0);
    assert_eq!(got[0].0, 200);
    assert_eq!(got[0].1, Method::Cancel);
    assert_eq!(got[1], (487, Method::Invite, Some(tag)));
    assert!(matches!(
        call.events.recv().await,
        Some(CallEvent::Cancelled)
    ));

    // The ACK for the 487 stops the retransmissions (T1 = 50 ms, so several would have come).
    let ack = request("ACK", &uri, peer.addr(), "UDP", "i1", "");
    peer.send(edge.udp, ack.as_bytes()).await;
    let mut buf = vec![0u8; 65536];
    // Drain what may already be in flight, then expect silence.
    while tokio::time::timeout(Duration::from_millis(120), peer.socket.recv_from(&mut buf))
        .await
        .is_ok()
    {}
    assert!(peer.is_silent(Duration::from_millis(400)).await);
}

#[tokio::test]
async fn cancel_for_unknown_invite_gets_481_and_merged_request_gets_482() {
    let mut edge = Edge::start(|_| {}).await;
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:+15550100@{}", edge.udp);
    peer.send(
        edge.udp,
        request("CANCEL", &uri, peer.addr(), "UDP", "c1", "").as_bytes(),
    )
    .await;
    assert_eq!(
        peer.recv_final().await.status,
        StatusCode::CALL_DOES_NOT_EXIST
    );

    // Same From tag, Call-ID and CSeq, different branch, no To tag: merged (RFC 3261 §8.2.2.2).
    let first = request("INVITE", &uri, peer.addr(), "UDP", "mg", "");
    peer.send(edge.udp, first.as_bytes()).await;
    let _call = edge.calls.recv().await.unwrap();
    let second = first.replace("branch=z9hG4bKmg", "branch=z9hG4bKother");
    peer.send(edge.udp, second.as_bytes()).await;
    let r = peer.recv_final().await;
    assert_eq!(r.status, StatusCode::LOOP_DETECTED);
    assert_eq!(r.headers.via[0].branch().unwrap().as_str(), "z9hG4bKother");
}

#[tokio::test]
async fn invite_from_a_non_trunk_source_is_challenged_then_refused_and_never_reaches_call_control()
{
    // No trunk allows loopback here.
    let mut edge = Edge::start(|c| c.trunks.clear()).await;
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:+15550100@{}", edge.udp);
    peer.send(
        edge.udp,
        request("INVITE", &uri, peer.addr(), "UDP", "n1", "").as_bytes(),
    )
    .await;
    // Answered statelessly (RFC 3261 §8.2.7): no 100 Trying first, and never retransmitted
    // although it is not ACKed (T1 = 50 ms: Timer G would have re-sent it several times), so a
    // forged-source flood is not amplified and leaves no transaction behind.
    let Message::Response(r) = peer.recv().await else {
        panic!("expected a response")
    };
    assert_eq!(r.status, StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    assert!(r
        .headers
        .get("Proxy-Authenticate")
        .unwrap()
        .starts_with("Digest"));
    assert!(peer.is_silent(Duration::from_millis(400)).await);
    let stats = edge.handle.stats();
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.server_transactions.load(relaxed), 0);
    assert_eq!(stats.invites_refused.load(relaxed), 1);

    let creds = "Proxy-Authorization: Digest username=\"1001\", realm=\"tandem\", nonce=\"bogus\", uri=\"x\", response=\"0000\"\r\n";
    peer.send(
        edge.udp,
        request("INVITE", &uri, peer.addr(), "UDP", "n2", creds).as_bytes(),
    )
    .await;
    assert_eq!(peer.recv_final().await.status, StatusCode::FORBIDDEN);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), edge.calls.recv())
            .await
            .is_err()
    );

    // With no SIP users at all there is nothing to authenticate against: straight 403.
    let edge = Edge::start(|c| {
        c.trunks.clear();
        c.users.clear();
    })
    .await;
    let uri = format!("sip:+15550100@{}", edge.udp);
    peer.send(
        edge.udp,
        request("INVITE", &uri, peer.addr(), "UDP", "n3", "").as_bytes(),
    )
    .await;
    assert_eq!(peer.recv_final().await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn draining_refuses_new_invites_with_retry_after() {
    let edge = Edge::start(|_| {}).await;
    edge.handle.drain();
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:+15550100@{}", edge.udp);
    peer.send(
        edge.udp,
        request("INVITE", &uri, peer.addr(), "UDP", "d1", "").as_bytes(),
    )
    .await;
    let r = peer.recv_final().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers.get("Retry-After").is_some());
}

#[tokio::test]
async fn tcp_framing_keepalive_and_limits() {
    let edge = Edge::start(|c| {
        c.max_message_size = 2048;
        c.max_connections_per_ip = 2;
        c.tcp_idle_timeout = Duration::from_millis(500);
    })
    .await;
    let uri = format!("sip:x@{}", edge.tcp);

    // Two requests in one write, then one split byte by byte: framed by Content-Length.
    let mut tcp = TcpPeer::connect(edge.tcp).await;
    let local = tcp.stream.local_addr().unwrap();
    let a = request("OPTIONS", &uri, local, "TCP", "f1", "");
    let b = request("OPTIONS", &uri, local, "TCP", "f2", "");
    tcp.send(format!("{a}{b}").as_bytes()).await;
    assert_eq!(
        tcp.recv_final().await.headers.call_id,
        CallId::new("f1@test")
    );
    assert_eq!(
        tcp.recv_final().await.headers.call_id,
        CallId::new("f2@test")
    );
    for byte in request("OPTIONS", &uri, local, "TCP", "f3", "").as_bytes() {
        tcp.send(&[*byte]).await;
    }
    assert_eq!(
        tcp.recv_final().await.headers.call_id,
        CallId::new("f3@test")
    );

    // RFC 5626 keep-alive: CRLFCRLF ping gets a CRLF pong.
    tcp.send(b"\r\n\r\n").await;
    assert_eq!(tcp.recv_raw(2).await, b"\r\n");

    // The per-source cap: a third concurrent connection is closed at once.
    let _second = TcpPeer::connect(edge.tcp).await;
    let mut third = TcpPeer::connect(edge.tcp).await;
    assert!(third.is_closed_within(Duration::from_secs(2)).await);

    // An oversize message closes the connection (framing cannot recover).
    let mut big = TcpPeer::connect(edge.tcp).await;
    big.send(&vec![b'A'; 4096]).await;
    assert!(big.is_closed_within(Duration::from_secs(2)).await);

    // Idle connections are closed after the idle timeout.
    assert!(tcp.is_closed_within(Duration::from_secs(3)).await);
}

#[tokio::test]
async fn tandem_originates_requests_over_udp_and_tcp_and_times_out_on_silence() {
    let edge = Edge::start(|_| {}).await;
    let make = |to: std::net::SocketAddr| {
        let uri = Uri::parse(&format!("sip:peer@{to}")).unwrap();
        let mut headers = sip::message::Headers::new(
            {
                let mut f = NameAddr::new(Uri::parse("sip:tandem@127.0.0.1").unwrap());
                f.set_tag(&Tag::random());
                f
            },
            NameAddr::new(uri.clone()),
            CallId::random(),
            CSeq {
                seq: 1,
                method: Method::Options,
            },
        );
        headers.max_forwards = Some(70);
        Request {
            method: Method::Options,
            uri,
            headers,
            body: Default::default(),
        }
    };

    // UDP: the peer answers 200; the response reaches the caller.
    let peer = UdpPeer::bind().await;
    let target = Target::udp(peer.addr());
    let mut events = edge.handle.send_request(make(peer.addr()), target);
    let Message::Request(got) = peer.recv().await else {
        panic!("expected a request")
    };
    assert_eq!(got.method, Method::Options);
    assert!(got.branch().unwrap().is_rfc3261());
    let reply = got.response(StatusCode::OK, Some(&Tag::random()));
    peer.send(edge.udp, &reply.to_bytes()).await;
    match tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
    {
        Some(ClientEvent::Response(r)) => assert_eq!(r.status, StatusCode::OK),
        other => panic!("unexpected {other:?}"),
    }

    // TCP: Tandem connects, the peer answers on the same connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = listener.local_addr().unwrap();
    let target = Target::tcp(to);
    let mut events = edge.handle.send_request(make(to), target);
    let (stream, _) = listener.accept().await.unwrap();
    let mut tcp = TcpPeer::from_stream(stream);
    let Message::Request(got) = tcp.recv().await else {
        panic!("expected a request")
    };
    tcp.send(
        &got.response(StatusCode::OK, Some(&Tag::random()))
            .to_bytes(),
    )
    .await;
    match tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
    {
        Some(ClientEvent::Response(r)) => assert_eq!(r.status, StatusCode::OK),
        other => panic!("unexpected {other:?}"),
    }

    // Silence: Timer F (64 × T1 = 3.2 s here) reports a timeout, after retransmissions.
    let silent = UdpPeer::bind().await;
    let target = Target::udp(silent.addr());
    let mut events = edge.handle.send_request(make(silent.addr()), target);
    let event = tokio::time::timeout(Duration::from_secs(6), events.recv())
        .await
        .unwrap();
    assert!(matches!(event, Some(ClientEvent::Timeout)), "{event:?}");
    let mut copies = 0;
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(10), silent.socket.recv_from(&mut buf)).await
    {
        assert!(parse(&buf[..n]).is_ok());
        copies += 1;
    }
    assert!(copies >= 5, "expected retransmissions, saw {copies}");
}

#[tokio::test]
async fn register_with_sha256_digest_binds_the_contact_and_a_replay_is_refused() {
    let edge = Edge::start(|_| {}).await;
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:{}", edge.udp);
    let me = peer.addr();
    let register = |id: &str, cseq: u32, extra: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{id};rport\r\n\
             From: <sip:1001@127.0.0.1>;tag=reg\r\nTo: <sip:1001@127.0.0.1>\r\n\
             Call-ID: reg@test\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:1001@{me}>\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        )
    };
    peer.send(edge.udp, register("r1", 1, "").as_bytes()).await;
    let challenge = peer.recv_final().await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    let offered: Vec<&str> = challenge.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(offered.len(), 2);
    assert!(
        offered[0].contains("algorithm=SHA-256"),
        "SHA-256 is preferred: {offered:?}"
    );
    assert!(offered[1].contains("algorithm=MD5"));

    let request_uri = Uri::parse(&uri).unwrap();
    let credentials = sip::auth::authorization(
        offered[0],
        &Method::Register,
        &request_uri,
        "1001",
        "secret",
        "c0ffee",
        1,
    )
    .unwrap();
    let authed = register("r2", 2, &format!("Authorization: {credentials}\r\n"));
    peer.send(edge.udp, authed.as_bytes()).await;
    let ok = peer.recv_final().await;
    assert_eq!(ok.status, StatusCode::OK, "{ok}");
    assert!(ok.headers.contact.addresses()[0]
        .params
        .get("expires")
        .is_some());
    let bindings = edge.handle.locate("1001");
    assert_eq!(bindings.len(), 1);
    assert_eq!(
        bindings[0].contact.uri.to_string(),
        format!("sip:1001@{}", peer.addr())
    );

    // The same credentials again (same nonce and nc, new transaction): a replay, refused.
    let replay = register("r3", 3, &format!("Authorization: {credentials}\r\n"));
    peer.send(edge.udp, replay.as_bytes()).await;
    assert_eq!(peer.recv_final().await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_call_whose_owner_vanishes_is_answered_500_not_left_ringing() {
    let mut edge = Edge::start(|_| {}).await;
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:+15550100@{}", edge.udp);
    peer.send(
        edge.udp,
        request("INVITE", &uri, peer.addr(), "UDP", "gone", "").as_bytes(),
    )
    .await;
    let call = edge.calls.recv().await.unwrap();
    edge.handle
        .respond(&call.key, call.response(StatusCode::RINGING));
    assert_eq!(peer.recv_final().await.status, StatusCode::RINGING);
    drop(call);
    // Housekeeping (every 5 s) notices the call task is gone and releases the caller.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let r = tokio::time::timeout_at(deadline, peer.recv_final())
            .await
            .expect("a final response before the deadline");
        if r.status != StatusCode::RINGING {
            assert_eq!(r.status, StatusCode::SERVER_INTERNAL_ERROR);
            break;
        }
    }
}

#[tokio::test]
async fn responses_leave_from_the_socket_the_request_reached() {
    let edge = Edge::start(|c| {
        c.listen.push(sip::config::Listen {
            transport: sip::config::ListenTransport::Udp,
            addr: "127.0.0.1:0".parse().unwrap(),
        })
    })
    .await;
    let second = edge
        .handle
        .transports()
        .local_addrs()
        .iter()
        .filter(|(t, _)| *t == sip::config::ListenTransport::Udp)
        .map(|(_, a)| *a)
        .nth(1)
        .unwrap();
    assert_ne!(second, edge.udp);
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:x@{second}");
    peer.send(
        second,
        request("OPTIONS", &uri, peer.addr(), "UDP", "two", "").as_bytes(),
    )
    .await;
    let mut buf = vec![0u8; 65536];
    let (_, from) = tokio::time::timeout(Duration::from_secs(5), peer.socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, second);
}

#[tokio::test]
async fn answered_call_gets_its_ack_and_an_in_dialog_bye_reaches_the_call() {
    let mut edge = Edge::start(|_| {}).await;
    let peer = UdpPeer::bind().await;
    let uri = format!("sip:+15550100@{}", edge.udp);
    peer.send(
        edge.udp,
        request("INVITE", &uri, peer.addr(), "UDP", "dlg", "").as_bytes(),
    )
    .await;
    let mut call = edge.calls.recv().await.unwrap();
    let mut ok = call.response(StatusCode::OK);
    ok.headers.contact = sip::message::Contact::Addresses(vec![NameAddr::new(
        Uri::parse(&format!("sip:tandem@{}", edge.udp)).unwrap(),
    )]);
    edge.handle.respond(&call.key, ok);
    let ok = peer.recv_final().await;
    assert_eq!(ok.status, StatusCode::OK);
    let to_tag = ok.headers.to.tag().unwrap();

    // The ACK for the 2xx is its own transaction (new branch), routed by dialog to the call.
    // In-dialog requests: a fresh branch `id`, the dialog's Call-ID, tags and the next CSeq.
    let in_dialog = |method: &str, id: &str, cseq: u32| {
        request(method, &uri, peer.addr(), "UDP", id, "")
            .replacen(
                &format!("To: <{uri}>"),
                &format!("To: <{uri}>;tag={to_tag}"),
                1,
            )
            .replace(&format!("tag=t{id}"), "tag=tdlg")
            .replace(&format!("Call-ID: {id}@test"), "Call-ID: dlg@test")
            .replace(
                &format!("CSeq: 1 {method}"),
                &format!("CSeq: {cseq} {method}"),
            )
    };
    peer.send(edge.udp, in_dialog("ACK", "ack1", 1).as_bytes())
        .await;
    match tokio::time::timeout(Duration::from_secs(2), call.events.recv())
        .await
        .unwrap()
    {
        Some(CallEvent::Ack(ack)) => assert_eq!(ack.method, Method::Ack),
        other => panic!("expected the ACK, got {other:?}"),
    }
    // The ACK stopped the 2xx retransmissions (T1 = 50 ms: several would have come by now).
    let mut buf = vec![0u8; 65536];
    while tokio::time::timeout(Duration::from_millis(120), peer.socket.recv_from(&mut buf))
        .await
        .is_ok()
    {}
    assert!(peer.is_silent(Duration::from_millis(300)).await);

    // BYE from the caller reaches the call, which answers it.
    peer.send(edge.udp, in_dialog("BYE", "bye1", 2).as_bytes())
        .await;
    let (bye, key) = match tokio::time::timeout(Duration::from_secs(2), call.events.recv())
        .await
        .unwrap()
    {
        Some(CallEvent::Request(bye, key)) => (bye, key),
        other => panic!("expected the BYE, got {other:?}"),
    };
    assert_eq!(bye.method, Method::Bye);
    edge.handle
        .respond(&key, bye.response(StatusCode::OK, None));
    let r = peer.recv_final().await;
    assert_eq!(
        (r.status, r.headers.cseq.method),
        (StatusCode::OK, Method::Bye)
    );
}
