//! `index.fld`: one line per item of a folder, e.g.
//! `U00000001 F80000001 S1133 D43032abf M4305f1b7 I0001 CIPM.Appointment`.
//! U item number (= `#msgs/<8 hex>.eml`, the IMAP UID), F flags (seen 0x1,
//! answered 0x2, flagged 0x4, draft 0x10), S size, D/M hex Unix create/modify
//! times, I an item field kept verbatim, C the item class.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// One line of `index.fld`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLine {
    /// Item number.
    pub uid: u32,
    /// Flag bits.
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Creation time (Unix seconds).
    pub created: u32,
    /// Modification time (Unix seconds).
    pub modified: u32,
    /// The `I` field, kept verbatim.
    pub item: String,
    /// Item class (`IPM.Note`, `IPM.Appointment`, `IPM.Contact`, ...).
    pub class: String,
}

impl IndexLine {
    /// The message file name of this item (`0000000a.eml`).
    #[must_use]
    pub fn file_name(&self) -> String {
        format!("{:08x}.eml", self.uid)
    }
}

impl FromStr for IndexLine {
    type Err = Error;

    fn from_str(line: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadLine {
            file: "index.fld",
            line: 0,
            reason,
        };
        let mut l = IndexLine {
            uid: 0,
            flags: 0,
            size: 0,
            created: 0,
            modified: 0,
            item: String::new(),
            class: String::new(),
        };
        let hex = |v: &str| {
            u32::from_str_radix(v, 16).map_err(|_| bad(format!("bad hex `{v}` in `{line}`")))
        };
        for tok in line.split_ascii_whitespace() {
            let (tag, v) = tok.split_at(1);
            match tag {
                "U" => l.uid = hex(v)?,
                "F" => l.flags = hex(v)?,
                "S" => {
                    l.size = v
                        .parse()
                        .map_err(|_| bad(format!("bad size `{v}` in `{line}`")))?
                }
                "D" => l.created = hex(v)?,
                "M" => l.modified = hex(v)?,
                "I" => l.item = v.to_string(),
                "C" => l.class = v.to_string(),
                _ => {}
            }
        }
        if !line.starts_with('U') {
            return Err(bad(format!("line must start with U<uid>: `{line}`")));
        }
        Ok(l)
    }
}

impl fmt::Display for IndexLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "U{:08x} F{:08x} S{} D{:08x} M{:08x} I{} C{}",
            self.uid, self.flags, self.size, self.created, self.modified, self.item, self.class
        )
    }
}

/// Item class of an item's content, as Kerio's `C` field names it:
/// `IPM.Appointment` (an iCalendar event), `IPM.Task` (a to-do),
/// `IPM.Contact` (a vCard), otherwise `IPM.Note`. Looks at the first 4 KiB.
#[must_use]
pub fn item_class(content: &[u8]) -> &'static str {
    let head = &content[..content.len().min(4096)];
    let has = |needle: &[u8]| {
        head.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    if has(b"BEGIN:VCALENDAR") {
        if has(b"BEGIN:VTODO") {
            "IPM.Task"
        } else {
            "IPM.Appointment"
        }
    } else if has(b"BEGIN:VCARD") {
        "IPM.Contact"
    } else {
        "IPM.Note"
    }
}

/// Parses a whole `index.fld`: the lines, and for each line that is not an
/// item record its 1-based number and why. Blank lines are ignored.
/// Callers bound the input's size ([`crate::limits::MAX_INDEX_BYTES`]).
#[must_use]
pub fn parse_index(text: &str) -> (Vec<IndexLine>, Vec<(usize, String)>) {
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() {
            continue;
        }
        match raw.parse::<IndexLine>() {
            Ok(l) => lines.push(l),
            Err(Error::BadLine { reason, .. }) => bad.push((i + 1, reason)),
            Err(e) => bad.push((i + 1, e.to_string())),
        }
    }
    (lines, bad)
}

/// The text of an `index.fld` holding `lines`, one per line.
#[must_use]
pub fn write_index(lines: &[IndexLine]) -> String {
    let mut s = String::with_capacity(lines.len() * 64);
    for l in lines {
        s.push_str(&l.to_string());
        s.push('\n');
    }
    s
}

/// The item number of a `#msgs` file name (`0000002a.eml` -> 42): exactly
/// eight lower-case hex digits and `.eml`.
#[must_use]
pub fn uid_of_file_name(name: &str) -> Option<u32> {
    let hex = name.strip_suffix(".eml")?;
    if hex.len() != 8
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kerio_example() {
        let l: IndexLine = "U00000001 F80000001 S1133 D43032abf M4305f1b7 I0001 CIPM.Appointment"
            .parse()
            .unwrap();
        assert_eq!(
            (l.uid, l.flags, l.size, l.class.as_str()),
            (1, 0x8000_0001, 1133, "IPM.Appointment")
        );
        assert_eq!(
            l.to_string(),
            "U00000001 F80000001 S1133 D43032abf M4305f1b7 I0001 CIPM.Appointment"
        );
        assert_eq!(l.file_name(), "00000001.eml");
        assert!("garbage".parse::<IndexLine>().is_err());
    }

    #[test]
    fn classes_file_names_and_whole_files() {
        assert_eq!(
            item_class(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n"),
            "IPM.Appointment"
        );
        assert_eq!(
            item_class(b"BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\n"),
            "IPM.Task"
        );
        assert_eq!(item_class(b"BEGIN:VCARD\r\nFN:x\r\n"), "IPM.Contact");
        assert_eq!(item_class(b"Subject: hi\r\n\r\nbody"), "IPM.Note");
        assert_eq!(uid_of_file_name("0000002a.eml"), Some(42));
        for bad in [
            "0000002A.eml",
            "2a.eml",
            "0000002a.txt",
            "x000002a.eml",
            "00000002a.eml",
        ] {
            assert_eq!(uid_of_file_name(bad), None, "{bad}");
        }
        let (lines, bad) = parse_index(
            "U00000001 F00000001 S10 D1 M2 I0001 CIPM.Note\r\n\ngarbage\nU00000002 S5 CIPM.Note\n",
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(
            bad,
            vec![(3, "line must start with U<uid>: `garbage`".to_string())]
        );
        assert_eq!(
            write_index(&lines[..1]),
            "U00000001 F00000001 S10 D00000001 M00000002 I0001 CIPM.Note\n"
        );
    }
}
