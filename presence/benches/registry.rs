//! Registry lookups: `reachable_devices` for an identity with two registered devices (the
//! router's question before every `<Dial><Client>`), and `status_of` (the HTTP resource).
//! Goal: at least 5,000,000 lookups per second on one core.
//!
//! Two working sets: `hot` cycles over 16 identities (their entries and queues stay in cache);
//! `cold` strides over 10,000 online identities with 20,000 devices, so that most lookups miss
//! the CPU caches, as they would on a busy node.
//!
//! Run with `cargo bench -p presence --bench registry`.

// Benchmark set-up: a failure there is a bug to see at once.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use presence::device::{channel, DeviceReceiver};
use presence::registry::{Config, DeviceGuard};
use presence::{Identity, Registry};

/// `count` online identities with two registered devices each.
fn populate(
    registry: &Registry,
    count: usize,
) -> (Vec<Identity>, Vec<(DeviceGuard, DeviceReceiver)>) {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let identities: Vec<Identity> = (0..count)
        .map(|index| Identity::new(&format!("user{index}")).unwrap())
        .collect();
    let mut devices = Vec::with_capacity(count * 2);
    for identity in &identities {
        for _ in 0..2 {
            let (sender, receiver) = channel(16);
            let guard = registry
                .connect(identity.clone(), true, sender, now)
                .unwrap();
            guard.set_incoming(true).unwrap();
            devices.push((guard, receiver));
        }
    }
    (identities, devices)
}

fn lookups(criterion: &mut Criterion) {
    let registry = Registry::new(Config::default());
    let (identities, _devices) = populate(&registry, 10_000);
    let hot = &identities[..16];
    let offline = Identity::new("nobody").unwrap();

    let mut group = criterion.benchmark_group("registry");
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    group.bench_function("reachable_devices hot (2 devices)", |bench| {
        bench.iter(|| {
            next = (next + 1) % hot.len();
            registry.reachable_devices(black_box(&hot[next]))
        })
    });
    group.bench_function("reachable_devices cold (2 devices)", |bench| {
        bench.iter(|| {
            // 7919 is prime, so the stride visits every identity in a scattered order.
            next = (next + 7919) % identities.len();
            registry.reachable_devices(black_box(&identities[next]))
        })
    });
    group.bench_function("reachable_devices offline", |bench| {
        bench.iter(|| registry.reachable_devices(black_box(&offline)))
    });
    group.bench_function("status_of hot (2 devices)", |bench| {
        bench.iter(|| {
            next = (next + 1) % hot.len();
            registry.status_of(black_box(&hot[next]))
        })
    });
    group.bench_function("status_of cold (2 devices)", |bench| {
        bench.iter(|| {
            next = (next + 7919) % identities.len();
            registry.status_of(black_box(&identities[next]))
        })
    });
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
