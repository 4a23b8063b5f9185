//! G.711 throughput: encode and decode over slices, µ-law and A-law, for one 20 ms RTP
//! packet (160 samples) and for a long buffer (64 Ki samples). Goal: ≥ 500 M samples/s.
//!
//! Run: `cargo bench -p media --bench codec`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use media::codec::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw, ulaw_to_alaw};

fn linear_samples(length: usize) -> Vec<i16> {
    // A deterministic spread over the whole 16-bit range, so every segment is exercised.
    (0..length)
        .map(|n| (n as u32).wrapping_mul(2_654_435_761) as i16)
        .collect()
}

fn g711(criterion: &mut Criterion) {
    for length in [160usize, 65_536] {
        let linear = linear_samples(length);
        let mut codes = vec![0u8; length];
        encode_ulaw(&linear, &mut codes);
        let mut decoded = vec![0i16; length];
        let mut transcoded = vec![0u8; length];

        let mut group = criterion.benchmark_group("g711");
        group.throughput(Throughput::Elements(length as u64));
        group.bench_function(BenchmarkId::new("encode_ulaw", length), |bench| {
            bench.iter(|| encode_ulaw(black_box(&linear), black_box(&mut codes)))
        });
        group.bench_function(BenchmarkId::new("decode_ulaw", length), |bench| {
            bench.iter(|| decode_ulaw(black_box(&codes), black_box(&mut decoded)))
        });
        group.bench_function(BenchmarkId::new("encode_alaw", length), |bench| {
            bench.iter(|| encode_alaw(black_box(&linear), black_box(&mut codes)))
        });
        group.bench_function(BenchmarkId::new("decode_alaw", length), |bench| {
            bench.iter(|| decode_alaw(black_box(&codes), black_box(&mut decoded)))
        });
        group.bench_function(BenchmarkId::new("ulaw_to_alaw", length), |bench| {
            bench.iter(|| ulaw_to_alaw(black_box(&codes), black_box(&mut transcoded)))
        });
        group.finish();
    }
}

criterion_group!(benches, g711);
criterion_main!(benches);
