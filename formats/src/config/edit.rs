//! Editing values in a Kerio XML config file without touching anything
//! else: [`variables`] lists every `<variable>` with where its text lies in
//! the file and which `<table>`/`<list>` holds it; [`replace_values`] puts
//! new text into exactly those byte ranges. Unknown elements, comments,
//! attribute quoting, whitespace and every other value stay byte for byte
//! (the server loads the file as it is; a re-serialised file would differ
//! in ways nobody reviewed). A value that holds markup other than text and
//! character references is listed without a range and is never edited.

use std::ops::Range;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::{escape, name_attr};
use crate::{Error, Result};

/// One `<variable name="…">` of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Where it sits: `table Server`, `list Domain #2` (items counted from
    /// 1), nested places joined by ` / `; empty at the top level.
    pub section: String,
    /// The `name` attribute.
    pub name: String,
    /// The text, entities decoded.
    pub value: String,
    /// The byte range of the raw text between the start and end tags, when
    /// the value may be replaced (plain text and references only; `None`
    /// for `<variable/>`, child elements, CDATA or comments inside).
    pub span: Option<Range<usize>>,
}

/// The variable being read.
struct Open {
    section: String,
    name: String,
    value: String,
    /// Byte offset just after its start tag.
    start: usize,
    /// How many elements were open around it.
    depth: usize,
    /// Only text and references so far.
    editable: bool,
}

/// Lists every `<variable>` of a config file in document order.
///
/// # Errors
/// Malformed XML, non-UTF-8 input or a root that is not `<config>`, with
/// the byte offset.
pub fn variables(file: &str, xml: &[u8]) -> Result<Vec<Variable>> {
    let text = std::str::from_utf8(xml).map_err(|e| Error::Xml {
        file: file.to_string(),
        offset: e.valid_up_to() as u64,
        reason: "not UTF-8".into(),
    })?;
    let mut reader = Reader::from_str(text);
    let err = |reader: &Reader<&[u8]>, reason: String| Error::Xml {
        file: file.to_string(),
        offset: reader.error_position(),
        reason,
    };
    // Open elements, each with its place label (tables, lists, items).
    let mut stack: Vec<Option<String>> = Vec::new();
    // Per open list: how many items seen so far.
    let mut item_counts: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    let mut cur: Option<Open> = None;
    let mut saw_root = false;
    let pos = |r: &Reader<&[u8]>| usize::try_from(r.buffer_position()).unwrap_or(usize::MAX);
    loop {
        let before = pos(&reader);
        let ev = reader
            .read_event()
            .map_err(|e| err(&reader, e.to_string()))?;
        match ev {
            Event::Start(e) => {
                if stack.is_empty() {
                    if e.name().as_ref() != "config" || saw_root {
                        return Err(err(&reader, "root element must be <config>".into()));
                    }
                    saw_root = true;
                }
                if let Some(c) = cur.as_mut() {
                    // Markup inside a value: listed, never edited.
                    c.editable = false;
                    stack.push(None);
                    continue;
                }
                let name_of = |e: &quick_xml::events::BytesStart<'_>| {
                    name_attr(e)
                        .map(Option::unwrap_or_default)
                        .map_err(|r| err(&reader, r))
                };
                let label = match e.name().as_ref() {
                    "table" => Some(format!("table {}", name_of(&e)?)),
                    "list" => {
                        item_counts.push(0);
                        Some(format!("list {}", name_of(&e)?))
                    }
                    "listitem" => {
                        let n = item_counts.last_mut().map_or(0, |n| {
                            *n += 1;
                            *n
                        });
                        Some(format!("#{n}"))
                    }
                    "variable" => {
                        cur = Some(Open {
                            section: section(&stack),
                            name: name_of(&e)?,
                            value: String::new(),
                            start: pos(&reader),
                            depth: stack.len(),
                            editable: true,
                        });
                        None
                    }
                    _ => None,
                };
                stack.push(label);
            }
            Event::Empty(e) => {
                if stack.is_empty() {
                    if e.name().as_ref() != "config" || saw_root {
                        return Err(err(&reader, "root element must be <config>".into()));
                    }
                    saw_root = true;
                } else if let Some(c) = cur.as_mut() {
                    c.editable = false;
                } else if e.name().as_ref() == "variable" {
                    out.push(Variable {
                        section: section(&stack),
                        name: name_attr(&e)
                            .map_err(|r| err(&reader, r))?
                            .unwrap_or_default(),
                        value: String::new(),
                        span: None,
                    });
                }
            }
            Event::Text(t) => {
                if let Some(c) = cur.as_mut() {
                    c.value.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(c) = cur.as_mut() {
                    c.value.push_str(&t.xml10_content());
                    c.editable = false;
                }
            }
            Event::GeneralRef(r) => {
                if let Some(c) = cur.as_mut() {
                    let ch = super::entity_char(&r).map_err(|m| err(&reader, m))?;
                    c.value.push(ch);
                }
            }
            Event::Comment(_) | Event::PI(_) => {
                if let Some(c) = cur.as_mut() {
                    c.editable = false;
                }
            }
            Event::End(_) => {
                if let Some(Some(l)) = stack.pop()
                    && l.starts_with("list ")
                {
                    item_counts.pop();
                }
                if cur.as_ref().is_some_and(|c| c.depth == stack.len())
                    && let Some(c) = cur.take()
                {
                    out.push(Variable {
                        section: c.section,
                        name: c.name,
                        value: c.value,
                        span: c.editable.then_some(c.start..before),
                    });
                }
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
    if !stack.is_empty() {
        return Err(Error::Xml {
            file: file.to_string(),
            offset: text.len() as u64,
            reason: "unexpected end of file".into(),
        });
    }
    Ok(out)
}

fn section(stack: &[Option<String>]) -> String {
    let mut s = String::new();
    for l in stack.iter().flatten() {
        if l.starts_with('#') {
            s.push(' ');
            s.push_str(l);
        } else {
            if !s.is_empty() {
                s.push_str(" / ");
            }
            s.push_str(l);
        }
    }
    s
}

/// Puts `new` text (escaped here) into the given byte ranges of `xml`,
/// which must come from [`variables`] over the same text; every other byte
/// is kept.
///
/// # Errors
/// Ranges that overlap, are out of order after sorting, or do not fall on
/// character boundaries.
pub fn replace_values(xml: &str, edits: &[(Range<usize>, String)]) -> Result<String> {
    let mut edits: Vec<&(Range<usize>, String)> = edits.iter().collect();
    edits.sort_by_key(|(r, _)| r.start);
    let bad = |why: &str| Error::Xml {
        file: String::new(),
        offset: 0,
        reason: format!("cannot edit: {why}"),
    };
    let mut out = String::with_capacity(xml.len());
    let mut at = 0;
    for (r, new) in edits {
        if r.start < at || r.end < r.start || r.end > xml.len() {
            return Err(bad("overlapping or out-of-range edits"));
        }
        if !xml.is_char_boundary(r.start) || !xml.is_char_boundary(r.end) {
            return Err(bad("an edit that splits a character"));
        }
        out.push_str(&xml[at..r.start]);
        out.push_str(&escape(new));
        at = r.end;
    }
    out.push_str(&xml[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CFG: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- kept -->\n<config>\n  <table name='Server'>\n    <variable name=\"Hostname\">mail.old.cz</variable>\n    <variable name=\"StoreDir\" >/opt/kerio/mailserver/store</variable>\n    <unknown a=\"1\"><x/></unknown>\n  </table>\n  <list name=\"Domain\">\n    <listitem><variable name=\"Domain\">a.cz</variable><variable name=\"Note\">R&amp;D &#x10D;</variable></listitem>\n    <listitem><variable name=\"Domain\">b.cz</variable><variable name=\"Empty\"/><variable name=\"Odd\"><![CDATA[x]]></variable></listitem>\n  </list>\n</config>\n";

    #[test]
    fn lists_variables_with_their_places_and_ranges() {
        let vars = variables("mailserver.cfg", CFG.as_bytes()).unwrap();
        let got: Vec<(&str, &str, &str, bool)> = vars
            .iter()
            .map(|v| {
                (
                    v.section.as_str(),
                    v.name.as_str(),
                    v.value.as_str(),
                    v.span.is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("table Server", "Hostname", "mail.old.cz", true),
                (
                    "table Server",
                    "StoreDir",
                    "/opt/kerio/mailserver/store",
                    true
                ),
                ("list Domain #1", "Domain", "a.cz", true),
                ("list Domain #1", "Note", "R&D č", true),
                ("list Domain #2", "Domain", "b.cz", true),
                ("list Domain #2", "Empty", "", false),
                ("list Domain #2", "Odd", "x", false),
            ]
        );
        for v in vars.iter().filter(|v| v.span.is_some()) {
            let raw = &CFG[v.span.clone().unwrap()];
            assert_eq!(raw.replace("&amp;", "&").replace("&#x10D;", "č"), v.value);
        }
    }

    #[test]
    fn replaces_only_the_given_values() {
        let vars = variables("mailserver.cfg", CFG.as_bytes()).unwrap();
        let edits = vec![
            (
                vars[1].span.clone().unwrap(),
                "/srv/kerio/store".to_string(),
            ),
            (vars[0].span.clone().unwrap(), "mail.new.cz <&>".to_string()),
        ];
        let out = replace_values(CFG, &edits).unwrap();
        assert_eq!(
            out,
            CFG.replace(">mail.old.cz<", ">mail.new.cz &lt;&amp;&gt;<")
                .replace("/opt/kerio/mailserver/store", "/srv/kerio/store")
        );
        let again = variables("mailserver.cfg", out.as_bytes()).unwrap();
        assert_eq!(again[0].value, "mail.new.cz <&>");
        assert_eq!(again[1].value, "/srv/kerio/store");
        let strip = |v: &[Variable]| -> Vec<(String, String, String)> {
            v.iter()
                .map(|v| (v.section.clone(), v.name.clone(), v.value.clone()))
                .collect()
        };
        assert_eq!(strip(&again[2..]), strip(&vars[2..]));
        let overlapping = vec![
            (vars[0].span.clone().unwrap(), "a".to_string()),
            (vars[0].span.clone().unwrap(), "b".to_string()),
        ];
        assert!(replace_values(CFG, &overlapping).is_err());
    }

    #[test]
    fn refuses_what_is_not_a_config_file() {
        for bad in [
            &b"<other/>"[..],
            b"<config><table name=\"x\">",
            b"<config></table></config>",
            b"\xff<config/>",
            b"<config><variable name=\"a\">&bogus;</variable></config>",
        ] {
            assert!(variables("mailserver.cfg", bad).is_err(), "{bad:?}");
        }
        assert!(
            variables("mailserver.cfg", b"<config/>")
                .unwrap()
                .is_empty()
        );
    }
}
