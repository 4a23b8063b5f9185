//! The media HTTP API over the prompt cache: `POST /media` (a URL, or text to say, in; id and
//! address out) and
//! `GET /media/{id}` (the processed audio, `audio/basic`, with a strong ETag). Paths are
//! relative: the binary nests this router under `/v1` behind its API key.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::cache::{Cache, CacheError, Entry, Outcome, SpeechError};

/// The router serving `POST /media` and `GET /media/{id}`.
pub fn routes(cache: Arc<Cache>) -> Router {
    Router::new()
        .route("/media", post(create))
        .route("/media/{id}", get(fetch))
        .with_state(cache)
}

/// Body of `POST /media`: exactly one of `url` and `say`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    url: Option<String>,
    say: Option<SayRequest>,
}

/// `{"say": {"text", "voice"?, "language"?}}`: text to speech (`<Say>`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SayRequest {
    text: String,
    voice: Option<String>,
    language: Option<String>,
}

/// Answer to `POST /media` (PRODUCT.md, "HTTP API").
#[derive(Debug, Serialize)]
struct CreateResponse {
    id: String,
    url: String,
    content_type: &'static str,
    sample_rate: u32,
    duration_ms: u64,
    cache: &'static str,
}

async fn create(State(cache): State<Arc<Cache>>, body: Bytes) -> Response {
    let request = serde_json::from_slice::<CreateRequest>(&body).ok();
    let result = match request {
        Some(CreateRequest {
            url: Some(url),
            say: None,
        }) => cache.get_or_fetch(&url).await,
        Some(CreateRequest {
            url: None,
            say: Some(say),
        }) => {
            cache
                .get_or_synthesize(&say.text, say.voice.as_deref(), say.language.as_deref())
                .await
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "expected JSON {\"url\": \"...\"} or {\"say\": {\"text\": \"...\"}}",
            )
        }
    };
    respond(result)
}

/// The JSON answer to `POST /media` for an entry or an error.
fn respond(result: Result<Entry, CacheError>) -> Response {
    match result {
        Ok(entry) => {
            let cache = match entry.outcome {
                Outcome::Hit => "hit",
                Outcome::Miss => "miss",
                Outcome::Revalidated => "revalidated",
                // The product contract names three values; a stale entry served because the
                // origin failed is, to the caller, a hit.
                Outcome::Stale => "hit",
            };
            let url = format!("/v1/media/{}", entry.id);
            let duration_ms = u64::try_from(entry.duration.as_millis()).unwrap_or(u64::MAX);
            Json(CreateResponse {
                id: entry.id,
                url,
                content_type: "audio/basic",
                sample_rate: crate::resample::TELEPHONY_RATE,
                duration_ms,
                cache,
            })
            .into_response()
        }
        Err(cache_error) => {
            let (status, code) = classify(&cache_error);
            error(status, code, &cache_error.to_string())
        }
    }
}

async fn fetch(
    State(cache): State<Arc<Cache>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let media = match cache.open(&id).await {
        Ok(Some(media)) => media,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", "no such media"),
        Err(cache_error) => {
            tracing::warn!(error = %cache_error, "media read failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage",
                "media could not be read",
            );
        }
    };
    let Ok(etag) = HeaderValue::from_str(&media.etag) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            "media could not be read",
        );
    };
    // The content behind an id changes when the origin's does, so clients must revalidate.
    let cache_control = HeaderValue::from_static("no-cache");
    if if_none_match(&headers, &media.etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache_control)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("audio/basic"),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache_control),
        ],
        media.bytes,
    )
        .into_response()
}

/// RFC 9110 §13.1.2: If-None-Match is a list of entity tags (or `*`) compared weakly; for
/// GET, a match means 304.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == ours)
}

/// The HTTP status and error code for a cache error: who is at fault decides the class.
fn classify(error: &CacheError) -> (StatusCode, &'static str) {
    match error {
        CacheError::InvalidUrl => (StatusCode::BAD_REQUEST, "invalid_url"),
        CacheError::UnsupportedScheme => (StatusCode::BAD_REQUEST, "unsupported_scheme"),
        CacheError::RefusedAddress { .. } => (StatusCode::FORBIDDEN, "refused_address"),
        CacheError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        CacheError::NotAudio { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "not_audio"),
        CacheError::Undecodable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "undecodable"),
        CacheError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "origin_timeout"),
        CacheError::Resolve(_)
        | CacheError::Connection(_)
        | CacheError::OriginStatus { .. }
        | CacheError::TooManyRedirects { .. }
        | CacheError::InvalidRedirect => (StatusCode::BAD_GATEWAY, "origin_error"),
        CacheError::Speech(speech) => classify_speech(speech),
        CacheError::Storage(_) | CacheError::FetchTaskFailed => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

/// The HTTP status and error code for a text-to-speech error.
fn classify_speech(error: &SpeechError) -> (StatusCode, &'static str) {
    match error {
        SpeechError::EmptyText | SpeechError::InvalidText => {
            (StatusCode::BAD_REQUEST, "invalid_text")
        }
        SpeechError::TextTooLong { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "text_too_long"),
        SpeechError::InvalidVoice | SpeechError::UnknownVoice { .. } => {
            (StatusCode::BAD_REQUEST, "invalid_voice")
        }
        SpeechError::InvalidLanguage => (StatusCode::BAD_REQUEST, "invalid_language"),
        SpeechError::ProgramMissing { .. } | SpeechError::Spawn(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "tts_unavailable")
        }
        SpeechError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "tts_timeout"),
        SpeechError::OutputTooLarge { .. }
        | SpeechError::Failed { .. }
        | SpeechError::EmptyOutput => (StatusCode::INTERNAL_SERVER_ERROR, "tts_failed"),
    }
}

/// `{"error":{"code","message"}}`.
fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_wildcards_and_weak_forms() {
        let mut headers = HeaderMap::new();
        assert!(!if_none_match(&headers, "\"abc\""));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(if_none_match(&headers, "\"abc\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(!if_none_match(&headers, "\"abc\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&headers, "\"abc\""));
    }
}
