//! The repository layer's error type. Every variant names the place
//! (a storage location with credentials removed, a volume, an entry) and
//! [`Error::hint`] says what the admin can do. Archive-level findings are
//! [`Problem`]s first (verify lists them all); a reader that must stop
//! turns one into [`Error::Refused`], keeping it whole.

use serde::Serialize;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of thing is wrong with an archive (typed, so callers decide by
/// kind and not by message text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A volume, or a differential's base, is not there.
    Missing,
    /// A mailvault volume that was never finished: no `.summary.txt`, a
    /// status other than `complete`, or no catalog where one is required.
    Unfinished,
    /// Named like an archive but not a mailvault or Kerio backup.
    Foreign,
    /// Entry names or types that a restore must never write (zip-slip,
    /// absolute paths, symlinks, duplicates, control characters).
    Hostile,
    /// Unreadable ZIP structure, bad CRC, catalog and entries disagreeing.
    Damaged,
    /// A metadata file beyond its documented size bound.
    TooLarge,
}

impl ProblemKind {
    /// Lower-case word used in output.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Unfinished => "unfinished",
            Self::Foreign => "foreign",
            Self::Hostile => "hostile",
            Self::Damaged => "damaged",
            Self::TooLarge => "too-large",
        }
    }
}

/// One finding about an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The volume (or expected volume) concerned, as the storage describes it.
    pub archive: String,
    /// The entry concerned, if any.
    pub entry: Option<String>,
    /// What is wrong, with expected/got where it applies.
    pub message: String,
}

impl Problem {
    /// A problem with no particular entry.
    #[must_use]
    pub fn new(kind: ProblemKind, archive: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            archive: archive.into(),
            entry: None,
            message: message.into(),
        }
    }

    /// The same problem, about `entry`.
    #[must_use]
    pub fn at(mut self, entry: impl Into<String>) -> Self {
        self.entry = Some(entry.into());
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.entry {
            Some(e) => write!(f, "{}: entry `{e}`: {}", self.archive, self.message),
            None => write!(f, "{}: {}", self.archive, self.message),
        }
    }
}

/// A hard failure of a repository operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a named place failed.
    #[error("{action} {place}: {source}")]
    Io {
        /// What was being done (`cannot read`, `cannot create`, ...).
        action: &'static str,
        /// The place, as the storage describes it (a path in backticks).
        place: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An object or the repository itself does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// An object of that name exists already (commits never replace).
    #[error("{0} exists already")]
    AlreadyExists(String),
    /// Another run holds the repository.
    #[error("{place} is in use by another mailvault run ({holder})")]
    Locked {
        /// The repository.
        place: String,
        /// Who holds it: pid, command, start time, as far as can be found.
        holder: String,
    },
    /// An archive a reader was asked to use has a problem.
    #[error("{problem}")]
    Refused {
        /// The first problem found.
        problem: Problem,
        /// How many problems were found in all.
        count: usize,
        /// Whether the caller was already salvaging (the hint differs).
        salvaging: bool,
    },
    /// No usable backup in a repository.
    #[error("no usable backup in {place}{}", passed_over(.passed))]
    NoBackups {
        /// The repository.
        place: String,
        /// Sets passed over, with why.
        passed: Vec<PassedOver>,
    },
    /// A differential's base full is not in the repository.
    #[error("differential {diff} needs its base full {base}, which is not in {place}")]
    MissingBase {
        /// The differential.
        diff: String,
        /// Its base's stem.
        base: String,
        /// Where it was looked for.
        place: String,
    },
    /// The request does not fit the repository (bad name, no backup at that time).
    #[error("{0}")]
    Request(String),
    /// A remote target (S3, FTP) refused or failed an operation.
    #[error("{place}: {message}")]
    Target {
        /// The target or object, credentials removed.
        place: String,
        /// What failed, with the server's answer.
        message: String,
        /// What the admin can do (the backend knows: credentials, bucket, TLS).
        hint: Option<String>,
        /// Whether trying again may succeed (a dropped connection, a 5xx).
        transient: bool,
    },
    /// An encrypted object cannot be read: not authentic (altered,
    /// truncated, reordered), or not an encrypted mailvault file.
    #[error("{place}: {message}")]
    Crypt {
        /// The object.
        place: String,
        /// What is wrong.
        message: String,
    },
    /// An object is encrypted with another key than the one given.
    #[error("{place} is encrypted with key {found}, but the key given is {given}")]
    WrongKey {
        /// The object.
        place: String,
        /// The key id in the object's header.
        found: String,
        /// The key id of the key given.
        given: String,
    },
    /// A key file is missing, unreadable, malformed or too open.
    #[error("key {place}: {message}")]
    Key {
        /// The key file (or the environment variable naming it).
        place: String,
        /// What is wrong.
        message: String,
    },
}

/// A set a restore passed over while looking for the newest usable backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassedOver {
    /// `F20261122T010000Z`.
    pub stem: String,
    /// Why it was not used.
    pub reason: String,
    /// Whether it is a backup that is damaged, unfinished or hostile (as
    /// opposed to a file that is not a backup at all): restoring an older
    /// state because of it is worth a warning and exit code 3.
    pub damaged: bool,
    /// The kind of its first problem, if it has one.
    pub kind: Option<ProblemKind>,
}

fn passed_over(p: &[PassedOver]) -> String {
    if p.is_empty() {
        return String::new();
    }
    let list: Vec<String> = p
        .iter()
        .map(|p| format!("{} ({})", p.stem, p.reason))
        .collect();
    format!("; passed over: {}", list.join("; "))
}

impl Error {
    /// Advice for the admin, printed on its own line under the error.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                "the disk is full: free space or use a larger volume (with a target: --spool-dir, which needs room for one volume, two with --key); nothing was left under a final name".into()
            }
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                "run as a user that may read and write the backup directory".into()
            }
            Self::Locked { place, .. } if place.contains("://") => {
                format!("wait for the other run to finish; the lock of a run that died expires by itself (3 minutes after its last renewal). A lock whose expiry lies far ahead (a holder's clock set wrong) is removed by `mailvault unlock '{place}'` once you know no other run is going")
            }
            Self::Locked { .. } => {
                "wait for the other run to finish; a crashed run releases the lock by itself, so no manual unlock is ever needed".into()
            }
            Self::Refused {
                problem, salvaging, ..
            } => return refused_hint(problem.kind, *salvaging),
            Self::NoBackups { passed, .. }
                if passed.iter().any(|p| {
                    matches!(
                        p.kind,
                        Some(ProblemKind::Damaged | ProblemKind::Missing | ProblemKind::Unfinished | ProblemKind::TooLarge)
                    )
                }) =>
            {
                "run `mailvault verify` on the directory; `kmsrecover --salvage` on a damaged archive restores what is intact of it".into()
            }
            Self::NoBackups { passed, .. } if passed.iter().any(|p| p.kind == Some(ProblemKind::Hostile)) => {
                "the archives hold entries no restore may write: they were made or altered by something else; do not use them".into()
            }
            Self::NoBackups { place, .. } if place.contains("://") => {
                "the target holds no backup: check the URL's prefix (`mailvault list URL`), and give --key if its backups are encrypted".into()
            }
            Self::NoBackups { .. } => {
                "give the backup directory (default /opt/kerio/mailserver/store/backup) or an archive file".into()
            }
            Self::NotFound(place) if place.contains("://") => {
                "check the target URL: its bucket (or FTP directory) and prefix must exist and hold backups; `mailvault list URL` shows what is there".into()
            }
            Self::NotFound(_) => {
                "check the path: give the backup directory (default /opt/kerio/mailserver/store/backup) or one of its archive files".into()
            }
            Self::Target { hint: Some(h), .. } => h.clone(),
            Self::Target { transient: true, .. } => {
                "the connection failed after retries: check that the server is up and reachable, then run again; nothing was left under a final name".into()
            }
            Self::Crypt { message, .. } if message.contains("not encrypted") || message.contains("not an encrypted") => {
                "this file is a plain (unencrypted) file: a plain archive needs no key (any unzip opens it); in an encrypted repository move it out, or encrypt it with `mailvault encrypt`".into()
            }
            Self::Crypt { message, .. } if message.contains("not supported") => {
                "the file was written by a newer mailvault: read it with that version".into()
            }
            Self::Crypt { .. } => {
                "the file was altered, truncated or damaged after it was written: restore from another backup; nothing was written".into()
            }
            Self::WrongKey { .. } => {
                "give the key file this backup was made with (`mailvault key show FILE` prints a key's id)".into()
            }
            Self::Key { .. } => {
                "give a key file made by `mailvault key generate` (mode 0600), with --key FILE or MAILVAULT_KEY_FILE".into()
            }
            Self::MissingBase { .. } => {
                "copy the base full beside the differential, or restore from an older full".into()
            }
            _ => return None,
        })
    }

    /// An I/O error constructor for `map_err`.
    pub fn io(
        action: &'static str,
        place: impl Into<String>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let place = place.into();
        move |source| Self::Io {
            action,
            place,
            source,
        }
    }
}

fn refused_hint(kind: ProblemKind, salvaging: bool) -> Option<String> {
    Some(match (kind, salvaging) {
        (ProblemKind::Foreign, _) => {
            "this file is not a mailvault or Kerio backup: move it out of the backup directory".into()
        }
        (ProblemKind::Hostile, _) => {
            "the archive holds entries no restore may write; it was made or altered by something else: do not use it".into()
        }
        (ProblemKind::Missing, false) => {
            "copy the missing volume back beside the others, or use --salvage to restore what the other volumes hold".into()
        }
        (ProblemKind::Unfinished, false) => {
            "the backup was interrupted before it finished: restore from an older backup, or use --salvage to take what it holds".into()
        }
        (ProblemKind::Damaged | ProblemKind::TooLarge, false) => {
            "use --salvage to restore what is intact, or --at / an archive file to pick an older backup".into()
        }
        (_, true) => {
            "salvage cannot use this part of the archive; restore the rest from an older backup (--at or an archive file)".into()
        }
    })
}
