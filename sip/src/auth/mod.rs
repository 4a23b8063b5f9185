//! Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760): the server side that challenges
//! and verifies credentials, and the client side that answers a challenge.
//!
//! The server offers SHA-256 and MD5 (RFC 8760 §2.4), always with `qop="auth"`. Nonces are
//! stateless HMAC tokens carrying their issue time (see the `nonce` submodule), so challenges
//! cost no memory; only nonces that authenticated someone are remembered, to refuse replays, and
//! that memory is bounded. Failures never tell the peer whether a user exists: an unknown user
//! and a wrong password take the same path, hash the same amount of data and give the same
//! [`Verdict`].

mod nonce;
mod params;

use std::time::{Duration, Instant};

use md5::Md5;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::message::{Method, Request, Uri};
use nonce::{NonceCheck, NonceKeeper, Use};
use params::{quote, AuthParams};

pub use params::SyntaxError;

/// A digest algorithm (RFC 8760 §2: `SHA-256` and `MD5`; the `-sess` variants are not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617), the default when a challenge or credentials name none.
    Md5,
    /// SHA-256 (RFC 7616 §3.2, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// Parses an `algorithm` value, case-insensitively; `None` for algorithms we do not support.
    pub fn parse(token: &str) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The token as written in challenges and credentials.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// `H(data)` as lower-case hex (RFC 7616 §3.4.1).
    fn hash_hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid credentials for this user.
    Authenticated {
        /// The authenticated username.
        username: String,
    },
    /// No credentials for our realm in the request: send a challenge.
    Missing,
    /// Credentials were correct but the nonce is too old: challenge again with `stale=true`.
    Stale,
    /// Anything else: answer 403. The reason is for logs only; it never says whether the user
    /// exists.
    Rejected(RejectReason),
}

/// Why credentials were refused (for logs; the peer only sees a 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The credentials do not follow the grammar, or lack a mandatory parameter.
    Malformed,
    /// An algorithm other than SHA-256 or MD5.
    UnsupportedAlgorithm,
    /// A qop other than `auth` (we never offer `auth-int`).
    UnsupportedQop,
    /// A nonce we never issued (or a tampered one).
    UnknownNonce,
    /// The `opaque` value is not the one we sent.
    OpaqueMismatch,
    /// The `uri` parameter differs from the Request-URI.
    UriMismatch,
    /// Wrong password or unknown user: deliberately one reason for both.
    BadCredentials,
    /// The nonce (without qop) or this nonce count (with qop) was already used.
    Replayed,
}

impl RejectReason {
    /// A short description for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed credentials",
            RejectReason::UnsupportedAlgorithm => "unsupported algorithm",
            RejectReason::UnsupportedQop => "unsupported qop",
            RejectReason::UnknownNonce => "unknown nonce",
            RejectReason::OpaqueMismatch => "opaque mismatch",
            RejectReason::UriMismatch => "uri does not match the Request-URI",
            RejectReason::BadCredentials => "bad credentials",
            RejectReason::Replayed => "replayed nonce or nonce count",
        }
    }
}

/// Why a challenge could not be answered (client side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The challenge does not follow the auth-param grammar.
    #[error("malformed challenge: {0}")]
    Malformed(#[from] SyntaxError),
    /// The challenge's scheme is not `Digest`.
    #[error("challenge scheme is not Digest")]
    NotDigest,
    /// A mandatory parameter (`realm` or `nonce`) is missing.
    #[error("challenge has no {0} parameter")]
    MissingParam(&'static str),
    /// The challenge asks for an algorithm we do not implement.
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    /// The challenge's qop options do not include `auth`.
    #[error("challenge offers no supported qop")]
    UnsupportedQop,
}

/// Issues digest challenges for one realm and verifies the answers. Owns the nonce secret and
/// the replay state.
pub struct Challenger {
    realm: String,
    opaque: String,
    nonces: NonceKeeper,
    /// Offered algorithms, most preferred first; credentials in any other are refused.
    algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for Challenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The nonce key is a secret: never print it.
        f.debug_struct("Challenger")
            .field("realm", &self.realm)
            .field("algorithms", &self.algorithms)
            .field("tracked_nonces", &self.nonces.tracked())
            .finish_non_exhaustive()
    }
}

impl Challenger {
    /// A challenger for `realm` with a fresh random 32-byte nonce key; nonces stay valid for
    /// `nonce_lifetime` after they are issued.
    pub fn new(realm: impl Into<String>, nonce_lifetime: Duration, now: Instant) -> Self {
        let mut opaque = [0u8; 8];
        rand::rng().fill_bytes(&mut opaque);
        Challenger {
            realm: realm.into(),
            opaque: hex::encode(opaque),
            nonces: NonceKeeper::new(nonce_lifetime, now),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        }
    }

    /// Offers `algorithms` in this order of preference instead of SHA-256 then MD5 (RFC 8760
    /// §2.4 puts the preferred first; many deployed phones, SIPp among them, answer only the
    /// first challenge and only know MD5). An empty list keeps the default.
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        if !algorithms.is_empty() {
            self.algorithms = algorithms.to_vec();
        }
        self
    }

    /// The realm this challenger speaks for.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Header values to send in WWW-Authenticate (401) or Proxy-Authenticate (407): one
    /// challenge per offered algorithm, preferred first (RFC 8760 §2.4), `qop="auth"`, a fresh
    /// nonce and the opaque value. `stale` is true when answering credentials whose nonce
    /// expired (RFC 7616 §3.3).
    pub fn challenge(&mut self, now: Instant, stale: bool) -> Vec<String> {
        // One nonce serves both challenges: the client answers only one of them.
        let nonce = self.nonces.issue(now);
        self.algorithms
            .iter()
            .map(|algorithm| {
                let mut value = format!(
                    "Digest realm={}, nonce=\"{nonce}\", opaque=\"{}\", algorithm={}, qop=\"auth\"",
                    quote(&self.realm),
                    self.opaque,
                    algorithm.as_str()
                );
                if stale {
                    value.push_str(", stale=true");
                }
                value
            })
            .collect()
    }

    /// Checks the credentials in `request`'s `header` ("Authorization" or
    /// "Proxy-Authorization"). `password_of` returns the password of a username (`None` for an
    /// unknown user).
    pub fn verify(
        &mut self,
        request: &Request,
        header: &str,
        password_of: impl Fn(&str) -> Option<String>,
        now: Instant,
    ) -> Verdict {
        // RFC 3261 §22.4: a request may carry credentials for several realms (one header
        // each); only the ones for our realm concern us.
        let mut malformed = false;
        let mut ours = None;
        for value in request.headers.get_all(header) {
            // Other schemes (Basic, Bearer, ...) may use token68 syntax: not ours to parse.
            if !is_digest_scheme(value) {
                continue;
            }
            match AuthParams::parse(value) {
                Ok(p) if p.is_digest() && p.get("realm") == Some(self.realm.as_str()) => {
                    ours = Some(p);
                    break;
                }
                Ok(_) => {}
                Err(_) => malformed = true,
            }
        }
        match ours {
            Some(credentials) => self.verify_credentials(&credentials, request, password_of, now),
            None if malformed => Verdict::Rejected(RejectReason::Malformed),
            None => Verdict::Missing,
        }
    }

    /// Number of nonces remembered for replay protection (bounded; for metrics).
    pub fn tracked_nonces(&self) -> usize {
        self.nonces.tracked()
    }

    fn verify_credentials(
        &mut self,
        credentials: &AuthParams,
        request: &Request,
        password_of: impl Fn(&str) -> Option<String>,
        now: Instant,
    ) -> Verdict {
        use RejectReason::*;
        let reject = Verdict::Rejected;
        // RFC 7616 §3.4: algorithm defaults to MD5.
        let algorithm = match credentials.get("algorithm").map(Algorithm::parse) {
            None => Algorithm::Md5,
            Some(Some(a)) => a,
            Some(None) => return reject(UnsupportedAlgorithm),
        };
        // Only what we offered: an operator who disabled MD5 must not get it back this way.
        if !self.algorithms.contains(&algorithm) {
            return reject(UnsupportedAlgorithm);
        }
        // RFC 7616 §3.4.4: userhash hides the username; we never offer it.
        if credentials
            .get("userhash")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return reject(Malformed);
        }
        let (Some(username), Some(nonce), Some(digest_uri), Some(response)) = (
            credentials.get("username"),
            credentials.get("nonce"),
            credentials.get("uri"),
            credentials.get("response"),
        ) else {
            return reject(Malformed);
        };
        let qop = match credentials.get("qop") {
            // RFC 2069 compatibility (RFC 3261 §22.4): no qop, no cnonce or nc.
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let (Some(cnonce), Some(nc_text)) =
                    (credentials.get("cnonce"), credentials.get("nc"))
                else {
                    return reject(Malformed);
                };
                // RFC 7616 §3.4: nc is 8LHEX; accept shorter forms but nothing longer.
                let nc = (!nc_text.is_empty()
                    && nc_text.len() <= 8
                    && nc_text.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(nc_text, 16).ok())
                .flatten();
                let Some(nc) = nc else {
                    return reject(Malformed);
                };
                Some(QopAuth {
                    nc,
                    nc_text,
                    cnonce,
                })
            }
            Some(_) => return reject(UnsupportedQop),
        };
        if credentials.get("opaque").is_some_and(|o| o != self.opaque) {
            return reject(OpaqueMismatch);
        }
        let nonce_state = self.nonces.check(nonce, now);
        if nonce_state == NonceCheck::Forged {
            return reject(UnknownNonce);
        }
        // RFC 3261 §22.4 / RFC 7616 §3.4: the digest-uri must name the Request-URI, else
        // credentials captured for one resource could be replayed against another.
        if digest_uri != request.uri.to_string()
            && !Uri::parse(digest_uri).is_ok_and(|uri| uri == request.uri)
        {
            return reject(UriMismatch);
        }
        // An unknown user is checked against a placeholder password so that it costs the same
        // hashing as a known one and ends in the same verdict.
        let (password, known) = match password_of(username) {
            Some(p) => (p, true),
            None => (String::from("\u{0}unknown-user\u{0}"), false),
        };
        let expected = response_hash(
            algorithm,
            username,
            &self.realm,
            &password,
            request.method.as_str(),
            digest_uri,
            nonce,
            qop.as_ref().map(|q| (q.nc_text, q.cnonce)),
        );
        let matches = constant_time_eq(
            expected.as_bytes(),
            response.to_ascii_lowercase().as_bytes(),
        );
        if !(matches && known) {
            return reject(BadCredentials);
        }
        match nonce_state {
            NonceCheck::Fresh { issued_ms } => {
                match self
                    .nonces
                    .record(nonce, issued_ms, qop.as_ref().map(|q| q.nc), now)
                {
                    Use::Accepted => Verdict::Authenticated {
                        username: username.to_owned(),
                    },
                    Use::Replayed => reject(Replayed),
                    Use::Untracked => Verdict::Stale,
                }
            }
            // RFC 7616 §3.3: stale=true tells the client its password was right and only the
            // nonce needs renewing, so it retries without asking the user.
            NonceCheck::Expired => Verdict::Stale,
            NonceCheck::Forged => reject(UnknownNonce),
        }
    }
}

/// Client side: the Authorization (or Proxy-Authorization) header value answering `challenge`
/// (one WWW-Authenticate or Proxy-Authenticate value), with `qop=auth` when offered.
pub fn authorization(
    challenge: &str,
    method: &Method,
    uri: &Uri,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, AuthError> {
    let challenge = AuthParams::parse(challenge)?;
    if !challenge.is_digest() {
        return Err(AuthError::NotDigest);
    }
    let realm = challenge
        .get("realm")
        .ok_or(AuthError::MissingParam("realm"))?;
    let nonce = challenge
        .get("nonce")
        .ok_or(AuthError::MissingParam("nonce"))?;
    let algorithm = match challenge.get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(a).ok_or(AuthError::UnsupportedAlgorithm)?,
    };
    // RFC 7616 §3.3: qop in a challenge is a quoted, comma-separated list of options.
    let use_qop = match challenge.get("qop") {
        None => false,
        Some(options) => {
            if !options
                .split(',')
                .any(|o| o.trim().eq_ignore_ascii_case("auth"))
            {
                return Err(AuthError::UnsupportedQop);
            }
            true
        }
    };
    let uri_text = uri.to_string();
    let nc_text = format!("{nc:08x}");
    let response = response_hash(
        algorithm,
        username,
        realm,
        password,
        method.as_str(),
        &uri_text,
        nonce,
        use_qop.then_some((nc_text.as_str(), cnonce)),
    );
    let mut value = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
        quote(username),
        quote(realm),
        quote(nonce),
        quote(&uri_text),
        algorithm.as_str()
    );
    if use_qop {
        value.push_str(&format!(
            ", qop=auth, nc={nc_text}, cnonce={}",
            quote(cnonce)
        ));
    }
    if let Some(opaque) = challenge.get("opaque") {
        value.push_str(&format!(", opaque={}", quote(opaque)));
    }
    Ok(value)
}

/// The qop=auth parts of credentials.
struct QopAuth<'a> {
    nc: u32,
    /// The nonce count as written: the hash covers the text, not the number.
    nc_text: &'a str,
    cnonce: &'a str,
}

/// The digest `response` (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1 without qop):
/// `H(H(user:realm:pass):nonce:nc:cnonce:qop:H(method:uri))`, or `H(HA1:nonce:HA2)` when
/// `qop` (nc text and cnonce) is `None`.
#[allow(clippy::too_many_arguments)]
fn response_hash(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha1 = algorithm.hash_hex(&format!("{username}:{realm}:{password}"));
    let ha2 = algorithm.hash_hex(&format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce)) => {
            algorithm.hash_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        }
        None => algorithm.hash_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// Whether a credentials value starts with the `Digest` scheme token.
fn is_digest_scheme(value: &str) -> bool {
    let value = value.trim_start_matches([' ', '\t']);
    value
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("Digest"))
        && value[6..].starts_with([' ', '\t'])
}

/// Compares two byte strings in time that depends only on their lengths, so that a peer
/// cannot learn a correct response byte by byte from timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests;
