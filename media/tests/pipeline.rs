//! The whole transcode, file bytes in, 8 kHz µ-law out, checked by decoding the µ-law and
//! measuring the tone that comes back.

mod support;

use std::time::Duration;

use media::codec::decode_ulaw;
use media::{to_telephony, AudioError, Hint, Limits};
use support::{fit_sine, interleave, sine, snr_db, wav, SampleFormat, WavSpec};

const MP3: &[u8] = include_bytes!("data/tone-1k.mp3");

/// Decodes µ-law to `f32` for measuring.
fn linear(ulaw: &[u8]) -> Vec<f32> {
    let mut samples = vec![0i16; ulaw.len()];
    decode_ulaw(ulaw, &mut samples);
    samples.iter().map(|&x| f32::from(x) / 32_768.0).collect()
}

#[test]
fn a_stereo_44_1_khz_wav_becomes_8_khz_ulaw_with_its_tone_intact() {
    let mono = sine(1_000.0, 0.5, 44_100, 44_100 * 2);
    // Left at full level, right silent: the down-mix halves the level.
    let file = wav(
        WavSpec::new(SampleFormat::I16, 44_100, 2),
        &interleave(&mono, &[1.0, 0.0]),
    );
    let telephony =
        to_telephony(&file, &Hint::content_type("audio/wav"), &Limits::default()).unwrap();
    assert_eq!(telephony.ulaw.len(), 16_000);
    assert_eq!(telephony.duration, Duration::from_secs(2));

    let audio = linear(&telephony.ulaw);
    let middle = &audio[200..audio.len() - 200];
    let ideal = sine(1_000.0, 0.25, 8_000, audio.len());
    // µ-law's own quantisation noise bounds this near 38 dB for a tone at this level.
    let snr = snr_db(&ideal[200..audio.len() - 200], middle);
    assert!(snr >= 30.0, "SNR {snr:.1} dB");
}

#[test]
fn every_sample_format_reaches_telephony() {
    for format in SampleFormat::ALL {
        let rate = if matches!(format, SampleFormat::Ulaw | SampleFormat::Alaw) {
            8_000
        } else {
            16_000
        };
        let file = wav(
            WavSpec::new(format, rate, 1),
            &sine(1_000.0, 0.5, rate, rate as usize),
        );
        let telephony = to_telephony(&file, &Hint::NONE, &Limits::default()).unwrap();
        assert_eq!(telephony.ulaw.len(), 8_000, "{format:?}");
        let audio = linear(&telephony.ulaw);
        let middle = &audio[200..7_800];
        let snr = snr_db(&fit_sine(middle, 1_000.0, 8_000), middle);
        assert!(snr >= 25.0, "{format:?}: SNR {snr:.1} dB");
    }
}

#[test]
fn the_mp3_fixture_reaches_telephony() {
    let telephony = to_telephony(MP3, &Hint::extension("mp3"), &Limits::default()).unwrap();
    let seconds = telephony.duration.as_secs_f64();
    assert!((seconds - 1.0).abs() < 0.05, "{seconds} s");
    let audio = linear(&telephony.ulaw);
    let middle = &audio[800..audio.len() - 800];
    let snr = snr_db(&fit_sine(middle, 1_000.0, 8_000), middle);
    assert!(snr >= 25.0, "SNR {snr:.1} dB");
}

#[test]
fn raw_ulaw_passes_through_unchanged() {
    // Every code except µ-law's negative zero, which comes back as positive zero.
    let ulaw: Vec<u8> = (0..=255u8).cycle().take(8_000).collect();
    let telephony = to_telephony(&ulaw, &Hint::extension("ulaw"), &Limits::default()).unwrap();
    let expected: Vec<u8> = ulaw
        .iter()
        .map(|&code| if code == 0x7F { 0xFF } else { code })
        .collect();
    assert_eq!(telephony.ulaw, expected);
}

#[test]
fn float_wavs_full_of_nan_and_infinity_still_transcode() {
    // Found by the decode_wav fuzz target: float samples are stored as-is, and NaN or
    // infinity reached the FFT resampler, which panicked.
    let mut samples = sine(1_000.0, 0.5, 44_100, 4_410);
    for (index, sample) in samples.iter_mut().enumerate() {
        match index % 7 {
            0 => *sample = f32::NAN,
            1 => *sample = f32::INFINITY,
            2 => *sample = -3.0e38,
            _ => {}
        }
    }
    for format in [SampleFormat::F32, SampleFormat::F64] {
        let file = wav(WavSpec::new(format, 44_100, 1), &samples);
        let telephony = to_telephony(&file, &Hint::NONE, &Limits::default()).unwrap();
        assert_eq!(telephony.ulaw.len(), 800, "{format:?}");
    }
}

#[test]
fn errors_come_through_typed() {
    assert!(matches!(
        to_telephony(b"not audio", &Hint::NONE, &Limits::default()),
        Err(AudioError::UnknownFormat)
    ));
    let limits = Limits {
        max_duration: Duration::from_millis(500),
        ..Limits::default()
    };
    assert!(matches!(
        to_telephony(MP3, &Hint::NONE, &limits),
        Err(AudioError::TooLong { .. })
    ));
}
