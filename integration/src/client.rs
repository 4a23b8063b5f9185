//! A WebSocket client of Tandem's gateway (`/v1/ws`, subprotocol `tandem.v1`): it listens with
//! an access token, registers for incoming calls, and answers offered calls the way a client
//! app does (PRODUCT.md, "WebSocket client protocol").
//!
//! A background task reads the socket (so pings are answered even while the test is busy) and
//! queues every server message, parsed and as the text received (a `serde_json::Value` keeps
//! object members sorted by name, and the order of an `invite`'s parameters is part of the
//! protocol); the wait methods take from the queue and keep the messages they skip, in order,
//! for later calls.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::tandem::Tandem;

/// The subprotocol the gateway speaks.
pub const SUBPROTOCOL: &str = "tandem.v1";
/// How long `connect` and `register` wait for their replies.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

type Sink = futures_util::stream::SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Frame>;

/// A call offered to the client (`invite`).
#[derive(Debug, Clone, PartialEq)]
pub struct Invite {
    /// The CallSid of the client's leg: echoed in `ringing`, `answer`, `reject`, `hangup`.
    pub callsid: String,
    /// The caller.
    pub from: String,
    /// Who was called (`client:IDENTITY`).
    pub to: String,
    /// The SDP offer.
    pub sdp: String,
    /// Custom parameters as `(name, value)` pairs, in the order the server sent them.
    pub parameters: Vec<(String, String)>,
}

/// A server message: parsed, and the text of its frame.
struct Received {
    message: Value,
    text: String,
}

impl std::fmt::Debug for Received {
    // Queues are shown in panic messages: the parsed message says it all, once.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.message.fmt(formatter)
    }
}

/// A connected client. Dropping it closes the connection abruptly (no close frame).
pub struct Client {
    sink: Sink,
    incoming: mpsc::UnboundedReceiver<Received>,
    backlog: VecDeque<Received>,
    closed: watch::Receiver<Option<(u16, String)>>,
    reader: JoinHandle<()>,
    connected: Value,
}

impl Client {
    /// Opens a WebSocket to `tandem`, listens with a fresh token for `identity` (with the
    /// incoming grant) and waits for `connected`.
    pub async fn connect(tandem: &Tandem, identity: &str) -> Client {
        Client::connect_with_token(tandem, &tandem.token(identity)).await
    }

    /// Opens a WebSocket, listens with `token` and waits for `connected`.
    pub async fn connect_with_token(tandem: &Tandem, token: &str) -> Client {
        let mut client = Client::open(&tandem.ws_url()).await;
        client.send("listen", json!({ "token": token })).await;
        client.connected = client.wait_type("connected", REPLY_TIMEOUT).await;
        client
    }

    /// Opens a WebSocket to `url` offering the `tandem.v1` subprotocol, and sends nothing.
    pub async fn open(url: &str) -> Client {
        let mut request = url.into_client_request().expect("a valid WebSocket URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("WebSocket to {url}: {e}"));
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(SUBPROTOCOL),
            "the gateway must choose {SUBPROTOCOL}"
        );
        let (sink, stream) = socket.split();
        let (messages, incoming) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(None);
        let reader = tokio::spawn(read(stream, messages, closed_tx));
        Client {
            sink,
            incoming,
            backlog: VecDeque::new(),
            closed,
            reader,
            connected: Value::Null,
        }
    }

    /// The payload of `connected` (`identity`, `device_id`, `expires_at`).
    pub fn connected(&self) -> &Value {
        &self.connected
    }

    /// The device id the gateway gave this connection.
    pub fn device_id(&self) -> String {
        self.connected["device_id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default()
    }

    /// Sends `{"type": kind, "payload": payload}`.
    pub async fn send(&mut self, kind: &str, payload: Value) {
        let text = json!({ "type": kind, "payload": payload }).to_string();
        self.send_text(&text).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.sink
            .send(Frame::text(text))
            .await
            .unwrap_or_else(|e| panic!("sending {text}: {e}"));
    }

    /// Registers for incoming calls and waits for `ready`.
    pub async fn register(&mut self) {
        self.send("register", json!({})).await;
        self.wait_type("ready", REPLY_TIMEOUT).await;
    }

    /// The next server message (`{"type", "payload"}`), from the backlog first.
    pub async fn next_message(&mut self, timeout: Duration) -> Value {
        if let Some(received) = self.backlog.pop_front() {
            return received.message;
        }
        match tokio::time::timeout(timeout, self.incoming.recv()).await {
            Ok(Some(received)) => received.message,
            Ok(None) => panic!(
                "the connection closed while a message was awaited: {:?}",
                self.close_reason()
            ),
            Err(_) => panic!("no message within {timeout:?}"),
        }
    }

    /// The next server message, or `None` if none comes within `timeout` or the connection
    /// closed.
    pub async fn try_next_message(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(received) = self.backlog.pop_front() {
            return Some(received.message);
        }
        tokio::time::timeout(timeout, self.incoming.recv())
            .await
            .ok()
            .flatten()
            .map(|received| received.message)
    }

    /// The payload of the next message of type `kind`; messages of other types stay queued.
    pub async fn wait_type(&mut self, kind: &str, timeout: Duration) -> Value {
        payload(self.wait_received(kind, timeout).await.message)
    }

    /// The next message of type `kind`, with its text; messages of other types stay queued.
    async fn wait_received(&mut self, kind: &str, timeout: Duration) -> Received {
        if let Some(index) = self
            .backlog
            .iter()
            .position(|received| received.message["type"] == kind)
        {
            if let Some(received) = self.backlog.remove(index) {
                return received;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(received)) if received.message["type"] == kind => return received,
                Ok(Some(received)) => self.backlog.push_back(received),
                Ok(None) => panic!(
                    "the connection closed while {kind} was awaited: {:?}; queued: {:?}",
                    self.close_reason(),
                    self.backlog
                ),
                Err(_) => panic!(
                    "no {kind} within {timeout:?}; queued meanwhile: {:?}",
                    self.backlog
                ),
            }
        }
    }

    /// Waits for an `invite`.
    pub async fn wait_invite(&mut self, timeout: Duration) -> Invite {
        let received = self.wait_received("invite", timeout).await;
        let parameters = ordered_parameters(&received.text);
        let payload = payload(received.message);
        let text = |name: &str| payload[name].as_str().unwrap_or_default().to_owned();
        Invite {
            callsid: text("callsid"),
            from: text("from"),
            to: text("to"),
            sdp: text("sdp"),
            parameters,
        }
    }

    /// `ringing {callsid}`.
    pub async fn ringing(&mut self, callsid: &str) {
        self.send("ringing", json!({ "callsid": callsid })).await;
    }

    /// `answer {callsid, sdp}`.
    pub async fn answer(&mut self, callsid: &str, sdp: &str) {
        self.send("answer", json!({ "callsid": callsid, "sdp": sdp }))
            .await;
    }

    /// `reject {callsid}`.
    pub async fn reject(&mut self, callsid: &str) {
        self.send("reject", json!({ "callsid": callsid })).await;
    }

    /// `hangup {callsid}`.
    pub async fn hangup(&mut self, callsid: &str) {
        self.send("hangup", json!({ "callsid": callsid })).await;
    }

    /// `dtmf {callsid, digits}`.
    pub async fn dtmf(&mut self, callsid: &str, digits: &str) {
        self.send("dtmf", json!({ "callsid": callsid, "digits": digits }))
            .await;
    }

    /// The close code and reason the server sent, once it closed.
    pub fn close_reason(&self) -> Option<(u16, String)> {
        self.closed.borrow().clone()
    }

    /// Waits for the server to close the connection and returns its close code and reason
    /// (code 1006 if it went without a close frame).
    pub async fn wait_closed(&mut self, timeout: Duration) -> (u16, String) {
        let mut closed = self.closed.clone();
        let waited = tokio::time::timeout(timeout, async {
            let _ = closed.wait_for(Option::is_some).await;
        })
        .await;
        if waited.is_err() {
            panic!("the connection was not closed within {timeout:?}");
        }
        self.close_reason().unwrap_or((1006, String::new()))
    }

    /// Closes the connection with a normal close frame.
    pub async fn close(mut self) {
        let _ = self
            .sink
            .send(Frame::Close(Some(CloseFrame {
                code: 1000.into(),
                reason: "bye".into(),
            })))
            .await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn payload(message: Value) -> Value {
    match message {
        Value::Object(mut envelope) => envelope.remove("payload").unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The `payload.parameters` object of an `invite` frame's text as `(name, value)` pairs in the
/// order they were written. Panics if it is missing or holds anything but strings.
fn ordered_parameters(text: &str) -> Vec<(String, String)> {
    #[derive(Deserialize)]
    struct Envelope {
        payload: Payload,
    }
    #[derive(Deserialize)]
    struct Payload {
        parameters: Pairs,
    }
    struct Pairs(Vec<(String, String)>);
    impl<'de> Deserialize<'de> for Pairs {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_map(PairsVisitor)
        }
    }
    struct PairsVisitor;
    impl<'de> Visitor<'de> for PairsVisitor {
        type Value = Pairs;
        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("an object of strings")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
            let mut pairs = Vec::new();
            while let Some(pair) = map.next_entry::<String, String>()? {
                pairs.push(pair);
            }
            Ok(Pairs(pairs))
        }
    }
    match serde_json::from_str::<Envelope>(text) {
        Ok(envelope) => envelope.payload.parameters.0,
        Err(error) => panic!("invite without a parameters object of strings ({error}): {text}"),
    }
}

/// Reads frames until the connection ends: text frames parsed as JSON go to `messages`; the
/// close frame (or its absence, 1006) is reported on `closed`.
async fn read(
    mut stream: futures_util::stream::SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    messages: mpsc::UnboundedSender<Received>,
    closed: watch::Sender<Option<(u16, String)>>,
) {
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(Frame::Text(text)) => {
                let message = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|_| json!({ "type": "unparseable", "payload": text.as_str() }));
                let _ = messages.send(Received {
                    message,
                    text: text.as_str().to_owned(),
                });
            }
            Ok(Frame::Close(frame)) => {
                let reason = frame
                    .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))
                    .unwrap_or((1005, String::new()));
                closed.send_replace(Some(reason));
                return;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    closed.send_if_modified(|reason| {
        if reason.is_none() {
            *reason = Some((1006, String::new()));
            true
        } else {
            false
        }
    });
}
