//! Where backups are read from, as an admin names it: a backup directory,
//! one archive (any volume's first file), or a target URL; with `--at`
//! picking a time in a directory. [`open`] turns that into a repository
//! plus a [`Pick`], the same way for `kmsrecover`, `merge-eml --from`,
//! `export --from`, `search` and `migrate`.

use std::path::{Path, PathBuf};

use mailvault_repo::Repository;
use mailvault_repo::chain::Pick;
use mailvault_repo::target::{OpenOptions, Target, open_location};

use crate::error::{Error, Result};

/// An opened source of backups.
pub struct Source {
    /// The repository holding the backups.
    pub repo: Repository,
    /// Which state to read: the newest, at a time, or a named archive.
    pub pick: Pick,
    /// A local source's backup directory (never restored over; safety
    /// copies go beside it); `None` for a remote target.
    pub local_dir: Option<PathBuf>,
}

/// Opens a backup directory, an archive file or a target URL; `key` for
/// encrypted backups, `at` for the newest state at or before a time (only
/// with a directory or target).
///
/// # Errors
/// [`Error::Usage`] for `--at` with an archive file; a missing path; the
/// repository's errors (a bad URL, credentials, a wrong key).
pub fn open(
    location: &str,
    key: Option<&Path>,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Source> {
    let newest = at.map_or(Pick::Newest, Pick::At);
    let target = Target::parse(location)?;
    let (local_dir, pick) = match target.local_dir() {
        None => (None, newest),
        Some(source) => match std::fs::metadata(source) {
            Ok(m) if m.is_dir() => (Some(source.to_path_buf()), newest),
            Ok(_) if at.is_some() => {
                return Err(Error::Usage(
                    "--at picks a backup in a directory: give the backup directory, or the archive alone".into(),
                ));
            }
            Ok(_) => {
                let file = source
                    .file_name()
                    .and_then(|f| f.to_str())
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "`{}`: the archive name is not UTF-8",
                            source.display()
                        ))
                    })?
                    .to_string();
                let dir = source
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
                (Some(dir), Pick::Archive(file))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(
                    mailvault_repo::Error::NotFound(format!("`{}`", source.display())).into(),
                );
            }
            Err(e) => {
                return Err(Error::Io {
                    action: "cannot open",
                    path: source.to_path_buf(),
                    source: e,
                });
            }
        },
    };
    let location = local_dir.as_ref().map_or_else(
        || location.to_string(),
        |d| d.to_string_lossy().into_owned(),
    );
    let repo = Repository::from_arc(open_location(&location, key, &OpenOptions::default())?);
    Ok(Source {
        repo,
        pick,
        local_dir,
    })
}
