//! Access tokens: JWTs (RFC 7519) in JWS compact form (RFC 7515) shaped like Twilio's
//! AccessToken (PRODUCT.md, "Access tokens").
//!
//! Verification ([`KeySet::verify`]) parses the compact form itself, so that every refusal has a
//! precise reason, and leaves the cryptography (HMAC-SHA256, ECDSA P-256, Ed25519 and PEM key
//! parsing) to `jsonwebtoken`. Its rules, in order:
//! 1. The token is at most [`Config::max_token_bytes`] long (8 KiB), checked before any parsing.
//! 2. Three base64url segments (RFC 7515 §7.1; no padding, no other characters).
//! 3. Header: JSON with `alg` one of HS256, ES256, EdDSA (`none` and every other algorithm are
//!    refused); `typ`, if present, is `JWT`; no `crit` (RFC 7515 §4.1.11: we understand no
//!    extension); a `kid` that names a configured key; and `alg` equal to the algorithm
//!    configured for that key. The key is chosen by `kid` alone, never by `alg`, so an HS256
//!    token "signed" with an ES256 key's public PEM as the HMAC secret is refused.
//! 4. The signature verifies.
//! 5. Claims: `exp` required; `exp`, `nbf`, `iat` are JSON numbers (RFC 7519 §2 NumericDate, a
//!    string is refused); `iss` equals `kid`; `sub` is an account sid (and the configured one, if
//!    any); `jti` is a string; no `aud` (RFC 7519 §4.1.3: we are no audience).
//! 6. Time, with [`Config::leeway`] (10 s) for clock skew: refused when now ≥ `exp` + leeway
//!    (RFC 7519 §4.1.4) or now + leeway < `nbf` (§4.1.5); refused when `exp` − `nbf` (or
//!    `exp` − `iat`) exceeds [`Config::max_token_lifetime`] (24 h), or when `exp` lies more than that
//!    (plus leeway) after now, which bounds tokens whose `nbf`/`iat` are absent or in the future.
//! 7. Grants typed: an identity that passes the identity rules ([`crate::identity`]), the voice
//!    grant's `incoming.allow` and `outgoing.{application_sid, params}`.

mod claims;
mod error;
mod mint;

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::Deserialize;
use serde_json::Value;

pub use claims::{AccountSid, ApplicationSid, Claims, Grants, OutgoingGrant, VoiceGrant};
pub use error::{KeyError, MintError, TokenError};
pub use mint::mint;

/// The longest lifetime the contract allows a token.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A signature algorithm a key may be configured for (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256 over a shared secret.
    Hs256,
    /// ECDSA on P-256 with SHA-256, verified with a public key.
    Es256,
    /// Ed25519, verified with a public key.
    EdDsa,
}

/// Verification settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Tolerated clock difference with the token's issuer (default 10 s).
    pub leeway: Duration,
    /// Longest accepted lifetime (default and maximum 24 h).
    pub max_token_lifetime: Duration,
    /// Longest accepted token in bytes (default 8 KiB); longer ones are not parsed.
    pub max_token_bytes: usize,
    /// When set, tokens must have this `sub`.
    pub account_sid: Option<AccountSid>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            leeway: Duration::from_secs(10),
            max_token_lifetime: MAX_LIFETIME,
            max_token_bytes: 8 * 1024,
            account_sid: None,
        }
    }
}

/// A verification key: an id (a token's `kid`), the one algorithm accepted with it, and its
/// material. The material is never printed.
#[derive(Clone)]
pub struct Key {
    id: String,
    algorithm: Algorithm,
    decoding: DecodingKey,
    /// Only HS256 keys can sign: for the others we hold a public key.
    encoding: Option<EncodingKey>,
}

/// The configured keys, looked up by `kid`, and the verification settings.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    by_id: HashMap<String, usize>,
    config: Config,
}

impl Algorithm {
    /// The name used in configuration and in a JWS header's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm a header's `alg` names, if it is one we accept. Case-sensitive (RFC 7515
    /// §4.1.1: the value is a case-sensitive string).
    pub fn from_header(alg: &str) -> Option<Algorithm> {
        match alg {
            "HS256" => Some(Algorithm::Hs256),
            "ES256" => Some(Algorithm::Es256),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Key {
    /// The shortest HS256 secret accepted: RFC 7518 §3.2 requires a key at least as long as the
    /// hash output (32 bytes for SHA-256).
    pub const MIN_SECRET_BYTES: usize = 32;

    /// A key for `algorithm`: for HS256 `material` is the secret; for ES256 and EdDSA it is a
    /// PEM public key (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo), checked here so that
    /// a bad key fails at start-up rather than at the first token.
    pub fn new(
        id: impl Into<String>,
        algorithm: Algorithm,
        material: &[u8],
    ) -> Result<Key, KeyError> {
        install_crypto_provider();
        let id = id.into();
        if id.is_empty() || id.len() > 255 || !id.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(KeyError::InvalidId);
        }
        let (decoding, encoding) = match algorithm {
            Algorithm::Hs256 => {
                if material.len() < Self::MIN_SECRET_BYTES {
                    return Err(KeyError::ShortSecret {
                        length: material.len(),
                    });
                }
                (
                    DecodingKey::from_secret(material),
                    Some(EncodingKey::from_secret(material)),
                )
            }
            Algorithm::Es256 | Algorithm::EdDsa => (public_key(algorithm, material)?, None),
        };
        Ok(Key {
            id,
            algorithm,
            decoding,
            encoding,
        })
    }

    /// The key id (`kid` and `iss` of its tokens).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The only algorithm accepted with this key.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether [`mint`] can sign with this key (HS256 only).
    pub fn can_sign(&self) -> bool {
        self.encoding.is_some()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Key")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .field("material", &"[redacted]")
            .finish()
    }
}

impl KeySet {
    /// The keys in configured order (the first is the one `tandem token` signs with).
    pub fn new(keys: Vec<Key>, config: Config) -> Result<KeySet, KeyError> {
        if config.max_token_lifetime > MAX_LIFETIME {
            return Err(KeyError::LifetimeOverLimit);
        }
        let mut by_id = HashMap::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            if by_id.insert(key.id.clone(), index).is_some() {
                return Err(KeyError::DuplicateId { id: key.id.clone() });
            }
        }
        Ok(KeySet {
            keys,
            by_id,
            config,
        })
    }

    /// The keys in configured order.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The key with this id.
    pub fn key(&self, id: &str) -> Option<&Key> {
        self.by_id.get(id).map(|&index| &self.keys[index])
    }

    /// The verification settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Verifies `token` at time `now` (see the module documentation for the rules).
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        if token.len() > self.config.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let (header_segment, claims_segment, signature_segment) = split(token)?;

        let header: RawHeader = decode_json(header_segment).ok_or(TokenError::MalformedHeader)?;
        let algorithm =
            Algorithm::from_header(&header.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
        if header
            .typ
            .as_deref()
            .is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT"))
        {
            return Err(TokenError::NotJwt);
        }
        if header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let key_id = header.kid.ok_or(TokenError::MissingKeyId)?;
        let key = self.key(&key_id).ok_or(TokenError::UnknownKey)?;
        if algorithm != key.algorithm {
            return Err(TokenError::AlgorithmMismatch);
        }

        // RFC 7515 §5.2: the signature covers the two encoded segments and the dot between.
        let signed = &token[..header_segment.len() + 1 + claims_segment.len()];
        if signature_segment.is_empty() {
            return Err(TokenError::BadSignature);
        }
        let verified = jsonwebtoken::crypto::verify(
            signature_segment,
            signed.as_bytes(),
            &key.decoding,
            algorithm.to_jsonwebtoken(),
        );
        if !matches!(verified, Ok(true)) {
            return Err(TokenError::BadSignature);
        }

        let raw: claims::RawClaims =
            decode_json(claims_segment).ok_or(TokenError::MalformedClaims)?;
        self.check_claims(raw, key, now)
    }

    fn check_claims(
        &self,
        raw: claims::RawClaims,
        key: &Key,
        now: SystemTime,
    ) -> Result<Claims, TokenError> {
        let expires = claims::numeric_date(
            raw.exp.as_ref().ok_or(TokenError::MissingClaim("exp"))?,
            "exp",
        )?;
        let not_before = raw
            .nbf
            .as_ref()
            .map(|value| claims::numeric_date(value, "nbf"))
            .transpose()?;
        let issued = raw
            .iat
            .as_ref()
            .map(|value| claims::numeric_date(value, "iat"))
            .transpose()?;

        if claims::string_claim(raw.iss.as_ref(), "iss")? != key.id {
            return Err(TokenError::IssuerMismatch);
        }
        let account_sid = AccountSid::parse(claims::string_claim(raw.sub.as_ref(), "sub")?).ok_or(
            TokenError::InvalidClaim {
                claim: "sub",
                expected: "an account sid (AC and 32 hex digits)",
            },
        )?;
        if let Some(expected) = &self.config.account_sid {
            if *expected != account_sid {
                return Err(TokenError::WrongAccount);
            }
        }
        let token_id = claims::string_claim(raw.jti.as_ref(), "jti")?;
        if token_id.is_empty() || token_id.len() > 256 {
            return Err(TokenError::InvalidClaim {
                claim: "jti",
                expected: "1 to 256 bytes",
            });
        }
        if raw.aud.is_some() {
            return Err(TokenError::Audience);
        }

        self.check_times(expires, not_before.or(issued), not_before, now)?;
        let grants = claims::grants(raw.grants)?;
        Ok(Claims {
            token_id: token_id.to_owned(),
            key_id: key.id.clone(),
            account_sid,
            grants,
            expires_at: claims::time_of(expires),
            not_before: not_before.map(claims::time_of),
            issued_at: issued.map(claims::time_of),
        })
    }

    fn check_times(
        &self,
        expires: u64,
        start: Option<u64>,
        not_before: Option<u64>,
        now: SystemTime,
    ) -> Result<(), TokenError> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(0);
        let leeway = self.config.leeway.as_secs();
        let max_lifetime = self.config.max_token_lifetime.as_secs();
        // RFC 7519 §4.1.4: the token MUST NOT be accepted on or after `exp`.
        if now >= expires.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        // RFC 7519 §4.1.5: the token MUST NOT be accepted before `nbf`.
        if not_before.is_some_and(|not_before| now.saturating_add(leeway) < not_before) {
            return Err(TokenError::NotYetValid);
        }
        let declared_too_long =
            start.is_some_and(|start| expires.saturating_sub(start) > max_lifetime);
        let remaining_too_long = expires.saturating_sub(now) > max_lifetime.saturating_add(leeway);
        if declared_too_long || remaining_too_long {
            return Err(TokenError::LifetimeTooLong);
        }
        Ok(())
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KeySet")
            .field("keys", &self.keys)
            .field("config", &self.config)
            .finish()
    }
}

/// The JOSE header fields we read; others (`cty`, `x5t`...) are ignored, and keys named in the
/// header (`jwk`, `jku`, `x5u`, `x5c`) are never used: only `kid` selects a configured key.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

/// Splits the compact form into its three segments, each of base64url characters only (the
/// signature may be empty, so that an unsigned `alg: none` token is refused for its algorithm).
fn split(token: &str) -> Result<(&str, &str, &str), TokenError> {
    let mut segments = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    if header.is_empty() || claims.is_empty() {
        return Err(TokenError::Malformed);
    }
    let is_base64url = |segment: &str| {
        segment
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    if !(is_base64url(header) && is_base64url(claims) && is_base64url(signature)) {
        return Err(TokenError::Malformed);
    }
    Ok((header, claims, signature))
}

/// Decodes a base64url segment holding a JSON object.
fn decode_json<T: for<'de> Deserialize<'de>>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    if bytes.first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// Reads a PEM public key for ES256 or EdDSA and checks it is usable.
fn public_key(algorithm: Algorithm, pem: &[u8]) -> Result<DecodingKey, KeyError> {
    let invalid = KeyError::InvalidPublicKey { algorithm };
    let key = match algorithm {
        Algorithm::Es256 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDsa => DecodingKey::from_ed_pem(pem),
        Algorithm::Hs256 => return Err(invalid),
    }
    .map_err(|_| invalid.clone())?;
    // An Ed25519 public key is 32 bytes (RFC 8032 §5.1.5). Checked before use: the Ed25519
    // verifier would panic on fewer. (P-256 points are checked by parsing them, below.)
    if algorithm == Algorithm::EdDsa
        && !matches!(key.try_get_as_bytes(), Ok(bytes) if bytes.len() == 32)
    {
        return Err(invalid);
    }
    // Building a verifier parses the point; a bad one fails here, not at the first token.
    match jsonwebtoken::crypto::verify("", b"probe", &key, algorithm.to_jsonwebtoken()) {
        Ok(_) => Ok(key),
        Err(_) => Err(invalid),
    }
}

/// Selects the RustCrypto provider explicitly, so that verification cannot panic for want of
/// a provider should another crate enable jsonwebtoken's `aws_lc_rs` feature too.
fn install_crypto_provider() {
    // An error only means a provider is installed already, which is what we want.
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_wants_three_base64url_segments() {
        assert_eq!(split("a.b.c"), Ok(("a", "b", "c")));
        assert_eq!(split("a-_.b.").map(|parts| parts.2), Ok(""));
        for bad in [
            "", "a", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.c=", "a.b/.c", "a.b.c\n",
        ] {
            assert_eq!(split(bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn algorithm_names_are_case_sensitive() {
        for algorithm in [Algorithm::Hs256, Algorithm::Es256, Algorithm::EdDsa] {
            assert_eq!(Algorithm::from_header(algorithm.as_str()), Some(algorithm));
        }
        for name in ["hs256", "EDDSA", "none", "HS384", "Ed25519"] {
            assert_eq!(Algorithm::from_header(name), None, "{name}");
        }
    }

    #[test]
    fn decode_json_wants_an_object() {
        let encode = |text: &str| URL_SAFE_NO_PAD.encode(text);
        let header: Option<RawHeader> = decode_json(&encode(r#"{"alg":"HS256","kid":"k"}"#));
        assert_eq!(header.map(|header| header.alg), Some("HS256".to_owned()));
        for bad in [
            r#"["alg"]"#,
            " {}",
            r#"{"alg":1}"#,
            r#"{"alg":"HS256","alg":"none"}"#,
        ] {
            assert!(decode_json::<RawHeader>(&encode(bad)).is_none(), "{bad}");
        }
    }
}
