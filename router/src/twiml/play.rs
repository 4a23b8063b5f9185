//! `<Play>`: play an audio file to the caller.
//!
//! Attribute: `loop` (default 1, `0` = repeat until the call ends). The URL is the element's
//! text; it may be relative to the document's URL. Twilio's `digits` attribute is not part of
//! Tandem's contract and is ignored with a warning like any unknown attribute.

use super::element::Element;
use super::types::{loop_attribute, url_text, Loop, Url};
use super::{TwimlError, Warning};

/// Play the audio at `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    /// How many times to play it.
    pub loop_count: Loop,
    /// Where the audio is.
    pub url: Url,
}

impl Play {
    /// Parses a `<Play>` element.
    pub(crate) fn from_element(
        element: &Element,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, TwimlError> {
        element.warn_unknown_attributes(&["loop"], warnings);
        Ok(Play {
            loop_count: loop_attribute(element)?,
            url: url_text(element)?,
        })
    }
}
