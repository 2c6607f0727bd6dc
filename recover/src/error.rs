//! The recovery library's error type: each variant names the archive,
//! volume, entry or path concerned, keeps its source (repository errors
//! whole), and [`Error::hint`] says what to do.

use std::path::PathBuf;

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A hard failure of a restore: the target is left as it was (or, once
/// swapping started, each root old or new; a re-run converges).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A repository error (no backups, a refused archive, a lock, I/O there).
    #[error(transparent)]
    Repo(#[from] mailvault_repo::Error),
    /// An I/O operation on a named path of the target failed.
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
    /// The options contradict each other or are malformed (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The request does not fit the backup (a domain it does not hold…).
    #[error("{0}")]
    Request(String),
    /// A destination path that may not be written.
    #[error("refused destination `{path}`: {reason}")]
    Unsafe {
        /// The install-relative path.
        path: String,
        /// Why.
        reason: String,
    },
    /// An entry could not be read while staging (nothing live was changed).
    #[error("{0}")]
    Damaged(mailvault_repo::Problem),
    /// The mail server is running.
    #[error("the mail server is running ({0})")]
    ServerRunning(String),
    /// Another restore works on the same install.
    #[error("another kmsrecover or mail tool is writing `{path}` ({holder})")]
    Busy {
        /// The install (or --into) directory.
        path: PathBuf,
        /// Who holds it.
        holder: String,
    },
    /// The safety copy could not be taken (nothing was changed).
    #[error("safety copy failed, nothing was changed: {0}")]
    SafetyCopy(String),
}

impl Error {
    /// Advice for the admin.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Repo(e) => return e.hint(),
            Self::Damaged(_) => {
                "nothing live was changed; restore an older backup (--at TIME with the backup directory, or name an older archive), or use --salvage to take what is intact".into()
            }
            Self::ServerRunning(_) => "stop the mail server first (or pass --force if you know it is safe)".into(),
            Self::Busy { .. } => "wait for the other restore or mail tool to finish; a killed one releases the lock by itself".into(),
            Self::SafetyCopy(_) => {
                "free space where the safety copy goes (--safety-dir), or pass --no-safety-copy if you have another way back".into()
            }
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                "the disk is full: free space and run again; roots already swapped are complete, the others untouched".into()
            }
            _ => return None,
        })
    }

    /// Whether this is a usage error (exit code 2).
    #[must_use]
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Usage(_))
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
