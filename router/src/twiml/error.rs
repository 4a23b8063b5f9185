//! Why a TwiML document was refused: one typed variant per fault, naming the element,
//! attribute and value at fault so the application's author can fix the document.

use thiserror::Error;

/// A TwiML document that cannot be executed. The fault always lies with the application that
/// returned the document (the webhook), never with the caller or Tandem.
#[derive(Debug, Error)]
pub enum TwimlError {
    /// The document is larger than the limit; refused before any parsing.
    #[error("TwiML document is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Size of the document in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// Elements nest deeper than the limit.
    #[error("TwiML elements nest deeper than {limit} levels")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
    },
    /// The document holds more verbs (nested ones included) than the limit.
    #[error("TwiML document holds more than {limit} verbs")]
    TooManyVerbs {
        /// The verb limit.
        limit: usize,
    },
    /// A `<Dial>` holds more nouns than the limit.
    #[error("<Dial> holds more than {limit} nouns")]
    TooManyNouns {
        /// The noun limit.
        limit: usize,
    },
    /// An element's text or an attribute value is longer than the limit.
    #[error("text of <{element}> is over the {limit}-byte limit")]
    TextTooLong {
        /// The element holding the text.
        element: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The document is not well-formed XML (or not UTF-8).
    #[error("malformed TwiML at byte {position}: {source}")]
    Malformed {
        /// Byte offset in the document where the reader stopped.
        position: u64,
        /// What the XML reader found wrong.
        #[source]
        source: quick_xml::Error,
    },
    /// The document ends before an element is closed.
    #[error("TwiML document ends inside <{name}>")]
    Unclosed {
        /// The element left open.
        name: String,
    },
    /// The document carries a `<!DOCTYPE>`; refused so no entity can ever be declared.
    #[error("TwiML documents must not carry a DOCTYPE")]
    DocumentType,
    /// An entity reference other than the five XML built-ins or a character reference.
    #[error("unknown entity &{name};")]
    UnknownEntity {
        /// The entity name, without `&` and `;`.
        name: String,
    },
    /// The document has no root element.
    #[error("TwiML document has no root element")]
    Empty,
    /// The root element is not `<Response>`.
    #[error("TwiML root element must be <Response>, found <{name}>")]
    BadRoot {
        /// The root element found.
        name: String,
    },
    /// Something other than whitespace, comments or processing instructions after the root.
    #[error("content after the </Response> root element")]
    TrailingContent,
    /// An element inside `<Response>` that is not a known verb.
    #[error("unknown TwiML verb <{name}>")]
    UnknownVerb {
        /// The element name.
        name: String,
    },
    /// An element nested where it is not allowed (e.g. `<Dial>` inside `<Gather>`).
    #[error("<{child}> is not allowed inside <{parent}>")]
    UnexpectedChild {
        /// The enclosing element.
        parent: String,
        /// The misplaced element.
        child: String,
    },
    /// Non-whitespace text inside an element that takes none.
    #[error("<{element}> takes no text")]
    UnexpectedText {
        /// The element holding the text.
        element: String,
    },
    /// An element that needs text (a URL, a number, an identity) has none.
    #[error("<{element}> needs text content")]
    MissingText {
        /// The empty element.
        element: String,
    },
    /// An element's text is not valid for it (a bad URL, number, SIP URI or identity).
    #[error("<{element}> has invalid text {value:?}")]
    BadText {
        /// The element holding the text.
        element: String,
        /// The text as written.
        value: String,
    },
    /// A known attribute with a value outside what the verb accepts.
    #[error("<{verb}> attribute {attribute}={value:?} is invalid")]
    BadAttribute {
        /// The element carrying the attribute.
        verb: String,
        /// The attribute name.
        attribute: String,
        /// The value as written.
        value: String,
    },
    /// A `<Parameter>` without a `name` attribute, or with an empty (or all-whitespace) one.
    #[error("<Parameter> needs a non-empty name attribute")]
    MissingParameterName,
    /// A `<Parameter>` without a `value` attribute (an empty value is allowed).
    #[error("<Parameter name={name:?}> needs a value attribute")]
    MissingParameterValue {
        /// The parameter's name.
        name: String,
    },
    /// A `<Client>` holds more `<Parameter>`s than the limit.
    #[error("<Client> holds more than {limit} <Parameter>s")]
    TooManyParameters {
        /// The parameter limit.
        limit: usize,
    },
    /// A `<Parameter>` name is longer than the limit (the name itself is not repeated).
    #[error("<Parameter> name is {length} bytes, over the {limit}-byte limit")]
    ParameterNameTooLong {
        /// The name's length in bytes.
        length: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A `<Parameter>` value is longer than the limit.
    #[error("<Parameter name={name:?}> value is {length} bytes, over the {limit}-byte limit")]
    ParameterValueTooLong {
        /// The parameter's name.
        name: String,
        /// The value's length in bytes.
        length: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// Two `<Parameter>`s of one `<Client>` share a name, which one JSON object cannot carry.
    #[error("<Client> has more than one <Parameter> named {name:?}")]
    DuplicateParameter {
        /// The repeated name.
        name: String,
    },
    /// `<Gather input>` asks for something other than DTMF, which is all Tandem collects.
    #[error("<Gather input={value:?}> is not supported: only \"dtmf\" is")]
    UnsupportedGatherInput {
        /// The value as written.
        value: String,
    },
}
