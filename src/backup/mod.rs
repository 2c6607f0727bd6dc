//! `mailvault backup`: scan the install, plan (F/D/C, base, what to store),
//! write the volumes, commit them under their final names, then rotate.
//!
//! [`plan_backup`] computes the plan without writing anything (`--dry-run`);
//! [`run_backup`] takes the backup directory's lock, removes leftovers of
//! interrupted runs, plans, writes and rotates, and returns a [`BackupSummary`].

pub mod plan;
mod replicate;
pub mod scan;
pub mod volume;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use mailvault_formats::summary::Totals;
use mailvault_formats::{ArchiveKind, Skipped, VersionInfo};
use serde::Serialize;

pub use plan::{Action, BackupPlan};
pub use scan::InstallPaths;
pub use volume::Compression;

use mailvault_repo::Repository;
use mailvault_repo::repository::Listing;
use mailvault_repo::storage::{LocalDir, Lock, LockMode, Storage};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::rotation::{self, RotationOptions, RotationPlan};

/// Smallest split size accepted: room for `.version.txt`, one small entry and `.summary.txt`.
pub const MIN_SPLIT: u64 = 64 * 1024;

/// What to back up, where, and how.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The Kerio Connect install directory.
    pub install_dir: PathBuf,
    /// Where archives go.
    pub backup_dir: PathBuf,
    /// Full, differential or copy.
    pub kind: ArchiveKind,
    /// Volume size limit in bytes.
    pub split_size: u64,
    /// Compression of `@backup/` entries.
    pub compression: Compression,
    /// Compression level (`None`: the method's default).
    pub level: Option<i64>,
    /// Compare CRCs too when deciding what a differential stores.
    pub verify_content: bool,
    /// List unreadable files as skipped instead of failing.
    pub skip_unreadable: bool,
    /// Rotation after a successful backup.
    pub rotation: RotationOptions,
    /// Compression threads (0: one per core).
    pub threads: usize,
    /// Host name recorded in `.version.txt` (`None`: this machine's).
    pub host: Option<String>,
    /// The store, when not `<install_dir>/store` (Kerio's `-s`).
    pub store_dir: Option<PathBuf>,
    /// Back up only these install-relative roots (files or directories).
    pub only: Option<Vec<String>>,
    /// Extra `note:` lines for `.summary.txt`.
    pub notes: Vec<String>,
    /// Where archives go when not `backup_dir` (a remote or encrypted
    /// target); `backup_dir` is then only left out of the backup, or, with
    /// `keep_local`, written first and copied to the target.
    pub target: Option<Arc<dyn Storage>>,
    /// With a target: write the backup into `backup_dir` as well, copy it
    /// to the target and verify the copy, keeping the local one.
    pub keep_local: bool,
}

impl BackupOptions {
    /// Defaults for `kind` with Kerio's paths under `install_dir`.
    #[must_use]
    pub fn new(kind: ArchiveKind, install_dir: impl Into<PathBuf>) -> Self {
        let install_dir = install_dir.into();
        Self {
            backup_dir: install_dir.join("store").join("backup"),
            install_dir,
            kind,
            split_size: 2 << 30,
            compression: Compression::Deflate,
            level: None,
            verify_content: false,
            skip_unreadable: false,
            rotation: RotationOptions::default(),
            threads: 0,
            host: None,
            store_dir: None,
            only: None,
            notes: Vec::new(),
            target: None,
            keep_local: false,
        }
    }

    /// The repository the backup is written into first: the target, or
    /// the local backup directory (always, with `keep_local`).
    #[must_use]
    pub fn repository(&self) -> Repository {
        match &self.target {
            Some(t) if !self.keep_local => Repository::from_arc(Arc::clone(t)),
            _ => Repository::new(LocalDir::new(&self.backup_dir)),
        }
    }
}

/// What a finished backup did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    /// First volume's file name.
    pub archive: String,
    /// What was written.
    #[serde(rename = "type")]
    pub kind: String,
    /// What was asked for.
    pub requested: String,
    /// Base full of a differential.
    pub base: Option<String>,
    /// Where the volumes are, under their final names (paths, or URLs on a target).
    pub volumes: Vec<String>,
    /// With `--keep-local`: the verified copies on the target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copied: Vec<String>,
    /// With `--keep-local`: rotation applied on the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rotation: Option<RotationPlan>,
    /// Files stored in this archive.
    pub files: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Bytes of all volumes.
    pub bytes_out: u64,
    /// Files in the backed-up state.
    pub state_files: u64,
    /// Files unchanged since the base (differential).
    pub unchanged: u64,
    /// Files deleted since the base (differential).
    pub deleted: u64,
    /// Left out, with reasons.
    pub skipped: Vec<SkippedItem>,
    /// Remarks.
    pub notes: Vec<String>,
    /// Skips that are problems (non-zero exit).
    pub problems: usize,
    /// Wall time.
    pub seconds: f64,
    /// Leftovers of interrupted runs that were removed first.
    pub removed_leftovers: Vec<String>,
    /// What rotation deleted.
    pub rotation: RotationPlan,
}

/// A skipped item in JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedItem {
    /// Reason token.
    pub reason: String,
    /// Install-relative path.
    pub path: String,
}

impl From<&Skipped> for SkippedItem {
    fn from(s: &Skipped) -> Self {
        Self {
            reason: s.reason.to_string(),
            path: s.path.clone(),
        }
    }
}

impl BackupOptions {
    /// Where the install's parts are.
    #[must_use]
    pub fn paths(&self) -> InstallPaths {
        let mut p = InstallPaths::new(&self.install_dir);
        if let Some(s) = &self.store_dir {
            p.store.clone_from(s);
        }
        p
    }
}

fn check(opts: &BackupOptions) -> Result<()> {
    if opts.split_size < MIN_SPLIT {
        return Err(Error::Invalid(format!(
            "--split-size must be at least {} (64K)",
            MIN_SPLIT
        )));
    }
    Ok(())
}

/// Computes the plan without writing anything (no lock, no cleanup).
///
/// # Errors
/// The install cannot be scanned or the backup directory cannot be listed.
pub fn plan_backup(opts: &BackupOptions, now: DateTime<Utc>) -> Result<BackupPlan> {
    check(opts)?;
    let scan = scan::scan(
        &opts.paths(),
        &opts.backup_dir,
        opts.skip_unreadable,
        opts.only.as_deref(),
    )?;
    let repo = opts.repository();
    let listing = if repo.storage().exists()? {
        repo.listing_at(now)?
    } else {
        Listing::default()
    };
    Ok(plan::make_plan(
        opts.kind,
        now,
        &opts.paths(),
        scan,
        repo.storage(),
        &listing,
        opts.verify_content,
    ))
}

/// Runs a backup end to end: the install is checked first (nothing is
/// created for a directory that is not an install), then the backup
/// directory is created if needed, locked, cleaned of leftovers, and the
/// backup planned, written, committed and rotated. A run that fails leaves
/// no new backup directory behind.
///
/// # Errors
/// Any hard failure; nothing is left under a final name, and temporaries are removed.
pub fn run_backup(opts: &BackupOptions, progress: &dyn Progress) -> Result<BackupSummary> {
    check(opts)?;
    scan::check_install(&opts.paths())?;
    let repo = opts.repository();
    let created = repo.storage().create_root()?;
    // Refused by another run: its directory, whoever made it, is left alone.
    let lock = repo.lock(LockMode::Exclusive, &format!("backup {}", opts.kind))?;
    let result = locked_backup(opts, &repo, &lock, progress);
    if result.is_err() && created {
        // Still holding the lock: nobody else is using the directory.
        let _ = repo.storage().remove_root_if_empty();
    }
    drop(lock);
    let mut summary = result?;
    if let (Some(target), true) = (&opts.target, opts.keep_local) {
        let target = Repository::from_arc(Arc::clone(target));
        let stem = summary
            .archive
            .parse::<mailvault_formats::ArchiveName>()
            .map(|n| n.stem())
            .unwrap_or_default();
        // A differential goes with its base: a target that missed the full
        // (an earlier copy failed) gets it first, so no differential there
        // is ever an orphan.
        let mut sets = Vec::new();
        if let Some(base) = &summary.base
            && let Some(set) = replicate::set_names(&repo, base)?
        {
            sets.push(set);
        }
        match replicate::set_names(&repo, &stem)? {
            Some(set) => sets.push(set),
            None => {
                return Err(Error::Invalid(format!(
                    "the backup {stem} just written is not in `{}`",
                    opts.backup_dir.display()
                )));
            }
        }
        let (copied, lock) = replicate::replicate(
            &repo,
            &target,
            &sets,
            &format!("backup {} (copy)", opts.kind),
            progress,
        )?;
        summary.copied = copied
            .iter()
            .map(|n| volume_place(target.storage(), n))
            .collect();
        if opts.rotation.is_active() {
            let rp = rotation::plan(target.listing()?.sets, opts.rotation, Some(&stem));
            rotation::apply(&target, &lock, &rp)?;
            summary.target_rotation = Some(rp);
        }
    }
    Ok(summary)
}

fn locked_backup(
    opts: &BackupOptions,
    repo: &Repository,
    lock: &Lock,
    progress: &dyn Progress,
) -> Result<BackupSummary> {
    let t0 = Instant::now();
    let removed_leftovers = repo.remove_leftovers(lock)?;

    progress.start("scanning", 0, 0);
    let now = Utc::now();
    let scan = scan::scan(
        &opts.paths(),
        &opts.backup_dir,
        opts.skip_unreadable,
        opts.only.as_deref(),
    )?;
    let listing = repo.listing_at(now)?;
    let mut plan = plan::make_plan(
        opts.kind,
        now,
        &opts.paths(),
        scan,
        repo.storage(),
        &listing,
        opts.verify_content,
    );
    plan.notes.extend(opts.notes.iter().cloned());
    progress.finish();

    let (store_files, store_bytes) = plan.to_store();
    let version = VersionInfo {
        format_version: mailvault_formats::FORMAT_VERSION,
        tool: format!("mailvault {}", env!("CARGO_PKG_VERSION")),
        kind: plan.name.kind,
        requested: (plan.requested != plan.name.kind).then_some(plan.requested),
        started: plan.name.started,
        host: opts.host.clone().unwrap_or_else(host_name),
        source: opts
            .install_dir
            .canonicalize()
            .unwrap_or_else(|_| opts.install_dir.clone())
            .display()
            .to_string(),
        base: plan.base.as_ref().map(|b| b.stem.clone()),
        volume: 0,
        scope: opts.only.clone().unwrap_or_default(),
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, usize::from)
    } else {
        opts.threads
    };
    let mut volumes =
        volume::VolumeWriter::new(repo, version, opts.split_size, opts.compression, opts.level)?;

    progress.start("writing", store_files, store_bytes);
    let written = writer::write_items(
        &plan,
        &mut volumes,
        opts.compression,
        opts.level,
        opts.skip_unreadable,
        threads,
        progress,
    )?;
    progress.finish();

    let mut skipped = plan.skipped.clone();
    skipped.extend(written.skipped.iter().cloned());
    let state_files = written.state_files;
    let totals = Totals {
        volumes: 0,
        files: 0,
        bytes: 0,
        state_files,
        state_bytes: written.state_bytes,
        from_base: plan.unchanged(),
        deleted: plan.deleted.len() as u64,
    };
    let (files, bytes_in) = (volumes.files, volumes.bytes);
    let finished = volumes.finish(&written.catalog, totals, &plan.notes, &skipped)?;
    let bytes_out = finished.compressed();
    let final_names = finished.commit(lock)?;

    let stem = plan.name.stem();
    let rotation = if opts.rotation.is_active() {
        let rp = rotation::plan(repo.listing()?.sets, opts.rotation, Some(&stem));
        rotation::apply(repo, lock, &rp)?;
        rp
    } else {
        RotationPlan::default()
    };

    Ok(BackupSummary {
        archive: plan.name.to_string(),
        kind: plan.name.kind.to_string(),
        requested: plan.requested.to_string(),
        base: plan.base.as_ref().map(|b| b.stem.clone()),
        volumes: final_names
            .iter()
            .map(|n| volume_place(repo.storage(), n))
            .collect(),
        files,
        bytes_in,
        bytes_out,
        state_files,
        unchanged: plan.unchanged(),
        deleted: plan.deleted.len() as u64,
        skipped: skipped.iter().map(SkippedItem::from).collect(),
        notes: plan.notes.clone(),
        problems: plan.problems + written.problems,
        seconds: t0.elapsed().as_secs_f64(),
        removed_leftovers,
        rotation,
        copied: Vec::new(),
        target_rotation: None,
    })
}

/// A volume's place for reports: a path, or a target URL (no backticks).
fn volume_place(storage: &dyn Storage, name: &str) -> String {
    storage.describe(name).trim_matches('`').to_string()
}

/// This machine's host name, for `.version.txt`.
#[must_use]
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
