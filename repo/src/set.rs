//! Backup sets: the volumes of one backup found in a repository, and what
//! their first and last volumes say about them ([`SetInfo`]), read once and
//! used by `list`, `verify`, rotation, the backup planner and every restore.
//!
//! A set is read cheaply (two central directories and two small entries):
//! enough to know its flavor (mailvault, Kerio, or not a backup at all) and
//! whether it is complete. The full check, catalog included, is
//! [`crate::check`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mailvault_formats::layout::{CATALOG_ENTRY, SUMMARY_ENTRY, VERSION_ENTRY};
use mailvault_formats::limits::{MAX_SUMMARY_BYTES, MAX_VERSION_BYTES};
use mailvault_formats::{ArchiveKind, ArchiveName, Summary, VersionInfo};
use serde::Serialize;

use crate::error::{Problem, ProblemKind};
use crate::reader::Volume;
use crate::storage::Storage;

/// Sets dated further ahead than this are suspect (a wrong clock, or a file
/// named to shadow every real backup): restores pass them over unless named,
/// `list` warns, and new backups are not named after them.
pub const FUTURE_SLACK: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// The volumes of one backup present in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSet {
    /// First-volume name.
    pub name: ArchiveName,
    /// Object names of the present volumes, by number.
    pub volumes: BTreeMap<u32, String>,
}

impl BackupSet {
    /// `F20261122T010000Z`.
    #[must_use]
    pub fn stem(&self) -> String {
        self.name.stem()
    }

    /// The object name of volume `n` (present or not).
    #[must_use]
    pub fn volume_name(&self, n: u32) -> String {
        self.name.with_volume(n).to_string()
    }

    /// Highest present volume number.
    #[must_use]
    pub fn highest(&self) -> u32 {
        self.volumes.keys().next_back().copied().unwrap_or(0)
    }
}

/// Groups object names into sets; names that are not archive names are left out.
#[must_use]
pub fn group(names: &[String]) -> Vec<BackupSet> {
    let mut sets: BTreeMap<ArchiveName, BackupSet> = BTreeMap::new();
    for n in names {
        if let Ok(a) = n.parse::<ArchiveName>() {
            sets.entry(a.first_volume())
                .or_insert_with(|| BackupSet {
                    name: a.first_volume(),
                    volumes: BTreeMap::new(),
                })
                .volumes
                .insert(a.volume, n.clone());
        }
    }
    sets.into_values().collect()
}

/// Who wrote a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// mailvault: `.version.txt` in mailvault's format; a catalog is required.
    Mailvault,
    /// Kerio Connect: a `.version.txt` in another format, no catalog. A
    /// restore writes what it holds and removes nothing.
    Kerio,
    /// Not a backup (no `.version.txt`, not a ZIP), or not readable enough to tell.
    Unknown,
}

/// Whether a set can be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "kebab-case")]
pub enum SetStatus {
    /// Every volume present and finished.
    Complete,
    /// Left by an interrupted commit or deletion (the journal says so): not
    /// a backup; the next run holding the lock removes it.
    Leftover(String),
    /// These volumes are missing.
    MissingVolumes(Vec<u32>),
    /// Volumes after the highest present one are missing (how many is unknown).
    MissingTail(u32),
    /// A mailvault backup that never finished (no summary, status not
    /// complete, no catalog).
    Unfinished(String),
    /// Not a mailvault or Kerio backup.
    Foreign(String),
    /// Unreadable metadata or ZIP structure.
    Damaged(String),
}

impl SetStatus {
    /// Whether a restore may use the set as it is.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        matches!(self, Self::Complete)
    }

    /// Whether the set is a backup at all (damaged or not), as opposed to a
    /// leftover or a foreign file.
    #[must_use]
    pub fn is_backup(&self) -> bool {
        !matches!(self, Self::Leftover(_) | Self::Foreign(_))
    }

    /// The problem kind this status amounts to, if any.
    #[must_use]
    pub fn problem_kind(&self) -> Option<ProblemKind> {
        Some(match self {
            Self::Complete | Self::Leftover(_) => return None,
            Self::MissingVolumes(_) | Self::MissingTail(_) => ProblemKind::Missing,
            Self::Unfinished(_) => ProblemKind::Unfinished,
            Self::Foreign(_) => ProblemKind::Foreign,
            Self::Damaged(_) => ProblemKind::Damaged,
        })
    }
}

impl std::fmt::Display for SetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Complete => f.write_str("ok"),
            Self::Leftover(why) => write!(f, "leftover of an interrupted run ({why})"),
            Self::MissingVolumes(v) => {
                let list: Vec<String> = v.iter().map(u32::to_string).collect();
                write!(f, "missing volume {}", list.join(", "))
            }
            Self::MissingTail(n) => write!(f, "missing volumes after {n}"),
            Self::Unfinished(r) => write!(f, "unfinished: {r}"),
            Self::Foreign(r) => write!(f, "not a backup: {r}"),
            Self::Damaged(r) => write!(f, "damaged: {r}"),
        }
    }
}

/// A set with what its first and last volumes say about it.
#[derive(Debug, Clone)]
pub struct SetInfo {
    /// The volumes.
    pub set: BackupSet,
    /// Who wrote it.
    pub flavor: Flavor,
    /// `.version.txt` of the first volume (mailvault flavor).
    pub version: Option<VersionInfo>,
    /// `.summary.txt` of the last volume (mailvault flavor).
    pub summary: Option<Summary>,
    /// Whether it can be used.
    pub status: SetStatus,
    /// Whether it is dated more than [`FUTURE_SLACK`] after `now`.
    pub in_future: bool,
    /// Bytes of the present volumes.
    pub bytes: u64,
}

impl SetInfo {
    /// The stem of the base full, for a differential.
    #[must_use]
    pub fn base(&self) -> Option<&str> {
        self.version.as_ref().and_then(|v| v.base.as_deref())
    }

    /// A set known to be a leftover, without opening it.
    #[must_use]
    pub fn leftover(storage: &dyn Storage, set: BackupSet, why: &str) -> Self {
        let bytes = set
            .volumes
            .values()
            .filter_map(|v| storage.size(v).ok())
            .sum();
        Self {
            set,
            flavor: Flavor::Unknown,
            version: None,
            summary: None,
            status: SetStatus::Leftover(why.to_string()),
            in_future: false,
            bytes,
        }
    }

    /// Reads the set's first and last volumes.
    #[must_use]
    pub fn read(storage: &dyn Storage, set: BackupSet, now: DateTime<Utc>) -> Self {
        let bytes = set
            .volumes
            .values()
            .filter_map(|v| storage.size(v).ok())
            .sum();
        let in_future = set.name.started > now + FUTURE_SLACK;
        let mut info = Self {
            set,
            flavor: Flavor::Unknown,
            version: None,
            summary: None,
            status: SetStatus::Complete,
            in_future,
            bytes,
        };
        info.status = read_status(storage, &mut info);
        info
    }

    /// The problem a restore would refuse this set for, if any.
    #[must_use]
    pub fn problem(&self, storage: &dyn Storage) -> Option<Problem> {
        let kind = self.status.problem_kind()?;
        let vol = match &self.status {
            SetStatus::MissingVolumes(v) => v.first().copied().unwrap_or(0),
            SetStatus::MissingTail(n) => n + 1,
            _ => 0,
        };
        Some(Problem::new(
            kind,
            storage.describe(&self.set.volume_name(vol)),
            self.status.to_string(),
        ))
    }
}

/// Kind, start and volume number `.version.txt` must agree with.
pub(crate) fn version_mismatch(v: &VersionInfo, name: &ArchiveName, volume: u32) -> Option<String> {
    (v.kind != name.kind || v.started != name.started || v.volume != volume).then(|| {
        format!(
            "`.version.txt` says {} volume {} started {}, the file name says {} volume {volume} started {}",
            v.kind,
            v.volume,
            mailvault_formats::version::format_time(v.started),
            name.kind,
            mailvault_formats::version::format_time(name.started)
        )
    })
}

/// Whether `.version.txt` text is mailvault's (it has a `format-version` field).
pub(crate) fn is_mailvault_version(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'\n')
        .any(|l| l.starts_with(b"format-version:"))
}

fn read_status(storage: &dyn Storage, info: &mut SetInfo) -> SetStatus {
    let set = &info.set;
    let Some(first_name) = set.volumes.get(&0) else {
        // Damage, not a leftover (leftovers are known by their journal): say
        // what the other volumes are, so a salvage knows its base and kind.
        if let Some(mut v) = set
            .volumes
            .values()
            .next()
            .and_then(|n| Volume::open(storage, n).ok())
            && let Ok(Some(b)) = v.read_meta(VERSION_ENTRY, MAX_VERSION_BYTES)
        {
            if is_mailvault_version(&b) {
                info.flavor = Flavor::Mailvault;
                info.version = VersionInfo::parse(&b).ok();
            } else {
                info.flavor = Flavor::Kerio;
            }
        }
        let set = &info.set;
        let mut missing = vec![0];
        missing.extend((1..set.highest()).filter(|n| !set.volumes.contains_key(n)));
        return SetStatus::MissingVolumes(missing);
    };
    let mut first = match Volume::open(storage, first_name) {
        Ok(v) => v,
        Err(p) => return SetStatus::Damaged(p.message),
    };
    let version_bytes = match first.read_meta(VERSION_ENTRY, MAX_VERSION_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return SetStatus::Foreign("no `.version.txt`: not a mailvault or Kerio backup".into());
        }
        Err(p) => return SetStatus::Damaged(p.to_string()),
    };
    if !is_mailvault_version(&version_bytes) {
        info.flavor = Flavor::Kerio;
        let highest = set.highest();
        let gaps: Vec<u32> = (0..highest)
            .filter(|n| !set.volumes.contains_key(n))
            .collect();
        if !gaps.is_empty() {
            return SetStatus::MissingVolumes(gaps);
        }
        let has_summary = if highest == 0 {
            first.has(SUMMARY_ENTRY)
        } else {
            match Volume::open(storage, &set.volume_name(highest)) {
                Ok(v) => v.has(SUMMARY_ENTRY),
                Err(p) => return SetStatus::Damaged(p.to_string()),
            }
        };
        return if has_summary {
            SetStatus::Complete
        } else {
            SetStatus::Unfinished("no `.summary.txt`: the backup did not finish".into())
        };
    }
    info.flavor = Flavor::Mailvault;
    let version = match VersionInfo::parse(&version_bytes) {
        Ok(v) => v,
        Err(e) => return SetStatus::Damaged(format!("`.version.txt`: {e}")),
    };
    if let Some(m) = version_mismatch(&version, &set.name, 0) {
        return SetStatus::Damaged(m);
    }
    info.version = Some(version);
    let highest = set.highest();
    let mut last_opened;
    let last = if highest == 0 {
        &mut first
    } else {
        last_opened = match Volume::open(storage, &set.volume_name(highest)) {
            Ok(v) => v,
            Err(p) => return SetStatus::Damaged(p.to_string()),
        };
        &mut last_opened
    };
    let summary = match last.read_meta(SUMMARY_ENTRY, MAX_SUMMARY_BYTES) {
        Ok(Some(b)) => match Summary::parse(&b) {
            Ok(s) => s,
            Err(e) => return SetStatus::Damaged(format!("volume {highest} `.summary.txt`: {e}")),
        },
        Ok(None) => {
            return SetStatus::Unfinished(format!(
                "volume {highest} has no `.summary.txt`: the backup did not finish"
            ));
        }
        Err(p) => return SetStatus::Damaged(p.to_string()),
    };
    let has_catalog = last.has(CATALOG_ENTRY);
    let status = if summary.status != "complete" {
        SetStatus::Unfinished(format!("`.summary.txt` says status `{}`", summary.status))
    } else if !summary.last_volume {
        SetStatus::MissingTail(highest)
    } else {
        let declared = summary.totals.as_ref().map_or(highest + 1, |t| t.volumes);
        let missing: Vec<u32> = (0..declared.max(highest + 1))
            .filter(|n| !set.volumes.contains_key(n))
            .collect();
        if !missing.is_empty() {
            SetStatus::MissingVolumes(missing)
        } else if declared != highest + 1 {
            SetStatus::Damaged(format!(
                "`.summary.txt` of volume {highest} says {declared} volumes"
            ))
        } else if !has_catalog {
            SetStatus::Unfinished("the last volume holds no catalog".into())
        } else if info
            .version
            .as_ref()
            .is_some_and(|v| v.kind == ArchiveKind::Differential && v.base.is_none())
        {
            SetStatus::Damaged("a differential whose `.version.txt` names no base".into())
        } else {
            SetStatus::Complete
        }
    };
    info.summary = Some(summary);
    status
}
