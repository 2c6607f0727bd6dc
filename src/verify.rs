//! `mailvault verify`: checks a backup set (or every set of a directory)
//! without trusting anything: every volume present and a readable ZIP,
//! `.version.txt` first and `.summary.txt` last with matching volume numbers,
//! every entry's CRC-32 (by reading it whole), and the catalog consistent with
//! the entries (each stored file in the volume the catalog names, with its
//! size and CRC; nothing stored that the catalog does not list; a
//! differential's unchanged files present in its base full's catalog).
//! Problems are collected, not thrown: the report lists them all.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use mailvault_formats::layout::{self, CATALOG_ENTRY, SUMMARY_ENTRY, VERSION_ENTRY};
use mailvault_formats::{ArchiveName, Catalog, Location, Summary, VersionInfo};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::{ArchiveSet, BackupDir, open_zip, read_catalog};

/// One thing wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The volume (or expected volume) concerned.
    pub archive: PathBuf,
    /// The entry concerned, if any.
    pub entry: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.entry {
            Some(e) => write!(
                f,
                "`{}`: entry `{e}`: {}",
                self.archive.display(),
                self.message
            ),
            None => write!(f, "`{}`: {}", self.archive.display(), self.message),
        }
    }
}

/// Result for one set.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    /// First volume's name.
    pub archive: String,
    /// Volumes checked.
    pub volumes: u32,
    /// Entries whose CRC was checked.
    pub entries: u64,
    /// Uncompressed bytes read.
    pub bytes: u64,
    /// Problems found in this set.
    pub problems: Vec<Problem>,
}

/// Result of `verify`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// One per set checked.
    pub sets: Vec<SetReport>,
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

/// Verifies the set `target` belongs to (any of its volumes may be given), or every set of a directory.
///
/// # Errors
/// The target does not exist or is neither a directory nor an archive name.
pub fn verify(target: &Path, progress: &dyn Progress) -> Result<VerifyReport> {
    let meta = std::fs::metadata(target).map_err(Error::io("cannot open", target))?;
    let (dir, only) = if meta.is_dir() {
        (target.to_path_buf(), None)
    } else {
        let file = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let name: ArchiveName = file
            .parse()
            .map_err(|e| Error::Invalid(format!("`{}`: {e}", target.display())))?;
        (
            target
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            Some(name.first_volume()),
        )
    };
    let bd = BackupDir::new(&dir);
    let sets: Vec<ArchiveSet> = bd
        .sets()?
        .into_iter()
        .filter(|s| only.is_none_or(|n| s.name == n))
        .collect();
    if sets.is_empty() {
        return Err(Error::Invalid(format!(
            "no backup archives in `{}`",
            dir.display()
        )));
    }
    let all = bd.sets()?;
    let total: u64 = sets.iter().map(ArchiveSet::size).sum();
    progress.start("verifying", 0, total);
    let report = VerifyReport {
        sets: sets.iter().map(|s| verify_set(s, &all, progress)).collect(),
    };
    progress.finish();
    Ok(report)
}

struct VolumeFacts {
    version: Option<VersionInfo>,
    summary: Option<Summary>,
    catalog: Option<Vec<u8>>,
    /// `@backup/` entries: install-relative path -> (size, crc32).
    files: HashMap<String, (u64, u32)>,
}

fn verify_set(set: &ArchiveSet, all: &[ArchiveSet], progress: &dyn Progress) -> SetReport {
    let mut report = SetReport {
        archive: set.name.to_string(),
        volumes: 0,
        entries: 0,
        bytes: 0,
        problems: Vec::new(),
    };
    let mut facts: HashMap<u32, VolumeFacts> = HashMap::new();
    for (&n, path) in &set.volumes {
        report.volumes += 1;
        match check_volume(path, n, set.name, progress, &mut report) {
            Ok(f) => {
                facts.insert(n, f);
            }
            Err(p) => report.problems.push(p),
        }
    }
    // Which volumes should exist: up to the one whose summary says it is the last.
    let last = facts
        .iter()
        .find(|(_, f)| f.summary.as_ref().is_some_and(|s| s.last_volume))
        .map(|(&n, f)| (n, f));
    let highest = set.volumes.keys().copied().max().unwrap_or(0);
    let expected = match last {
        Some((n, f)) => {
            let declared = f
                .summary
                .as_ref()
                .and_then(|s| s.totals.as_ref())
                .map_or(n + 1, |t| t.volumes);
            if declared != n + 1 {
                report.problems.push(problem(
                    &set.volume_path(n),
                    None,
                    format!("summary says {declared} volumes but this is volume {n}"),
                ));
            }
            n + 1
        }
        None => {
            report.problems.push(problem(
                &set.volume_path(highest + 1),
                None,
                format!(
                    "no volume says it is the last: volume {} or later is missing or damaged",
                    highest + 1
                ),
            ));
            highest + 1
        }
    };
    for n in 0..expected {
        if !set.volumes.contains_key(&n) {
            report.problems.push(problem(
                &set.volume_path(n),
                None,
                format!("volume {n} is missing"),
            ));
        }
    }
    for &n in set.volumes.keys().filter(|&&n| n >= expected) {
        report.problems.push(problem(
            &set.volume_path(n),
            None,
            "volume beyond the last one declared".into(),
        ));
    }

    let Some((last_n, last_facts)) = last else {
        return report;
    };
    let last_path = set.volume_path(last_n);
    let Some(bytes) = &last_facts.catalog else {
        report.problems.push(problem(
            &last_path,
            Some(CATALOG_ENTRY),
            "the last volume has no catalog".into(),
        ));
        return report;
    };
    let catalog = match Catalog::parse(bytes) {
        Ok(c) => c,
        Err(e) => {
            report
                .problems
                .push(problem(&last_path, Some(CATALOG_ENTRY), e.to_string()));
            return report;
        }
    };
    check_catalog(set, all, &catalog, &facts, &mut report);
    report
}

fn check_catalog(
    set: &ArchiveSet,
    all: &[ArchiveSet],
    catalog: &Catalog,
    facts: &HashMap<u32, VolumeFacts>,
    report: &mut SetReport,
) {
    let mut listed: HashMap<(u32, &str), ()> = HashMap::new();
    let mut base_needed = Vec::new();
    for e in &catalog.entries {
        match e.location {
            Location::Volume(v) => {
                listed.insert((v, e.path.as_str()), ());
                let Some(f) = facts.get(&v) else { continue };
                match f.files.get(&e.path) {
                    None => report.problems.push(problem(&set.volume_path(v), Some(&layout::entry_name(&e.path)), "listed in the catalog but absent".into())),
                    Some(&(size, crc)) if size != e.size || crc != e.crc32 => report.problems.push(problem(
                        &set.volume_path(v),
                        Some(&layout::entry_name(&e.path)),
                        format!("catalog says {} bytes crc {:08x}, entry has {size} bytes crc {crc:08x}", e.size, e.crc32),
                    )),
                    Some(_) => {}
                }
            }
            Location::Base => base_needed.push(e),
            Location::Deleted => {}
        }
    }
    for (&v, f) in facts {
        for path in f.files.keys() {
            if !listed.contains_key(&(v, path.as_str())) {
                report.problems.push(problem(
                    &set.volume_path(v),
                    Some(&layout::entry_name(path)),
                    "stored but not in the catalog".into(),
                ));
            }
        }
    }
    if base_needed.is_empty() {
        return;
    }
    let base_stem = facts
        .get(&0)
        .and_then(|f| f.version.as_ref())
        .and_then(|v| v.base.clone());
    let Some(stem) = base_stem else {
        report.problems.push(problem(
            &set.volume_path(0),
            Some(VERSION_ENTRY),
            "catalog refers to a base but `.version.txt` names none".into(),
        ));
        return;
    };
    let Some(base) = all.iter().find(|s| s.stem() == stem) else {
        report.problems.push(problem(
            &set.volume_path(0),
            None,
            format!(
                "base full {stem} is not in the directory: {} unchanged files cannot be restored",
                base_needed.len()
            ),
        ));
        return;
    };
    match read_catalog(base) {
        Ok(bc) => {
            let by_path: HashMap<&str, _> = bc.state().map(|e| (e.path.as_str(), e)).collect();
            for e in base_needed {
                match by_path.get(e.path.as_str()) {
                    Some(b) if b.crc32 == e.crc32 && b.size == e.size => {}
                    _ => report.problems.push(problem(
                        &set.volume_path(0),
                        Some(&layout::entry_name(&e.path)),
                        format!("catalog says unchanged since {stem}, but {stem} does not hold it with that size and CRC"),
                    )),
                }
            }
        }
        Err(e) => report.problems.push(problem(
            &base.volume_path(0),
            None,
            format!("base full is unreadable: {e}"),
        )),
    }
}

fn problem(path: &Path, entry: Option<&str>, message: String) -> Problem {
    Problem {
        archive: path.to_path_buf(),
        entry: entry.map(str::to_string),
        message,
    }
}

/// Reads every entry of one volume. `Err` only when the volume cannot be opened at all.
fn check_volume(
    path: &Path,
    number: u32,
    name: ArchiveName,
    progress: &dyn Progress,
    report: &mut SetReport,
) -> Result<VolumeFacts, Problem> {
    let mut zip = open_zip(path).map_err(|e| problem(path, None, e.to_string()))?;
    let mut facts = VolumeFacts {
        version: None,
        summary: None,
        catalog: None,
        files: HashMap::new(),
    };
    let count = zip.len();
    let mut stored: Vec<(usize, u64, u32)> = Vec::with_capacity(count);
    let mut buf = vec![0u8; 256 * 1024];
    for i in 0..count {
        let mut entry = match zip.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                report
                    .problems
                    .push(problem(path, None, format!("entry #{i}: {e}")));
                continue;
            }
        };
        let ename = entry.name().map_or_else(
            |_| String::from_utf8_lossy(entry.name_raw()).into_owned(),
            std::borrow::Cow::into_owned,
        );
        if i == 0 && ename != VERSION_ENTRY {
            report.problems.push(problem(
                path,
                Some(&ename),
                format!("first entry must be `{VERSION_ENTRY}`"),
            ));
        }
        if i + 1 == count && ename != SUMMARY_ENTRY {
            report.problems.push(problem(
                path,
                Some(&ename),
                format!("last entry must be `{SUMMARY_ENTRY}`: the volume was not finished"),
            ));
        }
        let keep = matches!(
            ename.as_str(),
            VERSION_ENTRY | SUMMARY_ENTRY | CATALOG_ENTRY
        );
        let mut kept = Vec::new();
        let mut size = 0u64;
        let read = loop {
            match entry.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    size += n as u64;
                    if keep {
                        kept.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        report.entries += 1;
        report.bytes += size;
        progress.inc(1, entry.compressed_size());
        if let Err(e) = read {
            report
                .problems
                .push(problem(path, Some(&ename), format!("damaged: {e}")));
            continue;
        }
        let crc = entry.crc32();
        drop(entry);
        match ename.as_str() {
            VERSION_ENTRY => match VersionInfo::parse(&kept) {
                Ok(v) => {
                    if v.volume != number || v.kind != name.kind || v.started != name.started {
                        report.problems.push(problem(
                            path,
                            Some(VERSION_ENTRY),
                            format!(
                                "says {} volume {} started {}, the file name says otherwise",
                                v.kind, v.volume, v.started
                            ),
                        ));
                    }
                    facts.version = Some(v);
                }
                Err(e) => report
                    .problems
                    .push(problem(path, Some(VERSION_ENTRY), e.to_string())),
            },
            SUMMARY_ENTRY => match Summary::parse(&kept) {
                Ok(s) => {
                    if s.volume != number {
                        report.problems.push(problem(
                            path,
                            Some(SUMMARY_ENTRY),
                            format!("says volume {}, the file name says {number}", s.volume),
                        ));
                    }
                    facts.summary = Some(s);
                }
                Err(e) => report
                    .problems
                    .push(problem(path, Some(SUMMARY_ENTRY), e.to_string())),
            },
            CATALOG_ENTRY => facts.catalog = Some(kept),
            // Only fixed-size facts here: a long-lived allocation per entry, interleaved
            // with each entry's short-lived decompressor state, fragments the heap
            // (glibc grew to 1.3 GB on a 51,000-entry volume). Paths are mapped below.
            _ => stored.push((i, size, crc)),
        }
    }
    for (i, size, crc) in stored {
        let Some(Ok(name)) = zip.name_for_index(i) else {
            continue;
        };
        match layout::rel_of_entry(&name) {
            Some(rel) if layout::check_relative(rel).is_ok() => {
                if facts.files.insert(rel.to_string(), (size, crc)).is_some() {
                    report
                        .problems
                        .push(problem(path, Some(&name), "duplicate entry".into()));
                }
            }
            _ => report.problems.push(problem(
                path,
                Some(&name),
                "unexpected or unsafe entry name".into(),
            )),
        }
    }
    Ok(facts)
}
