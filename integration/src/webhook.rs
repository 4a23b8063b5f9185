//! A webhook server inside the test: an HTTP server on 127.0.0.1 port 0 that answers configured
//! paths with call instructions (or anything else), records every request it receives, and checks
//! each request's `X-Twilio-Signature`.
//!
//! The signature check is written here from Twilio's published description, independently of
//! Tandem's signer, so that a test catches a signer that drifts from the algorithm: HMAC-SHA1
//! keyed by the account auth token over the full URL the request was sent to, followed, for a
//! form-encoded POST, by every parameter's name and value in order of name; the digest is sent
//! in base64.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use tokio::sync::watch;

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The form-encoded body parameters of a POST, in order (empty otherwise).
    pub form: Vec<(String, String)>,
    /// Every header, names lower-case, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy UTF-8).
    pub body: String,
    /// The full URL, rebuilt from the Host header, as a signer would have seen it.
    pub url: String,
    /// The `X-Twilio-Signature` header, if any.
    pub signature: Option<String>,
    /// Whether [`Request::signature`] is the signature this server computes for the request.
    pub signature_valid: bool,
    /// When the request arrived.
    pub received_at: Instant,
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The Content-Type.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// How long to wait before answering.
    pub delay: Option<Duration>,
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// The webhook server. Dropping it stops it.
pub struct WebhookServer {
    addr: SocketAddr,
    state: Arc<State>,
    count: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    auth_token: String,
    handlers: Mutex<HashMap<String, Handler>>,
    requests: Mutex<Vec<Request>>,
    count: watch::Sender<usize>,
}

impl WebhookServer {
    /// Starts a server on 127.0.0.1 port 0 that checks signatures with `auth_token`.
    pub async fn start(auth_token: &str) -> WebhookServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let (count_tx, count) = watch::channel(0);
        let state = Arc::new(State {
            auth_token: auth_token.to_owned(),
            handlers: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            count: count_tx,
        });
        let served = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                handle(served.clone(), method, uri, headers, body)
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookServer {
            addr,
            state,
            count,
            task,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The full URL of `path` (which may carry a query), e.g. `http://127.0.0.1:PORT/voice`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers every request for `path` with `twiml` (200, `application/xml`).
    pub fn respond(&self, path: &str, twiml: impl Into<String>) {
        let reply = Reply::twiml(twiml);
        self.respond_with(path, move |_| reply.clone());
    }

    /// Answers every request for `path` with what `reply` returns for it.
    pub fn respond_with(
        &self,
        path: &str,
        reply: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) {
        lock(&self.state.handlers).insert(path.to_owned(), Arc::new(reply));
    }

    /// Every request received so far for `path` (all paths if `path` is `*`), in order.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        lock(&self.state.requests)
            .iter()
            .filter(|request| path == "*" || request.path == path)
            .cloned()
            .collect()
    }

    /// Waits until at least `n` requests for `path` (or `*`) have arrived and returns them all;
    /// panics after `timeout` naming what did arrive.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Request> {
        let mut count = self.count.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self.requests(path);
            if found.len() >= n {
                return found;
            }
            if tokio::time::timeout_at(deadline, count.changed())
                .await
                .is_err()
            {
                let all: Vec<String> = self
                    .requests("*")
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect();
                panic!(
                    "{n} request(s) for {path} expected within {timeout:?}; got {}; all: {all:?}",
                    found.len()
                );
            }
        }
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Request {
    /// A parameter by name: from the form body first, then from the query.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .chain(&self.query)
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Reply {
    /// A 200 with call instructions (`application/xml`).
    pub fn twiml(body: impl Into<String>) -> Reply {
        Reply::new(200, "application/xml", body.into())
    }

    /// A reply with `status` and an empty text body.
    pub fn status(status: u16) -> Reply {
        Reply::new(status, "text/plain", "")
    }

    /// Any reply.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: content_type.to_owned(),
            body: body.into(),
            delay: None,
        }
    }

    /// The same reply, sent after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
}

/// Twilio's request signature: base64 of HMAC-SHA1 keyed by `auth_token` over `url` followed by
/// the POST parameters sorted by name (and by value for repeated names), each name then value.
/// For a GET, `params` is empty (the query is part of `url`).
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // "Unix-style case-sensitive sorting": byte order of the names.
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
    let mut data = url.to_owned();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn handle(
    state: Arc<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_list: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("http://{host}{path_and_query}");
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form: Vec<(String, String)> = if method == Method::POST && is_form {
        form_urlencoded::parse(&body).into_owned().collect()
    } else {
        Vec::new()
    };
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let expected = twilio_signature(&state.auth_token, &url, &form);
    let request = Request {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query,
        form,
        headers: header_list,
        body: String::from_utf8_lossy(&body).into_owned(),
        url,
        signature_valid: signature.as_deref() == Some(expected.as_str()),
        signature,
        received_at: Instant::now(),
    };
    let handler = lock(&state.handlers).get(&request.path).cloned();
    let reply = handler.map(|handler| handler(&request));
    {
        let mut requests = lock(&state.requests);
        requests.push(request);
        let count = requests.len();
        state.count.send_replace(count);
    }
    let Some(reply) = reply else {
        return (StatusCode::NOT_FOUND, "no reply configured for this path\n").into_response();
    };
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, reply.content_type)],
        reply.body,
    )
        .into_response()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
