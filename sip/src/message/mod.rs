//! SIP messages: our own types, parser and serializer.
//!
//! Every other module (and every other crate) sees only these types. The parser is ours because
//! the RFC 3261 grammar has corners that general-purpose parsers get wrong (line folding, compact
//! header names, whitespace around separators, Content-Length checks, IPv6 references); see
//! `docs/sip.md`. Digest credentials have their own parser in [`crate::auth`].
//!
//! Core headers (Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, Route, Record-Route) are
//! parsed into typed fields once, when the message is read, so transactions and dialogs never
//! re-parse text. All other headers are kept as name/value pairs in arrival order.
//! `Content-Length` is never stored: it is derived from the body when serializing, so it can
//! never disagree with it.

mod framing;
mod header;
mod method;
mod parse;
mod serialize;
mod uri;

pub use framing::{FrameError, Framed, StreamFramer, MAX_MESSAGE_SIZE_DEFAULT};
pub use header::{
    Branch, CSeq, CallId, Contact, NameAddr, Param, Params, Tag, Transport, Via, BRANCH_MAGIC,
};
pub use method::{Method, StatusCode};
pub use parse::{is_token_char, parse, ParseError, ParseErrorKind};
pub use uri::{Host, Scheme, SipUri, Uri};

use bytes::Bytes;
use compact_str::CompactString;

/// The SIP version we speak; anything else gets 505 (RFC 3261 §8.2.2 does not cover it, §21.5.20 does).
pub const SIP_VERSION: &str = "SIP/2.0";

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method of the request line.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// All header fields.
    pub headers: Headers,
    /// The message body (its length is the Content-Length on the wire).
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code of the status line.
    pub status: StatusCode,
    /// The reason phrase of the status line.
    pub reason: CompactString,
    /// All header fields.
    pub headers: Headers,
    /// The message body.
    pub body: Bytes,
}

/// Either kind of SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// The header fields of a message: the core ones typed, the rest as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// Via values, topmost first. A parsed message always has at least one.
    pub via: Vec<Via>,
    /// The From header.
    pub from: NameAddr,
    /// The To header.
    pub to: NameAddr,
    /// The Call-ID header.
    pub call_id: CallId,
    /// The CSeq header.
    pub cseq: CSeq,
    /// Max-Forwards (requests only; absent in responses).
    pub max_forwards: Option<u32>,
    /// Contact values (or the REGISTER wildcard).
    pub contact: Contact,
    /// Route values, in order.
    pub route: Vec<NameAddr>,
    /// Record-Route values, in order.
    pub record_route: Vec<NameAddr>,
    /// Every other header field, in arrival order, with canonical names for known headers.
    pub other: Vec<(CompactString, CompactString)>,
}

impl Headers {
    /// Headers for a new message, with the mandatory fields given and everything else empty.
    pub fn new(from: NameAddr, to: NameAddr, call_id: CallId, cseq: CSeq) -> Self {
        Headers {
            via: Vec::new(),
            from,
            to,
            call_id,
            cseq,
            max_forwards: None,
            contact: Contact::Addresses(Vec::new()),
            route: Vec::new(),
            record_route: Vec::new(),
            other: Vec::new(),
        }
    }

    /// The value of the first non-core header named `name` (case-insensitive, compact forms
    /// already expanded by the parser).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.other
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every non-core header named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.other
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Appends a non-core header.
    pub fn push(&mut self, name: impl Into<CompactString>, value: impl Into<CompactString>) {
        self.other.push((name.into(), value.into()));
    }

    /// Removes every non-core header named `name`.
    pub fn remove(&mut self, name: &str) {
        self.other.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Replaces every non-core header named `name` by one with `value`.
    pub fn set(&mut self, name: &str, value: impl Into<CompactString>) {
        self.remove(name);
        self.push(name, value);
    }

    /// The topmost Via. Parsed messages always have one; built ones must before being sent.
    pub fn top_via(&self) -> Option<&Via> {
        self.via.first()
    }

    /// The `Content-Type` value, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.get("Content-Type")
    }

    /// Whether a comma-separated option-tag header (Require, Supported, ...) lists `tag`.
    pub fn lists_option(&self, name: &str, tag: &str) -> bool {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(tag))
    }
}

impl Request {
    /// Builds a response to this request as RFC 3261 §8.2.6.2 says: Via, From, To (with `to_tag`
    /// added when given and the request has none), Call-ID and CSeq are copied, and for a 100 the
    /// Timestamp header too (§8.2.6.1).
    pub fn response(&self, status: StatusCode, to_tag: Option<&Tag>) -> Response {
        let mut headers = Headers::new(
            self.headers.from.clone(),
            self.headers.to.clone(),
            self.headers.call_id.clone(),
            self.headers.cseq.clone(),
        );
        headers.via = self.headers.via.clone();
        if let Some(tag) = to_tag {
            if headers.to.tag().is_none() && status != StatusCode::TRYING {
                headers.to.set_tag(tag);
            }
        }
        if status == StatusCode::TRYING {
            if let Some(ts) = self.headers.get("Timestamp") {
                headers.push("Timestamp", ts);
            }
        }
        Response {
            status,
            reason: CompactString::const_new(status.default_reason()),
            headers,
            body: Bytes::new(),
        }
    }

    /// The branch of the topmost Via, if present.
    pub fn branch(&self) -> Option<Branch> {
        self.headers.top_via().and_then(Via::branch)
    }

    /// Serializes the request into wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        serialize::write_request(self, &mut out);
        out
    }

    /// Serializes the request into [`Bytes`] to send and keep for retransmission.
    pub fn to_wire(&self) -> Bytes {
        wire(self.to_bytes())
    }
}

/// `bytes` as [`Bytes`] without the extra allocation `Bytes::from` makes for a vector with
/// spare capacity: trimmed first, which the allocator does in place while the estimate was
/// less than twice the length (mimalloc), and one allocation fewer per message sent.
fn wire(bytes: Vec<u8>) -> Bytes {
    Bytes::from(bytes.into_boxed_slice())
}

impl Response {
    /// Replaces the reason phrase (builder style).
    pub fn with_reason(mut self, reason: impl Into<CompactString>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Serializes the response into wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(384 + self.body.len());
        serialize::write_response(self, &mut out);
        out
    }

    /// Serializes the response into [`Bytes`] to send and keep for retransmission.
    pub fn to_wire(&self) -> Bytes {
        wire(self.to_bytes())
    }
}

impl Message {
    /// The header fields of either kind.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// Serializes the message into wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}
