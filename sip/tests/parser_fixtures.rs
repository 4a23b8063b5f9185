//! Data-driven parser tests: every `tests/data/*.sip` file is one message as raw wire bytes
//! (CRLF line ends, NULs and UTF-8 kept exactly; `.gitattributes` stops git from converting them).
//!
//! The expected verdict of each file lives in `tests/data/VERDICTS`, one line per fixture:
//! `<name> <valid|invalid> <error kind|-> <400|505|drop|-> <note>`. For `valid`, `parse` must
//! succeed and the message must survive `parse -> to_bytes -> parse` unchanged. For `invalid`,
//! `parse` must fail with the named `ParseErrorKind` (its Debug form), and `err.reply()` must be a
//! 400, a 505, or `None` (`drop`). The notes cite the RFC section and record any choice we made
//! where RFC 4475 or RFC 5118 allows one.
//!
//! Crashers found by fuzzing replay on every `cargo test`: a `parse_message` crasher is added as
//! `fuzz-*.sip` with its VERDICTS line; a `stream_framing` crasher is added unchanged as
//! `tests/data/stream/*.bin` (first byte: chunk size minus one, then the stream, as the fuzz target
//! reads it) and replayed through `StreamFramer` with the target's invariants.

// Test set-up: a missing fixture is a bug to see at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use sip::message::{
    parse, Contact, Framed, Host, Message, Method, ParseError, StreamFramer, Transport, Uri,
};

/// What `VERDICTS` says about one fixture.
#[derive(Debug)]
enum Verdict {
    Valid,
    Invalid { kind: String, reply: Reply },
}

#[derive(Debug, PartialEq)]
enum Reply {
    Status(u16),
    Drop,
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn verdicts() -> BTreeMap<String, Verdict> {
    let text = std::fs::read_to_string(data_dir().join("VERDICTS")).expect("read VERDICTS");
    let mut out = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(
            fields.len() >= 5,
            "VERDICTS line {}: too few fields",
            number + 1
        );
        let verdict = match (fields[1], fields[2], fields[3]) {
            ("valid", "-", "-") => Verdict::Valid,
            ("invalid", kind, reply) => Verdict::Invalid {
                kind: kind.to_owned(),
                reply: match reply {
                    "drop" => Reply::Drop,
                    code => Reply::Status(code.parse().expect("reply is drop or a status code")),
                },
            },
            other => panic!("VERDICTS line {}: bad verdict {other:?}", number + 1),
        };
        let previous = out.insert(fields[0].to_owned(), verdict);
        assert!(
            previous.is_none(),
            "VERDICTS line {}: duplicate",
            number + 1
        );
    }
    out
}

fn fixtures() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(data_dir()).expect("read tests/data") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "sip") {
            let name = path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            out.insert(name, std::fs::read(&path).expect("read fixture"));
        }
    }
    out
}

fn parse_fixture(name: &str) -> Message {
    let bytes = std::fs::read(data_dir().join(format!("{name}.sip"))).expect("read fixture");
    parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn check_error(error: &ParseError, kind: &str, reply: &Reply) -> Result<(), String> {
    let actual_kind = format!("{:?}", error.kind);
    if actual_kind != kind {
        return Err(format!("expected {kind}, got {actual_kind} ({error})"));
    }
    match (reply, error.reply()) {
        (Reply::Drop, None) => Ok(()),
        (Reply::Drop, Some(r)) => Err(format!(
            "expected no reply, got {:?}",
            String::from_utf8_lossy(&r)
        )),
        (Reply::Status(_), None) => Err("expected a reply, got none".to_owned()),
        (Reply::Status(code), Some(r)) => {
            let prefix = format!("SIP/2.0 {code} ");
            if !r.starts_with(prefix.as_bytes()) {
                return Err(format!(
                    "expected {prefix}..., got {:?}",
                    String::from_utf8_lossy(&r)
                ));
            }
            // The reply must end its header section and copy the headers RFC 3261 §8.2.6.2 names.
            let text = String::from_utf8_lossy(&r);
            for needed in [
                "\r\nVia: ",
                "\r\nFrom: ",
                "\r\nTo: ",
                "\r\nCall-ID: ",
                "\r\nCSeq: ",
            ] {
                if !text.contains(needed) {
                    return Err(format!("reply lacks {needed:?}: {text:?}"));
                }
            }
            if !text.ends_with("\r\nContent-Length: 0\r\n\r\n") {
                return Err(format!("reply is not terminated: {text:?}"));
            }
            Ok(())
        }
    }
}

#[test]
fn every_fixture_has_a_verdict_and_every_verdict_a_fixture() {
    let verdicts = verdicts();
    let fixtures = fixtures();
    let without_verdict: Vec<_> = fixtures
        .keys()
        .filter(|n| !verdicts.contains_key(*n))
        .collect();
    let without_file: Vec<_> = verdicts
        .keys()
        .filter(|n| !fixtures.contains_key(*n))
        .collect();
    assert!(
        without_verdict.is_empty(),
        "fixtures without a VERDICTS line: {without_verdict:?}"
    );
    assert!(
        without_file.is_empty(),
        "VERDICTS lines without a fixture: {without_file:?}"
    );
    // The RFC 4475 and RFC 5118 corpora are complete: 49 and 12 messages.
    assert_eq!(
        fixtures
            .keys()
            .filter(|n| n.starts_with("rfc4475-"))
            .count(),
        49
    );
    assert_eq!(
        fixtures
            .keys()
            .filter(|n| n.starts_with("rfc5118-"))
            .count(),
        12
    );
}

#[test]
fn every_fixture_gets_its_verdict() {
    let verdicts = verdicts();
    let mut failures = Vec::new();
    for (name, bytes) in fixtures() {
        let Some(verdict) = verdicts.get(&name) else {
            continue;
        };
        let outcome = match (verdict, parse(&bytes)) {
            (Verdict::Valid, Ok(_)) => Ok(()),
            (Verdict::Valid, Err(e)) => Err(format!("expected valid, got {:?}: {e}", e.kind)),
            (Verdict::Invalid { .. }, Ok(_)) => Err("expected invalid, parsed fine".to_owned()),
            (Verdict::Invalid { kind, reply }, Err(e)) => check_error(&e, kind, reply),
        };
        if let Err(why) = outcome {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixtures failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_fixtures_round_trip() {
    let verdicts = verdicts();
    let mut failures = Vec::new();
    for (name, bytes) in fixtures() {
        if !matches!(verdicts.get(&name), Some(Verdict::Valid)) {
            continue;
        }
        let Ok(first) = parse(&bytes) else {
            continue; // reported by every_fixture_gets_its_verdict
        };
        let wire = first.to_bytes();
        match parse(&wire) {
            Ok(second) if second == first => {
                // Serialization is canonical: a second round is byte-identical.
                if second.to_bytes() != wire {
                    failures.push(format!("{name}: second serialization differs"));
                }
            }
            Ok(second) => failures.push(format!(
                "{name}: differs after round trip:\n{first:?}\n{second:?}"
            )),
            Err(e) => failures.push(format!(
                "{name}: own output does not parse: {e}\n{}",
                String::from_utf8_lossy(&wire)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn wsinv_fields() {
    let Message::Request(r) = parse_fixture("rfc4475-wsinv") else {
        panic!("request expected")
    };
    assert_eq!(r.method, Method::Invite);
    let uri = r.uri.as_sip().expect("sip uri");
    assert_eq!(uri.user.as_deref(), Some("vivekg"));
    assert_eq!(uri.params.get("unknownparam"), Some(None));
    assert_eq!(r.headers.max_forwards, Some(68));
    assert_eq!(r.headers.cseq.seq, 9);
    assert_eq!(r.headers.to.tag().expect("to tag").as_str(), "1918181833n");
    assert_eq!(r.headers.from.tag().expect("from tag").as_str(), "98asjd8");
    assert_eq!(
        r.headers.from.display_name.as_deref(),
        Some(r#""J Rosenberg \\\"""#)
    );
    let hosts: Vec<String> = r.headers.via.iter().map(|v| v.host.to_string()).collect();
    assert_eq!(
        hosts,
        ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    );
    assert_eq!(r.headers.via[1].transport, Transport::Tcp);
    assert_eq!(
        r.headers.via[2].branch().expect("branch").as_str(),
        "z9hG4bK30239"
    );
    assert_eq!(r.headers.get("Subject"), Some(""));
    assert_eq!(
        r.headers.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        r.headers.get("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let contact = &r.headers.contact.addresses()[0];
    assert_eq!(contact.params.get("newparam"), Some(Some("newvalue")));
    assert_eq!(contact.params.get("secondparam"), Some(None));
    assert_eq!(contact.params.get("q"), Some(Some("0.33")));
    assert_eq!(r.headers.route.len(), 1);
    assert_eq!(r.body.len(), 150);
}

#[test]
fn intmeth_fields() {
    let Message::Request(r) = parse_fixture("rfc4475-intmeth") else {
        panic!("request expected")
    };
    let method = Method::Extension("!interesting-Method0123456789_*+`.%indeed'~".into());
    assert_eq!(r.method, method);
    assert_eq!(r.headers.cseq.method, method);
    let uri = r.uri.as_sip().expect("sip uri");
    assert_eq!(
        uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        uri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(
        r.headers.to.display_name.as_deref(),
        Some("\"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\"")
    );
    assert_eq!(
        r.headers.from.display_name.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(
        r.headers.from.params.get("fromParam''~+*_!.-%"),
        Some(Some("\"работающий\""))
    );
    assert_eq!(
        r.headers.call_id.as_str(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert_eq!(r.headers.max_forwards, Some(255));
    assert_eq!(
        r.headers.get("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );
}

#[test]
fn escape_fixtures_keep_escapes_and_counts() {
    let Message::Request(r) = parse_fixture("rfc4475-esc01") else {
        panic!("request expected")
    };
    assert_eq!(r.uri.user(), Some("sips%3Auser%40example.com"));
    let contact = r.headers.contact.addresses()[0]
        .uri
        .as_sip()
        .expect("sip")
        .clone();
    assert_eq!(contact.params.get("%6C%72"), Some(None));
    assert_eq!(contact.params.get("n%61me"), Some(Some("v%61lue%25%34%31")));

    let Message::Request(r) = parse_fixture("rfc4475-escnull") else {
        panic!("request expected")
    };
    let users: Vec<_> = r
        .headers
        .contact
        .addresses()
        .iter()
        .map(|c| c.uri.user())
        .collect();
    assert_eq!(users, [Some("%00"), Some("%00%00")]);

    let Message::Request(r) = parse_fixture("rfc4475-esc02") else {
        panic!("request expected")
    };
    assert_eq!(r.method, Method::Extension("RE%47IST%45R".into()));
    assert_eq!(r.headers.contact.addresses().len(), 2);
    assert_eq!(
        r.headers.get("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
    assert_eq!(r.headers.to.display_name.as_deref(), Some("\"%Z%45\""));

    let Message::Request(r) = parse_fixture("rfc4475-semiuri") else {
        panic!("request expected")
    };
    assert_eq!(r.uri.user(), Some("user;par=u%40example.net"));
    assert!(r.uri.as_sip().expect("sip").params.0.is_empty());
}

#[test]
fn framing_fixtures_take_content_length_seriously() {
    let Message::Request(r) = parse_fixture("rfc4475-dblreq") else {
        panic!("request expected")
    };
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty(), "the trailing INVITE must be discarded");

    let Message::Request(r) = parse_fixture("rfc4475-mpart01") else {
        panic!("request expected")
    };
    assert_eq!(r.body.len(), 553);
    assert!(r.body.contains(&0), "binary part keeps its NULs");
    assert!(r.body.ends_with(b"--7a9cbec02ceef655--\r\n"));

    let Message::Request(r) = parse_fixture("rfc4475-inv2543") else {
        panic!("request expected")
    };
    assert_eq!(
        r.body.len(),
        105,
        "no Content-Length: the body is the rest of the datagram"
    );
    assert_eq!(r.headers.max_forwards, None);
    assert_eq!(r.branch(), None);
    assert_eq!(r.headers.from.tag(), None);

    let Message::Request(r) = parse_fixture("rfc5118-4.8-mixed-sdp") else {
        panic!("request expected")
    };
    assert_eq!(
        r.body.len(),
        181,
        "octets beyond Content-Length are discarded"
    );
}

#[test]
fn response_fixtures_keep_reason_phrases() {
    let Message::Response(r) = parse_fixture("rfc4475-unreason") else {
        panic!("response expected")
    };
    assert_eq!(r.status.code(), 200);
    assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");

    let Message::Response(r) = parse_fixture("rfc4475-noreason") else {
        panic!("response expected")
    };
    assert_eq!(r.status.code(), 100);
    assert_eq!(r.reason, "");

    let Message::Response(r) = parse_fixture("rfc4475-bcast") else {
        panic!("response expected")
    };
    assert_eq!(r.headers.via[1].host, Host::Ipv4(Ipv4Addr::BROADCAST));
}

#[test]
fn unusual_but_valid_headers() {
    let Message::Request(r) = parse_fixture("rfc4475-longreq") else {
        panic!("request expected")
    };
    assert_eq!(r.headers.via.len(), 34);
    assert_eq!(
        r.headers.via[0].host,
        Host::Domain("sip33.example.com".into())
    );
    assert_eq!(r.headers.via[33].received(), Some("192.0.2.5"));
    assert_eq!(r.headers.to.uri.as_sip().expect("sip").port, Some(6000));

    let Message::Request(r) = parse_fixture("rfc4475-transports") else {
        panic!("request expected")
    };
    let transports: Vec<_> = r.headers.via.iter().map(|v| v.transport.clone()).collect();
    assert_eq!(
        transports,
        [
            Transport::Udp,
            Transport::Sctp,
            Transport::Tls,
            Transport::Other("UNKNOWN".into()),
            Transport::Tcp
        ]
    );

    let Message::Request(r) = parse_fixture("rfc4475-unkscm") else {
        panic!("request expected")
    };
    assert!(matches!(&r.uri, Uri::Other { scheme, .. } if scheme == "nobodyknowsthisscheme"));

    let Message::Request(r) = parse_fixture("rfc4475-unksm2") else {
        panic!("request expected")
    };
    assert!(
        matches!(&r.headers.to.uri, Uri::Other { scheme, rest } if scheme == "isbn" && rest == "2983792873")
    );
    assert!(
        matches!(&r.headers.contact.addresses()[0].uri, Uri::Other { scheme, .. } if scheme == "name")
    );

    let Message::Request(r) = parse_fixture("rfc4475-zeromf") else {
        panic!("request expected")
    };
    assert_eq!(r.headers.max_forwards, Some(0));

    let Message::Request(r) = parse_fixture("rfc4475-cparam01") else {
        panic!("request expected")
    };
    let contact = &r.headers.contact.addresses()[0];
    assert_eq!(
        contact.params.get("unknownparam"),
        Some(None),
        "header parameter"
    );
    assert!(contact.uri.as_sip().expect("sip").params.0.is_empty());

    let Message::Request(r) = parse_fixture("rfc4475-cparam02") else {
        panic!("request expected")
    };
    let contact = &r.headers.contact.addresses()[0];
    assert!(contact.params.0.is_empty());
    assert_eq!(
        contact
            .uri
            .as_sip()
            .expect("sip")
            .params
            .get("unknownparam"),
        Some(None)
    );

    let Message::Request(r) = parse_fixture("rfc4475-regescrt") else {
        panic!("request expected")
    };
    let contact = r.headers.contact.addresses()[0]
        .uri
        .as_sip()
        .expect("sip")
        .clone();
    assert_eq!(
        contact.headers.as_deref(),
        Some("Route=%3Csip:sip.example.com%3E")
    );

    let Message::Request(r) = parse_fixture("local-register-wildcard") else {
        panic!("request expected")
    };
    assert_eq!(r.headers.contact, Contact::Wildcard);
}

#[test]
fn ipv6_fixtures() {
    let v6 = |s: &str| Host::Ipv6(s.parse::<Ipv6Addr>().expect("ipv6"));
    let Message::Request(r) = parse_fixture("rfc5118-4.1-ipv6-good") else {
        panic!("request expected")
    };
    assert_eq!(r.uri.as_sip().expect("sip").host, v6("2001:db8::10"));
    assert_eq!(r.headers.via[0].host, v6("2001:db8::9:1"));
    assert_eq!(
        r.headers.contact.addresses()[0]
            .uri
            .as_sip()
            .expect("sip")
            .host,
        v6("2001:db8::1")
    );

    let Message::Request(r) = parse_fixture("rfc5118-4.3-port-ambiguous") else {
        panic!("request expected")
    };
    let uri = r.uri.as_sip().expect("sip");
    assert_eq!(
        (uri.host.clone(), uri.port),
        (v6("2001:db8::10:5070"), None)
    );

    let Message::Request(r) = parse_fixture("rfc5118-4.4-port-unambiguous") else {
        panic!("request expected")
    };
    let uri = r.uri.as_sip().expect("sip");
    assert_eq!(
        (uri.host.clone(), uri.port),
        (v6("2001:db8::10"), Some(5070))
    );

    let Message::Request(r) = parse_fixture("rfc5118-4.5-via-received-delim") else {
        panic!("request expected")
    };
    assert_eq!(r.headers.via[0].received(), Some("[2001:db8::9:255]"));
    let Message::Request(r) = parse_fixture("rfc5118-4.5-via-received-nodelim") else {
        panic!("request expected")
    };
    assert_eq!(r.headers.via[0].received(), Some("2001:db8::9:255"));

    let Message::Request(r) = parse_fixture("rfc5118-4.7-mixed-via") else {
        panic!("request expected")
    };
    assert_eq!(r.headers.via.len(), 3);
    assert_eq!(
        (r.headers.via[0].host.clone(), r.headers.via[0].port),
        (v6("2001:db8::9:1"), Some(6050))
    );
    assert_eq!(
        r.headers.via[1].host,
        Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
    );
    assert_eq!(r.headers.via[2].transport, Transport::Tcp);
    assert_eq!(r.headers.via[2].received(), Some("192.0.2.200"));

    let Message::Request(r) = parse_fixture("rfc5118-4.9-ipv4-mapped") else {
        panic!("request expected")
    };
    assert_eq!(
        (r.headers.via[0].host.clone(), r.headers.via[0].port),
        (v6("::ffff:192.0.2.10"), Some(19823))
    );
    assert_eq!(r.headers.via[1].host, v6("::ffff:192.0.2.2"));

    let Message::Request(r) = parse_fixture("rfc5118-4.10-correct") else {
        panic!("request expected")
    };
    assert_eq!(r.uri.as_sip().expect("sip").host, v6("2001:db8::c000:201"));
}

#[test]
fn stream_crashers_replay_through_the_framer() {
    const MAX: usize = 4096;
    let mut replayed = 0;
    for entry in std::fs::read_dir(data_dir().join("stream")).expect("read tests/data/stream") {
        let path = entry.expect("dir entry").path();
        let data = std::fs::read(&path).expect("read stream fixture");
        let Some((&first, stream)) = data.split_first() else {
            continue;
        };
        // The same driver as fuzz/fuzz_targets/stream_framing.rs.
        let mut framer = StreamFramer::new(MAX);
        'stream: for piece in stream.chunks(usize::from(first) + 1) {
            framer.push(piece);
            loop {
                match framer.next_frame() {
                    Ok(Some(Framed::Message(bytes))) => {
                        assert!(bytes.len() <= MAX, "{}: oversize frame", path.display());
                        let _ = parse(&bytes);
                    }
                    Ok(Some(Framed::Ping | Framed::Pong)) => {}
                    Ok(None) => break,
                    Err(_) => break 'stream,
                }
            }
            assert!(
                framer.buffered() <= MAX,
                "{}: framer buffers without bound",
                path.display()
            );
        }
        replayed += 1;
    }
    assert!(replayed > 0, "no stream fixtures found");
}
