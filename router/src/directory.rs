//! The application directory: which application answers which dialled number.
//!
//! Resolution follows the product contract: an exact match on the number wins, then the `*`
//! wildcard; with no numbers configured at all the bundled demo application answers every
//! number, and once any number is configured a number that matches none is not found (the
//! router answers 404).

use std::collections::HashMap;

use crate::config::{Config, Number};

/// The number that matches any dialled number.
pub const WILDCARD: &str = "*";

/// Looks up the application for a dialled number.
#[derive(Debug, Clone)]
pub struct Directory {
    /// Exact numbers (never the wildcard); the first configured entry wins on duplicates.
    exact: HashMap<String, Number>,
    /// The `*` entry, if configured.
    wildcard: Option<Number>,
    /// True when the configuration names no number at all.
    is_demo: bool,
}

/// What answers a dialled number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution<'a> {
    /// The configured application of this number (exact or wildcard entry).
    Application(&'a Number),
    /// No numbers are configured: the bundled demo application answers.
    DemoApplication,
    /// Numbers are configured and none matches: the call is refused with 404.
    NotFound,
}

impl Directory {
    /// Builds the directory from the router's configuration.
    pub fn new(config: &Config) -> Directory {
        let mut exact = HashMap::with_capacity(config.numbers.len());
        let mut wildcard = None;
        for number in &config.numbers {
            if number.number == WILDCARD {
                wildcard.get_or_insert_with(|| number.clone());
            } else {
                exact
                    .entry(number.number.clone())
                    .or_insert_with(|| number.clone());
            }
        }
        Directory {
            exact,
            wildcard,
            is_demo: config.numbers.is_empty(),
        }
    }

    /// The application for `dialled_user`, the user part of the Request-URI as received (in its
    /// escaped form: `%2B15550100` finds `+15550100`).
    pub fn resolve(&self, dialled_user: &str) -> Resolution<'_> {
        if self.is_demo {
            return Resolution::DemoApplication;
        }
        // RFC 3261 §19.1.4: characters other than reserved ones are equivalent to their escaped
        // form, so compare the unescaped user part with the configured (unescaped) numbers.
        let user = unescape(dialled_user);
        if let Some(number) = self.exact.get(user.as_ref()) {
            return Resolution::Application(number);
        }
        match &self.wildcard {
            Some(number) => Resolution::Application(number),
            None => Resolution::NotFound,
        }
    }
}

/// Decodes `%XX` escapes. A malformed escape is kept as written (the SIP parser rejects those,
/// so this only matters for callers passing arbitrary text); a result that is not UTF-8 is
/// decoded lossily, so it can never match a configured number by accident.
fn unescape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('%') {
        return std::borrow::Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Account, WebhookMethod};

    fn number(number: &str, voice_url: &str) -> Number {
        Number {
            number: number.to_owned(),
            voice_url: voice_url.to_owned(),
            voice_method: WebhookMethod::Post,
            voice_fallback_url: None,
            status_callback: None,
        }
    }

    fn directory(numbers: Vec<Number>) -> Directory {
        Directory::new(&Config {
            numbers,
            account: Account::default(),
            max_calls: None,
        })
    }

    fn voice_url_of(resolution: Resolution<'_>) -> Option<&str> {
        match resolution {
            Resolution::Application(number) => Some(number.voice_url.as_str()),
            _ => None,
        }
    }

    #[test]
    fn no_numbers_means_the_demo_answers_everything() {
        let directory = directory(Vec::new());
        assert_eq!(directory.resolve("+15550100"), Resolution::DemoApplication);
        assert_eq!(directory.resolve("alice"), Resolution::DemoApplication);
        assert_eq!(directory.resolve(""), Resolution::DemoApplication);
    }

    #[test]
    fn exact_match_wins_over_the_wildcard() {
        let directory = directory(vec![
            number("*", "http://any.example/voice"),
            number("+15550100", "http://exact.example/voice"),
        ]);
        assert_eq!(
            voice_url_of(directory.resolve("+15550100")),
            Some("http://exact.example/voice")
        );
        assert_eq!(
            voice_url_of(directory.resolve("+15550199")),
            Some("http://any.example/voice")
        );
    }

    #[test]
    fn unmatched_number_is_not_found_once_numbers_exist() {
        let directory = directory(vec![number("+15550100", "http://exact.example/voice")]);
        assert_eq!(directory.resolve("+15550101"), Resolution::NotFound);
        assert_eq!(directory.resolve("15550100"), Resolution::NotFound);
        assert_eq!(directory.resolve("*"), Resolution::NotFound);
    }

    #[test]
    fn escaped_user_part_matches_the_unescaped_number() {
        let directory = directory(vec![number("+15550100", "http://exact.example/voice")]);
        assert_eq!(
            voice_url_of(directory.resolve("%2B15550100")),
            Some("http://exact.example/voice")
        );
        assert_eq!(
            voice_url_of(directory.resolve("%2b15550100")),
            Some("http://exact.example/voice")
        );
    }

    #[test]
    fn matching_is_case_sensitive() {
        // RFC 3261 §19.1.4: the userinfo of SIP URIs is compared case-sensitively.
        let directory = directory(vec![number("alice", "http://a.example/voice")]);
        assert_eq!(
            voice_url_of(directory.resolve("alice")),
            Some("http://a.example/voice")
        );
        assert_eq!(directory.resolve("Alice"), Resolution::NotFound);
    }

    #[test]
    fn first_duplicate_wins() {
        let directory = directory(vec![
            number("100", "http://first.example/voice"),
            number("100", "http://second.example/voice"),
        ]);
        assert_eq!(
            voice_url_of(directory.resolve("100")),
            Some("http://first.example/voice")
        );
    }

    #[test]
    fn unescape_keeps_malformed_escapes_and_never_panics() {
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("100%4"), "100%4");
        assert_eq!(unescape("%zz1"), "%zz1");
        assert_eq!(unescape("%41%42"), "AB");
        assert_eq!(unescape("%ff"), "\u{fffd}");
    }
}
