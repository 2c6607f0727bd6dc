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
    /// A repository error (the backup directory: listing, lock, commit).
    #[error(transparent)]
    Repo(#[from] mailvault_repo::Error),
    /// A restore-library error (a chain that cannot be read, a restore refused).
    #[error(transparent)]
    Recover(#[from] mailvault_recover::Error),
    /// The install directory does not look like a Kerio Connect install.
    #[error(
        "`{0}` is not a Kerio Connect install: it has neither mailserver.cfg, users.cfg nor store/mail/"
    )]
    NotAnInstall(PathBuf),
    /// A file of the store could not be read (and `--skip-unreadable` was not given).
    #[error("cannot read `{path}`: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The ZIP structure of a volume is damaged or unreadable.
    #[error("`{archive}`: {reason}")]
    Zip {
        /// The archive volume.
        archive: PathBuf,
        /// The zip library's message.
        reason: String,
    },
    /// Something given on the command line or in a config file is wrong.
    #[error("{0}")]
    Invalid(String),
    /// A message asked for (`kmsrecover --message PATH`) is not in the backup read.
    #[error("`{path}` is not in {backup}")]
    NotInBackup {
        /// The install-relative path asked for.
        path: String,
        /// The backup read (`backup F… + D…`).
        backup: String,
    },
    /// A copy on a target does not read back as what was sent (removed again).
    #[error("{place}: {message}")]
    Upload {
        /// The object on the target.
        place: String,
        /// What differed.
        message: String,
    },
    /// A command line that cannot work (exit code 2), said with what to give instead.
    #[error("{0}")]
    Usage(String),
    /// An operation refused before it changed anything (a migration onto a
    /// directory that is not empty, rewrites that cannot be done).
    #[error("{reason}")]
    Refused {
        /// What was refused and why.
        reason: String,
        /// What to do instead.
        hint: String,
    },
    /// Writing an export's output (under `--out`) failed.
    #[error("{action} `{path}`: {source}")]
    ExportOutput {
        /// What was being done (`cannot create`, `cannot write`, ...).
        action: &'static str,
        /// The output path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
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
            Self::Repo(e) => return e.hint(),
            Self::Recover(e) => return e.hint(),
            Self::Upload { .. } => {
                "the target stored something else than was sent: the copy was removed and the local backup is kept; check the target's disk and run again".into()
            }
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                "the disk is full: free space and run again (a backup: or point --backup-dir, with a target --spool-dir, which needs room for one volume, two with --key, at a larger volume); nothing was left under a final name".into()
            }
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                "run mailvault as a user that may read the install and write the backup directory".into()
            }
            Self::Refused { hint, .. } => hint.clone(),
            Self::NotInBackup { .. } => {
                "find the archives that hold it with `mailvault search DIR --message-id ID` (or --subject, --from), then give one of them (the archive file, or --at its time) instead of the directory; nothing was changed".into()
            }
            Self::ExportOutput { .. } => {
                "pick an --out directory this user may write, on a disk with room: the mailbox being written was removed, mailboxes exported before it are complete (an export never writes into an existing mailbox directory)".into()
            }
            Self::NotAnInstall(_) => "pass the Kerio Connect install directory with --install-dir (default /opt/kerio/mailserver); nothing was created".into(),
            Self::Unreadable { .. } => "fix the file's permissions, or pass --skip-unreadable to back up the rest and list it as skipped".into(),
            Self::Zip { .. } => {
                "writing the archive failed: check the backup directory's disk and run the backup again".into()
            }
            _ => return None,
        })
    }

    /// Whether another run holds the backup directory (exit code 4).
    #[must_use]
    pub fn is_locked(&self) -> bool {
        matches!(self, Self::Repo(mailvault_repo::Error::Locked { .. }))
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
