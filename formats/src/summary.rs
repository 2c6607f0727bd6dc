//! `.summary.txt`: the last entry of every volume, written when the volume
//! (and, in the last volume, the whole backup) ends
//! (docs/formats/archive.md, "`.summary.txt`").

use chrono::{DateTime, Utc};

use crate::keyvalue::Fields;
use crate::version::{format_time, parse_time};
use crate::{ArchiveKind, Error, Result};

const FILE: &str = ".summary.txt";

/// Why something was left out of a backup (docs/formats/archive.md, section 4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// `disabled-user`: a temporarily disabled user's mailbox, left out as Kerio does.
    DisabledUser,
    /// `special-file`: a symlink, socket, FIFO or device.
    SpecialFile,
    /// `vanished`: deleted while the backup ran.
    Vanished,
    /// `unreadable`: could not be read (with `--skip-unreadable`).
    Unreadable,
    /// `not-utf8`: a file name that is not UTF-8.
    NotUtf8,
    /// `unsafe-name`: a name that cannot be a portable archive path.
    UnsafeName,
    /// A reason written by a newer writer: kept verbatim, treated as a problem.
    Other(String),
}

impl SkipReason {
    /// The token written in `.summary.txt`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::DisabledUser => "disabled-user",
            Self::SpecialFile => "special-file",
            Self::Vanished => "vanished",
            Self::Unreadable => "unreadable",
            Self::NotUtf8 => "not-utf8",
            Self::UnsafeName => "unsafe-name",
            Self::Other(s) => s,
        }
    }

    /// Reads a token; unknown tokens are kept as [`SkipReason::Other`].
    #[must_use]
    pub fn parse(token: &str) -> Self {
        match token {
            "disabled-user" => Self::DisabledUser,
            "special-file" => Self::SpecialFile,
            "vanished" => Self::Vanished,
            "unreadable" => Self::Unreadable,
            "not-utf8" => Self::NotUtf8,
            "unsafe-name" => Self::UnsafeName,
            other => Self::Other(other.to_string()),
        }
    }

    /// Whether this skip is a problem (the backup exits 3) rather than policy.
    #[must_use]
    pub fn is_problem(&self) -> bool {
        !matches!(self, Self::DisabledUser | Self::SpecialFile)
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that was deliberately or unavoidably left out of the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Why.
    pub reason: SkipReason,
    /// Install-root-relative path of what was skipped (for `not-utf8`, the
    /// name with undecodable bytes replaced).
    pub path: String,
}

/// Totals of the whole backup, present in the last volume only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// `volumes`: how many volumes the backup has.
    pub volumes: u32,
    /// `files`: files stored in this backup (all volumes).
    pub files: u64,
    /// `bytes`: their uncompressed size.
    pub bytes: u64,
    /// `state-files`: files in the backed-up state (the catalog, deletions excluded).
    pub state_files: u64,
    /// `state-bytes`: their size.
    pub state_bytes: u64,
    /// `from-base`: for a differential, files unchanged since its base full.
    pub from_base: u64,
    /// `deleted`: for a differential, files deleted since its base full.
    pub deleted: u64,
}

/// The parsed `.summary.txt` of one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `type`.
    pub kind: ArchiveKind,
    /// `status`: `complete` when written by a finished backup.
    pub status: String,
    /// `started`, `ended`.
    pub started: DateTime<Utc>,
    /// When this volume was closed.
    pub ended: DateTime<Utc>,
    /// `volume`: this volume's number.
    pub volume: u32,
    /// `last-volume`: `yes` in the backup's last volume.
    pub last_volume: bool,
    /// `volume-files`, `volume-bytes`: files and uncompressed bytes under `@backup/` in this volume.
    pub volume_files: u64,
    /// Uncompressed bytes of this volume's `@backup/` files.
    pub volume_bytes: u64,
    /// Totals (last volume only).
    pub totals: Option<Totals>,
    /// `note`: free text lines, e.g. why a differential was written as a full.
    pub notes: Vec<String>,
    /// `skipped`: `<reason> <path>`, repeated (last volume only).
    pub skipped: Vec<Skipped>,
    /// `skipped-more`: items left out beyond the [`crate::limits::MAX_SKIPPED_LINES`]
    /// listed (counted, not named).
    pub skipped_more: u64,
}

impl Summary {
    /// Parses `.summary.txt`.
    ///
    /// # Errors
    /// Missing or malformed fields.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let f = Fields::parse(FILE, bytes)?;
        let last_volume = f.get("last-volume") == Some("yes");
        let totals = if last_volume {
            Some(Totals {
                volumes: f.parse_field(FILE, "volumes")?,
                files: f.parse_field(FILE, "files")?,
                bytes: f.parse_field(FILE, "bytes")?,
                state_files: f.parse_field(FILE, "state-files")?,
                state_bytes: f.parse_field(FILE, "state-bytes")?,
                from_base: f.parse_opt(FILE, "from-base")?.unwrap_or(0),
                deleted: f.parse_opt(FILE, "deleted")?.unwrap_or(0),
            })
        } else {
            None
        };
        let mut skipped = Vec::new();
        if f.all("skipped").count() > crate::limits::MAX_SKIPPED_LINES {
            return Err(Error::TooLarge {
                file: FILE,
                limit: crate::limits::MAX_SKIPPED_LINES as u64,
                unit: "`skipped:` lines",
            });
        }
        for v in f.all("skipped") {
            let (reason, path) = v.split_once(' ').ok_or_else(|| Error::BadField {
                file: FILE,
                key: "skipped".into(),
                value: v.into(),
                reason: "expected `<reason> <path>`".into(),
            })?;
            skipped.push(Skipped {
                reason: SkipReason::parse(reason),
                path: path.into(),
            });
        }
        Ok(Self {
            kind: ArchiveKind::from_word(f.require(FILE, "type")?)?,
            status: f.require(FILE, "status")?.to_string(),
            started: parse_time(&f, FILE, "started")?,
            ended: parse_time(&f, FILE, "ended")?,
            volume: f.parse_opt(FILE, "volume")?.unwrap_or(0),
            last_volume,
            volume_files: f.parse_opt(FILE, "volume-files")?.unwrap_or(0),
            volume_bytes: f.parse_opt(FILE, "volume-bytes")?.unwrap_or(0),
            totals,
            notes: f.all("note").map(str::to_string).collect(),
            skipped,
            skipped_more: f.parse_opt(FILE, "skipped-more")?.unwrap_or(0),
        })
    }

    /// The text form.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut f = Fields::default();
        f.push("type", self.kind);
        f.push("status", &self.status);
        f.push("started", format_time(self.started));
        f.push("ended", format_time(self.ended));
        f.push("volume", self.volume);
        f.push("last-volume", if self.last_volume { "yes" } else { "no" });
        f.push("volume-files", self.volume_files);
        f.push("volume-bytes", self.volume_bytes);
        if let Some(t) = &self.totals {
            f.push("volumes", t.volumes);
            f.push("files", t.files);
            f.push("bytes", t.bytes);
            f.push("state-files", t.state_files);
            f.push("state-bytes", t.state_bytes);
            if self.kind == ArchiveKind::Differential {
                f.push("from-base", t.from_base);
                f.push("deleted", t.deleted);
            }
        }
        for n in &self.notes {
            f.push("note", n);
        }
        for s in &self.skipped {
            f.push("skipped", format!("{} {}", s.reason, s.path));
        }
        if self.skipped_more > 0 {
            f.push("skipped-more", self.skipped_more);
        }
        f.to_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_last_volume() {
        let s = Summary {
            kind: ArchiveKind::Differential,
            status: "complete".into(),
            started: DateTime::from_timestamp(1_795_000_000, 0).unwrap(),
            ended: DateTime::from_timestamp(1_795_000_090, 0).unwrap(),
            volume: 1,
            last_volume: true,
            volume_files: 3,
            volume_bytes: 300,
            totals: Some(Totals {
                volumes: 2,
                files: 9,
                bytes: 900,
                state_files: 20,
                state_bytes: 2000,
                from_base: 11,
                deleted: 1,
            }),
            notes: vec!["hello".into()],
            skipped: vec![Skipped {
                reason: SkipReason::DisabledUser,
                path: "store/mail/example.com/old user".into(),
            }],
            skipped_more: 3,
        };
        let text = s.to_text();
        assert!(text.contains("skipped: disabled-user store/mail/example.com/old user\n"));
        assert_eq!(Summary::parse(text.as_bytes()).unwrap(), s);
    }
}
