//! Hostile input: the RTP, RTCP, SDP and telephone-event parsers take arbitrary bytes from
//! the network and must return (a value or a typed error), never panic; what they accept
//! must be consistent with the input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::net::SocketAddr;

use media::dtmf::EventPayload;
use media::rtp::packet::{Packet, HEADER_LEN, MAX_PACKET_LEN};
use media::rtp::rtcp;
use media::rtp::Codec;
use media::sdp::{self, Session};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn rtp_parsing_never_panics_and_payloads_lie_inside_the_datagram(
        mut bytes in prop::collection::vec(any::<u8>(), 0..300),
        version_two in any::<bool>(),
    ) {
        if version_two && !bytes.is_empty() {
            bytes[0] = (bytes[0] & 0x3F) | 0x80;
        }
        if let Ok(packet) = Packet::parse(&bytes) {
            prop_assert!(bytes.len() >= HEADER_LEN && bytes.len() <= MAX_PACKET_LEN);
            prop_assert!(packet.payload.len() <= bytes.len() - HEADER_LEN);
        }
    }

    #[test]
    fn rtcp_parsing_never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if !bytes.is_empty() {
            bytes[0] = (bytes[0] & 0x3F) | 0x80;
        }
        let _ = rtcp::parse(&bytes);
    }

    #[test]
    fn telephone_event_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..8)) {
        prop_assert_eq!(EventPayload::decode(&bytes).is_ok(), bytes.len() >= 4);
    }

    /// SDP built from plausible lines in any order, with junk, never panics, and whatever is
    /// answered names a codec that was offered.
    #[test]
    fn sdp_parsing_and_answering_never_panic(
        lines in prop::collection::vec(
            prop_oneof![
                Just("o=- 1 1 IN IP4 10.0.0.1".to_owned()),
                Just("c=IN IP4 10.0.0.2".to_owned()),
                Just("c=IN IP6 ::1".to_owned()),
                Just("m=audio 4000 RTP/AVP 0 8 101".to_owned()),
                Just("m=audio 0 RTP/AVP 0".to_owned()),
                Just("m=video 5000 RTP/AVP 96".to_owned()),
                Just("a=rtpmap:101 telephone-event/8000".to_owned()),
                Just("a=rtpmap:8 PCMU/8000".to_owned()),
                Just("a=rtpmap:0 opus/48000/2".to_owned()),
                Just("a=sendonly".to_owned()),
                Just("a=ptime:".to_owned()),
                "[a-z]=[ -~]{0,40}",
                "[ -~]{0,20}",
            ],
            0..40,
        ),
    ) {
        let text = format!("v=0\r\n{}\r\n", lines.join("\r\n"));
        if let Ok(offer) = Session::parse(text.as_bytes()) {
            let local: SocketAddr = "192.0.2.1:20000".parse().unwrap();
            if let Ok(answer) = sdp::answer(&offer, local, &[Codec::Pcmu, Codec::Pcma], true) {
                let offered: Vec<_> = offer.media.iter().flat_map(|media| media.codecs()).collect();
                prop_assert!(offered.contains(&(answer.negotiated.codec, answer.negotiated.payload_type)));
                let text = answer.session.to_string();
                let reparsed = Session::parse(text.as_bytes()).unwrap();
                prop_assert_eq!(reparsed.media.len(), offer.media.len());
            }
        }
    }
}
