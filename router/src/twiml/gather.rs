//! `<Gather>`: collect DTMF digits from the caller while (optionally) prompting with nested
//! `<Say>`, `<Play>` and `<Pause>`.
//!
//! Attributes, with Twilio's defaults: `input` (only `dtmf`), `numDigits` (none: until
//! `finishOnKey` or timeout), `finishOnKey` (`#`; `""` disables it), `timeout` (5 s), `action`
//! (none: execution continues with the next verb), `method` (POST).

use std::num::NonZeroU32;
use std::time::Duration;

use super::element::Element;
use super::types::{
    bad_attribute, integer_attribute, method_attribute, seconds_attribute, url_attribute,
    HttpMethod, Url,
};
use super::{Pause, Play, Say, TwimlError, Warning};

/// Collect digits, then request `action` with them (Twilio's `Digits` parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gather {
    /// Stop after this many digits; `None` waits for `finish_on_key` or the timeout.
    pub num_digits: Option<NonZeroU32>,
    /// The key that ends input (not included in the digits); `None` when disabled with `""`.
    pub finish_on_key: Option<char>,
    /// How long to wait for the next digit.
    pub timeout: Duration,
    /// Where to send the digits; `None` continues with the next verb.
    pub action: Option<Url>,
    /// How to request `action`.
    pub method: HttpMethod,
    /// Prompts played while waiting; a digit interrupts them.
    pub prompts: Vec<Prompt>,
}

/// A verb allowed inside `<Gather>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// A nested `<Say>`.
    Say(Say),
    /// A nested `<Play>`.
    Play(Play),
    /// A nested `<Pause>`.
    Pause(Pause),
}

impl Gather {
    /// Twilio's default `finishOnKey`.
    pub const DEFAULT_FINISH_ON_KEY: char = '#';
    /// Twilio's default `timeout`, in seconds.
    pub const DEFAULT_TIMEOUT_SECONDS: u32 = 5;
    /// The largest `numDigits` accepted.
    pub const MAX_DIGITS: u32 = 128;
    /// The longest `timeout` accepted, in seconds.
    pub const MAX_TIMEOUT_SECONDS: u32 = 600;

    /// Parses a `<Gather>` element.
    pub(crate) fn from_element(
        element: &Element,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, TwimlError> {
        element.warn_unknown_attributes(
            &[
                "input",
                "numDigits",
                "finishOnKey",
                "timeout",
                "action",
                "method",
            ],
            warnings,
        );
        if let Some(input) = element.attribute("input") {
            if input.trim() != "dtmf" {
                return Err(TwimlError::UnsupportedGatherInput {
                    value: input.to_owned(),
                });
            }
        }
        element.expect_no_text()?;
        let num_digits = match element.attribute("numDigits") {
            None => None,
            Some(_) => NonZeroU32::new(integer_attribute(
                element,
                "numDigits",
                1..=Self::MAX_DIGITS,
                1,
            )?),
        };
        let finish_on_key = match element.attribute("finishOnKey") {
            None => Some(Self::DEFAULT_FINISH_ON_KEY),
            Some(value) => {
                let mut chars = value.chars();
                match (chars.next(), chars.next()) {
                    (None, _) => None,
                    (Some(key), None) if key.is_ascii_digit() || key == '#' || key == '*' => {
                        Some(key)
                    }
                    _ => return Err(bad_attribute(element, "finishOnKey", value)),
                }
            }
        };
        let prompts = element
            .children
            .iter()
            .map(|child| match child.name.as_str() {
                "Say" => Say::from_element(child, warnings).map(Prompt::Say),
                "Play" => Play::from_element(child, warnings).map(Prompt::Play),
                "Pause" => Pause::from_element(child, warnings).map(Prompt::Pause),
                _ => Err(TwimlError::UnexpectedChild {
                    parent: element.name.clone(),
                    child: child.name.clone(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Gather {
            num_digits,
            finish_on_key,
            timeout: seconds_attribute(
                element,
                "timeout",
                1..=Self::MAX_TIMEOUT_SECONDS,
                Self::DEFAULT_TIMEOUT_SECONDS,
            )?,
            action: url_attribute(element, "action")?,
            method: method_attribute(element, "method")?,
            prompts,
        })
    }
}
