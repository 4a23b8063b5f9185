//! Serialization to wire bytes. Content-Length is always written, from the body, so it cannot
//! disagree with it (RFC 3261 §20.14 makes it mandatory on streams; we send it everywhere).
//!
//! Every element is appended straight to the output buffer (no `fmt` machinery on the hot path);
//! the `Display` impls of the header and URI types call the same writers, so the two forms can
//! never drift apart.

use std::fmt;
use std::io::Write;

use super::header::{Contact, NameAddr, Params, Via};
use super::uri::{Host, Uri};
use super::{Headers, Request, Response};

pub(super) fn write_request(r: &Request, out: &mut Vec<u8>) {
    out.reserve(size_hint(&r.headers) + r.body.len());
    out.extend_from_slice(r.method.as_str().as_bytes());
    out.push(b' ');
    write_uri(out, &r.uri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    write_headers(&r.headers, out);
    finish(&r.body, out);
}

pub(super) fn write_response(r: &Response, out: &mut Vec<u8>) {
    out.reserve(size_hint(&r.headers) + r.body.len());
    out.extend_from_slice(b"SIP/2.0 ");
    push_decimal(out, r.status.code().into());
    out.push(b' ');
    out.extend_from_slice(r.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(&r.headers, out);
    finish(&r.body, out);
}

/// Formats with one of the writers below, for the `Display` impls.
pub(super) fn display(f: &mut fmt::Formatter<'_>, write: impl FnOnce(&mut Vec<u8>)) -> fmt::Result {
    let mut out = Vec::with_capacity(64);
    write(&mut out);
    // Every piece written comes from a `str`, so the bytes are UTF-8.
    f.write_str(&String::from_utf8_lossy(&out))
}

/// `SIP/2.0/<transport> host[:port];params`.
pub(super) fn write_via(out: &mut Vec<u8>, via: &Via) {
    out.extend_from_slice(b"SIP/2.0/");
    out.extend_from_slice(via.transport.as_str().as_bytes());
    out.push(b' ');
    write_host(out, &via.host);
    if let Some(port) = via.port {
        out.push(b':');
        push_decimal(out, port.into());
    }
    write_params(out, &via.params);
}

/// `[display-name SP] <uri>;params`: always the name-addr form, which is valid whatever the URI
/// holds (RFC 3261 §20.10).
pub(super) fn write_name_addr(out: &mut Vec<u8>, address: &NameAddr) {
    if let Some(name) = &address.display_name {
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
    }
    out.push(b'<');
    write_uri(out, &address.uri);
    out.push(b'>');
    write_params(out, &address.params);
}

/// `;name[=value]` for each parameter, values as stored (quoted ones keep their quotes).
pub(super) fn write_params(out: &mut Vec<u8>, params: &Params) {
    for p in &params.0 {
        out.push(b';');
        out.extend_from_slice(p.name.as_bytes());
        if let Some(value) = &p.value {
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
    }
}

pub(super) fn write_uri(out: &mut Vec<u8>, uri: &Uri) {
    match uri {
        Uri::Sip(u) => {
            out.extend_from_slice(if u.secure { b"sips:" } else { b"sip:" });
            if let Some(user) = &u.user {
                out.extend_from_slice(user.as_bytes());
                if let Some(password) = &u.password {
                    out.push(b':');
                    out.extend_from_slice(password.as_bytes());
                }
                out.push(b'@');
            }
            write_host(out, &u.host);
            if let Some(port) = u.port {
                out.push(b':');
                push_decimal(out, port.into());
            }
            write_params(out, &u.params);
            if let Some(headers) = &u.headers {
                out.push(b'?');
                out.extend_from_slice(headers.as_bytes());
            }
        }
        Uri::Other { scheme, rest } => {
            out.extend_from_slice(scheme.as_bytes());
            out.push(b':');
            out.extend_from_slice(rest.as_bytes());
        }
    }
}

pub(super) fn write_host(out: &mut Vec<u8>, host: &Host) {
    match host {
        Host::Domain(d) => out.extend_from_slice(d.as_bytes()),
        Host::Ipv4(a) => {
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, octet.into());
            }
        }
        // RFC 5118 §4.1: IPv6 addresses in URIs and Via are references, in brackets.
        Host::Ipv6(a) => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "[{a}]");
        }
    }
}

fn write_headers(h: &Headers, out: &mut Vec<u8>) {
    for via in &h.via {
        out.extend_from_slice(b"Via: ");
        write_via(out, via);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"From: ");
    write_name_addr(out, &h.from);
    out.extend_from_slice(b"\r\nTo: ");
    write_name_addr(out, &h.to);
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(h.call_id.as_str().as_bytes());
    out.extend_from_slice(b"\r\nCSeq: ");
    push_decimal(out, h.cseq.seq.into());
    out.push(b' ');
    out.extend_from_slice(h.cseq.method.as_str().as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(mf) = h.max_forwards {
        out.extend_from_slice(b"Max-Forwards: ");
        push_decimal(out, mf.into());
        out.extend_from_slice(b"\r\n");
    }
    match &h.contact {
        Contact::Wildcard => out.extend_from_slice(b"Contact: *\r\n"),
        Contact::Addresses(list) => {
            for c in list {
                out.extend_from_slice(b"Contact: ");
                write_name_addr(out, c);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    for (name, list) in [("Route: ", &h.route), ("Record-Route: ", &h.record_route)] {
        for r in list {
            out.extend_from_slice(name.as_bytes());
            write_name_addr(out, r);
            out.extend_from_slice(b"\r\n");
        }
    }
    for (name, value) in &h.other {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// A generous estimate of the serialized start line and headers, so that the buffer is sized
/// once instead of being copied as it grows.
fn size_hint(h: &Headers) -> usize {
    let addresses =
        h.via.len() + h.contact.addresses().len() + h.route.len() + h.record_route.len();
    let other: usize = h.other.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    256 + 128 * addresses + other
}

fn finish(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 65535, 4_294_967_295, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn hosts_match_their_textual_forms() {
        for (host, text) in [
            (Host::Ipv4("192.0.2.10".parse().unwrap()), "192.0.2.10"),
            (Host::Ipv4("0.0.0.0".parse().unwrap()), "0.0.0.0"),
            (
                Host::Ipv6("2001:db8::10".parse().unwrap()),
                "[2001:db8::10]",
            ),
            (Host::Domain("example.com".into()), "example.com"),
        ] {
            let mut out = Vec::new();
            write_host(&mut out, &host);
            assert_eq!(out, text.as_bytes());
            assert_eq!(host.to_string(), text);
        }
    }
}
