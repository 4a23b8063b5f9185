//! Fuzz target: a TCP byte stream through `sip::message::StreamFramer`, delivered in chunks whose
//! sizes come from the input itself, with every framed message handed to `parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::message::{parse, Framed, StreamFramer};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size (1..=256), so splits at every boundary get explored.
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first) + 1;
    let mut framer = StreamFramer::new(4096);
    for piece in stream.chunks(chunk) {
        framer.push(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(Framed::Message(bytes))) => {
                    assert!(bytes.len() <= 4096, "framer exceeded its bound");
                    let _ = parse(&bytes);
                }
                Ok(Some(Framed::Ping | Framed::Pong)) => {}
                Ok(None) => break,
                // The connection would be closed here.
                Err(_) => return,
            }
        }
        // After `Ok(None)` the framer holds at most one incomplete message.
        assert!(framer.buffered() <= 4096, "framer buffers without bound");
    }
});
