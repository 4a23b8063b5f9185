//! Fuzz target: one datagram through `media::rtp::rtcp::parse`. Whatever parses must be written
//! back as SRs and RRs that parse to the same reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::rtp::rtcp::{self, Report};

fuzz_target!(|data: &[u8]| {
    let Ok(reports) = rtcp::parse(data) else {
        return;
    };
    let mut buffer = Vec::new();
    for report in &reports {
        match report {
            Report::Sender { ssrc, info, blocks } => {
                rtcp::write_sender_report(*ssrc, info, blocks, &mut buffer)
            }
            Report::Receiver { ssrc, blocks } => {
                rtcp::write_receiver_report(*ssrc, blocks, &mut buffer)
            }
        }
    }
    let again = rtcp::parse(&buffer).expect("our own reports must parse");
    assert_eq!(again, reports, "round trip changed the reports");
});
