//! The one error type of the media crate: everything that can go wrong while decoding,
//! mixing or resampling audio, each variant naming what was wrong and, where it helps, with
//! which input.
//!
//! Decoding errors of the `symphonia` crate are mapped onto these variants in
//! [`crate::decode`]; no variant carries a free-form `String`.

use std::time::Duration;

use crate::decode::Format;

/// Why audio could not be decoded, mixed, resampled or transcoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The input was longer than [`Limits::max_input_bytes`](crate::decode::Limits).
    #[error("input is {length} bytes, more than the limit of {limit} bytes")]
    InputTooLarge {
        /// Length of the input in bytes.
        length: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The input held no bytes at all.
    #[error("input is empty")]
    EmptyInput,
    /// No format was hinted and the first bytes match no supported signature.
    #[error("audio format not recognised (no usable hint and no known signature)")]
    UnknownFormat,
    /// The container or bitstream is malformed; the reason comes from the decoder.
    #[error("malformed {format} input: {reason}")]
    Malformed {
        /// The format that was being decoded.
        format: Format,
        /// What the decoder found wrong.
        reason: &'static str,
    },
    /// The input ended in the middle of a header or a frame.
    #[error("{format} input is truncated")]
    Truncated {
        /// The format that was being decoded.
        format: Format,
    },
    /// The input uses a feature of its format that is not supported (e.g. an exotic WAV
    /// sub-format or channel layout).
    #[error("{format} input uses an unsupported feature: {feature}")]
    Unsupported {
        /// The format that was being decoded.
        format: Format,
        /// The feature, as named by the decoder.
        feature: &'static str,
    },
    /// The input contains no audio track (or none with a known codec).
    #[error("{format} input contains no audio track")]
    NoAudioTrack {
        /// The format that was being decoded.
        format: Format,
    },
    /// The input decoded to zero audio frames.
    #[error("{format} input contains no audio frames")]
    NoAudio {
        /// The format that was being decoded.
        format: Format,
    },
    /// A decoder hit one of its own internal limits.
    #[error("{format} decoder limit reached: {constraint}")]
    DecoderLimit {
        /// The format that was being decoded.
        format: Format,
        /// The constraint, as named by the decoder.
        constraint: &'static str,
    },
    /// The decoder's output parameters changed in the middle of the stream (sample rate or
    /// channel count), which a one-shot transcode cannot follow.
    #[error("{format} stream changes its sample rate or channel layout midway")]
    StreamChanged {
        /// The format that was being decoded.
        format: Format,
    },
    /// The decoded audio is longer than [`Limits::max_duration`](crate::decode::Limits).
    #[error("audio is longer than the limit of {limit:?}")]
    TooLong {
        /// The configured limit.
        limit: Duration,
    },
    /// The decoded audio needs more samples than
    /// [`Limits::max_output_samples`](crate::decode::Limits).
    #[error("decoded audio exceeds the limit of {limit} samples")]
    OutputTooLarge {
        /// The configured limit, in samples (all channels counted).
        limit: usize,
    },
    /// Decoding took longer than [`Limits::max_decode_time`](crate::decode::Limits).
    #[error("decoding took longer than the limit of {limit:?}")]
    DecodeTimeExceeded {
        /// The configured limit.
        limit: Duration,
    },
    /// The third-party decoder panicked on this input; the panic was caught and the input
    /// refused (see [`crate::decode`]).
    #[error("{format} decoder failed on malformed input")]
    DecoderPanicked {
        /// The format that was being decoded.
        format: Format,
    },
    /// A sample rate of zero or outside [`MIN_SAMPLE_RATE`](crate::resample::MIN_SAMPLE_RATE)
    /// ..= [`MAX_SAMPLE_RATE`](crate::resample::MAX_SAMPLE_RATE).
    #[error("unsupported sample rate {rate} Hz")]
    UnsupportedSampleRate {
        /// The offending rate in Hz.
        rate: u32,
    },
    /// A channel count of zero or above [`MAX_CHANNELS`](crate::mix::MAX_CHANNELS).
    #[error("unsupported channel count {channels}")]
    UnsupportedChannelCount {
        /// The offending channel count.
        channels: usize,
    },
    /// Interleaved audio whose length is not a whole number of frames.
    #[error("{samples} interleaved samples do not divide into frames of {channels} channels")]
    PartialFrame {
        /// Number of samples given.
        samples: usize,
        /// Number of channels claimed.
        channels: usize,
    },
    /// The resampler rejected its configuration (a bug here, not bad input).
    #[error("resampler could not be built")]
    ResamplerSetup(#[from] rubato::ResamplerConstructionError),
    /// The resampler failed while processing (a bug here, not bad input).
    #[error("resampler failed")]
    Resampler(#[from] rubato::ResampleError),
}
