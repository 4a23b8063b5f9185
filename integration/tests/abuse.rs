//! Abuse from the network against a whole Tandem: an INVITE flood from an address that is not
//! a trunk, and an extension scan. (Digest nonce replays are refused in `sip_edge.rs`:
//! `register_with_sha256_digest_binds_the_contact_and_a_replay_is_refused`.)

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use integration::tandem::{Tandem, AUTH_TOKEN};
use integration::webhook::WebhookServer;
use tokio::net::UdpSocket;

/// A UDP socket on 127.0.0.2: a loopback address that is not the test trunk (127.0.0.1/32).
async fn outsider() -> UdpSocket {
    UdpSocket::bind("127.0.0.2:0").await.unwrap()
}

fn request(method: &str, user: &str, to: SocketAddr, from: SocketAddr, n: u32) -> String {
    format!(
        "{method} sip:{user}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKabuse{n}\r\n\
         From: <sip:scanner@{from}>;tag=s{n}\r\nTo: <sip:{user}@{to}>\r\nCall-ID: abuse-{n}\r\n\
         CSeq: 1 {method}\r\nContact: <sip:scanner@{from}>\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Every datagram that arrives within `quiet` of the previous one.
async fn drain(socket: &UdpSocket, quiet: Duration) -> Vec<String> {
    let mut buffer = vec![0u8; 65536];
    let mut received = Vec::new();
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, socket.recv(&mut buffer)).await {
        received.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    received
}

#[tokio::test]
async fn an_invite_flood_from_a_non_trunk_is_rate_limited_answered_statelessly_and_never_reaches_a_webhook(
) {
    let hook = WebhookServer::start(AUTH_TOKEN).await;
    hook.respond("/voice", "<Response><Hangup/></Response>");
    let numbers = format!(
        "[[numbers]]\nnumber = \"*\"\nvoice_url = \"{}\"\n",
        hook.url("/voice")
    );
    let tandem = Tandem::start_with_toml(&numbers, |_| {}).await;
    let socket = outsider().await;
    let from = socket.local_addr().unwrap();
    let to = tandem.sip_udp();
    const FLOOD: u32 = 1000;
    for n in 0..FLOOD {
        let invite = request("INVITE", "+15550100", to, from, n);
        socket.send_to(invite.as_bytes(), to).await.unwrap();
    }
    let answers = drain(&socket, Duration::from_millis(500)).await;
    // The default limit is 50/s with a burst of 100: roughly the burst is answered (plus what
    // the flood's own duration refilled), every answer a stateless refusal (403: with no
    // [[sip_users]] there is nobody to authenticate as); the rest dropped.
    assert!(
        (100..FLOOD as usize / 2).contains(&answers.len()),
        "{} answers",
        answers.len()
    );
    for answer in &answers {
        assert!(answer.starts_with("SIP/2.0 403 "), "{answer}");
    }
    assert!(tandem.metric("tandem_sip_rate_limited_total").await >= u64::from(FLOOD) / 2);
    assert_eq!(tandem.metric("tandem_sip_server_transactions").await, 0);
    assert_eq!(tandem.metric("tandem_calls_active").await, 0);
    assert!(hook.requests("*").is_empty(), "a webhook was called");

    // The trunk is not limited: its call still goes through at once.
    let trunk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let trunk_from = trunk.local_addr().unwrap();
    let options = request("OPTIONS", "+15550100", to, trunk_from, 99_999);
    trunk.send_to(options.as_bytes(), to).await.unwrap();
    let answer = drain(&trunk, Duration::from_millis(500)).await;
    assert!(answer[0].starts_with("SIP/2.0 200 "), "{answer:?}");
}

#[tokio::test]
async fn an_extension_scan_learns_nothing_about_which_users_exist() {
    let users = "[[sip_users]]\nusername = \"1001\"\npassword = \"s3cret\"\n";
    let tandem = Tandem::start_with_toml(users, |_| {}).await;
    let socket = outsider().await;
    let from = socket.local_addr().unwrap();
    let to = tandem.sip_udp();
    // Status line and header names of each answer, for an existing and an unknown user.
    let mut shapes = Vec::new();
    for (n, user) in [(1, "1001"), (2, "9999")] {
        let mut shape = Vec::new();
        for (m, method) in ["OPTIONS", "REGISTER", "INVITE"].iter().enumerate() {
            let text = request(method, user, to, from, n * 10 + m as u32);
            socket.send_to(text.as_bytes(), to).await.unwrap();
            let answer = drain(&socket, Duration::from_millis(300)).await;
            assert_eq!(answer.len(), 1, "{method} {user}: {answer:?}");
            let status = answer[0].lines().next().unwrap().to_owned();
            let names: Vec<String> = answer[0]
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':').map(|(name, _)| name.to_owned()))
                .collect();
            shape.push((status, names));
        }
        shapes.push(shape);
    }
    assert_eq!(
        shapes[0], shapes[1],
        "answers differ between a real and an unknown user"
    );
    assert!(
        shapes[0][1].0.starts_with("SIP/2.0 401 "),
        "{:?}",
        shapes[0]
    );
    assert!(
        shapes[0][2].0.starts_with("SIP/2.0 407 "),
        "{:?}",
        shapes[0]
    );
}

#[tokio::test]
async fn calls_beyond_the_limit_are_refused_503_at_once_and_the_others_go_on() {
    let hook = WebhookServer::start(AUTH_TOKEN).await;
    hook.respond("/voice", "<Response><Pause length=\"5\"/></Response>");
    let numbers = format!(
        "[[numbers]]\nnumber = \"*\"\nvoice_url = \"{}\"\n",
        hook.url("/voice")
    );
    let tandem = Tandem::start_with_toml(&numbers, |config| {
        config.router.max_calls = Some(2);
    })
    .await;
    let phone = integration::phone::Phone::bind().await;
    let rtp = integration::rtp::RtpEndpoint::bind().await;
    let first = phone.call(tandem.sip_udp(), "+1", &rtp.sdp_offer()).await;
    let second = phone.call(tandem.sip_udp(), "+2", &rtp.sdp_offer()).await;
    first.wait_status(200, Duration::from_secs(5)).await;
    second.wait_status(200, Duration::from_secs(5)).await;
    let third = phone.call(tandem.sip_udp(), "+3", &rtp.sdp_offer()).await;
    let refused = third.wait_final(Duration::from_secs(5)).await;
    assert_eq!(refused.status.code(), 503);
    assert_eq!(refused.reason, "Overloaded");
    assert_eq!(refused.headers.get("Retry-After"), Some("5"));
    assert_eq!(
        hook.requests("/voice").len(),
        2,
        "no webhook for the refused call"
    );
    assert_eq!(
        tandem.metric("tandem_calls_refused_overload_total").await,
        1
    );
    // A slot frees up when a call ends.
    assert_eq!(first.bye().await.status.code(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tandem.metric("tandem_calls_active").await > 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fourth = phone.call(tandem.sip_udp(), "+4", &rtp.sdp_offer()).await;
    fourth.wait_status(200, Duration::from_secs(5)).await;
}
