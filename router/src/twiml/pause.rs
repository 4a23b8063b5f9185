//! `<Pause>`: wait in silence. Attribute `length` in whole seconds, default 1.

use std::time::Duration;

use super::element::Element;
use super::types::seconds_attribute;
use super::{TwimlError, Warning};

/// Wait `length` in silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// How long to wait.
    pub length: Duration,
}

impl Pause {
    /// The longest pause accepted, in seconds; bounds how long one verb can hold a call.
    pub const MAX_SECONDS: u32 = 3600;

    /// Parses a `<Pause>` element.
    pub(crate) fn from_element(
        element: &Element,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, TwimlError> {
        element.warn_unknown_attributes(&["length"], warnings);
        element.expect_no_children()?;
        element.expect_no_text()?;
        Ok(Pause {
            length: seconds_attribute(element, "length", 0..=Self::MAX_SECONDS, 1)?,
        })
    }
}
