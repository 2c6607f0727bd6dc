//! Chains: a complete backup (F or C) with the differentials whose `base:`
//! names it.
//!
//! - [`group`] arranges a listing into chains for `list` and rotation;
//! - [`resolve`] finds what a restore reads: the newest *usable* state in a
//!   repository (or the one at a time, or the one named by a file), loaded
//!   and checked with [`crate::check::load`], passing over (and naming)
//!   whatever is not a usable backup;
//! - [`RestoreChain::state`] is the complete state to restore, each file with
//!   where its content is; [`ChainReader`] reads one file of it, CRC-checked
//!   against the catalog (salvage reads volumes whose central directory is
//!   gone by their local headers).

use std::collections::HashMap;
use std::io::BufReader;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mailvault_formats::layout::{self, CATALOG_ENTRY};
use mailvault_formats::limits::CatalogBound;
use mailvault_formats::{
    ArchiveKind, ArchiveName, Catalog, CatalogEntry, Location, Mtime, RelPath, Skipped,
};
use serde::Serialize;

use crate::check::{LoadedSet, load};
use crate::error::{Error, PassedOver, Problem, ProblemKind, Result};
use crate::reader::Volume;
use crate::repository::{Listing, Repository};
use crate::salvage::{self, Found};
use crate::set::{Flavor, SetInfo, SetStatus};
use crate::storage::Storage;

/// A full (or copy) and its differentials, oldest first.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The F or C that starts the chain.
    pub base: SetInfo,
    /// Differentials based on it, oldest first.
    pub differentials: Vec<SetInfo>,
}

impl Chain {
    /// Every set of the chain, base first.
    pub fn sets(&self) -> impl Iterator<Item = &SetInfo> {
        std::iter::once(&self.base).chain(self.differentials.iter())
    }
}

/// Chains, orphans and what is not a backup.
#[derive(Debug, Clone, Default)]
pub struct Chains {
    /// Chains, oldest first.
    pub chains: Vec<Chain>,
    /// Differentials whose base is not in the repository.
    pub orphans: Vec<SetInfo>,
    /// Leftovers of interrupted runs and files that are not backups.
    pub other: Vec<SetInfo>,
}

/// Groups a listing's sets into chains.
#[must_use]
pub fn group(sets: Vec<SetInfo>) -> Chains {
    let mut out = Chains::default();
    for info in sets {
        if !info.status.is_backup() {
            out.other.push(info);
            continue;
        }
        if info.set.name.kind.is_complete() {
            out.chains.push(Chain {
                base: info,
                differentials: Vec::new(),
            });
            continue;
        }
        let base = info.base().map(str::to_string);
        match base.and_then(|b| out.chains.iter_mut().rev().find(|c| c.base.set.stem() == b)) {
            Some(chain) => chain.differentials.push(info),
            None => out.orphans.push(info),
        }
    }
    out
}

/// Which state to restore.
#[derive(Debug, Clone)]
pub enum Pick {
    /// The newest usable backup in the repository.
    Newest,
    /// The newest usable backup started at or before this time.
    At(DateTime<Utc>),
    /// This archive (any of its volumes' names).
    Archive(String),
}

/// Which set of a restore chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetRole {
    /// The F or C.
    Full,
    /// The differential on top.
    Differential,
}

/// One file of the state to restore.
#[derive(Debug, Clone)]
pub struct StateFile {
    /// Path, size, mtime, CRC-32 (from the catalog).
    pub entry: CatalogEntry,
    /// Which set holds the content.
    pub role: SetRole,
    /// Which volume of that set.
    pub volume: u32,
}

/// A file of the state that cannot be restored (salvage), with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unrestorable {
    /// Install-relative path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What a restore reads: a full plus at most one differential, loaded and checked.
#[derive(Debug, Clone)]
pub struct RestoreChain {
    /// The F or C.
    pub full: LoadedSet,
    /// The differential on top, if any.
    pub differential: Option<LoadedSet>,
    /// Newer sets passed over, with why.
    pub passed: Vec<PassedOver>,
    /// Whether this chain is read in salvage mode.
    pub salvaging: bool,
    /// Salvage: entries of unreadable volumes found by their local headers.
    scanned: HashMap<(SetRole, u32), Arc<HashMap<String, Found>>>,
    storage: Arc<dyn Storage>,
}

impl RestoreChain {
    /// A set by role (the full when there is no differential).
    #[must_use]
    pub fn set(&self, role: SetRole) -> &LoadedSet {
        match role {
            SetRole::Differential => self.differential.as_ref().unwrap_or(&self.full),
            SetRole::Full => &self.full,
        }
    }

    /// The newest set of the chain.
    #[must_use]
    pub fn newest(&self) -> &LoadedSet {
        self.differential.as_ref().unwrap_or(&self.full)
    }

    /// First-volume names, full first.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        std::iter::once(&self.full)
            .chain(self.differential.as_ref())
            .map(|s| s.name().to_string())
            .collect()
    }

    /// Every problem found in the chain's sets.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        std::iter::once(&self.full)
            .chain(self.differential.as_ref())
            .flat_map(|s| s.problems.iter())
    }

    /// Whether the chain's catalogs prove what was absent at backup time:
    /// mailvault archives, catalogs read and consistent, nothing wrong, not
    /// salvaging. Only then may a restore remove anything live.
    #[must_use]
    pub fn proves_absence(&self) -> bool {
        !self.salvaging
            && std::iter::once(&self.full)
                .chain(self.differential.as_ref())
                .all(|s| s.has_catalog && s.is_intact() && s.info.flavor == Flavor::Mailvault)
    }

    /// What the backup left out (disabled users, unreadable files…), from
    /// the newest set's summary.
    #[must_use]
    pub fn skipped(&self) -> Vec<Skipped> {
        self.newest()
            .info
            .summary
            .as_ref()
            .map(|s| s.skipped.clone())
            .unwrap_or_default()
    }

    /// The install-relative roots a partial archive (a safety copy) covers;
    /// empty for a whole install.
    #[must_use]
    pub fn scope(&self) -> Vec<String> {
        self.newest()
            .info
            .version
            .as_ref()
            .map(|v| v.scope.clone())
            .unwrap_or_default()
    }

    /// The complete state at the chain's time, each file with where its
    /// content is, and (salvaging) the files that cannot be restored.
    ///
    /// # Errors
    /// Not salvaging: a differential's catalog points at its base for a file
    /// the base does not hold.
    pub fn state(&self) -> Result<(Vec<StateFile>, Vec<Unrestorable>)> {
        let mut lost = Vec::new();
        let in_set =
            |role: SetRole, e: &CatalogEntry, lost: &mut Vec<Unrestorable>| -> Option<StateFile> {
                let Location::Volume(v) = e.location else {
                    return None;
                };
                let set = self.set(role);
                if !set.info.set.volumes.contains_key(&v) {
                    lost.push(Unrestorable {
                        path: e.path.to_string(),
                        reason: format!("volume {} is missing", set.info.set.volume_name(v)),
                    });
                    return None;
                }
                Some(StateFile {
                    entry: e.clone(),
                    role,
                    volume: v,
                })
            };
        let Some(diff) = &self.differential else {
            let files = self
                .full
                .catalog
                .state()
                .filter_map(|e| in_set(SetRole::Full, e, &mut lost))
                .collect();
            return Ok((files, lost));
        };
        let full_rows: HashMap<&str, &CatalogEntry> = self
            .full
            .catalog
            .state()
            .map(|e| (e.path.as_str(), e))
            .collect();
        if !diff.has_catalog && diff.info.flavor == Flavor::Kerio {
            // A Kerio differential: its files laid over its base.
            let mut out: std::collections::BTreeMap<&str, StateFile> =
                std::collections::BTreeMap::new();
            for e in self.full.catalog.state() {
                if let Some(f) = in_set(SetRole::Full, e, &mut lost) {
                    out.insert(e.path.as_str(), f);
                }
            }
            for e in diff.catalog.state() {
                if let Some(f) = in_set(SetRole::Differential, e, &mut lost) {
                    out.insert(e.path.as_str(), f);
                }
            }
            return Ok((out.into_values().collect(), lost));
        }
        let mut files = Vec::new();
        for e in diff.catalog.state() {
            match e.location {
                Location::Volume(_) => files.extend(in_set(SetRole::Differential, e, &mut lost)),
                Location::Base => {
                    let b = full_rows
                        .get(e.path.as_str())
                        .copied()
                        .filter(|b| b.crc32 == e.crc32 && b.size == e.size);
                    match b {
                        Some(b) => {
                            if let Some(mut f) = in_set(SetRole::Full, b, &mut lost) {
                                f.entry.mtime = e.mtime;
                                files.push(f);
                            }
                        }
                        None if self.salvaging => lost.push(Unrestorable {
                            path: e.path.to_string(),
                            reason: format!(
                                "unchanged since {}, which does not hold it",
                                self.full.stem()
                            ),
                        }),
                        None => {
                            return Err(Error::Refused {
                                problem: Problem::new(
                                    ProblemKind::Damaged,
                                    self.storage.describe(&diff.info.set.volume_name(0)),
                                    format!(
                                        "the catalog says unchanged since {}, which does not hold it",
                                        self.full.stem()
                                    ),
                                )
                                .at(e.path.as_str()),
                                count: 1,
                                salvaging: false,
                            });
                        }
                    }
                }
                Location::Deleted => {}
            }
        }
        Ok((files, lost))
    }

    /// A reader of this chain's entries.
    #[must_use]
    pub fn reader(&self) -> ChainReader<'_> {
        ChainReader {
            chain: self,
            open: HashMap::new(),
        }
    }
}

/// Why reading one entry failed.
#[derive(Debug)]
pub enum EntryError {
    /// The archive is damaged at this entry.
    Archive(Problem),
    /// Writing the content out failed (a full disk, say): not the archive's fault.
    Write(std::io::Error),
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Archive(p) => p.fmt(f),
            Self::Write(e) => e.fmt(f),
        }
    }
}

/// Reads entries of a [`RestoreChain`], keeping each volume it opened open.
/// One per thread: each holds its own readers.
pub struct ChainReader<'a> {
    chain: &'a RestoreChain,
    open: HashMap<(SetRole, u32), Volume>,
}

impl ChainReader<'_> {
    /// Copies the content of `f` into `out`, checking size and CRC-32
    /// against the catalog; never writes more than the catalog's size.
    ///
    /// # Errors
    /// [`EntryError::Archive`] naming the entry, or [`EntryError::Write`].
    pub fn read(
        &mut self,
        f: &StateFile,
        out: &mut dyn std::io::Write,
        buf: &mut [u8],
    ) -> Result<(), EntryError> {
        let chain = self.chain;
        let set = chain.set(f.role);
        let vname = set.info.set.volume_name(f.volume);
        let place = chain.storage.describe(&vname);
        let entry = layout::entry_name(&f.entry.path);
        let damaged = |m: String| {
            EntryError::Archive(Problem::new(ProblemKind::Damaged, &place, m).at(&entry))
        };
        let (size, crc) = if let Some(found) = chain.scanned.get(&(f.role, f.volume)) {
            let Some(x) = found
                .get(f.entry.path.as_str())
                .or_else(|| found.get(&entry))
            else {
                return Err(damaged(
                    "not found among the entries salvage could read".into(),
                ));
            };
            let mut r = chain
                .storage
                .open(&vname)
                .map_err(|e| damaged(format!("cannot open: {e}")))?;
            let mut limited = LimitedWriter {
                out,
                left: f.entry.size,
                failed: None,
            };
            match salvage::extract(&mut r, x, &mut limited) {
                Ok(v) => v,
                Err(e) => {
                    return Err(limited
                        .failed
                        .take()
                        .map_or_else(|| damaged(e.to_string()), EntryError::Write));
                }
            }
        } else {
            let vol = match self.open.entry((f.role, f.volume)) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(
                    Volume::open(chain.storage.as_ref(), &vname).map_err(EntryError::Archive)?,
                ),
            };
            let idx = vol
                .zip()
                .index_for_name(&entry)
                .or_else(|| vol.zip().index_for_name(f.entry.path.as_str()));
            let Some(idx) = idx else {
                return Err(damaged("listed in the catalog but absent".into()));
            };
            match vol.copy_entry(idx, f.entry.size, out, buf) {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(EntryError::Write(e)),
                Err(p) => return Err(EntryError::Archive(p)),
            }
        };
        if size != f.entry.size || crc != f.entry.crc32 {
            return Err(damaged(format!(
                "the catalog says {} bytes crc {:08x}, the archive gave {size} bytes crc {crc:08x}",
                f.entry.size, f.entry.crc32
            )));
        }
        Ok(())
    }
}

/// Refuses to pass on more than `left` bytes; remembers a write failure.
struct LimitedWriter<'a> {
    out: &'a mut dyn std::io::Write,
    left: u64,
    failed: Option<std::io::Error>,
}

impl std::io::Write for LimitedWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if b.len() as u64 > self.left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the entry holds more than the catalog records",
            ));
        }
        match self.out.write(b) {
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) => {
                let kind = e.kind();
                self.failed = Some(e);
                Err(std::io::Error::new(kind, "cannot write"))
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Finds and loads what a restore reads. `salvage` accepts damaged sets (a
/// restore then writes only what it can prove intact and removes nothing).
///
/// # Errors
/// No usable backup (naming what was passed over and why), a missing base,
/// a refused archive.
pub fn resolve(repo: &Repository, pick: &Pick, salvage: bool) -> Result<RestoreChain> {
    let listing = repo.listing()?;
    match pick {
        Pick::Archive(file) => {
            let name: ArchiveName = file
                .parse()
                .map_err(|e: mailvault_formats::Error| Error::Request(e.to_string()))?;
            let Some(info) = listing
                .sets
                .iter()
                .find(|s| s.set.name == name.first_volume())
            else {
                return Err(Error::NotFound(repo.storage().describe(file)));
            };
            let chain = load_chain(repo, &listing, info, salvage)?;
            refuse_unless_salvaging(chain, salvage)
        }
        Pick::Newest | Pick::At(_) => {
            let mut passed = Vec::new();
            // Partial archives (safety copies) are passed over where there
            // are backups of the whole install; a safety-copies directory
            // holds nothing else, and there they are what is restored.
            let whole_backups = listing
                .backups()
                .any(|s| s.version.as_ref().is_some_and(|v| v.scope.is_empty()));
            for info in listing.sets.iter().rev() {
                if let Pick::At(t) = pick
                    && info.set.name.started > *t
                {
                    continue;
                }
                let stem = info.set.stem();
                let pass = |reason: String, damaged: bool, kind: Option<ProblemKind>| PassedOver {
                    stem: stem.clone(),
                    reason,
                    damaged,
                    kind,
                };
                match &info.status {
                    SetStatus::Leftover(_) => continue,
                    SetStatus::Foreign(why) => {
                        passed.push(pass(
                            format!("not a backup: {why}"),
                            false,
                            Some(ProblemKind::Foreign),
                        ));
                        continue;
                    }
                    _ => {}
                }
                if let Some(v) = info
                    .version
                    .as_ref()
                    .filter(|v| !v.scope.is_empty() && whole_backups)
                {
                    passed.push(pass(
                        format!(
                            "a partial archive (a safety copy of {}), not a backup of the install; name it to restore it",
                            v.scope.join(", ")
                        ),
                        false,
                        None,
                    ));
                    continue;
                }
                if info.in_future && matches!(pick, Pick::Newest) {
                    passed.push(pass(
                        "dated in the future (a wrong clock?); name it to restore it".into(),
                        true,
                        None,
                    ));
                    continue;
                }
                match load_chain(repo, &listing, info, salvage) {
                    Ok(mut chain) => {
                        // Salvage takes damage, never hostile entries.
                        let first = chain
                            .problems()
                            .find(|p| !salvage || p.kind == ProblemKind::Hostile)
                            .cloned();
                        match first {
                            Some(p) => passed.push(pass(p.to_string(), true, Some(p.kind))),
                            None => {
                                chain.passed = passed;
                                return Ok(chain);
                            }
                        }
                    }
                    Err(e) => {
                        let kind = match &e {
                            Error::Refused { problem, .. } => Some(problem.kind),
                            Error::MissingBase { .. } => Some(ProblemKind::Missing),
                            _ => None,
                        };
                        passed.push(pass(e.to_string(), true, kind));
                    }
                }
            }
            if let Pick::At(t) = pick
                && passed.is_empty()
            {
                return Err(Error::Request(format!(
                    "no backup in {} started at or before {}",
                    repo.location(),
                    t.to_rfc3339()
                )));
            }
            Err(Error::NoBackups {
                place: repo.location(),
                passed,
            })
        }
    }
}

fn refuse_unless_salvaging(chain: RestoreChain, salvage: bool) -> Result<RestoreChain> {
    // Salvage takes damage, never hostile entries.
    let refusable = |p: &&Problem| !salvage || p.kind == ProblemKind::Hostile;
    let count = chain.problems().filter(refusable).count();
    let first = chain.problems().find(refusable).cloned();
    match first {
        Some(problem) => Err(Error::Refused {
            problem,
            count,
            salvaging: salvage,
        }),
        None => Ok(chain),
    }
}

/// Loads a set and, for a differential, its base.
fn load_chain(
    repo: &Repository,
    listing: &Listing,
    info: &SetInfo,
    salvage: bool,
) -> Result<RestoreChain> {
    let storage = repo.storage();
    if let SetStatus::Leftover(why) | SetStatus::Foreign(why) = &info.status {
        return Err(Error::Refused {
            problem: Problem::new(
                ProblemKind::Foreign,
                storage.describe(&info.set.volume_name(0)),
                match &info.status {
                    SetStatus::Leftover(_) => {
                        format!("a leftover of an interrupted run ({why}), not a backup")
                    }
                    _ => format!("not a backup: {why}"),
                },
            ),
            count: 1,
            salvaging: salvage,
        });
    }
    let mut chain = if info.set.name.kind == ArchiveKind::Differential {
        let base_stem = listing.base_of(info);
        let base_info = base_stem
            .as_ref()
            .and_then(|b| listing.backups().find(|s| &s.set.stem() == b));
        let Some(base_info) = base_info else {
            return Err(Error::MissingBase {
                diff: info.set.stem(),
                base: base_stem.unwrap_or_else(|| "(a full before it)".into()),
                place: repo.location(),
            });
        };
        let full = load(storage, base_info.clone(), None);
        let diff = load(storage, info.clone(), Some(&full));
        RestoreChain {
            full,
            differential: Some(diff),
            passed: Vec::new(),
            salvaging: salvage,
            scanned: HashMap::new(),
            storage: repo.storage_arc(),
        }
    } else {
        RestoreChain {
            full: load(storage, info.clone(), None),
            differential: None,
            passed: Vec::new(),
            salvaging: salvage,
            scanned: HashMap::new(),
            storage: repo.storage_arc(),
        }
    };
    if salvage {
        scan_unreadable(&mut chain);
    }
    Ok(chain)
}

/// Salvage: reads the volumes whose central directory is gone by their
/// local headers; where the catalog was lost too, finds it there, or makes
/// the state from the entries found.
fn scan_unreadable(chain: &mut RestoreChain) {
    let storage = Arc::clone(&chain.storage);
    for role in [SetRole::Full, SetRole::Differential] {
        if role == SetRole::Differential && chain.differential.is_none() {
            continue;
        }
        let (base_entries, base_names) = if role == SetRole::Differential {
            (chain.full.entries, chain.full.name_bytes)
        } else {
            (0, 0)
        };
        let set = match role {
            SetRole::Full => &mut chain.full,
            SetRole::Differential => match chain.differential.as_mut() {
                Some(d) => d,
                None => continue,
            },
        };
        let mut extra: Vec<CatalogEntry> = Vec::new();
        let mut found_catalog: Option<(u32, Found)> = None;
        for &v in &set.unreadable {
            let vname = set.info.set.volume_name(v);
            let Ok(mut r) = storage.open(&vname) else {
                continue;
            };
            let Ok(found) = salvage::scan(&mut r, salvage::ScanLimits::default()) else {
                continue;
            };
            let mut by_name = HashMap::new();
            for f in found {
                let Ok(name) = String::from_utf8(f.name.clone()) else {
                    continue;
                };
                if name == CATALOG_ENTRY {
                    found_catalog = Some((v, f.clone()));
                }
                let Some(rel) = layout::rel_of_entry(&name) else {
                    continue;
                };
                let Ok(path) = RelPath::new(rel) else {
                    continue;
                };
                extra.push(CatalogEntry {
                    path: path.clone(),
                    size: f.size,
                    mtime: Mtime::default(),
                    crc32: f.crc32,
                    location: Location::Volume(v),
                });
                by_name.insert(path.to_string(), f);
            }
            chain.scanned.insert((role, v), Arc::new(by_name));
        }
        if set.catalog_read {
            // Rows of the unreadable volumes are read through `scanned`.
            continue;
        }
        if set.info.flavor != Flavor::Mailvault {
            set.catalog.entries.extend(extra);
            continue;
        }
        // The catalog's central-directory copy was unreadable: try the one found by scanning.
        let extra_names: u64 = extra.iter().map(|e| e.path.len() as u64).sum();
        let bound = CatalogBound::for_archive(
            set.entries + extra.len() as u64,
            set.name_bytes + extra_names,
            base_entries,
            base_names,
        );
        let recovered = found_catalog.and_then(|(v, f)| {
            let mut r = storage.open(&set.info.set.volume_name(v)).ok()?;
            let mut bytes = Vec::new();
            let mut lim = LimitedWriter {
                out: &mut bytes,
                left: f.size.min(1 << 31),
                failed: None,
            };
            salvage::extract(&mut r, &f, &mut lim).ok()?;
            Catalog::read(BufReader::new(&bytes[..]), bound).ok()
        });
        match recovered {
            Some(c) => {
                set.catalog = c;
                set.catalog_read = true;
            }
            None => set.catalog.entries.extend(extra),
        }
    }
}
