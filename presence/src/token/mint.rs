//! Minting development tokens (`tandem token`) and test tokens: HS256 only, since only HS256
//! keys hold their signing material here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

use super::claims::GrantsWire;
use super::{AccountSid, Grants, Key, MintError, MAX_LIFETIME};

/// Signs a token for `grants` with `key`, valid from `now` for `ttl` (1 s to 24 h).
///
/// Header `{alg: HS256, typ: JWT, kid}`; claims `jti` (`<kid>-<32 random hex digits>`), `iss`
/// (the key id), `sub`, `iat` (now), `exp` (now + ttl) and `grants`.
pub fn mint(
    key: &Key,
    grants: &Grants,
    account_sid: &AccountSid,
    ttl: Duration,
    now: SystemTime,
) -> Result<String, MintError> {
    let Some(encoding) = &key.encoding else {
        return Err(MintError::CannotSign {
            algorithm: key.algorithm,
        });
    };
    if ttl.is_zero() || ttl > MAX_LIFETIME {
        return Err(MintError::TimeToLive);
    }
    let issued = now
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    let claims = MintedClaims {
        jti: format!("{}-{:032x}", key.id, rand::random::<u128>()),
        iss: &key.id,
        sub: account_sid.as_str(),
        iat: issued,
        // Whole seconds, rounded up so that a sub-second ttl still yields a usable token.
        exp: issued + ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0),
        grants: grants.to_wire(),
    };
    sign(encoding, &key.id, &claims)
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    jti: String,
    iss: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
    grants: GrantsWire,
}

fn sign(
    encoding: &EncodingKey,
    key_id: &str,
    claims: &MintedClaims<'_>,
) -> Result<String, MintError> {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key_id.to_owned());
    jsonwebtoken::encode(&header, claims, encoding).map_err(|_| MintError::Signing)
}
