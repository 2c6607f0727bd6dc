//! Turns a scan into a [`BackupPlan`]: which kind is written (a differential
//! with no usable full becomes a full, and says why), which base it builds on,
//! which files are stored and which are unchanged since the base (size and
//! mtime equal, or with `--verify-content` also the CRC-32), and which base
//! files were deleted since. Reads only the base's catalog, never old archive
//! content. `--dry-run` prints this plan; the writer carries it out.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use mailvault_formats::{ArchiveKind, ArchiveName, CatalogEntry, Location, Skipped};
use serde::Serialize;

use mailvault_repo::check;
use mailvault_repo::repository::Listing;
use mailvault_repo::storage::{Storage, TEMP_PREFIX};

use super::scan::{InstallPaths, Scan, SourceFile};

/// What happens to one scanned file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Its content goes into the new archive.
    Store,
    /// Unchanged since the base full: the catalog points there.
    Unchanged {
        /// CRC-32 recorded in the base catalog.
        crc32: u32,
    },
}

/// One file of the plan.
#[derive(Debug, Clone)]
pub struct PlanItem {
    /// The file.
    pub file: SourceFile,
    /// What to do with it.
    pub action: Action,
}

/// The base full of a differential.
#[derive(Debug, Clone, Serialize)]
pub struct BaseRef {
    /// `F20261122T010000Z`.
    pub stem: String,
    /// Its first volume.
    pub path: PathBuf,
}

/// Everything a backup will do, computed before anything is written.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    /// Where the install-relative item paths are.
    pub paths: InstallPaths,
    /// Name of the first volume to write.
    pub name: ArchiveName,
    /// What was asked for.
    pub requested: ArchiveKind,
    /// Base full, for a differential.
    pub base: Option<BaseRef>,
    /// Files in archive order.
    pub items: Vec<PlanItem>,
    /// Base files deleted since the base (differential only).
    pub deleted: Vec<CatalogEntry>,
    /// Left out, with reasons.
    pub skipped: Vec<Skipped>,
    /// Remarks for `.summary.txt`.
    pub notes: Vec<String>,
    /// How many skips are problems (they make the exit code non-zero).
    pub problems: usize,
}

impl BackupPlan {
    /// Files and bytes that will be stored.
    #[must_use]
    pub fn to_store(&self) -> (u64, u64) {
        self.items
            .iter()
            .filter(|i| i.action == Action::Store)
            .fold((0, 0), |(n, b), i| (n + 1, b + i.file.size))
    }

    /// Files left in the base.
    #[must_use]
    pub fn unchanged(&self) -> u64 {
        self.items
            .iter()
            .filter(|i| i.action != Action::Store)
            .count() as u64
    }
}

/// Picks the name of a new backup: its start time, but later than every
/// set already in the directory (a clock stepped back, or several backups
/// within one second), so that name order is chain order. Sets dated more
/// than a day ahead are not followed (a wrong clock or a stray file must
/// not push every future name to 2099; `list` warns about them), and no
/// existing name, temporary or not, is ever reused.
pub(crate) fn free_name(kind: ArchiveKind, now: DateTime<Utc>, listing: &Listing) -> ArchiveName {
    let names = &listing.names;
    let newest = listing
        .sets
        .iter()
        .filter(|s| !s.in_future && s.set.name.started <= now + mailvault_repo::set::FUTURE_SLACK)
        .map(|s| s.set.name.started)
        .max();
    let mut start = ArchiveName::new(kind, now).started;
    if let Some(n) = newest.filter(|n| *n >= start) {
        start = n + chrono::Duration::seconds(1);
    }
    let mut name = ArchiveName::new(kind, start);
    let taken = |n: &ArchiveName| {
        let stem = n.stem();
        names
            .iter()
            .any(|x| x.strip_prefix(TEMP_PREFIX).unwrap_or(x).starts_with(&stem))
    };
    while taken(&name) {
        name = ArchiveName::new(kind, name.started + chrono::Duration::seconds(1));
    }
    name
}

/// Builds the plan for `requested` from a scan and the backup directory's
/// listing. Only the base full is read (checked as a restore would check
/// it, catalog included), never old archive content.
pub(crate) fn make_plan(
    requested: ArchiveKind,
    now: DateTime<Utc>,
    paths: &InstallPaths,
    scan: Scan,
    storage: &dyn Storage,
    listing: &Listing,
    verify_content: bool,
) -> BackupPlan {
    let Scan {
        files,
        skipped,
        mut notes,
        problems,
    } = scan;
    let mut base = None;
    let mut kind = requested;
    let mut deleted = Vec::new();
    let mut items: Vec<PlanItem> = Vec::with_capacity(files.len());

    // The newest backup that can start a chain (F or C), whatever its state
    // (a damaged newest full must not make the differential use an older one).
    let newest = listing.backups().rev().find(|s| {
        s.set.name.kind.is_complete()
                && !s.in_future
                && s.set.volumes.contains_key(&0)
                // A partial archive (a safety copy) is no base for the install.
                && s.version.as_ref().is_none_or(|v| v.scope.is_empty())
    });
    let base_catalog = match newest.filter(|_| requested == ArchiveKind::Differential) {
        None => {
            if requested == ArchiveKind::Differential {
                notes.push(format!(
                    "differential requested but `{}` holds no full backup: written as a full",
                    storage.location()
                ));
            }
            None
        }
        Some(info) if !info.status.is_complete() => {
            notes.push(format!(
                "differential requested but the newest full {} is not usable ({}): written as a full",
                info.set.stem(),
                info.status
            ));
            None
        }
        Some(info) => {
            let loaded = check::load(storage, info.clone(), None);
            match loaded.problems.first() {
                None if loaded.has_catalog => {
                    base = Some(BaseRef {
                        stem: info.set.stem(),
                        path: PathBuf::from(info.set.volume_name(0)),
                    });
                    Some(loaded.catalog)
                }
                first => {
                    notes.push(format!(
                        "differential requested but the newest full {} is not usable ({}): written as a full",
                        info.set.stem(),
                        first.map_or_else(|| "no catalog".to_string(), ToString::to_string)
                    ));
                    None
                }
            }
        }
    };
    if requested == ArchiveKind::Differential && base_catalog.is_none() {
        kind = ArchiveKind::Full;
    }

    match base_catalog {
        None => items.extend(files.into_iter().map(|file| PlanItem {
            file,
            action: Action::Store,
        })),
        Some(cat) => {
            let by_path: HashMap<&str, &CatalogEntry> =
                cat.state().map(|e| (e.path.as_str(), e)).collect();
            let mut seen: HashSet<&str> = HashSet::with_capacity(files.len());
            let mut candidates = Vec::new();
            for file in files {
                let action = match by_path.get(file.rel.as_str()) {
                    Some(e) if e.size == file.size && e.mtime == file.mtime => {
                        if verify_content {
                            candidates.push(items.len());
                        }
                        Action::Unchanged { crc32: e.crc32 }
                    }
                    _ => Action::Store,
                };
                if let Some((k, _)) = by_path.get_key_value(file.rel.as_str()) {
                    seen.insert(k);
                }
                items.push(PlanItem { file, action });
            }
            if verify_content {
                recheck_content(paths, &mut items, &candidates);
            }
            // What this run skipped (a disabled mailbox, an unreadable file)
            // is not known to be gone: it is not recorded as deleted.
            for e in cat.state() {
                if !seen.contains(e.path.as_str())
                    && !skipped
                        .iter()
                        .any(|s| mailvault_formats::layout::within(&e.path, &s.path))
                {
                    deleted.push(CatalogEntry {
                        location: Location::Deleted,
                        ..e.clone()
                    });
                }
            }
        }
    }
    let name = free_name(kind, now, listing);
    BackupPlan {
        paths: paths.clone(),
        name,
        requested,
        base,
        items,
        deleted,
        skipped,
        notes,
        problems,
    }
}

/// `--verify-content`: files whose size and mtime match the base are read and
/// their CRC-32 compared; a mismatch makes them stored after all. Runs on all cores.
fn recheck_content(paths: &InstallPaths, items: &mut [PlanItem], candidates: &[usize]) {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let chunk = candidates.len().div_ceil(threads).max(1);
    let changed: Vec<usize> = std::thread::scope(|s| {
        let items = &*items;
        let handles: Vec<_> = candidates
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .copied()
                        .filter(|&i| match items[i].action {
                            Action::Unchanged { crc32 } => {
                                crc_of(&paths.abs(&items[i].file.rel)) != Some(crc32)
                            }
                            Action::Store => false,
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for i in changed {
        items[i].action = Action::Store;
    }
}

fn crc_of(path: &std::path::Path) -> Option<u32> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            return Some(h.finalize());
        }
        h.update(&buf[..n]);
    }
}
