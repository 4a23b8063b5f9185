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
    /// Live and recent calls.
    pub calls: router::records::CallRecords,
    /// The router's webhook client (its counters).
    pub webhooks: router::webhook::WebhookClient,
    /// The RTP port pool (its occupancy).
    pub rtp_ports: media::ports::PortPool,
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
        .route("/calls", get(list_calls))
        .route("/calls/{sid}", get(call_by_sid))
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

/// `GET /v1/calls`: live calls (oldest first), then recent ones (newest first).
async fn list_calls(State(state): State<Arc<HttpState>>) -> Response {
    Json(serde_json::json!({ "calls": state.calls.list() })).into_response()
}

/// `GET /v1/calls/{CallSid}`: one live or recent call.
async fn call_by_sid(State(state): State<Arc<HttpState>>, Path(sid): Path<String>) -> Response {
    match state.calls.get(&sid) {
        Some(call) => Json(call).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such call"),
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
    let sip = state.endpoint.stats();
    let transport = state.endpoint.transports().stats();
    let presence = state.presence.metrics();
    let cache = state.media.metrics();
    let relaxed = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let mut out = Exposition(String::with_capacity(4096));

    out.labelled(
        "tandem_sip_requests_received_total",
        COUNTER,
        "SIP requests received, by method.",
        "method",
        sip.requests_in(),
    );
    out.labelled(
        "tandem_sip_responses_sent_total",
        COUNTER,
        "SIP responses sent, by class.",
        "class",
        sip.responses_out(),
    );
    out.labelled(
        "tandem_sip_responses_received_total",
        COUNTER,
        "SIP responses received, by class.",
        "class",
        sip.responses_in(),
    );

    out.single(
        "tandem_sip_server_transactions",
        GAUGE,
        "Live SIP server transactions.",
        relaxed(&sip.server_transactions),
    );
    out.single(
        "tandem_sip_client_transactions",
        GAUGE,
        "Live SIP client transactions.",
        relaxed(&sip.client_transactions),
    );
    out.single(
        "tandem_sip_dialogs",
        GAUGE,
        "Live SIP dialog routes.",
        relaxed(&sip.dialogs),
    );
    out.single(
        "tandem_sip_tcp_connections",
        GAUGE,
        "Open SIP TCP connections.",
        relaxed(&transport.tcp.open),
    );
    out.single(
        "tandem_sip_malformed_total",
        COUNTER,
        "SIP messages that could not be parsed.",
        relaxed(&transport.malformed),
    );
    out.single(
        "tandem_sip_dropped_total",
        COUNTER,
        "SIP messages dropped for a full queue or buffer.",
        relaxed(&transport.dropped),
    );
    out.single(
        "tandem_sip_invites_refused_total",
        COUNTER,
        "INVITEs refused at the edge (403/407).",
        relaxed(&sip.invites_refused),
    );
    out.single(
        "tandem_sip_invites_shed_total",
        COUNTER,
        "INVITEs refused with 503 while the SIP endpoint was falling behind.",
        relaxed(&sip.invites_shed),
    );
    out.single(
        "tandem_sip_rate_limited_total",
        COUNTER,
        "SIP requests dropped by the per-source rate limit.",
        relaxed(&sip.rate_limited),
    );
    out.single(
        "tandem_sip_rate_limited_sources",
        GAUGE,
        "Source addresses the per-source rate limit tracks.",
        relaxed(&sip.rate_limited_sources),
    );
    out.single(
        "tandem_sip_tcp_refused_total",
        COUNTER,
        "TCP connections refused by the per-source cap.",
        relaxed(&transport.tcp.refused),
    );
    out.single(
        "tandem_sip_tcp_idle_closed_total",
        COUNTER,
        "TCP connections closed for idleness.",
        relaxed(&transport.tcp.idle_closed),
    );
    let calls = state.calls.metrics();
    out.single(
        "tandem_calls_active",
        GAUGE,
        "Calls in progress.",
        calls.active,
    );
    out.labelled(
        "tandem_calls_total",
        COUNTER,
        "Calls ended, by outcome.",
        "outcome",
        router::records::Metrics::OUTCOMES
            .iter()
            .copied()
            .zip(calls.ended),
    );

    out.single(
        "tandem_calls_refused_overload_total",
        COUNTER,
        "INVITEs refused with 503 because the call limit was reached.",
        calls.refused_overload,
    );
    let webhooks = state.webhooks.metrics();
    out.single(
        "tandem_webhook_fetches_total",
        COUNTER,
        "Call-instruction requests made.",
        webhooks.fetches,
    );
    out.single(
        "tandem_webhook_fetch_failures_total",
        COUNTER,
        "Call-instruction requests that failed.",
        webhooks.fetch_failures,
    );
    out.labelled(
        "tandem_status_callbacks_total",
        COUNTER,
        "Status callbacks, by result.",
        "result",
        [
            ("sent", webhooks.callbacks_sent),
            ("failed", webhooks.callbacks_failed),
            ("dropped", webhooks.callbacks_dropped),
        ]
        .into_iter(),
    );
    out.single(
        "tandem_media_rtp_port_pairs_leased",
        GAUGE,
        "RTP/RTCP port pairs in use.",
        state.rtp_ports.leased() as u64,
    );
    out.single(
        "tandem_media_rtp_port_pairs_capacity",
        GAUGE,
        "RTP/RTCP port pairs in the configured range.",
        state.rtp_ports.capacity() as u64,
    );
    out.single(
        "tandem_media_rtp_port_pairs_resting",
        GAUGE,
        "Released RTP/RTCP port pairs resting with their sockets open before reuse.",
        state.rtp_ports.resting() as u64,
    );
    out.single(
        "tandem_media_rtp_port_pairs_reused_total",
        COUNTER,
        "Port pairs handed out again after resting (instead of binding fresh sockets).",
        state.rtp_ports.reused(),
    );

    out.single(
        "tandem_presence_devices_online",
        GAUGE,
        "Client devices connected.",
        presence.devices_online,
    );
    out.single(
        "tandem_presence_identities_online",
        GAUGE,
        "Identities with a device connected.",
        presence.identities_online,
    );
    out.single(
        "tandem_presence_websockets",
        GAUGE,
        "Open client WebSocket connections.",
        state.gateway.connections(),
    );
    out.single(
        "tandem_presence_events_dropped_total",
        COUNTER,
        "Presence events dropped for slow subscribers.",
        presence.events_dropped,
    );

    out.single(
        "tandem_media_cache_bytes",
        GAUGE,
        "Bytes of processed audio in the prompt cache.",
        cache.bytes_stored,
    );
    out.single(
        "tandem_media_cache_entries",
        GAUGE,
        "Entries in the prompt cache.",
        cache.entries,
    );
    out.single(
        "tandem_media_cache_hits_total",
        COUNTER,
        "Prompt requests answered from a fresh cache entry.",
        cache.hits,
    );
    out.single(
        "tandem_media_cache_misses_total",
        COUNTER,
        "Prompt requests that fetched from the origin.",
        cache.misses,
    );
    out.single(
        "tandem_media_cache_revalidations_total",
        COUNTER,
        "Stale entries confirmed by a 304.",
        cache.revalidations,
    );
    out.single(
        "tandem_media_cache_evictions_total",
        COUNTER,
        "Entries evicted to stay within the byte budget.",
        cache.evictions,
    );
    out.single(
        "tandem_media_cache_fetch_errors_total",
        COUNTER,
        "Origin fetches that ended in an error.",
        cache.fetch_errors,
    );
    out.single(
        "tandem_media_synthesis_errors_total",
        COUNTER,
        "Say texts that could not be synthesized.",
        cache.synthesis_errors,
    );

    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.0,
    )
        .into_response()
}

const COUNTER: &str = "counter";
const GAUGE: &str = "gauge";

/// Prometheus text exposition: one HELP and TYPE header per family, then its samples.
struct Exposition(String);

impl Exposition {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        // Writing into a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A family with one sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.header(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// A family with one sample per value of `label`.
    fn labelled<L: std::fmt::Display>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        samples: impl Iterator<Item = (L, u64)>,
    ) {
        self.header(name, kind, help);
        for (value, n) in samples {
            let _ = writeln!(self.0, "{name}{{{label}=\"{value}\"}} {n}");
        }
    }
}
