//! Serialization to wire bytes. Content-Length is always written, from the body, so it cannot
//! disagree with it (RFC 3261 §20.14 makes it mandatory on streams; we send it everywhere).

use std::io::Write;

use super::header::Contact;
use super::{Headers, Request, Response};

pub(super) fn write_request(r: &Request, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, so the io::Result of each write is always Ok.
    let _ = write!(out, "{} {} SIP/2.0\r\n", r.method, r.uri);
    write_headers(&r.headers, out);
    finish(&r.body, out);
}

pub(super) fn write_response(r: &Response, out: &mut Vec<u8>) {
    let _ = write!(out, "SIP/2.0 {} {}\r\n", r.status.code(), r.reason);
    write_headers(&r.headers, out);
    finish(&r.body, out);
}

fn write_headers(h: &Headers, out: &mut Vec<u8>) {
    for via in &h.via {
        let _ = write!(out, "Via: {via}\r\n");
    }
    let _ = write!(
        out,
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        h.from, h.to, h.call_id, h.cseq
    );
    if let Some(mf) = h.max_forwards {
        let _ = write!(out, "Max-Forwards: {mf}\r\n");
    }
    match &h.contact {
        Contact::Wildcard => out.extend_from_slice(b"Contact: *\r\n"),
        Contact::Addresses(list) => {
            for c in list {
                let _ = write!(out, "Contact: {c}\r\n");
            }
        }
    }
    for r in &h.route {
        let _ = write!(out, "Route: {r}\r\n");
    }
    for r in &h.record_route {
        let _ = write!(out, "Record-Route: {r}\r\n");
    }
    for (name, value) in &h.other {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn finish(body: &[u8], out: &mut Vec<u8>) {
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}
