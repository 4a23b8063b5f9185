//! Bounded decoding of audio files held in memory: WAV (PCM 8/16/24/32-bit, IEEE float 32/64,
//! µ-law, A-law), MP3, and headerless 8 kHz µ-law, into `f32` samples.
//!
//! WAV and MP3 are decoded by `symphonia` (only its `wav`, `pcm` and `mp3` features); raw
//! µ-law by [`crate::codec`]. The input is a byte slice (the caller did the I/O), and every
//! decode is bounded by [`Limits`]: input size, audio duration, decoded sample count, and wall
//! time spent decoding. Decoding is CPU work, so the clock is read here, in one place
//! (`Budget`), and tests can substitute their own clock through [`decode_with_clock`].
//!
//! Malformed input is an [`AudioError`], never a panic: symphonia's errors are mapped onto our
//! variants in `map_error`. symphonia 0.6 does panic on some malformed WAV headers (for
//! instance it multiplies the channel count by the sample width in 16-bit arithmetic before
//! validating either, which overflows), so WAV headers are checked here first
//! (`check_wav_header`), and as a backstop every symphonia decode runs under
//! `catch_unwind`, turning a panic into [`AudioError::DecoderPanicked`]. That backstop needs
//! the default `panic = "unwind"`; the workspace does not change it.

use std::fmt;
use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::default::codecs::{MpaDecoder, PcmDecoder};
use symphonia::default::formats::{MpaReader, WavReader};

use crate::mix::{check_channels, downmix_into};
use crate::resample::{check_rate, TELEPHONY_RATE};
use crate::{codec, AudioError};

/// An audio file format this module decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// RIFF WAVE: PCM 8/16/24/32-bit, IEEE float 32/64, µ-law or A-law, 1 to 26 channels.
    Wav,
    /// MPEG-1/2/2.5 Layer III.
    Mp3,
    /// Headerless G.711 µ-law at 8 kHz, mono. It has no signature, so it is never sniffed: only
    /// a [`Hint`] selects it.
    RawUlaw,
}

impl fmt::Display for Format {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Format::Wav => "WAV",
            Format::Mp3 => "MP3",
            Format::RawUlaw => "raw µ-law",
        })
    }
}

/// What the caller knows about the input's format: typically the `Content-Type` of the HTTP
/// response and the extension of the URL's path. Either may be absent or wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hint<'a> {
    /// A media type such as `audio/wav` or `audio/mpeg; charset=x`; parameters are ignored.
    pub content_type: Option<&'a str>,
    /// A file name extension such as `wav`, `.mp3` or `ulaw`, with or without the dot.
    pub extension: Option<&'a str>,
}

impl<'a> Hint<'a> {
    /// No hint: the format is sniffed from the bytes.
    pub const NONE: Hint<'static> = Hint {
        content_type: None,
        extension: None,
    };

    /// A hint from a media type only.
    pub fn content_type(content_type: &'a str) -> Self {
        Hint {
            content_type: Some(content_type),
            extension: None,
        }
    }

    /// A hint from a file name extension only.
    pub fn extension(extension: &'a str) -> Self {
        Hint {
            content_type: None,
            extension: Some(extension),
        }
    }

    /// The format the hint names, if it names one: the media type wins over the extension,
    /// and generic types such as `application/octet-stream` name none.
    pub fn format(&self) -> Option<Format> {
        self.content_type
            .and_then(format_of_content_type)
            .or_else(|| self.extension.and_then(format_of_extension))
    }
}

/// Bounds on one decode. Every field is checked while decoding, not only up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest input accepted, in bytes.
    pub max_input_bytes: usize,
    /// The longest audio accepted.
    pub max_duration: Duration,
    /// The most wall time one decode may take.
    pub max_decode_time: Duration,
    /// The most `f32` samples (all channels counted) one decode may produce: the memory bound.
    pub max_output_samples: usize,
}

impl Default for Limits {
    /// 64 MiB of input, 15 minutes of audio, 30 s of decoding, 64 Mi samples (256 MiB).
    fn default() -> Self {
        Limits {
            max_input_bytes: 64 << 20,
            max_duration: Duration::from_secs(15 * 60),
            max_decode_time: Duration::from_secs(30),
            max_output_samples: 64 << 20,
        }
    }
}

/// Decoded audio: `f32` samples in −1.0 ..= 1.0 (nominally), interleaved by channel.
///
/// Float WAV samples are passed on as stored, so they may exceed ±1.0 or even be NaN;
/// [`resample`](crate::resample::resample) and [`pcm::f32_to_i16`](crate::pcm::f32_to_i16)
/// treat non-finite samples as silence and clip the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Number of interleaved channels (1 after [`decode_mono`]).
    pub channels: usize,
    /// The samples, frame after frame.
    pub samples: Vec<f32>,
}

impl Decoded {
    /// The number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    /// How long the audio plays.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.frames() as f64 / f64::from(self.sample_rate.max(1)))
    }
}

/// Which sample layout a decode produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// All channels, interleaved.
    Interleaved,
    /// One channel: every frame averaged (see [`crate::mix`]) as it is decoded.
    Mono,
}

/// Decodes `bytes` to interleaved samples; the format comes from [`detect_format`].
pub fn decode(bytes: &[u8], hint: &Hint<'_>, limits: &Limits) -> Result<Decoded, AudioError> {
    decode_with_clock(bytes, hint, limits, Layout::Interleaved, &mut Instant::now)
}

/// Decodes `bytes` straight to mono, mixing down packet by packet (so a multi-channel input
/// never exists in memory at full width).
pub fn decode_mono(bytes: &[u8], hint: &Hint<'_>, limits: &Limits) -> Result<Decoded, AudioError> {
    decode_with_clock(bytes, hint, limits, Layout::Mono, &mut Instant::now)
}

/// Like [`decode`] / [`decode_mono`], reading the time from `clock` to enforce
/// [`Limits::max_decode_time`] (tests pass a clock that jumps).
pub fn decode_with_clock(
    bytes: &[u8],
    hint: &Hint<'_>,
    limits: &Limits,
    layout: Layout,
    clock: &mut dyn FnMut() -> Instant,
) -> Result<Decoded, AudioError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(AudioError::InputTooLarge {
            length: bytes.len(),
            limit: limits.max_input_bytes,
        });
    }
    if bytes.is_empty() {
        return Err(AudioError::EmptyInput);
    }
    let format = detect_format(bytes, hint)?;
    let mut budget = Budget::start(limits, clock);
    match format {
        Format::RawUlaw => decode_raw_ulaw(bytes, &mut budget),
        Format::Wav | Format::Mp3 => {
            if format == Format::Wav {
                check_wav_header(bytes)?;
            }
            // Unwind safety: after a panic everything the closure touched (the decoder state,
            // the budget's clock) is dropped or never used again.
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                decode_with_symphonia(bytes, format, layout, &mut budget)
            }))
            .unwrap_or(Err(AudioError::DecoderPanicked { format }))
        }
    }
}

/// Picks the format of `bytes`: raw µ-law only when the hint says so (it cannot be sniffed);
/// otherwise a recognised signature (RIFF/WAVE, an ID3v2 tag, an MPEG Layer III frame header)
/// wins, because servers mislabel files more often than bytes lie; otherwise the hint.
pub fn detect_format(bytes: &[u8], hint: &Hint<'_>) -> Result<Format, AudioError> {
    let hinted = hint.format();
    if hinted == Some(Format::RawUlaw) {
        return Ok(Format::RawUlaw);
    }
    sniff(bytes).or(hinted).ok_or(AudioError::UnknownFormat)
}

/// The format whose signature `bytes` starts with, if any (never [`Format::RawUlaw`]).
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        return Some(Format::Wav);
    }
    if bytes.starts_with(b"ID3") {
        return Some(Format::Mp3);
    }
    if bytes.len() >= 4 && is_layer3_frame_header([bytes[0], bytes[1], bytes[2], bytes[3]]) {
        return Some(Format::Mp3);
    }
    None
}

/// The limits, and the clock that enforces [`Limits::max_decode_time`]: the only place this
/// module reads the time.
struct Budget<'a> {
    limits: &'a Limits,
    clock: &'a mut dyn FnMut() -> Instant,
    started: Instant,
}

impl<'a> Budget<'a> {
    fn start(limits: &'a Limits, clock: &'a mut dyn FnMut() -> Instant) -> Self {
        let started = clock();
        Budget {
            limits,
            clock,
            started,
        }
    }

    /// Fails once the decode has run longer than allowed.
    fn check_time(&mut self) -> Result<(), AudioError> {
        let now = (self.clock)();
        if now.saturating_duration_since(self.started) > self.limits.max_decode_time {
            return Err(AudioError::DecodeTimeExceeded {
                limit: self.limits.max_decode_time,
            });
        }
        Ok(())
    }

    /// Fails if `frames` frames at `sample_rate` play longer than allowed, or if `samples`
    /// output samples are more than allowed.
    fn check_size(&self, frames: u64, sample_rate: u32, samples: u64) -> Result<(), AudioError> {
        // Compare frames / rate > limit in integers: frames · 10⁹ > limit_ns · rate.
        let limit_nanos = self.limits.max_duration.as_nanos();
        if u128::from(frames) * 1_000_000_000 > limit_nanos * u128::from(sample_rate) {
            return Err(AudioError::TooLong {
                limit: self.limits.max_duration,
            });
        }
        if samples > self.limits.max_output_samples as u64 {
            return Err(AudioError::OutputTooLarge {
                limit: self.limits.max_output_samples,
            });
        }
        Ok(())
    }
}

/// Raw µ-law: every byte is one 8 kHz mono sample.
fn decode_raw_ulaw(bytes: &[u8], budget: &mut Budget<'_>) -> Result<Decoded, AudioError> {
    let frames = bytes.len() as u64;
    budget.check_size(frames, TELEPHONY_RATE, frames)?;
    let mut samples = Vec::with_capacity(bytes.len());
    let mut linear = [0i16; RAW_CHUNK];
    for chunk in bytes.chunks(RAW_CHUNK) {
        budget.check_time()?;
        let linear = &mut linear[..chunk.len()];
        codec::decode_ulaw(chunk, linear);
        samples.extend(linear.iter().map(|&sample| f32::from(sample) / 32_768.0));
    }
    Ok(Decoded {
        sample_rate: TELEPHONY_RATE,
        channels: 1,
        samples,
    })
}

/// Raw µ-law is converted in chunks of this many bytes between clock checks.
const RAW_CHUNK: usize = 8_192;

/// MP3 frames a decode may skip as undecodable before it gives up; real files off the web
/// sometimes carry a damaged frame or some junk, and players skip those.
const MAX_SKIPPED_PACKETS: u32 = 64;

fn decode_with_symphonia(
    bytes: &[u8],
    format: Format,
    layout: Layout,
    budget: &mut Budget<'_>,
) -> Result<Decoded, AudioError> {
    let error = |error| map_error(format, error);
    let payload = match format {
        Format::Mp3 => skip_id3v2_tags(bytes)?,
        _ => bytes,
    };
    let stream = MediaSourceStream::new(
        Box::new(Cursor::new(payload)),
        MediaSourceStreamOptions::default(),
    );
    let mut reader: Box<dyn FormatReader + '_> = match format {
        Format::Wav => {
            Box::new(WavReader::try_new(stream, FormatOptions::default()).map_err(error)?)
        }
        _ => Box::new(MpaReader::try_new(stream, FormatOptions::default()).map_err(error)?),
    };
    budget.check_time()?;

    let track = reader
        .default_track(TrackType::Audio)
        .ok_or(AudioError::NoAudioTrack { format })?;
    let track_id = track.id;
    let declared_frames = track.num_frames;
    let Some(CodecParameters::Audio(parameters)) = &track.codec_params else {
        return Err(AudioError::NoAudioTrack { format });
    };
    // Refuse absurd headers before decoding anything.
    let sample_rate = parameters.sample_rate.ok_or(AudioError::Malformed {
        format,
        reason: "no sample rate",
    })?;
    check_rate(sample_rate)?;
    let channels = parameters
        .channels
        .as_ref()
        .map(|channels| channels.count())
        .ok_or(AudioError::Malformed {
            format,
            reason: "no channel layout",
        })?;
    check_channels(channels)?;

    let options = AudioDecoderOptions::default();
    let mut decoder: Box<dyn AudioDecoder> = match format {
        Format::Wav => Box::new(PcmDecoder::try_new(parameters, &options).map_err(error)?),
        _ => Box::new(MpaDecoder::try_new(parameters, &options).map_err(error)?),
    };

    let width = match layout {
        Layout::Interleaved => channels,
        Layout::Mono => 1,
    };
    let mut samples = Vec::new();
    if let Some(frames) = declared_frames {
        // WAV declares its length: a file that claims too much is refused at once, and an
        // honest one gets its buffer in one allocation (never more than the input could hold:
        // a WAV sample takes at least one byte).
        budget.check_size(frames, sample_rate, frames * width as u64)?;
        let reserve = (frames as usize).saturating_mul(width).min(bytes.len());
        samples.reserve(reserve);
    }

    let mut decoded_frames: u64 = 0;
    let mut skipped = 0u32;
    let mut last_skip_reason = "";
    let mut scratch: Vec<f32> = Vec::new();
    loop {
        budget.check_time()?;
        let packet = match reader.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // An MPEG stream that stops in the middle of a frame has simply ended.
            Err(SymphoniaError::IoError(io))
                if format == Format::Mp3 && io.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break
            }
            Err(other) => return Err(error(other)),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            Err(SymphoniaError::DecodeError(reason)) if format == Format::Mp3 => {
                skipped += 1;
                last_skip_reason = reason;
                if skipped > MAX_SKIPPED_PACKETS {
                    return Err(AudioError::Malformed { format, reason });
                }
                continue;
            }
            Err(other) => return Err(error(other)),
        };
        if buffer.spec().rate() != sample_rate || buffer.spec().channels().count() != channels {
            return Err(AudioError::StreamChanged { format });
        }
        let frames = buffer.frames();
        decoded_frames += frames as u64;
        budget.check_size(
            decoded_frames,
            sample_rate,
            (samples.len() + frames * width) as u64,
        )?;
        buffer.copy_to_vec_interleaved::<f32>(&mut scratch);
        if width == channels {
            samples.extend_from_slice(&scratch);
        } else {
            downmix_into(&scratch, channels, &mut samples)?;
        }
    }

    if decoded_frames == 0 {
        if skipped > 0 {
            return Err(AudioError::Malformed {
                format,
                reason: last_skip_reason,
            });
        }
        return Err(AudioError::NoAudio { format });
    }
    if format == Format::Wav && declared_frames.is_some_and(|declared| decoded_frames < declared) {
        // The data chunk claims more audio than the file holds.
        return Err(AudioError::Truncated { format });
    }
    Ok(Decoded {
        sample_rate,
        channels: width,
        samples,
    })
}

/// Checks the `fmt ` chunk of a WAV file for values symphonia does not validate before using
/// them: the channel count (1 ..= [`MAX_CHANNELS`](crate::mix::MAX_CHANNELS)) and the bits per
/// sample (at most 64). Anything else, including a missing or cut-off chunk, is left for
/// symphonia to report.
fn check_wav_header(bytes: &[u8]) -> Result<(), AudioError> {
    // RIFF: "RIFF", length, "WAVE", then chunks of id (4 bytes), length (4 bytes, little
    // endian), and data padded to an even length.
    let mut offset: usize = 12;
    for _ in 0..MAX_CHUNKS_BEFORE_FORMAT {
        let Some(header) = bytes.get(offset..offset.saturating_add(8)) else {
            return Ok(());
        };
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if &header[..4] == b"fmt " {
            let Some(format) = bytes.get(offset + 8..offset + 8 + 16) else {
                return Ok(());
            };
            let channels = u16::from_le_bytes([format[2], format[3]]);
            let bits_per_sample = u16::from_le_bytes([format[14], format[15]]);
            check_channels(usize::from(channels))?;
            if bits_per_sample > 64 {
                return Err(AudioError::Unsupported {
                    format: Format::Wav,
                    feature: "more than 64 bits per sample",
                });
            }
            return Ok(());
        }
        offset = offset
            .saturating_add(8)
            .saturating_add(length)
            .saturating_add(length % 2);
    }
    Ok(())
}

/// How many chunks [`check_wav_header`] walks past looking for `fmt ` (which comes first in
/// practice, after at most a `JUNK` or `LIST` chunk or two).
const MAX_CHUNKS_BEFORE_FORMAT: usize = 16;

/// Maps a symphonia error onto ours. An `UnexpectedEof` means the input stopped inside a
/// header or a frame; other I/O errors cannot happen on an in-memory cursor and are reported
/// as malformed input rather than trusted.
fn map_error(format: Format, error: SymphoniaError) -> AudioError {
    match error {
        SymphoniaError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::Truncated { format }
        }
        SymphoniaError::IoError(_) => AudioError::Malformed {
            format,
            reason: "read error",
        },
        SymphoniaError::DecodeError(reason) => AudioError::Malformed { format, reason },
        SymphoniaError::Unsupported(feature) => AudioError::Unsupported { format, feature },
        SymphoniaError::LimitError(constraint) => AudioError::DecoderLimit { format, constraint },
        SymphoniaError::ResetRequired => AudioError::StreamChanged { format },
        SymphoniaError::SeekError(_) => AudioError::Malformed {
            format,
            reason: "unexpected seek",
        },
        _ => AudioError::Malformed {
            format,
            reason: "unrecognised decoder error",
        },
    }
}

/// Skips the ID3v2 tags in front of an MP3 stream, so the MPEG reader never mistakes bytes of
/// a tag (say, an embedded picture) for a frame header.
///
/// ID3v2.4 §3.1: a 10-byte header "ID3", version (2 bytes), flags (1 byte, bit 4 = footer
/// present), then the tag size as a 28-bit synchsafe integer (four bytes, top bit of each 0)
/// that excludes the header and the footer.
fn skip_id3v2_tags(bytes: &[u8]) -> Result<&[u8], AudioError> {
    let mut rest = bytes;
    // A file may carry more than one tag back to back; a handful is plenty.
    for _ in 0..4 {
        if !rest.starts_with(b"ID3") {
            break;
        }
        let Some(header) = rest.get(..10) else {
            return Err(AudioError::Truncated {
                format: Format::Mp3,
            });
        };
        if header[6..10].iter().any(|&byte| byte & 0x80 != 0) {
            return Err(AudioError::Malformed {
                format: Format::Mp3,
                reason: "ID3v2 tag size is not synchsafe",
            });
        }
        let size = header[6..10]
            .iter()
            .fold(0usize, |size, &byte| (size << 7) | usize::from(byte));
        let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
        let total = 10 + size + footer;
        rest = rest.get(total..).ok_or(AudioError::Truncated {
            format: Format::Mp3,
        })?;
    }
    Ok(rest)
}

/// Whether four bytes form a plausible MPEG audio Layer III frame header: 11-bit sync, a
/// defined version, layer III, a bit rate index other than "free"/"bad", and a defined
/// sample rate (ISO/IEC 11172-3 §2.4.2.3 and ISO/IEC 13818-3 for the lower rates).
fn is_layer3_frame_header(header: [u8; 4]) -> bool {
    let sync = header[0] == 0xFF && header[1] & 0xE0 == 0xE0;
    let version = (header[1] >> 3) & 0x03;
    let layer = (header[1] >> 1) & 0x03;
    let bit_rate = header[2] >> 4;
    let sample_rate = (header[2] >> 2) & 0x03;
    sync && version != 0b01
        && layer == 0b01
        && bit_rate != 0
        && bit_rate != 0x0F
        && sample_rate != 0b11
}

fn format_of_content_type(content_type: &str) -> Option<Format> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let matches = |candidates: &[&str]| {
        candidates
            .iter()
            .any(|candidate| essence.eq_ignore_ascii_case(candidate))
    };
    if matches(&[
        "audio/wav",
        "audio/wave",
        "audio/x-wav",
        "audio/vnd.wave",
        "audio/x-pn-wav",
    ]) {
        Some(Format::Wav)
    } else if matches(&[
        "audio/mpeg",
        "audio/mp3",
        "audio/x-mp3",
        "audio/mpeg3",
        "audio/x-mpeg",
    ]) {
        Some(Format::Mp3)
    } else if matches(&[
        "audio/basic",
        "audio/pcmu",
        "audio/x-mulaw",
        "audio/mulaw",
        "audio/x-ulaw",
    ]) {
        // RFC 2046 §4.3: audio/basic is single-channel 8 kHz µ-law with no header; RFC 4856
        // registers audio/PCMU for the same octets.
        Some(Format::RawUlaw)
    } else {
        None
    }
}

fn format_of_extension(extension: &str) -> Option<Format> {
    let extension = extension.trim_start_matches('.');
    let matches = |candidates: &[&str]| {
        candidates
            .iter()
            .any(|candidate| extension.eq_ignore_ascii_case(candidate))
    };
    if matches(&["wav", "wave"]) {
        Some(Format::Wav)
    } else if matches(&["mp3"]) {
        Some(Format::Mp3)
    } else if matches(&["ulaw", "ul", "mulaw", "pcmu"]) {
        Some(Format::RawUlaw)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_formats_case_insensitively_and_ignore_parameters() {
        assert_eq!(
            Hint::content_type("Audio/WAV; codecs=1").format(),
            Some(Format::Wav)
        );
        assert_eq!(Hint::content_type("audio/mpeg").format(), Some(Format::Mp3));
        assert_eq!(
            Hint::content_type("audio/basic").format(),
            Some(Format::RawUlaw)
        );
        assert_eq!(
            Hint::content_type("application/octet-stream").format(),
            None
        );
        assert_eq!(Hint::extension(".MP3").format(), Some(Format::Mp3));
        assert_eq!(Hint::extension("ulaw").format(), Some(Format::RawUlaw));
        assert_eq!(Hint::extension("txt").format(), None);
        let both = Hint {
            content_type: Some("audio/wav"),
            extension: Some("mp3"),
        };
        assert_eq!(both.format(), Some(Format::Wav));
        let generic = Hint {
            content_type: Some("application/octet-stream"),
            extension: Some("mp3"),
        };
        assert_eq!(generic.format(), Some(Format::Mp3));
    }

    #[test]
    fn signatures_beat_hints_except_for_raw_ulaw() {
        let riff = b"RIFF\x24\x00\x00\x00WAVEfmt ";
        assert_eq!(sniff(riff), Some(Format::Wav));
        assert_eq!(
            detect_format(riff, &Hint::content_type("audio/mpeg")).unwrap(),
            Format::Wav
        );
        assert_eq!(
            detect_format(riff, &Hint::extension("ulaw")).unwrap(),
            Format::RawUlaw
        );
        assert_eq!(sniff(b"ID3\x04\x00"), Some(Format::Mp3));
        // MPEG-1 Layer III, 128 kbit/s, 44.1 kHz.
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x64]), Some(Format::Mp3));
        // Layer II is not ours.
        assert_eq!(sniff(&[0xFF, 0xFD, 0x90, 0x64]), None);
        assert_eq!(sniff(b"<!DOCTYPE html>"), None);
        assert!(matches!(
            detect_format(b"<html>", &Hint::NONE),
            Err(AudioError::UnknownFormat)
        ));
        assert_eq!(
            detect_format(b"\x00\x01", &Hint::extension("mp3")).unwrap(),
            Format::Mp3
        );
    }

    #[test]
    fn id3v2_tags_are_skipped_and_checked() {
        let mut tagged = b"ID3\x04\x00\x00\x00\x00\x00\x05hello".to_vec();
        tagged.extend_from_slice(&[0xFF, 0xFB]);
        assert_eq!(skip_id3v2_tags(&tagged).unwrap(), &[0xFF, 0xFB]);
        assert!(matches!(
            skip_id3v2_tags(b"ID3\x04\x00\x00\x00\x00\x01\x00short"),
            Err(AudioError::Truncated { .. })
        ));
        assert!(matches!(
            skip_id3v2_tags(b"ID3\x04\x00\x00\x80\x00\x00\x00"),
            Err(AudioError::Malformed { .. })
        ));
        assert!(matches!(
            skip_id3v2_tags(b"ID3\x04"),
            Err(AudioError::Truncated { .. })
        ));
    }

    #[test]
    fn raw_ulaw_is_one_sample_per_byte_at_8_khz() {
        let decoded = decode(
            &[0xFF, 0x80, 0x00],
            &Hint::extension("ulaw"),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(decoded.sample_rate, 8_000);
        assert_eq!(decoded.channels, 1);
        assert_eq!(
            decoded.samples,
            vec![0.0, 32_124.0 / 32_768.0, -32_124.0 / 32_768.0]
        );
    }

    #[test]
    fn budget_compares_duration_exactly() {
        let limits = Limits {
            max_duration: Duration::from_secs(1),
            ..Limits::default()
        };
        let start = Instant::now();
        let mut clock = move || start;
        let budget = Budget::start(&limits, &mut clock);
        assert!(budget.check_size(8_000, 8_000, 8_000).is_ok());
        assert!(matches!(
            budget.check_size(8_001, 8_000, 8_001),
            Err(AudioError::TooLong { .. })
        ));
    }
}
