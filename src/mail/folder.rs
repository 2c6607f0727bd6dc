//! Adding items to a live Kerio folder without replacing anything: each new
//! item gets the next free 8-hex number, is written to a temporary name,
//! fsynced and hard-linked to its final name (a link never replaces, so an
//! item that appeared meanwhile is never overwritten: the next number is
//! taken). [`LiveFolder::commit`] then appends the new records to
//! `index.fld` (and records for any item that had none) and moves
//! `status.fld`'s next number past them, each file replaced by a rename, so
//! the server sees the items without a rebuild. [`InstallLock`] is the same
//! lock a restore takes: mail tools and `kmsrecover` never write one install
//! at once.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use mailvault_formats::store::index_fld::{self, IndexLine};
use mailvault_formats::store::status_fld::StatusFld;
use mailvault_formats::{Mtime, limits};

use crate::error::{Error, Result};
use crate::mail::store::{FolderRef, LiveStore, open_regular};

/// Names of this module's temporaries (never an 8-hex item name).
pub const TMP_PREFIX: &str = ".mailvault-tmp-";

/// The install's write lock (`.kmsrecover.lock`): the one restores take.
pub type InstallLock = mailvault_recover::stage::TargetLock;

/// A folder of the live store, opened for adding items.
pub struct LiveFolder {
    dir: PathBuf,
    rel: String,
    exists: bool,
    created_now: bool,
    folder_type: u32,
    index_raw: Option<Vec<u8>>,
    status: Option<StatusFld>,
    present: BTreeSet<u32>,
    indexed: BTreeSet<u32>,
    pending: Vec<(PathBuf, IndexLine)>,
    next: u32,
}

/// What [`LiveFolder::commit`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Committed {
    /// Items added by this run.
    pub added: usize,
    /// The final number of each added item, in the order of `add` (a
    /// number another writer took meanwhile is replaced by the next free one).
    #[serde(skip)]
    pub numbers: Vec<u32>,
    /// Items that were in `#msgs` without an `index.fld` record and got one
    /// (an interrupted earlier run, or a copy by hand).
    pub indexed_orphans: usize,
    /// Whether the folder was created.
    pub created: bool,
}

impl LiveFolder {
    /// Opens a folder of the live store; a missing one is created (with
    /// `#msgs`, `#assoc`, `index.fld`, `status.fld` of `folder_type`) on the
    /// first [`LiveFolder::add`], never before.
    ///
    /// # Errors
    /// Unreadable folder files; `index.fld` or `status.fld` beyond their bounds.
    pub fn open(store: &LiveStore, folder: &FolderRef, folder_type: u32) -> Result<Self> {
        let rel = folder.rel();
        let dir = store.path_of(&rel)?;
        // Nothing is written through a symbolic link: not the folder, not a
        // parent inside the store, not #msgs.
        let mut at = store.store_dir().to_path_buf();
        for part in format!("{}/#msgs", rel.trim_start_matches("store/")).split('/') {
            at.push(part);
            if fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Error::Invalid(format!(
                    "`{}` is a symbolic link: refused, nothing is written through links in the store",
                    at.display()
                )));
            }
        }
        let exists = dir.join("#msgs").is_dir();
        let read = |name: &str, limit: u64| -> Result<Option<Vec<u8>>> {
            let p = dir.join(name);
            match open_regular(&p) {
                Ok(f) => {
                    let mut v = Vec::new();
                    f.take(limit + 1)
                        .read_to_end(&mut v)
                        .map_err(Error::io("cannot read", &p))?;
                    if v.len() as u64 > limit {
                        return Err(Error::Invalid(format!(
                            "`{}` is larger than {limit} bytes",
                            p.display()
                        )));
                    }
                    Ok(Some(v))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("cannot read", &p)(e)),
            }
        };
        let index_raw = read("index.fld", limits::MAX_INDEX_BYTES)?;
        let status = read("status.fld", limits::MAX_STATUS_BYTES)?
            .map(|b| StatusFld::parse(&String::from_utf8_lossy(&b)))
            .transpose()
            .map_err(|e| Error::Invalid(format!("`{}/status.fld`: {e}", dir.display())))?;
        let indexed = index_raw
            .as_deref()
            .map(|b| {
                index_fld::parse_index(&String::from_utf8_lossy(b))
                    .0
                    .into_iter()
                    .map(|l| l.uid)
                    .collect()
            })
            .unwrap_or_default();
        let mut present = BTreeSet::new();
        let msgs = dir.join("#msgs");
        if exists {
            for e in fs::read_dir(&msgs).map_err(Error::io("cannot list", &msgs))? {
                let e = e.map_err(Error::io("cannot list", &msgs))?;
                if let Some(uid) = e.file_name().to_str().and_then(index_fld::uid_of_file_name) {
                    present.insert(uid);
                }
            }
        }
        let mut f = Self {
            dir,
            rel,
            exists,
            created_now: false,
            folder_type: status.as_ref().map_or(folder_type, |s| s.folder_type),
            index_raw,
            status,
            present,
            indexed,
            pending: Vec::new(),
            next: 1,
        };
        f.next = f.first_free();
        Ok(f)
    }

    fn first_free(&self) -> u32 {
        let after = |s: &BTreeSet<u32>| s.last().map_or(1, |u| u.saturating_add(1));
        after(&self.present)
            .max(after(&self.indexed))
            .max(self.status.as_ref().map_or(1, |s| s.next_uid))
            .max(1)
    }

    /// The install-relative path of the folder.
    #[must_use]
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The folder directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the folder exists yet.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.exists
    }

    /// The item numbers present in `#msgs`.
    #[must_use]
    pub fn present(&self) -> &BTreeSet<u32> {
        &self.present
    }

    /// The number the next added item would get (for dry runs).
    #[must_use]
    pub fn peek_next(&self) -> u32 {
        self.next
    }

    /// Reserves the next number without writing (dry runs: the numbers a
    /// real run would give).
    pub fn reserve(&mut self) -> u32 {
        let u = self.next;
        self.next = self.next.saturating_add(1);
        u
    }

    fn create(&mut self) -> Result<()> {
        for sub in ["#msgs", "#assoc"] {
            let p = self.dir.join(sub);
            fs::create_dir_all(&p).map_err(Error::io("cannot create", &p))?;
        }
        if self.status.is_none() {
            let now = Mtime::from_system(std::time::SystemTime::now()).secs;
            self.status = Some(StatusFld::new(
                self.folder_type,
                u32::try_from(now.max(1)).unwrap_or(1),
            ));
        }
        self.exists = true;
        self.created_now = true;
        Ok(())
    }

    /// Removes temporaries that an interrupted run left in `#msgs`. Call
    /// only while holding the [`InstallLock`].
    ///
    /// # Errors
    /// The folder cannot be listed or a temporary removed.
    pub fn remove_leftovers(&self) -> Result<usize> {
        let msgs = self.dir.join("#msgs");
        let mut n = 0;
        let rd = match fs::read_dir(&msgs) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io("cannot list", &msgs)(e)),
        };
        for e in rd {
            let e = e.map_err(Error::io("cannot list", &msgs))?;
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                fs::remove_file(e.path()).map_err(Error::io("cannot remove", &e.path()))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Adds one item with flags and file time `time`: written under a
    /// temporary name now, given its number in [`LiveFolder::commit`].
    /// Returns the number it will most likely get.
    ///
    /// # Errors
    /// Writing failed (the temporary is removed; nothing is under a final name).
    pub fn add(&mut self, content: &[u8], flags: u32, time: i64) -> Result<u32> {
        if !self.exists {
            self.create()?;
        }
        if self.next == u32::MAX {
            return Err(Error::Invalid(format!(
                "`{}` has no free item number left",
                self.dir.display()
            )));
        }
        let uid = self.reserve();
        let tmp = self
            .dir
            .join("#msgs")
            .join(format!("{TMP_PREFIX}{}-{uid:08x}", std::process::id()));
        let write = || -> std::io::Result<()> {
            // A new file, never through whatever (a planted link) is there.
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(content)?;
            f.set_modified(
                Mtime {
                    secs: time,
                    nanos: 0,
                }
                .to_system(),
            )
        };
        if let Err(e) = write() {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                let _ = fs::remove_file(&tmp);
            }
            return Err(Error::io("cannot write", &tmp)(e));
        }
        let t = u32::try_from(time.max(0)).unwrap_or(u32::MAX);
        self.pending.push((
            tmp,
            IndexLine {
                uid,
                flags,
                size: content.len() as u64,
                created: t,
                modified: t,
                item: "0001".into(),
                class: index_fld::item_class(content).into(),
            },
        ));
        Ok(uid)
    }

    /// Gives the added items their final names: one filesystem sync for
    /// all of them (not one per item: a merge of thousands of messages),
    /// then a hard link each, which never replaces: a number taken
    /// meanwhile moves the item to the next free one.
    fn publish(&mut self) -> Result<Vec<IndexLine>> {
        let msgs = self.dir.join("#msgs");
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let d = fs::File::open(&msgs).map_err(Error::io("cannot open", &msgs))?;
        rustix::fs::syncfs(&d).map_err(|e| Error::io("cannot sync", &msgs)(e.into()))?;
        let mut lines = Vec::with_capacity(self.pending.len());
        // Taken one at a time: on an error, what is not yet linked stays
        // pending, so that dropping the folder removes its temporaries.
        self.pending.reverse();
        while let Some((tmp, mut line)) = self.pending.pop() {
            let linked = loop {
                let dest = msgs.join(line.file_name());
                match fs::hard_link(&tmp, &dest) {
                    Ok(()) => break Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        line.uid = self.first_free().max(self.next);
                        self.next = line.uid.saturating_add(1);
                        self.present.insert(line.uid);
                        if line.uid == u32::MAX {
                            break Err(Error::Invalid(format!(
                                "`{}` has no free item number left",
                                self.dir.display()
                            )));
                        }
                    }
                    Err(e) => break Err(Error::io("cannot create", &dest)(e)),
                }
            };
            if let Err(e) = linked {
                self.pending.push((tmp, line));
                return Err(e);
            }
            self.present.insert(line.uid);
            lines.push(line);
            // Linked: the item is whole under its number; a temporary that
            // cannot be removed now goes with the next run's leftovers.
            let _ = fs::remove_file(&tmp);
        }
        d.sync_all().map_err(Error::io("cannot sync", &msgs))?;
        Ok(lines)
    }

    /// Writes `index.fld` (the old text kept byte for byte, the new records
    /// appended, and records for items that had none) and `status.fld`
    /// (next number past every item), each by a rename; fsyncs the folder.
    ///
    /// # Errors
    /// Writing failed: the items stay (they are whole); the next run, or
    /// `mailvault reindex`, writes their records.
    pub fn commit(&mut self) -> Result<Committed> {
        let mut done = Committed::default();
        if !self.exists {
            return Ok(done);
        }
        done.created = self.created_now;
        let mut lines = self.publish()?;
        done.added = lines.len();
        done.numbers = lines.iter().map(|l| l.uid).collect();
        let new: BTreeSet<u32> = lines.iter().map(|l| l.uid).collect();
        let msgs = self.dir.join("#msgs");
        // Items that arrived since open (a copy by hand) get records too.
        for e in fs::read_dir(&msgs).map_err(Error::io("cannot list", &msgs))? {
            let e = e.map_err(Error::io("cannot list", &msgs))?;
            if let Some(uid) = e.file_name().to_str().and_then(index_fld::uid_of_file_name) {
                self.present.insert(uid);
            }
        }
        for &uid in &self.present {
            if self.indexed.contains(&uid) || new.contains(&uid) {
                continue;
            }
            let p = msgs.join(format!("{uid:08x}.eml"));
            let Ok(m) = fs::metadata(&p) else { continue };
            let mut head = Vec::new();
            if let Ok(f) = fs::File::open(&p) {
                let _ = f.take(4096).read_to_end(&mut head);
            }
            let t = m
                .modified()
                .map(|t| u32::try_from(Mtime::from_system(t).secs.max(0)).unwrap_or(u32::MAX))
                .unwrap_or(0);
            lines.push(IndexLine {
                uid,
                flags: 0,
                size: m.len(),
                created: t,
                modified: t,
                item: "0001".into(),
                class: index_fld::item_class(&head).into(),
            });
            done.indexed_orphans += 1;
        }
        lines.sort_by_key(|l| l.uid);
        if !lines.is_empty() || self.index_raw.is_none() {
            let mut text = self.index_raw.clone().unwrap_or_default();
            if !text.is_empty() && !text.ends_with(b"\n") {
                text.push(b'\n');
            }
            text.extend_from_slice(index_fld::write_index(&lines).as_bytes());
            replace_file(&self.dir.join("index.fld"), &text)?;
            self.indexed.extend(lines.iter().map(|l| l.uid));
            self.index_raw = Some(text);
        }
        let next = self.first_free();
        let status = self
            .status
            .get_or_insert_with(|| StatusFld::new(self.folder_type, 1));
        if status.next_uid < next || self.created_now {
            status.next_uid = status.next_uid.max(next);
            replace_file(&self.dir.join("status.fld"), status.to_text().as_bytes())?;
        }
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("cannot sync", &self.dir))?;
        Ok(done)
    }
}

impl Drop for LiveFolder {
    /// Items added but never published (an error before or during
    /// [`LiveFolder::commit`]) leave no temporaries behind: on a full disk
    /// they would keep it full for the mail server.
    fn drop(&mut self) {
        for (tmp, _) in self.pending.drain(..) {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Replaces a small file by writing a temporary beside it and renaming.
///
/// # Errors
/// I/O, naming the file.
pub fn replace_file(path: &Path, content: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".mailvault-tmp-{name}"));
    let write = || -> std::io::Result<()> {
        // A leftover (or a planted link) goes; the temporary is always new,
        // so nothing is ever written through a link.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("cannot write", path)(e)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn folder() -> FolderRef {
        FolderRef {
            domain: "a.cz".into(),
            mailbox: "jan".into(),
            path: "Restored".into(),
        }
    }

    #[test]
    fn creates_a_folder_and_never_replaces_an_item() {
        let d = tempfile::tempdir().unwrap();
        let store = LiveStore::new(d.path());
        let mut f = LiveFolder::open(&store, &folder(), 0).unwrap();
        assert!(!f.exists());
        assert!(!d.path().join("mail").exists(), "opening writes nothing");
        assert_eq!(f.add(b"Subject: one\r\n\r\n", 0, 1_700_000_000).unwrap(), 1);
        assert_eq!(f.add(b"BEGIN:VCARD\r\n", 1, 1_700_000_001).unwrap(), 2);
        assert!(
            !f.dir().join("#msgs/00000001.eml").exists(),
            "no final name before commit"
        );
        // Another writer takes number 2 meanwhile: ours moves to 3.
        fs::write(f.dir().join("#msgs/00000002.eml"), b"theirs").unwrap();
        let c = f.commit().unwrap();
        assert_eq!((c.added, c.indexed_orphans, c.created), (2, 1, true));
        assert_eq!(c.numbers, [1, 3]);
        let dir = f.dir().to_path_buf();
        assert_eq!(fs::read(dir.join("#msgs/00000002.eml")).unwrap(), b"theirs");
        let index = fs::read_to_string(dir.join("index.fld")).unwrap();
        let (lines, bad) = index_fld::parse_index(&index);
        assert!(bad.is_empty());
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.uid, l.class.as_str()))
                .collect::<Vec<_>>(),
            [(1, "IPM.Note"), (2, "IPM.Note"), (3, "IPM.Contact")]
        );
        let status =
            StatusFld::parse(&fs::read_to_string(dir.join("status.fld")).unwrap()).unwrap();
        assert_eq!(status.next_uid, 4);
        assert!(dir.join("#assoc").is_dir());
        // Reopened: the old index text is kept, new records appended.
        let mut f = LiveFolder::open(&store, &folder(), 0).unwrap();
        assert_eq!(f.add(b"Subject: four\r\n\r\n", 0, 1).unwrap(), 4);
        f.commit().unwrap();
        let again = fs::read_to_string(dir.join("index.fld")).unwrap();
        assert!(again.starts_with(&index));
        assert_eq!(index_fld::parse_index(&again).0.len(), 4);
        let leftovers: Vec<_> = fs::read_dir(dir.join("#msgs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".mailvault-tmp")
            })
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn refuses_to_write_through_a_symbolic_link() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("mail/a.cz/jan")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), d.path().join("mail/a.cz/jan/Restored"))
            .unwrap();
        let store = LiveStore::new(d.path());
        let err = LiveFolder::open(&store, &folder(), 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_install_lock_excludes_a_second_writer() {
        let d = tempfile::tempdir().unwrap();
        let first = InstallLock::take(d.path()).unwrap();
        let err = InstallLock::take(d.path()).err().unwrap().to_string();
        assert!(err.contains("another kmsrecover or mail tool"), "{err}");
        drop(first);
        InstallLock::take(d.path()).unwrap();
    }
}
