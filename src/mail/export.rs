//! `export`: mail out of a store, live or backed up, into formats other
//! mail software reads: Maildir++ (Dovecot's and Courier's layout), mbox
//! (mboxrd) or one `.eml` per message; calendar and contact items into one
//! `.ics` / `.vcf` per folder. [`plan`] picks the mailboxes and folders and
//! names every output (Kerio folder names decoded, Maildir++ names through
//! [`folder_name::maildir_folder`], clashes given a ` (2)` suffix), and
//! refuses before anything is written when a mailbox directory already
//! exists; [`execute`] carries the plan out and returns an [`ExportReport`].
//!
//! Output safety: each mailbox is written into a staging directory beside
//! its final place (`<out>/<domain>/.<user>.mailvault-export`), made
//! durable by a `syncfs` and then renamed to `<out>/<domain>/<user>` by a
//! rename that never replaces: a mailbox directory under its final name is
//! always complete, and nothing is ever written into an existing one.
//! Inside the staging area Maildir messages still go the Maildir way
//! (`tmp/`, then a rename into `cur/`). Finished mailboxes are published in
//! batches: one `syncfs` per [`PUBLISH_BATCH`] bytes written (and one at
//! the end), not an fsync per message nor a sync per mailbox, which keeps a
//! large export close to a restore's speed. When the export stops on an
//! error, the mailboxes finished before it are still published.
//!
//! Problems with single items (damaged in the archive, unreadable, a
//! calendar item without iCalendar data) are reported in
//! [`ExportReport::not_exported`] and the rest goes on; a failing output
//! (full disk, no permission) stops the export, removing the mailbox being
//! written.

mod groupware;
mod sink;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mailvault_formats::layout;
use mailvault_formats::store::folder_name::{self, display_name, encode_mutf7};
use mailvault_formats::store::index_fld::{self, IndexLine};
use serde::Serialize;

use self::groupware::{AddError, GroupwareFile, GroupwareKind};
use self::sink::{ItemError, Sink};
use crate::error::{Error, Result};
use crate::mail::store::{FolderRef, ItemRef, MailStore};
use crate::progress::Progress;

/// The output format of mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Maildir++: the mailbox directory is the Maildir (INBOX), folders are
    /// `.Name.Sub` directories; flags in the file names.
    Maildir,
    /// One mboxrd file per folder: `<Folder path>.mbox`.
    Mbox,
    /// One directory per folder holding `<8 hex>.eml` files.
    Eml,
}

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The output directory: one directory per mailbox, `<out>/<domain>/<user>`.
    pub out: PathBuf,
    /// Format of mail.
    pub format: ExportFormat,
    /// Only this domain.
    pub domain: Option<String>,
    /// Only this mailbox: `user@domain`, or `user` (with `domain`, or when
    /// only one domain has it).
    pub user: Option<String>,
    /// Only this folder and the folders below it (with `user`): Kerio's
    /// directory names or the decoded names, `/`-separated.
    pub folder: Option<String>,
    /// Leave calendar and contact items out (reported as skipped) instead
    /// of writing `.ics` / `.vcf` files.
    pub skip_groupware: bool,
}

/// One folder to export and where its output goes (paths relative to the
/// mailbox directory).
#[derive(Debug, Clone, Serialize)]
pub struct FolderPlan {
    /// The folder in the store.
    #[serde(skip)]
    pub folder: FolderRef,
    /// The folder as users see it (`Projects/2026/Q4 Migration`).
    pub name: String,
    /// Where its mail goes: a Maildir++ folder (`.Projects.2026.Q4 Migration`,
    /// empty for INBOX, the Maildir itself), an mbox file or a directory.
    pub mail: String,
    /// Where its appointments and tasks go.
    pub calendar: String,
    /// Where its contacts go.
    pub contacts: String,
    /// Items in the folder when planned.
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of the items, appointments and tasks (by their `index.fld` class).
    pub calendar_items: u64,
    /// Of the items, contacts (by their `index.fld` class).
    pub contact_items: u64,
    /// Why the output name differs from the folder's name, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One mailbox to export.
#[derive(Debug, Clone, Serialize)]
pub struct MailboxPlan {
    /// `user@domain` (`#public@domain` for public folders).
    pub address: String,
    /// The mailbox directory to create.
    pub dir: PathBuf,
    /// Its folders.
    pub folders: Vec<FolderPlan>,
    /// Items in all its folders.
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What the mailbox holds that cannot be exported (a folder whose name
    /// is not UTF-8, an item that is a link or FIFO, what the backup
    /// skipped): reported as not exported.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_exportable: Vec<NotExported>,
}

/// What an export will do: computed by [`plan`], printed by `--dry-run`,
/// carried out by [`execute`].
#[derive(Debug, Clone, Serialize)]
pub struct ExportPlan {
    /// What is read (`/opt/kerio/mailserver/store`, `backup F… + D…`).
    pub source: String,
    /// Format of mail.
    pub format: ExportFormat,
    /// The output directory.
    pub out: PathBuf,
    /// Whether calendar and contact items are left out.
    pub skip_calendars_contacts: bool,
    /// The mailboxes.
    pub mailboxes: Vec<MailboxPlan>,
    /// Items in all.
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// An item or file the export could not write, and why.
#[derive(Debug, Clone, Serialize)]
pub struct NotExported {
    /// `user@domain`.
    pub mailbox: String,
    /// The folder as users see it.
    pub folder: String,
    /// The store path (`store/mail/…/#msgs/0000002a.eml`).
    pub path: String,
    /// Why.
    pub reason: String,
}

/// Items left out on request (`--skip-calendars-contacts`), per folder.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// `user@domain`.
    pub mailbox: String,
    /// The folder as users see it.
    pub folder: String,
    /// How many items.
    pub items: u64,
    /// Why.
    pub reason: String,
}

/// What one folder became.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderReport {
    /// The folder as users see it.
    pub name: String,
    /// Where its mail went (relative to the mailbox directory); `null` when
    /// it had only calendar or contact items.
    pub mail: Option<String>,
    /// Messages written.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The `.ics` file written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// Appointments and tasks written to it.
    pub calendar_items: u64,
    /// The `.vcf` file written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contacts: Option<String>,
    /// Contacts written to it.
    pub contact_items: u64,
    /// Items not written (see [`ExportReport::not_exported`]).
    pub not_exported: u64,
    /// Items skipped on request.
    pub skipped: u64,
}

/// What one mailbox became.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MailboxReport {
    /// `user@domain`.
    pub address: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Folders exported.
    pub folders: u64,
    /// Messages written.
    pub messages: u64,
    /// Their bytes (as written: an mbox adds `From ` lines and quoting).
    pub bytes: u64,
    /// Appointments and tasks written.
    pub calendar_items: u64,
    /// Contacts written.
    pub contact_items: u64,
    /// Items not written.
    pub not_exported: Vec<NotExported>,
    /// Items skipped on request.
    pub skipped: Vec<Skipped>,
    /// Each folder.
    pub folder_list: Vec<FolderReport>,
}

/// What an export did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// What was read.
    pub source: String,
    /// Format of mail.
    pub format: ExportFormat,
    /// The output directory.
    pub out: PathBuf,
    /// Each mailbox, in plan order.
    pub mailboxes: Vec<MailboxReport>,
    /// Messages written in all.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Appointments and tasks written.
    pub calendar_items: u64,
    /// Contacts written.
    pub contact_items: u64,
    /// Every item or file not written, with why (exit code 3).
    pub not_exported: Vec<NotExported>,
    /// Items skipped on request, per folder.
    pub skipped: Vec<Skipped>,
}

impl ExportReport {
    /// Whether everything asked for was written.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.not_exported.is_empty()
    }
}

/// Largest item without an `index.fld` class that is read whole to tell
/// mail from calendar and contact items (those are small; a larger item is
/// taken as mail and streamed).
const SNIFF_BYTES: u64 = 1 << 20;

/// A folder name component as a file name: decoded for display, with what
/// a file name cannot hold (`/`, control characters) and a leading `.`
/// (hidden files, Maildir++ folders) replaced by `_`. The flag says whether
/// anything was replaced.
fn file_component(raw: &str) -> (String, bool) {
    let shown = display_name(raw);
    let mut changed = false;
    let mut s: String = shown
        .chars()
        .map(|c| {
            if c == '/' || c.is_control() {
                changed = true;
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        s.replace_range(..s.chars().next().map_or(0, char::len_utf8), "_");
        changed = true;
    }
    (s, changed)
}

/// The first name of `candidates(n)` for n = 1, 2, … that is not taken.
fn unique(taken: &mut HashSet<String>, candidate: impl Fn(usize) -> String) -> (String, bool) {
    for n in 1.. {
        let c = candidate(n);
        if taken.insert(c.clone()) {
            return (c, n > 1);
        }
    }
    unreachable!("the names are unbounded")
}

/// ` (n)` for clashes after the first.
fn suffix(n: usize) -> String {
    if n > 1 {
        format!(" ({n})")
    } else {
        String::new()
    }
}

/// Picks the mailboxes and folders of `req` in `store`, names their
/// outputs and checks that no mailbox directory exists yet.
///
/// # Errors
/// An unknown domain, mailbox or folder (naming it); an `--out` that is a
/// file; a mailbox directory or staging area that already exists.
pub fn plan(store: &mut dyn MailStore, req: &ExportRequest) -> Result<ExportPlan> {
    let all = store.folders()?;
    let selected = select(&all, req, &store.describe())?;
    let mut by_mailbox: BTreeMap<(String, String), Vec<FolderRef>> = BTreeMap::new();
    for f in selected {
        by_mailbox
            .entry((f.domain.clone(), f.mailbox.clone()))
            .or_default()
            .push(f);
    }
    if let Ok(m) = fs::metadata(&req.out)
        && !m.is_dir()
    {
        return Err(Error::Invalid(format!(
            "--out `{}` is not a directory: give a new or existing directory",
            req.out.display()
        )));
    }
    let mut mailboxes = Vec::new();
    let (mut existing, mut leftovers) = (Vec::new(), Vec::new());
    let mut dirs: BTreeMap<PathBuf, String> = BTreeMap::new();
    for ((domain, mailbox), folders) in by_mailbox {
        // A leading `.` would make the mailbox directory hidden, or the
        // name of another mailbox's staging area (`.jane.mailvault-export`).
        let dir_name = match mailbox.strip_prefix('.') {
            Some(rest) => format!("_{rest}"),
            None => mailbox.clone(),
        };
        let dir = layout::enclosed_path(&req.out, &format!("{domain}/{dir_name}"))
            .map_err(|e| Error::Invalid(format!("mailbox `{mailbox}@{domain}`: {e}")))?;
        if let Some(other) = dirs.insert(dir.clone(), format!("{mailbox}@{domain}")) {
            return Err(Error::Invalid(format!(
                "mailboxes `{other}` and `{mailbox}@{domain}` would both be written to `{}`: export them one at a time (--user) into different --out directories; nothing was written",
                dir.display()
            )));
        }
        if fs::symlink_metadata(&dir).is_ok() {
            existing.push(format!("`{}`", dir.display()));
        }
        let staging = staging_of(&dir);
        if fs::symlink_metadata(&staging).is_ok() {
            leftovers.push(format!("`{}`", staging.display()));
        }
        let address = format!("{mailbox}@{domain}");
        let prefix = format!("store/mail/{domain}/{mailbox}/");
        let not_exportable: Vec<NotExported> = store
            .unlisted(&domain, &mailbox)
            .into_iter()
            .filter_map(|(path, reason)| {
                let rest = path.strip_prefix(&prefix)?.to_string();
                // With --folder, only what lies in the folders selected.
                let wanted =
                    req.folder.is_none() || folders.iter().any(|f| layout::within(&rest, &f.path));
                wanted.then(|| {
                    let folder = rest.split_once("/#msgs/").map_or(rest.as_str(), |(f, _)| f);
                    NotExported {
                        mailbox: address.clone(),
                        folder: folder
                            .split('/')
                            .map(display_name)
                            .collect::<Vec<_>>()
                            .join("/"),
                        path,
                        reason,
                    }
                })
            })
            .collect();
        let mut taken = HashSet::new();
        let mut planned = Vec::new();
        for folder in folders {
            // A folder whose items cannot be listed (a name the archive
            // rules refuse) is reported by the run, not a reason to export
            // nothing.
            let (items, unlistable) = match store.items(&folder) {
                Ok(v) => (v, None),
                Err(e) => (Vec::new(), Some(format!("its items cannot be listed: {e}"))),
            };
            // Only to say where items go: an unreadable index is reported by the run.
            let index = store.index(&folder).unwrap_or_default();
            let mut p = plan_folder(req.format, folder, &items, &mut taken);
            if let Some(u) = unlistable {
                p.note = Some(p.note.map_or_else(|| u.clone(), |n| format!("{n}; {u}")));
            }
            for i in &items {
                match index
                    .get(&i.uid)
                    .and_then(|l| GroupwareKind::of_class(&l.class))
                {
                    Some(GroupwareKind::Calendar) => p.calendar_items += 1,
                    Some(GroupwareKind::Contacts) => p.contact_items += 1,
                    None => {}
                }
            }
            planned.push(p);
        }
        mailboxes.push(MailboxPlan {
            address,
            dir,
            items: planned.iter().map(|f| f.items).sum(),
            bytes: planned.iter().map(|f| f.bytes).sum(),
            folders: planned,
            not_exportable,
        });
    }
    let mut refused = Vec::new();
    if !existing.is_empty() {
        let one = existing.len() == 1;
        refused.push(format!(
            "{} already exist{}: an export never writes into an existing mailbox directory; remove {} or choose another --out",
            existing.join(", "),
            if one { "s" } else { "" },
            if one { "it" } else { "them" },
        ));
    }
    if !leftovers.is_empty() {
        refused.push(format!(
            "{} {} left by an interrupted export (or one still running): remove {} when no export runs",
            leftovers.join(", "),
            if leftovers.len() == 1 { "is" } else { "are" },
            if leftovers.len() == 1 { "it" } else { "them" },
        ));
    }
    if !refused.is_empty() {
        return Err(Error::Invalid(format!(
            "{}; nothing was written",
            refused.join("; ")
        )));
    }
    Ok(ExportPlan {
        source: store.describe(),
        format: req.format,
        out: req.out.clone(),
        skip_calendars_contacts: req.skip_groupware,
        items: mailboxes.iter().map(|m| m.items).sum(),
        bytes: mailboxes.iter().map(|m| m.bytes).sum(),
        mailboxes,
    })
}

/// The folders `req` selects, or an error naming what does not exist.
fn select(all: &[FolderRef], req: &ExportRequest, source: &str) -> Result<Vec<FolderRef>> {
    let (user, domain) = match req.user.as_deref().map(|u| u.rsplit_once('@')) {
        Some(Some((u, d))) => {
            if let Some(dd) = &req.domain
                && !dd.eq_ignore_ascii_case(d)
            {
                return Err(Error::Invalid(format!(
                    "--user `{}` is not in --domain `{dd}`",
                    req.user.as_deref().unwrap_or_default()
                )));
            }
            (Some(u), Some(d))
        }
        Some(None) => (req.user.as_deref(), req.domain.as_deref()),
        None => (None, req.domain.as_deref()),
    };
    if let Some(d) = domain
        && !all.iter().any(|f| f.domain.eq_ignore_ascii_case(d))
    {
        return Err(Error::Invalid(match user {
            Some(u) => format!(
                "no mailbox `{u}@{d}` in {source}: there is no domain `{d}`; nothing was exported"
            ),
            None => format!("no domain `{d}` in {source}: nothing was exported"),
        }));
    }
    let mut picked: Vec<FolderRef> = all
        .iter()
        .filter(|f| domain.is_none_or(|d| f.domain.eq_ignore_ascii_case(d)))
        .filter(|f| user.is_none_or(|u| f.mailbox.eq_ignore_ascii_case(u)))
        .cloned()
        .collect();
    if let Some(u) = user {
        let shown = domain.map_or_else(|| u.to_string(), |d| format!("{u}@{d}"));
        let mut domains: Vec<&str> = picked.iter().map(|f| f.domain.as_str()).collect();
        domains.dedup();
        match domains.len() {
            0 => {
                return Err(Error::Invalid(format!(
                    "no mailbox `{shown}` in {source} (no store/mail/<domain>/<user> with folders): check the address; nothing was exported"
                )));
            }
            1 => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "`{u}` is a mailbox in {}: give --user {u}@<domain>",
                    domains.join(", ")
                )));
            }
        }
    }
    if let Some(wanted) = req.folder.as_deref() {
        let wanted = wanted.trim_matches('/');
        let shown_path = |f: &FolderRef| -> String {
            f.components()
                .iter()
                .map(|c| display_name(c))
                .collect::<Vec<_>>()
                .join("/")
        };
        let under = |p: &str| p == wanted || p.starts_with(&format!("{wanted}/"));
        let names: Vec<String> = picked.iter().map(shown_path).collect();
        picked.retain(|f| under(&f.path) || under(&shown_path(f)));
        if picked.is_empty() {
            let shown: Vec<&str> = names.iter().map(String::as_str).take(30).collect();
            return Err(Error::Invalid(format!(
                "no folder `{wanted}` in {} (its folders: {}): nothing was exported",
                req.user.as_deref().unwrap_or("the mailbox"),
                shown.join(", ")
            )));
        }
    }
    Ok(picked)
}

/// Names one folder's outputs; `taken` holds the names already given in
/// the mailbox directory.
fn plan_folder(
    format: ExportFormat,
    folder: FolderRef,
    items: &[ItemRef],
    taken: &mut HashSet<String>,
) -> FolderPlan {
    let raw = folder.components();
    let shown: Vec<String> = raw.iter().map(|c| display_name(c)).collect();
    let name = shown.join("/");
    let mut changed = false;
    let mut comps: Vec<String> = raw
        .iter()
        .map(|c| {
            let (s, ch) = file_component(c);
            changed |= ch;
            s
        })
        .collect();
    let mut notes = Vec::new();
    let (mail, renamed) = match format {
        ExportFormat::Maildir => {
            let (dir, replaced) = folder_name::maildir_folder(&raw);
            if replaced {
                notes.push("`.` is Maildir++'s separator: replaced by `_`".to_string());
            }
            let last = shown.last().cloned().unwrap_or_default();
            unique(taken, |n| match (&dir, n) {
                (Some(d), _) => format!("{d}{}", suffix(n)),
                (None, 1) => String::new(),
                (None, n) => format!(".{}{}", encode_mutf7(&last.replace('.', "_")), suffix(n)),
            })
        }
        ExportFormat::Mbox | ExportFormat::Eml => {
            let ext = if format == ExportFormat::Mbox {
                ".mbox"
            } else {
                ""
            };
            let stem = comps.join("/");
            unique(taken, |n| format!("{stem}{}{ext}", suffix(n)))
        }
    };
    if renamed {
        notes.push("another folder has the same name: a number was added".into());
    }
    if format == ExportFormat::Maildir
        && comps.len() > 1
        && ["cur", "new", "tmp"].contains(&comps[0].as_str())
    {
        // Would land inside the Maildir's own directories.
        comps[0] = format!("_{}", comps[0]);
        changed = true;
    }
    if changed {
        notes.push("characters a file name cannot start with or hold were replaced by `_`".into());
    }
    let stem = comps.join("/");
    let (calendar, _) = unique(taken, |n| format!("{stem}{}.ics", suffix(n)));
    let (contacts, _) = unique(taken, |n| format!("{stem}{}.vcf", suffix(n)));
    FolderPlan {
        folder,
        name,
        mail,
        calendar,
        contacts,
        items: items.len() as u64,
        bytes: items.iter().map(|i| i.size).sum(),
        calendar_items: 0,
        contact_items: 0,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// Where a mailbox is written before it is renamed into place.
fn staging_of(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!(".{name}.mailvault-export"))
}

/// Makes a store per worker (a chain store holds its own archive readers).
pub type StoreFactory<'s> = dyn Fn() -> Result<Box<dyn MailStore + 's>> + Sync + 's;

/// Carries out `plan` with `threads` workers (mailboxes in parallel), each
/// reading through its own store from `stores`.
///
/// # Errors
/// The output failed (the mailbox being written is removed; those finished
/// before stay, complete); a store that cannot be opened.
pub fn execute(
    stores: &StoreFactory<'_>,
    plan: &ExportPlan,
    threads: usize,
    progress: &dyn Progress,
) -> Result<ExportReport> {
    fs::create_dir_all(&plan.out).map_err(|e| Error::ExportOutput {
        action: "cannot create",
        path: plan.out.clone(),
        source: e,
    })?;
    progress.start("exporting", plan.items, plan.bytes);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let done: Mutex<Vec<(usize, MailboxReport)>> = Mutex::new(Vec::new());
    let publisher = Mutex::new(Publisher::default());
    let workers = threads.clamp(1, plan.mailboxes.len().max(1));
    let errors: Vec<Error> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut store = stores()?;
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(mb) = plan.mailboxes.get(i) else {
                            break;
                        };
                        match export_mailbox(&mut *store, plan, mb, progress) {
                            Ok(r) => {
                                let batch = publisher
                                    .lock()
                                    .ok()
                                    .and_then(|mut p| p.add(mb.dir.clone(), r.bytes));
                                if let Ok(mut d) = done.lock() {
                                    d.push((i, r));
                                }
                                if let Some(batch) = batch
                                    && let Err(e) = publish(&batch)
                                {
                                    stop.store(true, Ordering::Relaxed);
                                    return Err(e);
                                }
                            }
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(Error::Invalid("internal: an export worker panicked".into())),
            })
            .collect()
    });
    progress.finish();
    // What was finished is published, also when the export stopped.
    let rest = publisher
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let published = publish(&rest);
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    published?;
    let mut done = done
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    done.sort_by_key(|(i, _)| *i);
    let mailboxes: Vec<MailboxReport> = done.into_iter().map(|(_, r)| r).collect();
    Ok(ExportReport {
        source: plan.source.clone(),
        format: plan.format,
        out: plan.out.clone(),
        messages: mailboxes.iter().map(|m| m.messages).sum(),
        bytes: mailboxes.iter().map(|m| m.bytes).sum(),
        calendar_items: mailboxes.iter().map(|m| m.calendar_items).sum(),
        contact_items: mailboxes.iter().map(|m| m.contact_items).sum(),
        not_exported: mailboxes
            .iter()
            .flat_map(|m| m.not_exported.iter().cloned())
            .collect(),
        skipped: mailboxes
            .iter()
            .flat_map(|m| m.skipped.iter().cloned())
            .collect(),
        mailboxes,
    })
}

fn output_error(action: &'static str) -> impl FnOnce((PathBuf, io::Error)) -> Error {
    move |(path, source)| Error::ExportOutput {
        action,
        path,
        source,
    }
}

/// Writes one mailbox into its staging area, makes it durable and renames
/// it into place; on a hard error the staging area is removed.
fn export_mailbox(
    store: &mut dyn MailStore,
    plan: &ExportPlan,
    mb: &MailboxPlan,
    progress: &dyn Progress,
) -> Result<MailboxReport> {
    let staging = staging_of(&mb.dir);
    if let Some(parent) = mb.dir.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| (parent.to_path_buf(), e))
            .map_err(output_error("cannot create"))?;
    }
    // Private (0700): the export holds everyone's mail, decrypted when it
    // comes from an encrypted backup; the admin hands it on (chown -R).
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Error::Invalid(format!(
                "`{}` exists: another export is writing it, or one was interrupted (then remove it)",
                staging.display()
            ))
        } else {
            Error::ExportOutput {
                action: "cannot create",
                path: staging.clone(),
                source: e,
            }
        }
    })?;
    let mut report = MailboxReport {
        address: mb.address.clone(),
        dir: mb.dir.clone(),
        not_exported: mb.not_exportable.clone(),
        ..MailboxReport::default()
    };
    let result = (|| -> Result<()> {
        if plan.format == ExportFormat::Maildir {
            // The mailbox directory is a Maildir (INBOX) even without one in the store.
            Sink::maildir(staging.clone(), false).map_err(output_error("cannot create"))?;
        }
        for f in &mb.folders {
            let fr = FolderRun {
                format: plan.format,
                staging: &staging,
                plan: f,
                address: &mb.address,
                skip_groupware: plan.skip_calendars_contacts,
            }
            .run(store, &mut report, progress)?;
            report.folders += 1;
            report.messages += fr.messages;
            report.bytes += fr.bytes;
            report.calendar_items += fr.calendar_items;
            report.contact_items += fr.contact_items;
            report.folder_list.push(fr);
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(report),
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Bytes of finished mailboxes after which they are synced and published
/// together.
pub const PUBLISH_BATCH: u64 = 256 << 20;

/// Finished mailboxes waiting to be published: one `syncfs` for all of
/// them, then each renamed into place (never over anything).
#[derive(Default)]
struct Publisher {
    ready: Vec<PathBuf>,
    bytes: u64,
}

impl Publisher {
    /// Adds a finished mailbox; returns a batch to publish when enough
    /// bytes wait.
    fn add(&mut self, dir: PathBuf, bytes: u64) -> Option<Vec<PathBuf>> {
        self.ready.push(dir);
        self.bytes += bytes;
        (self.bytes >= PUBLISH_BATCH).then(|| self.take())
    }

    fn take(&mut self) -> Vec<PathBuf> {
        self.bytes = 0;
        std::mem::take(&mut self.ready)
    }
}

/// Makes the staged mailboxes durable with one `syncfs` and renames each
/// into place; the first failure is returned after the others were tried.
fn publish(dirs: &[PathBuf]) -> Result<()> {
    // One syncfs per filesystem: a domain directory may be a mount point
    // (or a link to another disk), and a mailbox renamed into place
    // before its own filesystem was synced could be incomplete after a
    // crash.
    let mut synced = HashSet::new();
    for dir in dirs {
        let staging = staging_of(dir);
        if let Ok(m) = fs::metadata(&staging)
            && synced.insert(m.dev())
        {
            sync_fs(&staging);
        }
    }
    let mut first_error = None;
    let mut parents = HashSet::new();
    for dir in dirs {
        let staging = staging_of(dir);
        if let Err(e) = sink::rename_noreplace(&staging, dir) {
            // Nothing is ever renamed over an existing mailbox.
            let err = if e.kind() == io::ErrorKind::AlreadyExists {
                Error::Invalid(format!(
                    "`{}` appeared during the export: the export is kept in `{}`",
                    dir.display(),
                    staging.display()
                ))
            } else {
                let _ = fs::remove_dir_all(&staging);
                Error::ExportOutput {
                    action: "cannot rename into place",
                    path: dir.clone(),
                    source: e,
                }
            };
            first_error.get_or_insert(err);
            continue;
        }
        if let Some(parent) = dir.parent() {
            parents.insert(parent.to_path_buf());
        }
    }
    for parent in parents {
        if let Ok(d) = fs::File::open(&parent) {
            let _ = d.sync_all();
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Makes what was written on `p`'s filesystem durable (one `syncfs`
/// instead of an fsync per message).
fn sync_fs(p: &Path) {
    let _ = mailvault_recover::stage::sync_filesystem(p);
}

/// Whether a failure to create an output is the folder's own (its name)
/// rather than the output's (space, permissions): then only the folder is
/// left out.
fn is_name_problem(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AlreadyExists
            | io::ErrorKind::InvalidFilename
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::IsADirectory
            | io::ErrorKind::InvalidInput
    )
}

/// One folder being exported.
struct FolderRun<'a> {
    format: ExportFormat,
    staging: &'a Path,
    plan: &'a FolderPlan,
    address: &'a str,
    skip_groupware: bool,
}

/// How an item is written.
enum Kind {
    Mail,
    Groupware(GroupwareKind),
}

impl FolderRun<'_> {
    fn problem(&self, report: &mut MailboxReport, path: &str, reason: String) {
        report.not_exported.push(NotExported {
            mailbox: self.address.to_string(),
            folder: self.plan.name.clone(),
            path: path.to_string(),
            reason,
        });
    }

    fn open_sink(&self) -> std::result::Result<Sink, (PathBuf, io::Error)> {
        let rel = &self.plan.mail;
        let at = |rel: &str| {
            if rel.is_empty() {
                Ok(self.staging.to_path_buf())
            } else {
                layout::enclosed_path(self.staging, rel).map_err(|e| {
                    (
                        self.staging.join(rel),
                        io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
                    )
                })
            }
        };
        match self.format {
            ExportFormat::Maildir => Sink::maildir(at(rel)?, !rel.is_empty()),
            ExportFormat::Mbox => Sink::mbox(at(rel)?),
            ExportFormat::Eml => Sink::eml(at(rel)?),
        }
    }

    fn groupware_file(&self, kind: GroupwareKind) -> Option<GroupwareFile> {
        let rel = match kind {
            GroupwareKind::Calendar => &self.plan.calendar,
            GroupwareKind::Contacts => &self.plan.contacts,
        };
        let path = layout::enclosed_path(self.staging, rel).ok()?;
        let name = self.plan.name.rsplit('/').next().unwrap_or(&self.plan.name);
        Some(GroupwareFile::new(kind, path, name))
    }

    #[allow(clippy::too_many_lines)] // one pass over the items, each kind handled in place
    fn run(
        &self,
        store: &mut dyn MailStore,
        report: &mut MailboxReport,
        progress: &dyn Progress,
    ) -> Result<FolderReport> {
        let folder = &self.plan.folder;
        let mut fr = FolderReport {
            name: self.plan.name.clone(),
            ..FolderReport::default()
        };
        let items = match store.items(folder) {
            Ok(v) => v,
            Err(e) => {
                self.problem(report, &folder.rel(), format!("cannot list its items: {e}"));
                fr.not_exported += self.plan.items.max(1);
                progress.inc(self.plan.items, self.plan.bytes);
                return Ok(fr);
            }
        };
        let index: BTreeMap<u32, IndexLine> = match store.index(folder) {
            Ok(i) => i,
            Err(e) => {
                self.problem(
                    report,
                    &format!("{}/index.fld", folder.rel()),
                    format!("{e}: the folder's messages were exported without their flags"),
                );
                fr.not_exported += 1;
                BTreeMap::new()
            }
        };
        let mut sink: Option<Sink> = None;
        let mut calendar: Option<GroupwareFile> = None;
        let mut contacts: Option<GroupwareFile> = None;
        let mut skipped = 0u64;
        let mut sink_failed = false;
        for item in &items {
            let line = index.get(&item.uid);
            let flags = line.map_or(0, |l| l.flags);
            let time = line
                .map(|l| l.created)
                .filter(|&t| t > 0)
                .map_or(item.mtime, i64::from);
            let mut preread: Option<Vec<u8>> = None;
            let kind = match line.map(|l| l.class.as_str()).filter(|c| !c.is_empty()) {
                Some(class) => match GroupwareKind::of_class(class) {
                    None => Kind::Mail,
                    Some(gk) if self.skip_groupware => Kind::Groupware(gk),
                    Some(gk) => match store.read_item(item) {
                        // A message filed with a calendar or contact class
                        // but holding no such data is mail: exported as mail
                        // rather than left out.
                        Ok(c) => {
                            let is_mail = groupware::payload(&c, gk).is_none()
                                && crate::mail::merge::check_message(&c).is_ok();
                            preread = Some(c);
                            if is_mail {
                                Kind::Mail
                            } else {
                                Kind::Groupware(gk)
                            }
                        }
                        Err(e) => {
                            self.problem(report, &item.rel, e.to_string());
                            fr.not_exported += 1;
                            progress.inc(1, item.size);
                            continue;
                        }
                    },
                },
                None if item.size <= SNIFF_BYTES => match store.read_item(item) {
                    Ok(c) => {
                        let k = GroupwareKind::of_class(index_fld::item_class(&c))
                            .map_or(Kind::Mail, Kind::Groupware);
                        preread = Some(c);
                        k
                    }
                    Err(e) => {
                        self.problem(report, &item.rel, e.to_string());
                        fr.not_exported += 1;
                        progress.inc(1, item.size);
                        continue;
                    }
                },
                None => Kind::Mail,
            };
            match kind {
                Kind::Mail => {
                    if sink_failed {
                        fr.not_exported += 1;
                        progress.inc(1, item.size);
                        continue;
                    }
                    if sink.is_none() {
                        match self.open_sink() {
                            Ok(s) => {
                                sink = Some(s);
                                fr.mail = Some(self.plan.mail.clone());
                            }
                            Err((path, e)) if is_name_problem(&e) => {
                                self.problem(
                                    report,
                                    &folder.rel(),
                                    format!("cannot create `{}`: {e}", path.display()),
                                );
                                sink_failed = true;
                                fr.not_exported += 1;
                                progress.inc(1, item.size);
                                continue;
                            }
                            Err(x) => return Err(output_error("cannot create")(x)),
                        }
                    }
                    let Some(s) = sink.as_mut() else { continue };
                    match s.add(store, item, preread.as_deref(), flags, time) {
                        Ok(n) => {
                            fr.messages += 1;
                            fr.bytes += n;
                        }
                        Err(ItemError::Source(reason)) => {
                            self.problem(report, &item.rel, reason);
                            fr.not_exported += 1;
                        }
                        Err(ItemError::Output(action, path, e)) if is_name_problem(&e) => {
                            self.problem(
                                report,
                                &item.rel,
                                format!("{action} `{}`: {e}", path.display()),
                            );
                            fr.not_exported += 1;
                        }
                        Err(ItemError::Output(action, path, source)) => {
                            return Err(Error::ExportOutput {
                                action,
                                path,
                                source,
                            });
                        }
                    }
                }
                Kind::Groupware(_) if self.skip_groupware => skipped += 1,
                Kind::Groupware(gk) => {
                    let content = match preread.take() {
                        Some(c) => c,
                        None => match store.read_item(item) {
                            Ok(c) => c,
                            Err(e) => {
                                self.problem(report, &item.rel, e.to_string());
                                fr.not_exported += 1;
                                progress.inc(1, item.size);
                                continue;
                            }
                        },
                    };
                    let slot = match gk {
                        GroupwareKind::Calendar => &mut calendar,
                        GroupwareKind::Contacts => &mut contacts,
                    };
                    if slot.is_none() {
                        *slot = self.groupware_file(gk);
                    }
                    let Some(file) = slot.as_mut() else {
                        self.problem(report, &item.rel, "no file name for it".into());
                        fr.not_exported += 1;
                        continue;
                    };
                    match file.add(&content) {
                        Ok(dropped) if dropped.is_empty() => {}
                        Ok(dropped) => {
                            // The item is in the file, its attachments are not.
                            self.problem(
                                report,
                                &item.rel,
                                format!(
                                    "exported without {}: a .{} file holds no attachments",
                                    dropped.join(", "),
                                    file.path().extension().map_or_else(String::new, |e| e
                                        .to_string_lossy()
                                        .into_owned())
                                ),
                            );
                        }
                        Err(AddError::Item(reason)) => {
                            self.problem(report, &item.rel, format!("not exported: {reason}"));
                            fr.not_exported += 1;
                        }
                        Err(AddError::Output(e)) if is_name_problem(&e) => {
                            // Another folder's output holds the name (a
                            // folder `Cal` beside `Cal.ics/x`): this folder's
                            // file is left out, not the whole export.
                            self.problem(
                                report,
                                &item.rel,
                                format!("cannot write `{}`: {e}", file.path().display()),
                            );
                            fr.not_exported += 1;
                        }
                        Err(AddError::Output(e)) => {
                            return Err(Error::ExportOutput {
                                action: "cannot write",
                                path: file.path().to_path_buf(),
                                source: e,
                            });
                        }
                    }
                }
            }
            progress.inc(1, item.size);
        }
        // An empty mail folder is still a folder; one holding only calendar
        // or contact items gets no mail folder.
        if sink.is_none()
            && !sink_failed
            && calendar.is_none()
            && contacts.is_none()
            && skipped == 0
        {
            match self.open_sink() {
                Ok(s) => {
                    sink = Some(s);
                    fr.mail = Some(self.plan.mail.clone());
                }
                Err((path, e)) if is_name_problem(&e) => {
                    self.problem(
                        report,
                        &folder.rel(),
                        format!("cannot create `{}`: {e}", path.display()),
                    );
                    fr.not_exported += 1;
                }
                Err(x) => return Err(output_error("cannot create")(x)),
            }
        }
        if let Some(s) = sink {
            s.finish().map_err(output_error("cannot write"))?;
        }
        for (file, count, rel, slot) in [
            (
                calendar,
                &mut fr.calendar_items,
                &self.plan.calendar,
                &mut fr.calendar,
            ),
            (
                contacts,
                &mut fr.contact_items,
                &self.plan.contacts,
                &mut fr.contacts,
            ),
        ] {
            if let Some(file) = file {
                *count = file.items;
                if file.items > 0 {
                    *slot = Some(rel.clone());
                }
                let path = file.path().to_path_buf();
                file.finish()
                    .map_err(|e| (path, e))
                    .map_err(output_error("cannot write"))?;
            }
        }
        if skipped > 0 {
            fr.skipped = skipped;
            report.skipped.push(Skipped {
                mailbox: self.address.to_string(),
                folder: self.plan.name.clone(),
                items: skipped,
                reason: "calendar and contact items left out (--skip-calendars-contacts)".into(),
            });
        }
        Ok(fr)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn folder(path: &str) -> FolderRef {
        FolderRef {
            domain: "a.cz".into(),
            mailbox: "jan".into(),
            path: path.into(),
        }
    }

    #[test]
    fn names_outputs_per_format() {
        let mut taken = HashSet::new();
        let p = plan_folder(ExportFormat::Maildir, folder("INBOX"), &[], &mut taken);
        assert_eq!((p.mail.as_str(), p.calendar.as_str()), ("", "INBOX.ics"));
        let p = plan_folder(
            ExportFormat::Maildir,
            folder("Odeslan&AOE- po&AWE-ta"),
            &[],
            &mut taken,
        );
        assert_eq!(p.name, "Odeslaná pošta");
        assert_eq!(p.mail, ".Odeslan&AOE- po&AWE-ta");
        assert_eq!(p.contacts, "Odeslaná pošta.vcf");
        // The same folder name stored raw clashes: a number is added.
        let p = plan_folder(
            ExportFormat::Maildir,
            folder("Odeslaná pošta"),
            &[],
            &mut taken,
        );
        assert_eq!(p.mail, ".Odeslan&AOE- po&AWE-ta (2)");
        assert_eq!(p.calendar, "Odeslaná pošta (2).ics");
        assert!(p.note.unwrap().contains("same name"));
        let p = plan_folder(ExportFormat::Maildir, folder("v1.2/tmp"), &[], &mut taken);
        assert_eq!(p.mail, ".v1_2.tmp");
        assert_eq!(p.calendar, "v1.2/tmp.ics");
        let p = plan_folder(ExportFormat::Maildir, folder("tmp/x"), &[], &mut taken);
        assert_eq!(p.calendar, "_tmp/x.ics");

        let mut taken = HashSet::new();
        let p = plan_folder(ExportFormat::Mbox, folder("Projects/2026"), &[], &mut taken);
        assert_eq!(p.mail, "Projects/2026.mbox");
        let p = plan_folder(ExportFormat::Eml, folder(".hidden/&AAA-x"), &[], &mut taken);
        assert_eq!(p.mail, "_hidden/_x");
        assert!(p.note.unwrap().contains("replaced"));
    }

    #[test]
    fn selects_mailboxes_and_folders() {
        let all = vec![
            folder("INBOX"),
            folder("Projects"),
            folder("Projects/2026"),
            folder("Projectsx"),
            FolderRef {
                domain: "b.cz".into(),
                mailbox: "jan".into(),
                path: "INBOX".into(),
            },
        ];
        let req = |user: Option<&str>, domain: Option<&str>, f: Option<&str>| ExportRequest {
            out: PathBuf::from("/nonexistent"),
            format: ExportFormat::Maildir,
            domain: domain.map(str::to_string),
            user: user.map(str::to_string),
            folder: f.map(str::to_string),
            skip_groupware: false,
        };
        assert_eq!(select(&all, &req(None, None, None), "s").unwrap().len(), 5);
        assert_eq!(
            select(&all, &req(None, Some("b.cz"), None), "s")
                .unwrap()
                .len(),
            1
        );
        let e = select(&all, &req(Some("jan"), None, None), "s").unwrap_err();
        assert!(e.to_string().contains("a.cz, b.cz"), "{e}");
        let e = select(&all, &req(Some("nobody@nowhere"), None, None), "s").unwrap_err();
        assert!(e.to_string().contains("no mailbox `nobody@nowhere`"), "{e}");
        assert!(e.to_string().contains("no domain `nowhere`"), "{e}");
        let e = select(&all, &req(Some("nobody@a.cz"), None, None), "s").unwrap_err();
        assert!(e.to_string().contains("no mailbox `nobody@a.cz`"), "{e}");
        let got = select(&all, &req(Some("jan@a.cz"), None, Some("Projects")), "s").unwrap();
        assert_eq!(got.len(), 2);
        let e = select(&all, &req(Some("jan@a.cz"), None, Some("Nope")), "s").unwrap_err();
        assert!(e.to_string().contains("Projects/2026"), "{e}");
    }
}
