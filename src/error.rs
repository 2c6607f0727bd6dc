//! The engine's error type. Every variant carries the evidence (which path,
//! which archive or volume, which entry, what was expected) and
//! [`Error::hint`] says what the admin can do about it.

use std::path::PathBuf;

/// Result alias of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A hard failure: the operation stopped and left nothing under a final name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a named path failed.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done (`cannot read`, `cannot create`, ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The install directory does not look like a Kerio Connect install.
    #[error("`{0}` is not a Kerio Connect install: it has neither mailserver.cfg nor store/")]
    NotAnInstall(PathBuf),
    /// Another mailvault run holds the backup directory.
    #[error("backup directory `{dir}` is in use by another mailvault run ({holder})")]
    Locked {
        /// The backup directory.
        dir: PathBuf,
        /// What the lock file says about the holder (pid, start time, command).
        holder: String,
    },
    /// A file of the store could not be read (and `--skip-unreadable` was not given).
    #[error("cannot read `{path}`: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A mailvault file inside an archive is malformed.
    #[error("`{archive}`: {source}")]
    Format {
        /// The archive volume.
        archive: PathBuf,
        /// What is wrong.
        #[source]
        source: mailvault_formats::Error,
    },
    /// The ZIP structure of a volume is damaged or unreadable.
    #[error("`{archive}`: {reason}")]
    Zip {
        /// The archive volume.
        archive: PathBuf,
        /// The zip library's message.
        reason: String,
    },
    /// A volume of a multi-volume backup is missing.
    #[error("backup {stem} is missing volume {volume} (`{path}`)")]
    MissingVolume {
        /// The backup stem.
        stem: String,
        /// The missing volume number.
        volume: u32,
        /// Where it was expected.
        path: PathBuf,
    },
    /// Something given on the command line or in a config file is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The schedule configuration is malformed.
    #[error("`{path}`: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Advice for the admin, printed on its own line under the error.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                "the disk is full: free space or point --backup-dir at a larger volume; nothing was left under a final name".into()
            }
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                "run mailvault as a user that may read the install and write the backup directory".into()
            }
            Self::NotAnInstall(_) => "pass the Kerio Connect install directory with --install-dir (default /opt/kerio/mailserver)".into(),
            Self::Locked { .. } => {
                "wait for the other run to finish; a crashed run releases the lock by itself, so no manual unlock is ever needed".into()
            }
            Self::Unreadable { .. } => "fix the file's permissions, or pass --skip-unreadable to back up the rest and list it as skipped".into(),
            Self::MissingVolume { .. } => "copy the missing volume back beside the others; without it its files cannot be read".into(),
            Self::Zip { .. } | Self::Format { .. } => {
                "the archive is damaged: run `mailvault verify` on the backup directory and take a new full backup".into()
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
