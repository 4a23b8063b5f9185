//! The registrar and location service (RFC 3261 §10.3): applies authenticated REGISTER requests
//! to each user's set of contact bindings and answers where a user can be reached.
//!
//! Sans-IO: the caller authenticates the request (steps 1–5 of §10.3 are its business: realm,
//! `Require`, credentials, and that the user may register the To address), passes `now`, and
//! sends the returned response. Memory is bounded by the number of configured users times
//! [`RegistrationLimits::max_contacts_per_user`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::{ListenTransport, RegistrationLimits};
use crate::message::{CallId, Contact, NameAddr, Request, Response, StatusCode, Tag, Uri};

/// RFC 3261 §20.10: a malformed `expires` value "SHOULD be treated as equivalent to 3600". We
/// apply the same rule to a malformed Expires header.
const MALFORMED_EXPIRES: u64 = 3600;

/// One contact address registered for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact as registered (without its `expires` parameter; `q` and others are kept).
    pub contact: NameAddr,
    /// When the binding lapses unless refreshed.
    pub expires_at: Instant,
    /// The Call-ID of the REGISTER that last wrote it (RFC 3261 §10.3 step 7 ordering).
    pub call_id: CallId,
    /// The CSeq number of that REGISTER.
    pub cseq: u32,
    /// The address the REGISTER came from (where to reach a phone behind NAT).
    pub source: SocketAddr,
    /// The transport the REGISTER reached us on.
    pub transport: ListenTransport,
}

/// The location service: each user's current bindings.
#[derive(Debug)]
pub struct Registrar {
    limits: RegistrationLimits,
    /// Username -> bindings, most recently refreshed first. Never holds an empty list.
    users: HashMap<String, Vec<Binding>>,
}

impl Registrar {
    /// An empty registrar enforcing `limits`.
    pub fn new(limits: RegistrationLimits) -> Self {
        Registrar {
            limits,
            users: HashMap::new(),
        }
    }

    /// Applies an authenticated REGISTER for `user` (RFC 3261 §10.3 steps 6–8) and returns the
    /// complete response to send:
    ///
    /// - `Contact: *` with `Expires: 0` removes every binding (any other Expires: 400);
    /// - a contact's `expires` parameter overrides the Expires header, which overrides the
    ///   configured default; a non-zero interval below `min_expires` gets 423 with Min-Expires,
    ///   one above `max_expires` is shortened, and 0 removes that binding;
    /// - a binding last written by the same Call-ID with a CSeq not lower than the request's
    ///   makes the request fail with 500 (out of order, step 7);
    /// - more than `max_contacts_per_user` bindings gets 403: the limit is policy, so retrying
    ///   later (what 503 would invite) would not help;
    /// - no Contact just lists the current bindings.
    ///
    /// Updates are all-or-nothing: on any error the stored bindings are unchanged. A 200 lists
    /// every current binding with its remaining `expires`.
    pub fn handle_register(
        &mut self,
        request: &Request,
        user: &str,
        source: SocketAddr,
        transport: ListenTransport,
        now: Instant,
    ) -> Response {
        let reply = |status: StatusCode| request.response(status, Some(&Tag::random()));
        let call_id = &request.headers.call_id;
        let cseq = request.headers.cseq.seq;
        let current: Vec<Binding> = self
            .users
            .get(user)
            .map(|list| {
                list.iter()
                    .filter(|b| b.expires_at > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();

        let updated = match &request.headers.contact {
            Contact::Wildcard => {
                // RFC 3261 §10.3 step 6: "*" is only valid with an expiration of zero.
                if expires_header(request) != Some(Some(0)) {
                    return reply(StatusCode::BAD_REQUEST)
                        .with_reason("Wildcard Contact Requires Expires: 0");
                }
                // Step 6: a binding from the same Call-ID is removed only by a higher CSeq.
                if current.iter().any(|b| is_out_of_order(b, call_id, cseq)) {
                    return out_of_order(reply);
                }
                Vec::new()
            }
            Contact::Addresses(contacts) if contacts.is_empty() => current,
            Contact::Addresses(contacts) => {
                let header_expires =
                    expires_header(request).map(|value| value.unwrap_or(MALFORMED_EXPIRES));
                let mut granted = Vec::with_capacity(contacts.len());
                for contact in contacts {
                    let requested = match contact.params.get("expires") {
                        Some(value) => value
                            .and_then(parse_delta_seconds)
                            .unwrap_or(MALFORMED_EXPIRES),
                        None => header_expires.unwrap_or(self.limits.default_expires.as_secs()),
                    };
                    // RFC 3261 §10.3 step 7: a registrar may refuse intervals it finds too
                    // short (the phone would refresh too often) with 423 and its minimum.
                    if requested != 0 && requested < self.limits.min_expires.as_secs() {
                        let mut response = reply(StatusCode::INTERVAL_TOO_BRIEF);
                        response
                            .headers
                            .push("Min-Expires", self.limits.min_expires.as_secs().to_string());
                        return response;
                    }
                    // ... and may shorten those it finds too long.
                    granted.push((contact, requested.min(self.limits.max_expires.as_secs())));
                }
                match apply(current, &granted, request, source, transport, now) {
                    Some(updated) => updated,
                    None => return out_of_order(reply),
                }
            }
        };

        if updated.len() > self.limits.max_contacts_per_user {
            return reply(StatusCode::FORBIDDEN).with_reason("Too Many Contacts");
        }
        let mut response = reply(StatusCode::OK);
        response.headers.contact = Contact::Addresses(
            updated
                .iter()
                .map(|b| {
                    let mut contact = b.contact.clone();
                    let remaining = b.expires_at.saturating_duration_since(now);
                    contact
                        .params
                        .set("expires", Some(whole_seconds_up(remaining).to_string()));
                    contact
                })
                .collect(),
        );
        if updated.is_empty() {
            self.users.remove(user);
        } else {
            self.users.insert(user.to_owned(), updated);
        }
        response
    }

    /// Current, unexpired bindings of `user`, most recently refreshed first.
    pub fn lookup(&self, user: &str, now: Instant) -> Vec<Binding> {
        self.users
            .get(user)
            .map(|list| {
                list.iter()
                    .filter(|b| b.expires_at > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops expired bindings; returns how many were removed.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        self.users.retain(|_, list| {
            let before = list.len();
            list.retain(|b| b.expires_at > now);
            removed += before - list.len();
            !list.is_empty()
        });
        removed
    }

    /// Number of users with at least one binding (for metrics).
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// The earliest instant at which a binding lapses, for scheduling [`Registrar::expire`].
    pub fn next_expiry(&self) -> Option<Instant> {
        self.users.values().flatten().map(|b| b.expires_at).min()
    }
}

/// Applies each contact with its granted interval (seconds) to `current` (RFC 3261 §10.3 step
/// 7). `None` when a binding is out of order. New and refreshed bindings come first, in request
/// order, followed by the untouched ones.
fn apply(
    current: Vec<Binding>,
    granted: &[(&NameAddr, u64)],
    request: &Request,
    source: SocketAddr,
    transport: ListenTransport,
    now: Instant,
) -> Option<Vec<Binding>> {
    let call_id = &request.headers.call_id;
    let cseq = request.headers.cseq.seq;
    let mut untouched = current;
    let mut fresh: Vec<Binding> = Vec::with_capacity(granted.len());
    for &(contact, seconds) in granted {
        if let Some(i) = untouched
            .iter()
            .position(|b| uri_equivalent(&b.contact.uri, &contact.uri))
        {
            // Same Call-ID: only a higher CSeq may update or remove. Another Call-ID (a
            // rebooted phone, a second device) always may.
            if is_out_of_order(&untouched[i], call_id, cseq) {
                return None;
            }
            untouched.remove(i);
        }
        // The same URI twice in one request: the later one wins.
        fresh.retain(|b| !uri_equivalent(&b.contact.uri, &contact.uri));
        if seconds == 0 {
            continue;
        }
        let mut stored = contact.clone();
        stored.params.remove("expires");
        fresh.push(Binding {
            contact: stored,
            expires_at: now + Duration::from_secs(seconds),
            call_id: call_id.clone(),
            cseq,
            source,
            transport,
        });
    }
    fresh.extend(untouched);
    Some(fresh)
}

fn is_out_of_order(binding: &Binding, call_id: &CallId, cseq: u32) -> bool {
    binding.call_id == *call_id && cseq <= binding.cseq
}

fn out_of_order(reply: impl Fn(StatusCode) -> Response) -> Response {
    reply(StatusCode::SERVER_INTERNAL_ERROR).with_reason("Out Of Order REGISTER")
}

/// The Expires header: `None` when absent, `Some(None)` when malformed.
fn expires_header(request: &Request) -> Option<Option<u64>> {
    request
        .headers
        .get("Expires")
        .map(|v| parse_delta_seconds(v.trim()))
}

/// RFC 3261 §25.1 `delta-seconds = 1*DIGIT`; values past 2**32-1 are taken as 2**32-1
/// (§20.19 bounds the range; the maximum is enforced afterwards anyway).
fn parse_delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = text.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 10 {
        return Some(u64::from(u32::MAX));
    }
    // At most ten digits always fit in a u64.
    digits
        .parse::<u64>()
        .ok()
        .map(|v| v.min(u64::from(u32::MAX)))
}

fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// URI equivalence as RFC 3261 §19.1.4 defines it for SIP URIs: user and password compare
/// case-sensitively after unescaping, host case-insensitively, ports must both be absent or
/// equal, the `user`, `ttl`, `method`, `maddr` and `transport` parameters must agree if either
/// URI has them, other parameters only if both have them, and headers must agree. Other schemes
/// compare as text with a case-insensitive scheme.
fn uri_equivalent(a: &Uri, b: &Uri) -> bool {
    let (a, b) = match (a, b) {
        (Uri::Sip(a), Uri::Sip(b)) => (a, b),
        (
            Uri::Other {
                scheme: sa,
                rest: ra,
            },
            Uri::Other {
                scheme: sb,
                rest: rb,
            },
        ) => return sa.eq_ignore_ascii_case(sb) && ra == rb,
        _ => return false,
    };
    let host_equal = match (&a.host, &b.host) {
        (crate::message::Host::Domain(x), crate::message::Host::Domain(y)) => {
            x.eq_ignore_ascii_case(y)
        }
        (x, y) => x == y,
    };
    if a.secure != b.secure
        || !host_equal
        || a.port != b.port
        || a.user.as_deref().map(unescape) != b.user.as_deref().map(unescape)
        || a.password.as_deref().map(unescape) != b.password.as_deref().map(unescape)
        || a.headers != b.headers
    {
        return false;
    }
    const MUST_AGREE: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];
    let value = |v: Option<&str>| v.map(unescape).map(|s| s.to_ascii_lowercase());
    for p in &a.params.0 {
        let theirs = b.params.get(&p.name);
        let must = MUST_AGREE.iter().any(|m| p.name.eq_ignore_ascii_case(m));
        match theirs {
            Some(theirs) if value(theirs) != value(p.value.as_deref()) => return false,
            None if must => return false,
            _ => {}
        }
    }
    MUST_AGREE
        .iter()
        .all(|m| !b.params.contains(m) || a.params.contains(m))
}

/// Decodes `%XX` escapes (RFC 3261 §19.1.4: escaped and unescaped characters are equivalent).
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_pair = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex_pair) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse, Message};

    fn limits() -> RegistrationLimits {
        RegistrationLimits {
            min_expires: Duration::from_secs(60),
            max_expires: Duration::from_secs(7200),
            default_expires: Duration::from_secs(3600),
            max_contacts_per_user: 3,
        }
    }

    fn source() -> SocketAddr {
        "192.0.2.10:5060".parse().unwrap()
    }

    fn register(call_id: &str, cseq: u32, contacts: &[&str], expires: Option<&str>) -> Request {
        let mut text = format!(
            "REGISTER sip:tandem.example SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7\r\n\
             Max-Forwards: 70\r\n\
             To: Alice <sip:alice@tandem.example>\r\n\
             From: Alice <sip:alice@tandem.example>;tag=456248\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n"
        );
        for c in contacts {
            text.push_str(&format!("Contact: {c}\r\n"));
        }
        if let Some(e) = expires {
            text.push_str(&format!("Expires: {e}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("expected a request"),
        }
    }

    /// (URI text, expires parameter) of each Contact in a response.
    fn listed(response: &Response) -> Vec<(String, String)> {
        response
            .headers
            .contact
            .addresses()
            .iter()
            .map(|c| {
                (
                    c.uri.to_string(),
                    c.params.get("expires").flatten().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn uris(bindings: &[Binding]) -> Vec<String> {
        bindings.iter().map(|b| b.contact.uri.to_string()).collect()
    }

    fn handle(registrar: &mut Registrar, request: &Request, now: Instant) -> Response {
        registrar.handle_register(request, "alice", source(), ListenTransport::Udp, now)
    }

    #[test]
    fn registers_a_contact_with_the_default_interval() {
        let start = Instant::now();
        let mut registrar = Registrar::new(limits());
        let request = register("c1", 1, &["<sip:alice@192.0.2.10:5060>;q=0.7"], None);
        let response = handle(&mut registrar, &request, start);
        assert_eq!(response.status, StatusCode::OK);
        assert!(response.headers.to.tag().is_some());
        assert_eq!(
            listed(&response),
            vec![("sip:alice@192.0.2.10:5060".to_owned(), "3600".to_owned())]
        );
        let bindings = registrar.lookup("alice", start);
        assert_eq!(bindings.len(), 1);
        let b = &bindings[0];
        assert_eq!(b.expires_at, start + Duration::from_secs(3600));
        assert_eq!(b.call_id, CallId::new("c1"));
        assert_eq!(b.cseq, 1);
        assert_eq!(b.source, source());
        assert_eq!(b.transport, ListenTransport::Udp);
        assert_eq!(b.contact.params.get("q"), Some(Some("0.7")));
        assert!(registrar.lookup("bob", start).is_empty());
        assert_eq!(registrar.user_count(), 1);
    }

    #[test]
    fn contact_expires_overrides_the_header_and_long_intervals_are_shortened() {
        let start = Instant::now();
        let mut registrar = Registrar::new(limits());
        let request = register(
            "c1",
            1,
            &[
                "<sip:alice@192.0.2.10>;expires=120",
                "<sip:alice@192.0.2.11>",
                "<sip:alice@192.0.2.12>;expires=99999",
            ],
            Some("600"),
        );
        let response = handle(&mut registrar, &request, start);
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            listed(&response),
            vec![
                ("sip:alice@192.0.2.10".to_owned(), "120".to_owned()),
                ("sip:alice@192.0.2.11".to_owned(), "600".to_owned()),
                ("sip:alice@192.0.2.12".to_owned(), "7200".to_owned()),
            ]
        );
    }

    #[test]
    fn too_brief_intervals_get_423_with_min_expires_and_change_nothing() {
        let start = Instant::now();
        let mut registrar = Registrar::new(limits());
        let first = register("c1", 1, &["<sip:alice@192.0.2.10>"], None);
        assert_eq!(handle(&mut registrar, &first, start).status, StatusCode::OK);
        let brief = register(
            "c1",
            2,
            &[
                "<sip:alice@192.0.2.11>",
                "<sip:alice@192.0.2.12>;expires=30",
            ],
            None,
        );
        let response = handle(&mut registrar, &brief, start);
        assert_eq!(response.status, StatusCode::INTERVAL_TOO_BRIEF);
        assert_eq!(response.headers.get("Min-Expires"), Some("60"));
        assert!(response.headers.to.tag().is_some());
        assert_eq!(
            uris(&registrar.lookup("alice", start)),
            vec!["sip:alice@192.0.2.10"]
        );
        // The header interval is checked too.
        let brief = register("c1", 3, &["<sip:alice@192.0.2.11>"], Some("59"));
        assert_eq!(
            handle(&mut registrar, &brief, start).status,
            StatusCode::INTERVAL_TOO_BRIEF
        );
    }

    #[test]
    fn multiple_contacts_and_refreshes_are_listed_most_recent_first() {
        let start = Instant::now();
        let mut registrar = Registrar::new(limits());
        let both = register(
            "c1",
            1,
            &["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"],
            None,
        );
        handle(&mut registrar, &both, start);
        let later = start + Duration::from_secs(100);
        let phone = register("c2", 1, &["<sip:alice@198.51.100.7;transport=tcp>"], None);
        let response = registrar.handle_register(
            &phone,
            "alice",
            "198.51.100.7:40000".parse().unwrap(),
            ListenTransport::Tcp,
            later,
        );
        assert_eq!(
            listed(&response),
            vec![
                (
                    "sip:alice@198.51.100.7;transport=tcp".to_owned(),
                    "3600".to_owned()
                ),
                ("sip:alice@192.0.2.10".to_owned(), "3500".to_owned()),
                ("sip:alice@192.0.2.11".to_owned(), "3500".to_owned()),
            ]
        );
        let bindings = registrar.lookup("alice", later);
        assert_eq!(bindings[0].transport, ListenTransport::Tcp);
        assert_eq!(bindings[0].source, "198.51.100.7:40000".parse().unwrap());
        // Refreshing the second contact moves it to the front, without duplicating it.
        let even_later = later + Duration::from_secs(10);
        let refresh = register("c1", 2, &["<sip:alice@192.0.2.11>"], Some("300"));
        handle(&mut registrar, &refresh, even_later);
        let bindings = registrar.lookup("alice", even_later);
        assert_eq!(
            uris(&bindings),
            vec![
                "sip:alice@192.0.2.11",
                "sip:alice@198.51.100.7;transport=tcp",
                "sip:alice@192.0.2.10"
            ]
        );
        assert_eq!(
            bindings[0].expires_at,
            even_later + Duration::from_secs(300)
        );
        assert_eq!(bindings[0].cseq, 2);
    }

    #[test]
    fn equivalent_uris_refresh_the_same_binding() {
        let start = Instant::now();
        let mut registrar = Registrar::new(RegistrationLimits {
            max_contacts_per_user: 10,
            ..limits()
        });
        let first = register("c1", 1, &["<sip:alice@Host.Example;transport=UDP>"], None);
        handle(&mut registrar, &first, start);
        let same = register("c1", 2, &["<sip:%61lice@host.example;transport=udp>"], None);
        handle(&mut registrar, &same, start);
        assert_eq!(registrar.lookup("alice", start).len(), 1);
        // A different port, user case or transport is a different binding.
        for (cseq, other) in [
            (3, "<sip:alice@host.example:5060;transport=udp>"),
            (4, "<sip:ALICE@host.example;transport=udp>"),
            (5, "<sip:alice@host.example>"),
        ] {
            let response = handle(&mut registrar, &register("c1", cseq, &[other], None), start);
            assert_eq!(response.status, StatusCode::OK, "{other}");
        }
        assert_eq!(registrar.lookup("alice", start).len(), 4);
    }

    #[test]
    fn uri_equivalence_follows_rfc3261_19_1_4() {
        let eq =
            |a: &str, b: &str| uri_equivalent(&Uri::parse(a).unwrap(), &Uri::parse(b).unwrap());
        assert!(eq(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq(
            "sip:bob@biloxi.com;transport=udp",
            "sip:bob@biloxi.com"
        ));
        assert!(!eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;security=off"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sips:bob@biloxi.com"));
        assert!(eq("tel:+1-555", "TEL:+1-555"));
        assert!(!eq("tel:+1-555", "sip:+1-555@x.example"));
    }

    #[test]
    fn expires_zero_removes_one_binding() {
        let start = Instant::now();
        let mut registrar = Registrar::new(limits());
        let both = register(
            "c1",
            1,
            &["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"],
            None,
        );
        handle(&mut registrar, &both, start);
        let remove = register("c1", 2, &["<sip:alice@192.0.2.10>;expires=0"], None);
        let response = handle(&mut registrar, &remove, start);
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(
            listed(&response),
            vec![("sip:alice@192.0.2.11".to_owned(), "3600".to_owned())]
        );
        let remove = register("c1", 3, &["<sip:alice@192.0.2.11>"], Some("0"));
        let response = handle(&mut registrar, &remove, start);
        assert!(response.headers.contact.is_empty());
        assert!(registrar.lookup("alice", start).is_empty());
        assert_eq!(registrar.user_count(), 0);
    }

    #[test]
    fn wildcard_removes_all_only_with_expires_zero() {
        let start = Instant::now();
        let mut registrar = Registrar::new(limits());
        let both = register(
            "c1",
            5,
            &["<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>"],
            None,
        );
        handle(&mut registrar, &both, start);
        for expires in [None, Some("60"), Some("zero")] {
            let bad = register("c2", 1, &["*"], expires);
            let response = handle(&mut registrar, &bad, start);
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{expires:?}");
        }
        // Same Call-ID with a CSeq not above the stored one: out of order.
        let stale = register("c1", 5, &["*"], Some("0"));
        assert_eq!(
            handle(&mut registrar, &stale, start).status,
            StatusCode::SERVER_INTERNAL_ERROR
        );
        assert_eq!(registrar.lookup("alice", start).len(), 2);
        let wildcard = register("c1", 6, &["*"], Some("0"));
        let response = handle(&mut registrar, &wildcard, start);
        assert_eq!(response.status, StatusCode::OK);
        assert!(response.headers.contact.is_empty());
        assert!(registrar.lookup("alice", start).is_empty());
        assert_eq!(registrar.user_count(), 0);
    }

    #[test]
    fn out_of_order_cseq_for_the_same_call_id_gets_500() {
        let start = Instant::now();
        let mut registrar = Registrar::new(limits());
        let first = register("c1", 10, &["<sip:alice@192.0.2.10>"], None);
        handle(&mut registrar, &first, start);
        for cseq in [10, 9] {
            let old = register("c1", cseq, &["<sip:alice@192.0.2.10>"], Some("0"));
            let response = handle(&mut registrar, &old, start);
            assert_eq!(response.status, StatusCode::SERVER_INTERNAL_ERROR);
            assert_eq!(registrar.lookup("alice", start).len(), 1);
        }
        // Another Call-ID (the phone rebooted) may restart at any CSeq.
        let rebooted = register("c2", 1, &["<sip:alice@192.0.2.10>"], Some("120"));
        assert_eq!(
            handle(&mut registrar, &rebooted, start).status,
            StatusCode::OK
        );
        let bindings = registrar.lookup("alice", start);
        assert_eq!(bindings.len(), 1);
        assert_eq!(bindings[0].call_id, CallId::new("c2"));
        assert_eq!(bindings[0].expires_at, start + Duration::from_secs(120));
    }

    #[test]
    fn too_many_contacts_get_403_and_change_nothing() {
        let start = Instant::now();
        let mut registrar = Registrar::new(limits());
        let three = register(
            "c1",
            1,
            &[
                "<sip:alice@192.0.2.10>",
                "<sip:alice@192.0.2.11>",
                "<sip:alice@192.0.2.12>",
            ],
            None,
        );
        assert_eq!(handle(&mut registrar, &three, start).status, StatusCode::OK);
        let fourth = register("c2", 1, &["<sip:alice@192.0.2.13>"], None);
        assert_eq!(
            handle(&mut registrar, &fourth, start).status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(registrar.lookup("alice", start).len(), 3);
        // Once one expires there is room again.
        let short = register("c1", 2, &["<sip:alice@192.0.2.10>"], Some("60"));
        handle(&mut registrar, &short, start);
        let later = start + Duration::from_secs(61);
        assert_eq!(
            handle(&mut registrar, &fourth, later).status,
            StatusCode::OK
        );
    }

    #[test]
    fn no_contact_lists_the_current_bindings() {
        let start = Instant::now();
        let mut registrar = Registrar::new(limits());
        let query = register("c1", 1, &[], None);
        let response = handle(&mut registrar, &query, start);
        assert_eq!(response.status, StatusCode::OK);
        assert!(response.headers.contact.is_empty());
        handle(
            &mut registrar,
            &register("c1", 2, &["<sip:alice@192.0.2.10>"], None),
            start,
        );
        let response = handle(
            &mut registrar,
            &register("c1", 3, &[], None),
            start + Duration::from_millis(1500),
        );
        // 3598.5 s remain: rounded up.
        assert_eq!(
            listed(&response),
            vec![("sip:alice@192.0.2.10".to_owned(), "3599".to_owned())]
        );
    }

    #[test]
    fn bindings_expire() {
        let start = Instant::now();
        let mut registrar = Registrar::new(limits());
        let request = register(
            "c1",
            1,
            &[
                "<sip:alice@192.0.2.10>;expires=60",
                "<sip:alice@192.0.2.11>;expires=120",
            ],
            None,
        );
        handle(&mut registrar, &request, start);
        registrar.handle_register(
            &register("c9", 1, &["<sip:bob@192.0.2.20>"], Some("60")),
            "bob",
            source(),
            ListenTransport::Udp,
            start,
        );
        assert_eq!(registrar.user_count(), 2);
        assert_eq!(
            registrar.next_expiry(),
            Some(start + Duration::from_secs(60))
        );
        let t60 = start + Duration::from_secs(60);
        assert_eq!(
            uris(&registrar.lookup("alice", t60)),
            vec!["sip:alice@192.0.2.11"]
        );
        assert!(registrar.lookup("bob", t60).is_empty());
        assert_eq!(registrar.expire(t60), 2);
        assert_eq!(registrar.user_count(), 1);
        assert_eq!(registrar.expire(t60), 0);
        assert_eq!(registrar.expire(start + Duration::from_secs(120)), 1);
        assert_eq!(registrar.user_count(), 0);
        assert_eq!(registrar.next_expiry(), None);
    }

    #[test]
    fn malformed_intervals_count_as_3600_then_bounded() {
        let start = Instant::now();
        let mut registrar = Registrar::new(RegistrationLimits {
            max_expires: Duration::from_secs(1800),
            ..limits()
        });
        let request = register(
            "c1",
            1,
            &[
                "<sip:alice@192.0.2.10>;expires=soon",
                "<sip:alice@192.0.2.11>",
            ],
            Some("later"),
        );
        let response = handle(&mut registrar, &request, start);
        assert_eq!(
            listed(&response),
            vec![
                ("sip:alice@192.0.2.10".to_owned(), "1800".to_owned()),
                ("sip:alice@192.0.2.11".to_owned(), "1800".to_owned()),
            ]
        );
    }

    #[test]
    fn delta_seconds_parsing() {
        assert_eq!(parse_delta_seconds("0"), Some(0));
        assert_eq!(parse_delta_seconds("000"), Some(0));
        assert_eq!(parse_delta_seconds("3600"), Some(3600));
        assert_eq!(
            parse_delta_seconds("99999999999999999999"),
            Some(u64::from(u32::MAX))
        );
        assert_eq!(parse_delta_seconds(""), None);
        assert_eq!(parse_delta_seconds("-1"), None);
        assert_eq!(parse_delta_seconds("1.5"), None);
    }
}
