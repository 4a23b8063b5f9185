//! Fuzz target: one body through `media::sdp::Session::parse`. Whatever parses must serialize
//! (Display) to text that parses back to an equal session, and answering it must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::rtp::Codec;
use media::sdp::{self, Session};

fuzz_target!(|data: &[u8]| {
    let Ok(session) = Session::parse(data) else {
        return;
    };
    let text = session.to_string();
    let again = Session::parse(text.as_bytes()).expect("our own SDP must parse");
    assert_eq!(again, session, "round trip changed the session");
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 4000));
    let _ = sdp::answer(&session, local, &[Codec::Pcmu, Codec::Pcma]);
});
