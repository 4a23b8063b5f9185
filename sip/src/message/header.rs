//! Typed core header values: Via, name-addr (From/To/Contact/Route), CSeq, and the identifier
//! newtypes (Call-ID, tag, branch).

use std::borrow::Cow;
use std::fmt;

use compact_str::CompactString;

use super::method::Method;
use super::parse::{is_token_char, Scanner};
use super::serialize;
use super::uri::{Host, Uri};

/// RFC 3261 §8.1.1.7: branches of compliant transactions start with this cookie.
pub const BRANCH_MAGIC: &str = "z9hG4bK";

/// One `;name[=value]` parameter. Names compare case-insensitively; values are kept as received
/// (a quoted value keeps its quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The parameter name, as received ([`Param::name_of`]).
    pub name: Cow<'static, str>,
    /// The value, if the parameter has one.
    pub value: Option<CompactString>,
}

impl Param {
    /// `name` as a parameter name: the parameters every message carries (RFC 3261 §20's
    /// `branch`, `tag`, `rport`, …) are shared constants when spelled as usual, so parsing
    /// and copying headers allocates only for their values.
    pub fn name_of(name: &str) -> Cow<'static, str> {
        const COMMON: [&str; 13] = [
            "branch",
            "tag",
            "rport",
            "received",
            "transport",
            "lr",
            "user",
            "maddr",
            "ttl",
            "method",
            "expires",
            "q",
            "alias",
        ];
        match COMMON.iter().find(|common| **common == name) {
            Some(common) => Cow::Borrowed(common),
            None => Cow::Owned(name.to_owned()),
        }
    }
}

/// An ordered list of parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// The value of parameter `name`: `Some(None)` when present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// Whether parameter `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets (or replaces) parameter `name`.
    pub fn set(&mut self, name: &str, value: Option<CompactString>) {
        match self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.0.push(Param {
                name: Param::name_of(name),
                value,
            }),
        }
    }

    /// Removes parameter `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
    }

    /// Parses `*( SEMI param )` at the scanner's position; stops at the first byte that does not
    /// start a parameter (after optional whitespace).
    pub(crate) fn parse(s: &mut Scanner<'_>, stop: &[u8]) -> Result<Params, &'static str> {
        let mut params = Vec::new();
        loop {
            s.skip_lws();
            if !s.eat(b';') {
                return Ok(Params(params));
            }
            s.skip_lws();
            let name = s.take_while(|b| is_token_char(b) && !stop.contains(&b));
            if name.is_empty() {
                return Err("empty parameter name");
            }
            s.skip_lws();
            let value = if s.eat(b'=') {
                s.skip_lws();
                if s.peek() == Some(b'"') {
                    Some(CompactString::from(s.quoted_string()?))
                } else if s.peek() == Some(b'[') {
                    // RFC 3261 §25.1: received/maddr may hold an IPv6 reference.
                    Some(CompactString::from(s.take_while(|b| {
                        b != b';' && b != b',' && b != b'>' && !is_lws(b)
                    })))
                } else {
                    let v = s.take_while(|b| is_param_value_char(b) && !stop.contains(&b));
                    if v.is_empty() {
                        return Err("empty parameter value");
                    }
                    Some(CompactString::from(v))
                }
            } else {
                None
            };
            if params.len() >= MAX_PARAMS {
                return Err("too many parameters");
            }
            params.push(Param {
                name: Param::name_of(name),
                value,
            });
        }
    }
}

/// Bound on parameters per header value: a hostile peer must not make us allocate without limit.
const MAX_PARAMS: usize = 64;

fn is_lws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_param_value_char(b: u8) -> bool {
    // token plus the characters of IPv6 addresses and URI-ish values (RFC 3261 §25.1 gen-value,
    // host and the unreserved/escaped paramchars).
    is_token_char(b) || matches!(b, b':' | b'[' | b']' | b'/' | b'@' | b'&' | b'$' | b'+')
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        serialize::display(f, |out| serialize::write_params(out, self))
    }
}

/// A transport token of a Via sent-protocol or a `transport=` URI parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS.
    Tls,
    /// SCTP.
    Sctp,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket (RFC 7118).
    Wss,
    /// Any other token.
    Other(String),
}

impl Transport {
    /// Parses a transport token, case-insensitively.
    pub fn parse(token: &str) -> Transport {
        const KNOWN: [(&str, Transport); 6] = [
            ("UDP", Transport::Udp),
            ("TCP", Transport::Tcp),
            ("TLS", Transport::Tls),
            ("SCTP", Transport::Sctp),
            ("WS", Transport::Ws),
            ("WSS", Transport::Wss),
        ];
        KNOWN
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(token))
            .map_or_else(|| Transport::Other(token.to_owned()), |(_, t)| t)
    }

    /// Whether the transport delivers reliably (no retransmission timers, RFC 3261 §17).
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The token as written in a Via.
    pub fn as_str(&self) -> &str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
            Transport::Other(s) => s,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Via value: `SIP/2.0/<transport> host[:port] *(;param)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport of the sent-protocol.
    pub transport: Transport,
    /// The host of sent-by.
    pub host: Host,
    /// The port of sent-by, if given.
    pub port: Option<u16>,
    /// The via-params (branch, received, rport, maddr, ttl, extensions).
    pub params: Params,
}

impl Via {
    /// A Via for a request we send, with a fresh RFC 3261 branch and an empty `rport`
    /// (RFC 3581 §3: ask the server to answer to the source port).
    pub fn new(transport: Transport, host: Host, port: Option<u16>, branch: &Branch) -> Via {
        let mut params = Params::default();
        params.set("branch", Some(branch.0.clone()));
        params.set("rport", None);
        Via {
            transport,
            host,
            port,
            params,
        }
    }

    /// The branch parameter, if any.
    pub fn branch(&self) -> Option<Branch> {
        self.params.get("branch").flatten().map(Branch::new)
    }

    /// The `received` parameter, if any.
    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten()
    }

    /// The `rport` parameter: `Some(None)` when requested without value, `Some(Some(port))` when
    /// filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|v| v.parse().ok()))
    }

    /// The `maddr` parameter, if any.
    pub fn maddr(&self) -> Option<&str> {
        self.params.get("maddr").flatten()
    }

    pub(crate) fn parse(s: &mut Scanner<'_>) -> Result<Via, &'static str> {
        // RFC 3261 §25.1: sent-protocol = protocol-name SLASH protocol-version SLASH transport,
        // where SLASH = SWS "/" SWS, so whitespace may surround each slash.
        let name = s.token();
        if !name.eq_ignore_ascii_case("SIP") {
            return Err("Via protocol is not SIP");
        }
        s.skip_lws();
        if !s.eat(b'/') {
            return Err("malformed Via sent-protocol");
        }
        s.skip_lws();
        if s.token() != "2.0" {
            return Err("Via protocol version is not 2.0");
        }
        s.skip_lws();
        if !s.eat(b'/') {
            return Err("malformed Via sent-protocol");
        }
        s.skip_lws();
        let transport = s.token();
        if transport.is_empty() {
            return Err("missing Via transport");
        }
        let transport = Transport::parse(transport);
        if !s.skip_lws() {
            return Err("missing space before Via sent-by");
        }
        let (host, port) = Host::parse_hostport(s).ok_or("malformed Via sent-by")?;
        let params = Params::parse(s, b"")?;
        // The branch must be a token when present (RFC 3261 §20.42).
        if let Some(Some(b)) = params.get("branch") {
            if b.is_empty() || !b.bytes().all(is_token_char) {
                return Err("malformed Via branch");
            }
        }
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        serialize::display(f, |out| serialize::write_via(out, self))
    }
}

/// A name-addr or addr-spec with header parameters: From, To, Contact, Route, Record-Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name as received (quoted if it was quoted), if any.
    pub display_name: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// The header parameters (after the `>`, or after an addr-spec).
    pub params: Params,
}

impl NameAddr {
    /// A name-addr with just a URI.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Params::default(),
        }
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<Tag> {
        self.params.get("tag").flatten().map(Tag::new)
    }

    /// Sets the `tag` parameter.
    pub fn set_tag(&mut self, tag: &Tag) {
        self.params.set("tag", Some(tag.0.clone()));
    }

    pub(crate) fn parse(s: &mut Scanner<'_>) -> Result<NameAddr, &'static str> {
        s.skip_lws();
        let display_name = match s.peek() {
            Some(b'"') => {
                let q = s.quoted_string()?.to_owned();
                s.skip_lws();
                Some(q)
            }
            Some(b'<') => None,
            _ => {
                // Either `*(token LWS) <uri>` or a bare addr-spec: it is a display name if a '<'
                // comes before any ','. One scan that stops at the first of them keeps a long
                // list of addr-specs linear.
                let rest = s.rest();
                match rest.iter().position(|&b| b == b'<' || b == b',') {
                    Some(l) if rest[l] == b'<' => {
                        let name = std::str::from_utf8(&rest[..l])
                            .map_err(|_| "display name is not UTF-8")?
                            .trim_matches(|c| c == ' ' || c == '\t');
                        if !name
                            .split([' ', '\t'])
                            .filter(|w| !w.is_empty())
                            .all(|w| w.bytes().all(is_token_char))
                        {
                            return Err("malformed display name");
                        }
                        s.advance(l);
                        (!name.is_empty()).then(|| name.to_owned())
                    }
                    _ => None,
                }
            }
        };
        if s.eat(b'<') {
            let inner = s.take_while(|b| b != b'>');
            if !s.eat(b'>') {
                return Err("unterminated '<' in address");
            }
            let uri = Uri::parse(inner.trim()).map_err(|_| "malformed URI in address")?;
            let params = Params::parse(s, b",")?;
            Ok(NameAddr {
                display_name,
                uri,
                params,
            })
        } else {
            if display_name.is_some() {
                return Err("display name without '<uri>'");
            }
            // RFC 3261 §20: in an addr-spec, ';' starts header parameters, and the URI may not
            // contain ',', ';' or '?'.
            let raw = s.take_while(|b| b != b';' && b != b',' && !is_lws(b));
            if raw.contains('?') {
                // RFC 3261 §20.10: a URI with ',', ';' or '?' MUST be enclosed in <> (RFC 4475
                // §3.1.2.13).
                return Err("URI with '?' outside <>");
            }
            let uri = Uri::parse(raw).map_err(|_| "malformed URI in address")?;
            let params = Params::parse(s, b",")?;
            Ok(NameAddr {
                display_name,
                uri,
                params,
            })
        }
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        serialize::display(f, |out| serialize::write_name_addr(out, self))
    }
}

/// The Contact header: a list of addresses, or `*` (REGISTER only, RFC 3261 §10.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *`.
    Wildcard,
    /// Zero or more addresses.
    Addresses(Vec<NameAddr>),
}

impl Contact {
    /// The addresses (empty for the wildcard).
    pub fn addresses(&self) -> &[NameAddr] {
        match self {
            Contact::Wildcard => &[],
            Contact::Addresses(a) => a,
        }
    }

    /// Whether no Contact header is present.
    pub fn is_empty(&self) -> bool {
        matches!(self, Contact::Addresses(a) if a.is_empty())
    }
}

/// The CSeq header: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// The sequence number (less than 2**31, RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    pub(crate) fn parse(value: &str) -> Result<CSeq, &'static str> {
        let mut parts = value.split([' ', '\t']).filter(|p| !p.is_empty());
        let seq = parts.next().ok_or("empty CSeq")?;
        if seq.is_empty() || seq.len() > 10 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err("malformed CSeq number");
        }
        let seq: u64 = seq.parse().map_err(|_| "malformed CSeq number")?;
        if seq >= 1 << 31 {
            return Err("CSeq number out of range");
        }
        let method = parts
            .next()
            .and_then(Method::parse)
            .ok_or("malformed CSeq method")?;
        if parts.next().is_some() {
            return Err("trailing data in CSeq");
        }
        Ok(CSeq {
            // Invariant: checked < 2**31 above.
            seq: seq as u32,
            method,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(CompactString);

        impl $name {
            /// Wraps a value received or chosen elsewhere.
            pub fn new(value: impl Into<CompactString>) -> Self {
                $name(value.into())
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// A Call-ID.
    CallId
);
string_newtype!(
    /// A From/To tag.
    Tag
);
string_newtype!(
    /// A Via branch.
    Branch
);

impl CallId {
    /// A fresh, globally unique Call-ID (RFC 3261 §8.1.1.4): 96 random bits, in 24 characters
    /// that a [`CompactString`] holds without allocating.
    pub fn random() -> CallId {
        CallId(random_hex(12))
    }
}

impl Tag {
    /// A fresh tag with 64 random bits (RFC 3261 §19.3 asks for at least 32).
    pub fn random() -> Tag {
        Tag(random_hex(8))
    }
}

impl Branch {
    /// A fresh RFC 3261 branch: the magic cookie and 64 random bits (as many as a tag; a
    /// branch need only be unique among our transactions), 23 characters that a
    /// [`CompactString`] holds without allocating.
    pub fn random() -> Branch {
        let mut branch = CompactString::const_new(BRANCH_MAGIC);
        push_random_hex(&mut branch, 8);
        Branch(branch)
    }

    /// Whether the branch carries the RFC 3261 magic cookie (else the peer is RFC 2543-era and
    /// transaction matching falls back to §17.2.3's older rules).
    pub fn is_rfc3261(&self) -> bool {
        self.0.starts_with(BRANCH_MAGIC)
    }
}

fn random_hex(bytes: usize) -> CompactString {
    let mut text = CompactString::with_capacity(2 * bytes);
    push_random_hex(&mut text, bytes);
    text
}

/// Appends `bytes` random bytes (at most 16) in lower-case hexadecimal.
fn push_random_hex(out: &mut CompactString, bytes: usize) {
    use rand::RngCore;
    let mut buf = [0u8; 16];
    let buf = &mut buf[..bytes.min(16)];
    rand::rng().fill_bytes(buf);
    let mut text = [0u8; 32];
    let text = &mut text[..2 * buf.len()];
    // The buffer is exactly twice the input's length, which is all encode_to_slice needs.
    if hex::encode_to_slice(buf, text).is_ok() {
        out.extend(text.iter().map(|&digit| char::from(digit)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_parameter_names_are_shared_and_every_name_keeps_its_spelling() {
        assert!(matches!(Param::name_of("branch"), Cow::Borrowed("branch")));
        assert!(matches!(Param::name_of("tag"), Cow::Borrowed("tag")));
        // Names compare case-insensitively but are kept as received.
        assert!(matches!(Param::name_of("Branch"), Cow::Owned(ref name) if name == "Branch"));
        assert!(matches!(Param::name_of("x-custom"), Cow::Owned(ref name) if name == "x-custom"));
        let mut params = Params::default();
        params.set("TAG", Some("a".into()));
        params.set("tag", Some("b".into()));
        assert_eq!(params.0.len(), 1);
        assert_eq!(params.0[0].name, "TAG");
        assert_eq!(params.get("Tag"), Some(Some("b")));
    }

    #[test]
    fn short_values_of_a_parsed_message_are_stored_inline() {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:7080;branch=z9hG4bK-24150-1-0\r\n\
            From: <sip:c1@127.0.0.1:7080>;tag=24150SIPpTag001\r\nTo: <sip:+15550100@127.0.0.1>\r\n\
            Call-ID: 1-24150@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\r\n";
        let Ok(super::super::Message::Response(response)) = super::super::parse(text.as_bytes())
        else {
            panic!("does not parse")
        };
        let headers = &response.headers;
        let inline = |value: &CompactString| !value.is_heap_allocated();
        assert!(headers.via[0]
            .params
            .0
            .iter()
            .all(|p| p.value.as_ref().is_none_or(inline)));
        assert!(headers
            .from
            .params
            .0
            .iter()
            .all(|p| p.value.as_ref().is_none_or(inline)));
        assert!(inline(&headers.call_id.0));
        assert!(headers
            .other
            .iter()
            .all(|(name, value)| inline(name) && inline(value)));
        assert!(inline(&response.reason));
    }

    #[test]
    fn fresh_identifiers_are_random_lower_case_hex_of_their_length() {
        let hex = |text: &str| text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let branch = Branch::random();
        assert!(branch.is_rfc3261());
        let random = &branch.0[BRANCH_MAGIC.len()..];
        assert!(random.len() == 16 && hex(random), "{}", branch.0);
        assert_ne!(Branch::random(), branch);
        let tag = Tag::random();
        assert!(tag.0.len() == 16 && hex(&tag.0));
        let call_id = CallId::random();
        assert!(call_id.0.len() == 24 && hex(&call_id.0));
        // Short enough to be stored inline: making or copying one allocates nothing.
        assert!(!branch.0.is_heap_allocated());
        assert!(!tag.0.is_heap_allocated());
        assert!(!call_id.0.is_heap_allocated());
    }
}
