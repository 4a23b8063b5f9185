//! One-shot sample-rate conversion of mono `f32` audio, built on `rubato`'s synchronous FFT
//! resampler: typically any common rate down to 8 kHz for telephony, and 8 kHz back up to
//! 16 or 48 kHz.
//!
//! The FFT resampler multiplies the spectrum by a windowed-sinc anti-aliasing filter, so a
//! tone above the output's Nyquist frequency is removed rather than folded back into the
//! speech band. Its filter delays the signal by a fixed number of output samples, which
//! [`resample`] removes, so the output starts at the same instant as the input and is
//! `ceil(len · to / from)` samples long.

use rubato::{FftFixedIn, Resampler};

use crate::AudioError;

/// The telephony sample rate of G.711 (RFC 3551 §4.5.14: PCMU/PCMA run at 8,000 Hz).
pub const TELEPHONY_RATE: u32 = 8_000;
/// The lowest sample rate [`resample`] accepts.
pub const MIN_SAMPLE_RATE: u32 = 4_000;
/// The highest sample rate [`resample`] accepts.
pub const MAX_SAMPLE_RATE: u32 = 384_000;

/// Resamples mono audio from `from` Hz to `to` Hz in one go.
///
/// The output is `ceil(samples.len() · to / from)` samples long and time-aligned with the
/// input (the filter's delay is compensated and its tail flushed). Equal rates return a copy.
/// Non-finite samples are treated as silence and magnitudes are clipped to
/// [`MAX_MAGNITUDE`], so no input can overflow the FFT.
/// Fails if either rate is outside [`MIN_SAMPLE_RATE`] ..= [`MAX_SAMPLE_RATE`].
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    check_rate(from)?;
    check_rate(to)?;
    let sanitized;
    // `abs() <= MAX_MAGNITUDE` is false for NaN too. The check is one vectorised pass; the
    // copy only happens for hostile or broken input.
    let samples = if samples.iter().all(|sample| sample.abs() <= MAX_MAGNITUDE) {
        samples
    } else {
        sanitized = sanitize(samples);
        &sanitized
    };
    if from == to {
        return Ok(samples.to_vec());
    }
    let expected = output_len(samples.len(), from, to);
    if expected == 0 {
        return Ok(Vec::new());
    }

    let chunk = chunk_size(from, to);
    let mut resampler = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 1, 1)?;
    // The filter is a windowed sinc centred on the middle of its window, so its output lags
    // by half the window, expressed in output samples.
    let delay = resampler.output_delay();
    let needed = delay + expected;

    let mut output = vec![0.0f32; needed + resampler.output_frames_max()];
    let mut produced = 0;
    let mut padded = vec![0.0f32; chunk];
    let mut consumed = 0;
    while produced < needed {
        let input: &[f32] = if consumed + chunk <= samples.len() {
            &samples[consumed..consumed + chunk]
        } else {
            // The last partial chunk and the flush that pushes the filter's tail out are
            // zero-padded.
            let tail = samples.get(consumed..).unwrap_or_default();
            padded[..tail.len()].copy_from_slice(tail);
            padded[tail.len()..].fill(0.0);
            &padded
        };
        let (_, written) =
            resampler.process_into_buffer(&[input], &mut [&mut output[produced..]], None)?;
        consumed += chunk;
        produced += written;
    }
    output.truncate(needed);
    output.drain(..delay);
    Ok(output)
}

/// The largest sample magnitude [`resample`] passes through (full scale is 1.0). Float WAV
/// files may hold anything, including NaN and infinities, which would make the FFT produce
/// NaN (and the FFT library refuse the result).
pub const MAX_MAGNITUDE: f32 = 1_000.0;

/// The number of output samples for `input_len` input samples: `ceil(input_len · to / from)`.
pub fn output_len(input_len: usize, from: u32, to: u32) -> usize {
    let numerator = input_len as u128 * u128::from(to);
    numerator.div_ceil(u128::from(from.max(1))) as usize
}

/// Checks that a sample rate is within [`MIN_SAMPLE_RATE`] ..= [`MAX_SAMPLE_RATE`].
pub(crate) fn check_rate(rate: u32) -> Result<(), AudioError> {
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        return Err(AudioError::UnsupportedSampleRate { rate });
    }
    Ok(())
}

/// The smallest filter, in input samples, worth using: long enough for a sharp transition
/// band at the common rates (1,024 taps at 44.1 kHz is about 23 ms).
const MIN_FILTER_INPUT: usize = 1_024;
/// The smallest filter, in output samples: keeps the transition band narrow (a few per cent
/// of the output rate) when decimating by a large factor.
const MIN_FILTER_OUTPUT: usize = 256;

/// The FFT chunk in input samples: a whole number of the smallest exact ratio block
/// (`from / gcd`), long enough on both sides, and an even number of blocks so that both FFT
/// sizes are even and the filter's centre falls on a whole output sample.
fn chunk_size(from: u32, to: u32) -> usize {
    let divisor = greatest_common_divisor(from, to);
    let block_in = (from / divisor) as usize;
    let block_out = (to / divisor) as usize;
    let blocks = MIN_FILTER_INPUT
        .div_ceil(block_in)
        .max(MIN_FILTER_OUTPUT.div_ceil(block_out));
    (blocks + blocks % 2) * block_in
}

/// A copy of `samples` with non-finite values replaced by 0 and the rest clipped to
/// ±[`MAX_MAGNITUDE`].
fn sanitize(samples: &[f32]) -> Vec<f32> {
    samples
        .iter()
        .map(|&sample| {
            if sample.is_finite() {
                sample.clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE)
            } else {
                0.0
            }
        })
        .collect()
}

fn greatest_common_divisor(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_length_is_the_ceiling_of_the_ratio() {
        assert_eq!(output_len(44_100, 44_100, 8_000), 8_000);
        assert_eq!(output_len(1, 44_100, 8_000), 1);
        assert_eq!(output_len(0, 44_100, 8_000), 0);
        assert_eq!(output_len(441, 44_100, 8_000), 80);
        assert_eq!(output_len(442, 44_100, 8_000), 81);
        for length in [0usize, 1, 2, 7, 100, 1_000, 4_321] {
            for (from, to) in [(44_100, 8_000), (8_000, 48_000), (11_025, 8_000)] {
                let out = resample(&vec![0.25; length], from, to).unwrap();
                assert_eq!(
                    out.len(),
                    output_len(length, from, to),
                    "{length} {from}->{to}"
                );
            }
        }
    }

    #[test]
    fn chunks_are_even_multiples_of_the_ratio_block() {
        for (from, to) in [
            (44_100, 8_000),
            (48_000, 8_000),
            (8_000, 16_000),
            (384_000, 4_000),
        ] {
            let chunk = chunk_size(from, to);
            let divisor = greatest_common_divisor(from, to) as usize;
            let block = from as usize / divisor;
            assert_eq!(chunk % (2 * block), 0, "{from}->{to}");
            assert!(chunk >= MIN_FILTER_INPUT);
            assert!(chunk / block * (to as usize / divisor) >= MIN_FILTER_OUTPUT);
        }
    }

    #[test]
    fn rates_out_of_range_are_refused() {
        assert!(matches!(
            resample(&[0.0; 10], 0, 8_000),
            Err(AudioError::UnsupportedSampleRate { rate: 0 })
        ));
        assert!(matches!(
            resample(&[0.0; 10], 8_000, 1_000_000),
            Err(AudioError::UnsupportedSampleRate { rate: 1_000_000 })
        ));
    }

    #[test]
    fn non_finite_and_huge_samples_do_not_break_the_fft() {
        let mut input = vec![0.5f32; 2_000];
        input[10] = f32::NAN;
        input[20] = f32::INFINITY;
        input[30] = f32::NEG_INFINITY;
        input[40] = 3.0e38;
        let output = resample(&input, 44_100, 8_000).unwrap();
        assert_eq!(output.len(), output_len(2_000, 44_100, 8_000));
        assert!(output.iter().all(|sample| sample.is_finite()));
    }

    #[test]
    fn equal_rates_copy() {
        assert_eq!(
            resample(&[0.5, -0.5], 8_000, 8_000).unwrap(),
            vec![0.5, -0.5]
        );
    }
}
