//! Resampling quality: tones keep their shape and position (SNR against an ideal sine),
//! anything above the output's Nyquist frequency is removed, and lengths are exact.

mod support;

use media::resample::{output_len, resample, TELEPHONY_RATE};
use proptest::prelude::*;
use support::{fit_sine, rms, sine, snr_db};

/// The input rates the media layer is expected to meet in the wild.
const INPUT_RATES: [u32; 7] = [8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000];
/// Samples skipped at each end of a comparison: the zero padding before the first and after
/// the last input sample is not part of the signal.
const EDGE: usize = 200;

#[test]
fn a_1_khz_tone_at_every_input_rate_survives_conversion_to_8_khz() {
    for rate in INPUT_RATES {
        let input = sine(1_000.0, 0.5, rate, rate as usize);
        let output = resample(&input, rate, TELEPHONY_RATE).unwrap();
        assert_eq!(output.len(), TELEPHONY_RATE as usize, "{rate} Hz");
        // Compared with the ideal tone, sample for sample and at the same phase: this also
        // proves the filter delay is compensated exactly.
        let ideal = sine(1_000.0, 0.5, TELEPHONY_RATE, output.len());
        let range = EDGE..output.len() - EDGE;
        let snr = snr_db(&ideal[range.clone()], &output[range.clone()]);
        assert!(
            snr >= 40.0,
            "{rate} Hz -> 8 kHz: SNR {snr:.1} dB against the ideal tone"
        );
        // And against the best-fitting sine: no distortion or noise either.
        let fitted = fit_sine(&output[range.clone()], 1_000.0, TELEPHONY_RATE);
        let snr = snr_db(&fitted, &output[range]);
        assert!(
            snr >= 40.0,
            "{rate} Hz -> 8 kHz: SNR {snr:.1} dB against the fitted tone"
        );
    }
}

#[test]
fn telephony_rate_goes_back_up_to_16_and_48_khz() {
    let input = sine(1_000.0, 0.5, TELEPHONY_RATE, 8_000);
    for rate in [16_000, 48_000] {
        let output = resample(&input, TELEPHONY_RATE, rate).unwrap();
        assert_eq!(output.len(), rate as usize);
        let ideal = sine(1_000.0, 0.5, rate, output.len());
        let edge = EDGE * (rate / TELEPHONY_RATE) as usize;
        let range = edge..output.len() - edge;
        let snr = snr_db(&ideal[range.clone()], &output[range]);
        assert!(snr >= 40.0, "8 kHz -> {rate} Hz: SNR {snr:.1} dB");
    }
}

#[test]
fn a_5_khz_tone_from_44_1_khz_is_removed_not_aliased() {
    // 5 kHz is above 8 kHz's Nyquist frequency; without filtering it would fold to 3 kHz,
    // right in the speech band.
    let input = sine(5_000.0, 0.5, 44_100, 44_100);
    let output = resample(&input, 44_100, TELEPHONY_RATE).unwrap();
    let level_in = rms(&input);
    let level_out = rms(&output[EDGE..output.len() - EDGE]);
    let attenuation = 20.0 * (level_in / level_out.max(1e-12)).log10();
    assert!(
        attenuation >= 40.0,
        "5 kHz attenuated by only {attenuation:.1} dB"
    );
}

#[test]
fn a_tone_inside_the_band_keeps_its_level() {
    // The control for the aliasing test: a 3 kHz tone passes with its level intact.
    let input = sine(3_000.0, 0.5, 44_100, 44_100);
    let output = resample(&input, 44_100, TELEPHONY_RATE).unwrap();
    let ratio = rms(&output[EDGE..output.len() - EDGE]) / rms(&input);
    assert!(
        (ratio - 1.0).abs() < 0.05,
        "3 kHz level changed by a factor {ratio:.3}"
    );
}

#[test]
fn short_inputs_are_flushed_not_lost() {
    // A single chunk's worth or less still comes out whole: a 10 ms click at 48 kHz lands at
    // the same time at 8 kHz.
    let mut input = vec![0.0f32; 480];
    input[240] = 1.0;
    let output = resample(&input, 48_000, TELEPHONY_RATE).unwrap();
    assert_eq!(output.len(), 80);
    let peak = output
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(index, _)| index)
        .unwrap();
    assert_eq!(peak, 40, "the click moved");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_length_at_any_listed_rate_gives_the_exact_length_and_keeps_dc(
        length in 0usize..6_000,
        from_index in 0usize..INPUT_RATES.len(),
        up in any::<bool>(),
    ) {
        let (from, to) = if up {
            (TELEPHONY_RATE, [16_000, 48_000][from_index % 2])
        } else {
            (INPUT_RATES[from_index], TELEPHONY_RATE)
        };
        let input = vec![0.25f32; length];
        let output = resample(&input, from, to).unwrap();
        prop_assert_eq!(output.len(), output_len(length, from, to));
        // A constant stays constant away from the edges (where the zero padding is seen).
        let edge = 64 * (to as usize / 8_000).max(1);
        if output.len() > 2 * edge {
            for &sample in &output[edge..output.len() - edge] {
                prop_assert!((sample - 0.25).abs() < 0.01, "DC drifted to {}", sample);
            }
        }
    }
}
