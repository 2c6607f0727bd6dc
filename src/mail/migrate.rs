//! `mailvault migrate`: moves a server onto a new install directory, from a
//! backup chain (through the restore library, exactly as `kmsrecover
//! --into` restores) or from a stopped live install (a file-by-file copy),
//! optionally rewrites the hostname and paths in `mailserver.cfg` (in
//! place, every other byte kept), then verifies the result against the
//! source: per mailbox the folders, items and bytes (both sides read as a
//! [`MailStore`](crate::mail::store::MailStore)), every file's size and CRC-32, and that the config files
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

mod copy;
mod rewrite;
mod verify;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mailvault_formats::SkipReason;
use mailvault_formats::layout::{CONFIG_DIRS, CONFIG_FILES};
use mailvault_recover::request::LOCK_FILE;
use mailvault_recover::{Destination, ExecuteOptions, Prepared, RestoreRequest, RunningCheck};
use mailvault_repo::PassedOver;
use serde::Serialize;

pub use copy::Displaced;
pub use rewrite::{HostnameChange, PathRewrite, Rewrite};
pub use verify::{ConfigCheck, FilesCheck, MailboxCheck};

use copy::{
    Placer, copy_install, in_the_way, move_from_staging, undo_new_target, walk_source,
    with_displaced,
};
use rewrite::rewrite_config;
use verify::{Inventory, inventory, verify};

use crate::error::{Error, Result};
use crate::mail::folder::{InstallLock, replace_file};
use crate::mail::store::{ChainStore, LiveStore};
use crate::progress::Progress;

/// The directory inside a forced target that receives what was in the way.
pub const DISPLACED_PREFIX: &str = "mailvault-migrate-displaced-";
/// Where a forced migration from backups restores before moving files into
/// the target (inside it, so the moves are renames on one filesystem).
pub const STAGING: &str = ".mailvault-migrate-staging";
/// Config files larger than this are not read for rewriting.
const MAX_CONFIG_BYTES: u64 = 64 << 20;

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

/// The install lock of a forced target, held for the whole run; its file
/// goes again when the run made it.
struct TargetLock {
    lock: Option<InstallLock>,
    made: Option<PathBuf>,
}

impl TargetLock {
    fn take(to: &Path) -> Result<Self> {
        let path = to.join(LOCK_FILE);
        let existed = fs::symlink_metadata(&path).is_ok();
        Ok(Self {
            lock: Some(InstallLock::take(to)?),
            made: (!existed).then_some(path),
        })
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        drop(self.lock.take());
        if let Some(p) = &self.made {
            let _ = fs::remove_file(p);
        }
    }
}

fn refused(reason: String, hint: &str) -> Error {
    Error::Refused {
        reason,
        hint: hint.to_string(),
    }
}

/// Refuses a target that is `source` or lies inside it.
fn not_within(to: &Path, source: &Path, what: &str) -> Result<()> {
    let (t, s) = (
        mailvault_recover::request::physical(to),
        mailvault_recover::request::physical(source),
    );
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
    // (A link to a directory is a deployment choice: followed.)
    match fs::metadata(to) {
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
    // Where the source is, before anything about the target's content: a
    // target inside the source is refused whatever it holds.
    let opened = match &request.source {
        MigrateSource::Backups { location, key, at } => {
            let source = mailvault_recover::source::open(location, key.as_deref(), *at)?;
            if let Some(dir) = &source.local_dir {
                not_within(to, dir, "the backup directory")?;
                // The backups never lie inside what a migration writes (a
                // forced target may be the server they came from).
                if mailvault_recover::request::physical(dir)
                    .starts_with(mailvault_recover::request::physical(to))
                {
                    return Err(Error::Usage(format!(
                        "the backup directory `{}` lies inside the target `{}`: copy the backups outside the new install directory (e.g. /srv/backups) and give that with --from",
                        dir.display(),
                        to.display()
                    )));
                }
            }
            Some(source)
        }
        MigrateSource::Install(dir) => {
            check_install_source(dir, to)?;
            None
        }
    };
    let staging = to.join(STAGING);
    if fs::symlink_metadata(&staging).is_ok() {
        return Err(refused(
            format!(
                "`{}` is left from an interrupted migration",
                staging.display()
            ),
            "it holds only copies that run made: remove it and run again",
        ));
    }
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
    let (how, cfg_source) = match (&request.source, opened) {
        (MigrateSource::Backups { .. }, Some(source)) => {
            plan_backups(&request, source, &entries, &mut plan)?
        }
        (MigrateSource::Install(dir), _) => plan_install(&request, dir, &mut plan)?,
        (MigrateSource::Backups { .. }, None) => {
            return Err(Error::Invalid("backups not opened".into()));
        }
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

fn plan_backups(
    request: &MigrateRequest,
    source: mailvault_recover::Source,
    entries: &[String],
    plan: &mut MigratePlan,
) -> Result<(How, Option<Vec<u8>>)> {
    let to = &request.to;
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
        location: source
            .repo
            .storage()
            .describe("")
            .trim_matches('`')
            .to_string(),
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
            // In place, a restore keeps such a mailbox; on a new server it
            // would be missing: not migrated, so not a complete migration.
            SkipReason::DisabledUser => plan.not_migrated.push(NotMigrated {
                path: s.path.clone(),
                reason: "a disabled user's mailbox, which backups leave out (as Kerio's do): enable the user before the final backup, or migrate with --from-install".into(),
            }),
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

/// A live source must exist, look like an install, and neither hold nor
/// lie inside the target.
fn check_install_source(dir: &Path, to: &Path) -> Result<()> {
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
    not_within(to, dir, "the source install")?;
    if mailvault_recover::request::physical(dir)
        .starts_with(mailvault_recover::request::physical(to))
    {
        return Err(Error::Usage(format!(
            "the source install `{}` lies inside the target `{}`: migrate onto a separate directory",
            dir.display(),
            to.display()
        )));
    }
    Ok(())
}

fn plan_install(
    request: &MigrateRequest,
    dir: &Path,
    plan: &mut MigratePlan,
) -> Result<(How, Option<Vec<u8>>)> {
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
    let _lock = if forced {
        Some(TargetLock::take(&to)?)
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
            if let Some(st) = &staging
                && let Err(e) = move_from_staging(st, &mut placer)
            {
                // Only this run's copies are left there.
                let _ = fs::remove_dir_all(st);
                return Err(with_displaced(e, &placer));
            }
            (files, mail)
        }
        How::Install { dir, dirs, files } => {
            // The lock before anything is written: a second migration into
            // the same new directory fails here, before its cleanup could
            // take the first one's files for its own.
            let lock = if forced {
                None
            } else {
                Some(InstallLock::take(&to)?)
            };
            let copied = copy_install(&dir, &dirs, files, lock, &mut placer, progress, &mut report);
            let files = match copied {
                Ok(f) => f,
                Err(e) => {
                    if forced {
                        // Only this run's copies are there.
                        let _ = fs::remove_dir_all(to.join(STAGING));
                    } else {
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
