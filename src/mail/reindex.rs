//! `reindex`: `index.fld` rebuilt from `#msgs`, or checked against it.
//!
//! A record is derived from its item: U from the file name, S from its
//! size, D and M from its modification time, C from its content (see
//! `index_fld::item_class`), I `0001`. What cannot be derived is kept from
//! the existing record of the same item: its flags (F), I, D and C. Records
//! of items that are gone are dropped; items without a record get one;
//! files in `#msgs` whose names are not eight lower-case hex digits and
//! `.eml` are reported and never touched. `status.fld`'s next number is
//! moved past every item (never back). Checking reports the same
//! differences and changes nothing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;

use mailvault_formats::store::index_fld::{self, IndexLine};
use mailvault_formats::store::status_fld::StatusFld;
use mailvault_formats::{Mtime, limits};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::mail::folder::{TMP_PREFIX, replace_file};
use crate::mail::store::{FolderRef, LiveStore, open_regular};

/// What a folder's `index.fld` and `status.fld` say against its `#msgs`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderCheck {
    /// The folder, install-relative.
    pub folder: String,
    /// Items in `#msgs` (valid names).
    pub items: usize,
    /// Records in `index.fld`.
    pub records: usize,
    /// The folder has no `index.fld`.
    pub no_index: bool,
    /// Items without a record (their numbers).
    pub items_without_records: Vec<u32>,
    /// Records without an item.
    pub records_without_items: Vec<u32>,
    /// Records whose size differs from the item's.
    pub wrong_sizes: Vec<u32>,
    /// Items with more than one record.
    pub duplicate_records: Vec<u32>,
    /// Lines of `index.fld` that are not records (line number, why).
    pub bad_lines: Vec<(usize, String)>,
    /// Files in `#msgs` that are not items (name, never touched).
    pub bad_names: Vec<String>,
    /// `status.fld` is missing, or its next number is not past every item.
    pub status_behind: bool,
    /// An item is numbered `ffffffff`: no number is left after it, so
    /// nothing can be added to the folder (numbers only grow: IMAP clients
    /// cache items by them). A rebuild cannot fix this.
    pub no_number_left: bool,
    /// Temporaries in `#msgs` of an interrupted merge or give-back (never
    /// items; a rebuild, holding the install's lock, removes them).
    pub leftover_temporaries: Vec<String>,
    /// Temporaries beside `index.fld` / `status.fld` of a run killed while
    /// replacing them (a rebuild removes them too).
    pub leftover_folder_temporaries: Vec<String>,
    /// The folder could not be checked (an unreadable or oversized file):
    /// why. Only `--check` goes on to the next folder after this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl FolderCheck {
    /// Whether anything was found.
    #[must_use]
    pub fn has_problems(&self) -> bool {
        self.no_index
            || !self.items_without_records.is_empty()
            || !self.records_without_items.is_empty()
            || !self.wrong_sizes.is_empty()
            || !self.duplicate_records.is_empty()
            || !self.bad_lines.is_empty()
            || !self.bad_names.is_empty()
            || self.status_behind
            || self.no_number_left
            || !self.leftover_temporaries.is_empty()
            || !self.leftover_folder_temporaries.is_empty()
            || self.unreadable.is_some()
    }
}

/// A folder read for checking or rebuilding.
struct Scanned {
    check: FolderCheck,
    /// Valid items: number → (size, mtime, first 4 KiB).
    items: BTreeMap<u32, (u64, i64, Vec<u8>)>,
    /// Existing records by number (the first of duplicates).
    records: BTreeMap<u32, IndexLine>,
    status: Option<StatusFld>,
}

fn scan(store: &LiveStore, folder: &FolderRef) -> Result<Scanned> {
    let rel = folder.rel();
    let dir = store.path_of(&rel)?;
    let msgs = dir.join("#msgs");
    let mut check = FolderCheck {
        folder: rel,
        ..FolderCheck::default()
    };
    let mut items = BTreeMap::new();
    for e in fs::read_dir(&msgs).map_err(Error::io("cannot list", &msgs))? {
        let e = e.map_err(Error::io("cannot list", &msgs))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let m = e.metadata().map_err(Error::io("cannot read", &e.path()))?;
        match index_fld::uid_of_file_name(&name) {
            Some(uid) if m.is_file() => {
                let mut head = Vec::new();
                fs::File::open(e.path())
                    .and_then(|f| f.take(4096).read_to_end(&mut head))
                    .map_err(Error::io("cannot read", &e.path()))?;
                let mtime =
                    Mtime::from_system(m.modified().map_err(Error::io("cannot read", &e.path()))?)
                        .secs;
                items.insert(uid, (m.len(), mtime, head));
            }
            _ if name.starts_with(TMP_PREFIX) && m.is_file() => {
                check.leftover_temporaries.push(name);
            }
            _ => check.bad_names.push(name),
        }
    }
    check.bad_names.sort();
    check.leftover_temporaries.sort();
    for e in fs::read_dir(&dir).map_err(Error::io("cannot list", &dir))? {
        let e = e.map_err(Error::io("cannot list", &dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) && e.file_type().is_ok_and(|t| t.is_file()) {
            check.leftover_folder_temporaries.push(name);
        }
    }
    check.leftover_folder_temporaries.sort();
    check.items = items.len();
    let index_path = dir.join("index.fld");
    let mut records = BTreeMap::new();
    match open_regular(&index_path) {
        Ok(f) => {
            let mut raw = Vec::new();
            f.take(limits::MAX_INDEX_BYTES + 1)
                .read_to_end(&mut raw)
                .map_err(Error::io("cannot read", &index_path))?;
            if raw.len() as u64 > limits::MAX_INDEX_BYTES {
                return Err(Error::Invalid(format!(
                    "`{}` is larger than {} bytes",
                    index_path.display(),
                    limits::MAX_INDEX_BYTES
                )));
            }
            let (lines, bad) = index_fld::parse_index(&String::from_utf8_lossy(&raw));
            check.bad_lines = bad;
            check.records = lines.len();
            for l in lines {
                match records.entry(l.uid) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        check.duplicate_records.push(l.uid);
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(l);
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => check.no_index = true,
        Err(e) => return Err(Error::io("cannot read", &index_path)(e)),
    }
    for (uid, (size, _, _)) in &items {
        match records.get(uid) {
            None => check.items_without_records.push(*uid),
            Some(r) if r.size != *size => check.wrong_sizes.push(*uid),
            Some(_) => {}
        }
    }
    check.records_without_items = records
        .keys()
        .filter(|u| !items.contains_key(u))
        .copied()
        .collect();
    let status_path = dir.join("status.fld");
    // Read up to one byte past the bound: never the whole of an oversized
    // (or endless, a link to /dev/zero) file.
    let read_status = open_regular(&status_path).and_then(|f| {
        let mut b = Vec::new();
        f.take(limits::MAX_STATUS_BYTES + 1).read_to_end(&mut b)?;
        Ok(b)
    });
    let status = match read_status {
        Ok(b) if b.len() as u64 <= limits::MAX_STATUS_BYTES => Some(
            StatusFld::parse(&String::from_utf8_lossy(&b))
                .map_err(|e| Error::Invalid(format!("`{}`: {e}", status_path.display())))?,
        ),
        Ok(_) => {
            return Err(Error::Invalid(format!(
                "`{}` is larger than {} bytes",
                status_path.display(),
                limits::MAX_STATUS_BYTES
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("cannot read", &status_path)(e)),
    };
    let past_all = items.keys().next_back().map_or(1, |u| u.saturating_add(1));
    check.status_behind = status.as_ref().is_none_or(|s| s.next_uid < past_all);
    check.no_number_left = items.contains_key(&u32::MAX);
    Ok(Scanned {
        check,
        items,
        records,
        status,
    })
}

/// Checks a folder; changes nothing.
///
/// # Errors
/// The folder cannot be read; its files are beyond their bounds.
pub fn check_folder(store: &LiveStore, folder: &FolderRef) -> Result<FolderCheck> {
    Ok(scan(store, folder)?.check)
}

/// The record of an item: derived, with what cannot be derived kept from
/// its old record.
fn derive(uid: u32, size: u64, mtime: i64, head: &[u8], old: Option<&IndexLine>) -> IndexLine {
    let t = u32::try_from(mtime.max(0)).unwrap_or(u32::MAX);
    IndexLine {
        uid,
        flags: old.map_or(0, |o| o.flags),
        size,
        created: old.map_or(t, |o| o.created),
        modified: t,
        item: old.map_or_else(|| "0001".to_string(), |o| o.item.clone()),
        class: old
            .map(|o| o.class.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| index_fld::item_class(head).to_string()),
    }
}

/// Rebuilds a folder's `index.fld` (and moves `status.fld` past every
/// item) when the check finds anything but bad file names; returns what
/// the check found before.
///
/// # Errors
/// The folder cannot be read or its files written.
pub fn rebuild_folder(store: &LiveStore, folder: &FolderRef) -> Result<FolderCheck> {
    let s = scan(store, folder)?;
    let c = &s.check;
    let needs_index = c.no_index
        || !c.items_without_records.is_empty()
        || !c.records_without_items.is_empty()
        || !c.wrong_sizes.is_empty()
        || !c.duplicate_records.is_empty()
        || !c.bad_lines.is_empty();
    let dir = store.path_of(&folder.rel())?;
    let leftovers = c
        .leftover_temporaries
        .iter()
        .map(|n| dir.join("#msgs").join(n))
        .chain(c.leftover_folder_temporaries.iter().map(|n| dir.join(n)));
    for p in leftovers {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot remove", &p)(e)),
        }
    }
    if needs_index {
        let lines: Vec<IndexLine> = s
            .items
            .iter()
            .map(|(&uid, (size, mtime, head))| {
                derive(uid, *size, *mtime, head, s.records.get(&uid))
            })
            .collect();
        replace_file(
            &dir.join("index.fld"),
            index_fld::write_index(&lines).as_bytes(),
        )?;
    }
    if c.status_behind {
        let past_all = s
            .items
            .keys()
            .next_back()
            .map_or(1, |u| u.saturating_add(1));
        let mut status = s.status.clone().unwrap_or_else(|| {
            let ty = match s
                .items
                .values()
                .next()
                .map(|(_, _, h)| index_fld::item_class(h))
            {
                Some("IPM.Appointment") => 1,
                Some("IPM.Contact") => 2,
                Some("IPM.Task") => 3,
                _ => 0,
            };
            let now = Mtime::from_system(std::time::SystemTime::now()).secs;
            StatusFld::new(ty, u32::try_from(now.max(1)).unwrap_or(1))
        });
        status.next_uid = status.next_uid.max(past_all);
        replace_file(&dir.join("status.fld"), status.to_text().as_bytes())?;
    }
    if needs_index || c.status_behind {
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("cannot sync", &dir))?;
    }
    Ok(s.check)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rebuild_keeps_flags_and_reports_what_it_cannot_fix() {
        let d = tempfile::tempdir().unwrap();
        let f = FolderRef {
            domain: "a.cz".into(),
            mailbox: "jan".into(),
            path: "INBOX".into(),
        };
        let dir = d.path().join("mail/a.cz/jan/INBOX");
        fs::create_dir_all(dir.join("#msgs")).unwrap();
        for (n, c) in [
            ("00000001.eml", "Subject: a\r\n\r\n"),
            ("00000003.eml", "BEGIN:VCARD\r\n"),
        ] {
            fs::write(dir.join("#msgs").join(n), c).unwrap();
        }
        fs::write(dir.join("#msgs/stray.txt"), "x").unwrap();
        fs::write(
            dir.join("index.fld"),
            "U00000001 F00000005 S14 D00000010 M00000011 I0002 CIPM.Note\nU00000002 F00000000 S9 D1 M1 I0001 CIPM.Note\n",
        )
        .unwrap();
        fs::write(dir.join("status.fld"), "T0\nV00000001\nU00000002\nGabc\n").unwrap();
        let store = LiveStore::new(d.path());
        let c = check_folder(&store, &f).unwrap();
        assert_eq!(c.items_without_records, [3]);
        assert_eq!(c.records_without_items, [2]);
        assert_eq!(c.bad_names, ["stray.txt"]);
        assert!(c.status_behind && c.has_problems());
        rebuild_folder(&store, &f).unwrap();
        let after = check_folder(&store, &f).unwrap();
        assert_eq!(after.bad_names, ["stray.txt"], "never touched");
        assert!(after.items_without_records.is_empty() && after.records_without_items.is_empty());
        assert!(!after.status_behind);
        let (lines, _) =
            index_fld::parse_index(&fs::read_to_string(dir.join("index.fld")).unwrap());
        assert_eq!(
            (lines[0].flags, lines[0].item.as_str(), lines[0].created),
            (5, "0002", 0x10)
        );
        assert_eq!((lines[1].uid, lines[1].class.as_str()), (3, "IPM.Contact"));
        let status = fs::read_to_string(dir.join("status.fld")).unwrap();
        assert!(
            status.contains("U00000004") && status.contains("Gabc"),
            "{status}"
        );
        assert!(dir.join("#msgs/stray.txt").exists());
    }
}
