//! `<Dial>`: connect the caller to other parties, ringing them all at once; the first to
//! answer is bridged.
//!
//! Attributes, with Twilio's defaults: `action` (none: continue with the next verb), `method`
//! (POST), `timeout` (30 s), `callerId` (none: the caller's own), `timeLimit` (14400 s = 4 h),
//! `answerOnBridge` (false). Nouns: `<Client>` (identity as text, or Twilio's newer
//! `<Identity>` child, plus `<Parameter name value>` children: see [`Client`]), `<Sip>` (a SIP
//! URI), `<Number>` (a phone number), or a bare number as the text of `<Dial>` itself; at most
//! [`Dial::MAX_NOUNS`]. Each noun may ask for progress callbacks about the calls it makes:
//! `statusCallback`, `statusCallbackEvent` and `statusCallbackMethod` (see [`StatusCallback`]).

use std::fmt;
use std::time::Duration;

use super::element::Element;
use super::types::{
    bad_attribute, method_attribute, seconds_attribute, url_attribute, HttpMethod, ProgressEvent,
    Url,
};
use super::{TwimlError, Warning};

/// Ring `targets` and bridge the first to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// Where to report the outcome (`DialCallStatus`, ...); `None` continues with the next verb.
    pub action: Option<Url>,
    /// How to request `action`.
    pub method: HttpMethod,
    /// How long to ring before giving up with `no-answer`.
    pub timeout: Duration,
    /// The caller ID presented to the dialled parties; `None` keeps the caller's.
    pub caller_id: Option<String>,
    /// The longest the bridged call may last.
    pub time_limit: Duration,
    /// Whether the inbound call stays unanswered (relaying ringing) until a target answers.
    pub answer_on_bridge: bool,
    /// Who to ring, in document order; never empty.
    pub nouns: Vec<Noun>,
}

/// One noun of a `<Dial>`: the party to ring and who hears how the calls to it progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noun {
    /// The party.
    pub target: Target,
    /// Progress callbacks for each call placed to the party (one per device of a client).
    pub status_callback: Option<StatusCallback>,
}

impl From<Target> for Noun {
    /// A noun without status callbacks.
    fn from(target: Target) -> Noun {
        Noun {
            target,
            status_callback: None,
        }
    }
}

/// A noun's `statusCallback` (the URL, absolute or relative to the document), its
/// `statusCallbackMethod` (POST by default) and its `statusCallbackEvent`: the events to report,
/// a space-separated subset of `initiated ringing answered completed`, `completed` alone when
/// absent (Twilio's default for `<Number>`, used for every noun). A `statusCallbackEvent` or
/// `statusCallbackMethod` without a `statusCallback` has nothing to report to and is ignored
/// with a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    /// Where the callbacks go.
    pub url: Url,
    /// How they are requested.
    pub method: HttpMethod,
    /// The events reported, in the order the document names them, without repeats; never empty.
    pub events: Vec<ProgressEvent>,
}

impl StatusCallback {
    /// A noun's status callback attributes; `None` without a `statusCallback`.
    fn from_element(
        noun: &Element,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<StatusCallback>, TwimlError> {
        let method = method_attribute(noun, "statusCallbackMethod")?;
        let events = match noun.attribute("statusCallbackEvent") {
            None => vec![ProgressEvent::Completed],
            Some(value) => {
                let mut events = Vec::new();
                for name in value.split_ascii_whitespace() {
                    let event = ProgressEvent::from_name(name)
                        .ok_or_else(|| bad_attribute(noun, "statusCallbackEvent", value))?;
                    if !events.contains(&event) {
                        events.push(event);
                    }
                }
                if events.is_empty() {
                    return Err(bad_attribute(noun, "statusCallbackEvent", value));
                }
                events
            }
        };
        let Some(url) = url_attribute(noun, "statusCallback")? else {
            for attribute in ["statusCallbackEvent", "statusCallbackMethod"] {
                if noun.attribute(attribute).is_some() {
                    warnings.push(Warning::UnusedAttribute {
                        element: noun.name.clone(),
                        attribute: attribute.to_owned(),
                        missing: "statusCallback",
                    });
                }
            }
            return Ok(None);
        };
        Ok(Some(StatusCallback {
            url,
            method,
            events,
        }))
    }
}

/// A party `<Dial>` rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A client identity (its registered devices) and what to tell them.
    Client(Client),
    /// A SIP URI, kept as written (`sip:` or `sips:`).
    Sip(String),
    /// A phone number: an optional `+` and digits, separators removed.
    Number(String),
}

impl fmt::Display for Target {
    /// The party alone, as logs show it: `client:IDENTITY`, the SIP URI or the number. A
    /// client's parameters are left out; they are the application's data, not the log's.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Client(client) => write!(formatter, "client:{}", client.identity),
            Target::Sip(uri) => formatter.write_str(uri),
            Target::Number(number) => formatter.write_str(number),
        }
    }
}

/// A `<Client>` noun: whose devices ring, and the custom parameters each of them is offered.
///
/// The identity is the element's text (`<Client>alice</Client>`) or one `<Identity>` child, not
/// both. Any number of `<Parameter name="..." value="..."/>` children, up to
/// [`Client::MAX_PARAMETERS`], may accompany either form: Twilio's own helper libraries write
/// the text form followed by parameters. A parameter needs a non-empty `name` (kept as written,
/// at most [`Client::MAX_PARAMETER_NAME_BYTES`]) and a `value` attribute (possibly empty, at most
/// [`Client::MAX_PARAMETER_VALUE_BYTES`]). Two parameters of one client may not share a name
/// (compared byte for byte, so `ticket` and `Ticket` differ): they reach the client as one JSON
/// object, and RFC 8259 §4 leaves repeated names to the receiver, most of which (JavaScript's
/// `JSON.parse`, `serde_json`) keep only the last, so the first would be silently lost. A
/// document that repeats one is refused, like any other broken document, rather than
/// half-delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The identity whose reachable devices ring.
    pub identity: String,
    /// The custom parameters as `(name, value)` pairs, in document order; names are unique.
    /// Every device of this identity gets them in its `invite`; other targets do not.
    pub parameters: Vec<(String, String)>,
}

impl Client {
    /// At most this many `<Parameter>`s per `<Client>`.
    pub const MAX_PARAMETERS: usize = 32;
    /// The longest parameter name accepted, in bytes.
    pub const MAX_PARAMETER_NAME_BYTES: usize = 256;
    /// The longest parameter value accepted, in bytes.
    pub const MAX_PARAMETER_VALUE_BYTES: usize = 1024;
    /// The longest identity accepted, in bytes.
    pub const MAX_IDENTITY_BYTES: usize = 256;

    /// A client without custom parameters.
    pub fn new(identity: impl Into<String>) -> Client {
        Client {
            identity: identity.into(),
            parameters: Vec::new(),
        }
    }

    /// Parses a `<Client>` element.
    fn from_element(client: &Element, warnings: &mut Vec<Warning>) -> Result<Self, TwimlError> {
        let mut identity_element = None;
        let mut parameters = Vec::new();
        for child in &client.children {
            match child.name.as_str() {
                "Identity" if identity_element.is_none() => identity_element = Some(child),
                "Parameter" => {
                    if parameters.len() == Self::MAX_PARAMETERS {
                        return Err(TwimlError::TooManyParameters {
                            limit: Self::MAX_PARAMETERS,
                        });
                    }
                    let (name, value) = parameter(child, warnings)?;
                    if parameters.iter().any(|(existing, _)| *existing == name) {
                        return Err(TwimlError::DuplicateParameter { name });
                    }
                    parameters.push((name, value));
                }
                // A second <Identity> is refused like any other unexpected child.
                _ => {
                    return Err(TwimlError::UnexpectedChild {
                        parent: client.name.clone(),
                        child: child.name.clone(),
                    })
                }
            }
        }
        let identity = match identity_element {
            None => required_text(client)?,
            Some(identity) => {
                client.expect_no_text()?;
                identity.expect_no_children()?;
                required_text(identity)?
            }
        };
        if identity.len() > Self::MAX_IDENTITY_BYTES
            || identity
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad_text(client, identity));
        }
        Ok(Client {
            identity: identity.to_owned(),
            parameters,
        })
    }
}

impl Dial {
    /// At most this many nouns per `<Dial>`.
    pub const MAX_NOUNS: usize = 10;
    /// Twilio's default `timeout`, in seconds.
    pub const DEFAULT_TIMEOUT_SECONDS: u32 = 30;
    /// The longest `timeout` accepted, in seconds (Twilio's maximum).
    pub const MAX_TIMEOUT_SECONDS: u32 = 600;
    /// Twilio's default `timeLimit`, in seconds (4 hours).
    pub const DEFAULT_TIME_LIMIT_SECONDS: u32 = 14_400;
    /// The longest `timeLimit` accepted, in seconds (Twilio's maximum, 24 hours).
    pub const MAX_TIME_LIMIT_SECONDS: u32 = 86_400;

    /// Parses a `<Dial>` element.
    pub(crate) fn from_element(
        element: &Element,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, TwimlError> {
        element.warn_unknown_attributes(
            &[
                "action",
                "method",
                "timeout",
                "callerId",
                "timeLimit",
                "answerOnBridge",
            ],
            warnings,
        );
        if element.children.len() > Self::MAX_NOUNS {
            return Err(TwimlError::TooManyNouns {
                limit: Self::MAX_NOUNS,
            });
        }
        let bare = element.trimmed_text();
        let nouns = if element.children.is_empty() {
            if bare.is_empty() {
                return Err(TwimlError::MissingText {
                    element: element.name.clone(),
                });
            }
            vec![Target::Number(phone_number(element, bare)?).into()]
        } else {
            // Mixing a bare number with nouns is ambiguous; Twilio documents one or the other.
            element.expect_no_text()?;
            element
                .children
                .iter()
                .map(|child| noun(element, child, warnings))
                .collect::<Result<Vec<_>, _>>()?
        };
        let caller_id = match element.attribute("callerId") {
            None => None,
            Some(value) => {
                let trimmed = value.trim();
                if trimmed.is_empty()
                    || trimmed.len() > 256
                    || trimmed.chars().any(|c| c.is_control())
                {
                    return Err(bad_attribute(element, "callerId", value));
                }
                Some(trimmed.to_owned())
            }
        };
        let answer_on_bridge = match element.attribute("answerOnBridge") {
            None => false,
            Some(value) => match value.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(bad_attribute(element, "answerOnBridge", value)),
            },
        };
        Ok(Dial {
            action: url_attribute(element, "action")?,
            method: method_attribute(element, "method")?,
            timeout: seconds_attribute(
                element,
                "timeout",
                1..=Self::MAX_TIMEOUT_SECONDS,
                Self::DEFAULT_TIMEOUT_SECONDS,
            )?,
            caller_id,
            time_limit: seconds_attribute(
                element,
                "timeLimit",
                1..=Self::MAX_TIME_LIMIT_SECONDS,
                Self::DEFAULT_TIME_LIMIT_SECONDS,
            )?,
            answer_on_bridge,
            nouns,
        })
    }
}

fn noun(dial: &Element, child: &Element, warnings: &mut Vec<Warning>) -> Result<Noun, TwimlError> {
    // Other noun attributes (url, sendDigits, username, ...) are outside the contract.
    child.warn_unknown_attributes(
        &[
            "statusCallback",
            "statusCallbackEvent",
            "statusCallbackMethod",
        ],
        warnings,
    );
    let target = target(dial, child, warnings)?;
    Ok(Noun {
        target,
        status_callback: StatusCallback::from_element(child, warnings)?,
    })
}

fn target(
    dial: &Element,
    child: &Element,
    warnings: &mut Vec<Warning>,
) -> Result<Target, TwimlError> {
    match child.name.as_str() {
        "Client" => Client::from_element(child, warnings).map(Target::Client),
        "Sip" => {
            child.expect_no_children()?;
            let uri = required_text(child)?;
            let lower = uri.get(..5).map(str::to_ascii_lowercase);
            let has_scheme = lower
                .as_deref()
                .is_some_and(|prefix| prefix.starts_with("sip:") || prefix == "sips:");
            if !has_scheme || uri.len() > 1024 || uri.chars().any(|c| c.is_whitespace()) {
                return Err(bad_text(child, uri));
            }
            Ok(Target::Sip(uri.to_owned()))
        }
        "Number" => {
            child.expect_no_children()?;
            let text = required_text(child)?;
            phone_number(child, text).map(Target::Number)
        }
        _ => Err(TwimlError::UnexpectedChild {
            parent: dial.name.clone(),
            child: child.name.clone(),
        }),
    }
}

/// One `<Parameter name="..." value="..."/>`: its name and value, as written.
fn parameter(
    element: &Element,
    warnings: &mut Vec<Warning>,
) -> Result<(String, String), TwimlError> {
    element.warn_unknown_attributes(&["name", "value"], warnings);
    element.expect_no_children()?;
    element.expect_no_text()?;
    let name = match element.attribute("name") {
        Some(name) if !name.trim().is_empty() => name,
        _ => return Err(TwimlError::MissingParameterName),
    };
    if name.len() > Client::MAX_PARAMETER_NAME_BYTES {
        return Err(TwimlError::ParameterNameTooLong {
            length: name.len(),
            limit: Client::MAX_PARAMETER_NAME_BYTES,
        });
    }
    let Some(value) = element.attribute("value") else {
        return Err(TwimlError::MissingParameterValue {
            name: name.to_owned(),
        });
    };
    if value.len() > Client::MAX_PARAMETER_VALUE_BYTES {
        return Err(TwimlError::ParameterValueTooLong {
            name: name.to_owned(),
            length: value.len(),
            limit: Client::MAX_PARAMETER_VALUE_BYTES,
        });
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// A phone number: an optional leading `+` and 1–20 digits; the visual separators space, `-`,
/// `.`, `(` and `)` are removed.
fn phone_number(element: &Element, text: &str) -> Result<String, TwimlError> {
    let normalized: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = normalized.strip_prefix('+').unwrap_or(&normalized);
    if digits.is_empty() || digits.len() > 20 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad_text(element, text));
    }
    Ok(normalized)
}

fn required_text(element: &Element) -> Result<&str, TwimlError> {
    let text = element.trimmed_text();
    if text.is_empty() {
        Err(TwimlError::MissingText {
            element: element.name.clone(),
        })
    } else {
        Ok(text)
    }
}

fn bad_text(element: &Element, value: &str) -> TwimlError {
    TwimlError::BadText {
        element: element.name.clone(),
        value: value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Result<String, TwimlError> {
        phone_number(&Element::default(), text)
    }

    #[test]
    fn targets_display_the_party_without_parameters() {
        let client = Target::Client(Client {
            identity: "alice".into(),
            parameters: vec![("secret".into(), "s3cr3t".into())],
        });
        assert_eq!(client.to_string(), "client:alice");
        assert_eq!(
            Target::Sip("sip:bob@example.com".into()).to_string(),
            "sip:bob@example.com"
        );
        assert_eq!(Target::Number("+15550100".into()).to_string(), "+15550100");
    }

    #[test]
    fn phone_numbers_are_normalized_and_checked() {
        assert_eq!(
            number("+1 (415) 555-0100").ok().as_deref(),
            Some("+14155550100")
        );
        assert_eq!(number("911").ok().as_deref(), Some("911"));
        assert!(number("+").is_err());
        assert!(number("++1").is_err());
        assert!(number("12a").is_err());
        assert!(number(&"1".repeat(21)).is_err());
    }
}
