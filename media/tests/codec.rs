//! G.711 against the Recommendation's tables (reference values), and its properties:
//! quantisation error within half a step, exact code round trips, monotonicity, and the
//! µ-law ↔ A-law transcoding rules.

use media::codec::{
    alaw_to_ulaw, alaw_to_ulaw_code, decode_alaw, decode_alaw_sample, decode_ulaw,
    decode_ulaw_sample, encode_alaw, encode_alaw_sample, encode_ulaw, encode_ulaw_sample,
    ulaw_to_alaw, ulaw_to_alaw_code, ALAW_MAX, ULAW_MAX,
};
use proptest::prelude::*;

/// G.711 Table 2 (µ-law), positive half, in its 14-bit units: for each segment, the code of
/// its first interval, the decoder output value of that interval, and the decision value that
/// ends the segment.
const ULAW_SEGMENTS: [(u8, i32, i32); 8] = [
    (0xFF, 0, 31),
    (0xEF, 33, 95),
    (0xDF, 99, 223),
    (0xCF, 231, 479),
    (0xBF, 495, 991),
    (0xAF, 1023, 2015),
    (0x9F, 2079, 4063),
    (0x8F, 4191, 8159),
];

/// G.711 Table 1 (A-law), positive half, in its 13-bit units (full scale 4096): for each
/// exponent, the transmitted code of its first interval (even bits already inverted), that
/// interval's decoder output value, and the decision value where the exponent ends.
const ALAW_SEGMENTS: [(u8, i32, i32); 8] = [
    (0xD5, 1, 32),
    (0xC5, 33, 64),
    (0xF5, 66, 128),
    (0xE5, 132, 256),
    (0x95, 264, 512),
    (0x85, 528, 1024),
    (0xB5, 1056, 2048),
    (0xA5, 2112, 4096),
];

#[test]
fn ulaw_reference_values() {
    assert_eq!(decode_ulaw_sample(0xFF), 0);
    assert_eq!(decode_ulaw_sample(0x7F), 0);
    assert_eq!(decode_ulaw_sample(0x80), 32_124);
    assert_eq!(decode_ulaw_sample(0x00), -32_124);
    assert_eq!(ULAW_MAX, 32_124);
    assert_eq!(encode_ulaw_sample(0), 0xFF);
    assert_eq!(encode_ulaw_sample(32_124), 0x80);
    assert_eq!(encode_ulaw_sample(-32_124), 0x00);
    assert_eq!(encode_ulaw_sample(i16::MAX), 0x80);
    assert_eq!(encode_ulaw_sample(i16::MIN), 0x00);
    for (code, output, end) in ULAW_SEGMENTS {
        // 14-bit units are 4 16-bit units.
        assert_eq!(
            i32::from(decode_ulaw_sample(code)),
            output * 4,
            "{code:#04x}"
        );
        assert_eq!(i32::from(decode_ulaw_sample(code & 0x7F)), -output * 4);
        assert_eq!(encode_ulaw_sample((output * 4) as i16), code);
        // The decision value ends the segment: the value below it is in the segment's last
        // interval (code − 15), the value at it starts the next segment (code − 16).
        if end < 8159 {
            assert_eq!(
                encode_ulaw_sample(((end - 1) * 4) as i16),
                code - 15,
                "end {end}"
            );
            assert_eq!(encode_ulaw_sample((end * 4) as i16), code - 16, "end {end}");
        }
    }
}

#[test]
fn alaw_reference_values() {
    assert_eq!(decode_alaw_sample(0xD5), 8);
    assert_eq!(decode_alaw_sample(0x55), -8);
    assert_eq!(decode_alaw_sample(0xAA), 32_256);
    assert_eq!(decode_alaw_sample(0x2A), -32_256);
    assert_eq!(ALAW_MAX, 32_256);
    assert_eq!(encode_alaw_sample(0), 0xD5);
    assert_eq!(encode_alaw_sample(-1), 0x55);
    assert_eq!(encode_alaw_sample(i16::MAX), 0xAA);
    assert_eq!(encode_alaw_sample(i16::MIN), 0x2A);
    // The 13-bit value −21 is, with the bits after the sign inverted, 1 0000000 1010 0: first
    // segment, step 1010, so 0000 1010 before even-bit inversion.
    assert_eq!(encode_alaw_sample(-21 * 8), 0x0A ^ 0x55);
    assert_eq!(decode_alaw_sample(0x0A ^ 0x55), -21 * 8);
    for (code, output, end) in ALAW_SEGMENTS {
        // 13-bit units are 8 16-bit units.
        assert_eq!(
            i32::from(decode_alaw_sample(code)),
            output * 8,
            "{code:#04x}"
        );
        assert_eq!(i32::from(decode_alaw_sample(code ^ 0x80)), -output * 8);
        assert_eq!(encode_alaw_sample((output * 8) as i16), code);
        if end < 4096 {
            let last = ((code ^ 0x55) + 15) ^ 0x55;
            let next = ((code ^ 0x55) + 16) ^ 0x55;
            assert_eq!(
                encode_alaw_sample(((end - 1) * 8) as i16),
                last,
                "end {end}"
            );
            assert_eq!(encode_alaw_sample((end * 8) as i16), next, "end {end}");
        }
    }
}

/// µ-law: the step of the interval a code stands for, in 16-bit units (segment s: 8·2^s).
fn ulaw_step(code: u8) -> i32 {
    8 << ((!code >> 4) & 0x07)
}

/// A-law: the step of the interval a code stands for, in 16-bit units.
fn alaw_step(code: u8) -> i32 {
    let exponent = ((code ^ 0x55) >> 4) & 0x07;
    16 << exponent.saturating_sub(1)
}

#[test]
fn quantisation_error_is_at_most_half_a_step_for_every_sample() {
    for sample in i16::MIN..=i16::MAX {
        let x = i32::from(sample);

        let code = encode_ulaw_sample(sample);
        let error = (i32::from(decode_ulaw_sample(code)) - x).abs();
        // µ-law keeps 14 bits: the 2 dropped bits add up to 4 for negative inputs, whose
        // magnitude is taken by inverting bits (one's complement).
        let bound = ulaw_step(code) / 2 + 4;
        if code & 0x7F != 0x00 {
            assert!(error <= bound, "µ-law {sample}: error {error}");
        } else {
            // The top interval also takes everything beyond the last decision value (8159
            // in 14-bit units): G.711 clips there.
            assert!(
                x.abs() >= i32::from(ULAW_MAX) - bound,
                "µ-law clipped {sample}"
            );
        }

        let code = encode_alaw_sample(sample);
        let error = (i32::from(decode_alaw_sample(code)) - x).abs();
        assert!(
            error <= alaw_step(code) / 2,
            "A-law {sample}: error {error}"
        );
    }
}

#[test]
fn every_code_round_trips_except_ulaw_negative_zero() {
    for code in 0..=255u8 {
        let expected = if code == 0x7F { 0xFF } else { code };
        assert_eq!(
            encode_ulaw_sample(decode_ulaw_sample(code)),
            expected,
            "µ-law {code:#04x}"
        );
        assert_eq!(
            encode_alaw_sample(decode_alaw_sample(code)),
            code,
            "A-law {code:#04x}"
        );
    }
}

#[test]
fn encoding_then_decoding_is_monotonic() {
    let mut previous = (i16::MIN, i16::MIN);
    for sample in i16::MIN..=i16::MAX {
        let ulaw = decode_ulaw_sample(encode_ulaw_sample(sample));
        let alaw = decode_alaw_sample(encode_alaw_sample(sample));
        assert!(ulaw >= previous.0, "µ-law not monotonic at {sample}");
        assert!(alaw >= previous.1, "A-law not monotonic at {sample}");
        previous = (ulaw, alaw);
    }
}

#[test]
fn decoding_is_odd_symmetric() {
    for code in 0..=127u8 {
        assert_eq!(decode_ulaw_sample(code), -decode_ulaw_sample(code | 0x80));
        assert_eq!(
            decode_alaw_sample(code ^ 0x55),
            -decode_alaw_sample((code | 0x80) ^ 0x55)
        );
    }
}

#[test]
fn transcoding_keeps_sign_and_lands_within_half_a_step() {
    for code in 0..=255u8 {
        let ulaw_value = i32::from(decode_ulaw_sample(code));
        let alaw = ulaw_to_alaw_code(code);
        let alaw_value = i32::from(decode_alaw_sample(alaw));
        assert_eq!(
            code & 0x80 != 0,
            alaw_value > 0,
            "sign of µ-law {code:#04x}"
        );
        // µ-law reaches 32,124 and A-law's last interval starts at 31,744: still half a step.
        assert!(
            (alaw_value - ulaw_value).abs() <= alaw_step(alaw) / 2,
            "µ-law {code:#04x} ({ulaw_value}) -> A-law {alaw:#04x} ({alaw_value})"
        );

        let alaw_value = i32::from(decode_alaw_sample(code));
        let ulaw = alaw_to_ulaw_code(code);
        let ulaw_value = i32::from(decode_ulaw_sample(ulaw));
        assert_eq!(
            alaw_value > 0,
            ulaw & 0x80 != 0,
            "sign of A-law {code:#04x}"
        );
        let clipped = ulaw & 0x7F == 0x00;
        if !clipped {
            assert!(
                (alaw_value - ulaw_value).abs() <= ulaw_step(ulaw) / 2 + 4,
                "A-law {code:#04x} ({alaw_value}) -> µ-law {ulaw:#04x} ({ulaw_value})"
            );
        }
    }
}

#[test]
fn transcoding_round_trips_except_where_the_laws_fold_codes() {
    // µ-law has twice A-law's resolution near zero: its 16 smallest magnitudes per sign fold
    // into A-law's 8, so every other one cannot come back. Everything else round-trips.
    let folded: Vec<u8> = (0..=255u8)
        .filter(|&code| alaw_to_ulaw_code(ulaw_to_alaw_code(code)) != code)
        .collect();
    assert_eq!(folded.len(), 16, "{folded:02x?}");
    for code in folded {
        // Magnitudes 0..=15 are sent inverted as 0x7F..=0x70 (and 0xFF..=0xF0).
        assert_eq!(
            code & 0x70,
            0x70,
            "µ-law {code:#04x} lost outside the first segment"
        );
        assert_eq!(ulaw_to_alaw_code(code), ulaw_to_alaw_code(code ^ 0x01));
    }

    // A-law is finer than µ-law in its second and third segments and at a few segment edges:
    // there two A-law codes share one µ-law code.
    let alaw_losses: Vec<u8> = (0..=255u8)
        .filter(|&code| ulaw_to_alaw_code(alaw_to_ulaw_code(code)) != code)
        .collect();
    assert_eq!(alaw_losses.len(), 16, "{alaw_losses:02x?}");
    for code in alaw_losses {
        let ulaw = alaw_to_ulaw_code(code);
        let sharers = (0..=255u8)
            .filter(|&other| alaw_to_ulaw_code(other) == ulaw)
            .count();
        assert!(
            sharers >= 2,
            "A-law {code:#04x} lost without sharing µ-law {ulaw:#04x}"
        );
    }
}

#[test]
fn slice_transcoders_agree_with_the_per_code_functions() {
    let codes: Vec<u8> = (0..=255).collect();
    let mut alaw = [0u8; 256];
    let mut ulaw = [0u8; 256];
    assert_eq!(ulaw_to_alaw(&codes, &mut alaw), 256);
    assert_eq!(alaw_to_ulaw(&codes, &mut ulaw), 256);
    for code in 0..=255u8 {
        assert_eq!(alaw[usize::from(code)], ulaw_to_alaw_code(code));
        assert_eq!(ulaw[usize::from(code)], alaw_to_ulaw_code(code));
    }
}

proptest! {
    #[test]
    fn slice_codecs_agree_with_the_per_sample_functions(samples in prop::collection::vec(any::<i16>(), 0..2_000)) {
        let mut ulaw = vec![0u8; samples.len()];
        let mut alaw = vec![0u8; samples.len()];
        prop_assert_eq!(encode_ulaw(&samples, &mut ulaw), samples.len());
        prop_assert_eq!(encode_alaw(&samples, &mut alaw), samples.len());
        let mut from_ulaw = vec![0i16; samples.len()];
        let mut from_alaw = vec![0i16; samples.len()];
        decode_ulaw(&ulaw, &mut from_ulaw);
        decode_alaw(&alaw, &mut from_alaw);
        for (index, &sample) in samples.iter().enumerate() {
            prop_assert_eq!(ulaw[index], encode_ulaw_sample(sample));
            prop_assert_eq!(alaw[index], encode_alaw_sample(sample));
            prop_assert_eq!(from_ulaw[index], decode_ulaw_sample(ulaw[index]));
            prop_assert_eq!(from_alaw[index], decode_alaw_sample(alaw[index]));
        }
    }

    #[test]
    fn larger_inputs_never_decode_smaller(a in any::<i16>(), b in any::<i16>()) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(decode_ulaw_sample(encode_ulaw_sample(low)) <= decode_ulaw_sample(encode_ulaw_sample(high)));
        prop_assert!(decode_alaw_sample(encode_alaw_sample(low)) <= decode_alaw_sample(encode_alaw_sample(high)));
    }

    #[test]
    fn a_decoded_value_re_encodes_to_its_code(code in any::<u8>()) {
        prop_assume!(code != 0x7F);
        prop_assert_eq!(encode_ulaw_sample(decode_ulaw_sample(code)), code);
        prop_assert_eq!(encode_alaw_sample(decode_alaw_sample(code)), code);
    }
}
