//! Giving messages back: copies of items read from a [`MailStore`] (a
//! backup chain, usually) added to one live folder through
//! [`LiveFolder`], so nothing live is ever replaced. It owns the duplicate
//! rule (a message whose exact bytes the folder already holds is not added
//! again, and is reported as already there) and the per-item report; it
//! does not choose folders, check the server or take the install lock
//! (its callers, `kmsrecover --message` and `merge-eml --from … --message`, do).
//!
//! Each added item keeps the flags of its `index.fld` record in the source
//! (when it has one) and its modification time, and gets the next free
//! number; `index.fld` and `status.fld` are updated once, at the end.

use std::collections::{BTreeMap, HashMap};
use std::fs;

use mailvault_formats::layout;
use mailvault_formats::store::index_fld::{self, IndexLine};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::mail::folder::{Committed, LiveFolder};
use crate::mail::store::{FolderRef, ItemRef, LiveStore, MailStore};

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Added under a new number (a dry run: the number it would get).
    Added {
        /// The item number.
        uid: u32,
        /// Install-relative path of the new item.
        path: String,
    },
    /// The folder already holds these exact bytes: not added again.
    AlreadyThere {
        /// Install-relative path of the identical live item.
        path: String,
    },
    /// Could not be read from the source (damage): nothing added.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One item given back (or not).
#[derive(Debug, Clone, Serialize)]
pub struct GivenItem {
    /// The item's path in the source.
    pub source: String,
    /// Size in bytes.
    pub size: u64,
    /// Flags written to its `index.fld` record (from the source's record).
    pub flags: u32,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What [`give_back`] did (or, [`plan_give_back`], would do).
#[derive(Debug, Clone, Serialize)]
pub struct GiveBackReport {
    /// Where the items went: the live folder's install-relative path.
    pub folder: String,
    /// Whether this is only the plan (nothing written).
    pub dry_run: bool,
    /// One per item, in the order given.
    pub items: Vec<GivenItem>,
    /// What the folder's commit did (`None` for a dry run).
    pub committed: Option<Committed>,
}

impl GiveBackReport {
    /// Items added.
    #[must_use]
    pub fn added(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Added { .. }))
    }

    /// Items already there.
    #[must_use]
    pub fn already_there(&self) -> usize {
        self.count(|o| matches!(o, Outcome::AlreadyThere { .. }))
    }

    /// Items that failed.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed { .. }))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.items.iter().filter(|i| f(&i.outcome)).count()
    }
}

/// Adds a copy of each of `items` (read from `store`) to the live folder
/// `into` (the items' original folder, or another folder of the same
/// mailbox; created if missing): each under the next free number, never
/// replacing anything, skipping those whose exact bytes are already there.
///
/// # Errors
/// The live folder cannot be read or written (items added before the
/// failure are whole, and recorded in `index.fld` when possible). Items
/// that cannot be read from `store` are not errors: they are
/// [`Outcome::Failed`].
pub fn give_back(
    store: &mut dyn MailStore,
    items: &[ItemRef],
    live: &LiveStore,
    into: &FolderRef,
) -> Result<GiveBackReport> {
    run(store, items, live, into, false)
}

/// What [`give_back`] would do, writing nothing (the numbers are those a
/// run now would give).
///
/// # Errors
/// As [`give_back`], for reading.
pub fn plan_give_back(
    store: &mut dyn MailStore,
    items: &[ItemRef],
    live: &LiveStore,
    into: &FolderRef,
) -> Result<GiveBackReport> {
    run(store, items, live, into, true)
}

fn run(
    store: &mut dyn MailStore,
    items: &[ItemRef],
    live: &LiveStore,
    into: &FolderRef,
    dry_run: bool,
) -> Result<GiveBackReport> {
    // A folder created here gets the type of the first item's folder.
    let folder_type = match items.first().and_then(|i| FolderRef::of_rel(&i.rel)) {
        Some((f, _)) => store.status(&f).ok().flatten().map_or(0, |s| s.folder_type),
        None => 0,
    };
    let mut folder = LiveFolder::open(live, into, folder_type)?;
    if !dry_run {
        // The caller holds the install's lock: what a killed run left goes.
        folder.remove_leftovers()?;
    }
    // Live items by size: only same-sized ones can hold the same bytes.
    let mut by_size: HashMap<u64, Vec<String>> = HashMap::new();
    for i in live.items(into)? {
        by_size.entry(i.size).or_default().push(i.rel);
    }
    let mut indexes: BTreeMap<FolderRef, BTreeMap<u32, IndexLine>> = BTreeMap::new();
    let mut report = GiveBackReport {
        folder: into.rel(),
        dry_run,
        items: Vec::new(),
        committed: None,
    };
    // What this run added (or, a dry run, would add), by size and SHA-256:
    // not yet under a final name to compare with, and never kept whole (a
    // dry run of a large folder would hold all of it in memory).
    let mut added_now: HashMap<(u64, [u8; 32]), String> = HashMap::new();
    let mut failure = None;
    for item in items {
        let flags = match FolderRef::of_rel(&item.rel) {
            Some((f, _)) => {
                if !indexes.contains_key(&f) {
                    // A source without a readable index.fld gives no flags.
                    let idx = store.index(&f).unwrap_or_default();
                    indexes.insert(f.clone(), idx);
                }
                indexes
                    .get(&f)
                    .and_then(|m| m.get(&item.uid))
                    .map_or(0, |l| l.flags)
            }
            None => 0,
        };
        let mut given = GivenItem {
            source: item.rel.clone(),
            size: item.size,
            flags,
            outcome: Outcome::Failed {
                reason: String::new(),
            },
        };
        let content = match store.read_item(item) {
            Ok(c) => c,
            Err(e) => {
                given.outcome = Outcome::Failed {
                    reason: e.to_string(),
                };
                report.items.push(given);
                continue;
            }
        };
        let size = content.len() as u64;
        let mut same = None;
        for rel in by_size.get(&size).map(Vec::as_slice).unwrap_or_default() {
            let path = live.path_of(rel)?;
            match fs::read(&path) {
                Ok(b) if b == content => {
                    same = Some(rel.clone());
                    break;
                }
                Ok(_) => {}
                // Gone meanwhile: it holds nothing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("cannot read", &path)(e)),
            }
        }
        let digest: [u8; 32] = Sha256::digest(&content).into();
        if same.is_none() {
            same = added_now.get(&(size, digest)).cloned();
        }
        if let Some(path) = same {
            given.outcome = Outcome::AlreadyThere { path };
            report.items.push(given);
            continue;
        }
        let uid = if dry_run {
            folder.reserve()
        } else {
            match folder.add(&content, flags, item.mtime) {
                Ok(u) => u,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        };
        let path = format!("{}/#msgs/{uid:08x}.eml", into.rel());
        added_now.insert((size, digest), path.clone());
        given.outcome = Outcome::Added { uid, path };
        report.items.push(given);
    }
    if !dry_run {
        // Records for what was added, even when a later item failed.
        let committed = folder.commit();
        if let Some(e) = failure {
            return Err(e);
        }
        let committed = committed?;
        // A number another writer took meanwhile moved its item on.
        let added = report
            .items
            .iter_mut()
            .filter_map(|i| match &mut i.outcome {
                Outcome::Added { uid, path } => Some((uid, path)),
                _ => None,
            });
        for ((uid, path), &n) in added.zip(&committed.numbers) {
            *uid = n;
            *path = format!("{}/#msgs/{n:08x}.eml", into.rel());
        }
        report.committed = Some(committed);
    }
    Ok(report)
}

/// The folder and number of a message path as `mailvault search` prints
/// it (`store/mail/<domain>/<mailbox>/<folder>/#msgs/<8 hex>.eml`).
///
/// # Errors
/// Anything else, or an unsafe path.
pub fn message_path(path: &str) -> Result<(FolderRef, u32)> {
    let bad = |why: &str| {
        Error::Invalid(format!(
            "`{path}` {why}: give a message path as `mailvault search` prints it (store/mail/<domain>/<user>/<folder>/#msgs/<8 hex digits>.eml)"
        ))
    };
    layout::check_relative(path).map_err(|e| bad(&e.to_string()))?;
    let (folder, file) = FolderRef::of_rel(path).ok_or_else(|| bad("is not a message"))?;
    // `…/INBOX/#msgs/#msgs/x.eml` would make `INBOX/#msgs` a folder: its
    // index.fld written into a live `#msgs`.
    if folder.path.split('/').any(|c| c.starts_with('#')) {
        return Err(bad("is not a message (a folder name starting with `#`)"));
    }
    let uid = file
        .strip_prefix("#msgs/")
        .and_then(index_fld::uid_of_file_name)
        .ok_or_else(|| bad("is not a message"))?;
    Ok((folder, uid))
}

/// Where items of `folder` go back to: the folder itself, or the folder
/// `name` at the top of the same mailbox (`--as-folder`).
///
/// # Errors
/// A name that is not one folder name (`/`, `.`, `..`, a leading `#`,
/// control characters, the names a restore reserves).
pub fn target_folder(folder: &FolderRef, as_folder: Option<&str>) -> Result<FolderRef> {
    let Some(name) = as_folder else {
        return Ok(folder.clone());
    };
    if name.is_empty()
        || name.contains('/')
        || name.starts_with('#')
        || layout::check_relative(name).is_err()
        || mailvault_recover::request::is_ours(std::ffi::OsStr::new(name))
    {
        return Err(Error::Invalid(format!(
            "bad folder name `{}`: one folder name, without `/` or a leading `#`",
            name.escape_debug()
        )));
    }
    Ok(FolderRef {
        domain: folder.domain.clone(),
        mailbox: folder.mailbox.clone(),
        path: name.to_string(),
    })
}

/// Finds each message path in `store` and groups the items by the live
/// folder they go back to (see [`target_folder`]); a path given twice is
/// taken once.
///
/// # Errors
/// A malformed path ([`message_path`]); a path the store does not hold
/// ([`Error::NotInBackup`], naming it); a bad `as_folder`.
pub fn locate(
    store: &dyn MailStore,
    paths: &[String],
    as_folder: Option<&str>,
) -> Result<BTreeMap<FolderRef, Vec<ItemRef>>> {
    let mut listed: BTreeMap<FolderRef, Vec<ItemRef>> = BTreeMap::new();
    let mut out: BTreeMap<FolderRef, Vec<ItemRef>> = BTreeMap::new();
    for path in paths {
        let (folder, uid) = message_path(path)?;
        if !listed.contains_key(&folder) {
            listed.insert(folder.clone(), store.items(&folder)?);
        }
        let item = listed
            .get(&folder)
            .and_then(|items| items.iter().find(|i| i.uid == uid && i.rel == *path))
            .ok_or_else(|| Error::NotInBackup {
                path: path.clone(),
                backup: store.describe(),
            })?;
        let into = target_folder(&folder, as_folder)?;
        let v = out.entry(into).or_default();
        if !v.iter().any(|i| i.rel == item.rel) {
            v.push(item.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn inbox() -> FolderRef {
        FolderRef {
            domain: "a.cz".into(),
            mailbox: "jan".into(),
            path: "INBOX".into(),
        }
    }

    /// Two live stores: one plays the backup.
    fn stores() -> (tempfile::TempDir, LiveStore, LiveStore) {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let dst = d.path().join("dst");
        let msgs = src.join("mail/a.cz/jan/INBOX/#msgs");
        fs::create_dir_all(&msgs).unwrap();
        fs::write(msgs.join("00000001.eml"), b"Subject: one\r\n\r\n1").unwrap();
        fs::write(msgs.join("00000002.eml"), b"Subject: two\r\n\r\n2").unwrap();
        fs::write(
            src.join("mail/a.cz/jan/INBOX/index.fld"),
            "U00000001 F00000005 S17 D6553f13c M6553f13c I0001 CIPM.Note\n",
        )
        .unwrap();
        let live = dst.join("mail/a.cz/jan/INBOX/#msgs");
        fs::create_dir_all(&live).unwrap();
        fs::write(live.join("00000001.eml"), b"Subject: two\r\n\r\n2").unwrap();
        (d, LiveStore::new(src), LiveStore::new(dst))
    }

    #[test]
    fn message_paths_and_folder_names_are_checked() {
        let (f, uid) =
            message_path("store/mail/a.cz/jan/Projects/2026/#msgs/0000002a.eml").unwrap();
        assert_eq!((f.path.as_str(), uid), ("Projects/2026", 42));
        for bad in [
            "store/mail/a.cz/jan/../../../etc/#msgs/00000001.eml",
            "/store/mail/a.cz/jan/INBOX/#msgs/00000001.eml",
            "store/mail/a.cz/jan/INBOX/index.fld",
            "store/mail/a.cz/jan/INBOX/#msgs/x.eml",
            "store/mail/a.cz/jan/#msgs/00000001.eml",
            "store/mail/a.cz/jan/INBOX/#msgs/#msgs/00000001.eml",
            "store/mail/a.cz/jan/INBOX/#assoc/#msgs/00000001.eml",
            "users.cfg",
        ] {
            assert!(message_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            target_folder(&f, Some("Restored")).unwrap().rel(),
            "store/mail/a.cz/jan/Restored"
        );
        assert_eq!(target_folder(&f, None).unwrap(), f);
        for bad in ["", "a/b", "..", ".", "#msgs", ".kmsrecover-staging", "a\nb"] {
            assert!(target_folder(&f, Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn adds_under_the_next_number_and_skips_exact_copies() {
        let (_d, mut src, live) = stores();
        let items = src.items(&inbox()).unwrap();
        let plan = plan_give_back(&mut src, &items, &live, &inbox()).unwrap();
        assert_eq!((plan.added(), plan.already_there()), (1, 1));
        assert!(
            !live
                .store_dir()
                .join("mail/a.cz/jan/INBOX/#msgs/00000002.eml")
                .exists(),
            "a plan writes nothing"
        );
        let r = give_back(&mut src, &items, &live, &inbox()).unwrap();
        assert_eq!(
            r.items[0].outcome,
            Outcome::Added {
                uid: 2,
                path: "store/mail/a.cz/jan/INBOX/#msgs/00000002.eml".into()
            }
        );
        assert_eq!(r.items[0].flags, 5, "flags from the source's index.fld");
        assert_eq!(
            r.items[1].outcome,
            Outcome::AlreadyThere {
                path: "store/mail/a.cz/jan/INBOX/#msgs/00000001.eml".into()
            }
        );
        let dir = live.store_dir().join("mail/a.cz/jan/INBOX");
        assert_eq!(
            fs::read(dir.join("#msgs/00000002.eml")).unwrap(),
            b"Subject: one\r\n\r\n1"
        );
        // Again: both are there now, nothing added.
        let again = give_back(&mut src, &items, &live, &inbox()).unwrap();
        assert_eq!((again.added(), again.already_there()), (0, 2));
        let index = fs::read_to_string(dir.join("index.fld")).unwrap();
        assert_eq!(index.lines().count(), 2, "{index}");
    }
}
