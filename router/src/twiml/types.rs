//! Value types shared by the verbs: HTTP methods, loop counts, URLs, and the attribute
//! parsing helpers that turn a bad value into [`TwimlError::BadAttribute`].

use std::fmt;
use std::time::Duration;

use super::element::Element;
use super::TwimlError;

/// The HTTP method used to request an `action` or `Redirect` URL. Twilio's default is POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpMethod {
    /// Parameters in the query string.
    Get,
    /// Parameters form-encoded in the body (Twilio's default).
    #[default]
    Post,
}

/// How many times `<Say>` or `<Play>` repeats. Twilio: `0` repeats until the call ends
/// (`<Say>` caps this at 1000 repetitions); the default is once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loop(u32);

impl Loop {
    /// The largest explicit count accepted, which is also Twilio's cap for `<Say loop="0">`.
    pub const MAX: u32 = 1000;
    /// Play once (the default).
    pub const ONCE: Loop = Loop(1);
    /// Repeat until the call ends.
    pub const FOREVER: Loop = Loop(0);

    /// The count as written: `0` means forever.
    pub fn count(self) -> u32 {
        self.0
    }

    /// Whether this repeats until the call ends.
    pub fn is_forever(self) -> bool {
        self.0 == 0
    }
}

impl Default for Loop {
    fn default() -> Self {
        Loop::ONCE
    }
}

/// A URL from the document: an absolute `http`/`https` URL or a relative reference, kept as
/// written. Relative references are resolved by the caller against the document's own URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url(String);

impl Url {
    /// The longest URL accepted, in bytes.
    pub const MAX_LENGTH: usize = 2048;

    /// The URL as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the URL is relative and must be resolved against the document URL.
    pub fn is_relative(&self) -> bool {
        scheme(&self.0).is_none()
    }

    /// Validates `value`: non-empty, bounded, no whitespace or control characters, and a scheme
    /// (if any) of `http` or `https`. Returns `None` when invalid.
    pub(crate) fn parse(value: &str) -> Option<Url> {
        let value = value.trim();
        if value.is_empty()
            || value.len() > Self::MAX_LENGTH
            || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return None;
        }
        match scheme(value) {
            None => Some(Url(value.to_owned())),
            Some(scheme)
                if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
            {
                Some(Url(value.to_owned()))
            }
            Some(_) => None,
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A call progress event a status callback can report (`StatusCallbackEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The call was placed.
    Initiated,
    /// The called party is alerted.
    Ringing,
    /// The called party answered.
    Answered,
    /// The call is over, answered or not (`CallStatus` says how it ended).
    Completed,
}

impl ProgressEvent {
    /// The event's name in documents and callbacks.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressEvent::Initiated => "initiated",
            ProgressEvent::Ringing => "ringing",
            ProgressEvent::Answered => "answered",
            ProgressEvent::Completed => "completed",
        }
    }

    /// The event named `name` (exactly as Twilio spells it).
    pub(crate) fn from_name(name: &str) -> Option<ProgressEvent> {
        [
            ProgressEvent::Initiated,
            ProgressEvent::Ringing,
            ProgressEvent::Answered,
            ProgressEvent::Completed,
        ]
        .into_iter()
        .find(|event| event.as_str() == name)
    }
}

/// Something in the document that Tandem ignored, as Twilio does, but that the caller may
/// want to log for the application's author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// An attribute this element does not know; ignored.
    UnknownAttribute {
        /// The element carrying it.
        element: String,
        /// The attribute name.
        attribute: String,
    },
    /// An attribute that only means something next to another one, which is missing; ignored.
    UnusedAttribute {
        /// The element carrying it.
        element: String,
        /// The attribute name.
        attribute: String,
        /// The attribute it needs.
        missing: &'static str,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownAttribute { element, attribute } => {
                write!(
                    formatter,
                    "ignored unknown attribute {attribute} on <{element}>"
                )
            }
            Warning::UnusedAttribute {
                element,
                attribute,
                missing,
            } => write!(
                formatter,
                "ignored attribute {attribute} on <{element}>: it needs {missing}"
            ),
        }
    }
}

/// RFC 3986 §3.1: a scheme is a letter followed by letters, digits, `+`, `-` or `.`, ended by
/// `:` before any `/`, `?` or `#`. Anything else is a relative reference.
fn scheme(value: &str) -> Option<&str> {
    let end = value.find([':', '/', '?', '#'])?;
    if value.as_bytes().get(end) != Some(&b':') {
        return None;
    }
    let candidate = &value[..end];
    let mut chars = candidate.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(candidate)
}

/// The error for attribute `name` of `element` holding `value`.
pub(crate) fn bad_attribute(element: &Element, name: &str, value: &str) -> TwimlError {
    TwimlError::BadAttribute {
        verb: element.name.clone(),
        attribute: name.to_owned(),
        value: value.to_owned(),
    }
}

/// Attribute `name` as an integer within `range`, or `default` when absent.
pub(crate) fn integer_attribute(
    element: &Element,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
) -> Result<u32, TwimlError> {
    let Some(value) = element.attribute(name) else {
        return Ok(default);
    };
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|number| range.contains(number))
        .ok_or_else(|| bad_attribute(element, name, value))
}

/// Attribute `name` as whole seconds within `range`, or `default` seconds when absent.
pub(crate) fn seconds_attribute(
    element: &Element,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
) -> Result<Duration, TwimlError> {
    integer_attribute(element, name, range, default).map(|s| Duration::from_secs(u64::from(s)))
}

/// Attribute `name` as an HTTP method (`GET` or `POST`, any case), POST when absent.
pub(crate) fn method_attribute(element: &Element, name: &str) -> Result<HttpMethod, TwimlError> {
    match element.attribute(name) {
        None => Ok(HttpMethod::Post),
        Some(value) if value.trim().eq_ignore_ascii_case("GET") => Ok(HttpMethod::Get),
        Some(value) if value.trim().eq_ignore_ascii_case("POST") => Ok(HttpMethod::Post),
        Some(value) => Err(bad_attribute(element, name, value)),
    }
}

/// Attribute `name` as a URL, `None` when absent.
pub(crate) fn url_attribute(element: &Element, name: &str) -> Result<Option<Url>, TwimlError> {
    element
        .attribute(name)
        .map(|value| Url::parse(value).ok_or_else(|| bad_attribute(element, name, value)))
        .transpose()
}

/// The `loop` attribute, once when absent.
pub(crate) fn loop_attribute(element: &Element) -> Result<Loop, TwimlError> {
    integer_attribute(element, "loop", 0..=Loop::MAX, 1).map(Loop)
}

/// The element's text as a URL: required and valid.
pub(crate) fn url_text(element: &Element) -> Result<Url, TwimlError> {
    element.expect_no_children()?;
    let text = element.trimmed_text();
    if text.is_empty() {
        return Err(TwimlError::MissingText {
            element: element.name.clone(),
        });
    }
    Url::parse(text).ok_or_else(|| TwimlError::BadText {
        element: element.name.clone(),
        value: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_absolute_relative_and_bad() {
        let absolute = Url::parse(" https://example.com/next?x=1 ");
        assert_eq!(
            absolute.as_ref().map(Url::as_str),
            Some("https://example.com/next?x=1")
        );
        assert_eq!(absolute.map(|url| url.is_relative()), Some(false));
        assert_eq!(Url::parse("/next").map(|url| url.is_relative()), Some(true));
        assert_eq!(Url::parse("next:step/x").map(|url| url.is_relative()), None);
        assert_eq!(
            Url::parse("../a:b").map(|url| url.is_relative()),
            Some(true)
        );
        assert!(Url::parse("ftp://example.com/a").is_none());
        assert!(Url::parse("javascript:alert(1)").is_none());
        assert!(Url::parse("http://a b").is_none());
        assert!(Url::parse("   ").is_none());
        assert!(Url::parse(&"a".repeat(Url::MAX_LENGTH + 1)).is_none());
    }

    #[test]
    fn loop_meanings() {
        assert!(Loop::FOREVER.is_forever());
        assert!(!Loop::default().is_forever());
        assert_eq!(Loop::default().count(), 1);
    }
}
