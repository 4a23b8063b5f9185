//! Client identities: the name a token grants (`grants.identity`) and `<Client>` dials.
//!
//! Rules (ours, documented in `docs/presence.md`): 1 to 121 characters, Twilio's limit for a
//! client identity; only ASCII letters and digits and `_ - . @ +`. No spaces, no control
//! characters, no `:` or `/`: an identity travels in URL paths (`/v1/presence/{identity}`),
//! in `client:alice` addresses and in log lines, and must read the same in all of them.
//! Non-ASCII letters are refused so that two identities cannot look alike and differ.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A validated client identity. Cheap to clone (shared text).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(Arc<str>);

/// Why a text is not a valid identity. Displays as a short reason without the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The identity is the empty string.
    #[error("identity is empty")]
    Empty,
    /// The identity is longer than [`Identity::MAX_LEN`] characters.
    #[error("identity longer than 121 characters")]
    TooLong,
    /// The identity contains a character outside letters, digits and `_ - . @ +`.
    #[error("identity has a forbidden character")]
    ForbiddenCharacter,
}

impl Identity {
    /// The longest identity accepted, in characters (all of them ASCII, so also in bytes).
    pub const MAX_LEN: usize = 121;

    /// Validates `text` as an identity.
    pub fn new(text: &str) -> Result<Identity, IdentityError> {
        if text.is_empty() {
            return Err(IdentityError::Empty);
        }
        // Every accepted byte is ASCII, so for a valid identity the byte length is the character
        // count; checking it first bounds the work on hostile input.
        if text.len() > Self::MAX_LEN {
            return Err(IdentityError::TooLong);
        }
        if !text.bytes().all(is_identity_byte) {
            return Err(IdentityError::ForbiddenCharacter);
        }
        Ok(Identity(Arc::from(text)))
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Identity({:?})", &*self.0)
    }
}

impl Borrow<str> for Identity {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Identity {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Identity::new(text)
    }
}

impl Serialize for Identity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Identity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Identity::new(&text).map_err(serde::de::Error::custom)
    }
}

fn is_identity_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b'@' | b'+')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_digits_and_the_five_punctuation_marks() {
        for text in [
            "alice",
            "A",
            "bob_2",
            "carol-x",
            "d.e",
            "eve@example.com",
            "+15550100",
        ] {
            let identity = Identity::new(text).unwrap();
            assert_eq!(identity.as_str(), text);
        }
    }

    #[test]
    fn length_is_bounded_at_121() {
        let longest = "a".repeat(Identity::MAX_LEN);
        assert!(Identity::new(&longest).is_ok());
        let too_long = "a".repeat(Identity::MAX_LEN + 1);
        assert_eq!(Identity::new(&too_long), Err(IdentityError::TooLong));
        assert_eq!(Identity::new(""), Err(IdentityError::Empty));
    }

    #[test]
    fn refuses_spaces_controls_separators_and_non_ascii() {
        for text in [
            "alice smith",
            "alice\n",
            "al\u{0}ice",
            "client:alice",
            "a/b",
            "a%2Fb",
            "ålice",
            "аlice", // Cyrillic а
            "alice\"",
        ] {
            assert_eq!(
                Identity::new(text),
                Err(IdentityError::ForbiddenCharacter),
                "{text:?}"
            );
        }
    }

    #[test]
    fn deserializing_validates() {
        let identity: Identity = serde_json::from_str("\"alice\"").unwrap();
        assert_eq!(identity.as_str(), "alice");
        assert!(serde_json::from_str::<Identity>("\"a b\"").is_err());
        assert_eq!(serde_json::to_string(&identity).unwrap(), "\"alice\"");
    }
}
