//! The parameters of one webhook request: ordered `(name, value)` pairs, sent form-encoded in a
//! POST body or appended to a GET's query. Which names are sent (`CallSid`, `From`, …) is the
//! caller's business; this type only keeps them in order.

use std::borrow::Cow;

use compact_str::CompactString;

/// Ordered `(name, value)` pairs. A name may repeat; order is kept as pushed (the signature
/// sorts its own copy). Names are mostly Twilio's constant ones (`CallSid`, `From`, …), kept
/// without a copy; values of up to 24 bytes (numbers, statuses, most phone numbers) are kept
/// inline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(Cow<'static, str>, CompactString)>,
}

impl Params {
    /// No parameters.
    pub fn new() -> Params {
        Params::default()
    }

    /// Appends a pair (a repeated name is kept as a second pair).
    pub fn push(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<CompactString>) {
        self.pairs.push((name.into(), value.into()));
    }

    /// Replaces every pair named `name` by one pair with `value`, at the place of the first (or
    /// at the end when there was none).
    pub fn set(&mut self, name: &str, value: impl Into<CompactString>) {
        let value = value.into();
        match self.pairs.iter().position(|(existing, _)| existing == name) {
            Some(first) => {
                self.pairs[first].1 = value;
                let mut index = 0;
                self.pairs.retain(|(existing, _)| {
                    let keep = index <= first || existing != name;
                    index += 1;
                    keep
                });
            }
            None => self.pairs.push((Cow::Owned(name.to_owned()), value)),
        }
    }

    /// The value of the first pair named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(existing, _)| existing == name)
            .map(|(_, value)| value.as_str())
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.pairs
            .iter()
            .map(|(name, value)| (&**name, value.as_str()))
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs as an `application/x-www-form-urlencoded` string (WHATWG URL §5.2), the body
    /// of a POST.
    pub fn to_form(&self) -> String {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.iter() {
            serializer.append_pair(name, value);
        }
        serializer.finish()
    }
}

impl<N: Into<Cow<'static, str>>, V: Into<CompactString>> FromIterator<(N, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Self {
        let mut params = Params::new();
        params.extend(pairs);
        params
    }
}

impl<N: Into<Cow<'static, str>>, V: Into<CompactString>> Extend<(N, V)> for Params {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, pairs: I) {
        for (name, value) in pairs {
            self.push(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_their_order_and_repeats() {
        let mut params = Params::new();
        assert!(params.is_empty());
        params.push("To", "+15550100");
        params.push("From", "client:alice");
        params.push("To", "+15550101");
        assert_eq!(params.len(), 3);
        assert_eq!(params.get("To"), Some("+15550100"));
        assert_eq!(params.get("Digits"), None);
        let pairs: Vec<(&str, &str)> = params.iter().collect();
        assert_eq!(
            pairs,
            [
                ("To", "+15550100"),
                ("From", "client:alice"),
                ("To", "+15550101")
            ]
        );
    }

    #[test]
    fn set_replaces_every_pair_of_a_name_in_place() {
        let mut params: Params = [("A", "1"), ("B", "2"), ("A", "3"), ("C", "4")]
            .into_iter()
            .collect();
        params.set("A", "9");
        let pairs: Vec<(&str, &str)> = params.iter().collect();
        assert_eq!(pairs, [("A", "9"), ("B", "2"), ("C", "4")]);
        params.set("D", "5");
        assert_eq!(params.get("D"), Some("5"));
        assert_eq!(params.len(), 4);
    }

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        let params: Params = [("From", "+1 555&x=y"), ("Body", "é/ü")]
            .into_iter()
            .collect();
        assert_eq!(
            params.to_form(),
            "From=%2B1+555%26x%3Dy&Body=%C3%A9%2F%C3%BC"
        );
    }
}
