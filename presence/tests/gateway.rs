//! The WebSocket gateway end to end: real `tokio-tungstenite` clients against the gateway's
//! router served by axum on 127.0.0.1 (with connect info, as the binary serves it), HS256
//! tokens minted for each test. The test plays the router where calls are concerned: it looks
//! devices up in the registry, offers calls on their queues and reads their replies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use presence::device::SendError;
use presence::gateway::{Gateway, GatewayConfig};
use presence::registry::Config as RegistryConfig;
use presence::resource::format_rfc3339;
use presence::token::{mint, AccountSid, Algorithm, Config, Grants, Key, KeySet, VoiceGrant};
use presence::{CallEvent, CallReply, Identity, Registry, ToDevice};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECRET: &[u8] = b"an HS256 secret of at least thirty-two bytes";
const OTHER_SECRET: &[u8] = b"another HS256 secret, also 32 bytes or more";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
/// How long a test waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(5);

struct Server {
    address: SocketAddr,
    registry: Registry,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Client {
    socket: Socket,
}

/// Serves a gateway with `config` over a registry with `registry_config` on 127.0.0.1:0.
async fn serve_with(config: GatewayConfig, registry_config: RegistryConfig) -> Server {
    let registry = Registry::new(registry_config);
    // No leeway: the expiry tests use tokens of a second or two.
    let keys = KeySet::new(
        vec![Key::new("SKtest", Algorithm::Hs256, SECRET).unwrap()],
        Config {
            leeway: Duration::ZERO,
            ..Config::default()
        },
    )
    .unwrap();
    let gateway = Gateway::new(Arc::new(keys), registry.clone(), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = gateway.routes();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Server { address, registry }
}

async fn serve(config: GatewayConfig) -> Server {
    serve_with(config, RegistryConfig::default()).await
}

fn token_signed_with(
    secret: &[u8],
    identity: &str,
    incoming: bool,
    ttl: Duration,
    now: SystemTime,
) -> String {
    let key = Key::new("SKtest", Algorithm::Hs256, secret).unwrap();
    let grants = Grants {
        identity: Identity::new(identity).unwrap(),
        voice: VoiceGrant {
            incoming,
            outgoing: None,
        },
    };
    mint(
        &key,
        &grants,
        &AccountSid::parse(ACCOUNT).unwrap(),
        ttl,
        now,
    )
    .unwrap()
}

/// A valid token for an hour, with the incoming grant.
fn token(identity: &str) -> String {
    token_signed_with(
        SECRET,
        identity,
        true,
        Duration::from_secs(3600),
        SystemTime::now(),
    )
}

fn identity(text: &str) -> Identity {
    Identity::new(text).unwrap()
}

fn message(kind: &str, payload: Value) -> String {
    json!({"type": kind, "payload": payload}).to_string()
}

impl Server {
    fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.address)
    }

    /// Opens a WebSocket offering `tandem.v1`.
    async fn open(&self) -> Client {
        self.try_open().await.unwrap()
    }

    async fn try_open(&self) -> Result<Client, WsError> {
        let mut request = self.url().into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("tandem.v1"),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request).await?;
        assert_eq!(
            response.headers().get("sec-websocket-protocol").unwrap(),
            "tandem.v1"
        );
        Ok(Client { socket })
    }

    /// Opens a WebSocket and listens as `identity`; returns the client and its `connected`.
    async fn connect(&self, identity: &str) -> (Client, Value) {
        let mut client = self.open().await;
        let connected = client.listen(&token(identity)).await;
        (client, connected)
    }

    /// Connects and registers `identity` for incoming calls.
    async fn connect_registered(&self, identity: &str) -> (Client, Value) {
        let (mut client, connected) = self.connect(identity).await;
        client.send("register", json!({})).await;
        client.expect("ready").await;
        (client, connected)
    }

    /// Polls `condition` on the registry until it holds or `limit` passes.
    async fn eventually(&self, limit: Duration, condition: impl Fn(&Registry) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if condition(&self.registry) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        condition(&self.registry)
    }
}

impl Client {
    async fn send_text(&mut self, text: String) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    async fn send(&mut self, kind: &str, payload: Value) {
        self.send_text(message(kind, payload)).await;
    }

    async fn listen(&mut self, token: &str) -> Value {
        self.send("listen", json!({ "token": token })).await;
        self.expect("connected").await
    }

    /// The next message from the server, skipping pings; `Err` with the close frame's code and
    /// reason if the server closes instead.
    async fn next(&mut self) -> Result<Value, (u16, String)> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("no frame from the server in time");
            match frame {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Err((u16::from(frame.code), frame.reason.to_string()))
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The payload of the next message, which must be of type `kind`.
    async fn expect(&mut self, kind: &str) -> Value {
        let message = self.next().await.unwrap_or_else(|close| {
            panic!("expected {kind}, the server closed with {close:?}");
        });
        assert_eq!(message["type"], kind, "{message}");
        assert!(message["payload"].is_object(), "{message}");
        message["payload"].clone()
    }

    /// The next `error` message's code.
    async fn expect_error(&mut self) -> String {
        let payload = self.expect("error").await;
        assert!(payload["message"]
            .as_str()
            .is_some_and(|text| !text.is_empty()));
        payload["code"].as_str().unwrap().to_owned()
    }

    /// The close frame the server sends next (messages before it are skipped).
    async fn expect_close(&mut self) -> (u16, String) {
        loop {
            if let Err(close) = self.next().await {
                return close;
            }
        }
    }

    /// Reads (answering pings) for `duration`; panics if the server closes.
    async fn stay_for(&mut self, duration: Duration) {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(other) => panic!("unexpected frame while idle: {other:?}"),
            }
        }
    }
}

/// The presence payload's (status, number of devices).
fn presence_summary(payload: &Value) -> (String, usize) {
    (
        payload["status"].as_str().unwrap().to_owned(),
        payload["devices"].as_array().unwrap().len(),
    )
}

async fn reply(replies: &mut mpsc::Receiver<CallReply>) -> CallReply {
    tokio::time::timeout(PATIENCE, replies.recv())
        .await
        .expect("no call reply in time")
        .expect("reply channel closed")
}

/// Offers a call to `identity`'s only reachable device, as the router does.
fn offer(server: &Server, identity_text: &str, call_sid: &str) -> mpsc::Receiver<CallReply> {
    let devices = server.registry.reachable_devices(&identity(identity_text));
    assert_eq!(devices.len(), 1, "one reachable device expected");
    let (replies, receiver) = mpsc::channel(8);
    devices[0]
        .sender
        .try_send(ToDevice::Invite {
            call_sid: call_sid.to_owned(),
            from: "+15550100".to_owned(),
            to: format!("client:{identity_text}"),
            sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n".to_owned(),
            parameters: vec![
                ("customer".to_owned(), "42".to_owned()),
                ("queue".to_owned(), "sales".to_owned()),
            ],
            replies,
        })
        .unwrap();
    receiver
}

fn send_to_device(server: &Server, identity_text: &str, event: ToDevice) {
    let devices = server.registry.reachable_devices(&identity(identity_text));
    devices[0].sender.try_send(event).unwrap();
}

#[tokio::test]
async fn listen_register_presence_and_unregister() {
    let server = serve(GatewayConfig::default()).await;
    let mut client = server.open().await;
    let now = SystemTime::now();
    let token = token_signed_with(SECRET, "alice", true, Duration::from_secs(3600), now);
    let connected = client.listen(&token).await;
    assert_eq!(connected["identity"], "alice");
    let device_id = connected["device_id"].as_str().unwrap().to_owned();
    assert_eq!(device_id.len(), 16);
    assert!(device_id.bytes().all(|byte| byte.is_ascii_hexdigit()));
    // The token's `exp` (whole seconds, an hour after minting), in RFC 3339.
    let minted = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let exp = UNIX_EPOCH + Duration::from_secs(minted + 3600);
    assert_eq!(connected["expires_at"], format_rfc3339(exp));
    assert_eq!(server.registry.devices_online(), 1);
    assert!(server
        .registry
        .reachable_devices(&identity("alice"))
        .is_empty());

    client.send("register", json!({})).await;
    client.expect("ready").await;
    let reachable = server.registry.reachable_devices(&identity("alice"));
    assert_eq!(reachable.len(), 1);
    assert_eq!(reachable[0].device_id.to_string(), device_id);

    client.send("presence", json!({"status": "busy"})).await;
    assert!(
        server
            .eventually(PATIENCE, |registry| {
                registry.reachable_devices(&identity("alice")).is_empty()
            })
            .await
    );
    let status = server.registry.status_of(&identity("alice"));
    assert_eq!(serde_json::to_value(&status).unwrap()["status"], "busy");
    client.send("presence", json!({"status": "away"})).await;
    assert!(
        server
            .eventually(PATIENCE, |registry| {
                registry.reachable_devices(&identity("alice")).len() == 1
            })
            .await
    );

    client.send("unregister", json!({})).await;
    client.expect("offline").await;
    assert!(server
        .registry
        .reachable_devices(&identity("alice"))
        .is_empty());
    assert_eq!(server.registry.devices_online(), 1);

    client.socket.close(None).await.unwrap();
    assert!(
        server
            .eventually(PATIENCE, |registry| registry.devices_online() == 0)
            .await
    );
}

#[tokio::test]
async fn recoverable_mistakes_are_answered_with_error_and_the_connection_stays() {
    let server = serve(GatewayConfig::default()).await;
    let (mut client, _) = server.connect("alice").await;
    client.send("teleport", json!({})).await;
    assert_eq!(client.expect_error().await, "unknown_type");
    client.send("presence", json!({"status": "sleeping"})).await;
    assert_eq!(client.expect_error().await, "bad_payload");
    client
        .send("subscribe", json!({"identities": ["no spaces"]}))
        .await;
    assert_eq!(client.expect_error().await, "bad_payload");
    client.send("answer", json!({"callsid": "CA1"})).await;
    assert_eq!(client.expect_error().await, "bad_payload");
    client
        .send("dtmf", json!({"callsid": "CA1", "digits": "1x"}))
        .await;
    assert_eq!(client.expect_error().await, "bad_payload");
    for kind in ["ringing", "reject", "hangup"] {
        client.send(kind, json!({"callsid": "CAunknown"})).await;
        assert_eq!(client.expect_error().await, "unknown_call", "{kind}");
    }
    client
        .send("answer", json!({"callsid": "CAunknown", "sdp": "v=0"}))
        .await;
    assert_eq!(client.expect_error().await, "unknown_call");
    // Still connected and served.
    client.send("register", json!({})).await;
    client.expect("ready").await;
    assert_eq!(server.registry.devices_online(), 1);
}

#[tokio::test]
async fn subscribing_over_the_limit_is_an_error_and_subscribes_nothing() {
    let server = serve_with(
        GatewayConfig::default(),
        RegistryConfig {
            max_subscriptions_per_device: 2,
            ..RegistryConfig::default()
        },
    )
    .await;
    let (mut client, _) = server.connect("alice").await;
    client
        .send("subscribe", json!({"identities": ["bob", "carol", "dave"]}))
        .await;
    assert_eq!(client.expect_error().await, "too_many_subscriptions");
    client
        .send("subscribe", json!({"identities": ["bob"]}))
        .await;
    let payload = client.expect("presence").await;
    assert_eq!(payload["identity"], "bob");
}

#[tokio::test]
async fn two_devices_of_one_identity() {
    let server = serve(GatewayConfig::default()).await;
    let (mut laptop, laptop_connected) = server.connect_registered("alice").await;
    let (mut phone, phone_connected) = server.connect_registered("alice").await;
    assert_ne!(laptop_connected["device_id"], phone_connected["device_id"]);
    assert_eq!(server.registry.devices_online(), 2);
    assert_eq!(
        server.registry.reachable_devices(&identity("alice")).len(),
        2
    );
    let status = server.registry.status_of(&identity("alice"));
    assert_eq!(status.devices.len(), 2);

    // Each device answers for itself: the laptop going busy leaves the phone reachable.
    laptop.send("presence", json!({"status": "dnd"})).await;
    assert!(
        server
            .eventually(PATIENCE, |registry| {
                let reachable = registry.reachable_devices(&identity("alice"));
                reachable.len() == 1
                    && Some(reachable[0].device_id.to_string().as_str())
                        == phone_connected["device_id"].as_str()
            })
            .await
    );
    phone.socket.close(None).await.unwrap();
    assert!(
        server
            .eventually(PATIENCE, |registry| registry.devices_online() == 1)
            .await
    );
    laptop.send("unregister", json!({})).await;
    laptop.expect("offline").await;
}

#[tokio::test]
async fn subscribers_see_presence_changes() {
    let server = serve(GatewayConfig::default()).await;
    let (mut bob, _) = server.connect("bob").await;
    bob.send("subscribe", json!({"identities": ["alice"]}))
        .await;
    let current = bob.expect("presence").await;
    assert_eq!(current["identity"], "alice");
    assert_eq!(presence_summary(&current), ("offline".to_owned(), 0));

    let (mut alice, _) = server.connect("alice").await;
    let connected = bob.expect("presence").await;
    assert_eq!(presence_summary(&connected), ("available".to_owned(), 1));

    alice.send("presence", json!({"status": "away"})).await;
    let away = bob.expect("presence").await;
    assert_eq!(presence_summary(&away), ("away".to_owned(), 1));
    assert_eq!(away["devices"][0]["status"], "away");

    alice.send("register", json!({})).await;
    alice.expect("ready").await;
    let registered = bob.expect("presence").await;
    assert_eq!(registered["devices"][0]["incoming"], true);

    drop(alice);
    let gone = bob.expect("presence").await;
    assert_eq!(presence_summary(&gone), ("offline".to_owned(), 0));

    // After unsubscribing, alice's return is not reported: the next message bob gets is the
    // reply to his own next request.
    bob.send("unsubscribe", json!({"identities": ["alice"]}))
        .await;
    let (_alice_again, _) = server.connect("alice").await;
    bob.send("teleport", json!({})).await;
    assert_eq!(bob.expect_error().await, "unknown_type");
}

#[tokio::test]
async fn a_token_refresh_for_the_same_identity_moves_the_expiry() {
    let server = serve(GatewayConfig::default()).await;
    let mut client = server.open().await;
    let short = token_signed_with(
        SECRET,
        "alice",
        true,
        Duration::from_secs(2),
        SystemTime::now(),
    );
    let first = client.listen(&short).await;
    client.send("register", json!({})).await;
    client.expect("ready").await;

    // A refresh without the incoming grant: the device is told it is offline.
    let refreshed = token_signed_with(
        SECRET,
        "alice",
        false,
        Duration::from_secs(3600),
        SystemTime::now(),
    );
    client.send("token", json!({ "token": refreshed })).await;
    client.expect("offline").await;
    let second = client.expect("connected").await;
    assert_eq!(second["device_id"], first["device_id"]);
    assert!(second["expires_at"].as_str() > first["expires_at"].as_str());
    assert!(server
        .registry
        .reachable_devices(&identity("alice"))
        .is_empty());

    // The first token's expiry passes; the connection stays.
    client.stay_for(Duration::from_millis(2500)).await;
    assert_eq!(server.registry.devices_online(), 1);
    // Without the grant now, register is refused.
    client.send("register", json!({})).await;
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, 4003);
    assert_eq!(reason, "token does not grant incoming calls");
}

#[tokio::test]
async fn a_token_refresh_for_another_identity_closes_with_4001() {
    let server = serve(GatewayConfig::default()).await;
    let (mut client, _) = server.connect("alice").await;
    client
        .send("token", json!({ "token": token("mallory") }))
        .await;
    assert_eq!(
        client.expect_close().await,
        (4001, "token is for another identity".to_owned())
    );
    assert!(
        server
            .eventually(PATIENCE, |registry| registry.devices_online() == 0)
            .await
    );
}

#[tokio::test]
async fn an_invalid_refresh_closes_with_4001() {
    let server = serve(GatewayConfig::default()).await;
    let (mut client, _) = server.connect("alice").await;
    let forged = token_signed_with(
        OTHER_SECRET,
        "alice",
        true,
        Duration::from_secs(60),
        SystemTime::now(),
    );
    client.send("token", json!({ "token": forged })).await;
    assert_eq!(
        client.expect_close().await,
        (4001, "invalid signature".to_owned())
    );
}

#[tokio::test]
async fn a_token_that_expires_without_refresh_closes_with_4001_and_goes_offline() {
    let server = serve(GatewayConfig::default()).await;
    let (mut watcher, _) = server.connect("bob").await;
    watcher
        .send("subscribe", json!({"identities": ["alice"]}))
        .await;
    watcher.expect("presence").await;

    let mut client = server.open().await;
    let start = Instant::now();
    let short = token_signed_with(
        SECRET,
        "alice",
        true,
        Duration::from_secs(2),
        SystemTime::now(),
    );
    client.listen(&short).await;
    watcher.expect("presence").await;
    assert_eq!(
        client.expect_close().await,
        (4001, "token expired".to_owned())
    );
    // `exp` is whole seconds: between 1 and 2 s after minting.
    let closed_after = start.elapsed();
    assert!(
        closed_after > Duration::from_millis(900) && closed_after < Duration::from_millis(2500),
        "{closed_after:?}"
    );
    let offline = watcher.expect("presence").await;
    assert_eq!(presence_summary(&offline), ("offline".to_owned(), 0));
    assert!(server
        .registry
        .status_of(&identity("alice"))
        .devices
        .is_empty());
    assert_eq!(server.registry.devices_online(), 1);
}

#[tokio::test]
async fn a_first_message_other_than_listen_closes_with_4000() {
    let server = serve(GatewayConfig::default()).await;
    for first in [
        message("register", json!({})),
        message("teleport", json!({})),
        message("listen", json!({})),
        "not json".to_owned(),
    ] {
        let mut client = server.open().await;
        client.send_text(first.clone()).await;
        let (code, reason) = client.expect_close().await;
        assert_eq!(code, 4000, "{first}: {reason}");
        assert!(!reason.is_empty());
    }
    assert_eq!(server.registry.devices_online(), 0);
}

#[tokio::test]
async fn malformed_json_binary_frames_and_a_second_listen_close_with_4000() {
    let server = serve(GatewayConfig::default()).await;
    let (mut client, _) = server.connect("alice").await;
    client
        .send_text("{\"type\": \"presence\", ".to_owned())
        .await;
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, 4000);
    assert_eq!(
        reason,
        "message is not a JSON object with a string type and an object payload"
    );

    let (mut client, _) = server.connect("alice").await;
    client
        .socket
        .send(Message::binary(b"{}".to_vec()))
        .await
        .unwrap();
    assert_eq!(client.expect_close().await.0, 4000);

    let (mut client, _) = server.connect("alice").await;
    client
        .send("listen", json!({"token": token("alice")}))
        .await;
    assert_eq!(
        client.expect_close().await,
        (4000, "already listening".to_owned())
    );
    assert!(
        server
            .eventually(PATIENCE, |registry| registry.devices_online() == 0)
            .await
    );
}

#[tokio::test]
async fn bad_tokens_close_with_4001_and_a_reason() {
    let server = serve(GatewayConfig::default()).await;
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let cases = [
        ("not-a-token".to_owned(), "token malformed"),
        (
            token_signed_with(
                OTHER_SECRET,
                "alice",
                true,
                Duration::from_secs(60),
                SystemTime::now(),
            ),
            "invalid signature",
        ),
        (
            token_signed_with(SECRET, "alice", true, Duration::from_secs(60), an_hour_ago),
            "token expired",
        ),
        ("a".repeat(10_000), "token too large"),
    ];
    for (token, expected) in cases {
        let mut client = server.open().await;
        client.send("listen", json!({ "token": token })).await;
        assert_eq!(client.expect_close().await, (4001, expected.to_owned()));
    }
    assert_eq!(server.registry.devices_online(), 0);
}

#[tokio::test]
async fn register_without_the_incoming_grant_closes_with_4003() {
    let server = serve(GatewayConfig::default()).await;
    let mut client = server.open().await;
    let no_incoming = token_signed_with(
        SECRET,
        "alice",
        false,
        Duration::from_secs(60),
        SystemTime::now(),
    );
    client.listen(&no_incoming).await;
    client.send("register", json!({})).await;
    assert_eq!(
        client.expect_close().await,
        (4003, "token does not grant incoming calls".to_owned())
    );
    assert!(
        server
            .eventually(PATIENCE, |registry| registry.devices_online() == 0)
            .await
    );
}

#[tokio::test]
async fn no_listen_in_time_closes_with_4008() {
    let server = serve(GatewayConfig {
        listen_timeout: Duration::from_millis(200),
        ..GatewayConfig::default()
    })
    .await;
    let start = Instant::now();
    let mut client = server.open().await;
    assert_eq!(
        client.expect_close().await,
        (4008, "no listen in time".to_owned())
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test]
async fn one_device_too_many_closes_with_4009() {
    let server = serve_with(
        GatewayConfig::default(),
        RegistryConfig {
            max_devices_per_identity: 3,
            ..RegistryConfig::default()
        },
    )
    .await;
    let mut devices = Vec::new();
    for _ in 0..3 {
        devices.push(server.connect("alice").await.0);
    }
    let mut fourth = server.open().await;
    fourth
        .send("listen", json!({"token": token("alice")}))
        .await;
    assert_eq!(
        fourth.expect_close().await,
        (
            4009,
            "too many devices for this identity (limit 3)".to_owned()
        )
    );
    assert_eq!(server.registry.devices_online(), 3);
    // Another identity is not affected.
    server.connect("bob").await;
    assert_eq!(server.registry.devices_online(), 4);
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let server = serve(GatewayConfig {
        max_message_bytes: 1024,
        ..GatewayConfig::default()
    })
    .await;
    let (mut client, _) = server.connect("alice").await;
    // Just under the limit is fine.
    let fits = message(
        "presence",
        json!({"status": "away", "pad": "x".repeat(950)}),
    );
    assert!(fits.len() <= 1024);
    client.send_text(fits).await;
    client.send("teleport", json!({})).await;
    assert_eq!(client.expect_error().await, "unknown_type");

    let too_big = message(
        "presence",
        json!({"status": "away", "pad": "x".repeat(2000)}),
    );
    client.send_text(too_big).await;
    assert_eq!(
        client.expect_close().await,
        (1009, "message too big".to_owned())
    );
    assert!(
        server
            .eventually(PATIENCE, |registry| registry.devices_online() == 0)
            .await
    );

    // Before listen as well.
    let mut client = server.open().await;
    client.send_text("x".repeat(5000)).await;
    assert_eq!(client.expect_close().await.0, 1009);
}

#[tokio::test]
async fn a_client_without_the_subprotocol_is_refused_with_400() {
    let server = serve(GatewayConfig::default()).await;
    for offered in [None, Some("graphql-ws"), Some("tandem.v2, chat")] {
        let mut request = server.url().into_client_request().unwrap();
        if let Some(offered) = offered {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static(offered));
        }
        match tokio_tungstenite::connect_async(request).await {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{offered:?}")
            }
            other => panic!(
                "{offered:?}: expected a refusal, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // Offered among others, it is chosen.
    let mut request = server.url().into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("chat, tandem.v1"),
    );
    let (_socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "tandem.v1"
    );
}

#[tokio::test]
async fn connections_per_address_are_capped_with_429() {
    let server = serve(GatewayConfig {
        max_connections_per_ip: 2,
        ..GatewayConfig::default()
    })
    .await;
    let first = server.open().await;
    let _second = server.open().await;
    match server.try_open().await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS)
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    drop(first);
    let start = Instant::now();
    loop {
        match server.try_open().await {
            Ok(_third) => break,
            Err(_) if start.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(error) => panic!("a freed slot was not reused: {error}"),
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_offline_within_dead_after() {
    let dead_after = Duration::from_millis(600);
    let server = serve(GatewayConfig {
        ping_interval: Duration::from_millis(150),
        dead_after,
        ..GatewayConfig::default()
    })
    .await;
    // A client that reads answers pings and stays, well past dead_after; it reads in its own
    // task while the test watches the silent one.
    let (mut lively, _) = server.connect_registered("alice").await;
    let lively = tokio::spawn(async move {
        lively.stay_for(dead_after * 4).await;
        lively
    });

    // A client that stops reading sends no pongs: tungstenite answers pings only when read.
    let (mut silent, _) = server.connect_registered("bob").await;
    let start = Instant::now();
    assert_eq!(server.registry.devices_online(), 2);
    assert!(
        server
            .eventually(dead_after * 2, |registry| {
                registry.status_of(&identity("bob")).devices.is_empty()
            })
            .await
    );
    let offline_after = start.elapsed();
    assert!(
        offline_after <= dead_after + Duration::from_millis(300),
        "offline after {offline_after:?}"
    );
    assert!(
        offline_after >= dead_after / 2,
        "offline after {offline_after:?}"
    );
    // The silent one's socket was closed with 1001 (read now, long after).
    assert_eq!(
        silent.expect_close().await,
        (1001, "not responding".to_owned())
    );
    // The lively one is still there.
    let _lively = lively.await.unwrap();
    assert_eq!(server.registry.devices_online(), 1);
    assert_eq!(
        server.registry.status_of(&identity("alice")).devices.len(),
        1
    );
}

#[tokio::test]
async fn a_slow_reader_is_closed_with_1008() {
    let server = serve(GatewayConfig {
        outbound_queue: 4,
        ..GatewayConfig::default()
    })
    .await;
    let (mut client, _) = server.connect_registered("alice").await;
    let devices = server.registry.reachable_devices(&identity("alice"));
    let resource = Arc::new(server.registry.status_of(&identity("alice")));
    // Fill the queue faster than the connection drains it (this test's thread does not yield
    // between sends, so on the current-thread runtime nothing drains at all).
    let mut full = false;
    for _ in 0..1000 {
        if devices[0]
            .sender
            .try_send(ToDevice::Presence(Arc::clone(&resource)))
            == Err(SendError::Full)
        {
            full = true;
            break;
        }
    }
    assert!(full);
    assert_eq!(
        client.expect_close().await,
        (1008, "slow reader".to_owned())
    );
    assert!(
        server
            .eventually(PATIENCE, |registry| registry.devices_online() == 0)
            .await
    );
}

#[tokio::test]
async fn a_call_is_offered_rung_answered_and_hung_up() {
    let server = serve(GatewayConfig::default()).await;
    let (mut alice, connected) = server.connect_registered("alice").await;
    let mut replies = offer(&server, "alice", "CA0001");

    let invite = alice.expect("invite").await;
    assert_eq!(
        invite,
        json!({
            "callsid": "CA0001",
            "from": "+15550100",
            "to": "client:alice",
            "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n",
            "parameters": {"customer": "42", "queue": "sales"},
        })
    );
    alice.send("ringing", json!({"callsid": "CA0001"})).await;
    alice
        .send("answer", json!({"callsid": "CA0001", "sdp": "v=0 answer"}))
        .await;
    alice
        .send("dtmf", json!({"callsid": "CA0001", "digits": "12#"}))
        .await;
    let device_id = connected["device_id"].as_str().unwrap();
    let mut events = Vec::new();
    for _ in 0..3 {
        let reply = reply(&mut replies).await;
        assert_eq!(reply.call_sid, "CA0001");
        assert_eq!(reply.device_id.to_string(), device_id);
        events.push(reply.event);
    }
    assert_eq!(
        events,
        [
            CallEvent::Ringing,
            CallEvent::Answer {
                sdp: "v=0 answer".to_owned()
            },
            CallEvent::Dtmf {
                digits: "12#".to_owned()
            },
        ]
    );
    alice.send("hangup", json!({"callsid": "CA0001"})).await;
    assert_eq!(reply(&mut replies).await.event, CallEvent::Hangup);
    // The call is over for the connection.
    alice.send("ringing", json!({"callsid": "CA0001"})).await;
    assert_eq!(alice.expect_error().await, "unknown_call");

    // A second call, which the far side ends.
    let mut replies = offer(&server, "alice", "CA0002");
    alice.expect("invite").await;
    alice
        .send("answer", json!({"callsid": "CA0002", "sdp": "v=0"}))
        .await;
    assert!(matches!(
        reply(&mut replies).await.event,
        CallEvent::Answer { .. }
    ));
    send_to_device(
        &server,
        "alice",
        ToDevice::Hangup {
            call_sid: "CA0002".to_owned(),
            reason: "completed".to_owned(),
        },
    );
    assert_eq!(
        alice.expect("hangup").await,
        json!({"callsid": "CA0002", "reason": "completed"})
    );
    alice.send("hangup", json!({"callsid": "CA0002"})).await;
    assert_eq!(alice.expect_error().await, "unknown_call");

    // A third, which the client rejects.
    let mut replies = offer(&server, "alice", "CA0003");
    alice.expect("invite").await;
    alice.send("reject", json!({"callsid": "CA0003"})).await;
    assert_eq!(reply(&mut replies).await.event, CallEvent::Reject);
    // Closing the connection reports nothing more for calls that ended.
    alice.socket.close(None).await.unwrap();
    assert!(
        server
            .eventually(PATIENCE, |registry| registry.devices_online() == 0)
            .await
    );
    assert!(replies.recv().await.is_none());
}

#[tokio::test]
async fn a_cancel_reaches_the_client_and_ends_the_call() {
    let server = serve(GatewayConfig::default()).await;
    let (mut alice, _) = server.connect_registered("alice").await;
    let mut replies = offer(&server, "alice", "CA0001");
    alice.expect("invite").await;
    alice.send("ringing", json!({"callsid": "CA0001"})).await;
    assert_eq!(reply(&mut replies).await.event, CallEvent::Ringing);

    send_to_device(
        &server,
        "alice",
        ToDevice::Cancel {
            call_sid: "CA0001".to_owned(),
        },
    );
    assert_eq!(alice.expect("cancel").await, json!({"callsid": "CA0001"}));
    // An answer racing the cancel is not passed on.
    alice
        .send("answer", json!({"callsid": "CA0001", "sdp": "v=0"}))
        .await;
    assert_eq!(alice.expect_error().await, "unknown_call");
    drop(alice);
    assert!(
        server
            .eventually(PATIENCE, |registry| registry.devices_online() == 0)
            .await
    );
    // No Gone for a cancelled call: the reply channel just closes.
    assert!(replies.recv().await.is_none());
}

#[tokio::test]
async fn a_client_that_disconnects_mid_call_is_reported_gone() {
    let server = serve(GatewayConfig::default()).await;
    let (mut alice, _) = server.connect_registered("alice").await;
    let mut ringing_replies = offer(&server, "alice", "CA0001");
    alice.expect("invite").await;
    alice.send("ringing", json!({"callsid": "CA0001"})).await;
    assert_eq!(reply(&mut ringing_replies).await.event, CallEvent::Ringing);

    // The first call is answered, and up, when the connection drops.
    alice
        .send("answer", json!({"callsid": "CA0001", "sdp": "v=0"}))
        .await;
    assert!(matches!(
        reply(&mut ringing_replies).await.event,
        CallEvent::Answer { .. }
    ));
    // Drop the TCP connection without a close handshake.
    drop(alice);
    let gone = reply(&mut ringing_replies).await;
    assert_eq!(gone.call_sid, "CA0001");
    assert_eq!(gone.event, CallEvent::Gone);
    assert!(
        server
            .eventually(PATIENCE, |registry| registry.devices_online() == 0)
            .await
    );
}
