//! Why a token, a key or a mint request was refused.
//!
//! [`TokenError`] is the peer's fault: each variant displays as a short reason (under 120 bytes,
//! quoting nothing from the token) that the gateway puts in its 4001 close frame. [`KeyError`] is
//! the operator's (configuration), [`MintError`] the local caller's.

use crate::identity::IdentityError;
use crate::token::Algorithm;

/// Why a token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is longer than the configured bound; it was not parsed at all.
    #[error("token too large")]
    TooLarge,
    /// Not three base64url segments separated by dots.
    #[error("token malformed")]
    Malformed,
    /// The header is not base64url-encoded JSON with a string `alg`.
    #[error("token header malformed")]
    MalformedHeader,
    /// `alg` is none of HS256, ES256, EdDSA (`none` included).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// `typ` is present and not `JWT`.
    #[error("token type is not JWT")]
    NotJwt,
    /// The header has `crit`: we implement no JWS extension (RFC 7515 §4.1.11).
    #[error("unsupported critical header")]
    CriticalHeader,
    /// The header has no `kid`.
    #[error("token has no kid")]
    MissingKeyId,
    /// No configured key has the token's `kid`.
    #[error("unknown key")]
    UnknownKey,
    /// `alg` is not the one algorithm configured for the `kid`'s key.
    #[error("algorithm does not match the key")]
    AlgorithmMismatch,
    /// The signature does not verify with the key.
    #[error("invalid signature")]
    BadSignature,
    /// The claims are not base64url-encoded JSON object.
    #[error("token claims malformed")]
    MalformedClaims,
    /// A required claim is absent (or `null`).
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or shape (a string `exp`, a `sub` that is no account sid...).
    #[error("claim {claim} must be {expected}")]
    InvalidClaim {
        /// The claim's name, as in the token.
        claim: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `iss` differs from `kid`: the issuer is the key (PRODUCT.md, "Access tokens").
    #[error("iss does not match kid")]
    IssuerMismatch,
    /// `sub` is not the configured account.
    #[error("token is for another account")]
    WrongAccount,
    /// The token names an audience, and we are none (RFC 7519 §4.1.3).
    #[error("token has an audience")]
    Audience,
    /// `exp` has passed (with the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still ahead (with the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp` − `nbf` (or − `iat`), or `exp` − now, exceeds the maximum lifetime (24 h).
    #[error("token lifetime over the maximum")]
    LifetimeTooLong,
    /// The grants carry no identity.
    #[error("token grants no identity")]
    MissingIdentity,
    /// The granted identity breaks the identity rules.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Why a verification key or key set could not be built (configuration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key id is empty, longer than 255 bytes or not visible ASCII.
    #[error("a key id must be 1 to 255 visible ASCII characters")]
    InvalidId,
    /// An HS256 secret shorter than 32 bytes (RFC 7518 §3.2).
    #[error("HS256 secret is {length} bytes; at least 32 are required")]
    ShortSecret {
        /// The secret's length in bytes.
        length: usize,
    },
    /// The material is not a PEM public key usable with the algorithm.
    #[error("not a PEM public key for {algorithm}")]
    InvalidPublicKey {
        /// The key's configured algorithm.
        algorithm: Algorithm,
    },
    /// Two keys share an id.
    #[error("key id {id} is configured twice")]
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// The configured maximum lifetime exceeds 24 h, the contract's limit.
    #[error("the maximum token lifetime cannot exceed 24 h")]
    LifetimeOverLimit,
}

/// Why a token could not be minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// Only HS256 keys hold what signing needs; ES256 and EdDSA keys here are public keys.
    #[error("key {algorithm} cannot sign: only HS256 keys can mint tokens")]
    CannotSign {
        /// The key's algorithm.
        algorithm: Algorithm,
    },
    /// The time to live is zero or over 24 h.
    #[error("token time to live must be between 1 s and 24 h")]
    TimeToLive,
    /// The signer failed (not expected with a valid HS256 key).
    #[error("signing failed")]
    Signing,
}
