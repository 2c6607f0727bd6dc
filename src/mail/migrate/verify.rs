//! The check after a migration: every file of the source in the target
//! with its size and CRC-32 (mailserver.cfg as rewritten), the config
//! files present and parsing, and per mailbox the same folders and items
//! of the same sizes, the source read as a [`MailStore`] (backups or live),
//! the target as a [`LiveStore`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::Path;

use mailvault_formats::config::edit;
use mailvault_formats::layout::{CONFIG_DIRS, CONFIG_FILES, EXCLUDED_STORE_DIRS, MailboxPath};
use mailvault_recover::request::STAGING_DIR;
use serde::Serialize;

use super::{MigrateReport, SourceFile};
use crate::error::{Error, Result};
use crate::mail::store::{FolderRef, LiveStore, MailStore};
use crate::progress::Progress;

/// Differences listed per mailbox (the count says how many more).
const MAX_LISTED: usize = 20;

/// The source's mail, mailbox by mailbox.
pub(super) type Inventory = BTreeMap<String, MailboxInv>;

#[derive(Debug, Clone, Default)]
pub(super) struct MailboxInv {
    pub(super) folders: BTreeSet<String>,
    /// Item path → size.
    pub(super) items: BTreeMap<String, u64>,
}

impl MailboxInv {
    fn bytes(&self) -> u64 {
        self.items.values().sum()
    }
}

/// One mailbox compared.
#[derive(Debug, Clone, Serialize)]
pub struct MailboxCheck {
    /// `john@example.com`, `#public@example.com`.
    pub mailbox: String,
    /// Folders in the source.
    pub folders_source: usize,
    /// Folders in the target.
    pub folders_target: usize,
    /// Items in the source.
    pub items_source: u64,
    /// Items in the target.
    pub items_target: u64,
    /// Bytes of the items in the source.
    pub bytes_source: u64,
    /// Bytes of the items in the target.
    pub bytes_target: u64,
    /// Same folders, same items, same sizes.
    pub equal: bool,
    /// What differs (the first few).
    pub differences: Vec<String>,
}

/// A config file checked.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigCheck {
    /// `mailserver.cfg`, `users.cfg`.
    pub file: String,
    /// Whether the source has it.
    pub in_source: bool,
    /// Whether the target has it.
    pub present: bool,
    /// Whether the target's reads as a Kerio config file.
    pub parses: bool,
    /// Whether its bytes are the source's (with the rewrites).
    pub as_expected: bool,
}

impl ConfigCheck {
    /// Whether the target's file is as it should be (or the source has none).
    #[must_use]
    pub fn ok(&self) -> bool {
        !self.in_source || (self.present && self.parses && self.as_expected)
    }
}

/// Every file compared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FilesCheck {
    /// Files of the source.
    pub source: u64,
    /// Of those, the target holds with the same size and content.
    pub equal: u64,
    /// Missing in the target.
    pub missing: Vec<String>,
    /// Different size or content in the target.
    pub different: Vec<String>,
    /// Files in the target the source does not have (a forced target's own).
    pub extra: u64,
}

/// The mail of a store by mailbox: folders (those the store lists, and
/// those `extra` files lie in) and items.
pub(super) fn inventory(store: &mut dyn MailStore, extra: &[&str]) -> Result<Inventory> {
    let mut out = Inventory::new();
    let mut folders: BTreeSet<FolderRef> = store.folders()?.into_iter().collect();
    folders.extend(
        extra
            .iter()
            .filter_map(|r| FolderRef::of_rel(r).map(|(f, _)| f)),
    );
    for f in folders {
        let items = store.items(&f)?;
        let m = out.entry(f.address()).or_default();
        m.folders.insert(f.path.clone());
        for i in items {
            m.items.insert(i.rel, i.size);
        }
    }
    Ok(out)
}

/// Compares the target with the source: every file (size, CRC-32), the
/// config files, and per mailbox the folders and items.
pub(super) fn verify(
    to: &Path,
    files: &[SourceFile],
    source_mail: &Inventory,
    cfg_edit: Option<&(Vec<u8>, Vec<u8>)>,
    progress: &dyn Progress,
    report: &mut MigrateReport,
) -> Result<()> {
    // The target's files where the source's may be.
    let mut target_files: BTreeMap<String, u64> = BTreeMap::new();
    for top in CONFIG_FILES
        .iter()
        .chain(CONFIG_DIRS.iter())
        .chain(["store"].iter())
    {
        let root = to.join(top);
        if !root.exists() {
            continue;
        }
        let mut walker = walkdir::WalkDir::new(&root).follow_links(false).into_iter();
        while let Some(e) = walker.next() {
            let e = e.map_err(|e| Error::Unreadable {
                path: e.path().map_or_else(|| root.clone(), Path::to_path_buf),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
            })?;
            let Some(rel) = e
                .path()
                .strip_prefix(to)
                .ok()
                .and_then(Path::to_str)
                .map(str::to_string)
            else {
                continue;
            };
            if e.file_type().is_dir() {
                let excluded = rel
                    .strip_prefix("store/")
                    .is_some_and(|s| !s.contains('/') && EXCLUDED_STORE_DIRS.contains(&s));
                if excluded || e.file_name() == STAGING_DIR {
                    walker.skip_current_dir();
                }
                continue;
            }
            if e.file_type().is_file() {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                target_files.insert(rel, size);
            }
        }
    }
    progress.start(
        "verifying",
        files.len() as u64,
        files.iter().map(|f| f.size).sum(),
    );
    let mut check = FilesCheck {
        source: files.len() as u64,
        ..FilesCheck::default()
    };
    let mut buf = vec![0u8; 256 << 10];
    let source_rels: BTreeSet<&str> = files.iter().map(|f| f.rel.as_str()).collect();
    for f in files {
        progress.inc(1, f.size);
        let expected = match cfg_edit {
            Some((_, new)) if f.rel == "mailserver.cfg" => {
                Some((new.len() as u64, crc32fast::hash(new)))
            }
            _ => f.crc.map(|c| (f.size, c)),
        };
        let Some(&size) = target_files.get(&f.rel) else {
            check.missing.push(f.rel.clone());
            continue;
        };
        let same = match expected {
            Some((want_size, want_crc)) => {
                size == want_size && crc_of(&to.join(&f.rel), &mut buf).is_ok_and(|c| c == want_crc)
            }
            None => size == f.size,
        };
        if same {
            check.equal += 1;
        } else {
            check.different.push(f.rel.clone());
        }
    }
    progress.finish();
    check.extra = target_files
        .keys()
        .filter(|k| !source_rels.contains(k.as_str()))
        .count() as u64;
    report.files = check;

    for name in CONFIG_FILES {
        let in_source = source_rels.contains(name);
        let path = to.join(name);
        let bytes = fs::read(&path).ok();
        let parses = bytes
            .as_deref()
            .is_some_and(|b| edit::variables(name, b).is_ok());
        let expected = match cfg_edit {
            Some((_, new)) if name == "mailserver.cfg" => {
                Some((new.len() as u64, crc32fast::hash(new)))
            }
            _ => files
                .iter()
                .find(|f| f.rel == name)
                .and_then(|f| f.crc.map(|c| (f.size, c))),
        };
        let as_expected = match (&bytes, expected) {
            (Some(b), Some((s, c))) => b.len() as u64 == s && crc32fast::hash(b) == c,
            (None, None) => true,
            _ => false,
        };
        report.config.push(ConfigCheck {
            file: name.to_string(),
            in_source,
            present: bytes.is_some(),
            parses,
            as_expected,
        });
    }

    let extra: Vec<&str> = target_files
        .keys()
        .filter(|k| MailboxPath::parse(k).is_some())
        .map(String::as_str)
        .collect();
    let target_mail = inventory(&mut LiveStore::new(to.join("store")), &extra)?;
    let names: BTreeSet<&String> = source_mail.keys().chain(target_mail.keys()).collect();
    let empty = MailboxInv::default();
    for name in names {
        let s = source_mail.get(name).unwrap_or(&empty);
        let t = target_mail.get(name).unwrap_or(&empty);
        let mut diffs = Vec::new();
        for f in s.folders.difference(&t.folders) {
            diffs.push(format!("folder `{f}` missing in the target"));
        }
        for f in t.folders.difference(&s.folders) {
            diffs.push(format!("folder `{f}` only in the target"));
        }
        for (rel, size) in &s.items {
            match t.items.get(rel) {
                None => diffs.push(format!("`{rel}` missing in the target")),
                Some(ts) if ts != size => {
                    diffs.push(format!(
                        "`{rel}`: {size} bytes in the source, {ts} in the target"
                    ));
                }
                Some(_) => {}
            }
        }
        for rel in t.items.keys().filter(|r| !s.items.contains_key(*r)) {
            diffs.push(format!("`{rel}` only in the target"));
        }
        let equal = diffs.is_empty();
        if diffs.len() > MAX_LISTED {
            let more = diffs.len() - MAX_LISTED;
            diffs.truncate(MAX_LISTED);
            diffs.push(format!("… and {more} more"));
        }
        report.mailboxes.push(MailboxCheck {
            mailbox: name.clone(),
            folders_source: s.folders.len(),
            folders_target: t.folders.len(),
            items_source: s.items.len() as u64,
            items_target: t.items.len() as u64,
            bytes_source: s.bytes(),
            bytes_target: t.bytes(),
            equal,
            differences: diffs,
        });
    }
    Ok(())
}

fn crc_of(path: &Path, buf: &mut [u8]) -> std::io::Result<u32> {
    let mut f = fs::File::open(path)?;
    let mut h = crc32fast::Hasher::new();
    loop {
        match f.read(buf)? {
            0 => return Ok(h.finalize()),
            n => h.update(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::progress::NoProgress;

    fn file(to: &Path, rel: &str, content: &[u8]) -> SourceFile {
        let p = to.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        SourceFile {
            rel: rel.into(),
            size: content.len() as u64,
            crc: Some(crc32fast::hash(content)),
        }
    }

    /// What nothing but a changed file's content tells apart: same size,
    /// other bytes; and a missing file, and an item only in the target.
    #[test]
    fn names_a_file_changed_in_place_a_missing_one_and_an_extra_item() {
        let d = tempfile::tempdir().unwrap();
        let to = d.path();
        let item = "store/mail/a.cz/jan/INBOX/#msgs/00000001.eml";
        let files = vec![
            file(to, "users.cfg", b"<config/>\n"),
            file(to, item, b"Subject: a\r\n\r\n"),
            file(to, "license/license.key", b"KEY"),
            file(to, "sslca/ca.crt", b"CA"),
        ];
        let mut source = Inventory::new();
        let jan = source.entry("jan@a.cz".into()).or_default();
        jan.folders.insert("INBOX".into());
        jan.items.insert(item.into(), files[1].size);

        let mut r = MigrateReport::default();
        verify(to, &files, &source, None, &NoProgress, &mut r).unwrap();
        assert!(r.verified_equal(), "{r:?}");
        assert_eq!(r.files.equal, 4);

        fs::write(to.join("license/license.key"), b"KEX").unwrap();
        fs::remove_file(to.join("sslca/ca.crt")).unwrap();
        fs::write(
            to.join("store/mail/a.cz/jan/INBOX/#msgs/00000002.eml"),
            b"x",
        )
        .unwrap();
        let mut r = MigrateReport::default();
        verify(to, &files, &source, None, &NoProgress, &mut r).unwrap();
        assert!(!r.verified_equal());
        assert_eq!(r.files.different, ["license/license.key"]);
        assert_eq!(r.files.missing, ["sslca/ca.crt"]);
        let m = &r.mailboxes[0];
        assert!(!m.equal);
        assert_eq!((m.items_source, m.items_target), (1, 2));
        assert!(m.differences[0].contains("00000002.eml"), "{m:?}");
        let users = r.config.iter().find(|c| c.file == "users.cfg").unwrap();
        assert!(users.present && users.parses && users.as_expected);
        let ms = r
            .config
            .iter()
            .find(|c| c.file == "mailserver.cfg")
            .unwrap();
        assert!(!ms.in_source && !ms.present && ms.ok());
    }
}
