//! What `verify` and every restore check, with the same code: a set is
//! [`load`]ed (every volume's central directory, entry names, metadata, the
//! catalog within its bound, the catalog against the entries and against its
//! base), and [`verify`] adds reading every entry. A restore refuses a set
//! whose load found any problem (unless salvaging), and meets the content
//! checks while extracting; so `verify` passes exactly the archives a full
//! restore accepts.

use std::collections::{BTreeSet, HashMap};
use std::io::BufReader;

use mailvault_formats::layout::{CATALOG_ENTRY, SUMMARY_ENTRY, VERSION_ENTRY};
use mailvault_formats::limits::{CatalogBound, MAX_SUMMARY_BYTES, MAX_VERSION_BYTES};
use mailvault_formats::{
    ArchiveKind, ArchiveName, Catalog, CatalogEntry, Location, Mtime, RelPath, Summary, VersionInfo,
};
use serde::Serialize;

use crate::error::{Error, Problem, ProblemKind, Result};
use crate::progress::Progress;
use crate::reader::Volume;
use crate::repository::Repository;
use crate::set::{self, Flavor, SetInfo, SetStatus};
use crate::storage::Storage;

/// A set read whole.
#[derive(Debug, Clone)]
pub struct LoadedSet {
    /// Its status and metadata.
    pub info: SetInfo,
    /// The catalog: read from the archive, or (Kerio archives, and salvage
    /// when the catalog is lost) made from the entries found.
    pub catalog: Catalog,
    /// Whether `catalog` was read from the archive (it may still disagree
    /// with the entries: see `has_catalog`).
    pub catalog_read: bool,
    /// Whether `catalog` was read from the archive and agrees with its
    /// entries: only then can it prove that a file was absent at backup time.
    pub has_catalog: bool,
    /// `@backup/` entries in the present, readable volumes.
    pub entries: u64,
    /// Bytes of their install-relative names (what bounds a catalog's text).
    pub name_bytes: u64,
    /// The bound its catalog was read with.
    pub catalog_bound: CatalogBound,
    /// Volumes present but whose central directory cannot be read (salvage
    /// reads them by their local headers).
    pub unreadable: BTreeSet<u32>,
    /// Everything found wrong.
    pub problems: Vec<Problem>,
}

impl LoadedSet {
    /// `F20261122T010000Z`.
    #[must_use]
    pub fn stem(&self) -> String {
        self.info.set.stem()
    }

    /// First-volume name.
    #[must_use]
    pub fn name(&self) -> ArchiveName {
        self.info.set.name
    }

    /// Whether nothing is wrong.
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One `@backup/` entry seen in a volume's central directory.
struct Seen {
    rel: Box<str>,
    volume: u32,
    size: u64,
    crc32: u32,
    mtime: i64,
}

/// Reads a set whole and checks it (see the module docs). `base` is the
/// loaded base full of a differential (`None` for a full, or when the base is
/// missing, which is then a problem).
#[must_use]
pub fn load(storage: &dyn Storage, info: SetInfo, base: Option<&LoadedSet>) -> LoadedSet {
    let mut out = load_all(storage, info, base);
    drop_repeats(&mut out.problems);
    out
}

/// One failure found twice (the set's status when it was listed, then the
/// volume opened again) is reported once: a problem whose message ends
/// with another's, about the same archive and entry, is that one again.
fn drop_repeats(problems: &mut Vec<Problem>) {
    let all = problems.clone();
    let mut kept: Vec<Problem> = Vec::with_capacity(all.len());
    for (i, p) in all.iter().enumerate() {
        let repeat = all.iter().enumerate().any(|(j, q)| {
            j != i
                && q.archive == p.archive
                && q.entry == p.entry
                && ((p.message.len() > q.message.len() && p.message.ends_with(&q.message))
                    || (p.message == q.message && j < i))
        });
        if !repeat {
            kept.push(p.clone());
        }
    }
    *problems = kept;
}

fn load_all(storage: &dyn Storage, info: SetInfo, base: Option<&LoadedSet>) -> LoadedSet {
    let mut out = LoadedSet {
        catalog: Catalog::default(),
        catalog_read: false,
        has_catalog: false,
        entries: 0,
        name_bytes: 0,
        catalog_bound: CatalogBound { rows: 0, bytes: 0 },
        unreadable: BTreeSet::new(),
        problems: Vec::new(),
        info,
    };
    if matches!(
        out.info.status,
        SetStatus::Foreign(_) | SetStatus::Leftover(_)
    ) {
        if let Some(p) = out.info.problem(storage) {
            out.problems.push(p);
        } else {
            out.problems.push(Problem::new(
                ProblemKind::Foreign,
                storage.describe(&out.info.set.volume_name(0)),
                out.info.status.to_string(),
            ));
        }
        return out;
    }
    if let Some(p) = out.info.problem(storage) {
        out.problems.push(p);
    }
    let mailvault = out.info.flavor == Flavor::Mailvault;
    let name = out.info.set.name;
    let mut seen: Vec<Seen> = Vec::new();
    let mut last: Option<(u32, Volume, Summary)> = None;
    let volumes: Vec<(u32, String)> = out
        .info
        .set
        .volumes
        .iter()
        .map(|(n, v)| (*n, v.clone()))
        .collect();
    for (n, vname) in volumes {
        let mut vol = match Volume::open(storage, &vname) {
            Ok(v) => v,
            Err(p) => {
                out.problems.push(p);
                out.unreadable.insert(n);
                continue;
            }
        };
        out.problems.extend(vol.check_entries());
        for (rel, f) in vol.backup_entries() {
            seen.push(Seen {
                rel: rel.into_boxed_str(),
                volume: n,
                size: f.size,
                crc32: f.crc32,
                mtime: f.mtime,
            });
        }
        if !mailvault {
            continue;
        }
        let summary = check_volume_meta(&mut vol, &name, n, &mut out);
        if let Some(s) = summary
            && s.last_volume
        {
            last = Some((n, vol, s));
        }
    }
    out.entries = seen.len() as u64;
    out.name_bytes = seen.iter().map(|s| s.rel.len() as u64).sum();
    if !mailvault {
        out.catalog = synthesise(&seen);
        return out;
    }

    // The catalog, bounded by this archive's own entries (and its base's).
    let is_diff = name.kind == ArchiveKind::Differential;
    if let Some(b) = base.filter(|b| is_diff && b.name().started >= name.started) {
        out.problems.push(Problem::new(
            ProblemKind::Damaged,
            storage.describe(&out.info.set.volume_name(0)),
            format!(
                "its base {} is not older than it: a differential builds on an earlier full",
                b.stem()
            ),
        ));
    }
    if is_diff && base.is_none() {
        out.problems.push(Problem::new(
            ProblemKind::Missing,
            storage.describe(&out.info.set.volume_name(0)),
            format!(
                "its base full {} is not in the repository: the files it did not store cannot be restored",
                out.info.base().unwrap_or("(unnamed)")
            ),
        ));
    }
    let catalog = match (&mut last, is_diff && base.is_none()) {
        (Some((last_n, vol, _)), false) => {
            // Rows describe this archive's entries: with every volume here,
            // exactly as many as it holds. Missing (or unreadable) volumes
            // held some unknown number; allow each twice the fullest volume
            // present, so a salvage can still name what they held.
            let per_volume = seen.iter().fold(HashMap::<u32, u64>::new(), |mut m, s| {
                *m.entry(s.volume).or_default() += 1;
                m
            });
            let fullest = per_volume.values().copied().max().unwrap_or(0);
            let absent = (0..=*last_n)
                .filter(|n| !out.info.set.volumes.contains_key(n) || out.unreadable.contains(n))
                .count() as u64;
            let extra = absent * (fullest * 2 + 10_000);
            let avg_name = out
                .name_bytes
                .checked_div(out.entries)
                .unwrap_or(256)
                .max(64);
            let bound = CatalogBound::for_archive(
                out.entries + extra,
                out.name_bytes + extra * avg_name,
                base.map_or(0, |b| b.entries),
                base.map_or(0, |b| b.name_bytes),
            );
            out.catalog_bound = bound;
            read_catalog(vol, bound)
                .map_err(|p| out.problems.push(p))
                .ok()
        }
        _ => None,
    };
    match catalog {
        Some(c) => {
            let before = out.problems.len();
            cross_check(storage, &c, &seen, base, &mut out);
            out.catalog_read = true;
            out.has_catalog = out.problems.len() == before;
            out.catalog = c;
        }
        None => out.catalog = synthesise(&seen),
    }
    out
}

/// Checks `.version.txt` first and `.summary.txt` last of one mailvault
/// volume; returns its summary.
fn check_volume_meta(
    vol: &mut Volume,
    name: &ArchiveName,
    n: u32,
    out: &mut LoadedSet,
) -> Option<Summary> {
    let (first, last) = vol.first_and_last();
    let place = vol.place.clone();
    if first.as_deref() != Some(VERSION_ENTRY) {
        out.problems.push(Problem::new(
            ProblemKind::Damaged,
            &place,
            format!("the first entry must be `{VERSION_ENTRY}`"),
        ));
    }
    match vol.read_meta(VERSION_ENTRY, MAX_VERSION_BYTES) {
        Ok(Some(b)) => match VersionInfo::parse(&b) {
            Ok(v) => {
                if let Some(m) = set::version_mismatch(&v, name, n) {
                    out.problems
                        .push(Problem::new(ProblemKind::Damaged, &place, m).at(VERSION_ENTRY));
                }
                if out.info.version.is_none() {
                    out.info.version = Some(v);
                }
            }
            Err(e) => out
                .problems
                .push(Problem::new(ProblemKind::Damaged, &place, e.to_string()).at(VERSION_ENTRY)),
        },
        Ok(None) => out.problems.push(
            Problem::new(ProblemKind::Damaged, &place, "no `.version.txt`").at(VERSION_ENTRY),
        ),
        Err(p) => out.problems.push(p),
    }
    if last.as_deref() != Some(SUMMARY_ENTRY) {
        out.problems.push(Problem::new(
            ProblemKind::Unfinished,
            &place,
            format!("the last entry must be `{SUMMARY_ENTRY}`: the volume was not finished"),
        ));
    }
    let summary = match vol.read_meta(SUMMARY_ENTRY, MAX_SUMMARY_BYTES) {
        Ok(Some(b)) => match Summary::parse(&b) {
            Ok(s) => s,
            Err(e) => {
                out.problems.push(
                    Problem::new(ProblemKind::Damaged, &place, e.to_string()).at(SUMMARY_ENTRY),
                );
                return None;
            }
        },
        Ok(None) => return None,
        Err(p) => {
            out.problems.push(p);
            return None;
        }
    };
    if summary.volume != n {
        out.problems.push(
            Problem::new(
                ProblemKind::Damaged,
                &place,
                format!("says volume {}, the file name says {n}", summary.volume),
            )
            .at(SUMMARY_ENTRY),
        );
    }
    if summary.status != "complete" {
        out.problems.push(
            Problem::new(
                ProblemKind::Unfinished,
                &place,
                format!("status is `{}`, not `complete`", summary.status),
            )
            .at(SUMMARY_ENTRY),
        );
    }
    if summary.last_volume && !vol.has(CATALOG_ENTRY) {
        out.problems.push(Problem::new(
            ProblemKind::Unfinished,
            &place,
            "the last volume holds no catalog",
        ));
    }
    Some(summary)
}

fn read_catalog(vol: &mut Volume, bound: CatalogBound) -> Result<Catalog, Problem> {
    let place = vol.place.clone();
    let Some(i) = vol.zip().index_for_name(CATALOG_ENTRY) else {
        return Err(Problem::new(ProblemKind::Unfinished, &place, "no catalog"));
    };
    let declared = vol.zip().by_index_data(i).map_or(0, |e| e.size());
    if declared > bound.bytes {
        return Err(Problem::new(
            ProblemKind::TooLarge,
            &place,
            format!(
                "{declared} bytes, more than a catalog of this archive's {} rows can take ({} bytes)",
                bound.rows, bound.bytes
            ),
        )
        .at(CATALOG_ENTRY));
    }
    let entry = vol
        .zip()
        .by_index(i)
        .map_err(|e| Problem::new(ProblemKind::Damaged, &place, e.to_string()).at(CATALOG_ENTRY))?;
    Catalog::read(BufReader::with_capacity(64 * 1024, entry), bound).map_err(|e| {
        let kind = if matches!(e, mailvault_formats::Error::TooLarge { .. }) {
            ProblemKind::TooLarge
        } else {
            ProblemKind::Damaged
        };
        Problem::new(kind, &place, e.to_string()).at(CATALOG_ENTRY)
    })
}

/// The catalog of an archive that has none: its entries as stored.
fn synthesise(seen: &[Seen]) -> Catalog {
    Catalog {
        entries: seen
            .iter()
            .filter_map(|s| {
                Some(CatalogEntry {
                    path: RelPath::new(s.rel.as_ref()).ok()?,
                    size: s.size,
                    mtime: Mtime {
                        secs: s.mtime,
                        nanos: 0,
                    },
                    crc32: s.crc32,
                    location: Location::Volume(s.volume),
                })
            })
            .collect(),
    }
}

/// The catalog against the entries of the present volumes, and against the base.
fn cross_check(
    storage: &dyn Storage,
    c: &Catalog,
    seen: &[Seen],
    base: Option<&LoadedSet>,
    out: &mut LoadedSet,
) {
    let set = &out.info.set;
    let vplace = |v: u32| storage.describe(&set.volume_name(v));
    let mut problems = Vec::new();
    let mut rows: HashMap<&str, usize> = HashMap::with_capacity(c.entries.len());
    for (i, e) in c.entries.iter().enumerate() {
        if rows.insert(e.path.as_str(), i).is_some() {
            problems.push(
                Problem::new(
                    ProblemKind::Damaged,
                    vplace(set.highest()),
                    "the catalog lists this path twice",
                )
                .at(e.path.as_str()),
            );
        }
    }
    let mut found = vec![false; c.entries.len()];
    for s in seen {
        let entry = mailvault_formats::layout::entry_name(&s.rel);
        match rows.get(s.rel.as_ref()) {
            None => problems.push(
                Problem::new(
                    ProblemKind::Damaged,
                    vplace(s.volume),
                    "stored but not in the catalog",
                )
                .at(entry),
            ),
            Some(&i) => {
                let e = &c.entries[i];
                found[i] = true;
                if e.location != Location::Volume(s.volume) {
                    problems.push(
                        Problem::new(
                            ProblemKind::Damaged,
                            vplace(s.volume),
                            format!("stored in volume {}, the catalog says otherwise", s.volume),
                        )
                        .at(entry),
                    );
                } else if e.size != s.size || e.crc32 != s.crc32 {
                    problems.push(
                        Problem::new(
                            ProblemKind::Damaged,
                            vplace(s.volume),
                            format!(
                                "catalog says {} bytes crc {:08x}, the entry has {} bytes crc {:08x}",
                                e.size, e.crc32, s.size, s.crc32
                            ),
                        )
                        .at(entry),
                    );
                }
            }
        }
    }
    let is_diff = set.name.kind == ArchiveKind::Differential;
    let base_rows: Option<HashMap<&str, &CatalogEntry>> =
        base.map(|b| b.catalog.state().map(|e| (e.path.as_str(), e)).collect());
    for (i, e) in c.entries.iter().enumerate() {
        match e.location {
            Location::Volume(v) => {
                if !found[i] && set.volumes.contains_key(&v) && !out.unreadable.contains(&v) {
                    problems.push(
                        Problem::new(
                            ProblemKind::Damaged,
                            vplace(v),
                            "listed in the catalog but absent",
                        )
                        .at(mailvault_formats::layout::entry_name(&e.path)),
                    );
                }
            }
            Location::Base | Location::Deleted if !is_diff => problems.push(
                Problem::new(
                    ProblemKind::Damaged,
                    vplace(set.highest()),
                    "a full's catalog has a `base` or `deleted` row",
                )
                .at(e.path.as_str()),
            ),
            Location::Base => {
                let ok = base_rows
                    .as_ref()
                    .and_then(|m| m.get(e.path.as_str()))
                    .is_some_and(|b| b.size == e.size && b.crc32 == e.crc32);
                if !ok && base_rows.is_some() {
                    problems.push(
                        Problem::new(
                            ProblemKind::Damaged,
                            vplace(0),
                            format!(
                                "the catalog says unchanged since {}, which does not hold it with that size and CRC",
                                base.map(LoadedSet::stem).unwrap_or_default()
                            ),
                        )
                        .at(e.path.as_str()),
                    );
                }
            }
            Location::Deleted => {}
        }
    }
    // A differential's catalog accounts for every file of its base: stored
    // again, unchanged, or deleted. A base file it leaves out would be
    // removed by a restore without any proof that it was deleted.
    if is_diff && let Some(b) = base {
        let skipped: Vec<&str> = out
            .info
            .summary
            .as_ref()
            .map(|s| s.skipped.iter().map(|k| k.path.as_str()).collect())
            .unwrap_or_default();
        let mut missing = 0usize;
        for e in b.catalog.state() {
            if !rows.contains_key(e.path.as_str())
                && !skipped
                    .iter()
                    .any(|k| mailvault_formats::layout::within(&e.path, k))
            {
                missing += 1;
                if missing <= 20 {
                    problems.push(
                        Problem::new(
                            ProblemKind::Damaged,
                            vplace(set.highest()),
                            format!(
                                "the catalog does not account for this file of its base {} (neither stored, unchanged nor deleted)",
                                b.stem()
                            ),
                        )
                        .at(e.path.as_str()),
                    );
                }
            }
        }
        if missing > 20 {
            problems.push(Problem::new(
                ProblemKind::Damaged,
                vplace(set.highest()),
                format!(
                    "… and {} more files of its base the catalog does not account for",
                    missing - 20
                ),
            ));
        }
    }
    // The summary's totals must describe the same catalog.
    if let Some(t) = out.info.summary.as_ref().and_then(|s| s.totals.as_ref()) {
        let count = |f: &dyn Fn(&Location) -> bool| {
            c.entries.iter().filter(|e| f(&e.location)).count() as u64
        };
        let state = count(&|l| *l != Location::Deleted);
        let deleted = count(&|l| *l == Location::Deleted);
        let from_base = count(&|l| *l == Location::Base);
        let stored = count(&|l| matches!(l, Location::Volume(_)));
        let mut disagree = Vec::new();
        if t.state_files != state {
            disagree.push(format!("state-files {} (catalog: {state})", t.state_files));
        }
        if t.files != stored {
            disagree.push(format!("files {} (catalog: {stored})", t.files));
        }
        if is_diff && (t.deleted != deleted || t.from_base != from_base) {
            disagree.push(format!(
                "deleted {} / from-base {} (catalog: {deleted} / {from_base})",
                t.deleted, t.from_base
            ));
        }
        if !disagree.is_empty() {
            problems.push(
                Problem::new(
                    ProblemKind::Damaged,
                    vplace(set.highest()),
                    format!(
                        "`.summary.txt` disagrees with the catalog: {}",
                        disagree.join(", ")
                    ),
                )
                .at(mailvault_formats::layout::SUMMARY_ENTRY),
            );
        }
    }
    // Hundreds of thousands of identical findings help nobody: keep the
    // first ones and a count.
    const KEEP: usize = 1000;
    if problems.len() > KEEP {
        let more = problems.len() - KEEP;
        problems.truncate(KEEP);
        problems.push(Problem::new(
            ProblemKind::Damaged,
            vplace(set.highest()),
            format!("… and {more} more disagreements between the catalog and the entries"),
        ));
    }
    out.problems.extend(problems);
}

/// Result for one set.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    /// First volume's name.
    pub archive: String,
    /// Status from the metadata.
    pub status: SetStatus,
    /// Volumes present.
    pub volumes: u32,
    /// Entries read.
    pub entries: u64,
    /// Uncompressed bytes read.
    pub bytes: u64,
    /// Problems found.
    pub problems: Vec<Problem>,
}

/// Result of [`verify`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// One per set checked, oldest first (leftovers excluded).
    pub sets: Vec<SetReport>,
    /// Leftovers of interrupted runs (not damage; the next backup or
    /// rotation removes them).
    pub leftovers: Vec<String>,
}

impl VerifyReport {
    /// Every problem, in order.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.sets.iter().flat_map(|s| s.problems.iter())
    }

    /// Whether nothing is wrong.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.problems().next().is_none()
    }
}

/// Verifies every set of a repository, or only `only` (any volume's name):
/// the same [`load`] a restore does, then every entry read and its CRC-32
/// checked.
///
/// # Errors
/// The repository cannot be listed, or holds no backups (or not `only`).
pub fn verify(
    repo: &Repository,
    only: Option<ArchiveName>,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let listing = repo.listing()?;
    let storage = repo.storage();
    let mut report = VerifyReport {
        leftovers: listing.leftovers(),
        ..VerifyReport::default()
    };
    let mut wanted: Vec<&SetInfo> = listing
        .sets
        .iter()
        .filter(|s| only.is_none_or(|n| s.set.name == n.first_volume()))
        .filter(|s| !matches!(s.status, SetStatus::Leftover(_)))
        .collect();
    if wanted.is_empty() {
        if let Some(n) = only
            && listing.sets.iter().any(|s| s.set.name == n.first_volume())
        {
            // The named set is a leftover: nothing to verify, nothing wrong.
            return Ok(report);
        }
        return Err(Error::NoBackups {
            place: repo.location(),
            passed: Vec::new(),
        });
    }
    // A differential is restored with its base: verifying it verifies both.
    if only.is_some()
        && let Some(base) = wanted.first().and_then(|d| listing.base_of(d))
        && let Some(bi) = listing.backups().find(|s| s.set.stem() == base)
    {
        wanted.insert(0, bi);
    }
    let total: u64 = wanted.iter().map(|s| s.bytes).sum();
    progress.start("verifying", 0, total);
    // Bases are loaded once and reused by their differentials; `intact`
    // says whether each verified set came out clean.
    let mut loaded: HashMap<String, LoadedSet> = HashMap::new();
    let mut intact: HashMap<String, Option<Problem>> = HashMap::new();
    for info in wanted {
        let is_diff = info.set.name.kind == ArchiveKind::Differential;
        let base = if is_diff { listing.base_of(info) } else { None };
        if let Some(b) = &base
            && !loaded.contains_key(b)
            && let Some(bi) = listing.backups().find(|s| &s.set.stem() == b)
        {
            loaded.insert(b.clone(), load(storage, bi.clone(), None));
        }
        let set = load(
            storage,
            info.clone(),
            base.as_ref().and_then(|b| loaded.get(b)),
        );
        let mut r = SetReport {
            archive: info.set.volume_name(0),
            status: info.status.clone(),
            volumes: u32::try_from(info.set.volumes.len()).unwrap_or(u32::MAX),
            entries: 0,
            bytes: 0,
            problems: set.problems.clone(),
        };
        if !matches!(info.status, SetStatus::Foreign(_)) {
            read_everything(storage, &set, progress, &mut r);
        }
        let here = storage.describe(&info.set.volume_name(0));
        if is_diff && !r.problems.iter().any(|p| p.kind == ProblemKind::Missing) {
            match &base {
                Some(b) if loaded.contains_key(b) => {
                    // What a restore of this differential reads of its base
                    // must be intact too.
                    let first = intact
                        .get(b)
                        .cloned()
                        .unwrap_or_else(|| loaded.get(b).and_then(|l| l.problems.first().cloned()));
                    if let Some(p) = first {
                        r.problems.push(Problem::new(
                            p.kind,
                            &here,
                            format!("its base full {b} is not intact ({p})"),
                        ));
                    }
                }
                Some(b) => r.problems.push(Problem::new(
                    ProblemKind::Missing,
                    &here,
                    format!("its base full {b} is not in {}", repo.location()),
                )),
                None => r.problems.push(Problem::new(
                    ProblemKind::Missing,
                    &here,
                    format!(
                        "no full backup before it in {} to be its base",
                        repo.location()
                    ),
                )),
            }
        }
        if info.set.name.kind.is_complete() {
            intact.insert(info.set.stem(), r.problems.first().cloned());
            loaded.insert(info.set.stem(), set);
        }
        report.sets.push(r);
    }
    progress.finish();
    Ok(report)
}

/// Reads every entry of every readable volume (the `zip` crate checks each
/// CRC-32 and that local and central names agree).
fn read_everything(
    storage: &dyn Storage,
    set: &LoadedSet,
    progress: &dyn Progress,
    r: &mut SetReport,
) {
    let mut buf = vec![0u8; 256 * 1024];
    for (n, vname) in &set.info.set.volumes {
        if set.unreadable.contains(n) {
            continue;
        }
        let Ok(mut vol) = Volume::open(storage, vname) else {
            continue;
        };
        // Metadata beyond its bound was reported by `load`; reading it
        // whole would only let a crafted archive burn CPU.
        let catalog_cap = set.catalog_bound.bytes.max(1 << 20);
        let meta_cap = |name: &str| match name {
            VERSION_ENTRY => Some(MAX_VERSION_BYTES),
            SUMMARY_ENTRY => Some(MAX_SUMMARY_BYTES),
            CATALOG_ENTRY => Some(catalog_cap),
            _ => None,
        };
        for i in 0..vol.len() {
            let compressed = vol
                .zip()
                .by_index_data(i)
                .map_or(0, |e| e.compressed_size());
            let limit = vol.zip().by_index_data(i).map_or(0, |e| e.size());
            let name = vol.entry_name(i);
            // Entries a restore never reads (directories, unknown top-level
            // files) do not fail verify either: one reader, one verdict.
            let ignored = name
                .as_deref()
                .is_some_and(|n| crate::reader::classify(n) == crate::reader::EntryClass::Ignored);
            if ignored
                || name
                    .as_deref()
                    .and_then(meta_cap)
                    .is_some_and(|cap| limit > cap)
            {
                progress.inc(1, compressed);
                continue;
            }
            match vol.copy_entry(i, limit, &mut std::io::sink(), &mut buf) {
                Ok(Ok((bytes, _))) => {
                    r.entries += 1;
                    r.bytes += bytes;
                }
                Ok(Err(_)) => {}
                Err(p) => r.problems.push(p),
            }
            progress.inc(1, compressed);
        }
    }
}
