//! The `tandem.v1` wire format (PRODUCT.md, "WebSocket client protocol"): text frames holding
//! `{"type": ..., "payload": {...}}`, the close codes, and the codes of `error` messages.
//!
//! Parsing is in two steps so that each failure lands in the right class: a frame that is not
//! a JSON object with a string `type` (and, if present, an object `payload`) means the peer
//! does not speak the protocol (close 4000); an unknown `type` or
//! a payload that does not fit a known type is the client's mistake about one message, which an
//! `error` message reports while the connection stays up.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::device::DeviceId;
use crate::identity::Identity;
use crate::resource::{PresenceResource, Status};

/// The WebSocket subprotocol a client must offer (`Sec-WebSocket-Protocol`, RFC 6455 §1.9).
pub const SUBPROTOCOL: &str = "tandem.v1";

/// Why the server closed a connection: the code of its close frame (RFC 6455 §7.4). Every close
/// frame also carries a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 4000: the client broke the protocol (first message not `listen`, not a JSON envelope, a
    /// binary frame, a second `listen`).
    Protocol,
    /// 4001: the token of `listen` or `token` is invalid, is for another identity, or expired
    /// without a refresh.
    InvalidToken,
    /// 4003: the token's grants do not permit what was asked (`register` without incoming).
    NotPermitted,
    /// 4008: no `listen` within the listen timeout.
    ListenTimeout,
    /// 4009: the identity already has as many devices connected as allowed.
    TooManyDevices,
    /// 1009 (RFC 6455 §7.4.1): a message over the size limit.
    MessageTooBig,
    /// 1008 (RFC 6455 §7.4.1, policy violation): the client reads too slowly, its outbound
    /// queue overflowed and it missed an event.
    SlowReader,
    /// 1001 (RFC 6455 §7.4.1, going away): the client stopped answering pings.
    NotResponding,
    /// 1011 (RFC 6455 §7.4.1): the server failed; not the client's fault.
    ServerError,
}

/// The `code` of an `error` message: a problem with one client message that leaves the
/// connection open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The `type` is not one this server knows (perhaps a newer client): ignored.
    UnknownType,
    /// The payload does not fit the message's type (a missing field, a status that does not
    /// exist, an identity that breaks the rules, DTMF digits outside `0-9 * # A-D`).
    BadPayload,
    /// A call message for a CallSid this connection was not offered, or that already ended.
    UnknownCall,
    /// A `subscribe` would exceed the per-device subscription limit; nothing was subscribed.
    TooManySubscriptions,
}

impl CloseCode {
    /// The number in the close frame.
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Protocol => 4000,
            CloseCode::InvalidToken => 4001,
            CloseCode::NotPermitted => 4003,
            CloseCode::ListenTimeout => 4008,
            CloseCode::TooManyDevices => 4009,
            CloseCode::MessageTooBig => 1009,
            CloseCode::SlowReader => 1008,
            CloseCode::NotResponding => 1001,
            CloseCode::ServerError => 1011,
        }
    }
}

/// The longest `dtmf` digit string accepted in one message.
pub(crate) const MAX_DTMF_DIGITS: usize = 64;

/// A client → server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientMessage {
    /// `listen {token}`: authenticate; must be first.
    Listen { token: TokenText },
    /// `register`: take incoming calls.
    Register,
    /// `unregister`: stop taking incoming calls.
    Unregister,
    /// `presence {status}`.
    Presence { status: Status },
    /// `subscribe {identities}`.
    Subscribe { identities: Vec<Identity> },
    /// `unsubscribe {identities}`.
    Unsubscribe { identities: Vec<Identity> },
    /// `ringing`, `answer`, `reject`, `hangup` or `dtmf` about an offered call.
    Call {
        call_sid: String,
        action: CallAction,
    },
    /// `token {token}`: refresh.
    Token { token: TokenText },
}

/// What a client says about a call it was offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallAction {
    Ringing,
    Answer { sdp: String },
    Reject,
    Hangup,
    Dtmf { digits: String },
}

/// A token as received; its `Debug` hides it, so that no log line can carry it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct TokenText(pub(crate) String);

/// Why a text frame is not a usable client message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// Not a JSON object with a string `type` and an object (or absent) `payload`: close 4000.
    #[error("message is not a JSON object with a string type and an object payload")]
    NotEnvelope,
    /// A well-formed envelope of a type this server does not know: an `error` message.
    #[error("unknown message type")]
    UnknownType,
    /// A known type whose payload does not fit: an `error` message. The text is serde's
    /// account of the mismatch, cut short.
    #[error("bad payload for {kind}: {detail}")]
    BadPayload {
        /// The message type.
        kind: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// A server → client message, borrowing what it sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", content = "payload", rename_all = "lowercase")]
pub(crate) enum ServerMessage<'a> {
    /// The reply to `listen` (and to a successful `token` refresh).
    Connected {
        identity: &'a Identity,
        device_id: DeviceId,
        /// RFC 3339, UTC.
        expires_at: String,
    },
    /// The reply to `register`.
    Ready {},
    /// The reply to `unregister`, or sent when a refreshed token drops the incoming grant.
    Offline {},
    /// A call offer.
    Invite {
        callsid: &'a str,
        from: &'a str,
        to: &'a str,
        sdp: &'a str,
        parameters: Parameters<'a>,
    },
    /// The offer was withdrawn.
    Cancel { callsid: &'a str },
    /// The far side ended the call.
    Hangup { callsid: &'a str, reason: &'a str },
    /// A subscribed identity's presence.
    Presence(&'a PresenceResource),
    /// A problem with one client message; the connection stays open.
    Error { code: ErrorCode, message: &'a str },
}

/// Custom parameters of an `invite`, sent as a JSON object in their given order.
#[derive(Debug)]
pub(crate) struct Parameters<'a>(pub(crate) &'a [(String, String)]);

impl Serialize for Parameters<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

impl fmt::Debug for TokenText {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("TokenText([redacted])")
    }
}

impl ServerMessage<'_> {
    /// The JSON text of the frame.
    pub(crate) fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and nothing is a
        // non-finite float. Should it ever, an empty object is sent rather than a panic.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

impl ClientMessage {
    /// Parses the text of one frame.
    pub(crate) fn parse(text: &str) -> Result<ClientMessage, ParseError> {
        let Ok(Value::Object(mut envelope)) = serde_json::from_str::<Value>(text) else {
            return Err(ParseError::NotEnvelope);
        };
        let Some(Value::String(kind)) = envelope.remove("type") else {
            return Err(ParseError::NotEnvelope);
        };
        let payload = match envelope.remove("payload") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(payload @ Value::Object(_)) => payload,
            Some(_) => return Err(ParseError::NotEnvelope),
        };
        let message = match kind.as_str() {
            "listen" => ClientMessage::Listen {
                token: payload_of::<TokenPayload>("listen", payload)?.token,
            },
            "register" => ClientMessage::Register,
            "unregister" => ClientMessage::Unregister,
            "presence" => ClientMessage::Presence {
                status: payload_of::<StatusPayload>("presence", payload)?.status,
            },
            "subscribe" => ClientMessage::Subscribe {
                identities: payload_of::<IdentitiesPayload>("subscribe", payload)?.identities,
            },
            "unsubscribe" => ClientMessage::Unsubscribe {
                identities: payload_of::<IdentitiesPayload>("unsubscribe", payload)?.identities,
            },
            "ringing" => call(payload_of("ringing", payload)?, CallAction::Ringing),
            "reject" => call(payload_of("reject", payload)?, CallAction::Reject),
            "hangup" => call(payload_of("hangup", payload)?, CallAction::Hangup),
            "answer" => {
                let answer = payload_of::<AnswerPayload>("answer", payload)?;
                ClientMessage::Call {
                    call_sid: answer.callsid,
                    action: CallAction::Answer { sdp: answer.sdp },
                }
            }
            "dtmf" => {
                let dtmf = payload_of::<DtmfPayload>("dtmf", payload)?;
                if !is_dtmf(&dtmf.digits) {
                    return Err(ParseError::BadPayload {
                        kind: "dtmf",
                        detail: format!("digits must be 1 to {MAX_DTMF_DIGITS} of 0-9 * # A-D"),
                    });
                }
                ClientMessage::Call {
                    call_sid: dtmf.callsid,
                    action: CallAction::Dtmf {
                        digits: dtmf.digits,
                    },
                }
            }
            "token" => ClientMessage::Token {
                token: payload_of::<TokenPayload>("token", payload)?.token,
            },
            _ => return Err(ParseError::UnknownType),
        };
        Ok(message)
    }

    /// The message's `type`, for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Listen { .. } => "listen",
            ClientMessage::Register => "register",
            ClientMessage::Unregister => "unregister",
            ClientMessage::Presence { .. } => "presence",
            ClientMessage::Subscribe { .. } => "subscribe",
            ClientMessage::Unsubscribe { .. } => "unsubscribe",
            ClientMessage::Call { action, .. } => match action {
                CallAction::Ringing => "ringing",
                CallAction::Answer { .. } => "answer",
                CallAction::Reject => "reject",
                CallAction::Hangup => "hangup",
                CallAction::Dtmf { .. } => "dtmf",
            },
            ClientMessage::Token { .. } => "token",
        }
    }
}

#[derive(Deserialize)]
struct TokenPayload {
    token: TokenText,
}

#[derive(Deserialize)]
struct StatusPayload {
    status: Status,
}

#[derive(Deserialize)]
struct IdentitiesPayload {
    identities: Vec<Identity>,
}

#[derive(Deserialize)]
struct CallPayload {
    callsid: String,
}

#[derive(Deserialize)]
struct AnswerPayload {
    callsid: String,
    sdp: String,
}

#[derive(Deserialize)]
struct DtmfPayload {
    callsid: String,
    digits: String,
}

fn call(payload: CallPayload, action: CallAction) -> ClientMessage {
    ClientMessage::Call {
        call_sid: payload.callsid,
        action,
    }
}

/// The longest account of a payload problem sent back to the client.
const MAX_DETAIL_BYTES: usize = 160;

fn payload_of<T: DeserializeOwned>(kind: &'static str, payload: Value) -> Result<T, ParseError> {
    serde_json::from_value(payload).map_err(|error| {
        let mut detail = error.to_string();
        // serde's messages can quote what the client sent: cut them short, on a character
        // boundary, so that an error never echoes a large payload.
        if detail.len() > MAX_DETAIL_BYTES {
            let mut end = MAX_DETAIL_BYTES;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        ParseError::BadPayload { kind, detail }
    })
}

/// RFC 4733 §3.2 events 0–15: the digits, `*`, `#` and `A`–`D`.
fn is_dtmf(digits: &str) -> bool {
    !digits.is_empty()
        && digits.len() <= MAX_DTMF_DIGITS
        && digits
            .bytes()
            .all(|byte| byte.is_ascii_digit() || matches!(byte, b'*' | b'#' | b'A'..=b'D'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::PresenceStatus;

    fn parse(text: &str) -> Result<ClientMessage, ParseError> {
        ClientMessage::parse(text)
    }

    #[test]
    fn parses_every_client_message() {
        let token = TokenText("a.b.c".to_owned());
        let cases = [
            (
                r#"{"type":"listen","payload":{"token":"a.b.c"}}"#,
                ClientMessage::Listen {
                    token: token.clone(),
                },
            ),
            (r#"{"type":"register"}"#, ClientMessage::Register),
            (
                r#"{"type":"unregister","payload":{}}"#,
                ClientMessage::Unregister,
            ),
            (
                r#"{"type":"presence","payload":{"status":"dnd"}}"#,
                ClientMessage::Presence {
                    status: Status::Dnd,
                },
            ),
            (
                r#"{"type":"subscribe","payload":{"identities":["bob","carol"]}}"#,
                ClientMessage::Subscribe {
                    identities: vec![
                        Identity::new("bob").unwrap(),
                        Identity::new("carol").unwrap(),
                    ],
                },
            ),
            (
                r#"{"type":"unsubscribe","payload":{"identities":[]}}"#,
                ClientMessage::Unsubscribe { identities: vec![] },
            ),
            (
                r#"{"type":"ringing","payload":{"callsid":"CA1"}}"#,
                ClientMessage::Call {
                    call_sid: "CA1".to_owned(),
                    action: CallAction::Ringing,
                },
            ),
            (
                r#"{"type":"answer","payload":{"callsid":"CA1","sdp":"v=0"}}"#,
                ClientMessage::Call {
                    call_sid: "CA1".to_owned(),
                    action: CallAction::Answer {
                        sdp: "v=0".to_owned(),
                    },
                },
            ),
            (
                r#"{"type":"reject","payload":{"callsid":"CA1"}}"#,
                ClientMessage::Call {
                    call_sid: "CA1".to_owned(),
                    action: CallAction::Reject,
                },
            ),
            (
                r#"{"type":"hangup","payload":{"callsid":"CA1","extra":1}}"#,
                ClientMessage::Call {
                    call_sid: "CA1".to_owned(),
                    action: CallAction::Hangup,
                },
            ),
            (
                r#"{"type":"dtmf","payload":{"callsid":"CA1","digits":"12*#AD"}}"#,
                ClientMessage::Call {
                    call_sid: "CA1".to_owned(),
                    action: CallAction::Dtmf {
                        digits: "12*#AD".to_owned(),
                    },
                },
            ),
            (
                r#"{"type":"token","payload":{"token":"a.b.c"}}"#,
                ClientMessage::Token { token },
            ),
        ];
        for (text, expected) in cases {
            let parsed = parse(text).unwrap();
            assert_eq!(parsed, expected, "{text}");
            let kind: Value = serde_json::from_str(text).unwrap();
            assert_eq!(kind["type"], parsed.kind(), "{text}");
        }
    }

    #[test]
    fn a_frame_that_is_no_envelope_is_a_protocol_error() {
        for text in [
            "",
            "listen",
            "[1,2]",
            "{",
            r#"{"payload":{}}"#,
            r#"{"type":7}"#,
            r#"{"type":"register","payload":[]}"#,
            r#"{"type":"register","payload":"x"}"#,
        ] {
            assert_eq!(parse(text), Err(ParseError::NotEnvelope), "{text:?}");
        }
    }

    #[test]
    fn unknown_types_and_bad_payloads_are_recoverable() {
        assert_eq!(
            parse(r#"{"type":"teleport"}"#),
            Err(ParseError::UnknownType)
        );
        for (text, kind) in [
            (r#"{"type":"listen"}"#, "listen"),
            (r#"{"type":"listen","payload":{"token":5}}"#, "listen"),
            (
                r#"{"type":"presence","payload":{"status":"offline"}}"#,
                "presence",
            ),
            (
                r#"{"type":"subscribe","payload":{"identities":["a b"]}}"#,
                "subscribe",
            ),
            (r#"{"type":"answer","payload":{"callsid":"CA1"}}"#, "answer"),
            (
                r#"{"type":"dtmf","payload":{"callsid":"CA1","digits":"9x"}}"#,
                "dtmf",
            ),
            (
                r#"{"type":"dtmf","payload":{"callsid":"CA1","digits":""}}"#,
                "dtmf",
            ),
        ] {
            match parse(text) {
                Err(ParseError::BadPayload { kind: got, detail }) => {
                    assert_eq!(got, kind, "{text}");
                    assert!(!detail.is_empty() && detail.len() <= MAX_DETAIL_BYTES);
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let long = format!(
            r#"{{"type":"presence","payload":{{"status":"{}"}}}}"#,
            "é".repeat(500)
        );
        let Err(ParseError::BadPayload { detail, .. }) = parse(&long) else {
            panic!("a long bad status must be a bad payload");
        };
        assert!(detail.len() <= MAX_DETAIL_BYTES);
    }

    #[test]
    fn tokens_never_print() {
        let message = parse(r#"{"type":"listen","payload":{"token":"secret.token.here"}}"#);
        let printed = format!("{message:?}");
        assert!(!printed.contains("secret"), "{printed}");
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn server_messages_are_envelopes_with_object_payloads() {
        let identity = Identity::new("alice").unwrap();
        let parameters = [
            ("zeta".to_owned(), "1".to_owned()),
            ("alpha".to_owned(), "2".to_owned()),
        ];
        let resource = PresenceResource::offline(identity.clone());
        let cases = [
            (
                ServerMessage::Connected {
                    identity: &identity,
                    device_id: DeviceId::from(0xab),
                    expires_at: "2026-11-24T06:00:00Z".to_owned(),
                },
                r#"{"type":"connected","payload":{"identity":"alice","device_id":"00000000000000ab","expires_at":"2026-11-24T06:00:00Z"}}"#,
            ),
            (ServerMessage::Ready {}, r#"{"type":"ready","payload":{}}"#),
            (
                ServerMessage::Offline {},
                r#"{"type":"offline","payload":{}}"#,
            ),
            (
                ServerMessage::Invite {
                    callsid: "CA1",
                    from: "+15550100",
                    to: "client:alice",
                    sdp: "v=0\r\n",
                    parameters: Parameters(&parameters),
                },
                r#"{"type":"invite","payload":{"callsid":"CA1","from":"+15550100","to":"client:alice","sdp":"v=0\r\n","parameters":{"zeta":"1","alpha":"2"}}}"#,
            ),
            (
                ServerMessage::Cancel { callsid: "CA1" },
                r#"{"type":"cancel","payload":{"callsid":"CA1"}}"#,
            ),
            (
                ServerMessage::Hangup {
                    callsid: "CA1",
                    reason: "completed",
                },
                r#"{"type":"hangup","payload":{"callsid":"CA1","reason":"completed"}}"#,
            ),
            (
                ServerMessage::Presence(&resource),
                r#"{"type":"presence","payload":{"identity":"alice","status":"offline","devices":[]}}"#,
            ),
            (
                ServerMessage::Error {
                    code: ErrorCode::UnknownCall,
                    message: "no such call",
                },
                r#"{"type":"error","payload":{"code":"unknown_call","message":"no such call"}}"#,
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(message.to_json(), expected);
        }
        assert_eq!(resource.status, PresenceStatus::Offline);
    }

    #[test]
    fn close_codes_match_the_contract() {
        let codes = [
            (CloseCode::Protocol, 4000),
            (CloseCode::InvalidToken, 4001),
            (CloseCode::NotPermitted, 4003),
            (CloseCode::ListenTimeout, 4008),
            (CloseCode::TooManyDevices, 4009),
            (CloseCode::MessageTooBig, 1009),
            (CloseCode::SlowReader, 1008),
            (CloseCode::NotResponding, 1001),
            (CloseCode::ServerError, 1011),
        ];
        for (code, number) in codes {
            assert_eq!(code.as_u16(), number, "{code:?}");
        }
    }
}
