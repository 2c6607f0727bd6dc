//! `mailvault migrate`: moves a server onto a new install directory, from a
//! backup chain (through the restore library, exactly as `kmsrecover
//! --into` restores) or from a stopped live install (a file-by-file copy),
//! optionally rewrites the hostname and paths in `mailserver.cfg` (in
//! place, every other byte kept), then verifies the result against the
//! source: per mailbox the folders, items and bytes (both sides read as a
//! [`MailStore`]), every file's size and CRC-32, and that the config files
//! are there and parse.
//!
//! [`plan`] decides everything and writes nothing (`--dry-run` prints its
//! [`MigratePlan`]); [`execute`] carries the plan out and returns a
//! [`MigrateReport`]. The target is never the source: a target inside the
//! source install or the backup directory (or holding the install) is
//! refused. A target that is not empty is refused unless forced; even then
//! nothing in it is removed or overwritten: a file the migration would put
//! where something already is gets that thing moved aside first, into
//! `mailvault-migrate-displaced-<time>/` in the target, and listed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use mailvault_formats::SkipReason;
use mailvault_formats::config::edit;
use mailvault_formats::layout::{
    self, CONFIG_DIRS, CONFIG_FILES, EXCLUDED_STORE_DIRS, MailboxPath, enclosed_path,
};
use mailvault_recover::request::{LOCK_FILE, STAGING_DIR};
use mailvault_recover::{Destination, ExecuteOptions, Prepared, RestoreRequest, RunningCheck};
use mailvault_repo::PassedOver;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::mail::folder::{InstallLock, replace_file};
use crate::mail::store::{ChainStore, FolderRef, LiveStore, MailStore};
use crate::progress::Progress;

/// The directory inside a forced target that receives what was in the way.
pub const DISPLACED_PREFIX: &str = "mailvault-migrate-displaced-";
/// Where a forced migration from backups restores before moving files into
/// the target (inside it, so the moves are renames on one filesystem).
pub const STAGING: &str = ".mailvault-migrate-staging";
/// Config files larger than this are not read for rewriting.
const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// Differences listed per mailbox (the count says how many more).
const MAX_LISTED: usize = 20;

/// Where the server comes from.
#[derive(Debug, Clone)]
pub enum MigrateSource {
    /// A backup directory, one archive or a target URL, as `kmsrecover` takes it.
    Backups {
        /// The location (`/mnt/backup`, `…/F20261122T010000Z.zip`, `s3://…`).
        location: String,
        /// Key file of encrypted backups.
        key: Option<PathBuf>,
        /// The newest state at or before this time.
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// A live (stopped) install directory.
    Install(PathBuf),
}

/// `--hostname [OLD=]NEW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostnameChange {
    /// The old name; `None`: read from mailserver.cfg's `…Hostname` variable.
    pub old: Option<String>,
    /// The new name.
    pub new: String,
}

impl std::str::FromStr for HostnameChange {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let check = |h: &str| {
            if h.is_empty()
                || h.len() > 253
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                Err(format!(
                    "`{h}` is not a hostname (letters, digits, `.` and `-`)"
                ))
            } else {
                Ok(h.to_string())
            }
        };
        Ok(match s.split_once('=') {
            Some((old, new)) => Self {
                old: Some(check(old)?),
                new: check(new)?,
            },
            None => Self {
                old: None,
                new: check(s)?,
            },
        })
    }
}

/// `--rewrite-path OLD=NEW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRewrite {
    /// The old prefix (no trailing `/`).
    pub old: String,
    /// What replaces it.
    pub new: String,
}

impl std::str::FromStr for PathRewrite {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (old, new) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: give OLD=NEW, e.g. /opt/kerio/mailserver=/srv/kerio"))?;
        let trim = |p: &str| {
            if p.len() > 1 {
                p.trim_end_matches('/').to_string()
            } else {
                p.to_string()
            }
        };
        let (old, new) = (trim(old), trim(new));
        if old.is_empty() || new.is_empty() || old == "/" {
            return Err(format!(
                "`{s}`: OLD and NEW must be paths, and OLD not `/` (it would rewrite every path)"
            ));
        }
        if old.chars().any(char::is_control) || new.chars().any(char::is_control) {
            return Err(format!("`{s}`: control characters in a path"));
        }
        Ok(Self { old, new })
    }
}

impl PathRewrite {
    /// The rewritten value, if `value` is OLD or lies below it.
    #[must_use]
    pub fn apply(&self, value: &str) -> Option<String> {
        let rest = value.strip_prefix(self.old.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", self.new))
    }
}

/// What the admin asked for.
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    /// Where the server comes from.
    pub source: MigrateSource,
    /// The new install directory.
    pub to: PathBuf,
    /// Accept a target that is not empty (nothing there is removed or overwritten).
    pub force: bool,
    /// `--hostname`.
    pub hostname: Option<HostnameChange>,
    /// `--rewrite-path`, in the order given.
    pub rewrite_paths: Vec<PathRewrite>,
    /// How to tell whether a mail server runs.
    pub running: RunningCheck,
    /// Copy a live install even though a mail server seems to run.
    pub ignore_running: bool,
    /// From damaged backups: migrate what is intact, list what is not.
    pub salvage: bool,
}

impl MigrateRequest {
    /// A migration from backups onto an empty directory.
    pub fn from_backups(location: impl Into<String>, to: impl Into<PathBuf>) -> Self {
        Self {
            source: MigrateSource::Backups {
                location: location.into(),
                key: None,
                at: None,
            },
            to: to.into(),
            force: false,
            hostname: None,
            rewrite_paths: Vec::new(),
            running: RunningCheck::ProcessName,
            ignore_running: false,
            salvage: false,
        }
    }
}

/// The source as planned.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceState {
    /// `backups` or `install`.
    pub kind: &'static str,
    /// The backup location or install directory.
    pub location: String,
    /// First-volume names of the chain, full first (backups).
    pub chain: Vec<String>,
    /// Newer backups passed over, with why.
    pub passed_over: Vec<PassedOver>,
    /// Files to migrate.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Mailboxes (users and public folders) in the store.
    pub mailboxes: usize,
    /// Folders in them.
    pub folders: usize,
    /// Items in them.
    pub items: u64,
}

/// The target as planned.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetState {
    /// The new install directory.
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    /// Whether it exists.
    pub exists: bool,
    /// Whether it is empty (or new).
    pub empty: bool,
    /// Its top-level entries (the first few), when not empty.
    pub entries: Vec<String>,
    /// Install-relative paths where something is in the way and will be
    /// moved aside (`--force`).
    pub displaced: Vec<String>,
    /// Where what is in the way goes.
    #[serde(serialize_with = "ser_opt_path")]
    pub displaced_dir: Option<PathBuf>,
}

/// One value rewritten in a config file.
#[derive(Debug, Clone, Serialize)]
pub struct Rewrite {
    /// The file (`mailserver.cfg`).
    pub file: String,
    /// Its place (`table Server`, `list Domain #2`).
    pub section: String,
    /// The variable's name.
    pub variable: String,
    /// The value before.
    pub old: String,
    /// The value after.
    pub new: String,
    /// Which option asked for it (`--hostname`, `--rewrite-path OLD=NEW`).
    pub rule: String,
}

/// Something of the source that is not migrated, with why.
#[derive(Debug, Clone, Serialize)]
pub struct NotMigrated {
    /// Install-relative path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What a migration will do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigratePlan {
    /// The source.
    pub source: SourceState,
    /// The target.
    pub target: TargetState,
    /// Values of mailserver.cfg that will be rewritten.
    pub rewrites: Vec<Rewrite>,
    /// What the source holds that will not be migrated.
    pub not_migrated: Vec<NotMigrated>,
    /// Warnings and remarks.
    pub notes: Vec<String>,
}

impl MigratePlan {
    /// Whether the migration, as planned, leaves something out (exit code 3).
    #[must_use]
    pub fn is_partial(&self) -> bool {
        !self.not_migrated.is_empty() || self.source.passed_over.iter().any(|p| p.damaged)
    }
}

/// A file of the source: what the target must hold afterwards.
#[derive(Debug, Clone)]
struct SourceFile {
    rel: String,
    size: u64,
    /// CRC-32 of the content (from the catalog; for a live copy, of what was copied).
    crc: Option<u32>,
}

/// The source's mail, mailbox by mailbox.
type Inventory = BTreeMap<String, MailboxInv>;

#[derive(Debug, Clone, Default)]
struct MailboxInv {
    folders: BTreeSet<String>,
    /// Item path → size.
    items: BTreeMap<String, u64>,
}

impl MailboxInv {
    fn bytes(&self) -> u64 {
        self.items.values().sum()
    }
}

/// A planned migration, ready to execute.
pub struct Migration {
    request: MigrateRequest,
    plan: MigratePlan,
    how: How,
    /// mailserver.cfg as the source has it, and as the target will, when rewritten.
    cfg_edit: Option<(Vec<u8>, Vec<u8>)>,
    target_existed: bool,
}

enum How {
    Backups {
        prepared: Box<Prepared>,
        files: Vec<SourceFile>,
        mail: Inventory,
        /// Forced onto a non-empty target: restored here first.
        staging: Option<PathBuf>,
    },
    Install {
        dir: PathBuf,
        dirs: Vec<String>,
        files: Vec<SourceFile>,
    },
}

impl Migration {
    /// What will be done.
    #[must_use]
    pub fn plan(&self) -> &MigratePlan {
        &self.plan
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
    fn ok(&self) -> bool {
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

/// A thing that was in the target's way, moved aside.
#[derive(Debug, Clone, Serialize)]
pub struct Displaced {
    /// Install-relative path.
    pub path: String,
    /// Where it is now.
    #[serde(serialize_with = "ser_path")]
    pub now: PathBuf,
}

/// What a migration did and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrateReport {
    /// The plan carried out.
    pub plan: MigratePlan,
    /// Files written into the target.
    pub written: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What was in the way, moved aside (`--force`).
    pub displaced: Vec<Displaced>,
    /// Values rewritten in mailserver.cfg.
    pub rewrites: Vec<Rewrite>,
    /// What was not migrated.
    pub not_migrated: Vec<NotMigrated>,
    /// Folders whose `index.fld` the restore renamed to `index.bad` (the server rebuilds them).
    pub index_rebuilt: Vec<String>,
    /// Per mailbox.
    pub mailboxes: Vec<MailboxCheck>,
    /// The config files.
    pub config: Vec<ConfigCheck>,
    /// Every file.
    pub files: FilesCheck,
    /// Remarks.
    pub notes: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

impl MigrateReport {
    /// Whether the target holds exactly the source (with the rewrites).
    #[must_use]
    pub fn verified_equal(&self) -> bool {
        self.mailboxes.iter().all(|m| m.equal)
            && self.config.iter().all(ConfigCheck::ok)
            && self.files.missing.is_empty()
            && self.files.different.is_empty()
    }

    /// Migrated and verified, nothing left out (otherwise exit code 3).
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.verified_equal() && self.not_migrated.is_empty() && !self.plan.is_partial()
    }
}

fn ser_path<S: serde::Serializer>(p: &Path, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

#[allow(clippy::ref_option)]
fn ser_opt_path<S: serde::Serializer>(
    p: &Option<PathBuf>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

fn refused(reason: String, hint: &str) -> Error {
    Error::Refused {
        reason,
        hint: hint.to_string(),
    }
}

/// A path with links and `..` resolved as far as it exists, the rest appended.
fn physical(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = fs::canonicalize(cur) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return abs,
        }
    }
}

/// Refuses a target that is, lies inside or holds `source`.
fn not_within(to: &Path, source: &Path, what: &str) -> Result<()> {
    let (t, s) = (physical(to), physical(source));
    if t.starts_with(&s) {
        return Err(Error::Usage(format!(
            "the target `{}` is inside {what} `{}`: migrate onto a separate directory",
            to.display(),
            source.display()
        )));
    }
    Ok(())
}

/// Plans a migration: opens and checks the source, checks the target, finds
/// the rewrites. Writes nothing.
///
/// # Errors
/// A source that cannot be read, a target refused (not empty without
/// `--force`, inside the source), rewrites that cannot be done, a running
/// mail server (live source or forced target).
pub fn plan(request: MigrateRequest) -> Result<Migration> {
    let to = &request.to;
    match fs::symlink_metadata(to) {
        Ok(m) if !m.is_dir() => {
            return Err(refused(
                format!("the target `{}` is not a directory", to.display()),
                "give a new or empty directory with --to",
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = to.parent().filter(|p| !p.as_os_str().is_empty());
            if parent.is_some_and(|p| !p.is_dir()) {
                return Err(refused(
                    format!(
                        "the target's parent `{}` does not exist",
                        parent
                            .map(Path::display)
                            .map(|d| d.to_string())
                            .unwrap_or_default()
                    ),
                    "create it first (mailvault creates only the target directory itself)",
                ));
            }
        }
        Err(e) => return Err(Error::io("cannot read", to)(e)),
    }
    let target_existed = to.exists();
    let entries = top_entries(to)?;
    let mut plan = MigratePlan {
        target: TargetState {
            path: to.clone(),
            exists: target_existed,
            empty: entries.is_empty(),
            entries: entries.iter().take(10).cloned().collect(),
            ..TargetState::default()
        },
        ..MigratePlan::default()
    };
    if !entries.is_empty() && !request.force {
        return Err(refused(
            format!(
                "the target `{}` is not empty ({}{}): a migration needs a new or empty directory",
                to.display(),
                entries
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if entries.len() > 5 { ", …" } else { "" }
            ),
            "give another --to, or --force to migrate into it anyway: nothing there is removed or overwritten, what is in the way is moved into mailvault-migrate-displaced-<time>/ (see docs/migrate.md)",
        ));
    }
    let live_source = matches!(request.source, MigrateSource::Install(_));
    if (live_source || !entries.is_empty())
        && !request.ignore_running
        && let Some(why) = mailvault_recover::running::server_running(&request.running)?
    {
        return Err(mailvault_recover::Error::ServerRunning(why).into());
    }
    let (how, cfg_source) = match &request.source {
        MigrateSource::Backups { location, key, at } => {
            plan_backups(&request, location, key.as_deref(), *at, &entries, &mut plan)?
        }
        MigrateSource::Install(dir) => plan_install(&request, dir, &mut plan)?,
    };
    // What is in the way in a forced target.
    if !entries.is_empty() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        plan.target.displaced_dir = Some(to.join(format!("{DISPLACED_PREFIX}{stamp}")));
        let files: Vec<&SourceFile> = match &how {
            How::Backups { files, .. } | How::Install { files, .. } => files.iter().collect(),
        };
        let mut seen = BTreeSet::new();
        for f in files {
            if let Some(rel) = in_the_way(to, &f.rel)?
                && seen.insert(rel.clone())
            {
                plan.target.displaced.push(rel);
            }
        }
    }
    let cfg_edit = match cfg_source {
        Some(bytes) if request.hostname.is_some() || !request.rewrite_paths.is_empty() => {
            let (rewrites, new) = rewrite_config(&request, &bytes, &mut plan.notes)?;
            plan.rewrites = rewrites;
            (!plan.rewrites.is_empty()).then_some((bytes, new))
        }
        None if request.hostname.is_some() || !request.rewrite_paths.is_empty() => {
            return Err(refused(
                "--hostname/--rewrite-path were given, but the source has no mailserver.cfg".into(),
                "leave them out, or migrate from a backup or install that has its configuration",
            ));
        }
        _ => None,
    };
    Ok(Migration {
        request,
        plan,
        how,
        cfg_edit,
        target_existed,
    })
}

/// The target's top-level entries (none when it does not exist).
fn top_entries(to: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(to) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot list", to)(e)),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(Error::io("cannot list", to))?;
        v.push(e.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

/// The install-relative path of whatever blocks writing `rel` in `to`: an
/// existing entry at `rel`, or a non-directory (or link) where one of its
/// parent directories belongs.
fn in_the_way(to: &Path, rel: &str) -> Result<Option<String>> {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut p = to.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        p.push(part);
        match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("cannot read", &p)(e)),
            Ok(m) => {
                let last = i + 1 == parts.len();
                if last || !m.is_dir() {
                    return Ok(Some(parts[..=i].join("/")));
                }
            }
        }
    }
    Ok(None)
}

fn plan_backups(
    request: &MigrateRequest,
    location: &str,
    key: Option<&Path>,
    at: Option<chrono::DateTime<chrono::Utc>>,
    entries: &[String],
    plan: &mut MigratePlan,
) -> Result<(How, Option<Vec<u8>>)> {
    let to = &request.to;
    let source = mailvault_recover::source::open(location, key, at)?;
    if let Some(dir) = &source.local_dir {
        not_within(to, dir, "the backup directory")?;
        // The backups never lie inside what a migration writes (a forced
        // target may be the server they came from).
        if physical(dir).starts_with(physical(to)) {
            return Err(Error::Usage(format!(
                "the backup directory `{}` lies inside the target `{}`: copy the backups outside the new install directory (e.g. /srv/backups) and give that with --from",
                dir.display(),
                to.display()
            )));
        }
    }
    let staging = (!entries.is_empty()).then(|| to.join(STAGING));
    let mut req = RestoreRequest::new(to);
    req.pick = source.pick.clone();
    req.destination = Destination::into_dir(staging.as_deref().unwrap_or(to));
    req.require_install = false;
    req.salvage = request.salvage;
    req.untouchable = source.local_dir.iter().cloned().collect();
    let prepared = mailvault_recover::prepare(&source.repo, req)?;
    let p = &prepared.plan;
    plan.source = SourceState {
        kind: "backups",
        location: source.repo.storage().describe(""),
        chain: p.chain.clone(),
        passed_over: p.passed_over.clone(),
        ..SourceState::default()
    };
    for n in &p.not_restorable {
        plan.not_migrated.push(NotMigrated {
            path: n.path.clone(),
            reason: n.reason.clone(),
        });
    }
    plan.notes.extend(p.notes.iter().cloned());
    for s in prepared.chain.skipped() {
        match s.reason {
            SkipReason::DisabledUser => plan.notes.push(format!(
                "`{}`: a disabled user's mailbox, which backups leave out (as Kerio's do): not migrated; enable the user before the final backup, or migrate with --from-install",
                s.path
            )),
            SkipReason::Vanished => {}
            ref r => plan.not_migrated.push(NotMigrated {
                path: s.path.clone(),
                reason: format!("the backup skipped it ({})", r.as_str()),
            }),
        }
    }
    let (state, _) = prepared.chain.state()?;
    let mut files = Vec::with_capacity(state.len());
    let mut cfg = None;
    for f in &state {
        let rel = f.entry.path.as_str();
        if !restored_rel(rel) {
            continue;
        }
        if rel == "mailserver.cfg"
            && (request.hostname.is_some() || !request.rewrite_paths.is_empty())
        {
            if f.entry.size > MAX_CONFIG_BYTES {
                return Err(refused(
                    format!(
                        "mailserver.cfg in the backup is {} bytes: too large to rewrite",
                        f.entry.size
                    ),
                    "leave out --hostname/--rewrite-path and edit it by hand",
                ));
            }
            let mut v = Vec::new();
            let mut buf = vec![0; 64 << 10];
            prepared
                .chain
                .reader()
                .read(f, &mut v, &mut buf)
                .map_err(|e| match e {
                    mailvault_repo::chain::EntryError::Archive(p) => {
                        Error::Recover(mailvault_recover::Error::Damaged(p))
                    }
                    mailvault_repo::chain::EntryError::Write(e) => {
                        Error::io("cannot read", "mailserver.cfg")(e)
                    }
                })?;
            cfg = Some(v);
        }
        files.push(SourceFile {
            rel: rel.to_string(),
            size: f.entry.size,
            crc: Some(f.entry.crc32),
        });
    }
    plan.source.files = files.len() as u64;
    plan.source.bytes = files.iter().map(|f| f.size).sum();
    let mail = {
        let mut store = ChainStore::new(&prepared.chain)?;
        inventory(&mut store, &[])?
    };
    summarize(&mail, &mut plan.source);
    Ok((
        How::Backups {
            prepared: Box::new(prepared),
            files,
            mail,
            staging,
        },
        cfg,
    ))
}

/// Whether a restore from backups puts this install-relative path in the
/// target (the parts a backup holds; the restore library restores them all).
fn restored_rel(rel: &str) -> bool {
    let top = rel.split('/').next().unwrap_or_default();
    CONFIG_FILES.contains(&rel) || CONFIG_DIRS.contains(&top) || top == "store"
}

fn summarize(mail: &Inventory, s: &mut SourceState) {
    s.mailboxes = mail.len();
    s.folders = mail.values().map(|m| m.folders.len()).sum();
    s.items = mail.values().map(|m| m.items.len() as u64).sum();
}

/// The mail of a store by mailbox: folders (those the store lists, and
/// those `extra` files lie in) and items.
fn inventory(store: &mut dyn MailStore, extra: &[&str]) -> Result<Inventory> {
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

fn plan_install(
    request: &MigrateRequest,
    dir: &Path,
    plan: &mut MigratePlan,
) -> Result<(How, Option<Vec<u8>>)> {
    let meta = fs::metadata(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            refused(
                format!("the source install `{}` does not exist", dir.display()),
                "give the old server's install directory with --from-install (default layout /opt/kerio/mailserver)",
            )
        } else {
            Error::io("cannot read", dir)(e)
        }
    })?;
    if !meta.is_dir()
        || !(dir.join("mailserver.cfg").is_file()
            || dir.join("users.cfg").is_file()
            || dir.join("store/mail").is_dir())
    {
        return Err(Error::NotAnInstall(dir.to_path_buf()));
    }
    not_within(&request.to, dir, "the source install")?;
    if physical(dir).starts_with(physical(&request.to)) {
        return Err(Error::Usage(format!(
            "the source install `{}` lies inside the target `{}`: migrate onto a separate directory",
            dir.display(),
            request.to.display()
        )));
    }
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for name in CONFIG_FILES {
        let p = dir.join(name);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => files.push(SourceFile {
                rel: name.to_string(),
                size: m.len(),
                crc: None,
            }),
            Ok(_) => plan.not_migrated.push(NotMigrated {
                path: name.to_string(),
                reason: "not a regular file (a link?): not copied".into(),
            }),
            Err(_) => {}
        }
    }
    for top in CONFIG_DIRS.iter().copied().chain(["store"]) {
        walk_source(dir, top, &mut dirs, &mut files, &mut plan.not_migrated)?;
    }
    let cfg = if files.iter().any(|f| f.rel == "mailserver.cfg") {
        let p = dir.join("mailserver.cfg");
        let m = fs::metadata(&p).map_err(Error::io("cannot read", &p))?;
        if m.len() > MAX_CONFIG_BYTES
            && (request.hostname.is_some() || !request.rewrite_paths.is_empty())
        {
            return Err(refused(
                format!(
                    "`{}` is {} bytes: too large to rewrite",
                    p.display(),
                    m.len()
                ),
                "leave out --hostname/--rewrite-path and edit it by hand",
            ));
        }
        (m.len() <= MAX_CONFIG_BYTES)
            .then(|| fs::read(&p).map_err(Error::io("cannot read", &p)))
            .transpose()?
    } else {
        None
    };
    plan.source = SourceState {
        kind: "install",
        location: dir.display().to_string(),
        files: files.len() as u64,
        bytes: files.iter().map(|f| f.size).sum(),
        ..SourceState::default()
    };
    let mail = inventory(&mut LiveStore::new(dir.join("store")), &[])?;
    summarize(&mail, &mut plan.source);
    Ok((
        How::Install {
            dir: dir.to_path_buf(),
            dirs,
            files,
        },
        cfg,
    ))
}

/// Lists what a live copy takes below `top` (`license`, `store`…): the
/// directories (empty ones too), the regular files, and what it cannot
/// copy. The store's logs, queue, tmp, archive and backup are left out, as
/// a backup leaves them out, and so are a restore's leftovers.
fn walk_source(
    install: &Path,
    top: &str,
    dirs: &mut Vec<String>,
    files: &mut Vec<SourceFile>,
    not: &mut Vec<NotMigrated>,
) -> Result<()> {
    let root = install.join(top);
    if !root.exists() {
        return Ok(());
    }
    let mut walker = walkdir::WalkDir::new(&root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry.map_err(|e| {
            let path = e.path().map_or_else(|| root.clone(), Path::to_path_buf);
            Error::Unreadable {
                path,
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
            }
        })?;
        let Ok(below) = entry.path().strip_prefix(install) else {
            continue;
        };
        let Some(rel) = below.to_str().map(str::to_string) else {
            not.push(NotMigrated {
                path: below.to_string_lossy().into_owned(),
                reason: "a name that is not UTF-8: not copied".into(),
            });
            if entry.file_type().is_dir() {
                walker.skip_current_dir();
            }
            continue;
        };
        let ft = entry.file_type();
        if ft.is_dir() {
            let excluded = rel
                .strip_prefix("store/")
                .is_some_and(|sub| !sub.contains('/') && EXCLUDED_STORE_DIRS.contains(&sub));
            if excluded || (entry.depth() > 0 && entry.file_name() == STAGING_DIR) {
                walker.skip_current_dir();
                continue;
            }
            if layout::check_relative(&rel).is_err() {
                not.push(NotMigrated {
                    path: rel,
                    reason: "a name that cannot be copied safely: not copied".into(),
                });
                walker.skip_current_dir();
                continue;
            }
            dirs.push(rel);
        } else if ft.is_file() {
            if layout::check_relative(&rel).is_err() {
                not.push(NotMigrated {
                    path: rel,
                    reason: "a name that cannot be copied safely: not copied".into(),
                });
                continue;
            }
            let m = entry.metadata().map_err(|e| Error::Unreadable {
                path: entry.path().to_path_buf(),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("vanished")),
            })?;
            files.push(SourceFile {
                rel,
                size: m.len(),
                crc: None,
            });
        } else {
            not.push(NotMigrated {
                path: rel,
                reason: "a symbolic link or special file: not copied (recreate it by hand if it is needed)".into(),
            });
        }
    }
    Ok(())
}

/// Finds the rewrites in mailserver.cfg and makes the new text.
fn rewrite_config(
    request: &MigrateRequest,
    bytes: &[u8],
    notes: &mut Vec<String>,
) -> Result<(Vec<Rewrite>, Vec<u8>)> {
    let vars = edit::variables("mailserver.cfg", bytes).map_err(|e| {
        refused(
            format!("mailserver.cfg of the source cannot be read for rewriting: {e}"),
            "leave out --hostname/--rewrite-path (the file is migrated as it is) and fix it by hand",
        )
    })?;
    let host = match &request.hostname {
        None => None,
        Some(h) => {
            let old = match &h.old {
                Some(o) => o.clone(),
                None => {
                    let mut found: Vec<String> = Vec::new();
                    for v in &vars {
                        let n = v.name.to_ascii_lowercase();
                        let val = v.value.trim();
                        if n.ends_with("hostname")
                            && !val.is_empty()
                            && !found.iter().any(|f| f.eq_ignore_ascii_case(val))
                        {
                            found.push(val.to_string());
                        }
                    }
                    match found.len() {
                        1 => found.remove(0),
                        0 => {
                            return Err(refused(
                                "--hostname: mailserver.cfg has no …Hostname variable to take the old name from".into(),
                                "give the old name too: --hostname OLD=NEW",
                            ));
                        }
                        _ => {
                            return Err(refused(
                                format!(
                                    "--hostname: mailserver.cfg names several hostnames ({}): which one is the server's?",
                                    found.join(", ")
                                ),
                                "give the old name too: --hostname OLD=NEW",
                            ));
                        }
                    }
                }
            };
            Some((old, h.new.clone()))
        }
    };
    // The longest OLD first: `/opt/kerio/mailserver/store=…` wins over `/opt/kerio=…`.
    let mut paths: Vec<&PathRewrite> = request.rewrite_paths.iter().collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.old.len()));
    let mut used_host = false;
    let mut used_paths = vec![false; paths.len()];
    let mut rewrites = Vec::new();
    let mut edits = Vec::new();
    for v in &vars {
        let mut new = None;
        if let Some((old, newh)) = &host
            && v.value.eq_ignore_ascii_case(old)
        {
            new = Some((newh.clone(), "--hostname".to_string()));
            used_host = true;
        }
        if new.is_none() {
            for (i, p) in paths.iter().enumerate() {
                if let Some(n) = p.apply(&v.value) {
                    new = Some((n, format!("--rewrite-path {}={}", p.old, p.new)));
                    used_paths[i] = true;
                    break;
                }
            }
        }
        let Some((new, rule)) = new else { continue };
        let Some(span) = v.span.clone() else {
            return Err(refused(
                format!(
                    "mailserver.cfg {} / {} holds `{}` in a form mailvault does not edit (CDATA, a comment or markup inside)",
                    v.section, v.name, v.value
                ),
                "leave out that rewrite and edit the value by hand after the migration",
            ));
        };
        if new == v.value {
            continue;
        }
        edits.push((span, new.clone()));
        rewrites.push(Rewrite {
            file: "mailserver.cfg".into(),
            section: v.section.clone(),
            variable: v.name.clone(),
            old: v.value.clone(),
            new,
            rule,
        });
    }
    if let Some((old, _)) = &host
        && !used_host
    {
        notes.push(format!(
            "--hostname: no value in mailserver.cfg equals `{old}`: nothing rewritten for it"
        ));
    }
    for (p, used) in paths.iter().zip(used_paths) {
        if !used {
            notes.push(format!(
                "--rewrite-path {}={}: no value in mailserver.cfg is `{}` or lies below it",
                p.old, p.new, p.old
            ));
        }
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| refused("mailserver.cfg is not UTF-8".into(), "edit it by hand"))?;
    let new = edit::replace_values(text, &edits).map_err(|e| {
        refused(
            format!("mailserver.cfg: {e}"),
            "leave out --hostname/--rewrite-path and edit it by hand",
        )
    })?;
    // What the server will load must still be a config file with the same
    // variables in the same places, only the rewritten values changed.
    let again = edit::variables("mailserver.cfg", new.as_bytes()).map_err(|e| {
        refused(
            format!("rewriting would break mailserver.cfg: {e}"),
            "edit it by hand",
        )
    })?;
    if again.len() != vars.len() {
        return Err(refused(
            "rewriting would change mailserver.cfg's structure".into(),
            "edit it by hand",
        ));
    }
    Ok((rewrites, new.into_bytes()))
}

/// Carries out a planned migration and verifies the result.
///
/// # Errors
/// The restore failed (nothing is left in an empty target: it is as
/// before), a copy failed (the files written so far are complete; what was
/// moved aside is listed in the error), I/O on the target.
pub fn execute(m: Migration, progress: &dyn Progress) -> Result<MigrateReport> {
    let t0 = Instant::now();
    let Migration {
        request,
        plan,
        how,
        cfg_edit,
        target_existed,
    } = m;
    let to = request.to.clone();
    let mut report = MigrateReport {
        not_migrated: plan.not_migrated.clone(),
        notes: plan.notes.clone(),
        ..MigrateReport::default()
    };
    let mut placer = Placer {
        to: to.clone(),
        aside: plan.target.displaced_dir.clone(),
        displaced: Vec::new(),
    };
    let forced = !plan.target.empty;
    // A forced target is locked for the whole run (an empty one by the
    // restore, or below, by the copy).
    let lock_existed = to.join(LOCK_FILE).exists();
    let _lock = if forced {
        Some(InstallLock::take(&to)?)
    } else {
        None
    };
    let (files, source_mail) = match how {
        How::Backups {
            prepared,
            files,
            mail,
            staging,
        } => {
            let opts = ExecuteOptions {
                safety: None,
                running: request.running.clone(),
                force: true,
            };
            let r = mailvault_recover::execute(*prepared, &opts, progress)?;
            report.written = r.written;
            report.bytes = r.bytes;
            report.notes.extend(r.notes.iter().cloned());
            for n in &r.not_restored {
                report.not_migrated.push(NotMigrated {
                    path: n.path.clone(),
                    reason: n.reason.clone(),
                });
            }
            for p in r.passed_over.iter().filter(|p| p.damaged) {
                report.notes.push(format!(
                    "passed over {} ({}): an older backup was migrated",
                    p.stem, p.reason
                ));
            }
            for p in &r.problems {
                report.notes.push(format!("damage: {p}"));
            }
            let base = staging.as_deref().unwrap_or(&to);
            report.index_rebuilt = r
                .index_bad
                .iter()
                .map(|p| {
                    p.strip_prefix(base)
                        .unwrap_or(p)
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            if let Some(st) = &staging {
                move_from_staging(st, &mut placer).map_err(|e| with_displaced(e, &placer))?;
            }
            (files, mail)
        }
        How::Install { dir, dirs, files } => {
            let copied = copy_install(&dir, &dirs, files, &mut placer, progress, &mut report);
            let files = match copied {
                Ok(f) => f,
                Err(e) => {
                    if !forced {
                        undo_new_target(&to, target_existed);
                    }
                    return Err(with_displaced(e, &placer));
                }
            };
            let mail = inventory(&mut LiveStore::new(dir.join("store")), &[])?;
            (files, mail)
        }
    };
    report.displaced = std::mem::take(&mut placer.displaced);
    if let Some((original, new)) = &cfg_edit {
        let path = to.join("mailserver.cfg");
        let now = fs::read(&path).map_err(Error::io("cannot read", &path))?;
        if now != *original {
            return Err(refused(
                format!(
                    "`{}` is not the source's mailserver.cfg after the migration: not rewritten",
                    path.display()
                ),
                "check the target; run the migration again onto an empty directory",
            ));
        }
        let perms = fs::metadata(&path)
            .map_err(Error::io("cannot read", &path))?
            .permissions();
        replace_file(&path, new)?;
        fs::set_permissions(&path, perms).map_err(Error::io("cannot write", &path))?;
        report.rewrites.clone_from(&plan.rewrites);
    }
    if forced && !lock_existed {
        drop(_lock);
        let _ = fs::remove_file(to.join(LOCK_FILE));
    }
    verify(
        &to,
        &files,
        &source_mail,
        cfg_edit.as_ref(),
        progress,
        &mut report,
    )?;
    report.plan = plan;
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

fn with_displaced(e: Error, placer: &Placer) -> Error {
    if placer.displaced.is_empty() {
        return e;
    }
    let dir = placer
        .aside
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    Error::Refused {
        reason: format!(
            "the migration stopped: {e}; {} things that were in the way are in `{dir}`",
            placer.displaced.len()
        ),
        hint: "nothing was removed: fix the cause and run the migration again with --force, or move the displaced files back by hand".into(),
    }
}

/// A failed copy onto a new or empty target leaves it as it was: all that
/// is in it is this run's.
fn undo_new_target(to: &Path, existed: bool) {
    if let Ok(rd) = fs::read_dir(to) {
        for e in rd.flatten() {
            let p = e.path();
            let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
    if !existed {
        let _ = fs::remove_dir(to);
    }
}

/// Puts files into the target, never over anything: what is in the way is
/// moved aside first.
struct Placer {
    to: PathBuf,
    aside: Option<PathBuf>,
    displaced: Vec<Displaced>,
}

impl Placer {
    /// Moves whatever is at `rel` (or blocks a parent directory of it) out
    /// of the way, then makes the parent directories.
    fn clear(&mut self, rel: &str) -> Result<PathBuf> {
        let dest =
            enclosed_path(&self.to, rel).map_err(|e| Error::Invalid(format!("`{rel}`: {e}")))?;
        while let Some(block) = in_the_way(&self.to, rel)? {
            self.move_aside(&block)?;
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
        }
        Ok(dest)
    }

    fn move_aside(&mut self, rel: &str) -> Result<()> {
        let Some(aside) = &self.aside else {
            return Err(refused(
                format!("`{}` appeared in the target while migrating", rel),
                "run again with --force, or onto an empty directory",
            ));
        };
        let from = enclosed_path(&self.to, rel).map_err(|e| Error::Invalid(e.to_string()))?;
        let now = enclosed_path(aside, rel).map_err(|e| Error::Invalid(e.to_string()))?;
        if let Some(p) = now.parent() {
            fs::create_dir_all(p).map_err(Error::io("cannot create", p))?;
        }
        if now.exists() {
            return Err(refused(
                format!("`{}` is already taken", now.display()),
                "run again (a new displaced directory is used)",
            ));
        }
        fs::rename(&from, &now).map_err(Error::io("cannot move aside", &from))?;
        self.displaced.push(Displaced {
            path: rel.to_string(),
            now,
        });
        Ok(())
    }

    /// Links `tmp` (a complete, synced file beside the destination or in
    /// the staging area) to `rel`, never replacing, then removes `tmp`.
    fn link(&mut self, tmp: &Path, rel: &str) -> Result<()> {
        let dest = self.clear(rel)?;
        match fs::hard_link(tmp, &dest) {
            Ok(()) => fs::remove_file(tmp).map_err(Error::io("cannot remove", tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(refused(
                format!(
                    "`{}` appeared while migrating: not replaced",
                    dest.display()
                ),
                "stop whatever writes into the target and run again",
            )),
            Err(e) => Err(Error::io("cannot create", &dest)(e)),
        }
    }
}

/// A forced migration from backups: the restore went to the staging area
/// inside the target; each file it wrote (the index.bad of a folder it
/// could not restore whole too) is linked into place from there, then the
/// emptied directories are removed (never a file).
fn move_from_staging(staging: &Path, placer: &mut Placer) -> Result<()> {
    let mut staged = Vec::new();
    for e in walkdir::WalkDir::new(staging).follow_links(false) {
        let e = e.map_err(|e| Error::Unreadable {
            path: e
                .path()
                .map_or_else(|| staging.to_path_buf(), Path::to_path_buf),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
        })?;
        if e.file_type().is_file()
            && let Some(rel) = e.path().strip_prefix(staging).ok().and_then(Path::to_str)
        {
            staged.push((e.path().to_path_buf(), rel.to_string()));
        }
    }
    for (from, rel) in staged {
        placer.link(&from, &rel)?;
    }
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(staging)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_dir())
        .map(walkdir::DirEntry::into_path)
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = fs::remove_dir(&d);
    }
    Ok(())
}

/// Copies a live install's files (each to a temporary beside its place,
/// synced, mtime and permissions kept, then linked in) and directories.
/// Returns the files with the CRC-32 of what was copied.
fn copy_install(
    dir: &Path,
    dirs: &[String],
    files: Vec<SourceFile>,
    placer: &mut Placer,
    progress: &dyn Progress,
    report: &mut MigrateReport,
) -> Result<Vec<SourceFile>> {
    fs::create_dir_all(&placer.to).map_err(Error::io("cannot create", &placer.to))?;
    let lock = if placer.aside.is_none() {
        Some(InstallLock::take(&placer.to)?)
    } else {
        None
    };
    progress.start(
        "copying",
        files.len() as u64,
        files.iter().map(|f| f.size).sum(),
    );
    for d in dirs {
        let p = enclosed_path(&placer.to, d).map_err(|e| Error::Invalid(e.to_string()))?;
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                placer.clear(d)?;
                fs::create_dir(&p).map_err(Error::io("cannot create", &p))?;
            }
            Err(_) => {
                placer.clear(d)?;
                fs::create_dir_all(&p).map_err(Error::io("cannot create", &p))?;
            }
        }
    }
    let mut out = Vec::with_capacity(files.len());
    let mut buf = vec![0u8; 256 << 10];
    let mut synced_dirs = BTreeSet::new();
    for f in files {
        let src = enclosed_path(dir, &f.rel).map_err(|e| Error::Invalid(e.to_string()))?;
        let dest = placer.clear(&f.rel)?;
        let parent = dest
            .parent()
            .map_or_else(|| placer.to.clone(), Path::to_path_buf);
        let tmp = parent.join(format!(".mailvault-migrate-tmp-{}", std::process::id()));
        let copied = copy_file(&src, &tmp, &mut buf);
        let (size, crc) = match copied {
            Ok(x) => x,
            Err(CopyError::Vanished) => {
                let _ = fs::remove_file(&tmp);
                report.not_migrated.push(NotMigrated {
                    path: f.rel.clone(),
                    reason: "vanished from the source while copying".into(),
                });
                continue;
            }
            Err(CopyError::Source(e)) => {
                let _ = fs::remove_file(&tmp);
                return Err(Error::Unreadable {
                    path: src,
                    source: e,
                });
            }
            Err(CopyError::Target(e)) => {
                let _ = fs::remove_file(&tmp);
                return Err(Error::io("cannot write", &tmp)(e));
            }
        };
        if let Err(e) = placer.link(&tmp, &f.rel) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        synced_dirs.insert(parent);
        report.written += 1;
        report.bytes += size;
        progress.inc(1, size);
        out.push(SourceFile {
            rel: f.rel,
            size,
            crc: Some(crc),
        });
    }
    // The links (directory entries) are durable too before the report says so.
    for d in &synced_dirs {
        if let Ok(h) = fs::File::open(d) {
            let _ = h.sync_all();
        }
    }
    progress.finish();
    if let Some(l) = lock {
        drop(l);
        let _ = fs::remove_file(placer.to.join(LOCK_FILE));
    }
    Ok(out)
}

enum CopyError {
    Vanished,
    Source(std::io::Error),
    Target(std::io::Error),
}

/// Copies `src` to a new `tmp` (mtime, permissions and, as root, owner
/// kept), synced; returns its size and CRC-32.
fn copy_file(src: &Path, tmp: &Path, buf: &mut [u8]) -> std::result::Result<(u64, u32), CopyError> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let mut input = match fs::File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CopyError::Vanished),
        Err(e) => return Err(CopyError::Source(e)),
    };
    let meta = input.metadata().map_err(CopyError::Source)?;
    let _ = fs::remove_file(tmp);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(CopyError::Target)?;
    let mut h = crc32fast::Hasher::new();
    let mut size = 0u64;
    loop {
        let n = match input.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Source(e)),
        };
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(CopyError::Target)?;
        size += n as u64;
    }
    let _ = std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid()));
    out.set_permissions(meta.permissions())
        .map_err(CopyError::Target)?;
    out.set_modified(meta.modified().map_err(CopyError::Source)?)
        .map_err(CopyError::Target)?;
    out.sync_all().map_err(CopyError::Target)?;
    Ok((size, h.finalize()))
}

/// Compares the target with the source: every file (size, CRC-32), the
/// config files, and per mailbox the folders and items.
fn verify(
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

    #[test]
    fn path_rewrites_match_whole_components() {
        let r: PathRewrite = "/opt/kerio/mailserver/=/srv/kerio".parse().unwrap();
        assert_eq!(r.old, "/opt/kerio/mailserver");
        assert_eq!(
            r.apply("/opt/kerio/mailserver").as_deref(),
            Some("/srv/kerio")
        );
        assert_eq!(
            r.apply("/opt/kerio/mailserver/store/backup").as_deref(),
            Some("/srv/kerio/store/backup")
        );
        assert_eq!(r.apply("/opt/kerio/mailserver2/store"), None);
        assert_eq!(r.apply("x/opt/kerio/mailserver"), None);
        for bad in ["/opt", "=/x", "/x=", "/=/srv"] {
            assert!(bad.parse::<PathRewrite>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames_are_checked() {
        let h: HostnameChange = "mail.old.cz=mail.new.cz".parse().unwrap();
        assert_eq!(h.old.as_deref(), Some("mail.old.cz"));
        assert_eq!(h.new, "mail.new.cz");
        assert!("mail new".parse::<HostnameChange>().is_err());
        assert!("a=".parse::<HostnameChange>().is_err());
    }
}
