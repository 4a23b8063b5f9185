//! The product flow's first step against the built binary: `tandem token` mints an access token,
//! a WebSocket client listens and registers on `/v1/ws` (subprotocol `tandem.v1`), and the HTTP
//! presence resource shows the device until the socket closes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::Tandem;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

fn presence_of(tandem: &Tandem, identity: &str) -> Value {
    let key = std::fs::read_to_string(tandem.api_key_path()).unwrap();
    reqwest::blocking::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/v1/presence/{identity}",
            tandem.http_port
        ))
        .bearer_auth(key.trim())
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn next_json(
    socket: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
) -> Value {
    loop {
        match socket.read().unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[test]
fn a_client_with_a_minted_token_registers_and_shows_in_presence() {
    let tandem = Tandem::start();
    let minted = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["token", "--identity", "alice", "--incoming", "--config"])
        .arg(tandem.config_path())
        .output()
        .unwrap();
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();

    let mut request = format!("ws://127.0.0.1:{}/v1/ws", tandem.http_port)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "tandem.v1".parse().unwrap());
    let (mut socket, response) = tungstenite::connect(request).unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "tandem.v1");

    let listen = json!({"type": "listen", "payload": {"token": token}});
    socket.send(Message::text(listen.to_string())).unwrap();
    let connected = next_json(&mut socket);
    assert_eq!(connected["type"], "connected");
    assert_eq!(connected["payload"]["identity"], "alice");

    socket
        .send(Message::text(json!({"type": "register"}).to_string()))
        .unwrap();
    assert_eq!(next_json(&mut socket)["type"], "ready");

    let resource = presence_of(&tandem, "alice");
    assert_eq!(resource["status"], "available", "{resource}");
    assert_eq!(resource["devices"].as_array().unwrap().len(), 1);
    assert_eq!(resource["devices"][0]["incoming"], true);
    assert_eq!(
        resource["devices"][0]["device_id"],
        connected["payload"]["device_id"]
    );

    socket.close(None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while presence_of(&tandem, "alice")["status"] != "offline" {
        assert!(Instant::now() < deadline, "alice still online after close");
        let _ = socket.read();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_token_from_another_key_is_closed_with_4001() {
    let tandem = Tandem::start();
    // Signed with a key Tandem does not know: same kid, different secret.
    let key = presence::token::Key::new(
        "SKdev",
        presence::token::Algorithm::Hs256,
        b"not-the-generated-development-key-0123456789",
    )
    .unwrap();
    let grants = presence::token::Grants {
        identity: presence::Identity::new("mallory").unwrap(),
        voice: Default::default(),
    };
    let account = presence::token::AccountSid::parse(&format!("AC{}", "0".repeat(32))).unwrap();
    let token = presence::token::mint(
        &key,
        &grants,
        &account,
        Duration::from_secs(60),
        std::time::SystemTime::now(),
    )
    .unwrap();

    let mut request = format!("ws://127.0.0.1:{}/v1/ws", tandem.http_port)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "tandem.v1".parse().unwrap());
    let (mut socket, _) = tungstenite::connect(request).unwrap();
    socket
        .send(Message::text(
            json!({"type": "listen", "payload": {"token": token}}).to_string(),
        ))
        .unwrap();
    let close = loop {
        match socket.read() {
            Ok(Message::Close(frame)) => break frame.unwrap(),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(u16::from(close.code), 4001);
}
