//! G.711 companding: µ-law (PCMU) and A-law (PCMA), as ITU-T Recommendation G.711 defines
//! them, with fast slice conversions and direct µ-law ↔ A-law transcoding.
//!
//! RFC 3551 §4.5.14: PCMA and PCMU are "specified in ITU-T Recommendation G.711"; one octet
//! per 8 kHz sample, so this module is all an RTP stream needs to turn 16-bit linear PCM into
//! payload and back.
//!
//! Linear samples are 16-bit two's complement. G.711 itself works on a 14-bit (µ-law) or 13-bit
//! (A-law) uniform code, left-justified here: µ-law looks at the 14 most significant bits of
//! a sample and A-law at the 12 that matter (G.711 always quantises away the 13th). A negative
//! uniform code is turned into a magnitude by inverting the bits after the sign (one's
//! complement), which is how G.711 lays out its decision values symmetrically around zero and
//! how the ITU-T's own reference code (G.191) reads the input.
//!
//! Decoding uses 256-entry tables; encoding uses a 16,384-entry (µ-law) or 4,096-entry (A-law)
//! table indexed by exactly the input bits that G.711 looks at, so each sample costs one shift,
//! one mask and one load. All tables are built at compile time from the scalar functions
//! below, which follow the Recommendation step by step and serve as the reference in tests.
//!
//! µ-law has two codes for zero (0xFF, +0, and 0x7F, −0); both decode to 0 and 0 encodes to
//! 0xFF, so `encode(decode(0x7F)) == 0xFF`. Every other code round-trips exactly.

/// The largest magnitude µ-law decodes to: code 0x80 (and −32,124 for 0x00).
pub const ULAW_MAX: i16 = 32_124;
/// The largest magnitude A-law decodes to: code 0xAA (and −32,256 for 0x2A).
pub const ALAW_MAX: i16 = 32_256;

/// Encodes linear samples as µ-law octets; returns how many were converted, which is
/// `min(input.len(), output.len())`.
pub fn encode_ulaw(input: &[i16], output: &mut [u8]) -> usize {
    let table = &ULAW_ENCODE_TABLE;
    for (code, &sample) in output.iter_mut().zip(input) {
        *code = table[ulaw_table_index(sample)];
    }
    input.len().min(output.len())
}

/// Decodes µ-law octets to linear samples; returns how many were converted, which is
/// `min(input.len(), output.len())`.
pub fn decode_ulaw(input: &[u8], output: &mut [i16]) -> usize {
    let table = &ULAW_DECODE_TABLE;
    for (sample, &code) in output.iter_mut().zip(input) {
        *sample = table[usize::from(code)];
    }
    input.len().min(output.len())
}

/// Encodes linear samples as A-law octets; returns how many were converted, which is
/// `min(input.len(), output.len())`.
pub fn encode_alaw(input: &[i16], output: &mut [u8]) -> usize {
    let table = &ALAW_ENCODE_TABLE;
    for (code, &sample) in output.iter_mut().zip(input) {
        *code = table[alaw_table_index(sample)];
    }
    input.len().min(output.len())
}

/// Decodes A-law octets to linear samples; returns how many were converted, which is
/// `min(input.len(), output.len())`.
pub fn decode_alaw(input: &[u8], output: &mut [i16]) -> usize {
    let table = &ALAW_DECODE_TABLE;
    for (sample, &code) in output.iter_mut().zip(input) {
        *sample = table[usize::from(code)];
    }
    input.len().min(output.len())
}

/// Transcodes µ-law octets to A-law octets directly, one table look-up per octet; returns
/// how many were converted, which is `min(input.len(), output.len())`.
///
/// See [`ulaw_to_alaw_code`] for the rule.
pub fn ulaw_to_alaw(input: &[u8], output: &mut [u8]) -> usize {
    let table = &ULAW_TO_ALAW_TABLE;
    for (out, &code) in output.iter_mut().zip(input) {
        *out = table[usize::from(code)];
    }
    input.len().min(output.len())
}

/// Transcodes A-law octets to µ-law octets directly, one table look-up per octet; returns
/// how many were converted, which is `min(input.len(), output.len())`.
///
/// See [`alaw_to_ulaw_code`] for the rule.
pub fn alaw_to_ulaw(input: &[u8], output: &mut [u8]) -> usize {
    let table = &ALAW_TO_ULAW_TABLE;
    for (out, &code) in output.iter_mut().zip(input) {
        *out = table[usize::from(code)];
    }
    input.len().min(output.len())
}

/// Encodes one linear sample as a µ-law octet, step by step as G.711 describes it. The slice
/// functions give the same result through a table.
pub const fn encode_ulaw_sample(sample: i16) -> u8 {
    // G.711 µ-law works on a 14-bit uniform code: the top 14 bits of the 16-bit sample.
    let uniform = (sample >> 2) as i32;
    // The character signal's first bit is the polarity: 1 for positive (and +0).
    let (magnitude, polarity) = if uniform < 0 {
        (!uniform, 0x00)
    } else {
        (uniform, 0x80)
    };
    // Adding 33 moves µ-law's segment ends (31, 95, 223, ... 8159 in G.711 Table 2) onto
    // powers of two, so the segment number is the position of the leading one. Inputs past
    // the last decision value (8159) are clipped into the top interval.
    let mut biased = magnitude + ULAW_BIAS_14;
    if biased > 0x1FFF {
        biased = 0x1FFF;
    }
    // biased >= 33, so its leading one is at bit 5 or above: segment 0..=7.
    let segment = (31 - biased.leading_zeros()) as i32 - 5;
    let step = (biased >> (segment + 1)) & 0x0F;
    // G.711 µ-law transmits the segment and step bits inverted.
    (polarity | (0x7F ^ ((segment << 4) | step))) as u8
}

/// Decodes one µ-law octet to a linear sample: the centre of the octet's quantisation
/// interval (G.711 Table 2, "decoder output value"), scaled to 16 bits.
pub const fn decode_ulaw_sample(code: u8) -> i16 {
    let bits = !code;
    let segment = ((bits >> 4) & 0x07) as i32;
    let step = (bits & 0x0F) as i32;
    // In 14-bit units the interval centre is (2·step + 33)·2^segment − 33; ×4 for 16 bits.
    let magnitude = ((((step << 1) + ULAW_BIAS_14) << segment) - ULAW_BIAS_14) << 2;
    if code & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Encodes one linear sample as an A-law octet, step by step as G.711 describes it. The slice
/// functions give the same result through a table.
pub const fn encode_alaw_sample(sample: i16) -> u8 {
    // G.711 A-law works on a 13-bit uniform code and always quantises its least significant
    // bit away, so only the top 12 bits of the 16-bit sample matter.
    let uniform = (sample >> 4) as i32;
    let (magnitude, polarity) = if uniform < 0 {
        (!uniform, 0x00)
    } else {
        (uniform, 0x80)
    };
    // Segments 0 and 1 share one step size (G.711 Table 1 "segment 1" spans both); above
    // them each segment doubles the step. magnitude <= 2047, so segment <= 7.
    let code = if magnitude < 16 {
        magnitude
    } else {
        let segment = (31 - magnitude.leading_zeros()) as i32 - 3;
        let step = (magnitude >> (segment - 1)) & 0x0F;
        (segment << 4) | step
    };
    // G.711 A-law inverts the even bits of the character signal (XOR 0x55).
    ((polarity | code) ^ ALAW_EVEN_BITS) as u8
}

/// Decodes one A-law octet to a linear sample: the centre of the octet's quantisation
/// interval (G.711 Table 1, "decoder output value"), scaled to 16 bits.
pub const fn decode_alaw_sample(code: u8) -> i16 {
    let bits = (code as i32) ^ ALAW_EVEN_BITS;
    let segment = (bits >> 4) & 0x07;
    let step = bits & 0x0F;
    // In 16-bit units: segment 0 has intervals of 16 starting at 0, segment s >= 1 starts at
    // 256·2^(s−1) with intervals of 16·2^(s−1); +8 (scaled) is the half-interval.
    let magnitude = if segment == 0 {
        (step << 4) + 8
    } else {
        ((step << 4) + 0x108) << (segment - 1)
    };
    if bits & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Converts one µ-law octet to the A-law octet whose decision interval holds the µ-law
/// octet's decoder output value, keeping the sign (so µ-law's −0 becomes A-law's smallest
/// negative value).
///
/// G.711 Tables 3 and 4 give the conversion as tables; where its entries resolve near-ties
/// between two A-law intervals differently, this function keeps the rule above. Like the
/// Recommendation's tables, µ-law → A-law → µ-law returns the original octet except where
/// two µ-law octets share one A-law octet (the 16 smallest magnitudes per sign fold into 8).
pub const fn ulaw_to_alaw_code(code: u8) -> u8 {
    let magnitude = decode_ulaw_sample(code | 0x80);
    let alaw_magnitude = (encode_alaw_sample(magnitude) as i32 ^ ALAW_EVEN_BITS) & 0x7F;
    let polarity = (code & 0x80) as i32;
    ((polarity | alaw_magnitude) ^ ALAW_EVEN_BITS) as u8
}

/// Converts one A-law octet to the µ-law octet whose decision interval holds the A-law
/// octet's decoder output value, keeping the sign. See [`ulaw_to_alaw_code`].
pub const fn alaw_to_ulaw_code(code: u8) -> u8 {
    let positive = ((code as i32 ^ ALAW_EVEN_BITS) | 0x80) ^ ALAW_EVEN_BITS;
    let magnitude = decode_alaw_sample(positive as u8);
    let ulaw_magnitude = encode_ulaw_sample(magnitude) & 0x7F;
    let polarity = ((code as i32 ^ ALAW_EVEN_BITS) & 0x80) as u8;
    polarity | ulaw_magnitude
}

/// µ-law's bias in 14-bit units (0x84 = 132 in 16-bit units).
const ULAW_BIAS_14: i32 = 33;
/// The even bits that A-law inverts on the line.
const ALAW_EVEN_BITS: i32 = 0x55;

/// Index into [`ULAW_ENCODE_TABLE`]: the 14-bit uniform code, as an unsigned 14-bit number.
#[inline(always)]
fn ulaw_table_index(sample: i16) -> usize {
    usize::from((sample >> 2) as u16 & 0x3FFF)
}

/// Index into [`ALAW_ENCODE_TABLE`]: the top 12 bits of the sample, unsigned.
#[inline(always)]
fn alaw_table_index(sample: i16) -> usize {
    usize::from((sample >> 4) as u16 & 0x0FFF)
}

static ULAW_ENCODE_TABLE: [u8; 1 << 14] = {
    let mut table = [0u8; 1 << 14];
    let mut index = 0;
    while index < table.len() {
        // Any sample whose top 14 bits equal `index` encodes the same way.
        let sample = ((index as u16) << 2) as i16;
        table[index] = encode_ulaw_sample(sample);
        index += 1;
    }
    table
};

static ALAW_ENCODE_TABLE: [u8; 1 << 12] = {
    let mut table = [0u8; 1 << 12];
    let mut index = 0;
    while index < table.len() {
        let sample = ((index as u16) << 4) as i16;
        table[index] = encode_alaw_sample(sample);
        index += 1;
    }
    table
};

static ULAW_DECODE_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = decode_ulaw_sample(code as u8);
        code += 1;
    }
    table
};

static ALAW_DECODE_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = decode_alaw_sample(code as u8);
        code += 1;
    }
    table
};

static ULAW_TO_ALAW_TABLE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = ulaw_to_alaw_code(code as u8);
        code += 1;
    }
    table
};

static ALAW_TO_ULAW_TABLE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = alaw_to_ulaw_code(code as u8);
        code += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_encoders_agree_with_the_step_by_step_encoders_for_every_sample() {
        let samples: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let mut ulaw = vec![0u8; samples.len()];
        let mut alaw = vec![0u8; samples.len()];
        assert_eq!(encode_ulaw(&samples, &mut ulaw), samples.len());
        assert_eq!(encode_alaw(&samples, &mut alaw), samples.len());
        for (index, &sample) in samples.iter().enumerate() {
            assert_eq!(ulaw[index], encode_ulaw_sample(sample), "µ-law {sample}");
            assert_eq!(alaw[index], encode_alaw_sample(sample), "A-law {sample}");
        }
    }

    #[test]
    fn slice_functions_convert_the_shorter_length() {
        let mut out = [0u8; 2];
        assert_eq!(encode_ulaw(&[0, 1, 2, 3], &mut out), 2);
        let mut linear = [7i16; 4];
        assert_eq!(decode_alaw(&[0xD5], &mut linear), 1);
        assert_eq!(linear, [8, 7, 7, 7]);
    }
}
