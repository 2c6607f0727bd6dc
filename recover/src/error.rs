//! The recovery library's error type: each variant names the archive,
//! volume, entry or path concerned, and [`Error::hint`] says what to do.

use std::path::PathBuf;

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A hard failure of a restore: the target is left as it was (or, once
/// swapping started, each folder old or new; a re-run converges).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a named path failed.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No backup to restore from.
    #[error("no backup archives in {0}")]
    NoBackups(String),
    /// A differential's base full is not beside it.
    #[error("differential {diff} needs its base full {base}, which is not in {place}")]
    MissingBase {
        /// The differential's stem.
        diff: String,
        /// The base's stem.
        base: String,
        /// Where it was looked for.
        place: String,
    },
    /// A volume is missing.
    #[error("backup {stem} is missing volume {volume} ({name})")]
    MissingVolume {
        /// Backup stem.
        stem: String,
        /// Volume number.
        volume: u32,
        /// Expected file name.
        name: String,
    },
    /// An archive or one of its entries is damaged.
    #[error("{archive}: {reason}")]
    Damaged {
        /// Volume (as described by the source).
        archive: String,
        /// What is wrong (entry, expected/got).
        reason: String,
    },
    /// A malformed mailvault metadata file.
    #[error("{archive}: {source}")]
    Format {
        /// Volume.
        archive: String,
        /// Parse error.
        #[source]
        source: mailvault_formats::Error,
    },
    /// The request does not fit the backup or the command line is inconsistent.
    #[error("{0}")]
    Request(String),
    /// A target path that may not be written (hostile entry, or outside the target).
    #[error("refused entry `{entry}` in {archive}: {reason}")]
    Hostile {
        /// Volume.
        archive: String,
        /// Entry name.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The mail server is running.
    #[error("the mail server is running ({0})")]
    ServerRunning(String),
}

impl Error {
    /// Advice for the admin.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::NoBackups(_) => "give the backup directory (default /opt/kerio/mailserver/store/backup) or an archive file".into(),
            Self::MissingBase { .. } => "copy the base full beside the differential, or restore from the full alone".into(),
            Self::MissingVolume { .. } => "copy the missing volume back beside the others, or use --salvage to restore what the other volumes hold".into(),
            Self::Damaged { .. } => "use --salvage to restore what is intact, or --at to pick an older backup".into(),
            Self::ServerRunning(_) => "stop the mail server first (or pass --force if you know it is safe)".into(),
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                "the disk is full: free space; folders already swapped are complete, run again to finish".into()
            }
            _ => return None,
        })
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
