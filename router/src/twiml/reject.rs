//! `<Reject>`: refuse the call without answering it. Attribute `reason`: `rejected` (default,
//! SIP 603 Decline) or `busy` (SIP 486 Busy Here).

use super::element::Element;
use super::types::bad_attribute;
use super::{TwimlError, Warning};

/// Refuse the call before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// What the caller is told.
    pub reason: RejectReason,
}

/// Why the call is refused; chooses the SIP final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RejectReason {
    /// `rejected`: RFC 3261 §21.6.4 603 Decline (Twilio's default).
    #[default]
    Rejected,
    /// `busy`: RFC 3261 §21.4.24 486 Busy Here.
    Busy,
}

impl Reject {
    /// Parses a `<Reject>` element.
    pub(crate) fn from_element(
        element: &Element,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, TwimlError> {
        element.warn_unknown_attributes(&["reason"], warnings);
        element.expect_no_children()?;
        element.expect_no_text()?;
        let reason = match element.attribute("reason") {
            None => RejectReason::Rejected,
            Some(value) => match value.trim() {
                "rejected" => RejectReason::Rejected,
                "busy" => RejectReason::Busy,
                _ => return Err(bad_attribute(element, "reason", value)),
            },
        };
        Ok(Reject { reason })
    }
}
