//! `<Say>` through the prompt cache: real espeak-ng (which `scripts/test` installs; these tests
//! fail, not skip, without it), a counting wrapper to prove hits start no process, fake
//! synthesizers for single flight, timeouts and eviction, and the HTTP routes.

// Test helpers too: a failed unwrap is a failed test, with the panic naming the line.
#![allow(clippy::unwrap_used)]

mod cache_support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cache_support::{cache_with, prompt, TestClock};
use http_body_util::BodyExt;
use media::cache::speech::{Synthesis, MAX_TEXT_CHARS};
use media::cache::{Cache, CacheConfig, CacheError, EspeakNg, Outcome, SpeechError, Synthesizer};
use serde_json::Value;
use tower::ServiceExt;

/// Fails the test (with how to fix it) when espeak-ng is not installed.
fn require_espeak_ng() {
    let installed = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        installed,
        "espeak-ng is not installed: run scripts/test, or `apt-get install espeak-ng`"
    );
}

/// Counts calls, then delegates.
#[derive(Debug)]
struct Counting<S> {
    inner: S,
    calls: AtomicUsize,
}

impl<S> Counting<S> {
    fn new(inner: S) -> Arc<Counting<S>> {
        Arc::new(Counting {
            inner,
            calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<S: Synthesizer> Synthesizer for Counting<S> {
    fn synthesize<'a>(&'a self, text: &'a str, voice: &'a str) -> Synthesis<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.synthesize(text, voice)
    }
}

/// Answers a 440 Hz tone whose length grows with the text, after `delay`.
#[derive(Debug)]
struct Tone {
    delay: Duration,
}

impl Synthesizer for Tone {
    fn synthesize<'a>(&'a self, text: &'a str, _voice: &'a str) -> Synthesis<'a> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            Ok(prompt(100 * text.len(), 440.0))
        })
    }
}

/// Never answers; records when its future is dropped.
#[derive(Debug, Default)]
struct Hang {
    dropped: Arc<AtomicBool>,
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Synthesizer for Hang {
    fn synthesize<'a>(&'a self, _text: &'a str, _voice: &'a str) -> Synthesis<'a> {
        let guard = SetOnDrop(Arc::clone(&self.dropped));
        Box::pin(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Err(SpeechError::EmptyOutput)
        })
    }
}

fn config(dir: &Path, synthesizer: Arc<dyn Synthesizer>) -> CacheConfig {
    let mut config = CacheConfig::new(dir, 10 << 20);
    config.synthesizer = synthesizer;
    config
}

fn energy(ulaw: &[u8]) -> f64 {
    let mut linear = vec![0i16; ulaw.len()];
    media::codec::decode_ulaw(ulaw, &mut linear);
    let sum: f64 = linear.iter().map(|&sample| f64::from(sample).powi(2)).sum();
    (sum / linear.len().max(1) as f64).sqrt()
}

fn is_speech(
    result: &Result<media::cache::Entry, CacheError>,
    check: fn(&SpeechError) -> bool,
) -> bool {
    matches!(result, Err(CacheError::Speech(error)) if check(error))
}

#[tokio::test]
async fn espeak_ng_speaks_hello_world_once_then_hits() {
    require_espeak_ng();
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let espeak = Counting::new(EspeakNg::default());
    let cache = cache_with(config(dir.path(), espeak.clone()), &clock);

    let first = cache
        .get_or_synthesize("hello world", None, Some("en-US"))
        .await
        .unwrap();
    assert_eq!(first.outcome, Outcome::Miss);
    assert_eq!(espeak.calls(), 1);
    let seconds = first.duration.as_secs_f64();
    assert!((0.3..=5.0).contains(&seconds), "{seconds} s");
    let media = cache.open(&first.id).await.unwrap().unwrap();
    // 8 kHz µ-law: one byte per sample.
    assert_eq!(media.bytes.len() as u64, first.size);
    assert!((media.bytes.len() as f64 / 8_000.0 - seconds).abs() < 0.01);
    let rms = energy(&media.bytes);
    assert!(rms > 300.0, "speech too quiet: RMS {rms}");
    assert_eq!(media.etag, first.etag);

    // Same text, same voice (the language tag's case does not matter): no process.
    let second = cache
        .get_or_synthesize("hello world", None, Some("en-us"))
        .await
        .unwrap();
    assert_eq!(second.outcome, Outcome::Hit);
    assert_eq!(second.id, first.id);
    assert_eq!(espeak.calls(), 1);
    let metrics = cache.metrics();
    assert_eq!((metrics.hits, metrics.misses), (1, 1));

    // Another voice is another entry, and different audio.
    let man = cache
        .get_or_synthesize("hello world", Some("man"), Some("en-US"))
        .await
        .unwrap();
    assert_eq!(man.outcome, Outcome::Miss);
    assert_ne!(man.id, first.id);
    assert_ne!(man.etag, first.etag);
    assert_eq!(espeak.calls(), 2);
}

#[tokio::test]
async fn unknown_voices_and_missing_programs_are_typed_errors() {
    require_espeak_ng();
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let cache = cache_with(config(dir.path(), Arc::new(EspeakNg::default())), &clock);
    let result = cache
        .get_or_synthesize("hello", Some("nosuchvoice"), None)
        .await;
    assert!(
        is_speech(
            &result,
            |error| matches!(error, SpeechError::UnknownVoice { voice } if voice == "nosuchvoice")
        ),
        "{result:?}"
    );
    assert_eq!(cache.metrics().synthesis_errors, 1);
    assert_eq!(cache.metrics().entries, 0);

    let missing = EspeakNg {
        program: dir.path().join("no-such-espeak-ng"),
        ..EspeakNg::default()
    };
    let cache = cache_with(config(&dir.path().join("other"), Arc::new(missing)), &clock);
    let result = cache.get_or_synthesize("hello", None, None).await;
    assert!(
        is_speech(&result, |error| matches!(
            error,
            SpeechError::ProgramMissing { .. }
        )),
        "{result:?}"
    );
    let message = result.unwrap_err().to_string();
    assert!(message.contains("espeak-ng"), "{message}");
}

#[tokio::test]
async fn hostile_or_oversized_requests_never_start_a_process() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let tone = Counting::new(Tone {
        delay: Duration::ZERO,
    });
    let cache = cache_with(config(dir.path(), tone.clone()), &clock);
    for voice in ["en; rm -rf /", "--help", "en/../../x", "a b"] {
        let result = cache.get_or_synthesize("hi", Some(voice), None).await;
        assert!(
            is_speech(&result, |error| matches!(error, SpeechError::InvalidVoice)),
            "{voice:?}: {result:?}"
        );
    }
    let result = cache.get_or_synthesize("hi", None, Some("en+f3")).await;
    assert!(is_speech(&result, |error| matches!(
        error,
        SpeechError::InvalidLanguage
    )));
    let long = "a".repeat(MAX_TEXT_CHARS + 1);
    let result = cache.get_or_synthesize(&long, None, None).await;
    assert!(is_speech(&result, |error| matches!(
        error,
        SpeechError::TextTooLong { .. }
    )));
    let result = cache.get_or_synthesize("  \n", None, None).await;
    assert!(is_speech(&result, |error| matches!(
        error,
        SpeechError::EmptyText
    )));
    assert_eq!(tone.calls(), 0);
    // The limit itself is accepted.
    let longest = "a".repeat(MAX_TEXT_CHARS);
    assert!(Cache::id_for_speech(&longest, None, None).is_ok());
}

#[test]
fn ids_depend_on_the_resolved_voice_and_the_text() {
    let id = |text, voice, language| Cache::id_for_speech(text, voice, language).unwrap();
    let hello = id("hello", None, None);
    assert_eq!(hello.len(), 32);
    assert_eq!(hello, id("hello", None, Some("en-US")));
    assert_eq!(hello, id("hello", Some("Polly.Joanna"), None));
    assert_ne!(hello, id("hello", Some("man"), None));
    assert_ne!(hello, id("hello", None, Some("en-GB")));
    assert_ne!(hello, id("Hello", None, None));
    assert_eq!(id("hi", Some("alice"), None), id("hi", Some("woman"), None));
    // Length prefixes keep the boundary between voice and text.
    assert_ne!(id("b", Some("a"), None), id("ab", None, None));
    // Never the id of a URL.
    assert_ne!(
        hello,
        Cache::id_for_url("http://example.com/hello").unwrap()
    );
}

#[tokio::test]
async fn concurrent_requests_share_one_synthesis() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let tone = Counting::new(Tone {
        delay: Duration::from_millis(200),
    });
    let cache = cache_with(config(dir.path(), tone.clone()), &clock);
    let requests = (0..20).map(|_| {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move { cache.get_or_synthesize("welcome", None, None).await })
    });
    let mut ids = Vec::new();
    for request in requests {
        ids.push(request.await.unwrap().unwrap().id);
    }
    assert_eq!(tone.calls(), 1);
    ids.dedup();
    assert_eq!(ids.len(), 1);
}

#[tokio::test]
async fn a_hanging_synthesizer_times_out_and_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let hang = Hang::default();
    let dropped = Arc::clone(&hang.dropped);
    let mut config = config(dir.path(), Arc::new(hang));
    config.synthesis_timeout = Duration::from_millis(200);
    let cache = cache_with(config, &clock);
    let started = Instant::now();
    let result = cache.get_or_synthesize("hello", None, None).await;
    assert!(
        is_speech(
            &result,
            |error| matches!(error, SpeechError::Timeout { limit } if *limit == Duration::from_millis(200))
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(cache.metrics().synthesis_errors, 1);
}

#[cfg(unix)]
#[tokio::test]
async fn a_hanging_process_is_killed_on_timeout() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = dir.path().join("fake-espeak-ng");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 30\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let clock = TestClock::new();
    let fake = EspeakNg {
        program: script,
        ..EspeakNg::default()
    };
    let mut config = config(&dir.path().join("cache"), Arc::new(fake));
    config.synthesis_timeout = Duration::from_millis(500);
    let cache = cache_with(config, &clock);
    let result = cache.get_or_synthesize("hello", None, None).await;
    assert!(
        is_speech(&result, |error| matches!(
            error,
            SpeechError::Timeout { .. }
        )),
        "{result:?}"
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    // Killed: gone, or a zombie until tokio reaps it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = std::fs::read_to_string(&stat).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        });
        if !alive {
            break;
        }
        assert!(Instant::now() < deadline, "sleep {pid} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn speech_persists_never_expires_and_is_evictable() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let tone = Counting::new(Tone {
        delay: Duration::ZERO,
    });
    // "one" and "two" make 2,400 µ-law bytes each; the budget holds one of them.
    let mut small = config(dir.path(), tone.clone());
    small.max_bytes = 3_000;
    let cache = cache_with(small.clone(), &clock);
    let one = cache.get_or_synthesize("one", None, None).await.unwrap();
    assert_eq!(one.size, 2_400);
    drop(cache);

    // A restart ten years later still hits: synthesized entries do not go stale.
    clock.advance(Duration::from_secs(10 * 365 * 24 * 3_600));
    let cache = cache_with(small, &clock);
    let again = cache.get_or_synthesize("one", None, None).await.unwrap();
    assert_eq!(
        (again.outcome, again.id.as_str()),
        (Outcome::Hit, one.id.as_str())
    );
    assert_eq!(tone.calls(), 1);

    // Least recently used goes when the budget is exceeded, and comes back as a miss.
    cache.get_or_synthesize("two", None, None).await.unwrap();
    assert_eq!(cache.metrics().evictions, 1);
    assert!(cache.open(&one.id).await.unwrap().is_none());
    let back = cache.get_or_synthesize("one", None, None).await.unwrap();
    assert_eq!(back.outcome, Outcome::Miss);
    assert_eq!(back.etag, one.etag);
    assert_eq!(tone.calls(), 3);
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, content_type, body)
}

async fn post(router: &Router, body: Value) -> (StatusCode, Value) {
    let request = Request::post("/media")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, content_type, body) = send(router, request).await;
    assert_eq!(content_type.as_deref(), Some("application/json"));
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn post_say_answers_the_product_shape_and_get_serves_the_audio() {
    require_espeak_ng();
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let router = media::http::routes(cache_with(
        config(dir.path(), Arc::new(EspeakNg::default())),
        &clock,
    ));
    let say = serde_json::json!({ "say": { "text": "Thank you for calling.", "voice": "alice", "language": "en-US" } });
    let (status, body) = post(&router, say.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cache"], "miss");
    assert_eq!(body["content_type"], "audio/basic");
    assert_eq!(body["sample_rate"], 8_000);
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["url"], format!("/v1/media/{id}"));
    let duration_ms = body["duration_ms"].as_u64().unwrap();
    assert!((300..=5_000).contains(&duration_ms), "{duration_ms}");

    let (status, body) = post(&router, say).await;
    assert_eq!(
        (status, body["cache"].as_str()),
        (StatusCode::OK, Some("hit"))
    );
    assert_eq!(body["id"], id.as_str());

    let request = Request::get(format!("/media/{id}"))
        .body(Body::empty())
        .unwrap();
    let (status, content_type, audio) = send(&router, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("audio/basic"));
    assert!((audio.len() as u64).abs_diff(duration_ms * 8) <= 8);
    assert!(energy(&audio) > 300.0);
}

#[tokio::test]
async fn post_say_errors_map_to_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let tone = Counting::new(Tone {
        delay: Duration::ZERO,
    });
    let router = media::http::routes(cache_with(config(dir.path(), tone.clone()), &clock));
    let cases = [
        (
            serde_json::json!({}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            serde_json::json!({ "url": "http://127.0.0.1/a.wav", "say": { "text": "hi" } }),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            serde_json::json!({ "say": {} }),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            serde_json::json!({ "say": { "text": "hi", "pitch": 3 } }),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            serde_json::json!({ "say": { "text": " " } }),
            StatusCode::BAD_REQUEST,
            "invalid_text",
        ),
        (
            serde_json::json!({ "say": { "text": "hi", "voice": "$(reboot)" } }),
            StatusCode::BAD_REQUEST,
            "invalid_voice",
        ),
        (
            serde_json::json!({ "say": { "text": "hi", "language": "en US" } }),
            StatusCode::BAD_REQUEST,
            "invalid_language",
        ),
        (
            serde_json::json!({ "say": { "text": "a".repeat(MAX_TEXT_CHARS + 1) } }),
            StatusCode::PAYLOAD_TOO_LARGE,
            "text_too_long",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = post(&router, request.clone()).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{request}"
        );
    }
    assert_eq!(tone.calls(), 0);

    let missing = EspeakNg {
        program: dir.path().join("no-such-espeak-ng"),
        ..EspeakNg::default()
    };
    let router = media::http::routes(cache_with(
        config(&dir.path().join("other"), Arc::new(missing)),
        &clock,
    ));
    let (status, body) = post(&router, serde_json::json!({ "say": { "text": "hi" } })).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "tts_unavailable");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("espeak-ng"));
}
