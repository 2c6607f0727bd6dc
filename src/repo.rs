//! The backup directory: which archive sets it holds, their metadata, the
//! lock that keeps two runs apart, and the temporaries of interrupted runs.
//!
//! Invariants (docs/formats/archive.md, "Crash safety"):
//! - archives are written as `.mailvault-tmp-<name>` and renamed when complete;
//!   a set is committed by renaming its continuation volumes first and its
//!   first volume last, and deleted in the opposite order (first volume first);
//!   so continuation volumes without a first volume are leftovers of an
//!   interrupted commit or deletion, and like temporaries they are removed by
//!   the next run that holds the lock;
//! - the lock is an OS file lock (`File::try_lock`) on `.mailvault.lock`: the
//!   kernel drops it when the holder dies, so a stale lock cannot exist.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use mailvault_formats::layout::{CATALOG_ENTRY, SUMMARY_ENTRY, VERSION_ENTRY};
use mailvault_formats::{ArchiveName, Catalog, Summary, VersionInfo};

use crate::error::{Error, Result};

/// Prefix of temporary files in the backup directory.
pub const TEMP_PREFIX: &str = ".mailvault-tmp-";
/// The lock file.
pub const LOCK_FILE: &str = ".mailvault.lock";

/// A backup directory.
#[derive(Debug, Clone)]
pub struct BackupDir {
    path: PathBuf,
}

/// Every present volume of one backup, by volume number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSet {
    /// First-volume name (volume 0).
    pub name: ArchiveName,
    /// Present volumes, by number.
    pub volumes: BTreeMap<u32, PathBuf>,
    dir: PathBuf,
}

impl ArchiveSet {
    /// `F20261122T010000Z`.
    #[must_use]
    pub fn stem(&self) -> String {
        self.name.stem()
    }

    /// Where volume `n` is or would be.
    #[must_use]
    pub fn volume_path(&self, n: u32) -> PathBuf {
        self.dir.join(self.name.with_volume(n).to_string())
    }

    /// Bytes on disk of the present volumes.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.volumes
            .values()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// Whether a set can be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetStatus {
    /// Every volume present, metadata readable.
    Complete,
    /// These volumes are missing (by number).
    MissingVolumes(Vec<u32>),
    /// Volumes after the highest present one are missing (count unknown).
    MissingTail(u32),
    /// Metadata could not be read.
    Unreadable(String),
}

impl std::fmt::Display for SetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Complete => f.write_str("ok"),
            Self::MissingVolumes(v) => {
                let list: Vec<String> = v.iter().map(u32::to_string).collect();
                write!(f, "missing volume {}", list.join(", "))
            }
            Self::MissingTail(n) => write!(f, "missing volumes after {n}"),
            Self::Unreadable(r) => write!(f, "unreadable: {r}"),
        }
    }
}

/// A set with what its volumes say about it.
#[derive(Debug, Clone)]
pub struct ArchiveInfo {
    /// The volumes.
    pub set: ArchiveSet,
    /// `.version.txt` of the first volume.
    pub version: Option<VersionInfo>,
    /// `.summary.txt` of the last volume.
    pub summary: Option<Summary>,
    /// Completeness.
    pub status: SetStatus,
}

impl ArchiveInfo {
    /// The stem of the base full, for a differential.
    #[must_use]
    pub fn base(&self) -> Option<&str> {
        self.version.as_ref().and_then(|v| v.base.as_deref())
    }
}

/// Held while a run works on a backup directory; dropping it unlocks.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl BackupDir {
    /// A backup directory at `path` (it need not exist yet).
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory if needed.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.path)
            .map_err(Error::io("cannot create backup directory", &self.path))
    }

    /// Takes the directory's lock, recording `command` and our pid for whoever
    /// finds it taken.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the holder, or I/O errors.
    pub fn lock(&self, command: &str) -> Result<DirLock> {
        let path = self.path.join(LOCK_FILE);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io("cannot open lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.lines().collect::<Vec<_>>().join(", ");
                return Err(Error::Locked {
                    dir: self.path.clone(),
                    holder: if holder.is_empty() {
                        "holder unknown".into()
                    } else {
                        holder
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("cannot lock", &path)(e)),
        }
        let info = format!(
            "pid {}\nstarted {}\ncommand {command}\n",
            std::process::id(),
            mailvault_formats::version::format_time(chrono::Utc::now())
        );
        file.set_len(0)
            .and_then(|()| file.write_all(info.as_bytes()))
            .map_err(Error::io("cannot write lock file", &path))?;
        Ok(DirLock { _file: file })
    }

    /// Takes the directory's lock shared, for readers (kmsrecover) that must
    /// not see archives deleted under them by a rotation. Backups and
    /// rotations take it exclusively, so each waits for the other. `None` when
    /// the directory cannot hold a lock file (read-only backup media).
    ///
    /// # Errors
    /// [`Error::Locked`] while a backup or rotation runs.
    pub fn lock_shared(&self) -> Result<Option<DirLock>> {
        let path = self.path.join(LOCK_FILE);
        let file = match fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            Err(_) => match fs::File::open(&path) {
                Ok(f) => f,
                Err(_) => return Ok(None),
            },
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(DirLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path)
                    .unwrap_or_default()
                    .lines()
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(Error::Locked {
                    dir: self.path.clone(),
                    holder: if holder.is_empty() {
                        "holder unknown".into()
                    } else {
                        holder
                    },
                })
            }
            Err(fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", &path)(e)),
        }
    }

    /// Every archive set in the directory, oldest first. Files whose names are
    /// not archive names are ignored.
    ///
    /// # Errors
    /// The directory cannot be listed (a missing directory is empty).
    pub fn sets(&self) -> Result<Vec<ArchiveSet>> {
        let mut sets: BTreeMap<ArchiveName, ArchiveSet> = BTreeMap::new();
        let rd = match fs::read_dir(&self.path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot list", &self.path)(e)),
        };
        for entry in rd {
            let entry = entry.map_err(Error::io("cannot list", &self.path))?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<ArchiveName>().ok())
            else {
                continue;
            };
            sets.entry(name.first_volume())
                .or_insert_with(|| ArchiveSet {
                    name: name.first_volume(),
                    volumes: BTreeMap::new(),
                    dir: self.path.clone(),
                })
                .volumes
                .insert(name.volume, entry.path());
        }
        Ok(sets.into_values().collect())
    }

    /// Reads what each set's volumes say about it.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn infos(&self) -> Result<Vec<ArchiveInfo>> {
        Ok(self.sets()?.into_iter().map(read_info).collect())
    }

    /// Removes temporaries and orphaned continuation volumes left by
    /// interrupted runs. Only call while holding the lock. Returns what was removed.
    ///
    /// # Errors
    /// The directory cannot be listed or a leftover cannot be removed.
    pub fn remove_leftovers(&self, _lock: &DirLock) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        if let Ok(rd) = fs::read_dir(&self.path) {
            for entry in rd.flatten() {
                if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    fs::remove_file(entry.path())
                        .map_err(Error::io("cannot remove stale temporary", entry.path()))?;
                    removed.push(entry.path());
                }
            }
        }
        for set in self.sets()? {
            if !set.volumes.contains_key(&0) {
                for p in set.volumes.values() {
                    fs::remove_file(p).map_err(Error::io("cannot remove orphaned volume", p))?;
                    removed.push(p.clone());
                }
            }
        }
        Ok(removed)
    }

    /// Deletes a set: first volume first, so an interruption leaves only
    /// orphaned continuation volumes that the next run removes.
    ///
    /// # Errors
    /// A volume cannot be removed.
    pub fn delete_set(&self, set: &ArchiveSet, _lock: &DirLock) -> Result<()> {
        for p in set.volumes.values() {
            fs::remove_file(p).map_err(Error::io("cannot delete", p))?;
        }
        sync_dir(&self.path)
    }
}

/// fsyncs a directory so that renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("cannot sync directory", dir))
}

/// Opens a volume as a ZIP archive.
pub(crate) fn open_zip(path: &Path) -> Result<zip::ZipArchive<BufReader<File>>> {
    let f = File::open(path).map_err(Error::io("cannot open", path))?;
    zip::ZipArchive::new(BufReader::with_capacity(64 * 1024, f)).map_err(|e| Error::Zip {
        archive: path.to_path_buf(),
        reason: format!("not a readable ZIP archive: {e}"),
    })
}

/// Reads a whole entry of an open volume, `None` when absent.
pub(crate) fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
    name: &str,
) -> Result<Option<Vec<u8>>> {
    let mut file = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => {
            return Err(Error::Zip {
                archive: path.to_path_buf(),
                reason: format!("entry `{name}`: {e}"),
            });
        }
    };
    let mut buf = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0).min(1 << 26));
    file.read_to_end(&mut buf).map_err(|e| Error::Zip {
        archive: path.to_path_buf(),
        reason: format!("entry `{name}`: {e}"),
    })?;
    Ok(Some(buf))
}

fn format_err(path: &Path) -> impl FnOnce(mailvault_formats::Error) -> Error + '_ {
    move |source| Error::Format {
        archive: path.to_path_buf(),
        source,
    }
}

/// Reads an entry that must be there; `missing` says what its absence means.
fn required<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
    name: &str,
    missing: &str,
) -> Result<Vec<u8>> {
    read_entry(zip, path, name)?.ok_or_else(|| Error::Zip {
        archive: path.to_path_buf(),
        reason: format!("no `{name}` entry: {missing}"),
    })
}

fn version_of<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
) -> Result<VersionInfo> {
    VersionInfo::parse(&required(
        zip,
        path,
        VERSION_ENTRY,
        "not a mailvault archive",
    )?)
    .map_err(format_err(path))
}

fn summary_of<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
) -> Result<Summary> {
    Summary::parse(&required(
        zip,
        path,
        SUMMARY_ENTRY,
        "the volume was not finished",
    )?)
    .map_err(format_err(path))
}

fn catalog_of<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
) -> Result<Catalog> {
    Catalog::parse(&required(
        zip,
        path,
        CATALOG_ENTRY,
        "the last volume holds no catalog",
    )?)
    .map_err(format_err(path))
}

/// Reads a set's metadata and works out whether it is complete.
#[must_use]
pub fn read_info(set: ArchiveSet) -> ArchiveInfo {
    read_info_with(set, false).0
}

/// [`read_info`] plus the catalog, opening each volume at most once (a
/// central directory of a large backup takes a while to read).
#[must_use]
pub fn read_info_and_catalog(set: ArchiveSet) -> (ArchiveInfo, Option<Result<Catalog>>) {
    read_info_with(set, true)
}

fn read_info_with(set: ArchiveSet, want_catalog: bool) -> (ArchiveInfo, Option<Result<Catalog>>) {
    let mut info = ArchiveInfo {
        set,
        version: None,
        summary: None,
        status: SetStatus::Complete,
    };
    let Some(first) = info.set.volumes.get(&0).cloned() else {
        info.status = SetStatus::MissingVolumes(vec![0]);
        return (info, None);
    };
    let Some((&highest, last_path)) = info
        .set
        .volumes
        .last_key_value()
        .map(|(n, p)| (n, p.clone()))
    else {
        return (info, None);
    };
    let mut first_zip = match open_zip(&first) {
        Ok(z) => z,
        Err(e) => {
            info.status = SetStatus::Unreadable(e.to_string());
            return (info, None);
        }
    };
    match version_of(&mut first_zip, &first) {
        Ok(v) => info.version = Some(v),
        Err(e) => {
            info.status = SetStatus::Unreadable(e.to_string());
            return (info, None);
        }
    }
    let mut last_zip = if highest == 0 {
        first_zip
    } else {
        drop(first_zip);
        match open_zip(&last_path) {
            Ok(z) => z,
            Err(e) => {
                info.status = SetStatus::Unreadable(e.to_string());
                return (info, None);
            }
        }
    };
    match summary_of(&mut last_zip, &last_path) {
        Ok(s) => {
            let gaps: Vec<u32> = (0..highest)
                .filter(|n| !info.set.volumes.contains_key(n))
                .collect();
            info.status = if !s.last_volume {
                SetStatus::MissingTail(highest)
            } else if !gaps.is_empty() {
                SetStatus::MissingVolumes(gaps)
            } else {
                SetStatus::Complete
            };
            info.summary = Some(s);
        }
        Err(e) => info.status = SetStatus::Unreadable(e.to_string()),
    }
    let catalog = (want_catalog && info.status == SetStatus::Complete)
        .then(|| catalog_of(&mut last_zip, &last_path));
    (info, catalog)
}

/// Reads the catalog of a complete set (from its last volume).
///
/// # Errors
/// The last volume cannot be read or its catalog is malformed or absent.
pub fn read_catalog(set: &ArchiveSet) -> Result<Catalog> {
    let (_, last) = set
        .volumes
        .last_key_value()
        .ok_or_else(|| Error::MissingVolume {
            stem: set.stem(),
            volume: 0,
            path: set.volume_path(0),
        })?;
    let mut zip = open_zip(last)?;
    catalog_of(&mut zip, last)
}
