//! `merge-eml`: adds messages to a live folder without replacing or
//! removing anything. Inputs are loose `.eml` files, directories of them
//! (walked, symbolic links not followed) and mbox files.
//!
//! Every input is checked to be a message ([`check_message`]: a header block
//! of `Name: value` fields that `mail-parser` parses and that names a
//! sender, a recipient, a date, a subject or a Message-ID); what is not is
//! reported and skipped. A message whose Message-ID and content (line ends
//! normalised) equal an item already in the folder, or an earlier input, is
//! a duplicate and skipped unless duplicates are allowed. Items of a backup
//! go through [`crate::mail::giveback`] instead (kept as they are, with
//! their flags; skipped when the folder holds their exact bytes). New items get the
//! next free numbers through [`LiveFolder`] (temporaries, one sync, hard
//! links that never replace), then `index.fld` and `status.fld` are updated
//! so the server sees them without a rebuild.

use std::collections::HashMap;
use std::fs;
use std::io::{BufReader, Read as _};
use std::path::{Path, PathBuf};

use mail_parser::MessageParser;
use mailvault_formats::{Mtime, limits, mbox};
use mailvault_recover::RunningCheck;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::mail::folder::{InstallLock, LiveFolder};
use crate::mail::giveback::{GiveBackReport, Outcome as GivenOutcome};
use crate::mail::headers::{header_end, normal_id};
use crate::mail::store::{FolderRef, ItemRef, LiveStore, MailStore};

/// What to merge into, and how.
#[derive(Debug, Clone)]
pub struct MergeRequest {
    /// The install (its lock; the store below it unless `store_dir` says otherwise).
    pub install_dir: PathBuf,
    /// The store directory (`<install>/store`).
    pub store_dir: PathBuf,
    /// The live folder to add to (created when missing).
    pub folder: FolderRef,
    /// Add messages even when the folder already holds them.
    pub allow_duplicates: bool,
    /// Mark added loose messages as seen (items from a backup keep their
    /// backed-up flags).
    pub mark_seen: bool,
    /// Compute and report, write nothing.
    pub dry_run: bool,
    /// Refuse while the server runs unless `force`.
    pub running: RunningCheck,
    /// Write even though the server seems to run.
    pub force: bool,
}

/// What happened to one input.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Added as this item.
    Added {
        /// Item number.
        uid: u32,
        /// The item's path, install-relative.
        path: String,
        /// Size in bytes.
        size: u64,
    },
    /// Skipped: the same message is already there.
    Duplicate {
        /// The folder item (`0000002a.eml`) or earlier input it equals.
        of: String,
    },
    /// Skipped: not a message, unreadable, too large.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// One input and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The input: a file, `mbox:line N`, or a backup path.
    pub source: String,
    /// What happened.
    #[serde(flatten)]
    pub action: Action,
}

/// The summary of a merge.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MergeReport {
    /// The folder, install-relative.
    pub folder: String,
    /// Nothing was written.
    pub dry_run: bool,
    /// The folder did not exist and was (or would be) created.
    pub created: bool,
    /// Messages added.
    pub added: usize,
    /// Inputs skipped as duplicates.
    pub duplicates: usize,
    /// Inputs reported and skipped.
    pub rejected: usize,
    /// Items that were in `#msgs` without an `index.fld` record and got one.
    pub indexed_orphans: usize,
    /// Temporaries of an interrupted earlier run, removed.
    pub leftovers_removed: usize,
    /// Every input, in order.
    pub items: Vec<Outcome>,
}

impl MergeReport {
    /// Whether every input was added or a duplicate (nothing rejected).
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.rejected == 0
    }
}

/// A message as [`check_message`] found it.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Its Message-ID, without angle brackets.
    pub message_id: Option<String>,
    /// Its Date header, Unix seconds.
    pub date: Option<i64>,
}

/// Why a FIFO, socket or device is not read.
const NOT_A_FILE: &str = "not a regular file (a FIFO, socket or device): not read";

/// Headers of which at least one makes a header block a mail message.
const MESSAGE_HEADERS: [&str; 9] = [
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "date",
    "message-id",
    "subject",
];

/// Whether `content` is a mail message; why not otherwise.
///
/// # Errors
/// The reason, in words for the report.
pub fn check_message(content: &[u8]) -> std::result::Result<Checked, String> {
    if content.is_empty() {
        return Err("empty file".into());
    }
    let end = header_end(content).unwrap_or(content.len());
    let head = &content[..end];
    if head.contains(&0) {
        return Err("binary data (a NUL byte) in the header block: not a message".into());
    }
    let mut names = Vec::new();
    for (i, line) in head.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        match line.iter().position(|&b| b == b':') {
            Some(n) if n > 0 && line[..n].iter().all(|&b| (33..=126).contains(&b)) => {
                names.push(String::from_utf8_lossy(&line[..n]).to_ascii_lowercase());
            }
            _ if i == 0 => {
                return Err(
                    "the first line is not a header field (`Name: value`): not a message".into(),
                );
            }
            // Stray lines inside a header block happen in real mail.
            _ => {}
        }
    }
    if !names.iter().any(|n| MESSAGE_HEADERS.contains(&n.as_str())) {
        return Err("no From, To, Date, Subject or Message-ID header: not a mail message".into());
    }
    let parsed = MessageParser::default()
        .parse_headers(content)
        .ok_or_else(|| "mail-parser finds no header in it: not a message".to_string())?;
    Ok(Checked {
        message_id: parsed
            .message_id()
            .map(|s| {
                s.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
            .filter(|s| !s.is_empty()),
        date: parsed.date().map(mail_parser::DateTime::to_timestamp),
    })
}

/// The time an added item gets (its file time and index.fld's D/M).
#[derive(Debug, Clone, Copy)]
pub enum ItemTime {
    /// This time (an item from a backup keeps its own).
    Exact(i64),
    /// The message's Date header, else this time (a loose file's), else now.
    DateOr(Option<i64>),
}

/// The Message-ID of a live item, read from its header block (the whole
/// item only when the headers go on past [`limits::MAX_HEADER_BYTES`]).
fn existing_message_id(store: &mut LiveStore, item: &ItemRef) -> Result<Option<String>> {
    let path = store.path_of(&item.rel)?;
    let mut head = Vec::new();
    fs::File::open(&path)
        .and_then(|f| {
            f.take(limits::MAX_HEADER_BYTES as u64)
                .read_to_end(&mut head)
        })
        .map_err(Error::io("cannot read", &path))?;
    let whole;
    let bytes = if header_end(&head).is_some() || (head.len() as u64) == item.size {
        &head
    } else {
        whole = store.read_item(item)?;
        &whole
    };
    Ok(message_id_of(bytes))
}

/// A message's Message-ID as the duplicate key holds it (no angle brackets).
fn message_id_of(content: &[u8]) -> Option<String> {
    MessageParser::default()
        .parse_headers(content)
        .and_then(|m| m.message_id().and_then(normalize_id))
}

fn normalize_id(id: &str) -> Option<String> {
    let id = normal_id(id);
    (!id.is_empty()).then(|| id.to_string())
}

/// The duplicate key: Message-ID and the SHA-256 of the content with CRLF
/// line ends read as LF (the same message saved by different tools).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key(Option<String>, [u8; 32]);

fn key_of(message_id: Option<String>, content: &[u8]) -> Key {
    let mut h = Sha256::new();
    let mut rest = content;
    while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
        h.update(&rest[..p]);
        h.update(b"\n");
        rest = &rest[p + 2..];
    }
    h.update(rest);
    Key(message_id, h.finalize().into())
}

/// The mailbox a folder belongs to must exist: a typo in `--user` is not a
/// new mailbox.
///
/// # Errors
/// No such mailbox directory, naming it.
pub fn check_mailbox(live: &LiveStore, folder: &FolderRef) -> Result<()> {
    let mailbox = live.path_of(&format!("store/mail/{}/{}", folder.domain, folder.mailbox))?;
    if mailbox.is_dir() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "no mailbox `{}` in `{}`: check --domain and --user (a user who never logged in has no mailbox yet)",
        folder.address(),
        live.store_dir().display()
    )))
}

/// What every writer of a live install does first: refuse while the
/// server runs (unless forced), then take the install's lock. A dry run
/// does neither.
///
/// # Errors
/// The server runs; another writer holds the install.
pub fn guard(
    install_dir: &Path,
    running: &RunningCheck,
    force: bool,
    dry_run: bool,
) -> Result<Option<InstallLock>> {
    if dry_run {
        return Ok(None);
    }
    if !force && let Some(why) = mailvault_recover::running::server_running(running)? {
        return Err(Error::Recover(mailvault_recover::Error::ServerRunning(why)));
    }
    Ok(Some(InstallLock::take(install_dir)?))
}

impl MergeReport {
    /// The report of items given back from a backup
    /// ([`crate::mail::giveback`]), in the same shape as a merge's.
    #[must_use]
    pub fn from_give_back(r: GiveBackReport) -> Self {
        let mut m = MergeReport {
            folder: r.folder,
            dry_run: r.dry_run,
            ..MergeReport::default()
        };
        if let Some(c) = &r.committed {
            m.created = c.created;
            m.indexed_orphans = c.indexed_orphans;
        }
        for i in r.items {
            let action = match i.outcome {
                GivenOutcome::Added { uid, path } => {
                    m.added += 1;
                    Action::Added {
                        uid,
                        path,
                        size: i.size,
                    }
                }
                GivenOutcome::AlreadyThere { path } => {
                    m.duplicates += 1;
                    Action::Duplicate { of: path }
                }
                GivenOutcome::Failed { reason } => {
                    m.rejected += 1;
                    Action::Rejected { reason }
                }
            };
            m.items.push(Outcome {
                source: i.source,
                action,
            });
        }
        m
    }
}

/// Adds messages to one live folder; see the module documentation.
pub struct Merger {
    req: MergeRequest,
    folder: LiveFolder,
    _lock: Option<InstallLock>,
    known: HashMap<Key, String>,
    existing: HashMap<Option<String>, Vec<ItemRef>>,
    report: MergeReport,
    added: Vec<usize>,
}

impl Merger {
    /// Opens the folder (checks the server, takes the install lock, removes
    /// an interrupted run's temporaries, reads the folder's items for the
    /// duplicate check), writing nothing else.
    ///
    /// # Errors
    /// The server runs (without `force`), another writer holds the
    /// install, the mailbox does not exist, the folder cannot be read.
    pub fn open(req: MergeRequest) -> Result<Self> {
        let live = LiveStore::new(&req.store_dir);
        check_mailbox(&live, &req.folder)?;
        let lock = guard(&req.install_dir, &req.running, req.force, req.dry_run)?;
        let folder = LiveFolder::open(&live, &req.folder, 0)?;
        let leftovers_removed = if lock.is_some() {
            folder.remove_leftovers()?
        } else {
            0
        };
        // The folder's items by Message-ID, from their headers only; an
        // item is read whole (and hashed) only when a new message has its
        // Message-ID, so merging a few files into a large folder does not
        // read the whole folder.
        let mut existing: HashMap<Option<String>, Vec<ItemRef>> = HashMap::new();
        if !req.allow_duplicates {
            let mut store = LiveStore::new(&req.store_dir);
            for item in store.items(&req.folder)? {
                let id = existing_message_id(&mut store, &item)?;
                existing.entry(id).or_default().push(item);
            }
        }
        let known = HashMap::new();
        let report = MergeReport {
            folder: req.folder.rel(),
            dry_run: req.dry_run,
            created: !folder.exists(),
            leftovers_removed,
            ..MergeReport::default()
        };
        Ok(Self {
            req,
            folder,
            _lock: lock,
            known,
            existing,
            report,
            added: Vec::new(),
        })
    }

    /// Reads and hashes the folder's items with this Message-ID (once).
    fn hash_existing(&mut self, id: &Option<String>) -> Result<()> {
        let Some(items) = self.existing.remove(id) else {
            return Ok(());
        };
        let mut store = LiveStore::new(&self.req.store_dir);
        for item in items {
            let content = store.read_item(&item)?;
            self.known
                .entry(key_of(id.clone(), &content))
                .or_insert_with(|| format!("{:08x}.eml", item.uid));
        }
        Ok(())
    }

    /// The report so far.
    #[must_use]
    pub fn report(&self) -> &MergeReport {
        &self.report
    }

    fn reject(&mut self, source: String, reason: String) {
        self.report.rejected += 1;
        self.report.items.push(Outcome {
            source,
            action: Action::Rejected { reason },
        });
    }

    /// Offers one message: added, or skipped as a duplicate or a non-message.
    /// `flags` None: new-message flags (seen with `mark_seen`).
    ///
    /// # Errors
    /// Writing the item failed (a hard error: the run stops).
    pub fn offer(
        &mut self,
        source: String,
        content: &[u8],
        flags: Option<u32>,
        time: ItemTime,
    ) -> Result<()> {
        let checked = match check_message(content) {
            Ok(c) => c,
            Err(reason) => {
                self.reject(source, reason);
                return Ok(());
            }
        };
        let key = key_of(checked.message_id.clone(), content);
        if !self.req.allow_duplicates {
            self.hash_existing(&checked.message_id)?;
            if let Some(of) = self.known.get(&key) {
                self.report.duplicates += 1;
                self.report.items.push(Outcome {
                    source,
                    action: Action::Duplicate { of: of.clone() },
                });
                return Ok(());
            }
            self.known.insert(key, source.clone());
        }
        let time = match time {
            ItemTime::Exact(t) => t,
            ItemTime::DateOr(t) => {
                let now = Mtime::from_system(std::time::SystemTime::now()).secs;
                // A Date before 1970 or more than a day ahead is a sender's
                // mistake, not a time for the item (index.fld holds 32 bits).
                let plausible = |d: &i64| (0..=now + 86_400).contains(d);
                checked
                    .date
                    .filter(plausible)
                    .or(t.filter(plausible))
                    .unwrap_or(now)
            }
        };
        let flags = flags.unwrap_or(u32::from(self.req.mark_seen));
        let uid = if self.req.dry_run {
            self.folder.reserve()
        } else {
            self.folder.add(content, flags, time)?
        };
        self.added.push(self.report.items.len());
        self.report.added += 1;
        self.report.items.push(Outcome {
            source,
            action: Action::Added {
                uid,
                path: format!("{}/#msgs/{uid:08x}.eml", self.req.folder.rel()),
                size: content.len() as u64,
            },
        });
        Ok(())
    }

    /// Offers a file, a directory (walked in name order, symbolic links
    /// not followed) or an mbox. Unreadable inputs are reported, not fatal.
    ///
    /// # Errors
    /// Writing an item failed.
    pub fn offer_path(&mut self, path: &Path) -> Result<()> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.reject(path.display().to_string(), format!("cannot read: {e}"));
                return Ok(());
            }
        };
        if meta.is_dir() {
            for e in walkdir::WalkDir::new(path).sort_by_file_name() {
                let e = match e {
                    Ok(e) => e,
                    Err(err) => {
                        let at = err.path().unwrap_or(path).display().to_string();
                        self.reject(at, format!("cannot read: {err}"));
                        continue;
                    }
                };
                if e.file_type().is_file() {
                    self.offer_file(e.path())?;
                } else if e.file_type().is_symlink() {
                    self.reject(
                        e.path().display().to_string(),
                        "a symbolic link (not followed inside a directory)".into(),
                    );
                } else if !e.file_type().is_dir() {
                    self.reject(e.path().display().to_string(), NOT_A_FILE.into());
                }
            }
            Ok(())
        } else if meta.is_file() {
            self.offer_file(path)
        } else {
            // Opening a FIFO blocks until a writer comes (with the install
            // locked); a device never ends: neither is a message file.
            self.reject(path.display().to_string(), NOT_A_FILE.into());
            Ok(())
        }
    }

    fn offer_file(&mut self, path: &Path) -> Result<()> {
        let source = path.display().to_string();
        let mut f = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.reject(source, format!("cannot read: {e}"));
                return Ok(());
            }
        };
        let mut head = [0u8; 5];
        let n = f.read(&mut head).unwrap_or(0);
        let mtime = f
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| Mtime::from_system(t).secs)
            .ok();
        drop(f);
        if &head[..n] == b"From " {
            return self.offer_mbox(path);
        }
        let mut content = Vec::new();
        let read = fs::File::open(path).and_then(|f| {
            f.take(limits::MAX_MESSAGE_BYTES + 1)
                .read_to_end(&mut content)
        });
        match read {
            Err(e) => self.reject(source, format!("cannot read: {e}")),
            Ok(_) if content.len() as u64 > limits::MAX_MESSAGE_BYTES => self.reject(
                source,
                format!("larger than {} bytes", limits::MAX_MESSAGE_BYTES),
            ),
            Ok(_) => self.offer(source, &content, None, ItemTime::DateOr(mtime))?,
        }
        Ok(())
    }

    fn offer_mbox(&mut self, path: &Path) -> Result<()> {
        let f = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.reject(path.display().to_string(), format!("cannot read: {e}"));
                return Ok(());
            }
        };
        let mut r = mbox::Reader::new(BufReader::new(f), limits::MAX_MESSAGE_BYTES);
        loop {
            match r.next_message() {
                Ok(Some(m)) => {
                    let source = format!("{}:{}", path.display(), m.line);
                    self.offer(source, &m.content, None, ItemTime::DateOr(None))?;
                }
                Ok(None) => return Ok(()),
                Err(mbox::MboxError::TooLarge { line, limit }) => self.reject(
                    format!("{}:{line}", path.display()),
                    format!("larger than {limit} bytes"),
                ),
                Err(e) => {
                    self.reject(path.display().to_string(), e.to_string());
                    return Ok(());
                }
            }
        }
    }

    /// Publishes the added items and updates `index.fld` / `status.fld`
    /// (nothing in a dry run).
    ///
    /// # Errors
    /// Publishing or writing the folder files failed.
    pub fn finish(mut self) -> Result<MergeReport> {
        if self.req.dry_run {
            return Ok(self.report);
        }
        let done = self.folder.commit()?;
        self.report.indexed_orphans = done.indexed_orphans;
        self.report.created = done.created;
        for (&i, &uid) in self.added.iter().zip(&done.numbers) {
            if let Action::Added { uid: u, path, .. } = &mut self.report.items[i].action {
                *u = uid;
                *path = format!("{}/#msgs/{uid:08x}.eml", self.req.folder.rel());
            }
        }
        Ok(self.report)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tells_messages_from_other_files() {
        let ok = check_message(b"From: a@b.cz\r\nMessage-ID: <x@y>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nbody").unwrap();
        assert_eq!(ok.message_id.as_deref(), Some("x@y"));
        assert_eq!(ok.date, Some(1_700_000_000));
        for (bad, why) in [
            (&b""[..], "empty"),
            (b"\x89PNG\r\n\x1a\n", "first line"),
            (b"{\"json\": true}\n", "not a"),
            (b"Content-Type: text/plain\r\n\r\nx", "no From"),
            (b"Subject: a\0b\r\n\r\n", "NUL"),
        ] {
            let e = check_message(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn duplicate_keys_ignore_line_ends_but_not_content() {
        let a = key_of(Some("x".into()), b"Subject: a\r\n\r\nbody\r\n");
        assert_eq!(a, key_of(Some("x".into()), b"Subject: a\n\nbody\n"));
        assert_ne!(a, key_of(Some("x".into()), b"Subject: a\n\nbody!\n"));
        assert_ne!(a, key_of(Some("y".into()), b"Subject: a\n\nbody\n"));
    }
}
