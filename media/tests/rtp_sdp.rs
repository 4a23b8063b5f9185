//! SDP offer/answer (RFC 4566, RFC 3264) against offers shaped like those real user agents
//! send: Linphone, baresip, SIPp's stock scenario and a Twilio-like trunk, plus the failure
//! cases a caller turns into 488.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::net::SocketAddr;

use media::rtp::{Codec, PayloadType};
use media::sdp::{self, Direction, SdpError, Session, MAX_LINES};

const LINPHONE: &str = "v=0\r\n\
o=alice 3344 1122 IN IP4 192.168.1.23\r\n\
s=Talk\r\n\
c=IN IP4 192.168.1.23\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=fmtp:97 vbr=on\r\n\
a=rtpmap:98 speex/8000\r\n\
a=fmtp:98 vbr=on\r\n\
a=fmtp:18 annexb=yes\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n\
m=video 9078 RTP/AVP 96\r\n\
a=rtpmap:96 VP8/90000\r\n";

const BARESIP: &str = "v=0\n\
o=- 1874939925 2004213458 IN IP4 10.0.0.5\n\
s=-\n\
c=IN IP4 10.0.0.5\n\
t=0 0\n\
m=audio 10360 RTP/AVP 111 9 8 0 101\n\
b=AS:88\n\
a=rtpmap:111 opus/48000/2\n\
a=fmtp:111 stereo=1;sprop-stereo=1\n\
a=rtpmap:9 G722/8000\n\
a=rtpmap:8 PCMA/8000\n\
a=rtpmap:0 PCMU/8000\n\
a=rtpmap:101 telephone-event/8000\n\
a=fmtp:101 0-15\n\
a=sendrecv\n\
a=label:1\n\
a=rtcp-rsize\n\
a=ssrc:2904338011 cname:77cc0f4e-4a3c\n";

const SIPP_UAC: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.1.1\r\n\
s=-\r\n\
c=IN IP4 127.0.1.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const TWILIO_LIKE: &str = "v=0\r\n\
o=root 1565409467 1565409467 IN IP4 54.172.60.1\r\n\
s=Twilio Media Gateway\r\n\
c=IN IP4 54.172.60.1\r\n\
t=0 0\r\n\
m=audio 13462 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

fn local() -> SocketAddr {
    "203.0.113.7:20000".parse().unwrap()
}

const BOTH: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

#[test]
fn linphone_gets_pcmu_its_8khz_event_type_and_a_rejected_video_line() {
    let offer = Session::parse(LINPHONE.as_bytes()).unwrap();
    let answer = sdp::answer(&offer, local(), &BOTH, true).unwrap();
    let negotiated = answer.negotiated;
    assert_eq!(negotiated.codec, Codec::Pcmu);
    assert_eq!(negotiated.payload_type, PayloadType::PCMU);
    // Only the 8 kHz telephone-event matches our clock.
    assert_eq!(negotiated.telephone_event, Some(PayloadType(100)));
    assert_eq!(negotiated.remote, "192.168.1.23:7078".parse().unwrap());
    assert_eq!(negotiated.direction, Direction::SendRecv);
    let text = answer.session.to_string();
    assert!(text.contains("m=audio 20000 RTP/AVP 0 100\r\n"), "{text}");
    assert!(
        text.contains("a=rtpmap:100 telephone-event/8000\r\n"),
        "{text}"
    );
    assert!(text.contains("m=video 0 RTP/AVP 96\r\n"), "{text}");
    assert!(text.contains("c=IN IP4 203.0.113.7\r\n"), "{text}");
    // The answer is itself valid SDP with as many m= lines as the offer (RFC 3264 §6).
    let reparsed = Session::parse(text.as_bytes()).unwrap();
    assert_eq!(reparsed.media.len(), 2);
}

#[test]
fn baresip_with_lf_line_ends_gets_the_first_supported_codec_in_offer_order() {
    let offer = Session::parse(BARESIP.as_bytes()).unwrap();
    let answer = sdp::answer(&offer, local(), &BOTH, true).unwrap();
    assert_eq!(answer.negotiated.codec, Codec::Pcma);
    assert_eq!(answer.negotiated.payload_type, PayloadType::PCMA);
    assert_eq!(answer.negotiated.telephone_event, Some(PayloadType(101)));
    // Restricting what we support changes the pick.
    let pcmu_only = sdp::answer(&offer, local(), &[Codec::Pcmu], true).unwrap();
    assert_eq!(pcmu_only.negotiated.codec, Codec::Pcmu);
}

#[test]
fn sipp_offer_without_events_is_answered_without_events() {
    let offer = Session::parse(SIPP_UAC.as_bytes()).unwrap();
    let answer = sdp::answer(&offer, local(), &BOTH, true).unwrap();
    assert_eq!(answer.negotiated.codec, Codec::Pcmu);
    assert_eq!(answer.negotiated.telephone_event, None);
    assert_eq!(answer.negotiated.remote, "127.0.1.1:6000".parse().unwrap());
    let text = answer.session.to_string();
    assert!(text.contains("m=audio 20000 RTP/AVP 0\r\n"), "{text}");
    assert!(!text.contains("telephone-event"));
    assert_eq!(
        sdp::answer(&offer, local(), &[Codec::Pcma], true),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn twilio_like_trunk_keeps_ptime_and_pcma_preference() {
    let offer = Session::parse(TWILIO_LIKE.as_bytes()).unwrap();
    assert_eq!(offer.name, "Twilio Media Gateway");
    let answer = sdp::answer(&offer, local(), &BOTH, true).unwrap();
    assert_eq!(answer.negotiated.codec, Codec::Pcma);
    assert_eq!(answer.negotiated.ptime, Some(20));
    assert_eq!(answer.negotiated.telephone_event, Some(PayloadType(101)));
}

#[test]
fn hold_offers_get_mirrored_directions() {
    for (attribute, answered) in [
        ("sendonly", Direction::RecvOnly),
        ("recvonly", Direction::SendOnly),
        ("inactive", Direction::Inactive),
    ] {
        let text = format!("{SIPP_UAC}a={attribute}\r\n");
        let offer = Session::parse(text.as_bytes()).unwrap();
        let answer = sdp::answer(&offer, local(), &BOTH, true).unwrap();
        assert_eq!(answer.negotiated.direction, answered);
        assert!(answer
            .session
            .to_string()
            .contains(&format!("a={}\r\n", answered.attribute())));
    }
    // A session-level attribute applies when the media has none.
    let text = SIPP_UAC.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
    let offer = Session::parse(text.as_bytes()).unwrap();
    assert_eq!(
        sdp::answer(&offer, local(), &BOTH, true)
            .unwrap()
            .negotiated
            .direction,
        Direction::RecvOnly
    );
}

#[test]
fn unusable_offers_are_typed_errors() {
    let srtp_only = SIPP_UAC.replace("RTP/AVP", "RTP/SAVP");
    let offer = Session::parse(srtp_only.as_bytes()).unwrap();
    assert_eq!(
        sdp::answer(&offer, local(), &BOTH, true),
        Err(SdpError::NoAudioStream)
    );
    let g729 = SIPP_UAC.replace("RTP/AVP 0", "RTP/AVP 18");
    let offer = Session::parse(g729.as_bytes()).unwrap();
    assert_eq!(
        sdp::answer(&offer, local(), &BOTH, true),
        Err(SdpError::NoCommonCodec)
    );
    let no_connection = SIPP_UAC.replace("c=IN IP4 127.0.1.1\r\n", "");
    let offer = Session::parse(no_connection.as_bytes()).unwrap();
    assert_eq!(
        sdp::answer(&offer, local(), &BOTH, true),
        Err(SdpError::NoConnectionAddress)
    );
    // A PT 0 renamed by rtpmap to something else is not PCMU.
    let renamed = SIPP_UAC.replace("PCMU/8000", "L16/8000");
    let offer = Session::parse(renamed.as_bytes()).unwrap();
    assert_eq!(
        sdp::answer(&offer, local(), &BOTH, true),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn malformed_and_oversized_bodies_are_rejected() {
    assert_eq!(
        Session::parse(b"v=1\r\n"),
        Err(SdpError::UnsupportedVersion)
    );
    assert_eq!(Session::parse(b""), Err(SdpError::UnsupportedVersion));
    assert_eq!(
        Session::parse(b"v=0\r\ns=-\r\n"),
        Err(SdpError::MissingLine('o'))
    );
    assert!(matches!(
        Session::parse(b"v=0\r\nthis is not sdp\r\n"),
        Err(SdpError::MalformedLine { line: 2 })
    ));
    let fqdn = SIPP_UAC.replace("c=IN IP4 127.0.1.1", "c=IN IP4 media.example.com");
    assert!(matches!(
        Session::parse(fqdn.as_bytes()),
        Err(SdpError::UnsupportedAddress { line: 4 })
    ));
    let bad_port = SIPP_UAC.replace("m=audio 6000", "m=audio 99999");
    assert!(matches!(
        Session::parse(bad_port.as_bytes()),
        Err(SdpError::BadField { .. })
    ));
    let many_lines = format!("{SIPP_UAC}{}", "a=x\r\n".repeat(MAX_LINES));
    assert_eq!(
        Session::parse(many_lines.as_bytes()),
        Err(SdpError::TooMany { what: "lines" })
    );
    let many_media = format!("{SIPP_UAC}{}", "m=audio 0 RTP/AVP 0\r\n".repeat(8));
    assert_eq!(
        Session::parse(many_media.as_bytes()),
        Err(SdpError::TooMany { what: "media" })
    );
    let many_formats = format!("m=audio 1 RTP/AVP{}", " 0".repeat(40));
    let text = SIPP_UAC.replace("m=audio 6000 RTP/AVP 0", &many_formats);
    assert_eq!(
        Session::parse(text.as_bytes()),
        Err(SdpError::TooMany { what: "formats" })
    );
    assert!(matches!(
        Session::parse(&vec![b'a'; 20_000]),
        Err(SdpError::TooLong { .. })
    ));
    assert_eq!(Session::parse(&[b'v', b'=', 0xFF]), Err(SdpError::NotText));
}

#[test]
fn ipv6_offers_are_answered() {
    let text = SIPP_UAC.replace("IN IP4 127.0.1.1", "IN IP6 2001:db8::1");
    let offer = Session::parse(text.as_bytes()).unwrap();
    let local: SocketAddr = "[2001:db8::7]:20002".parse().unwrap();
    let answer = sdp::answer(&offer, local, &BOTH, true).unwrap();
    assert_eq!(
        answer.negotiated.remote,
        "[2001:db8::1]:6000".parse().unwrap()
    );
    assert!(answer
        .session
        .to_string()
        .contains("c=IN IP6 2001:db8::7\r\n"));
}

#[test]
fn our_offer_and_a_peer_answer_settle_the_stream() {
    let our_offer = sdp::offer(local(), &BOTH, 7);
    // The peer answers with the offer text shape of a SIPp UAS: PCMA only, events kept.
    let peer_answer = "v=0\r\n\
o=- 1 1 IN IP4 198.51.100.9\r\n\
s=-\r\n\
c=IN IP4 198.51.100.9\r\n\
t=0 0\r\n\
m=audio 4000 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=recvonly\r\n";
    let answer = Session::parse(peer_answer.as_bytes()).unwrap();
    let negotiated = sdp::accept_answer(&our_offer, &answer, &BOTH).unwrap();
    assert_eq!(negotiated.codec, Codec::Pcma);
    assert_eq!(negotiated.telephone_event, Some(PayloadType(101)));
    assert_eq!(negotiated.remote, "198.51.100.9:4000".parse().unwrap());
    assert_eq!(negotiated.direction, Direction::SendOnly);
    let rejected = peer_answer.replace("m=audio 4000", "m=audio 0");
    let answer = Session::parse(rejected.as_bytes()).unwrap();
    assert_eq!(
        sdp::accept_answer(&our_offer, &answer, &BOTH),
        Err(SdpError::AudioRejected)
    );
}

#[test]
fn rtcp_goes_to_the_a_rtcp_port_and_address_else_to_rtp_port_plus_one() {
    let local: SocketAddr = "10.0.0.1:30000".parse().unwrap();
    let offer = |extra: &str| audio_session("192.0.2.1", extra);
    let plain = sdp::answer(&offer(""), local, &[Codec::Pcmu], true).unwrap();
    assert_eq!(
        plain.negotiated.remote_rtcp,
        "192.0.2.1:4001".parse().unwrap()
    );
    let port_only = offer("a=rtcp:5005\r\n");
    let answer = sdp::answer(&port_only, local, &[Codec::Pcmu], true).unwrap();
    assert_eq!(
        answer.negotiated.remote_rtcp,
        "192.0.2.1:5005".parse().unwrap()
    );
    let with_address = offer("a=rtcp:5007 IN IP4 198.51.100.7\r\n");
    let answer = sdp::answer(&with_address, local, &[Codec::Pcmu], true).unwrap();
    assert_eq!(
        answer.negotiated.remote_rtcp,
        "198.51.100.7:5007".parse().unwrap()
    );
    // The attribute survives serialization, and a malformed one is ignored.
    let again = Session::parse(with_address.to_string().as_bytes()).unwrap();
    assert_eq!(again, with_address);
    let malformed = offer("a=rtcp:notaport\r\n");
    assert_eq!(malformed.media[0].rtcp, None);
    let answer = sdp::answer(&malformed, local, &[Codec::Pcmu], true).unwrap();
    assert_eq!(
        answer.negotiated.remote_rtcp,
        "192.0.2.1:4001".parse().unwrap()
    );
}

#[test]
fn rtcp_is_multiplexed_exactly_when_both_sides_say_so() {
    let local: SocketAddr = "10.0.0.1:30000".parse().unwrap();
    let offer = |extra: &str| audio_session("192.0.2.1", &format!("a=rtcp:5005\r\n{extra}"));
    let muxing = offer("a=rtcp-mux\r\n");
    assert!(muxing.offers_rtcp_mux());
    assert!(!offer("").offers_rtcp_mux());
    // RFC 5761 §5.1.1: agreeing repeats the attribute; RTCP then goes to the RTP address,
    // whatever a=rtcp says (it is only the fallback for an answerer that declines).
    let agreed = sdp::answer(&muxing, local, &[Codec::Pcmu], true).unwrap();
    assert!(agreed.negotiated.rtcp_mux);
    assert_eq!(agreed.negotiated.remote_rtcp, agreed.negotiated.remote);
    assert!(agreed.session.to_string().contains("a=rtcp-mux\r\n"));
    // A session already running with RTCP on its own port keeps it.
    let declined = sdp::answer(&muxing, local, &[Codec::Pcmu], false).unwrap();
    assert!(!declined.negotiated.rtcp_mux);
    assert_eq!(
        declined.negotiated.remote_rtcp,
        "192.0.2.1:5005".parse().unwrap()
    );
    assert!(!declined.session.to_string().contains("rtcp-mux"));
    let not_offered = sdp::answer(&offer(""), local, &[Codec::Pcmu], true).unwrap();
    assert!(!not_offered.negotiated.rtcp_mux);
    assert!(!not_offered.session.to_string().contains("rtcp-mux"));

    // Our offers propose it; the answer decides.
    let our_offer = sdp::offer(local, &BOTH, 7);
    assert!(our_offer.to_string().contains("a=rtcp-mux\r\n"));
    assert_eq!(
        Session::parse(our_offer.to_string().as_bytes()).unwrap(),
        our_offer
    );
    let peer_answer = |extra: &str| audio_session("198.51.100.9", extra);
    let accepted = sdp::accept_answer(&our_offer, &peer_answer("a=rtcp-mux\r\n"), &BOTH);
    let accepted = accepted.unwrap();
    assert!(accepted.rtcp_mux);
    assert_eq!(accepted.remote_rtcp, "198.51.100.9:4000".parse().unwrap());
    let refused = sdp::accept_answer(&our_offer, &peer_answer(""), &BOTH).unwrap();
    assert!(!refused.rtcp_mux);
    assert_eq!(refused.remote_rtcp, "198.51.100.9:4001".parse().unwrap());
    // An answer cannot agree to what was not offered.
    let plain_offer = offer("");
    let unasked = sdp::accept_answer(&plain_offer, &peer_answer("a=rtcp-mux\r\n"), &BOTH);
    assert!(!unasked.unwrap().rtcp_mux);
}

/// A session from `address` with one PCMU stream on port 4000 and `attributes` (whole
/// `a=` lines) after its `m=` line.
fn audio_session(address: &str, attributes: &str) -> Session {
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 0\r\n{attributes}"
    );
    Session::parse(body.as_bytes()).unwrap()
}
