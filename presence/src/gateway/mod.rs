//! The WebSocket gateway (`GET /v1/ws`, subprotocol `tandem.v1`): the tokio shell that connects
//! clients to the registry (PRODUCT.md, "WebSocket client protocol"; `docs/presence.md`,
//! "WebSocket gateway").
//!
//! [`Gateway::routes`] gives an axum [`Router`] to merge into the HTTP listener. Each accepted
//! connection is one task (`session.rs`) that owns all of its state: the registry's
//! [`crate::DeviceGuard`], the device's queue, the table of offered calls and its timers. It
//! selects over the socket, the queue and one timer; nothing about a connection is shared or
//! locked, and dropping the task (for any reason) disconnects the device and reports its open
//! calls gone.
//!
//! Choices the contract leaves open:
//! - **No subprotocol.** A client that does not offer `tandem.v1` is refused with HTTP 400
//!   before the upgrade: it costs no task, and a client that cannot name the protocol would not
//!   understand a close reason either.
//! - **Connections per address.** Over [`GatewayConfig::max_connections_per_ip`] (counted from
//!   `ConnectInfo<SocketAddr>`, so serve with `into_make_service_with_connect_info`), the
//!   upgrade is refused with HTTP 429. Without connect info no per-address limit applies.
//! - **Recoverable or not.** A frame that is not a JSON object with a string `type` (and an
//!   object `payload` when present), a binary frame, a first message other than `listen` and a
//!   second `listen` close the connection with 4000. An unknown `type`, a payload that does not
//!   fit its type, a call message for an unknown CallSid and a `subscribe` over the limit are
//!   answered with `error {code, message}` and the connection stays open.
//! - **Slow reader.** When the device's queue overflows, the client has missed an event: the
//!   connection is closed with 1008 and reason `slow reader`. A single frame that the client
//!   does not take within `dead_after` ends the connection too.
//! - **Liveness.** A ping every [`GatewayConfig::ping_interval`]; any frame from the client
//!   (a pong, a message) counts as life. Nothing for [`GatewayConfig::dead_after`] → close 1001
//!   `not responding`, device offline.
//! - **Expiry.** A token lasts until its `exp` plus the verification leeway (the instant at
//!   which `verify` would start refusing it); then the device goes offline and the socket is
//!   closed with 4001 `token expired`, unless a `token` message refreshed it before.

mod calls;
pub mod protocol;
mod session;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use tracing::Instrument;

use crate::registry::Registry;
use crate::token::KeySet;

pub use protocol::{CloseCode, ErrorCode, SUBPROTOCOL};

/// The path the gateway serves.
pub const PATH: &str = "/v1/ws";

/// The read buffer of a connection's WebSocket, allocated for every connection: small, so that
/// idle connections are cheap (4 KiB cost 3 KiB more per connection, measured with
/// `bench/ws_load.sh`); a larger message is assembled across several reads.
const READ_BUFFER_BYTES: usize = 1024;

/// Limits and timers of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Time from the upgrade to `listen` (close 4008 beyond). Default 10 s.
    pub listen_timeout: Duration,
    /// Largest message and frame accepted from a client (close 1009 beyond). Default 64 KiB.
    pub max_message_bytes: usize,
    /// Events queued for one device before it counts as a slow reader. Default 64.
    pub outbound_queue: usize,
    /// Time between pings. Default 10 s.
    pub ping_interval: Duration,
    /// Silence after which a client is offline (close 1001), and the longest a single frame may
    /// take to be written to it. Default 30 s.
    pub dead_after: Duration,
    /// Connections from one IP address at once (HTTP 429 beyond). Default 100.
    pub max_connections_per_ip: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen_timeout: Duration::from_secs(10),
            max_message_bytes: 64 * 1024,
            outbound_queue: 64,
            ping_interval: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
            max_connections_per_ip: 100,
        }
    }
}

/// The WebSocket gateway: verifies tokens with `keys`, puts devices in `registry`.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

/// What every connection task reads; immutable but for the address counts.
struct Shared {
    keys: Arc<KeySet>,
    registry: Registry,
    config: GatewayConfig,
    connections_by_address: DashMap<IpAddr, usize>,
    connections: AtomicU64,
}

/// A connection's place in the per-address count (and the total); released on drop.
struct ConnectionSlot {
    shared: Arc<Shared>,
    address: Option<IpAddr>,
}

impl Gateway {
    /// A gateway over `registry`, accepting tokens that `keys` verifies.
    pub fn new(keys: Arc<KeySet>, registry: Registry, config: GatewayConfig) -> Gateway {
        Gateway {
            shared: Arc::new(Shared {
                keys,
                registry,
                config,
                connections_by_address: DashMap::new(),
                connections: AtomicU64::new(0),
            }),
        }
    }

    /// `GET /v1/ws`, with the gateway as state: merge it into the application's router, served
    /// with `into_make_service_with_connect_info::<SocketAddr>()` for the per-address limit.
    pub fn routes(&self) -> Router {
        Router::new()
            .route(PATH, get(upgrade))
            .with_state(Arc::clone(&self.shared))
    }

    /// WebSocket connections open now, authenticated or not (a gauge for `/metrics`).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The registry devices are put in.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// The limits in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.shared.config
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Gateway")
            .field("config", &self.shared.config)
            .field("connections", &self.connections())
            .finish()
    }
}

/// The upgrade handler: checks the subprotocol and the per-address limit, then hands the socket
/// to a connection task.
async fn upgrade(
    State(shared): State<Arc<Shared>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // RFC 6455 §4.2.2: the server picks one of the subprotocols the client offered; we have one
    // and require it.
    let upgrade = upgrade.protocols([SUBPROTOCOL]);
    if upgrade.selected_protocol().is_none() {
        return (
            StatusCode::BAD_REQUEST,
            "WebSocket subprotocol tandem.v1 required",
        )
            .into_response();
    }
    let peer = peer.map(|Extension(ConnectInfo(address))| address);
    let Some(slot) = ConnectionSlot::take(&shared, peer.map(|address| address.ip())) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address",
        )
            .into_response();
    };
    let max_message_bytes = shared.config.max_message_bytes;
    let span = match peer {
        Some(address) => tracing::debug_span!(
            "ws",
            peer = %address,
            identity = tracing::field::Empty,
            device_id = tracing::field::Empty
        ),
        None => tracing::debug_span!(
            "ws",
            identity = tracing::field::Empty,
            device_id = tracing::field::Empty
        ),
    };
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        // Each message is written out at once: nothing waits in a buffer of ours, and a client
        // that does not read holds at most the frame being written.
        .write_buffer_size(0)
        .max_message_size(max_message_bytes)
        .max_frame_size(max_message_bytes)
        // The task uses the socket where the closure put it: passed by value, it would be
        // stored again in `session::run`'s future, making every idle connection's task larger.
        .on_upgrade(move |mut socket| {
            async move {
                session::run(&mut socket, &slot.shared).await;
                drop(slot);
            }
            .instrument(span)
        })
}

impl ConnectionSlot {
    /// Counts a connection from `address`; `None` if that address is at its limit.
    fn take(shared: &Arc<Shared>, address: Option<IpAddr>) -> Option<ConnectionSlot> {
        if let Some(address) = address {
            let limit = shared.config.max_connections_per_ip;
            match shared.connections_by_address.entry(address) {
                Entry::Occupied(mut occupied) => {
                    if *occupied.get() >= limit {
                        return None;
                    }
                    *occupied.get_mut() += 1;
                }
                Entry::Vacant(vacant) => {
                    if limit == 0 {
                        return None;
                    }
                    vacant.insert(1);
                }
            }
        }
        shared.connections.fetch_add(1, Ordering::Relaxed);
        Some(ConnectionSlot {
            shared: Arc::clone(shared),
            address,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        let Some(address) = self.address else {
            return;
        };
        if let Entry::Occupied(mut occupied) = self.shared.connections_by_address.entry(address) {
            *occupied.get_mut() = occupied.get().saturating_sub(1);
            if *occupied.get() == 0 {
                occupied.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Algorithm, Config, Key};

    fn gateway(max_connections_per_ip: usize) -> Gateway {
        let key = Key::new("SKtest", Algorithm::Hs256, &[7; 32]).unwrap();
        let keys = KeySet::new(vec![key], Config::default()).unwrap();
        Gateway::new(
            Arc::new(keys),
            Registry::default(),
            GatewayConfig {
                max_connections_per_ip,
                ..GatewayConfig::default()
            },
        )
    }

    #[test]
    fn connections_per_address_are_counted_and_released() {
        let gateway = gateway(2);
        let shared = &gateway.shared;
        let here: IpAddr = [127, 0, 0, 1].into();
        let there: IpAddr = [127, 0, 0, 2].into();
        let first = ConnectionSlot::take(shared, Some(here)).unwrap();
        let second = ConnectionSlot::take(shared, Some(here)).unwrap();
        assert!(ConnectionSlot::take(shared, Some(here)).is_none());
        let elsewhere = ConnectionSlot::take(shared, Some(there)).unwrap();
        let unknown = ConnectionSlot::take(shared, None).unwrap();
        assert_eq!(gateway.connections(), 4);
        drop(first);
        let third = ConnectionSlot::take(shared, Some(here)).unwrap();
        drop((second, third, elsewhere, unknown));
        assert_eq!(gateway.connections(), 0);
        assert!(shared.connections_by_address.is_empty());
    }

    #[test]
    fn a_zero_limit_refuses_every_known_address() {
        let gateway = gateway(0);
        assert!(ConnectionSlot::take(&gateway.shared, Some([10, 0, 0, 1].into())).is_none());
        assert_eq!(gateway.connections(), 0);
    }
}
