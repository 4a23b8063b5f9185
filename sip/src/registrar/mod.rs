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

use compact_str::ToCompactString;

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
                    contact.params.set(
                        "expires",
                        Some(whole_seconds_up(remaining).to_compact_string()),
                    );
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
mod tests;
