//! Access-token verification against hand-built tokens: the good ones for each algorithm, and
//! the bad-token matrix of the presence-gateway issue, each refused with its own reason.
//! ES256 and EdDSA keys are the test-only PEM files in `tests/data/` (see its README).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::EncodingKey;
use presence::identity::IdentityError;
use presence::token::{
    mint, AccountSid, Algorithm, ApplicationSid, Config, Grants, Key, KeyError, KeySet, MintError,
    OutgoingGrant, TokenError, VoiceGrant,
};
use presence::Identity;
use serde_json::{json, Value};

const SECRET: &[u8] = b"an HS256 secret of at least thirty-two bytes";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const ES256_PRIVATE: &str = include_str!("data/es256_private.pem");
const ES256_PUBLIC: &str = include_str!("data/es256_public.pem");
const ES256_OTHER_PRIVATE: &str = include_str!("data/es256_other_private.pem");
const EDDSA_PRIVATE: &str = include_str!("data/eddsa_private.pem");
const EDDSA_PUBLIC: &str = include_str!("data/eddsa_public.pem");

/// A fixed wall-clock instant, so that every time in these tests is exact.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn keys() -> KeySet {
    KeySet::new(
        vec![
            Key::new("SKhs", Algorithm::Hs256, SECRET).unwrap(),
            Key::new("SKes", Algorithm::Es256, ES256_PUBLIC.as_bytes()).unwrap(),
            Key::new("SKed", Algorithm::EdDsa, EDDSA_PUBLIC.as_bytes()).unwrap(),
        ],
        Config::default(),
    )
    .unwrap()
}

fn header(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "typ": "JWT", "kid": kid})
}

/// Well-formed claims for `kid`, valid for an hour from `now()`.
fn claims(kid: &str) -> Value {
    let now = seconds(now());
    json!({
        "jti": format!("{kid}-1"),
        "iss": kid,
        "sub": ACCOUNT,
        "iat": now,
        "exp": now + 3600,
        "grants": {"identity": "alice", "voice": {"incoming": {"allow": true}}}
    })
}

fn encode_segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Signs `header.claims` with `key` under `alg`, whatever the header says.
fn sign_with(
    header: &Value,
    claims: &Value,
    key: &EncodingKey,
    alg: jsonwebtoken::Algorithm,
) -> String {
    let message = format!("{}.{}", encode_segment(header), encode_segment(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

fn hs256(header: &Value, claims: &Value) -> String {
    sign_with(
        header,
        claims,
        &EncodingKey::from_secret(SECRET),
        jsonwebtoken::Algorithm::HS256,
    )
}

fn es256(header: &Value, claims: &Value, private_pem: &str) -> String {
    let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap();
    sign_with(header, claims, &key, jsonwebtoken::Algorithm::ES256)
}

fn eddsa(header: &Value, claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(EDDSA_PRIVATE.as_bytes()).unwrap();
    sign_with(header, claims, &key, jsonwebtoken::Algorithm::EdDSA)
}

/// The HS256 token of `claims("SKhs")` after `change` edits its claims.
fn hs256_with(change: impl FnOnce(&mut Value)) -> String {
    let mut claims = claims("SKhs");
    change(&mut claims);
    hs256(&header("HS256", "SKhs"), &claims)
}

fn verify(token: &str) -> Result<presence::Claims, TokenError> {
    keys().verify(token, now())
}

#[test]
fn a_good_hs256_token_yields_its_claims() {
    let claims = verify(&hs256(&header("HS256", "SKhs"), &claims("SKhs"))).unwrap();
    assert_eq!(claims.identity().as_str(), "alice");
    assert_eq!(claims.key_id, "SKhs");
    assert_eq!(claims.token_id, "SKhs-1");
    assert_eq!(claims.account_sid.as_str(), ACCOUNT);
    assert!(claims.grants.voice.incoming);
    assert_eq!(claims.grants.voice.outgoing, None);
    assert_eq!(claims.expires_at, now() + Duration::from_secs(3600));
    assert_eq!(claims.issued_at, Some(now()));
    assert_eq!(claims.not_before, None);
}

#[test]
fn good_es256_and_eddsa_tokens_verify_with_their_public_keys() {
    let es = verify(&es256(
        &header("ES256", "SKes"),
        &claims("SKes"),
        ES256_PRIVATE,
    ))
    .unwrap();
    assert_eq!(es.key_id, "SKes");
    let ed = verify(&eddsa(&header("EdDSA", "SKed"), &claims("SKed"))).unwrap();
    assert_eq!(ed.key_id, "SKed");
    assert_eq!(ed.identity().as_str(), "alice");
}

#[test]
fn a_minted_token_verifies_and_carries_its_grants() {
    let keys = keys();
    let grants = Grants {
        identity: Identity::new("bob.smith@example.com").unwrap(),
        voice: VoiceGrant {
            incoming: false,
            outgoing: Some(OutgoingGrant {
                application_sid: ApplicationSid::parse("AP0123456789abcdef0123456789abcdef")
                    .unwrap(),
                params: [("team".to_owned(), "blue".to_owned())].into(),
            }),
        },
    };
    let account = AccountSid::parse(ACCOUNT).unwrap();
    let signing_key = &keys.keys()[0];
    let token = mint(
        signing_key,
        &grants,
        &account,
        Duration::from_secs(600),
        now(),
    )
    .unwrap();
    let claims = keys
        .verify(&token, now() + Duration::from_secs(599))
        .unwrap();
    assert_eq!(claims.grants, grants);
    assert_eq!(claims.expires_at, now() + Duration::from_secs(600));
    assert!(claims.token_id.starts_with("SKhs-"));
    // Ten minutes and the leeway later it has expired.
    assert_eq!(
        keys.verify(&token, now() + Duration::from_secs(610)),
        Err(TokenError::Expired)
    );
    // Two mints differ in jti.
    let again = mint(
        signing_key,
        &grants,
        &account,
        Duration::from_secs(600),
        now(),
    )
    .unwrap();
    assert_ne!(token, again);
}

#[test]
fn mint_refuses_long_lifetimes_and_public_keys() {
    let keys = keys();
    let grants = Grants {
        identity: Identity::new("alice").unwrap(),
        voice: VoiceGrant::default(),
    };
    let account = AccountSid::parse(ACCOUNT).unwrap();
    let day = Duration::from_secs(24 * 3600);
    assert!(mint(&keys.keys()[0], &grants, &account, day, now()).is_ok());
    assert_eq!(
        mint(
            &keys.keys()[0],
            &grants,
            &account,
            day + Duration::from_secs(1),
            now()
        ),
        Err(MintError::TimeToLive)
    );
    assert_eq!(
        mint(&keys.keys()[0], &grants, &account, Duration::ZERO, now()),
        Err(MintError::TimeToLive)
    );
    assert_eq!(
        mint(&keys.keys()[1], &grants, &account, day, now()),
        Err(MintError::CannotSign {
            algorithm: Algorithm::Es256
        })
    );
}

#[test]
fn a_wrong_signature_is_refused() {
    let other = EncodingKey::from_secret(b"another HS256 secret, also thirty-two bytes long");
    let token = sign_with(
        &header("HS256", "SKhs"),
        &claims("SKhs"),
        &other,
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(verify(&token), Err(TokenError::BadSignature));

    // Claims changed after signing.
    let good = hs256(&header("HS256", "SKhs"), &claims("SKhs"));
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut forged_claims = claims("SKhs");
    forged_claims["grants"]["identity"] = json!("mallory");
    let forged = encode_segment(&forged_claims);
    parts[1] = &forged;
    assert_eq!(verify(&parts.join(".")), Err(TokenError::BadSignature));

    // An ES256 token signed by another P-256 key, and an empty signature.
    let es = es256(
        &header("ES256", "SKes"),
        &claims("SKes"),
        ES256_OTHER_PRIVATE,
    );
    assert_eq!(verify(&es), Err(TokenError::BadSignature));
    let unsigned = format!("{}.", good.rsplit_once('.').unwrap().0);
    assert_eq!(verify(&unsigned), Err(TokenError::BadSignature));
}

#[test]
fn alg_none_is_refused() {
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            encode_segment(&header(alg, "SKhs")),
            encode_segment(&claims("SKhs"))
        );
        assert_eq!(
            verify(&token),
            Err(TokenError::AlgorithmNotAllowed),
            "{alg}"
        );
    }
}

#[test]
fn other_algorithms_are_refused() {
    for alg in ["HS384", "HS512", "RS256", "PS256", "ES384", "hs256", ""] {
        let token = hs256(&header(alg, "SKhs"), &claims("SKhs"));
        assert_eq!(
            verify(&token),
            Err(TokenError::AlgorithmNotAllowed),
            "{alg}"
        );
    }
}

#[test]
fn hs256_signed_with_the_es256_public_key_is_refused() {
    // The classic confusion: the attacker knows the public key, uses its PEM as an HMAC secret
    // and claims HS256 under the ES256 key's kid.
    let public_as_secret = EncodingKey::from_secret(ES256_PUBLIC.as_bytes());
    let token = sign_with(
        &header("HS256", "SKes"),
        &claims("SKes"),
        &public_as_secret,
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(verify(&token), Err(TokenError::AlgorithmMismatch));
    // Same with the EdDSA key.
    let public_as_secret = EncodingKey::from_secret(EDDSA_PUBLIC.as_bytes());
    let token = sign_with(
        &header("HS256", "SKed"),
        &claims("SKed"),
        &public_as_secret,
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(verify(&token), Err(TokenError::AlgorithmMismatch));
    // And the other way round: a valid EdDSA signature under the ES256 kid.
    let token = eddsa(&header("EdDSA", "SKes"), &claims("SKes"));
    assert_eq!(verify(&token), Err(TokenError::AlgorithmMismatch));
}

#[test]
fn an_unknown_or_missing_kid_is_refused() {
    let token = hs256(&header("HS256", "SKnope"), &claims("SKnope"));
    assert_eq!(verify(&token), Err(TokenError::UnknownKey));
    let token = hs256(&json!({"alg": "HS256", "typ": "JWT"}), &claims("SKhs"));
    assert_eq!(verify(&token), Err(TokenError::MissingKeyId));
}

#[test]
fn expiry_is_enforced_with_the_leeway() {
    let at = |exp: u64| hs256_with(|claims| claims["exp"] = json!(exp));
    let start = seconds(now());
    assert_eq!(verify(&at(start - 3600)), Err(TokenError::Expired));
    assert_eq!(verify(&at(start - 10)), Err(TokenError::Expired));
    assert!(verify(&at(start - 9)).is_ok(), "inside the 10 s leeway");
    let strict = KeySet::new(
        vec![Key::new("SKhs", Algorithm::Hs256, SECRET).unwrap()],
        Config {
            leeway: Duration::ZERO,
            ..Config::default()
        },
    )
    .unwrap();
    assert_eq!(strict.verify(&at(start), now()), Err(TokenError::Expired));
    assert!(strict.verify(&at(start + 1), now()).is_ok());
}

#[test]
fn exp_is_required_and_must_be_a_number() {
    let missing = hs256_with(|claims| {
        claims.as_object_mut().unwrap().remove("exp");
    });
    assert_eq!(verify(&missing), Err(TokenError::MissingClaim("exp")));
    let null = hs256_with(|claims| claims["exp"] = Value::Null);
    assert_eq!(verify(&null), Err(TokenError::MissingClaim("exp")));
    let exp = seconds(now()) + 3600;
    let string = hs256_with(|claims| claims["exp"] = json!(exp.to_string()));
    assert!(matches!(
        verify(&string),
        Err(TokenError::InvalidClaim { claim: "exp", .. })
    ));
    // RFC 7519 §2 allows a fractional NumericDate.
    let fractional = hs256_with(|claims| claims["exp"] = json!(exp as f64 + 0.5));
    assert!(verify(&fractional).is_ok());
    let string_nbf = hs256_with(|claims| claims["nbf"] = json!("0"));
    assert!(matches!(
        verify(&string_nbf),
        Err(TokenError::InvalidClaim { claim: "nbf", .. })
    ));
}

#[test]
fn a_future_nbf_is_refused() {
    let start = seconds(now());
    let with_nbf = |nbf: u64| {
        hs256_with(|claims| {
            claims["nbf"] = json!(nbf);
        })
    };
    assert_eq!(verify(&with_nbf(start + 60)), Err(TokenError::NotYetValid));
    assert_eq!(verify(&with_nbf(start + 11)), Err(TokenError::NotYetValid));
    assert!(verify(&with_nbf(start + 10)).is_ok(), "inside the leeway");
    let claims = verify(&with_nbf(start - 5)).unwrap();
    assert_eq!(claims.not_before, Some(now() - Duration::from_secs(5)));
}

#[test]
fn a_lifetime_over_24_hours_is_refused() {
    let start = seconds(now());
    let day = 24 * 3600;
    let from_iat = hs256_with(|claims| {
        claims["iat"] = json!(start - 60);
        claims["exp"] = json!(start - 60 + day + 1);
    });
    assert_eq!(verify(&from_iat), Err(TokenError::LifetimeTooLong));
    let exactly_a_day = hs256_with(|claims| {
        claims["iat"] = json!(start - 60);
        claims["exp"] = json!(start - 60 + day);
    });
    assert!(verify(&exactly_a_day).is_ok());
    // nbf, when present, is the start of the lifetime.
    let from_nbf = hs256_with(|claims| {
        claims["iat"] = json!(start - 7200);
        claims["nbf"] = json!(start);
        claims["exp"] = json!(start + day + 1);
    });
    assert_eq!(verify(&from_nbf), Err(TokenError::LifetimeTooLong));
    // Without nbf or iat, exp itself may not lie more than a day ahead.
    let open_start = hs256_with(|claims| {
        claims.as_object_mut().unwrap().remove("iat");
        claims["exp"] = json!(start + day + 3600);
    });
    assert_eq!(verify(&open_start), Err(TokenError::LifetimeTooLong));
    // Nor with a start in the future.
    let future_iat = hs256_with(|claims| {
        claims["iat"] = json!(start + 5 * day);
        claims["exp"] = json!(start + 5 * day + 3600);
    });
    assert_eq!(verify(&future_iat), Err(TokenError::LifetimeTooLong));
}

#[test]
fn malformed_segments_are_refused() {
    let good = hs256(&header("HS256", "SKhs"), &claims("SKhs"));
    let (head, rest) = good.split_once('.').unwrap();
    let (body, signature) = rest.split_once('.').unwrap();
    let cases: Vec<(String, TokenError)> = vec![
        (String::new(), TokenError::Malformed),
        (".".into(), TokenError::Malformed),
        ("..".into(), TokenError::Malformed),
        (format!("{head}.{body}"), TokenError::Malformed),
        (
            format!("{head}.{body}.{signature}.x"),
            TokenError::Malformed,
        ),
        (format!(".{body}.{signature}"), TokenError::Malformed),
        (format!("{head}..{signature}"), TokenError::Malformed),
        (format!("{head}=.{body}.{signature}"), TokenError::Malformed),
        (format!("{head}.{body}.{signature}="), TokenError::Malformed),
        (format!("{head} .{body}.{signature}"), TokenError::Malformed),
        (
            format!("{head}.{body}+/.{signature}"),
            TokenError::Malformed,
        ),
        (format!("Bearer {good}"), TokenError::Malformed),
        // base64url that is not JSON, or not an object.
        (
            format!("bm90IGpzb24.{body}.{signature}"),
            TokenError::MalformedHeader,
        ),
        (
            format!("{}.{body}.{signature}", URL_SAFE_NO_PAD.encode("[1,2]")),
            TokenError::MalformedHeader,
        ),
        // A single base64 character cannot decode.
        (format!("A.{body}.{signature}"), TokenError::MalformedHeader),
        (
            format!(
                "{}.{body}.{signature}",
                encode_segment(&json!({"typ": "JWT", "kid": "SKhs"}))
            ),
            TokenError::MalformedHeader,
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(verify(&token), Err(expected), "{token:?}");
    }
    // A signature of the wrong shape for ES256 is a bad signature, not a crash.
    let es = es256(&header("ES256", "SKes"), &claims("SKes"), ES256_PRIVATE);
    let truncated = &es[..es.len() - 8];
    assert_eq!(verify(truncated), Err(TokenError::BadSignature));
    // Signed claims that are not a JSON object.
    let message = format!(
        "{}.{}",
        encode_segment(&header("HS256", "SKhs")),
        URL_SAFE_NO_PAD.encode("\"x\"")
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        verify(&format!("{message}.{signature}")),
        Err(TokenError::MalformedClaims)
    );
}

#[test]
fn a_100_kib_token_is_refused_before_parsing() {
    let huge = "a".repeat(100 * 1024);
    assert_eq!(verify(&huge), Err(TokenError::TooLarge));
    // Even a well-signed one: the bound comes first.
    let padded = hs256_with(|claims| claims["padding"] = json!("x".repeat(100 * 1024)));
    assert_eq!(verify(&padded), Err(TokenError::TooLarge));
    let just_fits = hs256_with(|claims| claims["padding"] = json!("x".repeat(4096)));
    assert!(just_fits.len() < 8 * 1024);
    assert!(verify(&just_fits).is_ok());
}

#[test]
fn forbidden_identity_characters_are_refused() {
    for (identity, expected) in [
        ("alice smith", IdentityError::ForbiddenCharacter),
        ("alice\u{7}", IdentityError::ForbiddenCharacter),
        ("client:alice", IdentityError::ForbiddenCharacter),
        ("../alice", IdentityError::ForbiddenCharacter),
        ("", IdentityError::Empty),
    ] {
        let token = hs256_with(|claims| claims["grants"]["identity"] = json!(identity));
        assert_eq!(
            verify(&token),
            Err(TokenError::Identity(expected)),
            "{identity:?}"
        );
    }
    let long = "a".repeat(122);
    let token = hs256_with(|claims| claims["grants"]["identity"] = json!(long));
    assert_eq!(
        verify(&token),
        Err(TokenError::Identity(IdentityError::TooLong))
    );
    let token = hs256_with(|claims| {
        claims["grants"].as_object_mut().unwrap().remove("identity");
    });
    assert_eq!(verify(&token), Err(TokenError::MissingIdentity));
}

#[test]
fn header_rules_typ_and_crit() {
    let token = hs256(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": "SKhs"}),
        &claims("SKhs"),
    );
    assert_eq!(verify(&token), Err(TokenError::NotJwt));
    let token = hs256(&json!({"alg": "HS256", "kid": "SKhs"}), &claims("SKhs"));
    assert!(verify(&token).is_ok(), "typ is optional");
    let token = hs256(
        &json!({"alg": "HS256", "typ": "JWT", "kid": "SKhs", "cty": "twilio-fpa;v=1"}),
        &claims("SKhs"),
    );
    assert!(verify(&token).is_ok(), "Twilio's cty is ignored");
    let token = hs256(
        &json!({"alg": "HS256", "typ": "JWT", "kid": "SKhs", "crit": ["exp"]}),
        &claims("SKhs"),
    );
    assert_eq!(verify(&token), Err(TokenError::CriticalHeader));
    // A key embedded in the header is never used.
    let token = hs256(
        &json!({"alg": "HS256", "typ": "JWT", "kid": "SKnope", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}),
        &claims("SKnope"),
    );
    assert_eq!(verify(&token), Err(TokenError::UnknownKey));
}

#[test]
fn issuer_subject_jti_and_audience_rules() {
    let token = hs256_with(|claims| claims["iss"] = json!("SKother"));
    assert_eq!(verify(&token), Err(TokenError::IssuerMismatch));
    let token = hs256_with(|claims| {
        claims.as_object_mut().unwrap().remove("iss");
    });
    assert_eq!(verify(&token), Err(TokenError::MissingClaim("iss")));
    let token = hs256_with(|claims| claims["sub"] = json!("alice"));
    assert!(matches!(
        verify(&token),
        Err(TokenError::InvalidClaim { claim: "sub", .. })
    ));
    let token = hs256_with(|claims| {
        claims.as_object_mut().unwrap().remove("jti");
    });
    assert_eq!(verify(&token), Err(TokenError::MissingClaim("jti")));
    let token = hs256_with(|claims| claims["aud"] = json!("someone"));
    assert_eq!(verify(&token), Err(TokenError::Audience));

    let token = hs256(&header("HS256", "SKhs"), &claims("SKhs"));
    let for_account = |sid: &str| {
        KeySet::new(
            vec![Key::new("SKhs", Algorithm::Hs256, SECRET).unwrap()],
            Config {
                account_sid: AccountSid::parse(sid),
                ..Config::default()
            },
        )
        .unwrap()
    };
    assert!(for_account(ACCOUNT).verify(&token, now()).is_ok());
    assert_eq!(
        for_account("AC00000000000000000000000000000000").verify(&token, now()),
        Err(TokenError::WrongAccount)
    );
}

#[test]
fn every_reason_is_a_short_close_reason_without_secrets() {
    let reasons = [
        TokenError::TooLarge,
        TokenError::Malformed,
        TokenError::MalformedHeader,
        TokenError::AlgorithmNotAllowed,
        TokenError::NotJwt,
        TokenError::CriticalHeader,
        TokenError::MissingKeyId,
        TokenError::UnknownKey,
        TokenError::AlgorithmMismatch,
        TokenError::BadSignature,
        TokenError::MalformedClaims,
        TokenError::MissingClaim("exp"),
        TokenError::InvalidClaim {
            claim: "grants.voice.outgoing.application_sid",
            expected: "1 to 64 letters and digits",
        },
        TokenError::IssuerMismatch,
        TokenError::WrongAccount,
        TokenError::Audience,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::LifetimeTooLong,
        TokenError::MissingIdentity,
        TokenError::Identity(IdentityError::ForbiddenCharacter),
    ];
    for reason in reasons {
        let text = reason.to_string();
        // RFC 6455 §5.5: a close frame's payload is at most 125 bytes, 2 of them the code.
        assert!(!text.is_empty() && text.len() <= 120, "{text}");
        assert!(!text.contains("thirty-two"), "{text}");
    }
}

#[test]
fn keys_are_checked_when_configured() {
    assert_eq!(
        Key::new("SKhs", Algorithm::Hs256, b"short").unwrap_err(),
        KeyError::ShortSecret { length: 5 }
    );
    assert_eq!(
        Key::new("", Algorithm::Hs256, SECRET).unwrap_err(),
        KeyError::InvalidId
    );
    assert_eq!(
        Key::new("SK hs", Algorithm::Hs256, SECRET).unwrap_err(),
        KeyError::InvalidId
    );
    // A private key, the other algorithm's key, and garbage are not ES256 public keys.
    for material in [
        ES256_PRIVATE,
        EDDSA_PUBLIC,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "not a pem",
    ] {
        assert_eq!(
            Key::new("SKes", Algorithm::Es256, material.as_bytes()).unwrap_err(),
            KeyError::InvalidPublicKey {
                algorithm: Algorithm::Es256
            },
            "{material}"
        );
    }
    for material in [EDDSA_PRIVATE, ES256_PUBLIC, "not a pem"] {
        assert_eq!(
            Key::new("SKed", Algorithm::EdDsa, material.as_bytes()).unwrap_err(),
            KeyError::InvalidPublicKey {
                algorithm: Algorithm::EdDsa
            },
            "{material}"
        );
    }
    let duplicate = KeySet::new(
        vec![
            Key::new("SKhs", Algorithm::Hs256, SECRET).unwrap(),
            Key::new("SKhs", Algorithm::Es256, ES256_PUBLIC.as_bytes()).unwrap(),
        ],
        Config::default(),
    );
    assert_eq!(
        duplicate.unwrap_err(),
        KeyError::DuplicateId { id: "SKhs".into() }
    );
    let too_long = KeySet::new(
        Vec::new(),
        Config {
            max_token_lifetime: Duration::from_secs(24 * 3600 + 1),
            ..Config::default()
        },
    );
    assert_eq!(too_long.unwrap_err(), KeyError::LifetimeOverLimit);
    // Debug output never shows the secret.
    let debug = format!("{:?}", keys());
    assert!(
        !debug.contains("thirty-two") && debug.contains("redacted"),
        "{debug}"
    );
}
