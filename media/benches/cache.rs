//! `POST /media` answered from a fresh cache entry, through the axum Router (JSON parsing,
//! URL normalisation and id hashing, the index look-up, JSON answer). Goal: p99 ≤ 1 ms.
//!
//! Criterion reports the mean and median; before it runs, a plain loop of 20,000 timed
//! requests prints p50 / p99 / p99.9, which criterion does not give.
//!
//! Run: `cargo bench -p media --bench cache`

// Bench set-up: a failed unwrap is a broken bench, with the panic naming the line.
#![allow(clippy::unwrap_used)]

#[path = "../tests/cache_support/mod.rs"]
mod cache_support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cache_support::{cache, prompt, Origin, Reply, TestClock};
use criterion::{criterion_group, criterion_main, Criterion};
use tower::ServiceExt;

async fn post(router: &Router, body: &str) -> StatusCode {
    let request = Request::post("/media")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    // Drain the body, as a server would when writing it out.
    let _ = axum::body::to_bytes(response.into_body(), 4_096)
        .await
        .unwrap();
    status
}

fn post_hit(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (router, body, _origin) = runtime.block_on(async {
        let clock = TestClock::new();
        let origin = Origin::start(&clock).await;
        // A 5 s prompt, fresh for a day.
        origin.set(
            "/welcome.wav",
            Reply::audio(prompt(5_000, 440.0), &[("cache-control", "max-age=86400")]),
        );
        let router = media::http::routes(cache(dir.path(), &clock, 1 << 30));
        let body = serde_json::json!({ "url": origin.url("/welcome.wav") }).to_string();
        assert_eq!(
            post(&router, &body).await,
            StatusCode::OK,
            "the first request fills the cache"
        );
        (router, body, origin)
    });

    let mut samples: Vec<Duration> = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let start = Instant::now();
        let status = runtime.block_on(post(&router, &body));
        samples.push(start.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    samples.sort();
    let percentile = |fraction: f64| {
        samples[((samples.len() as f64 * fraction) as usize).min(samples.len() - 1)]
    };
    eprintln!(
        "post_media_hit over {} requests: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        samples.len(),
        percentile(0.50),
        percentile(0.99),
        percentile(0.999),
        samples[samples.len() - 1]
    );

    criterion.bench_function("post_media_hit", |bench| {
        bench.iter(|| black_box(runtime.block_on(post(&router, black_box(&body)))))
    });
}

criterion_group!(benches, post_hit);
criterion_main!(benches);
