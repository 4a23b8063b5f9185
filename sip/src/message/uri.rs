//! SIP and SIPS URIs (RFC 3261 §19.1, §25.1) with IPv6 references (RFC 5118), and other schemes
//! kept opaque (they are carried, never interpreted).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use compact_str::CompactString;

use super::header::Params;
use super::parse::Scanner;

/// A URI scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`.
    Sip,
    /// `sips:`.
    Sips,
    /// Any other scheme (e.g. `tel`), lower-cased.
    Other(String),
}

/// The host part of a URI or Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, as written.
    Domain(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in brackets).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// The IP address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
        }
    }

    /// Parses `host [":" port]`, stopping at the first byte that cannot belong to it.
    pub(crate) fn parse_hostport(s: &mut Scanner<'_>) -> Option<(Host, Option<u16>)> {
        let host = if s.eat(b'[') {
            let inner = s.take_while(|b| b != b']');
            if !s.eat(b']') {
                return None;
            }
            Host::Ipv6(inner.parse().ok()?)
        } else {
            let name = s.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if name.is_empty() {
                return None;
            }
            host_from_name(name)?
        };
        let port = if s.eat(b':') {
            let digits = s.take_while(|b| b.is_ascii_digit());
            Some(digits.parse::<u16>().ok()?)
        } else {
            None
        };
        Some((host, port))
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::Ipv4(a),
            IpAddr::V6(a) => Host::Ipv6(a),
        }
    }
}

fn host_from_name(name: &str) -> Option<Host> {
    // Only a name ending in a digit can be a dotted quad; skip the attempt for domain names.
    if name.ends_with(|c: char| c.is_ascii_digit()) {
        if let Ok(v4) = name.parse::<Ipv4Addr>() {
            return Some(Host::Ipv4(v4));
        }
    }
    // RFC 3261 §25.1 hostname: labels of alphanum and '-', not starting or ending with '-', an
    // optional trailing dot; the top label starts with a letter. A dotted-quad-looking name that
    // failed to parse as IPv4 (e.g. 300.1.1.1) is rejected here by the top-label rule.
    let labels = name.strip_suffix('.').unwrap_or(name).as_bytes();
    let mut valid = true;
    let mut top_label_start = 0;
    let mut start = 0;
    for end in 0..=labels.len() {
        if end < labels.len() && labels[end] != b'.' {
            continue;
        }
        let label = &labels[start..end];
        valid &= label.len() <= 63
            && label.first().is_some_and(|&b| b != b'-')
            && label.last().is_some_and(|&b| b != b'-');
        top_label_start = start;
        start = end + 1;
    }
    valid &= labels
        .get(top_label_start)
        .is_some_and(u8::is_ascii_alphabetic);
    valid.then(|| Host::Domain(name.to_owned()))
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            // RFC 5118 §4.1: IPv6 addresses in URIs and Via are references, in brackets.
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// A `sip:` or `sips:` URI, parsed.
    Sip(SipUri),
    /// Any other absolute URI, carried as text.
    Other {
        /// The scheme, lower-cased.
        scheme: String,
        /// Everything after `scheme:`.
        rest: String,
    },
}

/// The parts of a SIP or SIPS URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// True for `sips:`.
    pub secure: bool,
    /// The user part, in its escaped form, if any.
    pub user: Option<CompactString>,
    /// The password, if any (deprecated by RFC 3261 but legal).
    pub password: Option<String>,
    /// The host.
    pub host: Host,
    /// The port, if any.
    pub port: Option<u16>,
    /// The uri-parameters.
    pub params: Params,
    /// The raw `?headers` part, if any, without the `?`.
    pub headers: Option<String>,
}

impl Uri {
    /// A `sip:` URI.
    pub fn sip(user: Option<&str>, host: Host, port: Option<u16>) -> Uri {
        Uri::Sip(SipUri {
            secure: false,
            user: user.map(CompactString::from),
            password: None,
            host,
            port,
            params: Params::default(),
            headers: None,
        })
    }

    /// Parses a URI.
    pub fn parse(text: &str) -> Result<Uri, &'static str> {
        let colon = byte_position(text, b':').ok_or("URI has no scheme")?;
        let scheme = &text[..colon];
        if scheme.is_empty()
            || !scheme.as_bytes()[0].is_ascii_alphabetic()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err("malformed URI scheme");
        }
        let rest = &text[colon + 1..];
        let secure = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else {
            // RFC 3261 §25.1 absoluteURI: only uric characters. Anything else (notably < > "
            // and spaces) would change meaning when the URI is written back inside <>.
            if rest.is_empty() || !rest.bytes().all(is_uric) {
                return Err("malformed absolute URI");
            }
            return Ok(Uri::Other {
                scheme: scheme.to_ascii_lowercase(),
                rest: rest.to_owned(),
            });
        };
        let (userinfo, hostpart) = match byte_position(rest, b'@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (user, password) = match byte_position(ui, b':') {
                    Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                    None => (ui, None),
                };
                if user.is_empty() || !user.bytes().all(is_user_char) || !valid_escapes(user) {
                    return Err("malformed URI user part");
                }
                if let Some(p) = password {
                    if !p.bytes().all(is_password_char) || !valid_escapes(p) {
                        return Err("malformed URI password");
                    }
                }
                (Some(CompactString::from(user)), password.map(str::to_owned))
            }
        };
        let mut s = Scanner::new(hostpart);
        let (host, port) = Host::parse_hostport(&mut s).ok_or("malformed URI host")?;
        let params = parse_uri_params(&mut s)?;
        let headers = if s.eat(b'?') {
            let h = s.rest_str();
            if h.is_empty() || !h.bytes().all(is_header_char) || !valid_escapes(h) {
                return Err("malformed URI headers");
            }
            s.advance(h.len());
            Some(h.to_owned())
        } else {
            None
        };
        if !s.is_empty() {
            return Err("trailing characters in URI");
        }
        Ok(Uri::Sip(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        }))
    }

    /// The SIP parts, if this is a SIP or SIPS URI.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }

    /// The SIP parts, mutably.
    pub fn as_sip_mut(&mut self) -> Option<&mut SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            Uri::Sip(u) if u.secure => Scheme::Sips,
            Uri::Sip(_) => Scheme::Sip,
            Uri::Other { scheme, .. } => Scheme::Other(scheme.clone()),
        }
    }

    /// The user part of a SIP URI, if any (escaped form).
    pub fn user(&self) -> Option<&str> {
        self.as_sip().and_then(|u| u.user.as_deref())
    }
}

impl std::str::FromStr for Uri {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Uri, Self::Err> {
        Uri::parse(s)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::serialize::display(f, |out| super::serialize::write_uri(out, self))
    }
}

fn parse_uri_params(s: &mut Scanner<'_>) -> Result<Params, &'static str> {
    let mut params = Params::default();
    while s.eat(b';') {
        let name = s.take_while(is_param_char);
        if name.is_empty() || !valid_escapes(name) {
            return Err("malformed URI parameter");
        }
        let value = if s.eat(b'=') {
            let v = s.take_while(is_param_char);
            if v.is_empty() || !valid_escapes(v) {
                return Err("malformed URI parameter value");
            }
            Some(CompactString::from(v))
        } else {
            None
        };
        if params.0.len() >= 64 {
            return Err("too many URI parameters");
        }
        params.0.push(super::header::Param {
            name: super::header::Param::name_of(name),
            value,
        });
    }
    Ok(params)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

fn is_user_char(b: u8) -> bool {
    // RFC 3261 §25.1: unreserved / escaped / user-unreserved.
    is_unreserved(b)
        || matches!(
            b,
            b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
        )
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b',')
}

fn is_param_char(b: u8) -> bool {
    // paramchar = param-unreserved / unreserved / escaped.
    is_unreserved(b) || matches!(b, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// The index of the first `byte` (ASCII) in `text`. URI parts are short, so a plain loop beats a
/// general string search here.
fn byte_position(text: &str, byte: u8) -> Option<usize> {
    text.bytes().position(|b| b == byte)
}

fn is_uric(b: u8) -> bool {
    // uric = reserved / unreserved / escaped, plus "[" "]" (RFC 3986 IP literals) and "#" (a
    // fragment, or the unescaped "#" some phones put in tel: URIs).
    is_unreserved(b) || b";/?:@&=+$,%[]#".contains(&b)
}

fn is_header_char(b: u8) -> bool {
    // RFC 3261 §25.1 headers: hname "=" hvalue joined by "&", of hnv-unreserved / unreserved /
    // escaped.
    is_unreserved(b)
        || matches!(
            b,
            b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'%' | b'=' | b'&'
        )
}

/// Every `%` must start an escape of two hex digits (RFC 3261 §25.1 `escaped`).
fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_sip_uri() {
        let u =
            Uri::parse("sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=x").unwrap();
        let s = u.as_sip().unwrap();
        assert!(s.secure);
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("secret"));
        assert_eq!(s.host, Host::Domain("atlanta.com".into()));
        assert_eq!(s.port, Some(5061));
        assert_eq!(s.params.get("transport"), Some(Some("tcp")));
        assert_eq!(s.params.get("lr"), Some(None));
        assert_eq!(s.headers.as_deref(), Some("subject=x"));
        assert_eq!(
            u.to_string(),
            "sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=x"
        );
    }

    #[test]
    fn ipv6_reference_round_trips() {
        let u = Uri::parse("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(
            u.as_sip().unwrap().host,
            Host::Ipv6("2001:db8::10".parse().unwrap())
        );
        assert_eq!(u.to_string(), "sip:[2001:db8::10]:5070");
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "sip:",
            "sip:user@",
            "sip:[2001:db8::10",
            "sip:host:99999",
            "sip:us%zzer@host",
            "sip:host;",
            "sip:2001:db8::10",
            "nosuchscheme",
            "x:<y>",
            "tel:+1 555",
            "sip:a@b?x=<y>",
            "sip:-host.example.com",
            "sip:host-.example.com",
            "sip:host..example.com",
            "sip:1.2.3.4.5",
            "sip:300.1.1.1",
            "sip:host with space",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn hostnames_follow_the_label_rules() {
        for good in ["sip:a1.b-c.example.com.", "sip:x", "sip:host9.a1"] {
            let uri = Uri::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert!(
                matches!(uri.as_sip().unwrap().host, Host::Domain(_)),
                "{good}"
            );
        }
        let long_label = format!("sip:{}.com", "a".repeat(64));
        assert!(Uri::parse(&long_label).is_err());
    }

    #[test]
    fn other_schemes_are_opaque() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=x").unwrap();
        assert_eq!(u.scheme(), Scheme::Other("tel".into()));
        assert_eq!(u.to_string(), "tel:+1-201-555-0123;phone-context=x");
        let feature_code = Uri::parse("tel:*67#;phone-context=example.com").unwrap();
        assert_eq!(
            feature_code.to_string(),
            "tel:*67#;phone-context=example.com"
        );
    }
}
