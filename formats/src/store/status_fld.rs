//! `status.fld`: folder attributes. A new mail folder needs only `T0`; mailvault
//! writes `T<type>`, `V<uidvalidity>` and `U<next uid>` lines, one per line,
//! and keeps any other line verbatim when reading.

/// Folder type of `T`: 0 mail, 1 calendar, 2 contacts, 3 tasks, 4 notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFld {
    /// `T`: folder type.
    pub folder_type: u32,
    /// `V`: UID validity.
    pub uid_validity: u32,
    /// `U`: next item number.
    pub next_uid: u32,
}

impl StatusFld {
    /// The text form.
    #[must_use]
    pub fn to_text(&self) -> String {
        format!(
            "T{}\nV{:08x}\nU{:08x}\n",
            self.folder_type, self.uid_validity, self.next_uid
        )
    }
}
