//! The message parser: start line, header unfolding and compact names (RFC 3261 §7.3), typed core
//! headers, and Content-Length checks (§18.3, §20.14).
//!
//! Parsing never panics and never allocates more than a bounded multiple of the input. A failure
//! is a [`ParseError`]; for a request whose Via, From, To, Call-ID and CSeq lines could be read, it
//! can produce the 400 (or 505) that RFC 3261 §8.2 and §21.5.20 ask for.

use std::borrow::Cow;

use bytes::Bytes;
use compact_str::CompactString;

use super::header::{CSeq, CallId, Contact, NameAddr, Via};
use super::method::{Method, StatusCode};
use super::uri::Uri;
use super::{Headers, Message, Request, Response};

/// Bound on header fields per message (after splitting comma-separated lists).
const MAX_HEADERS: usize = 256;

/// Why a message could not be parsed. The text of each variant is used as the reason phrase of
/// the 400 it causes, so it names the problem for the peer's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// No blank line ends the header section.
    #[error("Incomplete Message")]
    Incomplete,
    /// The header section is not UTF-8 text.
    #[error("Header Section Not UTF-8")]
    NotUtf8,
    /// The request or status line does not follow the grammar.
    #[error("Malformed Start Line")]
    StartLine,
    /// The request line's version is not SIP/2.0.
    #[error("Version Not Supported")]
    Version,
    /// The Request-URI does not parse.
    #[error("Malformed Request-URI")]
    RequestUri,
    /// A header line has no name or no colon.
    #[error("Malformed Header Line")]
    HeaderLine,
    /// More header fields than we accept.
    #[error("Too Many Header Fields")]
    TooManyHeaders,
    /// A mandatory header is missing.
    #[error("Missing {0} Header")]
    Missing(&'static str),
    /// A header that may appear once appears more than once.
    #[error("Duplicate {0} Header")]
    Duplicate(&'static str),
    /// A core header's value does not parse.
    #[error("Malformed {0} Header")]
    Header(&'static str),
    /// Content-Length promises more bytes than the message carries (RFC 3261 §18.3).
    #[error("Content-Length Larger Than Body")]
    ContentLengthTooLarge,
    /// CSeq's method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq Method Does Not Match Request Method")]
    CSeqMismatch,
}

/// A parse failure, with what is needed to answer it when the message was a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}{}", detail.map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct ParseError {
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// A finer description for logs (never sent on the wire).
    pub detail: Option<&'static str>,
    // Boxed: errors are the rare path, and an inline echo would make every Result large.
    echo: Option<Box<Echo>>,
}

/// The raw header lines a response to a malformed request must copy (RFC 3261 §8.2.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Echo {
    via: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
}

impl ParseError {
    fn new(kind: ParseErrorKind) -> ParseError {
        ParseError {
            kind,
            detail: None,
            echo: None,
        }
    }

    fn detailed(kind: ParseErrorKind, detail: &'static str) -> ParseError {
        ParseError {
            kind,
            detail: Some(detail),
            echo: None,
        }
    }

    /// The response to send for this failure: 505 for a bad version, else 400 with a reason
    /// phrase naming the problem. `None` when no response is possible (the message was a
    /// response, or the headers a response must copy are themselves unreadable): RFC 3261 §18.3
    /// then says to discard it.
    pub fn reply(&self) -> Option<Vec<u8>> {
        let echo = self.echo.as_ref()?;
        let status = if self.kind == ParseErrorKind::Version {
            StatusCode::VERSION_NOT_SUPPORTED
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", status.code(), self.kind).as_bytes());
        for v in &echo.via {
            out.extend_from_slice(format!("Via: {v}\r\n").as_bytes());
        }
        let mut to = echo.to.clone();
        if !to.to_ascii_lowercase().contains("tag=") {
            to.push_str(";tag=");
            to.push_str(super::header::Tag::random().as_str());
        }
        for (name, value) in [
            ("From", echo.from.as_str()),
            ("To", to.as_str()),
            ("Call-ID", echo.call_id.as_str()),
            ("CSeq", echo.cseq.as_str()),
        ] {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        Some(out)
    }
}

/// Parses one complete message: a datagram, or one message cut out of a stream by the framer.
///
/// Leading CRLFs are skipped (RFC 3261 §7.5). For a datagram, bytes beyond Content-Length are
/// discarded and a Content-Length larger than what is left is an error (§18.3); a missing
/// Content-Length means the body is the rest of the datagram.
pub fn parse(input: &[u8]) -> Result<Message, ParseError> {
    let start = input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(input.len());
    let input = &input[start..];
    let head_len = find_head_end(input).ok_or(ParseError::new(ParseErrorKind::Incomplete))?;
    let head = std::str::from_utf8(&input[..head_len])
        .map_err(|_| ParseError::new(ParseErrorKind::NotUtf8))?;
    let rest = &input[head_len + 4..];

    let (start_line, header_text) = match head.find('\n') {
        Some(i) => (
            head[..i]
                .strip_suffix('\r')
                .ok_or(ParseError::detailed(ParseErrorKind::StartLine, "bare LF"))?,
            &head[i + 1..],
        ),
        None => (head, ""),
    };
    let start = parse_start_line(start_line);
    let mut raw = split_header_lines(header_text)?;

    // Every failure of a request past this point can still be answered: what a 400 must echo is
    // copied from the raw lines when (and only when) a failure happens.
    let is_request = looks_like_request(start_line);
    let with_echo = |mut e: ParseError, raw: &[RawHeader<'_>]| {
        if is_request {
            e.echo = echo_of(raw);
        }
        e
    };

    let start = start.map_err(|e| with_echo(e, &raw))?;
    let (headers, content_length) = match build_headers(&mut raw, &start) {
        Ok(built) => built,
        Err(e) => return Err(with_echo(e, &raw)),
    };

    let body = match content_length {
        Some(len) if len > rest.len() => {
            return Err(with_echo(
                ParseError::new(ParseErrorKind::ContentLengthTooLarge),
                &raw,
            ))
        }
        Some(len) => Bytes::copy_from_slice(&rest[..len]),
        None => Bytes::copy_from_slice(rest),
    };

    Ok(match start {
        Start::Request { method, uri } => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        Start::Response { status, reason } => Message::Response(Response {
            status,
            reason: CompactString::from(reason),
            headers,
            body,
        }),
    })
}

/// The index of the `\r\n\r\n` that ends the header section.
pub(crate) fn find_head_end(input: &[u8]) -> Option<usize> {
    // Horspool search: the byte under the last position of the pattern decides how far to move
    // (1 after a CR, 2 after a mismatching LF, 4 after anything else), so text is mostly skipped
    // four bytes at a time.
    let mut i = 0;
    while let Some(&last) = input.get(i + 3) {
        match last {
            b'\n' if input[i] == b'\r' && input[i + 1] == b'\n' && input[i + 2] == b'\r' => {
                return Some(i)
            }
            b'\n' => i += 2,
            b'\r' => i += 1,
            _ => i += 4,
        }
    }
    None
}

/// Whether `b` is a `token` character (RFC 3261 §25.1).
#[inline]
pub fn is_token_char(b: u8) -> bool {
    TOKEN_CHARS[usize::from(b)]
}

/// `is_token_char` as a table: it runs for nearly every byte of a header section.
static TOKEN_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        // Invariant: b < 256, so the cast is exact.
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    table
};

enum Start<'a> {
    Request { method: Method, uri: Uri },
    Response { status: StatusCode, reason: &'a str },
}

fn looks_like_request(line: &str) -> bool {
    !line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
}

fn parse_start_line(line: &str) -> Result<Start<'_>, ParseError> {
    use ParseErrorKind::*;
    if !looks_like_request(line) {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.eq_ignore_ascii_case(super::SIP_VERSION) {
            return Err(ParseError::new(Version));
        }
        let code = parts.next().unwrap_or_default();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::detailed(StartLine, "bad status code"));
        }
        let status = code
            .parse()
            .ok()
            .and_then(StatusCode::new)
            .ok_or(ParseError::detailed(StartLine, "status code out of range"))?;
        let reason = parts.next().unwrap_or_default();
        if reason.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(ParseError::new(StartLine));
        }
        return Ok(self::Start::Response { status, reason });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly single spaces (§7.1).
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::detailed(
            StartLine,
            "request line needs three elements",
        ));
    };
    let method = Method::parse(method).ok_or(ParseError::detailed(StartLine, "bad method"))?;
    let uri = Uri::parse(uri).map_err(|d| ParseError::detailed(RequestUri, d))?;
    // RFC 3261 §19.1.1 (Table 1): URI headers are not allowed in a Request-URI; RFC 4475
    // §3.1.2.11 lets us reject such a request with a 400.
    if uri.as_sip().is_some_and(|u| u.headers.is_some()) {
        return Err(ParseError::detailed(RequestUri, "headers in Request-URI"));
    }
    if !version.eq_ignore_ascii_case(super::SIP_VERSION) {
        let well_formed = version
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
            && version[4..].split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
            });
        return Err(if well_formed {
            ParseError::new(Version)
        } else {
            ParseError::detailed(StartLine, "malformed version")
        });
    }
    Ok(self::Start::Request { method, uri })
}

/// One logical header line: its name (canonical for known headers, else as received), kind, and
/// unfolded, trimmed value (borrowed from the input unless line folding forced a copy).
struct RawHeader<'a> {
    name: &'a str,
    kind: Kind,
    value: Cow<'a, str>,
}

/// The headers the parser types (everything else is `Other`), so that the header loop dispatches
/// on a small integer rather than comparing names again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    Route,
    RecordRoute,
    ContentLength,
    Other,
}

fn split_header_lines(text: &str) -> Result<Vec<RawHeader<'_>>, ParseError> {
    use ParseErrorKind::*;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = text.as_bytes();
    // Room for a typical message's headers in one allocation, kept under 1 KiB so that the
    // allocator serves it from its small-chunk lists.
    let mut out: Vec<RawHeader<'_>> = Vec::with_capacity(16);
    let mut start = 0;
    while start <= bytes.len() {
        // One pass over the line finds its end and its first colon. Lines end only with CRLF
        // (RFC 3261 §7.3.1): a bare CR or LF is refused, so that no element that splits lines
        // differently can be made to see other headers.
        let end = find_cr_or_lf(&bytes[start..]).map_or(bytes.len(), |i| start + i);
        // Both ends are at ASCII bytes (or the end), so they are char boundaries.
        let line = &text[start..end];
        start = match bytes.get(end) {
            None => bytes.len() + 1,
            Some(b'\r') if bytes.get(end + 1) == Some(&b'\n') => end + 2,
            Some(b'\r') => return Err(ParseError::detailed(HeaderLine, "bare CR")),
            Some(_) => return Err(ParseError::detailed(HeaderLine, "bare LF")),
        };
        if line.starts_with([' ', '\t']) {
            // RFC 3261 §7.3.1: a line starting with whitespace continues the previous one; the
            // fold is equivalent to a single SP.
            let prev = out.last_mut().ok_or(ParseError::detailed(
                HeaderLine,
                "continuation before first header",
            ))?;
            let cont = line.trim_matches([' ', '\t']);
            if !cont.is_empty() {
                let value = prev.value.to_mut();
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(cont);
            }
            continue;
        }
        // header-name HCOLON: a token, optional whitespace, then the colon (RFC 3261 §7.3.1).
        let name_len = line.bytes().take_while(|&b| is_token_char(b)).count();
        let name = &line[..name_len];
        let after_name = line[name_len..].trim_start_matches([' ', '\t']);
        let Some(value) = after_name.strip_prefix(':').filter(|_| !name.is_empty()) else {
            return Err(ParseError::detailed(
                HeaderLine,
                "bad header name or no colon",
            ));
        };
        if out.len() >= MAX_HEADERS {
            return Err(ParseError::new(TooManyHeaders));
        }
        let (name, kind) = canonical_name(name).unwrap_or((name, Kind::Other));
        out.push(RawHeader {
            name,
            kind,
            value: Cow::Borrowed(value.trim_matches([' ', '\t'])),
        });
    }
    Ok(out)
}

/// The index of the first CR or LF, eight bytes at a time: header lines are long enough for the
/// word-wise test to pay off.
fn find_cr_or_lf(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero iff some byte of `word` equals `byte` (the classic has-zero-byte test).
    let has = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut offset = 0;
    for chunk in bytes.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(word);
        if has(word, b'\r') | has(word, b'\n') != 0 {
            break;
        }
        offset += 8;
    }
    bytes[offset..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|i| offset + i)
}

/// Canonical spelling and kind of known header names, with compact forms expanded (RFC 3261
/// §7.3.3 and the IANA registry's compact forms).
fn canonical_name(name: &str) -> Option<(&'static str, Kind)> {
    use Kind::*;
    const COMPACT: &[(u8, &str, Kind)] = &[
        (b'i', "Call-ID", CallId),
        (b'm', "Contact", Contact),
        (b'e', "Content-Encoding", Other),
        (b'l', "Content-Length", ContentLength),
        (b'c', "Content-Type", Other),
        (b'f', "From", From),
        (b's', "Subject", Other),
        (b'k', "Supported", Other),
        (b't', "To", To),
        (b'v', "Via", Via),
        (b'o', "Event", Other),
        (b'r', "Refer-To", Other),
        (b'b', "Referred-By", Other),
        (b'u', "Allow-Events", Other),
        (b'x', "Session-Expires", Other),
    ];
    if let [letter] = name.as_bytes() {
        let letter = letter.to_ascii_lowercase();
        return COMPACT
            .iter()
            .find(|(c, _, _)| *c == letter)
            .map(|&(_, full, kind)| (full, kind));
    }
    // Only names of the same length can match: the table is ordered by length, so a binary
    // search finds that stretch and at most a handful of names are compared.
    let from = KNOWN_BY_LENGTH.partition_point(|(n, _)| n.len() < name.len());
    KNOWN_BY_LENGTH[from..]
        .iter()
        .take_while(|(n, _)| n.len() == name.len())
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .copied()
}

/// Every header name we spell canonically, ordered by length (checked by a unit test).
const KNOWN_BY_LENGTH: &[(&str, Kind)] = &[
    ("To", Kind::To),
    ("Via", Kind::Via),
    ("CSeq", Kind::CSeq),
    ("Date", Kind::Other),
    ("From", Kind::From),
    ("Allow", Kind::Other),
    ("Event", Kind::Other),
    ("Route", Kind::Route),
    ("Accept", Kind::Other),
    ("Server", Kind::Other),
    ("Call-ID", Kind::CallId),
    ("Contact", Kind::Contact),
    ("Expires", Kind::Other),
    ("Require", Kind::Other),
    ("Subject", Kind::Other),
    ("Warning", Kind::Other),
    ("Priority", Kind::Other),
    ("Refer-To", Kind::Other),
    ("Reply-To", Kind::Other),
    ("Call-Info", Kind::Other),
    ("Supported", Kind::Other),
    ("Timestamp", Kind::Other),
    ("Alert-Info", Kind::Other),
    ("Error-Info", Kind::Other),
    ("User-Agent", Kind::Other),
    ("In-Reply-To", Kind::Other),
    ("Min-Expires", Kind::Other),
    ("Referred-By", Kind::Other),
    ("Retry-After", Kind::Other),
    ("Unsupported", Kind::Other),
    ("Allow-Events", Kind::Other),
    ("Content-Type", Kind::Other),
    ("Max-Forwards", Kind::MaxForwards),
    ("MIME-Version", Kind::Other),
    ("Organization", Kind::Other),
    ("Record-Route", Kind::RecordRoute),
    ("Authorization", Kind::Other),
    ("Proxy-Require", Kind::Other),
    ("Content-Length", Kind::ContentLength),
    ("Accept-Encoding", Kind::Other),
    ("Accept-Language", Kind::Other),
    ("Session-Expires", Kind::Other),
    ("Content-Encoding", Kind::Other),
    ("Content-Language", Kind::Other),
    ("WWW-Authenticate", Kind::Other),
    ("Proxy-Authenticate", Kind::Other),
    ("Authentication-Info", Kind::Other),
    ("Content-Disposition", Kind::Other),
    ("Proxy-Authorization", Kind::Other),
];

fn echo_of(raw: &[RawHeader<'_>]) -> Option<Box<Echo>> {
    // When a single-value header is repeated (RFC 4475 §3.3.8), the first value is echoed so that
    // the 400 can still be sent.
    let one = |kind: Kind| -> Option<String> {
        raw.iter()
            .find(|h| h.kind == kind)
            .map(|h| h.value.clone().into_owned())
    };
    let via: Vec<String> = raw
        .iter()
        .filter(|h| h.kind == Kind::Via)
        .map(|h| h.value.clone().into_owned())
        .collect();
    if via.is_empty() {
        return None;
    }
    Some(Box::new(Echo {
        via,
        from: one(Kind::From)?,
        to: one(Kind::To)?,
        call_id: one(Kind::CallId)?,
        cseq: one(Kind::CSeq)?,
    }))
}

/// Builds the typed headers. Values of non-core headers are moved out of `raw`; the core ones
/// stay, so that a failure can still echo them.
fn build_headers(
    raw: &mut [RawHeader<'_>],
    start: &Start<'_>,
) -> Result<(Headers, Option<usize>), ParseError> {
    use ParseErrorKind::*;
    let mut via = Vec::new();
    let mut from = None;
    let mut to = None;
    let mut call_id = None;
    let mut cseq = None;
    let mut max_forwards = None;
    let mut contact: Option<Contact> = None;
    let mut route = Vec::new();
    let mut record_route = Vec::new();
    let mut content_length: Option<usize> = None;
    let mut other = Vec::with_capacity(raw.iter().filter(|h| h.kind == Kind::Other).count());

    fn single<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), ParseError> {
        if slot.is_some() {
            return Err(ParseError::new(Duplicate(name)));
        }
        *slot = Some(value);
        Ok(())
    }

    for h in raw.iter_mut() {
        let v: &str = &h.value;
        match h.kind {
            Kind::Via => list(v, &mut via, Via::parse, "Via")?,
            Kind::From => single(&mut from, name_addr(v, "From")?, "From")?,
            Kind::To => single(&mut to, name_addr(v, "To")?, "To")?,
            Kind::CallId => {
                // RFC 3261 §25.1: callid = word [ "@" word ], no whitespace.
                if v.is_empty() || v.bytes().any(|b| b <= b' ' || b >= 0x7f) {
                    return Err(ParseError::new(Header("Call-ID")));
                }
                single(&mut call_id, CallId::new(v), "Call-ID")?
            }
            Kind::CSeq => single(
                &mut cseq,
                CSeq::parse(v).map_err(|d| ParseError::detailed(Header("CSeq"), d))?,
                "CSeq",
            )?,
            Kind::MaxForwards => {
                let n = (!v.is_empty() && v.len() <= 9 && v.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| v.parse::<u32>().ok())
                    .flatten()
                    .ok_or(ParseError::new(Header("Max-Forwards")))?;
                single(&mut max_forwards, n, "Max-Forwards")?
            }
            Kind::Contact => {
                if v == "*" {
                    if contact.is_some() {
                        return Err(ParseError::detailed(
                            Header("Contact"),
                            "wildcard with others",
                        ));
                    }
                    contact = Some(Contact::Wildcard);
                } else {
                    let list_so_far = match contact.take() {
                        None => Vec::new(),
                        Some(Contact::Addresses(a)) => a,
                        Some(Contact::Wildcard) => {
                            return Err(ParseError::detailed(
                                Header("Contact"),
                                "wildcard with others",
                            ))
                        }
                    };
                    let mut addrs = list_so_far;
                    list(v, &mut addrs, NameAddr::parse, "Contact")?;
                    contact = Some(Contact::Addresses(addrs));
                }
            }
            Kind::Route => list(v, &mut route, NameAddr::parse, "Route")?,
            Kind::RecordRoute => list(v, &mut record_route, NameAddr::parse, "Record-Route")?,
            Kind::ContentLength => {
                let n = (!v.is_empty() && v.len() <= 9 && v.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| v.parse::<usize>().ok())
                    .flatten()
                    .ok_or(ParseError::new(Header("Content-Length")))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(ParseError::new(Duplicate("Content-Length")));
                }
                content_length = Some(n);
            }
            Kind::Other => {
                let name = CompactString::from(h.name);
                other.push((name, CompactString::from(std::mem::take(&mut h.value))));
            }
        }
    }

    if via.is_empty() {
        return Err(ParseError::new(Missing("Via")));
    }
    let from = from.ok_or(ParseError::new(Missing("From")))?;
    let to = to.ok_or(ParseError::new(Missing("To")))?;
    let call_id = call_id.ok_or(ParseError::new(Missing("Call-ID")))?;
    let cseq = cseq.ok_or(ParseError::new(Missing("CSeq")))?;
    if let Start::Request { method, .. } = start {
        if &cseq.method != method {
            return Err(ParseError::new(CSeqMismatch));
        }
    }
    Ok((
        Headers {
            via,
            from,
            to,
            call_id,
            cseq,
            max_forwards,
            contact: contact.unwrap_or(Contact::Addresses(Vec::new())),
            route,
            record_route,
            other,
        },
        content_length,
    ))
}

fn name_addr(v: &str, name: &'static str) -> Result<NameAddr, ParseError> {
    let mut s = Scanner::new(v);
    let a = NameAddr::parse(&mut s)
        .map_err(|d| ParseError::detailed(ParseErrorKind::Header(name), d))?;
    s.skip_lws();
    if !s.is_empty() {
        return Err(ParseError::detailed(
            ParseErrorKind::Header(name),
            "trailing data",
        ));
    }
    Ok(a)
}

/// Parses a comma-separated list of values (RFC 3261 §7.3.1) into `out`.
fn list<T>(
    v: &str,
    out: &mut Vec<T>,
    parse_one: fn(&mut Scanner<'_>) -> Result<T, &'static str>,
    name: &'static str,
) -> Result<(), ParseError> {
    let err = |d| ParseError::detailed(ParseErrorKind::Header(name), d);
    let mut s = Scanner::new(v);
    loop {
        s.skip_lws();
        if out.len() >= MAX_HEADERS {
            return Err(ParseError::new(ParseErrorKind::TooManyHeaders));
        }
        out.push(parse_one(&mut s).map_err(err)?);
        s.skip_lws();
        if s.is_empty() {
            return Ok(());
        }
        if !s.eat(b',') {
            return Err(err("unexpected character"));
        }
    }
}

/// A cursor over a header value. Values are already unfolded, so whitespace is SP or HT only.
pub(crate) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Scanner<'a> {
        Scanner { text, pos: 0 }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips SP/HT; returns whether any was skipped.
    pub(crate) fn skip_lws(&mut self) -> bool {
        let before = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > before
    }

    /// Takes the longest prefix of ASCII bytes satisfying `f`.
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        while self.pos < bytes.len() && bytes[self.pos].is_ascii() && f(bytes[self.pos]) {
            self.pos += 1;
        }
        // Only ASCII bytes were consumed, so both ends are char boundaries.
        &self.text[start..self.pos]
    }

    pub(crate) fn token(&mut self) -> &'a str {
        self.take_while(is_token_char)
    }

    /// A quoted-string, returned with its quotes; backslash escapes are honoured (§25.1).
    pub(crate) fn quoted_string(&mut self) -> Result<&'a str, &'static str> {
        let start = self.pos;
        if !self.eat(b'"') {
            return Err("expected quoted string");
        }
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() {
            match bytes[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok(&self.text[start..self.pos]);
                }
                b'\\' => {
                    // quoted-pair excludes CR and LF (%x0A, %x0D).
                    match bytes.get(self.pos + 1) {
                        Some(b'\r' | b'\n') | None => return Err("bad escape in quoted string"),
                        Some(_) => self.pos += 2,
                    }
                }
                _ => self.pos += 1,
            }
        }
        Err("unterminated quoted string")
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.text.as_bytes()[self.pos.min(self.text.len())..]
    }

    pub(crate) fn rest_str(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    /// Advances `n` bytes; callers only advance over ASCII they have inspected.
    pub(crate) fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.text.len());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_are_ordered_by_length_and_found_in_any_case() {
        assert!(KNOWN_BY_LENGTH
            .windows(2)
            .all(|w| w[0].0.len() <= w[1].0.len()));
        for &(name, kind) in KNOWN_BY_LENGTH {
            assert_eq!(canonical_name(name), Some((name, kind)));
            assert_eq!(
                canonical_name(&name.to_ascii_lowercase()),
                Some((name, kind))
            );
        }
        assert_eq!(canonical_name("V"), Some(("Via", Kind::Via)));
        assert_eq!(canonical_name("X-Unknown"), None);
        assert_eq!(canonical_name("q"), None);
    }

    #[test]
    fn head_end_is_found_at_every_offset() {
        for prefix in 0..12 {
            let mut input = vec![b'a'; prefix];
            input.extend_from_slice(b"\r\n\r\r\n\n\r\n\r\nbody");
            let expected = input.windows(4).position(|w| w == b"\r\n\r\n");
            assert_eq!(find_head_end(&input), expected, "prefix {prefix}");
        }
        assert_eq!(find_head_end(b"\r\n\r"), None);
        assert_eq!(find_head_end(b""), None);
    }

    #[test]
    fn cr_or_lf_is_found_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                for stop in [b'\r', b'\n'] {
                    let mut input = vec![b'x'; len];
                    if at < len {
                        input[at] = stop;
                    }
                    let expected = (at < len).then_some(at);
                    assert_eq!(find_cr_or_lf(&input), expected, "len {len} at {at}");
                }
            }
        }
    }

    #[test]
    fn token_table_matches_the_grammar() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
            assert_eq!(is_token_char(b), expected, "byte {b}");
        }
    }
}
