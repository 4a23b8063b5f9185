//! A small, bounded element tree read from a TwiML document with `quick-xml`.
//!
//! Verbs are parsed from this tree rather than from the event stream, so each verb file sees
//! its element whole. The tree is bounded by the document size (checked before reading), the
//! nesting depth and the text length; no DTD is accepted and no entity but the five XML
//! built-ins and character references is resolved, so entity expansion attacks cannot happen.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{TwimlError, Warning, MAX_DEPTH, MAX_TEXT_BYTES};

/// One element: its name, attributes in document order, child elements and concatenated text.
#[derive(Debug, Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attributes: Vec<(String, String)>,
    pub(crate) children: Vec<Element>,
    pub(crate) text: String,
}

impl Element {
    /// The value of `name`, if present.
    pub(crate) fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Records a warning for every attribute not in `known`: Twilio ignores unknown
    /// attributes, and so do we, but the caller may want to log them.
    pub(crate) fn warn_unknown_attributes(&self, known: &[&str], warnings: &mut Vec<Warning>) {
        for (key, _) in &self.attributes {
            if !known.contains(&key.as_str()) {
                warnings.push(Warning::UnknownAttribute {
                    element: self.name.clone(),
                    attribute: key.clone(),
                });
            }
        }
    }

    /// The text with surrounding whitespace removed.
    pub(crate) fn trimmed_text(&self) -> &str {
        self.text.trim()
    }

    /// Fails when the element holds non-whitespace text.
    pub(crate) fn expect_no_text(&self) -> Result<(), TwimlError> {
        if self.trimmed_text().is_empty() {
            Ok(())
        } else {
            Err(TwimlError::UnexpectedText {
                element: self.name.clone(),
            })
        }
    }

    /// Fails when the element has any child element.
    pub(crate) fn expect_no_children(&self) -> Result<(), TwimlError> {
        match self.children.first() {
            None => Ok(()),
            Some(child) => Err(TwimlError::UnexpectedChild {
                parent: self.name.clone(),
                child: child.name.clone(),
            }),
        }
    }
}

/// Reads the single root element of `xml`. The caller has already checked the size.
pub(crate) fn read_root(xml: &[u8]) -> Result<Element, TwimlError> {
    let mut reader = Reader::from_reader(xml);
    // Mismatched end tags are malformed documents, not something to guess around.
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|source| malformed(&reader, source))?;
        match event {
            Event::Start(start) => {
                let element = open(&reader, &start, &stack, root.is_some())?;
                stack.push(element);
            }
            Event::Empty(start) => {
                let element = open(&reader, &start, &stack, root.is_some())?;
                close(element, &mut stack, &mut root);
            }
            Event::End(_) => {
                if let Some(element) = stack.pop() {
                    close(element, &mut stack, &mut root);
                }
            }
            Event::Text(text) => {
                let text = text
                    .decode()
                    .map_err(|source| malformed(&reader, source.into()))?;
                append_text(&mut stack, &text)?;
            }
            Event::CData(data) => {
                let text = data
                    .decode()
                    .map_err(|source| malformed(&reader, source.into()))?;
                append_text(&mut stack, &text)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = if reference.is_char_ref() {
                    reference
                        .resolve_char_ref()
                        .map_err(|source| malformed(&reader, source))?
                        .map(String::from)
                } else {
                    let name = reference
                        .decode()
                        .map_err(|source| malformed(&reader, source.into()))?;
                    match resolve_predefined_entity(&name) {
                        Some(value) => Some(value.to_owned()),
                        None => {
                            return Err(TwimlError::UnknownEntity {
                                name: name.into_owned(),
                            })
                        }
                    }
                };
                if let Some(resolved) = resolved {
                    append_text(&mut stack, &resolved)?;
                }
            }
            // A DTD could declare entities; TwiML never needs one, so refuse it outright.
            Event::DocType(_) => return Err(TwimlError::DocumentType),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.pop() {
        return Err(TwimlError::Unclosed { name: open.name });
    }
    root.ok_or(TwimlError::Empty)
}

fn malformed(reader: &Reader<&[u8]>, source: quick_xml::Error) -> TwimlError {
    TwimlError::Malformed {
        position: reader.error_position(),
        source,
    }
}

fn open(
    reader: &Reader<&[u8]>,
    start: &BytesStart<'_>,
    stack: &[Element],
    has_root: bool,
) -> Result<Element, TwimlError> {
    if stack.is_empty() && has_root {
        return Err(TwimlError::TrailingContent);
    }
    if stack.len() >= MAX_DEPTH {
        return Err(TwimlError::TooDeep { limit: MAX_DEPTH });
    }
    let name = reader
        .decoder()
        .decode(start.name().as_ref())
        .map_err(|source| malformed(reader, source.into()))?
        .into_owned();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|source| malformed(reader, source.into()))?;
        let key = reader
            .decoder()
            .decode(attribute.key.as_ref())
            .map_err(|source| malformed(reader, source.into()))?
            .into_owned();
        let value = attribute
            .unescape_value()
            .map_err(|source| malformed(reader, source))?;
        if value.len() > MAX_TEXT_BYTES {
            return Err(TwimlError::TextTooLong {
                element: name,
                limit: MAX_TEXT_BYTES,
            });
        }
        attributes.push((key, value.into_owned()));
    }
    Ok(Element {
        name,
        attributes,
        ..Element::default()
    })
}

fn close(element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn append_text(stack: &mut [Element], text: &str) -> Result<(), TwimlError> {
    let Some(element) = stack.last_mut() else {
        // Outside the root only whitespace may appear.
        if text.trim().is_empty() {
            return Ok(());
        }
        return Err(TwimlError::TrailingContent);
    };
    if element.text.len() + text.len() > MAX_TEXT_BYTES {
        return Err(TwimlError::TextTooLong {
            element: element.name.clone(),
            limit: MAX_TEXT_BYTES,
        });
    }
    element.text.push_str(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_tree_with_attributes_and_text() {
        let root = read_root(br#"<R a="1" b="x&amp;y"><C>t1</C> mid <D/></R>"#);
        let Ok(root) = root else {
            panic!("{root:?}");
        };
        assert_eq!(root.name, "R");
        assert_eq!(root.attribute("a"), Some("1"));
        assert_eq!(root.attribute("b"), Some("x&y"));
        assert_eq!(root.attribute("c"), None);
        assert_eq!(root.trimmed_text(), "mid");
        let names: Vec<_> = root
            .children
            .iter()
            .map(|child| child.name.as_str())
            .collect();
        assert_eq!(names, ["C", "D"]);
        assert_eq!(root.children[0].text, "t1");
    }

    #[test]
    fn refuses_bad_markup() {
        assert!(matches!(
            read_root(b"<R></R></X>"),
            Err(TwimlError::Malformed { .. })
        ));
        assert!(matches!(
            read_root(br#"<R a="1" a="2"/>"#),
            Err(TwimlError::Malformed { .. })
        ));
        // Undeclared entities in attribute values are refused, not passed through.
        assert!(matches!(
            read_root(br#"<R a="&bomb;"/>"#),
            Err(TwimlError::Malformed { .. })
        ));
        assert!(matches!(
            read_root(b"<R>&#xD800;</R>"),
            Err(TwimlError::Malformed { .. })
        ));
    }

    #[test]
    fn warns_once_per_unknown_attribute() {
        let Ok(root) = read_root(br#"<R known="1" other="2" more="3"/>"#) else {
            panic!("tree");
        };
        let mut warnings = Vec::new();
        root.warn_unknown_attributes(&["known"], &mut warnings);
        assert_eq!(warnings.len(), 2);
        assert!(
            matches!(&warnings[0], Warning::UnknownAttribute { attribute, .. } if attribute == "other")
        );
    }
}
