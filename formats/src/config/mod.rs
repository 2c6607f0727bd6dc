//! Kerio's XML configuration files (`mailserver.cfg`, `users.cfg`): root
//! `<config>`, records as `<list name="X">` of `<listitem>` holding
//! `<variable name="Field">value</variable>`, scalar groups as
//! `<table name="…">`. This module reads the records mailvault needs and
//! writes files of that shape (for sample installs). Values such as password
//! hashes are opaque strings, copied verbatim and never decoded.

pub mod edit;
pub mod users;

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::Event;

use crate::{Error, Result};

/// One `<listitem>` of a `<list>`: its variables, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListItem {
    /// `(name, value)` of each `<variable>`.
    pub vars: Vec<(String, String)>,
}

impl ListItem {
    /// The value of variable `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads every `<listitem>` of the `<list name="{list}">` in a config file.
///
/// # Errors
/// Malformed XML or non-UTF-8 input, with the byte offset.
pub fn list_items(file: &str, xml: &[u8], list: &str) -> Result<Vec<ListItem>> {
    let text = std::str::from_utf8(xml).map_err(|e| Error::Xml {
        file: file.to_string(),
        offset: e.valid_up_to() as u64,
        reason: "not UTF-8".into(),
    })?;
    let mut reader = Reader::from_str(text);
    let xml_err = |reader: &Reader<&[u8]>, reason: String| Error::Xml {
        file: file.to_string(),
        offset: reader.error_position(),
        reason,
    };
    let mut depth_in_list: Option<usize> = None;
    let mut depth = 0usize;
    let mut items = Vec::new();
    let mut current: Option<ListItem> = None;
    let mut var: Option<(String, String)> = None;
    let mut saw_root = false;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| xml_err(&reader, e.to_string()))?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                let attr_name = || name_attr(&e).map_err(|r| xml_err(&reader, r));
                match e.name().as_ref() {
                    "config" if depth == 1 => saw_root = true,
                    "list" if depth_in_list.is_none() && attr_name()?.as_deref() == Some(list) => {
                        depth_in_list = Some(depth);
                    }
                    "listitem" if depth_in_list == Some(depth - 1) => {
                        current = Some(ListItem::default())
                    }
                    "variable" if current.is_some() => {
                        var = Some((attr_name()?.unwrap_or_default(), String::new()))
                    }
                    _ => {}
                }
                if depth == 1 && !saw_root {
                    return Err(xml_err(&reader, "root element must be <config>".into()));
                }
            }
            Event::Empty(e) if e.name().as_ref() == "variable" => {
                if let Some(item) = current.as_mut() {
                    let n = name_attr(&e).map_err(|r| xml_err(&reader, r))?;
                    item.vars.push((n.unwrap_or_default(), String::new()));
                }
            }
            Event::Text(t) => {
                if let Some((_, v)) = var.as_mut() {
                    v.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some((_, v)) = var.as_mut() {
                    v.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, v)) = var.as_mut() {
                    let c = entity_char(&r).map_err(|m| xml_err(&reader, m))?;
                    v.push(c);
                }
            }
            Event::End(e) => {
                match e.name().as_ref() {
                    "variable" => {
                        if let (Some(v), Some(item)) = (var.take(), current.as_mut()) {
                            item.vars.push(v);
                        }
                    }
                    "listitem" if depth_in_list == Some(depth - 1) => items.extend(current.take()),
                    "list" if depth_in_list == Some(depth) => depth_in_list = None,
                    _ => {}
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(Error::Xml {
            file: file.to_string(),
            offset: 0,
            reason: "no <config> root element".into(),
        });
    }
    if depth != 0 {
        return Err(Error::Xml {
            file: file.to_string(),
            offset: text.len() as u64,
            reason: "unexpected end of file".into(),
        });
    }
    Ok(items)
}

fn name_attr(e: &quick_xml::events::BytesStart<'_>) -> std::result::Result<Option<String>, String> {
    match e.try_get_attribute("name").map_err(|er| er.to_string())? {
        Some(a) => Ok(Some(
            a.normalized_value(XmlVersion::Implicit1_0)
                .map_err(|er| er.to_string())?
                .into_owned(),
        )),
        None => Ok(None),
    }
}

/// Escapes text for an XML element or attribute.
#[must_use]
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The `<variable>`s of one `<listitem>`, for [`write_config`].
pub type Vars<'a> = Vec<(&'a str, String)>;

/// Writes a Kerio-shaped config file: `<config>` with the given lists.
#[must_use]
pub fn write_config(lists: &[(&str, Vec<Vars<'_>>)]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<config>\n");
    for (name, items) in lists {
        s.push_str(&format!("  <list name=\"{}\">\n", escape(name)));
        for item in items {
            s.push_str("    <listitem>\n");
            for (k, v) in item {
                s.push_str(&format!(
                    "      <variable name=\"{}\">{}</variable>\n",
                    escape(k),
                    escape(v)
                ));
            }
            s.push_str("    </listitem>\n");
        }
        s.push_str("  </list>\n");
    }
    s.push_str("</config>\n");
    s
}

/// The character an entity or character reference (`&amp;`, `&#233;`)
/// stands for: XML's five predefined entities, or why not.
pub(crate) fn entity_char(r: &quick_xml::events::BytesRef<'_>) -> Result<char, String> {
    match r.resolve_char_ref().map_err(|e| e.to_string())? {
        Some(c) => Ok(c),
        None => match &**r {
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "amp" => Ok('&'),
            "quot" => Ok('"'),
            "apos" => Ok('\''),
            other => Err(format!("unknown entity `&{other};`")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_items_of_the_named_list_only() {
        let xml = write_config(&[
            ("Domain", vec![vec![("Domain", "a.cz".into())]]),
            (
                "User",
                vec![
                    vec![("Name", "jan".into()), ("FullName", "Jan <&> Novák".into())],
                    vec![("Name", "eva".into())],
                ],
            ),
        ]);
        let users = list_items("users.cfg", xml.as_bytes(), "User").unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].get("FullName"), Some("Jan <&> Novák"));
        assert_eq!(
            list_items("users.cfg", xml.as_bytes(), "Domain").unwrap()[0].get("Domain"),
            Some("a.cz")
        );
    }

    #[test]
    fn names_malformed_xml() {
        let e = list_items(
            "users.cfg",
            b"<config><list name=\"User\"><listitem></list></config>",
            "User",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("users.cfg: malformed XML"), "{e}");
        assert!(list_items("users.cfg", b"<config><list>", "User").is_err());
        assert!(list_items("users.cfg", b"<other/>", "User").is_err());
    }
}
