//! Linear PCM sample conversions between the `f32` samples the decoders and the resampler
//! work in (nominal range −1.0 ..= 1.0) and the 16-bit integers G.711 encodes.

/// Converts `f32` samples to 16-bit samples, scaling by 32,768, rounding to nearest and
/// clipping anything outside the 16-bit range (NaN becomes 0); returns how many were
/// converted, which is `min(input.len(), output.len())`.
pub fn f32_to_i16(input: &[f32], output: &mut [i16]) -> usize {
    for (out, &sample) in output.iter_mut().zip(input) {
        *out = f32_to_i16_sample(sample);
    }
    input.len().min(output.len())
}

/// Converts 16-bit samples to `f32` samples in −1.0 ..< 1.0; returns how many were converted,
/// which is `min(input.len(), output.len())`.
pub fn i16_to_f32(input: &[i16], output: &mut [f32]) -> usize {
    for (out, &sample) in output.iter_mut().zip(input) {
        *out = f32::from(sample) / SCALE;
    }
    input.len().min(output.len())
}

/// Converts one `f32` sample to 16 bits, clipping. See [`f32_to_i16`].
#[inline]
pub fn f32_to_i16_sample(sample: f32) -> i16 {
    // `as` saturates at the integer bounds and maps NaN to 0, which is exactly the clipping
    // wanted here; the explicit clamp keeps +1.0 (32,768) on 32,767 for clarity.
    (sample * SCALE)
        .round()
        .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

const SCALE: f32 = 32_768.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_and_rounds() {
        let mut out = [0i16; 6];
        f32_to_i16(&[0.0, 1.0, -1.0, 2.5, -7.0, f32::NAN], &mut out);
        assert_eq!(out, [0, i16::MAX, i16::MIN, i16::MAX, i16::MIN, 0]);
        assert_eq!(f32_to_i16_sample(0.5), 16_384);
        assert_eq!(f32_to_i16_sample(-0.25), -8_192);
    }

    #[test]
    fn round_trip_is_exact_for_every_16_bit_sample() {
        let samples: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let mut floats = vec![0.0f32; samples.len()];
        let mut back = vec![0i16; samples.len()];
        i16_to_f32(&samples, &mut floats);
        f32_to_i16(&floats, &mut back);
        assert_eq!(samples, back);
    }
}
