//! The prompt cache's transcode: a 30 s, 44.1 kHz, 16-bit stereo WAV (generated in memory)
//! through `to_telephony` to 8 kHz µ-law. Goal: ≤ 20 ms.
//!
//! Run: `cargo bench -p media --bench transcode`

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use media::{to_telephony, Hint, Limits};
use support::{interleave, sine, wav, SampleFormat, WavSpec};

fn transcode(criterion: &mut Criterion) {
    const SECONDS: usize = 30;
    // A 440 Hz tone on the left and 660 Hz on the right, not silence: the work is real.
    let left = sine(440.0, 0.5, 44_100, 44_100 * SECONDS);
    let right = sine(660.0, 0.5, 44_100, 44_100 * SECONDS);
    let mut samples = interleave(&left, &[1.0, 0.0]);
    for (frame, &sample) in samples.chunks_exact_mut(2).zip(&right) {
        frame[1] = sample;
    }
    let file = wav(WavSpec::new(SampleFormat::I16, 44_100, 2), &samples);
    let hint = Hint::content_type("audio/wav");
    let limits = Limits::default();

    let mut group = criterion.benchmark_group("transcode");
    group.throughput(Throughput::Bytes(file.len() as u64));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("wav_44k1_stereo_30s_to_ulaw", |bench| {
        bench.iter(|| {
            let telephony = to_telephony(black_box(&file), &hint, &limits);
            black_box(telephony.map(|telephony| telephony.ulaw.len()))
        })
    });
    group.finish();
}

criterion_group!(benches, transcode);
criterion_main!(benches);
