//! Fuzz target: the MP3 path of the media decoder (ID3v2 skipping, frame sync, Layer III
//! decoding). Any bytes must decode or fail with an `AudioError`, never panic, and stay within
//! the limits; whatever decodes must also go through the whole telephony pipeline.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use media::decode::decode;
use media::{to_telephony, Hint, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_input_bytes: 1 << 20,
        max_duration: Duration::from_secs(5),
        max_decode_time: Duration::from_secs(5),
        max_output_samples: 1 << 20,
    };
    let hint = Hint::content_type("audio/mpeg");
    if let Ok(decoded) = decode(data, &hint, &limits) {
        assert!(decoded.samples.len() <= limits.max_output_samples);
        assert!(decoded.duration() <= limits.max_duration + Duration::from_millis(1));
        assert_eq!(decoded.samples.len() % decoded.channels, 0);
        let telephony = to_telephony(data, &hint, &limits).expect("decoded once, transcodes");
        let expected = media::resample::output_len(decoded.frames(), decoded.sample_rate, 8_000);
        assert_eq!(telephony.ulaw.len(), expected);
    }
});
