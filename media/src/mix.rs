//! Channel down-mix: interleaved multi-channel audio to mono by averaging each frame.
//!
//! An average (not a sum) keeps a full-scale mono source that was duplicated into every
//! channel at full scale, and can never clip. Channel layouts (LFE, surround weights) are
//! deliberately ignored: prompts are speech, and telephony is mono.

use crate::AudioError;

/// The most channels [`downmix_to_mono`] accepts.
pub const MAX_CHANNELS: usize = 32;

/// Averages each frame of `channels` interleaved samples into one mono sample.
///
/// Fails if `channels` is 0 or above [`MAX_CHANNELS`], or if `interleaved` is not a whole
/// number of frames.
pub fn downmix_to_mono(interleaved: &[f32], channels: usize) -> Result<Vec<f32>, AudioError> {
    let mut mono = Vec::new();
    downmix_into(interleaved, channels, &mut mono)?;
    Ok(mono)
}

/// Like [`downmix_to_mono`], but appends the mono samples to `mono` (so a decoder can mix
/// packet by packet without an intermediate buffer).
pub fn downmix_into(
    interleaved: &[f32],
    channels: usize,
    mono: &mut Vec<f32>,
) -> Result<(), AudioError> {
    check_channels(channels)?;
    if !interleaved.chunks_exact(channels).remainder().is_empty() {
        return Err(AudioError::PartialFrame {
            samples: interleaved.len(),
            channels,
        });
    }
    mono.reserve(interleaved.len() / channels);
    match channels {
        1 => mono.extend_from_slice(interleaved),
        // The common stereo case gets its own loop so the compiler can vectorise it.
        2 => mono.extend(
            interleaved
                .chunks_exact(2)
                .map(|frame| (frame[0] + frame[1]) * 0.5),
        ),
        _ => {
            let scale = 1.0 / channels as f32;
            mono.extend(
                interleaved
                    .chunks_exact(channels)
                    .map(|frame| frame.iter().sum::<f32>() * scale),
            );
        }
    }
    Ok(())
}

/// Checks that a channel count is one this crate handles: 1 ..= [`MAX_CHANNELS`].
pub(crate) fn check_channels(channels: usize) -> Result<(), AudioError> {
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(AudioError::UnsupportedChannelCount { channels });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_each_frame() {
        let stereo = [1.0, 0.0, 0.5, 0.5, -1.0, 1.0];
        assert_eq!(downmix_to_mono(&stereo, 2).unwrap(), vec![0.5, 0.5, 0.0]);
        let three = [0.3, 0.6, 0.9, -0.3, -0.6, -0.9];
        let mono = downmix_to_mono(&three, 3).unwrap();
        assert!((mono[0] - 0.6).abs() < 1e-6 && (mono[1] + 0.6).abs() < 1e-6);
        assert_eq!(downmix_to_mono(&[0.25, -0.5], 1).unwrap(), vec![0.25, -0.5]);
    }

    #[test]
    fn thirty_two_channels_is_the_limit() {
        let frame: Vec<f32> = (0..32).map(|channel| channel as f32).collect();
        let mono = downmix_to_mono(&frame, 32).unwrap();
        assert_eq!(mono, vec![15.5]);
        assert!(matches!(
            downmix_to_mono(&[0.0; 33], 33),
            Err(AudioError::UnsupportedChannelCount { channels: 33 })
        ));
        assert!(matches!(
            downmix_to_mono(&[], 0),
            Err(AudioError::UnsupportedChannelCount { channels: 0 })
        ));
    }

    #[test]
    fn partial_frames_are_an_error() {
        assert!(matches!(
            downmix_to_mono(&[0.0; 5], 2),
            Err(AudioError::PartialFrame {
                samples: 5,
                channels: 2
            })
        ));
    }
}
