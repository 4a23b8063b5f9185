//! The transcoding pipeline the prompt cache runs on a fetched file: decode → down-mix to
//! mono → resample to 8 kHz → clip to 16 bits → G.711 µ-law. The result is what an RTP
//! stream sends as PCMU (RFC 3551 §4.5.14), 160 octets per 20 ms packet.

use std::time::Duration;

use crate::decode::{decode_mono, Hint, Limits};
use crate::resample::{resample, TELEPHONY_RATE};
use crate::{codec, pcm, AudioError};

/// Audio ready for the telephone network: 8 kHz mono µ-law.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telephony {
    /// One µ-law octet per 8 kHz sample.
    pub ulaw: Vec<u8>,
    /// How long it plays: `ulaw.len()` / 8,000 s.
    pub duration: Duration,
}

/// Decodes `bytes` (format from `hint` and sniffing, see [`crate::decode::detect_format`])
/// within `limits`, and converts it to 8 kHz mono µ-law.
pub fn to_telephony(
    bytes: &[u8],
    hint: &Hint<'_>,
    limits: &Limits,
) -> Result<Telephony, AudioError> {
    let decoded = decode_mono(bytes, hint, limits)?;
    mono_to_telephony(&decoded.samples, decoded.sample_rate)
}

/// Converts mono `f32` samples at `sample_rate` Hz to 8 kHz µ-law.
pub fn mono_to_telephony(samples: &[f32], sample_rate: u32) -> Result<Telephony, AudioError> {
    let narrowband = resample(samples, sample_rate, TELEPHONY_RATE)?;
    let mut ulaw = vec![0u8; narrowband.len()];
    // Convert through a small stack buffer rather than a second full-length Vec<i16>.
    let mut linear = [0i16; 4_096];
    for (input, output) in narrowband
        .chunks(linear.len())
        .zip(ulaw.chunks_mut(linear.len()))
    {
        let linear = &mut linear[..input.len()];
        pcm::f32_to_i16(input, linear);
        codec::encode_ulaw(linear, output);
    }
    let duration = Duration::from_secs_f64(ulaw.len() as f64 / f64::from(TELEPHONY_RATE));
    Ok(Telephony { ulaw, duration })
}
