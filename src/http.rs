//! The HTTP listener: `/healthz`, Prometheus `/metrics`, and the `/v1` API behind the API key.
//!
//! Errors are JSON `{"error":{"code":...,"message":...}}` with a fitting status (PRODUCT.md).
//! Subsystems add their `/v1` routes here as they land (presence, media, calls).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

/// What the handlers read.
pub struct HttpState {
    /// The bearer token `/v1` routes require.
    pub api_key: String,
    /// The SIP edge (metrics, drain state).
    pub endpoint: sip::endpoint::EndpointHandle,
    /// Calls in progress.
    pub active_calls: router::calls::ActiveCalls,
    /// Who is online.
    pub presence: presence::Registry,
    /// The WebSocket gateway (`/v1/ws`, outside the API key: clients bring access tokens).
    pub gateway: presence::gateway::Gateway,
    /// The prompt cache (`/v1/media`).
    pub media: Arc<media::cache::Cache>,
}

/// Serves HTTP on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // Connect info gives the gateway the peer address for its per-source connection cap.
    let app = routes(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

/// The route table.
pub fn routes(state: Arc<HttpState>) -> Router {
    // Each subsystem brings its routes with its own state applied; ours get `state` here.
    let v1 = Router::new()
        .route("/presence", get(online_identities))
        .route("/presence/{identity}", get(presence_of))
        .with_state(state.clone())
        .merge(media::http::routes(state.media.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    let gateway = state.gateway.routes();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .nest("/v1", v1)
        .fallback(not_found)
        .merge(gateway)
}

/// A JSON error body with its status.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// `GET /v1/presence`: the identities with at least one device online.
async fn online_identities(State(state): State<Arc<HttpState>>) -> Response {
    let identities: Vec<String> = state
        .presence
        .online_identities()
        .iter()
        .map(|i| i.as_str().to_owned())
        .collect();
    Json(serde_json::json!({ "identities": identities })).into_response()
}

/// `GET /v1/presence/{identity}`: the presence status resource (offline when unknown).
async fn presence_of(
    State(state): State<Arc<HttpState>>,
    Path(identity): Path<String>,
) -> Response {
    match presence::Identity::new(&identity) {
        Ok(identity) => Json(state.presence.status_of(&identity)).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_identity", &e.to_string()),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

/// 200 while serving; 503 once a drain started, so load balancers stop sending new work.
async fn healthz(State(state): State<Arc<HttpState>>) -> Response {
    if state.endpoint.is_draining() {
        error(StatusCode::SERVICE_UNAVAILABLE, "draining", "shutting down")
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn require_api_key(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        // Constant time: the comparison must not tell an attacker how much of a guess matched.
        Some(key) if bool::from(key.as_bytes().ct_eq(state.api_key.as_bytes())) => {
            next.run(request).await
        }
        Some(_) => error(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API key"),
        None => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing Authorization: Bearer <api_key>",
        ),
    }
}

/// Prometheus text exposition (version 0.0.4).
async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let mut out = String::with_capacity(4096);
    let sip = state.endpoint.stats();
    let transport = state.endpoint.transports().stats();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut out,
        "tandem_sip_requests_received_total",
        "counter",
        "SIP requests received, by method.",
    );
    for (method, n) in sip.requests_in() {
        let _ = writeln!(
            out,
            "tandem_sip_requests_received_total{{method=\"{method}\"}} {n}"
        );
    }
    family(
        &mut out,
        "tandem_sip_responses_sent_total",
        "counter",
        "SIP responses sent, by class.",
    );
    for (class, n) in sip.responses_out() {
        let _ = writeln!(
            out,
            "tandem_sip_responses_sent_total{{class=\"{class}\"}} {n}"
        );
    }
    family(
        &mut out,
        "tandem_sip_responses_received_total",
        "counter",
        "SIP responses received, by class.",
    );
    for (class, n) in sip.responses_in() {
        let _ = writeln!(
            out,
            "tandem_sip_responses_received_total{{class=\"{class}\"}} {n}"
        );
    }
    let presence = state.presence.metrics();
    let cache = state.media.metrics();
    let gauges: [(&str, &str, u64); 10] = [
        (
            "tandem_media_cache_bytes",
            "Bytes of processed audio in the prompt cache.",
            cache.bytes_stored,
        ),
        (
            "tandem_media_cache_entries",
            "Entries in the prompt cache.",
            cache.entries,
        ),
        (
            "tandem_presence_devices_online",
            "Client devices connected.",
            presence.devices_online,
        ),
        (
            "tandem_presence_websockets",
            "Open client WebSocket connections.",
            state.gateway.connections(),
        ),
        (
            "tandem_presence_identities_online",
            "Identities with a device connected.",
            presence.identities_online,
        ),
        (
            "tandem_sip_server_transactions",
            "Live SIP server transactions.",
            sip.server_transactions.load(Ordering::Relaxed),
        ),
        (
            "tandem_sip_client_transactions",
            "Live SIP client transactions.",
            sip.client_transactions.load(Ordering::Relaxed),
        ),
        (
            "tandem_sip_dialogs",
            "Live SIP dialog routes.",
            sip.dialogs.load(Ordering::Relaxed),
        ),
        (
            "tandem_sip_tcp_connections",
            "Open SIP TCP connections.",
            transport.tcp.open.load(Ordering::Relaxed),
        ),
        (
            "tandem_calls_active",
            "Calls in progress.",
            state.active_calls.count() as u64,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let counters: [(&str, &str, u64); 12] = [
        (
            "tandem_media_synthesis_errors_total",
            "Say texts that could not be synthesized.",
            cache.synthesis_errors,
        ),
        (
            "tandem_media_cache_hits_total",
            "Prompt requests answered from a fresh cache entry.",
            cache.hits,
        ),
        (
            "tandem_media_cache_misses_total",
            "Prompt requests that fetched from the origin.",
            cache.misses,
        ),
        (
            "tandem_media_cache_revalidations_total",
            "Stale entries confirmed by a 304.",
            cache.revalidations,
        ),
        (
            "tandem_media_cache_evictions_total",
            "Entries evicted to stay within the byte budget.",
            cache.evictions,
        ),
        (
            "tandem_media_cache_fetch_errors_total",
            "Origin fetches that ended in an error.",
            cache.fetch_errors,
        ),
        (
            "tandem_presence_events_dropped_total",
            "Presence events dropped for slow subscribers.",
            presence.events_dropped,
        ),
        (
            "tandem_sip_malformed_total",
            "SIP messages that could not be parsed.",
            transport.malformed.load(Ordering::Relaxed),
        ),
        (
            "tandem_sip_dropped_total",
            "SIP messages dropped for a full queue or buffer.",
            transport.dropped.load(Ordering::Relaxed),
        ),
        (
            "tandem_sip_invites_refused_total",
            "INVITEs refused at the edge (403/407).",
            sip.invites_refused.load(Ordering::Relaxed),
        ),
        (
            "tandem_sip_tcp_refused_total",
            "TCP connections refused by the per-source cap.",
            transport.tcp.refused.load(Ordering::Relaxed),
        ),
        (
            "tandem_sip_tcp_idle_closed_total",
            "TCP connections closed for idleness.",
            transport.tcp.idle_closed.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
