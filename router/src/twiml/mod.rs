//! TwiML call instructions: a sans-IO parser from the XML an application returns to typed
//! verbs, one file per verb (mini-redis style), dispatched by [`Verb`].
//!
//! Twilio compatibility: element and attribute names are case-sensitive as in Twilio's
//! documentation, defaults follow Twilio's, unknown attributes are ignored (and reported as
//! [`Warning`]s), while unknown verbs and bad attribute values are errors so that a broken
//! application fails loudly instead of being half-executed.
//!
//! Invariant: the parser is bounded: document size ([`MAX_DOCUMENT_BYTES`], checked before
//! reading), nesting ([`MAX_DEPTH`]), verbs ([`MAX_VERBS`]), text ([`MAX_TEXT_BYTES`]),
//! `<Dial>` nouns ([`Dial::MAX_NOUNS`]) and `<Client>` parameters ([`Client::MAX_PARAMETERS`],
//! each name and value bounded too). No DTD is accepted and only the five XML built-in
//! entities and character references are resolved.

mod dial;
mod element;
mod error;
mod gather;
mod hangup;
mod pause;
mod play;
mod redirect;
mod reject;
mod say;
mod types;

pub use dial::{Client, Dial, Noun, StatusCallback, Target};
pub use error::TwimlError;
pub use gather::{Gather, Prompt};
pub use hangup::Hangup;
pub use pause::Pause;
pub use play::Play;
pub use redirect::Redirect;
pub use reject::{Reject, RejectReason};
pub use say::Say;
pub use types::{HttpMethod, Loop, ProgressEvent, Url, Warning};

use element::Element;

/// The largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// The deepest element nesting accepted (`<Response>` is level 1).
pub const MAX_DEPTH: usize = 8;
/// The most verbs one document may hold, counting those nested in `<Gather>`.
pub const MAX_VERBS: usize = 100;
/// The longest text of one element or one attribute value, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

/// A parsed `<Response>`: the verbs to run in order, and what was ignored on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The verbs, in document order.
    pub verbs: Vec<Verb>,
    /// Ignored parts of the document (unknown attributes), for the caller to log.
    pub warnings: Vec<Warning>,
}

/// One call instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// Speak text.
    Say(Say),
    /// Play audio from a URL.
    Play(Play),
    /// Wait in silence.
    Pause(Pause),
    /// Collect DTMF digits.
    Gather(Gather),
    /// Ring other parties and bridge the first to answer.
    Dial(Dial),
    /// Continue with the instructions at another URL.
    Redirect(Redirect),
    /// End the call.
    Hangup(Hangup),
    /// Refuse the call without answering.
    Reject(Reject),
}

/// Parses a TwiML document. No I/O: relative URLs are left for the caller to resolve against
/// the document's URL.
pub fn parse(xml: &[u8]) -> Result<Response, TwimlError> {
    if xml.len() > MAX_DOCUMENT_BYTES {
        return Err(TwimlError::TooLarge {
            size: xml.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let root = element::read_root(xml)?;
    if root.name != "Response" {
        return Err(TwimlError::BadRoot { name: root.name });
    }
    root.expect_no_text()?;
    let verb_count = root.children.len()
        + root
            .children
            .iter()
            .filter(|child| child.name == "Gather")
            .map(|gather| gather.children.len())
            .sum::<usize>();
    if verb_count > MAX_VERBS {
        return Err(TwimlError::TooManyVerbs { limit: MAX_VERBS });
    }
    let mut warnings = Vec::new();
    root.warn_unknown_attributes(&[], &mut warnings);
    let verbs = root
        .children
        .iter()
        .map(|child| Verb::from_element(child, &mut warnings))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response { verbs, warnings })
}

impl Verb {
    /// Dispatches on the element name to the verb's own parser.
    fn from_element(element: &Element, warnings: &mut Vec<Warning>) -> Result<Self, TwimlError> {
        Ok(match element.name.as_str() {
            "Say" => Verb::Say(Say::from_element(element, warnings)?),
            "Play" => Verb::Play(Play::from_element(element, warnings)?),
            "Pause" => Verb::Pause(Pause::from_element(element, warnings)?),
            "Gather" => Verb::Gather(Gather::from_element(element, warnings)?),
            "Dial" => Verb::Dial(Dial::from_element(element, warnings)?),
            "Redirect" => Verb::Redirect(Redirect::from_element(element, warnings)?),
            "Hangup" => Verb::Hangup(Hangup::from_element(element, warnings)?),
            "Reject" => Verb::Reject(Reject::from_element(element, warnings)?),
            _ => {
                return Err(TwimlError::UnknownVerb {
                    name: element.name.clone(),
                })
            }
        })
    }
}
