//! Resolves what to restore from: the newest backup in a directory (a full,
//! or the newest differential with its base full), the newest state at or
//! before a time (`--at`), or one archive given by file (a differential is
//! combined with its base full found beside it). Every volume must be present;
//! entry names are checked before anything is read (zip-slip, absolute paths,
//! symlinks, duplicates are refused).
//!
//! Archives without a catalog (Kerio's own) are accepted: the state is then
//! the archive's entries, and a differential without a catalog is laid over
//! its base.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use chrono::{DateTime, Utc};
use mailvault_formats::layout::{self, CATALOG_ENTRY, SUMMARY_ENTRY, VERSION_ENTRY};
use mailvault_formats::{
    ArchiveKind, ArchiveName, Catalog, CatalogEntry, Location, Mtime, Skipped, Summary, VersionInfo,
};

use crate::error::{Error, Result};
use crate::source::{ArchiveSource, ReadSeek};

/// Which state to restore.
#[derive(Debug, Clone)]
pub enum Pick {
    /// The newest backup in the source.
    Newest,
    /// The newest backup started at or before this time.
    At(DateTime<Utc>),
    /// This archive (any of its volumes' file names).
    Archive(String),
}

/// One backup set with its metadata.
#[derive(Debug, Clone)]
pub struct SetMeta {
    /// First-volume name.
    pub name: ArchiveName,
    /// Volume file names by number.
    pub volumes: BTreeMap<u32, String>,
    /// `.version.txt` (absent in some Kerio archives).
    pub version: Option<VersionInfo>,
    /// `.summary.txt` of the last volume (absent in some Kerio archives).
    pub summary: Option<Summary>,
    /// The catalog (synthesised from the entries when the archive has none).
    pub catalog: Catalog,
    /// Whether `catalog` was read from the archive (false: synthesised).
    pub has_catalog: bool,
}

impl SetMeta {
    /// `F20261122T010000Z`.
    #[must_use]
    pub fn stem(&self) -> String {
        self.name.stem()
    }
}

/// A full plus at most one differential.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The F or C.
    pub full: SetMeta,
    /// The differential on top, if any.
    pub differential: Option<SetMeta>,
}

/// Where one file of the restored state comes from.
#[derive(Debug, Clone)]
pub struct StateFile {
    /// Catalog data (path, size, mtime, crc).
    pub entry: CatalogEntry,
    /// 0 = the full, 1 = the differential.
    pub set: u8,
    /// Volume number in that set.
    pub volume: u32,
}

impl Chain {
    /// The newest set of the chain.
    #[must_use]
    pub fn newest(&self) -> &SetMeta {
        self.differential.as_ref().unwrap_or(&self.full)
    }

    /// A set by index (0 full, 1 differential).
    #[must_use]
    pub fn set(&self, i: u8) -> &SetMeta {
        if i == 1 {
            self.differential.as_ref().unwrap_or(&self.full)
        } else {
            &self.full
        }
    }

    /// What the backup left out (disabled users...): never deleted by a restore.
    #[must_use]
    pub fn skipped(&self) -> Vec<Skipped> {
        self.newest()
            .summary
            .as_ref()
            .map(|s| s.skipped.clone())
            .unwrap_or_default()
    }

    /// The complete state at the chain's time, each file with where its content is.
    ///
    /// # Errors
    /// A differential's catalog points at its base for a file the base does not hold.
    pub fn state(&self) -> Result<Vec<StateFile>> {
        let in_full = |e: &CatalogEntry| -> Option<u32> {
            match e.location {
                Location::Volume(v) => Some(v),
                _ => None,
            }
        };
        let Some(diff) = &self.differential else {
            return Ok(self
                .full
                .catalog
                .state()
                .filter_map(|e| {
                    Some(StateFile {
                        volume: in_full(e)?,
                        entry: e.clone(),
                        set: 0,
                    })
                })
                .collect());
        };
        let full_by_path: HashMap<&str, &CatalogEntry> = self
            .full
            .catalog
            .state()
            .map(|e| (e.path.as_str(), e))
            .collect();
        if !diff.has_catalog {
            // Kerio-style differential: lay its files over the base.
            let mut out: BTreeMap<&str, StateFile> = BTreeMap::new();
            for e in self.full.catalog.state() {
                if let Some(v) = in_full(e) {
                    out.insert(
                        &e.path,
                        StateFile {
                            entry: e.clone(),
                            set: 0,
                            volume: v,
                        },
                    );
                }
            }
            for e in diff.catalog.state() {
                if let Some(v) = in_full(e) {
                    out.insert(
                        &e.path,
                        StateFile {
                            entry: e.clone(),
                            set: 1,
                            volume: v,
                        },
                    );
                }
            }
            return Ok(out.into_values().collect());
        }
        let mut out = Vec::new();
        for e in diff.catalog.state() {
            match e.location {
                Location::Volume(v) => out.push(StateFile {
                    entry: e.clone(),
                    set: 1,
                    volume: v,
                }),
                Location::Base => {
                    let b = full_by_path
                        .get(e.path.as_str())
                        .copied()
                        .filter(|b| b.crc32 == e.crc32 && b.size == e.size);
                    let Some(v) = b.and_then(in_full) else {
                        return Err(Error::Damaged {
                            archive: diff.stem(),
                            reason: format!(
                                "catalog says `{}` is unchanged since {}, which does not hold it",
                                e.path,
                                self.full.stem()
                            ),
                        });
                    };
                    out.push(StateFile {
                        entry: e.clone(),
                        set: 0,
                        volume: v,
                    });
                }
                Location::Deleted => {}
            }
        }
        Ok(out)
    }
}

/// Groups a source's file names into sets (first volume name -> volumes).
fn group(names: Vec<String>) -> BTreeMap<ArchiveName, BTreeMap<u32, String>> {
    let mut sets: BTreeMap<ArchiveName, BTreeMap<u32, String>> = BTreeMap::new();
    for n in names {
        if let Ok(a) = n.parse::<ArchiveName>() {
            sets.entry(a.first_volume())
                .or_default()
                .insert(a.volume, n);
        }
    }
    sets
}

/// Resolves the chain to restore. With `salvage`, missing volumes other than
/// the first are tolerated (their files are reported as not restored).
///
/// # Errors
/// No backups, a missing base or volume, damaged metadata, hostile entries.
pub fn resolve(src: &dyn ArchiveSource, pick: Pick, salvage: bool) -> Result<Chain> {
    let sets = group(src.list()?);
    // Leftovers of an interrupted commit (no first volume) are not backups.
    let usable: Vec<(&ArchiveName, &BTreeMap<u32, String>)> =
        sets.iter().filter(|(_, v)| v.contains_key(&0)).collect();
    let chosen = match &pick {
        Pick::Newest => usable
            .last()
            .copied()
            .ok_or_else(|| Error::NoBackups(src.describe("")))?,
        Pick::At(t) => usable
            .iter()
            .rev()
            .find(|(n, _)| n.started <= *t)
            .copied()
            .ok_or_else(|| {
                Error::Request(format!(
                    "no backup in {} started at or before {}",
                    src.describe(""),
                    t.to_rfc3339()
                ))
            })?,
        Pick::Archive(file) => {
            let name: ArchiveName = file
                .parse()
                .map_err(|e: mailvault_formats::Error| Error::Request(e.to_string()))?;
            sets.get_key_value(&name.first_volume())
                .filter(|(_, v)| v.contains_key(&0))
                .ok_or_else(|| Error::MissingVolume {
                    stem: name.stem(),
                    volume: 0,
                    name: name.first_volume().to_string(),
                })?
        }
    };
    let newest = load_set(src, *chosen.0, chosen.1, salvage)?;
    if newest.name.kind != ArchiveKind::Differential {
        return Ok(Chain {
            full: newest,
            differential: None,
        });
    }
    let base_stem = newest
        .version
        .as_ref()
        .and_then(|v| v.base.clone())
        .or_else(|| {
            // A Kerio differential names no base: take the newest full before it.
            usable
                .iter()
                .rev()
                .find(|(n, _)| n.kind.is_complete() && **n < newest.name)
                .map(|(n, _)| n.stem())
        });
    let Some(base_stem) = base_stem else {
        return Err(Error::MissingBase {
            diff: newest.stem(),
            base: "(a full before it)".into(),
            place: src.describe(""),
        });
    };
    let base = ArchiveName::parse_stem(&base_stem).map_err(|e| Error::Format {
        archive: src.describe(&newest.name.to_string()),
        source: e,
    })?;
    let Some(vols) = sets.get(&base).filter(|v| v.contains_key(&0)) else {
        return Err(Error::MissingBase {
            diff: newest.stem(),
            base: base_stem,
            place: src.describe(""),
        });
    };
    let full = load_set(src, base, vols, salvage)?;
    Ok(Chain {
        full,
        differential: Some(newest),
    })
}

pub(crate) fn open_volume(
    src: &dyn ArchiveSource,
    name: &str,
) -> Result<zip::ZipArchive<Box<dyn ReadSeek>>> {
    let r = src.open(name)?;
    zip::ZipArchive::new(r).map_err(|e| Error::Damaged {
        archive: src.describe(name),
        reason: format!("not a readable ZIP archive: {e}"),
    })
}

fn read_small(
    zip: &mut zip::ZipArchive<Box<dyn ReadSeek>>,
    src: &dyn ArchiveSource,
    vol: &str,
    entry: &str,
) -> Result<Option<Vec<u8>>> {
    let mut f = match zip.by_name(entry) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => {
            return Err(Error::Damaged {
                archive: src.describe(vol),
                reason: format!("entry `{entry}`: {e}"),
            });
        }
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| Error::Damaged {
        archive: src.describe(vol),
        reason: format!("entry `{entry}`: {e}"),
    })?;
    Ok(Some(buf))
}

/// Refuses archives with entries that could escape the target or confuse a
/// restore: absolute or `..` paths, drive letters, backslashes, symlinks,
/// names that are not UTF-8, duplicates.
fn check_entries(
    zip: &zip::ZipArchive<Box<dyn ReadSeek>>,
    src: &dyn ArchiveSource,
    vol: &str,
) -> Result<()> {
    if zip.has_duplicate_names() {
        return Err(Error::Hostile {
            archive: src.describe(vol),
            entry: "(central directory)".into(),
            reason: "duplicate entry names".into(),
        });
    }
    for i in 0..zip.len() {
        let f = zip.by_index_data(i).map_err(|e| Error::Damaged {
            archive: src.describe(vol),
            reason: format!("entry #{i}: {e}"),
        })?;
        let raw = String::from_utf8_lossy(f.name_raw()).into_owned();
        let hostile = |reason: &str| Error::Hostile {
            archive: src.describe(vol),
            entry: raw.clone(),
            reason: reason.to_string(),
        };
        let Ok(name) = f.name() else {
            return Err(hostile("name is not UTF-8"));
        };
        if f.is_symlink() {
            return Err(hostile("symbolic link entries are refused"));
        }
        if matches!(name.as_ref(), VERSION_ENTRY | SUMMARY_ENTRY | CATALOG_ENTRY) {
            continue;
        }
        let rel = name.strip_prefix(layout::BACKUP_PREFIX).unwrap_or(&name);
        let rel = rel.strip_suffix('/').unwrap_or(rel);
        if rel.is_empty() {
            continue;
        }
        if let Err(e) = layout::check_relative(rel) {
            return Err(hostile(&e.to_string()));
        }
    }
    Ok(())
}

fn load_set(
    src: &dyn ArchiveSource,
    name: ArchiveName,
    vols: &BTreeMap<u32, String>,
    salvage: bool,
) -> Result<SetMeta> {
    let first_name = &vols[&0];
    let mut first = open_volume(src, first_name)?;
    check_entries(&first, src, first_name)?;
    let fmt = |vol: &str| {
        let a = src.describe(vol);
        move |source| Error::Format { archive: a, source }
    };
    let version = read_small(&mut first, src, first_name, VERSION_ENTRY)?
        .map(|b| VersionInfo::parse(&b))
        .transpose()
        .map_err(fmt(first_name))?;
    let highest = vols.keys().copied().max().unwrap_or(0);
    let mut last = if highest == 0 {
        None
    } else {
        Some(open_volume(src, &vols[&highest])?)
    };
    let last_name = &vols[&highest];
    let summary = {
        let z = last.as_mut().unwrap_or(&mut first);
        read_small(z, src, last_name, SUMMARY_ENTRY)?
            .map(|b| Summary::parse(&b))
            .transpose()
            .map_err(fmt(last_name))?
    };
    // Every volume up to the declared last must be present.
    let declared = match &summary {
        Some(s) if s.last_volume => s.totals.as_ref().map_or(highest + 1, |t| t.volumes),
        Some(_) => highest + 2, // the highest present volume is not the last
        None => highest + 1,
    };
    if let Some(missing) = (0..declared)
        .find(|n| !vols.contains_key(n))
        .filter(|_| !salvage)
    {
        return Err(Error::MissingVolume {
            stem: name.stem(),
            volume: missing,
            name: name.with_volume(missing).to_string(),
        });
    }
    let catalog_bytes = {
        let z = last.as_mut().unwrap_or(&mut first);
        read_small(z, src, last_name, CATALOG_ENTRY)?
    };
    let (catalog, has_catalog) = match catalog_bytes {
        Some(b) => (Catalog::parse(&b).map_err(fmt(last_name))?, true),
        None => {
            let mut entries = Vec::new();
            for (&n, v) in vols {
                let z = if n == 0 {
                    &mut first
                } else if n == highest {
                    last.as_mut().unwrap_or(&mut first)
                } else {
                    &mut open_volume(src, v)?
                };
                if n != 0 {
                    check_entries(z, src, v)?;
                }
                entries.extend(synthesise(z, n));
            }
            (Catalog { entries }, false)
        }
    };
    if let Some(z) = last.as_mut() {
        check_entries(z, src, last_name)?;
    }
    Ok(SetMeta {
        name,
        volumes: vols.clone(),
        version,
        summary,
        catalog,
        has_catalog,
    })
}

/// A catalog from the entries of a volume (archives without `.catalog.tsv`).
fn synthesise(zip: &mut zip::ZipArchive<Box<dyn ReadSeek>>, volume: u32) -> Vec<CatalogEntry> {
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let Ok(f) = zip.by_index_raw(i) else { continue };
        if !f.is_file() {
            continue;
        }
        let Ok(name) = f.name() else { continue };
        let Some(rel) = layout::rel_of_entry(&name) else {
            continue;
        };
        let secs = f
            .extra_data_fields()
            .find_map(|x| match x {
                zip::extra_fields::ExtraField::ExtendedTimestamp(t) => t.mod_time().map(i64::from),
                _ => None,
            })
            .or_else(|| {
                let d = f.last_modified()?;
                chrono::NaiveDate::from_ymd_opt(
                    i32::from(d.year()),
                    u32::from(d.month()),
                    u32::from(d.day()),
                )?
                .and_hms_opt(
                    u32::from(d.hour()),
                    u32::from(d.minute()),
                    u32::from(d.second()),
                )
                .map(|t| t.and_utc().timestamp())
            })
            .unwrap_or(0);
        out.push(CatalogEntry {
            path: rel.to_string(),
            size: f.size(),
            mtime: Mtime { secs, nanos: 0 },
            crc32: f.crc32(),
            location: Location::Volume(volume),
        });
    }
    out
}
