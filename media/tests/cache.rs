//! Prompt cache against a real HTTP origin on 127.0.0.1: hits and misses, RFC 9111 freshness
//! and revalidation, no-store, stale-if-error, single flight, LRU eviction, restart, refused
//! content and addresses, body and redirect caps, and atomic replacement on disk.

// Test helpers too: a failed unwrap is a failed test, with the panic naming the line.
#![allow(clippy::unwrap_used)]

mod cache_support;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use cache_support::{cache, cache_with, prompt, Origin, Reply, TestClock};
use media::cache::{AddressPolicy, CacheConfig, CacheError, Outcome, Refusal};

const BUDGET: u64 = 10 << 20;

#[tokio::test]
async fn miss_then_hit_serves_the_transcoded_audio() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/a.wav",
        Reply::audio(prompt(500, 440.0), &[("cache-control", "max-age=60")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);

    let first = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    assert_eq!(first.outcome, Outcome::Miss);
    assert_eq!(first.size, 4_000, "0.5 s at 8 kHz, one byte per sample");
    assert_eq!(first.duration, Duration::from_millis(500));
    clock.advance(Duration::from_secs(59));
    let second = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    assert_eq!(second.outcome, Outcome::Hit);
    assert_eq!(
        (second.id.as_str(), second.etag.as_str()),
        (first.id.as_str(), first.etag.as_str())
    );
    assert_eq!(origin.count("/a.wav"), 1);

    let media = cache.open(&first.id).await.unwrap().unwrap();
    assert_eq!(media.bytes.len(), 4_000);
    assert_eq!(media.etag, first.etag);
    // The file on disk is the processed µ-law, not the WAV.
    let on_disk = std::fs::read(dir.path().join(format!("{}.ulaw", first.id))).unwrap();
    assert_eq!(on_disk, media.bytes.to_vec());
    assert!(cache
        .open("0123456789abcdef0123456789abcdef")
        .await
        .unwrap()
        .is_none());
    assert!(cache.open("../etc/passwd").await.unwrap().is_none());
    let metrics = cache.metrics();
    assert_eq!(
        (
            metrics.hits,
            metrics.misses,
            metrics.entries,
            metrics.bytes_stored
        ),
        (1, 1, 1, 4_000)
    );
}

#[tokio::test]
async fn expiry_without_validators_refetches_under_the_same_id() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/a.wav",
        Reply::audio(prompt(200, 440.0), &[("cache-control", "max-age=1")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);

    let first = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    clock.advance(Duration::from_secs(2));
    origin.set(
        "/a.wav",
        Reply::audio(prompt(300, 440.0), &[("cache-control", "max-age=1")]),
    );
    let second = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    assert_eq!(second.outcome, Outcome::Miss);
    assert_eq!(second.id, first.id);
    assert_ne!(second.etag, first.etag, "new content, new strong ETag");
    assert_eq!(second.size, 2_400);
    assert_eq!(origin.count("/a.wav"), 2);
    assert_eq!(
        cache.metrics().bytes_stored,
        2_400,
        "the replaced entry's bytes are not counted twice"
    );
}

#[tokio::test]
async fn etag_revalidation_keeps_the_entry_and_refreshes_freshness() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    let headers = [("cache-control", "max-age=10"), ("etag", "\"v1\"")];
    origin.set("/a.wav", Reply::audio(prompt(200, 440.0), &headers));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);

    let first = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    clock.advance(Duration::from_secs(11));
    let second = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    assert_eq!(second.outcome, Outcome::Revalidated);
    assert_eq!((&second.id, &second.etag), (&first.id, &first.etag));
    let sent = origin.last_headers("/a.wav").unwrap();
    assert_eq!(sent.get("if-none-match").unwrap(), "\"v1\"");
    // The 304 carried max-age=10 and a new Date: fresh for another 10 s.
    clock.advance(Duration::from_secs(9));
    assert_eq!(
        cache
            .get_or_fetch(&origin.url("/a.wav"))
            .await
            .unwrap()
            .outcome,
        Outcome::Hit
    );
    assert_eq!(origin.count("/a.wav"), 2);
    assert_eq!(cache.metrics().revalidations, 1);
    assert!(cache.open(&first.id).await.unwrap().is_some());
}

#[tokio::test]
async fn last_modified_revalidation() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    let modified = "Mon, 02 Jan 2023 03:04:05 GMT";
    let headers = [("cache-control", "max-age=1"), ("last-modified", modified)];
    origin.set("/a.wav", Reply::audio(prompt(200, 440.0), &headers));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);

    let first = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    clock.advance(Duration::from_secs(2));
    let second = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    assert_eq!(second.outcome, Outcome::Revalidated);
    assert_eq!(second.id, first.id);
    let sent = origin.last_headers("/a.wav").unwrap();
    assert_eq!(sent.get("if-modified-since").unwrap(), modified);
    assert!(sent.get("if-none-match").is_none());
}

#[tokio::test]
async fn heuristic_freshness_from_last_modified() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    // Modified 1,000 s before the response's Date: fresh for 100 s (RFC 9111 §4.2.2, 10 %).
    let modified = httpdate::fmt_http_date(cache_support_now(&clock) - Duration::from_secs(1_000));
    origin.set(
        "/a.wav",
        Reply::audio(prompt(100, 440.0), &[("last-modified", modified.as_str())]),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);

    cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    clock.advance(Duration::from_secs(99));
    assert_eq!(
        cache
            .get_or_fetch(&origin.url("/a.wav"))
            .await
            .unwrap()
            .outcome,
        Outcome::Hit
    );
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        cache
            .get_or_fetch(&origin.url("/a.wav"))
            .await
            .unwrap()
            .outcome,
        Outcome::Revalidated
    );
}

fn cache_support_now(clock: &Arc<TestClock>) -> std::time::SystemTime {
    use media::cache::Clock;
    clock.now()
}

#[tokio::test]
async fn no_cache_revalidates_every_time() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    let headers = [
        ("cache-control", "no-cache, max-age=600"),
        ("etag", "\"n\""),
    ];
    origin.set("/a.wav", Reply::audio(prompt(100, 440.0), &headers));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);

    assert_eq!(
        cache
            .get_or_fetch(&origin.url("/a.wav"))
            .await
            .unwrap()
            .outcome,
        Outcome::Miss
    );
    for round in 0..3 {
        let entry = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
        assert_eq!(entry.outcome, Outcome::Revalidated, "round {round}");
    }
    assert_eq!(origin.count("/a.wav"), 4);
}

#[tokio::test]
async fn no_store_and_private_are_served_once_and_never_kept() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/secret.wav",
        Reply::audio(prompt(100, 440.0), &[("cache-control", "no-store")]),
    );
    origin.set(
        "/private.wav",
        Reply::audio(
            prompt(100, 440.0),
            &[("cache-control", "private, max-age=60")],
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);

    for path in ["/secret.wav", "/private.wav"] {
        let first = cache.get_or_fetch(&origin.url(path)).await.unwrap();
        assert_eq!(first.outcome, Outcome::Miss);
        let second = cache.get_or_fetch(&origin.url(path)).await.unwrap();
        assert_eq!(
            second.outcome,
            Outcome::Miss,
            "{path}: not stored, so fetched again"
        );
        assert_eq!(origin.count(path), 2);
        assert!(!dir.path().join(format!("{}.ulaw", first.id)).exists());
        let media = cache.open(&first.id).await.unwrap().unwrap();
        assert_eq!(media.bytes.len(), 800);
        assert!(
            cache.open(&first.id).await.unwrap().is_none(),
            "{path}: single use"
        );
    }
    assert_eq!(cache.metrics().entries, 0);
}

#[tokio::test]
async fn no_store_on_refresh_drops_the_stored_entry() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/a.wav",
        Reply::audio(prompt(100, 440.0), &[("cache-control", "max-age=1")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);
    let first = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    assert!(dir.path().join(format!("{}.ulaw", first.id)).exists());
    clock.advance(Duration::from_secs(2));
    origin.set(
        "/a.wav",
        Reply::audio(prompt(100, 440.0), &[("cache-control", "no-store")]),
    );
    cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    assert!(!dir.path().join(format!("{}.ulaw", first.id)).exists());
    assert_eq!(cache.metrics().entries, 0);
}

#[tokio::test]
async fn stale_if_error_serves_stale_within_the_window_only() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    let headers = [("cache-control", "max-age=1, stale-if-error=10")];
    origin.set("/a.wav", Reply::audio(prompt(100, 440.0), &headers));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);
    let first = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();

    origin.set("/a.wav", Reply::status(500, &[]));
    clock.advance(Duration::from_secs(5));
    let stale = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    assert_eq!(stale.outcome, Outcome::Stale);
    assert_eq!((&stale.id, &stale.etag), (&first.id, &first.etag));
    assert!(cache.open(&first.id).await.unwrap().is_some());

    clock.advance(Duration::from_secs(10));
    let error = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap_err();
    assert!(
        matches!(error, CacheError::OriginStatus { status: 500 }),
        "{error:?}"
    );
    let metrics = cache.metrics();
    assert_eq!((metrics.stale_served, metrics.fetch_errors), (1, 2));
}

/// A 404 is not an origin failure in the sense of RFC 5861 §4: no stale answer even in-window.
#[tokio::test]
async fn stale_if_error_does_not_cover_a_404() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/a.wav",
        Reply::audio(
            prompt(100, 440.0),
            &[("cache-control", "max-age=1, stale-if-error=60")],
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);
    cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    origin.set("/a.wav", Reply::status(404, &[]));
    clock.advance(Duration::from_secs(2));
    let error = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap_err();
    assert!(
        matches!(error, CacheError::OriginStatus { status: 404 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn fifty_concurrent_requests_share_one_origin_fetch() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    let reply = Reply::audio(prompt(300, 440.0), &[("cache-control", "max-age=60")]);
    origin.set("/a.wav", reply.delayed(Duration::from_millis(300)));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);

    let url = origin.url("/a.wav");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            let url = url.clone();
            tokio::spawn(async move { cache.get_or_fetch(&url).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap().id);
    }
    assert_eq!(origin.count("/a.wav"), 1);
    assert!(ids.iter().all(|id| *id == ids[0]));
    assert_eq!(cache.metrics().misses, 1);
}

#[tokio::test]
async fn lru_eviction_under_a_small_budget() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    for (path, frequency) in [("/a.wav", 300.0), ("/b.wav", 400.0), ("/c.wav", 500.0)] {
        origin.set(
            path,
            Reply::audio(prompt(500, frequency), &[("cache-control", "max-age=600")]),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // 4,000 bytes per entry: two fit.
    let cache = cache(dir.path(), &clock, 9_000);
    let a = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    let b = cache.get_or_fetch(&origin.url("/b.wav")).await.unwrap();
    // Using a makes b the least recently used.
    assert_eq!(
        cache
            .get_or_fetch(&origin.url("/a.wav"))
            .await
            .unwrap()
            .outcome,
        Outcome::Hit
    );
    cache.get_or_fetch(&origin.url("/c.wav")).await.unwrap();

    let metrics = cache.metrics();
    assert_eq!(
        (metrics.evictions, metrics.entries, metrics.bytes_stored),
        (1, 2, 8_000)
    );
    assert!(cache.open(&b.id).await.unwrap().is_none());
    assert!(!dir.path().join(format!("{}.ulaw", b.id)).exists());
    assert!(cache.open(&a.id).await.unwrap().is_some());
    assert_eq!(
        cache
            .get_or_fetch(&origin.url("/b.wav"))
            .await
            .unwrap()
            .outcome,
        Outcome::Miss
    );
    // Opening a (above) made c the least recently used, so c went for b.
    assert_eq!(
        cache
            .get_or_fetch(&origin.url("/a.wav"))
            .await
            .unwrap()
            .outcome,
        Outcome::Hit
    );
    assert_eq!(
        cache
            .get_or_fetch(&origin.url("/c.wav"))
            .await
            .unwrap()
            .outcome,
        Outcome::Miss
    );
}

#[tokio::test]
async fn an_entry_larger_than_the_budget_is_served_once_and_not_kept() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/big.wav",
        Reply::audio(prompt(1_000, 440.0), &[("cache-control", "max-age=600")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, 5_000);
    let entry = cache.get_or_fetch(&origin.url("/big.wav")).await.unwrap();
    assert_eq!((entry.outcome, entry.size), (Outcome::Miss, 8_000));
    assert_eq!(cache.metrics().entries, 0);
    assert_eq!(
        cache.open(&entry.id).await.unwrap().unwrap().bytes.len(),
        8_000
    );
    assert!(cache.open(&entry.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_restarted_cache_keeps_its_entries_and_cleans_its_directory() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/a.wav",
        Reply::audio(prompt(100, 440.0), &[("cache-control", "max-age=600")]),
    );
    origin.set(
        "/b.wav",
        Reply::audio(prompt(100, 880.0), &[("cache-control", "max-age=600")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let cache = cache(dir.path(), &clock, BUDGET);
        let a = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
        let b = cache.get_or_fetch(&origin.url("/b.wav")).await.unwrap();
        (a, b)
    };
    // Damage: b's file vanishes, a stray entry file and a leftover temporary file appear, and
    // an unrelated file that must be left alone.
    std::fs::remove_file(dir.path().join(format!("{}.ulaw", b.id))).unwrap();
    let stray = dir.path().join("ffffffffffffffffffffffffffffffff.ulaw");
    std::fs::write(&stray, b"stray").unwrap();
    let temporary = dir.path().join(".tmp-1-1");
    std::fs::write(&temporary, b"partial").unwrap();
    let unrelated = dir.path().join("README");
    std::fs::write(&unrelated, b"keep me").unwrap();

    let cache = cache(dir.path(), &clock, BUDGET);
    assert_eq!(cache.metrics().entries, 1);
    assert!(!stray.exists() && !temporary.exists() && unrelated.exists());
    let again = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    assert_eq!(
        (again.outcome, &again.id, &again.etag),
        (Outcome::Hit, &a.id, &a.etag)
    );
    assert_eq!(origin.count("/a.wav"), 1);
    assert_eq!(
        cache
            .get_or_fetch(&origin.url("/b.wav"))
            .await
            .unwrap()
            .outcome,
        Outcome::Miss
    );
}

#[tokio::test]
async fn a_corrupt_index_starts_empty() {
    let clock = TestClock::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.json"), b"{not json").unwrap();
    std::fs::write(
        dir.path().join("0123456789abcdef0123456789abcdef.ulaw"),
        b"orphan",
    )
    .unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);
    assert_eq!(cache.metrics().entries, 0);
    assert!(!dir
        .path()
        .join("0123456789abcdef0123456789abcdef.ulaw")
        .exists());
}

#[tokio::test]
async fn html_with_200_is_an_error_and_not_cached() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    let mut reply = Reply::audio(
        b"<html>oops</html>".to_vec(),
        &[("cache-control", "max-age=600")],
    );
    reply.headers[0].1 = "text/html; charset=utf-8".to_owned();
    origin.set("/page", reply);
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);
    for _ in 0..2 {
        let error = cache.get_or_fetch(&origin.url("/page")).await.unwrap_err();
        assert!(
            matches!(&error, CacheError::NotAudio { content_type } if content_type.starts_with("text/html"))
        );
    }
    assert_eq!(origin.count("/page"), 2);
    assert_eq!(cache.metrics().entries, 0);
}

#[tokio::test]
async fn undecodable_audio_and_non_2xx_are_errors() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/noise.wav",
        Reply::audio(b"RIFF\x10\0\0\0WAVEjunkjunk".to_vec(), &[]),
    );
    origin.set("/gone.wav", Reply::status(410, &[]));
    origin.set(
        "/created.wav",
        Reply {
            status: 201,
            ..Reply::audio(prompt(100, 440.0), &[])
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);
    let error = cache
        .get_or_fetch(&origin.url("/noise.wav"))
        .await
        .unwrap_err();
    assert!(matches!(error, CacheError::Undecodable(_)), "{error:?}");
    let error = cache
        .get_or_fetch(&origin.url("/gone.wav"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CacheError::OriginStatus { status: 410 }),
        "{error:?}"
    );
    let error = cache
        .get_or_fetch(&origin.url("/missing.wav"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CacheError::OriginStatus { status: 404 }),
        "{error:?}"
    );
    let error = cache
        .get_or_fetch(&origin.url("/created.wav"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CacheError::OriginStatus { status: 201 }),
        "{error:?}"
    );
    assert_eq!(cache.metrics().entries, 0);
}

#[tokio::test]
async fn the_body_cap_is_enforced() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set("/a.wav", Reply::audio(prompt(1_000, 440.0), &[]));
    let dir = tempfile::tempdir().unwrap();
    let mut config = CacheConfig::new(dir.path(), BUDGET);
    config.max_body_bytes = 10_000;
    let cache = cache_with(config, &clock);
    let error = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap_err();
    assert!(
        matches!(error, CacheError::TooLarge { limit: 10_000 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_body_cap_holds_without_a_content_length() {
    // A hand-written origin that streams a chunked body with no Content-Length, forever.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4_096];
        let _ = socket.read(&mut request).await.unwrap();
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ntransfer-encoding: chunked\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 1_000, "x".repeat(1_000));
        let mut sent = 0usize;
        while socket.write_all(chunk.as_bytes()).await.is_ok() {
            sent += 1_000;
            if sent > 10_000_000 {
                break;
            }
        }
        sent
    });
    let clock = TestClock::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = CacheConfig::new(dir.path(), BUDGET);
    config.max_body_bytes = 50_000;
    let cache = cache_with(config, &clock);
    let error = cache
        .get_or_fetch(&format!("http://{address}/endless.wav"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CacheError::TooLarge { limit: 50_000 }),
        "{error:?}"
    );
    let sent = server.await.unwrap();
    assert!(
        sent < 10_000_000,
        "the cache stopped reading early ({sent} bytes sent)"
    );
}

#[tokio::test]
async fn a_slow_origin_times_out() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/slow.wav",
        Reply::audio(prompt(100, 440.0), &[]).delayed(Duration::from_secs(3)),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = CacheConfig::new(dir.path(), BUDGET);
    config.total_timeout = Duration::from_millis(200);
    let cache = cache_with(config, &clock);
    let error = cache
        .get_or_fetch(&origin.url("/slow.wav"))
        .await
        .unwrap_err();
    assert!(matches!(error, CacheError::Timeout { .. }), "{error:?}");
}

#[tokio::test]
async fn redirects_are_followed_up_to_the_cap() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/final.wav",
        Reply::audio(prompt(100, 440.0), &[("cache-control", "max-age=60")]),
    );
    // /r0 → /r1 → /r2 → /final.wav is three redirects; /r9 → /r0 is four.
    origin.set("/r2", Reply::status(302, &[("location", "/final.wav")]));
    origin.set("/r1", Reply::status(301, &[("location", "r2")]));
    let absolute = origin.url("/r1");
    origin.set(
        "/r0",
        Reply::status(307, &[("location", absolute.as_str())]),
    );
    origin.set("/r9", Reply::status(308, &[("location", "/r0")]));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);

    let entry = cache.get_or_fetch(&origin.url("/r0")).await.unwrap();
    assert_eq!(entry.outcome, Outcome::Miss);
    assert_eq!(
        entry.id,
        media::cache::Cache::id_for_url(&origin.url("/r0")).unwrap(),
        "keyed by the URL asked for"
    );
    let error = cache.get_or_fetch(&origin.url("/r9")).await.unwrap_err();
    assert!(
        matches!(error, CacheError::TooManyRedirects { limit: 3 }),
        "{error:?}"
    );
    assert_eq!(origin.count("/final.wav"), 1);
}

#[tokio::test]
async fn redirects_to_refused_addresses_or_schemes_are_refused() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/metadata",
        Reply::status(
            302,
            &[("location", "http://169.254.169.254/latest/meta-data/")],
        ),
    );
    origin.set(
        "/file",
        Reply::status(302, &[("location", "file:///etc/passwd")]),
    );
    origin.set("/nowhere", Reply::status(302, &[]));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);
    let error = cache
        .get_or_fetch(&origin.url("/metadata"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CacheError::RefusedAddress {
                reason: Refusal::Metadata,
                ..
            }
        ),
        "{error:?}"
    );
    let error = cache.get_or_fetch(&origin.url("/file")).await.unwrap_err();
    assert!(matches!(error, CacheError::UnsupportedScheme), "{error:?}");
    let error = cache
        .get_or_fetch(&origin.url("/nowhere"))
        .await
        .unwrap_err();
    assert!(matches!(error, CacheError::InvalidRedirect), "{error:?}");
}

#[tokio::test]
async fn refused_addresses_are_never_contacted() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set("/a.wav", Reply::audio(prompt(100, 440.0), &[]));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);
    for (url, expected) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            Refusal::Metadata,
        ),
        ("http://[fd00:ec2::254]/", Refusal::Metadata),
        ("http://169.254.10.1/a.wav", Refusal::LinkLocal),
        ("http://[fe80::1]/a.wav", Refusal::LinkLocal),
    ] {
        let error = cache.get_or_fetch(url).await.unwrap_err();
        assert!(
            matches!(error, CacheError::RefusedAddress { reason, .. } if reason == expected),
            "{url}: {error:?}"
        );
    }
    let error = cache
        .get_or_fetch("ftp://example.com/a.wav")
        .await
        .unwrap_err();
    assert!(matches!(error, CacheError::UnsupportedScheme));

    // With loopback and private addresses disallowed, the test origin itself is refused,
    // also under a name ("localhost") that resolves to it.
    let strict_dir = tempfile::tempdir().unwrap();
    let mut config = CacheConfig::new(strict_dir.path(), BUDGET);
    config.policy = AddressPolicy {
        allow_private: false,
        allow_loopback: false,
    };
    let strict = cache_with(config, &clock);
    let error = strict
        .get_or_fetch(&origin.url("/a.wav"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CacheError::RefusedAddress {
                reason: Refusal::Loopback,
                ..
            }
        ),
        "{error:?}"
    );
    let by_name = format!("http://localhost:{}/a.wav", origin.address.port());
    let error = strict.get_or_fetch(&by_name).await.unwrap_err();
    assert!(
        matches!(
            error,
            CacheError::RefusedAddress {
                reason: Refusal::Loopback,
                ..
            }
        ),
        "{error:?}"
    );
    let error = strict
        .get_or_fetch("http://10.0.0.1/a.wav")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CacheError::RefusedAddress {
                reason: Refusal::Private,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(origin.count("/a.wav"), 0);
}

#[tokio::test]
async fn a_reader_of_the_old_file_is_unaffected_by_a_refresh() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/a.wav",
        Reply::audio(prompt(500, 440.0), &[("cache-control", "max-age=1")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);
    let old = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    let old_bytes = cache.open(&old.id).await.unwrap().unwrap().bytes;
    let mut reader = std::fs::File::open(dir.path().join(format!("{}.ulaw", old.id))).unwrap();
    let mut head = [0u8; 100];
    reader.read_exact(&mut head).unwrap();

    clock.advance(Duration::from_secs(2));
    origin.set(
        "/a.wav",
        Reply::audio(prompt(700, 880.0), &[("cache-control", "max-age=1")]),
    );
    let new = cache.get_or_fetch(&origin.url("/a.wav")).await.unwrap();
    assert_eq!((new.outcome, &new.id), (Outcome::Miss, &old.id));
    assert_ne!(new.etag, old.etag);

    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    let mut seen = head.to_vec();
    seen.extend(rest);
    assert_eq!(
        seen,
        old_bytes.to_vec(),
        "the held file still reads the old content, whole"
    );
    let current = cache.open(&new.id).await.unwrap().unwrap();
    assert_eq!((current.bytes.len(), current.etag), (5_600, new.etag));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|item| item.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_host_name_is_resolved_vetted_and_pinned() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/a.wav",
        Reply::audio(prompt(100, 440.0), &[("cache-control", "max-age=60")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), &clock, BUDGET);
    // "localhost" goes through our resolver and the pinned client (the default policy allows
    // loopback); the origin listens on 127.0.0.1 only, so an IPv6 ::1 answer must fall back.
    let by_name = format!("http://LOCALHOST:{}/a.wav#ignored", origin.address.port());
    let entry = cache.get_or_fetch(&by_name).await.unwrap();
    assert_eq!(entry.outcome, Outcome::Miss);
    let normalised = format!("http://localhost:{}/a.wav", origin.address.port());
    assert_eq!(
        cache.get_or_fetch(&normalised).await.unwrap().outcome,
        Outcome::Hit
    );
    assert_eq!(origin.count("/a.wav"), 1);
}
