//! Bodies by content type: a partner's answer read into JSON for the steps after it, and a
//! step's computed body encoded as JSON, a form, XML or text.
//!
//! # The XML mapping
//!
//! An XML document becomes an object with one key, the root element's name. An element
//! becomes
//! - a string, its text, when it has neither attributes nor child elements (`<id>7</id>` →
//!   `"7"`, `<id/>` → `""`);
//! - else an object: each attribute as `"@name"`, each child element under its name (a name
//!   that repeats becomes an array, in document order), and the element's own text, if any
//!   besides whitespace, as `"#text"`.
//!
//! Names keep their prefix (`soap:Envelope`); comments, processing instructions and the XML
//! declaration are dropped; CDATA is text. Encoding a body does the reverse: the object's one
//! key is the root, `"@name"` keys are attributes, `"#text"` is text, arrays repeat the element,
//! numbers and booleans are written as text, `null` as an empty element.
//!
//! A document with a `DOCTYPE` is refused, so no entity is ever expanded (no "billion laughs",
//! no external entity reaching a file or a URL), and so is one nested deeper than
//! [`MAX_DEPTH`].

use base64::Engine as _;
use hookyard_core::{config::BodyFormat, json::MAX_DEPTH};
use quick_xml::{
    Reader, Writer, XmlVersion,
    escape::resolve_predefined_entity,
    events::{BytesEnd, BytesStart, BytesText, Event},
};
use serde_json::{Map, Value};

/// A body could not be read or written in its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The XML is malformed, has a DTD, or nests too deep.
    #[error("invalid XML: {0}")]
    Xml(String),
    /// The value does not fit the format.
    #[error("a {format} body {why}")]
    Shape {
        /// `form`, `xml` or `text`.
        format: &'static str,
        /// What the value should have been.
        why: &'static str,
    },
}

/// A partner's answer body as `$steps.<name>.body`: by its `Content-Type`, XML and forms
/// become objects (an unreadable one stays text); otherwise JSON when it parses as JSON (within
/// the depth limit), else text, or base64 for bytes that are not UTF-8 in a type that is not
/// text.
pub fn read(content_type: Option<&str>, body: &[u8]) -> Value {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if is_xml(&essence)
        && let Ok(value) = xml_to_json(body)
    {
        return value;
    }
    if essence == "application/x-www-form-urlencoded" {
        return form_to_json(body);
    }
    if hookyard_core::json::check_depth(body, MAX_DEPTH).is_ok()
        && let Ok(value) = serde_json::from_slice(body)
    {
        return value;
    }
    match std::str::from_utf8(body) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) if essence.starts_with("text/") => {
            Value::String(String::from_utf8_lossy(body).into_owned())
        }
        Err(_) => Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
    }
}

fn is_xml(essence: &str) -> bool {
    matches!(essence, "application/xml" | "text/xml") || essence.ends_with("+xml")
}

/// Encodes a step's computed body.
pub fn write(format: BodyFormat, value: &Value) -> Result<Vec<u8>, BodyError> {
    match format {
        BodyFormat::Json => Ok(value.to_string().into_bytes()),
        BodyFormat::Form => json_to_form(value),
        BodyFormat::Xml => json_to_xml(value),
        BodyFormat::Text => match value {
            Value::String(s) => Ok(s.clone().into_bytes()),
            _ => Err(BodyError::Shape {
                format: "text",
                why: "must be a string",
            }),
        },
    }
}

fn form_to_json(body: &[u8]) -> Value {
    let mut map = Map::new();
    for (key, value) in form_urlencoded::parse(body) {
        let value = Value::String(value.into_owned());
        match map.get_mut(key.as_ref()) {
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                map.insert(key.into_owned(), value);
            }
        }
    }
    Value::Object(map)
}

fn json_to_form(value: &Value) -> Result<Vec<u8>, BodyError> {
    let shape = BodyError::Shape {
        format: "form",
        why: "must be an object whose values are strings, numbers, booleans or arrays of them",
    };
    let Value::Object(map) = value else {
        return Err(shape);
    };
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (key, value) in map {
        let values = match value {
            Value::Array(values) => values.as_slice(),
            single => std::slice::from_ref(single),
        };
        for v in values {
            match scalar_text(v) {
                Some(text) => form.append_pair(key, &text),
                None if v.is_null() => continue,
                None => return Err(shape),
            };
        }
    }
    Ok(form.finish().into_bytes())
}

/// Text of a string, number or boolean.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An element being read: its name, attributes and children so far, and its text.
struct Open {
    name: String,
    fields: Map<String, Value>,
    text: String,
}

impl Open {
    fn new(start: &BytesStart<'_>) -> Result<Self, BodyError> {
        let mut fields = Map::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| BodyError::Xml(e.to_string()))?;
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| BodyError::Xml(e.to_string()))?;
            fields.insert(
                format!("@{}", attr.key.as_ref()),
                Value::String(value.into_owned()),
            );
        }
        Ok(Self {
            name: start.name().as_ref().to_owned(),
            fields,
            text: String::new(),
        })
    }

    fn into_value(mut self) -> (String, Value) {
        let text = self.text.trim();
        let value = if self.fields.is_empty() {
            Value::String(text.to_owned())
        } else {
            if !text.is_empty() {
                self.fields
                    .insert("#text".to_owned(), Value::String(text.to_owned()));
            }
            Value::Object(self.fields)
        };
        (self.name, value)
    }

    fn add_child(&mut self, name: String, value: Value) {
        match self.fields.get_mut(&name) {
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                self.fields.insert(name, value);
            }
        }
    }
}

fn xml_to_json(body: &[u8]) -> Result<Value, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::Xml(e.to_string()))?;
    let mut reader = Reader::from_str(text);
    let mut open: Vec<Open> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    let err = |e: quick_xml::Error| BodyError::Xml(e.to_string());
    loop {
        match reader.read_event().map_err(err)? {
            Event::Start(start) => {
                if open.len() >= MAX_DEPTH {
                    return Err(BodyError::Xml(format!(
                        "nested more than {MAX_DEPTH} levels deep"
                    )));
                }
                open.push(Open::new(&start)?);
            }
            Event::Empty(start) => {
                let (name, value) = Open::new(&start)?.into_value();
                close(&mut open, &mut root, name, value)?;
            }
            Event::End(_) => {
                let Some(element) = open.pop() else {
                    return Err(BodyError::Xml("unexpected end tag".to_owned()));
                };
                let (name, value) = element.into_value();
                close(&mut open, &mut root, name, value)?;
            }
            Event::Text(t) => push_text(&mut open, &t.xml10_content())?,
            Event::CData(c) => push_text(&mut open, &c.xml10_content())?,
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(err)? {
                    Some(c) => c.to_string(),
                    None => resolve_predefined_entity(&r.xml10_content())
                        .ok_or_else(|| {
                            BodyError::Xml(format!("unknown entity &{};", r.xml10_content()))
                        })?
                        .to_owned(),
                };
                push_text(&mut open, &resolved)?;
            }
            Event::DocType(_) => {
                return Err(BodyError::Xml(
                    "a DOCTYPE is refused (no entity is expanded)".to_owned(),
                ));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !open.is_empty() {
        return Err(BodyError::Xml(
            "the document ends inside an element".to_owned(),
        ));
    }
    let (name, value) = root.ok_or_else(|| BodyError::Xml("no root element".to_owned()))?;
    let mut map = Map::new();
    map.insert(name, value);
    Ok(Value::Object(map))
}

/// Adds text to the element being read; outside the root only whitespace is allowed.
fn push_text(open: &mut [Open], text: &str) -> Result<(), BodyError> {
    match open.last_mut() {
        Some(current) => current.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err(BodyError::Xml("text outside the root element".to_owned())),
    }
    Ok(())
}

fn close(
    open: &mut [Open],
    root: &mut Option<(String, Value)>,
    name: String,
    value: Value,
) -> Result<(), BodyError> {
    match open.last_mut() {
        Some(parent) => parent.add_child(name, value),
        None if root.is_none() => *root = Some((name, value)),
        None => return Err(BodyError::Xml("more than one root element".to_owned())),
    }
    Ok(())
}

fn json_to_xml(value: &Value) -> Result<Vec<u8>, BodyError> {
    let shape = BodyError::Shape {
        format: "xml",
        why: "must be an object with one key, the root element",
    };
    let Value::Object(map) = value else {
        return Err(shape);
    };
    let mut entries = map.iter();
    let (Some((root, content)), None) = (entries.next(), entries.next()) else {
        return Err(shape);
    };
    if content.is_array() {
        return Err(shape);
    }
    let mut writer = Writer::new(Vec::new());
    write_element(&mut writer, root, content, 0)?;
    Ok(writer.into_inner())
}

fn write_element(
    writer: &mut Writer<Vec<u8>>,
    name: &str,
    value: &Value,
    depth: usize,
) -> Result<(), BodyError> {
    if depth >= MAX_DEPTH {
        return Err(BodyError::Xml(format!(
            "nested more than {MAX_DEPTH} levels deep"
        )));
    }
    if !valid_xml_name(name) {
        return Err(BodyError::Xml(format!(
            "{name:?} is not an XML element name"
        )));
    }
    let io = |e: std::io::Error| BodyError::Xml(e.to_string());
    match value {
        Value::Array(items) => {
            for item in items {
                write_element(writer, name, item, depth + 1)?;
            }
            return Ok(());
        }
        Value::Object(fields) => {
            let mut start = BytesStart::new(name);
            for (key, v) in fields {
                if let Some(attr) = key.strip_prefix('@') {
                    if !valid_xml_name(attr) {
                        return Err(BodyError::Xml(format!(
                            "{attr:?} is not an XML attribute name"
                        )));
                    }
                    let text = scalar_text(v).unwrap_or_default();
                    start.push_attribute((attr, text.as_str()));
                }
            }
            writer.write_event(Event::Start(start)).map_err(io)?;
            for (key, v) in fields {
                if key == "#text" {
                    let text = scalar_text(v).unwrap_or_default();
                    writer
                        .write_event(Event::Text(BytesText::new(&text)))
                        .map_err(io)?;
                } else if !key.starts_with('@') {
                    write_element(writer, key, v, depth + 1)?;
                }
            }
        }
        Value::Null => {
            writer
                .write_event(Event::Empty(BytesStart::new(name)))
                .map_err(io)?;
            return Ok(());
        }
        scalar => {
            writer
                .write_event(Event::Start(BytesStart::new(name)))
                .map_err(io)?;
            let text = scalar_text(scalar).unwrap_or_default();
            writer
                .write_event(Event::Text(BytesText::new(&text)))
                .map_err(io)?;
        }
    }
    writer
        .write_event(Event::End(BytesEnd::new(name)))
        .map_err(io)
}

/// A conservative XML name: a letter or `_` first, then letters, digits, `-`, `_`, `.`, `:`.
fn valid_xml_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn xml_reads_into_the_documented_mapping() {
        let xml = br#"<?xml version="1.0"?>
<!-- a comment -->
<order id="o-7" status="open">
  <customer>Ada &amp; Co &#x263A;</customer>
  <line sku="A">2</line>
  <line sku="B">1</line>
  <note><![CDATA[<b>fragile</b>]]></note>
  <empty/>
</order>"#;
        assert_eq!(
            read(Some("application/xml; charset=utf-8"), xml),
            json!({"order": {
                "@id": "o-7", "@status": "open",
                "customer": "Ada & Co \u{263A}",
                "line": [{"@sku": "A", "#text": "2"}, {"@sku": "B", "#text": "1"}],
                "note": "<b>fragile</b>",
                "empty": ""
            }})
        );
    }

    #[test]
    fn hostile_xml_is_refused_and_read_as_text() {
        let laughs = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert!(matches!(xml_to_json(laughs), Err(BodyError::Xml(m)) if m.contains("DOCTYPE")));
        let external = br#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>"#;
        assert!(xml_to_json(external).is_err());
        assert!(
            matches!(xml_to_json(b"<x>&nope;</x>"), Err(BodyError::Xml(m)) if m.contains("unknown entity"))
        );
        let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
        assert!(
            matches!(xml_to_json(deep.as_bytes()), Err(BodyError::Xml(m)) if m.contains("levels"))
        );
        for bad in [
            &b"<a><b></a>"[..],
            b"<a>",
            b"<a/><b/>",
            b"text",
            b"",
            b"\xff\xfe<a/>",
        ] {
            assert!(xml_to_json(bad).is_err(), "{bad:?}");
        }
        // An answer that claims XML but is not stays readable as text.
        assert_eq!(read(Some("text/xml"), b"<a>"), json!("<a>"));
    }

    #[test]
    fn forms_json_and_text_by_content_type() {
        assert_eq!(
            read(
                Some("application/x-www-form-urlencoded"),
                b"a=1&b=x+y&a=2&c=%26"
            ),
            json!({"a": ["1", "2"], "b": "x y", "c": "&"})
        );
        assert_eq!(
            read(Some("application/json"), br#"{"ok":true}"#),
            json!({"ok": true})
        );
        assert_eq!(read(None, b"[1,2]"), json!([1, 2]));
        assert_eq!(read(Some("text/plain"), b"hello"), json!("hello"));
        assert_eq!(read(Some("text/plain"), b"\xffx"), json!("\u{fffd}x"));
        assert_eq!(
            read(Some("application/octet-stream"), b"\xff\x00"),
            json!("/wA=")
        );
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(read(Some("application/json"), deep.as_bytes()), json!(deep));
    }

    #[test]
    fn bodies_are_written_in_their_format() {
        let form = write(
            BodyFormat::Form,
            &json!({"a": "x y", "n": 2, "t": true, "r": ["1", "2"], "z": null}),
        );
        assert_eq!(form, Ok(b"a=x+y&n=2&r=1&r=2&t=true".to_vec()));
        assert!(write(BodyFormat::Form, &json!({"a": {"b": 1}})).is_err());
        assert!(write(BodyFormat::Form, &json!([1])).is_err());

        let xml = write(
            BodyFormat::Xml,
            &json!({"order": {"@id": "o<7", "line": [{"@sku": "A", "#text": 2}, "x&y"], "note": null}}),
        )
        .expect("xml");
        let text = String::from_utf8(xml.clone()).expect("utf-8");
        assert_eq!(
            text,
            r#"<order id="o&lt;7"><line sku="A">2</line><line>x&amp;y</line><note/></order>"#
        );
        // What is written reads back as the same value, with text as strings.
        assert_eq!(
            read(Some("application/xml"), &xml),
            json!({"order": {"@id": "o<7", "line": [{"@sku": "A", "#text": "2"}, "x&y"], "note": ""}})
        );
        for bad in [
            json!("x"),
            json!({}),
            json!({"a": 1, "b": 2}),
            json!({"1bad": 1}),
            json!({"a": {"@x y": 1}}),
        ] {
            assert!(write(BodyFormat::Xml, &bad).is_err(), "{bad}");
        }

        assert_eq!(
            write(BodyFormat::Text, &json!("plain")),
            Ok(b"plain".to_vec())
        );
        assert!(write(BodyFormat::Text, &json!(1)).is_err());
        assert_eq!(
            write(BodyFormat::Json, &json!({"a": 1})),
            Ok(br#"{"a":1}"#.to_vec())
        );
    }
}
