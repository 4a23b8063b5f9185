//! The `Digest` challenge and credentials syntax: a scheme token followed by comma-separated
//! `name=token` or `name="quoted-string"` pairs (RFC 3261 §25.1 `digest-cln`/`dig-resp`,
//! RFC 7616 §3.3–§3.4, RFC 7235 §2.1 `auth-param`).
//!
//! Written here rather than taken from `rsip` because rsip 0.4 reads `nc` as a decimal `u8`
//! (RFC 7616 §3.4 makes it eight hex digits) and drops `cnonce`, `stale` and unknown parameters.

use crate::message::is_token_char;

/// Bound on parameters in one header value: a hostile peer must not make us allocate without limit.
const MAX_PARAMS: usize = 32;

/// Why a challenge or credentials value could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// The value does not start with an authentication scheme token.
    #[error("missing authentication scheme")]
    MissingScheme,
    /// A parameter is not `name=value`.
    #[error("malformed auth-param")]
    MalformedParam,
    /// A quoted string has no closing quote or ends in a lone backslash.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// The same parameter appears twice (RFC 7616 §3.4 allows each directive once).
    #[error("duplicate auth-param")]
    DuplicateParam,
    /// More parameters than we accept.
    #[error("too many auth-params")]
    TooManyParams,
}

/// A parsed challenge or credentials value: the scheme and its parameters with quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthParams {
    /// The scheme as written (`Digest`, compared case-insensitively).
    pub scheme: String,
    /// Parameter names (lower-cased) and unquoted values, in order.
    pub params: Vec<(String, String)>,
}

impl AuthParams {
    /// Parses `scheme [LWS] name=value *(, name=value)`.
    pub fn parse(text: &str) -> Result<AuthParams, SyntaxError> {
        let text = text.trim_matches(is_lws_char);
        let scheme_end = text
            .bytes()
            .position(|b| !is_token_char(b))
            .unwrap_or(text.len());
        if scheme_end == 0 {
            return Err(SyntaxError::MissingScheme);
        }
        let scheme = text[..scheme_end].to_owned();
        let rest = &text[scheme_end..];
        if !rest.is_empty() && !rest.starts_with(is_lws_char) {
            return Err(SyntaxError::MissingScheme);
        }
        let bytes = rest.as_bytes();
        let mut pos = 0;
        let mut params: Vec<(String, String)> = Vec::new();
        loop {
            // RFC 7230 §7 #rule: empty list elements (", ,") are tolerated.
            while pos < bytes.len() && (is_lws(bytes[pos]) || bytes[pos] == b',') {
                pos += 1;
            }
            if pos >= bytes.len() {
                return Ok(AuthParams { scheme, params });
            }
            let name_start = pos;
            while pos < bytes.len() && is_token_char(bytes[pos]) {
                pos += 1;
            }
            if pos == name_start {
                return Err(SyntaxError::MalformedParam);
            }
            let name = rest[name_start..pos].to_ascii_lowercase();
            pos = skip_lws(bytes, pos);
            if bytes.get(pos) != Some(&b'=') {
                return Err(SyntaxError::MalformedParam);
            }
            pos = skip_lws(bytes, pos + 1);
            let value = if bytes.get(pos) == Some(&b'"') {
                let (value, end) = unquote(rest, pos)?;
                pos = end;
                value
            } else {
                let start = pos;
                while pos < bytes.len() && is_token_char(bytes[pos]) {
                    pos += 1;
                }
                if pos == start {
                    return Err(SyntaxError::MalformedParam);
                }
                rest[start..pos].to_owned()
            };
            pos = skip_lws(bytes, pos);
            if pos < bytes.len() && bytes[pos] != b',' {
                return Err(SyntaxError::MalformedParam);
            }
            if params.iter().any(|(n, _)| *n == name) {
                return Err(SyntaxError::DuplicateParam);
            }
            if params.len() >= MAX_PARAMS {
                return Err(SyntaxError::TooManyParams);
            }
            params.push((name, value));
        }
    }

    /// Whether the scheme is `Digest`.
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    /// The unquoted value of parameter `name` (lower-case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `value` as a quoted-string, escaping `"` and `\` (RFC 3261 §25.1 quoted-pair).
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Reads the quoted-string starting at `start` (a `"`); returns its unescaped content and the
/// position after the closing quote.
fn unquote(text: &str, start: usize) -> Result<(String, usize), SyntaxError> {
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, start + 1 + i + 1)),
            '\\' => match chars.next() {
                Some((_, '\r' | '\n')) | None => return Err(SyntaxError::UnterminatedQuote),
                Some((_, escaped)) => out.push(escaped),
            },
            _ => out.push(c),
        }
    }
    Err(SyntaxError::UnterminatedQuote)
}

fn is_lws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_lws_char(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn skip_lws(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && is_lws(bytes[pos]) {
        pos += 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tokens_and_quoted_strings() {
        let p = AuthParams::parse(
            "Digest username=\"bob\",realm=\"biloxi.com\" , nc=00000001, \
             qop=auth,uri=\"sip:bob@biloxi.com\", opaque=\"a\\\"b\"",
        )
        .unwrap();
        assert!(p.is_digest());
        assert_eq!(p.get("username"), Some("bob"));
        assert_eq!(p.get("realm"), Some("biloxi.com"));
        assert_eq!(p.get("nc"), Some("00000001"));
        assert_eq!(p.get("qop"), Some("auth"));
        assert_eq!(p.get("uri"), Some("sip:bob@biloxi.com"));
        assert_eq!(p.get("opaque"), Some("a\"b"));
        assert_eq!(p.get("cnonce"), None);
    }

    #[test]
    fn names_are_case_insensitive() {
        let p = AuthParams::parse("digest REALM=\"x\"").unwrap();
        assert!(p.is_digest());
        assert_eq!(p.get("realm"), Some("x"));
    }

    #[test]
    fn rejects_malformed_values() {
        for (bad, why) in [
            ("", SyntaxError::MissingScheme),
            ("=x", SyntaxError::MissingScheme),
            ("Digest realm", SyntaxError::MalformedParam),
            ("Digest realm=", SyntaxError::MalformedParam),
            ("Digest realm=\"x", SyntaxError::UnterminatedQuote),
            ("Digest realm=\"x\\", SyntaxError::UnterminatedQuote),
            (
                "Digest realm=\"x\" nonce=\"y\"",
                SyntaxError::MalformedParam,
            ),
            ("Digest realm=a, realm=b", SyntaxError::DuplicateParam),
            ("Digest\"x\"", SyntaxError::MissingScheme),
        ] {
            assert_eq!(AuthParams::parse(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn bounds_the_number_of_params() {
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=v")).collect();
        let text = format!("Digest {}", many.join(","));
        assert_eq!(AuthParams::parse(&text), Err(SyntaxError::TooManyParams));
    }

    #[test]
    fn quote_round_trips_through_the_parser() {
        let original = "we\"ird\\name";
        let p = AuthParams::parse(&format!("Digest username={}", quote(original))).unwrap();
        assert_eq!(p.get("username"), Some(original));
    }
}
