//! Tests of the end-to-end harness itself: the in-process Tandem, the WebSocket client, the
//! scripted phone, the webhook server and its signature check, and the RTP endpoint. The call
//! flows through the router are tested elsewhere; these make sure the tools tell the truth.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use integration::client::Client;
use integration::phone::{Answer, Direction, Phone};
use integration::rtp::{self, parse_sdp_audio, parse_telephone_event, RtpEndpoint};
use integration::tandem::{self as harness, Tandem};
use integration::webhook::{twilio_signature, Reply, WebhookServer};
use serde_json::json;
use sip::message::{Message, Method};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn tandem_starts_on_free_ports_with_the_test_configuration() {
    let tandem = Tandem::start(|config| config.drain_grace = Duration::from_secs(2)).await;
    assert_eq!(tandem.config().drain_grace, Duration::from_secs(2));
    assert_eq!(tandem.api_key(), harness::API_KEY);
    assert_ne!(tandem.sip_udp().port(), 0);
    assert_ne!(tandem.sip_tcp().port(), 0);
    assert_ne!(tandem.http_addr().port(), 0);
    assert_eq!(tandem.config().sip.trunks.len(), 1);
    assert_eq!(tandem.config().sip.trunks[0].name, harness::TRUNK_NAME);
    assert_eq!(
        tandem.config().router.account.auth_token.as_deref(),
        Some(harness::AUTH_TOKEN)
    );
    let (first, last) = tandem.rtp_ports();
    assert_eq!(first % 2, 0);
    assert!((10_000..20_000).contains(&first) && last < 20_000 && first < last);

    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/healthz", tandem.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let refused = http
        .get(format!("{}/v1/presence", tandem.http_url()))
        .bearer_auth("not-the-key")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        tandem.get_json("/v1/presence").await,
        json!({ "identities": [] })
    );

    // Two instances in one process get different ports and RTP blocks.
    let other = Tandem::start(|_| {}).await;
    assert_ne!(other.sip_udp(), tandem.sip_udp());
    assert_ne!(other.rtp_ports(), tandem.rtp_ports());
    other.stop().await;
}

#[tokio::test]
async fn drain_turns_health_to_503_and_stop_closes_the_listener() {
    let mut tandem = Tandem::start(|_| {}).await;
    let http_url = tandem.http_url();
    tandem.drain(Duration::from_secs(1)).await;
    let health = reqwest::get(format!("{http_url}/healthz")).await.unwrap();
    assert_eq!(health.status(), 503);
    tandem.stop().await;
    assert!(reqwest::get(format!("{http_url}/healthz")).await.is_err());
}

#[tokio::test]
async fn a_registered_client_is_available_in_presence() {
    let tandem = Tandem::start(|_| {}).await;
    let mut alice = Client::connect(&tandem, "alice").await;
    assert_eq!(alice.connected()["identity"], "alice");
    let device_id = alice.device_id();
    assert!(!device_id.is_empty());
    alice.register().await;

    let presence = tandem.get_json("/v1/presence/alice").await;
    assert_eq!(presence["identity"], "alice");
    assert_eq!(presence["status"], "available");
    let devices = presence["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["device_id"], device_id.as_str());
    assert_eq!(devices[0]["incoming"], true);
    assert_eq!(
        tandem.get_json("/v1/presence").await,
        json!({ "identities": ["alice"] })
    );

    // A token without the incoming grant may listen but not register (close 4003).
    let token = tandem.token_with("bob", false, Duration::from_secs(60));
    let mut bob = Client::connect_with_token(&tandem, &token).await;
    bob.send("register", json!({})).await;
    assert_eq!(bob.wait_closed(WAIT).await.0, 4003);

    alice.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let presence = tandem.get_json("/v1/presence/alice").await;
        if presence["status"] == "offline" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{presence}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_phone_gets_answers_from_tandem_and_cancels_a_ringing_call() {
    let webhook = WebhookServer::start(harness::AUTH_TOKEN).await;
    webhook.respond(
        "/voice",
        r#"<Response><Dial answerOnBridge="true"><Client>alice</Client></Dial></Response>"#,
    );
    let numbers = format!(
        "[[numbers]]\nnumber = \"+15550100\"\nvoice_url = \"{}\"\n",
        webhook.url("/voice")
    );
    let tandem = Tandem::start_with_toml(&numbers, |_| {}).await;
    // Alice takes calls but lets them ring: whether the router offers the call to her or only
    // rings the caller, the caller hears ringing until it cancels.
    let mut alice = Client::connect(&tandem, "alice").await;
    alice.register().await;
    let alice_task = tokio::spawn(async move {
        while let Some(message) = alice.try_next_message(Duration::from_secs(10)).await {
            if message["type"] == "invite" {
                let callsid = message["payload"]["callsid"].as_str().unwrap().to_owned();
                alice.ringing(&callsid).await;
            }
        }
    });

    let phone = Phone::bind().await;
    let options = phone.options(tandem.sip_udp()).await;
    assert_eq!(options.status.code(), 200);

    let media = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &media.sdp_offer())
        .await;
    let ringing = call.wait_provisional(WAIT).await;
    assert!(matches!(ringing.status.code(), 180 | 183), "{ringing}");
    assert!(ringing.headers.to.tag().is_some());
    let cancelled = call.cancel().await;
    assert_eq!(cancelled.status.code(), 200);
    let terminated = call.wait_status(487, WAIT).await;
    assert_eq!(terminated.headers.call_id, *call.call_id());

    // The phone acknowledged the 487 in the INVITE transaction (same branch).
    let invite_branch = call.invite().branch().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let acked = phone.trace().iter().any(|t| {
            t.direction == Direction::Sent
                && matches!(&t.message, Message::Request(r)
                    if r.method == Method::Ack && r.branch() == Some(invite_branch.clone()))
        });
        if acked {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no ACK sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The call is over for Tandem too.
    let deadline = tokio::time::Instant::now() + WAIT;
    while tandem.running().calls().active() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call stayed live"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    alice_task.abort();
}

#[tokio::test]
async fn phones_call_each_other_answer_reject_cancel_and_hang_up() {
    let caller = Phone::bind().await;
    let callee_media = RtpEndpoint::bind().await;
    let media_addr = callee_media.addr();
    let callee = Phone::listen(Answer::After(Duration::from_millis(50)), move |offer| {
        rtp::sdp_answer_for(media_addr, offer)
    })
    .await;
    let caller_media = RtpEndpoint::bind().await;

    // Answered: 180, then 200 with an SDP answer, ACK, BYE from the caller.
    let call = caller
        .call(callee.addr(), "bob", &caller_media.sdp_offer())
        .await;
    let incoming = callee.wait_invite(WAIT).await;
    assert_eq!(incoming.call_id(), call.call_id());
    assert_eq!(
        parse_sdp_audio(&incoming.offer_sdp()).0,
        caller_media.addr()
    );
    call.wait_status(180, WAIT).await;
    let ok = call.wait_status(200, WAIT).await;
    assert!(ok.headers.to.tag().is_some());
    let (answer_addr, payload_types) = parse_sdp_audio(&call.remote_sdp().unwrap());
    assert_eq!(answer_addr, media_addr);
    assert_eq!(payload_types, vec![0, 101]);
    let ack = incoming.wait_ack(WAIT).await;
    assert_eq!(ack.headers.cseq.seq, call.invite().headers.cseq.seq);
    assert_eq!(incoming.final_status(), Some(200));
    assert_eq!(caller.options(callee.addr()).await.status.code(), 200);
    assert_eq!(
        call.info("application/dtmf-relay", "Signal=5\r\nDuration=100\r\n")
            .await
            .status
            .code(),
        200
    );
    assert_eq!(call.bye().await.status.code(), 200);
    let bye = incoming.wait_bye(WAIT).await;
    assert_eq!(bye.headers.cseq.seq, call.invite().headers.cseq.seq + 2);

    // Answered, then hung up by the callee: the caller answers the BYE with 200.
    let call = caller.call(callee.addr(), "bob", "").await;
    let incoming = callee.wait_invite(WAIT).await;
    call.wait_status(200, WAIT).await;
    incoming.wait_ack(WAIT).await;
    assert_eq!(incoming.bye().await.status.code(), 200);
    call.wait_bye(WAIT).await;

    // Rejected: 486, acknowledged by the caller.
    callee.set_answer(Answer::Reject {
        status: 486,
        after: Duration::ZERO,
    });
    let call = caller.call(callee.addr(), "bob", "").await;
    let incoming = callee.wait_invite(WAIT).await;
    assert_eq!(call.wait_final(WAIT).await.status.code(), 486);
    incoming.wait_ack(WAIT).await;

    // Never answered: CANCEL gets 200 and the INVITE 487.
    callee.set_answer(Answer::Never);
    let call = caller.call(callee.addr(), "bob", "").await;
    let incoming = callee.wait_invite(WAIT).await;
    call.wait_status(180, WAIT).await;
    assert_eq!(call.cancel().await.status.code(), 200);
    assert_eq!(call.wait_final(WAIT).await.status.code(), 487);
    incoming.wait_cancel(WAIT).await;
    incoming.wait_ack(WAIT).await;
    assert_eq!(incoming.final_status(), Some(487));

    // A BYE for no dialog gets 481.
    let mut stray = caller.new_request(Method::Bye, &callee.uri("bob"));
    stray
        .headers
        .to
        .set_tag(&sip::message::Tag::new("no-such-dialog"));
    assert_eq!(
        caller.request(callee.addr(), stray).await.status.code(),
        481
    );
}

#[test]
fn the_signature_matches_a_known_vector() {
    // Computed independently of this crate with Python's hmac, hashlib and base64:
    //   url = 'https://mycompany.com/myapp.php?foo=1&bar=2'
    //   params = {'CallSid': 'CA1234567890ABCDE', 'Caller': '+12349013030', 'Digits': '1234',
    //             'From': '+12349013030', 'To': '+18005551212'}
    //   data = url + ''.join(k + params[k] for k in sorted(params))
    //   base64.b64encode(hmac.new(b'12345', data.encode(), hashlib.sha1).digest())
    // (the same value as Twilio's documented example).
    let params: Vec<(String, String)> = [
        ("To", "+18005551212"),
        ("From", "+12349013030"),
        ("Digits", "1234"),
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        twilio_signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &params
        ),
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    );
}

#[tokio::test]
async fn the_webhook_server_records_requests_and_checks_their_signatures() {
    let server = WebhookServer::start("secret-token").await;
    server.respond("/voice", "<Response><Hangup/></Response>");
    server.respond_with("/slow", |request| {
        let status = if request.param("fail") == Some("yes") {
            500
        } else {
            200
        };
        Reply::new(status, "text/plain", "done").delayed(Duration::from_millis(200))
    });
    let http = reqwest::Client::new();
    let form = [("To", "+15550100"), ("CallSid", "CA01"), ("From", "+1555")];
    let pairs: Vec<(String, String)> = form
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();

    // Signed correctly.
    let url = server.url("/voice?x=1");
    let signature = twilio_signature("secret-token", &url, &pairs);
    let response = http
        .post(&url)
        .header("X-Twilio-Signature", &signature)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/xml"
    );
    assert_eq!(
        response.text().await.unwrap(),
        "<Response><Hangup/></Response>"
    );
    // Signed with another token, and not signed.
    let wrong = twilio_signature("other-token", &url, &pairs);
    http.post(&url)
        .header("X-Twilio-Signature", wrong)
        .form(&form)
        .send()
        .await
        .unwrap();
    http.post(&url).form(&form).send().await.unwrap();

    let requests = server.wait_for("/voice", 3, WAIT).await;
    let first = &requests[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.url, url);
    assert_eq!(first.query, vec![("x".to_owned(), "1".to_owned())]);
    assert_eq!(first.form, pairs, "form parameters in the order sent");
    assert_eq!(first.param("CallSid"), Some("CA01"));
    assert_eq!(first.signature.as_deref(), Some(signature.as_str()));
    assert!(first.signature_valid);
    assert!(!requests[1].signature_valid);
    assert!(requests[2].signature.is_none() && !requests[2].signature_valid);

    // GET: the query is part of the signed URL and no parameters follow it.
    let get_url = server.url("/slow?CallSid=CA02&fail=yes");
    let started = std::time::Instant::now();
    let response = http
        .get(&get_url)
        .header(
            "X-Twilio-Signature",
            twilio_signature("secret-token", &get_url, &[]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let slow = server.requests("/slow");
    assert_eq!(slow.len(), 1);
    assert!(slow[0].signature_valid);
    assert_eq!(slow[0].param("CallSid"), Some("CA02"));

    // Unconfigured paths get 404 and are recorded too.
    let missing = http.get(server.url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(server.requests("/nowhere").len(), 1);
    assert_eq!(server.requests("*").len(), 5);
}

#[tokio::test]
async fn rtp_endpoints_exchange_audio_and_dtmf_and_read_each_others_sdp() {
    let alice = RtpEndpoint::bind().await;
    let bob = RtpEndpoint::bind().await;
    let offer = alice.sdp_offer();
    let answer = bob.sdp_answer(&offer);
    assert_eq!(parse_sdp_audio(&offer), (alice.addr(), vec![0, 8, 101]));
    assert_eq!(parse_sdp_audio(&answer), (bob.addr(), vec![0, 101]));

    alice.start_sending(bob.addr(), 0, 0x55);
    let packets = bob.wait_packets(10, WAIT).await;
    alice.stop_sending();
    assert!(packets[0].marker, "the first packet starts a talkspurt");
    for pair in packets.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence.wrapping_add(1));
        assert_eq!(pair[1].timestamp, pair[0].timestamp.wrapping_add(160));
        assert!(!pair[1].marker);
    }
    for packet in &packets {
        assert_eq!(packet.from, alice.addr());
        assert_eq!(packet.payload_type, 0);
        assert_eq!(packet.ssrc, alice.ssrc());
        assert_eq!(packet.payload, vec![0x55; 160]);
    }
    // Paced at 20 ms: ten packets span at least 9 intervals (less some scheduling slack).
    let span = packets[9].arrived - packets[0].arrived;
    assert!(span >= Duration::from_millis(150), "{span:?}");

    bob.send_dtmf(alice.addr(), '5').await;
    bob.send_dtmf(alice.addr(), '#').await;
    assert_eq!(alice.wait_dtmf(101, 2, WAIT).await, "5#");
    // The last end packets may still be on their way when the second digit is recognised.
    let events: Vec<_> = alice
        .wait_packets(16, WAIT)
        .await
        .into_iter()
        .filter(|p| p.payload_type == 101)
        .collect();
    assert_eq!(events.len(), 16, "8 packets per digit");
    let first_digit = &events[..8];
    assert!(first_digit[0].marker);
    assert!(first_digit
        .iter()
        .all(|p| p.timestamp == first_digit[0].timestamp));
    let decoded: Vec<_> = first_digit
        .iter()
        .map(|p| parse_telephone_event(&p.payload).unwrap())
        .collect();
    assert!(decoded.iter().all(|e| e.event == 5));
    assert_eq!(decoded.iter().filter(|e| e.end).count(), 3);
    assert!(decoded.windows(2).all(|w| w[1].duration >= w[0].duration));
    // The second event starts later on the same clock.
    let gap = events[8].timestamp.wrapping_sub(first_digit[0].timestamp);
    assert!(gap > 0 && gap < u32::MAX / 2, "{gap}");
}
