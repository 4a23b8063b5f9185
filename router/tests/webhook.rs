//! The webhook client against real HTTP servers on 127.0.0.1: request shape (method, content
//! type, form body, query), `X-Twilio-Signature` checked by an independent implementation
//! here, redirects, body cap, timeouts, connection retries, status errors, the outbound-address
//! policy and background status callbacks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use media::cache::{AddressPolicy, Refusal};
use router::config::WebhookMethod;
use router::webhook::{Params, WebhookClient, WebhookConfig, WebhookError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Hi</Say></Response>";

/// One request as the test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// `http://` + Host + path and query: the URL a Twilio validator reconstructs.
    url: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Verifies `X-Twilio-Signature` the way a Twilio validator does, written from Twilio's
    /// documentation independently of `router::webhook::signature`: the URL, then for a POST
    /// every form field sorted by name, name and value concatenated; HMAC-SHA1; base64.
    fn has_valid_signature(&self, token: &str) -> bool {
        let mut data = self.url.clone();
        if self.method == "POST" {
            let mut fields = self.form();
            fields.sort();
            for (name, value) in fields {
                data.push_str(&name);
                data.push_str(&value);
            }
        }
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()) else {
            return false;
        };
        mac.update(data.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        self.header("x-twilio-signature") == Some(expected.as_str())
    }
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn all(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }

    fn count(&self, path: &str) -> usize {
        self.all().iter().filter(|seen| seen.path == path).count()
    }
}

/// The application: what it answers depends on the path.
async fn application(State(recorder): State<Recorder>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default().to_vec();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = parts.uri.path().to_owned();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|value| value.as_str().to_owned())
        .unwrap_or_default();
    if let Ok(mut seen) = recorder.seen.lock() {
        seen.push(Seen {
            method: parts.method.as_str().to_owned(),
            url: format!("http://{host}{path_and_query}"),
            path: path.clone(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body,
        });
    }
    let redirect = |status: StatusCode, location: &str| {
        (status, [(header::LOCATION, location.to_owned())]).into_response()
    };
    if let Some(hops) = path.strip_prefix("/hop/") {
        let hops: u32 = hops.parse().unwrap_or(0);
        if hops > 0 {
            return redirect(StatusCode::FOUND, &format!("/hop/{}", hops - 1));
        }
    }
    match path.as_str() {
        "/r301" => redirect(StatusCode::MOVED_PERMANENTLY, "/landing"),
        "/r302" => redirect(StatusCode::FOUND, "/landing"),
        "/r303" => redirect(StatusCode::SEE_OTHER, "/landing"),
        "/r307" => redirect(StatusCode::TEMPORARY_REDIRECT, "landing?from=307"),
        "/r308" => redirect(StatusCode::PERMANENT_REDIRECT, "/landing"),
        "/to-metadata" => redirect(StatusCode::FOUND, "http://169.254.169.254/latest/meta-data"),
        "/no-location" => StatusCode::FOUND.into_response(),
        "/not-modified" => StatusCode::NOT_MODIFIED.into_response(),
        "/fail/503" => (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        "/fail/404" => (StatusCode::NOT_FOUND, "no").into_response(),
        "/binary" => (
            [(header::CONTENT_TYPE, "text/xml")],
            Body::from(vec![0x3c, 0xff, 0xfe, 0x3e]),
        )
            .into_response(),
        "/empty" => StatusCode::NO_CONTENT.into_response(),
        _ => ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], TWIML).into_response(),
    }
}

/// Serves [`application`] on `listener`.
fn serve_on(listener: TcpListener) -> Recorder {
    let recorder = Recorder::default();
    let app = axum::Router::new()
        .fallback(application)
        .with_state(recorder.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    recorder
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|error| panic!("bind: {error}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|error| panic!("local_addr: {error}"));
    (listener, address)
}

async fn application_server() -> (Recorder, String) {
    let (listener, address) = bind().await;
    (serve_on(listener), format!("http://{address}"))
}

/// A port on 127.0.0.1 on which nothing listens (bound, then released).
async fn closed_port() -> SocketAddr {
    let (listener, address) = bind().await;
    drop(listener);
    address
}

fn config() -> WebhookConfig {
    WebhookConfig {
        total_timeout: Duration::from_secs(10),
        ..WebhookConfig::default()
    }
}

fn client(config: WebhookConfig, token: Option<&str>) -> WebhookClient {
    WebhookClient::new(config, token.map(str::to_owned))
        .unwrap_or_else(|error| panic!("client: {error}"))
}

fn call_params() -> Params {
    [
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", "+15550100"),
        ("To", "client:alice"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
        ("Caller", "+1 555 & co=x"),
    ]
    .into_iter()
    .collect()
}

fn owned_pairs(params: &Params) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Waits (polling, bounded) until `condition` holds; false if it never did.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

#[tokio::test]
async fn post_sends_a_signed_form_and_returns_the_instructions() {
    let (recorder, base) = application_server().await;
    let client = client(config(), Some(TOKEN));
    let params = call_params();
    let instructions = client
        .fetch(&format!("{base}/voice?app=1"), WebhookMethod::Post, &params)
        .await
        .unwrap_or_else(|error| panic!("fetch: {error}"));
    assert_eq!(instructions.body, TWIML);
    assert_eq!(instructions.url.as_str(), format!("{base}/voice?app=1"));
    assert_eq!(
        instructions.content_type.as_deref(),
        Some("text/xml; charset=utf-8")
    );

    let seen = recorder.all();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.query.as_deref(), Some("app=1"));
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.form(), owned_pairs(&params));
    assert!(request.has_valid_signature(TOKEN), "{request:?}");
    assert!(!request.has_valid_signature("another-token"));
    assert!(request
        .header("user-agent")
        .is_some_and(|agent| agent.starts_with("tandem/")));
    assert!(request
        .header("accept")
        .is_some_and(|accept| accept.contains("text/xml")));
    let metrics = client.metrics();
    assert_eq!((metrics.fetches, metrics.fetch_failures), (1, 0));
}

#[tokio::test]
async fn get_appends_the_parameters_to_the_query_and_signs_the_url() {
    let (recorder, base) = application_server().await;
    let client = client(config(), Some(TOKEN));
    let params = call_params();
    let instructions = client
        .fetch(&format!("{base}/voice?app=1"), WebhookMethod::Get, &params)
        .await
        .unwrap_or_else(|error| panic!("fetch: {error}"));
    let seen = recorder.all();
    let request = &seen[0];
    assert_eq!(request.method, "GET");
    assert!(request.body.is_empty());
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(request.query.as_deref().unwrap_or("").as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
    let mut expected = vec![("app".to_owned(), "1".to_owned())];
    expected.extend(owned_pairs(&params));
    assert_eq!(query, expected);
    assert!(request.has_valid_signature(TOKEN), "{request:?}");
    // The instructions' URL is the one requested, parameters included.
    assert_eq!(instructions.url.as_str(), request.url);
}

#[tokio::test]
async fn without_an_auth_token_nothing_is_signed() {
    let (recorder, base) = application_server().await;
    let client = client(config(), None);
    let result = client
        .fetch(
            &format!("{base}/voice"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(recorder.all()[0].header("x-twilio-signature"), None);
}

#[tokio::test]
async fn credentials_in_the_url_become_basic_auth_and_are_not_signed() {
    let (recorder, base) = application_server().await;
    let client = client(config(), Some(TOKEN));
    let with_credentials = base.replacen("http://", "http://twilio:s3cret@", 1);
    let result = client
        .fetch(
            &format!("{with_credentials}/voice"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await;
    assert!(result.is_ok(), "{result:?}");
    let request = &recorder.all()[0];
    let basic = base64::engine::general_purpose::STANDARD.encode("twilio:s3cret");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert!(request.has_valid_signature(TOKEN), "{request:?}");
}

#[tokio::test]
async fn three_redirects_are_followed_and_a_fourth_is_refused() {
    let (recorder, base) = application_server().await;
    let client = client(config(), Some(TOKEN));
    let instructions = client
        .fetch(
            &format!("{base}/hop/3"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await
        .unwrap_or_else(|error| panic!("fetch: {error}"));
    assert_eq!(instructions.url.as_str(), format!("{base}/hop/0"));
    assert_eq!(instructions.body, TWIML);
    let seen = recorder.all();
    assert_eq!(seen.len(), 4);
    // Each hop is signed for its own URL (a 302 turns the POST into a GET).
    for request in &seen {
        assert!(request.has_valid_signature(TOKEN), "{request:?}");
    }

    let error = client
        .fetch(
            &format!("{base}/hop/4"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await
        .err();
    assert!(
        matches!(error, Some(WebhookError::TooManyRedirects { limit: 3 })),
        "{error:?}"
    );
    assert_eq!(error.map(|error| error.twilio_code()), Some(11215));
    // The fourth redirect is not followed: /hop/0 was not requested again.
    assert_eq!(recorder.count("/hop/0"), 1);
}

#[tokio::test]
async fn post_becomes_get_on_301_302_303_and_stays_post_on_307_308() {
    let (recorder, base) = application_server().await;
    let client = client(config(), Some(TOKEN));
    let params = call_params();
    for (path, method) in [
        ("/r301", "GET"),
        ("/r302", "GET"),
        ("/r303", "GET"),
        ("/r307", "POST"),
        ("/r308", "POST"),
    ] {
        let instructions = client
            .fetch(&format!("{base}{path}"), WebhookMethod::Post, &params)
            .await
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        assert!(instructions.url.path().ends_with("/landing"), "{path}");
        let seen = recorder.all();
        let landing = seen
            .last()
            .unwrap_or_else(|| panic!("{path}: nothing seen"));
        assert_eq!(landing.path, "/landing", "{path}");
        assert_eq!(landing.method, method, "{path}");
        if method == "POST" {
            assert_eq!(landing.form(), owned_pairs(&params), "{path}");
        } else {
            assert!(landing.body.is_empty(), "{path}");
            assert_eq!(landing.header("content-type"), None, "{path}");
        }
        assert!(landing.has_valid_signature(TOKEN), "{path}: {landing:?}");
    }
    // The relative Location of the 307 resolved against the request URL.
    assert_eq!(
        recorder
            .all()
            .iter()
            .filter(|seen| seen.query.as_deref() == Some("from=307"))
            .count(),
        1
    );
}

#[tokio::test]
async fn redirects_without_location_or_to_other_statuses_fail() {
    let (_recorder, base) = application_server().await;
    let client = client(config(), None);
    let error = client
        .fetch(
            &format!("{base}/no-location"),
            WebhookMethod::Get,
            &Params::new(),
        )
        .await
        .err();
    assert!(
        matches!(error, Some(WebhookError::InvalidRedirect)),
        "{error:?}"
    );
    let error = client
        .fetch(
            &format!("{base}/not-modified"),
            WebhookMethod::Get,
            &Params::new(),
        )
        .await
        .err();
    assert!(
        matches!(error, Some(WebhookError::Status { status: 304 })),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_non_2xx_status_is_an_error_and_never_retried() {
    let (recorder, base) = application_server().await;
    let client = client(config(), None);
    for (path, status) in [("/fail/503", 503), ("/fail/404", 404)] {
        let error = client
            .fetch(
                &format!("{base}{path}"),
                WebhookMethod::Post,
                &call_params(),
            )
            .await
            .err();
        assert!(
            matches!(&error, Some(WebhookError::Status { status: got }) if *got == status),
            "{error:?}"
        );
        assert_eq!(error.map(|error| error.twilio_code()), Some(11200));
        assert_eq!(recorder.count(path), 1, "{path}");
    }
    let metrics = client.metrics();
    assert_eq!((metrics.fetches, metrics.fetch_failures), (2, 2));
    assert_eq!(metrics.connect_retries, 0);
    // Any 2xx is a success, even without a body.
    let empty = client
        .fetch(
            &format!("{base}/empty"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await;
    assert!(empty.is_ok_and(|instructions| instructions.body.is_empty()));
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_refused() {
    let (_recorder, base) = application_server().await;
    let client = client(config(), None);
    let error = client
        .fetch(
            &format!("{base}/binary"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await
        .err();
    assert!(matches!(error, Some(WebhookError::NotUtf8)), "{error:?}");
    assert_eq!(error.map(|error| error.twilio_code()), Some(12100));
}

/// A raw HTTP server answering every connection with `head` and then `body` chunks forever
/// (or until the client goes), counting the bytes it managed to write.
async fn endless_server(head: &'static str, endless_chunks: bool) -> (SocketAddr, Arc<Mutex<u64>>) {
    let (listener, address) = bind().await;
    let written = Arc::new(Mutex::new(0u64));
    let counter = Arc::clone(&written);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                if !endless_chunks {
                    // Announce a large body and then hold the connection without sending it.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                // Chunked encoding (RFC 9112 §7.1): 4 KiB of 'a' per chunk, never a last chunk.
                let chunk = format!("1000\r\n{}\r\n", "a".repeat(4096));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {
                    if let Ok(mut total) = counter.lock() {
                        *total += 4096;
                    }
                }
            });
        }
    });
    (address, written)
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_without_reading_it_all() {
    let config = WebhookConfig {
        max_body_bytes: 10_000,
        ..config()
    };
    let client = client(config, None);

    // Announced too large: refused on the headers (the body never comes; reading it would end
    // in a timeout instead).
    let (address, _) = endless_server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 100000000\r\n\r\n",
        false,
    )
    .await;
    let error = client
        .fetch(
            &format!("http://{address}/voice"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await
        .err();
    assert!(
        matches!(error, Some(WebhookError::TooLarge { limit: 10_000 })),
        "{error:?}"
    );
    assert_eq!(error.map(|error| error.twilio_code()), Some(11750));

    // Chunked and endless: refused once the running count passes the cap (reading it all
    // would never end).
    let (address, written) = endless_server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n",
        true,
    )
    .await;
    let error = client
        .fetch(
            &format!("http://{address}/voice"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await
        .err();
    assert!(
        matches!(error, Some(WebhookError::TooLarge { limit: 10_000 })),
        "{error:?}"
    );
    // The server stops once the client has gone: what it wrote is bounded by the socket
    // buffers, not by the (endless) body.
    let total = || written.lock().map(|total| *total).unwrap_or(0);
    let mut stopped = false;
    for _ in 0..200 {
        let before = total();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if total() == before {
            stopped = true;
            break;
        }
    }
    assert!(
        stopped,
        "the server kept writing: the client is still reading"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let (listener, address) = bind().await;
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if let Ok(mut streams) = holder.lock() {
                streams.push(stream);
            }
        }
    });
    let limit = Duration::from_millis(300);
    let client = client(
        WebhookConfig {
            total_timeout: limit,
            ..config()
        },
        None,
    );
    let error = client
        .fetch(
            &format!("http://{address}/voice"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await
        .err();
    assert!(
        matches!(error, Some(WebhookError::Timeout { limit: got }) if got == limit),
        "{error:?}"
    );
    assert_eq!(error.map(|error| error.twilio_code()), Some(11205));
    // The connection was made (it is not a connection failure) and nothing was retried.
    assert_eq!(held.lock().map(|streams| streams.len()).unwrap_or(0), 1);
    assert_eq!(client.metrics().connect_retries, 0);
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported() {
    let address = closed_port().await;
    let client = client(config(), None);
    let error = client
        .fetch(
            &format!("http://{address}/voice"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await
        .err();
    assert!(
        matches!(error, Some(WebhookError::ConnectionRefused(_))),
        "{error:?}"
    );
    assert_eq!(error.map(|error| error.twilio_code()), Some(11202));
    assert_eq!(client.metrics().connect_retries, 2);
    assert_eq!(client.metrics().fetch_failures, 1);
}

#[tokio::test]
async fn a_refused_connection_that_recovers_succeeds() {
    let address = closed_port().await;
    let client = client(
        WebhookConfig {
            connect_retries: 5,
            ..config()
        },
        None,
    );
    let fetching = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .fetch(
                    &format!("http://{address}/voice"),
                    WebhookMethod::Post,
                    &call_params(),
                )
                .await
        })
    };
    // Start listening only once the first attempt has been refused.
    assert!(eventually(|| client.metrics().connect_retries >= 1).await);
    let listener = TcpListener::bind(address)
        .await
        .unwrap_or_else(|error| panic!("rebind {address}: {error}"));
    let recorder = serve_on(listener);
    let result = fetching
        .await
        .unwrap_or_else(|error| panic!("join: {error}"));
    assert!(
        result.is_ok_and(|instructions| instructions.body == TWIML),
        "the retry after the server came up should succeed"
    );
    assert_eq!(recorder.count("/voice"), 1);
    assert!(client.metrics().connect_retries >= 1);
}

#[tokio::test]
async fn link_local_and_metadata_addresses_are_always_refused() {
    let lenient = AddressPolicy {
        allow_private: true,
        allow_loopback: true,
    };
    let client = client(
        WebhookConfig {
            policy: lenient,
            ..config()
        },
        None,
    );
    for (url, expected) in [
        ("http://169.254.169.254/latest/meta-data", Refusal::Metadata),
        ("http://[fd00:ec2::254]/latest", Refusal::Metadata),
        ("http://169.254.10.10/", Refusal::LinkLocal),
        ("http://[fe80::1]/", Refusal::LinkLocal),
    ] {
        let error = client
            .fetch(url, WebhookMethod::Post, &call_params())
            .await
            .err();
        assert!(
            matches!(&error, Some(WebhookError::RefusedAddress { reason, .. }) if *reason == expected),
            "{url}: {error:?}"
        );
    }
    // A redirect to the metadata address is vetted like the first hop.
    let (recorder, base) = application_server().await;
    let error = client
        .fetch(
            &format!("{base}/to-metadata"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await
        .err();
    assert!(
        matches!(
            error,
            Some(WebhookError::RefusedAddress {
                reason: Refusal::Metadata,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(recorder.count("/to-metadata"), 1);
}

#[tokio::test]
async fn loopback_is_reached_only_when_the_policy_allows_it() {
    let (recorder, base) = application_server().await;
    let strict = client(
        WebhookConfig {
            policy: AddressPolicy {
                allow_private: true,
                allow_loopback: false,
            },
            ..config()
        },
        None,
    );
    let error = strict
        .fetch(
            &format!("{base}/voice"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await
        .err();
    assert!(
        matches!(
            error,
            Some(WebhookError::RefusedAddress {
                reason: Refusal::Loopback,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(
        recorder.all().len(),
        0,
        "a refused address is never connected to"
    );

    let lenient = client(config(), None);
    let result = lenient
        .fetch(
            &format!("{base}/voice"),
            WebhookMethod::Post,
            &call_params(),
        )
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(recorder.all().len(), 1);
}

#[tokio::test]
async fn bad_urls_fail_with_invalid_url_format() {
    let client = client(config(), None);
    for url in ["/voice", "ftp://example.com/voice", "http://[::1/voice"] {
        let error = client
            .fetch(url, WebhookMethod::Post, &call_params())
            .await
            .err();
        assert_eq!(error.map(|error| error.twilio_code()), Some(11100), "{url}");
    }
}

#[tokio::test]
async fn status_callbacks_are_sent_in_the_background_and_counted() {
    let (recorder, base) = application_server().await;
    let client = client(config(), Some(TOKEN));
    let mut params = call_params();
    params.set("CallStatus", "completed");
    params.push("SequenceNumber", "0");
    for _ in 0..3 {
        client.send_in_background(
            format!("{base}/status"),
            WebhookMethod::Post,
            params.clone(),
        );
    }
    client.send_in_background(
        format!("{base}/fail/503"),
        WebhookMethod::Post,
        params.clone(),
    );
    client.send_in_background(
        format!("http://{}/status", closed_port().await),
        WebhookMethod::Get,
        params.clone(),
    );
    assert!(
        eventually(|| {
            let metrics = client.metrics();
            metrics.callbacks_sent == 3 && metrics.callbacks_failed == 2
        })
        .await,
        "{:?}",
        client.metrics()
    );
    let seen = recorder.all();
    let callbacks: Vec<&Seen> = seen.iter().filter(|seen| seen.path == "/status").collect();
    assert_eq!(callbacks.len(), 3);
    for callback in callbacks {
        assert_eq!(callback.method, "POST");
        assert_eq!(callback.form(), owned_pairs(&params));
        assert!(callback.has_valid_signature(TOKEN));
    }
    // The 503 was tried once: a status is never retried.
    assert_eq!(recorder.count("/fail/503"), 1);
    let metrics = client.metrics();
    assert_eq!((metrics.fetches, metrics.callbacks_dropped), (0, 0));
}

#[tokio::test]
async fn status_callbacks_never_block_and_excess_ones_are_dropped() {
    // A server that accepts and never answers.
    let (listener, address) = bind().await;
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let holder = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if let Ok(mut streams) = holder.lock() {
                streams.push(stream);
            }
        }
    });
    let client = client(
        WebhookConfig {
            total_timeout: Duration::from_millis(500),
            max_callbacks_in_flight: 2,
            ..config()
        },
        None,
    );
    let url = format!("http://{address}/status");
    // Each call returns at once although the server never answers; the third finds both
    // slots taken and is dropped.
    for _ in 0..3 {
        client.send_in_background(url.clone(), WebhookMethod::Post, call_params());
    }
    assert_eq!(client.metrics().callbacks_dropped, 1);
    assert_eq!(client.metrics().callbacks_sent, 0);
    // Both in-flight callbacks end at the total timeout as failures and free their slots.
    assert!(eventually(|| client.metrics().callbacks_failed == 2).await);
    client.send_in_background(url, WebhookMethod::Post, call_params());
    assert_eq!(client.metrics().callbacks_dropped, 1);
    assert!(eventually(|| accepted.lock().map(|streams| streams.len()).unwrap_or(0) == 3).await);
}

#[test]
fn status_callbacks_outside_a_runtime_are_dropped_not_panicking() {
    let client = client(config(), None);
    client.send_in_background(
        "http://127.0.0.1:9/status".to_owned(),
        WebhookMethod::Post,
        Params::new(),
    );
    assert_eq!(client.metrics().callbacks_dropped, 1);
}

#[tokio::test]
async fn consecutive_requests_reuse_one_kept_alive_connection() {
    let (listener, address) = bind().await;
    let connections = Arc::new(Mutex::new(0u64));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            *accepted.lock().unwrap() += 1;
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                // One response per request read (each request fits one read here).
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        return;
                    }
                    let body = "<Response/>";
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let webhooks = client(config(), Some("token"));
    let url = format!("http://{address}/voice");
    for _ in 0..5 {
        let fetched = webhooks
            .fetch(&url, WebhookMethod::Get, &Params::new())
            .await
            .unwrap();
        assert_eq!(fetched.body, "<Response/>");
    }
    assert_eq!(
        *connections.lock().unwrap(),
        1,
        "a new connection per request"
    );
}
