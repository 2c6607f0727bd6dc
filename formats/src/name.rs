//! Archive file names: `{F|D|C}YYYYMMDDTHHMMSSZ.zip` for the first volume and
//! `….N.zip` for continuation volumes (docs/formats/archive.md, "Names").
//! The time is the UTC start of the backup in ISO-8601 basic form, exactly as
//! Kerio Connect names its backups.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::{Error, Result};

/// What kind of backup an archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArchiveKind {
    /// `F`: a full backup, the base of a chain.
    Full,
    /// `D`: everything new or changed since its base full (cumulative).
    Differential,
    /// `C`: a copy ("Start now") backup: complete like a full.
    Copy,
}

impl ArchiveKind {
    /// The letter that starts the file name.
    #[must_use]
    pub fn letter(self) -> char {
        match self {
            Self::Full => 'F',
            Self::Differential => 'D',
            Self::Copy => 'C',
        }
    }

    /// The word used in `.version.txt` and in output.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Differential => "differential",
            Self::Copy => "copy",
        }
    }

    /// Whether this archive is self-contained and so can start a chain.
    #[must_use]
    pub fn is_complete(self) -> bool {
        !matches!(self, Self::Differential)
    }

    /// Parses the word form (`full`, `differential`, `copy`).
    ///
    /// # Errors
    /// An unknown word.
    pub fn from_word(word: &str) -> Result<Self> {
        match word {
            "full" => Ok(Self::Full),
            "differential" => Ok(Self::Differential),
            "copy" => Ok(Self::Copy),
            _ => Err(Error::BadField {
                file: ".version.txt",
                key: "type".into(),
                value: word.into(),
                reason: "expected full, differential or copy".into(),
            }),
        }
    }
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// The parsed name of one archive volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArchiveName {
    /// Start time (UTC, whole seconds). Sorts before `kind` so names order by time.
    pub started: DateTime<Utc>,
    /// Full, differential or copy.
    pub kind: ArchiveKind,
    /// 0 for the first volume (`X.zip`), N for `X.N.zip`.
    pub volume: u32,
}

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

impl ArchiveName {
    /// The first-volume name of a backup started at `started` (sub-seconds dropped).
    #[must_use]
    pub fn new(kind: ArchiveKind, started: DateTime<Utc>) -> Self {
        let secs = started.timestamp();
        let started = DateTime::from_timestamp(secs, 0).unwrap_or(started);
        Self {
            started,
            kind,
            volume: 0,
        }
    }

    /// `F20261122T010000Z`: the name without volume number and extension,
    /// which identifies the backup (used as `base:` in a differential).
    #[must_use]
    pub fn stem(&self) -> String {
        format!("{}{}", self.kind.letter(), self.started.format(TIME_FORMAT))
    }

    /// The same backup, volume `n`.
    #[must_use]
    pub fn with_volume(&self, volume: u32) -> Self {
        Self { volume, ..*self }
    }

    /// The same backup, first volume.
    #[must_use]
    pub fn first_volume(&self) -> Self {
        self.with_volume(0)
    }

    /// Parses a stem such as `F20261122T010000Z` (no volume, no extension).
    ///
    /// # Errors
    /// Anything but a type letter followed by a UTC basic-form time.
    pub fn parse_stem(stem: &str) -> Result<Self> {
        let bad = |reason| Error::BadName {
            name: stem.to_string(),
            reason,
        };
        let mut chars = stem.chars();
        let kind = match chars.next() {
            Some('F') => ArchiveKind::Full,
            Some('D') => ArchiveKind::Differential,
            Some('C') => ArchiveKind::Copy,
            _ => return Err(bad("must start with F, D or C")),
        };
        let time = chars.as_str();
        // Exactly the basic form: chrono alone would accept spaces and short fields.
        let shape = time.len() == 16
            && time.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b'T',
                15 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        if !shape {
            return Err(bad("time must be YYYYMMDDTHHMMSSZ"));
        }
        let naive = NaiveDateTime::parse_from_str(time, TIME_FORMAT)
            .map_err(|_| bad("time must be YYYYMMDDTHHMMSSZ"))?;
        Ok(Self {
            started: naive.and_utc(),
            kind,
            volume: 0,
        })
    }
}

impl FromStr for ArchiveName {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let bad = |reason| Error::BadName {
            name: name.to_string(),
            reason,
        };
        let rest = name
            .strip_suffix(".zip")
            .ok_or_else(|| bad("must end in .zip"))?;
        let (stem, volume) = match rest.split_once('.') {
            None => (rest, 0),
            Some((stem, n)) => {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
                    return Err(bad("volume number must be a positive decimal number"));
                }
                let volume = n.parse().map_err(|_| bad("volume number too large"))?;
                (stem, volume)
            }
        };
        let parsed =
            Self::parse_stem(stem).map_err(|_| bad("must be {F|D|C}YYYYMMDDTHHMMSSZ[.N].zip"))?;
        Ok(parsed.with_volume(volume))
    }
}

impl fmt::Display for ArchiveName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.volume == 0 {
            write!(f, "{}.zip", self.stem())
        } else {
            write!(f, "{}.{}.zip", self.stem(), self.volume)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_kerio_names() {
        for s in [
            "F20120118T220007Z.zip",
            "C20041027T100000Z.1.zip",
            "D20261124T010000Z.12.zip",
        ] {
            let n: ArchiveName = s.parse().unwrap();
            assert_eq!(n.to_string(), s);
        }
        let n: ArchiveName = "F20120118T220007Z.zip".parse().unwrap();
        assert_eq!(n.started.to_rfc3339(), "2012-01-18T22:00:07+00:00");
    }

    #[test]
    fn rejects_near_misses() {
        for s in [
            "X20120118T220007Z.zip",
            "F20120118T220007.zip",
            "F20121318T220007Z.zip",
            "F20120118T220007Z.0.zip",
            "F20120118T220007Z.01.zip",
            "F20120118T220007Z.zip.enc",
            "F20120118T220007Z.a.zip",
            "D\t2026114T010000Z.zip",
            "F2012 118T220007Z.zip",
            ".tmp.F20120118T220007Z.zip",
        ] {
            assert!(s.parse::<ArchiveName>().is_err(), "{s}");
        }
    }

    #[test]
    fn orders_by_time_then_kind() {
        let a: ArchiveName = "D20261124T010000Z.zip".parse().unwrap();
        let b: ArchiveName = "F20261123T010000Z.zip".parse().unwrap();
        assert!(b < a);
    }
}
