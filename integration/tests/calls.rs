//! End-to-end call flows through a whole Tandem on 127.0.0.1: a scripted SIP trunk with real
//! RTP, a webhook server inside the test (every request's X-Twilio-Signature checked), and
//! WebSocket clients that answer with real RTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::time::Duration;

use integration::client::Client;
use integration::phone::{Answer, Direction, IncomingCall, OutgoingCall, Phone};
use integration::rtp::{parse_sdp_audio, RtpEndpoint, RtpPacket};
use integration::tandem::{Tandem, AUTH_TOKEN};
use integration::webhook::{Reply, Request, WebhookServer};
use serde_json::Value;
use sip::message::{Message, Method, Response};

const WAIT: Duration = Duration::from_secs(5);

/// A Tandem whose every number runs the webhook's `/voice`, with `/fallback` and `/status`.
async fn tandem_for(hook: &WebhookServer) -> Tandem {
    let numbers = format!(
        r#"
[[numbers]]
number = "*"
voice_url = "{voice}"
voice_fallback_url = "{fallback}"
status_callback = "{status}"
"#,
        voice = hook.url("/voice"),
        fallback = hook.url("/fallback"),
        status = hook.url("/status"),
    );
    Tandem::start_with_toml(&numbers, |_| {}).await
}

async fn webhook() -> WebhookServer {
    let hook = WebhookServer::start(AUTH_TOKEN).await;
    hook.respond_with("/status", |_| Reply::status(204));
    hook
}

async fn client(tandem: &Tandem, identity: &str) -> Client {
    let mut client = Client::connect(tandem, identity).await;
    client.register().await;
    client
}

/// Every webhook request the server saw (audio fetches of the prompt cache aside) carried a
/// valid signature.
fn assert_signed(hook: &WebhookServer) {
    let requests: Vec<Request> = hook
        .requests("*")
        .into_iter()
        .filter(|r| !r.path.ends_with(".ulaw"))
        .collect();
    assert!(!requests.is_empty());
    for request in requests {
        assert!(
            request.signature_valid,
            "bad X-Twilio-Signature on {} {}",
            request.method, request.url
        );
    }
}

/// Waits until the call's record has `status`; returns the record.
async fn wait_call_status(tandem: &Tandem, sid: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let call = tandem.get_json(&format!("/v1/calls/{sid}")).await;
        if call["status"] == status {
            return call;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "call never reached {status}: {call}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn payloads_are(packets: &[RtpPacket], byte: u8) -> bool {
    packets
        .iter()
        .all(|p| p.payload.len() == 160 && p.payload.iter().all(|&b| b == byte))
}

/// Packets whose payload is all `byte` (RTP from other sources, e.g. ringback, filtered out).
async fn wait_pattern(rtp: &RtpEndpoint, byte: u8, count: usize) -> Vec<RtpPacket> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let matching: Vec<RtpPacket> = rtp
            .received()
            .into_iter()
            .filter(|p| !p.payload.is_empty() && p.payload.iter().all(|&b| b == byte))
            .collect();
        if matching.len() >= count {
            return matching;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} packets of {byte:#04x} arrived",
            matching.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn dial_client_first_answer_wins_audio_flows_both_ways_and_caller_bye_ends_it() {
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Dial answerOnBridge="true"><Client statusCallback="/legs"
             statusCallbackEvent="initiated ringing answered completed">alice</Client></Dial></Response>"#,
    );
    hook.respond_with("/legs", |_| Reply::status(204));
    let tandem = tandem_for(&hook).await;
    let mut first = client(&tandem, "alice").await;
    let mut second = client(&tandem, "alice").await;

    let caller_rtp = RtpEndpoint::bind().await;
    let phone = Phone::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    let offered_first = first.wait_invite(WAIT).await;
    let offered_second = second.wait_invite(WAIT).await;
    assert_ne!(offered_first.callsid, offered_second.callsid);
    assert!(offered_first.callsid.starts_with("CA") && offered_first.callsid.len() == 34);
    assert_eq!(offered_first.from, "+15557654321");

    first.ringing(&offered_first.callsid).await;
    call.wait_status(180, WAIT).await;

    let device_rtp = RtpEndpoint::bind().await;
    second
        .answer(
            &offered_second.callsid,
            &device_rtp.sdp_answer(&offered_second.sdp),
        )
        .await;
    call.wait_status(200, WAIT).await;
    let cancelled = first.wait_type("cancel", WAIT).await;
    assert_eq!(cancelled["callsid"], offered_first.callsid.as_str());

    // Audio both ways through Tandem's own ports.
    let (tandem_for_caller, _) = parse_sdp_audio(&call.remote_sdp().expect("SDP in the 200"));
    let (tandem_for_device, _) = parse_sdp_audio(&offered_second.sdp);
    assert_ne!(tandem_for_caller.port(), tandem_for_device.port());
    caller_rtp.start_sending(tandem_for_caller, 0, 0x11);
    device_rtp.start_sending(tandem_for_device, 0, 0x22);
    let at_device = wait_pattern(&device_rtp, 0x11, 10).await;
    assert!(payloads_are(&at_device, 0x11));
    assert!(at_device.iter().all(|p| p.from == tandem_for_device));
    let at_caller = wait_pattern(&caller_rtp, 0x22, 10).await;
    assert!(at_caller.iter().all(|p| p.from == tandem_for_caller));

    // The call and its legs in the API; the answering device is busy.
    let voice = hook.requests("/voice");
    let sid = voice[0].param("CallSid").unwrap().to_owned();
    let record = wait_call_status(&tandem, &sid, "in-progress").await;
    assert_eq!(record["legs"].as_array().unwrap().len(), 2);
    let presence = tandem.get_json("/v1/presence/alice").await;
    let statuses: Vec<&str> = presence["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"busy"), "{presence}");

    let bye = call.bye().await;
    assert_eq!(bye.status.code(), 200);
    let hangup = second.wait_type("hangup", WAIT).await;
    assert_eq!(hangup["callsid"], offered_second.callsid.as_str());
    wait_call_status(&tandem, &sid, "completed").await;

    // Status callbacks: initiated, ringing, answered, completed, in order.
    let callbacks = hook.wait_for("/status", 4, WAIT).await;
    let events: Vec<&str> = callbacks
        .iter()
        .map(|r| r.param("StatusCallbackEvent").unwrap())
        .collect();
    assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
    assert!(callbacks.iter().all(|r| r.param("Timestamp").is_some()));
    // Each device's leg reports its own progress to the noun's callback: the device that rang
    // was cancelled by the other's answer; the one that answered completed after the bridge.
    let legs = hook.wait_for("/legs", 6, WAIT).await;
    // Callbacks run concurrently in the background, so they may arrive out of order: the
    // SequenceNumber orders them, as with Twilio.
    let progress = |device: &str| -> Vec<(String, String, String)> {
        let mut rows: Vec<_> = legs
            .iter()
            .filter(|r| r.param("CallSid") == Some(device))
            .map(|r| {
                assert_eq!(r.method, "POST");
                assert_eq!(r.param("ParentCallSid"), Some(sid.as_str()));
                assert_eq!(r.param("Direction"), Some("outbound-dial"));
                assert_eq!(r.param("To"), Some("client:alice"));
                assert_eq!(r.param("From"), Some("+15557654321"));
                assert!(r.param("Timestamp").is_some());
                let param = |name| r.param(name).unwrap().to_owned();
                let status = match r.param("CallDuration") {
                    Some(_) => format!("{}/{}", param("CallStatus"), param("CallDuration")),
                    None => param("CallStatus"),
                };
                (
                    param("StatusCallbackEvent"),
                    param("SequenceNumber"),
                    status,
                )
            })
            .collect();
        rows.sort_by(|a, b| a.1.cmp(&b.1));
        rows
    };
    let row = |event: &str, sequence: &str, status: &str| {
        (event.to_owned(), sequence.to_owned(), status.to_owned())
    };
    assert_eq!(
        progress(&offered_first.callsid),
        [
            row("initiated", "0", "initiated"),
            row("ringing", "1", "ringing"),
            row("completed", "2", "canceled/0"),
        ]
    );
    assert_eq!(
        progress(&offered_second.callsid),
        [
            row("initiated", "0", "initiated"),
            row("answered", "1", "in-progress"),
            row("completed", "2", "completed/0"),
        ]
    );
    assert_signed(&hook);
    let metrics = tandem.get("/metrics").await.1;
    assert!(
        metrics.contains("tandem_calls_total{outcome=\"completed\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_hanging_up_ends_the_bridge_and_the_call() {
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Dial><Client>alice</Client></Dial></Response>"#,
    );
    let tandem = tandem_for(&hook).await;
    let mut alice = client(&tandem, "alice").await;
    let caller_rtp = RtpEndpoint::bind().await;
    let phone = Phone::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    // Answered at once (no answerOnBridge); ringback plays while alice rings.
    call.wait_status(200, WAIT).await;
    let offered = alice.wait_invite(WAIT).await;
    caller_rtp.wait_packets(5, WAIT).await;
    let device_rtp = RtpEndpoint::bind().await;
    alice
        .answer(&offered.callsid, &device_rtp.sdp_answer(&offered.sdp))
        .await;
    let (tandem_for_device, _) = parse_sdp_audio(&offered.sdp);
    device_rtp.start_sending(tandem_for_device, 0, 0x33);
    wait_pattern(&caller_rtp, 0x33, 5).await;
    alice.hangup(&offered.callsid).await;
    // The document has nothing after the dial: Tandem hangs up the caller.
    call.wait_bye(WAIT).await;
}

#[tokio::test]
async fn a_clients_dtmf_reaches_the_caller_as_telephone_events() {
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Dial answerOnBridge="true"><Client>alice</Client></Dial></Response>"#,
    );
    let tandem = tandem_for(&hook).await;
    let mut alice = client(&tandem, "alice").await;
    let caller_rtp = RtpEndpoint::bind().await;
    let phone = Phone::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    let offered = alice.wait_invite(WAIT).await;
    // Keys before the answer go nowhere.
    alice
        .send(
            "dtmf",
            serde_json::json!({"callsid": offered.callsid, "digits": "9"}),
        )
        .await;
    let device_rtp = RtpEndpoint::bind().await;
    alice
        .answer(&offered.callsid, &device_rtp.sdp_answer(&offered.sdp))
        .await;
    call.wait_status(200, WAIT).await;
    // Bridged once the device's audio reaches the caller.
    let (tandem_for_device, _) = parse_sdp_audio(&offered.sdp);
    device_rtp.start_sending(tandem_for_device, 0, 0x22);
    wait_pattern(&caller_rtp, 0x22, 3).await;

    alice
        .send(
            "dtmf",
            serde_json::json!({"callsid": offered.callsid, "digits": "42#"}),
        )
        .await;
    let answer = call.remote_sdp().expect("SDP in the 200");
    let event_type = integration::rtp::telephone_event_type(&answer).expect("telephone-event");
    assert_eq!(caller_rtp.wait_dtmf(event_type, 3, WAIT).await, "42#");
    // The device's audio resumes after the keys.
    caller_rtp.clear_received();
    wait_pattern(&caller_rtp, 0x22, 3).await;
    device_rtp.stop_sending();
    assert_eq!(call.bye().await.status.code(), 200);
}

#[tokio::test]
async fn no_answer_reaches_the_action_url_whose_prompt_plays_to_the_caller() {
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Dial timeout="1" action="/dialed"><Client>alice</Client></Dial></Response>"#,
    );
    hook.respond(
        "/dialed",
        r#"<Response><Play>/prompt.ulaw</Play><Hangup/></Response>"#,
    );
    // 0.2 s of a constant µ-law code: ten 20 ms packets.
    hook.respond_with("/prompt.ulaw", |_| {
        Reply::new(200, "audio/basic", vec![0x5a_u8; 1600])
    });
    let tandem = tandem_for(&hook).await;
    let mut alice = client(&tandem, "alice").await;
    let caller_rtp = RtpEndpoint::bind().await;
    let phone = Phone::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    call.wait_status(200, WAIT).await;
    let offered = alice.wait_invite(WAIT).await;
    alice.ringing(&offered.callsid).await;
    let cancelled = alice.wait_type("cancel", WAIT).await;
    assert_eq!(cancelled["callsid"], offered.callsid.as_str());

    let dialed = hook.wait_for("/dialed", 1, WAIT).await;
    assert_eq!(dialed[0].param("DialCallStatus"), Some("no-answer"));
    assert_eq!(dialed[0].param("CallStatus"), Some("in-progress"));

    // The prompt reaches the caller as PCMU with exactly the cached bytes.
    let prompt = wait_pattern(&caller_rtp, 0x5a, 10).await;
    assert!(prompt.iter().all(|p| p.payload_type == 0));
    // The cache holds exactly those bytes (an origin without freshness headers is
    // revalidated or fetched again, either way under the same content-derived id).
    let media = tandem
        .post_json(
            "/v1/media",
            serde_json::json!({ "url": hook.url("/prompt.ulaw") }),
        )
        .await;
    let (status, _) = tandem.get(media["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(media["duration_ms"], 200);
    call.wait_bye(WAIT).await;
    assert_signed(&hook);
}

#[tokio::test]
async fn an_offline_client_ends_the_dial_at_once() {
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Dial action="/dialed" answerOnBridge="true"><Client>nobody</Client></Dial></Response>"#,
    );
    hook.respond("/dialed", r#"<Response><Reject reason="busy"/></Response>"#);
    let tandem = tandem_for(&hook).await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    let dialed = hook.wait_for("/dialed", 1, WAIT).await;
    assert_eq!(dialed[0].param("DialCallStatus"), Some("no-answer"));
    // Still unanswered (answerOnBridge): the action's <Reject> refuses it.
    call.wait_status(486, WAIT).await;
}

#[tokio::test]
async fn reject_busy_refuses_without_answering() {
    let hook = webhook().await;
    hook.respond("/voice", r#"<Response><Reject reason="busy"/></Response>"#);
    let tandem = tandem_for(&hook).await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    let response = call.wait_final(WAIT).await;
    assert_eq!(response.status.code(), 486);
    assert!(call.responses().iter().all(|r| r.status.code() != 200));
    let sid = hook.requests("/voice")[0]
        .param("CallSid")
        .unwrap()
        .to_owned();
    wait_call_status(&tandem, &sid, "busy").await;
}

#[tokio::test]
async fn gather_collects_rfc_4733_digits_and_sip_info_for_the_action() {
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Gather numDigits="3" action="/digits" timeout="5"><Pause length="1"/></Gather></Response>"#,
    );
    hook.respond("/digits", "<Response><Hangup/></Response>");
    let tandem = tandem_for(&hook).await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    call.wait_status(200, WAIT).await;
    let (tandem_rtp, _) = parse_sdp_audio(&call.remote_sdp().unwrap());
    // An injected digit from another address is ignored.
    let intruder = RtpEndpoint::bind().await;
    intruder.send_dtmf(tandem_rtp, '9').await;
    caller_rtp.send_dtmf(tandem_rtp, '4').await;
    caller_rtp.send_dtmf(tandem_rtp, '2').await;
    let info = call
        .info("application/dtmf-relay", "Signal=#\r\nDuration=160\r\n")
        .await;
    assert_eq!(info.status.code(), 200);
    let digits = hook.wait_for("/digits", 1, WAIT).await;
    assert_eq!(digits[0].param("Digits"), Some("42"));
    call.wait_bye(WAIT).await;
}

#[tokio::test]
async fn redirect_continues_with_the_next_document() {
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Redirect method="GET">/next?step=2</Redirect></Response>"#,
    );
    hook.respond("/next", r#"<Response><Reject/></Response>"#);
    let tandem = tandem_for(&hook).await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    assert_eq!(call.wait_final(WAIT).await.status.code(), 603);
    let next = hook.requests("/next");
    assert_eq!(next[0].method, "GET");
    assert!(next[0].query.iter().any(|(n, v)| n == "step" && v == "2"));
    assert!(next[0].query.iter().any(|(n, _)| n == "CallSid"));
    assert_signed(&hook);
}

#[tokio::test]
async fn a_failing_voice_url_falls_back_with_the_error() {
    let hook = webhook().await;
    hook.respond_with("/voice", |_| Reply::status(503));
    hook.respond(
        "/fallback",
        r#"<Response><Reject reason="busy"/></Response>"#,
    );
    let tandem = tandem_for(&hook).await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    assert_eq!(call.wait_final(WAIT).await.status.code(), 486);
    let fallback: Vec<Request> = hook.requests("/fallback");
    assert_eq!(fallback[0].param("ErrorCode"), Some("11200"));
    assert_eq!(
        fallback[0].param("ErrorUrl"),
        Some(hook.url("/voice").as_str())
    );
}

#[tokio::test]
async fn garbage_instructions_without_a_fallback_fail_the_call_with_500() {
    let hook = webhook().await;
    hook.respond_with("/voice", |_| {
        Reply::new(200, "text/html", "<html><body>Oops</body></html>")
    });
    hook.respond_with("/fallback", |_| {
        Reply::new(200, "text/plain", "still not TwiML")
    });
    let tandem = tandem_for(&hook).await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    let response = call.wait_final(WAIT).await;
    assert_eq!(response.status.code(), 500);
    assert_eq!(response.reason, "Application Error");
    let sid = hook.requests("/voice")[0]
        .param("CallSid")
        .unwrap()
        .to_owned();
    wait_call_status(&tandem, &sid, "failed").await;
}

/// A trunk call bridged by the webhook's `<Dial>` to a SIP phone that answers after 100 ms,
/// with RTP flowing both ways through Tandem: 0x44 from the caller, 0x55 from the callee.
struct SipBridge {
    call: OutgoingCall,
    incoming: IncomingCall,
    caller_rtp: RtpEndpoint,
    callee_rtp: RtpEndpoint,
    callee_uri: String,
    // Kept alive for the call's length.
    _phones: (Phone, Phone),
    _tandem: Tandem,
}

/// A SIP phone that answers every INVITE `after` ringing, with RTP at the returned endpoint.
async fn sip_callee(after: Duration) -> (RtpEndpoint, Phone) {
    let callee_rtp = RtpEndpoint::bind().await;
    let rtp_addr = callee_rtp.addr();
    let callee = Phone::listen(Answer::After(after), move |offer| {
        integration::rtp::sdp_answer_for(rtp_addr, offer)
    })
    .await;
    (callee_rtp, callee)
}

/// Sets up a [`SipBridge`] whose `/voice` answers `dial(callee URI)`; `hook` may hold other
/// routes the dial needs.
async fn sip_bridge(hook: &WebhookServer, dial: impl FnOnce(&str) -> String) -> SipBridge {
    let (callee_rtp, callee) = sip_callee(Duration::from_millis(100)).await;
    let callee_uri = callee.uri("bob");
    hook.respond("/voice", dial(&callee_uri));
    let tandem = tandem_for(hook).await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    let incoming = callee.wait_invite(WAIT).await;
    call.wait_status(200, WAIT).await;
    incoming.wait_ack(WAIT).await;
    let (tandem_for_caller, _) = parse_sdp_audio(&call.remote_sdp().unwrap());
    let (tandem_for_callee, _) = parse_sdp_audio(&incoming.offer_sdp());
    caller_rtp.start_sending(tandem_for_caller, 0, 0x44);
    callee_rtp.start_sending(tandem_for_callee, 0, 0x55);
    wait_pattern(&callee_rtp, 0x44, 5).await;
    wait_pattern(&caller_rtp, 0x55, 5).await;
    SipBridge {
        call,
        incoming,
        caller_rtp,
        callee_rtp,
        callee_uri,
        _phones: (phone, callee),
        _tandem: tandem,
    }
}

#[tokio::test]
async fn dial_sip_bridges_to_a_sip_user_agent() {
    let hook = webhook().await;
    hook.respond("/dialed", "<Response><Hangup/></Response>");
    hook.respond_with("/leg", |_| Reply::status(204));
    let bridge = sip_bridge(&hook, |callee| {
        format!(
            r#"<Response><Dial answerOnBridge="true" action="/dialed"><Sip statusCallback="/leg"
                 statusCallbackMethod="GET" statusCallbackEvent="ringing completed">{callee}</Sip></Dial></Response>"#
        )
    })
    .await;
    let (call, incoming, caller_rtp) = (&bridge.call, &bridge.incoming, &bridge.caller_rtp);
    // answerOnBridge: the callee's 180 was relayed before the 200.
    call.wait_status(180, WAIT).await;
    // The callee's key press by SIP INFO reaches the caller as an RFC 4733 event.
    let info = incoming
        .info("application/dtmf-relay", "Signal=7\r\nDuration=160\r\n")
        .await;
    assert_eq!(info.status.code(), 200);
    let event_type = integration::rtp::telephone_event_type(&call.remote_sdp().unwrap())
        .expect("telephone-event in the answer");
    assert_eq!(caller_rtp.wait_dtmf(event_type, 1, WAIT).await, "7");
    // The callee hangs up: the dial completes, the action hangs up the caller.
    assert_eq!(incoming.bye().await.status.code(), 200);
    let dialed = hook.wait_for("/dialed", 1, WAIT).await;
    assert_eq!(dialed[0].param("DialCallStatus"), Some("completed"));
    assert!(dialed[0]
        .param("DialCallSid")
        .is_some_and(|s| s.starts_with("CA")));
    call.wait_bye(WAIT).await;
    // The SIP leg reported what its noun asked for, by GET, signed like every webhook.
    let mut leg = hook.wait_for("/leg", 2, WAIT).await;
    leg.sort_by_key(|r| r.param("SequenceNumber").map(str::to_owned));
    let reported: Vec<_> = leg
        .iter()
        .map(|r| {
            assert_eq!(r.method, "GET");
            assert_eq!(r.param("CallSid"), dialed[0].param("DialCallSid"));
            assert_eq!(r.param("To"), Some(bridge.callee_uri.as_str()));
            (
                r.param("StatusCallbackEvent").unwrap(),
                r.param("CallStatus").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reported,
        [("ringing", "ringing"), ("completed", "completed")]
    );
    assert_signed(&hook);
}

/// A SIP phone answering every INVITE at once with RTP at the returned endpoint, agreeing to
/// RTCP multiplexing (RFC 5761) when offered if `rtcp_mux`.
async fn sip_callee_multiplexing(rtcp_mux: bool) -> (RtpEndpoint, Phone) {
    let callee_rtp = RtpEndpoint::bind().await;
    let rtp_addr = callee_rtp.addr();
    let callee = Phone::listen(Answer::After(Duration::ZERO), move |offer| {
        let answer = integration::rtp::sdp_answer_for(rtp_addr, offer);
        if rtcp_mux && offer.contains("a=rtcp-mux\r\n") {
            answer + "a=rtcp-mux\r\n"
        } else {
            answer
        }
    })
    .await;
    (callee_rtp, callee)
}

/// Whether Tandem holds a socket on `port` (binding it on loopback fails while Tandem's
/// wildcard socket is there).
fn tandem_holds(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
}

#[tokio::test]
async fn rtcp_shares_the_rtp_port_when_both_sides_agree_and_gets_its_own_when_the_callee_declines()
{
    for callee_muxes in [true, false] {
        let hook = webhook().await;
        let (callee_rtp, callee) = sip_callee_multiplexing(callee_muxes).await;
        hook.respond(
            "/voice",
            format!(
                "<Response><Dial><Sip>{}</Sip></Dial></Response>",
                callee.uri("bob")
            ),
        );
        let tandem = tandem_for(&hook).await;
        let phone = Phone::bind().await;
        let caller_rtp = RtpEndpoint::bind().await;
        // The trunk offers RTCP multiplexing (RFC 5761 §5.1.1).
        let offer = format!("{}a=rtcp-mux\r\n", caller_rtp.sdp_offer());
        let call = phone.call(tandem.sip_udp(), "+15550100", &offer).await;
        let incoming = callee.wait_invite(WAIT).await;
        call.wait_status(200, WAIT).await;
        incoming.wait_ack(WAIT).await;
        let answer = call.remote_sdp().unwrap();
        assert!(
            answer.contains("a=rtcp-mux\r\n"),
            "agreed with the caller: {answer}"
        );
        let tandem_offer = incoming.offer_sdp();
        assert!(
            tandem_offer.contains("a=rtcp-mux\r\n"),
            "offered to the callee: {tandem_offer}"
        );
        let (tandem_for_caller, _) = parse_sdp_audio(&answer);
        let (tandem_for_callee, _) = parse_sdp_audio(&tandem_offer);
        caller_rtp.start_sending(tandem_for_caller, 0, 0x44);
        callee_rtp.start_sending(tandem_for_callee, 0, 0x55);
        wait_pattern(&callee_rtp, 0x44, 5).await;
        wait_pattern(&caller_rtp, 0x55, 5).await;
        // One socket for the multiplexing caller; the callee's RTCP port is opened only when
        // its answer declined.
        assert!(tandem_holds(tandem_for_caller.port()));
        assert!(!tandem_holds(tandem_for_caller.port() + 1));
        assert!(tandem_holds(tandem_for_callee.port()));
        assert_eq!(tandem_holds(tandem_for_callee.port() + 1), !callee_muxes);
        if callee_muxes {
            // Tandem's reports reach the caller on its RTP port (the first within 7.5 s, RFC
            // 3550 §6.2), from Tandem's RTP port.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let is_report = |packet: &RtpPacket| (72..=76).contains(&packet.payload_type);
            while !caller_rtp.received().iter().any(is_report) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no RTCP on the caller's RTP port"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let report = caller_rtp.received().into_iter().find(is_report).unwrap();
            assert_eq!(report.from.port(), tandem_for_caller.port());
        }
        call.bye().await;
        incoming.wait_bye(WAIT).await;
    }
}

/// Packets of `byte` received so far.
fn count_pattern(rtp: &RtpEndpoint, byte: u8) -> usize {
    rtp.received()
        .iter()
        .filter(|p| !p.payload.is_empty() && p.payload.iter().all(|&b| b == byte))
        .count()
}

/// A party of a [`SipBridge`].
#[derive(Clone, Copy)]
enum Party {
    Caller,
    Callee,
}

impl Party {
    /// The party's RTP and the byte its audio carries; the other party's.
    fn media(self, bridge: &SipBridge) -> (&RtpEndpoint, u8, &RtpEndpoint, u8) {
        match self {
            Party::Caller => (&bridge.caller_rtp, 0x44, &bridge.callee_rtp, 0x55),
            Party::Callee => (&bridge.callee_rtp, 0x55, &bridge.caller_rtp, 0x44),
        }
    }

    /// Tandem's first SDP to the party: the answer of its 200 to the caller, the offer of its
    /// INVITE to the callee.
    fn first_sdp(self, bridge: &SipBridge) -> String {
        match self {
            Party::Caller => bridge.call.remote_sdp().unwrap(),
            Party::Callee => bridge.incoming.offer_sdp(),
        }
    }

    /// Sends the party's re-INVITE offering `sdp` and returns the final response.
    async fn reinvite(self, bridge: &SipBridge, sdp: &str) -> Response {
        match self {
            Party::Caller => bridge.call.reinvite(sdp).await,
            Party::Callee => bridge.incoming.reinvite(sdp).await,
        }
    }
}

/// The `o=` session id and version of an SDP body.
fn origin_of(sdp: &[u8]) -> (u64, u64) {
    let origin = media::sdp::Session::parse(sdp).unwrap().origin;
    (origin.session_id, origin.session_version)
}

/// The count of `byte` packets at `rtp` once it stands still: the relay applies a command
/// within a few ms, and packets already on their way may still land meanwhile.
async fn settled_count(rtp: &RtpEndpoint, byte: u8) -> usize {
    let mut count = count_pattern(rtp, byte);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count_pattern(rtp, byte);
        if now == count {
            break;
        }
        count = now;
    }
    count
}

/// One party holds the call by re-INVITE (sendonly) and then resumes it: it is answered
/// recvonly and sent no media meanwhile, while its own audio (music on hold) still reaches the
/// other party. Each answer continues the session of Tandem's first SDP to the party (RFC 3264
/// §8): the same `o=` session id, the version one up per change.
async fn hold_and_resume(holder: Party) {
    let hook = webhook().await;
    let bridge = sip_bridge(&hook, |callee| {
        format!("<Response><Dial><Sip>{callee}</Sip></Dial></Response>")
    })
    .await;
    let (holder_rtp, holder_byte, other_rtp, other_byte) = holder.media(&bridge);
    let (session_id, version) = origin_of(holder.first_sdp(&bridge).as_bytes());

    let response = holder
        .reinvite(
            &bridge,
            &format!("{}a=sendonly\r\n", holder_rtp.sdp_offer()),
        )
        .await;
    assert_eq!(response.status.code(), 200);
    let answer = String::from_utf8(response.body.to_vec()).unwrap();
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert_eq!(origin_of(&response.body), (session_id, version + 1));
    let held_at = settled_count(holder_rtp, other_byte).await;
    let other_heard = count_pattern(other_rtp, holder_byte);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        count_pattern(holder_rtp, other_byte),
        held_at,
        "media reached the party while it held the call"
    );
    assert!(
        count_pattern(other_rtp, holder_byte) >= other_heard + 10,
        "the holding party's audio must still reach the other"
    );

    // Resume: the other party's audio flows to the holder again.
    let response = holder.reinvite(&bridge, &holder_rtp.sdp_offer()).await;
    assert_eq!(response.status.code(), 200);
    let answer = String::from_utf8(response.body.to_vec()).unwrap();
    assert!(
        !answer.contains("a=recvonly") && !answer.contains("a=inactive"),
        "{answer}"
    );
    assert_eq!(origin_of(&response.body), (session_id, version + 2));
    wait_pattern(holder_rtp, other_byte, held_at + 10).await;

    assert_eq!(bridge.call.bye().await.status.code(), 200);
    bridge.incoming.wait_bye(WAIT).await;
}

#[tokio::test]
async fn a_caller_on_hold_is_sent_no_media_until_it_resumes() {
    hold_and_resume(Party::Caller).await;
}

#[tokio::test]
async fn a_sip_callee_on_hold_is_sent_no_media_until_it_resumes() {
    hold_and_resume(Party::Callee).await;
}

/// One party moves its media by re-INVITE to a new RTP endpoint on another port, as a carrier
/// re-anchoring media does (RFC 3264 §8.3.1), while its old endpoint goes on sending: audio
/// then flows both ways between the new endpoint and the other party, and neither reaches
/// nor leaves the old one any more. Tandem's answer continues the session of its first SDP to
/// the party (RFC 3264 §8: same `o=` session id), and a refresh with the same offer gets the
/// very same SDP.
async fn media_moves_to_a_new_port(mover: Party) {
    let hook = webhook().await;
    let bridge = sip_bridge(&hook, |callee| {
        format!("<Response><Dial><Sip>{callee}</Sip></Dial></Response>")
    })
    .await;
    let (old_rtp, old_byte, other_rtp, other_byte) = mover.media(&bridge);
    let (session_id, version) = origin_of(mover.first_sdp(&bridge).as_bytes());
    let moved = RtpEndpoint::bind().await;
    let response = mover.reinvite(&bridge, &moved.sdp_offer()).await;
    assert_eq!(response.status.code(), 200);
    // Our SDP to the caller is not changed by its move (same port, codec and direction), so it
    // keeps its version; the callee had our offer, so our answer is a new version.
    let changes = match mover {
        Party::Caller => 0,
        Party::Callee => 1,
    };
    assert_eq!(origin_of(&response.body), (session_id, version + changes));
    let (tandem, _) = parse_sdp_audio(std::str::from_utf8(&response.body).unwrap());
    moved.start_sending(tandem, 0, 0x66);
    wait_pattern(other_rtp, 0x66, 10).await;
    wait_pattern(&moved, other_byte, 10).await;

    let old_heard = settled_count(old_rtp, other_byte).await;
    let other_heard_old = settled_count(other_rtp, old_byte).await;
    let moved_heard = count_pattern(&moved, other_byte);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        count_pattern(old_rtp, other_byte),
        old_heard,
        "media reached the old endpoint after the move"
    );
    assert_eq!(
        count_pattern(other_rtp, old_byte),
        other_heard_old,
        "the old endpoint's audio still reached the other party"
    );
    assert!(count_pattern(&moved, other_byte) >= moved_heard + 10);

    let refreshed = mover.reinvite(&bridge, &moved.sdp_offer()).await;
    assert_eq!(refreshed.status.code(), 200);
    assert_eq!(refreshed.body, response.body);

    assert_eq!(bridge.call.bye().await.status.code(), 200);
    bridge.incoming.wait_bye(WAIT).await;
}

/// A party's re-INVITE without an offer (RFC 3264 §4, a late offer): Tandem's 2xx offers its
/// session with the party as it stands, and the answer in the party's ACK moves its media.
async fn a_late_offer_answered_in_the_ack_moves_the_party(mover: Party) {
    let hook = webhook().await;
    let bridge = sip_bridge(&hook, |callee| {
        format!("<Response><Dial><Sip>{callee}</Sip></Dial></Response>")
    })
    .await;
    let (old_rtp, _, other_rtp, other_byte) = mover.media(&bridge);
    let moved = RtpEndpoint::bind().await;
    let moved_addr = moved.addr();
    let answer = move |offer: &str| integration::rtp::sdp_answer_for(moved_addr, offer);
    let response = match mover {
        Party::Caller => bridge.call.reinvite_late_offer(answer).await,
        Party::Callee => bridge.incoming.reinvite_late_offer(answer).await,
    };
    assert_eq!(response.status.code(), 200);
    let offer = String::from_utf8(response.body.to_vec()).unwrap();
    assert_eq!(
        offer,
        mover.first_sdp(&bridge),
        "the session as it stands, unchanged and so with the same version"
    );
    let (tandem, _) = parse_sdp_audio(&offer);
    moved.start_sending(tandem, 0, 0x66);
    wait_pattern(other_rtp, 0x66, 10).await;
    wait_pattern(&moved, other_byte, 10).await;
    let old_heard = settled_count(old_rtp, other_byte).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count_pattern(old_rtp, other_byte),
        old_heard,
        "media reached the old address after the answer moved it"
    );
    assert_eq!(bridge.call.bye().await.status.code(), 200);
    bridge.incoming.wait_bye(WAIT).await;
}

#[tokio::test]
async fn the_answer_in_the_ack_to_a_callers_late_offer_re_invite_moves_the_caller() {
    a_late_offer_answered_in_the_ack_moves_the_party(Party::Caller).await;
}

#[tokio::test]
async fn the_answer_in_the_ack_to_a_callees_late_offer_re_invite_moves_the_callee() {
    a_late_offer_answered_in_the_ack_moves_the_party(Party::Callee).await;
}

/// Either party's re-INVITE: once its ACK arrives, Tandem's 200 is not retransmitted any more
/// (RFC 3261 §13.3.1.4; with T1 = 500 ms the first retransmission would come at 0.5 s).
#[tokio::test]
async fn the_ack_to_a_re_invite_stops_the_retransmissions_of_our_200() {
    for party in [Party::Caller, Party::Callee] {
        let hook = webhook().await;
        let bridge = sip_bridge(&hook, |callee| {
            format!("<Response><Dial><Sip>{callee}</Sip></Dial></Response>")
        })
        .await;
        let (rtp, ..) = party.media(&bridge);
        let response = party.reinvite(&bridge, &rtp.sdp_offer()).await;
        assert_eq!(response.status.code(), 200);
        let cseq = response.headers.cseq.seq;
        tokio::time::sleep(Duration::from_millis(1_800)).await;
        let phone = match party {
            Party::Caller => &bridge._phones.0,
            Party::Callee => &bridge._phones.1,
        };
        let oks = phone
            .trace()
            .iter()
            .filter(|traced| traced.direction == Direction::Received)
            .filter(|traced| {
                matches!(&traced.message, Message::Response(response)
                    if response.status.code() == 200
                        && response.headers.cseq.method == Method::Invite
                        && response.headers.cseq.seq == cseq)
            })
            .count();
        assert_eq!(oks, 1, "200s to the re-INVITE:\n{}", phone.trace_text());
        assert_eq!(bridge.call.bye().await.status.code(), 200);
        bridge.incoming.wait_bye(WAIT).await;
    }
}

#[tokio::test]
async fn a_caller_moving_its_media_to_another_port_is_followed() {
    media_moves_to_a_new_port(Party::Caller).await;
}

#[tokio::test]
async fn a_sip_callee_moving_its_media_to_another_port_is_followed() {
    media_moves_to_a_new_port(Party::Callee).await;
}

/// A caller that moves its media while a prompt plays to it: the rest of the prompt goes to
/// the new address, in the same stream, and nothing more to the old one.
#[tokio::test]
async fn a_prompt_playing_when_the_caller_moves_its_media_goes_on_at_the_new_address() {
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Play>/long.ulaw</Play><Hangup/></Response>"#,
    );
    // 4 s of a constant µ-law code: 200 packets of 20 ms.
    hook.respond_with("/long.ulaw", |_| {
        Reply::new(200, "audio/basic", vec![0x5a_u8; 32_000])
    });
    let tandem = tandem_for(&hook).await;
    let phone = Phone::bind().await;
    let old_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &old_rtp.sdp_offer())
        .await;
    call.wait_status(200, WAIT).await;
    let before = wait_pattern(&old_rtp, 0x5a, 5).await;
    let moved = RtpEndpoint::bind().await;
    let response = call.reinvite(&moved.sdp_offer()).await;
    assert_eq!(response.status.code(), 200);
    let after = wait_pattern(&moved, 0x5a, 10).await;
    assert_eq!(after[0].ssrc, before[0].ssrc, "the same stream goes on");
    let old_count = settled_count(&old_rtp, 0x5a).await;
    let moved_count = count_pattern(&moved, 0x5a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count_pattern(&old_rtp, 0x5a),
        old_count,
        "the prompt still reached the old address"
    );
    assert!(count_pattern(&moved, 0x5a) >= moved_count + 10);
    assert!(
        old_count < 190,
        "the prompt had mostly played before the move"
    );
    call.wait_bye(Duration::from_secs(10)).await;
}

/// A caller that moves its media while the dial still rings (re-INVITE after Tandem answered
/// it, before the callee did): the bridge started later relays to and from the new address,
/// never the old one.
#[tokio::test]
async fn a_caller_moving_its_media_while_the_dial_rings_is_bridged_at_its_new_address() {
    let hook = webhook().await;
    let (callee_rtp, callee) = sip_callee(Duration::from_millis(1500)).await;
    let callee_uri = callee.uri("bob");
    hook.respond(
        "/voice",
        format!("<Response><Dial><Sip>{callee_uri}</Sip></Dial></Response>"),
    );
    let tandem = tandem_for(&hook).await;
    let phone = Phone::bind().await;
    let old_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &old_rtp.sdp_offer())
        .await;
    // A plain <Dial> answers the caller at once; the callee still rings.
    call.wait_status(200, WAIT).await;
    let incoming = callee.wait_invite(WAIT).await;
    let moved = RtpEndpoint::bind().await;
    let response = call.reinvite(&moved.sdp_offer()).await;
    assert_eq!(response.status.code(), 200);
    let (tandem_for_caller, _) = parse_sdp_audio(std::str::from_utf8(&response.body).unwrap());
    incoming.wait_ack(WAIT).await;

    let (tandem_for_callee, _) = parse_sdp_audio(&incoming.offer_sdp());
    old_rtp.start_sending(tandem_for_caller, 0, 0x44);
    moved.start_sending(tandem_for_caller, 0, 0x66);
    callee_rtp.start_sending(tandem_for_callee, 0, 0x55);
    wait_pattern(&callee_rtp, 0x66, 10).await;
    wait_pattern(&moved, 0x55, 10).await;
    // Ringback may have reached the old address before the move; the callee's audio never.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count_pattern(&old_rtp, 0x55),
        0,
        "the callee was heard at the old address"
    );
    assert_eq!(
        count_pattern(&callee_rtp, 0x44),
        0,
        "the old address was heard by the callee"
    );

    assert_eq!(call.bye().await.status.code(), 200);
    incoming.wait_bye(WAIT).await;
}

/// One party switches from PCMU to PCMA by re-INVITE (RFC 3264 §8.3.2) while the other stays
/// on PCMU: each then hears the other transcoded. Before that, an offer of a codec Tandem
/// lacks gets 488 and changes nothing.
async fn codec_switches_to_pcma(switcher: Party) {
    let hook = webhook().await;
    let bridge = sip_bridge(&hook, |callee| {
        format!("<Response><Dial><Sip>{callee}</Sip></Dial></Response>")
    })
    .await;
    let (rtp, byte, other_rtp, other_byte) = switcher.media(&bridge);
    let g729_only = integration::rtp::sdp_offer_with(rtp.addr(), &[18]);
    let response = switcher.reinvite(&bridge, &g729_only).await;
    assert_eq!(response.status.code(), 488);
    let heard = count_pattern(other_rtp, byte);
    wait_pattern(other_rtp, byte, heard + 10).await;

    let pcma_only = integration::rtp::sdp_offer_with(rtp.addr(), &[8]);
    let response = switcher.reinvite(&bridge, &pcma_only).await;
    assert_eq!(response.status.code(), 200);
    let (tandem, payload_types) = parse_sdp_audio(std::str::from_utf8(&response.body).unwrap());
    assert_eq!(payload_types[0], 8);
    // A-law 0x2A is µ-law 0x00; µ-law 0x55 is A-law 0x73 (G.711; media::codec's tables).
    const ALAW: u8 = 0x2A;
    let as_ulaw = media::codec::alaw_to_ulaw_code(ALAW);
    let as_alaw = media::codec::ulaw_to_alaw_code(other_byte);
    rtp.start_sending(tandem, 8, ALAW);
    let transcoded = wait_pattern(other_rtp, as_ulaw, 10).await;
    assert!(transcoded.iter().all(|packet| packet.payload_type == 0));
    let transcoded = wait_pattern(rtp, as_alaw, 10).await;
    assert!(transcoded.iter().all(|packet| packet.payload_type == 8));

    assert_eq!(bridge.call.bye().await.status.code(), 200);
    bridge.incoming.wait_bye(WAIT).await;
}

#[tokio::test]
async fn a_caller_switching_to_pcma_is_transcoded_for_a_pcmu_callee() {
    codec_switches_to_pcma(Party::Caller).await;
}

#[tokio::test]
async fn a_sip_callee_switching_to_pcma_is_transcoded_for_a_pcmu_caller() {
    codec_switches_to_pcma(Party::Callee).await;
}

#[tokio::test]
async fn cancel_while_ringing_cancels_every_device() {
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Dial answerOnBridge="true"><Client>alice</Client><Client>bob</Client></Dial></Response>"#,
    );
    let tandem = tandem_for(&hook).await;
    let mut alice = client(&tandem, "alice").await;
    let mut bob = client(&tandem, "bob").await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    let to_alice = alice.wait_invite(WAIT).await;
    let to_bob = bob.wait_invite(WAIT).await;
    bob.ringing(&to_bob.callsid).await;
    call.wait_status(180, WAIT).await;
    assert_eq!(call.cancel().await.status.code(), 200);
    call.wait_status(487, WAIT).await;
    for (client, offered) in [(&mut alice, &to_alice), (&mut bob, &to_bob)] {
        let cancel = client.wait_type("cancel", WAIT).await;
        assert_eq!(cancel["callsid"], offered.callsid.as_str());
    }
    let sid = hook.requests("/voice")[0]
        .param("CallSid")
        .unwrap()
        .to_owned();
    wait_call_status(&tandem, &sid, "canceled").await;
    let callbacks = hook.wait_for("/status", 3, WAIT).await;
    let last = callbacks.last().unwrap();
    assert_eq!(last.param("StatusCallbackEvent"), Some("completed"));
    assert_eq!(last.param("CallStatus"), Some("canceled"));
}

#[tokio::test]
async fn each_client_is_offered_its_own_custom_parameters_in_document_order() {
    let hook = webhook().await;
    // Names out of alphabetical order: a sorted map anywhere on the way would show.
    hook.respond(
        "/voice",
        r#"<Response><Dial answerOnBridge="true">
             <Client>
               <Identity>alice</Identity>
               <Parameter name="ticket" value="42"/>
               <Parameter name="agent" value="A &amp; &quot;B&quot;"/>
             </Client>
             <Client>bob<Parameter name="queue" value="sales"/><Parameter name="empty" value=""/></Client>
             <Client>carol</Client>
           </Dial></Response>"#,
    );
    let tandem = tandem_for(&hook).await;
    let mut alice_phone = client(&tandem, "alice").await;
    let mut alice_laptop = client(&tandem, "alice").await;
    let mut bob = client(&tandem, "bob").await;
    let mut carol = client(&tandem, "carol").await;
    let caller_rtp = RtpEndpoint::bind().await;
    let phone = Phone::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;

    let pairs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    };
    let for_alice = pairs(&[("ticket", "42"), ("agent", r#"A & "B""#)]);
    let mut offers = Vec::new();
    for (client, expected) in [
        // Every device of an identity gets its noun's parameters.
        (&mut alice_phone, for_alice.clone()),
        (&mut alice_laptop, for_alice),
        (&mut bob, pairs(&[("queue", "sales"), ("empty", "")])),
        // A client without <Parameter>s gets an empty object (not a missing member).
        (&mut carol, Vec::new()),
    ] {
        let offered = client.wait_invite(WAIT).await;
        assert_eq!(
            offered.parameters,
            expected,
            "parameters offered to {}",
            client.connected()["identity"]
        );
        offers.push((client, offered.callsid));
    }

    assert_eq!(call.cancel().await.status.code(), 200);
    call.wait_status(487, WAIT).await;
    for (client, callsid) in offers {
        let cancel = client.wait_type("cancel", WAIT).await;
        assert_eq!(cancel["callsid"], callsid.as_str());
    }
}

#[tokio::test]
async fn the_demo_application_plays_its_welcome_then_rings_alice() {
    // No [[numbers]]: the bundled demo application answers every number.
    let tandem = Tandem::start(|_| {}).await;
    let mut alice = client(&tandem, "alice").await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550123", &caller_rtp.sdp_offer())
        .await;
    call.wait_status(200, WAIT).await;
    // The welcome prompt is 3.35 s of speech: a stream of 20 ms PCMU packets, not silence.
    let prompt = caller_rtp.wait_packets(25, WAIT).await;
    assert!(prompt
        .iter()
        .all(|p| p.payload_type == 0 && p.payload.len() == 160));
    assert!(prompt
        .iter()
        .any(|p| p.payload.iter().any(|&b| b != 0xff && b != 0x7f)));
    let offered = alice.wait_invite(Duration::from_secs(10)).await;
    assert_eq!(offered.from, "+15557654321");
    alice.reject(&offered.callsid).await;
    // Nobody else to ring and nothing after the dial: the call ends.
    call.wait_bye(WAIT).await;
}

#[tokio::test]
async fn a_dial_looping_back_into_tandem_ends_when_max_forwards_runs_out() {
    let hook = webhook().await;
    let tandem = tandem_for(&hook).await;
    let again = format!(
        "<Response><Dial action=\"/dialed\"><Sip>sip:again@{}</Sip></Dial></Response>",
        tandem.sip_udp()
    );
    hook.respond("/voice", again);
    hook.respond("/dialed", "<Response><Hangup/></Response>");
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call_with(
            tandem.sip_udp(),
            "+15550100",
            &caller_rtp.sdp_offer(),
            integration::phone::CallOptions {
                max_forwards: 3,
                ..Default::default()
            },
        )
        .await;
    call.wait_status(200, WAIT).await;
    // Max-Forwards 3, 2, 1, 0: four calls, the last of which dials nobody.
    let dialed = hook.wait_for("/dialed", 1, WAIT).await;
    assert_eq!(dialed[0].param("DialCallStatus"), Some("no-answer"));
    call.wait_bye(WAIT).await;
    assert_eq!(hook.requests("/voice").len(), 4);
}

#[tokio::test]
async fn dial_number_goes_out_through_the_trunk_and_a_busy_carrier_is_busy() {
    let carrier = Phone::listen(
        Answer::Reject {
            status: 486,
            after: Duration::from_millis(50),
        },
        |offer| offer.to_owned(),
    )
    .await;
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Dial action="/dialed" answerOnBridge="true" callerId="+15550000"><Number>+1 (555) 123-4567</Number></Dial></Response>"#,
    );
    hook.respond("/dialed", r#"<Response><Reject reason="busy"/></Response>"#);
    let numbers = format!(
        "[[numbers]]\nnumber = \"*\"\nvoice_url = \"{}\"\n",
        hook.url("/voice")
    );
    let outbound = sip::message::Uri::parse(&carrier.uri("gateway")).unwrap();
    let tandem = Tandem::start_with_toml(&numbers, move |config| {
        config.sip.trunks[0].outbound_uri = Some(outbound);
    })
    .await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = phone
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    let incoming = carrier.wait_invite(WAIT).await;
    // The number (separators removed) as the user part, the callerId in From.
    assert_eq!(incoming.invite().uri.user(), Some("+15551234567"));
    assert_eq!(incoming.invite().headers.from.uri.user(), Some("+15550000"));
    let dialed = hook.wait_for("/dialed", 1, WAIT).await;
    assert_eq!(dialed[0].param("DialCallStatus"), Some("busy"));
    assert_eq!(call.wait_final(WAIT).await.status.code(), 486);
}

/// Waits for a gauge of `/metrics` to read `value` (housekeeping sweeps every 5 s).
async fn wait_gauge(tandem: &Tandem, name: &str, value: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    loop {
        let current = tandem.metric(name).await;
        if current == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stays {current}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cancelled_and_unanswered_sip_legs_leave_no_dialog_behind() {
    let callee = Phone::listen(Answer::Never, |offer| offer.to_owned()).await;
    let hook = webhook().await;
    hook.respond(
        "/voice",
        format!(
            r#"<Response><Dial answerOnBridge="true"><Sip>{}</Sip></Dial></Response>"#,
            callee.uri("ring")
        ),
    );
    hook.respond(
        "/unanswered",
        format!(
            r#"<Response><Dial timeout="1"><Sip>{}</Sip></Dial></Response>"#,
            callee.uri("ring")
        ),
    );
    let numbers = format!(
        "[[numbers]]\nnumber = \"+1\"\nvoice_url = \"{}\"\n[[numbers]]\nnumber = \"+2\"\nvoice_url = \"{}\"\n",
        hook.url("/voice"),
        hook.url("/unanswered")
    );
    let tandem = Tandem::start_with_toml(&numbers, |_| {}).await;
    let phone = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    // The caller cancels while the dialled party rings.
    let cancelled = phone
        .call(tandem.sip_udp(), "+1", &caller_rtp.sdp_offer())
        .await;
    callee.wait_invite(WAIT).await;
    cancelled.wait_status(180, WAIT).await;
    cancelled.cancel().await;
    cancelled.wait_status(487, WAIT).await;
    // Nobody answers in time: Tandem cancels the leg and hangs up the caller.
    let unanswered = phone
        .call(tandem.sip_udp(), "+2", &caller_rtp.sdp_offer())
        .await;
    unanswered.wait_status(200, WAIT).await;
    unanswered.wait_bye(WAIT).await;
    wait_gauge(&tandem, "tandem_calls_active", 0).await;
    wait_gauge(&tandem, "tandem_sip_dialogs", 0).await;
    wait_gauge(&tandem, "tandem_media_rtp_port_pairs_leased", 0).await;
}
