//! Test support shared by the integration tests and the benches: a tiny WAV writer for every
//! sample format the decoder supports, tone generators, and signal measurements.
//!
//! Fixtures are generated here rather than checked in, so every test says exactly what its
//! input contains.

#![allow(dead_code)]

use std::f64::consts::TAU;

/// The sample encodings the WAV writer can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// 8-bit unsigned PCM (offset 128).
    U8,
    /// 16-bit signed PCM.
    I16,
    /// 24-bit signed PCM.
    I24,
    /// 32-bit signed PCM.
    I32,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// G.711 µ-law, 8 bits.
    Ulaw,
    /// G.711 A-law, 8 bits.
    Alaw,
}

impl SampleFormat {
    /// Every format.
    pub const ALL: [SampleFormat; 8] = [
        SampleFormat::U8,
        SampleFormat::I16,
        SampleFormat::I24,
        SampleFormat::I32,
        SampleFormat::F32,
        SampleFormat::F64,
        SampleFormat::Ulaw,
        SampleFormat::Alaw,
    ];

    /// Bits per sample on disk.
    pub fn bits(self) -> u16 {
        match self {
            SampleFormat::U8 | SampleFormat::Ulaw | SampleFormat::Alaw => 8,
            SampleFormat::I16 => 16,
            SampleFormat::I24 => 24,
            SampleFormat::I32 | SampleFormat::F32 => 32,
            SampleFormat::F64 => 64,
        }
    }

    /// The WAVE format tag (mmreg.h): PCM 1, IEEE float 3, A-law 6, µ-law 7.
    fn tag(self) -> u16 {
        match self {
            SampleFormat::U8 | SampleFormat::I16 | SampleFormat::I24 | SampleFormat::I32 => 1,
            SampleFormat::F32 | SampleFormat::F64 => 3,
            SampleFormat::Alaw => 6,
            SampleFormat::Ulaw => 7,
        }
    }

    /// The worst-case error of one sample after a round trip through this format, relative to
    /// full scale (1.0).
    pub fn tolerance(self) -> f32 {
        match self {
            SampleFormat::U8 => 1.0 / 128.0,
            SampleFormat::I16 => 1.0 / 32_768.0,
            SampleFormat::I24 | SampleFormat::I32 | SampleFormat::F32 | SampleFormat::F64 => 1e-6,
            // Largest G.711 step is 1,024 (µ-law) / 1,024 (A-law) in 16-bit units; half a step
            // plus the clipping of the top decision value.
            SampleFormat::Ulaw | SampleFormat::Alaw => 1_100.0 / 32_768.0,
        }
    }
}

/// Options for [`wav`].
#[derive(Debug, Clone, Copy)]
pub struct WavSpec {
    /// Sample encoding.
    pub format: SampleFormat,
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Write a WAVE_FORMAT_EXTENSIBLE header (PCM and float only).
    pub extensible: bool,
}

impl WavSpec {
    /// A plain (non-extensible) spec.
    pub fn new(format: SampleFormat, sample_rate: u32, channels: u16) -> Self {
        WavSpec {
            format,
            sample_rate,
            channels,
            extensible: false,
        }
    }
}

/// Writes interleaved samples (nominally −1.0 ..= 1.0) as a complete RIFF/WAVE file.
pub fn wav(spec: WavSpec, samples: &[f32]) -> Vec<u8> {
    let data = encode_samples(spec.format, samples);
    let mut fmt = Vec::new();
    let bytes_per_sample = u32::from(spec.format.bits() / 8);
    let block_align = u32::from(spec.channels) * bytes_per_sample;
    let tag = if spec.extensible {
        0xFFFE
    } else {
        spec.format.tag()
    };
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&spec.channels.to_le_bytes());
    fmt.extend_from_slice(&spec.sample_rate.to_le_bytes());
    fmt.extend_from_slice(&(spec.sample_rate * block_align).to_le_bytes());
    fmt.extend_from_slice(&(block_align as u16).to_le_bytes());
    fmt.extend_from_slice(&spec.format.bits().to_le_bytes());
    if spec.extensible {
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&spec.format.bits().to_le_bytes());
        let mask: u32 = if spec.channels >= 32 {
            u32::MAX
        } else {
            (1u32 << spec.channels) - 1
        };
        fmt.extend_from_slice(&mask.to_le_bytes());
        fmt.extend_from_slice(&u32::from(spec.format.tag()).to_le_bytes());
        fmt.extend_from_slice(&[
            0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
        ]);
    } else if spec.format.tag() != 1 {
        // WAVEFORMATEX: non-PCM formats carry cbSize.
        fmt.extend_from_slice(&0u16.to_le_bytes());
    }
    let mut file = Vec::with_capacity(data.len() + 64);
    file.extend_from_slice(b"RIFF");
    let riff_len = 4 + 8 + fmt.len() + 8 + data.len() + data.len() % 2;
    file.extend_from_slice(&(riff_len as u32).to_le_bytes());
    file.extend_from_slice(b"WAVE");
    file.extend_from_slice(b"fmt ");
    file.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    file.extend_from_slice(&fmt);
    file.extend_from_slice(b"data");
    file.extend_from_slice(&(data.len() as u32).to_le_bytes());
    file.extend_from_slice(&data);
    if data.len() % 2 == 1 {
        file.push(0);
    }
    file
}

fn encode_samples(format: SampleFormat, samples: &[f32]) -> Vec<u8> {
    let mut data = Vec::with_capacity(samples.len() * usize::from(format.bits() / 8));
    for &sample in samples {
        let clipped = f64::from(sample).clamp(-1.0, 1.0);
        match format {
            SampleFormat::U8 => {
                data.push(((clipped * 128.0).round().clamp(-128.0, 127.0) as i16 + 128) as u8)
            }
            SampleFormat::I16 => data.extend_from_slice(&to_i16(clipped).to_le_bytes()),
            SampleFormat::I24 => {
                let value = (clipped * 8_388_607.0).round() as i32;
                data.extend_from_slice(&value.to_le_bytes()[..3]);
            }
            SampleFormat::I32 => {
                let value = (clipped * 2_147_483_647.0).round() as i32;
                data.extend_from_slice(&value.to_le_bytes());
            }
            SampleFormat::F32 => data.extend_from_slice(&sample.to_le_bytes()),
            SampleFormat::F64 => data.extend_from_slice(&f64::from(sample).to_le_bytes()),
            SampleFormat::Ulaw => data.push(media::codec::encode_ulaw_sample(to_i16(clipped))),
            SampleFormat::Alaw => data.push(media::codec::encode_alaw_sample(to_i16(clipped))),
        }
    }
    data
}

fn to_i16(sample: f64) -> i16 {
    (sample * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// A sine of `frequency` Hz and `amplitude`, `length` samples at `sample_rate`, starting at
/// phase 0.
pub fn sine(frequency: f64, amplitude: f64, sample_rate: u32, length: usize) -> Vec<f32> {
    (0..length)
        .map(|n| (amplitude * (TAU * frequency * n as f64 / f64::from(sample_rate)).sin()) as f32)
        .collect()
}

/// Interleaves `channels` copies of a mono signal, scaling channel `c` by `gains[c]`.
pub fn interleave(mono: &[f32], gains: &[f32]) -> Vec<f32> {
    mono.iter()
        .flat_map(|&sample| gains.iter().map(move |&gain| sample * gain))
        .collect()
}

/// Signal-to-noise ratio in dB of `actual` against `reference` (equal lengths).
pub fn snr_db(reference: &[f32], actual: &[f32]) -> f64 {
    assert_eq!(reference.len(), actual.len());
    let signal: f64 = reference.iter().map(|&x| f64::from(x).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(actual)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    10.0 * (signal / noise.max(1e-30)).log10()
}

/// Least-squares fit of `a·sin(ωn) + b·cos(ωn)` at `frequency` Hz to `samples`: returns the
/// fitted sinusoid (so amplitude and phase errors are forgiven, but not distortion or noise).
pub fn fit_sine(samples: &[f32], frequency: f64, sample_rate: u32) -> Vec<f32> {
    let omega = TAU * frequency / f64::from(sample_rate);
    let (mut ss, mut cc, mut sc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (n, &y) in samples.iter().enumerate() {
        let (s, c) = (omega * n as f64).sin_cos();
        let y = f64::from(y);
        ss += s * s;
        cc += c * c;
        sc += s * c;
        ys += y * s;
        yc += y * c;
    }
    let determinant = ss * cc - sc * sc;
    let a = (ys * cc - yc * sc) / determinant;
    let b = (yc * ss - ys * sc) / determinant;
    (0..samples.len())
        .map(|n| {
            let (s, c) = (omega * n as f64).sin_cos();
            (a * s + b * c) as f32
        })
        .collect()
}

/// Root-mean-square level of `samples`.
pub fn rms(samples: &[f32]) -> f64 {
    let sum: f64 = samples.iter().map(|&x| f64::from(x).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}
