//! Test support for the prompt cache: a real HTTP origin on 127.0.0.1:0 that serves
//! configurable replies, counts requests per path and records request headers, a manual wall
//! clock shared by the origin (its `Date`) and the cache, and generated WAV prompts.

#![allow(dead_code)]
// Test support: a failed unwrap is a failed test, with the panic naming the line.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use media::cache::{Cache, CacheConfig, Clock};

#[path = "../support/mod.rs"]
mod support;

/// A wall clock that moves only when told to; starts at a whole second (HTTP dates have no
/// fractions, so a fractional start would make every response look older than it is).
#[derive(Debug)]
pub struct TestClock(Mutex<SystemTime>);

impl TestClock {
    pub fn new() -> Arc<TestClock> {
        let seconds = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(1_700_000_000);
        Arc::new(TestClock(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
        )))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// What the origin answers on one path.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    /// 200 `audio/wav` with `body` and extra headers.
    pub fn audio(body: Vec<u8>, headers: &[(&'static str, &str)]) -> Reply {
        let mut all = vec![("content-type", "audio/wav".to_owned())];
        all.extend(
            headers
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned())),
        );
        Reply {
            status: 200,
            headers: all,
            body,
            delay: Duration::ZERO,
        }
    }

    /// A bare status with headers and a small body.
    pub fn status(status: u16, headers: &[(&'static str, &str)]) -> Reply {
        let headers = headers
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: b"origin says no".to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Shared {
    replies: Mutex<HashMap<String, Reply>>,
    counts: Mutex<HashMap<String, usize>>,
    seen: Mutex<Vec<(String, HeaderMap)>>,
    clock: Mutex<Option<Arc<TestClock>>>,
}

/// A real HTTP origin served on 127.0.0.1:0.
pub struct Origin {
    pub address: SocketAddr,
    shared: Arc<Shared>,
}

impl Origin {
    pub async fn start(clock: &Arc<TestClock>) -> Origin {
        let shared = Arc::new(Shared::default());
        *shared.clock.lock().unwrap() = Some(Arc::clone(clock));
        let router = axum::Router::new()
            .fallback(serve)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Origin { address, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn set(&self, path: &str, reply: Reply) {
        self.shared
            .replies
            .lock()
            .unwrap()
            .insert(path.to_owned(), reply);
    }

    /// Requests received on `path`.
    pub fn count(&self, path: &str) -> usize {
        self.shared
            .counts
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// The headers of the last request on `path`.
    pub fn last_headers(&self, path: &str) -> Option<HeaderMap> {
        let seen = self.shared.seen.lock().unwrap();
        seen.iter()
            .rev()
            .find(|(seen_path, _)| seen_path == path)
            .map(|(_, headers)| headers.clone())
    }
}

async fn serve(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response<Body> {
    let path = uri.path().to_owned();
    *shared
        .counts
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default() += 1;
    shared
        .seen
        .lock()
        .unwrap()
        .push((path.clone(), headers.clone()));
    let reply = shared.replies.lock().unwrap().get(&path).cloned();
    let Some(reply) = reply else {
        return Response::builder()
            .status(404)
            .body(Body::from("no such file"))
            .unwrap();
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let request_header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    // RFC 9110 §13.2.2: If-None-Match first; If-Modified-Since only without it.
    let not_modified = reply.status == 200
        && match (
            request_header("if-none-match"),
            request_header("if-modified-since"),
        ) {
            (Some(tags), _) => reply
                .header("etag")
                .is_some_and(|etag| tags.split(',').any(|tag| tag.trim() == etag)),
            (None, Some(since)) => reply.header("last-modified") == Some(since),
            (None, None) => false,
        };
    let status = if not_modified { 304 } else { reply.status };
    let mut builder = Response::builder().status(StatusCode::from_u16(status).unwrap());
    let clock = shared.clock.lock().unwrap().clone();
    if reply.header("date").is_none() {
        if let Some(clock) = clock {
            builder = builder.header("date", httpdate::fmt_http_date(clock.now()));
        }
    }
    for (name, value) in &reply.headers {
        builder = builder.header(*name, HeaderValue::from_str(value).unwrap());
    }
    let body = if not_modified {
        Body::empty()
    } else {
        Body::from(reply.body.clone())
    };
    builder.body(body).unwrap()
}

/// A mono 16-bit 8 kHz WAV of `milliseconds` of a tone at `frequency` Hz.
pub fn prompt(milliseconds: usize, frequency: f64) -> Vec<u8> {
    let samples = support::sine(frequency, 0.5, 8_000, milliseconds * 8);
    support::wav(
        support::WavSpec::new(support::SampleFormat::I16, 8_000, 1),
        &samples,
    )
}

/// A cache in `dir` with the test clock and `max_bytes`.
pub fn cache(dir: &Path, clock: &Arc<TestClock>, max_bytes: u64) -> Arc<Cache> {
    cache_with(CacheConfig::new(dir, max_bytes), clock)
}

pub fn cache_with(config: CacheConfig, clock: &Arc<TestClock>) -> Arc<Cache> {
    let clock: Arc<dyn Clock> = Arc::clone(clock) as Arc<dyn Clock>;
    Cache::with_clock(config, clock).unwrap()
}
