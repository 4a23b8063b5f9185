//! The claims of a verified token and their wire shape (Twilio's AccessToken):
//!
//! ```json
//! {"jti":"SKdev-…","iss":"SKdev","sub":"AC…","iat":1700000000,"exp":1700003600,
//!  "grants":{"identity":"alice","voice":{"incoming":{"allow":true},
//!            "outgoing":{"application_sid":"AP…","params":{"k":"v"}}}}}
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::identity::Identity;
use crate::token::TokenError;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `jti`: the token's id (not secret; fine in logs).
    pub token_id: String,
    /// `kid`, which is also `iss`: the key that signed it.
    pub key_id: String,
    /// `sub`: the account.
    pub account_sid: AccountSid,
    /// `grants`: identity and voice permissions.
    pub grants: Grants,
    /// `exp`.
    pub expires_at: SystemTime,
    /// `nbf`, when present.
    pub not_before: Option<SystemTime>,
    /// `iat`, when present.
    pub issued_at: Option<SystemTime>,
}

/// What a token lets its holder be and do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// The client identity (`grants.identity`).
    pub identity: Identity,
    /// The voice grant (`grants.voice`); all off when absent.
    pub voice: VoiceGrant,
}

/// `grants.voice`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VoiceGrant {
    /// `incoming.allow`: the device may `register` for incoming calls.
    pub incoming: bool,
    /// `outgoing`: the device may place calls through this application.
    pub outgoing: Option<OutgoingGrant>,
}

/// `grants.voice.outgoing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingGrant {
    /// `application_sid`: the application whose voice URL handles the device's calls.
    pub application_sid: ApplicationSid,
    /// `params`: passed to that application with each call.
    pub params: BTreeMap<String, String>,
}

/// An account sid: `AC` and 32 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountSid(String);

/// An application sid: 1 to 64 ASCII letters and digits (Twilio's are `AP` and 32 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApplicationSid(String);

impl Claims {
    /// The granted identity.
    pub fn identity(&self) -> &Identity {
        &self.grants.identity
    }
}

impl AccountSid {
    /// `Some` if `text` is `AC` followed by 32 hexadecimal digits.
    pub fn parse(text: &str) -> Option<AccountSid> {
        let is_sid = text.len() == 34
            && text.starts_with("AC")
            && text.bytes().skip(2).all(|byte| byte.is_ascii_hexdigit());
        is_sid.then(|| AccountSid(text.to_owned()))
    }

    /// The sid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ApplicationSid {
    /// `Some` if `text` is 1 to 64 ASCII letters and digits.
    pub fn parse(text: &str) -> Option<ApplicationSid> {
        let is_sid = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|byte| byte.is_ascii_alphanumeric());
        is_sid.then(|| ApplicationSid(text.to_owned()))
    }

    /// The sid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountSid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Display for ApplicationSid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The claims as they arrive: each a JSON value, so that a wrong type is reported per claim.
#[derive(Deserialize)]
pub(crate) struct RawClaims {
    pub jti: Option<Value>,
    pub iss: Option<Value>,
    pub sub: Option<Value>,
    pub aud: Option<Value>,
    pub exp: Option<Value>,
    pub nbf: Option<Value>,
    pub iat: Option<Value>,
    pub grants: Option<Value>,
}

/// `grants` on the wire (both directions).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GrantsWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<VoiceWire>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct VoiceWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming: Option<IncomingWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing: Option<OutgoingWire>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IncomingWire {
    #[serde(default)]
    pub allow: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OutgoingWire {
    pub application_sid: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. Later values cannot be meant and
/// would only invite overflow.
const LATEST_NUMERIC_DATE: u64 = 253_402_300_799;

/// Reads a NumericDate claim as whole seconds since the epoch.
///
/// RFC 7519 §2: a NumericDate is a JSON number of seconds, possibly non-integer (the fraction is
/// dropped). A string, even of digits, is not one: `"exp": "1700000000"` is invalid.
pub(crate) fn numeric_date(value: &Value, claim: &'static str) -> Result<u64, TokenError> {
    let invalid = TokenError::InvalidClaim {
        claim,
        expected: "a number of seconds",
    };
    let Value::Number(number) = value else {
        return Err(invalid);
    };
    let seconds = match number.as_u64() {
        Some(seconds) => seconds,
        None => match number.as_f64() {
            Some(seconds) if seconds.is_finite() && seconds >= 0.0 => seconds.floor() as u64,
            _ => return Err(invalid),
        },
    };
    if seconds > LATEST_NUMERIC_DATE {
        return Err(invalid);
    }
    Ok(seconds)
}

/// Reads a string claim.
pub(crate) fn string_claim<'a>(
    value: Option<&'a Value>,
    claim: &'static str,
) -> Result<&'a str, TokenError> {
    match value {
        None => Err(TokenError::MissingClaim(claim)),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(TokenError::InvalidClaim {
            claim,
            expected: "a string",
        }),
    }
}

/// Types the `grants` claim.
pub(crate) fn grants(value: Option<Value>) -> Result<Grants, TokenError> {
    let malformed = TokenError::InvalidClaim {
        claim: "grants",
        expected: "an AccessToken grants object",
    };
    let value = value.ok_or(TokenError::MissingIdentity)?;
    let wire: GrantsWire = serde_json::from_value(value).map_err(|_| malformed)?;
    let identity = Identity::new(&wire.identity.ok_or(TokenError::MissingIdentity)?)?;
    let voice = match wire.voice {
        None => VoiceGrant::default(),
        Some(voice) => VoiceGrant {
            incoming: voice.incoming.is_some_and(|incoming| incoming.allow),
            outgoing: match voice.outgoing {
                None => None,
                Some(outgoing) => Some(OutgoingGrant {
                    application_sid: ApplicationSid::parse(&outgoing.application_sid).ok_or(
                        TokenError::InvalidClaim {
                            claim: "grants.voice.outgoing.application_sid",
                            expected: "1 to 64 letters and digits",
                        },
                    )?,
                    params: outgoing.params,
                }),
            },
        },
    };
    Ok(Grants { identity, voice })
}

impl Grants {
    pub(crate) fn to_wire(&self) -> GrantsWire {
        GrantsWire {
            identity: Some(self.identity.as_str().to_owned()),
            voice: Some(VoiceWire {
                incoming: self.voice.incoming.then_some(IncomingWire { allow: true }),
                outgoing: self.voice.outgoing.as_ref().map(|outgoing| OutgoingWire {
                    application_sid: outgoing.application_sid.as_str().to_owned(),
                    params: outgoing.params.clone(),
                }),
            }),
        }
    }
}

/// Seconds since the epoch as a time.
pub(crate) fn time_of(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numeric_dates_are_numbers_only() {
        assert_eq!(
            numeric_date(&json!(1_700_000_000), "exp"),
            Ok(1_700_000_000)
        );
        assert_eq!(
            numeric_date(&json!(1_700_000_000.9), "exp"),
            Ok(1_700_000_000)
        );
        for bad in [
            json!("1700000000"),
            json!(-1),
            json!(-0.5),
            json!(null),
            json!(true),
            json!([1]),
            json!(1e300),
            json!(LATEST_NUMERIC_DATE + 1),
        ] {
            assert_eq!(
                numeric_date(&bad, "exp"),
                Err(TokenError::InvalidClaim {
                    claim: "exp",
                    expected: "a number of seconds"
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn grants_are_typed() {
        let typed = grants(Some(json!({
            "identity": "alice",
            "voice": {
                "incoming": {"allow": true},
                "outgoing": {"application_sid": "AP0123", "params": {"team": "blue"}},
                "push_credential_sid": "CR1"
            },
            "video": {}
        })))
        .unwrap();
        assert_eq!(typed.identity.as_str(), "alice");
        assert!(typed.voice.incoming);
        let outgoing = typed.voice.outgoing.unwrap();
        assert_eq!(outgoing.application_sid.as_str(), "AP0123");
        assert_eq!(
            outgoing.params.get("team").map(String::as_str),
            Some("blue")
        );
    }

    #[test]
    fn grants_default_to_nothing_allowed() {
        let typed = grants(Some(json!({"identity": "bob"}))).unwrap();
        assert_eq!(typed.voice, VoiceGrant::default());
        let refused = grants(Some(
            json!({"identity": "bob", "voice": {"incoming": {"allow": false}}}),
        ));
        assert!(!refused.unwrap().voice.incoming);
    }

    #[test]
    fn grants_reject_wrong_shapes() {
        assert_eq!(grants(None), Err(TokenError::MissingIdentity));
        assert_eq!(grants(Some(json!({}))), Err(TokenError::MissingIdentity));
        for bad in [
            json!("alice"),
            json!({"identity": 7}),
            json!({"identity": "alice", "voice": {"incoming": {"allow": "yes"}}}),
            json!({"identity": "alice", "voice": {"outgoing": {"params": {}}}}),
            json!({"identity": "alice", "voice": {"outgoing": {"application_sid": "AP1", "params": {"n": 1}}}}),
        ] {
            assert!(
                matches!(
                    grants(Some(bad.clone())),
                    Err(TokenError::InvalidClaim {
                        claim: "grants",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            grants(Some(
                json!({"identity": "alice", "voice": {"outgoing": {"application_sid": "AP/1"}}})
            )),
            Err(TokenError::InvalidClaim {
                claim: "grants.voice.outgoing.application_sid",
                ..
            })
        ));
    }

    #[test]
    fn sids_have_their_shapes() {
        assert!(AccountSid::parse("AC0123456789abcdef0123456789ABCDEF").is_some());
        assert!(AccountSid::parse("AC0123456789abcdef0123456789ABCDE").is_none());
        assert!(AccountSid::parse("XX0123456789abcdef0123456789ABCDEF").is_none());
        assert!(AccountSid::parse("AC0123456789abcdef0123456789ABCDEG").is_none());
        assert!(ApplicationSid::parse("AP0123").is_some());
        assert!(ApplicationSid::parse("").is_none());
        assert!(ApplicationSid::parse(&"A".repeat(65)).is_none());
    }

    #[test]
    fn wire_form_round_trips() {
        let original = Grants {
            identity: Identity::new("carol").unwrap(),
            voice: VoiceGrant {
                incoming: true,
                outgoing: Some(OutgoingGrant {
                    application_sid: ApplicationSid::parse("AP1").unwrap(),
                    params: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
                }),
            },
        };
        let value = serde_json::to_value(original.to_wire()).unwrap();
        assert_eq!(
            value,
            json!({"identity": "carol", "voice": {"incoming": {"allow": true},
                   "outgoing": {"application_sid": "AP1", "params": {"a": "b"}}}})
        );
        assert_eq!(grants(Some(value)).unwrap(), original);
    }
}
