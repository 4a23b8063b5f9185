//! Fuzz target: one datagram through `sip::message::parse`. Whatever parses must serialize to
//! bytes that parse back to the same message; whatever fails must still build its reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::message::parse;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(message) => {
            let wire = message.to_bytes();
            let again = parse(&wire).expect("our own serialization must parse");
            assert_eq!(again, message, "round trip changed the message");
        }
        Err(error) => {
            let _ = error.reply();
        }
    }
});
