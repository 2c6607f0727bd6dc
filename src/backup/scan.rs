//! Walks an install and lists what a backup takes: `mailserver.cfg`,
//! `users.cfg`, `license/`, `sslca/`, `sslcert/` and `store/`, minus the store's
//! logs, queue, tmp, archive and backup directories, the backup directory
//! itself wherever it lies, and the mailboxes of temporarily disabled users
//! (recorded as skipped, as Kerio does). Order is deterministic (sorted by
//! name) so that archives of the same state list entries the same way.
//! It reads metadata only; file contents are read by the writer.

use std::collections::HashSet;
use std::path::Path;

use mailvault_formats::layout::{
    self, CONFIG_DIRS, CONFIG_FILES, EXCLUDED_STORE_DIRS, MailboxPath,
};
use mailvault_formats::{Mtime, Skipped};
use walkdir::WalkDir;

use crate::error::{Error, Result};

/// A file the backup will take.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Install-relative path, `/`-separated.
    pub rel: String,
    /// Size when scanned.
    pub size: u64,
    /// Modification time when scanned.
    pub mtime: Mtime,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files to take, in archive order.
    pub files: Vec<SourceFile>,
    /// What was left out, with reasons.
    pub skipped: Vec<Skipped>,
    /// Remarks for the summary (e.g. users.cfg unreadable).
    pub notes: Vec<String>,
    /// Skips that are problems (vanished, unreadable) rather than policy.
    pub problems: usize,
}

/// Scans `install`, leaving out `backup_dir` if it lies inside.
///
/// # Errors
/// Not an install; an unreadable directory unless `skip_unreadable`.
pub fn scan(install: &Path, backup_dir: &Path, skip_unreadable: bool) -> Result<Scan> {
    if !install.join("mailserver.cfg").is_file() && !install.join("store").is_dir() {
        return Err(Error::NotAnInstall(install.to_path_buf()));
    }
    let mut out = Scan::default();
    let disabled = disabled_mailboxes(install, &mut out);
    let backup_canon = backup_dir.canonicalize().ok();

    for name in CONFIG_FILES {
        let abs = install.join(name);
        if let Ok(meta) = std::fs::symlink_metadata(&abs)
            && meta.is_file()
        {
            out.files.push(SourceFile {
                rel: name.into(),
                size: meta.len(),
                mtime: mtime_of(&meta),
            });
        }
    }
    for dir in CONFIG_DIRS.iter().chain(std::iter::once(&"store")) {
        let root = install.join(dir);
        if !root.is_dir() {
            continue;
        }
        let mut walker = WalkDir::new(&root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = walker.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| root.clone());
                    let rel =
                        rel_string(install, &path).unwrap_or_else(|| path.display().to_string());
                    let io = e.into_io_error();
                    if io
                        .as_ref()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                    {
                        out.skipped.push(Skipped {
                            reason: "vanished".into(),
                            path: rel,
                        });
                        out.problems += 1;
                        continue;
                    }
                    if skip_unreadable {
                        out.skipped.push(Skipped {
                            reason: "unreadable".into(),
                            path: rel,
                        });
                        out.problems += 1;
                        continue;
                    }
                    return Err(Error::Unreadable {
                        path,
                        source: io.unwrap_or_else(|| std::io::Error::other("filesystem loop")),
                    });
                }
            };
            let path = entry.path();
            let Some(rel) = rel_string(install, path) else {
                out.skipped.push(Skipped {
                    reason: "not-utf8".into(),
                    path: path.to_string_lossy().into_owned(),
                });
                out.problems += 1;
                if entry.file_type().is_dir() {
                    walker.skip_current_dir();
                }
                continue;
            };
            if entry.file_type().is_dir() {
                if excluded_dir(&rel, path, backup_canon.as_deref()) {
                    walker.skip_current_dir();
                } else if let Some(m) = MailboxPath::parse(&rel).filter(|m| m.rest.is_empty())
                    && disabled.contains(&(m.domain.to_lowercase(), m.mailbox.to_lowercase()))
                {
                    out.skipped.push(Skipped {
                        reason: "disabled-user".into(),
                        path: rel,
                    });
                    walker.skip_current_dir();
                }
                continue;
            }
            if !entry.file_type().is_file() {
                out.skipped.push(Skipped {
                    reason: "special-file".into(),
                    path: rel,
                });
                continue;
            }
            if layout::check_relative(&rel).is_err() {
                out.skipped.push(Skipped {
                    reason: "unsafe-name".into(),
                    path: rel,
                });
                out.problems += 1;
                continue;
            }
            match entry.metadata() {
                Ok(meta) => out.files.push(SourceFile {
                    rel,
                    size: meta.len(),
                    mtime: mtime_of(&meta),
                }),
                Err(_) => {
                    out.skipped.push(Skipped {
                        reason: "vanished".into(),
                        path: rel,
                    });
                    out.problems += 1;
                }
            }
        }
    }
    Ok(out)
}

fn excluded_dir(rel: &str, path: &Path, backup: Option<&Path>) -> bool {
    if let Some(sub) = rel.strip_prefix("store/")
        && !sub.contains('/')
        && EXCLUDED_STORE_DIRS.contains(&sub)
    {
        return true;
    }
    backup.is_some_and(|b| path.canonicalize().is_ok_and(|p| p == b))
}

/// `(domain, user)` pairs, lower-cased, of users with `Account_enabled` 0.
fn disabled_mailboxes(install: &Path, out: &mut Scan) -> HashSet<(String, String)> {
    let path = install.join("users.cfg");
    let Ok(bytes) = std::fs::read(&path) else {
        return HashSet::new();
    };
    match mailvault_formats::config::users::users(&bytes) {
        Ok(users) => users
            .into_iter()
            .filter(|u| !u.enabled)
            .map(|u| (u.domain.to_lowercase(), u.name.to_lowercase()))
            .collect(),
        Err(e) => {
            out.notes.push(format!(
                "users.cfg could not be read ({e}); disabled users were backed up like the others"
            ));
            out.problems += 1;
            HashSet::new()
        }
    }
}

fn rel_string(install: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(install).ok()?;
    let mut s = String::new();
    for (i, c) in rel.components().enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.push_str(c.as_os_str().to_str()?);
    }
    Some(s)
}

pub(crate) fn mtime_of(meta: &std::fs::Metadata) -> Mtime {
    meta.modified().map(Mtime::from_system).unwrap_or_default()
}
