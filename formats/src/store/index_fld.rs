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
}
