//! Decoder fixtures, generated here in every supported sample format and channel count, plus
//! the committed MP3; malformed and oversized inputs, each of which must be a typed error.

mod support;

use std::time::{Duration, Instant};

use media::decode::{decode, decode_mono, decode_with_clock, Layout};
use media::{AudioError, Format, Hint, Limits};
use support::{fit_sine, interleave, sine, snr_db, wav, SampleFormat, WavSpec};

const MP3: &[u8] = include_bytes!("data/tone-1k.mp3");

fn limits() -> Limits {
    Limits::default()
}

/// A 100 ms 440 Hz tone in `channels` channels, each channel at its own gain (so channel
/// order mistakes show).
fn tone(sample_rate: u32, channels: u16) -> (Vec<f32>, Vec<f32>) {
    let mono = sine(440.0, 0.8, sample_rate, sample_rate as usize / 10);
    let gains: Vec<f32> = (0..channels)
        .map(|channel| 1.0 - 0.5 * f32::from(channel) / f32::from(channels))
        .collect();
    (interleave(&mono, &gains), gains)
}

#[test]
fn every_wav_sample_format_decodes_in_mono_stereo_and_surround() {
    for format in SampleFormat::ALL {
        for channels in [1u16, 2, 6] {
            let rate = if matches!(format, SampleFormat::Ulaw | SampleFormat::Alaw) {
                8_000
            } else {
                22_050
            };
            let (samples, gains) = tone(rate, channels);
            let file = wav(WavSpec::new(format, rate, channels), &samples);
            let decoded = decode(&file, &Hint::NONE, &limits())
                .unwrap_or_else(|error| panic!("{format:?} x{channels}: {error}"));
            assert_eq!(decoded.sample_rate, rate, "{format:?} x{channels}");
            assert_eq!(
                decoded.channels,
                usize::from(channels),
                "{format:?} x{channels}"
            );
            assert_eq!(
                decoded.samples.len(),
                samples.len(),
                "{format:?} x{channels}"
            );
            let tolerance = format.tolerance();
            for (index, (&want, &got)) in samples.iter().zip(&decoded.samples).enumerate() {
                assert!(
                    (want - got).abs() <= tolerance,
                    "{format:?} x{channels} sample {index}: wrote {want}, decoded {got}"
                );
            }

            // Straight to mono: the average of the channels.
            let mono = decode_mono(&file, &Hint::NONE, &limits()).unwrap();
            assert_eq!(mono.channels, 1);
            assert_eq!(mono.samples.len(), samples.len() / usize::from(channels));
            let mean_gain = gains.iter().sum::<f32>() / f32::from(channels);
            for (frame, &got) in samples.chunks(usize::from(channels)).zip(&mono.samples) {
                let want = frame[0] / gains[0] * mean_gain;
                assert!(
                    (want - got).abs() <= tolerance,
                    "{format:?} x{channels} mono"
                );
            }
        }
    }
}

#[test]
fn extensible_headers_and_many_channels_decode() {
    for format in [SampleFormat::I16, SampleFormat::I24, SampleFormat::F32] {
        for channels in [3u16, 8, 18] {
            let (samples, _) = tone(16_000, channels);
            let spec = WavSpec {
                extensible: true,
                ..WavSpec::new(format, 16_000, channels)
            };
            let decoded = decode(&wav(spec, &samples), &Hint::NONE, &limits())
                .unwrap_or_else(|error| panic!("extensible {format:?} x{channels}: {error}"));
            assert_eq!(decoded.channels, usize::from(channels));
            assert_eq!(decoded.samples.len(), samples.len());
        }
    }
    // 26 channels is the most a plain WAV header can describe to the decoder.
    let (samples, _) = tone(8_000, 26);
    let decoded = decode(
        &wav(WavSpec::new(SampleFormat::I16, 8_000, 26), &samples),
        &Hint::NONE,
        &limits(),
    )
    .unwrap();
    assert_eq!(decoded.channels, 26);
}

#[test]
fn the_mp3_fixture_decodes_to_its_tone() {
    let decoded = decode(MP3, &Hint::content_type("audio/mpeg"), &limits()).unwrap();
    assert_eq!(decoded.sample_rate, 44_100);
    assert_eq!(decoded.channels, 2);
    let seconds = decoded.duration().as_secs_f64();
    assert!(
        (seconds - 1.0).abs() < 0.05,
        "decoded {seconds} s of a 1 s file"
    );

    let mono = decode_mono(MP3, &Hint::NONE, &limits()).unwrap();
    assert_eq!(mono.channels, 1);
    // Skip the encoder's fade-in and the last frame; the rest is a clean 1 kHz tone at
    // half scale.
    let middle = &mono.samples[4_410..mono.samples.len() - 4_410];
    let fitted = fit_sine(middle, 1_000.0, 44_100);
    let snr = snr_db(&fitted, middle);
    assert!(snr >= 30.0, "MP3 tone SNR {snr:.1} dB");
    let peak = fitted.iter().fold(0.0f32, |peak, &x| peak.max(x.abs()));
    assert!((peak - 0.5).abs() < 0.05, "MP3 tone amplitude {peak}");
}

#[test]
fn an_id3v2_tag_in_front_of_the_mp3_is_skipped() {
    // A 300-byte ID3v2.4 tag (size as a synchsafe integer) full of bytes that look like MPEG
    // frame sync.
    let mut tagged = b"ID3\x04\x00\x00\x00\x00\x02\x2C".to_vec();
    tagged.extend(std::iter::repeat_n(0xFF, 300));
    tagged.extend_from_slice(MP3);
    let plain = decode(MP3, &Hint::NONE, &limits()).unwrap();
    let decoded = decode(&tagged, &Hint::NONE, &limits()).unwrap();
    assert_eq!(decoded, plain);
}

#[test]
fn a_cut_off_mp3_decodes_what_is_there() {
    let half = &MP3[..MP3.len() / 2];
    let decoded = decode(half, &Hint::NONE, &limits()).unwrap();
    let seconds = decoded.duration().as_secs_f64();
    assert!(
        (0.4..0.6).contains(&seconds),
        "half the file gave {seconds} s"
    );
}

#[test]
fn raw_ulaw_is_chosen_only_by_the_hint() {
    let ulaw: Vec<u8> = (0..=255u8).collect();
    let decoded = decode(&ulaw, &Hint::content_type("audio/basic"), &limits()).unwrap();
    assert_eq!((decoded.sample_rate, decoded.channels), (8_000, 1));
    for (&code, &sample) in ulaw.iter().zip(&decoded.samples) {
        assert_eq!(
            sample,
            f32::from(media::codec::decode_ulaw_sample(code)) / 32_768.0
        );
    }
    assert!(matches!(
        decode(&ulaw, &Hint::NONE, &limits()),
        Err(AudioError::UnknownFormat)
    ));
}

#[test]
fn a_mislabelled_file_is_decoded_by_its_signature() {
    let (samples, _) = tone(8_000, 1);
    let file = wav(WavSpec::new(SampleFormat::I16, 8_000, 1), &samples);
    let decoded = decode(&file, &Hint::content_type("audio/mpeg"), &limits()).unwrap();
    assert_eq!(decoded.samples.len(), samples.len());
    let decoded = decode(MP3, &Hint::extension("wav"), &limits()).unwrap();
    assert_eq!(decoded.sample_rate, 44_100);
}

/// A valid 16-bit mono 8 kHz WAV of 100 ms, to be damaged by the tests below.
fn valid_wav() -> Vec<u8> {
    let (samples, _) = tone(8_000, 1);
    wav(WavSpec::new(SampleFormat::I16, 8_000, 1), &samples)
}

/// Byte offsets in the files [`valid_wav`] writes (a 16-byte PCM `fmt ` chunk).
const CHANNELS_AT: usize = 22;
const RATE_AT: usize = 24;
const BITS_AT: usize = 34;
const DATA_LENGTH_AT: usize = 40;

#[test]
fn empty_input_is_an_error() {
    assert!(matches!(
        decode(&[], &Hint::content_type("audio/wav"), &limits()),
        Err(AudioError::EmptyInput)
    ));
}

#[test]
fn truncated_headers_are_errors() {
    let file = valid_wav();
    for length in [4, 11, 12, 16, 20, 30, 36, 43] {
        let error = decode(&file[..length], &Hint::content_type("audio/wav"), &limits())
            .expect_err("a truncated header decoded");
        assert!(
            matches!(
                error,
                AudioError::Truncated {
                    format: Format::Wav
                } | AudioError::Malformed {
                    format: Format::Wav,
                    ..
                } | AudioError::NoAudio {
                    format: Format::Wav
                }
            ),
            "cut at {length}: {error:?}"
        );
    }
}

#[test]
fn a_data_chunk_longer_than_the_file_is_an_error() {
    // The RIFF length agrees with the oversized data chunk: the file is truncated.
    let mut file = valid_wav();
    file[DATA_LENGTH_AT..DATA_LENGTH_AT + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
    file[4..8].copy_from_slice(&1_000_036u32.to_le_bytes());
    let error = decode(&file, &Hint::NONE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            AudioError::Truncated {
                format: Format::Wav
            }
        ),
        "{error:?}"
    );
    // The data chunk overruns the RIFF chunk that contains it: malformed.
    let mut file = valid_wav();
    file[DATA_LENGTH_AT..DATA_LENGTH_AT + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
    let error = decode(&file, &Hint::NONE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            AudioError::Malformed {
                format: Format::Wav,
                ..
            }
        ),
        "{error:?}"
    );
    // The file is simply cut in the middle of the samples.
    let file = valid_wav();
    let error = decode(&file[..file.len() - 101], &Hint::NONE, &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            AudioError::Truncated {
                format: Format::Wav
            }
        ),
        "{error:?}"
    );
}

#[test]
fn absurd_channel_counts_are_errors() {
    for channels in [0u16, 27, 255, u16::MAX] {
        let mut file = valid_wav();
        file[CHANNELS_AT..CHANNELS_AT + 2].copy_from_slice(&channels.to_le_bytes());
        let error = decode(&file, &Hint::NONE, &limits()).unwrap_err();
        assert!(
            matches!(
                error,
                AudioError::Malformed { .. }
                    | AudioError::Unsupported { .. }
                    | AudioError::UnsupportedChannelCount { .. }
            ),
            "{channels} channels: {error:?}"
        );
    }
}

#[test]
fn absurd_sample_widths_are_errors() {
    // With many channels, a huge width overflowed symphonia's 16-bit block-size arithmetic.
    for (channels, bits) in [(1u16, 0u16), (1, 12), (26, 4_096), (26, u16::MAX)] {
        let mut file = valid_wav();
        file[CHANNELS_AT..CHANNELS_AT + 2].copy_from_slice(&channels.to_le_bytes());
        file[BITS_AT..BITS_AT + 2].copy_from_slice(&bits.to_le_bytes());
        let error = decode(&file, &Hint::NONE, &limits()).unwrap_err();
        assert!(
            matches!(
                error,
                AudioError::Malformed { .. } | AudioError::Unsupported { .. }
            ),
            "{channels} x {bits} bits: {error:?}"
        );
    }
}

#[test]
fn absurd_sample_rates_are_errors() {
    for rate in [0u32, 1, 1_000_000, u32::MAX] {
        let mut file = valid_wav();
        file[RATE_AT..RATE_AT + 4].copy_from_slice(&rate.to_le_bytes());
        let error = decode(&file, &Hint::NONE, &limits()).unwrap_err();
        assert!(
            matches!(
                error,
                AudioError::Malformed { .. } | AudioError::UnsupportedSampleRate { .. }
            ),
            "{rate} Hz: {error:?}"
        );
    }
}

#[test]
fn random_bytes_are_errors_whatever_the_hint() {
    // A fixed xorshift sequence: the same "random" bytes every run.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = vec![0u8; 50_000];
    for byte in &mut noise {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    assert!(matches!(
        decode(&noise, &Hint::NONE, &limits()),
        Err(AudioError::UnknownFormat)
    ));
    let error = decode(&noise, &Hint::content_type("audio/wav"), &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            AudioError::Malformed {
                format: Format::Wav,
                ..
            } | AudioError::Unsupported {
                format: Format::Wav,
                ..
            }
        ),
        "{error:?}"
    );
    // Noise labelled as MP3 has no two consecutive frame headers: no audio, or a malformed
    // frame, but never a panic.
    let error = decode(&noise, &Hint::content_type("audio/mpeg"), &limits()).unwrap_err();
    assert!(
        matches!(
            error,
            AudioError::Truncated {
                format: Format::Mp3
            } | AudioError::Malformed {
                format: Format::Mp3,
                ..
            } | AudioError::NoAudio {
                format: Format::Mp3
            }
        ),
        "{error:?}"
    );
    // An HTML error page served as audio.
    let page = b"<!DOCTYPE html><html><body>404 Not Found</body></html>";
    assert!(decode(page, &Hint::content_type("audio/mpeg"), &limits()).is_err());
    assert!(decode(page, &Hint::NONE, &limits()).is_err());
}

#[test]
fn the_input_size_limit_applies_before_anything_else() {
    let limits = Limits {
        max_input_bytes: 100,
        ..limits()
    };
    assert!(matches!(
        decode(&valid_wav(), &Hint::NONE, &limits),
        Err(AudioError::InputTooLarge { limit: 100, .. })
    ));
}

#[test]
fn the_duration_limit_applies_to_every_format() {
    let limits = Limits {
        max_duration: Duration::from_millis(50),
        ..limits()
    };
    // WAV declares 100 ms: refused from the header.
    assert!(matches!(
        decode(&valid_wav(), &Hint::NONE, &limits),
        Err(AudioError::TooLong { .. })
    ));
    // MP3 is counted frame by frame.
    assert!(matches!(
        decode(MP3, &Hint::NONE, &limits),
        Err(AudioError::TooLong { .. })
    ));
    // Raw µ-law: 800 bytes are 100 ms.
    assert!(matches!(
        decode(&[0xFF; 800], &Hint::extension("ulaw"), &limits),
        Err(AudioError::TooLong { .. })
    ));
    assert!(decode(&[0xFF; 400], &Hint::extension("ulaw"), &limits).is_ok());
}

#[test]
fn the_output_sample_limit_bounds_memory() {
    let limits = Limits {
        max_output_samples: 500,
        ..limits()
    };
    assert!(matches!(
        decode(&valid_wav(), &Hint::NONE, &limits),
        Err(AudioError::OutputTooLarge { limit: 500 })
    ));
    assert!(matches!(
        decode(MP3, &Hint::NONE, &limits),
        Err(AudioError::OutputTooLarge { limit: 500 })
    ));
}

#[test]
fn the_decode_time_limit_is_checked_while_decoding() {
    let limits = Limits {
        max_decode_time: Duration::from_secs(2),
        ..limits()
    };
    // A virtual clock that advances one second every time it is read.
    let start = Instant::now();
    let mut reads = 0u32;
    let mut clock = || {
        reads += 1;
        start + Duration::from_secs(u64::from(reads))
    };
    let error = decode_with_clock(MP3, &Hint::NONE, &limits, Layout::Mono, &mut clock).unwrap_err();
    assert!(
        matches!(error, AudioError::DecodeTimeExceeded { .. }),
        "{error:?}"
    );
    // A clock that stands still never runs out.
    let mut frozen = || start;
    assert!(decode_with_clock(MP3, &Hint::NONE, &limits, Layout::Mono, &mut frozen).is_ok());
}
