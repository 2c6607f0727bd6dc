//! Calendar and contact items of an export: Kerio keeps an appointment or a
//! task (`IPM.Appointment`, `IPM.Task`) as an iCalendar object and a contact
//! (`IPM.Contact`) as a vCard, either bare or inside a MIME message.
//! [`payload`] finds that text; [`GroupwareFile`] gathers a folder's items
//! into one file a client imports: one `VCALENDAR` holding every item's
//! components (time zones once each) for `.ics`, the vCards one after the
//! other for `.vcf`. An item is checked whole before any of it is written,
//! so a broken one is left out entirely (and reported), never half in the
//! file. Lines are written with CRLF, as both formats require.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use mail_parser::{MessageParser, MimeHeaders};

/// What a groupware file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupwareKind {
    /// `.ics`: appointments and tasks.
    Calendar,
    /// `.vcf`: contacts.
    Contacts,
}

impl GroupwareKind {
    /// The kind of an `index.fld` item class, `None` for mail.
    pub(super) fn of_class(class: &str) -> Option<Self> {
        match class {
            "IPM.Appointment" | "IPM.Task" => Some(Self::Calendar),
            "IPM.Contact" => Some(Self::Contacts),
            _ => None,
        }
    }

    fn marker(self) -> &'static [u8] {
        match self {
            Self::Calendar => b"BEGIN:VCALENDAR",
            Self::Contacts => b"BEGIN:VCARD",
        }
    }

    fn is_mime_type(self, ctype: &str, subtype: &str) -> bool {
        let (t, s) = (ctype.to_ascii_lowercase(), subtype.to_ascii_lowercase());
        match self {
            Self::Calendar => {
                (t == "text" && s == "calendar") || (t == "application" && s == "ics")
            }
            Self::Contacts => t == "text" && (s == "vcard" || s == "x-vcard" || s == "directory"),
        }
    }

    /// What the item is called in reasons.
    pub(super) fn what(self) -> &'static str {
        match self {
            Self::Calendar => "iCalendar",
            Self::Contacts => "vCard",
        }
    }
}

/// Lines of `text` without their line ends.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

fn starts_with_ci(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The iCalendar or vCard text of an item: the item itself when it starts
/// with it, else the first MIME part of a matching content type.
pub(super) fn payload(content: &[u8], kind: GroupwareKind) -> Option<(Cow<'_, [u8]>, Vec<String>)> {
    let start = content
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(content)
        .trim_ascii_start();
    if starts_with_ci(start, kind.marker()) {
        return Some((Cow::Borrowed(start), Vec::new()));
    }
    let msg = MessageParser::default().parse(content)?;
    let chosen = msg.parts.iter().find(|p| {
        p.content_type()
            .is_some_and(|ct| kind.is_mime_type(ct.ctype(), ct.subtype().unwrap_or("")))
    })?;
    // Attachments of the item (a meeting's agenda, a contact's photo sent
    // along) have no place in an .ics or .vcf: named, so the export says
    // what it left out.
    let dropped = msg
        .attachments()
        .filter(|a| !std::ptr::eq(*a, chosen))
        .map(|a| {
            a.attachment_name().map_or_else(
                || {
                    a.content_type().map_or_else(
                        || "an attachment".to_string(),
                        |ct| format!("a {}/{} part", ct.ctype(), ct.subtype().unwrap_or("")),
                    )
                },
                |n| format!("`{}`", n.escape_debug()),
            )
        })
        .collect();
    Some((Cow::Owned(chosen.contents().to_vec()), dropped))
}

/// A component of an iCalendar object: its name and its lines.
struct Component<'a> {
    name: Vec<u8>,
    lines: Vec<&'a [u8]>,
}

impl<'a> Component<'a> {
    fn tzid(&self) -> Option<&'a [u8]> {
        self.lines.iter().find_map(|&l| {
            if starts_with_ci(l, b"TZID:") {
                Some(l[5..].trim_ascii())
            } else {
                None
            }
        })
    }
}

/// The components inside the `VCALENDAR` objects of `text` (events, to-dos,
/// time zones...), or why there are none to take.
fn calendar_components(text: &[u8]) -> Result<Vec<Component<'_>>, String> {
    let mut out = Vec::new();
    let mut in_calendar = false;
    let mut current: Option<(Component<'_>, usize)> = None;
    for line in lines(text) {
        if let Some((c, depth)) = current.as_mut() {
            c.lines.push(line);
            if starts_with_ci(line, b"BEGIN:") {
                *depth += 1;
            } else if starts_with_ci(line, b"END:") {
                *depth -= 1;
                if *depth == 0
                    && let Some((c, _)) = current.take()
                {
                    out.push(c);
                }
            }
            continue;
        }
        if !in_calendar {
            if starts_with_ci(line, b"BEGIN:VCALENDAR") {
                in_calendar = true;
            }
        } else if starts_with_ci(line, b"END:VCALENDAR") {
            in_calendar = false;
        } else if starts_with_ci(line, b"BEGIN:") {
            current = Some((
                Component {
                    name: line[6..].trim_ascii().to_ascii_uppercase(),
                    lines: vec![line],
                },
                1,
            ));
        }
        // Calendar properties (VERSION, PRODID, METHOD...) belong to the
        // object the item was; the merged file has its own.
    }
    if let Some((c, _)) = current {
        return Err(format!(
            "its iCalendar data ends inside a {} component",
            String::from_utf8_lossy(&c.name)
        ));
    }
    if in_calendar {
        return Err("its iCalendar data has no END:VCALENDAR".into());
    }
    if !out.iter().any(|c| c.name != b"VTIMEZONE") {
        return Err("its iCalendar data holds no event, to-do or journal".into());
    }
    Ok(out)
}

/// The vCards of `text`, each as its lines.
fn vcards(text: &[u8]) -> Result<Vec<Vec<&[u8]>>, String> {
    let mut out = Vec::new();
    let mut current: Option<(Vec<&[u8]>, usize)> = None;
    for line in lines(text) {
        let begin = starts_with_ci(line, b"BEGIN:VCARD");
        let end = starts_with_ci(line, b"END:VCARD");
        match current.as_mut() {
            None if begin => current = Some((vec![line], 1)),
            None => {}
            Some((card, depth)) => {
                card.push(line);
                if begin {
                    *depth += 1;
                } else if end {
                    *depth -= 1;
                    if *depth == 0
                        && let Some((card, _)) = current.take()
                    {
                        out.push(card);
                    }
                }
            }
        }
    }
    if current.is_some() {
        return Err("its vCard data has no END:VCARD".into());
    }
    if out.is_empty() {
        return Err("it holds no vCard".into());
    }
    Ok(out)
}

/// Why an item was not added.
#[derive(Debug)]
pub(super) enum AddError {
    /// The item cannot be converted (it is left out and reported).
    Item(String),
    /// Writing the file failed.
    Output(io::Error),
}

/// One `.ics` or `.vcf` file of a folder, created at its first item.
pub(super) struct GroupwareFile {
    kind: GroupwareKind,
    path: PathBuf,
    name: String,
    out: Option<BufWriter<File>>,
    tzids: HashSet<Vec<u8>>,
    /// Items written.
    pub(super) items: u64,
}

/// Escapes a TEXT value (RFC 5545 3.3.11).
fn ics_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | ',' | ';' => {
                o.push('\\');
                o.push(c);
            }
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

impl GroupwareFile {
    /// A file at `path` (not created yet) for the folder shown as `name`.
    pub(super) fn new(kind: GroupwareKind, path: PathBuf, name: &str) -> Self {
        Self {
            kind,
            path,
            name: name.to_string(),
            out: None,
            tzids: HashSet::new(),
            items: 0,
        }
    }

    /// Where the file is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn open(&mut self) -> io::Result<&mut BufWriter<File>> {
        if self.out.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = File::options()
                .write(true)
                .create_new(true)
                .open(&self.path)?;
            let mut w = BufWriter::with_capacity(64 << 10, f);
            if self.kind == GroupwareKind::Calendar {
                write!(
                    w,
                    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailvault//export//EN\r\nX-WR-CALNAME:{}\r\n",
                    ics_text(&self.name)
                )?;
            }
            self.out = Some(w);
        }
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("not open"))
    }

    /// Adds one item's content; returns the attachments it had that the
    /// file cannot hold (left out).
    pub(super) fn add(&mut self, content: &[u8]) -> Result<Vec<String>, AddError> {
        let kind = self.kind;
        let (text, dropped) = payload(content, kind).ok_or_else(|| {
            AddError::Item(format!(
                "it holds no {} data (neither as the item nor as a MIME part)",
                kind.what()
            ))
        })?;
        let mut block: Vec<u8> = Vec::with_capacity(text.len() + 64);
        let mut new_tzids = Vec::new();
        match kind {
            GroupwareKind::Calendar => {
                for c in calendar_components(&text).map_err(AddError::Item)? {
                    if c.name == b"VTIMEZONE" {
                        match c.tzid() {
                            Some(id) if self.tzids.contains(id) || new_tzids.contains(&id) => {
                                continue;
                            }
                            Some(id) => new_tzids.push(id),
                            None => {}
                        }
                    }
                    for l in &c.lines {
                        block.extend_from_slice(l);
                        block.extend_from_slice(b"\r\n");
                    }
                }
            }
            GroupwareKind::Contacts => {
                for card in vcards(&text).map_err(AddError::Item)? {
                    for l in card {
                        block.extend_from_slice(l);
                        block.extend_from_slice(b"\r\n");
                    }
                }
            }
        }
        self.open()
            .and_then(|w| w.write_all(&block))
            .map_err(AddError::Output)?;
        self.tzids.extend(new_tzids.into_iter().map(<[u8]>::to_vec));
        self.items += 1;
        Ok(dropped)
    }

    /// Ends the file (nothing is written when no item was added).
    pub(super) fn finish(mut self) -> io::Result<()> {
        if let Some(mut w) = self.out.take() {
            if self.kind == GroupwareKind::Calendar {
                w.write_all(b"END:VCALENDAR\r\n")?;
            }
            w.into_inner().map_err(io::IntoInnerError::into_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const EVENT: &[u8] = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nMETHOD:REQUEST\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Prague\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:1\r\nSUMMARY:a long\r\n  folded line\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn merges_calendars_with_time_zones_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/Calendar.ics");
        let mut f = GroupwareFile::new(GroupwareKind::Calendar, p.clone(), "Team; Q4");
        f.add(EVENT).unwrap();
        let wrapped = [
            b"From: a@b\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n--XX\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\n".as_slice(),
            String::from_utf8_lossy(EVENT).replace("UID:1", "UID:2").as_bytes(),
            b"\r\n--XX--\r\n",
        ]
        .concat();
        f.add(&wrapped).unwrap();
        assert!(matches!(
            f.add(b"BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:3\n"),
            Err(AddError::Item(r)) if r.contains("VEVENT")
        ));
        assert!(matches!(
            f.add(b"Subject: no\r\n\r\nbody"),
            Err(AddError::Item(_))
        ));
        assert_eq!(f.items, 2);
        f.finish().unwrap();
        let text = String::from_utf8(std::fs::read(&p).unwrap()).unwrap();
        assert!(text.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailvault//export//EN\r\nX-WR-CALNAME:Team\\; Q4\r\n"));
        assert!(text.ends_with("END:VEVENT\r\nEND:VCALENDAR\r\n"));
        assert_eq!(text.matches("BEGIN:VCALENDAR").count(), 1);
        assert_eq!(text.matches("BEGIN:VTIMEZONE").count(), 1);
        assert_eq!(text.matches("BEGIN:VEVENT").count(), 2);
        assert_eq!(text.matches("BEGIN:VALARM").count(), 2);
        assert!(!text.contains("METHOD"));
        assert!(text.contains("SUMMARY:a long\r\n  folded line\r\n"));
        assert!(!text.contains("UID:3"));
    }

    #[test]
    fn concatenates_vcards() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("Contacts.vcf");
        let mut f = GroupwareFile::new(GroupwareKind::Contacts, p.clone(), "Contacts");
        f.add(b"BEGIN:VCARD\nVERSION:3.0\nFN:A\nEND:VCARD\n")
            .unwrap();
        f.add(b"\xef\xbb\xbfBEGIN:VCARD\r\nFN:B\r\nEND:VCARD")
            .unwrap();
        assert!(matches!(
            f.add(b"BEGIN:VCARD\nFN:C\n"),
            Err(AddError::Item(_))
        ));
        f.finish().unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEND:VCARD\r\nBEGIN:VCARD\r\nFN:B\r\nEND:VCARD\r\n"
        );
        let empty = GroupwareFile::new(GroupwareKind::Contacts, d.path().join("none.vcf"), "x");
        empty.finish().unwrap();
        assert!(!d.path().join("none.vcf").exists());
    }
}
