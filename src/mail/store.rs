//! A message store to read from, live or backed up: [`MailStore`] lists
//! folders (directories holding `#msgs/`) and their items, reads small
//! folder files (`index.fld`, `status.fld`) and copies items out. Two
//! implementations: [`LiveStore`] (an install's `store/` directory) and
//! [`ChainStore`] (the state of a full + differential chain, read through
//! the repository's one reader, CRC-checked). Export, `merge-eml --from`
//! and migrate's verification read through this, so a live install and a
//! backup are treated the same.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use mailvault_formats::layout::{self, MailboxPath};
use mailvault_formats::store::index_fld::{self, IndexLine};
use mailvault_formats::store::status_fld::StatusFld;
use mailvault_formats::summary::SkipReason;
use mailvault_formats::{Mtime, limits};
use mailvault_repo::chain::{ChainReader, EntryError, RestoreChain, StateFile};
use serde::Serialize;

use crate::error::{Error, Result};

/// A folder of a mailbox: `store/mail/<domain>/<mailbox>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FolderRef {
    /// Domain directory name.
    pub domain: String,
    /// Mailbox directory name: the user's login, or `#public`.
    pub mailbox: String,
    /// Folder directory names below the mailbox, joined by `/`
    /// (`INBOX`, `Projects/2026/Q4 Migration`).
    pub path: String,
}

impl FolderRef {
    /// The install-relative path of the folder directory.
    #[must_use]
    pub fn rel(&self) -> String {
        format!("store/mail/{}/{}/{}", self.domain, self.mailbox, self.path)
    }

    /// The folder of an install-relative path inside it (`…/INBOX/#msgs/x.eml`
    /// → INBOX), if the path lies in a folder's `#msgs`, `index.fld` or
    /// `status.fld`.
    #[must_use]
    pub fn of_rel(rel: &str) -> Option<(Self, &str)> {
        let m = MailboxPath::parse(rel)?;
        let (folder, file) = if let Some(i) = m.rest.rfind("/#msgs/") {
            (&m.rest[..i], &m.rest[i + 1..])
        } else {
            let (folder, file) = m.rest.rsplit_once('/')?;
            if file != "index.fld" && file != "status.fld" {
                return None;
            }
            (folder, file)
        };
        (!folder.is_empty()).then(|| {
            (
                Self {
                    domain: m.domain.to_string(),
                    mailbox: m.mailbox.to_string(),
                    path: folder.to_string(),
                },
                file,
            )
        })
    }

    /// `user@domain` (or `#public@domain`).
    #[must_use]
    pub fn address(&self) -> String {
        format!("{}@{}", self.mailbox, self.domain)
    }

    /// The folder's directory names, outermost first.
    #[must_use]
    pub fn components(&self) -> Vec<&str> {
        self.path.split('/').collect()
    }
}

/// The folders of a selection: a domain, a mailbox of it, a folder of
/// that mailbox (with its subfolders); `None` selects everything at that
/// level.
#[must_use]
pub fn select(
    folders: Vec<FolderRef>,
    domain: Option<&str>,
    mailbox: Option<&str>,
    folder: Option<&str>,
) -> Vec<FolderRef> {
    folders
        .into_iter()
        .filter(|f| domain.is_none_or(|d| f.domain == d))
        .filter(|f| mailbox.is_none_or(|m| f.mailbox == m))
        .filter(|f| folder.is_none_or(|p| layout::within(&f.path, p.trim_matches('/'))))
        .collect()
}

/// One item of a folder: `#msgs/<8 hex>.eml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemRef {
    /// Item number (the file name's hex).
    pub uid: u32,
    /// Install-relative path.
    pub rel: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
}

/// A message store to read from.
pub trait MailStore {
    /// What this store is, for messages (`/opt/kerio/mailserver/store`,
    /// `backup F20261122T010000Z + D20261124T010000Z`).
    fn describe(&self) -> String;

    /// Every folder, sorted.
    ///
    /// # Errors
    /// The store cannot be listed.
    fn folders(&self) -> Result<Vec<FolderRef>>;

    /// A folder's items (valid `#msgs` names only), sorted by number.
    ///
    /// # Errors
    /// The folder cannot be listed.
    fn items(&self, folder: &FolderRef) -> Result<Vec<ItemRef>>;

    /// A folder file (`index.fld`, `status.fld`) read whole, up to `limit`
    /// bytes; `None` when the folder has none.
    ///
    /// # Errors
    /// Unreadable, or larger than `limit`.
    fn read_folder_file(
        &mut self,
        folder: &FolderRef,
        name: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>>;

    /// Copies an item's content to `out`; returns its size.
    ///
    /// # Errors
    /// Unreadable or damaged (naming the item), or `out` failed.
    fn copy_item(&mut self, item: &ItemRef, out: &mut dyn Write) -> Result<u64>;

    /// An item's content, read whole (bounded by [`limits::MAX_MESSAGE_BYTES`]).
    ///
    /// # Errors
    /// As [`MailStore::copy_item`]; too large.
    fn read_item(&mut self, item: &ItemRef) -> Result<Vec<u8>> {
        if item.size > limits::MAX_MESSAGE_BYTES {
            return Err(Error::Invalid(format!(
                "`{}` is {} bytes, more than the {} a message may have here",
                item.rel,
                item.size,
                limits::MAX_MESSAGE_BYTES
            )));
        }
        let mut v = Vec::with_capacity(usize::try_from(item.size).unwrap_or(0));
        self.copy_item(item, &mut v)?;
        Ok(v)
    }

    /// The folder's `index.fld` records by item number (lines that do not
    /// parse are left out); empty when there is no `index.fld`.
    ///
    /// # Errors
    /// As [`MailStore::read_folder_file`].
    fn index(&mut self, folder: &FolderRef) -> Result<BTreeMap<u32, IndexLine>> {
        let Some(bytes) = self.read_folder_file(folder, "index.fld", limits::MAX_INDEX_BYTES)?
        else {
            return Ok(BTreeMap::new());
        };
        let (lines, _) = index_fld::parse_index(&String::from_utf8_lossy(&bytes));
        Ok(lines.into_iter().map(|l| (l.uid, l)).collect())
    }

    /// What a mailbox (`store/mail/<domain>/<mailbox>`) holds that this
    /// store cannot give as folders and items, as (install-relative path,
    /// why): names that are not UTF-8 or not portable, links, FIFOs and
    /// devices where folders and items are, and (for a backup) what the
    /// backup skipped there. Callers that promise "everything" report these.
    fn unlisted(&self, _domain: &str, _mailbox: &str) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The folder's `status.fld`, if it has one.
    ///
    /// # Errors
    /// As [`MailStore::read_folder_file`].
    fn status(&mut self, folder: &FolderRef) -> Result<Option<StatusFld>> {
        let Some(bytes) = self.read_folder_file(folder, "status.fld", limits::MAX_STATUS_BYTES)?
        else {
            return Ok(None);
        };
        Ok(Some(
            StatusFld::parse(&String::from_utf8_lossy(&bytes))
                .map_err(|e| Error::Invalid(format!("`{}/status.fld`: {e}", folder.rel())))?,
        ))
    }
}

/// Opens a folder file for reading; a FIFO or device there is an error
/// (opening a FIFO would wait for a writer forever, holding the lock).
///
/// # Errors
/// Not found, not a regular file, or I/O.
pub fn open_regular(p: &Path) -> std::io::Result<fs::File> {
    if !fs::metadata(p)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    fs::File::open(p)
}

/// The live store of an install (`<install>/store`).
pub struct LiveStore {
    store_dir: PathBuf,
}

impl LiveStore {
    /// The store directory (`<install>/store`, or Kerio's `-s`).
    pub fn new(store_dir: impl Into<PathBuf>) -> Self {
        Self {
            store_dir: store_dir.into(),
        }
    }

    /// The store directory.
    #[must_use]
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Where an install-relative `store/…` path is (through the one safe
    /// mapping).
    ///
    /// # Errors
    /// A path outside `store/` or unsafe.
    pub fn path_of(&self, rel: &str) -> Result<PathBuf> {
        let rest = rel
            .strip_prefix("store/")
            .ok_or_else(|| Error::Invalid(format!("`{rel}` is not a store path")))?;
        layout::enclosed_path(&self.store_dir, rest)
            .map_err(|e| Error::Invalid(format!("`{rel}`: {e}")))
    }
}

/// Sorted names of a directory's entries that are directories (not
/// following symbolic links), leaving out names that are not UTF-8.
fn subdirs(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("cannot list", dir)(e)),
    };
    for e in rd {
        let e = e.map_err(Error::io("cannot list", dir))?;
        if e.file_type()
            .map_err(Error::io("cannot list", dir))?
            .is_dir()
            && let Some(n) = e.file_name().to_str()
        {
            out.push(n.to_string());
        }
    }
    out.sort();
    Ok(out)
}

impl MailStore for LiveStore {
    fn describe(&self) -> String {
        self.store_dir.display().to_string()
    }

    fn folders(&self) -> Result<Vec<FolderRef>> {
        let mail = self.store_dir.join("mail");
        let mut out = Vec::new();
        for domain in subdirs(&mail)? {
            for mailbox in subdirs(&mail.join(&domain))? {
                let mut stack = vec![String::new()];
                while let Some(path) = stack.pop() {
                    let dir = mail.join(&domain).join(&mailbox).join(&path);
                    for sub in subdirs(&dir)? {
                        if sub == "#msgs" {
                            if !path.is_empty() {
                                out.push(FolderRef {
                                    domain: domain.clone(),
                                    mailbox: mailbox.clone(),
                                    path: path.clone(),
                                });
                            }
                        } else if !sub.starts_with('#') {
                            // #assoc and other `#` service directories hold no folders.
                            stack.push(if path.is_empty() {
                                sub
                            } else {
                                format!("{path}/{sub}")
                            });
                        }
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn items(&self, folder: &FolderRef) -> Result<Vec<ItemRef>> {
        let rel = folder.rel();
        let dir = self.path_of(&format!("{rel}/#msgs"))?;
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("cannot list", &dir)(e)),
        };
        for e in rd {
            let e = e.map_err(Error::io("cannot list", &dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Some(uid) = index_fld::uid_of_file_name(&name) else {
                continue;
            };
            let m = e.metadata().map_err(Error::io("cannot read", &e.path()))?;
            if !m.is_file() {
                continue;
            }
            out.push(ItemRef {
                uid,
                rel: format!("{rel}/#msgs/{name}"),
                size: m.len(),
                mtime: Mtime::from_system(
                    m.modified().map_err(Error::io("cannot read", &e.path()))?,
                )
                .secs,
            });
        }
        out.sort_by_key(|i| i.uid);
        Ok(out)
    }

    fn read_folder_file(
        &mut self,
        folder: &FolderRef,
        name: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        let path = self.path_of(&format!("{}/{name}", folder.rel()))?;
        let f = match open_regular(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("cannot read", &path)(e)),
        };
        let mut v = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut v)
            .map_err(Error::io("cannot read", &path))?;
        if v.len() as u64 > limit {
            return Err(Error::Invalid(format!(
                "`{}` is larger than the {limit} bytes read of it",
                path.display()
            )));
        }
        Ok(Some(v))
    }

    fn unlisted(&self, domain: &str, mailbox: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let rel = format!("store/mail/{domain}/{mailbox}");
        let Ok(root) = self.path_of(&rel) else {
            return out;
        };
        // (directory, its install-relative path, whether it is a `#msgs`).
        let mut stack = vec![(root, rel, false)];
        while let Some((dir, rel, msgs)) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name();
                let shown = format!("{rel}/{}", name.to_string_lossy());
                let Ok(ft) = e.file_type() else { continue };
                let Some(n) = name.to_str() else {
                    // Such a name is never an item's: only folders count.
                    if !msgs && ft.is_dir() {
                        out.push((shown, "its name is not UTF-8".to_string()));
                    }
                    continue;
                };
                if msgs {
                    if index_fld::uid_of_file_name(n).is_some() && !ft.is_file() {
                        out.push((
                            shown,
                            "not a regular file (a link, FIFO or device): not read".into(),
                        ));
                    }
                } else if ft.is_symlink() {
                    if e.path().is_dir() {
                        out.push((shown, "a symbolic link to a directory: not followed".into()));
                    }
                } else if ft.is_dir() && (n == "#msgs" || !n.starts_with('#')) {
                    // Names the archive rules refuse are listed as folders
                    // and reported when their items cannot be listed.
                    stack.push((e.path(), shown, n == "#msgs"));
                }
            }
        }
        out.sort();
        out
    }

    fn copy_item(&mut self, item: &ItemRef, out: &mut dyn Write) -> Result<u64> {
        let path = self.path_of(&item.rel)?;
        let mut f = fs::File::open(&path).map_err(Error::io("cannot read", &path))?;
        std::io::copy(&mut f, out).map_err(Error::io("cannot copy", &path))
    }
}

/// The state of a backup chain (a full plus its newest differential, or
/// `--at`), as a store: each file from the set that holds its content.
pub struct ChainStore<'a> {
    chain: &'a RestoreChain,
    reader: ChainReader<'a>,
    index: Cow<'a, ChainIndex>,
    buf: Vec<u8>,
}

/// A chain's state indexed by path and by folder: built once, shared by
/// the readers of several threads (each [`ChainStore`] holds its own open
/// volumes, not its own copy of the catalog).
#[derive(Clone)]
pub struct ChainIndex {
    files: BTreeMap<String, StateFile>,
    folders: BTreeMap<FolderRef, Vec<ItemRef>>,
}

impl ChainIndex {
    /// The chain's state, indexed.
    ///
    /// # Errors
    /// The chain's catalogs disagree (see `RestoreChain::state`).
    pub fn new(chain: &RestoreChain) -> Result<Self> {
        let (state, _unrestorable) = chain.state()?;
        let mut files = BTreeMap::new();
        let mut folders: BTreeMap<FolderRef, Vec<ItemRef>> = BTreeMap::new();
        for f in state {
            let rel = f.entry.path.as_str().to_string();
            if let Some((folder, file)) = FolderRef::of_rel(&rel) {
                let items = folders.entry(folder).or_default();
                if let Some(name) = file.strip_prefix("#msgs/")
                    && let Some(uid) = index_fld::uid_of_file_name(name)
                {
                    items.push(ItemRef {
                        uid,
                        rel: rel.clone(),
                        size: f.entry.size,
                        mtime: f.entry.mtime.secs,
                    });
                }
            }
            files.insert(rel, f);
        }
        for items in folders.values_mut() {
            items.sort_by_key(|i| i.uid);
        }
        Ok(Self { files, folders })
    }
}

impl<'a> ChainStore<'a> {
    /// The chain's state, indexed by folder.
    ///
    /// # Errors
    /// The chain's catalogs disagree (see `RestoreChain::state`).
    pub fn new(chain: &'a RestoreChain) -> Result<Self> {
        Ok(Self::from_index(chain, Cow::Owned(ChainIndex::new(chain)?)))
    }

    /// A reader of `chain` over an index built once for several readers.
    #[must_use]
    pub fn with_index(chain: &'a RestoreChain, index: &'a ChainIndex) -> Self {
        Self::from_index(chain, Cow::Borrowed(index))
    }

    fn from_index(chain: &'a RestoreChain, index: Cow<'a, ChainIndex>) -> Self {
        Self {
            chain,
            reader: chain.reader(),
            index,
            buf: vec![0; 256 << 10],
        }
    }

    fn copy_rel(&mut self, rel: &str, out: &mut dyn Write) -> Result<u64> {
        let f = self
            .index
            .files
            .get(rel)
            .ok_or_else(|| Error::Invalid(format!("`{rel}` is not in {}", self.describe())))?;
        self.reader
            .read(f, out, &mut self.buf)
            .map_err(|e| match e {
                EntryError::Archive(p) => Error::Invalid(p.to_string()),
                EntryError::Write(e) => Error::Io {
                    action: "cannot write",
                    path: PathBuf::from(rel),
                    source: e,
                },
            })?;
        Ok(f.entry.size)
    }
}

impl MailStore for ChainStore<'_> {
    fn describe(&self) -> String {
        format!("backup {}", self.chain.names().join(" + "))
    }

    fn folders(&self) -> Result<Vec<FolderRef>> {
        Ok(self.index.folders.keys().cloned().collect())
    }

    fn items(&self, folder: &FolderRef) -> Result<Vec<ItemRef>> {
        Ok(self.index.folders.get(folder).cloned().unwrap_or_default())
    }

    fn read_folder_file(
        &mut self,
        folder: &FolderRef,
        name: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>> {
        let rel = format!("{}/{name}", folder.rel());
        let Some(f) = self.index.files.get(&rel) else {
            return Ok(None);
        };
        if f.entry.size > limit {
            return Err(Error::Invalid(format!(
                "`{rel}` in {} is larger than the {limit} bytes read of it",
                self.describe()
            )));
        }
        let mut v = Vec::new();
        self.copy_rel(&rel, &mut v)?;
        Ok(Some(v))
    }

    fn copy_item(&mut self, item: &ItemRef, out: &mut dyn Write) -> Result<u64> {
        self.copy_rel(&item.rel, out)
    }

    fn unlisted(&self, domain: &str, mailbox: &str) -> Vec<(String, String)> {
        // Service files of mailboxes and folders: not mail an export writes.
        const NOT_MAIL: [&str; 11] = [
            "settings.usr",
            "stats.usr",
            "filter.siv",
            "sub.fld",
            "folder.map",
            "status.fld",
            "search.fld",
            "properties.fld",
            "deleted.fld",
            "sort.fld",
            "#assoc",
        ];
        let prefix = format!("store/mail/{domain}/{mailbox}/");
        let mut out: Vec<(String, String)> = self
            .chain
            .skipped()
            .into_iter()
            .filter(|k| !matches!(k.reason, SkipReason::Vanished | SkipReason::DisabledUser))
            .filter_map(|k| {
                let rest = k.path.strip_prefix(&prefix)?;
                let mail = match rest.split_once("#msgs/") {
                    Some((_, name)) => index_fld::uid_of_file_name(name).is_some(),
                    None => !rest
                        .split('/')
                        .any(|c| NOT_MAIL.contains(&c) || (c.starts_with('#') && c != "#msgs")),
                };
                mail.then(|| {
                    (
                        k.path.clone(),
                        format!("the backup skipped it ({})", k.reason.as_str()),
                    )
                })
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn folders_of_paths() {
        let (f, file) =
            FolderRef::of_rel("store/mail/a.cz/jan/Projects/2026/#msgs/0000000a.eml").unwrap();
        assert_eq!(f.path, "Projects/2026");
        assert_eq!(file, "#msgs/0000000a.eml");
        assert_eq!(f.rel(), "store/mail/a.cz/jan/Projects/2026");
        let (f, file) = FolderRef::of_rel("store/mail/a.cz/#public/Team/index.fld").unwrap();
        assert_eq!((f.mailbox.as_str(), file), ("#public", "index.fld"));
        assert!(FolderRef::of_rel("store/mail/a.cz/jan/settings.usr").is_none());
        assert!(FolderRef::of_rel("store/mail/a.cz/jan/#msgs/x").is_none());
    }

    #[test]
    fn live_store_lists_nested_folders_and_items() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path();
        for f in [
            "mail/a.cz/jan/INBOX/#msgs",
            "mail/a.cz/jan/INBOX/#assoc",
            "mail/a.cz/jan/Projects/2026/#msgs",
            "mail/a.cz/#public/Team/#msgs",
        ] {
            fs::create_dir_all(s.join(f)).unwrap();
        }
        fs::write(
            s.join("mail/a.cz/jan/INBOX/#msgs/0000000a.eml"),
            b"Subject: x\r\n\r\n",
        )
        .unwrap();
        fs::write(s.join("mail/a.cz/jan/INBOX/#msgs/junk.eml"), b"x").unwrap();
        let store = LiveStore::new(s);
        let folders: Vec<String> = store
            .folders()
            .unwrap()
            .iter()
            .map(FolderRef::rel)
            .collect();
        assert_eq!(
            folders,
            [
                "store/mail/a.cz/#public/Team",
                "store/mail/a.cz/jan/INBOX",
                "store/mail/a.cz/jan/Projects/2026"
            ]
        );
        let inbox = &store.folders().unwrap()[1];
        let items = store.items(inbox).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].uid, items[0].size), (10, 14));
    }
}
