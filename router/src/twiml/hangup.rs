//! `<Hangup>`: end the call. No attributes, no content.

use super::element::Element;
use super::{TwimlError, Warning};

/// End the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hangup;

impl Hangup {
    /// Parses a `<Hangup>` element.
    pub(crate) fn from_element(
        element: &Element,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, TwimlError> {
        element.warn_unknown_attributes(&[], warnings);
        element.expect_no_children()?;
        element.expect_no_text()?;
        Ok(Hangup)
    }
}
