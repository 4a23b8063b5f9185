//! Parser and serializer throughput on a typical trunk INVITE with an SDP offer
//! (`tests/data/local-trunk-invite.sip`: two Vias, Record-Route, Contact, Allow, Supported,
//! User-Agent, Content-Type and a 209-octet SDP body; 948 octets in all).
//!
//! Run with `cargo bench -p sip --bench parse`; figures are messages per second
//! (`Throughput::Elements(1)`). The goal is at least 250,000 parse+serialize per second on one core.

// Benchmark set-up: a failure there is a bug to see at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// criterion_group! generates an undocumented pub function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sip::message::parse;

const TRUNK_INVITE: &[u8] = include_bytes!("../tests/data/local-trunk-invite.sip");

fn bench(c: &mut Criterion) {
    let message = parse(TRUNK_INVITE).expect("the benchmark input parses");
    let mut group = c.benchmark_group("trunk_invite");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse+serialize", |b| {
        b.iter(|| {
            let message = parse(black_box(TRUNK_INVITE)).expect("parses");
            black_box(message.to_bytes())
        })
    });
    group.bench_function("parse", |b| {
        b.iter(|| parse(black_box(TRUNK_INVITE)).expect("parses"))
    });
    group.bench_function("serialize", |b| b.iter(|| black_box(&message).to_bytes()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
