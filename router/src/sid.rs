//! Call SIDs: `CA` followed by 32 lowercase hexadecimal digits, as Twilio names calls, so that
//! applications written for Twilio store and compare them unchanged.

use std::fmt;

/// The identifier of one call or call leg. Held inline (34 ASCII bytes): SIDs are copied
/// into every record, callback and log span of a call, and a heap string made each copy an
/// allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallSid([u8; SID_LEN]);

const SID_LEN: usize = 34;

impl CallSid {
    /// A new random SID (128 random bits).
    pub fn random() -> CallSid {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bits = rand::random::<u128>();
        let mut sid = [0u8; SID_LEN];
        sid[..2].copy_from_slice(b"CA");
        for (index, digit) in sid[2..].iter_mut().enumerate() {
            let nibble = (bits >> (4 * (31 - index))) & 0xf;
            *digit = HEX[nibble as usize];
        }
        CallSid(sid)
    }

    /// Parses a SID from text: `CA` and exactly 32 hexadecimal digits (either case, kept as
    /// given). `None` otherwise.
    pub fn parse(text: &str) -> Option<CallSid> {
        let digits = text.strip_prefix("CA")?;
        let sid = <[u8; SID_LEN]>::try_from(text.as_bytes()).ok()?;
        digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then_some(CallSid(sid))
    }

    /// The SID as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (`random` and `parse` make sure), so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for CallSid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl fmt::Debug for CallSid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl serde::Serialize for CallSid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
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
        assert!(sid.as_str()[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
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
