//! The media HTTP routes through the axum Router (no listener): `POST /media` JSON shapes and
//! error mapping, `GET /media/{id}` with its strong ETag, 304 and 404.

// Test helpers too: a failed unwrap is a failed test, with the panic naming the line.
#![allow(clippy::unwrap_used)]

mod cache_support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cache_support::{cache, prompt, Origin, Reply, TestClock};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn send(
    router: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn post(body: &str) -> Request<Body> {
    Request::post("/media")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn post_json(router: &Router, body: &str) -> (StatusCode, Value) {
    let (status, headers, body) = send(router, post(body)).await;
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn post_answers_miss_then_hit_with_the_product_shape() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/welcome.wav",
        Reply::audio(prompt(750, 440.0), &[("cache-control", "max-age=60")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let router = media::http::routes(cache(dir.path(), &clock, 10 << 20));
    let request = serde_json::json!({ "url": origin.url("/welcome.wav") }).to_string();

    let (status, miss) = post_json(&router, &request).await;
    assert_eq!(status, StatusCode::OK);
    let id = miss["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(
        miss,
        serde_json::json!({
            "id": id,
            "url": format!("/v1/media/{id}"),
            "content_type": "audio/basic",
            "sample_rate": 8000,
            "duration_ms": 750,
            "cache": "miss",
        })
    );
    let (status, hit) = post_json(&router, &request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (hit["cache"].as_str(), hit["id"].as_str()),
        (Some("hit"), Some(id.as_str()))
    );
    assert_eq!(origin.count("/welcome.wav"), 1);
}

#[tokio::test]
async fn get_serves_audio_with_a_strong_etag_and_honours_if_none_match() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set(
        "/welcome.wav",
        Reply::audio(prompt(250, 440.0), &[("cache-control", "max-age=60")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let router = media::http::routes(cache(dir.path(), &clock, 10 << 20));
    let request = serde_json::json!({ "url": origin.url("/welcome.wav") }).to_string();
    let (_, created) = post_json(&router, &request).await;
    let id = created["id"].as_str().unwrap();

    let get = |etag: Option<&str>| {
        let mut builder = Request::get(format!("/media/{id}"));
        if let Some(etag) = etag {
            builder = builder.header(header::IF_NONE_MATCH, etag);
        }
        builder.body(Body::empty()).unwrap()
    };
    let (status, headers, body) = send(&router, get(None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "audio/basic");
    assert_eq!(body.len(), 2_000);
    assert_eq!(
        body,
        std::fs::read(dir.path().join(format!("{id}.ulaw"))).unwrap()
    );
    let etag = headers
        .get(header::ETAG)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "{etag}"
    );

    let (status, headers, body) = send(&router, get(Some(&etag))).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers.get(header::ETAG).unwrap().to_str().unwrap(), etag);
    assert!(body.is_empty());
    let (status, _, body) = send(&router, get(Some("\"something-else\""))).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 2_000));
}

#[tokio::test]
async fn unknown_ids_are_404_json() {
    let clock = TestClock::new();
    let dir = tempfile::tempdir().unwrap();
    let router = media::http::routes(cache(dir.path(), &clock, 10 << 20));
    for path in [
        "/media/0123456789abcdef0123456789abcdef",
        "/media/not-an-id",
        "/media/..%2Findex.json",
    ] {
        let (status, _, body) =
            send(&router, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn post_errors_map_to_statuses_with_json_bodies() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    let mut html = Reply::audio(b"<html></html>".to_vec(), &[]);
    html.headers[0].1 = "text/html".to_owned();
    origin.set("/page", html);
    origin.set(
        "/noise.wav",
        Reply::audio(b"RIFF\x10\0\0\0WAVEjunkjunk".to_vec(), &[]),
    );
    origin.set("/broken.wav", Reply::status(503, &[]));
    let dir = tempfile::tempdir().unwrap();
    let router = media::http::routes(cache(dir.path(), &clock, 10 << 20));

    let url = |path: &str| serde_json::json!({ "url": origin.url(path) }).to_string();
    let cases = [
        (
            "not json".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            r#"{"uri":"http://example.com/a.wav"}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            r#"{"url":"no scheme"}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_url",
        ),
        (
            r#"{"url":"ftp://example.com/a.wav"}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            "unsupported_scheme",
        ),
        (
            r#"{"url":"http://169.254.169.254/"}"#.to_owned(),
            StatusCode::FORBIDDEN,
            "refused_address",
        ),
        (url("/page"), StatusCode::UNPROCESSABLE_ENTITY, "not_audio"),
        (
            url("/noise.wav"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "undecodable",
        ),
        (url("/broken.wav"), StatusCode::BAD_GATEWAY, "origin_error"),
        (url("/missing.wav"), StatusCode::BAD_GATEWAY, "origin_error"),
    ];
    for (body, expected_status, expected_code) in cases {
        let (status, answer) = post_json(&router, &body).await;
        assert_eq!(status, expected_status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], expected_code, "{body}");
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()));
    }
}

#[tokio::test]
async fn oversized_and_slow_origins_map_to_413_and_504() {
    let clock = TestClock::new();
    let origin = Origin::start(&clock).await;
    origin.set("/long.wav", Reply::audio(prompt(2_000, 440.0), &[]));
    let slow = Reply::audio(prompt(100, 440.0), &[]).delayed(std::time::Duration::from_secs(3));
    origin.set("/slow.wav", slow);
    let dir = tempfile::tempdir().unwrap();
    let mut config = media::cache::CacheConfig::new(dir.path(), 10 << 20);
    config.max_body_bytes = 8_000;
    config.total_timeout = std::time::Duration::from_millis(200);
    let router = media::http::routes(cache_support::cache_with(config, &clock));

    let url = |path: &str| serde_json::json!({ "url": origin.url(path) }).to_string();
    let (status, answer) = post_json(&router, &url("/long.wav")).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
    let (status, answer) = post_json(&router, &url("/slow.wav")).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("origin_timeout"))
    );
}
