//! A real SIP phone against a whole Tandem: baresip (see `integration::baresip`) registers as a
//! `[[sip_users]]` user with digest authentication, takes a trunk call that the webhook sends
//! to it with `<Dial><Sip>`, and calls out through Tandem, authenticating its INVITE.
//!
//! The phone is headless: it sends a 1 kHz tone and records what it decodes, so the tests
//! check the audio in both directions, not just the signalling.

use std::time::Duration;

use integration::baresip::{
    alaw_to_linear, tone_frequency, ulaw_to_linear, Account, Baresip, Traced, SINE_HZ,
};
use integration::phone::{uri_addr, Phone};
use integration::rtp::{parse_sdp_audio, RtpEndpoint, RtpPacket};
use integration::tandem::{Tandem, AUTH_TOKEN};
use integration::webhook::{Reply, WebhookServer};
use serde_json::Value;
use sip::auth::Algorithm;
use sip::message::{Message, Method};
use sip::registrar::Binding;
use tandem::config::AppConfig;

const WAIT: Duration = Duration::from_secs(5);
/// How long baresip may take to log a call's end after answering its BYE: it tears down its
/// audio threads first, which took over 5 s once while the whole suite ran on two cores.
const TEARDOWN_WAIT: Duration = Duration::from_secs(15);
const USER: &str = "1001";
const PASSWORD: &str = "baresip-secret-1001";
/// The µ-law byte the trunk's caller sends: a constant the phone decodes to -15484.
const CALLER_BYTE: u8 = 0x11;

/// The `[[sip_users]]` table, and `[[numbers]]` for every number if a webhook is given.
fn toml(hook: Option<&WebhookServer>) -> String {
    let mut text = format!("[[sip_users]]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n");
    if let Some(hook) = hook {
        text.push_str(&format!(
            "\n[[numbers]]\nnumber = \"*\"\nvoice_url = \"{}\"\nstatus_callback = \"{}\"\n",
            hook.url("/voice"),
            hook.url("/status"),
        ));
    }
    text
}

async fn webhook() -> WebhookServer {
    let hook = WebhookServer::start(AUTH_TOKEN).await;
    hook.respond_with("/status", |_| Reply::status(204));
    hook
}

/// A Tandem with `toml` appended to the test configuration, offering only MD5 digest: baresip
/// 1.0 (Debian 12, libre 1.x) gives up on a 401/407 ("Function not implemented") when any of
/// its challenges names an algorithm other than MD5, whatever the order, instead of answering
/// the one it supports (RFC 8760 §2.4). docs/sip.md advises restricting `digest_algorithms`
/// for such phones. `edit` may change the rest.
async fn start_tandem(toml: &str, edit: impl FnOnce(&mut AppConfig)) -> Tandem {
    Tandem::start_with_toml(toml, |config| {
        config.sip.digest_algorithms = vec![Algorithm::Md5];
        edit(config);
    })
    .await
}

fn account(tandem: &Tandem, password: &str) -> Account {
    Account {
        username: USER.to_owned(),
        password: password.to_owned(),
        registrar: tandem.sip_udp(),
    }
}

/// Waits until Tandem's location service has the phone's binding (the address its REGISTER
/// came from) and returns it.
async fn wait_registered(tandem: &Tandem, phone: &Baresip) -> Binding {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let bindings = tandem.endpoint().locate(USER);
        if let Some(binding) = bindings.iter().find(|b| b.source == phone.sip_addr()) {
            return binding.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{USER} not registered from {} within {WAIT:?} (bindings: {bindings:?}); baresip:\n{}",
            phone.sip_addr(),
            phone.log_text(200)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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

fn is_request(traced: &Traced, method: &Method) -> bool {
    matches!(&traced.message, Some(Message::Request(r)) if r.method == *method)
}

fn is_response(traced: &Traced, code: u16, method: &Method) -> bool {
    matches!(&traced.message, Some(Message::Response(r))
        if r.status.code() == code && r.headers.cseq.method == *method)
}

fn header<'a>(traced: &'a Traced, name: &str) -> Option<&'a str> {
    match traced.message.as_ref()? {
        Message::Request(r) => r.headers.get(name),
        Message::Response(r) => r.headers.get(name),
    }
}

/// The samples of `packets` (PCMU or PCMA), in arrival order (loopback does not reorder).
fn decode(packets: &[RtpPacket]) -> Vec<i16> {
    packets
        .iter()
        .flat_map(|p| {
            let decode = if p.payload_type == 8 {
                alaw_to_linear
            } else {
                ulaw_to_linear
            };
            p.payload.iter().map(move |&b| decode(b))
        })
        .collect()
}

#[tokio::test]
async fn baresip_registers_with_digest_authentication() {
    let tandem = start_tandem(&toml(None), |_| {}).await;
    let phone = Baresip::start(&account(&tandem, PASSWORD)).await;
    let binding = wait_registered(&tandem, &phone).await;
    // The binding is the phone's Contact, at its own address.
    assert_eq!(uri_addr(&binding.contact.uri), Some(phone.sip_addr()));

    // RFC 3261 §22.2: challenged first, then accepted with credentials for the user.
    let sent = phone.sent();
    let received = phone.received();
    let registers: Vec<&Traced> = sent
        .iter()
        .filter(|t| is_request(t, &Method::Register))
        .collect();
    assert!(header(registers[0], "Authorization").is_none());
    let challenge = received
        .iter()
        .find(|t| is_response(t, 401, &Method::Register))
        .unwrap_or_else(|| panic!("no 401 to REGISTER:\n{}", phone.log_text(100)));
    assert!(header(challenge, "WWW-Authenticate").is_some_and(|c| c.starts_with("Digest ")));
    let authorized = registers
        .iter()
        .find(|t| header(t, "Authorization").is_some())
        .unwrap_or_else(|| panic!("no REGISTER with credentials:\n{}", phone.log_text(100)));
    assert!(header(authorized, "Authorization")
        .is_some_and(|a| a.contains(&format!("username=\"{USER}\""))));
    phone
        .wait_message("200 OK to REGISTER", WAIT, |t| {
            t.to == phone.sip_addr() && is_response(t, 200, &Method::Register)
        })
        .await;
    phone.wait_line("registered successfully", WAIT).await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_nothing_is_registered() {
    let tandem = start_tandem(&toml(None), |_| {}).await;
    let phone = Baresip::start(&account(&tandem, "not-the-password")).await;
    phone
        .wait_message("403 to REGISTER", WAIT, |t| {
            t.to == phone.sip_addr() && is_response(t, 403, &Method::Register)
        })
        .await;
    assert!(tandem.endpoint().locate(USER).is_empty());
    assert!(!phone
        .received()
        .iter()
        .any(|t| is_response(t, 200, &Method::Register)));
}

#[tokio::test]
async fn a_trunk_call_dialled_to_the_registered_phone_is_answered_with_audio_both_ways() {
    let hook = webhook().await;
    let tandem = start_tandem(&toml(Some(&hook)), |_| {}).await;
    // A registered user is reached through the location service (docs/router.md).
    hook.respond(
        "/voice",
        format!(
            r#"<Response><Dial answerOnBridge="true"><Sip>sip:{USER}@{}</Sip></Dial></Response>"#,
            tandem.sip_udp()
        ),
    );
    let phone = Baresip::start(&account(&tandem, PASSWORD)).await;
    wait_registered(&tandem, &phone).await;

    let trunk = Phone::bind().await;
    let caller_rtp = RtpEndpoint::bind().await;
    let call = trunk
        .call(tandem.sip_udp(), "+15550100", &caller_rtp.sdp_offer())
        .await;
    // baresip answers by itself; with answerOnBridge the caller's 200 follows its answer.
    phone.wait_line("Call established", WAIT).await;
    call.wait_status(200, WAIT).await;
    let invite = phone
        .wait_message("Tandem's INVITE", WAIT, |t| {
            t.to == phone.sip_addr() && is_request(t, &Method::Invite)
        })
        .await;
    assert_eq!(invite.from, tandem.sip_udp());

    // The phone's tone reaches the caller from Tandem's port (no ringback: the caller was
    // answered only when the phone answered).
    let (tandem_for_caller, _) = parse_sdp_audio(&call.remote_sdp().expect("SDP in the 200"));
    caller_rtp.start_sending(tandem_for_caller, 0, CALLER_BYTE);
    let packets = caller_rtp.wait_packets(50, WAIT).await;
    assert!(packets.iter().all(|p| p.from == tandem_for_caller));
    assert!(packets
        .iter()
        .all(|p| p.payload_type == 0 || p.payload_type == 8));
    let samples = decode(&packets[10..]);
    let frequency = tone_frequency(&samples, 8000);
    assert!(
        (f64::from(SINE_HZ) * 0.9..f64::from(SINE_HZ) * 1.1).contains(&frequency),
        "the caller heard {frequency:.0} Hz, not baresip's {SINE_HZ} Hz tone"
    );

    // The caller's audio reaches the phone: it receives RTP from Tandem and decodes the
    // caller's constant.
    let invite_sdp = match &invite.message {
        Some(Message::Request(r)) => String::from_utf8_lossy(&r.body).into_owned(),
        _ => unreachable!("is_request checked it"),
    };
    let (tandem_for_phone, _) = parse_sdp_audio(&invite_sdp);
    phone
        .wait_line(
            &format!("incoming rtp for 'audio' established, receiving from {tandem_for_phone}"),
            WAIT,
        )
        .await;
    let expected = ulaw_to_linear(CALLER_BYTE);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let decoded = phone.decoded_audio().unwrap_or_default();
        // 25 packets' worth of the caller's constant.
        if decoded.iter().filter(|&&s| s == expected).count() >= 25 * 160 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "baresip decoded {} samples, {} of them the caller's {expected}",
            decoded.len(),
            decoded.iter().filter(|&&s| s == expected).count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Tandem relays: the call and its SIP leg are in progress.
    let sid = hook.requests("/voice")[0]
        .param("CallSid")
        .unwrap()
        .to_owned();
    let record = wait_call_status(&tandem, &sid, "in-progress").await;
    let legs = record["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 1, "{record}");
    assert_eq!(legs[0]["status"], "in-progress", "{record}");

    // The caller hangs up: Tandem's BYE ends the phone's call.
    assert_eq!(call.bye().await.status.code(), 200);
    phone
        .wait_message("Tandem's BYE", WAIT, |t| {
            t.from == tandem.sip_udp() && is_request(t, &Method::Bye)
        })
        .await;
    phone
        .wait_message("the phone's 200 to the BYE", WAIT, |t| {
            t.to == tandem.sip_udp() && is_response(t, 200, &Method::Bye)
        })
        .await;
    phone
        .wait_line(" terminated (duration", TEARDOWN_WAIT)
        .await;
    wait_call_status(&tandem, &sid, "completed").await;
}

#[tokio::test]
async fn baresip_calls_out_through_tandem_authenticating_its_invite() {
    let hook = webhook().await;
    hook.respond(
        "/voice",
        r#"<Response><Pause length="1"/><Hangup/></Response>"#,
    );
    // No trunk: every INVITE, from 127.0.0.1 too, must carry a user's credentials.
    let tandem = start_tandem(&toml(Some(&hook)), |config| {
        config.sip.trunks.clear();
    })
    .await;
    let mut phone = Baresip::start(&account(&tandem, PASSWORD)).await;
    wait_registered(&tandem, &phone).await;

    phone
        .dial(&format!("sip:+15550100@{}", tandem.sip_udp()))
        .await;
    let voice = hook.wait_for("/voice", 1, WAIT).await;
    let request = &voice[0];
    assert!(request.signature_valid, "bad X-Twilio-Signature");
    assert_eq!(request.param("From"), Some(USER));
    assert_eq!(request.param("To"), Some("+15550100"));
    assert_eq!(request.param("Direction"), Some("inbound"));
    let sid = request.param("CallSid").unwrap().to_owned();

    let established = phone.wait_line("Call established", WAIT).await;
    let bye = phone
        .wait_message("Tandem's BYE", WAIT, |t| {
            t.from == tandem.sip_udp() && is_request(t, &Method::Bye)
        })
        .await;
    let terminated = phone
        .wait_line(" terminated (duration", TEARDOWN_WAIT)
        .await;
    // The pause ran between the answer and the hang-up.
    let paused = bye.at.duration_since(established.at);
    assert!(paused >= Duration::from_millis(900), "paused {paused:?}");
    assert!(terminated.at >= bye.at);

    // RFC 3261 §22.3: the first INVITE was challenged with 407, the second carried
    // credentials for the user.
    let invites: Vec<Traced> = phone
        .sent()
        .into_iter()
        .filter(|t| is_request(t, &Method::Invite))
        .collect();
    assert!(header(&invites[0], "Proxy-Authorization").is_none());
    assert!(phone
        .received()
        .iter()
        .any(|t| is_response(t, 407, &Method::Invite)
            && header(t, "Proxy-Authenticate").is_some_and(|c| c.starts_with("Digest "))));
    assert!(invites.iter().any(|t| header(t, "Proxy-Authorization")
        .is_some_and(|a| a.contains(&format!("username=\"{USER}\"")))));

    let record = wait_call_status(&tandem, &sid, "completed").await;
    assert_eq!(record["from"], USER);
    assert_eq!(record["to"], "+15550100");
}

#[tokio::test]
async fn tandem_s_bye_carries_a_single_via() {
    let hook = webhook().await;
    hook.respond("/voice", "<Response><Hangup/></Response>");
    let tandem = start_tandem(&toml(Some(&hook)), |config| {
        config.sip.trunks.clear();
    })
    .await;
    let mut phone = Baresip::start(&account(&tandem, PASSWORD)).await;
    wait_registered(&tandem, &phone).await;
    phone
        .dial(&format!("sip:+15550100@{}", tandem.sip_udp()))
        .await;
    let bye = phone
        .wait_message("Tandem's BYE", WAIT, |t| {
            t.from == tandem.sip_udp() && is_request(t, &Method::Bye)
        })
        .await;
    let Some(Message::Request(bye)) = &bye.message else {
        unreachable!("is_request checked it");
    };
    // RFC 3261 §8.1.1.7: a UAC puts exactly one Via in a request it originates.
    assert_eq!(bye.headers.via.len(), 1, "{:?}", bye.headers.via);
}
