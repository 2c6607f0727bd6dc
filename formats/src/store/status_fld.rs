//! `status.fld`: folder attributes. A new mail folder needs only `T0`; mailvault
//! writes `T<type>`, `V<uidvalidity>` and `U<next uid>` lines, one per line,
//! and keeps any other line verbatim when reading.

use crate::limits::MAX_STATUS_BYTES;

/// Folder type of `T`: 0 mail, 1 calendar, 2 contacts, 3 tasks, 4 notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFld {
    /// `T`: folder type.
    pub folder_type: u32,
    /// `V`: UID validity.
    pub uid_validity: u32,
    /// `U`: next item number.
    pub next_uid: u32,
    /// Every other line (G guid, ACL lines `A<user> <rights>`, …), verbatim
    /// and in order.
    pub other: Vec<String>,
}

impl StatusFld {
    /// A new folder of a type (0 mail, 1 calendar, 2 contacts, …).
    #[must_use]
    pub fn new(folder_type: u32, uid_validity: u32) -> Self {
        Self {
            folder_type,
            uid_validity,
            next_uid: 1,
            other: Vec::new(),
        }
    }

    /// The text form: `T`, `V` and `U` first, then the other lines as read.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "T{}\nV{:08x}\nU{:08x}\n",
            self.folder_type, self.uid_validity, self.next_uid
        );
        for l in &self.other {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Reads `status.fld`; a `T`, `V` or `U` line whose value does not parse
    /// is kept among the other lines (never lost), and the field keeps its
    /// default (mail folder, 0).
    ///
    /// # Errors
    /// [`crate::Error::TooLarge`] beyond [`MAX_STATUS_BYTES`].
    pub fn parse(text: &str) -> crate::Result<Self> {
        if text.len() as u64 > MAX_STATUS_BYTES {
            return Err(crate::Error::TooLarge {
                file: "status.fld",
                limit: MAX_STATUS_BYTES,
                unit: "bytes",
            });
        }
        let mut s = Self::new(0, 0);
        s.next_uid = 0;
        for raw in text.lines() {
            let line = raw.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let (tag, v) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
            let parsed = match tag {
                "T" => v.parse().ok().map(|n| s.folder_type = n),
                "V" => u32::from_str_radix(v, 16).ok().map(|n| s.uid_validity = n),
                "U" => u32::from_str_radix(v, 16).ok().map(|n| s.next_uid = n),
                _ => None,
            };
            if parsed.is_none() {
                s.other.push(line.to_string());
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_unknown_lines() {
        let s = StatusFld::parse("T0\nGabc\nV67200000\nU0000000d\nAjohn rw\nTx\n").unwrap();
        assert_eq!(
            (s.folder_type, s.uid_validity, s.next_uid),
            (0, 0x6720_0000, 13)
        );
        assert_eq!(s.other, ["Gabc", "Ajohn rw", "Tx"]);
        assert_eq!(StatusFld::parse(&s.to_text()).unwrap(), s);
        assert_eq!(StatusFld::parse("T0\n").unwrap().next_uid, 0);
    }
}
