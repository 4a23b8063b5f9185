//! [`WebhookClient`]: one webhook exchange (build the URL, sign, send over a vetted and pinned
//! connection, retry connection failures, follow redirects by hand, read a capped body), and
//! status callbacks sent in the background with a bound on those in flight.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::outbound;
use reqwest::header::{self, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;

use super::{
    signature, Instructions, Params, WebhookConfig, WebhookError, WebhookMetrics, MAX_URL_BYTES,
};
use crate::config::WebhookMethod;

const USER_AGENT: &str = concat!("tandem/", env!("CARGO_PKG_VERSION"));
/// TwiML is served as XML; anything else is accepted so that the caller can say what it got.
const ACCEPT: &str = "text/xml, application/xml, */*";
const FORM: &str = "application/x-www-form-urlencoded";
const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// The wait before the first connection retry; each further one waits three times longer, up
/// to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Fetches call instructions and sends status callbacks. Cheap to clone: clones share the
/// configuration, the counters and the bound on callbacks in flight.
#[derive(Clone)]
pub struct WebhookClient {
    shared: Arc<Shared>,
}

struct Shared {
    config: WebhookConfig,
    /// The HMAC key of `X-Twilio-Signature` (a secret: never logged).
    auth_token: Option<String>,
    counters: Counters,
    /// One permit per status callback in flight.
    callback_slots: Arc<Semaphore>,
    /// Clients pinned to vetted addresses, reused with their keep-alive connections.
    clients: outbound::ClientPool,
    /// URLs already parsed and checked ([`checked_url`]), by their text: an application's
    /// few URLs are fetched for every call, and parsing one cost 2 % of a call's CPU.
    checked: Mutex<HashMap<String, Url>>,
}

/// URLs [`Shared::checked`] keeps before it starts over.
const CHECKED_URLS: usize = 256;

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    fetch_failures: AtomicU64,
    callbacks_sent: AtomicU64,
    callbacks_failed: AtomicU64,
    callbacks_dropped: AtomicU64,
    connect_retries: AtomicU64,
}

impl WebhookClient {
    /// A client with `config`; requests are signed with `auth_token` when there is one.
    /// Fails when the HTTP client cannot be built (the TLS backend does not initialise), so
    /// that this shows at startup rather than on the first call.
    pub fn new(
        config: WebhookConfig,
        auth_token: Option<String>,
    ) -> Result<WebhookClient, WebhookError> {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|error| WebhookError::Client(Arc::new(error)))?;
        let slots = config.max_callbacks_in_flight.min(Semaphore::MAX_PERMITS);
        let clients = outbound::ClientPool::new(config.policy, config.connect_timeout, USER_AGENT);
        Ok(WebhookClient {
            shared: Arc::new(Shared {
                config,
                auth_token,
                counters: Counters::default(),
                callback_slots: Arc::new(Semaphore::new(slots)),
                clients,
                checked: Mutex::default(),
            }),
        })
    }

    /// Fetches call instructions from `url`: a GET with `params` appended to the URL's query
    /// (after any query it already has), or a POST with `params` form-encoded in the body;
    /// signed with `X-Twilio-Signature` when an auth token is set. Redirects are followed (on
    /// 301, 302 and 303 a POST becomes a GET without body; 307 and 308 keep method and body),
    /// each hop vetted and re-signed. Any status other than 2xx after redirects is an error.
    pub async fn fetch(
        &self,
        url: &str,
        method: WebhookMethod,
        params: &Params,
    ) -> Result<Instructions, WebhookError> {
        let counters = &self.shared.counters;
        counters.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self
            .within_total_timeout(async {
                let (response, url) = self.exchange(url, method, params).await?;
                let content_type = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let body = outbound::read_body(response, self.shared.config.max_body_bytes).await?;
                let body = String::from_utf8(body).map_err(|_| WebhookError::NotUtf8)?;
                Ok(Instructions {
                    body,
                    url,
                    content_type,
                })
            })
            .await;
        if let Err(error) = &result {
            counters.fetch_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                url = %loggable(url),
                %error,
                code = error.twilio_code(),
                "webhook fetch failed"
            );
        }
        result
    }

    /// Sends a status callback in the background and returns at once: the request runs on a
    /// spawned task with the same limits as [`fetch`](Self::fetch) and its body is not read.
    /// A status other than 2xx is a failure; failures are logged (scheme, host and path only)
    /// and counted. With [`WebhookConfig::max_callbacks_in_flight`] already in flight, or when
    /// called outside a tokio runtime, the callback is dropped and counted.
    pub fn send_in_background(&self, url: String, method: WebhookMethod, params: Params) {
        let counters = &self.shared.counters;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            counters.callbacks_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(url = %loggable(&url), "status callback dropped: no async runtime");
            return;
        };
        let Ok(permit) = Arc::clone(&self.shared.callback_slots).try_acquire_owned() else {
            counters.callbacks_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                url = %loggable(&url),
                limit = self.shared.config.max_callbacks_in_flight,
                "status callback dropped: too many in flight"
            );
            return;
        };
        let client = self.clone();
        runtime.spawn(async move {
            let result = client
                .within_total_timeout(async {
                    client.exchange(&url, method, &params).await.map(drop)
                })
                .await;
            drop(permit);
            let counters = &client.shared.counters;
            match result {
                Ok(()) => {
                    counters.callbacks_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    counters.callbacks_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        url = %loggable(&url),
                        %error,
                        code = error.twilio_code(),
                        "status callback failed"
                    );
                }
            }
        });
    }

    /// The counters so far.
    pub fn metrics(&self) -> WebhookMetrics {
        let counters = &self.shared.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WebhookMetrics {
            fetches: read(&counters.fetches),
            fetch_failures: read(&counters.fetch_failures),
            callbacks_sent: read(&counters.callbacks_sent),
            callbacks_failed: read(&counters.callbacks_failed),
            callbacks_dropped: read(&counters.callbacks_dropped),
            connect_retries: read(&counters.connect_retries),
        }
    }

    /// [`checked_url`], remembered.
    fn checked_url(&self, url: &str) -> Result<Url, WebhookError> {
        // Plain data, never held across an await: a poisoned lock still holds usable URLs.
        let lock = || {
            self.shared
                .checked
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if let Some(parsed) = lock().get(url) {
            return Ok(parsed.clone());
        }
        let parsed = checked_url(url)?;
        let mut checked = lock();
        if checked.len() >= CHECKED_URLS {
            checked.clear();
        }
        checked.insert(url.to_owned(), parsed.clone());
        Ok(parsed)
    }

    /// `future` bounded by the total timeout.
    async fn within_total_timeout<T>(
        &self,
        future: impl Future<Output = Result<T, WebhookError>>,
    ) -> Result<T, WebhookError> {
        let limit = self.shared.config.total_timeout;
        tokio::time::timeout(limit, future)
            .await
            .unwrap_or(Err(WebhookError::Timeout { limit }))
    }

    /// Sends the request and follows redirects; the 2xx response and the URL that answered.
    async fn exchange(
        &self,
        url: &str,
        method: WebhookMethod,
        params: &Params,
    ) -> Result<(reqwest::Response, Url), WebhookError> {
        let config = &self.shared.config;
        let mut current = with_query(self.checked_url(url)?, method, params);
        let mut method = method;
        let mut redirects = 0;
        loop {
            let response = self.send_with_retries(&current, method, params).await?;
            let status = response.status();
            if outbound::is_followed_redirect(status) {
                if redirects == config.max_redirects {
                    return Err(WebhookError::TooManyRedirects {
                        limit: config.max_redirects,
                    });
                }
                redirects += 1;
                let next = outbound::redirect_target(&current, response.headers())?;
                // RFC 9110 §15.4.2 and §15.4.3: on 301 and 302 a user agent may change POST to
                // GET (browsers and Twilio do); §15.4.4: 303 always means GET. The body is not
                // sent again, and a GET's original parameters live in the old URL only.
                // §15.4.8 and §15.4.9: 307 and 308 keep the method and the body.
                if matches!(
                    status,
                    StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER
                ) {
                    method = WebhookMethod::Get;
                }
                current = next;
                continue;
            }
            if !status.is_success() {
                return Err(WebhookError::Status {
                    status: status.as_u16(),
                });
            }
            return Ok((response, current));
        }
    }

    /// [`send_once`](Self::send_once), repeated after connection failures only, with backoff.
    async fn send_with_retries(
        &self,
        url: &Url,
        method: WebhookMethod,
        params: &Params,
    ) -> Result<reqwest::Response, WebhookError> {
        let mut backoff = FIRST_BACKOFF;
        let mut retries = 0;
        loop {
            match self.send_once(url, method, params).await {
                Err(error)
                    if error.is_connection_failure()
                        && retries < self.shared.config.connect_retries =>
                {
                    retries += 1;
                    self.shared
                        .counters
                        .connect_retries
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        url = %loggable(url.as_str()),
                        %error,
                        retry = retries,
                        "webhook connection failed; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(3).min(MAX_BACKOFF);
                }
                result => return result,
            }
        }
    }

    /// One request over a (possibly kept-alive) connection pinned to a vetted address of
    /// `url`'s host.
    async fn send_once(
        &self,
        url: &Url,
        method: WebhookMethod,
        params: &Params,
    ) -> Result<reqwest::Response, WebhookError> {
        let shared = &self.shared;
        let client = shared.clients.client(url).await?;
        let mut request = match method {
            WebhookMethod::Get => client.get(url.clone()),
            WebhookMethod::Post => client
                .post(url.clone())
                .header(header::CONTENT_TYPE, HeaderValue::from_static(FORM))
                .body(params.to_form()),
        }
        .header(header::ACCEPT, HeaderValue::from_static(ACCEPT));
        if let Some(token) = &shared.auth_token {
            let signed = signature(token, signed_url(url).as_str(), method, params);
            // Base64 is always a valid header value; a failure would only drop the header.
            if let Ok(value) = HeaderValue::from_str(&signed) {
                request = request.header(SIGNATURE_HEADER, value);
            }
        }
        request.send().await.map_err(WebhookError::from_send)
    }
}

impl fmt::Debug for WebhookClient {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("WebhookClient")
            .field("config", &self.shared.config)
            .field(
                "auth_token",
                &self.shared.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// The URL of the first request: parsed, checked, without fragment, and for a GET with
/// `params` appended to its query.
#[cfg(test)]
fn request_url(url: &str, method: WebhookMethod, params: &Params) -> Result<Url, WebhookError> {
    Ok(with_query(checked_url(url)?, method, params))
}

/// `url` parsed and checked, without fragment.
fn checked_url(url: &str) -> Result<Url, WebhookError> {
    if url.len() > MAX_URL_BYTES {
        return Err(WebhookError::InvalidUrl);
    }
    let mut parsed = Url::parse(url.trim()).map_err(|_| WebhookError::InvalidUrl)?;
    outbound::check_url(&parsed)?;
    // RFC 3986 §3.5: the fragment is for the user agent and never reaches the server (Twilio
    // reads its connection overrides there; Tandem ignores them).
    parsed.set_fragment(None);
    Ok(parsed)
}

/// `url` with `params` appended to its query for a GET.
fn with_query(mut url: Url, method: WebhookMethod, params: &Params) -> Url {
    if method == WebhookMethod::Get && !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params.iter());
    }
    url
}

/// The URL as the server sees it, which is what its validator signs: reqwest moves `user:pass@`
/// into an `Authorization: Basic` header (Twilio's way of passing HTTP credentials), so they are
/// not part of the request line.
fn signed_url(url: &Url) -> std::borrow::Cow<'_, Url> {
    if url.username().is_empty() && url.password().is_none() {
        // The usual case: nothing to remove, so nothing to copy and re-serialize.
        return std::borrow::Cow::Borrowed(url);
    }
    let mut signed = url.clone();
    // Both only fail for URLs that cannot have credentials, which then have none to remove.
    let _ = signed.set_username("");
    let _ = signed.set_password(None);
    std::borrow::Cow::Owned(signed)
}

/// What a log may show of a URL: scheme, host, port and path, never the query (which may carry
/// tokens) or credentials.
pub fn loggable(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) if parsed.has_host() => {
            format!("{}{}", parsed.origin().ascii_serialization(), parsed.path())
        }
        _ => "<invalid URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_parameters_follow_the_existing_query_and_the_fragment_goes() {
        let params: Params = [("CallSid", "CA1"), ("From", "+1 555")]
            .into_iter()
            .collect();
        let url = request_url(
            "https://example.com/voice?token=x#rc=3",
            WebhookMethod::Get,
            &params,
        )
        .map(String::from);
        assert_eq!(
            url.ok().as_deref(),
            Some("https://example.com/voice?token=x&CallSid=CA1&From=%2B1+555")
        );
        let url = request_url("https://example.com/voice", WebhookMethod::Post, &params)
            .map(String::from);
        assert_eq!(url.ok().as_deref(), Some("https://example.com/voice"));
        let url = request_url(
            "https://example.com/voice",
            WebhookMethod::Get,
            &Params::new(),
        )
        .map(String::from);
        assert_eq!(url.ok().as_deref(), Some("https://example.com/voice"));
    }

    #[test]
    fn checked_urls_are_remembered_without_a_requests_parameters() {
        let client = WebhookClient::new(WebhookConfig::default(), None).unwrap();
        let params: Params = [("CallSid", "CA1")].into_iter().collect();
        for _ in 0..3 {
            let url = client
                .checked_url("https://example.com/voice?x=1#f")
                .unwrap();
            let url = with_query(url, WebhookMethod::Get, &params);
            assert_eq!(url.as_str(), "https://example.com/voice?x=1&CallSid=CA1");
        }
        assert!(client.checked_url("ftp://example.com/x").is_err());
        assert_eq!(
            client.shared.checked.lock().unwrap().len(),
            1,
            "errors are not kept"
        );
    }

    #[test]
    fn bad_urls_are_refused_before_any_request() {
        let params = Params::new();
        for (url, expected) in [
            ("/relative", "InvalidUrl"),
            ("not a url", "InvalidUrl"),
            ("ftp://example.com/x", "UnsupportedScheme"),
            ("file:///etc/passwd", "UnsupportedScheme"),
        ] {
            let error = request_url(url, WebhookMethod::Post, &params).err();
            assert_eq!(
                error.map(|error| format!("{error:?}")).as_deref(),
                Some(expected),
                "{url}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(matches!(
            request_url(&long, WebhookMethod::Post, &params),
            Err(WebhookError::InvalidUrl)
        ));
    }

    #[test]
    fn credentials_are_not_signed_and_never_logged() {
        let url = Url::parse("https://user:secret@example.com:8443/voice?token=abc");
        let url = url.map(|url| signed_url(&url).to_string());
        assert_eq!(
            url.ok().as_deref(),
            Some("https://example.com:8443/voice?token=abc")
        );
        assert_eq!(
            loggable("https://user:secret@example.com:8443/voice?token=abc#x"),
            "https://example.com:8443/voice"
        );
        assert_eq!(loggable("http://example.com/a/b"), "http://example.com/a/b");
        assert_eq!(loggable("no url"), "<invalid URL>");
    }

    #[test]
    fn debug_redacts_the_auth_token() {
        let client = WebhookClient::new(WebhookConfig::default(), Some("hunter2".to_owned()));
        let shown = client.map(|client| format!("{client:?}"));
        assert!(shown
            .as_ref()
            .is_ok_and(|shown| !shown.contains("hunter2") && shown.contains("<redacted>")));
    }
}
