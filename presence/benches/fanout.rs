//! Presence fan-out through the real WebSocket gateway: SUBSCRIBERS clients (default 1,000)
//! subscribe to `alice`; `alice` changes her status ROUNDS times (default 50), and for each change
//! the time from sending her `presence` message to each subscriber receiving the `presence` event
//! is recorded. Prints p50/p99/max over all deliveries and the time until the last subscriber
//! had each change.
//!
//! Run: `cargo bench -p presence --bench fanout` (env `FANOUT_SUBSCRIBERS`, `FANOUT_ROUNDS`).
//! Everything runs in one process on 127.0.0.1, so client work competes with the server's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::{SinkExt, StreamExt};
use presence::gateway::{Gateway, GatewayConfig};
use presence::token::{mint, AccountSid, Algorithm, Config, Grants, Key, KeySet, VoiceGrant};
use presence::{Identity, Registry};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Barrier};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &[u8] = b"an HS256 secret of at least thirty-two bytes";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn token(key: &Key, identity: &str) -> String {
    let grants = Grants {
        identity: Identity::new(identity).unwrap(),
        voice: VoiceGrant::default(),
    };
    let account = AccountSid::parse(ACCOUNT).unwrap();
    mint(
        key,
        &grants,
        &account,
        Duration::from_secs(3600),
        SystemTime::now(),
    )
    .unwrap()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(address: SocketAddr, key: &Key, identity: &str) -> Socket {
    let mut request = format!("ws://{address}/v1/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("tandem.v1"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let listen = json!({"type": "listen", "payload": {"token": token(key, identity)}});
    socket
        .send(Message::text(listen.to_string()))
        .await
        .unwrap();
    loop {
        if let Some(Ok(Message::Text(text))) = socket.next().await {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "connected" {
                return socket;
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let subscribers = env("FANOUT_SUBSCRIBERS", 1000);
    let rounds = env("FANOUT_ROUNDS", 50);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let key = Key::new("SKbench", Algorithm::Hs256, SECRET).unwrap();
        let keys = KeySet::new(vec![key.clone()], Config::default()).unwrap();
        let registry = Registry::new(presence::registry::Config::default());
        let config = GatewayConfig {
            max_connections_per_ip: subscribers + 10,
            outbound_queue: 1024,
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(Arc::new(keys), registry, config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = gateway.routes();
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .unwrap();
        });

        // Subscribers: each reports (round status, arrival instant) for every presence event
        // about alice after the subscription's initial snapshot.
        let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<(String, Instant)>();
        let ready = Arc::new(Barrier::new(subscribers + 1));
        for n in 0..subscribers {
            let key = key.clone();
            let arrivals_tx = arrivals_tx.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                let mut socket = connect(address, &key, &format!("watcher-{n}")).await;
                let subscribe = json!({"type": "subscribe", "payload": {"identities": ["alice"]}});
                socket.send(Message::text(subscribe.to_string())).await.unwrap();
                // The initial snapshot (alice offline) comes first.
                loop {
                    if let Some(Ok(Message::Text(text))) = socket.next().await {
                        let v: Value = serde_json::from_str(&text).unwrap();
                        if v["type"] == "presence" {
                            break;
                        }
                    }
                }
                ready.wait().await;
                while let Some(Ok(frame)) = socket.next().await {
                    if let Message::Text(text) = frame {
                        let v: Value = serde_json::from_str(&text).unwrap();
                        if v["type"] == "presence" {
                            let status = v["payload"]["status"].as_str().unwrap_or("").to_owned();
                            let _ = arrivals_tx.send((status, Instant::now()));
                        }
                    }
                }
            });
        }
        ready.wait().await;

        let mut alice = connect(address, &key, "alice").await;
        // Alice connecting is itself a change: wait until every subscriber has seen it.
        for _ in 0..subscribers {
            arrivals.recv().await.unwrap();
        }

        let mut deliveries = Vec::with_capacity(subscribers * rounds);
        let mut last = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let status = if round % 2 == 0 { "away" } else { "available" };
            let sent = Instant::now();
            alice
                .send(Message::text(json!({"type": "presence", "payload": {"status": status}}).to_string()))
                .await
                .unwrap();
            let mut slowest = Duration::ZERO;
            for _ in 0..subscribers {
                let (got, at) = arrivals.recv().await.unwrap();
                assert_eq!(got, status, "events arrive in order");
                let latency = at - sent;
                slowest = slowest.max(latency);
                deliveries.push(latency);
            }
            last.push(slowest);
        }
        deliveries.sort();
        last.sort();
        println!(
            "fanout subscribers={subscribers} rounds={rounds} delivery p50={:?} p99={:?} max={:?}; last-subscriber p50={:?} p99={:?}",
            percentile(&deliveries, 0.50),
            percentile(&deliveries, 0.99),
            deliveries[deliveries.len() - 1],
            percentile(&last, 0.50),
            percentile(&last, 0.99),
        );
    });
}
