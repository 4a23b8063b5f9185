//! Call SIDs: `CA` followed by 32 lowercase hexadecimal digits, as Twilio names calls, so that
//! applications written for Twilio store and compare them unchanged.

use std::fmt;

/// The identifier of one call or call leg.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallSid(String);

impl CallSid {
    /// A new random SID (128 random bits).
    pub fn random() -> CallSid {
        CallSid(format!("CA{:032x}", rand::random::<u128>()))
    }

    /// Parses a SID from text: `CA` and exactly 32 hexadecimal digits (either case, kept as
    /// given). `None` otherwise.
    pub fn parse(text: &str) -> Option<CallSid> {
        let digits = text.strip_prefix("CA")?;
        (digits.len() == 32 && digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| CallSid(text.to_owned()))
    }

    /// The SID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallSid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Debug for CallSid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl serde::Serialize for CallSid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_sids_have_twilios_shape_and_differ() {
        let sid = CallSid::random();
        assert_eq!(sid.as_str().len(), 34);
        assert!(sid.as_str().starts_with("CA"));
        assert_eq!(CallSid::parse(sid.as_str()), Some(sid.clone()));
        assert_ne!(sid, CallSid::random());
    }

    #[test]
    fn parse_refuses_other_shapes() {
        for bad in [
            "",
            "CA",
            "CA123",
            "AC0123456789abcdef0123456789abcdef",
            "CA0123456789abcdef0123456789abcdeg",
            "CA0123456789abcdef0123456789abcdef0",
        ] {
            assert_eq!(CallSid::parse(bad), None, "{bad}");
        }
    }
}
