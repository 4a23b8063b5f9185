//! Tests of the digest challenger and the client-side answer. Expected responses are computed
//! here with the md-5 and sha2 crates directly, or taken from the RFCs' published examples.

use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};

use super::*;
use crate::message::{parse, Message};

const REALM: &str = "tandem.example";
const LIFETIME: Duration = Duration::from_secs(300);
const REQUEST_URI: &str = "sip:tandem.example";

fn md5_hex(s: &str) -> String {
    format!("{:x}", Md5::digest(s.as_bytes()))
}

fn sha256_hex(s: &str) -> String {
    format!("{:x}", Sha256::digest(s.as_bytes()))
}

fn register(uri: &str, extra: &[(&str, &str)]) -> Request {
    let mut text = format!(
        "REGISTER {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:alice@tandem.example>\r\n\
         From: <sip:alice@tandem.example>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710\r\n\
         CSeq: 1 REGISTER\r\n"
    );
    for (name, value) in extra {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    match parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("expected a request"),
    }
}

/// The value of `name="..."` in a challenge, found without our own parser.
fn quoted_param(challenge: &str, name: &str) -> String {
    let start = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let len = challenge[start..].find('"').unwrap();
    challenge[start..start + len].to_owned()
}

fn passwords(user: &str) -> Option<String> {
    (user == "alice").then(|| "wonderland".to_owned())
}

struct Issued {
    nonce: String,
    opaque: String,
}

fn issue(challenger: &mut Challenger, now: Instant) -> Issued {
    let challenges = challenger.challenge(now, false);
    Issued {
        nonce: quoted_param(&challenges[0], "nonce"),
        opaque: quoted_param(&challenges[0], "opaque"),
    }
}

/// Credentials with qop=auth whose response is computed by `hash` over the RFC 7616 formula.
fn qop_credentials(
    hash: fn(&str) -> String,
    algorithm: &str,
    issued: &Issued,
    username: &str,
    password: &str,
    nc: &str,
) -> String {
    let cnonce = "0a4f113b";
    let ha1 = hash(&format!("{username}:{REALM}:{password}"));
    let ha2 = hash(&format!("REGISTER:{REQUEST_URI}"));
    let response = hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", issued.nonce));
    format!(
        "Digest username=\"{username}\", realm=\"{REALM}\", nonce=\"{}\", \
         uri=\"{REQUEST_URI}\", response=\"{response}\", algorithm={algorithm}, \
         qop=auth, nc={nc}, cnonce=\"{cnonce}\", opaque=\"{}\"",
        issued.nonce, issued.opaque
    )
}

fn md5_credentials(issued: &Issued, username: &str, password: &str, nc: &str) -> String {
    qop_credentials(md5_hex, "MD5", issued, username, password, nc)
}

fn verify(challenger: &mut Challenger, credentials: &str, now: Instant) -> Verdict {
    let request = register(REQUEST_URI, &[("Authorization", credentials)]);
    challenger.verify(&request, "Authorization", passwords, now)
}

fn authenticated(user: &str) -> Verdict {
    Verdict::Authenticated {
        username: user.to_owned(),
    }
}

#[test]
fn response_hash_matches_the_rfc_examples() {
    // RFC 2617 §3.5.
    assert_eq!(
        response_hash(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
        ),
        "6629fae49393a05397450978507c4ef1"
    );
    // RFC 7616 §3.9.1, both algorithms. The MD5 value printed in the RFC is wrong (erratum
    // 4897); this is the corrected one, which Python's hashlib agrees with.
    let rfc7616 = |algorithm| {
        response_hash(
            algorithm,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        )
    };
    assert_eq!(rfc7616(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
    assert_eq!(
        rfc7616(Algorithm::Sha256),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn challenge_offers_sha256_then_md5_with_qop_auth() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let challenges = challenger.challenge(start, false);
    assert_eq!(challenges.len(), 2);
    assert!(challenges[0].starts_with("Digest "));
    assert!(challenges[0].contains("algorithm=SHA-256"));
    assert!(challenges[1].contains("algorithm=MD5"));
    for c in &challenges {
        assert!(c.contains(&format!("realm=\"{REALM}\"")), "{c}");
        assert!(c.contains("qop=\"auth\""), "{c}");
        assert!(!c.contains("stale"), "{c}");
        assert!(!quoted_param(c, "nonce").is_empty());
        assert!(!quoted_param(c, "opaque").is_empty());
    }
    let stale = challenger.challenge(start, true);
    assert!(stale.iter().all(|c| c.contains("stale=true")));
    // Every challenge carries a fresh nonce.
    assert_ne!(
        quoted_param(&challenges[0], "nonce"),
        quoted_param(&stale[0], "nonce")
    );
}

#[test]
fn md5_credentials_computed_by_hand_are_accepted() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let issued = issue(&mut challenger, start);
    let credentials = md5_credentials(&issued, "alice", "wonderland", "00000001");
    assert_eq!(
        verify(
            &mut challenger,
            &credentials,
            start + Duration::from_secs(1)
        ),
        authenticated("alice")
    );
}

#[test]
fn sha256_credentials_computed_by_hand_are_accepted() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let issued = issue(&mut challenger, start);
    let credentials = qop_credentials(
        sha256_hex,
        "SHA-256",
        &issued,
        "alice",
        "wonderland",
        "00000001",
    );
    assert_eq!(
        verify(&mut challenger, &credentials, start),
        authenticated("alice")
    );
    // The same response hashed with MD5 but labelled SHA-256 must fail.
    let issued = issue(&mut challenger, start);
    let mislabelled = md5_credentials(&issued, "alice", "wonderland", "00000001")
        .replace("algorithm=MD5", "algorithm=SHA-256");
    assert_eq!(
        verify(&mut challenger, &mislabelled, start),
        Verdict::Rejected(RejectReason::BadCredentials)
    );
}

#[test]
fn client_authorization_matches_the_hand_computed_response() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let challenges = challenger.challenge(start, false);
    let nonce = quoted_param(&challenges[0], "nonce");
    let uri = Uri::parse(REQUEST_URI).unwrap();
    // Both challenges share one nonce, so the second answer needs a higher nonce count.
    for (challenge, hash, nc) in [
        (&challenges[0], sha256_hex as fn(&str) -> String, 7),
        (&challenges[1], md5_hex, 0x1a),
    ] {
        let value = authorization(
            challenge,
            &Method::Register,
            &uri,
            "alice",
            "wonderland",
            "c0ffee",
            nc,
        )
        .unwrap();
        let nc_text = format!("{nc:08x}");
        let ha1 = hash(&format!("alice:{REALM}:wonderland"));
        let ha2 = hash(&format!("REGISTER:{REQUEST_URI}"));
        let expected = hash(&format!("{ha1}:{nonce}:{nc_text}:c0ffee:auth:{ha2}"));
        assert_eq!(quoted_param(&value, "response"), expected, "{value}");
        assert!(value.contains(&format!("nc={nc_text}")), "{value}");
        assert!(value.contains("qop=auth"), "{value}");
        assert_eq!(
            quoted_param(&value, "opaque"),
            quoted_param(challenge, "opaque")
        );
        assert_eq!(
            verify(&mut challenger, &value, start),
            authenticated("alice")
        );
    }
}

#[test]
fn rfc2069_credentials_without_qop_work_once() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let issued = issue(&mut challenger, start);
    let ha1 = md5_hex(&format!("alice:{REALM}:wonderland"));
    let ha2 = md5_hex(&format!("REGISTER:{REQUEST_URI}"));
    let response = md5_hex(&format!("{ha1}:{}:{ha2}", issued.nonce));
    let credentials = format!(
        "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{}\", uri=\"{REQUEST_URI}\", \
         response=\"{response}\"",
        issued.nonce
    );
    assert_eq!(
        verify(&mut challenger, &credentials, start),
        authenticated("alice")
    );
    assert_eq!(
        verify(&mut challenger, &credentials, start),
        Verdict::Rejected(RejectReason::Replayed)
    );
}

#[test]
fn client_answers_a_qopless_challenge_the_rfc2069_way() {
    let uri = Uri::parse(REQUEST_URI).unwrap();
    let value = authorization(
        "Digest realm=\"r\", nonce=\"abc\"",
        &Method::Invite,
        &uri,
        "bob",
        "pw",
        "unused",
        1,
    )
    .unwrap();
    let ha1 = md5_hex("bob:r:pw");
    let ha2 = md5_hex(&format!("INVITE:{REQUEST_URI}"));
    assert_eq!(
        quoted_param(&value, "response"),
        md5_hex(&format!("{ha1}:abc:{ha2}"))
    );
    assert!(!value.contains("qop"));
    assert!(!value.contains("cnonce"));
}

#[test]
fn expired_nonce_with_the_right_password_is_stale() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let issued = issue(&mut challenger, start);
    let later = start + LIFETIME + Duration::from_secs(1);
    let good = md5_credentials(&issued, "alice", "wonderland", "00000001");
    assert_eq!(verify(&mut challenger, &good, later), Verdict::Stale);
    // A wrong password is not stale: it is rejected.
    let bad = md5_credentials(&issued, "alice", "guess", "00000001");
    assert_eq!(
        verify(&mut challenger, &bad, later),
        Verdict::Rejected(RejectReason::BadCredentials)
    );
    // Just within the lifetime it is still accepted.
    let issued = issue(&mut challenger, later);
    let good = md5_credentials(&issued, "alice", "wonderland", "00000001");
    assert_eq!(
        verify(&mut challenger, &good, later + LIFETIME),
        authenticated("alice")
    );
}

#[test]
fn nonce_counts_must_increase() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let issued = issue(&mut challenger, start);
    let first = md5_credentials(&issued, "alice", "wonderland", "00000001");
    assert_eq!(
        verify(&mut challenger, &first, start),
        authenticated("alice")
    );
    assert_eq!(
        verify(&mut challenger, &first, start),
        Verdict::Rejected(RejectReason::Replayed)
    );
    let third = md5_credentials(&issued, "alice", "wonderland", "00000003");
    assert_eq!(
        verify(&mut challenger, &third, start),
        authenticated("alice")
    );
    let second = md5_credentials(&issued, "alice", "wonderland", "00000002");
    assert_eq!(
        verify(&mut challenger, &second, start),
        Verdict::Rejected(RejectReason::Replayed)
    );
    assert_eq!(challenger.tracked_nonces(), 1);
}

#[test]
fn unknown_user_and_wrong_password_are_indistinguishable() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let issued = issue(&mut challenger, start);
    let wrong_password = md5_credentials(&issued, "alice", "guess", "00000001");
    let unknown_user = md5_credentials(&issued, "mallory", "guess", "00000001");
    let a = verify(&mut challenger, &wrong_password, start);
    let b = verify(&mut challenger, &unknown_user, start);
    assert_eq!(a, Verdict::Rejected(RejectReason::BadCredentials));
    assert_eq!(a, b);
    // Failed attempts do not consume the nonce: the right password still works.
    let good = md5_credentials(&issued, "alice", "wonderland", "00000001");
    assert_eq!(
        verify(&mut challenger, &good, start),
        authenticated("alice")
    );
}

#[test]
fn requests_without_credentials_for_our_realm_are_missing() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let none = register(REQUEST_URI, &[]);
    assert_eq!(
        challenger.verify(&none, "Authorization", passwords, start),
        Verdict::Missing
    );
    let other_realm = register(
        REQUEST_URI,
        &[(
            "Authorization",
            "Digest username=\"alice\", realm=\"elsewhere\", nonce=\"x\", uri=\"sip:x\", \
             response=\"00\"",
        )],
    );
    assert_eq!(
        challenger.verify(&other_realm, "Authorization", passwords, start),
        Verdict::Missing
    );
    let basic = register(REQUEST_URI, &[("Authorization", "Basic YWxpY2U6eA==")]);
    assert_eq!(
        challenger.verify(&basic, "Authorization", passwords, start),
        Verdict::Missing
    );
    // Credentials in the other header do not count.
    let issued = issue(&mut challenger, start);
    let good = md5_credentials(&issued, "alice", "wonderland", "00000001");
    let proxy = register(REQUEST_URI, &[("Proxy-Authorization", good.as_str())]);
    assert_eq!(
        challenger.verify(&proxy, "Authorization", passwords, start),
        Verdict::Missing
    );
    assert_eq!(
        challenger.verify(&proxy, "Proxy-Authorization", passwords, start),
        authenticated("alice")
    );
}

#[test]
fn credentials_for_our_realm_are_found_among_others() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let issued = issue(&mut challenger, start);
    let good = md5_credentials(&issued, "alice", "wonderland", "00000001");
    let request = register(
        REQUEST_URI,
        &[
            (
                "Authorization",
                "Digest username=\"a\", realm=\"elsewhere\", nonce=\"x\", uri=\"sip:x\", \
                 response=\"00\"",
            ),
            ("Authorization", good.as_str()),
        ],
    );
    assert_eq!(
        challenger.verify(&request, "Authorization", passwords, start),
        authenticated("alice")
    );
}

#[test]
fn tampered_or_mismatched_credentials_are_rejected() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let issued = issue(&mut challenger, start);
    let good = md5_credentials(&issued, "alice", "wonderland", "00000001");
    let foreign = Challenger::new(REALM, LIFETIME, start).challenge(start, false);
    let foreign_nonce = quoted_param(&foreign[0], "nonce");
    let cases = [
        (
            good.replace(&issued.nonce, &foreign_nonce),
            RejectReason::UnknownNonce,
        ),
        (
            good.replace(&issued.opaque, "0000"),
            RejectReason::OpaqueMismatch,
        ),
        (
            good.replace("algorithm=MD5", "algorithm=SHA-512-256"),
            RejectReason::UnsupportedAlgorithm,
        ),
        (
            good.replace("qop=auth", "qop=auth-int"),
            RejectReason::UnsupportedQop,
        ),
        (good.replace(", nc=00000001", ""), RejectReason::Malformed),
        (
            good.replace("nc=00000001", "nc=0000000001"),
            RejectReason::Malformed,
        ),
        (
            good.replace("username=\"alice\", ", ""),
            RejectReason::Malformed,
        ),
        (format!("{good}, userhash=true"), RejectReason::Malformed),
    ];
    for (credentials, reason) in cases {
        assert_eq!(
            verify(&mut challenger, &credentials, start),
            Verdict::Rejected(reason),
            "{credentials}"
        );
    }
    // The same credentials sent to another Request-URI.
    let elsewhere = register("sip:other.example", &[("Authorization", good.as_str())]);
    assert_eq!(
        challenger.verify(&elsewhere, "Authorization", passwords, start),
        Verdict::Rejected(RejectReason::UriMismatch)
    );
    // An unparseable header cannot be ignored silently.
    let garbage = register(REQUEST_URI, &[("Authorization", "Digest realm=\"x")]);
    assert_eq!(
        challenger.verify(&garbage, "Authorization", passwords, start),
        Verdict::Rejected(RejectReason::Malformed)
    );
    // None of the failures consumed the nonce.
    assert_eq!(
        verify(&mut challenger, &good, start),
        authenticated("alice")
    );
}

#[test]
fn upper_case_response_hex_is_accepted() {
    let start = Instant::now();
    let mut challenger = Challenger::new(REALM, LIFETIME, start);
    let issued = issue(&mut challenger, start);
    let good = md5_credentials(&issued, "alice", "wonderland", "00000001");
    let response = quoted_param(&good, "response");
    let upper = good.replace(&response, &response.to_ascii_uppercase());
    assert_eq!(
        verify(&mut challenger, &upper, start),
        authenticated("alice")
    );
}

#[test]
fn client_refuses_challenges_it_cannot_answer() {
    let uri = Uri::parse(REQUEST_URI).unwrap();
    let answer =
        |challenge: &str| authorization(challenge, &Method::Register, &uri, "a", "b", "c", 1);
    assert_eq!(answer("Basic realm=\"r\""), Err(AuthError::NotDigest));
    assert_eq!(
        answer("Digest realm=\"r\""),
        Err(AuthError::MissingParam("nonce"))
    );
    assert_eq!(
        answer("Digest nonce=\"n\""),
        Err(AuthError::MissingParam("realm"))
    );
    assert_eq!(
        answer("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256"),
        Err(AuthError::UnsupportedAlgorithm)
    );
    assert_eq!(
        answer("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""),
        Err(AuthError::UnsupportedQop)
    );
    assert!(matches!(
        answer("Digest realm=\"r"),
        Err(AuthError::Malformed(_))
    ));
    assert!(answer("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int,auth\"").is_ok());
}

#[test]
fn constant_time_eq_compares_exactly() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(constant_time_eq(b"", b""));
}
