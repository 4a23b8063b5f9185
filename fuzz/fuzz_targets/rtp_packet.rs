//! Fuzz target: one datagram through `media::rtp::Packet::parse`, and its payload through the
//! RFC 4733 event decoder. Whatever parses must be written back by `packet::write` to bytes
//! that parse to the same header and payload; a decoded event must encode and decode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::dtmf::EventPayload;
use media::rtp::packet::{self, Packet};

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = Packet::parse(data) {
        let mut buffer = Vec::new();
        packet::write(&parsed.header, parsed.payload, &mut buffer);
        // The builder drops CSRCs, extension and padding, so its packet is never longer
        // than the input and always within the size bound.
        let again = Packet::parse(&buffer).expect("our own packet must parse");
        assert_eq!(again, parsed, "round trip changed the packet");
    }
    // The event decoder sees any payload, including the whole datagram.
    if let Ok(event) = EventPayload::decode(data) {
        let again = EventPayload::decode(&event.encode()).expect("four octets decode");
        assert_eq!(again, event, "event round trip changed the event");
    }
});
