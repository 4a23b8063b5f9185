//! `<Redirect>`: continue with the instructions at another URL. Attribute `method` (default
//! POST); the URL is the element's text and may be relative to the document's URL.

use super::element::Element;
use super::types::{method_attribute, url_text, HttpMethod, Url};
use super::{TwimlError, Warning};

/// Fetch the next instructions from `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// How to request the URL.
    pub method: HttpMethod,
    /// Where the next instructions are.
    pub url: Url,
}

impl Redirect {
    /// Parses a `<Redirect>` element.
    pub(crate) fn from_element(
        element: &Element,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, TwimlError> {
        element.warn_unknown_attributes(&["method"], warnings);
        Ok(Redirect {
            method: method_attribute(element, "method")?,
            url: url_text(element)?,
        })
    }
}
