//! `<Say>`: speak text to the caller with text-to-speech.
//!
//! Attributes: `voice` (Twilio default `man`), `language` (Twilio default `en-US`), `loop`
//! (default 1, `0` = repeat until the call ends). The text is the element's content.

use super::element::Element;
use super::types::{bad_attribute, loop_attribute, Loop};
use super::{TwimlError, Warning};

/// Speak `text` with a text-to-speech voice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say {
    /// The voice name as written (`man`, `woman`, `alice`, `Polly.Joanna`, ...).
    pub voice: String,
    /// The language tag (`en-US`, `fr-FR`, ...).
    pub language: String,
    /// How many times to speak the text.
    pub loop_count: Loop,
    /// The text to speak, surrounding whitespace removed. May be empty (says nothing).
    pub text: String,
}

impl Say {
    /// Twilio's default voice.
    pub const DEFAULT_VOICE: &'static str = "man";
    /// Twilio's default language.
    pub const DEFAULT_LANGUAGE: &'static str = "en-US";

    /// Parses a `<Say>` element.
    pub(crate) fn from_element(
        element: &Element,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, TwimlError> {
        element.warn_unknown_attributes(&["voice", "language", "loop"], warnings);
        // Twilio allows SSML children inside <Say>; Tandem speaks plain text only.
        element.expect_no_children()?;
        Ok(Say {
            voice: name_attribute(element, "voice", Self::DEFAULT_VOICE)?,
            language: name_attribute(element, "language", Self::DEFAULT_LANGUAGE)?,
            loop_count: loop_attribute(element)?,
            text: element.trimmed_text().to_owned(),
        })
    }
}

/// A voice or language name: 1–64 ASCII letters, digits, `-`, `_` or `.`.
fn name_attribute(element: &Element, name: &str, default: &str) -> Result<String, TwimlError> {
    let Some(value) = element.attribute(name) else {
        return Ok(default.to_owned());
    };
    let trimmed = value.trim();
    let valid = !trimmed.is_empty()
        && trimmed.len() <= 64
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(trimmed.to_owned())
    } else {
        Err(bad_attribute(element, name, value))
    }
}
